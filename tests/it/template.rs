//! Root templates for real: a native (amd64) root from the local signed
//! test archive, made cold, then made again from its template: the same
//! tree (names, owners, modes, contents, link targets) but for the
//! hostname; a version change in the archive makes a new template;
//! `destroy --purge-cache` removes them; as root and rootless.
//!
//! The test packages hold the host's dash as /bin/sh, busybox, and a `dpkg` script
//! that does what maintainer scripts do to a tree (files of other owners,
//! setuid bits, hard links, a FIFO), so that the install runs for real in
//! the sandbox without a Debian dpkg.

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use crate::archive::{pkg, suite, NativeArchive, Pkg};
use crate::common::{
    have_userns, is_root, let_others_reach, require, require_test_user, stderr, stdout, zchroot,
    zchroot_as,
};

const BUSYBOX: &str = "/bin/busybox";

/// What the install script in the root runs as `dpkg`: it leaves files
/// of another owner, a setuid file, a hard link and a FIFO.
const FAKE_DPKG: &str = "#!/bin/sh\n\
    B=/usr/bin/busybox\n\
    case \"$*\" in *--configure*)\n\
    $B mkdir -p /var/lib/t\n\
    echo owned > /var/lib/t/owned; $B chown 100:101 /var/lib/t/owned\n\
    echo suid > /var/lib/t/suid; $B chmod 4755 /var/lib/t/suid\n\
    $B ln -f /var/lib/t/suid /var/lib/t/hardlink\n\
    [ -p /var/lib/t/fifo ] || $B mkfifo -m 640 /var/lib/t/fifo\n\
    $B ln -sf ../../../etc/hostname /var/lib/t/link\n\
    ;; esac\nexit 0\n";

/// The host's dash and what it links (busybox's own shell would run its
/// `dpkg` applet rather than the script).
fn dash() -> Pkg {
    let read = |p: &str| std::fs::read(p).unwrap_or_else(|e| panic!("{p}: {e}"));
    pkg("fake-dash", "1")
        .essential()
        .file("usr/bin/sh", 0o755, &read("/usr/bin/dash"))
        .file(
            "usr/lib/x86_64-linux-gnu/libc.so.6",
            0o755,
            &read("/lib/x86_64-linux-gnu/libc.so.6"),
        )
        .file(
            "usr/lib64/ld-linux-x86-64.so.2",
            0o755,
            &read("/lib64/ld-linux-x86-64.so.2"),
        )
}

fn packages(tools_version: &str) -> Vec<Pkg> {
    let busybox = std::fs::read(BUSYBOX).expect("a static busybox (busybox-static)");
    vec![
        dash(),
        pkg("base-files", "13").essential().dir("etc", 0o755).file(
            "etc/os-release",
            0o644,
            b"ID=test\n",
        ),
        pkg("fake-tools", tools_version)
            .essential()
            .file("usr/bin/busybox", 0o755, &busybox)
            .file("usr/bin/dpkg", 0o755, FAKE_DPKG.as_bytes())
            .file("usr/bin/apt-get", 0o755, b"#!/bin/sh\nexit 0\n"),
    ]
}

/// Every entry under `root`: kind, owner, mode, and contents or link target.
fn tree(root: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        for e in std::fs::read_dir(root.join(&rel)).unwrap() {
            let e = e.unwrap();
            let r = rel.join(e.file_name());
            let p = root.join(&r);
            let m = std::fs::symlink_metadata(&p).unwrap();
            let what = if m.is_dir() {
                stack.push(r.clone());
                String::new()
            } else if m.file_type().is_symlink() {
                std::fs::read_link(&p).unwrap().display().to_string()
            } else if m.is_file() {
                format!("{:x}", md5ish(&std::fs::read(&p).unwrap()))
            } else {
                "node".into()
            };
            out.insert(
                r,
                format!(
                    "{:o} {}:{} {} {what}",
                    m.mode(),
                    m.uid(),
                    m.gid(),
                    m.nlink()
                ),
            );
        }
    }
    out
}

/// A cheap content fingerprint (FNV-1a), enough to tell files apart.
fn md5ish(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf29ce484222325u64, |h, &x| {
        (h ^ x as u64).wrapping_mul(0x100000001b3)
    })
}

/// The two trees, equal but for what must differ per root.
fn assert_same_tree(cold: &Path, warm: &Path) {
    let (mut a, mut b) = (tree(cold), tree(warm));
    for t in [&mut a, &mut b] {
        t.remove(Path::new("etc/hostname"));
    }
    assert!(a.len() > 10, "{a:?}");
    for (k, v) in &a {
        assert_eq!(b.get(k), Some(v), "{} differs", k.display());
    }
    assert_eq!(a.len(), b.len(), "entries only in the copy");
}

/// Runs zchroot as `user` (None: this process's user).
fn run(user: Option<&str>, home: &Path, args: &[&str]) -> std::process::Output {
    match user {
        Some(u) => zchroot_as(u, home, args),
        None => zchroot(home, args),
    }
}

fn create(user: Option<&str>, home: &Path, m: &str, name: &str, extra: &[&str]) -> String {
    let mut args = vec![
        "-v",
        "--manifests",
        m,
        "create",
        "amd64",
        "--suite",
        "test",
        "--name",
        name,
    ];
    args.extend(extra);
    let t = Instant::now();
    let o = run(user, home, &args);
    assert!(o.status.success(), "{}", stderr(&o));
    eprintln!(
        "create {name} {extra:?}: {:.2} s",
        t.elapsed().as_secs_f64()
    );
    stderr(&o)
}

fn templates(user: Option<&str>, home: &Path) -> Vec<String> {
    let o = run(user, home, &["list", "--templates"]);
    assert!(o.status.success(), "{}", stderr(&o));
    stdout(&o).lines().skip(1).map(str::to_string).collect()
}

const USED: &str = "copying the root from its template";

fn templates_work(user: Option<&str>, home: &Path) {
    let served = NativeArchive::serve("zchroot template archive", packages("1.0"));
    // The test user reads the manifests (its keyring) too.
    for d in [served.archive.dir.path(), &served.manifests] {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let m = served.manifests.to_str().unwrap();
    let roots = home.join("state/roots");

    let err = create(user, home, m, "cold", &[]);
    assert!(!err.contains(USED), "{err}");
    let t = templates(user, home);
    assert_eq!(t.len(), 1, "{t:?}");
    assert!(t[0].contains(" amd64    test       minbase "), "{t:?}");

    let err = create(user, home, m, "warm", &[]);
    assert!(
        err.contains(USED),
        "the second create did not use the template: {err}"
    );
    assert_same_tree(&roots.join("cold/root"), &roots.join("warm/root"));
    let hostname = std::fs::read_to_string(roots.join("warm/root/etc/hostname")).unwrap();
    assert_eq!(hostname, "warm\n");
    let owned = std::fs::metadata(roots.join("warm/root/var/lib/t/owned")).unwrap();
    let suid = std::fs::metadata(roots.join("warm/root/var/lib/t/suid")).unwrap();
    assert_eq!(suid.mode() & 0o7777, 0o4755);
    assert_eq!(suid.nlink(), 2);
    assert_ne!(owned.uid(), suid.uid(), "the chown inside shows outside");
    let o = run(
        user,
        home,
        &[
            "-q",
            "run",
            "warm",
            "--",
            "/bin/sh",
            "-c",
            "busybox cat /etc/hostname; busybox stat -c %u:%g /var/lib/t/owned",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "warm\n100:101");

    // --no-template builds cold (and keeps that as the template).
    let err = create(user, home, m, "again", &["--no-template"]);
    assert!(!err.contains(USED), "{err}");
    assert_eq!(templates(user, home).len(), 1);

    // A new version in the archive: a new key, a new template.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let mut s = suite("test", packages("1.1"));
    s.packages.iter_mut().for_each(|p| p.arch = "amd64".into());
    served.archive.add_suite_for(&served.key, &s, "amd64");
    let err = create(user, home, m, "newer", &[]);
    assert!(
        !err.contains(USED),
        "a changed package set used the old template: {err}"
    );
    assert_eq!(templates(user, home).len(), 2);

    let o = run(user, home, &["-q", "destroy", "--all", "--purge-cache"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!home.join("cache/templates").exists());
    assert!(templates(user, home).is_empty());
}

#[test]
fn a_second_create_copies_the_template() {
    if !require(
        is_root() || have_userns(),
        "root or user namespaces",
        "run the tests as root, as CI does",
    ) || !require(
        Path::new(BUSYBOX).exists(),
        "a static busybox",
        "apt-get install busybox-static",
    ) {
        return;
    }
    let home = tempfile::tempdir().unwrap();
    templates_work(None, home.path());
}

#[test]
fn a_second_rootless_create_copies_the_template() {
    if !require(
        is_root(),
        "root (to act as the test user)",
        "run the tests as root, as CI does",
    ) || !require(
        Path::new(BUSYBOX).exists(),
        "a static busybox",
        "apt-get install busybox-static",
    ) {
        return;
    }
    let Some(u) = require_test_user() else {
        return;
    };
    let home = crate::common::module_dir("template").join("rootless");
    if home.exists() {
        let _ = zchroot_as(&u.name, &home, &["-q", "destroy", "--all", "--purge-cache"]);
    }
    std::fs::create_dir_all(&home).unwrap();
    assert!(Command::new("chown")
        .arg(&u.name)
        .arg(&home)
        .status()
        .unwrap()
        .success());
    let_others_reach(&home);
    templates_work(Some(&u.name), &home);
}
