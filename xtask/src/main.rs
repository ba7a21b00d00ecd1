//! Project tasks: `cargo xtask ci` (the test command README gives and CI
//! runs) and `cargo xtask bench ...` (speed, side by side with a reference
//! tool in the same run, reported as a ratio).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context, Result};

use zchroot::archive::fetch::{Download, FetchOptions, Fetcher};
use zchroot::archive::index::{self, Origin};
use zchroot::archive::release::{self, Keyring};
use zchroot::manifest::Manifests;
use zchroot::report::Silent;

fn usage() -> ! {
    eprintln!(
        "usage: cargo xtask ci              format check and the whole test suite\n       \
         cargo xtask bench index [ARCH]   parse a full Packages index, against grep-dctrl\n       \
         cargo xtask bench resolve [ARCH] resolve minbase, against mmdebstrap --simulate\n       \
         cargo xtask e2e zfs [--strategy emulate]  the real ZFS module for trixie's arm64 kernel"
    );
    std::process::exit(2)
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
    match args.as_slice() {
        ["ci"] => ci(),
        ["bench", "index", rest @ ..] => bench_index(rest.first().copied().unwrap_or("arm64")),
        ["bench", "resolve", rest @ ..] => bench_resolve(rest.first().copied().unwrap_or("arm64")),
        ["e2e", "zfs"] | ["e2e", "zfs", "--strategy", "emulate"] => e2e_zfs(),
        _ => usage(),
    }
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

fn run(cmd: &mut Command) -> Result<()> {
    eprintln!("+ {cmd:?}");
    let status = cmd
        .current_dir(workspace())
        .status()
        .with_context(|| format!("running {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed: {status}");
    }
    Ok(())
}

fn ci() -> Result<()> {
    run(Command::new("cargo").args(["fmt", "--all", "--check"]))?;
    run(Command::new("cargo").args(["test", "--workspace", "--locked"]))?;
    Ok(())
}

/// Best wall time of `n` runs of `f`.
fn best_of(n: usize, mut f: impl FnMut() -> Result<()>) -> Result<Duration> {
    let mut best = Duration::MAX;
    for _ in 0..n {
        let t = Instant::now();
        f()?;
        best = best.min(t.elapsed());
    }
    Ok(best)
}

fn bench_home() -> PathBuf {
    workspace().join("target/bench")
}

/// Fetches (or takes from the cache) the verified main Packages index of
/// trixie for `arch`; returns its decompressed text and the time that took.
fn trixie_main_index(arch: &str) -> Result<(String, Duration)> {
    let m = Manifests::embedded();
    let r = m.release("trixie")?;
    m.arch(arch)?;
    let source = &r.sources[0];
    let keyring = Keyring::from_bytes(&m.keyring(&r)?, "trixie keyring")?;
    let blobs = bench_home().join("blobs");
    let fetcher = Fetcher::new(
        &blobs,
        &[source.mirror.clone()],
        FetchOptions::default(),
        &Silent,
    )?;
    let base = format!("{}/dists/{}", source.mirror, source.suite);
    let url = format!("{base}/InRelease");
    let data = fetcher.get(&url, 64 << 20)?;
    let rel = release::verify_inrelease(&data, &keyring, &source.suite, &url, SystemTime::now())?;
    let file = index::choose_index(&rel, "main", arch)?.context("no main index")?;
    let path = fetcher.fetch(&Download {
        url: format!("{base}/{}", file.fetch_path),
        alt_url: Some(format!("{base}/{}", file.path)),
        size: file.entry.size,
        sha256: file.entry.sha256.clone(),
        name: file.path.clone(),
    })?;
    let bytes = std::fs::read(&path)?;
    let t = Instant::now();
    let text = index::decompress(&bytes, file.compression, &file.path)?;
    Ok((text, t.elapsed()))
}

fn bench_index(arch: &str) -> Result<()> {
    let (text, decompress) = trixie_main_index(arch)?;
    let plain = bench_home().join(format!("Packages-trixie-main-{arch}"));
    std::fs::write(&plain, &text)?;
    let origin = std::sync::Arc::new(Origin {
        mirror: "bench".into(),
        suite: "trixie".into(),
        component: "main".into(),
    });
    let mut count = 0;
    let ours = best_of(5, || {
        count = index::parse_packages(&text, origin.clone(), "bench")?.len();
        Ok(())
    })?;
    let reference = if Path::new("/usr/bin/grep-dctrl").exists() {
        Some(best_of(5, || {
            let st = Command::new("grep-dctrl")
                .args([
                    "-s",
                    "Package,Version,Depends",
                    "-n",
                    "-r",
                    "-F",
                    "Package",
                    ".",
                ])
                .arg(&plain)
                .stdout(Stdio::null())
                .status()?;
            if !st.success() {
                bail!("grep-dctrl failed");
            }
            Ok(())
        })?)
    } else {
        eprintln!("grep-dctrl not found (apt-get install dctrl-tools): no reference run");
        None
    };
    println!(
        "index: trixie main {arch}, {count} packages, {} MiB of text",
        text.len() >> 20
    );
    println!(
        "  xz decompression          {:>8.1} ms",
        decompress.as_secs_f64() * 1e3
    );
    println!(
        "  zchroot parse_packages    {:>8.1} ms (best of 5)",
        ours.as_secs_f64() * 1e3
    );
    if let Some(r) = reference {
        println!(
            "  grep-dctrl (reference)    {:>8.1} ms (best of 5)",
            r.as_secs_f64() * 1e3
        );
        println!(
            "  ratio zchroot/grep-dctrl  {:>8.2}",
            ours.as_secs_f64() / r.as_secs_f64()
        );
    }
    Ok(())
}

fn bench_resolve(arch: &str) -> Result<()> {
    let exe = workspace().join("target/release/zchroot");
    run(Command::new("cargo").args(["build", "--release", "--bin", "zchroot"]))?;
    let home = bench_home().join("home");
    let zchroot = || -> Result<()> {
        let st = Command::new(&exe)
            .args(["-q", "resolve", arch])
            .env("ZCHROOT_HOME", &home)
            .stdout(Stdio::null())
            .status()?;
        if !st.success() {
            bail!("zchroot resolve failed");
        }
        Ok(())
    };
    zchroot()?; // warm the cache: both tools then fetch only InRelease files
    let ours = best_of(3, zchroot)?;
    println!("resolve: trixie minbase {arch} (trixie, -updates, -security; indexes cached)");
    println!(
        "  zchroot resolve           {:>8.0} ms (best of 3)",
        ours.as_secs_f64() * 1e3
    );
    if Path::new("/usr/bin/mmdebstrap").exists() {
        let theirs = best_of(3, || {
            let st = Command::new("mmdebstrap")
                .args([
                    "--variant=minbase",
                    &format!("--arch={arch}"),
                    "--simulate",
                    "--skip=check/qemu",
                    "-q",
                ])
                .args(["trixie", "/dev/null", "http://deb.debian.org/debian"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()?;
            if !st.success() {
                bail!("mmdebstrap failed");
            }
            Ok(())
        })?;
        println!("  mmdebstrap --simulate     {:>8.0} ms (best of 3; trixie only, downloads its index each run)", theirs.as_secs_f64() * 1e3);
        println!(
            "  ratio zchroot/mmdebstrap  {:>8.2}",
            ours.as_secs_f64() / theirs.as_secs_f64()
        );
    } else {
        eprintln!("mmdebstrap not found (apt-get install mmdebstrap): no reference run");
    }
    Ok(())
}

/// Builds the real ZFS module for trixie's current arm64 kernel with the
/// emulate strategy, checks the package, and prints the wall time. Long
/// (about 45 minutes on 2 cores): not part of `ci`. The log is kept in
/// target/e2e/zfs.log.
fn e2e_zfs() -> Result<()> {
    run(Command::new("cargo").args(["build", "--release", "--bin", "zchroot"]))?;
    let exe = workspace().join("target/release/zchroot");
    let dir = workspace().join("target/e2e");
    let out = dir.join("out");
    std::fs::create_dir_all(&out)?;
    let t = Instant::now();
    let o = Command::new(&exe)
        .args(["-v", "build-zfs", "--strategy", "emulate", "-o"])
        .arg(&out)
        .env("ZCHROOT_HOME", dir.join("home"))
        .output()?;
    let elapsed = t.elapsed();
    std::fs::write(dir.join("zfs.log"), [&o.stdout[..], &o.stderr[..]].concat())?;
    if !o.status.success() {
        bail!(
            "build-zfs failed after {elapsed:?}; see {}",
            dir.join("zfs.log").display()
        );
    }
    let deb = String::from_utf8(o.stdout)?.trim().to_string();
    let info = Command::new("dpkg-deb")
        .args(["-f", &deb, "Package", "Version", "Depends"])
        .output()?;
    println!("{deb}\n{}", String::from_utf8_lossy(&info.stdout));
    let contents = Command::new("dpkg-deb").args(["-c", &deb]).output()?;
    let text = String::from_utf8_lossy(&contents.stdout);
    for m in ["zfs.ko", "spl.ko"] {
        if !text.contains(m) {
            bail!("{deb} has no {m}");
        }
    }
    println!(
        "e2e zfs (emulate): {:.1} min wall time",
        elapsed.as_secs_f64() / 60.0
    );
    Ok(())
}
