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
