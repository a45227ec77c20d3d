//! Helpers shared by the CLI test binaries: running `molt`, snapshots of trees.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Output;

pub const MOLT: &str = env!("CARGO_BIN_EXE_molt");

#[derive(Clone, PartialEq, Eq)]
pub enum Node {
    Dir(u32),
    File(u32, Vec<u8>),
    Link(PathBuf),
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Node::Dir(m) => write!(f, "dir {m:o}"),
            Node::File(m, b) => write!(f, "file {m:o} {:?}", String::from_utf8_lossy(b)),
            Node::Link(t) => write!(f, "link -> {}", t.display()),
        }
    }
}

pub type Tree = BTreeMap<String, Node>;

/// The entries in which two trees differ, for assertion messages.
pub fn diff(a: &Tree, b: &Tree) -> String {
    let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    keys.into_iter()
        .filter(|k| a.get(*k) != b.get(*k))
        .map(|k| format!("  {k}: {:?} vs {:?}\n", a.get(k), b.get(k)))
        .collect()
}

#[track_caller]
pub fn assert_tree(got: &Tree, want: &Tree, what: &str) {
    assert!(
        got == want,
        "{what}; differences (got vs want):\n{}",
        diff(got, want)
    );
}

/// Snapshot `dir` into `tree`, names relative to `root`, skipping molt's own state (journal,
/// cache, lock) at the root.
pub fn walk(root: &Path, dir: &Path, tree: &mut Tree) {
    walk_filtered(root, dir, tree, &|rel| {
        ["journal", "cache", "molt.lock"].contains(&rel) || rel.starts_with("journal.")
    });
}

fn walk_filtered(root: &Path, dir: &Path, tree: &mut Tree, skip_top: &dyn Fn(&str) -> bool) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let rel = path
            .strip_prefix(root)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        if dir == root && skip_top(&rel) {
            continue;
        }
        let meta = std::fs::symlink_metadata(&path).unwrap();
        let mode = meta.permissions().mode() & 0o7777;
        if meta.file_type().is_symlink() {
            tree.insert(rel, Node::Link(std::fs::read_link(&path).unwrap()));
        } else if meta.is_dir() {
            tree.insert(rel, Node::Dir(mode));
            walk_filtered(root, &path, tree, skip_top);
        } else {
            tree.insert(rel, Node::File(mode, std::fs::read(&path).unwrap()));
        }
    }
}

pub fn text(out: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

pub fn aborted(out: &Output) -> bool {
    out.status.signal() == Some(6)
}

/// Snapshot of one directory (relative names under it), nothing excluded.
pub fn tree_of(dir: &Path) -> Tree {
    let mut t = Tree::new();
    walk_filtered(dir, dir, &mut t, &|_| false);
    t
}

/// Modification times (ns) of the regular files under `dir`.
pub fn file_mtimes(dir: &Path) -> BTreeMap<String, i64> {
    tree_of(dir)
        .into_iter()
        .filter(|(_, n)| matches!(n, Node::File(..)))
        .map(|(rel, _)| {
            let m = std::fs::metadata(dir.join(&rel)).unwrap();
            (rel, m.mtime() * 1_000_000_000 + m.mtime_nsec())
        })
        .collect()
}

/// Run `molt --root ROOT ARGS` (in ROOT), optionally with failpoints armed.
pub fn molt_in(root: &Path, failpoints: Option<&str>, args: &[&str]) -> Output {
    let mut c = std::process::Command::new(MOLT);
    c.current_dir(root)
        .arg("--root")
        .arg(root)
        .args(args)
        .env_remove("MOLT_FAILPOINTS")
        .env_remove("MOLT_ROOT")
        .env("MOLT_LOG", "error")
        .stdin(std::process::Stdio::null());
    if let Some(fp) = failpoints {
        c.env("MOLT_FAILPOINTS", fp);
    }
    c.output().unwrap()
}

/// A small tmpfs mounted over `path` (root only), unmounted when dropped: a real full disk.
pub struct Tmpfs(PathBuf);

impl Tmpfs {
    pub fn mount(path: &Path, size: &str) -> Tmpfs {
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .output()
            .expect("cannot run mount");
        assert!(
            out.status.success(),
            "this test needs to mount a small tmpfs (run it as root): {}",
            text(&out)
        );
        Tmpfs(path.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}
