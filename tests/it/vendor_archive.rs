//! Vendor kernel archives for real: a "vendor" archive served on
//! 127.0.0.1 and signed with a key made here, holding a Debian-split kernel
//! (Debian's real arm64 headers, common headers and linux-kbuild, re-published
//! under a vendor version, a small stand-in image, and the vendor's flavour
//! metapackage). `target add --kernel-archive` checks it; `update` follows
//! it, builds with `cross` and publishes.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::archive::{pkg, pkg_of_deb, suite, Archive, Key, NativeArchive, Pkg};
use crate::common::{
    have_command, home_for, ok, require, require_root_and_debian, text, trixie_arm64_indexes,
    Zchroot,
};
use crate::server::Server;

/// The vendor's flavour (its metapackage is `linux-image-vendor-arm64`).
const FLAVOUR: &str = "vendor-arm64";

/// A vendor archive: suite `suite` with `packages` (for `arch`), signed by
/// a new key, served; and the key's public part in a file.
struct Vendor {
    _archive: Archive,
    _server: Server,
    url: String,
    keyring: PathBuf,
    _keydir: tempfile::TempDir,
}

fn serve_vendor(suite_name: &str, packages: Vec<Pkg>, arch: &str) -> Vendor {
    let key = Key::generate("vendor");
    let archive = Archive::new();
    archive.add_suite_for(&key, &suite(suite_name, packages), arch);
    let server = Server::start(archive.dir.path().to_owned());
    let keydir = tempfile::tempdir().unwrap();
    let keyring = keydir.path().join("vendor-archive-keyring.pgp");
    std::fs::write(&keyring, key.public_bytes()).unwrap();
    Vendor {
        url: format!("{}/debian", server.base),
        _archive: archive,
        _server: server,
        keyring,
        _keydir: keydir,
    }
}

/// A tiny kernel image package: `boot/vmlinuz-KREL` and its modules
/// directory (what `--kernel-deb` reads a kernel's release from).
fn stand_in_image(krel: &str, version: &str, arch: &str) -> Pkg {
    let mut p = pkg(&format!("linux-image-{krel}"), version)
        .file(&format!("boot/vmlinuz-{krel}"), 0o644, b"not a kernel\n")
        .file(&format!("usr/lib/modules/{krel}/modules.order"), 0o644, b"");
    p.arch = arch.into();
    p
}

fn meta(krel: &str, version: &str, arch: &str) -> Pkg {
    let mut p = pkg(&format!("linux-image-{FLAVOUR}"), version)
        .depends(&format!("linux-image-{krel} (= {version})"));
    p.arch = arch.into();
    p
}

#[test]
fn target_add_checks_the_kernel_archive_its_keyring_and_flavour() {
    let debian = NativeArchive::serve("debian-like", vec![pkg("hello-dkms", "1.0-1")]);
    let krel = "6.12.9-1-vendor-amd64";
    let vendor = serve_vendor(
        "test",
        vec![
            meta(krel, "6.12.9-1v1", "amd64"),
            stand_in_image(krel, "6.12.9-1v1", "amd64"),
            {
                let mut h = pkg(&format!("linux-headers-{krel}"), "6.12.9-1v1");
                h.arch = "amd64".into();
                h
            },
        ],
        "amd64",
    );
    let h = tempfile::tempdir().unwrap();
    let m = debian.manifests.display().to_string();
    let keyring = vendor.keyring.display().to_string();
    let run = |extra: &[&str]| {
        let mut all = vec![
            "--manifests",
            &m,
            "target",
            "add",
            "board",
            "--arch",
            "amd64",
            "--release",
            "test",
            "--module",
            "hello-dkms",
        ];
        all.extend(extra);
        Zchroot::new(h.path()).run(&all)
    };
    let fails = |extra: &[&str], code: i32, wants: &[&str]| {
        let o = run(extra);
        assert_eq!(o.status.code(), Some(code), "{}", text(&o));
        for w in wants {
            assert!(text(&o).contains(w), "{w:?} not in:\n{}", text(&o));
        }
        assert!(!h.path().join("config/targets/board.toml").exists());
    };
    // The archive needs its keyring: an argument error.
    fails(&["--kernel-archive", &vendor.url], 2, &["--kernel-keyring"]);
    // Signed by another key than the keyring given: refused, naming both.
    let other = tempfile::tempdir().unwrap();
    let wrong = other.path().join("other.pgp");
    std::fs::write(&wrong, Key::generate("other").public_bytes()).unwrap();
    let wrong_s = wrong.display().to_string();
    fails(
        &[
            "--kernel-archive",
            &vendor.url,
            "--kernel-keyring",
            &wrong_s,
            "--kernel-suite",
            "test",
            "--flavour",
            FLAVOUR,
        ],
        1,
        &[
            "error: --kernel-archive: kernel archive ",
            &vendor.url,
            &format!("checked against keyring {wrong_s}"),
            "--no-archive-check",
        ],
    );
    // Not a keyring at all: refused without the network.
    fails(
        &[
            "--kernel-archive",
            &vendor.url,
            "--kernel-keyring",
            &m,
            "--no-archive-check",
        ],
        1,
        &["error: --kernel-keyring: "],
    );
    // A flavour the vendor does not have: the ones it has are named.
    fails(
        &[
            "--kernel-archive",
            &vendor.url,
            "--kernel-keyring",
            &keyring,
            "--kernel-suite",
            "test",
            "--flavour",
            "rpi-v8",
        ],
        1,
        &[
            "error: --flavour: unknown kernel flavour 'rpi-v8': kernel archive",
            &format!("flavours it has: {FLAVOUR}"),
        ],
    );
    // The right keyring and flavour (which Debian's archive does not have).
    ok(run(&[
        "--kernel-archive",
        &vendor.url,
        "--kernel-keyring",
        &keyring,
        "--kernel-suite",
        "test",
        "--flavour",
        FLAVOUR,
    ]));
    let file = h.path().join("config/targets/board.toml");
    let t = std::fs::read_to_string(&file).unwrap();
    assert!(
        t.contains(&format!("kernel-archive = \"{}\"", vendor.url)),
        "{t}"
    );
    assert!(
        t.contains(&format!("kernel-keyring = \"{keyring}\"")),
        "{t}"
    );
    assert!(t.contains("kernel-suite = \"test\""), "{t}");
    // Unreachable: --no-archive-check skips only the online part.
    ok(run(&[
        "--kernel-archive",
        "http://127.0.0.1:1/vendor",
        "--kernel-keyring",
        &keyring,
        "--no-archive-check",
        "--force",
    ]));
}

fn field(deb: &Path, name: &str) -> String {
    let out = Command::new("dpkg-deb")
        .arg("-f")
        .arg(deb)
        .arg(name)
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// Debian's current arm64 kernel: its release, version, and the cached
/// .debs of its headers, common headers and linux-kbuild (downloaded and
/// verified by `zchroot resolve`).
fn debian_kernel(home: &Path) -> (String, String, Vec<PathBuf>) {
    let idx = trixie_arm64_indexes(home);
    let k = zchroot::kmod::kernel::choose(&idx.packages, "arm64", None).unwrap();
    let o = Zchroot::new(home).run(&[
        "-q",
        "resolve",
        "arm64",
        "--include",
        &k.headers_package,
        "--download",
        "--json",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let debs = v["packages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| {
            let n = p["name"].as_str().unwrap();
            n == k.headers_package
                || (n.starts_with("linux-headers-") && n.ends_with("-common"))
                || n.starts_with("linux-kbuild-")
        })
        .map(|p| PathBuf::from(p["cached"].as_str().unwrap()))
        .collect::<Vec<_>>();
    assert_eq!(debs.len(), 3, "headers, common headers, kbuild: {debs:?}");
    (k.release, k.image_version, debs)
}

// Long on purpose: one story (publish the vendor's kernel, add the target,
// update, read what was published), each step on the one before.
#[test]
fn update_follows_a_vendor_archive_and_cross_builds_its_debian_split_kernel() {
    if !require_root_and_debian()
        || !require(have_command("dpkg-deb"), "dpkg-deb", "apt-get install dpkg")
    {
        return;
    }
    let home = home_for("vendor_archive", "root");
    let (krel, debian_version, debs) = debian_kernel(&home);
    // The vendor's kernel: Debian's packaging, the vendor's version.
    let version = format!("{debian_version}+vendor1");
    let work = tempfile::tempdir().unwrap();
    let mut packages = vec![
        stand_in_image(&krel, &version, "arm64"),
        meta(&krel, &version, "arm64"),
    ];
    for d in &debs {
        let out = work.path().join(d.file_name().unwrap());
        let (from, to) = (debian_version.clone(), version.clone());
        crate::common::repack(d, &out, &move |c| c.replace(&from, &to));
        packages.push(pkg_of_deb(&out));
    }
    let vendor = serve_vendor("trixie", packages, "arm64");
    let module = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/hello-dkms");
    let z = |args: &[&str]| Zchroot::new(&home).run(args);
    let repo = home.join("state/repos/vendor-test");
    let _ = std::fs::remove_dir_all(&repo);
    ok(z(&[
        "target",
        "add",
        "vendor-test",
        "--arch",
        "arm64",
        "--release",
        "trixie",
        "--flavour",
        FLAVOUR,
        "--module",
        module.to_str().unwrap(),
        "--kernel-archive",
        &vendor.url,
        "--kernel-keyring",
        vendor.keyring.to_str().unwrap(),
        "--force",
    ]));
    let o = z(&["update", "vendor-test"]);
    assert!(o.status.success(), "{}", text(&o));
    let out = text(&o);
    assert!(
        out.contains("kernels seen 1, built 1") && out.contains(&format!("built for {krel}")),
        "{out}"
    );
    let pool = repo.join("public/pool/main");
    let found = |prefix: &str| -> PathBuf {
        std::fs::read_dir(&pool)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .find(|p| p.file_name().unwrap().to_string_lossy().starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix}* in {}", pool.display()))
    };
    let module_deb = found(&format!("hello-modules-{krel}_"));
    // The auto strategy chose cross: the vendor's linux-kbuild is built
    // for arm64 only, Debian's of the same series for this machine is used.
    assert_eq!(field(&module_deb, "X-Zchroot-Strategy"), "cross");
    // It depends on the vendor's image at the vendor's version.
    assert_eq!(
        field(&module_deb, "Depends"),
        format!("linux-image-{krel} (= {version})")
    );
    // The metapackage holds the vendor's flavour metapackage back.
    let meta_deb = found(&format!("hello-modules-{FLAVOUR}_"));
    assert!(
        field(&meta_deb, "Breaks").contains(&format!("linux-image-{FLAVOUR} (>> {version})")),
        "{}",
        field(&meta_deb, "Breaks")
    );
    // Published: the index lists both.
    let index =
        std::fs::read_to_string(repo.join("public/dists/trixie/main/binary-arm64/Packages"))
            .unwrap();
    assert!(
        index.contains(&format!("Package: hello-modules-{krel}")),
        "{index}"
    );
    // A second update has nothing to do.
    let o = z(&["update", "vendor-test"]);
    assert!(
        text(&o).contains("kernels seen 1, built 0, already there 1"),
        "{}",
        text(&o)
    );
    ok(z(&["target", "remove", "vendor-test"]));
}
