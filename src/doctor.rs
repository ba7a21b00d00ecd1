//! `zchroot doctor`: what this host supports and what zchroot will use,
//! each check with the fix when something is missing. Pure: it judges
//! [`host::Facts`] that the caller read.

use crate::host::{self, Facts};
use crate::manifest::Arch;
use crate::sandbox::binfmt;
use crate::sandbox::idmap::find_range;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
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
    let mut out = Vec::new();
    let sandboxed = host::sandboxed_binfmt(f.kernel_version);
    out.push(check(
        "kernel",
        Status::Ok,
        format!("{} on {}", f.kernel, f.machine),
        None,
    ));

    let sysctl = |n: &str| {
        f.sysctls
            .iter()
            .find(|(k, _)| k == n)
            .and_then(|(_, v)| v.clone())
    };
    let mut userns = check("user namespaces", Status::Ok, "allowed".into(), None);
    if sysctl("user.max_user_namespaces").as_deref() == Some("0") {
        userns = check(
            "user namespaces",
            Status::Fail,
            "user.max_user_namespaces is 0".into(),
            Some("sudo sysctl -w user.max_user_namespaces=15000".into()),
        );
    } else if !f.is_root && sysctl("kernel.unprivileged_userns_clone").as_deref() == Some("0") {
        userns = check(
            "user namespaces",
            Status::Fail,
            "kernel.unprivileged_userns_clone is 0".into(),
            Some("sudo sysctl -w kernel.unprivileged_userns_clone=1".into()),
        );
    } else if !f.is_root
        && sysctl("kernel.apparmor_restrict_unprivileged_userns").as_deref() == Some("1")
    {
        userns = check(
            "user namespaces",
            Status::Fail,
            "AppArmor restricts unprivileged user namespaces (Ubuntu 23.10+)".into(),
            Some("sudo sysctl -w kernel.apparmor_restrict_unprivileged_userns=0, or an AppArmor profile for zchroot that allows userns".into()),
        );
    }
    out.push(userns);

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

    let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
    out.push(match f.free_bytes {
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
    });
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
