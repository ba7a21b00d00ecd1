//! Loud skips: a test that needs something this machine lacks says so on
//! stderr and returns, except under `CI`, where the lack is a failure.

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
pub fn let_others_reach(path: &std::path::Path) {
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
