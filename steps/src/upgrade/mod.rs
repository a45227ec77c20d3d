//! The steps only an upgrade has (the others are shared with the smaller plans): merging the
//! operator's configuration, the restore point that brings the data back on rollback,
//! starting the database alone, the verify gate, the commit and the housekeeping after it.
//! The plan that orders them is `plans/upgrade.rs`.

pub mod check;
pub mod commit;
pub mod config;
pub mod database;
pub mod restore_point;
pub mod verify;

pub use check::CheckRelease;
pub use commit::{Commit, Housekeeping, Installed};
pub use config::{merge_env, MergeConfig};
pub use database::StartDatabase;
pub use restore_point::RestorePoint;
pub use verify::Verify;
