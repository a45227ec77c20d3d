//! The vendor's root of trust: `N.root.json`, published beside the manifest, names the keys
//! allowed to sign manifests and how many of them must (`threshold`). It is itself signed:
//! `N.root.json.minisig` holds one or more minisign signatures (signature files of the
//! `minisign` tool, concatenated), so a vendor can sign with molt or with `minisign -S` and
//! `cat`.
//!
//! ```json
//! { "format": 1, "product": "demo", "version": 2, "expires": "2027-11-24T00:00:00Z",
//!   "threshold": 1, "keys": ["RWQ…", "RWR…"] }
//! ```
//!
//! The operator pins the first root (molt.toml `root`). Root N+1 is accepted only when it is
//! signed by `threshold` of root N's keys *and* by `threshold` of its own (a stolen old key
//! cannot name new keys alone, a new key cannot introduce itself), its version is exactly
//! N+1 and it is for the same product. Intermediate roots may have expired (an installation
//! that slept through two rotations walks the chain); the newest must not have.

use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

pub const ROOT_FORMAT: u32 = 1;

/// The most signatures a signature file may hold (each is tried against the keys).
pub const MAX_SIGNATURES: usize = 64;

/// The most keys a root may name.
pub const MAX_KEYS: usize = 64;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Root {
    pub format: u32,
    pub product: String,
    /// 1 for the first root, then one more with every rotation.
    pub version: u64,
    /// RFC 3339 (UTC).
    pub expires: String,
    /// How many distinct keys of `keys` must sign a manifest or the next root.
    pub threshold: u32,
    /// minisign public keys (the base64 line of a `.pub` file).
    pub keys: Vec<String>,
}

/// Why a root or a signature is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RootError {
    #[error("root document is malformed: {0}")]
    Malformed(String),
    #[error("root version {offered} cannot follow root version {trusted}: the next is {}", trusted + 1)]
    NotNext { offered: u64, trusted: u64 },
    #[error("root version {version} is for product {offered}, root version {trusted_version} for {trusted}")]
    Product {
        version: u64,
        offered: String,
        trusted_version: u64,
        trusted: String,
    },
    #[error("{what} is signed by {found} of root version {version}'s keys; it needs {needed}")]
    Signatures {
        what: String,
        version: u64,
        found: usize,
        needed: u32,
    },
    #[error("root version {version} expired at {expires}: the vendor must publish root version {} (or the mirror is frozen)", version + 1)]
    Expired { version: u64, expires: String },
}

impl Root {
    /// Parse and check a root document's shape (not its signatures).
    pub fn parse(bytes: &[u8]) -> Result<Root, RootError> {
        let bad = |m: String| RootError::Malformed(m);
        let r: Root = serde_json::from_slice(bytes).map_err(|e| bad(e.to_string()))?;
        if r.format != ROOT_FORMAT {
            return Err(bad(format!(
                "format {} (this molt reads format {ROOT_FORMAT}{})",
                r.format,
                if r.format > ROOT_FORMAT {
                    "; use a newer molt"
                } else {
                    ""
                }
            )));
        }
        if r.product.is_empty() {
            return Err(bad("no product".into()));
        }
        if r.version == 0 {
            return Err(bad("version 0 (the first root is version 1)".into()));
        }
        r.expires_at()?;
        if r.keys.is_empty() || r.keys.len() > MAX_KEYS {
            return Err(bad(format!(
                "{} keys (between 1 and {MAX_KEYS})",
                r.keys.len()
            )));
        }
        let mut ids = BTreeSet::new();
        for k in &r.keys {
            let pk = crate::manifest::public_key_from(k).map_err(bad)?;
            if !ids.insert(pk.keynum().to_vec()) {
                return Err(bad(format!("key {k} is named twice")));
            }
        }
        if r.threshold == 0 || r.threshold as usize > r.keys.len() {
            return Err(bad(format!(
                "threshold {} with {} keys (between 1 and the number of keys)",
                r.threshold,
                r.keys.len()
            )));
        }
        Ok(r)
    }

    pub fn expires_at(&self) -> Result<std::time::SystemTime, RootError> {
        humantime::parse_rfc3339(&self.expires).map_err(|e| {
            RootError::Malformed(format!(
                "`expires` {:?} is not an RFC 3339 UTC time: {e}",
                self.expires
            ))
        })
    }

    /// Refuse a root whose expiry has passed.
    pub fn check_fresh(&self, now: std::time::SystemTime) -> Result<(), RootError> {
        if self.expires_at().map_or(true, |t| t <= now) {
            return Err(RootError::Expired {
                version: self.version,
                expires: self.expires.clone(),
            });
        }
        Ok(())
    }

    fn public_keys(&self) -> Vec<minisign::PublicKey> {
        // `parse` checked every key.
        self.keys
            .iter()
            .filter_map(|k| crate::manifest::public_key_from(k).ok())
            .collect()
    }

    /// How many distinct keys of this root signed `data` in `signatures` (a signature file
    /// holding one or more minisign signatures).
    pub fn count_signers(&self, data: &[u8], signatures: &str) -> usize {
        let keys = self.public_keys();
        let mut signed = BTreeSet::new();
        for sig in split_signatures(signatures)
            .into_iter()
            .take(MAX_SIGNATURES)
        {
            let Ok(sig) = minisign::SignatureBox::from_string(&sig) else {
                continue;
            };
            for pk in keys.iter().filter(|k| k.keynum() == sig.keynum()) {
                if minisign::verify(pk, &sig, std::io::Cursor::new(data), true, false, false)
                    .is_ok()
                {
                    signed.insert(pk.keynum().to_vec());
                }
            }
        }
        signed.len()
    }

    /// Refuse `data` unless `threshold` of this root's keys signed it.
    pub fn verify(&self, what: &str, data: &[u8], signatures: &str) -> Result<(), RootError> {
        let found = self.count_signers(data, signatures);
        if found < self.threshold as usize {
            return Err(RootError::Signatures {
                what: what.to_string(),
                version: self.version,
                found,
                needed: self.threshold,
            });
        }
        Ok(())
    }

    /// A first root, trusted because the operator pinned it: it must still be signed by its
    /// own keys (a pinned file that was edited is refused).
    pub fn verify_pinned(bytes: &[u8], signatures: &str) -> Result<Root, RootError> {
        let r = Root::parse(bytes)?;
        r.verify(&format!("root version {}", r.version), bytes, signatures)?;
        Ok(r)
    }

    /// The root that follows this one: version + 1, same product, signed by this root's
    /// threshold of keys and by its own.
    pub fn verify_next(&self, bytes: &[u8], signatures: &str) -> Result<Root, RootError> {
        let next = Root::parse(bytes)?;
        if next.version != self.version + 1 {
            return Err(RootError::NotNext {
                offered: next.version,
                trusted: self.version,
            });
        }
        if next.product != self.product {
            return Err(RootError::Product {
                version: next.version,
                offered: next.product,
                trusted_version: self.version,
                trusted: self.product.clone(),
            });
        }
        let what = format!("root version {}", next.version);
        self.verify(&what, bytes, signatures)?;
        next.verify(&what, bytes, signatures)?;
        Ok(next)
    }
}

/// A signature file's signatures: each starts at an `untrusted comment:` line.
pub fn split_signatures(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for line in text.lines() {
        if line.starts_with("untrusted comment:") || out.is_empty() {
            out.push(String::new());
        }
        let cur = out.last_mut().expect("pushed above");
        cur.push_str(line);
        cur.push('\n');
    }
    out
}

/// The URL of root version `version`, beside the manifest at `manifest_url`.
pub fn url_of(manifest_url: &str, version: u64) -> String {
    crate::manifest::resolve(manifest_url, &format!("{version}.root.json"))
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Key {
        sk: minisign::SecretKey,
        pk: String,
    }

    fn key() -> Key {
        let kp = minisign::KeyPair::generate_unencrypted_keypair().unwrap();
        Key {
            pk: kp.pk.to_base64(),
            sk: kp.sk,
        }
    }

    fn sign(data: &[u8], keys: &[&Key]) -> String {
        keys.iter()
            .map(|k| {
                minisign::sign(None, &k.sk, std::io::Cursor::new(data), None, None)
                    .unwrap()
                    .into_string()
            })
            .collect()
    }

    fn root(version: u64, threshold: u32, keys: &[&Key], expires: &str) -> Vec<u8> {
        serde_json::to_vec(&Root {
            format: 1,
            product: "demo".into(),
            version,
            expires: expires.into(),
            threshold,
            keys: keys.iter().map(|k| k.pk.clone()).collect(),
        })
        .unwrap()
    }

    const LATER: &str = "2099-01-01T00:00:00Z";

    #[test]
    fn rotation_needs_the_old_keys_and_the_new_ones() {
        let (a, b, c, d) = (key(), key(), key(), key());
        let r1b = root(1, 1, &[&a], LATER);
        let r1 = Root::verify_pinned(&r1b, &sign(&r1b, &[&a])).unwrap();
        // A pinned root must be signed by its own key.
        assert!(matches!(
            Root::verify_pinned(&r1b, &sign(&r1b, &[&b])),
            Err(RootError::Signatures { found: 0, .. })
        ));
        let r2b = root(2, 1, &[&b], LATER);
        let r2 = r1.verify_next(&r2b, &sign(&r2b, &[&a, &b])).unwrap();
        assert_eq!(r2.version, 2);
        // Only the new key, or only the old key: refused.
        for only in [&b, &a] {
            let e = r1.verify_next(&r2b, &sign(&r2b, &[only])).unwrap_err();
            assert!(matches!(e, RootError::Signatures { found: 0, .. }), "{e}");
        }
        // A version that skips one, and another product.
        let r3b = root(3, 1, &[&c], LATER);
        assert_eq!(
            r1.verify_next(&r3b, &sign(&r3b, &[&a, &c])).unwrap_err(),
            RootError::NotNext {
                offered: 3,
                trusted: 1
            }
        );
        let mut other: Root = serde_json::from_slice(&r3b).unwrap();
        other.product = "evil".into();
        let ob = serde_json::to_vec(&other).unwrap();
        assert!(matches!(
            r2.verify_next(&ob, &sign(&ob, &[&b, &c])),
            Err(RootError::Product { .. })
        ));
        // Two of three: one signature is not enough, two distinct keys are; the same key
        // twice counts once.
        let r3b = root(3, 2, &[&b, &c, &d], LATER);
        let r3 = r2.verify_next(&r3b, &sign(&r3b, &[&b, &c, &d])).unwrap();
        let m = b"manifest";
        assert!(matches!(
            r3.verify("manifest", m, &sign(m, &[&c])),
            Err(RootError::Signatures {
                found: 1,
                needed: 2,
                ..
            })
        ));
        assert!(matches!(
            r3.verify("manifest", m, &sign(m, &[&c, &c])),
            Err(RootError::Signatures { found: 1, .. })
        ));
        r3.verify("manifest", m, &sign(m, &[&d, &b])).unwrap();
        // The old key no longer signs manifests.
        assert!(r3.verify("manifest", m, &sign(m, &[&a, &b])).is_err());
        // Garbage between signatures is skipped, not fatal.
        let mixed = format!("junk\n{}", sign(m, &[&c, &d]));
        r3.verify("manifest", m, &mixed).unwrap();
    }

    #[test]
    fn malformed_and_expired_roots_are_refused() {
        let a = key();
        let now = humantime::parse_rfc3339("2026-11-24T00:00:00Z").unwrap();
        let r = Root::parse(&root(1, 1, &[&a], "2026-11-23T00:00:00Z")).unwrap();
        let e = r.check_fresh(now).unwrap_err();
        assert!(e.to_string().contains("expired at 2026-11-23"), "{e}");
        for (bytes, says) in [
            (root(0, 1, &[&a], LATER), "version 0"),
            (root(1, 2, &[&a], LATER), "threshold 2 with 1 keys"),
            (root(1, 0, &[&a], LATER), "threshold 0"),
            (root(1, 1, &[&a, &a], LATER), "named twice"),
            (root(1, 1, &[], LATER), "0 keys"),
            (root(1, 1, &[&a], "soon"), "RFC 3339"),
            (b"{\"format\":1}".to_vec(), "missing field"),
        ] {
            let e = Root::parse(&bytes).unwrap_err().to_string();
            assert!(e.contains(says), "{e} should say {says}");
        }
    }
}
