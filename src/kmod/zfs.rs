//! What ZFS needs on top of DKMS: the suite's own ZFS (the version of its
//! zfsutils-linux, so userland and module agree) or one the user picks, and
//! the kernel range the source declares in its META file, checked before
//! anything is compiled.

use crate::archive::index::Package;
use crate::archive::version;
use crate::kmod::kernel::TargetKernel;

/// The kernel range a ZFS source supports (`Linux-Minimum`, `Linux-Maximum`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meta {
    pub version: String,
    pub linux_min: (u32, u32),
    pub linux_max: (u32, u32),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ZfsError {
    #[error("no zfs-dkms in the suites of {release} for {arch}")]
    NoZfs { release: String, arch: String },
    #[error("ZFS {wanted} is not in the suites; available: {available}")]
    UnknownVersion { wanted: String, available: String },
    #[error("ZFS {zfs} supports Linux {}.{} to {}.{}, not {kernel}\nhelp: build for a kernel in that range (--kernel), or pick a ZFS that supports {kernel} (--zfs VERSION); backports has newer ones: add `--suites +RELEASE-backports`, e.g. `zchroot build-zfs --suites +trixie-backports --zfs VERSION`", min.0, min.1, max.0, max.1)]
    KernelOutOfRange {
        zfs: String,
        kernel: String,
        min: (u32, u32),
        max: (u32, u32),
    },
    #[error("zfs-dkms {0}: no META file in the package")]
    NoMeta(String),
}

/// `major.minor` of a version string (`6.12.117+deb13-arm64` → (6, 12)).
pub fn major_minor(v: &str) -> Option<(u32, u32)> {
    let mut it = v.split(|c: char| !c.is_ascii_digit());
    let a = it.next()?.parse().ok()?;
    let b = it.next()?.parse().ok()?;
    Some((a, b))
}

/// Parses ZFS's META file (`Key: value` lines).
pub fn parse_meta(text: &str) -> Option<Meta> {
    let get = |k: &str| {
        text.lines().find_map(|l| {
            let (key, v) = l.split_once(':')?;
            (key.trim() == k).then(|| v.trim().to_string())
        })
    };
    Some(Meta {
        version: get("Version")?,
        linux_min: major_minor(&get("Linux-Minimum")?)?,
        linux_max: major_minor(&get("Linux-Maximum")?)?,
    })
}

/// Refuses a kernel outside the source's range.
pub fn check_kernel(meta: &Meta, kernel_release: &str) -> Result<(), ZfsError> {
    let k = major_minor(kernel_release).unwrap_or((0, 0));
    if k < meta.linux_min || k > meta.linux_max {
        return Err(ZfsError::KernelOutOfRange {
            zfs: meta.version.clone(),
            kernel: kernel_release.into(),
            min: meta.linux_min,
            max: meta.linux_max,
        });
    }
    Ok(())
}

/// The zfs-dkms package to build: the newest, or the version asked for.
pub fn choose<'a>(
    packages: &'a [Package],
    wanted: Option<&str>,
    release: &str,
    arch: &str,
) -> Result<&'a Package, ZfsError> {
    let mut all: Vec<&Package> = packages.iter().filter(|p| p.name == "zfs-dkms").collect();
    all.sort_by(|a, b| version::compare(&b.version, &a.version));
    all.dedup_by(|a, b| a.version == b.version);
    let Some(newest) = all.first() else {
        return Err(ZfsError::NoZfs {
            release: release.into(),
            arch: arch.into(),
        });
    };
    match wanted {
        None => Ok(newest),
        Some(w) => all
            .iter()
            .find(|p| p.version == w || upstream(&p.version) == w)
            .copied()
            .ok_or_else(|| ZfsError::UnknownVersion {
                wanted: w.into(),
                available: all
                    .iter()
                    .map(|p| p.version.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            }),
    }
}

/// The upstream part of a Debian version (`2.3.2-2~deb13u1` → `2.3.2`).
pub fn upstream(v: &str) -> &str {
    let v = v.split_once(':').map(|(_, r)| r).unwrap_or(v);
    v.rsplit_once('-').map(|(u, _)| u).unwrap_or(v)
}

/// What the planner decided for a ZFS build: the source's kernel range
/// (every kernel checked against it), the zfs-dkms version pinned, and
/// the zfsutils-linux version to install on the board.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZfsPlan {
    pub meta: Meta,
    /// The zfs-dkms version to build when one was asked for.
    pub package_version: Option<String>,
    /// zfsutils-linux of the same version, when the suites' ZFS is built.
    pub utils: Option<Userland>,
}

/// The zfsutils-linux the board installs with the module: its version,
/// and the archive component it is in (Debian's is in `contrib`, which a
/// board's sources may not enable).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Userland {
    pub version: String,
    pub component: String,
}

/// The zfsutils-linux that matches zfs-dkms `version`, if the suites have
/// it.
pub fn utils_version(packages: &[Package], version: &str) -> Option<Userland> {
    packages
        .iter()
        .find(|q| q.name == "zfsutils-linux" && q.version == version)
        .map(|q| Userland {
            version: q.version.clone(),
            component: q.origin.component.clone(),
        })
}

/// Plans a ZFS build from its META text (`label` names the source when
/// the text is no META file): refuses kernels outside its range.
pub fn plan(
    meta_text: &str,
    label: &str,
    kernels: &[TargetKernel],
    package_version: Option<String>,
    utils: Option<Userland>,
) -> Result<ZfsPlan, ZfsError> {
    let meta = parse_meta(meta_text).ok_or_else(|| ZfsError::NoMeta(label.into()))?;
    for k in kernels {
        check_kernel(&meta, &k.release)?;
    }
    Ok(ZfsPlan {
        meta,
        package_version,
        utils,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_ranges_are_checked() {
        let meta = parse_meta("Meta:         1\nName:         zfs\nVersion:      2.3.2\nRelease:      1\nLinux-Maximum: 6.15\nLinux-Minimum: 4.18\n").unwrap();
        assert_eq!(meta.linux_max, (6, 15));
        assert!(check_kernel(&meta, "6.12.117+deb13-arm64").is_ok());
        assert!(check_kernel(&meta, "4.18.0-1-arm64").is_ok());
        let e = check_kernel(&meta, "7.0.1+bpo-arm64")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("ZFS 2.3.2 supports Linux 4.18 to 6.15, not 7.0.1+bpo-arm64"),
            "{e}"
        );
        assert!(e.contains("--zfs VERSION"), "{e}");
        assert!(check_kernel(&meta, "4.4.0").is_err());
    }

    #[test]
    fn versions() {
        assert_eq!(upstream("2.3.2-2~deb13u1"), "2.3.2");
        assert_eq!(upstream("1:2.3.2-2"), "2.3.2");
        assert_eq!(major_minor("6.12.117+deb13-arm64"), Some((6, 12)));
    }

    #[test]
    fn a_plan_checks_every_kernel_and_names_the_userland() {
        let k = |r: &str| TargetKernel {
            release: r.into(),
            image_package: format!("linux-image-{r}"),
            image_version: "1".into(),
            alternatives: vec![],
            headers_package: format!("linux-headers-{r}"),
        };
        let meta = "Version: 2.3.2\nLinux-Maximum: 6.15\nLinux-Minimum: 4.18\n";
        let mut utils = Package::for_test("zfsutils-linux", "2.3.2-2", "arm64", "trixie", "");
        let mut origin = (*utils.origin).clone();
        origin.component = "contrib".into();
        utils.origin = std::sync::Arc::new(origin);
        let p = [
            utils,
            Package::for_test("zfs-dkms", "2.3.2-2", "all", "trixie", ""),
        ];
        let utils = utils_version(&p, "2.3.2-2");
        assert_eq!(
            utils,
            Some(Userland {
                version: "2.3.2-2".into(),
                component: "contrib".into()
            })
        );
        assert_eq!(utils_version(&p, "2.3.1-1"), None);
        let plan = plan(meta, "zfs-dkms", &[k("6.12.1-arm64")], None, utils).unwrap();
        assert_eq!(plan.meta.linux_max, (6, 15));
        let e = super::plan(
            meta,
            "zfs-dkms",
            &[k("6.12.1-arm64"), k("7.1.0-arm64")],
            None,
            None,
        )
        .unwrap_err();
        assert!(matches!(e, ZfsError::KernelOutOfRange { .. }), "{e}");
        assert_eq!(
            super::plan("nothing", "x.tar.gz", &[], None, None).unwrap_err(),
            ZfsError::NoMeta("x.tar.gz".into())
        );
    }
}
