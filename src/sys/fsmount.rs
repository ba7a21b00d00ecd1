//! Detached mounts (`fsopen`, `fsconfig`, `fsmount`; Linux 5.2+): an
//! instance of a filesystem reached only through a file descriptor, in no
//! mount namespace's table, gone when the descriptor closes. zchroot reaches
//! the host's binfmt_misc this way, whether or not (and however) the host
//! has it mounted.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use nix::errno::Errno;

use super::{SysError, SysResult};

const FSOPEN_CLOEXEC: libc::c_uint = 0x1;
const FSCONFIG_CMD_CREATE: libc::c_uint = 6;
const FSMOUNT_CLOEXEC: libc::c_uint = 0x1;

fn fd_result(call: impl FnOnce() -> String, r: libc::c_long) -> SysResult<OwnedFd> {
    if r < 0 {
        return Err(SysError {
            call: call(),
            errno: Errno::last(),
        });
    }
    // SAFETY: a non-negative result of fsopen/fsmount is a new descriptor
    // that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(r as libc::c_int) })
}

/// A new detached mount of `fstype` (no source, no options), as a directory
/// descriptor (close-on-exec). `ENOSYS` before Linux 5.2.
pub fn detached_mount(fstype: &str) -> SysResult<OwnedFd> {
    let name = CString::new(fstype).map_err(|_| SysError {
        call: format!("fsopen({fstype:?})"),
        errno: Errno::EINVAL,
    })?;
    // SAFETY: `name` is a NUL-terminated string that outlives the call.
    let r = unsafe { libc::syscall(libc::SYS_fsopen, name.as_ptr(), FSOPEN_CLOEXEC) };
    let fs = fd_result(|| format!("fsopen({fstype:?}, FSOPEN_CLOEXEC)"), r)?;
    // SAFETY: `fs` is an open fs context descriptor; CMD_CREATE takes no key
    // or value (null pointers, aux 0).
    let r = unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fs.as_raw_fd(),
            FSCONFIG_CMD_CREATE,
            std::ptr::null::<libc::c_char>(),
            std::ptr::null::<libc::c_void>(),
            0 as libc::c_int,
        )
    };
    if r < 0 {
        return Err(SysError {
            call: format!("fsconfig(fsopen({fstype:?}), FSCONFIG_CMD_CREATE)"),
            errno: Errno::last(),
        });
    }
    // SAFETY: `fs` is a created fs context; no attribute flags.
    let r = unsafe {
        libc::syscall(
            libc::SYS_fsmount,
            fs.as_raw_fd(),
            FSMOUNT_CLOEXEC,
            0 as libc::c_uint,
        )
    };
    fd_result(
        || format!("fsmount(fsopen({fstype:?}), FSMOUNT_CLOEXEC, 0)"),
        r,
    )
}

/// The filesystem type (`statfs` f_type) of the filesystem holding `fd`.
pub fn fs_type(fd: &OwnedFd) -> SysResult<i64> {
    let st = nix::sys::statfs::fstatfs(fd).map_err(|errno| SysError {
        call: format!("fstatfs({})", fd.as_raw_fd()),
        errno,
    })?;
    Ok(st.filesystem_type().0 as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_detached_tmpfs_is_a_directory_of_its_own() {
        if !nix::unistd::geteuid().is_root() {
            assert!(std::env::var_os("CI").is_none(), "CI is set: run as root");
            eprintln!("SKIP: fsopen needs CAP_SYS_ADMIN (run as root)");
            return;
        }
        let fd = detached_mount("tmpfs").unwrap();
        assert_eq!(fs_type(&fd).unwrap(), libc::TMPFS_MAGIC);
        let e = detached_mount("no-such-fs").unwrap_err();
        assert_eq!(e.errno, Errno::ENODEV);
        assert!(e.to_string().starts_with("fsopen(\"no-such-fs\""), "{e}");
    }
}
