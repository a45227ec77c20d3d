//! What an unattended upgrade (`molt upgrade --unattended`, run by the upgrade timer) may do.
//! An operator's own `molt upgrade` is never held back by any of this.
//!
//! In the order they are asked, each a reason to skip (exit 0, nothing changed):
//! 1. a hold (`molt hold`, `hold.json` at the root) stops every unattended upgrade;
//! 2. the maintenance window (`[schedule] upgrade_window`) must be open with enough time left
//!    for the upgrade's estimated downtime ([`estimated_need`]);
//! 3. after the manifest is checked, the release it offers must lie inside the pinned range
//!    (`[upgrade] versions`).
//!
//! An installed version outside the pinned range is a configuration error, not a skip: the
//! range was written for another installation, or the installation was moved past it by hand,
//! and an unattended run must not guess which.

use crate::install::Installation;
use crate::version::{Range, Version};
use crate::window::{shown, Decision};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// `hold.json`: unattended upgrades are held.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hold {
    pub format: u32,
    /// Why, in the operator's words (may be empty).
    pub reason: String,
    /// When the hold was set (ms since the epoch).
    pub at_ms: u64,
}

pub const HOLD_FORMAT: u32 = 1;

impl Hold {
    pub fn read(path: &Path) -> Result<Option<Hold>, String> {
        match std::fs::read(path) {
            Ok(b) => serde_json::from_slice::<Hold>(&b)
                .map_err(|e| format!("{}: {e}", path.display()))
                .and_then(|h| {
                    if h.format > HOLD_FORMAT {
                        Err(format!(
                            "{}: format {} is newer than this molt reads",
                            path.display(),
                            h.format
                        ))
                    } else {
                        Ok(Some(h))
                    }
                }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("cannot read {}: {e}", path.display())),
        }
    }

    /// Hold unattended upgrades (replacing an earlier hold's reason).
    pub fn set(path: &Path, reason: &str) -> Result<Hold, String> {
        if reason.chars().any(|c| c.is_control()) {
            return Err("the reason must be one line of text (no control characters)".into());
        }
        if reason.len() > 1000 {
            return Err("the reason is longer than 1000 bytes".into());
        }
        let h = Hold {
            format: HOLD_FORMAT,
            reason: reason.to_string(),
            at_ms: crate::now_ms(),
        };
        let bytes = serde_json::to_vec_pretty(&h).map_err(|e| e.to_string())?;
        crate::fsutil::write_atomic(path, &bytes)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        Ok(h)
    }

    /// `held` and the reason in parentheses when one was given: how every command says it.
    pub fn shown(&self) -> String {
        if self.reason.is_empty() {
            "held".into()
        } else {
            format!("held ({})", self.reason)
        }
    }

    /// Release the hold. `false` when there was none.
    pub fn release(path: &Path) -> Result<bool, String> {
        match std::fs::remove_file(path) {
            Ok(()) => {
                crate::fsutil::sync_dir(path.parent().unwrap_or(Path::new(".")))
                    .map_err(|e| format!("cannot sync {}: {e}", path.display()))?;
                Ok(true)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(format!("cannot remove {}: {e}", path.display())),
        }
    }
}

/// What an upgrade is assumed to need inside the window: twice the last measured downtime,
/// at least five minutes; ten minutes when none was measured yet.
pub fn estimated_need(last_downtime_ms: Option<u64>) -> jiff::SignedDuration {
    match last_downtime_ms {
        Some(ms) => jiff::SignedDuration::from_millis((2 * ms).max(5 * 60_000) as i64),
        None => jiff::SignedDuration::from_mins(10),
    }
}

/// Go ahead, or skip for the reason given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Go,
    Skip(String),
}

/// The pinned range (`[upgrade] versions`), checked against the installed version.
fn pinned(inst: &Installation) -> Result<Option<Range>, String> {
    let Some(text) = &inst.config.upgrade.versions else {
        return Ok(None);
    };
    let range = Range::parse(text).map_err(|e| format!("[upgrade] versions: {e}"))?;
    if let Some((_, release)) = inst.current()? {
        let v = Version::parse(&release.version)?;
        if !range.contains(&v) {
            return Err(format!(
                "[upgrade] versions = {text:?} excludes the installed version {}: unattended upgrades would never leave it; widen the range or upgrade by hand",
                release.version
            ));
        }
    }
    Ok(Some(range))
}

/// Before the manifest is fetched: the hold, the pinned range against the installed
/// version, the window at `now`.
pub fn before_check(inst: &Installation, now: jiff::Timestamp) -> Result<Verdict, String> {
    if let Some(h) = Hold::read(&inst.hold_file())? {
        return Ok(Verdict::Skip(format!(
            "unattended upgrades are {}; `molt unhold` releases them",
            h.shown()
        )));
    }
    pinned(inst)?;
    let Some(window) = inst.config.upgrade_window()? else {
        return Ok(Verdict::Go);
    };
    let last = crate::upgrade::Installed::read(&inst.installed_file())?.and_then(|i| i.downtime_ms);
    Ok(match window.decide(now, estimated_need(last)) {
        Decision::Start { .. } => Verdict::Go,
        Decision::TooClose { closes, left, need } => Verdict::Skip(format!(
            "the upgrade window closes {} ({}s left, {}s needed)",
            shown(&closes),
            left.as_secs(),
            need.as_secs()
        )),
        Decision::Wait { opens } => Verdict::Skip(format!(
            "outside the upgrade window {:?}; it opens {}",
            window.text(),
            shown(&opens)
        )),
    })
}

/// After the check: is the offered release inside the pinned range?
pub fn offered(inst: &Installation, version: &str) -> Result<Verdict, String> {
    let Some(range) = pinned(inst)? else {
        return Ok(Verdict::Go);
    };
    Ok(if range.contains(&Version::parse(version)?) {
        Verdict::Go
    } else {
        Verdict::Skip(format!(
            "the vendor offers {version}, outside the pinned range {range} ([upgrade] versions)"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hold_is_written_read_and_released() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("hold.json");
        assert_eq!(Hold::read(&p).unwrap(), None);
        let h = Hold::set(&p, "waiting for the vendor's fix").unwrap();
        assert_eq!(Hold::read(&p).unwrap(), Some(h));
        assert!(Hold::release(&p).unwrap());
        assert!(!Hold::release(&p).unwrap());
        assert!(Hold::set(&p, "two\nlines").is_err());
        assert_eq!(
            Hold::read(&p).unwrap(),
            None,
            "a refused reason wrote nothing"
        );
        std::fs::write(&p, "{\"format\": 9, \"reason\": \"\", \"at_ms\": 0}").unwrap();
        assert!(Hold::read(&p).unwrap_err().contains("newer"));
        std::fs::write(&p, "not json").unwrap();
        assert!(Hold::read(&p).unwrap_err().contains("hold.json"));
    }

    #[test]
    fn the_need_is_twice_the_last_downtime_at_least_five_minutes() {
        assert_eq!(estimated_need(None).as_secs(), 600);
        assert_eq!(estimated_need(Some(3_000)).as_secs(), 300);
        assert_eq!(estimated_need(Some(400_000)).as_secs(), 800);
    }
}
