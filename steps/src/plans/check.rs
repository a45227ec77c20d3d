//! The check every release command starts with: fetch the vendor's manifest (bounded), verify
//! its signature, choose none / patch / full, and the preflight of disk space.

use crate::install::Installation;
use crate::manifest::{self, Choice, Manifest, Package};

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
}

/// Read a metadata file by URL or path, at most [`METADATA_CAP`] bytes; `None` when absent.
pub async fn get(url: &str) -> Result<Option<Vec<u8>>, String> {
    manifest::check_url(url)?;
    if url.starts_with("http://") || url.starts_with("https://") {
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(std::time::Duration::from_secs(60))
            .redirect(reqwest::redirect::Policy::limited(5))
            .build()
            .map_err(|e| e.to_string())?;
        let mut resp = client
            .get(url)
            .send()
            .await
            .map_err(|e| format!("cannot fetch {url}: {e}"))?;
        if resp.status().as_u16() == 404 {
            return Ok(None);
        }
        if !resp.status().is_success() {
            return Err(format!("{url} answered {}", resp.status()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| format!("cannot read {url}: {e}"))?
        {
            if body.len() as u64 + chunk.len() as u64 > METADATA_CAP {
                return Err(format!(
                    "{url} is larger than {METADATA_CAP} bytes; refusing to read more"
                ));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Some(body))
    } else {
        use std::io::Read;
        let path = url.strip_prefix("file://").unwrap_or(url);
        let file = match std::fs::File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("cannot read {path}: {e}")),
        };
        let mut body = Vec::new();
        file.take(METADATA_CAP + 1)
            .read_to_end(&mut body)
            .map_err(|e| format!("cannot read {path}: {e}"))?;
        if body.len() as u64 > METADATA_CAP {
            return Err(format!(
                "{path} is larger than {METADATA_CAP} bytes; refusing to read more"
            ));
        }
        Ok(Some(body))
    }
}

/// Fetch and verify the manifest molt.toml names, and choose what to install.
pub async fn check(inst: &Installation, force_full: bool) -> Result<Checked, String> {
    let url =
        inst.config.manifest_url.clone().ok_or(
            "molt.toml has no manifest_url: molt does not know where releases are published",
        )?;
    let url = if url.contains("://") || url.starts_with('/') {
        url
    } else {
        inst.root.join(url).to_string_lossy().into_owned()
    };
    let bytes = get(&url)
        .await?
        .ok_or_else(|| format!("no manifest at {url}"))?;
    let signed = match inst.config.public_key_text(&inst.root)? {
        Some(key) => {
            let sig_url = format!("{url}.minisig");
            let sig = get(&sig_url).await?.ok_or_else(|| {
                format!("the manifest is not signed ({sig_url} is missing) and molt.toml names a public key; refusing it")
            })?;
            manifest::verify_signature(&bytes, &String::from_utf8_lossy(&sig), &key)
                .map_err(|e| format!("manifest {url} refused: {e}"))?;
            true
        }
        None => {
            tracing::warn!(
                "molt.toml names no public_key: the manifest's signature is not checked"
            );
            false
        }
    };
    let m = Manifest::parse(&bytes).map_err(|e| format!("manifest {url}: {e}"))?;
    let current = inst.current()?.map(|(_, r)| r.version);
    let choice = manifest::choose(&m, std::env::consts::ARCH, current.as_deref(), force_full)?;
    Ok(Checked {
        url,
        manifest: m,
        current,
        choice,
        signed,
    })
}

/// Free bytes on the file system holding `path`.
pub fn free_space(path: &std::path::Path) -> Result<u64, String> {
    let st = rustix::fs::statvfs(path).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(st.f_bavail.saturating_mul(st.f_frsize))
}

/// Bytes an installation of `pkg` needs: the download, the staged release, 10% slack.
pub fn space_needed(pkg: &Package) -> u64 {
    pkg.size + pkg.installed_size + pkg.installed_size / 10
}

/// Refuse to start when the disk cannot hold the download and the staged release (plus
/// `extra`, e.g. a backup of the data).
pub fn preflight_space(inst: &Installation, pkg: &Package, extra: u64) -> Result<(), String> {
    let free = free_space(&inst.root)?;
    let need = space_needed(pkg) + extra;
    if free < need {
        return Err(format!(
            "not enough disk space in {}: {free} bytes free, {need} needed for the download, the staged release and the backup",
            inst.root.display()
        ));
    }
    Ok(())
}
