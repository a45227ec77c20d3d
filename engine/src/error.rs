//! The engine's error type.

use crate::record::StepMeta;

/// Everything that can go wrong inside the engine. Step failures are not errors of the engine:
/// they are events that make the run roll back (see [`crate::machine`]).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A (state, event) pair that the transition table does not allow: a bug in the caller.
    #[error("impossible transition: event {event} in state {state}")]
    Transition {
        state: &'static str,
        event: &'static str,
    },
    /// The journal holds no record for this run.
    #[error("the run has no records")]
    EmptyRun,
    /// A record that the state machine could not have written; nothing is done with the run.
    #[error("journal record {seq} is inconsistent: {reason}")]
    Inconsistent { seq: u64, reason: String },
    /// A record written by a newer molt.
    #[error("journal record {seq} has format {format}, this molt reads format {} and older; use a newer molt", crate::record::FORMAT)]
    NewerFormat { seq: u64, format: u32 },
    /// The operator asked for something the run's state does not allow.
    #[error("{0}")]
    Refused(String),
    /// A plan that breaks the engine's rules (e.g. a reversible step after a forward-only one).
    #[error("invalid plan: {0}")]
    InvalidPlan(String),
    /// The plan rebuilt from the journal is not the plan the run started with.
    #[error("the plan rebuilt for plan id {id} does not match the journal: journal has {journal:?}, rebuilt {rebuilt:?}")]
    PlanMismatch {
        id: String,
        journal: Vec<StepMeta>,
        rebuilt: Vec<StepMeta>,
    },
    /// Writing a record failed; the side effect it announces was not performed.
    #[error("journal write failed (the step it announced was not run)")]
    Journal(#[source] Box<dyn std::error::Error + Send + Sync>),
}
