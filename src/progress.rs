//! The binary's progress display: renders what the library tells a
//! [`Reporter`] (the library itself never prints). On a terminal, one bar
//! per phase that fits the width (truncated, never wrapped) and is cleared
//! when the phase ends; in a log (stderr not a terminal: CI, cron, a pipe),
//! a line when a phase starts and one when it ends, with its time.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use zchroot::report::{Phase, Reporter};

/// Where a phase is: what the bar or the log line shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub phase: Phase,
    /// Items finished, of `total` (0: unknown).
    pub done: u64,
    pub total: u64,
    /// Bytes moved, of `total_bytes` (0: not counted in bytes).
    pub bytes: u64,
    pub total_bytes: u64,
    /// What is being worked on now, as the library said it.
    pub current: String,
}

impl Status {
    pub fn new(phase: Phase, total: u64, total_bytes: u64) -> Status {
        Status {
            phase,
            done: 0,
            total,
            bytes: 0,
            total_bytes,
            current: String::new(),
        }
    }

    /// How far, from 0 to 1, when known.
    fn fraction(&self) -> Option<f64> {
        if self.total_bytes > 0 {
            Some(self.bytes as f64 / self.total_bytes as f64)
        } else if self.total > 0 {
            Some(self.done as f64 / self.total as f64)
        } else {
            None
        }
    }
}

/// `n` bytes for a person: `512 B`, `3.2 KiB`, `45.6 MiB`, `1.2 GiB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

/// `done` of `total` bytes, the unit once when both share it: `1.2/45.6 MiB`.
fn bytes_of(done: u64, total: u64) -> String {
    let (d, t) = (human_bytes(done), human_bytes(total));
    match (d.rsplit_once(' '), t.rsplit_once(' ')) {
        (Some((dv, du)), Some((tv, tu))) if du == tu => format!("{dv}/{tv} {tu}"),
        _ => format!("{d}/{t}"),
    }
}

/// A name from the library (a package, a file) made safe to print: what
/// a package or a log inside a root chose cannot move the cursor or
/// recolour the terminal, and each char is one column.
pub fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .collect()
}

/// The first `width` columns of `s` (one column per char: see [`sanitize`]).
fn truncate(s: &str, width: usize) -> String {
    s.chars().take(width).collect()
}

/// A bar of `width` columns, `fraction` of it filled.
fn bar(fraction: f64, width: usize) -> String {
    let filled = ((fraction.clamp(0.0, 1.0) * width as f64) as usize).min(width);
    let mut s = "=".repeat(filled);
    if filled < width {
        s.push('>');
        s.push_str(&" ".repeat(width - filled - 1));
    }
    s
}

/// Columns the current item's name keeps before the bar takes the rest.
const NAME_ROOM: usize = 16;
/// The widest bar.
const BAR_MAX: usize = 30;

/// The status after the phase's name, spinner and clock: count/total, a
/// bar, bytes and rate when counted, and the current item, in at most
/// `width` columns. The bar shrinks (or goes) first, then the name is cut.
pub fn render(s: &Status, elapsed: Duration, width: usize) -> String {
    let mut head = String::new();
    if s.total > 0 {
        head = format!("{}/{}", s.done, s.total);
    }
    let mut tail = String::new();
    if s.total_bytes > 0 {
        tail = format!(" {}", bytes_of(s.bytes, s.total_bytes));
        let secs = elapsed.as_secs_f64();
        if secs >= 1.0 {
            tail.push_str(&format!(
                " {}/s",
                human_bytes((s.bytes as f64 / secs) as u64)
            ));
        }
    }
    let fixed = head.len() + tail.len() + 3; // " [" "]"
    let room = width.saturating_sub(fixed + NAME_ROOM).min(BAR_MAX);
    let mut line = head;
    if let Some(f) = s.fraction().filter(|_| room >= 8) {
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(&format!("[{}]", bar(f, room)));
    }
    line.push_str(&tail);
    let name = sanitize(&s.current);
    if !name.is_empty() {
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(&name);
    }
    truncate(line.trim_start(), width)
}

/// What a bar's line holds before [`render`]'s part: `{phase:>9} {spinner} {clock:>4} `.
const LEAD: usize = 9 + 1 + 1 + 1 + 4 + 1;

/// The terminal's width (stderr's), 80 when it cannot be read.
fn term_width() -> usize {
    zchroot::sys::pty::window_size(2)
        .map(|w| w.ws_col as usize)
        .filter(|w| *w > 0)
        .unwrap_or(80)
}

struct Active {
    bar: ProgressBar,
    status: Status,
    started: Instant,
}

impl Active {
    fn redraw(&self) {
        let width = term_width().saturating_sub(LEAD + 1);
        self.bar
            .set_message(render(&self.status, self.started.elapsed(), width));
    }
}

/// Renders progress on a terminal: one bar per phase.
pub struct Bars {
    verbose: bool,
    active: Mutex<Option<Active>>,
}

impl Bars {
    pub fn new(verbose: bool) -> Self {
        Bars {
            verbose,
            active: Mutex::new(None),
        }
    }

    fn with(&self, f: impl FnOnce(&mut Active)) {
        if let Some(a) = self.active.lock().unwrap().as_mut() {
            f(a)
        }
    }

    /// A line above the bar (or alone when there is none).
    fn println(&self, line: String) {
        match self.active.lock().unwrap().as_ref() {
            Some(a) => a.bar.println(line),
            None => eprintln!("{line}"),
        }
    }
}

impl Reporter for Bars {
    fn phase(&self, phase: Phase, items: u64, bytes: u64) {
        // `wide_msg` is cut to the terminal's width as it is when drawn.
        let style = ProgressStyle::with_template("{prefix:>9} {spinner} {elapsed:>4} {wide_msg}")
            .expect("a valid template");
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr())
            .with_style(style)
            .with_prefix(phase.name());
        let a = Active {
            bar,
            status: Status::new(phase, items, bytes),
            started: Instant::now(),
        };
        a.redraw();
        a.bar.enable_steady_tick(Duration::from_millis(120));
        if let Some(old) = self.active.lock().unwrap().replace(a) {
            old.bar.finish_and_clear();
        }
    }
    fn bytes(&self, n: u64) {
        self.with(|a| {
            a.status.bytes += n;
            a.redraw();
        });
    }
    fn item_done(&self, name: &str) {
        self.with(|a| {
            a.status.done += 1;
            a.status.current = name.to_string();
            a.redraw();
            if self.verbose {
                a.bar.println(format!("  {}", sanitize(name)));
            }
        });
    }
    fn item_started(&self, what: &str) {
        self.with(|a| {
            a.status.current = what.to_string();
            a.redraw();
        });
    }
    fn note(&self, message: &str) {
        if self.verbose {
            self.println(format!("  {message}"));
        }
    }
    fn warn(&self, message: &str) {
        self.println(format!("warning: {message}"));
    }
    fn finish(&self) {
        if let Some(a) = self.active.lock().unwrap().take() {
            a.bar.finish_and_clear();
        }
    }
}

impl Drop for Bars {
    /// A bar an error left behind goes before the error is printed.
    fn drop(&mut self) {
        self.finish();
    }
}

/// The counts of a phase for a log line: ` (12/40 packages, 3.1 MiB)`.
fn counts(s: &Status, finished: bool) -> String {
    let mut parts = Vec::new();
    if s.total > 0 {
        // A phase that reports no items as they finish gives its total.
        parts.push(match finished && s.done > 0 {
            true => format!("{}/{} {}", s.done, s.total, s.phase.noun()),
            false => format!("{} {}", s.total, s.phase.noun()),
        });
    } else if finished && s.done > 0 {
        parts.push(format!("{} {}", s.done, s.phase.noun()));
    }
    if s.total_bytes > 0 {
        parts.push(human_bytes(if finished { s.bytes } else { s.total_bytes }));
    }
    match parts.is_empty() {
        true => String::new(),
        false => format!(" ({})", parts.join(", ")),
    }
}

/// The log line of a phase that starts: `download: started (40 files, 3.1 MiB)`.
pub fn start_line(s: &Status) -> String {
    format!("{}: started{}", s.phase.name(), counts(s, false))
}

/// The log line of a phase that ended: `download: done in 2.4 s (40/40 files, 3.1 MiB)`.
pub fn end_line(s: &Status, elapsed: Duration) -> String {
    format!(
        "{}: done in {:.1} s{}",
        s.phase.name(),
        elapsed.as_secs_f64(),
        counts(s, true)
    )
}

/// The log line of a long phase still going: `configure: 45/120 packages after 30 s, libc6`.
pub fn still_line(s: &Status, elapsed: Duration) -> String {
    let mut line = format!(
        "{}: {}/{} {} after {} s",
        s.phase.name(),
        s.done,
        s.total,
        s.phase.noun(),
        elapsed.as_secs()
    );
    if !s.current.is_empty() {
        line.push_str(&format!(", {}", sanitize(&s.current)));
    }
    line
}

/// How often a log says where a long phase is.
const STILL_EVERY: Duration = Duration::from_secs(30);

struct Logged {
    status: Status,
    started: Instant,
    last_line: Instant,
}

/// Renders progress into a log: plain lines, no cursor movement.
pub struct Lines {
    verbose: bool,
    active: Mutex<Option<Logged>>,
}

impl Lines {
    pub fn new(verbose: bool) -> Self {
        Lines {
            verbose,
            active: Mutex::new(None),
        }
    }
}

impl Reporter for Lines {
    fn phase(&self, phase: Phase, items: u64, bytes: u64) {
        let mut active = self.active.lock().unwrap();
        if let Some(old) = active.take() {
            eprintln!("{}", end_line(&old.status, old.started.elapsed()));
        }
        let status = Status::new(phase, items, bytes);
        eprintln!("{}", start_line(&status));
        *active = Some(Logged {
            status,
            started: Instant::now(),
            last_line: Instant::now(),
        });
    }
    fn bytes(&self, n: u64) {
        if let Some(l) = self.active.lock().unwrap().as_mut() {
            l.status.bytes += n;
        }
    }
    fn item_done(&self, name: &str) {
        if let Some(l) = self.active.lock().unwrap().as_mut() {
            l.status.done += 1;
            l.status.current = name.to_string();
            if self.verbose {
                eprintln!("  {}", sanitize(name));
            } else if l.status.total > 0 && l.last_line.elapsed() >= STILL_EVERY {
                eprintln!("{}", still_line(&l.status, l.started.elapsed()));
                l.last_line = Instant::now();
            }
        }
    }
    fn item_started(&self, what: &str) {
        if let Some(l) = self.active.lock().unwrap().as_mut() {
            l.status.current = what.to_string();
            // A phase that counts nothing (a build) says what it works on;
            // a counted one where it is, now and then.
            if l.status.total == 0 {
                eprintln!("{}: {}", l.status.phase.name(), sanitize(what));
            } else if !self.verbose && l.last_line.elapsed() >= STILL_EVERY {
                eprintln!("{}", still_line(&l.status, l.started.elapsed()));
                l.last_line = Instant::now();
            }
        }
    }
    fn note(&self, message: &str) {
        if self.verbose {
            eprintln!("  {message}");
        }
    }
    fn warn(&self, message: &str) {
        eprintln!("warning: {message}");
    }
    fn finish(&self) {
        if let Some(l) = self.active.lock().unwrap().take() {
            eprintln!("{}", end_line(&l.status, l.started.elapsed()));
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

#[cfg(test)]
mod tests {
    use super::*;

    fn download() -> Status {
        Status {
            phase: Phase::Download,
            done: 117,
            total: 120,
            bytes: 123_456_789,
            total_bytes: 456_789_012,
            current: "libreadline8t64_8.2-6_arm64.deb".into(),
        }
    }

    #[test]
    fn a_line_fits_the_width_and_gives_up_the_bar_first() {
        let s = download();
        let secs = Duration::from_secs(12);
        for width in [20, 40, 60, 80 - LEAD - 1, 120, 200] {
            let line = render(&s, secs, width);
            assert!(line.chars().count() <= width, "{width}: {line:?}");
        }
        let line = render(&s, secs, 80 - LEAD - 1);
        assert!(line.starts_with("117/120 ["), "{line}");
        assert!(
            line.contains("] 117.7/435.6 MiB 9.8 MiB/s libreadline"),
            "{line}"
        );
        assert!(line.contains("libreadline"), "{line}");
        let narrow = render(&s, secs, 40);
        assert!(!narrow.contains('['), "{narrow}");
        assert!(narrow.starts_with("117/120 117.7/435.6 MiB"), "{narrow}");
        let wide = render(&s, secs, 200);
        assert!(wide.contains(&format!("[{}", "=".repeat(8))), "{wide}");
        assert!(wide.ends_with("libreadline8t64_8.2-6_arm64.deb"), "{wide}");
    }

    #[test]
    fn counted_phases_show_count_and_current_item_and_spinners_only_the_item() {
        let mut s = Status::new(Phase::Configure, 120, 0);
        s.done = 45;
        s.current = "setting up libc6".into();
        assert_eq!(
            render(&s, Duration::ZERO, 60),
            format!(
                "45/120 [{}>{}] setting up libc6",
                "=".repeat(11),
                " ".repeat(18)
            )
        );
        let mut b = Status::new(Phase::Build, 0, 0);
        assert_eq!(render(&b, Duration::ZERO, 60), "");
        b.current = "building for 6.12.48+deb13-arm64".into();
        assert_eq!(
            render(&b, Duration::ZERO, 60),
            "building for 6.12.48+deb13-arm64"
        );
    }

    #[test]
    fn names_cannot_move_the_cursor() {
        let mut s = Status::new(Phase::Configure, 2, 0);
        s.current = "evil\x1b[2J\r\nname\u{30a2}".into();
        let line = render(&s, Duration::ZERO, 80);
        assert!(line.ends_with("evil?[2J??name?"), "{line}");
        assert!(line.chars().all(|c| c.is_ascii() && !c.is_ascii_control()));
    }

    #[test]
    fn log_lines_say_start_end_time_and_counts() {
        let mut s = Status::new(Phase::Download, 40, 3 << 20);
        assert_eq!(start_line(&s), "download: started (40 files, 3.0 MiB)");
        s.done = 40;
        s.bytes = 3 << 20;
        assert_eq!(
            end_line(&s, Duration::from_millis(2440)),
            "download: done in 2.4 s (40/40 files, 3.0 MiB)"
        );
        let b = Status::new(Phase::Build, 0, 0);
        assert_eq!(start_line(&b), "build: started");
        assert_eq!(
            end_line(&b, Duration::from_secs(420)),
            "build: done in 420.0 s"
        );
        let mut c = Status::new(Phase::Configure, 120, 0);
        c.done = 45;
        c.current = "libc6".into();
        assert_eq!(
            still_line(&c, Duration::from_secs(31)),
            "configure: 45/120 packages after 31 s, libc6"
        );
    }

    #[test]
    fn sizes_read_as_a_person_would() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(3 * 1024 + 200), "3.2 KiB");
        assert_eq!(human_bytes(5 << 30), "5.0 GiB");
        assert_eq!(bytes_of(3 << 20, 45 << 20), "3.0/45.0 MiB");
        assert_eq!(bytes_of(512, 45 << 20), "512 B/45.0 MiB");
    }
}
