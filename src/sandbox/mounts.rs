//! The sandbox's filesystem: a plan of mount steps (pure, unit-tested) and
//! the thin layer that applies them inside the new mount namespace. All
//! mounts are private to the namespace and die with it.

use std::ffi::OsStr;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags};
use serde::{Deserialize, Serialize};

use crate::rootdir::{RootDir, RootDirError};
use crate::sys::{self, SysError};

/// A `--bind HOST[:GUEST][:ro]` request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bind {
    pub host: PathBuf,
    pub guest: PathBuf,
    pub readonly: bool,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BindError {
    #[error("--bind {0}: expected HOST[:GUEST][:ro] with absolute paths")]
    Syntax(String),
    #[error("--bind {spec}: {path} does not exist on the host")]
    Missing { spec: String, path: String },
}

impl Bind {
    /// Parses `HOST[:GUEST][:ro]`; GUEST defaults to HOST.
    pub fn parse(spec: &str) -> Result<Bind, BindError> {
        let mut parts: Vec<&str> = spec.split(':').collect();
        let readonly = match parts.last() {
            Some(&"ro") if parts.len() > 1 => {
                parts.pop();
                true
            }
            Some(&"rw") if parts.len() > 1 => {
                parts.pop();
                false
            }
            _ => false,
        };
        let (host, guest) = match parts.as_slice() {
            [h] => (*h, *h),
            [h, g] => (*h, *g),
            _ => return Err(BindError::Syntax(spec.into())),
        };
        if !host.starts_with('/') || !guest.starts_with('/') || guest.split('/').any(|c| c == "..")
        {
            return Err(BindError::Syntax(spec.into()));
        }
        Ok(Bind {
            host: host.into(),
            guest: guest.into(),
            readonly,
        })
    }
}

/// What a mount point must be before mounting on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Kind {
    Dir,
    File,
}

/// One step of building the sandbox's view. Paths are absolute host paths
/// (under the root) until the pivot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Step {
    /// Stop propagation to and from the host: `mount --make-rprivate /`.
    MakePrivate,
    /// Bind the root onto itself so that it is a mount point (pivot_root).
    BindRoot {
        root: PathBuf,
    },
    /// A fresh procfs for the new PID namespace.
    Proc {
        target: PathBuf,
    },
    /// Bind `source` on `target` (created as `kind` if missing); recursive;
    /// then remount read-only if asked.
    Bind {
        source: PathBuf,
        target: PathBuf,
        kind: Kind,
        readonly: bool,
    },
    Tmpfs {
        target: PathBuf,
        options: String,
    },
    /// A private devpts instance.
    Devpts {
        target: PathBuf,
        options: String,
    },
    Symlink {
        path: PathBuf,
        to: String,
    },
    /// binfmt_misc of this user namespace, and an interpreter registered.
    Binfmt {
        mountpoint: PathBuf,
        register: String,
    },
    /// Make `target` read-only, submounts included, if it exists (a
    /// kernel interface the root must not write: `/proc/sys`, ...).
    ReadOnly {
        target: PathBuf,
    },
    /// Hide `target`, if it exists: `/dev/null` bound over a file, an
    /// empty read-only tmpfs over a directory.
    Mask {
        target: PathBuf,
    },
    /// `pivot_root` into the root and drop the old root.
    Pivot {
        root: PathBuf,
    },
}

/// What the sandbox should look like.
#[derive(Debug, Clone, Default)]
pub struct Layout {
    pub root: PathBuf,
    pub binds: Vec<Bind>,
    /// Bind the host's resolv.conf (shared network).
    pub resolv_conf: Option<PathBuf>,
    /// A binfmt_misc registration line to make inside the namespace.
    pub binfmt_register: Option<String>,
    /// Map gid 5 (tty) for devpts; only when the gid map covers it.
    pub tty_gid: bool,
}

/// Host device nodes bound into the sandbox's /dev. `tty` is the generic
/// "my controlling terminal" node, not the caller's terminal: everything in
/// the sandbox runs in sessions of its own (see `spawn`), so there it opens
/// the sandbox's own pty or fails with ENXIO.
pub const DEVICES: [&str; 6] = ["null", "zero", "full", "random", "urandom", "tty"];

/// Kernel interfaces under the root that are made read-only (runc's
/// `readonlyPaths`): with them writable, root of the sandbox could change
/// the host's sysctls (`kernel.core_pattern` runs a program as host root),
/// trigger SysRq, or retune the host's IRQs.
pub const READONLY_PATHS: [&str; 5] = [
    "proc/bus",
    "proc/fs",
    "proc/irq",
    "proc/sys",
    "proc/sysrq-trigger",
];

/// What is hidden under the root (runc's `maskedPaths`): the host's
/// memory image, keys, timers and firmware tables.
pub const MASKED_PATHS: [&str; 11] = [
    "proc/acpi",
    "proc/asound",
    "proc/kcore",
    "proc/keys",
    "proc/latency_stats",
    "proc/sched_debug",
    "proc/scsi",
    "proc/timer_list",
    "proc/timer_stats",
    "sys/devices/virtual/powercap",
    "sys/firmware",
];

/// The steps, in order.
pub fn plan(l: &Layout) -> Vec<Step> {
    let r = &l.root;
    let mut steps = vec![
        Step::MakePrivate,
        Step::BindRoot { root: r.clone() },
        Step::Proc {
            target: r.join("proc"),
        },
        Step::Bind {
            source: "/sys".into(),
            target: r.join("sys"),
            kind: Kind::Dir,
            readonly: true,
        },
        Step::Tmpfs {
            target: r.join("dev"),
            options: "mode=0755,size=65536k".into(),
        },
    ];
    for d in DEVICES {
        steps.push(Step::Bind {
            source: Path::new("/dev").join(d),
            target: r.join("dev").join(d),
            kind: Kind::File,
            readonly: false,
        });
    }
    let pts_opts = if l.tty_gid {
        "newinstance,ptmxmode=0666,mode=0620,gid=5"
    } else {
        "newinstance,ptmxmode=0666,mode=0620"
    };
    steps.push(Step::Devpts {
        target: r.join("dev/pts"),
        options: pts_opts.into(),
    });
    for (path, to) in [
        ("dev/ptmx", "pts/ptmx"),
        ("dev/fd", "/proc/self/fd"),
        ("dev/stdin", "/proc/self/fd/0"),
        ("dev/stdout", "/proc/self/fd/1"),
        ("dev/stderr", "/proc/self/fd/2"),
    ] {
        steps.push(Step::Symlink {
            path: r.join(path),
            to: to.into(),
        });
    }
    steps.push(Step::Tmpfs {
        target: r.join("dev/shm"),
        options: "mode=1777".into(),
    });
    steps.push(Step::Tmpfs {
        target: r.join("tmp"),
        options: "mode=1777".into(),
    });
    if let Some(resolv) = &l.resolv_conf {
        steps.push(Step::Bind {
            source: resolv.clone(),
            target: r.join("etc/resolv.conf"),
            kind: Kind::File,
            readonly: true,
        });
    }
    for b in &l.binds {
        let rel = b.guest.strip_prefix("/").unwrap_or(&b.guest);
        steps.push(Step::Bind {
            source: b.host.clone(),
            target: r.join(rel),
            kind: if b.host.is_dir() {
                Kind::Dir
            } else {
                Kind::File
            },
            readonly: b.readonly,
        });
    }
    if let Some(line) = &l.binfmt_register {
        steps.push(Step::Binfmt {
            mountpoint: r.join("proc/sys/fs/binfmt_misc"),
            register: line.clone(),
        });
    }
    // After binfmt_misc, which lives under /proc/sys and is made read-only
    // with it: nothing inside registers another interpreter.
    for p in READONLY_PATHS {
        steps.push(Step::ReadOnly { target: r.join(p) });
    }
    for p in MASKED_PATHS {
        steps.push(Step::Mask { target: r.join(p) });
    }
    steps.push(Step::Pivot { root: r.clone() });
    steps
}

#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error(transparent)]
    Sys(#[from] SysError),
    #[error(transparent)]
    Root(#[from] RootDirError),
    #[error("{} leads out of the root through a symlink; refusing to mount there", path.display())]
    Escape { path: PathBuf },
}

/// Makes sure `target` (a path under `root`) exists as `kind`, resolving
/// it inside the root with the confined handle, and returns a path that
/// names exactly that inode (`/proc/self/fd/N`) for mount(2), so that no
/// symlink the root holds can lead a mount, or the making of its mount
/// point, out of the root. The descriptor must live until the mount is done.
fn mount_point(root: &Path, target: &Path, kind: Kind) -> Result<(OwnedFd, PathBuf), MountError> {
    let rel = target.strip_prefix(root).map_err(|_| MountError::Escape {
        path: target.to_owned(),
    })?;
    let dir = RootDir::open(root)?;
    let fd = dir.mount_point(rel, kind == Kind::Dir)?;
    let path = PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()));
    Ok((fd, path))
}

/// Whether `target` (under `root`) exists, and as what (a symlink counts
/// as missing: nothing is mounted through one).
fn existing(root: &Path, target: &Path) -> Result<Option<Kind>, MountError> {
    let rel = target.strip_prefix(root).map_err(|_| MountError::Escape {
        path: target.to_owned(),
    })?;
    Ok(match RootDir::open(root)?.kind(rel)? {
        Some(crate::rootdir::Kind::Dir) => Some(Kind::Dir),
        Some(crate::rootdir::Kind::Symlink) | None => None,
        Some(_) => Some(Kind::File),
    })
}

/// A recursive bind of `source` on the mount point `at`.
fn bind(source: &Path, at: &Path) -> Result<(), MountError> {
    Ok(sys::mount(
        Some(source),
        at,
        None,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None,
    )?)
}

/// Binds `source` on `target` read-only, submounts included (a copy of its
/// tree made read-only before it is attached, on the confined mount point:
/// no window where it is writable, no second lookup of `target`). Kernels
/// before 5.12 get a bind and a read-only remount of its top.
fn bind_readonly(root: &Path, source: &Path, target: &Path, kind: Kind) -> Result<(), MountError> {
    let (fd, at) = mount_point(root, target, kind)?;
    match sys::fsmount::readonly_tree(source) {
        Ok(tree) => return Ok(sys::fsmount::attach(&tree, fd.as_fd())?),
        Err(e) if e.errno != nix::errno::Errno::ENOSYS => return Err(e.into()),
        Err(_) => {}
    }
    bind(source, &at)?;
    drop(fd);
    let (_fd, at) = mount_point(root, target, kind)?;
    let keep = sys::locked_mount_flags(&at)?;
    sys::mount(
        None,
        &at,
        None,
        MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | keep,
        None,
    )?;
    Ok(())
}

/// Applies one step. Runs as root of the new user namespace, inside the new
/// mount and PID namespaces.
pub fn apply(step: &Step, root: &Path) -> Result<(), MountError> {
    match step {
        Step::MakePrivate => sys::mount(
            None,
            Path::new("/"),
            None,
            MsFlags::MS_REC | MsFlags::MS_PRIVATE,
            None,
        )?,
        Step::BindRoot { root } => sys::mount(
            Some(root),
            root,
            None,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None,
        )?,
        Step::Proc { target } => {
            let (_fd, at) = mount_point(root, target, Kind::Dir)?;
            sys::mount(
                Some(Path::new("proc")),
                &at,
                Some("proc"),
                MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
                None,
            )?
        }
        Step::Bind {
            source,
            target,
            kind,
            readonly: true,
        } => bind_readonly(root, source, target, *kind)?,
        Step::Bind {
            source,
            target,
            kind,
            readonly: false,
        } => {
            let (_fd, at) = mount_point(root, target, *kind)?;
            bind(source, &at)?;
        }
        Step::Tmpfs { target, options } => {
            let (_fd, at) = mount_point(root, target, Kind::Dir)?;
            sys::mount(
                Some(Path::new("tmpfs")),
                &at,
                Some("tmpfs"),
                MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
                Some(options),
            )?
        }
        Step::Devpts { target, options } => {
            let (_fd, at) = mount_point(root, target, Kind::Dir)?;
            sys::mount(
                Some(Path::new("devpts")),
                &at,
                Some("devpts"),
                MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
                Some(options),
            )?
        }
        Step::Symlink { path, to } => {
            let rel = path.strip_prefix(root).map_err(|_| MountError::Escape {
                path: path.to_owned(),
            })?;
            RootDir::open(root)?.symlink(OsStr::new(to), rel)?
        }
        Step::Binfmt {
            mountpoint,
            register,
        } => {
            let (fd, at) = mount_point(root, mountpoint, Kind::Dir)?;
            sys::mount(
                Some(Path::new("binfmt_misc")),
                &at,
                Some("binfmt_misc"),
                MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
                None,
            )?;
            drop(fd);
            let rel = mountpoint
                .strip_prefix(root)
                .map_err(|_| MountError::Escape {
                    path: mountpoint.to_owned(),
                })?;
            RootDir::open(root)?.write_existing(&rel.join("register"), register.as_bytes())?
        }
        Step::ReadOnly { target } => {
            if let Some(kind) = existing(root, target)? {
                let (_fd, at) = mount_point(root, target, kind)?;
                bind_readonly(root, &at, target, kind)?;
            }
        }
        Step::Mask { target } => match existing(root, target)? {
            None => {}
            Some(Kind::File) => {
                let (_fd, at) = mount_point(root, target, Kind::File)?;
                bind(Path::new("/dev/null"), &at)?;
            }
            Some(Kind::Dir) => {
                let (_fd, at) = mount_point(root, target, Kind::Dir)?;
                sys::mount(
                    Some(Path::new("tmpfs")),
                    &at,
                    Some("tmpfs"),
                    MsFlags::MS_RDONLY
                        | MsFlags::MS_NOSUID
                        | MsFlags::MS_NODEV
                        | MsFlags::MS_NOEXEC,
                    Some("size=0,mode=0555"),
                )?
            }
        },
        Step::Pivot { root } => {
            sys::chdir(root)?;
            sys::pivot_root(Path::new("."), Path::new("."))?;
            sys::umount2(Path::new("."), MntFlags::MNT_DETACH)?;
            sys::chdir(Path::new("/"))?
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binds_parse_with_defaults_and_errors() {
        assert_eq!(
            Bind::parse("/src").unwrap(),
            Bind {
                host: "/src".into(),
                guest: "/src".into(),
                readonly: false
            }
        );
        assert_eq!(
            Bind::parse("/src:/build:ro").unwrap(),
            Bind {
                host: "/src".into(),
                guest: "/build".into(),
                readonly: true
            }
        );
        assert!(Bind::parse("/src:ro").unwrap().readonly);
        assert!(Bind::parse("src").is_err());
        assert!(Bind::parse("/a:/b:/c:ro").is_err());
        assert!(Bind::parse("/a:/../etc").is_err());
    }

    #[test]
    fn the_plan_mounts_in_a_safe_order() {
        let steps = plan(&Layout {
            root: "/r".into(),
            binds: vec![Bind::parse("/home/a/src:/src:ro").unwrap()],
            resolv_conf: Some("/etc/resolv.conf".into()),
            binfmt_register: Some(":qemu-aarch64:M::x:y:/q:F".into()),
            tty_gid: true,
        });
        assert_eq!(steps[0], Step::MakePrivate, "propagation stopped first");
        assert_eq!(steps[1], Step::BindRoot { root: "/r".into() });
        assert_eq!(steps.last(), Some(&Step::Pivot { root: "/r".into() }));
        let pos = |f: &dyn Fn(&Step) -> bool| steps.iter().position(f).unwrap();
        let proc_at = pos(&|s| matches!(s, Step::Proc { .. }));
        let binfmt_at = pos(&|s| matches!(s, Step::Binfmt { .. }));
        let dev_at =
            pos(&|s| matches!(s, Step::Tmpfs { target, .. } if target == Path::new("/r/dev")));
        let null_at =
            pos(&|s| matches!(s, Step::Bind { target, .. } if target == Path::new("/r/dev/null")));
        assert!(proc_at < binfmt_at, "binfmt_misc lives under /proc");
        assert!(dev_at < null_at, "devices go on the fresh /dev");
        assert!(steps.contains(&Step::Bind {
            source: "/sys".into(),
            target: "/r/sys".into(),
            kind: Kind::Dir,
            readonly: true
        }));
        assert!(steps.contains(&Step::Bind {
            source: "/home/a/src".into(),
            target: "/r/src".into(),
            kind: Kind::File, // does not exist in the test: a file
            readonly: true
        }));
        assert!(steps.contains(&Step::Symlink {
            path: "/r/dev/ptmx".into(),
            to: "pts/ptmx".into()
        }));
        assert!(steps
            .iter()
            .any(|s| matches!(s, Step::Devpts { options, .. } if options.contains("gid=5"))));
        // Nothing is ever created with mknod: devices are bind mounts.
        for d in DEVICES {
            assert!(steps.iter().any(
                |s| matches!(s, Step::Bind { source, .. } if source == &Path::new("/dev").join(d))
            ));
        }
    }
}
