//! The executor of a [`BuildPlan`], in stages: the build root (made on
//! first use, locked), then stage (the files the root sees), run (DKMS in
//! the sandbox), verify (what the build left is what was asked for: never
//! an exit status alone), package (the module .deb).

use std::path::{Path, PathBuf};

use crate::archive::fetch::FetchOptions;
use crate::manifest::{Arch, Manifests};
use crate::paths::DataDirs;
use crate::report::{Phase, Reporter};
use crate::rootdir::RootDir;
use crate::rootfs::create::{self, CreateSpec};
use crate::rootfs::spec::RootRecipe;
use crate::rootfs::Roots;
use crate::sandbox::mounts::Bind;
use crate::sandbox::{self, spawn, RunSpec};

use super::dkms::{self, ModuleSource};
use super::kernel::LocalKernel;
use super::plan::{BuildPlan, How, Used};
use super::{cross, elf, io, package, sign, BuildError, BuildSpec, Built};

/// How much of a build's log is read back from its root.
const LOG_MAX: u64 = 16 << 20;
/// The largest kernel module file taken from a build's output.
const MODULE_MAX: u64 = 512 << 20;
/// How many lines of the log an error shows.
const TAIL_LINES: usize = 30;

/// What every build of one invocation shares.
pub(super) struct Exec<'a> {
    pub manifests: &'a Manifests,
    pub spec: &'a BuildSpec,
    pub target: &'a RootRecipe,
    pub host: &'a Arch,
    pub source: &'a ModuleSource,
    pub local: Option<&'a LocalKernel>,
    pub dirs: &'a DataDirs,
    pub opts: &'a FetchOptions,
    pub exe: &'a Path,
    pub reporter: &'a dyn Reporter,
}

/// The files a build root sees, kept until the build is over.
struct Staged {
    out: tempfile::TempDir,
    _kernel: tempfile::TempDir,
    binds: Vec<Bind>,
    headers: dkms::Headers,
    signing: bool,
}

/// What a finished build left, with its log.
struct Ran {
    code: i32,
    log_text: String,
    log: PathBuf,
}

/// What a build made, checked.
struct Outputs {
    module: String,
    version: String,
    files: Vec<(String, Vec<u8>)>,
    signed: bool,
    kernel_compiler: String,
    compiler: String,
}

/// The last lines of a log.
fn tail(text: &str) -> String {
    let tail: Vec<&str> = text.lines().rev().take(TAIL_LINES).collect();
    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
}

impl Exec<'_> {
    /// Builds one kernel as planned; a cross build that fails under `auto`
    /// is built again under emulation.
    pub fn build(&self, plan: &BuildPlan) -> Result<Built, BuildError> {
        match &plan.how {
            How::Emulate => self.build_in(&self.target.arch, plan),
            How::Cross(..) => match self.build_in(self.host, plan) {
                Err(e) if plan.fallback => {
                    // A module that cannot be cross-built still builds under emulation.
                    self.reporter.warn(&format!(
                        "{}: the cross build failed; building under emulation instead. The failure:\n{e}",
                        plan.kernel.release
                    ));
                    self.build_in(
                        &self.target.arch,
                        &plan.emulated(&self.target.arch, self.host),
                    )
                }
                r => r,
            },
        }
    }

    /// Builds in the build root of architecture `root_arch`, creating it
    /// on first use and holding its lock.
    fn build_in(&self, root_arch: &Arch, plan: &BuildPlan) -> Result<Built, BuildError> {
        let roots = Roots::new(self.dirs);
        let root_name = super::build_root_name_with(
            &self.target.release.release,
            &root_arch.name,
            &self.spec.suites,
        );
        if !roots.exists(&root_name) {
            self.reporter.note(&format!(
                "creating the build root {root_name} (buildd + dkms)"
            ));
            let mut target = super::root_spec(self.spec, &root_arch.name);
            // A cross build's toolchain is part of the root made for it (and
            // so of its template): a build root made again, or for another
            // target, starts compiling without installing it again.
            if let How::Cross(p, _) = &plan.how {
                target.include.extend(p.install.iter().cloned());
            }
            let spec = CreateSpec {
                target,
                name: Some(root_name.clone()),
                force: false,
                hooks: Default::default(),
                // A build root made before (destroyed since, or for another
                // target of the same release) is copied from its template.
                use_template: true,
            };
            match create::create(
                self.manifests,
                &spec,
                self.dirs,
                self.opts.clone(),
                self.exe,
                self.reporter,
            ) {
                // Another zchroot made it while this one waited for the lock.
                Ok(_) | Err(create::CreateError::Exists { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        let _lock = roots.lock_exclusive(&root_name, || {
            self.reporter.warn(&format!(
                "waiting for another zchroot that is using {root_name}"
            ))
        })?;
        roots.touch(&root_name);
        let tree = roots.tree(&root_name);
        let staged = self.stage(plan)?;
        let ran = self.run(root_arch, &tree, &root_name, plan, &staged)?;
        let outputs = self.verify(plan, &staged, ran)?;
        self.package(plan, outputs)
    }

    /// Stage: the output directory, the source and the kernel's .debs,
    /// each bound into the root. Never the user's signing key: the modules
    /// are signed on this host after the build ([`Exec::verify`]).
    fn stage(&self, plan: &BuildPlan) -> Result<Staged, BuildError> {
        let state = &self.dirs.state;
        let tmp = |prefix: &str| {
            tempfile::Builder::new()
                .prefix(prefix)
                .tempdir_in(state)
                .map_err(io(state))
        };
        let (out, kernel_dir) = (tmp(".build-out-")?, tmp(".build-kernel-")?);
        let bind = |host: PathBuf, guest: &str, readonly| Bind {
            host,
            guest: guest.into(),
            readonly,
        };
        let mut binds = vec![bind(out.path().to_owned(), dkms::OUT_IN_ROOT, false)];
        if let ModuleSource::Dir { path, .. } = self.source {
            let host = std::fs::canonicalize(path).map_err(io(path))?;
            binds.push(bind(host, dkms::SRC_IN_ROOT, true));
        }
        // Files for the root, seen there under fixed names.
        let mut give = |files: &[(&Path, &str)]| -> Result<Vec<String>, BuildError> {
            let mut in_root = Vec::new();
            for (from, name) in files {
                std::fs::copy(from, kernel_dir.path().join(name)).map_err(io(from))?;
                in_root.push(format!("{}/{name}", dkms::KERNEL_IN_ROOT));
            }
            binds.push(bind(
                kernel_dir.path().to_owned(),
                dkms::KERNEL_IN_ROOT,
                true,
            ));
            Ok(in_root)
        };
        // A split set's common headers, under names of their own.
        let common: Vec<(&Path, String)> = self
            .local
            .map(|l| &l.common_debs[..])
            .unwrap_or_default()
            .iter()
            .enumerate()
            .map(|(i, d)| (d.as_path(), format!("common-{i}.deb")))
            .collect();
        let common = common.iter().map(|(d, n)| (*d, n.as_str()));
        let headers = match (&plan.how, self.local) {
            (How::Cross(p, headers_deb), _) => dkms::Headers::Cross {
                install: p.install.clone(),
                // The headers first, then the other packages they name.
                unpack: {
                    let names: Vec<String> = (0..p.unpack.len())
                        .map(|i| format!("headers-{i}.deb"))
                        .collect();
                    let mut files = vec![(headers_deb.as_path(), "headers.deb")];
                    files.extend(
                        p.unpack
                            .iter()
                            .map(PathBuf::as_path)
                            .zip(names.iter().map(String::as_str)),
                    );
                    give(&files)?
                },
                links: p.links.clone(),
                rebuild: p.rebuild.clone(),
                triplet: p.triplet.clone(),
                gcc_major: p.gcc_major.clone(),
                kernel_arch: p.kernel_arch.clone(),
            },
            (How::Emulate, None) => dkms::Headers::Package(plan.kernel.headers_package.clone()),
            // The whole set is installed by apt, from the local files.
            (How::Emulate, Some(l)) => {
                let mut files = vec![(l.image_deb.as_path(), "image.deb")];
                files.extend(l.kbuild.iter().map(|k| (k.deb.as_path(), "kbuild.deb")));
                files.extend(common);
                files.push((&l.headers_deb, "headers.deb"));
                dkms::Headers::Local(give(&files)?)
            }
        };
        Ok(Staged {
            out,
            _kernel: kernel_dir,
            binds,
            headers,
            signing: self.spec.sign.is_some(),
        })
    }

    /// Run: DKMS in the sandbox; its log is kept outside the root.
    fn run(
        &self,
        root_arch: &Arch,
        tree: &Path,
        root_name: &str,
        plan: &BuildPlan,
        staged: &Staged,
    ) -> Result<Ran, BuildError> {
        let t = self.target;
        let k = &plan.kernel;
        let script = dkms::build_script(
            self.source,
            &k.release,
            &staged.headers,
            &t.arch.uname,
            staged.signing,
        );
        let root_dir = RootDir::open(tree)?;
        root_dir.remove(Path::new(dkms::LOG_IN_ROOT))?;
        let run = RunSpec {
            root: tree.to_owned(),
            arch: Some(root_arch.name.clone()),
            release: t.release.release.clone(),
            mirror: self.spec.mirror.clone(),
            binds: staged.binds.clone(),
            share_network: true,
            hostname: root_name.into(),
            argv: vec![
                "/bin/sh".into(),
                "-c".into(),
                format!("exec >/{} 2>&1\n{script}", dkms::LOG_IN_ROOT),
            ],
            cwd: "/".into(),
        };
        let (splan, maps, _) = crate::enter::prepare(
            self.manifests,
            &run,
            self.dirs,
            self.opts.clone(),
            self.reporter,
        )?;
        self.reporter.phase(Phase::Build, 0, 0);
        self.reporter
            .item_started(&format!("building for {}", k.release));
        let code = spawn::run(self.exe, &splan, &maps).map_err(sandbox::SandboxError::from)?;
        self.reporter.finish();
        // The log is the sandbox's file: read confined, a regular file
        // only, with a cap.
        let log_text = root_dir.read_tail(Path::new(dkms::LOG_IN_ROOT), LOG_MAX);
        let log = self.dirs.state.join("logs").join(format!(
            "build-{}-{}.log",
            self.module_hint(),
            k.release
        ));
        crate::paths::create_private_dir_all(log.parent().unwrap()).map_err(io(&log))?;
        std::fs::write(&log, &log_text).map_err(io(&log))?;
        Ok(Ran {
            code,
            log_text,
            log,
        })
    }

    /// The module's name before the build says it.
    fn module_hint(&self) -> String {
        match self.source {
            ModuleSource::Package(p, _) => p.trim_end_matches("-dkms").to_string(),
            ModuleSource::Dir { name, .. } => name.clone(),
        }
    }

    /// Verify: the build succeeded and left modules for the target's
    /// machine and the kernel's release, and a record of its compiler; the
    /// modules are then signed here, outside the build, when a key was
    /// given.
    fn verify(&self, plan: &BuildPlan, staged: &Staged, ran: Ran) -> Result<Outputs, BuildError> {
        let k = &plan.kernel;
        if ran.code != 0 {
            return Err(BuildError::Failed {
                module: self.module_hint(),
                kernel: k.release.clone(),
                code: ran.code,
                tail: tail(&ran.log_text),
                log: ran.log,
            });
        }
        let bad = |message: String| BuildError::BadOutput {
            kernel: k.release.clone(),
            message,
            log: ran.log.clone(),
        };
        // The outputs are the sandbox's files: read confined, regular
        // files only, with caps.
        let out_dir = RootDir::open(staged.out.path())?;
        let ident = out_dir
            .read(Path::new("zchroot-module"), 4096)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .map_err(|e| bad(format!("the build left no module name and version: {e}")))?;
        let mut lines = ident.lines();
        let (module, version) = match (lines.next(), lines.next()) {
            // Both come from the build (untrusted) and go into a file name
            // and the package's fields: Debian's syntax only.
            (Some(m), Some(v)) if valid_module_name(m) && valid_version(v) => {
                (m.to_string(), v.to_string())
            }
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
        let mut signed = check_modules(&self.target.arch, &k.release, &files).map_err(bad)?;
        if let Some((key, cert)) = &self.spec.sign {
            // The hash the kernel's config names (the build's record,
            // checked against a list), with the user's key read where it is.
            let hash = out_dir
                .read(Path::new("zchroot-sig-hash"), 4096)
                .ok()
                .and_then(|b| sign::hash_of(&String::from_utf8_lossy(&b)))
                .unwrap_or(sign::DEFAULT_HASH);
            let signer = sign::Signer { key, cert };
            for (name, bytes) in &mut files {
                *bytes =
                    signer
                        .sign_module(name, bytes, hash)
                        .map_err(|source| BuildError::Sign {
                            kernel: k.release.clone(),
                            source,
                        })?;
            }
            signed = check_modules(&self.target.arch, &k.release, &files).map_err(bad)?;
        }
        if self.spec.sign.is_some() && !signed {
            return Err(BuildError::NotSigned {
                kernel: k.release.clone(),
                module,
                tail: tail(&ran.log_text),
                log: ran.log,
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
        Ok(Outputs {
            module,
            version,
            files,
            signed,
            kernel_compiler,
            compiler,
        })
    }

    /// Package: the module .deb, written atomically to the output directory.
    fn package(&self, plan: &BuildPlan, o: Outputs) -> Result<Built, BuildError> {
        let (t, k) = (self.target, &plan.kernel);
        if cross::compilers_differ(&o.kernel_compiler, &o.compiler) {
            self.reporter.warn(&format!(
                "{} was built by '{}' and the module by '{}'{}",
                k.release,
                o.kernel_compiler,
                o.compiler,
                if plan.used == Used::Cross {
                    "; --strategy emulate builds with the kernel's own compiler"
                } else {
                    ""
                }
            ));
        }
        let deb = package::ModuleDeb {
            module: o.module.clone(),
            version: o.version.clone(),
            kernel: k.clone(),
            arch: t.arch.name.clone(),
            modules_dir: t.release.kernel.modules_dir.clone(),
            files: o.files.clone(),
            mtime: package::source_date_epoch(),
            fields: vec![
                ("X-Zchroot-Strategy".into(), plan.used.as_str().into()),
                ("X-Zchroot-Compiler".into(), o.compiler.clone()),
                (
                    "X-Zchroot-Kernel-Compiler".into(),
                    o.kernel_compiler.clone(),
                ),
            ],
        };
        let bytes = deb.build()?;
        let path = self.spec.out.join(deb.file_name());
        crate::atomic::write_atomic(&path, &bytes, 0o644).map_err(io(&path))?;
        Ok(Built {
            kernel: k.clone(),
            deb: path,
            module: o.module,
            version: o.version,
            modules: o.files.into_iter().map(|(n, _)| n).collect(),
            signed: o.signed,
            signed_with_given_key: self.spec.sign.is_some(),
            strategy: plan.used,
            kernel_compiler: o.kernel_compiler,
            compiler: o.compiler,
        })
    }
}

/// Every module is an ELF kernel module (`.ko`, `.ko.xz`, `.ko.zst`,
/// `.ko.gz`) for `arch`'s machine and kernel `release`'s vermagic;
/// whether all are signed.
fn check_modules(arch: &Arch, release: &str, files: &[(String, Vec<u8>)]) -> Result<bool, String> {
    let machine = elf::arch_machine(arch);
    let mut signed = true;
    for (name, bytes) in files {
        let info =
            elf::ko_info(bytes).ok_or_else(|| format!("{name} is not an ELF kernel module"))?;
        if info.machine != machine {
            return Err(format!(
                "{name} is for ELF machine {:#x}, not {}",
                info.machine, arch.name
            ));
        }
        match &info.vermagic {
            Some(v) if v.split_whitespace().next() == Some(release) => {}
            other => return Err(format!("{name} has vermagic {other:?}, not for {release}")),
        }
        signed &= info.signed;
    }
    Ok(signed)
}

/// A DKMS module name: letters, digits and `+ - . _`, starting with a
/// letter or digit (nothing that could name a path).
fn valid_module_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 64
        && n.as_bytes()[0].is_ascii_alphanumeric()
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+-._".contains(&b))
}

/// A module version: letters, digits and `. + ~ - : _`, starting with a
/// letter or digit (nothing that could name a path).
fn valid_version(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= 128
        && v.as_bytes()[0].is_ascii_alphanumeric()
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".+~-:_".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_versions_from_a_build_are_checked() {
        assert!(valid_module_name("zfs") && valid_module_name("v4l2loopback"));
        assert!(valid_version("2.3.2-2") && valid_version("1:0.12.5+git~1"));
        for bad in ["", "../x", "a/b", ".x", "-x"] {
            assert!(!valid_module_name(bad), "{bad}");
        }
        for bad in ["", "../../x", "1/2", ".1", "1 2", "1\n2"] {
            assert!(!valid_version(bad), "{bad}");
        }
    }

    fn arch(name: &str) -> Arch {
        crate::manifest::Manifests::embedded()
            .architectures()
            .unwrap()
            .into_iter()
            .find(|a| a.name == name)
            .unwrap()
    }

    fn ko(vermagic: &str) -> Vec<u8> {
        let mut ko =
            b"\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01\x00\xb7\x00".to_vec();
        ko.extend_from_slice(format!("\0vermagic={vermagic} SMP aarch64\0").as_bytes());
        ko
    }

    #[test]
    fn outputs_are_checked_compressed_or_not() {
        let arm64 = arch("arm64");
        let krel = "6.12.117+deb13-arm64";
        let zst = ruzstd::encoding::compress_to_vec(
            &ko(krel)[..],
            ruzstd::encoding::CompressionLevel::Fastest,
        );
        let files = vec![
            ("a.ko".to_string(), ko(krel)),
            ("b.ko.zst".to_string(), zst),
        ];
        assert_eq!(check_modules(&arm64, krel, &files), Ok(false));
        let mut signed = ko(krel);
        signed.extend_from_slice(b"~Module signature appended~\n");
        assert_eq!(
            check_modules(&arm64, krel, &[("s.ko".into(), signed)]),
            Ok(true)
        );
        let e = check_modules(&arm64, "6.12.118+deb13-arm64", &files).unwrap_err();
        assert!(e.starts_with("a.ko has vermagic"), "{e}");
        let e = check_modules(&arch("amd64"), krel, &files).unwrap_err();
        assert_eq!(e, "a.ko is for ELF machine 0xb7, not amd64");
        let e = check_modules(&arm64, krel, &[("x.ko".into(), b"text".to_vec())]).unwrap_err();
        assert_eq!(e, "x.ko is not an ELF kernel module");
        assert_eq!(tail(&"l\n".repeat(40)).lines().count(), TAIL_LINES);
    }
}
