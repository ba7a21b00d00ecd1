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

/// A kernel a target should have a module for (`update`), and the
/// version its board's apt sees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelEntry {
    /// `uname -r`.
    pub release: String,
    /// The version the board's apt sees: the flavour metapackage's (or the
    /// image's own, for the board's own kernels).
    pub version: String,
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

/// Whether `r` can be a kernel release (`uname -r`) zchroot puts in file
/// names, package names and scripts: it comes from packages' file lists
/// and relations, which an archive (even a signed one) controls.
pub fn valid_release(r: &str) -> bool {
    (1..=128).contains(&r.len())
        && r.as_bytes()[0].is_ascii_alphanumeric()
        && r.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".+~_-".contains(&b))
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

/// The package a module's metapackage holds back for a kernel of an
/// archive (Debian's suites, a vendor's): the flavour's metapackage
/// `linux-image-FLAVOUR` whose Depends names the image `image` at
/// `version` (its newest such version), else the image package itself.
pub fn pin_in_index(packages: &[Package], flavour: &str, image: &str, version: &str) -> Pin {
    let meta = format!("linux-image-{flavour}");
    packages
        .iter()
        .filter(|p| p.name == meta)
        .filter(|p| {
            relation::parse_relations(&p.depends)
                .unwrap_or_default()
                .iter()
                .flatten()
                .any(|r| r.name == image && r.version.as_ref().is_none_or(|v| v.matches(version)))
        })
        .max_by(|a, b| version::compare(&a.version, &b.version))
        .map(|p| Pin {
            package: p.name.clone(),
            version: p.version.clone(),
        })
        .unwrap_or_else(|| Pin {
            package: image.to_string(),
            version: version.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_archive_kernel_pins_its_flavour_metapackage_else_itself() {
        let pin = pin_in_index(
            &index(),
            "arm64",
            "linux-image-6.12.107+deb13-arm64",
            "6.12.107-1",
        );
        assert_eq!(
            (pin.package.as_str(), pin.version.as_str()),
            ("linux-image-arm64", "6.12.107-1")
        );
        // bindeb-pkg-style names in a vendor's archive: no metapackage.
        let idx = vec![p("linux-image", "6.12.48-2", "")];
        let pin = pin_in_index(&idx, "arm64", "linux-image", "6.12.48-2");
        assert_eq!(
            (pin.package.as_str(), pin.version.as_str()),
            ("linux-image", "6.12.48-2")
        );
    }

    fn p(name: &str, version: &str, depends: &str) -> Package {
        Package::for_test(name, version, "arm64", "trixie", depends)
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

/// One package of the user's kernel set, with its name and version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalPart {
    pub deb: std::path::PathBuf,
    pub package: String,
    pub version: String,
}

/// A kernel from the user's own packages (`make bindeb-pkg`, a vendor's,
/// a Debian-split set): the image, the headers with the `.config`, and
/// what those headers need that the set holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalKernel {
    pub kernel: TargetKernel,
    pub image_deb: std::path::PathBuf,
    /// The headers that hold the kernel's `.config`
    /// (`usr/src/linux-headers-RELEASE/`).
    pub headers_deb: std::path::PathBuf,
    /// The common headers those headers depend on (Debian-split sets:
    /// `linux-headers-VER-common`, Architecture: all), each after what it
    /// depends on; empty for `make bindeb-pkg` sets.
    pub common_debs: Vec<std::path::PathBuf>,
    /// The target's build helpers (`linux-kbuild-VER`) when in the set.
    pub kbuild: Option<LocalPart>,
    /// The flavour's metapackage (`linux-image-FLAVOUR`) when in the set.
    pub meta: Option<LocalPart>,
    /// The flavour's headers metapackage (`linux-headers-FLAVOUR`) when in
    /// the set.
    pub headers_meta: Option<LocalPart>,
    /// Parts the headers depend on that the set lacks and the target's
    /// suites have (`linux-headers-VER-common=V`, `linux-kbuild-VER=V`):
    /// apt installs them with the set.
    pub suite_parts: Vec<String>,
}

/// The package a module's metapackage holds back (its `Breaks`), at the
/// version the board's apt sees for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pin {
    pub package: String,
    pub version: String,
}

impl LocalKernel {
    /// Every .deb of the set that a root installs for a build: the image,
    /// then the headers' parts, each after what it depends on.
    pub fn install_debs(&self) -> Vec<&std::path::Path> {
        let mut v = vec![self.image_deb.as_path()];
        v.extend(self.kbuild.iter().map(|k| k.deb.as_path()));
        v.extend(self.common_debs.iter().map(|d| d.as_path()));
        v.push(&self.headers_deb);
        v
    }

    /// Every .deb of the set: what [`Self::install_debs`] gives and the
    /// flavour's metapackages (a build given these finds the same set).
    pub fn debs(&self) -> Vec<&std::path::Path> {
        let mut v = self.install_debs();
        v.extend(self.meta.iter().map(|m| m.deb.as_path()));
        v.extend(self.headers_meta.iter().map(|m| m.deb.as_path()));
        v
    }

    /// What the board's apt must not upgrade past this kernel: the
    /// flavour's metapackage when the set has one, else the image package.
    pub fn pin(&self) -> Pin {
        match &self.meta {
            Some(m) => Pin {
                package: m.package.clone(),
                version: m.version.clone(),
            },
            None => Pin {
                package: self.kernel.image_package.clone(),
                version: self.kernel.image_version.clone(),
            },
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KernelDebError {
    #[error(transparent)]
    Deb(#[from] crate::deb::DebError),
    #[error("{}: {message}", path.display())]
    Bad {
        path: std::path::PathBuf,
        message: String,
    },
    #[error("--kernel-deb: {0}")]
    Set(String),
    #[error("kernel-deb-dir {}: {message}", dir.display())]
    Dir {
        dir: std::path::PathBuf,
        message: String,
    },
}

/// The kernel release an image or headers package is for, from its files:
/// `boot/vmlinuz-R` (or vmlinux-, Image-), `*/modules/R/`, `usr/src/linux-headers-R/`.
pub fn release_from_paths(paths: &[String]) -> Option<String> {
    for p in paths {
        for prefix in [
            "boot/vmlinuz-",
            "boot/vmlinux-",
            "boot/Image-",
            "usr/src/linux-headers-",
        ] {
            if let Some(rest) = p.strip_prefix(prefix) {
                let r = rest.split('/').next().unwrap_or("");
                if !r.is_empty() {
                    return Some(r.to_string());
                }
            }
        }
    }
    paths.iter().find_map(|p| {
        let rest = p
            .strip_prefix("usr/lib/modules/")
            .or_else(|| p.strip_prefix("lib/modules/"))?;
        let r = rest.split('/').next().unwrap_or("");
        (!r.is_empty() && rest.contains('/')).then(|| r.to_string())
    })
}

/// Whether the indexes have a package satisfying `r`.
fn in_index(packages: &[Package], r: &relation::Relation) -> bool {
    packages
        .iter()
        .any(|p| p.name == r.name && r.version.as_ref().is_none_or(|v| v.matches(&p.version)))
}

/// Reads what grouping needs of each .deb (its control fields and file
/// list), checking that each is for the target's architecture (or `all`).
pub fn read_records(
    debs: &[std::path::PathBuf],
    arch: &str,
) -> Result<Vec<super::kset::DebRecord>, KernelDebError> {
    let mut out = Vec::new();
    for deb in debs {
        let control = crate::deb::read::read_control(deb)?;
        let stanza = crate::archive::deb822::parse(&control, "control")
            .ok()
            .and_then(|v| v.into_iter().next())
            .ok_or_else(|| KernelDebError::Bad {
                path: deb.clone(),
                message: "unreadable control file".into(),
            })?;
        let field = |k: &str| stanza.get(k).unwrap_or("").to_string();
        let deb_arch = field("Architecture");
        if deb_arch != arch && deb_arch != "all" {
            return Err(KernelDebError::Bad {
                path: deb.clone(),
                message: format!("is for architecture {deb_arch}, the target is {arch}"),
            });
        }
        out.push(super::kset::DebRecord {
            deb: deb.clone(),
            package: field("Package"),
            version: field("Version"),
            arch: deb_arch,
            source: field("Source"),
            depends: field("Depends"),
            paths: crate::deb::read::data_paths(deb)?,
        });
    }
    Ok(out)
}

/// Reads the user's kernel packages (`--kernel-deb`): one kernel's set,
/// a `make bindeb-pkg` image and headers or a Debian-split set, grouped
/// by what the packages ship and depend on. Packages of no kernel are an
/// error, except those that come with one (`linux-libc-dev`, debug
/// symbols).
/// `packages` are the target's indexes: a part the set lacks may be there.
pub fn from_debs(
    debs: &[std::path::PathBuf],
    arch: &str,
    packages: &[Package],
) -> Result<LocalKernel, KernelDebError> {
    let records = read_records(debs, arch)?;
    let g = super::kset::group(&records, "the --kernel-deb files", &|r| {
        in_index(packages, r)
    })
    .map_err(KernelDebError::Set)?;
    if let Some(u) = g.unused.iter().find(|u| !u.expected) {
        return Err(KernelDebError::Set(format!(
            "{} (package {}) is part of no kernel: {}\nhelp: give one kernel's packages: its image, its headers and the headers packages they depend on",
            u.deb.display(),
            u.package,
            u.why
        )));
    }
    let mut kernels = g.kernels;
    match kernels.len() {
        0 => Err(KernelDebError::Set(
            "no kernel image package (linux-image*, shipping boot/vmlinuz-*) among them".into(),
        )),
        1 => Ok(kernels.remove(0)),
        _ => Err(KernelDebError::Set(format!(
            "they hold {} kernels ({}): one build takes one kernel's packages\nhelp: build once per kernel, or name the kernels of a target's kernel-deb-dir",
            kernels.len(),
            kernels
                .iter()
                .map(|k| format!("{} {}", k.kernel.release, k.kernel.image_version))
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

/// The kernels of a directory's .debs (a target's `kernel-deb-dir`),
/// oldest first; packages of no kernel are left out.
pub fn from_dir_debs(
    debs: &[std::path::PathBuf],
    arch: &str,
    dir: &std::path::Path,
    packages: &[Package],
) -> Result<Vec<LocalKernel>, KernelDebError> {
    let records = read_records(debs, arch)?;
    let g = super::kset::group(&records, &dir.display().to_string(), &|r| {
        in_index(packages, r)
    })
    .map_err(|message| KernelDebError::Dir {
        dir: dir.into(),
        message,
    })?;
    Ok(g.kernels)
}

#[cfg(test)]
mod local_tests {
    use super::*;

    #[test]
    fn releases_from_archives_are_checked_before_use() {
        for ok in [
            "6.12.118+deb13-arm64",
            "6.12.47+rpt-rpi-v8",
            "4.20.3",
            "6.1.0_x~1",
        ] {
            assert!(valid_release(ok), "{ok}");
        }
        for bad in ["", "../x", "a/b", "-x", ".x", "a b", "a\nb", "a'b", "a\0b"] {
            assert!(!valid_release(bad), "{bad:?}");
        }
    }

    #[test]
    fn releases_are_read_from_package_files() {
        let p = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            release_from_paths(&p(&[
                "boot/",
                "boot/vmlinuz-4.20.3",
                "lib/modules/4.20.3/kernel/x.ko"
            ]))
            .as_deref(),
            Some("4.20.3")
        );
        assert_eq!(
            release_from_paths(&p(&["usr/src/linux-headers-6.12.1+x/Makefile"])).as_deref(),
            Some("6.12.1+x")
        );
        assert_eq!(
            release_from_paths(&p(&["usr/lib/modules/6.1.0/modules.order"])).as_deref(),
            Some("6.1.0")
        );
        assert_eq!(release_from_paths(&p(&["usr/share/doc/x"])), None);
    }

    fn mk_deb(
        dir: &std::path::Path,
        name: &str,
        fields: &[(&str, &str)],
        files: &[&str],
    ) -> std::path::PathBuf {
        use crate::deb::write::DebBuilder;
        let mut control = vec![("Architecture".to_string(), "arm64".to_string())];
        control.extend(fields.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let mut b = DebBuilder::new(control);
        for f in files {
            b.add_file(f, 0o644, b"x".to_vec());
        }
        let path = dir.join(name);
        let mut out = Vec::new();
        b.write_to(&mut out).unwrap();
        std::fs::write(&path, out).unwrap();
        path
    }

    #[test]
    fn the_users_packages_name_the_dependency() {
        let dir = tempfile::tempdir().unwrap();
        let mk = |name: &str, pkg: &str, file: &str| {
            mk_deb(
                dir.path(),
                name,
                &[("Package", pkg), ("Version", "4.20.3-2")],
                &[file],
            )
        };
        let image = mk("i.deb", "linux-image", "boot/vmlinuz-4.20.3");
        let headers = mk(
            "h.deb",
            "linux-headers",
            "usr/src/linux-headers-4.20.3/.config",
        );
        let k = from_debs(&[image.clone(), headers.clone()], "arm64", &[]).unwrap();
        assert_eq!(k.kernel.release, "4.20.3");
        assert_eq!(k.kernel.depends(), "linux-image (= 4.20.3-2)");
        let other = mk(
            "h2.deb",
            "linux-headers",
            "usr/src/linux-headers-4.20.4/.config",
        );
        let e = from_debs(&[image.clone(), other], "arm64", &[])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("are for kernel 4.20.4, but the image") && e.contains("do not match"),
            "{e}"
        );
        let e = from_debs(&[image.clone(), headers.clone()], "armhf", &[])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("is for architecture arm64, the target is armhf"),
            "{e}"
        );
        let e = from_debs(std::slice::from_ref(&image), "arm64", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("no headers package"), "{e}");
        let stray = mk("s.deb", "hello", "usr/bin/hello");
        let e = from_debs(&[image, headers, stray], "arm64", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("(package hello) is part of no kernel"), "{e}");
    }

    /// The command line that failed with "the headers … are for kernel
    /// VER-common, but the image … is kernel KREL": image, flavour headers
    /// and common headers of a Debian-split kernel are one kernel.
    #[test]
    fn a_debian_split_kernel_deb_set_is_one_kernel() {
        let dir = tempfile::tempdir().unwrap();
        let v = "6.12.117-1";
        let image = mk_deb(
            dir.path(),
            "linux-image-6.12.117+deb13-arm64-unsigned_6.12.117-1_arm64.deb",
            &[
                ("Package", "linux-image-6.12.117+deb13-arm64-unsigned"),
                ("Version", v),
                ("Source", "linux"),
            ],
            &["boot/vmlinuz-6.12.117+deb13-arm64"],
        );
        let headers = mk_deb(
            dir.path(),
            "linux-headers-6.12.117+deb13-arm64_6.12.117-1_arm64.deb",
            &[
                ("Package", "linux-headers-6.12.117+deb13-arm64"),
                ("Version", v),
                ("Depends", "linux-headers-6.12.117+deb13-common (= 6.12.117-1), linux-kbuild-6.12.117+deb13 (= 6.12.117-1), gcc-14"),
            ],
            &[
                "usr/src/linux-headers-6.12.117+deb13-arm64/.config",
                "usr/lib/modules/6.12.117+deb13-arm64/build",
            ],
        );
        let common = mk_deb(
            dir.path(),
            "linux-headers-6.12.117+deb13-common_6.12.117-1_all.deb",
            &[
                ("Package", "linux-headers-6.12.117+deb13-common"),
                ("Version", v),
                ("Architecture", "all"),
            ],
            &["usr/src/linux-headers-6.12.117+deb13-common/Makefile"],
        );
        let k = from_debs(
            &[image.clone(), headers.clone(), common.clone()],
            "arm64",
            &[],
        )
        .unwrap();
        assert_eq!(k.kernel.release, "6.12.117+deb13-arm64");
        assert_eq!(k.image_deb, image);
        assert_eq!(k.headers_deb, headers);
        assert_eq!(k.common_debs, vec![common.clone()]);
        assert_eq!(k.kbuild, None);
        assert_eq!(
            k.kernel.depends(),
            "linux-image-6.12.117+deb13-arm64-unsigned (= 6.12.117-1) | linux-image-6.12.117+deb13-arm64 (= 6.12.117-1)"
        );
        assert_eq!(k.install_debs(), [&image, &common, &headers]);
        let e = from_debs(&[image, headers], "arm64", &[])
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("--kernel-deb: linux-headers-6.12.117+deb13-arm64 6.12.117-1 depends on linux-headers-6.12.117+deb13-common (= 6.12.117-1), which is not among the --kernel-deb files"),
            "{e}"
        );
    }
}
