//! `molt journal list` and `molt journal show RUN`: the audit trail.

use super::{print_json, time};
use crate::exit;
use crate::session::open_for_reading;
use engine::{Entry, Ledger, Record, RunId};
use journal::RunLog;
use serde_json::json;
use steps::Installation;

/// One line per run: id, plan, start time, state.
pub fn list(inst: &Installation, as_json: bool) -> anyhow::Result<u8> {
    let store = open_for_reading(inst)?;
    let mut rows = Vec::new();
    for run in store.runs()? {
        let log = store.read_run(run)?;
        rows.push(summarize(run, &log));
    }
    if as_json {
        print_json(&json!({ "runs": rows }));
    } else if rows.is_empty() {
        println!("no runs in {}", inst.journal_dir().display());
    } else {
        println!(
            "{:>5}  {:<24}  {:<12}  {:>7}  state",
            "run", "started", "plan", "records"
        );
        for r in &rows {
            println!(
                "{:>5}  {:<24}  {:<12}  {:>7}  {}",
                r["run"].to_string(),
                r["started"].as_str().unwrap_or("?"),
                r["plan"].as_str().unwrap_or("?"),
                r["records"].to_string(),
                r["state"].as_str().unwrap_or("?")
            );
        }
    }
    Ok(exit::OK)
}

/// State of a run as a word: committed, rolled_back, stuck, running/unfinished, damaged.
pub fn run_state(log: &RunLog) -> (String, Option<Ledger>) {
    if !log.damage.is_empty() {
        return ("damaged".into(), None);
    }
    match Ledger::replay(&log.records) {
        Ok(l) => {
            let word = match &l.terminal {
                Some(engine::Outcome::Committed) => "committed".to_string(),
                Some(engine::Outcome::RolledBack) => "rolled_back".to_string(),
                Some(engine::Outcome::Stuck { .. }) => "stuck".to_string(),
                None => "unfinished".to_string(),
            };
            (word, Some(l))
        }
        Err(e) => (format!("inconsistent: {e}"), None),
    }
}

fn summarize(run: RunId, log: &RunLog) -> serde_json::Value {
    let (state, _) = run_state(log);
    let plan = log.records.first().and_then(|r| match &r.entry {
        Entry::RunStarted { plan } => Some(plan.id.clone()),
        _ => None,
    });
    json!({
        "run": run.0,
        "plan": plan,
        "started": log.records.first().map(|r| time(r.at_ms)),
        "records": log.records.len() + log.after_damage.len(),
        "damaged": log.damage.len(),
        "state": state,
    })
}

/// Every transition of one run with time, duration and error; damaged records are listed,
/// never hidden, and everything readable is still printed.
pub fn show(inst: &Installation, run: u64, as_json: bool) -> anyhow::Result<u8> {
    let store = open_for_reading(inst)?;
    let run = RunId(run);
    let log = store.read_run(run)?;
    if log.records.is_empty() && log.damage.is_empty() && log.after_damage.is_empty() {
        return Err(exit::coded(
            exit::ERROR,
            format!("no run {run} in the journal (`molt journal list` shows the runs)"),
        ));
    }
    let (state, _) = run_state(&log);
    let names: Vec<String> = log
        .records
        .first()
        .and_then(|r| match &r.entry {
            Entry::RunStarted { plan } => Some(plan.steps.iter().map(|s| s.name.clone()).collect()),
            _ => None,
        })
        .unwrap_or_default();
    let all: Vec<&Record> = log.records.iter().chain(&log.after_damage).collect();
    let rows: Vec<serde_json::Value> = all
        .iter()
        .enumerate()
        .map(|(i, r)| row(r, &all[..i], &names))
        .collect();
    let damage: Vec<serde_json::Value> = log
        .damage
        .iter()
        .map(|d| json!({ "damage": d, "message": d.to_string() }))
        .collect();
    if as_json {
        print_json(&json!({
            "run": run.0,
            "state": state,
            "records": rows,
            "damage": damage,
        }));
    } else {
        println!("run {run}: {state}");
        println!(
            "{:>4}  {:<24}  {:>9}  {:<16}  {:<40}  detail",
            "seq", "time", "duration", "record", "step"
        );
        for r in &rows {
            println!(
                "{:>4}  {:<24}  {:>9}  {:<16}  {:<40}  {}",
                r["seq"].to_string(),
                r["time"].as_str().unwrap_or(""),
                r["duration_ms"].as_u64().map(ms).unwrap_or_default(),
                r["record"].as_str().unwrap_or(""),
                r["step_name"].as_str().unwrap_or(""),
                r["detail"].as_str().unwrap_or("")
            );
        }
        for d in &log.damage {
            println!("  !!  {d}");
        }
    }
    Ok(exit::OK)
}

fn ms(d: u64) -> String {
    if d < 10_000 {
        format!("{d}ms")
    } else {
        format!("{:.1}s", d as f64 / 1000.0)
    }
}

/// One printed record. `duration_ms`: for a done/failed record, the time since its intent
/// (how long the step took); otherwise since the previous record.
fn row(r: &Record, before: &[&Record], names: &[String]) -> serde_json::Value {
    let intent_of = |want: &dyn Fn(&Entry) -> bool| before.iter().rev().find(|p| want(&p.entry));
    let since = match &r.entry {
        Entry::StepDone { step, .. } | Entry::StepFailed { step, .. } => {
            intent_of(&|e| matches!(e, Entry::StepIntent { step: s, .. } if s == step))
        }
        Entry::UndoDone { step } | Entry::UndoFailed { step, .. } => {
            intent_of(&|e| matches!(e, Entry::UndoIntent { step: s, .. } if s == step))
        }
        _ => before.last(),
    };
    let duration = since.map(|p| r.at_ms.saturating_sub(p.at_ms));
    let detail = match &r.entry {
        Entry::RunStarted { plan } => format!("plan {} with {} steps", plan.id, plan.steps.len()),
        Entry::Recovery { mode, forced } => {
            format!("{mode:?} session{}", if *forced { " (forced)" } else { "" }).to_lowercase()
        }
        Entry::StepIntent { attempt, .. } | Entry::UndoIntent { attempt, .. } => {
            format!("attempt {attempt}")
        }
        Entry::StepDone { receipt, .. } => receipt
            .as_ref()
            .filter(|v| !v.is_null())
            .map(|v| format!("receipt {v}"))
            .unwrap_or_default(),
        Entry::StepFailed { error, .. } | Entry::UndoFailed { error, .. } => {
            format!("error: {error}")
        }
        Entry::RollbackStarted { reason } => reason.clone(),
        Entry::RunStuck { reason, .. } => format!("STUCK: {reason}"),
        Entry::UndoDone { .. } | Entry::RunCommitted | Entry::RunRolledBack => String::new(),
    };
    let step = r.entry.step();
    json!({
        "seq": r.seq,
        "time": time(r.at_ms),
        "at_ms": r.at_ms,
        "duration_ms": duration,
        "record": r.entry.kind(),
        "step": step,
        "step_name": step.and_then(|s| names.get(s)).map(|n| format!("{}: {n}", step.unwrap_or(0))),
        "detail": detail,
        "entry": r.entry,
    })
}

/// `molt journal salvage`: rebuild a damaged journal under the installation lock.
pub fn salvage(inst: &Installation, as_json: bool) -> anyhow::Result<u8> {
    let _lock = crate::session::lock(inst, "molt journal salvage")?;
    let (_, report) = journal::open_salvaging(&inst.journal_dir())
        .map_err(|e| crate::session::journal_refusal(inst, e))?;
    match (&report, as_json) {
        (_, true) => print_json(&json!({ "salvaged": report.is_some(), "report": report })),
        (None, false) => println!("the journal reads whole; nothing to salvage"),
        (Some(s), false) => println!("{}", crate::session::describe_salvage(s)),
    }
    Ok(exit::OK)
}
