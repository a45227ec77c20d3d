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

/// Sign `file` into `file.minisig`.
pub fn sign_file(
    file: &Path,
    secret: &Path,
    password_env: &Option<String>,
) -> anyhow::Result<PathBuf> {
    let sk = load_secret_key(secret, password_env)?;
    let data =
        std::fs::File::open(file).with_context(|| format!("cannot read {}", file.display()))?;
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let sig = minisign::sign(None, &sk, data, Some(&format!("file:{name}")), None)
        .map_err(|e| anyhow::anyhow!("cannot sign {}: {e}", file.display()))?;
    let mut out = file.as_os_str().to_owned();
    out.push(".minisig");
    let out = PathBuf::from(out);
    steps::fsutil::write_atomic(&out, sig.into_string().as_bytes())?;
    Ok(out)
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
    pub secret_key: Option<PathBuf>,
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
    let sig = match &a.secret_key {
        Some(k) => Some(sign_file(&manifest_path, k, &a.password_env)?),
        None => None,
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
        if c.signed {
            ", signature verified"
        } else {
            ", signature NOT checked"
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
