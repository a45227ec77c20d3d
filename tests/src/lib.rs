//! Shared helpers for the cross-crate scenario tests and benchmarks: tiny Docker images built
//! locally (no registry is reachable) from a static busybox, saved as tarballs the way a
//! vendor ships them, and release directories that use them.

pub mod db;
pub mod http;
pub mod product;
pub mod proxy;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, UNIX_EPOCH};

/// An image built for the tests and saved as a tarball.
#[derive(Clone, Debug)]
pub struct TestImage {
    pub tag: String,
    pub id: String,
    pub tarball: PathBuf,
}

fn sh(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Where the built images are cached: `target/molt-test-images` of this workspace.
fn cache_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/molt-test-images")
}

fn pin_mtime(path: &Path) {
    let t = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let f = File::open(path).unwrap();
    f.set_modified(t).unwrap();
}

/// Build (once per machine, cached) the image `molt-test/<name>`: a static busybox serving
/// `/www` over HTTP on 8080; `health` decides whether `/www/health` exists, `version` is
/// served at `/version`.
pub fn image(name: &str, version: &str, health: bool) -> TestImage {
    let busybox = Path::new("/bin/busybox");
    assert!(
        busybox.exists(),
        "/bin/busybox is missing: install Debian's busybox-static (scripts/test.sh does)"
    );
    let dir = cache_dir();
    std::fs::create_dir_all(&dir).unwrap();
    // One builder at a time across test processes.
    let lock = File::create(dir.join(".lock")).unwrap();
    lock.lock().unwrap();
    let tag = format!("molt-test/{name}");
    let safe = name.replace([':', '/'], "-");
    let tarball = dir.join(format!("{safe}.tar"));
    let id_file = dir.join(format!("{safe}.id"));
    let present = |id: &str| {
        Command::new("docker")
            .args(["image", "inspect", "--format", "{{.Id}}", id])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if let Ok(id) = std::fs::read_to_string(&id_file) {
        if tarball.exists() && present(id.trim()) {
            return TestImage {
                tag,
                id: id.trim().to_string(),
                tarball,
            };
        }
    }
    let ctx = dir.join(format!("{safe}.context"));
    let _ = std::fs::remove_dir_all(&ctx);
    std::fs::create_dir_all(ctx.join("www")).unwrap();
    std::fs::copy(busybox, ctx.join("busybox")).unwrap();
    std::fs::write(ctx.join("www/version"), version).unwrap();
    if health {
        std::fs::write(ctx.join("www/health"), "ok\n").unwrap();
    }
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM scratch\nCOPY busybox /bin/busybox\nCOPY www /www\nENTRYPOINT [\"/bin/busybox\"]\nCMD [\"httpd\", \"-f\", \"-p\", \"8080\", \"-h\", \"/www\"]\n",
    )
    .unwrap();
    for p in ["busybox", "www/version", "www/health", "www", "Dockerfile"] {
        if ctx.join(p).exists() {
            pin_mtime(&ctx.join(p));
        }
    }
    sh(Command::new("docker")
        .args(["build", "-q", "-t", &tag])
        .arg(&ctx)
        .env("DOCKER_BUILDKIT", "0"));
    let id = sh(Command::new("docker").args(["image", "inspect", "--format", "{{.Id}}", &tag]));
    sh(Command::new("docker")
        .args(["save", "-o"])
        .arg(&tarball)
        .arg(&tag));
    std::fs::write(&id_file, &id).unwrap();
    TestImage { tag, id, tarball }
}

/// Semi-compressible bytes (about 2:1 with zstd -3), different per seed: test data that
/// neither compresses away nor is pure noise.
pub fn semi_random(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E3779B97F4A7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes()[..4]);
        out.extend_from_slice(b"abcd");
    }
    out.truncate(len);
    out
}

/// Run a command to success (panicking with its stderr otherwise) and return its stdout,
/// trimmed.
pub fn stdout_of(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Run a baseline command to success and return its wall time in seconds (benchmarks).
pub fn timed(cmd: &mut Command) -> f64 {
    let t = std::time::Instant::now();
    stdout_of(cmd);
    t.elapsed().as_secs_f64()
}

/// The median of a benchmark's rounds (the machine is shared: one slow round must not decide).
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// What a test release runs.
pub struct ReleaseSpec<'a> {
    pub version: &'a str,
    pub web: &'a TestImage,
    /// Exit code of the one-shot `init` service.
    pub init_exit: i32,
    pub port: u16,
    pub health_timeout_secs: u64,
}

/// Write `root/releases/<version>/` (release.toml, docker-compose.yml, images/web.tar).
pub fn write_release(root: &Path, spec: &ReleaseSpec) -> PathBuf {
    let dir = root.join("releases").join(spec.version);
    std::fs::create_dir_all(dir.join("images")).unwrap();
    std::fs::copy(&spec.web.tarball, dir.join("images/web.tar")).unwrap();
    std::fs::write(
        dir.join("docker-compose.yml"),
        format!(
            r#"services:
  web:
    image: {tag}
    restart: unless-stopped
    ports:
      - "127.0.0.1:{port}:8080"
    healthcheck:
      test: ["CMD", "/bin/busybox", "wget", "-q", "-O", "-", "http://127.0.0.1:8080/health"]
      interval: 1s
      timeout: 2s
      retries: 2
  init:
    image: {tag}
    restart: "no"
    entrypoint: ["/bin/busybox", "sh", "-c", "echo init of {version} ran; exit {code}"]
"#,
            tag = spec.web.tag,
            port = spec.port,
            version = spec.version,
            code = spec.init_exit
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("release.toml"),
        format!(
            r#"format = 1
version = "{version}"
compose_file = "docker-compose.yml"
health_timeout_secs = {timeout}

[images]
"images/web.tar" = "{id}"

[[probe]]
http = "http://127.0.0.1:{port}/version"
status = 200
timeout_secs = 2
"#,
            version = spec.version,
            timeout = spec.health_timeout_secs,
            id = spec.web.id,
            port = spec.port
        ),
    )
    .unwrap();
    dir
}

/// Removes a compose project's containers and network when dropped.
pub struct ProjectGuard(pub String);

impl Drop for ProjectGuard {
    fn drop(&mut self) {
        let ids = Command::new("docker")
            .args(["ps", "-aq", "--filter"])
            .arg(format!("label=com.docker.compose.project={}", self.0))
            .output();
        if let Ok(out) = ids {
            let ids: Vec<String> = String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .map(str::to_string)
                .collect();
            if !ids.is_empty() {
                let _ = Command::new("docker")
                    .args(["rm", "-f"])
                    .args(&ids)
                    .output();
            }
        }
        let _ = Command::new("docker")
            .args(["network", "rm", &format!("{}_default", self.0)])
            .output();
    }
}
