//! The user's kernel packages as sets: a Debian-split kernel given as
//! `--kernel-deb` files is one kernel (the command line that failed with
//! "they do not match"), what is missing from a set is named, and the
//! user's own `make bindeb-pkg` kernel renamed to plain `linux-image` gets
//! a module package that installs beside it in a root made by `create`.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::{
    have_command, home_for, require, require_root_and_debian, stderr, stdout, Zchroot,
};

/// A .deb made here: control fields and empty files.
fn deb(dir: &Path, name: &str, fields: &[(&str, &str)], files: &[&str]) -> PathBuf {
    let mut b = zchroot::deb::write::DebBuilder::new(
        fields
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    );
    for f in files {
        b.add_file(f, 0o644, b"x\n".to_vec());
    }
    let path = dir.join(name);
    let mut out = Vec::new();
    b.write_to(&mut out).unwrap();
    std::fs::write(&path, out).unwrap();
    path
}

/// The command line: `build-zfs --kernel-deb IMAGE --kernel-deb
/// linux-headers-KREL.deb --kernel-deb linux-headers-VER-common.deb`. The
/// three are one kernel: the build goes on to ZFS's kernel range (this
/// fictional kernel is past it, so nothing is compiled). Without the
/// common headers, they are named as missing.
#[test]
fn a_debian_split_set_on_the_command_line_is_one_kernel() {
    if !require_root_and_debian() {
        return;
    }
    let home = home_for("kernel_sets", "split");
    let t = tempfile::tempdir().unwrap();
    let (krel, v) = ("7.99.1+deb13-arm64", "7.99.1-1");
    let image = deb(
        t.path(),
        "linux-image-7.99.1+deb13-arm64-unsigned_7.99.1-1_arm64.deb",
        &[
            ("Package", "linux-image-7.99.1+deb13-arm64-unsigned"),
            ("Version", v),
            ("Architecture", "arm64"),
        ],
        &[&format!("boot/vmlinuz-{krel}")],
    );
    let headers = deb(
        t.path(),
        "linux-headers-7.99.1+deb13-arm64_7.99.1-1_arm64.deb",
        &[
            ("Package", "linux-headers-7.99.1+deb13-arm64"),
            ("Version", v),
            ("Architecture", "arm64"),
            (
                "Depends",
                "linux-headers-7.99.1+deb13-common (= 7.99.1-1), linux-kbuild-7.99.1+deb13 (= 7.99.1-1)",
            ),
        ],
        &[&format!("usr/src/linux-headers-{krel}/.config")],
    );
    let common = deb(
        t.path(),
        "linux-headers-7.99.1+deb13-common_7.99.1-1_all.deb",
        &[
            ("Package", "linux-headers-7.99.1+deb13-common"),
            ("Version", v),
            ("Architecture", "all"),
        ],
        &["usr/src/linux-headers-7.99.1+deb13-common/Makefile"],
    );
    let out = t.path().join("out");
    let run = |debs: &[&Path]| {
        let mut args: Vec<String> =
            vec!["build-zfs".into(), "-o".into(), out.display().to_string()];
        for d in debs {
            args.extend(["--kernel-deb".into(), d.display().to_string()]);
        }
        Zchroot::new(&home).run(&args)
    };
    let o = run(&[&image, &headers, &common]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(!e.contains("do not match"), "{e}");
    assert!(
        e.contains("not 7.99"),
        "the kernel reached ZFS's range check: {e}"
    );

    let o = run(&[&image, &headers]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(
        e.contains("linux-headers-7.99.1+deb13-arm64 7.99.1-1 depends on linux-headers-7.99.1+deb13-common (= 7.99.1-1), which is not among the --kernel-deb files"),
        "{e}"
    );
    assert!(!out.exists() || std::fs::read_dir(&out).unwrap().next().is_none());
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

/// The same package with another Package field, nothing else changed.
fn renamed(deb: &Path, out: &Path, package: &str) {
    crate::common::repack(deb, out, &|text| {
        let old = text
            .lines()
            .find(|l| l.starts_with("Package: "))
            .unwrap()
            .to_string();
        text.replacen(&old, &format!("Package: {package}"), 1)
    });
}

// Long on purpose: one scenario (rename the kernel as the user did, build
// for it, install both in a root), each step on the state of the one before.
#[test]
fn the_users_bindeb_pkg_kernel_renamed_linux_image_gets_a_module_that_installs_beside_it() {
    if !require_root_and_debian()
        || !require(have_command("dpkg-deb"), "dpkg-deb", "apt-get install dpkg")
    {
        return;
    }
    let Some(k) = crate::kernel_fixture::bindeb_kernel() else {
        return;
    };
    let home = home_for("kernel_sets", "user");
    let t = tempfile::tempdir().unwrap();
    let image = t.path().join("linux-image.deb");
    renamed(&k.image, &image, "linux-image");
    assert_eq!(field(&image, "Package"), "linux-image");
    assert_eq!(field(&image, "Version"), k.version);

    let out = t.path().join("out");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/hello-dkms");
    let o = Zchroot::new(&home)
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .run(&[
            "build-dkms",
            src.to_str().unwrap(),
            "--kernel-deb",
            image.to_str().unwrap(),
            "--kernel-deb",
            k.headers.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
        ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let module = PathBuf::from(stdout(&o).trim());
    let name = module.file_name().unwrap().to_string_lossy().into_owned();
    assert_eq!(name, format!("hello-modules-{}_0.1_arm64.deb", k.release));
    assert_eq!(
        field(&module, "Depends"),
        format!("linux-image (= {})", k.version)
    );
    eprintln!(
        "strategy: {} ({})",
        field(&module, "X-Zchroot-Strategy"),
        stderr(&o)
            .lines()
            .find(|l| l.contains("strategy"))
            .unwrap_or("")
    );

    // Both install with dpkg -i in a root made by `create`.
    let root = "kset-user-kernel";
    let _ = Zchroot::new(&home).run(&["-q", "destroy", root]);
    let o =
        Zchroot::new(&home).run(&["-q", "create", "arm64", "--name", root, "--include", "kmod"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let krel = &k.release;
    let script = format!(
        "set -e\n\
         dpkg -i /k/linux-image.deb /m/{name}\n\
         dpkg-query -W -f '${{Package}} ${{Version}} ${{Status}}\\n' linux-image hello-modules-{krel}\n\
         ls /lib/modules/{krel}/updates/dkms/\n\
         modinfo -k {krel} -F vermagic hello\n"
    );
    let o = Zchroot::new(&home).run(&[
        "-q",
        "run",
        root,
        "--bind",
        &format!("{}:/k:ro", t.path().display()),
        "--bind",
        &format!("{}:/m:ro", out.display()),
        "--",
        "sh",
        "-c",
        &script,
    ]);
    let text = stdout(&o);
    assert!(o.status.success(), "{}\n{text}", stderr(&o));
    assert!(
        text.contains(&format!("linux-image {} install ok installed\n", k.version)),
        "{text}"
    );
    assert!(
        text.contains(&format!("hello-modules-{krel} 0.1 install ok installed\n")),
        "{text}"
    );
    assert!(text.contains("hello.ko"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.split_whitespace().next() == Some(krel)),
        "vermagic of the installed module: {text}"
    );
    let o = Zchroot::new(&home).run(&["-q", "destroy", root]);
    assert!(o.status.success(), "{}", stderr(&o));
}
