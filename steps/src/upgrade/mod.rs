//! The steps only an upgrade has (the others are shared with the smaller plans): merging the
//! operator's configuration, the restore point that brings the data back on rollback,
//! starting the database alone, the verify gate, the commit and the housekeeping after it.
//! The plan that orders them is `plans/upgrade.rs`.

pub mod check;
pub mod commit;
pub mod config;
pub mod database;
pub mod orders;
pub mod restore_point;
pub mod standby;
pub mod verify;

pub use check::CheckRelease;
pub use commit::{Commit, Housekeeping, Installed};
pub use config::{merge_env, MergeConfig};
pub use database::StartDatabase;
pub use orders::Orders;
pub use restore_point::RestorePoint;
pub use standby::{Standby, StandbyRef};
pub use verify::Verify;

use engine::StepError;
use std::path::PathBuf;

/// How the upgrade's own steps fail; the engine journals the message with its sources.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{file} names {what}, which the release does not hold")]
    MissingFile { file: PathBuf, what: String },
    #[error("release.toml names database service {service:?}, which {compose_file} does not define (it has: {defined})")]
    NoSuchService {
        service: String,
        compose_file: String,
        defined: String,
    },
    #[error("database service {service} is running but does not accept connections after {secs}s")]
    DatabaseSilent {
        service: String,
        secs: u64,
        #[source]
        source: crate::schema::live::LiveError,
    },
    #[error("the live schema differs from the release's: {} statement(s) would remain: {}", .statements.len(), .statements.join("; "))]
    SchemaDiffers { statements: Vec<String> },
    #[error("backup {0} is not sealed; there would be no way back")]
    NotSealed(String),
    #[error("housekeeping cannot be undone (it runs after the commit)")]
    AfterCommit,
    #[error("cannot encode {what}")]
    Encode {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error(transparent)]
    Live(#[from] crate::schema::live::LiveError),
}

impl From<Error> for StepError {
    fn from(e: Error) -> StepError {
        let mut message = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            message.push_str(": ");
            message.push_str(&s.to_string());
            source = s.source();
        }
        StepError::new(message)
    }
}
