//! `zchroot update` and the repository, for real: a target for arm64 trixie
//! with the tiny hello module, kernels from the real archive, and a board
//! stand-in (an arm64 root made by `zchroot create`) that follows the
//! repository served by `zchroot repo serve` with apt.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use crate::require::{have_debian_network, require};

fn home() -> PathBuf {
    // The build tests' home: the build roots are made once for both.
    let h = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("build-tests/root");
    std::fs::create_dir_all(&h).unwrap();
    h
}

fn zchroot(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_zchroot"))
        .args(args)
        .env("ZCHROOT_HOME", home())
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr)
}

fn ok(o: Output) -> String {
    assert!(o.status.success(), "{}", text(&o));
    text(&o)
}

/// `zchroot repo serve` on a free port of 127.0.0.1; killed on drop.
struct Served {
    child: Child,
    url: String,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(name: &str) -> Served {
    let mut child = Command::new(env!("CARGO_BIN_EXE_zchroot"))
        .args(["repo", "serve", name, "--listen", "127.0.0.1:0"])
        .env("ZCHROOT_HOME", home())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    // "serving DIR on http://127.0.0.1:PORT/"
    let url = line.trim().rsplit(' ').next().unwrap().to_string();
    assert!(url.starts_with("http://127.0.0.1:"), "{line}");
    Served { child, url }
}

/// Runs a shell command in the board stand-in, with the repository key
/// directory bound.
fn on_board(keys: &Path, script: &str) -> Output {
    let bind = format!("{}:/zchroot-keys:ro", keys.display());
    zchroot(&[
        "-q",
        "run",
        "board-stand-in",
        "--bind",
        &bind,
        "--",
        "sh",
        "-c",
        script,
    ])
}

/// trixie's arm64 indexes (all its suites), verified, through `home`'s cache.
pub fn trixie_arm64_indexes(home: &Path) -> zchroot::archive::update::Indexes {
    let m = zchroot::manifest::Manifests::embedded();
    let t = zchroot::target::Target::new(
        &m,
        &zchroot::target::TargetSpec {
            arch: "arm64".into(),
            release: "trixie".into(),
            variant: "minbase".into(),
            ..Default::default()
        },
    )
    .unwrap();
    let dirs = zchroot::paths::DataDirs {
        state: home.join("state"),
        cache: home.join("cache"),
    };
    let f = t
        .fetcher(
            &dirs,
            zchroot::archive::fetch::FetchOptions::default(),
            &zchroot::report::Silent,
        )
        .unwrap();
    t.update(&f, &zchroot::report::Silent).unwrap()
}

fn summary(out: &str) -> (usize, usize, usize) {
    // "board: kernels seen N, built N, already there N, failed N; ..."
    let line = out
        .lines()
        .find(|l| l.starts_with("update-test: kernels seen"))
        .unwrap_or_else(|| panic!("no summary in {out}"));
    let num = |key: &str| -> usize {
        line.split(key)
            .nth(1)
            .unwrap()
            .trim()
            .split([',', ';'])
            .next()
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    };
    (num("kernels seen"), num("built"), num("already there"))
}

#[test]
fn update_builds_each_new_kernel_once_and_the_board_follows_the_repository() {
    if !require(
        nix::unistd::geteuid().is_root(),
        "root",
        "run the tests as root, as CI does",
    ) || !require(
        have_debian_network(),
        "the Debian archive (network)",
        "run where deb.debian.org answers",
    ) {
        return;
    }
    let module = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/hello-dkms");
    let module = module.to_str().unwrap();
    let repo_dir = home().join("state/repos/update-test");
    let _ = std::fs::remove_dir_all(&repo_dir);

    // The archive must be as the test describes it: trixie-security
    // carries one arm64 kernel that trixie itself does not.
    let idx = trixie_arm64_indexes(&home());
    let main = zchroot::update::kernels_of_suites(&idx.packages, "arm64", &["trixie".into()]);
    let both = zchroot::update::kernels_of_suites(
        &idx.packages,
        "arm64",
        &["trixie".into(), "trixie-security".into()],
    );
    if !require(
        main.len() == 1 && both.len() == 2,
        "trixie-security carrying one arm64 kernel newer than trixie's",
        "wait until the archive has a kernel security update again (after a point release it may not)",
    ) {
        return;
    }

    // The test target, following these of trixie's suites.
    let follow = |suites: &str| {
        ok(zchroot(&[
            "target",
            "add",
            "update-test",
            "--arch",
            "arm64",
            "--suite",
            "trixie",
            "--module",
            module,
            "--suites",
            suites,
            "--force",
        ]))
    };

    // Only trixie itself: its kernel.
    follow("trixie");
    let out = ok(zchroot(&["-q", "update", "update-test"]));
    let (seen, built, present) = summary(&out);
    assert_eq!((seen, built, present), (1, 1, 0), "{out}");
    let old_kernel = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("built for "))
        .unwrap()
        .to_string();

    // The board stand-in: an arm64 root that trusts the repository's key
    // and follows it.
    let _ = zchroot(&["-q", "destroy", "board-stand-in"]);
    ok(zchroot(&[
        "-q",
        "create",
        "arm64",
        "--name",
        "board-stand-in",
    ]));
    let served = serve("update-test");
    let key = zchroot(&["repo", "key", "update-test", "--url", &served.url]);
    let lines = text(&key);
    assert!(key.status.success(), "{lines}");
    let keys = tempfile::tempdir().unwrap();
    std::fs::write(keys.path().join("key.asc"), &key.stdout).unwrap();
    let sources = lines
        .split("\n\n")
        .find(|p| p.starts_with("Types: deb"))
        .unwrap_or_else(|| panic!("no sources entry in {lines}"));
    assert!(
        sources.contains(&format!("URIs: {}", served.url)),
        "{sources}"
    );
    std::fs::write(keys.path().join("zchroot.sources"), format!("{sources}\n")).unwrap();
    assert!(
        lines.contains("apt-get install hello-modules-arm64"),
        "{lines}"
    );

    let setup = "set -e; mkdir -p /etc/apt/keyrings; \
        cp /zchroot-keys/key.asc /etc/apt/keyrings/zchroot-update-test.asc; \
        cp /zchroot-keys/zchroot.sources /etc/apt/sources.list.d/zchroot-update-test.sources; \
        apt-get update -q";
    ok(on_board(keys.path(), setup));
    // The board takes the kernel metapackage of trixie and the module
    // package through the repository's metapackage.
    let meta_version = ok(on_board(
        keys.path(),
        "apt-cache show linux-image-arm64 | sed -n 's/^Version: //p' | sort -V | head -n1",
    ));
    let meta_version = meta_version.trim();
    let install = format!(
        "set -e; export DEBIAN_FRONTEND=noninteractive INITRD=No; \
         apt-get install -y -q --no-install-recommends linux-image-arm64={meta_version} hello-modules-arm64; \
         dpkg-query -W -f '${{Status}} ${{Version}}\\n' hello-modules-{old_kernel}; \
         ls /usr/lib/modules/{old_kernel}/updates/dkms/"
    );
    let out = ok(on_board(keys.path(), &install));
    assert!(out.contains("install ok installed 0.1"), "{out}");
    assert!(out.contains("hello.ko"), "{out}");

    // trixie-security carries a newer kernel the repository lacks: the
    // board's apt keeps the kernel metapackage back. (`apt upgrade`, that
    // is apt-get upgrade --with-new-pkgs: a new kernel is a new package.)
    let out = ok(on_board(keys.path(), "apt-get -s upgrade --with-new-pkgs"));
    let kept = out
        .split("kept back:")
        .nth(1)
        .unwrap_or_else(|| panic!("nothing kept back: {out}"));
    assert!(
        kept.lines()
            .nth(1)
            .unwrap_or("")
            .contains("linux-image-arm64"),
        "{out}"
    );

    // Following trixie-security too: exactly one more build...
    follow("trixie,trixie-security");
    let out = ok(zchroot(&["-q", "update", "update-test"]));
    assert_eq!(summary(&out), (2, 1, 1), "{out}");
    // ...and a third run builds nothing, quickly.
    let t = std::time::Instant::now();
    let out = ok(zchroot(&["-q", "update", "update-test"]));
    assert_eq!(summary(&out), (2, 0, 2), "{out}");
    eprintln!("update with nothing new: {:?}", t.elapsed());

    // Now the kernel and its module upgrade together.
    let out = ok(on_board(
        keys.path(),
        "apt-get update -q && apt-get -s upgrade --with-new-pkgs",
    ));
    assert!(!out.contains("kept back"), "{out}");
    assert!(out.contains("Inst linux-image-arm64 "), "{out}");
    assert!(out.contains("Inst hello-modules-arm64 "), "{out}");

    // A tampered index in the repository makes the board's apt refuse it.
    let packages = repo_dir.join("public/dists/trixie/main/binary-arm64");
    for f in ["Packages", "Packages.xz"] {
        let p = packages.join(f);
        let mut b = std::fs::read(&p).unwrap();
        let n = b.len();
        b[n / 2] ^= 0x20;
        std::fs::write(&p, b).unwrap();
    }
    let o = on_board(
        keys.path(),
        // (The board forgets the index it has, as a new board would not have it.)
        "rm -f /var/lib/apt/lists/127.0.0.1*; apt-get update -q -o APT::Update::Error-Mode=any",
    );
    assert!(
        !o.status.success(),
        "apt accepted a tampered index: {}",
        text(&o)
    );
    let t = text(&o);
    assert!(
        t.contains("Hash Sum mismatch") || t.contains("File has unexpected size"),
        "{t}"
    );

    drop(served);
    ok(zchroot(&["-q", "destroy", "board-stand-in"]));
    ok(zchroot(&["target", "remove", "update-test"]));
}

#[test]
fn targets_are_files_with_clear_errors() {
    let h = tempfile::tempdir().unwrap();
    let z = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_zchroot"))
            .args(args)
            .env("ZCHROOT_HOME", h.path())
            .output()
            .unwrap()
    };
    let o = z(&["update"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o).contains("help: zchroot target add"),
        "{}",
        text(&o)
    );
    let o = z(&["target", "show", "nope"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("no target 'nope'"), "{}", text(&o));
    ok(z(&["target", "add", "b1", "--suites", "trixie,nonesuch"]));
    assert!(h.path().join("config/targets/b1.toml").exists());
    let listing = ok(z(&["target", "list"]));
    assert!(listing.starts_with("b1 "), "{listing}");
    let o = z(&["target", "add", "b1"]);
    assert!(text(&o).contains("--force"), "{}", text(&o));
    let o = z(&["-q", "update", "b1"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o).contains("suite 'nonesuch' is not one of trixie's"),
        "{}",
        text(&o)
    );
    // A hand-edited file with a typo names it.
    std::fs::write(
        h.path().join("config/targets/b1.toml"),
        "arch = \"arm64\"\nsuite = \"trixie\"\nmodul = \"zfs\"\n",
    )
    .unwrap();
    let o = z(&["-q", "update", "b1"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("modul"), "{}", text(&o));
    let o = z(&["repo", "serve", "b1"]);
    assert_eq!(o.status.code(), Some(1));
    ok(z(&["target", "remove", "b1"]));
    assert!(!h.path().join("config/targets/b1.toml").exists());
}

#[test]
fn the_timer_units_pass_systemd_analyze_verify() {
    if !require(
        crate::require::have_command("systemd-analyze"),
        "systemd-analyze",
        "apt-get install systemd",
    ) {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let exe = Path::new(env!("CARGO_BIN_EXE_zchroot"));
    let (service, timer) = zchroot::update::timer_units(exe, "daily", Some(Path::new("/tmp/z")));
    std::fs::write(d.path().join("zchroot-update.service"), service).unwrap();
    std::fs::write(d.path().join("zchroot-update.timer"), timer).unwrap();
    let o = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(d.path().join("zchroot-update.timer"))
        .arg(d.path().join("zchroot-update.service"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let t = text(&o);
    assert!(
        !t.contains("zchroot-update"),
        "warnings about our units: {t}"
    );

    // Without a running systemd, --install-timer prints the crontab line.
    if !Path::new("/run/systemd/system").is_dir() {
        let h = tempfile::tempdir().unwrap();
        let o = Command::new(exe)
            .args(["update", "--install-timer"])
            .env("ZCHROOT_HOME", h.path())
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", text(&o));
        assert!(text(&o).contains(" -q update"), "{}", text(&o));
        assert!(text(&o).contains("crontab"), "{}", text(&o));
    }
}
