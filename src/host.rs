//! Probes of what the host offers, for the sandbox and for `doctor`: the
//! machine's architecture, kernel version, user, subordinate id ranges,
//! newuidmap, the host's binfmt_misc table, sysctls, processes' start times
//! and the state directories' modes. The only module (with sys)
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
    crate::kmod::elf::arch_of(archs, header)
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

/// The start time of process `pid` (clock ticks after boot, field 22 of
/// `/proc/PID/stat`), or None when there is no such process. With the PID it
/// names one process for the whole boot, even after the PID is reused.
pub fn process_start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_start_time(&stat)
}

/// Field 22 of a `/proc/PID/stat` line. The command name (field 2) may hold
/// spaces and parentheses, so fields are counted after its last `)`.
fn parse_start_time(stat: &str) -> Option<u64> {
    let (_, rest) = stat.rsplit_once(')')?;
    // rest starts at field 3 (state): field 22 is the 20th after it.
    rest.split_ascii_whitespace().nth(19)?.parse().ok()
}

/// The inode of this process's PID namespace: PIDs compare only within one.
pub fn pid_namespace() -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self/ns/pid").ok().map(|m| m.ino())
}

/// Reads a sysctl (`dev.tty.legacy_tiocsti` → `/proc/sys/dev/tty/legacy_tiocsti`),
/// trimmed; None when this kernel has no such sysctl.
pub fn sysctl(name: &str) -> Option<String> {
    let path = Path::new("/proc/sys").join(name.replace('.', "/"));
    std::fs::read_to_string(path)
        .ok()
        .map(|v| v.trim().to_string())
}

/// Mode and owner of a state directory, as `doctor` judges its privacy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirFacts {
    pub path: PathBuf,
    /// (`st_mode`: file type and permission bits, owner uid), or None when
    /// it does not exist yet. A symlink is described as itself, never
    /// followed.
    pub mode_owner: Option<(u32, u32)>,
}

/// [`DirFacts`] of `path`.
pub fn dir_facts(path: &Path) -> DirFacts {
    use std::os::unix::fs::MetadataExt;
    DirFacts {
        path: path.to_path_buf(),
        mode_owner: std::fs::symlink_metadata(path)
            .ok()
            .map(|m| (m.mode(), m.uid())),
    }
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
    fn start_times_are_read_after_the_command_name() {
        // A command name with spaces and a parenthesis must not shift fields.
        let stat =
            "4242 (a) b (c) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 50";
        assert_eq!(parse_start_time(stat), Some(987654));
        assert_eq!(parse_start_time("4242 (x) S 1"), None);
        let me = std::process::id();
        let t = process_start_time(me).expect("our own start time");
        assert_eq!(process_start_time(me), Some(t), "stable");
        assert!(pid_namespace().is_some());
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

/// Set to `host` (tests only), zchroot acts as on a kernel before 6.7,
/// whose binfmt_misc is the host's alone.
pub const FORCE_HOST_BINFMT_ENV: &str = "ZCHROOT_BINFMT";

/// What deciding how to run a root's programs needs from the host, read
/// once (so that `doctor` and `run` cannot disagree).
#[derive(Debug, Clone, Default)]
pub struct SandboxFacts {
    pub kernel: String,
    pub kernel_version: (u32, u32),
    pub is_root: bool,
    /// Tests force the path of kernels before 6.7 (`ZCHROOT_BINFMT=host`).
    pub force_host_binfmt: bool,
    /// The host's binfmt_misc entries.
    pub binfmt: Vec<(String, binfmt::Entry)>,
    /// `TERM`, passed on to the command.
    pub term: Option<String>,
}

impl SandboxFacts {
    pub fn probe() -> SandboxFacts {
        let (kernel, kernel_version) = kernel();
        SandboxFacts {
            kernel,
            kernel_version,
            is_root: is_root(),
            force_host_binfmt: force_host_binfmt(),
            binfmt: binfmt_entries(),
            term: std::env::var("TERM").ok(),
        }
    }

    /// Whether qemu is registered in the sandbox's own binfmt_misc.
    pub fn sandboxed_binfmt(&self) -> bool {
        sandboxed_binfmt(self.kernel_version) && !self.force_host_binfmt
    }
}

/// Whether tests force the host-table path (`ZCHROOT_BINFMT=host`).
pub fn force_host_binfmt() -> bool {
    std::env::var(FORCE_HOST_BINFMT_ENV).as_deref() == Ok("host")
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
    /// Temporary entries (`zchroot-…`) in the host's binfmt_misc whose
    /// zchroot is gone; None when they were not looked for (not root, or the
    /// table could not be read: the string says why).
    pub stale_binfmt: Option<Result<Vec<String>, String>>,
    /// The directories that must stay private to the user: the state
    /// directory, the roots under it, and the cache.
    pub private_dirs: Vec<DirFacts>,
    /// The other directories zchroot made under its state, cache and
    /// config directories (see [`crate::doctor::Private`]).
    pub more_private_dirs: Vec<DirFacts>,
    /// zchroot's lock files: private too, or another user could hold a
    /// lock.
    pub lock_files: Vec<DirFacts>,
    pub data_dir: PathBuf,
    /// Free bytes on the filesystem of the data directory (or its nearest
    /// existing parent).
    pub free_bytes: Option<u64>,
}

/// Reads the facts. `data_dir` is the state directory; `private` the
/// directories that must be private to the user.
pub fn facts(data_dir: &Path, private: &[PathBuf]) -> Facts {
    let (kernel, kernel_version) = kernel();
    let (user, uid, _) = user();
    let (subuid, subgid) = subid_files();
    let sysctls = [
        "kernel.unprivileged_userns_clone",
        "kernel.apparmor_restrict_unprivileged_userns",
        "user.max_user_namespaces",
        "dev.tty.legacy_tiocsti",
    ]
    .iter()
    .map(|name| (name.to_string(), sysctl(name)))
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
        .map(|s| s.blocks_available() * s.fragment_size());
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
        stale_binfmt: None,
        private_dirs: private.iter().map(|p| dir_facts(p)).collect(),
        more_private_dirs: vec![],
        lock_files: vec![],
        data_dir: data_dir.to_path_buf(),
        free_bytes,
    }
}
