//! Walking, copying and checking trees of files for backups: every entry with its kind, mode,
//! owner, mtime and (for files) sha256, copied in one pass that hashes as it writes.

use super::digest::{BlockDigest, Digested, Digester, Scheme};
use super::{Item, Kind};
use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// An entry as seen on disk, with what the final sync needs to detect change.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Seen {
    pub item: Item,
    pub ino: u64,
    pub dev: u64,
    pub ctime_ns: i64,
    /// Files of the block scheme (see `digest`): each block's digest as the pre-copy copied
    /// it (hex), so the final sync hashes only the blocks that changed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub blocks: Vec<String>,
}

fn ns(secs: i64, nsec: i64) -> i64 {
    secs.saturating_mul(1_000_000_000).saturating_add(nsec)
}

/// Describe `path` (relative name `rel`) without reading its content (`sha256` is `None`).
pub fn stat(path: &Path, rel: &str) -> io::Result<Seen> {
    let meta = fs::symlink_metadata(path)?;
    let ft = meta.file_type();
    let (kind, target) = if ft.is_symlink() {
        let t = fs::read_link(path)?;
        let t = t.to_str().map(str::to_string).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("symlink {} has a non-UTF-8 target", path.display()),
            )
        })?;
        (Kind::Symlink, Some(t))
    } else if ft.is_dir() {
        (Kind::Dir, None)
    } else if ft.is_file() {
        (Kind::File, None)
    } else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{} is a socket, fifo or device; molt backs up files, directories and symlinks only",
                path.display()
            ),
        ));
    };
    Ok(Seen {
        item: Item {
            path: rel.to_string(),
            kind,
            mode: meta.mode() & 0o7777,
            uid: meta.uid(),
            gid: meta.gid(),
            size: if kind == Kind::File { meta.size() } else { 0 },
            mtime_ns: ns(meta.mtime(), meta.mtime_nsec()),
            sha256: None,
            target,
        },
        ino: meta.ino(),
        dev: meta.dev(),
        ctime_ns: ns(meta.ctime(), meta.ctime_nsec()),
        blocks: Vec::new(),
    })
}

/// Every entry under the given top-level paths (relative to `root`), parents first, sorted.
/// A top-level path that does not exist is skipped (nothing to back up yet).
pub fn scan(root: &Path, paths: &[String]) -> io::Result<Vec<Seen>> {
    let mut out = Vec::new();
    for top in paths {
        let abs = root.join(top);
        if fs::symlink_metadata(&abs).is_err() {
            continue;
        }
        walk(&abs, top, &mut out)?;
    }
    Ok(out)
}

fn walk(abs: &Path, rel: &str, out: &mut Vec<Seen>) -> io::Result<()> {
    let seen = stat(abs, rel)?;
    let is_dir = seen.item.kind == Kind::Dir;
    out.push(seen);
    if is_dir {
        let mut names = Vec::new();
        for entry in fs::read_dir(abs)? {
            let name = entry?.file_name();
            let name = name.to_str().map(str::to_string).ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{} holds a name that is not UTF-8: {name:?}", abs.display()),
                )
            })?;
            names.push(name);
        }
        names.sort();
        for name in names {
            walk(&abs.join(&name), &format!("{rel}/{name}"), out)?;
        }
    }
    Ok(())
}

/// File digests (see `digest`) on a second thread: blocks go in, the buffers come back for
/// reuse, one digest per file ended ([`Hasher::end`]). Copies, the final sync and restores read (and compare, and write) on
/// one core while the other hashes, so a large file costs the slower of the two, not their
/// sum. Files of one block or less are hashed inline by the callers (no round trip). A restore
/// also hands the thread the file to write ([`Hasher::sink`]): decompressing then takes one
/// core, writing and hashing the other, as `tar -I zstd` splits it between two processes.
enum Msg {
    /// The next file's digest scheme.
    Begin(Scheme),
    /// A block to hash (and write to the sink, if any).
    Data(Vec<u8>, usize),
    /// A whole block whose digest is known: only the buffer comes back.
    Known(Vec<u8>, BlockDigest),
    /// Write the next blocks to this file too.
    Sink(File),
    /// The end of a file: send its digest (or the sink's write error), close the sink.
    End,
}

pub(crate) struct Hasher {
    blocks: Option<std::sync::mpsc::SyncSender<Msg>>,
    spare: std::sync::mpsc::Receiver<Vec<u8>>,
    digests: std::sync::mpsc::Receiver<Result<Digested, io::Error>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

pub(crate) use super::digest::BLOCK;

/// Files ended ([`Hasher::end`]) whose digests may wait to be asked for.
pub(crate) const PENDING: usize = 8;

/// Blocks a [`Hasher`] has in flight: enough that a thread feeding two hashers keeps both
/// busy across file ends.
const BUFFERS: usize = 8;

impl Hasher {
    pub(crate) fn start() -> Hasher {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Msg>(BUFFERS - 1);
        let (back, spare) = std::sync::mpsc::sync_channel::<Vec<u8>>(BUFFERS);
        let (done, digests) = std::sync::mpsc::sync_channel(PENDING);
        for _ in 0..BUFFERS {
            let _ = back.send(vec![0u8; BLOCK]);
        }
        let thread = std::thread::spawn(move || {
            let mut h = Digester::new(Scheme::Plain);
            let mut sink: Option<File> = None;
            let mut failed: Option<io::Error> = None;
            for msg in rx {
                match msg {
                    Msg::Begin(scheme) => h = Digester::new(scheme),
                    Msg::Data(buf, n) => {
                        h.update(&buf[..n]);
                        if let (Some(f), None) = (sink.as_mut(), failed.as_ref()) {
                            failed = f.write_all(&buf[..n]).err();
                        }
                        let _ = back.send(buf);
                    }
                    Msg::Known(buf, digest) => {
                        if !h.known(digest) && failed.is_none() {
                            failed = Some(io::Error::other(
                                "a known block digest off a block boundary",
                            ));
                        }
                        let _ = back.send(buf);
                    }
                    Msg::Sink(f) => sink = Some(f),
                    Msg::End => {
                        let d = std::mem::replace(&mut h, Digester::new(Scheme::Plain)).finish();
                        drop(sink.take());
                        let result = match failed.take() {
                            Some(e) => Err(e),
                            None => Ok(d),
                        };
                        if done.send(result).is_err() {
                            return;
                        }
                    }
                }
            }
        });
        Hasher {
            blocks: Some(tx),
            spare,
            digests,
            thread: Some(thread),
        }
    }

    fn send(&self, msg: Msg) -> io::Result<()> {
        let gone = || io::Error::other("the hashing thread stopped");
        self.blocks
            .as_ref()
            .ok_or_else(gone)?
            .send(msg)
            .map_err(|_| gone())
    }

    /// A buffer to fill (one the hasher is done with).
    pub(crate) fn buffer(&self) -> Vec<u8> {
        self.spare.recv().unwrap_or_else(|_| vec![0u8; BLOCK])
    }

    /// Start a file digested by `scheme`.
    pub(crate) fn begin(&self, scheme: Scheme) -> io::Result<()> {
        self.send(Msg::Begin(scheme))
    }

    /// Hash the first `n` bytes of `buf` (after what came before, for the current file).
    pub(crate) fn hash(&self, buf: Vec<u8>, n: usize) {
        let _ = self.send(Msg::Data(buf, n));
    }

    /// Write what is hashed from now until the file ends to `file` as well (on
    /// the hashing thread); that file's digest then reports a failed write.
    pub(crate) fn sink(&self, file: File) -> io::Result<()> {
        self.send(Msg::Sink(file))
    }

    /// End the current file without waiting for its digest: [`Hasher::next_digest`] gives the
    /// digests in the order the files ended (at most [`PENDING`] may wait).
    pub(crate) fn end(&self) -> io::Result<()> {
        self.send(Msg::End)
    }

    /// The digest of the oldest file ended and not yet asked for.
    pub(crate) fn next_digest(&self) -> io::Result<Digested> {
        self.digests
            .recv()
            .map_err(|_| io::Error::other("the hashing thread stopped"))?
    }
}

impl Drop for Hasher {
    fn drop(&mut self) {
        drop(self.blocks.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Fill `buf` from `input` as far as it goes; returns the bytes read (short only at the end).
fn read_full(input: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match input.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Read `input` to its end in [`BLOCK`]s, giving each block and its offset to `each` while
/// `hasher` digests it by `scheme` on the other thread. Returns (bytes, digest).
pub(crate) fn hash_blocks(
    input: &mut impl Read,
    hasher: &Hasher,
    scheme: Scheme,
    each: impl FnMut(&[u8], u64) -> io::Result<Option<BlockDigest>>,
) -> io::Result<(u64, Digested)> {
    let total = feed_blocks(input, hasher, scheme, each)?;
    Ok((total, hasher.next_digest()?))
}

/// [`hash_blocks`] without the digest: the file is ended ([`Hasher::end`]) and its digest
/// left for [`Hasher::next_digest`]. `each` may answer a block's digest when it knows it
/// (the block is then not hashed). Returns the bytes.
pub(crate) fn feed_blocks(
    input: &mut impl Read,
    hasher: &Hasher,
    scheme: Scheme,
    mut each: impl FnMut(&[u8], u64) -> io::Result<Option<BlockDigest>>,
) -> io::Result<u64> {
    hasher.begin(scheme)?;
    let mut total = 0u64;
    loop {
        let mut buf = hasher.buffer();
        let n = read_full(input, &mut buf)?;
        if n == 0 {
            // the buffer goes back to the pool (a file of whole blocks ends here)
            hasher.hash(buf, 0);
            break;
        }
        let known = each(&buf[..n], total)?;
        total += n as u64;
        match known {
            Some(d) => hasher.send(Msg::Known(buf, d))?,
            None => hasher.hash(buf, n),
        }
        if n < BLOCK {
            break;
        }
    }
    hasher.end()?;
    Ok(total)
}

/// Copy a regular file, digesting what is written by `scheme`. Returns (bytes, digest). Not
/// fsynced: callers make a whole tree durable at once with [`syncfs`].
pub fn copy_hashed(src: &Path, dst: &Path, scheme: Scheme) -> io::Result<(u64, Digested)> {
    let mut input = File::open(src)?;
    let mut output = File::create(dst)?;
    if input.metadata()?.len() <= BLOCK as u64 {
        let mut buf = Vec::new();
        input.read_to_end(&mut buf)?;
        output.write_all(&buf)?;
        let mut d = Digester::new(scheme);
        d.update(&buf);
        return Ok((buf.len() as u64, d.finish()));
    }
    hash_blocks(&mut input, &Hasher::start(), scheme, |block, _| {
        output.write_all(block).map(|()| None)
    })
}

/// Bring `dst` (an earlier copy of `src`) to `src`'s content, writing only the 64 KiB parts
/// of the 1 MiB blocks that differ, and digest `src` on the way. Returns (bytes, digest). A large file that
/// changed in a few places (a database's tablespace) then costs a read, not a rewrite: the
/// final sync's downtime and the dirty data `syncfs` must flush do not grow with the file.
/// `known`: the block digests of `dst` as it is (the pre-copy's): a block found equal is not
/// hashed again, so the file costs a compare, not a hash. Only pass them when `dst` is
/// untouched since they were made. Not fsynced (see [`copy_hashed`]); a `dst` that is not a
/// regular file is copied anew. The digest is of the block scheme for files over a block.
pub fn sync_hashed(
    src: &Path,
    dst: &Path,
    known: Option<&[BlockDigest]>,
) -> io::Result<(u64, Digested)> {
    use std::os::unix::fs::FileExt;
    let mut input = File::open(src)?;
    let scheme = Scheme::for_size(input.metadata()?.len());
    let dst_len = match fs::symlink_metadata(dst) {
        Ok(m) if m.is_file() => m.len(),
        _ => return copy_hashed(src, dst, scheme),
    };
    // the digests stand for dst's blocks only when there is one per block of it
    let known = known.filter(|k| k.len() as u64 == dst_len.div_ceil(BLOCK as u64));
    let output = fs::OpenOptions::new().read(true).write(true).open(dst)?;
    let mut old = vec![0u8; BLOCK];
    let (total, digest) = hash_blocks(&mut input, &Hasher::start(), scheme, |block, at| {
        let old = &mut old[..block.len()];
        let mut m = 0;
        while m < old.len() {
            match output.read_at(&mut old[m..], at + m as u64) {
                Ok(0) => break,
                Ok(k) => m += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        if m != old.len() || old[..] != *block {
            write_changed(&output, &old[..m], block, at)?;
            return Ok(None);
        }
        // equal, and dst's block there is exactly this long: its digest is this block's
        let recorded_len = (dst_len - at).min(BLOCK as u64);
        Ok(known
            .filter(|_| scheme == Scheme::Blocks && recorded_len == block.len() as u64)
            .and_then(|k| k.get((at / BLOCK as u64) as usize).copied()))
    })?;
    output.set_len(total)?;
    Ok((total, digest))
}

/// What the final sync writes at least: a changed block is written in runs of changed
/// `SUB_BLOCK`s, so a few changed pages (a database's) dirty, and `syncfs` flushes, a few
/// sub-blocks instead of the whole block.
const SUB_BLOCK: usize = 64 << 10;

/// Write the parts of `block` (at `at`) that differ from `old`, what is there now (shorter
/// where the file ends), coalescing adjacent changed sub-blocks into one write.
fn write_changed(output: &File, old: &[u8], block: &[u8], at: u64) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    let changed = |i: usize| {
        let (from, to) = (i * SUB_BLOCK, ((i + 1) * SUB_BLOCK).min(block.len()));
        to > old.len() || old[from..to] != block[from..to]
    };
    let subs = block.len().div_ceil(SUB_BLOCK);
    let mut i = 0;
    while i < subs {
        if !changed(i) {
            i += 1;
            continue;
        }
        let start = i;
        while i < subs && changed(i) {
            i += 1;
        }
        let (from, to) = (start * SUB_BLOCK, (i * SUB_BLOCK).min(block.len()));
        output.write_all_at(&block[from..to], at + from as u64)?;
    }
    Ok(())
}

/// Plain sha256 of a file (release packages and downloads; a backup's files are digested by
/// the scheme their digest names, see `digest`).
pub fn hash_file(path: &Path) -> io::Result<String> {
    super::digest::digest_file(path, Scheme::Plain)
}

/// Give `path` the mode, owner and (for files and directories) mtime of `item`. Ownership is
/// restored when the process may (root); otherwise a differing owner is left as is.
pub fn apply_meta(path: &Path, item: &Item) -> io::Result<()> {
    if item.kind == Kind::Symlink {
        if let Err(e) = std::os::unix::fs::lchown(path, Some(item.uid), Some(item.gid)) {
            if e.kind() != io::ErrorKind::PermissionDenied {
                return Err(e);
            }
        }
        return Ok(());
    }
    if let Err(e) = std::os::unix::fs::chown(path, Some(item.uid), Some(item.gid)) {
        if e.kind() != io::ErrorKind::PermissionDenied {
            return Err(e);
        }
    }
    fs::set_permissions(path, fs::Permissions::from_mode(item.mode))?;
    let mtime = if item.mtime_ns >= 0 {
        UNIX_EPOCH + Duration::from_nanos(item.mtime_ns as u64)
    } else {
        UNIX_EPOCH - Duration::from_nanos(item.mtime_ns.unsigned_abs())
    };
    set_mtime(path, mtime)
}

fn set_mtime(path: &Path, t: SystemTime) -> io::Result<()> {
    let f = File::open(path)?;
    f.set_times(fs::FileTimes::new().set_modified(t).set_accessed(t))
}

/// Create `dst_root/item.path` from `src_root/item.path` (a file is copied and digested by
/// `scheme`, a directory created, a symlink re-created). Returns the digest of a copied file.
/// Directory metadata is applied by [`finish_dirs`] once their content is in place.
pub fn materialize(
    src_root: &Path,
    dst_root: &Path,
    item: &Item,
    scheme: Scheme,
) -> io::Result<Option<Digested>> {
    let src = src_root.join(&item.path);
    let dst = dst_root.join(&item.path);
    match item.kind {
        Kind::Dir => {
            match fs::create_dir(&dst) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dst.is_dir() => {}
                Err(e) => return Err(e),
            }
            Ok(None)
        }
        Kind::Symlink => {
            crate::fsutil::remove_path(&dst)?;
            std::os::unix::fs::symlink(item.target.as_deref().unwrap_or(""), &dst)?;
            apply_meta(&dst, item)?;
            Ok(None)
        }
        Kind::File => {
            let (_, digest) = copy_hashed(&src, &dst, scheme)?;
            apply_meta(&dst, item)?;
            Ok(Some(digest))
        }
    }
}

/// [`materialize`] over an earlier copy: a file already in `dst_root` is brought up to date
/// block by block ([`sync_hashed`], with the copy's `known` block digests) instead of
/// rewritten.
pub fn rematerialize(
    src_root: &Path,
    dst_root: &Path,
    item: &Item,
    known: Option<&[BlockDigest]>,
) -> io::Result<Option<Digested>> {
    if item.kind != Kind::File {
        return materialize(src_root, dst_root, item, Scheme::Plain);
    }
    let dst = dst_root.join(&item.path);
    let (_, digest) = sync_hashed(&src_root.join(&item.path), &dst, known)?;
    apply_meta(&dst, item)?;
    Ok(Some(digest))
}

/// Apply directory metadata deepest first (writing into a directory changes its mtime).
pub fn finish_dirs(dst_root: &Path, items: &[Item]) -> io::Result<()> {
    for item in items.iter().rev().filter(|i| i.kind == Kind::Dir) {
        apply_meta(&dst_root.join(&item.path), item)?;
    }
    Ok(())
}

/// Flush every dirty page of the filesystem holding `path` (one call instead of an fsync per
/// file when a whole tree was written).
pub fn syncfs(path: &Path) -> io::Result<()> {
    let dir = File::open(path)?;
    rustix::fs::syncfs(&dir).map_err(io::Error::from)
}

/// Bytes written between two early `syncfs` runs of a [`Flusher`].
pub(crate) const FLUSH_EVERY: u64 = 64 << 20;

/// Makes a tree durable while it is being written: after each [`FLUSH_EVERY`] bytes
/// reported, a thread of its own runs `syncfs`, so the disk writes while the CPU decompresses
/// and hashes, and the caller's final [`syncfs`] (which it still runs: the flusher's
/// guarantees nothing) finds little left. The kernel would otherwise start writing only at
/// its dirty threshold (a tenth of memory) or after 30 s.
pub(crate) struct Flusher {
    wrote: Option<std::sync::mpsc::Sender<u64>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Flusher {
    pub(crate) fn start(path: &Path) -> io::Result<Flusher> {
        let dir = File::open(path)?;
        let (wrote, bytes) = std::sync::mpsc::channel::<u64>();
        let thread = std::thread::spawn(move || {
            let mut dirty = 0u64;
            for n in bytes {
                dirty += n;
                if dirty >= FLUSH_EVERY {
                    // an error here shows again in the final syncfs
                    let _ = rustix::fs::syncfs(&dir);
                    dirty = 0;
                }
            }
        });
        Ok(Flusher {
            wrote: Some(wrote),
            thread: Some(thread),
        })
    }

    /// `n` more bytes were written (or handed to a thread that writes them).
    pub(crate) fn wrote(&self, n: u64) {
        if let Some(w) = &self.wrote {
            let _ = w.send(n);
        }
    }
}

impl Drop for Flusher {
    fn drop(&mut self) {
        drop(self.wrote.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Compare the tree under `root` with `items`: kind, mode, size, sha256, link target; and
/// nothing present that the list does not name (under the listed top-level paths).
pub fn verify_dir(root: &Path, items: &[Item]) -> io::Result<Vec<String>> {
    let mut problems = Vec::new();
    let tops: Vec<String> = items
        .iter()
        .filter(|i| !i.path.contains('/'))
        .map(|i| i.path.clone())
        .collect();
    let found: BTreeMap<String, Seen> = match scan(root, &tops) {
        Ok(v) => v.into_iter().map(|s| (s.item.path.clone(), s)).collect(),
        Err(e) => return Ok(vec![format!("cannot read {}: {e}", root.display())]),
    };
    for item in items {
        let Some(seen) = found.get(&item.path) else {
            problems.push(format!("{} is missing", item.path));
            continue;
        };
        let got = &seen.item;
        if got.kind != item.kind {
            problems.push(format!(
                "{} is a {:?}, expected a {:?}",
                item.path, got.kind, item.kind
            ));
            continue;
        }
        if item.kind != Kind::Symlink && got.mode != item.mode {
            problems.push(format!(
                "{} has mode {:o}, expected {:o}",
                item.path, got.mode, item.mode
            ));
        }
        match item.kind {
            Kind::File => {
                if got.size != item.size {
                    problems.push(format!(
                        "{} has {} bytes, expected {}",
                        item.path, got.size, item.size
                    ));
                } else {
                    let sha =
                        super::digest::digest_file(&root.join(&item.path), item.digest_scheme())?;
                    if Some(&sha) != item.sha256.as_ref() {
                        problems.push(format!(
                            "{} has sha256 {sha}, expected {}",
                            item.path,
                            item.sha256.as_deref().unwrap_or("?")
                        ));
                    }
                }
            }
            Kind::Symlink => {
                if got.target != item.target {
                    problems.push(format!(
                        "{} points at {:?}, expected {:?}",
                        item.path, got.target, item.target
                    ));
                }
            }
            Kind::Dir => {}
        }
    }
    let listed: std::collections::BTreeSet<&str> = items.iter().map(|i| i.path.as_str()).collect();
    for extra in found.keys().filter(|k| !listed.contains(k.as_str())) {
        problems.push(format!("{extra} is not in the manifest"));
    }
    Ok(problems)
}

#[cfg(test)]
mod delta_tests {
    use super::*;
    use sha2::{Digest, Sha256};

    #[test]
    fn one_hasher_serves_many_files_of_whole_blocks() {
        // A file of whole blocks ends with an empty read; its buffer must go back to the
        // pool, or the fifth such file waits forever for one (a restore shares one hasher).
        let hasher = Hasher::start();
        for i in 0..6u8 {
            let data = vec![i; BLOCK * (1 + i as usize % 2)];
            let mut written = Vec::new();
            let (n, d) = hash_blocks(&mut &data[..], &hasher, Scheme::Plain, |b, _| {
                written.extend_from_slice(b);
                Ok(None)
            })
            .unwrap();
            assert_eq!((n as usize, &written), (data.len(), &data));
            assert_eq!(d.digest, format!("{:x}", Sha256::digest(&data)));
        }
    }

    #[test]
    fn the_hasher_writes_to_its_sink_and_reports_a_failed_write() {
        let dir = tempfile::tempdir().unwrap();
        let hasher = Hasher::start();
        let data: Vec<u8> = (0..(2 * BLOCK + 7)).map(|i| (i % 253) as u8).collect();
        let out = dir.path().join("out");
        hasher.sink(File::create(&out).unwrap()).unwrap();
        let plain = |_: &[u8], _| Ok(None);
        let (n, d) = hash_blocks(&mut &data[..], &hasher, Scheme::Plain, plain).unwrap();
        assert_eq!(n as usize, data.len());
        assert_eq!(std::fs::read(&out).unwrap(), data);
        assert_eq!(d.digest, format!("{:x}", Sha256::digest(&data)));
        // a file opened read-only cannot take the blocks: the digest says so
        hasher.sink(File::open(&out).unwrap()).unwrap();
        assert!(hash_blocks(&mut &data[..], &hasher, Scheme::Plain, plain).is_err());
        // and the next file is unaffected
        let (_, again) = hash_blocks(&mut &data[..], &hasher, Scheme::Plain, plain).unwrap();
        assert_eq!(again, d);
    }

    #[test]
    fn a_changed_block_is_written_only_where_its_sub_blocks_differ() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        // what is on disk is zeros, so every byte the call writes shows
        std::fs::write(&path, vec![0u8; BLOCK + 100]).unwrap();
        let out = fs::OpenOptions::new().write(true).open(&path).unwrap();
        let block: Vec<u8> = (0..BLOCK).map(|i| (i % 249) as u8 + 1).collect();
        let mut old = block.clone();
        old[3 * SUB_BLOCK + 7] ^= 1; // sub-block 3
        old[5 * SUB_BLOCK] ^= 1; // sub-blocks 5 and 6, one run
        old[7 * SUB_BLOCK - 1] ^= 1;
        old.truncate(BLOCK - 10); // the copy ends inside the last sub-block
        write_changed(&out, &old, &block, 0).unwrap();
        let got = std::fs::read(&path).unwrap();
        let sub = |i: usize| i * SUB_BLOCK..((i + 1) * SUB_BLOCK).min(BLOCK);
        let last = BLOCK / SUB_BLOCK - 1;
        for i in 0..=last {
            let written = [3, 5, 6, last].contains(&i);
            let want: &[u8] = if written {
                &block[sub(i)]
            } else {
                &[0; SUB_BLOCK]
            };
            assert_eq!(&got[sub(i)], want, "sub-block {i}");
        }
        assert_eq!(got[BLOCK..], [0; 100]);
    }

    #[test]
    fn sync_hashed_gives_the_source_whatever_the_old_copy() {
        let dir = tempfile::tempdir().unwrap();
        let (src, dst) = (dir.path().join("src"), dir.path().join("dst"));
        let mut data: Vec<u8> = (0..(3 << 20) + 123).map(|i| (i % 251) as u8).collect();
        std::fs::write(&src, &data).unwrap();
        let (n, first) = sync_hashed(&src, &dst, None).unwrap(); // no copy yet: a plain copy
        assert_eq!(
            (n, std::fs::read(&dst).unwrap()),
            (data.len() as u64, data.clone())
        );
        let blocks = |p: &Path| super::super::digest::digest_file(p, Scheme::Blocks).unwrap();
        assert_eq!(first.digest, blocks(&src));
        // a change in the middle block, then growth, then shrinking, then below one block
        data[(1 << 20) + 5] ^= 0xff;
        for len in [data.len(), data.len() + (1 << 20), (2 << 20) + 5, 1000] {
            data.resize(len, 7);
            std::fs::write(&src, &data).unwrap();
            let (n, d) = sync_hashed(&src, &dst, None).unwrap();
            assert_eq!(n, len as u64);
            assert_eq!(std::fs::read(&dst).unwrap(), data);
            let want = if len > BLOCK {
                blocks(&src)
            } else {
                hash_file(&src).unwrap()
            };
            assert_eq!(d.digest, want, "{len}");
        }
    }

    #[test]
    fn sync_hashed_trusts_known_block_digests_only_for_equal_blocks_of_equal_length() {
        let dir = tempfile::tempdir().unwrap();
        let (src, dst) = (dir.path().join("src"), dir.path().join("dst"));
        let data: Vec<u8> = (0..(3 << 20) + 500).map(|i| (i % 241) as u8).collect();
        std::fs::write(&src, &data).unwrap();
        let (_, copied) = copy_hashed(&src, &dst, Scheme::Blocks).unwrap();
        assert_eq!(copied.blocks.len(), 4);
        let digest_of = |p: &Path| super::super::digest::digest_file(p, Scheme::Blocks).unwrap();
        // Digests that lie for every block: a block used unread would show in the result.
        // Only equal blocks of the recorded length may take theirs, so a lie shows there.
        let lies = vec![[9u8; 32]; 4];
        let mut changed = data.clone();
        changed[5] ^= 1; // block 0 differs: hashed, whatever is recorded
        std::fs::write(&src, &changed).unwrap();
        let (_, d) = sync_hashed(&src, &dst, Some(&lies)).unwrap();
        assert_ne!(
            d.digest,
            digest_of(&src),
            "blocks 1-3 took the recorded digests"
        );
        // with the true digests the result is the file's digest, and the copy is the file
        std::fs::write(&dst, &data).unwrap();
        let (_, d) = sync_hashed(&src, &dst, Some(&copied.blocks)).unwrap();
        assert_eq!(d.digest, digest_of(&src));
        assert_eq!(std::fs::read(&dst).unwrap(), changed);
        // shrunk into the last recorded block: that block is shorter now, its digest unusable
        std::fs::write(&dst, &data).unwrap();
        let shorter = &data[..(3 << 20) + 100];
        std::fs::write(&src, shorter).unwrap();
        let mut wrong_last = copied.blocks.clone();
        wrong_last[3] = [7u8; 32];
        let (_, d) = sync_hashed(&src, &dst, Some(&copied.blocks)).unwrap();
        assert_eq!(d.digest, digest_of(&src));
        std::fs::write(&dst, &data).unwrap();
        let (_, d) = sync_hashed(&src, &dst, Some(&wrong_last)).unwrap();
        assert_eq!(d.digest, digest_of(&src), "the last block was hashed");
        // digests that do not match dst's block count are not used at all
        std::fs::write(&dst, &data).unwrap();
        std::fs::write(&src, &data).unwrap();
        let (_, d) = sync_hashed(&src, &dst, Some(&lies[..3])).unwrap();
        assert_eq!(d.digest, digest_of(&src));
    }
}
