//! Documented exit codes, and the error wrapper that carries one.
//!
//! | code | meaning |
//! |---|---|
//! | 0 | done: the run committed, the requested rollback finished, or there was nothing to do |
//! | 1 | error: bad input or an I/O failure; molt changed nothing it did not journal |
//! | 2 | usage: the command line does not parse |
//! | 3 | locked: another molt holds the installation (the message names it) |
//! | 4 | rolled back: the run failed and was rolled back; the installation is as before |
//! | 5 | incomplete: the run is unfinished; `molt resume` or `molt rollback` continues it |
//! | 6 | stuck: the loop breaker stopped the run; fix the cause, then `--force` |
//! | 7 | journal: a record is damaged, newer than this molt, or names an unknown plan; nothing done |
//! | 8 | refused: the schema migration is destructive and not allowed; nothing was applied |

use std::fmt;

pub const OK: u8 = 0;
pub const ERROR: u8 = 1;
pub const LOCKED: u8 = 3;
pub const ROLLED_BACK: u8 = 4;
pub const INCOMPLETE: u8 = 5;
pub const STUCK: u8 = 6;
pub const JOURNAL: u8 = 7;
pub const REFUSED: u8 = 8;

/// An error with a specific exit code; anything else exits with [`ERROR`].
#[derive(Debug)]
pub struct Coded {
    pub code: u8,
    pub message: String,
}

impl fmt::Display for Coded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Coded {}

pub fn coded(code: u8, message: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(Coded {
        code,
        message: message.into(),
    })
}

/// The exit code for an error chain.
pub fn code_of(err: &anyhow::Error) -> u8 {
    // `downcast_ref` on the error itself also finds a `Coded` given as context.
    err.downcast_ref::<Coded>()
        .map(|c| c.code)
        .or_else(|| {
            err.chain()
                .find_map(|e| e.downcast_ref::<Coded>().map(|c| c.code))
        })
        .unwrap_or(ERROR)
}

/// A library error (with its sources, "a: b: c") as an error exiting with [`ERROR`].
pub fn failed(e: impl std::error::Error) -> anyhow::Error {
    let mut message = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        message.push_str(": ");
        message.push_str(&s.to_string());
        source = s.source();
    }
    coded(ERROR, message)
}
