//! The only place with `unsafe` and raw system calls. Every call's error
//! names the call, its arguments and the errno:
//! `mount("proc", "/r/proc", "proc", ..) => EPERM`.

pub mod caps;
pub mod copy;
pub mod fsmount;
pub mod interrupt;
pub mod pty;
pub mod seccomp;
pub mod tree;

use std::ffi::CString;
use std::os::fd::RawFd;
use std::path::Path;

use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags};
use nix::sched::CloneFlags;
use nix::sys::signal::{SigSet, Signal};
use nix::unistd::{ForkResult, Gid, Pid, Uid};

/// A failed system call, described.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[error("{call} => {errno}")]
pub struct SysError {
    pub call: String,
    pub errno: Errno,
}

pub type SysResult<T> = Result<T, SysError>;

fn err(call: impl FnOnce() -> String) -> impl FnOnce(Errno) -> SysError {
    move |errno| SysError {
        call: call(),
        errno,
    }
}

pub fn unshare(flags: CloneFlags) -> SysResult<()> {
    nix::sched::unshare(flags).map_err(err(|| format!("unshare({flags:?})")))
}

pub fn mount(
    source: Option<&Path>,
    target: &Path,
    fstype: Option<&str>,
    flags: MsFlags,
    data: Option<&str>,
) -> SysResult<()> {
    nix::mount::mount(source, target, fstype, flags, data).map_err(err(|| {
        format!(
            "mount({:?}, {:?}, {:?}, {flags:?}, {:?})",
            source.map(|s| s.display().to_string()).unwrap_or_default(),
            target.display().to_string(),
            fstype.unwrap_or(""),
            data.unwrap_or("")
        )
    }))
}

pub fn umount2(target: &Path, flags: MntFlags) -> SysResult<()> {
    nix::mount::umount2(target, flags).map_err(err(|| {
        format!("umount2({:?}, {flags:?})", target.display().to_string())
    }))
}

pub fn pivot_root(new_root: &Path, put_old: &Path) -> SysResult<()> {
    nix::unistd::pivot_root(new_root, put_old).map_err(err(|| {
        format!(
            "pivot_root({:?}, {:?})",
            new_root.display().to_string(),
            put_old.display().to_string()
        )
    }))
}

pub fn chdir(dir: &Path) -> SysResult<()> {
    nix::unistd::chdir(dir).map_err(err(|| format!("chdir({:?})", dir.display().to_string())))
}

pub fn sethostname(name: &str) -> SysResult<()> {
    nix::unistd::sethostname(name).map_err(err(|| format!("sethostname({name:?})")))
}

/// Becomes root inside the user namespace: uid, gid 0 and no groups.
pub fn become_root(keep_groups: bool) -> SysResult<()> {
    if !keep_groups {
        nix::unistd::setgroups(&[]).map_err(err(|| "setgroups([])".to_string()))?;
    }
    nix::unistd::setresgid(Gid::from_raw(0), Gid::from_raw(0), Gid::from_raw(0))
        .map_err(err(|| "setresgid(0, 0, 0)".to_string()))?;
    nix::unistd::setresuid(Uid::from_raw(0), Uid::from_raw(0), Uid::from_raw(0))
        .map_err(err(|| "setresuid(0, 0, 0)".to_string()))
}

/// Becomes `uid` and `gid` with the supplementary `groups` (ids of the
/// user namespace). A uid other than 0 leaves no capability behind.
pub fn become_user(uid: u32, gid: u32, groups: &[u32]) -> SysResult<()> {
    let gids: Vec<Gid> = groups.iter().map(|g| Gid::from_raw(*g)).collect();
    nix::unistd::setgroups(&gids).map_err(err(|| format!("setgroups({groups:?})")))?;
    let g = Gid::from_raw(gid);
    nix::unistd::setresgid(g, g, g).map_err(err(|| format!("setresgid({gid}, {gid}, {gid})")))?;
    let u = Uid::from_raw(uid);
    nix::unistd::setresuid(u, u, u).map_err(err(|| format!("setresuid({uid}, {uid}, {uid})")))
}

/// Makes this process non-dumpable (`PR_SET_DUMPABLE` 0): no core dump,
/// its `/proc/PID` files belong to root of the host's user namespace, and
/// nothing without `CAP_SYS_PTRACE` there may ptrace it, read its memory,
/// or open `/proc/PID/{exe,root,cwd,fd/*,ns/*}`. Kept until this process
/// execs, which the sandbox's helper and init never do.
pub fn set_non_dumpable() -> SysResult<()> {
    nix::sys::prctl::set_dumpable(false).map_err(err(|| "prctl(PR_SET_DUMPABLE, 0)".to_string()))
}

/// Makes this process dumpable again (`PR_SET_DUMPABLE` 1).
pub fn set_dumpable() -> SysResult<()> {
    nix::sys::prctl::set_dumpable(true).map_err(err(|| "prctl(PR_SET_DUMPABLE, 1)".to_string()))
}

/// Whether this process is dumpable (`PR_GET_DUMPABLE`).
pub fn is_dumpable() -> SysResult<bool> {
    nix::sys::prctl::get_dumpable().map_err(err(|| "prctl(PR_GET_DUMPABLE)".to_string()))
}

/// Joins a new, anonymous session keyring, so that nothing started from
/// here reaches the caller's (`keyctl(KEYCTL_JOIN_SESSION_KEYRING, NULL)`,
/// as runc does).
pub fn join_new_session_keyring() -> SysResult<()> {
    const KEYCTL_JOIN_SESSION_KEYRING: libc::c_long = 1;
    // SAFETY: a null name asks for an anonymous keyring; no pointer is
    // dereferenced.
    let r = unsafe {
        libc::syscall(
            libc::SYS_keyctl,
            KEYCTL_JOIN_SESSION_KEYRING,
            std::ptr::null::<libc::c_char>(),
        )
    };
    if r < 0 {
        return Err(SysError {
            call: "keyctl(KEYCTL_JOIN_SESSION_KEYRING, NULL)".into(),
            errno: Errno::last(),
        });
    }
    Ok(())
}

/// Points descriptors 0, 1 and 2 at `/dev/null` (opened as `null`, a path
/// inside the current root).
pub fn stdio_to_null(null: &Path) -> SysResult<()> {
    let fd = nix::fcntl::open(
        null,
        nix::fcntl::OFlag::O_RDWR | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(err(|| {
        format!("open({:?}, O_RDWR)", null.display().to_string())
    }))?;
    for to in 0..3 {
        // SAFETY: dup2 on descriptors this process owns; `fd` stays open
        // until the end of the loop.
        let r = unsafe { libc::dup2(std::os::fd::AsRawFd::as_raw_fd(&fd), to) };
        if r < 0 {
            return Err(SysError {
                call: format!("dup2(<{}>, {to})", null.display()),
                errno: Errno::last(),
            });
        }
    }
    Ok(())
}

/// Asks the kernel to send `sig` to this process when its parent dies.
pub fn set_parent_death_signal(sig: Signal) -> SysResult<()> {
    nix::sys::prctl::set_pdeathsig(sig).map_err(err(|| format!("prctl(PR_SET_PDEATHSIG, {sig})")))
}

pub enum Forked {
    Child,
    Parent(Pid),
}

/// Forks. The caller must be single-threaded (the sandbox helper is a
/// freshly exec'd process that starts no threads).
pub fn fork() -> SysResult<Forked> {
    // SAFETY: the sandbox helper and its init are single-threaded processes
    // (exec'd fresh, no threads started), so the child may run any code, not
    // only async-signal-safe functions.
    match unsafe { nix::unistd::fork() } {
        Ok(ForkResult::Child) => Ok(Forked::Child),
        Ok(ForkResult::Parent { child }) => Ok(Forked::Parent(child)),
        Err(e) => Err(SysError {
            call: "fork()".into(),
            errno: e,
        }),
    }
}

/// Replaces the process image. Returns only on error.
pub fn execvp(argv: &[String]) -> SysError {
    let c: Result<Vec<CString>, _> = argv.iter().map(|a| CString::new(a.as_bytes())).collect();
    let Ok(c) = c else {
        return SysError {
            call: format!("execvp({argv:?})"),
            errno: Errno::EINVAL,
        };
    };
    match nix::unistd::execvp(&c[0], &c) {
        Err(e) => SysError {
            call: format!("execvp({:?})", argv[0]),
            errno: e,
        },
    }
}

/// Blocks the signals that the sandbox forwards, returning the old mask.
pub fn block_signals(set: &SigSet) -> SysResult<SigSet> {
    let mut old = SigSet::empty();
    nix::sys::signal::sigprocmask(
        nix::sys::signal::SigmaskHow::SIG_BLOCK,
        Some(set),
        Some(&mut old),
    )
    .map_err(err(|| "sigprocmask(SIG_BLOCK)".into()))?;
    Ok(old)
}

pub fn set_signal_mask(set: &SigSet) -> SysResult<()> {
    nix::sys::signal::sigprocmask(nix::sys::signal::SigmaskHow::SIG_SETMASK, Some(set), None)
        .map_err(err(|| "sigprocmask(SIG_SETMASK)".into()))
}

/// Puts every signal a process may catch or ignore back to its default
/// action, as a new program should find them: zchroot's runtime ignores
/// SIGPIPE, and an ignored signal stays ignored across exec (a command
/// would then see EPIPE instead of dying quietly: `yes | head -1` prints
/// "Broken pipe").
pub fn default_signal_actions() -> SysResult<()> {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler};
    let dfl = SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
    for sig in Signal::iterator().filter(|s| !matches!(s, Signal::SIGKILL | Signal::SIGSTOP)) {
        // SAFETY: SIG_DFL installs no handler of ours, so no code of this
        // process runs in a signal context because of it.
        unsafe { sigaction(sig, &dfl) }.map_err(err(|| format!("sigaction({sig}, SIG_DFL)")))?;
    }
    // The real-time ones glibc lets a program have (its own, below
    // SIGRTMIN, it keeps to itself).
    for sig in libc::SIGRTMIN()..=libc::SIGRTMAX() {
        // SAFETY: a zeroed sigaction is SIG_DFL with no flags and an empty
        // mask; the pointer is valid for the call, the old action unasked.
        let r = unsafe {
            let dfl: libc::sigaction = std::mem::zeroed();
            libc::sigaction(sig, &dfl, std::ptr::null_mut())
        };
        if r != 0 {
            return Err(err(|| format!("sigaction({sig}, SIG_DFL)"))(Errno::last()));
        }
    }
    Ok(())
}

/// A signal taken from the pending set, and whether a process (rather than
/// the kernel, e.g. the terminal's Ctrl-C) sent it.
pub struct Pending {
    pub signal: Signal,
    pub from_process: bool,
}

/// Waits up to `timeout_ms` for one of the blocked signals in `set`.
pub fn wait_signal(set: &SigSet, timeout_ms: i64) -> Option<Pending> {
    let ts = libc::timespec {
        tv_sec: timeout_ms / 1000,
        tv_nsec: (timeout_ms % 1000) * 1_000_000,
    };
    // SAFETY: `info` is a plain C struct the kernel fills in; `set` and `ts`
    // are valid for the duration of the call.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    let n = unsafe { libc::sigtimedwait(set.as_ref(), &mut info, &ts) };
    if n <= 0 {
        return None;
    }
    let signal = Signal::try_from(n).ok()?;
    // si_code <= 0: sent by kill(), sigqueue() or tgkill() from a process.
    Some(Pending {
        signal,
        from_process: info.si_code <= 0,
    })
}

pub fn kill(pid: Pid, sig: Signal) -> SysResult<()> {
    nix::sys::signal::kill(pid, sig).map_err(err(|| format!("kill({pid}, {sig})")))
}

/// Makes `fd` a copy of `from` in the child between fork and exec of a
/// `std::process::Command` (dup2 clears close-on-exec on the copy).
pub fn dup2_in_child(cmd: &mut std::process::Command, from: RawFd, to: RawFd) {
    use std::os::unix::process::CommandExt;
    // SAFETY: dup2 is async-signal-safe, and `from` stays open in the parent
    // until the child has been spawned.
    unsafe {
        cmd.pre_exec(move || {
            if libc::dup2(from, to) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Flags of the filesystem at `path` that a bind remount inside a user
/// namespace must keep (the kernel locks them).
pub fn locked_mount_flags(path: &Path) -> SysResult<MsFlags> {
    let st = nix::sys::statvfs::statvfs(path)
        .map_err(err(|| format!("statvfs({:?})", path.display().to_string())))?;
    use nix::sys::statvfs::FsFlags;
    let f = st.flags();
    let mut out = MsFlags::empty();
    for (a, b) in [
        (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
        (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
        (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
        (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
        (FsFlags::ST_RDONLY, MsFlags::MS_RDONLY),
    ] {
        if f.contains(a) {
            out |= b;
        }
    }
    Ok(out)
}

/// A `File` for a descriptor this process inherited and owns (the sandbox
/// helper's fds 3 and 4). The caller must not use the number elsewhere.
pub fn file_from_inherited_fd(fd: RawFd) -> std::fs::File {
    use std::os::fd::FromRawFd;
    // SAFETY: the sandbox helper is started with `fd` open (dup2 in
    // `dup2_in_child`), and only this wrapper turns the number into an owner.
    unsafe { std::fs::File::from_raw_fd(fd) }
}

pub fn close_fd(fd: RawFd) {
    let _ = nix::unistd::close(fd);
}

/// Marks `fd` close-on-exec.
pub fn set_cloexec(fd: RawFd) {
    use nix::fcntl::{fcntl, FcntlArg, FdFlag};
    // SAFETY: `fd` is an inherited descriptor this process owns; fcntl on it
    // does not change ownership.
    let bfd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    let _ = fcntl(bfd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC));
}

/// Moves `fd` to a number of at least 10 (close-on-exec), so that a later
/// dup2 onto 3 or 4 in a child never meets itself or its sibling.
pub fn move_fd_high(fd: std::os::fd::OwnedFd) -> SysResult<std::os::fd::OwnedFd> {
    use nix::fcntl::{fcntl, FcntlArg};
    use std::os::fd::{AsFd, FromRawFd};
    let n = fcntl(fd.as_fd(), FcntlArg::F_DUPFD_CLOEXEC(10))
        .map_err(err(|| "fcntl(F_DUPFD_CLOEXEC, 10)".into()))?;
    // SAFETY: `n` is a new descriptor that fcntl just created and nothing
    // else owns.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(n) })
}
