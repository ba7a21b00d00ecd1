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

const OPEN_TREE_CLONE: libc::c_uint = 0x1;
const AT_RECURSIVE: libc::c_uint = 0x8000;
const AT_EMPTY_PATH: libc::c_uint = 0x1000;
const MOUNT_ATTR_RDONLY: u64 = 0x1;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;
const MOVE_MOUNT_T_EMPTY_PATH: libc::c_uint = 0x40;

/// `struct mount_attr` of mount_setattr(2).
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// A detached copy of the mount tree at `source`, submounts included, made
/// read-only throughout (`open_tree(OPEN_TREE_CLONE|AT_RECURSIVE)`, then
/// `mount_setattr(AT_RECURSIVE, MOUNT_ATTR_RDONLY)`; Linux 5.12+, `ENOSYS`
/// before). Nothing is attached anywhere until [`attach`].
pub fn readonly_tree(source: &std::path::Path) -> SysResult<OwnedFd> {
    let c = CString::new(source.as_os_str().as_encoded_bytes()).map_err(|_| SysError {
        call: format!("open_tree({source:?})"),
        errno: Errno::EINVAL,
    })?;
    // SAFETY: `c` is a NUL-terminated path that lives through the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            c.as_ptr(),
            OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint | AT_RECURSIVE,
        )
    };
    let tree = fd_result(
        || format!("open_tree({source:?}, OPEN_TREE_CLONE|AT_RECURSIVE)"),
        r,
    )?;
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_RDONLY,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: `attr` is a mount_attr of the size passed; the empty path
    // with AT_EMPTY_PATH names the descriptor itself.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            tree.as_raw_fd(),
            c"".as_ptr(),
            AT_EMPTY_PATH | AT_RECURSIVE,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if r != 0 {
        return Err(SysError {
            call: format!("mount_setattr(<tree of {source:?}>, AT_RECURSIVE, MOUNT_ATTR_RDONLY)"),
            errno: Errno::last(),
        });
    }
    Ok(tree)
}

/// Attaches the detached `tree` on the inode `target` names (an `O_PATH`
/// descriptor): `move_mount`, with no path looked up again.
pub fn attach(tree: &OwnedFd, target: std::os::fd::BorrowedFd<'_>) -> SysResult<()> {
    // SAFETY: both descriptors are open; the empty paths with the
    // *_EMPTY_PATH flags name them.
    let r = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            c"".as_ptr(),
            target.as_raw_fd(),
            c"".as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH,
        )
    };
    if r != 0 {
        return Err(SysError {
            call: format!("move_mount(<tree>, <fd {}>)", target.as_raw_fd()),
            errno: Errno::last(),
        });
    }
    Ok(())
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
