//! The export's walk of a tree: the top opened once through no symlink,
//! every entry below opened relative to its directory's descriptor, never
//! by a path, and described by `fstat` of the descriptor that is read. The
//! owner of a tree, or of a directory in it, who swaps a directory for a
//! symlink while it is read gets the symlink archived, never followed.

use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, OpenHow, ResolveFlag, AT_FDCWD};
use nix::sys::stat::{FileStat, Mode, SFlag};

use super::{io, is_apt_cache, ExportError};

/// A tree opened for export: its top directory, opened once, and what
/// `fstat` says of it. Everything below is reached from this descriptor,
/// one name at a time, never by a path: a directory swapped for a symlink
/// while the tree is read is seen as the symlink it now is, not followed.
#[derive(Debug)]
pub struct Tree {
    pub(super) path: PathBuf,
    fd: OwnedFd,
    st: FileStat,
}

impl Tree {
    /// Opens the directory `path` through no symlink at all
    /// (`RESOLVE_NO_SYMLINKS`: the caller gives the tree's real path), so a
    /// component swapped for a symlink after the path was resolved is an
    /// error, not somewhere else.
    pub fn open(path: &Path) -> Result<Tree, ExportError> {
        let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
        let how = OpenHow::new()
            .flags(flags)
            .resolve(ResolveFlag::RESOLVE_NO_SYMLINKS);
        let fd = match nix::fcntl::openat2(AT_FDCWD, path, how) {
            // Before Linux 5.6: at least the last component is no symlink.
            Err(Errno::ENOSYS) => {
                nix::fcntl::openat(AT_FDCWD, path, flags | OFlag::O_NOFOLLOW, Mode::empty())
            }
            r => r,
        };
        let fd = match fd {
            Ok(fd) => fd,
            Err(Errno::ELOOP) => {
                return Err(ExportError::SymlinkInPath {
                    path: path.to_owned(),
                })
            }
            Err(e) => return Err(io(path)(e.into())),
        };
        let st = nix::sys::stat::fstat(fd.as_fd()).map_err(|e| io(path)(e.into()))?;
        Ok(Tree {
            path: path.to_owned(),
            fd,
            st,
        })
    }

    /// Refuses a tree whose top belongs to someone other than this process
    /// (as the owners read where the export runs: inside the user namespace
    /// when rootless). Its owner could change it while it is read; what is
    /// read with this process's rights would end up in an image its owner
    /// can read (a hard link to a file of ours, where the host allows it).
    pub fn check_owner(&self) -> Result<(), ExportError> {
        let me = nix::unistd::geteuid().as_raw();
        if self.st.st_uid != me {
            return Err(ExportError::NotYours {
                path: self.path.clone(),
                owner: self.st.st_uid,
                me,
            });
        }
        Ok(())
    }

    fn err(&self, rel: &Path) -> impl FnOnce(Errno) -> ExportError {
        let path = self.path.join(rel);
        move |e| ExportError::Io {
            path,
            source: e.into(),
        }
    }
}

/// One entry of the tree, opened: what `fstat` says of the descriptor that
/// is read (symlinks and device nodes, which are not opened: `fstatat`).
pub(super) struct Entry {
    pub(super) st: FileStat,
    pub(super) node: Node,
}

pub(super) enum Node {
    Dir(OwnedFd),
    File(std::fs::File),
    Symlink(OsString),
    /// A device node, fifo or socket: nothing to read.
    Special,
}

/// What [`open_entry`] found.
enum Opened {
    Entry(Entry),
    /// Removed meanwhile, or a mount.
    Gone,
    /// It changed type each time it was looked at.
    Changing,
}

/// How often an entry that changes type while it is opened is looked at
/// again before the export gives up.
const RETRIES: usize = 16;

/// Opens the entry `name` of `dir` without following a symlink or crossing
/// a mount ([`Opened::Gone`] when it is gone, or a mount). An entry that
/// turns into something else between the look and the open is looked at
/// again.
fn open_entry(dir: BorrowedFd, name: &OsStr) -> Result<Opened, Errno> {
    use nix::sys::stat::{fstat, fstatat};
    for _ in 0..RETRIES {
        let st = match fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Err(Errno::ENOENT) => return Ok(Opened::Gone),
            r => r?,
        };
        match SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits()) {
            SFlag::S_IFDIR => match crate::sys::tree::open_subdir(dir, name) {
                Ok(fd) => {
                    let st = fstat(fd.as_fd())?;
                    return Ok(Opened::Entry(Entry {
                        st,
                        node: Node::Dir(fd),
                    }));
                }
                Err(e) if e.errno == Errno::EXDEV => return Ok(Opened::Gone), // a mount
                Err(e) if matches!(e.errno, Errno::ELOOP | Errno::ENOTDIR | Errno::ENOENT) => {
                    continue
                }
                Err(e) => return Err(e.errno),
            },
            SFlag::S_IFREG => {
                // O_NONBLOCK: a fifo swapped in does not block the open.
                let flags = OFlag::O_RDONLY
                    | OFlag::O_NOFOLLOW
                    | OFlag::O_NONBLOCK
                    | OFlag::O_NOCTTY
                    | OFlag::O_CLOEXEC;
                match nix::fcntl::openat(dir, name, flags, Mode::empty()) {
                    Ok(fd) => {
                        let st = fstat(fd.as_fd())?;
                        if st.st_mode & libc::S_IFMT != libc::S_IFREG {
                            continue;
                        }
                        return Ok(Opened::Entry(Entry {
                            st,
                            node: Node::File(fd.into()),
                        }));
                    }
                    Err(Errno::ELOOP | Errno::ENOENT) => continue,
                    Err(e) => return Err(e),
                }
            }
            SFlag::S_IFLNK => match nix::fcntl::readlinkat(dir, name) {
                Ok(target) => {
                    return Ok(Opened::Entry(Entry {
                        st,
                        node: Node::Symlink(target),
                    }))
                }
                Err(Errno::EINVAL | Errno::ENOENT) => continue,
                Err(e) => return Err(e),
            },
            _ => {
                return Ok(Opened::Entry(Entry {
                    st,
                    node: Node::Special,
                }))
            }
        }
    }
    Ok(Opened::Changing)
}

/// What is done with each entry of a walk.
pub(super) trait Visit {
    /// `rel` is empty for the top of the tree; a directory comes before
    /// what it holds.
    fn entry(&mut self, rel: &Path, e: &Entry) -> Result<(), ExportError>;
    /// After everything a directory holds.
    fn dir_done(&mut self, _rel: &Path, _e: &Entry) -> Result<(), ExportError> {
        Ok(())
    }
}

/// Walks `tree` from its descriptor, depth first in name order, each entry
/// opened relative to its directory's descriptor ([`open_entry`]), not
/// crossing into other filesystems (a mount inside is left out), apt's
/// lists and cache ([`is_apt_cache`]) only when `include_apt_lists`.
pub(super) fn walk_tree(
    tree: &Tree,
    include_apt_lists: bool,
    v: &mut dyn Visit,
) -> Result<(), ExportError> {
    let top = Entry {
        st: tree.st,
        node: Node::Dir(tree.fd.try_clone().map_err(io(&tree.path))?),
    };
    v.entry(Path::new(""), &top)?;
    walk_dir(tree, tree.fd.as_fd(), Path::new(""), include_apt_lists, v)?;
    v.dir_done(Path::new(""), &top)
}

fn walk_dir(
    tree: &Tree,
    dir: BorrowedFd,
    rel: &Path,
    include_apt_lists: bool,
    v: &mut dyn Visit,
) -> Result<(), ExportError> {
    let mut names = crate::sys::tree::read_names(dir).map_err(|e| tree.err(rel)(e.errno))?;
    names.sort();
    for name in names {
        let r = rel.join(&name);
        let e = match open_entry(dir, &name) {
            Ok(Opened::Entry(e)) => e,
            Ok(Opened::Gone) => continue,
            Ok(Opened::Changing) => {
                return Err(ExportError::Changing {
                    path: tree.path.join(&r),
                })
            }
            Err(e) => return Err(tree.err(&r)(e)),
        };
        if e.st.st_dev != tree.st.st_dev {
            continue; // another filesystem mounted inside
        }
        let is_dir = matches!(e.node, Node::Dir(_));
        if !include_apt_lists && is_apt_cache(&r, is_dir) {
            continue;
        }
        v.entry(&r, &e)?;
        if let Node::Dir(fd) = &e.node {
            walk_dir(tree, fd.as_fd(), &r, include_apt_lists, v)?;
            v.dir_done(&r, &e)?;
        }
    }
    Ok(())
}

/// Every path under `root` (relative, sorted, parents first), as the
/// export walks it.
pub fn walk(root: &Path) -> Result<Vec<PathBuf>, ExportError> {
    struct Paths(Vec<PathBuf>);
    impl Visit for Paths {
        fn entry(&mut self, rel: &Path, _: &Entry) -> Result<(), ExportError> {
            if !rel.as_os_str().is_empty() {
                self.0.push(rel.to_owned());
            }
            Ok(())
        }
    }
    let mut p = Paths(Vec::new());
    walk_tree(&Tree::open(root)?, true, &mut p)?;
    Ok(p.0)
}

/// `size` bytes of `f`: no more if it has grown since it was looked at (the
/// bytes past a tar entry's size would be read as the next entries), zeros
/// for what is missing if it has shrunk.
pub(super) fn exactly(f: &std::fs::File, size: u64) -> impl std::io::Read + '_ {
    use std::io::Read;
    f.take(size).chain(std::io::repeat(0)).take(size)
}
