//! The `Step` trait every phase of an upgrade implements, its type-erased twin, and `Plan`.

use crate::error::Error;
use crate::record::{PlanMeta, RunId, StepClass, StepMeta};
use async_trait::async_trait;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// What a step is told about the call it is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StepCtx {
    pub run: RunId,
    /// Index of the step in its plan.
    pub step: usize,
    /// 1-based count of starts of this `do` (or `undo`) within the run.
    pub attempt: u32,
}

/// A step's failure: a message for the operator, with the cause chain already flattened so it
/// can be journaled as text.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct StepError {
    pub message: String,
}

impl StepError {
    pub fn new(message: impl Into<String>) -> StepError {
        StepError {
            message: message.into(),
        }
    }

    /// Flatten an error and its sources ("a: b: c").
    pub fn from_error(context: &str, err: &(dyn std::error::Error + 'static)) -> StepError {
        let mut message = format!("{context}: {err}");
        let mut source = err.source();
        while let Some(s) = source {
            message.push_str(": ");
            message.push_str(&s.to_string());
            source = s.source();
        }
        StepError { message }
    }
}

/// One phase of a run, with its reversal.
///
/// # Contract
/// - `apply` is the step's `do`. `Ok(receipt)` guarantees the step's whole effect is in place
///   and durable (fsynced where it is on disk); the receipt is journaled and given back to
///   `undo`. `Err` means the effect may be partly in place: the engine will call `undo`.
/// - `apply` is idempotent: it converges from any partial state it may have left when the
///   process died half-way, so resume can simply call it again. A step typically records what
///   it is about to change in a deterministic place *before* changing it.
/// - `undo` restores the state before `apply` began, from any partial state, with the receipt
///   when `apply` returned one and without it (`None`) when the process died inside `apply`.
///   `undo` is idempotent too, and a no-op when `apply` never got to change anything.
///   `Err` from `undo` is retried by the engine; its partial effects must be retry-safe.
/// - Neither may rely on in-memory state from an earlier call: the next call may be in a new
///   process after a crash.
#[async_trait]
pub trait Step: Send + Sync {
    /// What `apply` returns and `undo` needs. Stored as JSON in the journal.
    type Receipt: Serialize + DeserializeOwned + Send + Sync + 'static;

    /// Stable, human-readable name ("stage 2.1.0", "switch current").
    fn name(&self) -> String;

    fn class(&self) -> StepClass;

    /// The step's `do`.
    async fn apply(&self, ctx: &StepCtx) -> Result<Self::Receipt, StepError>;

    /// Reverse `apply`, see the trait's contract.
    async fn undo(&self, ctx: &StepCtx, receipt: Option<Self::Receipt>) -> Result<(), StepError>;
}

/// Object-safe form of [`Step`] with receipts as JSON; implemented for every `Step`.
#[async_trait]
pub trait DynStep: Send + Sync {
    fn name(&self) -> String;
    fn class(&self) -> StepClass;
    async fn apply_json(&self, ctx: &StepCtx) -> Result<Option<serde_json::Value>, StepError>;
    async fn undo_json(
        &self,
        ctx: &StepCtx,
        receipt: Option<serde_json::Value>,
    ) -> Result<(), StepError>;
}

#[async_trait]
impl<S: Step> DynStep for S {
    fn name(&self) -> String {
        Step::name(self)
    }

    fn class(&self) -> StepClass {
        Step::class(self)
    }

    async fn apply_json(&self, ctx: &StepCtx) -> Result<Option<serde_json::Value>, StepError> {
        let receipt = self.apply(ctx).await?;
        let value = serde_json::to_value(&receipt)
            .map_err(|e| StepError::from_error("cannot encode the step's receipt", &e))?;
        Ok(Some(value))
    }

    async fn undo_json(
        &self,
        ctx: &StepCtx,
        receipt: Option<serde_json::Value>,
    ) -> Result<(), StepError> {
        // A receipt that no longer decodes (journal written by another molt version) is treated
        // as absent: every undo must work without one.
        let typed = receipt.and_then(|v| match serde_json::from_value::<S::Receipt>(v) {
            Ok(r) => Some(r),
            Err(e) => {
                tracing::warn!(step = ctx.step, error = %e, "receipt does not decode; undoing without it");
                None
            }
        });
        self.undo(ctx, typed).await
    }
}

/// An ordered list of steps plus the durable description of how it was built.
pub struct Plan {
    pub meta: PlanMeta,
    pub steps: Vec<Box<dyn DynStep>>,
}

impl Plan {
    /// Build a plan. `id` names the builder and `spec` its parameters, so that recovery in a
    /// new process can build the same plan again. Forward-only steps must form the plan's tail:
    /// a reversible step after one could never be rolled back.
    pub fn new(
        id: impl Into<String>,
        spec: serde_json::Value,
        steps: Vec<Box<dyn DynStep>>,
    ) -> Result<Plan, Error> {
        if steps.is_empty() {
            return Err(Error::InvalidPlan("a plan needs at least one step".into()));
        }
        let metas: Vec<StepMeta> = steps
            .iter()
            .map(|s| StepMeta {
                name: s.name(),
                class: s.class(),
            })
            .collect();
        validate_classes(&metas)?;
        Ok(Plan {
            meta: PlanMeta {
                id: id.into(),
                spec,
                steps: metas,
            },
            steps,
        })
    }

    /// Check that this (rebuilt) plan is the one a journal describes.
    pub fn check_matches(&self, journal: &PlanMeta) -> Result<(), Error> {
        if self.meta.id != journal.id || self.meta.steps != journal.steps {
            return Err(Error::PlanMismatch {
                id: journal.id.clone(),
                journal: journal.steps.clone(),
                rebuilt: self.meta.steps.clone(),
            });
        }
        Ok(())
    }
}

/// Forward-only steps must be a suffix of the plan.
pub fn validate_classes(steps: &[StepMeta]) -> Result<(), Error> {
    if let Some(first) = steps.iter().position(|s| s.class == StepClass::ForwardOnly) {
        if let Some(bad) = steps[first..]
            .iter()
            .find(|s| s.class != StepClass::ForwardOnly)
        {
            return Err(Error::InvalidPlan(format!(
                "step {:?} ({:?}) comes after forward-only step {:?}; forward-only steps must be last",
                bad.name, bad.class, steps[first].name
            )));
        }
    }
    Ok(())
}
