//! Recovery policy: a pure function from a run's records to what should happen next.
//!
//! `molt recover` (run at boot, unattended) applies [`decide`] verbatim, and the tests check the
//! same function, so the policy that is tested is the policy that runs.
//!
//! # The policy
//! 1. A run whose last record is terminal is finished (committed, rolled back, or stuck).
//! 2. A run that is already rolling back keeps rolling back; so does a run whose step failed
//!    (the automatic rollback had been decided, the process died before it was recorded).
//! 3. A run that has started a pivot or a forward-only step is resumed: past the pivot the data
//!    has been changed in a way only a backup restore reverses, so finishing forward is the
//!    cheaper road, and a failure on it still rolls back automatically.
//! 4. Any other unfinished run is rolled back: nothing has touched the data yet, the old release
//!    comes back as it was, and the operator can start the upgrade again (downloads are cached).
//! 5. Whichever way is chosen, if the next step to (un)do has already been started
//!    `max_attempts` times, the run is stuck (the loop breaker): a crash that repeats at the
//!    same place is not retried forever.

use crate::error::Error;
use crate::ledger::{Direction, Ledger};
use crate::machine::Limits;
use crate::record::{Outcome, Record, StepClass};

/// What recovery should do with a run.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum Decision {
    /// Terminal already; nothing to do.
    Finished { outcome: Outcome },
    /// Continue forward from the first step not done.
    Resume,
    /// Undo every started step, last first.
    Rollback,
    /// The loop breaker fired (or had fired): an operator must look.
    Stuck { step: usize, reason: String },
}

/// Decide from the records alone. Errors mean the records cannot be trusted (inconsistent,
/// newer format): nothing should be done with the run.
pub fn decide(records: &[Record], limits: Limits) -> Result<Decision, Error> {
    Ok(decide_ledger(&Ledger::replay(records)?, limits))
}

/// [`decide`] on an already replayed ledger.
pub fn decide_ledger(ledger: &Ledger, limits: Limits) -> Decision {
    if let Some(outcome) = &ledger.terminal {
        return match outcome {
            Outcome::Stuck { step, reason } => Decision::Stuck {
                step: *step,
                reason: reason.clone(),
            },
            Outcome::Committed | Outcome::RolledBack => Decision::Finished {
                outcome: outcome.clone(),
            },
        };
    }
    let past_pivot =
        ledger.started_class(StepClass::Pivot) || ledger.started_class(StepClass::ForwardOnly);
    // A step failed and the process died before `rollback_started` was durable: the machine
    // had already decided to roll back (rule 2 in spirit).
    let failed_before_turning = ledger.direction == Direction::Forward
        && ledger.open.is_none()
        && ledger
            .next_forward()
            .is_some_and(|i| ledger.steps[i].last_error.is_some())
        && ledger.may_roll_back().is_ok();
    let direction =
        if ledger.direction == Direction::Backward || !past_pivot || failed_before_turning {
            Direction::Backward
        } else {
            Direction::Forward
        };
    if let Some((step, tries)) = ledger.next_in(direction) {
        if tries >= limits.max_attempts {
            return Decision::Stuck {
                step,
                reason: ledger.stuck_reason(step, direction, tries),
            };
        }
    }
    match direction {
        Direction::Forward => Decision::Resume,
        Direction::Backward => Decision::Rollback,
    }
}
