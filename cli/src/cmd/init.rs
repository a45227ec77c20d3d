//! `molt init`: make a directory a molt installation.
//! - `--adopt --version V`: the compose product already in it is moved into molt's layout in
//!   place, as one journaled, reversible run (`steps::plans::adopt`); its services keep running.
//! - otherwise: molt.toml is written from `--manifest-url` and the vendor's key or root, and
//!   the first release is installed by `molt upgrade` (the same journaled steps).

use super::print_json;
use crate::exit;
use crate::session::Session;
use serde_json::json;
use steps::plans::{adopt, Adopt, PlanSpec};
use steps::Installation;

fn err(e: impl Into<String>) -> anyhow::Error {
    exit::coded(exit::ERROR, e)
}

/// What `molt init` was told.
#[derive(clap::Args)]
pub struct Init {
    /// Adopt the compose directory at --root (moved into molt's layout in place).
    #[arg(long)]
    pub adopt: bool,
    /// The version of the adopted product.
    #[arg(long)]
    pub version: Option<String>,
    /// Top-level entries that are data, not release files (default: every directory, and
    /// `.env`).
    #[arg(long, value_delimiter = ',')]
    pub persistent: Option<Vec<String>>,
    /// The compose project (default: the directory's name, as compose names it).
    #[arg(long)]
    pub project: Option<String>,
    #[arg(long)]
    pub manifest_url: Option<String>,
    /// The vendor's minisign public key (file or key).
    #[arg(long)]
    pub public_key: Option<String>,
    /// The vendor's first root document to pin (instead of --public-key).
    #[arg(long)]
    pub vendor_root: Option<String>,
    /// Do not ask before the first install.
    #[arg(long, short = 'y')]
    pub yes: bool,
}

/// A molt.toml with these keys (values escaped by the TOML writer).
fn molt_toml(init: &Init, project: &str) -> anyhow::Result<String> {
    let mut t = toml::Table::new();
    t.insert("format".into(), toml::Value::Integer(1));
    t.insert("project".into(), toml::Value::String(project.into()));
    for (k, v) in [
        ("manifest_url", &init.manifest_url),
        ("public_key", &init.public_key),
        ("root", &init.vendor_root),
    ] {
        if let Some(v) = v {
            t.insert(k.into(), toml::Value::String(v.clone()));
        }
    }
    let text = toml::to_string(&t).map_err(|e| err(format!("molt.toml: {e}")))?;
    let text = format!("# written by `molt init`; see the README for every key\n{text}");
    // what is written must be what molt reads
    steps::config::Config::parse(&text)
        .map_err(|e| err(format!("molt.toml: {e}; nothing was changed")))?;
    Ok(text)
}

pub async fn init(inst: &Installation, init: Init, as_json: bool) -> anyhow::Result<u8> {
    let root = &inst.root;
    if root.join("molt.toml").exists() {
        return Err(err(format!(
            "{} already has a molt.toml; nothing was changed",
            root.display()
        )));
    }
    let project = match &init.project {
        Some(p) => p.clone(),
        None => inst.config.project(root),
    };
    if !init.adopt {
        if init.manifest_url.is_none() || (init.public_key.is_none() && init.vendor_root.is_none())
        {
            return Err(err(
                "a new installation needs --manifest-url and the vendor's --public-key or --vendor-root (or --adopt for a compose directory that runs already)",
            ));
        }
        let text = molt_toml(&init, &project)?;
        steps::fsutil::write_atomic(&root.join("molt.toml"), text.as_bytes())
            .map_err(|e| err(format!("cannot write molt.toml: {e}")))?;
        let inst = Installation::open(root).map_err(err)?;
        let how = super::upgrade::How {
            dry_run: false,
            yes: init.yes,
            to: None,
            unattended: false,
        };
        return super::upgrade::upgrade(&inst, Default::default(), how, as_json).await;
    }
    let version = init
        .version
        .clone()
        .ok_or_else(|| err("--adopt needs --version: the version of the product running there"))?;
    steps::version::Version::parse(&version).map_err(|e| err(format!("--version: {e}")))?;
    let (release_files, persistent, compose_file) =
        adopt::survey(root, init.persistent.as_deref()).map_err(err)?;
    let spec = Adopt {
        version: version.clone(),
        project: project.clone(),
        compose_file,
        release_files,
        persistent,
        molt_toml: molt_toml(&init, &project)?,
    };
    let mut session = Session::open(inst, "molt init")?;
    if !as_json {
        eprintln!(
            "molt: adopting {} as release {version} of project {project}: {} moved into releases/{version}, {} into shared/",
            root.display(),
            spec.release_files.join(", "),
            spec.persistent.join(", ")
        );
    }
    let r = session.start(PlanSpec::Adopt(spec)).await?;
    if as_json {
        print_json(
            &json!({ "run": r.run.0, "outcome": r.outcome_word(), "version": version, "project": project }),
        );
    } else {
        println!("{}", r.summary());
    }
    Ok(r.exit_code())
}
