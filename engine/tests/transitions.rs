//! Data-driven tests of the run state machine and the recovery decision.
//!
//! Every case goes through one helper: `check("CLASSES | EVENTS", "EXPECTED")` builds a plan of
//! the given step classes (R reversible, P pivot, F forward-only), feeds the events, and
//! compares what the last event produced. Events:
//! `start resume resume! rollback rollback!` (`!` = forced), `ok` (record persisted),
//! `done` / `fail` (do returned Ok / Err), `undone` / `undofail`, and `crash`, which keeps only
//! the records persisted so far and rebuilds the machine from them (`Machine::from_records`).
//! `decide("...", "EXPECTED")` runs the recovery policy on the persisted records instead.

use engine::{
    decide, Command, Decision, Event, Limits, Machine, Outcome, PlanMeta, Record, RunId, StepClass,
    StepMeta,
};
use std::collections::BTreeSet;

const LIMITS: Limits = Limits {
    max_attempts: 3,
    undo_retries: 1,
};

fn plan(classes: &str) -> PlanMeta {
    PlanMeta {
        id: "test".into(),
        spec: serde_json::Value::Null,
        steps: classes
            .split_whitespace()
            .enumerate()
            .map(|(i, c)| StepMeta {
                name: format!("s{i}"),
                class: match c {
                    "R" => StepClass::Reversible,
                    "P" => StepClass::Pivot,
                    "F" => StepClass::ForwardOnly,
                    other => panic!("unknown class {other}"),
                },
            })
            .collect(),
    }
}

fn event(token: &str) -> Event {
    match token {
        "start" => Event::Start,
        "resume" => Event::Resume { forced: false },
        "resume!" => Event::Resume { forced: true },
        "rollback" => Event::Rollback { forced: false },
        "rollback!" => Event::Rollback { forced: true },
        "ok" => Event::Written,
        "done" => Event::Applied {
            receipt: Some(serde_json::json!("r")),
        },
        "fail" => Event::ApplyFailed {
            error: "boom".into(),
        },
        "undone" => Event::Undone,
        "undofail" => Event::UndoFailed {
            error: "nope".into(),
        },
        other => panic!("unknown event {other}"),
    }
}

fn render(result: &Result<Command, engine::Error>) -> String {
    match result {
        Ok(Command::Write(r)) => {
            let mut s = format!("write {}", r.entry.kind());
            if let Some(step) = r.entry.step() {
                s += &format!(" {step}");
            }
            match &r.entry {
                engine::Entry::StepIntent { attempt, .. }
                | engine::Entry::UndoIntent { attempt, .. } => s += &format!(" #{attempt}"),
                engine::Entry::Recovery { mode, forced } => {
                    s += &format!(" {mode:?}{}", if *forced { "!" } else { "" })
                }
                _ => {}
            }
            s
        }
        Ok(Command::Apply { step, attempt }) => format!("apply {step} #{attempt}"),
        Ok(Command::Undo {
            step,
            attempt,
            receipt,
        }) => format!(
            "undo {step} #{attempt}{}",
            if receipt.is_some() {
                " with receipt"
            } else {
                ""
            }
        ),
        Ok(Command::Finish(o)) => match o {
            Outcome::Committed => "finish committed".into(),
            Outcome::RolledBack => "finish rolled_back".into(),
            Outcome::Stuck { step, .. } => format!("finish stuck {step}"),
        },
        Ok(Command::Halt(h)) => match h {
            engine::Halt::ForwardFailed { step, .. } => format!("halt forward_failed {step}"),
            engine::Halt::UndoFailed { step, .. } => format!("halt undo_failed {step}"),
        },
        Err(engine::Error::Transition { state, event }) => {
            format!("impossible {event} in {state}")
        }
        Err(engine::Error::Refused(why)) => format!("refused: {why}"),
        Err(e) => format!("error: {e}"),
    }
}

/// Run a script; returns the machine, the persisted records and the last result.
fn run(script: &str) -> (Machine, Vec<Record>, Result<Command, engine::Error>) {
    let (classes, events) = script.split_once('|').expect("CLASSES | EVENTS");
    let meta = plan(classes);
    let mut machine = Machine::new(RunId(7), meta, LIMITS);
    let mut records: Vec<Record> = Vec::new();
    let mut pending: Option<Record> = None;
    let mut last = Err(engine::Error::EmptyRun);
    let tokens: Vec<&str> = events.split_whitespace().collect();
    for (i, token) in tokens.iter().enumerate() {
        if *token == "crash" {
            pending = None;
            machine = Machine::from_records(&records, LIMITS).expect("records replay");
            continue;
        }
        let ev = event(token);
        if ev == Event::Written {
            if let Some(r) = pending.take() {
                records.push(r);
            }
        }
        last = machine.handle(ev);
        if let Ok(Command::Write(r)) = &last {
            pending = Some(r.clone());
        }
        if i + 1 < tokens.len() && last.is_err() {
            panic!("{script}: event {i} ({token}) failed: {}", render(&last));
        }
    }
    (machine, records, last)
}

#[track_caller]
fn check(script: &str, expect: &str) {
    let (_, _, last) = run(script);
    assert_eq!(render(&last), expect, "script: {script}");
}

#[track_caller]
fn check_decide(script: &str, expect: &str) {
    let (_, records, _) = run(script);
    let got = match decide(&records, LIMITS) {
        Ok(Decision::Finished { outcome }) => format!(
            "finished {}",
            render(&Ok(Command::Finish(outcome))).trim_start_matches("finish ")
        ),
        Ok(Decision::Resume) => "resume".into(),
        Ok(Decision::Rollback) => "rollback".into(),
        Ok(Decision::Stuck { step, .. }) => format!("stuck {step}"),
        Err(e) => format!("error: {e}"),
    };
    assert_eq!(got, expect, "script: {script}");
}

// A successful two-step run, one transition at a time.
#[test]
fn happy_path() {
    check("R R | start", "write run_started");
    check("R R | start ok", "write step_intent 0 #1");
    check("R R | start ok ok", "apply 0 #1");
    check("R R | start ok ok done", "write step_done 0");
    check("R R | start ok ok done ok", "write step_intent 1 #1");
    check("R R | start ok ok done ok ok", "apply 1 #1");
    check("R R | start ok ok done ok ok done", "write step_done 1");
    check(
        "R R | start ok ok done ok ok done ok",
        "write run_committed",
    );
    check(
        "R R | start ok ok done ok ok done ok ok",
        "finish committed",
    );
    check("P | start ok ok done ok ok", "finish committed");
    check("F | start ok ok done ok ok", "finish committed");
    check(
        "R P F | start ok ok done ok ok done ok ok done ok ok",
        "finish committed",
    );
}

// A failing step turns the run around and undoes every started step, last first.
#[test]
fn failure_rolls_back() {
    check("R | start ok ok fail", "write step_failed 0");
    check("R | start ok ok fail ok", "write rollback_started");
    check("R | start ok ok fail ok ok", "write undo_intent 0 #1");
    check("R | start ok ok fail ok ok ok", "undo 0 #1");
    check("R | start ok ok fail ok ok ok undone", "write undo_done 0");
    check(
        "R | start ok ok fail ok ok ok undone ok",
        "write run_rolled_back",
    );
    check(
        "R | start ok ok fail ok ok ok undone ok ok",
        "finish rolled_back",
    );
    check(
        "R R | start ok ok done ok ok fail ok ok",
        "write undo_intent 1 #1",
    );
    check("R R | start ok ok done ok ok fail ok ok ok", "undo 1 #1");
    check(
        "R R | start ok ok done ok ok fail ok ok ok undone ok",
        "write undo_intent 0 #1",
    );
    check(
        "R R | start ok ok done ok ok fail ok ok ok undone ok ok",
        "undo 0 #1 with receipt",
    );
    check(
        "R R | start ok ok done ok ok fail ok ok ok undone ok ok undone ok ok",
        "finish rolled_back",
    );
    check("R P | start ok ok done ok ok fail ok ok ok", "undo 1 #1");
    check(
        "P R | start ok ok done ok ok fail ok ok",
        "write undo_intent 1 #1",
    );
    check(
        "R R R | start ok ok fail ok ok ok undone ok",
        "write run_rolled_back",
    );
    check("R F | start ok ok fail ok", "write rollback_started");
}

// A forward-only step that fails cannot be undone: the session halts, resume retries.
#[test]
fn forward_only_failure_halts() {
    check("R F | start ok ok done ok ok fail", "write step_failed 1");
    check(
        "R F | start ok ok done ok ok fail ok",
        "halt forward_failed 1",
    );
    check("F | start ok ok fail ok", "halt forward_failed 0");
    check(
        "F F | start ok ok done ok ok fail ok",
        "halt forward_failed 1",
    );
    check(
        "R F | start ok ok done ok ok fail ok crash resume",
        "write recovery Resume",
    );
    check(
        "R F | start ok ok done ok ok fail ok crash resume ok",
        "write step_intent 1 #2",
    );
    check(
        "R F | start ok ok done ok ok fail ok crash resume ok ok done ok ok",
        "finish committed",
    );
    check(
        "R F | start ok ok done ok ok fail ok crash rollback",
        "refused: run 7 cannot be rolled back: forward-only step 1 (s1) has started; the run can only be resumed",
    );
}

// Undo failures are retried within the session, then the session halts.
#[test]
fn undo_failures() {
    check(
        "R | start ok ok fail ok ok ok undofail",
        "write undo_failed 0",
    );
    check(
        "R | start ok ok fail ok ok ok undofail ok",
        "write undo_intent 0 #2",
    );
    check("R | start ok ok fail ok ok ok undofail ok ok", "undo 0 #2");
    check(
        "R | start ok ok fail ok ok ok undofail ok ok undone ok ok",
        "finish rolled_back",
    );
    check(
        "R | start ok ok fail ok ok ok undofail ok ok undofail ok",
        "halt undo_failed 0",
    );
    check(
        "R | start ok ok fail ok ok ok undofail ok ok undofail ok crash rollback",
        "write recovery Rollback",
    );
    check(
        "R | start ok ok fail ok ok ok undofail ok ok undofail ok crash rollback ok",
        "write undo_intent 0 #3",
    );
    check(
        "R R | start ok ok done ok ok fail ok ok ok undofail ok ok undone ok",
        "write undo_intent 0 #1",
    );
}

// The loop breaker: a step started max_attempts (3) times is not started again.
#[test]
fn loop_breaker() {
    check("R | start ok ok crash resume ok", "write step_intent 0 #2");
    check(
        "R | start ok ok crash resume ok ok crash resume ok",
        "write step_intent 0 #3",
    );
    check(
        "R | start ok ok crash resume ok ok crash resume ok ok crash resume ok",
        "write run_stuck 0",
    );
    check(
        "R | start ok ok crash resume ok ok crash resume ok ok crash resume ok ok",
        "finish stuck 0",
    );
    check(
        "R | start ok ok crash resume ok ok crash resume ok ok crash resume ok ok crash resume",
        "refused: run 7 is stuck at step 0 (s0): do of s0 started 3 times without finishing; fix the cause, then force the recovery",
    );
    check(
        "R | start ok ok crash resume ok ok crash resume ok ok crash resume ok ok crash resume!",
        "write recovery Resume!",
    );
    check(
        "R | start ok ok crash resume ok ok crash resume ok ok crash resume ok ok crash resume! ok",
        "write step_intent 0 #1",
    );
    check("R | start ok ok crash resume ok ok crash resume ok ok crash resume ok ok crash rollback! ok", "write undo_intent 0 #1");
    check(
        "R | start ok ok crash rollback ok ok crash rollback ok ok crash rollback ok",
        "write undo_intent 0 #3",
    );
    check("R | start ok ok crash rollback ok ok crash rollback ok ok crash rollback ok ok crash rollback ok", "write run_stuck 0");
    check(
        "R R | start ok ok done ok ok crash resume ok ok crash resume ok",
        "write step_intent 1 #3",
    );
}

// Recovery sessions attach to a run rebuilt from its records.
#[test]
fn recovery_sessions() {
    check(
        "R R | start ok ok done ok crash resume",
        "write recovery Resume",
    );
    check(
        "R R | start ok ok done ok crash resume ok",
        "write step_intent 1 #1",
    );
    check(
        "R R | start ok ok done ok ok crash resume ok",
        "write step_intent 1 #2",
    );
    check(
        "R R | start ok ok done ok ok crash rollback ok",
        "write undo_intent 1 #1",
    );
    check(
        "R R | start ok ok done ok crash rollback ok",
        "write undo_intent 0 #1",
    );
    check(
        "R R | start ok ok done ok crash rollback ok ok",
        "undo 0 #1 with receipt",
    );
    check("R R | start ok ok crash rollback ok ok", "undo 0 #1");
    check("R R | start ok crash rollback ok", "write run_rolled_back");
    check(
        "R R | start ok ok fail ok ok ok crash rollback ok",
        "write undo_intent 0 #2",
    );
    check(
        "R R | start ok ok fail ok ok ok crash resume",
        "refused: run 7 is rolling back; finish it with a rollback",
    );
    check(
        "R | start ok ok done ok ok crash resume",
        "refused: run 7 is already committed",
    );
    check(
        "R | start ok ok fail ok ok ok undone ok ok crash rollback",
        "refused: run 7 is already rolled back",
    );
    check(
        "R | start ok crash start",
        "refused: run 7 has already started",
    );
    check("R | resume", "refused: run 7 has not started");
    check("R | rollback", "refused: run 7 has not started");
    check(
        "R P | start ok ok done ok ok crash resume ok",
        "write step_intent 1 #2",
    );
    check(
        "R P | start ok ok done ok ok done ok crash resume ok",
        "write run_committed",
    );
}

// The recovery policy (engine::decide), case by case.
#[test]
fn policy() {
    check_decide("R | start ok", "rollback");
    check_decide("R | start ok ok", "rollback");
    check_decide("R R | start ok ok done ok ok", "rollback");
    check_decide("R P | start ok ok done ok", "rollback");
    check_decide("R P | start ok ok done ok ok", "resume");
    check_decide("R P R | start ok ok done ok ok done ok ok", "resume");
    check_decide("R F | start ok ok done ok ok", "resume");
    check_decide("R P | start ok ok done ok ok fail ok", "rollback");
    check_decide("R P | start ok ok done ok ok fail ok ok", "rollback");
    check_decide("R R | start ok ok fail ok", "rollback");
    check_decide("P R | start ok ok done ok ok fail ok", "rollback");
    check_decide("R | start ok ok done ok ok", "finished committed");
    check_decide(
        "R | start ok ok fail ok ok ok undone ok ok",
        "finished rolled_back",
    );
    check_decide(
        "R | start ok ok crash resume ok ok crash resume ok ok crash resume ok ok",
        "stuck 0",
    );
    check_decide(
        "P | start ok ok crash resume ok ok crash resume ok ok",
        "stuck 0",
    );
    check_decide(
        "R | start ok ok crash rollback ok ok crash rollback ok ok",
        "rollback",
    );
    check_decide(
        "R | start ok ok crash rollback ok ok crash rollback ok ok crash rollback ok ok",
        "stuck 0",
    );
    check_decide("R R | start ok ok done ok ok done ok", "rollback");
    check_decide("R P | start ok ok done ok ok done ok", "resume");
    check_decide("F | start ok ok fail ok", "resume");
}

fn stored(records: &[Record]) -> Vec<Record> {
    records.to_vec()
}

// Records the machine could not have written are refused by replay, never acted on.
#[test]
fn inconsistent_records_are_refused() {
    let (_, records, _) = run("R R | start ok ok done ok ok");
    let mut bad = stored(&records);
    bad.remove(1); // intent gone: done without intent
    bad.iter_mut()
        .enumerate()
        .for_each(|(i, r)| r.seq = i as u64);
    assert!(matches!(
        decide(&bad, LIMITS),
        Err(engine::Error::Inconsistent { .. })
    ));

    let mut gap = stored(&records);
    gap.remove(2);
    assert!(matches!(
        decide(&gap, LIMITS),
        Err(engine::Error::Inconsistent { seq: 3, .. })
    ));

    let mut newer = stored(&records);
    newer[2].format = engine::FORMAT + 1;
    assert!(matches!(
        decide(&newer, LIMITS),
        Err(engine::Error::NewerFormat { seq: 2, .. })
    ));

    let mut other_run = stored(&records);
    other_run[3].run = RunId(8);
    assert!(matches!(
        decide(&other_run, LIMITS),
        Err(engine::Error::Inconsistent { .. })
    ));

    let mut out_of_range = stored(&records);
    out_of_range[1].entry = engine::Entry::StepIntent {
        step: 9,
        attempt: 1,
    };
    assert!(matches!(
        decide(&out_of_range, LIMITS),
        Err(engine::Error::Inconsistent { .. })
    ));

    let mut skip = stored(&records);
    skip[1].entry = engine::Entry::StepIntent {
        step: 1,
        attempt: 1,
    };
    assert!(matches!(
        decide(&skip, LIMITS),
        Err(engine::Error::Inconsistent { .. })
    ));

    let (_, done, _) = run("R | start ok ok done ok ok ok");
    let mut after_end = stored(&done);
    let mut extra = after_end[1].clone();
    extra.seq = after_end.len() as u64;
    after_end.push(extra);
    assert!(matches!(
        decide(&after_end, LIMITS),
        Err(engine::Error::Inconsistent { .. })
    ));

    assert!(matches!(decide(&[], LIMITS), Err(engine::Error::EmptyRun)));
    let mut headless = stored(&records);
    headless.remove(0);
    assert!(matches!(
        decide(&headless, LIMITS),
        Err(engine::Error::Inconsistent { .. })
    ));
}

#[test]
fn plans_with_a_step_after_forward_only_are_invalid() {
    let metas = plan("R F R").steps;
    assert!(matches!(
        engine::validate_classes(&metas),
        Err(engine::Error::InvalidPlan(_))
    ));
    assert!(engine::validate_classes(&plan("R P F F").steps).is_ok());
}

/// Scripts that bring a machine into each of its states, for the exhaustive sweep.
const STATE_SCRIPTS: &[&str] = &[
    "| ",                                                     // idle, fresh
    "| start ok crash",                                       // idle, attached to a started run
    "| start ok ok fail ok crash",                            // idle, rolling back
    "| start ok ok done ok ok done ok ok done ok ok crash",   // idle, finished run
    "| start",                                                // writing run_started
    "| start ok",                                             // writing step_intent
    "| start ok ok done",                                     // writing step_done
    "| start ok ok fail",                                     // writing step_failed
    "| start ok ok fail ok",                                  // writing rollback_started
    "| start ok ok fail ok ok",                               // writing undo_intent
    "| start ok ok fail ok ok ok undofail",                   // writing undo_failed
    "| start ok ok",                                          // applying
    "| start ok ok done ok ok",                               // applying step 1
    "| start ok ok fail ok ok ok",                            // undoing
    "| start ok ok fail ok ok ok undofail ok ok undofail ok", // halted (undo)
    "| start ok ok done ok ok done ok ok done ok ok",         // finished committed
    "| start ok ok fail ok ok ok undone ok ok",               // finished rolled back
];

const EVENTS: &[&str] = &[
    "start", "resume", "rollback", "ok", "done", "fail", "undone", "undofail",
];

/// Whether the transition table allows an event in a state at all (a refusal by the run's
/// state is still an allowed pair; an impossible pair is a typed error).
fn allowed(state: &str, event: &str) -> bool {
    matches!(
        (state, event),
        ("idle", "start" | "resume" | "rollback")
            | ("writing", "ok")
            | ("applying", "done" | "fail")
            | ("undoing", "undone" | "undofail")
    )
}

// Every (state, event) pair of the table, over many plan shapes: impossible pairs are a typed
// error naming both and leave the machine untouched; allowed pairs never panic.
#[test]
fn every_state_event_pair() {
    let shapes = [
        "R R R", "P R R", "R P R", "R R P", "R R F", "R F F", "P P F", "R P F", "P F F", "R R R R",
    ];
    let mut covered = BTreeSet::new();
    let mut checked = 0;
    for shape in shapes {
        for script in STATE_SCRIPTS {
            let (machine, _, _) = run(&format!("{shape} {script}"));
            let state = machine.state().name();
            for ev in EVENTS {
                let mut m = machine.clone();
                let result = m.handle(event(ev));
                covered.insert((state, *ev));
                checked += 1;
                if allowed(state, ev) {
                    assert!(
                        !matches!(result, Err(engine::Error::Transition { .. })),
                        "{shape} {script} + {ev}: allowed pair reported impossible"
                    );
                } else {
                    assert_eq!(
                        render(&result),
                        format!("impossible {} in {state}", event(ev).name()),
                        "{shape} {script} + {ev}"
                    );
                    assert_eq!(m.state(), machine.state(), "impossible event changed state");
                    assert_eq!(
                        m.ledger(),
                        machine.ledger(),
                        "impossible event changed ledger"
                    );
                }
            }
        }
    }
    let states = [
        "idle", "writing", "applying", "undoing", "halted", "finished",
    ];
    for s in states {
        for e in EVENTS {
            assert!(covered.contains(&(s, *e)), "pair ({s}, {e}) not covered");
        }
    }
    assert!(checked >= 1000, "only {checked} pairs checked");
}
