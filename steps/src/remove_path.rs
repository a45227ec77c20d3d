//! `remove_path`: delete a file or tree for good (pruning). Forward-only.
//!
//! - `do`: removes the path if it exists and syncs its directory. Idempotent: an absent path
//!   is the goal state.
//! - `undo`: never called by the engine (forward-only steps are never rolled back); it returns
//!   an error saying so rather than pretending.

use crate::fsutil::remove_path;
use crate::io_err;
use async_trait::async_trait;
use engine::{Step, StepClass, StepCtx, StepError};
use std::path::PathBuf;

pub struct RemovePath {
    pub rel: String,
    pub path: PathBuf,
}

#[async_trait]
impl Step for RemovePath {
    type Receipt = ();

    fn name(&self) -> String {
        format!("remove {}", self.rel)
    }

    fn class(&self) -> StepClass {
        StepClass::ForwardOnly
    }

    async fn apply(&self, _ctx: &StepCtx) -> Result<(), StepError> {
        remove_path(&self.path).map_err(|e| io_err("remove", &self.path, e))
    }

    async fn undo(&self, _ctx: &StepCtx, _receipt: Option<()>) -> Result<(), StepError> {
        Err(StepError::new(format!(
            "removing {} cannot be undone",
            self.path.display()
        )))
    }
}
