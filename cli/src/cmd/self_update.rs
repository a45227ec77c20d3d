//! `molt self-update [--check] [--rollback]`: molt's own binary from molt's signed releases
//! (`steps::self_update`; the check is the product's, `steps::plans::check::check_source`).

use super::print_json;
use crate::exit;
use serde_json::json;
use steps::manifest::{self, Choice};
use steps::plans::check::{check_source, Source, Want};
use steps::Installation;

fn err(e: impl Into<String>) -> anyhow::Error {
    exit::coded(exit::ERROR, e)
}

/// The binary to replace (`--binary`, else the running one), as the path a rename replaces.
fn target_binary(given: Option<&std::path::Path>) -> anyhow::Result<std::path::PathBuf> {
    let exe = match given {
        Some(p) => p
            .canonicalize()
            .map_err(|e| err(format!("{}: {e}", p.display())))?,
        None => std::env::current_exe()
            .and_then(|p| p.canonicalize())
            .map_err(|e| err(format!("cannot tell where this molt is: {e}")))?,
    };
    if exe.file_name().is_some_and(|n| n == "molt.old") {
        return Err(err(format!(
            "{} is the kept earlier molt, not one to replace",
            exe.display()
        )));
    }
    Ok(exe)
}

pub async fn self_update(
    inst: &Installation,
    binary: Option<&std::path::Path>,
    only_check: bool,
    rollback: bool,
    as_json: bool,
) -> anyhow::Result<u8> {
    let exe = target_binary(binary)?;
    let _lock = crate::session::lock(inst, "molt self-update")?;
    if rollback {
        let v = steps::self_update::rollback(&exe).map_err(err)?;
        if as_json {
            print_json(&json!({ "action": "rolled_back", "version": v, "binary": exe }));
        } else {
            println!("{} is molt {v} again", exe.display());
        }
        return Ok(exit::OK);
    }
    let cfg = &inst.config.self_update;
    if cfg.root.is_none() && cfg.public_key.is_none() {
        return Err(err(
            "molt's own releases must be signed: set [self_update] public_key or root in molt.toml",
        ));
    }
    let current = env!("CARGO_PKG_VERSION").to_string();
    let src = Source {
        base: inst.root.clone(),
        manifest_url: cfg.manifest_url.clone(),
        root: cfg.root.clone(),
        public_key: steps::config::key_text(cfg.public_key.as_deref(), &inst.root),
        allow_unsigned: false,
        trust_file: inst.root.join("self-update-trust.json"),
        current: Some(current.clone()),
        timeout: std::time::Duration::from_secs(inst.config.download.metadata_timeout_secs.max(1)),
    };
    let want = Want {
        force_full: true,
        allow_downgrade: false,
    };
    let c = check_source(&src, want).await.map_err(exit::failed)?;
    if c.manifest.product != "molt" {
        return Err(err(format!(
            "the manifest at {} is for product {:?}, not molt; nothing was changed",
            c.url, c.manifest.product
        )));
    }
    let package = match &c.choice {
        Choice::None { reason } => {
            if as_json {
                print_json(&json!({ "action": "none", "summary": reason, "current": current }));
            } else {
                println!("molt {current} is current: {reason}");
            }
            return Ok(exit::OK);
        }
        Choice::Full { package, .. } | Choice::Patch { package, .. } => package.clone(),
    };
    let to = c.manifest.version.clone();
    let newer = steps::version::Version::parse(&to).map_err(err)?
        > steps::version::Version::parse(&current).map_err(err)?;
    if !newer {
        return Err(err(format!(
            "the manifest offers molt {to}, not newer than {current}: molt is never downgraded"
        )));
    }
    if only_check {
        if as_json {
            print_json(
                &json!({ "action": "update", "from": current, "to": to, "bytes": package.size }),
            );
        } else {
            println!(
                "molt {current} -> {to} ({} bytes to download)",
                package.size
            );
        }
        return Ok(exit::OK);
    }
    let work = steps::self_update::work_dir(&inst.root);
    std::fs::create_dir_all(&work).map_err(|e| err(format!("{}: {e}", work.display())))?;
    let dest = work.join(format!("molt-{to}.tar.zst"));
    let mut fetch = steps::http::Fetch::new(
        &manifest::resolve(&c.url, &package.url),
        &dest,
        package.size,
        &package.sha256,
    );
    fetch.retries = inst.config.download.retries;
    fetch.stall_timeout = std::time::Duration::from_secs(inst.config.download.stall_timeout_secs);
    let bar = steps::report::Progress::begin("download", package.size);
    let got = steps::http::download(&fetch, &bar).await;
    bar.finish();
    got.map_err(|e| err(format!("{e}; nothing was changed")))?;
    let unpacked = work.join(&to);
    let new = steps::self_update::unpack(&dest, &unpacked, &to, package.installed_size.max(1))
        .map_err(|e| err(format!("{e}; nothing was changed")))?;
    let old = steps::self_update::replace(&exe, &new).map_err(err)?;
    let _ = steps::fsutil::remove_path(&unpacked);
    let _ = std::fs::remove_file(&dest);
    if as_json {
        print_json(
            &json!({ "action": "updated", "from": current, "to": to, "binary": exe, "kept": old }),
        );
    } else {
        println!(
            "{} is molt {to} (was {current}; the old one is kept as {} for `molt self-update --rollback`)",
            exe.display(),
            old.display()
        );
    }
    Ok(exit::OK)
}
