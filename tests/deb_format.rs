//! The .deb format end to end: packages written by `DebBuilder` are accepted by
//! dpkg-deb, packages built by dpkg-deb are read and extracted, and hostile
//! packages cannot write outside the extraction root.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use zchroot::deb::ar::ArWriter;
use zchroot::deb::{
    control_files, extract_data, extract_data_full, read_control, Compression, DebBuilder,
    DebError, SkippedKind,
};

const MTIME: u64 = 1_700_000_000;

fn fields() -> Vec<(String, String)> {
    [
        ("Package", "hello-modules"),
        ("Version", "1.2-3"),
        ("Architecture", "arm64"),
        ("Maintainer", "Nobody <nobody@example.org>"),
        ("Depends", "libc6 (>= 2.36)"),
        ("Section", "kernel"),
        ("Priority", "optional"),
        (
            "Description",
            "test package\nA package written by the tests.\n\nSecond paragraph.",
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

fn long_path() -> String {
    format!("usr/share/doc/hello-modules/{}/deep.txt", "x".repeat(110))
}

fn sample(compression: Compression) -> DebBuilder {
    let mut b = DebBuilder::new(fields())
        .mtime(MTIME)
        .compression(compression);
    b.add_file(
        "usr/lib/modules/6.1.0-arm64/extra/hello.ko",
        0o644,
        b"\x7fELF fake module".to_vec(),
    );
    b.add_file("usr/bin/hello", 0o755, b"#!/bin/sh\necho hello\n".to_vec());
    b.add_file("usr/bin/suid-helper", 0o4755, b"setuid".to_vec());
    b.add_file("etc/hello.conf", 0o644, b"greeting=hi\n".to_vec());
    b.add_file(&long_path(), 0o644, b"deep\n".to_vec());
    b.add_symlink("usr/bin/hi", "hello");
    b.add_symlink("usr/lib/hello-abs", "/usr/bin/hello");
    b.add_dir("var/lib/hello", 0o700);
    b.add_control_file(
        "postinst",
        0o755,
        b"#!/bin/sh\nset -e\ndepmod -a || true\n".to_vec(),
    );
    b.add_control_file("conffiles", 0o644, b"/etc/hello.conf\n".to_vec());
    b
}

fn write_deb(dir: &Path, name: &str, b: &DebBuilder) -> PathBuf {
    let path = dir.join(name);
    let mut out = Vec::new();
    b.write_to(&mut out).unwrap();
    fs::write(&path, out).unwrap();
    path
}

fn dpkg_deb(args: &[&str]) -> String {
    let out = Command::new("dpkg-deb")
        .args(args)
        .output()
        .expect("dpkg-deb must be installed");
    assert!(
        out.status.success(),
        "dpkg-deb {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// type, mode, and contents or link target of every path below `dir`.
fn tree(dir: &Path) -> BTreeMap<String, String> {
    fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        for entry in fs::read_dir(dir).unwrap() {
            let entry = entry.unwrap();
            let path = entry.path();
            let rel = path
                .strip_prefix(base)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let meta = fs::symlink_metadata(&path).unwrap();
            let mode = meta.permissions().mode() & 0o7777;
            let desc = if meta.file_type().is_symlink() {
                format!("link -> {}", fs::read_link(&path).unwrap().display())
            } else if meta.is_dir() {
                walk(base, &path, out);
                format!("dir {mode:o}")
            } else {
                let data = fs::read(&path).unwrap();
                format!("file {mode:o} {}", String::from_utf8_lossy(&data))
            };
            out.insert(rel, desc);
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

#[test]
fn written_packages_are_accepted_by_dpkg_deb_and_read_back() {
    for compression in [Compression::Xz, Compression::Gzip] {
        let tmp = tempfile::tempdir().unwrap();
        let deb = write_deb(tmp.path(), "hello.deb", &sample(compression));

        // The ar members dpkg-deb expects, in order.
        let members = Command::new("ar").arg("t").arg(&deb).output();
        if let Ok(out) = members {
            if out.status.success() {
                let suffix = match compression {
                    Compression::Xz => "xz",
                    Compression::Gzip => "gz",
                };
                assert_eq!(
                    String::from_utf8_lossy(&out.stdout),
                    format!("debian-binary\ncontrol.tar.{suffix}\ndata.tar.{suffix}\n")
                );
            }
        }

        let info = dpkg_deb(&["--info", deb.to_str().unwrap()]);
        assert!(info.contains(" Package: hello-modules\n"), "{info}");
        assert!(info.contains(" Installed-Size: "), "{info}");
        assert!(info.contains("postinst"), "{info}");
        assert!(info.contains("md5sums"), "{info}");
        let field = dpkg_deb(&["--field", deb.to_str().unwrap(), "Version"]);
        assert_eq!(field, "1.2-3\n");

        let contents = dpkg_deb(&["--contents", deb.to_str().unwrap()]);
        let lines: Vec<&str> = contents.lines().collect();
        assert!(lines[0].starts_with("drwxr-xr-x root/root"), "{contents}");
        assert!(lines[0].ends_with(" ./"), "{contents}");
        assert!(
            contents
                .contains("-rwsr-xr-x root/root         6 2023-11-14 22:13 ./usr/bin/suid-helper"),
            "{contents}"
        );
        assert!(contents.contains("./usr/bin/hi -> hello"), "{contents}");
        assert!(
            contents.contains(&format!("./{}", long_path())),
            "{contents}"
        );
        assert!(contents.contains("drwx------ root/root"), "{contents}");

        // dpkg-deb -x and our extraction produce the same tree.
        let by_dpkg = tmp.path().join("by-dpkg");
        dpkg_deb(&["-x", deb.to_str().unwrap(), by_dpkg.to_str().unwrap()]);
        let ours = tmp.path().join("ours");
        fs::create_dir(&ours).unwrap();
        let paths = extract_data(&deb, &ours).unwrap();
        let expected_tree = tree(&by_dpkg);
        assert_eq!(tree(&ours), expected_tree);
        assert_eq!(
            expected_tree["usr/bin/suid-helper"], "file 4755 setuid",
            "setuid bit kept"
        );
        assert_eq!(expected_tree["usr/bin/hi"], "link -> hello");
        assert_eq!(expected_tree["var/lib/hello"], "dir 700");

        // The list, as dpkg would write PKG.list.
        assert_eq!(paths[0], "/.");
        for p in [
            "/etc",
            "/etc/hello.conf",
            "/usr",
            "/usr/bin",
            "/usr/bin/hello",
            "/usr/bin/hi",
            "/usr/lib/modules/6.1.0-arm64/extra/hello.ko",
            "/var/lib/hello",
        ] {
            assert!(paths.iter().any(|x| x == p), "{p} missing from {paths:?}");
        }
        assert!(paths.iter().all(|p| !p.ends_with('/')), "{paths:?}");
        // Parents come before children.
        let pos = |p: &str| paths.iter().position(|x| x == p).unwrap();
        assert!(pos("/usr") < pos("/usr/bin") && pos("/usr/bin") < pos("/usr/bin/hello"));

        // mtimes as given.
        let meta = fs::symlink_metadata(ours.join("usr/bin/hello")).unwrap();
        assert_eq!(meta.mtime() as u64, MTIME);
        let meta = fs::symlink_metadata(ours.join("usr/bin")).unwrap();
        assert_eq!(meta.mtime() as u64, MTIME);
        let meta = fs::symlink_metadata(ours.join("usr/bin/hi")).unwrap();
        assert_eq!(meta.mtime() as u64, MTIME);

        // Control data.
        let control = read_control(&deb).unwrap();
        assert!(control.starts_with("Package: hello-modules\nVersion: 1.2-3\nArchitecture: arm64\nMaintainer: Nobody <nobody@example.org>\nInstalled-Size: "), "{control}");
        assert!(control.ends_with(
            "Description: test package\n A package written by the tests.\n .\n Second paragraph.\n"
        ), "{control}");
        let files = control_files(&deb).unwrap();
        assert_eq!(files.control, control);
        let names: Vec<&str> = files.files.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["conffiles", "md5sums", "postinst"]);
        let postinst = files.get("postinst").unwrap();
        assert_eq!(postinst.mode, 0o755);
        assert!(postinst.contents.starts_with(b"#!/bin/sh"));
        assert_eq!(files.maintainer_scripts().count(), 1);
        assert_eq!(files.conffiles()[0].path, "/etc/hello.conf");

        // md5sums lists every regular file, and matches md5sum(1).
        let sums = files.md5sums();
        assert_eq!(sums.len(), 5, "{sums:?}");
        for (sum, path) in &sums {
            let out = Command::new("md5sum")
                .arg(ours.join(path))
                .output()
                .unwrap();
            let want = String::from_utf8(out.stdout).unwrap();
            assert_eq!(want.split_whitespace().next().unwrap(), sum, "{path}");
        }
    }
}

#[test]
fn output_is_byte_identical_across_runs_and_insertion_orders() {
    let a = {
        let mut out = Vec::new();
        sample(Compression::Xz).write_to(&mut out).unwrap();
        out
    };
    let b = {
        let mut out = Vec::new();
        sample(Compression::Xz).write_to(&mut out).unwrap();
        out
    };
    assert_eq!(a, b);

    let mut reversed = DebBuilder::new(fields()).mtime(MTIME);
    reversed.add_control_file("conffiles", 0o644, b"/etc/hello.conf\n".to_vec());
    reversed.add_control_file(
        "postinst",
        0o755,
        b"#!/bin/sh\nset -e\ndepmod -a || true\n".to_vec(),
    );
    reversed.add_dir("var/lib/hello", 0o700);
    reversed.add_symlink("usr/lib/hello-abs", "/usr/bin/hello");
    reversed.add_symlink("usr/bin/hi", "hello");
    reversed.add_file(&long_path(), 0o644, b"deep\n".to_vec());
    reversed.add_file("etc/hello.conf", 0o644, b"greeting=hi\n".to_vec());
    reversed.add_file("usr/bin/suid-helper", 0o4755, b"setuid".to_vec());
    reversed.add_file("usr/bin/hello", 0o755, b"#!/bin/sh\necho hello\n".to_vec());
    reversed.add_file(
        "usr/lib/modules/6.1.0-arm64/extra/hello.ko",
        0o644,
        b"\x7fELF fake module".to_vec(),
    );
    let mut c = Vec::new();
    reversed.write_to(&mut c).unwrap();
    assert_eq!(a, c);

    let gz1 = {
        let mut out = Vec::new();
        sample(Compression::Gzip).write_to(&mut out).unwrap();
        out
    };
    let gz2 = {
        let mut out = Vec::new();
        sample(Compression::Gzip).write_to(&mut out).unwrap();
        out
    };
    assert_eq!(gz1, gz2);
}

/// Packages built by dpkg-deb itself, with each compression it offers.
#[test]
fn reads_packages_built_by_dpkg_deb() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    fs::create_dir_all(src.join("DEBIAN")).unwrap();
    fs::create_dir_all(src.join("usr/bin")).unwrap();
    fs::create_dir_all(src.join("usr/share/doc/pkg")).unwrap();
    fs::write(
        src.join("DEBIAN/control"),
        "Package: built-by-dpkg\nVersion: 0.1\nArchitecture: all\nMaintainer: X <x@example.org>\nDescription: built by dpkg-deb\n",
    )
    .unwrap();
    fs::write(src.join("DEBIAN/preinst"), "#!/bin/sh\nexit 0\n").unwrap();
    fs::set_permissions(
        src.join("DEBIAN/preinst"),
        fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    fs::write(src.join("usr/bin/tool"), "tool").unwrap();
    fs::set_permissions(src.join("usr/bin/tool"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(src.join("usr/share/doc/pkg/README"), "readme").unwrap();
    fs::hard_link(
        src.join("usr/share/doc/pkg/README"),
        src.join("usr/share/doc/pkg/README.hardlink"),
    )
    .unwrap();
    std::os::unix::fs::symlink("tool", src.join("usr/bin/tool-link")).unwrap();

    for z in ["xz", "gzip", "none"] {
        let deb = tmp.path().join(format!("pkg-{z}.deb"));
        let out = Command::new("dpkg-deb")
            .env("SOURCE_DATE_EPOCH", "1000")
            .args(["--root-owner-group", &format!("-Z{z}"), "--build"])
            .arg(&src)
            .arg(&deb)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );

        let control = read_control(&deb).unwrap();
        assert!(control.contains("Package: built-by-dpkg\n"), "{control}");
        let files = control_files(&deb).unwrap();
        assert_eq!(files.get("preinst").unwrap().mode, 0o755);

        let root = tmp.path().join(format!("root-{z}"));
        fs::create_dir(&root).unwrap();
        let paths = extract_data(&deb, &root).unwrap();
        assert!(paths.contains(&"/usr/bin/tool".to_string()), "{paths:?}");
        assert_eq!(
            fs::read_to_string(root.join("usr/bin/tool")).unwrap(),
            "tool"
        );
        assert_eq!(
            fs::read_link(root.join("usr/bin/tool-link")).unwrap(),
            Path::new("tool")
        );
        let a = fs::metadata(root.join("usr/share/doc/pkg/README")).unwrap();
        let b = fs::metadata(root.join("usr/share/doc/pkg/README.hardlink")).unwrap();
        assert_eq!(a.ino(), b.ino(), "hard link kept as a hard link");
        assert_eq!(a.nlink(), 2);
        assert_eq!(a.mtime(), 1000);
    }

    // zstd is refused clearly.
    let deb = tmp.path().join("pkg-zstd.deb");
    let out = Command::new("dpkg-deb")
        .args(["--root-owner-group", "-Zzstd", "--build"])
        .arg(&src)
        .arg(&deb)
        .output()
        .unwrap();
    if out.status.success() {
        let err = read_control(&deb).unwrap_err();
        assert!(matches!(err, DebError::Zstd { .. }), "{err:?}");
        assert!(err.to_string().contains("zstd"), "{err}");
        assert!(err.to_string().contains("not supported yet"), "{err}");
    }
}

// ---- hand-made (hostile) packages ----

/// One raw tar entry; names are written into the header verbatim.
struct Raw {
    name: String,
    kind: tar::EntryType,
    link: String,
    data: Vec<u8>,
    mode: u32,
    uid: u64,
    gid: u64,
}

fn file(name: &str, data: &str) -> Raw {
    Raw {
        name: name.to_string(),
        kind: tar::EntryType::Regular,
        link: String::new(),
        data: data.as_bytes().to_vec(),
        mode: 0o644,
        uid: 0,
        gid: 0,
    }
}

fn dir(name: &str) -> Raw {
    Raw {
        kind: tar::EntryType::Directory,
        mode: 0o755,
        ..file(name, "")
    }
}

fn symlink(name: &str, target: &str) -> Raw {
    Raw {
        kind: tar::EntryType::Symlink,
        link: target.to_string(),
        mode: 0o777,
        ..file(name, "")
    }
}

fn hardlink(name: &str, target: &str) -> Raw {
    Raw {
        kind: tar::EntryType::Link,
        link: target.to_string(),
        ..file(name, "")
    }
}

fn raw_tar(entries: &[Raw]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(e.kind);
        h.set_mode(e.mode);
        h.set_uid(e.uid);
        h.set_gid(e.gid);
        h.set_mtime(MTIME);
        h.set_size(e.data.len() as u64);
        assert!(e.name.len() <= 100 && e.link.len() <= 100);
        let old = h.as_old_mut();
        old.name[..e.name.len()].copy_from_slice(e.name.as_bytes());
        old.linkname[..e.link.len()].copy_from_slice(e.link.as_bytes());
        if e.kind == tar::EntryType::Char || e.kind == tar::EntryType::Block {
            h.set_device_major(1).unwrap();
            h.set_device_minor(3).unwrap();
        }
        h.set_cksum();
        builder.append(&h, &e.data[..]).unwrap();
    }
    builder.into_inner().unwrap()
}

/// A .deb with a plain `control.tar` and `data.tar` (exercising the
/// uncompressed path) holding exactly `entries`.
fn raw_deb(out_dir: &Path, entries: &[Raw]) -> PathBuf {
    let control = raw_tar(&[
        dir("./"),
        file(
            "./control",
            "Package: hostile\nVersion: 1\nArchitecture: all\n",
        ),
    ]);
    let data = raw_tar(entries);
    let mut ar = ArWriter::new(Vec::new(), 0).unwrap();
    ar.append("debian-binary", b"2.0\n").unwrap();
    ar.append("control.tar", &control).unwrap();
    ar.append("data.tar", &data).unwrap();
    let path = out_dir.join("hostile.deb");
    fs::write(&path, ar.into_inner().unwrap()).unwrap();
    path
}

/// A scratch area: `base/root` is the extraction root, the .deb lives elsewhere.
struct Scratch {
    base: tempfile::TempDir,
    debs: tempfile::TempDir,
}

impl Scratch {
    fn new() -> Self {
        let base = tempfile::tempdir().unwrap();
        fs::create_dir(base.path().join("root")).unwrap();
        Scratch {
            base,
            debs: tempfile::tempdir().unwrap(),
        }
    }

    fn root(&self) -> PathBuf {
        self.base.path().join("root")
    }

    fn deb(&self, entries: &[Raw]) -> PathBuf {
        raw_deb(self.debs.path(), entries)
    }

    /// Only `root` is in the base directory.
    fn assert_nothing_outside(&self) {
        let names: Vec<String> = fs::read_dir(self.base.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["root"], "something was written outside the root");
    }
}

fn assert_refused(scratch: &Scratch, entries: &[Raw], entry_name: &str) -> DebError {
    let deb = scratch.deb(entries);
    let err = extract_data(&deb, &scratch.root()).expect_err("hostile entry accepted");
    let msg = err.to_string();
    assert!(
        msg.contains(entry_name),
        "error {msg:?} does not name the entry {entry_name:?}"
    );
    assert!(msg.contains(&deb.display().to_string()), "{msg}");
    scratch.assert_nothing_outside();
    err
}

#[test]
fn refuses_dot_dot_names() {
    let s = Scratch::new();
    let err = assert_refused(&s, &[dir("./"), file("../escape", "x")], "../escape");
    assert!(matches!(err, DebError::UnsafeEntry { .. }), "{err:?}");

    let s = Scratch::new();
    assert_refused(
        &s,
        &[dir("./"), dir("./a/"), file("./a/../../escape", "x")],
        "./a/../../escape",
    );
    // Nothing at all was written for the refused entry.
    assert!(!s.root().join("escape").exists());

    let s = Scratch::new();
    assert_refused(&s, &[dir("../../")], "../../");
}

#[test]
fn refuses_absolute_names() {
    let s = Scratch::new();
    // An absolute name pointing right next to the root, so a bug would show.
    let target = s.base.path().join("escape");
    let name = target.to_str().unwrap().to_string();
    let err = assert_refused(&s, &[dir("./"), file(&name, "x")], &name);
    assert!(matches!(err, DebError::UnsafeEntry { .. }), "{err:?}");
    assert!(!target.exists());

    let s = Scratch::new();
    assert_refused(&s, &[file("/etc/passwd", "x")], "/etc/passwd");
}

#[test]
fn refuses_paths_through_symlinks_shipped_in_the_same_package() {
    // ./evil -> / then ./evil/tmp/NAME
    let s = Scratch::new();
    let unique = format!("zchroot-pwned-{}", std::process::id());
    let name = format!("./evil/tmp/{unique}");
    assert_refused(
        &s,
        &[dir("./"), symlink("./evil", "/"), file(&name, "x")],
        &name,
    );
    assert!(!Path::new("/tmp").join(&unique).exists());
    assert!(!s.root().join("tmp").join(&unique).exists());

    // ./evil -> ../../.. then ./evil/x
    let s = Scratch::new();
    assert_refused(
        &s,
        &[
            dir("./"),
            symlink("./evil", "../../.."),
            file("./evil/x", "x"),
        ],
        "./evil/x",
    );
    assert!(!s.root().join("x").exists());

    // ./evil -> (absolute path of the directory holding the root)
    let s = Scratch::new();
    let base = s.base.path().to_str().unwrap().to_string();
    assert_refused(
        &s,
        &[
            dir("./"),
            symlink("./evil", &base),
            file("./evil/pwned", "x"),
        ],
        "./evil/pwned",
    );

    // A directory entry through it is refused too.
    let s = Scratch::new();
    assert_refused(
        &s,
        &[symlink("./evil", "/"), dir("./evil/etc/")],
        "./evil/etc/",
    );

    // A chain: ./a -> b (shipped), ./b/ is a real directory, ./a/x.
    let s = Scratch::new();
    assert_refused(
        &s,
        &[
            dir("./"),
            dir("./b/"),
            symlink("./a", "b"),
            file("./a/x", "x"),
        ],
        "./a/x",
    );
}

#[test]
fn refuses_hostile_hard_links() {
    let s = Scratch::new();
    let err = assert_refused(
        &s,
        &[dir("./"), hardlink("./link", "../../etc/passwd")],
        "./link",
    );
    assert!(matches!(err, DebError::UnsafeEntry { .. }), "{err:?}");
    assert!(fs::symlink_metadata(s.root().join("link")).is_err());

    // Absolute target next to the root.
    let s = Scratch::new();
    let secret = s.debs.path().join("secret");
    fs::write(&secret, "secret").unwrap();
    assert_refused(
        &s,
        &[dir("./"), hardlink("./link", secret.to_str().unwrap())],
        "./link",
    );

    // A file already in the root but not from this package.
    let s = Scratch::new();
    fs::create_dir(s.root().join("etc")).unwrap();
    fs::write(s.root().join("etc/shadow"), "root:*:").unwrap();
    assert_refused(
        &s,
        &[dir("./"), hardlink("./link", "./etc/shadow")],
        "./link",
    );

    // A target reached through a shipped symlink.
    let s = Scratch::new();
    assert_refused(
        &s,
        &[
            dir("./"),
            file("./real", "data"),
            symlink("./d", "/"),
            hardlink("./d/link", "./real"),
        ],
        "./d/link",
    );
}

#[test]
fn final_symlink_component_is_replaced_not_followed() {
    let s = Scratch::new();
    let outside = s.debs.path().join("target");
    fs::write(&outside, "original").unwrap();
    std::os::unix::fs::symlink(&outside, s.root().join("conf")).unwrap();
    std::os::unix::fs::symlink("../../../../../../..", s.root().join("up")).unwrap();
    let deb = s.deb(&[
        dir("./"),
        file("./conf", "new"),
        symlink("./up", "elsewhere"),
    ]);
    extract_data(&deb, &s.root()).unwrap();
    assert_eq!(fs::read_to_string(&outside).unwrap(), "original");
    let meta = fs::symlink_metadata(s.root().join("conf")).unwrap();
    assert!(meta.is_file());
    assert_eq!(fs::read_to_string(s.root().join("conf")).unwrap(), "new");
    assert_eq!(
        fs::read_link(s.root().join("up")).unwrap(),
        Path::new("elsewhere")
    );
    s.assert_nothing_outside();
}

#[test]
fn merged_usr_symlinks_in_the_root_are_followed_inside_the_root() {
    let s = Scratch::new();
    let root = s.root();
    fs::create_dir_all(root.join("usr/bin")).unwrap();
    fs::create_dir_all(root.join("usr/lib")).unwrap();
    std::os::unix::fs::symlink("usr/bin", root.join("bin")).unwrap();
    // An absolute symlink, as some roots have: must be re-rooted, not host /usr/lib.
    std::os::unix::fs::symlink("/usr/lib", root.join("lib")).unwrap();
    // A symlink climbing far above the root: clamped at the root.
    std::os::unix::fs::symlink("../../../../../../../..", root.join("up")).unwrap();

    let deb = s.deb(&[
        dir("./"),
        dir("./bin/"),
        file("./bin/sh", "#!shell"),
        dir("./lib/"),
        dir("./lib/newdir/"),
        file("./lib/newdir/libfoo.so", "lib"),
        file("./up/at-root", "clamped"),
    ]);
    let paths = extract_data(&deb, &root).unwrap();
    assert_eq!(
        paths,
        [
            "/.",
            "/bin",
            "/bin/sh",
            "/lib",
            "/lib/newdir",
            "/lib/newdir/libfoo.so",
            "/up/at-root"
        ]
    );
    assert_eq!(
        fs::read_to_string(root.join("usr/bin/sh")).unwrap(),
        "#!shell"
    );
    assert!(fs::symlink_metadata(root.join("bin"))
        .unwrap()
        .file_type()
        .is_symlink());
    assert!(fs::symlink_metadata(root.join("lib"))
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(
        fs::read_to_string(root.join("usr/lib/newdir/libfoo.so")).unwrap(),
        "lib"
    );
    assert_eq!(fs::read_to_string(root.join("at-root")).unwrap(), "clamped");
    s.assert_nothing_outside();
}

/// Symlinks shipped by an earlier package are followed by later ones, but
/// inside the root, the way they would be inside a chroot.
#[test]
fn symlinks_from_earlier_packages_are_followed_confined() {
    let s = Scratch::new();
    let base = s.base.path().to_str().unwrap().to_string();
    let first = s.deb(&[
        dir("./"),
        symlink("./evil", "/"),
        symlink("./evil2", "../../../../.."),
        symlink("./evil3", &base),
    ]);
    extract_data(&first, &s.root()).unwrap();
    let unique = format!("zchroot-confined-{}", std::process::id());
    let second = s.deb(&[
        dir("./"),
        file(&format!("./evil/{unique}"), "1"),
        file("./evil2/two", "2"),
        file("./evil3/three", "3"),
    ]);
    extract_data(&second, &s.root()).unwrap();
    assert!(!Path::new("/").join(&unique).exists());
    assert_eq!(fs::read_to_string(s.root().join(&unique)).unwrap(), "1");
    assert_eq!(fs::read_to_string(s.root().join("two")).unwrap(), "2");
    let inside = s.root().join(base.trim_start_matches('/')).join("three");
    assert_eq!(fs::read_to_string(inside).unwrap(), "3");
    s.assert_nothing_outside();
}

#[test]
fn symlink_loops_in_the_root_give_an_eloop_style_error() {
    let s = Scratch::new();
    std::os::unix::fs::symlink("b", s.root().join("a")).unwrap();
    std::os::unix::fs::symlink("/a", s.root().join("b")).unwrap();
    let deb = s.deb(&[dir("./"), file("./a/x", "x")]);
    let err = extract_data(&deb, &s.root()).unwrap_err();
    assert!(matches!(err, DebError::TooManyLinks { .. }), "{err:?}");
    assert!(err.to_string().contains("./a/x"), "{err}");
    s.assert_nothing_outside();
}

#[test]
fn devices_and_fifos_are_skipped_and_reported() {
    let s = Scratch::new();
    let deb = s.deb(&[
        dir("./"),
        dir("./dev/"),
        Raw {
            kind: tar::EntryType::Char,
            mode: 0o666,
            ..file("./dev/null", "")
        },
        Raw {
            kind: tar::EntryType::Fifo,
            mode: 0o600,
            ..file("./dev/initctl", "")
        },
        file("./dev/README", "x"),
    ]);
    let ex = extract_data_full(&deb, &s.root()).unwrap();
    assert_eq!(
        ex.paths,
        ["/.", "/dev", "/dev/null", "/dev/initctl", "/dev/README"]
    );
    assert_eq!(ex.skipped.len(), 2);
    assert_eq!(ex.skipped[0].path, "/dev/null");
    assert_eq!(
        ex.skipped[0].kind,
        SkippedKind::CharDevice { major: 1, minor: 3 }
    );
    assert_eq!(ex.skipped[0].mode, 0o666);
    assert_eq!(ex.skipped[1].kind, SkippedKind::Fifo);
    assert!(fs::symlink_metadata(s.root().join("dev/null")).is_err());
    assert!(fs::symlink_metadata(s.root().join("dev/initctl")).is_err());
    assert!(s.root().join("dev/README").is_file());
}

#[test]
fn ownership_and_special_modes_from_the_header() {
    let s = Scratch::new();
    let deb = s.deb(&[
        dir("./"),
        Raw {
            mode: 0o2755,
            uid: 1234,
            gid: 5678,
            ..file("./sgid", "x")
        },
        Raw {
            mode: 0o1777,
            ..dir("./sticky/")
        },
        Raw {
            uid: 1234,
            gid: 5678,
            ..symlink("./owned-link", "sgid")
        },
    ]);
    extract_data(&deb, &s.root()).unwrap();
    let sgid = fs::metadata(s.root().join("sgid")).unwrap();
    let sticky = fs::metadata(s.root().join("sticky")).unwrap();
    assert_eq!(sticky.permissions().mode() & 0o7777, 0o1777);
    if nix::unistd::geteuid().is_root() {
        assert_eq!((sgid.uid(), sgid.gid()), (1234, 5678));
        assert_eq!(
            sgid.permissions().mode() & 0o7777,
            0o2755,
            "setgid kept after chown"
        );
        let link = fs::symlink_metadata(s.root().join("owned-link")).unwrap();
        assert_eq!((link.uid(), link.gid()), (1234, 5678));
    }
}

#[test]
fn existing_directories_and_conflicts() {
    let s = Scratch::new();
    let root = s.root();
    fs::create_dir(root.join("keep")).unwrap();
    fs::set_permissions(root.join("keep"), fs::Permissions::from_mode(0o750)).unwrap();
    fs::write(root.join("file"), "").unwrap();

    // An existing directory is kept as it is.
    let deb = s.deb(&[dir("./"), dir("./keep/"), file("./keep/x", "x")]);
    extract_data(&deb, &root).unwrap();
    assert_eq!(
        fs::metadata(root.join("keep"))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777,
        0o750
    );

    // A file in the way of a directory is an error naming the entry.
    let deb = s.deb(&[dir("./"), dir("./file/")]);
    let err = extract_data(&deb, &root).unwrap_err();
    assert!(matches!(err, DebError::Conflict { .. }), "{err:?}");
    assert!(err.to_string().contains("./file/"), "{err}");

    // A file used as a parent directory.
    let deb = s.deb(&[dir("./"), file("./file/sub", "x")]);
    let err = extract_data(&deb, &root).unwrap_err();
    assert!(err.to_string().contains("./file/sub"), "{err}");

    // Reinstalling over a previous extraction works (files are replaced).
    let deb = s.deb(&[dir("./"), file("./keep/x", "new")]);
    extract_data(&deb, &root).unwrap();
    assert_eq!(fs::read_to_string(root.join("keep/x")).unwrap(), "new");
    assert!(!root.join("keep/x.dpkg-new").exists());
    s.assert_nothing_outside();
}

#[test]
fn container_errors_name_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let not_ar = tmp.path().join("not.deb");
    fs::write(&not_ar, "hello").unwrap();
    let err = read_control(&not_ar).unwrap_err();
    assert!(err.to_string().contains("not.deb"), "{err}");

    // zstd members are reported as such.
    let zstd = tmp.path().join("zstd.deb");
    let mut ar = ArWriter::new(Vec::new(), 0).unwrap();
    ar.append("debian-binary", b"2.0\n").unwrap();
    ar.append("control.tar.zst", b"\x28\xb5\x2f\xfd").unwrap();
    ar.append("data.tar.zst", b"\x28\xb5\x2f\xfd").unwrap();
    fs::write(&zstd, ar.into_inner().unwrap()).unwrap();
    let err = read_control(&zstd).unwrap_err();
    assert!(matches!(err, DebError::Zstd { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("zstd.deb") && msg.contains("not supported yet"),
        "{msg}"
    );
    let root = tmp.path().join("root");
    fs::create_dir(&root).unwrap();
    assert!(matches!(
        extract_data(&zstd, &root),
        Err(DebError::Zstd { .. })
    ));

    // Wrong format version.
    let v3 = tmp.path().join("v3.deb");
    let mut ar = ArWriter::new(Vec::new(), 0).unwrap();
    ar.append("debian-binary", b"3.0\n").unwrap();
    fs::write(&v3, ar.into_inner().unwrap()).unwrap();
    assert!(matches!(
        read_control(&v3),
        Err(DebError::FormatVersion { .. })
    ));

    // Control members with nested or hostile names are refused.
    let bad = tmp.path().join("bad-control.deb");
    let control = raw_tar(&[
        file("./control", "Package: x\n"),
        file("./../postinst", "x"),
    ]);
    let mut ar = ArWriter::new(Vec::new(), 0).unwrap();
    ar.append("debian-binary", b"2.0\n").unwrap();
    ar.append("control.tar", &control).unwrap();
    fs::write(&bad, ar.into_inner().unwrap()).unwrap();
    let err = control_files(&bad).unwrap_err();
    assert!(matches!(err, DebError::BadControlEntry { .. }), "{err:?}");
    assert!(err.to_string().contains("./../postinst"), "{err}");
}
