//! `make dirs` and `move`: the adoption's file-system steps (`plans::adopt`). A move is a
//! rename on one file system: the data is never copied, and a rename is atomic.
//!
//! `MakeDirs`
//! - `do`: records in the stash which of the directories are missing (once), then creates
//!   them. Idempotent.
//! - `undo`: removes the directories it created, deepest first, when they are empty (a
//!   directory that is not empty is an error naming it: something else was put there).
//!
//! `MovePath`
//! - `do`: renames `from` to `to` and syncs both parents. The state says what happened: `from`
//!   gone and `to` present means done (a re-run does nothing); both present is refused (the
//!   plan checked that `to` did not exist).
//! - `undo`: renames `to` back to `from` when only `to` exists; nothing when only `from` does.

use crate::fsutil::{sync_dir, Stash};
use crate::io_err;
use async_trait::async_trait;
use engine::{Step, StepClass, StepCtx, StepError};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub struct MakeDirs {
    /// Absolute, parents before children.
    pub dirs: Vec<PathBuf>,
    pub scratch: PathBuf,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Made {
    pub created: Vec<PathBuf>,
}

fn exists(p: &Path) -> Result<bool, StepError> {
    match std::fs::symlink_metadata(p) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io_err("inspect", p, e)),
    }
}

fn parent(p: &Path) -> &Path {
    p.parent().unwrap_or(Path::new("."))
}

#[async_trait]
impl Step for MakeDirs {
    type Receipt = Made;

    fn name(&self) -> String {
        let names: Vec<String> = self
            .dirs
            .iter()
            .map(|d| {
                d.file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        format!("make directories {}", names.join(", "))
    }

    fn class(&self) -> StepClass {
        StepClass::Reversible
    }

    async fn apply(&self, ctx: &StepCtx) -> Result<Made, StepError> {
        let stash = Stash::new(&self.scratch, ctx.step);
        let made = match stash
            .read::<Made>()
            .map_err(|e| io_err("read stash of", &self.scratch, e))?
        {
            Some(m) => m,
            None => {
                let mut created = Vec::new();
                for d in &self.dirs {
                    if !exists(d)? {
                        created.push(d.clone());
                    }
                }
                let m = Made { created };
                stash
                    .record(&m)
                    .map_err(|e| io_err("stash in", &self.scratch, e))?;
                m
            }
        };
        for d in &made.created {
            match std::fs::create_dir(d) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(io_err("create", d, e)),
            }
            sync_dir(parent(d)).map_err(|e| io_err("sync", parent(d), e))?;
        }
        Ok(made)
    }

    async fn undo(&self, ctx: &StepCtx, _receipt: Option<Made>) -> Result<(), StepError> {
        let stash = Stash::new(&self.scratch, ctx.step);
        let Some(made) = stash
            .read::<Made>()
            .map_err(|e| io_err("read stash of", &self.scratch, e))?
        else {
            return Ok(());
        };
        for d in made.created.iter().rev() {
            match std::fs::remove_dir(d) {
                Ok(()) => sync_dir(parent(d)).map_err(|e| io_err("sync", parent(d), e))?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(StepError::new(format!(
                    "cannot remove {}, which this run created: {e} (something else was put there?)",
                    d.display()
                )))
                }
            }
        }
        stash
            .clear()
            .map_err(|e| io_err("clear stash of", &self.scratch, e))
    }
}

pub struct MovePath {
    /// Shown in the step's name.
    pub rel_from: String,
    pub rel_to: String,
    pub from: PathBuf,
    pub to: PathBuf,
}

impl MovePath {
    fn rename(from: &Path, to: &Path) -> Result<(), StepError> {
        std::fs::rename(from, to).map_err(|e| {
            StepError::new(format!(
                "cannot move {} to {}: {e} (a move must stay on one file system: molt never copies the data it adopts)",
                from.display(),
                to.display()
            ))
        })?;
        sync_dir(parent(to)).map_err(|e| io_err("sync", parent(to), e))?;
        if parent(to) != parent(from) {
            sync_dir(parent(from)).map_err(|e| io_err("sync", parent(from), e))?;
        }
        Ok(())
    }
}

#[async_trait]
impl Step for MovePath {
    type Receipt = ();

    fn name(&self) -> String {
        format!("move {} to {}", self.rel_from, self.rel_to)
    }

    fn class(&self) -> StepClass {
        StepClass::Reversible
    }

    async fn apply(&self, _ctx: &StepCtx) -> Result<(), StepError> {
        match (exists(&self.from)?, exists(&self.to)?) {
            (true, false) => Self::rename(&self.from, &self.to),
            (false, true) => Ok(()),
            (true, true) => Err(StepError::new(format!(
                "both {} and {} exist; refusing to replace either",
                self.from.display(),
                self.to.display()
            ))),
            (false, false) => Err(StepError::new(format!(
                "{} is gone (and {} does not exist)",
                self.from.display(),
                self.to.display()
            ))),
        }
    }

    async fn undo(&self, _ctx: &StepCtx, _receipt: Option<()>) -> Result<(), StepError> {
        match (exists(&self.from)?, exists(&self.to)?) {
            (false, true) => Self::rename(&self.to, &self.from),
            (true, false) => Ok(()),
            (true, true) => Err(StepError::new(format!(
                "both {} and {} exist; cannot move it back",
                self.from.display(),
                self.to.display()
            ))),
            (false, false) => Err(StepError::new(format!(
                "neither {} nor {} exists",
                self.from.display(),
                self.to.display()
            ))),
        }
    }
}
