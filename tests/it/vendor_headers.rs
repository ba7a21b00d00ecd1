//! Board kernels' headers for `cross`: headers whose build helpers were
//! built for the board are rebuilt for this host from their sources, and
//! what cannot be rebuilt (no sources, GCC plugins) is named: `--strategy
//! cross` refuses with the reason, `auto` announces it and emulates.

use std::path::{Path, PathBuf};
use std::process::Output;

use crate::common::{home_for, require_root_and_debian, stderr, Zchroot};

fn hello_source() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/hello-dkms")
}

fn zchroot(home: &Path, args: &[&str]) -> Output {
    Zchroot::new(home)
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .run(args)
}

/// The first bytes of an arm64 ELF executable: what `elf_machine` reads.
fn arm64_program() -> Vec<u8> {
    let mut b = b"\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00".to_vec();
    b.resize(64, 0);
    b
}

/// A kernel image and headers pair as `make bindeb-pkg` makes them for
/// arm64 (on the board, or cross-built: upstream rebuilds the helpers for
/// the target then): the helpers are arm64 programs; their sources are in
/// the headers when `sources`; `config` is added to the `.config`.
fn board_kernel(dir: &Path, krel: &str, sources: bool, config: &str) -> (PathBuf, PathBuf) {
    use zchroot::deb::write::DebBuilder;
    let control = |name: &str| {
        vec![
            ("Package".to_string(), name.to_string()),
            ("Version".to_string(), "6.12.0-1".to_string()),
            ("Architecture".to_string(), "arm64".to_string()),
            ("Maintainer".to_string(), "me <me@example.org>".to_string()),
            ("Description".to_string(), "a board's kernel".to_string()),
        ]
    };
    let mut image = DebBuilder::new(control("linux-image"));
    image.add_file(
        &format!("boot/vmlinuz-{krel}"),
        0o644,
        b"not a kernel".to_vec(),
    );
    let mut headers = DebBuilder::new(control("linux-headers"));
    let h = format!("usr/src/linux-headers-{krel}");
    headers.add_file(
        &format!("{h}/.config"),
        0o644,
        format!("CONFIG_CC_VERSION_TEXT=\"aarch64-linux-gnu-gcc-14 (Debian 14.2.0-19) 14.2.0\"\nCONFIG_MODVERSIONS=y\n{config}").into_bytes(),
    );
    for p in [
        "scripts/basic/fixdep",
        "scripts/mod/modpost",
        "scripts/genksyms/genksyms",
    ] {
        headers.add_file(&format!("{h}/{p}"), 0o755, arm64_program());
    }
    if sources {
        for p in [
            "scripts/basic/fixdep.c",
            "scripts/mod/modpost.c",
            "scripts/mod/Makefile",
            "scripts/Makefile.build",
            "scripts/Makefile.host",
            "scripts/genksyms/Makefile",
            "scripts/genksyms/parse.y",
        ] {
            headers.add_file(&format!("{h}/{p}"), 0o644, b"/* source */\n".to_vec());
        }
    }
    let (i, hd) = (dir.join("image.deb"), dir.join("headers.deb"));
    for (b, path) in [(image, &i), (headers, &hd)] {
        let mut bytes = Vec::new();
        b.write_to(&mut bytes).unwrap();
        std::fs::write(path, bytes).unwrap();
    }
    (i, hd)
}

/// `build-dkms -v` of the hello module for the pair with `strategy`, its
/// output directory under a regular file: the plan is made and announced
/// (`-v` shows the notes), then the build stops before any build root is
/// made.
fn decide(home: &Path, image: &Path, headers: &Path, strategy: &str, t: &Path) -> Output {
    let blocker = t.join("not-a-dir");
    std::fs::write(&blocker, b"").unwrap();
    let src = hello_source();
    zchroot(
        home,
        &[
            "-v",
            "build-dkms",
            src.to_str().unwrap(),
            "--strategy",
            strategy,
            "--kernel-deb",
            image.to_str().unwrap(),
            "--kernel-deb",
            headers.to_str().unwrap(),
            "-o",
            blocker.join("out").to_str().unwrap(),
        ],
    )
}

// One scenario per kind of headers, each decided twice (cross, auto).
#[test]
fn board_helpers_are_rebuilt_from_their_sources_or_the_reason_is_named() {
    if !require_root_and_debian() || std::env::consts::ARCH != "x86_64" {
        return;
    }
    let home = home_for("vendor_headers", "decisions");
    let krel = "6.12.0-board";

    // No sources: cross refuses naming what is missing; auto emulates and says why.
    let t = tempfile::tempdir().unwrap();
    let (image, headers) = board_kernel(t.path(), krel, false, "");
    let o = decide(&home, &image, &headers, "cross", t.path());
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(
        e.contains(&format!("--strategy cross cannot build for {krel}: its build helpers are arm64 programs and their sources are not in it (no scripts/basic/fixdep.c")),
        "{e}"
    );
    assert!(e.contains("they cannot be rebuilt for amd64"), "{e}");
    assert!(e.contains("help: --strategy emulate builds it"), "{e}");
    let o = decide(&home, &image, &headers, "auto", t.path());
    let e = stderr(&o);
    assert!(
        e.contains(&format!("{krel}: strategy emulate, because cross cannot build it: its build helpers are arm64 programs and their sources are not in it")),
        "{e}"
    );
    // It stopped at the output directory, before any build root.
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert!(e.contains("not-a-dir/out"), "{e}");
    let roots = home.join("state/roots");
    assert!(!roots
        .join(zchroot::kmod::build_root_name("trixie", "arm64"))
        .exists());

    // Sources, but GCC plugins: the plugins are named.
    let t = tempfile::tempdir().unwrap();
    let (image, headers) = board_kernel(t.path(), krel, true, "CONFIG_GCC_PLUGINS=y\n");
    let o = decide(&home, &image, &headers, "cross", t.path());
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert!(
        e.contains(&format!(
            "--strategy cross cannot build for {krel}: its .config has CONFIG_GCC_PLUGINS=y"
        )),
        "{e}"
    );

    // Sources and nothing else in the way: cross, with rebuilt helpers.
    let t = tempfile::tempdir().unwrap();
    let (image, headers) = board_kernel(t.path(), krel, true, "");
    let o = decide(&home, &image, &headers, "auto", t.path());
    let e = stderr(&o);
    assert!(
        e.contains(&format!(
            "{krel}: strategy cross (gcc-14-aarch64-linux-gnu "
        )),
        "{e}"
    );
    assert!(
        e.contains("on amd64; build helpers rebuilt for amd64 from the headers' sources)"),
        "{e}"
    );
    assert!(!roots
        .join(zchroot::kmod::build_root_name("trixie", "amd64"))
        .exists());
}

/// The modules of a module package: (name, bytes).
fn modules_of(deb: &Path) -> Vec<(String, Vec<u8>)> {
    zchroot::deb::read::data_paths(deb)
        .unwrap()
        .into_iter()
        .filter(|p| p.contains(".ko"))
        .map(|p| {
            let b = zchroot::deb::read::read_data_file(deb, &p)
                .unwrap()
                .unwrap();
            (p, b)
        })
        .collect()
}

/// The fixture's headers again, without the helpers' C sources.
fn without_sources(headers: &Path, out: &Path) {
    let t = tempfile::tempdir().unwrap();
    let tree = t.path().join("t");
    let run = |cmd: &mut std::process::Command| {
        let o = cmd.output().unwrap();
        assert!(o.status.success(), "{cmd:?}: {}", stderr(&o));
    };
    run(std::process::Command::new("dpkg-deb")
        .arg("-R")
        .arg(headers)
        .arg(&tree));
    run(std::process::Command::new("find")
        .arg(tree.join("usr/src"))
        .args(["-path", "*/scripts/*", "-name", "*.c", "-delete"]));
    run(std::process::Command::new("dpkg-deb")
        .args(["-Zxz", "-z1", "--root-owner-group", "-b"])
        .arg(&tree)
        .arg(out));
}

// One scenario on the real `make bindeb-pkg` kernel: built with cross and
// checked against the kernel, then its headers without the helpers'
// sources decided both ways.
#[test]
fn the_bindeb_pkg_kernel_cross_builds_with_its_helpers_rebuilt_for_this_host() {
    if !require_root_and_debian() || std::env::consts::ARCH != "x86_64" {
        return;
    }
    let Some(k) = crate::kernel_fixture::bindeb_kernel() else {
        return;
    };
    let home = home_for("vendor_headers", "bindeb");
    let out = tempfile::tempdir().unwrap();
    let src = hello_source();
    let o = zchroot(
        &home,
        &[
            "-v",
            "build-dkms",
            src.to_str().unwrap(),
            "--kernel-deb",
            k.image.to_str().unwrap(),
            "--kernel-deb",
            k.headers.to_str().unwrap(),
            "-o",
            out.path().to_str().unwrap(),
        ],
    );
    let e = stderr(&o);
    assert!(o.status.success(), "{e}");
    assert!(
        e.contains(&format!(
            "{}: strategy cross (gcc-14-aarch64-linux-gnu ",
            k.release
        )),
        "{e}"
    );
    assert!(
        e.contains("on amd64; build helpers rebuilt for amd64 from the headers' sources)"),
        "{e}"
    );
    assert!(!e.contains("building under emulation instead"), "{e}");
    let deb = PathBuf::from(String::from_utf8_lossy(&o.stdout).trim());
    let strategy = zchroot::deb::read::read_control(&deb).unwrap();
    assert!(
        strategy.contains("\nX-Zchroot-Strategy: cross\n"),
        "{strategy}"
    );
    // The module's vermagic is the kernel's own: the image holds it whole.
    let image = {
        let paths = zchroot::deb::read::data_paths(&k.image).unwrap();
        let p = paths
            .iter()
            .find(|p| p.starts_with(&format!("boot/vmlinuz-{}", k.release)))
            .unwrap();
        let raw = zchroot::deb::read::read_data_file(&k.image, p)
            .unwrap()
            .unwrap();
        let mut plain = Vec::new();
        match std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&raw[..]), &mut plain) {
            Ok(_) => plain,
            Err(_) => raw,
        }
    };
    let modules = modules_of(&deb);
    assert!(!modules.is_empty(), "no module in {}", deb.display());
    for (name, bytes) in &modules {
        let info = zchroot::kmod::elf::ko_info(bytes).unwrap();
        assert_eq!(info.machine, 0xb7, "{name} is an arm64 module");
        let vermagic = info.vermagic.unwrap();
        assert!(
            vermagic.starts_with(&format!("{} ", k.release)),
            "{vermagic}"
        );
        assert!(vermagic.contains("modversions"), "{vermagic}");
        assert!(
            image
                .windows(vermagic.len())
                .any(|w| w == vermagic.as_bytes()),
            "{name}: vermagic '{vermagic}' is not the kernel's"
        );
    }

    // Its headers without the helpers' sources: cross refuses, auto emulates.
    let t = tempfile::tempdir().unwrap();
    let bare = t.path().join("headers-without-sources.deb");
    without_sources(&k.headers, &bare);
    let o = decide(&home, &k.image, &bare, "cross", t.path());
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert!(
        e.contains(&format!("--strategy cross cannot build for {}: its build helpers are arm64 programs and their sources are not in it (no scripts/basic/fixdep.c", k.release)),
        "{e}"
    );
    let o = decide(&home, &k.image, &bare, "auto", t.path());
    let e = stderr(&o);
    assert!(
        e.contains(&format!("{}: strategy emulate, because cross cannot build it: its build helpers are arm64 programs", k.release)),
        "{e}"
    );
    assert!(e.contains("not-a-dir/out"), "stopped before building: {e}");
}
