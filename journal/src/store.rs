//! The sled-backed record store.

use crate::error::Error;
use crate::mirror::{self, MIRROR};
use engine::{Record, RunId, FORMAT};
use std::collections::{BTreeSet, HashSet};
use std::fs::File;
use std::path::{Path, PathBuf};

const RECORDS: &str = "records";
const META: &str = "meta";
const META_FORMAT: &[u8] = b"format";
/// The lowest id a new run may take (u64 BE): salvage sets it past a run it had to drop.
const META_NEXT_RUN: &[u8] = b"next_run";

/// A stored value that could not be turned into a record. Never acted on.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "damage", rename_all = "snake_case")]
pub enum Damage {
    /// The bytes are not a record (truncated, garbage, wrong shape).
    Garbage { seq: u64, reason: String },
    /// A record written by a newer molt.
    NewerFormat { seq: u64, format: u32 },
    /// The key does not match the record inside it.
    Misplaced { seq: u64, reason: String },
}

impl std::fmt::Display for Damage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Damage::Garbage { seq, reason } => write!(f, "record {seq} is damaged: {reason}"),
            Damage::NewerFormat { seq, format } => write!(
                f,
                "record {seq} has format {format}; this molt reads format {FORMAT} and older"
            ),
            Damage::Misplaced { seq, reason } => write!(f, "record {seq} is misplaced: {reason}"),
        }
    }
}

/// Everything readable about one run.
#[derive(Clone, Debug, Default)]
pub struct RunLog {
    /// Records that decoded, in sequence order, up to the first damaged one.
    pub records: Vec<Record>,
    /// Values that did not decode; a run with any is not recoverable by this molt.
    pub damage: Vec<Damage>,
    /// Records that decoded but follow a damaged one (shown, never replayed).
    pub after_damage: Vec<Record>,
}

/// The journal of one installation.
pub struct Store {
    path: PathBuf,
    db: sled::Db,
    records: sled::Tree,
    meta: sled::Tree,
    log: File,
    /// `records.log`, open for appending.
    mirror: File,
    synced_blobs: HashSet<PathBuf>,
    /// Mirror lines of records appended since the last sync.
    pending: Vec<u8>,
}

impl Store {
    /// Open (or create) the journal in `dir`.
    pub fn open(dir: &Path) -> Result<Store, Error> {
        let path = dir.to_path_buf();
        crate::salvage::finish_switch(dir).map_err(|source| Error::Io {
            op: "finish salvage",
            path: path.clone(),
            source,
        })?;
        let created = !dir.exists();
        std::fs::create_dir_all(dir).map_err(|source| Error::Io {
            op: "create",
            path: path.clone(),
            source,
        })?;
        if created {
            // The journal's own name must survive a power cut too.
            if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                sync_dir(parent).map_err(|source| Error::Io {
                    op: "sync",
                    path: parent.to_path_buf(),
                    source,
                })?;
            }
        }
        let db = open_sled(dir)?;
        let sled_err = |op| {
            let path = path.clone();
            move |source| Error::Sled { op, path, source }
        };
        let records = db.open_tree(RECORDS).map_err(sled_err("open"))?;
        let meta = db.open_tree(META).map_err(sled_err("open"))?;
        match meta.get(META_FORMAT).map_err(sled_err("read"))? {
            Some(v) => {
                let found = <[u8; 4]>::try_from(v.as_ref())
                    .map(u32::from_be_bytes)
                    .unwrap_or(u32::MAX);
                if found > FORMAT {
                    return Err(Error::NewerFormat { path, found });
                }
            }
            None => {
                meta.insert(META_FORMAT, &FORMAT.to_be_bytes())
                    .map_err(sled_err("write"))?;
            }
        }
        // sled writes its `conf` without syncing it; a torn one would stop sled opening.
        let conf = dir.join("conf");
        File::open(&conf)
            .and_then(|f| f.sync_all())
            .map_err(|source| Error::Io {
                op: "sync",
                path: conf,
                source,
            })?;
        let log_path = dir.join("db");
        let log = File::open(&log_path).map_err(|source| Error::Io {
            op: "open",
            path: log_path,
            source,
        })?;
        check_mirror(dir, &records)?;
        // Opened after the check (which may replace the file); it exists from the first open
        // on, its name made durable with the directory's sync below.
        let mirror_path = dir.join(MIRROR);
        let mirror = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&mirror_path)
            .map_err(|source| Error::Io {
                op: "open",
                path: mirror_path,
                source,
            })?;
        let mut store = Store {
            path,
            db,
            records,
            meta,
            log,
            mirror,
            synced_blobs: HashSet::new(),
            pending: Vec::new(),
        };
        store.sync()?;
        sync_dir(dir).map_err(|source| Error::Io {
            op: "sync",
            path: dir.to_path_buf(),
            source,
        })?;
        Ok(store)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether a run holds a damaged record (a record from a newer molt is not damage: it is
    /// refused, never salvaged).
    pub fn has_damage(&self) -> Result<bool, Error> {
        for run in self.runs()? {
            let log = self.read_run(run)?;
            if log
                .damage
                .iter()
                .any(|d| !matches!(d, Damage::NewerFormat { .. }))
            {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Append one record and make it durable (see the crate's durability contract).
    pub fn append(&mut self, record: &Record) -> Result<(), Error> {
        self.append_buffered(record)?;
        self.sync()
    }

    /// Append one record without making it durable yet; [`Store::sync`] does. After a crash
    /// the journal holds a prefix of the appended records (sled's log is replayed in order).
    pub fn append_buffered(&mut self, record: &Record) -> Result<(), Error> {
        let bytes = serde_json::to_vec(record).map_err(|source| Error::Encode {
            run: record.run,
            seq: record.seq,
            source,
        })?;
        self.insert(record.run, record.seq, &bytes)?;
        self.pending
            .extend_from_slice(&mirror::line(record.run, record.seq, &bytes));
        Ok(())
    }

    /// Store raw bytes under a record key, durably. Tests use it to plant damaged records.
    pub fn insert_raw(&mut self, run: RunId, seq: u64, bytes: &[u8]) -> Result<(), Error> {
        self.insert(run, seq, bytes)?;
        self.sync()
    }

    fn insert(&mut self, run: RunId, seq: u64, bytes: &[u8]) -> Result<(), Error> {
        self.records
            .insert(key(run, seq), bytes)
            .map_err(|source| Error::Sled {
                op: "insert",
                path: self.path.clone(),
                source,
            })?;
        Ok(())
    }

    /// Make everything appended so far durable: sled's flush, then `fdatasync` of its log and
    /// of any new blob file; then the same records appended to the mirror and synced (after
    /// sled, so the mirror is never ahead of a whole sled).
    pub fn sync(&mut self) -> Result<(), Error> {
        self.sync_sled()?;
        if !self.pending.is_empty() {
            use std::io::Write;
            let io = |op| {
                let path = self.path.join(MIRROR);
                move |source| Error::Io { op, path, source }
            };
            self.mirror.write_all(&self.pending).map_err(io("write"))?;
            self.mirror.sync_data().map_err(io("sync"))?;
            self.pending.clear();
        }
        Ok(())
    }

    fn sync_sled(&mut self) -> Result<(), Error> {
        self.db.flush().map_err(|source| Error::Sled {
            op: "flush",
            path: self.path.clone(),
            source,
        })?;
        let io = |op, path: &Path| {
            let path = path.to_path_buf();
            move |source| Error::Io { op, path, source }
        };
        self.log.sync_data().map_err(io("sync", &self.path))?;
        // Large pages go to separate blob files, which sled syncs with sync_file_range too.
        let blobs = self.path.join("blobs");
        let mut new_blob = false;
        if let Ok(entries) = std::fs::read_dir(&blobs) {
            for entry in entries.flatten() {
                let p = entry.path();
                if !self.synced_blobs.contains(&p) {
                    if let Ok(f) = File::open(&p) {
                        f.sync_data().map_err(io("sync", &p))?;
                    }
                    new_blob = true;
                    self.synced_blobs.insert(p);
                }
            }
        }
        if new_blob {
            sync_dir(&blobs).map_err(io("sync", &blobs))?;
        }
        Ok(())
    }

    /// Every run id in the journal, ascending.
    pub fn runs(&self) -> Result<Vec<RunId>, Error> {
        let mut runs = Vec::new();
        let mut from = 0u64;
        loop {
            let next = self
                .records
                .range(key(RunId(from), 0)..)
                .next()
                .transpose()
                .map_err(|source| Error::Sled {
                    op: "read",
                    path: self.path.clone(),
                    source,
                })?;
            let Some((k, _)) = next else { break };
            let Some((run, _)) = split_key(&k) else {
                break;
            };
            runs.push(run);
            match run.0.checked_add(1) {
                Some(n) => from = n,
                None => break,
            }
        }
        Ok(runs)
    }

    /// The id for a new run: one more than the largest in the journal.
    pub fn next_run_id(&self) -> Result<RunId, Error> {
        let floor = self
            .meta
            .get(META_NEXT_RUN)
            .map_err(|source| Error::Sled {
                op: "read",
                path: self.path.clone(),
                source,
            })?
            .and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok())
            .map_or(1, u64::from_be_bytes);
        Ok(RunId(self.runs()?.last().map_or(1, |r| r.0 + 1).max(floor)))
    }

    /// New runs take ids from `next` on (salvage: past a run it could not keep).
    pub(crate) fn set_next_run_floor(&mut self, next: u64) -> Result<(), Error> {
        self.meta
            .insert(META_NEXT_RUN, &next.to_be_bytes())
            .map_err(|source| Error::Sled {
                op: "write",
                path: self.path.clone(),
                source,
            })?;
        self.sync()
    }

    /// Read one run, separating what decodes from what does not.
    pub fn read_run(&self, run: RunId) -> Result<RunLog, Error> {
        let mut log = RunLog::default();
        let end = run.0.checked_add(1).map(|n| key(RunId(n), 0));
        let range = match &end {
            Some(end) => self.records.range(key(run, 0)..end.clone()),
            None => self.records.range(key(run, 0)..),
        };
        for item in range {
            let (k, v) = item.map_err(|source| Error::Sled {
                op: "read",
                path: self.path.clone(),
                source,
            })?;
            let seq = split_key(&k).map_or(u64::MAX, |(_, s)| s);
            match decode(run, seq, &v) {
                Ok(record) if log.damage.is_empty() => log.records.push(record),
                Ok(record) => log.after_damage.push(record),
                Err(d) => log.damage.push(d),
            }
        }
        Ok(log)
    }
}

/// Open sled's database in `dir`. sled releases its file lock from a background thread after
/// the last handle is dropped, so a journal closed a moment ago (by this process) may still
/// look held: a short grace period before calling it busy. sled panics on some kinds of
/// corrupt files instead of returning an error; a journal that cannot be read is reported,
/// not a crash of the tool.
pub(crate) fn open_sled(dir: &Path) -> Result<sled::Db, Error> {
    let path = dir.to_path_buf();
    let mut tries = 0;
    let opened = loop {
        let config = sled::Config::new().path(dir);
        let opened = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || config.open()));
        match &opened {
            Ok(Err(sled::Error::Io(e)))
                if e.to_string().contains("could not acquire lock") && tries < 40 =>
            {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(25));
            }
            _ => break opened,
        }
    };
    match opened {
        Ok(Ok(db)) => Ok(db),
        Ok(Err(sled::Error::Io(e))) if e.to_string().contains("could not acquire lock") => {
            Err(Error::Busy { path })
        }
        Ok(Err(e)) => Err(Error::Open {
            path,
            reason: e.to_string(),
        }),
        Err(_) => Err(Error::Open {
            path,
            reason: "sled panicked while reading its files (they are probably corrupt)".into(),
        }),
    }
}

/// Every (run, seq, value) stored in `records`, in key order.
fn raw(path: &Path, records: &sled::Tree) -> Result<Vec<mirror::Raw>, Error> {
    let mut out = Vec::new();
    for item in records.iter() {
        let (k, v) = item.map_err(|source| Error::Sled {
            op: "read",
            path: path.to_path_buf(),
            source,
        })?;
        if let Some((run, seq)) = split_key(&k) {
            out.push((run, seq, v.to_vec()));
        }
    }
    Ok(out)
}

/// Compare sled with its mirror: a record only the mirror holds means sled lost data
/// (refused: [`Error::Diverged`]); a mirror missing records or holding damaged lines is
/// rewritten from sled (a kill between sled's sync and the mirror's leaves it short).
fn check_mirror(dir: &Path, records: &sled::Tree) -> Result<(), Error> {
    let mirror_path = dir.join(MIRROR);
    let io = |op| {
        let path = mirror_path.clone();
        move |source| Error::Io { op, path, source }
    };
    let (lines, bad) = mirror::read(&mirror_path).map_err(io("read"))?;
    let stored = raw(dir, records)?;
    let in_sled: BTreeSet<(u64, u64)> = stored.iter().map(|(r, s, _)| (r.0, *s)).collect();
    let missing: Vec<(u64, u64)> = lines
        .iter()
        .map(|(r, s, _)| (r.0, *s))
        .filter(|k| !in_sled.contains(k))
        .collect();
    if let Some(&(first_run, first_seq)) = missing.first() {
        return Err(Error::Diverged {
            path: dir.to_path_buf(),
            missing: missing.len(),
            first_run,
            first_seq,
        });
    }
    let in_mirror: BTreeSet<(u64, u64)> = lines.iter().map(|(r, s, _)| (r.0, *s)).collect();
    let decodable: Vec<&mirror::Raw> = stored
        .iter()
        .filter(|(r, s, v)| decode(*r, *s, v).is_ok())
        .collect();
    if bad > 0
        || decodable
            .iter()
            .any(|(r, s, _)| !in_mirror.contains(&(r.0, *s)))
    {
        if bad > 0 {
            tracing::warn!(
                "{}: {bad} damaged lines; rewritten from the journal",
                mirror_path.display()
            );
        }
        let fresh: Vec<Vec<u8>> = decodable
            .iter()
            .map(|(r, s, v)| mirror::line(*r, *s, v))
            .collect();
        mirror::rewrite(dir, &fresh).map_err(io("rewrite"))?;
    }
    Ok(())
}

/// Decode one stored value, checking it against its key.
pub(crate) fn decode(run: RunId, seq: u64, bytes: &[u8]) -> Result<Record, Damage> {
    #[derive(serde::Deserialize)]
    struct Probe {
        format: u32,
    }
    let probe: Probe = serde_json::from_slice(bytes).map_err(|e| Damage::Garbage {
        seq,
        reason: e.to_string(),
    })?;
    if probe.format > FORMAT {
        return Err(Damage::NewerFormat {
            seq,
            format: probe.format,
        });
    }
    let record: Record = serde_json::from_slice(bytes).map_err(|e| Damage::Garbage {
        seq,
        reason: e.to_string(),
    })?;
    if record.run != run || record.seq != seq {
        return Err(Damage::Misplaced {
            seq,
            reason: format!(
                "stored under run {run} seq {seq} but says run {} seq {}",
                record.run, record.seq
            ),
        });
    }
    Ok(record)
}

fn key(run: RunId, seq: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(16);
    k.extend_from_slice(&run.0.to_be_bytes());
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

fn split_key(k: &[u8]) -> Option<(RunId, u64)> {
    let run = u64::from_be_bytes(k.get(0..8)?.try_into().ok()?);
    let seq = u64::from_be_bytes(k.get(8..16)?.try_into().ok()?);
    Some((RunId(run), seq))
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

impl engine::Journal for Store {
    fn append(&mut self, record: &Record) -> Result<(), engine::BoxError> {
        self.append_buffered(record).map_err(Into::into)
    }

    fn sync(&mut self) -> Result<(), engine::BoxError> {
        Store::sync(self).map_err(Into::into)
    }
}
