//! `download` and `stage`: bring a release from the vendor into `releases/<version>`, without
//! touching the live release.

use crate::backup::tree::syncfs;
use crate::backup::Kind;
use crate::beneath::Beneath;
use crate::fsutil::{remove_path, sync_dir, Stash};
use crate::http::{download, Fetch};
use crate::io_err;
use crate::package::{
    check_links, model_of, read_patch_toml, safe_entry_path, tree, unpack, Model, Node, TreeEntry,
};
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
    /// Bytes the release unpacks to, from the signed manifest: the package may not write
    /// more.
    pub installed_size: u64,
}

/// What a patch package may hold besides the files it ships (its `patch.toml`).
const PATCH_TOML_BYTES: u64 = 64 << 20;

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
        let dest = Beneath::create(&partial).map_err(|e| e.to_string())?;
        let model = match &self.source {
            Source::Full => {
                unpack(
                    &self.package,
                    &dest,
                    &|p: &Path| Ok(Some(p.to_path_buf())),
                    false,
                    self.installed_size,
                )?
                .model
            }
            Source::Patch { base, base_version } => self.apply_patch(base, base_version, &dest)?,
        };
        let release = Release::load(&partial)?;
        if Version::parse(&release.version)? != Version::parse(&self.version)? {
            return Err(format!(
                "the package holds release {} but the manifest says {}",
                release.version, self.version
            ));
        }
        // Nothing was followed while writing; now make sure nothing will be when the
        // release is used.
        check_links(&model, &release.persistent)
            .map_err(|e| format!("{} refused: {e}", self.package.display()))?;
        link_persistent(&dest, &release)?;
        Ok(())
    }

    /// Copy the base release and apply the patch; returns the model of the result.
    fn apply_patch(&self, base: &str, base_version: &str, dest: &Beneath) -> Result<Model, String> {
        let partial = dest.path();
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
        // The whole list is checked before anything is written: plain paths, files shipped
        // are files of the result, and the result's links stay inside the release.
        let model = model_of(&patch.result).map_err(|e| format!("{pkg} refused: {e}"))?;
        for e in patch.add.iter().chain(&patch.base) {
            safe_entry_path(Path::new(&e.path)).map_err(|e| format!("{pkg} refused: {e}"))?;
        }
        for p in &patch.delete {
            safe_entry_path(Path::new(p)).map_err(|e| format!("{pkg} refused: {e}"))?;
        }
        for e in &patch.add {
            if model.get(Path::new(&e.path)) != Some(&Node::File) {
                return Err(format!(
                    "{pkg} refused: it ships {} which its result does not list as a file",
                    e.path
                ));
            }
        }
        let base_dir = self.root.join(base);
        let base_persistent = Release::load(&base_dir)?.persistent;
        check_links(&model, &base_persistent).map_err(|e| format!("{pkg} refused: {e}"))?;
        // The base must be exactly what the patch was made against; the links molt made to
        // the persistent paths are not the vendor's files.
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
        let from = Beneath::open(&base_dir).map_err(|e| e.to_string())?;
        // What the package ships, with the sha256 patch.toml says each file has.
        let shipped: BTreeMap<&str, Option<&str>> = patch
            .add
            .iter()
            .map(|e| (e.path.as_str(), e.sha256.as_deref()))
            .collect();
        let deleted: std::collections::BTreeSet<&str> =
            patch.delete.iter().map(String::as_str).collect();
        for e in found.values() {
            if deleted.contains(e.path.as_str()) || shipped.contains_key(e.path.as_str()) {
                continue;
            }
            let rel = Path::new(&e.path);
            let copied = match e.kind {
                Kind::Dir => dest.create_dir(rel),
                Kind::Symlink => dest.symlink(Path::new(e.target.as_deref().unwrap_or("")), rel),
                Kind::File => dest.hard_link_from(&from, rel),
            };
            copied.map_err(|err| format!("cannot copy {} into the staging: {err}", e.path))?;
        }
        let written = unpack(
            &self.package,
            dest,
            &|p: &Path| {
                if p == Path::new("patch.toml") {
                    return Ok(None);
                }
                match p.strip_prefix("files") {
                    Ok(rel) if shipped.contains_key(rel.to_string_lossy().as_ref()) => {
                        Ok(Some(rel.to_path_buf()))
                    }
                    _ => Err(format!(
                        "it ships {} which patch.toml does not list",
                        p.display()
                    )),
                }
            },
            true,
            self.installed_size.saturating_add(PATCH_TOML_BYTES),
        )?
        .hashes;
        // `select` let only listed files through: each has an expected hash.
        for (path, sha) in &written {
            let want = shipped
                .get(path.to_string_lossy().as_ref())
                .copied()
                .flatten();
            if want != Some(sha.as_str()) {
                return Err(format!(
                    "{pkg} refused: {} has sha256 {sha}, patch.toml says {}",
                    path.display(),
                    want.unwrap_or("-")
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
        if let Some(missing) = patch
            .add
            .iter()
            .find(|e| !written.contains_key(Path::new(&e.path)))
        {
            return Err(format!(
                "{pkg} refused: patch.toml lists {} but the package does not ship it",
                missing.path
            ));
        }
        for e in &patch.result {
            if e.kind == Kind::File {
                use std::os::unix::fs::PermissionsExt;
                let p = partial.join(&e.path);
                let m = std::fs::symlink_metadata(&p).map_err(|er| er.to_string())?;
                if m.permissions().mode() & 0o777 != e.mode
                    && !shipped.contains_key(e.path.as_str())
                {
                    // A hard link shares the base's mode; a changed mode ships the file.
                    return Err(format!(
                        "{pkg} refused: {} has another mode than the patch says",
                        e.path
                    ));
                }
            }
        }
        Ok(model)
    }
}

/// Link each persistent path of a staged release to the installation's `shared/`
/// (`releases/<v>/<p> -> ../../shared/<p>`), so the compose file's relative paths (`./data`,
/// `.env`) reach the operator's data. A package that ships a persistent path is refused: the
/// link would hide it.
pub fn link_persistent(dir: &Beneath, release: &Release) -> Result<(), String> {
    for p in &release.persistent {
        dir.symlink(&Path::new("../../shared").join(p), Path::new(p))
            .map_err(|e| match e {
                crate::beneath::Refused::Exists { .. } => format!(
                    "the package ships {p}, which release.toml names persistent (it lives in shared/)"
                ),
                e => format!("cannot link {p}: {e}"),
            })?;
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
