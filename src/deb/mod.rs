//! The .deb format: reading control data and writing reproducible packages.
//!
//! - [`ar`]: the `ar` container that holds the members of a .deb.
//! - [`write`]: [`DebBuilder`], a reproducible .deb writer.
//! - [`read`]: control data of a .deb, and extraction of its data confined to a root.

pub mod ar;
pub mod read;
pub mod write;

use std::io;
use std::path::PathBuf;

pub use read::{
    control_files, extract_data, extract_data_full, extract_data_with, read_control, Conffile,
    ControlFile, ControlFiles, ExtractLimit, Extraction, SkippedKind, SkippedNode, ENTRY_ALLOWANCE,
};
pub use write::{Compression, DebBuilder};

/// Errors reading, extracting or writing a .deb.
///
/// `entry` fields hold the archive member name as written in the package
/// (for example `./usr/bin/foo`), lossily converted to UTF-8.
#[derive(Debug, thiserror::Error)]
pub enum DebError {
    #[error("cannot open {path}")]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path} is not a valid .deb container")]
    Container {
        path: PathBuf,
        #[source]
        source: ar::ArError,
    },
    #[error("{path} is not a .deb: its first member is {member} instead of debian-binary")]
    NotADeb { path: PathBuf, member: String },
    #[error("{path} has unsupported format version {version:?} (only 2.x is supported)")]
    FormatVersion { path: PathBuf, version: String },
    #[error("{path} has no {member} member")]
    MissingMember { path: PathBuf, member: &'static str },
    #[error(
        "{path}: member {member} is zstd-compressed, which is not supported yet (Debian uses xz)"
    )]
    Zstd { path: PathBuf, member: String },
    #[error("{path}: member {member} uses an unsupported compression")]
    UnsupportedCompression { path: PathBuf, member: String },
    #[error("cannot read member {member} of {path}")]
    ReadMember {
        path: PathBuf,
        member: String,
        #[source]
        source: io::Error,
    },
    #[error("{path} has no control file in its control member")]
    NoControl { path: PathBuf },
    #[error("the control file of {path} is not UTF-8")]
    ControlNotUtf8 { path: PathBuf },
    #[error("{path}: control member entry {entry:?} is not acceptable: {reason}")]
    BadControlEntry {
        path: PathBuf,
        entry: String,
        reason: &'static str,
    },
    #[error("cannot open extraction root {root}")]
    OpenRoot {
        root: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{deb}: refusing entry {entry:?}: {reason}")]
    UnsafeEntry {
        deb: PathBuf,
        entry: String,
        reason: &'static str,
    },
    #[error("{deb}: entry {entry:?} has unsupported tar type {kind:?}")]
    UnsupportedEntry {
        deb: PathBuf,
        entry: String,
        kind: char,
    },
    #[error("{deb}: too many levels of symbolic links resolving entry {entry:?} under {root}")]
    TooManyLinks {
        deb: PathBuf,
        root: PathBuf,
        entry: String,
    },
    #[error("{deb}: cannot extract entry {entry:?} under {root}: {what}")]
    Conflict {
        deb: PathBuf,
        root: PathBuf,
        entry: String,
        what: &'static str,
    },
    #[error("{deb}: cannot {op} for entry {entry:?} under {root}")]
    Extract {
        deb: PathBuf,
        root: PathBuf,
        entry: String,
        op: &'static str,
        #[source]
        source: io::Error,
    },
    #[error(
        "{package}: unpacks to more than {limit} bytes (Installed-Size says {declared_kib} KiB)"
    )]
    TooLarge {
        package: String,
        deb: PathBuf,
        limit: u64,
        declared_kib: u64,
    },
    #[error(
        "{package}: has more than {limit} entries (files, directories, links), {}",
        entries_reason(*.declared_kib)
    )]
    TooManyEntries {
        package: String,
        deb: PathBuf,
        limit: u64,
        declared_kib: Option<u64>,
    },
    #[error("{package}: unpacking it needs more than the {free} bytes free on the filesystem of {root} (less {reserve} bytes kept free)\nhelp: free some space there")]
    NoSpace {
        package: String,
        root: PathBuf,
        free: u64,
        reserve: u64,
    },
    #[error("{path}: data file {entry:?} is larger than the {limit} bytes read into memory")]
    DataFileTooLarge {
        path: PathBuf,
        entry: String,
        limit: u64,
    },
    #[error("invalid control field {field:?}: {reason}")]
    InvalidField { field: String, reason: &'static str },
    #[error("control field {field} is required")]
    MissingField { field: &'static str },
    #[error("invalid package path {path:?}: {reason}")]
    InvalidPath { path: String, reason: &'static str },
    #[error("invalid control member name {name:?}: {reason}")]
    InvalidControlName { name: String, reason: &'static str },
    #[error("cannot build member {member}")]
    Build {
        member: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("cannot write the .deb")]
    Write {
        #[source]
        source: ar::ArError,
    },
}

/// Why [`DebError::TooManyEntries`] has its limit.
fn entries_reason(declared_kib: Option<u64>) -> String {
    match declared_kib {
        Some(kib) => format!(
            "more than its Installed-Size of {kib} KiB allows (2 entries per KiB and {ENTRY_ALLOWANCE} more)"
        ),
        None => format!(
            "more than the free space allows a package without Installed-Size (2 entries per KiB free and {ENTRY_ALLOWANCE} more)"
        ),
    }
}
