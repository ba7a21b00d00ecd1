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
