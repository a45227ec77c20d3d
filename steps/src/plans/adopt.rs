//! `adopt` (`molt init --adopt`): an existing compose directory, shaped like the seed
//! system's (`docker-compose.yml`, `.env`, data, upload and log directories), becomes a molt
//! installation in place, every byte moved (renamed), none copied:
//!
//! ```text
//! before:  docker-compose.yml  .env  data/  uploads/  logs/  (other files of the product)
//! after:   releases/<v>/{docker-compose.yml, ..., release.toml, data -> ../../shared/data, ...}
//!          shared/{.env, data/, uploads/, logs/}
//!          current -> releases/<v>;  molt.toml (the compose project, so the services stay theirs)
//!          data -> shared/data, ...; docker-compose.yml -> current/docker-compose.yml, ...
//! ```
//!
//! The links left at the old places keep what already runs working: a running container's
//! bind mounts name the old paths, and a `docker restart` resolves them through the links to
//! the same directories; an operator's `docker-compose` in the directory still finds the file.
//! Every step is reversible and the run has no pivot: a crash anywhere recovers to the
//! original directory (molt's own `journal/`, `cache/` and lock aside) or, once committed,
//! the adopted layout.

use super::{bad, Env};
use crate::error::Error;
use crate::fsutil::safe_relative;
use crate::move_path::{MakeDirs, MovePath};
use crate::switch_link::SwitchLink;
use crate::write_file::WriteFile;
use engine::{DynStep, StepClass};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

const ID: &str = "adopt";

/// Top-level names molt's layout uses: an adopted directory must not hold them already.
pub const RESERVED: [&str; 10] = [
    "molt.toml",
    "current",
    "releases",
    "shared",
    "backups",
    "installed.json",
    "trust.json",
    "hold.json",
    "images.json",
    "notify.log",
];

/// Names molt itself creates at the root when any run starts; never adopted.
pub const MOLTS_OWN: [&str; 3] = ["journal", "cache", "molt.lock"];

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Adopt {
    /// The version the adopted release gets (`releases/<v>`).
    pub version: String,
    /// The compose project the running services belong to.
    pub project: String,
    /// The compose file among `release_files` (named in `release.toml`).
    pub compose_file: String,
    /// Top-level files that become the release's.
    pub release_files: Vec<String>,
    /// Top-level paths that become the installation's `shared/` (always `.env` when present).
    pub persistent: Vec<String>,
    /// The molt.toml written last.
    pub molt_toml: String,
}

/// What `dir` holds at its top level, sorted into release files and persistent paths, with
/// whatever stands in the way of an adoption refused.
pub fn survey(
    dir: &Path,
    persistent: Option<&[String]>,
) -> Result<(Vec<String>, Vec<String>, String), String> {
    let mut files = Vec::new();
    let mut dirs = Vec::new();
    let entries =
        std::fs::read_dir(dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
    for e in entries {
        let e = e.map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
        let name = e.file_name().to_string_lossy().into_owned();
        if MOLTS_OWN.contains(&name.as_str()) {
            continue;
        }
        if RESERVED.contains(&name.as_str()) {
            return Err(format!(
                "{} already holds {name}: it is (or was) a molt installation; nothing was changed",
                dir.display()
            ));
        }
        let t = e
            .file_type()
            .map_err(|err| format!("{}: {err}", e.path().display()))?;
        if t.is_symlink() {
            return Err(format!(
                "{} is a symbolic link: molt adopts files and directories, not links to elsewhere; replace it with what it points to, or remove it; nothing was changed",
                e.path().display()
            ));
        } else if t.is_dir() {
            dirs.push(name);
        } else if t.is_file() {
            files.push(name);
        } else {
            return Err(format!(
                "{} is neither a file nor a directory; nothing was changed",
                e.path().display()
            ));
        }
    }
    let compose = ["docker-compose.yml", "docker-compose.yaml", "compose.yml", "compose.yaml"]
        .into_iter()
        .find(|c| files.iter().any(|f| f == c))
        .ok_or_else(|| {
            format!(
                "{} has no docker-compose.yml (or compose.yml): it is not a compose directory; nothing was changed",
                dir.display()
            )
        })?
        .to_string();
    let mut persistent: Vec<String> = match persistent {
        Some(list) => {
            for p in list {
                if !dirs.contains(p) && !files.contains(p) {
                    return Err(format!(
                        "--persistent {p}: {} has no such entry",
                        dir.display()
                    ));
                }
                if *p == compose {
                    return Err(format!(
                        "--persistent {p}: the compose file belongs to the release"
                    ));
                }
            }
            list.to_vec()
        }
        None => dirs.clone(),
    };
    if files.iter().any(|f| f == ".env") && !persistent.iter().any(|p| p == ".env") {
        persistent.push(".env".into());
    }
    persistent.sort();
    persistent.dedup();
    let mut release: Vec<String> = files
        .into_iter()
        .chain(dirs)
        .filter(|n| !persistent.contains(n))
        .collect();
    release.sort();
    Ok((release, persistent, compose))
}

fn rel(p: &str, id: &str) -> Result<PathBuf, Error> {
    let r = safe_relative(p).map_err(|e| bad(id, e))?;
    if r.components().count() != 1 {
        return Err(bad(id, format!("{p}: only top-level entries are adopted")));
    }
    Ok(r)
}

impl Adopt {
    pub(crate) fn steps(&self, env: &Env) -> Result<Vec<Box<dyn DynStep>>, Error> {
        crate::plans::fetch::check_version(&self.version, ID)?;
        let root = &env.root;
        let release_rel = format!("releases/{}", self.version);
        let release = root.join(&release_rel);
        let mut steps: Vec<Box<dyn DynStep>> = vec![Box::new(MakeDirs {
            dirs: vec![root.join("releases"), release.clone(), root.join("shared")],
            scratch: env.scratch.clone(),
        })];
        for f in &self.release_files {
            let r = rel(f, ID)?;
            steps.push(Box::new(MovePath {
                rel_from: f.clone(),
                rel_to: format!("{release_rel}/{f}"),
                from: root.join(&r),
                to: release.join(&r),
            }));
        }
        let link = |rel_link: String, link: PathBuf, target: PathBuf| -> Box<dyn DynStep> {
            Box::new(SwitchLink {
                rel_link,
                link,
                target,
                scratch: env.scratch.clone(),
                class: StepClass::Reversible,
            })
        };
        for p in &self.persistent {
            let r = rel(p, ID)?;
            steps.push(Box::new(MovePath {
                rel_from: p.clone(),
                rel_to: format!("shared/{p}"),
                from: root.join(&r),
                to: root.join("shared").join(&r),
            }));
            // at once: the old path leads to the same place again
            steps.push(link(p.clone(), root.join(&r), Path::new("shared").join(&r)));
            steps.push(link(
                format!("{release_rel}/{p}"),
                release.join(&r),
                Path::new("../../shared").join(&r),
            ));
        }
        let persistent: Vec<String> = self.persistent.iter().map(|p| format!("{p:?}")).collect();
        let release_toml = format!(
            "# written by `molt init --adopt`: the release that was running when molt adopted it\nformat = 1\nversion = \"{}\"\ncompose_file = \"{}\"\npersistent = [{}]\n",
            self.version,
            self.compose_file,
            persistent.join(", ")
        );
        steps.push(Box::new(WriteFile {
            rel: format!("{release_rel}/release.toml"),
            path: release.join("release.toml"),
            contents: release_toml.into_bytes(),
            scratch: env.scratch.clone(),
            class: StepClass::Reversible,
        }));
        steps.push(link(
            "current".into(),
            root.join("current"),
            PathBuf::from(&release_rel),
        ));
        for f in &self.release_files {
            let r = rel(f, ID)?;
            steps.push(link(
                f.clone(),
                root.join(&r),
                Path::new("current").join(&r),
            ));
        }
        steps.push(Box::new(WriteFile {
            rel: "molt.toml".into(),
            path: root.join("molt.toml"),
            contents: self.molt_toml.clone().into_bytes(),
            scratch: env.scratch.clone(),
            class: StepClass::Reversible,
        }));
        Ok(steps)
    }
}
