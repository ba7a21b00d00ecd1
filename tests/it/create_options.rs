//! `create`'s options as mmdebstrap users know them (`--components`,
//! `--include PKG=VERSION`, hooks, `--aptopt`/`--dpkgopt`), against a signed
//! native (amd64) test archive served on 127.0.0.1. Its roots are the
//! host's dash (with its libc) and a dpkg and an apt-get, shell scripts that
//! only record what they were asked and which options were in effect:
//! enough for `create` to finish, in seconds, without qemu.

use std::path::{Path, PathBuf};

use crate::archive::{pkg, suite, Archive, Key, NativeArchive, Pkg};
use crate::common::{
    have_userns, is_root, let_others_reach, require, require_test_user, stderr, stdout, zchroot,
    zchroot_as,
};

/// The host's files a test root is made of (Debian amd64: dash is
/// Essential there), by their path in the root.
const HOST_FILES: [(&str, &str); 3] = [
    ("usr/bin/sh", "/usr/bin/dash"),
    (
        "usr/lib/x86_64-linux-gnu/libc.so.6",
        "/usr/lib/x86_64-linux-gnu/libc.so.6",
    ),
    (
        "usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
        "/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
    ),
];

/// `cat FILE >> LOG`, with the shell's builtins only.
fn append(file: &str, log: &str) -> String {
    format!(
        "[ -e {file} ] && while IFS= read -r l; do printf '%s\\n' \"$l\"; done < {file} >> {log}\n"
    )
}

/// A script that records its name, arguments and the options file in
/// effect when it runs.
fn recorder(name: &str, options: &str, log: &str) -> String {
    format!(
        "#!/bin/sh\necho \"{name} $*\" >> {log}\n{}exit 0\n",
        append(options, log)
    )
}

/// Root (or user namespaces) and the host's dash and libc; else a loud skip.
fn ready() -> bool {
    require(
        is_root() || have_userns(),
        "root or user namespaces",
        "run the tests as root, as CI does",
    ) && require(
        HOST_FILES.iter().all(|(_, h)| Path::new(h).exists()),
        "dash and glibc of an amd64 Debian host",
        "run on amd64 Debian, as CI does",
    )
}

/// The Essential set of the test roots: dash as /bin/sh, and a dpkg and an
/// apt-get that record what they were asked.
fn base() -> Vec<Pkg> {
    let mut p = pkg("base-files", "13")
        .essential()
        .symlink(
            "usr/lib64/ld-linux-x86-64.so.2",
            "../lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
        )
        .file(
            "usr/bin/dpkg",
            0o755,
            recorder(
                "dpkg",
                "/etc/dpkg/dpkg.cfg.d/99zchroot",
                "/var/log/fake-dpkg.log",
            )
            .as_bytes(),
        )
        .file(
            "usr/bin/apt-get",
            0o755,
            recorder(
                "apt-get",
                "/etc/apt/apt.conf.d/99zchroot",
                "/var/log/fake-apt.log",
            )
            .as_bytes(),
        );
    for (inside, host) in HOST_FILES {
        p = p.file(inside, 0o755, &std::fs::read(host).unwrap());
    }
    vec![p]
}

/// Runs zchroot with the archive's manifests; `args` follow `create` or
/// `resolve` and the architecture.
fn run(served: &NativeArchive, home: &Path, command: &str, args: &[&str]) -> std::process::Output {
    let m = served.manifests.to_str().unwrap();
    let mut all = vec!["-q", "--manifests", m, command, "amd64", "--suite", "test"];
    all.extend_from_slice(args);
    zchroot(home, &all)
}

fn tree(home: &Path, name: &str) -> PathBuf {
    home.join("state/roots").join(name).join("root")
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Names in `dir` (empty when it does not exist).
fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// The version of `name` in the root's dpkg status (zchroot unpacks and
/// registers every package natively; the fake dpkg only configures).
fn version_in(tree: &Path, name: &str) -> Option<String> {
    let status = read(&tree.join("var/lib/dpkg/status"));
    status.split("\n\n").find_map(|stanza| {
        stanza
            .lines()
            .any(|l| l == format!("Package: {name}"))
            .then(|| {
                stanza
                    .lines()
                    .find_map(|l| l.strip_prefix("Version: "))
                    .unwrap_or_default()
                    .to_string()
            })
    })
}

#[test]
fn hooks_run_at_their_phases_on_the_host_and_inside() {
    if !ready() {
        return;
    }
    let hello = pkg("hello", "1.0");
    let mut packages = base();
    packages.push(hello.clone());
    let served = NativeArchive::serve("zchroot hooks archive", packages);
    let home = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let o = out.path().display().to_string();
    let r = run(
        &served,
        home.path(),
        "create",
        &[
            "--name",
            "hooked",
            "--include",
            "hello",
            "--setup-hook",
            &format!("echo \"$1\" > {o}/setup; ls \"$1\" > {o}/setup-ls"),
            "--essential-hook",
            &format!("cp \"$1/var/log/fake-dpkg.log\" {o}/essential-log"),
            "--essential-hook",
            "chroot:echo \"$ZCHROOT_HOOK $1\" > /essential-inside",
            "--customize-hook",
            &format!("echo \"$1 $ZCHROOT_HOOK $ZCHROOT_NAME $ZCHROOT_ARCH\" > {o}/customize"),
            "--customize-hook",
            "chroot:echo \"$ZCHROOT_HOOK $1\" > /customized",
        ],
    );
    assert_eq!(r.status.code(), Some(0), "{}", stderr(&r));

    // setup: the empty tree (merged-/usr links only), under staging.
    let staging = read(&out.path().join("setup")).trim().to_string();
    assert!(staging.ends_with("/root"), "{staging}");
    assert_ne!(Path::new(&staging), tree(home.path(), "hooked"));
    assert_eq!(
        read(&out.path().join("setup-ls"))
            .split_whitespace()
            .collect::<Vec<_>>(),
        ["bin", "lib", "lib64", "sbin", "usr"]
    );
    // essential: the Essential set was configured, the rest not yet.
    let at_essential = read(&out.path().join("essential-log"));
    assert!(
        at_essential.contains("dpkg --configure base-files\n"),
        "{at_essential}"
    );
    assert!(!at_essential.contains("--configure -a"), "{at_essential}");
    let whole = read(&tree(home.path(), "hooked").join("var/log/fake-dpkg.log"));
    assert!(whole.contains("dpkg --configure -a\n"), "{whole}");
    assert_eq!(
        version_in(&tree(home.path(), "hooked"), "hello").as_deref(),
        Some(hello.version.as_str())
    );
    // customize: same tree as setup, the environment as documented.
    assert_eq!(
        read(&out.path().join("customize")).trim(),
        format!("{staging} customize hooked amd64")
    );
    // Inside: as the root's own commands, with / as $1.
    let t = tree(home.path(), "hooked");
    assert_eq!(read(&t.join("essential-inside")), "essential /\n");
    assert_eq!(read(&t.join("customized")), "customize /\n");
}

#[test]
fn a_failing_hook_fails_create_names_the_hook_and_leaves_nothing() {
    if !ready() {
        return;
    }
    let served = NativeArchive::serve("zchroot failing hook archive", base());
    let home = tempfile::tempdir().unwrap();
    for (flag, hook) in [
        ("--setup-hook", "exit 7"),
        ("--customize-hook", "chroot:exit 9"),
    ] {
        let r = run(&served, home.path(), "create", &["--name", "h", flag, hook]);
        let err = stderr(&r);
        assert_eq!(r.status.code(), Some(1), "{err}");
        assert!(err.contains(&format!("{flag} '{hook}' failed")), "{err}");
        let code = if flag == "--setup-hook" { "7" } else { "9" };
        assert!(err.contains(&format!("exit status: {code}")), "{err}");
        assert_eq!(
            entries(&home.path().join("state/roots")),
            Vec::<String>::new(),
            "a half-made root was left behind"
        );
    }
    // A hook that cannot work is refused before anything is fetched.
    let r = run(
        &served,
        home.path(),
        "create",
        &["--setup-hook", "chroot:true"],
    );
    assert_eq!(r.status.code(), Some(1));
    assert!(stderr(&r).contains("at setup the root has no shell yet"));
}

#[test]
fn include_pins_a_version_and_options_are_in_effect_during_the_install() {
    if !ready() {
        return;
    }
    // hello 1.0 ships a manual page, which path-exclude leaves out.
    let old = pkg("hello", "1.0")
        .file("usr/share/man/man1/hello.1.gz", 0o644, b"man")
        .file("usr/share/doc/hello/copyright", 0o644, b"c");
    let new = pkg("hello", "2.0");
    let mut packages = base();
    packages.extend([old.clone(), new.clone()]);
    let served = NativeArchive::serve("zchroot pin archive", packages);
    let home = tempfile::tempdir().unwrap();
    let r = run(
        &served,
        home.path(),
        "create",
        &[
            "--name",
            "pinned",
            "--include",
            "hello=1.0",
            "--aptopt",
            "Acquire::Languages \"none\"",
            "--dpkgopt",
            "path-exclude=/usr/share/man/*",
        ],
    );
    assert_eq!(r.status.code(), Some(0), "{}", stderr(&r));
    let t = tree(home.path(), "pinned");
    let dpkg = read(&t.join("var/log/fake-dpkg.log"));
    assert_eq!(version_in(&t, "hello").as_deref(), Some("1.0"));
    assert_ne!(new.version, "1.0");
    // Both files are in the root, and the dpkg one was there when dpkg ran.
    assert!(dpkg.contains("\npath-exclude=/usr/share/man/*\n"), "{dpkg}");
    assert!(read(&t.join("etc/dpkg/dpkg.cfg.d/99zchroot"))
        .contains("\npath-exclude=/usr/share/man/*\n"));
    assert!(read(&t.join("etc/apt/apt.conf.d/99zchroot")).contains("Acquire::Languages \"none\";"));
    // The filter applied to the package zchroot unpacked: the page is gone,
    // the rest of the package and the directories stay.
    assert!(!t.join("usr/share/man/man1/hello.1.gz").exists());
    assert!(t.join("usr/share/man/man1").is_dir());
    assert_eq!(read(&t.join("usr/share/doc/hello/copyright")), "c");

    // Without a pin, the newest; a missing version names those there are.
    let r = run(&served, home.path(), "resolve", &["--include", "hello"]);
    assert!(
        stdout(&r).contains("hello 2.0 amd64 test"),
        "{}",
        stderr(&r)
    );
    let r = run(&served, home.path(), "resolve", &["--include", "hello=3.0"]);
    assert_eq!(r.status.code(), Some(1));
    assert!(
        stderr(&r).contains(
            "hello has no version 3.0 in test for amd64: available are 1.0 (test), 2.0 (test)"
        ),
        "{}",
        stderr(&r)
    );
}

#[test]
fn components_are_fetched_when_enabled_and_named_when_not() {
    if !ready() {
        return;
    }
    let mut packages = base();
    packages.push(pkg("firmware-x", "1.0").component("non-free-firmware"));
    let served = NativeArchive::serve("zchroot components archive", packages);
    let home = tempfile::tempdir().unwrap();
    let r = run(
        &served,
        home.path(),
        "resolve",
        &["--include", "firmware-x"],
    );
    assert_eq!(r.status.code(), Some(1));
    assert!(
        stderr(&r).contains(
            "unknown package 'firmware-x': it is in non-free-firmware, which is not enabled\nhelp: add --components main,non-free-firmware"
        ),
        "{}",
        stderr(&r)
    );
    let r = run(
        &served,
        home.path(),
        "create",
        &[
            "--name",
            "fw",
            "--components",
            "main,non-free-firmware",
            "--include",
            "firmware-x",
        ],
    );
    assert_eq!(r.status.code(), Some(0), "{}", stderr(&r));
    let t = tree(home.path(), "fw");
    assert_eq!(version_in(&t, "firmware-x").as_deref(), Some("1.0"));
    let sources = read(&t.join("etc/apt/sources.list.d/debian.sources"));
    assert!(
        sources.contains("\nComponents: main non-free-firmware\n"),
        "{sources}"
    );
    // A component the archive does not have is an error, not a silent skip.
    let r = run(
        &served,
        home.path(),
        "resolve",
        &["--components", "main,non-free"],
    );
    assert_eq!(r.status.code(), Some(1), "{}", stdout(&r));
    let err = stderr(&r);
    assert!(
        err.contains("non-free/binary-amd64") && err.contains("main non-free-firmware"),
        "{err}"
    );
}

#[test]
fn an_opt_in_suite_is_used_only_when_asked_for_and_only_where_needed() {
    // Two amd64 suites: `test`, and `test-backports`, which the release
    // lists as opt-in. Resolving needs no root: no skip.
    let key = Key::generate("zchroot backports archive");
    let archive = Archive::new();
    let amd64 = |mut v: Vec<Pkg>| {
        v.iter_mut().for_each(|p| p.arch = "amd64".into());
        v
    };
    let main = suite("test", amd64(vec![pkg("hello", "1.0")]));
    let bpo = suite(
        "test-backports",
        amd64(vec![pkg("hello", "2.0"), pkg("only-bpo", "1.0")]),
    );
    archive.add_suite_for(&key, &main, "amd64");
    archive.add_suite_for(&key, &bpo, "amd64");
    let server = crate::server::Server::start(archive.dir.path().to_owned());
    let manifests = archive.manifests(&server.base, &["test"], &key);
    let release = manifests.join("test.toml");
    let mut toml = read(&release);
    toml.push_str(&format!(
        "[[sources]]\nrole = \"archive\"\nmirror = \"{}/debian\"\nsuite = \"test-backports\"\ncomponents = [\"main\"]\noptional = true\n",
        server.base
    ));
    std::fs::write(&release, toml).unwrap();
    let home = tempfile::tempdir().unwrap();
    let resolve = |args: &[&str]| {
        let m = manifests.to_str().unwrap();
        let mut all = vec![
            "-q",
            "--manifests",
            m,
            "resolve",
            "amd64",
            "--suite",
            "test",
        ];
        all.extend_from_slice(args);
        zchroot(home.path(), &all)
    };
    let lines = |o: &std::process::Output| {
        assert_eq!(o.status.code(), Some(0), "{}", stderr(o));
        stdout(o).lines().map(String::from).collect::<Vec<_>>()
    };
    // Not asked for: not fetched.
    assert_eq!(
        lines(&resolve(&["--include", "hello"])),
        ["hello 1.0 amd64 test"]
    );
    let o = resolve(&["--include", "only-bpo"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("unknown package 'only-bpo': it is in test-backports, which is not enabled\nhelp: add --suites +test-backports"),
        "{}",
        stderr(&o)
    );
    // Asked for: a package there is only there; the rest stays as it was.
    assert_eq!(
        lines(&resolve(&[
            "--suites",
            "+test-backports",
            "--include",
            "hello,only-bpo"
        ])),
        ["hello 1.0 amd64 test", "only-bpo 1.0 amd64 test-backports"]
    );
    // ...unless asked for by version.
    assert_eq!(
        lines(&resolve(&[
            "--suites",
            "+test-backports",
            "--include",
            "hello=2.0"
        ])),
        ["hello 2.0 amd64 test-backports"]
    );
    let o = resolve(&["--suites", "+test-bpo"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o)
            .contains("unknown suite 'test-bpo' of test: known are test, +test-backports (opt-in)"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn rootless_hooks_reach_the_root_as_the_user_and_inside_as_its_root() {
    if !ready() || !crate::common::require_root("to run zchroot as the test user") {
        return;
    }
    let Some(u) = require_test_user() else {
        return;
    };
    let served = NativeArchive::serve("zchroot rootless hooks archive", base());
    let home = crate::common::module_dir("create_options").join("rootless");
    if home.exists() {
        let _ = zchroot_as(&u.name, &home, &["-q", "destroy", "--all"]);
        std::fs::remove_dir_all(&home).unwrap();
    }
    std::fs::create_dir_all(&home).unwrap();
    // The manifests where the user can read them.
    let manifests = home.join("manifests");
    assert!(std::process::Command::new("cp")
        .arg("-r")
        .arg(&served.manifests)
        .arg(&manifests)
        .status()
        .unwrap()
        .success());
    assert!(std::process::Command::new("chown")
        .args(["-R", &u.name])
        .arg(&home)
        .status()
        .unwrap()
        .success());
    let_others_reach(&home);
    let o = home.display().to_string();
    let r = zchroot_as(
        &u.name,
        &home,
        &[
            "-q",
            "--manifests",
            manifests.to_str().unwrap(),
            "create",
            "amd64",
            "--suite",
            "test",
            "--name",
            "r",
            "--setup-hook",
            &format!("echo \"$1\" > {o}/setup"),
            "--customize-hook",
            "echo host > \"$1/etc/from-host\"",
            "--customize-hook",
            "chroot:echo inside > /etc/from-inside",
        ],
    );
    assert_eq!(r.status.code(), Some(0), "{}", stderr(&r));
    let t = tree(&home, "r");
    assert!(read(&home.join("setup")).trim().ends_with("/root"));
    use std::os::unix::fs::MetadataExt;
    for (file, text) in [("etc/from-host", "host\n"), ("etc/from-inside", "inside\n")] {
        assert_eq!(read(&t.join(file)), text);
        // uid 0 inside is the user outside.
        assert_eq!(
            std::fs::metadata(t.join(file)).unwrap().uid(),
            u.uid,
            "{file}"
        );
    }
    let r = zchroot_as(&u.name, &home, &["-q", "destroy", "--all"]);
    assert!(r.status.success(), "{}", stderr(&r));
}
