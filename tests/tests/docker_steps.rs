//! The Docker steps against the real engine: each step's undo restores what its do changed
//! (checked by inspecting real containers and images), and the cut-over plan (load images,
//! stop the old release, start the new, verify) rolls back to a healthy old release when the
//! new one never becomes healthy.

use engine::{drive, DriveOptions, Event, Finish, Limits, Machine, Outcome, RunId, Step, StepCtx};
use std::path::PathBuf;
use steps::docker::api::Docker;
use steps::plans::{Env, PlanSpec, SwitchServices};
use steps::services::{LoadImages, StartServices, StopServices, Target};
use tests::{free_port, image, write_release, ProjectGuard, ReleaseSpec, TestImage};

fn ctx(step: usize) -> StepCtx {
    StepCtx {
        run: RunId(1),
        step,
        attempt: 1,
    }
}

struct Setup {
    _dir: tempfile::TempDir,
    root: PathBuf,
    project: String,
    port: u16,
    _guard: ProjectGuard,
}

fn setup(tag: &str) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let project = format!("moltsteps{}{tag}", std::process::id());
    Setup {
        _dir: dir,
        root,
        _guard: ProjectGuard(project.clone()),
        project,
        port: free_port(),
    }
}

fn release(s: &Setup, version: &str, web: &TestImage) -> Target {
    let dir = write_release(
        &s.root,
        &ReleaseSpec {
            version,
            web,
            init_exit: 0,
            port: s.port,
            health_timeout_secs: 8,
        },
    );
    Target {
        project: s.project.clone(),
        dir,
        label: format!("releases/{version}"),
        overlay: None,
    }
}

/// (service, image id, running) of every container of the project.
async fn running(project: &str) -> Vec<(String, String, bool)> {
    let d = Docker::connect().await.unwrap();
    d.containers(project)
        .await
        .unwrap()
        .into_iter()
        .map(|c| (c.service, c.image, c.running))
        .collect()
}

fn up(c: &[(String, String, bool)], service: &str) -> Option<String> {
    c.iter()
        .find(|(s, _, r)| s == service && *r)
        .map(|(_, i, _)| i.clone())
}

#[tokio::test]
async fn start_and_stop_undo_what_they_did() {
    let s = setup("a");
    let app1 = image("app:1", "1", true);
    let t = release(&s, "1", &app1);
    let start = StartServices {
        target: t.clone(),
        only: vec![],
        standby: None,
    };
    let stop = StopServices {
        target: t.clone(),
        only: vec![],
        standby: None,
        mark: None,
    };
    assert!(running(&s.project).await.is_empty());
    start.apply(&ctx(0)).await.unwrap();
    t.wait_healthy(&[]).await.unwrap();
    assert_eq!(up(&running(&s.project).await, "web"), Some(app1.id.clone()));
    // stop: do stops, undo brings the release back healthy
    stop.apply(&ctx(1)).await.unwrap();
    assert_eq!(up(&running(&s.project).await, "web"), None);
    stop.undo(&ctx(1), None).await.unwrap();
    assert_eq!(up(&running(&s.project).await, "web"), Some(app1.id.clone()));
    // start's undo stops again: back to nothing running
    start.undo(&ctx(0), None).await.unwrap();
    assert!(running(&s.project).await.iter().all(|(_, _, r)| !r));
    // both undos are idempotent
    start.undo(&ctx(0), None).await.unwrap();
    stop.undo(&ctx(1), None).await.unwrap();
    stop.apply(&ctx(1)).await.unwrap();
}

#[tokio::test]
async fn load_images_undo_removes_only_what_it_loaded() {
    let s = setup("b");
    let img = image("undo:1", "undo", true);
    let _ = std::process::Command::new("docker")
        .args(["rmi", "-f", &img.id])
        .output();
    let d = Docker::connect().await.unwrap();
    assert!(!d.image_exists(&img.id).await.unwrap());
    let t = release(&s, "1", &img);
    let step = LoadImages {
        target: t,
        scratch: s.root.join("cache/runs/1"),
        registry: s.root.join("images.json"),
    };
    let receipt = step.apply(&ctx(0)).await.unwrap();
    assert_eq!(receipt.new, vec![img.id.clone()]);
    assert!(d.image_exists(&img.id).await.unwrap());
    let again = step.apply(&ctx(0)).await.unwrap();
    assert_eq!(again.new, receipt.new, "a re-run keeps the first record");
    step.undo(&ctx(0), Some(receipt)).await.unwrap();
    assert!(!d.image_exists(&img.id).await.unwrap());
    step.undo(&ctx(0), None).await.unwrap();

    // An image that was there before is never removed by the undo.
    let kept = image("app:1", "1", true);
    let t = release(&s, "2", &kept);
    let step = LoadImages {
        target: t,
        scratch: s.root.join("cache/runs/2"),
        registry: s.root.join("images.json"),
    };
    let r = step.apply(&ctx(0)).await.unwrap();
    assert!(r.new.is_empty());
    step.undo(&ctx(0), Some(r)).await.unwrap();
    assert!(d.image_exists(&kept.id).await.unwrap());
}

async fn switch(s: &Setup, from: &str, to: &str) -> Finish {
    let journal_dir = s.root.join(format!("journal-{to}"));
    let mut store = journal::Store::open(&journal_dir).unwrap();
    let env = Env::new(&steps::Installation::open(&s.root).unwrap(), RunId(1));
    let plan = PlanSpec::SwitchServices(SwitchServices {
        project: s.project.clone(),
        from: format!("releases/{from}"),
        to: format!("releases/{to}"),
    })
    .plan(&env)
    .unwrap();
    let mut m = Machine::new(RunId(1), plan.meta.clone(), Limits::default());
    drive(
        &mut m,
        Event::Start,
        &plan.steps,
        &mut store,
        DriveOptions::default(),
    )
    .await
    .unwrap()
}

fn get(port: u16, path: &str) -> Option<String> {
    let out = std::process::Command::new("busybox")
        .args(["wget", "-q", "-O", "-"])
        .arg(format!("http://127.0.0.1:{port}{path}"))
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).to_string())
}

#[tokio::test]
async fn a_broken_new_release_rolls_back_to_the_old_one_serving() {
    let s = setup("c");
    let app1 = image("app:1", "1", true);
    let t1 = release(&s, "1", &app1);
    release(&s, "2", &image("app:broken", "broken", false));
    release(&s, "3", &image("app:2", "2", true));
    StartServices {
        target: t1.clone(),
        only: vec![],
        standby: None,
    }
    .apply(&ctx(0))
    .await
    .unwrap();
    t1.wait_healthy(&[]).await.unwrap();
    assert_eq!(get(s.port, "/version").as_deref(), Some("1"));

    let finish = switch(&s, "1", "2").await;
    assert_eq!(finish, Finish::Finished(Outcome::RolledBack));
    assert_eq!(up(&running(&s.project).await, "web"), Some(app1.id.clone()));
    assert_eq!(get(s.port, "/version").as_deref(), Some("1"));

    let finish = switch(&s, "1", "3").await;
    assert_eq!(finish, Finish::Finished(Outcome::Committed));
    assert_eq!(get(s.port, "/version").as_deref(), Some("2"));
}

/// Docker runs a container's first healthcheck one interval after it starts. The gate does
/// not wait for it: it runs the healthcheck command itself, so a release whose services check
/// once an hour passes within seconds, while Docker still calls it `starting`; and a check
/// that fails keeps the gate waiting, however long Docker will not look.
#[tokio::test]
async fn the_gate_runs_a_starting_containers_healthcheck_instead_of_waiting_an_interval() {
    let s = setup("h");
    let app = image("app:hourly", "hourly", true);
    let t = release(&s, "1", &app);
    let compose = t.dir.join("docker-compose.yml");
    let text = std::fs::read_to_string(&compose).unwrap();
    assert!(text.contains("interval: 1s"));
    std::fs::write(&compose, text.replace("interval: 1s", "interval: 1h")).unwrap();
    let start = StartServices {
        target: t.clone(),
        only: vec![],
        standby: None,
    };
    start.apply(&ctx(0)).await.unwrap();
    let began = std::time::Instant::now();
    t.wait_healthy(&[]).await.unwrap();
    assert!(began.elapsed() < std::time::Duration::from_secs(8));
    let d = Docker::connect().await.unwrap();
    let web: Vec<_> = d
        .containers(&s.project)
        .await
        .unwrap()
        .into_iter()
        .filter(|c| c.service == "web")
        .collect();
    assert_eq!(web.len(), 1);
    assert_eq!(
        web[0].health.as_deref(),
        Some("starting"),
        "Docker has not checked it yet: the gate's own run passed it"
    );

    // the same, with a check that fails: the gate waits until its deadline, and says why
    std::fs::write(
        &compose,
        text.replace("interval: 1s", "interval: 1h")
            .replace("8080/health", "8080/no-such-page"),
    )
    .unwrap();
    start.apply(&ctx(0)).await.unwrap();
    let err = t.wait_healthy(&[]).await.unwrap_err().to_string();
    assert!(
        err.contains("service web") && err.contains("starting"),
        "{err}"
    );
    start.undo(&ctx(0), None).await.unwrap();
}

fn sh(args: &[&str]) -> String {
    tests::stdout_of(std::process::Command::new(args[0]).args(&args[1..]))
}

/// A client that calls while Docker starts a container leaves the host's neighbour entry for
/// the container's address unresolved until the kernel's next ARP try, a second later: the
/// start through the API writes the entry. Shown with the worst such entry, a wrong address
/// held for good, which without the start's announcement would keep the app unreachable.
#[tokio::test]
async fn a_container_started_through_the_api_is_reachable_whatever_the_host_believed() {
    let s = setup("n");
    let app = image("app:n", "n", true);
    let t = release(&s, "1", &app);
    let start = StartServices {
        target: t.clone(),
        only: vec![],
        standby: None,
    };
    start.apply(&ctx(0)).await.unwrap();
    t.wait_healthy(&[]).await.unwrap();
    let d = Docker::connect().await.unwrap();
    let web = d
        .containers(&s.project)
        .await
        .unwrap()
        .into_iter()
        .find(|c| c.service == "web")
        .unwrap();
    let address = || {
        let fields = sh(&[
            "docker",
            "inspect",
            "-f",
            "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{.MacAddress}} {{.NetworkID}}{{end}}",
            &web.id,
        ]);
        let [ip, mac, net] = fields.split(' ').collect::<Vec<_>>()[..] else {
            panic!("{fields}")
        };
        (
            ip.to_string(),
            mac.to_string(),
            format!("br-{}", &net[..12]),
        )
    };
    let (ip, _, bridge) = address();
    d.stop(&web.id).await.unwrap();
    // the restarted container may get another of the network's first addresses: the host
    // holds a wrong entry for each
    let prefix = &ip[..ip.rfind('.').unwrap()];
    let candidates: Vec<String> = (2..12).map(|h| format!("{prefix}.{h}")).collect();
    for a in &candidates {
        sh(&[
            "ip",
            "neigh",
            "replace",
            a,
            "lladdr",
            "02:00:00:00:00:01",
            "dev",
            &bridge,
            "nud",
            "permanent",
        ]);
    }
    d.start(&web.id).await.unwrap();
    let (ip, mac, _) = address();
    let entry = sh(&["ip", "neigh", "show", &ip, "dev", &bridge]);
    // each request within 2 s: with the wrong entry left, one would wait forever (and
    // busybox wget's own -T crashes)
    let answered = (0..50).any(|_| {
        std::process::Command::new("timeout")
            .args(["2", "busybox", "wget", "-q", "-O", "-"])
            .arg(format!("http://127.0.0.1:{}/health", s.port))
            .status()
            .is_ok_and(|st| st.success())
            || {
                std::thread::sleep(std::time::Duration::from_millis(50));
                false
            }
    });
    for a in &candidates {
        let _ = std::process::Command::new("ip")
            .args(["neigh", "del", a, "dev", &bridge])
            .status();
    }
    assert!(candidates.contains(&ip), "{ip} is not among {candidates:?}");
    assert!(entry.contains(&mac), "the host's entry for {ip}: {entry}");
    assert!(
        answered,
        "the app never answered through its published port"
    );
    start.undo(&ctx(0), None).await.unwrap();
}
