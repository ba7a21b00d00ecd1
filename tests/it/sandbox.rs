//! The sandbox, for real: an arm64 root made of Debian's busybox-static
//! (fetched and extracted through the archive client), run under qemu from
//! the archive, as root and as an unprivileged user with subuid ranges.
//! Needs root (to become the test user), user namespaces and the network.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::common::{
    have_command, host_binfmt_lock, let_others_reach, module_dir, require, require_root,
    require_root_and_debian, require_test_user, stdout as text, Zchroot,
};
use zchroot::archive::fetch::FetchOptions;
use zchroot::manifest::Manifests;
use zchroot::paths::DataDirs;
use zchroot::report::Silent;
use zchroot::rootfs::spec::{RootRecipe, RootSpec};

const BUSYBOX: &str = "/usr/bin/busybox";

fn shared_dir() -> PathBuf {
    module_dir("sandbox")
}

/// The zchroot home that root's runs share (the qemu binary is fetched once).
pub(crate) fn root_home() -> PathBuf {
    shared_dir().join("home-root")
}

/// An arm64 root with busybox-static, extracted through zchroot's own
/// archive client and .deb extractor. Made once per test run.
pub(crate) fn busybox_root() -> &'static Path {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        let dir = shared_dir().join("busybox-arm64");
        if dir.join("usr/bin/busybox").exists() {
            return dir;
        }
        let m = Manifests::embedded();
        let t = RootRecipe::new(
            &m,
            &RootSpec {
                arch: "arm64".into(),
                release: "trixie".into(),
                variant: "minbase".into(),
                ..Default::default()
            },
        )
        .unwrap();
        let dirs = DataDirs {
            state: root_home().join("state"),
            cache: root_home().join("cache"),
        };
        let f = t.fetcher(&dirs, FetchOptions::default(), &Silent).unwrap();
        let idx = t.update(&f, &Silent).unwrap();
        let bb = idx
            .packages
            .iter()
            .filter(|p| p.name == "busybox-static")
            .max_by(|a, b| zchroot::archive::version::compare(&a.version, &b.version))
            .expect("busybox-static in trixie");
        let paths = t.download(&f, &[bb], &Silent).unwrap();
        let tmp = shared_dir().join("busybox-arm64.tmp");
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp).unwrap();
        zchroot::deb::read::extract_data(&paths[0], &tmp).unwrap();
        std::fs::rename(&tmp, &dir).unwrap();
        dir
    })
}

fn zchroot_as_root(args: &[&str]) -> Output {
    Zchroot::new(root_home()).run(args)
}

fn run_root(cmd: &[&str]) -> Output {
    let root = busybox_root().to_str().unwrap().to_string();
    let mut args = vec!["-q", "run", "--dir", &root, "--"];
    args.extend_from_slice(cmd);
    zchroot_as_root(&args)
}

fn mountinfo() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        // Drop the mount id and parent id: compare what is mounted where.
        .map(|l| l.splitn(3, ' ').nth(2).unwrap_or("").to_string())
        .collect();
    v.sort();
    v
}

fn binfmt_table() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir("/proc/sys/fs/binfmt_misc")
        .map(|rd| {
            rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn arm64_root_runs_under_qemu_as_root() {
    if !require_root_and_debian() {
        return;
    }
    let o = run_root(&[BUSYBOX, "uname", "-m"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(text(&o), "aarch64");
    let o = run_root(&[BUSYBOX, "id", "-u"]);
    assert_eq!(text(&o), "0");
    // A --dir root without /etc/hostname is named after its directory.
    let o = run_root(&[BUSYBOX, "hostname"]);
    assert_eq!(text(&o), "busybox-arm64");
    // PID namespace: the command is not PID 1, and sees few processes.
    let o = run_root(&[BUSYBOX, "sh", "-c", "echo $$"]);
    assert_eq!(text(&o), "2");
}

#[test]
fn exit_status_and_signals_pass_through() {
    if !require_root_and_debian() {
        return;
    }
    assert_eq!(
        run_root(&[BUSYBOX, "sh", "-c", "exit 7"]).status.code(),
        Some(7)
    );
    assert_eq!(
        run_root(&[BUSYBOX, "sh", "-c", "kill -TERM $$"])
            .status
            .code(),
        Some(143)
    );
    // The command finds no signal ignored (zchroot's runtime ignores
    // SIGPIPE; that must not reach it): a writer to a closed pipe dies of
    // SIGPIPE (141), quietly.
    let o = run_root(&[
        BUSYBOX,
        "sh",
        "-c",
        "/usr/bin/busybox grep SigIgn /proc/self/status",
    ]);
    // (Bits 31 and 32, glibc's own signals 32 and 33, are the test
    // harness's and glibc keeps them from programs.)
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    let ignored = text(&o)
        .strip_prefix("SigIgn:\t")
        .and_then(|h| u64::from_str_radix(h, 16).ok())
        .unwrap_or_else(|| panic!("no SigIgn line: {:?} {err}", text(&o)));
    assert_eq!(ignored & !0x1_8000_0000, 0, "SigIgn {ignored:#x}");
    let o = run_root(&[
        BUSYBOX,
        "sh",
        "-c",
        "{ /usr/bin/busybox yes; echo \"yes: $?\" >&2; } | /usr/bin/busybox head -n 1",
    ]);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(text(&o), "y", "{err}");
    assert_eq!(err.trim(), "yes: 141");
    let o = run_root(&["/no/such/command"]);
    assert_eq!(o.status.code(), Some(127));
    assert!(String::from_utf8_lossy(&o.stderr).contains("cannot run \"/no/such/command\""));
    // SIGTERM to zchroot reaches the command, which a trap reports.
    let root = busybox_root().to_str().unwrap().to_string();
    let mut child = Zchroot::new(root_home())
        .command(&["-q", "run", "--dir", &root, "--", BUSYBOX, "sh", "-c"])
        .arg("trap 'echo got-term; exit 3' TERM; echo ready; while :; do /usr/bin/busybox sleep 0.1; done")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let mut out = child.stdout.take().unwrap();
    let mut buf = [0u8; 6];
    use std::io::Read;
    out.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"ready\n");
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let mut rest = String::new();
    out.read_to_string(&mut rest).unwrap();
    assert_eq!(rest.trim(), "got-term");
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(3), "{status}");
}

#[test]
fn the_host_binfmt_table_and_mounts_are_untouched() {
    if !require_root_and_debian() {
        return;
    }
    let _table = host_binfmt_lock();
    busybox_root();
    let _ = run_root(&[BUSYBOX, "true"]); // fetch qemu first
    let mounts_before = mountinfo();
    let binfmt_before = binfmt_table();
    let root = busybox_root().to_str().unwrap().to_string();
    let mut child = Zchroot::new(root_home())
        .command(&["-q", "run", "--dir", &root, "--", BUSYBOX, "sleep", "3"])
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        binfmt_table(),
        binfmt_before,
        "binfmt_misc changed during the run"
    );
    assert_eq!(
        mountinfo(),
        mounts_before,
        "the host's mounts changed during the run"
    );
    assert!(child.wait().unwrap().success());
    assert_eq!(binfmt_table(), binfmt_before);
    assert_eq!(mountinfo(), mounts_before);
}

/// The host's global binfmt_misc table, as root, through zchroot's own
/// helper (binfmt_misc need not be mounted on the host).
fn host_binfmt_entries() -> Vec<String> {
    let o = zchroot_as_root(&["__host-binfmt", "list"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mut v: Vec<String> = text(&o).lines().map(str::to_string).collect();
    v.sort();
    v
}

#[test]
fn before_linux_6_7_root_registers_qemu_on_the_host_for_the_run_only() {
    if !require_root_and_debian() {
        return;
    }
    let _table = host_binfmt_lock();
    let _ = run_root(&[BUSYBOX, "true"]); // fetch qemu first
    let before = host_binfmt_entries();
    if !require(
        !before.iter().any(|n| n.contains("aarch64")),
        "a host without an aarch64 binfmt_misc entry",
        "remove the host's qemu-aarch64 registration (it would serve the run instead)",
    ) {
        return;
    }
    let mounts_before = mountinfo();
    let root = busybox_root().to_str().unwrap().to_string();
    let start = |cmd: &str| {
        Zchroot::new(root_home())
            .command(&["-q", "run", "--dir", &root, "--", BUSYBOX, "sh", "-c", cmd])
            // As on a kernel before 6.7: one global binfmt_misc table.
            .env("ZCHROOT_BINFMT", "host")
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let wait_for = |name: &str, present: bool| {
        let t = Instant::now();
        while host_binfmt_entries().iter().any(|n| n == name) != present
            && t.elapsed() < Duration::from_secs(20)
        {
            std::thread::sleep(Duration::from_millis(100));
        }
        host_binfmt_entries().iter().any(|n| n == name) == present
    };

    // During the run: an entry of this run's own, serving aarch64.
    let child = start("uname -m; /usr/bin/busybox sleep 2");
    let name = crate::host_binfmt::entry_of(child.id(), "aarch64");
    assert!(
        wait_for(&name, true),
        "no {name} during the run: {:?}",
        host_binfmt_entries()
    );
    assert_eq!(mountinfo(), mounts_before, "the host's mounts changed");
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success());
    assert_eq!(text(&o), "aarch64");
    // After it: the table as it was.
    assert_eq!(host_binfmt_entries(), before);
    assert_eq!(mountinfo(), mounts_before);

    // A SIGKILLed zchroot leaves no entry either: its helper sees the pipe
    // close and removes it.
    let mut child = start("echo started; /usr/bin/busybox sleep 60");
    let killed = crate::host_binfmt::entry_of(child.id(), "aarch64");
    let mut out = child.stdout.take().unwrap();
    let mut buf = [0u8; 8];
    use std::io::Read;
    out.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"started\n");
    assert!(host_binfmt_entries().contains(&killed));
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(wait_for(&killed, false), "{killed} outlived its zchroot");
    assert_eq!(host_binfmt_entries(), before);
    assert_eq!(mountinfo(), mounts_before);
}

/// Processes whose command line contains `marker`.
fn processes_with(marker: &str) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).contains(marker))
                .unwrap_or(false)
        })
        .collect()
}

#[test]
fn sigkill_of_zchroot_leaves_no_process_and_no_mount() {
    if !require_root_and_debian() {
        return;
    }
    let _ = run_root(&[BUSYBOX, "true"]); // fetch qemu first
    let mounts_before = mountinfo();
    let marker = "424242";
    let root = busybox_root().to_str().unwrap().to_string();
    let mut child = Zchroot::new(root_home())
        .command(&["-q", "run", "--dir", &root, "--", BUSYBOX, "sleep", marker])
        .spawn()
        .unwrap();
    let t = Instant::now();
    while processes_with(marker).len() < 2 && t.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(processes_with(marker).len() >= 2, "the sleep did not start");
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let t = Instant::now();
    while !processes_with(marker).is_empty() && t.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        processes_with(marker).is_empty(),
        "left behind: {:?}",
        processes_with(marker)
    );
    assert_eq!(mountinfo(), mounts_before);
}

#[test]
fn network_none_and_binds() {
    if !require_root_and_debian() {
        return;
    }
    let o = run_root(&[BUSYBOX, "cat", "/proc/net/dev"]);
    let shared = text(&o).lines().count();
    let root = busybox_root().to_str().unwrap().to_string();
    let o = zchroot_as_root(&[
        "-q",
        "run",
        "--dir",
        &root,
        "--network",
        "none",
        "--",
        BUSYBOX,
        "cat",
        "/proc/net/dev",
    ]);
    let none = text(&o);
    assert_eq!(none.lines().count(), 3, "only lo: {none}");
    assert!(shared >= 3);

    let host = tempfile::tempdir().unwrap();
    std::fs::write(host.path().join("hello"), "from the host\n").unwrap();
    let spec = format!("{}:/mnt/host:ro", host.path().display());
    let o = zchroot_as_root(&["-q", "run", "--dir", &root, "--bind", &spec, "--", BUSYBOX, "sh", "-c",
        "/usr/bin/busybox cat /mnt/host/hello; /usr/bin/busybox touch /mnt/host/x 2>/dev/null && echo writable || echo read-only"]);
    assert_eq!(text(&o), "from the host\nread-only");
    let spec = format!("{}:/mnt/host", host.path().display());
    let o = zchroot_as_root(&[
        "-q",
        "run",
        "--dir",
        &root,
        "--bind",
        &spec,
        "--",
        BUSYBOX,
        "touch",
        "/mnt/host/x",
    ]);
    assert!(o.status.success());
    assert!(host.path().join("x").exists());
    let o = zchroot_as_root(&[
        "-q",
        "run",
        "--dir",
        &root,
        "--bind",
        "/no/such/dir",
        "--",
        BUSYBOX,
        "true",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("/no/such/dir does not exist on the host"));
}

/// Runs zchroot as `user` with its own home under the shared test dir.
fn zchroot_as(user: &str, env: &[(&str, &str)], args: &[&str]) -> Output {
    let home = shared_dir().join(format!("home-{user}"));
    std::fs::create_dir_all(&home).unwrap();
    let _ = Command::new("chown").args(["-R", user]).arg(&home).status();
    let mut z = Zchroot::new(&home).user(user);
    for (k, v) in env {
        z = z.env(k, *v);
    }
    z.run(args)
}

/// A copy of the busybox root owned by `user` (as a rootless create makes).
fn user_root(user: &str) -> PathBuf {
    let dir = shared_dir().join(format!("busybox-arm64-{user}"));
    if !dir.exists() {
        let tmp = shared_dir().join(format!("busybox-arm64-{user}.tmp"));
        let _ = std::fs::remove_dir_all(&tmp);
        assert!(Command::new("cp")
            .arg("-a")
            .arg(busybox_root())
            .arg(&tmp)
            .status()
            .unwrap()
            .success());
        // Owner and group the user's, as a rootless create leaves them.
        assert!(Command::new("chown")
            .args(["-R", &format!("{user}:")])
            .arg(&tmp)
            .status()
            .unwrap()
            .success());
        std::fs::rename(&tmp, &dir).unwrap();
    }
    let_others_reach(&dir);
    dir
}

#[test]
fn rootless_maps_ids_to_the_subuid_range() {
    if !require_root_and_debian() {
        return;
    }
    let Some(u) = require_test_user() else {
        return;
    };
    let (user, uid, start) = (u.name, u.uid, u.subuid);
    let root = user_root(&user);
    let r = root.to_str().unwrap();
    let o = zchroot_as(&user, &[], &["-q", "run", "--dir", r, "--", BUSYBOX, "sh", "-c",
        "/usr/bin/busybox id -u; /usr/bin/busybox uname -m; /usr/bin/busybox rm -f /owned; /usr/bin/busybox touch /owned; /usr/bin/busybox chown 1000:1000 /owned"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(text(&o), "0\naarch64");
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(root.join("owned")).unwrap();
    assert_eq!(
        meta.uid(),
        start + 999,
        "uid 1000 inside is subuid start + 999 outside"
    );
    // A file made as root inside belongs to the user outside.
    let o = zchroot_as(
        &user,
        &[],
        &[
            "-q",
            "run",
            "--dir",
            r,
            "--",
            BUSYBOX,
            "sh",
            "-c",
            "/usr/bin/busybox rm -f /mine; /usr/bin/busybox touch /mine",
        ],
    );
    assert!(o.status.success());
    assert_eq!(std::fs::metadata(root.join("mine")).unwrap().uid(), uid);
}

#[test]
fn rootless_without_a_range_or_newuidmap_says_what_to_do() {
    if !require_root_and_debian() {
        return;
    }
    // nobody has no subuid range.
    let root = user_root("nobody");
    let r = root.to_str().unwrap();
    let o = zchroot_as(
        "nobody",
        &[],
        &["-q", "run", "--dir", r, "--", BUSYBOX, "true"],
    );
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("no subordinate uid range for nobody in /etc/subuid"),
        "{err}"
    );
    assert!(
        err.contains("help: add \"nobody:100000:65536\" to /etc/subuid and /etc/subgid"),
        "{err}"
    );
    // Without newuidmap on PATH.
    let o = zchroot_as(
        "nobody",
        &[("PATH", "/nonexistent")],
        &["-q", "run", "--dir", r, "--", BUSYBOX, "true"],
    );
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("newuidmap is missing or not setuid root"),
        "{err}"
    );
    assert!(
        err.contains("help: install it: `sudo apt-get install uidmap`"),
        "{err}"
    );
}

#[test]
fn export_writes_owners_as_inside_the_root_rootless() {
    if !require_root_and_debian()
        || !require(
            have_command("debugfs") && have_command("mke2fs"),
            "e2fsprogs (mke2fs, debugfs)",
            "apt-get install e2fsprogs",
        )
    {
        return;
    }
    let Some(u) = require_test_user() else {
        return;
    };
    let user = u.name;
    let root = user_root(&user);
    let r = root.to_str().unwrap();
    // A file owned by uid/gid 1000 inside (a subuid outside), readable by
    // its owner only: the export must still read it and say 1000.
    let o = zchroot_as(&user, &[], &["-q", "run", "--dir", r, "--", BUSYBOX, "sh", "-c",
        "/usr/bin/busybox echo secret > /exported; /usr/bin/busybox chown 1000:1000 /exported; /usr/bin/busybox chmod 0600 /exported"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = shared_dir().join(format!("export-{user}"));
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).unwrap();
    let _ = Command::new("chown").arg(&user).arg(&out).status();
    let tar = out.join("root.tar");
    let o = zchroot_as(
        &user,
        &[],
        &["-q", "export", "--dir", r, "-o", tar.to_str().unwrap()],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let list = Command::new("tar").arg("-tvf").arg(&tar).output().unwrap();
    let list = String::from_utf8_lossy(&list.stdout).into_owned();
    let line = |path: &str| {
        list.lines()
            .find(|l| l.ends_with(&format!(" {path}")))
            .unwrap_or_else(|| panic!("no {path} in {list}"))
            .to_string()
    };
    assert!(
        line("exported").starts_with("-rw------- 1000/1000 "),
        "{list}"
    );
    assert!(line("usr/bin/busybox").contains(" 0/0 "), "{list}");
    let content = Command::new("tar")
        .arg("-xOf")
        .arg(&tar)
        .arg("exported")
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&content.stdout), "secret\n");

    let img = out.join("root.img");
    let o = zchroot_as(
        &user,
        &[],
        &[
            "-q",
            "export",
            "--dir",
            r,
            "--format",
            "ext4",
            "-o",
            img.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stat = Command::new("debugfs")
        .arg("-R")
        .arg("stat /exported")
        .arg(&img)
        .output()
        .unwrap();
    let stat = String::from_utf8_lossy(&stat.stdout).into_owned();
    assert!(stat.contains("User:  1000   Group:  1000"), "{stat}");
    let cat = Command::new("debugfs")
        .arg("-R")
        .arg("cat /exported")
        .arg(&img)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&cat.stdout), "secret\n");
    // Nothing half-made: a failed export leaves no file.
    let bad = out.join("bad.tar");
    let o = zchroot_as(
        &user,
        &[],
        &[
            "-q",
            "export",
            "--dir",
            "/nonexistent",
            "-o",
            bad.to_str().unwrap(),
        ],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(std::fs::read_dir(&out).unwrap().all(|e| !e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .contains("bad")));
}

/// A native root (see `terminal::native_tree`) registered as `name` in a
/// zchroot home of its own, as `create` leaves one; zchroot as `user`.
fn named_native_root(user: Option<&str>, name: &str) -> Zchroot {
    let who = user.unwrap_or("root");
    let home = shared_dir().join(format!("home-options-{who}"));
    let dir = home.join("state/roots").join(name);
    std::fs::create_dir_all(&dir).unwrap();
    crate::terminal::native_tree(&dir.join("root"), user);
    let owner = match user {
        Some(u) => nix::unistd::User::from_name(u)
            .unwrap()
            .unwrap()
            .uid
            .as_raw(),
        None => 0,
    };
    std::fs::write(
        dir.join("zchroot.toml"),
        format!(
            "name = \"{name}\"\narch = \"{}\"\nrelease = \"trixie\"\nvariant = \"minbase\"\n\
             created = 0\npackages = 0\nowner = {owner}\n",
            crate::terminal::host_arch()
        ),
    )
    .unwrap();
    let_others_reach(&home);
    match user {
        Some(u) => {
            assert!(Command::new("chown")
                .args(["-R", &format!("{u}:")])
                .arg(&home)
                .status()
                .unwrap()
                .success());
            Zchroot::new(&home).user(u)
        }
        None => Zchroot::new(&home),
    }
}

/// `--env`, `--user`, `--workdir`, the hostname and a command without
/// `--` (issue 15), as root or as `user`.
fn run_options(user: Option<&str>) {
    let name = "opts_box";
    let base = [
        "-q",
        "run",
        name,
        "--bind",
        "/usr:/usr:ro",
        "--network",
        "none",
    ];
    let run = |z: Zchroot, args: &[&str]| {
        let mut v = base.to_vec();
        v.extend_from_slice(args);
        z.run(&v)
    };
    let err = |o: &Output| String::from_utf8_lossy(&o.stderr).into_owned();
    let z = || named_native_root(user, name);

    // --env: set, passed through, not set when the caller has none; the
    // rest of the caller's environment (http_proxy too) stays outside.
    let o = run(
        z().env("FROM_CALLER", "yes")
            .env("http_proxy", "http://proxy.invalid:3128"),
        &[
            "-e",
            "A=1",
            "--env",
            "FROM_CALLER",
            "--env",
            "NOT_IN_CALLER",
            "sh",
            "-c",
            "echo A=$A C=$FROM_CALLER N=${NOT_IN_CALLER-unset} P=${http_proxy-unset} H=$HOME U=$USER",
        ],
    );
    assert!(o.status.success(), "{}", err(&o));
    assert_eq!(text(&o), "A=1 C=yes N=unset P=unset H=/root U=root");

    // --user by name: ids, groups and HOME/USER/LOGNAME from the root's
    // /etc/passwd and /etc/group.
    let o = run(
        z(),
        &[
            "--user",
            "builder",
            "sh",
            "-c",
            "id -u; id -g; id -G; echo $HOME $USER $LOGNAME",
        ],
    );
    assert!(o.status.success(), "{}", err(&o));
    assert_eq!(
        text(&o),
        "1000\n1000\n1000 50\n/home/builder builder builder"
    );
    // By number, with a group; no passwd entry: HOME=/, no USER.
    let o = run(
        z(),
        &[
            "-u",
            "1234:50",
            "sh",
            "-c",
            "id -u; id -g; echo $HOME ${USER-unset}",
        ],
    );
    assert!(o.status.success(), "{}", err(&o));
    assert_eq!(text(&o), "1234\n50\n/ unset");
    // An unknown user: 125, naming the root and the user.
    let o = run(z(), &["--user", "nosuch", "true"]);
    assert_eq!(o.status.code(), Some(125), "{}", err(&o));
    assert!(
        err(&o).contains(&format!("root {name} has no user 'nosuch'")),
        "{}",
        err(&o)
    );

    // Rootless, ids above the subordinate range cannot be taken.
    if user.is_some() {
        let o = run(z(), &["--user", "70000", "true"]);
        assert_eq!(o.status.code(), Some(125), "{}", err(&o));
        assert!(err(&o).contains("uid 70000 is not mapped"), "{}", err(&o));
    }

    // --workdir, and --cwd still; a missing one is 125, not 127.
    for opt in ["--workdir", "--cwd", "-w"] {
        let o = run(z(), &[opt, "/tmp", "pwd"]);
        assert_eq!(text(&o), "/tmp", "{opt}: {}", err(&o));
    }
    let o = run(z(), &["--workdir", "/nope", "true"]);
    assert_eq!(o.status.code(), Some(125), "{}", err(&o));
    assert!(
        err(&o).contains("cannot enter the working directory /nope"),
        "{}",
        err(&o)
    );
    // One the user may not enter (root's home, 0700).
    let o = run(z(), &["-u", "builder", "-w", "/root", "true"]);
    assert_eq!(o.status.code(), Some(125), "{}", err(&o));
    let o = run(z(), &["/no/such/command"]);
    assert_eq!(o.status.code(), Some(127), "{}", err(&o));

    // The hostname is the root's name, made a valid hostname.
    let o = run(z(), &["uname", "-n"]);
    assert_eq!(text(&o), "opts-box", "{}", err(&o));
    // `--` is still accepted; with --dir, the first word is the command.
    let o = run(z(), &["--", "sh", "-c", "exit 7"]);
    assert_eq!(o.status.code(), Some(7), "{}", err(&o));
    let tree = shared_dir()
        .join(format!("home-options-{}", user.unwrap_or("root")))
        .join("state/roots")
        .join(name)
        .join("root");
    let arch = crate::terminal::host_arch();
    let o = z().run(&[
        "-q",
        "run",
        "--dir",
        tree.to_str().unwrap(),
        "--arch",
        &arch,
        "--bind",
        "/usr:/usr:ro",
        "sh",
        "-c",
        "uname -n; echo $0",
    ]);
    assert_eq!(text(&o), "opts-box\nsh", "{}", err(&o));
}

#[test]
fn run_takes_env_user_workdir_and_names_the_host_after_the_root() {
    if !require_root("to run the sandbox as root") {
        return;
    }
    run_options(None);
}

#[test]
fn run_takes_env_user_workdir_and_names_the_host_after_the_root_rootless() {
    if !require_root("to become the test user") {
        return;
    }
    let Some(u) = require_test_user() else {
        return;
    };
    run_options(Some(&u.name));
}

/// Issue 23, for a foreign root: under qemu the same doors are shut, as
/// root and rootless (what the native tests in `escape` try with perl,
/// here with busybox's shell).
#[test]
fn an_arm64_root_under_qemu_cannot_write_sysctls_or_enter_init() {
    if !require_root_and_debian() {
        return;
    }
    let script = "echo core > /proc/sys/kernel/core_pattern && echo core_pattern: written; \
                  /usr/bin/busybox ls /proc/1/root/ >/dev/null 2>&1 && echo init-root: open; \
                  /usr/bin/busybox readlink /proc/1/exe >/dev/null 2>&1 && echo init-exe: read; \
                  /usr/bin/busybox grep -E '^CapEff' /proc/1/status | /usr/bin/busybox sed 's/^/init /'; \
                  /usr/bin/busybox grep -E '^CapBnd' /proc/self/status; \
                  echo done";
    let mut outputs = vec![("root", run_root(&[BUSYBOX, "sh", "-c", script]))];
    if let Some(u) = require_test_user() {
        let root = user_root(&u.name);
        let o = zchroot_as(
            &u.name,
            &[],
            &[
                "-q",
                "run",
                "--dir",
                root.to_str().unwrap(),
                "--",
                BUSYBOX,
                "sh",
                "-c",
                script,
            ],
        );
        outputs.push(("rootless", o));
    }
    for (who, o) in outputs {
        let out = text(&o);
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        assert!(out.ends_with("done"), "{who}: {out}\n{err}");
        assert!(!out.contains("written"), "{who}: {out}");
        assert!(!out.contains("init-root: open"), "{who}: {out}");
        assert!(!out.contains("init-exe: read"), "{who}: {out}");
        assert!(
            out.contains("init CapEff:\t0000000000000020"),
            "{who}: {out}"
        );
        assert!(out.contains("CapBnd:\t00000000a80405fb"), "{who}: {out}");
    }
}
