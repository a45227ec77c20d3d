//! `services`, `switch-services`, `images-load`, `images-prune`: the Docker plans
//! (`molt services`, `molt images`).

use super::{bad, Env};
use crate::error::Error;
use crate::fsutil::safe_relative;
use engine::DynStep;
use serde::{Deserialize, Serialize};

/// `molt services start|stop|restart`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServicesAction {
    Start,
    Stop,
    Restart,
}

/// A services action on one release (`release`: its directory, relative to the root).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Services {
    pub action: ServicesAction,
    pub project: String,
    pub release: String,
    #[serde(default)]
    pub only: Vec<String>,
}

pub(crate) fn target(
    env: &Env,
    project: &str,
    release: &str,
    plan: &str,
) -> Result<crate::services::Target, Error> {
    let rel = safe_relative(release).map_err(|reason| bad(plan, reason))?;
    if project.is_empty() {
        return Err(bad(plan, "empty compose project name"));
    }
    Ok(crate::services::Target {
        project: project.to_string(),
        dir: env.root.join(rel),
        label: release.to_string(),
        overlay: Some(env.inst.compose_override()),
    })
}

impl Services {
    pub(crate) fn steps(&self, env: &Env) -> Result<Vec<Box<dyn DynStep>>, Error> {
        use crate::services::{StartServices, StopServices, VerifyHealth};
        let t = target(env, &self.project, &self.release, "services")?;
        let only = self.only.clone();
        let stop = || {
            Box::new(StopServices {
                target: t.clone(),
                only: only.clone(),
                standby: None,
                mark: None,
            }) as Box<dyn DynStep>
        };
        let start = || {
            Box::new(StartServices {
                target: t.clone(),
                only: only.clone(),
                standby: None,
            }) as Box<dyn DynStep>
        };
        let verify = || {
            Box::new(VerifyHealth {
                target: t.clone(),
                only: only.clone(),
            }) as Box<dyn DynStep>
        };
        let steps = match self.action {
            ServicesAction::Start => vec![start(), verify()],
            ServicesAction::Stop => vec![stop()],
            ServicesAction::Restart => vec![stop(), start(), verify()],
        };
        Ok(steps)
    }
}

/// The cut-over core of an upgrade: load `to`'s images, stop `from`, start `to`, verify.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SwitchServices {
    pub project: String,
    pub from: String,
    pub to: String,
}

impl SwitchServices {
    pub(crate) fn steps(&self, env: &Env) -> Result<Vec<Box<dyn DynStep>>, Error> {
        use crate::services::{LoadImages, StartServices, StopServices, VerifyHealth};
        let from = target(env, &self.project, &self.from, "switch-services")?;
        let to = target(env, &self.project, &self.to, "switch-services")?;
        let steps: Vec<Box<dyn DynStep>> = vec![
            Box::new(LoadImages {
                target: to.clone(),
                scratch: env.scratch.clone(),
                registry: env.inst.images_registry(),
            }),
            Box::new(StopServices {
                target: from,
                only: vec![],
                standby: None,
                mark: None,
            }),
            Box::new(StartServices {
                target: to.clone(),
                only: vec![],
                standby: None,
            }),
            Box::new(VerifyHealth {
                target: to,
                only: vec![],
            }),
        ];
        Ok(steps)
    }
}

/// `molt images load`: load one release's image tarballs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImagesLoad {
    pub project: String,
    pub release: String,
}

impl ImagesLoad {
    pub(crate) fn steps(&self, env: &Env) -> Result<Vec<Box<dyn DynStep>>, Error> {
        let t = target(env, &self.project, &self.release, "images-load")?;
        let steps: Vec<Box<dyn DynStep>> = vec![Box::new(crate::services::LoadImages {
            target: t,
            scratch: env.scratch.clone(),
            registry: env.inst.images_registry(),
        })];
        Ok(steps)
    }
}

/// `molt images prune`: remove images molt loaded that no kept release uses.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImagesPrune {
    pub ids: Vec<String>,
}

impl ImagesPrune {
    pub(crate) fn steps(&self, _env: &Env) -> Result<Vec<Box<dyn DynStep>>, Error> {
        let steps: Vec<Box<dyn DynStep>> = vec![Box::new(crate::services::RemoveImages {
            ids: self.ids.clone(),
        })];
        Ok(steps)
    }
}
