//! The framed form of `data.tar.zst`: the tar stream cut into chunks of [`CHUNK`] bytes, each
//! compressed as a zstd frame of its own (with its content size and checksum) and preceded by
//! a skippable frame that gives the frame's compressed and plain lengths.
//!
//! This is the shape pzstd writes, and any zstd decoder reads it as one stream: skippable
//! frames are skipped and frames concatenate. So `tar -I zstd -xf data.tar.zst` still
//! restores a backup by hand, while molt compresses the chunks on every core and, knowing
//! where each frame ends, decompresses them on every core too.
//!
//! Archives from molt versions before this form (one frame from zstd's streaming
//! compressor) are read by the streaming decoder, on one core ([`open`] tells them apart).
//!
//! Lengths in a frame header are checked before anything is allocated: an archive cannot
//! make molt hold more than a few chunks in memory.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Seek, Write};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// Plain bytes per frame.
pub const CHUNK: usize = 8 << 20;
/// The skippable frame's magic number (one of the sixteen zstd reserves for them).
const SKIPPABLE: u32 = 0x184D_2A5E;
/// What molt's skippable frame holds first: the format's name and version.
const TAG: &[u8; 4] = b"mfr1";
/// A frame header: magic, payload size (12), tag, compressed length, plain length.
const HEAD: usize = 20;
/// Archive bytes written between two `fdatasync`s: the disk writes the archive while later
/// chunks compress, and the final `fsync` finds little left to flush.
const SYNC_EVERY: u64 = 64 << 20;

fn head(compressed: usize, plain: usize) -> [u8; HEAD] {
    let mut h = [0u8; HEAD];
    h[0..4].copy_from_slice(&SKIPPABLE.to_le_bytes());
    h[4..8].copy_from_slice(&12u32.to_le_bytes());
    h[8..12].copy_from_slice(TAG);
    h[12..16].copy_from_slice(&(compressed as u32).to_le_bytes());
    h[16..20].copy_from_slice(&(plain as u32).to_le_bytes());
    h
}

/// (compressed, plain) lengths, when `h` is molt's frame header.
fn parse_head(h: &[u8; HEAD]) -> Option<(usize, usize)> {
    let word = |i: usize| u32::from_le_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]);
    (word(0) == SKIPPABLE && word(4) == 12 && &h[8..12] == TAG)
        .then(|| (word(12) as usize, word(16) as usize))
}

/// The largest compressed frame of one chunk (zstd's bound for incompressible input).
fn max_frame() -> usize {
    zstd::zstd_safe::compress_bound(CHUNK)
}

/// Threads that compress or decompress chunks.
fn threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(8))
}

type Pending<O> = Receiver<io::Result<O>>;
/// A compressed chunk: its plain length and its frame.
type Frame = (usize, Vec<u8>);
type Job<I, O> = (I, SyncSender<io::Result<O>>);

/// Workers that turn chunks into results; each submitted chunk gives a receiver for its
/// own result, so whoever keeps the receivers in order gets the results in order.
struct Pool<I, O> {
    jobs: Option<SyncSender<Job<I, O>>>,
    workers: Vec<JoinHandle<()>>,
}

impl<I: Send + 'static, O: Send + 'static> Pool<I, O> {
    fn start<S, F>(n: usize, state: impl Fn() -> io::Result<S>, work: F) -> io::Result<Pool<I, O>>
    where
        S: Send + 'static,
        F: Fn(&mut S, I) -> io::Result<O> + Send + Clone + 'static,
    {
        let (jobs, queue) = sync_channel::<Job<I, O>>(n);
        let queue = Arc::new(Mutex::new(queue));
        let mut workers = Vec::with_capacity(n);
        for _ in 0..n {
            let queue = Arc::clone(&queue);
            let work = work.clone();
            let mut s = state()?;
            workers.push(std::thread::spawn(move || loop {
                let job = queue.lock().map_or(None, |q| q.recv().ok());
                let Some((input, done)) = job else { return };
                let _ = done.send(work(&mut s, input));
            }));
        }
        Ok(Pool {
            jobs: Some(jobs),
            workers,
        })
    }

    fn submit(&self, input: I) -> io::Result<Pending<O>> {
        let (done, pending) = sync_channel(1);
        self.jobs
            .as_ref()
            .and_then(|j| j.send((input, done)).ok())
            .ok_or_else(|| io::Error::other("the archive's worker threads stopped"))?;
        Ok(pending)
    }
}

impl<I, O> Drop for Pool<I, O> {
    fn drop(&mut self) {
        drop(self.jobs.take());
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

/// A result that is already there (an error found before any worker saw the chunk).
fn ready<O>(r: io::Result<O>) -> Pending<O> {
    let (tx, rx) = sync_channel(1);
    let _ = tx.send(r);
    rx
}

/// Writes the framed form of what is written to it into a file, compressing chunks on
/// every core; the file is written in order by a thread of its own.
pub struct FramedWriter {
    buf: Vec<u8>,
    pool: Pool<Vec<u8>, Frame>,
    order: Option<SyncSender<Pending<Frame>>>,
    writer: Option<JoinHandle<io::Result<File>>>,
    /// Frames handed to the workers so far.
    frames: u64,
}

impl FramedWriter {
    pub fn new(file: File, level: i32) -> io::Result<FramedWriter> {
        let n = threads();
        let pool = Pool::start(
            n,
            || {
                let mut c = zstd::bulk::Compressor::new(level)?;
                c.include_checksum(true)?;
                c.include_contentsize(true)?;
                Ok(c)
            },
            |c: &mut zstd::bulk::Compressor<'static>, chunk: Vec<u8>| {
                Ok((chunk.len(), c.compress(&chunk)?))
            },
        )?;
        let (order, frames) = sync_channel::<Pending<Frame>>(2 * n);
        let writer = std::thread::spawn(move || {
            let mut out = BufWriter::with_capacity(1 << 20, file);
            let mut unsynced = 0u64;
            for pending in frames {
                let (plain, frame) = pending
                    .recv()
                    .map_err(|_| io::Error::other("a compression worker stopped"))??;
                out.write_all(&head(frame.len(), plain))?;
                out.write_all(&frame)?;
                unsynced += (HEAD + frame.len()) as u64;
                if unsynced >= SYNC_EVERY {
                    out.flush()?;
                    out.get_ref().sync_data()?;
                    unsynced = 0;
                }
            }
            out.into_inner().map_err(|e| e.into_error())
        });
        Ok(FramedWriter {
            buf: Vec::with_capacity(CHUNK),
            pool,
            order: Some(order),
            writer: Some(writer),
            frames: 0,
        })
    }

    /// Close the queue of frames and wait for the writing thread: the file, or why it
    /// stopped.
    fn close(&mut self) -> io::Result<File> {
        drop(self.order.take());
        match self.writer.take().map(|w| w.join()) {
            Some(Ok(r)) => r,
            _ => Err(io::Error::other("the archive's writing thread stopped")),
        }
    }

    fn dispatch(&mut self) -> io::Result<()> {
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK));
        let pending = self.pool.submit(chunk)?;
        self.frames += 1;
        let sent = self.order.as_ref().map(|o| o.send(pending).is_ok());
        if sent != Some(true) {
            // the writing thread stopped: its error says why
            let why = self.close().err();
            return Err(why.unwrap_or_else(|| io::Error::other("the archive's writer stopped")));
        }
        Ok(())
    }

    /// Compress what is left and wait for every frame to be written (an empty stream is one
    /// empty frame: a zstd file holds at least one). The file is not `fsync`ed (most of it
    /// already is).
    pub fn finish(mut self) -> io::Result<File> {
        if !self.buf.is_empty() || self.frames == 0 {
            self.dispatch()?;
        }
        self.close()
    }

    /// Append `len` bytes of `file` (from where it is), read straight into the chunk being
    /// filled (no copy through a buffer of the caller's), digesting them on the way. A file
    /// shorter than `len` is an error.
    pub fn read_from(
        &mut self,
        file: &mut File,
        mut len: u64,
        hasher: &mut super::digest::Digester,
    ) -> io::Result<()> {
        while len > 0 {
            let start = self.buf.len();
            let room = (CHUNK - start) as u64;
            // into the chunk's spare capacity (reserved whole): no reallocation
            let got = (&mut *file)
                .take(room.min(len))
                .read_to_end(&mut self.buf)?;
            if got == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("the file ended {len} bytes before its recorded size"),
                ));
            }
            hasher.update(&self.buf[start..]);
            len -= got as u64;
            if self.buf.len() == CHUNK {
                self.dispatch()?;
            }
        }
        Ok(())
    }
}

impl Drop for FramedWriter {
    /// Unfinished (an error on the way): the frames under way are written, then the thread
    /// stops; none outlives the writer.
    fn drop(&mut self) {
        let _ = self.close();
    }
}

impl Write for FramedWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = (CHUNK - self.buf.len()).min(data.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == CHUNK {
            self.dispatch()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The plain stream of a framed archive, decompressed on every core.
pub struct FramedReader {
    order: Receiver<Pending<Vec<u8>>>,
    chunk: Vec<u8>,
    at: usize,
    reader: Option<JoinHandle<()>>,
}

fn damaged(at: u64, what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("the archive is damaged at byte {at}: {what}"),
    )
}

/// Read exactly `buf.len()` bytes; `Ok(false)` at a clean end of file (nothing read).
fn read_frame_part(input: &mut impl Read, buf: &mut [u8], at: u64) -> io::Result<bool> {
    let mut n = 0;
    while n < buf.len() {
        match input.read(&mut buf[n..]) {
            Ok(0) if n == 0 => return Ok(false),
            Ok(0) => return Err(damaged(at, "it ends inside a frame")),
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

/// The next frame at byte `at` of a framed archive: (compressed frame, plain length), its
/// lengths checked before it is read; `None` at a clean end.
fn next_frame(input: &mut impl Read, at: u64) -> io::Result<Option<(Vec<u8>, usize)>> {
    let mut h = [0u8; HEAD];
    if !read_frame_part(input, &mut h, at)? {
        return Ok(None);
    }
    let (compressed, plain) = parse_head(&h).ok_or_else(|| damaged(at, "no frame header"))?;
    if plain > CHUNK || compressed > max_frame() || compressed == 0 {
        return Err(damaged(at, "a frame's lengths are out of range"));
    }
    let mut frame = vec![0u8; compressed];
    if !read_frame_part(input, &mut frame, at + HEAD as u64)? {
        return Err(damaged(at, "it ends after a frame header"));
    }
    Ok(Some((frame, plain)))
}

impl FramedReader {
    /// `input` is a framed archive, read from its start.
    fn start(input: File) -> io::Result<FramedReader> {
        let n = threads();
        let pool = Pool::start(
            n,
            zstd::bulk::Decompressor::new,
            |d: &mut zstd::bulk::Decompressor<'static>,
             (frame, plain, at): (Vec<u8>, usize, u64)| {
                let out = d
                    .decompress(&frame, plain)
                    .map_err(|e| damaged(at, &format!("zstd: {e}")))?;
                if out.len() != plain {
                    let what = format!(
                        "the frame holds {} bytes, its header says {plain}",
                        out.len()
                    );
                    return Err(damaged(at, &what));
                }
                Ok(out)
            },
        )?;
        let (order, chunks) = sync_channel::<Pending<Vec<u8>>>(2 * n);
        let reader = std::thread::spawn(move || {
            let mut input = BufReader::with_capacity(1 << 20, input);
            let mut at = 0u64;
            loop {
                // an error is sent in the chunk's place and ends the reading
                let (pending, last) = match next_frame(&mut input, at) {
                    Ok(None) => return,
                    Ok(Some((frame, plain))) => {
                        let len = frame.len();
                        let submitted = pool.submit((frame, plain, at + HEAD as u64));
                        at += (HEAD + len) as u64;
                        match submitted {
                            Ok(p) => (p, false),
                            Err(e) => (ready(Err(e)), true),
                        }
                    }
                    Err(e) => (ready(Err(e)), true),
                };
                if order.send(pending).is_err() || last {
                    return; // or the reader was dropped
                }
            }
        });
        Ok(FramedReader {
            order: chunks,
            chunk: Vec::new(),
            at: 0,
            reader: Some(reader),
        })
    }
}

impl Read for FramedReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.at == self.chunk.len() {
            let Ok(pending) = self.order.recv() else {
                return Ok(0);
            };
            self.chunk = pending
                .recv()
                .map_err(|_| io::Error::other("a decompression worker stopped"))??;
            self.at = 0;
        }
        let n = (self.chunk.len() - self.at).min(buf.len());
        buf[..n].copy_from_slice(&self.chunk[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

impl Drop for FramedReader {
    fn drop(&mut self) {
        // the reading thread stops at its next send, which now fails
        let (_, closed) = sync_channel(0);
        drop(std::mem::replace(&mut self.order, closed));
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }
}

/// The plain stream of a backup archive: framed archives on every core, others (written
/// before the framed form) by zstd's streaming decoder.
pub fn open(mut file: File) -> io::Result<Box<dyn Read + Send>> {
    let mut h = [0u8; HEAD];
    let framed = read_frame_part(&mut file, &mut h, 0).unwrap_or(false) && parse_head(&h).is_some();
    file.rewind()?;
    if framed {
        return Ok(Box::new(FramedReader::start(file)?));
    }
    Ok(Box::new(zstd::stream::read::Decoder::new(file)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(plain: &[u8]) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.zst");
        let mut w = FramedWriter::new(File::create(&path).unwrap(), 3).unwrap();
        // odd-sized writes, as tar's copy gives them
        for piece in plain.chunks(8191) {
            w.write_all(piece).unwrap();
        }
        w.finish().unwrap();
        (dir, path)
    }

    fn sample(len: usize) -> Vec<u8> {
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        (0..len)
            .map(|i| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                if i % 3 == 0 {
                    b'a'
                } else {
                    x as u8
                }
            })
            .collect()
    }

    #[test]
    fn a_framed_stream_reads_back_in_order_through_molt_and_through_any_zstd_decoder() {
        for len in [0, 1, CHUNK - 1, CHUNK, 3 * CHUNK + 12345] {
            let plain = sample(len);
            let (_dir, path) = framed(&plain);
            let mut back = Vec::new();
            open(File::open(&path).unwrap())
                .unwrap()
                .read_to_end(&mut back)
                .unwrap();
            assert!(back == plain, "molt's reader, {len} bytes");
            // the streaming decoder skips the skippable frames and joins the others
            let mut std_back = Vec::new();
            zstd::stream::read::Decoder::new(File::open(&path).unwrap())
                .unwrap()
                .read_to_end(&mut std_back)
                .unwrap();
            assert!(std_back == plain, "zstd's streaming decoder, {len} bytes");
            let frames = len.div_ceil(CHUNK);
            let bytes = std::fs::read(&path).unwrap();
            let heads = bytes
                .windows(4)
                .filter(|w| *w == SKIPPABLE.to_le_bytes())
                .count();
            assert!(heads >= frames, "{heads} frame headers for {frames} chunks");
        }
    }

    #[test]
    fn an_archive_from_the_streaming_compressor_is_still_read() {
        let plain = sample(CHUNK + 77);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.zst");
        std::fs::write(&path, zstd::encode_all(&plain[..], 3).unwrap()).unwrap();
        let mut back = Vec::new();
        open(File::open(&path).unwrap())
            .unwrap()
            .read_to_end(&mut back)
            .unwrap();
        assert!(back == plain);
    }

    #[test]
    fn a_damaged_framed_archive_is_an_error_not_a_short_stream() {
        let plain = sample(2 * CHUNK + 10);
        let (_dir, path) = framed(&plain);
        let good = std::fs::read(&path).unwrap();
        let read = |bytes: &[u8]| {
            std::fs::write(&path, bytes).unwrap();
            let mut back = Vec::new();
            open(File::open(&path).unwrap())
                .and_then(|mut r| r.read_to_end(&mut back))
                .map(|_| back)
        };
        // cut inside the second frame
        let first = parse_head(good[..HEAD].try_into().unwrap()).unwrap().0;
        let cut = HEAD + first + HEAD + 100;
        let e = read(&good[..cut]).unwrap_err();
        assert!(e.to_string().contains("ends inside a frame"), "{e}");
        // a flipped byte inside a frame: zstd's checksum or the length check catches it
        let mut flipped = good.clone();
        flipped[HEAD + first / 2] ^= 0x40;
        let e = read(&flipped).unwrap_err();
        assert!(e.to_string().contains("damaged"), "{e}");
        // a second header claiming a frame bigger than any chunk compresses to
        let mut huge = good.clone();
        let h = HEAD + first;
        huge[h + 12..h + 16].copy_from_slice(&u32::MAX.to_le_bytes());
        let e = read(&huge).unwrap_err();
        assert!(e.to_string().contains("out of range"), "{e}");
        // garbage where a header should be
        let mut garbage = good.clone();
        garbage[h] ^= 0xff;
        let e = read(&garbage).unwrap_err();
        assert!(e.to_string().contains("no frame header"), "{e}");
        assert!(read(&good).unwrap() == plain);
    }
}
