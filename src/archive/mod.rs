//! The Debian archive client: verified Release files, Packages indexes,
//! dpkg version order, dependency resolution and the download cache.

pub mod deb822;
pub mod relation;
pub mod release;
pub mod version;
