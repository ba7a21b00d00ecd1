//! `zchroot export`: a root written out as a tarball or an ext4 image,
//! ownership as inside the root. No mounting and no loop devices: the
//! tarball is written here, the image by e2fsprogs' `mke2fs -d`. For a
//! rootless user both run inside the user namespace (a sandbox job), where
//! the files' owners read as they are inside the root and every file can be
//! read.

use std::collections::HashMap;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::atomic::AtomicFile;

/// What `zchroot export` writes: one type for the command line (clap
/// refuses other values and lists these) and for the sandbox job (serde).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum ExportFormat {
    /// A tarball.
    Tar,
    /// An ext4 image (needs e2fsprogs' mke2fs).
    Ext4,
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
        "mke2fs is not installed: an ext4 image needs it\nhelp: sudo apt-get install e2fsprogs"
    )]
    NoMke2fs,
    #[error("mke2fs failed ({status}): {stderr}")]
    Mke2fs { status: String, stderr: String },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ExportError + '_ {
    move |source| ExportError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Every path under `root` (relative, sorted, parents first), not crossing
/// into other filesystems (a mount inside the root is left out).
pub fn walk(root: &Path) -> Result<Vec<PathBuf>, ExportError> {
    let dev = std::fs::symlink_metadata(root).map_err(io(root))?.dev();
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let dir = root.join(&rel);
        let mut names: Vec<_> = std::fs::read_dir(&dir)
            .map_err(io(&dir))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<Result<_, _>>()
            .map_err(io(&dir))?;
        names.sort();
        let mut subdirs = Vec::new();
        for n in names {
            let r = rel.join(&n);
            let m = std::fs::symlink_metadata(root.join(&r)).map_err(io(&root.join(&r)))?;
            if m.dev() != dev {
                continue;
            }
            if m.is_dir() {
                subdirs.push(r.clone());
            }
            out.push(r);
        }
        // Depth-first, in name order.
        stack.extend(subdirs.into_iter().rev());
    }
    out.sort();
    Ok(out)
}

/// Writes the tree at `root` as a tar stream (GNU format, owners numeric,
/// hard links kept, device nodes as they are) into `out`.
pub fn write_tar(root: &Path, out: impl Write) -> Result<(), ExportError> {
    let mut b = tar::Builder::new(out);
    b.mode(tar::HeaderMode::Complete);
    b.follow_symlinks(false);
    let mut seen: HashMap<(u64, u64), PathBuf> = HashMap::new();
    let paths = walk(root)?;
    let top = std::fs::symlink_metadata(root).map_err(io(root))?;
    let mut entries = vec![(PathBuf::from("."), top)];
    for p in paths {
        let full = root.join(&p);
        let m = std::fs::symlink_metadata(&full).map_err(io(&full))?;
        entries.push((p, m));
    }
    for (rel, m) in entries {
        let full = root.join(&rel);
        let mut h = tar::Header::new_gnu();
        h.set_mode(m.mode() & 0o7777);
        h.set_uid(m.uid() as u64);
        h.set_gid(m.gid() as u64);
        h.set_mtime(m.mtime().max(0) as u64);
        h.set_size(0);
        let ft = m.file_type();
        let name = if ft.is_dir() && rel != Path::new(".") {
            format!("{}/", rel.display())
        } else {
            rel.display().to_string()
        };
        let err = |e: std::io::Error| ExportError::Io {
            path: full.clone(),
            source: e,
        };
        if ft.is_file() && m.nlink() > 1 {
            if let Some(first) = seen.get(&(m.dev(), m.ino())) {
                h.set_entry_type(tar::EntryType::Link);
                b.append_link(&mut h, &name, first).map_err(err)?;
                continue;
            }
            seen.insert((m.dev(), m.ino()), rel.clone());
        }
        if ft.is_dir() {
            h.set_entry_type(tar::EntryType::Directory);
            b.append_data(&mut h, &name, std::io::empty())
                .map_err(err)?;
        } else if ft.is_symlink() {
            let target = std::fs::read_link(&full).map_err(err)?;
            h.set_entry_type(tar::EntryType::Symlink);
            b.append_link(&mut h, &name, &target).map_err(err)?;
        } else if ft.is_file() {
            h.set_entry_type(tar::EntryType::Regular);
            h.set_size(m.len());
            let f = std::fs::File::open(&full).map_err(err)?;
            b.append_data(&mut h, &name, f).map_err(err)?;
        } else {
            let kind = if ft.is_char_device() {
                tar::EntryType::Char
            } else if ft.is_block_device() {
                tar::EntryType::Block
            } else if ft.is_fifo() {
                tar::EntryType::Fifo
            } else {
                continue; // sockets are not archived
            };
            h.set_entry_type(kind);
            let rdev = m.rdev();
            h.set_device_major(libc::major(rdev)).map_err(err)?;
            h.set_device_minor(libc::minor(rdev)).map_err(err)?;
            b.append_data(&mut h, &name, std::io::empty())
                .map_err(err)?;
        }
    }
    b.into_inner().and_then(|mut w| w.flush()).map_err(io(root))
}

/// The size in KiB of an ext4 image for a tree of `bytes` and `inodes`:
/// room for the data, metadata and some growth.
pub fn ext4_size_kib(bytes: u64, inodes: u64) -> u64 {
    let data = bytes / 1024 + inodes * 4; // a block's tail per file, roughly
    (data + data / 4 + 64 * 1024).div_ceil(1024) * 1024
}

/// The mke2fs command line that makes `image` from `root`.
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

/// The path mke2fs is given for the image: the exclusively created
/// temporary file, inherited as this descriptor (never a name in the
/// output's directory that someone else could swap).
const IMAGE_FD: i32 = 3;

/// Writes `root` to `out` in `format`. Runs where the owners read as they
/// should be written (inside the user namespace when rootless). The output
/// is written to a file created exclusively under a random name next to
/// `out` and renamed over `out` when complete, so nothing planted in a
/// shared directory is followed or overwritten.
pub fn export(root: &Path, format: ExportFormat, out: &Path) -> Result<(), ExportError> {
    let mut tmp = AtomicFile::new(out, 0o644).map_err(io(out))?;
    match format {
        ExportFormat::Tar => {
            let mut w = std::io::BufWriter::new(&mut tmp);
            write_tar(root, &mut w)?;
            w.flush().map_err(io(out))?;
        }
        ExportFormat::Ext4 => {
            let paths = walk(root)?;
            let mut bytes = 0;
            for p in &paths {
                if let Ok(m) = std::fs::symlink_metadata(root.join(p)) {
                    bytes += m.len();
                }
            }
            let image = PathBuf::from(format!("/dev/fd/{IMAGE_FD}"));
            let argv = mke2fs_argv(root, &image, ext4_size_kib(bytes, paths.len() as u64));
            let mut cmd = std::process::Command::new(&argv[0]);
            cmd.args(&argv[1..]);
            crate::sys::dup2_in_child(&mut cmd, tmp.file().as_raw_fd(), IMAGE_FD);
            let o = cmd.output().map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => ExportError::NoMke2fs,
                _ => ExportError::Io {
                    path: PathBuf::from("mke2fs"),
                    source: e,
                },
            })?;
            if !o.status.success() {
                return Err(ExportError::Mke2fs {
                    status: o.status.to_string(),
                    stderr: String::from_utf8_lossy(&o.stderr).trim().to_string(),
                });
            }
        }
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
        write_tar(&r, &mut out).unwrap();
        let mut a = tar::Archive::new(&out[..]);
        let uid = std::fs::metadata(&r).unwrap().uid() as u64;
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
