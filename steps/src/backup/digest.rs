//! The content digest a backup records for each file (`Item::sha256`).
//!
//! - A file of one block (1 MiB) or less: its SHA-256, in hex, as before.
//! - A larger file: `sha256-blocks:` and the hex SHA-256 of the concatenated (raw) SHA-256 of
//!   each 1 MiB block, the last one short. The final sync then hashes only the blocks that
//!   changed since the pre-copy, which recorded each block's digest: a database's tablespace
//!   that changed in a few places costs a compare, not a hash of the whole file, inside the
//!   downtime.
//!
//! Whoever checks a digest takes the scheme from the digest it expects ([`Scheme::of`]), so
//! manifests written before the block scheme (plain SHA-256 for every file) still verify,
//! restore and compress. Release packages and downloads keep plain SHA-256: their digests are
//! the vendor's and the protocol's.

use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

/// The block the block scheme hashes separately (and the unit the copies read in).
pub const BLOCK: usize = 1 << 20;

/// The prefix of a block-scheme digest.
pub const BLOCKS_PREFIX: &str = "sha256-blocks:";

/// How a file's digest is computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    /// SHA-256 of the content.
    Plain,
    /// SHA-256 over the SHA-256 of each [`BLOCK`].
    Blocks,
}

impl Scheme {
    /// The scheme a new digest of a file of `size` bytes uses.
    pub fn for_size(size: u64) -> Scheme {
        if size > BLOCK as u64 {
            Scheme::Blocks
        } else {
            Scheme::Plain
        }
    }

    /// The scheme `expected` was made with (plain when there is none).
    pub fn of(expected: Option<&str>) -> Scheme {
        match expected {
            Some(d) if d.starts_with(BLOCKS_PREFIX) => Scheme::Blocks,
            _ => Scheme::Plain,
        }
    }
}

/// One block's SHA-256.
pub type BlockDigest = [u8; 32];

/// A file's digest, and (block scheme) each block's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Digested {
    pub digest: String,
    pub blocks: Vec<BlockDigest>,
}

/// Computes a file's digest from its bytes in any chunks, or (block scheme) from whole blocks
/// whose digest is already known.
pub struct Digester {
    scheme: Scheme,
    whole: Sha256,
    in_block: usize,
    blocks: Vec<BlockDigest>,
}

impl Digester {
    pub fn new(scheme: Scheme) -> Digester {
        Digester {
            scheme,
            whole: Sha256::new(),
            in_block: 0,
            blocks: Vec::new(),
        }
    }

    pub fn update(&mut self, mut data: &[u8]) {
        if self.scheme == Scheme::Plain {
            self.whole.update(data);
            return;
        }
        while !data.is_empty() {
            let take = (BLOCK - self.in_block).min(data.len());
            self.whole.update(&data[..take]);
            self.in_block += take;
            data = &data[take..];
            if self.in_block == BLOCK {
                self.end_block();
            }
        }
    }

    fn end_block(&mut self) {
        let d = std::mem::take(&mut self.whole).finalize();
        self.blocks.push(d.into());
        self.in_block = 0;
    }

    /// A whole block whose digest is known (its bytes equal those the digest was made of).
    /// Only for the block scheme, at a block boundary (`false` otherwise: the bytes must be
    /// given).
    #[must_use]
    pub fn known(&mut self, block: BlockDigest) -> bool {
        if self.scheme != Scheme::Blocks || self.in_block != 0 {
            return false;
        }
        self.blocks.push(block);
        true
    }

    pub fn finish(mut self) -> Digested {
        match self.scheme {
            Scheme::Plain => Digested {
                digest: format!("{:x}", self.whole.finalize()),
                blocks: Vec::new(),
            },
            Scheme::Blocks => {
                if self.in_block > 0 {
                    self.end_block();
                }
                let mut top = Sha256::new();
                for b in &self.blocks {
                    top.update(b);
                }
                Digested {
                    digest: format!("{BLOCKS_PREFIX}{:x}", top.finalize()),
                    blocks: self.blocks,
                }
            }
        }
    }
}

impl io::Write for Digester {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The digest of a file by `scheme`.
pub fn digest_file(path: &Path, scheme: Scheme) -> io::Result<String> {
    let mut input = File::open(path)?;
    let mut d = Digester::new(scheme);
    let mut buf = vec![0u8; 256 << 10];
    loop {
        match input.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => d.update(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(d.finish().digest)
}

/// Block digests as the pre-copy records them (hex).
pub fn to_hex(blocks: &[BlockDigest]) -> Vec<String> {
    blocks
        .iter()
        .map(|b| b.iter().map(|x| format!("{x:02x}")).collect())
        .collect()
}

/// The recorded block digests back; `None` when one does not read (they are then not used).
pub fn from_hex(blocks: &[String]) -> Option<Vec<BlockDigest>> {
    blocks
        .iter()
        .map(|h| {
            if h.len() != 64 || !h.is_ascii() {
                return None;
            }
            let mut out = [0u8; 32];
            for (i, o) in out.iter_mut().enumerate() {
                *o = u8::from_str_radix(&h[2 * i..2 * i + 2], 16).ok()?;
            }
            Some(out)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i % 251) as u8).collect()
    }

    #[test]
    fn the_block_scheme_is_sha256_over_each_blocks_sha256_whatever_the_chunks() {
        let bytes = data(2 * BLOCK + 77);
        let mut top = Sha256::new();
        for block in bytes.chunks(BLOCK) {
            top.update(Sha256::digest(block));
        }
        let want = format!("{BLOCKS_PREFIX}{:x}", top.finalize());
        for chunk in [1000, BLOCK, BLOCK + 1, 3 * BLOCK] {
            let mut d = Digester::new(Scheme::Blocks);
            for c in bytes.chunks(chunk) {
                d.update(c);
            }
            let got = d.finish();
            assert_eq!(got.digest, want, "chunks of {chunk}");
            assert_eq!(got.blocks.len(), 3);
        }
        // known block digests stand for their bytes
        let mut d = Digester::new(Scheme::Blocks);
        assert!(d.known(Sha256::digest(&bytes[..BLOCK]).into()));
        d.update(&bytes[BLOCK..]);
        assert_eq!(d.finish().digest, want);
        // ...but only at a block boundary
        let mut d = Digester::new(Scheme::Blocks);
        d.update(&bytes[..10]);
        assert!(!d.known([0; 32]));
        assert!(!Digester::new(Scheme::Plain).known([0; 32]));
    }

    #[test]
    fn the_scheme_is_read_from_the_digest_and_plain_is_sha256() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        let bytes = data(BLOCK + 1);
        std::fs::write(&f, &bytes).unwrap();
        let plain = digest_file(&f, Scheme::Plain).unwrap();
        assert_eq!(plain, format!("{:x}", Sha256::digest(&bytes)));
        assert_eq!(Scheme::of(Some(&plain)), Scheme::Plain);
        assert_eq!(Scheme::of(None), Scheme::Plain);
        let blocks = digest_file(&f, Scheme::Blocks).unwrap();
        assert!(blocks.starts_with(BLOCKS_PREFIX));
        assert_eq!(Scheme::of(Some(&blocks)), Scheme::Blocks);
        assert_eq!(Scheme::for_size(BLOCK as u64), Scheme::Plain);
        assert_eq!(Scheme::for_size(BLOCK as u64 + 1), Scheme::Blocks);
        let mut d = Digester::new(Scheme::Blocks);
        d.update(&bytes);
        let got = d.finish();
        assert_eq!(got.digest, blocks);
        assert_eq!(from_hex(&to_hex(&got.blocks)), Some(got.blocks));
        assert_eq!(from_hex(&["zz".repeat(32)]), None);
        assert_eq!(from_hex(&["ab".into()]), None);
    }
}
