//! `backup` (the final sync, after the services stopped): bring the pre-copied backup up to
//! date and seal it with its manifest. Downtime is proportional to what changed, not to the
//! size of the data.
//!
//! Change detection, per entry, against what the pre-copy saw: a different kind, size, mtime,
//! change time, inode, mode, owner or link target means changed. Equal stats are trusted only
//! when the entry's change time is older than the start of the pre-copy scan, as the
//! filesystem's own clock gave it ([`FsClock`], for entries of the backup's filesystem; 2 s
//! before the wall clock's start for others); otherwise (a write in the same clock tick would
//! not show in the stat) the file is compared with its copy like a changed one.
//! Entries that disappeared are removed from the backup, new ones copied.
//!
//! - `do`: with the manifest present, done. Otherwise applies the changes to `data/`, makes
//!   the whole filesystem durable (`syncfs`), and writes `manifest.json` atomically: from that
//!   instant, and not before, the backup is complete (`precopy.json` is then removed). Idempotent: the sources are compared with
//!   the pre-copy's record again, so a re-run redoes exactly what may not have been done.
//! - `undo`: removes the manifest (the backup is no longer complete); the pre-copy's undo
//!   removes the rest. Idempotent.

use super::digest::from_hex;
use super::precopy::{FsClock, PreCopyRecord};
use super::tree::{finish_dirs, rematerialize, scan, syncfs, Seen};
use super::{read_json, write_json, Kind, Layout, Manifest, MANIFEST_FORMAT};
use crate::fsutil::{remove_path, sync_dir, write_atomic};
use crate::io_err;
use async_trait::async_trait;
use engine::{Step, StepClass, StepCtx, StepError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Entries whose change time is within this of the pre-copy's start are hashed, not trusted:
/// file times come from a coarse kernel clock that may lag the wall clock by a tick.
const RACY_NS: i64 = 2_000_000_000;

pub struct FinalSync {
    pub layout: Layout,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Receipt {
    pub files: u64,
    pub bytes: u64,
    /// Entries copied again, added or removed since the pre-copy.
    pub changed: u64,
    pub removed: u64,
}

/// Has the entry changed since the pre-copy saw it? `None`: the stat cannot decide.
fn changed(old: &Seen, new: &Seen, started_ns: i64, clock: Option<FsClock>) -> Option<bool> {
    let mut a = old.item.clone();
    a.sha256 = None;
    if a != new.item || old.ino != new.ino || old.dev != new.dev || old.ctime_ns != new.ctime_ns {
        return Some(true);
    }
    let racy_from = match clock {
        Some(c) if c.dev == new.dev => c.ctime_ns,
        _ => started_ns - RACY_NS,
    };
    if new.item.kind == Kind::File && old.ctime_ns >= racy_from {
        return None;
    }
    Some(false)
}

#[async_trait]
impl Step for FinalSync {
    type Receipt = Receipt;

    fn name(&self) -> String {
        format!("final sync of backup {}", self.layout.id)
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
                changed: 0,
                removed: 0,
            });
        }
        let pre: PreCopyRecord = read_json(&l.precopy())
            .map_err(|e| io_err("read", &l.precopy(), e))?
            .ok_or_else(|| {
                StepError::new(format!(
                    "backup {} has no pre-copy record ({}); the pre-copy step must run first",
                    l.id,
                    l.precopy().display()
                ))
            })?;
        let data = l.data();
        // The pre-copy's block digests stand for data/ only if no earlier attempt wrote to
        // it; the marker is durable before the first write.
        let marker = l.sync_marker();
        let trust_blocks = !marker.exists();
        if trust_blocks {
            write_atomic(&marker, b"").map_err(|e| io_err("write", &marker, e))?;
        }
        let now = scan(&l.root, &pre.paths).map_err(|e| io_err("scan", &l.root, e))?;
        let old: BTreeMap<&str, &Seen> =
            pre.seen.iter().map(|s| (s.item.path.as_str(), s)).collect();
        let current: std::collections::BTreeSet<&str> =
            now.iter().map(|s| s.item.path.as_str()).collect();

        // Removed since the pre-copy: deepest first.
        let mut removed = 0;
        for gone in pre
            .seen
            .iter()
            .rev()
            .filter(|s| !current.contains(s.item.path.as_str()))
        {
            let p = data.join(&gone.item.path);
            remove_path(&p).map_err(|e| io_err("remove", &p, e))?;
            removed += 1;
        }

        let mut items = Vec::with_capacity(now.len());
        let mut copied = 0;
        for s in &now {
            let src = l.root.join(&s.item.path);
            let mut item = s.item.clone();
            let prev = old.get(item.path.as_str());
            // a racy entry (`None`) is synced like a changed one: compared block by block
            // with the copy, written where it differs, and digested
            let keep =
                prev.is_some_and(|p| changed(p, s, pre.started_ns, pre.fs_clock) == Some(false));
            if keep {
                item.sha256 = prev.and_then(|p| p.item.sha256.clone());
            } else {
                let dst = data.join(&item.path);
                if prev.is_some_and(|p| p.item.kind != item.kind) {
                    remove_path(&dst).map_err(|e| io_err("remove", &dst, e))?;
                }
                let known = prev
                    .filter(|p| trust_blocks && p.item.kind == Kind::File)
                    .and_then(|p| from_hex(&p.blocks));
                item.sha256 = rematerialize(&l.root, &data, &item, known.as_deref())
                    .map_err(|e| io_err("copy", &src, e))?
                    .map(|d| d.digest);
                copied += 1;
                engine::failpoint("steps::backup::sync_entry");
            }
            items.push(item);
        }
        finish_dirs(&data, &items).map_err(|e| io_err("set metadata in", &data, e))?;
        syncfs(&data).map_err(|e| io_err("sync", &data, e))?;
        sync_dir(&l.dir()).map_err(|e| io_err("sync", &l.dir(), e))?;
        engine::failpoint("steps::backup::before_manifest");
        let (files, bytes) = super::totals(&items);
        let manifest = Manifest {
            format: MANIFEST_FORMAT,
            id: l.id.clone(),
            created_ms: (super::precopy::now_ns() / 1_000_000) as u64,
            paths: pre.paths.clone(),
            items,
            archive: None,
            files,
            bytes,
        };
        write_json(&l.manifest(), &manifest).map_err(|e| io_err("write", &l.manifest(), e))?;
        // The pre-copy record has served; the manifest now says everything.
        for done in [l.precopy(), marker] {
            remove_path(&done).map_err(|e| io_err("remove", &done, e))?;
        }
        Ok(Receipt {
            files,
            bytes,
            changed: copied,
            removed,
        })
    }

    async fn undo(&self, _ctx: &StepCtx, _receipt: Option<Receipt>) -> Result<(), StepError> {
        let m = self.layout.manifest();
        remove_path(&m).map_err(|e| io_err("remove", &m, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backup::Item;

    fn seen(size: u64, ctime_ns: i64) -> Seen {
        Seen {
            item: Item {
                path: "shared/f".into(),
                kind: Kind::File,
                mode: 0o644,
                uid: 0,
                gid: 0,
                size,
                mtime_ns: 5,
                sha256: Some("abc".into()),
                target: None,
            },
            ino: 7,
            dev: 1,
            ctime_ns,
            blocks: vec![],
        }
    }

    #[test]
    fn change_detection_trusts_only_old_enough_stats() {
        let start = 100 * RACY_NS;
        let old = seen(3, start - 2 * RACY_NS);
        let mut same = old.clone();
        same.item.sha256 = None; // a fresh stat has no hash
        assert_eq!(changed(&old, &same, start, None), Some(false));
        let mut bigger = same.clone();
        bigger.item.size = 4;
        assert_eq!(changed(&old, &bigger, start, None), Some(true));
        let mut touched = same.clone();
        touched.ctime_ns += 1;
        assert_eq!(changed(&old, &touched, start, None), Some(true));
        let mut moved = same.clone();
        moved.ino = 8;
        assert_eq!(changed(&old, &moved, start, None), Some(true));
        // Changed within the racy window of the scan: the stat cannot decide.
        let racy = seen(3, start - RACY_NS / 2);
        let mut racy_now = racy.clone();
        racy_now.item.sha256 = None;
        assert_eq!(changed(&racy, &racy_now, start, None), None);
        // The filesystem's clock at the scan decides for entries of its filesystem: changed
        // before it, the stat is trusted however close to the start; at it, racy.
        let clock = |dev, ctime_ns| Some(FsClock { dev, ctime_ns });
        let at = start - RACY_NS / 2;
        assert_eq!(
            changed(&racy, &racy_now, start, clock(1, at + 1)),
            Some(false)
        );
        assert_eq!(changed(&racy, &racy_now, start, clock(1, at)), None);
        // another filesystem's clock says nothing of this one's
        assert_eq!(changed(&racy, &racy_now, start, clock(2, at + 1)), None);
    }
}
