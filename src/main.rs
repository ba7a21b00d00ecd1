//! The `zchroot` binary: parses the command line, runs the command, renders
//! progress with indicatif, prints the error chain and sets the exit status.

mod cli;

use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use anyhow::Context;
use clap::Parser;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use zchroot::archive::fetch::FetchOptions;
use zchroot::manifest::Manifests;
use zchroot::paths::{DataDirs, DirsEnv};
use zchroot::report::{Phase, Reporter, Silent};
use zchroot::target::{Target, TargetSpec};

use cli::{
    BuildArgs, BuildDkmsArgs, BuildZfsArgs, Cli, Command, CreateArgs, DestroyArgs, ListArgs,
    ResolveArgs, SandboxArgs, TargetArgs,
};
use zchroot::rootfs::create::CreateSpec;
use zchroot::rootfs::Roots;
use zchroot::sandbox::{self, mounts::Bind, RunSpec};

/// Renders progress: one bar per phase, bytes when known, else items.
struct Bars {
    verbose: bool,
    bar: Mutex<Option<ProgressBar>>,
    items: AtomicU64,
    total_items: AtomicU64,
}

impl Bars {
    fn new(verbose: bool) -> Self {
        Bars {
            verbose,
            bar: Mutex::new(None),
            items: AtomicU64::new(0),
            total_items: AtomicU64::new(0),
        }
    }
    fn with(&self, f: impl FnOnce(&ProgressBar)) {
        if let Some(b) = self.bar.lock().unwrap().as_ref() {
            f(b)
        }
    }
}

impl Reporter for Bars {
    fn phase(&self, phase: Phase, items: u64, bytes: u64) {
        let bar = if bytes > 0 {
            ProgressBar::new(bytes).with_style(
                ProgressStyle::with_template(
                    "{prefix:>9} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {msg}",
                )
                .unwrap()
                .progress_chars("=> "),
            )
        } else if items > 0 {
            ProgressBar::new(items).with_style(
                ProgressStyle::with_template("{prefix:>9} [{bar:30}] {pos}/{len} {msg}")
                    .unwrap()
                    .progress_chars("=> "),
            )
        } else {
            ProgressBar::new_spinner()
                .with_style(ProgressStyle::with_template("{prefix:>9} {spinner} {msg}").unwrap())
        };
        bar.set_draw_target(ProgressDrawTarget::stderr());
        bar.set_prefix(phase.name());
        self.items.store(0, Ordering::Relaxed);
        self.total_items.store(items, Ordering::Relaxed);
        if bytes > 0 {
            bar.set_message(format!("0/{items} files"));
        }
        bar.enable_steady_tick(std::time::Duration::from_millis(120));
        if let Some(old) = self.bar.lock().unwrap().replace(bar) {
            old.finish_and_clear();
        }
    }
    fn bytes(&self, n: u64) {
        self.with(|b| {
            if b.length().is_some()
                && self.total_items.load(Ordering::Relaxed) != b.length().unwrap()
            {
                b.inc(n)
            }
        });
    }
    fn item_done(&self, name: &str) {
        let done = self.items.fetch_add(1, Ordering::Relaxed) + 1;
        let total = self.total_items.load(Ordering::Relaxed);
        self.with(|b| {
            if b.length() == Some(total) {
                b.inc(1);
            } else {
                b.set_message(format!("{done}/{total} files"));
            }
            if self.verbose {
                b.println(format!("  {name}"));
            }
        });
    }
    fn note(&self, message: &str) {
        if self.verbose {
            match self.bar.lock().unwrap().as_ref() {
                Some(b) => b.println(format!("  {message}")),
                None => eprintln!("  {message}"),
            }
        }
    }
    fn finish(&self) {
        if let Some(b) = self.bar.lock().unwrap().take() {
            b.finish_and_clear();
        }
    }
}

fn spec(t: &TargetArgs) -> TargetSpec {
    TargetSpec {
        arch: t.arch.clone(),
        release: t.suite.clone(),
        variant: t.variant.clone(),
        include: t
            .include
            .iter()
            .filter(|s| !s.is_empty())
            .cloned()
            .collect(),
        mirror: t.mirror.clone(),
        keyring: t.keyring.clone(),
    }
}

fn fetch_options(t: &TargetArgs) -> FetchOptions {
    FetchOptions {
        parallel: t.parallel as usize,
        ..FetchOptions::default()
    }
}

fn resolve(
    cli: &Cli,
    manifests: &Manifests,
    args: &ResolveArgs,
    reporter: &dyn Reporter,
) -> anyhow::Result<()> {
    let target = Target::new(manifests, &spec(&args.target))?;
    let dirs = DataDirs::resolve(&DirsEnv::from_process())?;
    let fetcher = target.fetcher(&dirs, fetch_options(&args.target), reporter)?;
    let indexes = target.update(&fetcher, reporter)?;
    let plan = target.resolve(&indexes, reporter)?;
    let packages: Vec<_> = plan.packages.iter().map(|(p, _)| *p).collect();
    let paths = if args.download {
        Some(target.download(&fetcher, &packages, reporter)?)
    } else {
        None
    };
    if args.json {
        let list: Vec<_> = plan
            .packages
            .iter()
            .enumerate()
            .map(|(i, (p, reason))| {
                serde_json::json!({
                    "name": p.name,
                    "version": p.version,
                    "architecture": p.arch,
                    "suite": p.origin.suite,
                    "component": p.origin.component,
                    "filename": p.filename,
                    "size": p.size,
                    "sha256": p.sha256,
                    "reason": reason,
                    "cached": paths.as_ref().map(|v| v[i].display().to_string()),
                })
            })
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "release": target.release.release,
                "architecture": target.arch.name,
                "variant": target.variant,
                "packages": list,
            }))?
        );
    } else {
        for (p, _) in &plan.packages {
            println!("{} {} {} {}", p.name, p.version, p.arch, p.origin.suite);
        }
        if !cli.quiet {
            let size: u64 = packages.iter().map(|p| p.size).sum();
            eprintln!(
                "{} packages, {:.1} MiB to download{}",
                packages.len(),
                size as f64 / (1 << 20) as f64,
                if paths.is_some() {
                    ", all in the cache and verified"
                } else {
                    ""
                }
            );
        }
    }
    Ok(())
}

/// Runs `argv` in the sandbox; returns the command's exit status.
fn run_in_sandbox(
    manifests: &Manifests,
    args: &SandboxArgs,
    argv: Vec<String>,
    reporter: &dyn Reporter,
) -> anyhow::Result<u8> {
    let binds = args
        .bind
        .iter()
        .map(|b| {
            let bind = Bind::parse(b)?;
            if !bind.host.exists() {
                return Err(zchroot::sandbox::mounts::BindError::Missing {
                    spec: b.clone(),
                    path: bind.host.display().to_string(),
                });
            }
            Ok(bind)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let dirs = DataDirs::resolve(&DirsEnv::from_process())?;
    let roots = Roots::new(&dirs);
    let (root, arch, release, mirror, _lock) = match (&args.name, &args.dir) {
        (Some(name), _) => {
            Roots::check_name(name)?;
            let lock = roots.lock_shared(name, || {
                reporter.note(&format!("waiting: '{name}' is being created or changed"))
            })?;
            let meta = roots.meta(name)?;
            roots.touch(name);
            (
                roots.tree(name),
                Some(meta.arch),
                meta.release,
                args.mirror.clone().or(meta.mirror),
                Some(lock),
            )
        }
        (None, Some(dir)) => (
            dir.clone(),
            args.arch.clone(),
            "trixie".to_string(),
            args.mirror.clone(),
            None,
        ),
        (None, None) => unreachable!("clap requires NAME or --dir"),
    };
    let spec = RunSpec {
        root,
        arch: args.arch.clone().or(arch),
        release: args.suite.clone().unwrap_or(release),
        mirror,
        binds,
        share_network: args.network == "host",
        hostname: "zchroot".into(),
        argv,
        cwd: args.cwd.clone(),
    };
    let (mut plan, maps, _) =
        sandbox::prepare(manifests, &spec, &dirs, FetchOptions::default(), reporter)?;
    // `run` and `shell` talk to the caller (through a pty of their own).
    plan.stdio = sandbox::spawn::Stdio::Interactive;
    reporter.finish();
    let exe = std::env::current_exe().context("finding zchroot's own executable")?;
    let code = sandbox::spawn::run(&exe, &plan, &maps)?;
    Ok(code.clamp(0, 255) as u8)
}

fn create(manifests: &Manifests, args: &CreateArgs, reporter: &dyn Reporter) -> anyhow::Result<u8> {
    let dirs = DataDirs::resolve(&DirsEnv::from_process())?;
    let exe = std::env::current_exe().context("finding zchroot's own executable")?;
    let spec = CreateSpec {
        target: spec(&args.target),
        name: args.name.clone(),
        force: args.force,
    };
    let created = zchroot::rootfs::create::create(
        manifests,
        &spec,
        &dirs,
        fetch_options(&args.target),
        &exe,
        reporter,
    )?;
    println!("{} {}", created.name, created.path.display());
    Ok(0)
}

fn build_spec(source: String, sha256: Option<String>, b: &BuildArgs) -> zchroot::kmod::BuildSpec {
    zchroot::kmod::BuildSpec {
        source,
        sha256,
        arch: b.arch.clone(),
        release: b.suite.clone(),
        mirror: b.mirror.clone(),
        keyring: b.keyring.clone(),
        kernels: b.kernels.clone(),
        flavour: b.flavour.clone(),
        out: b.output.clone(),
        package_version: None,
        kernel_debs: b.kernel_debs.clone(),
        strategy: b.strategy.parse().unwrap_or_default(),
        sign: b.sign_key.clone().zip(b.sign_cert.clone()),
    }
}

/// Prints what was built; exit status 1 if any kernel failed.
fn report_builds(
    results: Vec<Result<zchroot::kmod::Built, zchroot::kmod::BuildError>>,
    arch: &str,
) -> u8 {
    let mut failed = 0;
    for r in results {
        match r {
            Ok(b) => {
                println!("{}", b.deb.display());
                eprintln!(
                    "  {} {} for {} ({arch}, {}): Depends: {}; modules {}; compiler {}; {}",
                    b.module,
                    b.version,
                    b.kernel.release,
                    b.strategy,
                    b.kernel.depends(),
                    b.modules.join(", "),
                    b.compiler,
                    match (b.signed, b.signed_with_given_key) {
                        (true, true) => "signed with your key",
                        (true, false) => "signed with the build root's throwaway DKMS key (not trusted by Secure Boot)",
                        (false, _) => "unsigned",
                    }
                );
            }
            Err(e) => {
                failed += 1;
                eprintln!("error: {e}");
            }
        }
    }
    u8::from(failed > 0)
}

fn build_dkms(
    manifests: &Manifests,
    args: &BuildDkmsArgs,
    reporter: &dyn Reporter,
) -> anyhow::Result<u8> {
    let dirs = DataDirs::resolve(&DirsEnv::from_process())?;
    let exe = std::env::current_exe().context("finding zchroot's own executable")?;
    let spec = build_spec(args.source.clone(), args.sha256.clone(), &args.build);
    let results = zchroot::kmod::build_dkms(
        manifests,
        &spec,
        &dirs,
        FetchOptions::default(),
        &exe,
        reporter,
    )?;
    Ok(report_builds(results, &args.build.arch))
}

fn build_zfs(
    manifests: &Manifests,
    args: &BuildZfsArgs,
    reporter: &dyn Reporter,
) -> anyhow::Result<u8> {
    let dirs = DataDirs::resolve(&DirsEnv::from_process())?;
    let exe = std::env::current_exe().context("finding zchroot's own executable")?;
    let spec = zchroot::kmod::ZfsSpec {
        base: build_spec(String::new(), args.sha256.clone(), &args.build),
        zfs: args.zfs.clone(),
        zfs_source: args.zfs_source.clone(),
    };
    let (results, utils) = zchroot::kmod::build_zfs(
        manifests,
        &spec,
        &dirs,
        FetchOptions::default(),
        &exe,
        reporter,
    )?;
    let code = report_builds(results, &args.build.arch);
    if let Some(v) = utils {
        eprintln!(
            "  on the board: apt-get install zfsutils-linux={v} (userland matching the module)"
        );
    }
    Ok(code)
}

fn export(args: &cli::ExportArgs, reporter: &dyn Reporter) -> anyhow::Result<u8> {
    let dirs = DataDirs::resolve(&DirsEnv::from_process())?;
    let roots = Roots::new(&dirs);
    let format: zchroot::export::Format = args.format.parse().map_err(anyhow::Error::msg)?;
    let (root, _lock) = match (&args.name, &args.dir) {
        (Some(name), _) => {
            Roots::check_name(name)?;
            let lock = roots.lock_shared(name, || {
                reporter.note(&format!("waiting: '{name}' is being created or changed"))
            })?;
            roots.meta(name)?;
            (roots.tree(name), Some(lock))
        }
        (None, Some(dir)) => (dir.clone(), None),
        (None, None) => unreachable!("clap requires NAME or --dir"),
    };
    let root = std::fs::canonicalize(&root)
        .ok()
        .filter(|p| p.is_dir() && p != std::path::Path::new("/"))
        .with_context(|| format!("{}: not a directory holding a root", root.display()))?;
    let out = std::path::absolute(&args.output)?;
    // The export writes a temporary file it creates exclusively next to
    // `out` and renames it over `out` (zchroot::atomic).
    let maps = sandbox::id_maps()?;
    if maps.helpers {
        // Rootless: inside the user namespace, where owners read as inside
        // the root and every file can be read.
        let exe = std::env::current_exe().context("finding zchroot's own executable")?;
        let job = sandbox::spawn::Job::Export {
            root: root.clone(),
            format,
            out: out.clone(),
        };
        match sandbox::spawn::run(&exe, &sandbox::spawn::Plan::host_job(job), &maps)? {
            0 => {}
            code => anyhow::bail!("the export job ended with status {code}"),
        }
    } else {
        zchroot::export::export(&root, format, &out)?;
    }
    println!("{}", out.display());
    Ok(0)
}

fn config_targets() -> anyhow::Result<zchroot::targets::Targets> {
    Ok(zchroot::targets::Targets::new(&DataDirs::config(
        &DirsEnv::from_process(),
    )?))
}

fn target_cmd(c: &cli::TargetCommand) -> anyhow::Result<u8> {
    let ts = config_targets()?;
    match c {
        cli::TargetCommand::Add(a) => {
            let abs =
                |p: &Option<std::path::PathBuf>| -> anyhow::Result<Option<std::path::PathBuf>> {
                    p.as_ref()
                        .map(|p| std::path::absolute(p).with_context(|| p.display().to_string()))
                        .transpose()
                };
            // A module directory is kept as an absolute path.
            let module = if std::path::Path::new(&a.module).is_dir() {
                std::path::absolute(&a.module)?.display().to_string()
            } else {
                a.module.clone()
            };
            let t = zchroot::targets::TargetFile {
                arch: a.arch.clone(),
                suite: a.suite.clone(),
                flavour: a.flavour.clone(),
                module,
                suites: a.suites.clone(),
                kernel_deb_dir: abs(&a.kernel_deb_dir)?,
                mirror: a.mirror.clone(),
                keyring: abs(&a.keyring)?,
                repo: abs(&a.repo)?,
                strategy: a.strategy.parse()?,
            };
            let config = DataDirs::config(&DirsEnv::from_process())?;
            let dirs = DataDirs::resolve(&DirsEnv::from_process())?;
            zchroot::update::check_repo(&a.name, &t, &dirs, Some(&config))?;
            let path = ts.save(&a.name, &t, a.force)?;
            println!("{}", path.display());
        }
        cli::TargetCommand::List => {
            for n in ts.names()? {
                let t = ts.load(&n)?;
                println!("{n:<20} {:<8} {:<10} {}", t.arch, t.suite, t.module);
            }
        }
        cli::TargetCommand::Show { name } => {
            ts.load(name)?;
            print!("{}", std::fs::read_to_string(ts.path(name))?);
        }
        cli::TargetCommand::Remove { name } => ts.remove(name)?,
    }
    Ok(0)
}

fn update(
    manifests: &Manifests,
    args: &cli::UpdateArgs,
    reporter: &dyn Reporter,
) -> anyhow::Result<u8> {
    let env = DirsEnv::from_process();
    let exe = std::env::current_exe().context("finding zchroot's own executable")?;
    if args.install_timer || args.remove_timer {
        return timer(&exe, &env, args);
    }
    let dirs = DataDirs::resolve(&env)?;
    let ts = config_targets()?;
    let names = if args.names.is_empty() {
        ts.names()?
    } else {
        args.names.clone()
    };
    if names.is_empty() {
        anyhow::bail!("no targets\nhelp: zchroot target add NAME --arch arm64 --suite trixie");
    }
    let mut code = 0;
    let mut summaries = Vec::new();
    for name in &names {
        let t = ts.load(name)?;
        let r = zchroot::update::update_target(
            manifests,
            name,
            &t,
            args.keep,
            &dirs,
            FetchOptions::default(),
            &exe,
            reporter,
        );
        reporter.finish();
        match r {
            Ok(s) => {
                if !s.failed.is_empty() {
                    code = 1;
                }
                if !args.json {
                    eprintln!(
                        "{}: kernels seen {}, built {}, already there {}, failed {}{}; repository {}",
                        s.target,
                        s.seen,
                        s.built.len(),
                        s.present,
                        s.failed.len(),
                        if s.pruned.is_empty() {
                            String::new()
                        } else {
                            format!(", pruned {}", s.pruned.len())
                        },
                        s.repo.display()
                    );
                    for k in &s.built {
                        eprintln!("  built for {k}");
                    }
                    for f in &s.failed {
                        eprintln!("  failed: {f}");
                    }
                }
                summaries.push(s);
            }
            Err(e) => {
                code = 1;
                eprintln!("error: {name}: {e}");
            }
        }
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summaries)?);
    }
    Ok(code)
}

fn timer(exe: &std::path::Path, env: &DirsEnv, args: &cli::UpdateArgs) -> anyhow::Result<u8> {
    let home = env.zchroot_home.as_deref();
    let systemd = std::path::Path::new("/run/systemd/system").is_dir();
    let unit_dir = if env.is_root {
        std::path::PathBuf::from("/etc/systemd/system")
    } else {
        match (&env.xdg_config_home, &env.home) {
            (Some(c), _) => c.join("systemd/user"),
            (None, Some(h)) => h.join(".config/systemd/user"),
            (None, None) => {
                anyhow::bail!("HOME is not set: cannot find the systemd user unit directory")
            }
        }
    };
    let service = unit_dir.join("zchroot-update.service");
    let timer = unit_dir.join("zchroot-update.timer");
    let systemctl = if env.is_root {
        "systemctl"
    } else {
        "systemctl --user"
    };
    if args.remove_timer {
        for p in [&timer, &service] {
            match std::fs::remove_file(p) {
                Ok(()) => eprintln!("removed {}", p.display()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e).with_context(|| p.display().to_string()),
            }
        }
        eprintln!("then: {systemctl} daemon-reload (and stop zchroot-update.timer if it runs)");
        return Ok(0);
    }
    if !systemd {
        println!("{}", zchroot::update::cron_line(exe, home));
        eprintln!("no systemd here: add the line above to your crontab (crontab -e)");
        return Ok(0);
    }
    let (s, t) = zchroot::update::timer_units(exe, &args.every, home);
    std::fs::create_dir_all(&unit_dir).with_context(|| unit_dir.display().to_string())?;
    std::fs::write(&service, s).with_context(|| service.display().to_string())?;
    std::fs::write(&timer, t).with_context(|| timer.display().to_string())?;
    println!("{}\n{}", service.display(), timer.display());
    eprintln!("then: {systemctl} daemon-reload && {systemctl} enable --now zchroot-update.timer");
    Ok(0)
}

fn repo_cmd(manifests: &Manifests, c: &cli::RepoCommand) -> anyhow::Result<u8> {
    let dirs = DataDirs::resolve(&DirsEnv::from_process())?;
    let ts = config_targets()?;
    match c {
        cli::RepoCommand::Key { name, url } => {
            let t = ts.load(name)?;
            let repo = zchroot::update::repo_of(name, &t, &dirs);
            let key = zchroot::repo::key::RepoKey::load_or_generate(&repo.key_path, name)?;
            let (keyfile, sources) = zchroot::repo::board_lines(&repo, url);
            let flavour = match &t.flavour {
                Some(f) => f.clone(),
                None => manifests.arch(&t.arch)?.kernel_flavour,
            };
            print!("{}", String::from_utf8_lossy(&key.public_armored()?));
            eprintln!(
                "On the board, as root: save the key above as {keyfile}, and this as /etc/apt/sources.list.d/zchroot-{name}.sources:\n\n{sources}\nthen: apt-get update && apt-get install {}",
                zchroot::update::meta_name(
                    &zchroot::update::module_name(&t),
                    &flavour
                )
            );
        }
        cli::RepoCommand::Serve { name, listen } => {
            let t = ts.load(name)?;
            zchroot::update::check_repo(name, &t, &dirs, None)?;
            let repo = zchroot::update::repo_of(name, &t, &dirs);
            if !repo.dir.join("dists").exists() {
                anyhow::bail!(
                    "{}: nothing published yet\nhelp: zchroot update {name}",
                    repo.dir.display()
                );
            }
            let l = std::net::TcpListener::bind(listen)
                .with_context(|| format!("listening on {listen}"))?;
            println!(
                "serving {} on http://{}/",
                repo.dir.display(),
                l.local_addr()?
            );
            use std::io::Write;
            std::io::stdout().flush()?;
            let opts = zchroot::repo::serve::ServeOptions::default();
            match zchroot::repo::serve::serve(l, &repo.dir, opts)
                .with_context(|| format!("serving {}", repo.dir.display()))? {}
        }
    }
    Ok(0)
}

fn list(args: &ListArgs) -> anyhow::Result<u8> {
    let dirs = DataDirs::resolve(&DirsEnv::from_process())?;
    let rows = Roots::new(&dirs).list()?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(0);
    }
    let date = |t: u64| {
        zchroot::archive::release::format_date(
            std::time::UNIX_EPOCH + std::time::Duration::from_secs(t),
        )
    };
    println!(
        "{:<20} {:<8} {:<10} {:<8} {:>9}  {:<29}  LAST USED",
        "NAME", "ARCH", "SUITE", "VARIANT", "SIZE", "CREATED"
    );
    for r in rows {
        println!(
            "{:<20} {:<8} {:<10} {:<8} {:>7.0}Mi  {:<29}  {}",
            r.meta.name,
            r.meta.arch,
            r.meta.release,
            r.meta.variant,
            r.size_bytes as f64 / (1 << 20) as f64,
            date(r.meta.created),
            r.last_used.map(date).unwrap_or_else(|| "never".into())
        );
    }
    Ok(0)
}

fn destroy(args: &DestroyArgs, reporter: &dyn Reporter) -> anyhow::Result<u8> {
    let dirs = DataDirs::resolve(&DirsEnv::from_process())?;
    let roots = Roots::new(&dirs);
    let exe = std::env::current_exe().context("finding zchroot's own executable")?;
    let maps = sandbox::id_maps()?;
    let names = if args.all {
        roots.names()
    } else {
        args.names.clone()
    };
    for name in &names {
        Roots::check_name(name)?;
        roots.meta(name)?; // says what exists when the name is wrong
    }
    for name in &names {
        let _lock = roots.lock_exclusive(name, || {
            reporter.note(&format!(
                "waiting for another zchroot that is using '{name}'"
            ))
        })?;
        let doomed = roots.doomed(name);
        zchroot::rootfs::create::remove_as_owner(&exe, &maps, &roots.path(name), Some(&doomed))
            .map_err(|e| anyhow::anyhow!("removing {}: {e}", roots.path(name).display()))?;
        println!("destroyed {name}");
    }
    if args.all {
        // Qemu entries a killed run left in the host's binfmt_misc.
        if let Err(e) = sandbox::host_binfmt::remove_stale(&exe) {
            eprintln!("warning: {e}");
        }
        for old in roots.leftovers() {
            zchroot::rootfs::create::remove_as_owner(&exe, &maps, &old, None)
                .map_err(|e| anyhow::anyhow!("removing {}: {e}", old.display()))?;
        }
        let _ = std::fs::remove_dir(&roots.dir);
        let _ = zchroot::teardown::remove_tree(&dirs.state.join("locks"));
        let _ = std::fs::remove_dir(&dirs.state);
    }
    if args.purge_cache {
        zchroot::teardown::remove_tree(&dirs.cache)?;
        println!("emptied the cache {}", dirs.cache.display());
    }
    Ok(0)
}

fn doctor(manifests: &Manifests, args: &cli::DoctorArgs) -> anyhow::Result<u8> {
    use zchroot::doctor::{checks, Status};
    let json = args.json;
    let dirs = DataDirs::resolve(&DirsEnv::from_process())?;
    let exe = std::env::current_exe().context("finding zchroot's own executable")?;
    let private = [
        dirs.state.clone(),
        Roots::new(&dirs).dir,
        dirs.cache.clone(),
    ];
    if args.fix {
        let fixed = zchroot::doctor::fix(&private, &exe);
        for l in &fixed.done {
            eprintln!("fixed: {l}");
        }
        for l in &fixed.failed {
            eprintln!("could not fix: {l}");
        }
    }
    let mut facts = zchroot::host::facts(&dirs.state, &private);
    if sandbox::host_binfmt::uses_host_table() {
        facts.stale_binfmt =
            Some(sandbox::host_binfmt::stale_entries(&exe).map_err(|e| e.to_string()));
    }
    let host = zchroot::host::host_arch(manifests).ok();
    let foreign: Vec<_> = manifests
        .architectures()?
        .into_iter()
        .filter(|a| host.as_ref().is_none_or(|h| h.name != a.name))
        .collect();
    let list = checks(&facts, &foreign);
    let failed = list.iter().any(|c| c.status == Status::Fail);
    if json {
        println!("{}", serde_json::to_string_pretty(&list)?);
    } else {
        for c in &list {
            let mark = match c.status {
                Status::Ok => "ok  ",
                Status::Warn => "warn",
                Status::Fail => "FAIL",
            };
            println!("{mark} {:<24} {}", c.name, c.detail);
            if let Some(h) = &c.help {
                println!("     {:<24} help: {h}", "");
            }
        }
    }
    Ok(if failed { 1 } else { 0 })
}

fn run(cli: &Cli) -> anyhow::Result<u8> {
    let manifests = match &cli.manifests {
        Some(dir) => Manifests::from_dir(dir)?,
        None => Manifests::embedded(),
    };
    let bars;
    let reporter: &dyn Reporter = if cli.quiet {
        &Silent
    } else {
        bars = Bars::new(cli.verbose);
        &bars
    };
    if matches!(
        cli.command,
        Command::Run(_)
            | Command::Shell(_)
            | Command::Create(_)
            | Command::BuildDkms(_)
            | Command::BuildZfs(_)
            | Command::Update(_)
    ) {
        // What a killed run left in the host's binfmt_misc (kernels before 6.7).
        let exe = std::env::current_exe().context("finding zchroot's own executable")?;
        if let Err(e) = sandbox::host_binfmt::remove_stale(&exe) {
            eprintln!("warning: {e}");
        }
    }
    match &cli.command {
        Command::Resolve(args) => resolve(cli, &manifests, args, reporter)
            .context("resolve failed")
            .map(|()| 0),
        Command::Run(args) => {
            run_in_sandbox(&manifests, &args.sandbox, args.command.clone(), reporter)
        }
        Command::Doctor(args) => doctor(&manifests, args),
        Command::Create(args) => create(&manifests, args, reporter).context("create failed"),
        Command::List(args) => list(args),
        Command::BuildDkms(args) => {
            build_dkms(&manifests, args, reporter).context("build-dkms failed")
        }
        Command::BuildZfs(args) => {
            build_zfs(&manifests, args, reporter).context("build-zfs failed")
        }
        Command::Destroy(args) => destroy(args, reporter).context("destroy failed"),
        Command::Export(args) => export(args, reporter).context("export failed"),
        Command::Target(c) => target_cmd(c),
        Command::Update(args) => update(&manifests, args, reporter).context("update failed"),
        Command::Repo(c) => repo_cmd(&manifests, c),
        Command::Shell(args) => {
            let argv = vec![
                "/bin/sh".to_string(),
                "-c".to_string(),
                "if command -v bash >/dev/null; then exec bash -l; else exec sh -l; fi".to_string(),
            ];
            run_in_sandbox(&manifests, &args.sandbox, argv, reporter)
        }
    }
}

fn main() -> ExitCode {
    // The sandbox helper must start before anything else (no threads).
    if std::env::args_os().nth(1).as_deref()
        == Some(std::ffi::OsStr::new(sandbox::spawn::HELPER_ARG))
    {
        sandbox::spawn::helper_main();
    }
    if std::env::args_os().nth(1).as_deref()
        == Some(std::ffi::OsStr::new(sandbox::host_binfmt::HELPER_ARG))
    {
        sandbox::host_binfmt::helper_main();
    }
    let cli = Cli::parse();
    match run(&cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            let mut msg = format!("error: {e}");
            for cause in e.chain().skip(1) {
                msg.push_str(&format!("\n  caused by: {cause}"));
            }
            eprintln!("{msg}");
            ExitCode::from(1)
        }
    }
}
