//! `--user USER[:GROUP]`: who the command runs as, looked up in the root's
//! own /etc/passwd and /etc/group (never the host's, whose ids mean nothing
//! inside). Pure: the files' contents come in, an [`Identity`] goes out.

use serde::{Deserialize, Serialize};

use super::idmap::IdMaps;

/// Who the command runs as, inside the sandbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    pub uid: u32,
    /// The primary group.
    pub gid: u32,
    /// Supplementary groups (the primary one among them).
    pub groups: Vec<u32>,
    /// The user's name (`USER`, `LOGNAME`), when the root's passwd has one.
    pub name: Option<String>,
    /// `HOME`: the passwd entry's, else `/`.
    pub home: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UserError {
    #[error("--user {0}: expected USER[:GROUP], each a name or a number")]
    Syntax(String),
    #[error("--user {spec}: root {} has no user '{user}' in its /etc/passwd{known}\nhelp: give one of its users or a number (`--user 1000`), or add the user: `zchroot run {} -- useradd -m {user}`", root.label, root.arg)]
    UnknownUser {
        spec: String,
        root: RootLabel,
        user: String,
        known: String,
    },
    #[error("--user {spec}: root {} has no group '{group}' in its /etc/group\nhelp: give one of its groups or a number", root.label)]
    UnknownGroup {
        spec: String,
        root: RootLabel,
        group: String,
    },
    #[error("--user {spec}: {kind} {id} is not mapped in the sandbox's user namespace (it maps {range})\nhelp: a rootless sandbox maps ids 0-65535 (see `zchroot doctor`); give an id in that range")]
    Unmapped {
        spec: String,
        kind: &'static str,
        id: u32,
        range: String,
    },
}

/// How errors name a root: `label` in text (`trixie-arm64`, or its
/// directory), `arg` on a command line (`trixie-arm64`, `--dir PATH`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootLabel {
    pub label: String,
    pub arg: String,
}

/// One line of /etc/passwd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswdEntry {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: String,
}

/// One line of /etc/group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupEntry {
    pub name: String,
    pub gid: u32,
    pub members: Vec<String>,
}

/// The entries of a passwd file (`name:pw:uid:gid:gecos:home:shell`);
/// comments and lines that do not parse are skipped.
pub fn parse_passwd(text: &str) -> Vec<PasswdEntry> {
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            if f.len() < 7 || f[0].is_empty() {
                return None;
            }
            Some(PasswdEntry {
                name: f[0].to_string(),
                uid: f[2].parse().ok()?,
                gid: f[3].parse().ok()?,
                home: f[5].to_string(),
            })
        })
        .collect()
}

/// The entries of a group file (`name:pw:gid:member,member`).
pub fn parse_group(text: &str) -> Vec<GroupEntry> {
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            if f.len() < 4 || f[0].is_empty() {
                return None;
            }
            Some(GroupEntry {
                name: f[0].to_string(),
                gid: f[2].parse().ok()?,
                members: f[3]
                    .split(',')
                    .map(str::trim)
                    .filter(|m| !m.is_empty())
                    .map(String::from)
                    .collect(),
            })
        })
        .collect()
}

/// A name or a number, as `--user` takes them.
fn is_number(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// Resolves `spec` (`USER[:GROUP]`) against the root's passwd and group
/// files (their contents; empty when the root has none). A number needs no
/// entry (as in podman: group 0 and `HOME=/` then, `/root` for uid 0).
pub fn resolve(
    spec: &str,
    root: &RootLabel,
    passwd: &str,
    group: &str,
) -> Result<Identity, UserError> {
    let (user, grp) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let syntax = || UserError::Syntax(spec.into());
    if user.is_empty() || grp == Some("") || grp.is_some_and(|g| g.contains(':')) {
        return Err(syntax());
    }
    let users = parse_passwd(passwd);
    let groups = parse_group(group);
    let entry = if is_number(user) {
        let uid: u32 = user.parse().map_err(|_| syntax())?;
        users.iter().find(|e| e.uid == uid).cloned()
    } else {
        let e = users.iter().find(|e| e.name == user).cloned();
        if e.is_none() {
            return Err(UserError::UnknownUser {
                spec: spec.into(),
                root: root.clone(),
                user: user.into(),
                known: known_users(&users),
            });
        }
        e
    };
    let uid = match &entry {
        Some(e) => e.uid,
        None => user.parse().map_err(|_| syntax())?,
    };
    let gid = match grp {
        None => entry.as_ref().map_or(0, |e| e.gid),
        Some(g) if is_number(g) => g.parse().map_err(|_| syntax())?,
        Some(g) => {
            groups
                .iter()
                .find(|e| e.name == g)
                .ok_or_else(|| UserError::UnknownGroup {
                    spec: spec.into(),
                    root: root.clone(),
                    group: g.into(),
                })?
                .gid
        }
    };
    let mut gids = vec![gid];
    if let Some(e) = &entry {
        for g in groups.iter().filter(|g| g.members.contains(&e.name)) {
            if !gids.contains(&g.gid) {
                gids.push(g.gid);
            }
        }
    }
    let home = match &entry {
        Some(e) if !e.home.is_empty() => e.home.clone(),
        _ if uid == 0 => "/root".into(),
        _ => "/".into(),
    };
    Ok(Identity {
        uid,
        gid,
        groups: gids,
        name: entry
            .map(|e| e.name)
            .or_else(|| (uid == 0).then(|| "root".to_string())),
        home,
    })
}

/// ": it has root, daemon, …" for the unknown-user error (at most 8 names:
/// a root made by `create` has ~20 system users).
fn known_users(users: &[PasswdEntry]) -> String {
    if users.is_empty() {
        return " (the root has no /etc/passwd)".into();
    }
    let mut names: Vec<&str> = users
        .iter()
        .filter(|e| e.uid == 0 || e.uid >= 1000 && e.uid < 65534)
        .map(|e| e.name.as_str())
        .collect();
    names.truncate(8);
    format!(": it has {}", names.join(", "))
}

/// Checks that the identity's uid and primary gid are mapped in the
/// sandbox's user namespace, and leaves out supplementary groups that are
/// not (setgroups would refuse them).
pub fn check_mapped(spec: &str, id: Identity, maps: &IdMaps) -> Result<Identity, UserError> {
    let unmapped = |kind, id, extents: &[super::idmap::Extent]| UserError::Unmapped {
        spec: spec.into(),
        kind,
        id,
        range: extents
            .iter()
            .map(|e| format!("{}-{}", e.inside, e.inside as u64 + e.count as u64 - 1))
            .collect::<Vec<_>>()
            .join(", "),
    };
    if IdMaps::outside(&maps.uid, id.uid).is_none() {
        return Err(unmapped("uid", id.uid, &maps.uid));
    }
    if IdMaps::outside(&maps.gid, id.gid).is_none() {
        return Err(unmapped("gid", id.gid, &maps.gid));
    }
    let groups = id
        .groups
        .iter()
        .copied()
        .filter(|g| IdMaps::outside(&maps.gid, *g).is_some())
        .collect();
    Ok(Identity { groups, ..id })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::idmap::Extent;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/bash\n\
        daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n\
        # a comment\n\
        broken line\n\
        builder:x:1000:1000:Builder,,,:/home/builder:/bin/bash\n\
        nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n";
    const GROUP: &str = "root:x:0:\n\
        tty:x:5:\n\
        sudo:x:27:builder\n\
        builder:x:1000:\n\
        plugdev:x:46:other, builder\n\
        bad:x:notanumber:builder\n";

    fn root() -> &'static RootLabel {
        static R: std::sync::OnceLock<RootLabel> = std::sync::OnceLock::new();
        R.get_or_init(|| RootLabel {
            label: "/r".into(),
            arg: "--dir /r".into(),
        })
    }

    #[test]
    fn passwd_and_group_lines_are_parsed_and_junk_skipped() {
        let p = parse_passwd(PASSWD);
        assert_eq!(p.len(), 4);
        assert_eq!(
            p[2],
            PasswdEntry {
                name: "builder".into(),
                uid: 1000,
                gid: 1000,
                home: "/home/builder".into()
            }
        );
        let g = parse_group(GROUP);
        assert_eq!(g.len(), 5, "the line with a bad gid is skipped");
        assert_eq!(g[4].members, vec!["other", "builder"]);
        assert!(g[0].members.is_empty());
    }

    #[test]
    fn a_name_takes_its_ids_home_and_groups_from_the_root() {
        let id = resolve("builder", root(), PASSWD, GROUP).unwrap();
        assert_eq!(
            id,
            Identity {
                uid: 1000,
                gid: 1000,
                groups: vec![1000, 27, 46],
                name: Some("builder".into()),
                home: "/home/builder".into(),
            }
        );
        // By number, the same entry.
        assert_eq!(resolve("1000", root(), PASSWD, GROUP).unwrap(), id);
        // A group by name or number replaces the primary one.
        let g = resolve("builder:tty", root(), PASSWD, GROUP).unwrap();
        assert_eq!((g.gid, g.groups.clone()), (5, vec![5, 27, 46]));
        assert_eq!(resolve("builder:5", root(), PASSWD, GROUP).unwrap(), g);
    }

    #[test]
    fn a_number_without_an_entry_runs_with_group_0_and_home_slash() {
        let id = resolve("4242", root(), PASSWD, GROUP).unwrap();
        assert_eq!(
            id,
            Identity {
                uid: 4242,
                gid: 0,
                groups: vec![0],
                name: None,
                home: "/".into(),
            }
        );
        assert_eq!(resolve("4242:77", root(), "", "").unwrap().gid, 77);
        // uid 0 in a root without passwd is still root.
        let r = resolve("0", root(), "", "").unwrap();
        assert_eq!(
            (r.name.as_deref(), r.home.as_str()),
            (Some("root"), "/root")
        );
    }

    #[test]
    fn unknown_names_and_bad_syntax_are_clear_errors() {
        let e = resolve("nosuch", root(), PASSWD, GROUP).unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("root /r has no user 'nosuch'")
                && text.contains("it has root, builder")
                && text.contains("help:")
                && text.contains("`zchroot run --dir /r -- useradd -m nosuch`"),
            "{text}"
        );
        let e = resolve("nosuch", root(), "", "").unwrap_err().to_string();
        assert!(e.contains("has no /etc/passwd"), "{e}");
        let e = resolve("builder:wheel", root(), PASSWD, GROUP).unwrap_err();
        assert!(matches!(e, UserError::UnknownGroup { ref group, .. } if group == "wheel"));
        for bad in ["", ":", "builder:", ":tty", "a:b:c", "99999999999"] {
            assert!(
                matches!(
                    resolve(bad, root(), PASSWD, GROUP),
                    Err(UserError::Syntax(_))
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn ids_outside_the_map_are_refused_and_unmapped_groups_left_out() {
        let maps = IdMaps {
            uid: vec![Extent {
                inside: 0,
                outside: 100000,
                count: 65536,
            }],
            gid: vec![Extent {
                inside: 0,
                outside: 100000,
                count: 65536,
            }],
            helpers: true,
        };
        let id = Identity {
            uid: 1000,
            gid: 1000,
            groups: vec![1000, 70000],
            name: None,
            home: "/".into(),
        };
        assert_eq!(
            check_mapped("x", id.clone(), &maps).unwrap().groups,
            vec![1000]
        );
        let e = check_mapped(
            "70000",
            Identity {
                uid: 70000,
                ..id.clone()
            },
            &maps,
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("uid 70000 is not mapped") && e.contains("0-65535"),
            "{e}"
        );
        let e = check_mapped("x", Identity { gid: 70000, ..id }, &maps).unwrap_err();
        assert!(matches!(e, UserError::Unmapped { kind: "gid", .. }));
    }
}
