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
use crate::manifest::{Arch, ManifestError, Manifests, Release, Role, Source, SourceChoice};
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
    #[error("bad version '{version}' of {name} in --include: versions are letters, digits and . + ~ : -")]
    BadVersion { name: String, version: String },
    #[error(
        "unknown package '{name}': it is in {found}, which is not enabled\nhelp: add {suggest}"
    )]
    NotEnabled {
        name: String,
        found: String,
        suggest: String,
    },
}

/// The user's choices, as given on the command line.
#[derive(Debug, Clone, Default)]
pub struct RootSpec {
    pub arch: String,
    pub release: String,
    pub variant: String,
    /// Package names, each optionally `NAME=VERSION`.
    pub include: Vec<String>,
    pub mirror: Option<String>,
    pub keyring: Option<PathBuf>,
    /// `--suites`: `NAME` picks suites, `+NAME` adds an opt-in one.
    pub suites: Vec<String>,
    /// `--components` for every suite (empty: the manifest's).
    pub components: Vec<String>,
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

pub fn valid_package_name(n: &str) -> bool {
    n.len() >= 2
        && n.as_bytes()[0].is_ascii_alphanumeric()
        && n.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+-.".contains(&b))
}

fn valid_version(v: &str) -> bool {
    !v.is_empty()
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".+~:-".contains(&b))
}

/// `--include` entries as (name, pinned version), checked.
pub fn parse_include(include: &[String]) -> Result<Vec<(String, Option<String>)>, SpecError> {
    include
        .iter()
        .map(|entry| {
            let (name, version) = match entry.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (entry.as_str(), None),
            };
            if !valid_package_name(name) {
                return Err(SpecError::BadName(name.into()));
            }
            if let Some(v) = version.filter(|v| !valid_version(v)) {
                return Err(SpecError::BadVersion {
                    name: name.into(),
                    version: v.into(),
                });
            }
            Ok((name.to_string(), version.map(String::from)))
        })
        .collect()
}

impl RootRecipe {
    /// Checks a spec against the manifests. Touches no file but `--keyring`.
    pub fn new(manifests: &Manifests, spec: &RootSpec) -> Result<Self, SpecError> {
        let arch = manifests.arch(&spec.arch)?;
        let release = manifests.release(&spec.release)?;
        let variant = release.variant(&spec.variant)?.clone();
        let include = parse_include(&spec.include)?;
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
        let sources = release.select_sources(
            spec.mirror.as_deref(),
            &SourceChoice {
                suites: spec.suites.clone(),
                components: spec.components.clone(),
            },
        )?;
        let mut packages = variant.packages.clone();
        // apt in the root checks an https mirror against ca-certificates
        // (as mmdebstrap adds it).
        let https = sources.iter().any(|s| s.mirror.starts_with("https://"));
        let extra = https.then(|| "ca-certificates".to_string());
        for p in include.iter().map(|(p, _)| p).chain(&extra) {
            if !packages.contains(p) {
                packages.push(p.clone());
            }
        }
        Ok(RootRecipe {
            arch,
            variant: spec.variant.clone(),
            request: Request {
                essential: variant.essential,
                priorities: variant.priorities.clone(),
                packages,
                versions: include
                    .into_iter()
                    .filter_map(|(n, v)| Some((n, v?)))
                    .collect(),
                fallback_suites: sources
                    .iter()
                    .filter(|s| s.optional)
                    .map(|s| s.suite.clone())
                    .collect(),
            },
            sources,
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

    /// What the Essential set alone resolves to, with the same pins and
    /// opt-in suites as the whole request.
    pub fn essential_request(&self) -> Request {
        Request {
            essential: true,
            versions: self.request.versions.clone(),
            fallback_suites: self.request.fallback_suites.clone(),
            ..Default::default()
        }
    }

    /// [`Self::resolve`], and when a requested package is unknown, a look
    /// at the components that are not enabled (their indexes are fetched
    /// only then) to say which one has it.
    pub fn resolve_explained<'a>(
        &'a self,
        fetcher: &Fetcher,
        indexes: &'a Indexes,
        reporter: &dyn Reporter,
    ) -> Result<Resolution<'a>, SpecError> {
        match self.resolve(indexes, reporter) {
            Err(SpecError::Resolve(e)) => {
                reporter.finish();
                let hint = match &e {
                    resolve::ResolveError::UnknownPackage { name, .. } => {
                        self.not_enabled(fetcher, indexes, name, reporter)
                    }
                    _ => None,
                };
                Err(hint.unwrap_or(SpecError::Resolve(e)))
            }
            other => other,
        }
    }

    /// The components of each suite's Release that are not enabled.
    pub fn other_components(&self, indexes: &Indexes) -> Vec<Source> {
        indexes
            .suites
            .iter()
            .filter_map(|s| {
                let others: Vec<String> = s
                    .release
                    .components
                    .iter()
                    .filter(|c| !s.source.components.contains(c))
                    .cloned()
                    .collect();
                (!others.is_empty()).then(|| Source {
                    components: others,
                    ..s.source.clone()
                })
            })
            .collect()
    }

    /// The release's opt-in suites that are not enabled, with the
    /// enabled components and the archive mirror in use.
    pub fn opt_in_not_enabled(&self) -> Vec<Source> {
        let mirror = self.sources.iter().find(|s| s.role == Role::Archive);
        self.release
            .sources
            .iter()
            .filter(|s| s.optional && !self.sources.iter().any(|e| e.suite == s.suite))
            .map(|s| Source {
                mirror: match (s.role, mirror) {
                    (Role::Archive, Some(m)) => m.mirror.clone(),
                    _ => s.mirror.clone(),
                },
                components: mirror.map_or(s.components.clone(), |m| m.components.clone()),
                ..s.clone()
            })
            .collect()
    }

    /// The error saying which components or opt-in suites not enabled
    /// have `name`, if any.
    fn not_enabled(
        &self,
        fetcher: &Fetcher,
        indexes: &Indexes,
        name: &str,
        reporter: &dyn Reporter,
    ) -> Option<SpecError> {
        // Apart, so that a mirror without one of them spoils nothing.
        let fetch = |sources: Vec<Source>| -> Vec<Package> {
            if sources.is_empty() {
                return vec![];
            }
            let now = SystemTime::now();
            refresh::refresh(
                fetcher,
                &sources,
                &self.keyring,
                &self.arch.name,
                now,
                reporter,
            )
            .map(|i| i.packages)
            .unwrap_or_default()
        };
        let mut more = fetch(self.other_components(indexes));
        more.extend(fetch(self.opt_in_not_enabled()));
        not_enabled_error(&self.sources, &more, &self.arch.name, name)
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

fn sorted(mut v: Vec<&str>) -> Vec<&str> {
    v.sort();
    v.dedup();
    v
}

/// The "not enabled" error when `packages` (of components or opt-in
/// suites not enabled) have `name` for `arch`: the components that have it
/// and the `--components` list that adds them to the enabled ones; else
/// the opt-in suites that have it and the `--suites` that adds them.
pub fn not_enabled_error(
    enabled: &[Source],
    packages: &[Package],
    arch: &str,
    name: &str,
) -> Option<SpecError> {
    let hits = packages
        .iter()
        .filter(|p| p.name == name && (p.arch == arch || p.arch == "all"));
    let (in_enabled, in_opt_in): (Vec<&Package>, Vec<&Package>) =
        hits.partition(|p| enabled.iter().any(|s| s.suite == p.origin.suite));
    let found = sorted(
        in_enabled
            .iter()
            .map(|p| p.origin.component.as_str())
            .collect(),
    );
    if found.is_empty() {
        let suites = sorted(in_opt_in.iter().map(|p| p.origin.suite.as_str()).collect());
        return (!suites.is_empty()).then(|| SpecError::NotEnabled {
            name: name.into(),
            found: suites.join(" and "),
            suggest: format!(
                "--suites {}",
                suites
                    .iter()
                    .map(|s| format!("+{s}"))
                    .collect::<Vec<_>>()
                    .join(",")
            ),
        });
    }
    let mut suggest: Vec<&str> = Vec::new();
    for c in enabled
        .iter()
        .flat_map(|s| s.components.iter().map(|c| c.as_str()))
        .chain(found.iter().copied())
    {
        if !suggest.contains(&c) {
            suggest.push(c);
        }
    }
    Some(SpecError::NotEnabled {
        name: name.into(),
        found: found.join(" and "),
        suggest: format!("--components {}", suggest.join(",")),
    })
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
    fn include_pins_versions_and_suites_add_opt_in_ones() {
        let t = RootRecipe::new(
            &Manifests::embedded(),
            &RootSpec {
                include: vec!["zfs-dkms=2.3.2-2~bpo13+1".into(), "less".into()],
                suites: vec!["+trixie-backports".into()],
                components: vec!["main".into(), "non-free-firmware".into()],
                ..spec()
            },
        )
        .unwrap();
        assert_eq!(t.request.packages, ["apt", "zfs-dkms", "less"]);
        assert_eq!(
            t.request.versions.get("zfs-dkms").map(String::as_str),
            Some("2.3.2-2~bpo13+1")
        );
        assert_eq!(t.request.fallback_suites, ["trixie-backports"]);
        assert_eq!(t.sources.len(), 4);
        assert!(t
            .sources
            .iter()
            .all(|s| s.components == ["main", "non-free-firmware"]));
        let e = t.essential_request();
        assert!(e.essential && e.packages.is_empty());
        assert_eq!(e.versions, t.request.versions);
        assert_eq!(
            parse_include(&["ab=1:2.0~rc1".into()]).unwrap(),
            [("ab".to_string(), Some("1:2.0~rc1".to_string()))]
        );
        assert!(parse_include(&["ab=".into()])
            .unwrap_err()
            .to_string()
            .starts_with("bad version '' of ab in --include"));
        assert!(parse_include(&["ab=1 2".into()]).is_err());
    }

    #[test]
    fn a_package_of_a_component_not_enabled_is_named_with_the_fix() {
        let t = RootRecipe::new(&Manifests::embedded(), &spec()).unwrap();
        let mut fw = Package::for_test("raspi-firmware", "1.0", "all", "trixie", "");
        fw.origin = std::sync::Arc::new(crate::archive::index::Origin {
            mirror: "http://deb.debian.org/debian".into(),
            suite: "trixie".into(),
            component: "non-free-firmware".into(),
        });
        let e = not_enabled_error(&t.sources, &[fw.clone()], "arm64", "raspi-firmware")
            .unwrap()
            .to_string();
        assert_eq!(
            e,
            "unknown package 'raspi-firmware': it is in non-free-firmware, which is not enabled\nhelp: add --components main,contrib,non-free-firmware"
        );
        assert!(not_enabled_error(&t.sources, &[fw], "arm64", "other").is_none());
        let bpo = Package::for_test("only-bpo", "1.0", "all", "trixie-backports", "");
        let e = not_enabled_error(&t.sources, &[bpo], "arm64", "only-bpo")
            .unwrap()
            .to_string();
        assert_eq!(
            e,
            "unknown package 'only-bpo': it is in trixie-backports, which is not enabled\nhelp: add --suites +trixie-backports"
        );
        let opt_in = t.opt_in_not_enabled();
        assert_eq!(opt_in.len(), 1);
        assert_eq!(opt_in[0].suite, "trixie-backports");
        assert_eq!(opt_in[0].components, ["main", "contrib"]);
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
