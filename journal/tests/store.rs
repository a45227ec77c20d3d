//! The sled store against a model: random appends across runs, damaged values and restarts
//! (drop and reopen sled) must read back exactly what the model holds.

use engine::{Entry, PlanMeta, Record, RunId, StepClass, StepMeta, FORMAT};
use journal::{Damage, Holder, Lock, Store};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use std::collections::BTreeMap;

fn record(run: u64, seq: u64) -> Record {
    let entry = if seq == 0 {
        Entry::RunStarted {
            plan: PlanMeta {
                id: "test".into(),
                spec: serde_json::json!({"run": run}),
                steps: vec![StepMeta {
                    name: "only".into(),
                    class: StepClass::Reversible,
                }],
            },
        }
    } else {
        Entry::StepFailed {
            step: 0,
            error: format!("failure {seq} of run {run} with unicode ✓"),
        }
    };
    Record {
        format: FORMAT,
        run: RunId(run),
        seq,
        at_ms: 1_700_000_000_000 + seq,
        entry,
    }
}

#[derive(Clone, Debug)]
enum Op {
    Append(u64),
    Garbage(u64),
    Restart,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (1u64..4).prop_map(Op::Append),
        1 => (1u64..4).prop_map(Op::Garbage),
        2 => Just(Op::Restart),
    ]
}

#[derive(Clone, Debug, PartialEq)]
enum Slot {
    Good(Record),
    Bad,
}

#[test]
fn store_matches_model_across_restarts() {
    let mut runner = TestRunner::new(Config {
        cases: 64,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&prop::collection::vec(op(), 1..40), |ops| {
            let dir = tempfile::tempdir().unwrap();
            let mut store = Some(Store::open(dir.path()).unwrap());
            let mut model: BTreeMap<u64, Vec<Slot>> = BTreeMap::new();
            for op in ops {
                match op {
                    Op::Append(run) => {
                        let slots = model.entry(run).or_default();
                        let r = record(run, slots.len() as u64);
                        store.as_mut().unwrap().append(&r).unwrap();
                        slots.push(Slot::Good(r));
                    }
                    Op::Garbage(run) => {
                        let slots = model.entry(run).or_default();
                        store
                            .as_mut()
                            .unwrap()
                            .insert_raw(RunId(run), slots.len() as u64, b"{\"format\":1,\"ru")
                            .unwrap();
                        slots.push(Slot::Bad);
                    }
                    Op::Restart => {
                        drop(store.take());
                        store = Some(Store::open(dir.path()).unwrap());
                    }
                }
                let s = store.as_ref().unwrap();
                let runs: Vec<u64> = s.runs().unwrap().into_iter().map(|r| r.0).collect();
                prop_assert_eq!(&runs, &model.keys().copied().collect::<Vec<_>>());
                for (run, slots) in &model {
                    let log = s.read_run(RunId(*run)).unwrap();
                    let first_bad = slots
                        .iter()
                        .position(|x| *x == Slot::Bad)
                        .unwrap_or(slots.len());
                    let good: Vec<Record> = slots[..first_bad]
                        .iter()
                        .filter_map(|x| match x {
                            Slot::Good(r) => Some(r.clone()),
                            Slot::Bad => None,
                        })
                        .collect();
                    prop_assert_eq!(&log.records, &good);
                    let bad = slots.iter().filter(|x| **x == Slot::Bad).count();
                    prop_assert_eq!(log.damage.len(), bad);
                    prop_assert_eq!(
                        log.records.len() + log.damage.len() + log.after_damage.len(),
                        slots.len()
                    );
                }
                let next = model.keys().last().map_or(1, |r| r + 1);
                prop_assert_eq!(s.next_run_id().unwrap(), RunId(next));
            }
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn damaged_and_newer_records_are_reported_not_decoded() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Store::open(dir.path()).unwrap();
    s.append(&record(1, 0)).unwrap();
    s.insert_raw(RunId(1), 1, b"\x00\x01garbage").unwrap();
    let mut newer = serde_json::to_value(record(1, 2)).unwrap();
    newer["format"] = serde_json::json!(FORMAT + 1);
    newer["entry"] = serde_json::json!({"type": "something_new"});
    s.insert_raw(RunId(1), 2, newer.to_string().as_bytes())
        .unwrap();
    let misplaced = serde_json::to_vec(&record(1, 9)).unwrap();
    s.insert_raw(RunId(1), 3, &misplaced).unwrap();
    s.append(&record(1, 4)).unwrap();
    let log = s.read_run(RunId(1)).unwrap();
    assert_eq!(log.records, vec![record(1, 0)]);
    assert_eq!(log.after_damage, vec![record(1, 4)]);
    assert!(matches!(log.damage[0], Damage::Garbage { seq: 1, .. }));
    assert_eq!(
        log.damage[1],
        Damage::NewerFormat {
            seq: 2,
            format: FORMAT + 1
        }
    );
    assert!(matches!(log.damage[2], Damage::Misplaced { seq: 3, .. }));
    assert!(log.damage[1]
        .to_string()
        .contains("this molt reads format 1"));
}

#[test]
fn a_journal_from_a_newer_molt_is_refused_on_open() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = sled::open(dir.path()).unwrap();
        db.open_tree("meta")
            .unwrap()
            .insert("format", &(FORMAT + 1).to_be_bytes())
            .unwrap();
        db.flush().unwrap();
    }
    match Store::open(dir.path()) {
        Err(journal::Error::NewerFormat { found, .. }) => assert_eq!(found, FORMAT + 1),
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("opened a newer journal"),
    }
}

#[test]
fn garbage_files_are_an_error_not_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("conf"), b"this is not sled's config\n").unwrap();
    std::fs::write(dir.path().join("db"), vec![0xAB; 4096]).unwrap();
    match Store::open(dir.path()) {
        Err(e @ journal::Error::Open { .. }) => {
            assert!(e.to_string().contains("cannot open the journal"), "{e}")
        }
        Err(e) => panic!("unexpected error kind: {e}"),
        Ok(_) => panic!("garbage opened as a journal"),
    }
}

#[test]
fn a_second_opener_is_told_the_journal_is_busy() {
    let dir = tempfile::tempdir().unwrap();
    let _first = Store::open(dir.path()).unwrap();
    match Store::open(dir.path()) {
        Err(journal::Error::Busy { .. }) => {}
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("two openers"),
    }
}

#[test]
fn lock_is_exclusive_names_its_holder_and_survives_garbage() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("molt.lock");
    std::fs::write(&path, b"\xff\xfe garbage from an older tool").unwrap();
    assert_eq!(
        Lock::holder(&path).unwrap(),
        None,
        "garbage is not a holder"
    );
    let me = Holder::this_process("molt test");
    let lock = Lock::acquire(&path, &me).unwrap().expect("free lock");
    // flock locks belong to the open file description: a second acquire in the same process
    // conflicts just as another process would.
    let other = Holder::this_process("molt other");
    let held = Lock::acquire(&path, &other)
        .unwrap()
        .expect_err("lock is held");
    assert_eq!(held.holder.as_ref(), Some(&me));
    assert!(held.to_string().contains("molt test"), "{held}");
    assert_eq!(Lock::holder(&path).unwrap().unwrap().holder, Some(me));
    drop(lock);
    assert_eq!(Lock::holder(&path).unwrap(), None);
    let again = Lock::acquire(&path, &other)
        .unwrap()
        .expect("released lock");
    drop(again);
}

#[test]
fn the_holder_of_a_lock_is_read_back_whole_and_its_absence_is_not_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("molt.lock");
    assert!(Lock::holder(&path).unwrap().is_none());
    // A path that cannot be opened for another reason is an error, not "nobody".
    let file = dir.path().join("plain");
    std::fs::write(&file, b"x").unwrap();
    assert!(Lock::holder(&file.join("molt.lock")).is_err());
    // A long command line (a whole `molt upgrade ...`) is read back whole.
    let long = format!("molt upgrade {}", "--flag ".repeat(400));
    let _lock = Lock::acquire(&path, &Holder::this_process(long.clone()))
        .unwrap()
        .unwrap();
    let held = Lock::holder(&path).unwrap().expect("held");
    assert_eq!(held.holder.expect("readable").command, long);
}

#[test]
fn records_written_through_the_engine_trait_are_stored_and_mirrored() {
    use engine::Journal;
    let dir = tempfile::tempdir().unwrap();
    let mut s = Store::open(dir.path()).unwrap();
    for seq in 0..3 {
        Journal::append(&mut s, &record(1, seq)).unwrap();
    }
    // Appended, not yet in the mirror: it is written at the sync.
    let mirror = || std::fs::read_to_string(dir.path().join("records.log")).unwrap();
    assert_eq!(mirror().lines().count(), 0);
    Journal::sync(&mut s).unwrap();
    assert_eq!(mirror().lines().count(), 3);
    let log = s.read_run(RunId(1)).unwrap();
    assert_eq!(
        log.records,
        (0..3).map(|q| record(1, q)).collect::<Vec<_>>()
    );
}

#[test]
fn a_mirror_missing_its_last_lines_is_completed_on_open() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut s = Store::open(dir.path()).unwrap();
        for seq in 0..6 {
            s.append(&record(1, seq)).unwrap();
        }
    }
    // Cut cleanly at a line boundary: no damaged line, three records missing.
    let m = dir.path().join("records.log");
    let text = std::fs::read_to_string(&m).unwrap();
    let kept: String = text.lines().take(3).map(|l| format!("{l}\n")).collect();
    std::fs::write(&m, kept).unwrap();
    drop(Store::open(dir.path()).unwrap());
    assert_eq!(std::fs::read_to_string(&m).unwrap(), text);
    // A mirror that is gone is made again.
    std::fs::remove_file(&m).unwrap();
    drop(Store::open(dir.path()).unwrap());
    assert_eq!(std::fs::read_to_string(&m).unwrap(), text);
}
