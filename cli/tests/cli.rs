//! The `molt` binary as an operator uses it: real processes, real files, real crashes.
//!
//! A [`Sandbox`] is a scratch installation (release 1 live, release 2 staged under
//! `incoming/`). Crash tests arm a failpoint through `MOLT_FAILPOINTS`; the child aborts there
//! (no destructor, no flush), and a fresh process recovers.

mod common;

use common::*;
use engine::{Entry, PlanMeta, Record, RunId, StepClass, StepMeta, FORMAT};
use sha2::Digest;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn sha(text: &str) -> String {
    format!("{:x}", sha2::Sha256::digest(text.as_bytes()))
}

fn good_plan() -> String {
    format!(
        r#"name = "upgrade 1 -> 2"
[[step]]
op = "copy_tree"
from = "incoming/2"
to = "releases/2"
[[step]]
op = "write_file"
path = "shared/.env"
contents = "PASSWORD=kept\nNEW=2\n"
[[step]]
op = "write_file"
path = "shared/new.conf"
contents = "fresh\n"
[[step]]
op = "switch_link"
link = "current"
target = "releases/2"
[[step]]
op = "verify_file"
path = "current/VERSION"
sha256 = "{}"
[[step]]
op = "remove_path"
path = "incoming/2"
"#,
        sha("2\n")
    )
}

/// Same as the good plan, but verification expects another VERSION: the run rolls back.
fn failing_plan() -> String {
    good_plan()
        .replace(&sha("2\n"), &sha("something else\n"))
        .replace(
            "[[step]]\nop = \"remove_path\"\npath = \"incoming/2\"\n",
            "",
        )
}

struct Sandbox {
    _dir: tempfile::TempDir,
    root: PathBuf,
}

impl Sandbox {
    fn new() -> Sandbox {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("inst");
        let w = |rel: &str, text: &str| {
            let p = root.join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        };
        w("releases/1/VERSION", "1\n");
        w(
            "releases/1/docker-compose.yml",
            "services: {app: {image: app:1}}\n",
        );
        w("incoming/2/VERSION", "2\n");
        w(
            "incoming/2/docker-compose.yml",
            "services: {app: {image: app:2}}\n",
        );
        w("incoming/2/config/app.conf", "release=2\n");
        w("incoming/2/config/deep/nested.conf", "n\n");
        w("incoming/2/bin/run.sh", "#!/bin/sh\n");
        std::fs::set_permissions(
            root.join("incoming/2/bin/run.sh"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        std::fs::create_dir_all(root.join("incoming/2/empty")).unwrap();
        std::os::unix::fs::symlink("VERSION", root.join("incoming/2/version-link")).unwrap();
        w("shared/.env", "PASSWORD=kept\n");
        w("shared/data/db.bin", "data that must never change\n");
        std::os::unix::fs::symlink("releases/1", root.join("current")).unwrap();
        w("good.toml", &good_plan());
        w("failing.toml", &failing_plan());
        Sandbox { _dir: dir, root }
    }

    fn command(&self, failpoints: Option<&str>, args: &[&str]) -> Command {
        let mut c = Command::new(MOLT);
        c.current_dir(&self.root)
            .arg("--root")
            .arg(&self.root)
            .args(args)
            .env_remove("MOLT_FAILPOINTS")
            .env_remove("MOLT_ROOT")
            .env("MOLT_LOG", "error")
            .stdin(Stdio::null());
        if let Some(fp) = failpoints {
            c.env("MOLT_FAILPOINTS", fp);
        }
        c
    }

    fn molt_fp(&self, failpoints: Option<&str>, args: &[&str]) -> Output {
        self.command(failpoints, args).output().unwrap()
    }

    fn molt(&self, args: &[&str]) -> Output {
        self.molt_fp(None, args)
    }

    /// Everything under the root except molt's own state (journal, cache, lock).
    fn snapshot(&self) -> Tree {
        let mut tree = Tree::new();
        walk(&self.root, &self.root, &mut tree);
        tree
    }

    fn status(&self) -> serde_json::Value {
        let out = self.molt(&["status", "--json"]);
        assert_eq!(out.status.code(), Some(0), "status failed: {}", text(&out));
        serde_json::from_slice(&out.stdout).unwrap()
    }

    fn store(&self) -> journal::Store {
        journal::Store::open(&self.root.join("journal")).unwrap()
    }
}

/// The tree after the good plan ran without faults.
fn after_good() -> Tree {
    let s = Sandbox::new();
    let out = s.molt(&["exec", "good.toml"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    s.snapshot()
}

const FAILPOINTS: &[&str] = &[
    "engine::before_write",
    "engine::after_write",
    "engine::before_sync",
    "engine::after_sync",
    "engine::after_apply",
    "engine::after_undo",
    "steps::write_file::stashed",
    "steps::copy_tree::partial",
    "steps::switch_link::stashed",
    "steps::undo::restored",
];

/// After a crash, bring the run to an end the way an operator might (`how`), and return the
/// final state word from `molt status`.
fn recover(s: &Sandbox, how: usize) -> String {
    let verb = ["recover", "resume", "rollback"][how % 3];
    let out = s.molt(&[verb]);
    let code = out.status.code();
    if code == Some(1) {
        // An explicit choice the run does not allow (rollback past a forward-only step,
        // resume of a rollback): refused with a message, then the policy finishes it.
        let msg = String::from_utf8_lossy(&out.stderr);
        assert!(
            msg.contains("cannot be rolled back") || msg.contains("is rolling back"),
            "unexpected failure of {verb}: {}",
            text(&out)
        );
        let out = s.molt(&["recover"]);
        assert!(matches!(out.status.code(), Some(0 | 4)), "{}", text(&out));
    } else {
        assert!(matches!(code, Some(0 | 4)), "{verb}: {}", text(&out));
    }
    let st = s.status();
    st["latest"]["state"].as_str().unwrap_or("none").to_string()
}

/// Kill a real `molt exec` at every hit of every failpoint, recover in a fresh process, and
/// require the tree to equal the state before or after, byte for byte, in agreement with the
/// journal.
fn crash_matrix(plan: &str, expect_after: Option<&Tree>) -> usize {
    let before = Sandbox::new().snapshot();
    let mut crashes = 0;
    for fp in FAILPOINTS {
        'hits: for n in 0.. {
            // Each crash is recovered three ways: the policy, an explicit resume, an explicit
            // rollback (falling back to the policy where the run refuses that choice).
            for how in 0..3 {
                let s = Sandbox::new();
                let spec = format!("{fp}={n}*off->return");
                let out = s.molt_fp(Some(&spec), &["exec", plan]);
                if !aborted(&out) {
                    // The failpoint is hit fewer than n+1 times in this plan.
                    assert!(
                        matches!(out.status.code(), Some(0 | 4)),
                        "{spec}: {}",
                        text(&out)
                    );
                    break 'hits;
                }
                if how == 0 {
                    crashes += 1;
                }
                let state = recover(&s, how);
                let tree = s.snapshot();
                match (state.as_str(), expect_after) {
                    ("committed", Some(after)) => assert_tree(
                        &tree,
                        after,
                        &format!("{plan} {spec} how {how}: committed but the tree is not the upgraded one"),
                    ),
                    // Died before `run_started` was durable: nothing may have happened.
                    ("rolled_back" | "none", _) => assert_tree(
                        &tree,
                        &before,
                        &format!("{plan} {spec} how {how}: {state} but the tree is not as before"),
                    ),
                    (other, _) => panic!("{plan} {spec} how {how}: run ended {other}"),
                }
                let scratch = s.root.join("cache/runs");
                assert!(
                    !scratch.exists() || std::fs::read_dir(&scratch).unwrap().next().is_none(),
                    "{spec}: scratch directory left behind"
                );
            }
        }
    }
    crashes
}

#[test]
fn crash_at_every_failpoint_of_a_good_upgrade_then_recover() {
    let after = after_good();
    let crashes = crash_matrix("good.toml", Some(&after));
    assert!(crashes >= 38, "only {crashes} crash points exercised");
    println!("{crashes} crashes recovered");
}

#[test]
fn crash_at_every_failpoint_of_a_failing_upgrade_including_its_rollback() {
    let crashes = crash_matrix("failing.toml", None);
    assert!(crashes >= 38, "only {crashes} crash points exercised");
    println!("{crashes} crashes recovered");
}

#[test]
fn crash_during_recovery_then_recover_again() {
    let before = Sandbox::new().snapshot();
    for n in 0..6 {
        let s = Sandbox::new();
        let out = s.molt_fp(
            Some("steps::switch_link::stashed=return"),
            &["exec", "good.toml"],
        );
        assert!(aborted(&out), "{}", text(&out));
        let spec = format!("engine::after_write={n}*off->return");
        let out = s.molt_fp(Some(&spec), &["recover"]);
        if !aborted(&out) {
            assert_eq!(out.status.code(), Some(4), "{}", text(&out));
        }
        let out = s.molt(&["recover"]);
        assert!(matches!(out.status.code(), Some(0 | 4)), "{}", text(&out));
        assert_eq!(s.status()["latest"]["state"], "rolled_back");
        assert_tree(&s.snapshot(), &before, &format!("second crash at {spec}"));
    }
}

#[test]
fn upgrade_commits_and_failing_upgrade_rolls_back_by_itself() {
    let s = Sandbox::new();
    let before = s.snapshot();
    let out = s.molt(&["exec", "failing.toml"]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("verify current/VERSION"));
    assert_tree(&s.snapshot(), &before, "failed run left changes");
    let out = s.molt(&["exec", "good.toml"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(
        std::fs::read_link(s.root.join("current")).unwrap(),
        Path::new("releases/2")
    );
    assert_tree(&s.snapshot(), &after_good(), "committed run");

    let out = s.molt(&["journal", "list", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let states: Vec<&str> = v["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["rolled_back", "committed"]);

    let out = s.molt(&["journal", "show", "1", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let kinds: Vec<&str> = v["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["record"].as_str().unwrap())
        .collect();
    assert_eq!(kinds.first(), Some(&"run_started"));
    assert_eq!(kinds.last(), Some(&"run_rolled_back"));
    assert!(kinds.contains(&"step_failed") && kinds.contains(&"rollback_started"));
    let failed = v["records"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["record"] == "step_failed")
        .unwrap();
    assert!(failed["detail"].as_str().unwrap().contains("has sha256"));
    assert!(failed["duration_ms"].is_u64(), "step duration is reported");
    assert!(failed["time"].as_str().unwrap().ends_with('Z'));

    let human = s.molt(&["journal", "show", "2"]);
    let human = String::from_utf8_lossy(&human.stdout);
    assert!(
        human.contains("run 2: committed") && human.contains("run_committed"),
        "{human}"
    );
}

#[test]
fn a_second_concurrent_run_is_refused_and_changes_nothing() {
    let s = Sandbox::new();
    // The first run pauses after its first step for long enough to be seen.
    let first = s
        .command(
            Some("engine::after_apply=1*sleep(3000)"),
            &["exec", "good.toml"],
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = first.id();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        // Wait until the first step (the copy) is complete: the run then sleeps.
        let held = journal::Lock::holder(&s.root.join("molt.lock")).unwrap();
        if held.and_then(|h| h.holder).is_some_and(|h| h.pid == pid)
            && s.root.join("releases/2").exists()
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "first run never took the lock"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let during = s.snapshot();
    let second = s.molt(&["exec", "failing.toml"]);
    assert_eq!(second.status.code(), Some(3), "{}", text(&second));
    let msg = String::from_utf8_lossy(&second.stderr);
    assert!(
        msg.contains(&format!("pid {pid}")) && msg.contains("molt exec"),
        "{msg}"
    );
    for verb in ["resume", "rollback", "recover"] {
        let out = s.molt(&[verb]);
        assert_eq!(out.status.code(), Some(3), "{verb}: {}", text(&out));
    }
    let st = s.status();
    assert_eq!(st["busy"], true);
    assert_eq!(st["holder"]["pid"], pid);
    let out = s.molt(&["journal", "list"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains(&format!("pid {pid}")));
    assert_tree(&s.snapshot(), &during, "a refused command changed the tree");
    let out = first.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_tree(&s.snapshot(), &after_good(), "first run");
    let runs = s.store().runs().unwrap();
    assert_eq!(runs, vec![RunId(1)], "the refused run left a trace");
}

#[test]
fn a_new_run_is_refused_while_one_is_unfinished() {
    let s = Sandbox::new();
    let out = s.molt_fp(
        Some("steps::copy_tree::partial=return"),
        &["exec", "good.toml"],
    );
    assert!(aborted(&out));
    let during = s.snapshot();
    let out = s.molt(&["exec", "good.toml"]);
    assert_eq!(out.status.code(), Some(5), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("run 1"));
    assert_tree(&s.snapshot(), &during, "refused run");
    let st = s.status();
    assert_eq!(st["latest"]["state"], "unfinished");
    assert_eq!(st["latest"]["recover_would"]["decision"], "rollback");
}

#[test]
fn loop_breaker_stops_a_crash_loop_and_force_continues() {
    let s = Sandbox::new();
    let out = s.molt_fp(
        Some("steps::switch_link::stashed=return"),
        &["exec", "good.toml"],
    );
    assert!(aborted(&out));
    // Four more crashes at the same place, as a machine rebooting into the same fault would.
    for _ in 0..4 {
        let out = s.molt_fp(Some("steps::switch_link::stashed=return"), &["resume"]);
        assert!(aborted(&out), "{}", text(&out));
    }
    let out = s.molt(&["resume"]);
    assert_eq!(out.status.code(), Some(6), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("STUCK"),
        "{}",
        text(&out)
    );
    let out = s.molt(&["recover"]);
    assert_eq!(out.status.code(), Some(6), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--force"));
    let out = s.molt(&["resume", "--force"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_tree(&s.snapshot(), &after_good(), "forced resume");
}

fn plant(s: &Sandbox, run: u64, seq: u64, bytes: &[u8]) {
    let mut store = s.store();
    store.insert_raw(RunId(run), seq, bytes).unwrap();
}

fn crashed_sandbox() -> (Sandbox, Tree, u64) {
    let s = Sandbox::new();
    let out = s.molt_fp(
        Some("steps::switch_link::stashed=return"),
        &["exec", "good.toml"],
    );
    assert!(aborted(&out));
    let tree = s.snapshot();
    let n = s.store().read_run(RunId(1)).unwrap().records.len() as u64;
    (s, tree, n)
}

#[test]
fn damaged_or_newer_records_are_refused_and_show_still_prints() {
    let good_record = serde_json::to_vec(&Record {
        format: FORMAT,
        run: RunId(1),
        seq: 0,
        at_ms: 0,
        entry: Entry::RunCommitted,
    })
    .unwrap();
    let mut newer: serde_json::Value = serde_json::from_slice(&good_record).unwrap();
    newer["format"] = serde_json::json!(FORMAT + 1);
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("garbage", b"\x00\xffnot json".to_vec(), "damaged"),
        (
            "truncated",
            good_record[..good_record.len() / 2].to_vec(),
            "damaged",
        ),
        ("newer", newer.to_string().into_bytes(), "format 2"),
    ];
    for (name, bytes, says) in cases {
        let (s, tree, n) = crashed_sandbox();
        plant(&s, 1, n, &bytes);
        for verb in ["resume", "rollback", "recover"] {
            let out = s.molt(&[verb]);
            assert_eq!(out.status.code(), Some(7), "{name} {verb}: {}", text(&out));
            assert!(
                String::from_utf8_lossy(&out.stderr).contains(says),
                "{name}: {}",
                text(&out)
            );
        }
        assert_tree(&s.snapshot(), &tree, &format!("{name}: tree changed"));
        let out = s.molt(&["journal", "show", "1"]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        let shown = String::from_utf8_lossy(&out.stdout);
        assert!(
            shown.contains("run_started") && shown.contains("step_intent"),
            "{shown}"
        );
        assert!(shown.contains("!!"), "damage not shown: {shown}");
        let st = s.status();
        assert_eq!(st["latest"]["state"], "damaged");
        let out = s.molt(&["exec", "good.toml"]);
        assert_eq!(out.status.code(), Some(7), "{name} exec: {}", text(&out));
        assert_tree(&s.snapshot(), &tree, &format!("{name}: tree changed"));
    }
}

#[test]
fn a_journal_from_a_newer_molt_is_refused_by_every_command() {
    let (s, tree, _) = crashed_sandbox();
    {
        let db = sled::open(s.root.join("journal")).unwrap();
        db.open_tree("meta")
            .unwrap()
            .insert("format", &(FORMAT + 1).to_be_bytes())
            .unwrap();
        db.flush().unwrap();
    }
    for args in [
        &["resume"][..],
        &["recover"],
        &["status"],
        &["journal", "list"],
        &["exec", "good.toml"],
    ] {
        let out = s.molt(args);
        assert_eq!(out.status.code(), Some(7), "{args:?}: {}", text(&out));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("newer molt"),
            "{}",
            text(&out)
        );
    }
    assert_tree(&s.snapshot(), &tree, "refused command");
}

#[test]
fn a_plan_this_molt_does_not_know_is_refused() {
    let s = Sandbox::new();
    let tree = s.snapshot();
    {
        let mut store = s.store();
        let r = Record {
            format: FORMAT,
            run: RunId(1),
            seq: 0,
            at_ms: 1,
            entry: Entry::RunStarted {
                plan: PlanMeta {
                    id: "upgrade-from-the-future".into(),
                    spec: serde_json::json!({}),
                    steps: vec![StepMeta {
                        name: "teleport".into(),
                        class: StepClass::Reversible,
                    }],
                },
            },
        };
        store.append(&r).unwrap();
    }
    for verb in ["resume", "rollback", "recover"] {
        let out = s.molt(&[verb]);
        assert_eq!(out.status.code(), Some(7), "{verb}: {}", text(&out));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("upgrade-from-the-future"),
            "{}",
            text(&out)
        );
    }
    assert_tree(&s.snapshot(), &tree, "refused command");
}

#[test]
fn a_garbage_lock_file_is_taken_over() {
    let s = Sandbox::new();
    std::fs::write(s.root.join("molt.lock"), b"\x00\x01 not a holder").unwrap();
    let st = s.status();
    assert_eq!(st["busy"], false);
    let out = s.molt(&["exec", "good.toml"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    // The lock of a process that died (kill -9) is taken over too.
    let tree = s.snapshot();
    let out = s.molt_fp(Some("engine::after_sync=return"), &["exec", "failing.toml"]);
    assert!(aborted(&out), "{}", text(&out));
    let out = s.molt(&["recover"]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    assert_tree(&s.snapshot(), &tree, "recovered after a dead holder");
}

#[test]
fn bad_plan_files_are_refused_before_anything_is_written() {
    let s = Sandbox::new();
    let tree = s.snapshot();
    let bad = [
        ("escape.toml", "[[step]]\nop = \"write_file\"\npath = \"../outside\"\ncontents = \"x\"\n", "`..`"),
        ("absolute.toml", "[[step]]\nop = \"write_file\"\npath = \"/etc/passwd\"\ncontents = \"x\"\n", "absolute"),
        ("journal.toml", "[[step]]\nop = \"remove_path\"\npath = \"journal\"\n", "molt's own state"),
        ("unknown.toml", "[[step]]\nop = \"format_disk\"\n", "unknown variant"),
        ("syntax.toml", "[[step]\nop = ", "plan file"),
        ("order.toml", "[[step]]\nop = \"remove_path\"\npath = \"incoming\"\n[[step]]\nop = \"write_file\"\npath = \"a\"\ncontents = \"b\"\n", "forward-only"),
        ("empty.toml", "step = []\n", "at least one step"),
    ];
    for (name, body, says) in bad {
        std::fs::write(s.root.join(name), body).unwrap();
        let out = s.molt(&["exec", name]);
        assert_eq!(out.status.code(), Some(1), "{name}: {}", text(&out));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(says),
            "{name}: {}",
            text(&out)
        );
        std::fs::remove_file(s.root.join(name)).unwrap();
    }
    let out = s.molt(&["exec", "missing.toml"]);
    assert_eq!(out.status.code(), Some(1));
    assert_tree(&s.snapshot(), &tree, "refused command");
    assert!(
        s.store().runs().unwrap().is_empty(),
        "a refused plan left a run"
    );
    let out = s.molt(&["journal", "show", "9"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no run 9"));
    let out = s.molt(&["frobnicate"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn nothing_to_resume_is_not_an_error() {
    let s = Sandbox::new();
    for verb in ["resume", "rollback", "recover"] {
        let out = s.molt(&[verb, "--json"]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["action"], "none");
    }
}

#[test]
fn demo_runs_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/molt-example-cache");
    let out = Command::new(MOLT)
        .args(["demo", "--dir"])
        .arg(dir.path().join("demo"))
        .env_remove("MOLT_FAILPOINTS")
        .env("MOLT_PRODUCT_CACHE", cache)
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&out.stdout).into_owned();
    let project = shown
        .split("project ")
        .nth(1)
        .and_then(|r| r.split(|c: char| !c.is_ascii_alphanumeric()).next())
        .unwrap_or_default()
        .to_string();
    let _guard = tests::ProjectGuard(project);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(shown.contains("killed by a signal"), "{shown}");
    assert!(shown.contains("signature verified"), "{shown}");
    assert!(shown.contains("patch package"), "{shown}");
    assert!(shown.contains("migrate schema to release 2.0.0"), "{shown}");
    assert!(shown.contains("serves version 2.0.0"), "{shown}");
    assert!(shown.contains("an order that must survive"), "{shown}");
    assert!(
        shown.contains("rolled back: step"),
        "the broken release rolls back: {shown}"
    );
    assert!(shown.contains("last healthcheck"), "{shown}");
    assert!(shown.matches("downtime:").count() >= 2, "{shown}");
    let inst = dir.path().join("demo/installation");
    assert_eq!(
        std::fs::read_link(inst.join("current")).unwrap(),
        Path::new("releases/2.0.0")
    );
}

/// A copy of an installation left by a molt that wrote journal format 1
/// (`fixtures/journals/make-v1.sh`).
fn v1_fixture(name: &str) -> (tempfile::TempDir, Sandbox) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures/journals/v1")
        .join(name);
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("inst");
    steps::fsutil::copy_tree(&src, &root, &mut |_| {}).unwrap();
    let holder = tempfile::tempdir().unwrap();
    (dir, Sandbox { _dir: holder, root })
}

fn assert_release_1(s: &Sandbox) {
    assert_eq!(
        std::fs::read_link(s.root.join("current")).unwrap(),
        Path::new("releases/1")
    );
    assert!(!s.root.join("releases/2").exists());
    assert!(!s.root.join("releases/2.partial").exists());
    assert_eq!(
        std::fs::read_to_string(s.root.join("shared/.env")).unwrap(),
        "PASSWORD=kept\n"
    );
    assert_eq!(
        std::fs::read_to_string(s.root.join("shared/data/db.bin")).unwrap(),
        "data that must never change\n"
    );
}

#[test]
fn v1_journal_crashed_before_switch_is_rolled_back_by_recover() {
    let (_keep, s) = v1_fixture("crashed-before-switch");
    assert_eq!(
        s.status()["latest"]["recover_would"]["decision"],
        "rollback"
    );
    let out = s.molt(&["recover"]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    assert_release_1(&s);
    assert_eq!(s.status()["latest"]["state"], "rolled_back");
}

#[test]
fn v1_journal_crashed_mid_rollback_finishes_its_rollback() {
    let (_keep, s) = v1_fixture("crashed-mid-rollback");
    let out = s.molt(&["resume"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is rolling back"));
    let out = s.molt(&["rollback"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_release_1(&s);
    assert!(!s.root.join("cache/runs/1").exists(), "stash left behind");
}

#[test]
fn v1_journal_of_finished_runs_reads_back() {
    let (_keep, s) = v1_fixture("committed");
    let out = s.molt(&["journal", "list", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let states: Vec<&str> = v["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["rolled_back", "committed"]);
    let out = s.molt(&["journal", "show", "1"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("has sha256"),
        "{}",
        text(&out)
    );
    let out = s.molt(&["recover"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        std::fs::read_link(s.root.join("current")).unwrap(),
        Path::new("releases/2")
    );
}

/// Every file of the journal of an unfinished run damaged in turn (truncated, bytes flipped,
/// emptied), at a crash before the switch and one after it: `molt recover` salvages what is
/// readable and ends exactly old or exactly new, the damaged journal kept aside.
#[test]
fn a_damaged_journal_of_an_unfinished_run_is_salvaged_and_recovered() {
    let before = Sandbox::new().snapshot();
    let after = after_good();
    type Damage = fn(&mut Vec<u8>);
    let damages: [(&str, Damage); 4] = [
        ("truncated to half", |b| b.truncate(b.len() / 2)),
        ("emptied", |b| b.clear()),
        ("flipped at the start", |b| {
            for x in b.iter_mut().take(32) {
                *x ^= 0x5a;
            }
        }),
        ("flipped in the middle", |b| {
            let mid = b.len() / 2;
            for x in b.iter_mut().skip(mid).take(32) {
                *x ^= 0x5a;
            }
        }),
    ];
    let mut cases = 0;
    let mut salvaged = 0;
    let mut ends = std::collections::BTreeMap::<&str, usize>::new();
    for crash in [
        "steps::switch_link::stashed=return",
        "engine::after_apply=4*off->return",
    ] {
        let files: Vec<String> = {
            let s = Sandbox::new();
            assert!(aborted(&s.molt_fp(Some(crash), &["exec", "good.toml"])));
            std::fs::read_dir(s.root.join("journal"))
                .unwrap()
                .flatten()
                .filter(|e| e.path().is_file())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        };
        assert!(files.iter().any(|f| f == "records.log"), "{files:?}");
        for file in &files {
            for (what, damage) in &damages {
                let case = format!("{crash}: {file} {what}");
                let s = Sandbox::new();
                assert!(aborted(&s.molt_fp(Some(crash), &["exec", "good.toml"])));
                let p = s.root.join("journal").join(file);
                let mut bytes = std::fs::read(&p).unwrap();
                damage(&mut bytes);
                std::fs::write(&p, &bytes).unwrap();
                cases += 1;
                let out = s.molt(&["recover"]);
                assert!(
                    matches!(out.status.code(), Some(0 | 4)),
                    "{case}: {}",
                    text(&out)
                );
                if text(&out).contains("salvaged") {
                    salvaged += 1;
                }
                let tree = s.snapshot();
                let end = if tree == before {
                    "old"
                } else {
                    assert_tree(&tree, &after, &format!("{case}: neither old nor new"));
                    "new"
                };
                *ends.entry(end).or_default() += 1;
                assert!(
                    text(&s.molt(&["recover"])).contains("nothing to do"),
                    "{case}"
                );
            }
        }
    }
    println!("{cases} damaged journals: {salvaged} salvaged, ended {ends:?}");
    assert!(cases >= 24, "{cases}");
}

/// `molt schedule show` at fixed instants: inside the window, too close to its end, outside;
/// bad windows and zones are refused naming them, and nothing is written.
#[test]
fn schedule_show_answers_for_a_fixed_clock_and_refuses_bad_windows() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let toml = |window: &str, tz: &str| {
        std::fs::write(
            root.join("molt.toml"),
            format!("[schedule]\nupgrade_window = \"{window}\"\ntimezone = \"{tz}\"\n"),
        )
        .unwrap();
    };
    toml("Mon-Fri 02:00-04:00", "Europe/Berlin");
    let show = |at: &str| {
        let out = common::molt_in(root, None, &["schedule", "show", "--at", at]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    // Tuesday 02:30 in Berlin (01:30 UTC): no downtime measured, 10 minutes assumed.
    let s = show("2026-11-24T01:30:00Z");
    assert!(
        s.contains("start: the window closes Tue 2026-11-24 04:00 CET"),
        "{s}"
    );
    assert!(s.contains("no downtime measured yet"), "{s}");
    let s = show("2026-11-24T02:55:00Z");
    assert!(s.contains("do not start: 300s left"), "{s}");
    let s = show("2026-11-28T09:00:00Z");
    assert!(
        s.contains("wait: the next window opens Mon 2026-11-30 02:00 CET"),
        "{s}"
    );
    let out = common::molt_in(
        root,
        None,
        &["--json", "schedule", "show", "--at", "2026-11-28T09:00:00Z"],
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["decision"], "wait", "{v}");
    assert_eq!(v["need_secs"], 600, "{v}");

    for (window, tz, says) in [
        (
            "Mon 02:00-04:00",
            "Mars/Olympus",
            "unknown time zone `Mars/Olympus`",
        ),
        ("Mon 02:00-02:00", "UTC", "it is empty"),
        ("Someday 02:00-03:00", "UTC", "`Someday` is not a day"),
    ] {
        toml(window, tz);
        let out = common::molt_in(root, None, &["schedule", "show"]);
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        assert!(text(&out).contains(says), "{}", text(&out));
        let out = common::molt_in(root, None, &["status"]);
        assert_eq!(
            out.status.code(),
            Some(1),
            "a bad window is refused everywhere"
        );
    }
    let names: Vec<_> = std::fs::read_dir(root)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["molt.toml"], "a refused command wrote something");
}

/// `molt schedule install` writes units that systemd's own checker accepts (boot-time
/// recovery after Docker, the upgrade timer, the backup timer), never over a file molt did
/// not write; `remove` takes away exactly what it wrote; a bad calendar writes nothing.
#[test]
fn schedule_units_pass_systemd_analyze_verify_and_remove_only_molts_files() {
    let analyze = std::process::Command::new("systemd-analyze")
        .arg("--version")
        .output();
    assert!(
        analyze.is_ok_and(|o| o.status.success()),
        "systemd-analyze is missing: scripts/setup.sh installs systemd"
    );
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("shop");
    let units = dir.path().join("units");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::create_dir_all(&units).unwrap();
    std::fs::write(
        root.join("molt.toml"),
        "[schedule]\nupgrade_window = \"Mon-Fri 02:00-04:00\"\ntimezone = \"Europe/Berlin\"\nbackup = \"Sun 03:00\"\n",
    )
    .unwrap();
    let unit_dir = units.to_str().unwrap();
    let schedule =
        |verb: &str| common::molt_in(&root, None, &["schedule", verb, "--unit-dir", unit_dir]);
    let out = schedule("install");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let mut names: Vec<String> = std::fs::read_dir(&units)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "molt-shop-backup.service",
            "molt-shop-backup.timer",
            "molt-shop-recover.service",
            "molt-shop-upgrade.service",
            "molt-shop-upgrade.timer"
        ]
    );
    let verify = std::process::Command::new("systemd-analyze")
        .arg("verify")
        .args(names.iter().map(|n| units.join(n)))
        .output()
        .unwrap();
    assert!(
        verify.status.success(),
        "systemd-analyze verify: {}",
        text(&verify)
    );
    let recover = std::fs::read_to_string(units.join("molt-shop-recover.service")).unwrap();
    assert!(recover.contains("After=docker.service"), "{recover}");
    assert!(
        recover.contains(&format!(
            "--root \"{}\" recover",
            root.canonicalize().unwrap().display()
        )),
        "{recover}"
    );
    let timer = std::fs::read_to_string(units.join("molt-shop-backup.timer")).unwrap();
    assert!(timer.contains("OnCalendar=Sun 03:00\n"), "{timer}");
    // the checker does catch a broken unit (so its approval above means something)
    std::fs::write(
        dir.path().join("broken.service"),
        "[Service]\nExecStart=not-absolute\n",
    )
    .unwrap();
    let bad = std::process::Command::new("systemd-analyze")
        .arg("verify")
        .arg(dir.path().join("broken.service"))
        .output()
        .unwrap();
    assert!(!bad.status.success());

    // install again: molt's own files are replaced; a file molt did not write is not
    let out = schedule("install");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    std::fs::write(
        units.join("molt-shop-upgrade.timer"),
        "[Timer]\n# the admin's own\n",
    )
    .unwrap();
    let out = schedule("install");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("molt did not write it"),
        "{}",
        text(&out)
    );
    let out = schedule("remove");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let left: Vec<String> = std::fs::read_dir(&units)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        left,
        ["molt-shop-upgrade.timer"],
        "only the admin's file is left"
    );
    std::fs::remove_file(units.join("molt-shop-upgrade.timer")).unwrap();

    // a calendar systemd does not understand, a control character: nothing written
    for (cal, says) in [
        ("Sunday at three", "not a systemd calendar expression"),
        ("daily\\nExecStartPre=/bin/sh", "[schedule] backup"),
    ] {
        std::fs::write(
            root.join("molt.toml"),
            format!("[schedule]\nbackup = \"{cal}\"\n"),
        )
        .unwrap();
        let out = schedule("install");
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        assert!(text(&out).contains(says), "{}", text(&out));
        assert_eq!(std::fs::read_dir(&units).unwrap().count(), 0, "{cal}");
    }
}

/// Notifications leave no secret on the wire (the `.env`'s secret-named values and the
/// database password are replaced, even inside log lines), retry with back-off against a
/// server that answers 503, log every attempt, and bad channels are refused when molt.toml
/// is read.
#[tokio::test]
async fn notifications_redact_secrets_retry_and_refuse_bad_channels() {
    use tests::http::{Fault, Server};
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("shared")).unwrap();
    std::fs::write(
        root.join("shared/.env"),
        "MYSQL_PASSWORD=s3cr3t-pw-123\nAPI_TOKEN=tok-abcdef\nGREETING=hello\n",
    )
    .unwrap();
    let server = Server::start();
    server.put("/hook", Vec::new(), Fault::None);
    server.put("/down", Vec::new(), Fault::Status(503));
    let toml = |path: &str| {
        std::fs::write(
            root.join("molt.toml"),
            format!(
                "database_url = \"mysql://app:dbpass-xyz@127.0.0.1:1/app\"\n[notify]\nwebhook = \"{}\"\nretries = 2\nbackoff_ms = 10\n",
                server.url(path)
            ),
        )
        .unwrap();
        steps::Installation::open(root).unwrap()
    };
    let inst = toml("/hook");
    let payload = steps::notify::Payload::new(
        &inst,
        7,
        "upgrade",
        "rolled_back",
        Some("1.0.0".into()),
        Some("2.0.0".into()),
        Some(1234),
        Some(
            "app logged: password s3cr3t-pw-123, token tok-abcdef, url mysql://app:dbpass-xyz@db"
                .into(),
        ),
    );
    let sent = steps::notify::send(&inst, &payload).await;
    assert_eq!(sent.len(), 1);
    assert!(sent[0].1, "{sent:?}");
    let body = String::from_utf8(server.log().last().unwrap().body.clone()).unwrap();
    for secret in ["s3cr3t-pw-123", "tok-abcdef", "dbpass-xyz"] {
        assert!(!body.contains(secret), "{secret} was sent: {body}");
    }
    assert!(
        body.contains("password [redacted], token [redacted]"),
        "{body}"
    );
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["outcome"], "rolled_back");
    assert_eq!(v["downtime_ms"], 1234);

    // a server that answers 503: three attempts, each in notify.log, not delivered
    std::fs::remove_file(root.join("notify.log")).unwrap();
    let inst = toml("/down");
    let sent = steps::notify::send(&inst, &payload).await;
    assert!(!sent[0].1);
    let log = std::fs::read_to_string(root.join("notify.log")).unwrap();
    assert_eq!(log.lines().count(), 3, "{log}");
    assert!(log.contains("503"), "{log}");
    let downs = server.log().iter().filter(|l| l.path == "/down").count();
    assert_eq!(downs, 3);

    // bad channels: refused by every command, naming the key
    for (notify, says) in [
        (
            "webhook = \"ftp://hooks.example.com/x\"",
            "only http:// and https://",
        ),
        ("webhook = \"not a url\"", "is not a URL"),
        ("command = [\"notify-send\"]", "absolute path"),
        ("command = []", "[notify] command is empty"),
        ("timeout_secs = 0", "at least 1"),
    ] {
        std::fs::write(root.join("molt.toml"), format!("[notify]\n{notify}\n")).unwrap();
        let out = common::molt_in(root, None, &["status"]);
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        assert!(text(&out).contains(says), "{notify}: {}", text(&out));
    }
}

/// A directory shaped like the seed system's installation: compose file, `.env`, a config
/// file, data (with a nested tree and a relative link inside), uploads and logs.
fn seed_dir(parent: &Path) -> PathBuf {
    let root = parent.join("shop");
    let w = |rel: &str, bytes: &[u8]| {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, bytes).unwrap();
    };
    w(
        "docker-compose.yml",
        b"services:\n  web:\n    image: shop:1\n    volumes: [\"./data:/data\", \"./uploads:/uploads\"]\n",
    );
    w(".env", b"MYSQL_PASSWORD=operator-secret\nAPP_PORT=8080\n");
    w("nginx.conf", b"server { listen 80; }\n");
    w("data/mysql/ibdata1", &tests::semi_random(1, 300_000));
    w(
        "data/mysql/shop/orders.ibd",
        &tests::semi_random(2, 100_000),
    );
    std::os::unix::fs::symlink("mysql/ibdata1", root.join("data/current-ibdata")).unwrap();
    w("uploads/2026/photo.jpg", &tests::semi_random(3, 50_000));
    w("logs/app.log", b"started\n");
    std::fs::create_dir_all(root.join("logs/empty")).unwrap();
    std::fs::set_permissions(
        root.join("data/mysql"),
        std::fs::Permissions::from_mode(0o750),
    )
    .unwrap();
    root
}

fn inode(p: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::symlink_metadata(p).unwrap().ino()
}

/// `molt init --adopt` moves a seed-shaped directory into molt's layout without copying a
/// byte: every file is the same inode with the same bytes, modes and links, each old path
/// leads to the same place, and the result is an installation `molt status` reads. Killed
/// at every failpoint hit, recovery ends in the original directory or the adopted layout.
#[test]
fn adoption_moves_every_byte_and_recovers_from_a_crash_anywhere() {
    let dir = tempfile::tempdir().unwrap();
    let root = seed_dir(dir.path());
    let before = tree_of(&root);
    let ino = inode(&root.join("data/mysql/ibdata1"));
    let out = common::molt_in(&root, None, &["init", "--adopt", "--version", "1.4.2"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    // every data path: same bytes, same inode, under shared/, reachable by its old name
    for top in ["data", "uploads", "logs", ".env"] {
        let old: Tree = before
            .iter()
            .filter_map(|(k, v)| {
                let rest = k.strip_prefix(top)?;
                (rest.is_empty() || rest.starts_with('/'))
                    .then(|| (format!("shared/{top}{rest}"), v.clone()))
            })
            .collect();
        let mut now = Tree::new();
        for k in old.keys() {
            let p = root.join(k);
            let m = std::fs::symlink_metadata(&p).unwrap();
            now.insert(
                k.clone(),
                if m.file_type().is_symlink() {
                    common::Node::Link(std::fs::read_link(&p).unwrap())
                } else if m.is_dir() {
                    common::Node::Dir(m.permissions().mode() & 0o7777)
                } else {
                    common::Node::File(m.permissions().mode() & 0o7777, std::fs::read(&p).unwrap())
                },
            );
        }
        assert_tree(&now, &old, &format!("{top} moved"));
        assert_eq!(
            std::fs::read_link(root.join(top)).unwrap(),
            Path::new("shared").join(top)
        );
    }
    assert_eq!(
        inode(&root.join("shared/data/mysql/ibdata1")),
        ino,
        "moved, not copied"
    );
    assert_eq!(
        std::fs::read(root.join("data/current-ibdata")).unwrap(),
        tests::semi_random(1, 300_000),
        "the relative link inside data still leads to its file"
    );
    for f in ["docker-compose.yml", "nginx.conf"] {
        assert_eq!(
            std::fs::read(root.join("releases/1.4.2").join(f)).unwrap(),
            std::fs::read(root.join(f)).unwrap(),
            "{f} through the link"
        );
        assert_eq!(
            std::fs::read_link(root.join(f)).unwrap(),
            Path::new("current").join(f)
        );
    }
    let st = common::molt_in(&root, None, &["--json", "status"]);
    let v: serde_json::Value = serde_json::from_slice(&st.stdout).unwrap();
    assert_eq!(v["current"]["version"], "1.4.2", "{v}");
    let toml = std::fs::read_to_string(root.join("molt.toml")).unwrap();
    assert!(toml.contains("project = \"shop\""), "{toml}");
    let adopted = tree_of(&root);

    // bad input: nothing changed
    let out = common::molt_in(&root, None, &["init", "--adopt", "--version", "1.4.3"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("already has a molt.toml"),
        "{}",
        text(&out)
    );
    for (setup, args, says) in [
        (
            "no compose",
            vec!["init", "--adopt", "--version", "1.0.0"],
            "no docker-compose.yml",
        ),
        (
            "a link",
            vec!["init", "--adopt", "--version", "1.0.0"],
            "is a symbolic link",
        ),
        (
            "bad version",
            vec!["init", "--adopt", "--version", "one"],
            "--version",
        ),
        ("no version", vec!["init", "--adopt"], "needs --version"),
        (
            "no key",
            vec!["init", "--manifest-url", "http://x/m.json"],
            "--public-key",
        ),
    ] {
        let d = tempfile::tempdir().unwrap();
        let r = seed_dir(d.path());
        match setup {
            "no compose" => std::fs::remove_file(r.join("docker-compose.yml")).unwrap(),
            "a link" => std::os::unix::fs::symlink("/etc", r.join("etc")).unwrap(),
            _ => {}
        }
        let was = tree_of(&r);
        let out = common::molt_in(&r, None, &args);
        assert_eq!(out.status.code(), Some(1), "{setup}: {}", text(&out));
        assert!(text(&out).contains(says), "{setup}: {}", text(&out));
        let mut now = Tree::new();
        walk(&r, &r, &mut now);
        assert_tree(&now, &was, setup);
    }

    // the crash matrix
    let strip = |t: &Tree| -> Tree {
        t.iter()
            .filter(|(k, _)| {
                let top = k.split('/').next().unwrap();
                !["journal", "cache", "molt.lock"].contains(&top)
            })
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    };
    let adopted = strip(&adopted);
    let mut crashes = 0;
    for fp in FAILPOINTS {
        for n in 0.. {
            let d = tempfile::tempdir().unwrap();
            let r = seed_dir(d.path());
            let spec = format!("{fp}={n}*off->return");
            let out = common::molt_in(&r, Some(&spec), &["init", "--adopt", "--version", "1.4.2"]);
            if !aborted(&out) {
                assert_eq!(out.status.code(), Some(0), "{spec}: {}", text(&out));
                break;
            }
            crashes += 1;
            let rec = common::molt_in(&r, None, &["recover"]);
            assert!(
                matches!(rec.status.code(), Some(0 | 4)),
                "{spec}: {}",
                text(&rec)
            );
            let now = strip(&tree_of(&r));
            let st = common::molt_in(&r, None, &["--json", "status"]);
            let state = serde_json::from_slice::<serde_json::Value>(&st.stdout)
                .map(|v| v["latest"]["state"].as_str().unwrap_or("none").to_string())
                .unwrap_or_default();
            match state.as_str() {
                "committed" => assert_tree(&now, &adopted, &format!("{spec}: committed")),
                _ => assert_tree(&now, &before, &format!("{spec}: {state}")),
            }
        }
    }
    println!(
        "{crashes} crashes during adoption, each recovered to the original or the adopted layout"
    );
    assert!(crashes >= 40, "{crashes}");
}

/// The Debian package `scripts/package.sh` builds installs with apt like any other: the
/// static molt on PATH, its template units where systemd looks, the man page and the
/// completions; `apt-get remove --purge` takes every one of them away. (Run by
/// scripts/test.sh after scripts/package.sh; it installs into this machine.)
#[test]
#[ignore = "installs a package system-wide: scripts/test.sh runs it after scripts/package.sh"]
fn package_deb_installs_with_apt_and_is_removed_cleanly() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/package");
    let deb = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}: run scripts/package.sh first", dir.display()))
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .unwrap_or_else(|| panic!("no .deb in {}: run scripts/package.sh", dir.display()));
    let apt = |args: &[&str]| {
        let out = Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .output()
            .unwrap();
        assert!(out.status.success(), "apt-get {args:?}: {}", text(&out));
    };
    let files = [
        "/usr/bin/molt",
        "/lib/systemd/system/molt-recover@.service",
        "/lib/systemd/system/molt-upgrade@.service",
        "/lib/systemd/system/molt-upgrade@.timer",
        "/usr/share/man/man1/molt.1.gz",
        "/usr/share/bash-completion/completions/molt",
        "/usr/share/zsh/vendor-completions/_molt",
        "/usr/share/fish/vendor_completions.d/molt.fish",
    ];
    apt(&["install", "-y", "-qq", deb.to_str().unwrap()]);
    for f in files {
        assert!(Path::new(f).exists(), "{f} is not installed");
    }
    let v = Command::new("/usr/bin/molt")
        .arg("--version")
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&v.stdout).trim(),
        format!("molt {}", env!("CARGO_PKG_VERSION"))
    );
    // the template units, as an instance for an installation at /srv/shop, pass systemd's
    // checker
    let units = tempfile::tempdir().unwrap();
    for (from, to) in [
        ("molt-recover@.service", "molt-recover@srv-shop.service"),
        ("molt-upgrade@.service", "molt-upgrade@srv-shop.service"),
        ("molt-upgrade@.timer", "molt-upgrade@srv-shop.timer"),
    ] {
        std::fs::copy(
            Path::new("/lib/systemd/system").join(from),
            units.path().join(to),
        )
        .unwrap();
    }
    let verify = Command::new("systemd-analyze")
        .arg("verify")
        .args(
            std::fs::read_dir(units.path())
                .unwrap()
                .flatten()
                .map(|e| e.path()),
        )
        .output()
        .unwrap();
    assert!(verify.status.success(), "{}", text(&verify));
    let man = Command::new("sh")
        .arg("-c")
        .arg("zcat /usr/share/man/man1/molt.1.gz | head -c 4000")
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&man.stdout).contains(".TH molt"),
        "{}",
        text(&man)
    );
    apt(&["remove", "--purge", "-y", "-qq", "molt"]);
    for f in files {
        assert!(!Path::new(f).exists(), "{f} is left after removal");
    }
    let st = Command::new("dpkg").args(["-s", "molt"]).output().unwrap();
    assert!(!st.status.success(), "dpkg still knows molt");
}
