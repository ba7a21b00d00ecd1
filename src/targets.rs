//! Targets: the boards zchroot keeps modules for, one TOML file each under
//! the config directory (`targets/NAME.toml`), readable and editable by
//! hand. Parsing and validation are pure; the few file operations are here
//! too, named after what they do.

use std::path::{Path, PathBuf};

use crate::kmod::Strategy;
use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum TargetsError {
    #[error("'{0}' is not a target name: use letters, digits, '-', '_' and '.' (not first)")]
    BadName(String),
    #[error("no target '{name}' (looked for {})\nhelp: zchroot target add {name} --arch ARCH --release RELEASE", path.display())]
    Unknown { name: String, path: PathBuf },
    #[error("target '{name}' exists ({})\nhelp: pass --force to replace it, or edit the file", path.display())]
    Exists { name: String, path: PathBuf },
    #[error("{}: {message}\nhelp: fix the file by hand, or replace it with zchroot target add --force", path.display())]
    Bad { path: PathBuf, message: String },
    #[error("{}: not a place to publish a repository: {reason}\nhelp: give --repo an empty directory of its own (or leave it out: the default is under the state directory)", dir.display())]
    UnsafeRepo { dir: PathBuf, reason: String },
    /// A setting of a target that `update` could not use, found by
    /// `target add` (in an option) or `target check` (in a file).
    #[error("{}{message}{}", origin.lead(key), origin.help_line(key, help.as_deref()))]
    Invalid {
        origin: Origin,
        key: &'static str,
        message: String,
        help: Option<String>,
    },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Where a target's settings were read, for errors: the options of
/// `target add`, or a target file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    Options,
    File(PathBuf),
}

impl Origin {
    /// What an error starts with: the option (`--kernel-deb-dir: `), or
    /// the file and its key (`FILE: kernel-deb-dir: `); an empty key is
    /// the target as a whole.
    fn lead(&self, key: &str) -> String {
        match (self, key) {
            (Origin::Options, "") => String::new(),
            (Origin::Options, k) => format!("--{k}: "),
            (Origin::File(p), "") => format!("{}: ", p.display()),
            (Origin::File(p), k) => format!("{}: {k}: ", p.display()),
        }
    }

    /// The help line: the problem's own, and for a file how to fix it.
    fn help_line(&self, key: &str, help: Option<&str>) -> String {
        match (self, help) {
            (Origin::Options, None) => String::new(),
            (Origin::Options, Some(h)) => format!("\nhelp: {h}"),
            (Origin::File(p), h) => format!(
                "\nhelp: {}fix {} in {} (then: zchroot target check), or replace the target with zchroot target add --force",
                h.map(|h| format!("{h}; ")).unwrap_or_default(),
                if key.is_empty() { "the target" } else { key },
                p.display()
            ),
        }
    }
}

/// What is wrong with one key of a target (where it was read is added by
/// [`Problem::at`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub key: &'static str,
    pub message: String,
    pub help: Option<String>,
}

impl Problem {
    pub fn new(key: &'static str, message: impl Into<String>) -> Problem {
        Problem {
            key,
            message: message.into(),
            help: None,
        }
    }

    pub fn help(self, help: impl Into<String>) -> Problem {
        Problem {
            help: Some(help.into()),
            ..self
        }
    }

    /// The error, naming where the setting was read.
    pub fn at(self, origin: Origin) -> TargetsError {
        TargetsError::Invalid {
            origin,
            key: self.key,
            message: self.message,
            help: self.help,
        }
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if !self.key.is_empty() {
            write!(f, "{}: ", self.key)?;
        }
        write!(f, "{}", self.message)?;
        if let Some(h) = &self.help {
            write!(f, "\nhelp: {h}")?;
        }
        Ok(())
    }
}

/// One target, as its file says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct TargetFile {
    /// The board's Debian architecture.
    pub arch: String,
    /// The board's Debian release (a file of rootfs-manifests/); files
    /// written before it was called `release` say `suite`.
    #[serde(alias = "suite")]
    pub release: String,
    /// The kernel flavour (default: the architecture's plain one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flavour: Option<String>,
    /// `zfs`, a `*-dkms` package, or a directory with a dkms.conf.
    #[serde(default = "default_module")]
    pub module: String,
    /// Which of the release's suites to follow for kernels (default: all,
    /// e.g. trixie, trixie-updates and trixie-security).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub suites: Vec<String>,
    /// The board's own kernels: image and headers .debs dropped here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel_deb_dir: Option<PathBuf>,
    /// A vendor's signed apt archive the kernels come from
    /// (`kernel-archive`), instead of the release's suites.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel_archive: Option<String>,
    /// The keyring that archive is verified against (`kernel-keyring`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel_keyring: Option<PathBuf>,
    /// Its suite (`kernel-suite`; default: the release's name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel_suite: Option<String>,
    /// Its components (`kernel-components`; default: main).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kernel_components: Vec<String>,
    /// The mirror of the release's main archive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror: Option<String>,
    /// The security archive's mirror (`security-mirror`; default: the
    /// config file's, or the release's own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_mirror: Option<String>,
    /// The keyring Release files are verified against.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keyring: Option<PathBuf>,
    /// Where the repository is published (default: the state directory).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repo: Option<PathBuf>,
    /// How its modules are compiled.
    #[serde(default)]
    pub strategy: Strategy,
}

impl TargetFile {
    /// The vendor archive the kernels come from, when the target has one
    /// (with its keyring: [`crate::update::check_local`] refuses one
    /// without).
    pub fn kernel_archive(&self) -> Option<crate::kmod::vendor::KernelArchive> {
        Some(crate::kmod::vendor::KernelArchive {
            url: self.kernel_archive.clone()?,
            keyring: self.kernel_keyring.clone()?,
            suite: self
                .kernel_suite
                .clone()
                .unwrap_or_else(|| self.release.clone()),
            components: self.kernel_components.clone(),
        })
    }
}

fn default_module() -> String {
    "zfs".into()
}

/// Checks a target's name (it becomes a file name and a package suffix).
pub fn check_name(name: &str) -> Result<(), TargetsError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    ok.then_some(())
        .ok_or_else(|| TargetsError::BadName(name.into()))
}

/// Parses a target file's text.
pub fn parse(text: &str, path: &Path) -> Result<TargetFile, TargetsError> {
    let t: TargetFile = toml::from_str(text).map_err(|e| TargetsError::Bad {
        path: path.into(),
        message: e.message().to_string(),
    })?;
    if let Some(m) = &t.security_mirror {
        crate::archive::fetch::check_mirror(m).map_err(|why| TargetsError::Bad {
            path: path.into(),
            message: format!("security-mirror = {m:?}: {why}"),
        })?;
    }
    Ok(t)
}

/// `p` absolute and with symlinks resolved as far as it exists (the rest
/// appended as it is), so that two spellings of one place compare equal.
fn resolved(p: &Path) -> PathBuf {
    let p = std::path::absolute(p).unwrap_or_else(|_| p.to_owned());
    let mut rest = Vec::new();
    let mut cur = p.as_path();
    loop {
        if let Ok(c) = std::fs::canonicalize(cur) {
            let mut out = c;
            for r in rest.iter().rev() {
                out.push(r);
            }
            return out;
        }
        match (cur.parent(), cur.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_owned());
                cur = parent;
            }
            _ => return p,
        }
    }
}

/// Whether a top-level entry of a published tree is one zchroot writes.
fn is_repository_entry(name: &str) -> bool {
    matches!(name, "dists" | "pool")
        || (name.starts_with("zchroot-") && (name.ends_with(".asc") || name.ends_with(".partial")))
        || (name.starts_with('.') && name.ends_with(".tmp"))
}

/// Refuses a directory to publish a repository in when serving it could
/// hand out zchroot's own files: when it is or holds one of `private` (the
/// state, cache and config directories, the repository's secret key), lies
/// inside one of them (other than `default`, the repository's own place in
/// the state directory), or already holds files that are not part of a
/// published repository.
pub fn check_repo_dir(dir: &Path, default: &Path, private: &[&Path]) -> Result<(), TargetsError> {
    let d = resolved(dir);
    let refuse = |reason: String| {
        Err(TargetsError::UnsafeRepo {
            dir: dir.to_owned(),
            reason,
        })
    };
    if d != resolved(default) {
        for p in private {
            let p = resolved(p);
            if p.starts_with(&d) {
                return refuse(format!("it holds zchroot's {}", p.display()));
            }
            if d.starts_with(&p) {
                return refuse(format!("it is inside zchroot's {}", p.display()));
            }
        }
    }
    match std::fs::read_dir(&d) {
        Ok(rd) => {
            for e in rd {
                let e = e.map_err(|source| TargetsError::Io {
                    path: d.clone(),
                    source,
                })?;
                let name = e.file_name().to_string_lossy().into_owned();
                if !is_repository_entry(&name) {
                    return refuse(format!(
                        "it holds '{name}', which is not part of a repository"
                    ));
                }
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(TargetsError::Io { path: d, source }),
    }
}

/// The targets of a config directory.
pub struct Targets {
    dir: PathBuf,
}

impl Targets {
    pub fn new(config_dir: &Path) -> Self {
        Targets {
            dir: config_dir.join("targets"),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.toml"))
    }

    pub fn load(&self, name: &str) -> Result<TargetFile, TargetsError> {
        check_name(name)?;
        let path = self.path(name);
        let text = std::fs::read_to_string(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => TargetsError::Unknown {
                name: name.into(),
                path: path.clone(),
            },
            _ => TargetsError::Io {
                path: path.clone(),
                source: e,
            },
        })?;
        parse(&text, &path)
    }

    pub fn save(&self, name: &str, t: &TargetFile, force: bool) -> Result<PathBuf, TargetsError> {
        check_name(name)?;
        let path = self.path(name);
        if path.exists() && !force {
            return Err(TargetsError::Exists {
                name: name.into(),
                path,
            });
        }
        let io = |source| TargetsError::Io {
            path: path.clone(),
            source,
        };
        crate::paths::create_private_dir_all(&self.dir).map_err(io)?;
        let text = format!(
            "# zchroot target '{name}': edit by hand or with zchroot target add --force\n{}",
            toml::to_string(t).expect("a target serializes")
        );
        crate::atomic::write_atomic(&path, text.as_bytes(), 0o644).map_err(io)?;
        Ok(path)
    }

    /// Removes a target's file, even one that no longer parses.
    pub fn remove(&self, name: &str) -> Result<(), TargetsError> {
        check_name(name)?;
        let path = self.path(name);
        if !path.exists() {
            return Err(TargetsError::Unknown {
                name: name.into(),
                path,
            });
        }
        std::fs::remove_file(&path).map_err(|source| TargetsError::Io { path, source })
    }

    /// Names of the targets, sorted.
    pub fn names(&self) -> Result<Vec<String>, TargetsError> {
        let mut v = Vec::new();
        match std::fs::read_dir(&self.dir) {
            Ok(rd) => {
                for e in rd.flatten() {
                    let n = e.file_name().to_string_lossy().into_owned();
                    if let Some(name) = n.strip_suffix(".toml") {
                        if check_name(name).is_ok() {
                            v.push(name.to_string());
                        }
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(TargetsError::Io {
                    path: self.dir.clone(),
                    source,
                })
            }
        }
        v.sort();
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_security_mirror_is_kept_as_security_mirror_and_checked() {
        let d = tempfile::tempdir().unwrap();
        let ts = Targets::new(d.path());
        let t = parse(
            "arch = \"arm64\"\nsuite = \"trixie\"\nsecurity-mirror = \"http://cache:3142/debian-security\"\n",
            Path::new("x"),
        )
        .unwrap();
        assert_eq!(
            t.security_mirror.as_deref(),
            Some("http://cache:3142/debian-security")
        );
        let path = ts.save("pi", &t, false).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.contains("security-mirror = \"http://cache:3142/debian-security\""),
            "{text}"
        );
        assert_eq!(ts.load("pi").unwrap(), t);
        let e = parse(
            "arch = \"arm64\"\nsuite = \"trixie\"\nsecurity-mirror = \"file:///srv\"\n",
            Path::new("pi.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("pi.toml: security-mirror = \"file:///srv\": file:// is not supported"),
            "{e}"
        );
    }

    #[test]
    fn targets_round_trip_and_defaults_apply() {
        let d = tempfile::tempdir().unwrap();
        let ts = Targets::new(d.path());
        assert!(ts.names().unwrap().is_empty());
        // `suite` is the old name of `release`.
        let t = parse("arch = \"arm64\"\nsuite = \"trixie\"\n", Path::new("x")).unwrap();
        assert_eq!(t.release, "trixie");
        assert_eq!(
            parse("arch = \"arm64\"\nrelease = \"trixie\"\n", Path::new("x")).unwrap(),
            t
        );
        assert_eq!(t.module, "zfs");
        assert_eq!(t.strategy, Strategy::Auto);
        assert!(t.suites.is_empty());
        let t = TargetFile {
            suites: vec!["trixie".into()],
            ..t
        };
        let path = ts.save("board", &t, false).unwrap();
        assert_eq!(path, d.path().join("targets/board.toml"));
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("suites = [\"trixie\"]"), "{text}");
        assert!(text.contains("release = \"trixie\""), "{text}");
        assert_eq!(ts.load("board").unwrap(), t);
        assert!(matches!(
            ts.save("board", &t, false),
            Err(TargetsError::Exists { .. })
        ));
        ts.save("board", &t, true).unwrap();
        assert_eq!(ts.names().unwrap(), ["board"]);
        ts.remove("board").unwrap();
        assert!(matches!(
            ts.load("board"),
            Err(TargetsError::Unknown { .. })
        ));
    }

    #[test]
    fn a_vendor_kernel_archive_is_kept_under_its_option_names() {
        let d = tempfile::tempdir().unwrap();
        let ts = Targets::new(d.path());
        let text = "arch = \"arm64\"\nrelease = \"bookworm\"\nflavour = \"current-rockchip64\"\nkernel-archive = \"http://apt.armbian.com\"\nkernel-keyring = \"/k/armbian.gpg\"\nkernel-components = [\"main\"]\n";
        let t = parse(text, Path::new("x")).unwrap();
        let a = t.kernel_archive().unwrap();
        assert_eq!(a.url, "http://apt.armbian.com");
        assert_eq!(a.keyring, PathBuf::from("/k/armbian.gpg"));
        assert_eq!(a.suite, "bookworm", "the release's name by default");
        assert_eq!(a.components, ["main"]);
        ts.save("armbian", &t, false).unwrap();
        let saved = std::fs::read_to_string(ts.path("armbian")).unwrap();
        for key in [
            "kernel-archive = ",
            "kernel-keyring = ",
            "kernel-components = ",
        ] {
            assert!(saved.contains(key), "{saved}");
        }
        assert!(!saved.contains("kernel-suite"), "{saved}");
        assert_eq!(ts.load("armbian").unwrap(), t);
        // Without its keyring there is no archive to follow.
        let t = TargetFile {
            kernel_keyring: None,
            ..t
        };
        assert_eq!(t.kernel_archive(), None);
    }

    #[test]
    fn bad_names_and_files_are_refused_with_the_fix() {
        assert!(check_name("rpi-4_b.1").is_ok());
        for bad in ["", ".hidden", "a/b", "a b", "../x"] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
        let e = parse("arch = \"arm64\"\n", Path::new("/c/t.toml")).unwrap_err();
        assert!(e.to_string().contains("release"), "{e}");
        let e = parse(
            "arch = \"arm64\"\nsuite = \"trixie\"\nmodules = \"zfs\"\n",
            Path::new("t"),
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("modules"),
            "unknown keys are named: {e}"
        );
        let e = parse(
            "arch = \"arm64\"\nsuite = \"trixie\"\nstrategy = \"fast\"\n",
            Path::new("t"),
        )
        .unwrap_err();
        assert!(e.to_string().contains("fast"), "{e}");
    }

    #[test]
    fn a_repository_never_holds_or_sits_in_zchroot_s_own_files() {
        let d = tempfile::tempdir().unwrap();
        let state = d.path().join("state");
        let key = state.join("repos/board/secret.key");
        let default = state.join("repos/board/public");
        std::fs::create_dir_all(key.parent().unwrap()).unwrap();
        std::fs::write(&key, "secret").unwrap();
        let private = [state.as_path(), key.as_path()];
        let check = |dir: &Path| check_repo_dir(dir, &default, &private);
        check(&default).unwrap();
        check(&d.path().join("elsewhere/repo")).unwrap();
        for bad in [
            state.join("repos/board"),
            state.clone(),
            d.path().to_owned(),
            state.join("roots/x"),
            state.join("repos/board/./../board"),
        ] {
            let e = check(&bad).unwrap_err();
            assert!(matches!(e, TargetsError::UnsafeRepo { .. }), "{bad:?}: {e}");
            assert!(e.to_string().contains("help: "), "{e}");
        }
        // Through a symlink too.
        let link = d.path().join("link");
        std::os::unix::fs::symlink(state.join("repos"), &link).unwrap();
        assert!(check(&link.join("board")).is_err());
        // A directory with other files in it is not a repository's.
        let www = d.path().join("www");
        std::fs::create_dir_all(www.join("dists")).unwrap();
        std::fs::write(www.join("zchroot-board.asc"), "k").unwrap();
        check(&www).unwrap();
        std::fs::write(www.join("index.html"), "x").unwrap();
        let e = check(&www).unwrap_err().to_string();
        assert!(e.contains("'index.html'"), "{e}");
    }
}
