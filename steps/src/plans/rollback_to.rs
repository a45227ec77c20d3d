//! `rollback-to`: `molt rollback --to BACKUP` after a committed upgrade: the release a backup's
//! data belongs to, with that data. Writes made since the backup are lost (the cli says which
//! and asks first). A journaled run like any other: a failure or a crash before its end puts
//! the release that was serving back, with its data.
//!
//! ```text
//! load images, stage the backup (verified), stop, swap the data, switch current, start,
//! verify, commit, clean up (forward-only: the replaced data is removed)
//! ```

use super::services::target;
use super::{backup, Env};
use crate::error::Error;
use crate::services::{LoadImages, StartServices, StopServices};
use crate::switch_link::SwitchLink;
use crate::upgrade::{Commit, Installed, Verify};
use engine::{DynStep, StepClass};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

const ID: &str = "rollback-to";

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RollbackTo {
    pub project: String,
    pub backup: String,
    /// The release serving now (`releases/<v>`) and its version.
    pub from_release: String,
    pub from_version: String,
    /// The release the backup's data belongs to.
    pub to_release: String,
    pub to_version: String,
    /// The persistent paths the backup holds.
    pub paths: Vec<String>,
}

impl RollbackTo {
    pub(crate) fn steps(&self, env: &Env) -> Result<Vec<Box<dyn DynStep>>, Error> {
        let layout = backup::layout(env, &self.backup, ID)?;
        let from = target(env, &self.project, &self.from_release, ID)?;
        let to = target(env, &self.project, &self.to_release, ID)?;
        let downtime_start = env.scratch.join("downtime-start");
        let downtime_file = env.scratch.join("downtime-ms");
        Ok(vec![
            Box::new(LoadImages {
                target: to.clone(),
                scratch: env.scratch.clone(),
                registry: env.inst.images_registry(),
            }),
            Box::new(crate::backup::restore::Stage {
                layout: layout.clone(),
                scratch: env.scratch.clone(),
            }),
            Box::new(StopServices {
                target: from,
                only: vec![],
                standby: None,
                mark: Some(downtime_start.clone()),
            }),
            Box::new(crate::backup::restore::Swap {
                layout: layout.clone(),
                paths: self.paths.clone(),
                scratch: env.scratch.clone(),
            }),
            Box::new(SwitchLink {
                rel_link: "current".into(),
                link: env.inst.current_link(),
                target: PathBuf::from(&self.to_release),
                scratch: env.scratch.clone(),
                class: StepClass::Reversible,
            }),
            Box::new(StartServices {
                target: to.clone(),
                only: vec![],
                standby: None,
            }),
            Box::new(Verify {
                target: to,
                schema: None,
                downtime_start,
                downtime_file: downtime_file.clone(),
            }),
            Box::new(Commit {
                file: env.inst.installed_file(),
                installed: Installed {
                    format: crate::upgrade::commit::INSTALLED_FORMAT,
                    version: self.to_version.clone(),
                    release: self.to_release.clone(),
                    previous: Some(self.from_version.clone()),
                    backup: Some(self.backup.clone()),
                    run: env.run.0,
                    at_ms: 0,
                    downtime_ms: None,
                },
                downtime_file,
                scratch: env.scratch.clone(),
            }),
            Box::new(crate::backup::restore::Cleanup { layout }),
        ])
    }
}
