//! `compress`: turn a complete backup's `data/` into `data.tar.zst` (framed zstd, see `frames`), after
//! the run that needed it has committed.
//!
//! The archive is written from the manifest (entries in manifest order, headers from the
//! manifest's metadata) while each file is hashed against the manifest, so an archive never
//! holds bytes the manifest does not vouch for.
//!
//! - `do`: writes `data.tar.zst.partial`, fsyncs it, renames it to `data.tar.zst`, records the
//!   archive in the manifest (atomically), then removes `data/`. `Ok` guarantees the backup is
//!   complete in its compressed form. Idempotent: each stage is recognised from the disk (a
//!   manifest naming the archive means only `data/` may remain to be removed).
//! - `undo`: removes a leftover `data.tar.zst.partial`; a backup already recorded as compressed
//!   stays compressed (it is complete either way). Idempotent.

use super::digest::Digester;
use super::frames::{self, FramedWriter};
use super::{write_json, Item, Kind, Layout, Manifest, ARCHIVE};
use crate::fsutil::{remove_path, sync_dir};
use crate::io_err;
use async_trait::async_trait;
use engine::{Step, StepClass, StepCtx, StepError};
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;

pub struct Compress {
    pub layout: Layout,
    /// zstd level (3 is zstd's default).
    pub level: i32,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Receipt {
    pub archive_bytes: u64,
    /// Why the backup was left as a directory (it is complete and verifiable either way).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uncompressed: Option<String>,
}

fn header(item: &Item) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_mode(item.mode);
    h.set_uid(item.uid as u64);
    h.set_gid(item.gid as u64);
    h.set_mtime((item.mtime_ns.max(0) / 1_000_000_000) as u64);
    match item.kind {
        Kind::File => {
            h.set_entry_type(tar::EntryType::Regular);
            h.set_size(item.size);
        }
        Kind::Dir => {
            h.set_entry_type(tar::EntryType::Directory);
            h.set_size(0);
        }
        Kind::Symlink => {
            h.set_entry_type(tar::EntryType::Symlink);
            h.set_size(0);
        }
    }
    h
}

/// A reader that digests what passes through it (for entries tar's builder writes).
struct Hashing<R> {
    inner: R,
    hasher: Digester,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// Write `items` (found under `data`) as a tar.zst at `out`, in the framed form (see
/// `frames`), durable on return. Each file's sha256 must equal the manifest's; returns the
/// archive's size.
pub fn write_archive(data: &Path, items: &[Item], out: &Path, level: i32) -> io::Result<u64> {
    let file = File::create(out)?;
    let mut builder = tar::Builder::new(FramedWriter::new(file, level)?);
    for item in items {
        let mut h = header(item);
        match item.kind {
            Kind::Dir => builder.append_data(&mut h, &item.path, io::empty())?,
            Kind::Symlink => {
                builder.append_link(&mut h, &item.path, item.target.as_deref().unwrap_or(""))?
            }
            Kind::File => {
                let src = data.join(&item.path);
                let mut file = File::open(&src)?;
                let mut hasher = Digester::new(item.digest_scheme());
                if h.set_path(&item.path).is_ok() {
                    // the path fits the header: header, then the file read straight into
                    // the archive's chunk, then tar's padding
                    h.set_cksum();
                    let w = builder.get_mut();
                    w.write_all(h.as_bytes())?;
                    w.read_from(&mut file, item.size, &mut hasher)?;
                    let pad = (512 - item.size % 512) % 512;
                    w.write_all(&[0u8; 512][..pad as usize])?;
                } else {
                    // a long path: tar's own extension header, through its builder
                    let mut r = Hashing {
                        inner: file.take(item.size),
                        hasher,
                    };
                    builder.append_data(&mut h, &item.path, &mut r)?;
                    hasher = r.hasher;
                }
                let sha = hasher.finish().digest;
                if Some(&sha) != item.sha256.as_ref() {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!(
                            "{} changed inside the backup (sha256 {sha}, manifest {})",
                            src.display(),
                            item.sha256.as_deref().unwrap_or("?")
                        ),
                    ));
                }
            }
        }
        engine::failpoint("steps::backup::archive_entry");
    }
    let file = builder.into_inner()?.finish()?;
    file.sync_all()?;
    Ok(file.metadata()?.len())
}

/// Check an archive against the manifest: same entries in the same order, same kinds, modes,
/// sizes, sha256 and link targets.
pub fn verify_archive(archive: &Path, manifest: &Manifest) -> io::Result<Vec<String>> {
    let mut problems = Vec::new();
    let file = match File::open(archive) {
        Ok(f) => f,
        Err(e) => return Ok(vec![format!("cannot open {}: {e}", archive.display())]),
    };
    let mut ar = tar::Archive::new(frames::open(file)?);
    let mut expected = manifest.items.iter();
    let entries = match ar.entries() {
        Ok(e) => e,
        Err(e) => {
            return Ok(vec![format!(
                "{} is not a readable archive: {e}",
                archive.display()
            )])
        }
    };
    for entry in entries {
        let mut entry = match entry {
            Ok(e) => e,
            Err(e) => {
                problems.push(format!("{} is damaged: {e}", archive.display()));
                return Ok(problems);
            }
        };
        let path = entry
            .path()?
            .to_string_lossy()
            .trim_end_matches('/')
            .to_string();
        let Some(item) = expected.next() else {
            problems.push(format!("{path} is in the archive but not in the manifest"));
            continue;
        };
        if path != item.path {
            problems.push(format!(
                "archive has {path} where the manifest has {}",
                item.path
            ));
            return Ok(problems);
        }
        let h = entry.header().clone();
        if h.mode()? & 0o7777 != item.mode && item.kind != Kind::Symlink {
            problems.push(format!("{path}: mode differs from the manifest"));
        }
        match item.kind {
            Kind::File => {
                let mut hasher = Digester::new(item.digest_scheme());
                if let Err(e) = io::copy(&mut entry, &mut hasher) {
                    problems.push(format!("{path}: cannot be read from the archive: {e}"));
                    return Ok(problems);
                }
                let sha = hasher.finish().digest;
                if Some(&sha) != item.sha256.as_ref() {
                    problems.push(format!(
                        "{path} has sha256 {sha} in the archive, expected {}",
                        item.sha256.as_deref().unwrap_or("?")
                    ));
                }
            }
            Kind::Symlink => {
                let target = entry.link_name()?.map(|t| t.to_string_lossy().into_owned());
                if target != item.target {
                    problems.push(format!("{path}: link target differs from the manifest"));
                }
            }
            Kind::Dir => {}
        }
    }
    for missing in expected {
        problems.push(format!("{} is missing from the archive", missing.path));
    }
    Ok(problems)
}

#[async_trait]
impl Step for Compress {
    type Receipt = Receipt;

    fn name(&self) -> String {
        format!("compress backup {}", self.layout.id)
    }

    /// The backup was sealed (its manifest written) before this step: compressing only
    /// changes its form. A crash here is finished forward, never rolled back (that would
    /// throw a good backup away), and a compression that fails leaves the directory form.
    fn class(&self) -> StepClass {
        StepClass::ForwardOnly
    }

    async fn apply(&self, _ctx: &StepCtx) -> Result<Receipt, StepError> {
        let l = &self.layout;
        let mut manifest = l
            .read_manifest()
            .map_err(|e| io_err("read", &l.manifest(), e))?
            .ok_or_else(|| StepError::new(format!("backup {} is incomplete", l.id)))?;
        let archive = l.archive();
        if manifest.archive.is_none() {
            let partial = l.dir().join(format!("{ARCHIVE}.partial"));
            if !archive.exists() {
                let made = write_archive(&l.data(), &manifest.items, &partial, self.level)
                    .and_then(|_| std::fs::rename(&partial, &archive))
                    .and_then(|()| sync_dir(&l.dir()));
                if let Err(e) = made {
                    let _ = remove_path(&partial);
                    let _ = remove_path(&archive);
                    let why = format!(
                        "cannot compress backup {} ({e}); it is kept as a directory",
                        l.id
                    );
                    tracing::warn!("{why}");
                    return Ok(Receipt {
                        archive_bytes: 0,
                        uncompressed: Some(why),
                    });
                }
            }
            engine::failpoint("steps::backup::archived");
            manifest.archive = Some(ARCHIVE.to_string());
            write_json(&l.manifest(), &manifest).map_err(|e| io_err("write", &l.manifest(), e))?;
        }
        let data = l.data();
        remove_path(&data).map_err(|e| io_err("remove", &data, e))?;
        let archive_bytes = std::fs::metadata(&archive)
            .map_err(|e| io_err("inspect", &archive, e))?
            .len();
        Ok(Receipt {
            archive_bytes,
            uncompressed: None,
        })
    }

    async fn undo(&self, _ctx: &StepCtx, _receipt: Option<Receipt>) -> Result<(), StepError> {
        let partial = self.layout.dir().join(format!("{ARCHIVE}.partial"));
        remove_path(&partial).map_err(|e| io_err("remove", &partial, e))
    }
}
