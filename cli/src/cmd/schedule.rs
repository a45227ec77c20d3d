//! `molt schedule show`: the maintenance window of unattended upgrades and what it says now
//! (or at `--at`): start, too close to the end, or wait for the next opening.

use super::print_json;
use crate::exit;
use serde_json::json;
use steps::window::{shown, Decision, Window};
use steps::Installation;

/// What an upgrade is assumed to need inside the window: twice the last measured downtime,
/// at least five minutes; ten minutes when none was measured yet.
pub fn estimated_need(last_downtime_ms: Option<u64>) -> jiff::SignedDuration {
    match last_downtime_ms {
        Some(ms) => jiff::SignedDuration::from_millis((2 * ms).max(5 * 60_000) as i64),
        None => jiff::SignedDuration::from_mins(10),
    }
}

pub fn show(inst: &Installation, at: Option<&str>, as_json: bool) -> anyhow::Result<u8> {
    let window: Option<Window> = inst
        .config
        .upgrade_window()
        .map_err(|e| exit::coded(exit::ERROR, e))?;
    let now = match at {
        Some(t) => t.parse::<jiff::Timestamp>().map_err(|e| {
            exit::coded(
                exit::ERROR,
                format!("--at {t:?} is not an RFC 3339 time (2026-11-24T02:30:00Z): {e}"),
            )
        })?,
        None => jiff::Timestamp::now(),
    };
    let last = steps::upgrade::Installed::read(&inst.installed_file())
        .ok()
        .flatten()
        .and_then(|i| i.downtime_ms);
    let need = estimated_need(last);
    let Some(window) = window else {
        if as_json {
            print_json(&json!({ "window": null, "decision": "start" }));
        } else {
            println!("no upgrade window ([schedule] upgrade_window): unattended upgrades may start at any time");
        }
        return Ok(exit::OK);
    };
    let decision = window.decide(now, need);
    let (kind, when, words) = match &decision {
        Decision::Start { closes } => (
            "start",
            shown(closes),
            format!("start: the window closes {}", shown(closes)),
        ),
        Decision::TooClose { closes, left, .. } => (
            "too_close",
            shown(closes),
            format!(
                "do not start: {}s left before the window closes {}",
                left.as_secs(),
                shown(closes)
            ),
        ),
        Decision::Wait { opens } => (
            "wait",
            shown(opens),
            format!("wait: the next window opens {}", shown(opens)),
        ),
    };
    let zone = inst
        .config
        .schedule
        .timezone
        .clone()
        .unwrap_or_else(|| "the host's".into());
    if as_json {
        print_json(&json!({
            "window": window.text(),
            "timezone": zone,
            "now": now.to_string(),
            "need_secs": need.as_secs(),
            "last_downtime_ms": last,
            "decision": kind,
            "at": when,
        }));
    } else {
        println!("upgrade window: {} ({zone} time)", window.text());
        println!(
            "an upgrade needs about {}s ({})",
            need.as_secs(),
            match last {
                Some(ms) =>
                    format!("twice the last measured downtime of {ms} ms, at least 5 minutes"),
                None => "no downtime measured yet".into(),
            }
        );
        println!("{words}");
    }
    Ok(exit::OK)
}
