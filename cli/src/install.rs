//! The installation directory: where molt's files live under the root.

use std::path::{Path, PathBuf};

/// An installation root and the paths of molt's own files inside it.
#[derive(Clone, Debug)]
pub struct Installation {
    pub root: PathBuf,
}

impl Installation {
    pub fn new(root: &Path) -> anyhow::Result<Installation> {
        let root = std::path::absolute(root)?;
        if !root.is_dir() {
            anyhow::bail!(
                "installation root {} is not a directory (give --root or MOLT_ROOT)",
                root.display()
            );
        }
        Ok(Installation { root })
    }

    /// sled journal directory.
    pub fn journal_dir(&self) -> PathBuf {
        self.root.join("journal")
    }

    /// The installation lock (one run at a time).
    pub fn lock_path(&self) -> PathBuf {
        self.root.join("molt.lock")
    }

    /// Scratch directories of runs (`cache/runs/<run>`).
    pub fn runs_scratch(&self) -> PathBuf {
        self.root.join("cache").join("runs")
    }
}
