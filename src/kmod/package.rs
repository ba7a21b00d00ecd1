//! The binary module package that DKMS's removed `mkbmdeb` used to make,
//! done right: named after the kernel release, depending on the package
//! that really ships that kernel with its exact version, with depmod in its
//! maintainer scripts; reproducible. And the metapackage `update` writes
//! beside it, which holds the board's kernel back until its module is
//! there. One function names module files for both.

use crate::deb::write::DebBuilder;
use crate::deb::DebError;
use crate::kmod::kernel::{KernelEntry, Pin, TargetKernel};

/// The module package's `triggers` control file: initramfs-tools's
/// `update-initramfs` trigger (what Debian's firmware and module packages
/// use), so that one `apt-get install` rebuilds the initramfs once, after
/// every package is configured, instead of once per maintainer script.
/// `-noawait`: nothing waits for the initramfs to be configured.
pub const TRIGGERS: &str = "activate-noawait update-initramfs\n";

/// A module package to write.
#[derive(Debug, Clone)]
pub struct ModuleDeb {
    /// The module's name as DKMS knows it (`zfs`, `hello`).
    pub module: String,
    pub version: String,
    pub kernel: TargetKernel,
    /// Debian architecture.
    pub arch: String,
    /// Where modules live on the target (`usr/lib/modules`).
    pub modules_dir: String,
    /// (file name, contents) of the built modules.
    pub files: Vec<(String, Vec<u8>)>,
    /// `SOURCE_DATE_EPOCH` for every timestamp.
    pub mtime: u64,
    /// More control fields (`X-Zchroot-Compiler`, …).
    pub fields: Vec<(String, String)>,
}

/// The Maintainer of the packages zchroot writes: `DEBFULLNAME <DEBEMAIL>`
/// when set (Debian's convention), else zchroot with a reserved address.
pub fn maintainer() -> String {
    let email = std::env::var("DEBEMAIL").ok().filter(|e| e.contains('@'));
    let name = std::env::var("DEBFULLNAME").ok().filter(|n| !n.is_empty());
    match (name, email) {
        (Some(n), Some(e)) => format!("{n} <{e}>"),
        (None, Some(e)) => format!("zchroot <{e}>"),
        _ => "zchroot <zchroot@example.org>".into(),
    }
}

/// The timestamp of every file when SOURCE_DATE_EPOCH is not set: fixed,
/// so that packaging is reproducible, and not "ancient" to lintian.
pub const DEFAULT_MTIME: u64 = 1_735_689_600; // 2025-01-01

/// `SOURCE_DATE_EPOCH`, or [`DEFAULT_MTIME`].
pub fn source_date_epoch() -> u64 {
    std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_MTIME)
}

/// Debian's documentation files every package carries: a gzipped
/// changelog (reproducible: no name, no time in the gzip header) and a
/// copyright file naming the modules' own license.
pub fn add_doc_files(
    b: &mut DebBuilder,
    package: &str,
    version: &str,
    what: &str,
    license: &str,
    mtime: u64,
) {
    let date = crate::archive::release::format_date(
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(mtime),
    )
    .replace("UTC", "+0000");
    let changelog = format!(
        "{package} ({version}) unstable; urgency=medium\n\n  * {what}\n\n -- {}  {date}\n",
        maintainer()
    );
    let mut gz = Vec::new();
    {
        use std::io::Write;
        let mut e = flate2::GzBuilder::new()
            .mtime(0)
            .write(&mut gz, flate2::Compression::best());
        e.write_all(changelog.as_bytes())
            .expect("writing to memory");
        e.finish().expect("writing to memory");
    }
    b.add_file(&format!("usr/share/doc/{package}/changelog.gz"), 0o644, gz);
    let copyright = format!(
        "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\
         Comment: {what} The files are the work of the module's authors,\n \
         under the license the modules declare (MODULE_LICENSE).\n\n\
         Files: *\nCopyright: the authors of the module\nLicense: {license}\n"
    );
    b.add_file(
        &format!("usr/share/doc/{package}/copyright"),
        0o644,
        copyright.into_bytes(),
    );
}

/// A Debian package name made from a DKMS module name.
pub fn package_base(module: &str) -> String {
    module
        .to_ascii_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "+-.".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// The file name of the module package of `module` `version` for kernel
/// `krel`: the one naming, used when writing it and by `update` to decide
/// whether a kernel's module is built already.
pub fn module_file_name(module: &str, krel: &str, version: &str, arch: &str) -> String {
    let v = version.split_once(':').map(|(_, r)| r).unwrap_or(version);
    format!("{}_{v}_{arch}.deb", module_package(module, krel))
}

/// The module package's name for a kernel release.
pub fn module_package(module: &str, krel: &str) -> String {
    format!("{}-modules-{krel}", package_base(module))
}

impl ModuleDeb {
    pub fn package(&self) -> String {
        module_package(&self.module, &self.kernel.release)
    }

    pub fn file_name(&self) -> String {
        module_file_name(
            &self.module,
            &self.kernel.release,
            &self.version,
            &self.arch,
        )
    }

    /// The maintainer scripts: depmod only. The initramfs is rebuilt by
    /// initramfs-tools through dpkg's trigger ([`TRIGGERS`]), once per
    /// dpkg run however many packages activate it, not by each script.
    fn scripts(&self) -> (String, String) {
        let k = &self.kernel.release;
        let postinst = format!(
            "#!/bin/sh\nset -e\nif [ \"$1\" = configure ]; then\n    depmod -a {k} || true\nfi\n"
        );
        let postrm = format!(
            "#!/bin/sh\nset -e\nif [ \"$1\" = remove ] || [ \"$1\" = purge ]; then\n    if [ -e /{dir}/{k}/modules.dep ]; then depmod -a {k} || true; fi\nfi\n",
            dir = self.modules_dir
        );
        (postinst, postrm)
    }

    /// The package's bytes.
    pub fn build(&self) -> Result<Vec<u8>, DebError> {
        let mut control = vec![
            ("Package".to_string(), self.package()),
            ("Source".to_string(), format!("{}-dkms", package_base(&self.module))),
            ("Version".to_string(), self.version.clone()),
            ("Architecture".to_string(), self.arch.clone()),
            ("Maintainer".to_string(), maintainer()),
            ("Depends".to_string(), self.kernel.depends()),
            (
                "Provides".to_string(),
                format!("{}-modules (= {})", package_base(&self.module), self.version),
            ),
            ("Section".to_string(), "kernel".to_string()),
            ("Priority".to_string(), "optional".to_string()),
            (
                "Description".to_string(),
                format!(
                    "{} kernel modules for Linux {}\n This package holds the {} modules built by zchroot (DKMS) for\n the kernel {} of package {} {}.",
                    self.module,
                    self.kernel.release,
                    self.module,
                    self.kernel.release,
                    self.kernel.image_package,
                    self.kernel.image_version
                ),
            ),
        ];
        control.extend(self.fields.iter().cloned());
        let mut b = DebBuilder::new(control).mtime(self.mtime);
        let mut files = self.files.clone();
        files.sort();
        for (name, contents) in files {
            b.add_file(
                &format!(
                    "{}/{}/updates/dkms/{name}",
                    self.modules_dir, self.kernel.release
                ),
                0o644,
                contents,
            );
        }
        let what = format!(
            "Built by zchroot for {} ({} {}).",
            self.kernel.release, self.kernel.image_package, self.kernel.image_version
        );
        let license = self
            .files
            .iter()
            .filter_map(|(_, bytes)| crate::kmod::elf::ko_info(bytes).and_then(|i| i.license))
            .next()
            .unwrap_or_else(|| "unknown (the modules declare none)".into());
        add_doc_files(
            &mut b,
            &self.package(),
            &self.version,
            &what,
            &license,
            self.mtime,
        );
        let (postinst, postrm) = self.scripts();
        b.add_control_file("postinst", 0o755, postinst.into_bytes());
        b.add_control_file("postrm", 0o755, postrm.into_bytes());
        b.add_control_file("triggers", 0o644, TRIGGERS.as_bytes().to_vec());
        let mut out = Vec::new();
        b.write_to(&mut out)?;
        Ok(out)
    }
}

/// The metapackage `MODULE-modules-FLAVOUR`: depends on the module package
/// of the newest kernel built, and breaks newer versions of the package
/// that brings the board its kernels (`held`: the flavour's metapackage
/// where there is one, else the image package itself), so that the
/// board's `apt upgrade` keeps a kernel back until its module is published.
pub struct MetaPackage {
    pub module: String,
    pub flavour: String,
    pub arch: String,
    pub module_version: String,
    pub newest: KernelEntry,
    /// The package whose newer versions wait (`linux-image-arm64`), at
    /// its own version for the newest kernel built (the metapackage's
    /// version, not the image's).
    pub held: Pin,
}

/// The metapackage's name for a module and flavour.
pub fn meta_name(module: &str, flavour: &str) -> String {
    format!("{}-modules-{flavour}", package_base(module))
}

impl MetaPackage {
    pub fn name(&self) -> String {
        meta_name(&self.module, &self.flavour)
    }

    /// Rises with the kernel, then with the module.
    pub fn version(&self) -> String {
        let m: String = self
            .module_version
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "+.~".contains(c) {
                    c
                } else {
                    '.'
                }
            })
            .collect();
        let k = &self.newest.version;
        if k.contains('-') {
            format!("{k}+m{m}")
        } else {
            format!("{k}-0+m{m}")
        }
    }

    pub fn file_name(&self) -> String {
        let v = self.version();
        let v = v.split_once(':').map(|(_, r)| r.to_string()).unwrap_or(v);
        format!("{}_{v}_{}.deb", self.name(), self.arch)
    }

    pub fn control(&self) -> Vec<(String, String)> {
        vec![
            ("Package".into(), self.name()),
            ("Version".into(), self.version()),
            ("Architecture".into(), self.arch.clone()),
            ("Maintainer".into(), maintainer()),
            (
                "Depends".into(),
                format!(
                    "{} (= {})",
                    module_package(&self.module, &self.newest.release),
                    self.module_version
                ),
            ),
            (
                "Breaks".into(),
                format!("{} (>> {})", self.held.package, self.held.version),
            ),
            ("Section".into(), "kernel".into()),
            ("Priority".into(), "optional".into()),
            (
                "Description".into(),
                format!(
                    "{} modules for the newest {} kernel built by zchroot\n This package depends on the {} modules of kernel {} and holds\n newer versions of {} back until their modules are published.",
                    self.module, self.flavour, self.module, self.newest.release, self.held.package
                ),
            ),
        ]
    }

    pub fn build(&self, mtime: u64) -> Result<Vec<u8>, crate::deb::DebError> {
        let mut b = DebBuilder::new(self.control()).mtime(mtime);
        let what = format!(
            "Depends on the {} modules for {}; holds {} at {}.",
            self.module, self.newest.release, self.held.package, self.held.version
        );
        add_doc_files(
            &mut b,
            &self.name(),
            &self.version(),
            &what,
            "public-domain",
            mtime,
        );
        let mut out = Vec::new();
        b.write_to(&mut out)?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kernel() -> TargetKernel {
        TargetKernel {
            release: "4.20.3".into(),
            image_package: "linux-image".into(),
            image_version: "4.20.3-2".into(),
            alternatives: vec![],
            headers_package: "linux-headers".into(),
        }
    }

    fn deb() -> ModuleDeb {
        ModuleDeb {
            module: "zfs".into(),
            version: "0.8.0".into(),
            kernel: kernel(),
            arch: "arm64".into(),
            modules_dir: "usr/lib/modules".into(),
            files: vec![
                ("zfs.ko".into(), b"\x7fELF...".to_vec()),
                ("spl.ko".into(), b"x".to_vec()),
            ],
            mtime: 1_700_000_000,
            fields: vec![("X-Zchroot-Strategy".into(), "cross".into())],
        }
    }

    #[test]
    fn the_users_kernel_package_is_named_in_depends() {
        let d = deb();
        assert_eq!(d.file_name(), "zfs-modules-4.20.3_0.8.0_arm64.deb");
        let bytes = d.build().unwrap();
        assert_eq!(
            bytes,
            d.build().unwrap(),
            "byte-identical on a second build"
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(d.file_name());
        std::fs::write(&path, &bytes).unwrap();
        let control = crate::deb::read::read_control(&path).unwrap();
        assert!(
            control.contains("Package: zfs-modules-4.20.3\n"),
            "{control}"
        );
        assert!(
            control.contains("Depends: linux-image (= 4.20.3-2)\n"),
            "{control}"
        );
        assert!(
            control.contains("Provides: zfs-modules (= 0.8.0)\n"),
            "{control}"
        );
        assert!(
            control.contains("\nX-Zchroot-Strategy: cross\n"),
            "{control}"
        );
        let files = crate::deb::read::control_files(&path).unwrap();
        let postinst = String::from_utf8(files.get("postinst").unwrap().contents.clone()).unwrap();
        assert!(postinst.contains("depmod -a 4.20.3"), "{postinst}");
        let postrm = String::from_utf8(files.get("postrm").unwrap().contents.clone()).unwrap();
        assert!(postrm.contains("depmod -a 4.20.3"), "{postrm}");
        // The initramfs is rebuilt once per dpkg run by the trigger, never
        // by each script.
        let triggers = files.get("triggers").expect("a triggers control file");
        assert_eq!(triggers.contents, b"activate-noawait update-initramfs\n");
        for script in [&postinst, &postrm] {
            assert!(!script.contains("update-initramfs"), "{script}");
        }
        assert!(crate::deb::read::read_data_file(
            &path,
            "usr/lib/modules/4.20.3/updates/dkms/zfs.ko"
        )
        .unwrap()
        .is_some());
    }

    #[test]
    fn the_metapackage_depends_on_the_newest_and_holds_newer_kernels() {
        let m = MetaPackage {
            module: "hello".into(),
            flavour: "arm64".into(),
            arch: "arm64".into(),
            module_version: "0.1".into(),
            newest: k("6.12.118+deb13-arm64", "6.12.118-1"),
            held: Pin {
                package: "linux-image-arm64".into(),
                version: "6.12.118-1".into(),
            },
        };
        assert_eq!(m.name(), "hello-modules-arm64");
        assert_eq!(m.version(), "6.12.118-1+m0.1");
        assert_eq!(
            m.file_name(),
            "hello-modules-arm64_6.12.118-1+m0.1_arm64.deb"
        );
        let c = m.control();
        let get = |f: &str| c.iter().find(|(k, _)| k == f).unwrap().1.clone();
        assert_eq!(get("Depends"), "hello-modules-6.12.118+deb13-arm64 (= 0.1)");
        assert_eq!(get("Breaks"), "linux-image-arm64 (>> 6.12.118-1)");
        // A newer kernel, or a newer module, gives a newer metapackage.
        let newer = MetaPackage {
            newest: k("6.12.119+deb13-arm64", "6.12.119-1"),
            held: Pin {
                package: "linux-image-arm64".into(),
                version: "6.12.119-1".into(),
            },
            ..m
        };
        assert_eq!(
            crate::archive::version::compare(&newer.version(), "6.12.118-1+m0.1"),
            std::cmp::Ordering::Greater
        );
        let zfs = MetaPackage {
            module_version: "2.3.9-1".into(),
            ..newer
        };
        assert_eq!(zfs.version(), "6.12.119-1+m2.3.9.1");
        assert_eq!(
            crate::archive::version::compare(&zfs.version(), "6.12.119-1+m0.1"),
            std::cmp::Ordering::Greater
        );
        assert_eq!(
            module_file_name("zfs", "6.12.1", "1:2.3.9", "arm64"),
            "zfs-modules-6.12.1_2.3.9_arm64.deb"
        );
    }

    /// The pin of the user's sets: the flavour's metapackage at its own
    /// version when the set has one, else the image package itself.
    #[test]
    fn the_metapackage_pins_the_flavour_metapackage_else_the_image() {
        use crate::kmod::kset::{group, DebRecord};
        let rec = |package: &str, version: &str, depends: &str, paths: &[&str]| DebRecord {
            deb: format!("{package}.deb").into(),
            package: package.into(),
            version: version.into(),
            arch: "arm64".into(),
            source: String::new(),
            depends: depends.into(),
            paths: paths.iter().map(|p| p.to_string()).collect(),
        };
        let image = rec(
            "linux-image-6.12.47+rpt-rpi-v8",
            "1:6.12.47-1+rpt1",
            "",
            &["boot/vmlinuz-6.12.47+rpt-rpi-v8"],
        );
        let headers = rec(
            "linux-headers-6.12.47+rpt-rpi-v8",
            "1:6.12.47-1+rpt1",
            "",
            &["usr/src/linux-headers-6.12.47+rpt-rpi-v8/.config"],
        );
        // The metapackage's version is its own, not the image's.
        let meta = rec(
            "linux-image-rpi-v8",
            "1:6.12.47-1+rpt1+b2",
            "linux-image-6.12.47+rpt-rpi-v8 (= 1:6.12.47-1+rpt1)",
            &["usr/share/doc/linux-image-rpi-v8/copyright"],
        );
        let control = |records: &[DebRecord]| {
            let l = &group(records, "x", &crate::kmod::kset::nowhere)
                .unwrap()
                .kernels[0];
            let m = MetaPackage {
                module: "zfs".into(),
                flavour: "rpi-v8".into(),
                arch: "arm64".into(),
                module_version: "2.3.2".into(),
                newest: k(&l.kernel.release, &l.pin().version),
                held: l.pin(),
            };
            let c = m.control();
            let get = |f: &str| c.iter().find(|(k, _)| k == f).unwrap().1.clone();
            (get("Breaks"), get("Depends"), m.version())
        };
        let (breaks, depends, version) = control(&[image.clone(), headers.clone(), meta.clone()]);
        assert_eq!(breaks, "linux-image-rpi-v8 (>> 1:6.12.47-1+rpt1+b2)");
        assert_eq!(depends, "zfs-modules-6.12.47+rpt-rpi-v8 (= 2.3.2)");
        assert_eq!(version, "1:6.12.47-1+rpt1+b2+m2.3.2");
        let (breaks, _, _) = control(&[image, headers]);
        assert_eq!(
            breaks,
            "linux-image-6.12.47+rpt-rpi-v8 (>> 1:6.12.47-1+rpt1)"
        );
        // The user's bindeb-pkg kernel renamed to plain linux-image.
        let plain = [
            rec("linux-image", "6.12.48-2", "", &["boot/vmlinuz-6.12.48"]),
            rec(
                "linux-headers",
                "6.12.48-2",
                "",
                &["usr/src/linux-headers-6.12.48/.config"],
            ),
        ];
        let (breaks, _, _) = control(&plain);
        assert_eq!(breaks, "linux-image (>> 6.12.48-2)");
    }

    fn k(release: &str, version: &str) -> KernelEntry {
        KernelEntry {
            release: release.into(),
            version: version.into(),
        }
    }
}
