//! Writing a file by name, safely even in a directory others can write to:
//! the bytes go to a temporary file that this process creates itself
//! (`O_CREAT|O_EXCL|O_NOFOLLOW`, a random name, the final mode from the
//! first byte) next to the final name, and a rename replaces the final name
//! in one step once everything is written and synced. The directory is
//! opened once; creating, renaming and removing the temporary file are
//! relative to that descriptor. A planted symlink or a leftover file at a
//! predictable name is never opened, followed or reused.

use std::collections::hash_map::RandomState;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::hash::{BuildHasher, Hasher};
use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;
use nix::unistd::UnlinkatFlags;

/// How many names are tried before giving up (each taken name is a file
/// someone else made; more than a few means someone is planting them).
const TRIES: usize = 64;

/// A file being written in place of `final_path`; [`AtomicFile::commit`]
/// puts it there, dropping it without a commit removes it.
#[derive(Debug)]
pub struct AtomicFile {
    dir: OwnedFd,
    dir_path: PathBuf,
    tmp_name: OsString,
    final_name: OsString,
    file: File,
    committed: bool,
}

/// A name no one can guess: 64 bits from the standard library's per-process
/// random hash keys (seeded by the OS), mixed with the time and a counter.
pub fn random_suffix() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.write_u32(std::process::id());
    if let Ok(d) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        h.write_u128(d.as_nanos());
    }
    format!("{:016x}", h.finish())
}

/// `.{name}.{random}.tmp`, the name kept short enough for NAME_MAX.
pub fn temp_name(final_name: &OsStr) -> OsString {
    let b = final_name.as_bytes();
    let b = &b[..b.len().min(200)];
    let mut v = Vec::with_capacity(b.len() + 24);
    v.push(b'.');
    v.extend_from_slice(b);
    v.push(b'.');
    v.extend_from_slice(random_suffix().as_bytes());
    v.extend_from_slice(b".tmp");
    OsString::from_vec(v)
}

/// Creates a new file beside `final_name` in the directory `dir`, under a
/// random name (`.NAME.RANDOM.tmp`), exclusively (`O_CREAT|O_EXCL|
/// O_NOFOLLOW`) and with `mode` from its first byte (less the umask).
pub fn create_temp_in(
    dir: std::os::fd::BorrowedFd<'_>,
    final_name: &OsStr,
    mode: Mode,
) -> std::io::Result<(OsString, File)> {
    for _ in 0..TRIES {
        let tmp_name = temp_name(final_name);
        match nix::fcntl::openat(
            dir,
            tmp_name.as_os_str(),
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            mode,
        ) {
            Ok(fd) => return Ok((tmp_name, File::from(fd))),
            Err(Errno::EEXIST) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::AlreadyExists,
        format!("{TRIES} random temporary names were all taken"),
    ))
}

impl AtomicFile {
    /// Creates the temporary file for `final_path` with `mode` (less what
    /// the umask takes away; never more).
    pub fn new(final_path: &Path, mode: u32) -> std::io::Result<AtomicFile> {
        let final_name = final_path
            .file_name()
            .ok_or_else(|| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "not a file name (ends in '..' or '/')",
                )
            })?
            .to_owned();
        let dir_path = match final_path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
            _ => PathBuf::from("."),
        };
        let dir: OwnedFd = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
            .open(&dir_path)?
            .into();
        let mode = Mode::from_bits_truncate(mode & 0o7777);
        let (tmp_name, file) = create_temp_in(dir.as_fd(), &final_name, mode)?;
        Ok(AtomicFile {
            dir,
            dir_path,
            tmp_name,
            final_name,
            file,
            committed: false,
        })
    }

    /// The open temporary file.
    pub fn file(&self) -> &File {
        &self.file
    }

    /// Where the temporary file is (for messages; never open it by this
    /// path, use [`AtomicFile::file`]).
    pub fn temp_path(&self) -> PathBuf {
        self.dir_path.join(&self.tmp_name)
    }

    /// Syncs the file and renames it over the final name.
    pub fn commit(mut self) -> std::io::Result<()> {
        self.file.flush()?;
        self.file.sync_all()?;
        nix::fcntl::renameat(
            self.dir.as_fd(),
            self.tmp_name.as_os_str(),
            self.dir.as_fd(),
            self.final_name.as_os_str(),
        )?;
        self.committed = true;
        // The rename itself reaches the disk with the directory.
        let _ = nix::unistd::fsync(self.dir.as_fd());
        Ok(())
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.file.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

impl AsFd for AtomicFile {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if !self.committed {
            // O_EXCL made this name ours; nothing else is removed.
            let _ = nix::unistd::unlinkat(
                self.dir.as_fd(),
                self.tmp_name.as_os_str(),
                UnlinkatFlags::NoRemoveDir,
            );
        }
    }
}

/// Writes `bytes` to `path` atomically, the file made with `mode`.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    let mut f = AtomicFile::new(path, mode)?;
    f.write_all(bytes)?;
    f.commit()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn names(d: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn a_committed_file_replaces_the_final_name_and_leaves_nothing_else() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("out");
        std::fs::write(&p, "old").unwrap();
        write_atomic(&p, b"new", 0o600).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"new");
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(names(d.path()), ["out"]);
    }

    #[test]
    fn the_temporary_file_is_private_from_the_start_and_removed_on_drop() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("secret.key");
        // A leftover world-readable file at the old fixed name changes nothing.
        std::fs::write(d.path().join("secret.partial"), "x").unwrap();
        std::fs::set_permissions(
            d.path().join("secret.partial"),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        let f = AtomicFile::new(&p, 0o600).unwrap();
        let tmp = f.temp_path();
        let name = tmp.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            name.starts_with(".secret.key.") && name.ends_with(".tmp"),
            "{name}"
        );
        assert_eq!(
            std::fs::metadata(&tmp).unwrap().permissions().mode() & 0o777,
            0o600
        );
        drop(f);
        assert!(!tmp.exists());
        assert!(!p.exists());
        assert_eq!(names(d.path()), ["secret.partial"]);
    }

    #[test]
    fn names_differ_each_time() {
        let a = temp_name(OsStr::new("x"));
        let b = temp_name(OsStr::new("x"));
        assert_ne!(a, b);
        let long = "n".repeat(255);
        assert!(temp_name(OsStr::new(&long)).len() <= 255);
    }

    #[test]
    fn a_symlink_at_the_final_name_is_replaced_not_followed() {
        let d = tempfile::tempdir().unwrap();
        let victim = d.path().join("victim");
        std::fs::write(&victim, "keep").unwrap();
        let p = d.path().join("out");
        std::os::unix::fs::symlink(&victim, &p).unwrap();
        write_atomic(&p, b"new", 0o644).unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"keep");
        assert!(!std::fs::symlink_metadata(&p).unwrap().is_symlink());
        assert_eq!(std::fs::read(&p).unwrap(), b"new");
    }
}
