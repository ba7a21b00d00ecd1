//! The target kernel: which Debian kernel a module is built for, found in
//! the verified indexes: the newest of the flavour's metapackage by
//! default, or a kernel release the user names. Pure: records in, choice out.

use crate::archive::index::Package;
use crate::archive::relation;
use crate::archive::version;

/// A kernel to build for, and the packages that ship it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TargetKernel {
    /// `uname -r` of the kernel (`6.12.117+deb13-arm64`).
    pub release: String,
    /// The package that ships the image (`linux-image-6.12.117+deb13-arm64`).
    pub image_package: String,
    /// Its exact version (`6.12.117-1`).
    pub image_version: String,
    /// Other packages that ship the very same kernel (`...-unsigned`).
    pub alternatives: Vec<String>,
    /// The headers package (`linux-headers-6.12.117+deb13-arm64`).
    pub headers_package: String,
}

impl TargetKernel {
    /// The Depends field of a module package built for this kernel.
    pub fn depends(&self) -> String {
        std::iter::once(&self.image_package)
            .chain(&self.alternatives)
            .map(|p| format!("{p} (= {})", self.image_version))
            .collect::<Vec<_>>()
            .join(" | ")
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KernelError {
    #[error("no kernel metapackage {meta} in the suites: cannot pick a default kernel\nhelp: name one with --kernel; known kernels: {known}")]
    NoMeta { meta: String, known: String },
    #[error("unknown kernel '{release}': no package {package} in the suites\nhelp: known kernels of this architecture are {known}")]
    Unknown {
        release: String,
        package: String,
        known: String,
    },
    #[error("kernel {release}: no headers package {headers} of version {version} in the suites")]
    NoHeaders {
        release: String,
        headers: String,
        version: String,
    },
}

fn newest<'a>(packages: &'a [Package], name: &str) -> Option<&'a Package> {
    packages
        .iter()
        .filter(|p| p.name == name)
        .max_by(|a, b| version::compare(&a.version, &b.version))
}

/// Kernel releases that have an image package in the indexes, newest first
/// (`linux-image-RELEASE`, not metapackages, not -unsigned/-dbg).
pub fn known_releases(packages: &[Package], flavour: &str) -> Vec<String> {
    let mut v: Vec<(&str, &str)> = packages
        .iter()
        .filter_map(|p| {
            let rel = p.name.strip_prefix("linux-image-")?;
            (rel.ends_with(flavour)
                && rel.starts_with(|c: char| c.is_ascii_digit())
                && rel.contains('.'))
            .then_some((rel, p.version.as_str()))
        })
        .collect();
    v.sort_by(|a, b| version::compare(b.1, a.1).then(b.0.cmp(a.0)));
    let mut out: Vec<String> = Vec::new();
    for (r, _) in v {
        if !out.iter().any(|o| o == r) {
            out.push(r.to_string());
        }
    }
    out
}

/// Picks the kernel: `release` if given, else the newest version of the
/// `linux-image-FLAVOUR` metapackage (its Depends names the image package).
pub fn choose(
    packages: &[Package],
    flavour: &str,
    release: Option<&str>,
) -> Result<TargetKernel, KernelError> {
    let known = || {
        let k = known_releases(packages, flavour);
        if k.is_empty() {
            "none".to_string()
        } else {
            k.join(", ")
        }
    };
    let (image, required): (&Package, Option<String>) = match release {
        Some(r) => {
            let name = format!("linux-image-{r}");
            let p = newest(packages, &name).ok_or_else(|| KernelError::Unknown {
                release: r.into(),
                package: name.clone(),
                known: known(),
            })?;
            (p, None)
        }
        None => {
            let meta_name = format!("linux-image-{flavour}");
            let meta = newest(packages, &meta_name).ok_or_else(|| KernelError::NoMeta {
                meta: meta_name.clone(),
                known: known(),
            })?;
            let deps = relation::parse_relations(&meta.depends).unwrap_or_default();
            let rel = deps
                .iter()
                .flatten()
                .find(|r| r.name.starts_with("linux-image-"))
                .ok_or_else(|| KernelError::NoMeta {
                    meta: meta_name.clone(),
                    known: known(),
                })?;
            let want = rel.version.as_ref().map(|v| v.version.clone());
            let p = packages
                .iter()
                .filter(|p| p.name == rel.name)
                .filter(|p| want.as_ref().is_none_or(|w| &p.version == w))
                .max_by(|a, b| version::compare(&a.version, &b.version))
                .ok_or_else(|| KernelError::Unknown {
                    release: rel.name.trim_start_matches("linux-image-").into(),
                    package: rel.name.clone(),
                    known: known(),
                })?;
            (p, want)
        }
    };
    let release = image.name.trim_start_matches("linux-image-").to_string();
    let version = required.unwrap_or_else(|| image.version.clone());
    let headers = format!("linux-headers-{release}");
    if !packages
        .iter()
        .any(|p| p.name == headers && p.version == version)
    {
        return Err(KernelError::NoHeaders {
            release,
            headers,
            version,
        });
    }
    let unsigned = format!("{}-unsigned", image.name);
    let alternatives = packages
        .iter()
        .any(|p| p.name == unsigned && p.version == version)
        .then_some(unsigned)
        .into_iter()
        .collect();
    Ok(TargetKernel {
        release,
        image_package: image.name.clone(),
        image_version: version,
        alternatives,
        headers_package: headers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::index::{MultiArch, Origin};
    use std::sync::Arc;

    fn p(name: &str, version: &str, depends: &str) -> Package {
        Package {
            name: name.into(),
            version: version.into(),
            arch: "arm64".into(),
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
            sha256: "00".into(),
            origin: Arc::new(Origin {
                mirror: "m".into(),
                suite: "trixie".into(),
                component: "main".into(),
            }),
        }
    }

    fn index() -> Vec<Package> {
        vec![
            p(
                "linux-image-arm64",
                "6.12.107-1",
                "linux-image-6.12.107+deb13-arm64 (= 6.12.107-1)",
            ),
            p(
                "linux-image-arm64",
                "6.12.117-1",
                "linux-image-6.12.117+deb13-arm64 (= 6.12.117-1)",
            ),
            p("linux-image-6.12.107+deb13-arm64", "6.12.107-1", ""),
            p("linux-image-6.12.117+deb13-arm64", "6.12.117-1", ""),
            p(
                "linux-image-6.12.117+deb13-arm64-unsigned",
                "6.12.117-1",
                "",
            ),
            p("linux-headers-6.12.107+deb13-arm64", "6.12.107-1", ""),
            p("linux-headers-6.12.117+deb13-arm64", "6.12.117-1", ""),
            p("linux-image-6.12.117+deb13-arm64-dbg", "6.12.117-1", ""),
        ]
    }

    #[test]
    fn default_is_the_newest_metapackage_kernel() {
        let k = choose(&index(), "arm64", None).unwrap();
        assert_eq!(k.release, "6.12.117+deb13-arm64");
        assert_eq!(k.image_package, "linux-image-6.12.117+deb13-arm64");
        assert_eq!(k.image_version, "6.12.117-1");
        assert_eq!(k.headers_package, "linux-headers-6.12.117+deb13-arm64");
        assert_eq!(
            k.depends(),
            "linux-image-6.12.117+deb13-arm64 (= 6.12.117-1) | linux-image-6.12.117+deb13-arm64-unsigned (= 6.12.117-1)"
        );
    }

    #[test]
    fn a_named_kernel_is_found_or_the_known_ones_are_listed() {
        let k = choose(&index(), "arm64", Some("6.12.107+deb13-arm64")).unwrap();
        assert_eq!(k.image_version, "6.12.107-1");
        assert!(k.alternatives.is_empty());
        let e = choose(&index(), "arm64", Some("6.1.0-9-arm64"))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("unknown kernel '6.1.0-9-arm64'"), "{e}");
        assert!(
            e.contains(
                "known kernels of this architecture are 6.12.117+deb13-arm64, 6.12.107+deb13-arm64"
            ),
            "{e}"
        );
        let mut idx = index();
        idx.retain(|p| p.name != "linux-headers-6.12.117+deb13-arm64");
        let e = choose(&idx, "arm64", None).unwrap_err();
        assert!(matches!(e, KernelError::NoHeaders { .. }));
    }
}
