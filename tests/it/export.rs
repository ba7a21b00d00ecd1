//! `export` to each format (issue 15): tarballs compressed as their names
//! say, read back and compared with the root entry by entry; squashfs read
//! back with sqfs2tar; an ext4 image of the size asked for; apt's lists and
//! cache left out unless asked for; a missing output directory said as
//! such. The root is a small tree made here (as root: owners other than
//! the caller's), exported with `--dir`.

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::{have_command, require, require_root, stderr, zchroot};

/// What an entry is, as a tar and a tree both say it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    kind: char,
    uid: u64,
    gid: u64,
    mode: u32,
}

const APT_FILES: [&str; 3] = [
    "var/lib/apt/lists/deb.debian.org_debian_dists_trixie_InRelease",
    "var/cache/apt/pkgcache.bin",
    "var/cache/apt/archives/hello_2.10-5_arm64.deb",
];

/// A root with files, a hard link, a symlink, an owner other than root,
/// and apt's lists and cache.
fn make_root(dir: &Path) -> PathBuf {
    let r = dir.join("root");
    for d in [
        "etc",
        "usr/bin",
        "var/lib/apt/lists/partial",
        "var/cache/apt/archives/partial",
    ] {
        std::fs::create_dir_all(r.join(d)).unwrap();
    }
    std::fs::write(r.join("etc/hostname"), "board\n").unwrap();
    std::fs::write(r.join("usr/bin/tool"), "#!/bin/sh\n".repeat(1000)).unwrap();
    std::fs::hard_link(r.join("usr/bin/tool"), r.join("usr/bin/tool2")).unwrap();
    std::os::unix::fs::symlink("usr/bin", r.join("bin")).unwrap();
    std::fs::write(r.join("etc/secret"), "s").unwrap();
    std::os::unix::fs::chown(r.join("etc/secret"), Some(1000), Some(1001)).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(r.join("etc/secret"), std::fs::Permissions::from_mode(0o600)).unwrap();
    for f in APT_FILES {
        std::fs::write(r.join(f), "apt").unwrap();
    }
    r
}

/// The entries of the tree at `root` (not the root itself), as a tar of it should list them.
fn tree_entries(root: &Path, apt: bool) -> BTreeMap<String, Entry> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let m = std::fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            if m.is_dir() {
                stack.push(p.clone());
            } else if !apt && APT_FILES.contains(&rel.as_str()) {
                continue;
            }
            let kind = if m.is_dir() {
                'd'
            } else if m.file_type().is_symlink() {
                'l'
            } else {
                '-'
            };
            let mode = if kind == 'l' { 0 } else { m.mode() & 0o7777 };
            out.insert(
                rel,
                Entry {
                    kind,
                    uid: m.uid() as u64,
                    gid: m.gid() as u64,
                    mode,
                },
            );
        }
    }
    out
}

/// The entries of a tar stream, names as in the tree (hard links as files).
fn tar_entries(tar: impl Read) -> BTreeMap<String, Entry> {
    let mut out = BTreeMap::new();
    let mut a = tar::Archive::new(tar);
    for e in a.entries().unwrap() {
        let e = e.unwrap();
        let h = e.header();
        let name = e.path().unwrap().display().to_string();
        let name = name
            .trim_start_matches("./")
            .trim_end_matches('/')
            .to_string();
        if name.is_empty() || name == "." {
            continue;
        }
        let kind = match h.entry_type() {
            tar::EntryType::Directory => 'd',
            tar::EntryType::Symlink => 'l',
            _ => '-',
        };
        let mode = if kind == 'l' {
            0
        } else {
            h.mode().unwrap() & 0o7777
        };
        out.insert(
            name,
            Entry {
                kind,
                uid: h.uid().unwrap(),
                gid: h.gid().unwrap(),
                mode,
            },
        );
    }
    out
}

fn export(home: &Path, root: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "-q",
        "export",
        "--dir",
        root.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    zchroot(home, &args)
}

#[test]
fn each_compression_round_trips_and_apt_lists_stay_out_unless_asked() {
    if !require_root("the test root has files of other owners") {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let root = make_root(d.path());
    let home = d.path().join("home");
    let want = tree_entries(&root, false);
    assert!(want.contains_key("etc/secret") && want.contains_key("var/lib/apt/lists/partial"));
    for (name, magic) in [
        ("r.tar", &b""[..]),
        ("r.tar.gz", &[0x1f, 0x8b][..]),
        ("r.tar.xz", &[0xfd, b'7', b'z', b'X', b'Z'][..]),
        ("r.tar.zst", &[0x28, 0xb5, 0x2f, 0xfd][..]),
    ] {
        let out = d.path().join(name);
        let o = export(&home, &root, &out, &[]);
        assert!(o.status.success(), "{name}: {}", stderr(&o));
        let bytes = std::fs::read(&out).unwrap();
        assert!(
            bytes.starts_with(magic),
            "{name} is not compressed as named"
        );
        let plain: Box<dyn Read> = match name.rsplit('.').next().unwrap() {
            "gz" => Box::new(flate2::read::GzDecoder::new(&bytes[..])),
            "xz" => Box::new(liblzma::read::XzDecoder::new(&bytes[..])),
            "zst" => Box::new(ruzstd::decoding::StreamingDecoder::new(&bytes[..]).unwrap()),
            _ => Box::new(&bytes[..]),
        };
        assert_eq!(tar_entries(plain), want, "{name}");
    }
    // Asked for: apt's lists and cache are in.
    let out = d.path().join("with-lists.tar");
    let o = export(&home, &root, &out, &["--include-apt-lists"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let got = tar_entries(std::fs::File::open(&out).unwrap());
    assert_eq!(got, tree_entries(&root, true));
    // --format wins over the name.
    let out = d.path().join("forced.tar.gz");
    let o = export(&home, &root, &out, &["--format", "tar"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        std::fs::read(&out).unwrap().starts_with(&[0x1f, 0x8b]),
        "still compressed as named"
    );
}

#[test]
fn squashfs_reads_back_as_the_root() {
    if !require_root("the test root has files of other owners")
        || !require(
            have_command("tar2sqfs") && have_command("sqfs2tar"),
            "squashfs-tools-ng (tar2sqfs, sqfs2tar)",
            "apt-get install squashfs-tools-ng",
        )
    {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let root = make_root(d.path());
    let home = d.path().join("home");
    for (name, extra) in [
        ("r.sqfs", &[][..]),
        ("r.tar", &["--format", "squashfs"][..]),
    ] {
        let out = d.path().join(name);
        let o = export(&home, &root, &out, extra);
        assert!(o.status.success(), "{name}: {}", stderr(&o));
        assert!(
            std::fs::read(&out).unwrap().starts_with(b"hsqs"),
            "{name} is no squashfs"
        );
        let back = Command::new("sqfs2tar").arg(&out).output().unwrap();
        assert!(
            back.status.success(),
            "{}",
            String::from_utf8_lossy(&back.stderr)
        );
        assert_eq!(
            tar_entries(&back.stdout[..]),
            tree_entries(&root, false),
            "{name}"
        );
    }
}

#[test]
fn an_ext4_image_has_the_size_asked_for_and_no_apt_lists() {
    if !require_root("the test root has files of other owners")
        || !require(
            have_command("mke2fs") && have_command("dumpe2fs") && have_command("debugfs"),
            "e2fsprogs (mke2fs, dumpe2fs, debugfs)",
            "apt-get install e2fsprogs",
        )
    {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let root = make_root(d.path());
    let home = d.path().join("home");
    let out = d.path().join("r.img");
    let o = export(&home, &root, &out, &["--size", "96M"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let h = Command::new("dumpe2fs")
        .arg("-h")
        .arg(&out)
        .output()
        .unwrap();
    let h = String::from_utf8_lossy(&h.stdout).into_owned();
    let field = |k: &str| -> u64 {
        h.lines()
            .find_map(|l| l.strip_prefix(k))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {k} in {h}"))
    };
    assert_eq!(
        field("Block count:") * field("Block size:"),
        96 << 20,
        "{h}"
    );
    assert_eq!(std::fs::metadata(&out).unwrap().len(), 96 << 20);
    let ls = |dir: &str| {
        let o = Command::new("debugfs")
            .arg("-R")
            .arg(format!("ls -p {dir}"))
            .arg(&out)
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let lists = ls("/var/lib/apt/lists");
    assert!(lists.contains("/partial/"), "{lists}");
    assert!(!lists.contains("InRelease"), "{lists}");
    assert!(!ls("/var/cache/apt").contains("pkgcache.bin"));
    assert!(!ls("/var/cache/apt/archives").contains(".deb"));
    // Owners, modes and hard links as in the tree (`ls -p`:
    // /inode/mode/uid/gid/name/size/).
    let etc = ls("/etc");
    assert!(etc.contains("/100600/1000/1001/secret/"), "{etc}");
    let bin = ls("/usr/bin");
    let ino = |name: &str| {
        bin.lines()
            .find(|l| l.contains(&format!("/{name}/")))
            .and_then(|l| l.split('/').nth(1))
            .unwrap_or_else(|| panic!("no {name} in {bin}"))
            .to_string()
    };
    assert_eq!(ino("tool"), ino("tool2"), "{bin}");
    // Too small for the root: said before mke2fs is run.
    std::fs::write(root.join("big"), vec![7u8; 3 << 20]).unwrap();
    let o = export(&home, &root, &d.path().join("small.img"), &["--size", "2M"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("an image of 2 MiB cannot hold them"),
        "{}",
        stderr(&o)
    );
    assert!(!d.path().join("small.img").exists());
    // The private copy mke2fs read is gone with the export, made or failed.
    let left: Vec<_> = std::fs::read_dir(d.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn bad_output_and_size_say_what_is_wrong() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("root");
    std::fs::create_dir_all(root.join("etc")).unwrap();
    let home = d.path().join("home");
    let missing = d.path().join("no/such/dir");
    let o = export(&home, &root, &missing.join("r.tar.gz"), &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains(&format!(
            "the output directory {} does not exist",
            missing.display()
        )),
        "{}",
        stderr(&o)
    );
    assert!(
        stderr(&o).contains("help: create it first"),
        "{}",
        stderr(&o)
    );
    assert!(!missing.exists());
    // --size for a tarball: refused, nothing written.
    let o = export(&home, &root, &d.path().join("r.tar"), &["--size", "2G"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("--size is for ext4 images only"),
        "{}",
        stderr(&o)
    );
    assert!(!d.path().join("r.tar").exists());
    // A size that is no size: an argument error.
    let o = export(&home, &root, &d.path().join("r.img"), &["--size", "2X"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("a size is a number with K, M, G or T"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn a_rootless_export_writes_owners_as_inside_in_each_format() {
    if !require_root("to make a root owned by the test user's ids")
        || !require(
            have_command("tar2sqfs") && have_command("sqfs2tar"),
            "squashfs-tools-ng (tar2sqfs, sqfs2tar)",
            "apt-get install squashfs-tools-ng",
        )
    {
        return;
    }
    let Some(u) = crate::common::require_test_user() else {
        return;
    };
    let d = tempfile::tempdir().unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    crate::common::let_others_reach(d.path());
    let root = make_root(d.path());
    // As a rootless create leaves it: the user's uid is root inside, its
    // subordinate ids the others (etc/secret is 1000:1001 inside).
    let o = Command::new("chown")
        .args(["-R", "-h", &format!("{}:", u.name)])
        .arg(&root)
        .status()
        .unwrap();
    assert!(o.success());
    std::os::unix::fs::lchown(
        root.join("etc/secret"),
        Some(u.subuid + 999),
        Some(u.subgid + 1000),
    )
    .unwrap();
    let outdir = d.path().join("out");
    std::fs::create_dir(&outdir).unwrap();
    let _ = Command::new("chown").arg(&u.name).arg(&outdir).status();
    let home = d.path().join("home");
    std::fs::create_dir(&home).unwrap();
    let _ = Command::new("chown").arg(&u.name).arg(&home).status();
    let mut want = tree_entries(&root, false);
    for (name, e) in want.iter_mut() {
        (e.uid, e.gid) = if name == "etc/secret" {
            (1000, 1001)
        } else {
            (0, 0)
        };
    }
    for name in ["r.tar.zst", "r.sqfs"] {
        let out = outdir.join(name);
        let o = crate::common::zchroot_as(
            &u.name,
            &home,
            &[
                "-q",
                "export",
                "--dir",
                root.to_str().unwrap(),
                "-o",
                out.to_str().unwrap(),
            ],
        );
        assert!(o.status.success(), "{name}: {}", stderr(&o));
        let tar = match name {
            "r.sqfs" => {
                let back = Command::new("sqfs2tar").arg(&out).output().unwrap();
                assert!(back.status.success());
                back.stdout
            }
            _ => {
                let mut v = Vec::new();
                let f = std::fs::File::open(&out).unwrap();
                ruzstd::decoding::StreamingDecoder::new(f)
                    .unwrap()
                    .read_to_end(&mut v)
                    .unwrap();
                v
            }
        };
        assert_eq!(tar_entries(&tar[..]), want, "{name}");
    }
}

/// renameat2's number here, for perl's `syscall` (no tool in Debian 12
/// exchanges two names: coreutils' `mv --exchange` came in 9.5).
fn renameat2_nr() -> Option<u32> {
    match std::env::consts::ARCH {
        "x86_64" => Some(316),
        "aarch64" | "riscv64" | "loongarch64" => Some(276),
        "x86" => Some(353),
        "arm" => Some(382),
        "powerpc64" => Some(357),
        "s390x" => Some(347),
        _ => None,
    }
}

/// As `user`, swaps the names `d` and `s` in `dir` with
/// renameat2(RENAME_EXCHANGE) in a loop for `secs` seconds, then stops by
/// itself and prints how many swaps it made. It pauses 0.2 ms between
/// swaps, not to take a whole core from the machine: thousands of swaps a
/// second still land in the middle of every export.
fn swapper(user: &str, dir: &Path, secs: u32) -> std::process::Child {
    const SWAP: &str = r#"
        my ($nr, $dir, $secs, $pause) = @ARGV;
        chdir $dir or die "chdir $dir: $!\n";
        my ($a, $b) = ("d", "s");
        my $end = time + $secs;
        my $n = 0;
        while (time < $end) {
            syscall($nr, -100, $a, -100, $b, 2) == 0 or die "renameat2: $!\n";
            $n++;
            select(undef, undef, undef, $pause);
        }
        print "$n\n";
    "#;
    Command::new("runuser")
        .args(["-u", user, "--", "perl", "-e", SWAP])
        .arg(renameat2_nr().unwrap().to_string())
        .arg(dir)
        .arg(secs.to_string())
        .arg("0.0002")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

/// The swapper's count of swaps (it must have swapped, or the test proves
/// nothing).
fn swapped(child: std::process::Child) -> u64 {
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "swapper: {}", stderr(&o));
    let n = String::from_utf8_lossy(&o.stdout).trim().parse().unwrap();
    assert!(n > 0, "the swapper made no swap");
    n
}

/// A directory of the test user's in `root` (at `rel`) where `d` is a
/// directory of files f0..f9 and `s` a symlink to a directory of the same
/// names holding `marker` (root's, mode 0700, outside the root): as each
/// swap of `d` and `s` leaves it, `d` is the symlink half the time.
fn plant_swap(root: &Path, rel: &str, user: &crate::common::TestUser, marker: &str) -> PathBuf {
    let secret = root.parent().unwrap().join("secret");
    std::fs::create_dir(&secret).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o700)).unwrap();
    let dir = root.join(rel);
    std::fs::create_dir_all(dir.join("d")).unwrap();
    for i in 0..10 {
        std::fs::write(secret.join(format!("f{i}")), marker).unwrap();
        std::fs::write(dir.join(format!("d/f{i}")), "mine").unwrap();
    }
    std::os::unix::fs::symlink(&secret, dir.join("s")).unwrap();
    let o = Command::new("chown")
        .args(["-R", "-h", &format!("{}:", user.name)])
        .arg(&dir)
        .status()
        .unwrap();
    assert!(o.success());
    dir
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[test]
fn a_tree_of_another_user_is_refused_while_they_swap_it() {
    // Issue 23, finding 4: the owner of a --dir tree swapped a directory
    // with a symlink to /etc while root exported it, and /etc/shadow went
    // into the image.
    if !require_root("the tree belongs to another user")
        || !require(
            have_command("perl") && renameat2_nr().is_some(),
            "perl, on an architecture whose renameat2 number the test knows",
            "apt-get install perl-base",
        )
    {
        return;
    }
    let Some(u) = crate::common::require_test_user() else {
        return;
    };
    let d = tempfile::tempdir().unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    crate::common::let_others_reach(d.path());
    let root = make_root(d.path());
    let marker = "SECRET-of-root-5f0c2e";
    let dir = plant_swap(&root, "etc/x", &u, marker);
    let o = Command::new("chown")
        .args(["-R", "-h", &format!("{}:", u.name)])
        .arg(&root)
        .status()
        .unwrap();
    assert!(o.success());
    let home = d.path().join("home");
    let racer = swapper(&u.name, &dir, 3);
    let mut tries = 0;
    let start = std::time::Instant::now();
    while start.elapsed() < std::time::Duration::from_secs(2) {
        tries += 1;
        for name in ["r.tar", "r.img"] {
            let out = d.path().join(name);
            let o = export(&home, &root, &out, &[]);
            let got = std::fs::read(&out).unwrap_or_default();
            assert!(
                !contains(&got, marker),
                "try {tries}: the secret is in {name}"
            );
            assert_eq!(o.status.code(), Some(1), "try {tries}: {name} was written");
            let err = stderr(&o);
            assert!(
                err.contains(&format!("belongs to uid {}, not to uid 0", u.uid))
                    && err.contains("\nhelp: export a tree of your own"),
                "{err}"
            );
            assert!(!out.exists());
        }
    }
    swapped(racer);
}

#[test]
fn a_directory_swapped_for_a_symlink_is_never_followed() {
    // A root of root's with a directory another user can write (a home,
    // or /tmp): what they swap in is archived as the symlink it is.
    if !require_root("a second user swaps names in the root")
        || !require(
            have_command("perl") && renameat2_nr().is_some(),
            "perl, on an architecture whose renameat2 number the test knows",
            "apt-get install perl-base",
        )
    {
        return;
    }
    let Some(u) = crate::common::require_test_user() else {
        return;
    };
    let d = tempfile::tempdir().unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    crate::common::let_others_reach(d.path());
    let root = make_root(d.path());
    let marker = "SECRET-of-root-9a41d7";
    let dir = plant_swap(&root, "home/ci", &u, marker);
    let home = d.path().join("home");
    let mke2fs = have_command("mke2fs");
    let racer = swapper(&u.name, &dir, 10);
    let (mut tries, mut symlinks, mut dirs) = (0, 0, 0);
    let start = std::time::Instant::now();
    while start.elapsed() < std::time::Duration::from_secs(8) && tries < 60 {
        tries += 1;
        // Every third try an ext4 image (mke2fs reads a private copy).
        let name = if mke2fs && tries % 3 == 0 {
            "r.img"
        } else {
            "r.tar"
        };
        let out = d.path().join(name);
        // A small image: it is searched for the secret byte by byte.
        let extra: &[&str] = if name == "r.img" {
            &["--size", "4M"]
        } else {
            &[]
        };
        let o = export(&home, &root, &out, extra);
        let err = stderr(&o);
        if !o.status.success() {
            // The only failure allowed: the tree kept changing.
            assert!(err.contains("kept changing while it was read"), "{err}");
            continue;
        }
        let got = std::fs::read(&out).unwrap();
        assert!(
            !contains(&got, marker),
            "try {tries}: the secret is in {name}"
        );
        if name == "r.tar" {
            let e = tar_entries(&got[..]);
            match e.get("home/ci/d").map(|e| e.kind) {
                Some('l') => symlinks += 1,
                Some('d') => dirs += 1,
                _ => {}
            }
        }
        std::fs::remove_file(&out).unwrap();
    }
    let n = swapped(racer);
    assert!(
        symlinks > 0 && dirs > 0,
        "{tries} tries, {n} swaps: d was a symlink {symlinks} times, a directory {dirs} times"
    );
}
