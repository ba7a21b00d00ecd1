//! Progress of the install inside a root, read from what dpkg writes to
//! the root's log while it runs (`Unpacking NAME`, `Setting up NAME`, and
//! `--status-fd` lines when present), turned into [`Reporter`] events: the
//! configure phase, the longest, shows count/total and the current package
//! instead of a bare spinner. The log is the sandbox's, so untrusted: it is
//! read through the confined handle, and only names are taken from it.

use std::collections::HashSet;
use std::io::Read;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::report::Reporter;
use crate::rootdir::RootDir;

/// What one line of dpkg's output says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DpkgEvent {
    /// A package is being unpacked.
    Unpacking(String),
    /// A package is being configured (its postinst runs).
    SettingUp(String),
    /// A package's triggers run (`ldconfig` for libc-bin, and so on).
    Triggers(String),
    /// apt fetches its lists (`apt-get update`).
    AptUpdate,
}

/// The package name of dpkg's `NAME[:ARCH]` (no version, no arch).
fn package_name(word: &str) -> Option<String> {
    let name = word.split(':').next()?;
    let ok = !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+-.".contains(&b));
    ok.then(|| name.to_string())
}

/// Parses one line of dpkg's output (or of its `--status-fd`).
pub fn parse_line(line: &str) -> Option<DpkgEvent> {
    let line = line.trim_end_matches(['\r', '\n']);
    if let Some(rest) = line.strip_prefix("Unpacking ") {
        return package_name(rest.split(' ').next()?).map(DpkgEvent::Unpacking);
    }
    if let Some(rest) = line.strip_prefix("Setting up ") {
        return package_name(rest.split(' ').next()?).map(DpkgEvent::SettingUp);
    }
    if let Some(rest) = line.strip_prefix("Processing triggers for ") {
        return package_name(rest.split(' ').next()?).map(DpkgEvent::Triggers);
    }
    if ["Hit:", "Get:", "Ign:", "Reading package lists"]
        .iter()
        .any(|p| line.starts_with(p))
    {
        return Some(DpkgEvent::AptUpdate);
    }
    // --status-fd: "processing: unpack: NAME:ARCH", "processing: configure: NAME:ARCH".
    let rest = line.strip_prefix("processing: ")?;
    let (action, pkg) = rest.split_once(": ")?;
    let name = package_name(pkg.trim())?;
    match action {
        "unpack" | "install" | "upgrade" => Some(DpkgEvent::Unpacking(name)),
        "configure" => Some(DpkgEvent::SettingUp(name)),
        "trigproc" => Some(DpkgEvent::Triggers(name)),
        _ => None,
    }
}

/// Turns events into reporter calls: a package counts once, when it is
/// set up (so the count never passes the number of packages), and the
/// current step is shown meanwhile, with how many of the `total` are
/// unpacked while dpkg unpacks (a batch is unpacked whole before any of it
/// is set up).
pub struct Counter<'r> {
    reporter: &'r dyn Reporter,
    total: u64,
    unpacked: HashSet<String>,
    set_up: HashSet<String>,
}

impl<'r> Counter<'r> {
    pub fn new(reporter: &'r dyn Reporter, total: u64) -> Self {
        Counter {
            reporter,
            total,
            unpacked: HashSet::new(),
            set_up: HashSet::new(),
        }
    }

    pub fn line(&mut self, line: &str) {
        match parse_line(line) {
            Some(DpkgEvent::Unpacking(n)) => {
                self.unpacked.insert(n.clone());
                let k = self.unpacked.len();
                self.reporter
                    .item_started(&format!("unpacking {k}/{}: {n}", self.total));
            }
            Some(DpkgEvent::SettingUp(n)) => {
                if self.set_up.insert(n.clone()) {
                    self.reporter.item_done(&n);
                }
                self.reporter.item_started(&format!("setting up {n}"));
            }
            Some(DpkgEvent::Triggers(n)) => self.reporter.item_started(&format!("triggers of {n}")),
            Some(DpkgEvent::AptUpdate) => self.reporter.item_started("apt-get update"),
            None => {}
        }
    }
}

/// How often the log is read while the install runs.
const POLL: Duration = Duration::from_millis(200);
/// The longest line kept whole (longer ones are skipped).
const LINE_MAX: usize = 4096;
/// The most of the log read for progress (the root writes it).
const LOG_READ_MAX: usize = 256 << 20;

/// Runs `work` while following the log `rel` in `root` (which `work`'s
/// sandbox writes), telling `reporter` what dpkg does with the `total`
/// packages. Display only: a log that does not appear, or is not a regular
/// file, shows nothing.
pub fn follow<T>(
    root: &RootDir,
    rel: &Path,
    total: u64,
    reporter: &dyn Reporter,
    work: impl FnOnce() -> T,
) -> T {
    let done = AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            // Signals are for the thread that forwards them to the sandbox.
            let _ = nix::sys::signal::pthread_sigmask(
                nix::sys::signal::SigmaskHow::SIG_BLOCK,
                Some(&nix::sys::signal::SigSet::all()),
                None,
            );
            let mut counter = Counter::new(reporter, total);
            // The root writes the log: a huge (sparse) one is read no
            // further than this.
            let mut budget = LOG_READ_MAX;
            let mut file = None;
            let mut pending: Vec<u8> = Vec::new();
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let last = done.load(Ordering::Acquire);
                if file.is_none() {
                    file = root.open_regular(rel).ok();
                }
                if let Some(f) = file.as_mut() {
                    let cap = buf.len();
                    while let Ok(n @ 1..) = f.read(&mut buf[..cap.min(budget)]) {
                        budget -= n;
                        pending.extend_from_slice(&buf[..n]);
                        while let Some(i) = pending.iter().position(|b| *b == b'\n') {
                            let line: Vec<u8> = pending.drain(..=i).collect();
                            counter.line(&String::from_utf8_lossy(&line));
                        }
                        if pending.len() > LINE_MAX {
                            pending.clear();
                        }
                    }
                }
                if last {
                    break;
                }
                std::thread::sleep(POLL);
            }
        });
        let out = work();
        done.store(true, Ordering::Release);
        out
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[test]
    fn dpkg_lines_name_the_package() {
        use DpkgEvent::*;
        for (line, want) in [
            (
                "Unpacking libc6:arm64 (2.41-12) ...",
                Some(Unpacking("libc6".into())),
            ),
            (
                "Unpacking base-files (13.8) over (13.8) ...\n",
                Some(Unpacking("base-files".into())),
            ),
            (
                "Setting up libstdc++6:arm64 (14.2.0-19) ...",
                Some(SettingUp("libstdc++6".into())),
            ),
            (
                "processing: configure: login.defs:all",
                Some(SettingUp("login.defs".into())),
            ),
            (
                "processing: unpack: dpkg:arm64",
                Some(Unpacking("dpkg".into())),
            ),
            (
                "processing: trigproc: man-db:arm64",
                Some(Triggers("man-db".into())),
            ),
            (
                "Processing triggers for libc-bin (2.41-12) ...",
                Some(Triggers("libc-bin".into())),
            ),
            (
                "Get:1 http://deb.debian.org/debian trixie InRelease [140 kB]",
                Some(AptUpdate),
            ),
            ("Reading package lists...", Some(AptUpdate)),
            ("Preparing to unpack .../libc6.deb ...", None),
            ("Setting up \x1b[2J (1) ...", None),
            ("Selecting previously unselected package libc6.", None),
        ] {
            assert_eq!(parse_line(line), want, "{line}");
        }
    }

    #[derive(Default)]
    struct Record(Mutex<Vec<String>>);
    impl Reporter for Record {
        fn item_done(&self, name: &str) {
            self.0.lock().unwrap().push(format!("done {name}"));
        }
        fn item_started(&self, what: &str) {
            self.0.lock().unwrap().push(what.to_string());
        }
    }

    #[test]
    fn a_package_counts_once_when_it_is_set_up() {
        let r = Record::default();
        let mut c = Counter::new(&r, 2);
        for l in [
            "Unpacking a (1) ...",
            "Setting up a (1) ...",
            "Setting up a (1) ...",
            "Setting up b:arm64 (1) ...",
        ] {
            c.line(l);
        }
        assert_eq!(
            *r.0.lock().unwrap(),
            [
                "unpacking 1/2: a",
                "done a",
                "setting up a",
                "setting up a",
                "done b",
                "setting up b"
            ]
        );
    }

    #[test]
    fn the_log_is_followed_while_the_work_runs() {
        let d = tempfile::tempdir().unwrap();
        let root = RootDir::open(d.path()).unwrap();
        let r = Record::default();
        let log = d.path().join("var/log/x.log");
        follow(&root, Path::new("var/log/x.log"), 2, &r, || {
            std::thread::sleep(POLL);
            std::fs::create_dir_all(log.parent().unwrap()).unwrap();
            std::fs::write(&log, "Setting up a (1) ...\nSetting up b (1) ...\nSetting").unwrap();
        });
        let seen = r.0.lock().unwrap().clone();
        assert_eq!(seen, ["done a", "setting up a", "done b", "setting up b"]);
    }

    #[test]
    fn a_huge_log_from_the_root_does_not_hold_create() {
        // A script inside may make the log a sparse file of a terabyte:
        // it is read no further than LOG_READ_MAX, so follow returns.
        let d = tempfile::tempdir().unwrap();
        let root = RootDir::open(d.path()).unwrap();
        std::fs::create_dir_all(d.path().join("var/log")).unwrap();
        let f = std::fs::File::create(d.path().join("var/log/x.log")).unwrap();
        f.set_len(1 << 40).unwrap();
        let start = std::time::Instant::now();
        follow(
            &root,
            Path::new("var/log/x.log"),
            1,
            &Record::default(),
            || std::thread::sleep(POLL),
        );
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{:?}",
            start.elapsed()
        );
    }
}
