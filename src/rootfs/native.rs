//! Installing packages natively, without emulation: every .deb unpacked
//! through the confined extractor on all cores, then registered with dpkg
//! in its own formats ([`super::register`]), so that the root's dpkg only
//! has to configure them. Runs as root of the root's user namespace when
//! rootless (the sandbox helper's extract job), or directly as root.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use md5::{Digest, Md5};

use crate::deb::{ControlFiles, ExtractLimit, Extraction};
use crate::rootdir::{Kind, RootDir};

use super::register::{self, Unpacked};

/// Largest conffile read back for its checksum.
const MAX_CONFFILE: u64 = 64 << 20;

/// One package unpacked: its control members and what was extracted.
type Done = (ControlFiles, Extraction);

/// The package as dpkg names it in errors, `NAME_VERSION_ARCH.deb`, from
/// its control file.
fn named(control: &str, limit: &ExtractLimit) -> String {
    register::deb_file_name(
        register::field(control, "Package").unwrap_or(&limit.package),
        register::field(control, "Version").unwrap_or_default(),
        register::field(control, "Architecture").unwrap_or_default(),
    )
}

/// Extracts each of `debs` (data and control) with `threads` workers; the
/// results in the order of `debs`. The first is unpacked alone before the
/// others (base-files: the tree's top directories and links).
fn extract_all(
    root: &Path,
    debs: &[(PathBuf, ExtractLimit)],
    threads: usize,
) -> Result<Vec<Done>, String> {
    // Errors name the package as dpkg would (`NAME_VERSION_ARCH.deb`),
    // not by its file in the cache.
    let one = |(deb, limit): &(PathBuf, ExtractLimit)| -> Result<_, String> {
        crate::interrupt::check().map_err(|e| e.to_string())?;
        let control =
            crate::deb::control_files(deb).map_err(|e| format!("{}: {e}", limit.package))?;
        let c = &control.control;
        // The names below become file names in dpkg's database: the .deb
        // must be the package its (signed) index entry says, by a name dpkg
        // takes, for an architecture that is a plain word.
        let (name, arch) = (
            register::field(c, "Package").unwrap_or_default(),
            register::field(c, "Architecture").unwrap_or_default(),
        );
        let arch_ok = !arch.is_empty()
            && arch
                .chars()
                .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '-');
        if name != limit.package || !crate::rootfs::spec::valid_package_name(name) || !arch_ok {
            return Err(format!(
                "{}: the .deb calls itself '{name}' for '{arch}', not the package its index entry names; refused",
                limit.package
            ));
        }
        let ex = crate::deb::extract_data_with(deb, root, limit)
            .map_err(|e| format!("{}: {e}", named(c, limit)))?;
        Ok((control, ex))
    };
    let Some((first, rest)) = debs.split_first() else {
        return Ok(vec![]);
    };
    let first = one(first)?;
    // Largest first, so that no worker is left with a big one at the end.
    let mut by_size: Vec<usize> = (0..rest.len()).collect();
    let size = |i: &usize| std::fs::metadata(&rest[*i].0).map_or(0, |m| m.len());
    by_size.sort_by_key(|i| std::cmp::Reverse(size(i)));
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<Done>>> = Mutex::new((0..rest.len()).map(|_| None).collect());
    // The first failure, which stopped the work: the one reported (the
    // packages left undone by it have no error of their own).
    let failure: Mutex<Option<String>> = Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..threads.max(1) {
            s.spawn(|| loop {
                let k = next.fetch_add(1, Ordering::Relaxed);
                let Some(&i) = by_size.get(k) else { break };
                match one(&rest[i]) {
                    Ok(done) => {
                        if let Ok(mut v) = results.lock() {
                            v[i] = Some(done);
                        }
                    }
                    Err(e) => {
                        // Stop handing out work; the others finish theirs.
                        next.store(by_size.len(), Ordering::Relaxed);
                        if let Ok(mut f) = failure.lock() {
                            f.get_or_insert(e);
                        }
                    }
                }
            });
        }
    });
    if let Some(e) = failure.into_inner().map_err(|e| e.to_string())? {
        return Err(e);
    }
    let results = results.into_inner().map_err(|e| e.to_string())?;
    let mut out = vec![first];
    for (r, (deb, limit)) in results.into_iter().zip(rest) {
        // Every package is done when none failed (a worker's panic is
        // the scope's).
        out.push(r.ok_or_else(|| {
            format!(
                "{}: unpacking {} did not finish",
                limit.package,
                deb.display()
            )
        })?);
    }
    Ok(out)
}

/// Paths (not directories) that more than one package unpacked: for each,
/// the packages (indexes in order) that have it.
fn shared_files(root_dir: &RootDir, lists: &[&[String]]) -> Vec<(String, Vec<usize>)> {
    let mut seen: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, paths) in lists.iter().enumerate() {
        for p in paths.iter() {
            seen.entry(p.as_str()).or_default().push(i);
        }
    }
    let mut out: Vec<(String, Vec<usize>)> = seen
        .into_iter()
        .filter(|(_, who)| who.len() > 1)
        .filter(|(p, _)| {
            let rel = p.trim_start_matches('/');
            // Directories (and links to them, as /lib in merged /usr)
            // are every package's.
            !rel.is_empty()
                && rel != "."
                && !matches!(
                    root_dir.kind(Path::new(rel)),
                    Ok(Some(Kind::Dir | Kind::Symlink))
                )
        })
        .map(|(p, who)| (p.to_string(), who))
        .collect();
    out.sort();
    out
}

/// The MD5 of each conffile of a package as unpacked (`None` where it is
/// missing, which dpkg records as `newconffile`).
fn conffile_sums(root_dir: &RootDir, control: &ControlFiles) -> Vec<(String, String)> {
    control
        .conffiles()
        .into_iter()
        .filter_map(|c| {
            let data = root_dir
                .read(Path::new(c.path.trim_start_matches('/')), MAX_CONFFILE)
                .ok()?;
            Some((c.path, hex::encode(Md5::digest(&data))))
        })
        .collect()
}

/// Unpacks `debs` into `root` (in this order: a file two packages ship is
/// the later one's, as dpkg would leave it) and writes dpkg's database for
/// them: every package `install ok unpacked`.
pub fn unpack_and_register(root: &Path, debs: &[(PathBuf, ExtractLimit)]) -> Result<(), String> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut done = extract_all(root, debs, threads)?;
    let root_dir = RootDir::open(root).map_err(|e| e.to_string())?;
    // Unpacked in parallel, a shared file may hold either package's
    // version: the later package is unpacked again, and owns the file.
    let shared = {
        let lists: Vec<&[String]> = done.iter().map(|(_, ex)| ex.paths.as_slice()).collect();
        shared_files(&root_dir, &lists)
    };
    let mut again: Vec<usize> = shared
        .iter()
        .filter_map(|(_, who)| who.last().copied())
        .collect();
    again.sort_unstable();
    again.dedup();
    for i in again {
        let (deb, limit) = &debs[i];
        crate::deb::extract_data_with(deb, root, limit)
            .map_err(|e| format!("{}: {e}", named(&done[i].0.control, limit)))?;
    }
    for (path, who) in &shared {
        for &i in &who[..who.len() - 1] {
            done[i].1.paths.retain(|p| p != path);
        }
    }
    let pkgs: Vec<Unpacked> = done
        .into_iter()
        .map(|(control, ex)| Unpacked {
            conffile_md5: conffile_sums(&root_dir, &control),
            control,
            paths: ex.paths,
        })
        .collect();
    for d in [
        "var/lib/dpkg/info",
        "var/lib/dpkg/updates",
        "var/lib/dpkg/triggers",
        "var/lib/dpkg/alternatives",
    ] {
        root_dir
            .create_dir_all(Path::new(d), 0o755)
            .map_err(|e| e.to_string())?;
    }
    for f in register::database(&pkgs) {
        root_dir
            .write(Path::new(&f.path), &f.contents, f.mode)
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deb::DebBuilder;

    fn deb(dir: &Path, name: &str, files: &[(&str, &str)], conffile: Option<&str>) -> PathBuf {
        let mut b = DebBuilder::new(vec![
            ("Package".into(), name.into()),
            ("Version".into(), "1:1.0-1".into()),
            ("Architecture".into(), "all".into()),
            ("Maintainer".into(), "T <t@example.org>".into()),
            ("Description".into(), format!("{name}\nlong")),
        ]);
        for (path, text) in files {
            b.add_file(path, 0o644, text.as_bytes().to_vec());
        }
        b.add_control_file("postinst", 0o755, b"#!/bin/sh\n".to_vec());
        if let Some(c) = conffile {
            b.add_control_file("conffiles", 0o644, format!("{c}\n").into_bytes());
        }
        let path = dir.join(format!("{}.deb", name.replace('/', "_")));
        b.write_to(std::fs::File::create(&path).unwrap()).unwrap();
        path
    }

    #[test]
    fn packages_are_unpacked_in_parallel_and_registered_as_dpkg_would() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("root");
        std::fs::create_dir(&root).unwrap();
        let limit = |n: &str| ExtractLimit {
            package: n.into(),
            installed_size_kib: None,
        };
        let debs: Vec<(PathBuf, ExtractLimit)> = [
            (
                "aa",
                vec![("etc/a.conf", "a=1\n"), ("usr/share/x", "from a\n")],
                Some("/etc/a.conf"),
            ),
            (
                "bb",
                vec![("usr/share/b", "b\n"), ("usr/share/x", "from b\n")],
                None,
            ),
            ("cc", vec![("usr/share/c", "c\n")], None),
        ]
        .into_iter()
        .map(|(n, files, conf)| (deb(t.path(), n, &files, conf), limit(n)))
        .collect();
        unpack_and_register(&root, &debs).unwrap();
        let read = |p: &str| std::fs::read_to_string(root.join(p)).unwrap();
        // A file two packages ship is the later one's, in its list only.
        assert_eq!(read("usr/share/x"), "from b\n");
        assert!(!read("var/lib/dpkg/info/aa.list").contains("/usr/share/x\n"));
        assert!(read("var/lib/dpkg/info/bb.list").contains("/usr/share/x\n"));
        assert!(read("var/lib/dpkg/info/cc.list").starts_with("/.\n"));
        assert_eq!(read("var/lib/dpkg/info/aa.postinst"), "#!/bin/sh\n");
        let status = read("var/lib/dpkg/status");
        assert_eq!(status.matches("Status: install ok unpacked\n").count(), 3);
        let md5 = hex::encode(Md5::digest(b"a=1\n"));
        assert!(
            status.contains(&format!("Conffiles:\n /etc/a.conf {md5}\n")),
            "{status}"
        );
    }

    #[test]
    fn a_bad_package_is_named_as_dpkg_names_it() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("root");
        std::fs::create_dir(&root).unwrap();
        // Unpacks to more than Installed-Size (0 KiB) + 16 MiB allows.
        let big = deb(
            t.path(),
            "big",
            &[("usr/share/big", &"x".repeat(17 << 20))],
            None,
        );
        let limit = ExtractLimit {
            package: "big".into(),
            installed_size_kib: Some(0),
        };
        let e = unpack_and_register(&root, &[(big, limit)]).unwrap_err();
        assert!(
            e.starts_with("big_1%3a1.0-1_all.deb: big: unpacks to more than"),
            "{e}"
        );
        let missing = ExtractLimit {
            package: "nope".into(),
            installed_size_kib: None,
        };
        let e = unpack_and_register(&root, &[(t.path().join("nope.deb"), missing)]).unwrap_err();
        assert!(e.starts_with("nope: "), "{e}");
    }

    /// `n` bytes no compression makes much smaller.
    fn noise(n: usize) -> Vec<u8> {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    #[test]
    fn the_error_that_stopped_a_parallel_unpack_is_the_one_reported() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("root");
        std::fs::create_dir(&root).unwrap();
        let limit = |n: &str, kib| ExtractLimit {
            package: n.into(),
            installed_size_kib: kib,
        };
        // Unpacks to more than Installed-Size (0 KiB) + 16 MiB allows, and
        // is the largest .deb: the only worker takes it first, and the
        // packages after it are never started.
        let mut b = DebBuilder::new(vec![
            ("Package".into(), "big".into()),
            ("Version".into(), "1:1.0-1".into()),
            ("Architecture".into(), "all".into()),
        ]);
        b.add_file("usr/share/big", 0o644, b"x".repeat(17 << 20));
        b.add_file("usr/share/noise", 0o644, noise(256 << 10));
        let big = t.path().join("big.deb");
        b.write_to(std::fs::File::create(&big).unwrap()).unwrap();
        let mut debs = vec![(deb(t.path(), "base", &[], None), limit("base", None))];
        for n in ["aa", "bb"] {
            debs.push((
                deb(t.path(), n, &[("usr/share/n", n)], None),
                limit(n, None),
            ));
        }
        debs.push((big, limit("big", Some(0))));
        debs.push((deb(t.path(), "cc", &[], None), limit("cc", None)));
        let e = extract_all(&root, &debs, 1).unwrap_err();
        assert!(
            e.starts_with("big_1%3a1.0-1_all.deb: big: unpacks to more than 16777216 bytes"),
            "{e}"
        );
        // With as many workers as the machine has, the same.
        let e = unpack_and_register(&root, &debs).unwrap_err();
        assert!(
            e.starts_with("big_1%3a1.0-1_all.deb: big: unpacks to more than 16777216 bytes"),
            "{e}"
        );
    }

    #[test]
    fn an_entry_bomb_is_refused_naming_the_package() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("root");
        std::fs::create_dir(&root).unwrap();
        let mut b = DebBuilder::new(vec![
            ("Package".into(), "bomb".into()),
            ("Version".into(), "1".into()),
            ("Architecture".into(), "all".into()),
            ("Installed-Size".into(), "0".into()),
        ]);
        for i in 0..10_000 {
            b.add_file(&format!("usr/share/bomb/{i}"), 0o644, Vec::new());
        }
        let bomb = t.path().join("bomb.deb");
        b.write_to(std::fs::File::create(&bomb).unwrap()).unwrap();
        let debs = [
            (
                deb(t.path(), "base", &[], None),
                ExtractLimit {
                    package: "base".into(),
                    installed_size_kib: None,
                },
            ),
            (
                bomb,
                ExtractLimit {
                    package: "bomb".into(),
                    installed_size_kib: Some(0),
                },
            ),
        ];
        let e = unpack_and_register(&root, &debs).unwrap_err();
        assert_eq!(
            e,
            "bomb_1_all.deb: bomb: has more than 10000 entries (files, directories, links), \
             more than its Installed-Size of 0 KiB allows (2 entries per KiB and 10000 more)"
        );
        assert!(!root.join("var/lib/dpkg/status").exists());
    }

    #[test]
    fn a_control_member_never_replaces_the_file_list() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("root");
        std::fs::create_dir(&root).unwrap();
        let limit = |n: &str| ExtractLimit {
            package: n.into(),
            installed_size_kib: None,
        };
        let build = |name: &str, member: &str| {
            let mut b = DebBuilder::new(vec![
                ("Package".into(), name.into()),
                ("Version".into(), "1".into()),
                ("Architecture".into(), "all".into()),
            ]);
            b.add_file(&format!("usr/share/doc/{name}"), 0o644, b"x\n".to_vec());
            b.add_control_file(member, 0o644, b"/etc/passwd\n".to_vec());
            let path = t.path().join(format!("{name}.deb"));
            b.write_to(std::fs::File::create(&path).unwrap()).unwrap();
            (path, limit(name))
        };
        // A member `list` would claim /etc/passwd for the package.
        let e = unpack_and_register(&root, &[build("evil", "list")]).unwrap_err();
        assert!(e.starts_with("evil: "), "{e}");
        assert!(
            e.ends_with(
                "control member entry \"./list\" is not acceptable: \
                 dpkg keeps its own list of the package's files under this name"
            ),
            "{e}"
        );
        assert!(!root.join("var/lib/dpkg/info/evil.list").exists());
        // `bb.list` of package `aa` would be package `aa.bb`'s list: ignored,
        // as dpkg ignores a member whose name has a dot.
        unpack_and_register(&root, &[build("aa.bb", "shlibs"), build("aa", "bb.list")]).unwrap();
        let read = |p: &str| std::fs::read_to_string(root.join(p)).unwrap();
        assert_eq!(
            read("var/lib/dpkg/info/aa.bb.list"),
            "/.\n/usr\n/usr/share\n/usr/share/doc\n/usr/share/doc/aa.bb\n"
        );
        assert_eq!(
            read("var/lib/dpkg/info/aa.list"),
            "/.\n/usr\n/usr/share\n/usr/share/doc\n/usr/share/doc/aa\n"
        );
        assert_eq!(read("var/lib/dpkg/info/aa.bb.shlibs"), "/etc/passwd\n");
    }

    #[test]
    fn a_deb_that_is_not_the_package_its_index_names_is_refused() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("root");
        std::fs::create_dir(&root).unwrap();
        let limit = |n: &str| ExtractLimit {
            package: n.into(),
            installed_size_kib: None,
        };
        // Its name would be a path in dpkg's database.
        let sneaky = deb(t.path(), "../../../etc/x", &[], None);
        let e = unpack_and_register(&root, &[(sneaky, limit("x"))]).unwrap_err();
        assert!(
            e.starts_with("x: the .deb calls itself '../../../etc/x'"),
            "{e}"
        );
        let other = deb(t.path(), "other", &[("usr/share/o", "o\n")], None);
        let e = unpack_and_register(&root, &[(other, limit("wanted"))]).unwrap_err();
        assert!(e.contains("calls itself 'other'"), "{e}");
        assert!(!root.join("usr/share/o").exists());
        assert!(!root.join("var/lib/dpkg/info/other.list").exists());
    }
}
