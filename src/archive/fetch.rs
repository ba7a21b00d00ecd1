//! Downloads into a content-addressed cache: `blobs/<sha256>`, named only
//! from a parsed [`Sha256`]. A file is streamed into `<sha256>.partial`
//! (made with O_EXCL; resumed only when it is a regular file, never through
//! a symlink) while it is hashed, resumed with a Range request after a
//! dropped connection, and renamed to its final name only when its size and
//! hash match. A cached file is trusted only by its hash.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::net::ToSocketAddrs;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use sha2::Digest;

use super::hash::Sha256;

use crate::report::Reporter;

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("{url}: {message}")]
    Http { url: String, message: String },
    #[error("{url}: size mismatch: expected {expected} bytes, got {got}")]
    SizeMismatch {
        url: String,
        expected: u64,
        got: u64,
    },
    #[error("{url}: SHA256 mismatch: expected {expected}, got {calculated}")]
    ChecksumFailed {
        url: String,
        expected: Sha256,
        calculated: Sha256,
    },
    #[error("{url}: larger than the {limit} bytes allowed for it")]
    TooLarge { url: String, limit: u64 },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "cannot resolve host of {url}: {message}\nhelp: check the network and the --mirror address"
    )]
    Resolve { url: String, message: String },
    #[error("{url}: unsupported URL: {message}")]
    BadUrl { url: String, message: String },
}

impl FetchError {
    /// Worth another try: network trouble and server errors, not checksums.
    fn transient(&self) -> bool {
        matches!(self, FetchError::Http { .. })
    }
}

/// A file to download and what it must be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Download {
    pub url: String,
    /// Tried when `url` answers 4xx (apt falls back from by-hash paths the
    /// same way).
    pub alt_url: Option<String>,
    pub size: u64,
    pub sha256: Sha256,
    /// A short name for progress and errors (`libc6_2.41-12_arm64.deb`).
    pub name: String,
}

#[derive(Debug, Clone)]
pub struct FetchOptions {
    /// Connections at once.
    pub parallel: usize,
    /// Tries per file for transient errors.
    pub tries: u32,
    /// Pause before the second try; doubled each try.
    pub backoff: Duration,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
}

impl Default for FetchOptions {
    fn default() -> Self {
        FetchOptions {
            parallel: 4,
            tries: 4,
            backoff: Duration::from_millis(500),
            connect_timeout: Duration::from_secs(20),
            read_timeout: Duration::from_secs(60),
        }
    }
}

pub struct Fetcher<'r> {
    client: reqwest::blocking::Client,
    blobs: PathBuf,
    /// Where the last accepted InRelease dates are kept, if anywhere.
    release_dates: Option<super::dates::ReleaseDates>,
    opts: FetchOptions,
    reporter: &'r dyn Reporter,
}

/// The host and port of an http URL.
fn host_of(url: &str) -> Result<(String, u16), FetchError> {
    let bad = |message: &str| FetchError::BadUrl {
        url: url.into(),
        message: message.into(),
    };
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| bad("only http:// mirrors are supported (the archive is verified by its signature, so https adds nothing to integrity)"))?;
    let authority = rest.split('/').next().unwrap_or("");
    if authority.is_empty() || authority.contains('@') {
        return Err(bad("no host"));
    }
    if let Some(v6) = authority.strip_prefix('[') {
        let (host, after) = v6.split_once(']').ok_or_else(|| bad("bad IPv6 address"))?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().map_err(|_| bad("bad port"))?,
            None => 80,
        };
        return Ok((host.to_string(), port));
    }
    match authority.rsplit_once(':') {
        Some((h, p)) => Ok((h.to_string(), p.parse().map_err(|_| bad("bad port"))?)),
        None => Ok((authority.to_string(), 80)),
    }
}

impl<'r> Fetcher<'r> {
    /// A fetcher for these mirrors. Each mirror's host is resolved once here
    /// (with a few tries: this also rides out a dropped DNS answer) and
    /// pinned for the whole run.
    pub fn new(
        blobs: &Path,
        mirrors: &[String],
        opts: FetchOptions,
        reporter: &'r dyn Reporter,
    ) -> Result<Self, FetchError> {
        let mut builder = reqwest::blocking::Client::builder()
            .connect_timeout(opts.connect_timeout)
            // In the blocking client this bounds each read, not the whole body.
            .timeout(opts.read_timeout)
            .user_agent(concat!("zchroot/", env!("CARGO_PKG_VERSION")))
            .pool_max_idle_per_host(opts.parallel.max(1));
        let mut seen = HashMap::new();
        for mirror in mirrors {
            let (host, port) = host_of(mirror)?;
            if seen.contains_key(&host) || host.parse::<std::net::IpAddr>().is_ok() {
                continue;
            }
            let mut last = String::new();
            let mut addrs = Vec::new();
            for attempt in 0..3 {
                match (host.as_str(), port).to_socket_addrs() {
                    Ok(a) => {
                        addrs = a.collect();
                        break;
                    }
                    Err(e) => last = e.to_string(),
                }
                std::thread::sleep(Duration::from_millis(300 * (attempt + 1)));
            }
            if addrs.is_empty() {
                return Err(FetchError::Resolve {
                    url: mirror.clone(),
                    message: last,
                });
            }
            builder = builder.resolve_to_addrs(&host, &addrs);
            seen.insert(host, ());
        }
        let client = builder.build().map_err(|e| FetchError::Http {
            url: mirrors.join(", "),
            message: format!("building the HTTP client: {e}"),
        })?;
        crate::paths::create_private_dir_all(blobs).map_err(|source| FetchError::Io {
            path: blobs.into(),
            source,
        })?;
        Ok(Fetcher {
            client,
            blobs: blobs.to_owned(),
            release_dates: None,
            opts,
            reporter,
        })
    }

    /// Keeps the last accepted `Date` of each suite in `dir` between runs,
    /// and refuses an older InRelease (see [`super::dates`]).
    pub fn remember_release_dates(mut self, dir: &Path) -> Self {
        self.release_dates = Some(super::dates::ReleaseDates::new(dir));
        self
    }

    /// Where the last accepted dates are kept, when they are.
    pub fn release_dates(&self) -> Option<&super::dates::ReleaseDates> {
        self.release_dates.as_ref()
    }

    /// `blobs/<64 hex digits>`: a cache file is only ever named by a parsed hash.
    pub fn blob_path(&self, sha256: &Sha256) -> PathBuf {
        self.blobs.join(sha256.to_hex())
    }

    /// Fetches a small file whose hash is not known in advance (InRelease),
    /// with retries; at most `limit` bytes.
    pub fn get(&self, url: &str, limit: u64) -> Result<Vec<u8>, FetchError> {
        host_of(url)?;
        self.with_tries(url, || {
            let resp = self.send(url, None)?;
            let mut body = Vec::new();
            resp.take(limit + 1)
                .read_to_end(&mut body)
                .map_err(|e| http_err(url, e))?;
            if body.len() as u64 > limit {
                return Err(FetchError::TooLarge {
                    url: url.into(),
                    limit,
                });
            }
            Ok(body)
        })
    }

    fn with_tries<T>(
        &self,
        url: &str,
        mut f: impl FnMut() -> Result<T, FetchError>,
    ) -> Result<T, FetchError> {
        let mut delay = self.opts.backoff;
        let mut tries = 0;
        loop {
            tries += 1;
            match f() {
                Err(e) if e.transient() && tries < self.opts.tries => {
                    self.reporter
                        .note(&format!("retrying {url} after: {e} (try {tries})"));
                    std::thread::sleep(delay);
                    delay *= 2;
                }
                other => return other,
            }
        }
    }

    fn send(
        &self,
        url: &str,
        range_from: Option<u64>,
    ) -> Result<reqwest::blocking::Response, FetchError> {
        let mut req = self.client.get(url);
        if let Some(from) = range_from {
            req = req.header(reqwest::header::RANGE, format!("bytes={from}-"));
        }
        let resp = req.send().map_err(|e| http_err(url, e))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let message = format!("HTTP {status}");
        if status.is_server_error() || status.as_u16() == 408 || status.as_u16() == 429 {
            Err(FetchError::Http {
                url: url.into(),
                message,
            })
        } else {
            // 404 and friends will not change on a retry.
            Err(FetchError::BadUrl {
                url: url.into(),
                message,
            })
        }
    }

    /// Ensures the file is in the cache with the right size and hash, and
    /// returns its path. A file already there is re-hashed before use.
    pub fn fetch(&self, d: &Download) -> Result<PathBuf, FetchError> {
        let dest = self.blob_path(&d.sha256);
        // Another zchroot (or thread) may fetch the same file: one at a time
        // per file, through a lock striped by the hash's first byte.
        let _lock = self.lock(&d.sha256)?;
        if dest.exists() {
            match check_file(&dest, d) {
                Ok(()) => {
                    self.reporter.bytes(d.size);
                    self.reporter.note(&format!("cached {}", d.name));
                    return Ok(dest);
                }
                Err(_) => {
                    // A damaged cache entry is dropped and fetched again.
                    let _ = fs::remove_file(&dest);
                }
            }
        }
        let partial = self.blobs.join(format!("{}.partial", d.sha256.to_hex()));
        let mut result = self.with_tries(&d.url, || self.fetch_once(&d.url, d, &partial));
        if let (Err(FetchError::BadUrl { .. }), Some(alt)) = (&result, &d.alt_url) {
            self.reporter
                .note(&format!("{} not found, trying {alt}", d.url));
            result = self.with_tries(alt, || self.fetch_once(alt, d, &partial));
        }
        match result {
            Ok(()) => {
                fs::rename(&partial, &dest).map_err(|source| FetchError::Io {
                    path: dest.clone(),
                    source,
                })?;
                Ok(dest)
            }
            Err(e) => {
                // Keep a partial only while it may still be good (resumable).
                if !e.transient() {
                    let _ = fs::remove_file(&partial);
                }
                Err(e)
            }
        }
    }

    fn lock(&self, sha256: &Sha256) -> Result<nix::fcntl::Flock<File>, FetchError> {
        let dir = self.blobs.join("locks");
        let path = dir.join(format!("{:02x}.lock", sha256.as_bytes()[0]));
        let io = |source| FetchError::Io {
            path: path.clone(),
            source,
        };
        fs::create_dir_all(&dir).map_err(io)?;
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io)?;
        nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusive)
            .map_err(|(_, e)| io(std::io::Error::from(e)))
    }

    /// One try: resume `partial` if it exists, stream, hash, check.
    fn fetch_once(&self, url: &str, d: &Download, partial: &Path) -> Result<(), FetchError> {
        let io = |source| FetchError::Io {
            path: partial.into(),
            source,
        };
        let mut hasher = sha2::Sha256::new();
        let mut have = 0u64;
        // Only a regular file is resumed, never through a symlink; anything
        // else under that name is dropped and the file made anew (O_EXCL).
        let old = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(partial);
        if let Ok(mut f) = old {
            if f.metadata().map(|m| m.is_file()).unwrap_or(false) {
                have = hash_into(&mut f, &mut hasher).map_err(io)?;
                if have > d.size {
                    hasher = sha2::Sha256::new();
                    have = 0;
                }
            }
        }
        let resp = if have > 0 && have < d.size {
            let resp = self.send(url, Some(have))?;
            if resp.status().as_u16() != 206 {
                // The server ignored the range: start over.
                hasher = sha2::Sha256::new();
                have = 0;
            }
            Some(resp)
        } else if have == 0 {
            Some(self.send(url, None)?)
        } else {
            None // complete already; check below
        };
        if let Some(mut resp) = resp {
            let mut out = if have > 0 {
                OpenOptions::new()
                    .append(true)
                    .custom_flags(libc::O_NOFOLLOW)
                    .open(partial)
                    .map_err(io)?
            } else {
                match fs::remove_file(partial) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(e)),
                    _ => {}
                }
                OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(partial)
                    .map_err(io)?
            };
            self.reporter.bytes(have);
            let mut buf = vec![0u8; 256 * 1024];
            loop {
                let n = match resp.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) => {
                        out.flush().map_err(io)?;
                        return Err(http_err(url, e));
                    }
                };
                have += n as u64;
                if have > d.size {
                    return Err(FetchError::SizeMismatch {
                        url: url.to_string(),
                        expected: d.size,
                        got: have,
                    });
                }
                hasher.update(&buf[..n]);
                out.write_all(&buf[..n]).map_err(io)?;
                self.reporter.bytes(n as u64);
            }
            out.sync_all().map_err(io)?;
        }
        if have < d.size {
            // The connection ended early without an error: resumable.
            return Err(FetchError::Http {
                url: url.to_string(),
                message: format!("connection closed after {have} of {} bytes", d.size),
            });
        }
        let calculated = Sha256::from_hasher(hasher);
        if calculated != d.sha256 {
            return Err(FetchError::ChecksumFailed {
                url: url.to_string(),
                expected: d.sha256,
                calculated,
            });
        }
        Ok(())
    }

    /// Fetches all files, `parallel` at a time. On the first failure the
    /// others stop taking new work; the error names the file.
    pub fn fetch_all(&self, downloads: &[Download]) -> Result<Vec<PathBuf>, FetchError> {
        let next = AtomicUsize::new(0);
        let failed = AtomicBool::new(false);
        let results: Mutex<Vec<Option<PathBuf>>> = Mutex::new(vec![None; downloads.len()]);
        let first_error: Mutex<Option<FetchError>> = Mutex::new(None);
        std::thread::scope(|s| {
            for _ in 0..self.opts.parallel.max(1).min(downloads.len().max(1)) {
                s.spawn(|| loop {
                    if failed.load(Ordering::Relaxed) {
                        return;
                    }
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(d) = downloads.get(i) else { return };
                    match self.fetch(d) {
                        Ok(p) => {
                            results.lock().unwrap()[i] = Some(p);
                            self.reporter.item_done(&d.name);
                        }
                        Err(e) => {
                            failed.store(true, Ordering::Relaxed);
                            first_error.lock().unwrap().get_or_insert(e);
                            return;
                        }
                    }
                });
            }
        });
        if let Some(e) = first_error.into_inner().unwrap() {
            return Err(e);
        }
        Ok(results
            .into_inner()
            .unwrap()
            .into_iter()
            .map(|p| p.expect("every download finished"))
            .collect())
    }
}

fn http_err(url: &str, e: impl std::fmt::Display + std::any::Any) -> FetchError {
    // reqwest's Display hides the cause; walk the chain when we can.
    let any: &dyn std::any::Any = &e;
    let message = if let Some(re) = any.downcast_ref::<reqwest::Error>() {
        let mut m = re.to_string();
        let mut src = std::error::Error::source(re);
        while let Some(s) = src {
            m.push_str(": ");
            m.push_str(&s.to_string());
            src = s.source();
        }
        m
    } else {
        e.to_string()
    };
    FetchError::Http {
        url: url.into(),
        message,
    }
}

fn hash_into(f: &mut File, hasher: &mut sha2::Sha256) -> std::io::Result<u64> {
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            return Ok(total);
        }
        hasher.update(&buf[..n]);
        total += n as u64;
    }
}

/// Checks a file's size and SHA256.
pub fn check_file(path: &Path, d: &Download) -> Result<(), FetchError> {
    let io = |source| FetchError::Io {
        path: path.into(),
        source,
    };
    let mut f = File::open(path).map_err(io)?;
    let mut hasher = sha2::Sha256::new();
    let got = hash_into(&mut f, &mut hasher).map_err(io)?;
    if got != d.size {
        return Err(FetchError::SizeMismatch {
            url: path.display().to_string(),
            expected: d.size,
            got,
        });
    }
    let calculated = Sha256::from_hasher(hasher);
    if calculated != d.sha256 {
        return Err(FetchError::ChecksumFailed {
            url: path.display().to_string(),
            expected: d.sha256,
            calculated,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_and_port_from_urls() {
        assert_eq!(
            host_of("http://deb.debian.org/debian").unwrap(),
            ("deb.debian.org".into(), 80)
        );
        assert_eq!(
            host_of("http://127.0.0.1:8080/x").unwrap(),
            ("127.0.0.1".into(), 8080)
        );
        assert_eq!(host_of("http://[::1]:81/x").unwrap(), ("::1".into(), 81));
        let e = host_of("https://deb.debian.org/debian")
            .unwrap_err()
            .to_string();
        assert!(e.contains("only http:// mirrors"), "{e}");
        assert!(host_of("ftp://x").is_err());
    }
}
