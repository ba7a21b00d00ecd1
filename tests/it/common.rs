//! What every test module shares, in one place: the zchroot runner (as
//! root or as the test user), a home per module and test, the test user,
//! and loud skips: a test that needs something this machine lacks says so
//! on stderr and returns, except under `CI`, where the lack is a failure.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The binary under test.
pub const ZCHROOT: &str = env!("CARGO_BIN_EXE_zchroot");

/// One way to run zchroot: with `ZCHROOT_HOME`, optionally as another
/// user (through `runuser`, from `/`), with extra environment.
pub struct Zchroot {
    home: PathBuf,
    user: Option<String>,
    env: Vec<(String, OsString)>,
}

impl Zchroot {
    /// zchroot as the caller, with this home.
    pub fn new(home: impl AsRef<Path>) -> Zchroot {
        Zchroot {
            home: home.as_ref().to_owned(),
            user: None,
            env: Vec::new(),
        }
    }

    /// The same, run as `user` (`runuser -u USER -- env ... zchroot`).
    pub fn user(mut self, user: &str) -> Zchroot {
        self.user = Some(user.to_owned());
        self
    }

    /// One more environment variable for zchroot.
    pub fn env(mut self, key: &str, value: impl Into<OsString>) -> Zchroot {
        self.env.push((key.to_owned(), value.into()));
        self
    }

    /// The command, not started: for tests that spawn it or set its stdio.
    pub fn command<S: AsRef<std::ffi::OsStr>>(&self, args: &[S]) -> Command {
        match &self.user {
            None => {
                let mut c = Command::new(ZCHROOT);
                c.env("ZCHROOT_HOME", &self.home);
                for (k, v) in &self.env {
                    c.env(k, v);
                }
                c.args(args);
                c
            }
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--", "env"]);
                let mut home = OsString::from("ZCHROOT_HOME=");
                home.push(&self.home);
                c.arg(home);
                for (k, v) in &self.env {
                    let mut kv = OsString::from(format!("{k}="));
                    kv.push(v);
                    c.arg(kv);
                }
                c.arg(ZCHROOT).args(args).current_dir("/");
                c
            }
        }
    }

    /// Runs zchroot to the end; its output.
    pub fn run<S: AsRef<std::ffi::OsStr>>(&self, args: &[S]) -> Output {
        self.command(args).output().unwrap()
    }
}

/// `zchroot ARGS` as the caller with `home`.
pub fn zchroot<S: AsRef<std::ffi::OsStr>>(home: &Path, args: &[S]) -> Output {
    Zchroot::new(home).run(args)
}

/// `zchroot ARGS` as `user` with `home`.
pub fn zchroot_as<S: AsRef<std::ffi::OsStr>>(user: &str, home: &Path, args: &[S]) -> Output {
    Zchroot::new(home).user(user).run(args)
}

/// stdout, trimmed.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// stderr as it is.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// stdout then stderr, as a user reading the terminal sees them.
pub fn text(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr)
}

/// [`text`] of a run that must have succeeded.
pub fn ok(o: Output) -> String {
    assert!(o.status.success(), "{}", text(&o));
    text(&o)
}

/// Test module `module`'s own directory, kept between runs (so roots and
/// downloads are made once): `CARGO_TARGET_TMPDIR/it/MODULE`. No two
/// modules share one.
pub fn module_dir(module: &str) -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("it")
        .join(module)
}

/// A zchroot home of `module`'s own for `test` (or for the tests of the
/// module that share one), made if missing: `.../it/MODULE/TEST`.
pub fn home_for(module: &str, test: &str) -> PathBuf {
    let h = module_dir(module).join(test);
    std::fs::create_dir_all(&h).unwrap();
    h
}

/// Whether the tests run as root (CI runs them so).
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Whether this kernel has user namespaces.
pub fn have_userns() -> bool {
    Path::new("/proc/self/ns/user").exists()
}

/// Root, or a loud skip; `why` says what the test does with it.
pub fn require_root(why: &str) -> bool {
    require(
        is_root(),
        &format!("root ({why})"),
        "run the tests as root, as CI does",
    )
}

/// Root and the Debian archive, or a loud skip: what the tests that build
/// real roots need.
pub fn require_root_and_debian() -> bool {
    require_root("to run as root and to become the test user") && require_debian()
}

/// The Debian archive, or a loud skip.
pub fn require_debian() -> bool {
    require(
        have_debian_network(),
        "the Debian archive (network)",
        "run where deb.debian.org answers",
    )
}

/// Returns whether the test may go on. `what` names the need, `help` the fix.
pub fn require(available: bool, what: &str, help: &str) -> bool {
    if available {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!("CI is set and this test needs {what}: {help}");
    }
    eprintln!("SKIP: this test needs {what}: {help}");
    false
}

/// Whether a command is on PATH.
pub fn have_command(name: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(name).is_file()))
        .unwrap_or(false)
}

/// Whether the Debian archive answers (a quick TCP connect).
pub fn have_debian_network() -> bool {
    use std::net::ToSocketAddrs;
    let Ok(mut addrs) = ("deb.debian.org", 80).to_socket_addrs() else {
        return false;
    };
    addrs.any(|a| {
        std::net::TcpStream::connect_timeout(&a, std::time::Duration::from_secs(5)).is_ok()
    })
}

/// The unprivileged test user that .ci/run creates (`ZCHROOT_TEST_USER`,
/// default `zchroot-ci`), with the start of its subordinate ranges.
pub struct TestUser {
    pub name: String,
    pub uid: u32,
    pub subuid: u32,
    pub subgid: u32,
}

pub fn test_user() -> Option<TestUser> {
    let name = std::env::var("ZCHROOT_TEST_USER").unwrap_or_else(|_| "zchroot-ci".into());
    let u = nix::unistd::User::from_name(&name).ok()??;
    let start = |file: &str| -> Option<u32> {
        std::fs::read_to_string(file).ok()?.lines().find_map(|l| {
            let mut it = l.split(':');
            (it.next()? == name).then(|| it.next()?.parse().ok())?
        })
    };
    Some(TestUser {
        uid: u.uid.as_raw(),
        subuid: start("/etc/subuid")?,
        subgid: start("/etc/subgid")?,
        name,
    })
}

/// [`test_user`], or a loud skip (a failure under CI).
pub fn require_test_user() -> Option<TestUser> {
    let u = test_user();
    require(
        u.is_some(),
        "an unprivileged user with /etc/subuid and /etc/subgid ranges",
        ".ci/run creates zchroot-ci; or set ZCHROOT_TEST_USER",
    )
    .then_some(u)
    .flatten()
}

/// Lets other users traverse every directory above `path` (o+x), so the
/// test user can reach files under the build's target directory.
pub fn let_others_reach(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let mut p = path.parent();
    while let Some(d) = p {
        if let Ok(m) = std::fs::metadata(d) {
            let mode = m.permissions().mode();
            if mode & 0o001 == 0 {
                let _ = std::fs::set_permissions(d, std::fs::Permissions::from_mode(mode | 0o001));
            }
        }
        p = d.parent();
    }
}

/// Serialises the tests that register entries in the host's binfmt_misc
/// table or compare it before and after (one global table before Linux 6.7,
/// and for root in the initial user namespace).
pub fn host_binfmt_lock() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// trixie's arm64 indexes (all its suites), verified, through `home`'s cache.
pub fn trixie_arm64_indexes(home: &Path) -> zchroot::archive::refresh::Indexes {
    let m = zchroot::manifest::Manifests::embedded();
    let t = zchroot::rootfs::spec::RootRecipe::new(
        &m,
        &zchroot::rootfs::spec::RootSpec {
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

/// Repacks a .deb with `dpkg-deb -R`/`-b`, its control file edited by
/// `edit` and nothing else changed.
pub fn repack(deb: &Path, out: &Path, edit: &dyn Fn(String) -> String) {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("t");
    assert!(Command::new("dpkg-deb")
        .arg("-R")
        .arg(deb)
        .arg(&tree)
        .status()
        .unwrap()
        .success());
    let control = tree.join("DEBIAN/control");
    let text = std::fs::read_to_string(&control).unwrap();
    std::fs::write(&control, edit(text)).unwrap();
    let st = Command::new("dpkg-deb")
        .args(["-Zxz", "-z1", "--root-owner-group", "-b"])
        .arg(&tree)
        .arg(out)
        .output()
        .unwrap();
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
}
