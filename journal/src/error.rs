//! The journal's error type.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Another process has the journal open (sled's own file lock).
    #[error("the journal at {path} is in use by another process")]
    Busy { path: PathBuf },
    /// sled could not open the directory: corrupt files, permissions, not a journal.
    #[error("cannot open the journal at {path}: {reason}")]
    Open { path: PathBuf, reason: String },
    /// The journal was written by a newer molt.
    #[error("the journal at {path} was written with record format {found}; this molt reads format {} and older; use a newer molt", engine::FORMAT)]
    NewerFormat { path: PathBuf, found: u32 },
    /// Reading or writing failed.
    #[error("journal {op} failed at {path}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("journal {op} failed at {path}")]
    Sled {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: sled::Error,
    },
    /// A record that cannot be encoded (never expected: records are plain data).
    #[error("cannot encode journal record {seq} of run {run}")]
    Encode {
        run: engine::RunId,
        seq: u64,
        #[source]
        source: serde_json::Error,
    },
    /// The lock file could not be created, read or written.
    #[error("lock file {path}: {op} failed")]
    Lock {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// sled opened but lacks records its mirror (`records.log`) holds: sled's files lost
    /// data (truncated or damaged), and a run read from them would be missing its end.
    #[error("the journal at {path} lost {missing} records that its mirror records.log holds (first: run {first_run} record {first_seq})")]
    Diverged {
        path: PathBuf,
        missing: usize,
        first_run: u64,
        first_seq: u64,
    },
    /// Salvage could not rebuild a journal that recovery may act on; nothing was changed.
    #[error("the journal at {path} cannot be salvaged: {reason}")]
    Unsalvageable { path: PathBuf, reason: String },
}
