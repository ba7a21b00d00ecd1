//! The processes of a sandbox run:
//!
//! ```text
//! zchroot (parent)            writes the id maps, forwards signals, waits
//! └─ zchroot helper           fresh exec, single-threaded: unshare(USER|NS|PID|UTS|IPC[|NET])
//!    └─ init (PID 1 inside)   mounts, pivot_root, reaps, forwards signals
//!       └─ the command
//! ```
//!
//! The helper and init die with their parent (PR_SET_PDEATHSIG), the PID
//! namespace dies with init, and the mount namespace with its last process:
//! a SIGKILL of zchroot at any moment leaves no process and no mount behind.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
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
/// File descriptors of the helper: 3 reads from the parent, 4 writes to it.
const FD_FROM_PARENT: i32 = 3;
const FD_TO_PARENT: i32 = 4;

/// Everything the helper needs, passed as JSON.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Plan {
    pub root: PathBuf,
    pub steps: Vec<Step>,
    pub hostname: String,
    /// Share the host's network namespace (else an empty one).
    pub share_network: bool,
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    pub cwd: PathBuf,
    /// What init does once the namespaces exist.
    pub job: Job,
    /// An entry the parent registers in the host's binfmt_misc for the run
    /// (kernels before 6.7, as root) and removes afterwards.
    #[serde(default)]
    pub host_binfmt: Option<HostBinfmt>,
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
    /// packages), each bounded by its limit (from the index).
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
    /// Write the tree at `root` out as a tarball or an image.
    Export {
        root: PathBuf,
        format: crate::export::Format,
        out: PathBuf,
    },
}

impl Plan {
    /// A plan that runs `job` on the host's filesystem view (no mounts, no
    /// pivot), inside the user namespace.
    pub fn host_job(job: Job) -> Plan {
        Plan {
            root: PathBuf::from("/"),
            steps: vec![],
            hostname: "zchroot".into(),
            share_network: true,
            argv: vec![],
            env: vec![],
            cwd: PathBuf::from("/"),
            job,
            host_binfmt: None,
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

/// Waits for `child`, forwarding signals that a process sent to us (the
/// terminal's own Ctrl-C reaches the command directly). `reap_all` makes
/// this an init that also reaps orphans. Returns the exit code, 128+N for
/// a signal.
fn wait_forwarding(child: Pid, set: &SigSet, reap_all: bool) -> i32 {
    loop {
        if let Some(p) = sys::wait_signal(set, 50) {
            if p.from_process {
                let _ = sys::kill(child, p.signal);
            }
        }
        loop {
            let target = if reap_all { Pid::from_raw(-1) } else { child };
            match waitpid(target, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) if pid == child => return code,
                Ok(WaitStatus::Signaled(pid, sig, _)) if pid == child => return 128 + sig as i32,
                Ok(WaitStatus::StillAlive) => break,
                Ok(_) => continue, // an orphan reaped, or a stop
                Err(nix::errno::Errno::EINTR) => continue,
                Err(_) => return 127,
            }
        }
    }
}

/// Runs the plan: starts the helper (`exe __sandbox-helper`), maps ids,
/// forwards signals, and returns the command's exit status.
pub fn run(exe: &Path, plan: &Plan, maps: &IdMaps) -> Result<i32, SpawnError> {
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
    cmd.arg(HELPER_ARG).env(PLAN_ENV, json);
    sys::dup2_in_child(&mut cmd, from_parent_r.as_raw_fd(), FD_FROM_PARENT);
    sys::dup2_in_child(&mut cmd, to_parent_w.as_raw_fd(), FD_TO_PARENT);
    // Block the forwarded signals before the child exists, so none is lost;
    // the helper starts with them blocked too and handles them itself.
    let set = forwarded();
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
    let code = match &result {
        Ok(()) => wait_forwarding(pid, &set, false),
        Err(_) => {
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
    let plan: Plan = match serde_json::from_str(&json.to_string_lossy()) {
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
        Ok(sys::Forked::Child) => init_main(&plan, &set),
        Ok(sys::Forked::Parent(init)) => {
            sys::close_fd(FD_TO_PARENT);
            let code = wait_forwarding(init, &set, false);
            std::process::exit(code)
        }
    }
}

/// PID 1 of the sandbox.
fn init_main(plan: &Plan, set: &SigSet) -> ! {
    if let Err(e) = sys::set_parent_death_signal(Signal::SIGKILL) {
        fail(SETUP_FAILED, &e.to_string());
    }
    if let Err(e) = sys::sethostname(&plan.hostname) {
        fail(SETUP_FAILED, &e.to_string());
    }
    match &plan.job {
        Job::Command => {}
        Job::Extract { debs, root } => {
            for (deb, limit) in debs {
                if let Err(e) = crate::deb::read::extract_data_with(deb, root, limit) {
                    fail(SETUP_FAILED, &e.to_string());
                }
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
        Job::Export { root, format, out } => match crate::export::export(root, *format, out) {
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
    match sys::fork() {
        Err(e) => fail(SETUP_FAILED, &e.to_string()),
        Ok(sys::Forked::Child) => {
            // The command starts with no signal blocked.
            let _ = sys::set_signal_mask(&SigSet::empty());
            if let Err(e) = sys::chdir(&plan.cwd) {
                fail(127, &e.to_string());
            }
            for (k, _) in std::env::vars_os() {
                std::env::remove_var(k);
            }
            for (k, v) in &plan.env {
                std::env::set_var(k, v);
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
        Ok(sys::Forked::Parent(cmd)) => {
            sys::close_fd(FD_TO_PARENT);
            let code = wait_forwarding(cmd, set, true);
            std::process::exit(code)
        }
    }
}
