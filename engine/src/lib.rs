//! molt's step engine: the `Step` trait, `Plan`, the run state machine, its driver and the
//! recovery decision.
//!
//! The engine is sans-I/O at its core: [`Machine`] takes [`Event`]s and returns [`Command`]s;
//! [`drive`] performs them through two traits, [`Journal`] (implemented by the `journal`
//! crate over sled) and [`DynStep`] (implemented by every step in the `steps` crate). The
//! engine knows nothing of sled, docker, clap or the terminal.
//!
//! Architecture invariant: no side effect before its journal record is durable. The driver
//! syncs the journal before it performs any `Apply` or `Undo` (and before it reports the end
//! of a session), and stops at the first journal error. Records with no side effect between
//! them (a step's done and the next step's intent) become durable together: one sync per side
//! effect, not per record.

mod decide;
mod driver;
mod error;
mod ledger;
mod machine;
mod record;
mod step;

pub use decide::{decide, decide_ledger, Decision};
pub use driver::{
    drive, drive_observed, failpoint, BoxError, DriveOptions, Finish, Journal, Observer, Progress,
};
pub use error::Error;
pub use ledger::{Direction, Ledger, Open, StepState};
pub use machine::{Command, Event, Halt, Limits, Machine, State};
pub use record::{Entry, Mode, Outcome, PlanMeta, Record, RunId, StepClass, StepMeta, FORMAT};
pub use step::{validate_classes, DynStep, Plan, Step, StepCtx, StepError};
