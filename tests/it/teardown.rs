//! `destroy` and the removal under it (issue 12, items 2 and 3): a real bind
//! mount of the same filesystem inside a root stops the removal before
//! anything is removed, and a second user swapping a directory for a symlink
//! while the removal runs cannot make it delete anything outside the tree.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use zchroot::paths::DataDirs;
use zchroot::rootfs::{RootMeta, Roots};
use zchroot::teardown::{remove_tree, remove_tree_aside};

use crate::common::{let_others_reach, module_dir, require_root, require_test_user, Zchroot};

fn need_root() -> bool {
    require_root("to bind-mount, and to become the test user")
}

/// A fresh directory under the build's tmp dir that other users can reach.
fn scratch() -> tempfile::TempDir {
    std::fs::create_dir_all(module_dir("teardown")).unwrap();
    let d = tempfile::tempdir_in(module_dir("teardown")).unwrap();
    std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let_others_reach(&d.path().join("x"));
    d
}

/// A bind mount that is undone (lazily) when dropped, even on a failed
/// assert, and even if the code under test moved it (the old `destroy`
/// renamed the root with the mount in it): it is unmounted through an
/// `O_PATH` fd of its root, not by its first path.
struct BindMount(std::os::fd::OwnedFd);

impl BindMount {
    fn new(source: &Path, target: &Path) -> BindMount {
        nix::mount::mount(
            Some(source),
            target,
            None::<&str>,
            nix::mount::MsFlags::MS_BIND,
            None::<&str>,
        )
        .unwrap_or_else(|e| panic!("mount --bind {source:?} {target:?}: {e}"));
        let fd = nix::fcntl::open(
            target,
            nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .unwrap();
        BindMount(fd)
    }
}

impl Drop for BindMount {
    fn drop(&mut self) {
        use std::os::fd::AsRawFd;
        let at = format!("/proc/self/fd/{}", self.0.as_raw_fd());
        if let Err(e) = nix::mount::umount2(Path::new(&at), nix::mount::MntFlags::MNT_DETACH) {
            eprintln!("could not unmount the test's bind mount ({at}): {e}");
        }
    }
}

/// A small tree: `etc/keep`, `usr/share/doc/p*/f*`, an empty `mnt/p`, a file
/// `etc/hostname`.
fn make_tree(top: &Path) {
    std::fs::create_dir_all(top.join("mnt/p")).unwrap();
    std::fs::create_dir_all(top.join("etc")).unwrap();
    std::fs::write(top.join("etc/keep"), "keep").unwrap();
    std::fs::write(top.join("etc/hostname"), "h").unwrap();
    for p in 0..5 {
        let d = top.join(format!("usr/share/doc/p{p}"));
        std::fs::create_dir_all(&d).unwrap();
        for f in 0..5 {
            std::fs::write(d.join(format!("f{f}")), "x").unwrap();
        }
    }
}

/// Mode and owner of `top` and whether every file of [`make_tree`] is there.
fn untouched(top: &Path, mode: u32, uid: u32) {
    let m = std::fs::symlink_metadata(top).unwrap();
    assert_eq!((m.mode() & 0o7777, m.uid()), (mode, uid), "{top:?} changed");
    assert_eq!(
        std::fs::read_to_string(top.join("etc/keep")).unwrap(),
        "keep"
    );
    for p in 0..5 {
        for f in 0..5 {
            assert!(top.join(format!("usr/share/doc/p{p}/f{f}")).exists());
        }
    }
}

#[test]
fn a_bind_mount_of_the_same_filesystem_stops_the_removal_before_anything_is_removed() {
    if !need_root() {
        return;
    }
    let base = scratch();
    let top = base.path().join("root");
    make_tree(&top);
    let project = base.path().join("project");
    std::fs::create_dir(&project).unwrap();
    std::fs::write(project.join("precious"), "mine").unwrap();
    let target = top.join("mnt/p");
    let m = BindMount::new(&project, &target);
    assert_eq!(
        std::fs::metadata(&project).unwrap().dev(),
        std::fs::metadata(&top).unwrap().dev(),
        "the test needs a bind mount of the same filesystem"
    );
    let mode = std::fs::metadata(&top).unwrap().mode() & 0o7777;

    let e = remove_tree(&top).unwrap_err().to_string();
    assert!(e.contains(&format!("umount {}", target.display())), "{e}");
    assert!(e.contains("help: "), "{e}");
    assert_eq!(
        std::fs::read_to_string(project.join("precious")).unwrap(),
        "mine"
    );
    untouched(&top, mode, 0);

    let aside = base.path().join(".destroy-root-1");
    let e = remove_tree_aside(&top, &aside).unwrap_err().to_string();
    assert!(e.contains(&format!("umount {}", target.display())), "{e}");
    assert!(!aside.exists(), "the tree stays under its name");
    untouched(&top, mode, 0);
    assert!(project.join("precious").exists());

    drop(m);
    remove_tree_aside(&top, &aside).unwrap();
    assert!(!top.exists() && !aside.exists());
    assert_eq!(
        std::fs::read_to_string(project.join("precious")).unwrap(),
        "mine"
    );
}

#[test]
fn a_bind_mounted_file_or_a_mount_on_the_top_stops_the_removal() {
    if !need_root() {
        return;
    }
    let base = scratch();
    let top = base.path().join("root");
    make_tree(&top);
    let secret = base.path().join("secret");
    std::fs::write(&secret, "s").unwrap();
    let mode = std::fs::metadata(&top).unwrap().mode() & 0o7777;
    {
        let target = top.join("etc/hostname");
        let _m = BindMount::new(&secret, &target);
        let e = remove_tree(&top).unwrap_err().to_string();
        assert!(e.contains(&format!("umount {}", target.display())), "{e}");
        untouched(&top, mode, 0);
    }
    // The top itself a mount point: its contents are someone else's.
    let elsewhere = base.path().join("elsewhere");
    make_tree(&elsewhere);
    let _m = BindMount::new(&elsewhere, &top);
    let e = remove_tree(&top).unwrap_err().to_string();
    assert!(e.contains(&format!("umount {}", top.display())), "{e}");
    untouched(&elsewhere, mode, 0);
    assert!(secret.exists());
}

/// `state/roots/NAME` with metadata and a tree, as `create` leaves it.
fn fake_root(home: &Path, name: &str, owner: u32) -> (Roots, PathBuf) {
    let dirs = DataDirs {
        state: home.join("state"),
        cache: home.join("cache"),
    };
    let roots = Roots::new(&dirs);
    let dir = roots.path(name);
    make_tree(&dir.join("root"));
    let meta = RootMeta {
        name: name.into(),
        arch: "arm64".into(),
        release: "trixie".into(),
        variant: "minbase".into(),
        include: vec![],
        mirror: None,
        keyring: None,
        created: 0,
        packages: 0,
        owner,
    };
    roots.write_meta(&dir, &meta).unwrap();
    (roots, dir)
}

fn leftovers(roots: &Roots) -> Vec<String> {
    std::fs::read_dir(&roots.dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect()
}

fn destroy(home: &Path, user: Option<&str>, name: &str) -> Output {
    let z = match user {
        Some(u) => Zchroot::new(home).user(u),
        None => Zchroot::new(home),
    };
    z.command(&["-q", "destroy", name])
        .current_dir("/")
        .output()
        .unwrap()
}

/// `zchroot destroy` as `user` (rootless: the removal runs in a user
/// namespace) or as root.
fn destroy_with_a_bind_mount_inside(user: Option<&str>) {
    let base = scratch();
    let home = base.path().join("home");
    let owner = match user {
        Some(u) => nix::unistd::User::from_name(u)
            .unwrap()
            .unwrap()
            .uid
            .as_raw(),
        None => 0,
    };
    let (roots, dir) = fake_root(&home, "r1", owner);
    if let Some(u) = user {
        assert!(Command::new("chown")
            .args(["-R", &format!("{u}:")])
            .arg(&home)
            .status()
            .unwrap()
            .success());
    }
    let project = base.path().join("project");
    std::fs::create_dir(&project).unwrap();
    std::fs::write(project.join("precious"), "mine").unwrap();
    let target = dir.join("root/mnt/p");
    let m = BindMount::new(&project, &target);
    let mode = std::fs::metadata(&dir).unwrap().mode() & 0o7777;

    let o = destroy(&home, user, "r1");
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("umount {}", target.display())),
        "{err}"
    );
    assert!(project.join("precious").exists());
    assert!(dir.join("zchroot.toml").exists(), "the root keeps its name");
    untouched(&dir.join("root"), 0o755, owner);
    let meta = std::fs::metadata(&dir).unwrap();
    assert_eq!((meta.mode() & 0o7777, meta.uid()), (mode, owner));
    assert_eq!(leftovers(&roots), Vec::<String>::new());

    drop(m);
    let o = destroy(&home, user, "r1");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(!dir.exists());
    assert_eq!(leftovers(&roots), Vec::<String>::new());
    assert!(project.join("precious").exists());
}

#[test]
fn destroy_as_root_refuses_a_root_with_a_bind_mount_and_leaves_it_under_its_name() {
    if !need_root() {
        return;
    }
    destroy_with_a_bind_mount_inside(None);
}

#[test]
fn destroy_rootless_refuses_a_root_with_a_bind_mount_and_removes_it_once_unmounted() {
    if !need_root() {
        return;
    }
    let Some(user) = require_test_user() else {
        return;
    };
    destroy_with_a_bind_mount_inside(Some(&user.name));
}

const ATTACK_DIR: &str = "ZCHROOT_TEST_ATTACK_DIR";
const ATTACK_VICTIM: &str = "ZCHROOT_TEST_ATTACK_VICTIM";
const ATTACK_STOP: &str = "ZCHROOT_TEST_ATTACK_STOP";
const ATTACK_MODE: &str = "ZCHROOT_TEST_ATTACK_MODE";

/// The second user, in the world-writable directory `$ZCHROOT_TEST_ATTACK_DIR`
/// (held open, so locking the tree's top does not stop it), owning a
/// directory `a` there. `blind`: keeps exchanging `a` with a symlink `l` to
/// the victim. `targeted`: waits until the removal starts (the directory's
/// mtime changes), then exchanges `a` with a fresh symlink to the victim
/// once and holds. Stops when the stop file appears or after 10 s and
/// prints `swaps N triggered T`. Does nothing unless started by
/// [`a_second_user_renaming_inside_cannot_lead_the_removal_outside`].
#[test]
#[ignore]
fn attacker() {
    use nix::fcntl::{renameat2, AtFlags, OFlag, RenameFlags};
    use nix::sys::stat::{fstat, fstatat, mkdirat, Mode, SFlag};
    use nix::unistd::symlinkat;
    let Ok(dir) = std::env::var(ATTACK_DIR) else {
        return;
    };
    let victim = std::env::var(ATTACK_VICTIM).unwrap();
    let stop = PathBuf::from(std::env::var(ATTACK_STOP).unwrap());
    let targeted = std::env::var(ATTACK_MODE).unwrap() == "targeted";
    let d = nix::fcntl::open(
        Path::new(&dir),
        OFlag::O_RDONLY | OFlag::O_DIRECTORY,
        Mode::empty(),
    )
    .unwrap();
    mkdirat(&d, "a", Mode::from_bits_truncate(0o755)).unwrap();
    for i in 0..20 {
        std::fs::write(Path::new(&dir).join(format!("a/mine{i}")), "x").unwrap();
    }
    if !targeted {
        symlinkat(victim.as_str(), &d, "l").unwrap();
    }
    std::fs::write(Path::new(&dir).join("ready"), "").unwrap();
    let mtime = |s: nix::sys::stat::FileStat| (s.st_mtime, s.st_mtime_nsec);
    let before = mtime(fstat(&d).unwrap());
    let kind = |n: &str| {
        fstatat(&d, n, AtFlags::AT_SYMLINK_NOFOLLOW)
            .ok()
            .map(|s| SFlag::from_bits_truncate(s.st_mode) & SFlag::S_IFMT)
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    let (mut swaps, mut triggered) = (0u64, 0u64);
    for i in 0u64.. {
        if i % 1024 == 0 && (stop.exists() || Instant::now() > deadline) {
            break;
        }
        if targeted {
            if triggered == 0 && mtime(fstat(&d).unwrap()) != before {
                triggered = 1;
                let _ = symlinkat(victim.as_str(), &d, "s");
                if renameat2(&d, "a", &d, "s", RenameFlags::RENAME_EXCHANGE).is_ok() {
                    swaps += 1;
                }
            }
            continue;
        }
        match renameat2(&d, "a", &d, "l", RenameFlags::RENAME_EXCHANGE) {
            Ok(()) => swaps += 1,
            Err(_) => {
                // The removal took one of them: put back what is missing
                // (the other name holds a directory or a symlink).
                for (name, other) in [("a", "l"), ("l", "a")] {
                    if kind(name).is_none() {
                        let _ = if kind(other) == Some(SFlag::S_IFLNK) {
                            mkdirat(&d, name, Mode::from_bits_truncate(0o755))
                        } else {
                            symlinkat(victim.as_str(), &d, name)
                        };
                    }
                }
            }
        }
    }
    println!("swaps {swaps} triggered {triggered}");
}

#[test]
fn a_second_user_renaming_inside_cannot_lead_the_removal_outside() {
    if !need_root() {
        return;
    }
    let Some(user) = require_test_user() else {
        return;
    };
    let gid = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(user.uid))
        .unwrap()
        .unwrap()
        .gid
        .as_raw();
    let exe = std::env::current_exe().unwrap();
    let_others_reach(&exe);
    let base = scratch();
    // The victim: root's files outside the tree.
    let victim = base.path().join("victim");
    std::fs::create_dir(&victim).unwrap();
    for i in 0..50 {
        std::fs::write(victim.join(format!("v{i}")), "x").unwrap();
    }
    let (mut blind_swaps, mut triggered) = (0, 0);
    let mut failed: Vec<String> = vec![];
    for round in 0..10 {
        let mode = if round % 2 == 0 { "targeted" } else { "blind" };
        let top = base.path().join(format!("root{round}"));
        make_tree(&top);
        let tmp = top.join("var/tmp");
        std::fs::create_dir_all(&tmp).unwrap();
        for i in 0..1000 {
            std::fs::write(tmp.join(format!("t{i}")), "x").unwrap();
        }
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o1777)).unwrap();
        let stop = base.path().join(format!("stop{round}"));
        let child = Command::new(&exe)
            .args(["--exact", "teardown::attacker", "--ignored", "--nocapture"])
            .env(ATTACK_DIR, &tmp)
            .env(ATTACK_VICTIM, &victim)
            .env(ATTACK_STOP, &stop)
            .env(ATTACK_MODE, mode)
            .uid(user.uid)
            .gid(gid)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let t0 = Instant::now();
        while !tmp.join("ready").exists() {
            assert!(
                t0.elapsed() < Duration::from_secs(20),
                "the attacker never got ready"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(20));
        let r = remove_tree(&top);
        std::fs::write(&stop, "").unwrap();
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let said: Vec<u64> = stdout
            .lines()
            .find_map(|l| l.strip_prefix("swaps "))
            .unwrap_or_else(|| {
                panic!(
                    "the attacker said nothing: {stdout}{}",
                    String::from_utf8_lossy(&out.stderr)
                )
            })
            .split(" triggered ")
            .map(|n| n.trim().parse().unwrap())
            .collect();
        if mode == "blind" {
            blind_swaps += said[0];
        }
        triggered += said[1];
        let left = (0..50)
            .filter(|i| victim.join(format!("v{i}")).exists())
            .count();
        assert_eq!(
            left, 50,
            "round {round} ({mode}): the removal deleted files outside the tree (attacker: {said:?}; removal: {r:?})"
        );
        assert_eq!(
            std::fs::metadata(&victim).unwrap().mode() & 0o7777,
            0o755,
            "round {round}: the victim's mode changed"
        );
        match r {
            Ok(()) => assert!(!top.exists()),
            Err(e) => failed.push(format!("round {round} ({mode}): {e}")),
        }
    }
    assert!(
        blind_swaps > 0 && triggered > 0,
        "the attacker never acted ({blind_swaps} blind swaps, {triggered} times triggered): the test tested nothing"
    );
    assert!(failed.is_empty(), "the removal failed: {failed:#?}");
}

/// `destroy --all --purge-cache` keeps a target's signing key (the boards
/// trust it) and says so: what it kept, why, and the command that removes
/// it; that command leaves no data behind.
#[test]
fn destroy_purge_cache_names_the_key_it_keeps_and_how_to_remove_it() {
    let home = tempfile::tempdir().unwrap();
    let z = Zchroot::new(home.path());
    let ok = |o: Output| {
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        o
    };
    ok(z.run(&["target", "add", "b", "--no-archive-check"]));
    ok(z.run(&["repo", "key", "b", "--url", "http://laptop:8080/"]));
    let repo = home.path().join("state/repos/b");
    let file = home.path().join("config/targets/b.toml");
    assert!(repo.join("secret.key").is_file());
    let o = ok(z.run(&["destroy", "--all", "--purge-cache"]));
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(err.contains("kept target 'b'"), "{err}");
    assert!(err.contains(&repo.display().to_string()), "{err}");
    assert!(err.contains(&file.display().to_string()), "{err}");
    assert!(err.contains("the boards trust"), "{err}");
    assert!(repo.join("secret.key").is_file(), "the key was removed");
    let how = err
        .lines()
        .find_map(|l| l.trim().strip_prefix("to remove it too: "))
        .unwrap_or_else(|| panic!("no command to remove it: {err}"));
    assert_eq!(
        how,
        format!("zchroot target remove b && rm -r {}", repo.display())
    );
    // Then nothing of zchroot's is left but the (empty) directories.
    let how = how.replacen("zchroot", crate::common::ZCHROOT, 1);
    let o = Command::new("sh")
        .args(["-c", &how])
        .env("ZCHROOT_HOME", home.path())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(!repo.exists() && !file.exists());
    let o = ok(z.run(&["destroy", "--all", "--purge-cache"]));
    assert!(!String::from_utf8_lossy(&o.stderr).contains("kept"));
}
