//! `Packages` indexes: choosing which file of a verified Release to fetch
//! (xz before gz, by-hash when offered), decompressing it, and parsing its
//! stanzas into package records.

use std::io::Read;
use std::sync::Arc;

use super::deb822;
use super::hash::Sha256;
use super::release::{FileEntry, Release};

#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("{suite}: the Release file lists no Packages index for {component}/binary-{arch} (components: {components}; architectures: {architectures})")]
    Missing {
        suite: String,
        component: String,
        arch: String,
        components: String,
        architectures: String,
    },
    #[error("{origin}: decompressing: {source}")]
    Decompress {
        origin: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{origin}: {message}")]
    Parse { origin: String, message: String },
}

/// Where a package record came from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Origin {
    /// The mirror's base URL (`http://deb.debian.org/debian`).
    pub mirror: String,
    pub suite: String,
    pub component: String,
}

/// `Multi-Arch` as in Debian Policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MultiArch {
    #[default]
    No,
    Same,
    Foreign,
    Allowed,
}

/// One binary package from an index. Relationship fields are kept as text
/// and parsed when the resolver visits the package.
#[derive(Debug, Clone)]
pub struct Package {
    pub name: String,
    pub version: String,
    pub arch: String,
    pub multi_arch: MultiArch,
    pub essential: bool,
    pub priority: String,
    pub pre_depends: String,
    pub depends: String,
    pub provides: String,
    pub conflicts: String,
    pub breaks: String,
    pub filename: String,
    pub size: u64,
    pub sha256: Sha256,
    /// `Installed-Size` in KiB, when the index gives it: what unpacking the
    /// package may write is bounded by it.
    pub installed_size: Option<u64>,
    pub origin: Arc<Origin>,
}

impl Package {
    /// A record for unit tests: `name` `version` for `arch` in `suite`,
    /// with `depends`, everything else empty.
    #[cfg(test)]
    pub fn for_test(name: &str, version: &str, arch: &str, suite: &str, depends: &str) -> Package {
        Package {
            name: name.into(),
            version: version.into(),
            arch: arch.into(),
            multi_arch: MultiArch::No,
            essential: false,
            priority: "optional".into(),
            pre_depends: String::new(),
            depends: depends.into(),
            provides: String::new(),
            conflicts: String::new(),
            breaks: String::new(),
            filename: "pool/x.deb".into(),
            size: 1,
            sha256: Sha256::from([0; 32]),
            installed_size: None,
            origin: Arc::new(Origin {
                mirror: "m".into(),
                suite: suite.into(),
                component: "main".into(),
            }),
        }
    }

    /// The URL of the .deb.
    pub fn url(&self) -> String {
        format!("{}/{}", self.origin.mirror, self.filename)
    }

    /// What unpacking the package may write, as its index declares.
    pub fn extract_limit(&self) -> crate::deb::ExtractLimit {
        crate::deb::ExtractLimit {
            package: self.name.clone(),
            installed_size_kib: self.installed_size,
        }
    }
}

/// The index file chosen from a Release file, and where to get it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexFile {
    /// Path under `dists/SUITE/` as listed in the Release file.
    pub path: String,
    /// Path to fetch under `dists/SUITE/` (the by-hash path when offered).
    pub fetch_path: String,
    pub entry: FileEntry,
    pub compression: Compression,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    Xz,
    Gz,
    None,
}

/// Picks the Packages file for `component`/`arch`: `.xz`, else `.gz`, else
/// plain; through `by-hash/SHA256/` when the Release says `Acquire-By-Hash`.
/// `Ok(None)` when the Release lists the component and architecture but no
/// such index (an empty component, e.g. contrib for a rare architecture).
pub fn choose_index(
    release: &Release,
    component: &str,
    arch: &str,
) -> Result<Option<IndexFile>, IndexError> {
    let dir = format!("{component}/binary-{arch}");
    for (name, compression) in [
        ("Packages.xz", Compression::Xz),
        ("Packages.gz", Compression::Gz),
        ("Packages", Compression::None),
    ] {
        let path = format!("{dir}/{name}");
        if let Some(entry) = release.files.get(&path) {
            let fetch_path = if release.acquire_by_hash {
                format!("{dir}/by-hash/SHA256/{}", entry.sha256)
            } else {
                path.clone()
            };
            return Ok(Some(IndexFile {
                path,
                fetch_path,
                entry: entry.clone(),
                compression,
            }));
        }
    }
    let listed = (release.components.is_empty()
        || release
            .components
            .iter()
            // The security archive names its components `updates/main`.
            .any(|c| c == component || c.rsplit('/').next() == Some(component)))
        && (release.architectures.is_empty() || release.architectures.iter().any(|a| a == arch));
    if listed {
        return Ok(None);
    }
    Err(IndexError::Missing {
        suite: release.codename.clone(),
        component: component.into(),
        arch: arch.into(),
        components: release.components.join(" "),
        architectures: release.architectures.join(" "),
    })
}

/// Decompresses a verified index file.
pub fn decompress(
    data: &[u8],
    compression: Compression,
    origin: &str,
) -> Result<String, IndexError> {
    let mut out = Vec::with_capacity(data.len() * 6);
    let r = match compression {
        Compression::Xz => liblzma::read::XzDecoder::new(data).read_to_end(&mut out),
        Compression::Gz => flate2::read::GzDecoder::new(data).read_to_end(&mut out),
        Compression::None => {
            out.extend_from_slice(data);
            Ok(0)
        }
    };
    r.map_err(|source| IndexError::Decompress {
        origin: origin.into(),
        source,
    })?;
    String::from_utf8(out).map_err(|e| IndexError::Parse {
        origin: origin.into(),
        message: format!("not UTF-8 at byte {}", e.utf8_error().valid_up_to()),
    })
}

/// Parses the stanzas of a Packages index into records.
pub fn parse_packages(
    text: &str,
    origin: Arc<Origin>,
    name: &str,
) -> Result<Vec<Package>, IndexError> {
    let mut out = Vec::with_capacity(text.len() / 1200);
    for stanza in deb822::stanzas(text, name) {
        let stanza = stanza.map_err(|e| IndexError::Parse {
            origin: name.into(),
            message: e.to_string(),
        })?;
        let need = |field: &str| {
            stanza.get(field).ok_or_else(|| IndexError::Parse {
                origin: name.into(),
                message: format!("line {}: package stanza without {field}", stanza.line),
            })
        };
        let get = |field: &str| stanza.get(field).unwrap_or("").to_string();
        let size = need("Size")?;
        let size = size.parse().map_err(|_| IndexError::Parse {
            origin: name.into(),
            message: format!("line {}: bad Size {size:?}", stanza.line),
        })?;
        let package = need("Package")?;
        // As apt: a malformed hash is an error for the package; here for the
        // whole (signed, so broken or hostile) index, naming the package.
        let sha256 = Sha256::parse(need("SHA256")?).map_err(|e| IndexError::Parse {
            origin: name.into(),
            message: format!("line {}: package {package}: {e}", stanza.line),
        })?;
        let installed_size = match stanza.get("Installed-Size") {
            None => None,
            Some(v) => Some(v.parse::<u64>().map_err(|_| IndexError::Parse {
                origin: name.into(),
                message: format!(
                    "line {}: package {package}: bad Installed-Size {v:?}",
                    stanza.line
                ),
            })?),
        };
        let multi_arch = match stanza.get("Multi-Arch") {
            None | Some("no") => MultiArch::No,
            Some("same") => MultiArch::Same,
            Some("foreign") => MultiArch::Foreign,
            Some("allowed") => MultiArch::Allowed,
            Some(other) => {
                return Err(IndexError::Parse {
                    origin: name.into(),
                    message: format!("line {}: bad Multi-Arch {other:?}", stanza.line),
                })
            }
        };
        out.push(Package {
            name: package.to_string(),
            version: need("Version")?.to_string(),
            arch: need("Architecture")?.to_string(),
            multi_arch,
            essential: stanza.get("Essential") == Some("yes"),
            priority: get("Priority"),
            pre_depends: get("Pre-Depends"),
            depends: get("Depends"),
            provides: get("Provides"),
            conflicts: get("Conflicts"),
            breaks: get("Breaks"),
            filename: need("Filename")?.to_string(),
            size,
            sha256,
            installed_size,
            origin: origin.clone(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn release(by_hash: bool, files: &[&str]) -> Release {
        Release {
            suite: "stable".into(),
            codename: "trixie".into(),
            date: std::time::UNIX_EPOCH,
            valid_until: None,
            acquire_by_hash: by_hash,
            no_support_arch_all: true,
            architectures: vec!["arm64".into()],
            components: vec!["main".into(), "contrib".into()],
            files: files
                .iter()
                .map(|f| {
                    (
                        f.to_string(),
                        FileEntry {
                            size: 1,
                            sha256: Sha256::parse(&"ab".repeat(32)).unwrap(),
                        },
                    )
                })
                .collect::<HashMap<_, _>>(),
            signers: vec![],
        }
    }

    #[test]
    fn prefers_xz_then_gz_and_uses_by_hash() {
        let r = release(
            true,
            &[
                "main/binary-arm64/Packages.gz",
                "main/binary-arm64/Packages.xz",
            ],
        );
        let f = choose_index(&r, "main", "arm64").unwrap().unwrap();
        assert_eq!(f.compression, Compression::Xz);
        assert_eq!(
            f.fetch_path,
            format!("main/binary-arm64/by-hash/SHA256/{}", "ab".repeat(32))
        );
        let r = release(false, &["main/binary-arm64/Packages.gz"]);
        let f = choose_index(&r, "main", "arm64").unwrap().unwrap();
        assert_eq!(f.compression, Compression::Gz);
        assert_eq!(f.fetch_path, "main/binary-arm64/Packages.gz");
        assert!(choose_index(&r, "contrib", "arm64").unwrap().is_none());
        let e = choose_index(&r, "main", "s390x").unwrap_err().to_string();
        assert!(e.contains("no Packages index for main/binary-s390x"), "{e}");
    }

    #[test]
    fn parses_package_records() {
        let origin = Arc::new(Origin {
            mirror: "http://m/debian".into(),
            suite: "trixie".into(),
            component: "main".into(),
        });
        let text = "Package: a\nVersion: 1\nArchitecture: arm64\nMulti-Arch: same\nEssential: yes\n\
                    Depends: b (>= 2),\n c\nFilename: pool/main/a/a_1_arm64.deb\nSize: 10\nInstalled-Size: 7\nSHA256: {}\n";
        let text = text.replace("{}", &"AB".repeat(32));
        let p = parse_packages(&text, origin.clone(), "P").unwrap();
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].multi_arch, MultiArch::Same);
        assert!(p[0].essential);
        assert_eq!(p[0].sha256.to_string(), "ab".repeat(32));
        assert_eq!(p[0].installed_size, Some(7));
        assert_eq!(p[0].url(), "http://m/debian/pool/main/a/a_1_arm64.deb");
        let e = parse_packages("Package: a\nVersion: 1\n", origin.clone(), "P").unwrap_err();
        assert!(e.to_string().contains("package stanza without"), "{e}");
    }

    #[test]
    fn a_hash_that_is_not_64_hex_digits_rejects_the_index() {
        let origin = Arc::new(Origin {
            mirror: "http://m/debian".into(),
            suite: "trixie".into(),
            component: "main".into(),
        });
        for bad in ["../../../victim/x", "ab", &"a".repeat(65)] {
            let text = format!(
                "Package: ok\nVersion: 1\nArchitecture: arm64\nFilename: pool/o.deb\nSize: 1\nSHA256: {}\n\n\
                 Package: evil\nVersion: 1\nArchitecture: arm64\nFilename: pool/e.deb\nSize: 1\nSHA256: {bad}\n",
                "0".repeat(64)
            );
            let e = parse_packages(&text, origin.clone(), "http://m/P.xz")
                .unwrap_err()
                .to_string();
            assert!(
                e.starts_with("http://m/P.xz: line 8: package evil: bad SHA256"),
                "{e}"
            );
        }
        let text = format!(
            "Package: big\nVersion: 1\nArchitecture: arm64\nFilename: pool/b.deb\nSize: 1\nInstalled-Size: lots\nSHA256: {}\n",
            "0".repeat(64)
        );
        let e = parse_packages(&text, origin, "P").unwrap_err().to_string();
        assert!(
            e.contains("package big: bad Installed-Size \"lots\""),
            "{e}"
        );
    }
}
