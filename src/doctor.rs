//! `zchroot doctor`: what this host supports and what zchroot will use,
//! each check with the fix when something is missing. [`checks`] is pure:
//! it judges [`host::Facts`] that the caller read; [`fix`] (`doctor --fix`)
//! repairs what zchroot can repair itself.

use std::path::{Path, PathBuf};

use crate::host::{self, DirFacts, Facts};
use crate::manifest::Arch;
use crate::sandbox::binfmt;
use crate::sandbox::host_binfmt as binfmt_stale;
use crate::sandbox::idmap::find_range;

/// Ordered: the worse, the greater.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Warn,
    Fail,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Check {
    pub name: &'static str,
    pub status: Status,
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub help: Option<String>,
}

fn check(name: &'static str, status: Status, detail: String, help: Option<String>) -> Check {
    Check {
        name,
        status,
        detail,
        help,
    }
}

/// Judges the facts; `foreign` are the architectures that need emulation here.
pub fn checks(f: &Facts, foreign: &[Arch]) -> Vec<Check> {
    let mut out = vec![check(
        "kernel",
        Status::Ok,
        format!("{} on {}", f.kernel, f.machine),
        None,
    )];
    out.push(userns_check(f));
    out.extend(id_map_checks(f));
    out.extend(binfmt_checks(f, foreign));
    out.extend(stale_binfmt_check(f));
    out.push(tiocsti_check(f));
    out.extend(f.private_dirs.iter().map(|d| private_dir(d, f.uid)));
    // The others only when something is wrong: there are many.
    out.extend(
        f.more_private_dirs
            .iter()
            .map(|d| private_dir(d, f.uid))
            .chain(f.lock_files.iter().map(|d| private_lock(d, f.uid)))
            .filter(|c| c.status != Status::Ok),
    );
    out.push(disk_check(f));
    out
}

/// The value of sysctl `name` as read, `None` when the kernel has none.
fn sysctl(f: &Facts, name: &str) -> Option<String> {
    f.sysctls
        .iter()
        .find(|(k, _)| k == name)
        .and_then(|(_, v)| v.clone())
}

/// Whether this user may make user namespaces.
fn userns_check(f: &Facts) -> Check {
    let mut userns = check("user namespaces", Status::Ok, "allowed".into(), None);
    if sysctl(f, "user.max_user_namespaces").as_deref() == Some("0") {
        userns = check(
            "user namespaces",
            Status::Fail,
            "user.max_user_namespaces is 0".into(),
            Some("sudo sysctl -w user.max_user_namespaces=15000".into()),
        );
    } else if !f.is_root && sysctl(f, "kernel.unprivileged_userns_clone").as_deref() == Some("0") {
        userns = check(
            "user namespaces",
            Status::Fail,
            "kernel.unprivileged_userns_clone is 0".into(),
            Some("sudo sysctl -w kernel.unprivileged_userns_clone=1".into()),
        );
    } else if !f.is_root
        && sysctl(f, "kernel.apparmor_restrict_unprivileged_userns").as_deref() == Some("1")
    {
        userns = check(
            "user namespaces",
            Status::Fail,
            "AppArmor restricts unprivileged user namespaces (Ubuntu 23.10+)".into(),
            Some("sudo sysctl -w kernel.apparmor_restrict_unprivileged_userns=0, or an AppArmor profile for zchroot that allows userns".into()),
        );
    }
    userns
}

/// Root's identity map, or the user's subordinate ranges and helpers.
fn id_map_checks(f: &Facts) -> Vec<Check> {
    let mut out = Vec::new();
    if f.is_root {
        out.push(check(
            "id maps",
            Status::Ok,
            "running as root: real ids (identity map), private namespaces".into(),
            None,
        ));
    } else {
        for (name, text, file) in [
            ("subuid range", &f.subuid, "/etc/subuid"),
            ("subgid range", &f.subgid, "/etc/subgid"),
        ] {
            out.push(match find_range(text, &f.user, f.uid) {
                Some((start, count)) if count >= idmap_needed() => check(
                    name,
                    Status::Ok,
                    format!("{}:{start}:{count} in {file}", f.user),
                    None,
                ),
                Some((start, count)) => check(
                    name,
                    Status::Warn,
                    format!("{}:{start}:{count} in {file}: fewer than 65536 ids; packages with high system ids may fail", f.user),
                    Some(format!("give {} 65536 ids in {file}", f.user)),
                ),
                None => check(
                    name,
                    Status::Fail,
                    format!("no range for {} in {file}", f.user),
                    Some(format!("add \"{}:100000:65536\" to /etc/subuid and /etc/subgid", f.user)),
                ),
            });
        }
        for (name, p) in [("newuidmap", &f.newuidmap), ("newgidmap", &f.newgidmap)] {
            out.push(match p {
                Some(p) => check(
                    name,
                    Status::Ok,
                    format!("{} (setuid root)", p.display()),
                    None,
                ),
                None => check(
                    name,
                    Status::Fail,
                    "not found on PATH, or not setuid root".into(),
                    Some("sudo apt-get install uidmap".into()),
                ),
            });
        }
    }
    out
}

/// How foreign binaries run: binfmt_misc per namespace or the host's entries.
fn binfmt_checks(f: &Facts, foreign: &[Arch]) -> Vec<Check> {
    let sandboxed = host::sandboxed_binfmt(f.kernel_version);
    let mut out = Vec::new();
    out.push(if sandboxed {
        check(
            "binfmt_misc",
            Status::Ok,
            "per user namespace (Linux 6.7+): qemu is registered inside each sandbox; the host's table is never touched".into(),
            None,
        )
    } else {
        check(
            "binfmt_misc",
            Status::Warn,
            "this kernel has one global binfmt_misc: foreign roots use a host registration with the F flag (as root, zchroot adds one for each run and removes it afterwards)".into(),
            Some("Linux 6.7 or newer avoids this".into()),
        )
    });
    for arch in foreign {
        let serving: Vec<&str> = f
            .binfmt
            .iter()
            .filter(|(_, e)| binfmt::entry_serves(e, arch))
            .map(|(n, _)| n.as_str())
            .collect();
        let name = "host qemu registration";
        out.push(match (serving.is_empty(), sandboxed) {
            (false, _) => check(name, Status::Ok, format!("{}: {} (F flag)", arch.name, serving.join(", ")), None),
            (true, true) => check(name, Status::Ok, format!("{}: none, none needed", arch.name), None),
            (true, false) if f.is_root => check(
                name,
                Status::Ok,
                format!("{}: none; zchroot registers qemu-{} for each run and removes it afterwards", arch.name, arch.qemu),
                None,
            ),
            (true, false) => check(
                name,
                Status::Fail,
                format!("{}: none with the F flag", arch.name),
                Some(format!("run zchroot as root, or register qemu-{} with the F flag (Debian: sudo apt-get install qemu-user-binfmt)", arch.qemu)),
            ),
        });
    }

    out
}

/// Entries a killed zchroot left in the host's binfmt_misc; `None` when
/// the host's table was not read.
fn stale_binfmt_check(f: &Facts) -> Option<Check> {
    let name = "stale binfmt entries";
    Some(match f.stale_binfmt.as_ref()? {
        Ok(v) if v.is_empty() => check(
            name,
            Status::Ok,
            "none left in the host's binfmt_misc by a killed zchroot".into(),
            None,
        ),
        Ok(v) => check(
            name,
            Status::Warn,
            format!(
                "left in the host's binfmt_misc by a killed zchroot: {}",
                v.join(", ")
            ),
            Some("zchroot doctor --fix (or any zchroot run) removes them".into()),
        ),
        Err(e) => check(
            name,
            Status::Warn,
            format!("cannot read the host's binfmt_misc: {e}"),
            None,
        ),
    })
}

/// Whether programs may push input into a terminal (TIOCSTI).
fn tiocsti_check(f: &Facts) -> Check {
    match sysctl(f, "dev.tty.legacy_tiocsti").as_deref() {
        Some("0") => check(
            "terminal injection",
            Status::Ok,
            "dev.tty.legacy_tiocsti = 0: no program can push input into a terminal (TIOCSTI)".into(),
            None,
        ),
        Some(v) => check(
            "terminal injection",
            Status::Warn,
            format!("dev.tty.legacy_tiocsti = {v}: a sandboxed program could inject input into a terminal it holds (TIOCSTI); zchroot blocks that itself with its own pty and a seccomp filter, but the host should forbid it"),
            Some("sudo sysctl -w dev.tty.legacy_tiocsti=0 (and dev.tty.legacy_tiocsti = 0 in /etc/sysctl.d/ to keep it)".into()),
        ),
        None => check(
            "terminal injection",
            Status::Warn,
            "this kernel has no dev.tty.legacy_tiocsti (before 6.2): any program can inject input into a terminal it holds (TIOCSTI); zchroot blocks that itself with its own pty and a seccomp filter".into(),
            Some("Linux 6.2 or newer with dev.tty.legacy_tiocsti = 0".into()),
        ),
    }
}

/// Room for roots and builds under the data directory.
fn disk_check(f: &Facts) -> Check {
    let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
    match f.free_bytes {
        Some(b) if b >= 4 << 30 => check(
            "free disk",
            Status::Ok,
            format!("{:.1} GiB under {}", gib(b), f.data_dir.display()),
            None,
        ),
        Some(b) => check(
            "free disk",
            Status::Warn,
            format!(
                "{:.1} GiB under {}: a build root takes ~1.5 GiB, a ZFS build more",
                gib(b),
                f.data_dir.display()
            ),
            Some("free space, or set ZCHROOT_HOME to a larger filesystem".into()),
        ),
        None => check(
            "free disk",
            Status::Warn,
            format!("cannot tell for {}", f.data_dir.display()),
            None,
        ),
    }
}

/// Whether a state directory is private: a directory of the user's, mode
/// 0700 (no access for group or others).
fn private_dir(d: &DirFacts, uid: u32) -> Check {
    let name = "private state";
    let p = d.path.display();
    match d.mode_owner {
        None => check(
            name,
            Status::Ok,
            format!("{p}: not there yet (zchroot makes it 0700)"),
            None,
        ),
        Some((mode, _)) if mode & 0o170000 != 0o040000 => check(
            name,
            Status::Fail,
            format!(
                "{p}: {}not a directory",
                if mode & 0o170000 == 0o120000 {
                    "a symlink, "
                } else {
                    ""
                }
            ),
            Some(format!("move {p} away; zchroot makes it anew")),
        ),
        Some((_, owner)) if owner != uid => check(
            name,
            Status::Fail,
            format!("{p}: owned by uid {owner}, not by you (uid {uid})"),
            Some(format!("sudo chown {uid} {p}, or use another ZCHROOT_HOME")),
        ),
        Some((mode, _)) if mode & 0o077 != 0 => check(
            name,
            Status::Warn,
            format!(
                "{p}: mode {:04o}: other users can {} what is in it",
                mode & 0o7777,
                if mode & 0o022 != 0 { "change" } else { "read" }
            ),
            Some(format!("zchroot doctor --fix (chmod 0700 {p})")),
        ),
        Some((mode, _)) => check(
            name,
            Status::Ok,
            format!("{p}: mode {:04o}, yours", mode & 0o7777),
            None,
        ),
    }
}

/// Whether a lock file is private: a regular file of the user's, mode 0600.
/// Another user who can open it can hold its lock, and zchroot waits.
fn private_lock(d: &DirFacts, uid: u32) -> Check {
    let name = "private state";
    let p = d.path.display();
    match d.mode_owner {
        None => check(name, Status::Ok, format!("{p}: not there"), None),
        Some((mode, _)) if mode & 0o170000 != 0o100000 => check(
            name,
            Status::Fail,
            format!("{p}: a lock file that is not a regular file"),
            Some(format!("remove {p}; zchroot makes it anew")),
        ),
        Some((_, owner)) if owner != uid => check(
            name,
            Status::Fail,
            format!("{p}: owned by uid {owner}, not by you (uid {uid})"),
            Some(format!("remove {p}; zchroot makes it anew")),
        ),
        Some((mode, _)) if mode & 0o077 != 0 => check(
            name,
            Status::Warn,
            format!(
                "{p}: mode {:04o}: other users can open this lock file and hold the lock, and zchroot would wait for them",
                mode & 0o7777
            ),
            Some(format!("zchroot doctor --fix (chmod 0600 {p})")),
        ),
        Some((mode, _)) => check(
            name,
            Status::Ok,
            format!("{p}: mode {:04o}, yours", mode & 0o7777),
            None,
        ),
    }
}

/// What else must be private to the user beyond the state, roots and
/// cache directories: the directories zchroot makes under its state, cache
/// and config directories, and its lock files, as they are now (those not
/// there are left out). Never lists through a symlink.
#[derive(Debug, Default, Clone)]
pub struct Private {
    pub dirs: Vec<PathBuf>,
    pub locks: Vec<PathBuf>,
}

impl Private {
    /// Reads what is there under `state`, `cache` and `config`.
    pub fn find(state: &Path, cache: &Path, config: Option<&Path>) -> Private {
        let is_dir = |p: &Path| std::fs::symlink_metadata(p).is_ok_and(|m| m.is_dir());
        let exists = |p: &Path| std::fs::symlink_metadata(p).is_ok();
        // Entries of `dir` (a real directory) whose name passes `keep`.
        let list = |dir: &Path, keep: &dyn Fn(&str) -> bool| -> Vec<PathBuf> {
            if !is_dir(dir) {
                return vec![];
            }
            let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
                .into_iter()
                .flatten()
                .filter_map(|e| e.ok())
                .filter(|e| keep(&e.file_name().to_string_lossy()))
                .map(|e| e.path())
                .collect();
            v.sort();
            v
        };
        let mut dirs = vec![];
        if let Some(c) = config {
            dirs.extend([c.to_owned(), c.join("targets")]);
        }
        for d in ["locks", "archive-dates", "logs", "repos"] {
            dirs.push(state.join(d));
        }
        // Each target's own directory (its secret key); the published
        // tree in it is meant to be read.
        dirs.extend(list(&state.join("repos"), &|_| true));
        for d in ["blobs", "blobs/locks", "templates", "qemu"] {
            dirs.push(cache.join(d));
        }
        dirs.extend(list(&cache.join("qemu"), &|_| true));
        dirs.retain(|d| exists(d));
        let lock = |n: &str| n.ends_with(".lock");
        let mut locks = list(&state.join("locks"), &lock);
        locks.extend(list(&state.join("archive-dates"), &|n| n == ".lock"));
        locks.extend(list(&cache.join("templates"), &lock));
        locks.extend(list(&cache.join("blobs/locks"), &lock));
        Private { dirs, locks }
    }
}

/// A directory zchroot writes (state, cache, config) and whether this
/// user can write it, or the parent it would be made in (see
/// [`crate::paths::writable`]): the directory that refuses, and why.
#[derive(Debug, Clone)]
pub struct Writable {
    pub what: &'static str,
    pub dir: PathBuf,
    pub refused: Option<(PathBuf, String)>,
}

impl Writable {
    /// Reads whether `dir` is writable.
    pub fn probe(what: &'static str, dir: &Path) -> Writable {
        Writable {
            what,
            dir: dir.to_owned(),
            refused: crate::paths::writable(dir)
                .err()
                .map(|(p, e)| (p, e.to_string())),
        }
    }
}

/// Whether zchroot can write its directory `w` (`user` is who asks).
pub fn writable_check(w: &Writable, user: &str) -> Check {
    let name = "writable";
    let d = w.dir.display();
    match &w.refused {
        None if w.dir.exists() => check(name, Status::Ok, format!("{} {d}", w.what), None),
        None => check(
            name,
            Status::Ok,
            format!("{} {d}: not there yet; zchroot can make it", w.what),
            None,
        ),
        Some((blocker, reason)) => check(
            name,
            Status::Fail,
            format!("{} {d}: {}: {reason}", w.what, blocker.display()),
            Some(format!(
                "sudo chown -R {user} {}, or set ZCHROOT_HOME to a directory you can write",
                blocker.display()
            )),
        ),
    }
}

/// What `doctor --fix` did, one line each.
#[derive(Debug, Default)]
pub struct Fixed {
    pub done: Vec<String>,
    pub failed: Vec<String>,
}

/// Fixes what zchroot can fix itself: state directories of the user's that
/// others can reach become 0700 and lock files 0600 (never following a
/// symlink), and qemu entries a killed zchroot left in the host's
/// binfmt_misc are removed.
pub fn fix(private: &[PathBuf], locks: &[PathBuf], exe: &Path) -> Fixed {
    let mut out = fix_modes(private, locks);
    match binfmt_stale::remove_stale(exe) {
        Ok(v) => out.done.extend(
            v.into_iter()
                .map(|n| format!("removed the stale binfmt_misc entry {n}")),
        ),
        Err(e) => out.failed.push(e.to_string()),
    }
    out
}

/// Of [`fix`]: directories of the user's that others can reach become
/// 0700, lock files 0600; never through a symlink.
pub fn fix_modes(private: &[PathBuf], locks: &[PathBuf]) -> Fixed {
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
    let mut out = Fixed::default();
    let uid = nix::unistd::geteuid().as_raw();
    let dirs = private.iter().map(|p| (p, 0o700, libc::O_DIRECTORY));
    // O_NONBLOCK: a FIFO planted there does not stall the open.
    let files = locks.iter().map(|p| (p, 0o600, libc::O_NONBLOCK));
    for (p, want, flags) in dirs.chain(files) {
        let f = match std::fs::File::options()
            .read(true)
            .custom_flags(flags | libc::O_NOFOLLOW)
            .open(p)
        {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => {
                out.failed.push(format!("{}: {e}", p.display()));
                continue;
            }
        };
        let Ok(m) = f.metadata() else { continue };
        let kind_ok = if want == 0o700 {
            m.is_dir()
        } else {
            m.is_file()
        };
        if !kind_ok || m.uid() != uid || m.mode() & 0o077 == 0 {
            continue;
        }
        match f.set_permissions(std::fs::Permissions::from_mode(want)) {
            Ok(()) => out.done.push(format!(
                "chmod {want:04o} {} (was {:04o})",
                p.display(),
                m.mode() & 0o7777
            )),
            Err(e) => out
                .failed
                .push(format!("chmod {want:04o} {}: {e}", p.display())),
        }
    }
    out
}

fn idmap_needed() -> u32 {
    crate::sandbox::idmap::RANGE
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::Manifests;

    fn facts() -> Facts {
        Facts {
            kernel: "6.18.1".into(),
            kernel_version: (6, 18),
            machine: "x86_64".into(),
            user: "alice".into(),
            uid: 1000,
            subuid: "alice:100000:65536\n".into(),
            subgid: "".into(),
            newuidmap: Some("/usr/bin/newuidmap".into()),
            newgidmap: None,
            sysctls: vec![(
                "kernel.apparmor_restrict_unprivileged_userns".into(),
                Some("1".into()),
            )],
            free_bytes: Some(100 << 30),
            data_dir: "/home/alice/.local/share/zchroot".into(),
            ..Default::default()
        }
    }

    #[test]
    fn missing_pieces_fail_with_their_fix() {
        let arm64 = Manifests::embedded().arch("arm64").unwrap();
        let c = checks(&facts(), &[arm64]);
        let get = |n: &str| c.iter().find(|x| x.name == n).unwrap();
        assert_eq!(get("subuid range").status, Status::Ok);
        let g = get("subgid range");
        assert_eq!(g.status, Status::Fail);
        assert_eq!(
            g.help.as_deref(),
            Some("add \"alice:100000:65536\" to /etc/subuid and /etc/subgid")
        );
        assert_eq!(
            get("newgidmap").help.as_deref(),
            Some("sudo apt-get install uidmap")
        );
        assert_eq!(get("user namespaces").status, Status::Fail);
        assert_eq!(get("binfmt_misc").status, Status::Ok);
        assert_eq!(get("host qemu registration").status, Status::Ok);
    }

    #[test]
    fn terminal_injection_is_judged_by_legacy_tiocsti() {
        let get = |v: Option<&str>| {
            let mut f = facts();
            f.sysctls
                .push(("dev.tty.legacy_tiocsti".into(), v.map(String::from)));
            checks(&f, &[])
                .into_iter()
                .find(|c| c.name == "terminal injection")
                .unwrap()
        };
        let c = get(Some("1"));
        assert_eq!(c.status, Status::Warn);
        assert!(
            c.detail.starts_with("dev.tty.legacy_tiocsti = 1: "),
            "{c:?}"
        );
        assert!(c
            .help
            .unwrap()
            .starts_with("sudo sysctl -w dev.tty.legacy_tiocsti=0"));
        assert_eq!(get(Some("0")).status, Status::Ok);
        assert_eq!(get(None).status, Status::Warn);
    }

    #[test]
    fn state_directories_must_be_private_and_the_users() {
        let judge = |mode_owner: Option<(u32, u32)>| {
            let f = Facts {
                private_dirs: vec![DirFacts {
                    path: "/home/alice/.local/share/zchroot".into(),
                    mode_owner,
                }],
                ..facts()
            };
            checks(&f, &[])
                .into_iter()
                .find(|c| c.name == "private state")
                .unwrap()
        };
        assert_eq!(judge(Some((0o040700, 1000))).status, Status::Ok);
        assert_eq!(judge(None).status, Status::Ok, "made 0700 when needed");
        let c = judge(Some((0o040755, 1000)));
        assert_eq!(c.status, Status::Warn);
        assert_eq!(
            c.detail,
            "/home/alice/.local/share/zchroot: mode 0755: other users can read what is in it"
        );
        assert_eq!(
            c.help.as_deref(),
            Some("zchroot doctor --fix (chmod 0700 /home/alice/.local/share/zchroot)")
        );
        assert!(judge(Some((0o040777, 1000))).detail.contains("can change"));
        assert_eq!(judge(Some((0o040700, 0))).status, Status::Fail);
        assert_eq!(
            judge(Some((0o120777, 1000))).status,
            Status::Fail,
            "a symlink"
        );
    }

    #[test]
    fn lock_files_and_other_directories_are_reported_when_others_can_reach_them() {
        let judge = |dirs: Vec<(u32, u32)>, locks: Vec<(u32, u32)>| {
            let f = Facts {
                more_private_dirs: dirs
                    .into_iter()
                    .map(|m| DirFacts {
                        path: "/s/locks".into(),
                        mode_owner: Some(m),
                    })
                    .collect(),
                lock_files: locks
                    .into_iter()
                    .map(|m| DirFacts {
                        path: "/s/locks/a.lock".into(),
                        mode_owner: Some(m),
                    })
                    .collect(),
                ..facts()
            };
            checks(&f, &[])
                .into_iter()
                .filter(|c| c.name == "private state")
                .collect::<Vec<_>>()
        };
        // Private ones are not listed: there may be many.
        assert!(judge(vec![(0o040700, 1000)], vec![(0o100600, 1000)]).is_empty());
        let c = judge(vec![], vec![(0o100644, 1000)]);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].status, Status::Warn);
        assert!(
            c[0].detail.starts_with(
                "/s/locks/a.lock: mode 0644: other users can open this lock file and hold the lock"
            ),
            "{:?}",
            c[0]
        );
        assert_eq!(
            c[0].help.as_deref(),
            Some("zchroot doctor --fix (chmod 0600 /s/locks/a.lock)")
        );
        assert_eq!(judge(vec![], vec![(0o100600, 0)])[0].status, Status::Fail);
        assert_eq!(
            judge(vec![], vec![(0o120777, 1000)])[0].status,
            Status::Fail,
            "a symlink"
        );
        let c = judge(vec![(0o040755, 1000)], vec![]);
        assert_eq!(c[0].status, Status::Warn);
        assert_eq!(
            c[0].help.as_deref(),
            Some("zchroot doctor --fix (chmod 0700 /s/locks)")
        );
    }

    #[test]
    fn private_things_are_found_and_fixed_without_following_links() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let (state, cache, config) = (
            d.path().join("state"),
            d.path().join("cache"),
            d.path().join("config"),
        );
        for p in [
            "state/locks",
            "state/archive-dates",
            "state/repos/board/public",
            "cache/blobs/locks",
            "config/targets",
        ] {
            std::fs::create_dir_all(d.path().join(p)).unwrap();
        }
        for p in [
            "state/locks/a.lock",
            "state/archive-dates/.lock",
            "state/archive-dates/r-x",
            "cache/blobs/locks/00.lock",
        ] {
            std::fs::write(d.path().join(p), "").unwrap();
        }
        // A lock directory that is a symlink is not listed through.
        let elsewhere = d.path().join("elsewhere");
        std::fs::create_dir(&elsewhere).unwrap();
        std::fs::write(elsewhere.join("x.lock"), "").unwrap();
        std::os::unix::fs::symlink(&elsewhere, cache.join("templates")).unwrap();
        let p = Private::find(&state, &cache, Some(&config));
        let rel = |v: &[PathBuf]| -> Vec<String> {
            v.iter()
                .map(|p| p.strip_prefix(d.path()).unwrap().display().to_string())
                .collect()
        };
        assert_eq!(
            rel(&p.dirs),
            [
                "config",
                "config/targets",
                "state/locks",
                "state/archive-dates",
                "state/repos",
                "state/repos/board",
                "cache/blobs",
                "cache/blobs/locks",
                "cache/templates",
            ]
        );
        assert_eq!(
            rel(&p.locks),
            [
                "state/locks/a.lock",
                "state/archive-dates/.lock",
                "cache/blobs/locks/00.lock"
            ]
        );
        for l in &p.locks {
            std::fs::set_permissions(l, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
        std::fs::set_permissions(&elsewhere, std::fs::Permissions::from_mode(0o755)).unwrap();
        let fixed = fix_modes(&p.dirs, &p.locks);
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        for l in &p.locks {
            assert_eq!(mode(l), 0o600, "{l:?}");
            assert!(
                fixed
                    .done
                    .contains(&format!("chmod 0600 {} (was 0644)", l.display())),
                "{fixed:?}"
            );
        }
        for dir in &p.dirs[..8] {
            assert_eq!(mode(dir), 0o700, "{dir:?}");
        }
        assert_eq!(mode(&elsewhere), 0o755, "a symlink was followed");
    }

    #[test]
    fn an_unwritable_directory_is_named_with_what_to_do() {
        let w = |refused: Option<(PathBuf, String)>| Writable {
            what: "state",
            dir: "/nonexistent/zchroot/state".into(),
            refused,
        };
        let c = writable_check(&w(None), "alice");
        assert_eq!(c.status, Status::Ok);
        assert!(
            c.detail.ends_with("not there yet; zchroot can make it"),
            "{c:?}"
        );
        let c = writable_check(
            &w(Some((
                "/nonexistent".into(),
                "Permission denied (os error 13)".into(),
            ))),
            "alice",
        );
        assert_eq!(c.status, Status::Fail);
        assert_eq!(
            c.detail,
            "state /nonexistent/zchroot/state: /nonexistent: Permission denied (os error 13)"
        );
        assert_eq!(
            c.help.as_deref(),
            Some("sudo chown -R alice /nonexistent, or set ZCHROOT_HOME to a directory you can write")
        );
    }

    #[test]
    fn stale_binfmt_entries_are_listed_with_the_fix() {
        let get = |v: Option<Result<Vec<String>, String>>| {
            let f = Facts {
                stale_binfmt: v,
                ..facts()
            };
            checks(&f, &[])
                .into_iter()
                .find(|c| c.name == "stale binfmt entries")
        };
        assert!(get(None).is_none(), "not looked for");
        assert_eq!(get(Some(Ok(vec![]))).unwrap().status, Status::Ok);
        let c = get(Some(Ok(vec!["zchroot-aarch64-1-2-3".into()]))).unwrap();
        assert_eq!(c.status, Status::Warn);
        assert!(c.detail.ends_with("zchroot-aarch64-1-2-3"), "{c:?}");
        assert!(c.help.unwrap().starts_with("zchroot doctor --fix"));
    }

    #[test]
    fn old_kernels_need_a_host_registration() {
        let arm64 = Manifests::embedded().arch("arm64").unwrap();
        let f = Facts {
            kernel_version: (6, 1),
            ..facts()
        };
        let c = checks(&f, &[arm64]);
        let r = c
            .iter()
            .find(|x| x.name == "host qemu registration")
            .unwrap();
        assert_eq!(r.status, Status::Fail);
        assert!(r.help.as_deref().unwrap().contains("qemu-aarch64"));
        // As root, zchroot registers one for each run itself.
        let f = Facts { is_root: true, ..f };
        let c = checks(&f, &[Manifests::embedded().arch("arm64").unwrap()]);
        let r = c
            .iter()
            .find(|x| x.name == "host qemu registration")
            .unwrap();
        assert_eq!(r.status, Status::Ok, "{r:?}");
    }
}
