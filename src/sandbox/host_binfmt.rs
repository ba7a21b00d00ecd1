//! Kernels before 6.7 have a single binfmt_misc table, the host's. There,
//! as root, zchroot registers qemu for one run under a name of its own
//! ([`entry_name`]: `zchroot-QEMU-PIDNS-PID-STARTTIME`, never confused with
//! the host's entries) and removes it when the run ends, after an error or a
//! forwarded signal too.
//!
//! The table is reached through a detached binfmt_misc mount (`fsopen`,
//! `fsmount`) held by a helper (`zchroot __host-binfmt`): it is in no mount
//! table, so the host's mounts are never touched, and it works whether or
//! not the host has binfmt_misc mounted (mounting it again where it already
//! is fails with EBUSY). Kernels before 5.2, without `fsopen`, get a mount
//! in the helper's private mount namespace instead, or the one already
//! there. The helper registers, then waits for its standard input to close
//! and removes the entry: when zchroot dies, even by SIGKILL, the pipe
//! closes and the helper cleans up; it runs in a process group of its own
//! so a terminal's Ctrl-C does not end it early.
//!
//! An entry outlives its table's last mount where the kernel pins it
//! (before 6.7, always), so a run whose zchroot and helper were both killed
//! leaves its entry behind. Its name says whose it was: the next zchroot
//! command that may use the host's table ([`remove_stale`]), `doctor
//! --fix` and `destroy --all` remove every `zchroot-` entry whose process
//! (PID and start time, in this PID namespace) is gone.

use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;
use std::process::Command;

use nix::fcntl::OFlag;
use nix::mount::MsFlags;
use nix::sched::CloneFlags;
use nix::sys::stat::Mode;

use crate::host;
use crate::sys;

/// The hidden subcommand of the helper.
pub const HELPER_ARG: &str = "__host-binfmt";
/// The start of the name of every entry zchroot registers in the host's table.
pub const PREFIX: &str = "zchroot-";
const TABLE: &str = "/proc/sys/fs/binfmt_misc";
/// `statfs` f_type of binfmt_misc.
const BINFMTFS_MAGIC: i64 = 0x4249_4e4d;

#[derive(Debug, thiserror::Error)]
#[error("{action} qemu in the host's binfmt_misc ({name}): {message}")]
pub struct HostBinfmtError {
    action: &'static str,
    name: String,
    message: String,
}

/// The zchroot process an entry belongs to: its PID, told apart from a later
/// process with the same PID by its start time, and from processes of other
/// PID namespaces (whose PIDs mean nothing here) by the namespace's inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    pub pid_ns: u64,
    pub pid: u32,
    pub start: u64,
}

impl Owner {
    /// This process (0 for what cannot be read: such an entry is never
    /// judged stale).
    pub fn current() -> Owner {
        let pid = std::process::id();
        Owner {
            pid_ns: host::pid_namespace().unwrap_or(0),
            pid,
            start: host::process_start_time(pid).unwrap_or(0),
        }
    }
}

/// The name of the entry `owner` registers for qemu-`qemu` (e.g. `aarch64`).
pub fn entry_name(qemu: &str, owner: &Owner) -> String {
    format!(
        "{PREFIX}{qemu}-{}-{}-{}",
        owner.pid_ns, owner.pid, owner.start
    )
}

/// The qemu and owner of a name made by [`entry_name`]; None for any other
/// name, the host's own entries above all.
pub fn parse_entry_name(name: &str) -> Option<(&str, Owner)> {
    let rest = name.strip_prefix(PREFIX)?;
    let mut it = rest.rsplitn(4, '-');
    let num = |s: Option<&str>| -> Option<u64> {
        let s = s?;
        if s.is_empty() || s.len() > 20 || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        s.parse().ok()
    };
    let start = num(it.next())?;
    let pid = u32::try_from(num(it.next())?).ok()?;
    let pid_ns = num(it.next())?;
    let qemu = it.next()?;
    if qemu.is_empty()
        || !qemu
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    {
        return None;
    }
    Some((qemu, Owner { pid_ns, pid, start }))
}

/// The entries among `names` that zchroot made and whose process is gone:
/// in our PID namespace `our_ns`, no process has the owner's PID with the
/// owner's start time (`start_time` reads a PID's). Entries of other PID
/// namespaces, or with unknown owners, are never stale here.
pub fn stale<'a>(
    names: &'a [String],
    our_ns: u64,
    start_time: &dyn Fn(u32) -> Option<u64>,
) -> Vec<&'a str> {
    names
        .iter()
        .filter(|n| {
            parse_entry_name(n).is_some_and(|(_, o)| {
                our_ns != 0
                    && o.pid_ns == our_ns
                    && o.start != 0
                    && start_time(o.pid) != Some(o.start)
            })
        })
        .map(String::as_str)
        .collect()
}

/// Whether this zchroot may register in the host's table: as root, on a
/// kernel before 6.7 (or when tests force it with `ZCHROOT_BINFMT=host`).
pub fn uses_host_table() -> bool {
    host::is_root() && (host::force_host_binfmt() || !host::sandboxed_binfmt(host::kernel().1))
}

/// An entry registered for the life of this value.
#[derive(Debug)]
pub struct Registration {
    holder: std::process::Child,
    exe: std::path::PathBuf,
    name: String,
}

impl Drop for Registration {
    fn drop(&mut self) {
        // Closing its input tells the helper to remove the entry.
        drop(self.holder.stdin.take());
        let removed = self.holder.wait().is_ok_and(|s| s.success());
        if !removed {
            // The helper was killed, or failed: remove it from here.
            let _ = call(&self.exe, "removing", &self.name, &["remove", &self.name]);
        }
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
    Ok(Registration {
        holder,
        exe: exe.to_path_buf(),
        name: name.to_string(),
    })
}

/// The names in the host's table (root only).
pub fn entries(exe: &Path) -> Result<Vec<String>, HostBinfmtError> {
    Ok(call(exe, "listing", "-", &["list"])?
        .lines()
        .map(str::to_string)
        .collect())
}

/// The entries a killed zchroot left in the host's table (root only).
pub fn stale_entries(exe: &Path) -> Result<Vec<String>, HostBinfmtError> {
    let names = entries(exe)?;
    let ns = host::pid_namespace().unwrap_or(0);
    Ok(stale(&names, ns, &host::process_start_time)
        .into_iter()
        .map(str::to_string)
        .collect())
}

/// Removes the entries a killed zchroot left in the host's table; the names
/// removed. Called when a command that may use the sandbox starts, by
/// `doctor --fix` and by `destroy --all`. Nothing to do (and nothing done,
/// at no cost) where zchroot never registers there (see
/// [`uses_host_table`]): not root, or a kernel with a binfmt_misc per user
/// namespace.
pub fn remove_stale(exe: &Path) -> Result<Vec<String>, HostBinfmtError> {
    if !uses_host_table() {
        return Ok(vec![]);
    }
    Ok(call(exe, "removing stale entries of", PREFIX, &["clean"])?
        .lines()
        .map(str::to_string)
        .collect())
}

/// The host's binfmt_misc table, reached through a directory descriptor.
struct Table {
    dir: OwnedFd,
}

impl Table {
    /// A detached mount of binfmt_misc; before Linux 5.2, a mount in this
    /// (single-threaded) helper's private mount namespace.
    fn open() -> Result<Table, String> {
        let dir = match sys::fsmount::detached_mount("binfmt_misc") {
            Ok(fd) => fd,
            Err(e) if e.errno == nix::errno::Errno::ENOSYS => Self::mount_privately()?,
            Err(e) => return Err(e.to_string()),
        };
        let t = sys::fsmount::fs_type(&dir).map_err(|e| e.to_string())?;
        if t != BINFMTFS_MAGIC {
            return Err(format!("not a binfmt_misc filesystem (f_type {t:#x})"));
        }
        Ok(Table { dir })
    }

    fn mount_privately() -> Result<OwnedFd, String> {
        sys::unshare(CloneFlags::CLONE_NEWNS).map_err(|e| e.to_string())?;
        sys::mount(
            None,
            Path::new("/"),
            None,
            MsFlags::MS_REC | MsFlags::MS_PRIVATE,
            None,
        )
        .map_err(|e| e.to_string())?;
        let open = |flags: OFlag| {
            nix::fcntl::open(TABLE, flags | OFlag::O_CLOEXEC, Mode::empty())
                .map_err(|e| format!("open({TABLE:?}, {flags:?}) => {e}"))
        };
        // Already there (mounting it again on the same place is EBUSY)? An
        // O_PATH look, which does not trigger an automount (systemd's
        // proc-sys-fs-binfmt_misc.automount would mount in the host's
        // namespace, not in this one).
        let here = open(OFlag::O_PATH)?;
        if sys::fsmount::fs_type(&here).ok() == Some(BINFMTFS_MAGIC) {
            return open(OFlag::O_DIRECTORY | OFlag::O_RDONLY);
        }
        drop(here);
        sys::mount(
            Some(Path::new("binfmt_misc")),
            Path::new(TABLE),
            Some("binfmt_misc"),
            MsFlags::empty(),
            None,
        )
        .map_err(|e| e.to_string())?;
        open(OFlag::O_DIRECTORY | OFlag::O_RDONLY)
    }

    fn names(&self) -> Result<Vec<String>, String> {
        let path = format!("/proc/self/fd/{}", self.dir.as_raw_fd());
        let mut v: Vec<String> = std::fs::read_dir(&path)
            .map_err(|e| format!("{TABLE}: {e}"))?
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n != "register" && n != "status")
            .collect();
        v.sort();
        Ok(v)
    }

    /// Writes `text` to the table's file `name` (never creating one).
    fn write(&self, name: &str, text: &str) -> Result<(), nix::errno::Errno> {
        let fd = nix::fcntl::openat(
            &self.dir,
            name,
            OFlag::O_WRONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )?;
        let mut f = std::fs::File::from(fd);
        f.write_all(text.as_bytes())
            .map_err(|e| nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))
    }

    /// Removes one of zchroot's entries; one that is not there is fine.
    fn remove(&self, name: &str) -> Result<(), String> {
        if parse_entry_name(name).is_none() {
            return Err(format!("{name}: not an entry zchroot made; left alone"));
        }
        match self.write(name, "-1") {
            Ok(()) | Err(nix::errno::Errno::ENOENT) => Ok(()),
            Err(e) => Err(format!("writing -1 to {TABLE}/{name} => {e}")),
        }
    }

    fn register(&self, line: &str) -> Result<(), String> {
        self.write("register", line)
            .map_err(|e| format!("writing to {TABLE}/register => {e}"))
    }

    /// Removes the stale entries; their names.
    fn clean(&self) -> Result<Vec<String>, String> {
        let names = self.names()?;
        let ns = host::pid_namespace().unwrap_or(0);
        let stale: Vec<String> = stale(&names, ns, &host::process_start_time)
            .into_iter()
            .map(str::to_string)
            .collect();
        for n in &stale {
            self.remove(n)?;
        }
        Ok(stale)
    }
}

fn helper(args: &[String]) -> Result<(), String> {
    let table = Table::open()?;
    match args {
        [cmd, name, line] if cmd == "register" => {
            if parse_entry_name(name).is_none() {
                return Err(format!("{name}: not a name zchroot makes"));
            }
            table.clean()?;
            table.remove(name)?;
            table.register(line)?;
            println!("ok");
            // Hold the table (and so the entry) until zchroot closes our input.
            let mut sink = Vec::new();
            let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink);
            table.remove(name)
        }
        [cmd, name] if cmd == "remove" => table.remove(name),
        [cmd] if cmd == "clean" => {
            for n in table.clean()? {
                println!("{n}");
            }
            Ok(())
        }
        [cmd] if cmd == "list" => {
            for n in table.names()? {
                println!("{n}");
            }
            Ok(())
        }
        _ => Err(format!(
            "usage: zchroot {HELPER_ARG} register NAME LINE | remove NAME | clean | list"
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_names_carry_their_owner_and_only_they_parse() {
        let o = Owner {
            pid_ns: 4026531836,
            pid: 4242,
            start: 987654,
        };
        let name = entry_name("aarch64", &o);
        assert_eq!(name, "zchroot-aarch64-4026531836-4242-987654");
        assert_eq!(parse_entry_name(&name), Some(("aarch64", o)));
        let arm64 = crate::manifest::Manifests::embedded()
            .arch("arm64")
            .unwrap();
        let line = super::super::binfmt::register_line_named(&name, &arm64, Path::new("/q"));
        assert!(
            line.starts_with(":zchroot-aarch64-4026531836-4242-987654:M::\\x7f"),
            "{line}"
        );
        assert_eq!(
            parse_entry_name(&entry_name("x86_64", &o)).map(|(q, _)| q),
            Some("x86_64")
        );
        for other in [
            "qemu-aarch64",
            "zchroot-aarch64-4242",
            "zchroot-aarch64-1-4242-x",
            "zchroot--1-2-3",
            "zchroot-aarch64-1-+2-3",
            "zchroot-a/b-1-2-3",
            "zchroot-aarch64-1-99999999999-3",
            "register",
            "status",
        ] {
            assert_eq!(parse_entry_name(other), None, "{other}");
        }
    }

    #[test]
    fn stale_entries_are_those_whose_process_is_gone() {
        let n = |ns, pid, start| {
            entry_name(
                "aarch64",
                &Owner {
                    pid_ns: ns,
                    pid,
                    start,
                },
            )
        };
        let names = vec![
            n(7, 10, 100), // alive: pid 10 started at 100
            n(7, 10, 50),  // pid 10 reused since: stale
            n(7, 11, 100), // no pid 11: stale
            n(8, 11, 100), // another PID namespace: not ours to judge
            n(7, 12, 0),   // unknown start time: left alone
            "qemu-aarch64".to_string(),
        ];
        let start = |pid: u32| (pid == 10).then_some(100);
        assert_eq!(stale(&names, 7, &start), [&names[1], &names[2]]);
        assert!(stale(&names, 0, &start).is_empty(), "unknown namespace");
        // This process is alive.
        let me = Owner::current();
        let mine = vec![entry_name("aarch64", &me)];
        assert!(stale(&mine, me.pid_ns, &host::process_start_time).is_empty());
    }
}
