//! molt's step engine: the `Step` trait, `Plan`, the run state machine, its driver and the
//! recovery decision.
//!
//! The engine is sans-I/O at its core: [`Machine`] takes [`Event`]s and returns [`Command`]s;
//! [`drive`] performs them through two traits, [`Journal`] (implemented by the `journal`
//! crate over sled) and [`DynStep`] (implemented by every step in the `steps` crate). The
//! engine knows nothing of sled, docker, clap or the terminal.
//!
//! Architecture invariant: no side effect before its journal record is durable. The driver
//! performs `Apply`/`Undo` only after the `Persisted` event of the intent record, and stops at
//! the first journal error.

mod decide;
mod driver;
mod error;
mod ledger;
mod machine;
mod record;
mod step;

pub use decide::{decide, decide_ledger, Decision};
pub use driver::{drive, failpoint, DriveOptions, Finish, Journal};
pub use error::Error;
pub use ledger::{Direction, Ledger, Open, StepState};
pub use machine::{Command, Event, Halt, Limits, Machine, State};
pub use record::{Entry, Mode, Outcome, PlanMeta, Record, RunId, StepClass, StepMeta, FORMAT};
pub use step::{validate_classes, DynStep, Plan, Step, StepCtx, StepError};
