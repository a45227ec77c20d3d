//! The ops layer: one file per plan, each turning its spec (the parameters journaled in the
//! run's `run_started` record) and an [`Installation`] into steps. [`PlanSpec`] is the
//! dispatcher, a serde-tagged enum, so that a fresh process rebuilds the plan of a run from
//! the journal alone.
//!
//! - `fs-script` ([`FsScript`]): operator- or test-written file-system operations (`molt exec`).
//! - `backup-create`, `backup-restore`, `backup-prune` ([`backup`]).
//! - `services`, `switch-services`, `images-load`, `images-prune` ([`services`]).
//! - `fetch` ([`FetchRelease`]): download a package and stage the release it holds.
//! - `schema-migrate` ([`SchemaMigrate`]): bring a live database to a schema file (a pivot).
//! - `upgrade` ([`Upgrade`]): the whole upgrade, check to commit (`upgrade.rs`).
//! - `rollback-to` ([`RollbackTo`]): after a commit, back to a backup's release and data.
//! - `adopt` ([`Adopt`]): an existing compose directory moved into molt's layout in place.

pub mod adopt;
pub mod backup;
pub mod check;
pub mod fetch;
pub mod fs_script;
pub mod rollback_to;
pub mod schema;
pub mod services;
pub mod upgrade;

pub use adopt::Adopt;
pub use backup::{BackupCreate, BackupPrune, BackupRestore};
pub use fetch::FetchRelease;
pub use fs_script::{FsOp, FsScript};
pub use rollback_to::RollbackTo;
pub use schema::SchemaMigrate;
pub use services::{ImagesLoad, ImagesPrune, Services, ServicesAction, SwitchServices};
pub use upgrade::Upgrade;

use crate::error::Error;
use crate::install::Installation;
use engine::{DynStep, Plan, RunId};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Where a plan's steps act: the installation and the run.
#[derive(Clone, Debug)]
pub struct Env {
    /// The run the plan is built for.
    pub run: RunId,
    pub inst: Installation,
    /// The installation root (`inst.root`).
    pub root: PathBuf,
    /// The run's scratch directory (`cache/runs/<run>`); step `i` stashes in `step-<i>/`.
    pub scratch: PathBuf,
}

impl Env {
    pub fn new(inst: &Installation, run: RunId) -> Env {
        Env {
            run,
            inst: inst.clone(),
            root: inst.root.clone(),
            scratch: inst.scratch(run),
        }
    }
}

/// Every plan molt knows, tagged by its id; the spec is what the journal keeps.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "id", content = "spec", rename_all = "kebab-case")]
pub enum PlanSpec {
    FsScript(FsScript),
    BackupCreate(BackupCreate),
    BackupRestore(BackupRestore),
    BackupPrune(BackupPrune),
    Services(Services),
    SwitchServices(SwitchServices),
    ImagesLoad(ImagesLoad),
    ImagesPrune(ImagesPrune),
    Fetch(FetchRelease),
    SchemaMigrate(SchemaMigrate),
    Upgrade(Box<Upgrade>),
    RollbackTo(RollbackTo),
    Adopt(Adopt),
}

impl PlanSpec {
    fn steps(&self, env: &Env) -> Result<Vec<Box<dyn DynStep>>, Error> {
        match self {
            PlanSpec::FsScript(s) => s.steps(env),
            PlanSpec::BackupCreate(s) => s.steps(env),
            PlanSpec::BackupRestore(s) => s.steps(env),
            PlanSpec::BackupPrune(s) => s.steps(env),
            PlanSpec::Services(s) => s.steps(env),
            PlanSpec::SwitchServices(s) => s.steps(env),
            PlanSpec::ImagesLoad(s) => s.steps(env),
            PlanSpec::ImagesPrune(s) => s.steps(env),
            PlanSpec::Fetch(s) => s.steps(env),
            PlanSpec::SchemaMigrate(s) => s.steps(env),
            PlanSpec::Upgrade(s) => s.steps(env),
            PlanSpec::RollbackTo(s) => s.steps(env),
            PlanSpec::Adopt(s) => s.steps(env),
        }
    }

    /// The plan id (`fs-script`, `upgrade`, ...).
    pub fn id(&self) -> String {
        let (id, _) = self.parts();
        id
    }

    fn parts(&self) -> (String, serde_json::Value) {
        let mut v = serde_json::to_value(self).expect("plan specs encode");
        let id = v["id"].as_str().unwrap_or_default().to_string();
        (id, v["spec"].take())
    }

    /// Build the plan for run `env`.
    pub fn plan(&self, env: &Env) -> Result<Plan, Error> {
        let (id, spec) = self.parts();
        Ok(Plan::new(id, spec, self.steps(env)?)?)
    }

    /// The spec a journal's `run_started` record describes.
    pub fn from_journal(id: &str, spec: &serde_json::Value) -> Result<PlanSpec, Error> {
        serde_json::from_value(serde_json::json!({ "id": id, "spec": spec })).map_err(|e| {
            let msg = e.to_string();
            match msg.strip_prefix("unknown variant ") {
                Some(rest) => Error::UnknownPlan {
                    id: id.into(),
                    known: rest
                        .split_once("expected one of ")
                        .map_or(rest, |(_, k)| k)
                        .replace('`', ""),
                },
                None => Error::BadSpec {
                    id: id.into(),
                    reason: msg,
                },
            }
        })
    }
}

/// Rebuild the plan a journal describes: `id` and `spec` come from its `run_started` record.
pub fn build(id: &str, spec: &serde_json::Value, env: &Env) -> Result<Plan, Error> {
    PlanSpec::from_journal(id, spec)?.plan(env)
}

fn bad(id: &str, reason: impl Into<String>) -> Error {
    Error::BadSpec {
        id: id.into(),
        reason: reason.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_the_journals_and_unknown_ones_are_named() {
        let spec = PlanSpec::ImagesPrune(ImagesPrune { ids: vec![] });
        assert_eq!(spec.id(), "images-prune");
        let back = PlanSpec::from_journal("images-prune", &serde_json::json!({"ids": []})).unwrap();
        assert_eq!(back.id(), "images-prune");
        match PlanSpec::from_journal("teleport", &serde_json::json!({})) {
            Err(Error::UnknownPlan { id, known }) => {
                assert_eq!(id, "teleport");
                assert!(
                    known.contains("upgrade") && known.contains("fs-script"),
                    "{known}"
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            PlanSpec::from_journal("images-prune", &serde_json::json!({"idz": 1})),
            Err(Error::BadSpec { .. })
        ));
    }
}
