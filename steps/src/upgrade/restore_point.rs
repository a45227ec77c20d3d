//! `restore point`: the exactly-old point of an upgrade. Placed right after the final sync
//! (the backup sealed with the old release stopped), it does nothing forward; its `undo` puts
//! that backup back in place of the persistent paths. Undo runs last-step-first, so by then
//! every service of the new release (the database included) has been stopped by the undo of
//! the steps that started it: the database's files are restored with the database stopped,
//! and whatever the new release, its migration or its first minutes of traffic wrote is gone.
//! The old release then starts (undo of `stop`) on data byte-identical to the moment of the
//! stop.
//!
//! - `do`: checks that the backup is complete (it is the way back) and records beside it which
//!   release its data belongs to (`release.json`, for `molt rollback --to`). Idempotent.
//! - `undo`: [`crate::backup::restore::restore_in_place`], idempotent across crashes.

use crate::backup::restore::restore_in_place;
use crate::backup::Layout;
use crate::fsutil::Stash;
use async_trait::async_trait;
use engine::{Step, StepClass, StepCtx, StepError};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

pub struct RestorePoint {
    pub layout: Layout,
    pub paths: Vec<String>,
    pub scratch: PathBuf,
    /// The release whose data the backup holds (`releases/<v>`), recorded beside the backup
    /// for `molt rollback --to`.
    pub release: BackupOf,
}

/// `backups/<id>/release.json`: the release a backup's data belongs to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupOf {
    pub version: String,
    pub release: String,
}

impl BackupOf {
    pub fn path(layout: &Layout) -> PathBuf {
        layout.dir().join("release.json")
    }

    pub fn read(layout: &Layout) -> Option<BackupOf> {
        serde_json::from_slice(&std::fs::read(Self::path(layout)).ok()?).ok()
    }
}

#[async_trait]
impl Step for RestorePoint {
    type Receipt = ();

    fn name(&self) -> String {
        format!("restore point (backup {})", self.layout.id)
    }

    fn class(&self) -> StepClass {
        StepClass::Reversible
    }

    async fn apply(&self, _ctx: &StepCtx) -> Result<(), StepError> {
        match self.layout.read_manifest() {
            Ok(Some(_)) => {
                let path = BackupOf::path(&self.layout);
                let bytes = serde_json::to_vec_pretty(&self.release).map_err(|source| {
                    super::Error::Encode {
                        what: "release.json",
                        source,
                    }
                })?;
                crate::fsutil::write_atomic(&path, &bytes)
                    .map_err(|e| crate::io_err("write", &path, e))
            }
            Ok(None) => Err(super::Error::NotSealed(self.layout.id.clone()).into()),
            Err(e) => Err(crate::io_err("read", &self.layout.manifest(), e)),
        }
    }

    async fn undo(&self, ctx: &StepCtx, _receipt: Option<()>) -> Result<(), StepError> {
        let stash = Stash::new(&self.scratch, ctx.step);
        let started = stash
            .read::<serde_json::Value>()
            .map_err(|e| crate::io_err("read stash for", &self.layout.dir(), e))?
            .is_some();
        let sealed = self
            .layout
            .read_manifest()
            .map_err(|e| crate::io_err("read", &self.layout.manifest(), e))?
            .is_some();
        if !started && !sealed {
            // `do` never passed: the data was never handed to the new release.
            return Ok(());
        }
        restore_in_place(&self.layout, &self.paths, &stash)
    }
}
