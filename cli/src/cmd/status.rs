//! `molt status`: the installation, who holds it, and the latest run with what `molt recover`
//! would do with it.

use super::journal::run_state;
use super::print_json;
use crate::exit;
use crate::session::{describe_position, open_for_reading, LIMITS};
use journal::Lock;
use serde_json::json;
use steps::Installation;

pub fn status(inst: &Installation, as_json: bool) -> anyhow::Result<u8> {
    let holder = Lock::holder(&inst.lock_path())?;
    if let Some(held) = &holder {
        // A running molt keeps the journal open; report the holder instead of failing.
        let v = json!({
            "root": inst.root,
            "busy": true,
            "holder": held.holder,
            "message": held.to_string(),
        });
        if as_json {
            print_json(&v);
        } else {
            println!("installation {}", inst.root.display());
            println!("busy: {held}");
        }
        return Ok(exit::OK);
    }
    let store = match open_for_reading(inst) {
        Ok(s) => s,
        // A journal from a newer molt is not damaged: it is refused, as every command
        // refuses it, and nothing should be moved aside.
        Err(e) if newer_format(&e) => return Err(e),
        Err(e) if exit::code_of(&e) == exit::JOURNAL => return damaged(inst, &e, as_json),
        Err(e) => return Err(e),
    };
    let runs = store.runs()?;
    let latest = match runs.last() {
        None => None,
        Some(&run) => {
            let log = store.read_run(run)?;
            let (state, ledger) = run_state(&log);
            let (position, recover) = match &ledger {
                Some(l) if l.terminal.is_none() => (
                    Some(describe_position(l)),
                    Some(serde_json::to_value(engine::decide_ledger(l, LIMITS))?),
                ),
                _ => (None, None),
            };
            Some(json!({
                "run": run.0,
                "plan": ledger.as_ref().map(|l| l.plan.id.clone()),
                "state": state,
                "position": position,
                "recover_would": recover,
                "damage": log.damage.iter().map(|d| d.to_string()).collect::<Vec<_>>(),
            }))
        }
    };
    let installed = steps::upgrade::Installed::read(&inst.installed_file())
        .map_err(|e| exit::coded(exit::ERROR, e))?;
    let current = inst
        .current()
        .ok()
        .flatten()
        .map(|(rel, r)| json!({"release": rel, "version": r.version}));
    // What the installation trusts (shown, never an error: `molt check` reports a bad file).
    let trust = steps::trust::Trusted::load(&inst.trust_file())
        .ok()
        .filter(|t| t.manifest_sequence > 0 || t.root.is_some());
    // A hold is shown, never an error here: `molt schedule show` reports a bad file.
    let held = steps::unattended::Hold::read(&inst.hold_file())
        .ok()
        .flatten();
    let v = json!({
        "root": inst.root,
        "busy": false,
        "current": current,
        "installed": installed,
        "runs": runs.len(),
        "latest": latest,
        "trust": trust,
        "held": held.as_ref().map(|h| &h.reason),
    });
    if as_json {
        print_json(&v);
        return Ok(exit::OK);
    }
    println!("installation {}", inst.root.display());
    match &installed {
        Some(i) => println!(
            "installed {} (run {}{}{})",
            i.version,
            i.run,
            i.previous
                .as_deref()
                .map(|p| format!(", from {p}"))
                .unwrap_or_default(),
            i.downtime_ms
                .map(|d| format!(", downtime {:.2}s", d as f64 / 1000.0))
                .unwrap_or_default()
        ),
        None => {
            if let Some(c) = &current {
                println!("current release {}", c["version"].as_str().unwrap_or("?"));
            }
        }
    }
    if let Some(t) = &trust {
        let root = t
            .root
            .as_ref()
            .map(|r| {
                format!(
                    ", vendor root version {} (expires {})",
                    r.version, r.expires
                )
            })
            .unwrap_or_default();
        println!(
            "trusted: manifest sequence {} ({}){root}",
            t.manifest_sequence,
            t.manifest_version.as_deref().unwrap_or("?")
        );
    }
    if let Some(h) = &held {
        println!(
            "{}: unattended upgrades skip until `molt unhold`",
            h.shown()
        );
    }
    match &latest {
        None => println!("no runs yet"),
        Some(l) => {
            println!(
                "latest run {} ({}): {}",
                l["run"],
                l["plan"].as_str().unwrap_or("?"),
                l["state"].as_str().unwrap_or("?")
            );
            if let Some(p) = l["position"].as_str() {
                println!("  {p}");
            }
            if let Some(d) = l["recover_would"]["decision"].as_str() {
                println!("  `molt recover` would: {}", d.replace('_', " "));
            }
            for d in l["damage"].as_array().into_iter().flatten() {
                println!("  !! {}", d.as_str().unwrap_or(""));
            }
        }
    }
    let damaged = latest
        .as_ref()
        .and_then(|l| l["damage"].as_array())
        .is_some_and(|d| !d.is_empty());
    Ok(if damaged { exit::JOURNAL } else { exit::OK })
}

/// The installation as its files show it, for when the journal cannot be read: what is
/// live, what is staged, which backups are complete, and the command that brings each back.
fn newer_format(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        matches!(
            c.downcast_ref::<journal::Error>(),
            Some(journal::Error::NewerFormat { .. })
        )
    })
}

fn damaged(inst: &Installation, e: &anyhow::Error, as_json: bool) -> anyhow::Result<u8> {
    eprintln!("error: journal cannot be read: {e:#}");
    let installed = steps::upgrade::Installed::read(&inst.installed_file())
        .ok()
        .flatten();
    let current = inst
        .current()
        .ok()
        .flatten()
        .map(|(rel, r)| json!({"release": rel, "version": r.version}));
    let mut staged: Vec<String> = std::fs::read_dir(inst.releases_dir())
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    staged.sort();
    let backups: Vec<_> = steps::backup::list(&inst.root)
        .unwrap_or_default()
        .into_iter()
        .filter(|b| b.state == "complete")
        .collect();
    let mut advice = vec![
        "`molt recover` rebuilds the journal from its readable records (the damaged one is kept aside as journal.damaged-SECS) and finishes or rolls back the unfinished run".to_string(),
        "if it cannot (it says which records are lost), move the journal aside (`mv journal journal.damaged`): molt then starts a fresh one, and:".to_string(),
    ];
    for b in &backups {
        advice.push(format!(
            "`molt rollback --to {}` brings back the release and the data of backup {}",
            b.id, b.id
        ));
    }
    if let Some(c) = &current {
        advice.push(format!(
            "`current` points at {}: `molt services start` starts it as it is",
            c["release"].as_str().unwrap_or("?")
        ));
    }
    let v = json!({
        "root": inst.root,
        "journal": {"damaged": true, "error": format!("{e:#}")},
        "current": current,
        "installed": installed,
        "releases": staged,
        "complete_backups": backups,
        "advice": advice,
    });
    if as_json {
        print_json(&v);
    } else {
        println!("installation {}", inst.root.display());
        println!("!! journal cannot be read: {e:#}");
        match &current {
            Some(c) => println!("current release {}", c["version"].as_str().unwrap_or("?")),
            None => println!("no current release"),
        }
        if let Some(i) = &installed {
            println!("installed.json says {} (run {})", i.version, i.run);
        }
        println!("releases on disk: {}", staged.join(", "));
        println!(
            "complete backups: {}",
            backups
                .iter()
                .map(|b| b.id.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
        for a in &advice {
            println!("  - {a}");
        }
    }
    Ok(exit::JOURNAL)
}
