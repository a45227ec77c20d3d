//! The vendor's manifest (`manifest.json`, signed by `manifest.json.minisig`): the latest
//! release, per architecture a full package and patches. Parsing refuses anything malformed
//! or newer than this molt reads; `choose` decides between nothing, a patch and a full
//! package.
//!
//! ```json
//! { "format": 1, "product": "demo", "version": "2.0.0", "released_at": "2026-11-24T00:00:00Z",
//!   "sequence": 7, "expires": "2027-02-22T00:00:00Z",
//!   "notes": "...",
//!   "platforms": { "x86_64": {
//!       "full": { "url": "demo-2.0.0-x86_64.tar.zst", "size": 1234, "sha256": "…", "installed_size": 5678 },
//!       "patches": [ { "from": ">=1.0.0, <2.0.0", "url": "…", "size": 99, "sha256": "…", "installed_size": 5678 } ] } } }
//! ```
//! Package URLs may be absolute (`http://`, `https://`) or relative to the manifest's location.

use crate::version::{Range, Version};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub const MANIFEST_FORMAT: u32 = 1;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format: u32,
    pub product: String,
    pub version: String,
    pub released_at: String,
    /// Strictly increasing with every manifest the vendor publishes: molt refuses one older
    /// than the newest it trusted (a rollback attack, or a stale mirror).
    pub sequence: u64,
    /// RFC 3339 (UTC): after it the manifest is refused (a frozen mirror that keeps saying
    /// "nothing new" forever).
    pub expires: String,
    #[serde(default)]
    pub notes: String,
    pub platforms: BTreeMap<String, Platform>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Platform {
    pub full: Option<Package>,
    #[serde(default)]
    pub patches: Vec<Package>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Package {
    /// Patches only: the installed versions this patch applies to (a range).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    pub url: String,
    pub size: u64,
    pub sha256: String,
    /// Bytes the unpacked release takes: the disk space preflight uses it, and staging
    /// refuses a package that unpacks to more.
    pub installed_size: u64,
}

fn valid_sha(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

impl Manifest {
    /// Parse and check a manifest.
    pub fn parse(bytes: &[u8]) -> Result<Manifest, String> {
        #[derive(Deserialize)]
        struct Probe {
            format: Option<serde_json::Value>,
        }
        let probe: Probe = serde_json::from_slice(bytes)
            .map_err(|e| format!("manifest is not valid JSON: {e}"))?;
        match probe.format {
            None => return Err("manifest has no `format` field (this molt reads format 1)".into()),
            Some(serde_json::Value::Number(n)) => match n.as_u64() {
                Some(f) if f as u32 == MANIFEST_FORMAT => {}
                Some(f) if f > MANIFEST_FORMAT as u64 => {
                    return Err(format!(
                        "manifest format {f} is newer than this molt reads ({MANIFEST_FORMAT}); use a newer molt"
                    ))
                }
                _ => return Err(format!("manifest format {n} is not one this molt knows")),
            },
            Some(other) => return Err(format!("manifest `format` is {other}, expected a number")),
        }
        let m: Manifest =
            serde_json::from_slice(bytes).map_err(|e| format!("manifest is malformed: {e}"))?;
        Version::parse(&m.version)?;
        if m.sequence == 0 {
            return Err("manifest sequence is 0 (the first is 1)".into());
        }
        m.expires_at()?;
        if m.platforms.is_empty() {
            return Err("manifest names no platform".into());
        }
        for (arch, p) in &m.platforms {
            let pkgs = p
                .full
                .iter()
                .map(|f| (f, false))
                .chain(p.patches.iter().map(|f| (f, true)));
            for (pkg, patch) in pkgs {
                let what = format!("{arch} package {}", pkg.url);
                if !valid_sha(&pkg.sha256) {
                    return Err(format!(
                        "{what}: sha256 {:?} is not 64 hex digits",
                        pkg.sha256
                    ));
                }
                if pkg.size == 0 {
                    return Err(format!("{what}: size is 0"));
                }
                if pkg.installed_size == 0 {
                    return Err(format!("{what}: installed_size is 0"));
                }
                check_url(&pkg.url).map_err(|e| format!("{what}: {e}"))?;
                match (&pkg.from, patch) {
                    (Some(r), true) => {
                        Range::parse(r).map_err(|e| format!("{what}: {e}"))?;
                    }
                    (None, true) => return Err(format!("{what}: a patch needs `from`")),
                    (Some(_), false) => {
                        return Err(format!("{what}: a full package has no `from`"))
                    }
                    (None, false) => {}
                }
            }
        }
        Ok(m)
    }

    pub fn version(&self) -> Version {
        Version::parse(&self.version).expect("checked by parse")
    }

    /// When the manifest stops being valid.
    pub fn expires_at(&self) -> Result<std::time::SystemTime, String> {
        humantime::parse_rfc3339(&self.expires).map_err(|e| {
            format!(
                "manifest `expires` {:?} is not an RFC 3339 UTC time: {e}",
                self.expires
            )
        })
    }
}

/// Accept `http://`, `https://`, or a path (absolute or relative); refuse other schemes.
pub fn check_url(url: &str) -> Result<(), String> {
    if url.starts_with("http://") || url.starts_with("https://") {
        return Ok(());
    }
    if let Some((scheme, _)) = url.split_once("://") {
        return Err(format!(
            "URL scheme {scheme:?} is not supported (use http, https or a file path)"
        ));
    }
    if url.is_empty() {
        return Err("empty URL".into());
    }
    Ok(())
}

/// Resolve a package URL against the manifest's location (a URL or a file path).
pub fn resolve(base: &str, url: &str) -> String {
    if url.starts_with("http://") || url.starts_with("https://") || url.starts_with('/') {
        return url.to_string();
    }
    match base.rfind('/') {
        Some(i) => format!("{}/{url}", &base[..i]),
        None => url.to_string(),
    }
}

/// What to do.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "choice", rename_all = "snake_case")]
pub enum Choice {
    /// Nothing newer (with the reason).
    None {
        reason: String,
    },
    Patch {
        package: Package,
        reason: String,
    },
    Full {
        package: Package,
        reason: String,
    },
}

/// Decide between nothing, a patch and a full package.
pub fn choose(
    m: &Manifest,
    arch: &str,
    current: Option<&str>,
    force_full: bool,
    allow_downgrade: bool,
) -> Result<Choice, String> {
    let platform = m.platforms.get(arch).ok_or_else(|| {
        format!(
            "the manifest has no package for architecture {arch} (it has: {})",
            m.platforms.keys().cloned().collect::<Vec<_>>().join(", ")
        )
    })?;
    let latest = m.version();
    let full = || {
        platform
            .full
            .clone()
            .ok_or_else(|| format!("the manifest has no full package for {arch}"))
    };
    let Some(current) = current else {
        return Ok(Choice::Full {
            package: full()?,
            reason: "no release is installed".into(),
        });
    };
    let cur = Version::parse(current)?;
    if latest == cur {
        return Ok(Choice::None {
            reason: format!("{cur} is installed and is the latest"),
        });
    }
    if latest < cur && allow_downgrade {
        return Ok(Choice::Full {
            package: full()?,
            reason: format!("a downgrade from {cur} to {latest}, allowed by --allow-downgrade"),
        });
    }
    if latest < cur {
        return Ok(Choice::None {
            reason: format!(
                "the manifest offers {latest}, older than the installed {cur} (a downgrade needs --allow-downgrade)"
            ),
        });
    }
    if force_full {
        return Ok(Choice::Full {
            package: full()?,
            reason: "a full package was asked for".into(),
        });
    }
    for p in &platform.patches {
        let range = Range::parse(p.from.as_deref().unwrap_or(""))?;
        if range.contains(&cur) {
            return Ok(Choice::Patch {
                package: p.clone(),
                reason: format!("patch from {range} applies to the installed {cur}"),
            });
        }
    }
    Ok(Choice::Full {
        package: full()?,
        reason: format!("no patch applies to the installed {cur}"),
    })
}

/// Verify `data` against a minisign signature (text of the `.minisig` file) with a public key
/// (the text of a minisign `.pub` file, or its base64 line).
pub fn verify_signature(data: &[u8], signature: &str, public_key: &str) -> Result<(), String> {
    let pk = public_key_from(public_key)?;
    let sig = minisign::SignatureBox::from_string(signature)
        .map_err(|e| format!("the signature is malformed: {e}"))?;
    minisign::verify(&pk, &sig, std::io::Cursor::new(data), true, false, false)
        .map_err(|e| format!("the signature does not verify with the configured key: {e}"))
}

/// A public key from a `.pub` file's text or its bare base64 line.
pub fn public_key_from(text: &str) -> Result<minisign::PublicKey, String> {
    let t = text.trim();
    let parsed = if t.lines().count() > 1 {
        minisign::PublicKeyBox::from_string(t).and_then(|b| b.into_public_key())
    } else {
        minisign::PublicKey::from_base64(t)
    };
    parsed.map_err(|e| format!("the public key is malformed: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(json: serde_json::Value) -> Result<Manifest, String> {
        Manifest::parse(json.to_string().as_bytes())
    }

    fn pkg(from: Option<&str>) -> serde_json::Value {
        let mut v = serde_json::json!({"url": "p.tar.zst", "size": 10, "sha256": "a".repeat(64), "installed_size": 20});
        if let Some(f) = from {
            v["from"] = f.into();
        }
        v
    }

    fn good() -> serde_json::Value {
        serde_json::json!({
            "format": 1, "product": "demo", "version": "2.0.0", "released_at": "2026-11-24T00:00:00Z",
            "sequence": 1, "expires": "2099-01-01T00:00:00Z",
            "platforms": {"x86_64": {"full": pkg(None), "patches": [pkg(Some(">=1.0.0, <2.0.0"))]}}
        })
    }

    #[test]
    fn parse_refuses_bad_manifests() {
        assert!(manifest(good()).is_ok());
        type Edit = Box<dyn Fn(&mut serde_json::Value)>;
        let cases: Vec<(Edit, &str)> = vec![
            (
                Box::new(|v| {
                    v.as_object_mut().unwrap().remove("format");
                }),
                "no `format`",
            ),
            (Box::new(|v| v["format"] = 2.into()), "newer than this molt"),
            (Box::new(|v| v["version"] = "two".into()), "not valid"),
            (
                Box::new(|v| v["platforms"]["x86_64"]["full"]["sha256"] = "xyz".into()),
                "64 hex",
            ),
            (
                Box::new(|v| v["platforms"]["x86_64"]["full"]["url"] = "ftp://h/p".into()),
                "scheme \"ftp\"",
            ),
            (
                Box::new(|v| {
                    v["platforms"]["x86_64"]["patches"][0]
                        .as_object_mut()
                        .unwrap()
                        .remove("from")
                        .map(drop)
                        .unwrap_or(())
                }),
                "needs `from`",
            ),
            (Box::new(|v| v["surprise"] = 1.into()), "unknown field"),
            (
                Box::new(|v| v["platforms"] = serde_json::json!({})),
                "no platform",
            ),
        ];
        for (edit, says) in cases {
            let mut v = good();
            edit(&mut v);
            let e = manifest(v).unwrap_err();
            assert!(e.contains(says), "{e} should say {says}");
        }
        assert!(Manifest::parse(b"{not json")
            .unwrap_err()
            .contains("not valid JSON"));
    }

    #[test]
    fn choice() {
        let m = manifest(good()).unwrap();
        let c = |cur: Option<&str>, force| choose(&m, "x86_64", cur, force, false).unwrap();
        assert!(matches!(c(None, false), Choice::Full { .. }));
        assert!(matches!(c(Some("1.5.0"), false), Choice::Patch { .. }));
        assert!(matches!(c(Some("1.5.0"), true), Choice::Full { .. }));
        assert!(
            matches!(c(Some("0.9.0"), false), Choice::Full { reason, .. } if reason.contains("no patch"))
        );
        assert!(matches!(c(Some("2.0.0"), false), Choice::None { .. }));
        assert!(matches!(c(Some("v2.0"), false), Choice::None { .. }));
        assert!(
            matches!(c(Some("3.0.0"), false), Choice::None { reason } if reason.contains("older") && reason.contains("--allow-downgrade"))
        );
        // A downgrade only when asked for, and always as a full package.
        assert!(matches!(
            choose(&m, "x86_64", Some("3.0.0"), false, true).unwrap(),
            Choice::Full { reason, .. } if reason.contains("downgrade from 3.0.0 to 2.0.0")
        ));
        assert!(matches!(
            choose(&m, "x86_64", Some("2.0.0"), false, true).unwrap(),
            Choice::None { .. }
        ));
        assert!(choose(&m, "aarch64", Some("1.0.0"), false, false)
            .unwrap_err()
            .contains("no package for architecture aarch64"));
        assert_eq!(
            resolve("http://h/x/manifest.json", "p.tar.zst"),
            "http://h/x/p.tar.zst"
        );
        assert_eq!(
            resolve("/srv/m/manifest.json", "p.tar.zst"),
            "/srv/m/p.tar.zst"
        );
        assert_eq!(resolve("http://h/m.json", "https://o/p"), "https://o/p");
    }
}
