//! `zchroot export`: a root written out as a tarball (plain, gzip, xz or
//! zstd, chosen from the file name as mmdebstrap does), a squashfs image
//! (the same tar stream fed to squashfs-tools-ng's `tar2sqfs`) or an ext4
//! image (e2fsprogs' `mke2fs -d`, given a private copy), ownership as
//! inside the root. No mounting and no loop devices. For a rootless user
//! this runs inside the user namespace (a sandbox job), where the files'
//! owners read as they are inside the root and every file can be read.
//! apt's lists and download cache are left out unless asked for, as
//! mmdebstrap leaves them out.
//!
//! The tree is read through descriptors only ([`Tree`]): someone who can
//! change it while it is read (a user's directory inside a root) cannot
//! make the export follow a symlink out of it. A tree that belongs to
//! someone else than the exporting process is refused.

mod copy;
mod walk;

pub use walk::{walk, Tree};

use std::collections::HashMap;
use std::ffi::OsString;
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::atomic::AtomicFile;
use copy::{CopyVisit, Count, Snapshot};
use walk::{exactly, walk_tree, Entry, Node, Visit};

/// What `zchroot export` writes: one type for the command line (clap
/// refuses other values and lists these) and for the sandbox job (serde).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum ExportFormat {
    /// A tarball, compressed as its name says (.tar.gz, .tar.xz, .tar.zst).
    Tar,
    /// A squashfs image (needs squashfs-tools-ng's tar2sqfs).
    Squashfs,
    /// An ext4 image (needs e2fsprogs' mke2fs).
    Ext4,
}

/// How a tarball is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Compression {
    /// Not compressed.
    Plain,
    Gzip,
    Xz,
    Zstd,
}

/// What an export writes, decided before anything is read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportPlan {
    pub format: ExportFormat,
    /// Tarballs only.
    pub compression: Compression,
    /// The ext4 image's size in KiB (else as much as the root needs).
    pub size_kib: Option<u64>,
    /// Keep apt's lists and download cache.
    pub include_apt_lists: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{}: {call}: {source}\nhelp: an ext4 image is made from a copy of the tree beside the output: its filesystem needs room for both",
        path.display()
    )]
    Copy {
        path: PathBuf,
        call: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "mke2fs is not installed: an ext4 image needs it\nhelp: sudo apt-get install e2fsprogs"
    )]
    NoMke2fs,
    #[error("mke2fs failed ({status}): {stderr}")]
    Mke2fs { status: String, stderr: String },
    #[error(
        "tar2sqfs is not installed: a squashfs image needs it\nhelp: sudo apt-get install squashfs-tools-ng"
    )]
    NoTar2sqfs,
    #[error("tar2sqfs failed ({status}): {stderr}")]
    Tar2sqfs { status: String, stderr: String },
    #[error("zstd compression failed: {0}")]
    Zstd(String),
    #[error(
        "the output directory {} does not exist\nhelp: create it first (mkdir -p {}), or give -o a path in an existing directory",
        dir.display(), dir.display()
    )]
    NoOutputDir { dir: PathBuf },
    #[error("{} is not a directory: the output file cannot be written in it", dir.display())]
    OutputDirNotADir { dir: PathBuf },
    #[error("--size is for ext4 images only; {} is written as {format}", out.display())]
    SizeNotExt4 { out: PathBuf, format: &'static str },
    #[error(
        "{}: a component of this path is a symlink, or was swapped for one while it was opened\nhelp: give the tree's real path (realpath {}), and export a tree no one else can change",
        path.display(), path.display()
    )]
    SymlinkInPath { path: PathBuf },
    #[error(
        "{} belongs to uid {owner}, not to uid {me} that exports it: its owner could change it while it is read, and have files only uid {me} may read put into the image\nhelp: export a tree of your own (made by zchroot create, or a copy made while no one else can change it), or have its owner export it",
        path.display()
    )]
    NotYours { path: PathBuf, owner: u32, me: u32 },
    #[error(
        "{} kept changing while it was read (a file became a directory or a symlink and back)\nhelp: stop what is changing the tree, and export again",
        path.display()
    )]
    Changing { path: PathBuf },
    #[error(
        "the root holds {needed_mib} MiB of files: an image of {size_mib} MiB cannot hold them\nhelp: give a larger --size, or leave it out to size the image to the root"
    )]
    SizeTooSmall { size_mib: u64, needed_mib: u64 },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ExportError + '_ {
    move |source| ExportError::Io {
        path: path.to_owned(),
        source,
    }
}

/// The format and compression a file name asks for, as mmdebstrap reads
/// it: `.tar`, `.tar.gz`/`.tgz`, `.tar.xz`/`.txz`, `.tar.zst`/`.tzst`,
/// `.squashfs`/`.sqfs`, `.ext4`/`.img`. `None` for any other name.
pub fn format_of_name(out: &Path) -> Option<(ExportFormat, Compression)> {
    let name = out.file_name()?.to_str()?.to_ascii_lowercase();
    let ends = |exts: &[&str]| exts.iter().any(|e| name.ends_with(e));
    Some(if ends(&[".tar"]) {
        (ExportFormat::Tar, Compression::Plain)
    } else if ends(&[".tar.gz", ".tgz"]) {
        (ExportFormat::Tar, Compression::Gzip)
    } else if ends(&[".tar.xz", ".txz"]) {
        (ExportFormat::Tar, Compression::Xz)
    } else if ends(&[".tar.zst", ".tzst"]) {
        (ExportFormat::Tar, Compression::Zstd)
    } else if ends(&[".squashfs", ".sqfs"]) {
        (ExportFormat::Squashfs, Compression::Plain)
    } else if ends(&[".ext4", ".img"]) {
        (ExportFormat::Ext4, Compression::Plain)
    } else {
        return None;
    })
}

/// The export of `out`: `format` (from `--format`) wins over the name; a
/// tarball is compressed as its name says whichever way its format was
/// chosen; a name that says nothing is a plain tarball.
pub fn plan(
    format: Option<ExportFormat>,
    size_kib: Option<u64>,
    include_apt_lists: bool,
    out: &Path,
) -> Result<ExportPlan, ExportError> {
    let named = format_of_name(out);
    let format = format
        .or(named.map(|(f, _)| f))
        .unwrap_or(ExportFormat::Tar);
    let compression = match (format, named) {
        (ExportFormat::Tar, Some((ExportFormat::Tar, c))) => c,
        _ => Compression::Plain,
    };
    if size_kib.is_some() && format != ExportFormat::Ext4 {
        return Err(ExportError::SizeNotExt4 {
            out: out.to_owned(),
            format: match format {
                ExportFormat::Tar => "a tarball",
                _ => "a squashfs image",
            },
        });
    }
    Ok(ExportPlan {
        format,
        compression,
        size_kib,
        include_apt_lists,
    })
}

/// `--size`: a number of bytes with an optional binary suffix (`K`, `M`,
/// `G`, `T`, as mke2fs reads them; `2G`, `512M`), in KiB. Made for clap.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let (digits, unit) = match t.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => t.split_at(i),
        None => (t, ""),
    };
    let shift = match unit.to_ascii_uppercase().trim_end_matches(['B', 'I']) {
        "" => 0,
        "K" => 10,
        "M" => 20,
        "G" => 30,
        "T" => 40,
        _ => {
            return Err(format!(
                "'{s}': a size is a number with K, M, G or T (e.g. 2G)"
            ))
        }
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("'{s}': a size is a number with K, M, G or T (e.g. 2G)"))?;
    let bytes = n
        .checked_mul(1u64 << shift)
        .ok_or_else(|| format!("'{s}' is too large"))?;
    if bytes < 1 << 20 {
        return Err(format!(
            "'{s}' is too small for an ext4 image (at least 1M)"
        ));
    }
    Ok(bytes / 1024)
}

/// The output's directory must exist (nothing is made for it): its own
/// error, before any root is read.
pub fn check_output_dir(out: &Path) -> Result<(), ExportError> {
    let dir = match out.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => return Ok(()),
    };
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(ExportError::OutputDirNotADir {
            dir: dir.to_owned(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(ExportError::NoOutputDir {
            dir: dir.to_owned(),
        }),
        Err(e) => Err(ExportError::Io {
            path: dir.to_owned(),
            source: e,
        }),
    }
}

/// Whether the entry `rel` (a directory when `is_dir`) is apt's lists or
/// download cache, left out by default as mmdebstrap leaves them: the
/// files under `var/lib/apt/lists` and `var/cache/apt/archives`, and
/// `var/cache/apt/*.bin`. The directories stay, so apt works at once.
pub fn is_apt_cache(rel: &Path, is_dir: bool) -> bool {
    if is_dir {
        return false;
    }
    let under = |dir: &str| rel.starts_with(dir) && rel != Path::new(dir);
    under("var/lib/apt/lists")
        || under("var/cache/apt/archives")
        || (rel.parent() == Some(Path::new("var/cache/apt"))
            && rel.extension().is_some_and(|e| e == "bin"))
}

/// The tar writer of [`write_tar`].
struct TarVisit<'t, W: Write> {
    tree: &'t Tree,
    b: tar::Builder<W>,
    /// Files with more than one link, by device and inode: the name the
    /// first was archived under.
    seen: HashMap<(u64, u64), PathBuf>,
}

impl<W: Write> Visit for TarVisit<'_, W> {
    fn entry(&mut self, rel: &Path, e: &Entry) -> Result<(), ExportError> {
        let m = &e.st;
        let mut h = tar::Header::new_gnu();
        h.set_mode(m.st_mode & 0o7777);
        h.set_uid(m.st_uid as u64);
        h.set_gid(m.st_gid as u64);
        h.set_mtime(m.st_mtime.max(0) as u64);
        h.set_size(0);
        let err = |e: std::io::Error| ExportError::Io {
            path: self.tree.path.join(rel),
            source: e,
        };
        let name: OsString = match &e.node {
            _ if rel.as_os_str().is_empty() => ".".into(),
            Node::Dir(_) => {
                let mut n = rel.as_os_str().to_owned();
                n.push("/");
                n
            }
            _ => rel.as_os_str().to_owned(),
        };
        match &e.node {
            Node::Dir(_) => {
                h.set_entry_type(tar::EntryType::Directory);
                self.b
                    .append_data(&mut h, &name, std::io::empty())
                    .map_err(err)
            }
            Node::Symlink(target) => {
                h.set_entry_type(tar::EntryType::Symlink);
                self.b.append_link(&mut h, &name, target).map_err(err)
            }
            Node::File(f) => {
                let key = (m.st_dev, m.st_ino);
                if m.st_nlink > 1 {
                    if let Some(first) = self.seen.get(&key) {
                        h.set_entry_type(tar::EntryType::Link);
                        return self.b.append_link(&mut h, &name, first).map_err(err);
                    }
                    self.seen.insert(key, rel.to_owned());
                }
                let size = m.st_size.max(0) as u64;
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(size);
                self.b
                    .append_data(&mut h, &name, exactly(f, size))
                    .map_err(err)
            }
            Node::Special => {
                let kind = match m.st_mode & libc::S_IFMT {
                    libc::S_IFCHR => tar::EntryType::Char,
                    libc::S_IFBLK => tar::EntryType::Block,
                    libc::S_IFIFO => tar::EntryType::Fifo,
                    _ => return Ok(()), // sockets are not archived
                };
                h.set_entry_type(kind);
                h.set_device_major(libc::major(m.st_rdev)).map_err(err)?;
                h.set_device_minor(libc::minor(m.st_rdev)).map_err(err)?;
                self.b
                    .append_data(&mut h, &name, std::io::empty())
                    .map_err(err)
            }
        }
    }
}

/// Writes `tree` as a tar stream (GNU format, owners numeric, hard links
/// kept, device nodes as they are) into `out`; apt's lists and cache
/// ([`is_apt_cache`]) only when `include_apt_lists`. Each header is what
/// `fstat` says of the descriptor whose bytes follow it, and exactly that
/// many bytes follow.
pub fn write_tar(tree: &Tree, out: impl Write, include_apt_lists: bool) -> Result<(), ExportError> {
    let mut b = tar::Builder::new(out);
    b.mode(tar::HeaderMode::Complete);
    b.follow_symlinks(false);
    let mut v = TarVisit {
        tree,
        b,
        seen: HashMap::new(),
    };
    walk_tree(tree, include_apt_lists, &mut v)?;
    v.b.into_inner()
        .and_then(|mut w| w.flush())
        .map_err(io(&tree.path))
}
/// The size in KiB of an ext4 image for a tree of `bytes` and `inodes`:
/// room for the data, metadata and some growth.
pub fn ext4_size_kib(bytes: u64, inodes: u64) -> u64 {
    let data = bytes / 1024 + inodes * 4; // a block's tail per file, roughly
    (data + data / 4 + 64 * 1024).div_ceil(1024) * 1024
}

/// The mke2fs command line that makes `image` from the directory `root`
/// (zchroot's private copy of the tree).
pub fn mke2fs_argv(root: &Path, image: &Path, size_kib: u64) -> Vec<String> {
    vec![
        "mke2fs".into(),
        "-q".into(),
        "-F".into(),
        "-t".into(),
        "ext4".into(),
        "-L".into(),
        "zchroot".into(),
        "-d".into(),
        root.display().to_string(),
        image.display().to_string(),
        format!("{size_kib}k"),
    ]
}

/// The tar2sqfs command line that makes `image` from a tar on stdin:
/// quiet, time stamps kept, a record it cannot read is an error.
pub fn tar2sqfs_argv(image: &Path) -> Vec<String> {
    ["tar2sqfs", "--quiet", "--force", "--no-skip"]
        .into_iter()
        .map(String::from)
        .chain([image.display().to_string()])
        .collect()
}

/// The path mke2fs is given for the image: the exclusively created
/// temporary file, inherited as this descriptor (never a name in the
/// output's directory that someone else could swap).
const IMAGE_FD: i32 = 3;

/// A failed tool's status and the end of what it said.
fn failure(o: &std::process::Output) -> (String, String) {
    (
        o.status.to_string(),
        String::from_utf8_lossy(&o.stderr).trim().to_string(),
    )
}

/// A `Write` that hands chunks to another thread (which reads them with
/// [`ChunkReader`]): the zstd encoder reads its input, the tar writer writes.
struct ChunkWriter(std::sync::mpsc::SyncSender<Vec<u8>>);

impl Write for ChunkWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .send(buf.to_vec())
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::BrokenPipe))?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

struct ChunkReader {
    rx: std::sync::mpsc::Receiver<Vec<u8>>,
    chunk: Vec<u8>,
    at: usize,
}

impl std::io::Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.at == self.chunk.len() {
            match self.rx.recv() {
                Ok(c) => (self.chunk, self.at) = (c, 0),
                Err(_) => return Ok(0), // the writer is done
            }
        }
        let n = buf.len().min(self.chunk.len() - self.at);
        buf[..n].copy_from_slice(&self.chunk[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// A `Write` that keeps its first error instead of returning it (the zstd
/// encoder panics on one); checked when the encoder is done.
struct KeepError<W> {
    inner: W,
    error: Option<std::io::Error>,
}

impl<W: Write> Write for KeepError<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.error.is_none() {
            if let Err(e) = self.inner.write_all(buf) {
                self.error = Some(e);
            }
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        if self.error.is_none() {
            if let Err(e) = self.inner.flush() {
                self.error = Some(e);
            }
        }
        Ok(())
    }
}

/// Writes the tarball of `tree` into `out`, compressed with `c`.
pub fn write_tarball(
    tree: &Tree,
    out: &mut dyn Write,
    c: Compression,
    include_apt_lists: bool,
) -> Result<(), ExportError> {
    let err = |e: std::io::Error| ExportError::Io {
        path: tree.path.clone(),
        source: e,
    };
    match c {
        Compression::Plain => write_tar(tree, out, include_apt_lists),
        Compression::Gzip => {
            let mut e = flate2::write::GzEncoder::new(out, flate2::Compression::default());
            write_tar(tree, &mut e, include_apt_lists)?;
            e.finish().map(drop).map_err(err)
        }
        Compression::Xz => {
            let mut e = liblzma::write::XzEncoder::new(out, 6);
            write_tar(tree, &mut e, include_apt_lists)?;
            e.finish().map(drop).map_err(err)
        }
        Compression::Zstd => {
            let (tx, rx) = std::sync::mpsc::sync_channel(16);
            let mut sink = KeepError {
                inner: out,
                error: None,
            };
            let tarred = std::thread::scope(|s| {
                let tarrer = s.spawn(move || write_tar(tree, ChunkWriter(tx), include_apt_lists));
                let reader = ChunkReader {
                    rx,
                    chunk: Vec::new(),
                    at: 0,
                };
                // Reads until the tar writer is done (or has failed).
                let level = ruzstd::encoding::CompressionLevel::Fastest;
                ruzstd::encoding::compress(reader, &mut sink, level);
                tarrer
                    .join()
                    .map_err(|_| ExportError::Zstd("the tar writer stopped".into()))?
            });
            tarred?;
            match sink.error {
                Some(e) => Err(err(e)),
                None => Ok(()),
            }
        }
    }
}

/// Makes the squashfs image at `image` from the tar stream of `tree`.
fn write_squashfs(
    tree: &Tree,
    image: BorrowedFd,
    include_apt_lists: bool,
) -> Result<(), ExportError> {
    let argv = tar2sqfs_argv(&PathBuf::from(format!("/dev/fd/{IMAGE_FD}")));
    let mut cmd = std::process::Command::new(&argv[0]);
    cmd.args(&argv[1..])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    crate::sys::dup2_in_child(&mut cmd, image.as_raw_fd(), IMAGE_FD);
    let mut child = cmd.spawn().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => ExportError::NoTar2sqfs,
        _ => ExportError::Io {
            path: PathBuf::from("tar2sqfs"),
            source: e,
        },
    })?;
    let stdin = child.stdin.take().expect("piped");
    let tarred = write_tar(tree, std::io::BufWriter::new(stdin), include_apt_lists);
    let o = child
        .wait_with_output()
        .map_err(io(Path::new("tar2sqfs")))?;
    if !o.status.success() {
        let (status, stderr) = failure(&o);
        return Err(ExportError::Tar2sqfs { status, stderr });
    }
    tarred
}

/// The directory mke2fs is given: zchroot's private copy of the tree,
/// inherited as this descriptor.
const SOURCE_FD: i32 = 4;

/// A copy of `fd` numbered above [`SOURCE_FD`], so that neither of the
/// child's `dup2`s to [`IMAGE_FD`] and [`SOURCE_FD`] overwrites the other's
/// source.
fn high_fd(fd: BorrowedFd) -> std::io::Result<OwnedFd> {
    let mut low = Vec::new();
    loop {
        let c = fd.try_clone_to_owned()?;
        if c.as_raw_fd() > SOURCE_FD {
            return Ok(c);
        }
        low.push(c); // held until a high one is had
    }
}

/// Makes the ext4 image at `image` from `tree` (of `size_kib`, else as
/// large as the tree needs): the tree is copied through the walk's
/// descriptors into a [`Snapshot`] (apt's lists and cache left out unless
/// `include_apt_lists`), and mke2fs reads the copy, which only this process
/// can change.
fn write_ext4(
    tree: &Tree,
    out: &Path,
    image: BorrowedFd,
    size_kib: Option<u64>,
    include_apt_lists: bool,
) -> Result<(), ExportError> {
    let too_small = |k: u64, bytes: u64| ExportError::SizeTooSmall {
        size_mib: k / 1024,
        needed_mib: bytes.div_ceil(1 << 20),
    };
    if let Some(k) = size_kib {
        // Said before anything is copied.
        let mut c = Count::default();
        walk_tree(tree, include_apt_lists, &mut c)?;
        if k < c.bytes / 1024 {
            return Err(too_small(k, c.bytes));
        }
    }
    let snap = Snapshot::new(out)?;
    let mut v = CopyVisit::new(&snap);
    walk_tree(tree, include_apt_lists, &mut v)?;
    let Count { bytes, entries } = v.count();
    let size_kib = match size_kib {
        Some(k) if k < bytes / 1024 => return Err(too_small(k, bytes)),
        Some(k) => k,
        None => ext4_size_kib(bytes, entries),
    };
    let argv = mke2fs_argv(
        Path::new(&format!("/dev/fd/{SOURCE_FD}")),
        Path::new(&format!("/dev/fd/{IMAGE_FD}")),
        size_kib,
    );
    let image = high_fd(image).map_err(io(out))?;
    let source = high_fd(snap.root.as_fd()).map_err(io(&snap.path))?;
    let mut cmd = std::process::Command::new(&argv[0]);
    cmd.args(&argv[1..]).current_dir("/");
    crate::sys::dup2_in_child(&mut cmd, image.as_raw_fd(), IMAGE_FD);
    crate::sys::dup2_in_child(&mut cmd, source.as_raw_fd(), SOURCE_FD);
    let o = cmd.output().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => ExportError::NoMke2fs,
        _ => ExportError::Io {
            path: PathBuf::from("mke2fs"),
            source: e,
        },
    })?;
    if !o.status.success() {
        let (status, stderr) = failure(&o);
        return Err(ExportError::Mke2fs { status, stderr });
    }
    Ok(())
}

/// Writes the tree at `root` to `out` as `plan` says. Runs where the owners
/// read as they should be written (inside the user namespace when
/// rootless). `root` is the tree's real path ([`Tree::open`]); a tree that
/// belongs to someone else is refused ([`Tree::check_owner`]). The output
/// is written to a file created exclusively under a random name next to
/// `out` and renamed over `out` when complete, so nothing planted in a
/// shared directory is followed or overwritten, and a failed export leaves
/// nothing.
pub fn export(root: &Path, plan: &ExportPlan, out: &Path) -> Result<(), ExportError> {
    check_output_dir(out)?;
    let tree = Tree::open(root)?;
    tree.check_owner()?;
    let mut tmp = AtomicFile::new(out, 0o644).map_err(io(out))?;
    let apt = plan.include_apt_lists;
    match plan.format {
        ExportFormat::Tar => {
            let mut w = std::io::BufWriter::new(&mut tmp);
            write_tarball(&tree, &mut w, plan.compression, apt)?;
            w.flush().map_err(io(out))?;
        }
        ExportFormat::Squashfs => write_squashfs(&tree, tmp.file().as_fd(), apt)?,
        ExportFormat::Ext4 => write_ext4(&tree, out, tmp.file().as_fd(), plan.size_kib, apt)?,
    }
    tmp.commit().map_err(io(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tree_is_archived_with_links_and_owners() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path().join("root");
        std::fs::create_dir_all(r.join("etc/sub")).unwrap();
        std::fs::write(r.join("etc/a"), "hello").unwrap();
        std::fs::hard_link(r.join("etc/a"), r.join("etc/sub/b")).unwrap();
        std::os::unix::fs::symlink("../a", r.join("etc/sub/c")).unwrap();
        assert_eq!(
            walk(&r).unwrap(),
            ["etc", "etc/a", "etc/sub", "etc/sub/b", "etc/sub/c"].map(PathBuf::from)
        );
        let mut out = Vec::new();
        write_tar(&Tree::open(&r).unwrap(), &mut out, true).unwrap();
        let mut a = tar::Archive::new(&out[..]);
        let uid = nix::unistd::geteuid().as_raw() as u64;
        let mut seen = Vec::new();
        for e in a.entries().unwrap() {
            let e = e.unwrap();
            let h = e.header();
            assert_eq!(h.uid().unwrap(), uid);
            seen.push((
                e.path().unwrap().display().to_string(),
                h.entry_type(),
                e.link_name().unwrap().map(|l| l.display().to_string()),
            ));
        }
        assert_eq!(seen[0].0, ".");
        assert_eq!(
            seen[1..],
            [
                ("etc/".into(), tar::EntryType::Directory, None),
                ("etc/a".into(), tar::EntryType::Regular, None),
                ("etc/sub/".into(), tar::EntryType::Directory, None),
                (
                    "etc/sub/b".into(),
                    tar::EntryType::Link,
                    Some("etc/a".into())
                ),
                (
                    "etc/sub/c".into(),
                    tar::EntryType::Symlink,
                    Some("../a".into())
                ),
            ]
        );
    }

    /// A `Write` that calls `hook` once, as soon as what has been written
    /// holds `at` (the tar writer writes each entry's header when it gets
    /// to the entry, before the next is opened or its data read).
    struct Hook<F: FnMut()> {
        out: Vec<u8>,
        at: &'static [u8],
        hook: Option<F>,
    }

    impl<F: FnMut()> Write for Hook<F> {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.out.extend_from_slice(buf);
            if self.out.windows(self.at.len()).any(|w| w == self.at) {
                if let Some(mut f) = self.hook.take() {
                    f();
                }
            }
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn listing(tar: &[u8]) -> Vec<(String, tar::EntryType, Vec<u8>)> {
        use std::io::Read;
        tar::Archive::new(tar)
            .entries()
            .unwrap()
            .map(|e| {
                let mut e = e.unwrap();
                let mut data = Vec::new();
                e.read_to_end(&mut data).unwrap();
                let name = e.path().unwrap().display().to_string();
                (name, e.header().entry_type(), data)
            })
            .collect()
    }

    #[test]
    fn a_directory_swapped_for_a_symlink_mid_walk_is_not_followed() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path().join("root");
        let secret = d.path().join("secret");
        for dir in [r.join("a"), r.join("b"), secret.clone()] {
            std::fs::create_dir_all(dir).unwrap();
        }
        std::fs::write(r.join("a/x"), "x").unwrap();
        std::fs::write(r.join("b/f"), "mine").unwrap();
        std::fs::write(secret.join("f"), "SECRET").unwrap();
        let tree = Tree::open(&r).unwrap();
        // While a/x is written, after the top's names were read and
        // before b is reached, b becomes a symlink to the secret directory.
        let mut w = Hook {
            out: Vec::new(),
            at: b"a/x",
            hook: Some(|| {
                std::fs::rename(r.join("b"), d.path().join("b-moved")).unwrap();
                std::os::unix::fs::symlink(&secret, r.join("b")).unwrap();
            }),
        };
        write_tar(&tree, &mut w, true).unwrap();
        assert!(w.hook.is_none(), "the swap was made");
        let got = listing(&w.out);
        let names: Vec<_> = got.iter().map(|(n, t, _)| (n.as_str(), *t)).collect();
        assert_eq!(
            names,
            [
                (".", tar::EntryType::Directory),
                ("a/", tar::EntryType::Directory),
                ("a/x", tar::EntryType::Regular),
                ("b", tar::EntryType::Symlink),
            ]
        );
        assert!(
            !w.out.windows(6).any(|x| x == b"SECRET"),
            "the secret is in the tar"
        );
    }

    #[test]
    fn a_file_that_grows_while_it_is_read_adds_no_entries() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path().join("root");
        std::fs::create_dir(&r).unwrap();
        std::fs::write(r.join("grow"), [b'g'; 512]).unwrap();
        let tree = Tree::open(&r).unwrap();
        // Bytes past the size in the header would be read as a header.
        let mut planted = tar::Header::new_gnu();
        planted.set_path("planted").unwrap();
        planted.set_size(0);
        planted.set_entry_type(tar::EntryType::Regular);
        planted.set_cksum();
        let mut w = Hook {
            out: Vec::new(),
            at: b"grow",
            hook: Some(|| {
                use std::io::Write;
                let mut f = std::fs::OpenOptions::new()
                    .append(true)
                    .open(r.join("grow"))
                    .unwrap();
                f.write_all(planted.as_bytes()).unwrap();
                f.write_all(&[0; 1024]).unwrap();
            }),
        };
        write_tar(&tree, &mut w, true).unwrap();
        assert!(w.hook.is_none(), "the file grew");
        let got = listing(&w.out);
        assert_eq!(
            got.len(),
            2,
            "{:?}",
            got.iter().map(|g| &g.0).collect::<Vec<_>>()
        );
        assert_eq!(got[1].0, "grow");
        assert_eq!(got[1].2, [b'g'; 512]);
    }

    #[test]
    fn a_tree_is_opened_through_no_symlink() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("real/sub")).unwrap();
        std::os::unix::fs::symlink("real", d.path().join("link")).unwrap();
        for p in ["link", "link/sub"] {
            let e = Tree::open(&d.path().join(p)).unwrap_err();
            assert!(matches!(e, ExportError::SymlinkInPath { .. }), "{p}: {e}");
            assert!(
                e.to_string().contains("\nhelp: give the tree's real path"),
                "{e}"
            );
        }
        let t = Tree::open(&d.path().join("real/sub")).unwrap();
        t.check_owner().unwrap();
    }

    #[test]
    fn the_file_name_says_the_format_unless_format_is_given() {
        use Compression::{Gzip, Plain, Xz, Zstd};
        use ExportFormat::*;
        let p = |f: Option<ExportFormat>, name: &str| {
            let p = plan(f, None, false, Path::new(name)).unwrap();
            (p.format, p.compression)
        };
        assert_eq!(p(None, "/o/r.tar"), (Tar, Plain));
        assert_eq!(p(None, "r.tar.gz"), (Tar, Gzip));
        assert_eq!(p(None, "r.TGZ"), (Tar, Gzip));
        assert_eq!(p(None, "r.tar.xz"), (Tar, Xz));
        assert_eq!(p(None, "r.tar.zst"), (Tar, Zstd));
        assert_eq!(p(None, "r.sqfs"), (Squashfs, Plain));
        assert_eq!(p(None, "r.squashfs"), (Squashfs, Plain));
        assert_eq!(p(None, "r.img"), (Ext4, Plain));
        assert_eq!(p(None, "r.ext4"), (Ext4, Plain));
        assert_eq!(p(None, "rootfs"), (Tar, Plain));
        // --format wins; a tarball is still compressed as its name says.
        assert_eq!(p(Some(Ext4), "r.tar.gz"), (Ext4, Plain));
        assert_eq!(p(Some(Squashfs), "r.tar"), (Squashfs, Plain));
        assert_eq!(p(Some(Tar), "r.tar.zst"), (Tar, Zstd));
        assert_eq!(p(Some(Tar), "r.img"), (Tar, Plain));
        // --size is for ext4 only.
        assert!(plan(None, Some(1024), false, Path::new("r.img")).is_ok());
        let e = plan(None, Some(1024), false, Path::new("r.tar.gz")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "--size is for ext4 images only; r.tar.gz is written as a tarball"
        );
    }

    #[test]
    fn sizes_are_read_as_mke2fs_reads_them() {
        assert_eq!(parse_size("2G"), Ok(2 << 20));
        assert_eq!(parse_size("512M"), Ok(512 << 10));
        assert_eq!(parse_size("512MiB"), Ok(512 << 10));
        assert_eq!(parse_size("1048576"), Ok(1024));
        assert_eq!(parse_size("1t"), Ok(1 << 30));
        for bad in ["", "2X", "G", "-1G", "1.5G"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
        assert!(parse_size("512K").unwrap_err().contains("too small"));
        assert!(parse_size("99999999999T")
            .unwrap_err()
            .contains("too large"));
    }

    #[test]
    fn apt_lists_and_cache_are_files_under_their_directories() {
        let f = |p: &str, dir: bool| is_apt_cache(Path::new(p), dir);
        assert!(f(
            "var/lib/apt/lists/deb.debian.org_debian_dists_trixie_InRelease",
            false
        ));
        assert!(f("var/lib/apt/lists/lock", false));
        assert!(f("var/cache/apt/archives/hello_2.10_arm64.deb", false));
        assert!(f("var/cache/apt/pkgcache.bin", false));
        assert!(f("var/cache/apt/srcpkgcache.bin", false));
        assert!(!f("var/lib/apt/lists", true));
        assert!(!f("var/lib/apt/lists/partial", true));
        assert!(!f("var/cache/apt/archives/partial", true));
        assert!(!f("var/lib/apt/extended_states", false));
        assert!(!f("var/cache/apt/other", false));
        assert!(!f("etc/apt/sources.list.d/debian.sources", false));
    }

    #[test]
    fn a_missing_output_directory_has_its_own_error() {
        let d = tempfile::tempdir().unwrap();
        let e = check_output_dir(&d.path().join("nope/r.tar")).unwrap_err();
        assert!(matches!(e, ExportError::NoOutputDir { .. }));
        assert!(
            e.to_string().contains("help: create it first (mkdir -p "),
            "{e}"
        );
        std::fs::write(d.path().join("file"), "").unwrap();
        let e = check_output_dir(&d.path().join("file/r.tar")).unwrap_err();
        assert!(matches!(e, ExportError::OutputDirNotADir { .. }), "{e}");
        assert!(check_output_dir(&d.path().join("r.tar")).is_ok());
        assert!(check_output_dir(Path::new("r.tar")).is_ok());
    }

    #[test]
    fn each_compression_reads_back_as_the_same_tar() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path().join("root");
        std::fs::create_dir_all(r.join("etc")).unwrap();
        std::fs::create_dir_all(r.join("var/lib/apt/lists/partial")).unwrap();
        std::fs::write(r.join("etc/a"), "hello ".repeat(10_000)).unwrap();
        std::fs::write(r.join("var/lib/apt/lists/x_Packages"), "P").unwrap();
        let mut plain = Vec::new();
        let tree = Tree::open(&r).unwrap();
        write_tar(&tree, &mut plain, false).unwrap();
        let names = |t: &[u8]| -> Vec<String> {
            tar::Archive::new(t)
                .entries()
                .unwrap()
                .map(|e| e.unwrap().path().unwrap().display().to_string())
                .collect()
        };
        assert_eq!(
            names(&plain),
            [
                ".",
                "etc/",
                "etc/a",
                "var/",
                "var/lib/",
                "var/lib/apt/",
                "var/lib/apt/lists/",
                "var/lib/apt/lists/partial/"
            ]
        );
        for c in [Compression::Gzip, Compression::Xz, Compression::Zstd] {
            let mut out = Vec::new();
            write_tarball(&tree, &mut out, c, false).unwrap();
            assert!(out.len() < plain.len() / 4, "{c:?} compresses");
            let mut back = Vec::new();
            use std::io::Read;
            match c {
                Compression::Gzip => flate2::read::GzDecoder::new(&out[..]).read_to_end(&mut back),
                Compression::Xz => liblzma::read::XzDecoder::new(&out[..]).read_to_end(&mut back),
                _ => ruzstd::decoding::StreamingDecoder::new(&out[..])
                    .unwrap()
                    .read_to_end(&mut back),
            }
            .unwrap();
            assert_eq!(back, plain, "{c:?}");
        }
        let mut with = Vec::new();
        write_tarball(&tree, &mut with, Compression::Plain, true).unwrap();
        assert!(names(&with).contains(&"var/lib/apt/lists/x_Packages".to_string()));
    }

    #[test]
    fn the_ext4_command_has_room_and_no_loop_device() {
        let a = mke2fs_argv(Path::new("/r"), Path::new("/o.img"), 1024);
        assert_eq!(a[..5], ["mke2fs", "-q", "-F", "-t", "ext4"]);
        assert!(a.windows(2).any(|w| w == ["-d", "/r"]));
        assert_eq!(a.last().unwrap(), "1024k");
        assert!(ext4_size_kib(100 << 20, 1000) > 100 * 1024);
        assert_eq!(ext4_size_kib(0, 0) % 1024, 0);
    }
}
