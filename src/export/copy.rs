//! The private copy of a tree that mke2fs is given (it reads its `-d`
//! directory by path): made from the export's walk, each entry copied from
//! the descriptor the walk opened, into a directory no one else can enter.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{FileStat, Mode, SFlag};
use nix::sys::time::TimeSpec;
use nix::unistd::{Gid, Uid};

use super::walk::{exactly, Entry, Node, Visit};
use super::{io, ExportError};

/// zchroot's private copy of a tree, for mke2fs (which reads its `-d`
/// directory by path, and would follow a directory swapped for a symlink
/// as the export of the tree itself once did): a directory only this
/// process can enter (0700, created exclusively under a random name beside
/// the output) holding the copy as `root`, removed when dropped.
pub(super) struct Snapshot {
    pub(super) path: PathBuf,
    pub(super) root: OwnedFd,
}

impl Snapshot {
    pub(super) fn new(out: &Path) -> Result<Snapshot, ExportError> {
        let dir = match out.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        let sys = |path: &Path| {
            let path = path.to_owned();
            move |e: crate::sys::SysError| ExportError::Io {
                path,
                source: e.errno.into(),
            }
        };
        let dfd = crate::sys::tree::open_dir_path(dir).map_err(sys(dir))?;
        let base = out.file_name().unwrap_or(OsStr::new("export"));
        let mut tries = 0;
        let name = loop {
            let name = crate::atomic::temp_name(base);
            match nix::sys::stat::mkdirat(dfd.as_fd(), name.as_os_str(), Mode::S_IRWXU) {
                Ok(()) => break name,
                Err(Errno::EEXIST) if tries < 64 => tries += 1,
                Err(e) => return Err(io(&dir.join(&name))(e.into())),
            }
        };
        let path = dir.join(&name);
        let top = match crate::sys::tree::open_subdir(dfd.as_fd(), &name) {
            Ok(fd) => fd,
            Err(e) => {
                let _ = nix::unistd::unlinkat(
                    dfd.as_fd(),
                    name.as_os_str(),
                    nix::unistd::UnlinkatFlags::RemoveDir,
                );
                return Err(sys(&path)(e));
            }
        };
        // From here on, dropping it removes it.
        let mut snap = Snapshot {
            path: path.clone(),
            root: top,
        };
        nix::sys::stat::mkdirat(snap.root.as_fd(), "root", Mode::S_IRWXU)
            .map_err(|e| io(&path.join("root"))(e.into()))?;
        snap.root = crate::sys::tree::open_subdir(snap.root.as_fd(), OsStr::new("root"))
            .map_err(sys(&path.join("root")))?;
        Ok(snap)
    }
}

impl Drop for Snapshot {
    fn drop(&mut self) {
        // Never crosses a mount; nothing can be mounted in it but by root.
        let _ = crate::teardown::remove_tree(&self.path);
    }
}

/// Counts what a walk meets: bytes (as `st_size` says) and entries.
#[derive(Default)]
pub(super) struct Count {
    pub(super) bytes: u64,
    pub(super) entries: u64,
}

impl Visit for Count {
    fn entry(&mut self, _: &Path, e: &Entry) -> Result<(), ExportError> {
        self.bytes += e.st.st_size.max(0) as u64;
        self.entries += 1;
        Ok(())
    }
}

/// Copies each entry of a walk into the snapshot, from the descriptor the
/// walk opened: data (shared blocks where the filesystem can), owner, mode,
/// extended attributes and times as `fstat` said; hard links kept.
pub(super) struct CopyVisit<'a> {
    /// The copy's path, for messages.
    path: PathBuf,
    root: &'a OwnedFd,
    /// The copy's directories from its top down to the one being filled.
    dirs: Vec<OwnedFd>,
    links: HashMap<(u64, u64), PathBuf>,
    count: Count,
}

impl CopyVisit<'_> {
    /// A copy into `snap`'s `root`.
    pub(super) fn new(snap: &Snapshot) -> CopyVisit<'_> {
        CopyVisit {
            path: snap.path.join("root"),
            root: &snap.root,
            dirs: Vec::new(),
            links: HashMap::new(),
            count: Count::default(),
        }
    }

    /// What was copied.
    pub(super) fn count(self) -> Count {
        self.count
    }

    fn err(&self, rel: &Path, call: &'static str) -> impl FnOnce(Errno) -> ExportError {
        let path = self.path.join(rel);
        move |e| ExportError::Copy {
            path,
            source: std::io::Error::from_raw_os_error(e as i32),
            call,
        }
    }

    /// Owner, then mode (a chown clears setuid bits), extended attributes
    /// and times of the copy `dst` of `src`.
    fn finish(
        &self,
        rel: &Path,
        src: BorrowedFd,
        dst: BorrowedFd,
        st: &FileStat,
    ) -> Result<(), ExportError> {
        nix::unistd::fchown(
            dst,
            Some(Uid::from_raw(st.st_uid)),
            Some(Gid::from_raw(st.st_gid)),
        )
        .map_err(self.err(rel, "fchown"))?;
        nix::sys::stat::fchmod(dst, Mode::from_bits_truncate(st.st_mode & 0o7777))
            .map_err(self.err(rel, "fchmod"))?;
        let attrs =
            crate::sys::copy::xattrs(src).map_err(|e| self.err(rel, "flistxattr")(e.errno))?;
        for (name, value) in attrs {
            crate::sys::copy::set_xattr(dst, &name, &value)
                .map_err(|e| self.err(rel, "fsetxattr")(e.errno))?;
        }
        let (atime, mtime) = times(st);
        nix::sys::stat::futimens(dst, &atime, &mtime).map_err(self.err(rel, "futimens"))
    }

    /// Owner and times of the symlink or node `name` of `dir`, not followed.
    fn owner_and_times_at(
        &self,
        rel: &Path,
        dir: BorrowedFd,
        name: &OsStr,
        st: &FileStat,
    ) -> Result<(), ExportError> {
        nix::unistd::fchownat(
            dir,
            name,
            Some(Uid::from_raw(st.st_uid)),
            Some(Gid::from_raw(st.st_gid)),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .map_err(self.err(rel, "fchownat"))?;
        let (atime, mtime) = times(st);
        nix::sys::stat::utimensat(
            dir,
            name,
            &atime,
            &mtime,
            nix::sys::stat::UtimensatFlags::NoFollowSymlink,
        )
        .map_err(self.err(rel, "utimensat"))
    }
}

fn times(st: &FileStat) -> (TimeSpec, TimeSpec) {
    (
        TimeSpec::new(st.st_atime, st.st_atime_nsec),
        TimeSpec::new(st.st_mtime, st.st_mtime_nsec),
    )
}

impl Visit for CopyVisit<'_> {
    fn entry(&mut self, rel: &Path, e: &Entry) -> Result<(), ExportError> {
        self.count.entry(rel, e)?;
        let Some(name) = rel.file_name() else {
            // The top: the copy's `root`, made already.
            let top = self.root.try_clone().map_err(io(&self.path))?;
            self.dirs.push(top);
            return Ok(());
        };
        let dir = self.dirs.last().expect("the top is pushed first").as_fd();
        let st = &e.st;
        let private = Mode::S_IRUSR | Mode::S_IWUSR;
        match &e.node {
            Node::Dir(_) => {
                nix::sys::stat::mkdirat(dir, name, Mode::S_IRWXU)
                    .map_err(self.err(rel, "mkdirat"))?;
                let d = crate::sys::tree::open_subdir(dir, name)
                    .map_err(|e| self.err(rel, "openat2")(e.errno))?;
                self.dirs.push(d);
                Ok(())
            }
            Node::File(f) => {
                let key = (st.st_dev, st.st_ino);
                if st.st_nlink > 1 {
                    if let Some(first) = self.links.get(&key) {
                        // Inside the copy, which no one else can change.
                        return nix::unistd::linkat(
                            self.root.as_fd(),
                            first.as_path(),
                            dir,
                            name,
                            AtFlags::empty(),
                        )
                        .map_err(self.err(rel, "linkat"));
                    }
                    self.links.insert(key, rel.to_owned());
                }
                let flags = OFlag::O_WRONLY
                    | OFlag::O_CREAT
                    | OFlag::O_EXCL
                    | OFlag::O_NOFOLLOW
                    | OFlag::O_CLOEXEC;
                let d = nix::fcntl::openat(dir, name, flags, private)
                    .map_err(self.err(rel, "openat"))?;
                if !crate::sys::copy::clone_file(f.as_fd(), d.as_fd()) {
                    let size = st.st_size.max(0) as u64;
                    let mut out = std::fs::File::from(d.try_clone().map_err(io(&self.path))?);
                    std::io::copy(&mut exactly(f, size), &mut out).map_err(|e| {
                        ExportError::Io {
                            path: self.path.join(rel),
                            source: e,
                        }
                    })?;
                }
                self.finish(rel, f.as_fd(), d.as_fd(), st)
            }
            Node::Symlink(target) => {
                nix::unistd::symlinkat(target.as_os_str(), dir, name)
                    .map_err(self.err(rel, "symlinkat"))?;
                self.owner_and_times_at(rel, dir, name, st)
            }
            Node::Special => {
                let kind = SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits());
                if kind == SFlag::S_IFSOCK {
                    return Ok(()); // sockets belong to running programs
                }
                nix::sys::stat::mknodat(dir, name, kind, private, st.st_rdev)
                    .map_err(self.err(rel, "mknodat"))?;
                self.owner_and_times_at(rel, dir, name, st)?;
                nix::sys::stat::fchmodat(
                    dir,
                    name,
                    Mode::from_bits_truncate(st.st_mode & 0o7777),
                    nix::sys::stat::FchmodatFlags::NoFollowSymlink,
                )
                .map_err(self.err(rel, "fchmodat"))
            }
        }
    }

    fn dir_done(&mut self, rel: &Path, e: &Entry) -> Result<(), ExportError> {
        let d = self.dirs.pop().expect("pushed by entry");
        let Node::Dir(src) = &e.node else {
            unreachable!("dir_done is for directories")
        };
        self.finish(rel, src.as_fd(), d.as_fd(), &e.st)
    }
}
