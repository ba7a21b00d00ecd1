//! The sandbox: user, mount, PID, UTS and IPC namespaces (and optionally
//! network), id maps, a private filesystem view of a root, and qemu-user
//! registered through binfmt_misc for foreign architectures, all set up by
//! zchroot itself and gone when the command ends.

pub mod binfmt;
pub mod host_binfmt;
pub mod idmap;
pub mod mounts;
pub mod qemu;
pub mod spawn;

use std::path::{Path, PathBuf};

use crate::archive::fetch::FetchOptions;
use crate::host;
use crate::manifest::{Arch, ManifestError, Manifests};
use crate::paths::DataDirs;
use crate::report::Reporter;
use idmap::{IdMapError, IdMaps};
use mounts::{Bind, Layout};

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("{}: not a directory holding a root", .0.display())]
    NotARoot(PathBuf),
    #[error("refusing to use the host's / as a root")]
    HostRoot,
    #[error("cannot tell the architecture of the root {}: no ELF shell (usr/bin/sh, bin/sh, busybox) found\nhelp: pass --arch", .0.display())]
    UnknownRootArch(PathBuf),
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error(transparent)]
    IdMap(#[from] IdMapError),
    #[error(transparent)]
    Qemu(#[from] qemu::QemuError),
    #[error("running {arch} programs needs qemu-user registered through binfmt_misc: this kernel ({kernel}) has no binfmt_misc per user namespace (Linux 6.7 or newer has), the host has no {arch} entry with the F flag, and only root may add one for the run\nhelp: run zchroot on Linux 6.7 or newer, or as root, or register qemu-{qemu} on the host with the F flag (Debian: `sudo apt-get install qemu-user-binfmt`)")]
    NoBinfmt {
        arch: String,
        qemu: String,
        kernel: String,
    },
    #[error(transparent)]
    Spawn(#[from] spawn::SpawnError),
}

/// What to run, where.
#[derive(Debug, Clone)]
pub struct RunSpec {
    pub root: PathBuf,
    /// The root's Debian architecture; found from its shell when `None`.
    pub arch: Option<String>,
    /// The release whose archive supplies qemu-user.
    pub release: String,
    pub mirror: Option<String>,
    pub binds: Vec<Bind>,
    pub share_network: bool,
    pub hostname: String,
    pub argv: Vec<String>,
    /// Working directory inside the root.
    pub cwd: PathBuf,
}

/// How the sandbox runs foreign binaries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Emulation {
    /// The root's architecture is the host's.
    Native,
    /// qemu registered in the sandbox's own binfmt_misc.
    Sandboxed { interpreter: PathBuf },
    /// An existing host entry (with F) serves it.
    Host { entry: String },
    /// Kernels before 6.7, as root: qemu registered in the host's table
    /// for the run and removed afterwards.
    HostTemporary { interpreter: PathBuf },
}

/// Set to `host` (tests only), acts as on a kernel before 6.7, whose
/// binfmt_misc is the host's alone.
pub const FORCE_HOST_BINFMT_ENV: &str = "ZCHROOT_BINFMT";

/// The command's environment inside the root.
pub fn command_env(term: Option<String>) -> Vec<(String, String)> {
    let mut env = vec![
        (
            "PATH".to_string(),
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_string(),
        ),
        ("HOME".to_string(), "/root".to_string()),
        ("USER".to_string(), "root".to_string()),
        ("LOGNAME".to_string(), "root".to_string()),
        ("LANG".to_string(), "C.UTF-8".to_string()),
    ];
    if let Some(t) = term {
        env.push(("TERM".to_string(), t));
    }
    env
}

/// Decides how to run the root's binaries.
#[allow(clippy::too_many_arguments)]
pub fn emulation(
    manifests: &Manifests,
    spec: &RunSpec,
    root_arch: &Arch,
    host_arch: &Arch,
    dirs: &DataDirs,
    opts: FetchOptions,
    reporter: &dyn Reporter,
) -> Result<Emulation, SandboxError> {
    if root_arch.name == host_arch.name {
        return Ok(Emulation::Native);
    }
    let (kernel, version) = host::kernel();
    let forced_host = std::env::var(FORCE_HOST_BINFMT_ENV).as_deref() == Ok("host");
    let qemu = || {
        qemu::qemu_binary(
            manifests,
            &spec.release,
            root_arch,
            host_arch,
            dirs,
            spec.mirror.as_deref(),
            opts.clone(),
            reporter,
        )
    };
    if host::sandboxed_binfmt(version) && !forced_host {
        return Ok(Emulation::Sandboxed {
            interpreter: qemu()?,
        });
    }
    if let Some((name, _)) = host::binfmt_entries()
        .into_iter()
        .find(|(_, e)| binfmt::entry_serves(e, root_arch))
    {
        return Ok(Emulation::Host { entry: name });
    }
    if host::is_root() {
        return Ok(Emulation::HostTemporary {
            interpreter: qemu()?,
        });
    }
    Err(SandboxError::NoBinfmt {
        arch: root_arch.name.clone(),
        qemu: root_arch.qemu.clone(),
        kernel,
    })
}

/// The id maps for the calling user.
pub fn id_maps() -> Result<IdMaps, IdMapError> {
    if host::is_root() {
        return Ok(IdMaps::identity());
    }
    for helper in ["newuidmap", "newgidmap"] {
        if host::setuid_helper(helper).is_none() {
            return Err(IdMapError::NoHelper { helper });
        }
    }
    let (user, uid, gid) = host::user();
    let (subuid, subgid) = host::subid_files();
    IdMaps::rootless(&user, uid, gid, &subuid, &subgid)
}

/// Checks the spec and builds the plan the helper carries out.
pub fn prepare(
    manifests: &Manifests,
    spec: &RunSpec,
    dirs: &DataDirs,
    opts: FetchOptions,
    reporter: &dyn Reporter,
) -> Result<(spawn::Plan, IdMaps, Emulation), SandboxError> {
    let root = std::fs::canonicalize(&spec.root)
        .ok()
        .filter(|p| p.is_dir())
        .ok_or_else(|| SandboxError::NotARoot(spec.root.clone()))?;
    if root == Path::new("/") {
        return Err(SandboxError::HostRoot);
    }
    let archs = manifests.architectures()?;
    let root_arch = match &spec.arch {
        Some(a) => manifests.arch(a)?,
        None => host::root_arch(&archs, &root)
            .ok_or_else(|| SandboxError::UnknownRootArch(root.clone()))?,
    };
    let host_arch = host::host_arch(manifests)?;
    let maps = id_maps()?;
    let emulation = emulation(
        manifests, spec, &root_arch, &host_arch, dirs, opts, reporter,
    )?;
    let binfmt_register = match &emulation {
        Emulation::Sandboxed { interpreter } => {
            Some(binfmt::register_line(&root_arch, interpreter))
        }
        _ => None,
    };
    let host_binfmt = match &emulation {
        Emulation::HostTemporary { interpreter } => {
            let name = host_binfmt::entry_name(&root_arch.qemu, &host_binfmt::Owner::current());
            Some(spawn::HostBinfmt {
                line: binfmt::register_line_named(&name, &root_arch, interpreter),
                name,
            })
        }
        _ => None,
    };
    let layout = Layout {
        root: root.clone(),
        binds: spec.binds.clone(),
        // A root whose resolv.conf is a symlink (resolvconf, systemd) keeps it.
        resolv_conf: match crate::rootdir::RootDir::open(&root)
            .and_then(|r| r.kind(Path::new("etc/resolv.conf")))
        {
            Ok(Some(crate::rootdir::Kind::Symlink)) => None,
            _ if spec.share_network => host::resolv_conf(),
            _ => None,
        },
        binfmt_register,
        tty_gid: IdMaps::outside(&maps.gid, 5).is_some(),
    };
    let plan = spawn::Plan {
        root,
        steps: mounts::plan(&layout),
        hostname: spec.hostname.clone(),
        share_network: spec.share_network,
        argv: spec.argv.clone(),
        env: command_env(std::env::var("TERM").ok()),
        cwd: spec.cwd.clone(),
        job: spawn::Job::Command,
        stdio: spawn::Stdio::Batch,
        host_binfmt,
    };
    Ok((plan, maps, emulation))
}
