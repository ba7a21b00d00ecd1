//! Progress reporting. The library never prints: it tells a [`Reporter`],
//! and the binary renders that (with indicatif) or stays quiet.

/// A long-running phase of work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Fetching and verifying the suites' Release files.
    Update,
    /// Fetching the suites' package indexes.
    Indexes,
    Resolve,
    Download,
    Unpack,
    Configure,
    /// Compiling a kernel module.
    Build,
}

impl Phase {
    pub fn name(self) -> &'static str {
        match self {
            Phase::Update => "update",
            Phase::Indexes => "indexes",
            Phase::Resolve => "resolve",
            Phase::Download => "download",
            Phase::Unpack => "unpack",
            Phase::Configure => "configure",
            Phase::Build => "build",
        }
    }

    /// What the phase counts, for a log line (`download: 12 files`).
    pub fn noun(self) -> &'static str {
        match self {
            Phase::Update => "suites",
            Phase::Download | Phase::Indexes => "files",
            Phase::Resolve | Phase::Unpack | Phase::Configure => "packages",
            Phase::Build => "items",
        }
    }
}

/// Receives progress. Implementations must be cheap and thread-safe: the
/// downloader calls them from several threads.
pub trait Reporter: Send + Sync {
    /// A phase starts with `items` things to do and `bytes` to move (0 when unknown).
    fn phase(&self, _phase: Phase, _items: u64, _bytes: u64) {}
    /// `n` more bytes moved in the current phase.
    fn bytes(&self, _n: u64) {}
    /// One item (a file, a package) finished.
    fn item_done(&self, _name: &str) {}
    /// Work on an item began: what the display shows as current (a
    /// package name, `unpacking NAME`) until the next item.
    fn item_started(&self, _what: &str) {}
    /// A notable event worth a line in verbose output (a retry, a cache hit).
    fn note(&self, _message: &str) {}
    /// Something the user should see even without `-v`: a fall-back, a
    /// mismatch, a wait that would otherwise look like a hang. Shown on a
    /// terminal and in a log alike.
    fn warn(&self, message: &str) {
        self.note(message)
    }
    /// The current phase is over.
    fn finish(&self) {}
}

/// A reporter that ignores everything (`-q`, tests).
pub struct Silent;
impl Reporter for Silent {}

/// A reporter that passes everything on to another and records how long
/// each phase took, for `ZCHROOT_TIMINGS=FILE` and `cargo xtask bench
/// create`. A phase that starts before the current one finished (qemu
/// fetched while configuring) is nested in it, named `OUTER.INNER`.
pub struct Timed<'a> {
    inner: &'a dyn Reporter,
    /// Open phases, innermost last: (index in `done`, start).
    open: std::sync::Mutex<Vec<(usize, std::time::Instant)>>,
    done: std::sync::Mutex<Vec<(String, std::time::Duration)>>,
}

impl<'a> Timed<'a> {
    pub fn new(inner: &'a dyn Reporter) -> Self {
        Timed {
            inner,
            open: std::sync::Mutex::new(Vec::new()),
            done: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// The phases, in the order they started, with their wall times (an
    /// unfinished one up to now).
    pub fn times(&self) -> Vec<(String, std::time::Duration)> {
        let mut done = self.done.lock().map(|d| d.clone()).unwrap_or_default();
        if let Ok(open) = self.open.lock() {
            for (i, start) in open.iter() {
                done[*i].1 = start.elapsed();
            }
        }
        done
    }

    /// [`Timed::times`] as lines `NAME SECONDS` (what the bench reads).
    pub fn render(&self) -> String {
        self.times()
            .iter()
            .map(|(p, d)| format!("{p} {:.3}\n", d.as_secs_f64()))
            .collect()
    }
}

impl Reporter for Timed<'_> {
    fn phase(&self, phase: Phase, items: u64, bytes: u64) {
        if let (Ok(mut open), Ok(mut done)) = (self.open.lock(), self.done.lock()) {
            let name = match open.last() {
                Some((i, _)) => format!("{}.{}", done[*i].0, phase.name()),
                None => phase.name().to_string(),
            };
            done.push((name, std::time::Duration::ZERO));
            open.push((done.len() - 1, std::time::Instant::now()));
        }
        self.inner.phase(phase, items, bytes)
    }
    fn bytes(&self, n: u64) {
        self.inner.bytes(n)
    }
    fn item_done(&self, name: &str) {
        self.inner.item_done(name)
    }
    fn note(&self, message: &str) {
        self.inner.note(message)
    }
    fn warn(&self, message: &str) {
        self.inner.warn(message)
    }
    fn finish(&self) {
        if let (Ok(mut open), Ok(mut done)) = (self.open.lock(), self.done.lock()) {
            if let Some((i, start)) = open.pop() {
                done[i].1 = start.elapsed();
            }
        }
        self.inner.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timed_records_phases_in_order_nesting_those_started_inside() {
        let t = Timed::new(&Silent);
        t.phase(Phase::Resolve, 0, 0);
        t.finish();
        t.finish(); // nothing open: nothing recorded
        t.phase(Phase::Configure, 0, 0);
        t.phase(Phase::Download, 3, 0); // qemu, while configuring
        t.finish();
        t.finish();
        t.phase(Phase::Build, 0, 0); // unfinished: counted up to now
        let names: Vec<String> = t.times().into_iter().map(|(p, _)| p).collect();
        assert_eq!(
            names,
            ["resolve", "configure", "configure.download", "build"]
        );
        assert_eq!(t.render().lines().count(), 4);
    }
}
