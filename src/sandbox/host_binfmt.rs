//! Kernels before 6.7 have a single binfmt_misc table, the host's. There,
//! as root, zchroot registers qemu for one run under a name carrying its
//! PID ([`binfmt::temporary_name`]) and removes it when the run ends,
//! after an error or a forwarded signal too; an entry left by a zchroot
//! that was SIGKILLed is removed by the next registration.
//!
//! The table is reached through a binfmt_misc mount made in the private
//! mount namespace of a helper (`zchroot __host-binfmt`), so the host's
//! mount table is never touched, even where binfmt_misc is not mounted on
//! the host. Entries live only while the table is mounted somewhere, so the
//! helper holds its mount for the whole run: it registers, then waits for
//! its standard input to close and removes the entry. When zchroot dies,
//! even by SIGKILL, the pipe closes and the helper cleans up; it runs in a
//! process group of its own so a terminal's Ctrl-C does not end it early.

use std::path::Path;
use std::process::Command;

use nix::mount::MsFlags;
use nix::sched::CloneFlags;

use super::binfmt;
use crate::sys;

/// The hidden subcommand of the helper.
pub const HELPER_ARG: &str = "__host-binfmt";
const TABLE: &str = "/proc/sys/fs/binfmt_misc";

#[derive(Debug, thiserror::Error)]
#[error("{action} qemu in the host's binfmt_misc ({name}): {message}")]
pub struct HostBinfmtError {
    action: &'static str,
    name: String,
    message: String,
}

/// An entry registered for the life of this value.
#[derive(Debug)]
pub struct Registration {
    holder: std::process::Child,
}

impl Drop for Registration {
    fn drop(&mut self) {
        // Closing its input tells the helper to remove the entry.
        drop(self.holder.stdin.take());
        let _ = self.holder.wait();
    }
}

fn call(
    exe: &Path,
    action: &'static str,
    name: &str,
    args: &[&str],
) -> Result<String, HostBinfmtError> {
    let err = |message: String| HostBinfmtError {
        action,
        name: name.to_string(),
        message,
    };
    let o = Command::new(exe)
        .arg(HELPER_ARG)
        .args(args)
        .output()
        .map_err(|e| err(format!("starting {}: {e}", exe.display())))?;
    if !o.status.success() {
        return Err(err(String::from_utf8_lossy(&o.stderr).trim().to_string()));
    }
    Ok(String::from_utf8_lossy(&o.stdout).into_owned())
}

/// Registers `line` (whose entry is `name`) until the result is dropped.
pub fn register(exe: &Path, name: &str, line: &str) -> Result<Registration, HostBinfmtError> {
    use std::io::Read;
    use std::os::unix::process::CommandExt;
    use std::process::Stdio;
    let err = |message: String| HostBinfmtError {
        action: "registering",
        name: name.to_string(),
        message,
    };
    let mut holder = Command::new(exe)
        .args([HELPER_ARG, "register", name, line])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .map_err(|e| err(format!("starting {}: {e}", exe.display())))?;
    let mut ready = [0u8; 3];
    let ok = holder
        .stdout
        .take()
        .is_some_and(|mut o| o.read_exact(&mut ready).is_ok() && &ready == b"ok\n");
    if !ok {
        drop(holder.stdin.take());
        let mut message = String::new();
        if let Some(mut e) = holder.stderr.take() {
            let _ = e.read_to_string(&mut message);
        }
        let _ = holder.wait();
        return Err(err(message.trim().to_string()));
    }
    Ok(Registration { holder })
}

/// The names in the host's table (root only).
pub fn entries(exe: &Path) -> Result<Vec<String>, HostBinfmtError> {
    Ok(call(exe, "listing", "-", &["list"])?
        .lines()
        .map(str::to_string)
        .collect())
}

fn names(dir: &Path) -> std::io::Result<Vec<String>> {
    Ok(std::fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != "register" && n != "status")
        .collect())
}

fn remove(dir: &Path, name: &str) -> std::io::Result<()> {
    // binfmt_misc refuses to create files: write only to an entry that is there.
    if !dir.join(name).exists() {
        return Ok(());
    }
    match std::fs::write(dir.join(name), "-1") {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        r => r,
    }
}

fn io(what: &str) -> impl FnOnce(std::io::Error) -> String + '_ {
    move |e| format!("{what}: {e}")
}

fn helper(args: &[String]) -> Result<(), String> {
    let dir = Path::new(TABLE);
    // A fresh exec, single-threaded: a private mount namespace of its own.
    sys::unshare(CloneFlags::CLONE_NEWNS).map_err(|e| e.to_string())?;
    sys::mount(
        None,
        Path::new("/"),
        None,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None,
    )
    .map_err(|e| e.to_string())?;
    sys::mount(
        Some(Path::new("binfmt_misc")),
        dir,
        Some("binfmt_misc"),
        MsFlags::empty(),
        None,
    )
    .map_err(|e| e.to_string())?;
    match args {
        [cmd, name, line] if cmd == "register" => {
            let present = names(dir).map_err(io(TABLE))?;
            for stale in binfmt::stale(&present, &|pid| Path::new(&format!("/proc/{pid}")).exists())
            {
                remove(dir, stale).map_err(io(stale))?;
            }
            remove(dir, name).map_err(io(name))?;
            std::fs::write(dir.join("register"), line).map_err(io("register"))?;
            println!("ok");
            // Hold the mount (and so the entry) until zchroot closes our input.
            let mut sink = Vec::new();
            let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink);
            remove(dir, name).map_err(io(name))
        }
        [cmd, name] if cmd == "remove" => remove(dir, name).map_err(io(name)),
        [cmd] if cmd == "list" => {
            for n in names(dir).map_err(io(TABLE))? {
                println!("{n}");
            }
            Ok(())
        }
        _ => Err(format!(
            "usage: zchroot {HELPER_ARG} register NAME LINE | remove NAME | list"
        )),
    }
}

/// The helper's whole life: called by `zchroot __host-binfmt ...`.
pub fn helper_main() -> ! {
    let args: Vec<String> = std::env::args().skip(2).collect();
    match helper(&args) {
        Ok(()) => std::process::exit(0),
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1)
        }
    }
}
