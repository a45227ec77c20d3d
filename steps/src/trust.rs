//! What the installation has trusted so far (`trust.json` at the root): the newest manifest
//! (its sequence, hash and expiry). A manifest older than it is refused (rollback attack, stale
//! mirror), one with the same sequence but other bytes too (two manifests cannot share a
//! sequence), and an expired one whatever its sequence (freeze attack). Written atomically and
//! synced before the manifest is acted upon; never rolled back (a restored backup does not
//! bring back an older trust).

use crate::manifest::Manifest;
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::SystemTime;

pub const TRUST_FORMAT: u32 = 1;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Trusted {
    pub format: u32,
    pub product: Option<String>,
    /// The newest manifest trusted.
    pub manifest_sequence: u64,
    pub manifest_sha256: Option<String>,
    pub manifest_version: Option<String>,
    /// The newest vendor root trusted (pinned, then followed through rotations).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root: Option<crate::root::Root>,
}

/// Why a manifest is not trusted. Each names what was offered and what is trusted.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Distrust {
    #[error("manifest sequence {offered} (release {version}) is older than sequence {trusted} (release {trusted_version}) already trusted: a rollback attack or a stale mirror")]
    Older {
        offered: u64,
        version: String,
        trusted: u64,
        trusted_version: String,
    },
    #[error("manifest sequence {sequence} differs from the manifest already trusted with that sequence: two manifests may not share one")]
    SameSequence { sequence: u64 },
    #[error("manifest sequence {sequence} (release {version}) expired at {expires}: the mirror may be frozen (the newest trusted is sequence {trusted})")]
    Expired {
        sequence: u64,
        version: String,
        expires: String,
        trusted: u64,
    },
    #[error("the manifest is for product {offered}, this installation runs {trusted}")]
    Product { offered: String, trusted: String },
}

impl Trusted {
    /// The trust of the installation, or nothing trusted yet.
    pub fn load(path: &Path) -> Result<Trusted, String> {
        match std::fs::read(path) {
            Ok(b) => {
                let t: Trusted = serde_json::from_slice(&b)
                    .map_err(|e| format!("{} is damaged: {e}", path.display()))?;
                if t.format > TRUST_FORMAT {
                    return Err(format!(
                        "{} has format {}, newer than this molt reads",
                        path.display(),
                        t.format
                    ));
                }
                Ok(t)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Trusted {
                format: TRUST_FORMAT,
                ..Trusted::default()
            }),
            Err(e) => Err(format!("cannot read {}: {e}", path.display())),
        }
    }

    /// Whether manifest `m` (whose bytes hash to `sha256`) may be acted upon at `now`; the
    /// trust to store when it may.
    pub fn admit(&self, m: &Manifest, sha256: &str, now: SystemTime) -> Result<Trusted, Distrust> {
        if let Some(p) = &self.product {
            if *p != m.product {
                return Err(Distrust::Product {
                    offered: m.product.clone(),
                    trusted: p.clone(),
                });
            }
        }
        if m.sequence < self.manifest_sequence {
            return Err(Distrust::Older {
                offered: m.sequence,
                version: m.version.clone(),
                trusted: self.manifest_sequence,
                trusted_version: self.manifest_version.clone().unwrap_or_default(),
            });
        }
        if m.sequence == self.manifest_sequence
            && self.manifest_sha256.as_deref().is_some_and(|h| h != sha256)
        {
            return Err(Distrust::SameSequence {
                sequence: m.sequence,
            });
        }
        // `parse` checked the time; an unreadable one counts as expired.
        if m.expires_at().map_or(true, |t| t <= now) {
            return Err(Distrust::Expired {
                sequence: m.sequence,
                version: m.version.clone(),
                expires: m.expires.clone(),
                trusted: self.manifest_sequence,
            });
        }
        Ok(Trusted {
            format: TRUST_FORMAT,
            product: Some(m.product.clone()),
            manifest_sequence: m.sequence,
            manifest_sha256: Some(sha256.to_string()),
            manifest_version: Some(m.version.clone()),
            root: self.root.clone(),
        })
    }

    /// Store durably (atomic replace, synced).
    pub fn store(&self, path: &Path) -> std::io::Result<()> {
        let text = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        crate::fsutil::write_atomic(path, &text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn m(seq: u64, expires: &str) -> Manifest {
        Manifest {
            format: 1,
            product: "demo".into(),
            version: format!("1.{seq}.0"),
            released_at: "x".into(),
            sequence: seq,
            expires: expires.into(),
            notes: String::new(),
            platforms: Default::default(),
        }
    }

    #[test]
    fn older_expired_and_forked_manifests_are_refused() {
        let now = humantime::parse_rfc3339("2026-11-24T00:00:00Z").unwrap();
        let later = "2027-01-01T00:00:00Z";
        let t = Trusted::default().admit(&m(5, later), "h5", now).unwrap();
        assert_eq!(t.manifest_sequence, 5);
        // The same manifest again is fine; a newer one moves the trust on.
        assert_eq!(t.admit(&m(5, later), "h5", now).unwrap(), t);
        let t6 = t.admit(&m(6, later), "h6", now).unwrap();
        assert!(matches!(
            t6.admit(&m(5, later), "h5", now),
            Err(Distrust::Older {
                offered: 5,
                trusted: 6,
                ..
            })
        ));
        assert!(matches!(
            t6.admit(&m(6, later), "other", now),
            Err(Distrust::SameSequence { sequence: 6 })
        ));
        let e = t6
            .admit(&m(7, "2026-11-23T23:59:59Z"), "h7", now)
            .unwrap_err();
        assert!(
            e.to_string().contains("expired at 2026-11-23T23:59:59Z"),
            "{e}"
        );
        // Expiry is checked against the clock, not only on newer sequences.
        let then = now + Duration::from_secs(400 * 86400);
        assert!(matches!(
            t6.admit(&m(6, later), "h6", then),
            Err(Distrust::Expired { .. })
        ));
        let mut other = m(9, later);
        other.product = "evil".into();
        assert!(matches!(
            t6.admit(&other, "h9", now),
            Err(Distrust::Product { .. })
        ));
    }
}
