//! The installation lock: one run at a time, and a message that names the holder.
//!
//! The lock is an OS file lock (`flock`, through std's `File::try_lock`) on a small file whose
//! content describes the holder (pid, host, command, since). The kernel releases the lock when
//! the holder dies, however it dies, so a dead holder's lock is simply taken over; its stale
//! description is overwritten. The description is informative only: a garbage file never
//! blocks anyone.

use crate::error::Error;
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Who holds (or held) the lock.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    pub pid: u32,
    pub host: String,
    /// The command line, e.g. `molt upgrade`.
    pub command: String,
    /// Unix seconds.
    pub since: u64,
}

impl Holder {
    /// Describe the current process.
    pub fn this_process(command: impl Into<String>) -> Holder {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "unknown host".into());
        let since = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        Holder {
            pid: std::process::id(),
            host,
            command: command.into(),
            since,
        }
    }
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "pid {} on {} running `{}` since unix time {}",
            self.pid, self.host, self.command, self.since
        )
    }
}

/// The lock is held by someone else.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Held {
    /// The holder's description, when the file holds a readable one.
    pub holder: Option<Holder>,
}

impl std::fmt::Display for Held {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.holder {
            Some(h) => write!(f, "another molt holds the installation lock: {h}"),
            None => write!(
                f,
                "another process holds the installation lock (its lock file does not say who)"
            ),
        }
    }
}

/// A held lock; released when dropped (or when the process dies).
#[derive(Debug)]
pub struct Lock {
    _file: File,
    path: PathBuf,
}

impl Lock {
    /// Try to take the lock at `path`. The inner `Err` is the expected "someone else has it";
    /// the outer one is an I/O failure.
    pub fn acquire(path: &Path, me: &Holder) -> Result<Result<Lock, Held>, Error> {
        let io = |op| {
            move |source| Error::Lock {
                op,
                path: path.to_path_buf(),
                source,
            }
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(io("open"))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Ok(Err(Held {
                    holder: read_holder(&mut file),
                }))
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io("lock")(e)),
        }
        if let Some(previous) = read_holder(&mut file) {
            if previous.pid != me.pid {
                tracing::info!(%previous, "taking over a lock whose holder is gone");
            }
        }
        let text = serde_json::to_string(me).expect("holder encodes");
        file.set_len(0).map_err(io("truncate"))?;
        file.seek(SeekFrom::Start(0)).map_err(io("seek"))?;
        file.write_all(text.as_bytes()).map_err(io("write"))?;
        file.sync_data().map_err(io("sync"))?;
        Ok(Ok(Lock {
            _file: file,
            path: path.to_path_buf(),
        }))
    }

    /// Who holds the lock at `path` right now, without taking it. `None` when nobody does.
    pub fn holder(path: &Path) -> Result<Option<Held>, Error> {
        let mut file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(Error::Lock {
                    op: "open",
                    path: path.to_path_buf(),
                    source,
                })
            }
        };
        match file.try_lock_shared() {
            Ok(()) => Ok(None),
            Err(std::fs::TryLockError::WouldBlock) => Ok(Some(Held {
                holder: read_holder(&mut file),
            })),
            Err(std::fs::TryLockError::Error(source)) => Err(Error::Lock {
                op: "lock",
                path: path.to_path_buf(),
                source,
            }),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn read_holder(file: &mut File) -> Option<Holder> {
    let mut text = String::new();
    file.seek(SeekFrom::Start(0)).ok()?;
    file.take(64 * 1024).read_to_string(&mut text).ok()?;
    serde_json::from_str(&text).ok()
}
