//! `restore point`: the exactly-old point of an upgrade. Placed right after the final sync
//! (the backup sealed with the old release stopped), it does nothing forward; its `undo` puts
//! that backup back in place of the persistent paths. Undo runs last-step-first, so by then
//! every service of the new release (the database included) has been stopped by the undo of
//! the steps that started it: the database's files are restored with the database stopped,
//! and whatever the new release, its migration or its first minutes of traffic wrote is gone.
//! The old release then starts (undo of `stop`) on data byte-identical to the moment of the
//! stop.
//!
//! - `do`: checks that the backup is complete (it is the way back); nothing else.
//! - `undo`: [`crate::backup::restore::restore_in_place`], idempotent across crashes.

use crate::backup::restore::restore_in_place;
use crate::backup::Layout;
use crate::fsutil::Stash;
use async_trait::async_trait;
use engine::{Step, StepClass, StepCtx, StepError};
use std::path::PathBuf;

pub struct RestorePoint {
    pub layout: Layout,
    pub paths: Vec<String>,
    pub scratch: PathBuf,
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
            Ok(Some(_)) => Ok(()),
            Ok(None) => Err(StepError::new(format!(
                "backup {} is not sealed; there would be no way back",
                self.layout.id
            ))),
            Err(e) => Err(crate::io_err("read", &self.layout.manifest(), e)),
        }
    }

    async fn undo(&self, ctx: &StepCtx, _receipt: Option<()>) -> Result<(), StepError> {
        if self
            .layout
            .read_manifest()
            .map_err(|e| crate::io_err("read", &self.layout.manifest(), e))?
            .is_none()
        {
            // `do` never passed: the data was never handed to the new release.
            return Ok(());
        }
        restore_in_place(
            &self.layout,
            &self.paths,
            &Stash::new(&self.scratch, ctx.step),
        )
    }
}
