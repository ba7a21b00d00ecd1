//! The harness of the archive tests: a generated, signed archive served on
//! 127.0.0.1, manifests that point at it, and a zchroot home; the library's
//! update, resolve and download run against them.

use std::path::PathBuf;

use crate::archive::{self, Archive, Key, Pkg, SuiteSpec};
use crate::server::Server;
use zchroot::archive::fetch::FetchOptions;
use zchroot::manifest::Manifests;
use zchroot::paths::DataDirs;
use zchroot::report::Silent;
use zchroot::rootfs::spec::{RootRecipe, RootSpec};

/// An archive, its server, and a zchroot home.
pub struct Env {
    pub archive: Archive,
    pub server: Server,
    pub manifests: PathBuf,
    pub home: tempfile::TempDir,
}

impl Env {
    pub fn new(suites: &[SuiteSpec]) -> Env {
        let key = Key::generate("zchroot test archive");
        Env::with_keys(suites, &key, &key)
    }

    /// `signer` signs the archive; `trusted` is what the manifest trusts.
    pub fn with_keys(suites: &[SuiteSpec], signer: &Key, trusted: &Key) -> Env {
        let archive = Archive::new();
        for s in suites {
            archive.add_suite(signer, s);
        }
        let server = Server::start(archive.dir.path().to_owned());
        let names: Vec<&str> = suites.iter().map(|s| s.suite.as_str()).collect();
        let manifests = archive.manifests(&server.base, &names, trusted);
        Env {
            archive,
            server,
            manifests,
            home: tempfile::tempdir().unwrap(),
        }
    }

    pub fn dirs(&self) -> DataDirs {
        DataDirs {
            state: self.home.path().join("state"),
            cache: self.home.path().join("cache"),
        }
    }

    pub fn target(&self, include: &[&str]) -> Result<RootRecipe, String> {
        let m = Manifests::from_dir(&self.manifests).unwrap();
        RootRecipe::new(
            &m,
            &RootSpec {
                arch: archive::ARCH.into(),
                release: "test".into(),
                variant: "minbase".into(),
                include: include.iter().map(|s| s.to_string()).collect(),
                ..Default::default()
            },
        )
        .map_err(|e| e.to_string())
    }

    pub fn opts() -> FetchOptions {
        FetchOptions {
            tries: 3,
            backoff: std::time::Duration::from_millis(10),
            ..FetchOptions::default()
        }
    }

    /// Update and resolve: (name, version, suite) sorted by name.
    pub fn resolve(&self, include: &[&str]) -> Result<Vec<(String, String, String)>, String> {
        let t = self.target(include)?;
        let f = t
            .fetcher(&self.dirs(), Self::opts(), &Silent)
            .map_err(|e| e.to_string())?;
        let idx = t.update(&f, &Silent).map_err(|e| e.to_string())?;
        let plan = t.resolve(&idx, &Silent).map_err(|e| e.to_string())?;
        Ok(plan
            .packages
            .iter()
            .map(|(p, _)| (p.name.clone(), p.version.clone(), p.origin.suite.clone()))
            .collect())
    }

    /// Update, resolve and download; the cached paths.
    pub fn download(&self, include: &[&str]) -> Result<Vec<PathBuf>, String> {
        let t = self.target(include)?;
        let f = t
            .fetcher(&self.dirs(), Self::opts(), &Silent)
            .map_err(|e| e.to_string())?;
        let idx = t.update(&f, &Silent).map_err(|e| e.to_string())?;
        let plan = t.resolve(&idx, &Silent).map_err(|e| e.to_string())?;
        let pkgs: Vec<_> = plan.packages.iter().map(|(p, _)| *p).collect();
        t.download(&f, &pkgs, &Silent).map_err(|e| e.to_string())
    }

    pub fn blobs(&self) -> PathBuf {
        self.dirs().blobs()
    }

    /// Files in the cache under a final (hash) name.
    pub fn final_blobs(&self) -> Vec<String> {
        let Ok(rd) = std::fs::read_dir(self.blobs()) else {
            return vec![];
        };
        rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| !n.ends_with(".partial") && n != "locks")
            .collect()
    }

    pub fn pool_path(&self, p: &Pkg) -> PathBuf {
        let first = &p.name[..1];
        self.archive
            .root()
            .join(format!("pool/main/{first}/{}/{}", p.name, p.deb_name()))
    }
}
