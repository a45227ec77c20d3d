//! Packages as published: full (`tar.zst` of a release directory) and patch (`tar.zst` with a
//! `patch.toml` and the added or changed files). Packing is deterministic: entries sorted,
//! owners 0, times 0, modes normalised to 0644/0755, so the same input gives the same bytes.
//! Unpacking refuses anything that could write outside its destination: absolute paths, `..`,
//! links leaving the tree, hard links, device files.

use crate::backup::tree::{hash_file, scan};
use crate::backup::{Item, Kind};
use crate::beneath::Beneath;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Component, Path, PathBuf};

pub const PATCH_FORMAT: u32 = 1;

/// What packing produced.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Packed {
    pub size: u64,
    pub sha256: String,
    pub installed_size: u64,
}

/// One entry of a release tree, as a patch describes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TreeEntry {
    pub path: String,
    pub kind: Kind,
    pub mode: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}

/// `patch.toml`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatchToml {
    pub format: u32,
    /// Installed versions it applies to (a range).
    pub from: String,
    pub to: String,
    /// Files shipped in the package under `files/<path>`.
    #[serde(default)]
    pub add: Vec<TreeEntry>,
    #[serde(default)]
    pub delete: Vec<String>,
    /// Every file of the base release, as the patch expects it.
    #[serde(default)]
    pub base: Vec<TreeEntry>,
    /// Every entry of the result: staging checks the patched tree against it.
    #[serde(default)]
    pub result: Vec<TreeEntry>,
}

fn norm_mode(item: &Item) -> u32 {
    match item.kind {
        Kind::Dir => 0o755,
        Kind::Symlink => 0o777,
        Kind::File if item.mode & 0o111 != 0 => 0o755,
        Kind::File => 0o644,
    }
}

/// Every entry of a release directory, relative to it, sorted, with sha256 for files.
pub fn tree(dir: &Path) -> io::Result<Vec<TreeEntry>> {
    let mut names: Vec<String> = std::fs::read_dir(dir)?
        .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect::<Result<_, _>>()?;
    names.sort();
    let mut out = Vec::new();
    for seen in scan(dir, &names)? {
        let it = seen.item;
        let sha256 = match it.kind {
            Kind::File => Some(hash_file(&dir.join(&it.path))?),
            _ => None,
        };
        out.push(TreeEntry {
            mode: norm_mode(&it),
            path: it.path,
            kind: it.kind,
            sha256,
            target: it.target,
        });
    }
    Ok(out)
}

fn header(e: &TreeEntry, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_mode(e.mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_entry_type(match e.kind {
        Kind::File => tar::EntryType::Regular,
        Kind::Dir => tar::EntryType::Directory,
        Kind::Symlink => tar::EntryType::Symlink,
    });
    h.set_size(size);
    h
}

/// A tar.zst writer with the deterministic settings of every molt package.
struct Writer {
    builder: tar::Builder<zstd::stream::write::Encoder<'static, Hashing<BufWriter<File>>>>,
}

/// A writer that hashes and counts what passes through it.
struct Hashing<W> {
    inner: W,
    hasher: Sha256,
    bytes: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl Writer {
    fn create(out: &Path, level: i32) -> io::Result<Writer> {
        let file = File::create(out)?;
        let sink = Hashing {
            inner: BufWriter::with_capacity(1 << 20, file),
            hasher: Sha256::new(),
            bytes: 0,
        };
        let mut enc = zstd::stream::write::Encoder::new(sink, level)?;
        // zstd's output does not depend on the number of workers once there is one.
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get()) as u32;
        enc.multithread(threads.max(1))?;
        Ok(Writer {
            builder: tar::Builder::new(enc),
        })
    }

    fn entry(&mut self, name: &str, e: &TreeEntry, src: Option<&Path>) -> io::Result<u64> {
        match e.kind {
            Kind::Dir => {
                self.builder
                    .append_data(&mut header(e, 0), name, io::empty())?;
                Ok(0)
            }
            Kind::Symlink => {
                self.builder.append_link(
                    &mut header(e, 0),
                    name,
                    e.target.as_deref().unwrap_or(""),
                )?;
                Ok(0)
            }
            Kind::File => {
                let path = src.expect("a file entry has a source");
                let f = File::open(path)?;
                let len = f.metadata()?.len();
                self.builder
                    .append_data(&mut header(e, len), name, f.take(len))?;
                Ok(len)
            }
        }
    }

    fn bytes(&mut self, name: &str, data: &[u8]) -> io::Result<()> {
        let e = TreeEntry {
            path: name.into(),
            kind: Kind::File,
            mode: 0o644,
            sha256: None,
            target: None,
        };
        self.builder
            .append_data(&mut header(&e, data.len() as u64), name, data)
    }

    fn finish(self) -> io::Result<(u64, String)> {
        let enc = self.builder.into_inner()?;
        let mut sink = enc.finish()?;
        sink.flush()?;
        let file = sink.inner.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        Ok((sink.bytes, format!("{:x}", sink.hasher.finalize())))
    }
}

/// Pack a release directory into a full package at `out`.
pub fn pack_full(dir: &Path, out: &Path, level: i32) -> io::Result<Packed> {
    let entries = tree(dir)?;
    let mut w = Writer::create(out, level)?;
    let mut installed = 0;
    for e in &entries {
        installed += w.entry(&e.path, e, Some(&dir.join(&e.path)))?;
    }
    let (size, sha256) = w.finish()?;
    Ok(Packed {
        size,
        sha256,
        installed_size: installed,
    })
}

/// Pack the difference from release `prev` to release `next` into a patch at `out`, valid for
/// installed versions in `from`.
pub fn pack_patch(
    prev: &Path,
    next: &Path,
    from: &str,
    to: &str,
    out: &Path,
    level: i32,
) -> io::Result<Packed> {
    let base = tree(prev)?;
    let result = tree(next)?;
    let old: BTreeMap<&str, &TreeEntry> = base.iter().map(|e| (e.path.as_str(), e)).collect();
    let new: BTreeMap<&str, &TreeEntry> = result.iter().map(|e| (e.path.as_str(), e)).collect();
    let add: Vec<TreeEntry> = result
        .iter()
        .filter(|e| e.kind == Kind::File && old.get(e.path.as_str()) != Some(e))
        .cloned()
        .collect();
    let delete: Vec<String> = base
        .iter()
        .filter(|e| !new.contains_key(e.path.as_str()))
        .map(|e| e.path.clone())
        .collect();
    let patch = PatchToml {
        format: PATCH_FORMAT,
        from: from.into(),
        to: to.into(),
        add: add.clone(),
        delete,
        base: base
            .iter()
            .filter(|e| e.kind == Kind::File)
            .cloned()
            .collect(),
        result: result.clone(),
    };
    let text = toml::to_string(&patch).map_err(io::Error::other)?;
    let mut w = Writer::create(out, level)?;
    w.bytes("patch.toml", text.as_bytes())?;
    for e in &add {
        w.entry(&format!("files/{}", e.path), e, Some(&next.join(&e.path)))?;
    }
    let (size, sha256) = w.finish()?;
    let installed_size = result
        .iter()
        .filter_map(|e| {
            e.sha256
                .as_ref()
                .map(|_| std::fs::metadata(next.join(&e.path)).map(|m| m.len()))
        })
        .sum::<io::Result<u64>>()?;
    Ok(Packed {
        size,
        sha256,
        installed_size,
    })
}

/// A package path that stays inside the destination: relative, only normal components.
pub fn safe_entry_path(raw: &Path) -> Result<PathBuf, String> {
    let mut out = PathBuf::new();
    for c in raw.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir => {}
            Component::ParentDir => return Err(format!("{} contains `..`", raw.display())),
            Component::RootDir | Component::Prefix(_) => {
                return Err(format!("{} is an absolute path", raw.display()))
            }
        }
    }
    if out.as_os_str().is_empty() {
        return Err("an entry names the package root".into());
    }
    Ok(out)
}

/// A symlink at `at` (relative to the root) pointing at `target` must stay inside the root,
/// read as text (a first, cheap refusal; [`check_links`] resolves links through each other).
fn link_stays_inside(at: &Path, target: &Path) -> bool {
    if target.is_absolute() {
        return false;
    }
    let mut depth: i64 = at.components().count() as i64 - 1;
    for c in target.components() {
        match c {
            Component::ParentDir => depth -= 1,
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) => return false,
        }
        if depth < 0 {
            return false;
        }
    }
    true
}

/// One entry of a release tree as it will exist, for [`check_links`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Node {
    Dir,
    File,
    Link(PathBuf),
}

/// Every entry of a tree by path.
pub type Model = BTreeMap<PathBuf, Node>;

/// The model of a patch's or a tree's entry list.
pub fn model_of(entries: &[TreeEntry]) -> Result<Model, String> {
    let mut m = Model::new();
    for e in entries {
        let path = safe_entry_path(Path::new(&e.path))?;
        let node = match e.kind {
            Kind::Dir => Node::Dir,
            Kind::File => Node::File,
            Kind::Symlink => Node::Link(PathBuf::from(
                e.target
                    .as_deref()
                    .ok_or_else(|| format!("link {} has no target", e.path))?,
            )),
        };
        m.insert(path, node);
    }
    Ok(m)
}

/// Hops through links before a resolution is called a loop (Linux's own limit).
const MAX_HOPS: usize = 40;

/// Every link of the tree `model` resolved the way the kernel will resolve it once the tree
/// exists, through the other links of the tree (chains such as `r -> .` then
/// `x -> r/r/../..`): refused when a resolution leaves the tree, is absolute, or loops.
/// `persistent` names the top-level paths molt links to `shared/`: a link may point into
/// one, but not climb back out of it.
pub fn check_links(model: &Model, persistent: &[String]) -> Result<(), String> {
    for (at, node) in model {
        if let Node::Link(target) = node {
            resolve(model, persistent, at, target)
                .map_err(|why| format!("link {} -> {} {why}", at.display(), target.display()))?;
        }
    }
    Ok(())
}

fn resolve(model: &Model, persistent: &[String], at: &Path, target: &Path) -> Result<(), String> {
    let mut dir: Vec<std::ffi::OsString> = at
        .parent()
        .map(|p| p.iter().map(|c| c.to_os_string()).collect())
        .unwrap_or_default();
    let mut pending: std::collections::VecDeque<std::ffi::OsString> = Default::default();
    let push_target = |pending: &mut std::collections::VecDeque<_>, t: &Path| {
        if t.is_absolute() {
            return Err("is absolute".to_string());
        }
        for c in t.components().rev() {
            match c {
                Component::Normal(n) => pending.push_front(n.to_os_string()),
                Component::ParentDir => pending.push_front("..".into()),
                Component::CurDir => {}
                _ => return Err("is absolute".to_string()),
            }
        }
        Ok(())
    };
    push_target(&mut pending, target)?;
    let mut hops = 0;
    // Depth at which the resolution entered a persistent path (it lives in shared/).
    let mut entered: Option<usize> = None;
    while let Some(c) = pending.pop_front() {
        if c == ".." {
            if dir.pop().is_none() {
                return Err("leaves the release".into());
            }
            if entered.is_some_and(|d| dir.len() < d) {
                return Err("climbs out of a persistent path".into());
            }
            continue;
        }
        dir.push(c);
        if entered.is_some() {
            continue;
        }
        if dir.len() == 1 && persistent.iter().any(|p| dir[0] == **p) {
            entered = Some(1);
            continue;
        }
        let here: PathBuf = dir.iter().collect();
        match model.get(&here) {
            Some(Node::Link(t)) => {
                hops += 1;
                if hops > MAX_HOPS {
                    return Err("loops".into());
                }
                dir.pop();
                push_target(&mut pending, t)?;
            }
            // A file in the middle of a path: the kernel stops there (ENOTDIR).
            Some(Node::File) if !pending.is_empty() => return Ok(()),
            _ => {}
        }
    }
    Ok(())
}

/// What [`unpack`] wrote.
#[derive(Debug, Default)]
pub struct Unpacked {
    /// sha256 of every file written, by destination path (when asked for).
    pub hashes: BTreeMap<PathBuf, String>,
    /// Every entry written, for [`check_links`].
    pub model: Model,
    /// Files whose setuid, setgid or sticky bits were dropped.
    pub stripped: Vec<PathBuf>,
}

/// Bytes a package may hold besides its files' contents, per entry (its header, a long name
/// or pax record, the padding), and once.
const HEADER_BYTES_PER_ENTRY: u64 = 4096;
const HEADER_BYTES: u64 = 1 << 20;
/// Entries one package may hold.
pub const MAX_ENTRIES: u64 = 1_000_000;

/// Shared between the loop and [`Capped`]: what the tar stream may still read.
#[derive(Default)]
struct Budget {
    /// Contents the loop has accepted (rounded up to tar blocks).
    granted: std::cell::Cell<u64>,
    entries: std::cell::Cell<u64>,
    read: std::cell::Cell<u64>,
}

impl Budget {
    fn allowed(&self) -> u64 {
        self.granted.get() + HEADER_BYTES + HEADER_BYTES_PER_ENTRY * (self.entries.get() + 1)
    }
}

/// The decompressed stream, cut off when it runs past what the entries so far justify: a
/// decompression bomb, or a long name or pax record of gigabytes (the tar reader holds those
/// in memory), ends in an error instead of filling the disk or the memory.
struct Capped<R> {
    inner: R,
    budget: std::rc::Rc<Budget>,
}

impl<R: Read> Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.budget.allowed().saturating_sub(self.budget.read.get());
        if left == 0 {
            return Err(io::Error::other(OVER_BUDGET));
        }
        let want = buf.len().min(left.min(usize::MAX as u64) as usize);
        let n = self.inner.read(&mut buf[..want])?;
        self.budget.read.set(self.budget.read.get() + n as u64);
        Ok(n)
    }
}

const OVER_BUDGET: &str = "the package holds more than its entries account for";

/// Unpack a package into `dest`, entry by entry, refusing anything that could escape it or
/// outgrow what the signed manifest declares. Every write goes through [`Beneath`]: no link
/// is ever followed, no entry replaces another. `select(path)` maps an entry's path to
/// where it goes (`Ok(None)`: skip, e.g. `patch.toml`; `Err`: refuse the package before
/// anything of that entry is written). `max_bytes` caps the contents of all entries
/// together. With `hash`, the sha256 of every file written is returned.
pub fn unpack(
    package: &Path,
    dest: &Beneath,
    select: &dyn Fn(&Path) -> Result<Option<PathBuf>, String>,
    hash: bool,
    max_bytes: u64,
) -> Result<Unpacked, String> {
    let pkg = package.display().to_string();
    let file = File::open(package).map_err(|e| format!("cannot open {pkg}: {e}"))?;
    let dec = zstd::stream::read::Decoder::new(file).map_err(|e| format!("{pkg}: {e}"))?;
    let budget = std::rc::Rc::new(Budget::default());
    let mut ar = tar::Archive::new(Capped {
        inner: dec,
        budget: budget.clone(),
    });
    let damaged = |e: io::Error| {
        if e.to_string().contains(OVER_BUDGET) {
            format!("{pkg} refused: {OVER_BUDGET} (a decompression bomb, or a damaged package)")
        } else {
            format!("{pkg} is damaged: {e}")
        }
    };
    let mut out = Unpacked::default();
    let mut contents: u64 = 0;
    let entries = ar
        .entries()
        .map_err(|e| format!("{pkg} is not a readable package: {e}"))?;
    let refused = |e: crate::beneath::Refused| format!("{pkg} refused: {e}");
    for entry in entries {
        let mut entry = entry.map_err(damaged)?;
        budget.entries.set(budget.entries.get() + 1);
        if budget.entries.get() > MAX_ENTRIES {
            return Err(format!("{pkg} refused: more than {MAX_ENTRIES} entries"));
        }
        let size = entry.size();
        contents = contents.saturating_add(size);
        if contents > max_bytes {
            return Err(format!(
                "{pkg} refused: it unpacks to more than the {max_bytes} bytes its manifest declares"
            ));
        }
        budget
            .granted
            .set(budget.granted.get() + size.div_ceil(512) * 512);
        let raw = entry
            .path()
            .map_err(|e| format!("{pkg}: {e}"))?
            .into_owned();
        let rel = safe_entry_path(&raw).map_err(|e| format!("{pkg} refused: {e}"))?;
        let Some(rel) = select(&rel).map_err(|e| format!("{pkg} refused: {e}"))? else {
            continue;
        };
        let kind = entry.header().entry_type();
        let mode = entry.header().mode().unwrap_or(0o644) & 0o7777;
        match kind {
            tar::EntryType::Directory => {
                dest.create_dir(&rel).map_err(refused)?;
                out.model.insert(rel, Node::Dir);
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let mut f = dest.create_file(&rel).map_err(refused)?;
                let mut hasher = hash.then(Sha256::new);
                let mut buf = vec![0u8; 1 << 20];
                loop {
                    let n = entry.read(&mut buf).map_err(damaged)?;
                    if n == 0 {
                        break;
                    }
                    if let Some(h) = hasher.as_mut() {
                        h.update(&buf[..n]);
                    }
                    f.write_all(&buf[..n])
                        .map_err(|e| format!("cannot write {}: {e}", rel.display()))?;
                }
                if mode & 0o7000 != 0 {
                    tracing::warn!(
                        "{pkg}: {} asks for mode {mode:o}; setuid, setgid and sticky bits are dropped",
                        rel.display()
                    );
                    out.stripped.push(rel.clone());
                }
                Beneath::set_mode(&f, &rel, mode & 0o777).map_err(refused)?;
                if let Some(h) = hasher {
                    out.hashes.insert(rel.clone(), format!("{:x}", h.finalize()));
                }
                out.model.insert(rel, Node::File);
                engine::failpoint("steps::stage::unpack_entry");
            }
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name()
                    .map_err(|e| format!("{pkg}: {e}"))?
                    .ok_or_else(|| format!("{pkg}: symlink {} has no target", rel.display()))?
                    .into_owned();
                if !link_stays_inside(&rel, &target) {
                    return Err(format!(
                        "{pkg} refused: symlink {} points outside the release ({})",
                        rel.display(),
                        target.display()
                    ));
                }
                dest.symlink(&target, &rel).map_err(refused)?;
                out.model.insert(rel, Node::Link(target));
            }
            tar::EntryType::Link => {
                return Err(format!("{pkg} refused: hard link {} (packages may not hold hard links)", rel.display()))
            }
            other => {
                return Err(format!(
                    "{pkg} refused: {} is a {other:?} entry (only files, directories and symlinks are allowed)",
                    rel.display()
                ))
            }
        }
    }
    Ok(out)
}

/// Read `patch.toml` out of a patch package.
pub fn read_patch_toml(package: &Path) -> Result<PatchToml, String> {
    let pkg = package.display().to_string();
    let file = File::open(package).map_err(|e| format!("cannot open {pkg}: {e}"))?;
    let dec = zstd::stream::read::Decoder::new(file).map_err(|e| format!("{pkg}: {e}"))?;
    let mut ar = tar::Archive::new(dec);
    for entry in ar.entries().map_err(|e| format!("{pkg}: {e}"))? {
        let mut entry = entry.map_err(|e| format!("{pkg} is damaged: {e}"))?;
        if entry.path().map_err(|e| format!("{pkg}: {e}"))?.as_ref() == Path::new("patch.toml") {
            let mut text = String::new();
            entry
                .by_ref()
                .take(64 << 20)
                .read_to_string(&mut text)
                .map_err(|e| format!("{pkg}: patch.toml: {e}"))?;
            let p: PatchToml =
                toml::from_str(&text).map_err(|e| format!("{pkg}: patch.toml: {e}"))?;
            if p.format > PATCH_FORMAT {
                return Err(format!(
                    "{pkg}: patch format {} is newer than this molt reads",
                    p.format
                ));
            }
            return Ok(p);
        }
    }
    Err(format!(
        "{pkg} is not a patch package: it has no patch.toml"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_must_stay_inside() {
        let ok = |at: &str, t: &str| link_stays_inside(Path::new(at), Path::new(t));
        assert!(ok("a", "b"));
        assert!(ok("d/a", "../b"));
        assert!(ok("d/e/a", "../../b"));
        assert!(!ok("a", "../b"));
        assert!(!ok("d/a", "../../b"));
        assert!(!ok("a", "/etc/passwd"));
        assert!(!ok("d/a", "x/../../../b"));
    }

    #[test]
    fn links_are_resolved_through_each_other() {
        let model = |links: &[(&str, &str)], files: &[&str]| {
            let mut m = Model::new();
            for (at, t) in links {
                m.insert(PathBuf::from(at), Node::Link(PathBuf::from(t)));
            }
            for f in files {
                m.insert(PathBuf::from(f), Node::File);
            }
            m
        };
        let check = |links: &[(&str, &str)], files: &[&str]| {
            check_links(&model(links, files), &["data".to_string()])
        };
        assert!(check(&[("a", "b/c"), ("b", "d")], &[]).is_ok());
        assert!(check(&[("r", "."), ("x", "r/r/r")], &[]).is_ok());
        let e = check(&[("r", "."), ("x", "r/r/r/../../..")], &[]).unwrap_err();
        assert!(e.contains("leaves the release"), "{e}");
        let e = check(&[("d/r", ".."), ("d/x", "r/..")], &[]).unwrap_err();
        assert!(e.contains("leaves the release"), "{e}");
        assert!(check(&[("a", "b"), ("b", "a")], &[])
            .unwrap_err()
            .contains("loops"));
        assert!(check(&[("u", "data/uploads")], &[]).is_ok());
        let e = check(&[("u", "data/x/../..")], &[]).unwrap_err();
        assert!(e.contains("persistent"), "{e}");
        // A file in the middle ends the resolution where the kernel would.
        assert!(check(&[("x", "f/../..")], &["f"]).is_ok());
        assert!(check(&[("x", "/etc")], &[])
            .unwrap_err()
            .contains("absolute"));
    }

    #[test]
    fn entry_paths_must_be_relative_and_plain() {
        assert!(safe_entry_path(Path::new("a/b")).is_ok());
        assert!(safe_entry_path(Path::new("./a")).is_ok());
        assert!(safe_entry_path(Path::new("../a")).is_err());
        assert!(safe_entry_path(Path::new("a/../../b")).is_err());
        assert!(safe_entry_path(Path::new("/etc/passwd")).is_err());
        assert!(safe_entry_path(Path::new(".")).is_err());
    }
}
