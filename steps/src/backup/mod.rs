//! Backups of an installation's persistent paths: what a backup is on disk, how it is listed
//! and verified. The steps that make, compress and restore backups live in the submodules.
//!
//! A backup is the directory `backups/<id>/`:
//! - `data/<path>/...`: a copy of each persistent path (`shared` by default), or, once
//!   compressed, `data.tar.zst` holding the same tree;
//! - `precopy.json`: what the pre-copy saw (stat of every entry), used by the final sync;
//! - `manifest.json`: every entry with kind, mode, owner, size, mtime and sha256. It is
//!   written last, atomically, after everything else is durable: **a backup is complete iff its
//!   manifest exists**, so an interrupted or failed backup can never be listed or restored as a
//!   good one. The journal's step receipts record which run made which backup.

pub mod compress;
pub mod digest;
pub mod finalize;
pub mod frames;
pub mod precopy;
pub mod restore;
pub mod retention;
pub mod tree;

use serde::{Deserialize, Serialize};
use std::io;
use std::path::{Path, PathBuf};

/// Version of `manifest.json` and `precopy.json`.
pub const MANIFEST_FORMAT: u32 = 1;
pub const ARCHIVE: &str = "data.tar.zst";

/// What an entry is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    File,
    Dir,
    Symlink,
}

/// One entry of a backup, relative to the installation root (e.g. `shared/data/db.bin`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Item {
    pub path: String,
    pub kind: Kind,
    /// Permission bits (`st_mode & 0o7777`).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    /// Modification time, nanoseconds since the Unix epoch.
    pub mtime_ns: i64,
    /// Files only.
    pub sha256: Option<String>,
    /// Symlinks only: the link's target, verbatim.
    pub target: Option<String>,
}

impl Item {
    /// The scheme its digest was made with (see `digest`): the one that checks it.
    pub fn digest_scheme(&self) -> digest::Scheme {
        digest::Scheme::of(self.sha256.as_deref())
    }
}

/// The complete description of a backup (`manifest.json`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub id: String,
    pub created_ms: u64,
    /// The persistent paths it holds, relative to the installation root.
    pub paths: Vec<String>,
    /// Sorted by path; parents before children.
    pub items: Vec<Item>,
    /// `Some("data.tar.zst")` once compressed; the `data/` directory is then gone.
    pub archive: Option<String>,
    pub files: u64,
    pub bytes: u64,
}

/// (files, bytes) of a list of entries: what a backup's receipt and manifest report.
pub fn totals<'a>(items: impl IntoIterator<Item = &'a Item>) -> (u64, u64) {
    items.into_iter().fold((0, 0), |(files, bytes), i| {
        (files + u64::from(i.kind == Kind::File), bytes + i.size)
    })
}

/// Where the pieces of backup `id` live.
#[derive(Clone, Debug)]
pub struct Layout {
    pub root: PathBuf,
    pub id: String,
}

impl Layout {
    pub fn new(root: &Path, id: &str) -> Layout {
        Layout {
            root: root.to_path_buf(),
            id: id.to_string(),
        }
    }

    pub fn dir(&self) -> PathBuf {
        backups_dir(&self.root).join(&self.id)
    }

    pub fn data(&self) -> PathBuf {
        self.dir().join("data")
    }

    pub fn precopy(&self) -> PathBuf {
        self.dir().join("precopy.json")
    }

    pub fn manifest(&self) -> PathBuf {
        self.dir().join("manifest.json")
    }

    /// Present from the final sync's first write to `data/` until the manifest: a re-run
    /// finds `data/` possibly no longer the pre-copy's, so its recorded block digests do not
    /// stand for it.
    pub fn sync_marker(&self) -> PathBuf {
        self.dir().join("final-sync.started")
    }

    pub fn archive(&self) -> PathBuf {
        self.dir().join(ARCHIVE)
    }

    /// The manifest, if the backup is complete.
    pub fn read_manifest(&self) -> io::Result<Option<Manifest>> {
        read_json(&self.manifest())
    }
}

pub fn backups_dir(root: &Path) -> PathBuf {
    root.join("backups")
}

/// A backup id is a plain name: letters, digits, `-`, `_`, `.`, not starting with `.`.
pub fn valid_id(id: &str) -> Result<(), String> {
    let ok = !id.is_empty()
        && !id.starts_with('.')
        && id.len() <= 128
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "backup id {id:?} must be letters, digits, '-', '_' or '.', not starting with '.'"
        ))
    }
}

/// Read a JSON file; `None` when it does not exist.
pub(crate) fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> io::Result<Option<T>> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: {e}", path.display()),
            )
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Write a JSON file atomically and durably.
pub(crate) fn write_json<T: Serialize>(path: &Path, value: &T) -> io::Result<()> {
    let bytes = serde_json::to_vec_pretty(value).map_err(io::Error::other)?;
    crate::fsutil::write_atomic(path, &bytes)
}

/// One backup as `molt backup list` shows it.
#[derive(Clone, Debug, Serialize)]
pub struct Listed {
    pub id: String,
    /// `complete` (has a manifest) or `incomplete` (interrupted or failed; never restorable).
    pub state: &'static str,
    pub created_ms: Option<u64>,
    pub files: u64,
    pub bytes: u64,
    pub archived: bool,
    pub paths: Vec<String>,
}

/// Every backup directory under `backups/`, newest first (by creation, then id).
pub fn list(root: &Path) -> io::Result<Vec<Listed>> {
    let dir = backups_dir(root);
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry?;
        let Some(id) = entry.file_name().to_str().map(str::to_string) else {
            continue;
        };
        if valid_id(&id).is_err() || !entry.file_type()?.is_dir() {
            continue;
        }
        let layout = Layout::new(root, &id);
        // A manifest that does not parse is as bad as none: not a good backup.
        let listed = match layout.read_manifest().ok().flatten() {
            Some(m) => Listed {
                id,
                state: "complete",
                created_ms: Some(m.created_ms),
                files: m.files,
                bytes: m.bytes,
                archived: m.archive.is_some(),
                paths: m.paths,
            },
            None => Listed {
                id,
                state: "incomplete",
                created_ms: None,
                files: 0,
                bytes: 0,
                archived: false,
                paths: Vec::new(),
            },
        };
        out.push(listed);
    }
    out.sort_by(|a, b| {
        b.created_ms
            .cmp(&a.created_ms)
            .then_with(|| b.id.cmp(&a.id))
    });
    Ok(out)
}

/// Check a complete backup against its manifest: every entry present with its kind, mode,
/// size, sha256 or link target, nothing extra. Returns the problems found (empty = good).
pub fn verify(root: &Path, id: &str) -> io::Result<Vec<String>> {
    let layout = Layout::new(root, id);
    let Some(manifest) = layout.read_manifest()? else {
        return Ok(vec![format!(
            "backup {id} is incomplete (no manifest): it was interrupted or failed"
        )]);
    };
    match &manifest.archive {
        Some(name) => compress::verify_archive(&layout.dir().join(name), &manifest),
        None => tree::verify_dir(&layout.data(), &manifest.items),
    }
}
