//! Stopping on Ctrl-C, SIGTERM or SIGHUP with nothing left behind: long
//! work calls [`check`] between its steps, and the error it returns unwinds
//! through the guards that remove staging trees and temporary directories.
//! The binary installs the handler ([`crate::sys::interrupt::install`]) and
//! exits 128+N.

pub use nix::sys::signal::Signal;

/// The work was asked to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("interrupted by {0}")]
pub struct Interrupted(pub Signal);

/// `Err` once a stopping signal was received.
pub fn check() -> Result<(), Interrupted> {
    match crate::sys::interrupt::received() {
        Some(sig) => Err(Interrupted(sig)),
        None => Ok(()),
    }
}

/// The exit status for a run stopped by `sig` (128+N, as a shell reports).
pub fn exit_status(sig: Signal) -> u8 {
    128u8.saturating_add(sig as u8)
}
