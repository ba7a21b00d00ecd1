//! Nothing in the sandbox reaches the caller's terminal (issue 12, item 5):
//! zchroot runs under a real pty, as a shell in a terminal would run it,
//! and the command inside tries TIOCSTI on its stdin and on /dev/tty.
//!
//! The root is a tiny native tree whose /usr is the host's, bound read-only
//! (perl and stty come from the host). Needs root (and, for the rootless
//! case, the test user) and user namespaces; no network.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::common::{let_others_reach, module_dir, require_root, require_test_user, ZCHROOT};
use zchroot::sys::pty;

/// Tries TIOCSTI with a marker line on stdin and on /dev/tty, and says how
/// each went. The marker is spelled with escapes here, so only injected
/// bytes can show it.
const INJECT: &str = r#"
my $c = "\x5a\x51INJ\n";
for my $name ("stdin", "tty") {
    my $fh;
    if ($name eq "stdin") { $fh = \*STDIN }
    elsif (!open($fh, "+<", "/dev/tty")) { print "tty: open: $!\n"; next }
    my $ok = 1;
    for my $ch (split //, $c) {
        if (!ioctl($fh, 0x5412, $ch)) { print "$name: $!\n"; $ok = 0; last }
    }
    print "$name: injected\n" if $ok;
}
"#;
const MARKER: &str = "ZQINJ";

fn can_run() -> bool {
    require_root("to run the sandbox and to become the test user")
}

fn test_dir() -> PathBuf {
    module_dir("terminal")
}

/// The host's Debian architecture: the tree is native.
pub(crate) fn host_arch() -> String {
    let o = Command::new("dpkg")
        .arg("--print-architecture")
        .output()
        .unwrap();
    String::from_utf8(o.stdout).unwrap().trim().to_string()
}

/// The users of the test roots: root, and `builder` (1000) in `staff` (50)
/// too; for `--user`.
const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
    builder:x:1000:1000:Builder:/home/builder:/bin/sh\n";
const GROUP: &str = "root:x:0:\ntty:x:5:\nstaff:x:50:builder\nbuilder:x:1000:\n";

/// Makes `dir` (if missing, atomically) a root of a few directories,
/// usrmerge links and the users above; /usr comes from the host at run
/// time. Owned by `owner` when given (as a rootless create leaves a root).
pub(crate) fn native_tree(dir: &Path, owner: Option<&str>) {
    let chown = |path: &Path| {
        if let Some(user) = owner {
            assert!(Command::new("chown")
                .args(["-R", &format!("{user}:")])
                .arg(path)
                .status()
                .unwrap()
                .success());
        }
    };
    if !dir.exists() {
        let tmp = dir.with_extension("tmp");
        let _ = std::fs::remove_dir_all(&tmp);
        for d in ["usr", "etc", "tmp", "proc", "sys", "dev", "root"] {
            std::fs::create_dir_all(tmp.join(d)).unwrap();
        }
        for l in ["bin", "sbin", "lib", "lib64"] {
            std::os::unix::fs::symlink(format!("usr/{l}"), tmp.join(l)).unwrap();
        }
        chown(&tmp);
        std::fs::rename(&tmp, dir).unwrap();
    }
    // Also in a tree left by an older test run. root's home is private.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.join("root"), std::fs::Permissions::from_mode(0o700)).unwrap();
    for (file, text) in [("passwd", PASSWD), ("group", GROUP)] {
        let path = dir.join("etc").join(file);
        if !path.exists() {
            let tmp = path.with_extension("tmp");
            std::fs::write(&tmp, text).unwrap();
            chown(&tmp);
            std::fs::rename(&tmp, &path).unwrap();
        }
    }
}

/// The shared native root (see [`native_tree`]).
pub(crate) fn native_root(owner: Option<&str>) -> PathBuf {
    static MAKING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one_at_a_time = MAKING.lock().unwrap_or_else(|e| e.into_inner());
    let dir = test_dir().join(format!("root-{}", owner.unwrap_or("root")));
    native_tree(&dir, owner);
    let_others_reach(&dir);
    dir
}

/// A pty pair of the test's own: the slave is zchroot's terminal.
pub(crate) struct Term {
    master: OwnedFd,
    slave: OwnedFd,
}

impl Term {
    pub(crate) fn new(rows: u16, cols: u16) -> Term {
        let (master, slave) = pty::open_pty(Path::new("/dev/ptmx")).unwrap();
        let t = Term { master, slave };
        t.resize(rows, cols);
        t
    }

    fn resize(&self, rows: u16, cols: u16) {
        let ws = libc::winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        pty::set_window_size(self.master.as_raw_fd(), &ws).unwrap();
    }

    /// The slave's path (for `stty -F`).
    fn path(&self) -> PathBuf {
        std::fs::read_link(format!("/proc/self/fd/{}", self.slave.as_raw_fd())).unwrap()
    }

    /// The terminal's settings, as `stty -g` prints them.
    fn settings(&self) -> String {
        let o = Command::new("stty")
            .arg("-g")
            .arg("-F")
            .arg(self.path())
            .output()
            .unwrap();
        assert!(o.status.success());
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    }

    /// What is queued as input on the terminal: what the caller's shell
    /// would read (and run) once zchroot returns.
    fn queued_input(&self) -> String {
        let slave = self.slave.try_clone().unwrap();
        pty::set_nonblocking(&slave, true).unwrap();
        let mut buf = [0u8; 4096];
        let mut got = Vec::new();
        while let Ok(n @ 1..) = pty::read(slave.as_raw_fd(), &mut buf) {
            got.extend_from_slice(&buf[..n]);
        }
        pty::set_nonblocking(&slave, false).unwrap();
        String::from_utf8_lossy(&got).into_owned()
    }

    /// Reads what the terminal shows, without waiting.
    fn read_output(&self, into: &mut Vec<u8>) {
        let mut buf = [0u8; 4096];
        while let Ok(pty::Ready { read: true, .. }) =
            pty::poll(&[(self.master.as_raw_fd(), true, false)], 0).map(|r| r[0])
        {
            match pty::read(self.master.as_raw_fd(), &mut buf) {
                Ok(n @ 1..) => into.extend_from_slice(&buf[..n]),
                _ => break,
            }
        }
    }
}

/// zchroot with `args`, as `user` (or root), in a session whose
/// controlling terminal is `term`; `stdio_on_term`: its std fds are the
/// terminal (else /dev/null in, pipes out). `during` runs each 20 ms with
/// the output so far. Returns the exit status and what the terminal (or
/// the pipes) showed.
fn run_on(
    term: &Term,
    user: Option<&str>,
    args: &[&str],
    stdio_on_term: bool,
    during: impl FnMut(&Term, &str),
) -> (ExitStatus, String) {
    let (status, out) = run_on_raw(term, user, args, stdio_on_term, during);
    (status, out.replace('\r', ""))
}

/// [`run_on`], with what the terminal got exactly (carriage returns kept).
pub(crate) fn run_on_raw(
    term: &Term,
    user: Option<&str>,
    args: &[&str],
    stdio_on_term: bool,
    mut during: impl FnMut(&Term, &str),
) -> (ExitStatus, String) {
    let home = test_dir().join(format!("home-{}", user.unwrap_or("root")));
    std::fs::create_dir_all(&home).unwrap();
    // setsid -c: a new session whose controlling terminal is stdin.
    let mut cmd = Command::new("setsid");
    cmd.arg("-c");
    if let Some(u) = user {
        let _ = Command::new("chown").args(["-R", u]).arg(&home).status();
        let pw = nix::unistd::User::from_name(u).unwrap().unwrap();
        cmd.args([
            "setpriv",
            &format!("--reuid={}", pw.uid),
            &format!("--regid={}", pw.gid),
            "--init-groups",
            "--",
        ]);
    }
    cmd.arg("env")
        .arg(format!("ZCHROOT_HOME={}", home.display()))
        .arg("TERM=xterm");
    if !stdio_on_term {
        // The terminal stays the controlling one; the std fds are not it,
        // but fd 7 is (left open without close-on-exec, as callers do).
        cmd.args(["sh", "-c", "exec \"$@\" 7<&0 </dev/null", "sh"]);
    }
    cmd.arg(ZCHROOT).args(args);
    cmd.current_dir("/")
        .stdin(Stdio::from(term.slave.try_clone().unwrap()));
    if stdio_on_term {
        cmd.stdout(Stdio::from(term.slave.try_clone().unwrap()))
            .stderr(Stdio::from(term.slave.try_clone().unwrap()));
    } else {
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    }
    let mut child = cmd.spawn().unwrap();
    let mut out = Vec::new();
    let start = Instant::now();
    let status = loop {
        term.read_output(&mut out);
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > Duration::from_secs(120) {
            let tree = process_tree(child.id());
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "zchroot did not return; the terminal showed: {}\nits processes then:\n{tree}",
                String::from_utf8_lossy(&out)
            );
        }
        during(term, &String::from_utf8_lossy(&out));
        std::thread::sleep(Duration::from_millis(20));
    };
    term.read_output(&mut out);
    if !stdio_on_term {
        use std::io::Read;
        let mut s = Vec::new();
        child.stdout.take().unwrap().read_to_end(&mut s).unwrap();
        child.stderr.take().unwrap().read_to_end(&mut s).unwrap();
        out.extend_from_slice(&s);
    }
    (status, String::from_utf8_lossy(&out).into_owned())
}

/// The processes under `top` (itself included), each with its state,
/// session, process groups (its own and its terminal's foreground one) and
/// signal masks: what a hung run leaves for its failure message.
fn process_tree(top: u32) -> String {
    let ps = Command::new("ps")
        .args([
            "-e",
            "-o",
            "pid=,ppid=,pgid=,sid=,tpgid=,stat=,wchan:24=,args=",
        ])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let rows: Vec<(u32, u32, &str)> = ps
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            Some((f.next()?.parse().ok()?, f.next()?.parse().ok()?, l))
        })
        .collect();
    let mut keep = vec![top];
    let mut i = 0;
    while i < keep.len() {
        let parent = keep[i];
        keep.extend(rows.iter().filter(|r| r.1 == parent).map(|r| r.0));
        i += 1;
    }
    let mut text = String::from("  PID  PPID  PGID   SID TPGID STAT WCHAN ARGS\n");
    for pid in keep {
        let Some(row) = rows.iter().find(|r| r.0 == pid) else {
            continue;
        };
        text.push_str(row.2);
        text.push('\n');
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        for l in status.lines().filter(|l| {
            ["SigPnd", "ShdPnd", "SigBlk", "SigIgn", "SigCgt", "NSpid"]
                .iter()
                .any(|k| l.starts_with(k))
        }) {
            text.push_str("      ");
            text.push_str(l);
            text.push('\n');
        }
    }
    text
}

fn run_args<'a>(root: &'a str, arch: &'a str, cmd: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec![
        "-q",
        "run",
        "--dir",
        root,
        "--arch",
        arch,
        "--bind",
        "/usr:/usr:ro",
        "--network",
        "none",
        "--",
    ];
    v.extend_from_slice(cmd);
    v
}

/// The whole TIOCSTI check, as root or as `user`.
fn cannot_type_into_the_callers_terminal(user: Option<&str>) {
    let root = native_root(user);
    let arch = host_arch();
    let term = Term::new(24, 80);
    let before = term.settings();
    let (status, shown) = run_on(
        &term,
        user,
        &run_args(root.to_str().unwrap(), &arch, &["perl", "-e", INJECT]),
        true,
        |_, _| {},
    );
    assert!(status.success(), "{status}: {shown}");
    // Inside, both attempts fail (seccomp), whatever the terminal.
    assert!(
        shown.contains("stdin: Operation not permitted"),
        "TIOCSTI on stdin did not fail: {shown}"
    );
    assert!(
        shown.contains("tty: Operation not permitted"),
        "TIOCSTI on /dev/tty did not fail: {shown}"
    );
    // Outside, nothing was typed: not echoed, not waiting for the shell.
    assert!(
        !shown.contains(MARKER),
        "the caller's terminal echoed: {shown}"
    );
    let queued = term.queued_input();
    assert!(
        !queued.contains(MARKER),
        "the caller's shell would read {queued:?}"
    );
    // And the caller's terminal is as it was (raw mode undone).
    assert_eq!(term.settings(), before);
}

#[test]
fn a_command_cannot_type_into_the_callers_terminal() {
    if !can_run() {
        return;
    }
    cannot_type_into_the_callers_terminal(None);
}

#[test]
fn a_rootless_command_cannot_type_into_the_callers_terminal() {
    if !can_run() {
        return;
    }
    let Some(u) = require_test_user() else {
        return;
    };
    cannot_type_into_the_callers_terminal(Some(&u.name));
}

#[test]
fn the_command_has_a_terminal_of_its_own_with_the_callers_size() {
    if !can_run() {
        return;
    }
    let root = native_root(None);
    let arch = host_arch();
    let term = Term::new(33, 111);
    let script = "tty; stty size; i=0; while [ $i -lt 200 ]; do \
        s=$(stty size); if [ \"$s\" = '44 122' ]; then echo resized $s; exit 3; fi; \
        sleep 0.05; i=$((i+1)); done; echo never resized";
    let mut resized = false;
    let (status, shown) = run_on(
        &term,
        None,
        &run_args(root.to_str().unwrap(), &arch, &["sh", "-c", script]),
        true,
        |t, so_far| {
            if !resized && so_far.contains("33 111") {
                t.resize(44, 122);
                resized = true;
            }
        },
    );
    assert_eq!(status.code(), Some(3), "{shown}");
    let lines: Vec<&str> = shown.lines().collect();
    // The sandbox's own devpts: the caller's pty is not in there.
    assert_eq!(lines[0], "/dev/pts/0", "{shown}");
    assert_eq!(lines[1], "33 111", "{shown}");
    assert!(shown.contains("resized 44 122"), "{shown}");
}

#[test]
fn ctrl_c_on_the_terminal_reaches_the_command_once() {
    if !can_run() {
        return;
    }
    let root = native_root(None);
    let arch = host_arch();
    let term = Term::new(24, 80);
    let script = "n=0; trap 'n=$((n+1))' INT; echo ready; \
        while [ $n -eq 0 ]; do sleep 0.05; done; sleep 0.5; echo interrupted $n; exit 7";
    let mut sent = false;
    let (status, shown) = run_on(
        &term,
        None,
        &run_args(root.to_str().unwrap(), &arch, &["sh", "-c", script]),
        true,
        |t, so_far| {
            if !sent && so_far.contains("ready") {
                pty::write_all(t.master.as_raw_fd(), b"\x03").unwrap();
                sent = true;
            }
        },
    );
    assert_eq!(status.code(), Some(7), "{shown}");
    assert!(shown.contains("interrupted 1"), "{shown}");
}

#[test]
fn without_a_terminal_on_stdio_the_sandbox_has_no_controlling_terminal() {
    if !can_run() {
        return;
    }
    let root = native_root(None);
    let arch = host_arch();
    let term = Term::new(24, 80);
    let (status, shown) = run_on(
        &term,
        None,
        &run_args(
            root.to_str().unwrap(),
            &arch,
            &[
                "perl",
                "-e",
                &format!(
                    "print \"hi\\n\"; print \"fd 7: \", (open(my $f, \"+<&=\", 7) ? \"open\" : \"closed\"), \"\\n\"; {INJECT}"
                ),
            ],
        ),
        false,
        |_, _| {},
    );
    assert!(status.success(), "{status}: {shown}");
    assert!(shown.contains("hi\n"), "{shown}");
    // The terminal that controls zchroot is not the sandbox's: /dev/tty
    // leads nowhere, and stdin (/dev/null) is no terminal.
    assert!(
        shown.contains("tty: open: No such device or address"),
        "{shown}"
    );
    assert!(!shown.contains("injected"), "{shown}");
    // A descriptor of the terminal that zchroot inherited stays outside.
    assert!(shown.contains("fd 7: closed"), "{shown}");
    assert!(!term.queued_input().contains(MARKER));
}

/// Set (to the root) for the child side of the batch test.
const BATCH_CHILD_ENV: &str = "ZCHROOT_TEST_BATCH_ROOT";

/// The child side of [`a_batch_run_reads_no_keyboard_and_holds_no_terminal`]:
/// this test binary again, started on the test's pty, runs a plan the way
/// `create` and builds do (the library's default, `Stdio::Batch`). Without
/// the variable (a normal test run) it has nothing to do.
#[test]
fn batch_child() {
    let Some(root) = std::env::var_os(BATCH_CHILD_ENV) else {
        return;
    };
    let home = test_dir().join("home-batch");
    let spec = zchroot::sandbox::RunSpec {
        root: root.into(),
        arch: Some(host_arch()),
        release: "trixie".into(),
        mirror: None,
        binds: vec![zchroot::sandbox::mounts::Bind::parse("/usr:/usr:ro").unwrap()],
        share_network: false,
        hostname: "zchroot".into(),
        argv: vec![
            "perl".into(),
            "-e".into(),
            format!(
                "my $l = <STDIN>; print defined $l ? \"stdin: read $l\" : \"stdin: eof\\n\"; {INJECT}"
            ),
        ],
        cwd: "/".into(),
    };
    let dirs = zchroot::paths::DataDirs {
        state: home.join("state"),
        cache: home.join("cache"),
    };
    let (plan, maps, _) = zchroot::enter::prepare(
        &zchroot::manifest::Manifests::embedded(),
        &spec,
        &dirs,
        zchroot::archive::fetch::FetchOptions::default(),
        &zchroot::report::Silent,
    )
    .unwrap();
    assert_eq!(plan.stdio, zchroot::sandbox::spawn::Stdio::Batch);
    let code = zchroot::sandbox::spawn::run(Path::new(ZCHROOT), &plan, &maps).unwrap();
    println!("batch exit {code}");
}

#[test]
fn a_batch_run_reads_no_keyboard_and_holds_no_terminal() {
    if !can_run() {
        return;
    }
    let root = native_root(None);
    let term = Term::new(24, 80);
    // Typed ahead: a batch run must not read it (it stays the shell's).
    pty::write_all(term.master.as_raw_fd(), b"typed ahead\n").unwrap();
    let mut cmd = Command::new("setsid");
    cmd.arg("-c")
        .arg(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "terminal::batch_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(BATCH_CHILD_ENV, &root)
        .stdin(Stdio::from(term.slave.try_clone().unwrap()))
        .stdout(Stdio::from(term.slave.try_clone().unwrap()))
        .stderr(Stdio::from(term.slave.try_clone().unwrap()));
    let mut child = cmd.spawn().unwrap();
    let mut out = Vec::new();
    let start = Instant::now();
    let status = loop {
        term.read_output(&mut out);
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(start.elapsed() < Duration::from_secs(120), "no end");
        std::thread::sleep(Duration::from_millis(20));
    };
    term.read_output(&mut out);
    let shown = String::from_utf8_lossy(&out).replace('\r', "");
    assert!(status.success(), "{shown}");
    assert!(shown.contains("batch exit 0"), "{shown}");
    assert!(shown.contains("stdin: eof"), "{shown}");
    // Its output still shows on the terminal, through a pty of its own:
    // /dev/tty there is not the caller's.
    assert!(shown.contains("stdin: Operation not permitted"), "{shown}");
    assert!(shown.contains("tty: Operation not permitted"), "{shown}");
    assert!(!shown.contains(MARKER), "{shown}");
    assert!(term.queued_input().contains("typed ahead"));
}

/// `tty` in `shell` (issue 15): the shell's terminal is the sandbox's pty,
/// named by its path there, and (with `--user`) the user's.
fn tty_works_in_a_shell(user: Option<&str>, inside: Option<&str>) {
    let root = native_root(user);
    let arch = host_arch();
    let term = Term::new(24, 80);
    let mut args = vec![
        "-q",
        "shell",
        "--dir",
        root.to_str().unwrap(),
        "--arch",
        &arch,
        "--bind",
        "/usr:/usr:ro",
        "--network",
        "none",
    ];
    if let Some(u) = inside {
        args.extend(["--user", u]);
    }
    // Spelled so that the terminal's echo of the line cannot match.
    let line = b"tty; ls -ln \"$(tty)\" | cut -d' ' -f3; echo W$((1+1)); exit 3\n";
    let mut typed = false;
    let (status, shown) = run_on(&term, user, &args, true, |t, so_far| {
        // The prompt (bash's default, the root has no /etc/profile).
        if !typed && (so_far.contains("$ ") || so_far.contains("# ")) {
            pty::write_all(t.master.as_raw_fd(), line).unwrap();
            typed = true;
        }
    });
    // Without bash's bracketed-paste switches.
    let shown = shown.replace("\x1b[?2004l", "").replace("\x1b[?2004h", "");
    assert_eq!(status.code(), Some(3), "{shown}");
    assert!(!shown.contains("not a tty"), "{shown}");
    let lines: Vec<&str> = shown.lines().collect();
    let at = lines
        .iter()
        .position(|l| *l == "/dev/pts/0")
        .unwrap_or_else(|| panic!("tty did not print /dev/pts/0: {shown}"));
    // The pty belongs to the shell's user (uid 1000 for builder).
    let owner = if inside.is_some() { "1000" } else { "0" };
    assert_eq!(lines.get(at + 1), Some(&owner), "{shown}");
    assert!(shown.contains("W2"), "{shown}");
}

#[test]
fn tty_names_the_shells_terminal() {
    if !can_run() {
        return;
    }
    tty_works_in_a_shell(None, None);
    tty_works_in_a_shell(None, Some("builder"));
}

#[test]
fn tty_names_the_shells_terminal_rootless() {
    if !can_run() {
        return;
    }
    let Some(u) = require_test_user() else {
        return;
    };
    tty_works_in_a_shell(Some(&u.name), None);
    tty_works_in_a_shell(Some(&u.name), Some("builder"));
}
