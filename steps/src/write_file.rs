//! `write_file`: replace (or create) one file with given contents.
//!
//! - `do`: first records in the stash whether the file existed, with a copy of its old content
//!   (once; a re-run keeps the first record), then writes the new content atomically.
//!   `Ok` guarantees the new content is durable. Idempotent: the write is a pure overwrite.
//! - `undo`: no stash record means `do` never changed the file: nothing to do. Otherwise the old
//!   content is put back atomically (or the file removed if it did not exist), then the stash
//!   is removed. Idempotent: restoring twice gives the same file; a missing stash means done.

use crate::fsutil::{write_atomic, Stash};
use crate::io_err;
use async_trait::async_trait;
use engine::{Step, StepClass, StepCtx, StepError};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::PathBuf;

pub struct WriteFile {
    /// Relative path as given (for the step's name).
    pub rel: String,
    pub path: PathBuf,
    pub contents: Vec<u8>,
    pub scratch: PathBuf,
    pub class: StepClass,
}

#[derive(Serialize, Deserialize)]
struct Before {
    existed: bool,
}

/// What `do` wrote.
#[derive(Debug, Serialize, Deserialize)]
pub struct Receipt {
    pub existed: bool,
    pub sha256: String,
}

#[async_trait]
impl Step for WriteFile {
    type Receipt = Receipt;

    fn name(&self) -> String {
        format!("write {}", self.rel)
    }

    fn class(&self) -> StepClass {
        self.class
    }

    async fn apply(&self, ctx: &StepCtx) -> Result<Receipt, StepError> {
        let stash = Stash::new(&self.scratch, ctx.step);
        let stash_err = |e| io_err("stash for", &self.path, e);
        let before = match stash.read::<Before>().map_err(stash_err)? {
            Some(b) => b,
            None => {
                let existed = match std::fs::symlink_metadata(&self.path) {
                    Ok(m) if m.is_file() => true,
                    Ok(_) => {
                        return Err(StepError::new(format!(
                            "{} exists and is not a regular file; refusing to replace it",
                            self.path.display()
                        )))
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
                    Err(e) => return Err(io_err("inspect", &self.path, e)),
                };
                if existed {
                    stash
                        .save_file(&self.path, "original")
                        .map_err(|e| io_err("save a copy of", &self.path, e))?;
                }
                let b = Before { existed };
                stash.record(&b).map_err(stash_err)?;
                b
            }
        };
        engine::failpoint("steps::write_file::stashed");
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| io_err("create", dir, e))?;
        }
        write_atomic(&self.path, &self.contents).map_err(|e| io_err("write", &self.path, e))?;
        Ok(Receipt {
            existed: before.existed,
            sha256: format!("{:x}", Sha256::digest(&self.contents)),
        })
    }

    async fn undo(&self, ctx: &StepCtx, _receipt: Option<Receipt>) -> Result<(), StepError> {
        // The stash, not the receipt, is the authority: it exists whenever `do` may have
        // changed the file, receipt or not.
        let stash = Stash::new(&self.scratch, ctx.step);
        let Some(before) = stash
            .read::<Before>()
            .map_err(|e| io_err("read stash for", &self.path, e))?
        else {
            return Ok(());
        };
        stash
            .restore_file(&self.path, "original", before.existed)
            .map_err(|e| io_err("restore", &self.path, e))?;
        engine::failpoint("steps::undo::restored");
        stash
            .clear()
            .map_err(|e| io_err("clear stash for", &self.path, e))
    }
}
