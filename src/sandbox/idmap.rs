//! User and group id maps of the sandbox's user namespace: uid 0 inside is
//! the calling user, ids 1..N inside are the user's subordinate range from
//! `/etc/subuid` and `/etc/subgid` (written by the setuid `newuidmap` and
//! `newgidmap`); as root, the identity map. Pure: file contents come in.

/// One line of a map: `inside outside count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Extent {
    pub inside: u32,
    pub outside: u32,
    pub count: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct IdMaps {
    pub uid: Vec<Extent>,
    pub gid: Vec<Extent>,
    /// Written through newuidmap/newgidmap (rootless) or directly (root).
    pub helpers: bool,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IdMapError {
    #[error("no subordinate {kind} range for {user} in {file}\nhelp: add \"{user}:100000:65536\" to /etc/subuid and /etc/subgid (e.g. `sudo usermod --add-subuids 100000-165535 --add-subgids 100000-165535 {user}`)")]
    NoRange {
        kind: &'static str,
        user: String,
        file: &'static str,
    },
    #[error(
        "{helper} is missing or not setuid root\nhelp: install it: `sudo apt-get install uidmap`"
    )]
    NoHelper { helper: &'static str },
}

/// The largest range used: enough for every id a Debian system allocates.
pub const RANGE: u32 = 65536;

/// Finds the first range of `user` (by name or numeric id) in subuid/subgid
/// text (`name:start:count` lines).
pub fn find_range(text: &str, user: &str, id: u32) -> Option<(u32, u32)> {
    let id = id.to_string();
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let mut it = l.split(':');
            let (who, start, count) = (it.next()?, it.next()?, it.next()?);
            Some((who, start.parse::<u32>().ok()?, count.parse::<u32>().ok()?))
        })
        .find(|(who, _, count)| (*who == user || *who == id) && *count > 0)
        .map(|(_, s, c)| (s, c))
}

impl IdMaps {
    /// Maps for root: the identity, all ids.
    pub fn identity() -> Self {
        let all = vec![Extent {
            inside: 0,
            outside: 0,
            count: u32::MAX,
        }];
        IdMaps {
            uid: all.clone(),
            gid: all,
            helpers: false,
        }
    }

    /// Maps for a normal user from the contents of /etc/subuid and /etc/subgid.
    pub fn rootless(
        user: &str,
        uid: u32,
        gid: u32,
        subuid: &str,
        subgid: &str,
    ) -> Result<Self, IdMapError> {
        let sub = |text: &str, kind, file| {
            find_range(text, user, uid).ok_or_else(|| IdMapError::NoRange {
                kind,
                user: user.into(),
                file,
            })
        };
        let (us, uc) = sub(subuid, "uid", "/etc/subuid")?;
        let (gs, gc) = sub(subgid, "gid", "/etc/subgid")?;
        let map = |own, start, count: u32| {
            vec![
                Extent {
                    inside: 0,
                    outside: own,
                    count: 1,
                },
                Extent {
                    inside: 1,
                    outside: start,
                    count: count.min(RANGE),
                },
            ]
        };
        Ok(IdMaps {
            uid: map(uid, us, uc),
            gid: map(gid, gs, gc),
            helpers: true,
        })
    }

    /// Arguments for `newuidmap PID ...` / `newgidmap PID ...`.
    pub fn helper_args(extents: &[Extent]) -> Vec<String> {
        extents
            .iter()
            .flat_map(|e| [e.inside, e.outside, e.count])
            .map(|n| n.to_string())
            .collect()
    }

    /// Text for `/proc/PID/uid_map` written directly.
    pub fn map_text(extents: &[Extent]) -> String {
        extents
            .iter()
            .map(|e| format!("{} {} {}\n", e.inside, e.outside, e.count))
            .collect()
    }

    /// The host id that an id inside maps to.
    pub fn outside(extents: &[Extent], inside: u32) -> Option<u32> {
        extents
            .iter()
            .find(|e| inside >= e.inside && inside - e.inside < e.count)
            .map(|e| e.outside + (inside - e.inside))
    }
}

/// The identity map of the ranges a `/proc/PID/uid_map` text lists (each
/// range's first column mapped to itself): for a user namespace nested in
/// that one, holding the same ids.
pub fn identity_of(map_text: &str) -> String {
    map_text
        .lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            let inside: u32 = it.next()?.parse().ok()?;
            let _outside: u32 = it.next()?.parse().ok()?;
            let count: u32 = it.next()?.parse().ok()?;
            Some(format!("{inside} {inside} {count}\n"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_nested_namespace_maps_each_range_to_itself() {
        assert_eq!(
            super::identity_of(
                "         0       1000          1\n         1     100000      65536\n"
            ),
            "0 0 1\n1 1 65536\n"
        );
        assert_eq!(super::identity_of("0 0 4294967295\n"), "0 0 4294967295\n");
    }

    use super::*;

    #[test]
    fn rootless_maps_user_to_root_and_range_above() {
        let m = IdMaps::rootless(
            "alice",
            1000,
            1000,
            "bob:1:2\nalice:100000:65536\n",
            "1000:300000:70000\n",
        )
        .unwrap();
        assert_eq!(
            IdMaps::helper_args(&m.uid),
            ["0", "1000", "1", "1", "100000", "65536"]
        );
        assert_eq!(
            IdMaps::helper_args(&m.gid),
            ["0", "1000", "1", "1", "300000", "65536"]
        );
        assert_eq!(IdMaps::outside(&m.uid, 0), Some(1000));
        assert_eq!(IdMaps::outside(&m.uid, 1000), Some(100999));
        assert_eq!(IdMaps::outside(&m.uid, 70000), None);
        assert!(m.helpers);
    }

    #[test]
    fn a_missing_range_says_which_line_to_add() {
        let e = IdMaps::rootless("alice", 1000, 1000, "# none\n", "alice:1:5").unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.starts_with("no subordinate uid range for alice in /etc/subuid"),
            "{msg}"
        );
        assert!(
            msg.contains("help: add \"alice:100000:65536\" to /etc/subuid and /etc/subgid"),
            "{msg}"
        );
        let e = IdMaps::rootless("alice", 1000, 1000, "alice:1:5", "alice:1:0").unwrap_err();
        assert!(e.to_string().contains("subordinate gid range"), "{e}");
    }

    #[test]
    fn root_gets_the_identity() {
        let m = IdMaps::identity();
        assert_eq!(IdMaps::map_text(&m.uid), "0 0 4294967295\n");
        assert!(!m.helpers);
    }
}
