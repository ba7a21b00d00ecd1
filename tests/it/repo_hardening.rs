//! `repo serve` against hostile clients and planted links, the repository
//! directory refused where it would publish zchroot's own files, and files
//! written by name in shared directories (issue 12, items 9 and 10). The
//! server runs as the real binary on 127.0.0.1 and is talked to over TCP.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{
    have_command, let_others_reach, require, require_root, require_test_user, zchroot, Zchroot,
};

/// `zchroot repo serve` of a target whose repository is `repo`, killed on
/// drop.
struct Served {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Served {
    fn start(home: &Path, repo: &Path) -> Served {
        Served::start_with(home, repo, &[])
    }

    /// With `limits`, options of `repo serve`.
    fn start_with(home: &Path, repo: &Path, limits: &[&str]) -> Served {
        let o = zchroot(
            home,
            &[
                "target",
                "add",
                "board",
                "--arch",
                "arm64",
                "--suite",
                "trixie",
                // The repository is what these tests are about.
                "--no-archive-check",
                "--repo",
                repo.to_str().unwrap(),
            ],
        );
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let args = [
            &["repo", "serve", "board", "--listen", "127.0.0.1:0"],
            limits,
        ]
        .concat();
        let mut child = Zchroot::new(home)
            .command(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        // "serving DIR on http://ADDR/"
        let addr = line
            .trim()
            .rsplit("http://")
            .next()
            .and_then(|a| a.strip_suffix('/'))
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no address in {line:?}"));
        Served { child, addr }
    }

    fn get(&self, path: &str) -> String {
        let mut s = TcpStream::connect(self.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    }

    /// A line of the server's /proc/PID/status, as a number.
    fn status(&self, key: &str) -> u64 {
        let s = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        s.lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {key} in {s}"))
    }
}

/// A published-looking tree: `dists/trixie/Release`.
fn repo_tree(dir: &Path) -> PathBuf {
    let repo = dir.join("repo");
    std::fs::create_dir_all(repo.join("dists/trixie")).unwrap();
    std::fs::write(repo.join("dists/trixie/Release"), "Suite: trixie\n").unwrap();
    repo
}

#[test]
fn serve_never_follows_a_symlink_out_of_the_tree() {
    let d = tempfile::tempdir().unwrap();
    let repo = repo_tree(d.path());
    let outside = d.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    std::fs::write(outside.join("secret"), "TOPSECRET").unwrap();
    std::os::unix::fs::symlink(outside.join("secret"), repo.join("dists/leak")).unwrap();
    std::os::unix::fs::symlink(&outside, repo.join("pool")).unwrap();
    let s = Served::start(&d.path().join("home"), &repo);

    let ok = s.get("/dists/trixie/Release");
    assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
    assert!(ok.ends_with("\r\n\r\nSuite: trixie\n"), "{ok}");
    for path in ["/dists/leak", "/pool/secret", "/pool/../outside/secret"] {
        let r = s.get(path);
        assert!(r.starts_with("HTTP/1.1 404"), "{path}: {r}");
        assert!(!r.contains("TOPSECRET"), "{path}: {r}");
    }
}

#[test]
fn serve_caps_the_request_head_and_keeps_serving() {
    let d = tempfile::tempdir().unwrap();
    let repo = repo_tree(d.path());
    let s = Served::start(&d.path().join("home"), &repo);
    let rss_before = s.status("VmRSS:");

    // 64 MiB of request line, never a newline.
    let mut c = TcpStream::connect(s.addr).unwrap();
    c.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
    let chunk = vec![b'a'; 1 << 20];
    let mut sent = 0;
    for _ in 0..64 {
        if c.write_all(&chunk).is_err() {
            break;
        }
        sent += 1;
    }
    // The server answered (431) or closed: it does not wait for more.
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut out = Vec::new();
    let r = c.read_to_end(&mut out);
    let answered = match &r {
        Ok(_) => true,
        Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
    };
    assert!(
        answered,
        "after {sent} MiB the connection is still open: {r:?}"
    );
    if !out.is_empty() {
        // A reset (the server closes with our bytes unread) may cut its
        // answer short: what arrived is the start of a 431.
        let text = String::from_utf8_lossy(&out);
        let status = "HTTP/1.1 431";
        assert!(
            text.starts_with(status) || (r.is_err() && status.starts_with(&*text)),
            "{text}"
        );
    }
    let rss_after = s.status("VmRSS:");
    assert!(
        rss_after < rss_before + 16 * 1024,
        "the server grew from {rss_before} kB to {rss_after} kB"
    );
    let ok = s.get("/dists/trixie/Release");
    assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
}

#[test]
fn serve_bounds_threads_and_closes_idle_connections() {
    let d = tempfile::tempdir().unwrap();
    let repo = repo_tree(d.path());
    let s = Served::start(&d.path().join("home"), &repo);

    let idle: Vec<TcpStream> = (0..100)
        .map(|_| TcpStream::connect(s.addr).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let threads = s.status("Threads:");
    assert!(threads <= 24, "{threads} threads for 100 idle connections");
    // Every idle connection is answered (503: busy) or closed, soon after
    // the read timeout (10 s), not kept forever.
    let t = Instant::now();
    for mut c in idle {
        c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut out = Vec::new();
        let r = c.read_to_end(&mut out);
        assert!(
            r.is_ok() || r.as_ref().unwrap_err().kind() == std::io::ErrorKind::ConnectionReset,
            "an idle connection still open after {:?}: {r:?}",
            t.elapsed()
        );
        let text = String::from_utf8_lossy(&out);
        assert!(
            text.is_empty() || text.starts_with("HTTP/1.1 503"),
            "{text}"
        );
    }
    assert!(t.elapsed() < Duration::from_secs(15), "{:?}", t.elapsed());
    let ok = s.get("/dists/trixie/Release");
    assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
}

/// A client from `from` (all of 127.0.0.0/8 is this host, each address a
/// peer of its own to the server) with a small receive buffer, so that the
/// server's writes to it block soon.
fn client_from(from: Ipv4Addr, to: SocketAddr) -> TcpStream {
    use socket2::{Domain, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    s.set_recv_buffer_size(4096).unwrap();
    s.bind(&SocketAddr::new(from.into(), 0).into()).unwrap();
    s.connect_timeout(&to.into(), Duration::from_secs(5))
        .unwrap();
    let s: TcpStream = s.into();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s
}

/// Reads `c` one byte every 100 ms until `slow_until`, then as fast as it
/// can until the end: the bytes it got, and whether the connection ended
/// (closed or reset) rather than went quiet.
fn read_slowly(mut c: TcpStream, slow_until: Instant) -> (usize, Result<(), String>) {
    let mut got = 0;
    let mut b = [0u8; 1];
    while Instant::now() < slow_until {
        match c.read(&mut b) {
            Ok(0) => return (got, Ok(())),
            Ok(n) => got += n,
            Err(e) => return (got, ended(e)),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut buf = vec![0u8; 1 << 16];
    loop {
        match c.read(&mut buf) {
            Ok(0) => return (got, Ok(())),
            Ok(n) => got += n,
            Err(e) => return (got, ended(e)),
        }
    }
}

fn ended(e: std::io::Error) -> Result<(), String> {
    match e.kind() {
        std::io::ErrorKind::ConnectionReset => Ok(()),
        _ => Err(format!("still open: {e}")),
    }
}

#[test]
fn serve_cuts_slow_readers_and_caps_each_host() {
    let d = tempfile::tempdir().unwrap();
    let repo = repo_tree(d.path());
    // Far more than the buffers between the server and a client hold.
    let big = 32 << 20;
    std::fs::create_dir_all(repo.join("pool")).unwrap();
    std::fs::write(repo.join("pool/big.deb"), vec![b'x'; big]).unwrap();
    // 4 workers, 2 connections a host; a response gets 3 s (32 MiB at
    // 16 MiB/s would take 2 s).
    let rate = (16u64 << 20).to_string();
    let s = Served::start_with(
        &d.path().join("home"),
        &repo,
        &[
            "--workers",
            "4",
            "--per-host",
            "2",
            "--min-rate",
            &rate,
            "--min-time",
            "3",
        ],
    );
    let (a, b) = (Ipv4Addr::new(127, 0, 0, 2), Ipv4Addr::new(127, 0, 0, 3));
    let begin = Instant::now();
    // Two hosts with two slow readers each hold every worker: each has
    // its response started.
    let mut slow = vec![];
    for host in [a, a, b, b] {
        let mut c = client_from(host, s.addr);
        write!(c, "GET /pool/big.deb HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut first = [0u8; 12];
        c.read_exact(&mut first).unwrap();
        assert_eq!(&first, b"HTTP/1.1 200");
        slow.push(c);
    }
    let slow_until = Instant::now() + Duration::from_secs(5);
    let readers: Vec<_> = slow
        .into_iter()
        .map(|c| std::thread::spawn(move || read_slowly(c, slow_until)))
        .collect();
    // A third connection of a host is refused at once, though a worker
    // would be free before long.
    let mut over = client_from(a, s.addr);
    let mut out = Vec::new();
    let r = over.read_to_end(&mut out);
    assert!(
        r.is_ok() || ended(r.unwrap_err()).is_ok(),
        "a host's third connection is kept"
    );
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 503"), "{text}");
    assert!(
        begin.elapsed() < Duration::from_secs(3),
        "refused only after {:?}: a slow response may have ended already",
        begin.elapsed()
    );
    // Another host waits for a worker: one is free when the slow
    // responses are cut, 3 s after they started, not sooner.
    let ok = s.get("/dists/trixie/Release");
    let waited = begin.elapsed();
    assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
    assert!(ok.ends_with("\r\n\r\nSuite: trixie\n"), "{ok}");
    assert!(
        waited >= Duration::from_secs(3) && waited < Duration::from_secs(12),
        "served after {waited:?}"
    );
    for r in readers {
        let (got, end) = r.join().unwrap();
        end.unwrap();
        assert!(got < big, "a slow reader got the whole file ({got} bytes)");
    }
    // The hosts' connections were counted off: each may come back.
    for host in [a, b] {
        let mut c = client_from(host, s.addr);
        write!(c, "GET /dists/trixie/Release HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut out = String::new();
        c.read_to_string(&mut out).unwrap();
        assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "{host}: {out}");
    }
}

#[test]
fn a_repository_in_zchroot_s_state_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let home = d.path().join("home");
    let add = |repo: &Path| {
        zchroot(
            &home,
            &[
                "target",
                "add",
                "board",
                "--force",
                "--arch",
                "arm64",
                "--suite",
                "trixie",
                // The repository is what these tests are about.
                "--no-archive-check",
                "--repo",
                repo.to_str().unwrap(),
            ],
        )
    };
    // Where the secret key lives (state/repos/board/secret.key), the state
    // directory itself, and the whole zchroot home.
    for repo in [
        home.join("state/repos/board"),
        home.join("state"),
        home.clone(),
        home.join("config"),
    ] {
        let o = add(&repo);
        assert_eq!(o.status.code(), Some(1), "{repo:?} accepted");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains(&format!(
                "{}: not a place to publish a repository",
                repo.display()
            )),
            "{err}"
        );
        assert!(err.contains("help: "), "{err}");
    }
    // A target file written by hand is refused by update and serve too,
    // before anything is fetched or served.
    let targets = home.join("config/targets");
    std::fs::create_dir_all(&targets).unwrap();
    std::fs::write(
        targets.join("board.toml"),
        format!(
            "arch = \"arm64\"\nsuite = \"trixie\"\nrepo = \"{}\"\n",
            home.join("state/repos/board").display()
        ),
    )
    .unwrap();
    std::fs::create_dir_all(home.join("state/repos/board/public/dists")).unwrap();
    std::fs::write(home.join("state/repos/board/secret.key"), "secret").unwrap();
    for args in [
        &["update", "board"][..],
        &["repo", "serve", "board", "--listen", "127.0.0.1:0"][..],
    ] {
        let o = zchroot(&home, args);
        assert_eq!(o.status.code(), Some(1), "{args:?}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains("not a place to publish a repository"),
            "{args:?}: {err}"
        );
    }
    // Elsewhere is fine, and so is the default.
    let o = add(&d.path().join("www/board"));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn the_secret_key_is_0600_even_with_a_leftover_world_readable_partial() {
    let d = tempfile::tempdir().unwrap();
    let key = d.path().join("secret.key");
    let partial = d.path().join("secret.partial");
    std::fs::write(&partial, "left over").unwrap();
    std::fs::set_permissions(&partial, std::fs::Permissions::from_mode(0o644)).unwrap();
    zchroot::repo::key::RepoKey::load_or_generate(&key, "board").unwrap();
    let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "secret.key is {mode:o}");
    assert_eq!(std::fs::read(&partial).unwrap(), b"left over");
}

/// Runs `sh -c script` as `user`.
fn sh_as(user: &str, script: &str) {
    let o = Command::new("runuser")
        .args(["-u", user, "--", "sh", "-c", script])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn export_in_a_shared_directory_follows_no_planted_symlink() {
    if !require_root("a second user plants links in a shared directory") {
        return;
    }
    let Some(user) = require_test_user() else {
        return;
    };
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("root");
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::write(root.join("etc/hostname"), "board\n").unwrap();
    // A world-writable sticky directory, like /tmp.
    let shared = d.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1777)).unwrap();
    let_others_reach(&shared.join("x"));
    // A file the test user does not own, and cannot write.
    let victim = shared.join("victim");
    std::fs::write(&victim, "precious").unwrap();
    std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut cases = vec![("out.tar", "tar")];
    if have_command("mke2fs") {
        cases.push(("out.img", "ext4"));
    } else {
        require(false, "mke2fs", "apt-get install e2fsprogs");
    }
    for (name, format) in cases {
        // The user plants links at the names the output and its
        // temporary file used to have.
        sh_as(
            &user.name,
            &format!(
                "cd {} && ln -s victim .{name}.partial && ln -s victim .{name}.tmp",
                shared.display()
            ),
        );
        let out = shared.join(name);
        let o = zchroot(
            &d.path().join("home"),
            &[
                "-q",
                "export",
                "--dir",
                root.to_str().unwrap(),
                "--format",
                format,
                "-o",
                out.to_str().unwrap(),
            ],
        );
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let kept = std::fs::read(&victim).unwrap();
        assert!(
            kept == b"precious",
            "{format}: the victim was overwritten ({} bytes now)",
            kept.len()
        );
        let m = std::fs::symlink_metadata(&out).unwrap();
        assert!(m.is_file(), "{format}: {out:?} is not a regular file");
        assert_eq!(m.uid(), 0);
        assert!(m.len() > 0);
        let planted = shared.join(format!(".{name}.partial"));
        assert!(std::fs::symlink_metadata(&planted).unwrap().is_symlink());
        if format == "tar" {
            let mut a = tar::Archive::new(std::fs::File::open(&out).unwrap());
            let names: Vec<String> = a
                .entries()
                .unwrap()
                .map(|e| e.unwrap().path().unwrap().display().to_string())
                .collect();
            assert!(names.contains(&"etc/hostname".to_string()), "{names:?}");
        }
    }
    // Nothing else was left behind: the outputs, the victim, the planted links.
    let mut left: Vec<String> = std::fs::read_dir(&shared)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.ends_with(".partial") && !n.ends_with(".tmp"))
        .collect();
    left.sort();
    assert!(
        left.len() <= 3 && left.contains(&"victim".to_string()),
        "{left:?}"
    );
}
