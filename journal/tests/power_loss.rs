//! Power loss. A child process appends records (closing and reopening the journal on the
//! way) under `strace`, which records every open, write, sync and rename it makes, and prints
//! an acknowledgement after each `append` returns. From that trace the test rebuilds every
//! state a power cut could leave on disk after each event: for each file, what its last
//! `fsync`/`fdatasync` made durable, plus none, all, or a random part of the writes since
//! (the last one possibly torn); a file's name exists only once its directory was synced
//! after it was created or renamed. Each state is then opened (salvaged when it must be):
//! no record acknowledged before the cut may be missing.
//!
//! A killed process keeps what it wrote in the page cache, so crash tests that kill cannot
//! see a missing `fdatasync` or directory sync; this one does.

use engine::{Entry, PlanMeta, Record, RunId, StepClass, StepMeta, FORMAT};
use journal::Store;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;

const CHILD: &str = "MOLT_POWER_LOSS_CHILD";

fn record(run: u64, seq: u64) -> Record {
    let entry = if seq == 0 {
        Entry::RunStarted {
            plan: PlanMeta {
                id: "power".into(),
                // Run 2's spec is large enough for sled to keep it in a blob file.
                spec: serde_json::json!({"run": run, "pad": "p".repeat(if run == 2 { 600_000 } else { 10 })}),
                steps: vec![StepMeta {
                    name: "only".into(),
                    class: StepClass::Reversible,
                }],
            },
        }
    } else {
        Entry::StepIntent {
            step: 0,
            attempt: seq as u32,
        }
    };
    Record {
        format: FORMAT,
        run: RunId(run),
        seq,
        at_ms: 1_700_000_000_000 + seq,
        entry,
    }
}

/// What the child writes: runs of records, the journal reopened between runs.
const RUNS: [(u64, u64); 3] = [(1, 6), (2, 8), (3, 5)];

fn child(dir: &Path) {
    for (run, n) in RUNS {
        let mut s = Store::open(dir).unwrap();
        for seq in 0..n {
            s.append(&record(run, seq)).unwrap();
            // One write, so the trace shows the acknowledgement as one event.
            use std::io::Write;
            std::io::stderr()
                .write_all(format!("ACK {run} {seq}\n").as_bytes())
                .unwrap();
        }
    }
}

#[derive(Debug, Clone)]
enum Op {
    Write { off: u64, data: Vec<u8> },
    Truncate(u64),
}

#[derive(Default, Clone)]
struct File {
    cur: Vec<u8>,
    durable: Vec<u8>,
    pending: Vec<Op>,
}

fn apply(buf: &mut Vec<u8>, op: &Op) {
    match op {
        Op::Write { off, data } => {
            let end = *off as usize + data.len();
            if buf.len() < end {
                buf.resize(end, 0);
            }
            buf[*off as usize..end].copy_from_slice(data);
        }
        Op::Truncate(len) => buf.resize(*len as usize, 0),
    }
}

/// The disk as the trace leaves it: files by id, names live and durable.
#[derive(Default, Clone)]
struct Disk {
    files: Vec<File>,
    live: BTreeMap<PathBuf, usize>,
    durable: BTreeMap<PathBuf, usize>,
    dirs_live: BTreeSet<PathBuf>,
    dirs_durable: BTreeSet<PathBuf>,
}

impl Disk {
    fn sync_dir(&mut self, dir: &Path) {
        self.durable.retain(|p, _| p.parent() != Some(dir));
        for (p, id) in &self.live {
            if p.parent() == Some(dir) {
                self.durable.insert(p.clone(), *id);
            }
        }
        self.dirs_durable.retain(|p| p.parent() != Some(dir));
        for p in &self.dirs_live {
            if p.parent() == Some(dir) {
                self.dirs_durable.insert(p.clone());
            }
        }
    }

    /// Whether every directory between `top` and `p` has a durable name.
    fn reachable(&self, top: &Path, p: &Path) -> bool {
        p.ancestors()
            .skip(1)
            .take_while(|a| *a != top)
            .all(|a| self.dirs_durable.contains(a))
    }

    /// One state a power cut could leave: `keep(file, pending)` says how many pending ops of
    /// each file reached the disk, and whether the last of them is torn in half.
    fn cut(
        &self,
        top: &Path,
        keep: &mut dyn FnMut(usize, usize) -> (usize, bool),
    ) -> (BTreeSet<PathBuf>, BTreeMap<PathBuf, Vec<u8>>) {
        let dirs = self
            .dirs_durable
            .iter()
            .filter(|d| self.reachable(top, d))
            .cloned()
            .collect();
        let mut out = BTreeMap::new();
        for (p, &id) in self.durable.iter().filter(|(p, _)| self.reachable(top, p)) {
            let f = &self.files[id];
            let mut buf = f.durable.clone();
            let (n, torn) = keep(id, f.pending.len());
            for (i, op) in f.pending.iter().take(n).enumerate() {
                match op {
                    Op::Write { off, data } if torn && i + 1 == n => {
                        let half = Op::Write {
                            off: *off,
                            data: data[..data.len() / 2].to_vec(),
                        };
                        apply(&mut buf, &half);
                    }
                    op => apply(&mut buf, op),
                }
            }
            out.insert(p.clone(), buf);
        }
        (dirs, out)
    }
}

/// strace's `-xx` strings: every byte as `\xHH`.
fn unhex(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len() / 4);
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && b.get(i + 1) == Some(&b'x') {
            let h = std::str::from_utf8(&b[i + 2..i + 4]).unwrap();
            out.push(u8::from_str_radix(h, 16).unwrap());
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

/// The quoted strings and the other arguments of a syscall's argument list.
fn args(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut depth = 0;
    for c in s.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                cur.push(c);
            }
            '[' | '{' if !quoted => {
                depth += 1;
                cur.push(c);
            }
            ']' | '}' if !quoted => {
                depth -= 1;
                cur.push(c);
            }
            ',' if !quoted && depth == 0 => {
                out.push(cur.trim().to_string());
                cur.clear();
            }
            _ => cur.push(c),
        }
    }
    if !cur.trim().is_empty() {
        out.push(cur.trim().to_string());
    }
    out
}

fn string_arg(a: &str) -> Vec<u8> {
    unhex(a.trim_matches('"').trim_end_matches("..."))
}

/// A completed syscall: name, arguments, return value.
struct Call {
    name: String,
    args: Vec<String>,
    ret: i64,
}

fn calls(trace: &str) -> Vec<Call> {
    let mut pending: HashMap<String, String> = HashMap::new();
    let mut out = Vec::new();
    for line in trace.lines() {
        let Some((pid, rest)) = line.split_once(' ') else {
            continue;
        };
        let rest = rest.trim_start();
        let whole = if let Some(head) = rest.strip_suffix(" <unfinished ...>") {
            pending.insert(pid.to_string(), head.to_string());
            continue;
        } else if let Some(tail) = rest.strip_prefix("<... ") {
            let Some(head) = pending.remove(pid) else {
                continue;
            };
            let tail = tail.split_once(" resumed>").map_or("", |(_, t)| t);
            format!("{head}{tail}")
        } else {
            rest.to_string()
        };
        let Some(open) = whole.find('(') else {
            continue;
        };
        // `name(args)<padding> = ret`: strace pads short calls before the `=`.
        let Some(eq_at) = whole.rfind(" = ") else {
            continue;
        };
        let Some(eq) = whole[..eq_at].trim_end().strip_suffix(')').map(str::len) else {
            continue;
        };
        let ret = whole[eq_at + 3..]
            .split_whitespace()
            .next()
            .and_then(|r| r.parse().ok())
            .unwrap_or(-1);
        out.push(Call {
            name: whole[..open].to_string(),
            args: args(&whole[open + 1..eq]),
            ret,
        });
    }
    out
}

/// One event of the trace that matters to the disk, or an acknowledgement.
enum Event {
    Disk(Box<dyn Fn(&mut Disk)>),
    Ack(u64, u64),
}

fn events(trace: &str, dir: &Path) -> Vec<Event> {
    struct Fd {
        path: PathBuf,
        pos: u64,
        append: bool,
        is_dir: bool,
    }
    let mut fds: HashMap<i64, Fd> = HashMap::new();
    let mut out = Vec::new();
    let inside = |p: &Path| p.starts_with(dir) || p == dir.parent().unwrap_or(dir);
    for c in calls(trace) {
        if c.ret < 0 {
            continue;
        }
        let fd = || {
            c.args
                .first()
                .and_then(|a| a.parse::<i64>().ok())
                .unwrap_or(-1)
        };
        if c.name == "write" && fd() == 2 {
            let text = String::from_utf8_lossy(&string_arg(&c.args[1])).into_owned();
            for l in text.lines() {
                if let Some(rest) = l.strip_prefix("ACK ") {
                    let mut it = rest.split(' ').map(|x| x.parse::<u64>().unwrap());
                    out.push(Event::Ack(it.next().unwrap(), it.next().unwrap()));
                }
            }
            continue;
        }
        match c.name.as_str() {
            "mkdir" | "mkdirat" => {
                let a = if c.name == "mkdir" {
                    &c.args[0]
                } else {
                    &c.args[1]
                };
                let path = PathBuf::from(String::from_utf8(string_arg(a)).unwrap());
                if !inside(&path) {
                    continue;
                }
                out.push(Event::Disk(Box::new(move |d: &mut Disk| {
                    d.dirs_live.insert(path.clone());
                })));
            }
            "openat" => {
                let path = PathBuf::from(String::from_utf8(string_arg(&c.args[1])).unwrap());
                if !inside(&path) {
                    continue;
                }
                let flags = c.args[2].clone();
                let is_dir = flags.contains("O_DIRECTORY");
                fds.insert(
                    c.ret,
                    Fd {
                        path: path.clone(),
                        pos: 0,
                        append: flags.contains("O_APPEND"),
                        is_dir,
                    },
                );
                if is_dir {
                    continue;
                }
                let creat = flags.contains("O_CREAT");
                let trunc = flags.contains("O_TRUNC");
                out.push(Event::Disk(Box::new(move |d: &mut Disk| {
                    if !d.live.contains_key(&path) && creat {
                        d.files.push(File::default());
                        d.live.insert(path.clone(), d.files.len() - 1);
                    }
                    if trunc {
                        if let Some(&id) = d.live.get(&path) {
                            d.files[id].cur.clear();
                            d.files[id].pending.push(Op::Truncate(0));
                        }
                    }
                })));
            }
            "close" => {
                fds.remove(&fd());
            }
            "lseek" => {
                if let Some(f) = fds.get_mut(&fd()) {
                    f.pos = c.ret as u64;
                }
            }
            "write" | "pwrite64" => {
                let Some(f) = fds.get_mut(&fd()) else {
                    continue;
                };
                let data = string_arg(&c.args[1]);
                assert_eq!(
                    data.len() as i64,
                    c.ret,
                    "a short or cut write in the trace"
                );
                let path = f.path.clone();
                let (off, at_end) = if c.name == "pwrite64" {
                    (c.args[3].parse().unwrap(), false)
                } else if f.append {
                    (0, true)
                } else {
                    let o = f.pos;
                    f.pos += data.len() as u64;
                    (o, false)
                };
                out.push(Event::Disk(Box::new(move |d: &mut Disk| {
                    let id = d.live[&path];
                    let f = &mut d.files[id];
                    let off = if at_end { f.cur.len() as u64 } else { off };
                    let op = Op::Write {
                        off,
                        data: data.clone(),
                    };
                    apply(&mut f.cur, &op);
                    f.pending.push(op);
                })));
            }
            "ftruncate" => {
                let Some(f) = fds.get(&fd()) else { continue };
                let path = f.path.clone();
                let len: u64 = c.args[1].parse().unwrap();
                out.push(Event::Disk(Box::new(move |d: &mut Disk| {
                    let id = d.live[&path];
                    let op = Op::Truncate(len);
                    apply(&mut d.files[id].cur, &op);
                    d.files[id].pending.push(op);
                })));
            }
            "fsync" | "fdatasync" => {
                let Some(f) = fds.get(&fd()) else { continue };
                let path = f.path.clone();
                let is_dir = f.is_dir || path == dir.parent().unwrap_or(dir);
                out.push(Event::Disk(Box::new(move |d: &mut Disk| {
                    if is_dir || d.dirs_live.contains(&path) {
                        d.sync_dir(&path);
                    } else if let Some(&id) = d.live.get(&path) {
                        let f = &mut d.files[id];
                        f.durable = f.cur.clone();
                        f.pending.clear();
                    }
                })));
            }
            "rename" | "renameat" | "renameat2" => {
                let (a, b) = if c.name == "rename" {
                    (&c.args[0], &c.args[1])
                } else {
                    (&c.args[1], &c.args[3])
                };
                let from = PathBuf::from(String::from_utf8(string_arg(a)).unwrap());
                let to = PathBuf::from(String::from_utf8(string_arg(b)).unwrap());
                if !inside(&from) {
                    continue;
                }
                out.push(Event::Disk(Box::new(move |d: &mut Disk| {
                    if let Some(id) = d.live.remove(&from) {
                        d.live.insert(to.clone(), id);
                    }
                })));
            }
            _ => {}
        }
    }
    out
}

/// Every acknowledged record readable from the journal in `dir`, which must open without
/// salvage: sled is synced before its mirror, so whatever a cut leaves, sled holds every
/// record the mirror does (a salvage here would mean a sync that did not reach the disk).
fn check_state(dir: &Path, acked: &BTreeSet<(u64, u64)>, what: &str) {
    let store = Store::open(dir).unwrap_or_else(|e| {
        let salvaged = journal::salvage(dir)
            .map(|_| "it salvages")
            .unwrap_or("it does not salvage");
        panic!("{what}: the journal does not open ({e}); {salvaged}")
    });
    let mut have = BTreeSet::new();
    for run in store.runs().unwrap() {
        let log = store.read_run(run).unwrap();
        for r in &log.records {
            assert_eq!(*r, record(r.run.0, r.seq), "{what}: a record changed");
            have.insert((r.run.0, r.seq));
        }
    }
    let lost: Vec<_> = acked.difference(&have).collect();
    assert!(
        lost.is_empty(),
        "{what}: acknowledged records lost: {lost:?}"
    );
}

#[test]
fn power_cuts_lose_no_acknowledged_record() {
    if let Ok(dir) = std::env::var(CHILD) {
        child(Path::new(&dir));
        return;
    }
    assert!(
        Command::new("strace").arg("-V").output().is_ok(),
        "strace is missing: install Debian's strace (scripts/setup.sh does)"
    );
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("journal");
    let trace_path = tmp.path().join("trace");
    let out = Command::new("strace")
        .args(["-f", "-qq", "-xx", "-s", "16777216", "-e", "signal=none", "-o"])
        .arg(&trace_path)
        .args([
            "-e",
            "trace=openat,close,lseek,write,pwrite64,ftruncate,fsync,fdatasync,rename,renameat,renameat2,mkdir,mkdirat",
        ])
        .arg(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "power_cuts_lose_no_acknowledged_record",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, &dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "child: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        std::fs::read_dir(dir.join("blobs")).unwrap().count() > 0,
        "no blob file: the large record did not exercise blob syncing"
    );
    let trace = std::fs::read_to_string(&trace_path).unwrap();
    let events = events(&trace, &dir);
    let total: u64 = RUNS.iter().map(|(_, n)| n).sum();
    let acks = events
        .iter()
        .filter(|e| matches!(e, Event::Ack(..)))
        .count();
    assert_eq!(
        acks as u64, total,
        "acknowledgements missing from the trace"
    );
    let mut disk = Disk::default();
    let mut acked = BTreeSet::new();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut rand = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut states = 0;
    let scratch = tmp.path().join("cut");
    for (i, e) in events.iter().enumerate() {
        match e {
            Event::Disk(f) => f(&mut disk),
            Event::Ack(run, seq) => {
                acked.insert((*run, *seq));
            }
        }
        // Three disks per instant: nothing unsynced, everything, a random part (torn).
        for variant in 0..3 {
            let (dirs, files) = disk.cut(tmp.path(), &mut |_, n| match variant {
                0 => (0, false),
                1 => (n, false),
                _ if n == 0 => (0, false),
                _ => ((rand() as usize % n) + 1, rand() % 2 == 0),
            });
            let _ = std::fs::remove_dir_all(&scratch);
            std::fs::create_dir_all(&scratch).unwrap();
            for d in &dirs {
                std::fs::create_dir_all(scratch.join(d.strip_prefix(tmp.path()).unwrap())).unwrap();
            }
            for (p, bytes) in &files {
                std::fs::write(scratch.join(p.strip_prefix(tmp.path()).unwrap()), bytes).unwrap();
            }
            let j = scratch.join("journal");
            if !j.exists() {
                // The directory's own name was never durable: nothing was acknowledged yet.
                assert!(
                    acked.is_empty(),
                    "event {i}: the journal vanished after an ack (durable dirs {:?}, live {:?})",
                    disk.dirs_durable,
                    disk.dirs_live
                );
                continue;
            }
            check_state(
                &j,
                &acked,
                &format!("cut after event {i} (variant {variant})"),
            );
            states += 1;
        }
    }
    println!(
        "power loss: {} events, {states} disks checked, {} acknowledged records",
        events.len(),
        acked.len()
    );
    assert!(states > 100, "{states}");
}
