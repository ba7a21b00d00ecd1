//! Probes of what the host offers, for the sandbox and for `doctor`: the
//! machine's architecture, kernel version, user, subordinate id ranges,
//! newuidmap, and the host's binfmt_misc table. The only module (with sys)
//! that reads /proc, /etc and the environment for these.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::manifest::{Arch, ManifestError, Manifests};
use crate::sandbox::binfmt;

/// `uname -m` of the running kernel.
pub fn machine() -> String {
    nix::sys::utsname::uname()
        .map(|u| u.machine().to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The kernel release, e.g. `6.18.44-fc-v669`, and its (major, minor).
pub fn kernel() -> (String, (u32, u32)) {
    let release = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut it = release
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().unwrap_or(0));
    let v = (it.next().unwrap_or(0), it.next().unwrap_or(0));
    (release, v)
}

/// Whether this kernel gives each user namespace its own binfmt_misc (6.7+).
pub fn sandboxed_binfmt(version: (u32, u32)) -> bool {
    version >= (6, 7)
}

/// The Debian architecture of the host, from the architecture table.
pub fn host_arch(manifests: &Manifests) -> Result<Arch, ManifestError> {
    let m = machine();
    manifests
        .architectures()?
        .into_iter()
        .find(|a| a.uname == m)
        .ok_or(ManifestError::UnknownArch {
            name: m,
            known: "the machines of rootfs-manifests/architectures.toml".into(),
        })
}

/// The architecture whose ELF header matches `header` (a file's first bytes).
pub fn arch_of_elf<'a>(archs: &'a [Arch], header: &[u8]) -> Option<&'a Arch> {
    archs.iter().find(|a| {
        header.len() >= a.elf_magic.len()
            && a.elf_magic
                .iter()
                .zip(&a.elf_mask)
                .enumerate()
                .all(|(i, (m, k))| header[i] & k == m & k)
    })
}

/// The architecture of a root, from the ELF header of its shell (or busybox).
pub fn root_arch(archs: &[Arch], root: &Path) -> Option<Arch> {
    for rel in [
        "usr/bin/sh",
        "bin/sh",
        "usr/bin/dash",
        "usr/bin/busybox",
        "bin/busybox",
    ] {
        // Symlinks (sh -> dash) resolve inside the root; regular files only.
        let Ok(dir) = crate::rootdir::RootDir::open(root) else {
            return None;
        };
        if let Some(header) = dir.read_head(Path::new(rel), 64) {
            if let Some(a) = arch_of_elf(archs, &header) {
                return Some(a.clone());
            }
        }
    }
    None
}

/// The calling user's name, uid and gid.
pub fn user() -> (String, u32, u32) {
    let uid = nix::unistd::getuid();
    let gid = nix::unistd::getgid().as_raw();
    let name = nix::unistd::User::from_uid(uid)
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_else(|| uid.to_string());
    (name, uid.as_raw(), gid)
}

pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Contents of /etc/subuid and /etc/subgid (empty when missing).
pub fn subid_files() -> (String, String) {
    (
        std::fs::read_to_string("/etc/subuid").unwrap_or_default(),
        std::fs::read_to_string("/etc/subgid").unwrap_or_default(),
    )
}

/// A setuid-root helper on PATH (newuidmap, newgidmap).
pub fn setuid_helper(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into());
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| {
            std::fs::metadata(p)
                .map(|m| {
                    use std::os::unix::fs::MetadataExt;
                    m.is_file() && m.uid() == 0 && m.permissions().mode() & 0o4000 != 0
                })
                .unwrap_or(false)
        })
}

/// The host's binfmt_misc entries: (name, entry).
pub fn binfmt_entries() -> Vec<(String, binfmt::Entry)> {
    let dir = Path::new("/proc/sys/fs/binfmt_misc");
    let Ok(rd) = std::fs::read_dir(dir) else {
        return vec![];
    };
    let mut out: Vec<_> = rd
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            if name == "register" || name == "status" {
                return None;
            }
            let text = std::fs::read_to_string(e.path()).ok()?;
            Some((name, binfmt::parse_entry(&text)?))
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// The host's resolv.conf, resolved through symlinks (systemd-resolved).
pub fn resolv_conf() -> Option<PathBuf> {
    std::fs::canonicalize("/etc/resolv.conf")
        .ok()
        .filter(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elf_headers_pick_the_architecture() {
        let archs = Manifests::embedded().architectures().unwrap();
        let mut h = [0u8; 64];
        h[..20].copy_from_slice(&hex::decode("7f454c460201010000000000000000000200b700").unwrap());
        assert_eq!(arch_of_elf(&archs, &h).unwrap().name, "arm64");
        // ET_DYN (3) instead of ET_EXEC (2) still matches (mask fe).
        h[16] = 3;
        assert_eq!(arch_of_elf(&archs, &h).unwrap().name, "arm64");
        h[18] = 0x3e;
        assert_eq!(arch_of_elf(&archs, &h).unwrap().name, "amd64");
        assert!(arch_of_elf(&archs, b"#!/bin/sh\n").is_none());
    }

    #[test]
    fn kernel_versions_compare() {
        assert!(sandboxed_binfmt((6, 7)));
        assert!(sandboxed_binfmt((6, 18)));
        assert!(!sandboxed_binfmt((6, 1)));
        let (_, v) = kernel();
        assert!(v.0 >= 3, "{v:?}");
    }
}

/// Everything `doctor` looks at, read from the host.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    pub kernel: String,
    pub kernel_version: (u32, u32),
    pub machine: String,
    pub is_root: bool,
    pub user: String,
    pub uid: u32,
    pub subuid: String,
    pub subgid: String,
    pub newuidmap: Option<PathBuf>,
    pub newgidmap: Option<PathBuf>,
    /// sysctl name → value, for the ones that can forbid user namespaces.
    pub sysctls: Vec<(String, Option<String>)>,
    pub binfmt: Vec<(String, binfmt::Entry)>,
    pub binfmt_mounted: bool,
    pub data_dir: PathBuf,
    /// Free bytes on the filesystem of the data directory (or its nearest
    /// existing parent).
    pub free_bytes: Option<u64>,
}

/// Reads the facts. `data_dir` is the state directory.
pub fn facts(data_dir: &Path) -> Facts {
    let (kernel, kernel_version) = kernel();
    let (user, uid, _) = user();
    let (subuid, subgid) = subid_files();
    let sysctls = [
        "kernel.unprivileged_userns_clone",
        "kernel.apparmor_restrict_unprivileged_userns",
        "user.max_user_namespaces",
    ]
    .iter()
    .map(|name| {
        let path = Path::new("/proc/sys").join(name.replace('.', "/"));
        (
            name.to_string(),
            std::fs::read_to_string(path)
                .ok()
                .map(|v| v.trim().to_string()),
        )
    })
    .collect();
    let mut probe = data_dir.to_path_buf();
    while !probe.exists() {
        match probe.parent() {
            Some(p) => probe = p.to_path_buf(),
            None => break,
        }
    }
    let free_bytes = nix::sys::statvfs::statvfs(&probe)
        .ok()
        .map(|s| s.blocks_available() as u64 * s.fragment_size() as u64);
    Facts {
        kernel,
        kernel_version,
        machine: machine(),
        is_root: is_root(),
        user,
        uid,
        subuid,
        subgid,
        newuidmap: setuid_helper("newuidmap"),
        newgidmap: setuid_helper("newgidmap"),
        sysctls,
        binfmt: binfmt_entries(),
        binfmt_mounted: Path::new("/proc/sys/fs/binfmt_misc/status").exists(),
        data_dir: data_dir.to_path_buf(),
        free_bytes,
    }
}
