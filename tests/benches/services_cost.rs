//! Benchmark: molt's stop + start of a release (compose through the host's CLI, plus the API
//! check that everything stopped) against the compose CLI doing the same, in one run.
//! Target: ratio <= 1.1x.
//!
//! Run: `cargo bench -p tests --bench services_cost [-- ROUNDS]`.

use engine::{RunId, Step, StepCtx};
use std::process::Command;
use std::time::Instant;
use steps::docker::compose;
use steps::services::{StartServices, StopServices, Target};
use tests::median;
use tests::{free_port, image, write_release, ProjectGuard, ReleaseSpec};

fn ctx() -> StepCtx {
    StepCtx {
        run: RunId(1),
        step: 0,
        attempt: 1,
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let rounds: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(5);
    let dir = tempfile::tempdir().unwrap();
    let project = format!("moltbench{}", std::process::id());
    let _guard = ProjectGuard(project.clone());
    let app = image("app:1", "1", true);
    let rel = write_release(
        dir.path(),
        &ReleaseSpec {
            version: "1",
            web: &app,
            init_exit: 0,
            port: free_port(),
            health_timeout_secs: 60,
        },
    );
    let target = Target {
        project: project.clone(),
        dir: rel.clone(),
        label: "releases/1".into(),
        overlay: None,
    };
    let flavor = compose::detect().await.unwrap();
    let (prog, pre): (&str, &[&str]) = match flavor {
        compose::Flavor::V2 => ("docker", &["compose"]),
        compose::Flavor::V1 => ("docker-compose", &[]),
    };
    let cli = |args: &[&str]| {
        let out = Command::new(prog)
            .args(pre)
            .args(["-p", &project, "-f"])
            .arg(rel.join("docker-compose.yml"))
            .arg("--project-directory")
            .arg(&rel)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let start = StartServices {
        target: target.clone(),
        only: vec![],
        standby: None,
    };
    let stop = StopServices {
        target,
        only: vec![],
        standby: None,
        mark: None,
    };
    start.apply(&ctx()).await.unwrap();
    let (mut molt, mut base) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        let t = Instant::now();
        stop.apply(&ctx()).await.unwrap();
        start.apply(&ctx()).await.unwrap();
        molt.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        cli(&["stop"]);
        cli(&["up", "-d"]);
        base.push(t.elapsed().as_secs_f64());
    }
    let (m, b) = (median(molt), median(base));
    println!("services_cost: {rounds} rounds of stop + start, compose front-end {flavor:?}");
    println!("  molt (compose + API stop check) {m:>7.2} s");
    println!("  compose CLI alone               {b:>7.2} s");
    println!("  ratio molt / compose = {:.2}x  (target <= 1.1x)", m / b);
}
