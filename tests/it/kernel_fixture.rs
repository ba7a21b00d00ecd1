//! The fixture kernel for the tests that need a vendor-like kernel: a real
//! `make bindeb-pkg` arm64 kernel from Debian's linux-source, built once
//! per machine (cached under `$ZCHROOT_FIXTURE_CACHE`, default
//! `TARGET/fixture-cache`) by the code `cargo xtask kernel-fixture` runs.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::common;

#[path = "../../xtask/src/kernel_fixture.rs"]
mod build;

pub use build::FixtureKernel;

/// The fixture kernel, built if the cache lacks it; None (after a loud
/// skip) without the Debian archive or user namespaces; under CI that lack
/// is a failure. A failed build panics.
pub fn bindeb_kernel() -> Option<FixtureKernel> {
    static KERNEL: Mutex<Option<FixtureKernel>> = Mutex::new(None);
    if !common::require(
        common::have_userns(),
        "user namespaces (the fixture kernel is built in a root)",
        "run on Linux with user namespaces",
    ) || !common::require_debian()
    {
        return None;
    }
    let mut k = KERNEL.lock().unwrap_or_else(|e| e.into_inner());
    if k.is_none() {
        let cache = build::cache_dir(&target_dir());
        let built = build::ensure(Path::new(common::ZCHROOT), &cache, &|line| {
            eprintln!("kernel-fixture: {line}")
        })
        .unwrap_or_else(|e| panic!("the fixture kernel: {e}"));
        *k = Some(built);
    }
    k.clone()
}

/// Cargo's target directory: the one holding the binary under test.
fn target_dir() -> PathBuf {
    Path::new(common::ZCHROOT)
        .ancestors()
        .nth(2)
        .expect("the binary under test is in TARGET/PROFILE/")
        .to_owned()
}

/// The ELF machine of an executable's bytes.
fn elf_machine(bytes: &[u8]) -> Option<u16> {
    (bytes.len() > 20 && bytes.starts_with(b"\x7fELF"))
        .then(|| u16::from_le_bytes([bytes[18], bytes[19]]))
}

#[test]
fn the_bindeb_kernels_headers_hold_arm64_helpers_and_their_sources() {
    let Some(k) = bindeb_kernel() else { return };
    let control = zchroot::deb::read::read_control(&k.image).unwrap();
    assert!(
        control.contains(&format!("Package: linux-image-{}\n", k.release)),
        "{control}"
    );
    assert!(
        control.contains(&format!("Version: {}\n", k.version)),
        "{control}"
    );
    assert!(control.contains("Architecture: arm64\n"), "{control}");
    let image = zchroot::deb::read::data_paths(&k.image).unwrap();
    let vmlinuz = format!("boot/vmlinuz-{}", k.release);
    assert!(
        image.iter().any(|p| p.trim_start_matches("./") == vmlinuz),
        "{image:?}"
    );

    let base = format!("usr/src/linux-headers-{}", k.release);
    let read = |rel: &str| -> Vec<u8> {
        let paths = zchroot::deb::read::data_paths(&k.headers).unwrap();
        let p = paths
            .iter()
            .find(|p| p.trim_start_matches("./") == format!("{base}/{rel}"))
            .unwrap_or_else(|| panic!("{} has no {base}/{rel}", k.headers.display()));
        zchroot::deb::read::read_data_file(&k.headers, p)
            .unwrap()
            .unwrap_or_else(|| panic!("{p} of {} is not a file", k.headers.display()))
    };
    // The helpers were built for the board (aarch64, ELF machine 183), and
    // their sources came along, as in a vendor's headers package.
    for helper in ["scripts/basic/fixdep", "scripts/mod/modpost"] {
        assert_eq!(elf_machine(&read(helper)), Some(0xb7), "{helper}");
    }
    assert!(String::from_utf8(read("scripts/basic/fixdep.c"))
        .unwrap()
        .contains("int main"));
    // Built by Debian's gcc 14 cross compiler, with versioned symbols.
    // Upstream's headers carry the configuration as include/config/auto.conf
    // (no .config since bindeb-pkg uses install-extmod-build).
    let config = String::from_utf8(read("include/config/auto.conf")).unwrap();
    assert!(
        config.contains("CONFIG_CC_VERSION_TEXT=aarch64-linux-gnu-gcc-14 (Debian 14."),
        "{}",
        config
            .lines()
            .find(|l| l.contains("CC_VERSION_TEXT"))
            .unwrap_or("no CC_VERSION_TEXT")
    );
    assert!(config.contains("\nCONFIG_MODVERSIONS=y\n"));
    assert!(!config.contains("\nCONFIG_DEBUG_INFO=y\n"));
}
