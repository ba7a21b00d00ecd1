//! Read-only binds stay read-only for the command inside: it is root of its
//! own user namespace, which owns the sandbox's mount namespace, so without
//! care it could remount a `:ro` bind read-write (and, as real root, write
//! the host's files through it), or write in the submounts of `/sys`
//! (cgroup2) that a read-only remount of the top alone leaves writable.

use std::path::Path;

use crate::common::{module_dir, require_root, stderr, stdout, zchroot};
use crate::terminal::{host_arch, native_root};

#[test]
fn a_read_only_bind_cannot_be_remounted_or_written_from_inside() {
    if !require_root("to run the sandbox as root, where a writable bind is the host's own files") {
        return;
    }
    let root = native_root(None);
    let arch = host_arch();
    // A file the command will try to create in the host's /usr, and a
    // cgroup it will try to make under the host's cgroup2 hierarchy.
    let marker = Path::new("/usr/.zchroot-readonly-test");
    let cgroup = Path::new("/sys/fs/cgroup/zchroot-readonly-test");
    let _ = std::fs::remove_file(marker);
    let _ = std::fs::remove_dir(cgroup);
    let script = "mount -o remount,bind,rw /usr; \
                  touch /usr/.zchroot-readonly-test && echo wrote-usr; \
                  mount -o remount,rw /sys; \
                  mkdir /sys/fs/cgroup/zchroot-readonly-test && echo made-cgroup; \
                  echo done";
    let home = module_dir("readonly").join("home");
    let o = zchroot(
        &home,
        &[
            "-q",
            "run",
            "--dir",
            root.to_str().unwrap(),
            "--arch",
            &arch,
            "--bind",
            "/usr:/usr:ro",
            "--network",
            "none",
            "--",
            "sh",
            "-c",
            script,
        ],
    );
    let wrote = marker.exists();
    let made = cgroup.exists();
    let _ = std::fs::remove_file(marker);
    let _ = std::fs::remove_dir(cgroup);
    let out = stdout(&o);
    assert!(out.contains("done"), "{out}\n{}", stderr(&o));
    assert!(
        !wrote && !out.contains("wrote-usr"),
        "the host's /usr was written: {out}"
    );
    assert!(
        !made && !out.contains("made-cgroup"),
        "a cgroup was made on the host: {out}"
    );
}
