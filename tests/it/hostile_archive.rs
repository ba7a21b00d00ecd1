//! A hostile or stale archive, signed with a key the manifest trusts: an
//! index that names a path as a hash, signatures by keys expired or revoked
//! since, a Release dated in the future or older than one seen before, a
//! package that unpacks to far more than its Installed-Size or to more
//! entries than it allows, and one whose control member is dpkg's file list.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime};

use crate::archive::{pkg, suite, Archive, Key, NativeArchive, SuiteSpec};
use crate::common::{
    have_userns, is_root, let_others_reach, require, require_test_user, Zchroot, ZCHROOT,
};
use crate::env::Env;

fn one_suite() -> Vec<SuiteSpec> {
    vec![suite(
        "stable",
        vec![
            pkg("base-files", "13").essential(),
            pkg("hello", "1.0").field("Priority", "optional"),
        ],
    )]
}

#[test]
fn an_index_naming_a_path_as_a_hash_is_refused_and_deletes_nothing() {
    let mut u = one_suite();
    u[0].packages
        .push(pkg("evil", "1.0").index_sha256("../../victim/x"));
    let env = Env::new(&u);
    // blobs is HOME/cache/blobs: the "hash" points at HOME/victim/x.
    let victim = env.home.path().join("victim/x");
    std::fs::create_dir_all(victim.parent().unwrap()).unwrap();
    std::fs::write(&victim, b"precious").unwrap();
    let e = env.download(&["evil"]).unwrap_err();
    // Old code removed it as a damaged cache entry.
    assert_eq!(
        std::fs::read(&victim).ok().as_deref(),
        Some(&b"precious"[..]),
        "the victim was touched: {e}"
    );
    assert!(
        e.contains("/dists/stable/main/binary-arm64/by-hash/SHA256/"),
        "the error names the index: {e}"
    );
    assert!(
        e.contains("package evil: bad SHA256 \"../../victim/x\": expected 64 hex digits"),
        "{e}"
    );
    assert!(!env.home.path().join("victim/x.partial").exists());
    assert!(
        env.final_blobs().iter().all(|n| n.len() == 64),
        "{:?}",
        env.final_blobs()
    );
}

#[test]
fn a_symlink_in_place_of_a_partial_download_is_not_followed() {
    let env = Env::new(&one_suite());
    let hello = one_suite()[0]
        .packages
        .iter()
        .find(|p| p.name == "hello")
        .unwrap()
        .clone();
    let hash = crate::archive::sha256_hex(&Archive::build_deb(&hello));
    let victim = env.home.path().join("victim");
    std::fs::write(&victim, b"precious").unwrap();
    std::fs::create_dir_all(env.blobs()).unwrap();
    std::os::unix::fs::symlink(&victim, env.blobs().join(format!("{hash}.partial"))).unwrap();
    let paths = env.download(&["hello"]).unwrap();
    // Old code resumed "the partial" by appending to the victim.
    assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
    let got = paths.iter().find(|p| p.ends_with(&hash)).unwrap();
    assert_eq!(
        crate::archive::sha256_hex(&std::fs::read(got).unwrap()),
        hash
    );
}

#[test]
fn a_signature_by_a_key_expired_since_it_signed_fails() {
    let now = SystemTime::now();
    // Made 30 days ago, expired an hour ago; the suite signed two hours ago.
    let key = Key::generate_expiring(
        "expired since",
        now - Duration::from_secs(30 * 86400),
        Duration::from_secs(30 * 86400 - 3600),
    );
    let mut u = one_suite();
    u[0].date = now - Duration::from_secs(7200);
    let env = Env::with_keys(&u, &key, &key);
    let e = env.resolve(&[]).unwrap_err();
    assert!(
        e.contains("dists/stable/InRelease: signature check failed: the signing key has expired or been revoked since it signed the file"),
        "{e}"
    );
    assert!(e.contains("help: "), "{e}");
}

#[test]
fn a_signature_by_a_key_revoked_since_it_signed_fails() {
    let key = Key::generate("revoked since");
    let revoked = key.revoked_now();
    // Signed an hour ago (default date), by a key revoked now.
    let env = Env::with_keys(&one_suite(), &key, &revoked);
    let e = env.resolve(&[]).unwrap_err();
    assert!(
        e.contains("dists/stable/InRelease: signature check failed: the signing key has expired or been revoked since it signed the file"),
        "{e}"
    );
    assert!(e.contains("revoked"), "{e}");
    // The same archive with the key unrevoked is fine.
    let env = Env::with_keys(&one_suite(), &key, &key);
    env.resolve(&[]).unwrap();
}

#[test]
fn a_release_dated_in_the_future_fails() {
    let now = SystemTime::now();
    let mut u = one_suite();
    u[0].date = now + Duration::from_secs(86400);
    u[0].signed_at = Some(now - Duration::from_secs(60));
    let env = Env::new(&u);
    let e = env.resolve(&[]).unwrap_err();
    assert!(
        e.contains("dists/stable/InRelease: the Release file is dated"),
        "{e}"
    );
    assert!(
        e.contains("in the future (now is") && e.contains("the clock or the mirror is wrong"),
        "{e}"
    );
    // A few seconds ahead (clock skew) is fine.
    let mut u = one_suite();
    u[0].date = now + Duration::from_secs(5);
    u[0].signed_at = Some(now - Duration::from_secs(60));
    Env::new(&u).resolve(&[]).unwrap();
}

#[test]
fn an_older_release_than_seen_before_is_refused() {
    let key = Key::generate("replayed archive");
    let now = SystemTime::now();
    let mut u = one_suite();
    u[0].valid_until = None;
    u[0].date = now - Duration::from_secs(3600);
    let env = Env::with_keys(&u, &key, &key);
    env.resolve(&[]).unwrap();
    // The same file again is fine.
    env.resolve(&[]).unwrap();
    // An older, validly signed InRelease (no Valid-Until) is a replay.
    u[0].date = now - Duration::from_secs(2 * 86400);
    env.archive.add_suite(&key, &u[0]);
    let e = env.resolve(&[]).unwrap_err();
    assert!(
        e.contains("dists/stable/InRelease: the InRelease file is dated"),
        "{e}"
    );
    assert!(
        e.contains("seen before: a mirror out of date or a replay"),
        "{e}"
    );
    assert!(e.contains("\nhelp: "), "{e}");
    assert!(
        e.contains(&env.dirs().state.join("archive-dates").display().to_string()),
        "{e}"
    );
    // Still refused on the next run: the date is kept in the state dir.
    assert!(env.resolve(&[]).is_err());
    // A newer one is accepted.
    u[0].date = now - Duration::from_secs(60);
    env.archive.add_suite(&key, &u[0]);
    env.resolve(&[]).unwrap();
}

/// 64 MiB of zeros in a package whose index says it installs 10 KiB.
fn bomb(arch: &str) -> crate::archive::Pkg {
    pkg("bomb", "1.0")
        .essential()
        .arch(arch)
        .field("Installed-Size", "10")
        .file("usr/share/bomb/zeros", 0o644, &vec![0u8; 64 << 20])
}

#[test]
fn a_package_unpacks_no_more_than_its_installed_size_allows() {
    let mut u = one_suite();
    u[0].packages.push(bomb("arm64"));
    let env = Env::new(&u);
    let debs = env.download(&["bomb"]).unwrap();
    let t = env.target(&["bomb"]).unwrap();
    let f = t
        .fetcher(&env.dirs(), Env::opts(), &zchroot::report::Silent)
        .unwrap();
    let idx = t.update(&f, &zchroot::report::Silent).unwrap();
    let p = idx.packages.iter().find(|p| p.name == "bomb").unwrap();
    assert_eq!(p.installed_size, Some(10));
    let deb = debs
        .iter()
        .find(|d| d.file_name().unwrap().to_str() == Some(&p.sha256.to_string()))
        .unwrap();
    assert!(
        std::fs::metadata(deb).unwrap().len() < 1 << 20,
        "a small .deb"
    );
    let root = tempfile::tempdir().unwrap();
    let e = zchroot::deb::extract_data_with(deb, root.path(), &p.extract_limit())
        .unwrap_err()
        .to_string();
    let limit = 10 * 1024 + (16 << 20);
    assert_eq!(
        e,
        format!("bomb: unpacks to more than {limit} bytes (Installed-Size says 10 KiB)")
    );
    // The partly written file is gone, and no more than the limit was ever on disk.
    assert!(du(root.path()) < 1 << 20, "{:?}", walk(root.path()));
    assert!(
        !walk(root.path()).iter().any(|n| n.contains("zeros")),
        "{:?}",
        walk(root.path())
    );
    // Without an index, the package's own control file bounds it the same way.
    let root = tempfile::tempdir().unwrap();
    let e = zchroot::deb::extract_data(deb, root.path())
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("bomb: unpacks to more than"), "{e}");
}

#[test]
fn create_refuses_a_package_that_unpacks_past_its_installed_size() {
    if !require(
        is_root() || have_userns(),
        "user namespaces",
        "run as root, or where user namespaces are allowed",
    ) {
        return;
    }
    let served = NativeArchive::serve(
        "zchroot bomb archive",
        vec![pkg("base-files", "13").essential(), bomb("amd64")],
    );
    let manifests = &served.manifests;
    let home = tempfile::tempdir().unwrap();
    let o = Zchroot::new(home.path())
        .command(&["-q", "--manifests"])
        .arg(manifests)
        .args(["create", "amd64", "--suite", "test", "--name", "bombed"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("bomb: unpacks to more than 16787456 bytes (Installed-Size says 10 KiB)"),
        "{err}"
    );
    let roots = home.path().join("state/roots");
    assert!(
        walk(&roots).is_empty(),
        "staging left behind: {:?}",
        walk(&roots)
    );
}

#[test]
fn a_rootless_create_refuses_a_package_that_unpacks_past_its_installed_size() {
    // The limit must reach the extraction run in the user namespace.
    let Some(u) = require_test_user() else {
        return;
    };
    let served = NativeArchive::serve(
        "zchroot bomb archive",
        vec![pkg("base-files", "13").essential(), bomb("amd64")],
    );
    let (archive, manifests) = (&served.archive, &served.manifests);
    let home = tempfile::tempdir().unwrap();
    for d in [archive.dir.path(), home.path()] {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    assert!(Command::new("chown")
        .arg(&u.name)
        .arg(home.path())
        .status()
        .unwrap()
        .success());
    let_others_reach(home.path());
    let_others_reach(&manifests.join("test.toml"));
    let_others_reach(Path::new(ZCHROOT));
    let o = Zchroot::new(home.path())
        .user(&u.name)
        .command(&["-q", "--manifests"])
        .arg(manifests)
        .args(["create", "amd64", "--suite", "test", "--name", "bombed"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("bomb: unpacks to more than 16787456 bytes (Installed-Size says 10 KiB)"),
        "{err}"
    );
    let roots = home.path().join("state/roots");
    assert!(
        walk(&roots).is_empty(),
        "staging left behind: {:?}",
        walk(&roots)
    );
}

/// Creates a root of the packages `served` from its suite `test`, as root
/// or in a user namespace: the exit code and stderr.
fn create(served: &NativeArchive, name: &str) -> (Option<i32>, String, tempfile::TempDir) {
    let home = tempfile::tempdir().unwrap();
    let o = Zchroot::new(home.path())
        .command(&["-q", "--manifests"])
        .arg(&served.manifests)
        .args(["create", "amd64", "--suite", "test", "--name", name])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    (o.status.code(), err, home)
}

/// Small essential packages unpacked in parallel with a hostile one.
fn bystanders() -> Vec<crate::archive::Pkg> {
    ["aa", "bb", "cc", "dd"]
        .into_iter()
        .map(|n| pkg(n, "1").essential())
        .collect()
}

#[test]
fn create_refuses_a_package_of_more_entries_than_its_installed_size_allows() {
    if !require(
        is_root() || have_userns(),
        "user namespaces",
        "run as root, or where user namespaces are allowed",
    ) {
        return;
    }
    // 10,000 empty files, which add nothing to Installed-Size: 0.
    let mut bomb = pkg("entrybomb", "1.0")
        .essential()
        .field("Installed-Size", "0");
    for i in 0..10_000 {
        bomb = bomb.file(&format!("usr/share/entrybomb/{i}"), 0o644, b"");
    }
    let mut packages = vec![pkg("base-files", "13").essential(), bomb];
    packages.extend(bystanders());
    let served = NativeArchive::serve("zchroot entry bomb archive", packages);
    let (code, err, home) = create(&served, "bombed");
    // Old code unpacked it (and failed later, for want of a shell).
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains(
            "entrybomb_1.0_amd64.deb: entrybomb: has more than 10000 entries (files, directories, links), \
             more than its Installed-Size of 0 KiB allows (2 entries per KiB and 10000 more)"
        ),
        "{err}"
    );
    let roots = home.path().join("state/roots");
    assert!(
        walk(&roots).is_empty(),
        "staging left behind: {:?}",
        walk(&roots)
    );
}

#[test]
fn create_reports_the_package_too_large_among_several_unpacked_in_parallel() {
    if !require(
        is_root() || have_userns(),
        "user namespaces",
        "run as root, or where user namespaces are allowed",
    ) {
        return;
    }
    let mut packages = vec![pkg("base-files", "13").essential(), bomb("amd64")];
    packages.extend(bystanders());
    let served = NativeArchive::serve("zchroot bomb archive", packages);
    let (code, err, _home) = create(&served, "bombed");
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("bomb_1.0_amd64.deb: bomb: unpacks to more than 16787456 bytes (Installed-Size says 10 KiB)"),
        "{err}"
    );
    assert!(!err.contains("unpacking stopped after an error"), "{err}");
}

#[test]
fn create_refuses_a_package_whose_control_member_is_its_file_list() {
    if !require(
        is_root() || have_userns(),
        "user namespaces",
        "run as root, or where user namespaces are allowed",
    ) {
        return;
    }
    let mut b = zchroot::deb::DebBuilder::new(vec![
        ("Package".into(), "evil".into()),
        ("Version".into(), "1.0".into()),
        ("Architecture".into(), "amd64".into()),
        ("Maintainer".into(), "T <t@example.invalid>".into()),
        ("Description".into(), "claims /etc/passwd".into()),
    ]);
    b.add_file("usr/share/doc/evil/README", 0o644, b"evil\n".to_vec());
    // dpkg would remove /etc/passwd with the package.
    b.add_control_file("list", 0o644, b"/etc/passwd\n".to_vec());
    let mut evil = pkg("evil", "1.0").essential();
    let mut raw = Vec::new();
    b.write_to(&mut raw).unwrap();
    evil.raw = Some(raw);
    let mut packages = vec![pkg("base-files", "13").essential(), evil];
    packages.extend(bystanders());
    let served = NativeArchive::serve("zchroot list archive", packages);
    let (code, err, home) = create(&served, "listed");
    // Old code unpacked it with /etc/passwd in info/evil.list (and failed
    // later, for want of a shell).
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("evil: "), "{err}");
    assert!(
        err.contains(
            "control member entry \"./list\" is not acceptable: \
             dpkg keeps its own list of the package's files under this name"
        ),
        "{err}"
    );
    let roots = home.path().join("state/roots");
    assert!(
        walk(&roots).is_empty(),
        "staging left behind: {:?}",
        walk(&roots)
    );
}

/// Every path under `dir`, relative.
fn walk(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd {
            let e = e.unwrap();
            let p = e.path();
            out.push(p.strip_prefix(dir).unwrap().display().to_string());
            if e.file_type().unwrap().is_dir() {
                todo.push(p);
            }
        }
    }
    out
}

/// Bytes of regular files under `dir`.
fn du(dir: &Path) -> u64 {
    walk(dir)
        .iter()
        .map(|r| std::fs::symlink_metadata(dir.join(r)).unwrap())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum()
}
