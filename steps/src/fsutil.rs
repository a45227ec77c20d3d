//! Durable file-system primitives shared by the steps: atomic writes, fsync of files and
//! directories, tree copy, removal, and the per-step stash that makes `do`/`undo` idempotent.

use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fs::{self, File};
use std::io;
use std::path::{Component, Path, PathBuf};

/// fsync a directory, so that entries created, renamed or removed in it survive power loss.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Name of the temporary sibling used to replace `path` atomically.
fn tmp_sibling(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".molt-tmp");
    path.with_file_name(name)
}

/// Replace `path` with `bytes` atomically: write a sibling, fsync it, rename, fsync the dir.
/// After a crash the file holds either the old or the new content, never a mix.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = tmp_sibling(path);
    fs::write(&tmp, bytes)?;
    File::open(&tmp)?.sync_all()?;
    fs::rename(&tmp, path)?;
    sync_dir(parent(path))
}

/// Copy a regular file to `to` atomically and durably, keeping its permissions.
pub fn copy_file_atomic(from: &Path, to: &Path) -> io::Result<()> {
    let tmp = tmp_sibling(to);
    fs::copy(from, &tmp)?;
    File::open(&tmp)?.sync_all()?;
    fs::rename(&tmp, to)?;
    sync_dir(parent(to))
}

/// Point the symlink `link` at `target` atomically (create a sibling link, rename over).
pub fn symlink_atomic(target: &Path, link: &Path) -> io::Result<()> {
    let tmp = tmp_sibling(link);
    remove_path(&tmp)?;
    std::os::unix::fs::symlink(target, &tmp)?;
    fs::rename(&tmp, link)?;
    sync_dir(parent(link))
}

/// Remove a file, symlink or directory tree if it exists, and make the removal durable.
pub fn remove_path(path: &Path) -> io::Result<()> {
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if meta.is_dir() {
        fs::remove_dir_all(path)?;
    } else {
        fs::remove_file(path)?;
    }
    sync_dir(parent(path))
}

/// Copy the tree `from` into the new directory `to` (which must not exist): regular files with
/// their permissions, symlinks as symlinks, empty directories. Every file and directory is
/// fsynced. `between` is called after each file with the count copied so far (crash points).
/// Returns (files, bytes).
pub fn copy_tree(from: &Path, to: &Path, between: &mut dyn FnMut(u64)) -> io::Result<(u64, u64)> {
    let mut files = 0;
    let mut bytes = 0;
    copy_dir(from, to, &mut files, &mut bytes, between)?;
    sync_dir(parent(to))?;
    Ok((files, bytes))
}

fn copy_dir(
    from: &Path,
    to: &Path,
    files: &mut u64,
    bytes: &mut u64,
    between: &mut dyn FnMut(u64),
) -> io::Result<()> {
    fs::create_dir(to)?;
    fs::set_permissions(to, fs::metadata(from)?.permissions())?;
    let mut entries: Vec<_> = fs::read_dir(from)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let src = entry.path();
        let dst = to.join(entry.file_name());
        let kind = entry.file_type()?;
        if kind.is_dir() {
            copy_dir(&src, &dst, files, bytes, between)?;
        } else if kind.is_symlink() {
            std::os::unix::fs::symlink(fs::read_link(&src)?, &dst)?;
        } else if kind.is_file() {
            *bytes += fs::copy(&src, &dst)?;
            File::open(&dst)?.sync_all()?;
            *files += 1;
            between(*files);
        } else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} is not a file, directory or symlink", src.display()),
            ));
        }
    }
    sync_dir(to)
}

/// A relative path that stays inside the installation: no root, no `..`, not empty, and not in
/// molt's own directories.
pub fn safe_relative(path: &str) -> Result<PathBuf, String> {
    let p = Path::new(path);
    if path.is_empty() {
        return Err("empty path".into());
    }
    for c in p.components() {
        match c {
            Component::Normal(_) | Component::CurDir => {}
            Component::ParentDir => return Err(format!("{path:?} contains `..`")),
            Component::RootDir | Component::Prefix(_) => {
                return Err(format!(
                    "{path:?} is absolute; paths are relative to the installation"
                ))
            }
        }
    }
    let first = p
        .components()
        .find_map(|c| match c {
            Component::Normal(n) => Some(n.to_string_lossy().into_owned()),
            _ => None,
        })
        .ok_or_else(|| format!("{path:?} names the installation root itself"))?;
    if ["journal", "cache", "molt.lock"].contains(&first.as_str()) {
        return Err(format!("{path:?} is inside molt's own state ({first})"));
    }
    Ok(p.to_path_buf())
}

/// The per-step stash: a directory `<scratch>/step-<i>/` where a step records, before changing
/// anything, what it is about to change (`state.json`, written atomically) and keeps copies of
/// what it will overwrite. Its presence is what makes `do` and `undo` idempotent across
/// crashes: `do` writes it once, `undo` restores from it and removes it last.
#[derive(Clone, Debug)]
pub struct Stash {
    dir: PathBuf,
}

impl Stash {
    pub fn new(scratch: &Path, step: usize) -> Stash {
        Stash {
            dir: scratch.join(format!("step-{step}")),
        }
    }

    /// A file inside the stash (for copies of originals).
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn state_path(&self) -> PathBuf {
        self.dir.join("state.json")
    }

    /// The recorded state, if `record` ever completed.
    pub fn read<T: DeserializeOwned>(&self) -> io::Result<Option<T>> {
        match fs::read(self.state_path()) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Create the stash directory (for copies) without recording the state yet.
    pub fn prepare(&self) -> io::Result<()> {
        fs::create_dir_all(&self.dir)?;
        sync_dir(parent(&self.dir))
    }

    /// Record the state durably; from now on `undo` will act.
    pub fn record<T: Serialize>(&self, state: &T) -> io::Result<()> {
        self.prepare()?;
        let bytes = serde_json::to_vec(state).map_err(io::Error::other)?;
        write_atomic(&self.state_path(), &bytes)
    }

    /// Keep a copy of the file `path` as it is now under `name` in the stash (before
    /// `record`); returns whether there was a file to keep.
    pub fn save_file(&self, path: &Path, name: &str) -> io::Result<bool> {
        match fs::symlink_metadata(path) {
            Ok(_) => {
                self.prepare()?;
                copy_file_atomic(path, &self.file(name))?;
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Put back what [`Stash::save_file`] kept (`existed`), or remove `path` when there was
    /// nothing.
    pub fn restore_file(&self, path: &Path, name: &str, existed: bool) -> io::Result<()> {
        if existed {
            copy_file_atomic(&self.file(name), path)
        } else {
            remove_path(path)
        }
    }

    /// Remove the stash (last act of `undo`).
    pub fn clear(&self) -> io::Result<()> {
        remove_path(&self.dir)
    }
}
