//! Where zchroot keeps its data: state (roots, repositories) and cache
//! (downloads, indexes). Pure (the caller passes in the environment),
//! but for [`writable`], which asks the kernel.

use std::path::{Path, PathBuf};

/// The two data directories.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataDirs {
    pub state: PathBuf,
    pub cache: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum PathsError {
    #[error("cannot find a home for zchroot's data: HOME is not set\nhelp: set HOME, or ZCHROOT_HOME=DIR to keep everything under DIR")]
    NoHome,
    #[error("cannot write zchroot's {what} directory {}: {}: {reason}\nhelp: let your user write {} (e.g. sudo chown -R $USER {}), or set ZCHROOT_HOME=DIR to a directory you can write", dir.display(), blocker.display(), blocker.display(), blocker.display())]
    NotWritable {
        /// `state`, `cache` or `config`.
        what: &'static str,
        dir: PathBuf,
        /// The directory that refuses: `dir`, or the parent it would be
        /// made in.
        blocker: PathBuf,
        reason: String,
    },
}

/// Whether this user can write `dir`: it, or the nearest of its parents
/// that exists (where zchroot would make it), is a directory the user may
/// write and enter. The error names the directory that refuses.
pub fn writable(dir: &Path) -> Result<(), (PathBuf, std::io::Error)> {
    use nix::unistd::{access, AccessFlags};
    let mut probe = dir;
    while !probe.exists() {
        match probe.parent() {
            Some(p) => probe = p,
            None => break,
        }
    }
    if !probe.is_dir() {
        let e = std::io::Error::from_raw_os_error(libc::ENOTDIR);
        return Err((probe.to_owned(), e));
    }
    access(probe, AccessFlags::W_OK | AccessFlags::X_OK)
        .map_err(|e| (probe.to_owned(), std::io::Error::from(e)))
}

/// [`writable`], as the error commands give.
pub fn check_writable(what: &'static str, dir: &Path) -> Result<(), PathsError> {
    writable(dir).map_err(|(blocker, e)| PathsError::NotWritable {
        what,
        dir: dir.to_owned(),
        blocker,
        reason: e.to_string(),
    })
}

/// `ZCHROOT_HOME` as given: an absolute path as it is; a relative one is
/// taken from the working directory, made absolute once (the timer units,
/// and sandboxes that run elsewhere, must see the same place).
pub fn zchroot_home(value: &std::ffi::OsStr) -> Option<PathBuf> {
    if value.is_empty() {
        return None;
    }
    let p = PathBuf::from(value);
    Some(std::path::absolute(&p).unwrap_or(p))
}

/// The environment that decides the data directories.
#[derive(Debug, Clone, Default)]
pub struct DirsEnv {
    pub zchroot_home: Option<PathBuf>,
    pub xdg_data_home: Option<PathBuf>,
    pub xdg_cache_home: Option<PathBuf>,
    pub xdg_config_home: Option<PathBuf>,
    pub home: Option<PathBuf>,
    pub is_root: bool,
}

impl DirsEnv {
    /// Reads the process environment.
    pub fn from_process() -> Self {
        let var = |k: &str| {
            std::env::var_os(k)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
                .filter(|p| p.is_absolute())
        };
        DirsEnv {
            zchroot_home: std::env::var_os("ZCHROOT_HOME").and_then(|v| zchroot_home(&v)),
            xdg_data_home: var("XDG_DATA_HOME"),
            xdg_cache_home: var("XDG_CACHE_HOME"),
            xdg_config_home: var("XDG_CONFIG_HOME"),
            home: var("HOME"),
            is_root: nix::unistd::geteuid().is_root(),
        }
    }
}

impl DataDirs {
    /// `ZCHROOT_HOME=DIR` → `DIR/state`, `DIR/cache`; root → `/var/lib/zchroot`,
    /// `/var/cache/zchroot`; a user → `$XDG_DATA_HOME/zchroot`,
    /// `$XDG_CACHE_HOME/zchroot` (defaulting to `~/.local/share`, `~/.cache`).
    pub fn resolve(env: &DirsEnv) -> Result<Self, PathsError> {
        if let Some(home) = &env.zchroot_home {
            return Ok(DataDirs {
                state: home.join("state"),
                cache: home.join("cache"),
            });
        }
        if env.is_root {
            return Ok(DataDirs {
                state: "/var/lib/zchroot".into(),
                cache: "/var/cache/zchroot".into(),
            });
        }
        let home = env.home.as_ref();
        let data = match (&env.xdg_data_home, home) {
            (Some(d), _) => d.clone(),
            (None, Some(h)) => h.join(".local/share"),
            (None, None) => return Err(PathsError::NoHome),
        };
        let cache = match (&env.xdg_cache_home, home) {
            (Some(d), _) => d.clone(),
            (None, Some(h)) => h.join(".cache"),
            (None, None) => return Err(PathsError::NoHome),
        };
        Ok(DataDirs {
            state: data.join("zchroot"),
            cache: cache.join("zchroot"),
        })
    }

    /// Where the user's own settings (targets) live: `ZCHROOT_HOME/config`;
    /// root → `/etc/zchroot`; a user → `$XDG_CONFIG_HOME/zchroot`
    /// (default `~/.config/zchroot`).
    pub fn config(env: &DirsEnv) -> Result<PathBuf, PathsError> {
        if let Some(home) = &env.zchroot_home {
            return Ok(home.join("config"));
        }
        if env.is_root {
            return Ok("/etc/zchroot".into());
        }
        match (&env.xdg_config_home, &env.home) {
            (Some(d), _) => Ok(d.join("zchroot")),
            (None, Some(h)) => Ok(h.join(".config/zchroot")),
            (None, None) => Err(PathsError::NoHome),
        }
    }

    /// The user's config file: `config.toml` in the [`config`](Self::config)
    /// directory, beside `targets/`.
    pub fn config_file(env: &DirsEnv) -> Result<PathBuf, PathsError> {
        Ok(Self::config(env)?.join("config.toml"))
    }

    /// Refuses, naming the directory, when this user cannot write the
    /// state or the cache directory.
    pub fn check_writable(&self) -> Result<(), PathsError> {
        check_writable("state", &self.state)?;
        check_writable("cache", &self.cache)
    }

    /// Content-addressed downloads: `cache/blobs/<sha256>`.
    pub fn blobs(&self) -> PathBuf {
        self.cache.join("blobs")
    }

    /// The last accepted Release `Date` of each mirror and suite.
    pub fn archive_dates(&self) -> PathBuf {
        self.state.join("archive-dates")
    }

    /// Logs of failed creates and of builds.
    pub fn logs(&self) -> PathBuf {
        self.state.join("logs")
    }
}

/// Creates `dir` and its missing parents, each with mode 0700 from its
/// `mkdir` (never a chmod after: there is no moment another user could
/// open it); existing ones are left as they are. Every directory zchroot
/// makes for itself under its state, cache and config directories is made
/// so: they are private to their user, as `doctor` checks.
pub fn create_private_dir_all(dir: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// Opens the lock file `path` to `flock` it, creating it (and its missing
/// directories, 0700) when missing: mode 0600 from its creation, never
/// through a symlink (O_NOFOLLOW), closed on exec. Another user who could
/// open a lock file could hold its lock, and `run` or `resolve` would wait
/// for ever: a lock file of this user's that others may open (made by an
/// older zchroot) is made 0600 here too.
pub fn open_lock(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        create_private_dir_all(dir)?;
    }
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)?;
    let m = f.metadata()?;
    if !m.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    if m.mode() & 0o077 != 0 && m.uid() == nix::unistd::geteuid().as_raw() {
        f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zchroot_home_wins_over_everything() {
        let env = DirsEnv {
            zchroot_home: Some("/z".into()),
            xdg_data_home: Some("/x".into()),
            is_root: true,
            ..Default::default()
        };
        let d = DataDirs::resolve(&env).unwrap();
        assert_eq!(d.state, PathBuf::from("/z/state"));
        assert_eq!(d.cache, PathBuf::from("/z/cache"));
    }

    #[test]
    fn a_relative_zchroot_home_is_taken_from_the_working_directory() {
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(
            zchroot_home(std::ffi::OsStr::new("relhome")),
            Some(cwd.join("relhome"))
        );
        assert_eq!(
            zchroot_home(std::ffi::OsStr::new("/z")),
            Some(PathBuf::from("/z"))
        );
        assert_eq!(zchroot_home(std::ffi::OsStr::new("")), None);
    }

    #[test]
    fn writability_is_judged_where_the_directory_would_be_made() {
        let d = tempfile::tempdir().unwrap();
        writable(&d.path().join("a/b/c")).unwrap();
        let file = d.path().join("file");
        std::fs::write(&file, "").unwrap();
        let (blocker, e) = writable(&file.join("state")).unwrap_err();
        assert_eq!(blocker, file);
        assert_eq!(e.raw_os_error(), Some(libc::ENOTDIR));
        let e = check_writable("state", &file.join("state"))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with(&format!(
                "cannot write zchroot's state directory {}/state: {}: ",
                file.display(),
                file.display()
            )),
            "{e}"
        );
        assert!(e.contains("\nhelp: let your user write "), "{e}");
    }

    /// Modes as made under the usual umask, 022.
    fn with_umask_022<T>(f: impl FnOnce() -> T) -> T {
        use nix::sys::stat::{umask, Mode};
        let old = umask(Mode::from_bits_truncate(0o022));
        let out = f();
        umask(old);
        out
    }

    fn mode(p: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn private_directories_are_0700_from_their_creation() {
        let d = tempfile::tempdir().unwrap();
        let deep = d.path().join("state/archive-dates/x");
        with_umask_022(|| create_private_dir_all(&deep)).unwrap();
        for p in ["state", "state/archive-dates", "state/archive-dates/x"] {
            assert_eq!(mode(&d.path().join(p)), 0o700, "{p}");
        }
        // An existing directory is left as it is.
        let shared = d.path().join("shared");
        std::fs::create_dir(&shared).unwrap();
        let before = mode(&shared);
        create_private_dir_all(&shared).unwrap();
        assert_eq!(mode(&shared), before);
    }

    #[test]
    fn lock_files_are_0600_in_0700_directories_and_never_followed() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let lock = d.path().join("state/locks/a.lock");
        let f = with_umask_022(|| open_lock(&lock)).unwrap();
        assert_eq!(mode(&lock), 0o600);
        assert_eq!(mode(&d.path().join("state/locks")), 0o700);
        assert_eq!(mode(&d.path().join("state")), 0o700);
        let flags = nix::fcntl::fcntl(&f, nix::fcntl::FcntlArg::F_GETFD).unwrap();
        assert_ne!(flags & libc::FD_CLOEXEC, 0, "not close-on-exec");
        nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusiveNonblock).unwrap();
        // A lock file an older zchroot made 0644 becomes 0600.
        let old = d.path().join("state/locks/b.lock");
        std::fs::write(&old, "").unwrap();
        std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o644)).unwrap();
        open_lock(&old).unwrap();
        assert_eq!(mode(&old), 0o600);
        // A symlink in its place is refused, its target untouched.
        let target = d.path().join("target");
        std::fs::write(&target, "").unwrap();
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o644)).unwrap();
        let link = d.path().join("state/locks/c.lock");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let e = open_lock(&link).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ELOOP), "{e}");
        assert_eq!(mode(&target), 0o644);
    }

    #[test]
    fn root_uses_var() {
        let env = DirsEnv {
            home: Some("/root".into()),
            is_root: true,
            ..Default::default()
        };
        let d = DataDirs::resolve(&env).unwrap();
        assert_eq!(d.state, PathBuf::from("/var/lib/zchroot"));
        assert_eq!(d.cache, PathBuf::from("/var/cache/zchroot"));
    }

    #[test]
    fn user_uses_xdg_with_home_defaults() {
        let env = DirsEnv {
            home: Some("/home/a".into()),
            xdg_cache_home: Some("/c".into()),
            ..Default::default()
        };
        let d = DataDirs::resolve(&env).unwrap();
        assert_eq!(d.state, PathBuf::from("/home/a/.local/share/zchroot"));
        assert_eq!(d.cache, PathBuf::from("/c/zchroot"));
        assert!(DataDirs::resolve(&DirsEnv::default()).is_err());
        assert_eq!(
            DataDirs::config(&env).unwrap(),
            PathBuf::from("/home/a/.config/zchroot")
        );
        let env = DirsEnv {
            xdg_config_home: Some("/cfg".into()),
            ..env
        };
        assert_eq!(
            DataDirs::config(&env).unwrap(),
            PathBuf::from("/cfg/zchroot")
        );
        assert_eq!(
            DataDirs::config_file(&env).unwrap(),
            PathBuf::from("/cfg/zchroot/config.toml")
        );
    }
}
