//! DKMS inside the build root: what a source is (a Debian `*-dkms` package
//! or a directory/tarball with a dkms.conf), and the script that builds it
//! for a target kernel with autoinstall off, so that zchroot decides what
//! is built for which kernel. Pure: it makes text the sandbox runs.

use std::path::{Path, PathBuf};

/// Where a module's source comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModuleSource {
    /// A `*-dkms` package of the configured suites, at a version if given.
    Package(String, Option<String>),
    /// A directory holding a dkms.conf (a tarball is unpacked to one first).
    Dir {
        path: PathBuf,
        name: String,
        version: String,
    },
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DkmsError {
    #[error("{}: no dkms.conf in it", .0.display())]
    NoConf(PathBuf),
    #[error("{}: dkms.conf sets no {field}", path.display())]
    Missing { path: PathBuf, field: &'static str },
    #[error("'{0}' is neither a directory with a dkms.conf, a tarball, nor a Debian package name ending in -dkms")]
    Unknown(String),
}

/// Reads `KEY="value"` / `KEY=value` assignments of a dkms.conf (the
/// simple ones that PACKAGE_NAME and PACKAGE_VERSION always are).
pub fn conf_value(text: &str, key: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let l = l.trim();
        let v = l.strip_prefix(key)?.strip_prefix('=')?;
        let v = v.split('#').next().unwrap_or("").trim();
        let v = v
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .or_else(|| v.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
            .unwrap_or(v);
        (!v.is_empty() && !v.contains('$') && !v.contains('`')).then(|| v.to_string())
    })
}

/// A directory source: its module name and version from dkms.conf.
pub fn dir_source(path: &Path) -> Result<ModuleSource, DkmsError> {
    let conf = path.join("dkms.conf");
    let text = std::fs::read_to_string(&conf).map_err(|_| DkmsError::NoConf(path.into()))?;
    let name = conf_value(&text, "PACKAGE_NAME").ok_or(DkmsError::Missing {
        path: conf.clone(),
        field: "PACKAGE_NAME",
    })?;
    let version = conf_value(&text, "PACKAGE_VERSION").ok_or(DkmsError::Missing {
        path: conf,
        field: "PACKAGE_VERSION",
    })?;
    Ok(ModuleSource::Dir {
        path: path.into(),
        name,
        version,
    })
}

/// How the kernel's headers get into the build root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Headers {
    /// A package of the suites (it pulls in the image it belongs to).
    Package(String),
    /// The user's own image and headers .debs, at these paths in the root.
    Local(Vec<String>),
    /// The `cross` strategy, in a root of the host's architecture: install
    /// these packages (helpers, toolchain), unpack these .debs of the
    /// target's headers (not installed: they are not co-installable), make
    /// these `(link, target)` symlinks, rebuild the headers' helpers for
    /// the host with this `scripts/Kbuild` when given, and build with the
    /// cross compiler.
    Cross {
        install: Vec<String>,
        unpack: Vec<String>,
        links: Vec<(String, String)>,
        rebuild: Option<String>,
        triplet: String,
        gcc_major: String,
        kernel_arch: String,
    },
}

/// Where the cross strategy puts its unprefixed tool names.
pub const CROSS_BIN: &str = "/usr/local/lib/zchroot/cross-bin";

/// Paths inside the root that the build binds.
pub const SRC_IN_ROOT: &str = "/zchroot-src";
pub const OUT_IN_ROOT: &str = "/zchroot-out";
pub const LOG_IN_ROOT: &str = "var/log/zchroot-build.log";
pub const KERNEL_IN_ROOT: &str = "/zchroot-kernel";
/// Where the build root keeps its compiler cache.
pub const CCACHE_IN_ROOT: &str = "/var/cache/zchroot-ccache";

const SIGN_CONF: &str = "/etc/dkms/framework.conf.d/zchroot-sign.conf";
/// The signing tool DKMS is given when zchroot signs: none there.
const NO_SIGN_FILE: &str = "/nonexistent/zchroot-signs-on-the-host";

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// Words quoted for the shell, space-separated.
fn list(v: &[String]) -> String {
    v.iter().map(|p| quote(p)).collect::<Vec<_>>().join(" ")
}

/// The cross strategy's setup, once its packages are installed: a fresh
/// copy of the target's headers, the links to Debian's helpers, the
/// cross tools first in PATH, and the headers' helpers rebuilt for this
/// host when planned so.
fn cross_setup(krel: &str, headers: &Headers) -> String {
    let Headers::Cross {
        unpack,
        links,
        rebuild,
        triplet: t,
        gcc_major,
        kernel_arch,
        ..
    } = headers
    else {
        return String::new();
    };
    let mut s = format!(
        "echo \"zchroot: $(date +%T) unpacking the headers\"\n\
         # A fresh copy of the headers: nothing of an earlier build is left in it.\n\
         rm -rf {h}\n{}",
        unpack_script(unpack, ""),
        h = quote(&format!("/usr/src/linux-headers-{krel}")),
    );
    for (link, target) in links {
        s.push_str(&format!(
            "rm -f {l} && ln -s {t} {l}\n",
            l = quote(link),
            t = quote(target)
        ));
    }
    // Before the target's tools take the plain names: the host's gcc
    // links the helpers with the host's ld.
    if let Some(kbuild) = rebuild {
        s.push_str(&rebuild_script(krel, kbuild, t, gcc_major, kernel_arch));
    }
    s.push_str(&format!(
        "# The target's tools under their plain names, first in PATH: configure\n\
         # scripts look for {t}-gcc, and DKMS strips with plain strip.\n\
         rm -rf {CROSS_BIN} && mkdir -p {CROSS_BIN}\n\
         ln -s /usr/bin/{t}-gcc-{gcc_major} {CROSS_BIN}/{t}-gcc\n\
         ln -s /usr/bin/{t}-gcc-{gcc_major} {CROSS_BIN}/{t}-cc\n\
         for tool in strip objcopy objdump nm ar ld; do ln -s /usr/bin/{t}-$tool {CROSS_BIN}/$tool; done\n\
         module_cc={t}-gcc-{gcc_major}\n\
         export PATH={CROSS_BIN}:$PATH ARCH={kernel_arch} CROSS_COMPILE={t}- \\\n\
         \x20   KERNEL_ARCH={kernel_arch} KERNEL_CROSS_COMPILE={t}-\n",
    ));
    s
}

/// What of a headers .deb is unpacked: its headers directories and the
/// `build` link of its modules directory, never the rest of its data (a
/// vendor's package could ship /usr/bin/* into this shared root).
const HEADERS_MEMBERS: &str = "^\\./(usr/src/linux-headers-[^/]+|(usr/)?lib/modules/[^/]+/build)";

/// Unpacks the headers parts of `debs` under `root` (`""`: the build
/// root itself), each headers directory fresh (nothing of an earlier build
/// left in it), keeping the root's directory links: `make bindeb-pkg` ships
/// lib/modules/, and dpkg-deb -x would replace the /lib link with a directory.
fn unpack_script(debs: &[String], root: &str) -> String {
    format!(
        "members=$(mktemp)\n\
         for deb in {}; do\n\
         \x20 dpkg-deb --fsys-tarfile \"$deb\" | tar -t | grep -E '{m}(/|$)' | sed -E 's#({m}).*#\\1#' | sort -u >\"$members\" || true\n\
         \x20 [ -s \"$members\" ] || {{ echo \"zchroot: $deb ships no kernel headers (usr/src/linux-headers-*)\" >&2; exit 1; }}\n\
         \x20 grep '^\\./usr/src/' \"$members\" | while IFS= read -r d; do rm -rf {r}\"${{d#.}}\"; done\n\
         \x20 dpkg-deb --fsys-tarfile \"$deb\" | tar -x --keep-directory-symlink -C {r}/ -T \"$members\"\n\
         done\n\
         rm -f \"$members\"\n",
        list(debs),
        m = HEADERS_MEMBERS,
        r = quote(root),
    )
}

/// The script that builds `source` for kernel release `krel` whose headers
/// are `headers`, for the machine `uname_arch` (`aarch64`), leaving the
/// modules, `zchroot-module` (name, version lines) and `zchroot-compiler`
/// (the kernel's compiler line, the module's) in the output directory.
pub fn build_script(
    source: &ModuleSource,
    krel: &str,
    headers: &Headers,
    uname_arch: &str,
    sign: bool,
) -> String {
    let mut s = String::from(
        "set -e\nexport DEBIAN_FRONTEND=noninteractive\n\
         # The headers pull in the kernel image: no initramfs is needed for a build.\n\
         export INITRD=No\n\
         # zchroot builds for the kernels it is asked for, not for whatever is installed.\n\
         mkdir -p /etc/dkms && touch /etc/dkms/no-autoinstall\n\
         apt-get update -q\n",
    );
    // One apt-get run for all the build installs: each run reads the
    // package lists again (seconds, more under emulation). Debian's headers
    // compile through ccache when asked: a later build (another kernel of
    // the series, a new module version) reuses objects.
    let mut install = vec!["ccache".to_string()];
    match headers {
        Headers::Package(p) => install.push(p.clone()),
        Headers::Local(paths) => install.extend(paths.iter().cloned()),
        Headers::Cross { install: i, .. } => {
            install.extend(["xz-utils".to_string(), "zstd".to_string()]);
            install.extend(i.iter().cloned());
        }
    }
    if let ModuleSource::Package(p, version) = source {
        install.push(match version {
            Some(v) => format!("{p}={v}"),
            None => p.clone(),
        });
    }
    // DKMS sets CC and KERNEL_CC to the compiler the kernel's config
    // names (`x86_64-linux-gnu-gcc-14`), and modules like ZFS pass
    // CC=$(KERNEL_CC) to Kbuild, which overrides the headers' ccache
    // prefix: ccache's masquerade directory first in PATH sends every
    // compiler name (the cross ones too) through ccache.
    s.push_str(&format!(
        "echo \"zchroot: $(date +%T) installing\"\n\
         apt-get install -y -q --no-install-recommends {}\n\
         export DEBIAN_KERNEL_USE_CCACHE=1 CCACHE_DIR={CCACHE_IN_ROOT} PATH=/usr/lib/ccache:$PATH\n",
        list(&install)
    ));
    if let Headers::Cross { .. } = headers {
        s.push_str(&cross_setup(krel, headers));
    }
    match source {
        ModuleSource::Package(p, _) => {
            s.push_str(&format!(
                "conf=$(dpkg -L {p} | grep -m1 '^/usr/src/[^/]*/dkms.conf$')\n\
                 [ -n \"$conf\" ] || {{ echo \"zchroot: {p} ships no /usr/src/*/dkms.conf\"; exit 1; }}\n\
                 NAME=$(bash -c \". \\\"$conf\\\"; echo \\\"\\$PACKAGE_NAME\\\"\")\n\
                 VER=$(bash -c \". \\\"$conf\\\"; echo \\\"\\$PACKAGE_VERSION\\\"\")\n",
                p = quote(p)
            ));
        }
        ModuleSource::Dir { name, version, .. } => {
            s.push_str(&format!(
                "NAME={}\nVER={}\nrm -rf \"/usr/src/$NAME-$VER\"\ncp -a {SRC_IN_ROOT} \"/usr/src/$NAME-$VER\"\n\
                 dkms remove -m \"$NAME\" -v \"$VER\" --all >/dev/null 2>&1 || true\n",
                quote(name),
                quote(version)
            ));
        }
    }
    // Without a key of the user's, DKMS signs with a throwaway key it
    // makes when it can. With one, DKMS does not sign (nor make a key): no
    // signing tool. zchroot signs on the host after the build; the user's
    // key never enters the root.
    s.push_str(&format!(
        "mkdir -p {d} && rm -f {SIGN_CONF}\n",
        d = Path::new(SIGN_CONF).parent().unwrap().display()
    ));
    if sign {
        s.push_str(&format!("echo 'sign_file={NO_SIGN_FILE}' > {SIGN_CONF}\n"));
    }
    s.push_str(&format!(
        "dkms status -m \"$NAME\" -v \"$VER\" | grep -q . || dkms add -m \"$NAME\" -v \"$VER\"\n\
         # Headers of `make bindeb-pkg` (since it uses install-extmod-build)\n\
         # carry include/config/auto.conf but no .config, which DKMS and\n\
         # configure scripts read: in the build root's copy, give them one.\n\
         b=/lib/modules/{k}/build\n\
         # auto.conf writes strings unquoted: quote them as .config does.\n\
         [ -e \"$b/.config\" ] || [ ! -e \"$b/include/config/auto.conf\" ] || awk '/^CONFIG_[A-Za-z0-9_]*=/ {{ i = index($0, \"=\"); v = substr($0, i + 1); if (v !~ /^(y|m|-?[0-9]+|0x[0-9a-fA-F]+|\".*\")$/) {{ print substr($0, 1, i) \"\\\"\" v \"\\\"\"; next }} }} {{ print }}' \"$b/include/config/auto.conf\" > \"$b/.config\"\n\
         echo \"zchroot: $(date +%T) building\"\n\
         dkms build --force -m \"$NAME\" -v \"$VER\" -k {k} -a {a}\n\
         echo \"zchroot: $(date +%T) built\"\n\
         rm -rf {OUT_IN_ROOT}/*\n\
         for ko in /var/lib/dkms/\"$NAME\"/\"$VER\"/{k}/{a}/module/*.ko*; do\n\
         \x20   [ -e \"$ko\" ] && cp \"$ko\" {OUT_IN_ROOT}/\n\
         done\n\
         printf '%s\\n%s\\n' \"$NAME\" \"$VER\" > {OUT_IN_ROOT}/zchroot-module\n\
         config=/lib/modules/{k}/build/.config\n\
         [ -e \"$config\" ] || config=/lib/modules/{k}/build/include/config/auto.conf\n\
         cc_text=$(sed -n 's/^CONFIG_CC_VERSION_TEXT=\"\\(.*\\)\"$/\\1/p' \"$config\")\n\
         module_cc=${{module_cc:-${{cc_text%% *}}}}\n\
         {{ echo \"$cc_text\"; \"$module_cc\" --version 2>/dev/null | head -n1; }} > {OUT_IN_ROOT}/zchroot-compiler\n\
         # The hash the kernel's modules are signed with, for signing on the host.\n\
         sed -n 's/^CONFIG_MODULE_SIG_HASH=\"\\{{0,1\\}}\\([^\"]*\\)\"\\{{0,1\\}}$/\\1/p' \"$config\" > {OUT_IN_ROOT}/zchroot-sig-hash\n",
        k = quote(krel),
        a = quote(uname_arch),
    ));
    if matches!(headers, Headers::Cross { .. }) {
        // DKMS compresses like the installed kernel's own modules; the
        // target's image is not installed in a cross root, so follow its
        // config as the image's modules do, with DKMS's options.
        s.push_str(&format!(
            "for ko in {OUT_IN_ROOT}/*.ko; do\n\
             \x20   [ -e \"$ko\" ] || continue\n\
             \x20   if grep -qx 'CONFIG_MODULE_COMPRESS_XZ=y' \"$config\"; then xz --check=crc32 --lzma2=dict=1MiB -f \"$ko\"\n\
             \x20   elif grep -qx 'CONFIG_MODULE_COMPRESS_ZSTD=y' \"$config\"; then zstd -q --rm -T0 -f \"$ko\"\n\
             \x20   elif grep -qx 'CONFIG_MODULE_COMPRESS_GZIP=y' \"$config\"; then gzip -f \"$ko\"\n\
             \x20   fi\n\
             done\n"
        ));
    }
    // Each phase's start is in the log, for the time a build spends where.
    s.push_str("echo \"zchroot: $(date +%T) done\"\n");
    s
}

/// The lines that rebuild a headers copy's build helpers for the host
/// from their sources, as upstream's `install-extmod-build` does when it
/// cross-builds a headers package: `fixdep` first by hand (Kbuild runs it
/// after every compile), then Kbuild over `scripts/` with the host's
/// compiler and `kbuild` naming the helpers a module's build runs.
fn rebuild_script(
    krel: &str,
    kbuild: &str,
    triplet: &str,
    gcc_major: &str,
    kernel_arch: &str,
) -> String {
    let h = quote(&format!("/usr/src/linux-headers-{krel}"));
    format!(
        "echo \"zchroot: $(date +%T) rebuilding the build helpers\"\n\
         # The headers' build helpers are the board's programs: rebuild them for\n\
         # this host from their sources, in this copy.\n\
         h={h}\n\
         gcc -O2 -I \"$h/scripts/include\" -o \"$h/scripts/basic/fixdep\" \"$h/scripts/basic/fixdep.c\"\n\
         printf 'subdir-y := scripts\\n' > \"$h/Kbuild\"\n\
         cat > \"$h/scripts/Kbuild\" <<'ZCHROOT_KBUILD'\n{kbuild}ZCHROOT_KBUILD\n\
         make -C \"$h\" -j\"$(nproc)\" ARCH={kernel_arch} CROSS_COMPILE={triplet}- \\\n\
         \x20   CC={triplet}-gcc-{gcc_major} HOSTCC=gcc KBUILD_EXTMOD=\"$h\" scripts/\n\
         rm -f \"$h/Kbuild\" \"$h/scripts/Kbuild\"\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dkms_conf_values() {
        let text = "PACKAGE_NAME=\"hello\"\nPACKAGE_VERSION=0.1 # comment\nBUILT_MODULE_NAME[0]=\"hello\"\nMAKE[0]=\"make -C ${kernel_source_dir}\"\n";
        assert_eq!(conf_value(text, "PACKAGE_NAME").as_deref(), Some("hello"));
        assert_eq!(conf_value(text, "PACKAGE_VERSION").as_deref(), Some("0.1"));
        assert_eq!(
            conf_value(text, "MAKE[0]"),
            None,
            "values with $ are not evaluated"
        );
        assert_eq!(conf_value(text, "NOPE"), None);
    }

    #[test]
    fn the_script_turns_autoinstall_off_and_names_the_kernel() {
        let s = build_script(
            &ModuleSource::Dir {
                path: "/x".into(),
                name: "hello".into(),
                version: "0.1".into(),
            },
            "6.12.117+deb13-arm64",
            &Headers::Package("linux-headers-6.12.117+deb13-arm64".into()),
            "aarch64",
            false,
        );
        assert!(s.starts_with("set -e\n"));
        let off = s.find("touch /etc/dkms/no-autoinstall").unwrap();
        let headers = s.find("apt-get install -y -q --no-install-recommends 'ccache' 'linux-headers-6.12.117+deb13-arm64'\n").unwrap();
        assert_eq!(s.matches("apt-get install").count(), 1, "one apt run: {s}");
        assert!(
            off < headers,
            "autoinstall is off before headers trigger DKMS"
        );
        assert!(s.contains(
            "dkms build --force -m \"$NAME\" -v \"$VER\" -k '6.12.117+deb13-arm64' -a 'aarch64'"
        ));
        assert!(!s.contains("uname -r"), "never the host's kernel");
        assert!(
            s.find("export DEBIAN_KERNEL_USE_CCACHE=1").unwrap() < s.find("dkms build").unwrap()
        );
        // Through ccache also when the module passes DKMS's KERNEL_CC
        // (a plain compiler name) as CC, as ZFS does.
        assert!(s.contains(" PATH=/usr/lib/ccache:$PATH\n"), "{s}");
        let p = build_script(
            &ModuleSource::Package("zfs-dkms".into(), None),
            "k",
            &Headers::Package("h".into()),
            "aarch64",
            false,
        );
        assert!(
            p.contains("apt-get install -y -q --no-install-recommends 'ccache' 'h' 'zfs-dkms'\n")
        );
        // zfs's dkms.conf is bash, as DKMS itself is: sh cannot source it.
        assert!(p.contains("NAME=$(bash -c"), "{p}");
        let p = build_script(
            &ModuleSource::Package("zfs-dkms".into(), Some("2.3.2-2".into())),
            "k",
            &Headers::Local(vec![
                "/zchroot-kernel/i.deb".into(),
                "/zchroot-kernel/h.deb".into(),
            ]),
            "aarch64",
            false,
        );
        assert!(p.contains("apt-get install -y -q --no-install-recommends 'ccache' '/zchroot-kernel/i.deb' '/zchroot-kernel/h.deb' 'zfs-dkms=2.3.2-2'\n"));
        assert!(!p.contains("CROSS_COMPILE"), "emulation builds natively");
        assert!(p.contains("rm -f /etc/dkms/framework.conf.d/zchroot-sign.conf\n"));
        assert!(!p.contains("mok_signing_key"), "no key: none named");
    }

    #[test]
    fn headers_with_only_auto_conf_get_a_quoted_config() {
        let s = build_script(
            &ModuleSource::Dir {
                path: "/src".into(),
                name: "hello".into(),
                version: "0.1".into(),
            },
            "6.12.118-zfixture",
            &Headers::Package("linux-headers-6.12.118-zfixture".into()),
            "aarch64",
            false,
        );
        let line = s
            .lines()
            .find(|l| l.starts_with("[ -e \"$b/.config\" ]"))
            .expect("the .config line");
        let dir = tempfile::tempdir().unwrap();
        let b = dir.path();
        std::fs::create_dir_all(b.join("include/config")).unwrap();
        std::fs::write(
            b.join("include/config/auto.conf"),
            "#\n# Automatically generated file; DO NOT EDIT.\nCONFIG_MODULES=y\nCONFIG_X=m\nCONFIG_N=-12\nCONFIG_H=0x1f\nCONFIG_CC_VERSION_TEXT=aarch64-linux-gnu-gcc-14 (Debian 14.2.0-19) 14.2.0\nCONFIG_Q=\"already\"\n",
        )
        .unwrap();
        let run = || {
            let o = std::process::Command::new("sh")
                .arg("-c")
                .arg(format!("b='{}'; {line}", b.display()))
                .output()
                .unwrap();
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        };
        run();
        let config = std::fs::read_to_string(b.join(".config")).unwrap();
        assert_eq!(
            config,
            "#\n# Automatically generated file; DO NOT EDIT.\nCONFIG_MODULES=y\nCONFIG_X=m\nCONFIG_N=-12\nCONFIG_H=0x1f\nCONFIG_CC_VERSION_TEXT=\"aarch64-linux-gnu-gcc-14 (Debian 14.2.0-19) 14.2.0\"\nCONFIG_Q=\"already\"\n"
        );
        // A .config the headers have is left as it is.
        std::fs::write(b.join(".config"), "CONFIG_OWN=y\n").unwrap();
        run();
        assert_eq!(
            std::fs::read_to_string(b.join(".config")).unwrap(),
            "CONFIG_OWN=y\n"
        );
    }

    #[test]
    fn the_cross_script_unpacks_the_headers_and_puts_the_cross_tools_first() {
        let s = build_script(
            &ModuleSource::Package("zfs-dkms".into(), None),
            "6.12.118+deb13-arm64",
            &Headers::Cross {
                install: vec![
                    "linux-kbuild-6.12.118+deb13=6.12.118-1".into(),
                    "gcc-14-aarch64-linux-gnu".into(),
                ],
                unpack: vec!["/zchroot-kernel/headers.deb".into()],
                links: vec![],
                rebuild: None,
                triplet: "aarch64-linux-gnu".into(),
                gcc_major: "14".into(),
                kernel_arch: "arm64".into(),
            },
            "aarch64",
            false,
        );
        let install = s
            .find("'linux-kbuild-6.12.118+deb13=6.12.118-1' 'gcc-14-aarch64-linux-gnu'")
            .unwrap();
        let unpack = s
            .find("for deb in '/zchroot-kernel/headers.deb'; do\n")
            .unwrap();
        let build = s.find("dkms build --force").unwrap();
        assert!(install < unpack && unpack < build, "{s}");
        assert!(s.contains("ln -s /usr/bin/aarch64-linux-gnu-gcc-14 /usr/local/lib/zchroot/cross-bin/aarch64-linux-gnu-gcc\n"));
        assert!(s.contains(
            "ln -s /usr/bin/aarch64-linux-gnu-$tool /usr/local/lib/zchroot/cross-bin/$tool"
        ));
        assert!(s.contains("CROSS_COMPILE=aarch64-linux-gnu-"));
        assert!(s.contains("ARCH=arm64"));
        assert!(s.contains("-k '6.12.118+deb13-arm64' -a 'aarch64'"));
        assert!(s.contains(
            "/var/lib/dkms/\"$NAME\"/\"$VER\"/'6.12.118+deb13-arm64'/'aarch64'/module/*.ko*"
        ));
        assert!(s.contains("xz --check=crc32 --lzma2=dict=1MiB -f"));
        assert!(s.contains("module_cc=aarch64-linux-gnu-gcc-14\n"));
        let signed = build_script(
            &ModuleSource::Package("zfs-dkms".into(), None),
            "k",
            &Headers::Package("h".into()),
            "aarch64",
            true,
        );
        // With the user's key, DKMS has no signing tool (so signs nothing
        // and makes no key), and no key is named in the root: zchroot
        // signs on the host after the build.
        let conf = signed.find("echo 'sign_file=/nonexistent/zchroot-signs-on-the-host' > /etc/dkms/framework.conf.d/zchroot-sign.conf\n").unwrap();
        assert!(conf < signed.find("dkms build").unwrap());
        assert!(!signed.contains("mok_"), "{signed}");
        assert!(!signed.contains("zchroot-sign/"), "{signed}");
        // The kernel's hash, for the host's signing.
        assert!(signed.contains("> /zchroot-out/zchroot-sig-hash\n"));
    }

    #[test]
    fn directories_need_a_dkms_conf() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(
            dir_source(d.path()),
            Err(DkmsError::NoConf(d.path().into()))
        );
        std::fs::write(d.path().join("dkms.conf"), "PACKAGE_NAME=x\n").unwrap();
        assert!(matches!(
            dir_source(d.path()),
            Err(DkmsError::Missing {
                field: "PACKAGE_VERSION",
                ..
            })
        ));
    }

    #[test]
    fn the_cross_script_links_a_vendors_helpers_and_rebuilds_the_boards() {
        let cross = |links, rebuild| Headers::Cross {
            install: vec!["linux-kbuild-6.12.57+deb13=6.12.57-1".into()],
            unpack: vec![
                "/zchroot-kernel/headers.deb".into(),
                "/zchroot-kernel/headers-0.deb".into(),
            ],
            links,
            rebuild,
            triplet: "aarch64-linux-gnu".into(),
            gcc_major: "14".into(),
            kernel_arch: "arm64".into(),
        };
        let source = ModuleSource::Package("zfs-dkms".into(), None);
        let s = build_script(
            &source,
            "6.12.47+rpt-rpi-v8",
            &cross(
                vec![(
                    "/usr/lib/linux-kbuild-6.12.47+rpt".into(),
                    "/usr/lib/linux-kbuild-6.12.57+deb13".into(),
                )],
                None,
            ),
            "aarch64",
            false,
        );
        let fresh = s
            .find("rm -rf '/usr/src/linux-headers-6.12.47+rpt-rpi-v8'\n")
            .unwrap();
        let unpack = s
            .find("for deb in '/zchroot-kernel/headers.deb' '/zchroot-kernel/headers-0.deb'; do")
            .unwrap();
        let link = s.find("rm -f '/usr/lib/linux-kbuild-6.12.47+rpt' && ln -s '/usr/lib/linux-kbuild-6.12.57+deb13' '/usr/lib/linux-kbuild-6.12.47+rpt'\n").unwrap();
        assert!(
            fresh < unpack && unpack < link && link < s.find("dkms build").unwrap(),
            "{s}"
        );
        assert!(!s.contains("KBUILD_EXTMOD"), "nothing rebuilt: {s}");

        let kbuild = "subdir-y := basic\nhostprogs-always-y := mod/modpost\n";
        let s = build_script(
            &source,
            "6.12.38",
            &cross(vec![], Some(kbuild.into())),
            "aarch64",
            false,
        );
        let fixdep = s.find("gcc -O2 -I \"$h/scripts/include\" -o \"$h/scripts/basic/fixdep\" \"$h/scripts/basic/fixdep.c\"\n").unwrap();
        let file = s.find("cat > \"$h/scripts/Kbuild\" <<'ZCHROOT_KBUILD'\nsubdir-y := basic\nhostprogs-always-y := mod/modpost\nZCHROOT_KBUILD\n").unwrap();
        let make = s.find("make -C \"$h\" -j\"$(nproc)\" ARCH=arm64 CROSS_COMPILE=aarch64-linux-gnu- \\\n    CC=aarch64-linux-gnu-gcc-14 HOSTCC=gcc KBUILD_EXTMOD=\"$h\" scripts/\n").unwrap();
        let tools = s.find("ln -s /usr/bin/aarch64-linux-gnu-$tool").unwrap();
        assert!(s.contains("h='/usr/src/linux-headers-6.12.38'\n"), "{s}");
        // The host's gcc and ld build the helpers: before the target's
        // tools take the plain names.
        assert!(fixdep < file && file < make && make < tools, "{s}");
        assert!(
            make < s.find("dkms build").unwrap(),
            "helpers before the module"
        );
        assert!(
            s.contains("printf 'subdir-y := scripts\\n' > \"$h/Kbuild\"\n"),
            "{s}"
        );
        assert!(
            s.contains("rm -f \"$h/Kbuild\" \"$h/scripts/Kbuild\"\n"),
            "{s}"
        );
    }

    /// Builds a .deb of `files` (path, content; content `->T` is a link to T).
    fn deb(dir: &Path, name: &str, files: &[(&str, &str)]) -> String {
        let tree = dir.join(name);
        std::fs::create_dir_all(tree.join("DEBIAN")).unwrap();
        std::fs::write(
            tree.join("DEBIAN/control"),
            format!("Package: {name}\nVersion: 1\nArchitecture: arm64\nMaintainer: t <t@t>\nDescription: t\n"),
        )
        .unwrap();
        for (p, c) in files {
            let f = tree.join(p);
            std::fs::create_dir_all(f.parent().unwrap()).unwrap();
            match c.strip_prefix("->") {
                Some(t) => std::os::unix::fs::symlink(t, &f).unwrap(),
                None => std::fs::write(&f, c).unwrap(),
            }
        }
        let out = dir.join(format!("{name}.deb"));
        let o = std::process::Command::new("dpkg-deb")
            .args(["--root-owner-group", "-b"])
            .arg(&tree)
            .arg(&out)
            .output()
            .unwrap();
        assert!(o.status.success(), "{o:?}");
        out.display().to_string()
    }

    /// Only the headers' files of a headers .deb are unpacked: Debian's
    /// (usr/src/linux-headers-R, usr/lib/modules/R/build), its common
    /// headers, and bindeb-pkg's (lib/modules/R/build, through the root's
    /// /lib link); nothing else a vendor's package ships.
    #[test]
    fn only_the_headers_of_a_headers_deb_are_unpacked() {
        if std::process::Command::new("dpkg-deb")
            .arg("--version")
            .output()
            .is_err()
        {
            eprintln!("SKIP: no dpkg-deb");
            assert!(std::env::var_os("CI").is_none(), "CI needs dpkg-deb");
            return;
        }
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("root");
        std::fs::create_dir_all(root.join("usr/lib")).unwrap();
        std::os::unix::fs::symlink("usr/lib", root.join("lib")).unwrap();
        // Left from an earlier build: removed.
        std::fs::create_dir_all(root.join("usr/src/linux-headers-6.12-common")).unwrap();
        std::fs::write(root.join("usr/src/linux-headers-6.12-common/stale"), "").unwrap();
        let debian = deb(
            t.path(),
            "linux-headers-6.12-arm64",
            &[
                ("usr/src/linux-headers-6.12-arm64/.config", "C"),
                (
                    "usr/lib/modules/6.12-arm64/build",
                    "->/usr/src/linux-headers-6.12-arm64",
                ),
                ("usr/bin/evil", "E"),
                ("usr/lib/modules/6.12-arm64/buildx", "X"),
                ("usr/share/doc/linux-headers-6.12-arm64/copyright", "D"),
            ],
        );
        let common = deb(
            t.path(),
            "linux-headers-6.12-common",
            &[
                ("usr/src/linux-headers-6.12-common/Makefile", "M"),
                ("etc/evil", "E"),
            ],
        );
        let bindeb = deb(
            t.path(),
            "linux-headers-6.12.0-board",
            &[
                ("usr/src/linux-headers-6.12.0-board/.config", "C"),
                (
                    "lib/modules/6.12.0-board/build",
                    "->/usr/src/linux-headers-6.12.0-board",
                ),
                ("lib/firmware/x", "F"),
            ],
        );
        let none = deb(t.path(), "hello", &[("usr/bin/hello", "H")]);
        let script = unpack_script(&[debian, common, bindeb], &root.display().to_string());
        let o = std::process::Command::new("sh")
            .args(["-ec", &script])
            .output()
            .unwrap();
        assert!(o.status.success(), "{o:?}");
        let mut found = Vec::new();
        for e in walkdir(&root) {
            found.push(e.strip_prefix(&root).unwrap().display().to_string());
        }
        found.sort();
        assert_eq!(
            found,
            [
                "lib",
                "usr/lib/modules/6.12-arm64/build",
                "usr/lib/modules/6.12.0-board/build",
                "usr/src/linux-headers-6.12-arm64/.config",
                "usr/src/linux-headers-6.12-common/Makefile",
                "usr/src/linux-headers-6.12.0-board/.config",
            ]
        );
        assert!(root.join("lib").is_symlink());
        let o = std::process::Command::new("sh")
            .args(["-ec", &unpack_script(&[none], &root.display().to_string())])
            .output()
            .unwrap();
        assert!(!o.status.success());
        assert!(String::from_utf8_lossy(&o.stderr).contains("ships no kernel headers"));
    }

    /// Files and links under `dir` (not following links), not directories.
    fn walkdir(dir: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() && !p.is_symlink() {
                out.extend(walkdir(&p));
            } else {
                out.push(p);
            }
        }
        out
    }
}
