//! The roots on disk: where each lives (`state/roots/NAME/root`), what it
//! is (`state/roots/NAME/zchroot.toml`), locks so one root has one writer,
//! and leftovers of interrupted runs.

pub mod create;
pub mod dpkg_progress;
pub mod hooks;
pub mod native;
pub mod pathfilter;
pub mod register;
pub mod spec;
pub mod template;

use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use crate::paths::DataDirs;

#[derive(Debug, thiserror::Error)]
pub enum RootsError {
    #[error("bad root name '{0}': use lowercase letters, digits, '.', '_' and '-' (at most 64), starting with a letter or digit")]
    BadName(String),
    #[error("no root named '{name}'{known}")]
    Unknown { name: String, known: String },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: bad root metadata: {message}", path.display())]
    Meta { path: PathBuf, message: String },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> RootsError + '_ {
    move |source| RootsError::Io {
        path: path.to_owned(),
        source,
    }
}

/// What a root is, written when it is complete.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootMeta {
    pub name: String,
    pub arch: String,
    pub release: String,
    pub variant: String,
    #[serde(default)]
    pub include: Vec<String>,
    pub mirror: Option<String>,
    pub keyring: Option<PathBuf>,
    /// Seconds since the epoch.
    pub created: u64,
    pub packages: usize,
    /// The host uid that made it; files inside belong to its subuid range
    /// (rootless) or to real ids (root, uid 0).
    pub owner: u32,
}

#[cfg(test)]
impl RootMeta {
    /// The record of a trixie arm64 minbase root named `name`, for tests.
    pub fn example(name: &str) -> Self {
        RootMeta {
            name: name.into(),
            arch: "arm64".into(),
            release: "trixie".into(),
            variant: "minbase".into(),
            include: vec![],
            mirror: None,
            keyring: None,
            created: 0,
            packages: 100,
            owner: 1000,
        }
    }
}

pub fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 64
        && n.as_bytes()[0].is_ascii_alphanumeric()
        && n.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
}

/// The registry of roots under a state directory.
#[derive(Debug, Clone)]
pub struct Roots {
    pub dir: PathBuf,
    locks: PathBuf,
}

/// A held lock on a root's name.
pub struct RootLock {
    _lock: Flock<File>,
}

/// One row of `list`.
#[derive(Debug, Clone, Serialize)]
pub struct Listed {
    #[serde(flatten)]
    pub meta: RootMeta,
    pub path: PathBuf,
    pub size_bytes: u64,
    pub last_used: Option<u64>,
}

impl Roots {
    pub fn new(dirs: &DataDirs) -> Roots {
        Roots {
            dir: dirs.state.join("roots"),
            locks: dirs.state.join("locks"),
        }
    }

    /// Makes the folder that holds the roots (and the state directory, when
    /// it is new) private to this user, mode 0700, as podman keeps its
    /// storage: nobody else may reach anything inside a root (rootless,
    /// the packages' setuid programs are setuid to this user on the host).
    pub fn make_private(&self) -> Result<(), RootsError> {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        if let Some(state) = self.dir.parent() {
            crate::paths::create_private_dir_all(state).map_err(io(state))?;
        }
        match std::fs::DirBuilder::new().mode(0o700).create(&self.dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io(&self.dir)(e)),
        }
        let meta = std::fs::symlink_metadata(&self.dir).map_err(io(&self.dir))?;
        if !meta.is_dir() {
            return Err(RootsError::Io {
                path: self.dir.clone(),
                source: std::io::Error::other("not a directory"),
            });
        }
        if meta.permissions().mode() & 0o7777 != 0o700 {
            std::fs::set_permissions(&self.dir, std::fs::Permissions::from_mode(0o700))
                .map_err(io(&self.dir))?;
        }
        Ok(())
    }

    pub fn check_name(name: &str) -> Result<(), RootsError> {
        if valid_name(name) {
            Ok(())
        } else {
            Err(RootsError::BadName(name.into()))
        }
    }

    /// `state/roots/NAME`: the root's directory (metadata and tree).
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// `state/roots/NAME/root`: the Debian tree.
    pub fn tree(&self, name: &str) -> PathBuf {
        self.path(name).join("root")
    }

    pub fn exists(&self, name: &str) -> bool {
        self.path(name).join("zchroot.toml").is_file()
    }

    /// A staging directory for `name`, unique to this process.
    pub fn staging(&self, name: &str) -> PathBuf {
        self.dir
            .join(format!(".staging-{name}-{}", std::process::id()))
    }

    /// Where a root goes while it is being removed.
    pub fn doomed(&self, name: &str) -> PathBuf {
        self.dir
            .join(format!(".destroy-{name}-{}", std::process::id()))
    }

    fn lock(&self, name: &str, arg: FlockArg) -> Result<Option<RootLock>, RootsError> {
        let path = self.locks.join(format!("{name}.lock"));
        let f = crate::paths::open_lock(&path).map_err(io(&path))?;
        match Flock::lock(f, arg) {
            Ok(l) => Ok(Some(RootLock { _lock: l })),
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => Ok(None),
            Err((_, e)) => Err(io(&path)(e.into())),
        }
    }

    /// The exclusive lock of `name` (create, destroy, build), waiting for
    /// others; `waiting` is called once if someone else holds it.
    pub fn lock_exclusive(
        &self,
        name: &str,
        waiting: impl FnOnce(),
    ) -> Result<RootLock, RootsError> {
        if let Some(l) = self.lock(name, FlockArg::LockExclusiveNonblock)? {
            return Ok(l);
        }
        waiting();
        Ok(self
            .lock(name, FlockArg::LockExclusive)?
            .expect("blocking lock"))
    }

    /// A shared lock (run): many runs at once, none during create or destroy.
    pub fn lock_shared(&self, name: &str, waiting: impl FnOnce()) -> Result<RootLock, RootsError> {
        if let Some(l) = self.lock(name, FlockArg::LockSharedNonblock)? {
            return Ok(l);
        }
        waiting();
        Ok(self
            .lock(name, FlockArg::LockShared)?
            .expect("blocking lock"))
    }

    /// Leftovers of interrupted runs (`.staging-NAME-PID`, `.destroy-NAME-PID`)
    /// whose process is gone.
    pub fn leftovers(&self) -> Vec<PathBuf> {
        let Ok(rd) = std::fs::read_dir(&self.dir) else {
            return vec![];
        };
        rd.filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| {
                let n = p.file_name().unwrap().to_string_lossy();
                if !(n.starts_with(".staging-") || n.starts_with(".destroy-")) {
                    return false;
                }
                let pid: Option<i32> = n.rsplit('-').next().and_then(|s| s.parse().ok());
                match pid {
                    Some(pid) => !Path::new(&format!("/proc/{pid}")).exists(),
                    None => true,
                }
            })
            .collect()
    }

    pub fn meta(&self, name: &str) -> Result<RootMeta, RootsError> {
        let path = self.path(name).join("zchroot.toml");
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let names: Vec<String> = self.names();
                return Err(RootsError::Unknown {
                    name: name.into(),
                    known: if names.is_empty() {
                        "; there are none yet: make one with `zchroot create --arch ARCH`".into()
                    } else {
                        format!(": known are {}", names.join(", "))
                    },
                });
            }
            Err(e) => return Err(io(&path)(e)),
        };
        toml::from_str(&text).map_err(|e| RootsError::Meta {
            path,
            message: e.to_string(),
        })
    }

    pub fn write_meta(&self, dir: &Path, meta: &RootMeta) -> Result<(), RootsError> {
        let path = dir.join("zchroot.toml");
        let text = toml::to_string(meta).expect("metadata serializes");
        std::fs::write(&path, text).map_err(io(&path))
    }

    /// Names of complete roots, sorted.
    pub fn names(&self) -> Vec<String> {
        let Ok(rd) = std::fs::read_dir(&self.dir) else {
            return vec![];
        };
        let mut v: Vec<String> = rd
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with('.') && self.exists(n))
            .collect();
        v.sort();
        v
    }

    /// Records that a root was used now.
    pub fn touch(&self, name: &str) {
        let _ = std::fs::write(self.path(name).join("last-used"), now().to_string());
    }

    pub fn list(&self) -> Result<Vec<Listed>, RootsError> {
        self.names()
            .into_iter()
            .map(|n| {
                let meta = self.meta(&n)?;
                let last_used = std::fs::read_to_string(self.path(&n).join("last-used"))
                    .ok()
                    .and_then(|s| s.trim().parse().ok());
                Ok(Listed {
                    size_bytes: disk_usage(&self.path(&n)),
                    path: self.tree(&n),
                    meta,
                    last_used,
                })
            })
            .collect()
    }
}

pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Bytes on disk under `dir` (blocks), not crossing into other filesystems,
/// counting each hard-linked file once; what cannot be read is skipped.
pub fn disk_usage(dir: &Path) -> u64 {
    fn walk(dir: &Path, dev: u64, seen: &mut std::collections::HashSet<(u64, u64)>) -> u64 {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return 0;
        };
        let mut total = 0;
        for e in rd.flatten() {
            let Ok(m) = std::fs::symlink_metadata(e.path()) else {
                continue;
            };
            if m.dev() != dev {
                continue;
            }
            if m.nlink() > 1 && !m.is_dir() && !seen.insert((m.dev(), m.ino())) {
                continue;
            }
            total += m.blocks() * 512;
            if m.is_dir() {
                total += walk(&e.path(), dev, seen);
            }
        }
        total
    }
    match std::fs::symlink_metadata(dir) {
        Ok(m) => m.blocks() * 512 + walk(dir, m.dev(), &mut Default::default()),
        Err(_) => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert!(valid_name("trixie-arm64"));
        assert!(valid_name("my.root_2"));
        assert!(!valid_name(""));
        assert!(!valid_name("../x"));
        assert!(!valid_name(".hidden"));
        assert!(!valid_name("Upper"));
        assert!(!valid_name(&"a".repeat(65)));
    }

    #[test]
    fn registry_lists_complete_roots_only_and_says_what_exists() {
        let t = tempfile::tempdir().unwrap();
        let dirs = DataDirs {
            state: t.path().join("state"),
            cache: t.path().join("cache"),
        };
        let roots = Roots::new(&dirs);
        let e = roots.meta("nope").unwrap_err().to_string();
        assert!(e.contains("there are none yet"), "{e}");
        std::fs::create_dir_all(roots.tree("a")).unwrap();
        let meta = RootMeta {
            created: 1,
            packages: 78,
            owner: 0,
            ..RootMeta::example("a")
        };
        roots.write_meta(&roots.path("a"), &meta).unwrap();
        std::fs::create_dir_all(roots.dir.join(".staging-b-999999999")).unwrap();
        std::fs::create_dir_all(roots.path("half")).unwrap(); // no metadata
        assert_eq!(roots.names(), ["a"]);
        assert_eq!(roots.meta("a").unwrap(), meta);
        let e = roots.meta("b").unwrap_err().to_string();
        assert_eq!(e, "no root named 'b': known are a");
        assert_eq!(roots.leftovers(), [roots.dir.join(".staging-b-999999999")]);
        let l = roots.list().unwrap();
        assert_eq!(l.len(), 1);
        assert!(l[0].size_bytes > 0);
    }

    #[test]
    fn locks_exclude_each_other() {
        let t = tempfile::tempdir().unwrap();
        let dirs = DataDirs {
            state: t.path().join("state"),
            cache: t.path().join("cache"),
        };
        let roots = Roots::new(&dirs);
        let held = roots.lock_exclusive("a", || panic!("free")).unwrap();
        assert!(roots
            .lock("a", FlockArg::LockSharedNonblock)
            .unwrap()
            .is_none());
        drop(held);
        let s1 = roots.lock_shared("a", || panic!("free")).unwrap();
        let _s2 = roots
            .lock_shared("a", || panic!("shared locks coexist"))
            .unwrap();
        assert!(roots
            .lock("a", FlockArg::LockExclusiveNonblock)
            .unwrap()
            .is_none());
        drop(s1);
    }
}
