//! The one way zchroot touches files inside a root (or any directory that a
//! sandbox could write to): a handle on the root directory, through which
//! every path is resolved by the kernel with `openat2(RESOLVE_IN_ROOT |
//! RESOLVE_NO_MAGICLINKS)`. Symlinks a package shipped, or a command inside
//! the sandbox made, resolve inside the root as they would in a chroot: `..`
//! stops at the root, an absolute target starts again at the root, and
//! `/proc/self/...`-style magic links are refused. The final component is
//! never followed when writing or removing: files are written under a
//! random temporary name created exclusively and renamed over the old
//! entry, which replaces a symlink rather than writing through it; reads
//! take regular files only, with a size cap.
//!
//! There is no way to get a plain path inside the root out of a [`RootDir`]
//! other than [`RootDir::display`], which is for messages.

use std::ffi::{OsStr, OsString};
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{self, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{self, Mode, SFlag};
use nix::unistd::{self, UnlinkatFlags};

/// A failed operation inside a root, with the path as seen inside it.
#[derive(Debug, thiserror::Error)]
pub enum RootDirError {
    #[error("{op} {}: {errno}", shown(root, path))]
    Sys {
        op: &'static str,
        root: PathBuf,
        path: PathBuf,
        errno: Errno,
    },
    #[error("{}: {reason}", shown(root, path))]
    Refused {
        root: PathBuf,
        path: PathBuf,
        reason: String,
    },
}

fn shown(root: &Path, path: &Path) -> String {
    if path.as_os_str().is_empty() {
        root.display().to_string()
    } else {
        format!(
            "{} (inside {})",
            Path::new("/").join(path).display(),
            root.display()
        )
    }
}

impl RootDirError {
    /// The errno, for callers that tolerate e.g. a missing file.
    pub fn errno(&self) -> Option<Errno> {
        match self {
            RootDirError::Sys { errno, .. } => Some(*errno),
            RootDirError::Refused { .. } => None,
        }
    }
}

/// What an entry inside the root is (never following a final symlink).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    File,
    Dir,
    Symlink,
    Other,
}

/// A handle on a root directory. See the module documentation.
#[derive(Debug)]
pub struct RootDir {
    fd: OwnedFd,
    path: PathBuf,
}

const RESOLVE: ResolveFlag = ResolveFlag::RESOLVE_IN_ROOT.union(ResolveFlag::RESOLVE_NO_MAGICLINKS);

/// Splits a path inside the root into plain components; `..` and `.` are
/// kept for the kernel to resolve (confined), leading `/` is dropped.
fn relative(path: &Path) -> PathBuf {
    path.components()
        .filter(|c| !matches!(c, Component::RootDir | Component::Prefix(_)))
        .collect()
}

impl RootDir {
    /// Opens the root at `path`. `path` itself is trusted (zchroot's own
    /// state directory); a symlink at `path` is refused.
    pub fn open(path: &Path) -> Result<RootDir, RootDirError> {
        let fd = fcntl::open(
            path,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|errno| RootDirError::Sys {
            op: "opening",
            root: path.to_owned(),
            path: PathBuf::new(),
            errno,
        })?;
        Ok(RootDir {
            fd,
            path: path.to_owned(),
        })
    }

    /// The root's path on the host, for messages.
    pub fn display(&self) -> std::path::Display<'_> {
        self.path.display()
    }

    fn err(&self, op: &'static str, rel: &Path) -> impl FnOnce(Errno) -> RootDirError + '_ {
        let path = rel.to_owned();
        move |errno| RootDirError::Sys {
            op,
            root: self.path.clone(),
            path,
            errno,
        }
    }

    fn refused(&self, rel: &Path, reason: impl Into<String>) -> RootDirError {
        RootDirError::Refused {
            root: self.path.clone(),
            path: rel.to_owned(),
            reason: reason.into(),
        }
    }

    /// Opens `rel` (confined), following symlinks inside the root.
    fn resolve(&self, rel: &Path, flags: OFlag, mode: Mode) -> nix::Result<OwnedFd> {
        let rel = relative(rel);
        let rel: &Path = if rel.as_os_str().is_empty() {
            Path::new(".")
        } else {
            &rel
        };
        let how = OpenHow::new()
            .flags(flags | OFlag::O_CLOEXEC)
            .mode(mode)
            .resolve(RESOLVE);
        loop {
            match fcntl::openat2(self.fd.as_fd(), rel, how) {
                Err(Errno::EAGAIN) | Err(Errno::EINTR) => continue, // a rename raced the walk
                r => return r,
            }
        }
    }

    /// The directory holding `rel` (resolved, confined) and `rel`'s last
    /// component, which is never `.`, `..` or empty.
    fn parent(&self, rel: &Path) -> Result<(OwnedFd, OsString), RootDirError> {
        let rel = relative(rel);
        let name = match rel.components().next_back() {
            Some(Component::Normal(n)) => n.to_owned(),
            _ => return Err(self.refused(&rel, "not a name of a file inside the root")),
        };
        let dir = rel.parent().unwrap_or(Path::new(""));
        let fd = self
            .resolve(dir, OFlag::O_PATH | OFlag::O_DIRECTORY, Mode::empty())
            .map_err(self.err("opening the directory of", &rel))?;
        Ok((fd, name))
    }

    /// What `rel` is, without following a final symlink; `None` if missing.
    pub fn kind(&self, rel: &Path) -> Result<Option<Kind>, RootDirError> {
        let (dir, name) = match self.parent(rel) {
            Ok(x) => x,
            Err(e) if matches!(e.errno(), Some(Errno::ENOENT) | Some(Errno::ENOTDIR)) => {
                return Ok(None)
            }
            Err(e) => return Err(e),
        };
        match stat::fstatat(
            dir.as_fd(),
            name.as_os_str(),
            fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        ) {
            Ok(st) => Ok(Some(kind_of(st.st_mode))),
            Err(Errno::ENOENT) => Ok(None),
            Err(e) => Err(self.err("examining", rel)(e)),
        }
    }

    /// Creates `rel` and its missing parents as directories with `mode`.
    /// An existing directory (or a symlink to one, resolved inside the
    /// root) is kept as it is.
    pub fn create_dir_all(&self, rel: &Path, mode: u32) -> Result<(), RootDirError> {
        let rel = relative(rel);
        let mut sofar = PathBuf::new();
        for c in rel.components() {
            sofar.push(c);
            if !matches!(c, Component::Normal(_)) {
                continue;
            }
            match self.resolve(&sofar, OFlag::O_PATH | OFlag::O_DIRECTORY, Mode::empty()) {
                Ok(_) => continue,
                Err(Errno::ENOENT) => {}
                Err(e) => return Err(self.err("opening", &sofar)(e)),
            }
            let (dir, name) = self.parent(&sofar)?;
            match stat::mkdirat(
                dir.as_fd(),
                name.as_os_str(),
                Mode::from_bits_truncate(mode),
            ) {
                Ok(()) | Err(Errno::EEXIST) => {}
                Err(e) => return Err(self.err("making the directory", &sofar)(e)),
            }
            // Whatever is there now must be a directory inside the root.
            self.resolve(&sofar, OFlag::O_PATH | OFlag::O_DIRECTORY, Mode::empty())
                .map_err(self.err("opening", &sofar))?;
        }
        Ok(())
    }

    /// Writes `contents` to `rel` with `mode` (parents made 0755 as
    /// needed): a new file under a random name, created exclusively with
    /// its mode from the start, renamed over whatever `rel` was (a symlink
    /// there is replaced, never written through).
    pub fn write(&self, rel: &Path, contents: &[u8], mode: u32) -> Result<(), RootDirError> {
        if let Some(parent) = relative(rel).parent() {
            self.create_dir_all(parent, 0o755)?;
        }
        let (dir, name) = self.parent(rel)?;
        let mode = Mode::from_bits_truncate(mode);
        let (tmp, file) = crate::atomic::create_temp_in(dir.as_fd(), &name, mode)
            .map_err(|e| self.err("creating a file beside", rel)(errno_of(&e)))?;
        let done = (|| {
            let mut file = file;
            file.write_all(contents).map_err(|e| errno_of(&e))?;
            // umask may have taken bits away; set the mode on the fd.
            stat::fchmod(file.as_fd(), mode)?;
            fcntl::renameat(dir.as_fd(), tmp.as_os_str(), dir.as_fd(), name.as_os_str())
        })();
        if let Err(e) = done {
            let _ = unistd::unlinkat(dir.as_fd(), tmp.as_os_str(), UnlinkatFlags::NoRemoveDir);
            return Err(self.err("writing", rel)(e));
        }
        Ok(())
    }

    /// Reads the regular file `rel` whole, refusing a final symlink, any
    /// other kind of file, and files larger than `max` bytes.
    pub fn read(&self, rel: &Path, max: u64) -> Result<Vec<u8>, RootDirError> {
        let fd = self
            .resolve(
                rel,
                OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_NOCTTY,
                Mode::empty(),
            )
            .map_err(self.err("opening", rel))?;
        let st = stat::fstat(fd.as_fd()).map_err(self.err("examining", rel))?;
        if kind_of(st.st_mode) != Kind::File {
            return Err(self.refused(rel, "not a regular file"));
        }
        let mut out = Vec::new();
        std::fs::File::from(fd)
            .take(max + 1)
            .read_to_end(&mut out)
            .map_err(|e| self.err("reading", rel)(errno_of(&e)))?;
        if out.len() as u64 > max {
            return Err(self.refused(rel, format!("larger than {max} bytes")));
        }
        Ok(out)
    }

    /// Up to `n` first bytes of the regular file `rel` (an ELF header);
    /// `None` when it is missing or not a regular file.
    pub fn read_head(&self, rel: &Path, n: usize) -> Option<Vec<u8>> {
        let fd = self
            .resolve(
                rel,
                OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_NOCTTY,
                Mode::empty(),
            )
            .ok()?;
        let st = stat::fstat(fd.as_fd()).ok()?;
        if kind_of(st.st_mode) != Kind::File {
            return None;
        }
        let mut out = Vec::new();
        std::fs::File::from(fd)
            .take(n as u64)
            .read_to_end(&mut out)
            .ok()?;
        Some(out)
    }

    /// Writes `contents` into the existing file `rel` as it is (a control
    /// file of a filesystem mounted inside the root, such as binfmt_misc's
    /// `register`); a final symlink is refused.
    pub fn write_existing(&self, rel: &Path, contents: &[u8]) -> Result<(), RootDirError> {
        let fd = self
            .resolve(
                rel,
                OFlag::O_WRONLY | OFlag::O_NOFOLLOW | OFlag::O_NOCTTY | OFlag::O_NONBLOCK,
                Mode::empty(),
            )
            .map_err(self.err("opening", rel))?;
        let st = stat::fstat(fd.as_fd()).map_err(self.err("examining", rel))?;
        if kind_of(st.st_mode) != Kind::File {
            return Err(self.refused(rel, "not a regular file"));
        }
        std::fs::File::from(fd)
            .write_all(contents)
            .map_err(|e| self.err("writing", rel)(errno_of(&e)))
    }

    /// The last `max` bytes of the regular file `rel` (a log), as text;
    /// empty when it is missing or not a regular file.
    pub fn read_tail(&self, rel: &Path, max: u64) -> String {
        let Ok(fd) = self.resolve(
            rel,
            OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_NOCTTY,
            Mode::empty(),
        ) else {
            return String::new();
        };
        let Ok(st) = stat::fstat(fd.as_fd()) else {
            return String::new();
        };
        if kind_of(st.st_mode) != Kind::File {
            return String::new();
        }
        let mut f = std::fs::File::from(fd);
        let size = st.st_size.max(0) as u64;
        if size > max {
            use std::io::Seek;
            if f.seek(std::io::SeekFrom::Start(size - max)).is_err() {
                return String::new();
            }
        }
        let mut out = Vec::new();
        let _ = f.take(max).read_to_end(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    }

    /// Opens the regular file `rel` for reading (never a final symlink, a
    /// fifo or a device), to follow what something inside writes to it.
    pub fn open_regular(&self, rel: &Path) -> Result<std::fs::File, RootDirError> {
        let fd = self
            .resolve(
                rel,
                OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_NOCTTY,
                Mode::empty(),
            )
            .map_err(self.err("open", rel))?;
        let st = stat::fstat(fd.as_fd()).map_err(self.err("fstat", rel))?;
        if kind_of(st.st_mode) != Kind::File {
            return Err(self.err("open", rel)(Errno::EINVAL));
        }
        Ok(std::fs::File::from(fd))
    }

    /// Removes the file, symlink or empty directory `rel` (never following
    /// a final symlink); a missing entry is not an error.
    pub fn remove(&self, rel: &Path) -> Result<(), RootDirError> {
        let (dir, name) = match self.parent(rel) {
            Ok(x) => x,
            Err(e) if matches!(e.errno(), Some(Errno::ENOENT)) => return Ok(()),
            Err(e) => return Err(e),
        };
        let flag = match stat::fstatat(
            dir.as_fd(),
            name.as_os_str(),
            fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        ) {
            Err(Errno::ENOENT) => return Ok(()),
            Err(e) => return Err(self.err("examining", rel)(e)),
            Ok(st) if kind_of(st.st_mode) == Kind::Dir => UnlinkatFlags::RemoveDir,
            Ok(_) => UnlinkatFlags::NoRemoveDir,
        };
        match unistd::unlinkat(dir.as_fd(), name.as_os_str(), flag) {
            Ok(()) | Err(Errno::ENOENT) => Ok(()),
            Err(e) => Err(self.err("removing", rel)(e)),
        }
    }

    /// Makes `rel` a symlink to `target` (replacing a file or symlink there).
    pub fn symlink(&self, target: &OsStr, rel: &Path) -> Result<(), RootDirError> {
        let (dir, name) = self.parent(rel)?;
        match unistd::symlinkat(target, dir.as_fd(), name.as_os_str()) {
            Ok(()) => Ok(()),
            Err(Errno::EEXIST) => {
                // Made beside under a random name, then renamed over.
                let tmp = loop {
                    let tmp = crate::atomic::temp_name(&name);
                    match unistd::symlinkat(target, dir.as_fd(), tmp.as_os_str()) {
                        Ok(()) => break tmp,
                        Err(Errno::EEXIST) => continue,
                        Err(e) => return Err(self.err("making a symlink beside", rel)(e)),
                    }
                };
                fcntl::renameat(dir.as_fd(), tmp.as_os_str(), dir.as_fd(), name.as_os_str())
                    .map_err(|e| {
                        let _ = unistd::unlinkat(
                            dir.as_fd(),
                            tmp.as_os_str(),
                            UnlinkatFlags::NoRemoveDir,
                        );
                        self.err("replacing", rel)(e)
                    })
            }
            Err(e) => Err(self.err("making the symlink", rel)(e)),
        }
    }

    /// Makes sure `rel` exists as a directory or (with `dir == false`) a
    /// file, and returns an `O_PATH` descriptor on it (symlinks followed
    /// inside the root): a mount point that cannot lead out of the root.
    pub fn mount_point(&self, rel: &Path, dir: bool) -> Result<OwnedFd, RootDirError> {
        let rel = relative(rel);
        let flags = if dir {
            OFlag::O_PATH | OFlag::O_DIRECTORY
        } else {
            OFlag::O_PATH
        };
        match self.resolve(&rel, flags, Mode::empty()) {
            Ok(fd) => return Ok(fd),
            Err(Errno::ENOENT) => {}
            Err(e) => return Err(self.err("opening", &rel)(e)),
        }
        if dir {
            self.create_dir_all(&rel, 0o755)?;
        } else {
            if let Some(parent) = rel.parent() {
                self.create_dir_all(parent, 0o755)?;
            }
            let (d, name) = self.parent(&rel)?;
            match fcntl::openat(
                d.as_fd(),
                name.as_os_str(),
                OFlag::O_WRONLY
                    | OFlag::O_CREAT
                    | OFlag::O_EXCL
                    | OFlag::O_NOFOLLOW
                    | OFlag::O_CLOEXEC,
                Mode::from_bits_truncate(0o644),
            ) {
                Ok(_) | Err(Errno::EEXIST) => {}
                Err(e) => return Err(self.err("making the mount point", &rel)(e)),
            }
        }
        self.resolve(&rel, flags, Mode::empty())
            .map_err(self.err("opening", &rel))
    }

    /// The names and kinds of the entries of the directory `rel`.
    pub fn list(&self, rel: &Path) -> Result<Vec<(OsString, Kind)>, RootDirError> {
        let fd = self
            .resolve(rel, OFlag::O_RDONLY | OFlag::O_DIRECTORY, Mode::empty())
            .map_err(self.err("opening the directory", rel))?;
        let at = fd
            .try_clone()
            .map_err(|e| self.err("reading", rel)(errno_of(&e)))?;
        let mut dir = nix::dir::Dir::from_fd(fd).map_err(self.err("reading", rel))?;
        let mut out = Vec::new();
        for e in dir.iter() {
            let e = e.map_err(self.err("reading", rel))?;
            let name = e.file_name().to_bytes();
            if name == b"." || name == b".." {
                continue;
            }
            let name = OsStr::from_bytes(name).to_owned();
            let kind = stat::fstatat(
                at.as_fd(),
                name.as_os_str(),
                fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
            )
            .map(|st| kind_of(st.st_mode))
            .unwrap_or(Kind::Other);
            out.push((name, kind));
        }
        out.sort();
        Ok(out)
    }
}

fn kind_of(mode: libc::mode_t) -> Kind {
    match SFlag::from_bits_truncate(mode & SFlag::S_IFMT.bits()) {
        SFlag::S_IFREG => Kind::File,
        SFlag::S_IFDIR => Kind::Dir,
        SFlag::S_IFLNK => Kind::Symlink,
        _ => Kind::Other,
    }
}

fn errno_of(e: &std::io::Error) -> Errno {
    Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn setup() -> (tempfile::TempDir, PathBuf, PathBuf) {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("root");
        let outside = t.path().join("outside");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("victim"), "host").unwrap();
        (t, root, outside)
    }

    #[test]
    fn writes_replace_symlinks_instead_of_following_them() {
        let (_t, root, outside) = setup();
        std::os::unix::fs::symlink(outside.join("victim"), root.join("etc/hostname")).unwrap();
        let r = RootDir::open(&root).unwrap();
        r.write(Path::new("etc/hostname"), b"box\n", 0o600).unwrap();
        assert_eq!(
            std::fs::read_to_string(outside.join("victim")).unwrap(),
            "host"
        );
        let m = std::fs::symlink_metadata(root.join("etc/hostname")).unwrap();
        assert!(m.is_file());
        assert_eq!(m.permissions().mode() & 0o7777, 0o600);
        assert_eq!(std::fs::read(root.join("etc/hostname")).unwrap(), b"box\n");
        // No temporary file left beside it.
        assert_eq!(std::fs::read_dir(root.join("etc")).unwrap().count(), 1);
    }

    #[test]
    fn directory_symlinks_resolve_inside_the_root() {
        let (_t, root, outside) = setup();
        // An absolute link and a `..` climb both stay in the root.
        std::os::unix::fs::symlink(&outside, root.join("abs")).unwrap();
        std::os::unix::fs::symlink("../../../../..", root.join("up")).unwrap();
        let r = RootDir::open(&root).unwrap();
        // Dangling inside the root: an error, as `mkdir -p` in a chroot.
        assert!(r.write(Path::new("abs/victim"), b"x", 0o644).is_err());
        assert_eq!(
            std::fs::read_to_string(outside.join("victim")).unwrap(),
            "host"
        );
        // The absolute link restarts at the root: the host path, inside.
        let inner = root.join(outside.strip_prefix("/").unwrap());
        std::fs::create_dir_all(&inner).unwrap();
        r.write(Path::new("abs/victim"), b"x", 0o644).unwrap();
        r.write(Path::new("up/victim"), b"y", 0o644).unwrap();
        r.create_dir_all(Path::new("abs/made/deep"), 0o755).unwrap();
        assert_eq!(
            std::fs::read_to_string(outside.join("victim")).unwrap(),
            "host"
        );
        assert!(!outside.join("made").exists());
        assert_eq!(std::fs::read(inner.join("victim")).unwrap(), b"x");
        assert!(inner.join("made/deep").is_dir());
        assert_eq!(std::fs::read(root.join("victim")).unwrap(), b"y");
    }

    #[test]
    fn reads_take_regular_files_only_with_a_cap() {
        let (_t, root, outside) = setup();
        std::os::unix::fs::symlink(outside.join("victim"), root.join("log")).unwrap();
        std::os::unix::fs::symlink("/dev/zero", root.join("zero")).unwrap();
        std::fs::write(root.join("big"), vec![b'a'; 100]).unwrap();
        std::fs::write(root.join("small"), "ok").unwrap();
        let r = RootDir::open(&root).unwrap();
        assert!(r.read(Path::new("log"), 1 << 20).is_err());
        assert!(r.read(Path::new("zero"), 1 << 20).is_err());
        assert!(r.read(Path::new("big"), 10).is_err());
        assert_eq!(r.read(Path::new("small"), 10).unwrap(), b"ok");
        assert_eq!(r.read_tail(Path::new("log"), 100), "");
        assert_eq!(r.read_tail(Path::new("big"), 3), "aaa");
        assert_eq!(r.kind(Path::new("log")).unwrap(), Some(Kind::Symlink));
        assert_eq!(r.kind(Path::new("nope/x")).unwrap(), None);
    }

    #[test]
    fn removal_takes_the_link_not_its_target() {
        let (_t, root, outside) = setup();
        std::os::unix::fs::symlink(&outside, root.join("usr")).unwrap();
        let r = RootDir::open(&root).unwrap();
        // usr -> /outside resolves to ROOT/outside, where there is no victim.
        r.remove(Path::new("usr/victim")).unwrap();
        assert!(outside.join("victim").exists());
        r.remove(Path::new("usr")).unwrap();
        assert!(outside.join("victim").exists());
        assert!(std::fs::symlink_metadata(root.join("usr")).is_err());
        assert!(r.remove(Path::new("..")).is_err());
    }

    #[test]
    fn mount_points_are_made_inside() {
        let (_t, root, outside) = setup();
        std::os::unix::fs::symlink(&outside, root.join("dev")).unwrap();
        let r = RootDir::open(&root).unwrap();
        assert!(r.mount_point(Path::new("dev/null"), false).is_err());
        let inner = root.join(outside.strip_prefix("/").unwrap());
        std::fs::create_dir_all(&inner).unwrap();
        r.mount_point(Path::new("dev/null"), false).unwrap();
        r.mount_point(Path::new("dev/pts"), true).unwrap();
        assert!(!outside.join("null").exists());
        assert!(!outside.join("pts").exists());
        assert!(inner.join("null").is_file());
        assert!(inner.join("pts").is_dir());
    }
}
