//! `molt schema diff|plan|apply`: the schema migration from the command line.
//!
//! `diff` compares two files offline; `plan` (and `apply --dry-run`) read the live database
//! and change nothing; `apply` runs the migration as a journaled run (plan schema, then the
//! migrate pivot), so a crash half-way is finished by `molt resume` (or `molt recover`), which
//! re-diffs.

use super::print_json;
use crate::exit;
use crate::session::Session;
use serde_json::json;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use steps::install::{redact, URL_ENV};
use steps::plans::{PlanSpec, SchemaMigrate};
use steps::release::Release;
use steps::schema::diff::{diff, Algorithm, Allow, Migration};
use steps::schema::live;
use steps::schema::migrate::sha256_file;
use steps::schema::sql::{load, LoadOptions, Loaded};
use steps::Installation;

fn load_file(path: &Path, default_db: Option<String>) -> anyhow::Result<Loaded> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| exit::coded(exit::ERROR, format!("cannot read {}: {e}", path.display())))?;
    load(
        &text,
        &LoadOptions {
            default_database: default_db,
            ..Default::default()
        },
    )
    .map_err(|e| exit::coded(exit::ERROR, format!("{}: {e}", path.display())))
}

/// Statements that are not schema: reported on stderr (they are never run or dropped).
fn report_skipped(path: &Path, loaded: &Loaded, as_json: bool) {
    if as_json {
        return;
    }
    for s in &loaded.skipped {
        eprintln!(
            "molt: {}: line {}: {} is not schema; ignored: {}",
            path.display(),
            s.line,
            s.kind,
            s.excerpt
        );
    }
}

fn print_migration(m: &Migration, allow: &Allow) {
    if m.is_empty() {
        println!("-- the schemas are the same: nothing to do");
        return;
    }
    for c in &m.changes {
        for d in &c.destructive {
            let mark = if d.data {
                "REFUSED, fix the rows first"
            } else if allow.permits(d) {
                "allowed"
            } else {
                "REFUSED"
            };
            println!("-- destructive ({mark}): {}", d.reason);
        }
        if let Some(a) = c.algorithm {
            let cost = match a {
                Algorithm::Instant => "metadata only",
                Algorithm::Nocopy | Algorithm::InplaceOnline => {
                    "in place, table stays writable; time grows with the table"
                }
                Algorithm::Inplace => "in place, writes wait; time grows with the table",
                Algorithm::Copy => "copies the table, writes wait; time grows with the table",
            };
            println!("-- algorithm {} ({cost})", a.name());
        }
        println!("{};", c.sql);
    }
    let refused = m.refused(allow);
    if !refused.is_empty() {
        println!(
            "-- {} destructive change(s) not allowed: apply refuses this plan",
            refused.len()
        );
    }
}

fn migration_json(m: &Migration, allow: &Allow, skipped: serde_json::Value) -> serde_json::Value {
    json!({
        "changes": m.changes,
        "statements": m.statements(),
        "destructive": m.destructive(),
        "refused": m.refused(allow),
        "skipped": skipped,
    })
}

pub fn diff_files(
    old: &Path,
    new: &Path,
    database: Option<String>,
    as_json: bool,
) -> anyhow::Result<u8> {
    let a = load_file(old, database.clone())?;
    let b = load_file(new, database)?;
    report_skipped(old, &a, as_json);
    report_skipped(new, &b, as_json);
    let m = diff(&a.schema, &b.schema, &|_, _| None);
    let allow = Allow::default();
    if as_json {
        print_json(&migration_json(
            &m,
            &allow,
            json!({ "old": a.skipped, "new": b.skipped }),
        ));
    } else {
        print_migration(&m, &allow);
    }
    Ok(exit::OK)
}

/// The URL from the flag, `MOLT_DATABASE_URL` (clap reads it into the flag) or `molt.toml`,
/// with `${VAR}`s taken from the environment or the installation's `.env`.
fn database_url(inst: &Installation, flag: Option<String>) -> anyhow::Result<String> {
    let url = match flag {
        Some(u) => u,
        None => inst.config.database_url.clone().ok_or_else(|| {
            exit::coded(
                exit::ERROR,
                format!("no database: pass --database-url, set {URL_ENV}, or set database_url in molt.toml"),
            )
        })?,
    };
    inst.expand(&url).map_err(|e| exit::coded(exit::ERROR, e))
}

async fn live_plan(url: &str, desired: &steps::schema::Schema) -> anyhow::Result<Migration> {
    let mut conn = live::connect(url)
        .await
        .map_err(|e| exit::coded(exit::ERROR, e.to_string()))?;
    let (_, m) = live::plan(&mut conn, desired)
        .await
        .map_err(|e| exit::coded(exit::ERROR, e.to_string()))?;
    let _ = conn.disconnect().await;
    Ok(m)
}

/// What a plan or apply works on: the URL, the schema file (given, or the current release's
/// `[database] schema`), its model, and what is allowed.
struct Target {
    url: String,
    desired: PathBuf,
    loaded: Loaded,
    allow: Allow,
}

/// `--rename OLD=NEW` arguments: `db.table=new_table`, `db.table.column=new_column`.
pub fn parse_renames(args: &[String]) -> anyhow::Result<BTreeMap<String, String>> {
    args.iter()
        .map(|a| {
            let (from, to) = a.split_once('=').unwrap_or((a, ""));
            let dots = from.matches('.').count();
            if to.is_empty() || to.contains('.') || !(1..=2).contains(&dots) {
                return Err(exit::coded(
                    exit::ERROR,
                    format!(
                        "--rename {a}: expected db.table=new_table or db.table.column=new_column"
                    ),
                ));
            }
            Ok((from.to_string(), to.to_string()))
        })
        .collect()
}

fn target(
    inst: &Installation,
    url: Option<String>,
    desired: Option<&Path>,
    allow_destructive: bool,
    renames: &BTreeMap<String, String>,
    as_json: bool,
) -> anyhow::Result<Target> {
    let url = database_url(inst, url)?;
    let mut subjects = Vec::new();
    let mut all_renames = BTreeMap::new();
    let desired = match desired {
        Some(d) => d.to_path_buf(),
        None => {
            // the live release's schema, and the destructive changes its vendor vouches for
            let dir = inst.root.join(super::services::current_release(inst)?);
            let release = Release::load(&dir).map_err(|e| exit::coded(exit::ERROR, e))?;
            subjects = release.allow_destructive.clone();
            all_renames = release.renames.clone();
            let schema = release.database.and_then(|d| d.schema).ok_or_else(|| {
                exit::coded(
                    exit::ERROR,
                    format!(
                        "{}/release.toml names no [database] schema; pass --desired FILE",
                        dir.display()
                    ),
                )
            })?;
            dir.join(schema)
        }
    };
    let desired = std::fs::canonicalize(&desired).map_err(|e| {
        exit::coded(
            exit::ERROR,
            format!("cannot read {}: {e}", desired.display()),
        )
    })?;
    let default_db =
        live::url_database(&url).map_err(|e| exit::coded(exit::ERROR, e.to_string()))?;
    let mut loaded = load_file(&desired, default_db)?;
    all_renames.extend(renames.clone());
    loaded.schema.renames = all_renames;
    report_skipped(&desired, &loaded, as_json);
    let allow = Allow {
        all: allow_destructive,
        subjects,
    };
    Ok(Target {
        url,
        desired,
        loaded,
        allow,
    })
}

pub async fn plan(
    inst: &Installation,
    url: Option<String>,
    desired: Option<&Path>,
    allow_destructive: bool,
    renames: &BTreeMap<String, String>,
    as_json: bool,
) -> anyhow::Result<u8> {
    let t = target(inst, url, desired, allow_destructive, renames, as_json)?;
    let m = live_plan(&t.url, &t.loaded.schema).await?;
    if as_json {
        print_json(&migration_json(&m, &t.allow, json!(t.loaded.skipped)));
    } else {
        print_migration(&m, &t.allow);
    }
    Ok(if m.refused(&t.allow).is_empty() {
        exit::OK
    } else {
        exit::REFUSED
    })
}

pub async fn apply(
    inst: &Installation,
    url: Option<String>,
    desired: Option<&Path>,
    allow_destructive: bool,
    renames: &BTreeMap<String, String>,
    dry_run: bool,
    as_json: bool,
) -> anyhow::Result<u8> {
    if dry_run {
        return plan(inst, url, desired, allow_destructive, renames, as_json).await;
    }
    let Target {
        url,
        desired,
        loaded,
        allow,
    } = target(inst, url, desired, allow_destructive, renames, as_json)?;
    // Refuse before a run exists: nothing journaled, nothing touched.
    let m = live_plan(&url, &loaded.schema).await?;
    let refused = m.refused(&allow);
    if !refused.is_empty() {
        let reasons: Vec<String> = refused.iter().map(|d| d.reason.clone()).collect();
        return Err(exit::coded(
            exit::REFUSED,
            live::LiveError::Destructive(reasons).to_string(),
        ));
    }
    let spec = SchemaMigrate {
        database_url: redact(&url),
        desired_sha256: sha256_file(&desired).map_err(|e| exit::coded(exit::ERROR, e))?,
        desired: desired.clone(),
        allow,
        lock_wait_secs: 30,
        renames: loaded.schema.renames.clone(),
    };
    // The journal gets the URL without its password; the step gets the full one from the
    // installation the plan is built from.
    let inst = inst.clone().with_database_url(&url);
    let mut session = Session::open(&inst, "molt schema apply")?;
    let r = session.start(PlanSpec::SchemaMigrate(spec)).await?;
    if as_json {
        print_json(&r.to_json());
    } else {
        println!("{}", r.summary());
    }
    Ok(r.exit_code())
}
