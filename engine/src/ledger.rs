//! The ledger: what a run's records say about each step, folded one record at a time.
//!
//! The state machine updates its ledger only when a record is persisted, and recovery builds the
//! same ledger by replaying the journal, so a live run and a recovered run can never disagree
//! about what happened. `apply` also validates: a record that could not have been written by
//! the state machine (a done without its intent, a record after the terminal one) is reported as
//! [`Error::Inconsistent`] and never acted on.

use crate::error::Error;
use crate::record::{Entry, Mode, Outcome, PlanMeta, Record, RunId, StepClass, FORMAT};

/// Direction the run is moving in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Forward,
    Backward,
}

/// Which side effect was announced by the latest intent and not yet concluded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "op", content = "step", rename_all = "snake_case")]
pub enum Open {
    Do(usize),
    Undo(usize),
}

/// Per-step facts derived from the records.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct StepState {
    /// `StepIntent` records since the last forced recovery (the loop breaker counts these).
    pub intents: u32,
    /// Ever started in this run (survives forced resets): rollback must undo it.
    pub started: bool,
    pub done: bool,
    pub receipt: Option<serde_json::Value>,
    pub last_error: Option<String>,
    pub undo_intents: u32,
    pub undone: bool,
}

/// Everything recovery needs to know about one run, derived from its records only.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Ledger {
    pub run: RunId,
    pub plan: PlanMeta,
    pub steps: Vec<StepState>,
    pub direction: Direction,
    pub open: Option<Open>,
    pub terminal: Option<Outcome>,
    /// Why the run turned around (from `rollback_started`, or a rollback session).
    pub rollback_reason: Option<String>,
    pub next_seq: u64,
}

impl Ledger {
    /// The ledger of a run whose `RunStarted` record is about to be written.
    pub fn new(run: RunId, plan: PlanMeta) -> Ledger {
        let steps = vec![StepState::default(); plan.steps.len()];
        Ledger {
            run,
            plan,
            steps,
            direction: Direction::Forward,
            open: None,
            terminal: None,
            rollback_reason: None,
            next_seq: 0,
        }
    }

    /// Rebuild a ledger from a run's records, validating each one.
    pub fn replay(records: &[Record]) -> Result<Ledger, Error> {
        let first = records.first().ok_or(Error::EmptyRun)?;
        let Entry::RunStarted { plan } = &first.entry else {
            return Err(Error::Inconsistent {
                seq: first.seq,
                reason: format!(
                    "first record is {}, expected run_started",
                    first.entry.kind()
                ),
            });
        };
        let mut ledger = Ledger::new(first.run, plan.clone());
        for record in records {
            if record.format > FORMAT {
                return Err(Error::NewerFormat {
                    seq: record.seq,
                    format: record.format,
                });
            }
            if record.run != ledger.run {
                return Err(Error::Inconsistent {
                    seq: record.seq,
                    reason: format!("record of run {} inside run {}", record.run, ledger.run),
                });
            }
            if record.seq != ledger.next_seq {
                return Err(Error::Inconsistent {
                    seq: record.seq,
                    reason: format!("expected sequence number {}", ledger.next_seq),
                });
            }
            ledger.apply(&record.entry)?;
        }
        Ok(ledger)
    }

    /// Fold one record into the ledger. Errors leave the ledger unchanged.
    pub fn apply(&mut self, entry: &Entry) -> Result<(), Error> {
        let seq = self.next_seq;
        let bad = |reason: String| Err(Error::Inconsistent { seq, reason });
        let stuck_forced = matches!(
            (&self.terminal, entry),
            (
                Some(Outcome::Stuck { .. }),
                Entry::Recovery { forced: true, .. }
            )
        );
        if self.terminal.is_some() && !stuck_forced {
            return bad(format!("{} after the run ended", entry.kind()));
        }
        if !matches!(entry, Entry::RunStarted { .. }) && seq == 0 {
            return bad(format!("{} before run_started", entry.kind()));
        }
        if let Some(step) = entry.step() {
            if step >= self.steps.len() {
                return bad(format!("step {step} but the plan has {}", self.steps.len()));
            }
        }
        match entry {
            Entry::RunStarted { plan } => {
                if seq != 0 {
                    return bad("run_started in the middle of a run".into());
                }
                if *plan != self.plan {
                    return bad("run_started describes a different plan".into());
                }
            }
            Entry::Recovery { mode, forced } => {
                if *mode == Mode::Rollback {
                    if let Err(reason) = self.may_roll_back() {
                        return bad(reason);
                    }
                }
                if *mode == Mode::Resume && self.direction == Direction::Backward {
                    return bad("resume of a run that is rolling back".into());
                }
                if *forced {
                    for s in &mut self.steps {
                        s.intents = 0;
                        s.undo_intents = 0;
                    }
                    self.terminal = None;
                }
                if *mode == Mode::Rollback && self.direction == Direction::Forward {
                    self.direction = Direction::Backward;
                    self.rollback_reason = Some(
                        "rolled back by a recovery session (molt rollback or molt recover)".into(),
                    );
                }
                self.open = None;
            }
            Entry::StepIntent { step, .. } => {
                if self.direction != Direction::Forward {
                    return bad("step_intent while rolling back".into());
                }
                if self.next_forward() != Some(*step) {
                    return bad(format!("step_intent for step {step} out of order"));
                }
                let s = &mut self.steps[*step];
                s.intents += 1;
                s.started = true;
                self.open = Some(Open::Do(*step));
            }
            Entry::StepDone { step, receipt } => {
                if self.open != Some(Open::Do(*step)) {
                    return bad(format!("step_done for step {step} without its intent"));
                }
                let s = &mut self.steps[*step];
                s.done = true;
                s.receipt = receipt.clone();
                s.last_error = None;
                self.open = None;
            }
            Entry::StepFailed { step, error } => {
                if self.open != Some(Open::Do(*step)) {
                    return bad(format!("step_failed for step {step} without its intent"));
                }
                self.steps[*step].last_error = Some(error.clone());
                self.open = None;
            }
            Entry::RollbackStarted { reason } => {
                if self.direction != Direction::Forward {
                    return bad("rollback_started twice".into());
                }
                if let Err(reason) = self.may_roll_back() {
                    return bad(reason);
                }
                self.direction = Direction::Backward;
                self.rollback_reason = Some(reason.clone());
                self.open = None;
            }
            Entry::UndoIntent { step, .. } => {
                if self.direction != Direction::Backward {
                    return bad("undo_intent while moving forward".into());
                }
                if self.next_backward() != Some(*step) {
                    return bad(format!("undo_intent for step {step} out of order"));
                }
                self.steps[*step].undo_intents += 1;
                self.open = Some(Open::Undo(*step));
            }
            Entry::UndoDone { step } => {
                if self.open != Some(Open::Undo(*step)) {
                    return bad(format!("undo_done for step {step} without its intent"));
                }
                let s = &mut self.steps[*step];
                s.undone = true;
                s.last_error = None;
                self.open = None;
            }
            Entry::UndoFailed { step, error } => {
                if self.open != Some(Open::Undo(*step)) {
                    return bad(format!("undo_failed for step {step} without its intent"));
                }
                self.steps[*step].last_error = Some(error.clone());
                self.open = None;
            }
            Entry::RunCommitted => {
                if self.direction != Direction::Forward || self.next_forward().is_some() {
                    return bad("run_committed before every step was done".into());
                }
                self.terminal = Some(Outcome::Committed);
                self.open = None;
            }
            Entry::RunRolledBack => {
                if self.direction != Direction::Backward || self.next_backward().is_some() {
                    return bad("run_rolled_back before every started step was undone".into());
                }
                self.terminal = Some(Outcome::RolledBack);
                self.open = None;
            }
            Entry::RunStuck { step, reason } => {
                self.terminal = Some(Outcome::Stuck {
                    step: *step,
                    reason: reason.clone(),
                });
                self.open = None;
            }
        }
        self.next_seq += 1;
        Ok(())
    }

    /// The first step whose `do` has not completed (forward direction).
    pub fn next_forward(&self) -> Option<usize> {
        self.steps.iter().position(|s| !s.done)
    }

    /// The last started step whose `undo` has not completed (backward direction).
    pub fn next_backward(&self) -> Option<usize> {
        self.steps.iter().rposition(|s| s.started && !s.undone)
    }

    /// The next step to do (forward) or undo (backward), with how many times that `do` or
    /// `undo` has already been started in this run (what the loop breaker counts).
    pub fn next_in(&self, direction: Direction) -> Option<(usize, u32)> {
        match direction {
            Direction::Forward => self.next_forward().map(|i| (i, self.steps[i].intents)),
            Direction::Backward => self
                .next_backward()
                .map(|i| (i, self.steps[i].undo_intents)),
        }
    }

    /// The loop breaker's message for a step started `tries` times.
    pub fn stuck_reason(&self, step: usize, direction: Direction, tries: u32) -> String {
        let verb = match direction {
            Direction::Forward => "do",
            Direction::Backward => "undo",
        };
        format!(
            "{verb} of {} started {tries} times without finishing",
            self.step_name(step)
        )
    }

    /// True once any step of the given class has started.
    pub fn started_class(&self, class: StepClass) -> bool {
        self.plan
            .steps
            .iter()
            .zip(&self.steps)
            .any(|(meta, s)| meta.class == class && s.started)
    }

    /// Rollback is impossible once a forward-only step has started.
    pub fn may_roll_back(&self) -> Result<(), String> {
        match self
            .plan
            .steps
            .iter()
            .zip(&self.steps)
            .position(|(meta, s)| meta.class == StepClass::ForwardOnly && s.started)
        {
            Some(i) => Err(format!(
                "forward-only step {i} ({}) has started; the run can only be resumed",
                self.plan.steps[i].name
            )),
            None => Ok(()),
        }
    }

    /// Name of step `i`, for messages.
    pub fn step_name(&self, i: usize) -> &str {
        self.plan.steps.get(i).map_or("?", |s| s.name.as_str())
    }
}
