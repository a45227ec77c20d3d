//! Progress of long steps (download, copies, restore) as bytes done of a total, reported to
//! whatever the program installed: the cli draws bars on a terminal; a library user, a test
//! or a benchmark installs nothing and nothing is drawn. Steps never touch the terminal.

use std::sync::{Arc, OnceLock};

/// Receives progress; installed once per process with [`install`].
pub trait Reporter: Send + Sync {
    /// A task of `total` bytes begins; the returned meter gets the position.
    fn begin(&self, what: &str, total: u64) -> Box<dyn Meter>;
}

/// One task's progress.
pub trait Meter: Send + Sync {
    fn set(&self, done: u64);
    fn inc(&self, delta: u64);
    fn finish(&self);
}

static REPORTER: OnceLock<Box<dyn Reporter>> = OnceLock::new();

/// Install the process's reporter (the first call wins).
pub fn install(r: Box<dyn Reporter>) {
    let _ = REPORTER.set(r);
}

struct Silent;

impl Meter for Silent {
    fn set(&self, _done: u64) {}
    fn inc(&self, _delta: u64) {}
    fn finish(&self) {}
}

/// A meter for a task of `total` bytes (a silent one when no reporter is installed).
/// Cloneable, to hand to a writer thread.
#[derive(Clone)]
pub struct Progress(Arc<dyn Meter>);

impl Progress {
    pub fn begin(what: &str, total: u64) -> Progress {
        match REPORTER.get() {
            Some(r) => Progress(Arc::from(r.begin(what, total))),
            None => Progress::silent(),
        }
    }

    pub fn silent() -> Progress {
        Progress(Arc::new(Silent))
    }

    pub fn set(&self, done: u64) {
        self.0.set(done)
    }

    pub fn inc(&self, delta: u64) {
        self.0.inc(delta)
    }

    pub fn finish(&self) {
        self.0.finish()
    }
}
