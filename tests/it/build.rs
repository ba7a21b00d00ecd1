//! `build-dkms` for real: the tiny hello module the tests ship, for the
//! real Debian trixie arm64 kernel, built with DKMS under qemu, packaged,
//! and installed with dpkg in an arm64 root that has that kernel.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::common::{
    have_command, home_for, let_others_reach, module_dir, require, require_root_and_debian,
    require_test_user, stderr, Zchroot,
};

fn hello_source() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/hello-dkms")
}

/// The build tests' home: the build roots are made once for them all.
fn home() -> PathBuf {
    home_for("build", "root")
}

/// zchroot with reproducible package dates.
fn zchroot(home: &Path, args: &[&str]) -> Output {
    Zchroot::new(home)
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .run(args)
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

// Long on purpose: one scenario read top to bottom (build, check the
// package, install it in a root with that kernel); each step needs the
// state the one before left, and the roots are too costly to make twice.
#[test]
fn hello_module_for_the_trixie_arm64_kernel_installs_where_that_kernel_is() {
    if !require_root_and_debian()
        || !require(have_command("dpkg-deb"), "dpkg-deb", "apt-get install dpkg")
    {
        return;
    }
    let home = home();
    let out = tempfile::tempdir().unwrap();
    let src = hello_source();
    let o = zchroot(
        &home,
        &[
            "-q",
            "build-dkms",
            src.to_str().unwrap(),
            "--strategy",
            "emulate",
            "-o",
            out.path().to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let deb = PathBuf::from(String::from_utf8_lossy(&o.stdout).trim());
    assert!(deb.starts_with(out.path()), "{deb:?}");
    assert_eq!(field(&deb, "X-Zchroot-Strategy"), "emulate");
    // lintian accepts it without errors.
    if require(
        have_command("lintian"),
        "lintian",
        "apt-get install lintian",
    ) {
        let l = Command::new("lintian")
            .args(["--fail-on", "error", "--allow-root"])
            .arg(&deb)
            .output()
            .unwrap();
        assert!(
            l.status.success(),
            "lintian: {}{}",
            String::from_utf8_lossy(&l.stdout),
            stderr(&l)
        );
    }
    let name = deb.file_name().unwrap().to_string_lossy().into_owned();
    // hello-modules-6.12.N+deb13-arm64_0.1_arm64.deb
    let krel = name
        .strip_prefix("hello-modules-")
        .and_then(|r| r.strip_suffix("_0.1_arm64.deb"))
        .unwrap_or_else(|| panic!("{name}"))
        .to_string();
    assert!(krel.ends_with("+deb13-arm64"), "{krel}");
    let depends = field(&deb, "Depends");
    assert!(
        depends.starts_with(&format!("linux-image-{krel} (= ")),
        "{depends}"
    );
    assert_eq!(field(&deb, "Provides"), "hello-modules (= 0.1)");

    // The .ko is aarch64 and made for that kernel.
    let ko = read_ko(&deb, &krel).expect("hello.ko in the package");
    let info = zchroot::kmod::elf::ko_info(&ko).unwrap();
    assert_eq!(info.machine, 0xb7, "EM_AARCH64");
    assert_eq!(
        info.vermagic.as_deref().unwrap().split_whitespace().next(),
        Some(krel.as_str())
    );
    assert!(info.modversions.is_some(), "the kernel has modversions");

    // The cross strategy makes the same module: same files, vermagic,
    // source version and symbol CRCs, and the same package fields.
    let cross_out = out.path().join("cross");
    let o = zchroot(
        &home,
        &[
            "-q",
            "build-dkms",
            src.to_str().unwrap(),
            "--strategy",
            "cross",
            "-o",
            cross_out.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let cross_deb = PathBuf::from(String::from_utf8_lossy(&o.stdout).trim());
    assert_eq!(cross_deb.file_name(), deb.file_name());
    assert_eq!(field(&cross_deb, "X-Zchroot-Strategy"), "cross");
    for f in [
        "Package",
        "Version",
        "Architecture",
        "Depends",
        "Provides",
        "X-Zchroot-Kernel-Compiler",
    ] {
        assert_eq!(field(&cross_deb, f), field(&deb, f), "{f}");
    }
    let compiler = field(&cross_deb, "X-Zchroot-Compiler");
    assert!(compiler.starts_with("aarch64-linux-gnu-gcc-"), "{compiler}");
    let modules = |d: &Path| {
        zchroot::deb::read::data_paths(d)
            .unwrap()
            .into_iter()
            .filter(|p| p.contains("/updates/dkms/"))
            .collect::<Vec<_>>()
    };
    assert_eq!(modules(&cross_deb), modules(&deb));
    let cross_info = zchroot::kmod::elf::ko_info(&read_ko(&cross_deb, &krel).unwrap()).unwrap();
    assert_eq!(cross_info.machine, 0xb7, "EM_AARCH64");
    assert_eq!(cross_info.vermagic, info.vermagic);
    assert_eq!(cross_info.srcversion, info.srcversion);
    // (hello has no MODULE_VERSION, so no srcversion: both None.)
    assert_eq!(cross_info.modversions, info.modversions);
    assert_eq!(cross_info.signed, info.signed);

    // It installs in the build root, which has that kernel image...
    let bind = format!("{}:/out:ro", out.path().display());
    let root = zchroot::kmod::build_root_name("trixie", "arm64");
    let o = zchroot(&home, &["-q", "run", &root, "--bind", &bind, "--", "sh", "-c",
        &format!("dpkg -i /out/{name} && ls /usr/lib/modules/{krel}/updates/dkms/ && grep -c hello /usr/lib/modules/{krel}/modules.dep")]);
    assert!(
        o.status.success(),
        "{}\n{}",
        stderr(&o),
        String::from_utf8_lossy(&o.stdout)
    );
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("hello.ko"), "{stdout}");
    // The cross-built one too.
    let bind = format!("{}:/cross:ro", cross_out.display());
    let o = zchroot(
        &home,
        &[
            "-q",
            "run",
            &root,
            "--bind",
            &bind,
            "--",
            "sh",
            "-c",
            &format!("dpkg -i /cross/{name} && modinfo -k {krel} hello | grep '^vermagic:'"),
        ],
    );
    assert!(
        o.status.success(),
        "{}\n{}",
        stderr(&o),
        String::from_utf8_lossy(&o.stdout)
    );
    assert!(String::from_utf8_lossy(&o.stdout).contains(&krel));
    let _ = zchroot(
        &home,
        &[
            "-q",
            "run",
            &root,
            "--",
            "dpkg",
            "--purge",
            &format!("hello-modules-{krel}"),
        ],
    );

    // ...and is refused where another version of that kernel is installed.
    let other = out.path().join("other");
    std::fs::create_dir(&other).unwrap();
    let k = zchroot::kmod::kernel::TargetKernel {
        release: krel.clone(),
        image_package: format!("linux-image-{krel}"),
        image_version: "9.9.9-1".into(),
        alternatives: vec![],
        headers_package: String::new(),
    };
    let repacked = zchroot::kmod::package::ModuleDeb {
        module: "hello".into(),
        version: "0.1".into(),
        kernel: k,
        arch: "arm64".into(),
        modules_dir: "usr/lib/modules".into(),
        files: vec![("hello.ko.xz".into(), ko.clone())],
        mtime: 0,
        fields: vec![],
    };
    std::fs::write(other.join("m.deb"), repacked.build().unwrap()).unwrap();
    let bind = format!("{}:/other:ro", other.display());
    let o = zchroot(
        &home,
        &[
            "-q",
            "run",
            &root,
            "--bind",
            &bind,
            "--",
            "dpkg",
            "-i",
            "/other/m.deb",
        ],
    );
    assert_eq!(o.status.code(), Some(1));
    let out_text = String::from_utf8_lossy(&o.stdout).into_owned() + &stderr(&o);
    assert!(out_text.contains("dependency problems"), "{out_text}");
    let _ = zchroot(
        &home,
        &[
            "-q",
            "run",
            &root,
            "--",
            "dpkg",
            "--purge",
            &format!("hello-modules-{krel}"),
        ],
    );

    // (Packaging twice is byte-identical: kmod::package's unit test checks that
    // without another emulated compile.)
}

/// hello.ko (DKMS may have xz-compressed it) from a module package.
fn read_ko(deb: &Path, krel: &str) -> Option<Vec<u8>> {
    ["hello.ko", "hello.ko.xz"].iter().find_map(|n| {
        zchroot::deb::read::read_data_file(deb, &format!("usr/lib/modules/{krel}/updates/dkms/{n}"))
            .unwrap()
    })
}

#[test]
fn bad_build_input_fails_before_compiling() {
    if !require_root_and_debian() {
        return;
    }
    let home = tempfile::tempdir().unwrap();
    let src = hello_source();
    let s = src.to_str().unwrap();
    let o = zchroot(
        home.path(),
        &["build-dkms", s, "--kernel", "6.1.0-99-arm64"],
    );
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(e.contains("unknown kernel '6.1.0-99-arm64'"), "{e}");
    assert!(
        e.contains("known kernels of this architecture are 6.12."),
        "{e}"
    );
    let o = zchroot(home.path(), &["build-dkms", "no-such-module-dkms"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("unknown DKMS package 'no-such-module-dkms'"),
        "{}",
        stderr(&o)
    );
    let o = zchroot(home.path(), &["build-dkms", "/nonexistent/dir"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("is neither a directory with a dkms.conf"),
        "{}",
        stderr(&o)
    );
    // A tarball: its hash is required and checked.
    let t = tempfile::tempdir().unwrap();
    let tarball = t.path().join("hello.tar.gz");
    let st = Command::new("tar")
        .arg("-czf")
        .arg(&tarball)
        .arg("-C")
        .arg(src.parent().unwrap())
        .arg("hello-dkms")
        .status()
        .unwrap();
    assert!(st.success());
    let tb = tarball.to_str().unwrap();
    let o = zchroot(home.path(), &["build-dkms", tb]);
    assert!(
        stderr(&o).contains("give its SHA256 with --sha256 HEX"),
        "{}",
        stderr(&o)
    );
    let o = zchroot(
        home.path(),
        &["build-dkms", tb, "--sha256", &"0".repeat(64)],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("SHA256 mismatch"), "{}", stderr(&o));
    // A signing key that is not one.
    let not_a_key = t.path().join("key.pem");
    std::fs::write(&not_a_key, "hello").unwrap();
    let k = not_a_key.to_str().unwrap();
    let o = zchroot(
        home.path(),
        &["build-dkms", s, "--sign-key", k, "--sign-cert", k],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("not a signing key: no PEM private key"),
        "{}",
        stderr(&o)
    );
    let o = zchroot(home.path(), &["build-dkms", s, "--sign-key", k]);
    assert_eq!(o.status.code(), Some(2), "--sign-key needs --sign-cert");
    // Nothing was built: no build root was made.
    for arch in ["arm64", "amd64"] {
        assert!(!home
            .path()
            .join("state/roots")
            .join(zchroot::kmod::build_root_name("trixie", arch))
            .exists());
    }
}

/// A module signing key and its certificate (DER), made with openssl,
/// with `cn` as the certificate's name.
fn signing_key(dir: &Path, cn: &str) -> (PathBuf, PathBuf) {
    let key = dir.join("mok.key");
    let cert = dir.join("mok.der");
    let st = Command::new("openssl")
        .args(["req", "-new", "-x509", "-nodes", "-days", "1", "-subj"])
        .arg(format!("/CN={cn}"))
        .args(["-newkey", "rsa:2048", "-keyout"])
        .arg(&key)
        .args(["-outform", "DER", "-out"])
        .arg(&cert)
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(st.success());
    (key, cert)
}

/// openssl, to make test signing keys and check signatures, or a loud skip.
fn require_openssl() -> bool {
    require(
        have_command("openssl"),
        "openssl (to make a test signing key and check signatures)",
        "apt-get install openssl",
    )
}

/// Checks a signed module (uncompressed) as the kernel reads it: the
/// trailer (`struct module_signature`, the magic), and the PKCS#7
/// signature over the module's bytes by the key of `cert`, with openssl.
fn assert_signed_by(ko: &[u8], cert: &Path, hash: &str) {
    let magic = b"~Module signature appended~\n";
    let rest = ko.strip_suffix(magic).expect("a signature trailer");
    let (rest, info) = rest.split_at(rest.len() - 12);
    assert_eq!(
        info[..8],
        [0, 0, 2, 0, 0, 0, 0, 0],
        "PKCS#7, no signer/key id"
    );
    let sig_len = u32::from_be_bytes(info[8..].try_into().unwrap()) as usize;
    let (module, sig) = rest.split_at(rest.len() - sig_len);
    assert!(module.starts_with(b"\x7fELF"));
    let t = tempfile::tempdir().unwrap();
    std::fs::write(t.path().join("m"), module).unwrap();
    std::fs::write(t.path().join("s"), sig).unwrap();
    let o = Command::new("openssl")
        .args(["cms", "-verify", "-binary", "-inform", "DER", "-noverify"])
        .args(["-out", "/dev/null", "-in"])
        .arg(t.path().join("s"))
        .arg("-content")
        .arg(t.path().join("m"))
        .arg("-certfile")
        .arg(cert)
        .output()
        .unwrap();
    assert!(o.status.success(), "openssl cms -verify: {}", stderr(&o));
    // As sign-file makes it: no certificates, no signed attributes.
    let o = Command::new("openssl")
        .args(["cms", "-cmsout", "-print", "-inform", "DER", "-in"])
        .arg(t.path().join("s"))
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&o.stdout);
    let words = printed.split_whitespace().collect::<Vec<_>>().join(" ");
    for part in [
        "certificates: <ABSENT>".to_string(),
        "signedAttrs: <ABSENT>".to_string(),
        "d.issuerAndSerialNumber: issuer: CN=".to_string(),
        format!("digestAlgorithm: algorithm: {hash} ("),
    ] {
        assert!(words.contains(&part), "no {part:?} in {printed}");
    }
}

#[test]
fn modules_are_signed_on_the_host_as_sign_file_signs_them() {
    if !require_openssl() {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let (key, cert) = signing_key(t.path(), "zchroot host signing");
    let signer = zchroot::kmod::sign::Signer {
        key: &key,
        cert: &cert,
    };
    let module = [&b"\x7fELF\x02\x01\x01"[..], &b"module ".repeat(500)].concat();
    // Signed already (by a key a build made): that signature goes.
    let presigned = zchroot::kmod::sign::append_signature(&module, b"someone else's");
    for c in [
        zchroot::kmod::elf::Compression::None,
        zchroot::kmod::elf::Compression::Xz,
        zchroot::kmod::elf::Compression::Zstd,
    ] {
        for (hash, input) in [("sha256", &module), ("sha512", &presigned)] {
            let file = zchroot::kmod::sign::compress(c, input).unwrap();
            let signed = signer.sign_module("m.ko", &file, hash).unwrap();
            assert_eq!(
                zchroot::kmod::elf::Compression::of(&signed),
                c,
                "compressed alike"
            );
            let plain = zchroot::kmod::elf::decompressed(&signed);
            assert!(plain.starts_with(&module));
            assert_signed_by(&plain, &cert, hash);
        }
    }
    // A key that is not the certificate's is refused, naming both.
    let other = t.path().join("other");
    std::fs::create_dir(&other).unwrap();
    let (other_key, _) = signing_key(&other, "someone else");
    let e = zchroot::kmod::sign::Signer {
        key: &other_key,
        cert: &cert,
    }
    .sign_module("m.ko", &module, "sha256")
    .unwrap_err()
    .to_string();
    assert!(e.contains("openssl cms could not sign with key"), "{e}");
    assert!(e.contains(&*other_key.to_string_lossy()), "{e}");
}

// The modules are signed on this host: what signing needs is checked
// with a trial signature before anything is fetched or built.
#[test]
fn signing_problems_fail_before_building() {
    if !require_openssl() {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let (key, cert) = signing_key(t.path(), "zchroot test MOK");
    let other = t.path().join("other");
    std::fs::create_dir(&other).unwrap();
    let (other_key, _) = signing_key(&other, "someone else");
    let home = t.path().join("home");
    let src = hello_source();
    let build = |key: &Path, path: &str| {
        Zchroot::new(&home).env("PATH", path).run(&[
            "build-dkms",
            src.to_str().unwrap(),
            "--sign-key",
            key.to_str().unwrap(),
            "--sign-cert",
            cert.to_str().unwrap(),
        ])
    };
    // No openssl on this host.
    let o = build(&key, "/nonexistent");
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(
        e.contains("--sign-key: openssl, which signs the modules on this host"),
        "{e}"
    );
    assert!(e.contains("help: install openssl"), "{e}");
    // A key that is not the certificate's.
    let o = build(&other_key, &std::env::var("PATH").unwrap());
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(e.contains("openssl cms could not sign with key"), "{e}");
    assert!(
        e.contains("help: check that the key is the certificate's"),
        "{e}"
    );
    // Nothing was built: no build root was made.
    let roots = std::fs::read_dir(home.join("state/roots"))
        .into_iter()
        .flatten()
        .count();
    assert_eq!(roots, 0);
}

#[test]
fn modules_are_signed_with_the_users_key() {
    if !require_root_and_debian() || !require_openssl() {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let (key, cert) = signing_key(t.path(), "zchroot test MOK");
    let out = t.path().join("out");
    let src = hello_source();
    let o = zchroot(
        &home(),
        &[
            "build-dkms",
            src.to_str().unwrap(),
            "--strategy",
            "cross",
            "--sign-key",
            key.to_str().unwrap(),
            "--sign-cert",
            cert.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("signed with your key"),
        "{}",
        stderr(&o)
    );
    let deb = PathBuf::from(String::from_utf8_lossy(&o.stdout).trim());
    let krel = field(&deb, "Package")
        .trim_start_matches("hello-modules-")
        .to_string();
    let ko = read_ko(&deb, &krel).unwrap();
    let info = zchroot::kmod::elf::ko_info(&ko).unwrap();
    assert!(info.signed);
    // The signature (PKCS#7, appended) is the test key's over the module,
    // with the hash Debian's kernel names (CONFIG_MODULE_SIG_HASH).
    let plain = zchroot::kmod::elf::decompressed(&ko);
    assert!(
        plain.windows(16).any(|w| w == b"zchroot test MOK"),
        "the signature is not by the test key"
    );
    assert_signed_by(&plain, &cert, "sha256");
}

/// A module whose Makefile (run in the build root, as every module's is)
/// looks for private keys wherever it can read and prints what it finds
/// into DKMS's make.log, which stays in the root.
fn key_hunting_source(dir: &Path) -> PathBuf {
    let src = dir.join("keyhunt");
    std::fs::create_dir(&src).unwrap();
    std::fs::copy(hello_source().join("hello.c"), src.join("hello.c")).unwrap();
    std::fs::write(
        src.join("dkms.conf"),
        "PACKAGE_NAME=\"keyhunt\"\nPACKAGE_VERSION=\"0.1\"\nBUILT_MODULE_NAME[0]=\"hello\"\n\
         DEST_MODULE_LOCATION[0]=\"/updates/dkms\"\n\
         MAKE[0]=\"make -C ${kernel_source_dir} M=${dkms_tree}/${PACKAGE_NAME}/${PACKAGE_VERSION}/build modules\"\n\
         CLEAN=\"true\"\nAUTOINSTALL=\"no\"\n",
    )
    .unwrap();
    std::fs::write(
        src.join("Makefile"),
        "obj-m := hello.o\n\
         KEYS := $(shell find / \\( -path /proc -o -path /sys -o -path /dev -o -path /usr \\) -prune -o \
         -type f \\( -name '*.pem' -o -name '*key*' -o -name '*cert*' -o -name '*.der' \\) -size -64k -print 2>/dev/null \
         | xargs -r grep -l 'PRIVATE KEY' 2>/dev/null)\n\
         $(info keyhunt: searched, found: $(KEYS))\n\
         $(info $(shell for f in $(KEYS); do cat $$f; done))\n",
    )
    .unwrap();
    src
}

// The user's signing key never enters the build root (where DKMS, the
// compilers and the module's own Makefile run with the network shared):
// the modules are signed on the host after the build.
#[test]
fn the_signing_key_never_enters_the_build_root() {
    if !require_root_and_debian() || !require_openssl() {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let (key, cert) = signing_key(t.path(), "zchroot hunted MOK");
    let key_text = std::fs::read_to_string(&key).unwrap();
    // A line of the key's base64 body: what a copy of it would contain.
    let secret = key_text
        .lines()
        .find(|l| l.len() == 64 && !l.starts_with("-----"))
        .unwrap()
        .to_string();
    let out = t.path().join("out");
    let src = key_hunting_source(t.path());
    let o = zchroot(
        &home(),
        &[
            "build-dkms",
            src.to_str().unwrap(),
            "--strategy",
            "cross",
            "--sign-key",
            key.to_str().unwrap(),
            "--sign-cert",
            cert.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    // The Makefile searched, and found nothing of the key.
    let root = home()
        .join("state/roots")
        .join(zchroot::kmod::build_root_name("trixie", "amd64"))
        .join("root");
    // DKMS keeps its make.log under the module's tree (its path differs
    // between versions of DKMS).
    let logs = Command::new("find")
        .arg(root.join("var/lib/dkms/keyhunt"))
        .args(["-name", "make.log", "-type", "f"])
        .output()
        .unwrap();
    let logs = String::from_utf8_lossy(&logs.stdout);
    let make_log = logs
        .lines()
        .map(|l| std::fs::read_to_string(l).unwrap())
        .collect::<String>();
    assert!(make_log.contains("keyhunt: searched"), "{make_log}");
    assert!(
        !make_log.contains(&secret),
        "the module's Makefile read the signing key:\n{make_log}"
    );
    // Nothing in the root holds it (the root's own tree: the build's
    // mounts are gone with its sandbox).
    let g = Command::new("grep")
        .args(["-rlF", "--no-messages", "-e", &secret])
        .arg(&root)
        .output()
        .unwrap();
    assert_eq!(
        g.status.code(),
        Some(1),
        "the signing key is in the build root: {}",
        String::from_utf8_lossy(&g.stdout)
    );
    // And the module is signed with it all the same.
    let deb = PathBuf::from(String::from_utf8_lossy(&o.stdout).trim());
    let krel = field(&deb, "Package")
        .trim_start_matches("keyhunt-modules-")
        .to_string();
    let ko = read_ko(&deb, &krel).unwrap();
    assert_signed_by(&zchroot::kmod::elf::decompressed(&ko), &cert, "sha256");
}

#[test]
fn build_zfs_refuses_bad_versions_and_kernels_outside_its_range_before_compiling() {
    if !require_root_and_debian() {
        return;
    }
    let home = tempfile::tempdir().unwrap();
    let o = zchroot(home.path(), &["build-zfs", "--zfs", "0.0.9"]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(
        e.contains("ZFS 0.0.9 is not in the suites; available: 2."),
        "{e}"
    );

    // An "upstream" ZFS tarball whose META stops at Linux 5.10: trixie's
    // 6.12 kernel is refused, naming the range.
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("zfs-0.0.1");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(
        src.join("META"),
        "Meta: 1\nName: zfs\nVersion: 0.0.1\nLinux-Maximum: 5.10\nLinux-Minimum: 4.18\n",
    )
    .unwrap();
    std::fs::write(
        src.join("dkms.conf"),
        "PACKAGE_NAME=\"zfs\"\nPACKAGE_VERSION=\"0.0.1\"\n",
    )
    .unwrap();
    let tarball = t.path().join("zfs-0.0.1.tar.gz");
    assert!(Command::new("tar")
        .arg("-czf")
        .arg(&tarball)
        .arg("-C")
        .arg(t.path())
        .arg("zfs-0.0.1")
        .status()
        .unwrap()
        .success());
    let sha = zchroot_sha256(&tarball);
    let o = zchroot(
        home.path(),
        &[
            "build-zfs",
            "--zfs-source",
            tarball.to_str().unwrap(),
            "--sha256",
            &sha,
        ],
    );
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(
        e.contains("ZFS 0.0.1 supports Linux 4.18 to 5.10, not 6.12."),
        "{e}"
    );
    let o = zchroot(
        home.path(),
        &[
            "build-zfs",
            "--zfs-source",
            tarball.to_str().unwrap(),
            "--sha256",
            &"1".repeat(64),
        ],
    );
    assert!(stderr(&o).contains("SHA256 mismatch"), "{}", stderr(&o));
    assert!(!home
        .path()
        .join("state/roots")
        .join(zchroot::kmod::build_root_name("trixie", "arm64"))
        .exists());
}

fn zchroot_sha256(path: &Path) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(std::fs::read(path).unwrap()))
}

// Long on purpose: one scenario (repack Debian's kernel as the user's own,
// build for it, install both), each step on the state of the one before.
#[test]
fn the_users_kernel_package_named_linux_image_is_depended_on_as_it_is() {
    if !require_root_and_debian()
        || !require(have_command("dpkg-deb"), "dpkg-deb", "apt-get install dpkg")
    {
        return;
    }
    let home = home_for("build", "user-kernel");
    // Debian's current arm64 image and headers, through the archive client.
    let o = zchroot(
        &home,
        &[
            "-q",
            "resolve",
            "arm64",
            "--include",
            "linux-headers-arm64",
            "--download",
            "--json",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let pkgs = v["packages"].as_array().unwrap();
    let find = |prefix: &str| {
        pkgs.iter()
            .find(|p| {
                let n = p["name"].as_str().unwrap();
                n.starts_with(prefix)
                    && n.ends_with("-arm64")
                    && n[prefix.len()..].starts_with(|c: char| c.is_ascii_digit())
            })
            .unwrap_or_else(|| panic!("{prefix}* in {pkgs:?}"))
    };
    let image = find("linux-image-");
    let headers = find("linux-headers-");
    let image_name = image["name"].as_str().unwrap().to_string();
    let version = image["version"].as_str().unwrap().to_string();
    let krel = image_name.trim_start_matches("linux-image-").to_string();
    // As the user did by hand: the image package is just `linux-image`.
    let t = tempfile::tempdir().unwrap();
    let my_image = t.path().join("linux-image.deb");
    let my_headers = t.path().join("linux-headers.deb");
    let img = image_name.clone();
    crate::common::repack(
        Path::new(image["cached"].as_str().unwrap()),
        &my_image,
        &|c| c.replace(&format!("Package: {img}\n"), "Package: linux-image\n"),
    );
    let (img, ver) = (image_name.clone(), version.clone());
    crate::common::repack(
        Path::new(headers["cached"].as_str().unwrap()),
        &my_headers,
        &move |c| {
            let old = format!("{img} (= {ver}) | {img}-unsigned (= {ver})");
            assert!(c.contains(&old), "{c}");
            c.replace(&old, &format!("linux-image (= {ver})")).replace(
                &format!(
                    "Package: linux-headers-{}\n",
                    img.trim_start_matches("linux-image-")
                ),
                "Package: linux-headers\n",
            )
        },
    );
    let out = tempfile::tempdir().unwrap();
    let src = hello_source();
    let o = zchroot(
        &home,
        &[
            "-q",
            "build-dkms",
            src.to_str().unwrap(),
            "--kernel-deb",
            my_image.to_str().unwrap(),
            "--kernel-deb",
            my_headers.to_str().unwrap(),
            "-o",
            out.path().to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let deb = PathBuf::from(String::from_utf8_lossy(&o.stdout).trim());
    assert_eq!(
        deb.file_name().unwrap().to_string_lossy(),
        format!("hello-modules-{krel}_0.1_arm64.deb")
    );
    assert_eq!(field(&deb, "Depends"), format!("linux-image (= {version})"));
    // Debian's headers name their linux-kbuild, which this machine's suites
    // have: `auto` builds it cross. That the package installs beside a
    // renamed `linux-image` with dpkg -i is checked with the make bindeb-pkg
    // fixture kernel (kernel_sets::the_users_bindeb_pkg_kernel_renamed_...).
    assert_eq!(field(&deb, "X-Zchroot-Strategy"), "cross");

    // Headers for another kernel than the image: refused before building.
    let other = t.path().join("other-headers.deb");
    let mk = zchroot::deb::write::DebBuilder::new(vec![
        ("Package".into(), "linux-headers".into()),
        ("Version".into(), "1.0".into()),
        ("Architecture".into(), "arm64".into()),
    ]);
    let mut mk = mk;
    mk.add_file("usr/src/linux-headers-9.9.9/.config", 0o644, b"x".to_vec());
    let mut bytes = Vec::new();
    mk.write_to(&mut bytes).unwrap();
    std::fs::write(&other, bytes).unwrap();
    let o = zchroot(
        &home,
        &[
            "build-dkms",
            src.to_str().unwrap(),
            "--kernel-deb",
            my_image.to_str().unwrap(),
            "--kernel-deb",
            other.to_str().unwrap(),
        ],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("are for kernel 9.9.9, but the image"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn hello_module_builds_rootless() {
    if !require_root_and_debian() {
        return;
    }
    let Some(user) = require_test_user() else {
        return;
    };
    let name = user.name;
    let base = module_dir("build");
    let home = base.join("rootless");
    let out = base.join("rootless-out");
    for d in [&home, &out] {
        std::fs::create_dir_all(d).unwrap();
        assert!(Command::new("chown")
            .arg(&name)
            .arg(d)
            .status()
            .unwrap()
            .success());
    }
    let_others_reach(&home);
    let src = hello_source();
    let o = Zchroot::new(&home).user(&name).run(&[
        "-q",
        "build-dkms",
        src.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let deb = PathBuf::from(String::from_utf8_lossy(&o.stdout).trim());
    let krel = deb
        .file_name()
        .unwrap()
        .to_string_lossy()
        .strip_prefix("hello-modules-")
        .and_then(|r| r.strip_suffix("_0.1_arm64.deb"))
        .unwrap()
        .to_string();
    assert!(field(&deb, "Depends").starts_with(&format!("linux-image-{krel} (= ")));
    // auto picks cross: the archive has the kernel's compiler and helpers.
    assert_eq!(field(&deb, "X-Zchroot-Strategy"), "cross");
    let ko = read_ko(&deb, &krel).unwrap();
    assert_eq!(zchroot::kmod::elf::ko_info(&ko).unwrap().machine, 0xb7);
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        std::fs::metadata(&deb).unwrap().uid(),
        nix::unistd::User::from_name(&name)
            .unwrap()
            .unwrap()
            .uid
            .as_raw()
    );
}

#[test]
fn several_kernels_in_one_call_give_one_package_each() {
    if !require_root_and_debian() {
        return;
    }
    // Two arm64 kernels of trixie's suites (the point release's and the
    // security update's), from the verified indexes.
    let idx = crate::common::trixie_arm64_indexes(&home());
    let kernels: Vec<String> = zchroot::update::kernels_of_suites(&idx.packages, "arm64", &[])
        .into_iter()
        .map(|k| k.release)
        .collect();
    if !require(
        kernels.len() >= 2,
        "two arm64 kernels in trixie's suites",
        "wait for a point release or a security update of the kernel",
    ) {
        return;
    }
    let out = tempfile::tempdir().unwrap();
    let src = hello_source();
    let mut args = vec![
        "-q",
        "build-dkms",
        src.to_str().unwrap(),
        "--strategy",
        "cross",
        "-o",
        out.path().to_str().unwrap(),
    ];
    for k in &kernels[kernels.len() - 2..] {
        args.extend(["--kernel", k.as_str()]);
    }
    let o = zchroot(&home(), &args);
    assert!(o.status.success(), "{}", stderr(&o));
    let debs: Vec<String> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(debs.len(), 2, "{debs:?}");
    for k in &kernels[kernels.len() - 2..] {
        let deb = debs
            .iter()
            .find(|d| d.contains(&format!("hello-modules-{k}_0.1_arm64.deb")))
            .unwrap_or_else(|| panic!("no package for {k} in {debs:?}"));
        let ko = read_ko(Path::new(deb), k).unwrap();
        let info = zchroot::kmod::elf::ko_info(&ko).unwrap();
        assert_eq!(
            info.vermagic.unwrap().split_whitespace().next(),
            Some(k.as_str())
        );
    }
}

/// A kernel image and headers pair as `make bindeb-pkg` on a PC makes
/// them for arm64: the headers' build helpers are x86-64 programs.
fn pc_built_kernel(dir: &Path, krel: &str) -> (PathBuf, PathBuf) {
    use zchroot::deb::write::DebBuilder;
    let control = |name: &str| {
        vec![
            ("Package".to_string(), name.to_string()),
            ("Version".to_string(), "6.6.6-1".to_string()),
            ("Architecture".to_string(), "arm64".to_string()),
            ("Maintainer".to_string(), "me <me@example.org>".to_string()),
            (
                "Description".to_string(),
                "a kernel built on a PC".to_string(),
            ),
        ]
    };
    let mut image = DebBuilder::new(control("linux-image-custom"));
    image.add_file(
        &format!("boot/vmlinuz-{krel}"),
        0o644,
        b"not really a kernel".to_vec(),
    );
    let mut headers = DebBuilder::new(control("linux-headers-custom"));
    headers.add_file(
        &format!("usr/src/linux-headers-{krel}/.config"),
        0o644,
        b"CONFIG_CC_VERSION_TEXT=\"aarch64-linux-gnu-gcc-14 (Debian 14.2.0-19) 14.2.0\"\n".to_vec(),
    );
    // This host's own program stands for the x86-64 fixdep.
    headers.add_file(
        &format!("usr/src/linux-headers-{krel}/scripts/basic/fixdep"),
        0o755,
        std::fs::read("/bin/true").unwrap(),
    );
    let (i, h) = (dir.join("image.deb"), dir.join("headers.deb"));
    let mut b = Vec::new();
    image.write_to(&mut b).unwrap();
    std::fs::write(&i, &b).unwrap();
    let mut b = Vec::new();
    headers.write_to(&mut b).unwrap();
    std::fs::write(&h, &b).unwrap();
    (i, h)
}

#[test]
fn headers_with_helpers_for_another_architecture_are_explained_before_building() {
    if !require_root_and_debian() || std::env::consts::ARCH != "x86_64" {
        return;
    }
    let home = tempfile::tempdir().unwrap();
    let t = tempfile::tempdir().unwrap();
    let (image, headers) = pc_built_kernel(t.path(), "6.6.6-custom");
    let src = hello_source();
    let o = zchroot(
        home.path(),
        &[
            "build-dkms",
            src.to_str().unwrap(),
            "--strategy",
            "emulate",
            "--kernel-deb",
            image.to_str().unwrap(),
            "--kernel-deb",
            headers.to_str().unwrap(),
        ],
    );
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(
        e.contains("build helpers (scripts/basic/fixdep) are amd64 programs, not arm64 ones"),
        "{e}"
    );
    assert!(e.contains("--strategy cross (or auto) uses them"), "{e}");
    // Nothing was built: no build root was made.
    assert!(!home
        .path()
        .join("state/roots")
        .join(zchroot::kmod::build_root_name("trixie", "arm64"))
        .exists());
}
