//! Unattended operation:
//! - `molt schedule show`: the maintenance window of unattended upgrades and what it says now
//!   (or at `--at`): start, too close to the end, or wait for the next opening.
//! - `molt schedule install|remove`: the systemd units (`steps::units`), written atomically
//!   into the unit directory, never over a file molt did not write; enabled (or disabled)
//!   through systemctl when systemd runs.
//! - `molt hold` / `molt unhold`: `hold.json` (`steps::unattended::Hold`).

use super::print_json;
use crate::exit;
use serde_json::json;
use steps::unattended::{estimated_need, Hold};
use steps::window::{shown, Decision, Window};
use steps::Installation;

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
    let hold = Hold::read(&inst.hold_file()).map_err(|e| exit::coded(exit::ERROR, e))?;
    if let (Some(h), false) = (&hold, as_json) {
        println!(
            "{}: unattended upgrades skip whatever the window says, until `molt unhold`",
            h.shown()
        );
    }
    let held = hold.map(|h| h.reason);
    let Some(window) = window else {
        if as_json {
            print_json(&json!({ "window": null, "decision": "start", "held": held }));
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
            "held": held,
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

fn err(e: impl Into<String>) -> anyhow::Error {
    exit::coded(exit::ERROR, e)
}

/// Does systemd run this machine (so that systemctl can reload and enable units)?
fn systemd_runs() -> bool {
    std::path::Path::new("/run/systemd/system").is_dir()
}

fn systemctl(args: &[&str]) -> anyhow::Result<()> {
    let out = std::process::Command::new("systemctl")
        .args(args)
        .output()
        .map_err(|e| err(format!("cannot run systemctl: {e}")))?;
    if !out.status.success() {
        return Err(err(format!(
            "systemctl {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

/// Is `path` a unit molt wrote? Read without following a link (a link is never ours).
fn ours(path: &std::path::Path) -> anyhow::Result<Option<bool>> {
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(err(format!("cannot read {}: {e}", path.display()))),
        Ok(m) if !m.is_file() => Ok(Some(false)),
        Ok(_) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| err(format!("cannot read {}: {e}", path.display())))?;
            Ok(Some(text.starts_with(steps::units::MARK)))
        }
    }
}

/// Check a calendar expression with systemd's own parser, when systemd-analyze is here.
fn check_calendar(expr: &str) -> anyhow::Result<()> {
    match std::process::Command::new("systemd-analyze")
        .args(["calendar", expr])
        .output()
    {
        Ok(out) if !out.status.success() => Err(err(format!(
            "[schedule] backup = {expr:?} is not a systemd calendar expression: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))),
        _ => Ok(()),
    }
}

pub fn install(
    inst: &Installation,
    unit_dir: &std::path::Path,
    enable: bool,
    as_json: bool,
) -> anyhow::Result<u8> {
    let window = inst.config.upgrade_window().map_err(err)?;
    if let Some(b) = &inst.config.schedule.backup {
        check_calendar(b)?;
    }
    let molt = std::env::current_exe()
        .and_then(|p| p.canonicalize())
        .map_err(|e| err(format!("cannot tell where this molt is: {e}")))?;
    let root = inst
        .root
        .canonicalize()
        .map_err(|e| err(format!("{}: {e}", inst.root.display())))?;
    let project = inst.project();
    let units = steps::units::render(&steps::units::Spec {
        molt: &molt,
        root: &root,
        project: &project,
        windowed: window.is_some(),
        backup: inst.config.schedule.backup.as_deref(),
    })
    .map_err(err)?;
    if !unit_dir.is_dir() {
        return Err(err(format!(
            "{} is not a directory; nothing was written",
            unit_dir.display()
        )));
    }
    // Every name is checked before anything is written: all or nothing.
    for (name, _) in &units {
        let p = unit_dir.join(name);
        if ours(&p)? == Some(false) {
            return Err(err(format!(
                "{} exists and molt did not write it; nothing was written",
                p.display()
            )));
        }
    }
    for (name, text) in &units {
        let p = unit_dir.join(name);
        steps::fsutil::write_atomic(&p, text.as_bytes())
            .map_err(|e| err(format!("cannot write {}: {e}", p.display())))?;
    }
    let names: Vec<&str> = units.iter().map(|(n, _)| n.as_str()).collect();
    let enabled = enable && systemd_runs();
    if enabled {
        systemctl(&["daemon-reload"])?;
        let timers: Vec<&str> = names
            .iter()
            .copied()
            .filter(|n| n.ends_with(".timer"))
            .collect();
        systemctl(&[&["enable", "--now"][..], &timers].concat())?;
        // recovery runs at the next boot; there is nothing to recover now
        systemctl(&["enable", names[0]])?;
    }
    if as_json {
        print_json(&json!({ "unit_dir": unit_dir, "units": names, "enabled": enabled }));
    } else {
        for n in &names {
            println!("wrote {}", unit_dir.join(n).display());
        }
        if enabled {
            println!("enabled the timers and boot-time recovery");
        } else if enable {
            println!("systemd does not run here: the units are written, not enabled");
        }
    }
    Ok(exit::OK)
}

pub fn remove(
    inst: &Installation,
    unit_dir: &std::path::Path,
    enable: bool,
    as_json: bool,
) -> anyhow::Result<u8> {
    let prefix = steps::units::prefix(&inst.project()).map_err(err)?;
    let mut found = Vec::new();
    let entries = match std::fs::read_dir(unit_dir) {
        Ok(e) => e,
        Err(e) => return Err(err(format!("cannot read {}: {e}", unit_dir.display()))),
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with(&prefix) && ours(&e.path())? == Some(true) {
            found.push(name);
        }
    }
    found.sort();
    if enable && systemd_runs() && !found.is_empty() {
        let names: Vec<&str> = found.iter().map(String::as_str).collect();
        systemctl(&[&["disable", "--now"][..], &names].concat())?;
    }
    for n in &found {
        let p = unit_dir.join(n);
        std::fs::remove_file(&p).map_err(|e| err(format!("cannot remove {}: {e}", p.display())))?;
    }
    steps::fsutil::sync_dir(unit_dir).map_err(|e| err(format!("{}: {e}", unit_dir.display())))?;
    if enable && systemd_runs() && !found.is_empty() {
        systemctl(&["daemon-reload"])?;
    }
    if as_json {
        print_json(&json!({ "unit_dir": unit_dir, "removed": found }));
    } else if found.is_empty() {
        println!(
            "no units of molt for this installation in {}",
            unit_dir.display()
        );
    } else {
        for n in &found {
            println!("removed {}", unit_dir.join(n).display());
        }
    }
    Ok(exit::OK)
}

pub fn hold(inst: &Installation, reason: &str, as_json: bool) -> anyhow::Result<u8> {
    let h = Hold::set(&inst.hold_file(), reason).map_err(err)?;
    if as_json {
        print_json(&json!({ "held": true, "reason": h.reason, "at_ms": h.at_ms }));
    } else {
        println!("unattended upgrades are held; `molt unhold` releases them");
    }
    Ok(exit::OK)
}

pub fn unhold(inst: &Installation, as_json: bool) -> anyhow::Result<u8> {
    let was = Hold::release(&inst.hold_file()).map_err(err)?;
    if as_json {
        print_json(&json!({ "held": false, "was_held": was }));
    } else if was {
        println!("unattended upgrades may run again");
    } else {
        println!("unattended upgrades were not held");
    }
    Ok(exit::OK)
}
