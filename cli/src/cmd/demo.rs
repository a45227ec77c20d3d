//! `molt demo`: a vendor packs and signs two releases; an operator checks, fetches and deploys
//! the first, backs up its data, fetches the second as a patch and upgrades to it. The upgrade
//! is killed half-way (a real process abort at a failpoint), `molt recover` rolls it back, the
//! upgrade runs again cleanly, and the journal shows every transition.
//!
//! Every act runs this same binary as a child process, exactly as the vendor and the operator
//! would type it. The cut-over is a plan of file-system steps (`molt exec`): the Docker steps
//! exist (`molt services`) but the demo must run without a Docker daemon.

use crate::exit;
use anyhow::Context;
use std::path::{Path, PathBuf};
use std::process::Command;

fn write(root: &Path, rel: &str, text: &str) -> anyhow::Result<()> {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap_or(root))?;
    std::fs::write(&p, text).with_context(|| format!("cannot write {}", p.display()))
}

/// Two releases as a vendor builds them.
fn vendor_releases(vendor: &Path) -> anyhow::Result<()> {
    for (v, greeting) in [("1.0.0", "hello"), ("2.0.0", "hello again")] {
        let r = vendor.join(format!("release-{v}"));
        write(
            &r,
            "release.toml",
            &format!("format = 1\nversion = \"{v}\"\n"),
        )?;
        write(&r, "VERSION", &format!("{v}\n"))?;
        write(
            &r,
            "docker-compose.yml",
            &format!("services:\n  app:\n    image: demo/app:{v}\n"),
        )?;
        write(&r, "config/app.conf", &format!("greeting = {greeting}\n"))?;
        write(
            &r,
            "images/app.tar",
            &format!("(an image tarball of app {v})\n").repeat(2000),
        )?;
        write(
            &r,
            "images/db.tar",
            &"(the database image, unchanged)\n".repeat(4000),
        )?;
    }
    write(
        vendor,
        "release-2.0.0/config/feature.conf",
        "new_feature = on\n",
    )?;
    Ok(())
}

/// The cut-over plans an operator runs with `molt exec`.
fn plans(inst: &Path) -> anyhow::Result<()> {
    write(
        inst,
        "deploy-1.0.0.toml",
        r#"name = "deploy 1.0.0"
[[step]]
op = "switch_link"
link = "current"
target = "releases/1.0.0"
[[step]]
op = "write_file"
path = "installed-version"
contents = "1.0.0\n"
"#,
    )?;
    write(
        inst,
        "upgrade-2.0.0.toml",
        r#"name = "upgrade 1.0.0 -> 2.0.0"
[[step]]
op = "write_file"
path = "shared/.env"
contents = "DB_PASSWORD=operator-secret\nNEW_FEATURE=on\n"
[[step]]
op = "switch_link"
link = "current"
target = "releases/2.0.0"
[[step]]
op = "write_file"
path = "installed-version"
contents = "2.0.0\n"
"#,
    )
}

/// Run `molt ARGS` as a child in `dir`, print the command and its output indented, and check
/// its exit code (`None`: killed by a signal).
fn molt(
    dir: &Path,
    args: &[&str],
    failpoints: Option<&str>,
    expect: Option<i32>,
) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("cannot find the molt binary")?;
    let mut cmd = Command::new(exe);
    cmd.current_dir(dir)
        .args(args)
        .env_remove("MOLT_FAILPOINTS")
        .env_remove("MOLT_ROOT");
    let shown = match failpoints {
        Some(fp) => {
            cmd.env("MOLT_FAILPOINTS", fp);
            format!("$ MOLT_FAILPOINTS='{fp}' molt {}", args.join(" "))
        }
        None => format!("$ molt {}", args.join(" ")),
    };
    println!("\n{shown}");
    let out = cmd.output().context("cannot run molt")?;
    for line in String::from_utf8_lossy(&out.stdout)
        .lines()
        .chain(String::from_utf8_lossy(&out.stderr).lines())
    {
        println!("    {line}");
    }
    match out.status.code() {
        Some(c) => println!("    [exit code {c}]"),
        None => println!("    [killed by a signal: the process died mid-run]"),
    }
    if out.status.code() != expect {
        anyhow::bail!(
            "demo went wrong: `{shown}` exited with {:?}, expected {expect:?}",
            out.status.code()
        );
    }
    Ok(())
}

fn show(inst: &Path) -> anyhow::Result<()> {
    let current = std::fs::read_link(inst.join("current"))
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "(none)".into());
    let version = std::fs::read_to_string(inst.join("installed-version")).unwrap_or_default();
    let mut releases: Vec<String> = std::fs::read_dir(inst.join("releases"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    releases.sort();
    let env = std::fs::read_to_string(inst.join("shared/.env")).unwrap_or_default();
    println!(
        "    current -> {current}   installed-version: {}   releases/: {}   shared/.env: {:?}",
        version.trim(),
        releases.join(", "),
        env.trim()
    );
    Ok(())
}

fn heading(text: &str) {
    println!("\n=== {text} ===");
}

pub fn run(dir: Option<PathBuf>) -> anyhow::Result<u8> {
    let base = match dir {
        Some(d) => d,
        None => std::env::temp_dir().join(format!("molt-demo-{}", std::process::id())),
    };
    if base.exists() && std::fs::read_dir(&base)?.next().is_some() {
        anyhow::bail!(
            "demo directory {} exists and is not empty; give another --dir",
            base.display()
        );
    }
    std::fs::create_dir_all(&base)?;
    let base = std::path::absolute(&base)?;
    let vendor = base.join("vendor");
    let inst = base.join("installation");
    vendor_releases(&vendor)?;
    let pubdir = vendor.join("pub");
    write(
        &inst,
        "molt.toml",
        &format!(
            "manifest_url = \"{}\"\npublic_key = \"vendor.pub\"\n",
            pubdir.join("manifest.json").display()
        ),
    )?;
    write(&inst, "shared/.env", "DB_PASSWORD=operator-secret\n")?;
    write(&inst, "shared/data/orders.db", "order 1\norder 2\n")?;
    plans(&inst)?;
    println!(
        "vendor: {}\ninstallation: {}",
        vendor.display(),
        inst.display()
    );

    heading("1. the vendor packs and signs release 1.0.0");
    molt(
        &vendor,
        &[
            "keygen",
            "--secret-key",
            "vendor.sec",
            "--public-key",
            "vendor.pub",
        ],
        None,
        Some(0),
    )?;
    std::fs::copy(vendor.join("vendor.pub"), inst.join("vendor.pub"))?;
    molt(
        &vendor,
        &[
            "pack",
            "release-1.0.0",
            "--out",
            "pub",
            "--product",
            "demo",
            "--secret-key",
            "vendor.sec",
        ],
        None,
        Some(0),
    )?;

    heading("2. the operator checks, fetches (download + verified staging) and deploys 1.0.0");
    molt(&inst, &["check"], None, Some(0))?;
    molt(&inst, &["fetch"], None, Some(0))?;
    molt(&inst, &["exec", "deploy-1.0.0.toml"], None, Some(0))?;
    show(&inst)?;

    heading("3. the vendor publishes 2.0.0, with a patch from 1.0.0");
    molt(
        &vendor,
        &[
            "pack",
            "release-2.0.0",
            "--out",
            "pub",
            "--product",
            "demo",
            "--previous",
            "release-1.0.0",
            "--secret-key",
            "vendor.sec",
        ],
        None,
        Some(0),
    )?;

    heading("4. the operator fetches 2.0.0 as a patch and backs up the data");
    molt(&inst, &["check"], None, Some(0))?;
    molt(&inst, &["fetch"], None, Some(0))?;
    molt(&inst, &["backup", "create"], None, Some(0))?;
    molt(&inst, &["backup", "list"], None, Some(0))?;

    heading("5. the upgrade is killed half-way (a real abort just before `current` moves)");
    molt(
        &inst,
        &["exec", "upgrade-2.0.0.toml"],
        Some("steps::switch_link::stashed=return"),
        None,
    )?;
    show(&inst)?;
    molt(&inst, &["status"], None, Some(0))?;

    heading("6. boot-time recovery: nothing past a pivot, so the policy rolls back");
    molt(&inst, &["recover"], None, Some(4))?;
    show(&inst)?;

    heading("7. the same upgrade again, uninterrupted");
    molt(&inst, &["exec", "upgrade-2.0.0.toml"], None, Some(0))?;
    show(&inst)?;

    heading("the journal");
    molt(&inst, &["journal", "list"], None, Some(0))?;
    molt(&inst, &["journal", "show", "5"], None, Some(0))?;
    molt(&inst, &["journal", "show", "6"], None, Some(0))?;
    println!("\nthe demo is left at {}", base.display());
    Ok(exit::OK)
}
