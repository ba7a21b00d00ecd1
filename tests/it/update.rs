//! `zchroot update` and the repository, for real: a target for arm64 trixie
//! with the tiny hello module, kernels from the real archive, and a board
//! stand-in (an arm64 root made by `zchroot create`) that follows the
//! repository served by `zchroot repo serve` with apt.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};

use crate::archive::{pkg, NativeArchive};
use crate::common::{
    have_command, have_debian_network, home_for, ok, require, require_root_and_debian, text,
    trixie_arm64_indexes, Zchroot,
};

/// The update tests' own home (its build roots are made for it alone).
fn home() -> PathBuf {
    home_for("update", "root")
}

fn zchroot(args: &[&str]) -> Output {
    Zchroot::new(home()).run(args)
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
    let mut child = Zchroot::new(home())
        .command(&["repo", "serve", name, "--listen", "127.0.0.1:0"])
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

/// What `zchroot update --json` said of its one target.
struct Summary {
    seen: u64,
    built: Vec<String>,
    present: u64,
    failed: Vec<String>,
}

impl Summary {
    /// (kernels seen, built, already there).
    fn counts(&self) -> (u64, usize, u64) {
        (self.seen, self.built.len(), self.present)
    }
}

/// `zchroot -q update --json update-test`, which must succeed; its summary.
fn update() -> Summary {
    let o = zchroot(&["-q", "update", "--json", "update-test"]);
    assert!(o.status.success(), "{}", text(&o));
    let v = crate::json::json_of(&o, "update");
    let [s] = v.as_array().expect("a list of summaries").as_slice() else {
        panic!("one summary expected: {v}");
    };
    assert_eq!(s["target"], "update-test", "{s}");
    let strings = |key: &str| -> Vec<String> {
        s[key]
            .as_array()
            .unwrap_or_else(|| panic!("no {key} in {s}"))
            .iter()
            .map(|k| k.as_str().unwrap().to_string())
            .collect()
    };
    let summary = Summary {
        seen: s["seen"].as_u64().unwrap(),
        built: strings("built"),
        present: s["present"].as_u64().unwrap(),
        failed: strings("failed"),
    };
    assert!(summary.failed.is_empty(), "{s}");
    summary
}

// Long on purpose: one story of a board over several updates (first
// kernel, a security kernel held back, then followed, then a tampered
// index), each step on the state the one before left.
#[test]
fn update_builds_each_new_kernel_once_and_the_board_follows_the_repository() {
    if !require_root_and_debian() {
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
    let first = update();
    assert_eq!(first.counts(), (1, 1, 0), "{:?}", first.built);
    let old_kernel = first.built[0].clone();

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
    let second = update();
    assert_eq!(second.counts(), (2, 1, 1), "{:?}", second.built);
    assert!(!second.built.contains(&old_kernel), "{:?}", second.built);
    // ...and a third run builds nothing, quickly.
    let t = std::time::Instant::now();
    assert_eq!(update().counts(), (2, 0, 2));
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
    let z = |args: &[&str]| Zchroot::new(h.path()).run(args);
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
    ok(z(&["target", "add", "b1", "--no-archive-check"]));
    assert!(h.path().join("config/targets/b1.toml").exists());
    let listing = ok(z(&["target", "list"]));
    assert!(listing.starts_with("b1 "), "{listing}");
    let o = z(&["target", "add", "b1"]);
    assert!(text(&o).contains("--force"), "{}", text(&o));
    // A hand-edited file with a typo names it; update tells of it (and of
    // the other targets), target check too.
    let file = h.path().join("config/targets/b1.toml");
    std::fs::write(
        &file,
        "arch = \"arm64\"\nsuite = \"trixie\"\nmodul = \"zfs\"\n",
    )
    .unwrap();
    let o = z(&["-q", "update", "b1"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("modul"), "{}", text(&o));
    let o = z(&["target", "check", "b1"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("modul"), "{}", text(&o));
    // A file `update` cannot use: update says which file and key.
    std::fs::write(
        &file,
        "arch = \"arm64\"\nsuite = \"trixie\"\nsuites = [\"trixie\", \"nonesuch\"]\n",
    )
    .unwrap();
    let o = z(&["-q", "update", "b1"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o).contains(&format!(
            "error: b1: {}: suites: suite 'nonesuch' is not one of trixie's: known are trixie, trixie-updates, trixie-security",
            file.display()
        )),
        "{}",
        text(&o)
    );
    let o = z(&["repo", "serve", "b1"]);
    assert_eq!(o.status.code(), Some(1));
    ok(z(&["target", "remove", "b1"]));
    assert!(!h.path().join("config/targets/b1.toml").exists());
}

/// Runs a `target add` that must fail: exit status 1, the message, and
/// no target file (nor targets directory) written.
fn add_fails(home: &Path, args: &[&str], message: &str) {
    let mut all = vec!["-q", "target", "add", "board"];
    all.extend(args);
    let o = Zchroot::new(home).run(&all);
    assert_eq!(o.status.code(), Some(1), "{args:?}: {}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains(message), "{args:?}: {err}");
    assert!(
        !home.join("config/targets").exists(),
        "{args:?} wrote a target"
    );
}

#[test]
fn target_add_refuses_each_mistake_and_writes_nothing() {
    let h = tempfile::tempdir().unwrap();
    let home = h.path();
    let dir = home.display().to_string();
    add_fails(
        home,
        &["--arch", "arm46"],
        "error: --arch: unknown architecture 'arm46': known are amd64, arm64, armhf, riscv64",
    );
    add_fails(
        home,
        &["--suite", "trixy"],
        "error: --release: unknown release 'trixy': known are bookworm, trixie",
    );
    add_fails(
        home,
        &["--suites", "trixie,trixie-backports"],
        "error: --suites: suite 'trixie-backports' is not one of trixie's: known are trixie, trixie-updates, trixie-security",
    );
    add_fails(
        home,
        &["--kernel-deb-dir", "/nonexistent"],
        "error: --kernel-deb-dir: /nonexistent: No such file or directory",
    );
    add_fails(
        home,
        &["--module", "zfs-modules", "--no-archive-check"],
        "error: --module: 'zfs-modules' is neither zfs",
    );
    // A mirror that cannot be reached (or a scheme zchroot does not take).
    add_fails(home, &["--mirror", "https://x"], "--mirror");
    add_fails(
        home,
        &["--repo", &dir],
        "not a place to publish a repository",
    );
}

#[test]
fn target_add_looks_the_module_up_in_the_archive_unless_told_not_to() {
    let na = NativeArchive::serve("boards", vec![pkg("hello-dkms", "1.0-1")]);
    let h = tempfile::tempdir().unwrap();
    let m = na.manifests.display().to_string();
    let with = |args: &[&str]| {
        let mut all = vec![
            "--manifests",
            &m,
            "target",
            "add",
            "board",
            "--arch",
            "amd64",
        ];
        all.extend(args);
        all.extend(["--release", "test"]);
        all.into_iter().map(String::from).collect::<Vec<_>>()
    };
    let run = |args: &[&str]| Zchroot::new(h.path()).run(&with(args));
    let o = run(&["--module", "helo-dkms"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("error: --module: unknown module 'helo-dkms': no package helo-dkms in test for amd64; did you mean hello-dkms?"),
        "{}",
        text(&o)
    );
    let o = run(&["--module", "hello-dkms", "--flavour", "rpi"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("error: --flavour: unknown kernel flavour 'rpi'"),
        "{}",
        text(&o)
    );
    // An unreachable archive: refused, with the way to add it offline.
    let o = run(&[
        "--module",
        "hello-dkms",
        "--mirror",
        "http://127.0.0.1:1/debian",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("error: --mirror: cannot check the target against the archive: "),
        "{}",
        text(&o)
    );
    assert!(text(&o).contains("--no-archive-check"), "{}", text(&o));
    assert!(!h.path().join("config/targets").exists());
    ok(run(&[
        "--module",
        "hello-dkms",
        "--mirror",
        "http://127.0.0.1:1/debian",
        "--no-archive-check",
    ]));
    // The real archive has the module: added, and checked again.
    ok(run(&["--module", "hello-dkms", "--force"]));
    let file = h.path().join("config/targets/board.toml");
    let text_of = std::fs::read_to_string(&file).unwrap();
    assert!(text_of.contains("release = \"test\""), "{text_of}");
    let check = |args: &[&str]| {
        let mut all = vec!["-q", "--manifests", m.as_str(), "target", "check"];
        all.extend(args);
        Zchroot::new(h.path()).run(&all)
    };
    let out = ok(check(&[]));
    assert_eq!(out, format!("{}: ok\n", file.display()));
    // Edited by hand: each mistake named with the file and its key.
    std::fs::write(&file, text_of.replace("hello-dkms", "helo-dkms")).unwrap();
    let o = check(&["board"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let t = text(&o);
    assert!(
        t.contains(&format!(
            "error: {}: module: unknown module 'helo-dkms'",
            file.display()
        )),
        "{t}"
    );
    assert!(
        t.contains(&format!("help: give zfs, a *-dkms package of the release's suites, or a directory with a dkms.conf; fix module in {}", file.display())),
        "{t}"
    );
    ok(check(&["board", "--no-archive-check"]));
    std::fs::write(&file, text_of.replace("amd64", "arm46")).unwrap();
    let o = check(&["board", "--no-archive-check"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains(&format!(
            "{}: arch: unknown architecture 'arm46'",
            file.display()
        )),
        "{}",
        text(&o)
    );
}

#[test]
fn the_timer_units_pass_systemd_analyze_verify() {
    if !require(
        have_command("systemd-analyze"),
        "systemd-analyze",
        "apt-get install systemd",
    ) {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let exe = Path::new(crate::common::ZCHROOT);
    let (service, timer) = zchroot::update::timer_units(exe, "daily", Some(Path::new("/tmp/z")));
    std::fs::write(d.path().join("zchroot-update.service"), service).unwrap();
    std::fs::write(d.path().join("zchroot-update.timer"), timer).unwrap();
    let o = std::process::Command::new("systemd-analyze")
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
        let o = Zchroot::new(h.path()).run(&["update", "--install-timer"]);
        assert!(o.status.success(), "{}", text(&o));
        assert!(text(&o).contains(" -q update"), "{}", text(&o));
        assert!(text(&o).contains("crontab"), "{}", text(&o));
    }
}

/// Counts what a phase announced and what was done in it.
#[derive(Default)]
struct Counts {
    /// (total announced, items done) per phase, in order.
    phases: std::sync::Mutex<Vec<(u64, u64)>>,
}

impl zchroot::report::Reporter for Counts {
    fn phase(&self, _: zchroot::report::Phase, items: u64, _: u64) {
        self.phases.lock().unwrap().push((items, 0));
    }
    fn item_done(&self, _: &str) {
        if let Some(last) = self.phases.lock().unwrap().last_mut() {
            last.1 += 1;
        }
    }
}

#[test]
fn the_index_update_never_counts_past_its_total() {
    let na = NativeArchive::serve("counts", vec![pkg("hello-dkms", "1.0-1")]);
    let manifests = zchroot::manifest::Manifests::from_dir(&na.manifests).unwrap();
    let spec = zchroot::rootfs::spec::RootSpec {
        arch: "amd64".into(),
        release: "test".into(),
        variant: "minbase".into(),
        ..Default::default()
    };
    let recipe = zchroot::rootfs::spec::RootRecipe::new(&manifests, &spec).unwrap();
    let h = tempfile::tempdir().unwrap();
    let dirs = zchroot::paths::DataDirs {
        state: h.path().join("state"),
        cache: h.path().join("cache"),
    };
    let counts = Counts::default();
    let fetcher = recipe.fetcher(&dirs, Default::default(), &counts).unwrap();
    let indexes = recipe.update(&fetcher, &counts).unwrap();
    assert!(!indexes.packages.is_empty());
    let phases = counts.phases.lock().unwrap().clone();
    // The Release file of the one suite, then its Packages index: each
    // phase ends at its total, never past it.
    assert_eq!(phases, [(1, 1), (1, 1)]);
}

#[test]
fn target_add_suggests_the_module_the_real_archive_has() {
    if !require(
        have_debian_network(),
        "deb.debian.org",
        "run with network access to the Debian archive",
    ) {
        return;
    }
    // The update tests' home: its trixie indexes are cached there.
    let o = zchroot(&["-q", "target", "add", "typo", "--module", "zfs-dkmss"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("error: --module: unknown module 'zfs-dkmss': neither zfs, a directory with a dkms.conf, nor a *-dkms package; did you mean zfs-dkms?"),
        "{}",
        text(&o)
    );
    assert!(!home().join("config/targets/typo.toml").exists());
}
