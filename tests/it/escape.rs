//! No way out of the sandbox (issue 23): what a command inside a root tries
//! in order to become host root, take back what was dropped, or reach what
//! the caller holds, each refused, as root and rootless. The root is the
//! native tree of `terminal` (the host's /usr bound read-only: perl makes
//! the system calls). Needs root (and the test user for the rootless half)
//! and user namespaces; no network.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::common::{
    let_others_reach, module_dir, require_root, require_test_user, stderr, stdout, Zchroot, ZCHROOT,
};
use crate::terminal::{host_arch, native_root, native_tree};

/// Who runs zchroot: root, or the test user (rootless).
#[derive(Clone, Copy, Debug)]
enum Mode {
    Root,
    Rootless,
}

fn modes() -> Vec<(Mode, Option<String>)> {
    if !require_root("to run the sandbox as root and to become the test user") {
        return vec![];
    }
    let mut v = vec![(Mode::Root, None)];
    if let Some(u) = require_test_user() {
        v.push((Mode::Rootless, Some(u.name)));
    }
    v
}

fn home(mode: Mode) -> PathBuf {
    let h = module_dir("escape").join(format!("home-{mode:?}"));
    std::fs::create_dir_all(&h).unwrap();
    h
}

/// `zchroot run --dir ROOT -- ARGV` with the host's /usr bound read-only.
fn run_args(root: &Path, argv: &[&str]) -> Vec<String> {
    let mut a: Vec<String> = [
        "-q",
        "run",
        "--dir",
        root.to_str().unwrap(),
        "--arch",
        &host_arch(),
        "--bind",
        "/usr:/usr:ro",
        "--network",
        "none",
        "--",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    a.extend(argv.iter().map(|s| s.to_string()));
    a
}

fn zchroot_for(mode: Mode, user: &Option<String>) -> Zchroot {
    let z = Zchroot::new(home(mode));
    match user {
        Some(u) => {
            let h = home(mode);
            let _ = Command::new("chown").args(["-R", u]).arg(&h).status();
            let_others_reach(&h);
            z.user(u)
        }
        None => z,
    }
}

/// Runs a perl script in the native root; its output.
fn perl(mode: Mode, user: &Option<String>, script: &str) -> Output {
    let root = native_root(user.as_deref());
    zchroot_for(mode, user).run(&run_args(&root, &["/usr/bin/perl", "-e", script]))
}

fn checked(o: &Output, mode: Mode) -> String {
    let out = stdout(o);
    assert!(
        out.contains("done"),
        "{mode:?}: the script did not finish: {out}\n{}",
        stderr(o)
    );
    out
}

#[test]
fn no_sysctl_and_no_sysrq_is_writable_and_the_hosts_memory_and_keys_are_hidden() {
    // Opening for append writes nothing: a file that opens is writable.
    let script = r#"
        my ($n, @w) = (0);
        my @dirs = ("/proc/sys");
        while (my $d = shift @dirs) {
            opendir(my $dh, $d) or next;
            for my $e (readdir $dh) {
                next if $e eq "." || $e eq "..";
                my $p = "$d/$e";
                if (-l $p) { next }
                if (-d $p) { push @dirs, $p; next }
                $n++;
                if (open(my $f, ">>", $p)) { push @w, $p; close $f }
            }
        }
        print "sysctls=$n writable=", scalar(@w), " @w[0..2]\n";
        print open(my $c, ">>", "/proc/sys/kernel/core_pattern") ? "core_pattern: open\n" : "core_pattern: $!\n";
        if (-e "/proc/sysrq-trigger") {
            print open(my $s, ">>", "/proc/sysrq-trigger") ? "sysrq: open\n" : "sysrq: $!\n";
        }
        for my $p ("/proc/kcore", "/proc/keys", "/proc/timer_list") {
            my $size = 0;
            if (open(my $f, "<", $p)) { my $b; $size = read($f, $b, 4096) // 0 }
            print "$p: $size bytes\n";
        }
        print "done\n";
    "#;
    for (mode, user) in modes() {
        let o = perl(mode, &user, script);
        let out = checked(&o, mode);
        let line = out.lines().find(|l| l.starts_with("sysctls=")).unwrap();
        let n: usize = line["sysctls=".len()..]
            .split(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert!(n > 100, "{mode:?}: /proc/sys was not walked: {out}");
        assert!(line.contains(" writable=0 "), "{mode:?}: {line}");
        // As root, it is the read-only mount that refuses; rootless, the
        // file's owner (host root) is not mapped, and nothing inside may.
        let refused = match mode {
            Mode::Root => "core_pattern: Read-only file system",
            Mode::Rootless => "core_pattern: ",
        };
        assert!(
            out.contains(refused) && !out.contains("core_pattern: open"),
            "{mode:?}: {out}"
        );
        assert!(!out.contains("sysrq: open"), "{mode:?}: {out}");
        for p in ["/proc/kcore", "/proc/keys", "/proc/timer_list"] {
            assert!(out.contains(&format!("{p}: 0 bytes")), "{mode:?}: {out}");
        }
    }
}

#[test]
fn init_can_be_neither_traced_nor_entered_and_holds_nothing_of_the_callers() {
    let script = format!(
        r#"
        # PTRACE_SEIZE does not stop pid 1 even where it is allowed.
        my $r = syscall({ptrace}, 0x4206, 1, 0, 0);
        print "ptrace: ", ($r == 0 ? "attached" : "$!"), "\n";
        for my $p ("/proc/1/exe", "/proc/1/fd/1", "/proc/1/mem") {{
            print "$p: ", (open(my $f, ">>", $p) ? "open" : "$!"), "\n";
        }}
        print "/proc/1/root: ", (opendir(my $d, "/proc/1/root/") ? "open" : "$!"), "\n";
        print "/proc/1/ns/mnt: ", (defined(readlink("/proc/1/ns/mnt")) ? "read" : "$!"), "\n";
        for my $who ("1", "self") {{
            open(my $s, "<", "/proc/$who/status") or die "status of $who: $!";
            while (<$s>) {{ print "$who $1 $2\n" if /^(CapBnd|CapEff):\s+(\S+)/ }}
        }}
        print "exe: ", readlink("/proc/self/exe"), "\n";
        print "done\n";
    "#,
        ptrace = libc::SYS_ptrace
    );
    for (mode, user) in modes() {
        let o = perl(mode, &user, &script);
        let out = checked(&o, mode);
        assert!(
            out.contains("ptrace: Operation not permitted"),
            "{mode:?}: {out}"
        );
        for p in [
            "/proc/1/exe",
            "/proc/1/fd/1",
            "/proc/1/mem",
            "/proc/1/root",
            "/proc/1/ns/mnt",
        ] {
            assert!(
                out.contains(&format!("{p}: Permission denied")),
                "{mode:?}: {p}: {out}"
            );
        }
        let caps = |who: &str, set: &str| -> u64 {
            let l = out
                .lines()
                .find(|l| l.starts_with(&format!("{who} {set} ")))
                .unwrap_or_else(|| panic!("{mode:?}: no {who} {set}: {out}"));
            u64::from_str_radix(l.rsplit(' ').next().unwrap(), 16).unwrap()
        };
        // Init keeps CAP_KILL alone; the command a container's set, without
        // SYS_ADMIN (21), SYS_PTRACE (19), DAC_READ_SEARCH (2), NET_ADMIN (12).
        assert_eq!(caps("1", "CapEff"), 1 << 5, "{mode:?}: {out}");
        let container: u64 = [0, 1, 3, 4, 5, 6, 7, 8, 10, 18, 27, 29, 31]
            .iter()
            .fold(0, |m, c| m | 1 << c);
        assert_eq!(caps("self", "CapBnd"), container, "{mode:?}: {out}");
        // The command is the root's program, not zchroot's.
        assert!(out.contains("exe: /usr/bin/perl"), "{mode:?}: {out}");
    }
}

#[test]
fn no_new_user_namespace_no_mount_and_no_kernel_keyring() {
    let script = format!(
        r#"
        my $r = syscall({unshare}, 0x10000000);
        print "unshare(NEWUSER): ", ($r == 0 ? "made" : "$!"), "\n";
        $r = syscall({unshare}, 0x10020000);
        print "unshare(NEWUSER|NEWNS): ", ($r == 0 ? "made" : "$!"), "\n";
        my ($src, $dst, $fs) = ("none", "/tmp", "tmpfs");
        $r = syscall({mount}, $src, $dst, $fs, 0, 0);
        print "mount: ", ($r == 0 ? "mounted" : "$!"), "\n";
        my ($type, $desc) = ("user", "zchroot-escape-test");
        $r = syscall({request_key}, $type, $desc, 0, 0);
        print "request_key: ", ($r > 0 ? "found $r" : "$!"), "\n";
        $r = syscall({keyctl}, 0, -3, 0);
        print "keyctl: ", ($r > 0 ? "session keyring $r" : "$!"), "\n";
        print "done\n";
    "#,
        unshare = libc::SYS_unshare,
        mount = libc::SYS_mount,
        request_key = libc::SYS_request_key,
        keyctl = libc::SYS_keyctl,
    );
    // zchroot is started by a perl that first puts a secret key into a
    // session keyring of its own, as Kerberos' KEYRING: caches do.
    let add_key = format!(
        r#"
        my ($name, $type, $desc, $secret) = ("zchroot-test", "user", "zchroot-escape-test", "s3cret");
        syscall({keyctl}, 1, $name) > 0 or die "join: $!";
        syscall({add_key}, $type, $desc, $secret, length($secret), -3) > 0 or die "add_key: $!";
        exec @ARGV or die "exec: $!";
    "#,
        keyctl = libc::SYS_keyctl,
        add_key = libc::SYS_add_key,
    );
    for (mode, user) in modes() {
        let root = native_root(user.as_deref());
        let h = home(mode);
        let mut c = match &user {
            None => {
                let mut c = Command::new("perl");
                c.env("ZCHROOT_HOME", &h);
                c
            }
            Some(u) => {
                zchroot_for(mode, &user);
                let mut c = Command::new("runuser");
                c.args(["-u", u, "--", "env"])
                    .arg(format!("ZCHROOT_HOME={}", h.display()))
                    .arg("perl")
                    .current_dir("/");
                c
            }
        };
        c.args(["-e", &add_key, ZCHROOT]);
        c.args(run_args(&root, &["/usr/bin/perl", "-e", &script]));
        let o = c.output().unwrap();
        let out = checked(&o, mode);
        for call in [
            "unshare(NEWUSER)",
            "unshare(NEWUSER|NEWNS)",
            "mount",
            "request_key",
            "keyctl",
        ] {
            assert!(
                out.contains(&format!("{call}: Operation not permitted")),
                "{mode:?}: {call}: {out}"
            );
        }
    }
}

#[test]
fn a_symlink_in_a_bind_destination_leads_nowhere_outside_the_root() {
    for (mode, user) in modes() {
        let dir = module_dir("escape").join(format!("planted-{mode:?}"));
        let outside = module_dir("escape").join(format!("outside-{mode:?}"));
        let root = dir.join("root");
        native_tree(&root, user.as_deref());
        let_others_reach(&root);
        std::fs::create_dir_all(&outside).unwrap();
        let _ = std::fs::remove_dir_all(outside.join("made"));
        // The root's /planted leads, if followed on the host, out to
        // `outside`; the bind's mount point is made through it.
        let link = root.join("planted");
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&outside, &link).unwrap();
        let src = module_dir("escape").join("bind-src");
        std::fs::create_dir_all(&src).unwrap();
        std::fs::write(src.join("marker"), "m").unwrap();
        let_others_reach(&src);
        let bind = format!("{}:/planted/made:ro", src.display());
        let mut args = run_args(&root, &["/usr/bin/cat", "/planted/made/marker"]);
        let at = args.iter().position(|a| a == "--network").unwrap();
        args.splice(at..at, ["--bind".to_string(), bind]);
        let o = zchroot_for(mode, &user).run(&args);
        assert!(
            !outside.join("made").exists(),
            "{mode:?}: a mount point was made outside the root: {}",
            stderr(&o)
        );
        // Resolved inside the root instead: the link's target does not
        // exist there, so the run is refused, naming the path.
        let err = stderr(&o);
        assert!(!o.status.success(), "{mode:?}: {}", stdout(&o));
        assert!(
            err.contains("setting up the sandbox failed: opening /planted"),
            "{mode:?}: {err}"
        );
    }
}
