//! Vendor side: `molt keygen`, `molt sign`, `molt pack`. Operator side: `molt check`,
//! `molt fetch` (download and stage a release without cutting over).

use super::print_json;
use crate::exit;
use crate::session::Session;
use anyhow::Context;
use serde_json::json;
use std::path::{Path, PathBuf};
use steps::fetch::Source;
use steps::manifest::{self, Choice, Manifest, Package, Platform};
use steps::plans::check::Checked;
use steps::plans::{FetchRelease, PlanSpec};
use steps::release::Release;
use steps::Installation;

fn password(env: &Option<String>) -> anyhow::Result<Option<String>> {
    match env {
        None => Ok(None),
        Some(var) => std::env::var(var)
            .map(Some)
            .with_context(|| format!("the password variable {var} is not set")),
    }
}

fn load_secret_key(
    path: &Path,
    password_env: &Option<String>,
) -> anyhow::Result<minisign::SecretKey> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the secret key {}", path.display()))?;
    let sk_box = minisign::SecretKeyBox::from_string(&text)
        .map_err(|e| anyhow::anyhow!("{} is not a minisign secret key: {e}", path.display()))?;
    let key = match password(password_env)? {
        Some(p) => sk_box.into_secret_key(Some(p)),
        None => sk_box.into_unencrypted_secret_key(),
    };
    key.map_err(|e| {
        anyhow::anyhow!(
            "cannot use the secret key {}: {e} (a password-protected key needs --password-env VAR)",
            path.display()
        )
    })
}

pub fn keygen(secret: &Path, public: &Path, password_env: &Option<String>) -> anyhow::Result<u8> {
    for p in [secret, public] {
        if p.exists() {
            return Err(exit::coded(
                exit::ERROR,
                format!("{} exists; refusing to overwrite a key", p.display()),
            ));
        }
    }
    let kp = match password(password_env)? {
        Some(pw) => minisign::KeyPair::generate_encrypted_keypair(Some(pw)),
        None => minisign::KeyPair::generate_unencrypted_keypair(),
    }
    .map_err(|e| anyhow::anyhow!("cannot generate a key pair: {e}"))?;
    let sk = kp
        .sk
        .to_box(None)
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .into_string();
    let pk = kp
        .pk
        .to_box()
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .into_string();
    std::fs::write(secret, sk).with_context(|| format!("cannot write {}", secret.display()))?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(secret, std::fs::Permissions::from_mode(0o600))?;
    std::fs::write(public, pk).with_context(|| format!("cannot write {}", public.display()))?;
    println!(
        "wrote {} (keep it secret) and {}",
        secret.display(),
        public.display()
    );
    Ok(exit::OK)
}

/// minisign signatures of `data`, one per key, concatenated as `cat` would join the
/// signature files of the `minisign` tool.
fn signatures(
    name: &str,
    data: &[u8],
    secrets: &[PathBuf],
    password_env: &Option<String>,
) -> anyhow::Result<String> {
    let mut text = String::new();
    for secret in secrets {
        let sk = load_secret_key(secret, password_env)?;
        let sig = minisign::sign(
            None,
            &sk,
            std::io::Cursor::new(data),
            Some(&format!("file:{name}")),
            None,
        )
        .map_err(|e| anyhow::anyhow!("cannot sign {name}: {e}"))?;
        text.push_str(&sig.into_string());
    }
    Ok(text)
}

fn signature_path(file: &Path) -> PathBuf {
    let mut out = file.as_os_str().to_owned();
    out.push(".minisig");
    PathBuf::from(out)
}

/// Sign `file` into `file.minisig` (one signature per key).
pub fn sign_file(
    file: &Path,
    secrets: &[PathBuf],
    password_env: &Option<String>,
) -> anyhow::Result<PathBuf> {
    let data = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let text = signatures(&name, &data, secrets, password_env)?;
    let out = signature_path(file);
    steps::fsutil::write_atomic(&out, text.as_bytes())?;
    Ok(out)
}

pub struct RootArgs {
    pub out: PathBuf,
    pub product: String,
    pub keys: Vec<PathBuf>,
    pub threshold: u32,
    pub expires_in: std::time::Duration,
    pub secret_keys: Vec<PathBuf>,
    pub password_env: Option<String>,
}

/// The newest `N.root.json` in `dir`: its version and parsed content.
fn latest_root(dir: &Path) -> anyhow::Result<Option<(u64, steps::root::Root)>> {
    let mut best: Option<u64> = None;
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(v) = name
                .strip_suffix(".root.json")
                .and_then(|n| n.parse::<u64>().ok())
            {
                best = best.max(Some(v));
            }
        }
    }
    let Some(v) = best else { return Ok(None) };
    let path = dir.join(format!("{v}.root.json"));
    let bytes = std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let root = steps::root::Root::parse(&bytes)
        .map_err(|e| exit::coded(exit::ERROR, format!("{}: {e}", path.display())))?;
    Ok(Some((v, root)))
}

/// `molt root`: write the next root document in `out`, signed, after checking that an
/// installation trusting the previous one would accept it.
pub fn root(a: RootArgs, as_json: bool) -> anyhow::Result<u8> {
    use steps::root::{Root, ROOT_FORMAT};
    std::fs::create_dir_all(&a.out)?;
    let previous = latest_root(&a.out)?;
    let mut keys = Vec::new();
    for k in &a.keys {
        let text =
            std::fs::read_to_string(k).with_context(|| format!("cannot read {}", k.display()))?;
        let pk = manifest::public_key_from(&text)
            .map_err(|e| exit::coded(exit::ERROR, format!("{}: {e}", k.display())))?;
        keys.push(pk.to_base64());
    }
    let version = previous.as_ref().map_or(1, |(v, _)| v + 1);
    let doc = Root {
        format: ROOT_FORMAT,
        product: a.product.clone(),
        version,
        expires: humantime::format_rfc3339_seconds(std::time::SystemTime::now() + a.expires_in)
            .to_string(),
        threshold: a.threshold,
        keys,
    };
    let bytes = serde_json::to_string_pretty(&doc)? + "\n";
    let name = format!("{version}.root.json");
    let sigs = signatures(&name, bytes.as_bytes(), &a.secret_keys, &a.password_env)?;
    let checked = match &previous {
        None => Root::verify_pinned(bytes.as_bytes(), &sigs),
        Some((_, prev)) => prev.verify_next(bytes.as_bytes(), &sigs),
    };
    checked.map_err(|e| {
        exit::coded(
            exit::ERROR,
            format!("installations would refuse this root, so it was not written: {e}"),
        )
    })?;
    let path = a.out.join(&name);
    // The signatures first: a root without them is refused, never half-trusted.
    steps::fsutil::write_atomic(&signature_path(&path), sigs.as_bytes())?;
    steps::fsutil::write_atomic(&path, bytes.as_bytes())?;
    if as_json {
        print_json(&json!({ "root": path, "content": doc }));
    } else {
        println!(
            "wrote {} (version {version}, {} of {} keys must sign, expires {})",
            path.display(),
            doc.threshold,
            doc.keys.len(),
            doc.expires
        );
        if version == 1 {
            println!(
                "operators pin it: copy {name} and {name}.minisig into the installation and write `root = \"{name}\"` in molt.toml"
            );
        }
    }
    Ok(exit::OK)
}

pub struct PackArgs {
    pub release: PathBuf,
    pub out: PathBuf,
    pub product: String,
    pub arch: String,
    pub previous: Vec<PathBuf>,
    pub from: Option<String>,
    pub notes: String,
    pub base_url: Option<String>,
    pub released_at: Option<String>,
    pub sequence: Option<u64>,
    pub expires_in: std::time::Duration,
    pub secret_key: Vec<PathBuf>,
    pub password_env: Option<String>,
}

pub fn pack(a: PackArgs, as_json: bool) -> anyhow::Result<u8> {
    let release = Release::load(&a.release).map_err(|e| exit::coded(exit::ERROR, e))?;
    std::fs::create_dir_all(&a.out)?;
    let url = |name: &str| match &a.base_url {
        Some(b) => format!("{}/{name}", b.trim_end_matches('/')),
        None => name.to_string(),
    };
    let full_name = format!("{}-{}-{}.tar.zst", a.product, release.version, a.arch);
    let packed = steps::package::pack_full(&a.release, &a.out.join(&full_name), 3)
        .with_context(|| format!("cannot pack {}", a.release.display()))?;
    let full = Package {
        from: None,
        url: url(&full_name),
        size: packed.size,
        sha256: packed.sha256,
        installed_size: packed.installed_size,
    };
    let mut patches = Vec::new();
    for prev in &a.previous {
        let old = Release::load(prev).map_err(|e| exit::coded(exit::ERROR, e))?;
        let from = a.from.clone().unwrap_or_else(|| old.version.clone());
        let name = format!(
            "{}-{}-to-{}-{}.patch.tar.zst",
            a.product, old.version, release.version, a.arch
        );
        let p = steps::package::pack_patch(
            prev,
            &a.release,
            &from,
            &release.version,
            &a.out.join(&name),
            3,
        )
        .with_context(|| format!("cannot make the patch from {}", prev.display()))?;
        patches.push(Package {
            from: Some(from),
            url: url(&name),
            size: p.size,
            sha256: p.sha256,
            installed_size: p.installed_size,
        });
    }
    let manifest_path = a.out.join("manifest.json");
    let mut m = match std::fs::read(&manifest_path) {
        Ok(b) => {
            let old = Manifest::parse(&b).map_err(|e| {
                exit::coded(exit::ERROR, format!("{}: {e}", manifest_path.display()))
            })?;
            if old.product != a.product {
                return Err(exit::coded(
                    exit::ERROR,
                    format!(
                        "{} is for product {}, not {}",
                        manifest_path.display(),
                        old.product,
                        a.product
                    ),
                ));
            }
            old
        }
        Err(_) => Manifest {
            format: manifest::MANIFEST_FORMAT,
            product: a.product.clone(),
            version: release.version.clone(),
            released_at: String::new(),
            sequence: 0,
            expires: String::new(),
            notes: String::new(),
            platforms: Default::default(),
        },
    };
    if m.version != release.version {
        // Another version's packages for other architectures no longer apply.
        m.platforms.clear();
    }
    m.version = release.version.clone();
    m.released_at = a.released_at.clone().unwrap_or_else(|| {
        humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
    });
    m.notes = a.notes.clone();
    let previous = m.sequence;
    m.sequence = a.sequence.unwrap_or(previous + 1);
    if m.sequence <= previous {
        return Err(exit::coded(
            exit::ERROR,
            format!(
                "--sequence {} is not newer than the manifest's {previous}: installations that saw {previous} would refuse it",
                m.sequence
            ),
        ));
    }
    m.expires =
        humantime::format_rfc3339_seconds(std::time::SystemTime::now() + a.expires_in).to_string();
    m.platforms.insert(
        a.arch.clone(),
        Platform {
            full: Some(full),
            patches,
        },
    );
    let text = serde_json::to_string_pretty(&m)? + "\n";
    Manifest::parse(text.as_bytes())
        .map_err(|e| anyhow::anyhow!("the manifest molt wrote does not parse: {e}"))?;
    steps::fsutil::write_atomic(&manifest_path, text.as_bytes())?;
    let sig = match a.secret_key.is_empty() {
        false => Some(sign_file(&manifest_path, &a.secret_key, &a.password_env)?),
        true => None,
    };
    if as_json {
        print_json(&json!({ "manifest": manifest_path, "signature": sig, "content": m }));
    } else {
        println!(
            "packed {} {} for {} into {}",
            a.product,
            release.version,
            a.arch,
            a.out.display()
        );
        for (arch, p) in &m.platforms {
            for pkg in p.full.iter().chain(&p.patches) {
                println!("  {arch}: {} ({} bytes)", pkg.url, pkg.size);
            }
        }
        match sig {
            Some(s) => println!("signed: {}", s.display()),
            None => println!("not signed (no --secret-key)"),
        }
    }
    Ok(exit::OK)
}

/// Fetch a URL (http/https) or read a path.
pub async fn check_manifest(inst: &Installation, force_full: bool) -> anyhow::Result<Checked> {
    let want = steps::plans::check::Want {
        force_full,
        allow_downgrade: false,
    };
    steps::plans::check::check(inst, want)
        .await
        .map_err(exit::failed)
}

pub async fn check(inst: &Installation, force_full: bool, as_json: bool) -> anyhow::Result<u8> {
    let c = check_manifest(inst, force_full).await?;
    if as_json {
        print_json(&json!({
            "manifest": c.url,
            "signed": c.signed,
            "root": c.root.as_ref().map(|r| json!({"version": r.version, "threshold": r.threshold, "keys": r.keys.len(), "expires": r.expires})),
            "product": c.manifest.product,
            "installed": c.current,
            "latest": c.manifest.version,
            "released_at": c.manifest.released_at,
            "notes": c.manifest.notes,
            "choice": c.choice,
        }));
        return Ok(exit::OK);
    }
    println!(
        "installed {}, latest {} ({}){}",
        c.current.as_deref().unwrap_or("nothing"),
        c.manifest.version,
        c.manifest.released_at,
        match (&c.root, c.signed) {
            (Some(r), _) => format!(
                ", signature verified (vendor root version {}: {} of its {} keys must sign; it expires {})",
                r.version,
                r.threshold,
                r.keys.len(),
                r.expires
            ),
            (None, true) => ", signature verified".to_string(),
            (None, false) => ", signature NOT checked".to_string(),
        }
    );
    match &c.choice {
        Choice::None { reason } => println!("up to date: {reason}"),
        Choice::Patch { package, reason } => {
            println!("patch {} ({} bytes): {reason}", package.url, package.size)
        }
        Choice::Full { package, reason } => println!(
            "full package {} ({} bytes): {reason}",
            package.url, package.size
        ),
    }
    Ok(exit::OK)
}

pub async fn fetch(inst: &Installation, force_full: bool, as_json: bool) -> anyhow::Result<u8> {
    let c = check_manifest(inst, force_full).await?;
    let (package, source) = match &c.choice {
        Choice::None { reason } => {
            if as_json {
                print_json(&json!({ "action": "none", "summary": reason }));
            } else {
                println!("nothing to fetch: {reason}");
            }
            return Ok(exit::OK);
        }
        Choice::Full { package, .. } => (package.clone(), Source::Full),
        Choice::Patch { package, .. } => {
            let base = crate::cmd::services::current_release(inst)?;
            (
                package.clone(),
                Source::Patch {
                    base,
                    base_version: c.current.clone().unwrap_or_default(),
                },
            )
        }
    };
    steps::plans::check::preflight_space(inst, &package, 0).map_err(exit::failed)?;
    let config = &inst.config;
    let spec = FetchRelease {
        stall_timeout_secs: config.download.stall_timeout_secs,
        retries: config.download.retries,
        version: c.manifest.version.clone(),
        url: manifest::resolve(&c.url, &package.url),
        size: package.size,
        sha256: package.sha256.clone(),
        installed_size: package.installed_size,
        source,
    };
    let mut session = Session::open(inst, "molt fetch")?;
    let r = session.start(PlanSpec::Fetch(spec.clone())).await?;
    if as_json {
        print_json(&r.to_json());
    } else {
        println!("{}", r.summary());
        if r.exit_code() == exit::OK {
            println!(
                "release {} is staged in releases/{} (not live)",
                spec.version, spec.version
            );
        }
    }
    Ok(r.exit_code())
}

/// `molt cache clean`: remove downloaded packages and partial downloads, except what an
/// unfinished run still needs.
pub fn cache_clean(inst: &Installation, as_json: bool) -> anyhow::Result<u8> {
    let session = Session::open(inst, "molt cache clean")?;
    let mut keep = std::collections::BTreeSet::new();
    if let Some((_, ledger)) = crate::session::unfinished(&session.store)? {
        if let Some(sha) = ledger.plan.spec.get("sha256").and_then(|v| v.as_str()) {
            keep.insert(sha.to_string());
        }
    }
    let dir = inst.root.join("cache").join("packages");
    let mut removed = Vec::new();
    let mut bytes = 0u64;
    if let Ok(entries) = std::fs::read_dir(&dir) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let sha = name.split('.').next().unwrap_or("");
            if keep.contains(sha) {
                continue;
            }
            bytes += e.metadata().map(|m| m.len()).unwrap_or(0);
            steps::fsutil::remove_path(&e.path())
                .with_context(|| format!("cannot remove {}", e.path().display()))?;
            removed.push(name);
        }
    }
    if as_json {
        print_json(&json!({ "removed": removed, "bytes": bytes, "kept": keep }));
    } else if removed.is_empty() {
        println!("the cache is empty");
    } else {
        println!("removed {} cached files ({bytes} bytes)", removed.len());
    }
    Ok(exit::OK)
}
