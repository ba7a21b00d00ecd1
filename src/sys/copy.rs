//! The system calls a tree copy needs beyond nix's safe ones: a reflink
//! (`FICLONE`) where the filesystem shares blocks, and a file's extended
//! attributes read and written through its descriptor.

use std::ffi::{CStr, CString};
use std::os::fd::{AsRawFd, BorrowedFd};

use nix::errno::Errno;

use super::{err, SysResult};

/// `ioctl(dst, FICLONE, src)`: makes `dst` share `src`'s blocks (btrfs,
/// XFS with reflink, bcachefs). `false` where the filesystem cannot (ext4:
/// `EOPNOTSUPP`, across filesystems: `EXDEV`, ...): copy the bytes then.
pub fn clone_file(src: BorrowedFd, dst: BorrowedFd) -> bool {
    // SAFETY: FICLONE takes the source descriptor as its integer argument;
    // both descriptors are open for the duration of the call and the kernel
    // writes no memory of ours.
    let r = unsafe { libc::ioctl(dst.as_raw_fd(), libc::FICLONE, src.as_raw_fd()) };
    r == 0
}

/// The extended attributes of the open file `fd` (name, value); none where
/// the filesystem has none (`ENOTSUP`).
pub fn xattrs(fd: BorrowedFd) -> SysResult<Vec<(CString, Vec<u8>)>> {
    let raw = fd.as_raw_fd();
    let list = sized(|buf| {
        // SAFETY: `buf` is valid for writes of `buf.len()` bytes (a null
        // pointer with size 0 asks for the size only).
        unsafe { libc::flistxattr(raw, buf.as_mut_ptr().cast(), buf.len()) }
    })
    .or_else(|e| match e {
        Errno::ENOTSUP => Ok(vec![]),
        e => Err(e),
    })
    .map_err(err(|| "flistxattr(fd)".to_string()))?;
    let mut out = Vec::new();
    for name in list.split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let name = CString::new(name).expect("split at NUL");
        let value = sized(|buf| {
            // SAFETY: `name` is NUL-terminated; `buf` is valid for writes of
            // `buf.len()` bytes.
            unsafe { libc::fgetxattr(raw, name.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) }
        });
        match value {
            Ok(v) => out.push((name, v)),
            Err(Errno::ENODATA) => {} // removed meanwhile
            Err(e) => return Err(err(|| format!("fgetxattr(fd, {name:?})"))(e)),
        }
    }
    Ok(out)
}

/// `fsetxattr(fd, name, value, 0)`.
pub fn set_xattr(fd: BorrowedFd, name: &CStr, value: &[u8]) -> SysResult<()> {
    // SAFETY: `name` is NUL-terminated and `value` valid for reads of its
    // length, both for the duration of the call.
    let r = unsafe {
        libc::fsetxattr(
            fd.as_raw_fd(),
            name.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if r < 0 {
        return Err(err(|| format!("fsetxattr(fd, {name:?})"))(Errno::last()));
    }
    Ok(())
}

/// Calls `f` first with an empty buffer for the size, then with a buffer of
/// that size (again if the value grew in between).
fn sized(mut f: impl FnMut(&mut [u8]) -> libc::ssize_t) -> Result<Vec<u8>, Errno> {
    loop {
        let n = f(&mut []);
        if n < 0 {
            return Err(Errno::last());
        }
        let mut buf = vec![0u8; n as usize];
        let m = f(&mut buf);
        if m < 0 {
            match Errno::last() {
                Errno::ERANGE => continue,
                e => return Err(e),
            }
        }
        buf.truncate(m as usize);
        return Ok(buf);
    }
}
