//! The driver: performs the machine's commands (journal writes, step calls) and feeds back the
//! results. The only place where the engine touches the outside world, through the [`Journal`]
//! and [`DynStep`] traits.

use crate::error::Error;
use crate::machine::{Command, Event, Halt, Machine};
use crate::record::{Outcome, Record};
use crate::step::{DynStep, StepCtx};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Storage of records, implemented by the `journal` crate (and by in-memory models in tests).
///
/// - `append` adds a record after the previous ones; it need not be durable yet. After a crash
///   the journal holds a prefix of the appended records: every synced record, possibly some of
///   the later ones, never a record without the ones before it.
/// - `sync` returns only when every appended record is durable (power loss included).
///
/// An `Err` from either means the record may or may not be stored; the driver stops at once
/// without performing any further side effect.
pub trait Journal {
    fn append(&mut self, record: &Record) -> Result<(), BoxError>;
    fn sync(&mut self) -> Result<(), BoxError>;
}

/// The error type of [`Journal`] implementations.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How a session ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Finish {
    /// The run reached a terminal record.
    Finished(Outcome),
    /// The session stopped; the run is unfinished and another session may continue it.
    Halted(Halt),
}

/// Driver settings.
#[derive(Clone, Copy, Debug)]
pub struct DriveOptions {
    /// Sleep before retrying a failed `undo`: `undo_backoff * 2^(retry-1)`.
    pub undo_backoff: Duration,
}

impl Default for DriveOptions {
    fn default() -> DriveOptions {
        DriveOptions {
            undo_backoff: Duration::from_millis(200),
        }
    }
}

/// A named crash point. With the `failpoints` feature and the point configured (`fail::cfg`,
/// see the CLI's `MOLT_FAILPOINTS`), the process aborts here: no destructor, no flush, no
/// cleanup, like `kill -9` or a power cut as far as this process's own state is concerned.
/// Without the feature this compiles to nothing.
pub fn failpoint(name: &str) {
    #[cfg(not(feature = "failpoints"))]
    let _ = name;
    fail::fail_point!(name, |_| {
        eprintln!("molt: failpoint {name} reached, aborting");
        std::process::abort()
    });
}

/// What the driver tells an observer (the cli's progress lines, `--json` events). Observers
/// see a step after its intent is durable and after it returned; they cannot change the run.
#[derive(Clone, Copy, Debug)]
pub enum Progress<'a> {
    /// A step's `do` (or `undo`, when `undo` is true) begins.
    Started {
        step: usize,
        name: &'a str,
        undo: bool,
        attempt: u32,
    },
    /// It returned: `error` is `None` on success.
    Ended {
        step: usize,
        name: &'a str,
        undo: bool,
        elapsed: Duration,
        error: Option<&'a str>,
        receipt: Option<&'a serde_json::Value>,
    },
}

/// Receives [`Progress`] from [`drive_observed`].
pub trait Observer: Send {
    fn progress(&mut self, event: Progress<'_>);
}

struct Silent;

impl Observer for Silent {
    fn progress(&mut self, _event: Progress<'_>) {}
}

/// Run the machine to the end of this session, starting with `first`
/// ([`Event::Start`], [`Event::Resume`] or [`Event::Rollback`]).
pub async fn drive(
    machine: &mut Machine,
    first: Event,
    steps: &[Box<dyn DynStep>],
    journal: &mut dyn Journal,
    options: DriveOptions,
) -> Result<Finish, Error> {
    drive_observed(machine, first, steps, journal, options, &mut Silent).await
}

/// [`drive`], telling `observer` when each step begins and ends.
pub async fn drive_observed(
    machine: &mut Machine,
    first: Event,
    steps: &[Box<dyn DynStep>],
    journal: &mut dyn Journal,
    options: DriveOptions,
    observer: &mut dyn Observer,
) -> Result<Finish, Error> {
    if steps.len() != machine.ledger().plan.steps.len() {
        return Err(Error::InvalidPlan(format!(
            "{} step implementations for a plan of {} steps",
            steps.len(),
            machine.ledger().plan.steps.len()
        )));
    }
    let run = machine.ledger().run;
    let mut event = first;
    let mut unsynced = false;
    loop {
        let command = machine.handle(event)?;
        if unsynced && !matches!(command, Command::Write(_)) {
            // Everything written so far becomes durable before the next side effect (or before
            // the session reports its end).
            failpoint("engine::before_sync");
            journal.sync().map_err(Error::Journal)?;
            unsynced = false;
            failpoint("engine::after_sync");
        }
        event = match command {
            Command::Write(mut record) => {
                record.at_ms = now_ms();
                failpoint("engine::before_write");
                journal.append(&record).map_err(Error::Journal)?;
                unsynced = true;
                failpoint("engine::after_write");
                tracing::debug!(run = %run, seq = record.seq, kind = record.entry.kind(), "journaled");
                Event::Written
            }
            Command::Apply { step, attempt } => {
                let ctx = StepCtx { run, step, attempt };
                let s = &steps[step];
                let name = s.name();
                tracing::info!(run = %run, step, attempt, name = %name, "do");
                observer.progress(Progress::Started {
                    step,
                    name: &name,
                    undo: false,
                    attempt,
                });
                let began = std::time::Instant::now();
                let result = s.apply_json(&ctx).await;
                observer.progress(Progress::Ended {
                    step,
                    name: &name,
                    undo: false,
                    elapsed: began.elapsed(),
                    error: result.as_ref().err().map(|e| e.message.as_str()),
                    receipt: result.as_ref().ok().and_then(|r| r.as_ref()),
                });
                match result {
                    Ok(receipt) => {
                        failpoint("engine::after_apply");
                        Event::Applied { receipt }
                    }
                    Err(e) => {
                        tracing::info!(run = %run, step, name = %name, error = %e, "do failed");
                        Event::ApplyFailed { error: e.message }
                    }
                }
            }
            Command::Undo {
                step,
                attempt,
                receipt,
            } => {
                let ctx = StepCtx { run, step, attempt };
                let s = &steps[step];
                if attempt > 1 {
                    let factor = 1u32 << (attempt - 2).min(8);
                    tokio::time::sleep(options.undo_backoff * factor).await;
                }
                let name = s.name();
                tracing::info!(run = %run, step, attempt, name = %name, "undo");
                observer.progress(Progress::Started {
                    step,
                    name: &name,
                    undo: true,
                    attempt,
                });
                let began = std::time::Instant::now();
                let result = s.undo_json(&ctx, receipt).await;
                observer.progress(Progress::Ended {
                    step,
                    name: &name,
                    undo: true,
                    elapsed: began.elapsed(),
                    error: result.as_ref().err().map(|e| e.message.as_str()),
                    receipt: None,
                });
                match result {
                    Ok(()) => {
                        failpoint("engine::after_undo");
                        Event::Undone
                    }
                    Err(e) => {
                        tracing::warn!(run = %run, step, name = %name, error = %e, "undo failed; will retry");
                        Event::UndoFailed { error: e.message }
                    }
                }
            }
            Command::Finish(outcome) => return Ok(Finish::Finished(outcome)),
            Command::Halt(halt) => return Ok(Finish::Halted(halt)),
        };
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
