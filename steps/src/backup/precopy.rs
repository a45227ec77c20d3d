//! `pre-copy`: copy the persistent paths into a new backup while the old release still serves.
//!
//! - `do`: with `precopy.json` (or the manifest) already written, done. Otherwise starts the
//!   copy over from an empty `data/`: records the time (the wall clock's, and the change time
//!   the filesystem gives the new `data/`), scans the sources, copies every entry
//!   (files hashed as they are written), applies directory metadata, and writes `precopy.json`
//!   (what was seen: stat and sha256 of every entry, and when the scan began) atomically.
//!   `Ok` guarantees `precopy.json` describes `data/`. The copy is flushed (`syncfs`) before
//!   `precopy.json` is written, so that the final sync, inside the downtime, only flushes
//!   what it changed; it is the final sync that makes the backup complete. Idempotent: a re-run either finds `precopy.json`
//!   or starts over.
//! - `undo`: removes `backups/<id>/` entirely. Idempotent.

use super::digest::{to_hex, Scheme};
use super::tree::{finish_dirs, materialize, scan, syncfs, Seen};
use super::{write_json, Layout, MANIFEST_FORMAT};
use crate::fsutil::remove_path;
use crate::io_err;
use async_trait::async_trait;
use engine::{Step, StepClass, StepCtx, StepError};
use serde::{Deserialize, Serialize};

/// `precopy.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PreCopyRecord {
    pub format: u32,
    pub id: String,
    pub paths: Vec<String>,
    /// Wall-clock time when the scan began (ns since the epoch): entries whose change time is
    /// not clearly before it may have changed without their stat showing it, and are hashed
    /// again by the final sync.
    pub started_ns: i64,
    /// The filesystem's own clock when the scan began: the change time of `data/`, made just
    /// before it. Absent in records of older molt versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fs_clock: Option<FsClock>,
    /// Every entry seen, `item.sha256` filled for files (the content that was copied), with
    /// each block's digest for the files over a block.
    pub seen: Vec<Seen>,
}

pub struct PreCopy {
    pub layout: Layout,
    pub paths: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Receipt {
    pub files: u64,
    pub bytes: u64,
}

/// A change time the filesystem `dev` gave a directory molt made: any change made after it,
/// on that filesystem, gets a change time at least this (the same clock, with the same
/// granularity, which only moves forward). An entry of `dev` whose change time is older was
/// last changed before it, so a later change shows in its stat; only entries changed at or
/// after it are racy (the rule git applies to its index). Entries of other filesystems fall
/// back to a window wide enough for the coarsest timestamps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FsClock {
    pub dev: u64,
    pub ctime_ns: i64,
}

impl FsClock {
    pub fn of(dir: &std::path::Path) -> std::io::Result<FsClock> {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::symlink_metadata(dir)?;
        Ok(FsClock {
            dev: m.dev(),
            ctime_ns: m.ctime().saturating_mul(1_000_000_000) + m.ctime_nsec(),
        })
    }
}

pub(crate) fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

#[async_trait]
impl Step for PreCopy {
    type Receipt = Receipt;

    fn name(&self) -> String {
        format!(
            "pre-copy {} into backup {}",
            self.paths.join(", "),
            self.layout.id
        )
    }

    fn class(&self) -> StepClass {
        StepClass::Reversible
    }

    async fn apply(&self, _ctx: &StepCtx) -> Result<Receipt, StepError> {
        let l = &self.layout;
        if let Some(m) = l
            .read_manifest()
            .map_err(|e| io_err("read", &l.manifest(), e))?
        {
            return Ok(Receipt {
                files: m.files,
                bytes: m.bytes,
            });
        }
        if let Some(r) = super::read_json::<PreCopyRecord>(&l.precopy())
            .map_err(|e| io_err("read", &l.precopy(), e))?
        {
            return Ok(totals(&r.seen));
        }
        let data = l.data();
        remove_path(&data).map_err(|e| io_err("remove", &data, e))?;
        std::fs::create_dir_all(&data).map_err(|e| io_err("create", &data, e))?;
        let started_ns = now_ns();
        let fs_clock = FsClock::of(&data).map_err(|e| io_err("stat", &data, e))?;
        let mut seen = scan(&l.root, &self.paths).map_err(|e| io_err("scan", &l.root, e))?;
        let total = totals(&seen);
        let bar = crate::report::Progress::begin("pre-copy", total.bytes);
        for s in &mut seen {
            let scheme = Scheme::for_size(s.item.size);
            let digested = materialize(&l.root, &data, &s.item, scheme)
                .map_err(|e| io_err("copy", &l.root.join(&s.item.path), e))?;
            if let Some(d) = digested {
                s.item.sha256 = Some(d.digest);
                s.blocks = to_hex(&d.blocks);
            }
            bar.inc(s.item.size);
            engine::failpoint("steps::backup::precopy_entry");
        }
        bar.finish();
        let items: Vec<_> = seen.iter().map(|s| s.item.clone()).collect();
        finish_dirs(&data, &items).map_err(|e| io_err("set metadata in", &data, e))?;
        // Flushed now, while the old release still serves: otherwise the final sync's
        // `syncfs` would write back the whole copy inside the downtime.
        syncfs(&data).map_err(|e| io_err("sync", &data, e))?;
        let record = PreCopyRecord {
            format: MANIFEST_FORMAT,
            id: l.id.clone(),
            paths: self.paths.clone(),
            started_ns,
            fs_clock: Some(fs_clock),
            seen,
        };
        write_json(&l.precopy(), &record).map_err(|e| io_err("write", &l.precopy(), e))?;
        Ok(totals(&record.seen))
    }

    async fn undo(&self, _ctx: &StepCtx, _receipt: Option<Receipt>) -> Result<(), StepError> {
        let dir = self.layout.dir();
        remove_path(&dir).map_err(|e| io_err("remove", &dir, e))
    }
}

fn totals(seen: &[Seen]) -> Receipt {
    let (files, bytes) = super::totals(seen.iter().map(|s| &s.item));
    Receipt { files, bytes }
}

#[cfg(test)]
mod tests {
    use super::FsClock;
    use std::os::unix::fs::MetadataExt;

    /// The premise of [`FsClock`]: on one filesystem, what changes after the directory was
    /// made has a change time at least the directory's, and what changed before it at most.
    #[test]
    fn the_filesystem_clock_orders_changes_around_it() {
        let dir = tempfile::tempdir().unwrap();
        let ctime = |p: &std::path::Path| {
            let m = std::fs::metadata(p).unwrap();
            m.ctime() * 1_000_000_000 + m.ctime_nsec()
        };
        for _ in 0..200 {
            let before = dir.path().join("before");
            std::fs::write(&before, b"x").unwrap();
            let d = dir.path().join("data");
            std::fs::create_dir(&d).unwrap();
            let clock = FsClock::of(&d).unwrap();
            let after = dir.path().join("after");
            std::fs::write(&after, b"y").unwrap();
            assert_eq!(clock.dev, std::fs::metadata(&after).unwrap().dev());
            assert!(ctime(&before) <= clock.ctime_ns);
            assert!(ctime(&after) >= clock.ctime_ns);
            std::fs::remove_dir(&d).unwrap();
            for f in [before, after] {
                std::fs::remove_file(f).unwrap();
            }
        }
    }
}
