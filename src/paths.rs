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

/// Creates `dir` and its missing parents with mode 0700 (existing ones
/// are left as they are): zchroot's state and cache are private to their
/// user, as `doctor` checks.
pub fn create_private_dir_all(dir: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
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
