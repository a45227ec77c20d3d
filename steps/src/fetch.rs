//! `download` and `stage`: bring a release from the vendor into `releases/<version>`, without
//! touching the live release.

use crate::backup::tree::syncfs;
use crate::backup::Kind;
use crate::fsutil::{remove_path, sync_dir, Stash};
use crate::http::{download, Fetch};
use crate::io_err;
use crate::package::{read_patch_toml, tree, unpack, TreeEntry};
use crate::release::Release;
use crate::version::{Range, Version};
use async_trait::async_trait;
use engine::{Step, StepClass, StepCtx, StepError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// `download`: fetch a package into the cache, resumable, verified.
///
/// - `do`: see [`crate::http`]. `Ok` guarantees `dest` holds exactly the manifest's bytes
///   (size and sha256). Idempotent: a verified `dest` is kept; a partial one resumes.
/// - `undo`: keeps the verified download: the cache is content-checked and a retry reuses it
///   (`molt cache clean` removes it). Nothing in the installation changed.
pub struct Download {
    pub fetch: Fetch,
}

#[async_trait]
impl Step for Download {
    type Receipt = ();

    fn name(&self) -> String {
        format!("download {}", self.fetch.url)
    }

    fn class(&self) -> StepClass {
        StepClass::Reversible
    }

    async fn apply(&self, _ctx: &StepCtx) -> Result<(), StepError> {
        let bar = crate::report::Progress::begin("download", self.fetch.size);
        let r = download(&self.fetch, &bar).await.map_err(StepError::new);
        bar.finish();
        r
    }

    async fn undo(&self, _ctx: &StepCtx, _receipt: Option<()>) -> Result<(), StepError> {
        Ok(())
    }
}

/// What kind of package `stage` unpacks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Source {
    Full,
    /// A patch applied on top of the installed release `base` (relative to the root).
    Patch {
        base: String,
        base_version: String,
    },
}

/// `stage`: unpack a full package, or copy the base release and apply a patch, into
/// `releases/<v>.partial`; verify; fsync; rename to `releases/<v>`.
///
/// - `do`: refuses when `releases/<v>` exists and is not its own work. Every check happens on
///   the `.partial` tree (package paths and links, patch base version and base file hashes,
///   every resulting file's sha256, the release's own `release.toml` version) before the
///   rename, so `releases/<v>` only ever appears complete and verified. Unchanged files of a
///   patch are hard links to the base release (release files are immutable once staged).
///   Idempotent: a leftover `.partial` is rebuilt; a finished `releases/<v>` with the stash
///   record is done.
/// - `undo`: removes `.partial` and, if this step created it, `releases/<v>`. Idempotent.
pub struct Stage {
    pub root: PathBuf,
    pub version: String,
    pub package: PathBuf,
    pub source: Source,
    pub scratch: PathBuf,
}

#[derive(Serialize, Deserialize)]
struct Creating {
    release: String,
}

impl Stage {
    fn target(&self) -> PathBuf {
        self.root.join("releases").join(&self.version)
    }

    fn partial(&self) -> PathBuf {
        self.root
            .join("releases")
            .join(format!("{}.partial", self.version))
    }

    fn build(&self) -> Result<(), String> {
        let partial = self.partial();
        match &self.source {
            Source::Full => {
                unpack(
                    &self.package,
                    &partial,
                    &|p: &Path| Some(p.to_path_buf()),
                    false,
                )?;
            }
            Source::Patch { base, base_version } => {
                self.apply_patch(base, base_version, &partial)?
            }
        }
        let release = Release::load(&partial)?;
        if Version::parse(&release.version)? != Version::parse(&self.version)? {
            return Err(format!(
                "the package holds release {} but the manifest says {}",
                release.version, self.version
            ));
        }
        link_persistent(&partial, &release)?;
        Ok(())
    }

    fn apply_patch(&self, base: &str, base_version: &str, partial: &Path) -> Result<(), String> {
        let patch = read_patch_toml(&self.package)?;
        let pkg = self.package.display();
        let installed = Version::parse(base_version)?;
        let range = Range::parse(&patch.from)?;
        if !range.contains(&installed) {
            return Err(format!(
                "{pkg} patches versions {range}, the installed release is {installed}"
            ));
        }
        if Version::parse(&patch.to)? != Version::parse(&self.version)? {
            return Err(format!(
                "{pkg} patches to {}, the manifest says {}",
                patch.to, self.version
            ));
        }
        let base_dir = self.root.join(base);
        // The base must be exactly what the patch was made against; the links molt made to
        // the persistent paths are not the vendor's files.
        let base_persistent = Release::load(&base_dir)?.persistent;
        let found: BTreeMap<String, TreeEntry> = tree(&base_dir)
            .map_err(|e| format!("cannot read {}: {e}", base_dir.display()))?
            .into_iter()
            .filter(|e| !(e.kind == Kind::Symlink && base_persistent.contains(&e.path)))
            .map(|e| (e.path.clone(), e))
            .collect();
        for want in &patch.base {
            match found.get(&want.path) {
                Some(got) if got.sha256 == want.sha256 => {}
                Some(got) => {
                    return Err(format!(
                        "{pkg} refused: base file {} has sha256 {}, the patch expects {}",
                        want.path,
                        got.sha256.as_deref().unwrap_or("-"),
                        want.sha256.as_deref().unwrap_or("-")
                    ))
                }
                None => return Err(format!("{pkg} refused: base file {} is missing", want.path)),
            }
        }
        // Copy the base: directories and links recreated, files hard-linked.
        std::fs::create_dir_all(partial).map_err(|e| e.to_string())?;
        let shipped: std::collections::BTreeSet<&str> =
            patch.add.iter().map(|e| e.path.as_str()).collect();
        let deleted: std::collections::BTreeSet<&str> =
            patch.delete.iter().map(String::as_str).collect();
        for e in found.values() {
            if deleted.contains(e.path.as_str()) || shipped.contains(e.path.as_str()) {
                continue;
            }
            let dst = partial.join(&e.path);
            let io =
                |err: std::io::Error| format!("cannot copy {} into the staging: {err}", e.path);
            match e.kind {
                Kind::Dir => std::fs::create_dir_all(&dst).map_err(io)?,
                Kind::Symlink => {
                    std::fs::create_dir_all(dst.parent().unwrap_or(partial)).map_err(io)?;
                    std::os::unix::fs::symlink(e.target.as_deref().unwrap_or(""), &dst)
                        .map_err(io)?
                }
                Kind::File => {
                    std::fs::create_dir_all(dst.parent().unwrap_or(partial)).map_err(io)?;
                    std::fs::hard_link(base_dir.join(&e.path), &dst).map_err(io)?
                }
            }
        }
        let written = unpack(
            &self.package,
            partial,
            &|p: &Path| p.strip_prefix("files").ok().map(Path::to_path_buf),
            true,
        )?;
        for (path, sha) in &written {
            let want = patch
                .add
                .iter()
                .find(|e| Path::new(&e.path) == path)
                .ok_or_else(|| {
                    format!(
                        "{pkg} refused: it ships {} which patch.toml does not list",
                        path.display()
                    )
                })?;
            if want.sha256.as_deref() != Some(sha.as_str()) {
                return Err(format!(
                    "{pkg} refused: {} has sha256 {sha}, patch.toml says {}",
                    path.display(),
                    want.sha256.as_deref().unwrap_or("-")
                ));
            }
        }
        // The result must be exactly the release the patch describes.
        let result = tree(partial).map_err(|e| e.to_string())?;
        let want: Vec<(String, Kind, Option<String>, Option<String>)> = patch
            .result
            .iter()
            .map(|e| (e.path.clone(), e.kind, e.sha256.clone(), e.target.clone()))
            .collect();
        let got: Vec<(String, Kind, Option<String>, Option<String>)> = result
            .iter()
            .map(|e| (e.path.clone(), e.kind, e.sha256.clone(), e.target.clone()))
            .collect();
        if want != got {
            let first = want
                .iter()
                .zip(&got)
                .find(|(a, b)| a != b)
                .map(|(a, _)| a.0.clone())
                .unwrap_or_else(|| "an entry".into());
            return Err(format!("{pkg} refused: the patched tree differs from the release it describes (at {first})"));
        }
        for e in &patch.result {
            if e.kind == Kind::File {
                use std::os::unix::fs::PermissionsExt;
                let p = partial.join(&e.path);
                let m = std::fs::symlink_metadata(&p).map_err(|er| er.to_string())?;
                if m.permissions().mode() & 0o777 != e.mode && !shipped.contains(e.path.as_str()) {
                    // A hard link shares the base's mode; a changed mode ships the file.
                    return Err(format!(
                        "{pkg} refused: {} has another mode than the patch says",
                        e.path
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Link each persistent path of a staged release to the installation's `shared/`
/// (`releases/<v>/<p> -> ../../shared/<p>`), so the compose file's relative paths (`./data`,
/// `.env`) reach the operator's data. A package that ships a persistent path is refused: the
/// link would hide it.
pub fn link_persistent(dir: &Path, release: &Release) -> Result<(), String> {
    for p in &release.persistent {
        let at = dir.join(p);
        if std::fs::symlink_metadata(&at).is_ok() {
            return Err(format!(
                "the package ships {p}, which release.toml names persistent (it lives in shared/)"
            ));
        }
        std::os::unix::fs::symlink(Path::new("../../shared").join(p), &at)
            .map_err(|e| format!("cannot link {}: {e}", at.display()))?;
    }
    Ok(())
}

#[async_trait]
impl Step for Stage {
    type Receipt = ();

    fn name(&self) -> String {
        format!("stage release {}", self.version)
    }

    fn class(&self) -> StepClass {
        StepClass::Reversible
    }

    async fn apply(&self, ctx: &StepCtx) -> Result<(), StepError> {
        let stash = Stash::new(&self.scratch, ctx.step);
        let target = self.target();
        let ours = stash
            .read::<Creating>()
            .map_err(|e| io_err("read stash for", &target, e))?
            .is_some();
        if target.exists() {
            if ours {
                return Ok(());
            }
            return Err(StepError::new(format!(
                "{} already exists; refusing to overwrite a staged release",
                target.display()
            )));
        }
        if !ours {
            stash
                .record(&Creating {
                    release: self.version.clone(),
                })
                .map_err(|e| io_err("stash for", &target, e))?;
        }
        let partial = self.partial();
        remove_path(&partial).map_err(|e| io_err("remove", &partial, e))?;
        if let Err(e) = self.build() {
            let _ = remove_path(&partial);
            return Err(StepError::new(e));
        }
        syncfs(&partial).map_err(|e| io_err("sync", &partial, e))?;
        engine::failpoint("steps::stage::before_rename");
        std::fs::rename(&partial, &target).map_err(|e| io_err("rename", &partial, e))?;
        sync_dir(target.parent().unwrap_or(&self.root)).map_err(|e| io_err("sync", &target, e))
    }

    async fn undo(&self, ctx: &StepCtx, _receipt: Option<()>) -> Result<(), StepError> {
        let stash = Stash::new(&self.scratch, ctx.step);
        let target = self.target();
        if stash
            .read::<Creating>()
            .map_err(|e| io_err("read stash for", &target, e))?
            .is_none()
        {
            return Ok(());
        }
        let partial = self.partial();
        remove_path(&partial).map_err(|e| io_err("remove", &partial, e))?;
        remove_path(&target).map_err(|e| io_err("remove", &target, e))?;
        stash
            .clear()
            .map_err(|e| io_err("clear stash for", &target, e))
    }
}
