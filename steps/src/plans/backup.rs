//! `backup-create`, `backup-restore`, `backup-prune`: the backup plans (`molt backup`).

use super::{bad, Env};
use crate::error::Error;
use crate::fsutil::safe_relative;
use crate::remove_path::RemovePath;
use engine::DynStep;
use serde::{Deserialize, Serialize};

/// A backup's layout, its id checked.
pub(crate) fn layout(env: &Env, id: &str, plan: &str) -> Result<crate::backup::Layout, Error> {
    crate::backup::valid_id(id).map_err(|reason| bad(plan, reason))?;
    Ok(crate::backup::Layout::new(&env.root, id))
}

/// `molt backup create`: a backup of `paths` (relative to the root) named `id`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupCreate {
    pub id: String,
    pub paths: Vec<String>,
    pub compress: bool,
}

impl BackupCreate {
    pub(crate) fn steps(&self, env: &Env) -> Result<Vec<Box<dyn DynStep>>, Error> {
        let layout = layout(env, &self.id, "backup-create")?;
        for p in &self.paths {
            safe_relative(p).map_err(|reason| bad("backup-create", reason))?;
        }
        let mut steps: Vec<Box<dyn DynStep>> = vec![
            Box::new(crate::backup::precopy::PreCopy {
                layout: layout.clone(),
                paths: self.paths.clone(),
            }),
            Box::new(crate::backup::finalize::FinalSync {
                layout: layout.clone(),
            }),
        ];
        if self.compress {
            steps.push(Box::new(crate::backup::compress::Compress {
                layout,
                level: 3,
            }));
        }
        Ok(steps)
    }
}

/// `molt backup restore`: put backup `id` in place of its `paths`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupRestore {
    pub id: String,
    pub paths: Vec<String>,
}

impl BackupRestore {
    pub(crate) fn steps(&self, env: &Env) -> Result<Vec<Box<dyn DynStep>>, Error> {
        let layout = layout(env, &self.id, "backup-restore")?;
        Ok(vec![
            Box::new(crate::backup::restore::Stage {
                layout: layout.clone(),
                scratch: env.scratch.clone(),
            }),
            Box::new(crate::backup::restore::Swap {
                layout: layout.clone(),
                paths: self.paths.clone(),
                scratch: env.scratch.clone(),
            }),
            Box::new(crate::backup::restore::Cleanup { layout }),
        ])
    }
}

/// `molt backup prune`: delete the named backups.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupPrune {
    pub ids: Vec<String>,
}

impl BackupPrune {
    pub(crate) fn steps(&self, env: &Env) -> Result<Vec<Box<dyn DynStep>>, Error> {
        let mut steps: Vec<Box<dyn DynStep>> = Vec::new();
        for id in &self.ids {
            layout(env, id, "backup-prune")?;
            let rel = format!("backups/{id}");
            steps.push(Box::new(RemovePath {
                path: env.root.join(&rel),
                rel,
            }));
        }
        Ok(steps)
    }
}
