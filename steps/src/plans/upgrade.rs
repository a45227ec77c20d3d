//! `upgrade`: one release to the next (or the first release onto an empty installation) as
//! one journaled plan. It reads top to bottom; the check (signature, choice, preflight) runs
//! before the run starts, in [`super::check`] and the cli.
//!
//! ```text
//! staging, the old release serving:  download, stage, check release, load images,
//!                                     plan schema, pre-copy, create the new containers
//!                                     (stand-by, not started)
//! cut-over (downtime):                stop, final sync, restore point, merge configuration,
//!                                     switch current, start database, migrate (pivot),
//!                                     start, verify
//! commit:                             commit, housekeeping (forward-only)
//! ```
//!
//! A failure anywhere rolls back, last step first: the new services stop, the data sealed at
//! the stop comes back (undo of the restore point, with the database stopped), `current`
//! points at the old release again and it starts, healthy, on data byte-identical to the
//! moment of the stop. A crash once the migration began resumes forward (recovery policy),
//! and a failure after that still rolls back through the same undos.

use super::fetch::{check_version, FetchRelease};
use super::schema::{default_lock_wait, migrate_step};
use super::services::target;
use super::{backup, bad, Env};
use crate::backup::retention::Policy;
use crate::error::Error;
use crate::install::Installation;
use crate::schema::diff::Allow;
use crate::schema::migrate::{Desired, PlanSchema};
use crate::services::{LoadImages, StartServices, StopServices};
use crate::switch_link::SwitchLink;
use crate::upgrade::{
    CheckRelease, Commit, Housekeeping, Installed, MergeConfig, Orders, RestorePoint, Standby,
    StandbyRef, StartDatabase, Verify,
};
use engine::{DynStep, StepClass};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

const ID: &str = "upgrade";

/// The installed release an upgrade starts from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct From {
    pub version: String,
    /// `releases/<v>`, relative to the root.
    pub release: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Upgrade {
    pub project: String,
    /// `None`: a first install onto an empty installation.
    pub from: Option<From>,
    pub to: String,
    /// The package to download and stage; `None` when `releases/<to>` is already staged.
    pub fetch: Option<FetchRelease>,
    /// The backup taken at the stop (only with `from`).
    pub backup_id: Option<String>,
    pub backup_paths: Vec<String>,
    /// The database URL without its password, when the installation has a database.
    pub database_url: Option<String>,
    /// Destructive schema changes allowed (the release's list is added when the step runs).
    #[serde(default)]
    pub allow: Allow,
    #[serde(default = "default_lock_wait")]
    pub lock_wait_secs: u64,
    pub keep_releases: usize,
    pub keep_backups: usize,
    pub keep_backup_days: u64,
    /// `to` is older than `from` (the operator allowed it with `--allow-downgrade`).
    #[serde(default)]
    pub downgrade: bool,
}

impl Upgrade {
    /// The upgrade from what `inst` has installed to `to`.
    pub fn new(
        inst: &Installation,
        to: &str,
        fetch: Option<FetchRelease>,
    ) -> Result<Upgrade, String> {
        let from = inst.current()?.map(|(release, r)| From {
            version: r.version,
            release,
        });
        let backup_id = from
            .as_ref()
            .map(|f| format!("upgrade-{}-to-{}-{}", f.version, to, crate::now_ms()));
        let database_url = inst.database_url_journaled();
        let downgrade = match &from {
            Some(f) => {
                crate::version::Version::parse(to)? < crate::version::Version::parse(&f.version)?
            }
            None => false,
        };
        let mut allow = Allow::default();
        allow
            .subjects
            .extend(inst.config.upgrade.allow_destructive.iter().cloned());
        Ok(Upgrade {
            project: inst.project(),
            from,
            to: to.to_string(),
            fetch,
            backup_id,
            backup_paths: inst.config.backup.paths.clone(),
            database_url,
            allow,
            lock_wait_secs: inst.config.upgrade.schema_lock_wait_secs,
            keep_releases: inst.config.retention.keep_releases,
            keep_backups: inst.config.retention.keep_backups,
            keep_backup_days: inst.config.retention.keep_backup_days,
            downgrade,
        })
    }

    pub(crate) fn steps(&self, env: &Env) -> Result<Vec<Box<dyn DynStep>>, Error> {
        check_version(&self.to, ID)?;
        if self.from.is_some() != self.backup_id.is_some() {
            return Err(bad(
                ID,
                "an upgrade from a release needs a backup id, a first install has none",
            ));
        }
        let to_rel = Installation::release_rel(&self.to);
        let to = target(env, &self.project, &to_rel, ID)?;
        let to_dir = env.root.join(&to_rel);
        // the release's own allow list is added by the steps when they run
        let allow = self.allow.clone();
        let mut steps: Vec<Box<dyn DynStep>> = Vec::new();
        let downtime_start = env.scratch.join("downtime-start");
        let downtime_file = env.scratch.join("downtime-ms");

        // Staging: the old release keeps serving; a failure here costs nothing.
        if let Some(fetch) = &self.fetch {
            if fetch.version != self.to {
                return Err(bad(
                    ID,
                    format!("fetches {} for an upgrade to {}", fetch.version, self.to),
                ));
            }
            steps.extend(fetch.steps(env)?);
        }
        steps.push(Box::new(CheckRelease { target: to.clone() }));
        steps.push(Box::new(LoadImages {
            target: to.clone(),
            scratch: env.scratch.clone(),
            registry: env.inst.images_registry(),
        }));
        let migrate =
            |index: usize| -> Result<Option<crate::schema::migrate::MigrateSchema>, Error> {
                self.database_url
                    .as_deref()
                    .map(|url| {
                        migrate_step(
                            env,
                            ID,
                            url,
                            Desired::Release(to_dir.clone()),
                            &allow,
                            self.lock_wait_secs,
                            index,
                        )
                    })
                    .transpose()
            };
        let mut standby = None;
        let orders = Orders {
            dir: env.inst.start_orders_dir(),
        };
        let backup = match (&self.from, &self.backup_id) {
            (Some(from), Some(id)) => {
                let layout = backup::layout(env, id, ID)?;
                let old = target(env, &self.project, &from.release, ID)?;
                // Destructive findings are refused here, before any downtime.
                if let Some(m) = migrate(steps.len())? {
                    steps.push(Box::new(PlanSchema { migrate: m }));
                }
                steps.push(Box::new(crate::backup::precopy::PreCopy {
                    layout: layout.clone(),
                    paths: self.backup_paths.clone(),
                }));
                // The new containers, created while the old ones serve: the cut-over starts
                // them without running compose.
                let standby_ref = StandbyRef {
                    scratch: env.scratch.clone(),
                    step: steps.len(),
                };
                standby = Some(standby_ref.clone());
                steps.push(Box::new(Standby {
                    target: to.clone(),
                    old: old.clone(),
                    operator_env: env.inst.shared_dir().join(".env"),
                    scratch: env.scratch.clone(),
                    orders: orders.clone(),
                }));
                // The cut-over: downtime starts.
                steps.push(Box::new(StopServices {
                    target: old,
                    only: vec![],
                    standby: Some(standby_ref),
                    mark: Some(downtime_start.clone()),
                }));
                steps.push(Box::new(crate::backup::finalize::FinalSync {
                    layout: layout.clone(),
                }));
                steps.push(Box::new(RestorePoint {
                    layout: layout.clone(),
                    paths: self.backup_paths.clone(),
                    scratch: env.scratch.clone(),
                    release: crate::upgrade::restore_point::BackupOf {
                        version: from.version.clone(),
                        release: from.release.clone(),
                    },
                }));
                Some(layout)
            }
            _ => None,
        };
        steps.push(Box::new(MergeConfig {
            root: env.root.clone(),
            release: to_dir.clone(),
            scratch: env.scratch.clone(),
        }));
        steps.push(Box::new(SwitchLink {
            rel_link: "current".into(),
            link: env.inst.current_link(),
            target: PathBuf::from(&to_rel),
            scratch: env.scratch.clone(),
            class: StepClass::Reversible,
        }));
        steps.push(Box::new(StartDatabase {
            target: to.clone(),
            url: self
                .database_url
                .as_deref()
                .map(|u| env.inst.database_url_for(u)),
            standby: standby.clone(),
        }));
        let schema = migrate(steps.len())?;
        if let Some(m) = &schema {
            steps.push(Box::new(m.clone()));
        }
        steps.push(Box::new(StartServices {
            target: to.clone(),
            only: vec![],
            standby,
        }));
        steps.push(Box::new(Verify {
            target: to.clone(),
            schema,
            downtime_start,
            downtime_file: downtime_file.clone(),
        }));

        // Commit: the new release serves, verified.
        steps.push(Box::new(Commit {
            file: env.inst.installed_file(),
            installed: Installed {
                format: crate::upgrade::commit::INSTALLED_FORMAT,
                version: self.to.clone(),
                release: to_rel.clone(),
                previous: self.from.as_ref().map(|f| f.version.clone()),
                backup: self.backup_id.clone(),
                run: env.run.0,
                at_ms: 0,
                downtime_ms: None,
            },
            downtime_file,
            scratch: env.scratch.clone(),
        }));
        let mut keep = vec![to_rel];
        keep.extend(self.from.iter().map(|f| f.release.clone()));
        steps.push(Box::new(Housekeeping {
            root: env.root.clone(),
            project: self.project.clone(),
            backup,
            keep,
            keep_releases: self.keep_releases.max(1),
            backups: Policy {
                keep_last: self.keep_backups,
                keep_days: self.keep_backup_days,
            },
            images_registry: env.inst.images_registry(),
            installed: to,
            orders,
        }));
        Ok(steps)
    }
}
