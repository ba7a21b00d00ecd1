//! The `cross` strategy's plan: build a target kernel's module in a root of
//! the *host's* architecture with Debian's cross compiler, the target's
//! headers unpacked from their verified .deb (not installed: Debian does not
//! make them co-installable) and the kernel's build helpers (`fixdep`,
//! `modpost`, …) of the host's architecture, so nothing runs under qemu.
//! Pure: package records and the headers' `.config` in, a plan or the
//! reason there is none out.

use crate::archive::index::Package;
use crate::archive::relation;
use crate::manifest::Arch;

/// The compiler that built a kernel, from its `CONFIG_CC_VERSION_TEXT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelCompiler {
    /// The whole text (`aarch64-linux-gnu-gcc-14 (Debian 14.2.0-19) 14.2.0`).
    pub text: String,
    /// The command (`aarch64-linux-gnu-gcc-14`).
    pub command: String,
    /// gcc's major version (`14`), when it is gcc.
    pub gcc_major: Option<String>,
}

/// Reads `CONFIG_CC_VERSION_TEXT` from a kernel `.config`.
pub fn kernel_compiler(config: &str) -> Option<KernelCompiler> {
    let text = config.lines().find_map(|l| {
        l.strip_prefix("CONFIG_CC_VERSION_TEXT=\"")?
            .strip_suffix('"')
            .map(str::to_string)
    })?;
    let command = text.split_whitespace().next()?.to_string();
    // `aarch64-linux-gnu-gcc-14`, `gcc-14`, `gcc`: the major version is
    // the command's suffix, else the first number of the version.
    let tail = command.rsplit('/').next().unwrap_or(&command);
    let gcc_major = if tail.contains("clang") {
        None
    } else if let Some(i) = tail.rfind("gcc-") {
        Some(tail[i + 4..].to_string()).filter(|m| m.chars().all(|c| c.is_ascii_digit()))
    } else if tail.ends_with("gcc") {
        text.split_whitespace()
            .last()
            .and_then(|v| v.split('.').next())
            .filter(|m| !m.is_empty() && m.chars().all(|c| c.is_ascii_digit()))
            .map(str::to_string)
    } else {
        None
    };
    Some(KernelCompiler {
        text,
        command,
        gcc_major,
    })
}

/// The Debian version inside a compiler's `--version` line
/// (`… (Debian 14.2.0-19) 14.2.0` → `14.2.0-19`).
pub fn debian_version(line: &str) -> Option<&str> {
    let start = line.find("(Debian ")? + "(Debian ".len();
    let end = line[start..].find(')')? + start;
    Some(&line[start..end])
}

/// Whether two compiler `--version` lines differ beyond the Debian
/// revision: the upstream versions differ, or one is not Debian's.
pub fn compilers_differ(kernel: &str, module: &str) -> bool {
    let upstream =
        |l: &str| debian_version(l).map(|v| v.split('-').next().unwrap_or(v).to_string());
    match (upstream(kernel), upstream(module)) {
        (Some(a), Some(b)) => a != b,
        _ => kernel.split_whitespace().last() != module.split_whitespace().last(),
    }
}

/// What the build root of the host's architecture needs for one kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrossPlan {
    /// Packages of the host's architecture (or `all`) installed with apt,
    /// as `name=version` or `name`.
    pub install: Vec<String>,
    /// The target's GNU triplet: commands are `TRIPLET-gcc-N` etc.
    pub triplet: String,
    pub gcc_major: String,
    /// The kernel's `ARCH=`.
    pub kernel_arch: String,
    /// The cross compiler package and its version, for the log.
    pub compiler_package: String,
    pub compiler_version: String,
}

fn exact<'a>(packages: &'a [Package], name: &str, version: &str) -> Option<&'a Package> {
    packages
        .iter()
        .find(|p| p.name == name && p.version == version)
}

fn any<'a>(packages: &'a [Package], name: &str) -> Option<&'a Package> {
    packages.iter().find(|p| p.name == name)
}

/// The cross compiler and C library for `target` in the host's indexes:
/// a plan that installs just those.
fn toolchain(
    host: &[Package],
    target: &Arch,
    compiler: &KernelCompiler,
) -> Result<CrossPlan, String> {
    let major = compiler.gcc_major.clone().ok_or_else(|| {
        format!(
            "the kernel was built by '{}', not a gcc zchroot can match",
            compiler.text
        )
    })?;
    let gcc = format!("gcc-{major}-{}", target.triplet);
    let p = any(host, &gcc).ok_or_else(|| {
        format!(
            "the kernel was built by gcc {major} and the suites of the host's architecture have no {gcc}"
        )
    })?;
    let libc = format!("libc6-dev-{}-cross", target.name);
    if any(host, &libc).is_none() {
        return Err(format!("the suites have no {libc}"));
    }
    Ok(CrossPlan {
        install: vec![gcc.clone(), libc],
        triplet: target.triplet.clone(),
        gcc_major: major,
        kernel_arch: target.kernel_arch.clone(),
        compiler_package: gcc,
        compiler_version: p.version.clone(),
    })
}

/// The plan for a kernel of the archive: its headers package `headers`
/// (from the target's indexes) names the common headers and the
/// `linux-kbuild` helpers, which must exist at the same version for the
/// host's architecture.
pub fn plan_archive(
    target_packages: &[Package],
    host_packages: &[Package],
    headers: &str,
    version: &str,
    target: &Arch,
    compiler: &KernelCompiler,
) -> Result<CrossPlan, String> {
    let h = exact(target_packages, headers, version)
        .ok_or_else(|| format!("no {headers} {version} in the target's suites"))?;
    let deps = relation::parse_relations(&h.depends).unwrap_or_default();
    let mut install = Vec::new();
    let mut kbuild = false;
    for alt in &deps {
        let Some(r) = alt.first() else { continue };
        let helper = r.name.starts_with("linux-kbuild-");
        let common = r.name.starts_with("linux-headers-");
        if !helper && !common {
            continue;
        }
        let want = r
            .version
            .as_ref()
            .map(|v| v.version.clone())
            .unwrap_or_else(|| version.to_string());
        if exact(host_packages, &r.name, &want).is_none() {
            return Err(format!(
                "{headers} needs {} {want}, which the suites of the host's architecture do not have",
                r.name
            ));
        }
        kbuild |= helper;
        install.push(format!("{}={want}", r.name));
    }
    if !kbuild {
        return Err(format!(
            "{headers} names no linux-kbuild package: its build helpers cannot be had for the host"
        ));
    }
    let mut plan = toolchain(host_packages, target, compiler)?;
    install.append(&mut plan.install);
    plan.install = install;
    Ok(plan)
}

/// The plan for the user's own headers .deb (`make bindeb-pkg`), whose
/// build helpers are inside it: only possible when they were built for
/// the host (a kernel cross-built on a PC), and then only the toolchain
/// is needed.
pub fn plan_local(
    host_packages: &[Package],
    target: &Arch,
    compiler: &KernelCompiler,
) -> Result<CrossPlan, String> {
    toolchain(host_packages, target, compiler)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkg(name: &str, version: &str, arch: &str, depends: &str) -> Package {
        Package::for_test(name, version, arch, "trixie", depends)
    }

    fn arm64() -> Arch {
        crate::manifest::Manifests::embedded()
            .architectures()
            .unwrap()
            .into_iter()
            .find(|a| a.name == "arm64")
            .unwrap()
    }

    const CONFIG: &str = "CONFIG_CC_VERSION_TEXT=\"aarch64-linux-gnu-gcc-14 (Debian 14.2.0-19) 14.2.0\"\nCONFIG_CC_IS_GCC=y\n";

    #[test]
    fn the_kernel_compiler_is_read_from_its_config() {
        let c = kernel_compiler(CONFIG).unwrap();
        assert_eq!(c.command, "aarch64-linux-gnu-gcc-14");
        assert_eq!(c.gcc_major.as_deref(), Some("14"));
        let c =
            kernel_compiler("CONFIG_CC_VERSION_TEXT=\"gcc (Debian 12.2.0-14) 12.2.0\"\n").unwrap();
        assert_eq!(c.gcc_major.as_deref(), Some("12"));
        let c =
            kernel_compiler("CONFIG_CC_VERSION_TEXT=\"Debian clang version 19.1.7\"\n").unwrap();
        assert_eq!(c.gcc_major, None);
        assert_eq!(kernel_compiler("CONFIG_X=y\n"), None);
    }

    #[test]
    fn compilers_differ_beyond_the_debian_revision_only() {
        let k = "aarch64-linux-gnu-gcc-14 (Debian 14.2.0-19) 14.2.0";
        assert_eq!(debian_version(k), Some("14.2.0-19"));
        assert!(!compilers_differ(k, k));
        assert!(!compilers_differ(
            k,
            "aarch64-linux-gnu-gcc-14 (Debian 14.2.0-19cross1) 14.2.0"
        ));
        assert!(!compilers_differ(
            "gcc-12 (Debian 12.2.0-14+deb12u1) 12.2.0",
            "aarch64-linux-gnu-gcc-12 (Debian 12.2.0-14cross1) 12.2.0"
        ));
        assert!(compilers_differ(
            k,
            "aarch64-linux-gnu-gcc-14 (Debian 14.3.0-1) 14.3.0"
        ));
        assert!(compilers_differ(k, "gcc (GCC) 14.1.0"));
    }

    #[test]
    fn an_archive_kernel_plans_its_helpers_and_toolchain_for_the_host() {
        let v = "6.12.118-1";
        let target = vec![pkg(
            "linux-headers-6.12.118+deb13-arm64",
            v,
            "arm64",
            "linux-headers-6.12.118+deb13-common (= 6.12.118-1), linux-kbuild-6.12.118+deb13 (= 6.12.118-1), gcc-14",
        )];
        let mut host = vec![
            pkg("linux-headers-6.12.118+deb13-common", v, "all", ""),
            pkg("linux-kbuild-6.12.118+deb13", v, "amd64", "libc6"),
            pkg("gcc-14-aarch64-linux-gnu", "14.2.0-19cross1", "amd64", ""),
            pkg("libc6-dev-arm64-cross", "2.41-11cross1", "all", ""),
        ];
        let c = kernel_compiler(CONFIG).unwrap();
        let arch = arm64();
        let plan = |host: &[Package]| {
            plan_archive(
                &target,
                host,
                "linux-headers-6.12.118+deb13-arm64",
                v,
                &arch,
                &c,
            )
        };
        let p = plan(&host).unwrap();
        assert_eq!(
            p.install,
            [
                "linux-headers-6.12.118+deb13-common=6.12.118-1",
                "linux-kbuild-6.12.118+deb13=6.12.118-1",
                "gcc-14-aarch64-linux-gnu",
                "libc6-dev-arm64-cross"
            ]
        );
        assert_eq!(
            (
                p.triplet.as_str(),
                p.gcc_major.as_str(),
                p.kernel_arch.as_str()
            ),
            ("aarch64-linux-gnu", "14", "arm64")
        );
        assert_eq!(p.compiler_version, "14.2.0-19cross1");

        // The helpers at another version: no plan, and the reason says why.
        host[1] = pkg("linux-kbuild-6.12.118+deb13", "6.12.118-2", "amd64", "");
        let e = plan(&host).unwrap_err();
        assert!(e.contains("linux-kbuild-6.12.118+deb13 6.12.118-1"), "{e}");
        // No cross compiler of the kernel's major version.
        host[1] = pkg("linux-kbuild-6.12.118+deb13", v, "amd64", "");
        host[2] = pkg("gcc-13-aarch64-linux-gnu", "13.3.0-1cross1", "amd64", "");
        let e = plan(&host).unwrap_err();
        assert!(e.contains("no gcc-14-aarch64-linux-gnu"), "{e}");
        let clang = kernel_compiler("CONFIG_CC_VERSION_TEXT=\"clang version 19\"\n").unwrap();
        assert!(plan_local(&host, &arm64(), &clang)
            .unwrap_err()
            .contains("clang"));
    }
}
