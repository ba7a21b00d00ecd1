//! Refreshing a release's indexes: for each source of a release, fetch and verify its InRelease,
//! fetch the Packages indexes it lists (checked against it), and parse them
//! into package records. The records of all suites together are what the
//! resolver works on.

use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use super::fetch::{Download, FetchError, Fetcher};
use super::index::{self, IndexError, Origin, Package};
use super::release::{self, Keyring, Release, ReleaseError, Verified};
use crate::manifest::Source;
use crate::report::{Phase, Reporter};

#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error(transparent)]
    Release(#[from] ReleaseError),
    #[error(transparent)]
    Index(#[from] IndexError),
    #[error(transparent)]
    Dates(#[from] super::dates::DatesError),
    #[error("{}: {source}", path.display())]
    Io {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A verified suite: where it is and its Release data.
#[derive(Debug, Clone)]
pub struct Suite {
    pub source: Source,
    pub release: Verified<Release>,
    /// The InRelease file as fetched (and verified), for apt's lists.
    pub inrelease: Vec<u8>,
}

/// A verified Packages index, decompressed, and the URL apt fetches it
/// from (`…/dists/SUITE/COMPONENT/binary-ARCH/Packages`): what apt's
/// lists of a new root are written from.
#[derive(Debug, Clone)]
pub struct IndexText {
    pub url: String,
    pub text: String,
}

/// Everything known after an update.
#[derive(Debug)]
pub struct Indexes {
    pub suites: Vec<Suite>,
    pub packages: Vec<Package>,
    pub texts: Vec<IndexText>,
}

/// InRelease files larger than this are refused before verification.
const INRELEASE_LIMIT: u64 = 64 << 20;

/// Fetches and verifies every source's InRelease and Packages indexes for
/// `arch` (and `all` where the archive keeps it apart).
pub fn refresh(
    fetcher: &Fetcher,
    sources: &[Source],
    keyring: &Keyring,
    arch: &str,
    now: SystemTime,
    reporter: &dyn Reporter,
) -> Result<Indexes, RefreshError> {
    reporter.phase(Phase::Update, sources.len() as u64, 0);
    let mut suites = Vec::new();
    let mut downloads = Vec::new();
    for source in sources {
        let base = format!("{}/dists/{}", source.mirror, source.suite);
        let url = format!("{base}/InRelease");
        let data = fetcher
            .get(&url, INRELEASE_LIMIT)
            .map_err(|e| e.missing_is(&format!("suite '{}' (its InRelease)", source.suite)))?;
        let verified = release::verify_inrelease(&data, keyring, &source.suite, &url, now)?;
        // Not older than the last one accepted: no replay of an old file.
        if let Some(dates) = fetcher.release_dates() {
            let ids = super::dates::SuiteId::of(&verified, &source.suite);
            dates.check_and_record(&ids, &source.mirror, &url, verified.date)?;
        }
        let mut archs = vec![arch.to_string()];
        // As apt: a separate `all` index only when the Release lists `all`.
        if !verified.no_arch_all_index() && verified.architectures.iter().any(|a| a == "all") {
            archs.push("all".into());
        }
        for component in &source.components {
            for a in &archs {
                let Some(file) = index::choose_index(&verified, component, a).or_else(|e| {
                    // The archive may keep no separate `all` index at all.
                    if a == "all" {
                        Ok(None)
                    } else {
                        Err(e)
                    }
                })?
                else {
                    continue;
                };
                let origin = Arc::new(Origin {
                    mirror: source.mirror.clone(),
                    suite: source.suite.clone(),
                    component: component.clone(),
                });
                downloads.push((
                    Download {
                        url: format!("{base}/{}", file.fetch_path),
                        alt_url: (file.fetch_path != file.path)
                            .then(|| format!("{base}/{}", file.path)),
                        size: file.entry.size,
                        sha256: file.entry.sha256,
                        // As a Debian user names it: `trixie-updates
                        // main/binary-arm64/Packages.xz`.
                        name: format!("{} {}", source.suite, file.path),
                    },
                    file,
                    origin,
                ));
            }
        }
        reporter.item_done(&source.suite);
        suites.push(Suite {
            source: source.clone(),
            release: verified,
            inrelease: data,
        });
    }
    let list: Vec<Download> = downloads.iter().map(|(d, _, _)| d.clone()).collect();
    // The indexes are a phase of their own: the count above was of the
    // suites' Release files.
    reporter.finish();
    reporter.phase(Phase::Indexes, list.len() as u64, 0);
    let paths = fetcher.fetch_all(&list)?;
    reporter.finish();

    let mut packages = Vec::new();
    let mut texts = Vec::new();
    for ((d, file, origin), path) in downloads.into_iter().zip(paths) {
        let data = std::fs::read(&path).map_err(|source| RefreshError::Io {
            path: path.clone(),
            source,
        })?;
        let what = format!("{} (from {})", d.name, d.url);
        let text = index::decompress(&data, file.compression, &what)?;
        packages.extend(index::parse_packages(&text, origin.clone(), &what)?);
        let plain = ["Packages.xz", "Packages.gz", "Packages.zst", "Packages"]
            .iter()
            .find_map(|n| file.path.strip_suffix(n))
            .map(|dir| format!("{dir}Packages"));
        if let Some(plain) = plain {
            texts.push(IndexText {
                url: format!("{}/dists/{}/{plain}", origin.mirror, origin.suite),
                text,
            });
        }
    }
    Ok(Indexes {
        suites,
        packages,
        texts,
    })
}

/// Whether a path is safe to join under a mirror URL (no `..`, not absolute).
pub fn safe_pool_path(p: &str) -> bool {
    !p.is_empty() && !p.starts_with('/') && !p.split('/').any(|c| c == ".." || c.is_empty())
}

/// The downloads for a resolved set of packages.
pub fn package_downloads<'a>(
    packages: impl IntoIterator<Item = &'a Package>,
) -> Result<Vec<Download>, IndexError> {
    packages
        .into_iter()
        .map(|p| {
            if !safe_pool_path(&p.filename) {
                return Err(IndexError::Parse {
                    origin: format!("{}/{}", p.origin.mirror, p.origin.suite),
                    message: format!("package {}: unsafe Filename {:?}", p.name, p.filename),
                });
            }
            Ok(Download {
                url: p.url(),
                alt_url: None,
                size: p.size,
                sha256: p.sha256,
                name: p
                    .filename
                    .rsplit('/')
                    .next()
                    .unwrap_or(&p.filename)
                    .to_string(),
            })
        })
        .collect()
}

/// A package file the mirror lacks, named with its package, version,
/// suite and component (the fetcher knows only the file's name).
pub fn name_missing(e: FetchError, packages: &[&Package]) -> FetchError {
    let FetchError::NotFound { url, .. } = &e else {
        return e;
    };
    match packages.iter().find(|p| &p.url() == url) {
        Some(p) => {
            let what = format!(
                "{} {} ({}, {} {})",
                p.name,
                p.version,
                p.filename.rsplit('/').next().unwrap_or(&p.filename),
                p.origin.suite,
                p.origin.component
            );
            e.missing_is(&what)
        }
        None => e,
    }
}

/// Reads a keyring file given with `--keyring`.
pub fn keyring_from_file(path: &Path) -> Result<Keyring, RefreshError> {
    let bytes = std::fs::read(path).map_err(|source| RefreshError::Io {
        path: path.into(),
        source,
    })?;
    Ok(Keyring::from_bytes(&bytes, &path.display().to_string())?)
}
