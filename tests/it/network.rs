//! The network around the archive: an `https://` mirror on 127.0.0.1 with a
//! CA made here (trusted through `SSL_CERT_FILE`, refused with another
//! CA, reached through `https_proxy` too), a mirror whose host name does
//! not resolve reached through an HTTP proxy on 127.0.0.1 that forwards to
//! the test archive, a dead proxy named in the error, the security
//! archive's mirror, and the user's config file.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::archive::{pkg, suite, Archive, Key};
use crate::common::{have_userns, is_root, require, stderr, stdout, text, Zchroot};
use crate::server::Server;

/// A CA and a `localhost` certificate it signed: the CA's PEM and the
/// server's TLS configuration.
struct TestCa {
    pem: String,
    server: Arc<rustls::ServerConfig>,
}

impl TestCa {
    fn new(name: &str) -> TestCa {
        use rcgen::{
            BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair,
            KeyUsagePurpose,
        };
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name.push(DnType::CommonName, name);
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
        let leaf_key = KeyPair::generate().unwrap();
        let leaf = CertificateParams::new(vec!["localhost".to_string()])
            .unwrap()
            .signed_by(&leaf_key, &ca)
            .unwrap();
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into());
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let server = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![leaf.der().clone(), ca.der().clone()], key)
            .unwrap();
        TestCa {
            pem: ca.pem(),
            server: Arc::new(server),
        }
    }

    /// The CA's certificate in a file, for `SSL_CERT_FILE`.
    fn file(&self, dir: &Path, name: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, &self.pem).unwrap();
        p
    }
}

/// A signed archive with one amd64 (native: `create` needs no qemu) suite,
/// `test`, and manifests that point at it under `base` (a URL the test
/// serves it at, or not).
fn archive(base: impl FnOnce(&Archive) -> String) -> (Archive, PathBuf, String) {
    let key = Key::generate("zchroot network test");
    let archive = Archive::new();
    let packages = vec![
        pkg("base-files", "13").essential().depends("libc6"),
        pkg("libc6", "2.41-1"),
        pkg("ca-certificates", "20250419"),
    ];
    let packages = packages.into_iter().map(|p| p.arch("amd64")).collect();
    archive.add_suite_for(&key, &suite("test", packages), "amd64");
    let base = base(&archive);
    let manifests = archive.manifests(&base, &["test"], &key);
    (archive, manifests, base)
}

/// zchroot in `home` with no proxy from this process's environment.
fn zchroot_in(home: &Path) -> Zchroot {
    let mut z = Zchroot::new(home);
    for v in [
        "http_proxy",
        "HTTP_PROXY",
        "https_proxy",
        "HTTPS_PROXY",
        "all_proxy",
        "ALL_PROXY",
        "no_proxy",
        "NO_PROXY",
    ] {
        z = z.env(v, "");
    }
    z
}

fn resolve_args(manifests: &Path, download: bool) -> Vec<String> {
    let mut a: Vec<String> = ["-q", "--manifests", manifests.to_str().unwrap()]
        .iter()
        .chain(&["resolve", "amd64", "--suite", "test"])
        .map(|s| s.to_string())
        .collect();
    if download {
        a.push("--download".into());
    }
    a
}

#[test]
fn an_https_mirror_is_verified_against_the_system_ca_store() {
    let ca = TestCa::new("zchroot test CA");
    let mut server = None;
    let (_archive, manifests, base) = archive(|a| {
        let s = Server::start_tls(a.dir.path().to_owned(), ca.server.clone());
        let base = s.base.clone();
        server = Some(s);
        base
    });
    assert!(base.starts_with("https://localhost:"), "{base}");
    let tmp = tempfile::tempdir().unwrap();
    let good = ca.file(tmp.path(), "ca.pem");

    // Trusted through SSL_CERT_FILE: the indexes and the packages come
    // over TLS, and are still checked by signature and hash.
    let home = tmp.path().join("home");
    let out = zchroot_in(&home)
        .env("SSL_CERT_FILE", &good)
        .run(&resolve_args(&manifests, true));
    assert!(out.status.success(), "{}", text(&out));
    let listed = stdout(&out);
    assert!(
        listed.contains("base-files") && listed.contains("libc6"),
        "{listed}"
    );
    let blobs = std::fs::read_dir(home.join("cache/blobs"))
        .unwrap()
        .filter(|e| {
            let n = e.as_ref().unwrap().file_name();
            n.len() == 64
        })
        .count();
    assert!(
        blobs >= 3,
        "index and two packages in the cache, got {blobs}"
    );

    // Through an https_proxy (CONNECT): the proxy makes the connection,
    // the certificate is still checked end to end.
    let proxy = Proxy::start("127.0.0.1:1".into());
    let out = zchroot_in(&tmp.path().join("proxied"))
        .env("SSL_CERT_FILE", &good)
        .env("https_proxy", &proxy.url)
        .run(&resolve_args(&manifests, true));
    assert!(out.status.success(), "{}", text(&out));
    let authority = base.trim_start_matches("https://");
    let asked = proxy.asked.lock().unwrap().clone();
    assert!(asked.contains(&format!("CONNECT {authority}")), "{asked:?}");

    // create fetches the same way: it gets as far as installing (the test
    // packages have no dpkg, so that step fails).
    if require(
        is_root() || have_userns(),
        "root or user namespaces (create)",
        "run the tests as root, as CI does",
    ) {
        let out = zchroot_in(&home).env("SSL_CERT_FILE", &good).run(
            &["-q", "--manifests", manifests.to_str().unwrap()]
                .iter()
                .chain(&["create", "amd64", "--suite", "test", "--name", "tls"])
                .collect::<Vec<_>>(),
        );
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(
            err.contains("installing the packages inside the root failed"),
            "{err}"
        );
    }

    // Another CA: refused, naming the URL and the certificate problem,
    // with what to do; no retries of a certificate.
    let other = TestCa::new("another CA").file(tmp.path(), "other.pem");
    let out = zchroot_in(&tmp.path().join("home2"))
        .env("SSL_CERT_FILE", &other)
        .run(&resolve_args(&manifests, false));
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("{base}/debian/dists/test/InRelease: TLS")),
        "{err}"
    );
    assert!(err.contains("certificate"), "{err}");
    assert!(err.contains("UnknownIssuer"), "{err}");
    assert!(
        err.contains("help: ") && err.contains("SSL_CERT_FILE"),
        "{err}"
    );
    assert!(!err.contains("retrying"), "{err}");
}

/// An HTTP proxy on 127.0.0.1: takes `GET http://HOST/PATH`, forwards
/// `GET /PATH` to `backend` (whatever HOST says: the proxy "resolves"
/// it), and records the URLs asked for.
struct Proxy {
    url: String,
    asked: Arc<Mutex<Vec<String>>>,
}

impl Proxy {
    fn start(backend: String) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let asked = Arc::new(Mutex::new(Vec::new()));
        let seen = asked.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let (backend, seen) = (backend.clone(), seen.clone());
                std::thread::spawn(move || {
                    let _ = forward(conn, &backend, &seen);
                });
            }
        });
        Proxy { url, asked }
    }
}

/// Reads a request or response head: the first line and the header lines.
fn head(r: &mut impl BufRead) -> std::io::Result<Option<(String, Vec<String>)>> {
    let mut first = String::new();
    if r.read_line(&mut first)? == 0 {
        return Ok(None);
    }
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        r.read_line(&mut h)?;
        let h = h.trim_end().to_string();
        if h.is_empty() {
            return Ok(Some((first.trim_end().to_string(), headers)));
        }
        headers.push(h);
    }
}

fn forward(client: TcpStream, backend: &str, seen: &Mutex<Vec<String>>) -> std::io::Result<()> {
    let mut from_client = BufReader::new(client.try_clone()?);
    let mut to_client = client;
    let Some(first) = head(&mut from_client)? else {
        return Ok(());
    };
    if let Some(target) = first.0.strip_prefix("CONNECT ") {
        let target = target.split_whitespace().next().unwrap_or("");
        seen.lock().unwrap().push(format!("CONNECT {target}"));
        return tunnel(from_client, to_client, target);
    }
    let origin = TcpStream::connect(backend)?;
    let mut from_origin = BufReader::new(origin.try_clone()?);
    let mut to_origin = origin;
    let mut next = Some(first);
    loop {
        let (line, headers) = match next.take() {
            Some(h) => h,
            None => match head(&mut from_client)? {
                Some(h) => h,
                None => return Ok(()),
            },
        };
        let mut parts = line.split_whitespace();
        let (method, url) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        seen.lock().unwrap().push(url.to_string());
        let path = url
            .strip_prefix("http://")
            .and_then(|r| r.find('/').map(|i| &r[i..]))
            .unwrap_or("/");
        let mut req = format!("{method} {path} HTTP/1.1\r\n");
        for h in headers
            .iter()
            .filter(|h| !h.to_ascii_lowercase().starts_with("proxy-"))
        {
            req.push_str(&format!("{h}\r\n"));
        }
        req.push_str("\r\n");
        to_origin.write_all(req.as_bytes())?;
        let Some((status, headers)) = head(&mut from_origin)? else {
            return Ok(());
        };
        let length: u64 = headers
            .iter()
            .find_map(|h| {
                let (k, v) = h.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().ok())?
            })
            .unwrap_or(0);
        let mut out = format!("{status}\r\n");
        for h in &headers {
            out.push_str(&format!("{h}\r\n"));
        }
        out.push_str("\r\n");
        to_client.write_all(out.as_bytes())?;
        std::io::copy(&mut (&mut from_origin).take(length), &mut to_client)?;
        to_client.flush()?;
    }
}

/// `CONNECT HOST:PORT`: a tunnel to PORT on 127.0.0.1 (whatever HOST is),
/// bytes both ways until either side closes.
fn tunnel(
    mut from_client: BufReader<TcpStream>,
    mut to_client: TcpStream,
    target: &str,
) -> std::io::Result<()> {
    let port: u16 = target
        .rsplit(':')
        .next()
        .unwrap_or("")
        .parse()
        .unwrap_or(443);
    let origin = TcpStream::connect(("127.0.0.1", port))?;
    to_client.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")?;
    let mut up = origin.try_clone()?;
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut from_client, &mut up);
        let _ = up.shutdown(std::net::Shutdown::Write);
    });
    let mut down = origin;
    std::io::copy(&mut down, &mut to_client)?;
    Ok(())
}

#[test]
fn a_mirror_whose_name_does_not_resolve_works_through_a_proxy() {
    let mut server = None;
    let (_archive, manifests, _) = archive(|a| {
        server = Some(Server::start(a.dir.path().to_owned()));
        // Not resolvable here (.invalid): only the proxy can reach it.
        "http://archive.invalid".into()
    });
    let backend = server
        .as_ref()
        .unwrap()
        .base
        .trim_start_matches("http://")
        .to_string();
    let proxy = Proxy::start(backend);
    let tmp = tempfile::tempdir().unwrap();

    // Without the proxy: the name does not resolve, and the error says
    // what a proxy-only network needs.
    let out = zchroot_in(&tmp.path().join("direct")).run(&resolve_args(&manifests, false));
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("cannot resolve host of http://archive.invalid/debian"),
        "{err}"
    );
    assert!(err.contains("http_proxy"), "{err}");

    // Through the proxy (http_proxy): indexes and packages.
    let out = zchroot_in(&tmp.path().join("proxied"))
        .env("http_proxy", &proxy.url)
        .run(&resolve_args(&manifests, true));
    assert!(out.status.success(), "{}", text(&out));
    assert!(stdout(&out).contains("libc6"), "{}", text(&out));
    let asked = proxy.asked.lock().unwrap().clone();
    assert!(
        asked.contains(&"http://archive.invalid/debian/dists/test/InRelease".to_string()),
        "{asked:?}"
    );
    assert!(asked.iter().any(|u| u.ends_with(".deb")), "{asked:?}");

    // The config file's proxy does the same, for a run without http_proxy.
    let home = tmp.path().join("configured");
    std::fs::create_dir_all(home.join("config")).unwrap();
    std::fs::write(
        home.join("config/config.toml"),
        format!("proxy = \"{}\"\n", proxy.url),
    )
    .unwrap();
    let out = zchroot_in(&home).run(&resolve_args(&manifests, false));
    assert!(out.status.success(), "{}", text(&out));

    // A dead proxy is named in the error, with what to check.
    let dead = TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_url = format!("http://{}", dead.local_addr().unwrap());
    drop(dead);
    let out = zchroot_in(&tmp.path().join("dead"))
        .env("http_proxy", &dead_url)
        .run(&resolve_args(&manifests, false));
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("http://archive.invalid/debian/dists/test/InRelease"),
        "{err}"
    );
    assert!(
        err.contains(&format!("(through the proxy {dead_url})")),
        "{err}"
    );
    assert!(
        err.contains(&format!("help: check that the proxy {dead_url} is up")),
        "{err}"
    );
}

/// The test archive with two suites: `test` (the archive role) and
/// `test-security` (the security role), both at mirrors that do not
/// resolve, and the server that really has them.
fn two_roles() -> (Archive, Server, PathBuf) {
    let key = Key::generate("zchroot mirror map test");
    let archive = Archive::new();
    let base_files = |v: &str| pkg("base-files", v).essential().arch("amd64");
    archive.add_suite_for(&key, &suite("test", vec![base_files("13")]), "amd64");
    archive.add_suite_for(
        &key,
        &suite("test-security", vec![base_files("13+s1")]),
        "amd64",
    );
    let server = Server::start(archive.dir.path().to_owned());
    let manifests = archive.manifests("http://archive.invalid", &["test", "test-security"], &key);
    let path = manifests.join("test.toml");
    let toml = std::fs::read_to_string(&path).unwrap().replace(
        "role = \"archive\"\nmirror = \"http://archive.invalid/debian\"\nsuite = \"test-security\"",
        "role = \"security\"\nmirror = \"http://security.invalid/debian\"\nsuite = \"test-security\"",
    );
    assert!(toml.contains("role = \"security\""), "{toml}");
    std::fs::write(&path, toml).unwrap();
    (archive, server, manifests)
}

fn write_config(home: &Path, text: &str) {
    std::fs::create_dir_all(home.join("config")).unwrap();
    std::fs::write(home.join("config/config.toml"), text).unwrap();
}

#[test]
fn the_config_file_and_security_mirror_replace_each_archive_and_the_command_line_wins() {
    let (_archive, server, manifests) = two_roles();
    let real = format!("{}/debian", server.base);
    let tmp = tempfile::tempdir().unwrap();
    let args = resolve_args(&manifests, false);
    let with = |extra: &[&str]| -> Vec<String> {
        args.iter()
            .cloned()
            .chain(extra.iter().map(|s| s.to_string()))
            .collect()
    };

    // --mirror covers the main archive only: the security one still fails.
    let home = tmp.path().join("a");
    let out = zchroot_in(&home).run(&with(&["--mirror", &real]));
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("http://security.invalid/debian"), "{err}");

    // --security-mirror covers it.
    let out = zchroot_in(&home).run(&with(&["--mirror", &real, "--security-mirror", &real]));
    assert!(out.status.success(), "{}", text(&out));
    assert!(stdout(&out).contains("13+s1"), "{:?}", out);

    // The config file's mirror and security-mirror do the same...
    let home = tmp.path().join("b");
    write_config(
        &home,
        &format!("mirror = \"{real}\"\nsecurity-mirror = \"{real}/\"\nparallel-downloads = 2\n"),
    );
    let out = zchroot_in(&home).run(&args);
    assert!(out.status.success(), "{}", text(&out));
    assert!(stdout(&out).contains("13+s1"), "{}", text(&out));

    // ...and the command line wins over it.
    let out = zchroot_in(&home).run(&with(&["--security-mirror", "http://given.invalid/debian"]));
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("http://given.invalid/debian"), "{err}");

    // A scheme zchroot does not speak is refused before anything is fetched.
    let out = zchroot_in(&home).run(&with(&["--security-mirror", "ftp://x/debian"]));
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("--security-mirror ftp://x/debian: ftp:// is not supported"),
        "{err}"
    );
}

#[test]
fn an_unknown_key_in_the_config_file_is_an_error_naming_file_and_key() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("h");
    write_config(
        &home,
        "mirror = \"http://deb.debian.org/debian\"\nparallel = 8\n",
    );
    let out = zchroot_in(&home).run(&["list"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let file = home.join("config/config.toml");
    assert!(
        err.contains(&format!("{}: unknown key 'parallel'", file.display())),
        "{err}"
    );
    assert!(
        err.contains("help: the keys are mirror, security-mirror, parallel-downloads, proxy"),
        "{err}"
    );

    // A user's file is under XDG_CONFIG_HOME (root's is /etc/zchroot's).
    let Some(user) = crate::common::require_test_user() else {
        return;
    };
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let xdg = tmp.path().join("xdg");
    std::fs::create_dir_all(xdg.join("zchroot")).unwrap();
    let file = xdg.join("zchroot/config.toml");
    std::fs::write(&file, "proxy = \"socks5://p:1080\"\n").unwrap();
    let out = std::process::Command::new("runuser")
        .args(["-u", &user.name, "--", "env", "-u", "ZCHROOT_HOME"])
        .arg(format!("HOME={}", tmp.path().display()))
        .arg(format!("XDG_CONFIG_HOME={}", xdg.display()))
        .args([crate::common::ZCHROOT, "list"])
        .current_dir("/")
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "{}: proxy = \"socks5://p:1080\": expected an http:// URL",
            file.display()
        )),
        "{err}"
    );
}
