//! The example product (`fixtures/product/make.sh`) for the upgrade tests, the demo's twin and
//! the benchmarks: its releases built once per run (images cached), a vendor that packs and
//! signs them and publishes them on a real local HTTP server, and operator sites (installation
//! roots with their own ports, password and compose project) that a test can inspect: the app
//! over HTTP, the database over TCP, the containers through the Docker CLI.

use crate::http::{Fault, Server};
use mysql_async::prelude::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// The releases directory of the example product (`1.0.0`, `2.0.0`, `2.1.0`, `2.2.0`), built
/// once per process by the script the demo runs too.
pub fn releases() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target");
        let out = target.join(format!("molt-example-{}", std::process::id()));
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/product/make.sh");
        let o = Command::new("bash")
            .arg(&script)
            .arg(&out)
            .env("MOLT_PRODUCT_CACHE", target.join("molt-example-cache"))
            .output()
            .expect("cannot run bash");
        assert!(
            o.status.success(),
            "{} failed (it needs docker, busybox-static and mariadb-server: scripts/test.sh installs them):\n{}{}",
            script.display(),
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        out.join("releases")
    })
}

fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

#[track_caller]
fn ok(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The vendor: a minisign key, packages of the example's releases, a server publishing them.
pub struct Vendor {
    pub dir: tempfile::TempDir,
    pub server: Server,
    molt: PathBuf,
    /// The last manifest sequence published.
    sequence: std::sync::atomic::AtomicU64,
}

impl Vendor {
    pub fn new(molt: &Path) -> Vendor {
        let v = Vendor {
            dir: tempfile::tempdir().unwrap(),
            server: Server::start(),
            molt: molt.to_path_buf(),
            sequence: std::sync::atomic::AtomicU64::new(0),
        };
        let out = run(Command::new(molt).current_dir(v.dir.path()).args([
            "keygen",
            "--secret-key",
            "vendor.sec",
            "--public-key",
            "vendor.pub",
        ]));
        ok(&out, "molt keygen");
        v
    }

    pub fn public_key(&self) -> PathBuf {
        self.dir.path().join("vendor.pub")
    }

    /// Pack `version` (with a patch from `previous`), sign its manifest and publish it: the
    /// server's `manifest.json` now names it.
    pub fn publish(&self, version: &str, previous: Option<&str>) {
        let out_dir = self.dir.path().join(format!("pub-{version}"));
        let mut cmd = Command::new(&self.molt);
        cmd.current_dir(self.dir.path())
            .arg("pack")
            .arg(releases().join(version))
            .arg("--out")
            .arg(&out_dir)
            .args(["--product", "example", "--secret-key", "vendor.sec"])
            .args(["--released-at", "2026-11-24T00:00:00Z"])
            .env("MOLT_LOG", "error");
        if let Some(p) = previous {
            cmd.arg("--previous").arg(releases().join(p));
        }
        ok(&run(&mut cmd), "molt pack");
        self.show(version);
    }

    /// Publish `version`, a copy of the example's release `base` changed by `edit` (a vendor's
    /// mistake), with a patch from the example's release `previous`.
    pub fn publish_variant(
        &self,
        base: &str,
        version: &str,
        previous: &str,
        edit: impl FnOnce(&Path),
    ) {
        let dir = self.dir.path().join(format!("rel-{version}"));
        let _ = std::fs::remove_dir_all(&dir);
        steps::fsutil::copy_tree(&releases().join(base), &dir, &mut |_| {}).unwrap();
        let toml = std::fs::read_to_string(dir.join("release.toml")).unwrap();
        std::fs::write(
            dir.join("release.toml"),
            toml.replace(
                &format!("version = \"{base}\""),
                &format!("version = \"{version}\""),
            ),
        )
        .unwrap();
        edit(&dir);
        let out_dir = self.dir.path().join(format!("pub-{version}"));
        let out = run(Command::new(&self.molt)
            .current_dir(self.dir.path())
            .arg("pack")
            .arg(&dir)
            .arg("--out")
            .arg(&out_dir)
            .args(["--product", "example", "--secret-key", "vendor.sec"])
            .args(["--released-at", "2026-11-24T00:00:00Z"])
            .arg("--previous")
            .arg(releases().join(previous))
            .env("MOLT_LOG", "error"));
        ok(&out, "molt pack");
        self.show(version);
    }

    /// Make the server's `manifest.json` name `version` (published before). Like a vendor
    /// publishing it again, the manifest gets the next sequence number and a new signature:
    /// installations refuse a sequence older than one they trusted.
    pub fn show(&self, version: &str) {
        let out_dir = self.dir.path().join(format!("pub-{version}"));
        let path = out_dir.join("manifest.json");
        let mut m: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        let seq = self
            .sequence
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
            + 1;
        m["sequence"] = seq.into();
        std::fs::write(&path, serde_json::to_vec_pretty(&m).unwrap()).unwrap();
        let out = run(Command::new(&self.molt)
            .current_dir(self.dir.path())
            .arg("sign")
            .arg(&path)
            .args(["--secret-key", "vendor.sec"])
            .env("MOLT_LOG", "error"));
        ok(&out, "molt sign");
        for e in std::fs::read_dir(&out_dir).unwrap().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            self.server.put(
                &format!("/{name}"),
                std::fs::read(e.path()).unwrap(),
                Fault::None,
            );
        }
    }
}

/// An operator's installation of the example product.
pub struct Site {
    _dir: tempfile::TempDir,
    pub root: PathBuf,
    pub project: String,
    pub app_port: u16,
    pub db_port: u16,
    pub password: String,
}

static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

impl Site {
    /// An empty installation reading the vendor's manifest, with the operator's own `.env`
    /// (ports and password) written before the first install.
    pub fn new(vendor: &Vendor) -> Site {
        Site::new_in(vendor, None)
    }

    /// [`Site::new`] with the installation root at `dir/example` (a small file system...).
    pub fn new_in(vendor: &Vendor, dir: Option<&Path>) -> Site {
        let tmp = tempfile::tempdir().unwrap();
        let root = dir.unwrap_or(tmp.path()).join("example");
        std::fs::create_dir_all(root.join("shared")).unwrap();
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let project = format!("moltex{}x{n}", std::process::id());
        let (app_port, db_port) = (crate::free_port(), crate::free_port());
        let password = format!("op-{n}-{}", std::process::id());
        std::fs::copy(vendor.public_key(), root.join("vendor.pub")).unwrap();
        std::fs::write(
            root.join("molt.toml"),
            format!(
                "project = \"{project}\"\nmanifest_url = \"{}\"\npublic_key = \"vendor.pub\"\n\
                 database_url = \"mysql://${{MYSQL_USER}}:${{MYSQL_PASSWORD}}@127.0.0.1:${{DB_PORT}}/${{MYSQL_DATABASE}}\"\n",
                vendor.server.url("/manifest.json")
            ),
        )
        .unwrap();
        std::fs::write(
            root.join("shared/.env"),
            format!("# the operator's values\nMYSQL_PASSWORD={password}\nDB_PORT={db_port}\nAPP_PORT={app_port}\nGREETING=hi from the operator\n"),
        )
        .unwrap();
        Site {
            _dir: tmp,
            root,
            project,
            app_port,
            db_port,
            password,
        }
    }

    pub fn db_url(&self) -> String {
        format!(
            "mysql://app:{}@127.0.0.1:{}/app",
            self.password, self.db_port
        )
    }

    /// GET a path of the app (`None` when it does not answer 200).
    pub fn app(&self, path: &str) -> Option<String> {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.app_port)).ok()?;
        s.set_read_timeout(Some(std::time::Duration::from_secs(3)))
            .ok()?;
        write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").ok()?;
        let mut resp = String::new();
        s.read_to_string(&mut resp).ok()?;
        let (head, body) = resp.split_once("\r\n\r\n")?;
        (head.split_whitespace().nth(1) == Some("200")).then(|| body.trim().to_string())
    }

    pub async fn db(&self) -> mysql_async::Conn {
        mysql_async::Conn::new(mysql_async::Opts::from_url(&self.db_url()).unwrap())
            .await
            .unwrap_or_else(|e| panic!("cannot connect to the site's database: {e}"))
    }

    /// The site's tables: normalised `SHOW CREATE TABLE` of each.
    pub async fn schema(&self) -> BTreeMap<String, String> {
        let mut c = self.db().await;
        let s = crate::db::show_create_all(&mut c, "app").await;
        let _ = c.disconnect().await;
        s
    }

    /// Every row of every table, as text, in primary-key order: the data, to compare.
    pub async fn rows(&self) -> BTreeMap<String, Vec<String>> {
        let mut c = self.db().await;
        let tables: Vec<String> = c
            .query("SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = 'app' ORDER BY 1")
            .await
            .unwrap();
        let mut out = BTreeMap::new();
        for t in tables {
            let rows: Vec<mysql_async::Row> = c
                .query(format!("SELECT * FROM `{t}` ORDER BY 1"))
                .await
                .unwrap();
            let text = rows
                .into_iter()
                .map(|r| {
                    (0..r.len())
                        .map(|i| r.as_ref(i).unwrap().as_sql(true))
                        .collect::<Vec<_>>()
                        .join("|")
                })
                .collect();
            out.insert(t, text);
        }
        let _ = c.disconnect().await;
        out
    }

    /// Image ids of the project's running containers, by service.
    pub fn running_images(&self) -> BTreeMap<String, String> {
        self.ps(false, "{{.Image}}")
            .lines()
            .filter_map(|l| l.split_once(' '))
            .map(|(s, image)| {
                let id =
                    run(Command::new("docker")
                        .args(["image", "inspect", "--format", "{{.Id}}", image]));
                (
                    s.to_string(),
                    String::from_utf8_lossy(&id.stdout).trim().to_string(),
                )
            })
            .collect()
    }

    /// `docker ps` of the project's containers (`all`: stopped ones too), a line each: the
    /// service, a space, then `format`.
    fn ps(&self, all: bool, format: &str) -> String {
        let mut c = Command::new("docker");
        c.arg("ps");
        if all {
            c.arg("-a");
        }
        let out = run(c.args([
            "--filter",
            &format!("label=com.docker.compose.project={}", self.project),
            "--format",
            &format!("{{{{.Label \"com.docker.compose.service\"}}}} {format}"),
        ]));
        ok(&out, "docker ps");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The names of all the project's containers, stopped ones too, by service (a leftover
    /// container of an upgrade shows as a second name).
    pub fn container_names(&self) -> BTreeMap<String, Vec<String>> {
        let mut by: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (s, name) in self
            .ps(true, "{{.Names}}")
            .lines()
            .filter_map(|l| l.split_once(' '))
        {
            by.entry(s.to_string()).or_default().push(name.to_string());
        }
        for names in by.values_mut() {
            names.sort();
        }
        by
    }

    /// When each of the project's containers last started, by service: unchanged means the
    /// services were never stopped.
    pub fn started_at(&self) -> BTreeMap<String, String> {
        let out = run(Command::new("docker").args([
            "ps",
            "-q",
            "--filter",
            &format!("label=com.docker.compose.project={}", self.project),
        ]));
        let ids: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .map(str::to_string)
            .collect();
        if ids.is_empty() {
            return BTreeMap::new();
        }
        let out = run(Command::new("docker")
            .args([
                "inspect",
                "--format",
                "{{index .Config.Labels \"com.docker.compose.service\"}} {{.State.StartedAt}}",
            ])
            .args(&ids));
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_once(' '))
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    /// Where `current` points (`releases/<v>`), if anywhere.
    pub fn current(&self) -> Option<String> {
        std::fs::read_link(self.root.join("current"))
            .ok()
            .map(|p| p.to_string_lossy().into_owned())
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        drop(crate::ProjectGuard(self.project.clone()));
    }
}
