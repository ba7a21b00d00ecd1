//! A real HTTP/1.1 server on 127.0.0.1 serving a directory, with faults that
//! tests switch on per path: a connection dropped after N bytes (once or
//! every time), and a count of requests and Range requests per path. Over
//! TLS too, with a certificate a test makes ([`Server::start_tls`]).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

#[derive(Debug, Clone, Copy)]
pub enum Fault {
    /// Send the full Content-Length header, then only this many bytes, and
    /// close the connection; every time.
    Truncate(usize),
    /// The same, for the first request only.
    DropOnce(usize),
}

#[derive(Default)]
struct Shared {
    faults: HashMap<String, Fault>,
    requests: HashMap<String, usize>,
    ranges: HashMap<String, usize>,
}

pub struct Server {
    pub base: String,
    shared: Arc<Mutex<Shared>>,
    stop: Arc<AtomicBool>,
    port: u16,
}

impl Server {
    pub fn start(root: PathBuf) -> Server {
        Server::start_with(root, None)
    }

    /// The same over TLS with `tls`'s certificate, at `https://localhost:PORT`.
    pub fn start_tls(root: PathBuf, tls: Arc<rustls::ServerConfig>) -> Server {
        Server::start_with(root, Some(tls))
    }

    fn start_with(root: PathBuf, tls: Option<Arc<rustls::ServerConfig>>) -> Server {
        let scheme = if tls.is_some() { "https" } else { "http" };
        let host = if tls.is_some() {
            "localhost"
        } else {
            "127.0.0.1"
        };
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = listener.local_addr().unwrap().port();
        let shared = Arc::new(Mutex::new(Shared::default()));
        let stop = Arc::new(AtomicBool::new(false));
        {
            let (root, shared, stop) = (root.clone(), shared.clone(), stop.clone());
            thread::spawn(move || {
                for conn in listener.incoming() {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    let Ok(conn) = conn else { continue };
                    let (root, shared, tls) = (root.clone(), shared.clone(), tls.clone());
                    thread::spawn(move || {
                        let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
                        let _ = match tls {
                            None => serve(conn, &root, &shared),
                            Some(tls) => match rustls::ServerConnection::new(tls) {
                                Ok(c) => serve(rustls::StreamOwned::new(c, conn), &root, &shared),
                                Err(_) => Ok(()),
                            },
                        };
                    });
                }
            });
        }
        Server {
            base: format!("{scheme}://{host}:{port}"),
            shared,
            stop,
            port,
        }
    }

    pub fn fault(&self, path: &str, fault: Fault) {
        self.shared
            .lock()
            .unwrap()
            .faults
            .insert(path.trim_start_matches('/').to_string(), fault);
    }

    pub fn requests(&self, path: &str) -> usize {
        let s = self.shared.lock().unwrap();
        s.requests
            .get(path.trim_start_matches('/'))
            .copied()
            .unwrap_or(0)
    }

    pub fn range_requests(&self, path: &str) -> usize {
        let s = self.shared.lock().unwrap();
        s.ranges
            .get(path.trim_start_matches('/'))
            .copied()
            .unwrap_or(0)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// HTTP over a plain or TLS connection; the response is written through
/// the reader's stream (a request is read whole before it is answered).
fn serve(
    conn: impl Read + Write,
    root: &std::path::Path,
    shared: &Mutex<Shared>,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(conn);
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line)? == 0 {
            return Ok(());
        }
        let mut range_from: Option<usize> = None;
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h)? == 0 {
                return Ok(());
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                if k.eq_ignore_ascii_case("range") {
                    let v = v.trim();
                    range_from = v
                        .strip_prefix("bytes=")
                        .and_then(|r| r.strip_suffix('-'))
                        .and_then(|n| n.parse().ok());
                }
            }
        }
        let mut parts = request_line.split_whitespace();
        let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or("/"));
        let path = target.trim_start_matches('/').to_string();
        let fault = {
            let mut s = shared.lock().unwrap();
            *s.requests.entry(path.clone()).or_default() += 1;
            if range_from.is_some() {
                *s.ranges.entry(path.clone()).or_default() += 1;
            }
            match s.faults.get(&path).copied() {
                Some(Fault::DropOnce(n)) => {
                    s.faults.remove(&path);
                    Some(n)
                }
                Some(Fault::Truncate(n)) => Some(n),
                None => None,
            }
        };
        let file = if method == "GET" && !path.split('/').any(|c| c == "..") {
            std::fs::read(root.join(&path))
                .ok()
                .filter(|_| root.join(&path).is_file())
        } else {
            None
        };
        let Some(body) = file else {
            let msg = b"not found\n";
            write!(
                reader.get_mut(),
                "HTTP/1.1 404 Not Found\r\nContent-Length: {}\r\nConnection: keep-alive\r\n\r\n",
                msg.len()
            )?;
            reader.get_mut().write_all(msg)?;
            continue;
        };
        let (status, slice) = match range_from {
            Some(from) if from < body.len() => ("206 Partial Content", &body[from..]),
            _ => ("200 OK", &body[..]),
        };
        let mut head = format!(
            "HTTP/1.1 {status}\r\nContent-Length: {}\r\nAccept-Ranges: bytes\r\n",
            slice.len()
        );
        if let Some(from) = range_from.filter(|f| *f < body.len()) {
            head.push_str(&format!(
                "Content-Range: bytes {from}-{}/{}\r\n",
                body.len() - 1,
                body.len()
            ));
        }
        head.push_str("Connection: keep-alive\r\n\r\n");
        reader.get_mut().write_all(head.as_bytes())?;
        if let Some(n) = fault {
            reader.get_mut().write_all(&slice[..n.min(slice.len())])?;
            reader.get_mut().flush()?;
            // Drop the connection mid-body.
            return Ok(());
        }
        reader.get_mut().write_all(slice)?;
        reader.get_mut().flush()?;
    }
}
