//! `zchroot resolve`: a root's package set, like `apt-get install -s`, and
//! optionally downloaded into the cache.

use serde::Serialize;

use super::{CmdError, Ctx};
use crate::archive::hash::Sha256;
use crate::archive::resolve::Reason;
use crate::rootfs::spec::{RootRecipe, RootSpec};

/// The package set (`--json`; fields in the order `--json` always had).
#[derive(Debug, Clone, Serialize)]
pub struct Resolved {
    pub architecture: String,
    pub packages: Vec<ResolvedPackage>,
    pub release: String,
    pub variant: String,
    /// Every package is in the cache and verified.
    #[serde(skip)]
    pub downloaded: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct ResolvedPackage {
    pub architecture: String,
    /// Its file in the cache, when downloaded.
    pub cached: Option<String>,
    pub component: String,
    pub filename: String,
    pub name: String,
    pub reason: Reason,
    pub sha256: Sha256,
    pub size: u64,
    pub suite: String,
    pub version: String,
}

/// Resolves the target's package set, and downloads it when `download`.
pub fn resolve(ctx: &Ctx, spec: &RootSpec, download: bool) -> Result<Resolved, CmdError> {
    let target = RootRecipe::new(&ctx.manifests, spec)?;
    let fetcher = target.fetcher(&ctx.dirs, ctx.options.clone(), ctx.reporter)?;
    let indexes = target.update(&fetcher, ctx.reporter)?;
    let plan = target.resolve_explained(&fetcher, &indexes, ctx.reporter)?;
    let packages: Vec<_> = plan.packages.iter().map(|(p, _)| *p).collect();
    let paths = if download {
        Some(target.download(&fetcher, &packages, ctx.reporter)?)
    } else {
        None
    };
    let packages = plan
        .packages
        .iter()
        .enumerate()
        .map(|(i, (p, reason))| ResolvedPackage {
            architecture: p.arch.clone(),
            cached: paths.as_ref().map(|v| v[i].display().to_string()),
            component: p.origin.component.clone(),
            filename: p.filename.clone(),
            name: p.name.clone(),
            reason: reason.clone(),
            sha256: p.sha256,
            size: p.size,
            suite: p.origin.suite.clone(),
            version: p.version.clone(),
        })
        .collect();
    Ok(Resolved {
        architecture: target.arch.name.clone(),
        packages,
        release: target.release.release.clone(),
        variant: target.variant.clone(),
        downloaded: paths.is_some(),
    })
}

/// One line per package: name, version, architecture, suite.
pub fn render(r: &Resolved) -> String {
    r.packages
        .iter()
        .map(|p| format!("{} {} {} {}\n", p.name, p.version, p.architecture, p.suite))
        .collect()
}

/// The summary on stderr: how many packages, how much to download.
pub fn summary(r: &Resolved) -> String {
    let size: u64 = r.packages.iter().map(|p| p.size).sum();
    format!(
        "{} packages, {:.1} MiB to download{}",
        r.packages.len(),
        size as f64 / (1 << 20) as f64,
        if r.downloaded {
            ", all in the cache and verified"
        } else {
            ""
        }
    )
}
