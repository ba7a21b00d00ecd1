//! The `cross` strategy's plan: build a target kernel's module in a root of
//! the *host's* architecture with Debian's cross compiler, the target's
//! headers unpacked from their verified .deb (not installed: Debian does not
//! make them co-installable) and the kernel's build helpers (`fixdep`,
//! `modpost`, …) of the host's architecture, so nothing runs under qemu.
//! The helpers come from the `linux-kbuild` the headers name (Debian's of
//! the same series when a vendor's is built for the board only), or are
//! the headers' own (rebuilt for the host from their sources when they
//! were built for the board). Pure: package records and facts read from
//! the headers in, a plan or the reason there is none out.

use std::collections::BTreeSet;
use std::path::PathBuf;

use crate::archive::index::Package;
use crate::archive::relation;
use crate::manifest::Arch;

use super::elf;

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

/// Reads `CONFIG_CC_VERSION_TEXT` from a kernel `.config` (quoted) or
/// `include/config/auto.conf` (unquoted).
pub fn kernel_compiler(config: &str) -> Option<KernelCompiler> {
    let text = config.lines().find_map(|l| {
        let v = l.strip_prefix("CONFIG_CC_VERSION_TEXT=")?;
        let v = match v.strip_prefix('"') {
            Some(q) => q.strip_suffix('"')?,
            None => v,
        };
        (!v.is_empty()).then(|| v.to_string())
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
    /// More of the kernel's .debs unpacked next to its headers (common
    /// headers that the host's suites do not have).
    pub unpack: Vec<PathBuf>,
    /// Symlinks made in the build root, `(link, target)`: a vendor's
    /// helper directory pointing at Debian's of the same series.
    pub links: Vec<(String, String)>,
    /// The headers' build helpers are rebuilt for the host from their own
    /// sources, with this `scripts/Kbuild`.
    pub rebuild: Option<String>,
    /// Where the build helpers come from, when it is worth saying.
    pub helpers: Option<String>,
    /// The target's GNU triplet: commands are `TRIPLET-gcc-N` etc.
    pub triplet: String,
    pub gcc_major: String,
    /// The kernel's `ARCH=`.
    pub kernel_arch: String,
    /// The cross compiler package and its version, for the log.
    pub compiler_package: String,
    pub compiler_version: String,
}

/// One of the kernel's own packages, as a .deb at hand (fetched from the
/// target's suites, or the user's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelDeb {
    pub package: String,
    pub version: String,
    pub deb: PathBuf,
}

/// What the planner knows of a kernel's headers package.
#[derive(Debug, Clone, Copy)]
pub struct HeadersView<'a> {
    /// Its name and version.
    pub package: &'a str,
    pub version: &'a str,
    /// Its Depends field.
    pub depends: &'a str,
    /// Its `.config`.
    pub config: &'a str,
    /// The ELF machine of the `scripts/basic/fixdep` it carries, if any.
    pub helpers: Option<u16>,
    /// Its files under the headers' directory (`scripts/basic/fixdep.c`).
    pub files: &'a BTreeSet<String>,
    /// The kernel's other packages at hand as .debs.
    pub debs: &'a [KernelDeb],
}

fn exact<'a>(packages: &'a [Package], name: &str, version: &str) -> Option<&'a Package> {
    packages
        .iter()
        .find(|p| p.name == name && p.version == version)
}

fn any<'a>(packages: &'a [Package], name: &str) -> Option<&'a Package> {
    packages.iter().find(|p| p.name == name)
}

/// The `MAJOR.MINOR` series of a kernel version or release (`1:6.12.47-1+rpt1`,
/// `6.12.57+deb13`, `6.1` → `6.12`, `6.12`, `6.1`).
pub fn series(version: &str) -> Option<String> {
    let v = version.split_once(':').map_or(version, |(_, v)| v);
    let mut parts = v.split(|c: char| !c.is_ascii_digit());
    let (major, minor) = (parts.next()?, parts.next()?);
    let dot = v.as_bytes().get(major.len()) == Some(&b'.');
    (dot && !major.is_empty() && !minor.is_empty()).then(|| format!("{major}.{minor}"))
}

/// Debian's `linux-kbuild` of the host's architecture for a kernel whose
/// own (at `version`) is not built for it: the newest of the same
/// `MAJOR.MINOR` series, by its name and its version.
pub fn series_kbuild<'a>(host: &'a [Package], version: &str) -> Option<&'a Package> {
    let want = series(version)?;
    host.iter()
        .filter(|p| {
            p.name
                .strip_prefix("linux-kbuild-")
                .and_then(series)
                .is_some_and(|s| s == want)
                && series(&p.version).is_some_and(|s| s == want)
        })
        .max_by(|a, b| crate::archive::version::compare(&a.version, &b.version))
}

fn config_on(config: &str, key: &str) -> bool {
    config.lines().any(|l| l.trim() == format!("{key}=y"))
}

/// How the headers' helpers are rebuilt for the host: the `scripts/Kbuild`
/// that names them, and the packages their build needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rebuild {
    pub kbuild: String,
    pub install: Vec<String>,
}

/// Whether a kernel's headers carrying helpers for another machine
/// (`found`) can have them rebuilt for the host (`host`): their sources
/// must be in the package (`make bindeb-pkg` puts them in), and nothing
/// the module build runs may be a program that cannot be rebuilt from
/// them (GCC plugins, objtool). `Err` names what is missing.
pub fn rebuild(
    config: &str,
    files: &BTreeSet<String>,
    found: &str,
    host: &str,
) -> Result<Rebuild, String> {
    if config_on(config, "CONFIG_GCC_PLUGINS") {
        return Err(format!("its .config has CONFIG_GCC_PLUGINS=y: the GCC plugins (scripts/gcc-plugins/*.so) are built for {found}, the cross compiler cannot load them, and they cannot be rebuilt from the headers"));
    }
    if config_on(config, "CONFIG_OBJTOOL") {
        return Err(format!("its .config has CONFIG_OBJTOOL=y: tools/objtool/objtool is built for {found}, and its sources are not in the headers"));
    }
    let mut need = vec![
        "scripts/basic/fixdep.c",
        "scripts/mod/modpost.c",
        "scripts/mod/Makefile",
        "scripts/Makefile.build",
        "scripts/Makefile.host",
    ];
    let mut kbuild = String::from(
        "# Written by zchroot: the build helpers of an external module's build, for this host.\n\
         subdir-y := basic\n\
         hostprogs-always-y := mod/modpost\n\
         mod/modpost-objs := $(addprefix mod/, $(shell sed -n 's/^modpost-objs[[:space:]]*:=//p' $(srctree)/scripts/mod/Makefile))\n",
    );
    let mut install = Vec::new();
    if config_on(config, "CONFIG_GENDWARFKSYMS") {
        need.extend(["scripts/gendwarfksyms/Makefile"]);
        kbuild.push_str("subdir-y += gendwarfksyms\n");
        install.extend(["libdw-dev", "libelf-dev"]);
    } else if config_on(config, "CONFIG_MODVERSIONS") {
        need.extend(["scripts/genksyms/Makefile", "scripts/genksyms/parse.y"]);
        kbuild.push_str("subdir-y += genksyms\n");
        install.extend(["bison", "flex"]);
    }
    if config_on(config, "CONFIG_MODULE_SIG_FORMAT") || config_on(config, "CONFIG_MODULE_SIG") {
        need.push("scripts/sign-file.c");
        kbuild.push_str(
            "hostprogs-always-y += sign-file\n\
             HOSTCFLAGS_sign-file.o = $(shell $(HOSTPKG_CONFIG) --cflags libcrypto 2> /dev/null)\n\
             HOSTLDLIBS_sign-file = $(shell $(HOSTPKG_CONFIG) --libs libcrypto 2> /dev/null || echo -lcrypto)\n",
        );
        install.extend(["libssl-dev", "pkg-config"]);
    }
    if config_on(config, "CONFIG_FTRACE_MCOUNT_USE_RECORDMCOUNT") {
        need.push("scripts/recordmcount.c");
        // Kbuild's own condition: objtool's mcount is not used.
        kbuild.push_str("hostprogs-always-$(BUILD_C_RECORDMCOUNT) += recordmcount\n");
    }
    let missing: Vec<&str> = need.into_iter().filter(|f| !files.contains(*f)).collect();
    if !missing.is_empty() {
        return Err(format!(
            "its build helpers are {found} programs and their sources are not in it (no {}): they cannot be rebuilt for {host}",
            missing.join(", ")
        ));
    }
    Ok(Rebuild {
        kbuild,
        install: install.into_iter().map(str::to_string).collect(),
    })
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
        unpack: vec![],
        links: vec![],
        rebuild: None,
        helpers: None,
        triplet: target.triplet.clone(),
        gcc_major: major,
        kernel_arch: target.kernel_arch.clone(),
        compiler_package: gcc,
        compiler_version: p.version.clone(),
    })
}

/// Where a kernel's build helpers come from, for the build root.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct HelperPlan {
    install: Vec<String>,
    unpack: Vec<PathBuf>,
    links: Vec<(String, String)>,
    rebuild: Option<String>,
    note: Option<String>,
}

/// Where a kernel's build helpers come from for the host: the
/// `linux-kbuild` its headers name (at its version, else Debian's of the
/// same series with the vendor's path linked to it), or the ones the
/// headers carry (this host's, else rebuilt from their sources); with the
/// common headers they name.
fn helpers(
    host_packages: &[Package],
    h: &HeadersView,
    host: &Arch,
    archs: &[Arch],
) -> Result<HelperPlan, String> {
    let mut plan = HelperPlan::default();
    let deps = relation::parse_relations(h.depends).unwrap_or_default();
    let mut kbuild = false;
    for alt in &deps {
        let Some(r) = alt.first() else { continue };
        let helper = r.name.starts_with("linux-kbuild-");
        if !helper && !r.name.starts_with("linux-headers-") {
            continue;
        }
        // The name becomes a path in the build root (a link, a package to
        // install): an archive's relation may carry `/` or `..`.
        if !crate::rootfs::spec::valid_package_name(&r.name) {
            return Err(format!(
                "{} depends on {:?}, which is not a valid package name",
                h.package, r.name
            ));
        }
        let want = r
            .version
            .as_ref()
            .map(|v| v.version.clone())
            .unwrap_or_else(|| h.version.to_string());
        kbuild |= helper;
        let at_hand = h
            .debs
            .iter()
            .find(|d| d.package == r.name && d.version == want);
        if exact(host_packages, &r.name, &want).is_some() {
            plan.install.push(format!("{}={want}", r.name));
        } else if helper {
            // The series its name says (linux-kbuild-6.12.47+rpt), else its
            // version's: a vendor's own versioning (24.8.1) is no series.
            let of = r
                .name
                .strip_prefix("linux-kbuild-")
                .filter(|s| series(s).is_some())
                .unwrap_or(&want);
            let k = series_kbuild(host_packages, of).ok_or_else(|| {
                format!(
                    "{} needs {} {want}, which the suites of {} do not have, nor any linux-kbuild of its series{}",
                    h.package,
                    r.name,
                    host.name,
                    series(of).map(|s| format!(" ({s})")).unwrap_or_default()
                )
            })?;
            // Plugins and objtool are the kernel's own build's: another
            // kbuild's do not fit it (found now, so auto emulates).
            if let Some(key) = ["CONFIG_GCC_PLUGINS", "CONFIG_OBJTOOL"]
                .into_iter()
                .find(|key| config_on(h.config, key))
            {
                return Err(format!(
                    "its .config has {key}=y: its GCC plugins and objtool must be its own {} {want}'s, which is not built for {}; Debian's {} {} cannot stand in for them",
                    r.name, host.name, k.name, k.version
                ));
            }
            plan.install.push(format!("{}={}", k.name, k.version));
            // The same name at another version: apt installs it where the
            // headers look, and a link to itself would remove it.
            if k.name != r.name {
                plan.links.push((
                    format!("/usr/lib/{}", r.name),
                    format!("/usr/lib/{}", k.name),
                ));
            }
            plan.note = Some(format!(
                "helpers from Debian's {} {} for {} (the same series): the kernel's own {} {want} is not built for {}",
                k.name, k.version, host.name, r.name, host.name
            ));
        } else if let Some(d) = at_hand {
            plan.unpack.push(d.deb.clone());
        } else {
            return Err(format!(
                "{} needs {} {want}, which neither the suites of the host's architecture nor the kernel's packages have",
                h.package, r.name
            ));
        }
    }
    if kbuild {
        return Ok(plan);
    }
    match h.helpers {
        Some(m) if m == elf::arch_machine(host) => {
            plan.note = Some(format!(
                "the headers' own build helpers, built for {}",
                host.name
            ));
        }
        Some(m) => {
            let found = super::plan::machine_name(archs, m);
            let r = rebuild(h.config, h.files, &found, &host.name)?;
            plan.install.extend(r.install);
            plan.rebuild = Some(r.kbuild);
            plan.note = Some(format!(
                "build helpers rebuilt for {} from the headers' sources",
                host.name
            ));
        }
        None => {
            return Err(format!(
            "{} names no linux-kbuild package and carries no build helpers (scripts/basic/fixdep)",
            h.package
        ))
        }
    }
    Ok(plan)
}

/// The cross plan for a kernel whose headers are `h`: its helpers for the
/// host (see [`helpers`]) and the cross toolchain, or why there is none.
pub fn plan(
    host_packages: &[Package],
    h: &HeadersView,
    target: &Arch,
    host: &Arch,
    archs: &[Arch],
) -> Result<CrossPlan, String> {
    let compiler = kernel_compiler(h.config)
        .ok_or("its headers' .config names no compiler (CONFIG_CC_VERSION_TEXT)")?;
    // The helpers' reason comes first: it names the kernel's own packages.
    let mut found = helpers(host_packages, h, host, archs)?;
    let mut t = toolchain(host_packages, target, &compiler)?;
    found.install.append(&mut t.install);
    Ok(CrossPlan {
        install: found.install,
        unpack: found.unpack,
        links: found.links,
        rebuild: found.rebuild,
        helpers: found.note,
        ..t
    })
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
        // include/config/auto.conf writes strings unquoted (make bindeb-pkg
        // headers carry only that).
        let c = kernel_compiler(
            "CONFIG_CC_VERSION_TEXT=aarch64-linux-gnu-gcc-14 (Debian 14.2.0-19) 14.2.0\n",
        )
        .unwrap();
        assert_eq!(c.command, "aarch64-linux-gnu-gcc-14");
        assert_eq!(c.gcc_major.as_deref(), Some("14"));
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

    fn arch(name: &str) -> Arch {
        crate::manifest::Manifests::embedded()
            .architectures()
            .unwrap()
            .into_iter()
            .find(|a| a.name == name)
            .unwrap()
    }

    fn archs() -> Vec<Arch> {
        crate::manifest::Manifests::embedded()
            .architectures()
            .unwrap()
    }

    fn view<'a>(
        package: &'a str,
        version: &'a str,
        depends: &'a str,
        config: &'a str,
        helpers: Option<u16>,
        files: &'a BTreeSet<String>,
        debs: &'a [KernelDeb],
    ) -> HeadersView<'a> {
        HeadersView {
            package,
            version,
            depends,
            config,
            helpers,
            files,
            debs,
        }
    }

    fn toolchain_index() -> Vec<Package> {
        vec![
            pkg("gcc-14-aarch64-linux-gnu", "14.2.0-19cross1", "amd64", ""),
            pkg("libc6-dev-arm64-cross", "2.41-11cross1", "all", ""),
        ]
    }

    #[test]
    fn an_archive_kernel_plans_its_helpers_and_toolchain_for_the_host() {
        let v = "6.12.118-1";
        let (name, deps) = (
            "linux-headers-6.12.118+deb13-arm64",
            "linux-headers-6.12.118+deb13-common (= 6.12.118-1), linux-kbuild-6.12.118+deb13 (= 6.12.118-1), gcc-14",
        );
        let mut host = vec![
            pkg("linux-headers-6.12.118+deb13-common", v, "all", ""),
            pkg("linux-kbuild-6.12.118+deb13", v, "amd64", "libc6"),
        ];
        host.extend(toolchain_index());
        let files = BTreeSet::new();
        let (arm64, amd64, archs) = (arm64(), arch("amd64"), archs());
        let plan = |host: &[Package]| {
            plan(
                host,
                &view(name, v, deps, CONFIG, None, &files, &[]),
                &arm64,
                &amd64,
                &archs,
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
        assert_eq!((p.helpers, p.rebuild, p.links), (None, None, vec![]));

        // The helpers at another version of the series: Debian's, linked.
        host[1] = pkg("linux-kbuild-6.12.118+deb13", "6.12.118-2", "amd64", "");
        let p = plan(&host).unwrap();
        assert!(p
            .install
            .contains(&"linux-kbuild-6.12.118+deb13=6.12.118-2".to_string()));
        assert_eq!(p.links, vec![], "no link from a kbuild to itself");
        // No helpers of the series: no plan, and the reason says why.
        host[1] = pkg("linux-kbuild-6.11.10+deb13", "6.11.10-1", "amd64", "");
        let e = plan(&host).unwrap_err();
        assert!(e.contains("linux-kbuild-6.12.118+deb13 6.12.118-1"), "{e}");
        assert!(
            e.contains("nor any linux-kbuild of its series (6.12)"),
            "{e}"
        );
        // No cross compiler of the kernel's major version.
        host[1] = pkg("linux-kbuild-6.12.118+deb13", v, "amd64", "");
        host[2] = pkg("gcc-13-aarch64-linux-gnu", "13.3.0-1cross1", "amd64", "");
        let e = plan(&host).unwrap_err();
        assert!(e.contains("no gcc-14-aarch64-linux-gnu"), "{e}");
        let clang = "CONFIG_CC_VERSION_TEXT=\"clang version 19\"\n";
        let e = super::plan(
            &host,
            &view(name, v, deps, clang, None, &files, &[]),
            &arm64,
            &amd64,
            &archs,
        )
        .unwrap_err();
        assert!(e.contains("clang"), "{e}");
    }

    #[test]
    fn the_series_of_a_version_or_release() {
        assert_eq!(series("1:6.12.47-1+rpt1").as_deref(), Some("6.12"));
        assert_eq!(series("6.12.57+deb13").as_deref(), Some("6.12"));
        assert_eq!(series("6.1").as_deref(), Some("6.1"));
        assert_eq!(series("6.1.0-9").as_deref(), Some("6.1"));
        assert_eq!(series("6"), None);
        assert_eq!(series("rpi"), None);
    }

    /// Raspberry Pi OS's split kernel: its linux-kbuild is built for arm64
    /// only; the host's Debian suites have linux-kbuild of 6.12 and 6.1.
    #[test]
    fn a_vendor_kernel_uses_debians_helpers_of_the_same_series() {
        let (name, v) = ("linux-headers-6.12.47+rpt-rpi-v8", "1:6.12.47-1+rpt1");
        let deps = "linux-headers-6.12.47+rpt-common-rpi (= 1:6.12.47-1+rpt1), linux-kbuild-6.12.47+rpt (>= 1:6.12.47-1+rpt1)";
        let mut host = vec![
            pkg("linux-kbuild-6.12.48+deb13", "6.12.48-1", "amd64", ""),
            pkg("linux-kbuild-6.12.57+deb13", "6.12.57-1", "amd64", ""),
            pkg("linux-kbuild-6.12.9+deb13", "6.12.9-1", "amd64", ""),
            pkg("linux-kbuild-6.1", "6.1.153-1", "amd64", ""),
        ];
        host.extend(toolchain_index());
        let common = [KernelDeb {
            package: "linux-headers-6.12.47+rpt-common-rpi".into(),
            version: v.into(),
            deb: "/c/common.deb".into(),
        }];
        let files = BTreeSet::new();
        let (arm64, amd64, archs) = (arm64(), arch("amd64"), archs());
        let h = view(name, v, deps, CONFIG, None, &files, &common);
        let p = plan(&host, &h, &arm64, &amd64, &archs).unwrap();
        assert_eq!(
            p.install,
            [
                "linux-kbuild-6.12.57+deb13=6.12.57-1",
                "gcc-14-aarch64-linux-gnu",
                "libc6-dev-arm64-cross"
            ]
        );
        assert_eq!(p.unpack, [PathBuf::from("/c/common.deb")]);
        assert_eq!(
            p.links,
            [(
                "/usr/lib/linux-kbuild-6.12.47+rpt".to_string(),
                "/usr/lib/linux-kbuild-6.12.57+deb13".to_string()
            )]
        );
        assert_eq!(
            p.helpers.as_deref(),
            Some("helpers from Debian's linux-kbuild-6.12.57+deb13 6.12.57-1 for amd64 (the same series): the kernel's own linux-kbuild-6.12.47+rpt 1:6.12.47-1+rpt1 is not built for amd64")
        );
        // Without its common headers at hand, nothing to unpack: no plan.
        let h = view(name, v, deps, CONFIG, None, &files, &[]);
        let e = plan(&host, &h, &arm64, &amd64, &archs).unwrap_err();
        assert!(
            e.starts_with("linux-headers-6.12.47+rpt-rpi-v8 needs linux-headers-6.12.47+rpt-common-rpi 1:6.12.47-1+rpt1, which neither"),
            "{e}"
        );
        // Only other series in the host's suites: no plan, the reason names it.
        host.retain(|p| !p.name.starts_with("linux-kbuild-6.12"));
        let h = view(name, v, deps, CONFIG, None, &files, &common);
        let e = plan(&host, &h, &arm64, &amd64, &archs).unwrap_err();
        assert_eq!(e, "linux-headers-6.12.47+rpt-rpi-v8 needs linux-kbuild-6.12.47+rpt 1:6.12.47-1+rpt1, which the suites of amd64 do not have, nor any linux-kbuild of its series (6.12)");
    }

    /// GCC plugins or objtool on: Debian's kbuild of the series cannot
    /// stand in, and the plan says so (auto then emulates).
    #[test]
    fn plugins_or_objtool_refuse_debians_kbuild_of_the_series() {
        let (name, v) = ("linux-headers-6.12.47+rpt-rpi-v8", "1:6.12.47-1+rpt1");
        let deps = "linux-kbuild-6.12.47+rpt (>= 1:6.12.47-1+rpt1)";
        let mut host = vec![pkg("linux-kbuild-6.12.57+deb13", "6.12.57-1", "amd64", "")];
        host.extend(toolchain_index());
        let files = BTreeSet::new();
        let (arm64, amd64, archs) = (arm64(), arch("amd64"), archs());
        for key in ["CONFIG_GCC_PLUGINS", "CONFIG_OBJTOOL"] {
            let config = format!("{CONFIG}{key}=y\n");
            let h = view(name, v, deps, &config, None, &files, &[]);
            let e = plan(&host, &h, &arm64, &amd64, &archs).unwrap_err();
            assert!(e.contains(&format!("its .config has {key}=y")), "{e}");
            assert!(
                e.contains("Debian's linux-kbuild-6.12.57+deb13 6.12.57-1 cannot stand in"),
                "{e}"
            );
        }
        let h = view(name, v, deps, CONFIG, None, &files, &[]);
        plan(&host, &h, &arm64, &amd64, &archs).unwrap();
    }

    /// A vendor's own versioning (24.8.1) is no kernel series: the series
    /// comes from the kbuild package's name.
    #[test]
    fn the_kbuild_series_comes_from_its_name_first() {
        let (name, v) = ("linux-headers-6.12.47-current-rockchip64", "24.8.1");
        let deps = "linux-kbuild-6.12.47+rpt";
        let mut host = vec![
            pkg("linux-kbuild-6.12.57+deb13", "6.12.57-1", "amd64", ""),
            pkg("linux-kbuild-24.8", "24.8.1-1", "amd64", ""),
        ];
        host.extend(toolchain_index());
        let files = BTreeSet::new();
        let (arm64, amd64, archs) = (arm64(), arch("amd64"), archs());
        let h = view(name, v, deps, CONFIG, None, &files, &[]);
        let p = plan(&host, &h, &arm64, &amd64, &archs).unwrap();
        assert_eq!(p.install[0], "linux-kbuild-6.12.57+deb13=6.12.57-1");
    }

    /// A relation's name becomes a link's path in the build root.
    #[test]
    fn a_kbuild_name_that_is_no_package_name_is_refused() {
        let (name, v) = ("linux-headers-6.12.47+rpt-rpi-v8", "1:6.12.47-1+rpt1");
        let deps = "linux-kbuild-x/../../../etc (>= 1)";
        let mut host = vec![pkg("linux-kbuild-6.12.57+deb13", "6.12.57-1", "amd64", "")];
        host.extend(toolchain_index());
        let files = BTreeSet::new();
        let (arm64, amd64, archs) = (arm64(), arch("amd64"), archs());
        let h = view(name, v, deps, CONFIG, None, &files, &[]);
        let e = plan(&host, &h, &arm64, &amd64, &archs).unwrap_err();
        assert!(e.contains("not a valid package name"), "{e}");
    }

    fn bindeb_files(sources: bool) -> BTreeSet<String> {
        let mut f: BTreeSet<String> = ["scripts/basic/fixdep", "scripts/mod/modpost"]
            .into_iter()
            .map(String::from)
            .collect();
        if sources {
            for s in [
                "scripts/basic/fixdep.c",
                "scripts/mod/modpost.c",
                "scripts/mod/Makefile",
                "scripts/Makefile.build",
                "scripts/Makefile.host",
                "scripts/genksyms/Makefile",
                "scripts/genksyms/parse.y",
                "scripts/sign-file.c",
            ] {
                f.insert(s.into());
            }
        }
        f
    }

    /// `make bindeb-pkg` on the board: its headers carry arm64 helpers and
    /// their sources.
    #[test]
    fn headers_with_target_helpers_and_their_sources_are_rebuilt_for_the_host() {
        let (arm64, amd64, archs) = (arm64(), arch("amd64"), archs());
        let host = toolchain_index();
        let config = format!("{CONFIG}CONFIG_MODVERSIONS=y\nCONFIG_MODULE_SIG=y\n");
        let files = bindeb_files(true);
        let m = elf::arch_machine(&arm64);
        let h = view(
            "linux-headers",
            "6.12.38-1",
            "libc6, libssl3t64",
            &config,
            Some(m),
            &files,
            &[],
        );
        let p = plan(&host, &h, &arm64, &amd64, &archs).unwrap();
        assert_eq!(
            p.helpers.as_deref(),
            Some("build helpers rebuilt for amd64 from the headers' sources")
        );
        let kbuild = p.rebuild.unwrap();
        assert!(kbuild.contains("subdir-y := basic\nhostprogs-always-y := mod/modpost\n"));
        assert!(kbuild.contains("subdir-y += genksyms\n"), "{kbuild}");
        assert!(
            kbuild.contains("hostprogs-always-y += sign-file\n"),
            "{kbuild}"
        );
        for needed in ["bison", "flex", "libssl-dev", "gcc-14-aarch64-linux-gnu"] {
            assert!(
                p.install.iter().any(|i| i == needed),
                "{needed}: {:?}",
                p.install
            );
        }
        // The host's own helpers: used as they are.
        let h = HeadersView {
            helpers: Some(elf::arch_machine(&amd64)),
            ..h
        };
        let p = plan(&host, &h, &arm64, &amd64, &archs).unwrap();
        assert_eq!(p.rebuild, None);
        assert_eq!(
            p.install,
            ["gcc-14-aarch64-linux-gnu", "libc6-dev-arm64-cross"]
        );
        // No helpers and no linux-kbuild: nothing to build with.
        let h = HeadersView { helpers: None, ..h };
        let e = plan(&host, &h, &arm64, &amd64, &archs).unwrap_err();
        assert!(
            e.contains("names no linux-kbuild package and carries no build helpers"),
            "{e}"
        );
    }

    #[test]
    fn what_cannot_be_rebuilt_is_named() {
        let files = bindeb_files(true);
        let ok = rebuild(CONFIG, &files, "arm64", "amd64").unwrap();
        assert_eq!(ok.install, Vec::<String>::new(), "no genksyms, no signing");
        let e = rebuild(
            &format!("{CONFIG}CONFIG_GCC_PLUGINS=y\n"),
            &files,
            "arm64",
            "amd64",
        )
        .unwrap_err();
        assert!(e.contains("CONFIG_GCC_PLUGINS=y"), "{e}");
        assert!(e.contains("built for arm64"), "{e}");
        let e = rebuild(
            &format!("{CONFIG}CONFIG_OBJTOOL=y\n"),
            &files,
            "arm64",
            "amd64",
        )
        .unwrap_err();
        assert!(
            e.contains("CONFIG_OBJTOOL=y: tools/objtool/objtool is built for arm64"),
            "{e}"
        );
        // `# CONFIG_OBJTOOL is not set` is off.
        rebuild(
            &format!("{CONFIG}# CONFIG_OBJTOOL is not set\n"),
            &files,
            "arm64",
            "amd64",
        )
        .unwrap();
        let e = rebuild(CONFIG, &bindeb_files(false), "arm64", "amd64").unwrap_err();
        assert!(
            e.starts_with("its build helpers are arm64 programs and their sources are not in it (no scripts/basic/fixdep.c, scripts/mod/modpost.c,"),
            "{e}"
        );
        assert!(e.ends_with("they cannot be rebuilt for amd64"), "{e}");
        // Signing needs sign-file's source.
        let mut files = bindeb_files(true);
        files.remove("scripts/sign-file.c");
        let e = rebuild(
            &format!("{CONFIG}CONFIG_MODULE_SIG=y\n"),
            &files,
            "arm64",
            "amd64",
        )
        .unwrap_err();
        assert!(e.contains("(no scripts/sign-file.c)"), "{e}");
    }
}
