//! Building kernel modules for a target kernel and packaging them:
//! `build-dkms` (any DKMS source) with the `emulate` strategy, in a build
//! root of the target's architecture that zchroot creates on first use.

pub mod cross;
pub mod dkms;
pub mod elf;
pub mod kernel;
pub mod package;
pub mod zfs;

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// How much of a build's log is read back from its root.
const LOG_MAX: u64 = 16 << 20;
/// The largest kernel module file taken from a build's output.
const MODULE_MAX: u64 = 512 << 20;

use crate::archive::fetch::FetchOptions;
use crate::manifest::Manifests;
use crate::paths::DataDirs;
use crate::report::{Phase, Reporter};
use crate::rootdir::RootDir;
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
    Root(#[from] crate::rootdir::RootDirError),
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
    #[error("{}: not a signing {what}: {reason}\nhelp: --sign-key takes a PEM private key, --sign-cert its X.509 certificate (DER or PEM)", path.display())]
    BadSigning {
        path: PathBuf,
        what: &'static str,
        reason: String,
    },
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
    pub strategy: Strategy,
    /// The user's signing key (PEM) and certificate (DER or PEM).
    pub sign: Option<(PathBuf, PathBuf)>,
}

/// How a module is compiled for a foreign kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Strategy {
    /// `cross` when the archive has what it needs, else `emulate`.
    #[default]
    Auto,
    /// DKMS inside a root of the target's architecture (qemu when foreign).
    Emulate,
    /// DKMS in a root of the host's architecture with a cross compiler.
    Cross,
}

impl std::str::FromStr for Strategy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(Strategy::Auto),
            "emulate" => Ok(Strategy::Emulate),
            "cross" => Ok(Strategy::Cross),
            _ => Err(format!("unknown strategy '{s}' (auto, emulate, cross)")),
        }
    }
}

/// How one kernel is built, decided before anything is built.
#[derive(Debug, Clone)]
enum Plan {
    /// DKMS in the target's architecture (native when it is the host's).
    Emulate,
    /// In the host's architecture root; the headers .deb to unpack.
    Cross(cross::CrossPlan, PathBuf),
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
    /// Signed with the key of [`BuildSpec::sign`].
    pub signed_with_given_key: bool,
    /// `cross` or `emulate`.
    pub strategy: &'static str,
    /// The compiler that built the kernel, and the one that built the module.
    pub kernel_compiler: String,
    pub compiler: String,
}

/// The build root's package set: buildd and dkms, for the target.
fn build_root_spec(spec: &BuildSpec) -> TargetSpec {
    root_spec(spec, &spec.arch)
}

/// The build root's package set, in architecture `arch` (the target's to
/// emulate, the host's to cross-compile).
fn root_spec(spec: &BuildSpec, arch: &str) -> TargetSpec {
    TargetSpec {
        arch: arch.to_string(),
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
    if let Some((key, cert)) = &spec.sign {
        check_signing(key, cert)?;
    }

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

    // How each kernel is built, decided before anything is built.
    let host = crate::host::host_arch(manifests).map_err(TargetError::Manifest)?;
    let mut plans = Vec::new();
    let mut host_indexes = None;
    let cross_wanted = t.arch.name != host.name && spec.strategy != Strategy::Emulate;
    for k in &kernels {
        if !cross_wanted && local.is_none() {
            // Nothing to decide: the build root's apt fetches the headers.
            plans.push(Plan::Emulate);
            continue;
        }
        let (headers_deb, config) = match &local {
            Some(l) => (
                l.headers_deb.clone(),
                read_config(&l.headers_deb, &k.release)?,
            ),
            None => {
                let p = indexes
                    .packages
                    .iter()
                    .find(|p| p.name == k.headers_package && p.version == k.image_version)
                    .ok_or_else(|| kernel::KernelError::NoHeaders {
                        release: k.release.clone(),
                        headers: k.headers_package.clone(),
                        version: k.image_version.clone(),
                    })?;
                let downloads = crate::archive::update::package_downloads([p])
                    .map_err(|e| TargetError::Update(e.into()))?;
                let path = fetcher
                    .fetch(&downloads[0])
                    .map_err(|e| TargetError::Update(e.into()))?;
                let config = read_config(&path, &k.release)?;
                (path, config)
            }
        };
        let plan = if !cross_wanted {
            Err("emulation was asked for".to_string())
        } else {
            if host_indexes.is_none() {
                let ht = Target::new(manifests, &root_spec(spec, &host.name))?;
                let hf = ht.fetcher(dirs, opts.clone(), reporter)?;
                host_indexes = Some(ht.update(&hf, reporter)?);
            }
            let host_packages = &host_indexes.as_ref().unwrap().packages;
            match cross::kernel_compiler(&config) {
                None => {
                    Err("its headers' .config names no compiler (CONFIG_CC_VERSION_TEXT)".into())
                }
                Some(cc) => match &local {
                    Some(l) => helpers_machine(&l.headers_deb, &k.release)?
                        .filter(|m| *m == elf::arch_machine(&host))
                        .ok_or_else(|| {
                            "its headers carry no build helpers built for this host".to_string()
                        })
                        .and_then(|_| cross::plan_local(host_packages, &t.arch, &cc)),
                    None => cross::plan_archive(
                        &indexes.packages,
                        host_packages,
                        &k.headers_package,
                        &k.image_version,
                        &t.arch,
                        &cc,
                    ),
                },
            }
        };
        let plan = match (plan, spec.strategy) {
            (Ok(p), _) => {
                reporter.note(&format!(
                    "{}: strategy cross ({} {} on {})",
                    k.release, p.compiler_package, p.compiler_version, host.name
                ));
                Plan::Cross(p, headers_deb)
            }
            (Err(reason), Strategy::Cross) if t.arch.name != host.name => {
                return Err(BuildError::NoCross {
                    kernel: k.release.clone(),
                    arch: t.arch.name.clone(),
                    reason,
                })
            }
            (Err(reason), s) => {
                if let Some(l) = &local {
                    // Emulation runs the headers' helpers in the target's
                    // root: they must be the target's programs.
                    if let Some(m) = helpers_machine(&l.headers_deb, &k.release)? {
                        if m != elf::arch_machine(&t.arch) {
                            let host_ok = m == elf::arch_machine(&host);
                            return Err(BuildError::ForeignHelpers {
                                deb: l.headers_deb.clone(),
                                found: machine_name(manifests, m),
                                arch: t.arch.name.clone(),
                                help: if host_ok {
                                    format!("they are this host's programs: --strategy cross (or auto) uses them; here cross failed: {reason}")
                                } else {
                                    "rebuild the headers package on the target or on this host (make bindeb-pkg)".into()
                                },
                            });
                        }
                    }
                }
                if s == Strategy::Auto && t.arch.name != host.name {
                    reporter.note(&format!(
                        "{}: strategy emulate, because cross cannot build it: {reason}",
                        k.release
                    ));
                }
                Plan::Emulate
            }
        };
        plans.push(plan);
    }
    drop(indexes);
    drop(fetcher);
    std::fs::create_dir_all(&spec.out).map_err(io(&spec.out))?;

    let mut results = Vec::new();
    for (k, plan) in kernels.iter().zip(plans) {
        let build = |root_arch: &crate::manifest::Arch, plan: &Plan| {
            build_in(
                manifests,
                spec,
                root_arch,
                &t,
                &source,
                k,
                local.as_ref(),
                plan,
                dirs,
                &opts,
                exe,
                reporter,
            )
        };
        let r = match &plan {
            Plan::Emulate => build(&t.arch, &plan),
            Plan::Cross(..) => match build(&host, &plan) {
                Err(e) if spec.strategy == Strategy::Auto => {
                    // A module that cannot be cross-built still builds under emulation.
                    reporter.note(&format!(
                        "{}: the cross build failed; building under emulation instead. The failure:\n{e}",
                        k.release
                    ));
                    build(&t.arch, &Plan::Emulate)
                }
                r => r,
            },
        };
        results.push(r);
    }
    Ok(results)
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
    Ok(())
}

/// The kernel's `.config` from its headers package.
fn read_config(headers_deb: &Path, release: &str) -> Result<String, BuildError> {
    let inner = format!("usr/src/linux-headers-{release}/.config");
    let bytes = crate::deb::read::read_data_file(headers_deb, &inner)?.ok_or_else(|| {
        kernel::KernelDebError::Bad {
            path: headers_deb.into(),
            message: format!("no /{inner} in it: not the headers of kernel {release}"),
        }
    })?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// The ELF machine of the build helpers a headers package carries itself
/// (`make bindeb-pkg` puts them in; Debian's come from linux-kbuild).
fn helpers_machine(headers_deb: &Path, release: &str) -> Result<Option<u16>, BuildError> {
    let inner = format!("usr/src/linux-headers-{release}/scripts/basic/fixdep");
    Ok(crate::deb::read::read_data_file(headers_deb, &inner)?
        .as_deref()
        .and_then(elf::elf_machine))
}

fn machine_name(manifests: &Manifests, m: u16) -> String {
    manifests
        .architectures()
        .ok()
        .and_then(|v| v.into_iter().find(|a| elf::arch_machine(a) == m))
        .map(|a| a.name)
        .unwrap_or_else(|| format!("ELF machine {m:#x}"))
}

/// Builds one kernel in the build root of architecture `root_arch`,
/// creating it on first use and holding its lock.
#[allow(clippy::too_many_arguments)]
fn build_in(
    manifests: &Manifests,
    spec: &BuildSpec,
    root_arch: &crate::manifest::Arch,
    t: &Target,
    source: &Source,
    k: &TargetKernel,
    local: Option<&kernel::LocalKernel>,
    plan: &Plan,
    dirs: &DataDirs,
    opts: &FetchOptions,
    exe: &Path,
    reporter: &dyn Reporter,
) -> Result<Built, BuildError> {
    let tspec = root_spec(spec, &root_arch.name);
    let roots = Roots::new(dirs);
    let root_name = build_root_name(&t.release.release, &root_arch.name);
    if !roots.exists(&root_name) {
        reporter.note(&format!(
            "creating the build root {root_name} (buildd + dkms)"
        ));
        match create::create(
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
        ) {
            // Another zchroot made it while this one waited for the lock.
            Ok(_) | Err(create::CreateError::Exists { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let _lock = roots.lock_exclusive(&root_name, || {
        reporter.note(&format!(
            "waiting for another zchroot that is using {root_name}"
        ))
    })?;
    roots.touch(&root_name);
    build_one(
        manifests, root_arch, t, &roots, &root_name, source, k, local, plan, spec, dirs, opts, exe,
        reporter,
    )
}

#[allow(clippy::too_many_arguments)]
fn build_one(
    manifests: &Manifests,
    root_arch: &crate::manifest::Arch,
    t: &Target,
    roots: &Roots,
    root_name: &str,
    source: &Source,
    k: &TargetKernel,
    local: Option<&kernel::LocalKernel>,
    plan: &Plan,
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
    // Files for the root, seen there under fixed names.
    let mut give = |files: &[(&Path, &str)]| -> Result<Vec<String>, BuildError> {
        let dir = kernel_dir.path().to_owned();
        let mut in_root = Vec::new();
        for (from, name) in files {
            std::fs::copy(from, dir.join(name)).map_err(io(from))?;
            in_root.push(format!("{}/{name}", dkms::KERNEL_IN_ROOT));
        }
        binds.push(Bind {
            host: dir,
            guest: dkms::KERNEL_IN_ROOT.into(),
            readonly: true,
        });
        Ok(in_root)
    };
    let headers = match (plan, local) {
        (Plan::Cross(p, headers_deb), _) => dkms::Headers::Cross {
            install: p.install.clone(),
            unpack: give(&[(headers_deb, "headers.deb")])?,
            triplet: p.triplet.clone(),
            gcc_major: p.gcc_major.clone(),
            kernel_arch: p.kernel_arch.clone(),
        },
        (Plan::Emulate, None) => dkms::Headers::Package(k.headers_package.clone()),
        (Plan::Emulate, Some(l)) => dkms::Headers::Local(give(&[
            (&l.image_deb, "image.deb"),
            (&l.headers_deb, "headers.deb"),
        ])?),
    };
    let strategy = match plan {
        Plan::Cross(..) => "cross",
        // The target's architecture is this host's: nothing is emulated.
        Plan::Emulate if crate::host::machine() == t.arch.uname => "native",
        Plan::Emulate => "emulate",
    };
    // The user's key, seen by DKMS in the root, gone with the build.
    let sign_dir = tempfile::Builder::new()
        .prefix(".build-sign-")
        .tempdir_in(&dirs.state)
        .map_err(io(&dirs.state))?;
    let signing = match &spec.sign {
        Some((key, cert)) => {
            use std::os::unix::fs::PermissionsExt;
            let k = sign_dir.path().join("key.pem");
            std::fs::copy(key, &k).map_err(io(key))?;
            std::fs::set_permissions(&k, std::fs::Permissions::from_mode(0o600)).map_err(io(&k))?;
            std::fs::copy(cert, sign_dir.path().join("cert")).map_err(io(cert))?;
            binds.push(Bind {
                host: sign_dir.path().to_owned(),
                guest: dkms::SIGN_IN_ROOT.into(),
                readonly: true,
            });
            true
        }
        None => false,
    };
    let script = dkms::build_script(source, &k.release, &headers, &t.arch.uname, signing);
    let root_dir = RootDir::open(&tree)?;
    root_dir.remove(Path::new(dkms::LOG_IN_ROOT))?;
    let run = RunSpec {
        root: tree.clone(),
        arch: Some(root_arch.name.clone()),
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
    // The log and the outputs are the sandbox's files: read confined,
    // regular files only, with caps.
    let log_text = root_dir.read_tail(Path::new(dkms::LOG_IN_ROOT), LOG_MAX);
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
    let out_dir = RootDir::open(out.path())?;
    let ident = out_dir
        .read(Path::new("zchroot-module"), 4096)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .map_err(|e| bad(format!("the build left no module name and version: {e}")))?;
    let mut lines = ident.lines();
    let (module, version) = match (lines.next(), lines.next()) {
        (Some(m), Some(v)) if !m.is_empty() && !v.is_empty() => (m.to_string(), v.to_string()),
        _ => return Err(bad(format!("bad module name and version {ident:?}"))),
    };
    let mut files = Vec::new();
    for (name, kind) in out_dir.list(Path::new(""))? {
        let name = name.to_string_lossy().into_owned();
        if name.contains(".ko") {
            if kind != crate::rootdir::Kind::File {
                return Err(bad(format!("{name} is not a regular file")));
            }
            files.push((name.clone(), out_dir.read(Path::new(&name), MODULE_MAX)?));
        }
    }
    if files.is_empty() {
        return Err(bad("DKMS reported success but built no .ko file".into()));
    }
    let machine = elf::arch_machine(&t.arch);
    let mut signed = true;
    for (name, bytes) in &files {
        let info = elf::ko_info(bytes)
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
    if spec.sign.is_some() && !signed {
        let tail: Vec<&str> = log_text.lines().rev().take(30).collect();
        return Err(BuildError::NotSigned {
            kernel: k.release.clone(),
            module: module.clone(),
            tail: tail.into_iter().rev().collect::<Vec<_>>().join("\n"),
            log,
        });
    }
    // Which compiler built the kernel and which the module.
    let compilers = out_dir
        .read(Path::new("zchroot-compiler"), 4096)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let mut lines = compilers.lines().map(str::trim);
    let kernel_compiler = lines.next().unwrap_or("").to_string();
    let compiler = lines.next().unwrap_or("").to_string();
    if compiler.is_empty() {
        return Err(bad("the build left no record of its compiler".into()));
    }
    if cross::compilers_differ(&kernel_compiler, &compiler) {
        reporter.note(&format!(
            "warning: {} was built by '{kernel_compiler}' and the module by '{compiler}'{}",
            k.release,
            if strategy == "cross" {
                "; --strategy emulate builds with the kernel's own compiler"
            } else {
                ""
            }
        ));
    }
    let mtime = package::source_date_epoch();
    let deb = package::ModuleDeb {
        module: module.clone(),
        version: version.clone(),
        kernel: k.clone(),
        arch: t.arch.name.clone(),
        modules_dir: t.release.kernel.modules_dir.clone(),
        files: files.clone(),
        mtime,
        fields: vec![
            ("X-Zchroot-Strategy".into(), strategy.into()),
            ("X-Zchroot-Compiler".into(), compiler.clone()),
            ("X-Zchroot-Kernel-Compiler".into(), kernel_compiler.clone()),
        ],
    };
    let bytes = deb.build()?;
    let path = spec.out.join(deb.file_name());
    crate::atomic::write_atomic(&path, &bytes, 0o644).map_err(io(&path))?;
    Ok(Built {
        kernel: k.clone(),
        deb: path,
        module,
        version,
        modules: files.into_iter().map(|(n, _)| n).collect(),
        signed,
        signed_with_given_key: spec.sign.is_some(),
        strategy,
        kernel_compiler,
        compiler,
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
