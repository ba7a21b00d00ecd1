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
