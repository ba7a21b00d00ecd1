//! Where zchroot keeps its data, as a user meets it: a relative
//! `ZCHROOT_HOME` is taken from the working directory, and a data
//! directory the user cannot write is named, by `doctor` and by every
//! command that writes, with what to do.

use std::os::unix::fs::PermissionsExt;

use crate::common::{ok, require_test_user, text, Zchroot, ZCHROOT};

#[test]
fn a_relative_zchroot_home_is_taken_from_the_working_directory() {
    let cwd = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        std::process::Command::new(ZCHROOT)
            .env("ZCHROOT_HOME", "relhome")
            .current_dir(cwd.path())
            .args(args)
            .output()
            .unwrap()
    };
    let o = run(&["doctor", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let state = cwd.path().join("relhome/state");
    let detail = v
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "writable")
        .unwrap_or_else(|| panic!("no writable check: {v:#}"))["detail"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        detail.starts_with(&format!("state {}", state.display())),
        "{detail}"
    );
    let out = ok(run(&["target", "add", "b", "--no-archive-check"]));
    let file = cwd.path().join("relhome/config/targets/b.toml");
    assert_eq!(out.trim(), file.display().to_string());
    assert!(file.is_file());
}

#[test]
fn an_unwritable_data_directory_is_named_with_what_to_do() {
    let Some(user) = require_test_user() else {
        return;
    };
    // A home the test user can enter but not write.
    let home = tempfile::tempdir().unwrap();
    std::fs::set_permissions(home.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let z = Zchroot::new(home.path()).user(&user.name);
    let h = home.path().display();

    let o = z.run(&["doctor"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let t = text(&o);
    assert!(
        t.contains(&format!(
            "FAIL writable                 state {h}/state: {h}: Permission denied (os error 13)"
        )),
        "{t}"
    );
    assert!(
        t.contains(&format!(
            "help: sudo chown -R {} {h}, or set ZCHROOT_HOME",
            user.name
        )),
        "{t}"
    );

    assert!(
        t.contains("warn free disk") && t.contains("but zchroot cannot write there"),
        "{t}"
    );

    for args in [
        &["target", "add", "b", "--no-archive-check"][..],
        &["resolve", "amd64"],
        &["create", "arm64"],
    ] {
        let o = z.run(args);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {}", text(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.starts_with(&format!(
                "error: cannot write zchroot's state directory {h}/state: {h}: Permission denied (os error 13)\nhelp: let your user write {h}"
            )),
            "{args:?}: {err}"
        );
        assert_eq!(err.matches("Permission denied").count(), 1, "{err}");
    }
    assert_eq!(std::fs::read_dir(home.path()).unwrap().count(), 0);
}

/// The mode bits of `p`, not following a symlink.
fn mode(p: &std::path::Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
}

/// Whether `user` can open `path` for reading (enough to flock it).
fn can_open(user: &str, path: &std::path::Path) -> Result<(), String> {
    let o = std::process::Command::new("runuser")
        .args(["-u", user, "--", "sh", "-c", "exec 3< \"$1\"", "sh"])
        .arg(path)
        .output()
        .unwrap();
    if o.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&o.stderr).into_owned())
    }
}

#[test]
fn the_state_a_resolve_makes_is_private_and_no_other_user_can_hold_its_locks() {
    use crate::archive::{pkg, suite};
    if !crate::common::require_root("runuser tries the lock files as another user") {
        return;
    }
    let Some(user) = require_test_user() else {
        return;
    };
    let env = crate::env::Env::new(&[suite("stable", vec![pkg("base-files", "13.1").essential()])]);
    // ZCHROOT_HOME is made by hand, open to others, so that only what
    // zchroot makes in it keeps them out.
    let home = env.home.path().join("z");
    std::fs::create_dir(&home).unwrap();
    std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o755)).unwrap();
    crate::common::let_others_reach(&home);
    let z = Zchroot::new(&home);
    let m = env.manifests.to_str().unwrap();
    let o = z.run(&[
        "-q",
        "--manifests",
        m,
        "resolve",
        "arm64",
        "--suite",
        "test",
    ]);
    assert!(o.status.success(), "{}", text(&o));

    let dates = home.join("state/archive-dates");
    let lock = dates.join(".lock");
    let blob_locks = home.join("cache/blobs/locks");
    for d in [home.join("state"), dates.clone(), home.join("cache")] {
        assert_eq!(mode(&d), 0o700, "{}", d.display());
    }
    let mut locks = vec![lock.clone()];
    if blob_locks.exists() {
        assert_eq!(mode(&blob_locks), 0o700);
        locks.extend(
            std::fs::read_dir(&blob_locks)
                .unwrap()
                .map(|e| e.unwrap().path()),
        );
    }
    for l in &locks {
        assert_eq!(mode(l), 0o600, "{}", l.display());
    }
    // Another user cannot reach the lock; nor open it when the
    // directories above it were opened (as an older zchroot made them).
    let e = can_open(&user.name, &lock).unwrap_err();
    assert!(e.contains("Permission denied"), "{e}");
    for d in [home.join("state"), dates.clone()] {
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let e = can_open(&user.name, &lock).unwrap_err();
    assert!(e.contains("Permission denied"), "{e}");

    // A lock file others can open is reported, and --fix closes it (and
    // the directories).
    std::fs::set_permissions(&lock, std::fs::Permissions::from_mode(0o644)).unwrap();
    can_open(&user.name, &lock).unwrap();
    let o = z.run(&["doctor", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let warned: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["name"] == "private state" && c["status"] != "ok")
        .map(|c| c["detail"].as_str().unwrap())
        .collect();
    assert!(
        warned.contains(&&*format!(
            "{}: mode 0644: other users can open this lock file and hold the lock, and zchroot would wait for them",
            lock.display()
        )),
        "{warned:?}"
    );
    assert!(
        warned
            .iter()
            .any(|w| w.starts_with(&format!("{}: mode 0755", dates.display()))),
        "{warned:?}"
    );
    let o = z.run(&["doctor", "--fix"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(&format!("fixed: chmod 0600 {} (was 0644)", lock.display())),
        "{err}"
    );
    assert!(
        err.contains(&format!("fixed: chmod 0700 {} (was 0755)", dates.display())),
        "{err}"
    );
    assert_eq!(mode(&lock), 0o600);
    assert_eq!(mode(&dates), 0o700);
    let e = can_open(&user.name, &lock).unwrap_err();
    assert!(e.contains("Permission denied"), "{e}");
    let o = z.run(&["doctor", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let private: Vec<_> = v
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["name"] == "private state")
        .collect();
    assert!(private.iter().all(|c| c["status"] == "ok"), "{private:?}");
}
