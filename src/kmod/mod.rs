//! Kernel modules for a target's kernels, built and packaged: `build-dkms`
//! (any DKMS source), `build-zfs` and `update` come here. Gathers what the
//! planner needs (the source, the verified indexes, the kernels and their
//! headers), lets [`plan`] decide how each kernel is built, then hands the
//! plans to `exec` (stage, run, verify, package) in build roots that
//! zchroot creates on first use.

pub mod cross;
pub mod dkms;
pub mod elf;
mod exec;
pub mod kernel;
pub mod kset;
pub mod package;
pub mod plan;
pub mod sign;
pub mod vendor;
pub mod zfs;

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::archive::fetch::FetchOptions;
use crate::manifest::Manifests;
use crate::paths::DataDirs;
use crate::report::Reporter;
use crate::rootfs::create;
use crate::rootfs::spec::{RootRecipe, RootSpec, SpecError};
use crate::sandbox;
use dkms::ModuleSource;
use kernel::{LocalKernel, TargetKernel};
pub use plan::{BuildPlan, How, ModuleKind, Strategy, Used};

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Interrupted(#[from] crate::interrupt::Interrupted),
    #[error(transparent)]
    Spec(Box<SpecError>),
    #[error(transparent)]
    Kernel(#[from] kernel::KernelError),
    #[error(transparent)]
    Dkms(#[from] dkms::DkmsError),
    #[error(transparent)]
    Create(Box<create::CreateError>),
    #[error(transparent)]
    Roots(#[from] crate::rootfs::RootsError),
    #[error(transparent)]
    Root(#[from] crate::rootdir::RootDirError),
    #[error(transparent)]
    Sandbox(Box<sandbox::SandboxError>),
    #[error("{} is a tarball from elsewhere: give its SHA256 with --sha256 HEX", .0.display())]
    NeedSha256(PathBuf),
    #[error("{}: SHA256 mismatch: expected {expected}, got {calculated}; not using it", path.display())]
    Sha256Mismatch {
        path: PathBuf,
        expected: String,
        calculated: String,
    },
    #[error("unknown DKMS package '{name}': it is in none of the suites of {release} for {arch}")]
    UnknownPackage {
        name: String,
        release: String,
        arch: String,
    },
    #[error("building {module} for {kernel} failed (exit status {code}); the end of its log:\n{tail}\n(the whole log: {})", log.display())]
    Failed {
        module: String,
        kernel: String,
        code: i32,
        tail: String,
        log: PathBuf,
    },
    #[error("building for {kernel}: {message} (the whole log: {})", log.display())]
    BadOutput {
        kernel: String,
        message: String,
        log: PathBuf,
    },
    #[error(transparent)]
    Deb(#[from] crate::deb::DebError),
    #[error(transparent)]
    Zfs(#[from] zfs::ZfsError),
    #[error(transparent)]
    KernelDeb(#[from] kernel::KernelDebError),
    #[error(transparent)]
    Vendor(#[from] vendor::VendorError),
    #[error(
        "--kernel-archive builds one kernel at a time: give --kernel once (or not: the newest)"
    )]
    VendorKernels,
    #[error("kernel archive {url}: {image} was chosen as kernel {chosen}, but its files are of kernel {built}\nhelp: give --kernel {built}, or tell the vendor that the package's name and its files disagree")]
    VendorRelease {
        url: String,
        /// The image package and its version.
        image: String,
        chosen: String,
        built: String,
    },
    #[error("--kernel and --kernel-deb do not go together: the .debs name their kernel")]
    KernelAndDebs,
    #[error("{}: not a signing {what}: {reason}\nhelp: --sign-key takes a PEM private key, --sign-cert its X.509 certificate (DER or PEM)", path.display())]
    BadSigning {
        path: PathBuf,
        what: &'static str,
        reason: String,
    },
    #[error("signing the modules built for {kernel}: {source}")]
    Sign {
        kernel: String,
        #[source]
        source: sign::SignError,
    },
    #[error("--sign-key: {0}")]
    SignCheck(sign::SignError),
    #[error("{kernel}: --sign-key was given but {module} is not signed; the end of the log:\n{tail}\n(the whole log: {})", log.display())]
    NotSigned {
        kernel: String,
        module: String,
        tail: String,
        log: PathBuf,
    },
    #[error("--strategy cross cannot build for {kernel}: {reason}\nhelp: --strategy emulate builds it inside an emulated {arch} root")]
    NoCross {
        kernel: String,
        arch: String,
        reason: String,
    },
    #[error("{}: the kernel's build helpers (scripts/basic/fixdep) are {found} programs, not {arch} ones: they cannot run in the emulated {arch} root\nhelp: {help}", deb.display())]
    ForeignHelpers {
        deb: PathBuf,
        found: String,
        arch: String,
        help: String,
    },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

// Boxed: the largest sources, so that every `Result` stays small.
impl From<SpecError> for BuildError {
    fn from(e: SpecError) -> Self {
        BuildError::Spec(Box::new(e))
    }
}

impl From<create::CreateError> for BuildError {
    fn from(e: create::CreateError) -> Self {
        BuildError::Create(Box::new(e))
    }
}

impl From<sandbox::SandboxError> for BuildError {
    fn from(e: sandbox::SandboxError) -> Self {
        BuildError::Sandbox(Box::new(e))
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BuildError + '_ {
    move |source| BuildError::Io {
        path: path.to_owned(),
        source,
    }
}

/// What to build.
#[derive(Debug, Clone)]
pub struct BuildSpec {
    /// A `*-dkms` package name, a directory with a dkms.conf, or a tarball.
    pub source: String,
    pub sha256: Option<String>,
    pub arch: String,
    pub release: String,
    pub mirror: Option<String>,
    pub keyring: Option<PathBuf>,
    /// Kernel releases; empty: the newest of the flavour's metapackage.
    pub kernels: Vec<String>,
    pub flavour: Option<String>,
    pub out: PathBuf,
    /// For a package SOURCE: this version instead of the newest (for ZFS,
    /// an upstream one too: the planner pins the Debian version of it).
    pub package_version: Option<String>,
    /// The user's own kernel image and headers .debs instead of a kernel
    /// of the suites.
    pub kernel_debs: Vec<PathBuf>,
    pub strategy: Strategy,
    /// The user's signing key (PEM) and certificate (DER or PEM).
    pub sign: Option<(PathBuf, PathBuf)>,
    /// `--suites` of the build roots (e.g. `+trixie-backports`).
    pub suites: Vec<String>,
    /// A vendor's archive the kernel packages come from instead of the
    /// release's suites.
    pub kernel_archive: Option<vendor::KernelArchive>,
}

/// One module package made.
#[derive(Debug, Clone)]
pub struct Built {
    pub kernel: TargetKernel,
    pub deb: PathBuf,
    pub module: String,
    pub version: String,
    pub modules: Vec<String>,
    pub signed: bool,
    /// Signed with the key of [`BuildSpec::sign`].
    pub signed_with_given_key: bool,
    /// `cross`, `emulate` or `native`.
    pub strategy: Used,
    /// The compiler that built the kernel, and the one that built the module.
    pub kernel_compiler: String,
    pub compiler: String,
}

/// The build root's package set: buildd and dkms, for the target.
fn build_root_spec(spec: &BuildSpec) -> RootSpec {
    root_spec(spec, &spec.arch)
}

/// The build root's package set, in architecture `arch` (the target's to
/// emulate, the host's to cross-compile).
fn root_spec(spec: &BuildSpec, arch: &str) -> RootSpec {
    RootSpec {
        arch: arch.to_string(),
        release: spec.release.clone(),
        variant: "buildd".into(),
        include: vec!["dkms".into()],
        mirror: spec.mirror.clone(),
        keyring: spec.keyring.clone(),
        suites: spec.suites.clone(),
        components: vec![],
    }
}

/// The name of the build root for a release and architecture.
pub fn build_root_name(release: &str, arch: &str) -> String {
    format!("{release}-{arch}-dkms")
}

/// The build root's name when `--suites` are given: its apt sources
/// differ, so each choice of suites has a root of its own.
pub fn build_root_name_with(release: &str, arch: &str, suites: &[String]) -> String {
    let mut name = build_root_name(release, arch);
    for s in suites {
        name.push('-');
        name.push_str(s.trim_start_matches('+'));
    }
    name
}

fn unpack_tarball(tarball: &Path, dest: &Path) -> Result<PathBuf, BuildError> {
    let f = std::fs::File::open(tarball).map_err(io(tarball))?;
    let name = tarball.to_string_lossy();
    let reader: Box<dyn std::io::Read> = if name.ends_with(".xz") {
        Box::new(liblzma::read::XzDecoder::new(f))
    } else if name.ends_with(".gz") || name.ends_with(".tgz") {
        Box::new(flate2::read::GzDecoder::new(f))
    } else {
        Box::new(f)
    };
    // Unpacked by tar's own confined unpack: a source tarball has no
    // links to an outside root to honour.
    tar::Archive::new(reader)
        .unpack(dest)
        .map_err(io(tarball))?;
    if dest.join("dkms.conf").exists() {
        return Ok(dest.to_owned());
    }
    let mut dirs = std::fs::read_dir(dest)
        .map_err(io(dest))?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.join("dkms.conf").exists());
    dirs.next()
        .ok_or_else(|| dkms::DkmsError::NoConf(tarball.into()).into())
}

/// Turns the SOURCE argument into a source, checking a tarball's hash
/// first. `scratch` holds an unpacked tarball.
pub fn source(spec: &BuildSpec, scratch: &Path) -> Result<ModuleSource, BuildError> {
    let p = Path::new(&spec.source);
    if p.is_dir() {
        return Ok(dkms::dir_source(p)?);
    }
    if p.is_file() {
        let expected = spec
            .sha256
            .as_ref()
            .ok_or_else(|| BuildError::NeedSha256(p.into()))?
            .to_ascii_lowercase();
        let bytes = std::fs::read(p).map_err(io(p))?;
        let calculated = hex::encode(Sha256::digest(&bytes));
        if calculated != expected {
            return Err(BuildError::Sha256Mismatch {
                path: p.into(),
                expected,
                calculated,
            });
        }
        let dir = unpack_tarball(p, scratch)?;
        return Ok(dkms::dir_source(&dir)?);
    }
    if spec.source.ends_with("-dkms") && !spec.source.contains('/') {
        return Ok(ModuleSource::Package(
            spec.source.clone(),
            spec.package_version.clone(),
        ));
    }
    Err(dkms::DkmsError::Unknown(spec.source.clone()).into())
}

/// One result per kernel built.
pub type Results = Vec<Result<Built, BuildError>>;

/// What a build made: one result per kernel (one failure does not lose
/// the others), and what the planner decided for ZFS.
#[derive(Debug)]
pub struct Outcome {
    pub results: Results,
    pub zfs: Option<zfs::ZfsPlan>,
}

/// Builds the module for each kernel: one .deb per kernel. The outer error
/// is for what stops everything (bad input, no build root); the inner ones
/// are per kernel, so one failure does not lose the others.
pub fn build_dkms(
    manifests: &Manifests,
    spec: &BuildSpec,
    dirs: &DataDirs,
    opts: FetchOptions,
    exe: &Path,
    reporter: &dyn Reporter,
) -> Result<Results, BuildError> {
    let outcome = build(manifests, spec, ModuleKind::Dkms, dirs, opts, exe, reporter)?;
    Ok(outcome.results)
}

/// `build-zfs`: zfs-dkms (or an upstream tarball) for the target kernels,
/// refusing kernels outside the source's META range before building.
/// Returns the results and the zfsutils-linux (version, component) for the
/// board when the suite's own ZFS was built.
pub fn build_zfs(
    manifests: &Manifests,
    spec: &ZfsSpec,
    dirs: &DataDirs,
    opts: FetchOptions,
    exe: &Path,
    reporter: &dyn Reporter,
) -> Result<(Results, Option<zfs::Userland>), BuildError> {
    let mut base = spec.base.clone();
    base.source = match &spec.zfs_source {
        Some(t) => t.display().to_string(),
        None => "zfs-dkms".into(),
    };
    // --zfs 2.3.2 names an upstream version: the planner pins the full
    // Debian version of it.
    if spec.zfs_source.is_none() {
        base.package_version = spec.zfs.clone();
    }
    let outcome = build(manifests, &base, ModuleKind::Zfs, dirs, opts, exe, reporter)?;
    Ok((outcome.results, outcome.zfs.and_then(|z| z.utils)))
}

/// A scratch directory for a module's source: under zchroot's own state
/// directory (private, never a shared /tmp), named `.src-PID-RANDOM`;
/// removed when dropped, an interrupt included. Those a killed zchroot
/// left (its pid gone) are removed first.
pub fn scratch_dir(state: &Path) -> std::io::Result<tempfile::TempDir> {
    crate::paths::create_private_dir_all(state)?;
    for old in stale_scratch(state) {
        let _ = crate::teardown::remove_tree(&old);
    }
    tempfile::Builder::new()
        .prefix(&format!(".src-{}-", std::process::id()))
        .tempdir_in(state)
}

/// The `.src-PID-*` directories in `state` whose process is gone.
fn stale_scratch(state: &Path) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir(state) else {
        return vec![];
    };
    rd.flatten()
        .filter(|e| {
            let name = e.file_name();
            let pid = name
                .to_str()
                .and_then(|n| n.strip_prefix(".src-"))
                .and_then(|rest| rest.split_once('-'))
                .and_then(|(pid, _)| pid.parse::<u32>().ok());
            pid.is_some_and(|p| !Path::new(&format!("/proc/{p}")).exists())
        })
        .map(|e| e.path())
        .collect()
}

/// Gathers, plans, then builds each kernel as planned.
pub fn build(
    manifests: &Manifests,
    spec: &BuildSpec,
    kind: ModuleKind,
    dirs: &DataDirs,
    opts: FetchOptions,
    exe: &Path,
    reporter: &dyn Reporter,
) -> Result<Outcome, BuildError> {
    let scratch = scratch_dir(&dirs.state).map_err(io(&dirs.state))?;
    let g = gather(manifests, spec, kind, scratch.path(), dirs, &opts, reporter)?;
    let plans = plan::plan(&plan::PlanInput {
        strategy: spec.strategy,
        target: &g.target.arch,
        host: &g.host,
        archs: &g.archs,
        host_packages: g.host_packages.as_deref(),
        kernels: &g.kernels,
    })?;
    for note in plans.iter().filter_map(BuildPlan::note) {
        reporter.note(&note);
    }
    let Gathered {
        target,
        host,
        source,
        local,
        zfs,
        ..
    } = g;
    std::fs::create_dir_all(&spec.out).map_err(io(&spec.out))?;
    let ctx = exec::Exec {
        manifests,
        spec,
        target: &target,
        host: &host,
        source: &source,
        local: local.as_ref(),
        dirs,
        opts: &opts,
        exe,
        reporter,
    };
    let mut results = Vec::with_capacity(plans.len());
    for p in &plans {
        crate::interrupt::check()?;
        results.push(ctx.build(p));
    }
    crate::interrupt::check()?;
    Ok(Outcome { results, zfs })
}

/// Everything the planner decides from, fetched and verified.
struct Gathered {
    target: RootRecipe,
    host: crate::manifest::Arch,
    archs: Vec<crate::manifest::Arch>,
    source: ModuleSource,
    local: Option<LocalKernel>,
    host_packages: Option<Vec<crate::archive::index::Package>>,
    kernels: Vec<plan::KernelFacts>,
    zfs: Option<zfs::ZfsPlan>,
}

/// Checks the input and fetches what planning needs: the target's indexes,
/// the kernels, their headers (when cross building is considered or the
/// kernel is the user's), the host's indexes, ZFS's META. Everything about
/// the target is checked before anything is built.
fn gather(
    manifests: &Manifests,
    spec: &BuildSpec,
    kind: ModuleKind,
    scratch: &Path,
    dirs: &DataDirs,
    opts: &FetchOptions,
    reporter: &dyn Reporter,
) -> Result<Gathered, BuildError> {
    let t = RootRecipe::new(manifests, &build_root_spec(spec))?;
    let mut source = source(spec, scratch)?;
    if let Some((key, cert)) = &spec.sign {
        check_signing(key, cert)?;
    }
    let fetcher = t.fetcher(dirs, opts.clone(), reporter)?;
    let indexes = t.update(&fetcher, reporter)?;
    if let ModuleSource::Package(name, _) = &source {
        if !indexes.packages.iter().any(|p| &p.name == name) {
            return Err(BuildError::UnknownPackage {
                name: name.clone(),
                release: spec.release.clone(),
                arch: spec.arch.clone(),
            });
        }
    }
    // The target's own packages first; a vendor's are appended after them
    // (for the planner only: ZFS's packages come from the target's own).
    let own = indexes.packages.len();
    let mut target_packages = indexes.packages;
    let mut kernel_debs = spec.kernel_debs.clone();
    let (kernels, local) = match &spec.kernel_archive {
        Some(a) if spec.kernel_debs.is_empty() => {
            // The vendor's packages and the kernel's set reach the planner
            // as the user's own would (its headers' linux-kbuild).
            let dir = scratch.join("kernel-debs");
            std::fs::create_dir_all(&dir).map_err(io(&dir))?;
            let v = vendor_kernel(spec, a, &t, &dir, dirs, opts, reporter)?;
            target_packages.extend(v.packages);
            kernel_debs = v.debs;
            (vec![v.local.kernel.clone()], Some(v.local))
        }
        _ => kernels(spec, &t, &target_packages)?,
    };
    let zfs = match kind {
        ModuleKind::Zfs => Some(zfs_plan(
            spec,
            &mut source,
            &kernels,
            &target_packages[..own],
            &fetcher,
        )?),
        ModuleKind::Dkms => None,
    };
    let host = crate::host::host_arch(manifests).map_err(SpecError::Manifest)?;
    let host_packages = if plan::cross_considered(spec.strategy, &t.arch, &host) {
        let ht = RootRecipe::new(manifests, &root_spec(spec, &host.name))?;
        let hf = ht.fetcher(dirs, opts.clone(), reporter)?;
        Some(ht.update(&hf, reporter)?.packages)
    } else {
        None
    };
    let mut facts = Vec::new();
    for k in kernels {
        let headers = if plan::needs_headers(spec.strategy, &t.arch, &host, local.is_some()) {
            let known = Known {
                kernel_debs: &kernel_debs,
                target: &target_packages,
                host: host_packages.as_deref(),
            };
            Some(headers_facts(&k, local.as_ref(), &known, &fetcher)?)
        } else {
            None
        };
        facts.push(plan::KernelFacts {
            kernel: k,
            headers,
            local: local.is_some(),
        });
    }
    Ok(Gathered {
        archs: manifests.architectures().map_err(SpecError::Manifest)?,
        target: t,
        host,
        source,
        local,
        host_packages,
        kernels: facts,
        zfs,
    })
}

/// The kernels to build for: the user's own (`--kernel-deb`), those named
/// (`--kernel`), or the newest of the flavour.
fn kernels(
    spec: &BuildSpec,
    t: &RootRecipe,
    packages: &[crate::archive::index::Package],
) -> Result<(Vec<TargetKernel>, Option<LocalKernel>), BuildError> {
    let flavour = spec
        .flavour
        .clone()
        .unwrap_or_else(|| t.arch.kernel_flavour.clone());
    if !spec.kernel_debs.is_empty() {
        if !spec.kernels.is_empty() {
            return Err(BuildError::KernelAndDebs);
        }
        let l = kernel::from_debs(&spec.kernel_debs, &t.arch.name, packages)?;
        return Ok((vec![l.kernel.clone()], Some(l)));
    }
    let kernels = if spec.kernels.is_empty() {
        vec![kernel::choose(packages, &flavour, None)?]
    } else {
        spec.kernels
            .iter()
            .map(|k| kernel::choose(packages, &flavour, Some(k)))
            .collect::<Result<_, _>>()?
    };
    Ok((kernels, None))
}

/// The kernel of a vendor's archive (the newest of the flavour, or the
/// one `--kernel` names), its packages downloaded and verified and handed
/// to the build as the user's own .debs; with the archive's packages.
fn vendor_kernel(
    spec: &BuildSpec,
    archive: &vendor::KernelArchive,
    t: &RootRecipe,
    into: &Path,
    dirs: &DataDirs,
    opts: &FetchOptions,
    reporter: &dyn Reporter,
) -> Result<VendorSet, BuildError> {
    if spec.kernels.len() > 1 {
        return Err(BuildError::VendorKernels);
    }
    let flavour = spec
        .flavour
        .clone()
        .unwrap_or_else(|| t.arch.kernel_flavour.clone());
    let v = vendor::Vendor::open(archive, &t.arch.name, dirs, opts.clone(), reporter)?;
    let (chosen, debs) = v.kernel_debs(
        &flavour,
        &t.arch.name,
        spec.kernels.first().map(String::as_str),
        into,
    )?;
    let local = kernel::from_debs(&debs, &t.arch.name, &v.packages)?;
    same_release(&archive.url, &chosen, &local.kernel.release)?;
    Ok(VendorSet {
        local,
        debs,
        packages: v.packages,
    })
}

/// The kernel built must be the one chosen (by `--kernel`, or as
/// `update` follows it): its .debs' files say which it is.
fn same_release(url: &str, chosen: &vendor::Candidate, built: &str) -> Result<(), BuildError> {
    match chosen.release.as_deref() == Some(built) {
        true => Ok(()),
        false => Err(BuildError::VendorRelease {
            url: url.into(),
            image: format!("{} {}", chosen.image, chosen.image_version),
            chosen: chosen.release.clone().unwrap_or_default(),
            built: built.into(),
        }),
    }
}

/// A vendor archive's kernel as the build takes it: as the user's own
/// set of .debs, and the archive's packages besides.
struct VendorSet {
    local: LocalKernel,
    debs: Vec<PathBuf>,
    packages: Vec<crate::archive::index::Package>,
}

/// The packages a kernel's headers may name: the user's .debs, the
/// target's and (when cross building is considered) the host's indexes.
struct Known<'a> {
    kernel_debs: &'a [PathBuf],
    target: &'a [crate::archive::index::Package],
    host: Option<&'a [crate::archive::index::Package]>,
}

/// A kernel's headers .deb (the user's, or fetched and verified), its
/// Depends, what it carries (read in one pass: `.config`, the machine of
/// its helpers, its `scripts/` files) and, when cross building is
/// considered, the common headers it names that the host's suites lack.
fn headers_facts(
    k: &TargetKernel,
    local: Option<&LocalKernel>,
    known: &Known,
    fetcher: &crate::archive::fetch::Fetcher,
) -> Result<plan::HeadersFacts, BuildError> {
    let (deb, depends) = match local {
        Some(l) => {
            let c = deb_control(&l.headers_deb)?;
            (l.headers_deb.clone(), c.depends)
        }
        None => {
            let p = known
                .target
                .iter()
                .find(|p| p.name == k.headers_package && p.version == k.image_version)
                .ok_or_else(|| kernel::KernelError::NoHeaders {
                    release: k.release.clone(),
                    headers: k.headers_package.clone(),
                    version: k.image_version.clone(),
                })?;
            (fetch_package(p, fetcher)?, p.depends.clone())
        }
    };
    let dir = format!("usr/src/linux-headers-{}/", k.release);
    let [config_path, auto_conf_path] = kset::CONFIG_FILES.map(|c| format!("{dir}{c}"));
    let fixdep_path = format!("{dir}scripts/basic/fixdep");
    let scan = crate::deb::read::scan_data(&deb, &[&config_path, &auto_conf_path, &fixdep_path])?;
    let config = scan
        .file(&config_path)
        .or_else(|| scan.file(&auto_conf_path))
        .ok_or_else(|| kernel::KernelDebError::Bad {
            path: deb.clone(),
            message: format!(
                "neither /{config_path} nor /{auto_conf_path} in it: not the headers of kernel {}",
                k.release
            ),
        })?;
    let files = scan
        .paths
        .iter()
        .filter_map(|p| p.strip_prefix(&dir))
        .filter(|p| p.starts_with("scripts/") || p.starts_with("tools/"))
        .map(str::to_string)
        .collect();
    let debs = match known.host {
        Some(host) => common_debs(&depends, k, local.is_some(), known, host, fetcher)?,
        None => vec![],
    };
    Ok(plan::HeadersFacts {
        config: String::from_utf8_lossy(config).into_owned(),
        helpers: scan.file(&fixdep_path).and_then(elf::elf_machine),
        deb,
        files,
        depends,
        debs,
    })
}

/// A .deb's Package, Version and Depends.
struct DebControl {
    package: String,
    version: String,
    depends: String,
}

fn deb_control(deb: &Path) -> Result<DebControl, BuildError> {
    let control = crate::deb::read::read_control(deb)?;
    let stanza = crate::archive::deb822::parse(&control, "control")
        .ok()
        .and_then(|v| v.into_iter().next())
        .ok_or_else(|| kernel::KernelDebError::Bad {
            path: deb.into(),
            message: "unreadable control file".into(),
        })?;
    let field = |k: &str| stanza.get(k).unwrap_or("").to_string();
    Ok(DebControl {
        package: field("Package"),
        version: field("Version"),
        depends: field("Depends"),
    })
}

/// The common headers (`linux-headers-*`) that headers with `depends`
/// name and the host's suites do not have at that version, as .debs: the
/// user's among `--kernel-deb`, or fetched from the target's suites (a
/// vendor's `Architecture: all` package). Those found nowhere are left
/// for the planner to name.
fn common_debs(
    depends: &str,
    k: &TargetKernel,
    local: bool,
    known: &Known,
    host: &[crate::archive::index::Package],
    fetcher: &crate::archive::fetch::Fetcher,
) -> Result<Vec<cross::KernelDeb>, BuildError> {
    let deps = crate::archive::relation::parse_relations(depends).unwrap_or_default();
    let mut out = Vec::new();
    // The user's .debs' controls, read once (not once per dependency).
    let mut controls: Option<Vec<(DebControl, &PathBuf)>> = None;
    for r in deps.iter().filter_map(|alt| alt.first()) {
        if !r.name.starts_with("linux-headers-") {
            continue;
        }
        let want = r
            .version
            .as_ref()
            .map_or_else(|| k.image_version.clone(), |v| v.version.clone());
        if host.iter().any(|p| p.name == r.name && p.version == want) {
            continue;
        }
        let deb = if local {
            if controls.is_none() {
                let read = known
                    .kernel_debs
                    .iter()
                    .map(|d| Ok((deb_control(d)?, d)))
                    .collect::<Result<Vec<_>, BuildError>>()?;
                controls = Some(read);
            }
            controls
                .iter()
                .flatten()
                .find(|(c, _)| c.package == r.name && c.version == want)
                .map(|(_, d)| (*d).clone())
        } else {
            match known
                .target
                .iter()
                .find(|p| p.name == r.name && p.version == want)
            {
                Some(p) => Some(fetch_package(p, fetcher)?),
                None => None,
            }
        };
        if let Some(deb) = deb {
            out.push(cross::KernelDeb {
                package: r.name.clone(),
                version: want,
                deb,
            });
        }
    }
    Ok(out)
}

/// One package of the indexes, downloaded and verified.
fn fetch_package(
    p: &crate::archive::index::Package,
    fetcher: &crate::archive::fetch::Fetcher,
) -> Result<PathBuf, BuildError> {
    let downloads =
        crate::archive::refresh::package_downloads([p]).map_err(|e| SpecError::Update(e.into()))?;
    Ok(fetcher
        .fetch(&downloads[0])
        .map_err(|e| SpecError::Update(e.into()))?)
}

/// ZFS's META (from the source directory, or from the zfs-dkms package
/// chosen, whose version is then pinned when one was asked for), handed
/// to the planner with the kernels.
fn zfs_plan(
    spec: &BuildSpec,
    source: &mut ModuleSource,
    kernels: &[TargetKernel],
    packages: &[crate::archive::index::Package],
    fetcher: &crate::archive::fetch::Fetcher,
) -> Result<zfs::ZfsPlan, BuildError> {
    match source {
        ModuleSource::Dir { path, .. } => {
            let text = std::fs::read_to_string(path.join("META"))
                .map_err(|_| zfs::ZfsError::NoMeta(path.display().to_string()))?;
            Ok(zfs::plan(&text, &spec.source, kernels, None, None)?)
        }
        ModuleSource::Package(name, version) => {
            let p = zfs::choose(packages, version.as_deref(), &spec.release, &spec.arch)?;
            let path = fetch_package(p, fetcher)?;
            let inner = format!("usr/src/zfs-{}/META", zfs::upstream(&p.version));
            let text = crate::deb::read::read_data_file(&path, &inner)?
                .ok_or_else(|| zfs::ZfsError::NoMeta(p.version.clone()))?;
            let pinned = version.as_ref().map(|_| p.version.clone());
            let utils = zfs::utils_version(packages, &p.version);
            let plan = zfs::plan(
                &String::from_utf8_lossy(&text),
                &spec.source,
                kernels,
                pinned.clone(),
                utils,
            )?;
            if let Some(v) = pinned {
                *source = ModuleSource::Package(name.clone(), Some(v));
            }
            Ok(plan)
        }
    }
}

/// Checks the user's signing key and certificate before anything is built.
fn check_signing(key: &Path, cert: &Path) -> Result<(), BuildError> {
    let bad = |path: &Path, what, reason: String| BuildError::BadSigning {
        path: path.into(),
        what,
        reason,
    };
    let k = std::fs::read(key).map_err(|e| bad(key, "key", e.to_string()))?;
    if !String::from_utf8_lossy(&k).contains("PRIVATE KEY-----") {
        return Err(bad(key, "key", "no PEM private key in it".into()));
    }
    let c = std::fs::read(cert).map_err(|e| bad(cert, "certificate", e.to_string()))?;
    let pem = String::from_utf8_lossy(&c).contains("-----BEGIN CERTIFICATE-----");
    let der = c.starts_with(&[0x30, 0x82]);
    if !pem && !der {
        return Err(bad(
            cert,
            "certificate",
            "neither a PEM nor a DER X.509 certificate".into(),
        ));
    }
    // The modules are signed on this host after the build: a trial
    // signature now says whether openssl is there and takes the key and
    // its certificate, before anything is built.
    sign::Signer { key, cert }
        .cms(b"zchroot", sign::DEFAULT_HASH)
        .map_err(BuildError::SignCheck)?;
    Ok(())
}

/// What to build for `build-zfs`.
#[derive(Debug, Clone)]
pub struct ZfsSpec {
    pub base: BuildSpec,
    /// A zfs-dkms version of the suites (default: the newest).
    pub zfs: Option<String>,
    /// An upstream release tarball instead (with `base.sha256`).
    pub zfs_source: Option<PathBuf>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scratch_is_under_state_and_a_killed_runs_is_removed_first() {
        let d = tempfile::tempdir().unwrap();
        let state = d.path().join("state");
        // What a killed run left: a pid that cannot be running.
        let stale = state.join(".src-4294967295-abc");
        std::fs::create_dir_all(stale.join("zfs-2.3.2")).unwrap();
        std::fs::write(stale.join("zfs-2.3.2/META"), "x").unwrap();
        let ours = state.join(format!(".src-{}-live", std::process::id()));
        std::fs::create_dir_all(&ours).unwrap();
        let s = scratch_dir(&state).unwrap();
        assert!(s.path().starts_with(&state));
        let name = s.path().file_name().unwrap().to_str().unwrap().to_owned();
        assert!(
            name.starts_with(&format!(".src-{}-", std::process::id())),
            "{name}"
        );
        assert!(!stale.exists(), "a killed run's scratch stays");
        assert!(ours.exists(), "a running zchroot's scratch was removed");
        let path = s.path().to_owned();
        drop(s);
        assert!(!path.exists());
    }

    #[test]
    fn build_roots_with_opt_in_suites_have_names_of_their_own() {
        assert_eq!(
            build_root_name_with("trixie", "arm64", &[]),
            "trixie-arm64-dkms"
        );
        let with = build_root_name_with("trixie", "arm64", &["+trixie-backports".into()]);
        assert_eq!(with, "trixie-arm64-dkms-trixie-backports");
        crate::rootfs::Roots::check_name(&with).unwrap();
    }

    #[test]
    fn the_kernel_built_must_be_the_one_chosen() {
        let c = vendor::Candidate {
            image: "linux-image-board".into(),
            image_version: "24.8.1".into(),
            release: Some("6.12.9-board".into()),
            held: "linux-image-board".into(),
            held_version: "24.8.1".into(),
        };
        same_release("http://v", &c, "6.12.9-board").unwrap();
        let e = same_release("http://v", &c, "6.12.10-board").unwrap_err();
        assert_eq!(
            e.to_string().lines().next().unwrap(),
            "kernel archive http://v: linux-image-board 24.8.1 was chosen as kernel 6.12.9-board, but its files are of kernel 6.12.10-board"
        );
        assert!(
            e.to_string()
                .contains("\nhelp: give --kernel 6.12.10-board"),
            "{e}"
        );
    }
}
