//! The commands as a layer of the library: each takes a [`Ctx`] built once
//! by the binary, calls the layers below and returns data the binary
//! renders, so tests can call a command without spawning zchroot.

pub mod boards;
pub mod build;
pub mod doctor;
pub mod resolve;
pub mod roots;
pub mod run;
pub mod timer;

use std::path::{Path, PathBuf};

use crate::archive::fetch::FetchOptions;
use crate::manifest::Manifests;
use crate::paths::{DataDirs, DirsEnv, PathsError};
use crate::report::Reporter;
use crate::rootfs::{RootLock, Roots, RootsError};
use crate::sandbox;

/// What every command needs, made once: the manifests, where zchroot keeps
/// its data, how to download, zchroot's own executable (sandbox helpers run
/// it again) and where progress goes.
pub struct Ctx<'r> {
    pub manifests: Manifests,
    /// The process environment the directories came from (the timer and the
    /// config directory need it too).
    pub env: DirsEnv,
    pub dirs: DataDirs,
    pub options: FetchOptions,
    pub exe: PathBuf,
    pub reporter: &'r dyn Reporter,
}

/// A layer that builds something from a spec with what every builder
/// takes: the manifests, the data directories, the download options,
/// zchroot's own executable and the reporter.
pub type Layer<S, T, E> =
    fn(&Manifests, &S, &DataDirs, FetchOptions, &Path, &dyn Reporter) -> Result<T, E>;

/// What the command line says about the network; the user's config file
/// fills in what it leaves out.
#[derive(Debug, Clone, Default)]
pub struct NetArgs {
    /// `--parallel`.
    pub parallel: Option<usize>,
    /// `--security-mirror`.
    pub security_mirror: Option<String>,
}

impl<'r> Ctx<'r> {
    /// The context of a command: the data directories from `env`, the
    /// user's config file read (see [`crate::config`]), and the command
    /// line's network options over it.
    pub fn load(
        manifests: Manifests,
        env: DirsEnv,
        net: &NetArgs,
        exe: PathBuf,
        reporter: &'r dyn Reporter,
    ) -> Result<Self, CmdError> {
        let dirs = DataDirs::resolve(&env)?;
        let config = crate::config::load(&DataDirs::config_file(&env)?)?;
        if let Some(m) = &net.security_mirror {
            crate::archive::fetch::check_mirror(m).map_err(|message| CmdError::BadMirror {
                option: "--security-mirror",
                url: m.clone(),
                message,
            })?;
        }
        let defaults = FetchOptions::default();
        let options = FetchOptions {
            parallel: net
                .parallel
                .or(config.parallel_downloads.map(usize::from))
                .unwrap_or(defaults.parallel),
            proxy: config.proxy.clone(),
            ..defaults
        };
        Ok(Ctx {
            manifests: manifests.with_mirrors(config.mirrors(net.security_mirror.as_deref())),
            env,
            dirs,
            options,
            exe,
            reporter,
        })
    }

    /// Calls `layer` on `spec` with this context.
    pub fn call<S, T, E>(&self, layer: Layer<S, T, E>, spec: &S) -> Result<T, CmdError>
    where
        CmdError: From<E>,
    {
        Ok(layer(
            &self.manifests,
            spec,
            &self.dirs,
            self.options.clone(),
            &self.exe,
            self.reporter,
        )?)
    }

    /// The roots under the state directory.
    pub fn roots(&self) -> Roots {
        Roots::new(&self.dirs)
    }

    /// The targets of `zchroot target` (config/targets/NAME.toml).
    pub fn targets(&self) -> Result<crate::targets::Targets, CmdError> {
        Ok(crate::targets::Targets::new(&self.config_dir()?))
    }

    pub fn config_dir(&self) -> Result<PathBuf, CmdError> {
        Ok(DataDirs::config(&self.env)?)
    }

    /// Removes the qemu entries a killed run left in the host's binfmt_misc
    /// (kernels before 6.7); a failure is a warning, returned for the caller
    /// to show.
    pub fn remove_stale_binfmt(&self) -> Option<String> {
        sandbox::host_binfmt::remove_stale(&self.exe)
            .err()
            .map(|e| e.to_string())
    }
}

/// A root given by the name `zchroot create` gave it, or as a directory
/// (`--dir`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootRef {
    Name(String),
    Dir(PathBuf),
}

impl RootRef {
    /// From the command line's NAME and `--dir` (clap requires one of them).
    pub fn from_args(name: Option<&str>, dir: Option<&Path>) -> Option<RootRef> {
        match (name, dir) {
            (Some(n), _) => Some(RootRef::Name(n.to_string())),
            (None, Some(d)) => Some(RootRef::Dir(d.to_path_buf())),
            (None, None) => None,
        }
    }
}

/// A root found by [`RootRef`]: its tree, what its record says (for a name)
/// and the shared lock that keeps it from being changed while in use.
pub struct Found {
    pub tree: PathBuf,
    pub meta: Option<crate::rootfs::RootMeta>,
    pub lock: Option<RootLock>,
}

/// How a command holds a root it found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hold {
    /// Beside other runs (`run`, `shell`).
    Shared,
    /// Alone: no sandbox runs in the root meanwhile (`export` reads the
    /// tree as it is, so nothing may change it underneath).
    Exclusive,
}

/// Finds a root by name (checked, locked as `hold` says, its record read)
/// or takes a directory as it is.
pub fn find_root(ctx: &Ctx, root: &RootRef, hold: Hold) -> Result<Found, CmdError> {
    match root {
        RootRef::Name(name) => {
            let roots = ctx.roots();
            Roots::check_name(name)?;
            let wait = || {
                ctx.reporter.warn(&format!(
                    "waiting: '{name}' is being created, changed or used"
                ))
            };
            let lock = match hold {
                Hold::Shared => roots.lock_shared(name, wait)?,
                Hold::Exclusive => roots.lock_exclusive(name, wait)?,
            };
            let meta = roots.meta(name)?;
            Ok(Found {
                tree: roots.tree(name),
                meta: Some(meta),
                lock: Some(lock),
            })
        }
        RootRef::Dir(dir) => Ok(Found {
            tree: dir.clone(),
            meta: None,
            lock: None,
        }),
    }
}

/// Why a command failed. The layers' own errors pass through unchanged
/// (their messages and causes are what the user sees).
#[derive(Debug, thiserror::Error)]
pub enum CmdError {
    #[error(transparent)]
    Interrupted(#[from] crate::interrupt::Interrupted),
    #[error(transparent)]
    Paths(#[from] PathsError),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("--every {0}: without systemd, zchroot gives a crontab line only for hourly, daily, weekly or monthly\nhelp: give one of those, or write your own crontab line running `zchroot -q update`")]
    CronEvery(String),
    #[error("{option} {url}: {message}")]
    BadMirror {
        option: &'static str,
        url: String,
        message: String,
    },
    #[error(transparent)]
    Manifest(#[from] crate::manifest::ManifestError),
    #[error(transparent)]
    Spec(Box<crate::rootfs::spec::SpecError>),
    #[error(transparent)]
    Roots(#[from] RootsError),
    #[error(transparent)]
    Create(Box<crate::rootfs::create::CreateError>),
    #[error(transparent)]
    Bind(#[from] sandbox::mounts::BindError),
    #[error(transparent)]
    IdMap(#[from] sandbox::idmap::IdMapError),
    #[error(transparent)]
    Sandbox(Box<sandbox::SandboxError>),
    #[error(transparent)]
    Spawn(#[from] sandbox::spawn::SpawnError),
    #[error(transparent)]
    Build(Box<crate::kmod::BuildError>),
    #[error(transparent)]
    Export(#[from] crate::export::ExportError),
    #[error(transparent)]
    Targets(#[from] crate::targets::TargetsError),
    #[error(transparent)]
    Key(#[from] crate::repo::key::KeyError),
    #[error(transparent)]
    Teardown(#[from] crate::teardown::TeardownError),
    #[error(transparent)]
    Template(#[from] crate::rootfs::template::TemplateError),
    #[error("{}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: not a directory holding a root", path.display())]
    NotARoot { path: PathBuf },
    #[error("the export job ended with status {code}")]
    ExportJob { code: i32 },
    #[error("removing {}: {error}", path.display())]
    Remove { path: PathBuf, error: String },
    #[error("no targets\nhelp: zchroot target add NAME --arch arm64 --release trixie")]
    NoTargets,
    #[error("HOME is not set: cannot find the systemd user unit directory")]
    NoUnitDir,
    #[error("{}: nothing published yet\nhelp: zchroot update {name}", dir.display())]
    NothingPublished { dir: PathBuf, name: String },
    #[error("listening on {addr}")]
    Listen {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("serving {}", dir.display())]
    Serve {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl From<crate::rootfs::create::CreateError> for CmdError {
    fn from(e: crate::rootfs::create::CreateError) -> Self {
        CmdError::Create(Box::new(e))
    }
}

impl From<crate::rootfs::spec::SpecError> for CmdError {
    fn from(e: crate::rootfs::spec::SpecError) -> Self {
        CmdError::Spec(Box::new(e))
    }
}

impl From<sandbox::SandboxError> for CmdError {
    fn from(e: sandbox::SandboxError) -> Self {
        CmdError::Sandbox(Box::new(e))
    }
}

impl From<crate::kmod::BuildError> for CmdError {
    fn from(e: crate::kmod::BuildError) -> Self {
        CmdError::Build(Box::new(e))
    }
}

/// Adds the path to an I/O error.
pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CmdError + '_ {
    move |source| CmdError::Io {
        path: path.to_owned(),
        source,
    }
}

/// A context under `dir` (state, cache and config), for tests.
#[cfg(test)]
pub(crate) fn test_ctx(dir: &Path) -> Ctx<'static> {
    Ctx {
        manifests: Manifests::embedded(),
        env: DirsEnv {
            zchroot_home: Some(dir.to_path_buf()),
            xdg_config_home: Some(dir.join("xdg")),
            ..Default::default()
        },
        dirs: DataDirs {
            state: dir.join("state"),
            cache: dir.join("cache"),
        },
        options: FetchOptions::default(),
        exe: "/usr/bin/zchroot".into(),
        reporter: &crate::report::Silent,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_root_is_named_or_a_directory_and_the_name_wins() {
        assert_eq!(
            RootRef::from_args(Some("a"), None),
            Some(RootRef::Name("a".into()))
        );
        assert_eq!(
            RootRef::from_args(None, Some(Path::new("/r"))),
            Some(RootRef::Dir("/r".into()))
        );
        assert_eq!(
            RootRef::from_args(Some("a"), Some(Path::new("/r"))),
            Some(RootRef::Name("a".into()))
        );
        assert_eq!(RootRef::from_args(None, None), None);
    }

    #[test]
    fn the_config_file_fills_in_what_the_command_line_leaves_out() {
        let tmp = tempfile::tempdir().unwrap();
        let env = DirsEnv {
            zchroot_home: Some(tmp.path().to_path_buf()),
            ..Default::default()
        };
        let load = |net: &NetArgs| {
            Ctx::load(
                Manifests::embedded(),
                env.clone(),
                net,
                "/usr/bin/zchroot".into(),
                &crate::report::Silent,
            )
        };
        // No file: the defaults.
        let ctx = load(&NetArgs::default()).unwrap();
        assert_eq!(ctx.options.parallel, FetchOptions::default().parallel);
        assert_eq!(ctx.options.proxy, None);
        std::fs::create_dir_all(tmp.path().join("config")).unwrap();
        std::fs::write(
            tmp.path().join("config/config.toml"),
            "parallel-downloads = 7\nproxy = \"http://p:3128\"\nmirror = \"http://m/debian\"\nsecurity-mirror = \"http://s/debian-security\"\n",
        )
        .unwrap();
        let ctx = load(&NetArgs::default()).unwrap();
        assert_eq!(ctx.options.parallel, 7);
        assert_eq!(ctx.options.proxy.as_deref(), Some("http://p:3128"));
        let trixie = ctx.manifests.release("trixie").unwrap();
        assert_eq!(trixie.sources[0].mirror, "http://m/debian");
        assert_eq!(trixie.sources[2].mirror, "http://s/debian-security");
        // The command line wins.
        let ctx = load(&NetArgs {
            parallel: Some(2),
            security_mirror: Some("https://given/debian-security".into()),
        })
        .unwrap();
        assert_eq!(ctx.options.parallel, 2);
        let trixie = ctx.manifests.release("trixie").unwrap();
        assert_eq!(trixie.sources[2].mirror, "https://given/debian-security");
        let e = load(&NetArgs {
            security_mirror: Some("ftp://x".into()),
            ..Default::default()
        })
        .err()
        .unwrap()
        .to_string();
        assert!(
            e.starts_with("--security-mirror ftp://x: ftp:// is not supported"),
            "{e}"
        );
    }

    #[test]
    fn a_named_root_that_does_not_exist_is_refused_and_a_dir_is_taken_as_is() {
        let tmp = tempfile::tempdir().unwrap();
        let ctx = test_ctx(tmp.path());
        assert!(find_root(&ctx, &RootRef::Name("../x".into()), Hold::Shared).is_err());
        assert!(find_root(&ctx, &RootRef::Name("nope".into()), Hold::Shared).is_err());
        let found = find_root(&ctx, &RootRef::Dir(tmp.path().into()), Hold::Shared).unwrap();
        assert_eq!(found.tree, tmp.path());
        assert!(found.meta.is_none() && found.lock.is_none());
    }
}
