//! Terminals: a new session for the sandbox, a pseudo-terminal made in the
//! sandbox's own devpts and handed to zchroot over a socket, the caller's
//! terminal in raw mode, window sizes, and the poll loop's primitives.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

use nix::errno::Errno;

use super::{SysError, SysResult};

fn last(call: impl Into<String>) -> SysError {
    SysError {
        call: call.into(),
        errno: Errno::last(),
    }
}

/// Starts a new session: the process loses its controlling terminal.
pub fn setsid() -> SysResult<()> {
    nix::unistd::setsid().map(|_| ()).map_err(|errno| SysError {
        call: "setsid()".into(),
        errno,
    })
}

/// Whether `fd` is a terminal.
pub fn is_terminal(fd: RawFd) -> bool {
    // SAFETY: isatty only inspects the descriptor number.
    unsafe { libc::isatty(fd) == 1 }
}

/// Opens a new pseudo-terminal from the devpts instance whose `ptmx` is
/// `ptmx`, and its peer (the slave, through TIOCGPTPEER: no path lookup).
/// Returns (master, slave), both close-on-exec and not a controlling
/// terminal yet.
pub fn open_pty(ptmx: &Path) -> SysResult<(OwnedFd, OwnedFd)> {
    use nix::fcntl::{open, OFlag};
    use nix::sys::stat::Mode;
    let master = open(
        ptmx,
        OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|errno| SysError {
        call: format!("open({:?}, O_RDWR|O_NOCTTY)", ptmx.display().to_string()),
        errno,
    })?;
    let unlock: libc::c_int = 0;
    // SAFETY: TIOCSPTLCK reads an int through the pointer, which is valid.
    if unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSPTLCK, &unlock) } != 0 {
        return Err(last("ioctl(<ptmx>, TIOCSPTLCK, 0)"));
    }
    // SAFETY: TIOCGPTPEER takes open flags by value and returns a new fd.
    let slave = unsafe {
        libc::ioctl(
            master.as_raw_fd(),
            libc::TIOCGPTPEER,
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        )
    };
    if slave < 0 {
        return Err(last("ioctl(<ptmx>, TIOCGPTPEER, O_RDWR|O_NOCTTY)"));
    }
    // SAFETY: `slave` is a new descriptor nothing else owns.
    Ok((master, unsafe { OwnedFd::from_raw_fd(slave) }))
}

/// Makes `fd` (a terminal) the controlling terminal of this process, which
/// must be a session leader without one.
pub fn set_controlling_terminal(fd: RawFd) -> SysResult<()> {
    // SAFETY: TIOCSCTTY takes an int argument by value (0: do not steal).
    if unsafe { libc::ioctl(fd, libc::TIOCSCTTY, 0 as libc::c_int) } != 0 {
        return Err(last(format!("ioctl({fd}, TIOCSCTTY, 0)")));
    }
    Ok(())
}

/// Gives terminal `fd` to `uid` (its group stays), as login does, so that
/// a command run as that user can reopen its terminal by name.
pub fn give_to(fd: RawFd, uid: u32) -> SysResult<()> {
    // SAFETY: fchown only takes the descriptor number and ids.
    if unsafe { libc::fchown(fd, uid, u32::MAX) } != 0 {
        return Err(last(format!("fchown({fd}, {uid}, -1)")));
    }
    Ok(())
}

/// Makes `to` a copy of `from` (close-on-exec cleared on the copy).
pub fn dup2(from: RawFd, to: RawFd) -> SysResult<()> {
    // SAFETY: dup2 only manipulates descriptor numbers.
    if unsafe { libc::dup2(from, to) } < 0 {
        return Err(last(format!("dup2({from}, {to})")));
    }
    Ok(())
}

/// The window size of terminal `fd`.
pub fn window_size(fd: RawFd) -> Option<libc::winsize> {
    // SAFETY: a plain C struct the kernel fills in.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: TIOCGWINSZ writes a winsize through the valid pointer.
    (unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut ws) } == 0).then_some(ws)
}

/// Sets the window size of terminal `fd` (on a master: the pty's, and the
/// kernel sends SIGWINCH to its foreground process group).
pub fn set_window_size(fd: RawFd, ws: &libc::winsize) -> SysResult<()> {
    // SAFETY: TIOCSWINSZ reads a winsize through the valid pointer.
    if unsafe { libc::ioctl(fd, libc::TIOCSWINSZ, ws as *const libc::winsize) } != 0 {
        return Err(last(format!(
            "ioctl({fd}, TIOCSWINSZ, {}x{})",
            ws.ws_col, ws.ws_row
        )));
    }
    Ok(())
}

/// A terminal put in raw mode; its settings come back on drop.
pub struct RawMode {
    fd: RawFd,
    saved: libc::termios,
}

impl RawMode {
    /// Puts terminal `fd` in raw mode (no echo, no line editing, no signals
    /// from keys: Ctrl-C goes on as a byte).
    pub fn enable(fd: RawFd) -> SysResult<RawMode> {
        // SAFETY: a plain C struct tcgetattr fills in.
        let mut saved: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: valid pointer to a termios.
        if unsafe { libc::tcgetattr(fd, &mut saved) } != 0 {
            return Err(last(format!("tcgetattr({fd})")));
        }
        let mut raw = saved;
        // SAFETY: cfmakeraw edits the struct it is given.
        unsafe { libc::cfmakeraw(&mut raw) };
        // SAFETY: valid pointer to a termios.
        if unsafe { libc::tcsetattr(fd, libc::TCSADRAIN, &raw) } != 0 {
            return Err(last(format!("tcsetattr({fd}, TCSADRAIN, <raw>)")));
        }
        Ok(RawMode { fd, saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        // SAFETY: valid pointer to the termios saved in `enable`.
        unsafe { libc::tcsetattr(self.fd, libc::TCSADRAIN, &self.saved) };
    }
}

/// A connected pair of Unix stream sockets, close-on-exec.
pub fn socketpair() -> SysResult<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: `fds` has room for the two descriptors.
    let r = unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    };
    if r != 0 {
        return Err(last("socketpair(AF_UNIX, SOCK_STREAM|SOCK_CLOEXEC)"));
    }
    // SAFETY: two new descriptors nothing else owns.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Calls `f` with a message of the one byte `byte` and a control buffer
/// with room for one descriptor (SCM_RIGHTS), as [`send_fd`] and
/// [`recv_fd`] exchange them. The buffers live until `f` returns.
fn with_fd_message<R>(byte: &mut [u8; 1], f: impl FnOnce(&mut libc::msghdr) -> R) -> R {
    let mut iov = libc::iovec {
        iov_base: byte.as_mut_ptr().cast(),
        iov_len: 1,
    };
    // SAFETY: CMSG_SPACE is a pure computation.
    let space = unsafe { libc::CMSG_SPACE(std::mem::size_of::<RawFd>() as u32) } as usize;
    let mut cbuf = vec![0u64; space.div_ceil(8)];
    // SAFETY: a plain C struct, filled in below.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.as_mut_ptr().cast();
    msg.msg_controllen = space as _;
    f(&mut msg)
}

/// Sends `fd` (SCM_RIGHTS) with one byte over the Unix socket `sock`.
pub fn send_fd(sock: RawFd, fd: RawFd) -> SysResult<()> {
    let mut byte = [b'p'];
    let r = with_fd_message(&mut byte, |msg| {
        // SAFETY: msg_control points at `space` zeroed, aligned bytes,
        // enough for one header and one fd; CMSG_FIRSTHDR is then non-null.
        unsafe {
            let c = libc::CMSG_FIRSTHDR(msg);
            (*c).cmsg_level = libc::SOL_SOCKET;
            (*c).cmsg_type = libc::SCM_RIGHTS;
            (*c).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<RawFd>() as u32) as _;
            std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<RawFd>(), fd);
            libc::sendmsg(sock, msg, libc::MSG_NOSIGNAL)
        }
    });
    if r != 1 {
        return Err(last(format!("sendmsg({sock}, SCM_RIGHTS [{fd}])")));
    }
    Ok(())
}

/// Receives a descriptor sent by [`send_fd`]. `Ok(None)` when the peer
/// closed the socket without sending one.
pub fn recv_fd(sock: RawFd) -> SysResult<Option<OwnedFd>> {
    let mut byte = [0u8];
    with_fd_message(&mut byte, |msg| {
        // SAFETY: the buffers `msg` points at live through the call.
        let n = unsafe { libc::recvmsg(sock, msg, libc::MSG_CMSG_CLOEXEC) };
        if n < 0 {
            return Err(last(format!("recvmsg({sock})")));
        }
        if n == 0 {
            return Ok(None);
        }
        // SAFETY: the kernel filled msg_control; CMSG_FIRSTHDR/CMSG_DATA walk
        // it within msg_controllen, and a received SCM_RIGHTS fd is ours.
        unsafe {
            let c = libc::CMSG_FIRSTHDR(msg);
            if c.is_null()
                || (*c).cmsg_level != libc::SOL_SOCKET
                || (*c).cmsg_type != libc::SCM_RIGHTS
            {
                return Ok(None);
            }
            let fd = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<RawFd>());
            Ok(Some(OwnedFd::from_raw_fd(fd)))
        }
    })
}

/// Sets or clears O_NONBLOCK on a descriptor this process owns alone (never
/// on one shared with the caller, such as its terminal).
pub fn set_nonblocking(fd: &OwnedFd, on: bool) -> SysResult<()> {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    let flags = fcntl(fd, FcntlArg::F_GETFL).map_err(|errno| SysError {
        call: format!("fcntl({}, F_GETFL)", fd.as_raw_fd()),
        errno,
    })?;
    let mut flags = OFlag::from_bits_truncate(flags);
    flags.set(OFlag::O_NONBLOCK, on);
    fcntl(fd, FcntlArg::F_SETFL(flags)).map_err(|errno| SysError {
        call: format!("fcntl({}, F_SETFL, {flags:?})", fd.as_raw_fd()),
        errno,
    })?;
    Ok(())
}

/// Readiness of one descriptor after [`poll`].
#[derive(Debug, Clone, Copy, Default)]
pub struct Ready {
    pub read: bool,
    pub write: bool,
    /// Hangup or error: reading tells which.
    pub hup: bool,
}

/// Waits up to `timeout_ms` until one of `fds` (descriptor, want-read,
/// want-write) is ready. EINTR counts as nothing ready.
pub fn poll(fds: &[(RawFd, bool, bool)], timeout_ms: i32) -> SysResult<Vec<Ready>> {
    let mut p: Vec<libc::pollfd> = fds
        .iter()
        .map(|&(fd, r, w)| libc::pollfd {
            fd,
            events: (if r { libc::POLLIN } else { 0 }) | (if w { libc::POLLOUT } else { 0 }),
            revents: 0,
        })
        .collect();
    // SAFETY: `p` is a valid array of `p.len()` pollfd structs.
    let n = unsafe { libc::poll(p.as_mut_ptr(), p.len() as libc::nfds_t, timeout_ms) };
    if n < 0 {
        let errno = Errno::last();
        if errno == Errno::EINTR {
            return Ok(vec![Ready::default(); fds.len()]);
        }
        return Err(SysError {
            call: "poll(..)".into(),
            errno,
        });
    }
    Ok(p.iter()
        .map(|q| Ready {
            read: q.revents & libc::POLLIN != 0,
            write: q.revents & libc::POLLOUT != 0,
            hup: q.revents & (libc::POLLHUP | libc::POLLERR | libc::POLLNVAL) != 0,
        })
        .collect())
}

/// read(2) on a descriptor the caller keeps open (stdin included).
pub fn read(fd: RawFd, buf: &mut [u8]) -> Result<usize, Errno> {
    // SAFETY: `buf` is valid for `buf.len()` bytes of writes.
    let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        Err(Errno::last())
    } else {
        Ok(n as usize)
    }
}

/// write(2) on a descriptor the caller keeps open (stdout included).
pub fn write(fd: RawFd, buf: &[u8]) -> Result<usize, Errno> {
    // SAFETY: `buf` is valid for `buf.len()` bytes of reads.
    let n = unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
    if n < 0 {
        Err(Errno::last())
    } else {
        Ok(n as usize)
    }
}

/// Writes all of `buf` to `fd` (a blocking descriptor), retrying on EINTR.
pub fn write_all(fd: RawFd, mut buf: &[u8]) -> Result<(), Errno> {
    while !buf.is_empty() {
        match write(fd, buf) {
            Ok(0) => return Err(Errno::EIO),
            Ok(n) => buf = &buf[n..],
            Err(Errno::EINTR) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Closes every descriptor from `first` up: what the caller left open
/// without close-on-exec (a terminal, say) must not reach the sandbox.
pub fn close_from(first: RawFd) -> SysResult<()> {
    // SAFETY: close_range only closes descriptors; the caller owns all of
    // them from `first` up (the sandbox helper, before it uses any).
    let r = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first as libc::c_uint,
            libc::c_uint::MAX,
            0 as libc::c_uint,
        )
    };
    if r != 0 {
        return Err(last(format!("close_range({first}, ~0U, 0)")));
    }
    Ok(())
}
