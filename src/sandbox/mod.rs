//! The sandbox: user, mount, PID, UTS and IPC namespaces (and optionally
//! network), id maps, a private filesystem view of a root, and qemu-user
//! registered through binfmt_misc for foreign architectures, all set up by
//! zchroot itself and gone when the command ends. This layer is given the
//! host's facts and the qemu binary; it fetches nothing (see `enter`).

pub mod binfmt;
pub mod host_binfmt;
pub mod idmap;
pub mod mounts;
pub mod spawn;
pub mod user;

use std::path::{Path, PathBuf};

use crate::host::{self, SandboxFacts};
use crate::manifest::{Arch, ManifestError};
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
    Qemu(#[from] crate::qemu::QemuError),
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

pub use crate::host::FORCE_HOST_BINFMT_ENV;

/// `PATH` inside the root: Debian's default for root.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The command's environment inside the root, as root: nothing of the
/// caller's but `TERM` (see [`run_as`] for `--user` and `--env`).
pub fn command_env(term: Option<String>) -> Vec<(String, String)> {
    let mut env = vec![
        ("PATH".to_string(), DEFAULT_PATH.to_string()),
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

/// Sets `name` in `env` to `value` (in place, if it is there), or removes it.
fn set_var(env: &mut Vec<(String, String)>, name: &str, value: Option<&str>) {
    match (env.iter().position(|(k, _)| k == name), value) {
        (Some(i), Some(v)) => env[i].1 = v.to_string(),
        (None, Some(v)) => env.push((name.to_string(), v.to_string())),
        (Some(i), None) => {
            env.remove(i);
        }
        (None, None) => {}
    }
}

/// Makes a plan's command run as `user` (`HOME`, `USER`, `LOGNAME` follow
/// it; a number without a passwd entry gets no `USER`), then sets `extra`
/// (`--env`) on top of everything.
pub fn run_as(
    plan: &mut spawn::SandboxPlan,
    user: Option<user::Identity>,
    extra: &[(String, String)],
) {
    if let Some(u) = &user {
        set_var(&mut plan.env, "HOME", Some(&u.home));
        set_var(&mut plan.env, "USER", u.name.as_deref());
        set_var(&mut plan.env, "LOGNAME", u.name.as_deref());
    }
    plan.user = user;
    for (k, v) in extra {
        set_var(&mut plan.env, k, Some(v));
    }
}

/// A valid hostname from a root's name: letters, digits and `-` in labels
/// of at most 63 characters split by `.`, no label starting or ending with
/// `-`, 64 characters at most (the kernel's limit); `zchroot` if nothing
/// is left.
pub fn hostname_for(name: &str) -> String {
    let mapped: String = name
        .chars()
        .map(|c| match c {
            'a'..='z' | '0'..='9' | '-' | '.' => c,
            'A'..='Z' => c.to_ascii_lowercase(),
            _ => '-',
        })
        .collect();
    let labels: Vec<String> = mapped
        .split('.')
        .map(|l| {
            let l: String = l.chars().take(63).collect();
            l.trim_matches('-').to_string()
        })
        .filter(|l| !l.is_empty())
        .collect();
    let mut out = String::new();
    for l in labels {
        let sep = usize::from(!out.is_empty());
        if out.len() + sep + l.len() > 64 {
            break;
        }
        if sep == 1 {
            out.push('.');
        }
        out.push_str(&l);
    }
    if out.is_empty() {
        "zchroot".into()
    } else {
        out
    }
}

/// How the root's binaries can run, before qemu is fetched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EmulationNeed {
    Native,
    /// qemu, registered in the sandbox's own binfmt_misc.
    Sandboxed,
    /// An existing host entry (with F) serves it.
    Host {
        entry: String,
    },
    /// qemu, registered in the host's table for the run (root, before 6.7).
    HostTemporary,
}

impl EmulationNeed {
    /// Whether qemu-user must be provided.
    pub fn needs_qemu(&self) -> bool {
        matches!(
            self,
            EmulationNeed::Sandboxed | EmulationNeed::HostTemporary
        )
    }

    /// The emulation, given qemu's binary when [`Self::needs_qemu`].
    pub fn with_interpreter(self, interpreter: Option<PathBuf>) -> Emulation {
        match (self, interpreter) {
            (EmulationNeed::Native, _) => Emulation::Native,
            (EmulationNeed::Host { entry }, _) => Emulation::Host { entry },
            (EmulationNeed::Sandboxed, Some(interpreter)) => Emulation::Sandboxed { interpreter },
            (EmulationNeed::HostTemporary, Some(interpreter)) => {
                Emulation::HostTemporary { interpreter }
            }
            (need, None) => panic!("{need:?} needs qemu's binary"),
        }
    }
}

/// Decides how to run the root's binaries (pure: from the host's facts).
pub fn choose_emulation(
    root_arch: &Arch,
    host_arch: &Arch,
    facts: &SandboxFacts,
) -> Result<EmulationNeed, SandboxError> {
    if root_arch.name == host_arch.name {
        return Ok(EmulationNeed::Native);
    }
    if facts.sandboxed_binfmt() {
        return Ok(EmulationNeed::Sandboxed);
    }
    if let Some((name, _)) = facts
        .binfmt
        .iter()
        .find(|(_, e)| binfmt::entry_serves(e, root_arch))
    {
        return Ok(EmulationNeed::Host {
            entry: name.clone(),
        });
    }
    if facts.is_root {
        return Ok(EmulationNeed::HostTemporary);
    }
    Err(SandboxError::NoBinfmt {
        arch: root_arch.name.clone(),
        qemu: root_arch.qemu.clone(),
        kernel: facts.kernel.clone(),
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

/// The root directory a spec names, checked.
pub fn check_root(spec: &RunSpec) -> Result<PathBuf, SandboxError> {
    let root = std::fs::canonicalize(&spec.root)
        .ok()
        .filter(|p| p.is_dir())
        .ok_or_else(|| SandboxError::NotARoot(spec.root.clone()))?;
    if root == Path::new("/") {
        return Err(SandboxError::HostRoot);
    }
    Ok(root)
}

/// The plan the helper carries out, for a checked `root` whose programs
/// run as `emulation` says.
pub fn plan(
    spec: &RunSpec,
    root: PathBuf,
    root_arch: &Arch,
    emulation: &Emulation,
    maps: &IdMaps,
    facts: &SandboxFacts,
) -> spawn::SandboxPlan {
    let binfmt_register = match &emulation {
        Emulation::Sandboxed { interpreter } => Some(binfmt::register_line(root_arch, interpreter)),
        _ => None,
    };
    let host_binfmt = match &emulation {
        Emulation::HostTemporary { interpreter } => {
            let name = host_binfmt::entry_name(&root_arch.qemu, &host_binfmt::Owner::current());
            Some(spawn::HostBinfmt {
                line: binfmt::register_line_named(&name, root_arch, interpreter),
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
    spawn::SandboxPlan {
        root,
        steps: mounts::plan(&layout),
        hostname: spec.hostname.clone(),
        share_network: spec.share_network,
        argv: spec.argv.clone(),
        env: command_env(facts.term.clone()),
        cwd: spec.cwd.clone(),
        user: None,
        job: spawn::Job::Command,
        stdio: spawn::Stdio::Batch,
        host_binfmt,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::Manifests;

    fn facts(version: (u32, u32), is_root: bool) -> SandboxFacts {
        SandboxFacts {
            kernel: format!("{}.{}.0", version.0, version.1),
            kernel_version: version,
            is_root,
            ..Default::default()
        }
    }

    #[test]
    fn hostnames_are_made_valid() {
        assert_eq!(hostname_for("trixie-arm64"), "trixie-arm64");
        assert_eq!(hostname_for("Build_Box.v2"), "build-box.v2");
        assert_eq!(hostname_for("-x-"), "x");
        assert_eq!(hostname_for("a..b."), "a.b");
        assert_eq!(hostname_for("___"), "zchroot");
        assert_eq!(hostname_for(""), "zchroot");
        let long = "a".repeat(70);
        assert_eq!(hostname_for(&long), "a".repeat(63));
        let labels = format!("{0}.{0}", "b".repeat(40));
        assert_eq!(hostname_for(&labels), "b".repeat(40), "64 at most");
    }

    #[test]
    fn the_user_and_env_options_change_the_commands_environment() {
        let mut plan = spawn::SandboxPlan::host_job(spawn::Job::Command);
        plan.env = command_env(Some("xterm".into()));
        let named = user::Identity {
            uid: 1000,
            gid: 1000,
            groups: vec![1000],
            name: Some("builder".into()),
            home: "/home/builder".into(),
        };
        let extra = [
            ("http_proxy".to_string(), "http://p:3128".to_string()),
            ("LANG".to_string(), "de_DE.UTF-8".to_string()),
        ];
        run_as(&mut plan, Some(named.clone()), &extra);
        let get = |p: &spawn::SandboxPlan, k: &str| {
            p.env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
        };
        assert_eq!(get(&plan, "HOME").as_deref(), Some("/home/builder"));
        assert_eq!(get(&plan, "USER").as_deref(), Some("builder"));
        assert_eq!(get(&plan, "LOGNAME").as_deref(), Some("builder"));
        assert_eq!(get(&plan, "LANG").as_deref(), Some("de_DE.UTF-8"));
        assert_eq!(get(&plan, "http_proxy").as_deref(), Some("http://p:3128"));
        assert_eq!(get(&plan, "TERM").as_deref(), Some("xterm"));
        assert_eq!(plan.env.len(), 7, "{:?}", plan.env);
        assert_eq!(plan.user, Some(named.clone()));
        // A number without a passwd entry: no USER, no LOGNAME.
        let mut plan = spawn::SandboxPlan::host_job(spawn::Job::Command);
        plan.env = command_env(None);
        let anon = user::Identity {
            name: None,
            home: "/".into(),
            ..named
        };
        run_as(&mut plan, Some(anon), &[]);
        assert_eq!(get(&plan, "HOME").as_deref(), Some("/"));
        assert_eq!(get(&plan, "USER"), None);
        assert_eq!(get(&plan, "LOGNAME"), None);
        // Without --user, root's.
        let mut plan = spawn::SandboxPlan::host_job(spawn::Job::Command);
        plan.env = command_env(None);
        run_as(&mut plan, None, &[]);
        assert_eq!(get(&plan, "HOME").as_deref(), Some("/root"));
        assert_eq!(plan.user, None);
    }

    #[test]
    fn emulation_is_chosen_from_the_hosts_facts() {
        let m = Manifests::embedded();
        let (arm64, amd64) = (m.arch("arm64").unwrap(), m.arch("amd64").unwrap());
        let choose = |f: &SandboxFacts| choose_emulation(&arm64, &amd64, f);
        assert_eq!(
            choose_emulation(&amd64, &amd64, &facts((5, 10), false)).unwrap(),
            EmulationNeed::Native
        );
        assert_eq!(
            choose(&facts((6, 7), false)).unwrap(),
            EmulationNeed::Sandboxed
        );
        assert_eq!(
            choose(&facts((6, 6), true)).unwrap(),
            EmulationNeed::HostTemporary
        );
        let mut forced = facts((6, 18), true);
        forced.force_host_binfmt = true;
        assert_eq!(choose(&forced).unwrap(), EmulationNeed::HostTemporary);
        // Before 6.7, a host entry with F serves, for root and users alike.
        let mut with_entry = facts((6, 1), false);
        with_entry.binfmt = vec![(
            "qemu-aarch64".into(),
            binfmt::Entry {
                enabled: true,
                interpreter: "/usr/libexec/qemu-binfmt/aarch64-binfmt-P".into(),
                flags: "POCF".into(),
                magic: arm64.elf_magic.clone(),
                mask: arm64.elf_mask.clone(),
            },
        )];
        assert_eq!(
            choose(&with_entry).unwrap(),
            EmulationNeed::Host {
                entry: "qemu-aarch64".into()
            }
        );
        // Without the F flag it cannot serve a sandbox.
        with_entry.binfmt[0].1.flags = "POC".into();
        let e = choose(&with_entry).unwrap_err().to_string();
        assert!(
            e.contains("Linux 6.7 or newer") && e.contains("6.1.0"),
            "{e}"
        );
        assert!(!EmulationNeed::Native.needs_qemu());
        assert!(EmulationNeed::Sandboxed.needs_qemu());
    }
}
