//! Project tasks: `cargo xtask ci` (the test command README gives and CI
//! runs), `cargo xtask clippy`, `cargo xtask bench ...` (speed, side by side
//! with a reference tool in the same run, reported as a ratio) and
//! `cargo xtask e2e ...` (the real ZFS module, built and booted) and
//! `cargo xtask man` (the manual pages).

mod kernel_fixture;
mod man;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};

use zchroot::archive::fetch::{Download, FetchOptions, Fetcher};
use zchroot::archive::index::{self, Origin};
use zchroot::archive::release::{self, Keyring};
use zchroot::manifest::Manifests;
use zchroot::report::Silent;

/// zchroot's project tasks.
#[derive(Parser)]
#[command(name = "cargo xtask", bin_name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Format check, clippy and the whole test suite (what CI runs)
    Ci,
    /// cargo clippy on every target of the workspace, warnings denied
    Clippy,
    /// Speed, beside a reference tool in the same run
    #[command(subcommand)]
    Bench(Bench),
    /// The real ZFS module for trixie's arm64 kernel, built and booted
    #[command(subcommand)]
    E2e(E2e),
    /// Manual pages from zchroot's clap definitions: zchroot.1 and one a
    /// command (zchroot-create.1, zchroot-target-add.1, ...)
    Man {
        /// Where to write them (default: target/man)
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
    /// The fixture kernel (a `make bindeb-pkg` arm64 kernel from Debian's
    /// linux-source), built once and cached: prints its image and headers
    /// packages, one path a line
    KernelFixture,
}

#[derive(Subcommand)]
enum Bench {
    /// Parse a full Packages index, against grep-dctrl
    Index {
        /// Debian architecture of the index
        #[arg(default_value = "arm64")]
        arch: String,
    },
    /// Resolve minbase, against mmdebstrap --simulate
    Resolve {
        /// Debian architecture to resolve for
        #[arg(default_value = "arm64")]
        arch: String,
    },
    /// Create a root, cold and warm, against mmdebstrap in the same run
    Create {
        /// Debian architecture of the root
        #[arg(default_value = "arm64")]
        arch: String,
        /// Package set (minbase, buildd)
        #[arg(long, default_value = "minbase")]
        variant: String,
    },
    /// ZFS for arm64 (cross) against amd64 (native)
    Zfs {
        /// Also build for arm64 with the emulate strategy (long)
        #[arg(long)]
        with_emulate: bool,
        /// Also build cross for this arm64 kernel package set (image and
        /// headers, e.g. from `make bindeb-pkg`); repeat the option
        #[arg(long = "kernel-deb", value_name = "FILE")]
        kernel_deb: Vec<PathBuf>,
        /// Also build cross for the fixture kernel (a `make bindeb-pkg`
        /// arm64 kernel, built once and cached: `cargo xtask kernel-fixture`)
        #[arg(long, conflicts_with = "kernel_deb")]
        fixture_kernel: bool,
    },
}

#[derive(Subcommand)]
enum E2e {
    /// The real ZFS module for trixie's arm64 kernel
    Zfs {
        /// How the module is built for arm64
        #[arg(long, value_enum, default_value_t = Strategy::Cross)]
        strategy: Strategy,
    },
    /// Boot that kernel (or yours: --kernel-deb) under qemu-system-aarch64
    /// and use a pool
    Boot {
        /// How the module is built for arm64 (default: cross for Debian's
        /// kernel, auto with --kernel-deb)
        #[arg(long, value_enum)]
        strategy: Option<Strategy>,
        /// An arm64 kernel package set instead of Debian's kernel: the image
        /// and headers .deb (e.g. from `make bindeb-pkg`, or what `cargo
        /// xtask kernel-fixture` prints); repeat the option
        #[arg(long = "kernel-deb", value_name = "FILE")]
        kernel_deb: Vec<PathBuf>,
    },
}

/// How `build-zfs` builds for arm64.
#[derive(Clone, Copy, PartialEq, Eq, Debug, ValueEnum)]
enum Strategy {
    /// zchroot chooses (cross when it can, else emulate) and says why
    Auto,
    Cross,
    Emulate,
}

impl Strategy {
    fn as_str(self) -> &'static str {
        match self {
            Strategy::Auto => "auto",
            Strategy::Cross => "cross",
            Strategy::Emulate => "emulate",
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let r = match cli.task {
        Task::Ci => ci(),
        Task::Clippy => clippy(),
        Task::Bench(Bench::Index { arch }) => bench_index(&arch),
        Task::Bench(Bench::Resolve { arch }) => bench_resolve(&arch),
        Task::Bench(Bench::Create { arch, variant }) => bench_create(&arch, &variant),
        Task::Bench(Bench::Zfs {
            with_emulate,
            kernel_deb,
            fixture_kernel,
        }) => bench_zfs(with_emulate, kernel_deb, fixture_kernel),
        Task::E2e(E2e::Zfs { strategy }) => {
            build_zchroot().and_then(|exe| e2e_zfs(&exe, strategy.as_str()))
        }
        Task::E2e(E2e::Boot {
            strategy,
            kernel_deb,
        }) if kernel_deb.is_empty() => need_qemu().and_then(|qemu| {
            let exe = build_zchroot()?;
            e2e_boot(&exe, qemu, strategy.unwrap_or(Strategy::Cross).as_str()).map(|_| ())
        }),
        Task::E2e(E2e::Boot {
            strategy,
            kernel_deb,
        }) => build_zchroot().and_then(|exe| {
            e2e_boot_debs(&exe, strategy.unwrap_or(Strategy::Auto), &kernel_deb).map(|_| ())
        }),
        Task::KernelFixture => build_zchroot()
            .and_then(|exe| fixture_kernel(&exe))
            .map(|k| {
                println!("{}\n{}", k.image.display(), k.headers.display());
            }),
        Task::Man { out } => {
            let out = out.unwrap_or_else(|| target_dir().join("man"));
            man::write_pages(&out).map(|pages| {
                eprintln!("{} pages in {}", pages.len(), out.display());
            })
        }
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            for cause in e.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::FAILURE
        }
    }
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask is a folder of the workspace")
        .to_owned()
}

/// Cargo's target directory: `CARGO_TARGET_DIR` (relative to the
/// workspace when relative), else the workspace's `target`.
fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) if !d.is_empty() => workspace().join(d),
        _ => workspace().join("target"),
    }
}

/// The cargo that runs us (`CARGO`), else the one on PATH.
fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

/// A command as a user would type it (the program without its folder).
fn shown(cmd: &Command) -> String {
    let program = Path::new(cmd.get_program());
    std::iter::once(program.file_name().unwrap_or(program.as_os_str()))
        .chain(cmd.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

fn run(cmd: &mut Command) -> Result<()> {
    let line = shown(cmd);
    eprintln!("+ {line}");
    let status = cmd
        .current_dir(workspace())
        .status()
        .with_context(|| format!("cannot run {line}"))?;
    if !status.success() {
        bail!("{line} failed: {status}");
    }
    Ok(())
}

/// The fixture kernel, from `cache_dir` or built into it.
fn fixture_kernel(exe: &Path) -> Result<kernel_fixture::FixtureKernel> {
    let cache = kernel_fixture::cache_dir(&target_dir());
    kernel_fixture::ensure(exe, &cache, &|line| eprintln!("kernel-fixture: {line}"))
        .map_err(anyhow::Error::msg)
}

/// CI's budget on a 2-core machine.
const CI_BUDGET: Duration = Duration::from_secs(75 * 60);
/// What the boot proof with the fixture kernel costs at most once the
/// tests built the fixture (build-zfs cross, the guest, the boot), so `ci`
/// runs it only when it fits the budget.
const KERNEL_DEB_BOOT_COST: Duration = Duration::from_secs(25 * 60);
/// What the boot proof with Debian's kernel costs at most on an idle
/// 2-core machine (release build, build-zfs cross with a new build root,
/// a new guest, the boot), with a margin: `ci` starts it only when this
/// much of the budget is left, so a slow machine skips it (loudly) rather
/// than run CI past its hard limit.
const DEBIAN_BOOT_COST: Duration = Duration::from_secs(35 * 60);

/// Whether `cost` still fits the budget; says so when it does not.
fn fits(start: Instant, cost: Duration, what: &str) -> bool {
    let left = CI_BUDGET.saturating_sub(start.elapsed());
    if left < cost {
        eprintln!(
            "ci: SKIPPING {what}: {} of the {} budget left, it needs up to {}",
            minutes(left),
            minutes(CI_BUDGET),
            minutes(cost)
        );
        return false;
    }
    true
}

/// The format check, clippy, the tests, then the boot proofs: ZFS built
/// cross for Debian's current arm64 kernel and booted under qemu, and,
/// when the budget allows, the same for the fixture kernel (a `make
/// bindeb-pkg` kernel). Each part's time is printed at the end, also when
/// one fails.
fn ci() -> Result<()> {
    let start = Instant::now();
    let mut times = Vec::new();
    let r = ci_parts(&mut times, start);
    eprintln!("{}", ci_times(&times, start.elapsed()));
    r
}

/// Runs `f`, adding its time to `times` under `name` (also when it fails).
fn timed<T>(
    times: &mut Vec<(String, Duration)>,
    name: &str,
    f: impl FnOnce() -> Result<T>,
) -> Result<T> {
    let t = Instant::now();
    let r = f();
    times.push((name.to_string(), t.elapsed()));
    r
}

fn ci_parts(times: &mut Vec<(String, Duration)>, start: Instant) -> Result<()> {
    timed(times, "fmt", || {
        run(cargo().args(["fmt", "--all", "--check"]))
    })?;
    timed(times, "clippy", clippy)?;
    timed(times, "tests (cargo test --workspace)", || {
        run(cargo().args(["test", "--workspace", "--locked"]))
    })?;
    if !fits(start, DEBIAN_BOOT_COST, "the boot proofs") {
        times.push(("boot proofs: skipped, over budget".into(), Duration::ZERO));
        return Ok(());
    }
    let exe = timed(times, "build (release zchroot)", build_zchroot)?;
    let qemu = need_qemu()?;
    timed(times, "e2e zfs (cross, Debian's arm64 kernel)", || {
        e2e_zfs(&exe, "cross")
    })?;
    let (prepared, booted) = timed(times, "e2e boot (Debian's arm64 kernel)", || {
        e2e_boot(&exe, qemu, "cross")
    })?;
    times.push(("  of which preparing the guest".into(), prepared));
    times.push(("  of which booted, using the pool".into(), booted));
    if !fits(
        start,
        KERNEL_DEB_BOOT_COST,
        "e2e boot --kernel-deb with the fixture kernel",
    ) {
        times.push((
            "e2e boot --kernel-deb: skipped, over budget".into(),
            Duration::ZERO,
        ));
        return Ok(());
    }
    let k = timed(
        times,
        "fixture kernel (built by the tests, else now)",
        || fixture_kernel(&exe),
    )?;
    let (zfs, prepared, booted) = timed(
        times,
        "e2e boot --kernel-deb (fixture kernel, cross)",
        || e2e_boot_debs(&exe, Strategy::Cross, &[k.image.clone(), k.headers.clone()]),
    )?;
    times.push(("  of which build-zfs".into(), zfs));
    times.push(("  of which preparing the guest".into(), prepared));
    times.push(("  of which booted, using the pool".into(), booted));
    Ok(())
}

/// The table of each part's time `ci` prints at its end.
fn ci_times(times: &[(String, Duration)], total: Duration) -> String {
    let mut s = format!(
        "ci: time of each part ({} cores; budget {}):\n",
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        minutes(CI_BUDGET)
    );
    for (name, t) in times {
        s.push_str(&format!("  {name:<50} {:>9}\n", minutes(*t)));
    }
    s.push_str(&format!("  {:<50} {:>9}", "total", minutes(total)));
    s
}

/// Every lint a warning and every warning an error; `ci` runs it between
/// the format check and the tests.
fn clippy() -> Result<()> {
    run(cargo().args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--locked",
        "--",
        "-D",
        "warnings",
    ]))
}

/// Builds zchroot in release mode; its executable, where cargo says it
/// put it (which follows `CARGO_TARGET_DIR` and any other setting).
fn build_zchroot() -> Result<PathBuf> {
    let mut cmd = cargo();
    cmd.args([
        "build",
        "--release",
        "--package",
        "zchroot",
        "--bin",
        "zchroot",
        "--message-format=json-render-diagnostics",
    ]);
    let line = shown(&cmd);
    eprintln!("+ {line}");
    let out = cmd
        .current_dir(workspace())
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("cannot run {line}"))?;
    if !out.status.success() {
        bail!("{line} failed: {}", out.status);
    }
    executable_of(&out.stdout, "zchroot")
}

/// The executable of binary target `name` in cargo's JSON messages.
fn executable_of(messages: &[u8], name: &str) -> Result<PathBuf> {
    messages
        .split(|&b| b == b'\n')
        .filter_map(|l| serde_json::from_slice::<serde_json::Value>(l).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == name)
        .filter(|m| {
            m["target"]["kind"]
                .as_array()
                .is_some_and(|k| k.iter().any(|k| k == "bin"))
        })
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .with_context(|| format!("cargo build named no executable for the {name} binary"))
}

/// `std::fs::write`, with the path in the error.
fn write(path: &Path, data: impl AsRef<[u8]>) -> Result<()> {
    std::fs::write(path, data).with_context(|| format!("cannot write {}", path.display()))
}

/// `std::fs::create_dir_all`, with the path in the error.
fn mkdir(path: &Path) -> Result<()> {
    std::fs::create_dir_all(path).with_context(|| format!("cannot create {}", path.display()))
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
    target_dir().join("bench")
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
        std::slice::from_ref(&source.mirror),
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
        sha256: file.entry.sha256,
        name: file.path.clone(),
    })?;
    let bytes = std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let t = Instant::now();
    let text = index::decompress(&bytes, file.compression, &file.path)?;
    Ok((text, t.elapsed()))
}

fn bench_index(arch: &str) -> Result<()> {
    let (text, decompress) = trixie_main_index(arch)?;
    let plain = bench_home().join(format!("Packages-trixie-main-{arch}"));
    write(&plain, &text)?;
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
                .status()
                .context("cannot run grep-dctrl")?;
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
    let exe = build_zchroot()?;
    let home = bench_home().join("home");
    let zchroot = || -> Result<()> {
        let st = Command::new(&exe)
            .args(["-q", "resolve", arch])
            .env("ZCHROOT_HOME", &home)
            .stdout(Stdio::null())
            .status()
            .with_context(|| format!("cannot run {}", exe.display()))?;
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
                .status()
                .context("cannot run mmdebstrap")?;
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

/// One `zchroot create` of the bench: wall time and zchroot's own phase
/// times (`ZCHROOT_TIMINGS`), its output logged.
struct CreateRun {
    wall: Duration,
    phases: Vec<(String, f64)>,
}

fn zchroot_create(exe: &Path, home: &Path, args: &[&str], log: &Path) -> Result<CreateRun> {
    let timings = home.with_extension("timings");
    let _ = std::fs::remove_file(&timings);
    let t = Instant::now();
    let o = Command::new(exe)
        .arg("create")
        .args(args)
        .env("ZCHROOT_HOME", home)
        .env("ZCHROOT_TIMINGS", &timings)
        .output()
        .with_context(|| format!("cannot run {}", exe.display()))?;
    let wall = t.elapsed();
    write(log, [&o.stdout[..], &o.stderr[..]].concat())?;
    if !o.status.success() {
        bail!("zchroot create {args:?} failed; see {}", log.display());
    }
    let text = std::fs::read_to_string(&timings).unwrap_or_default();
    Ok(CreateRun {
        wall,
        phases: parse_timings(&text),
    })
}

/// `NAME SECONDS` lines, a phase seen twice added up, in first-seen order.
fn parse_timings(text: &str) -> Vec<(String, f64)> {
    let mut out: Vec<(String, f64)> = Vec::new();
    for (name, secs) in text.lines().filter_map(|l| {
        let (n, s) = l.split_once(' ')?;
        Some((n.to_string(), s.trim().parse::<f64>().ok()?))
    }) {
        match out.iter_mut().find(|(n, _)| *n == name) {
            Some((_, s)) => *s += secs,
            None => out.push((name, secs)),
        }
    }
    out
}

/// The binfmt_misc registration of qemu-ARCH-static for `arch`, from the
/// manifest's ELF magic and mask (fix-binary, so it works in any root).
fn binfmt_line(arch: &zchroot::manifest::Arch, qemu: &Path) -> String {
    let hex = |b: &[u8]| b.iter().map(|x| format!("\\x{x:02x}")).collect::<String>();
    format!(
        ":zchroot-bench-{}:M::{}:{}:{}:F",
        arch.qemu,
        hex(&arch.elf_magic),
        hex(&arch.elf_mask),
        qemu.display()
    )
}

/// mmdebstrap's time for the same root, as root in a private mount
/// namespace: binfmt_misc mounted there with qemu-user-static registered
/// (on Linux 6.7+ the entry goes with the mount), the root in `dir`.
fn mmdebstrap_create(arch: &str, variant: &str, dir: &Path, log: &Path) -> Result<Duration> {
    let m = Manifests::embedded();
    let a = m.arch(arch)?;
    let host = std::env::consts::ARCH;
    let mut script = String::from("set -e\nmount --make-rprivate /\n");
    if a.uname != host {
        let qemu = PathBuf::from(format!("/usr/bin/qemu-{}-static", a.qemu));
        if !qemu.exists() {
            bail!(
                "{} is missing: mmdebstrap needs it for {arch}\nhelp: apt-get install qemu-user-static",
                qemu.display()
            );
        }
        script.push_str(&format!(
            "mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc\nprintf '%s' '{}' > /proc/sys/fs/binfmt_misc/register\n",
            binfmt_line(&a, &qemu)
        ));
    }
    script.push_str(&format!(
        "exec mmdebstrap --mode=root --variant={variant} --arch={arch} trixie {} http://deb.debian.org/debian\n",
        dir.display()
    ));
    if dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("cannot remove {}", dir.display()))?;
    }
    let t = Instant::now();
    let o = Command::new("unshare")
        .args(["--mount", "--", "sh", "-c", &script])
        .output()
        .context("cannot run unshare")?;
    let elapsed = t.elapsed();
    write(log, [&o.stdout[..], &o.stderr[..]].concat())?;
    if !o.status.success() {
        bail!("mmdebstrap failed; see {}", log.display());
    }
    Ok(elapsed)
}

/// `bench create`: the same root made by zchroot with an empty cache
/// (cold), again with the cache full (warm), and by mmdebstrap, in one
/// run; zchroot's phases, and the ratio last.
fn bench_create(arch: &str, variant: &str) -> Result<()> {
    let exe = build_zchroot()?;
    let dir = bench_home().join("create");
    let home = dir.join("home");
    let logs = dir.join("logs");
    mkdir(&logs)?;
    let z = |args: &[&str]| -> Result<()> {
        let st = Command::new(&exe)
            .args(args)
            .env("ZCHROOT_HOME", &home)
            .stdout(Stdio::null())
            .status()
            .with_context(|| format!("cannot run {}", exe.display()))?;
        if !st.success() {
            bail!("zchroot {args:?} failed");
        }
        Ok(())
    };
    let name = format!("bench-{arch}-{variant}");
    let args = ["--arch", arch, "--variant", variant, "--name", &name];
    let positional = [arch, "--variant", variant, "--name", &name];
    // Old command lines take ARCH as a positional argument only.
    let takes_arch_option = Command::new(&exe)
        .args(["create", "--help"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("--arch"))
        .unwrap_or(false);
    let args: &[&str] = if takes_arch_option {
        &args
    } else {
        &positional
    };
    if home.exists() {
        z(&["-q", "destroy", "--all", "--purge-cache"])?;
    }
    eprintln!("zchroot create {arch} {variant}, cold (empty cache)...");
    let cold = zchroot_create(&exe, &home, args, &logs.join("zchroot-cold.log"))?;
    z(&["-q", "destroy", &name])?;
    eprintln!("zchroot create {arch} {variant}, warm (same set built once)...");
    // The warm root stays, to be looked at (`ZCHROOT_HOME=... zchroot run`).
    let warm = zchroot_create(&exe, &home, args, &logs.join("zchroot-warm.log"))?;
    let theirs = if Path::new("/usr/bin/mmdebstrap").exists() {
        eprintln!("mmdebstrap --variant={variant} --arch={arch} trixie...");
        let out = dir.join("mmdebstrap-root");
        let t = mmdebstrap_create(arch, variant, &out, &logs.join("mmdebstrap.log"))?;
        std::fs::remove_dir_all(&out)
            .with_context(|| format!("cannot remove {}", out.display()))?;
        Some(t)
    } else {
        eprintln!("mmdebstrap not found (apt-get install mmdebstrap): no reference run");
        None
    };
    println!(
        "create: trixie {variant} {arch}, {} cores",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );
    for (what, run) in [("cold", &cold), ("warm", &warm)] {
        println!(
            "  zchroot, {what:<4}             {:>8.1} s",
            run.wall.as_secs_f64()
        );
        for (phase, secs) in &run.phases {
            println!("    {phase:<22} {secs:>8.1} s");
        }
    }
    if let Some(t) = theirs {
        println!("  mmdebstrap                {:>8.1} s", t.as_secs_f64());
        println!(
            "  ratio zchroot/mmdebstrap  {:>8.2} cold, {:.2} warm",
            cold.wall.as_secs_f64() / t.as_secs_f64(),
            warm.wall.as_secs_f64() / t.as_secs_f64()
        );
    }
    println!("  (logs: {})", logs.display());
    Ok(())
}

/// Runs `zchroot build-zfs` with `args`, output in `out`, home `home`;
/// returns the .deb paths printed and the wall time. The output is logged.
fn build_zfs(
    exe: &Path,
    home: &Path,
    out: &Path,
    args: &[&str],
    log: &Path,
) -> Result<(Vec<PathBuf>, Duration)> {
    mkdir(out)?;
    let t = Instant::now();
    let o = Command::new(exe)
        .args(["-v", "build-zfs"])
        .args(args)
        .arg("-o")
        .arg(out)
        .env("ZCHROOT_HOME", home)
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .output()
        .with_context(|| format!("cannot run {}", exe.display()))?;
    let elapsed = t.elapsed();
    std::fs::write(log, [&o.stdout[..], &o.stderr[..]].concat())
        .with_context(|| format!("cannot write {}", log.display()))?;
    if !o.status.success() {
        bail!(
            "build-zfs {args:?} failed after {elapsed:?}; see {}",
            log.display()
        );
    }
    let debs = String::from_utf8(o.stdout)
        .context("build-zfs printed a path that is not UTF-8")?
        .lines()
        .map(PathBuf::from)
        .collect();
    Ok((debs, elapsed))
}

/// The zchroot command `zchroot -q run ROOT -- ARGS` in `home`.
fn run_in_root(exe: &Path, home: &Path, root: &str, args: &[&str]) -> Result<String> {
    let o = Command::new(exe)
        .args(["-q", "run", root, "--"])
        .args(args)
        .env("ZCHROOT_HOME", home)
        .output()
        .with_context(|| format!("cannot run {}", exe.display()))?;
    if !o.status.success() {
        bail!(
            "zchroot run {root} -- {args:?} failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&o.stdout).into_owned())
}

/// How many compiles went through build root `root`'s ccache (misses and
/// hits), from `ccache --print-stats`.
fn ccache_compiles(exe: &Path, home: &Path, root: &str) -> Result<u64> {
    let dir = zchroot::kmod::dkms::CCACHE_IN_ROOT;
    let stats = run_in_root(
        exe,
        home,
        root,
        &[
            "env",
            &format!("CCACHE_DIR={dir}"),
            "ccache",
            "--print-stats",
        ],
    )?;
    Ok(stats
        .lines()
        .filter_map(|l| l.split_once('\t'))
        .filter(|(k, _)| {
            matches!(
                *k,
                "cache_miss" | "direct_cache_hit" | "preprocessed_cache_hit"
            )
        })
        .filter_map(|(_, v)| v.trim().parse::<u64>().ok())
        .sum())
}

/// One kernel module of a package, as two builds of it must agree.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Module {
    file: String,
    vermagic: Option<String>,
    srcversion: Option<String>,
    modversions: Option<Vec<u8>>,
    /// The ELF machine.
    machine: u16,
}

/// The kernel modules a module package holds, sorted.
fn modules_of(deb: &Path) -> Result<Vec<Module>> {
    let mut v = Vec::new();
    for p in zchroot::deb::read::data_paths(deb)? {
        if !p.contains("/updates/dkms/") || !p.contains(".ko") {
            continue;
        }
        let bytes = zchroot::deb::read::read_data_file(deb, &p)?
            .with_context(|| format!("{p} in {}", deb.display()))?;
        let i = zchroot::kmod::elf::ko_info(&bytes)
            .with_context(|| format!("{p} in {} is not a kernel module", deb.display()))?;
        let name = p.rsplit('/').next().unwrap_or(&p).to_string();
        v.push(Module {
            file: name,
            vermagic: i.vermagic,
            srcversion: i.srcversion,
            modversions: i.modversions,
            machine: i.machine,
        });
    }
    v.sort();
    Ok(v)
}

fn minutes(d: Duration) -> String {
    format!("{:.1} min", d.as_secs_f64() / 60.0)
}

/// The arm64 kernel releases of trixie's suites, newest first.
fn arm64_kernels(home: &Path) -> Result<Vec<String>> {
    let manifests = Manifests::embedded();
    let t = zchroot::rootfs::spec::RootRecipe::new(
        &manifests,
        &zchroot::rootfs::spec::RootSpec {
            arch: "arm64".into(),
            release: "trixie".into(),
            variant: "minbase".into(),
            include: vec![],
            mirror: None,
            keyring: None,
            ..Default::default()
        },
    )?;
    let dirs = zchroot::paths::DataDirs::resolve(&zchroot::paths::DirsEnv {
        zchroot_home: Some(home.to_owned()),
        ..zchroot::paths::DirsEnv::from_process()
    })?;
    let fetcher = t.fetcher(&dirs, FetchOptions::default(), &Silent)?;
    let indexes = t.update(&fetcher, &Silent)?;
    // The kernels of the plain flavour's metapackage (not cloud-arm64 & co).
    let mut v: Vec<String> = zchroot::update::kernels_of_suites(&indexes.packages, "arm64", &[])
        .into_iter()
        .map(|k| k.release)
        .collect();
    v.reverse(); // newest first
    Ok(v)
}

/// `bench zfs`: the same ZFS built (a) for trixie's arm64 kernel with the
/// cross strategy and (b) natively for trixie's amd64 kernel, in the same
/// run and the same (reused) amd64 build root; then cross for another
/// arm64 kernel of the series; with --with-emulate also (c) emulated.
/// With kernel .debs (or the fixture kernel), also cross for that kernel:
/// with `make bindeb-pkg` headers, that is the build with the board's
/// helpers rebuilt for this machine.
/// Each build runs twice: the first installs the kernel's headers and
/// the toolchain into the root, the second is the build alone (what a
/// user pays on each new kernel).
fn bench_zfs(with_emulate: bool, kernel_deb: Vec<PathBuf>, fixture: bool) -> Result<()> {
    let exe = build_zchroot()?;
    let kernel_deb = if fixture {
        let k = fixture_kernel(&exe)?;
        vec![k.image, k.headers]
    } else {
        kernel_deb
    };
    let dir = bench_home().join("zfs");
    let home = dir.join("home");
    let logs = dir.join("logs");
    mkdir(&logs)?;
    // Each build compiles from scratch: the build root's ccache would
    // otherwise turn the second build of a kernel into cache hits.
    let root = zchroot::kmod::build_root_name("trixie", "amd64");
    let cold = || -> Result<()> {
        if home.join("state/roots").join(&root).exists() {
            let dir = zchroot::kmod::dkms::CCACHE_IN_ROOT;
            run_in_root(&exe, &home, &root, &["rm", "-rf", dir])?;
        }
        Ok(())
    };
    let timed = |name: &str, args: &[&str]| -> Result<(Duration, Duration)> {
        let out = dir.join("out").join(name);
        cold()?;
        let (_, first) = build_zfs(&exe, &home, &out, args, &logs.join(format!("{name}-1.log")))?;
        cold()?;
        let (_, second) = build_zfs(&exe, &home, &out, args, &logs.join(format!("{name}-2.log")))?;
        eprintln!(
            "{name}: {} (first, with installs), {} = {:.0} s (again)",
            minutes(first),
            minutes(second),
            second.as_secs_f64()
        );
        Ok((first, second))
    };
    let native = timed("native-amd64", &["--arch", "amd64"])?;
    let cross = timed("cross-arm64", &["--arch", "arm64", "--strategy", "cross"])?;
    let debs = if kernel_deb.is_empty() {
        None
    } else {
        let mut args = vec!["--arch", "arm64", "--strategy", "cross"];
        for f in &kernel_deb {
            args.push("--kernel-deb");
            args.push(f.to_str().context("a --kernel-deb path is not UTF-8")?);
        }
        Some(timed("cross-arm64-kernel-deb", &args)?)
    };
    // Another arm64 kernel of the same series, if the suites have one:
    // the reused root and downloads are all it needs besides the compile.
    let newest_two = arm64_kernels(&home)?;
    let series = |k: &str| k.split('.').take(2).collect::<Vec<_>>().join(".");
    let another = match newest_two.as_slice() {
        [a, b, ..] if series(a) == series(b) => {
            let out = dir.join("out").join("cross-arm64-another");
            cold()?;
            let (_, t) = build_zfs(
                &exe,
                &home,
                &out,
                &["--arch", "arm64", "--strategy", "cross", "--kernel", b],
                &logs.join("cross-arm64-another.log"),
            )?;
            Some((b.clone(), t))
        }
        _ => {
            eprintln!(
                "no second arm64 kernel of the series in trixie's suites: skipping that build"
            );
            None
        }
    };
    let emulate = if with_emulate {
        let out = dir.join("out").join("emulate-arm64");
        let (_, t) = build_zfs(
            &exe,
            &home,
            &out,
            &["--arch", "arm64", "--strategy", "emulate"],
            &logs.join("emulate-arm64.log"),
        )?;
        Some(t)
    } else {
        None
    };
    println!(
        "bench zfs: ZFS of trixie (zfs-dkms) on this machine, {} cores",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );
    println!(
        "  native amd64 kernel          {:>9} first, {:>9} again",
        minutes(native.0),
        minutes(native.1)
    );
    println!(
        "  arm64 kernel, cross          {:>9} first, {:>9} again",
        minutes(cross.0),
        minutes(cross.1)
    );
    if let Some(e) = emulate {
        println!("  arm64 kernel, emulate        {:>9}", minutes(e));
        println!(
            "  ratio emulate/native         {:>9.2}",
            e.as_secs_f64() / native.1.as_secs_f64()
        );
    }
    if let Some((k, t)) = &another {
        println!(
            "  arm64 kernel {k}, cross (reused root)  {:>9}",
            minutes(*t)
        );
    }
    println!(
        "  ratio cross/native (again)   {:>9.2}",
        cross.1.as_secs_f64() / native.1.as_secs_f64()
    );
    if let Some(d) = debs {
        println!(
            "  --kernel-deb kernel, cross   {:>9} first, {:>9} again",
            minutes(d.0),
            minutes(d.1)
        );
        println!(
            "  ratio kernel-deb cross/native (again) {:>5.2}",
            d.1.as_secs_f64() / native.1.as_secs_f64()
        );
    }
    println!("  (logs: {})", logs.display());
    Ok(())
}

/// Builds the real ZFS module for trixie's current arm64 kernel with a
/// strategy, checks the package, and prints the wall time; when the other
/// strategy's package is there too, checks that both hold the same
/// modules (names, vermagic, srcversion, symbol CRCs, aarch64). Emulate is
/// long (about 45 minutes on 2 cores): not part of `ci`. Logs are kept in
/// target/e2e/.
fn e2e_zfs(exe: &Path, strategy: &str) -> Result<()> {
    let dir = target_dir().join("e2e");
    let out = dir.join(format!("out-{strategy}"));
    let log = dir.join(format!("zfs-{strategy}.log"));
    let (debs, elapsed) = build_zfs(
        exe,
        &dir.join("home"),
        &out,
        &["--strategy", strategy],
        &log,
    )?;
    let deb = debs.first().context("build-zfs printed no package")?;
    let info = Command::new("dpkg-deb")
        .args(["-f"])
        .arg(deb)
        .args([
            "Package",
            "Version",
            "Depends",
            "X-Zchroot-Strategy",
            "X-Zchroot-Compiler",
        ])
        .output()
        .context("cannot run dpkg-deb")?;
    println!(
        "{}\n{}",
        deb.display(),
        String::from_utf8_lossy(&info.stdout)
    );
    let modules = modules_of(deb)?;
    for m in ["zfs.ko", "spl.ko"] {
        if !modules.iter().any(|x| x.file.starts_with(m)) {
            bail!("{} has no {m}", deb.display());
        }
    }
    if let Some(bad) = modules.iter().find(|x| x.machine != 0xb7) {
        bail!("{} is not an aarch64 module", bad.file);
    }
    println!("e2e zfs ({strategy}): {} wall time", minutes(elapsed));
    if strategy == "cross" {
        // ZFS passes DKMS's KERNEL_CC to Kbuild as CC: its compiles too
        // must have gone through the build root's ccache.
        let root = zchroot::kmod::build_root_name("trixie", "amd64");
        let n = ccache_compiles(exe, &dir.join("home"), &root)?;
        if n < 100 {
            bail!("only {n} compiles went through ccache in {root}: ZFS's did not");
        }
        println!("ccache: {n} compiles went through the build root's cache");
    }
    let other = if strategy == "cross" {
        "emulate"
    } else {
        "cross"
    };
    let other_deb = dir
        .join(format!("out-{other}"))
        .join(deb.file_name().unwrap());
    if other_deb.exists() {
        let theirs = modules_of(&other_deb)?;
        if theirs != modules {
            bail!(
                "the {strategy} and {other} builds differ:\n  {strategy}: {:?}\n  {other}: {:?}",
                modules
                    .iter()
                    .map(|m| (&m.file, &m.vermagic, &m.srcversion))
                    .collect::<Vec<_>>(),
                theirs
                    .iter()
                    .map(|m| (&m.file, &m.vermagic, &m.srcversion))
                    .collect::<Vec<_>>()
            );
        }
        println!(
            "same modules as the {other} build: {} (vermagic, srcversion and symbol CRCs equal)",
            modules
                .iter()
                .map(|m| m.file.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    } else {
        println!(
            "(no {other} build in {} to compare with: run cargo xtask e2e zfs --strategy {other})",
            other_deb.display()
        );
    }
    Ok(())
}

/// The guest's init: every step prints a line the host looks for.
const BOOT_INIT: &str = r#"#!/bin/sh
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev 2>/dev/null
step() { echo "ZCHROOT-STEP $*"; }
fail() { echo "ZCHROOT-FAIL $*"; echo o > /proc/sysrq-trigger; sleep 10; }
step "kernel $(uname -r)"
modprobe zfs || fail modprobe
step "modprobe ok"
zfs version
u=$(zfs version | sed -n 's/^zfs-\([0-9][0-9.]*\).*/\1/p')
k=$(zfs version | sed -n 's/^zfs-kmod-\([0-9][0-9.]*\).*/\1/p')
[ -n "$u" ] && [ "$u" = "$k" ] || fail "versions userland=$u kernel=$k"
step "versions match $u"
# zpool partitions a whole disk and waits for udev to show the partitions.
/usr/lib/systemd/systemd-udevd --daemon
udevadm trigger --action=add
udevadm settle
zpool create -f -o cachefile=none tank /dev/vdb || fail "zpool create"
step "zpool create ok"
zfs create -o compression=lz4 tank/data || fail "zfs create"
[ "$(zfs get -H -o value compression tank/data)" = lz4 ] || fail compression
step "dataset ok"
i=0; while [ $i -lt 256 ]; do echo "zchroot line $i of known content"; i=$((i+1)); done > /tank/data/file
before=$(sha256sum /tank/data/file | cut -d' ' -f1)
sync
zpool export tank || fail "zpool export"
step "export ok"
zpool import -d /dev tank || fail "zpool import"
step "import ok"
after=$(sha256sum /tank/data/file | cut -d' ' -f1)
[ "$before" = "$after" ] || fail "checksum $before $after"
step "checksum ok $after"
zpool scrub -w tank || fail scrub
step "scrub ok"
zpool status -x | grep -q "all pools are healthy" || { zpool status; fail status; }
step "status ok"
echo ZCHROOT-DONE
echo o > /proc/sysrq-trigger
sleep 10
"#;

/// The lines a passing boot prints, in order.
const BOOT_STEPS: &[&str] = &[
    "ZCHROOT-STEP kernel ",
    "ZCHROOT-STEP modprobe ok",
    "ZCHROOT-STEP versions match ",
    "ZCHROOT-STEP zpool create ok",
    "ZCHROOT-STEP dataset ok",
    "ZCHROOT-STEP export ok",
    "ZCHROOT-STEP import ok",
    "ZCHROOT-STEP checksum ok ",
    "ZCHROOT-STEP scrub ok",
    "ZCHROOT-STEP status ok",
    "ZCHROOT-DONE",
];

/// `e2e boot`: an arm64 guest with trixie's kernel, the matching
/// zfsutils-linux and the module package built with `strategy`, exported
/// as an ext4 image and booted with qemu-system-aarch64 (software
/// emulation, a blank second disk, no network); its init uses a pool and
/// the host checks each step on the console. The console log is kept.
fn e2e_boot(exe: &Path, qemu: &str, strategy: &str) -> Result<(Duration, Duration)> {
    let dir = target_dir().join("e2e");
    let out = dir.join(format!("out-{strategy}"));
    if find_module_deb(&out, "").is_none() {
        e2e_zfs(exe, strategy)?;
    }
    let deb = find_module_deb(&out, "").context("no zfs-modules package")?;
    let name = deb.file_name().unwrap().to_string_lossy().into_owned();
    // zfs-modules-KREL_VERSION_arm64.deb
    let krel = name
        .trim_start_matches("zfs-modules-")
        .split('_')
        .next()
        .unwrap_or_default()
        .to_string();
    let guest = Guest {
        root: format!("e2e-boot-{strategy}"),
        include: format!("linux-image-{krel},zfsutils-linux,kmod"),
        debs: vec![deb.clone()],
        krel: krel.clone(),
        initrd: true,
    };
    boot_and_check(exe, qemu, &dir, strategy, &guest)
}

/// qemu-system-aarch64, or an error saying how to get it.
fn need_qemu() -> Result<&'static str> {
    let qemu = "qemu-system-aarch64";
    if Command::new(qemu).arg("--version").output().is_err() {
        bail!("{qemu} is not installed\nhelp: sudo apt-get install qemu-system-arm");
    }
    Ok(qemu)
}

/// The zfs-modules package for kernel release `krel` (any with "") in `out`.
fn find_module_deb(out: &Path, krel: &str) -> Option<PathBuf> {
    let prefix = format!("zfs-modules-{krel}");
    std::fs::read_dir(out)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name().is_some_and(|n| {
                let n = n.to_string_lossy();
                n.starts_with(&prefix) && n.ends_with(".deb")
            })
        })
}

/// Prepares the guest, boots it and follows its steps; prints the times.
/// Returns the time preparing the guest and the time booted.
fn boot_and_check(
    exe: &Path,
    qemu: &str,
    dir: &Path,
    label: &str,
    guest: &Guest,
) -> Result<(Duration, Duration)> {
    let t = Instant::now();
    let boot = prepare_guest(exe, dir, label, guest)?;
    let prepared = t.elapsed();
    let t = Instant::now();
    let log = dir.join(format!("boot-{label}.log"));
    boot_guest(qemu, &boot, &log)?;
    let booted = t.elapsed();
    println!(
        "e2e boot ({label}): kernel {}, {}: all {} steps passed; preparing the guest {}, booting and using the pool {}; console: {}",
        guest.krel,
        guest
            .debs
            .iter()
            .filter_map(|d| d.file_name())
            .map(|n| n.to_string_lossy())
            .collect::<Vec<_>>()
            .join(", "),
        BOOT_STEPS.len(),
        minutes(prepared),
        minutes(booted),
        log.display()
    );
    Ok((prepared, booted))
}

/// What a kernel package set is: its image package and kernel release.
struct KernelDebs {
    image: PathBuf,
    krel: String,
    /// The image's /boot/config-KREL, if it has one.
    config: Option<String>,
}

/// Finds the image package among `debs` (a `linux-image*` package with a
/// /boot/vmlinuz-KREL) and reads its kernel release and configuration.
fn kernel_debs(debs: &[PathBuf]) -> Result<KernelDebs> {
    for deb in debs {
        let control = zchroot::deb::read::read_control(deb)?;
        let package = control
            .lines()
            .find_map(|l| l.strip_prefix("Package: "))
            .unwrap_or_default();
        if !package.starts_with("linux-image") {
            continue;
        }
        let paths = zchroot::deb::read::data_paths(deb)?;
        let Some(vmlinuz) = paths
            .iter()
            .find_map(|p| p.trim_start_matches("./").strip_prefix("boot/vmlinuz-"))
        else {
            continue;
        };
        let krel = vmlinuz.to_string();
        let config = zchroot::deb::read::read_data_file(deb, &format!("./boot/config-{krel}"))?
            .map(|b| String::from_utf8_lossy(&b).into_owned());
        return Ok(KernelDebs {
            image: deb.clone(),
            krel,
            config,
        });
    }
    bail!(
        "no kernel image package (linux-image*, with a /boot/vmlinuz-*) among {debs:?}\nhelp: give the image and headers packages, each with --kernel-deb"
    )
}

/// Whether a kernel with this configuration needs an initrd to reach the
/// guest's init: when ext4, virtio-blk or a virtio transport is a module.
fn needs_initrd(config: Option<&str>) -> bool {
    let Some(config) = config else { return true };
    let built_in = |sym: &str| config.lines().any(|l| l == format!("CONFIG_{sym}=y"));
    !(built_in("EXT4_FS")
        && built_in("VIRTIO_BLK")
        && (built_in("VIRTIO_PCI") || built_in("VIRTIO_MMIO")))
}

/// The strategy build-zfs chose, and why, from its log (`KREL: strategy
/// NAME (REASON)` lines).
fn chosen_strategies(log: &str) -> Vec<String> {
    log.lines()
        .filter(|l| l.contains(": strategy "))
        .map(|l| l.trim().to_string())
        .collect()
}

/// `e2e boot --kernel-deb`: ZFS built by `build-zfs --kernel-deb` for the
/// user's kernel packages, a trixie guest with zfsutils-linux, kmod and
/// udev where the kernel image and the module package are installed with
/// `dpkg -i`, booted on the image's own /boot/vmlinuz (without an initrd
/// when the kernel needs none). Returns the time building ZFS, preparing
/// the guest and booted.
fn e2e_boot_debs(
    exe: &Path,
    strategy: Strategy,
    debs: &[PathBuf],
) -> Result<(Duration, Duration, Duration)> {
    let qemu = need_qemu()?;
    let k = kernel_debs(debs)?;
    let dir = target_dir().join("e2e");
    let label = format!("deb-{}-{}", k.krel, strategy.as_str());
    let out = dir.join(format!("out-{label}"));
    let log = dir.join(format!("zfs-{label}.log"));
    let mut args = vec!["--arch", "arm64", "--strategy", strategy.as_str()];
    for d in debs {
        args.push("--kernel-deb");
        args.push(d.to_str().context("a --kernel-deb path is not UTF-8")?);
    }
    // A package of an earlier run is built again: the kernel packages may
    // have changed under the same name.
    let _ = std::fs::remove_dir_all(&out);
    let (built, zfs_time) = build_zfs(exe, &dir.join("home"), &out, &args, &log)?;
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    for line in chosen_strategies(&text) {
        println!("build-zfs chose: {line}");
    }
    println!("build-zfs --kernel-deb: {} wall time", minutes(zfs_time));
    let deb = built
        .iter()
        .find(|p| p.to_string_lossy().contains("zfs-modules-"))
        .cloned()
        .or_else(|| find_module_deb(&out, &k.krel))
        .context("build-zfs made no zfs-modules package")?;
    let initrd = needs_initrd(k.config.as_deref());
    let mut include = "zfsutils-linux,kmod,udev".to_string();
    if initrd {
        include.push_str(",initramfs-tools");
    }
    let guest = Guest {
        root: format!("e2e-boot-debs{}", if initrd { "-initrd" } else { "" }),
        include,
        debs: vec![k.image.clone(), deb],
        krel: k.krel.clone(),
        initrd,
    };
    let (prepared, booted) = boot_and_check(exe, qemu, &dir, &label, &guest)?;
    Ok((zfs_time, prepared, booted))
}

/// The arm64 guest of `e2e boot`.
struct Guest {
    /// The root's name (made once, then reused).
    root: String,
    /// Its packages beyond minbase (`--include`).
    include: String,
    /// Packages installed into it with one `dpkg -i` each run.
    debs: Vec<PathBuf>,
    /// The kernel release booted.
    krel: String,
    /// Whether to boot with an initrd (made with update-initramfs).
    initrd: bool,
}

/// Makes (once) the guest root, installs `guest.debs` and the init into
/// it, and writes what qemu boots into `dir/boot-LABEL`: the kernel, the
/// initrd when there is one, the root as an ext4 image and a blank disk.
/// Returns that folder.
fn prepare_guest(exe: &Path, dir: &Path, label: &str, guest: &Guest) -> Result<PathBuf> {
    let home = dir.join("home");
    let z = |args: &[&str]| -> Result<std::process::Output> {
        let o = Command::new(exe)
            .args(args)
            .env("ZCHROOT_HOME", &home)
            .output()
            .with_context(|| format!("cannot run {}", exe.display()))?;
        if !o.status.success() {
            bail!(
                "zchroot {args:?} failed:\n{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            );
        }
        Ok(o)
    };
    let root = guest.root.as_str();
    let krel = guest.krel.as_str();
    // Made once, then reused: the packages and the init are put in again
    // each run.
    if !home.join("state/roots").join(root).join("root").exists() {
        z(&[
            "-q",
            "create",
            "--arch",
            "arm64",
            "--name",
            root,
            "--include",
            &guest.include,
        ])?;
    }
    let boot = dir.join(format!("boot-{label}"));
    let _ = std::fs::remove_dir_all(&boot);
    mkdir(&boot)?;
    let mut names = Vec::new();
    for deb in &guest.debs {
        let name = deb
            .file_name()
            .context("a package has no file name")?
            .to_string_lossy()
            .into_owned();
        std::fs::copy(deb, boot.join(&name))
            .with_context(|| format!("cannot copy {} to {}", deb.display(), boot.display()))?;
        names.push(format!("/e2e/{name}"));
    }
    write(&boot.join("init"), BOOT_INIT)?;
    let bind = format!("{}:/e2e:ro", boot.display());
    let initrd = if guest.initrd {
        format!("[ -e /boot/initrd.img-{krel} ] || update-initramfs -c -k {krel}")
    } else {
        "true".into()
    };
    z(&[
        "-q",
        "run",
        root,
        "--bind",
        &bind,
        "--",
        "sh",
        "-c",
        &format!(
            "set -e; dpkg -i {}; install -m 0755 /e2e/init /sbin/zchroot-boot-test; {initrd}",
            names.join(" ")
        ),
    ])?;
    let cat = |file: &str| z(&["-q", "run", root, "--", "cat", file]).map(|o| o.stdout);
    write(
        &boot.join("vmlinuz"),
        cat(&format!("/boot/vmlinuz-{krel}"))?,
    )?;
    if guest.initrd {
        write(
            &boot.join("initrd.img"),
            cat(&format!("/boot/initrd.img-{krel}"))?,
        )?;
    }
    let image = boot.join("guest.img");
    z(&[
        "-q",
        "export",
        root,
        "--format",
        "ext4",
        "-o",
        &image.to_string_lossy(),
    ])?;
    let blank = boot.join("blank.img");
    std::fs::File::create(&blank)
        .and_then(|f| f.set_len(512 << 20))
        .with_context(|| format!("cannot make {}", blank.display()))?;
    Ok(boot)
}

/// Boots what [`prepare_guest`] made with `qemu` and follows the guest's
/// steps on its console, which is written to `log`; fails at the first
/// step missing.
fn boot_guest(qemu: &str, boot: &Path, log: &Path) -> Result<()> {
    let t = Instant::now();
    let image = boot.join("guest.img");
    let blank = boot.join("blank.img");
    let mut cmd = Command::new(qemu);
    cmd.args([
        "-M",
        "virt",
        "-cpu",
        "cortex-a57",
        "-m",
        "2048",
        "-smp",
        "2",
        "-nographic",
        "-no-reboot",
    ])
    .args(["-net", "none", "-kernel"])
    .arg(boot.join("vmlinuz"));
    let initrd = boot.join("initrd.img");
    if initrd.exists() {
        cmd.arg("-initrd").arg(initrd);
    }
    let mut child = cmd
        .args(["-append", "root=/dev/vda rw rootfstype=ext4 console=ttyAMA0 init=/sbin/zchroot-boot-test panic=-1"])
        .arg("-drive")
        .arg(format!("file={},if=virtio,format=raw", image.display()))
        .arg("-drive")
        .arg(format!("file={},if=virtio,format=raw", blank.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("cannot run {qemu}"))?;
    let stdout = child.stdout.take().context("qemu's stdout is not a pipe")?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let limit = Duration::from_secs(30 * 60);
    let mut console = String::new();
    let mut next = 0;
    while next < BOOT_STEPS.len() {
        let left = limit.saturating_sub(t.elapsed());
        match rx.recv_timeout(left) {
            Ok(line) => {
                let line = line.trim_end_matches('\r').to_string();
                if line.contains(BOOT_STEPS[next]) {
                    eprintln!("  {line}");
                    next += 1;
                }
                if line.contains("ZCHROOT-FAIL") || line.contains("Kernel panic") {
                    console.push_str(&line);
                    console.push('\n');
                    break;
                }
                console.push_str(&line);
                console.push('\n');
            }
            Err(_) => break,
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    write(log, &console)?;
    if next < BOOT_STEPS.len() {
        bail!(
            "the guest did not print '{}' (after {:.0} s); the console is in {}",
            BOOT_STEPS[next],
            t.elapsed().as_secs_f64(),
            log.display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from(["xtask", "e2e", "boot", "--strategy", "emulate"]).unwrap();
        assert!(matches!(
            cli.task,
            Task::E2e(E2e::Boot {
                strategy: Some(Strategy::Emulate),
                kernel_deb,
            }) if kernel_deb.is_empty()
        ));
        let cli = Cli::try_parse_from([
            "xtask",
            "e2e",
            "boot",
            "--kernel-deb",
            "i.deb",
            "--kernel-deb",
            "h.deb",
        ])
        .unwrap();
        assert!(matches!(
            cli.task,
            Task::E2e(E2e::Boot {
                strategy: None,
                kernel_deb,
            }) if kernel_deb == [PathBuf::from("i.deb"), PathBuf::from("h.deb")]
        ));
        assert!(matches!(
            Cli::try_parse_from(["xtask", "kernel-fixture"])
                .unwrap()
                .task,
            Task::KernelFixture
        ));
        let cli = Cli::try_parse_from(["xtask", "bench", "index"]).unwrap();
        assert!(matches!(cli.task, Task::Bench(Bench::Index { arch }) if arch == "arm64"));
        assert!(Cli::try_parse_from(["xtask", "e2e", "zfs", "--strategy", "fast"]).is_err());
        let cli = Cli::try_parse_from(["xtask", "bench", "create", "--variant", "buildd"]).unwrap();
        assert!(matches!(cli.task,
            Task::Bench(Bench::Create { arch, variant }) if arch == "arm64" && variant == "buildd"));
    }

    #[test]
    fn a_kernel_with_its_root_disk_built_in_boots_without_an_initrd() {
        let built_in = "CONFIG_EXT4_FS=y\nCONFIG_VIRTIO_BLK=y\nCONFIG_VIRTIO_PCI=y\n";
        assert!(!needs_initrd(Some(built_in)));
        assert!(needs_initrd(Some(
            &built_in.replace("EXT4_FS=y", "EXT4_FS=m")
        )));
        assert!(needs_initrd(Some(
            "CONFIG_EXT4_FS=y\nCONFIG_VIRTIO_PCI=y\n"
        )));
        assert!(!needs_initrd(Some(
            "CONFIG_EXT4_FS=y\nCONFIG_VIRTIO_BLK=y\nCONFIG_VIRTIO_MMIO=y\n"
        )));
        assert!(needs_initrd(None));
        let log =
            "resolve: done\n6.12.118-zfixture: strategy cross (rebuilt helpers)\nbuild: done\n";
        assert_eq!(
            chosen_strategies(log),
            ["6.12.118-zfixture: strategy cross (rebuilt helpers)"]
        );
    }

    #[test]
    fn ci_prints_each_parts_time_and_the_total() {
        let t = ci_times(
            &[
                ("fmt".into(), Duration::from_secs(6)),
                ("e2e boot".into(), Duration::from_secs(900)),
            ],
            Duration::from_secs(906),
        );
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].starts_with("ci: time of each part ("), "{t}");
        assert!(lines[0].ends_with("budget 75.0 min):"), "{t}");
        assert!(
            lines[1].starts_with("  fmt ") && lines[1].ends_with(" 0.1 min"),
            "{t}"
        );
        assert!(
            lines[2].starts_with("  e2e boot ") && lines[2].ends_with(" 15.0 min"),
            "{t}"
        );
        assert!(
            lines[3].starts_with("  total ") && lines[3].ends_with(" 15.1 min"),
            "{t}"
        );
        assert_eq!(lines.len(), 4);
    }

    #[test]
    fn timings_add_up_a_phase_seen_twice() {
        let t = parse_timings("update 1.5\nresolve 0.25\nupdate 0.5\nbad line\n");
        assert_eq!(
            t,
            vec![("update".to_string(), 2.0), ("resolve".to_string(), 0.25)]
        );
        let m = Manifests::embedded();
        let line = binfmt_line(
            &m.arch("arm64").unwrap(),
            Path::new("/usr/bin/qemu-aarch64-static"),
        );
        assert!(
            line.starts_with(":zchroot-bench-aarch64:M::\\x7f\\x45\\x4c\\x46"),
            "{line}"
        );
        assert!(line.ends_with(":/usr/bin/qemu-aarch64-static:F"), "{line}");
    }

    #[test]
    fn the_executable_is_the_bin_targets_in_cargos_messages() {
        let messages = br#"{"reason":"compiler-artifact","target":{"name":"zchroot","kind":["lib"]},"executable":null}
not json
{"reason":"compiler-artifact","target":{"name":"zchroot","kind":["bin"]},"executable":"/t/custom/release/zchroot"}
{"reason":"build-finished","success":true}
"#;
        assert_eq!(
            executable_of(messages, "zchroot").unwrap(),
            PathBuf::from("/t/custom/release/zchroot")
        );
        let e = executable_of(b"{\"reason\":\"build-finished\"}\n", "zchroot").unwrap_err();
        assert_eq!(
            e.to_string(),
            "cargo build named no executable for the zchroot binary"
        );
    }
}
