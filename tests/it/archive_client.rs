//! The archive client against the test archive: resolving (alternatives,
//! provides, versions, suites, conflicts), verified downloads into the
//! cache, every way a signature, a hash or a Release can be wrong, faults
//! of the connection; and `zchroot resolve` on top.

use std::path::Path;

use crate::archive::{self, pkg, suite, Archive, Key, Pkg, SuiteSpec};
use crate::common::Zchroot;
use crate::env::Env;
use crate::server::Fault;

/// `zchroot ARGS` with a home under `env`'s that the library calls leave alone.
fn zchroot(env: &Env, args: &[&str]) -> std::process::Output {
    Zchroot::new(env.home.path().join("z")).run(args)
}

/// A package of [`universe`] by name, with all its fields.
fn universe_pkg(name: &str) -> Pkg {
    universe()
        .into_iter()
        .flat_map(|s| s.packages)
        .find(|p| p.name == name)
        .unwrap()
}

fn names(v: &[(String, String, String)]) -> Vec<&str> {
    v.iter().map(|(n, _, _)| n.as_str()).collect()
}

fn flip_byte(path: &Path, offset_from_end: usize) {
    let mut b = std::fs::read(path).unwrap();
    let i = b.len() - offset_from_end;
    b[i] ^= 0x01;
    std::fs::write(path, b).unwrap();
}

/// A universe that exercises the resolver.
fn universe() -> Vec<SuiteSpec> {
    vec![
        suite(
            "stable",
            vec![
                pkg("base-files", "13.1")
                    .essential()
                    .depends("libc6 (>= 2.36)"),
                pkg("libc6", "2.36-1"),
                pkg("app", "1.0").depends(
                    "no-such-package | alt-b, awk, libfoo (>= 2), py:any, data-all (>= 1)",
                ),
                pkg("alt-b", "1.0"),
                pkg("gawk", "1:5.2")
                    .provides("awk")
                    .field("Priority", "optional"),
                pkg("mawk", "1.3.4")
                    .provides("awk")
                    .field("Priority", "important"),
                pkg("libfoo-old", "1.0").provides("libfoo"),
                pkg("libfoo-compat", "1.0").provides("libfoo (= 2.5)"),
                pkg("py", "3.13").field("Multi-Arch", "allowed"),
                pkg("data-all", "1.0").arch("all"),
                pkg("xx", "1.0").field("Conflicts", "yy"),
                pkg("yy", "1.0"),
                pkg("needs-new", "1.0").depends("libc6 (>= 3)"),
                pkg("wants-any", "1.0").depends("notallowed:any"),
                pkg("notallowed", "1.0"),
                pkg("breaker", "1.0").field("Breaks", "libc6 (<< 2.36-2)"),
            ],
        ),
        suite("stable-security", vec![pkg("libc6", "2.36-2")]),
    ]
}

#[test]
fn resolves_alternatives_provides_versions_and_suites() {
    let env = Env::new(&universe());
    let got = env.resolve(&["app"]).unwrap();
    assert_eq!(
        names(&got),
        [
            "alt-b",
            "app",
            "base-files",
            "data-all",
            "libc6",
            "libfoo-compat",
            "mawk",
            "py"
        ]
    );
    let libc = got.iter().find(|(n, _, _)| n == "libc6").unwrap();
    assert_eq!(
        (libc.1.as_str(), libc.2.as_str()),
        ("2.36-2", "stable-security")
    );
    // Indexes came through by-hash, never the plain path.
    let by_hash = std::fs::read_dir(
        env.archive
            .root()
            .join("dists/stable/main/binary-arm64/by-hash/SHA256"),
    )
    .unwrap()
    .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
    .map(|h| format!("debian/dists/stable/main/binary-arm64/by-hash/SHA256/{h}"))
    .map(|p| env.server.requests(&p))
    .sum::<usize>();
    assert_eq!(by_hash, 1);
    assert_eq!(
        env.server
            .requests("debian/dists/stable/main/binary-arm64/Packages.xz"),
        0
    );
}

#[test]
fn breaks_and_conflicts_inside_the_set_name_both_packages() {
    let env = Env::new(&universe());
    let e = env.resolve(&["xx", "yy"]).unwrap_err();
    assert!(
        e.contains("xx 1.0 conflicts with 'yy', which yy 1.0 matches"),
        "{e}"
    );
    // libc6 2.36-2 wins, so breaker's Breaks (<< 2.36-2) does not hit.
    assert!(env.resolve(&["breaker"]).is_ok());
    let mut u = universe();
    u.pop(); // without the security update, libc6 is 2.36-1
    let env = Env::new(&u);
    let e = env.resolve(&["breaker"]).unwrap_err();
    assert!(
        e.contains("breaker 1.0 breaks 'libc6 (<< 2.36-2)', which libc6 2.36-1 matches"),
        "{e}"
    );
}

#[test]
fn unsatisfiable_and_unknown_packages_are_named_with_the_chain() {
    let env = Env::new(&universe());
    let e = env.resolve(&["needs-new"]).unwrap_err();
    assert!(
        e.contains("cannot satisfy 'libc6 (>= 3)', needed by needs-new ← (requested)"),
        "{e}"
    );
    assert!(e.contains("libc6 2.36-2"), "{e}");
    let e = env.resolve(&["wants-any"]).unwrap_err();
    assert!(e.contains("cannot satisfy 'notallowed:any'"), "{e}");
    let e = env.resolve(&["nonexistent"]).unwrap_err();
    assert_eq!(
        e,
        "unknown package 'nonexistent': it is in none of stable, stable-security for arm64"
    );
    let e = env.resolve(&["awk"]).unwrap_err();
    assert!(
        e.contains("'awk' is a virtual package provided by gawk, mawk"),
        "{e}"
    );
}

#[test]
fn downloads_verify_into_the_cache_and_reuse_it() {
    let env = Env::new(&universe());
    let paths = env.download(&["app"]).unwrap();
    assert_eq!(paths.len(), 8);
    for p in &paths {
        let name = p.file_name().unwrap().to_string_lossy();
        assert_eq!(archive::sha256_hex(&std::fs::read(p).unwrap()), name);
    }
    let app = universe_pkg("app");
    let url = format!("debian/pool/main/a/app/{}", app.deb_name());
    assert_eq!(env.server.requests(&url), 1);
    env.download(&["app"]).unwrap();
    assert_eq!(
        env.server.requests(&url),
        1,
        "a cached file is not fetched again"
    );
}

#[test]
fn a_changed_byte_in_a_deb_fails_and_leaves_nothing_final() {
    let env = Env::new(&universe());
    let app = universe_pkg("app");
    flip_byte(&env.pool_path(&app), 10);
    let e = env.download(&["app"]).unwrap_err();
    assert!(e.contains(&app.deb_name()), "{e}");
    assert!(e.contains("SHA256 mismatch"), "{e}");
    let good = archive::sha256_hex(&Archive::build_deb(&app));
    assert!(!env.final_blobs().contains(&good));
    assert!(!env.blobs().join(format!("{good}.partial")).exists());
}

#[test]
fn a_changed_byte_in_a_packages_index_fails() {
    let env = Env::new(&universe());
    let dir = env.archive.root().join("dists/stable/main/binary-arm64");
    let xz = std::fs::read(dir.join("Packages.xz")).unwrap();
    let hash = archive::sha256_hex(&xz);
    flip_byte(&dir.join("by-hash/SHA256").join(&hash), 30);
    let e = env.resolve(&[]).unwrap_err();
    assert!(e.contains(&format!("by-hash/SHA256/{hash}")), "{e}");
    assert!(e.contains("SHA256 mismatch"), "{e}");
    // Named as a Debian user names an index, not only by its hash.
    assert!(
        e.starts_with("stable main/binary-arm64/Packages.xz: SHA256 mismatch"),
        "{e}"
    );
    assert!(
        !env.final_blobs().contains(&hash),
        "{:?}",
        env.final_blobs()
    );
}

#[test]
fn a_changed_byte_in_the_inrelease_body_fails_the_signature() {
    let env = Env::new(&universe());
    let path = env.archive.root().join("dists/stable/InRelease");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replacen("Label: Test", "Label: Tesu", 1)).unwrap();
    let e = env.resolve(&[]).unwrap_err();
    assert!(
        e.contains("dists/stable/InRelease: signature check failed"),
        "{e}"
    );
    assert!(e.contains("bad signature"), "{e}");
    assert!(env.final_blobs().is_empty());
}

#[test]
fn a_missing_signature_fails() {
    let env = Env::new(&universe());
    let d = env.archive.root().join("dists/stable");
    std::fs::copy(d.join("Release"), d.join("InRelease")).unwrap();
    let e = env.resolve(&[]).unwrap_err();
    assert!(
        e.contains("dists/stable/InRelease: signature check failed: not a cleartext-signed file"),
        "{e}"
    );
}

#[test]
fn a_signature_by_an_unknown_key_fails() {
    let signer = Key::generate("someone else");
    let trusted = Key::generate("the key we trust");
    let env = Env::with_keys(&universe(), &signer, &trusted);
    let e = env.resolve(&[]).unwrap_err();
    assert!(
        e.contains("dists/stable/InRelease: signature check failed"),
        "{e}"
    );
    assert!(e.contains("signed only by unknown keys"), "{e}");
    assert!(e.contains("help: "), "{e}");
}

#[test]
fn a_signature_by_an_expired_key_fails() {
    use std::time::{Duration, SystemTime};
    // The key was created two years ago and expired a year ago.
    let key = Key::generate_expired("old key");
    // Signed now: the key is expired at the signature's time.
    let env = Env::with_keys(&universe(), &key, &key);
    let e = env.resolve(&[]).unwrap_err();
    assert!(
        e.contains("dists/stable/InRelease: signature check failed: bad signature"),
        "{e}"
    );
    // Signed while the key was valid, but the Release says it was made now:
    // the key must be valid at the Release's Date.
    let mut u = universe();
    for s in &mut u {
        s.signed_at = Some(SystemTime::now() - Duration::from_secs(400 * 86400));
    }
    let env = Env::with_keys(&u, &key, &key);
    let e = env.resolve(&[]).unwrap_err();
    assert!(
        e.contains("no signing key was valid at the file's Date"),
        "{e}"
    );
}

#[test]
fn an_expired_valid_until_fails() {
    let mut u = universe();
    u[0].valid_until = Some(std::time::SystemTime::now() - std::time::Duration::from_secs(60));
    let env = Env::new(&u);
    let e = env.resolve(&[]).unwrap_err();
    assert!(
        e.contains("dists/stable/InRelease: the Release file expired at"),
        "{e}"
    );
}

#[test]
fn a_release_for_another_suite_fails() {
    let env = Env::new(&universe());
    let d = env.archive.root().join("dists");
    // Serve stable's (validly signed) files under the name "stable-security".
    std::fs::remove_dir_all(d.join("stable-security")).unwrap();
    std::fs::create_dir(d.join("stable-security")).unwrap();
    std::fs::copy(
        d.join("stable/InRelease"),
        d.join("stable-security/InRelease"),
    )
    .unwrap();
    let e = env.resolve(&[]).unwrap_err();
    assert!(
        e.contains("asked for suite 'stable-security' but the Release file is for Suite 'stable'"),
        "{e}"
    );
}

#[test]
fn a_truncated_download_fails_after_retries() {
    let env = Env::new(&universe());
    let app = universe_pkg("app");
    let url = format!("debian/pool/main/a/app/{}", app.deb_name());
    env.server.fault(&url, Fault::Truncate(100));
    let e = env.download(&["app"]).unwrap_err();
    assert!(e.contains(&app.deb_name()), "{e}");
    assert!(
        env.server.requests(&url) >= 3,
        "retried: {}",
        env.server.requests(&url)
    );
    let good = archive::sha256_hex(&Archive::build_deb(&app));
    assert!(!env.final_blobs().contains(&good));
}

#[test]
fn a_connection_dropped_mid_file_resumes() {
    let env = Env::new(&universe());
    let app = universe_pkg("app");
    let url = format!("debian/pool/main/a/app/{}", app.deb_name());
    env.server.fault(&url, Fault::DropOnce(200));
    let paths = env.download(&["app"]).unwrap();
    let good = archive::sha256_hex(&Archive::build_deb(&app));
    assert!(
        paths.iter().any(|p| p.ends_with(&good)),
        "{good} not in {paths:?}"
    );
    assert_eq!(env.server.requests(&url), 2);
    assert_eq!(
        env.server.range_requests(&url),
        1,
        "the second request resumed"
    );
}

#[test]
fn by_hash_missing_falls_back_to_the_plain_path() {
    let env = Env::new(&universe());
    let d = env
        .archive
        .root()
        .join("dists/stable/main/binary-arm64/by-hash");
    std::fs::remove_dir_all(&d).unwrap();
    assert!(env.resolve(&["app"]).is_ok());
    assert_eq!(
        env.server
            .requests("debian/dists/stable/main/binary-arm64/Packages.xz"),
        1
    );
}

#[test]
fn a_missing_file_says_which_file_of_which_suite_and_the_url() {
    // A suite the mirror lacks.
    let env = Env::new(&universe());
    std::fs::remove_file(env.archive.root().join("dists/stable-security/InRelease")).unwrap();
    let e = env.resolve(&[]).unwrap_err();
    let url = format!("{}/debian/dists/stable-security/InRelease", env.server.base);
    assert!(
        e.starts_with(&format!(
            "suite 'stable-security' (its InRelease) is not on the mirror: {url} answered HTTP 404 Not Found"
        )),
        "{e}"
    );
    assert!(e.contains("\nhelp: check the mirror's address"), "{e}");
    assert!(!e.contains("unsupported URL"), "{e}");

    // An index the Release lists, gone from by-hash and its plain path.
    let env = Env::new(&universe());
    let dir = env.archive.root().join("dists/stable/main/binary-arm64");
    std::fs::remove_dir_all(dir.join("by-hash")).unwrap();
    std::fs::remove_file(dir.join("Packages.xz")).unwrap();
    let e = env.resolve(&[]).unwrap_err();
    assert!(
        e.starts_with("stable main/binary-arm64/Packages.xz is not on the mirror: "),
        "{e}"
    );
    assert!(
        e.contains(&format!(
            "{}/debian/dists/stable/main/binary-arm64/Packages.xz answered HTTP 404",
            env.server.base
        )),
        "{e}"
    );

    // A package the index lists, gone from the pool.
    let env = Env::new(&universe());
    let app = universe_pkg("app");
    std::fs::remove_file(env.pool_path(&app)).unwrap();
    let e = env.download(&["app"]).unwrap_err();
    assert!(
        e.starts_with(&format!(
            "app 1.0 ({}, stable main) is not on the mirror: {}/debian/pool/main/a/app/{} answered HTTP 404 Not Found",
            app.deb_name(),
            env.server.base,
            app.deb_name()
        )),
        "{e}"
    );
}

#[test]
fn gz_index_is_accepted_without_xz() {
    let mut u = universe();
    u[0].by_hash = false;
    let env = Env::new(&u);
    // Rewrite the Release of "stable" without the .xz entry, re-signed.
    let d = env.archive.root().join("dists/stable");
    std::fs::remove_file(d.join("main/binary-arm64/Packages.xz")).unwrap();
    assert!(env.resolve(&[]).is_err(), "xz listed but missing must fail");
}

#[test]
fn cli_resolve_prints_json_and_text() {
    let env = Env::new(&universe());
    let m = env.manifests.to_str().unwrap();
    let out = zchroot(
        &env,
        &[
            "-q",
            "--manifests",
            m,
            "resolve",
            "arm64",
            "--suite",
            "test",
            "--include",
            "app",
            "--json",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<_> = v["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "alt-b",
            "app",
            "base-files",
            "data-all",
            "libc6",
            "libfoo-compat",
            "mawk",
            "py"
        ]
    );
    let out = zchroot(
        &env,
        &[
            "-q",
            "--manifests",
            m,
            "resolve",
            "arm64",
            "--suite",
            "test",
            "--download",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.lines()
            .any(|l| l == "libc6 2.36-2 arm64 stable-security"),
        "{text}"
    );
}

#[test]
fn cli_bad_input_exits_1_names_what_exists_and_writes_nothing() {
    let env = Env::new(&universe());
    let cases: [(&[&str], &str); 4] = [
        (
            &["resolve", "arm46"],
            "unknown architecture 'arm46': known are amd64, arm64, armhf, riscv64",
        ),
        (
            &["resolve", "arm64", "--suite", "jessie"],
            "unknown release 'jessie': known are bookworm, trixie",
        ),
        (
            &["resolve", "arm64", "--variant", "huge"],
            "unknown variant 'huge' of trixie: known are buildd, minbase",
        ),
        (
            &["resolve", "arm64", "--mirror", "ftp://x/debian"],
            "--mirror ftp://x/debian: ftp:// is not supported",
        ),
    ];
    for (args, msg) in cases {
        let out = zchroot(&env, args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(msg), "{args:?}: {err}");
        assert!(
            !env.home.path().join("z").exists(),
            "{args:?} wrote to ZCHROOT_HOME"
        );
    }
    let m = env.manifests.to_str().unwrap();
    let out = zchroot(
        &env,
        &[
            "-q",
            "--manifests",
            m,
            "resolve",
            "arm64",
            "--suite",
            "test",
            "--include",
            "nope",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown package 'nope'"));
}

#[test]
fn an_older_inrelease_is_refused_under_another_name_of_the_same_archive() {
    use std::time::{Duration, SystemTime};
    let key = Key::generate("renamed archive");
    let now = SystemTime::now();
    let mut u = vec![suite("stable", vec![pkg("base-files", "13.1").essential()])];
    u[0].valid_until = None;
    u[0].date = now - Duration::from_secs(3600);
    let env = Env::with_keys(&u, &key, &key);
    assert!(
        env.server.base.starts_with("http://127.0.0.1:"),
        "{}",
        env.server.base
    );
    env.resolve(&[]).unwrap();
    // The same archive, reached as localhost, serves an older InRelease
    // (validly signed, no Valid-Until): a replay all the same.
    let other = env.server.base.replace("127.0.0.1", "localhost");
    env.archive.manifests(&other, &["stable"], &key);
    u[0].date = now - Duration::from_secs(2 * 86400);
    env.archive.add_suite(&key, &u[0]);
    let before = env.server.requests("debian/dists/stable/InRelease");
    let e = env.resolve(&[]).unwrap_err();
    assert_eq!(
        env.server.requests("debian/dists/stable/InRelease"),
        before + 1,
        "{e}"
    );
    assert!(
        e.starts_with(&other) && e.contains("/dists/stable/InRelease: the InRelease file is dated"),
        "{e}"
    );
    assert!(
        e.contains("seen before: a mirror out of date or a replay"),
        "{e}"
    );
    // A newer one is accepted there, and then the older is refused at
    // the first name too.
    u[0].date = now - Duration::from_secs(60);
    env.archive.add_suite(&key, &u[0]);
    env.resolve(&[]).unwrap();
    env.archive.manifests(&env.server.base, &["stable"], &key);
    u[0].date = now - Duration::from_secs(1800);
    env.archive.add_suite(&key, &u[0]);
    let e = env.resolve(&[]).unwrap_err();
    assert!(e.contains("seen before"), "{e}");
}
