//! Vendor kernel archives: a board's kernel packages taken from another
//! signed apt archive than the root's (Raspberry Pi OS, Armbian, a board
//! vendor's), fetched and verified by the same client as Debian's (its
//! InRelease against the keyring the user gives, the indexes and .debs
//! against their hashes). Finding a flavour's kernels in its indexes is
//! pure ([`kernels`], [`kernel_set`]); [`Vendor`] fetches.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::archive::fetch::{FetchOptions, Fetcher};
use crate::archive::index::Package;
use crate::archive::refresh::{self, RefreshError};
use crate::archive::{relation, version};
use crate::manifest::{Role, Source};
use crate::paths::DataDirs;
use crate::report::Reporter;

/// Another archive a target's kernels come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelArchive {
    /// Its base URL (`http://archive.raspberrypi.com/debian`).
    pub url: String,
    /// The keyring its InRelease is verified against (the user's: zchroot
    /// ships no vendor's key).
    pub keyring: PathBuf,
    /// Its suite (`bookworm`).
    pub suite: String,
    /// Its components (`main`).
    pub components: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum VendorError {
    #[error("kernel archive {url} (suite {suite}, checked against keyring {}): {error}\nhelp: check the URL and the suite, and that --kernel-keyring is the key the vendor signs this archive with", keyring.display())]
    Refresh {
        url: String,
        suite: String,
        keyring: PathBuf,
        // Not a `source`: said in the message, which is the whole story.
        error: Box<RefreshError>,
    },
    #[error("kernel archive {url}: no kernel of flavour '{flavour}' for {arch} (no linux-image-{flavour} package, no linux-image-RELEASE ending in -{flavour}, no plain linux-image); flavours it has: {known}\nhelp: give --flavour one of the flavours it has")]
    NoFlavour {
        url: String,
        flavour: String,
        arch: String,
        known: String,
    },
    #[error("kernel archive {url}: no kernel{} of flavour '{flavour}'; it has {known}\nhelp: give --kernel one of the kernels it has, or leave --kernel out for the newest", if release.is_empty() { String::new() } else { format!(" {release}") })]
    NoKernel {
        url: String,
        flavour: String,
        release: String,
        known: String,
    },
    #[error("kernel archive {url}: {image} {version} has no headers package {headers} of the same version: DKMS needs the headers\nhelp: ask the vendor to publish the headers with the image, or give --kernel a kernel that has them")]
    NoHeaders {
        url: String,
        image: String,
        version: String,
        headers: String,
    },
    #[error("kernel archive {url}: the headers {headers} {version} hold no usr/src/linux-headers-RELEASE directory: cannot tell their kernel\nhelp: give --kernel a kernel whose headers package has that directory")]
    NoRelease {
        url: String,
        headers: String,
        version: String,
    },
    #[error("kernel archive {url}: {package} {version} names kernel release '{release}', which is not one (letters, digits and .+~_- only)\nhelp: give --kernel another kernel of the archive; this package cannot be built for")]
    BadRelease {
        url: String,
        package: String,
        version: String,
        release: String,
    },
    #[error("kernel archive {url}: the indexes for {arch} have no {image} {version}\nhelp: run the command again (the indexes may have changed meanwhile)")]
    NotInIndex {
        url: String,
        arch: String,
        image: String,
        version: String,
    },
    #[error("kernel archive {url}: {error}\nhelp: check that the archive is reachable and run the command again")]
    Fetch {
        url: String,
        error: Box<RefreshError>,
    },
    #[error("kernel archive {url}: {error}\nhelp: the archive's package is damaged or not a .deb: tell the vendor, or give --kernel another kernel")]
    Deb {
        url: String,
        error: crate::deb::DebError,
    },
}

/// A kernel of a vendor archive: its image package, and what `update`
/// follows it by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// The image package and its version.
    pub image: String,
    pub image_version: String,
    /// `uname -r` when the package name says it (`linux-image-KREL`);
    /// None for `linux-image` / `linux-image-FLAVOUR` images (bindeb-pkg,
    /// Armbian): their headers say it.
    pub release: Option<String>,
    /// The package the board's apt upgrades the kernel through: the
    /// `linux-image-FLAVOUR` metapackage, else the image itself.
    pub held: String,
    /// Its version.
    pub held_version: String,
}

/// The image package a metapackage depends on, if it is one.
fn image_dependency(p: &Package) -> Option<relation::Relation> {
    relation::parse_relations(&p.depends)
        .ok()?
        .into_iter()
        .flatten()
        .find(|r| r.name.starts_with("linux-image-"))
}

/// Whether `linux-image-KREL` is a kernel of `flavour` by its name: the
/// part of KREL after its first `-` is the flavour (`6.12.9-board`), or an
/// ABI number and the flavour (`6.1.0-18-arm64`); not one that merely ends
/// in it (`6.1.0-18-rt-arm64` is not `arm64`, `6.6.31+rpt-rpi-v8` not `v8`).
fn numbered_of(krel: &str, flavour: &str) -> bool {
    let Some((_, rest)) = krel.split_once('-') else {
        return false;
    };
    krel.starts_with(|c: char| c.is_ascii_digit())
        && (rest == flavour
            || rest.split_once('-').is_some_and(|(abi, f)| {
                !abi.is_empty() && abi.bytes().all(|b| b.is_ascii_digit()) && f == flavour
            }))
}

/// Every kernel of `flavour` for `arch` in the indexes (packages of other
/// architectures left out), newest first, one per image package version.
/// In order of preference: Debian-style (each version of the
/// `linux-image-FLAVOUR` metapackage and the `linux-image-KREL` it
/// depends on), `linux-image-FLAVOUR` as the image itself (Armbian),
/// `linux-image-KREL` with KREL `N-FLAVOUR` (bindeb-pkg with a
/// LOCALVERSION), then plain `linux-image` (bindeb-pkg's default name).
/// A release a name says is not checked here: [`Vendor::resolve`] does.
pub fn kernels(packages: &[Package], flavour: &str, arch: &str) -> Vec<Candidate> {
    let packages: Vec<Package> = packages
        .iter()
        .filter(|p| p.arch == arch || p.arch == "all")
        .cloned()
        .collect();
    let meta = format!("linux-image-{flavour}");
    let mut out: Vec<Candidate> = Vec::new();
    let metas: Vec<&Package> = packages.iter().filter(|p| p.name == meta).collect();
    for m in &metas {
        let Some(dep) = image_dependency(m) else {
            continue;
        };
        let image = packages
            .iter()
            .filter(|p| p.name == dep.name)
            .filter(|p| dep.version.as_ref().is_none_or(|v| v.matches(&p.version)))
            .max_by(|a, b| version::compare(&a.version, &b.version));
        if let Some(i) = image {
            out.push(Candidate {
                image: i.name.clone(),
                image_version: i.version.clone(),
                release: Some(dep.name.trim_start_matches("linux-image-").to_string()),
                held: meta.clone(),
                held_version: m.version.clone(),
            });
        }
    }
    if out.is_empty() {
        let own = |p: &&Package| {
            let numbered = p
                .name
                .strip_prefix("linux-image-")
                .is_some_and(|r| numbered_of(r, flavour));
            numbered || p.name == meta
        };
        let mut found: Vec<&Package> = packages.iter().filter(own).collect();
        if found.is_empty() {
            found = packages
                .iter()
                .filter(|p| p.name == "linux-image")
                .collect();
        }
        out = found
            .into_iter()
            .map(|p| {
                let rel = p.name.strip_prefix("linux-image-");
                let numbered = rel.is_some_and(|r| r.starts_with(|c: char| c.is_ascii_digit()));
                Candidate {
                    image: p.name.clone(),
                    image_version: p.version.clone(),
                    release: rel.filter(|_| numbered).map(String::from),
                    held: p.name.clone(),
                    held_version: p.version.clone(),
                }
            })
            .collect();
    }
    // What the board's apt follows each kernel by: the pin a module's
    // metapackage holds (kset's rule, for every archive).
    for c in &mut out {
        let pin = super::kernel::pin_in_index(&packages, flavour, &c.image, &c.image_version);
        c.held = pin.package;
        c.held_version = pin.version;
    }
    out.sort_by(|a, b| version::compare(&b.held_version, &a.held_version));
    out.dedup_by(|a, b| a.image == b.image && a.image_version == b.image_version);
    out
}

/// The flavours an archive's image packages name, for errors.
pub fn known_flavours(packages: &[Package]) -> String {
    let mut v: Vec<&str> = packages
        .iter()
        .filter_map(|p| p.name.strip_prefix("linux-image-"))
        .filter(|x| x.starts_with(|c: char| c.is_ascii_alphabetic()) && !x.ends_with("-dbg"))
        .collect();
    v.sort();
    v.dedup();
    if packages.iter().any(|p| p.name == "linux-image") {
        v.push("(plain linux-image)");
    }
    match v.is_empty() {
        true => "none".into(),
        false => v.join(", "),
    }
}

/// The headers package of an image package: `linux-image-X` →
/// `linux-headers-X`, `linux-image` → `linux-headers`.
pub fn headers_name(image: &str) -> String {
    format!("linux-headers{}", image.trim_start_matches("linux-image"))
}

/// The packages of one kernel: the image, its headers, what the headers
/// need of the kernel's own (common headers, linux-kbuild) as their
/// Depends name them, for `arch` or `all`, and last the flavour's
/// metapackage when the kernel has one (what the board's apt follows).
/// The image is first, the headers second.
pub fn kernel_set<'a>(
    packages: &'a [Package],
    c: &Candidate,
    arch: &str,
    url: &str,
) -> Result<Vec<&'a Package>, VendorError> {
    let exact = |name: &str, v: &str| {
        packages
            .iter()
            .find(|p| p.name == name && p.version == v && (p.arch == arch || p.arch == "all"))
    };
    let image = exact(&c.image, &c.image_version).ok_or_else(|| VendorError::NotInIndex {
        url: url.into(),
        arch: arch.into(),
        image: c.image.clone(),
        version: c.image_version.clone(),
    })?;
    let headers = headers_name(&c.image);
    let h = exact(&headers, &c.image_version).ok_or_else(|| VendorError::NoHeaders {
        url: url.into(),
        image: c.image.clone(),
        version: c.image_version.clone(),
        headers: headers.clone(),
    })?;
    let mut set = vec![image, h];
    let mut i = 1;
    // The headers' own kernel packages, a few levels deep (flavour
    // headers → common headers → linux-kbuild).
    while i < set.len() && set.len() < 8 {
        let deps = relation::parse_relations(&set[i].depends).unwrap_or_default();
        for r in deps.iter().flatten() {
            let kernel_own =
                r.name.starts_with("linux-headers-") || r.name.starts_with("linux-kbuild-");
            if !kernel_own || set.iter().any(|p| p.name == r.name) {
                continue;
            }
            let best = packages
                .iter()
                .filter(|p| p.name == r.name && (p.arch == arch || p.arch == "all"))
                .filter(|p| r.version.as_ref().is_none_or(|v| v.matches(&p.version)))
                .max_by(|a, b| version::compare(&a.version, &b.version));
            set.extend(best);
        }
        i += 1;
    }
    if c.held != c.image {
        set.extend(exact(&c.held, &c.held_version));
    }
    Ok(set)
}

/// The file name apt gives a package's .deb (`NAME_VERSION_ARCH.deb`, the
/// epoch left out), with nothing that could leave a directory.
pub fn deb_file_name(p: &Package) -> String {
    let version = p
        .version
        .split_once(':')
        .map_or(p.version.as_str(), |(_, v)| v);
    format!("{}_{version}_{}.deb", p.name, p.arch).replace('/', "_")
}

/// A vendor archive, its indexes fetched and verified.
pub struct Vendor<'r> {
    pub archive: KernelArchive,
    pub packages: Vec<Package>,
    fetcher: Fetcher<'r>,
}

impl<'r> Vendor<'r> {
    /// Fetches and verifies the archive's indexes for `arch`.
    pub fn open(
        archive: &KernelArchive,
        arch: &str,
        dirs: &DataDirs,
        opts: FetchOptions,
        reporter: &'r dyn Reporter,
    ) -> Result<Vendor<'r>, VendorError> {
        let refresh_err = |source: RefreshError| VendorError::Refresh {
            url: archive.url.clone(),
            suite: archive.suite.clone(),
            keyring: archive.keyring.clone(),
            error: Box::new(source),
        };
        let keyring = refresh::keyring_from_file(&archive.keyring).map_err(refresh_err)?;
        let fetcher = Fetcher::new(
            &dirs.blobs(),
            std::slice::from_ref(&archive.url),
            opts,
            reporter,
        )
        .map_err(|e| refresh_err(e.into()))?
        .remember_release_dates(&dirs.archive_dates());
        let indexes = refresh::refresh(
            &fetcher,
            &[archive.source()],
            &keyring,
            arch,
            SystemTime::now(),
            reporter,
        )
        .map_err(refresh_err)?;
        Ok(Vendor {
            archive: archive.clone(),
            packages: indexes.packages,
            fetcher,
        })
    }

    /// Downloads one package of the indexes, verified.
    pub fn fetch(&self, p: &Package) -> Result<PathBuf, VendorError> {
        let err = |source: RefreshError| VendorError::Fetch {
            url: self.archive.url.clone(),
            error: Box::new(source),
        };
        let downloads = refresh::package_downloads([p]).map_err(|e| err(e.into()))?;
        self.fetcher.fetch(&downloads[0]).map_err(|e| err(e.into()))
    }

    /// The kernels of `flavour` for `arch`, newest first, their releases
    /// not yet worked out (see [`Vendor::resolve`]): nothing downloaded.
    pub fn candidates(&self, flavour: &str, arch: &str) -> Result<Vec<Candidate>, VendorError> {
        let found = kernels(&self.packages, flavour, arch);
        if found.is_empty() {
            return Err(VendorError::NoFlavour {
                url: self.archive.url.clone(),
                flavour: flavour.into(),
                arch: arch.into(),
                known: known_flavours(&self.packages),
            });
        }
        Ok(found)
    }

    /// A candidate with its release: the one its name says, else the one
    /// its headers' files say (downloaded, verified; the blob cache keeps
    /// them for the build), checked to be a kernel release.
    pub fn resolve(&self, mut c: Candidate, arch: &str) -> Result<Candidate, VendorError> {
        let release = match c.release.take() {
            Some(r) => r,
            None => self.release_of(&c, arch)?,
        };
        checked_release(&self.archive.url, &c, release).map(|r| {
            c.release = Some(r);
            c
        })
    }

    /// The kernel release of a candidate, from its headers' files.
    fn release_of(&self, c: &Candidate, arch: &str) -> Result<String, VendorError> {
        let set = kernel_set(&self.packages, c, arch, &self.archive.url)?;
        let path = self.fetch(set[1])?;
        let paths = crate::deb::read::data_paths(&path).map_err(|error| VendorError::Deb {
            url: self.archive.url.clone(),
            error,
        })?;
        paths
            .iter()
            .find_map(|p| {
                let r = p
                    .strip_prefix("usr/src/linux-headers-")?
                    .split('/')
                    .next()?;
                (!r.is_empty() && !r.ends_with("-common")).then(|| r.to_string())
            })
            .ok_or_else(|| VendorError::NoRelease {
                url: self.archive.url.clone(),
                headers: set[1].name.clone(),
                version: set[1].version.clone(),
            })
    }

    /// The kernel `release` (the newest kernel when None), its release
    /// worked out, and its .debs, downloaded and verified: what
    /// `--kernel-deb` takes. Candidates are tried newest first and only as
    /// far as needed (an old kernel whose headers are odd does not stop a
    /// newer one). Each .deb is named in `dir` as apt names it (a link to
    /// the verified copy), so that messages about them say which package
    /// they are.
    pub fn kernel_debs(
        &self,
        flavour: &str,
        arch: &str,
        release: Option<&str>,
        dir: &Path,
    ) -> Result<(Candidate, Vec<PathBuf>), VendorError> {
        let all = self.candidates(flavour, arch)?;
        let c = match release {
            None => self.resolve(all[0].clone(), arch)?,
            Some(want) => self.find_release(&all, want, arch, flavour)?,
        };
        let debs = kernel_set(&self.packages, &c, arch, &self.archive.url)?
            .into_iter()
            .map(|p| {
                let blob = self.fetch(p)?;
                let named = dir.join(deb_file_name(p));
                // Without the link, the verified copy under its hash name.
                Ok(std::os::unix::fs::symlink(&blob, &named).map_or(blob, |()| named))
            })
            .collect::<Result<_, VendorError>>()?;
        Ok((c, debs))
    }

    /// The newest candidate of release `want`: those whose names say their
    /// release are compared first (nothing downloaded); the others are
    /// worked out newest first until one matches.
    fn find_release(
        &self,
        all: &[Candidate],
        want: &str,
        arch: &str,
        flavour: &str,
    ) -> Result<Candidate, VendorError> {
        if let Some(c) = all.iter().find(|c| c.release.as_deref() == Some(want)) {
            return self.resolve(c.clone(), arch);
        }
        let mut known: Vec<String> = Vec::new();
        for c in all {
            match self.resolve(c.clone(), arch) {
                Ok(c) if c.release.as_deref() == Some(want) => return Ok(c),
                Ok(c) => known.extend(c.release),
                Err(_) => known.push(format!("{} {} (unreadable)", c.image, c.image_version)),
            }
        }
        Err(VendorError::NoKernel {
            url: self.archive.url.clone(),
            flavour: flavour.into(),
            release: want.into(),
            known: known.join(", "),
        })
    }
}

/// `release` when it is a kernel release; else an error naming the
/// package it came from.
fn checked_release(url: &str, c: &Candidate, release: String) -> Result<String, VendorError> {
    match super::kernel::valid_release(&release) {
        true => Ok(release),
        false => Err(VendorError::BadRelease {
            url: url.into(),
            package: c.image.clone(),
            version: c.image_version.clone(),
            release,
        }),
    }
}

impl KernelArchive {
    /// The archive as a source of the archive client.
    pub fn source(&self) -> Source {
        Source {
            role: Role::Archive,
            mirror: self.url.trim_end_matches('/').to_string(),
            suite: self.suite.clone(),
            components: match self.components.is_empty() {
                true => vec!["main".into()],
                false => self.components.clone(),
            },
            optional: false,
        }
    }

    /// Checks what can be checked without the network: the URL's form and
    /// that the keyring is one.
    pub fn check_local(&self) -> Result<(), (&'static str, String)> {
        crate::archive::fetch::check_mirror(&self.url)
            .map_err(|why| ("kernel-archive", format!("{}: {why}", self.url)))?;
        refresh::keyring_from_file(&self.keyring).map_err(|e| ("kernel-keyring", e.to_string()))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(name: &str, version: &str, depends: &str) -> Package {
        Package::for_test(name, version, "arm64", "bookworm", depends)
    }

    #[test]
    fn debian_style_kernels_follow_the_flavour_metapackage() {
        let idx = vec![
            p(
                "linux-image-rpi-v8",
                "1:6.6.31-1+rpt1",
                "linux-image-6.6.31+rpt-rpi-v8 (= 1:6.6.31-1+rpt1)",
            ),
            p(
                "linux-image-rpi-v8",
                "1:6.6.20-1+rpt1",
                "linux-image-6.6.20+rpt-rpi-v8 (= 1:6.6.20-1+rpt1)",
            ),
            p("linux-image-6.6.31+rpt-rpi-v8", "1:6.6.31-1+rpt1", ""),
            p("linux-image-6.6.20+rpt-rpi-v8", "1:6.6.20-1+rpt1", ""),
            p(
                "linux-headers-6.6.31+rpt-rpi-v8",
                "1:6.6.31-1+rpt1",
                "linux-headers-6.6.31+rpt-common-rpi (= 1:6.6.31-1+rpt1), linux-kbuild-6.6.31+rpt (>= 1:6.6.31-1+rpt1), gcc-12",
            ),
            p(
                "linux-headers-6.6.31+rpt-common-rpi",
                "1:6.6.31-1+rpt1",
                "",
            ),
            p("linux-kbuild-6.6.31+rpt", "1:6.6.31-1+rpt1", "libc6"),
            p("linux-image-rpi-2712", "1:6.6.31-1+rpt1", "linux-image-6.6.31+rpt-rpi-2712"),
        ];
        let k = kernels(&idx, "rpi-v8", "arm64");
        assert_eq!(k.len(), 2);
        let newest = &k[0];
        assert_eq!(newest.release.as_deref(), Some("6.6.31+rpt-rpi-v8"));
        assert_eq!(newest.image, "linux-image-6.6.31+rpt-rpi-v8");
        assert_eq!(newest.held, "linux-image-rpi-v8");
        assert_eq!(newest.held_version, "1:6.6.31-1+rpt1");
        let set: Vec<&str> = kernel_set(&idx, newest, "arm64", "u")
            .unwrap()
            .iter()
            .map(|p| p.name.as_str())
            .collect();
        assert_eq!(
            set,
            [
                "linux-image-6.6.31+rpt-rpi-v8",
                "linux-headers-6.6.31+rpt-rpi-v8",
                "linux-headers-6.6.31+rpt-common-rpi",
                "linux-kbuild-6.6.31+rpt",
                "linux-image-rpi-v8"
            ]
        );
        // The older kernel has no headers in the indexes: named.
        let e = kernel_set(&idx, &k[1], "arm64", "http://v").unwrap_err();
        assert!(
            e.to_string()
                .contains("has no headers package linux-headers-6.6.20+rpt-rpi-v8"),
            "{e}"
        );
        assert!(kernels(&idx, "rpi-9", "arm64").is_empty());
        assert_eq!(
            deb_file_name(&idx[2]),
            "linux-image-6.6.31+rpt-rpi-v8_6.6.31-1+rpt1_arm64.deb"
        );
        assert_eq!(known_flavours(&idx), "rpi-2712, rpi-v8");
    }

    #[test]
    fn bindeb_pkg_style_kernels_are_the_images_themselves() {
        // Armbian: linux-image-BRANCH-FAMILY is the image, its release is
        // in the headers.
        let idx = vec![
            p("linux-image-current-rockchip64", "24.5.1", ""),
            p("linux-image-current-rockchip64", "24.8.1", ""),
            p("linux-headers-current-rockchip64", "24.8.1", ""),
            p("linux-image-edge-rockchip64", "24.8.1", ""),
        ];
        let k = kernels(&idx, "current-rockchip64", "arm64");
        assert_eq!(k.len(), 2);
        assert_eq!(k[0].image_version, "24.8.1");
        assert_eq!(k[0].release, None);
        assert_eq!(k[0].held, "linux-image-current-rockchip64");
        assert_eq!(
            headers_name(&k[0].image),
            "linux-headers-current-rockchip64"
        );
        // make bindeb-pkg with a LOCALVERSION, and with neither.
        let idx = vec![
            p("linux-image-6.12.9-board", "6.12.9-3", ""),
            p("linux-image-6.12.8-board", "6.12.8-1", ""),
        ];
        let k = kernels(&idx, "board", "arm64");
        assert_eq!(k[0].release.as_deref(), Some("6.12.9-board"));
        assert_eq!(k[0].held, "linux-image-6.12.9-board");
        let idx = vec![
            p("linux-image", "6.12.9-3", ""),
            p("linux-headers", "6.12.9-3", ""),
        ];
        let k = kernels(&idx, "anything", "arm64");
        assert_eq!(k.len(), 1);
        assert_eq!(k[0].held, "linux-image");
        assert_eq!(k[0].release, None);
        assert_eq!(kernel_set(&idx, &k[0], "arm64", "u").unwrap().len(), 2);
    }

    #[test]
    fn images_of_another_architecture_are_no_kernels_and_never_panic() {
        let mut armhf = p("linux-image-6.12.9-board", "6.12.9-4", "");
        armhf.arch = "armhf".into();
        let idx = vec![armhf, p("linux-image-6.12.9-board", "6.12.9-3", "")];
        let k = kernels(&idx, "board", "arm64");
        assert_eq!(k.len(), 1, "{k:?}");
        assert_eq!(k[0].image_version, "6.12.9-3");
        assert!(kernels(&idx[..1], "board", "arm64").is_empty());
        // A candidate the indexes lack (they changed meanwhile): an error.
        let gone = Candidate {
            image_version: "6.12.9-4".into(),
            ..k[0].clone()
        };
        let e = kernel_set(&idx, &gone, "arm64", "http://v").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("kernel archive http://v: the indexes for arm64 have no linux-image-6.12.9-board 6.12.9-4\nhelp: "),
            "{e}"
        );
    }

    #[test]
    fn a_release_that_is_no_kernel_release_is_an_error_naming_the_package() {
        let idx = vec![
            p(
                "linux-image-board",
                "2",
                "linux-image-6.1/../../x-board (= 2)",
            ),
            p("linux-image-6.1/../../x-board", "2", ""),
        ];
        let k = kernels(&idx, "board", "arm64");
        let rel = k[0].release.clone().unwrap();
        let e = checked_release("http://v", &k[0], rel).unwrap_err();
        assert_eq!(
            e.to_string().lines().next().unwrap(),
            "kernel archive http://v: linux-image-6.1/../../x-board 2 names kernel release '6.1/../../x-board', which is not one (letters, digits and .+~_- only)"
        );
        assert!(e.to_string().contains("\nhelp: "), "{e}");
        let ok = checked_release("http://v", &k[0], "6.12.9-board".into()).unwrap();
        assert_eq!(ok, "6.12.9-board");
    }

    #[test]
    fn a_flavour_is_the_whole_rest_of_the_release() {
        assert!(numbered_of("6.12.9-board", "board"));
        assert!(numbered_of("6.1.0-18-arm64", "arm64"));
        assert!(numbered_of("6.6.31+rpt-rpi-v8", "rpi-v8"));
        assert!(!numbered_of("6.1.0-18-rt-arm64", "arm64"));
        assert!(!numbered_of("6.6.31+rpt-rpi-v8", "v8"));
        assert!(!numbered_of("6.12.9", "board"));
        assert!(!numbered_of("rt-arm64", "arm64"));
        let idx = vec![
            p("linux-image-6.1.0-18-rt-arm64", "6.1.76-1", ""),
            p("linux-image-6.6.31+rpt-rpi-v8", "1:6.6.31-1", ""),
        ];
        assert!(kernels(&idx, "arm64", "arm64").is_empty());
        assert!(kernels(&idx, "v8", "arm64").is_empty());
        assert_eq!(kernels(&idx, "rt-arm64", "arm64").len(), 1);
    }

    #[test]
    fn errors_say_what_to_do() {
        let e = VendorError::NoKernel {
            url: "http://v".into(),
            flavour: "board".into(),
            release: String::new(),
            known: "6.12.9-board".into(),
        };
        let text = e.to_string();
        assert!(
            text.starts_with("kernel archive http://v: no kernel of flavour 'board'"),
            "{text}"
        );
        assert!(text.contains("\nhelp: give --kernel one of"), "{text}");
        let e = VendorError::NoFlavour {
            url: "http://v".into(),
            flavour: "x".into(),
            arch: "arm64".into(),
            known: "board".into(),
        };
        assert!(
            e.to_string().contains("\nhelp: give --flavour one of"),
            "{e}"
        );
        for e in [
            VendorError::NoHeaders {
                url: "u".into(),
                image: "i".into(),
                version: "1".into(),
                headers: "h".into(),
            },
            VendorError::NoRelease {
                url: "u".into(),
                headers: "h".into(),
                version: "1".into(),
            },
        ] {
            assert!(e.to_string().contains("\nhelp: "), "{e}");
        }
    }

    #[test]
    fn the_archive_is_a_source_with_main_by_default() {
        let a = KernelArchive {
            url: "http://archive.raspberrypi.com/debian/".into(),
            keyring: "/k.gpg".into(),
            suite: "bookworm".into(),
            components: vec![],
        };
        let s = a.source();
        assert_eq!(s.mirror, "http://archive.raspberrypi.com/debian");
        assert_eq!(s.components, ["main"]);
        let e = KernelArchive {
            url: "file:///srv".into(),
            ..a.clone()
        }
        .check_local()
        .unwrap_err();
        assert_eq!(e.0, "kernel-archive");
        let e = a.check_local().unwrap_err();
        assert_eq!(e.0, "kernel-keyring");
        assert!(e.1.starts_with("/k.gpg: "), "{}", e.1);
        assert_eq!(e.1.matches("/k.gpg").count(), 1, "{}", e.1);
    }
}
