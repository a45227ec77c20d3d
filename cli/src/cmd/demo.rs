//! `molt demo`: the real thing on this machine. A vendor builds the example product
//! (`fixtures/product/make.sh`, carried inside this binary: an app, a one-shot service and a
//! MariaDB database as compose services, images built locally) and publishes signed releases;
//! an operator installs 1.0.0 with `molt upgrade`, writes data, upgrades to 2.0.0 with a real
//! kill in the middle of the schema migration and a recovery, then meets a broken 2.1.0 that
//! molt rolls back on its own. The journal and the measured downtime are shown at the end.
//!
//! Every act runs this same binary as a child process, exactly as the vendor and the operator
//! would type it. It needs Docker, compose, busybox-static and mariadb-server (the README's
//! first command installs and starts them: `scripts/demo.sh`).

use crate::exit;
use anyhow::Context;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The example product's build script (the tests run the same file).
const MAKE_PRODUCT: &str = include_str!("../../../fixtures/product/make.sh");

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

fn heading(text: &str) {
    println!("\n=== {text} ===");
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// What the app answers at `path` (or why not).
fn get(port: u16, path: &str) -> String {
    use std::io::{Read, Write};
    let answer = (|| -> std::io::Result<String> {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
        s.set_read_timeout(Some(std::time::Duration::from_secs(3)))?;
        write!(s, "GET {path} HTTP/1.0\r\n\r\n")?;
        let mut r = String::new();
        s.read_to_string(&mut r)?;
        Ok(r.split_once("\r\n\r\n")
            .map(|(_, b)| b.trim().to_string())
            .unwrap_or(r))
    })();
    answer.unwrap_or_else(|e| format!("(no answer: {e})"))
}

/// Run SQL on the installation's database and print what it answers.
async fn sql(url: &str, statements: &[&str]) -> anyhow::Result<()> {
    use mysql_async::prelude::Queryable;
    let mut conn = steps::schema::live::connect(url).await?;
    for s in statements {
        println!("    sql> {s}");
        let rows: Vec<mysql_async::Row> = conn.query(*s).await?;
        for r in rows {
            let cells: Vec<String> = (0..r.len())
                .map(|i| match r.as_ref(i) {
                    Some(mysql_async::Value::Bytes(b)) => String::from_utf8_lossy(b).into_owned(),
                    Some(v) => v.as_sql(true),
                    None => String::new(),
                })
                .collect();
            println!("         {}", cells.join(" | "));
        }
    }
    let _ = conn.disconnect().await;
    Ok(())
}

fn serving(app_port: u16) {
    println!(
        "    the app at 127.0.0.1:{app_port} serves version {}",
        get(app_port, "/version")
    );
}

pub async fn run(dir: Option<PathBuf>) -> anyhow::Result<u8> {
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
    std::fs::create_dir_all(inst.join("shared"))?;
    std::fs::create_dir_all(&vendor)?;
    println!(
        "vendor: {}\ninstallation: {}",
        vendor.display(),
        inst.display()
    );

    heading("1. the vendor builds the product (app, one-shot job, MariaDB) and publishes 1.0.0");
    let script = vendor.join("make-product.sh");
    std::fs::write(&script, MAKE_PRODUCT)?;
    let cache = std::env::var_os("MOLT_PRODUCT_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("molt-example-cache"));
    println!(
        "\n$ bash make-product.sh product   (images built FROM scratch, cached in {})",
        cache.display()
    );
    let out = Command::new("bash")
        .arg(&script)
        .arg(vendor.join("product"))
        .env("MOLT_PRODUCT_CACHE", &cache)
        .output()
        .context("cannot run bash")?;
    if !out.status.success() {
        anyhow::bail!(
            "building the example product failed (scripts/demo.sh installs what it needs):\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let keygen = [
        "keygen",
        "--secret-key",
        "vendor.sec",
        "--public-key",
        "vendor.pub",
    ];
    molt(&vendor, &keygen, None, Some(0))?;
    let pack = |v: &str, previous: Option<&str>| -> anyhow::Result<()> {
        let release = format!("product/releases/{v}");
        let prev = previous.map(|p| format!("product/releases/{p}"));
        let mut args = vec![
            "pack",
            &release,
            "--out",
            "pub",
            "--product",
            "example",
            "--secret-key",
            "vendor.sec",
        ];
        if let Some(p) = &prev {
            args.extend(["--previous", p.as_str()]);
        }
        molt(&vendor, &args, None, Some(0))
    };
    pack("1.0.0", None)?;

    heading("2. the operator installs 1.0.0 with molt upgrade (a first install is an upgrade from nothing)");
    let (app_port, db_port) = (free_port()?, free_port()?);
    let project = format!("moltdemo{}", std::process::id());
    std::fs::copy(vendor.join("vendor.pub"), inst.join("vendor.pub"))?;
    std::fs::write(
        inst.join("molt.toml"),
        format!(
            "project = \"{project}\"\nmanifest_url = \"{}\"\npublic_key = \"vendor.pub\"\n\
             database_url = \"mysql://${{MYSQL_USER}}:${{MYSQL_PASSWORD}}@127.0.0.1:${{DB_PORT}}/${{MYSQL_DATABASE}}\"\n",
            vendor.join("pub/manifest.json").display()
        ),
    )?;
    std::fs::write(
        inst.join("shared/.env"),
        format!("# the operator's own values\nMYSQL_PASSWORD=demo-secret\nDB_PORT={db_port}\nAPP_PORT={app_port}\n"),
    )?;
    println!("    molt.toml: project {project}, signed manifest, database_url from the .env");
    println!("    shared/.env: the operator's password and ports, written before the install");
    molt(&inst, &["upgrade", "--dry-run"], None, Some(0))?;
    molt(&inst, &["upgrade", "--yes"], None, Some(0))?;
    serving(app_port);
    let url = format!("mysql://app:demo-secret@127.0.0.1:{db_port}/app");
    sql(
        &url,
        &[
            "INSERT INTO notes (body) VALUES ('written under 1.0.0'), ('an order that must survive')",
            "SELECT id, body FROM notes",
        ],
    )
    .await?;

    heading(
        "3. the vendor publishes 2.0.0 (new app, a schema change, a new .env key) with a patch",
    );
    pack("2.0.0", Some("1.0.0"))?;
    molt(&inst, &["check"], None, Some(0))?;
    molt(&inst, &["fetch"], None, Some(0))?;
    println!("\n    (staged in releases/2.0.0; the dry run can now show the schema statements)");
    molt(&inst, &["upgrade", "--dry-run"], None, Some(0))?;

    heading("4. the upgrade is killed in the middle of the schema migration (a real abort)");
    molt(
        &inst,
        &["upgrade", "--yes"],
        Some("steps::schema::statement_done=return"),
        None,
    )?;
    println!("    the app does not answer: {}", get(app_port, "/version"));
    molt(&inst, &["status"], None, Some(0))?;

    heading("5. boot-time recovery: the migration (the pivot) had started, so molt finishes it");
    molt(&inst, &["recover"], None, Some(0))?;
    serving(app_port);
    sql(&url, &["SELECT id, body, author FROM notes", "SHOW TABLES"]).await?;
    println!("    shared/.env now:");
    for line in std::fs::read_to_string(inst.join("shared/.env"))?.lines() {
        println!("      {line}");
    }

    heading("6. the vendor publishes a broken 2.1.0; molt rolls it back on its own");
    pack("2.1.0", Some("2.0.0"))?;
    sql(
        &url,
        &["INSERT INTO notes (body, author) VALUES ('written under 2.0.0', 'ops')"],
    )
    .await?;
    molt(&inst, &["upgrade", "--yes"], None, Some(4))?;
    serving(app_port);
    sql(&url, &["SELECT id, body, author FROM notes", "SHOW TABLES"]).await?;

    heading("the journal");
    molt(&inst, &["journal", "list"], None, Some(0))?;
    let runs = crate::session::open_for_reading(
        &steps::Installation::open(&inst).map_err(anyhow::Error::msg)?,
    )?
    .runs()?;
    for run in runs.iter().rev().take(2).rev() {
        molt(&inst, &["journal", "show", &run.to_string()], None, Some(0))?;
    }
    println!("\ninstalled.json:");
    for line in std::fs::read_to_string(inst.join("installed.json"))?.lines() {
        println!("    {line}");
    }

    heading("done: stopping the demo's services");
    molt(&inst, &["services", "stop"], None, Some(0))?;
    println!(
        "\nthe demo is left at {} (containers stopped, project {project})",
        base.display()
    );
    Ok(exit::OK)
}
