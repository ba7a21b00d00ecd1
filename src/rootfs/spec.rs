//! What the user asked for, checked against the manifests before anything
//! is fetched or written: release, architecture, variant, extra packages,
//! mirror and keyring. Then the steps that every command shares: update the
//! indexes and resolve the package set.

use std::path::PathBuf;
use std::time::SystemTime;

use crate::archive::fetch::{FetchOptions, Fetcher};
use crate::archive::index::Package;
use crate::archive::refresh::{self, Indexes, RefreshError};
use crate::archive::release::Keyring;
use crate::archive::resolve::{self, Request, Resolution};
use crate::manifest::{Arch, ManifestError, Manifests, Release, Source};
use crate::paths::DataDirs;
use crate::report::{Phase, Reporter};

#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error(transparent)]
    Update(#[from] RefreshError),
    #[error(transparent)]
    Resolve(#[from] resolve::ResolveError),
    #[error("bad package name '{0}' in --include: names are lowercase letters, digits and + - .")]
    BadName(String),
    #[error("--mirror {0}: {1}")]
    BadMirror(String, String),
}

/// The user's choices, as given on the command line.
#[derive(Debug, Clone, Default)]
pub struct RootSpec {
    pub arch: String,
    pub release: String,
    pub variant: String,
    pub include: Vec<String>,
    pub mirror: Option<String>,
    pub keyring: Option<PathBuf>,
}

/// A checked target.
#[derive(Clone)]
pub struct RootRecipe {
    pub arch: Arch,
    pub release: Release,
    pub variant: String,
    pub request: Request,
    pub sources: Vec<Source>,
    pub keyring: Keyring,
}

fn valid_package_name(n: &str) -> bool {
    n.len() >= 2
        && n.as_bytes()[0].is_ascii_alphanumeric()
        && n.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+-.".contains(&b))
}

impl RootRecipe {
    /// Checks a spec against the manifests. Touches no file but `--keyring`.
    pub fn new(manifests: &Manifests, spec: &RootSpec) -> Result<Self, SpecError> {
        let arch = manifests.arch(&spec.arch)?;
        let release = manifests.release(&spec.release)?;
        let variant = release.variant(&spec.variant)?.clone();
        for name in &spec.include {
            if !valid_package_name(name) {
                return Err(SpecError::BadName(name.clone()));
            }
        }
        if let Some(m) = &spec.mirror {
            crate::archive::fetch::check_mirror(m)
                .map_err(|why| SpecError::BadMirror(m.clone(), why))?;
        }
        let keyring = match &spec.keyring {
            Some(path) => refresh::keyring_from_file(path)?,
            None => Keyring::from_bytes(
                &manifests.keyring(&release)?,
                &format!("the {} keyring of zchroot", release.release),
            )
            .map_err(|e| SpecError::Update(e.into()))?,
        };
        let sources = release.sources_with_mirror(spec.mirror.as_deref());
        let mut packages = variant.packages.clone();
        // apt in the root checks an https mirror against ca-certificates
        // (as mmdebstrap adds it).
        let https = sources.iter().any(|s| s.mirror.starts_with("https://"));
        let extra = https.then(|| "ca-certificates".to_string());
        for p in spec.include.iter().chain(&extra) {
            if !packages.contains(p) {
                packages.push(p.clone());
            }
        }
        Ok(RootRecipe {
            sources,
            arch,
            variant: spec.variant.clone(),
            request: Request {
                essential: variant.essential,
                priorities: variant.priorities.clone(),
                packages,
            },
            release,
            keyring,
        })
    }

    /// A fetcher for this target's mirrors.
    pub fn fetcher<'r>(
        &self,
        dirs: &DataDirs,
        opts: FetchOptions,
        reporter: &'r dyn Reporter,
    ) -> Result<Fetcher<'r>, SpecError> {
        let mirrors: Vec<String> = self.sources.iter().map(|s| s.mirror.clone()).collect();
        Ok(Fetcher::new(&dirs.blobs(), &mirrors, opts, reporter)
            .map_err(RefreshError::from)?
            .remember_release_dates(&dirs.archive_dates()))
    }

    /// Fetches and verifies the indexes of every suite.
    pub fn update(&self, fetcher: &Fetcher, reporter: &dyn Reporter) -> Result<Indexes, SpecError> {
        Ok(refresh::refresh(
            fetcher,
            &self.sources,
            &self.keyring,
            &self.arch.name,
            SystemTime::now(),
            reporter,
        )?)
    }

    /// Resolves the package set.
    pub fn resolve<'a>(
        &'a self,
        indexes: &'a Indexes,
        reporter: &dyn Reporter,
    ) -> Result<Resolution<'a>, SpecError> {
        reporter.phase(Phase::Resolve, 0, 0);
        let plan = resolve::resolve(&indexes.packages, &self.arch.name, &self.request)?;
        reporter.finish();
        Ok(plan)
    }

    /// Downloads the resolved packages into the cache, verified.
    pub fn download(
        &self,
        fetcher: &Fetcher,
        packages: &[&Package],
        reporter: &dyn Reporter,
    ) -> Result<Vec<PathBuf>, SpecError> {
        let downloads =
            refresh::package_downloads(packages.iter().copied()).map_err(RefreshError::from)?;
        let bytes = downloads.iter().map(|d| d.size).sum();
        reporter.phase(Phase::Download, downloads.len() as u64, bytes);
        let paths = fetcher
            .fetch_all(&downloads)
            .map_err(|e| RefreshError::from(refresh::name_missing(e, packages)))?;
        reporter.finish();
        Ok(paths)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> RootSpec {
        RootSpec {
            arch: "arm64".into(),
            release: "trixie".into(),
            variant: "minbase".into(),
            ..Default::default()
        }
    }

    #[test]
    fn a_good_spec_becomes_a_target() {
        let t = RootRecipe::new(
            &Manifests::embedded(),
            &RootSpec {
                include: vec!["zfs-dkms".into(), "apt".into()],
                ..spec()
            },
        )
        .unwrap();
        assert_eq!(t.arch.qemu, "aarch64");
        assert_eq!(t.request.packages, ["apt", "zfs-dkms"]);
        // An https mirror brings ca-certificates, for apt in the root.
        let t = RootRecipe::new(
            &Manifests::embedded(),
            &RootSpec {
                mirror: Some("https://deb.debian.org/debian".into()),
                ..spec()
            },
        )
        .unwrap();
        assert_eq!(t.request.packages, ["apt", "ca-certificates"]);
        assert!(t.request.essential);
        assert_eq!(t.sources.len(), 3);
        assert!(!t.keyring.fingerprints().is_empty());
    }

    #[test]
    fn bad_input_is_named_with_what_exists() {
        let m = Manifests::embedded();
        let err = |s: RootSpec| RootRecipe::new(&m, &s).err().unwrap().to_string();
        assert_eq!(
            err(RootSpec {
                arch: "arm46".into(),
                ..spec()
            }),
            "unknown architecture 'arm46': known are amd64, arm64, armhf, riscv64"
        );
        assert!(err(RootSpec {
            release: "jessie".into(),
            ..spec()
        })
        .starts_with("unknown release 'jessie': known are bookworm, trixie"));
        assert!(err(RootSpec {
            variant: "big".into(),
            ..spec()
        })
        .starts_with("unknown variant 'big' of trixie"));
        assert!(err(RootSpec {
            include: vec!["Bad Name".into()],
            ..spec()
        })
        .starts_with("bad package name 'Bad Name'"));
        assert!(err(RootSpec {
            mirror: Some("ftp://x".into()),
            ..spec()
        })
        .starts_with("--mirror ftp://x"));
        assert!(err(RootSpec {
            keyring: Some("/nonexistent/k.pgp".into()),
            ..spec()
        })
        .starts_with("/nonexistent/k.pgp: "));
    }
}
