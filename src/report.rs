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
