//! The host's binfmt_misc path (kernels before 6.7, as root; forced here
//! with `ZCHROOT_BINFMT=host`): runs work whether or not the host has
//! binfmt_misc mounted, and an entry a killed run left is removed by the
//! next zchroot command, `doctor --fix` and `destroy --all`. And doctor's
//! checks of `dev.tty.legacy_tiocsti` and of the state directories' modes.
//!
//! As root in the initial user namespace, every binfmt_misc mount shows
//! the one host table. On Linux 6.7+ its entries vanish when its last mount
//! goes (before 6.7 they stay), so these tests hold a mount of their own in
//! a private mount namespace ([`TableHolder`]) for the table to outlive the
//! killed processes, as it does on a host that mounts binfmt_misc.

use std::io::{BufRead, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::common::{
    have_command, home_for, host_binfmt_lock, require, require_root_and_debian, stderr, Zchroot,
    ZCHROOT,
};
use crate::sandbox::busybox_root;
use zchroot::sandbox::host_binfmt::parse_entry_name;

const BUSYBOX: &str = "/usr/bin/busybox";

/// This module's home for root's runs (qemu is fetched into it once).
fn root_home() -> PathBuf {
    home_for("host_binfmt", "root")
}

/// zchroot on the host's binfmt_misc table, as before Linux 6.7.
fn zchroot(home: &Path, args: &[&str]) -> Output {
    Zchroot::new(home).env("ZCHROOT_BINFMT", "host").run(args)
}

/// The names in the host's table, through zchroot's own helper.
fn table() -> Vec<String> {
    let o = Command::new(ZCHROOT)
        .args(["__host-binfmt", "list"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// The entry zchroot process `pid` registered for `qemu`, once it is there
/// (panics after 20 s).
pub fn entry_of(pid: u32, qemu: &str) -> String {
    let t = Instant::now();
    loop {
        let found = table()
            .into_iter()
            .find(|n| parse_entry_name(n).is_some_and(|(q, o)| q == qemu && o.pid == pid));
        if let Some(n) = found {
            return n;
        }
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "no entry of zchroot {pid} for {qemu}: {:?}",
            table()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Removes an entry directly through the table's file (the test's own
/// cleanup, not zchroot's).
fn remove_entry(name: &str) {
    let _ = Command::new(ZCHROOT)
        .args(["__host-binfmt", "remove", name])
        .output();
}

/// A binfmt_misc mount in a private mount namespace of its own, so the
/// table's entries live while the test runs, whatever the kernel; on drop,
/// removes the entries the test made and ends its process (by PID).
struct TableHolder {
    child: Child,
    made: Vec<String>,
    _dir: tempfile::TempDir,
}

impl TableHolder {
    fn start() -> TableHolder {
        let dir = tempfile::tempdir().unwrap();
        let mut child = Command::new("unshare")
            .args(["-m", "--propagation", "private", "sh", "-c"])
            .arg("mount -t binfmt_misc binfmt_misc \"$0\" && echo ready && exec sleep 600")
            .arg(dir.path())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(
            line, "ready\n",
            "mounting binfmt_misc in a private namespace"
        );
        TableHolder {
            child,
            made: vec![],
            _dir: dir,
        }
    }
}

impl Drop for TableHolder {
    fn drop(&mut self) {
        for n in &self.made {
            remove_entry(n);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// PIDs of processes whose command line holds `needle` (NUL-separated).
fn processes_with(needle: &[u8]) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| c.windows(needle.len()).any(|w| w == needle))
                .unwrap_or(false)
        })
        .collect()
}

fn wait_gone(pid: i32) {
    let t = Instant::now();
    while Path::new(&format!("/proc/{pid}")).exists() && t.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Starts a run under the host path, waits until its command runs, then
/// SIGKILLs the `__host-binfmt` helper and zchroot itself, so that nothing
/// of zchroot's is left to remove its entry; returns the entry's name.
fn killed_run(holder: &mut TableHolder) -> String {
    let root = busybox_root().to_str().unwrap().to_string();
    let mut child = Zchroot::new(root_home())
        .command(&["-q", "run", "--dir", &root, "--", BUSYBOX, "sh", "-c"])
        .arg("echo started; /usr/bin/busybox sleep 60")
        .env("ZCHROOT_BINFMT", "host")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut buf = [0u8; 8];
    child.stdout.take().unwrap().read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"started\n");
    let name = entry_of(child.id(), "aarch64");
    holder.made.push(name.clone());
    let mut needle = b"__host-binfmt\0register\0".to_vec();
    needle.extend_from_slice(name.as_bytes());
    let helpers = processes_with(&needle);
    assert_eq!(helpers.len(), 1, "the helper holding {name}");
    let pid = nix::unistd::Pid::from_raw(helpers[0]);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).unwrap();
    wait_gone(helpers[0]);
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        table().contains(&name),
        "{name} should outlive its killed zchroot and helper: {:?}",
        table()
    );
    name
}

#[test]
fn an_entry_left_by_a_killed_run_is_removed_by_the_next_command() {
    if !require_root_and_debian()
        || !require(
            have_command("unshare"),
            "unshare (util-linux)",
            "apt-get install util-linux",
        )
    {
        return;
    }
    let _table = host_binfmt_lock();
    busybox_root();
    let o = zchroot(
        &root_home(),
        &[
            "-q",
            "run",
            "--dir",
            busybox_root().to_str().unwrap(),
            "--",
            BUSYBOX,
            "true",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o)); // fetches qemu first
    let mut holder = TableHolder::start();

    // doctor lists it, doctor --fix removes it.
    let name = killed_run(&mut holder);
    let o = zchroot(&root_home(), &["doctor", "--json"]);
    let checks: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let stale = checks
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "stale binfmt entries")
        .unwrap_or_else(|| panic!("no stale entry check: {checks}"));
    assert_eq!(stale["status"], "warn", "{stale}");
    assert!(stale["detail"].as_str().unwrap().contains(&name), "{stale}");
    assert!(
        table().contains(&name),
        "doctor without --fix changes nothing"
    );
    let o = zchroot(&root_home(), &["doctor", "--fix"]);
    assert!(
        stderr(&o).contains(&format!(
            "fixed: removed the stale binfmt_misc entry {name}"
        )),
        "{}",
        stderr(&o)
    );
    assert!(!table().contains(&name), "doctor --fix left {name}");

    // The next run removes it (before it registers its own).
    let name = killed_run(&mut holder);
    let o = zchroot(
        &root_home(),
        &[
            "-q",
            "run",
            "--dir",
            busybox_root().to_str().unwrap(),
            "--",
            BUSYBOX,
            "true",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!table().contains(&name), "the next run left {name}");

    // So does destroy --all.
    let name = killed_run(&mut holder);
    let home = tempfile::tempdir().unwrap();
    let o = zchroot(home.path(), &["-q", "destroy", "--all"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!table().contains(&name), "destroy --all left {name}");

    // The host's own entries, and live runs', are never touched.
    assert!(table().iter().all(|n| !holder.made.contains(n)));
}

/// Runs `zchroot run` in a private mount namespace prepared by `setup`.
fn run_in_namespace(setup: &str) -> Output {
    let root = busybox_root().to_str().unwrap().to_string();
    Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c"])
        .arg(format!("{setup} && exec \"$@\""))
        .args([
            "sh", ZCHROOT, "-q", "run", "--dir", &root, "--", BUSYBOX, "uname", "-m",
        ])
        .env("ZCHROOT_HOME", root_home())
        .env("ZCHROOT_BINFMT", "host")
        .output()
        .unwrap()
}

#[test]
fn runs_work_whether_or_not_the_host_has_binfmt_misc_mounted() {
    if !require_root_and_debian()
        || !require(
            have_command("unshare") && have_command("mountpoint"),
            "unshare and mountpoint (util-linux)",
            "apt-get install util-linux",
        )
    {
        return;
    }
    let _table = host_binfmt_lock();
    busybox_root();
    let o = zchroot(
        &root_home(),
        &[
            "-q",
            "run",
            "--dir",
            busybox_root().to_str().unwrap(),
            "--",
            BUSYBOX,
            "true",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o)); // fetches qemu first
    let holder = TableHolder::start();
    let before = table();
    let t = "/proc/sys/fs/binfmt_misc";
    for (case, setup) in [
        (
            "mounted (as systemd hosts have it)",
            format!("{{ mountpoint -q {t} || mount -t binfmt_misc binfmt_misc {t}; }} && test -e {t}/register"),
        ),
        (
            "not mounted",
            format!("while mountpoint -q {t}; do umount {t} || exit 99; done; test ! -e {t}/register"),
        ),
    ] {
        let o = run_in_namespace(&setup);
        assert!(o.status.success(), "{case}: {}", stderr(&o));
        assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "aarch64", "{case}");
        assert_eq!(table(), before, "{case}: the run's entry is removed after it");
    }
    drop(holder);
}

/// A ZCHROOT_HOME whose state directories are made with `mode`.
fn home_with_dirs(mode: u32) -> tempfile::TempDir {
    let home = tempfile::tempdir().unwrap();
    for d in ["state", "state/roots", "cache"] {
        let p = home.path().join(d);
        std::fs::create_dir_all(&p).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    home
}

fn doctor_json(home: &Path) -> Vec<serde_json::Value> {
    let o = Zchroot::new(home).run(&["doctor", "--json"]);
    serde_json::from_slice::<serde_json::Value>(&o.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", stderr(&o)))
        .as_array()
        .unwrap()
        .clone()
}

fn checks_named<'a>(list: &'a [serde_json::Value], name: &str) -> Vec<&'a serde_json::Value> {
    list.iter().filter(|c| c["name"] == name).collect()
}

#[test]
fn doctor_reports_legacy_tiocsti_from_the_kernel() {
    let value = std::fs::read_to_string("/proc/sys/dev/tty/legacy_tiocsti")
        .ok()
        .map(|v| v.trim().to_string());
    let home = home_with_dirs(0o700);
    let list = doctor_json(home.path());
    let c = checks_named(&list, "terminal injection");
    assert_eq!(c.len(), 1, "{list:?}");
    let detail = c[0]["detail"].as_str().unwrap();
    match value.as_deref() {
        Some(v) => {
            assert!(
                detail.starts_with(&format!("dev.tty.legacy_tiocsti = {v}: ")),
                "{detail}"
            );
            let status = if v == "0" { "ok" } else { "warn" };
            assert_eq!(c[0]["status"], status);
            if v != "0" {
                assert_eq!(
                    c[0]["help"].as_str().unwrap().split(" (").next(),
                    Some("sudo sysctl -w dev.tty.legacy_tiocsti=0")
                );
            }
        }
        None => {
            assert_eq!(c[0]["status"], "warn");
            assert!(detail.contains("no dev.tty.legacy_tiocsti"), "{detail}");
        }
    }
}

#[test]
fn doctor_reports_state_dirs_others_can_read_and_fix_makes_them_0700() {
    let home = home_with_dirs(0o755);
    let dirs = ["state", "state/roots", "cache"].map(|d| home.path().join(d));
    let list = doctor_json(home.path());
    let c = checks_named(&list, "private state");
    assert_eq!(c.len(), 3, "{list:?}");
    for (check, dir) in c.iter().zip(&dirs) {
        assert_eq!(check["status"], "warn", "{check}");
        assert_eq!(
            check["detail"],
            format!(
                "{}: mode 0755: other users can read what is in it",
                dir.display()
            )
        );
        assert_eq!(
            check["help"],
            format!("zchroot doctor --fix (chmod 0700 {})", dir.display())
        );
    }

    // A cache that is a symlink is reported, and --fix never follows it.
    let elsewhere = tempfile::tempdir().unwrap();
    std::fs::set_permissions(elsewhere.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::remove_dir(&dirs[2]).unwrap();
    std::os::unix::fs::symlink(elsewhere.path(), &dirs[2]).unwrap();

    let o = Zchroot::new(home.path()).run(&["doctor", "--fix"]);
    for d in &dirs[..2] {
        let mode = std::fs::metadata(d).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o700, "{}: {}", d.display(), stderr(&o));
        assert!(
            stderr(&o).contains(&format!("fixed: chmod 0700 {} (was 0755)", d.display())),
            "{}",
            stderr(&o)
        );
    }
    let mode = std::fs::metadata(elsewhere.path())
        .unwrap()
        .permissions()
        .mode()
        & 0o7777;
    assert_eq!(mode, 0o755, "the symlink's target was changed");
    let list = doctor_json(home.path());
    let c = checks_named(&list, "private state");
    assert_eq!(c[0]["status"], "ok", "{:?}", c[0]);
    assert_eq!(c[1]["status"], "ok", "{:?}", c[1]);
    assert_eq!(c[2]["status"], "fail", "{:?}", c[2]);
    assert_eq!(
        c[2]["detail"],
        format!("{}: a symlink, not a directory", dirs[2].display())
    );
}

#[test]
fn an_entry_whose_helper_was_killed_is_removed_when_the_run_ends() {
    if !require_root_and_debian()
        || !require(
            have_command("unshare"),
            "unshare (util-linux)",
            "apt-get install util-linux",
        )
    {
        return;
    }
    let _table = host_binfmt_lock();
    let root = busybox_root().to_str().unwrap().to_string();
    let o = zchroot(
        &root_home(),
        &["-q", "run", "--dir", &root, "--", BUSYBOX, "true"],
    );
    assert!(o.status.success(), "{}", stderr(&o)); // fetches qemu first
    let mut holder = TableHolder::start();
    let mut child = Zchroot::new(root_home())
        .command(&["-q", "run", "--dir", &root, "--", BUSYBOX, "sh", "-c"])
        .arg("echo started; read line; echo done")
        .env("ZCHROOT_BINFMT", "host")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut buf = [0u8; 8];
    out.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"started\n");
    let name = entry_of(child.id(), "aarch64");
    holder.made.push(name.clone());
    let mut needle = b"__host-binfmt\0register\0".to_vec();
    needle.extend_from_slice(name.as_bytes());
    let helpers = processes_with(&needle);
    assert_eq!(helpers.len(), 1, "the helper holding {name}");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(helpers[0]),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    wait_gone(helpers[0]);
    assert!(table().contains(&name), "the entry outlives its helper");
    // The run goes on, and removes the entry itself when it ends.
    drop(child.stdin.take());
    let status = child.wait().unwrap();
    let mut rest = String::new();
    out.read_to_string(&mut rest).unwrap();
    assert!(status.success());
    assert_eq!(rest, "done\n");
    assert!(!table().contains(&name), "{name} outlived its run");
}
