//! Salvage: rebuild a damaged journal from what is still readable, into a fresh journal that
//! recovery can act on. The damaged journal is moved aside (`journal.damaged-<secs>`), never
//! deleted.
//!
//! Records are gathered from three places, the first good copy of each (run, seq) winning:
//! 1. the mirror `records.log` (each line checksummed);
//! 2. sled, when it still opens (its values checked by decoding them against their keys);
//! 3. when sled does not open, records carved out of its raw files: every `{"format":` that
//!    starts a whole record whose run and seq agree with each other. Records are immutable, so
//!    any intact copy of one is the record.
//!
//! A run is kept when its records run from seq 0 without a gap. A finished run (committed or
//! rolled back) with a gap is dropped from the fresh journal (history only; it stays in the
//! damaged one) and new run ids stay above it. An unfinished run with a gap, or one with a
//! record known to exist (its key survives) but unreadable everywhere, cannot be recovered
//! safely: salvage then changes nothing and says what was lost. A record written by a newer
//! molt stops salvage too (use that molt).
//!
//! The switch survives a crash: the fresh journal is built in `journal.salvaging`, renamed
//! `journal.salvaged` when whole, the damaged journal renamed aside, and `journal.salvaged`
//! renamed to `journal`; [`crate::Store::open`] finishes the last rename if a crash left it.

use crate::error::Error;
use crate::mirror::{self, MIRROR};
use crate::store::{decode, Damage, Store};
use engine::{Entry, Record, RunId};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// What salvage kept and dropped.
#[derive(Clone, Debug, Serialize)]
pub struct Salvaged {
    /// Where the damaged journal now is.
    pub kept_aside: PathBuf,
    /// Runs rebuilt whole, with their record counts.
    pub kept: Vec<(u64, usize)>,
    /// Finished runs with lost records, left out of the fresh journal.
    pub dropped: Vec<(u64, String)>,
    /// Where the records came from: mirror, sled, carved.
    pub sources: BTreeMap<String, usize>,
}

fn sibling(dir: &Path, suffix: &str) -> PathBuf {
    let mut name = dir.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    dir.with_file_name(name)
}

fn sync_parent(dir: &Path) -> std::io::Result<()> {
    let parent = dir
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::File::open(parent)?.sync_all()
}

/// Finish a switch a crash interrupted: a whole `journal.salvaged` and no `journal`.
pub(crate) fn finish_switch(dir: &Path) -> std::io::Result<()> {
    let salvaged = sibling(dir, ".salvaged");
    if !dir.exists() && salvaged.is_dir() {
        std::fs::rename(&salvaged, dir)?;
        sync_parent(dir)?;
    }
    Ok(())
}

struct Gathered {
    good: BTreeMap<(u64, u64), Record>,
    /// Keys whose value exists somewhere but never decoded.
    lost: BTreeMap<(u64, u64), Damage>,
    newer: Vec<Damage>,
    sources: BTreeMap<String, usize>,
}

impl Gathered {
    fn offer(&mut self, source: &str, run: RunId, seq: u64, bytes: &[u8]) {
        match decode(run, seq, bytes) {
            Ok(r) => {
                if let std::collections::btree_map::Entry::Vacant(v) = self.good.entry((run.0, seq))
                {
                    v.insert(r);
                    *self.sources.entry(source.to_string()).or_default() += 1;
                }
            }
            Err(d @ Damage::NewerFormat { .. }) => self.newer.push(d),
            Err(d) => {
                self.lost.entry((run.0, seq)).or_insert(d);
            }
        }
    }
}

/// Open sled alone (no mirror check): its values, or `None` when it does not open.
fn sled_values(dir: &Path) -> Option<Vec<crate::mirror::Raw>> {
    // The same opening as `Store::open`: a journal this process closed a moment ago is
    // waited for, not mistaken for an unreadable one.
    let db = crate::store::open_sled(dir).ok()?;
    let read = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let tree = db.open_tree("records").ok()?;
        let mut out = Vec::new();
        for item in tree.iter() {
            let (k, v) = item.ok()?;
            let run = u64::from_be_bytes(k.get(0..8)?.try_into().ok()?);
            let seq = u64::from_be_bytes(k.get(8..16)?.try_into().ok()?);
            out.push((RunId(run), seq, v.to_vec()));
        }
        Some(out)
    }));
    read.ok().flatten()
}

/// Whole records found anywhere in `bytes`.
fn carve(bytes: &[u8]) -> Vec<Record> {
    const START: &[u8] = br#"{"format":"#;
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(off) = bytes[i..].windows(START.len()).position(|w| w == START) {
        let at = i + off;
        let mut it = serde_json::Deserializer::from_slice(&bytes[at..]).into_iter::<Record>();
        if let Some(Ok(r)) = it.next() {
            out.push(r);
        }
        i = at + 1;
    }
    out
}

fn gather(dir: &Path) -> Result<Gathered, Error> {
    let mut g = Gathered {
        good: BTreeMap::new(),
        lost: BTreeMap::new(),
        newer: Vec::new(),
        sources: BTreeMap::new(),
    };
    let (lines, _) = mirror::read(&dir.join(MIRROR)).map_err(|source| Error::Io {
        op: "read",
        path: dir.join(MIRROR),
        source,
    })?;
    for (run, seq, bytes) in &lines {
        g.offer("mirror", *run, *seq, bytes);
    }
    match sled_values(dir) {
        Some(values) => {
            for (run, seq, bytes) in &values {
                g.offer("sled", *run, *seq, bytes);
            }
        }
        None => {
            // sled's log, its snapshots and its blob files.
            let mut files = vec![dir.join("db")];
            let listed = |d: &Path| -> Vec<PathBuf> {
                std::fs::read_dir(d)
                    .map(|es| es.flatten().map(|e| e.path()).collect())
                    .unwrap_or_default()
            };
            files.extend(listed(dir).into_iter().filter(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("snap."))
            }));
            files.extend(listed(&dir.join("blobs")));
            for f in files {
                if let Ok(bytes) = std::fs::read(&f) {
                    for r in carve(&bytes) {
                        let raw = serde_json::to_vec(&r).expect("records encode");
                        g.offer("carved", r.run, r.seq, &raw);
                    }
                }
            }
        }
    }
    g.lost.retain(|k, _| !g.good.contains_key(k));
    Ok(g)
}

fn finished(records: &[&Record]) -> bool {
    records
        .iter()
        .any(|r| matches!(r.entry, Entry::RunCommitted | Entry::RunRolledBack))
}

/// Rebuild the journal at `dir` from what is readable, or explain why it cannot be.
pub fn salvage(dir: &Path) -> Result<Salvaged, Error> {
    let refuse = |reason: String| Error::Unsalvageable {
        path: dir.to_path_buf(),
        reason,
    };
    let g = gather(dir)?;
    if let Some(d) = g.newer.first() {
        return Err(refuse(format!("{d}: use a newer molt")));
    }
    let mut runs: BTreeMap<u64, BTreeMap<u64, &Record>> = BTreeMap::new();
    for ((run, seq), r) in &g.good {
        runs.entry(*run).or_default().insert(*seq, r);
    }
    for (run, _) in g.lost.keys() {
        runs.entry(*run).or_default();
    }
    let last_run = runs.keys().next_back().copied();
    let mut kept = Vec::new();
    let mut dropped = Vec::new();
    let mut keep: Vec<&Record> = Vec::new();
    for (run, recs) in &runs {
        let lost: Vec<(&(u64, u64), &Damage)> =
            g.lost.iter().filter(|((r, _), _)| r == run).collect();
        let top = recs
            .keys()
            .next_back()
            .copied()
            .into_iter()
            .chain(lost.iter().map(|((_, s), _)| *s))
            .max()
            .unwrap_or(0);
        let missing: Vec<u64> = (0..=top).filter(|s| !recs.contains_key(s)).collect();
        let list: Vec<&Record> = recs.values().copied().collect();
        if missing.is_empty() {
            kept.push((*run, list.len()));
            keep.extend(list);
            continue;
        }
        let what = match lost.first() {
            Some((_, d)) => format!(
                "{} records lost (first: seq {}; {d})",
                missing.len(),
                missing[0]
            ),
            None => format!("{} records lost (first: seq {})", missing.len(), missing[0]),
        };
        if finished(&list) {
            dropped.push((*run, what));
            continue;
        }
        return Err(refuse(format!(
            "run {run} is unfinished and {what}: recovery cannot tell what its steps did. `molt status` shows what is on disk and which command restores which state"
        )));
    }
    if kept.is_empty() && dropped.is_empty() {
        return Err(refuse(
            "no record is readable anywhere (sled, records.log); nothing to rebuild from".into(),
        ));
    }
    // Build the fresh journal beside the damaged one.
    let io = |op: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |source| Error::Io { op, path, source }
    };
    let building = sibling(dir, ".salvaging");
    let salvaged = sibling(dir, ".salvaged");
    for p in [&building, &salvaged] {
        if p.exists() {
            std::fs::remove_dir_all(p).map_err(io("remove", p))?;
        }
    }
    {
        let mut fresh = Store::open(&building)?;
        for r in &keep {
            fresh.append_buffered(r)?;
        }
        fresh.sync()?;
        if let Some(last) = last_run {
            fresh.set_next_run_floor(last + 1)?;
        }
    }
    // sled lets go of its lock from a background thread; the rename does not need it.
    std::fs::rename(&building, &salvaged).map_err(io("rename", &building))?;
    sync_parent(dir).map_err(io("sync", dir))?;
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut aside = sibling(dir, &format!(".damaged-{secs}"));
    let mut n = 1;
    while aside.exists() {
        aside = sibling(dir, &format!(".damaged-{secs}-{n}"));
        n += 1;
    }
    std::fs::rename(dir, &aside).map_err(io("rename", dir))?;
    sync_parent(dir).map_err(io("sync", dir))?;
    finish_switch(dir).map_err(io("rename", &salvaged))?;
    Ok(Salvaged {
        kept_aside: aside,
        kept,
        dropped,
        sources: g.sources,
    })
}

/// Whether the journal at `dir` needs salvage: it does not open (damaged, or lost records
/// its mirror has), or a run in it has damaged records.
pub fn needs_salvage(dir: &Path) -> bool {
    match Store::open(dir) {
        Ok(store) => store.has_damage().unwrap_or(true),
        Err(Error::Busy { .. } | Error::NewerFormat { .. }) => false,
        Err(_) => true,
    }
}

/// Open the journal at `dir`, salvaging it first when it needs it (what `molt recover`
/// does): the open store, and the salvage's report when there was one.
pub fn open_salvaging(dir: &Path) -> Result<(Store, Option<Salvaged>), Error> {
    match Store::open(dir) {
        Ok(store) if !store.has_damage()? => return Ok((store, None)),
        Ok(store) => drop(store),
        Err(e @ (Error::Busy { .. } | Error::NewerFormat { .. })) => return Err(e),
        Err(_) => {}
    }
    let report = salvage(dir)?;
    Ok((Store::open(dir)?, Some(report)))
}
