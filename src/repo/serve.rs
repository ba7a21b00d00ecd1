//! A read-only static HTTP server for a published repository, enough for
//! apt on a board of the local network: GET and HEAD of regular files under
//! one directory. What it guarantees against a hostile client or a planted
//! link:
//!
//! - a file is found by walking the request's path from a descriptor of the
//!   published directory, one component at a time, never following a
//!   symlink (zchroot publishes none) and never `..`; only a regular file
//!   is served;
//! - the request line and headers are capped ([`ServeOptions::max_head`],
//!   8 KiB): more is answered 431 and the connection closed;
//! - the whole head must arrive within [`ServeOptions::read_timeout`] of
//!   the connection's accept (time waiting in the queue counts), and each
//!   write must progress within [`ServeOptions::write_timeout`];
//! - the whole response must be sent within its deadline: the larger of
//!   [`ServeOptions::min_time`] (60 s) and its size at
//!   [`ServeOptions::min_rate`] (64 KiB/s), counted from the end of the
//!   request's head; a client that reads slower is cut (reset), so a few
//!   clients reading a byte now and then cannot hold the workers;
//! - one peer holds at most [`ServeOptions::per_peer`] connections (4 of
//!   the 16 workers), queued or served: a connection over that is answered
//!   503 and closed. A peer is an IPv4 address, or the /64 of an IPv6 one
//!   (a host has a whole /64 to pick addresses from);
//! - a fixed pool of worker threads serves connections; a bounded queue
//!   holds the ones waiting, and a connection that finds the queue full is
//!   answered 503 and closed;
//! - files are streamed, never read whole.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv6Addr, TcpListener, TcpStream};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::fcntl::OFlag;
use nix::sys::stat::Mode;

/// Limits of the server.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Threads serving connections.
    pub workers: usize,
    /// Accepted connections waiting for a worker.
    pub queue: usize,
    /// Request line and headers together, in bytes.
    pub max_head: usize,
    /// Time for the whole request head to arrive.
    pub read_timeout: Duration,
    /// Time each write of the response may block.
    pub write_timeout: Duration,
    /// Connections one peer may have queued or served at once.
    pub per_peer: usize,
    /// The slowest a response may be sent, in bytes per second: a
    /// response gets `size / min_rate` to be sent, or [`Self::min_time`]
    /// if that is longer.
    pub min_rate: u64,
    /// The time every response gets, however small.
    pub min_time: Duration,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            workers: 16,
            queue: 64,
            max_head: 8 * 1024,
            read_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(30),
            per_peer: 4,
            min_rate: 64 * 1024,
            min_time: Duration::from_secs(60),
        }
    }
}

impl ServeOptions {
    /// The time to send a response of `len` bytes: `len` at
    /// [`Self::min_rate`], at least [`Self::min_time`].
    pub fn response_time(&self, len: u64) -> Duration {
        let at_rate = Duration::from_secs_f64(len as f64 / self.min_rate.max(1) as f64);
        at_rate.max(self.min_time)
    }
}

/// Who a connection counts against for [`ServeOptions::per_peer`]: the
/// IPv4 address (an IPv4-mapped IPv6 one as IPv4), or the /64 of an IPv6
/// address.
pub fn peer_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
        v4 => v4,
    }
}

/// Connections of each peer, queued or served.
#[derive(Debug, Default)]
struct Peers(Mutex<HashMap<IpAddr, usize>>);

impl Peers {
    /// Counts a connection of `peer`, unless it has `cap` already.
    fn admit(self: &Arc<Self>, peer: IpAddr, cap: usize) -> Option<PeerSlot> {
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let n = m.entry(peer).or_insert(0);
        if *n >= cap.max(1) {
            return None;
        }
        *n += 1;
        Some(PeerSlot {
            peers: self.clone(),
            peer,
        })
    }
}

/// One counted connection; uncounted when dropped.
struct PeerSlot {
    peers: Arc<Peers>,
    peer: IpAddr,
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        let mut m = self.peers.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = m.get_mut(&self.peer) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.peer);
            }
        }
    }
}

/// `%XX` escapes decoded (apt writes `+` as `%2b`), or None for a bad
/// escape or a decoded NUL.
pub fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    (!out.contains(&0)).then_some(())?;
    String::from_utf8(out).ok()
}

/// The path a request names, relative to the published directory, as plain
/// components; None when it would leave the directory, is not absolute or
/// names the directory itself.
pub fn request_path(url_path: &str) -> Option<PathBuf> {
    let path = url_path.split(['?', '#']).next().unwrap_or("");
    let path = percent_decode(path)?;
    let path = path.strip_prefix('/')?;
    let mut out = PathBuf::new();
    for c in Path::new(path).components() {
        match c {
            Component::Normal(n) => out.push(n),
            _ => return None,
        }
    }
    (!out.as_os_str().is_empty()).then_some(out)
}

/// Opens `rel` under `dir` without following any symlink; the file if it is
/// a regular file, with its size.
fn open_beneath(dir: &OwnedFd, rel: &Path) -> Option<(File, u64)> {
    let comps: Vec<_> = rel.components().collect();
    let (last, parents) = comps.split_last()?;
    let mut cur: Option<OwnedFd> = None;
    for c in parents {
        let Component::Normal(n) = c else { return None };
        let at = cur.as_ref().unwrap_or(dir);
        let next = nix::fcntl::openat(
            at.as_fd(),
            *n,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .ok()?;
        cur = Some(next);
    }
    let Component::Normal(n) = last else {
        return None;
    };
    let at = cur.as_ref().unwrap_or(dir);
    // O_NONBLOCK: opening a FIFO must not wait for a writer.
    let fd = nix::fcntl::openat(
        at.as_fd(),
        *n,
        OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .ok()?;
    let f = File::from(fd);
    let m = f.metadata().ok()?;
    m.is_file().then_some((f, m.len()))
}

/// What came of reading a request's head.
#[derive(Debug, PartialEq, Eq)]
enum Head {
    /// The request line.
    Request(String),
    TooLarge,
    /// Timed out, closed or unreadable: nothing to answer.
    Gone,
}

/// Reads the request line and headers, at most `max` bytes, all of it
/// before `deadline`.
fn read_head(s: &mut TcpStream, max: usize, deadline: Instant) -> Head {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let end = buf
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .or_else(|| buf.windows(2).position(|w| w == b"\n\n"));
        if let Some(end) = end {
            let head = String::from_utf8_lossy(&buf[..end]);
            return Head::Request(head.lines().next().unwrap_or("").to_string());
        }
        if buf.len() >= max {
            return Head::TooLarge;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || s.set_read_timeout(Some(left)).is_err() {
            return Head::Gone;
        }
        let want = chunk.len().min(max - buf.len());
        match s.read(&mut chunk[..want]) {
            Ok(0) | Err(_) => return Head::Gone,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

fn status(s: &mut TcpStream, line: &str) -> std::io::Result<()> {
    write!(
        s,
        "HTTP/1.1 {line}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
}

/// Answers one request on `s`, accepted at `accepted`.
fn respond(
    mut s: TcpStream,
    accepted: Instant,
    dir: &OwnedFd,
    opts: &ServeOptions,
) -> std::io::Result<()> {
    s.set_write_timeout(Some(opts.write_timeout))?;
    let deadline = accepted + opts.read_timeout;
    let line = match read_head(&mut s, opts.max_head, deadline) {
        Head::Request(l) => l,
        Head::TooLarge => return status(&mut s, "431 Request Header Fields Too Large"),
        Head::Gone => return Ok(()),
    };
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let head = method == "HEAD";
    if method != "GET" && !head {
        return status(&mut s, "405 Method Not Allowed");
    }
    let Some((file, len)) = request_path(target).and_then(|p| open_beneath(dir, &p)) else {
        return status(&mut s, "404 Not Found");
    };
    let header = format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {len}\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n"
    );
    let body = if head { 0 } else { len };
    let mut out = Deadline {
        s: &mut s,
        by: Instant::now() + opts.response_time(header.len() as u64 + body),
        each: opts.write_timeout,
    };
    let sent = out.write_all(header.as_bytes()).and_then(|()| {
        // Exactly the announced length, even if the file grows meanwhile.
        std::io::copy(&mut file.take(body), &mut out).map(drop)
    });
    if sent.is_err() {
        // Cut: a reset drops what the kernel still holds for this client,
        // rather than trickle it out after the worker has moved on.
        let _ = socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO));
    }
    sent
}

/// A stream whose writes must all be done `by` an instant, each write
/// blocking at most `each`: past it, a write fails with `TimedOut`.
struct Deadline<'a> {
    s: &'a mut TcpStream,
    by: Instant,
    each: Duration,
}

impl Write for Deadline<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let left = self.by.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the response's deadline passed",
            ));
        }
        self.s.set_write_timeout(Some(left.min(self.each)))?;
        self.s.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.s.flush()
    }
}

type Queue = Arc<Mutex<Receiver<(TcpStream, Instant, PeerSlot)>>>;

fn worker(rx: Queue, dir: Arc<OwnedFd>, opts: ServeOptions) {
    loop {
        let conn = match rx.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return,
        };
        let Ok((conn, accepted, _slot)) = conn else {
            return;
        };
        let _ = respond(conn, accepted, &dir, &opts);
    }
}

/// Serves `dir` on `listener` until the process ends; returns only when
/// `dir` cannot be opened or a worker cannot be started.
pub fn serve(
    listener: TcpListener,
    dir: &Path,
    opts: ServeOptions,
) -> std::io::Result<std::convert::Infallible> {
    let dir: OwnedFd = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open(dir)?
        .into();
    let dir = Arc::new(dir);
    // The read deadline runs from the accept, so connections that wait in
    // the queue without sending anything expire together, not one worker
    // round after another.
    let (tx, rx) = sync_channel::<(TcpStream, Instant, PeerSlot)>(opts.queue);
    let rx = Arc::new(Mutex::new(rx));
    for i in 0..opts.workers.max(1) {
        let (rx, dir, opts) = (rx.clone(), dir.clone(), opts.clone());
        std::thread::Builder::new()
            .name(format!("serve-{i}"))
            .spawn(move || worker(rx, dir, opts))?;
    }
    let peers = Arc::new(Peers::default());
    loop {
        let Ok((mut conn, from)) = listener.accept() else {
            // E.g. EMFILE: wait a little instead of spinning.
            std::thread::sleep(Duration::from_millis(50));
            continue;
        };
        let Some(slot) = peers.admit(peer_key(from.ip()), opts.per_peer) else {
            // This peer has its share: say so without waiting for it.
            let _ = conn.set_nonblocking(true);
            let _ = status(&mut conn, "503 Service Unavailable");
            continue;
        };
        match tx.try_send((conn, Instant::now(), slot)) {
            Ok(()) => {}
            Err(TrySendError::Full((mut conn, _, _))) => {
                // Busy: say so without waiting for the client.
                let _ = conn.set_nonblocking(true);
                let _ = status(&mut conn, "503 Service Unavailable");
            }
            Err(TrySendError::Disconnected(_)) => {
                return Err(std::io::Error::other("the server's workers ended"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_stay_inside_the_directory() {
        assert_eq!(
            request_path("/dists/trixie/InRelease"),
            Some(PathBuf::from("dists/trixie/InRelease"))
        );
        assert_eq!(
            request_path("/pool/a.deb?x=1"),
            Some(PathBuf::from("pool/a.deb"))
        );
        assert_eq!(request_path("/../etc/passwd"), None);
        assert_eq!(request_path("/dists/../../x"), None);
        assert_eq!(request_path("relative"), None);
        assert_eq!(request_path("/"), None);
        assert_eq!(
            request_path("/pool/main/m-6.12.1%2bdeb13_0.1_arm64.deb"),
            Some(PathBuf::from("pool/main/m-6.12.1+deb13_0.1_arm64.deb"))
        );
        assert_eq!(request_path("/%2e%2e/etc/passwd"), None, "escaped dots too");
        assert_eq!(request_path("/a%00b"), None);
        assert_eq!(request_path("/a%zz"), None);
    }

    #[test]
    fn a_response_gets_its_size_at_the_minimum_rate_or_the_minimum_time() {
        let o = ServeOptions::default();
        assert_eq!(o.response_time(0), Duration::from_secs(60));
        assert_eq!(o.response_time(64 << 10), Duration::from_secs(60));
        // 100 MiB at 64 KiB/s.
        assert_eq!(o.response_time(100 << 20), Duration::from_secs(1600));
    }

    #[test]
    fn a_peer_is_an_ipv4_address_or_an_ipv6_64() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(peer_key(ip("192.0.2.7")), ip("192.0.2.7"));
        assert_eq!(peer_key(ip("::ffff:192.0.2.7")), ip("192.0.2.7"));
        assert_eq!(peer_key(ip("2001:db8:1:2:a:b:c:d")), ip("2001:db8:1:2::"));
        assert_eq!(
            peer_key(ip("2001:db8:1:2::1")),
            peer_key(ip("2001:db8:1:2:ffff::9"))
        );
        assert_ne!(
            peer_key(ip("2001:db8:1:2::1")),
            peer_key(ip("2001:db8:1:3::1"))
        );
    }

    #[test]
    fn a_peer_over_its_share_is_not_admitted_until_one_ends() {
        let peers = Arc::new(Peers::default());
        let (a, b) = ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
        let one = peers.admit(a, 2).unwrap();
        let _two = peers.admit(a, 2).unwrap();
        assert!(peers.admit(a, 2).is_none());
        let _other = peers.admit(b, 2).unwrap();
        drop(one);
        assert!(peers.admit(a, 2).is_some());
    }

    #[test]
    fn a_head_is_capped() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (mut s, _) = l.accept().unwrap();
        c.write_all(b"GET /x HTTP/1.1\r\nHost: y\r\n\r\n").unwrap();
        assert_eq!(
            read_head(&mut s, 8192, Instant::now() + Duration::from_secs(5)),
            Head::Request("GET /x HTTP/1.1".into())
        );
        let mut c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (mut s, _) = l.accept().unwrap();
        c.write_all(&[b'a'; 10000]).unwrap();
        assert_eq!(
            read_head(&mut s, 8192, Instant::now() + Duration::from_secs(5)),
            Head::TooLarge
        );
        let _c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (mut s, _) = l.accept().unwrap();
        let t = Instant::now();
        assert_eq!(
            read_head(&mut s, 8192, Instant::now() + Duration::from_millis(200)),
            Head::Gone
        );
        assert!(t.elapsed() < Duration::from_secs(2));
    }

    #[test]
    fn files_are_served_and_others_are_not_found() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("Release"), "Suite: trixie\n").unwrap();
        std::fs::create_dir(d.path().join("sub")).unwrap();
        std::os::unix::fs::symlink("../Release", d.path().join("sub/link")).unwrap();
        std::os::unix::fs::symlink(".", d.path().join("here")).unwrap();
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let dir = d.path().to_owned();
        std::thread::spawn(move || serve(l, &dir, ServeOptions::default()));
        let get = |path: &str| {
            let mut s = TcpStream::connect(addr).unwrap();
            write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
            let mut out = String::new();
            std::io::Read::read_to_string(&mut s, &mut out).unwrap();
            out
        };
        let ok = get("/Release");
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
        assert!(ok.ends_with("\r\n\r\nSuite: trixie\n"), "{ok}");
        for p in [
            "/nope",
            "/../Release",
            "/sub",
            "/sub/link",
            "/here/Release",
            "/",
        ] {
            assert!(get(p).starts_with("HTTP/1.1 404"), "{p}");
        }
    }
}
