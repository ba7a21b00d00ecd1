//! dpkg's database for packages unpacked natively, in the formats dpkg
//! itself writes (`status` stanzas `install ok unpacked`, `info/PKG.list`,
//! the control members as `info/PKG.NAME`, trigger interests), so that the
//! only work left for the root's own dpkg, under emulation, is
//! `dpkg --configure -a`. Pure: the files are returned as data.

use crate::deb::read::LIST_FILE;
use crate::deb::ControlFiles;

/// What registering one package needs: its control members, the paths it
/// unpacked (archive order, as [`crate::deb::Extraction::paths`]) and the
/// MD5 of each of its conffiles as unpacked.
#[derive(Debug, Clone)]
pub struct Unpacked {
    pub control: ControlFiles,
    pub paths: Vec<String>,
    pub conffile_md5: Vec<(String, String)>,
}

/// A file of dpkg's database: path relative to the root, contents, mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbFile {
    pub path: String,
    pub contents: Vec<u8>,
    pub mode: u32,
}

/// The value of a control field (first line only), if present.
pub fn field<'a>(control: &'a str, name: &str) -> Option<&'a str> {
    control.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (!l.starts_with([' ', '\t']) && k.eq_ignore_ascii_case(name)).then(|| v.trim())
    })
}

/// The name dpkg gives the package's files under `info/`: `NAME:ARCH` for
/// `Multi-Arch: same` packages, else `NAME`.
pub fn info_name(control: &str) -> String {
    let name = field(control, "Package").unwrap_or_default();
    match (field(control, "Multi-Arch"), field(control, "Architecture")) {
        (Some("same"), Some(arch)) => format!("{name}:{arch}"),
        _ => name.to_string(),
    }
}

/// The `status` stanza of a package unpacked but not configured: the
/// control file's fields, `Status: install ok unpacked` after `Package`
/// (and `Essential`/`Protected`, as dpkg orders them), `Conffiles` before
/// `Description`. dpkg rewrites the whole file in its own order when it
/// configures; this is what it reads.
pub fn status_stanza(control: &str, conffiles: &[(String, String, bool)]) -> String {
    // Fields as (name, whole text including continuation lines).
    let mut fields: Vec<(String, String)> = Vec::new();
    for line in control.lines() {
        if line.trim().is_empty() {
            continue;
        }
        match (line.starts_with([' ', '\t']), fields.last_mut()) {
            (true, Some((_, text))) => {
                text.push('\n');
                text.push_str(line);
            }
            _ => {
                let name = line.split(':').next().unwrap_or_default().to_string();
                fields.push((name, line.to_string()));
            }
        }
    }
    let is = |f: &(String, String), n: &str| f.0.eq_ignore_ascii_case(n);
    fields.retain(|f| !is(f, "Status") && !is(f, "Conffiles"));
    let after = fields
        .iter()
        .rposition(|f| is(f, "Package") || is(f, "Essential") || is(f, "Protected"))
        .map_or(0, |i| i + 1);
    fields.insert(
        after,
        ("Status".into(), "Status: install ok unpacked".into()),
    );
    if !conffiles.is_empty() {
        let mut text = String::from("Conffiles:");
        for (path, md5, remove_on_upgrade) in conffiles {
            text.push_str(&format!("\n {path} {md5}"));
            if *remove_on_upgrade {
                text.push_str(" remove-on-upgrade");
            }
        }
        let at = fields
            .iter()
            .position(|f| is(f, "Description"))
            .unwrap_or(fields.len());
        fields.insert(at, ("Conffiles".into(), text));
    }
    let mut out: String = fields
        .into_iter()
        .map(|(_, t)| t)
        .collect::<Vec<_>>()
        .join("\n");
    out.push('\n');
    out
}

/// The trigger interests a package's `triggers` member declares:
/// (trigger name or path, the interested package as dpkg records it).
pub fn interests(info_name: &str, triggers: &str) -> Vec<(String, String)> {
    triggers
        .lines()
        .map(|l| l.split('#').next().unwrap_or_default())
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            let directive = words.next()?;
            let name = words.next()?;
            let who = match directive {
                "interest" | "interest-await" => info_name.to_string(),
                "interest-noawait" => format!("{info_name}/noawait"),
                _ => return None,
            };
            Some((name.to_string(), who))
        })
        .collect()
}

/// Every file of dpkg's database for `pkgs`: `status` (stanzas sorted by
/// package name, as dpkg writes it), `info/PKG.list`, each control member
/// but `control` as `info/PKG.NAME` with its mode, and the trigger
/// interests (`triggers/File` for paths, `triggers/NAME` otherwise).
pub fn database(pkgs: &[Unpacked]) -> Vec<DbFile> {
    let mut out = Vec::new();
    let mut stanzas: Vec<(String, String)> = Vec::new();
    let mut file_interests: Vec<String> = Vec::new();
    let mut named: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for p in pkgs {
        let control = &p.control.control;
        let info = info_name(control);
        let conffiles: Vec<(String, String, bool)> = p
            .control
            .conffiles()
            .into_iter()
            .map(|c| {
                let md5 = p
                    .conffile_md5
                    .iter()
                    .find(|(path, _)| *path == c.path)
                    .map_or_else(|| "newconffile".to_string(), |(_, m)| m.clone());
                (c.path, md5, c.remove_on_upgrade)
            })
            .collect();
        stanzas.push((info.clone(), status_stanza(control, &conffiles)));
        let mut list = String::new();
        for path in &p.paths {
            list.push_str(path);
            list.push('\n');
        }
        out.push(DbFile {
            path: format!("var/lib/dpkg/info/{info}.list"),
            contents: list.into_bytes(),
            mode: 0o644,
        });
        // The list is the one above, whatever the members are.
        for f in p.control.files.iter().filter(|f| f.name != LIST_FILE) {
            out.push(DbFile {
                path: format!("var/lib/dpkg/info/{info}.{}", f.name),
                contents: f.contents.clone(),
                mode: f.mode & 0o777,
            });
        }
        if let Some(t) = p.control.get("triggers") {
            for (name, who) in interests(&info, &String::from_utf8_lossy(&t.contents)) {
                if name.starts_with('/') {
                    file_interests.push(format!("{name} {who}\n"));
                } else {
                    named.entry(name).or_default().push(format!("{who}\n"));
                }
            }
        }
    }
    stanzas.sort();
    let status: String = stanzas
        .into_iter()
        .map(|(_, s)| s + "\n")
        .collect::<String>();
    out.push(DbFile {
        path: "var/lib/dpkg/status".into(),
        contents: status.into_bytes(),
        mode: 0o644,
    });
    if !file_interests.is_empty() {
        out.push(DbFile {
            path: "var/lib/dpkg/triggers/File".into(),
            contents: file_interests.concat().into_bytes(),
            mode: 0o644,
        });
    }
    for (name, who) in named {
        out.push(DbFile {
            path: format!("var/lib/dpkg/triggers/{name}"),
            contents: who.concat().into_bytes(),
            mode: 0o644,
        });
    }
    out
}

/// The file name apt gives what it fetches from `uri` under
/// `/var/lib/apt/lists` (apt's `URItoFileName`): the URI without its
/// scheme, user and password, the characters apt quotes as `%xx`, `/` as `_`.
pub fn apt_list_name(uri: &str) -> String {
    let rest = uri.split_once("://").map_or(uri, |(_, r)| r);
    let rest = match rest.split_once('/') {
        Some((host, path)) => {
            let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
            format!("{host}/{path}")
        }
        None => rest.rsplit_once('@').map_or(rest, |(_, h)| h).to_string(),
    };
    let mut out = String::new();
    for c in rest.chars() {
        if "\\|{}[]<>\"^~_=!@#$%&*".contains(c) || c == ' ' || !c.is_ascii_graphic() {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("%{b:02x}"));
            }
        } else if c == '/' {
            out.push('_');
        } else {
            out.push(c);
        }
    }
    out
}

/// The `.deb` file name dpkg and apt give a package:
/// `NAME_VERSION_ARCH.deb`, an epoch's colon written `%3a`.
pub fn deb_file_name(name: &str, version: &str, arch: &str) -> String {
    format!("{name}_{}_{arch}.deb", version.replace(':', "%3a"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deb::ControlFile;

    const CONTROL: &str = "Package: libfoo1\nSource: foo (1.2-3)\nVersion: 1:1.2-3\nArchitecture: arm64\nMulti-Arch: same\nMaintainer: M <m@example.org>\nInstalled-Size: 40\nDepends: libc6 (>= 2.36)\nSection: libs\nPriority: optional\nDescription: a library\n Long text.\n .\n More.\n";

    fn pkg() -> Unpacked {
        Unpacked {
            control: ControlFiles {
                control: CONTROL.into(),
                files: vec![
                    ControlFile {
                        name: "conffiles".into(),
                        mode: 0o644,
                        contents: b"/etc/foo.conf\n".to_vec(),
                    },
                    ControlFile {
                        name: "postinst".into(),
                        mode: 0o755,
                        contents: b"#!/bin/sh\n".to_vec(),
                    },
                    ControlFile {
                        name: "triggers".into(),
                        mode: 0o644,
                        contents: b"# comment\nactivate-noawait ldconfig\ninterest-noawait /usr/lib/foo\ninterest bar-trigger\n".to_vec(),
                    },
                ],
            },
            paths: vec!["/.".into(), "/etc".into(), "/etc/foo.conf".into()],
            conffile_md5: vec![("/etc/foo.conf".into(), "0123abcd".into())],
        }
    }

    #[test]
    fn a_stanza_is_the_control_with_status_and_conffiles() {
        let s = status_stanza(
            CONTROL,
            &[("/etc/foo.conf".into(), "0123abcd".into(), false)],
        );
        assert!(
            s.starts_with("Package: libfoo1\nStatus: install ok unpacked\nSource: foo (1.2-3)\n"),
            "{s}"
        );
        assert!(
            s.ends_with("Priority: optional\nConffiles:\n /etc/foo.conf 0123abcd\nDescription: a library\n Long text.\n .\n More.\n"),
            "{s}"
        );
        let e = status_stanza("Package: e\nEssential: yes\nVersion: 1\n", &[]);
        assert_eq!(
            e,
            "Package: e\nEssential: yes\nStatus: install ok unpacked\nVersion: 1\n"
        );
    }

    #[test]
    fn the_database_names_multi_arch_same_packages_with_their_arch() {
        let files = database(&[pkg()]);
        let get = |p: &str| {
            files
                .iter()
                .find(|f| f.path == p)
                .unwrap_or_else(|| panic!("{p} in {files:?}"))
        };
        assert_eq!(
            get("var/lib/dpkg/info/libfoo1:arm64.list").contents,
            b"/.\n/etc\n/etc/foo.conf\n"
        );
        assert_eq!(get("var/lib/dpkg/info/libfoo1:arm64.postinst").mode, 0o755);
        assert_eq!(
            get("var/lib/dpkg/info/libfoo1:arm64.conffiles").contents,
            b"/etc/foo.conf\n"
        );
        let status = String::from_utf8(get("var/lib/dpkg/status").contents.clone()).unwrap();
        assert!(status.contains(" /etc/foo.conf 0123abcd\n"), "{status}");
        assert!(status.ends_with(" More.\n\n"), "{status}");
        assert_eq!(
            get("var/lib/dpkg/triggers/File").contents,
            b"/usr/lib/foo libfoo1:arm64/noawait\n"
        );
        assert_eq!(
            get("var/lib/dpkg/triggers/bar-trigger").contents,
            b"libfoo1:arm64\n"
        );
        assert!(!files.iter().any(|f| f.path.ends_with("/ldconfig")));
    }

    #[test]
    fn the_file_list_is_never_a_control_member() {
        // control_files refuses a member `list`; a ControlFiles made
        // otherwise still cannot replace the list.
        let mut p = pkg();
        p.control.files.push(ControlFile {
            name: "list".into(),
            mode: 0o644,
            contents: b"/etc/passwd\n".to_vec(),
        });
        let files = database(&[p]);
        let lists: Vec<&DbFile> = files
            .iter()
            .filter(|f| f.path == "var/lib/dpkg/info/libfoo1:arm64.list")
            .collect();
        assert_eq!(lists.len(), 1, "{lists:?}");
        assert_eq!(lists[0].contents, b"/.\n/etc\n/etc/foo.conf\n");
    }

    #[test]
    fn names_are_apts_and_dpkgs() {
        assert_eq!(
            apt_list_name("http://deb.debian.org/debian/dists/trixie/InRelease"),
            "deb.debian.org_debian_dists_trixie_InRelease"
        );
        assert_eq!(
            apt_list_name("http://127.0.0.1:8080/a_b~c/dists/test/main/binary-amd64/Packages"),
            "127.0.0.1:8080_a%5fb%7ec_dists_test_main_binary-amd64_Packages"
        );
        assert_eq!(apt_list_name("http://u:p@host/debian/x"), "host_debian_x");
        assert_eq!(
            deb_file_name("libc6", "1:2.41-12", "arm64"),
            "libc6_1%3a2.41-12_arm64.deb"
        );
        assert_eq!(info_name("Package: dash\nArchitecture: arm64\n"), "dash");
    }
}
