//! The check every release command starts with: fetch the vendor's manifest (bounded), verify
//! its signature, choose none / patch / full, and the preflight of disk space.

use crate::install::Installation;
use crate::manifest::{self, Choice, Manifest, Package};
use std::path::PathBuf;

/// Why a check or a preflight refused. Each names the URL, path or figures involved.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error("molt.toml has no manifest_url: molt does not know where releases are published")]
    NoManifestUrl,
    #[error("{0}")]
    BadUrl(String),
    #[error("no manifest at {0}")]
    NoManifest(String),
    #[error("cannot fetch {url}")]
    Fetch {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{url} answered {status}")]
    Status { url: String, status: u16 },
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{url} is larger than {cap} bytes; refusing to read more")]
    TooLarge { url: String, cap: u64 },
    #[error(
        "the manifest is not signed ({0} is missing) and molt.toml names a public key; refusing it"
    )]
    Unsigned(String),
    #[error("{0}")]
    PublicKey(String),
    #[error("molt.toml names no public_key, so the manifest's signature cannot be checked; name the vendor's key, or write `allow_unsigned = true` to accept unsigned manifests")]
    UnsignedNotAllowed,
    /// (`why` is in the message, not a `source`: printing the chain would say it twice.)
    #[error("manifest {url} refused: {why}")]
    Distrust {
        url: String,
        why: crate::trust::Distrust,
    },
    #[error("{0}")]
    Trust(String),
    #[error("{url} refused: {why}")]
    Root {
        url: String,
        why: crate::root::RootError,
    },
    #[error("manifest {url} refused: {reason}")]
    Refused { url: String, reason: String },
    #[error("manifest {url}: {reason}")]
    Manifest { url: String, reason: String },
    #[error("the installed release: {0}")]
    Installed(String),
    #[error("{0}")]
    Choice(String),
    #[error("not enough disk space in {root}: {free} bytes free, {need} needed for the download, the staged release and the backup")]
    NoSpace { root: PathBuf, free: u64, need: u64 },
    #[error("cannot measure the free space of {path}")]
    Statvfs {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The most bytes molt reads of a manifest or a signature: a server streaming endless bytes
/// must not exhaust memory.
pub const METADATA_CAP: u64 = 4 << 20;

/// The checked manifest and what to do with it.
pub struct Checked {
    pub url: String,
    pub manifest: Manifest,
    /// The installed version (`current`'s release.toml), if any.
    pub current: Option<String>,
    pub choice: Choice,
    pub signed: bool,
    /// The vendor root the signature was checked against (with a pinned `root`).
    pub root: Option<crate::root::Root>,
}

/// Read a metadata file by URL or path, at most [`METADATA_CAP`] bytes and within `timeout`
/// (a slow-drip server cannot hold molt forever); `None` when absent.
pub async fn get(url: &str, timeout: std::time::Duration) -> Result<Option<Vec<u8>>, CheckError> {
    manifest::check_url(url).map_err(CheckError::BadUrl)?;
    if url.starts_with("http://") || url.starts_with("https://") {
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(timeout)
            .redirect(crate::http::redirects())
            .build()
            .map_err(|source| CheckError::Fetch {
                url: url.to_string(),
                source,
            })?;
        let fetch = |source| CheckError::Fetch {
            url: url.to_string(),
            source,
        };
        let mut resp = client.get(url).send().await.map_err(fetch)?;
        if resp.status().as_u16() == 404 {
            return Ok(None);
        }
        if !resp.status().is_success() {
            return Err(CheckError::Status {
                url: url.to_string(),
                status: resp.status().as_u16(),
            });
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(fetch)? {
            if body.len() as u64 + chunk.len() as u64 > METADATA_CAP {
                return Err(CheckError::TooLarge {
                    url: url.to_string(),
                    cap: METADATA_CAP,
                });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Some(body))
    } else {
        use std::io::Read;
        let path = url.strip_prefix("file://").unwrap_or(url);
        let read = |source| CheckError::Read {
            path: PathBuf::from(path),
            source,
        };
        let file = match std::fs::File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(read(e)),
        };
        let mut body = Vec::new();
        file.take(METADATA_CAP + 1)
            .read_to_end(&mut body)
            .map_err(read)?;
        if body.len() as u64 > METADATA_CAP {
            return Err(CheckError::TooLarge {
                url: path.to_string(),
                cap: METADATA_CAP,
            });
        }
        Ok(Some(body))
    }
}

/// What the operator asked for beyond "the latest".
#[derive(Clone, Copy, Debug, Default)]
pub struct Want {
    /// The full package even when a patch applies.
    pub force_full: bool,
    /// Accept a manifest whose release is older than the installed one.
    pub allow_downgrade: bool,
}

/// Where a manifest comes from and what vouches for it: an installation's product
/// ([`Source::of`]) or molt itself (`[self_update]`).
pub struct Source {
    /// Relative paths (the manifest, a pinned root, a key file) are under this directory.
    pub base: PathBuf,
    pub manifest_url: Option<String>,
    /// The pinned first root document (relative to `base`).
    pub root: Option<String>,
    /// The single public key's text (a file is read by the caller).
    pub public_key: Result<Option<String>, String>,
    pub allow_unsigned: bool,
    /// What was trusted so far (`trust.json` for the product).
    pub trust_file: PathBuf,
    /// The version installed now.
    pub current: Option<String>,
    pub timeout: std::time::Duration,
}

impl Source {
    /// The installation's product, as molt.toml describes it.
    pub fn of(inst: &Installation) -> Result<Source, CheckError> {
        Ok(Source {
            base: inst.root.clone(),
            manifest_url: inst.config.manifest_url.clone(),
            root: inst.config.root.clone(),
            public_key: inst.config.public_key_text(&inst.root),
            allow_unsigned: inst.config.allow_unsigned,
            trust_file: inst.trust_file(),
            current: inst
                .current()
                .map_err(CheckError::Installed)?
                .map(|(_, r)| r.version),
            timeout: std::time::Duration::from_secs(
                inst.config.download.metadata_timeout_secs.max(1),
            ),
        })
    }
}

/// Fetch and verify the manifest molt.toml names, and choose what to install.
pub async fn check(inst: &Installation, want: Want) -> Result<Checked, CheckError> {
    check_source(&Source::of(inst)?, want).await
}

/// Fetch and verify `src`'s manifest (signature by its root or key, freshness, product), and
/// choose what to install over `src.current`.
pub async fn check_source(src: &Source, want: Want) -> Result<Checked, CheckError> {
    let url = src.manifest_url.clone().ok_or(CheckError::NoManifestUrl)?;
    let url = if url.contains("://") || url.starts_with('/') {
        url
    } else {
        src.base.join(url).to_string_lossy().into_owned()
    };
    let timeout = src.timeout;
    let bytes = get(&url, timeout)
        .await?
        .ok_or_else(|| CheckError::NoManifest(url.clone()))?;
    let trust_file = src.trust_file.clone();
    let mut trusted = crate::trust::Trusted::load(&trust_file).map_err(CheckError::Trust)?;
    let sig_url = format!("{url}.minisig");
    let signed = match (&src.root, src.public_key.clone()) {
        (Some(pin), _) => {
            let root = follow_roots(src, pin, &url, &mut trusted).await?;
            let sig = get(&sig_url, timeout)
                .await?
                .ok_or_else(|| CheckError::Unsigned(sig_url.clone()))?;
            root.verify("the manifest", &bytes, &String::from_utf8_lossy(&sig))
                .map_err(|why| CheckError::Root {
                    url: url.clone(),
                    why,
                })?;
            true
        }
        (None, Err(e)) => return Err(CheckError::PublicKey(e)),
        (None, Ok(Some(key))) => {
            let sig = get(&sig_url, timeout)
                .await?
                .ok_or_else(|| CheckError::Unsigned(sig_url.clone()))?;
            manifest::verify_signature(&bytes, &String::from_utf8_lossy(&sig), &key).map_err(
                |reason| CheckError::Refused {
                    url: url.clone(),
                    reason,
                },
            )?;
            true
        }
        (None, Ok(None)) if src.allow_unsigned => {
            tracing::warn!(
                "molt.toml names no public_key (allow_unsigned = true): the manifest's signature is not checked"
            );
            false
        }
        (None, Ok(None)) => return Err(CheckError::UnsignedNotAllowed),
    };
    let m = Manifest::parse(&bytes).map_err(|reason| CheckError::Manifest {
        url: url.clone(),
        reason,
    })?;
    if let (Some(_), Some(root)) = (&src.root, &trusted.root) {
        if root.product != m.product {
            return Err(CheckError::Distrust {
                url: url.clone(),
                why: crate::trust::Distrust::Product {
                    offered: m.product.clone(),
                    trusted: root.product.clone(),
                },
            });
        }
    }
    // Fresh and not older than what was trusted before; remembered before it is acted upon.
    let sha256 = {
        use sha2::Digest;
        format!("{:x}", sha2::Sha256::digest(&bytes))
    };
    let now = trusted
        .admit(&m, &sha256, std::time::SystemTime::now())
        .map_err(|why| CheckError::Distrust {
            url: url.clone(),
            why,
        })?;
    if now != trusted {
        store_trust(&now, &trust_file)?;
    }
    let current = src.current.clone();
    let choice = manifest::choose(
        &m,
        std::env::consts::ARCH,
        current.as_deref(),
        want.force_full,
        want.allow_downgrade,
    )
    .map_err(CheckError::Choice)?;
    let root = src.root.as_ref().and(trusted.root.clone());
    Ok(Checked {
        url,
        manifest: m,
        current,
        choice,
        signed,
        root,
    })
}

fn store_trust(t: &crate::trust::Trusted, path: &std::path::Path) -> Result<(), CheckError> {
    t.store(path).map_err(|e| {
        CheckError::Trust(format!(
            "cannot record the trusted manifest and root in {}: {e}",
            path.display()
        ))
    })
}

/// The most root rotations one check follows.
pub const MAX_ROTATIONS: u64 = 1024;

/// The newest vendor root: the operator's pinned one (`pin`, checked against its own
/// signatures) or the newer one trusted since, followed through every rotation published
/// beside the manifest (`N.root.json`), refused when expired. A newer root is stored in
/// `trusted` (and on disk) before it is used.
async fn follow_roots(
    src: &Source,
    pin: &str,
    manifest_url: &str,
    trusted: &mut crate::trust::Trusted,
) -> Result<crate::root::Root, CheckError> {
    use crate::root::{self, Root};
    let timeout = src.timeout;
    let pin_path = src.base.join(pin).to_string_lossy().into_owned();
    let pin_sig = format!("{pin_path}.minisig");
    let bytes = get(&pin_path, timeout)
        .await?
        .ok_or_else(|| CheckError::Trust(format!("the pinned root {pin_path} does not exist")))?;
    let sig = get(&pin_sig, timeout)
        .await?
        .ok_or_else(|| CheckError::Unsigned(pin_sig.clone()))?;
    let pinned = Root::verify_pinned(&bytes, &String::from_utf8_lossy(&sig)).map_err(|why| {
        CheckError::Root {
            url: pin_path.clone(),
            why,
        }
    })?;
    let mut cur = match &trusted.root {
        Some(t) if t.version >= pinned.version => {
            if t.product != pinned.product {
                return Err(CheckError::Trust(format!(
                    "the pinned root {pin_path} is for product {}, the trusted root for {}",
                    pinned.product, t.product
                )));
            }
            t.clone()
        }
        _ => pinned,
    };
    for _ in 0..MAX_ROTATIONS {
        let next = root::url_of(manifest_url, cur.version + 1);
        let Some(next_bytes) = get(&next, timeout).await? else {
            break;
        };
        let next_sig = format!("{next}.minisig");
        let sig = get(&next_sig, timeout)
            .await?
            .ok_or(CheckError::Unsigned(next_sig))?;
        cur = cur
            .verify_next(&next_bytes, &String::from_utf8_lossy(&sig))
            .map_err(|why| CheckError::Root { url: next, why })?;
    }
    let changed = trusted.root.as_ref() != Some(&cur);
    if changed {
        trusted.root = Some(cur.clone());
        store_trust(trusted, &src.trust_file)?;
    }
    cur.check_fresh(std::time::SystemTime::now())
        .map_err(|why| CheckError::Root {
            url: root::url_of(manifest_url, cur.version),
            why,
        })?;
    Ok(cur)
}

/// Free bytes on the file system holding `path`.
pub fn free_space(path: &std::path::Path) -> Result<u64, CheckError> {
    let st = rustix::fs::statvfs(path).map_err(|e| CheckError::Statvfs {
        path: path.to_path_buf(),
        source: e.into(),
    })?;
    Ok(st.f_bavail.saturating_mul(st.f_frsize))
}

/// Bytes an installation of `pkg` needs: the download, the staged release, 10% slack.
pub fn space_needed(pkg: &Package) -> u64 {
    pkg.size + pkg.installed_size + pkg.installed_size / 10
}

/// Refuse to start when the disk cannot hold the download and the staged release (plus
/// `extra`, e.g. a backup of the data).
pub fn preflight_space(inst: &Installation, pkg: &Package, extra: u64) -> Result<(), CheckError> {
    let free = free_space(&inst.root)?;
    let need = space_needed(pkg) + extra;
    if free < need {
        return Err(CheckError::NoSpace {
            root: inst.root.clone(),
            free,
            need,
        });
    }
    Ok(())
}
