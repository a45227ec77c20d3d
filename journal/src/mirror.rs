//! `records.log`: a second copy of every record, one checksummed line each, appended after
//! sled has made the same records durable. It is what [`crate::salvage`] rebuilds a journal
//! from when sled's own files are damaged, and it tells a truncated sled log (which sled opens
//! without a word, one run's end missing) from a whole one.
//!
//! A line is `CRC32 RUN SEQ JSON\n`, the CRC (8 hex digits) over `RUN SEQ JSON`. Records are
//! JSON without a newline. A line whose checksum does not match is skipped by readers.

use engine::RunId;
use std::io::Write;
use std::path::Path;

pub(crate) const MIRROR: &str = "records.log";

/// A stored record: run, seq and its bytes.
pub(crate) type Raw = (RunId, u64, Vec<u8>);

/// One line of the mirror.
pub(crate) fn line(run: RunId, seq: u64, bytes: &[u8]) -> Vec<u8> {
    let mut body = format!("{} {} ", run.0, seq).into_bytes();
    body.extend_from_slice(bytes);
    let mut out = format!("{:08x} ", crc32fast::hash(&body)).into_bytes();
    out.extend_from_slice(&body);
    out.push(b'\n');
    out
}

/// The good lines of a mirror as (run, seq, record bytes), and how many lines were bad.
pub(crate) fn read(path: &Path) -> std::io::Result<(Vec<Raw>, usize)> {
    let data = match std::fs::read(path) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), 0)),
        Err(e) => return Err(e),
    };
    let mut good = Vec::new();
    let mut bad = 0;
    let mut pieces: Vec<&[u8]> = data.split(|&b| b == b'\n').collect();
    // The piece after the last newline is empty, or a torn line.
    if pieces.last().is_some_and(|p| p.is_empty()) {
        pieces.pop();
    }
    for piece in pieces {
        match parse(piece) {
            Some(g) => good.push(g),
            None => bad += 1,
        }
    }
    Ok((good, bad))
}

fn parse(piece: &[u8]) -> Option<Raw> {
    let (crc, body) = split_space(piece)?;
    let crc = u32::from_str_radix(std::str::from_utf8(crc).ok()?, 16).ok()?;
    if crc32fast::hash(body) != crc {
        return None;
    }
    let (run, rest) = split_space(body)?;
    let (seq, json) = split_space(rest)?;
    let run = std::str::from_utf8(run).ok()?.parse().ok()?;
    let seq = std::str::from_utf8(seq).ok()?.parse().ok()?;
    Some((RunId(run), seq, json.to_vec()))
}

fn split_space(b: &[u8]) -> Option<(&[u8], &[u8])> {
    let i = b.iter().position(|&c| c == b' ')?;
    Some((&b[..i], &b[i + 1..]))
}

/// Replace the mirror with `lines` (atomic, synced).
pub(crate) fn rewrite(dir: &Path, lines: &[Vec<u8>]) -> std::io::Result<()> {
    let tmp = dir.join(format!("{MIRROR}.tmp"));
    let mut f = std::fs::File::create(&tmp)?;
    for l in lines {
        f.write_all(l)?;
    }
    f.sync_data()?;
    std::fs::rename(&tmp, dir.join(MIRROR))?;
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_round_trip_and_damage_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let mut data = line(RunId(3), 7, br#"{"a":1}"#);
        let mut flipped = line(RunId(3), 8, br#"{"a":2}"#);
        flipped[15] ^= 1;
        data.extend_from_slice(&flipped);
        data.extend_from_slice(&line(RunId(4), 0, br#"{"b":"c d"}"#));
        data.extend_from_slice(b"0000 torn");
        std::fs::write(dir.path().join(MIRROR), &data).unwrap();
        let (good, bad) = read(&dir.path().join(MIRROR)).unwrap();
        assert_eq!(bad, 2);
        assert_eq!(
            good,
            vec![
                (RunId(3), 7, br#"{"a":1}"#.to_vec()),
                (RunId(4), 0, br#"{"b":"c d"}"#.to_vec())
            ]
        );
    }
}
