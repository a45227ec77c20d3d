//! `molt demo`: a scratch installation, an upgrade plan of real file-system steps, a crash
//! (a real child `molt` process aborted at a failpoint), recovery, a clean run, and a run that
//! fails its verification and rolls back by itself, with the journal shown after each act.
//!
//! Every act runs this same binary as a child process, exactly as an operator would type it.

use crate::exit;
use anyhow::Context;
use std::path::{Path, PathBuf};
use std::process::Command;

const UPGRADE: &str = r#"name = "upgrade 1.0.0 -> 2.0.0"

[[step]]
op = "copy_tree"
from = "incoming/2.0.0"
to = "releases/2.0.0"

[[step]]
op = "write_file"
path = "shared/.env"
contents = "DB_PASSWORD=operator-secret\nNEW_FEATURE=on\n"

[[step]]
op = "switch_link"
link = "current"
target = "releases/2.0.0"

[[step]]
op = "verify_file"
path = "current/VERSION"
sha256 = "SHA_OF_2"

[[step]]
op = "write_file"
path = "installed-version"
contents = "2.0.0\n"

[[step]]
op = "remove_path"
path = "incoming/2.0.0"
"#;

const BROKEN: &str = r#"name = "upgrade 2.0.0 -> 3.0.0 (a broken release)"

[[step]]
op = "copy_tree"
from = "incoming/3.0.0"
to = "releases/3.0.0"

[[step]]
op = "switch_link"
link = "current"
target = "releases/3.0.0"

[[step]]
op = "verify_file"
path = "current/VERSION"
sha256 = "SHA_OF_3"
"#;

fn sha(text: &str) -> String {
    use sha2::Digest;
    format!("{:x}", sha2::Sha256::digest(text.as_bytes()))
}

fn write(root: &Path, rel: &str, text: &str) -> anyhow::Result<()> {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap_or(root))?;
    std::fs::write(&p, text).with_context(|| format!("cannot write {}", p.display()))
}

/// Lay out release 1.0.0 as installed, and the staged bundles of 2.0.0 and a broken 3.0.0.
fn scaffold(root: &Path) -> anyhow::Result<()> {
    for (v, image) in [("1.0.0", "app:1"), ("2.0.0", "app:2")] {
        let base = if v == "1.0.0" { "releases" } else { "incoming" };
        write(root, &format!("{base}/{v}/VERSION"), &format!("{v}\n"))?;
        write(
            root,
            &format!("{base}/{v}/docker-compose.yml"),
            &format!("services:\n  app:\n    image: {image}\n"),
        )?;
        write(
            root,
            &format!("{base}/{v}/config/app.conf"),
            &format!("release={v}\n"),
        )?;
    }
    // 3.0.0's bundle says it is 3.0.0 but ships the wrong VERSION file: verification fails.
    write(root, "incoming/3.0.0/VERSION", "3.0.0-rc-mislabelled\n")?;
    write(root, "incoming/3.0.0/docker-compose.yml", "services: {}\n")?;
    write(root, "shared/.env", "DB_PASSWORD=operator-secret\n")?;
    write(root, "installed-version", "1.0.0\n")?;
    std::os::unix::fs::symlink("releases/1.0.0", root.join("current"))?;
    write(
        root,
        "upgrade-2.0.0.toml",
        &UPGRADE.replace("SHA_OF_2", &sha("2.0.0\n")),
    )?;
    write(
        root,
        "upgrade-3.0.0.toml",
        &BROKEN.replace("SHA_OF_3", &sha("3.0.0\n")),
    )?;
    Ok(())
}

/// Run `molt --root ROOT args...` as a child in ROOT, print the command and its output
/// indented, and check its exit code (`None`: killed by a signal).
fn molt(
    root: &Path,
    args: &[&str],
    failpoints: Option<&str>,
    expect: Option<i32>,
) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("cannot find the molt binary")?;
    let mut shown = format!("$ molt {}", args.join(" "));
    let mut cmd = Command::new(exe);
    cmd.current_dir(root)
        .arg("--root")
        .arg(root)
        .args(args)
        .env_remove("MOLT_FAILPOINTS");
    if let Some(fp) = failpoints {
        shown = format!("$ MOLT_FAILPOINTS='{fp}' molt {}", args.join(" "));
        cmd.env("MOLT_FAILPOINTS", fp);
    }
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

fn show_tree(root: &Path) -> anyhow::Result<()> {
    let current = std::fs::read_link(root.join("current"))?;
    let version = std::fs::read_to_string(root.join("installed-version"))?;
    let mut releases: Vec<String> = std::fs::read_dir(root.join("releases"))?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    releases.sort();
    println!(
        "    current -> {}   installed-version: {}   releases/: {}",
        current.display(),
        version.trim(),
        releases.join(", ")
    );
    Ok(())
}

fn heading(text: &str) {
    println!("\n=== {text} ===");
}

pub fn run(dir: Option<PathBuf>) -> anyhow::Result<u8> {
    let root = match dir {
        Some(d) => d,
        None => std::env::temp_dir().join(format!("molt-demo-{}", std::process::id())),
    };
    if root.exists() && std::fs::read_dir(&root)?.next().is_some() {
        anyhow::bail!(
            "demo directory {} exists and is not empty; give another --dir",
            root.display()
        );
    }
    std::fs::create_dir_all(&root)?;
    let root = std::path::absolute(&root)?;
    scaffold(&root)?;
    println!("scratch installation: {}", root.display());
    show_tree(&root)?;

    heading("1. an upgrade killed half-way (a real process abort just before `current` moves)");
    molt(
        &root,
        &["exec", "upgrade-2.0.0.toml"],
        Some("steps::switch_link::stashed=return"),
        None,
    )?;
    molt(&root, &["status"], None, Some(0))?;
    molt(&root, &["journal", "show", "1"], None, Some(0))?;
    show_tree(&root)?;

    heading("2. boot-time recovery: nothing past a pivot, so the policy rolls back");
    molt(&root, &["recover"], None, Some(4))?;
    show_tree(&root)?;
    molt(&root, &["journal", "show", "1"], None, Some(0))?;

    heading("3. the same upgrade again, uninterrupted");
    molt(&root, &["exec", "upgrade-2.0.0.toml"], None, Some(0))?;
    show_tree(&root)?;
    molt(&root, &["journal", "show", "2"], None, Some(0))?;

    heading("4. a broken release: verification fails, the run rolls back by itself");
    molt(&root, &["exec", "upgrade-3.0.0.toml"], None, Some(4))?;
    show_tree(&root)?;
    molt(&root, &["journal", "show", "3"], None, Some(0))?;

    heading("the audit trail");
    molt(&root, &["journal", "list"], None, Some(0))?;
    println!("\nthe scratch installation is left at {}", root.display());
    Ok(exit::OK)
}
