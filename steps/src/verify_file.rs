//! `verify_file`: a gate that checks a file's sha256. It changes nothing.
//!
//! - `do`: `Ok` when the file exists and its sha256 equals the expected one; `Err` names the
//!   file and both hashes (the run then rolls back). Idempotent: read-only.
//! - `undo`: nothing to reverse.

use crate::io_err;
use async_trait::async_trait;
use engine::{Step, StepClass, StepCtx, StepError};
use sha2::{Digest, Sha256};
use std::path::PathBuf;

pub struct VerifyFile {
    pub rel: String,
    pub path: PathBuf,
    pub sha256: String,
}

#[async_trait]
impl Step for VerifyFile {
    type Receipt = ();

    fn name(&self) -> String {
        format!("verify {}", self.rel)
    }

    fn class(&self) -> StepClass {
        StepClass::Reversible
    }

    async fn apply(&self, _ctx: &StepCtx) -> Result<(), StepError> {
        let bytes = std::fs::read(&self.path).map_err(|e| io_err("read", &self.path, e))?;
        let found = format!("{:x}", Sha256::digest(&bytes));
        if !found.eq_ignore_ascii_case(&self.sha256) {
            return Err(StepError::new(format!(
                "{} has sha256 {found}, expected {}",
                self.path.display(),
                self.sha256
            )));
        }
        Ok(())
    }

    async fn undo(&self, _ctx: &StepCtx, _receipt: Option<()>) -> Result<(), StepError> {
        Ok(())
    }
}
