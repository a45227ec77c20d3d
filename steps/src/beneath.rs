//! Writes beneath one directory that cannot leave it: every path is walked a component at a
//! time from an open handle of the directory with `O_NOFOLLOW | O_DIRECTORY`, so no link (in
//! the middle or at the end of a path) is ever followed, and every new entry is created with
//! `O_EXCL`/`mkdirat`/`symlinkat`/`linkat`, which never write through what is already there.
//! Paths must be relative and plain ([`crate::package::safe_entry_path`]); with only normal
//! components and no link followed, nothing outside the directory is reachable
//! (`RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS` of `openat2`, on every kernel).
//!
//! Unpacking a package (molt runs as root, the package is the vendor's input) goes through
//! this and nothing else.

use rustix::fs::{
    fchmod, linkat, mkdirat, openat, statat, symlinkat, AtFlags, FileType, Mode, OFlags,
};
use rustix::io::Errno;
use std::cell::RefCell;
use std::ffi::OsStr;
use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Component, Path, PathBuf};
use std::rc::Rc;

/// Why a write beneath the directory did not happen.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    #[error("{path} goes through the link {link}")]
    ThroughLink { path: String, link: String },
    #[error("{path} goes through {parent}, which is not a directory")]
    NotADirectory { path: String, parent: String },
    #[error("{path} already exists (an entry may not replace another, nor a link)")]
    Exists { path: String },
    #[error("{path} is not a plain relative path")]
    NotPlain { path: String },
    #[error("cannot write {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

fn show(p: &Path) -> String {
    p.display().to_string()
}

/// An open directory that every write goes beneath.
pub struct Beneath {
    dir: OwnedFd,
    path: PathBuf,
    /// The last parent directory walked to, reused while entries stay in one directory.
    last: RefCell<Option<(PathBuf, Rc<OwnedFd>)>>,
}

const DIR_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

impl Beneath {
    /// Create `path` (the caller's own, trusted path) if needed and open it.
    pub fn create(path: &Path) -> Result<Beneath, Refused> {
        let io = |source| Refused::Io {
            path: show(path),
            source,
        };
        std::fs::create_dir_all(path).map_err(io)?;
        Beneath::open(path)
    }

    /// Open an existing directory (the caller's own, trusted path).
    pub fn open(path: &Path) -> Result<Beneath, Refused> {
        let dir = openat(
            rustix::fs::CWD,
            path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| Refused::Io {
            path: show(path),
            source: e.into(),
        })?;
        Ok(Beneath {
            dir,
            path: path.to_path_buf(),
            last: RefCell::new(None),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The plain components of `rel`, or why it is not plain.
    fn split(rel: &Path) -> Result<(Vec<&OsStr>, &OsStr), Refused> {
        let mut parts = Vec::new();
        for c in rel.components() {
            match c {
                Component::Normal(n) => parts.push(n),
                Component::CurDir => {}
                _ => return Err(Refused::NotPlain { path: show(rel) }),
            }
        }
        let name = parts
            .pop()
            .ok_or_else(|| Refused::NotPlain { path: show(rel) })?;
        Ok((parts, name))
    }

    /// Walk to the parent directory of `rel`, creating missing directories when `create`.
    fn parent(&self, rel: &Path, parts: &[&OsStr], create: bool) -> Result<Rc<OwnedFd>, Refused> {
        let key: PathBuf = parts.iter().collect();
        if let Some((p, fd)) = self.last.borrow().as_ref() {
            if *p == key {
                return Ok(fd.clone());
            }
        }
        let mut cur: Option<OwnedFd> = None;
        let mut walked = PathBuf::new();
        for name in parts {
            walked.push(name);
            let at = cur.as_ref().map_or(self.dir.as_fd(), |f| f.as_fd());
            let opened = match openat(at, *name, DIR_FLAGS, Mode::empty()) {
                Err(Errno::NOENT) if create => {
                    match mkdirat(at, *name, Mode::from_raw_mode(0o755)) {
                        Ok(()) | Err(Errno::EXIST) => {}
                        Err(e) => {
                            return Err(Refused::Io {
                                path: show(&walked),
                                source: e.into(),
                            })
                        }
                    }
                    openat(at, *name, DIR_FLAGS, Mode::empty())
                }
                other => other,
            };
            cur = Some(opened.map_err(|e| self.why(rel, &walked, e))?);
        }
        let fd = Rc::new(match cur {
            Some(fd) => fd,
            None => self.dir.try_clone().map_err(|source| Refused::Io {
                path: show(&self.path),
                source,
            })?,
        });
        *self.last.borrow_mut() = Some((key, fd.clone()));
        Ok(fd)
    }

    /// The refusal for an `openat` of directory `walked` (on the way to `rel`) that failed.
    fn why(&self, rel: &Path, walked: &Path, e: Errno) -> Refused {
        match e {
            Errno::LOOP => Refused::ThroughLink {
                path: show(rel),
                link: show(walked),
            },
            Errno::NOTDIR => {
                // O_NOFOLLOW on a link gives ELOOP on Linux, but say the same for both.
                let at = self.dir.as_fd();
                match statat(at, walked, AtFlags::SYMLINK_NOFOLLOW) {
                    Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Symlink => {
                        Refused::ThroughLink {
                            path: show(rel),
                            link: show(walked),
                        }
                    }
                    _ => Refused::NotADirectory {
                        path: show(rel),
                        parent: show(walked),
                    },
                }
            }
            e => Refused::Io {
                path: show(walked),
                source: e.into(),
            },
        }
    }

    fn io(rel: &Path, e: Errno) -> Refused {
        match e {
            Errno::EXIST => Refused::Exists { path: show(rel) },
            e => Refused::Io {
                path: show(rel),
                source: e.into(),
            },
        }
    }

    /// Create the new file `rel` (its missing parents too) for writing; it must not exist.
    /// Its mode is set with [`Beneath::set_mode`] once written.
    pub fn create_file(&self, rel: &Path) -> Result<File, Refused> {
        let (parts, name) = Self::split(rel)?;
        let parent = self.parent(rel, &parts, true)?;
        let fd = openat(
            &*parent,
            name,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
        .map_err(|e| Self::io(rel, e))?;
        Ok(File::from(fd))
    }

    /// Set the permission bits of a file this handle created (through the open file, never
    /// by path).
    pub fn set_mode(file: &File, rel: &Path, mode: u32) -> Result<(), Refused> {
        fchmod(file, Mode::from_raw_mode(mode)).map_err(|e| Refused::Io {
            path: show(rel),
            source: e.into(),
        })
    }

    /// Create the directory `rel` and its parents; an existing directory is fine, anything
    /// else at its place is refused.
    pub fn create_dir(&self, rel: &Path) -> Result<(), Refused> {
        let (parts, name) = Self::split(rel)?;
        let parent = self.parent(rel, &parts, true)?;
        match mkdirat(&*parent, name, Mode::from_raw_mode(0o755)) {
            Ok(()) => Ok(()),
            Err(Errno::EXIST) => match statat(&*parent, name, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Directory => Ok(()),
                _ => Err(Refused::Exists { path: show(rel) }),
            },
            Err(e) => Err(Self::io(rel, e)),
        }
    }

    /// Create the link `rel -> target`; nothing may exist at `rel`. The target is not looked
    /// at here (see [`crate::package::check_links`]).
    pub fn symlink(&self, target: &Path, rel: &Path) -> Result<(), Refused> {
        let (parts, name) = Self::split(rel)?;
        let parent = self.parent(rel, &parts, true)?;
        symlinkat(target, &*parent, name).map_err(|e| Self::io(rel, e))
    }

    /// Hard-link `rel` of `src` as `rel` here. Neither side follows a link.
    pub fn hard_link_from(&self, src: &Beneath, rel: &Path) -> Result<(), Refused> {
        let (parts, name) = Self::split(rel)?;
        let from = src.parent(rel, &parts, false)?;
        let to = self.parent(rel, &parts, true)?;
        linkat(&*from, name, &*to, name, AtFlags::empty()).map_err(|e| Self::io(rel, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_follows_a_link() {
        let t = tempfile::tempdir().unwrap();
        let outside = t.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        let b = Beneath::create(&t.path().join("in")).unwrap();
        std::os::unix::fs::symlink(&outside, t.path().join("in/l")).unwrap();
        std::os::unix::fs::symlink(outside.join("f"), t.path().join("in/f")).unwrap();
        assert!(matches!(
            b.create_file(Path::new("l/x")),
            Err(Refused::ThroughLink { .. })
        ));
        assert!(matches!(
            b.create_dir(Path::new("l/d")),
            Err(Refused::ThroughLink { .. })
        ));
        assert!(matches!(
            b.create_file(Path::new("f")),
            Err(Refused::Exists { .. })
        ));
        assert!(matches!(
            b.create_dir(Path::new("f")),
            Err(Refused::Exists { .. })
        ));
        assert!(matches!(
            b.symlink(Path::new("x"), Path::new("f")),
            Err(Refused::Exists { .. })
        ));
        assert!(matches!(
            b.create_file(Path::new("../x")),
            Err(Refused::NotPlain { .. })
        ));
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
        b.create_file(Path::new("a/b/c")).unwrap();
        b.create_dir(Path::new("a/b")).unwrap();
        assert!(matches!(
            b.create_file(Path::new("a/b/c/d")),
            Err(Refused::NotADirectory { .. })
        ));
    }
}
