//! Salvage of damaged journals: sled's files truncated, overwritten or unreadable, the mirror
//! damaged or gone; what is rebuilt reads back exactly, what cannot be is refused unchanged.

use engine::{Entry, PlanMeta, Record, RunId, StepClass, StepMeta, FORMAT};
use journal::{needs_salvage, salvage, Error, Store};
use std::path::{Path, PathBuf};

fn record(run: u64, seq: u64, entry: Entry) -> Record {
    Record {
        format: FORMAT,
        run: RunId(run),
        seq,
        at_ms: 1_700_000_000_000 + seq,
        entry,
    }
}

fn started(run: u64) -> Record {
    record(
        run,
        0,
        Entry::RunStarted {
            plan: PlanMeta {
                id: "test".into(),
                spec: serde_json::json!({"run": run, "pad": "x".repeat(300)}),
                steps: vec![StepMeta {
                    name: "only".into(),
                    class: StepClass::Reversible,
                }],
            },
        },
    )
}

/// Run 1 committed, run 2 unfinished (intent, done, next intent): the records written.
fn journal(dir: &Path) -> Vec<Record> {
    let mut all = vec![
        started(1),
        record(
            1,
            1,
            Entry::StepIntent {
                step: 0,
                attempt: 1,
            },
        ),
        record(
            1,
            2,
            Entry::StepDone {
                step: 0,
                receipt: None,
            },
        ),
        record(1, 3, Entry::RunCommitted),
        started(2),
    ];
    for i in 0..20u64 {
        all.push(record(
            2,
            all.len() as u64 - 4,
            if i % 2 == 0 {
                Entry::StepIntent {
                    step: 0,
                    attempt: i as u32 + 1,
                }
            } else {
                Entry::StepFailed {
                    step: 0,
                    error: format!("failure {i}"),
                }
            },
        ));
    }
    let mut s = Store::open(dir).unwrap();
    for r in &all {
        s.append(r).unwrap();
    }
    all
}

fn read_all(dir: &Path) -> Vec<Record> {
    let s = Store::open(dir).unwrap();
    let mut out = Vec::new();
    for run in s.runs().unwrap() {
        let log = s.read_run(run).unwrap();
        assert!(log.damage.is_empty(), "{:?}", log.damage);
        out.extend(log.records);
    }
    out
}

fn aside(root: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(root)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().contains("journal.damaged-"))
        .collect()
}

#[test]
fn damaged_sled_files_are_rebuilt_from_the_mirror_or_carved() {
    type Damage = fn(&Path);
    let cases: Vec<(&str, Damage)> = vec![
        ("db truncated to a third", |j| {
            let f = j.join("db");
            let len = std::fs::metadata(&f).unwrap().len();
            std::fs::OpenOptions::new()
                .write(true)
                .open(&f)
                .unwrap()
                .set_len(len / 3)
                .unwrap();
        }),
        ("db emptied", |j| {
            std::fs::write(j.join("db"), b"").unwrap();
        }),
        ("db overwritten at its start", |j| {
            let mut b = std::fs::read(j.join("db")).unwrap();
            for x in b.iter_mut().take(64) {
                *x ^= 0x5a;
            }
            std::fs::write(j.join("db"), b).unwrap();
        }),
        (
            "conf garbage and the mirror gone (carved from sled's log)",
            |j| {
                std::fs::write(j.join("conf"), b"\xff\xfe garbage").unwrap();
                std::fs::remove_file(j.join("records.log")).unwrap();
            },
        ),
    ];
    for (name, damage) in cases {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("journal");
        let written = journal(&dir);
        damage(&dir);
        assert!(needs_salvage(&dir), "{name}: damage not noticed");
        let s = salvage(&dir).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(s.kept, vec![(1, 4), (2, 21)], "{name}");
        eprintln!("{name}: {:?}", s.sources);
        if name.contains("carved") {
            assert_eq!(
                s.sources.get("carved"),
                Some(&25),
                "{name}: {:?}",
                s.sources
            );
        }
        assert_eq!(aside(root.path()), vec![s.kept_aside.clone()], "{name}");
        assert_eq!(read_all(&dir), written, "{name}");
        assert!(!needs_salvage(&dir), "{name}");
        // New runs continue after the salvaged ones.
        assert_eq!(Store::open(&dir).unwrap().next_run_id().unwrap(), RunId(3));
    }
}

#[test]
fn a_damaged_mirror_is_rewritten_from_a_whole_sled() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("journal");
    let written = journal(&dir);
    let m = dir.join("records.log");
    let mut b = std::fs::read(&m).unwrap();
    let mid = b.len() / 2;
    b[mid] ^= 1;
    b.truncate(b.len() - 10);
    std::fs::write(&m, &b).unwrap();
    assert!(!needs_salvage(&dir));
    assert_eq!(read_all(&dir), written);
    // The rewritten mirror alone can rebuild everything again.
    std::fs::write(dir.join("db"), b"").unwrap();
    salvage(&dir).unwrap();
    assert_eq!(read_all(&dir), written);
}

#[test]
fn an_unfinished_run_with_a_lost_record_is_refused_and_nothing_changes() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("journal");
    let written = journal(&dir);
    // Record 5 of run 2 is garbage in sled and absent from the mirror.
    {
        let mut s = Store::open(&dir).unwrap();
        s.insert_raw(RunId(2), 5, b"\x00garbage").unwrap();
    }
    let m = dir.join("records.log");
    let text = std::fs::read_to_string(&m).unwrap();
    let kept: String = text
        .lines()
        .filter(|l| !l.split(' ').skip(1).take(2).eq(["2", "5"]))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&m, kept).unwrap();
    let before = std::fs::read(dir.join("db")).unwrap();
    assert!(needs_salvage(&dir));
    let e = salvage(&dir).unwrap_err();
    assert!(matches!(e, Error::Unsalvageable { .. }), "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("run 2 is unfinished") && msg.contains("first: seq 5"),
        "{msg}"
    );
    assert!(aside(root.path()).is_empty());
    assert_eq!(std::fs::read(dir.join("db")).unwrap(), before);
    let s = Store::open(&dir).unwrap();
    assert_eq!(s.read_run(RunId(1)).unwrap().records, written[..4].to_vec());
    drop(s);
    // A finished run with a lost record is dropped instead; new ids stay above it.
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("journal");
    let written = journal(&dir);
    {
        let mut s = Store::open(&dir).unwrap();
        s.insert_raw(RunId(2), 21, b"{").unwrap();
        s.append(&record(2, 22, Entry::RunRolledBack)).unwrap();
    }
    let s = salvage(&dir).unwrap();
    assert_eq!(s.kept, vec![(1, 4)]);
    assert_eq!(s.dropped.len(), 1, "{:?}", s.dropped);
    assert_eq!(s.dropped[0].0, 2);
    assert_eq!(read_all(&dir), written[..4].to_vec());
    assert_eq!(Store::open(&dir).unwrap().next_run_id().unwrap(), RunId(3));
}

#[test]
fn a_damaged_last_record_of_an_unfinished_run_is_refused() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("journal");
    journal(&dir);
    // The run's next record exists but is unreadable everywhere: what it said is unknown.
    Store::open(&dir)
        .unwrap()
        .insert_raw(RunId(2), 21, b"{\"format\":1,")
        .unwrap();
    let e = salvage(&dir).unwrap_err().to_string();
    assert!(
        e.contains("run 2 is unfinished") && e.contains("first: seq 21"),
        "{e}"
    );
    assert!(aside(root.path()).is_empty());
}

#[test]
fn salvages_in_the_same_second_keep_every_damaged_journal() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("journal");
    let written = journal(&dir);
    for n in 1..=3 {
        std::fs::write(dir.join("db"), b"").unwrap();
        salvage(&dir).unwrap();
        assert_eq!(aside(root.path()).len(), n);
        assert_eq!(read_all(&dir), written);
    }
}
