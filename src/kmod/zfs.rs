//! What ZFS needs on top of DKMS: the suite's own ZFS (the version of its
//! zfsutils-linux, so userland and module agree) or one the user picks, and
//! the kernel range the source declares in its META file, checked before
//! anything is compiled.

use crate::archive::index::Package;
use crate::archive::version;

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
    #[error("ZFS {zfs} supports Linux {}.{} to {}.{}, not {kernel}\nhelp: build for a kernel in that range (--kernel), or pick a ZFS that supports {kernel} (--zfs VERSION, e.g. from backports)", min.0, min.1, max.0, max.1)]
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
}
