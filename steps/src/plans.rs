//! The plan registry: plan id + JSON spec -> steps. The dispatcher that lets a fresh process
//! rebuild the plan of a run from its `run_started` record.
//!
//! Known plans:
//! - `fs-script` (v1): an operator- or test-written list of file-system operations
//!   ([`FsScript`]), used by `molt exec`, the demo and the crash tests.
//! - `backup-create`: pre-copy, final sync, compress ([`BackupCreate`]).
//! - `backup-restore`: stage, swap, cleanup ([`BackupRestore`]).
//! - `backup-prune`: remove backup directories chosen by the retention policy ([`BackupPrune`]).
//! - `services`: start / stop / restart a release's services ([`Services`]).
//! - `switch-services`: load images, stop one release, start another, verify ([`SwitchServices`]).
//! - `images-load`, `images-prune`: [`ImagesLoad`], [`ImagesPrune`].
//! - `fetch`: download a package and stage the release it holds ([`FetchRelease`]).
//! - `schema-migrate`: bring a live database to a schema file ([`SchemaMigrate`], a pivot).

use crate::copy_tree::CopyTree;
use crate::error::Error;
use crate::fsutil::safe_relative;
use crate::remove_path::RemovePath;
use crate::switch_link::SwitchLink;
use crate::verify_file::VerifyFile;
use crate::write_file::WriteFile;
use engine::{DynStep, Plan, RunId, StepClass};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub const FS_SCRIPT: &str = "fs-script";
pub const BACKUP_CREATE: &str = "backup-create";
pub const BACKUP_RESTORE: &str = "backup-restore";
pub const BACKUP_PRUNE: &str = "backup-prune";
pub const SERVICES: &str = "services";
pub const SWITCH_SERVICES: &str = "switch-services";
pub const IMAGES_LOAD: &str = "images-load";
pub const IMAGES_PRUNE: &str = "images-prune";
pub const FETCH: &str = "fetch";
pub const SCHEMA_MIGRATE: &str = "schema-migrate";
const KNOWN: &[&str] = &[
    FS_SCRIPT,
    BACKUP_CREATE,
    BACKUP_RESTORE,
    BACKUP_PRUNE,
    SERVICES,
    SWITCH_SERVICES,
    IMAGES_LOAD,
    IMAGES_PRUNE,
    FETCH,
    SCHEMA_MIGRATE,
];

/// Where a plan's steps act.
#[derive(Clone, Debug)]
pub struct Env {
    /// The run the plan is built for.
    pub run: RunId,
    /// The installation root.
    pub root: PathBuf,
    /// The run's scratch directory (`cache/runs/<run>`), for stashes.
    pub scratch: PathBuf,
}

impl Env {
    pub fn new(root: &Path, run: RunId) -> Env {
        Env {
            run,
            root: root.to_path_buf(),
            scratch: scratch_dir(root, run),
        }
    }
}

/// The scratch directory of a run (removed once the run is terminal).
pub fn scratch_dir(root: &Path, run: RunId) -> PathBuf {
    root.join("cache").join("runs").join(run.to_string())
}

/// A plan of file-system operations, all paths relative to the installation root.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FsScript {
    #[serde(default)]
    pub name: String,
    #[serde(rename = "step")]
    pub steps: Vec<FsOp>,
}

/// One operation of an [`FsScript`]. `pivot = true` marks a reversible operation as the run's
/// pivot (recovery past it rolls forward).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum FsOp {
    WriteFile {
        path: String,
        contents: String,
        #[serde(default)]
        pivot: bool,
    },
    CopyTree {
        from: String,
        to: String,
        #[serde(default)]
        pivot: bool,
    },
    SwitchLink {
        link: String,
        target: String,
        #[serde(default)]
        pivot: bool,
    },
    VerifyFile {
        path: String,
        sha256: String,
    },
    RemovePath {
        path: String,
    },
}

impl FsScript {
    /// Parse the TOML form (`[[step]] op = "write_file" ...`).
    pub fn from_toml(text: &str) -> Result<FsScript, Error> {
        toml::from_str(text).map_err(|e| Error::BadSpec {
            id: FS_SCRIPT.into(),
            reason: e.to_string(),
        })
    }

    /// Build the plan for run `env`.
    pub fn plan(&self, env: &Env) -> Result<Plan, Error> {
        let spec = to_spec(self);
        let steps = self
            .steps
            .iter()
            .map(|op| op.step(env))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Plan::new(FS_SCRIPT, spec, steps)?)
    }
}

fn class(pivot: bool) -> StepClass {
    if pivot {
        StepClass::Pivot
    } else {
        StepClass::Reversible
    }
}

impl FsOp {
    fn step(&self, env: &Env) -> Result<Box<dyn DynStep>, Error> {
        let path = |p: &str| {
            safe_relative(p)
                .map(|r| env.root.join(r))
                .map_err(|reason| Error::BadSpec {
                    id: FS_SCRIPT.into(),
                    reason,
                })
        };
        let scratch = env.scratch.clone();
        Ok(match self {
            FsOp::WriteFile {
                path: p,
                contents,
                pivot,
            } => Box::new(WriteFile {
                rel: p.clone(),
                path: path(p)?,
                contents: contents.clone().into_bytes(),
                scratch,
                class: class(*pivot),
            }),
            FsOp::CopyTree { from, to, pivot } => Box::new(CopyTree {
                rel_from: from.clone(),
                rel_to: to.clone(),
                from: path(from)?,
                to: path(to)?,
                scratch,
                class: class(*pivot),
            }),
            FsOp::SwitchLink {
                link,
                target,
                pivot,
            } => {
                if Path::new(target).is_absolute() {
                    return Err(Error::BadSpec {
                        id: FS_SCRIPT.into(),
                        reason: format!("link target {target:?} must be relative"),
                    });
                }
                Box::new(SwitchLink {
                    rel_link: link.clone(),
                    link: path(link)?,
                    target: PathBuf::from(target),
                    scratch,
                    class: class(*pivot),
                })
            }
            FsOp::VerifyFile { path: p, sha256 } => Box::new(VerifyFile {
                rel: p.clone(),
                path: path(p)?,
                sha256: sha256.clone(),
            }),
            FsOp::RemovePath { path: p } => Box::new(RemovePath {
                rel: p.clone(),
                path: path(p)?,
            }),
        })
    }
}

/// `molt backup create`: a backup of `paths` (relative to the root) named `id`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupCreate {
    pub id: String,
    pub paths: Vec<String>,
    pub compress: bool,
}

impl BackupCreate {
    pub fn plan(&self, env: &Env) -> Result<Plan, Error> {
        let layout = backup_layout(env, &self.id, BACKUP_CREATE)?;
        for p in &self.paths {
            safe_relative(p).map_err(|reason| Error::BadSpec {
                id: BACKUP_CREATE.into(),
                reason,
            })?;
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
        Ok(Plan::new(BACKUP_CREATE, to_spec(self), steps)?)
    }
}

/// `molt backup restore`: put backup `id` in place of its `paths`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupRestore {
    pub id: String,
    pub paths: Vec<String>,
}

impl BackupRestore {
    pub fn plan(&self, env: &Env) -> Result<Plan, Error> {
        let layout = backup_layout(env, &self.id, BACKUP_RESTORE)?;
        let steps: Vec<Box<dyn DynStep>> = vec![
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
        ];
        Ok(Plan::new(BACKUP_RESTORE, to_spec(self), steps)?)
    }
}

/// `molt backup prune`: delete the named backups.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupPrune {
    pub ids: Vec<String>,
}

impl BackupPrune {
    pub fn plan(&self, env: &Env) -> Result<Plan, Error> {
        let mut steps: Vec<Box<dyn DynStep>> = Vec::new();
        for id in &self.ids {
            backup_layout(env, id, BACKUP_PRUNE)?;
            let rel = format!("backups/{id}");
            steps.push(Box::new(RemovePath {
                path: env.root.join(&rel),
                rel,
            }));
        }
        Ok(Plan::new(BACKUP_PRUNE, to_spec(self), steps)?)
    }
}

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

fn target(
    env: &Env,
    project: &str,
    release: &str,
    plan: &str,
) -> Result<crate::services::Target, Error> {
    let rel = safe_relative(release).map_err(|reason| Error::BadSpec {
        id: plan.into(),
        reason,
    })?;
    if project.is_empty() {
        return Err(Error::BadSpec {
            id: plan.into(),
            reason: "empty compose project name".into(),
        });
    }
    Ok(crate::services::Target {
        project: project.to_string(),
        dir: env.root.join(rel),
        label: release.to_string(),
    })
}

impl Services {
    pub fn plan(&self, env: &Env) -> Result<Plan, Error> {
        use crate::services::{StartServices, StopServices, VerifyHealth};
        let t = target(env, &self.project, &self.release, SERVICES)?;
        let only = self.only.clone();
        let stop = || {
            Box::new(StopServices {
                target: t.clone(),
                only: only.clone(),
            }) as Box<dyn DynStep>
        };
        let start = || {
            Box::new(StartServices {
                target: t.clone(),
                only: only.clone(),
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
        Ok(Plan::new(SERVICES, to_spec(self), steps)?)
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
    pub fn plan(&self, env: &Env) -> Result<Plan, Error> {
        use crate::services::{LoadImages, StartServices, StopServices, VerifyHealth};
        let from = target(env, &self.project, &self.from, SWITCH_SERVICES)?;
        let to = target(env, &self.project, &self.to, SWITCH_SERVICES)?;
        let steps: Vec<Box<dyn DynStep>> = vec![
            Box::new(LoadImages {
                target: to.clone(),
                scratch: env.scratch.clone(),
                registry: images_registry(&env.root),
            }),
            Box::new(StopServices {
                target: from,
                only: vec![],
            }),
            Box::new(StartServices {
                target: to.clone(),
                only: vec![],
            }),
            Box::new(VerifyHealth {
                target: to,
                only: vec![],
            }),
        ];
        Ok(Plan::new(SWITCH_SERVICES, to_spec(self), steps)?)
    }
}

/// Where an installation records the images molt loaded.
pub fn images_registry(root: &Path) -> PathBuf {
    root.join("images.json")
}

/// `molt images load`: load one release's image tarballs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImagesLoad {
    pub project: String,
    pub release: String,
}

impl ImagesLoad {
    pub fn plan(&self, env: &Env) -> Result<Plan, Error> {
        let t = target(env, &self.project, &self.release, IMAGES_LOAD)?;
        let steps: Vec<Box<dyn DynStep>> = vec![Box::new(crate::services::LoadImages {
            target: t,
            scratch: env.scratch.clone(),
            registry: images_registry(&env.root),
        })];
        Ok(Plan::new(IMAGES_LOAD, to_spec(self), steps)?)
    }
}

/// `molt images prune`: remove images molt loaded that no kept release uses.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImagesPrune {
    pub ids: Vec<String>,
}

impl ImagesPrune {
    pub fn plan(&self, _env: &Env) -> Result<Plan, Error> {
        let steps: Vec<Box<dyn DynStep>> = vec![Box::new(crate::services::RemoveImages {
            ids: self.ids.clone(),
        })];
        Ok(Plan::new(IMAGES_PRUNE, to_spec(self), steps)?)
    }
}

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
}

fn default_lock_wait() -> u64 {
    30
}

impl SchemaMigrate {
    pub fn plan(&self, env: &Env) -> Result<Plan, Error> {
        if self.database_url != crate::schema::migrate::redact(&self.database_url) {
            return Err(Error::BadSpec {
                id: SCHEMA_MIGRATE.into(),
                reason: "the plan must not hold the database password".into(),
            });
        }
        let migrate = crate::schema::migrate::MigrateSchema {
            database_url: self.database_url.clone(),
            desired: self.desired.clone(),
            desired_sha256: self.desired_sha256.clone(),
            allow: self.allow.clone(),
            root: env.root.clone(),
            stash: crate::fsutil::Stash::new(&env.scratch, 1),
            lock_wait: std::time::Duration::from_secs(self.lock_wait_secs),
        };
        // plan (and refuse) before the pivot, as the upgrade does before its downtime
        let steps: Vec<Box<dyn DynStep>> = vec![
            Box::new(crate::schema::migrate::PlanSchema {
                migrate: migrate.clone(),
            }),
            Box::new(migrate),
        ];
        Ok(Plan::new(SCHEMA_MIGRATE, to_spec(self), steps)?)
    }
}

/// `molt fetch`: download the chosen package (already resolved to a URL) and stage it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FetchRelease {
    pub version: String,
    pub url: String,
    pub size: u64,
    pub sha256: String,
    pub source: crate::fetch::Source,
    /// Seconds without a byte before a download attempt is abandoned and retried.
    #[serde(default = "default_stall")]
    pub stall_timeout_secs: u64,
    #[serde(default = "default_retries")]
    pub retries: u32,
}

fn default_stall() -> u64 {
    30
}

fn default_retries() -> u32 {
    5
}

impl FetchRelease {
    /// Where the verified package is cached (named by its hash, so a retry reuses it).
    pub fn cached(&self, root: &Path) -> PathBuf {
        root.join("cache")
            .join("packages")
            .join(format!("{}.tar.zst", self.sha256))
    }

    pub fn plan(&self, env: &Env) -> Result<Plan, Error> {
        crate::version::Version::parse(&self.version).map_err(|reason| Error::BadSpec {
            id: FETCH.into(),
            reason,
        })?;
        if self.version.contains('/') || self.version.starts_with('.') {
            return Err(Error::BadSpec {
                id: FETCH.into(),
                reason: format!("version {:?} cannot name a directory", self.version),
            });
        }
        crate::manifest::check_url(&self.url).map_err(|reason| Error::BadSpec {
            id: FETCH.into(),
            reason,
        })?;
        let dest = self.cached(&env.root);
        let steps: Vec<Box<dyn DynStep>> = vec![
            Box::new(crate::fetch::Download {
                fetch: crate::http::Fetch {
                    retries: self.retries,
                    stall_timeout: std::time::Duration::from_secs(self.stall_timeout_secs.max(1)),
                    ..crate::http::Fetch::new(&self.url, &dest, self.size, &self.sha256)
                },
            }),
            Box::new(crate::fetch::Stage {
                root: env.root.clone(),
                version: self.version.clone(),
                package: dest,
                source: self.source.clone(),
                scratch: env.scratch.clone(),
            }),
        ];
        Ok(Plan::new(FETCH, to_spec(self), steps)?)
    }
}

fn backup_layout(env: &Env, id: &str, plan: &str) -> Result<crate::backup::Layout, Error> {
    crate::backup::valid_id(id).map_err(|reason| Error::BadSpec {
        id: plan.into(),
        reason,
    })?;
    Ok(crate::backup::Layout::new(&env.root, id))
}

fn to_spec<T: Serialize>(spec: &T) -> serde_json::Value {
    serde_json::to_value(spec).expect("plan specs encode")
}

fn from_spec<T: serde::de::DeserializeOwned>(
    id: &str,
    spec: &serde_json::Value,
) -> Result<T, Error> {
    serde_json::from_value(spec.clone()).map_err(|e| Error::BadSpec {
        id: id.into(),
        reason: e.to_string(),
    })
}

/// Rebuild the plan a journal describes: `id` and `spec` come from its `run_started` record.
pub fn build(id: &str, spec: &serde_json::Value, env: &Env) -> Result<Plan, Error> {
    match id {
        FS_SCRIPT => from_spec::<FsScript>(id, spec)?.plan(env),
        BACKUP_CREATE => from_spec::<BackupCreate>(id, spec)?.plan(env),
        BACKUP_RESTORE => from_spec::<BackupRestore>(id, spec)?.plan(env),
        BACKUP_PRUNE => from_spec::<BackupPrune>(id, spec)?.plan(env),
        SERVICES => from_spec::<Services>(id, spec)?.plan(env),
        SWITCH_SERVICES => from_spec::<SwitchServices>(id, spec)?.plan(env),
        IMAGES_LOAD => from_spec::<ImagesLoad>(id, spec)?.plan(env),
        IMAGES_PRUNE => from_spec::<ImagesPrune>(id, spec)?.plan(env),
        FETCH => from_spec::<FetchRelease>(id, spec)?.plan(env),
        SCHEMA_MIGRATE => from_spec::<SchemaMigrate>(id, spec)?.plan(env),
        _ => Err(Error::UnknownPlan {
            id: id.into(),
            known: KNOWN.join(", "),
        }),
    }
}
