//! The migrate step: bring a live database to the release's schema. A pivot: MySQL commits
//! every DDL statement by itself, so there is no transaction to roll back.
//!
//! # Contract
//! - `apply` loads the desired schema (a SQL file whose sha256 the plan recorded: a file that
//!   changed since is refused), takes `GET_LOCK`, records the live schema as it was before the
//!   first statement (once per run, in the step's stash), diffs, refuses destructive findings
//!   the [`Allow`] does not permit *before running anything*, then runs the statements one by
//!   one, appending each to an audit file (`statements.jsonl`, fdatasync'd before and after the
//!   statement). It ends by re-inspecting: the live schema must equal the desired one.
//! - Idempotent by construction: every attempt re-diffs the live database, so after a crash
//!   after statement k the next attempt plans and runs only what remains.
//! - `undo` migrates the database back to the schema recorded before the first statement (what
//!   the migration added is dropped, what it dropped comes back empty). Data that a migration
//!   dropped comes back only from a backup: the full upgrade pipeline's undo for this pivot is
//!   the backup restore. No recorded schema means no statement ran: nothing to undo.
//! - The database password is never journaled: the plan keeps the URL without it, and the step
//!   is given the full URL by the [`crate::Installation`] the plan is built from.

use super::diff::Allow;
use super::live::{self, Event, LiveError};
use super::model::Schema;
use super::sql::{load, LoadOptions};
use crate::fsutil::{sync_dir, write_atomic, Stash};
use async_trait::async_trait;
use engine::{Step, StepClass, StepCtx, StepError};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use crate::install::{redact, URL_ENV};

#[derive(Clone)]
pub struct MigrateSchema {
    /// The URL with its password removed (what the journal holds).
    pub database_url: String,
    /// The full URL, from the installation (see [`crate::Installation::database_url_for`]).
    pub full_url: crate::install::DatabaseUrl,
    pub desired: Desired,
    pub allow: Allow,
    pub stash: Stash,
    pub lock_wait: Duration,
}

/// Where the desired schema comes from.
#[derive(Clone, Debug)]
pub enum Desired {
    /// A file given to `molt schema apply`: its sha256 when the plan was made is checked;
    /// the renames given with it.
    File {
        path: PathBuf,
        sha256: String,
        renames: std::collections::BTreeMap<String, String>,
    },
    /// The `[database] schema` of a staged release (immutable once staged, verified by the
    /// staging); read when the step runs, since the release may not be staged when the plan
    /// is built.
    Release(PathBuf),
}

/// One line of the audit file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditLine {
    /// 1-based attempt of the step that ran it (`undo` attempts are negative).
    pub attempt: i64,
    pub index: usize,
    /// "intent", "done" or "failed".
    pub phase: String,
    pub sql: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// For an `ALTER TABLE`: the algorithm the server ran it with (`INSTANT`, `NOCOPY`,
    /// `INPLACE, LOCK=NONE`, `INPLACE`, `COPY`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub algorithm: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MigrateReceipt {
    /// Every statement run by this step in this run, over all attempts, from the audit file.
    pub statements: Vec<AuditLine>,
}

pub fn sha256_file(path: &Path) -> Result<String, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    Ok(sha256_hex(&bytes))
}

fn sha256_hex(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

impl MigrateSchema {
    /// The desired schema file; `None` when the release names no `[database] schema`.
    pub fn desired_path(&self) -> Result<Option<PathBuf>, StepError> {
        match &self.desired {
            Desired::File { path, .. } => Ok(Some(path.clone())),
            Desired::Release(dir) => {
                let release = crate::release::Release::load(dir).map_err(StepError::new)?;
                Ok(release.database.and_then(|d| d.schema).map(|s| dir.join(s)))
            }
        }
    }

    /// What may be destructive: the plan's allow list, plus, for a release's schema, the
    /// release's own `allow_destructive` (read when the step runs: the release may have been
    /// staged by an earlier step of the same run).
    pub fn allowed(&self) -> Result<Allow, StepError> {
        let mut allow = self.allow.clone();
        if let Desired::Release(dir) = &self.desired {
            let release = crate::release::Release::load(dir).map_err(StepError::new)?;
            allow.subjects.extend(release.allow_destructive);
        }
        Ok(allow)
    }

    /// Whether undoing this migration is left to restoring the data: the desired schema is a
    /// release's whose database is one of its own services (its files are in the backup the
    /// upgrade restores with the database stopped).
    fn undone_by_restore(&self) -> bool {
        match &self.desired {
            Desired::File { .. } => false,
            Desired::Release(dir) => crate::release::Release::load(dir)
                .map(|r| r.database.is_some_and(|d| !d.service.is_empty()))
                .unwrap_or(false),
        }
    }

    fn desired_schema(&self, default_db: Option<String>) -> Result<Schema, StepError> {
        let path = self
            .desired_path()?
            .ok_or_else(|| StepError::new("the release names no schema"))?;
        // One read: the bytes hashed are the bytes loaded.
        let bytes = std::fs::read(&path).map_err(|e| crate::io_err("read", &path, e))?;
        if let Desired::File { sha256, .. } = &self.desired {
            let got = sha256_hex(&bytes);
            if &got != sha256 {
                return Err(StepError::new(format!(
                    "{} changed since the plan was made (sha256 {got}, planned {sha256}); start a new run",
                    path.display(),
                )));
            }
        }
        let text = String::from_utf8(bytes)
            .map_err(|e| StepError::new(format!("{}: not UTF-8: {e}", path.display())))?;
        let mut schema = load(
            &text,
            &LoadOptions {
                default_database: default_db,
                ..Default::default()
            },
        )
        .map(|l| l.schema)
        .map_err(|e| StepError::new(format!("{}: {e}", path.display())))?;
        schema.renames = match &self.desired {
            Desired::Release(dir) => {
                crate::release::Release::load(dir)
                    .map_err(StepError::new)?
                    .renames
            }
            Desired::File { renames, .. } => renames.clone(),
        };
        Ok(schema)
    }

    fn audit_path(&self) -> PathBuf {
        self.stash.file("statements.jsonl")
    }

    fn before_path(&self) -> PathBuf {
        self.stash.file("before.json")
    }

    fn read_audit(&self) -> Result<Vec<AuditLine>, StepError> {
        match std::fs::read_to_string(self.audit_path()) {
            // A torn last line (crash while appending) is ignored.
            Ok(text) => Ok(text
                .lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(crate::io_err("read", &self.audit_path(), e)),
        }
    }

    fn append_audit(&self, line: &AuditLine) -> Result<(), String> {
        let path = self.audit_path();
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| format!("open {}: {e}", path.display()))?;
        let mut bytes = serde_json::to_vec(line).map_err(|e| e.to_string())?;
        bytes.push(b'\n');
        f.write_all(&bytes)
            .and_then(|()| f.sync_data())
            .map_err(|e| format!("write {}: {e}", path.display()))
    }

    pub async fn connect(&self) -> Result<mysql_async::Conn, StepError> {
        let url = self.full_url.get().map_err(StepError::new)?;
        live::connect(&url).await.map_err(|e| {
            let hint = if self.full_url.lacks_password() {
                format!(
                    " (the password is not journaled: set {URL_ENV} or molt.toml's database_url)"
                )
            } else {
                String::new()
            };
            StepError::new(format!("{e}{hint}"))
        })
    }

    pub fn load_desired(&self) -> Result<Schema, StepError> {
        let url = self.full_url.get().map_err(StepError::new)?;
        let default_db = live::url_database(&url).map_err(|e| StepError::new(e.to_string()))?;
        self.desired_schema(default_db)
    }

    async fn run(
        &self,
        desired: &Schema,
        allow: &Allow,
        attempt: i64,
        record_before: bool,
    ) -> Result<(), StepError> {
        let fail = |e: LiveError| StepError::new(e.to_string());
        let mut conn = self.connect().await?;
        live::lock(&mut conn, self.lock_wait).await.map_err(fail)?;
        let result = async {
            if record_before && !self.before_path().exists() {
                let dbs: Vec<String> = desired.databases.keys().cloned().collect();
                let mut before = live::inspect(&mut conn, &dbs).await.map_err(fail)?;
                // A database the migration creates is empty "before": undo empties it.
                for (name, db) in &desired.databases {
                    before.databases.entry(name.clone()).or_insert_with(|| {
                        super::model::Database {
                            name: name.clone(),
                            charset: db.charset.clone(),
                            collation: db.collation.clone(),
                            ..Default::default()
                        }
                    });
                }
                // Undo renames back, keeping the data as the migration did.
                before.renames = super::diff::inverse_renames(&desired.renames);
                self.stash
                    .prepare()
                    .map_err(|e| crate::io_err("create", &self.before_path(), e))?;
                let bytes =
                    serde_json::to_vec(&before).map_err(|e| StepError::new(e.to_string()))?;
                write_atomic(&self.before_path(), &bytes)
                    .map_err(|e| crate::io_err("write", &self.before_path(), e))?;
            }
            self.stash
                .prepare()
                .map_err(|e| crate::io_err("create", &self.audit_path(), e))?;
            let mut audit = |e: Event<'_>| -> Result<(), String> {
                let (index, phase, change, ms, error, algorithm) = match e {
                    Event::Before { index, change } => (index, "intent", change, None, None, None),
                    Event::After {
                        index,
                        change,
                        elapsed,
                        algorithm,
                    } => (
                        index,
                        "done",
                        change,
                        Some(elapsed.as_millis() as u64),
                        None,
                        algorithm,
                    ),
                    Event::Failed {
                        index,
                        change,
                        error,
                    } => (index, "failed", change, None, Some(error), None),
                };
                let line = AuditLine {
                    attempt,
                    index,
                    phase: phase.into(),
                    sql: change.sql.clone(),
                    ms,
                    error,
                    algorithm: algorithm.map(|a| a.name().to_string()),
                };
                let done = line.phase == "done";
                self.append_audit(&line)?;
                if done {
                    engine::failpoint("steps::schema::statement_done");
                }
                Ok(())
            };
            live::apply(&mut conn, desired, allow, &mut audit)
                .await
                .map_err(fail)?;
            Ok(())
        }
        .await;
        live::unlock(&mut conn).await;
        let _ = conn.disconnect().await;
        result
    }
}

/// The schema check before any downtime: plan the migration against the live database and
/// refuse destructive findings the [`Allow`] does not permit. Reads only, so `undo` has nothing
/// to reverse; its receipt is the plan, for the audit.
pub struct PlanSchema {
    /// The migration it checks (same URL, file and allow list).
    pub migrate: MigrateSchema,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanReceipt {
    pub statements: Vec<String>,
    /// Destructive findings the allow list permitted.
    pub allowed: Vec<String>,
}

#[async_trait]
impl Step for PlanSchema {
    type Receipt = PlanReceipt;

    fn name(&self) -> String {
        "plan schema".into()
    }

    fn class(&self) -> StepClass {
        StepClass::Reversible
    }

    async fn apply(&self, _ctx: &StepCtx) -> Result<PlanReceipt, StepError> {
        if self.migrate.desired_path()?.is_none() {
            return Ok(PlanReceipt {
                statements: Vec::new(),
                allowed: Vec::new(),
            });
        }
        let desired = self.migrate.load_desired()?;
        let mut conn = self.migrate.connect().await?;
        let planned = live::plan(&mut conn, &desired).await;
        let _ = conn.disconnect().await;
        let (_, m) = planned.map_err(|e| StepError::new(e.to_string()))?;
        let allow = self.migrate.allowed()?;
        let refused = m.refused(&allow);
        if !refused.is_empty() {
            let reasons: Vec<String> = refused.iter().map(|d| d.reason.clone()).collect();
            return Err(StepError::new(LiveError::Destructive(reasons).to_string()));
        }
        Ok(PlanReceipt {
            statements: m.statements().into_iter().map(str::to_string).collect(),
            allowed: m.destructive().iter().map(|d| d.reason.clone()).collect(),
        })
    }

    async fn undo(&self, _ctx: &StepCtx, _receipt: Option<PlanReceipt>) -> Result<(), StepError> {
        Ok(()) // planning changed nothing
    }
}

#[async_trait]
impl Step for MigrateSchema {
    type Receipt = MigrateReceipt;

    fn name(&self) -> String {
        match &self.desired {
            Desired::File { path, .. } => format!(
                "migrate schema to {}",
                path.file_name()
                    .map(|n| n.to_string_lossy())
                    .unwrap_or_default()
            ),
            Desired::Release(dir) => format!(
                "migrate schema to release {}",
                dir.file_name()
                    .map(|n| n.to_string_lossy())
                    .unwrap_or_default()
            ),
        }
    }

    fn class(&self) -> StepClass {
        StepClass::Pivot
    }

    async fn apply(&self, ctx: &StepCtx) -> Result<MigrateReceipt, StepError> {
        if self.desired_path()?.is_none() {
            return Ok(MigrateReceipt {
                statements: Vec::new(),
            });
        }
        let desired = self.load_desired()?;
        self.run(&desired, &self.allowed()?, ctx.attempt as i64, true)
            .await?;
        if let Some(dir) = self.audit_path().parent() {
            let _ = sync_dir(dir);
        }
        Ok(MigrateReceipt {
            statements: self
                .read_audit()?
                .into_iter()
                .filter(|l| l.attempt > 0)
                .collect(),
        })
    }

    async fn undo(&self, ctx: &StepCtx, _receipt: Option<MigrateReceipt>) -> Result<(), StepError> {
        if self.undone_by_restore() {
            return Ok(());
        }
        let before: Schema = match std::fs::read(self.before_path()) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| StepError::new(format!("{}: {e}", self.before_path().display())))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(crate::io_err("read", &self.before_path(), e)),
        };
        // Going back drops what the migration added: permitted, it is the undo.
        self.run(
            &before,
            &Allow {
                all: true,
                subjects: Vec::new(),
            },
            -(ctx.attempt as i64),
            false,
        )
        .await
    }
}
