//! How each kernel's module is built, decided before anything is built:
//! kernels × strategy × module, from the verified indexes, the kernels'
//! headers and the spec, to a list of [`BuildPlan`]s that each say why
//! they chose their strategy. Pure: the facts in, the plans out; the
//! executor (`kmod::exec`) applies them.

use std::collections::BTreeSet;
use std::path::PathBuf;

use crate::archive::index::Package;
use crate::manifest::Arch;

use super::cross::{self, CrossPlan};
use super::elf;
use super::kernel::TargetKernel;
use super::BuildError;

/// How a module is compiled for a foreign kernel: `--strategy`, and the
/// `strategy` of a target file.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    serde::Serialize,
    serde::Deserialize,
    clap::ValueEnum,
)]
#[serde(try_from = "String", rename_all = "lowercase")]
pub enum Strategy {
    /// `cross` when the archive has what it needs, else `emulate`.
    #[default]
    Auto,
    /// DKMS in a root of the host's architecture with a cross compiler.
    Cross,
    /// DKMS inside a root of the target's architecture (qemu when foreign).
    Emulate,
}

/// A strategy that is none of the known ones.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown strategy '{0}': it is none of auto, cross, emulate")]
pub struct UnknownStrategy(pub String);

impl Strategy {
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::Auto => "auto",
            Strategy::Cross => "cross",
            Strategy::Emulate => "emulate",
        }
    }
}

impl std::str::FromStr for Strategy {
    type Err = UnknownStrategy;
    fn from_str(s: &str) -> Result<Self, UnknownStrategy> {
        match s {
            "auto" => Ok(Strategy::Auto),
            "cross" => Ok(Strategy::Cross),
            "emulate" => Ok(Strategy::Emulate),
            _ => Err(UnknownStrategy(s.into())),
        }
    }
}

impl TryFrom<String> for Strategy {
    type Error = UnknownStrategy;
    fn try_from(s: String) -> Result<Self, UnknownStrategy> {
        s.parse()
    }
}

impl std::fmt::Display for Strategy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The strategy a module was built with, as its package's
/// `X-Zchroot-Strategy` field records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Used {
    Cross,
    Emulate,
    /// Emulate, for a target of this host's own machine: nothing emulated.
    Native,
}

impl Used {
    pub fn as_str(self) -> &'static str {
        match self {
            Used::Cross => "cross",
            Used::Emulate => "emulate",
            Used::Native => "native",
        }
    }
}

impl std::fmt::Display for Used {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What kind of module is built: ZFS has checks of its own (its META
/// kernel range, the zfsutils-linux version to match).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModuleKind {
    Dkms,
    Zfs,
}

impl ModuleKind {
    /// The kind of a target file's `module` (`zfs` is the suites' ZFS;
    /// anything else is built as the DKMS source it names).
    pub fn of_target(module: &str) -> ModuleKind {
        if module == "zfs" {
            ModuleKind::Zfs
        } else {
            ModuleKind::Dkms
        }
    }

    /// The SOURCE a target file's `module` stands for.
    pub fn source_arg(self, module: &str) -> String {
        match self {
            ModuleKind::Zfs => "zfs-dkms".into(),
            ModuleKind::Dkms => module.into(),
        }
    }
}

/// The headers of a kernel, read before planning: only when cross
/// building is considered, or the kernel is the user's own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeadersFacts {
    /// The verified (or the user's) headers .deb.
    pub deb: PathBuf,
    /// Its `.config`.
    pub config: String,
    /// The ELF machine of the build helpers it carries itself
    /// (`make bindeb-pkg` puts them in; Debian's come from linux-kbuild).
    pub helpers: Option<u16>,
    /// Its files under the headers' directory that tell what its helpers
    /// can be rebuilt from (`scripts/…`), relative to that directory.
    pub files: BTreeSet<String>,
    /// Its Depends field (of the index, or of the user's .deb).
    pub depends: String,
    /// The kernel's other packages it names, at hand as .debs (common
    /// headers of the target's suites that the host's do not have, or the
    /// user's).
    pub debs: Vec<cross::KernelDeb>,
}

/// One kernel to plan for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelFacts {
    pub kernel: TargetKernel,
    pub headers: Option<HeadersFacts>,
    /// The user's own kernel (`--kernel-deb`), not one of the suites.
    pub local: bool,
}

/// Everything the planner decides from.
#[derive(Debug, Clone)]
pub struct PlanInput<'a> {
    pub strategy: Strategy,
    pub target: &'a Arch,
    pub host: &'a Arch,
    /// Every architecture known, to name an ELF machine.
    pub archs: &'a [Arch],
    /// The host's architecture's packages, when cross building is
    /// considered ([`cross_considered`]).
    pub host_packages: Option<&'a [Package]>,
    pub kernels: &'a [KernelFacts],
}

/// How one kernel is built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum How {
    /// DKMS in the target's architecture (native when it is the host's).
    Emulate,
    /// In the host's architecture root; the headers .deb to unpack.
    Cross(Box<CrossPlan>, PathBuf),
}

/// The plan for one kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildPlan {
    pub kernel: TargetKernel,
    pub how: How,
    /// What is recorded in the package.
    pub used: Used,
    /// Why this strategy.
    pub reason: String,
    /// Whether the reason is worth telling the user (a choice `auto` made).
    pub announce: bool,
    /// When the cross build fails, build under emulation instead (`auto`).
    pub fallback: bool,
}

impl BuildPlan {
    /// The line that tells the user what was chosen and why, if any.
    pub fn note(&self) -> Option<String> {
        self.announce.then(|| match self.how {
            How::Cross(..) => format!("{}: strategy cross ({})", self.kernel.release, self.reason),
            How::Emulate => format!(
                "{}: strategy emulate, because {}",
                self.kernel.release, self.reason
            ),
        })
    }

    /// The same kernel under emulation (the fallback of a failed cross build).
    pub fn emulated(&self, target: &Arch, host: &Arch) -> BuildPlan {
        BuildPlan {
            how: How::Emulate,
            used: emulate_used(target, host),
            reason: "the cross build failed".into(),
            announce: false,
            fallback: false,
            ..self.clone()
        }
    }
}

/// Whether cross building is considered at all: the headers and the
/// host's indexes are needed then.
pub fn cross_considered(strategy: Strategy, target: &Arch, host: &Arch) -> bool {
    target.name != host.name && strategy != Strategy::Emulate
}

/// Whether the headers of a kernel must be read before planning.
pub fn needs_headers(strategy: Strategy, target: &Arch, host: &Arch, local: bool) -> bool {
    local || cross_considered(strategy, target, host)
}

fn emulate_used(target: &Arch, host: &Arch) -> Used {
    // The target's architecture is this host's: nothing is emulated.
    if target.uname == host.uname {
        Used::Native
    } else {
        Used::Emulate
    }
}

/// The plans, one per kernel, in order; `Err` when a kernel cannot be
/// built the way asked (`--strategy cross` impossible, the user's headers
/// carry helpers that cannot run in the emulated root).
pub fn plan(input: &PlanInput) -> Result<Vec<BuildPlan>, BuildError> {
    input.kernels.iter().map(|k| plan_one(input, k)).collect()
}

fn plan_one(input: &PlanInput, k: &KernelFacts) -> Result<BuildPlan, BuildError> {
    let (target, host) = (input.target, input.host);
    let wanted = cross_considered(input.strategy, target, host);
    let emulate = |reason: String, announce: bool| BuildPlan {
        kernel: k.kernel.clone(),
        how: How::Emulate,
        used: emulate_used(target, host),
        reason,
        announce,
        fallback: false,
    };
    let Some(headers) = k.headers.as_ref().filter(|_| wanted || k.local) else {
        // Nothing to decide: the build root's apt fetches the headers.
        let reason = if target.name == host.name {
            "the target's architecture is this host's"
        } else {
            "emulation was asked for"
        };
        return Ok(emulate(reason.into(), false));
    };
    let attempt = if wanted {
        cross_attempt(input, k, headers)
    } else if target.name == host.name {
        Err("the target's architecture is this host's".to_string())
    } else {
        Err("emulation was asked for".to_string())
    };
    match attempt {
        Ok(p) => Ok(BuildPlan {
            kernel: k.kernel.clone(),
            reason: match &p.helpers {
                Some(h) => format!(
                    "{} {} on {}; {h}",
                    p.compiler_package, p.compiler_version, host.name
                ),
                None => format!(
                    "{} {} on {}",
                    p.compiler_package, p.compiler_version, host.name
                ),
            },
            how: How::Cross(Box::new(p), headers.deb.clone()),
            used: Used::Cross,
            announce: true,
            fallback: input.strategy == Strategy::Auto,
        }),
        Err(reason) if input.strategy == Strategy::Cross && wanted => Err(BuildError::NoCross {
            kernel: k.kernel.release.clone(),
            arch: target.name.clone(),
            reason,
        }),
        Err(reason) => {
            if k.local {
                check_helpers_run(input, headers, &reason)?;
            }
            let auto = input.strategy == Strategy::Auto && target.name != host.name;
            let reason = if auto {
                format!("cross cannot build it: {reason}")
            } else {
                reason
            };
            Ok(emulate(reason, auto))
        }
    }
}

/// The cross plan for a kernel, or why there is none.
fn cross_attempt(
    input: &PlanInput,
    k: &KernelFacts,
    headers: &HeadersFacts,
) -> Result<CrossPlan, String> {
    let view = cross::HeadersView {
        package: &k.kernel.headers_package,
        version: &k.kernel.image_version,
        depends: &headers.depends,
        config: &headers.config,
        helpers: headers.helpers,
        files: &headers.files,
        debs: &headers.debs,
    };
    cross::plan(
        input.host_packages.unwrap_or_default(),
        &view,
        input.target,
        input.host,
        input.archs,
    )
}

/// Emulation runs the user's headers' helpers in the target's root: they
/// must be the target's programs.
fn check_helpers_run(
    input: &PlanInput,
    headers: &HeadersFacts,
    cross_failure: &str,
) -> Result<(), BuildError> {
    let Some(m) = headers.helpers else {
        return Ok(());
    };
    if m == elf::arch_machine(input.target) {
        return Ok(());
    }
    let help = if m == elf::arch_machine(input.host) {
        format!("they are this host's programs: --strategy cross (or auto) uses them; here cross failed: {cross_failure}")
    } else {
        "rebuild the headers package on the target or on this host (make bindeb-pkg)".into()
    };
    Err(BuildError::ForeignHelpers {
        deb: headers.deb.clone(),
        found: machine_name(input.archs, m),
        arch: input.target.name.clone(),
        help,
    })
}

/// An architecture's name for an ELF machine.
pub fn machine_name(archs: &[Arch], m: u16) -> String {
    archs
        .iter()
        .find(|a| elf::arch_machine(a) == m)
        .map(|a| a.name.clone())
        .unwrap_or_else(|| format!("ELF machine {m:#x}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn archs() -> Vec<Arch> {
        crate::manifest::Manifests::embedded()
            .architectures()
            .unwrap()
    }

    fn arch(name: &str) -> Arch {
        archs().into_iter().find(|a| a.name == name).unwrap()
    }

    fn pkg(name: &str, version: &str, arch: &str, depends: &str) -> Package {
        Package::for_test(name, version, arch, "trixie", depends)
    }

    const CONFIG: &str =
        "CONFIG_CC_VERSION_TEXT=\"aarch64-linux-gnu-gcc-14 (Debian 14.2.0-19) 14.2.0\"\n";

    fn kernel(n: u32) -> TargetKernel {
        TargetKernel {
            release: format!("6.12.{n}+deb13-arm64"),
            image_package: format!("linux-image-6.12.{n}+deb13-arm64"),
            image_version: format!("6.12.{n}-1"),
            alternatives: vec![],
            headers_package: format!("linux-headers-6.12.{n}+deb13-arm64"),
        }
    }

    /// The host's: the helpers of kernels `ns`, and the toolchain when `tools`.
    fn host_index(ns: &[u32], tools: bool) -> Vec<Package> {
        let mut v: Vec<Package> = ns
            .iter()
            .flat_map(|n| {
                let v = format!("6.12.{n}-1");
                [
                    pkg(
                        &format!("linux-headers-6.12.{n}+deb13-common"),
                        &v,
                        "all",
                        "",
                    ),
                    pkg(&format!("linux-kbuild-6.12.{n}+deb13"), &v, "amd64", ""),
                ]
            })
            .collect();
        if tools {
            v.push(pkg(
                "gcc-14-aarch64-linux-gnu",
                "14.2.0-19cross1",
                "amd64",
                "",
            ));
            v.push(pkg("libc6-dev-arm64-cross", "2.41-11cross1", "all", ""));
        }
        v
    }

    /// Kernel `n`: Debian's (its headers name their common headers and
    /// linux-kbuild), or the user's `make bindeb-pkg` one when `local`.
    fn facts(n: u32, local: bool, helpers: Option<u16>) -> KernelFacts {
        let v = format!("6.12.{n}-1");
        let depends = if local {
            "libc6".to_string()
        } else {
            format!(
                "linux-headers-6.12.{n}+deb13-common (= {v}), linux-kbuild-6.12.{n}+deb13 (= {v})"
            )
        };
        KernelFacts {
            kernel: kernel(n),
            headers: Some(HeadersFacts {
                deb: PathBuf::from(format!("/c/headers-{n}.deb")),
                config: CONFIG.into(),
                helpers,
                files: BTreeSet::new(),
                depends,
                debs: vec![],
            }),
            local,
        }
    }

    fn run(
        strategy: Strategy,
        target: &str,
        host: &Arch,
        host_packages: Option<&[Package]>,
        kernels: &[KernelFacts],
    ) -> Result<Vec<BuildPlan>, BuildError> {
        let archs = archs();
        let target = arch(target);
        plan(&PlanInput {
            strategy,
            target: &target,
            host,
            archs: &archs,
            host_packages,
            kernels,
        })
    }

    #[test]
    fn the_strategy_is_parsed_once_with_the_known_values_named() {
        assert_eq!("cross".parse::<Strategy>(), Ok(Strategy::Cross));
        assert_eq!(Strategy::Emulate.to_string(), "emulate");
        let e = "fast".parse::<Strategy>().unwrap_err().to_string();
        assert_eq!(
            e,
            "unknown strategy 'fast': it is none of auto, cross, emulate"
        );
        #[derive(Debug, serde::Deserialize, serde::Serialize)]
        struct T {
            strategy: Strategy,
        }
        let t: T = toml::from_str("strategy = \"emulate\"").unwrap();
        assert_eq!(t.strategy, Strategy::Emulate);
        assert_eq!(
            toml::to_string(&t).unwrap().trim(),
            "strategy = \"emulate\""
        );
        let e = toml::from_str::<T>("strategy = \"fast\"").unwrap_err();
        assert!(e.to_string().contains("auto, cross, emulate"), "{e}");
        assert_eq!(ModuleKind::of_target("zfs"), ModuleKind::Zfs);
        assert_eq!(ModuleKind::Zfs.source_arg("zfs"), "zfs-dkms");
        assert_eq!(ModuleKind::of_target("hello-dkms"), ModuleKind::Dkms);
    }

    #[test]
    fn cross_is_planned_when_the_archive_has_compiler_and_helpers() {
        let host = host_index(&[117], true);
        let p = run(
            Strategy::Cross,
            "arm64",
            &arch("amd64"),
            Some(&host),
            &[facts(117, false, None)],
        )
        .unwrap();
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].used, Used::Cross);
        assert!(!p[0].fallback, "cross was asked for: no fallback");
        let How::Cross(c, deb) = &p[0].how else {
            panic!("{:?}", p[0].how)
        };
        assert_eq!(deb, &PathBuf::from("/c/headers-117.deb"));
        assert!(c
            .install
            .contains(&"linux-kbuild-6.12.117+deb13=6.12.117-1".to_string()));
        assert_eq!(
            p[0].note().unwrap(),
            "6.12.117+deb13-arm64: strategy cross (gcc-14-aarch64-linux-gnu 14.2.0-19cross1 on amd64)"
        );
    }

    #[test]
    fn cross_asked_but_impossible_is_refused_with_the_reason() {
        let host = host_index(&[117], false);
        let e = run(
            Strategy::Cross,
            "arm64",
            &arch("amd64"),
            Some(&host),
            &[facts(117, false, None)],
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("--strategy cross cannot build for 6.12.117+deb13-arm64"),
            "{e}"
        );
        assert!(e.contains("no gcc-14-aarch64-linux-gnu"), "{e}");
    }

    #[test]
    fn emulate_asked_is_emulate_and_native_on_the_hosts_own_architecture() {
        let k = [KernelFacts {
            headers: None,
            ..facts(117, false, None)
        }];
        let p = run(Strategy::Emulate, "arm64", &arch("amd64"), None, &k).unwrap();
        assert_eq!((&p[0].how, p[0].used), (&How::Emulate, Used::Emulate));
        assert_eq!(p[0].reason, "emulation was asked for");
        assert_eq!(p[0].note(), None);
        // arm64 on an arm64 host: nothing to emulate, whatever was asked.
        for s in [Strategy::Auto, Strategy::Cross, Strategy::Emulate] {
            let p = run(s, "arm64", &arch("arm64"), None, &k).unwrap();
            assert_eq!((&p[0].how, p[0].used), (&How::Emulate, Used::Native), "{s}");
            assert_eq!(p[0].reason, "the target's architecture is this host's");
        }
    }

    #[test]
    fn auto_picks_cross_when_it_can_else_emulate_with_the_reason() {
        let host = host_index(&[117, 118], true);
        let both = [facts(117, false, None), facts(118, false, None)];
        let p = run(Strategy::Auto, "arm64", &arch("amd64"), Some(&host), &both).unwrap();
        assert_eq!(p.len(), 2, "one plan per kernel");
        assert!(p.iter().all(|p| p.used == Used::Cross && p.fallback));
        assert_eq!(p[1].kernel.release, "6.12.118+deb13-arm64");

        // The helpers of 118 are missing for the host: that one is emulated.
        let host = host_index(&[117], true);
        let p = run(Strategy::Auto, "arm64", &arch("amd64"), Some(&host), &both).unwrap();
        assert_eq!(p[0].used, Used::Cross);
        assert_eq!((&p[1].how, p[1].used), (&How::Emulate, Used::Emulate));
        assert!(p[1].reason.starts_with("cross cannot build it: linux-headers-6.12.118+deb13-arm64 needs linux-headers-6.12.118+deb13-common"), "{}", p[1].reason);
        assert!(p[1]
            .note()
            .unwrap()
            .starts_with("6.12.118+deb13-arm64: strategy emulate, because cross cannot build it"));

        // No cross compiler at all.
        let host = host_index(&[117, 118], false);
        let p = run(Strategy::Auto, "arm64", &arch("amd64"), Some(&host), &both).unwrap();
        assert!(p.iter().all(|p| p.how == How::Emulate));
        assert!(
            p[0].reason.contains("no gcc-14-aarch64-linux-gnu"),
            "{}",
            p[0].reason
        );
    }

    #[test]
    fn user_headers_with_helpers_for_the_host_cross_build() {
        let host = host_index(&[], true);
        let amd64 = arch("amd64");
        let k = [facts(117, true, Some(elf::arch_machine(&amd64)))];
        let p = run(Strategy::Auto, "arm64", &amd64, Some(&host), &k).unwrap();
        let How::Cross(c, _) = &p[0].how else {
            panic!("{:?}", p[0].how)
        };
        assert_eq!(
            c.install,
            ["gcc-14-aarch64-linux-gnu", "libc6-dev-arm64-cross"]
        );
        // Asked to emulate, the host's helpers cannot run in the target's root.
        let e = run(Strategy::Emulate, "arm64", &amd64, None, &k)
            .unwrap_err()
            .to_string();
        assert!(e.contains("are amd64 programs, not arm64 ones"), "{e}");
        assert!(e.contains("--strategy cross (or auto) uses them"), "{e}");
    }

    #[test]
    fn user_headers_with_helpers_for_the_target_and_no_sources_are_emulated() {
        let host = host_index(&[], true);
        let k = [facts(117, true, Some(elf::arch_machine(&arch("arm64"))))];
        let p = run(Strategy::Auto, "arm64", &arch("amd64"), Some(&host), &k).unwrap();
        assert_eq!(p[0].how, How::Emulate);
        assert!(p[0].announce, "auto's choice is said");
        assert!(
            p[0].note().unwrap().starts_with("6.12.117+deb13-arm64: strategy emulate, because cross cannot build it: its build helpers are arm64 programs and their sources are not in it (no scripts/basic/fixdep.c"),
            "{}",
            p[0].reason
        );
        let e = run(Strategy::Cross, "arm64", &arch("amd64"), Some(&host), &k).unwrap_err();
        assert!(matches!(e, BuildError::NoCross { .. }), "{e}");
        assert!(
            e.to_string().contains("they cannot be rebuilt for amd64"),
            "{e}"
        );
    }

    /// The headers of `make bindeb-pkg` on (or for) the board: arm64
    /// helpers and their sources.
    fn bindeb(config: &str) -> [KernelFacts; 1] {
        let mut k = facts(117, true, Some(elf::arch_machine(&arch("arm64"))));
        let h = k.headers.as_mut().unwrap();
        h.config = format!("{CONFIG}{config}");
        h.files = [
            "scripts/basic/fixdep",
            "scripts/basic/fixdep.c",
            "scripts/mod/modpost.c",
            "scripts/mod/Makefile",
            "scripts/Makefile.build",
            "scripts/Makefile.host",
        ]
        .into_iter()
        .map(String::from)
        .collect();
        [k]
    }

    #[test]
    fn user_headers_with_helpers_for_the_target_and_their_sources_cross_build() {
        let host = host_index(&[], true);
        for s in [Strategy::Auto, Strategy::Cross] {
            let p = run(s, "arm64", &arch("amd64"), Some(&host), &bindeb("")).unwrap();
            let How::Cross(c, _) = &p[0].how else {
                panic!("{s}: {:?}", p[0].how)
            };
            assert!(c.rebuild.is_some());
            assert_eq!(
                p[0].note().unwrap(),
                "6.12.117+deb13-arm64: strategy cross (gcc-14-aarch64-linux-gnu 14.2.0-19cross1 on amd64; build helpers rebuilt for amd64 from the headers' sources)"
            );
        }
    }

    #[test]
    fn gcc_plugins_or_objtool_send_auto_to_emulation_and_cross_refuses() {
        let host = host_index(&[], true);
        for (config, why) in [
            ("CONFIG_GCC_PLUGINS=y\n", "CONFIG_GCC_PLUGINS=y"),
            ("CONFIG_OBJTOOL=y\n", "CONFIG_OBJTOOL=y"),
        ] {
            let k = bindeb(config);
            let p = run(Strategy::Auto, "arm64", &arch("amd64"), Some(&host), &k).unwrap();
            assert_eq!((&p[0].how, p[0].used), (&How::Emulate, Used::Emulate));
            let note = p[0].note().unwrap();
            assert!(
                note.contains(&format!(
                    "because cross cannot build it: its .config has {why}"
                )),
                "{note}"
            );
            let e = run(Strategy::Cross, "arm64", &arch("amd64"), Some(&host), &k)
                .unwrap_err()
                .to_string();
            assert!(
                e.starts_with(
                    "--strategy cross cannot build for 6.12.117+deb13-arm64: its .config has"
                ),
                "{e}"
            );
            assert!(e.contains(why), "{e}");
        }
    }

    #[test]
    fn user_headers_with_helpers_for_another_machine_are_refused() {
        let host = host_index(&[], true);
        let armhf = arch("armhf");
        let k = [facts(117, true, Some(elf::arch_machine(&armhf)))];
        let e = run(Strategy::Auto, "arm64", &arch("amd64"), Some(&host), &k)
            .unwrap_err()
            .to_string();
        assert!(e.contains("are armhf programs, not arm64 ones"), "{e}");
        assert!(e.contains("rebuild the headers package"), "{e}");
    }
}
