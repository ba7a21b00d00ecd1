//! The binary's progress display: renders what the library tells a
//! [`Reporter`] with indicatif (the library itself never prints).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use zchroot::report::{Phase, Reporter};

/// Renders progress: one bar per phase, bytes when known, else items.
pub struct Bars {
    verbose: bool,
    bar: Mutex<Option<ProgressBar>>,
    items: AtomicU64,
    total_items: AtomicU64,
}

impl Bars {
    pub fn new(verbose: bool) -> Self {
        Bars {
            verbose,
            bar: Mutex::new(None),
            items: AtomicU64::new(0),
            total_items: AtomicU64::new(0),
        }
    }
    fn with(&self, f: impl FnOnce(&ProgressBar)) {
        if let Some(b) = self.bar.lock().unwrap().as_ref() {
            f(b)
        }
    }
}

impl Reporter for Bars {
    fn phase(&self, phase: Phase, items: u64, bytes: u64) {
        let bar = if bytes > 0 {
            ProgressBar::new(bytes).with_style(
                ProgressStyle::with_template(
                    "{prefix:>9} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {msg}",
                )
                .unwrap()
                .progress_chars("=> "),
            )
        } else if items > 0 {
            ProgressBar::new(items).with_style(
                ProgressStyle::with_template("{prefix:>9} [{bar:30}] {pos}/{len} {msg}")
                    .unwrap()
                    .progress_chars("=> "),
            )
        } else {
            ProgressBar::new_spinner()
                .with_style(ProgressStyle::with_template("{prefix:>9} {spinner} {msg}").unwrap())
        };
        bar.set_draw_target(ProgressDrawTarget::stderr());
        bar.set_prefix(phase.name());
        self.items.store(0, Ordering::Relaxed);
        self.total_items.store(items, Ordering::Relaxed);
        if bytes > 0 {
            bar.set_message(format!("0/{items} files"));
        }
        bar.enable_steady_tick(std::time::Duration::from_millis(120));
        if let Some(old) = self.bar.lock().unwrap().replace(bar) {
            old.finish_and_clear();
        }
    }
    fn bytes(&self, n: u64) {
        self.with(|b| {
            if b.length().is_some()
                && self.total_items.load(Ordering::Relaxed) != b.length().unwrap()
            {
                b.inc(n)
            }
        });
    }
    fn item_done(&self, name: &str) {
        let done = self.items.fetch_add(1, Ordering::Relaxed) + 1;
        let total = self.total_items.load(Ordering::Relaxed);
        self.with(|b| {
            if b.length() == Some(total) {
                b.inc(1);
            } else {
                b.set_message(format!("{done}/{total} files"));
            }
            if self.verbose {
                b.println(format!("  {name}"));
            }
        });
    }
    fn note(&self, message: &str) {
        if self.verbose {
            match self.bar.lock().unwrap().as_ref() {
                Some(b) => b.println(format!("  {message}")),
                None => eprintln!("  {message}"),
            }
        }
    }
    fn warn(&self, message: &str) {
        match self.bar.lock().unwrap().as_ref() {
            Some(b) => b.println(format!("warning: {message}")),
            None => eprintln!("warning: {message}"),
        }
    }
    fn finish(&self) {
        if let Some(b) = self.bar.lock().unwrap().take() {
            b.finish_and_clear();
        }
    }
}

/// `-q`: no progress, no notes; warnings still show.
pub struct WarningsOnly;

impl Reporter for WarningsOnly {
    fn warn(&self, message: &str) {
        eprintln!("warning: {message}");
    }
}
