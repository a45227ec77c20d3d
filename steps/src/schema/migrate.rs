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
//!   takes the full URL from `MOLT_DATABASE_URL` or the installation's `molt.toml`.

use super::diff::Allow;
use super::live::{self, Event, LiveError};
use super::model::Schema;
use super::sql::{load, LoadOptions};
use crate::fsutil::{sync_dir, write_atomic, Stash};
use async_trait::async_trait;
use engine::{Step, StepClass, StepCtx, StepError};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Environment variable holding the full database URL (with password).
pub const URL_ENV: &str = "MOLT_DATABASE_URL";

#[derive(Clone, Debug)]
pub struct MigrateSchema {
    /// The URL with its password removed.
    pub database_url: String,
    pub desired: PathBuf,
    pub desired_sha256: String,
    pub allow: Allow,
    pub root: PathBuf,
    pub stash: Stash,
    pub lock_wait: Duration,
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
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MigrateReceipt {
    /// Every statement run by this step in this run, over all attempts, from the audit file.
    pub statements: Vec<AuditLine>,
}

/// `mysql://user:secret@host/db` -> `mysql://user@host/db`.
pub fn redact(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://") {
        if let Some((cred, host)) = rest.rsplit_once('@') {
            let user = cred.split(':').next().unwrap_or(cred);
            return format!("{scheme}://{user}@{host}");
        }
    }
    url.to_string()
}

/// Variables of the operator's `.env` (`shared/.env`, then `.env` at the root) as a map:
/// `KEY=VALUE` lines, `export` allowed, values optionally quoted, `#` comments.
pub fn read_dotenv(root: &Path) -> BTreeMap<String, String> {
    let mut vars = BTreeMap::new();
    for file in [root.join(".env"), root.join("shared").join(".env")] {
        let Ok(text) = std::fs::read_to_string(&file) else {
            continue;
        };
        for line in text.lines() {
            let line = line.trim();
            let line = line.strip_prefix("export ").unwrap_or(line);
            if line.starts_with('#') {
                continue;
            }
            let Some((k, v)) = line.split_once('=') else {
                continue;
            };
            let v = v.trim();
            let v = if v.len() >= 2
                && (v.starts_with('"') && v.ends_with('"')
                    || v.starts_with('\'') && v.ends_with('\''))
            {
                &v[1..v.len() - 1]
            } else {
                v
            };
            vars.insert(k.trim().to_string(), v.to_string());
        }
    }
    vars
}

/// Replace `${VAR}` in a database URL with the process environment's value, else the
/// operator's `.env` (see [`read_dotenv`]); an unset variable is an error naming it.
pub fn expand_env(url: &str, root: &Path) -> Result<String, String> {
    if !url.contains("${") {
        return Ok(url.to_string());
    }
    let dotenv = read_dotenv(root);
    let mut out = String::new();
    let mut rest = url;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let Some(len) = rest[start..].find('}') else {
            return Err(format!("unclosed ${{ in the database URL {}", redact(url)));
        };
        let name = &rest[start + 2..start + len];
        let value = std::env::var(name).ok().or_else(|| dotenv.get(name).cloned()).ok_or_else(|| {
            format!("the database URL names ${{{name}}}, which neither the environment nor the installation's .env sets")
        })?;
        out.push_str(&value);
        rest = &rest[start + len + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

pub fn sha256_file(path: &Path) -> Result<String, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    Ok(sha256_hex(&bytes))
}

fn sha256_hex(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

impl MigrateSchema {
    /// The full URL: the journaled one when it had no password, else the first of
    /// `MOLT_DATABASE_URL` and `molt.toml`'s `database_url` that names the same user and server.
    pub fn resolve_url(&self) -> Result<String, StepError> {
        let mut candidates = Vec::new();
        if let Ok(u) = std::env::var(URL_ENV) {
            candidates.push(u);
        }
        if let Ok(text) = std::fs::read_to_string(self.root.join("molt.toml")) {
            if let Ok(v) = text.parse::<toml::Table>() {
                if let Some(u) = v.get("database_url").and_then(|u| u.as_str()) {
                    candidates.push(u.to_string());
                }
            }
        }
        let found = candidates
            .into_iter()
            .filter_map(|u| expand_env(&u, &self.root).ok())
            .find(|u| redact(u) == self.database_url);
        Ok(found.unwrap_or_else(|| self.database_url.clone()))
    }

    fn desired_schema(&self, default_db: Option<String>) -> Result<Schema, StepError> {
        // One read: the bytes hashed are the bytes loaded.
        let bytes =
            std::fs::read(&self.desired).map_err(|e| crate::io_err("read", &self.desired, e))?;
        let got = sha256_hex(&bytes);
        if got != self.desired_sha256 {
            return Err(StepError::new(format!(
                "{} changed since the plan was made (sha256 {got}, planned {}); start a new run",
                self.desired.display(),
                self.desired_sha256
            )));
        }
        let text = String::from_utf8(bytes)
            .map_err(|e| StepError::new(format!("{}: not UTF-8: {e}", self.desired.display())))?;
        load(
            &text,
            &LoadOptions {
                default_database: default_db,
                ..Default::default()
            },
        )
        .map(|l| l.schema)
        .map_err(|e| StepError::new(format!("{}: {e}", self.desired.display())))
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

    async fn connect(&self) -> Result<mysql_async::Conn, StepError> {
        let url = self.resolve_url()?;
        live::connect(&url).await.map_err(|e| {
            let hint = if url == self.database_url && self.database_url.contains('@') {
                format!(
                    " (the password is not journaled: set {URL_ENV} or molt.toml's database_url)"
                )
            } else {
                String::new()
            };
            StepError::new(format!("{e}{hint}"))
        })
    }

    fn load_desired(&self) -> Result<Schema, StepError> {
        let default_db =
            live::url_database(&self.database_url).map_err(|e| StepError::new(e.to_string()))?;
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
                            tables: Default::default(),
                        }
                    });
                }
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
                let (index, phase, change, ms, error) = match e {
                    Event::Before { index, change } => (index, "intent", change, None, None),
                    Event::After {
                        index,
                        change,
                        elapsed,
                    } => (
                        index,
                        "done",
                        change,
                        Some(elapsed.as_millis() as u64),
                        None,
                    ),
                    Event::Failed {
                        index,
                        change,
                        error,
                    } => (index, "failed", change, None, Some(error)),
                };
                let line = AuditLine {
                    attempt,
                    index,
                    phase: phase.into(),
                    sql: change.sql.clone(),
                    ms,
                    error,
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
        let desired = self.migrate.load_desired()?;
        let mut conn = self.migrate.connect().await?;
        let planned = live::plan(&mut conn, &desired).await;
        let _ = conn.disconnect().await;
        let (_, m) = planned.map_err(|e| StepError::new(e.to_string()))?;
        let refused = m.refused(&self.migrate.allow);
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
        format!(
            "migrate schema to {}",
            self.desired
                .file_name()
                .map(|n| n.to_string_lossy())
                .unwrap_or_default()
        )
    }

    fn class(&self) -> StepClass {
        StepClass::Pivot
    }

    async fn apply(&self, ctx: &StepCtx) -> Result<MigrateReceipt, StepError> {
        let desired = self.load_desired()?;
        self.run(&desired, &self.allow, ctx.attempt as i64, true)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_redacted_and_expanded_from_the_operators_env() {
        assert_eq!(
            redact("mysql://app:s3cr@t@db:3306/x"),
            "mysql://app@db:3306/x"
        );
        assert_eq!(redact("mysql://app@db/x"), "mysql://app@db/x");
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("shared")).unwrap();
        std::fs::write(
            dir.path().join("shared/.env"),
            "# comment\nexport MOLT_T_DB_USER=app\nMOLT_T_DB_PASS=\"p w\"\n",
        )
        .unwrap();
        let url = "mysql://${MOLT_T_DB_USER}:${MOLT_T_DB_PASS}@127.0.0.1/app";
        assert_eq!(
            expand_env(url, dir.path()).unwrap(),
            "mysql://app:p w@127.0.0.1/app"
        );
        let err = expand_env("mysql://${MOLT_T_NOPE}@h/x", dir.path()).unwrap_err();
        assert!(err.contains("MOLT_T_NOPE"), "{err}");
    }
}
