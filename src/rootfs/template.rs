//! Root templates: the finished tree of a root is kept once in the cache
//! under a key naming everything that shaped it, and a later `create` of
//! the same key copies it instead of unpacking and configuring again (most
//! of a foreign root's time is dpkg under qemu).
//!
//! The key ([`key`]) is a SHA-256 of: the template format and zchroot's
//! version (the install recipe), the architecture, release and variant as
//! the manifests define them (with their sources and components), the
//! `--include` packages, the resolved package set (name, version,
//! architecture and .deb hash of each), the apt sources and keyring written
//! into the root, and the id maps the tree was made under (a rootless tree
//! belongs to the user's subordinate ids). Any version change in the
//! archive changes the key; so do `--aptopt`/`--dpkgopt` (in the recipe
//! part). A root made with hooks is neither copied from a template nor
//! kept as one (`rootfs::create`): a hook may do anything to the tree.
//!
//! Per root, only `/etc/hostname` is written again (the root's name); apt's
//! lists are those of the template's day (`apt-get update` refreshes them).
//!
//! A template is a copy of the tree (`cache/templates/KEY/root`), made and
//! restored with [`copy_tree`]: directory fds, no symlink followed, no
//! mount crossed; owners, modes, times, extended attributes, hard links,
//! symlinks and device nodes kept; file data reflinked (`FICLONE`) where the
//! filesystem shares blocks, else copied in the kernel (`copy_file_range`).
//! Rootless, the copy runs inside the user namespace, where the subordinate
//! ids map and every file can be read and chowned.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{FileStat, Mode, SFlag};
use nix::sys::time::TimeSpec;
use nix::unistd::{Gid, Uid};
use serde::{Deserialize, Serialize};

use crate::archive::hash::Sha256;
use crate::archive::index::Package;
use crate::paths::DataDirs;
use crate::sandbox::idmap::IdMaps;
use crate::sandbox::spawn::{self, Job, SandboxPlan};
use crate::sys::{self, SysError};

/// Bumped when what a template holds, or how it is used, changes.
const FORMAT: &str = "zchroot-template-1";

#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("copying {}: {source}", path.display())]
    Copy {
        path: PathBuf,
        #[source]
        source: SysError,
    },
    #[error("copying {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: bad template record: {message}", path.display())]
    Meta { path: PathBuf, message: String },
    #[error("copying the template {} failed: {message}\nhelp: `zchroot create --no-template` builds without it; `zchroot destroy --purge-cache` removes the templates", path.display())]
    Job { path: PathBuf, message: String },
}

/// What the key of a template is computed from (see the module text).
#[derive(Debug, Clone, Serialize)]
pub struct KeyInputs {
    pub arch: String,
    pub release: String,
    pub variant: String,
    pub include: Vec<String>,
    /// The manifests' definition of arch, release and variant (their
    /// sources, components, keyring names, package requests).
    pub recipe: String,
    /// `name version arch sha256` of every package, in any order.
    pub packages: Vec<String>,
    /// apt's sources file as written into the root.
    pub sources: String,
    /// SHA-256 of the keyring written into the root.
    pub keyring: String,
    /// The id maps of the user namespace the tree was made in (none: root).
    pub ids: String,
}

impl KeyInputs {
    /// The line that stands for `p` in [`KeyInputs::packages`].
    pub fn package(p: &Package) -> String {
        format!("{} {} {} {}", p.name, p.version, p.arch, p.sha256)
    }

    /// The id maps as they shape the owners on disk.
    pub fn ids(maps: &IdMaps) -> String {
        if !maps.helpers {
            return "root".into();
        }
        let line =
            |e: &crate::sandbox::idmap::Extent| format!("{}:{}:{}", e.inside, e.outside, e.count);
        let uid: Vec<String> = maps.uid.iter().map(line).collect();
        let gid: Vec<String> = maps.gid.iter().map(line).collect();
        format!("uid {} gid {}", uid.join(","), gid.join(","))
    }
}

/// The key of a template: hex SHA-256 of the inputs, packages sorted (the
/// order the resolver lists them in does not matter).
pub fn key(inputs: &KeyInputs) -> String {
    let mut packages = inputs.packages.clone();
    packages.sort();
    let mut text = format!("{FORMAT}\nzchroot {}\n", env!("CARGO_PKG_VERSION"));
    for (k, v) in [
        ("arch", &inputs.arch),
        ("release", &inputs.release),
        ("variant", &inputs.variant),
        ("recipe", &inputs.recipe),
        ("sources", &inputs.sources),
        ("keyring", &inputs.keyring),
        ("ids", &inputs.ids),
    ] {
        // Lengths first: no two different inputs make the same text.
        text.push_str(&format!("{k} {} {v}\n", v.len()));
    }
    text.push_str(&format!("include {}\n", inputs.include.join(" ")));
    for p in &packages {
        text.push_str(&format!("package {p}\n"));
    }
    Sha256::digest(text.as_bytes()).to_hex()
}

/// What a template is, beside its tree (`template.toml`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateMeta {
    pub key: String,
    pub arch: String,
    pub release: String,
    pub variant: String,
    #[serde(default)]
    pub include: Vec<String>,
    pub packages: usize,
    /// Seconds since the epoch.
    pub created: u64,
}

/// One row of `list --templates`.
#[derive(Debug, Clone, Serialize)]
pub struct ListedTemplate {
    #[serde(flatten)]
    pub meta: TemplateMeta,
    pub path: PathBuf,
    pub size_bytes: u64,
}

/// The templates in the cache (`cache/templates/KEY/{root,template.toml}`).
#[derive(Debug, Clone)]
pub struct Templates {
    pub dir: PathBuf,
}

impl Templates {
    pub fn new(dirs: &DataDirs) -> Templates {
        Templates {
            dir: dirs.cache.join("templates"),
        }
    }

    /// The tree of the template `key`, if there is a complete one.
    pub fn find(&self, key: &str) -> Option<PathBuf> {
        let dir = self.dir.join(key);
        dir.join("template.toml")
            .is_file()
            .then(|| dir.join("root"))
    }

    /// Where a template is assembled before it appears under its key.
    pub fn staging(&self, key: &str) -> PathBuf {
        self.dir
            .join(format!(".staging-{key}-{}", std::process::id()))
    }

    /// What interrupted runs left (`.staging-KEY-PID`, `.old-KEY-PID`)
    /// whose process is gone.
    pub fn leftovers(&self) -> Vec<PathBuf> {
        let Ok(rd) = std::fs::read_dir(&self.dir) else {
            return vec![];
        };
        rd.flatten()
            .map(|e| e.path())
            .filter(|p| {
                let n = p.file_name().unwrap_or_default().to_string_lossy();
                (n.starts_with(".staging-") || n.starts_with(".old-"))
                    && match n.rsplit('-').next().and_then(|s| s.parse::<u32>().ok()) {
                        Some(pid) => !Path::new(&format!("/proc/{pid}")).exists(),
                        None => true,
                    }
            })
            .collect()
    }

    /// The complete templates, with their size on disk.
    pub fn list(&self) -> Result<Vec<ListedTemplate>, TemplateError> {
        let Ok(rd) = std::fs::read_dir(&self.dir) else {
            return Ok(vec![]);
        };
        let mut out = Vec::new();
        for e in rd.flatten() {
            let path = e.path();
            let record = path.join("template.toml");
            if e.file_name().to_string_lossy().starts_with('.') || !record.is_file() {
                continue;
            }
            let text = std::fs::read_to_string(&record).map_err(|source| TemplateError::Io {
                path: record.clone(),
                source,
            })?;
            let meta: TemplateMeta = toml::from_str(&text).map_err(|e| TemplateError::Meta {
                path: record.clone(),
                message: e.to_string(),
            })?;
            out.push(ListedTemplate {
                size_bytes: super::disk_usage(&path),
                path: path.join("root"),
                meta,
            });
        }
        out.sort_by_key(|a| a.meta.created);
        Ok(out)
    }
}

/// The table `zchroot list --templates` prints.
pub fn render_list(rows: &[ListedTemplate]) -> String {
    let mut out = format!(
        "{:<16} {:<8} {:<10} {:<8} {:>8} {:>9}  INCLUDE\n",
        "KEY", "ARCH", "RELEASE", "VARIANT", "PACKAGES", "SIZE"
    );
    for r in rows {
        out.push_str(&format!(
            "{:<16} {:<8} {:<10} {:<8} {:>8} {:>7.0}Mi  {}\n",
            &r.meta.key[..16.min(r.meta.key.len())],
            r.meta.arch,
            r.meta.release,
            r.meta.variant,
            r.meta.packages,
            r.size_bytes as f64 / (1 << 20) as f64,
            r.meta.include.join(",")
        ));
    }
    out
}

/// Copies the tree `from` to `to` as the owner of its files: inside the
/// user namespace when rootless (a sandbox job), else here.
pub fn copy_as_owner(
    exe: &Path,
    maps: &IdMaps,
    from: &Path,
    to: &Path,
) -> Result<(), TemplateError> {
    if !maps.helpers {
        return copy_tree(from, to).map(|_| ());
    }
    let job = Job::CopyTree {
        from: from.to_owned(),
        to: to.to_owned(),
    };
    let failed = |message: String| TemplateError::Job {
        path: from.to_owned(),
        message,
    };
    match spawn::run(exe, &SandboxPlan::host_job(job), maps) {
        Ok(0) => Ok(()),
        Ok(code) => Err(failed(format!("exit status {code}"))),
        Err(e) => Err(failed(e.to_string())),
    }
}

/// The template of a root about to be made: its key and what it holds.
#[derive(Debug, Clone)]
pub struct Template {
    pub templates: Templates,
    pub meta: TemplateMeta,
}

impl Template {
    /// The template for `inputs` (see [`key`]).
    pub fn new(dirs: &DataDirs, inputs: &KeyInputs) -> Template {
        Template {
            templates: Templates::new(dirs),
            meta: TemplateMeta {
                key: key(inputs),
                arch: inputs.arch.clone(),
                release: inputs.release.clone(),
                variant: inputs.variant.clone(),
                include: inputs.include.clone(),
                packages: inputs.packages.len(),
                created: super::now(),
            },
        }
    }

    /// The template's tree, when one was made before.
    pub fn find(&self) -> Option<PathBuf> {
        self.templates.find(&self.meta.key)
    }

    /// Copies the template's tree to `tree` (a new directory).
    pub fn restore(&self, tree: &Path, exe: &Path, maps: &IdMaps) -> Result<(), TemplateError> {
        let from = self.templates.dir.join(&self.meta.key).join("root");
        // Shared: a `--no-template` create does not replace it meanwhile.
        let _lock = self.lock(FlockArg::LockShared)?;
        copy_as_owner(exe, maps, &from, tree)
    }

    /// The lock of this key (`KEY.lock` beside the templates): shared while
    /// a template is copied, exclusive while it is put in place.
    fn lock(&self, arg: FlockArg) -> Result<Flock<std::fs::File>, TemplateError> {
        let path = self.templates.dir.join(format!("{}.lock", self.meta.key));
        let f = crate::paths::open_lock(&path).map_err(|source| TemplateError::Io {
            path: path.clone(),
            source,
        })?;
        Flock::lock(f, arg).map_err(|(_, e)| TemplateError::Io {
            path,
            source: e.into(),
        })
    }

    /// Keeps a copy of the finished `tree` as this template, unless there is
    /// one (or always, with `replace`). Assembled beside the templates and
    /// renamed into place when complete; on failure nothing is left.
    pub fn store(
        &self,
        tree: &Path,
        exe: &Path,
        maps: &IdMaps,
        replace: bool,
    ) -> Result<(), TemplateError> {
        let final_dir = self.templates.dir.join(&self.meta.key);
        if self.find().is_some() && !replace {
            return Ok(());
        }
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| TemplateError::Io { path, source }
        };
        crate::paths::create_private_dir_all(&self.templates.dir)
            .map_err(io(&self.templates.dir))?;
        for old in self.templates.leftovers() {
            let _ = remove_as_owner(exe, maps, &old);
        }
        let staging = self.templates.staging(&self.meta.key);
        std::fs::create_dir(&staging).map_err(io(&staging))?;
        let done = (|| {
            copy_as_owner(exe, maps, tree, &staging.join("root"))?;
            let record = staging.join("template.toml");
            let text = toml::to_string(&self.meta).expect("the record serializes");
            std::fs::write(&record, text).map_err(io(&record))?;
            let _lock = self.lock(FlockArg::LockExclusive)?;
            if final_dir.exists() && !replace {
                // Another create of the same key kept it meanwhile.
                return remove_as_owner(exe, maps, &staging).map_err(|message| {
                    TemplateError::Job {
                        path: staging.clone(),
                        message,
                    }
                });
            }
            if final_dir.exists() {
                let aside = self.templates.dir.join(format!(
                    ".old-{}-{}",
                    self.meta.key,
                    std::process::id()
                ));
                std::fs::rename(&final_dir, &aside).map_err(io(&final_dir))?;
                remove_as_owner(exe, maps, &aside).map_err(|message| TemplateError::Job {
                    path: aside.clone(),
                    message,
                })?;
            }
            std::fs::rename(&staging, &final_dir).map_err(io(&final_dir))
        })();
        if done.is_err() {
            let _ = remove_as_owner(exe, maps, &staging);
        }
        done
    }
}

/// Removes every template (`destroy --purge-cache`): their files belong to
/// the root's owners, so as those (inside the user namespace when rootless).
pub fn remove_all(dirs: &DataDirs, exe: &Path, maps: &IdMaps) -> Result<(), TemplateError> {
    let dir = Templates::new(dirs).dir;
    remove_as_owner(exe, maps, &dir).map_err(|message| TemplateError::Job { path: dir, message })
}

fn remove_as_owner(exe: &Path, maps: &IdMaps, path: &Path) -> Result<(), String> {
    super::create::remove_as_owner(exe, maps, path, None)
}

/// What a copy did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CopyStats {
    pub entries: u64,
    pub bytes: u64,
    /// Files whose data was reflinked rather than copied.
    pub cloned: u64,
}

/// A file already copied, for the hard links to it: its new directory
/// (relative to the new tree) and name.
type Linked = HashMap<(u64, u64), (PathBuf, OsString)>;

struct Copier {
    from: PathBuf,
    to_top: OwnedFd,
    dev: u64,
    links: Linked,
    stats: CopyStats,
}

/// Copies the tree `from` to `to` (which must not exist; its parent must),
/// keeping everything a root's tree holds (see the module text). Run it
/// where the tree's owners map (inside the user namespace when rootless).
/// A mount inside `from` is not entered.
pub fn copy_tree(from: &Path, to: &Path) -> Result<CopyStats, TemplateError> {
    let sys_err = |path: &Path| {
        let path = path.to_owned();
        move |source| TemplateError::Copy { path, source }
    };
    let src = sys::tree::open_dir_path(from).map_err(sys_err(from))?;
    let st = nix::sys::stat::fstat(src.as_fd())
        .map_err(|e| sys_err(from)(sys_call("fstat", from, e)))?;
    let (parent, name) = match (to.parent(), to.file_name()) {
        (Some(p), Some(n)) => (p, n),
        _ => {
            return Err(TemplateError::Io {
                path: to.to_owned(),
                source: std::io::Error::other("not a path to a new directory"),
            })
        }
    };
    let parent_fd = sys::tree::open_dir_path(parent).map_err(sys_err(parent))?;
    nix::sys::stat::mkdirat(parent_fd.as_fd(), name, Mode::from_bits_truncate(0o700))
        .map_err(|e| sys_err(to)(sys_call("mkdirat", to, e)))?;
    let dst = sys::tree::open_subdir(parent_fd.as_fd(), name).map_err(sys_err(to))?;
    let mut c = Copier {
        from: from.to_owned(),
        to_top: dst.try_clone().map_err(|source| TemplateError::Io {
            path: to.to_owned(),
            source,
        })?,
        dev: st.st_dev,
        links: HashMap::new(),
        stats: CopyStats::default(),
    };
    c.dir(src.as_fd(), dst.as_fd(), Path::new(""))?;
    c.finish(src.as_fd(), dst.as_fd(), &st, Path::new(""))?;
    Ok(c.stats)
}

fn sys_call(call: &str, path: &Path, errno: nix::errno::Errno) -> SysError {
    SysError {
        call: format!("{call}({:?})", path.display().to_string()),
        errno,
    }
}

impl Copier {
    fn err(&self, rel: &Path, call: &str) -> impl FnOnce(nix::errno::Errno) -> TemplateError {
        let path = self.from.join(rel);
        let call = format!("{call}({:?})", rel.display().to_string());
        move |errno| TemplateError::Copy {
            path,
            source: SysError { call, errno },
        }
    }

    /// Copies the entries of directory `src` into `dst`.
    fn dir(&mut self, src: BorrowedFd, dst: BorrowedFd, rel: &Path) -> Result<(), TemplateError> {
        let mut names = sys::tree::read_names(src).map_err(|source| TemplateError::Copy {
            path: self.from.join(rel),
            source,
        })?;
        names.sort();
        for name in names {
            let r = rel.join(&name);
            let st = nix::sys::stat::fstatat(
                src,
                name.as_os_str(),
                nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
            )
            .map_err(self.err(&r, "fstatat"))?;
            if st.st_dev != self.dev {
                continue; // a mount: not part of the tree
            }
            self.stats.entries += 1;
            self.entry(src, dst, rel, &name, &st)?;
        }
        Ok(())
    }

    fn entry(
        &mut self,
        src: BorrowedFd,
        dst: BorrowedFd,
        rel: &Path,
        name: &OsStr,
        st: &FileStat,
    ) -> Result<(), TemplateError> {
        let r = rel.join(name);
        let kind = SFlag::from_bits_truncate(st.st_mode & libc::S_IFMT);
        let perm = Mode::from_bits_truncate(0o600);
        match kind {
            SFlag::S_IFDIR => {
                nix::sys::stat::mkdirat(dst, name, Mode::from_bits_truncate(0o700))
                    .map_err(self.err(&r, "mkdirat"))?;
                let s =
                    sys::tree::open_subdir(src, name).map_err(|source| TemplateError::Copy {
                        path: self.from.join(&r),
                        source,
                    })?;
                let d =
                    sys::tree::open_subdir(dst, name).map_err(|source| TemplateError::Copy {
                        path: self.from.join(&r),
                        source,
                    })?;
                self.dir(s.as_fd(), d.as_fd(), &r)?;
                self.finish(s.as_fd(), d.as_fd(), st, &r)
            }
            SFlag::S_IFREG => {
                if st.st_nlink > 1 {
                    if let Some((dir, first)) = self.links.get(&(st.st_dev, st.st_ino)) {
                        let first_dir = open_beneath(self.to_top.as_fd(), dir)
                            .map_err(self.err(&r, "openat2"))?;
                        return nix::unistd::linkat(
                            first_dir.as_fd(),
                            first.as_os_str(),
                            dst,
                            name,
                            nix::fcntl::AtFlags::empty(),
                        )
                        .map_err(self.err(&r, "linkat"));
                    }
                    self.links
                        .insert((st.st_dev, st.st_ino), (rel.to_owned(), name.to_owned()));
                }
                let nofollow = OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
                let s = nix::fcntl::openat(src, name, OFlag::O_RDONLY | nofollow, Mode::empty())
                    .map_err(self.err(&r, "openat"))?;
                let d = nix::fcntl::openat(
                    dst,
                    name,
                    OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | nofollow,
                    perm,
                )
                .map_err(self.err(&r, "openat"))?;
                if sys::copy::clone_file(s.as_fd(), d.as_fd()) {
                    self.stats.cloned += 1;
                } else {
                    let mut sf = std::fs::File::from(s.try_clone().map_err(|e| self.io(&r, e))?);
                    let mut df = std::fs::File::from(d.try_clone().map_err(|e| self.io(&r, e))?);
                    std::io::copy(&mut sf, &mut df).map_err(|e| self.io(&r, e))?;
                }
                self.stats.bytes += st.st_size as u64;
                self.finish(s.as_fd(), d.as_fd(), st, &r)
            }
            SFlag::S_IFLNK => {
                let target =
                    nix::fcntl::readlinkat(src, name).map_err(self.err(&r, "readlinkat"))?;
                nix::unistd::symlinkat(target.as_os_str(), dst, name)
                    .map_err(self.err(&r, "symlinkat"))?;
                self.owner_and_times_at(dst, name, st, &r)
            }
            SFlag::S_IFCHR | SFlag::S_IFBLK | SFlag::S_IFIFO => {
                nix::sys::stat::mknodat(dst, name, kind, perm, st.st_rdev)
                    .map_err(self.err(&r, "mknodat"))?;
                self.owner_and_times_at(dst, name, st, &r)?;
                nix::sys::stat::fchmodat(
                    dst,
                    name,
                    Mode::from_bits_truncate(st.st_mode & 0o7777),
                    nix::sys::stat::FchmodatFlags::FollowSymlink,
                )
                .map_err(self.err(&r, "fchmodat"))
            }
            _ => Ok(()), // sockets belong to running programs, not to a tree
        }
    }

    fn io(&self, rel: &Path, source: std::io::Error) -> TemplateError {
        TemplateError::Io {
            path: self.from.join(rel),
            source,
        }
    }

    /// Owner, then mode (a chown clears setuid bits), extended attributes
    /// and times of the new file or directory `dst`, from `src` and `st`.
    fn finish(
        &self,
        src: BorrowedFd,
        dst: BorrowedFd,
        st: &FileStat,
        rel: &Path,
    ) -> Result<(), TemplateError> {
        nix::unistd::fchown(
            dst,
            Some(Uid::from_raw(st.st_uid)),
            Some(Gid::from_raw(st.st_gid)),
        )
        .map_err(self.err(rel, "fchown"))?;
        nix::sys::stat::fchmod(dst, Mode::from_bits_truncate(st.st_mode & 0o7777))
            .map_err(self.err(rel, "fchmod"))?;
        let attrs = sys::copy::xattrs(src).map_err(|source| TemplateError::Copy {
            path: self.from.join(rel),
            source,
        })?;
        for (name, value) in attrs {
            sys::copy::set_xattr(dst, &name, &value).map_err(|source| TemplateError::Copy {
                path: self.from.join(rel),
                source,
            })?;
        }
        let (atime, mtime) = times(st);
        nix::sys::stat::futimens(dst, &atime, &mtime).map_err(self.err(rel, "futimens"))
    }

    /// Owner and times of a symlink or device node, not following it.
    fn owner_and_times_at(
        &self,
        dst: BorrowedFd,
        name: &OsStr,
        st: &FileStat,
        rel: &Path,
    ) -> Result<(), TemplateError> {
        nix::unistd::fchownat(
            dst,
            name,
            Some(Uid::from_raw(st.st_uid)),
            Some(Gid::from_raw(st.st_gid)),
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .map_err(self.err(rel, "fchownat"))?;
        let (atime, mtime) = times(st);
        nix::sys::stat::utimensat(
            dst,
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

/// Opens the directory `rel` below `top` without following a symlink or
/// leaving `top` (a directory this copy made).
fn open_beneath(top: BorrowedFd, rel: &Path) -> Result<OwnedFd, nix::errno::Errno> {
    let rel = if rel.as_os_str().is_empty() {
        Path::new(".")
    } else {
        rel
    };
    let how = OpenHow::new()
        .flags(OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_SYMLINKS);
    nix::fcntl::openat2(top, rel, how)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs() -> KeyInputs {
        KeyInputs {
            arch: "arm64".into(),
            release: "trixie".into(),
            variant: "minbase".into(),
            include: vec![],
            recipe: "r".into(),
            packages: vec!["a 1 arm64 00".into(), "b 2 all 11".into()],
            sources: "Types: deb\n".into(),
            keyring: "kk".into(),
            ids: "root".into(),
        }
    }

    #[test]
    fn the_key_changes_with_every_input_and_not_with_package_order() {
        let base = key(&inputs());
        assert_eq!(base.len(), 64);
        let mut swapped = inputs();
        swapped.packages.reverse();
        assert_eq!(key(&swapped), base);
        let changes: [fn(&mut KeyInputs); 10] = [
            |i| i.arch = "armhf".into(),
            |i| i.release = "forky".into(),
            |i| i.variant = "buildd".into(),
            |i| i.include = vec!["vim".into()],
            |i| i.recipe = "r2".into(),
            |i| i.packages[0] = "a 1.1 arm64 00".into(),
            |i| i.packages.push("c 1 arm64 22".into()),
            |i| i.sources = "Types: deb\nComponents: main\n".into(),
            |i| i.keyring = "kj".into(),
            |i| i.ids = "uid 0:100000:65536".into(),
        ];
        let mut seen = std::collections::HashSet::from([base]);
        for change in changes {
            let mut i = inputs();
            change(&mut i);
            assert!(seen.insert(key(&i)), "{i:?} makes a key seen before");
        }
    }

    #[test]
    fn a_tree_is_copied_with_links_modes_and_times() {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let d = tempfile::tempdir().unwrap();
        let from = d.path().join("from");
        std::fs::create_dir_all(from.join("usr/bin")).unwrap();
        std::fs::create_dir_all(from.join("etc/ro")).unwrap();
        std::fs::write(from.join("usr/bin/a"), "hello").unwrap();
        std::fs::set_permissions(
            from.join("usr/bin/a"),
            std::fs::Permissions::from_mode(0o4755),
        )
        .unwrap();
        std::fs::hard_link(from.join("usr/bin/a"), from.join("etc/b")).unwrap();
        std::os::unix::fs::symlink("usr/bin", from.join("bin")).unwrap();
        std::os::unix::fs::symlink("/nowhere", from.join("etc/dangling")).unwrap();
        nix::unistd::mkfifo(&from.join("etc/fifo"), Mode::from_bits_truncate(0o640)).unwrap();
        std::fs::set_permissions(from.join("etc/ro"), std::fs::Permissions::from_mode(0o555))
            .unwrap();
        let to = d.path().join("to");
        let stats = copy_tree(&from, &to).unwrap();
        assert_eq!(stats.entries, 9);
        assert_eq!(stats.bytes, 5);
        assert_eq!(std::fs::read(to.join("bin/a")).unwrap(), b"hello");
        let a = std::fs::metadata(to.join("usr/bin/a")).unwrap();
        let b = std::fs::metadata(to.join("etc/b")).unwrap();
        assert_eq!(a.ino(), b.ino(), "hard link kept");
        assert_eq!(a.mode() & 0o7777, 0o4755);
        assert_eq!(
            a.mtime(),
            std::fs::metadata(from.join("usr/bin/a")).unwrap().mtime()
        );
        assert_eq!(
            std::fs::read_link(to.join("bin")).unwrap(),
            Path::new("usr/bin")
        );
        assert_eq!(
            std::fs::read_link(to.join("etc/dangling")).unwrap(),
            Path::new("/nowhere")
        );
        let fifo = std::fs::symlink_metadata(to.join("etc/fifo")).unwrap();
        assert_eq!(fifo.mode(), libc::S_IFIFO | 0o640);
        let ro = std::fs::metadata(to.join("etc/ro")).unwrap();
        assert_eq!(ro.mode() & 0o7777, 0o555);
        let e = copy_tree(&from, &to).unwrap_err().to_string();
        assert!(e.contains("mkdirat") && e.contains("File exists"), "{e}");
    }

    #[test]
    fn templates_are_found_only_when_complete_and_listed_with_their_size() {
        let d = tempfile::tempdir().unwrap();
        let t = Templates {
            dir: d.path().join("templates"),
        };
        assert!(t.find("k").is_none());
        assert!(t.list().unwrap().is_empty());
        std::fs::create_dir_all(t.dir.join("k/root/etc")).unwrap();
        std::fs::create_dir_all(t.staging("j")).unwrap();
        std::fs::create_dir_all(t.dir.join(".staging-i-999999999")).unwrap();
        assert!(t.find("k").is_none(), "no record: half made");
        assert_eq!(t.leftovers(), [t.dir.join(".staging-i-999999999")]);
        let meta = TemplateMeta {
            key: "k".repeat(64),
            arch: "amd64".into(),
            release: "test".into(),
            variant: "minbase".into(),
            include: vec!["vim".into()],
            packages: 7,
            created: 1,
        };
        std::fs::write(
            t.dir.join("k/template.toml"),
            toml::to_string(&meta).unwrap(),
        )
        .unwrap();
        assert_eq!(t.find("k").unwrap(), t.dir.join("k/root"));
        let l = t.list().unwrap();
        assert_eq!(l.len(), 1);
        assert_eq!(l[0].meta, meta);
        let table = render_list(&l);
        assert!(table.starts_with("KEY "), "{table}");
        assert!(
            table
                .lines()
                .nth(1)
                .unwrap()
                .starts_with("kkkkkkkkkkkkkkkk amd64    test"),
            "{table}"
        );
        assert!(table.ends_with("vim\n"), "{table}");
    }
}
