//! The driver against a counting journal: when it syncs, what it stamps on records, how it
//! backs off between undo retries (in paused time, so exactly), and what it refuses.

use async_trait::async_trait;
use engine::{
    drive, DriveOptions, DynStep, Entry, Event, Finish, Journal, Ledger, Limits, Machine, Outcome,
    PlanMeta, Record, RunId, State, Step, StepClass, StepCtx, StepError, StepMeta,
};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

struct S {
    fail_apply: bool,
    /// Undo calls that fail before one succeeds.
    undo_failures: AtomicU32,
}

fn step(fail_apply: bool, undo_failures: u32) -> Box<dyn DynStep> {
    Box::new(S {
        fail_apply,
        undo_failures: AtomicU32::new(undo_failures),
    })
}

#[async_trait]
impl Step for S {
    type Receipt = ();

    fn name(&self) -> String {
        "s".into()
    }

    fn class(&self) -> StepClass {
        StepClass::Reversible
    }

    async fn apply(&self, _ctx: &StepCtx) -> Result<(), StepError> {
        if self.fail_apply {
            return Err(StepError::new("apply failed"));
        }
        Ok(())
    }

    async fn undo(&self, _ctx: &StepCtx, _receipt: Option<()>) -> Result<(), StepError> {
        let left = self.undo_failures.load(Ordering::SeqCst);
        if left > 0 {
            self.undo_failures.store(left - 1, Ordering::SeqCst);
            return Err(StepError::new("undo failed"));
        }
        Ok(())
    }
}

#[derive(Default)]
struct Counting {
    records: Vec<Record>,
    synced: usize,
    syncs: usize,
    empty_syncs: usize,
}

impl Journal for Counting {
    fn append(&mut self, record: &Record) -> Result<(), engine::BoxError> {
        self.records.push(record.clone());
        Ok(())
    }

    fn sync(&mut self) -> Result<(), engine::BoxError> {
        self.syncs += 1;
        if self.synced == self.records.len() {
            self.empty_syncs += 1;
        }
        self.synced = self.records.len();
        Ok(())
    }
}

fn meta(n: usize) -> PlanMeta {
    PlanMeta {
        id: "driver".into(),
        spec: serde_json::Value::Null,
        steps: (0..n)
            .map(|_| StepMeta {
                name: "s".into(),
                class: StepClass::Reversible,
            })
            .collect(),
    }
}

const LIMITS: Limits = Limits {
    max_attempts: 3,
    undo_retries: 2,
};

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[tokio::test]
async fn one_sync_before_each_side_effect_and_at_the_end_and_records_carry_their_time() {
    let steps = vec![step(false, 0), step(false, 0), step(false, 0)];
    let mut machine = Machine::new(RunId(1), meta(3), LIMITS);
    let mut j = Counting::default();
    let before = now_ms();
    let finish = drive(
        &mut machine,
        Event::Start,
        &steps,
        &mut j,
        DriveOptions::default(),
    )
    .await
    .unwrap();
    let after = now_ms();
    assert!(matches!(finish, Finish::Finished(Outcome::Committed)));
    // Three applies and the end: never a sync with nothing new to make durable.
    assert_eq!((j.syncs, j.empty_syncs), (4, 0));
    assert_eq!(j.synced, j.records.len());
    for r in &j.records {
        assert!(
            (before..=after).contains(&r.at_ms),
            "record {} stamped {} outside {before}..={after}",
            r.seq,
            r.at_ms
        );
    }
}

#[tokio::test(start_paused = true)]
async fn undo_retries_back_off_exponentially() {
    // Step 0 applies, step 1 fails: the rollback undoes both; step 0's undo fails twice.
    let steps = vec![step(false, 2), step(true, 0)];
    let mut machine = Machine::new(RunId(1), meta(2), LIMITS);
    let mut j = Counting::default();
    let start = tokio::time::Instant::now();
    let finish = drive(
        &mut machine,
        Event::Start,
        &steps,
        &mut j,
        DriveOptions {
            undo_backoff: Duration::from_millis(100),
        },
    )
    .await
    .unwrap();
    assert!(matches!(finish, Finish::Finished(Outcome::RolledBack)));
    let undo_attempts: Vec<u32> = j
        .records
        .iter()
        .filter_map(|r| match r.entry {
            Entry::UndoIntent { step: 0, attempt } => Some(attempt),
            _ => None,
        })
        .collect();
    assert_eq!(undo_attempts, [1, 2, 3]);
    // No wait before the first attempt, then 100 ms, then 200 ms.
    assert_eq!(start.elapsed(), Duration::from_millis(300));
}

#[tokio::test]
async fn a_plan_with_another_number_of_steps_is_refused() {
    let steps = vec![step(false, 0)];
    let mut machine = Machine::new(RunId(1), meta(2), LIMITS);
    let mut j = Counting::default();
    let e = drive(
        &mut machine,
        Event::Start,
        &steps,
        &mut j,
        DriveOptions::default(),
    )
    .await
    .unwrap_err();
    assert!(
        e.to_string()
            .contains("1 step implementations for a plan of 2 steps"),
        "{e}"
    );
    assert!(j.records.is_empty());
}

#[test]
fn impossible_transitions_name_the_event_and_a_fresh_ledger_can_start() {
    let mut m = Machine::new(RunId(1), meta(1), LIMITS);
    let e = m.handle(Event::Written).unwrap_err().to_string();
    assert!(e.contains("event written in state idle"), "{e}");
    let e = m.handle(Event::Undone).unwrap_err().to_string();
    assert!(e.contains("event undone"), "{e}");
    // A machine rebuilt from a ledger with no record has not started.
    let mut m = Machine::from_parts(Ledger::new(RunId(1), meta(1)), State::Idle, LIMITS);
    assert!(m.handle(Event::Start).is_ok());
}

#[test]
fn terminal_records_before_their_time_are_refused() {
    let record = |seq: u64, entry: Entry| Record {
        format: engine::FORMAT,
        run: RunId(1),
        seq,
        at_ms: 1,
        entry,
    };
    let head = vec![
        record(0, Entry::RunStarted { plan: meta(2) }),
        record(
            1,
            Entry::StepIntent {
                step: 0,
                attempt: 1,
            },
        ),
        record(
            2,
            Entry::StepDone {
                step: 0,
                receipt: None,
            },
        ),
    ];
    // Committed while step 1 was never done.
    let mut early = head.clone();
    early.push(record(3, Entry::RunCommitted));
    let e = Ledger::replay(&early).unwrap_err().to_string();
    assert!(
        e.contains("run_committed before every step was done"),
        "{e}"
    );
    // Rolled back while step 0 was never undone.
    let mut early = head.clone();
    early.push(record(
        3,
        Entry::StepIntent {
            step: 1,
            attempt: 1,
        },
    ));
    early.push(record(
        4,
        Entry::StepFailed {
            step: 1,
            error: "x".into(),
        },
    ));
    early.push(record(5, Entry::RollbackStarted { reason: "x".into() }));
    early.push(record(6, Entry::RunRolledBack));
    let e = Ledger::replay(&early).unwrap_err().to_string();
    assert!(
        e.contains("run_rolled_back before every started step was undone"),
        "{e}"
    );
}

#[test]
fn a_rebuilt_plan_must_match_the_journal_exactly() {
    let plan = engine::Plan::new("driver", serde_json::Value::Null, vec![step(false, 0)]).unwrap();
    // The journaled meta is built from each step's own name and class.
    assert_eq!(plan.meta.steps[0].name, "s");
    assert_eq!(DynStep::name(&*plan.steps[0]), "s");
    plan.check_matches(&meta(1)).unwrap();
    let mut other_id = meta(1);
    other_id.id = "another".into();
    let mut other_name = meta(1);
    other_name.steps[0].name = "t".into();
    let mut other_class = meta(1);
    other_class.steps[0].class = StepClass::Pivot;
    for (what, journal) in [
        ("id", other_id),
        ("name", other_name),
        ("class", other_class),
        ("length", meta(2)),
    ] {
        assert!(
            matches!(
                plan.check_matches(&journal),
                Err(engine::Error::PlanMismatch { .. })
            ),
            "a plan with another {what} was accepted"
        );
    }
}
