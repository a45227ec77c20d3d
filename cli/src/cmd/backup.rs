//! `molt backup create|list|verify|restore|prune`: backups of the persistent paths as
//! journaled runs (create, restore, prune) and read-only checks (list, verify).

use super::{print_json, time};
use crate::exit;
use crate::session::{unfinished, RunReport, Session};
use serde_json::json;
use std::collections::BTreeSet;
use steps::backup::{self, retention};
use steps::plans::{BackupCreate, BackupPrune, BackupRestore, PlanSpec};
use steps::Installation;

fn report(r: &RunReport, as_json: bool, extra: serde_json::Value) -> u8 {
    if as_json {
        let mut v = r.to_json();
        if let (Some(obj), Some(more)) = (v.as_object_mut(), extra.as_object()) {
            obj.extend(more.clone());
        }
        print_json(&v);
    } else {
        println!("{}", r.summary());
    }
    r.exit_code()
}

/// "20261124T011535Z" for backup ids.
fn compact_now() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now())
        .to_string()
        .replace(['-', ':'], "")
}

pub async fn create(
    inst: &Installation,
    paths: Vec<String>,
    compress: bool,
    as_json: bool,
) -> anyhow::Result<u8> {
    let paths = if paths.is_empty() {
        inst.config.backup.paths.clone()
    } else {
        paths
    };
    let mut session = Session::open(inst, "molt backup create")?;
    let mut id = String::new();
    let r = session
        .start_with(|run| {
            id = format!("{}-r{}", compact_now(), run);
            PlanSpec::BackupCreate(BackupCreate {
                id: id.clone(),
                paths,
                compress,
            })
        })
        .await?;
    if !as_json && r.exit_code() == exit::OK {
        println!("backup {id} is complete");
    }
    Ok(report(&r, as_json, json!({ "backup": id })))
}

/// Which run made each backup, and how that run ended, from the journal's `backup-create`
/// runs (the backup's record in the journal). Empty when the journal is busy.
fn makers(inst: &Installation) -> std::collections::BTreeMap<String, (u64, String)> {
    let mut out = std::collections::BTreeMap::new();
    let Ok(store) = crate::session::open_for_reading(inst) else {
        return out;
    };
    for run in store.runs().unwrap_or_default() {
        let Ok(log) = store.read_run(run) else {
            continue;
        };
        let Some(engine::Entry::RunStarted { plan }) = log.records.first().map(|r| &r.entry) else {
            continue;
        };
        if plan.id != "backup-create" {
            continue;
        }
        if let Some(id) = plan.spec.get("id").and_then(|v| v.as_str()) {
            let (state, _) = super::journal::run_state(&log);
            out.insert(id.to_string(), (run.0, state));
        }
    }
    out
}

pub fn list(inst: &Installation, as_json: bool) -> anyhow::Result<u8> {
    let all = backup::list(&inst.root)?;
    let makers = makers(inst);
    if as_json {
        let rows: Vec<serde_json::Value> = all
            .iter()
            .map(|b| {
                let mut v = serde_json::to_value(b).unwrap_or_default();
                if let Some((run, state)) = makers.get(&b.id) {
                    v["run"] = json!(run);
                    v["run_state"] = json!(state);
                }
                v
            })
            .collect();
        print_json(&json!({ "backups": rows }));
        return Ok(exit::OK);
    }
    if all.is_empty() {
        println!(
            "no backups in {}",
            backup::backups_dir(&inst.root).display()
        );
        return Ok(exit::OK);
    }
    println!(
        "{:<24}  {:<10}  {:<24}  {:>7}  {:>12}  {:<9}  made by",
        "id", "state", "created", "files", "bytes", "form"
    );
    for b in all {
        let maker = makers
            .get(&b.id)
            .map(|(run, state)| format!("run {run} ({state})"))
            .unwrap_or_else(|| "-".into());
        println!(
            "{:<24}  {:<10}  {:<24}  {:>7}  {:>12}  {:<9}  {maker}",
            b.id,
            b.state,
            b.created_ms.map(time).unwrap_or_default(),
            b.files,
            b.bytes,
            if b.archived { "tar.zst" } else { "directory" }
        );
    }
    Ok(exit::OK)
}

fn existing(inst: &Installation, id: &str) -> anyhow::Result<()> {
    backup::valid_id(id).map_err(|e| exit::coded(exit::ERROR, e))?;
    if !backup::Layout::new(&inst.root, id).dir().is_dir() {
        return Err(exit::coded(
            exit::ERROR,
            format!("no backup {id} (`molt backup list` shows them)"),
        ));
    }
    Ok(())
}

pub fn verify(inst: &Installation, id: &str, as_json: bool) -> anyhow::Result<u8> {
    existing(inst, id)?;
    let problems = backup::verify(&inst.root, id)?;
    if as_json {
        print_json(&json!({ "backup": id, "ok": problems.is_empty(), "problems": problems }));
    } else if problems.is_empty() {
        println!("backup {id} is intact");
    } else {
        println!("backup {id} is DAMAGED:");
        for p in &problems {
            println!("  {p}");
        }
    }
    Ok(if problems.is_empty() {
        exit::OK
    } else {
        exit::ERROR
    })
}

pub async fn restore(inst: &Installation, id: &str, as_json: bool) -> anyhow::Result<u8> {
    existing(inst, id)?;
    let layout = backup::Layout::new(&inst.root, id);
    let manifest = layout.read_manifest()?.ok_or_else(|| {
        exit::coded(
            exit::ERROR,
            format!(
                "backup {id} is incomplete (it was interrupted or failed) and cannot be restored"
            ),
        )
    })?;
    let mut session = Session::open(inst, "molt backup restore")?;
    let spec = BackupRestore {
        id: id.to_string(),
        paths: manifest.paths.clone(),
    };
    let r = session.start(PlanSpec::BackupRestore(spec)).await?;
    if !as_json && r.exit_code() == exit::OK {
        println!(
            "restored {} from backup {id} (taken {})",
            manifest.paths.join(", "),
            time(manifest.created_ms)
        );
    }
    Ok(report(&r, as_json, json!({ "backup": id })))
}

/// Every string in a JSON value (backup ids named by a plan spec).
fn strings(v: &serde_json::Value, out: &mut BTreeSet<String>) {
    match v {
        serde_json::Value::String(s) => {
            out.insert(s.clone());
        }
        serde_json::Value::Array(a) => a.iter().for_each(|x| strings(x, out)),
        serde_json::Value::Object(o) => o.values().for_each(|x| strings(x, out)),
        _ => {}
    }
}

pub async fn prune(
    inst: &Installation,
    keep_last: Option<usize>,
    keep_days: Option<u64>,
    dry_run: bool,
    as_json: bool,
) -> anyhow::Result<u8> {
    let config = &inst.config;
    let policy = retention::Policy {
        keep_last: keep_last.unwrap_or(config.retention.keep_backups),
        keep_days: keep_days.unwrap_or(config.retention.keep_backup_days),
    };
    let mut session = Session::open(inst, "molt backup prune")?;
    // A backup named by an unfinished run (being made, or to be restored) is never pruned.
    let mut protected = BTreeSet::new();
    if let Some((_, ledger)) = unfinished(&session.store)? {
        strings(&ledger.plan.spec, &mut protected);
    }
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let doomed = retention::select(&backup::list(&inst.root)?, policy, now_ms, &protected);
    if dry_run || doomed.is_empty() {
        if as_json {
            print_json(&json!({ "would_delete": doomed, "dry_run": dry_run }));
        } else if doomed.is_empty() {
            println!("nothing to prune");
        } else {
            println!("would delete: {}", doomed.join(", "));
        }
        return Ok(exit::OK);
    }
    let spec = BackupPrune {
        ids: doomed.clone(),
    };
    let r = session.start(PlanSpec::BackupPrune(spec)).await?;
    if !as_json && r.exit_code() == exit::OK {
        println!("deleted: {}", doomed.join(", "));
    }
    Ok(report(&r, as_json, json!({ "deleted": doomed })))
}
