//! Against the real Debian archive (network): the resolved minbase set must
//! be the one mmdebstrap installs.

use std::process::Command;

use crate::common::{have_command, require, require_debian, Zchroot};

/// `mmdebstrap --variant=minbase --arch=arm64 --simulate --skip=check/qemu
/// trixie /dev/null http://deb.debian.org/debian`, run with mmdebstrap
/// 1.3.5 on 2026-11-27: the package names of its `Inst` lines, sorted.
const RECORDED_MINBASE_ARM64_TRIXIE: &str =
    include_str!("../data/mmdebstrap-minbase-arm64-trixie.txt");

fn mmdebstrap_names(arch: &str, suite: &str) -> Vec<String> {
    let out = Command::new("mmdebstrap")
        .args([
            "--variant=minbase",
            &format!("--arch={arch}"),
            "--simulate",
            "--skip=check/qemu",
            "--verbose",
            suite,
            "/dev/null",
            "http://deb.debian.org/debian",
        ])
        .output()
        .expect("run mmdebstrap");
    assert!(
        out.status.success(),
        "mmdebstrap failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    let mut names: Vec<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("Inst "))
        .filter_map(|l| l.split_whitespace().next())
        .map(String::from)
        .collect();
    names.sort();
    names.dedup();
    names
}

fn zchroot_names(home: &std::path::Path, arch: &str, suite: &str) -> Vec<String> {
    let out = Zchroot::new(home).run(&["-q", "resolve", arch, "--suite", suite, "--json"]);
    assert!(
        out.status.success(),
        "zchroot resolve: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut names: Vec<String> = v["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    names
}

#[test]
fn minbase_arm64_trixie_matches_mmdebstrap() {
    if !require_debian() {
        return;
    }
    let home = tempfile::tempdir().unwrap();
    let ours = zchroot_names(home.path(), "arm64", "trixie");
    let theirs = if have_command("mmdebstrap") {
        mmdebstrap_names("arm64", "trixie")
    } else {
        require(
            false,
            "mmdebstrap to compare with live",
            "apt-get install mmdebstrap",
        );
        eprintln!("comparing with the list recorded from mmdebstrap instead");
        RECORDED_MINBASE_ARM64_TRIXIE
            .lines()
            .map(String::from)
            .collect()
    };
    let missing: Vec<_> = theirs.iter().filter(|n| !ours.contains(n)).collect();
    let extra: Vec<_> = ours.iter().filter(|n| !theirs.contains(n)).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "missing {missing:?}, extra {extra:?}"
    );
}

#[test]
fn minbase_arm64_trixie_downloads_and_verifies() {
    if !require_debian() {
        return;
    }
    let home = tempfile::tempdir().unwrap();
    let out = Zchroot::new(home.path()).run(&[
        "-q",
        "resolve",
        "arm64",
        "--download",
        "--json",
        "--include",
        "zfs-dkms",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let pkgs = v["packages"].as_array().unwrap();
    // zfs-dkms is in contrib; the security suite carries at least one update.
    assert!(pkgs
        .iter()
        .any(|p| p["name"] == "zfs-dkms" && p["component"] == "contrib"));
    for p in pkgs {
        let cached = std::path::PathBuf::from(p["cached"].as_str().unwrap());
        assert_eq!(
            cached.file_name().unwrap().to_str().unwrap(),
            p["sha256"].as_str().unwrap()
        );
        assert_eq!(
            std::fs::metadata(&cached).unwrap().len(),
            p["size"].as_u64().unwrap()
        );
    }
}
