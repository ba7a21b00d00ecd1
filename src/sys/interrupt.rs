//! Ctrl-C, SIGTERM and SIGHUP as a request to stop: the handler only
//! records the signal; the work stops at its next check
//! ([`crate::interrupt::check`]) or, inside a sandbox, when the forwarded
//! signal ends it; the error unwinds, every guard removes what it made, and
//! the exit status is 128+N. A second signal of the same kind kills at once
//! (SA_RESETHAND), as it would have without the handler.

use std::sync::atomic::{AtomicI32, AtomicU32, Ordering};

use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal};

use super::{err, SysResult};

/// The signals that ask zchroot to stop.
pub const STOPPING: [Signal; 3] = [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP];

/// The first stopping signal received (0: none).
static FIRST: AtomicI32 = AtomicI32::new(0);
/// The last one received, and how many (the sandbox forwards each new one).
static LAST: AtomicI32 = AtomicI32::new(0);
static COUNT: AtomicU32 = AtomicU32::new(0);

extern "C" fn record(sig: libc::c_int) {
    // Only atomics here: async-signal-safe.
    let _ = FIRST.compare_exchange(0, sig, Ordering::SeqCst, Ordering::SeqCst);
    LAST.store(sig, Ordering::SeqCst);
    COUNT.fetch_add(1, Ordering::SeqCst);
}

/// Records a stopping signal taken by other means (the sandbox's
/// `sigtimedwait`, which forwards it).
pub fn note(sig: Signal) {
    if STOPPING.contains(&sig) {
        record(sig as libc::c_int);
    }
}

/// Installs the recording handler for [`STOPPING`] in this process.
pub fn install() -> SysResult<()> {
    let action = SigAction::new(
        SigHandler::Handler(record),
        SaFlags::SA_RESTART | SaFlags::SA_RESETHAND,
        SigSet::empty(),
    );
    for sig in STOPPING {
        // SAFETY: `record` only does atomic operations, which are
        // async-signal-safe; no previous handler is relied upon.
        unsafe { nix::sys::signal::sigaction(sig, &action) }
            .map_err(err(|| format!("sigaction({sig}, record)")))?;
    }
    Ok(())
}

/// The first stopping signal received, if any.
pub fn received() -> Option<Signal> {
    Signal::try_from(FIRST.load(Ordering::SeqCst)).ok()
}

/// How many stopping signals were received so far.
pub fn count() -> u32 {
    COUNT.load(Ordering::SeqCst)
}

/// The last stopping signal received, if any.
pub fn last() -> Option<Signal> {
    Signal::try_from(LAST.load(Ordering::SeqCst)).ok()
}
