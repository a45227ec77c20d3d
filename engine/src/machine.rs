//! The run state machine: events in, commands out, no I/O.
//!
//! Every transition is in [`Machine::handle`], one `match (state, event)` that names every
//! variant; a pair the table does not allow is [`Error::Transition`], never a panic. The machine
//! never assumes a side effect happened: it moves on only when the driver reports that the
//! record announcing it was written ([`Event::Written`]) or that the step returned. The
//! driver makes written records durable before it performs any `Apply` or `Undo`.

use crate::error::Error;
use crate::ledger::{Direction, Ledger};
use crate::record::{Entry, Mode, Outcome, PlanMeta, Record, RunId};

/// Bounds that keep a run from looping forever.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Loop breaker: a step whose `do` (or `undo`) was started this many times in one run is
    /// not started again; the run is marked stuck.
    pub max_attempts: u32,
    /// Failed `undo` calls retried within one session before the session halts.
    pub undo_retries: u32,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_attempts: 5,
            undo_retries: 2,
        }
    }
}

/// Input to the machine.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// Begin a new run (the machine was built with [`Machine::new`]).
    Start,
    /// Continue an existing run forward.
    Resume { forced: bool },
    /// Turn an existing run around and undo it.
    Rollback { forced: bool },
    /// The record of the last [`Command::Write`] is written to the journal (the driver makes
    /// it durable before the next side effect).
    Written,
    /// `do` returned Ok.
    Applied { receipt: Option<serde_json::Value> },
    /// `do` returned Err.
    ApplyFailed { error: String },
    /// `undo` returned Ok.
    Undone,
    /// `undo` returned Err.
    UndoFailed { error: String },
}

impl Event {
    pub fn name(&self) -> &'static str {
        match self {
            Event::Start => "start",
            Event::Resume { .. } => "resume",
            Event::Rollback { .. } => "rollback",
            Event::Written => "written",
            Event::Applied { .. } => "applied",
            Event::ApplyFailed { .. } => "apply_failed",
            Event::Undone => "undone",
            Event::UndoFailed { .. } => "undo_failed",
        }
    }
}

/// Why a session stopped without finishing the run; another session can continue it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "halt", rename_all = "snake_case")]
pub enum Halt {
    /// A forward-only step failed; the run can only be resumed.
    ForwardFailed { step: usize, error: String },
    /// `undo` kept failing within this session; `molt rollback` continues.
    UndoFailed { step: usize, error: String },
}

/// Output of the machine: what the driver must do next.
#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    /// Append this record to the journal, then report [`Event::Written`].
    Write(Record),
    /// Run `do` of a step, then report `Applied` or `ApplyFailed`.
    Apply { step: usize, attempt: u32 },
    /// Run `undo` of a step, then report `Undone` or `UndoFailed`.
    Undo {
        step: usize,
        attempt: u32,
        receipt: Option<serde_json::Value>,
    },
    /// The run reached a terminal record.
    Finish(Outcome),
    /// The session stops; the run is not finished.
    Halt(Halt),
}

/// Where the machine is.
#[derive(Clone, Debug, PartialEq)]
pub enum State {
    /// Built, waiting for `Start`, `Resume` or `Rollback`.
    Idle,
    /// Waiting for this record to be persisted.
    Writing(Entry),
    /// Waiting for `do` of this step.
    Applying(usize),
    /// Waiting for `undo` of this step.
    Undoing(usize),
    Halted(Halt),
    Finished(Outcome),
}

impl State {
    pub fn name(&self) -> &'static str {
        match self {
            State::Idle => "idle",
            State::Writing(_) => "writing",
            State::Applying(_) => "applying",
            State::Undoing(_) => "undoing",
            State::Halted(_) => "halted",
            State::Finished(_) => "finished",
        }
    }
}

/// The state machine of one run.
#[derive(Clone, Debug)]
pub struct Machine {
    ledger: Ledger,
    started: bool,
    state: State,
    limits: Limits,
    /// `undo` failures in this session (not persisted: a new session gets fresh retries, the
    /// persisted loop breaker still bounds the total).
    undo_failures: u32,
}

impl Machine {
    /// A machine for a new run; feed it [`Event::Start`].
    pub fn new(run: RunId, plan: PlanMeta, limits: Limits) -> Machine {
        Machine {
            ledger: Ledger::new(run, plan),
            started: false,
            state: State::Idle,
            limits,
            undo_failures: 0,
        }
    }

    /// A machine for an existing run, from its records; feed it `Resume` or `Rollback`.
    pub fn from_records(records: &[Record], limits: Limits) -> Result<Machine, Error> {
        Ok(Machine::from_parts(
            Ledger::replay(records)?,
            State::Idle,
            limits,
        ))
    }

    /// A machine in any state (tests and recovery share this path).
    pub fn from_parts(ledger: Ledger, state: State, limits: Limits) -> Machine {
        Machine {
            started: ledger.next_seq > 0,
            ledger,
            state,
            limits,
            undo_failures: 0,
        }
    }

    pub fn state(&self) -> &State {
        &self.state
    }

    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// The single transition function.
    pub fn handle(&mut self, event: Event) -> Result<Command, Error> {
        let impossible = Error::Transition {
            state: self.state.name(),
            event: event.name(),
        };
        let command = match (&self.state, event) {
            (State::Idle, Event::Start) => {
                if self.started {
                    return Err(Error::Refused(format!(
                        "run {} has already started",
                        self.ledger.run
                    )));
                }
                self.write(Entry::RunStarted {
                    plan: self.ledger.plan.clone(),
                })
            }
            (State::Idle, Event::Resume { forced }) => {
                self.check_attach(Mode::Resume, forced)?;
                self.write(Entry::Recovery {
                    mode: Mode::Resume,
                    forced,
                })
            }
            (State::Idle, Event::Rollback { forced }) => {
                self.check_attach(Mode::Rollback, forced)?;
                self.write(Entry::Recovery {
                    mode: Mode::Rollback,
                    forced,
                })
            }
            (State::Writing(entry), Event::Written) => {
                let entry = entry.clone();
                self.ledger.apply(&entry)?;
                self.started = true;
                self.after_persisted(&entry)
            }
            (State::Applying(step), Event::Applied { receipt }) => {
                let step = *step;
                self.write(Entry::StepDone { step, receipt })
            }
            (State::Applying(step), Event::ApplyFailed { error }) => {
                let step = *step;
                self.write(Entry::StepFailed { step, error })
            }
            (State::Undoing(step), Event::Undone) => {
                let step = *step;
                self.write(Entry::UndoDone { step })
            }
            (State::Undoing(step), Event::UndoFailed { error }) => {
                let step = *step;
                self.write(Entry::UndoFailed { step, error })
            }
            (
                State::Idle,
                Event::Written
                | Event::Applied { .. }
                | Event::ApplyFailed { .. }
                | Event::Undone
                | Event::UndoFailed { .. },
            )
            | (
                State::Writing(_),
                Event::Start
                | Event::Resume { .. }
                | Event::Rollback { .. }
                | Event::Applied { .. }
                | Event::ApplyFailed { .. }
                | Event::Undone
                | Event::UndoFailed { .. },
            )
            | (
                State::Applying(_),
                Event::Start
                | Event::Resume { .. }
                | Event::Rollback { .. }
                | Event::Written
                | Event::Undone
                | Event::UndoFailed { .. },
            )
            | (
                State::Undoing(_),
                Event::Start
                | Event::Resume { .. }
                | Event::Rollback { .. }
                | Event::Written
                | Event::Applied { .. }
                | Event::ApplyFailed { .. },
            )
            | (
                State::Halted(_) | State::Finished(_),
                Event::Start
                | Event::Resume { .. }
                | Event::Rollback { .. }
                | Event::Written
                | Event::Applied { .. }
                | Event::ApplyFailed { .. }
                | Event::Undone
                | Event::UndoFailed { .. },
            ) => return Err(impossible),
        };
        Ok(command)
    }

    /// May a session attach to this run in `mode`?
    fn check_attach(&self, mode: Mode, forced: bool) -> Result<(), Error> {
        let run = self.ledger.run;
        if !self.started {
            return Err(Error::Refused(format!("run {run} has not started")));
        }
        match &self.ledger.terminal {
            Some(Outcome::Committed) => {
                return Err(Error::Refused(format!("run {run} is already committed")))
            }
            Some(Outcome::RolledBack) => {
                return Err(Error::Refused(format!("run {run} is already rolled back")))
            }
            Some(Outcome::Stuck { step, reason }) if !forced => {
                return Err(Error::Refused(format!(
                    "run {run} is stuck at step {step} ({}): {reason}; fix the cause, then force the recovery",
                    self.ledger.step_name(*step)
                )))
            }
            Some(Outcome::Stuck { .. }) | None => {}
        }
        match mode {
            Mode::Resume if self.ledger.direction == Direction::Backward => Err(Error::Refused(
                format!("run {run} is rolling back; finish it with a rollback"),
            )),
            Mode::Rollback => self
                .ledger
                .may_roll_back()
                .map_err(|why| Error::Refused(format!("run {run} cannot be rolled back: {why}"))),
            Mode::Resume => Ok(()),
        }
    }

    /// What follows once `entry` is durable.
    fn after_persisted(&mut self, entry: &Entry) -> Command {
        match entry {
            Entry::RunStarted { .. } | Entry::StepDone { .. } => self.next_forward(),
            Entry::Recovery { mode, .. } => match mode {
                Mode::Resume => self.next_forward(),
                Mode::Rollback => self.next_backward(),
            },
            Entry::StepIntent { step, attempt } => {
                self.state = State::Applying(*step);
                Command::Apply {
                    step: *step,
                    attempt: *attempt,
                }
            }
            Entry::StepFailed { step, error } => {
                if self.ledger.may_roll_back().is_err() {
                    self.halt(Halt::ForwardFailed {
                        step: *step,
                        error: error.clone(),
                    })
                } else {
                    self.write(Entry::RollbackStarted {
                        reason: format!(
                            "step {step} ({}) failed: {error}",
                            self.ledger.step_name(*step)
                        ),
                    })
                }
            }
            Entry::RollbackStarted { .. } | Entry::UndoDone { .. } => self.next_backward(),
            Entry::UndoIntent { step, attempt } => {
                self.state = State::Undoing(*step);
                Command::Undo {
                    step: *step,
                    attempt: *attempt,
                    receipt: self.ledger.steps[*step].receipt.clone(),
                }
            }
            Entry::UndoFailed { step, error } => {
                self.undo_failures += 1;
                if self.undo_failures > self.limits.undo_retries {
                    self.halt(Halt::UndoFailed {
                        step: *step,
                        error: error.clone(),
                    })
                } else {
                    self.next_backward()
                }
            }
            Entry::RunCommitted => self.finish(Outcome::Committed),
            Entry::RunRolledBack => self.finish(Outcome::RolledBack),
            Entry::RunStuck { step, reason } => self.finish(Outcome::Stuck {
                step: *step,
                reason: reason.clone(),
            }),
        }
    }

    fn next_forward(&mut self) -> Command {
        self.next(Direction::Forward)
    }

    fn next_backward(&mut self) -> Command {
        self.next(Direction::Backward)
    }

    /// The next record in `direction`: an intent, the terminal record when nothing is left, or
    /// `run_stuck` when the loop breaker fires.
    fn next(&mut self, direction: Direction) -> Command {
        let entry = match self.ledger.next_in(direction) {
            None => match direction {
                Direction::Forward => Entry::RunCommitted,
                Direction::Backward => Entry::RunRolledBack,
            },
            Some((step, tries)) if tries >= self.limits.max_attempts => Entry::RunStuck {
                step,
                reason: self.ledger.stuck_reason(step, direction, tries),
            },
            Some((step, tries)) => match direction {
                Direction::Forward => Entry::StepIntent {
                    step,
                    attempt: tries + 1,
                },
                Direction::Backward => Entry::UndoIntent {
                    step,
                    attempt: tries + 1,
                },
            },
        };
        self.write(entry)
    }

    fn write(&mut self, entry: Entry) -> Command {
        self.state = State::Writing(entry.clone());
        Command::Write(Record {
            format: crate::record::FORMAT,
            run: self.ledger.run,
            seq: self.ledger.next_seq,
            at_ms: 0,
            entry,
        })
    }

    fn finish(&mut self, outcome: Outcome) -> Command {
        self.state = State::Finished(outcome.clone());
        Command::Finish(outcome)
    }

    fn halt(&mut self, halt: Halt) -> Command {
        self.state = State::Halted(halt.clone());
        Command::Halt(halt)
    }
}
