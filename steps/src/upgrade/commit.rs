//! `commit` and `housekeeping`: the end of an upgrade.
//!
//! `commit` writes `installed.json` (what is installed, from which run, with which backup and
//! what downtime) atomically. `do` stashes the previous file once and writes the new one
//! (idempotent); `undo` puts the previous one back (or removes it).
//!
//! `housekeeping` is forward-only and never fails the run: with the new release committed and
//! serving, it removes the old release's containers (kept aside, stopped, for a rollback),
//! compresses the upgrade's backup and prunes by retention: old releases (never
//! the current one or the one before it, the rollback target), backups, images molt loaded
//! that no kept release names and no container uses, and the download cache; and it keeps
//! the installed release's start order for the next upgrade's rollback (`orders`). Each part is
//! idempotent and judged from what is on disk, so a crash here loses nothing and the next
//! attempt (or the next upgrade's housekeeping) finishes it. Problems are reported in the
//! receipt, never raised.

use crate::backup::retention::{select, Policy};
use crate::backup::Layout;
use crate::fsutil::{remove_path, write_atomic, Stash};
use crate::io_err;
use crate::release::Release;
use crate::services::Target;
use crate::upgrade::orders::Orders;
use crate::version::Version;
use async_trait::async_trait;
use engine::{Step, StepClass, StepCtx, StepError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The format of `installed.json`.
pub const INSTALLED_FORMAT: u32 = 1;

/// `installed.json`: what the last committed upgrade installed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Installed {
    pub format: u32,
    pub version: String,
    /// `releases/<v>`, relative to the root.
    pub release: String,
    /// The version it replaced, if any.
    pub previous: Option<String>,
    /// The backup taken at the stop (the data of `previous`), if any.
    pub backup: Option<String>,
    pub run: u64,
    pub at_ms: u64,
    pub downtime_ms: Option<u64>,
}

impl Installed {
    pub fn read(path: &Path) -> Result<Option<Installed>, String> {
        match std::fs::read(path) {
            Ok(b) => {
                let v: Installed =
                    serde_json::from_slice(&b).map_err(|e| format!("{}: {e}", path.display()))?;
                if v.format > INSTALLED_FORMAT {
                    return Err(format!(
                        "{}: format {} is newer than this molt reads ({INSTALLED_FORMAT})",
                        path.display(),
                        v.format
                    ));
                }
                Ok(Some(v))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("cannot read {}: {e}", path.display())),
        }
    }
}

pub struct Commit {
    pub file: PathBuf,
    /// What to write; `downtime_ms` and `at_ms` are filled in when the step runs.
    pub installed: Installed,
    pub downtime_file: PathBuf,
    pub scratch: PathBuf,
}

#[derive(Debug, Serialize, Deserialize)]
struct Previous {
    existed: bool,
}

#[async_trait]
impl Step for Commit {
    type Receipt = Installed;

    fn name(&self) -> String {
        format!("commit {}", self.installed.version)
    }

    fn class(&self) -> StepClass {
        StepClass::Reversible
    }

    async fn apply(&self, ctx: &StepCtx) -> Result<Installed, StepError> {
        let stash = Stash::new(&self.scratch, ctx.step);
        let recorded = stash
            .read::<Previous>()
            .map_err(|e| io_err("read stash for", &self.file, e))?;
        if recorded.is_none() {
            let existed = stash
                .save_file(&self.file, "installed.before")
                .map_err(|e| io_err("save", &self.file, e))?;
            stash
                .record(&Previous { existed })
                .map_err(|e| io_err("stash for", &self.file, e))?;
        }
        // A re-run after a crash keeps what the first attempt wrote.
        if let Ok(Some(done)) = Installed::read(&self.file) {
            if done.run == self.installed.run && done.version == self.installed.version {
                return Ok(done);
            }
        }
        let installed = Installed {
            at_ms: crate::now_ms(),
            downtime_ms: super::verify::read_downtime(&self.downtime_file),
            ..self.installed.clone()
        };
        let bytes =
            serde_json::to_vec_pretty(&installed).map_err(|source| super::Error::Encode {
                what: "installed.json",
                source,
            })?;
        write_atomic(&self.file, &bytes).map_err(|e| io_err("write", &self.file, e))?;
        Ok(installed)
    }

    async fn undo(&self, ctx: &StepCtx, _receipt: Option<Installed>) -> Result<(), StepError> {
        let stash = Stash::new(&self.scratch, ctx.step);
        let Some(prev) = stash
            .read::<Previous>()
            .map_err(|e| io_err("read stash for", &self.file, e))?
        else {
            return Ok(());
        };
        stash
            .restore_file(&self.file, "installed.before", prev.existed)
            .map_err(|e| io_err("restore", &self.file, e))?;
        stash
            .clear()
            .map_err(|e| io_err("clear stash for", &self.file, e))
    }
}

pub struct Housekeeping {
    pub root: PathBuf,
    /// The compose project, whose containers set aside by the cut-over (the old release's)
    /// go first.
    pub project: String,
    /// The upgrade's backup, compressed here.
    pub backup: Option<Layout>,
    /// Releases never pruned (the new current one and the one it replaced), relative names.
    pub keep: Vec<String>,
    pub keep_releases: usize,
    pub backups: Policy,
    pub images_registry: PathBuf,
    /// The release now installed, whose start order is kept for the next upgrade.
    pub installed: Target,
    pub orders: Orders,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Kept {
    /// The old release's containers, kept stopped until the commit for a rollback.
    #[serde(default)]
    pub removed_containers: Vec<String>,
    pub archive_bytes: Option<u64>,
    pub removed_releases: Vec<String>,
    pub removed_backups: Vec<String>,
    pub removed_images: Vec<String>,
    pub cache_bytes: u64,
    /// What could not be done (the next upgrade tries again).
    pub warnings: Vec<String>,
}

impl Housekeeping {
    /// Release directory names to remove: all but the newest `keep_releases` and `keep`.
    fn doomed_releases(&self) -> std::io::Result<Vec<String>> {
        let dir = self.root.join("releases");
        let mut found: Vec<(Version, String)> = Vec::new();
        for e in std::fs::read_dir(&dir)? {
            let name = e?.file_name().to_string_lossy().into_owned();
            if let Ok(v) = Version::parse(&name) {
                found.push((v, name));
            }
        }
        found.sort_by(|a, b| b.0.cmp(&a.0));
        Ok(found
            .into_iter()
            .enumerate()
            .filter(|(i, (_, n))| {
                *i >= self.keep_releases
                    && !self
                        .keep
                        .iter()
                        .any(|k| k.ends_with(&format!("/{n}")) || k == n)
            })
            .map(|(_, (_, n))| n)
            .collect())
    }

    async fn images(&self, kept: &mut Kept) -> Result<(), String> {
        let loaded =
            crate::services::loaded_images(&self.images_registry).map_err(|e| e.to_string())?;
        let mut wanted = BTreeSet::new();
        for e in std::fs::read_dir(self.root.join("releases")).map_err(|e| e.to_string())? {
            let dir = e.map_err(|e| e.to_string())?.path();
            if let Ok(r) = Release::load(&dir) {
                wanted.extend(r.images.into_values());
            }
        }
        let unused: Vec<&String> = loaded.iter().filter(|i| !wanted.contains(*i)).collect();
        if unused.is_empty() {
            return Ok(());
        }
        let docker = crate::docker::api::Docker::connect().await?;
        let in_use = docker.images_in_use().await?;
        for id in unused {
            if in_use.contains(id) {
                continue;
            }
            if docker.image_exists(id).await? {
                docker.remove_image(id).await?;
                kept.removed_images.push(id.clone());
            }
        }
        Ok(())
    }
}

#[async_trait]
impl Step for Housekeeping {
    type Receipt = Kept;

    fn name(&self) -> String {
        "housekeeping".into()
    }

    fn class(&self) -> StepClass {
        StepClass::ForwardOnly
    }

    async fn apply(&self, ctx: &StepCtx) -> Result<Kept, StepError> {
        let mut kept = Kept::default();
        match super::standby::remove_aside(&self.project).await {
            Ok(names) => kept.removed_containers = names,
            Err(e) => kept
                .warnings
                .push(format!("remove the old release's containers: {e}")),
        }
        if let Some(layout) = &self.backup {
            use crate::backup::compress::Receipt;
            let c = crate::backup::compress::Compress {
                layout: layout.clone(),
                level: 3,
            };
            match c.apply(ctx).await {
                Ok(Receipt {
                    uncompressed: Some(why),
                    ..
                }) => kept.warnings.push(why),
                Ok(r) => kept.archive_bytes = Some(r.archive_bytes),
                Err(e) => kept
                    .warnings
                    .push(format!("compress backup {}: {e}", layout.id)),
            }
        }
        engine::failpoint("steps::housekeeping::compressed");
        match self.doomed_releases() {
            Ok(doomed) => {
                for n in doomed {
                    let p = self.root.join("releases").join(&n);
                    match remove_path(&p).and_then(|()| self.orders.forget(&p)) {
                        Ok(()) => kept.removed_releases.push(n),
                        Err(e) => kept.warnings.push(format!("remove {}: {e}", p.display())),
                    }
                }
            }
            Err(e) => kept.warnings.push(format!("list releases: {e}")),
        }
        match crate::backup::list(&self.root) {
            Ok(list) => {
                let protect: BTreeSet<String> = self.backup.iter().map(|l| l.id.clone()).collect();
                for id in select(&list, self.backups, crate::now_ms(), &protect) {
                    let p = crate::backup::Layout::new(&self.root, &id).dir();
                    match remove_path(&p) {
                        Ok(()) => kept.removed_backups.push(id),
                        Err(e) => kept.warnings.push(format!("remove {}: {e}", p.display())),
                    }
                }
            }
            Err(e) => kept.warnings.push(format!("list backups: {e}")),
        }
        if let Err(e) = self.images(&mut kept).await {
            kept.warnings.push(format!("prune images: {e}"));
        }
        let cache = self.root.join("cache").join("packages");
        if let Ok(entries) = std::fs::read_dir(&cache) {
            for e in entries.flatten() {
                kept.cache_bytes += e.metadata().map(|m| m.len()).unwrap_or(0);
                if let Err(err) = remove_path(&e.path()) {
                    kept.warnings
                        .push(format!("remove {}: {err}", e.path().display()));
                }
            }
        }
        if let Err(e) = self.orders.keep(&self.installed).await {
            kept.warnings.push(format!(
                "keep the start order of {}: {e}",
                self.installed.label
            ));
        }
        for w in &kept.warnings {
            tracing::warn!("housekeeping: {w}");
        }
        Ok(kept)
    }

    async fn undo(&self, _ctx: &StepCtx, _receipt: Option<Kept>) -> Result<(), StepError> {
        Err(super::Error::AfterCommit.into())
    }
}
