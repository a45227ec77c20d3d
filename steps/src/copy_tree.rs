//! `copy_tree`: stage a directory tree at a new path (e.g. a release into `releases/<v>`).
//!
//! - `do`: refuses if the destination exists and this step did not create it. Records "I am
//!   creating it" in the stash, copies into `<to>.partial` (removing a leftover one first),
//!   fsyncs everything, renames `<to>.partial` to `<to>`. `Ok` guarantees the complete tree is
//!   durable at `<to>`. Idempotent: a finished destination with the stash record is done; a
//!   crash mid-copy leaves only `.partial`, which the next run starts over.
//! - `undo`: with no stash record nothing was created; otherwise removes `<to>.partial` and
//!   `<to>`, then the stash. Idempotent.

use crate::fsutil::{copy_tree, remove_path, Stash};
use crate::io_err;
use async_trait::async_trait;
use engine::{Step, StepClass, StepCtx, StepError};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

pub struct CopyTree {
    pub rel_from: String,
    pub rel_to: String,
    pub from: PathBuf,
    pub to: PathBuf,
    pub scratch: PathBuf,
    pub class: StepClass,
}

/// Stash record: "this step is creating `to`" (relative, for the reader of the stash).
#[derive(Serialize, Deserialize)]
struct Creating {
    to: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Receipt {
    pub files: u64,
    pub bytes: u64,
}

impl CopyTree {
    fn partial(&self) -> PathBuf {
        let mut name = self.to.file_name().unwrap_or_default().to_os_string();
        name.push(".partial");
        self.to.with_file_name(name)
    }
}

#[async_trait]
impl Step for CopyTree {
    type Receipt = Receipt;

    fn name(&self) -> String {
        format!("copy {} to {}", self.rel_from, self.rel_to)
    }

    fn class(&self) -> StepClass {
        self.class
    }

    async fn apply(&self, ctx: &StepCtx) -> Result<Receipt, StepError> {
        let stash = Stash::new(&self.scratch, ctx.step);
        let ours = stash
            .read::<Creating>()
            .map_err(|e| io_err("read stash for", &self.to, e))?
            .is_some();
        let exists = std::fs::symlink_metadata(&self.to).is_ok();
        if exists && ours {
            return Ok(Receipt { files: 0, bytes: 0 });
        }
        if exists {
            return Err(StepError::new(format!(
                "{} already exists; refusing to overwrite it",
                self.to.display()
            )));
        }
        if !self.from.is_dir() {
            return Err(StepError::new(format!(
                "{} is not a directory",
                self.from.display()
            )));
        }
        if !ours {
            stash
                .record(&Creating {
                    to: self.rel_to.clone(),
                })
                .map_err(|e| io_err("stash for", &self.to, e))?;
        }
        let partial = self.partial();
        remove_path(&partial).map_err(|e| io_err("remove", &partial, e))?;
        if let Some(dir) = self.to.parent() {
            std::fs::create_dir_all(dir).map_err(|e| io_err("create", dir, e))?;
        }
        let (files, bytes) = copy_tree(&self.from, &partial, &mut |n| {
            if n == 2 {
                engine::failpoint("steps::copy_tree::partial");
            }
        })
        .map_err(|e| io_err("copy into", &partial, e))?;
        std::fs::rename(&partial, &self.to).map_err(|e| io_err("rename", &partial, e))?;
        crate::fsutil::sync_dir(self.to.parent().unwrap_or(&self.to))
            .map_err(|e| io_err("sync", &self.to, e))?;
        Ok(Receipt { files, bytes })
    }

    async fn undo(&self, ctx: &StepCtx, _receipt: Option<Receipt>) -> Result<(), StepError> {
        let stash = Stash::new(&self.scratch, ctx.step);
        if stash
            .read::<Creating>()
            .map_err(|e| io_err("read stash for", &self.to, e))?
            .is_none()
        {
            return Ok(());
        }
        let partial = self.partial();
        remove_path(&partial).map_err(|e| io_err("remove", &partial, e))?;
        remove_path(&self.to).map_err(|e| io_err("remove", &self.to, e))?;
        engine::failpoint("steps::undo::restored");
        stash
            .clear()
            .map_err(|e| io_err("clear stash for", &self.to, e))
    }
}
