//! A real HTTP/1.1 server on 127.0.0.1 for the download tests, which can also misbehave: cut
//! the connection at byte N, stall, ignore `Range`, answer an error status, send more bytes
//! than the file has, or start serving different bytes (with a new ETag) after the first
//! request. Every request is recorded (method, path, range headers, body) so tests can check
//! what the client asked for or posted.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Clone, PartialEq, Eq)]
pub enum Fault {
    None,
    /// Close the connection after sending this many body bytes (every time).
    CutAt(u64),
    /// Close after this many body bytes on the first request only.
    CutOnceAt(u64),
    /// Stop sending after this many body bytes, for this long, on the first request only.
    StallOnceAt(u64, Duration),
    /// Ignore `Range`: always 200 with the whole file.
    NoRange,
    /// Always answer this status.
    Status(u16),
    /// Cut the first response half-way, then serve these bytes instead (with a new ETag).
    ChangeAfterFirst(Vec<u8>),
    /// Send this many extra bytes after the file, with a matching Content-Length.
    Longer(usize),
    /// 200 without a length, then bytes for as long as the client reads.
    Endless,
    /// The file with its length, one byte per interval (a slow-drip server).
    Drip(Duration),
    /// 302 to this URL.
    Redirect(String),
}

impl std::fmt::Debug for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fault::None => write!(f, "None"),
            Fault::CutAt(n) => write!(f, "CutAt({n})"),
            Fault::CutOnceAt(n) => write!(f, "CutOnceAt({n})"),
            Fault::StallOnceAt(n, d) => write!(f, "StallOnceAt({n}, {d:?})"),
            Fault::NoRange => write!(f, "NoRange"),
            Fault::Status(s) => write!(f, "Status({s})"),
            Fault::ChangeAfterFirst(b) => write!(f, "ChangeAfterFirst({} bytes)", b.len()),
            Fault::Longer(n) => write!(f, "Longer({n})"),
            Fault::Endless => write!(f, "Endless"),
            Fault::Drip(d) => write!(f, "Drip({d:?})"),
            Fault::Redirect(to) => write!(f, "Redirect({to})"),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Logged {
    pub method: String,
    pub path: String,
    /// The request body (a webhook's POST), read by its Content-Length.
    pub body: Vec<u8>,
    pub range: Option<String>,
    pub if_range: Option<String>,
}

struct File {
    bytes: Vec<u8>,
    fault: Fault,
    served: u32,
}

#[derive(Clone)]
pub struct Server {
    pub base: String,
    files: Arc<Mutex<HashMap<String, File>>>,
    log: Arc<Mutex<Vec<Logged>>>,
}

impl Server {
    pub fn start() -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let s = Server {
            base,
            files: Arc::default(),
            log: Arc::default(),
        };
        let me = s.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let me = me.clone();
                std::thread::spawn(move || {
                    let _ = me.serve(conn);
                });
            }
        });
        s
    }

    pub fn put(&self, path: &str, bytes: Vec<u8>, fault: Fault) {
        self.files.lock().unwrap().insert(
            path.to_string(),
            File {
                bytes,
                fault,
                served: 0,
            },
        );
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn log(&self) -> Vec<Logged> {
        self.log.lock().unwrap().clone()
    }

    fn serve(&self, mut conn: TcpStream) -> std::io::Result<()> {
        let mut reader = BufReader::new(conn.try_clone()?);
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line)? == 0 {
                return Ok(());
            }
            let method = line.split_whitespace().next().unwrap_or("GET").to_string();
            let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
            let mut headers = HashMap::new();
            loop {
                let mut h = String::new();
                reader.read_line(&mut h)?;
                let h = h.trim_end();
                if h.is_empty() {
                    break;
                }
                if let Some((k, v)) = h.split_once(':') {
                    headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
                }
            }
            let range = headers.get("range").cloned();
            let if_range = headers.get("if-range").cloned();
            let length: usize = headers
                .get("content-length")
                .and_then(|l| l.parse().ok())
                .unwrap_or(0);
            let mut body = vec![0u8; length.min(16 << 20)];
            std::io::Read::read_exact(&mut reader, &mut body)?;
            self.log.lock().unwrap().push(Logged {
                method,
                body,
                path: path.clone(),
                range: range.clone(),
                if_range: if_range.clone(),
            });
            let (bytes, fault, nth) = {
                let mut files = self.files.lock().unwrap();
                let Some(f) = files.get_mut(&path) else {
                    write!(conn, "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")?;
                    continue;
                };
                f.served += 1;
                let bytes = match (&f.fault, f.served) {
                    (Fault::ChangeAfterFirst(new), n) if n > 1 => new.clone(),
                    _ => f.bytes.clone(),
                };
                (bytes, f.fault.clone(), f.served)
            };
            match &fault {
                Fault::Status(code) => {
                    write!(conn, "HTTP/1.1 {code} Oops\r\nContent-Length: 0\r\n\r\n")?;
                    continue;
                }
                Fault::Redirect(to) => {
                    write!(
                        conn,
                        "HTTP/1.1 302 Found\r\nLocation: {to}\r\nContent-Length: 0\r\n\r\n"
                    )?;
                    continue;
                }
                Fault::Endless => {
                    write!(conn, "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n")?;
                    let chunk = vec![b'{'; 64 * 1024];
                    loop {
                        conn.write_all(&chunk)?; // ends when the client hangs up
                    }
                }
                Fault::Drip(every) => {
                    write!(
                        conn,
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
                        bytes.len()
                    )?;
                    for b in &bytes {
                        conn.write_all(&[*b])?;
                        conn.flush()?;
                        std::thread::sleep(*every);
                    }
                    continue;
                }
                _ => {}
            }
            let etag = format!(
                "\"{:x}-{}\"",
                bytes.len(),
                bytes.iter().map(|b| *b as u64).sum::<u64>()
            );
            let mut start = 0u64;
            let mut partial = false;
            if let Some(r) = range.as_deref().and_then(|r| r.strip_prefix("bytes=")) {
                let honour =
                    fault != Fault::NoRange && if_range.as_deref().is_none_or(|t| t == etag);
                if honour {
                    start = r.trim_end_matches('-').parse().unwrap_or(0);
                    partial = true;
                }
            }
            let len = bytes.len() as u64;
            let extra = match fault {
                Fault::Longer(n) => n,
                _ => 0,
            };
            let body: Vec<u8> = bytes[start.min(len) as usize..]
                .iter()
                .copied()
                .chain(std::iter::repeat_n(b'X', extra))
                .collect();
            if partial {
                write!(
                    conn,
                    "HTTP/1.1 206 Partial Content\r\nETag: {etag}\r\nContent-Range: bytes {start}-{}/{len}\r\nContent-Length: {}\r\n\r\n",
                    len.saturating_sub(1),
                    body.len()
                )?;
            } else {
                write!(
                    conn,
                    "HTTP/1.1 200 OK\r\nETag: {etag}\r\nAccept-Ranges: bytes\r\nContent-Length: {}\r\n\r\n",
                    body.len()
                )?;
            }
            let (cut, stall) = match fault {
                Fault::CutAt(n) => (Some(n), None),
                Fault::CutOnceAt(n) if nth == 1 => (Some(n), None),
                Fault::ChangeAfterFirst(_) if nth == 1 => (Some(len / 2), None),
                Fault::StallOnceAt(n, d) if nth == 1 => (None, Some((n, d))),
                _ => (None, None),
            };
            let mut sent = 0u64;
            for chunk in body.chunks(64 * 1024) {
                let mut chunk = chunk;
                if let Some(n) = cut {
                    if sent + chunk.len() as u64 > n.saturating_sub(start) {
                        let keep = n.saturating_sub(start).saturating_sub(sent) as usize;
                        conn.write_all(&chunk[..keep.min(chunk.len())])?;
                        conn.flush()?;
                        return Ok(()); // drop the connection mid-body
                    }
                }
                if let Some((n, d)) = stall {
                    if sent + chunk.len() as u64 > n {
                        let keep = n.saturating_sub(sent) as usize;
                        conn.write_all(&chunk[..keep.min(chunk.len())])?;
                        conn.flush()?;
                        std::thread::sleep(d);
                        chunk = &chunk[keep.min(chunk.len())..];
                    }
                }
                conn.write_all(chunk)?;
                sent += chunk.len() as u64;
            }
            conn.flush()?;
        }
    }
}
