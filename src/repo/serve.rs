//! A read-only static HTTP server for a published repository, enough for
//! apt on a board of the local network: GET and HEAD of files under one
//! directory, nothing outside it, one thread per connection.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Component, Path, PathBuf};

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

/// The file a request path names under `dir`, or None when it would leave
/// it (or is not a plain relative path).
pub fn resolve(dir: &Path, url_path: &str) -> Option<PathBuf> {
    let path = url_path.split(['?', '#']).next().unwrap_or("");
    let path = percent_decode(path)?;
    let path = path.strip_prefix('/')?;
    let mut out = dir.to_path_buf();
    for c in Path::new(path).components() {
        match c {
            Component::Normal(n) => out.push(n),
            _ => return None,
        }
    }
    Some(out)
}

fn respond(mut s: TcpStream, dir: &Path) -> std::io::Result<()> {
    let mut reader = BufReader::new(s.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    // Headers are read and ignored.
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h == "\r\n" || h == "\n" {
            break;
        }
    }
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let head = method == "HEAD";
    if method != "GET" && !head {
        return s.write_all(
            b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        );
    }
    let file = resolve(dir, target).filter(|p| p.is_file());
    match file.and_then(|p| std::fs::read(p).ok()) {
        Some(body) => {
            write!(
                s,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n",
                body.len()
            )?;
            if !head {
                s.write_all(&body)?;
            }
            Ok(())
        }
        None => {
            s.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        }
    }
}

/// Serves `dir` on `listener` until the process ends.
pub fn serve(listener: TcpListener, dir: PathBuf) -> ! {
    for conn in listener.incoming() {
        let Ok(conn) = conn else { continue };
        let dir = dir.clone();
        std::thread::spawn(move || {
            let _ = respond(conn, &dir);
        });
    }
    unreachable!("TcpListener::incoming never ends")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_stay_inside_the_directory() {
        let d = Path::new("/srv/repo");
        assert_eq!(
            resolve(d, "/dists/trixie/InRelease"),
            Some(PathBuf::from("/srv/repo/dists/trixie/InRelease"))
        );
        assert_eq!(
            resolve(d, "/pool/a.deb?x=1"),
            Some(PathBuf::from("/srv/repo/pool/a.deb"))
        );
        assert_eq!(resolve(d, "/../etc/passwd"), None);
        assert_eq!(resolve(d, "/dists/../../x"), None);
        assert_eq!(resolve(d, "relative"), None);
        assert_eq!(
            resolve(d, "/pool/main/m-6.12.1%2bdeb13_0.1_arm64.deb"),
            Some(PathBuf::from(
                "/srv/repo/pool/main/m-6.12.1+deb13_0.1_arm64.deb"
            ))
        );
        assert_eq!(resolve(d, "/%2e%2e/etc/passwd"), None, "escaped dots too");
        assert_eq!(resolve(d, "/a%00b"), None);
        assert_eq!(resolve(d, "/a%zz"), None);
    }

    #[test]
    fn files_are_served_and_others_are_not_found() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("Release"), "Suite: trixie\n").unwrap();
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let dir = d.path().to_owned();
        std::thread::spawn(move || serve(l, dir));
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
        assert!(get("/nope").starts_with("HTTP/1.1 404"));
        assert!(get("/../Release").starts_with("HTTP/1.1 404"));
    }
}
