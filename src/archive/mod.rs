//! The Debian archive client: verified Release files, Packages indexes,
//! dpkg version order, dependency resolution and the download cache.

pub mod dates;
pub mod deb822;
pub mod fetch;
pub mod hash;
pub mod index;
pub mod refresh;
pub mod relation;
pub mod release;
pub mod resolve;
pub mod version;
