//! Removing trees (roots, staging directories) without crossing mount
//! points, following symlinks or being led outside by renames: a mount found
//! inside stops the removal before anything is removed, with an error naming
//! it, so a user's bind mount is never emptied.
//!
//! How: everything goes through directory fds (`openat2` with
//! `RESOLVE_NO_XDEV | RESOLVE_NO_SYMLINKS`, `unlinkat`, `fchown`/`fchmod` on
//! the fd). First a read-only pass looks for mounts: every entry's mount id
//! (`statx` `STATX_MNT_ID`) must be the top's, and `/proc/self/mountinfo` must
//! list no mount point at or below the top. Then the removal goes top-down:
//! each directory is made ours with mode 0700 *before* its entries are
//! listed, so from then on no other user can add, rename or swap anything in
//! it; a child directory is opened from its (already locked) parent, so it
//! is the one in the tree, and its `..` is checked to be that parent. The
//! first error stops the removal; what is left stays where it was (locked).

use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;

use crate::sys::tree::{self as t, Stat};
use crate::sys::SysError;

#[derive(Debug, thiserror::Error)]
pub enum TeardownError {
    #[error("{} is a mount point inside {}: not removing anything\nhelp: unmount it (`umount {}`) and try again", path.display(), top.display(), path.display())]
    MountInside { path: PathBuf, top: PathBuf },
    #[error("removing {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} became a mount point inside {} while it was being removed: stopped\nhelp: unmount it (`umount {}`) and remove it again", path.display(), top.display(), path.display())]
    MountAppeared { path: PathBuf, top: PathBuf },
    #[error("removing {}: {source}\nhelp: removing a tree safely needs Linux 5.8 or later (statx with STATX_MNT_ID)", path.display())]
    KernelTooOld {
        path: PathBuf,
        #[source]
        source: SysError,
    },
    #[error("removing {}: {source}", path.display())]
    Sys {
        path: PathBuf,
        #[source]
        source: SysError,
    },
    #[error("removing {}: it was moved or replaced while being removed; stopped so as not to leave the tree", path.display())]
    Moved { path: PathBuf },
    #[error("removing {}: entries kept appearing in it; stopped", path.display())]
    KeepsFilling { path: PathBuf },
}

fn sys(path: &Path) -> impl FnOnce(SysError) -> TeardownError + '_ {
    move |source| {
        let path = path.to_owned();
        if source.errno == Errno::ENOSYS {
            TeardownError::KernelTooOld { path, source }
        } else {
            TeardownError::Sys { path, source }
        }
    }
}

/// Removes `top` and everything below it. A missing `top` is not an error;
/// a mount at or below it stops the removal before anything is removed.
pub fn remove_tree(top: &Path) -> Result<(), TeardownError> {
    let (parent, name) = match open_parent(top) {
        Err(TeardownError::Sys {
            source:
                SysError {
                    errno: Errno::ENOENT,
                    ..
                },
            ..
        }) => return Ok(()),
        r => r?,
    };
    let Some(dir) = open_checked(top, parent.as_fd(), &name)? else {
        return Ok(());
    };
    match dir {
        Top::Dir(dir) => {
            remove_contents(top, top, &dir)?;
            t::unlink_at(parent.as_fd(), &name, true).map_err(sys(top))
        }
        Top::Other => t::unlink_at(parent.as_fd(), &name, false).map_err(sys(top)),
    }
}

/// Checks `top` for mounts, moves it to `aside` (so it disappears under its
/// name at once), then removes it. A tree with a mount in it stays where it
/// was, untouched.
pub fn remove_tree_aside(top: &Path, aside: &Path) -> Result<(), TeardownError> {
    let (parent, name) = open_parent(top)?;
    let Some(dir) = open_checked(top, parent.as_fd(), &name)? else {
        return Err(TeardownError::Io {
            path: top.to_owned(),
            source: std::io::ErrorKind::NotFound.into(),
        });
    };
    let (aparent, aname) = open_parent(aside)?;
    t::rename_at(parent.as_fd(), &name, aparent.as_fd(), &aname).map_err(sys(top))?;
    match dir {
        Top::Dir(dir) => {
            // The rename moved the directory we hold, nothing else.
            let held = t::stat_fd(dir.as_fd()).map_err(sys(aside))?;
            let there = t::stat_at(aparent.as_fd(), &aname).map_err(sys(aside))?;
            if !held.same_inode(&there) {
                return Err(TeardownError::Moved {
                    path: aside.to_owned(),
                });
            }
            remove_contents(top, aside, &dir)?;
            t::unlink_at(aparent.as_fd(), &aname, true).map_err(sys(aside))
        }
        Top::Other => t::unlink_at(aparent.as_fd(), &aname, false).map_err(sys(aside)),
    }
}

/// The directory holding `path` (opened by the caller's path) and the last
/// component.
fn open_parent(path: &Path) -> Result<(OwnedFd, OsString), TeardownError> {
    let name = match path.components().next_back() {
        Some(Component::Normal(n)) => n.to_owned(),
        _ => {
            return Err(TeardownError::Io {
                path: path.to_owned(),
                source: std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "not a path to a named file",
                ),
            })
        }
    };
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let fd = t::open_dir_path(parent).map_err(sys(path))?;
    Ok((fd, name))
}

/// What the top turned out to be, checked for mounts.
enum Top {
    Dir(Dir),
    /// A file, symlink or other non-directory.
    Other,
}

/// An open directory of the tree with what `statx` said when it was opened.
struct Dir {
    fd: OwnedFd,
    stat: Stat,
}

impl Dir {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Opens `name` in `parent` (the top, named `top` in messages) and checks
/// that neither it nor anything below it is a mount point. `None`: it does
/// not exist.
fn open_checked(
    top: &Path,
    parent: BorrowedFd,
    name: &OsStr,
) -> Result<Option<Top>, TeardownError> {
    let mount_inside = |path: &Path| TeardownError::MountInside {
        path: path.to_owned(),
        top: top.to_owned(),
    };
    let st = match t::stat_at(parent, name) {
        Ok(st) => st,
        Err(SysError {
            errno: Errno::ENOENT,
            ..
        }) => return Ok(None),
        Err(e) => return Err(sys(top)(e)),
    };
    let pst = t::stat_fd(parent).map_err(sys(top))?;
    if st.mnt_id != pst.mnt_id {
        return Err(mount_inside(top));
    }
    if !st.is_dir() {
        return Ok(Some(Top::Other));
    }
    let fd = match t::open_subdir(parent, name) {
        Ok(fd) => fd,
        Err(SysError {
            errno: Errno::EXDEV,
            ..
        }) => return Err(mount_inside(top)),
        Err(e) => return Err(sys(top)(e)),
    };
    let stat = t::stat_fd(fd.as_fd()).map_err(sys(top))?;
    if stat.mnt_id != pst.mnt_id {
        return Err(mount_inside(top));
    }
    if !stat.same_inode(&st) {
        return Err(TeardownError::Moved {
            path: top.to_owned(),
        });
    }
    let dir = Dir { fd, stat };
    // Mounts the kernel lists at or below the top (a mount on a file, or one
    // hidden from the walk).
    let real = t::fd_path(dir.as_fd()).map_err(sys(top))?;
    let info = t::mountinfo().map_err(|source| TeardownError::Io {
        path: PathBuf::from("/proc/self/mountinfo"),
        source,
    })?;
    if let Some(m) = mounts_at_or_below(&info, &real).into_iter().next() {
        return Err(mount_inside(&m));
    }
    check_no_mounts(top, top, &dir, stat.mnt_id)?;
    Ok(Some(Top::Dir(dir)))
}

/// The read-only pass: every entry below `dir` is on mount `mnt_id`.
/// Entries that vanish or change type meanwhile are passed over (the
/// removal checks again).
fn check_no_mounts(top: &Path, path: &Path, dir: &Dir, mnt_id: u64) -> Result<(), TeardownError> {
    let names = t::read_names(dir.as_fd()).map_err(sys(path))?;
    for name in names {
        let p = path.join(&name);
        let mount_inside = || TeardownError::MountInside {
            path: p.clone(),
            top: top.to_owned(),
        };
        let st = match t::stat_at(dir.as_fd(), &name) {
            Ok(st) => st,
            Err(SysError {
                errno: Errno::ENOENT,
                ..
            }) => continue,
            Err(e) => return Err(sys(&p)(e)),
        };
        if st.mnt_id != mnt_id {
            return Err(mount_inside());
        }
        if !st.is_dir() {
            continue;
        }
        let fd = match t::open_subdir(dir.as_fd(), &name) {
            Ok(fd) => fd,
            Err(SysError {
                errno: Errno::EXDEV,
                ..
            }) => return Err(mount_inside()),
            Err(SysError {
                errno: Errno::ENOENT | Errno::ENOTDIR | Errno::ELOOP,
                ..
            }) => continue,
            Err(e) => return Err(sys(&p)(e)),
        };
        let stat = t::stat_fd(fd.as_fd()).map_err(sys(&p))?;
        if stat.mnt_id != mnt_id {
            return Err(mount_inside());
        }
        check_no_mounts(top, &p, &Dir { fd, stat }, mnt_id)?;
    }
    Ok(())
}

/// Empties `dir` (named `path` in messages), depth first. `dir` is locked
/// (ours, 0700) before it is read, and each child directory is locked right
/// after it is opened from its locked parent.
/// `top` is the tree's name as the caller gave it (for messages).
fn remove_contents(top: &Path, path: &Path, dir: &Dir) -> Result<(), TeardownError> {
    t::take_dir(dir.as_fd(), dir.stat.uid).map_err(sys(path))?;
    remove_locked(top, path, dir, dir.stat.mnt_id)
}

fn remove_locked(top: &Path, path: &Path, dir: &Dir, mnt_id: u64) -> Result<(), TeardownError> {
    // Nobody else can add entries to a locked directory; a few passes allow
    // for this user's own processes finishing a write.
    for _ in 0..3 {
        let names = t::read_names(dir.as_fd()).map_err(sys(path))?;
        if names.is_empty() {
            return Ok(());
        }
        for name in names {
            remove_entry(top, path, dir, &name, mnt_id)?;
        }
    }
    if t::read_names(dir.as_fd()).map_err(sys(path))?.is_empty() {
        Ok(())
    } else {
        Err(TeardownError::KeepsFilling {
            path: path.to_owned(),
        })
    }
}

fn remove_entry(
    top: &Path,
    path: &Path,
    dir: &Dir,
    name: &OsStr,
    mnt_id: u64,
) -> Result<(), TeardownError> {
    let p = path.join(name);
    let mount_inside = || TeardownError::MountAppeared {
        path: p.clone(),
        top: top.to_owned(),
    };
    let st = match t::stat_at(dir.as_fd(), name) {
        Ok(st) => st,
        Err(SysError {
            errno: Errno::ENOENT,
            ..
        }) => return Ok(()),
        Err(e) => return Err(sys(&p)(e)),
    };
    if st.mnt_id != mnt_id {
        return Err(mount_inside());
    }
    if !st.is_dir() {
        return match t::unlink_at(dir.as_fd(), name, false) {
            Err(SysError {
                errno: Errno::ENOENT,
                ..
            }) => Ok(()),
            r => r.map_err(sys(&p)),
        };
    }
    let fd = match t::open_subdir(dir.as_fd(), name) {
        Ok(fd) => fd,
        Err(SysError {
            errno: Errno::EXDEV,
            ..
        }) => return Err(mount_inside()),
        Err(e) => return Err(sys(&p)(e)),
    };
    let stat = t::stat_fd(fd.as_fd()).map_err(sys(&p))?;
    if stat.mnt_id != mnt_id {
        return Err(mount_inside());
    }
    if !stat.same_inode(&st) {
        return Err(TeardownError::Moved { path: p });
    }
    let child = Dir { fd, stat };
    t::take_dir(child.as_fd(), child.stat.uid).map_err(sys(&p))?;
    // The child hangs below the directory we came from (it cannot move
    // away any more: both are locked).
    let up = t::open_parent(child.as_fd()).map_err(sys(&p))?;
    let up = t::stat_fd(up.as_fd()).map_err(sys(&p))?;
    if !up.same_inode(&dir.stat) {
        return Err(TeardownError::Moved { path: p });
    }
    remove_locked(top, &p, &child, mnt_id)?;
    t::unlink_at(dir.as_fd(), name, true).map_err(sys(&p))
}

/// Mount points in `mountinfo` (the text of `/proc/self/mountinfo`) at or
/// below `top`.
fn mounts_at_or_below(mountinfo: &str, top: &Path) -> Vec<PathBuf> {
    parse_mount_points(mountinfo)
        .into_iter()
        .filter(|m| m.starts_with(top))
        .collect()
}

/// The mount points (fifth field) of `/proc/self/mountinfo`, unescaped.
fn parse_mount_points(mountinfo: &str) -> Vec<PathBuf> {
    mountinfo
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(unescape_octal)
        .collect()
}

/// Undoes the kernel's `\ooo` escapes (space, tab, newline, backslash).
fn unescape_octal(s: &str) -> PathBuf {
    use std::os::unix::ffi::OsStringExt;
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') as u32 * 64
                + (b[i + 2] - b'0') as u32 * 8
                + (b[i + 3] - b'0') as u32;
            if let Ok(v) = u8::try_from(v) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    PathBuf::from(OsString::from_vec(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removes_a_tree_without_following_symlinks() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("keep"), "x").unwrap();
        let t = tempfile::tempdir().unwrap();
        let top = t.path().join("root");
        std::fs::create_dir_all(top.join("a/b")).unwrap();
        std::fs::write(top.join("a/b/f"), "x").unwrap();
        std::os::unix::fs::symlink(outside.path(), top.join("a/link")).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(top.join("a/b"), std::fs::Permissions::from_mode(0o555)).unwrap();
        remove_tree(&top).unwrap();
        assert!(!top.exists());
        assert!(
            outside.path().join("keep").exists(),
            "the symlink's target stays"
        );
        remove_tree(&top).unwrap(); // missing is fine
        remove_tree(&top.join("below/missing")).unwrap(); // and its parent too
    }

    #[test]
    fn removes_a_file_or_a_symlink_at_the_top_and_moves_aside() {
        let outside = tempfile::tempdir().unwrap();
        let t = tempfile::tempdir().unwrap();
        let link = t.path().join("link");
        std::os::unix::fs::symlink(outside.path(), &link).unwrap();
        remove_tree(&link).unwrap();
        assert!(std::fs::symlink_metadata(&link).is_err());
        assert!(outside.path().exists());
        let top = t.path().join("root");
        std::fs::create_dir_all(top.join("x/y")).unwrap();
        std::fs::write(top.join("x/y/f"), "x").unwrap();
        let aside = t.path().join(".aside");
        remove_tree_aside(&top, &aside).unwrap();
        assert!(!top.exists() && !aside.exists());
        let e = remove_tree_aside(&top, &aside).unwrap_err();
        assert!(e.to_string().contains("root"), "{e}");
    }

    #[test]
    fn mountinfo_mount_points_are_unescaped() {
        let info = "\
22 1 0:21 / /proc rw,nosuid - proc proc rw
36 22 8:1 / /home/u/my\\040state/roots/r/root/mnt/p rw - ext4 /dev/sda1 rw
37 22 8:1 /src /tmp/tab\\011and\\012newline\\134x rw shared:1 - ext4 /dev/sda1 rw
38 22 8:1 / /home/u/my\\040state/roots/rx rw - ext4 /dev/sda1 rw
";
        assert_eq!(
            parse_mount_points(info),
            [
                PathBuf::from("/proc"),
                PathBuf::from("/home/u/my state/roots/r/root/mnt/p"),
                PathBuf::from("/tmp/tab\tand\nnewline\\x"),
                PathBuf::from("/home/u/my state/roots/rx"),
            ]
        );
        // Component-wise: `roots/rx` is not below `roots/r`.
        assert_eq!(
            mounts_at_or_below(info, Path::new("/home/u/my state/roots/r")),
            [PathBuf::from("/home/u/my state/roots/r/root/mnt/p")]
        );
        assert_eq!(
            mounts_at_or_below(info, Path::new("/home/u/my state/roots/r/root/mnt/p")),
            [PathBuf::from("/home/u/my state/roots/r/root/mnt/p")],
            "a mount on the top itself counts"
        );
        assert!(mounts_at_or_below(info, Path::new("/home/u/other")).is_empty());
    }

    #[test]
    fn a_lone_backslash_or_a_short_escape_stays() {
        assert_eq!(unescape_octal("a\\b"), PathBuf::from("a\\b"));
        assert_eq!(unescape_octal("a\\04"), PathBuf::from("a\\04"));
        assert_eq!(unescape_octal("a\\0401"), PathBuf::from("a 1"));
        assert_eq!(unescape_octal("\\777"), PathBuf::from("\\777"));
    }
}
