//! qemu-user for foreign roots, taken from the Debian archive itself: the
//! release's qemu package for the host's architecture is resolved, fetched
//! and verified like any other package, and its static binary for the
//! target is kept in the cache. Nothing is installed on the host.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::archive::fetch::FetchOptions;
use crate::archive::version;
use crate::manifest::{Arch, Manifests};
use crate::paths::DataDirs;
use crate::report::Reporter;
use crate::rootfs::spec::{RootRecipe, RootSpec, SpecError};

#[derive(Debug, thiserror::Error)]
pub enum QemuError {
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error(
        "package {package} is in none of the suites of {release} for {arch}: cannot get qemu-user"
    )]
    NoPackage {
        package: String,
        release: String,
        arch: String,
    },
    #[error(transparent)]
    Deb(#[from] crate::deb::DebError),
    #[error("{deb} has no {path}: check [qemu] in the {release} manifest")]
    NoBinary {
        deb: String,
        path: String,
        release: String,
    },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A record of the extracted binary, so later runs need no network.
#[derive(serde::Serialize, serde::Deserialize)]
struct Record {
    package: String,
    version: String,
    deb_sha256: String,
    binary_sha256: String,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> QemuError + '_ {
    move |source| QemuError::Io {
        path: path.to_owned(),
        source,
    }
}

fn sha256_file(path: &Path) -> Option<String> {
    std::fs::read(path)
        .ok()
        .map(|b| hex::encode(Sha256::digest(&b)))
}

/// The qemu-user binary that runs `target`'s executables on `host`, from
/// `release`'s archive; fetched on first use, then taken from the cache
/// (trusted only while its hash matches the record).
// Which binary (release, mirror, target, host) and the usual context
// (manifests, dirs, download options, reporter); its one caller passes them.
#[allow(clippy::too_many_arguments)]
pub fn qemu_binary(
    manifests: &Manifests,
    release: &str,
    target: &Arch,
    host: &Arch,
    dirs: &DataDirs,
    mirror: Option<&str>,
    opts: FetchOptions,
    reporter: &dyn Reporter,
) -> Result<PathBuf, QemuError> {
    let dir = dirs.cache.join("qemu");
    let name = format!("qemu-{}", target.qemu);
    let record_path = dir.join(format!("{release}-{}-{name}.json", host.name));
    if let Ok(text) = std::fs::read_to_string(&record_path) {
        if let Ok(r) = serde_json::from_str::<Record>(&text) {
            let bin = dir.join(&r.binary_sha256).join(&name);
            if sha256_file(&bin).as_deref() == Some(r.binary_sha256.as_str()) {
                return Ok(bin);
            }
        }
    }

    let t = RootRecipe::new(
        manifests,
        &RootSpec {
            arch: host.name.clone(),
            release: release.into(),
            variant: "minbase".into(),
            mirror: mirror.map(String::from),
            ..Default::default()
        },
    )?;
    let source = t.release.qemu.clone();
    let (deb_path, pkg_version, deb_sha) = {
        let fetcher = t.fetcher(dirs, opts, reporter)?;
        let indexes = t.update(&fetcher, reporter)?;
        let best = indexes
            .packages
            .iter()
            .filter(|p| p.name == source.package && (p.arch == host.name || p.arch == "all"))
            .max_by(|a, b| version::compare(&a.version, &b.version))
            .ok_or_else(|| QemuError::NoPackage {
                package: source.package.clone(),
                release: release.into(),
                arch: host.name.clone(),
            })?;
        let paths = t.download(&fetcher, &[best], reporter)?;
        (
            paths[0].clone(),
            best.version.clone(),
            best.sha256.to_string(),
        )
    };
    let inner = source.path_for(target);
    let bytes = crate::deb::read::read_data_file(&deb_path, &inner)?.ok_or_else(|| {
        QemuError::NoBinary {
            deb: deb_path.display().to_string(),
            path: inner.clone(),
            release: release.into(),
        }
    })?;
    let binary_sha256 = hex::encode(Sha256::digest(&bytes));
    let final_dir = dir.join(&binary_sha256);
    crate::paths::create_private_dir_all(&final_dir).map_err(io(&final_dir))?;
    let bin = final_dir.join(&name);
    crate::atomic::write_atomic(&bin, &bytes, 0o755).map_err(io(&bin))?;
    let record = Record {
        package: source.package,
        version: pkg_version,
        deb_sha256: deb_sha,
        binary_sha256,
    };
    let json = serde_json::to_vec_pretty(&record).unwrap();
    crate::atomic::write_atomic(&record_path, &json, 0o644).map_err(io(&record_path))?;
    Ok(bin)
}
