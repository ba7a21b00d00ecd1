//! What `create` shows while it works (issue 15): on a terminal of 80
//! columns, bars that never wrap and are gone when the result is printed;
//! in a log (stderr a pipe), a line when each phase starts and ends, and
//! `-v`'s lines too. The root is native (amd64) from the local signed test
//! archive; its packages hold the host's dash and libc, and a `dpkg` that
//! prints what the real one prints, so the install inside succeeds quickly
//! without the network.

use std::path::Path;

use crate::archive::{pkg, NativeArchive, Pkg};
use crate::common::{have_userns, is_root, require, stderr, zchroot};
use crate::terminal::{host_arch, run_on_raw, Term};

/// A dpkg that says, for each .deb it is given, what dpkg says, slowly
/// enough (a busy loop: there is no `sleep` in here) for a display to show it.
const FAKE_DPKG: &str = r#"#!/bin/sh
# zchroot unpacked and registered every package; `dpkg --configure -a`
# sets each up, as dpkg says it.
[ "$1 $2" = "--configure -a" ] || exit 0
while IFS= read -r l; do
  case $l in "Package: "*) ;; *) continue ;; esac
  echo "Setting up ${l#Package: } (1) ..."
  i=0; while [ $i -lt 30000 ]; do i=$((i+1)); done
done < /var/lib/dpkg/status
"#;

fn host_file(p: &str) -> Vec<u8> {
    std::fs::read(p).unwrap_or_else(|e| panic!("{p}: {e}"))
}

/// The packages of a root that `create` can finish natively: a shell, a
/// dpkg and an apt-get that do what the install script needs, and a few
/// more to count.
fn packages() -> Vec<Pkg> {
    let mut v = vec![
        pkg("base-files", "13").essential(),
        pkg("dash", "1")
            .essential()
            .file("usr/bin/sh", 0o755, &host_file("/usr/bin/dash"))
            .file(
                "usr/lib/x86_64-linux-gnu/libc.so.6",
                0o755,
                &host_file("/lib/x86_64-linux-gnu/libc.so.6"),
            )
            .file(
                "usr/lib64/ld-linux-x86-64.so.2",
                0o755,
                &host_file("/lib64/ld-linux-x86-64.so.2"),
            ),
        pkg("dpkg", "1")
            .essential()
            .file("usr/bin/dpkg", 0o755, FAKE_DPKG.as_bytes())
            .file("usr/bin/apt-get", 0o755, b"#!/bin/sh\nexit 0\n"),
    ];
    for i in 0..6 {
        v.push(
            pkg(
                &format!("extra{i}-with-a-rather-long-package-name-to-fill-the-line"),
                "1",
            )
            .essential(),
        );
    }
    v.into_iter().map(|p| p.arch("amd64")).collect()
}

fn can_run() -> bool {
    require(
        is_root() || have_userns(),
        "user namespaces",
        "run as root, or where user namespaces are allowed",
    ) && require(
        host_arch() == "amd64" && Path::new("/lib64/ld-linux-x86-64.so.2").exists(),
        "an amd64 host",
        "the native test root is amd64 (it carries the host's dash and libc)",
    )
}

fn create_args<'a>(manifests: &'a str, name: &'a str, verbose: bool) -> Vec<&'a str> {
    let mut v = vec![
        "--manifests",
        manifests,
        "create",
        "amd64",
        "--suite",
        "test",
    ];
    // Each create is cold: a root copied from its template has no
    // download or configure phase.
    v.extend(["--name", name, "--force", "--no-template"]);
    if verbose {
        v.insert(0, "-v");
    }
    v
}

const PHASES: [&str; 5] = ["update", "resolve", "download", "unpack", "configure"];

#[test]
fn in_a_log_each_phase_has_a_start_and_an_end_line() {
    if !can_run() {
        return;
    }
    let served = NativeArchive::serve("zchroot progress archive", packages());
    let m = served.manifests.to_str().unwrap();
    let home = tempfile::tempdir().unwrap();
    // stderr is a pipe here: the log form.
    let o = zchroot(home.path(), &create_args(m, "logged", false));
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    for p in PHASES {
        let start = err
            .lines()
            .position(|l| l.starts_with(&format!("{p}: started")));
        let end = err
            .lines()
            .position(|l| l.starts_with(&format!("{p}: done in ")) && l.contains(" s"));
        assert!(start.is_some() && end > start, "{p}: {err}");
    }
    assert!(
        err.contains("configure: started (9 packages)"),
        "the configure phase counts the packages: {err}"
    );
    assert!(err.contains("configure: done in "), "{err}");
    assert!(
        err.lines()
            .any(|l| l.starts_with("configure: done in ") && l.ends_with("(9/9 packages)")),
        "dpkg's lines were counted: {err}"
    );
    // No terminal codes in a log.
    assert!(!err.contains('\x1b') && !err.contains('\r'), "{err:?}");

    // -v: the lines a terminal shows above its bars, here too.
    let o = zchroot(home.path(), &create_args(m, "logged", true));
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    let conf = err.split("configure: started").nth(1).unwrap_or_default();
    assert_eq!(
        conf.lines().filter(|l| l.starts_with("  ")).count(),
        9,
        "each package set up has a line: {err}"
    );

    // -q: nothing but the result.
    let o = zchroot(home.path(), &{
        let mut a = create_args(m, "logged", false);
        a.insert(0, "-q");
        a
    });
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stderr(&o), "");
}

/// The screen a terminal of `cols` columns shows after `out`, and the
/// widest stretch written without a line break or a cursor move (wider
/// than `cols` would wrap). Knows what indicatif writes: text, CR, LF and
/// CSI sequences (cursor up/down/column, erase line/display, colours).
fn screen(out: &[u8], cols: usize) -> (Vec<String>, usize) {
    let mut rows: Vec<Vec<char>> = vec![vec![]];
    let (mut r, mut c) = (0usize, 0usize);
    let mut widest = 0;
    let mut run = 0;
    let text = String::from_utf8_lossy(out);
    let mut chars = text.chars().peekable();
    while let Some(ch) = chars.next() {
        match ch {
            '\r' => (c, run) = (0, 0),
            '\n' => {
                r += 1;
                (c, run) = (0, 0);
                if rows.len() <= r {
                    rows.push(vec![]);
                }
            }
            '\x1b' if chars.peek() == Some(&'[') => {
                chars.next();
                let mut param = String::new();
                let mut fin = ' ';
                for x in chars.by_ref() {
                    if x.is_ascii_alphabetic() {
                        fin = x;
                        break;
                    }
                    param.push(x);
                }
                let n: usize = param.trim_start_matches('?').parse().unwrap_or(1);
                run = 0;
                match fin {
                    'A' => r = r.saturating_sub(n),
                    'B' => r += n,
                    'G' => c = n.saturating_sub(1),
                    'K' => match param.as_str() {
                        "2" => rows[r].clear(),
                        "1" => rows[r].iter_mut().take(c + 1).for_each(|x| *x = ' '),
                        _ => rows[r].truncate(c),
                    },
                    'J' => rows.truncate(r + 1),
                    _ => {} // colours, cursor shown/hidden
                }
                while rows.len() <= r {
                    rows.push(vec![]);
                }
            }
            ch => {
                run += 1;
                widest = widest.max(run);
                if rows[r].len() <= c {
                    rows[r].resize(c + 1, ' ');
                }
                rows[r][c] = ch;
                c += 1;
            }
        }
    }
    let rows = rows
        .into_iter()
        .map(|r| r.into_iter().collect::<String>().trim_end().to_string())
        .collect();
    let _ = cols;
    (rows, widest)
}

#[test]
fn on_a_terminal_of_80_columns_bars_fit_and_are_gone_at_the_end() {
    if !can_run() || !crate::common::require_root("to run zchroot on a pty of the test's own") {
        return;
    }
    let served = NativeArchive::serve("zchroot progress archive", packages());
    let m = served.manifests.to_str().unwrap();
    let term = Term::new(24, 80);
    let (status, raw) = run_on_raw(
        &term,
        None,
        &create_args(m, "shown", false),
        true,
        |_, _| {},
    );
    let shown = raw.replace('\r', "");
    assert!(status.success(), "{shown}");
    let (rows, widest) = screen(raw.as_bytes(), 80);
    assert!(widest <= 80, "a line of {widest} columns wraps: {shown:?}");
    // Every phase had a bar with its name, and the configure bar its count.
    for p in PHASES {
        assert!(
            shown.contains(&format!("{p:>9} ")),
            "no bar for {p}: {shown:?}"
        );
    }
    assert!(
        shown.contains("/9 [") && shown.contains("setting up "),
        "the configure bar shows count/total and the package: {shown:?}"
    );
    // What stays on the screen: the result, no bar.
    let left: Vec<&String> = rows.iter().filter(|r| !r.is_empty()).collect();
    assert_eq!(left.len(), 1, "{rows:#?}");
    assert!(left[0].starts_with("shown /"), "{rows:#?}");
}
