//! Downloads that resume and never accept a wrong file.
//!
//! The bytes go to `<dest>.part`; `<dest>.part.json` records the URL, the server's ETag and how
//! many bytes are *proven*: written to the kernel (they survive the process; a power cut that
//! loses some is caught by the final sha256, and the download starts over). After a crash the part file is cut back to the
//! proven length and its hash recomputed, then the transfer resumes with
//! `Range: bytes=N-` guarded by `If-Range: <etag>`: if the server's file changed it answers
//! 200 with the whole new file and the download starts over. Stalls (no byte for
//! `stall_timeout`) and cut connections are retried with exponential back-off. The size and
//! sha256 are checked against the manifest while streaming; only a file that matches both is
//! renamed to `dest`. Paths (no scheme) are copied the same way, hashed.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What to fetch and what it must be.
#[derive(Clone, Debug)]
pub struct Fetch {
    pub url: String,
    pub dest: PathBuf,
    pub size: u64,
    pub sha256: String,
    pub retries: u32,
    pub backoff: Duration,
    pub stall_timeout: Duration,
}

impl Fetch {
    pub fn new(url: &str, dest: &Path, size: u64, sha256: &str) -> Fetch {
        Fetch {
            url: url.to_string(),
            dest: dest.to_path_buf(),
            size,
            sha256: sha256.to_ascii_lowercase(),
            retries: 5,
            backoff: Duration::from_millis(500),
            stall_timeout: Duration::from_secs(30),
        }
    }

    fn part(&self) -> PathBuf {
        let mut n = self.dest.file_name().unwrap_or_default().to_os_string();
        n.push(".part");
        self.dest.with_file_name(n)
    }

    fn meta(&self) -> PathBuf {
        let mut n = self.dest.file_name().unwrap_or_default().to_os_string();
        n.push(".part.json");
        self.dest.with_file_name(n)
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Meta {
    url: String,
    sha256: String,
    etag: Option<String>,
    proven: u64,
}

/// Bytes between two durable checkpoints (an fdatasync each; a crash loses at most this):
/// an eighth of the file, at least 1 MiB, at most 32 MiB.
fn checkpoint_every(size: u64) -> u64 {
    (size / 8).clamp(1 << 20, 32 << 20)
}

/// A failed attempt: retry it, or give up.
enum Attempt {
    Retry(String),
    Fatal(String),
}

struct State {
    file: std::io::BufWriter<std::fs::File>,
    hasher: Sha256,
    meta: Meta,
    written: u64,
}

impl State {
    fn checkpoint(&mut self, f: &Fetch) -> Result<(), String> {
        // Handed to the kernel: survives the process. Not forced to the disk: a power cut that
        // loses part of it is caught by the final sha256 (see `download`).
        self.file
            .flush()
            .map_err(|e| format!("cannot write {}: {e}", f.part().display()))?;
        self.meta.proven = self.written;
        let bytes = serde_json::to_vec(&self.meta).map_err(|e| e.to_string())?;
        crate::fsutil::write_atomic(&f.meta(), &bytes)
            .map_err(|e| format!("cannot write {}: {e}", f.meta().display()))
    }

    fn restart(&mut self, f: &Fetch) -> Result<(), String> {
        self.file.flush().map_err(|e| e.to_string())?;
        self.file
            .get_ref()
            .set_len(0)
            .map_err(|e| format!("{}: {e}", f.part().display()))?;
        self.file
            .seek(SeekFrom::Start(0))
            .map_err(|e| e.to_string())?;
        self.hasher = Sha256::new();
        self.written = 0;
        self.meta.etag = None;
        self.checkpoint(f)
    }

    fn push(&mut self, f: &Fetch, chunk: &[u8]) -> Result<(), Attempt> {
        if self.written + chunk.len() as u64 > f.size {
            return Err(Attempt::Fatal(format!(
                "{} sends more than the {} bytes the manifest says",
                f.url, f.size
            )));
        }
        self.file
            .write_all(chunk)
            .map_err(|e| Attempt::Fatal(format!("cannot write {}: {e}", f.part().display())))?;
        self.hasher.update(chunk);
        let before = self.written;
        self.written += chunk.len() as u64;
        let every = checkpoint_every(f.size);
        if before / every != self.written / every {
            self.checkpoint(f).map_err(Attempt::Fatal)?;
            engine::failpoint("steps::download::checkpoint");
        }
        Ok(())
    }
}

/// Open the part file at its proven length, rehashing what it holds.
fn resume_state(f: &Fetch) -> Result<State, String> {
    let meta: Meta = match std::fs::read(f.meta()) {
        Ok(b) => serde_json::from_slice(&b).unwrap_or_default(),
        Err(_) => Meta::default(),
    };
    let meta = if meta.url == f.url && meta.sha256 == f.sha256 {
        meta
    } else {
        Meta {
            url: f.url.clone(),
            sha256: f.sha256.clone(),
            etag: None,
            proven: 0,
        }
    };
    if let Some(dir) = f.dest.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(f.part())
        .map_err(|e| format!("cannot open {}: {e}", f.part().display()))?;
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let proven = meta.proven.min(len).min(f.size);
    file.set_len(proven).map_err(|e| e.to_string())?;
    let mut hasher = Sha256::new();
    file.seek(SeekFrom::Start(0)).map_err(|e| e.to_string())?;
    std::io::copy(&mut (&mut file).take(proven), &mut hasher).map_err(|e| e.to_string())?;
    file.seek(SeekFrom::Start(proven))
        .map_err(|e| e.to_string())?;
    Ok(State {
        file: std::io::BufWriter::with_capacity(1 << 20, file),
        hasher,
        meta,
        written: proven,
    })
}

fn finish(f: &Fetch, st: State) -> Result<(), String> {
    let got = format!("{:x}", st.hasher.finalize());
    drop(st.file);
    if got != f.sha256 {
        let _ = std::fs::remove_file(f.part());
        let _ = std::fs::remove_file(f.meta());
        return Err(format!(
            "{} has sha256 {got}, the manifest says {}; the download was discarded",
            f.url, f.sha256
        ));
    }
    std::fs::rename(f.part(), &f.dest)
        .map_err(|e| format!("cannot rename {}: {e}", f.part().display()))?;
    let _ = std::fs::remove_file(f.meta());
    crate::fsutil::sync_dir(f.dest.parent().unwrap_or(Path::new(".")))
        .map_err(|e| format!("cannot sync {}: {e}", f.dest.display()))
}

/// Download (or copy) `f.url` to `f.dest`, resuming what a previous attempt proved. When a
/// resumed download fails its sha256 (a power cut can lose bytes the previous process had
/// written), it is discarded and fetched once more from the start.
pub async fn download(f: &Fetch, progress: &crate::report::Progress) -> Result<(), String> {
    let resumed = std::fs::read(f.meta())
        .ok()
        .and_then(|b| serde_json::from_slice::<Meta>(&b).ok())
        .is_some_and(|m| m.proven > 0 && m.url == f.url);
    match download_once(f, progress).await {
        Err(e) if resumed && e.contains("has sha256") => {
            tracing::warn!(url = %f.url, error = %e, "a resumed download did not verify; fetching it again from the start");
            download_once(f, progress).await
        }
        other => other,
    }
}

async fn download_once(f: &Fetch, progress: &crate::report::Progress) -> Result<(), String> {
    if f.dest.exists() {
        let sha = crate::backup::tree::hash_file(&f.dest).map_err(|e| e.to_string())?;
        if sha == f.sha256 {
            return Ok(());
        }
        std::fs::remove_file(&f.dest).map_err(|e| e.to_string())?;
    }
    crate::manifest::check_url(&f.url)?;
    let mut st = resume_state(f)?;
    progress.set(st.written);
    if !(f.url.starts_with("http://") || f.url.starts_with("https://")) {
        copy_local(f, &mut st).map_err(|a| match a {
            Attempt::Retry(e) | Attempt::Fatal(e) => e,
        })?;
        return finish(f, st);
    }
    let client = reqwest::Client::builder()
        .no_proxy()
        .redirect(redirects())
        .connect_timeout(f.stall_timeout)
        .read_timeout(f.stall_timeout)
        .build()
        .map_err(|e| e.to_string())?;
    let mut last = String::new();
    for attempt in 0..=f.retries {
        if attempt > 0 {
            let wait = f.backoff * (1u32 << (attempt - 1).min(6));
            tracing::info!(url = %f.url, attempt, error = %last, "download retry");
            tokio::time::sleep(wait).await;
        }
        let (back, result) = http_attempt(f, &client, st, progress).await;
        st = back;
        match result {
            Ok(()) => {
                if st.written == f.size {
                    st.checkpoint(f)?;
                    return finish(f, st);
                }
                last = format!("the server closed after {} of {} bytes", st.written, f.size);
            }
            Err(Attempt::Retry(e)) => last = e,
            Err(Attempt::Fatal(e)) => return Err(e),
        }
        st.checkpoint(f)?;
    }
    Err(format!(
        "download of {} failed after {} attempts: {last}",
        f.url,
        f.retries + 1
    ))
}

/// One request; the state goes in and comes back whatever happens.
async fn http_attempt(
    f: &Fetch,
    client: &reqwest::Client,
    mut st: State,
    progress: &crate::report::Progress,
) -> (State, Result<(), Attempt>) {
    match request(f, client, &mut st).await {
        Ok(Some(resp)) => stream_body(f, resp, st, progress).await,
        Ok(None) => (st, Ok(())),
        Err(e) => (st, Err(e)),
    }
}

/// Stream the body into the part file on a writer thread, so that receiving and
/// hashing+writing overlap.
async fn stream_body(
    f: &Fetch,
    mut resp: reqwest::Response,
    st: State,
    progress: &crate::report::Progress,
) -> (State, Result<(), Attempt>) {
    progress.set(st.written);
    let (tx, rx) = std::sync::mpsc::sync_channel::<bytes::Bytes>(64);
    let fc = f.clone();
    let bar = progress.clone();
    let writer = std::thread::spawn(move || {
        let mut st = st;
        for chunk in rx {
            if let Err(e) = st.push(&fc, &chunk) {
                return (st, Err(e));
            }
            bar.set(st.written);
        }
        (st, Ok(()))
    });
    let mut net = Ok(());
    loop {
        // The client's read timeout ends a stalled transfer.
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                // A full channel blocks this thread until the writer catches up (back-pressure).
                if tx.send(chunk).is_err() {
                    break; // the writer stopped with an error
                }
            }
            Ok(None) => break,
            Err(e) if e.is_timeout() => {
                net = Err(Attempt::Retry(format!(
                    "{} stalled for {:?}",
                    f.url, f.stall_timeout
                )));
                break;
            }
            Err(e) => {
                net = Err(Attempt::Retry(format!("{}: connection lost: {e}", f.url)));
                break;
            }
        }
    }
    drop(tx);
    match writer.join() {
        Ok((st, written)) => (st, written.and(net)),
        Err(_) => panic!("the download writer thread panicked"),
    }
}

/// Send the request and check the answer; `None` when there is nothing left to fetch.
async fn request(
    f: &Fetch,
    client: &reqwest::Client,
    st: &mut State,
) -> Result<Option<reqwest::Response>, Attempt> {
    if st.written == f.size {
        return Ok(None);
    }
    let mut req = client.get(&f.url);
    let ranged = st.written > 0 && st.meta.etag.is_some();
    if ranged {
        req = req
            .header("Range", format!("bytes={}-", st.written))
            .header("If-Range", st.meta.etag.clone().unwrap_or_default());
    } else if st.written > 0 {
        // Without a validator a resumed range could splice two versions: start over.
        st.restart(f).map_err(Attempt::Fatal)?;
    }
    let resp = tokio::time::timeout(f.stall_timeout, req.send())
        .await
        .map_err(|_| {
            Attempt::Retry(format!(
                "{} did not answer within {:?}",
                f.url, f.stall_timeout
            ))
        })?
        .map_err(|e| Attempt::Retry(format!("{}: {e}", f.url)))?;
    let status = resp.status().as_u16();
    let etag = resp
        .headers()
        .get("etag")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    match status {
        206 if ranged => {
            let start = resp
                .headers()
                .get("content-range")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("bytes "))
                .and_then(|v| v.split('-').next())
                .and_then(|v| v.parse::<u64>().ok());
            if start != Some(st.written) {
                st.restart(f).map_err(Attempt::Fatal)?;
                return Err(Attempt::Retry(format!(
                    "{} answered a range that does not start at byte {}",
                    f.url, st.written
                )));
            }
        }
        200 => {
            if st.written > 0 {
                tracing::info!(url = %f.url, "server sent the whole file (changed, or no range support): starting over");
                st.restart(f).map_err(Attempt::Fatal)?;
            }
            st.meta.etag = etag;
            if let Some(len) = resp.content_length() {
                if len != f.size {
                    return Err(Attempt::Fatal(format!(
                        "{} is {len} bytes, the manifest says {}",
                        f.url, f.size
                    )));
                }
            }
        }
        416 => {
            st.restart(f).map_err(Attempt::Fatal)?;
            return Err(Attempt::Retry(format!("{} refused the range", f.url)));
        }
        s if (500..600).contains(&s) || s == 429 => {
            return Err(Attempt::Retry(format!("{} answered {s}", f.url)))
        }
        s => return Err(Attempt::Fatal(format!("{} answered {s}", f.url))),
    }
    Ok(Some(resp))
}

fn copy_local(f: &Fetch, st: &mut State) -> Result<(), Attempt> {
    let path = f.url.strip_prefix("file://").unwrap_or(&f.url);
    let mut src = std::fs::File::open(path)
        .map_err(|e| Attempt::Fatal(format!("cannot open {path}: {e}")))?;
    let len = src.metadata().map(|m| m.len()).unwrap_or(0);
    if len != f.size {
        return Err(Attempt::Fatal(format!(
            "{path} is {len} bytes, the manifest says {}",
            f.size
        )));
    }
    src.seek(SeekFrom::Start(st.written))
        .map_err(|e| Attempt::Fatal(e.to_string()))?;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = src
            .read(&mut buf)
            .map_err(|e| Attempt::Fatal(format!("{path}: {e}")))?;
        if n == 0 {
            break;
        }
        st.push(f, &buf[..n])?;
    }
    st.checkpoint(f).map_err(Attempt::Fatal)
}

/// Redirects molt follows: at most five, and never from https to anything else (a
/// man-in-the-middle must not be able to move a fetch off TLS).
pub fn redirects() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        match redirect_refusal(attempt.previous(), attempt.url()) {
            Some(why) => attempt.error(why),
            None => attempt.follow(),
        }
    })
}

/// Why molt does not follow a redirect to `next` after `previous` (the first request and
/// every redirect so far), or `None` when it does.
pub fn redirect_refusal(previous: &[reqwest::Url], next: &reqwest::Url) -> Option<String> {
    let once_tls = previous.iter().any(|u| u.scheme() == "https");
    if once_tls && next.scheme() != "https" {
        Some(format!("refusing a redirect from https to {next}"))
    } else if previous.len() > 5 {
        Some("more than 5 redirects".into())
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirects_never_leave_tls_and_stop_after_five() {
        let u = |s: &str| reqwest::Url::parse(s).unwrap();
        let refuse = |prev: &[&str], next: &str| {
            let prev: Vec<reqwest::Url> = prev.iter().map(|p| u(p)).collect();
            redirect_refusal(&prev, &u(next))
        };
        assert_eq!(refuse(&["http://a/m"], "https://b/m"), None);
        assert_eq!(refuse(&["https://a/m"], "https://b/m"), None);
        for chain in [
            &["https://a/m"][..],
            &["http://a/m", "https://b/m"],
            &["https://a/m", "https://b/m"],
        ] {
            let e = refuse(chain, "http://c/m").expect("refused");
            assert!(e.contains("from https to http://c/m"), "{e}");
        }
        // Once on TLS, never off it, even two hops later.
        assert!(refuse(&["https://a/m", "https://b/m"], "ftp://c/m").is_some());
        let five = [
            "http://a/1",
            "http://a/2",
            "http://a/3",
            "http://a/4",
            "http://a/5",
        ];
        assert_eq!(refuse(&five, "http://a/6"), None);
        let six = [
            "http://a/0",
            "http://a/1",
            "http://a/2",
            "http://a/3",
            "http://a/4",
            "http://a/5",
        ];
        assert_eq!(
            refuse(&six, "http://a/7").as_deref(),
            Some("more than 5 redirects")
        );
    }
}
