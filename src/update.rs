//! `zchroot update`: for each target, list the kernels it should have
//! modules for, build those its repository lacks, prune, write the
//! metapackage that holds the board's kernel back until its module is
//! there, and publish. The choices (which kernels, which files, what the
//! metapackage says, what to prune) are pure functions of the indexes and
//! the pool; [`update_target`] applies them.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::archive::fetch::FetchOptions;
use crate::archive::index::Package;
use crate::archive::relation;
use crate::archive::version;
pub use crate::kmod::kernel::KernelEntry;
use crate::kmod::package::{self, module_file_name};
pub use crate::kmod::package::{meta_name, MetaPackage};
use crate::kmod::{self, kernel, BuildError, BuildSpec, ModuleKind};
use crate::manifest::Manifests;
use crate::paths::DataDirs;
use crate::repo::{self, Repo, RepoError};
use crate::report::Reporter;
use crate::rootfs::spec::{RootRecipe, RootSpec, SpecError};
use crate::targets::{Problem, TargetFile};

#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error(transparent)]
    Build(#[from] BuildError),
    #[error(transparent)]
    Repo(#[from] RepoError),
    #[error(transparent)]
    KernelDeb(#[from] kernel::KernelDebError),
    #[error(transparent)]
    Dkms(#[from] kmod::dkms::DkmsError),
    #[error(transparent)]
    Targets(#[from] crate::targets::TargetsError),
    /// A setting of the target `update` cannot use (see [`check_local`]).
    #[error("{0}")]
    Invalid(Problem),
    #[error("'{module}' is in none of the suites of {release} for {arch}")]
    UnknownModule {
        module: String,
        release: String,
        arch: String,
    },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Every version of `linux-image-FLAVOUR` in `suites` (all when empty) and
/// the kernel each depends on, oldest first, one entry per kernel.
pub fn kernels_of_suites(
    packages: &[Package],
    flavour: &str,
    suites: &[String],
) -> Vec<KernelEntry> {
    let meta = format!("linux-image-{flavour}");
    let mut v: Vec<KernelEntry> = packages
        .iter()
        .filter(|p| p.name == meta)
        .filter(|p| suites.is_empty() || suites.iter().any(|s| s == &p.origin.suite))
        .filter_map(|p| {
            let deps = relation::parse_relations(&p.depends).ok()?;
            let image = deps
                .iter()
                .flatten()
                .find(|r| r.name.starts_with("linux-image-"))?;
            Some(KernelEntry {
                release: image.name.trim_start_matches("linux-image-").to_string(),
                version: p.version.clone(),
            })
        })
        .collect();
    v.sort_by(|a, b| version::compare(&a.version, &b.version));
    let mut out: Vec<KernelEntry> = Vec::new();
    for e in v {
        match out.iter_mut().find(|o| o.release == e.release) {
            Some(o) => *o = e, // the newer metapackage version of that kernel
            None => out.push(e),
        }
    }
    out
}

/// The module name and version the build will package, known before
/// building: from a dkms.conf, or from the `*-dkms` package's version
/// (DKMS versions are the upstream part of it).
pub fn expected_module(
    source: &kmod::dkms::ModuleSource,
    packages: &[Package],
) -> Option<(String, String)> {
    match source {
        kmod::dkms::ModuleSource::Dir { name, version, .. } => {
            Some((name.clone(), version.clone()))
        }
        kmod::dkms::ModuleSource::Package(p, _) => {
            let newest = packages
                .iter()
                .filter(|x| &x.name == p)
                .max_by(|a, b| version::compare(&a.version, &b.version))?;
            Some((
                p.trim_end_matches("-dkms").to_string(),
                kmod::zfs::upstream(&newest.version).to_string(),
            ))
        }
    }
}

/// Files of the pool to remove: per kernel series (`6.12`), the module
/// packages of all but the newest `keep` kernels. `keep` 0 keeps all.
pub fn prune(built: &[(KernelEntry, String)], keep: usize) -> Vec<String> {
    if keep == 0 {
        return vec![];
    }
    let series = |r: &str| r.split('.').take(2).collect::<Vec<_>>().join(".");
    let mut by_series: Vec<(String, Vec<&(KernelEntry, String)>)> = Vec::new();
    for b in built {
        let s = series(&b.0.release);
        match by_series.iter_mut().find(|(k, _)| *k == s) {
            Some((_, v)) => v.push(b),
            None => by_series.push((s, vec![b])),
        }
    }
    let mut out = Vec::new();
    for (_, mut v) in by_series {
        v.sort_by(|a, b| version::compare(&b.0.version, &a.0.version));
        out.extend(v.into_iter().skip(keep).map(|b| b.1.clone()));
    }
    out.sort();
    out
}

/// The module name of a target, as its packages will carry it.
pub fn module_name(t: &TargetFile) -> String {
    match kmod::dkms::dir_source(Path::new(&t.module)) {
        Ok(kmod::dkms::ModuleSource::Dir { name, .. }) => name,
        _ => t.module.trim_end_matches("-dkms").to_string(),
    }
}

/// What an update of one target did.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Summary {
    pub target: String,
    pub seen: usize,
    pub built: Vec<String>,
    pub present: usize,
    pub failed: Vec<String>,
    pub pruned: Vec<String>,
    pub published: bool,
    pub repo: PathBuf,
}

/// The repository of a target.
pub fn repo_of(name: &str, t: &TargetFile, dirs: &DataDirs) -> Repo {
    let base = dirs.state.join("repos").join(name);
    Repo {
        name: name.to_string(),
        dir: t.repo.clone().unwrap_or_else(|| base.join("public")),
        suite: t.release.clone(),
        arch: t.arch.clone(),
        key_path: base.join("secret.key"),
    }
}

/// Refuses to publish target `name`'s repository where serving it could
/// hand out zchroot's own files (the secret key, roots, the cache, the
/// targets in `config` when known): see [`crate::targets::check_repo_dir`].
pub fn check_repo(
    name: &str,
    t: &TargetFile,
    dirs: &DataDirs,
    config: Option<&Path>,
) -> Result<(), crate::targets::TargetsError> {
    let repo = repo_of(name, t, dirs);
    let default = dirs.state.join("repos").join(name).join("public");
    let mut private = vec![
        dirs.state.as_path(),
        dirs.cache.as_path(),
        repo.key_path.as_path(),
    ];
    private.extend(config);
    crate::targets::check_repo_dir(&repo.dir, &default, &private)
}

fn target_spec(t: &TargetFile) -> RootSpec {
    RootSpec {
        arch: t.arch.clone(),
        release: t.release.clone(),
        variant: "minbase".into(),
        include: vec![],
        mirror: t.mirror.clone(),
        keyring: t.keyring.clone(),
        suites: opt_in_suites(&t.suites),
        components: vec![],
    }
}

/// A target's `suites` as the roots take them: only the opt-in `+SUITE`
/// ones (plain names choose which suites' kernels to follow).
fn opt_in_suites(suites: &[String]) -> Vec<String> {
    suites
        .iter()
        .filter(|s| s.starts_with('+'))
        .cloned()
        .collect()
}

/// The suites whose kernels a target follows: the plain names and the
/// opt-in ones; all fetched suites (empty) when only opt-in ones are named.
fn followed_suites(suites: &[String]) -> Vec<String> {
    if suites.iter().all(|s| s.starts_with('+')) {
        return vec![];
    }
    suites
        .iter()
        .map(|s| s.trim_start_matches('+').to_string())
        .collect()
}

/// The board's own kernels: the .debs of `dir`, grouped into kernel sets
/// by what they ship and depend on (several kernels, several versions),
/// oldest first, each with the .debs a build of it takes.
fn local_kernels(
    dir: &Path,
    arch: &str,
    packages: &[Package],
) -> Result<Vec<(kernel::LocalKernel, Vec<PathBuf>)>, UpdateError> {
    let io = |source| UpdateError::Io {
        path: dir.into(),
        source,
    };
    let mut debs: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "deb"))
        .collect();
    debs.sort();
    Ok(kernel::from_dir_debs(&debs, arch, dir, packages)?
        .into_iter()
        .map(|k| {
            let d = k.debs().into_iter().map(PathBuf::from).collect();
            (k, d)
        })
        .collect())
}

/// Updates one target; `Err` only for what stops it as a whole (its
/// indexes, its repository), per-kernel failures are in the summary. The
/// steps: find the kernels and the module, decide what to build, build,
/// prune, write the metapackage, publish.
// The arguments are the builder's own (see `kmod::build_dkms`) plus the
// target, its name and how many kernels to keep.
#[allow(clippy::too_many_arguments)]
pub fn update_target(
    manifests: &Manifests,
    name: &str,
    t: &TargetFile,
    keep: usize,
    dirs: &DataDirs,
    opts: FetchOptions,
    exe: &Path,
    reporter: &dyn Reporter,
) -> Result<Summary, UpdateError> {
    check_repo(name, t, dirs, None)?;
    let repo = repo_of(name, t, dirs);
    let probe = probe_spec(t, &repo);
    let found = find_kernels(manifests, t, &probe, dirs, opts.clone(), reporter)?;
    let file = |k: &KernelEntry| {
        module_file_name(&found.module, &k.release, &found.module_version, &t.arch)
    };
    let mut summary = Summary {
        target: name.to_string(),
        seen: found.kernels.len(),
        repo: repo.dir.clone(),
        ..Default::default()
    };
    // A pooled module counts when it is there and, for a vendor's kernel,
    // built for the image version followed (not an older re-spin's).
    let missing_now = |i: usize| {
        let pooled = repo.pool().join(file(&found.kernels[i]));
        !pooled.exists()
            || found
                .images
                .get(i)
                .is_some_and(|(image, v)| !built_for(&pooled, image, v))
    };
    let missing: Vec<usize> = (0..found.kernels.len())
        .filter(|&i| missing_now(i))
        .collect();
    summary.present = found.kernels.len() - missing.len();
    // The target's own directory (its secret key, the default repository)
    // is private; the published tree in it is readable, as it is where
    // --repo puts it.
    if let Some(own) = repo.key_path.parent() {
        crate::paths::create_private_dir_all(own).map_err(|source| UpdateError::Io {
            path: own.to_owned(),
            source,
        })?;
    }
    std::fs::create_dir_all(repo.pool()).map_err(|source| UpdateError::Io {
        path: repo.pool(),
        source,
    })?;

    let builder = Builder {
        manifests,
        dirs,
        opts,
        exe,
        reporter,
    };
    for spec in build_calls(&probe, &found, &missing) {
        builder.build(ModuleKind::of_target(&t.module), spec, &mut summary);
    }

    // A rebuild that failed leaves a re-spin's old module: not followed.
    let current: Vec<KernelEntry> = (0..found.kernels.len())
        .filter(|&i| !missing_now(i))
        .map(|i| found.kernels[i].clone())
        .collect();
    let built = prune_pool(&repo, &current, &file, keep, &mut summary)?;
    let mut changed = !summary.built.is_empty() || !summary.pruned.is_empty();
    if let Some(newest) = built
        .iter()
        .max_by(|a, b| version::compare(&a.version, &b.version))
    {
        let meta = MetaPackage {
            module: found.module.clone(),
            flavour: found.flavour.clone(),
            arch: t.arch.clone(),
            module_version: found.module_version.clone(),
            newest: (*newest).clone(),
            // A kernel's version is the held package's own (KernelEntry).
            held: kernel::Pin {
                package: found.held.clone(),
                version: newest.version.clone(),
            },
        };
        changed |= write_meta(&repo, &meta)?;
    }
    let published = repo
        .dir
        .join("dists")
        .join(&repo.suite)
        .join("InRelease")
        .exists();
    if changed || !published {
        repo::publish(&repo, SystemTime::now())?;
        summary.published = true;
    }
    Ok(summary)
}

/// The build of the target's module with no kernels chosen yet: each
/// build call copies it and names its kernels.
fn probe_spec(t: &TargetFile, repo: &Repo) -> BuildSpec {
    BuildSpec {
        source: ModuleKind::of_target(&t.module).source_arg(&t.module),
        sha256: None,
        arch: t.arch.clone(),
        release: t.release.clone(),
        mirror: t.mirror.clone(),
        keyring: t.keyring.clone(),
        kernels: vec![],
        flavour: t.flavour.clone(),
        out: repo.pool(),
        package_version: None,
        kernel_debs: vec![],
        strategy: t.strategy,
        sign: None,
        suites: opt_in_suites(&t.suites),
        kernel_archive: t.kernel_archive(),
    }
}

/// What a target builds for: its kernels (with the board's own .debs of
/// each, when it has them), the module and the package held back.
struct Found {
    kernels: Vec<KernelEntry>,
    /// Per kernel, its .debs; empty when the kernels come from the suites.
    locals: Vec<Vec<PathBuf>>,
    /// Per kernel, the image package and version its module must depend
    /// on to count as built; empty when the pool file's name says enough
    /// (a vendor's re-spin keeps `uname -r` and changes the version).
    images: Vec<(String, String)>,
    held: String,
    flavour: String,
    module: String,
    module_version: String,
}

/// Refreshes the target's suites and finds its kernels and the module's
/// package name and version. The indexes are dropped before anything is
/// built.
fn find_kernels(
    manifests: &Manifests,
    t: &TargetFile,
    probe: &BuildSpec,
    dirs: &DataDirs,
    opts: FetchOptions,
    reporter: &dyn Reporter,
) -> Result<Found, UpdateError> {
    let target = check_local(manifests, t).map_err(UpdateError::Invalid)?;
    let flavour = t
        .flavour
        .clone()
        .unwrap_or_else(|| target.arch.kernel_flavour.clone());
    let fetcher = target.fetcher(dirs, opts.clone(), reporter)?;
    let indexes = target.update(&fetcher, reporter)?;
    check_with_indexes(t, &target, &indexes.packages).map_err(UpdateError::Invalid)?;

    let scratch = kmod::scratch_dir(&dirs.state).map_err(|source| UpdateError::Io {
        path: dirs.state.clone(),
        source,
    })?;
    let source = kmod::source(probe, scratch.path())?;
    let (module, module_version) =
        expected_module(&source, &indexes.packages).ok_or_else(|| UpdateError::UnknownModule {
            module: t.module.clone(),
            release: t.release.clone(),
            arch: t.arch.clone(),
        })?;

    let mut images = vec![];
    let (kernels, locals, held) = match (&t.kernel_deb_dir, t.kernel_archive()) {
        (_, Some(a)) => {
            let (k, i, held) = vendor_kernels(&a, &flavour, &t.arch, dirs, opts, reporter)?;
            images = i;
            (k, vec![], held)
        }
        (Some(dir), None) => {
            // Oldest first: the newest set's pin (its flavour metapackage,
            // else its image) is held, at each kernel's version of it.
            let l = local_kernels(dir, &t.arch, &indexes.packages)?;
            let held = l.last().map(|(k, _)| k.pin().package).unwrap_or_default();
            let (k, d) = l
                .into_iter()
                .map(|(k, d)| {
                    (
                        KernelEntry {
                            release: k.kernel.release.clone(),
                            version: k.pin().version,
                        },
                        d,
                    )
                })
                .unzip();
            (k, d, held)
        }
        (None, None) => (
            kernels_of_suites(&indexes.packages, &flavour, &followed_suites(&t.suites)),
            vec![],
            format!("linux-image-{flavour}"),
        ),
    };
    Ok(Found {
        kernels,
        locals,
        images,
        held,
        flavour,
        module,
        module_version,
    })
}

/// The kernels of a vendor's archive (fetched and verified), with the
/// version of the package the board's apt follows each by, the image
/// package and version each module must depend on, and the package apt
/// follows (the flavour's metapackage, else the image package). A kernel
/// whose release cannot be worked out (no headers, odd headers) is left
/// out with a warning: it cannot be built, the others can.
fn vendor_kernels(
    archive: &kmod::vendor::KernelArchive,
    flavour: &str,
    arch: &str,
    dirs: &DataDirs,
    opts: FetchOptions,
    reporter: &dyn Reporter,
) -> Result<VendorKernels, UpdateError> {
    let v = kmod::vendor::Vendor::open(archive, arch, dirs, opts, reporter)
        .map_err(BuildError::from)?;
    let found = v.candidates(flavour, arch).map_err(BuildError::from)?;
    let held = found[0].held.clone();
    let mut resolved = Vec::new();
    for c in found {
        match v.resolve(c, arch) {
            Ok(c) => resolved.push(c),
            Err(e) => reporter.warn(&format!("left out: {}", error_text(&e))),
        }
    }
    let (entries, images) = vendor_entries(resolved);
    Ok((entries, images, held))
}

/// What [`vendor_kernels`] finds.
type VendorKernels = (Vec<KernelEntry>, Vec<(String, String)>, String);

/// A vendor's kernels (newest first, releases worked out) as `update`
/// follows them: oldest first, one per release, the newest package of
/// each (a re-spin keeps `uname -r`), with its image package and version.
fn vendor_entries(
    newest_first: Vec<kmod::vendor::Candidate>,
) -> (Vec<KernelEntry>, Vec<(String, String)>) {
    let mut out: Vec<(KernelEntry, (String, String))> = Vec::new();
    for c in newest_first {
        let Some(release) = c.release else { continue };
        if out.iter().any(|(k, _)| k.release == release) {
            continue;
        }
        out.push((
            KernelEntry {
                release,
                version: c.held_version,
            },
            (c.image, c.image_version),
        ));
    }
    out.into_iter().rev().unzip()
}

/// Whether a pooled module .deb depends on `image` at `version`: a module
/// built for an older package of the same release does not count.
fn built_for(deb: &Path, image: &str, version: &str) -> bool {
    let want = format!("{image} (= {version})");
    let Ok(control) = crate::deb::read::read_control(deb) else {
        return false;
    };
    crate::archive::deb822::parse(&control, "control")
        .ok()
        .and_then(|v| v.into_iter().next())
        .is_some_and(|s| {
            s.get("Depends")
                .unwrap_or("")
                .split('|')
                .any(|d| d.trim() == want)
        })
}

/// What a target's `module` may be, for help lines.
const MODULE_HELP: &str =
    "give zfs, a *-dkms package of the release's suites, or a directory with a dkms.conf";

/// Checks a target as far as it can be without the archive: architecture,
/// release, mirror and keyring (as `create` checks them), the suites (of
/// the release), the module's form and the kernel .deb directory. The
/// recipe it returns is what [`check_with_indexes`] goes on with.
pub fn check_local(manifests: &Manifests, t: &TargetFile) -> Result<RootRecipe, Problem> {
    manifests
        .arch(&t.arch)
        .map_err(|e| Problem::new("arch", e.to_string()))?;
    manifests
        .release(&t.release)
        .map_err(|e| Problem::new("release", e.to_string()))?;
    let recipe = RootRecipe::new(manifests, &target_spec(t)).map_err(|e| match e {
        SpecError::BadMirror { .. } => Problem::new("mirror", e.to_string()),
        SpecError::Update(_) => Problem::new("keyring", e.to_string()),
        SpecError::Manifest(crate::manifest::ManifestError::UnknownSuite { .. }) => {
            Problem::new("suites", e.to_string())
        }
        e => Problem::new("release", e.to_string()),
    })?;
    let known: Vec<&str> = recipe.sources.iter().map(|s| s.suite.as_str()).collect();
    // `+SUITE` (opt-in, e.g. backports) is among the recipe's sources.
    let bare = |s: &str| s.trim_start_matches('+').to_string();
    if let Some(s) = t.suites.iter().find(|s| !known.contains(&bare(s).as_str())) {
        return Err(Problem::new(
            "suites",
            format!(
                "suite '{s}' is not one of {}'s: known are {}",
                t.release,
                known.join(", ")
            ),
        )
        .help("an opt-in suite such as backports is added as +SUITE, e.g. +trixie-backports"));
    }
    check_module_form(&t.module)?;
    check_kernel_archive(t)?;
    if let Some(d) = &t.kernel_deb_dir {
        let problem = |what: String| {
            Problem::new("kernel-deb-dir", format!("{}: {what}", d.display())).help(format!(
                "make it (mkdir -p {}) and drop the board kernel's image and headers .debs in it",
                d.display()
            ))
        };
        match std::fs::metadata(d) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => return Err(problem("not a directory".into())),
            Err(e) => return Err(problem(e.to_string())),
        }
    }
    Ok(recipe)
}

/// A vendor archive's settings: URL and keyring together, not with a
/// kernel .deb directory, the URL's form, the keyring a keyring.
fn check_kernel_archive(t: &TargetFile) -> Result<(), Problem> {
    let vendor_help = "a vendor's archive needs both --kernel-archive URL and --kernel-keyring FILE (the key you got from the vendor)";
    match (&t.kernel_archive, &t.kernel_keyring) {
        (None, None) => return Ok(()),
        (Some(_), None) => {
            return Err(Problem::new(
                "kernel-keyring",
                "a kernel archive needs its keyring: zchroot ships no vendor's key",
            )
            .help(vendor_help))
        }
        (None, Some(_)) => {
            return Err(Problem::new(
                "kernel-archive",
                "a kernel keyring without a kernel archive",
            )
            .help(vendor_help))
        }
        (Some(_), Some(_)) => {}
    }
    if t.kernel_deb_dir.is_some() {
        return Err(Problem::new(
            "kernel-archive",
            "the kernels come either from a kernel archive or from kernel-deb-dir, not both",
        ));
    }
    if let Some(s) = t.kernel_suite.as_deref().filter(|s| !valid_suite(s)) {
        return Err(Problem::new(
            "kernel-suite",
            format!("'{s}' is not a suite name (letters, digits and .+_- only)"),
        )
        .help(
            "give --kernel-suite the vendor archive's suite, as in its sources.list (bookworm)",
        ));
    }
    if let Some(c) = t
        .kernel_components
        .iter()
        .find(|c| !crate::manifest::valid_component(c))
    {
        return Err(Problem::new(
            "kernel-components",
            format!("'{c}' is not a component name (lowercase letters, digits and - only)"),
        )
        .help("give --kernel-components the vendor archive's components, as in its sources.list (main)"));
    }
    let a = t.kernel_archive().expect("both are set");
    a.check_local()
        .map_err(|(key, message)| Problem::new(key, message).help(vendor_help))
}

/// A suite name's form: what goes into `dists/SUITE` of a URL.
fn valid_suite(s: &str) -> bool {
    s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".+_-".contains(&b))
}

/// `zfs`, a directory with a dkms.conf, or a name that can be a `*-dkms`
/// package (whether the archive has it is [`check_with_indexes`]'s).
fn check_module_form(module: &str) -> Result<(), Problem> {
    let p = Path::new(module);
    if module == "zfs" {
        return Ok(());
    }
    if p.is_dir() {
        return kmod::dkms::dir_source(p)
            .map(|_| ())
            .map_err(|e| Problem::new("module", e.to_string()).help(MODULE_HELP));
    }
    if p.exists() {
        return Err(Problem::new(
            "module",
            format!("{module}: a file; a target's module is a directory with a dkms.conf"),
        )
        .help("unpack the tarball into a directory and give that"));
    }
    // A package name: whether it is a *-dkms package of the archive is
    // [`check_with_indexes`]'s (which can say what is close).
    if !module.contains('/') {
        return Ok(());
    }
    Err(not_a_module(module))
}

fn not_a_module(module: &str) -> Problem {
    Problem::new(
        "module",
        format!("'{module}' is neither zfs, a directory with a dkms.conf, nor a Debian package name ending in -dkms"),
    )
    .help(MODULE_HELP)
}

/// The checks that need the archive's indexes (`packages`, of the recipe's
/// suites): the module's package is there, and so is the kernel flavour
/// given (when the kernels come from the archive).
pub fn check_with_indexes(
    t: &TargetFile,
    recipe: &RootRecipe,
    packages: &[Package],
) -> Result<(), Problem> {
    let suites = recipe
        .sources
        .iter()
        .map(|s| s.suite.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    let has = |name: &str| packages.iter().any(|p| p.name == name);
    let package = match ModuleKind::of_target(&t.module) {
        ModuleKind::Zfs => Some("zfs-dkms".to_string()),
        ModuleKind::Dkms if Path::new(&t.module).is_dir() => None,
        ModuleKind::Dkms => Some(t.module.clone()),
    };
    if let Some(name) = package.filter(|n| !n.ends_with("-dkms") || !has(n)) {
        let dkms = packages
            .iter()
            .map(|p| p.name.as_str())
            .filter(|n| n.ends_with("-dkms"));
        let close = closest(&name, dkms);
        let mut message = match name.ends_with("-dkms") {
            true => format!(
                "unknown module '{}': no package {name} in {suites} for {}",
                t.module, t.arch
            ),
            false => format!(
                "unknown module '{}': neither zfs, a directory with a dkms.conf, nor a *-dkms package",
                t.module
            ),
        };
        if !close.is_empty() {
            message.push_str(&format!("; did you mean {}?", close.join(" or ")));
        }
        return Err(Problem::new("module", message).help(MODULE_HELP));
    }
    if let (Some(f), None, None) = (&t.flavour, &t.kernel_deb_dir, &t.kernel_archive) {
        if !has(&format!("linux-image-{f}")) {
            let mut known: Vec<&str> = packages
                .iter()
                .filter_map(|p| p.name.strip_prefix("linux-image-"))
                .filter(|x| {
                    x.starts_with(|c: char| c.is_ascii_alphabetic()) && !x.ends_with("-dbg")
                })
                .collect();
            known.sort();
            known.dedup();
            return Err(Problem::new(
                "flavour",
                format!(
                    "unknown kernel flavour '{f}': no linux-image-{f} in {suites} for {}: known are {}",
                    t.arch,
                    known.join(", ")
                ),
            ));
        }
    }
    Ok(())
}

/// The names at the smallest edit distance from `name` (2 at most).
fn closest<'a>(name: &str, names: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut best: Vec<(usize, &str)> = names
        .map(|n| (edit_distance(name, n), n))
        .filter(|(d, _)| *d <= 2)
        .collect();
    best.sort();
    best.dedup();
    let min = best.first().map(|b| b.0);
    best.iter()
        .filter(|b| Some(b.0) == min)
        .take(3)
        .map(|b| b.1.to_string())
        .collect()
}

/// Levenshtein distance of two names.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

/// Every check `update` relies on: [`check_local`], then, with `archive`,
/// the ones against the archive's indexes, fetched and verified as
/// `update` fetches them.
pub fn check_target(
    manifests: &Manifests,
    t: &TargetFile,
    dirs: &DataDirs,
    opts: FetchOptions,
    reporter: &dyn Reporter,
    archive: bool,
) -> Result<(), Problem> {
    let recipe = check_local(manifests, t)?;
    if !archive {
        let package = !Path::new(&t.module).is_dir() && t.module != "zfs";
        return match package && !t.module.ends_with("-dkms") {
            true => Err(not_a_module(&t.module)),
            false => Ok(()),
        };
    }
    let indexes = recipe
        .fetcher(dirs, opts.clone(), reporter)
        .and_then(|f| recipe.update(&f, reporter));
    reporter.finish();
    let indexes = indexes.map_err(|e| {
        Problem::new(
            if t.mirror.is_some() { "mirror" } else { "" },
            format!(
                "cannot check the target against the archive: {}",
                error_text(&e)
            ),
        )
        .help("check the network and the mirror, or pass --no-archive-check to skip the checks that need the archive (update makes them anyway)")
    })?;
    check_with_indexes(t, &recipe, &indexes.packages)?;
    match t.kernel_archive() {
        Some(a) => check_vendor(t, &recipe, &a, dirs, opts, reporter),
        None => Ok(()),
    }
}

/// A vendor archive is reachable, signed by its keyring, and has kernels
/// of the target's flavour.
fn check_vendor(
    t: &TargetFile,
    recipe: &RootRecipe,
    a: &kmod::vendor::KernelArchive,
    dirs: &DataDirs,
    opts: FetchOptions,
    reporter: &dyn Reporter,
) -> Result<(), Problem> {
    let v = kmod::vendor::Vendor::open(a, &t.arch, dirs, opts, reporter);
    reporter.finish();
    let v = v.map_err(|e| {
        Problem::new("kernel-archive", error_text(&e))
            .help("check the URL, the suite (--kernel-suite) and the keyring (--kernel-keyring), or pass --no-archive-check to skip the checks that need the archives")
    })?;
    let flavour = t
        .flavour
        .clone()
        .unwrap_or_else(|| recipe.arch.kernel_flavour.clone());
    if kmod::vendor::kernels(&v.packages, &flavour, &t.arch).is_empty() {
        return Err(Problem::new(
            "flavour",
            format!(
                "unknown kernel flavour '{flavour}': kernel archive {} has no kernel of it for {}: flavours it has: {}",
                a.url,
                t.arch,
                kmod::vendor::known_flavours(&v.packages)
            ),
        ));
    }
    Ok(())
}

/// An error and its causes on one line, without their help lines.
pub fn error_text(e: &dyn std::error::Error) -> String {
    let mut out = Vec::new();
    let mut cur = Some(e);
    while let Some(e) = cur {
        let text = e.to_string();
        let first = text.lines().next().unwrap_or("").to_string();
        if !out.contains(&first) {
            out.push(first);
        }
        cur = e.source();
    }
    out.join(": ")
}

/// What to build for the kernels at `missing` (indexes into
/// `found.kernels`): one call for the archive's kernels, one per pair of
/// the board's own .debs.
fn build_calls(probe: &BuildSpec, found: &Found, missing: &[usize]) -> Vec<BuildSpec> {
    if missing.is_empty() {
        return vec![];
    }
    // A vendor archive's kernels are built one at a time (each is handed
    // to the build as its own set of .debs).
    if probe.kernel_archive.is_some() {
        return missing
            .iter()
            .map(|&i| BuildSpec {
                kernels: vec![found.kernels[i].release.clone()],
                ..probe.clone()
            })
            .collect();
    }
    if found.locals.is_empty() {
        let mut spec = probe.clone();
        spec.kernels = missing
            .iter()
            .map(|&i| found.kernels[i].release.clone())
            .collect();
        return vec![spec];
    }
    missing
        .iter()
        .map(|&i| {
            let mut s = probe.clone();
            s.kernel_debs = found.locals[i].clone();
            s
        })
        .collect()
}

/// What the module builder needs besides the build itself.
struct Builder<'a> {
    manifests: &'a Manifests,
    dirs: &'a DataDirs,
    opts: FetchOptions,
    exe: &'a Path,
    reporter: &'a dyn Reporter,
}

impl Builder<'_> {
    /// Runs one build call; what it built and what failed go into the
    /// summary (a failure does not stop the other calls).
    fn build(&self, kind: ModuleKind, spec: BuildSpec, summary: &mut Summary) {
        let results = if kind == ModuleKind::Zfs {
            kmod::build_zfs(
                self.manifests,
                &kmod::ZfsSpec {
                    base: spec,
                    zfs: None,
                    zfs_source: None,
                },
                self.dirs,
                self.opts.clone(),
                self.exe,
                self.reporter,
            )
            .map(|(r, _)| r)
        } else {
            kmod::build_dkms(
                self.manifests,
                &spec,
                self.dirs,
                self.opts.clone(),
                self.exe,
                self.reporter,
            )
        };
        let mut fail = |e: String| {
            self.reporter.note(&format!("error: {e}"));
            summary.failed.push(e);
        };
        match results {
            Ok(rs) => {
                for r in rs {
                    match r {
                        Ok(b) => summary.built.push(b.kernel.release),
                        Err(e) => fail(e.to_string()),
                    }
                }
            }
            Err(e) => fail(e.to_string()),
        }
    }
}

/// Prunes the pool to the newest `keep` kernels' modules and returns the
/// kernels whose module it still holds.
fn prune_pool(
    repo: &Repo,
    kernels: &[KernelEntry],
    file: &dyn Fn(&KernelEntry) -> String,
    keep: usize,
    summary: &mut Summary,
) -> Result<Vec<KernelEntry>, UpdateError> {
    let built: Vec<(KernelEntry, String)> = kernels
        .iter()
        .filter(|k| repo.pool().join(file(k)).exists())
        .map(|k| (k.clone(), file(k)))
        .collect();
    for f in prune(&built, keep) {
        let p = repo.pool().join(&f);
        std::fs::remove_file(&p).map_err(|source| UpdateError::Io { path: p, source })?;
        summary.pruned.push(f);
    }
    Ok(built
        .into_iter()
        .filter(|(_, f)| !summary.pruned.contains(f))
        .map(|(k, _)| k)
        .collect())
}

/// Writes the metapackage (it follows the newest kernel built) unless the
/// pool has it already, removing its older versions; whether it wrote.
fn write_meta(repo: &Repo, meta: &MetaPackage) -> Result<bool, UpdateError> {
    let path = repo.pool().join(meta.file_name());
    if path.exists() {
        return Ok(false);
    }
    let prefix = format!("{}_", meta.name());
    for e in std::fs::read_dir(repo.pool())
        .into_iter()
        .flatten()
        .flatten()
    {
        if e.file_name().to_string_lossy().starts_with(&prefix) {
            let _ = std::fs::remove_file(e.path());
        }
    }
    let bytes = meta
        .build(package::source_date_epoch())
        .map_err(BuildError::from)?;
    crate::atomic::write_atomic(&path, &bytes, 0o644).map_err(|source| UpdateError::Io {
        path: path.clone(),
        source,
    })?;
    Ok(true)
}

/// The systemd user units that run `zchroot update` every `every`
/// (a systemd calendar, e.g. `daily`): (service, timer).
pub fn timer_units(exe: &Path, every: &str, zchroot_home: Option<&Path>) -> (String, String) {
    let env = zchroot_home
        .map(|h| format!("Environment=ZCHROOT_HOME={}\n", h.display()))
        .unwrap_or_default();
    let service = format!(
        "[Unit]\nDescription=zchroot: build kernel modules for new kernels and publish them\nWants=network-online.target\nAfter=network-online.target\n\n[Service]\nType=oneshot\n{env}ExecStart={} update\n",
        exe.display()
    );
    let timer = format!(
        "[Unit]\nDescription=Run zchroot update {every}\n\n[Timer]\nOnCalendar={every}\nPersistent=true\nRandomizedDelaySec=15min\n\n[Install]\nWantedBy=timers.target\n"
    );
    (service, timer)
}

/// The crontab schedule of a systemd calendar shorthand (`--every`), for
/// hosts without systemd; None for a calendar cron cannot say as simply.
pub fn cron_schedule(every: &str) -> Option<&'static str> {
    Some(match every {
        "hourly" => "17 * * * *",
        "daily" => "17 3 * * *",
        "weekly" => "17 3 * * 1",
        "monthly" => "17 3 1 * *",
        _ => return None,
    })
}

/// The crontab line for hosts without systemd, run as often as `every`
/// says (None: see [`cron_schedule`]).
pub fn cron_line(exe: &Path, zchroot_home: Option<&Path>, every: &str) -> Option<String> {
    let env = zchroot_home
        .map(|h| format!("ZCHROOT_HOME={} ", h.display()))
        .unwrap_or_default();
    Some(format!(
        "{} {env}{} -q update",
        cron_schedule(every)?,
        exe.display()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(version: &str, suite: &str, image: &str) -> Package {
        let depends = format!("linux-image-{image} (= {version})");
        Package::for_test("linux-image-arm64", version, "arm64", suite, &depends)
    }

    #[test]
    fn a_vendors_respin_is_one_kernel_and_its_old_module_is_missing() {
        let c = |image: &str, v: &str, release: Option<&str>| kmod::vendor::Candidate {
            image: image.into(),
            image_version: v.into(),
            release: release.map(String::from),
            held: "linux-image-board".into(),
            held_version: v.into(),
        };
        // Newest first, as the archive gives them; one left out (unreadable).
        let (entries, images) = vendor_entries(vec![
            c("linux-image-board", "24.8.2", Some("6.12.9-board")),
            c("linux-image-board", "24.8.1", Some("6.12.9-board")),
            c("linux-image-board", "24.5.1", None),
            c("linux-image-board", "24.2.1", Some("6.6.1-board")),
        ]);
        assert_eq!(
            entries,
            [k("6.6.1-board", "24.2.1"), k("6.12.9-board", "24.8.2")]
        );
        assert_eq!(images[1], ("linux-image-board".into(), "24.8.2".into()));

        let dir = tempfile::tempdir().unwrap();
        let deb = dir.path().join("m.deb");
        let control = vec![
            (
                "Package".to_string(),
                "zfs-modules-6.12.9-board".to_string(),
            ),
            ("Version".to_string(), "2.3.2".to_string()),
            ("Architecture".to_string(), "arm64".to_string()),
            ("Maintainer".to_string(), "t <t@t>".to_string()),
            (
                "Depends".to_string(),
                "linux-image-board (= 24.8.1)".to_string(),
            ),
            ("Description".to_string(), "t".to_string()),
        ];
        let mut bytes = Vec::new();
        crate::deb::write::DebBuilder::new(control)
            .write_to(&mut bytes)
            .unwrap();
        std::fs::write(&deb, bytes).unwrap();
        assert!(built_for(&deb, "linux-image-board", "24.8.1"));
        assert!(!built_for(&deb, "linux-image-board", "24.8.2"));
        assert!(!built_for(
            &dir.path().join("none.deb"),
            "linux-image-board",
            "24.8.1"
        ));
    }

    fn k(release: &str, version: &str) -> KernelEntry {
        KernelEntry {
            release: release.into(),
            version: version.into(),
        }
    }

    #[test]
    fn builds_are_one_call_for_the_archive_kernels_and_one_per_board_kernel() {
        let t: TargetFile = toml::from_str("arch = \"arm64\"\nsuite = \"trixie\"\n").unwrap();
        let dirs = DataDirs {
            state: "/s".into(),
            cache: "/c".into(),
        };
        let probe = probe_spec(&t, &repo_of("board", &t, &dirs));
        assert_eq!(probe.out, PathBuf::from("/s/repos/board/public/pool/main"));
        let mut found = Found {
            kernels: vec![k("a", "1"), k("b", "2"), k("c", "3")],
            locals: vec![],
            images: vec![],
            held: "linux-image-arm64".into(),
            flavour: "arm64".into(),
            module: "zfs-modules".into(),
            module_version: "2.3.2-1".into(),
        };
        assert!(build_calls(&probe, &found, &[]).is_empty());
        let calls = build_calls(&probe, &found, &[0, 2]);
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0].kernels, ["a", "c"]);
        found.locals = ["a", "b", "c"]
            .iter()
            .map(|n| vec![PathBuf::from(format!("{n}.deb"))])
            .collect();
        let calls = build_calls(&probe, &found, &[1, 2]);
        let debs: Vec<_> = calls.iter().map(|c| c.kernel_debs.clone()).collect();
        assert_eq!(debs, [[PathBuf::from("b.deb")], [PathBuf::from("c.deb")]]);
        assert!(calls.iter().all(|c| c.kernels.is_empty()));
    }

    #[test]
    fn a_vendor_archive_is_built_one_kernel_at_a_time_and_checked_first() {
        let dir = tempfile::tempdir().unwrap();
        let keyring = dir.path().join("k.pgp");
        let t: TargetFile = toml::from_str(&format!(
            "arch = \"arm64\"\nrelease = \"bookworm\"\nflavour = \"rpi-v8\"\nkernel-archive = \"http://archive.raspberrypi.com/debian\"\nkernel-keyring = {keyring:?}\n"
        ))
        .unwrap();
        let a = t.kernel_archive().unwrap();
        assert_eq!(a.suite, "bookworm");
        assert_eq!(a.source().components, ["main"]);
        let dirs = DataDirs {
            state: "/s".into(),
            cache: "/c".into(),
        };
        let probe = probe_spec(&t, &repo_of("pi", &t, &dirs));
        assert_eq!(probe.kernel_archive.as_ref(), Some(&a));
        let found = Found {
            kernels: vec![k("a", "1"), k("b", "2")],
            locals: vec![],
            images: vec![],
            held: "linux-image-rpi-v8".into(),
            flavour: "rpi-v8".into(),
            module: "zfs".into(),
            module_version: "2.3.2".into(),
        };
        let calls = build_calls(&probe, &found, &[0, 1]);
        let kernels: Vec<_> = calls.iter().map(|c| c.kernels.clone()).collect();
        assert_eq!(kernels, [["a"], ["b"]]);
        // The keyring must be one; an archive needs its keyring.
        let e = check_kernel_archive(&t).unwrap_err();
        assert_eq!(e.key, "kernel-keyring");
        std::fs::write(&keyring, "not a key").unwrap();
        assert_eq!(check_kernel_archive(&t).unwrap_err().key, "kernel-keyring");
        let e = check_kernel_archive(&TargetFile {
            kernel_keyring: None,
            ..t.clone()
        })
        .unwrap_err();
        assert!(
            e.to_string().contains("zchroot ships no vendor's key"),
            "{e}"
        );
        let e = check_kernel_archive(&TargetFile {
            kernel_archive: None,
            ..t.clone()
        })
        .unwrap_err();
        assert_eq!(e.key, "kernel-archive");
        let e = check_kernel_archive(&TargetFile {
            kernel_deb_dir: Some("/".into()),
            ..t.clone()
        })
        .unwrap_err();
        assert!(e.message.contains("not both"), "{e}");
        let e = check_kernel_archive(&TargetFile {
            kernel_suite: Some("../../x".into()),
            ..t.clone()
        })
        .unwrap_err();
        assert_eq!(e.key, "kernel-suite");
        let e = check_kernel_archive(&TargetFile {
            kernel_components: vec!["main".into(), "a/b".into()],
            ..t.clone()
        })
        .unwrap_err();
        assert_eq!(e.key, "kernel-components");
        assert!(e.message.contains("'a/b'"), "{e}");
    }

    #[test]
    fn kernels_come_from_every_metapackage_version_of_the_chosen_suites() {
        let p = vec![
            meta("6.12.118-1", "trixie-security", "6.12.118+deb13-arm64"),
            meta("6.12.57-1", "trixie", "6.12.57+deb13-arm64"),
        ];
        assert_eq!(
            kernels_of_suites(&p, "arm64", &[]),
            [
                k("6.12.57+deb13-arm64", "6.12.57-1"),
                k("6.12.118+deb13-arm64", "6.12.118-1")
            ]
        );
        assert_eq!(
            kernels_of_suites(&p, "arm64", &["trixie".into()]),
            [k("6.12.57+deb13-arm64", "6.12.57-1")]
        );
        assert!(kernels_of_suites(&p, "rpi", &[]).is_empty());
    }

    #[test]
    fn opt_in_suites_are_fetched_and_followed() {
        let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let bpo = v(&["+trixie-backports"]);
        assert_eq!(opt_in_suites(&bpo), bpo);
        assert!(followed_suites(&bpo).is_empty(), "all fetched suites");
        let both = v(&["trixie", "+trixie-backports"]);
        assert_eq!(opt_in_suites(&both), bpo);
        assert_eq!(followed_suites(&both), v(&["trixie", "trixie-backports"]));
        assert!(opt_in_suites(&v(&["trixie"])).is_empty());
    }

    #[test]
    fn the_module_and_flavour_are_looked_up_in_the_indexes_with_suggestions() {
        let t: TargetFile = toml::from_str("arch = \"arm64\"\nrelease = \"trixie\"\n").unwrap();
        let recipe = check_local(&Manifests::embedded(), &t).unwrap();
        let p = |name: &str| Package::for_test(name, "1", "arm64", "trixie", "");
        let packages = vec![
            p("zfs-dkms"),
            p("zfs-dkms-dbg"),
            p("linux-image-arm64"),
            p("linux-image-rt-arm64"),
            p("linux-image-arm64-dbg"),
            p("linux-image-6.12.57+deb13-arm64"),
        ];
        check_with_indexes(&t, &recipe, &packages).unwrap();
        let bad = |t: TargetFile| check_with_indexes(&t, &recipe, &packages).unwrap_err();
        let e = bad(TargetFile {
            module: "zfz-dkms".into(),
            ..t.clone()
        });
        assert_eq!(e.key, "module");
        assert_eq!(e.message, "unknown module 'zfz-dkms': no package zfz-dkms in trixie, trixie-updates, trixie-security for arm64; did you mean zfs-dkms?");
        let e = bad(TargetFile {
            module: "nvidia-dkms".into(),
            ..t.clone()
        });
        assert!(!e.message.contains("did you mean"), "{e}");
        // Not a *-dkms name at all: what is close still is.
        let e = bad(TargetFile {
            module: "zfs-dkmss".into(),
            ..t.clone()
        });
        assert_eq!(e.message, "unknown module 'zfs-dkmss': neither zfs, a directory with a dkms.conf, nor a *-dkms package; did you mean zfs-dkms?");
        let e = bad(TargetFile {
            module: "zfs-dkms-dbg".into(),
            ..t.clone()
        });
        assert!(
            e.message
                .starts_with("unknown module 'zfs-dkms-dbg': neither"),
            "{e}"
        );
        let e = bad(TargetFile {
            flavour: Some("rpi".into()),
            ..t.clone()
        });
        assert_eq!(e.key, "flavour");
        assert!(
            e.message.ends_with("for arm64: known are arm64, rt-arm64"),
            "{e}"
        );
        // The board's own kernels need no flavour of the archive.
        let own = TargetFile {
            flavour: Some("rpi".into()),
            kernel_deb_dir: Some("/".into()),
            ..t.clone()
        };
        check_with_indexes(&own, &recipe, &packages).unwrap();
        assert_eq!(edit_distance("zfs-dkmss", "zfs-dkms"), 1);
        assert_eq!(edit_distance("", "ab"), 2);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }

    #[test]
    fn pruning_keeps_the_newest_per_series() {
        let built = vec![
            (k("6.12.57+deb13-arm64", "6.12.57-1"), "a".to_string()),
            (k("6.12.118+deb13-arm64", "6.12.118-1"), "b".to_string()),
            (k("6.12.100+deb13-arm64", "6.12.100-1"), "c".to_string()),
            (k("7.1.2+bpo-arm64", "7.1.2-1~bpo13+1"), "d".to_string()),
        ];
        assert_eq!(prune(&built, 1), ["a", "c"]);
        assert_eq!(prune(&built, 2), ["a"]);
        assert!(prune(&built, 0).is_empty(), "0 keeps all");
    }

    #[test]
    fn timer_units_run_update_persistently() {
        let (service, timer) = timer_units(
            Path::new("/usr/bin/zchroot"),
            "daily",
            Some(Path::new("/z")),
        );
        assert!(service.contains("ExecStart=/usr/bin/zchroot update\n"));
        assert!(service.contains("Environment=ZCHROOT_HOME=/z\n"));
        assert!(timer.contains("OnCalendar=daily\nPersistent=true\n"));
        assert!(timer.contains("WantedBy=timers.target"));
        assert_eq!(
            cron_line(Path::new("/b/zchroot"), None, "daily").unwrap(),
            "17 3 * * * /b/zchroot -q update"
        );
        assert_eq!(
            cron_line(Path::new("/b/zchroot"), None, "hourly").unwrap(),
            "17 * * * * /b/zchroot -q update"
        );
        assert_eq!(cron_schedule("weekly"), Some("17 3 * * 1"));
        assert_eq!(cron_schedule("monthly"), Some("17 3 1 * *"));
        assert_eq!(
            cron_line(Path::new("/b/zchroot"), None, "Mon *-*-* 04:00"),
            None
        );
    }
}
