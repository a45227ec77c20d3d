//! `schema-migrate`: `molt schema apply`, a live database brought to a schema file as one
//! pivot step, planned (and refused) first.

use super::{bad, Env};
use crate::error::Error;
use crate::schema::migrate::{Desired, MigrateSchema, PlanSchema};
use engine::DynStep;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// `molt schema apply`: migrate a live database to a schema file, as one pivot step.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchemaMigrate {
    /// The database URL without its password (see [`crate::schema::migrate`]).
    pub database_url: String,
    /// The desired schema (absolute path) and its sha256 when the plan was made.
    pub desired: PathBuf,
    pub desired_sha256: String,
    #[serde(default)]
    pub allow: crate::schema::diff::Allow,
    /// Seconds to wait for another migration's `GET_LOCK`.
    #[serde(default = "default_lock_wait")]
    pub lock_wait_secs: u64,
    /// Renames to make instead of a drop and an add (see `Schema::renames`).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub renames: std::collections::BTreeMap<String, String>,
}

pub(crate) fn default_lock_wait() -> u64 {
    30
}

/// The migrate step for a journaled, password-less URL: the full URL comes from the
/// installation; `index` is the step's position (its stash).
pub(crate) fn migrate_step(
    env: &Env,
    plan: &str,
    database_url: &str,
    desired: Desired,
    allow: &crate::schema::diff::Allow,
    lock_wait_secs: u64,
    index: usize,
) -> Result<MigrateSchema, Error> {
    if database_url != crate::install::redact(database_url) {
        return Err(bad(plan, "the plan must not hold the database password"));
    }
    Ok(MigrateSchema {
        database_url: database_url.to_string(),
        full_url: env.inst.database_url_for(database_url),
        desired,
        allow: allow.clone(),
        stash: crate::fsutil::Stash::new(&env.scratch, index),
        lock_wait: std::time::Duration::from_secs(lock_wait_secs),
    })
}

impl SchemaMigrate {
    pub(crate) fn steps(&self, env: &Env) -> Result<Vec<Box<dyn DynStep>>, Error> {
        // plan (and refuse) before the pivot, as the upgrade does before its downtime
        let migrate = migrate_step(
            env,
            "schema-migrate",
            &self.database_url,
            Desired::File {
                path: self.desired.clone(),
                sha256: self.desired_sha256.clone(),
                renames: self.renames.clone(),
            },
            &self.allow,
            self.lock_wait_secs,
            1,
        )?;
        Ok(vec![
            Box::new(PlanSchema {
                migrate: migrate.clone(),
            }),
            Box::new(migrate),
        ])
    }
}
