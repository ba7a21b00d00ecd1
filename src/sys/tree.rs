//! Directory-fd primitives for removing trees (`teardown`): every call works
//! relative to an open directory, never follows a symlink, and reports the
//! mount id (`statx` `STATX_MNT_ID`) so a mount is seen even when it is a
//! bind mount of the same filesystem.

use std::ffi::{CStr, CString, OsStr, OsString};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{OFlag, OpenHow, ResolveFlag, AT_FDCWD};
use nix::sys::stat::Mode;
use nix::unistd::{Uid, UnlinkatFlags};

use super::{err, SysError, SysResult};

/// What `statx` says about one inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    pub dev_major: u32,
    pub dev_minor: u32,
    pub ino: u64,
    /// `st_mode`: type and permission bits.
    pub mode: u32,
    pub uid: u32,
    /// The id of the mount the inode was reached through (the first field
    /// of `/proc/self/mountinfo`).
    pub mnt_id: u64,
}

impl Stat {
    pub fn is_dir(&self) -> bool {
        self.mode & libc::S_IFMT == libc::S_IFDIR
    }

    /// Same inode (device and inode number).
    pub fn same_inode(&self, other: &Stat) -> bool {
        (self.dev_major, self.dev_minor, self.ino) == (other.dev_major, other.dev_minor, other.ino)
    }
}

fn cstring(name: &OsStr, call: &str) -> SysResult<CString> {
    CString::new(name.as_bytes()).map_err(|_| SysError {
        call: format!("{call}({name:?})"),
        errno: Errno::EINVAL,
    })
}

fn statx_raw(
    fd: BorrowedFd,
    name: &CStr,
    flags: i32,
    call: impl Fn() -> String,
) -> SysResult<Stat> {
    let mask = libc::STATX_TYPE
        | libc::STATX_MODE
        | libc::STATX_INO
        | libc::STATX_UID
        | libc::STATX_MNT_ID;
    // SAFETY: `statx` is a plain C struct of integers, for which all zeroes
    // is a valid value.
    let mut buf: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: `buf` is a valid, writable statx struct that the kernel fills
    // in; `name` is a NUL-terminated string and `fd` an open descriptor, both
    // valid for the duration of the call.
    let r = unsafe {
        libc::statx(
            fd.as_raw_fd(),
            name.as_ptr(),
            flags | libc::AT_STATX_SYNC_AS_STAT,
            mask,
            &mut buf,
        )
    };
    if r < 0 {
        return Err(err(call)(Errno::last()));
    }
    if buf.stx_mask & libc::STATX_MNT_ID == 0 {
        // Linux before 5.8: without the mount id a bind mount of the same
        // filesystem cannot be told apart.
        return Err(err(|| format!("{} gave no STATX_MNT_ID", call()))(
            Errno::ENOSYS,
        ));
    }
    Ok(Stat {
        dev_major: buf.stx_dev_major,
        dev_minor: buf.stx_dev_minor,
        ino: buf.stx_ino,
        mode: buf.stx_mode as u32,
        uid: buf.stx_uid,
        mnt_id: buf.stx_mnt_id,
    })
}

/// `statx(dir, name, AT_SYMLINK_NOFOLLOW)`: the entry itself, a symlink not
/// followed (a mount on the entry is what is seen, with its mount id).
pub fn stat_at(dir: BorrowedFd, name: &OsStr) -> SysResult<Stat> {
    let c = cstring(name, "statx")?;
    statx_raw(
        dir,
        &c,
        libc::AT_SYMLINK_NOFOLLOW | libc::AT_NO_AUTOMOUNT,
        || format!("statx({name:?}, AT_SYMLINK_NOFOLLOW, STATX_MNT_ID)"),
    )
}

/// `statx(fd, "", AT_EMPTY_PATH)`: the open file itself.
pub fn stat_fd(fd: BorrowedFd) -> SysResult<Stat> {
    statx_raw(fd, c"", libc::AT_EMPTY_PATH, || {
        "statx(fd, \"\", AT_EMPTY_PATH, STATX_MNT_ID)".to_string()
    })
}

const DIR_FLAGS: OFlag = OFlag::O_RDONLY
    .union(OFlag::O_DIRECTORY)
    .union(OFlag::O_NOFOLLOW)
    .union(OFlag::O_CLOEXEC);

/// Opens the directory `path`, the caller's own path (where a root lives,
/// not a path inside one): symlinks in it are followed.
pub fn open_dir_path(path: &Path) -> SysResult<OwnedFd> {
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
    nix::fcntl::openat(AT_FDCWD, path, flags, Mode::empty()).map_err(err(|| {
        format!(
            "openat(AT_FDCWD, {:?}, O_DIRECTORY)",
            path.display().to_string()
        )
    }))
}

/// Opens the subdirectory `name` of `dir` without following a symlink and
/// without crossing a mount (`openat2` with `RESOLVE_BENEATH |
/// RESOLVE_NO_SYMLINKS | RESOLVE_NO_XDEV`; a mount gives `EXDEV`, a symlink
/// `ELOOP`, anything else but a directory `ENOTDIR`). On a kernel without
/// `openat2` (before 5.6) it falls back to `openat(O_NOFOLLOW)`; callers
/// check the mount id of what they got either way.
pub fn open_subdir(dir: BorrowedFd, name: &OsStr) -> SysResult<OwnedFd> {
    let how = OpenHow::new().flags(DIR_FLAGS).resolve(
        ResolveFlag::RESOLVE_BENEATH
            | ResolveFlag::RESOLVE_NO_SYMLINKS
            | ResolveFlag::RESOLVE_NO_XDEV,
    );
    match nix::fcntl::openat2(dir, name, how) {
        Err(Errno::ENOSYS) => {}
        r => {
            return r.map_err(err(|| {
                format!(
                    "openat2({name:?}, O_DIRECTORY|O_NOFOLLOW, RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS|RESOLVE_NO_XDEV)"
                )
            }))
        }
    }
    nix::fcntl::openat(dir, name, DIR_FLAGS, Mode::empty())
        .map_err(err(|| format!("openat({name:?}, O_DIRECTORY|O_NOFOLLOW)")))
}

/// Opens `..` of `dir` (to check that `dir` still hangs below the
/// directory it was opened from).
pub fn open_parent(dir: BorrowedFd) -> SysResult<OwnedFd> {
    nix::fcntl::openat(dir, "..", DIR_FLAGS, Mode::empty())
        .map_err(err(|| "openat(\"..\", O_DIRECTORY|O_NOFOLLOW)".to_string()))
}

/// The names in directory `dir` (without `.` and `..`), read through a new
/// open file description so `dir`'s own offset is untouched.
pub fn read_names(dir: BorrowedFd) -> SysResult<Vec<OsString>> {
    let fd = nix::fcntl::openat(dir, ".", DIR_FLAGS, Mode::empty())
        .map_err(err(|| "openat(\".\", O_DIRECTORY)".to_string()))?;
    let raw = fd.into_raw_fd();
    // SAFETY: `raw` is a directory descriptor this function owns (taken out
    // of an OwnedFd); on success the DIR stream owns it and closedir closes
    // it, on failure we close it.
    let d = unsafe { libc::fdopendir(raw) };
    if d.is_null() {
        let e = Errno::last();
        // SAFETY: fdopendir failed, so `raw` is still ours to close.
        drop(unsafe { OwnedFd::from_raw_fd(raw) });
        return Err(err(|| "fdopendir".to_string())(e));
    }
    let mut names = Vec::new();
    let result = loop {
        Errno::clear();
        // SAFETY: `d` is a valid DIR stream until closedir below; the entry
        // it returns is valid until the next readdir on `d`, and we copy the
        // name out before that.
        let ent = unsafe { libc::readdir(d) };
        if ent.is_null() {
            let e = Errno::last();
            break if e as i32 == 0 {
                Ok(())
            } else {
                Err(err(|| "readdir".to_string())(e))
            };
        }
        // SAFETY: `d_name` of a returned entry is a NUL-terminated string.
        let name = unsafe { CStr::from_ptr((*ent).d_name.as_ptr()) };
        let b = name.to_bytes();
        if b != b"." && b != b".." {
            names.push(OsString::from_vec(b.to_vec()));
        }
    };
    // SAFETY: `d` came from fdopendir and is closed exactly once.
    unsafe { libc::closedir(d) };
    result.map(|()| names)
}

/// `unlinkat(dir, name, 0)` or, for a directory, `AT_REMOVEDIR`.
pub fn unlink_at(dir: BorrowedFd, name: &OsStr, is_dir: bool) -> SysResult<()> {
    let flag = if is_dir {
        UnlinkatFlags::RemoveDir
    } else {
        UnlinkatFlags::NoRemoveDir
    };
    nix::unistd::unlinkat(dir, name, flag).map_err(err(|| {
        format!(
            "unlinkat({name:?}{})",
            if is_dir { ", AT_REMOVEDIR" } else { "" }
        )
    }))
}

/// `renameat(from_dir, from, to_dir, to)`.
pub fn rename_at(
    from_dir: BorrowedFd,
    from: &OsStr,
    to_dir: BorrowedFd,
    to: &OsStr,
) -> SysResult<()> {
    nix::fcntl::renameat(from_dir, from, to_dir, to)
        .map_err(err(|| format!("renameat({from:?}, {to:?})")))
}

/// Makes the open directory `fd` (owned by `owner`) this process's, mode
/// 0700: from then on no other user can add, rename or remove anything in
/// it. Only the owner is changed (and only if it is someone else): with
/// mode 0700 the group has no access anyway.
pub fn take_dir(fd: BorrowedFd, owner: u32) -> SysResult<()> {
    let uid = Uid::effective();
    if owner != uid.as_raw() {
        nix::unistd::fchown(fd.as_fd(), Some(uid), None)
            .map_err(err(|| format!("fchown(fd, {uid}, -1)")))?;
    }
    nix::sys::stat::fchmod(fd, Mode::from_bits_truncate(0o700))
        .map_err(err(|| "fchmod(fd, 0700)".to_string()))
}

/// This process's effective uid.
pub fn effective_uid() -> u32 {
    Uid::effective().as_raw()
}

/// The path of the open `fd` as the kernel names it (`/proc/self/fd/N`),
/// relative to this process's root, as `/proc/self/mountinfo` is.
pub fn fd_path(fd: BorrowedFd) -> SysResult<PathBuf> {
    let link = format!("/proc/self/fd/{}", fd.as_raw_fd());
    nix::fcntl::readlink(Path::new(&link))
        .map(PathBuf::from)
        .map_err(err(|| format!("readlink({link:?})")))
}

/// The text of `/proc/self/mountinfo`.
pub fn mountinfo() -> Result<String, std::io::Error> {
    std::fs::read_to_string("/proc/self/mountinfo")
}
