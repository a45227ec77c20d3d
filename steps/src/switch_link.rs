//! `switch_link`: point a symlink (e.g. `current`) at a new target, atomically.
//!
//! - `do`: records the link's old target (or its absence) in the stash once, then replaces the
//!   link by rename, so readers see the old or the new target, never none. Idempotent.
//! - `undo`: with no stash record the link was never touched; otherwise the old target is put
//!   back the same atomic way (or the link removed), then the stash. Idempotent.

use crate::fsutil::{remove_path, symlink_atomic, Stash};
use crate::io_err;
use async_trait::async_trait;
use engine::{Step, StepClass, StepCtx, StepError};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

pub struct SwitchLink {
    pub rel_link: String,
    pub link: PathBuf,
    /// Stored verbatim in the link (usually relative, so the installation can move).
    pub target: PathBuf,
    pub scratch: PathBuf,
    pub class: StepClass,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Before {
    /// The old target, `None` when there was no link.
    pub target: Option<PathBuf>,
}

#[async_trait]
impl Step for SwitchLink {
    type Receipt = Before;

    fn name(&self) -> String {
        format!("point {} at {}", self.rel_link, self.target.display())
    }

    fn class(&self) -> StepClass {
        self.class
    }

    async fn apply(&self, ctx: &StepCtx) -> Result<Before, StepError> {
        let stash = Stash::new(&self.scratch, ctx.step);
        let before = match stash
            .read::<Before>()
            .map_err(|e| io_err("read stash for", &self.link, e))?
        {
            Some(b) => b,
            None => {
                let target = match std::fs::symlink_metadata(&self.link) {
                    Ok(m) if m.file_type().is_symlink() => Some(
                        std::fs::read_link(&self.link)
                            .map_err(|e| io_err("read", &self.link, e))?,
                    ),
                    Ok(_) => {
                        return Err(StepError::new(format!(
                            "{} exists and is not a symlink; refusing to replace it",
                            self.link.display()
                        )))
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                    Err(e) => return Err(io_err("inspect", &self.link, e)),
                };
                let b = Before { target };
                stash
                    .record(&b)
                    .map_err(|e| io_err("stash for", &self.link, e))?;
                b
            }
        };
        engine::failpoint("steps::switch_link::stashed");
        symlink_atomic(&self.target, &self.link).map_err(|e| io_err("switch", &self.link, e))?;
        Ok(before)
    }

    async fn undo(&self, ctx: &StepCtx, _receipt: Option<Before>) -> Result<(), StepError> {
        let stash = Stash::new(&self.scratch, ctx.step);
        let Some(before) = stash
            .read::<Before>()
            .map_err(|e| io_err("read stash for", &self.link, e))?
        else {
            return Ok(());
        };
        match &before.target {
            Some(t) => symlink_atomic(t, &self.link),
            None => remove_path(&self.link),
        }
        .map_err(|e| io_err("restore", &self.link, e))?;
        engine::failpoint("steps::undo::restored");
        stash
            .clear()
            .map_err(|e| io_err("clear stash for", &self.link, e))
    }
}
