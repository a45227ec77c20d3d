//! Property test of crash recovery against a model world.
//!
//! Random plans (1..15 steps, random classes) run against an in-memory world of keys. Random
//! faults are injected: `do` fails (before, during or after its effect), `undo` fails
//! transiently, the process "dies" before or after any journal write, inside `do` after a
//! partial effect, or inside `undo` (rollback) after a partial restore. After each death the
//! journal is "reopened": only the persisted records survive, a fresh machine is rebuilt from
//! them, and recovery proceeds, by the documented policy (`engine::decide`) or by an
//! operator's explicit resume / rollback, until the run is terminal.
//!
//! Invariant: the world equals exactly the state before the run and the last record is
//! `run_rolled_back`, or it equals exactly the fully applied state and the last record is
//! `run_committed`.

use async_trait::async_trait;
use engine::{
    decide, drive, Decision, DriveOptions, DynStep, Entry, Event, Finish, Journal, Limits, Machine,
    Mode, Outcome, Plan, Record, RunId, Step, StepClass, StepCtx, StepError,
};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

type Data = BTreeMap<u8, u64>;

/// Where a scheduled death or failure strikes inside a step call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Point {
    /// Before the step changes anything.
    Before,
    /// After the stash is recorded, before any write.
    Stashed,
    /// After half of the writes (or half of the restore).
    Half,
    /// After the whole effect, before returning.
    After,
}

#[derive(Clone, Debug)]
struct Schedule {
    /// Global op numbers (journal writes and step calls) at which the process dies, with the
    /// flavour: for a write, `true` = the record was persisted before death.
    deaths: BTreeMap<u32, (bool, Point)>,
    /// (step, which call of its `do` (0-based)) -> failure point.
    do_fail: BTreeMap<(usize, u32), Point>,
    /// step -> number of initial `undo` calls that fail (transiently).
    undo_fail: BTreeMap<usize, u32>,
    /// Per session: use an explicit mode instead of the policy.
    operator: Vec<Option<Mode>>,
    /// How many unsynced records survive a death.
    keep: usize,
}

struct World {
    data: Data,
    stash: BTreeMap<usize, Vec<(u8, Option<u64>)>>,
    records: Vec<Record>,
    pending: Vec<Record>,
    dead: bool,
    op: u32,
    do_calls: BTreeMap<usize, u32>,
    undo_calls: BTreeMap<usize, u32>,
    schedule: Schedule,
    forward_only_undone: bool,
}

impl World {
    /// Count one op; returns the death flavour if the process dies at it.
    fn tick(&mut self) -> Option<(bool, Point)> {
        let op = self.op;
        self.op += 1;
        let death = self.schedule.deaths.get(&op).copied();
        if death.is_some() {
            self.dead = true;
        }
        death
    }
}

type Shared = Arc<Mutex<World>>;

struct MemJournal(Shared);

/// Appended records go to `pending`; `sync` moves them to `records` (durable). A death loses
/// `pending` except for a prefix of `schedule.keep` records (sled may have flushed some).
impl Journal for MemJournal {
    fn append(&mut self, record: &Record) -> Result<(), engine::BoxError> {
        let mut w = self.0.lock().unwrap();
        if w.dead {
            return Err("process is dead".into());
        }
        match w.tick() {
            Some((appended, _)) => {
                if appended {
                    w.pending.push(record.clone());
                }
                Err("died at a journal write".into())
            }
            None => {
                w.pending.push(record.clone());
                Ok(())
            }
        }
    }

    fn sync(&mut self) -> Result<(), engine::BoxError> {
        let mut w = self.0.lock().unwrap();
        if w.dead {
            return Err("process is dead".into());
        }
        match w.tick() {
            Some((synced, _)) => {
                if synced {
                    let p = std::mem::take(&mut w.pending);
                    w.records.extend(p);
                }
                Err("died at a journal sync".into())
            }
            None => {
                let p = std::mem::take(&mut w.pending);
                w.records.extend(p);
                Ok(())
            }
        }
    }
}

struct ModelStep {
    index: usize,
    class: StepClass,
    writes: Vec<(u8, u64)>,
    world: Shared,
}

fn fail_at(p: Point, here: Point) -> bool {
    p == here
}

#[async_trait]
impl Step for ModelStep {
    type Receipt = usize;

    fn name(&self) -> String {
        format!("model step {}", self.index)
    }

    fn class(&self) -> StepClass {
        self.class
    }

    async fn apply(&self, _ctx: &StepCtx) -> Result<usize, StepError> {
        let mut w = self.world.lock().unwrap();
        if w.dead {
            return Err(StepError::new("dead"));
        }
        let call = *w.do_calls.entry(self.index).or_default();
        *w.do_calls.get_mut(&self.index).unwrap() += 1;
        let death = w.tick().map(|(_, p)| p);
        let failure = w.schedule.do_fail.get(&(self.index, call)).copied();
        // The first of a death or a failure at a point stops the effect there.
        let stop = |here: Point| {
            death.is_some_and(|p| fail_at(p, here)) || failure.is_some_and(|p| fail_at(p, here))
        };
        let outcome = || -> Result<usize, StepError> {
            if death.is_some() {
                Err(StepError::new("died inside do"))
            } else {
                Err(StepError::new("do failed"))
            }
        };
        if stop(Point::Before) {
            return outcome();
        }
        if self.class != StepClass::ForwardOnly && !w.stash.contains_key(&self.index) {
            let old = self
                .writes
                .iter()
                .map(|(k, _)| (*k, w.data.get(k).copied()))
                .collect();
            w.stash.insert(self.index, old);
        }
        if stop(Point::Stashed) {
            return outcome();
        }
        let half = self.writes.len() / 2;
        for (i, (k, v)) in self.writes.iter().enumerate() {
            if i == half && stop(Point::Half) {
                return outcome();
            }
            w.data.insert(*k, *v);
        }
        if death.is_some() || failure.is_some() {
            return outcome();
        }
        Ok(self.index)
    }

    async fn undo(&self, _ctx: &StepCtx, receipt: Option<usize>) -> Result<(), StepError> {
        let mut w = self.world.lock().unwrap();
        if w.dead {
            return Err(StepError::new("dead"));
        }
        if let Some(r) = receipt {
            assert_eq!(r, self.index, "receipt of another step");
        }
        if self.class == StepClass::ForwardOnly {
            w.forward_only_undone = true;
            return Err(StepError::new("forward-only undo called"));
        }
        let call = *w.undo_calls.entry(self.index).or_default();
        *w.undo_calls.get_mut(&self.index).unwrap() += 1;
        let death = w.tick().map(|(_, p)| p);
        let fails = call < w.schedule.undo_fail.get(&self.index).copied().unwrap_or(0);
        if death == Some(Point::Before) {
            return Err(StepError::new("died before undo changed anything"));
        }
        let Some(old) = w.stash.get(&self.index).cloned() else {
            return if death.is_some() || fails {
                Err(StepError::new("undo failed"))
            } else {
                Ok(())
            };
        };
        // Restore in reverse so that a death half-way leaves a partial restore.
        let half = old.len() / 2;
        for (i, (k, v)) in old.iter().enumerate().rev() {
            if i == half && (death == Some(Point::Half) || (fails && call % 2 == 1)) {
                return Err(StepError::new("undo died or failed half-way"));
            }
            match v {
                Some(v) => w.data.insert(*k, *v),
                None => w.data.remove(k),
            };
        }
        if death.is_some() || fails {
            return Err(StepError::new("undo died or failed after restoring"));
        }
        w.stash.remove(&self.index);
        Ok(())
    }
}

#[derive(Clone, Debug)]
struct Case {
    initial: Data,
    steps: Vec<(StepClass, Vec<(u8, u64)>)>,
    schedule: Schedule,
}

fn point() -> impl Strategy<Value = Point> {
    prop_oneof![
        Just(Point::Before),
        Just(Point::Stashed),
        Just(Point::Half),
        Just(Point::After)
    ]
}

fn case() -> impl Strategy<Value = Case> {
    let class = prop_oneof![
        6 => Just(StepClass::Reversible),
        2 => Just(StepClass::Pivot),
        2 => Just(StepClass::ForwardOnly),
    ];
    let step = (class, prop::collection::vec((0u8..6, 1u64..1000), 1..4));
    let steps = prop::collection::vec(step, 1..=15).prop_map(|mut steps| {
        // Forward-only steps form the tail of a valid plan.
        steps.sort_by_key(|(c, _)| *c == StepClass::ForwardOnly);
        steps
    });
    let initial = prop::collection::btree_map(0u8..6, 0u64..1000, 0..6);
    (initial, steps).prop_flat_map(|(initial, steps)| {
        let n = steps.len();
        let deaths = prop::collection::btree_map(0u32..120, (any::<bool>(), point()), 0..4);
        let do_fail = prop::collection::btree_map((0..n, 0u32..2), point(), 0..3);
        let undo_fail = prop::collection::btree_map(0..n, 1u32..3, 0..3);
        let operator = prop::collection::vec(
            prop_oneof![
                4 => Just(None),
                1 => Just(Some(Mode::Resume)),
                1 => Just(Some(Mode::Rollback)),
            ],
            8,
        );
        (deaths, do_fail, undo_fail, operator, 0usize..3).prop_map(
            move |(deaths, do_fail, undo_fail, operator, keep)| Case {
                initial: initial.clone(),
                steps: steps.clone(),
                schedule: Schedule {
                    deaths,
                    do_fail,
                    undo_fail,
                    operator,
                    keep,
                },
            },
        )
    })
}

/// Forward-only steps may fail only transiently (once), or the run could never finish.
fn normalise(mut case: Case) -> Case {
    let forward_only: BTreeSet<usize> = case
        .steps
        .iter()
        .enumerate()
        .filter(|(_, (c, _))| *c == StepClass::ForwardOnly)
        .map(|(i, _)| i)
        .collect();
    case.schedule
        .do_fail
        .retain(|(step, call), _| !forward_only.contains(step) || *call == 0);
    case
}

const LIMITS: Limits = Limits {
    max_attempts: 20,
    undo_retries: 1,
};

fn run_case(rt: &tokio::runtime::Runtime, case: Case) -> Result<(), TestCaseError> {
    let case = normalise(case);
    let world: Shared = Arc::new(Mutex::new(World {
        data: case.initial.clone(),
        stash: BTreeMap::new(),
        records: Vec::new(),
        pending: Vec::new(),
        dead: false,
        op: 0,
        do_calls: BTreeMap::new(),
        undo_calls: BTreeMap::new(),
        schedule: case.schedule.clone(),
        forward_only_undone: false,
    }));
    let build = || -> Plan {
        let steps: Vec<Box<dyn DynStep>> = case
            .steps
            .iter()
            .enumerate()
            .map(|(index, (class, writes))| {
                Box::new(ModelStep {
                    index,
                    class: *class,
                    writes: writes.clone(),
                    world: world.clone(),
                }) as Box<dyn DynStep>
            })
            .collect();
        Plan::new("model", serde_json::Value::Null, steps).expect("valid plan")
    };
    let mut applied = case.initial.clone();
    for (_, writes) in &case.steps {
        for (k, v) in writes {
            applied.insert(*k, *v);
        }
    }
    let options = DriveOptions {
        undo_backoff: Duration::ZERO,
    };

    // First session: start the run.
    let plan = build();
    let mut machine = Machine::new(RunId(1), plan.meta.clone(), LIMITS);
    let mut journal = MemJournal(world.clone());
    let _ = rt.block_on(drive(
        &mut machine,
        Event::Start,
        &plan.steps,
        &mut journal,
        options,
    ));

    // Recovery sessions until the run is terminal.
    let mut session = 0;
    let outcome = loop {
        session += 1;
        prop_assert!(session < 60, "recovery did not converge");
        let records = {
            let mut w = world.lock().unwrap();
            // The restart: a prefix of what was appended but not synced may have survived.
            w.dead = false;
            let pending = std::mem::take(&mut w.pending);
            let keep = case.schedule.keep.min(pending.len());
            w.records.extend(pending.into_iter().take(keep));
            w.records.clone()
        };
        if records.is_empty() {
            // Died before run_started was durable: nothing may have happened.
            let w = world.lock().unwrap();
            prop_assert_eq!(&w.data, &case.initial);
            return Ok(());
        }
        let decision = decide(&records, LIMITS).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let policy = match decision {
            Decision::Finished { outcome } => break outcome,
            Decision::Stuck { reason, .. } => {
                return Err(TestCaseError::fail(format!("stuck: {reason}")))
            }
            Decision::Resume => Mode::Resume,
            Decision::Rollback => Mode::Rollback,
        };
        let mut mode = case
            .schedule
            .operator
            .get(session - 1)
            .copied()
            .flatten()
            .unwrap_or(policy);
        let mut machine = Machine::from_records(&records, LIMITS)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        // An operator's choice the engine refuses leaves everything as it was; use the policy.
        let probe = machine.clone().handle(event(mode));
        if let Err(e) = probe {
            prop_assert!(matches!(e, engine::Error::Refused(_)), "unexpected {e}");
            mode = policy;
        }
        let plan = build();
        plan.check_matches(&machine.ledger().plan)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let mut journal = MemJournal(world.clone());
        let result = rt.block_on(drive(
            &mut machine,
            event(mode),
            &plan.steps,
            &mut journal,
            options,
        ));
        match result {
            Ok(Finish::Finished(o)) => break o,
            Ok(Finish::Halted(_)) | Err(engine::Error::Journal(_)) => continue,
            Err(e) => return Err(TestCaseError::fail(format!("driver error: {e}"))),
        }
    };

    let w = world.lock().unwrap();
    prop_assert!(!w.forward_only_undone, "a forward-only step was undone");
    let last = &w.records.last().expect("records").entry;
    match outcome {
        Outcome::Committed => {
            prop_assert_eq!(last, &Entry::RunCommitted);
            prop_assert_eq!(&w.data, &applied, "committed but not fully applied");
        }
        Outcome::RolledBack => {
            prop_assert_eq!(last, &Entry::RunRolledBack);
            prop_assert_eq!(&w.data, &case.initial, "rolled back but not as before");
            prop_assert!(w.stash.is_empty(), "stash left after rollback");
        }
        Outcome::Stuck { reason, .. } => {
            return Err(TestCaseError::fail(format!("stuck: {reason}")))
        }
    }
    // The journal replays cleanly and agrees.
    let again = decide(&w.records, LIMITS).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let finished = matches!(again, Decision::Finished { .. });
    prop_assert!(finished, "journal does not replay to a finished run");
    Ok(())
}

fn event(mode: Mode) -> Event {
    match mode {
        Mode::Resume => Event::Resume { forced: false },
        Mode::Rollback => Event::Rollback { forced: false },
    }
}

#[test]
fn recovery_converges_to_before_or_after() {
    let cases = std::env::var("MOLT_PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&case(), |c| run_case(&rt, c))
        .unwrap_or_else(|e| panic!("{e}"));
    println!("recovery property held for {cases} cases");
}
