//! molt's concrete steps and the plans built from them.
//!
//! One file per step, each implementing [`engine::Step`] with its contract written on the type;
//! [`plans`] is the dispatcher that turns a plan id and its JSON spec back into steps, so that a
//! fresh process can resume a run from the journal alone.
//!
//! File-system steps keep their undo information in a per-run scratch directory
//! (`cache/runs/<run>/step-<i>/`, see [`fsutil::Stash`]), written before they change anything.

pub mod backup;
pub mod beneath;
pub mod config;
pub mod copy_tree;
pub mod docker;
mod error;
pub mod fetch;
pub mod fsutil;
pub mod http;
pub mod install;
pub mod manifest;
pub mod move_path;
pub mod notify;
pub mod package;
pub mod plans;
pub mod release;
pub mod remove_path;
pub mod report;
pub mod root;
pub mod schema;
pub mod self_update;
pub mod services;
pub mod switch_link;
pub mod trust;
pub mod unattended;
pub mod units;
pub mod upgrade;
pub mod verify_file;
pub mod version;
pub mod window;
pub mod write_file;

pub use error::Error;
pub use install::Installation;
pub use plans::{build, Env, FsOp, FsScript, PlanSpec};

/// Milliseconds since the epoch (journal and marker times).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Turn an I/O error into a step error naming the operation and path.
pub(crate) fn io_err(op: &str, path: &std::path::Path, e: std::io::Error) -> engine::StepError {
    engine::StepError::from_error(&format!("{op} {}", path.display()), &e)
}
