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
    let store = open_for_reading(inst)?;
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
    let v = json!({
        "root": inst.root,
        "busy": false,
        "current": current,
        "installed": installed,
        "runs": runs.len(),
        "latest": latest,
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
    Ok(exit::OK)
}
