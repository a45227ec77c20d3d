//! Walking, copying and checking trees of files for backups: every entry with its kind, mode,
//! owner, mtime and (for files) sha256, copied in one pass that hashes as it writes.

use super::{Item, Kind};
use sha2::{Digest, Sha256};
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

/// SHA-256 on a second thread: blocks go in, the buffers come back for reuse, one digest per
/// file ended ([`Hasher::end`]). Copies, the final sync and restores read (and compare, and write) on
/// one core while the other hashes, so a large file costs the slower of the two, not their
/// sum. Files of one block or less are hashed inline by the callers (no round trip). A restore
/// also hands the thread the file to write ([`Hasher::sink`]): decompressing then takes one
/// core, writing and hashing the other, as `tar -I zstd` splits it between two processes.
enum Msg {
    /// A block to hash (and write to the sink, if any).
    Data(Vec<u8>, usize),
    /// Write the next blocks to this file too.
    Sink(File),
    /// The end of a file: send its digest (or the sink's write error), close the sink.
    End,
}

pub(crate) struct Hasher {
    blocks: Option<std::sync::mpsc::SyncSender<Msg>>,
    spare: std::sync::mpsc::Receiver<Vec<u8>>,
    digests: std::sync::mpsc::Receiver<Result<String, io::Error>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

pub(crate) const BLOCK: usize = 1 << 20;

/// Files ended ([`Hasher::end`]) whose digests may wait to be asked for.
pub(crate) const PENDING: usize = 8;

impl Hasher {
    pub(crate) fn start() -> Hasher {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Msg>(3);
        let (back, spare) = std::sync::mpsc::sync_channel::<Vec<u8>>(4);
        let (done, digests) = std::sync::mpsc::sync_channel(PENDING);
        for _ in 0..4 {
            let _ = back.send(vec![0u8; BLOCK]);
        }
        let thread = std::thread::spawn(move || {
            let mut h = Sha256::new();
            let mut sink: Option<File> = None;
            let mut failed: Option<io::Error> = None;
            for msg in rx {
                match msg {
                    Msg::Data(buf, n) => {
                        h.update(&buf[..n]);
                        if let (Some(f), None) = (sink.as_mut(), failed.as_ref()) {
                            failed = f.write_all(&buf[..n]).err();
                        }
                        let _ = back.send(buf);
                    }
                    Msg::Sink(f) => sink = Some(f),
                    Msg::End => {
                        let d = std::mem::take(&mut h).finalize();
                        drop(sink.take());
                        let result = match failed.take() {
                            Some(e) => Err(e),
                            None => Ok(format!("{d:x}")),
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
    pub(crate) fn next_digest(&self) -> io::Result<String> {
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
/// `hasher` hashes it on the other thread. Returns (bytes, sha256 hex).
pub(crate) fn hash_blocks(
    input: &mut impl Read,
    hasher: &Hasher,
    each: impl FnMut(&[u8], u64) -> io::Result<()>,
) -> io::Result<(u64, String)> {
    let total = feed_blocks(input, hasher, each)?;
    Ok((total, hasher.next_digest()?))
}

/// [`hash_blocks`] without the digest: the file is ended ([`Hasher::end`]) and its digest
/// left for [`Hasher::next_digest`]. Returns the bytes.
pub(crate) fn feed_blocks(
    input: &mut impl Read,
    hasher: &Hasher,
    mut each: impl FnMut(&[u8], u64) -> io::Result<()>,
) -> io::Result<u64> {
    let mut total = 0u64;
    loop {
        let mut buf = hasher.buffer();
        let n = read_full(input, &mut buf)?;
        if n == 0 {
            // the buffer goes back to the pool (a file of whole blocks ends here)
            hasher.hash(buf, 0);
            break;
        }
        each(&buf[..n], total)?;
        total += n as u64;
        hasher.hash(buf, n);
        if n < BLOCK {
            break;
        }
    }
    hasher.end()?;
    Ok(total)
}

/// Copy a regular file, hashing what is written. Returns (bytes, sha256 hex). Not fsynced:
/// callers make a whole tree durable at once with [`syncfs`].
pub fn copy_hashed(src: &Path, dst: &Path) -> io::Result<(u64, String)> {
    let mut input = File::open(src)?;
    let mut output = File::create(dst)?;
    if input.metadata()?.len() <= BLOCK as u64 {
        let mut buf = Vec::new();
        input.read_to_end(&mut buf)?;
        output.write_all(&buf)?;
        return Ok((buf.len() as u64, format!("{:x}", Sha256::digest(&buf))));
    }
    hash_blocks(&mut input, &Hasher::start(), |block, _| {
        output.write_all(block)
    })
}

/// Bring `dst` (an earlier copy of `src`) to `src`'s content, writing only the 1 MiB blocks
/// that differ, and hash `src` on the way. Returns (bytes, sha256 hex). A large file that
/// changed in a few places (a database's tablespace) then costs a read, not a rewrite: the
/// final sync's downtime and the dirty data `syncfs` must flush do not grow with the file.
/// Not fsynced (see [`copy_hashed`]); a `dst` that is not a regular file is copied anew.
pub fn sync_hashed(src: &Path, dst: &Path) -> io::Result<(u64, String)> {
    use std::os::unix::fs::FileExt;
    match fs::symlink_metadata(dst) {
        Ok(m) if m.is_file() => {}
        _ => return copy_hashed(src, dst),
    }
    let mut input = File::open(src)?;
    let output = fs::OpenOptions::new().read(true).write(true).open(dst)?;
    let mut old = vec![0u8; BLOCK];
    let (total, sha) = hash_blocks(&mut input, &Hasher::start(), |block, at| {
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
            output.write_all_at(block, at)?;
        }
        Ok(())
    })?;
    output.set_len(total)?;
    Ok((total, sha))
}

/// sha256 of a file.
pub fn hash_file(path: &Path) -> io::Result<String> {
    let mut input = File::open(path)?;
    let mut hasher = Sha256::new();
    io::copy(&mut input, &mut hasher)?;
    Ok(format!("{:x}", hasher.finalize()))
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

/// Create `dst_root/item.path` from `src_root/item.path` (a file is copied and hashed, a
/// directory created, a symlink re-created). Returns the sha256 of a copied file.
/// Directory metadata is applied by [`finish_dirs`] once their content is in place.
pub fn materialize(src_root: &Path, dst_root: &Path, item: &Item) -> io::Result<Option<String>> {
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
            let (_, sha) = copy_hashed(&src, &dst)?;
            apply_meta(&dst, item)?;
            Ok(Some(sha))
        }
    }
}

/// [`materialize`] over an earlier copy: a file already in `dst_root` is brought up to date
/// block by block ([`sync_hashed`]) instead of rewritten.
pub fn rematerialize(src_root: &Path, dst_root: &Path, item: &Item) -> io::Result<Option<String>> {
    if item.kind != Kind::File {
        return materialize(src_root, dst_root, item);
    }
    let dst = dst_root.join(&item.path);
    let (_, sha) = sync_hashed(&src_root.join(&item.path), &dst)?;
    apply_meta(&dst, item)?;
    Ok(Some(sha))
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
                    let sha = hash_file(&root.join(&item.path))?;
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

    #[test]
    fn one_hasher_serves_many_files_of_whole_blocks() {
        // A file of whole blocks ends with an empty read; its buffer must go back to the
        // pool, or the fifth such file waits forever for one (a restore shares one hasher).
        let hasher = Hasher::start();
        for i in 0..6u8 {
            let data = vec![i; BLOCK * (1 + i as usize % 2)];
            let mut written = Vec::new();
            let (n, sha) = hash_blocks(&mut &data[..], &hasher, |b, _| {
                written.extend_from_slice(b);
                Ok(())
            })
            .unwrap();
            assert_eq!((n as usize, &written), (data.len(), &data));
            assert_eq!(sha, format!("{:x}", Sha256::digest(&data)));
        }
    }

    #[test]
    fn the_hasher_writes_to_its_sink_and_reports_a_failed_write() {
        let dir = tempfile::tempdir().unwrap();
        let hasher = Hasher::start();
        let data: Vec<u8> = (0..(2 * BLOCK + 7)).map(|i| (i % 253) as u8).collect();
        let out = dir.path().join("out");
        hasher.sink(File::create(&out).unwrap()).unwrap();
        let (n, sha) = hash_blocks(&mut &data[..], &hasher, |_, _| Ok(())).unwrap();
        assert_eq!(n as usize, data.len());
        assert_eq!(std::fs::read(&out).unwrap(), data);
        assert_eq!(sha, format!("{:x}", Sha256::digest(&data)));
        // a file opened read-only cannot take the blocks: the digest says so
        hasher.sink(File::open(&out).unwrap()).unwrap();
        assert!(hash_blocks(&mut &data[..], &hasher, |_, _| Ok(())).is_err());
        // and the next file is unaffected
        let (_, again) = hash_blocks(&mut &data[..], &hasher, |_, _| Ok(())).unwrap();
        assert_eq!(again, sha);
    }

    #[test]
    fn sync_hashed_gives_the_source_whatever_the_old_copy() {
        let dir = tempfile::tempdir().unwrap();
        let (src, dst) = (dir.path().join("src"), dir.path().join("dst"));
        let mut data: Vec<u8> = (0..(3 << 20) + 123).map(|i| (i % 251) as u8).collect();
        std::fs::write(&src, &data).unwrap();
        let (n, sha) = sync_hashed(&src, &dst).unwrap(); // no copy yet: a plain copy
        assert_eq!(
            (n, std::fs::read(&dst).unwrap()),
            (data.len() as u64, data.clone())
        );
        assert_eq!(sha, hash_file(&src).unwrap());
        // a change in the middle block, then growth, then shrinking
        data[(1 << 20) + 5] ^= 0xff;
        for len in [data.len(), data.len() + (1 << 20), 1000] {
            data.resize(len, 7);
            std::fs::write(&src, &data).unwrap();
            let (n, sha) = sync_hashed(&src, &dst).unwrap();
            assert_eq!(n, len as u64);
            assert_eq!(std::fs::read(&dst).unwrap(), data);
            assert_eq!(sha, hash_file(&src).unwrap());
        }
    }
}
