//! Building kernel modules for a target kernel and packaging them:
//! `build-dkms` (any DKMS source) with the `emulate` strategy, in a build
//! root of the target's architecture that zchroot creates on first use.

pub mod dkms;
pub mod kernel;
pub mod modpkg;
pub mod zfs;

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::archive::fetch::FetchOptions;
use crate::manifest::Manifests;
use crate::paths::DataDirs;
use crate::report::{Phase, Reporter};
use crate::rootfs::create::{self, CreateSpec};
use crate::rootfs::Roots;
use crate::sandbox::mounts::Bind;
use crate::sandbox::{self, spawn, RunSpec};
use crate::target::{Target, TargetError, TargetSpec};
use dkms::Source;
use kernel::TargetKernel;

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Target(#[from] TargetError),
    #[error(transparent)]
    Kernel(#[from] kernel::KernelError),
    #[error(transparent)]
    Dkms(#[from] dkms::DkmsError),
    #[error(transparent)]
    Create(#[from] create::CreateError),
    #[error(transparent)]
    Roots(#[from] crate::rootfs::RootsError),
    #[error(transparent)]
    Sandbox(#[from] sandbox::SandboxError),
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
    #[error("--kernel and --kernel-deb do not go together: the .debs name their kernel")]
    KernelAndDebs,
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
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
    /// For a package SOURCE: this version instead of the newest.
    pub package_version: Option<String>,
    /// The user's own kernel image and headers .debs instead of a kernel
    /// of the suites.
    pub kernel_debs: Vec<PathBuf>,
}

/// A check run once the source and the kernels are known, before the
/// build root is made or anything compiled (ZFS's kernel range).
pub type PreCheck<'a> = &'a dyn Fn(
    &Source,
    &[TargetKernel],
    &crate::archive::update::Indexes,
    &crate::archive::fetch::Fetcher,
) -> Result<(), BuildError>;

/// One module package made.
#[derive(Debug, Clone)]
pub struct Built {
    pub kernel: TargetKernel,
    pub deb: PathBuf,
    pub module: String,
    pub version: String,
    pub modules: Vec<String>,
    pub signed: bool,
}

/// The build root's package set: buildd and dkms, for the target.
fn build_root_spec(spec: &BuildSpec) -> TargetSpec {
    TargetSpec {
        arch: spec.arch.clone(),
        release: spec.release.clone(),
        variant: "buildd".into(),
        include: vec!["dkms".into()],
        mirror: spec.mirror.clone(),
        keyring: spec.keyring.clone(),
    }
}

/// The name of the build root for a release and architecture.
pub fn build_root_name(release: &str, arch: &str) -> String {
    format!("{release}-{arch}-dkms")
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
pub fn source(spec: &BuildSpec, scratch: &Path) -> Result<Source, BuildError> {
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
        return Ok(Source::Package(
            spec.source.clone(),
            spec.package_version.clone(),
        ));
    }
    Err(dkms::DkmsError::Unknown(spec.source.clone()).into())
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
) -> Result<Vec<Result<Built, BuildError>>, BuildError> {
    build_checked(manifests, spec, dirs, opts, exe, reporter, &|_, _, _, _| {
        Ok(())
    })
}

/// [`build_dkms`] with a check before building.
pub fn build_checked(
    manifests: &Manifests,
    spec: &BuildSpec,
    dirs: &DataDirs,
    opts: FetchOptions,
    exe: &Path,
    reporter: &dyn Reporter,
    check: PreCheck,
) -> Result<Vec<Result<Built, BuildError>>, BuildError> {
    let tspec = build_root_spec(spec);
    let t = Target::new(manifests, &tspec)?;
    let scratch = tempfile::Builder::new()
        .prefix("zchroot-src-")
        .tempdir()
        .map_err(io(Path::new("/tmp")))?;
    let source = source(spec, scratch.path())?;

    // Everything about the target is checked before anything is built.
    let fetcher = t.fetcher(dirs, opts.clone(), reporter)?;
    let indexes = t.update(&fetcher, reporter)?;
    if let Source::Package(name, _) = &source {
        if !indexes.packages.iter().any(|p| &p.name == name) {
            return Err(BuildError::UnknownPackage {
                name: name.clone(),
                release: spec.release.clone(),
                arch: spec.arch.clone(),
            });
        }
    }
    let flavour = spec
        .flavour
        .clone()
        .unwrap_or_else(|| t.arch.kernel_flavour.clone());
    let local = if spec.kernel_debs.is_empty() {
        None
    } else if !spec.kernels.is_empty() {
        return Err(BuildError::KernelAndDebs);
    } else {
        Some(kernel::from_debs(&spec.kernel_debs, &t.arch.name)?)
    };
    let kernels: Vec<TargetKernel> = if let Some(l) = &local {
        vec![l.kernel.clone()]
    } else if spec.kernels.is_empty() {
        vec![kernel::choose(&indexes.packages, &flavour, None)?]
    } else {
        spec.kernels
            .iter()
            .map(|k| kernel::choose(&indexes.packages, &flavour, Some(k)))
            .collect::<Result<_, _>>()?
    };
    check(&source, &kernels, &indexes, &fetcher)?;
    drop(indexes);
    drop(fetcher);

    // The build root: made on first use, then reused; one build at a time.
    let roots = Roots::new(dirs);
    let root_name = build_root_name(&t.release.release, &t.arch.name);
    if !roots.exists(&root_name) {
        reporter.note(&format!(
            "creating the build root {root_name} (buildd + dkms)"
        ));
        create::create(
            manifests,
            &CreateSpec {
                target: tspec.clone(),
                name: Some(root_name.clone()),
                force: false,
            },
            dirs,
            opts.clone(),
            exe,
            reporter,
        )?;
    }
    let _lock = roots.lock_exclusive(&root_name, || {
        reporter.note(&format!(
            "waiting for another zchroot that is using {root_name}"
        ))
    })?;
    roots.touch(&root_name);
    std::fs::create_dir_all(&spec.out).map_err(io(&spec.out))?;

    let mut results = Vec::new();
    for k in &kernels {
        results.push(build_one(
            manifests,
            &t,
            &roots,
            &root_name,
            &source,
            k,
            local.as_ref(),
            spec,
            dirs,
            &opts,
            exe,
            reporter,
        ));
    }
    Ok(results)
}

#[allow(clippy::too_many_arguments)]
fn build_one(
    manifests: &Manifests,
    t: &Target,
    roots: &Roots,
    root_name: &str,
    source: &Source,
    k: &TargetKernel,
    local: Option<&kernel::LocalKernel>,
    spec: &BuildSpec,
    dirs: &DataDirs,
    opts: &FetchOptions,
    exe: &Path,
    reporter: &dyn Reporter,
) -> Result<Built, BuildError> {
    let tree = roots.tree(root_name);
    let out = tempfile::Builder::new()
        .prefix(".build-out-")
        .tempdir_in(&dirs.state)
        .map_err(io(&dirs.state))?;
    let mut binds = vec![Bind {
        host: out.path().to_owned(),
        guest: dkms::OUT_IN_ROOT.into(),
        readonly: false,
    }];
    if let Source::Dir { path, .. } = source {
        binds.push(Bind {
            host: std::fs::canonicalize(path).map_err(io(path))?,
            guest: dkms::SRC_IN_ROOT.into(),
            readonly: true,
        });
    }
    let kernel_dir = tempfile::Builder::new()
        .prefix(".build-kernel-")
        .tempdir_in(&dirs.state)
        .map_err(io(&dirs.state))?;
    let headers = match local {
        None => dkms::Headers::Package(k.headers_package.clone()),
        Some(l) => {
            // The user's .debs, seen in the root under fixed names.
            let dir = kernel_dir.path().to_owned();
            let mut in_root = Vec::new();
            for (deb, name) in [(&l.image_deb, "image.deb"), (&l.headers_deb, "headers.deb")] {
                std::fs::copy(deb, dir.join(name)).map_err(io(deb))?;
                in_root.push(format!("{}/{name}", dkms::KERNEL_IN_ROOT));
            }
            binds.push(Bind {
                host: dir,
                guest: dkms::KERNEL_IN_ROOT.into(),
                readonly: true,
            });
            dkms::Headers::Local(in_root)
        }
    };
    let script = dkms::build_script(source, &k.release, &headers);
    let _ = std::fs::remove_file(tree.join(dkms::LOG_IN_ROOT));
    let run = RunSpec {
        root: tree.clone(),
        arch: Some(t.arch.name.clone()),
        release: t.release.release.clone(),
        mirror: spec.mirror.clone(),
        binds,
        share_network: true,
        hostname: root_name.into(),
        argv: vec![
            "/bin/sh".into(),
            "-c".into(),
            format!("exec >/{} 2>&1\n{script}", dkms::LOG_IN_ROOT),
        ],
        cwd: "/".into(),
    };
    reporter.phase(Phase::Configure, 0, 0);
    reporter.note(&format!("building for {}", k.release));
    let (plan, maps, _) = sandbox::prepare(manifests, &run, dirs, opts.clone(), reporter)?;
    let code = spawn::run(exe, &plan, &maps).map_err(sandbox::SandboxError::from)?;
    reporter.finish();

    // Keep the log outside the root.
    let module_hint = match source {
        Source::Package(p, _) => p.trim_end_matches("-dkms").to_string(),
        Source::Dir { name, .. } => name.clone(),
    };
    let log_text = std::fs::read_to_string(tree.join(dkms::LOG_IN_ROOT)).unwrap_or_default();
    let log = dirs
        .state
        .join("logs")
        .join(format!("build-{module_hint}-{}.log", k.release));
    std::fs::create_dir_all(log.parent().unwrap()).map_err(io(&log))?;
    std::fs::write(&log, &log_text).map_err(io(&log))?;
    if code != 0 {
        let tail: Vec<&str> = log_text.lines().rev().take(30).collect();
        return Err(BuildError::Failed {
            module: module_hint,
            kernel: k.release.clone(),
            code,
            tail: tail.into_iter().rev().collect::<Vec<_>>().join("\n"),
            log,
        });
    }
    let bad = |message: String| BuildError::BadOutput {
        kernel: k.release.clone(),
        message,
        log: log.clone(),
    };
    // Never trust an exit status alone: what the build should make must be there.
    let ident = std::fs::read_to_string(out.path().join("zchroot-module"))
        .map_err(|_| bad("the build left no module name and version".into()))?;
    let mut lines = ident.lines();
    let (module, version) = match (lines.next(), lines.next()) {
        (Some(m), Some(v)) if !m.is_empty() && !v.is_empty() => (m.to_string(), v.to_string()),
        _ => return Err(bad(format!("bad module name and version {ident:?}"))),
    };
    let mut files = Vec::new();
    for e in std::fs::read_dir(out.path()).map_err(io(out.path()))? {
        let e = e.map_err(io(out.path()))?;
        let name = e.file_name().to_string_lossy().into_owned();
        if name.contains(".ko") {
            files.push((name, std::fs::read(e.path()).map_err(io(&e.path()))?));
        }
    }
    if files.is_empty() {
        return Err(bad("DKMS reported success but built no .ko file".into()));
    }
    let machine = u16::from_le_bytes([t.arch.elf_magic[18], t.arch.elf_magic[19]]);
    let mut signed = true;
    for (name, bytes) in &files {
        let info = modpkg::ko_info(bytes)
            .ok_or_else(|| bad(format!("{name} is not an ELF kernel module")))?;
        if info.machine != machine {
            return Err(bad(format!(
                "{name} is for ELF machine {:#x}, not {}",
                info.machine, t.arch.name
            )));
        }
        match &info.vermagic {
            Some(v) if v.split_whitespace().next() == Some(k.release.as_str()) => {}
            other => {
                return Err(bad(format!(
                    "{name} has vermagic {other:?}, not for {}",
                    k.release
                )))
            }
        }
        signed &= info.signed;
    }
    let mtime = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let deb = modpkg::ModuleDeb {
        module: module.clone(),
        version: version.clone(),
        kernel: k.clone(),
        arch: t.arch.name.clone(),
        modules_dir: t.release.kernel.modules_dir.clone(),
        files: files.clone(),
        mtime,
    };
    let bytes = deb.build()?;
    let path = spec.out.join(deb.file_name());
    let partial = spec.out.join(format!(".{}.partial", deb.file_name()));
    std::fs::write(&partial, bytes).map_err(io(&partial))?;
    std::fs::rename(&partial, &path).map_err(io(&path))?;
    Ok(Built {
        kernel: k.clone(),
        deb: path,
        module,
        version,
        modules: files.into_iter().map(|(n, _)| n).collect(),
        signed,
    })
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

/// `build-zfs`: zfs-dkms (or an upstream tarball) for the target kernels,
/// refusing kernels outside the source's META range before building.
/// Returns the results and the zfsutils-linux version to install on the
/// board when the suite's own ZFS was built.
pub fn build_zfs(
    manifests: &Manifests,
    spec: &ZfsSpec,
    dirs: &DataDirs,
    opts: FetchOptions,
    exe: &Path,
    reporter: &dyn Reporter,
) -> Result<(Vec<Result<Built, BuildError>>, Option<String>), BuildError> {
    let mut base = spec.base.clone();
    base.source = match &spec.zfs_source {
        Some(t) => t.display().to_string(),
        None => "zfs-dkms".into(),
    };
    // --zfs 2.3.2 names an upstream version: pin the build root to the
    // full Debian version of it.
    if let (Some(w), None) = (&spec.zfs, &spec.zfs_source) {
        let t = Target::new(manifests, &build_root_spec(&base))?;
        let fetcher = t.fetcher(dirs, opts.clone(), reporter)?;
        let indexes = t.update(&fetcher, reporter)?;
        let p = zfs::choose(&indexes.packages, Some(w), &base.release, &base.arch)?;
        base.package_version = Some(p.version.clone());
    }
    let chosen = std::cell::RefCell::new(None);
    let check = |source: &Source,
                 kernels: &[TargetKernel],
                 indexes: &crate::archive::update::Indexes,
                 fetcher: &crate::archive::fetch::Fetcher|
     -> Result<(), BuildError> {
        let meta_text = match source {
            Source::Dir { path, .. } => std::fs::read_to_string(path.join("META"))
                .map_err(|_| zfs::ZfsError::NoMeta(path.display().to_string()))?,
            Source::Package(_, _) => {
                let p = zfs::choose(
                    &indexes.packages,
                    base.package_version.as_deref(),
                    &base.release,
                    &base.arch,
                )?;
                let downloads = crate::archive::update::package_downloads([p])
                    .map_err(|e| BuildError::Target(TargetError::Update(e.into())))?;
                let path = fetcher
                    .fetch(&downloads[0])
                    .map_err(|e| BuildError::Target(TargetError::Update(e.into())))?;
                let inner = format!("usr/src/zfs-{}/META", zfs::upstream(&p.version));
                let text = crate::deb::read::read_data_file(&path, &inner)?
                    .ok_or_else(|| zfs::ZfsError::NoMeta(p.version.clone()))?;
                let utils = indexes
                    .packages
                    .iter()
                    .find(|q| q.name == "zfsutils-linux" && q.version == p.version)
                    .map(|q| q.version.clone());
                *chosen.borrow_mut() = Some((p.version.clone(), utils));
                String::from_utf8_lossy(&text).into_owned()
            }
        };
        let meta = zfs::parse_meta(&meta_text)
            .ok_or_else(|| zfs::ZfsError::NoMeta(base.source.clone()))?;
        for k in kernels {
            zfs::check_kernel(&meta, &k.release)?;
        }
        Ok(())
    };
    let results = build_checked(manifests, &base, dirs, opts, exe, reporter, &check)?;
    let utils = chosen.into_inner().and_then(|(_, u)| u);
    Ok((results, utils))
}
