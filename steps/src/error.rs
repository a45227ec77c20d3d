//! The steps crate's error type (building plans; step failures are `engine::StepError`).

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The journal names a plan this binary does not know how to build.
    #[error("plan id {id:?} is unknown to this molt (it knows: {known}); use the molt that started the run")]
    UnknownPlan { id: String, known: String },
    /// The plan's parameters do not describe a valid plan.
    #[error("invalid plan {id:?}: {reason}")]
    BadSpec { id: String, reason: String },
    #[error(transparent)]
    Engine(#[from] engine::Error),
}
