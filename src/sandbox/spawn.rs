//! The processes of a sandbox run:
//!
//! ```text
//! zchroot (parent)            writes the id maps, forwards signals, relays the terminal, waits
//! └─ zchroot helper           fresh exec, single-threaded: setsid, unshare(USER|NS|PID|UTS|IPC[|NET])
//!    └─ init (PID 1 inside)   non-dumpable; sethostname, mounts, pivot_root, maps the
//!       │                     command's ids, then keeps only CAP_KILL and /dev/null as
//!       │                     its std fds; reaps, forwards signals
//!       └─ the command        setsid, unshare(USER|NS) (its mounts locked), [its own pty
//!                             as controlling terminal], seccomp, a container's capabilities,
//!                             [setgroups, setresgid, setresuid (--user),] chdir, exec
//! ```
//!
//! The helper and init die with their parent (PR_SET_PDEATHSIG), the PID
//! namespace dies with init, and the mount namespace with its last process:
//! a SIGKILL of zchroot at any moment leaves no process and no mount behind.
//!
//! Nothing in the sandbox keeps the caller's terminal: the helper starts a
//! new session (no controlling terminal), and so does the command. For
//! [`Stdio::Interactive`] each of the caller's std descriptors that is a
//! terminal is replaced, in the sandbox, by a pseudo-terminal made from the
//! sandbox's own devpts; the command sends its master to zchroot, which
//! relays it to the caller's terminal (in raw mode; window size copied, also
//! on SIGWINCH). A seccomp filter refuses TIOCSTI and TIOCLINUX anyway.
//!
//! Nothing in the sandbox gets back what it was not given: the helper
//! joins a new session keyring (the caller's keys stay out), and init and
//! the helper are non-dumpable, so the command can neither ptrace them nor
//! open their `/proc` files (runc's CVE-2019-5736 went through
//! `/proc/1/exe`).

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::process::Command;

use nix::sched::CloneFlags;
use nix::sys::signal::{SigSet, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use super::idmap::IdMaps;
use super::mounts::{self, Step};
use crate::sys;

/// The environment variable that carries the plan to the helper.
pub const PLAN_ENV: &str = "ZCHROOT_SANDBOX_PLAN";
/// The hidden subcommand that runs the helper.
pub const HELPER_ARG: &str = "__sandbox-helper";
/// Exit status of init when setting the sandbox up failed.
const SETUP_FAILED: i32 = 125;
/// Exit status of `run` when zchroot cannot give the command its context
/// (the `--user`, the working directory), as podman's 125; 126: the command
/// cannot be run, 127: it was not found.
pub const CONTEXT_FAILED: i32 = 125;
/// Starts the message of a command whose context could not be set up, so
/// that zchroot tells it from a failure of the sandbox itself (both exit
/// 125 inside).
const CONTEXT_MARK: &str = "context: ";
/// File descriptors of the helper: 3 reads from the parent, 4 writes to it.
const FD_FROM_PARENT: i32 = 3;
const FD_TO_PARENT: i32 = 4;
/// The helper's end of the socket that carries the pty master to the parent.
const FD_PTY: i32 = 5;
/// The environment variable that names the std descriptors (e.g. `0,1,2`)
/// the command gets the sandbox's pty on; set by [`run`], not by callers.
const PTY_ENV: &str = "ZCHROOT_SANDBOX_PTY";
/// Where, inside the sandbox, the pty is made (its own devpts).
const PTMX: &str = "/dev/pts/ptmx";

/// Everything the helper needs, passed as JSON.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SandboxPlan {
    pub root: PathBuf,
    pub steps: Vec<Step>,
    pub hostname: String,
    /// Share the host's network namespace (else an empty one).
    pub share_network: bool,
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    pub cwd: PathBuf,
    /// Who the command runs as (`None`: root of the user namespace).
    #[serde(default)]
    pub user: Option<super::user::Identity>,
    /// What init does once the namespaces exist.
    pub job: Job,
    /// An entry the parent registers in the host's binfmt_misc for the run
    /// (kernels before 6.7, as root) and removes afterwards.
    #[serde(default)]
    pub host_binfmt: Option<HostBinfmt>,
    /// Where the command's standard descriptors lead.
    #[serde(default)]
    pub stdio: Stdio,
}

/// The command's standard descriptors. In both cases the sandbox runs in
/// sessions of its own: nothing in it has the caller's terminal as its
/// controlling terminal.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub enum Stdio {
    /// stdin from /dev/null, stdout and stderr as they are, except that
    /// each of them that is a terminal becomes a pty of the sandbox's own,
    /// relayed one way to the caller's: `create`, builds and jobs, where
    /// nothing may read the caller's keyboard or hold their terminal.
    #[default]
    Batch,
    /// The caller's stdin, stdout and stderr, except that each of them that
    /// is a terminal becomes a pty of the sandbox's own, relayed to the
    /// caller's terminal (`run`, `shell`): job control, window size and
    /// Ctrl-C work inside, and no descriptor of the caller's terminal enters
    /// the sandbox.
    Interactive,
}

/// A host binfmt_misc entry for one run.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct HostBinfmt {
    pub name: String,
    pub line: String,
}

/// Work done as root of the user namespace, where every mapped id can own
/// files: a rootless user's roots are made and removed this way.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Job {
    /// Mount `steps`, pivot, run `argv`.
    Command,
    /// Extract these .debs into `root` (confined; ownership from the
    /// packages), each bounded by its limit (from the index), and register
    /// them with dpkg as unpacked.
    Extract {
        debs: Vec<(PathBuf, crate::deb::ExtractLimit)>,
        root: PathBuf,
    },
    /// Remove a tree without crossing mount points, first moving it to
    /// `aside` when given.
    Remove {
        path: PathBuf,
        aside: Option<PathBuf>,
    },
    /// Copy the tree `from` to the new directory `to` (a root template),
    /// owners as they are.
    CopyTree { from: PathBuf, to: PathBuf },
    /// Write the tree at `root` out as a tarball or an image.
    Export {
        root: PathBuf,
        plan: crate::export::ExportPlan,
        out: PathBuf,
    },
}

impl SandboxPlan {
    /// A plan that runs `job` on the host's filesystem view (no mounts, no
    /// pivot), inside the user namespace.
    pub fn host_job(job: Job) -> SandboxPlan {
        SandboxPlan {
            root: PathBuf::from("/"),
            steps: vec![],
            hostname: "zchroot".into(),
            share_network: true,
            argv: vec![],
            env: vec![],
            cwd: PathBuf::from("/"),
            user: None,
            job,
            host_binfmt: None,
            stdio: Stdio::Batch,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error("starting the sandbox helper {}: {source}", exe.display())]
    Helper {
        exe: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Sys(#[from] sys::SysError),
    #[error("writing the id maps of the sandbox: {message}{help}")]
    IdMap { message: String, help: String },
    #[error("setting up the sandbox failed: {0}")]
    Setup(String),
    #[error("the sandbox helper stopped early: {0}")]
    Protocol(String),
    #[error(transparent)]
    HostBinfmt(#[from] super::host_binfmt::HostBinfmtError),
}

fn pipe() -> Result<(OwnedFd, OwnedFd), SpawnError> {
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|errno| {
        SpawnError::Sys(sys::SysError {
            call: "pipe2(O_CLOEXEC)".into(),
            errno,
        })
    })?;
    Ok((sys::move_fd_high(r)?, sys::move_fd_high(w)?))
}

fn forwarded() -> SigSet {
    let mut s = SigSet::empty();
    for sig in [
        Signal::SIGINT,
        Signal::SIGTERM,
        Signal::SIGHUP,
        Signal::SIGQUIT,
    ] {
        s.add(sig);
    }
    s
}

/// Waits for `child`, forwarding the signals in `set`, whoever sent them:
/// the sandbox is in sessions of its own, so the caller's terminal's Ctrl-C
/// reaches zchroot only, and is passed on once. `reap_all` makes this an
/// init that also reaps orphans. Returns the exit code, 128+N for a signal.
fn wait_forwarding(child: Pid, set: &SigSet, reap_all: bool) -> i32 {
    let mut seen = sys::interrupt::count();
    loop {
        if let Some(p) = sys::wait_signal(set, 50) {
            sys::interrupt::note(p.signal);
            seen = sys::interrupt::count();
            let _ = sys::kill(child, p.signal);
        }
        forward_recorded(child, &mut seen);
        if let Some(code) = reap(child, reap_all) {
            return code;
        }
    }
}

/// Passes on a stopping signal that another thread of zchroot caught (its
/// handler records it, see `sys::interrupt`) since `seen`.
fn forward_recorded(child: Pid, seen: &mut u32) {
    let now = sys::interrupt::count();
    if now != *seen {
        *seen = now;
        if let Some(sig) = sys::interrupt::last() {
            let _ = sys::kill(child, sig);
        }
    }
}

/// Reaps what has exited; `Some(code)` once `child` has (128+N for a
/// signal).
fn reap(child: Pid, reap_all: bool) -> Option<i32> {
    loop {
        let target = if reap_all { Pid::from_raw(-1) } else { child };
        match waitpid(target, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) if pid == child => return Some(code),
            Ok(WaitStatus::Signaled(pid, sig, _)) if pid == child => return Some(128 + sig as i32),
            Ok(WaitStatus::StillAlive) => return None,
            Ok(_) => continue, // an orphan reaped, or a stop
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return Some(127),
        }
    }
}

/// The caller's std descriptors that are terminals and so get the
/// sandbox's pty instead (stdin only when interactive: a batch run's is
/// /dev/null). Jobs run no command and get none.
fn terminal_fds(plan: &SandboxPlan) -> Vec<RawFd> {
    if !matches!(plan.job, Job::Command) {
        return vec![];
    }
    let first = match plan.stdio {
        Stdio::Batch => 1,
        Stdio::Interactive => 0,
    };
    (first..3).filter(|fd| sys::pty::is_terminal(*fd)).collect()
}

/// The parent's side of a pty run: waits for `child` like
/// [`wait_forwarding`], and meanwhile takes the pty master from the socket,
/// puts the caller's terminal in raw mode (restored when this returns),
/// keeps the window size in step, and copies bytes both ways.
fn relay_and_wait(child: Pid, set: &SigSet, sock: OwnedFd, ttys: &[RawFd]) -> i32 {
    use sys::pty;
    let stdin_is_tty = ttys.contains(&0);
    // Where the pty's output goes: the caller's terminal, by the first std
    // descriptor that is one (stdout unless it is redirected).
    let out = [1, 2, 0]
        .into_iter()
        .find(|fd| ttys.contains(fd))
        .unwrap_or(1);
    let size_from = ttys.first().copied().unwrap_or(0);
    let mut sock = Some(sock);
    let mut master: Option<OwnedFd> = None;
    let mut _raw: Option<pty::RawMode> = None;
    let mut _quiet_master: Option<OwnedFd> = None;
    let mut reading_stdin = stdin_is_tty;
    let mut pending: Vec<u8> = Vec::new();
    let mut buf = [0u8; 8192];
    let mut seen = sys::interrupt::count();
    loop {
        let mut fds = Vec::new();
        let sock_slot = sock.as_ref().map(|s| {
            fds.push((s.as_raw_fd(), true, false));
            fds.len() - 1
        });
        let master_slot = master.as_ref().map(|m| {
            fds.push((m.as_raw_fd(), true, !pending.is_empty()));
            fds.len() - 1
        });
        let stdin_slot = (master.is_some() && reading_stdin && pending.is_empty()).then(|| {
            fds.push((0, true, false));
            fds.len() - 1
        });
        let ready = match pty::poll(&fds, 50) {
            Ok(r) => r,
            Err(_) => vec![pty::Ready::default(); fds.len()],
        };
        if let Some(i) = sock_slot {
            if ready[i].read || ready[i].hup {
                let s = sock.take().expect("socket present");
                if let Ok(Some(m)) = pty::recv_fd(s.as_raw_fd()) {
                    let _ = pty::set_nonblocking(&m, true);
                    if let Some(ws) = pty::window_size(size_from) {
                        let _ = pty::set_window_size(m.as_raw_fd(), &ws);
                    }
                    if stdin_is_tty {
                        _raw = pty::RawMode::enable(0).ok();
                    }
                    // The command waits for this before it goes on.
                    let _ = pty::write_all(s.as_raw_fd(), b"g");
                    master = Some(m);
                }
            }
        }
        if let Some(i) = master_slot {
            let m = master.as_ref().expect("master present").as_raw_fd();
            if ready[i].write && !pending.is_empty() {
                match pty::write(m, &pending) {
                    Ok(n) => {
                        pending.drain(..n);
                    }
                    Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR) => {}
                    Err(_) => pending.clear(),
                }
            }
            if ready[i].read || ready[i].hup {
                match pty::read(m, &mut buf) {
                    Ok(n) if n > 0 => {
                        let _ = pty::write_all(out, &buf[..n]);
                    }
                    Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR) => {}
                    // No slave open any more (EIO): nothing left to relay
                    // for now. The master stays open: closing it would
                    // hang up the sandbox's session (a command that sent
                    // its output to a file, as `create`'s install does,
                    // would die of SIGHUP).
                    _ => _quiet_master = master.take(),
                }
            }
        }
        if let Some(i) = stdin_slot {
            if ready[i].read || ready[i].hup {
                match pty::read(0, &mut buf) {
                    Ok(n) if n > 0 => pending.extend_from_slice(&buf[..n]),
                    Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR) => {}
                    // The caller's terminal hung up: hang the sandbox's up
                    // too (its session gets SIGHUP).
                    _ => {
                        reading_stdin = false;
                        master = None;
                    }
                }
            }
        }
        while let Some(p) = sys::wait_signal(set, 0) {
            if p.signal == Signal::SIGWINCH {
                if let (Some(m), Some(ws)) = (&master, pty::window_size(size_from)) {
                    let _ = pty::set_window_size(m.as_raw_fd(), &ws);
                }
            } else {
                sys::interrupt::note(p.signal);
                seen = sys::interrupt::count();
                let _ = sys::kill(child, p.signal);
            }
        }
        forward_recorded(child, &mut seen);
        if let Some(code) = reap(child, false) {
            // The whole sandbox is gone: what is left in the pty is the
            // last output.
            if let Some(m) = &master {
                while let Ok(n @ 1..) = pty::read(m.as_raw_fd(), &mut buf) {
                    let _ = pty::write_all(out, &buf[..n]);
                }
            }
            return code;
        }
    }
}

/// Runs the plan: starts the helper (`exe __sandbox-helper`), maps ids,
/// forwards signals, and returns the command's exit status.
pub fn run(exe: &Path, plan: &SandboxPlan, maps: &IdMaps) -> Result<i32, SpawnError> {
    // Removed when this returns, whatever happens in between (signals are
    // forwarded, not fatal, here).
    let _registration = match &plan.host_binfmt {
        Some(h) => Some(super::host_binfmt::register(exe, &h.name, &h.line)?),
        None => None,
    };
    let (from_parent_r, from_parent_w) = pipe()?;
    let (to_parent_r, to_parent_w) = pipe()?;
    let json = serde_json::to_string(plan).expect("plan serializes");
    let mut cmd = Command::new(exe);
    cmd.arg(HELPER_ARG).env(PLAN_ENV, json).env_remove(PTY_ENV);
    sys::dup2_in_child(&mut cmd, from_parent_r.as_raw_fd(), FD_FROM_PARENT);
    sys::dup2_in_child(&mut cmd, to_parent_w.as_raw_fd(), FD_TO_PARENT);
    let ttys = terminal_fds(plan);
    let mut pty_socket = None;
    if plan.stdio == Stdio::Batch {
        cmd.stdin(std::process::Stdio::null());
    }
    if !ttys.is_empty() {
        // No descriptor of the caller's terminal goes into the sandbox.
        for fd in &ttys {
            match fd {
                0 => cmd.stdin(std::process::Stdio::null()),
                1 => cmd.stdout(std::process::Stdio::null()),
                _ => cmd.stderr(std::process::Stdio::null()),
            };
        }
        let (ours, theirs) = sys::pty::socketpair()?;
        let (ours, theirs) = (sys::move_fd_high(ours)?, sys::move_fd_high(theirs)?);
        sys::dup2_in_child(&mut cmd, theirs.as_raw_fd(), FD_PTY);
        let list: Vec<String> = ttys.iter().map(|fd| fd.to_string()).collect();
        cmd.env(PTY_ENV, list.join(","));
        pty_socket = Some((ours, theirs));
    }
    // Block the forwarded signals before the child exists, so none is lost;
    // the helper starts with them blocked too and handles them itself.
    let set = forwarded();
    let mut parent_set = set;
    if pty_socket.is_some() {
        parent_set.add(Signal::SIGWINCH);
    }
    let set = parent_set;
    let old = sys::block_signals(&set)?;
    let child = match cmd.spawn() {
        Ok(c) => c,
        Err(source) => {
            let _ = sys::set_signal_mask(&old);
            return Err(SpawnError::Helper {
                exe: exe.into(),
                source,
            });
        }
    };
    drop(from_parent_r);
    drop(to_parent_w);
    let pty_socket = pty_socket.map(|(ours, _theirs)| ours);
    let pid = Pid::from_raw(child.id() as i32);
    let mut to_child = std::fs::File::from(from_parent_w);
    let mut from_child = std::fs::File::from(to_parent_r);

    let result = (|| {
        let mut b = [0u8; 1];
        if from_child.read(&mut b).unwrap_or(0) != 1 || b[0] != b'u' {
            return Err(None);
        }
        if let Err(e) = write_maps(pid, maps) {
            return Err(Some(e));
        }
        to_child.write_all(b"g").map_err(|_| None)?;
        Ok(())
    })();
    let code = match (&result, pty_socket) {
        (Ok(()), Some(sock)) => relay_and_wait(pid, &set, sock, &ttys),
        (Ok(()), None) => wait_forwarding(pid, &set, false),
        (Err(_), _) => {
            let _ = sys::kill(pid, Signal::SIGKILL);
            wait_forwarding(pid, &set, false)
        }
    };
    let _ = sys::set_signal_mask(&old);
    drop(child);
    let mut messages = String::new();
    let _ = from_child.read_to_string(&mut messages);
    let messages = messages.trim().to_string();
    match result {
        Err(Some(e)) => Err(e),
        Err(None) => Err(SpawnError::Protocol(if messages.is_empty() {
            format!("exit status {code}")
        } else {
            messages
        })),
        Ok(()) if messages.starts_with(CONTEXT_MARK) => {
            eprintln_to_stderr(&messages[CONTEXT_MARK.len()..]);
            Ok(code)
        }
        Ok(()) if code == SETUP_FAILED && !messages.is_empty() => Err(SpawnError::Setup(messages)),
        Ok(()) => {
            if !messages.is_empty() {
                // The command could not be started (init wrote why).
                eprintln_to_stderr(&messages);
            }
            Ok(code)
        }
    }
}

/// The one place the library writes to stderr: the command's own failure
/// to start, which the user must see like a shell's "command not found".
fn eprintln_to_stderr(m: &str) {
    let _ = writeln!(std::io::stderr(), "zchroot: {m}");
}

fn write_maps(pid: Pid, maps: &IdMaps) -> Result<(), SpawnError> {
    if maps.helpers {
        for (helper, extents) in [("newuidmap", &maps.uid), ("newgidmap", &maps.gid)] {
            let out = Command::new(helper)
                .arg(pid.to_string())
                .args(IdMaps::helper_args(extents))
                .output();
            match out {
                Ok(o) if o.status.success() => {}
                Ok(o) => {
                    return Err(SpawnError::IdMap {
                        message: format!(
                            "{helper} {pid} {}: {}",
                            IdMaps::helper_args(extents).join(" "),
                            String::from_utf8_lossy(&o.stderr).trim()
                        ),
                        help: "\nhelp: check your ranges in /etc/subuid and /etc/subgid (`zchroot doctor` shows them)".into(),
                    })
                }
                Err(e) => {
                    return Err(SpawnError::IdMap {
                        message: format!("{helper}: {e}"),
                        help: "\nhelp: install newuidmap and newgidmap: `sudo apt-get install uidmap`".into(),
                    })
                }
            }
        }
    } else {
        for (file, extents) in [("uid_map", &maps.uid), ("gid_map", &maps.gid)] {
            let path = format!("/proc/{pid}/{file}");
            std::fs::write(&path, IdMaps::map_text(extents)).map_err(|e| SpawnError::IdMap {
                message: format!("{path}: {e}"),
                help: String::new(),
            })?;
        }
    }
    Ok(())
}

/// Reports a failure to the parent through fd 4 and exits.
fn fail(code: i32, message: &str) -> ! {
    let mut f = sys::file_from_inherited_fd(FD_TO_PARENT);
    let _ = f.write_all(message.as_bytes());
    std::mem::forget(f);
    std::process::exit(code)
}

/// The helper's whole life: called by `zchroot __sandbox-helper` before
/// anything else (no threads exist yet).
pub fn helper_main() -> ! {
    let Some(json) = std::env::var_os(PLAN_ENV) else {
        eprintln_to_stderr("the sandbox helper is started by zchroot itself");
        std::process::exit(2)
    };
    // This process is single-threaded: changing the environment cannot race.
    std::env::remove_var(PLAN_ENV);
    let ttys: Vec<RawFd> = std::env::var(PTY_ENV)
        .unwrap_or_default()
        .split(',')
        .filter_map(|fd| fd.parse().ok())
        .filter(|fd| (0..3).contains(fd))
        .collect();
    std::env::remove_var(PTY_ENV);
    // Only fds 0-2, 3, 4 (and 5 for the pty) are ours to pass on: anything
    // else the caller left open (a terminal, say) is closed.
    if let Err(e) = sys::pty::close_from(if ttys.is_empty() { FD_PTY } else { FD_PTY + 1 }) {
        fail(SETUP_FAILED, &e.to_string());
    }
    // Leave the caller's session first: from here on, nothing of the
    // sandbox has the caller's terminal as its controlling terminal.
    if let Err(e) = sys::pty::setsid() {
        fail(SETUP_FAILED, &e.to_string());
    }
    // And the caller's session keyring: the sandbox gets an empty one.
    if let Err(e) = sys::join_new_session_keyring() {
        fail(SETUP_FAILED, &e.to_string());
    }
    let plan: SandboxPlan = match serde_json::from_str(&json.to_string_lossy()) {
        Ok(p) => p,
        Err(e) => fail(SETUP_FAILED, &format!("bad sandbox plan: {e}")),
    };
    if let Err(e) = sys::set_parent_death_signal(Signal::SIGKILL) {
        fail(SETUP_FAILED, &e.to_string());
    }
    let mut flags = CloneFlags::CLONE_NEWUSER
        | CloneFlags::CLONE_NEWNS
        | CloneFlags::CLONE_NEWPID
        | CloneFlags::CLONE_NEWUTS
        | CloneFlags::CLONE_NEWIPC;
    if !plan.share_network {
        flags |= CloneFlags::CLONE_NEWNET;
    }
    if let Err(e) = sys::unshare(flags) {
        fail(
            SETUP_FAILED,
            &format!("{e}\nhelp: user namespaces may be disabled: check `sysctl kernel.unprivileged_userns_clone kernel.apparmor_restrict_unprivileged_userns user.max_user_namespaces` (`zchroot doctor`)"),
        );
    }
    let mut to_parent = sys::file_from_inherited_fd(FD_TO_PARENT);
    let mut from_parent = sys::file_from_inherited_fd(FD_FROM_PARENT);
    if to_parent.write_all(b"u").is_err() {
        std::process::exit(SETUP_FAILED);
    }
    let mut b = [0u8; 1];
    if from_parent.read(&mut b).unwrap_or(0) != 1 || b[0] != b'g' {
        std::process::exit(SETUP_FAILED);
    }
    drop(from_parent);
    std::mem::forget(to_parent); // fd 4 stays open for `fail`
                                 // The maps are written (newuidmap needed /proc/PID to be ours until
                                 // now): from here on nothing but host root can ptrace this process or
                                 // open its /proc files.
    if let Err(e) = sys::set_non_dumpable() {
        fail(SETUP_FAILED, &e.to_string());
    }
    if let Err(e) = sys::become_root(false) {
        fail(SETUP_FAILED, &e.to_string());
    }
    let set = forwarded();
    // The parent started us with these blocked already; keep them so.
    if let Err(e) = sys::block_signals(&set) {
        fail(SETUP_FAILED, &e.to_string());
    }
    match sys::fork() {
        Err(e) => fail(SETUP_FAILED, &e.to_string()),
        Ok(sys::Forked::Child) => init_main(&plan, &set, &ttys),
        Ok(sys::Forked::Parent(init)) => {
            sys::close_fd(FD_TO_PARENT);
            if !ttys.is_empty() {
                sys::close_fd(FD_PTY);
            }
            let code = wait_forwarding(init, &set, false);
            std::process::exit(code)
        }
    }
}

/// PID 1 of the sandbox. `ttys`: the std descriptors the command gets the
/// sandbox's pty on (none: no pty).
fn init_main(plan: &SandboxPlan, set: &SigSet, ttys: &[RawFd]) -> ! {
    if let Err(e) = sys::set_parent_death_signal(Signal::SIGKILL) {
        fail(SETUP_FAILED, &e.to_string());
    }
    // Init is no door: non-dumpable (fork kept the helper's setting; said
    // again so that it never depends on it), so the command cannot ptrace
    // it, open /proc/1/{exe,root,fd/*,ns/*} or read its memory.
    if let Err(e) = sys::set_non_dumpable() {
        fail(SETUP_FAILED, &e.to_string());
    }
    if let Err(e) = sys::sethostname(&plan.hostname) {
        fail(SETUP_FAILED, &e.to_string());
    }
    match &plan.job {
        Job::Command => {}
        Job::Extract { debs, root } => {
            if let Err(e) = crate::rootfs::native::unpack_and_register(root, debs) {
                fail(SETUP_FAILED, &e);
            }
            std::process::exit(0)
        }
        Job::Remove { path, aside } => match match aside {
            Some(a) => crate::teardown::remove_tree_aside(path, a),
            None => crate::teardown::remove_tree(path),
        } {
            Ok(()) => std::process::exit(0),
            Err(e) => fail(SETUP_FAILED, &e.to_string()),
        },
        Job::CopyTree { from, to } => match crate::rootfs::template::copy_tree(from, to) {
            Ok(_) => std::process::exit(0),
            Err(e) => fail(SETUP_FAILED, &e.to_string()),
        },
        Job::Export { root, plan, out } => match crate::export::export(root, plan, out) {
            Ok(()) => std::process::exit(0),
            Err(e) => fail(SETUP_FAILED, &e.to_string()),
        },
    }
    for step in &plan.steps {
        if let Err(e) = mounts::apply(step, &plan.root) {
            fail(SETUP_FAILED, &e.to_string());
        }
    }
    sys::set_cloexec(FD_TO_PARENT);
    let (to_init, from_cmd) = match pipe() {
        Ok(p) => (p.1, p.0),
        Err(e) => fail(SETUP_FAILED, &e.to_string()),
    };
    let (to_cmd, from_init) = match pipe() {
        Ok(p) => (p.1, p.0),
        Err(e) => fail(SETUP_FAILED, &e.to_string()),
    };
    match sys::fork() {
        Err(e) => fail(SETUP_FAILED, &e.to_string()),
        Ok(sys::Forked::Child) => {
            drop((from_cmd, to_cmd));
            command_main(plan, ttys, (to_init, from_init))
        }
        Ok(sys::Forked::Parent(cmd)) => {
            drop((to_init, from_init));
            if !ttys.is_empty() {
                sys::close_fd(FD_PTY);
            }
            // The command's own user namespace gets the identity map of
            // this one: it holds the same ids, but the mounts it sees are
            // locked (MNT_LOCK_READONLY and friends), capabilities or not.
            let mut from_cmd = std::fs::File::from(from_cmd);
            let mut to_cmd = std::fs::File::from(to_cmd);
            let mut b = [0u8; 1];
            if from_cmd.read(&mut b).unwrap_or(0) == 1 && b[0] == b'u' {
                if let Err(e) = nested_maps(cmd) {
                    let _ = sys::kill(cmd, Signal::SIGKILL);
                    fail(SETUP_FAILED, &e);
                }
                let _ = to_cmd.write_all(b"g");
            }
            drop((from_cmd, to_cmd));
            sys::close_fd(FD_TO_PARENT);
            // What init keeps while it waits: CAP_KILL, to pass signals on
            // to a command run as another user; /dev/null as its standard
            // descriptors (the caller's output is the command's alone).
            if let Err(e) = sys::caps::keep_only(&[sys::caps::CAP_KILL]) {
                let _ = sys::kill(cmd, Signal::SIGKILL);
                eprintln_to_stderr(&format!("the sandbox's init: {e}"));
                std::process::exit(SETUP_FAILED)
            }
            if let Err(e) = sys::stdio_to_null(Path::new("/dev/null")) {
                let _ = sys::kill(cmd, Signal::SIGKILL);
                eprintln_to_stderr(&format!("the sandbox's init: {e}"));
                std::process::exit(SETUP_FAILED)
            }
            let code = wait_forwarding(cmd, set, true);
            std::process::exit(code)
        }
    }
}

/// Writes the id maps of the command's user namespace: each range of
/// init's own namespace mapped to itself.
fn nested_maps(cmd: Pid) -> Result<(), String> {
    for file in ["uid_map", "gid_map"] {
        let own = format!("/proc/self/{file}");
        let text = std::fs::read_to_string(&own).map_err(|e| format!("reading {own}: {e}"))?;
        let same = super::idmap::identity_of(&text);
        let theirs = format!("/proc/{cmd}/{file}");
        std::fs::write(&theirs, same.as_bytes())
            .map_err(|e| format!("writing {theirs} ({same:?}): {e}"))?;
    }
    Ok(())
}

/// The command's process, forked by init: a session and a terminal of its
/// own, the environment, the seccomp filter, no `CAP_SYS_ADMIN`, the user
/// and the working directory, then exec. A user or working directory that
/// cannot be taken exits [`CONTEXT_FAILED`], a command that cannot run 126,
/// one not found 127, each with a message for zchroot to print.
fn command_main(plan: &SandboxPlan, ttys: &[RawFd], (to_init, from_init): (OwnedFd, OwnedFd)) -> ! {
    // The command starts with no signal blocked and none ignored.
    if let Err(e) = sys::default_signal_actions() {
        fail(SETUP_FAILED, &e.to_string());
    }
    let _ = sys::set_signal_mask(&SigSet::empty());
    // A session of its own, away from init's.
    if let Err(e) = sys::pty::setsid() {
        fail(SETUP_FAILED, &e.to_string());
    }
    // Dumpable again (fork copied init's setting), so that init, without
    // privilege over the host's root, may write the maps of its
    // /proc/PID; the exec below would make it dumpable anyway, and nothing
    // else runs in the sandbox until then.
    if let Err(e) = sys::set_dumpable() {
        fail(SETUP_FAILED, &e.to_string());
    }
    // A user and mount namespace of its own, made after the mounts: the
    // kernel locks every mount it inherits, so no capability in it can
    // remount a read-only bind read-write or uncover a masked path.
    if let Err(e) = sys::unshare(CloneFlags::CLONE_NEWUSER | CloneFlags::CLONE_NEWNS) {
        fail(SETUP_FAILED, &e.to_string());
    }
    let mut to_init = std::fs::File::from(to_init);
    let mut from_init = std::fs::File::from(from_init);
    let mut b = [0u8; 1];
    if to_init.write_all(b"u").is_err() || from_init.read(&mut b).unwrap_or(0) != 1 || b[0] != b'g'
    {
        fail(
            SETUP_FAILED,
            "the sandbox's init did not map the command's ids",
        );
    }
    drop((to_init, from_init));
    if !ttys.is_empty() {
        let owner = plan.user.as_ref().map(|u| u.uid);
        if let Err(e) = take_pty(ttys, owner) {
            fail(SETUP_FAILED, &format!("giving the command a terminal: {e}"));
        }
    }
    for (k, _) in std::env::vars_os() {
        std::env::remove_var(k);
    }
    for (k, v) in &plan.env {
        std::env::set_var(k, v);
    }
    if let Err(e) = sys::seccomp::install_sandbox_filter() {
        fail(SETUP_FAILED, &e.to_string());
    }
    // After the filter, which needed CAP_SYS_ADMIN: a container's
    // capabilities and no more, for good (bounding set too).
    if let Err(e) = sys::caps::keep_only(&sys::caps::CONTAINER) {
        fail(SETUP_FAILED, &e.to_string());
    }
    if let Some(u) = &plan.user {
        if let Err(e) = sys::become_user(u.uid, u.gid, &u.groups) {
            fail(
                CONTEXT_FAILED,
                &format!(
                    "{CONTEXT_MARK}cannot run as uid {} gid {}: {e}",
                    u.uid, u.gid
                ),
            );
        }
    }
    // As the user: a directory they cannot enter is refused as it would be
    // at a login.
    if let Err(e) = sys::chdir(&plan.cwd) {
        fail(
            CONTEXT_FAILED,
            &format!(
                "{CONTEXT_MARK}cannot enter the working directory {} inside the root: {}",
                plan.cwd.display(),
                e.errno.desc()
            ),
        );
    }
    let e = sys::execvp(&plan.argv);
    let code = if e.errno == nix::errno::Errno::ENOENT {
        127
    } else {
        126
    };
    fail(
        code,
        &format!("cannot run {:?}: {}", plan.argv[0], e.errno.desc()),
    )
}

/// In the command's process (a session leader without a terminal, after
/// pivot_root): makes a pty in the sandbox's devpts, takes it as the
/// controlling terminal on `ttys` (given to `owner`, the `--user`, if
/// any), sends the master to zchroot and waits until zchroot has set the
/// window size and the caller's terminal up.
fn take_pty(ttys: &[RawFd], owner: Option<u32>) -> Result<(), sys::SysError> {
    use sys::pty;
    let (master, slave) = pty::open_pty(Path::new(PTMX))?;
    pty::set_controlling_terminal(slave.as_raw_fd())?;
    if let Some(uid) = owner {
        pty::give_to(slave.as_raw_fd(), uid)?;
    }
    for fd in ttys {
        pty::dup2(slave.as_raw_fd(), *fd)?;
    }
    drop(slave);
    pty::send_fd(FD_PTY, master.as_raw_fd())?;
    drop(master);
    let mut go = [0u8; 1];
    let n = pty::read(FD_PTY, &mut go).map_err(|errno| sys::SysError {
        call: format!("read({FD_PTY}) (zchroot's go)"),
        errno,
    })?;
    sys::close_fd(FD_PTY);
    if n != 1 {
        return Err(sys::SysError {
            call: format!("read({FD_PTY}) (zchroot's go)"),
            errno: nix::errno::Errno::EPIPE,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plan_is_batch_unless_made_interactive() {
        assert_eq!(
            SandboxPlan::host_job(Job::Command).stdio,
            Stdio::Batch,
            "jobs never read the keyboard"
        );
        // A plan written without the field (an older zchroot) reads as batch.
        let mut v = serde_json::to_value(SandboxPlan::host_job(Job::Command)).unwrap();
        v.as_object_mut().unwrap().remove("stdio");
        let p: SandboxPlan = serde_json::from_value(v).unwrap();
        assert_eq!(p.stdio, Stdio::Batch);
    }
}
