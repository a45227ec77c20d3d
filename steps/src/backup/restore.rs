//! Restore a complete backup in place of the persistent paths, in three steps:
//!
//! 1. `stage` (reversible): rebuild the backup into `.molt-restore-<id>/` next to the live
//!    paths (same filesystem), hashing every file against the manifest. Any difference (a
//!    corrupted byte, a missing file) removes the staging and fails the step: the live data
//!    has not been touched. `Ok` guarantees the staging is complete, verified and durable.
//!    Idempotent: a stash record marks a finished staging; an unfinished one is rebuilt.
//! 2. `swap` (reversible): for each persistent path, exchange the staged tree and the live one
//!    with one `renameat2(RENAME_EXCHANGE)`: at every instant the path holds either the old or
//!    the restored tree. The staged tree's inode is recorded first, so a re-run (or an undo)
//!    can tell whether the exchange already happened. `undo` exchanges back.
//! 3. `cleanup` (forward-only): removes the staging directory, which now holds the old data.
//!
//! A crash anywhere leaves the old data or the restored data at each path, never a mix, and
//! `molt resume` finishes the restore.

use super::tree::{
    apply_meta, feed_blocks, finish_dirs, materialize, syncfs, Flusher, Hasher, PENDING,
};
use super::{Item, Kind, Layout, Manifest};
use crate::fsutil::{remove_path, sync_dir, Stash};
use crate::io_err;
use async_trait::async_trait;
use engine::{Step, StepClass, StepCtx, StepError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// The staging directory for restoring backup `id`.
pub fn staging_dir(root: &Path, id: &str) -> PathBuf {
    root.join(format!(".molt-restore-{id}"))
}

fn read_complete(layout: &Layout) -> Result<Manifest, StepError> {
    layout
        .read_manifest()
        .map_err(|e| io_err("read", &layout.manifest(), e))?
        .ok_or_else(|| {
            StepError::new(format!(
                "backup {} is incomplete (no manifest); it cannot be restored",
                layout.id
            ))
        })
}

/// The oldest restored file is written: check its digest, then give it its metadata.
fn written(
    hasher: &Hasher,
    staging: &Path,
    item: &Item,
    problems: &mut Vec<String>,
) -> io::Result<()> {
    let sha = hasher.next_digest()?.digest;
    if Some(&sha) != item.sha256.as_ref() {
        problems.push(format!(
            "{} has sha256 {sha} in the archive, expected {}",
            item.path,
            item.sha256.as_deref().unwrap_or("?")
        ));
    }
    apply_meta(&staging.join(&item.path), item)
}

/// Rebuild the manifest's tree under `staging`, checking every file's sha256. Returns the
/// differences found (empty = the staging is exactly the backup).
fn build(layout: &Layout, manifest: &Manifest, staging: &Path) -> io::Result<Vec<String>> {
    let mut problems = Vec::new();
    std::fs::create_dir_all(staging)?;
    let bar = crate::report::Progress::begin("restore", manifest.bytes);
    match &manifest.archive {
        None => {
            let data = layout.data();
            for item in &manifest.items {
                if item.kind == Kind::File && !data.join(&item.path).is_file() {
                    problems.push(format!("{} is missing from the backup", item.path));
                    continue;
                }
                let scheme = item.digest_scheme();
                let sha = materialize(&data, staging, item, scheme)?.map(|d| d.digest);
                if item.kind == Kind::File && sha != item.sha256 {
                    problems.push(format!(
                        "{} has sha256 {} in the backup, expected {}",
                        item.path,
                        sha.unwrap_or_default(),
                        item.sha256.as_deref().unwrap_or("?")
                    ));
                }
                bar.inc(item.size);
                engine::failpoint("steps::restore::stage_entry");
            }
        }
        Some(name) => {
            let by_path: BTreeMap<&str, &Item> = manifest
                .items
                .iter()
                .map(|i| (i.path.as_str(), i))
                .collect();
            let file = std::fs::File::open(layout.dir().join(name))?;
            // Files alternate between two hashing threads, each hashing and writing its
            // files: with the chunks decompressed on every core, hashing is the longest
            // stage. Digests are checked in archive order (each thread keeps its own).
            let hashers = [Hasher::start(), Hasher::start()];
            let flusher = Flusher::start(staging)?;
            let mut ar = tar::Archive::new(super::frames::open(file)?);
            let mut seen = 0usize;
            let mut files = 0usize;
            let mut pending: std::collections::VecDeque<(&Item, &Hasher)> = Default::default();
            for entry in ar.entries()? {
                let mut entry = entry?;
                let path = entry
                    .path()?
                    .to_string_lossy()
                    .trim_end_matches('/')
                    .to_string();
                // Only paths the manifest names are written, so a tampered archive cannot
                // place anything elsewhere.
                let Some(item) = by_path.get(path.as_str()) else {
                    problems.push(format!("{path} is in the archive but not in the manifest"));
                    continue;
                };
                seen += 1;
                let dst = staging.join(&item.path);
                match item.kind {
                    Kind::Dir => match std::fs::create_dir(&dst) {
                        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(e),
                        _ => {}
                    },
                    Kind::Symlink => {
                        remove_path(&dst)?;
                        std::os::unix::fs::symlink(item.target.as_deref().unwrap_or(""), &dst)?;
                        apply_meta(&dst, item)?;
                    }
                    Kind::File => {
                        // decompressed on the workers, written and hashed on a hashing
                        // thread, checked (and given its metadata once written) a few files
                        // later
                        let hasher = &hashers[files % hashers.len()];
                        files += 1;
                        hasher.sink(std::fs::File::create(&dst)?)?;
                        let scheme = item.digest_scheme();
                        let bytes = feed_blocks(&mut entry, hasher, scheme, |_, _| Ok(None))?;
                        flusher.wrote(bytes);
                        pending.push_back((item, hasher));
                        if pending.len() >= PENDING {
                            if let Some((oldest, h)) = pending.pop_front() {
                                written(h, staging, oldest, &mut problems)?;
                            }
                        }
                    }
                }
                bar.inc(item.size);
                engine::failpoint("steps::restore::stage_entry");
            }
            while let Some((item, h)) = pending.pop_front() {
                written(h, staging, item, &mut problems)?;
            }
            if seen != manifest.items.len() {
                problems.push(format!(
                    "the archive holds {seen} of the manifest's {} entries",
                    manifest.items.len()
                ));
            }
        }
    }
    bar.finish();
    finish_dirs(staging, &manifest.items)?;
    Ok(problems)
}

pub struct Stage {
    pub layout: Layout,
    pub scratch: PathBuf,
}

#[derive(Debug, Serialize, Deserialize)]
struct Staged {
    complete: bool,
}

#[async_trait]
impl Step for Stage {
    type Receipt = ();

    fn name(&self) -> String {
        format!("stage backup {} for restore", self.layout.id)
    }

    fn class(&self) -> StepClass {
        StepClass::Reversible
    }

    async fn apply(&self, ctx: &StepCtx) -> Result<(), StepError> {
        let stash = Stash::new(&self.scratch, ctx.step);
        let staging = staging_dir(&self.layout.root, &self.layout.id);
        if stash
            .read::<Staged>()
            .map_err(|e| io_err("read stash for", &staging, e))?
            .is_some()
        {
            return Ok(());
        }
        let manifest = read_complete(&self.layout)?;
        remove_path(&staging).map_err(|e| io_err("remove", &staging, e))?;
        let problems =
            build(&self.layout, &manifest, &staging).map_err(|e| io_err("stage", &staging, e))?;
        if !problems.is_empty() {
            remove_path(&staging).map_err(|e| io_err("remove", &staging, e))?;
            return Err(StepError::new(format!(
                "backup {} does not match its manifest; nothing was restored: {}",
                self.layout.id,
                problems.join("; ")
            )));
        }
        syncfs(&staging).map_err(|e| io_err("sync", &staging, e))?;
        sync_dir(&self.layout.root).map_err(|e| io_err("sync", &self.layout.root, e))?;
        stash
            .record(&Staged { complete: true })
            .map_err(|e| io_err("stash for", &staging, e))?;
        Ok(())
    }

    async fn undo(&self, ctx: &StepCtx, _receipt: Option<()>) -> Result<(), StepError> {
        let staging = staging_dir(&self.layout.root, &self.layout.id);
        remove_path(&staging).map_err(|e| io_err("remove", &staging, e))?;
        Stash::new(&self.scratch, ctx.step)
            .clear()
            .map_err(|e| io_err("clear stash for", &staging, e))
    }
}

pub struct Swap {
    pub layout: Layout,
    pub paths: Vec<String>,
    pub scratch: PathBuf,
}

/// Per path: the staged tree's inode, and whether a live tree existed to exchange with.
#[derive(Debug, Serialize, Deserialize)]
struct SwapPlan {
    paths: BTreeMap<String, (u64, bool)>,
    /// Where the trees to swap in are, when not the staging directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    from: Option<PathBuf>,
}

fn ino(path: &Path) -> Option<u64> {
    std::fs::symlink_metadata(path).ok().map(|m| m.ino())
}

/// Exchange two paths atomically, or move `from` to `to` when `to` does not exist.
fn exchange(a: &Path, b: &Path, b_exists: bool) -> io::Result<()> {
    if b_exists {
        rustix::fs::renameat_with(
            rustix::fs::CWD,
            a,
            rustix::fs::CWD,
            b,
            rustix::fs::RenameFlags::EXCHANGE,
        )
        .map_err(|e| {
            io::Error::new(
                io::Error::from(e).kind(),
                format!(
                    "cannot exchange {} and {} atomically: {e}",
                    a.display(),
                    b.display()
                ),
            )
        })?;
    } else {
        std::fs::rename(a, b)?;
    }
    sync_dir(b.parent().unwrap_or(Path::new("/")))?;
    sync_dir(a.parent().unwrap_or(Path::new("/")))
}

#[async_trait]
impl Step for Swap {
    type Receipt = ();

    fn name(&self) -> String {
        format!("swap restored {} into place", self.paths.join(", "))
    }

    fn class(&self) -> StepClass {
        StepClass::Reversible
    }

    async fn apply(&self, ctx: &StepCtx) -> Result<(), StepError> {
        let root = &self.layout.root;
        let staging = staging_dir(root, &self.layout.id);
        let stash = Stash::new(&self.scratch, ctx.step);
        let plan = match stash
            .read::<SwapPlan>()
            .map_err(|e| io_err("read stash for", &staging, e))?
        {
            Some(p) => p,
            None => {
                let mut paths = BTreeMap::new();
                for p in &self.paths {
                    let staged = staging.join(p);
                    let i = ino(&staged).ok_or_else(|| {
                        StepError::new(format!("{} is missing; stage first", staged.display()))
                    })?;
                    paths.insert(p.clone(), (i, root.join(p).exists()));
                }
                let plan = SwapPlan { paths, from: None };
                stash
                    .record(&plan)
                    .map_err(|e| io_err("stash for", &staging, e))?;
                plan
            }
        };
        for (p, (staged_ino, existed)) in &plan.paths {
            let live = root.join(p);
            if ino(&live) == Some(*staged_ino) {
                continue; // already swapped
            }
            if let Some(parent) = live.parent() {
                std::fs::create_dir_all(parent).map_err(|e| io_err("create", parent, e))?;
            }
            exchange(&staging.join(p), &live, *existed).map_err(|e| io_err("swap", &live, e))?;
            engine::failpoint("steps::restore::swapped");
        }
        Ok(())
    }

    async fn undo(&self, ctx: &StepCtx, _receipt: Option<()>) -> Result<(), StepError> {
        let root = &self.layout.root;
        let staging = staging_dir(root, &self.layout.id);
        let stash = Stash::new(&self.scratch, ctx.step);
        let Some(plan) = stash
            .read::<SwapPlan>()
            .map_err(|e| io_err("read stash for", &staging, e))?
        else {
            return Ok(());
        };
        for (p, (staged_ino, existed)) in plan.paths.iter().rev() {
            let live = root.join(p);
            if ino(&live) != Some(*staged_ino) {
                continue; // not swapped (or already swapped back)
            }
            if *existed {
                exchange(&live, &staging.join(p), true)
            } else {
                std::fs::rename(&live, staging.join(p))
            }
            .map_err(|e| io_err("swap back", &live, e))?;
        }
        stash
            .clear()
            .map_err(|e| io_err("clear stash for", &staging, e))
    }
}

pub struct Cleanup {
    pub layout: Layout,
}

#[async_trait]
impl Step for Cleanup {
    type Receipt = ();

    fn name(&self) -> String {
        format!("remove the data replaced by backup {}", self.layout.id)
    }

    fn class(&self) -> StepClass {
        StepClass::ForwardOnly
    }

    async fn apply(&self, _ctx: &StepCtx) -> Result<(), StepError> {
        let staging = staging_dir(&self.layout.root, &self.layout.id);
        remove_path(&staging).map_err(|e| io_err("remove", &staging, e))
    }

    async fn undo(&self, _ctx: &StepCtx, _receipt: Option<()>) -> Result<(), StepError> {
        Err(StepError::new(
            "removing the replaced data cannot be undone",
        ))
    }
}

/// Check an uncompressed backup's data tree against its manifest by stat alone (every entry
/// there with its kind, size and mode; nothing missing): what the upgrade's own final sync
/// wrote minutes ago, before it is swapped in without a copy.
fn data_matches(layout: &Layout, manifest: &Manifest) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let data = layout.data();
    manifest.items.iter().all(|i| {
        let Ok(m) = std::fs::symlink_metadata(data.join(&i.path)) else {
            return false;
        };
        let kind_ok = match i.kind {
            Kind::Dir => m.is_dir(),
            Kind::File => m.is_file() && m.len() == i.size,
            Kind::Symlink => m.file_type().is_symlink(),
        };
        kind_ok && (i.kind == Kind::Symlink || m.permissions().mode() & 0o7777 == i.mode & 0o7777)
    })
}

/// Put a complete backup back in place of `paths` in one call, crash-safe and idempotent:
/// the building block of an upgrade's rollback, which restores the data sealed at the stop.
///
/// 1. Unless the stash says it chose already: when the backup is not compressed and its data
///    tree matches the manifest by stat, the trees to swap in are the backup's own
///    (`backups/<id>/data/<path>`: no copy, so the rollback's downtime does not grow with the
///    data; the backup is consumed, it then holds the replaced data). Otherwise the backup is
///    rebuilt into the staging directory, every hash verified (any difference fails before the
///    live data is touched), and synced. The chosen trees' inodes go to the stash.
/// 2. Exchange each live path with its tree (`renameat2(EXCHANGE)`); a path whose live inode
///    is already the recorded one was exchanged before a crash.
/// 3. Remove the staging (now the replaced data) and the stash. A consumed backup's `data/`
///    (now the replaced data) is left where it is, without a manifest: removing a large tree
///    takes time the rollback's downtime would pay, and the upgrade's pre-copy undo, which
///    runs after the old release serves again, removes the whole backup directory.
pub fn restore_in_place(layout: &Layout, paths: &[String], stash: &Stash) -> Result<(), StepError> {
    let root = &layout.root;
    let staging = staging_dir(root, &layout.id);
    let plan = match stash
        .read::<SwapPlan>()
        .map_err(|e| io_err("read stash for", &staging, e))?
    {
        Some(p) => p,
        None => {
            let manifest = read_complete(layout)?;
            if manifest.archive.is_none() && data_matches(layout, &manifest) {
                let mut planned = BTreeMap::new();
                let data = layout.data();
                for p in paths {
                    let tree = data.join(p);
                    if std::fs::symlink_metadata(&tree).is_err() {
                        std::fs::create_dir_all(&tree).map_err(|e| io_err("create", &tree, e))?;
                    }
                    planned.insert(
                        p.clone(),
                        (ino(&tree).unwrap_or_default(), root.join(p).exists()),
                    );
                }
                let plan = SwapPlan {
                    paths: planned,
                    from: Some(data.clone()),
                };
                stash
                    .record(&plan)
                    .map_err(|e| io_err("stash for", &data, e))?;
                // Consumed from here on: without its manifest nothing lists or restores it.
                let m = layout.manifest();
                remove_path(&m).map_err(|e| io_err("remove", &m, e))?;
                sync_dir(&layout.dir()).map_err(|e| io_err("sync", &layout.dir(), e))?;
                plan
            } else {
                stage_for_swap(layout, paths, stash, &staging)?
            }
        }
    };
    let from = plan.from.clone().unwrap_or_else(|| staging.clone());
    for (p, (staged_ino, existed)) in &plan.paths {
        let live = root.join(p);
        if ino(&live) == Some(*staged_ino) {
            continue;
        }
        let exists = *existed && std::fs::symlink_metadata(&live).is_ok();
        exchange(&from.join(p), &live, exists).map_err(|e| io_err("swap", &live, e))?;
        engine::failpoint("steps::restore::swapped");
    }
    if plan.from.is_none() {
        remove_path(&from).map_err(|e| io_err("remove", &from, e))?;
    }
    stash
        .clear()
        .map_err(|e| io_err("clear stash for", &staging, e))
}

/// Rebuild a backup into the staging directory, verified, and record the swap plan.
fn stage_for_swap(
    layout: &Layout,
    paths: &[String],
    stash: &Stash,
    staging: &Path,
) -> Result<SwapPlan, StepError> {
    let root = &layout.root;
    let manifest = read_complete(layout)?;
    remove_path(staging).map_err(|e| io_err("remove", staging, e))?;
    let problems = build(layout, &manifest, staging).map_err(|e| io_err("stage", staging, e))?;
    if !problems.is_empty() {
        remove_path(staging).map_err(|e| io_err("remove", staging, e))?;
        return Err(StepError::new(format!(
            "backup {} does not match its manifest; the data was not restored: {}",
            layout.id,
            problems.join("; ")
        )));
    }
    syncfs(staging).map_err(|e| io_err("sync", staging, e))?;
    let mut planned = BTreeMap::new();
    for p in paths {
        let staged = staging.join(p);
        if std::fs::symlink_metadata(&staged).is_err() {
            std::fs::create_dir_all(&staged).map_err(|e| io_err("create", &staged, e))?;
        }
        planned.insert(
            p.clone(),
            (ino(&staged).unwrap_or_default(), root.join(p).exists()),
        );
    }
    sync_dir(root).map_err(|e| io_err("sync", root, e))?;
    let plan = SwapPlan {
        paths: planned,
        from: None,
    };
    stash
        .record(&plan)
        .map_err(|e| io_err("stash for", staging, e))?;
    Ok(plan)
}
