//! Files zchroot writes or reads inside a root go through the confined
//! handle: a hostile package that ships symlinks to host files at the
//! places `create` writes (etc/hostname, etc/apt, dpkg's status) or reads
//! (the install log) cannot make a root-mode `create` write, chmod or read
//! anything outside the root.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::archive::{pkg, NativeArchive};
use crate::common::{have_userns, is_root, require, Zchroot};

#[test]
fn a_hostile_package_cannot_make_create_write_or_read_host_files() {
    if !require(
        is_root() || have_userns(),
        "root (the escape is worst as root) or user namespaces",
        "run the tests as root, as CI does",
    ) {
        return;
    }
    let host = tempfile::tempdir().unwrap();
    let victim = host.path().join("victim");
    std::fs::write(&victim, "host file\n").unwrap();
    std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o600)).unwrap();
    let victim_dir = host.path().join("victim-dir");
    std::fs::create_dir(&victim_dir).unwrap();
    let status = host.path().join("status");
    std::fs::write(&status, "host status\n").unwrap();
    let secret = host.path().join("secret");
    std::fs::write(&secret, "TOP-SECRET-4711\n").unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    let abs = |p: &Path| p.to_str().unwrap().to_string();

    let packages = vec![
        pkg("base-files", "13")
            .essential()
            .arch("amd64")
            .symlink("etc/hostname", &abs(&victim))
            .symlink("etc/apt", &abs(&victim_dir))
            // ...which resolves, inside the root, to this directory.
            .dir(abs(&victim_dir).trim_start_matches('/'), 0o755)
            .symlink("var/lib/dpkg/status", &abs(&status))
            // A relative climb out of the root, as far as it goes.
            .symlink(
                "var/lib/dpkg/available",
                "../../../../../../../../../../../../../../..",
            )
            .symlink("var/log/zchroot-create.log", &abs(&secret)),
        pkg("fake-dpkg", "1.0").essential().arch("amd64"),
    ];
    let served = NativeArchive::serve("zchroot hostile archive", packages);
    let manifests = &served.manifests;
    let home = tempfile::tempdir().unwrap();
    let o = Zchroot::new(home.path())
        .command(&["-q", "--manifests", manifests.to_str().unwrap()])
        .args(["create", "amd64", "--suite", "test", "--name", "hostile"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    // The root cannot be configured (no dpkg), so create fails; what
    // matters is what it touched on the way.
    assert_eq!(o.status.code(), Some(1), "{err}");
    // It got as far as running the install script in the sandbox.
    assert!(
        err.contains("installing the packages inside the root failed"),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "host file\n");
    assert_eq!(
        std::fs::metadata(&victim).unwrap().permissions().mode() & 0o7777,
        0o600,
        "the host file's mode changed"
    );
    assert_eq!(
        std::fs::read_dir(&victim_dir).unwrap().count(),
        0,
        "apt's files were written outside the root"
    );
    assert_eq!(std::fs::read_to_string(&status).unwrap(), "host status\n");
    assert!(
        !err.contains("TOP-SECRET"),
        "a host file was printed: {err}"
    );
    let kept = home.path().join("state/logs/create-hostile.log");
    if let Ok(log) = std::fs::read_to_string(&kept) {
        assert!(
            !log.contains("TOP-SECRET"),
            "a host file was copied to {kept:?}"
        );
    }
    // Nothing was written at the top of the host either (the `..` climb).
    assert!(!Path::new("/available").exists());
}

#[test]
fn the_roots_folder_is_private() {
    // `create` fails here (no dpkg), but the folder above the roots is
    // made 0700 before anything is unpacked into it.
    if !require(
        is_root() || have_userns(),
        "root or user namespaces",
        "run the tests as root, as CI does",
    ) {
        return;
    }
    let served = NativeArchive::serve(
        "zchroot private archive",
        vec![
            pkg("base-files", "13").essential(),
            pkg("fake-dpkg", "1.0").essential(),
        ],
    );
    let manifests = &served.manifests;
    let home = tempfile::tempdir().unwrap();
    // An existing, world-readable roots folder (as older versions made it).
    std::fs::create_dir_all(home.path().join("state/roots")).unwrap();
    std::fs::set_permissions(
        home.path().join("state/roots"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    let _ = Zchroot::new(home.path())
        .command(&["-q", "--manifests", manifests.to_str().unwrap()])
        .args(["create", "amd64", "--suite", "test", "--name", "p"])
        .output()
        .unwrap();
    let mode = std::fs::metadata(home.path().join("state/roots"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700, "roots folder mode {mode:o}");
}
