//! `molt backup`: round trips, crashes at every failpoint, corruption, disk full, retention.

mod common;

use common::*;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;

struct Inst {
    _dir: tempfile::TempDir,
    root: PathBuf,
}

impl Inst {
    /// An installation whose `shared/` has every kind of entry a backup must keep.
    fn new() -> Inst {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("inst");
        let shared = root.join("shared");
        let w = |rel: &str, bytes: &[u8]| {
            let p = shared.join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, bytes).unwrap();
        };
        w(".env", b"DB_PASSWORD=secret\n");
        w("data/db/ibdata1", &pattern(3 << 20, 7));
        w("data/db/small.frm", b"frm");
        w("uploads/名前 ✓ ünïcödé.txt", "héllo wörld".as_bytes());
        w("uploads/nested/deeper/file", b"deep");
        w("logs/app.log", b"line 1\n");
        std::fs::create_dir_all(shared.join("empty/dir")).unwrap();
        std::os::unix::fs::symlink("../.env", shared.join("data/env-link")).unwrap();
        std::os::unix::fs::symlink("does-not-exist", shared.join("uploads/dangling")).unwrap();
        let mode = |rel: &str, m: u32| {
            std::fs::set_permissions(shared.join(rel), std::fs::Permissions::from_mode(m)).unwrap()
        };
        mode(".env", 0o600);
        mode("data/db", 0o750);
        mode("logs/app.log", 0o640);
        mode("empty/dir", 0o700);
        Inst { _dir: dir, root }
    }

    fn molt(&self, args: &[&str]) -> Output {
        molt_in(&self.root, None, args)
    }

    fn shared(&self) -> Tree {
        tree_of(&self.root.join("shared"))
    }

    fn only_backup(&self) -> String {
        let v = self.list();
        let all = v["backups"].as_array().unwrap();
        assert_eq!(all.len(), 1, "{v}");
        all[0]["id"].as_str().unwrap().to_string()
    }

    fn list(&self) -> serde_json::Value {
        let out = self.molt(&["backup", "list", "--json"]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        serde_json::from_slice(&out.stdout).unwrap()
    }

    fn state(&self) -> String {
        let out = self.molt(&["status", "--json"]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v["latest"]["state"].as_str().unwrap_or("none").to_string()
    }
}

/// Deterministic bytes that compress somewhat, like real data.
fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed;
    (0..len)
        .map(|i| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            if i % 3 == 0 {
                (x >> 56) as u8
            } else {
                b'a' + (i % 7) as u8
            }
        })
        .collect()
}

/// Wreck the live tree in every way: edit, delete, add, change modes and links.
fn vandalize(root: &Path) {
    let s = root.join("shared");
    std::fs::write(s.join(".env"), b"DB_PASSWORD=changed\n").unwrap();
    std::fs::remove_dir_all(s.join("uploads")).unwrap();
    std::fs::write(s.join("data/db/new-table.ibd"), b"new").unwrap();
    std::fs::remove_file(s.join("data/env-link")).unwrap();
    std::os::unix::fs::symlink("elsewhere", s.join("data/env-link")).unwrap();
    std::fs::set_permissions(
        s.join("logs/app.log"),
        std::fs::Permissions::from_mode(0o777),
    )
    .unwrap();
    std::fs::remove_dir_all(s.join("empty")).unwrap();
}

fn round_trip(compress: bool) {
    let i = Inst::new();
    let before = i.shared();
    let mtimes = file_mtimes(&i.root.join("shared"));
    let mut args = vec!["backup", "create"];
    if !compress {
        args.push("--no-compress");
    }
    let out = i.molt(&args);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let id = i.only_backup();
    assert_eq!(i.list()["backups"][0]["archived"], compress);
    // The journal says which run made it.
    assert_eq!(i.list()["backups"][0]["run"], 1);
    assert_eq!(i.list()["backups"][0]["run_state"], "committed");
    assert_eq!(i.list()["backups"][0]["state"], "complete");
    let out = i.molt(&["backup", "verify", &id]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_tree(&i.shared(), &before, "backing up changed the live data");

    vandalize(&i.root);
    let out = i.molt(&["backup", "restore", &id]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_tree(
        &i.shared(),
        &before,
        "restored tree differs from the original",
    );
    assert_eq!(
        file_mtimes(&i.root.join("shared")),
        mtimes,
        "file times not restored"
    );
    assert!(
        !i.root.join(format!(".molt-restore-{id}")).exists(),
        "staging left"
    );
}

#[test]
fn round_trip_of_every_kind_of_entry_compressed() {
    round_trip(true);
}

#[test]
fn round_trip_of_every_kind_of_entry_as_a_directory() {
    round_trip(false);
}

/// Kill `molt backup create` at every hit of every failpoint, recover, and require: the live
/// data untouched, and either a complete backup that verifies (committed) or none at all.
#[test]
fn crash_during_backup_at_every_failpoint() {
    let points = [
        "engine::after_sync",
        "engine::after_apply",
        "steps::backup::precopy_entry",
        "steps::backup::sync_entry",
        "steps::backup::before_manifest",
        "steps::backup::archive_entry",
        "steps::backup::archived",
    ];
    let mut crashes = 0;
    for fp in points {
        for n in 0.. {
            for verb in ["resume", "rollback"] {
                let i = Inst::new();
                let before = i.shared();
                let spec = format!("{fp}={n}*off->return");
                let out = molt_in(&i.root, Some(&spec), &["backup", "create"]);
                if !aborted(&out) {
                    assert_eq!(out.status.code(), Some(0), "{spec}: {}", text(&out));
                    break;
                }
                crashes += 1;
                // Until recovery, an interrupted backup is never presented as good.
                for b in i.list()["backups"].as_array().unwrap() {
                    if b["state"] == "complete" {
                        let id = b["id"].as_str().unwrap();
                        let out = i.molt(&["backup", "verify", id]);
                        assert_eq!(
                            out.status.code(),
                            Some(0),
                            "{spec}: listed complete but {}",
                            text(&out)
                        );
                    }
                }
                let mut out = i.molt(&[verb]);
                // Once sealed, a backup is only ever finished: compressing is forward-only.
                let sealed = text(&out).contains("can only be resumed");
                if sealed {
                    assert_eq!(verb, "rollback", "{spec}: {}", text(&out));
                    out = i.molt(&["resume"]);
                }
                if fp.starts_with("steps::backup::archive") {
                    assert!(
                        verb == "resume" || sealed,
                        "{spec} {verb}: a sealed backup was rolled back: {}",
                        text(&out)
                    );
                }
                assert!(
                    matches!(out.status.code(), Some(0 | 4)),
                    "{spec} {verb}: {}",
                    text(&out)
                );
                assert_tree(
                    &i.shared(),
                    &before,
                    &format!("{spec} {verb}: live data changed"),
                );
                let backups = i.list();
                let backups = backups["backups"].as_array().unwrap();
                match i.state().as_str() {
                    "committed" => {
                        assert_eq!(backups.len(), 1);
                        let id = backups[0]["id"].as_str().unwrap();
                        let out = i.molt(&["backup", "verify", id]);
                        assert_eq!(out.status.code(), Some(0), "{spec}: {}", text(&out));
                    }
                    "rolled_back" | "none" => {
                        assert!(!sealed, "{spec} {verb}: a sealed backup was rolled back");
                        assert!(
                            backups.is_empty(),
                            "{spec} {verb}: a rolled-back backup is left: {backups:?}"
                        )
                    }
                    other => panic!("{spec}: {other}"),
                }
                if n > 40 {
                    break;
                }
            }
            if n > 40 {
                break;
            }
        }
    }
    assert!(crashes > 20, "only {crashes} crashes");
}

/// Kill `molt backup restore` at every failpoint: after recovery the live data is exactly the
/// old data (rolled back) or exactly the backup (committed), never a mix.
#[test]
fn crash_during_restore_at_every_failpoint() {
    let points = [
        "engine::after_sync",
        "steps::restore::stage_entry",
        "steps::restore::swapped",
        "engine::after_apply",
        "steps::undo::restored",
    ];
    let mut crashes = 0;
    for fp in points {
        'hits: for n in 0..60 {
            for verb in ["recover", "resume", "rollback"] {
                let i = Inst::new();
                let original = i.shared();
                let out = i.molt(&["backup", "create"]);
                assert_eq!(out.status.code(), Some(0), "{}", text(&out));
                let id = i.only_backup();
                vandalize(&i.root);
                let vandalized = i.shared();
                let spec = format!("{fp}={n}*off->return");
                let out = molt_in(&i.root, Some(&spec), &["backup", "restore", &id]);
                if !aborted(&out) {
                    assert_eq!(out.status.code(), Some(0), "{spec}: {}", text(&out));
                    break 'hits;
                }
                crashes += 1;
                let out = i.molt(&[verb]);
                if out.status.code() == Some(1) {
                    // rollback refused past the forward-only cleanup: the policy finishes it
                    assert!(
                        String::from_utf8_lossy(&out.stderr).contains("cannot be rolled back"),
                        "{}",
                        text(&out)
                    );
                    let out = i.molt(&["recover"]);
                    assert!(matches!(out.status.code(), Some(0 | 4)), "{}", text(&out));
                } else {
                    assert!(
                        matches!(out.status.code(), Some(0 | 4)),
                        "{spec} {verb}: {}",
                        text(&out)
                    );
                }
                match i.state().as_str() {
                    "committed" => assert_tree(
                        &i.shared(),
                        &original,
                        &format!("{spec} {verb}: restore committed"),
                    ),
                    "rolled_back" => assert_tree(
                        &i.shared(),
                        &vandalized,
                        &format!("{spec} {verb}: restore rolled back"),
                    ),
                    other => panic!("{spec}: {other}"),
                }
                assert!(
                    !i.root.join(format!(".molt-restore-{id}")).exists(),
                    "{spec}: staging left"
                );
            }
        }
    }
    assert!(crashes > 10, "only {crashes} crashes");
}

fn corrupt_one_byte(path: &Path, at: u64) {
    let mut bytes = std::fs::read(path).unwrap();
    let at = (at as usize).min(bytes.len() - 1);
    bytes[at] ^= 0x40;
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn a_corrupted_byte_is_found_and_restore_refuses_before_touching_anything() {
    for compress in [false, true] {
        let i = Inst::new();
        let mut args = vec!["backup", "create"];
        if !compress {
            args.push("--no-compress");
        }
        assert_eq!(i.molt(&args).status.code(), Some(0));
        let id = i.only_backup();
        let dir = i.root.join("backups").join(&id);
        if compress {
            corrupt_one_byte(&dir.join("data.tar.zst"), 200_000);
        } else {
            corrupt_one_byte(&dir.join("data/shared/data/db/ibdata1"), 1_000_000);
        }
        let out = i.molt(&["backup", "verify", &id]);
        assert_eq!(
            out.status.code(),
            Some(1),
            "compress={compress}: {}",
            text(&out)
        );
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("DAMAGED"),
            "{}",
            text(&out)
        );
        vandalize(&i.root);
        let live = i.shared();
        let out = i.molt(&["backup", "restore", &id]);
        assert_eq!(
            out.status.code(),
            Some(4),
            "compress={compress}: {}",
            text(&out)
        );
        let msg = String::from_utf8_lossy(&out.stdout);
        assert!(
            msg.contains("nothing was restored")
                || msg.contains("damaged")
                || msg.contains("Unknown frame")
                || msg.contains("sha256"),
            "{msg}"
        );
        assert_tree(
            &i.shared(),
            &live,
            "a refused restore changed the live data",
        );
        assert!(!i.root.join(format!(".molt-restore-{id}")).exists());
    }
}

#[test]
fn an_incomplete_backup_is_listed_as_such_and_never_restored() {
    let i = Inst::new();
    let out = molt_in(
        &i.root,
        Some("steps::backup::before_manifest=return"),
        &["backup", "create"],
    );
    assert!(aborted(&out), "{}", text(&out));
    let v = i.list();
    assert_eq!(v["backups"][0]["state"], "incomplete", "{v}");
    let id = v["backups"][0]["id"].as_str().unwrap().to_string();
    let out = i.molt(&["backup", "restore", &id]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("incomplete"));
    let out = i.molt(&["backup", "verify", &id]);
    assert_eq!(out.status.code(), Some(1));
    // The unfinished run protects its backup from pruning.
    let out = i.molt(&["backup", "prune", "--keep-last", "0", "--keep-days", "0"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("nothing to prune"),
        "{}",
        text(&out)
    );
}

#[test]
fn disk_full_during_backup_fails_cleanly_and_leaves_live_data_alone() {
    let i = Inst::new();
    let before = i.shared();
    let backups = i.root.join("backups");
    std::fs::create_dir_all(&backups).unwrap();
    // A 1 MiB filesystem for 3 MiB of data: the copy hits ENOSPC for real.
    let _disk = Tmpfs::mount(&backups, "1m");
    let out = i.molt(&["backup", "create"]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    let msg = String::from_utf8_lossy(&out.stdout);
    assert!(msg.contains("No space left on device"), "{msg}");
    assert_tree(&i.shared(), &before, "live data changed");
    assert!(
        i.list()["backups"].as_array().unwrap().is_empty(),
        "partial backup left"
    );
    assert_eq!(
        std::fs::read_dir(&backups).unwrap().count(),
        0,
        "partial files left"
    );
}

#[test]
fn prune_keeps_the_newest_and_what_the_policy_says() {
    let i = Inst::new();
    for _ in 0..4 {
        let out = i.molt(&["backup", "create", "--no-compress"]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        std::thread::sleep(std::time::Duration::from_millis(1100)); // distinct ids
    }
    let ids: Vec<String> = i.list()["backups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 4);
    let out = i.molt(&[
        "backup",
        "prune",
        "--keep-last",
        "2",
        "--keep-days",
        "0",
        "--dry-run",
    ]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&ids[3]),
        "{}",
        text(&out)
    );
    assert_eq!(
        i.list()["backups"].as_array().unwrap().len(),
        4,
        "dry run deleted"
    );
    let out = i.molt(&["backup", "prune", "--keep-last", "2", "--keep-days", "0"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let left: Vec<String> = i.list()["backups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(left, ids[..2].to_vec());
    // Young backups are kept by days even beyond the count; the newest always.
    let out = i.molt(&["backup", "prune", "--keep-last", "0", "--keep-days", "30"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(i.list()["backups"].as_array().unwrap().len(), 2);
    let out = i.molt(&["backup", "prune", "--keep-last", "0", "--keep-days", "0"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(i.list()["backups"].as_array().unwrap().len(), 1);
}

#[test]
fn bad_backup_requests_are_refused() {
    let i = Inst::new();
    for (args, says) in [
        (&["backup", "restore", "../../etc"][..], "backup id"),
        (&["backup", "restore", "nope"], "no backup nope"),
        (&["backup", "verify", "nope"], "no backup nope"),
        (&["backup", "create", "--path", "../outside"], "`..`"),
    ] {
        let out = i.molt(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", text(&out));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(says),
            "{args:?}: {}",
            text(&out)
        );
    }
}

/// A way of damaging a file's bytes.
type Damage = Box<dyn Fn(&mut Vec<u8>)>;

/// Every file under `dir`, relative to it.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(
                files_under(&p)
                    .into_iter()
                    .map(|f| Path::new(&e.file_name()).join(f)),
            );
        } else {
            out.push(PathBuf::from(e.file_name()));
        }
    }
    out.sort();
    out
}

/// A journal damaged under an unfinished `backup create` (flipped bytes at several offsets,
/// then truncation, of each file in `journal/`): `status` always answers (exit 0 when the
/// damage did not reach a record, else 7 with what is on disk), nothing crashes, and whatever
/// `recover` then does ends with the live data untouched and no half backup presented as good.
#[test]
fn a_damaged_journal_never_strands_the_installation() {
    let base = Inst::new();
    let out = molt_in(
        &base.root,
        Some("steps::backup::precopy_entry=3*off->return"),
        &["backup", "create"],
    );
    assert!(aborted(&out), "{}", text(&out));
    let before = base.shared();
    let journal_files = files_under(&base.root.join("journal"));
    assert!(!journal_files.is_empty());
    let mut cases = 0;
    let mut answered = std::collections::BTreeMap::<i32, usize>::new();
    let mut recovered = std::collections::BTreeMap::<i32, usize>::new();
    let mut salvaged = 0;
    for file in &journal_files {
        let len = std::fs::metadata(base.root.join("journal").join(file))
            .unwrap()
            .len();
        let mut damages: Vec<(String, Damage)> = Vec::new();
        for frac in [0u64, 1, 2, 3] {
            let at = (len * frac / 4) as usize;
            damages.push((
                format!("flip at {at}"),
                Box::new(move |b: &mut Vec<u8>| {
                    for i in at..(at + 16).min(b.len()) {
                        b[i] ^= 0x5a;
                    }
                }),
            ));
        }
        damages.push((
            "truncated to half".into(),
            Box::new(|b: &mut Vec<u8>| b.truncate(b.len() / 2)),
        ));
        damages.push(("emptied".into(), Box::new(|b: &mut Vec<u8>| b.clear())));
        for (what, damage) in damages {
            let case = format!("{} {what}", file.display());
            let i = Inst::new();
            std::fs::remove_dir_all(&i.root).unwrap();
            steps::fsutil::copy_tree(&base.root, &i.root, &mut |_| {}).unwrap();
            let p = i.root.join("journal").join(file);
            let mut bytes = std::fs::read(&p).unwrap();
            damage(&mut bytes);
            std::fs::write(&p, &bytes).unwrap();
            cases += 1;
            let out = i.molt(&["status"]);
            let code = out.status.code().unwrap_or(-1);
            *answered.entry(code).or_default() += 1;
            assert!(
                matches!(code, 0 | 7),
                "{case}: status exited {code}: {}",
                text(&out)
            );
            assert!(
                text(&out).contains("installation"),
                "{case}: {}",
                text(&out)
            );
            if code == 7 {
                let v: serde_json::Value =
                    serde_json::from_slice(&i.molt(&["status", "--json"]).stdout).unwrap();
                assert!(
                    v["advice"].is_array() || v["latest"]["damage"].is_array(),
                    "{case}: {v}"
                );
            }
            // recover salvages what is readable (sled, or its mirror records.log) and then
            // finishes the run: the backup run is rolled back or completed, never stranded.
            let out = i.molt(&["recover"]);
            let rc = out.status.code().unwrap_or(-1);
            *recovered.entry(rc).or_default() += 1;
            assert!(
                matches!(rc, 0 | 4),
                "{case}: recover exited {rc}: {}",
                text(&out)
            );
            if text(&out).contains("salvaged") {
                salvaged += 1;
                assert!(
                    std::fs::read_dir(&i.root).unwrap().flatten().any(|e| e
                        .file_name()
                        .to_string_lossy()
                        .starts_with("journal.damaged-")),
                    "{case}: the damaged journal was not kept aside"
                );
            }
            let out = i.molt(&["status"]);
            assert_eq!(out.status.code(), Some(0), "{case}: {}", text(&out));
            let out = i.molt(&["recover"]);
            assert!(
                text(&out).contains("nothing to do"),
                "{case}: {}",
                text(&out)
            );
            assert_tree(&i.shared(), &before, &format!("{case}: live data changed"));
            // A backup listed as complete verifies; an incomplete one is never called good.
            let out = i.molt(&["backup", "list", "--json"]);
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
            for b in v["backups"].as_array().into_iter().flatten() {
                if b["state"] == "complete" {
                    let id = b["id"].as_str().unwrap();
                    let out = i.molt(&["backup", "verify", id]);
                    assert_eq!(out.status.code(), Some(0), "{case}: {}", text(&out));
                }
            }
        }
    }
    println!(
        "journal damage: {cases} cases, status exit codes {answered:?}, recover exit codes {recovered:?}, {salvaged} salvaged"
    );
    assert!(cases >= 12, "{cases}");
}
