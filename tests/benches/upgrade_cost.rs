//! Benchmark: `molt upgrade` of the example product (fixtures/product) against a naive script
//! doing what the seed system does (compose down, tar.gz the data, extract, docker load, start
//! the database, run the migration, compose up) on the same product and data, in one run.
//! An external prober GETs the app every 10 ms; downtime is its longest run of failures.
//!
//! Prints, for 0 MiB and for MIB of data (half in the database, half in uploads, written to
//! until the stop):
//! - downtime molt / naive                       (target <= 0.5x)
//! - molt's downtime with MIB / with none         (target <= 1.2x)
//! - whole upgrade wall time molt / naive         (target <= 1.0x)
//! - automatic rollback downtime with MIB / none  (target <= 1.2x); the rollback's downtime
//!   is the gap that ends with the old release serving again (the broken release answers
//!   for a while before the health gate gives up on it)
//! - rollback downtime molt / the naive restore (`tar -xzf` of its backup)  (target <= 0.2x)
//!
//! Run: `cargo build --release -p cli && cargo bench -p tests --bench upgrade_cost [-- MIB]`
//! (default 1024); `MOLT_BENCH_STEPS=1` also prints molt's step timings. The molt binary is `MOLT_BIN`, else `target/release/molt`, else
//! `target/debug/molt`.

use mysql_async::prelude::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tests::product::{releases, Site, Vendor};

fn molt_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("MOLT_BIN") {
        return PathBuf::from(p);
    }
    let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target");
    for p in ["release/molt", "debug/molt"] {
        if target.join(p).is_file() {
            return target.join(p);
        }
    }
    panic!("no molt binary: run `cargo build --release -p cli` first (or set MOLT_BIN)");
}

/// GETs `/version` every 10 ms until stopped; the longest run of failures is the downtime.
struct Prober {
    stop: Arc<AtomicBool>,
    log: Arc<Mutex<Vec<(Instant, bool)>>>,
    /// When the prober started, on both clocks (to place its window among the journal's
    /// records).
    began: (Instant, std::time::SystemTime),
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Prober {
    fn start(port: u16) -> Prober {
        let stop = Arc::new(AtomicBool::new(false));
        let log = Arc::new(Mutex::new(Vec::new()));
        let (s, l) = (stop.clone(), log.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                let ok = get_ok(port);
                l.lock().unwrap().push((Instant::now(), ok));
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        Prober {
            stop,
            log,
            began: (Instant::now(), std::time::SystemTime::now()),
            thread: Some(thread),
        }
    }

    /// The longest stretch between the last success before a failure and the first success
    /// after it.
    fn finish(self) -> f64 {
        let began = self.began;
        let gaps = self.gaps();
        let Some((from, to)) = gaps
            .iter()
            .max_by_key(|(from, to)| to.duration_since(*from))
            .copied()
        else {
            return 0.0;
        };
        if std::env::var_os("MOLT_BENCH_STEPS").is_some() {
            let at = |t: Instant| {
                let wall = began.1 + t.duration_since(began.0);
                let ms = wall
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_millis()
                    % 86_400_000;
                format!(
                    "{:02}:{:02}:{:02}.{:03} UTC",
                    ms / 3_600_000,
                    ms / 60_000 % 60,
                    ms / 1000 % 60,
                    ms % 1000
                )
            };
            eprintln!("    prober: down from {} to {}", at(from), at(to));
        }
        to.duration_since(from).as_secs_f64()
    }

    /// The last such stretch: for a rollback, the one that ends with the old release serving
    /// again (the failed release may answer for a while before the gate gives up on it).
    fn finish_last(self) -> f64 {
        self.gaps()
            .last()
            .map_or(0.0, |(from, to)| to.duration_since(*from).as_secs_f64())
    }

    /// Each stretch of failures: (last success before, first success after).
    fn gaps(mut self) -> Vec<(Instant, Instant)> {
        // the app may still be coming up when the command returns (the gate saw it healthy,
        // the prober's next GET is on its way): wait for a success, at most 10 s
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline
            && !self.log.lock().unwrap().last().is_some_and(|(_, ok)| *ok)
        {
            std::thread::sleep(Duration::from_millis(10));
        }
        self.stop.store(true, Ordering::SeqCst);
        self.thread.take().unwrap().join().unwrap();
        let log = self.log.lock().unwrap();
        let mut gaps = Vec::new();
        let mut last_ok: Option<Instant> = None;
        let mut down_since: Option<Instant> = None;
        for (t, ok) in log.iter() {
            if *ok {
                if let Some(from) = down_since.take() {
                    gaps.push((from, *t));
                }
                last_ok = Some(*t);
            } else if down_since.is_none() {
                down_since = Some(last_ok.unwrap_or(*t));
            }
        }
        assert!(down_since.is_none(), "the app never came back");
        gaps
    }
}

fn get_ok(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(200),
    ) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    if write!(s, "GET /version HTTP/1.0\r\n\r\n").is_err() {
        return false;
    }
    let mut r = String::new();
    let _ = s.read_to_string(&mut r);
    r.split_whitespace().nth(1) == Some("200")
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn molt(site: &Site, args: &[&str], want: i32) -> f64 {
    let t = Instant::now();
    let out = Command::new(molt_bin())
        .arg("--root")
        .arg(&site.root)
        .args(args)
        .env("MOLT_LOG", "error")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(want),
        "molt {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if std::env::var_os("MOLT_BENCH_STEPS").is_some() {
        eprintln!(
            "    molt {}:\n{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    t.elapsed().as_secs_f64()
}

/// `mib` of data: half as 1 MiB rows of the database, half as files in uploads.
async fn fill(site: &Site, mib: usize) {
    let mut c = site.db().await;
    for i in 0..mib / 2 {
        c.exec_drop(
            "INSERT INTO attachments (name, data) VALUES (?, ?)",
            (format!("blob {i}"), tests::semi_random(i as u64, 1 << 20)),
        )
        .await
        .unwrap();
    }
    let _ = c.disconnect().await;
    let uploads = site.root.join("shared/uploads");
    for i in 0..mib.div_ceil(2).min(mib - mib / 2) {
        std::fs::write(
            uploads.join(format!("file-{i}.bin")),
            tests::semi_random(1000 + i as u64, 1 << 20),
        )
        .unwrap();
    }
}

/// Writes to the database (rows, and blobs rewritten all over the table) and to uploads until
/// the database stops answering: the data changes up to the stop.
fn writer(site: &Site, mib: usize) -> (Arc<AtomicBool>, std::thread::JoinHandle<u64>) {
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let url = site.db_url();
    let uploads = site.root.join("shared/uploads/live.log");
    let h = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let Ok(mut c) =
                mysql_async::Conn::new(mysql_async::Opts::from_url(&url).unwrap()).await
            else {
                return 0;
            };
            let mut n = 0u64;
            while !s.load(Ordering::SeqCst) {
                let id = if mib >= 2 {
                    (n as usize * 7919) % (mib / 2) + 1
                } else {
                    0
                };
                let r = c
                    .exec_drop(
                        "INSERT INTO notes (body) VALUES (?)",
                        (format!("live {n}"),),
                    )
                    .await;
                if r.is_err() {
                    break;
                }
                if id > 0 {
                    let _ = c
                        .exec_drop(
                            "UPDATE attachments SET data = ? WHERE id = ?",
                            (tests::semi_random(n + 77, 64 << 10), id),
                        )
                        .await;
                }
                use std::io::Write;
                if let Ok(mut f) = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&uploads)
                {
                    let _ = writeln!(f, "write {n}");
                }
                n += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            n
        })
    });
    (stop, h)
}

/// A site with 1.0.0 installed and `mib` of data.
async fn site_at_1(vendor: &Vendor, mib: usize) -> Site {
    vendor.show("1.0.0");
    let site = Site::new(vendor);
    molt(&site, &["upgrade", "--yes"], 0);
    fill(&site, mib).await;
    vendor.show("2.0.0");
    site
}

struct Compose {
    prog: &'static str,
    pre: &'static [&'static str],
}

impl Compose {
    fn detect() -> Compose {
        let v2 = Command::new("docker")
            .args(["compose", "version"])
            .output()
            .is_ok_and(|o| o.status.success());
        if v2 {
            Compose {
                prog: "docker",
                pre: &["compose"],
            }
        } else {
            Compose {
                prog: "docker-compose",
                pre: &[],
            }
        }
    }

    fn cmd(&self, site: &Site, release: &Path) -> Command {
        let mut c = Command::new(self.prog);
        c.args(self.pre)
            .args(["-p", &site.project, "-f"])
            .arg(release.join("docker-compose.yml"))
            .arg("--project-directory")
            .arg(release);
        c
    }
}

fn wait_for(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !ok() {
        assert!(Instant::now() < deadline, "{what} never came");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn db_answers(site: &Site) -> bool {
    Command::new("mariadb")
        .args([
            "-h",
            "127.0.0.1",
            "-P",
            &site.db_port.to_string(),
            "-u",
            "app",
        ])
        .arg(format!("-p{}", site.password))
        .args(["-e", "SELECT 1", "app"])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// What the seed system does, as a script would: down, tar.gz the data, extract the full
/// package, docker load, start the database, run the migration, up. Returns the wall time.
fn naive_upgrade(site: &Site, vendor: &Vendor, compose: &Compose, migration: &Path) -> f64 {
    let t = Instant::now();
    let root = &site.root;
    let old = root.join("releases/1.0.0");
    run(compose.cmd(site, &old).arg("down"));
    run(Command::new("tar")
        .current_dir(root)
        .args(["czf", "naive-backup.tgz", "shared"]));
    let new = root.join("releases/2.0.0");
    std::fs::create_dir_all(&new).unwrap();
    let pkg = vendor
        .dir
        .path()
        .join("pub-2.0.0")
        .join(format!("example-2.0.0-{}.tar.zst", std::env::consts::ARCH));
    run(Command::new("tar")
        .arg("-I")
        .arg("zstd")
        .arg("-xf")
        .arg(&pkg)
        .arg("-C")
        .arg(&new));
    for p in ["data", "uploads", "logs", ".env"] {
        std::os::unix::fs::symlink(Path::new("../../shared").join(p), new.join(p)).unwrap();
    }
    let mut env = std::fs::read_to_string(root.join("shared/.env")).unwrap();
    env.push_str("FEATURE_TAGS=on\n");
    std::fs::write(root.join("shared/.env"), env).unwrap();
    for t in ["db.tar", "app.tar"] {
        run(Command::new("docker")
            .arg("load")
            .arg("-q")
            .arg("-i")
            .arg(new.join("images").join(t)));
    }
    let _ = std::fs::remove_file(root.join("current"));
    std::os::unix::fs::symlink("releases/2.0.0", root.join("current")).unwrap();
    run(compose.cmd(site, &new).args(["up", "-d", "db"]));
    wait_for("the database", || db_answers(site));
    run(Command::new("sh").arg("-c").arg(format!(
        "mariadb -h 127.0.0.1 -P {} -u app -p{} app < {}",
        site.db_port,
        site.password,
        migration.display()
    )));
    run(compose.cmd(site, &new).args(["up", "-d"]));
    wait_for("the app", || get_ok(site.app_port));
    t.elapsed().as_secs_f64()
}

/// The naive restore after a failed upgrade: down, remove the data, untar the backup, up.
fn naive_restore(site: &Site, compose: &Compose) {
    let root = &site.root;
    let new = root.join("releases/2.0.0");
    let old = root.join("releases/1.0.0");
    run(compose.cmd(site, &new).arg("down"));
    run(Command::new("rm").arg("-rf").arg(root.join("shared")));
    run(Command::new("tar")
        .current_dir(root)
        .args(["xzf", "naive-backup.tgz"]));
    let _ = std::fs::remove_file(root.join("current"));
    std::os::unix::fs::symlink("releases/1.0.0", root.join("current")).unwrap();
    run(compose.cmd(site, &old).args(["up", "-d"]));
    wait_for("the app", || get_ok(site.app_port));
}

struct Figures {
    molt_down: f64,
    molt_wall: f64,
    naive_down: f64,
    naive_wall: f64,
    rollback_down: f64,
    restore_down: f64,
}

async fn measure(vendor: &Vendor, mib: usize, compose: &Compose, migration: &Path) -> Figures {
    // molt: upgrade 1.0.0 -> 2.0.0, then the broken 2.1.0 rolled back on its own
    let site = site_at_1(vendor, mib).await;
    let (stop, w) = writer(&site, mib);
    let p = Prober::start(site.app_port);
    std::thread::sleep(Duration::from_millis(300));
    let molt_wall = molt(&site, &["upgrade", "--yes"], 0);
    std::thread::sleep(Duration::from_millis(300));
    let molt_down = p.finish();
    if std::env::var_os("MOLT_BENCH_STEPS").is_some() {
        // the journal's records of that upgrade, to place the prober's window among them
        let journal = |args: &[&str]| {
            tests::stdout_of(
                Command::new(molt_bin())
                    .arg("--root")
                    .arg(&site.root)
                    .arg("journal")
                    .args(args),
            )
        };
        // `journal list`: a header, then a line per run starting with its number
        let last = journal(&["list"])
            .lines()
            .filter_map(|l| l.split_whitespace().next()?.parse::<u64>().ok())
            .max();
        if let Some(run) = last {
            eprintln!("{}", journal(&["show", &run.to_string()]));
        }
    }
    stop.store(true, Ordering::SeqCst);
    let writes = w.join().unwrap();
    vendor.show("2.1.0");
    let p = Prober::start(site.app_port);
    std::thread::sleep(Duration::from_millis(300));
    molt(&site, &["upgrade", "--yes"], 4);
    std::thread::sleep(Duration::from_millis(300));
    let rollback_down = p.finish_last();
    drop(site);

    // naive: the same from the same starting point
    let site = site_at_1(vendor, mib).await;
    let (stop, w) = writer(&site, mib);
    let p = Prober::start(site.app_port);
    std::thread::sleep(Duration::from_millis(300));
    let naive_wall = naive_upgrade(&site, vendor, compose, migration);
    std::thread::sleep(Duration::from_millis(300));
    let naive_down = p.finish();
    stop.store(true, Ordering::SeqCst);
    w.join().unwrap();
    let p = Prober::start(site.app_port);
    std::thread::sleep(Duration::from_millis(300));
    naive_restore(&site, compose);
    std::thread::sleep(Duration::from_millis(300));
    let restore_down = p.finish();
    eprintln!(
        "  {mib:>5} MiB: molt downtime {molt_down:.2}s wall {molt_wall:.2}s ({writes} writes until the stop); naive downtime {naive_down:.2}s wall {naive_wall:.2}s; rollback downtime molt {rollback_down:.2}s, naive restore {restore_down:.2}s"
    );
    Figures {
        molt_down,
        molt_wall,
        naive_down,
        naive_wall,
        rollback_down,
        restore_down,
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mib: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(1024);
    eprintln!("molt: {}", molt_bin().display());
    let vendor = Vendor::new(&molt_bin());
    vendor.publish("1.0.0", None);
    vendor.publish("2.1.0", Some("2.0.0"));
    vendor.publish("2.0.0", Some("1.0.0"));
    let compose = Compose::detect();
    // the naive script's migration: the statements molt's differ finds (computed before, untimed)
    let out = Command::new(molt_bin())
        .args(["schema", "diff", "--database", "app"])
        .arg(releases().join("1.0.0/schema/app.sql"))
        .arg(releases().join("2.0.0/schema/app.sql"))
        .output()
        .unwrap();
    assert!(out.status.success());
    let migration = vendor.dir.path().join("migration.sql");
    std::fs::write(&migration, &out.stdout).unwrap();

    let none = measure(&vendor, 0, &compose, &migration).await;
    let full = measure(&vendor, mib, &compose, &migration).await;
    println!("upgrade of the example product 1.0.0 -> 2.0.0 (prober every 10 ms):");
    for (label, f) in [("0 MiB", &none), (&*format!("{mib} MiB"), &full)] {
        println!(
            "  {label:>9}: downtime molt/naive = {:.2}x ({:.2}s vs {:.2}s), wall molt/naive = {:.2}x ({:.2}s vs {:.2}s), rollback molt/naive restore = {:.2}x ({:.2}s vs {:.2}s)",
            f.molt_down / f.naive_down,
            f.molt_down,
            f.naive_down,
            f.molt_wall / f.naive_wall,
            f.molt_wall,
            f.naive_wall,
            f.rollback_down / f.restore_down,
            f.rollback_down,
            f.restore_down
        );
    }
    println!(
        "  molt downtime {mib} MiB / 0 MiB = {:.2}x (target <= 1.2x); rollback downtime {mib} MiB / 0 MiB = {:.2}x (target <= 1.2x)",
        full.molt_down / none.molt_down,
        full.rollback_down / none.rollback_down
    );
}
