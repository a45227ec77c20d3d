//! Journal records: the durable transitions of a run, and the plan description they carry.
//!
//! These types are the on-disk vocabulary of the journal (the `journal` crate stores them as
//! JSON). Changing a field's meaning or removing a variant is a format change: bump [`FORMAT`]
//! and keep the old journals under `fixtures/journals/` readable or clearly refused.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Format version written into every record. A binary that meets a larger number refuses the
/// record instead of guessing (see `journal::Damage::NewerFormat`).
pub const FORMAT: u32 = 1;

/// Identifies one run within an installation's journal. Allocated by the journal, increasing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RunId(pub u64);

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// How a step may be reversed; fixed per step kind and recorded when the run starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepClass {
    /// `undo` is a cheap, exact reversal (remove a staged directory, re-point a symlink).
    Reversible,
    /// After this step has started, undo means "restore the backup" (schema migration: MySQL
    /// DDL commits itself). Recovery after a crash past a pivot rolls forward, see [`crate::decide`].
    Pivot,
    /// Cannot be undone at all (pruning). Forward-only steps form the tail of a plan; once one
    /// has started the run can only be resumed, never rolled back.
    ForwardOnly,
}

/// One step as recorded in [`Entry::RunStarted`]: enough to check that a rebuilt plan is the
/// same plan, and to print the journal without the step implementations.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepMeta {
    pub name: String,
    pub class: StepClass,
}

/// The durable description of a plan: which builder made it (`id`), with which parameters
/// (`spec`, opaque to the engine), and the resulting steps. Recovery rebuilds the steps from
/// `id` + `spec` in a fresh process.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanMeta {
    pub id: String,
    pub spec: serde_json::Value,
    pub steps: Vec<StepMeta>,
}

/// Why a session attached to an existing run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    Resume,
    Rollback,
}

/// What a record announces. Intents are written before the side effect, `*Done` after it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Entry {
    /// First record of every run (seq 0).
    RunStarted { plan: PlanMeta },
    /// A later session (`molt resume`, `molt rollback`, `molt recover`) took over the run.
    /// `forced` resets the loop breaker's attempt counters (the operator fixed the cause).
    Recovery { mode: Mode, forced: bool },
    /// `do` of `step` is about to run; `attempt` counts starts within the run (1-based).
    StepIntent { step: usize, attempt: u32 },
    /// `do` of `step` returned; `receipt` is what `undo` will be given.
    StepDone {
        step: usize,
        receipt: Option<serde_json::Value>,
    },
    /// `do` of `step` returned an error.
    StepFailed { step: usize, error: String },
    /// The run turned around after a failure and will undo what it did.
    RollbackStarted { reason: String },
    /// `undo` of `step` is about to run.
    UndoIntent { step: usize, attempt: u32 },
    /// `undo` of `step` returned.
    UndoDone { step: usize },
    /// `undo` of `step` returned an error (it will be retried, or the run halts).
    UndoFailed { step: usize, error: String },
    /// Every step is done: terminal.
    RunCommitted,
    /// Every started step is undone: terminal.
    RunRolledBack,
    /// The loop breaker fired: terminal until an operator forces a recovery.
    RunStuck { step: usize, reason: String },
}

impl Entry {
    /// Short stable name, used in logs and the `journal show` table.
    pub fn kind(&self) -> &'static str {
        match self {
            Entry::RunStarted { .. } => "run_started",
            Entry::Recovery { .. } => "recovery",
            Entry::StepIntent { .. } => "step_intent",
            Entry::StepDone { .. } => "step_done",
            Entry::StepFailed { .. } => "step_failed",
            Entry::RollbackStarted { .. } => "rollback_started",
            Entry::UndoIntent { .. } => "undo_intent",
            Entry::UndoDone { .. } => "undo_done",
            Entry::UndoFailed { .. } => "undo_failed",
            Entry::RunCommitted => "run_committed",
            Entry::RunRolledBack => "run_rolled_back",
            Entry::RunStuck { .. } => "run_stuck",
        }
    }

    /// The step this record is about, if any.
    pub fn step(&self) -> Option<usize> {
        match self {
            Entry::StepIntent { step, .. }
            | Entry::StepDone { step, .. }
            | Entry::StepFailed { step, .. }
            | Entry::UndoIntent { step, .. }
            | Entry::UndoDone { step }
            | Entry::UndoFailed { step, .. }
            | Entry::RunStuck { step, .. } => Some(*step),
            Entry::RunStarted { .. }
            | Entry::Recovery { .. }
            | Entry::RollbackStarted { .. }
            | Entry::RunCommitted
            | Entry::RunRolledBack => None,
        }
    }
}

/// One durable transition of a run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub format: u32,
    pub run: RunId,
    /// 0-based, contiguous within a run.
    pub seq: u64,
    /// Wall-clock time of the write, milliseconds since the Unix epoch.
    pub at_ms: u64,
    pub entry: Entry,
}

/// How a run ended (or stopped for good).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    Committed,
    RolledBack,
    Stuck { step: usize, reason: String },
}
