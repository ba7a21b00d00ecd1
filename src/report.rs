//! Progress reporting. The library never prints: it tells a [`Reporter`],
//! and the binary renders that (with indicatif) or stays quiet.

/// A long-running phase of work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Update,
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
            Phase::Resolve => "resolve",
            Phase::Download => "download",
            Phase::Unpack => "unpack",
            Phase::Configure => "configure",
            Phase::Build => "build",
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
/// each phase took (a phase ends at `finish` or when the next one starts),
/// for `ZCHROOT_TIMINGS=FILE` and `cargo xtask bench create`.
pub struct Timed<'a> {
    inner: &'a dyn Reporter,
    current: std::sync::Mutex<Option<(Phase, std::time::Instant)>>,
    done: std::sync::Mutex<Vec<(Phase, std::time::Duration)>>,
}

impl<'a> Timed<'a> {
    pub fn new(inner: &'a dyn Reporter) -> Self {
        Timed {
            inner,
            current: std::sync::Mutex::new(None),
            done: std::sync::Mutex::new(Vec::new()),
        }
    }

    fn end_current(&self) {
        let ended = self.current.lock().map(|mut c| c.take()).ok().flatten();
        if let (Some((phase, start)), Ok(mut done)) = (ended, self.done.lock()) {
            done.push((phase, start.elapsed()));
        }
    }

    /// The phases finished so far, in order, with their wall times.
    pub fn times(&self) -> Vec<(Phase, std::time::Duration)> {
        self.end_current();
        self.done.lock().map(|d| d.clone()).unwrap_or_default()
    }

    /// [`Timed::times`] as lines `NAME SECONDS` (what the bench reads).
    pub fn render(&self) -> String {
        self.times()
            .iter()
            .map(|(p, d)| format!("{} {:.3}\n", p.name(), d.as_secs_f64()))
            .collect()
    }
}

impl Reporter for Timed<'_> {
    fn phase(&self, phase: Phase, items: u64, bytes: u64) {
        self.end_current();
        if let Ok(mut c) = self.current.lock() {
            *c = Some((phase, std::time::Instant::now()));
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
        self.end_current();
        self.inner.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timed_records_each_phase_once_in_order() {
        let t = Timed::new(&Silent);
        t.phase(Phase::Resolve, 0, 0);
        t.phase(Phase::Download, 3, 0); // ends resolve
        t.finish();
        t.finish(); // nothing current: no entry
        t.phase(Phase::Configure, 0, 0);
        let names: Vec<&str> = t.times().iter().map(|(p, _)| p.name()).collect();
        assert_eq!(names, ["resolve", "download", "configure"]);
        assert_eq!(t.render().lines().count(), 3);
    }
}
