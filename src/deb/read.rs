//! Reading a .deb: its control members (for dpkg's database) and extraction of
//! its data into a root directory, confined to that root even when the package
//! is hostile.
//!
//! # How extraction stays inside the root
//!
//! The root is opened once as a directory file descriptor, and every file system
//! operation afterwards is an `*at` call (`openat`, `mkdirat`, `symlinkat`,
//! `linkat`, `renameat`, `fchownat`, `utimensat`, ...) on a directory descriptor
//! obtained from it, with a single path component as the name. No path string is
//! ever handed to the kernel for resolution, so the host's `/` is never used.
//!
//! Entry names are parsed first: absolute names, `..` components and newlines are
//! rejected outright. The parent directories of an entry are then walked one
//! component at a time, keeping a stack of directory descriptors (`O_PATH |
//! O_DIRECTORY | O_NOFOLLOW`). A component that is a symlink is resolved by hand
//! the way it would be inside a chroot: its target is read with `readlinkat`, an
//! absolute target restarts at the root, `..` pops the stack and never goes above
//! the root, and more than [`MAX_SYMLINKS`] links give an ELOOP-style error. This
//! is what makes merged-/usr roots (`bin -> usr/bin`, `/lib -> /usr/lib`) work.
//!
//! Symlinks shipped by the package being extracted are never traversed: a later
//! entry whose path goes through one of them (`./evil -> /` then
//! `./evil/tmp/x`) is refused. Well-formed packages never do this, since
//! `dpkg-deb --build` archives a real tree, and it keeps a package from
//! redirecting its own later entries. Hard links may only point at regular files
//! extracted earlier from the same package.
//!
//! The final component is never followed: files and symlinks are created under a
//! temporary name (`NAME.dpkg-new.RANDOM`, exclusively) and renamed over the old entry,
//! which replaces a symlink rather than writing through it. A directory entry
//! keeps an existing directory, or an existing symlink that resolves (confined)
//! to a directory, unchanged.
//!
//! This defends against hostile archive contents, not against another process
//! rearranging the root while extraction runs.

use std::collections::{BTreeMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::ops::ControlFlow;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{self, AtFlags, OFlag};
use nix::sys::stat::{self, FileStat, Mode, UtimensatFlags};
use nix::sys::time::TimeSpec;
use nix::unistd::{self, Gid, Uid, UnlinkatFlags};

use super::ar::ArReader;
use super::DebError;

/// Maximum number of symlinks followed while resolving one path, like Linux's
/// limit for a path walk.
pub const MAX_SYMLINKS: u32 = 40;

/// Largest control member accepted, to bound memory use on hostile packages.
const MAX_CONTROL_MEMBER: u64 = 64 << 20;

/// Largest single data file [`read_data_file`] returns, to bound memory use.
const MAX_DATA_FILE: u64 = 256 << 20;

/// Bytes of free space extraction always leaves on the root's filesystem.
pub const FREE_RESERVE: u64 = 32 << 20;

/// Entries a package may have beyond two per KiB of its `Installed-Size`
/// (see [`ExtractLimit::max_entries`]).
pub const ENTRY_ALLOWANCE: u64 = 10_000;

/// The entries a package of `kib` KiB may have: 2 per KiB and
/// [`ENTRY_ALLOWANCE`] more.
fn entries_for_kib(kib: u64) -> u64 {
    kib.saturating_mul(2).saturating_add(ENTRY_ALLOWANCE)
}

/// Suffix of the temporary name entries are written under.
const TMP_SUFFIX: &[u8] = b".dpkg-new";

/// The file of dpkg's database (`info/PKG.list`) that lists the package's
/// files: written by whoever unpacks the package, never a control member.
pub const LIST_FILE: &str = "list";

/// Longest control member name dpkg installs (its `MAXCONTROLFILENAME`).
const MAX_CONTROL_NAME: usize = 100;

/// Maintainer scripts dpkg runs, in the order they are usually listed.
pub const MAINTAINER_SCRIPTS: [&str; 5] = ["preinst", "postinst", "prerm", "postrm", "config"];

/// A member of `control.tar` other than `control`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlFile {
    /// Plain file name, such as `postinst` or `md5sums` (never contains `/`).
    pub name: String,
    /// Permission bits from the tar header.
    pub mode: u32,
    pub contents: Vec<u8>,
}

/// A line of the `conffiles` control member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conffile {
    /// Absolute path of the configuration file, such as `/etc/foo.conf`.
    pub path: String,
    /// The `remove-on-upgrade` flag: the file is no longer shipped and is to be
    /// removed on upgrade.
    pub remove_on_upgrade: bool,
}

/// The control members of a .deb.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlFiles {
    /// The `control` file text.
    pub control: String,
    /// Every other member (maintainer scripts, `conffiles`, `md5sums`,
    /// `triggers`, `shlibs`, ...), sorted by name. These are what dpkg keeps as
    /// `/var/lib/dpkg/info/PKG.NAME`: never `list`, and no name with a dot.
    pub files: Vec<ControlFile>,
}

impl ControlFiles {
    /// The member called `name`, if present.
    pub fn get(&self, name: &str) -> Option<&ControlFile> {
        self.files.iter().find(|f| f.name == name)
    }

    /// The maintainer scripts present (`preinst`, `postinst`, `prerm`,
    /// `postrm`, `config`).
    pub fn maintainer_scripts(&self) -> impl Iterator<Item = &ControlFile> {
        self.files
            .iter()
            .filter(|f| MAINTAINER_SCRIPTS.contains(&f.name.as_str()))
    }

    /// The entries of the `conffiles` member (empty if there is none).
    pub fn conffiles(&self) -> Vec<Conffile> {
        let Some(file) = self.get("conffiles") else {
            return Vec::new();
        };
        let text = String::from_utf8_lossy(&file.contents);
        let mut out = Vec::new();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            // Flags come before the path: "remove-on-upgrade /etc/foo".
            let (flags, path) = match line.find('/') {
                Some(0) | None => ("", line),
                Some(i) => (&line[..i], &line[i..]),
            };
            out.push(Conffile {
                path: path.to_string(),
                remove_on_upgrade: flags.split_whitespace().any(|f| f == "remove-on-upgrade"),
            });
        }
        out
    }

    /// The `md5sums` member as (hex digest, path without leading `/`) pairs.
    pub fn md5sums(&self) -> Vec<(String, String)> {
        let Some(file) = self.get("md5sums") else {
            return Vec::new();
        };
        String::from_utf8_lossy(&file.contents)
            .lines()
            .filter_map(|line| {
                let (sum, path) = line.split_once(' ')?;
                let path = path.trim_start_matches([' ', '*']);
                (!sum.is_empty() && !path.is_empty()).then(|| (sum.to_string(), path.to_string()))
            })
            .collect()
    }
}

/// The `control` file text of a .deb.
pub fn read_control(deb: &Path) -> Result<String, DebError> {
    control_files(deb).map(|c| c.control)
}

/// All control members of a .deb. Only plain files directly in `control.tar`
/// are accepted; anything else (subdirectories, links, `..`) is an error, so
/// the names are safe to use as `/var/lib/dpkg/info/PKG.NAME`. As dpkg
/// does when it installs them there, members whose name has a dot are
/// ignored, and a name longer than 100 bytes is an error; a member named
/// `list` (dpkg's own file list of the package) is an error too.
pub fn control_files(deb: &Path) -> Result<ControlFiles, DebError> {
    with_member(deb, "control.tar", |reader, member| {
        let read_err = read_err(deb, member);
        let bad = |entry: &[u8], reason| DebError::BadControlEntry {
            path: deb.to_path_buf(),
            entry: String::from_utf8_lossy(entry).into_owned(),
            reason,
        };
        let mut archive = tar::Archive::new(reader);
        let mut control = None;
        let mut files = BTreeMap::new();
        for entry in archive.entries().map_err(read_err)? {
            let mut entry = entry.map_err(read_err)?;
            let raw = entry.path_bytes().into_owned();
            let comps = entry_components(&raw).map_err(|reason| bad(&raw, reason))?;
            match entry.header().entry_type() {
                tar::EntryType::Directory if comps.is_empty() => continue,
                tar::EntryType::XGlobalHeader => continue,
                tar::EntryType::Regular | tar::EntryType::Continuous => {}
                _ => return Err(bad(&raw, "only plain files are allowed")),
            }
            let [name] = &comps[..] else {
                return Err(bad(&raw, "only plain files at the top level are allowed"));
            };
            let name =
                String::from_utf8(name.clone()).map_err(|_| bad(&raw, "name is not UTF-8"))?;
            // As dpkg installs control members into its database: a name
            // with a dot is ignored (as `info/PKG.NAME` it could be another
            // package's file: member `b.list` of `a` is `info/a.b.list`, the
            // file list of package `a.b`), and `list` is dpkg's own file
            // list of the package, which dpkg skips with a warning and
            // zchroot refuses, since no honest package ships one.
            if name.contains('.') {
                continue;
            }
            if name == LIST_FILE {
                return Err(bad(
                    &raw,
                    "dpkg keeps its own list of the package's files under this name",
                ));
            }
            if name.len() > MAX_CONTROL_NAME {
                return Err(bad(&raw, "longer than the 100 bytes dpkg allows"));
            }
            if entry.size() > MAX_CONTROL_MEMBER {
                return Err(bad(&raw, "larger than 64 MiB"));
            }
            let mode = entry.header().mode().map_err(read_err)? & 0o7777;
            let mut contents = Vec::new();
            entry.read_to_end(&mut contents).map_err(read_err)?;
            if name == "control" {
                control = Some(contents);
            } else {
                files.insert(
                    name.clone(),
                    ControlFile {
                        name,
                        mode,
                        contents,
                    },
                );
            }
        }
        let control = control.ok_or_else(|| DebError::NoControl {
            path: deb.to_path_buf(),
        })?;
        let control = String::from_utf8(control).map_err(|_| DebError::ControlNotUtf8 {
            path: deb.to_path_buf(),
        })?;
        Ok(ControlFiles {
            control,
            files: files.into_values().collect(),
        })
    })
}

/// How much unpacking one .deb may write: the bytes and the entries its
/// `Installed-Size` allows (see [`ExtractLimit::max_bytes`] and
/// [`ExtractLimit::max_entries`]), and never more than the free space of the
/// root's filesystem less [`FREE_RESERVE`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ExtractLimit {
    /// The package's name, for errors.
    pub package: String,
    /// `Installed-Size` in KiB, as the (verified) index declares it; `None`
    /// bounds the package by free space only.
    pub installed_size_kib: Option<u64>,
}

impl ExtractLimit {
    /// The bytes the package may write: twice its `Installed-Size`, and at
    /// least `Installed-Size` + 16 MiB. Unpacking is counted as
    /// dpkg-gencontrol computes `Installed-Size` (content bytes of files,
    /// target length of symlinks, 1 KiB for any other entry), so an honest
    /// package stays under `Installed-Size` itself; the margin is for sizes
    /// computed otherwise (`du -k` by older tools, hand-written fields).
    pub fn max_bytes(&self) -> u64 {
        match self.installed_size_kib {
            Some(kib) => {
                let declared = kib.saturating_mul(1024);
                declared
                    .saturating_mul(2)
                    .max(declared.saturating_add(16 << 20))
            }
            None => u64::MAX,
        }
    }

    /// The entries (files, directories, links, device nodes: every member of
    /// the data archive, `./` included) the package may have: twice its
    /// `Installed-Size` in KiB, plus [`ENTRY_ALLOWANCE`]. A package without
    /// `Installed-Size` is bounded as if it declared the free space of the
    /// root's filesystem (see [`extract_data_with`]).
    ///
    /// dpkg-gencontrol counts every directory, symlink and non-empty file as
    /// at least 1 KiB (a file's size is rounded up to whole KiB), so an
    /// honest package has no more entries than its `Installed-Size` in KiB
    /// besides its empty files and the extra names of hard-linked files,
    /// which count 0: the allowance is for those (linux-headers-*-common has
    /// some 17,000 entries for about 60,000 KiB). The factor 2 is for sizes
    /// computed otherwise: tools that add up bytes rather than 1 KiB blocks
    /// (`du --apparent-size` in older dpkg-gencontrol, [`super::DebBuilder`])
    /// stay within it as long as their entries average 512 bytes. An entry
    /// (an inode and a name) costs the filesystem less than the 512 bytes of
    /// room the package may take for it anyway.
    pub fn max_entries(&self) -> u64 {
        match self.installed_size_kib {
            Some(kib) => entries_for_kib(kib),
            None => u64::MAX,
        }
    }

    /// The limit the package's own control file sets (`Package`,
    /// `Installed-Size`), for a .deb that comes with no index.
    pub fn from_control(deb: &Path) -> Result<ExtractLimit, DebError> {
        let control = read_control(deb)?;
        let field = |name: &str| {
            control.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
            })
        };
        let package = field("Package").unwrap_or_else(|| deb.display().to_string());
        let installed_size_kib = match field("Installed-Size") {
            None => None,
            Some(v) => Some(v.parse().map_err(|_| DebError::InvalidField {
                field: "Installed-Size".into(),
                reason: "not a number of KiB",
            })?),
        };
        Ok(ExtractLimit {
            package,
            installed_size_kib,
        })
    }
}

/// What [`extract_data_full`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Extraction {
    /// Every entry of the package in archive order, as dpkg writes them to
    /// `/var/lib/dpkg/info/PKG.list`: `/.`, `/usr`, `/usr/bin/foo`. Skipped
    /// device nodes and FIFOs are included, as they belong to the package.
    pub paths: Vec<String>,
    /// Entries that were not created because a rootless root cannot hold them.
    pub skipped: Vec<SkippedNode>,
}

/// A device node or FIFO that was not created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedNode {
    /// As in [`Extraction::paths`].
    pub path: String,
    pub kind: SkippedKind,
    /// Permission bits.
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
}

/// Kind of a [`SkippedNode`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkippedKind {
    CharDevice { major: u32, minor: u32 },
    BlockDevice { major: u32, minor: u32 },
    Fifo,
}

/// Extracts the data of `deb` under `root` (see the module documentation for
/// how this is confined) and returns the paths as dpkg lists them in
/// `PKG.list`. Device nodes and FIFOs are skipped; use [`extract_data_full`]
/// to learn which. Bounded by the package's own `Installed-Size`
/// ([`ExtractLimit::from_control`]) and free space; a package from an
/// index is extracted with [`extract_data_with`] and the index's limit.
pub fn extract_data(deb: &Path, root: &Path) -> Result<Vec<String>, DebError> {
    extract_data_full(deb, root).map(|e| e.paths)
}

/// [`extract_data`], also reporting the device nodes and FIFOs it skipped.
///
/// Files get the mode (including setuid/setgid bits) and mtime of their tar
/// header. Ownership is set from the header's numeric uid/gid; when not running
/// as root, failures to do so are ignored.
pub fn extract_data_full(deb: &Path, root: &Path) -> Result<Extraction, DebError> {
    let limit = ExtractLimit::from_control(deb)?;
    extract_data_with(deb, root, &limit)
}

/// [`extract_data_full`] bounded by `limit`: once more bytes than it allows
/// are written (counted as they are written, whatever the tar headers claim),
/// extraction stops with [`DebError::TooLarge`] or [`DebError::NoSpace`]
/// and the file being written is removed; once the data archive has more
/// entries than it allows, it stops with [`DebError::TooManyEntries`]
/// before creating the entry over the limit. A package without
/// `Installed-Size` may have as many entries as if it declared the free
/// space.
pub fn extract_data_with(
    deb: &Path,
    root: &Path,
    limit: &ExtractLimit,
) -> Result<Extraction, DebError> {
    let root_fd = fcntl::open(
        root,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| DebError::OpenRoot {
        root: root.to_path_buf(),
        source: e.into(),
    })?;
    let free = nix::sys::statvfs::fstatvfs(&root_fd)
        .map(|st| st.blocks_available().saturating_mul(st.fragment_size()))
        .map_err(|e| DebError::OpenRoot {
            root: root.to_path_buf(),
            source: e.into(),
        })?;
    let free = free.saturating_sub(FREE_RESERVE);
    let budget = Budget {
        package: limit.package.clone(),
        declared_kib: limit.installed_size_kib,
        max: limit.max_bytes(),
        free,
        used: std::cell::Cell::new(0),
        checked_at: std::cell::Cell::new(0),
        max_entries: limit.max_entries().min(entries_for_kib(free / 1024)),
        entries: 0,
    };
    // A package that says it needs more than there is fails before writing.
    if let Some(kib) = limit.installed_size_kib {
        if kib.saturating_mul(1024) > budget.free {
            return Err(budget.no_space(root));
        }
    }
    let mut ex = Extractor {
        deb: deb.to_path_buf(),
        root: root.to_path_buf(),
        budget,
        root_fd,
        is_root: unistd::geteuid().is_root(),
        shipped_symlinks: HashSet::new(),
        shipped_files: HashSet::new(),
        dir_times: Vec::new(),
        out: Extraction::default(),
    };
    walk_data(deb, |entry, member| {
        ex.entry(entry, member)?;
        Ok(ControlFlow::<()>::Continue(()))
    })?;
    ex.set_dir_times()?;
    Ok(ex.out)
}

/// The paths of the data member's entries, without `./` (`usr/bin/x`);
/// directories end in `/`. Nothing is written to disk.
pub fn data_paths(deb: &Path) -> Result<Vec<String>, DebError> {
    let mut out = Vec::new();
    walk_data(deb, |entry, _| {
        let name = entry.path_bytes();
        let name = String::from_utf8_lossy(&name);
        let name = name.trim_start_matches("./");
        if !name.is_empty() {
            out.push(name.to_string());
        }
        Ok(ControlFlow::<()>::Continue(()))
    })?;
    Ok(out)
}

/// A package's data member seen in one pass: see [`scan_data`].
#[derive(Debug, Default)]
pub struct DataScan {
    /// Every entry's path, as [`data_paths`] gives them.
    pub paths: Vec<String>,
    /// The wanted regular files found, with their contents.
    pub files: Vec<(String, Vec<u8>)>,
}

impl DataScan {
    /// The contents of a wanted file, if the package has it.
    pub fn file(&self, path: &str) -> Option<&[u8]> {
        self.files
            .iter()
            .find(|(n, _)| n == path)
            .map(|(_, b)| b.as_slice())
    }
}

/// One pass over the data member: every entry's path (as [`data_paths`])
/// and the contents of the regular files among `wanted` (paths without
/// `./`, each capped like [`read_data_file`]). For a caller that needs a
/// package's file list and a few of its files without reading it again.
pub fn scan_data(deb: &Path, wanted: &[&str]) -> Result<DataScan, DebError> {
    let mut paths = Vec::new();
    let mut files = Vec::new();
    walk_data(deb, |mut entry, member| {
        let name = entry.path_bytes();
        let name = String::from_utf8_lossy(&name)
            .trim_start_matches("./")
            .to_string();
        if name.is_empty() {
            return Ok(ControlFlow::<()>::Continue(()));
        }
        if entry.header().entry_type() == tar::EntryType::Regular && wanted.contains(&name.as_str())
        {
            let mut out = Vec::with_capacity(entry.size().min(1 << 20) as usize);
            (&mut entry)
                .take(MAX_DATA_FILE + 1)
                .read_to_end(&mut out)
                .map_err(read_err(deb, member))?;
            if out.len() as u64 > MAX_DATA_FILE {
                return Err(DebError::DataFileTooLarge {
                    path: deb.to_path_buf(),
                    entry: name,
                    limit: MAX_DATA_FILE,
                });
            }
            files.push((name.clone(), out));
        }
        paths.push(name);
        Ok(ControlFlow::Continue(()))
    })?;
    Ok(DataScan { paths, files })
}

/// The contents of one regular file of the data member (`usr/bin/x`, with
/// or without `./`), or `None` when the package has no such regular file.
/// Nothing is written to disk.
pub fn read_data_file(deb: &Path, path: &str) -> Result<Option<Vec<u8>>, DebError> {
    let want = path.trim_start_matches("./").trim_start_matches('/');
    walk_data(deb, |mut entry, member| {
        let name = entry.path_bytes();
        let name = String::from_utf8_lossy(&name);
        if name.trim_start_matches("./") != want
            || entry.header().entry_type() != tar::EntryType::Regular
        {
            return Ok(ControlFlow::Continue(()));
        }
        // The header's size is a claim: read at most the cap, and grow the
        // buffer as data really comes.
        let mut out = Vec::with_capacity(entry.size().min(1 << 20) as usize);
        (&mut entry)
            .take(MAX_DATA_FILE + 1)
            .read_to_end(&mut out)
            .map_err(read_err(deb, member))?;
        if out.len() as u64 > MAX_DATA_FILE {
            return Err(DebError::DataFileTooLarge {
                path: deb.to_path_buf(),
                entry: want.to_string(),
                limit: MAX_DATA_FILE,
            });
        }
        Ok(ControlFlow::Break(out))
    })
}

/// The error for a failed read of `member` of `deb`.
fn read_err<'a>(deb: &'a Path, member: &'a str) -> impl Fn(io::Error) -> DebError + Copy + 'a {
    move |source| DebError::ReadMember {
        path: deb.to_path_buf(),
        member: member.to_string(),
        source,
    }
}

/// Walks the entries of the data member in order, calling `f` with each
/// and the member's name until it returns `Break`, whose value it returns.
fn walk_data<B>(
    deb: &Path,
    mut f: impl FnMut(tar::Entry<'_, &mut dyn Read>, &str) -> Result<ControlFlow<B>, DebError>,
) -> Result<Option<B>, DebError> {
    with_member(deb, "data.tar", |reader, member| {
        let mut archive = tar::Archive::new(reader);
        for entry in archive.entries().map_err(read_err(deb, member))? {
            let entry = entry.map_err(read_err(deb, member))?;
            if let ControlFlow::Break(b) = f(entry, member)? {
                return Ok(Some(b));
            }
        }
        Ok(None)
    })
}

/// Compression of a tar member, from its name.
enum TarCompression {
    None,
    Gzip,
    Xz,
}

/// Finds the member `base` (`control.tar` or `data.tar`, with any compression
/// suffix) and hands `f` a decompressed reader and the member's name.
fn with_member<T>(
    deb: &Path,
    base: &'static str,
    f: impl FnOnce(&mut dyn Read, &str) -> Result<T, DebError>,
) -> Result<T, DebError> {
    let container = |source| DebError::Container {
        path: deb.to_path_buf(),
        source,
    };
    let file = File::open(deb).map_err(|source| DebError::Open {
        path: deb.to_path_buf(),
        source,
    })?;
    let mut ar = ArReader::new(BufReader::new(file)).map_err(container)?;
    {
        let Some(mut first) = ar.next_member().map_err(container)? else {
            return Err(DebError::NotADeb {
                path: deb.to_path_buf(),
                member: "nothing".to_string(),
            });
        };
        if first.name() != "debian-binary" {
            return Err(DebError::NotADeb {
                path: deb.to_path_buf(),
                member: first.name().to_string(),
            });
        }
        let mut version = Vec::new();
        first
            .by_ref()
            .take(64)
            .read_to_end(&mut version)
            .map_err(read_err(deb, "debian-binary"))?;
        let version = String::from_utf8_lossy(&version).trim_end().to_string();
        if !version.starts_with("2.") {
            return Err(DebError::FormatVersion {
                path: deb.to_path_buf(),
                version,
            });
        }
    }
    while let Some(member) = ar.next_member().map_err(container)? {
        let name = member.name().to_string();
        let Some(rest) = name.strip_prefix(base) else {
            continue;
        };
        let compression = match rest {
            "" => TarCompression::None,
            ".gz" => TarCompression::Gzip,
            ".xz" => TarCompression::Xz,
            ".zst" => {
                return Err(DebError::Zstd {
                    path: deb.to_path_buf(),
                    member: name,
                })
            }
            _ if rest.starts_with('.') => {
                return Err(DebError::UnsupportedCompression {
                    path: deb.to_path_buf(),
                    member: name,
                })
            }
            _ => continue,
        };
        let mut reader: Box<dyn Read + '_> = match compression {
            TarCompression::None => Box::new(member),
            TarCompression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(member)),
            TarCompression::Xz => Box::new(liblzma::read::XzDecoder::new_multi_decoder(member)),
        };
        return f(&mut reader, &name);
    }
    Err(DebError::MissingMember {
        path: deb.to_path_buf(),
        member: base,
    })
}

/// Splits a tar entry name into its components, without `.` and empty ones.
/// An empty result is the root (`./`).
fn entry_components(raw: &[u8]) -> Result<Vec<Vec<u8>>, &'static str> {
    if raw.is_empty() {
        return Err("empty name");
    }
    if raw[0] == b'/' {
        return Err("absolute name");
    }
    if raw.contains(&b'\n') {
        return Err("newline in name");
    }
    let mut out = Vec::new();
    for part in raw.split(|b| *b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => return Err("'..' component in name"),
            _ => out.push(part.to_vec()),
        }
    }
    Ok(out)
}

/// The path as dpkg lists it: `/.` for the root, else `/a/b`.
fn list_path(comps: &[Vec<u8>]) -> String {
    if comps.is_empty() {
        return "/.".to_string();
    }
    let mut out = String::new();
    for c in comps {
        out.push('/');
        out.push_str(&String::from_utf8_lossy(c));
    }
    out
}

fn file_type(st: &FileStat) -> libc::mode_t {
    st.st_mode & libc::S_IFMT
}

/// Metadata of an entry, from its tar header and pax extensions.
struct Meta {
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: i64,
}

/// What one step of the confined path walk found.
enum Step {
    Dir(OwnedFd),
    Link(OsString),
    Missing,
}

/// What one package may still write, and what it wrote.
struct Budget {
    package: String,
    declared_kib: Option<u64>,
    /// From `Installed-Size`.
    max: u64,
    /// Free space at the start, less the reserve.
    free: u64,
    used: std::cell::Cell<u64>,
    /// `used` when free space was last measured again (packages unpack in
    /// parallel: each one's `free` is of the start, so the filesystem's
    /// own count is checked as they write).
    checked_at: std::cell::Cell<u64>,
    /// From `Installed-Size` (or the free space when there is none).
    max_entries: u64,
    /// Entries of the data archive seen so far.
    entries: u64,
}

/// How many bytes a package writes between two looks at the free space.
const RECHECK_BYTES: u64 = 8 << 20;

impl Budget {
    fn no_space(&self, root: &Path) -> DebError {
        DebError::NoSpace {
            package: self.package.clone(),
            root: root.to_path_buf(),
            free: self.free,
            reserve: FREE_RESERVE,
        }
    }
}

struct Extractor {
    deb: PathBuf,
    root: PathBuf,
    budget: Budget,
    root_fd: OwnedFd,
    is_root: bool,
    /// (st_dev, st_ino) of symlinks created from this package.
    shipped_symlinks: HashSet<(u64, u64)>,
    /// Regular files extracted from this package (normalized names), the only
    /// allowed hard link targets.
    shipped_files: HashSet<Vec<u8>>,
    /// Directories created, whose mtime is set once everything is extracted.
    dir_times: Vec<(String, Vec<Vec<u8>>, i64)>,
    out: Extraction,
}

impl Extractor {
    /// Counts `bytes` more as written; an error once over the limit.
    fn charge(&self, bytes: u64) -> Result<(), DebError> {
        let b = &self.budget;
        let used = b.used.get().saturating_add(bytes);
        b.used.set(used);
        if used > b.max {
            return Err(DebError::TooLarge {
                package: b.package.clone(),
                deb: self.deb.clone(),
                limit: b.max,
                declared_kib: b.declared_kib.unwrap_or(0),
            });
        }
        if used > b.free {
            return Err(b.no_space(&self.root));
        }
        if used - b.checked_at.get() >= RECHECK_BYTES {
            b.checked_at.set(used);
            let avail = nix::sys::statvfs::fstatvfs(&self.root_fd)
                .map(|st| st.blocks_available().saturating_mul(st.fragment_size()))
                .unwrap_or(0);
            if avail < FREE_RESERVE {
                return Err(b.no_space(&self.root));
            }
        }
        Ok(())
    }

    fn unsafe_entry(&self, entry: &str, reason: &'static str) -> DebError {
        DebError::UnsafeEntry {
            deb: self.deb.clone(),
            entry: entry.to_string(),
            reason,
        }
    }

    fn conflict(&self, entry: &str, what: &'static str) -> DebError {
        DebError::Conflict {
            deb: self.deb.clone(),
            root: self.root.clone(),
            entry: entry.to_string(),
            what,
        }
    }

    fn op(&self, entry: &str, op: &'static str) -> impl FnOnce(Errno) -> DebError {
        let (deb, root, entry) = (self.deb.clone(), self.root.clone(), entry.to_string());
        move |errno| DebError::Extract {
            deb,
            root,
            entry,
            op,
            source: errno.into(),
        }
    }

    fn entry<R: Read>(
        &mut self,
        mut entry: tar::Entry<'_, R>,
        member: &str,
    ) -> Result<(), DebError> {
        // Every entry counts, even one that creates nothing (a pax global
        // header): each is work, and most an inode.
        let b = &mut self.budget;
        b.entries += 1;
        if b.entries > b.max_entries {
            return Err(DebError::TooManyEntries {
                package: b.package.clone(),
                deb: self.deb.clone(),
                limit: b.max_entries,
                declared_kib: b.declared_kib,
            });
        }
        let kind = entry.header().entry_type();
        if kind == tar::EntryType::XGlobalHeader {
            return Ok(());
        }
        let raw = entry.path_bytes().into_owned();
        let name = String::from_utf8_lossy(&raw).into_owned();
        let comps = entry_components(&raw).map_err(|reason| self.unsafe_entry(&name, reason))?;
        if comps.is_empty() && kind != tar::EntryType::Directory {
            return Err(self.unsafe_entry(&name, "names the root directory"));
        }
        let meta = self.meta(&mut entry, member)?;
        // As dpkg-gencontrol counts: a regular file by the bytes written
        // (below), a symlink by its target, anything else 1 KiB.
        match kind {
            tar::EntryType::Regular | tar::EntryType::Continuous => {}
            tar::EntryType::Symlink => {
                self.charge(entry.link_name_bytes().map_or(0, |t| t.len() as u64).max(1))?
            }
            _ => self.charge(1024)?,
        }
        match kind {
            tar::EntryType::Directory => self.directory(&name, &comps, &meta)?,
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                self.regular(&name, &comps, &meta, &mut entry, member)?
            }
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .map(|t| t.into_owned())
                    .unwrap_or_default();
                self.symlink(&name, &comps, &target, &meta)?
            }
            tar::EntryType::Link => {
                let target = entry
                    .link_name_bytes()
                    .map(|t| t.into_owned())
                    .unwrap_or_default();
                self.hard_link(&name, &comps, &target)?
            }
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                let header = entry.header();
                let device = |f: io::Result<Option<u32>>| {
                    f.map(Option::unwrap_or_default)
                        .map_err(read_err(&self.deb, member))
                };
                // Device numbers only matter for devices (FIFOs often leave them blank).
                let kind = match kind {
                    tar::EntryType::Char | tar::EntryType::Block => {
                        let major = device(header.device_major())?;
                        let minor = device(header.device_minor())?;
                        if kind == tar::EntryType::Char {
                            SkippedKind::CharDevice { major, minor }
                        } else {
                            SkippedKind::BlockDevice { major, minor }
                        }
                    }
                    _ => SkippedKind::Fifo,
                };
                self.out.skipped.push(SkippedNode {
                    path: list_path(&comps),
                    kind,
                    mode: meta.mode,
                    uid: meta.uid,
                    gid: meta.gid,
                });
            }
            other => {
                return Err(DebError::UnsupportedEntry {
                    deb: self.deb.clone(),
                    entry: name,
                    kind: other.as_byte() as char,
                })
            }
        }
        self.out.paths.push(list_path(&comps));
        Ok(())
    }

    fn meta<R: Read>(&self, entry: &mut tar::Entry<'_, R>, member: &str) -> Result<Meta, DebError> {
        let read_err = read_err(&self.deb, member);
        // The tar crate already applies pax uid/gid; pax mtime is done here.
        let header = entry.header();
        let mut meta = Meta {
            mode: header.mode().map_err(read_err)? & 0o7777,
            uid: header.uid().map_err(read_err)?,
            gid: header.gid().map_err(read_err)?,
            mtime: i64::try_from(header.mtime().map_err(read_err)?).unwrap_or(i64::MAX),
        };
        if let Some(extensions) = entry.pax_extensions().map_err(read_err)? {
            for ext in extensions {
                let ext = ext.map_err(read_err)?;
                if ext.key_bytes() == b"mtime" {
                    let value = ext.value().unwrap_or("");
                    let secs = value.split('.').next().unwrap_or("");
                    if let Ok(secs) = secs.parse::<i64>() {
                        meta.mtime = secs;
                    }
                }
            }
        }
        Ok(meta)
    }

    /// Walks `comps` as directories from the root, confined (see the module
    /// documentation). Missing directories are created with mode 0755 when
    /// `create` is set. Returns a descriptor of the final directory.
    fn resolve_dir(
        &self,
        entry: &str,
        comps: &[Vec<u8>],
        create: bool,
    ) -> Result<OwnedFd, DebError> {
        let mut stack: Vec<OwnedFd> = Vec::new();
        let mut todo: Vec<Vec<u8>> = comps.iter().rev().cloned().collect();
        let mut links = 0u32;
        let mut just_created: Option<Vec<u8>> = None;
        while let Some(comp) = todo.pop() {
            if comp.is_empty() || comp == b"." {
                continue;
            }
            if comp == b".." {
                // Never above the root: popping an empty stack stays at the root.
                stack.pop();
                continue;
            }
            let step = {
                let cur = stack.last().map_or(self.root_fd.as_fd(), |fd| fd.as_fd());
                let c = OsStr::from_bytes(&comp);
                match fcntl::openat(
                    cur,
                    c,
                    OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                    Mode::empty(),
                ) {
                    Ok(fd) => Step::Dir(fd),
                    Err(Errno::ENOTDIR | Errno::ELOOP) => {
                        let st = stat::fstatat(cur, c, AtFlags::AT_SYMLINK_NOFOLLOW)
                            .map_err(self.op(entry, "inspect a path component"))?;
                        if file_type(&st) != libc::S_IFLNK {
                            return Err(self.conflict(
                                entry,
                                "a path component exists and is not a directory",
                            ));
                        }
                        if self.shipped_symlinks.contains(&(st.st_dev, st.st_ino)) {
                            return Err(self.unsafe_entry(
                                entry,
                                "the path goes through a symlink shipped earlier in the same package",
                            ));
                        }
                        let target =
                            fcntl::readlinkat(cur, c).map_err(self.op(entry, "read a symlink"))?;
                        Step::Link(target)
                    }
                    Err(Errno::ENOENT) if create && just_created.as_ref() != Some(&comp) => {
                        match stat::mkdirat(cur, c, Mode::from_bits_truncate(0o755)) {
                            Ok(()) | Err(Errno::EEXIST) => {}
                            Err(e) => {
                                return Err(self.op(entry, "create a missing parent directory")(e))
                            }
                        }
                        Step::Missing
                    }
                    Err(e) => return Err(self.op(entry, "resolve a path component")(e)),
                }
            };
            match step {
                Step::Dir(fd) => {
                    stack.push(fd);
                    just_created = None;
                }
                Step::Missing => {
                    // Created it; look at it again.
                    todo.push(comp.clone());
                    just_created = Some(comp);
                }
                Step::Link(target) => {
                    links += 1;
                    if links > MAX_SYMLINKS {
                        return Err(DebError::TooManyLinks {
                            deb: self.deb.clone(),
                            root: self.root.clone(),
                            entry: entry.to_string(),
                        });
                    }
                    let target = target.into_vec();
                    if target.is_empty() {
                        return Err(self.conflict(entry, "a path component is an empty symlink"));
                    }
                    if target[0] == b'/' {
                        // Absolute targets are re-rooted at the root.
                        stack.clear();
                    }
                    todo.extend(target.split(|b| *b == b'/').rev().map(<[u8]>::to_vec));
                    just_created = None;
                }
            }
        }
        match stack.pop() {
            Some(fd) => Ok(fd),
            None => self
                .root_fd
                .try_clone()
                .map_err(|source| DebError::Extract {
                    deb: self.deb.clone(),
                    root: self.root.clone(),
                    entry: entry.to_string(),
                    op: "duplicate the root descriptor",
                    source,
                }),
        }
    }

    /// The parent directory of a non-root entry (created if missing) and the
    /// entry's final name.
    fn parent<'c>(
        &self,
        entry: &str,
        comps: &'c [Vec<u8>],
    ) -> Result<(OwnedFd, &'c OsStr), DebError> {
        let (last, parents) = comps
            .split_last()
            .ok_or_else(|| self.unsafe_entry(entry, "names the root directory"))?;
        let dir = self.resolve_dir(entry, parents, true)?;
        Ok((dir, OsStr::from_bytes(last)))
    }

    /// `NAME.dpkg-new.RANDOM`: packages unpack in parallel, and two may
    /// ship the same path; each writes its own temporary file.
    fn tmp_name(name: &OsStr) -> OsString {
        let mut tmp = name.as_bytes().to_vec();
        tmp.extend_from_slice(TMP_SUFFIX);
        tmp.push(b'.');
        tmp.extend_from_slice(crate::atomic::random_suffix().as_bytes());
        OsString::from_vec(tmp)
    }

    /// Removes a temporary file left over by an interrupted extraction.
    fn remove_stale(&self, entry: &str, dir: &OwnedFd, tmp: &OsStr) -> Result<(), DebError> {
        match unistd::unlinkat(dir, tmp, UnlinkatFlags::NoRemoveDir) {
            Ok(()) | Err(Errno::ENOENT) => Ok(()),
            Err(e) => Err(self.op(entry, "remove a stale temporary file")(e)),
        }
    }

    /// Ownership errors are fatal only when running as root.
    fn owner_result(&self, entry: &str, result: nix::Result<()>) -> Result<(), DebError> {
        match result {
            Ok(()) => Ok(()),
            Err(Errno::EPERM | Errno::EINVAL) if !self.is_root => Ok(()),
            Err(e) => Err(self.op(entry, "set the owner")(e)),
        }
    }

    fn ids(&self, entry: &str, meta: &Meta) -> Result<(Uid, Gid), DebError> {
        let uid =
            u32::try_from(meta.uid).map_err(|_| self.unsafe_entry(entry, "uid out of range"))?;
        let gid =
            u32::try_from(meta.gid).map_err(|_| self.unsafe_entry(entry, "gid out of range"))?;
        Ok((Uid::from_raw(uid), Gid::from_raw(gid)))
    }

    fn directory(&mut self, entry: &str, comps: &[Vec<u8>], meta: &Meta) -> Result<(), DebError> {
        if comps.is_empty() {
            // "./": the root itself is left as it is.
            return Ok(());
        }
        let (dir, name) = self.parent(entry, comps)?;
        match stat::fstatat(&dir, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Err(Errno::ENOENT) => {}
            // Existing directories are kept as they are, like dpkg does.
            Ok(st) if file_type(&st) == libc::S_IFDIR => return Ok(()),
            Ok(st) if file_type(&st) == libc::S_IFLNK => {
                // Kept if it resolves (confined) to a directory, as merged-/usr needs.
                self.resolve_dir(entry, comps, false)?;
                return Ok(());
            }
            Ok(_) => {
                return Err(self.conflict(entry, "a non-directory is in the way of a directory"))
            }
            Err(e) => return Err(self.op(entry, "inspect the existing entry")(e)),
        }
        match stat::mkdirat(&dir, name, Mode::from_bits_truncate(0o700)) {
            Ok(()) => {}
            // Another package unpacked in parallel made it meanwhile: kept
            // as it is, as above.
            Err(Errno::EEXIST)
                if stat::fstatat(&dir, name, AtFlags::AT_SYMLINK_NOFOLLOW)
                    .is_ok_and(|st| file_type(&st) == libc::S_IFDIR) =>
            {
                return Ok(())
            }
            Err(e) => return Err(self.op(entry, "create a directory")(e)),
        }
        let fd = fcntl::openat(
            &dir,
            name,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(self.op(entry, "open a new directory"))?;
        let (uid, gid) = self.ids(entry, meta)?;
        self.owner_result(entry, unistd::fchown(&fd, Some(uid), Some(gid)))?;
        stat::fchmod(&fd, Mode::from_bits_truncate(meta.mode))
            .map_err(self.op(entry, "set the mode"))?;
        self.dir_times
            .push((entry.to_string(), comps.to_vec(), meta.mtime));
        Ok(())
    }

    fn regular(
        &mut self,
        entry: &str,
        comps: &[Vec<u8>],
        meta: &Meta,
        data: &mut dyn Read,
        member: &str,
    ) -> Result<(), DebError> {
        let (dir, name) = self.parent(entry, comps)?;
        let tmp = Self::tmp_name(name);
        self.remove_stale(entry, &dir, &tmp)?;
        let fd = fcntl::openat(
            &dir,
            tmp.as_os_str(),
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o600),
        )
        .map_err(self.op(entry, "create a temporary file"))?;
        let mut file = File::from(fd);
        let result = (|| {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = match data.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(source) => return Err(read_err(&self.deb, member)(source)),
                };
                // Counted before it is written: never more than the limit on disk.
                self.charge(n as u64)?;
                file.write_all(&buf[..n])
                    .map_err(|source| DebError::Extract {
                        deb: self.deb.clone(),
                        root: self.root.clone(),
                        entry: entry.to_string(),
                        op: "write the file",
                        source,
                    })?;
            }
            // Owner before mode: chown clears setuid and setgid bits.
            let (uid, gid) = self.ids(entry, meta)?;
            self.owner_result(entry, unistd::fchown(&file, Some(uid), Some(gid)))?;
            stat::fchmod(&file, Mode::from_bits_truncate(meta.mode))
                .map_err(self.op(entry, "set the mode"))?;
            let time = TimeSpec::new(meta.mtime, 0);
            stat::futimens(&file, &time, &time).map_err(self.op(entry, "set the mtime"))?;
            fcntl::renameat(&dir, tmp.as_os_str(), &dir, name)
                .map_err(self.op(entry, "rename the file into place"))
        })();
        if result.is_err() {
            let _ = unistd::unlinkat(&dir, tmp.as_os_str(), UnlinkatFlags::NoRemoveDir);
        }
        result?;
        self.shipped_files.insert(comps.join(&b'/'));
        Ok(())
    }

    fn symlink(
        &mut self,
        entry: &str,
        comps: &[Vec<u8>],
        target: &[u8],
        meta: &Meta,
    ) -> Result<(), DebError> {
        if target.is_empty() {
            return Err(self.unsafe_entry(entry, "empty symlink target"));
        }
        let (dir, name) = self.parent(entry, comps)?;
        let tmp = Self::tmp_name(name);
        self.remove_stale(entry, &dir, &tmp)?;
        unistd::symlinkat(OsStr::from_bytes(target), &dir, tmp.as_os_str())
            .map_err(self.op(entry, "create a symlink"))?;
        let result = (|| {
            let (uid, gid) = self.ids(entry, meta)?;
            self.owner_result(
                entry,
                unistd::fchownat(
                    &dir,
                    tmp.as_os_str(),
                    Some(uid),
                    Some(gid),
                    AtFlags::AT_SYMLINK_NOFOLLOW,
                ),
            )?;
            let time = TimeSpec::new(meta.mtime, 0);
            stat::utimensat(
                &dir,
                tmp.as_os_str(),
                &time,
                &time,
                UtimensatFlags::NoFollowSymlink,
            )
            .map_err(self.op(entry, "set the mtime"))?;
            fcntl::renameat(&dir, tmp.as_os_str(), &dir, name)
                .map_err(self.op(entry, "rename the symlink into place"))
        })();
        if result.is_err() {
            let _ = unistd::unlinkat(&dir, tmp.as_os_str(), UnlinkatFlags::NoRemoveDir);
        }
        result?;
        let st = stat::fstatat(&dir, name, AtFlags::AT_SYMLINK_NOFOLLOW)
            .map_err(self.op(entry, "inspect the new symlink"))?;
        self.shipped_symlinks.insert((st.st_dev, st.st_ino));
        Ok(())
    }

    fn hard_link(&mut self, entry: &str, comps: &[Vec<u8>], target: &[u8]) -> Result<(), DebError> {
        let target_comps = entry_components(target).map_err(|_| {
            self.unsafe_entry(entry, "the hard link target is absolute or contains '..'")
        })?;
        if target_comps.is_empty() {
            return Err(self.unsafe_entry(entry, "the hard link target is the root directory"));
        }
        if !self.shipped_files.contains(&target_comps.join(&b'/')) {
            return Err(self.unsafe_entry(
                entry,
                "the hard link target is not a file extracted earlier from this package",
            ));
        }
        let (target_last, target_parents) = target_comps.split_last().ok_or_else(|| {
            self.unsafe_entry(entry, "the hard link target is the root directory")
        })?;
        let target_dir = self.resolve_dir(entry, target_parents, false)?;
        let target_name = OsStr::from_bytes(target_last);
        let st = stat::fstatat(&target_dir, target_name, AtFlags::AT_SYMLINK_NOFOLLOW)
            .map_err(self.op(entry, "inspect the hard link target"))?;
        if file_type(&st) != libc::S_IFREG {
            return Err(self.conflict(entry, "the hard link target is no longer a regular file"));
        }
        let (dir, name) = self.parent(entry, comps)?;
        let tmp = Self::tmp_name(name);
        self.remove_stale(entry, &dir, &tmp)?;
        // No AT_SYMLINK_FOLLOW: the link is made to the target entry itself.
        unistd::linkat(
            &target_dir,
            target_name,
            &dir,
            tmp.as_os_str(),
            AtFlags::empty(),
        )
        .map_err(self.op(entry, "create a hard link"))?;
        let renamed = fcntl::renameat(&dir, tmp.as_os_str(), &dir, name);
        // rename(2) does nothing when both names are links to the same inode.
        let _ = unistd::unlinkat(&dir, tmp.as_os_str(), UnlinkatFlags::NoRemoveDir);
        renamed.map_err(self.op(entry, "rename the hard link into place"))?;
        self.shipped_files.insert(comps.join(&b'/'));
        Ok(())
    }

    /// Sets the mtime of the directories created, now that nothing more is
    /// written into them.
    fn set_dir_times(&self) -> Result<(), DebError> {
        for (entry, comps, mtime) in &self.dir_times {
            let Some((last, parents)) = comps.split_last() else {
                continue;
            };
            let dir = self.resolve_dir(entry, parents, false)?;
            let time = TimeSpec::new(*mtime, 0);
            stat::utimensat(
                &dir,
                OsStr::from_bytes(last),
                &time,
                &time,
                UtimensatFlags::NoFollowSymlink,
            )
            .map_err(self.op(entry, "set the mtime"))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_names() {
        assert_eq!(entry_components(b"./").unwrap(), Vec::<Vec<u8>>::new());
        assert_eq!(
            entry_components(b"./usr//bin/./foo").unwrap(),
            vec![b"usr".to_vec(), b"bin".to_vec(), b"foo".to_vec()]
        );
        assert!(entry_components(b"/etc/passwd").is_err());
        assert!(entry_components(b"../x").is_err());
        assert!(entry_components(b"./a/../../x").is_err());
        assert!(entry_components(b"a\nb").is_err());
        assert!(entry_components(b"").is_err());
        assert_eq!(list_path(&[]), "/.");
        assert_eq!(list_path(&[b"usr".to_vec(), b"bin".to_vec()]), "/usr/bin");
    }

    #[test]
    fn the_limit_is_twice_installed_size_and_at_least_16_mib_more() {
        let l = |kib| ExtractLimit {
            package: "p".into(),
            installed_size_kib: kib,
        };
        assert_eq!(l(Some(10)).max_bytes(), 10 * 1024 + (16 << 20));
        assert_eq!(l(Some(0)).max_bytes(), 16 << 20);
        assert_eq!(l(Some(1 << 20)).max_bytes(), 2 << 30);
        assert_eq!(l(Some(u64::MAX)).max_bytes(), u64::MAX);
        assert_eq!(l(None).max_bytes(), u64::MAX);
    }

    #[test]
    fn the_entry_limit_is_twice_installed_size_and_10000_more() {
        let l = |kib| ExtractLimit {
            package: "p".into(),
            installed_size_kib: kib,
        };
        assert_eq!(l(Some(0)).max_entries(), 10_000);
        assert_eq!(l(Some(60_000)).max_entries(), 130_000);
        assert_eq!(l(Some(u64::MAX)).max_entries(), u64::MAX);
        assert_eq!(l(None).max_entries(), u64::MAX);
    }

    fn write_deb(dir: &Path, name: &str, b: &crate::deb::write::DebBuilder) -> PathBuf {
        let path = dir.join(format!("{name}.deb"));
        b.write_to(File::create(&path).unwrap()).unwrap();
        path
    }

    fn builder(name: &str, installed_size: Option<&str>) -> crate::deb::write::DebBuilder {
        let mut fields = vec![
            ("Package".to_string(), name.to_string()),
            ("Version".into(), "1".into()),
            ("Architecture".into(), "all".into()),
        ];
        if let Some(kib) = installed_size {
            fields.push(("Installed-Size".into(), kib.into()));
        }
        crate::deb::write::DebBuilder::new(fields)
    }

    /// Entries (of any kind) under `dir`, `dir` itself not counted.
    fn count_entries(dir: &Path) -> usize {
        let mut n = 0;
        let mut todo = vec![dir.to_path_buf()];
        while let Some(d) = todo.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let e = e.unwrap();
                n += 1;
                if e.file_type().unwrap().is_dir() {
                    todo.push(e.path());
                }
            }
        }
        n
    }

    #[test]
    fn a_package_of_many_empty_files_is_refused_past_its_entry_limit() {
        let t = tempfile::tempdir().unwrap();
        // `./`, `./e/` and the files: one entry more than Installed-Size 0
        // allows, and no byte over its byte limit.
        let mut b = builder("emptybomb", Some("0"));
        for i in 0..ENTRY_ALLOWANCE - 1 {
            b.add_file(&format!("e/{i}"), 0o644, Vec::new());
        }
        let deb = write_deb(t.path(), "emptybomb", &b);
        let limit = ExtractLimit::from_control(&deb).unwrap();
        assert_eq!(limit.installed_size_kib, Some(0));
        let root = t.path().join("root");
        std::fs::create_dir(&root).unwrap();
        let e = extract_data_with(&deb, &root, &limit).unwrap_err();
        assert!(
            matches!(e, DebError::TooManyEntries { limit: 10_000, .. }),
            "{e:?}"
        );
        assert_eq!(
            e.to_string(),
            "emptybomb: has more than 10000 entries (files, directories, links), more than \
             its Installed-Size of 0 KiB allows (2 entries per KiB and 10000 more)"
        );
        // Nothing past the limit was created: the root itself is `./`.
        assert_eq!(count_entries(&root), 10_000 - 1);
        // Declaring 1 KiB allows two more entries: the same files pass.
        let mut b = builder("emptybomb", Some("1"));
        for i in 0..ENTRY_ALLOWANCE - 1 {
            b.add_file(&format!("e/{i}"), 0o644, Vec::new());
        }
        let deb = write_deb(t.path(), "fine", &b);
        let root = t.path().join("root2");
        std::fs::create_dir(&root).unwrap();
        let paths = extract_data(&deb, &root).unwrap();
        assert_eq!(paths.len() as u64, ENTRY_ALLOWANCE + 1);
    }

    #[test]
    fn control_members_are_what_dpkg_installs_and_never_its_file_list() {
        let t = tempfile::tempdir().unwrap();
        let mut b = builder("evil", None);
        b.add_file("usr/share/doc/evil/x", 0o644, b"x".to_vec());
        b.add_control_file("list", 0o644, b"/etc/passwd\n".to_vec());
        let deb = write_deb(t.path(), "list", &b);
        let e = control_files(&deb).unwrap_err();
        assert!(
            matches!(&e, DebError::BadControlEntry { entry, .. } if entry.ends_with("list")),
            "{e:?}"
        );
        assert!(
            e.to_string().ends_with(
                "control member entry \"./list\" is not acceptable: \
                 dpkg keeps its own list of the package's files under this name"
            ),
            "{e}"
        );
        // A name with a dot is ignored, as dpkg ignores it: as
        // `info/evil.b.list` it would be package `evil.b`'s file list.
        let mut b = builder("evil", None);
        b.add_control_file("b.list", 0o644, b"/etc/passwd\n".to_vec());
        b.add_control_file("shlibs", 0o644, b"libevil 1 evil\n".to_vec());
        let deb = write_deb(t.path(), "dotted", &b);
        let c = control_files(&deb).unwrap();
        let names: Vec<&str> = c.files.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["shlibs"]);
        // dpkg refuses names over 100 bytes.
        let mut b = builder("evil", None);
        b.add_control_file(&"n".repeat(101), 0o644, Vec::new());
        let deb = write_deb(t.path(), "long", &b);
        let e = control_files(&deb).unwrap_err().to_string();
        assert!(e.ends_with("longer than the 100 bytes dpkg allows"), "{e}");
        let mut b = builder("evil", None);
        b.add_control_file(&"n".repeat(100), 0o644, Vec::new());
        let deb = write_deb(t.path(), "longest", &b);
        assert!(control_files(&deb).unwrap().get(&"n".repeat(100)).is_some());
    }

    #[test]
    fn conffiles_and_md5sums_parsing() {
        let files = ControlFiles {
            control: String::new(),
            files: vec![
                ControlFile {
                    name: "conffiles".into(),
                    mode: 0o644,
                    contents: b"/etc/a.conf\nremove-on-upgrade /etc/old b\n\n".to_vec(),
                },
                ControlFile {
                    name: "md5sums".into(),
                    mode: 0o644,
                    contents: b"d41d8cd98f00b204e9800998ecf8427e  usr/bin/a b\n".to_vec(),
                },
            ],
        };
        assert_eq!(
            files.conffiles(),
            vec![
                Conffile {
                    path: "/etc/a.conf".into(),
                    remove_on_upgrade: false
                },
                Conffile {
                    path: "/etc/old b".into(),
                    remove_on_upgrade: true
                },
            ]
        );
        assert_eq!(
            files.md5sums(),
            vec![(
                "d41d8cd98f00b204e9800998ecf8427e".to_string(),
                "usr/bin/a b".to_string()
            )]
        );
        assert_eq!(files.maintainer_scripts().count(), 0);
    }

    #[test]
    fn one_scan_gives_the_paths_and_the_wanted_files() {
        let mut b = crate::deb::write::DebBuilder::new(vec![
            ("Package".into(), "linux-headers".into()),
            ("Version".into(), "1".into()),
            ("Architecture".into(), "arm64".into()),
        ]);
        b.add_file("usr/src/h/.config", 0o644, b"CONFIG_X=y\n".to_vec());
        b.add_file(
            "usr/src/h/scripts/basic/fixdep.c",
            0o644,
            b"int main;".to_vec(),
        );
        let mut bytes = Vec::new();
        b.write_to(&mut bytes).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let deb = dir.path().join("h.deb");
        std::fs::write(&deb, bytes).unwrap();
        let scan = scan_data(&deb, &["usr/src/h/.config", "usr/src/h/nope"]).unwrap();
        assert!(scan
            .paths
            .iter()
            .any(|p| p == "usr/src/h/scripts/basic/fixdep.c"));
        assert_eq!(scan.paths, data_paths(&deb).unwrap());
        assert_eq!(scan.file("usr/src/h/.config"), Some(&b"CONFIG_X=y\n"[..]));
        assert_eq!(
            scan.file("usr/src/h/scripts/basic/fixdep.c"),
            None,
            "not wanted"
        );
        assert_eq!(scan.file("usr/src/h/nope"), None);
    }
}
