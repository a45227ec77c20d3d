//! `molt services` and `molt images` against the real Docker Engine of this machine, with tiny
//! busybox images built locally and shipped as tarballs. These tests fail (never skip) when
//! Docker is not there.

mod common;

use common::*;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};
use tests::{free_port, image, write_release, ProjectGuard, ReleaseSpec, TestImage};

static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

struct Inst {
    _dir: tempfile::TempDir,
    root: PathBuf,
    project: String,
    port: u16,
    _guard: ProjectGuard,
}

impl Inst {
    /// An installation with release `1` of `web` current.
    fn new(web: &TestImage, init_exit: i32, timeout: u64) -> Inst {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("inst");
        std::fs::create_dir_all(&root).unwrap();
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let project = format!("molttest{}x{n}", std::process::id());
        std::fs::write(root.join("molt.toml"), format!("project = \"{project}\"\n")).unwrap();
        let port = free_port();
        write_release(
            &root,
            &ReleaseSpec {
                version: "1",
                web,
                init_exit,
                port,
                health_timeout_secs: timeout,
            },
        );
        std::os::unix::fs::symlink("releases/1", root.join("current")).unwrap();
        Inst {
            _dir: dir,
            root,
            _guard: ProjectGuard(project.clone()),
            project,
            port,
        }
    }

    fn molt(&self, args: &[&str]) -> Output {
        molt_in(&self.root, None, args)
    }

    fn molt_env(&self, env: &[(&str, &str)], args: &[&str]) -> Output {
        let mut c = Command::new(MOLT);
        c.arg("--root")
            .arg(&self.root)
            .args(args)
            .env("MOLT_LOG", "error");
        for (k, v) in env {
            c.env(k, v);
        }
        c.output().unwrap()
    }

    fn containers(&self) -> Vec<serde_json::Value> {
        let out = self.molt(&["services", "status", "--json"]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v["containers"].as_array().unwrap().clone()
    }

    fn web(&self) -> serde_json::Value {
        self.containers()
            .into_iter()
            .find(|c| c["service"] == "web")
            .expect("a web container")
    }

    fn get(&self, path: &str) -> Option<String> {
        let out = Command::new("busybox")
            .args(["wget", "-q", "-O", "-"])
            .arg(format!("http://127.0.0.1:{}{path}", self.port))
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).to_string())
    }
}

/// What `services start` guarantees once the gate passed: the web container runs and answers
/// its healthcheck's request. Docker may still say `starting`: it runs its first check one
/// interval after the start, and the gate ran the check itself (never `unhealthy`).
fn assert_healthy(i: &Inst, web: &serde_json::Value, what: &str) {
    assert_eq!(web["running"], true, "{what}: {web}");
    let h = web["health"].as_str().unwrap_or("");
    assert!(h == "healthy" || h == "starting", "{what}: {web}");
    assert!(
        i.get("/health").is_some(),
        "{what}: /health does not answer"
    );
}

fn app(version: &str) -> TestImage {
    image(&format!("app:{version}"), version, true)
}

#[test]
fn start_stop_restart_are_idempotent_and_the_gate_sees_health() {
    let i = Inst::new(&app("1"), 0, 60);
    let out = i.molt(&["services", "start"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let web = i.web();
    assert_healthy(&i, &web, "start");
    let init = i
        .containers()
        .into_iter()
        .find(|c| c["service"] == "init")
        .unwrap();
    assert_eq!(init["status"], "exited");
    assert_eq!(init["exit_code"], 0);
    assert_eq!(i.get("/version").as_deref(), Some("1"));
    let id = web["id"].clone();

    // Start when started: nothing changes (same container).
    let out = i.molt(&["services", "start"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(i.web()["id"], id);

    let out = i.molt(&["services", "stop"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(i.web()["running"], false);
    assert!(i.get("/version").is_none());
    // Stop when stopped: a no-op.
    let out = i.molt(&["services", "stop"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(i.web()["id"], id);

    let out = i.molt(&["services", "restart"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_healthy(&i, &i.web(), "restart");
    assert_eq!(i.get("/version").as_deref(), Some("1"));

    // the status shows Docker's word, once Docker's own check ran (1 s interval)
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let human = loop {
        let out = i.molt(&["services", "status"]);
        let human = String::from_utf8_lossy(&out.stdout).to_string();
        if human.contains("healthy") || std::time::Instant::now() > deadline {
            break human;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    assert!(
        human.contains("web") && human.contains("healthy"),
        "{human}"
    );
}

#[test]
fn a_release_that_never_becomes_healthy_is_caught_within_its_timeout() {
    let broken = image("app:broken", "broken", false);
    let i = Inst::new(&broken, 0, 6);
    let t = Instant::now();
    let out = i.molt(&["services", "start"]);
    let took = t.elapsed();
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    let msg = String::from_utf8_lossy(&out.stdout);
    assert!(msg.contains("not healthy within 6s"), "{msg}");
    assert!(msg.contains("service web"), "{msg}");
    assert!(msg.contains("last log lines of"), "{msg}");
    assert!(took < Duration::from_secs(6 + 30), "took {took:?}");
    // The start was undone: nothing left running.
    assert!(i.containers().iter().all(|c| c["running"] == false));
}

#[test]
fn a_one_shot_service_that_fails_fails_the_gate() {
    let i = Inst::new(&app("1"), 3, 60);
    let t = Instant::now();
    let out = i.molt(&["services", "start"]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    let msg = String::from_utf8_lossy(&out.stdout);
    assert!(
        msg.contains("one-shot service init") && msg.contains("code 3"),
        "{msg}"
    );
    assert!(msg.contains("init of 1 ran"), "log tail missing: {msg}");
    assert!(
        t.elapsed() < Duration::from_secs(40),
        "a failed one-shot must not wait for the timeout"
    );
}

#[test]
fn loading_images_is_idempotent_and_checks_the_ids() {
    let img = image("load:1", "load", true);
    // Make the load real: the image must be absent first.
    let _ = Command::new("docker").args(["rmi", "-f", &img.id]).output();
    let i = Inst::new(&img, 0, 60);
    let out = i.molt(&["images", "load"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let inspect = Command::new("docker")
        .args(["image", "inspect", &img.id])
        .output()
        .unwrap();
    assert!(inspect.status.success(), "image not loaded");
    let out = i.molt(&["images", "load"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let registry = std::fs::read_to_string(i.root.join("images.json")).unwrap();
    assert!(registry.contains(&img.id));

    // A corrupt tarball is refused before Docker sees it.
    let tar = i.root.join("releases/1/images/web.tar");
    std::fs::write(&tar, b"not a tarball at all").unwrap();
    let out = i.molt(&["images", "load"]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("not a docker image tarball"),
        "{}",
        text(&out)
    );

    // A tarball holding another image than release.toml says.
    std::fs::copy(&app("2").tarball, &tar).unwrap();
    let out = i.molt(&["images", "load"]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("but release.toml says"),
        "{}",
        text(&out)
    );
}

#[test]
fn images_prune_removes_only_what_no_release_uses() {
    let old = image("prune:old", "old", true);
    let i = Inst::new(&old, 0, 60);
    assert_eq!(i.molt(&["images", "load"]).status.code(), Some(0));
    // While release 1 exists, its image stays.
    let out = i.molt(&["images", "prune", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("\"would_remove\": []"),
        "{}",
        text(&out)
    );
    // Release 2 replaces it; release 1's directory is gone.
    write_release(
        &i.root,
        &ReleaseSpec {
            version: "2",
            web: &app("2"),
            init_exit: 0,
            port: i.port,
            health_timeout_secs: 60,
        },
    );
    std::fs::remove_file(i.root.join("current")).unwrap();
    std::os::unix::fs::symlink("releases/2", i.root.join("current")).unwrap();
    std::fs::remove_dir_all(i.root.join("releases/1")).unwrap();
    let out = i.molt(&["images", "prune", "--dry-run"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&old.id),
        "{}",
        text(&out)
    );
    let out = i.molt(&["images", "prune"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let gone = Command::new("docker")
        .args(["image", "inspect", &old.id])
        .output()
        .unwrap();
    assert!(!gone.status.success(), "old image still present");
    let kept = Command::new("docker")
        .args(["image", "inspect", &app("2").id])
        .output()
        .unwrap();
    assert!(kept.status.success(), "a kept release's image was removed");
}

#[test]
fn bad_input_is_refused_with_nothing_left_running() {
    let i = Inst::new(&app("1"), 0, 60);
    let out = i.molt(&["services", "start", "nosuch"]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("\"nosuch\" is not defined"),
        "{}",
        text(&out)
    );
    assert!(i.containers().is_empty());

    std::fs::write(
        i.root.join("releases/1/docker-compose.yml"),
        "services:\n  web: [this is not\n",
    )
    .unwrap();
    let out = i.molt(&["services", "start"]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("compose"),
        "{}",
        text(&out)
    );
    assert!(i.containers().is_empty());

    let out = i.molt_env(
        &[("DOCKER_HOST", "unix:///nonexistent/docker.sock")],
        &["services", "status"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("does not answer"),
        "{}",
        text(&out)
    );

    std::fs::write(
        i.root.join("releases/1/release.toml"),
        "format = 9\nversion = \"1\"\n",
    )
    .unwrap();
    let out = i.molt(&["services", "start"]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("newer than this molt"),
        "{}",
        text(&out)
    );
}

/// The compose front-ends this host has; v1 (`docker-compose`) is what Debian ships.
fn front_ends() -> Vec<&'static str> {
    let mut v = Vec::new();
    if Command::new("docker")
        .args(["compose", "version"])
        .output()
        .is_ok_and(|o| o.status.success())
    {
        v.push("v2");
    }
    if Command::new("docker-compose")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        v.push("v1");
    }
    assert!(
        !v.is_empty(),
        "no compose front-end on this machine: install docker-compose"
    );
    v
}

#[test]
fn every_compose_front_end_present_drives_the_same_project() {
    for fe in front_ends() {
        let i = Inst::new(&app("1"), 0, 60);
        let out = i.molt_env(
            &[("MOLT_COMPOSE", fe), ("MOLT_LOG", "info")],
            &["services", "start"],
        );
        assert_eq!(out.status.code(), Some(0), "{fe}: {}", text(&out));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("compose front-end chosen"),
            "the choice is logged: {}",
            text(&out)
        );
        let web = i.web();
        assert_healthy(&i, &web, fe);
        assert!(
            web["name"].as_str().unwrap().starts_with(&i.project),
            "{fe}: {web}"
        );
        let out = i.molt_env(&[("MOLT_COMPOSE", fe)], &["services", "stop"]);
        assert_eq!(out.status.code(), Some(0), "{fe}: {}", text(&out));
    }
    let i = Inst::new(&app("1"), 0, 60);
    let out = i.molt_env(&[("MOLT_COMPOSE", "v7")], &["services", "start"]);
    assert_ne!(out.status.code(), Some(0));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("use v1 or v2"),
        "{}",
        text(&out)
    );
}

#[test]
fn a_daemon_that_disappears_mid_step_leaves_nothing_half_done() {
    let broken = image("app:broken", "broken", false);
    let i = Inst::new(&broken, 0, 60);
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("docker.sock");
    let proxy = tests::proxy::DockerProxy::start(&sock);
    let host = proxy.host();
    let child = Command::new(MOLT)
        .arg("--root")
        .arg(&i.root)
        .args(["services", "start"])
        .env("DOCKER_HOST", &host)
        .env("MOLT_LOG", "error")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Once the services run (the gate is waiting for a health that never comes), the daemon
    // vanishes.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !i
        .containers()
        .iter()
        .any(|c| c["service"] == "web" && c["running"] == true)
    {
        assert!(Instant::now() < deadline, "the services never started");
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_millis(500));
    proxy.kill();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(5), "{}", text(&out));
    let msg = String::from_utf8_lossy(&out.stdout);
    assert!(msg.contains("does not answer"), "{msg}");
    assert!(msg.contains("stopped while rolling back"), "{msg}");

    // The daemon comes back: the rollback finishes and nothing is left running.
    let proxy = tests::proxy::DockerProxy::start(&sock);
    let out = i.molt_env(&[("DOCKER_HOST", &proxy.host())], &["rollback"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        i.containers().iter().all(|c| c["running"] == false),
        "{:?}",
        i.containers()
    );
}

/// GET `path` from 127.0.0.1:`port`: the status and body.
fn get(port: u16, path: &str) -> Option<(u16, Vec<u8>)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\n\r\n").ok()?;
    let mut r = Vec::new();
    s.read_to_end(&mut r).ok()?;
    let split = r.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&r[..split]).into_owned();
    let code = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((code, r[split + 4..].to_vec()))
}

/// Wait (at most 30 s) until GET `path` answers 200.
fn wait_ok(port: u16, path: &str, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while get(port, path).is_none_or(|(c, _)| c != 200) {
        assert!(Instant::now() < deadline, "{what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `molt init --adopt` of a seed-shaped directory whose services run: they keep serving
/// through the adoption, a `docker restart` afterwards still finds the data through the
/// links left at the old paths, and molt then drives them as its installation's services.
#[test]
fn adopting_a_running_compose_directory_keeps_its_services_and_their_data() {
    let web = image("web:1", "1", true);
    let dir = tempfile::tempdir().unwrap();
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let project = format!("moltseed{}x{n}", std::process::id());
    let root = dir.path().join(&project);
    let port = free_port();
    std::fs::create_dir_all(root.join("uploads/2026")).unwrap();
    std::fs::create_dir_all(root.join("data")).unwrap();
    std::fs::write(root.join("uploads/2026/photo.txt"), b"the operator's photo").unwrap();
    std::fs::write(root.join("data/db.bin"), tests::semi_random(9, 200_000)).unwrap();
    std::fs::write(root.join(".env"), format!("WEB_PORT={port}\n")).unwrap();
    std::fs::write(
        root.join("docker-compose.yml"),
        format!(
            "services:\n  web:\n    image: {}\n    restart: unless-stopped\n    stop_grace_period: 1s\n    ports:\n      - \"127.0.0.1:${{WEB_PORT}}:8080\"\n    volumes:\n      - ./uploads:/www/uploads\n      - ./data:/data\n",
            web.tag
        ),
    )
    .unwrap();
    let _guard = ProjectGuard(project.clone());
    // the seed system started it the way operators do: compose in the directory
    let v2 = Command::new("docker")
        .args(["compose", "version"])
        .output()
        .is_ok_and(|o| o.status.success());
    let mut up = if v2 {
        let mut c = Command::new("docker");
        c.arg("compose");
        c
    } else {
        Command::new("docker-compose")
    };
    let compose = up.current_dir(&root).args(["up", "-d"]).output().unwrap();
    assert!(compose.status.success(), "{}", text(&compose));
    wait_ok(
        port,
        "/uploads/2026/photo.txt",
        "the seed's service never answered",
    );
    let before = tree_of(&root);

    let out = molt_in(&root, None, &["init", "--adopt", "--version", "3.1.0"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(
        get(port, "/uploads/2026/photo.txt"),
        Some((200, b"the operator's photo".to_vec())),
        "served throughout"
    );
    // the moved directory is the one the container writes to and reads from
    std::fs::write(root.join("shared/uploads/new.txt"), b"after").unwrap();
    assert_eq!(
        get(port, "/uploads/new.txt"),
        Some((200, b"after".to_vec()))
    );
    let mut moved = Tree::new();
    for (k, v) in &before {
        if let Some(rest) = ["uploads", "data", ".env"]
            .iter()
            .find_map(|t| (k == t || k.starts_with(&format!("{t}/"))).then_some(k))
        {
            moved.insert(format!("shared/{rest}"), v.clone());
        }
    }
    let mut shared = tree_of(&root.join("shared"))
        .into_iter()
        .map(|(k, v)| (format!("shared/{k}"), v))
        .collect::<Tree>();
    shared.remove("shared/uploads/new.txt");
    assert_tree(&shared, &moved, "every byte of the data, moved");

    // a restart of the old container resolves its bind mounts through the links
    let id = Command::new("docker")
        .args(["ps", "-q", "--filter"])
        .arg(format!("label=com.docker.compose.project={project}"))
        .output()
        .unwrap();
    let id = String::from_utf8_lossy(&id.stdout).trim().to_string();
    assert!(!id.is_empty());
    let r = Command::new("docker")
        .args(["restart", "-t", "1", &id])
        .output()
        .unwrap();
    assert!(r.status.success(), "{}", text(&r));
    wait_ok(
        port,
        "/uploads/new.txt",
        "after the restart the data is gone",
    );
    // and molt drives them now: its project, its release
    let st = molt_in(&root, None, &["--json", "services", "status"]);
    assert_eq!(st.status.code(), Some(0), "{}", text(&st));
    assert!(
        String::from_utf8_lossy(&st.stdout).contains("\"web\""),
        "{}",
        text(&st)
    );
    let out = molt_in(&root, None, &["services", "restart"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(
        get(port, "/uploads/2026/photo.txt"),
        Some((200, b"the operator's photo".to_vec())),
        "recreated from releases/3.1.0, the same data"
    );
}
