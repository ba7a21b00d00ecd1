//! Downloads into a content-addressed cache: `blobs/<sha256>`, named only
//! from a parsed [`Sha256`]. A file is streamed into `<sha256>.partial`
//! (made with O_EXCL; resumed only when it is a regular file, never through
//! a symlink) while it is hashed, resumed with a Range request after a
//! dropped connection, and renamed to its final name only when its size and
//! hash match. A cached file is trusted only by its hash.
//!
//! Mirrors are `http://` or `https://` (rustls, trusting the system's CA
//! store); the archive is verified by its signature and hashes either way.
//! A proxy (the environment's, or `proxy` of the config file) resolves the
//! mirror's name itself, and every error through it names it.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use sha2::Digest;

use super::hash::Sha256;

use crate::report::Reporter;

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error(transparent)]
    Interrupted(#[from] crate::interrupt::Interrupted),
    #[error("{url}: {message}{}", via_text(via))]
    Http {
        url: String,
        message: String,
        /// The proxy the request went through, if any.
        via: Option<String>,
    },
    #[error("{what} is not on the mirror: {url} answered {status}{}\nhelp: check the mirror's address (--mirror, --security-mirror or the config file) and that it carries this suite and architecture; a mirror in the middle of an update can lack a file for a while: try again later", via_text(via))]
    NotFound {
        /// What is missing, said as a Debian user would (`suite 'trixie'`,
        /// `trixie-updates main/binary-arm64/Packages.xz`, a .deb).
        what: String,
        url: String,
        status: String,
        via: Option<String>,
    },
    #[error("{url}: TLS: {message}\nhelp: the mirror's certificate is not trusted by the system's CA store (/etc/ssl/certs; SSL_CERT_FILE or SSL_CERT_DIR name others): add its CA there, or use an http:// mirror (the archive is verified by its signature either way)")]
    Tls { url: String, message: String },
    #[error("{name}: size mismatch: expected {expected} bytes, got {got} (from {url})")]
    SizeMismatch {
        name: String,
        url: String,
        expected: u64,
        got: u64,
    },
    #[error("{name}: SHA256 mismatch: expected {expected}, got {calculated} (from {url})\nhelp: the mirror sent a damaged or changed file; try again, or use another mirror")]
    ChecksumFailed {
        name: String,
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
        "cannot resolve host of {url}: {message}\nhelp: check the network and the mirror's address; on a network reached only through a proxy, set http_proxy/https_proxy (or `proxy` in the config file): the proxy then resolves names"
    )]
    Resolve { url: String, message: String },
    #[error("{url}: unsupported URL: {message}")]
    BadUrl { url: String, message: String },
}

/// ` (through the proxy P)` and what to check, when a proxy was used.
fn via_text(via: &Option<String>) -> String {
    match via {
        Some(p) => format!(
            " (through the proxy {p})\nhelp: check that the proxy {p} is up and reaches the mirror; it comes from http_proxy/https_proxy/all_proxy (no_proxy exempts hosts) or from `proxy` in the config file"
        ),
        None => String::new(),
    }
}

impl FetchError {
    /// Worth another try: network trouble and server errors, not checksums.
    fn transient(&self) -> bool {
        matches!(self, FetchError::Http { .. })
    }

    /// The error without its URL and help (for a line that names the URL).
    fn brief(&self) -> String {
        match self {
            FetchError::Http {
                message,
                via: Some(p),
                ..
            } => format!("{message} (through the proxy {p})"),
            FetchError::Http { message, .. } => message.clone(),
            e => e.to_string(),
        }
    }

    /// Says what a missing file is (the fetcher knows only its URL).
    pub fn missing_is(self, what: &str) -> Self {
        match self {
            FetchError::NotFound {
                url, status, via, ..
            } => FetchError::NotFound {
                what: what.into(),
                url,
                status,
                via,
            },
            e => e,
        }
    }
}

/// Checks a mirror URL before anything is fetched: `http://` or
/// `https://` with a host; other schemes are refused saying what to use.
/// The error is the reason alone (the caller names the option or key).
pub fn check_mirror(url: &str) -> Result<(), String> {
    match host_of(url) {
        Ok(_) => Ok(()),
        Err(FetchError::BadUrl { message, .. }) => Err(message),
        Err(e) => Err(e.to_string()),
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
    /// The config file's `proxy`, for URLs the environment's proxy
    /// variables leave out.
    pub proxy: Option<String>,
}

impl Default for FetchOptions {
    fn default() -> Self {
        FetchOptions {
            parallel: 4,
            tries: 4,
            backoff: Duration::from_millis(500),
            connect_timeout: Duration::from_secs(20),
            read_timeout: Duration::from_secs(60),
            proxy: None,
        }
    }
}

pub struct Fetcher<'r> {
    client: reqwest::blocking::Client,
    blobs: PathBuf,
    /// Where the last accepted InRelease dates are kept, if anywhere.
    release_dates: Option<super::dates::ReleaseDates>,
    opts: FetchOptions,
    proxies: Arc<Proxies>,
    reporter: &'r dyn Reporter,
}

/// The host and port of an `http://` or `https://` URL.
fn host_of(url: &str) -> Result<(String, u16), FetchError> {
    let bad = |message: &str| FetchError::BadUrl {
        url: url.into(),
        message: message.into(),
    };
    let (rest, default_port) = if let Some(r) = url.strip_prefix("http://") {
        (r, 80)
    } else if let Some(r) = url.strip_prefix("https://") {
        (r, 443)
    } else {
        return Err(bad(unsupported_scheme(url)));
    };
    let authority = rest.split('/').next().unwrap_or("");
    if authority.is_empty() {
        return Err(bad("no host (e.g. http://deb.debian.org/debian)"));
    }
    if authority.contains('@') {
        return Err(bad(
            "a user name or password in a mirror URL is not supported",
        ));
    }
    if let Some(v6) = authority.strip_prefix('[') {
        let (host, after) = v6.split_once(']').ok_or_else(|| bad("bad IPv6 address"))?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().map_err(|_| bad("bad port"))?,
            None => default_port,
        };
        return Ok((host.to_string(), port));
    }
    match authority.rsplit_once(':') {
        Some((h, p)) => Ok((h.to_string(), p.parse().map_err(|_| bad("bad port"))?)),
        None => Ok((authority.to_string(), default_port)),
    }
}

/// Why a URL's scheme is refused, and what to use instead.
fn unsupported_scheme(url: &str) -> &'static str {
    let scheme = url.split_once("://").map(|(s, _)| s.to_ascii_lowercase());
    match scheme.as_deref() {
        Some("ftp") => "ftp:// is not supported (Debian's mirrors stopped serving FTP in 2017): use the mirror's http:// or https:// address",
        Some("file") => "file:// is not supported: zchroot fetches over HTTP only; serve the directory (e.g. python3 -m http.server -d DIR 8000) and give http://127.0.0.1:8000",
        Some("tor+http") | Some("tor+https") | Some("mirror") | Some("mirror+http") => "apt's transport methods are not supported: give a plain http:// or https:// mirror",
        _ => "expected an http:// or https:// mirror such as http://deb.debian.org/debian",
    }
}

/// The proxies to use, as the environment and the config file say: for a
/// URL, `http_proxy` (or `https_proxy`), then `all_proxy` (lowercase names
/// first, then uppercase), then the config file's `proxy`; none for a host
/// that `no_proxy` names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Proxies {
    http: Option<String>,
    https: Option<String>,
    no_proxy: Vec<String>,
}

impl Proxies {
    /// From `var` (the environment, or a test's) and the config's proxy.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>, configured: Option<&str>) -> Proxies {
        let get = |names: &[&str]| {
            names
                .iter()
                .filter_map(|n| var(n))
                .map(|v| v.trim().to_string())
                .find(|v| !v.is_empty())
                .or_else(|| configured.map(String::from))
                .map(|p| with_scheme(&p))
        };
        Proxies {
            http: get(&["http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"]),
            https: get(&["https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"]),
            no_proxy: ["no_proxy", "NO_PROXY"]
                .iter()
                .filter_map(|n| var(n))
                .find(|v| !v.trim().is_empty())
                .map(|v| {
                    v.split(',')
                        .map(|e| e.trim().to_ascii_lowercase())
                        .filter(|e| !e.is_empty())
                        .collect()
                })
                .unwrap_or_default(),
        }
    }

    /// From the process environment and the config's proxy.
    pub fn from_env(configured: Option<&str>) -> Proxies {
        Proxies::from_vars(|n| std::env::var(n).ok(), configured)
    }

    /// The proxy `url` goes through, if any.
    pub fn proxy_for(&self, url: &str) -> Option<&str> {
        let proxy = if url.starts_with("https://") {
            self.https.as_deref()
        } else {
            self.http.as_deref()
        }?;
        let host = host_of(url).ok()?.0.to_ascii_lowercase();
        (!self.no_proxy.iter().any(|e| no_proxy_matches(e, &host))).then_some(proxy)
    }

    /// The proxy as errors show it: without a user name or password.
    fn shown(&self, url: &str) -> Option<String> {
        self.proxy_for(url).map(without_userinfo)
    }
}

/// `proxy:3128` is `http://proxy:3128`, as curl takes it.
fn with_scheme(p: &str) -> String {
    if p.contains("://") {
        p.to_string()
    } else {
        format!("http://{p}")
    }
}

fn without_userinfo(p: &str) -> String {
    match p.split_once("://") {
        Some((scheme, rest)) => match rest.split('/').next().and_then(|a| a.rsplit_once('@')) {
            Some((_, host)) => format!("{scheme}://{host}"),
            None => p.to_string(),
        },
        None => p.to_string(),
    }
}

/// One `no_proxy` entry against a host: `*`, a domain (and its
/// subdomains; a leading `.` is the same), an address, or a network
/// (`10.0.0.0/8`).
fn no_proxy_matches(entry: &str, host: &str) -> bool {
    if entry == "*" {
        return true;
    }
    if let Some((net, bits)) = entry.split_once('/') {
        let (Ok(net), Ok(bits), Ok(ip)) = (
            net.parse::<IpAddr>(),
            bits.parse::<u32>(),
            host.parse::<IpAddr>(),
        ) else {
            return false;
        };
        return in_network(ip, net, bits);
    }
    let entry = entry.trim_start_matches('.');
    // `[::1]:80`, `host:8080`: the host part (a port is not told apart).
    let entry = match entry.strip_prefix('[') {
        Some(e) => e.split_once(']').map(|(e, _)| e).unwrap_or(e),
        None if entry.matches(':').count() == 1 => entry.split(':').next().unwrap_or(entry),
        None => entry,
    };
    host == entry || host.ends_with(&format!(".{entry}"))
}

fn in_network(ip: IpAddr, net: IpAddr, bits: u32) -> bool {
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) if bits <= 32 => {
            let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) if bits <= 128 => {
            let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

/// rustls with the ring provider, trusting the system's CA store (read
/// once; `SSL_CERT_FILE` and `SSL_CERT_DIR` name others).
fn tls_config() -> Result<rustls::ClientConfig, String> {
    static ROOTS: OnceLock<Arc<rustls::RootCertStore>> = OnceLock::new();
    let roots = ROOTS.get_or_init(|| {
        let mut roots = rustls::RootCertStore::empty();
        // Unreadable or bad certificates are skipped, as curl does; a
        // mirror they would have vouched for fails with its own error.
        let found = rustls_native_certs::load_native_certs();
        roots.add_parsable_certificates(found.certs);
        Arc::new(roots)
    });
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots.clone())
        .with_no_client_auth())
}

impl<'r> Fetcher<'r> {
    /// A fetcher for these mirrors. Each mirror's host is resolved once here
    /// (with a few tries: this also rides out a dropped DNS answer) and
    /// pinned for the whole run, except where a proxy is used: the proxy
    /// resolves names then.
    pub fn new(
        blobs: &Path,
        mirrors: &[String],
        opts: FetchOptions,
        reporter: &'r dyn Reporter,
    ) -> Result<Self, FetchError> {
        let proxies = Arc::new(Proxies::from_env(opts.proxy.as_deref()));
        let client_err = |message: String| FetchError::Http {
            url: mirrors.join(", "),
            message: format!("building the HTTP client: {message}"),
            via: None,
        };
        let tls = tls_config().map_err(client_err)?;
        let chooser = proxies.clone();
        let mut builder = reqwest::blocking::Client::builder()
            .connect_timeout(opts.connect_timeout)
            // In the blocking client this bounds each read, not the whole body.
            .timeout(opts.read_timeout)
            .user_agent(concat!("zchroot/", env!("CARGO_PKG_VERSION")))
            .pool_max_idle_per_host(opts.parallel.max(1))
            .tls_backend_preconfigured(tls)
            // One place decides on proxies (so that errors can name them).
            .no_proxy()
            .proxy(reqwest::Proxy::custom(move |url| {
                chooser.proxy_for(url.as_str()).map(String::from)
            }));
        let mut seen = HashMap::new();
        for mirror in mirrors {
            let (host, port) = host_of(mirror)?;
            if seen.contains_key(&host)
                || host.parse::<IpAddr>().is_ok()
                || proxies.proxy_for(mirror).is_some()
            {
                continue;
            }
            let addrs = resolve_host(mirror, &host, port)?;
            builder = builder.resolve_to_addrs(&host, &addrs);
            seen.insert(host, ());
        }
        let client = builder.build().map_err(|e| client_err(e.to_string()))?;
        crate::paths::create_private_dir_all(blobs).map_err(|source| FetchError::Io {
            path: blobs.into(),
            source,
        })?;
        Ok(Fetcher {
            client,
            blobs: blobs.to_owned(),
            release_dates: None,
            opts,
            proxies,
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
                .map_err(|e| self.http_err(url, &e))?;
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
                    self.reporter.note(&format!(
                        "retrying {url} after: {} (try {tries})",
                        e.brief()
                    ));
                    std::thread::sleep(delay);
                    delay *= 2;
                }
                other => return other,
            }
        }
    }

    /// A transfer error, naming the proxy when one was used; a TLS failure
    /// on its own (no retry will mend a certificate).
    fn http_err(&self, url: &str, e: &(dyn std::error::Error + 'static)) -> FetchError {
        let (message, tls) = chain_of(e);
        if tls {
            return FetchError::Tls {
                url: url.into(),
                message,
            };
        }
        FetchError::Http {
            url: url.into(),
            message,
            via: self.proxies.shown(url),
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
        let resp = req.send().map_err(|e| self.http_err(url, &e))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let via = self.proxies.shown(url);
        let code = status.as_u16();
        if status.is_server_error() || code == 408 || code == 429 {
            Err(FetchError::Http {
                url: url.into(),
                message: format!("HTTP {status}"),
                via,
            })
        } else {
            // 404 and friends will not change on a retry.
            Err(FetchError::NotFound {
                what: url.rsplit('/').next().unwrap_or(url).to_string(),
                url: url.into(),
                status: format!("HTTP {status}"),
                via,
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
        if let (Err(FetchError::NotFound { .. }), Some(alt)) = (&result, &d.alt_url) {
            self.reporter
                .note(&format!("{} not found, trying {alt}", d.url));
            result = self.with_tries(alt, || self.fetch_once(alt, d, &partial));
        }
        let result = result.map_err(|e| e.missing_is(&d.name));
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
        let path = self
            .blobs
            .join("locks")
            .join(format!("{:02x}.lock", sha256.as_bytes()[0]));
        let io = |source| FetchError::Io {
            path: path.clone(),
            source,
        };
        let f = crate::paths::open_lock(&path).map_err(io)?;
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
                        return Err(self.http_err(url, &e));
                    }
                };
                have += n as u64;
                if have > d.size {
                    return Err(FetchError::SizeMismatch {
                        name: d.name.clone(),
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
                via: self.proxies.shown(url),
            });
        }
        let calculated = Sha256::from_hasher(hasher);
        if calculated != d.sha256 {
            return Err(FetchError::ChecksumFailed {
                name: d.name.clone(),
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
                    if let Err(e) = crate::interrupt::check() {
                        failed.store(true, Ordering::Relaxed);
                        first_error.lock().unwrap().get_or_insert(e.into());
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

/// The addresses of a mirror's host, with a few tries.
fn resolve_host(mirror: &str, host: &str, port: u16) -> Result<Vec<SocketAddr>, FetchError> {
    let mut last = String::new();
    for attempt in 0..3 {
        match (host, port).to_socket_addrs() {
            Ok(a) => {
                let addrs: Vec<_> = a.collect();
                if !addrs.is_empty() {
                    return Ok(addrs);
                }
                last = "no address".into();
            }
            Err(e) => last = e.to_string(),
        }
        std::thread::sleep(Duration::from_millis(300 * (attempt + 1)));
    }
    Err(FetchError::Resolve {
        url: mirror.into(),
        message: last,
    })
}

/// The error chain of `e` as one line, and whether TLS failed in it.
fn chain_of(e: &(dyn std::error::Error + 'static)) -> (String, bool) {
    let mut m = e.to_string();
    let mut tls = false;
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = cur {
        // hyper-rustls hands rustls's error on inside io::Errors, whose
        // source() skips it: look inside them.
        let mut inner = s;
        while let Some(i) = inner
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            inner = i;
        }
        tls |= inner.is::<rustls::Error>();
        if !std::ptr::eq(s, e) {
            m.push_str(": ");
            m.push_str(&s.to_string());
        }
        cur = s.source();
    }
    (m, tls)
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
            name: d.name.clone(),
            url: path.display().to_string(),
            expected: d.size,
            got,
        });
    }
    let calculated = Sha256::from_hasher(hasher);
    if calculated != d.sha256 {
        return Err(FetchError::ChecksumFailed {
            name: d.name.clone(),
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
        assert_eq!(
            host_of("https://deb.debian.org/debian").unwrap(),
            ("deb.debian.org".into(), 443)
        );
        let e = |u: &str| host_of(u).unwrap_err().to_string();
        assert!(
            e("ftp://x/debian").contains("stopped serving FTP"),
            "{}",
            e("ftp://x")
        );
        assert!(e("file:///srv/debian").contains("python3 -m http.server"));
        assert!(e("deb.debian.org/debian").contains("expected an http:// or https://"));
        assert!(e("http://user:pw@x/debian").contains("password"));
        assert!(e("https:///debian").contains("no host"));
    }

    fn vars(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn proxies_come_from_the_environment_then_the_config() {
        let p = Proxies::from_vars(
            vars(&[
                ("http_proxy", "proxy:3128"),
                ("HTTPS_PROXY", "http://s:8080"),
            ]),
            Some("http://cfg:1"),
        );
        assert_eq!(
            p.proxy_for("http://deb.debian.org/debian"),
            Some("http://proxy:3128")
        );
        assert_eq!(
            p.proxy_for("https://deb.debian.org/debian"),
            Some("http://s:8080")
        );
        let p = Proxies::from_vars(vars(&[("http_proxy", "")]), Some("http://cfg:1"));
        assert_eq!(p.proxy_for("https://x/"), Some("http://cfg:1"));
        assert_eq!(p.proxy_for("http://x/"), Some("http://cfg:1"));
        let p = Proxies::from_vars(vars(&[("ALL_PROXY", "http://all:3")]), None);
        assert_eq!(p.proxy_for("http://x/"), Some("http://all:3"));
        assert_eq!(
            Proxies::from_vars(vars(&[]), None).proxy_for("http://x/"),
            None
        );
    }

    #[test]
    fn no_proxy_exempts_domains_addresses_and_networks() {
        let p = Proxies::from_vars(
            vars(&[
                ("http_proxy", "http://u:secret@p:3128"),
                (
                    "no_proxy",
                    "localhost:8080, .example.org,10.0.0.0/8,[::1],debian.net,fe80::1",
                ),
            ]),
            None,
        );
        for direct in [
            "http://localhost:8080/d",
            "http://a.example.org/d",
            "http://example.org/d",
            "http://10.1.2.3/d",
            "http://[::1]:80/d",
            "http://ftp.debian.net/debian",
            "http://[fe80::1]/debian",
        ] {
            assert_eq!(p.proxy_for(direct), None, "{direct}");
        }
        for proxied in [
            "http://11.0.0.1/d",
            "http://notexample.org/d",
            "http://deb.debian.org/",
        ] {
            assert!(p.proxy_for(proxied).is_some(), "{proxied}");
        }
        // Errors show the proxy without its password.
        assert_eq!(
            p.shown("http://deb.debian.org/").as_deref(),
            Some("http://p:3128")
        );
        let all = Proxies::from_vars(vars(&[("http_proxy", "p:1"), ("NO_PROXY", "*")]), None);
        assert_eq!(all.proxy_for("http://deb.debian.org/"), None);
    }

    #[test]
    fn a_missing_file_says_what_it_is_and_a_proxy_error_names_the_proxy() {
        let e = FetchError::NotFound {
            what: "x".into(),
            url: "http://m/debian/dists/t/InRelease".into(),
            status: "HTTP 404 Not Found".into(),
            via: Some("http://p:3128".into()),
        }
        .missing_is("suite 't'")
        .to_string();
        assert!(
            e.starts_with("suite 't' is not on the mirror: http://m/debian/dists/t/InRelease answered HTTP 404 Not Found (through the proxy http://p:3128)"),
            "{e}"
        );
        assert!(e.contains("\nhelp: "), "{e}");
    }
}
