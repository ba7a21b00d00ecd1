//! `create`, `list`, `destroy` for real: a trixie arm64 minbase root from
//! the Debian archive, configured under qemu, as root and rootless; bad
//! input and failures leave nothing behind.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};

use crate::archive::{pkg, NativeArchive};
use crate::common::{
    have_userns, is_root, let_others_reach, require, require_root_and_debian, require_test_user,
    stderr, stdout, zchroot, zchroot_as, Zchroot,
};

/// Names in `dir` (empty when it does not exist).
fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// This module's home for `test`, without the roots an earlier run of
/// the tests left (they would be in the way).
fn home_for(test: &str) -> PathBuf {
    let h = crate::common::home_for("rootfs", test);
    if h.join("state").exists() {
        let _ = zchroot(&h, &["-q", "destroy", "--all"]);
    }
    h
}

#[test]
fn create_run_list_destroy_as_root() {
    if !require_root_and_debian() {
        return;
    }
    let home = home_for("root");
    let o = zchroot(&home, &["-q", "create", "arm64", "--name", "t-root"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let tree = home.join("state/roots/t-root/root");
    assert_eq!(stdout(&o), format!("t-root {}", tree.display()));

    // dpkg's database is complete and consistent, with what resolve says.
    let o = zchroot(
        &home,
        &[
            "-q",
            "run",
            "t-root",
            "--",
            "sh",
            "-c",
            // dpkg -V prints a line per file that differs from its package.
            "dpkg --audit && dpkg -V && dpkg-query -W -f '${Package} ${Status}\\n'",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let installed: Vec<String> = stdout(&o).lines().map(|l| l.to_string()).collect();
    assert!(
        installed
            .iter()
            .all(|l| l.ends_with(" install ok installed")),
        "{installed:?}"
    );
    let mut names: Vec<&str> = installed
        .iter()
        .map(|l| l.split(' ').next().unwrap())
        .collect();
    names.sort();
    let r = zchroot(&home, &["-q", "resolve", "arm64"]);
    let mut resolved: Vec<String> = stdout(&r)
        .lines()
        .map(|l| l.split(' ').next().unwrap().to_string())
        .collect();
    resolved.sort();
    assert_eq!(names, resolved);

    // apt works at once against the same suites.
    let o = zchroot(
        &home,
        &[
            "-q",
            "run",
            "t-root",
            "--",
            "sh",
            "-c",
            "apt-get install -y -q hello >/dev/null && hello && uname -m",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "Hello, world!\naarch64");

    // list shows it.
    let o = zchroot(&home, &["list", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let row = &v.as_array().unwrap()[0];
    assert_eq!(row["name"], "t-root");
    assert_eq!(row["arch"], "arm64");
    assert_eq!(row["release"], "trixie");
    assert_eq!(row["variant"], "minbase");
    assert!(row["size_bytes"].as_u64().unwrap() > 100 << 20);
    assert!(row["last_used"].as_u64().is_some());

    // A second create of the same name says so.
    let o = zchroot(&home, &["-q", "create", "arm64", "--name", "t-root"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("a root named 't-root' exists already"),
        "{}",
        stderr(&o)
    );
    assert!(stderr(&o).contains("--force"));

    // destroy: gone, and with --purge-cache nothing of zchroot's is left.
    let o = zchroot(&home, &["destroy", "t-root"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!tree.exists());
    let o = zchroot(&home, &["run", "t-root", "--", "true"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("no root named 't-root'"));
    let o = zchroot(&home, &["destroy", "--all", "--purge-cache"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        entries(&home),
        Vec::<String>::new(),
        "data directories left behind"
    );
}

#[test]
fn rootless_create_keeps_package_ownership_and_destroys_cleanly() {
    if !require_root_and_debian() {
        return;
    }
    let Some(u) = require_test_user() else {
        return;
    };
    let (user, subgid) = (u.name, u.subgid);
    let home = crate::common::module_dir("rootfs").join("rootless");
    if home.exists() {
        let _ = zchroot_as(&user, &home, &["-q", "destroy", "--all", "--purge-cache"]);
    }
    std::fs::create_dir_all(&home).unwrap();
    assert!(Command::new("chown")
        .arg(&user)
        .arg(&home)
        .status()
        .unwrap()
        .success());
    let_others_reach(&home);
    let o = zchroot_as(&user, &home, &["-q", "create", "arm64", "--name", "t-user"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let tree = home.join("state/roots/t-user/root");
    // /etc/shadow is root:shadow (gid 42) inside: subgid start + 41 outside.
    use std::os::unix::fs::MetadataExt;
    let shadow = std::fs::metadata(tree.join("etc/shadow")).unwrap();
    assert_eq!(shadow.gid(), subgid + 41);
    let o = zchroot_as(
        &user,
        &home,
        &[
            "-q",
            "run",
            "t-user",
            "--",
            "sh",
            "-c",
            "stat -c '%U:%G' /etc/shadow; dpkg --audit && dpkg -V && echo ok",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "root:shadow\nok");
    let o = zchroot_as(&user, &home, &["destroy", "--all", "--purge-cache"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(entries(&home), Vec::<String>::new());
}

#[test]
fn bad_input_exits_1_and_writes_nothing() {
    let home = tempfile::tempdir().unwrap();
    let z = home.path().join("z");
    for (args, msg) in [
        (
            vec!["create", "arm46"],
            "unknown architecture 'arm46': known are amd64, arm64, armhf, riscv64",
        ),
        (
            vec!["create", "arm64", "--suite", "sid"],
            "unknown release 'sid'",
        ),
        (
            vec!["create", "arm64", "--name", "Bad/Name"],
            "bad root name 'Bad/Name'",
        ),
        (
            vec!["run", "nothing-here", "--", "true"],
            "no root named 'nothing-here'; there are none yet",
        ),
        (
            vec!["destroy", "nothing-here"],
            "no root named 'nothing-here'",
        ),
    ] {
        let o = zchroot(&z, &args);
        assert_eq!(o.status.code(), Some(1), "{args:?}");
        assert!(stderr(&o).contains(msg), "{args:?}: {}", stderr(&o));
    }
    // Lookups may create the (empty) locks directory at most; no root, no staging.
    assert!(entries(&z.join("state/roots")).is_empty());
}

#[test]
fn a_failed_create_leaves_no_staging_and_keeps_its_log() {
    // A native (amd64) root from a local archive whose packages hold no
    // dpkg: unpacking works, configuring inside fails.
    if !require(
        is_root() || have_userns(),
        "user namespaces",
        "run as root, or where user namespaces are allowed",
    ) {
        return;
    }
    let packages = vec![
        pkg("base-files", "13").essential().arch("amd64"),
        pkg("fake-dpkg", "1.0").essential().arch("amd64"),
    ];
    let served = NativeArchive::serve("zchroot failing archive", packages);
    let manifests = &served.manifests;
    let home = tempfile::tempdir().unwrap();
    let m = manifests.to_str().unwrap();
    let o = zchroot(
        home.path(),
        &[
            "-q",
            "--manifests",
            m,
            "create",
            "amd64",
            "--suite",
            "test",
            "--name",
            "broken",
        ],
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("installing the packages inside the root failed"),
        "{err}"
    );
    let log = home.path().join("state/logs/create-broken.log");
    assert!(err.contains(&log.display().to_string()), "{err}");
    assert_eq!(
        entries(&home.path().join("state/roots")),
        Vec::<String>::new(),
        "staging left behind"
    );
}

#[test]
fn an_interrupted_create_is_cleaned_by_the_next() {
    if !require_root_and_debian() {
        return;
    }
    let home = home_for("interrupted");
    let mut child = Zchroot::new(&home)
        .command(&["-q", "create", "arm64", "--name", "cut"])
        .spawn()
        .unwrap();
    let roots = home.join("state/roots");
    let t = Instant::now();
    // Kill it once it is configuring inside the root.
    while !entries(&roots)
        .iter()
        .any(|n| n.starts_with(".staging-cut-"))
        || !roots_log_started(&roots)
    {
        assert!(
            t.elapsed() < Duration::from_secs(600),
            "create never got to configure"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(entries(&roots)
        .iter()
        .any(|n| n.starts_with(".staging-cut-")));
    // The next run (even one that fails on bad input later) cleans it.
    let o = zchroot(
        &home,
        &[
            "-q",
            "create",
            "arm64",
            "--name",
            "cut",
            "--include",
            "no-such-package-zz",
        ],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("unknown package 'no-such-package-zz'"),
        "{}",
        stderr(&o)
    );
    assert_eq!(entries(&roots), Vec::<String>::new());
}

fn roots_log_started(roots: &Path) -> bool {
    entries(roots)
        .iter()
        .filter(|n| n.starts_with(".staging-cut-"))
        .any(|n| {
            roots
                .join(n)
                .join("root/var/log/zchroot-create.log")
                .exists()
        })
}

/// `zchroot-*` names in /tmp (what an interrupted run must not leave).
fn tmp_zchroot_entries() -> Vec<String> {
    entries(Path::new("/tmp"))
        .into_iter()
        .filter(|n| n.starts_with("zchroot-"))
        .collect()
}

/// The pid of `parent`'s first child (zchroot under `runuser`).
fn child_of(parent: u32) -> Option<i32> {
    std::fs::read_to_string(format!("/proc/{parent}/task/{parent}/children"))
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Starts a native `create` from a local archive whose setup hook (on the
/// host, after the staging tree is made) sleeps, interrupts it once its
/// staging tree is there, and checks that it exits 130 at once with
/// nothing left behind. `group`: the signal goes to the whole process
/// group, as the terminal's Ctrl-C does (the hook's `sleep` dies of it
/// too); otherwise to zchroot only, which stops after the hook. The exit
/// status is 128+N.
fn interrupted_create_leaves_nothing(user: Option<&str>, group: bool, sig: Signal) {
    use nix::unistd::Pid;
    use std::os::unix::process::CommandExt;
    let packages = vec![
        pkg("base-files", "13").essential().arch("amd64"),
        pkg("fake-dpkg", "1.0").essential().arch("amd64"),
    ];
    let served = NativeArchive::serve("zchroot interrupted archive", packages);
    let manifests = served.manifests.clone();
    let home = tempfile::tempdir().unwrap();
    let home = home.path().join("home");
    std::fs::create_dir(&home).unwrap();
    let mut z = Zchroot::new(&home);
    if let Some(user) = user {
        for p in [&home, &manifests] {
            let_others_reach(&p.join("x"));
        }
        assert!(Command::new("chown")
            .args(["-R", user])
            .arg(&home)
            .status()
            .unwrap()
            .success());
        z = z.user(user);
    }
    let tmp_before = tmp_zchroot_entries();
    let m = manifests.to_str().unwrap();
    let mut cmd = z.command(&[
        "-q",
        "--manifests",
        m,
        "create",
        "amd64",
        "--suite",
        "test",
        "--name",
        "cut",
        "--setup-hook",
        "sleep 3",
    ]);
    cmd.process_group(0)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let roots = home.join("state/roots");
    let t = Instant::now();
    while !entries(&roots)
        .iter()
        .any(|n| n.starts_with(".staging-cut-"))
    {
        assert!(
            child.try_wait().unwrap().is_none(),
            "create ended before it made its staging tree"
        );
        assert!(t.elapsed() < Duration::from_secs(120), "no staging tree");
        std::thread::sleep(Duration::from_millis(20));
    }
    let started = Instant::now();
    let pid = child.id() as i32;
    if group {
        kill(Pid::from_raw(-pid), sig).unwrap();
    } else {
        let z = match user {
            Some(_) => child_of(child.id()).expect("zchroot under runuser"),
            None => pid,
        };
        kill(Pid::from_raw(z), sig).unwrap();
    }
    let o = child.wait_with_output().unwrap();
    assert_eq!(
        o.status.code(),
        Some(128 + sig as i32),
        "{:?} {}",
        o.status,
        stderr(&o)
    );
    assert!(
        stderr(&o).contains(&format!("stopped by {sig}")),
        "{}",
        stderr(&o)
    );
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "took {:?} to stop",
        started.elapsed()
    );
    assert_eq!(entries(&roots), Vec::<String>::new(), "staging left behind");
    assert_eq!(tmp_zchroot_entries(), tmp_before, "left in /tmp");
    // Nor any hidden temporary directory in the state directory.
    let hidden: Vec<String> = entries(&home.join("state"))
        .into_iter()
        .filter(|n| n.starts_with('.'))
        .collect();
    assert_eq!(hidden, Vec::<String>::new());
}

#[test]
fn ctrl_c_during_create_removes_its_staging_at_once() {
    if !require(
        is_root() || have_userns(),
        "user namespaces",
        "run as root, or where user namespaces are allowed",
    ) {
        return;
    }
    interrupted_create_leaves_nothing(None, true, Signal::SIGINT);
}

#[test]
fn sigterm_during_create_removes_its_staging_and_exits_143() {
    if !require(
        is_root() || have_userns(),
        "user namespaces",
        "run as root, or where user namespaces are allowed",
    ) {
        return;
    }
    interrupted_create_leaves_nothing(None, false, Signal::SIGTERM);
}

#[test]
fn sigint_to_a_rootless_create_removes_its_staging_at_once() {
    if !require_root_and_debian() {
        return;
    }
    let Some(u) = require_test_user() else {
        return;
    };
    interrupted_create_leaves_nothing(Some(&u.name), false, Signal::SIGINT);
}
