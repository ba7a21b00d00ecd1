//! The `zchroot` binary: parses the command line, builds the [`Ctx`] once,
//! calls the command (`zchroot::cmd`), renders its result (and progress,
//! through `progress`), prints the error chain and sets the exit status.

mod cli;
mod progress;

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;

use zchroot::archive::fetch::FetchOptions;
use zchroot::cmd::{self, Ctx};
use zchroot::manifest::Manifests;
use zchroot::paths::{DataDirs, DirsEnv};
use zchroot::report::Reporter;
use zchroot::sandbox;

use cli::{Cli, Command, RepoCommand, TargetCommand};
use progress::{Bars, WarningsOnly};

/// Prints what was built; exit status 1 if any kernel failed.
fn report_builds(results: cmd::build::Builds, arch: &str) -> u8 {
    let mut failed = false;
    for r in results {
        match r {
            Ok(b) => {
                println!("{}", b.deb.display());
                eprintln!("{}", cmd::build::describe(&b, arch));
            }
            Err(e) => {
                failed = true;
                eprintln!("error: {e}");
            }
        }
    }
    u8::from(failed)
}

/// `zchroot update`: the timer, or the targets one by one.
fn update(ctx: &Ctx, args: &cli::UpdateArgs) -> anyhow::Result<u8> {
    if args.remove_timer {
        let (units, removed) = cmd::timer::remove(ctx)?;
        for p in removed {
            eprintln!("removed {}", p.display());
        }
        eprintln!(
            "then: {} daemon-reload (and stop zchroot-update.timer if it runs)",
            units.systemctl
        );
    } else if args.install_timer {
        match cmd::timer::install(ctx, &args.every)? {
            cmd::timer::Installed::Cron(line) => {
                println!("{line}");
                eprintln!("no systemd here: add the line above to your crontab (crontab -e)");
            }
            cmd::timer::Installed::Units(u) => {
                println!("{}\n{}", u.service.display(), u.timer.display());
                let s = u.systemctl;
                eprintln!("then: {s} daemon-reload && {s} enable --now zchroot-update.timer");
            }
        }
    } else {
        let mut code = 0;
        let mut summaries = Vec::new();
        cmd::boards::update(ctx, &args.names, args.keep, &mut |name, r| match r {
            Ok(s) => {
                code = code.max(u8::from(!s.failed.is_empty()));
                if !args.json {
                    eprint!("{}", cmd::boards::render_summary(&s));
                }
                summaries.push(s);
            }
            Err(e) => {
                code = 1;
                eprintln!("error: {name}: {e}");
            }
        })?;
        if args.json {
            println!("{}", serde_json::to_string_pretty(&summaries)?);
        }
        return Ok(code);
    }
    Ok(0)
}

fn target(ctx: &Ctx, c: &TargetCommand) -> anyhow::Result<u8> {
    match c {
        TargetCommand::Add(a) => {
            let path = cmd::boards::target_add(ctx, &a.name, &a.target(), a.force)?;
            println!("{}", path.display());
        }
        TargetCommand::List => print!(
            "{}",
            cmd::boards::render_targets(&cmd::boards::target_list(ctx)?)
        ),
        TargetCommand::Show { name } => print!("{}", cmd::boards::target_show(ctx, name)?),
        TargetCommand::Remove { name } => cmd::boards::target_remove(ctx, name)?,
    }
    Ok(0)
}

fn repo(ctx: &Ctx, c: &RepoCommand) -> anyhow::Result<u8> {
    match c {
        RepoCommand::Key { name, url } => {
            let b = cmd::boards::repo_key(ctx, name, url)?;
            print!("{}", String::from_utf8_lossy(&b.public_key));
            eprintln!("{}", cmd::boards::render_board_setup(name, &b));
            Ok(0)
        }
        RepoCommand::Serve { name, listen } => {
            let s = cmd::boards::repo_bind(ctx, name, listen)?;
            println!(
                "serving {} on http://{}/",
                s.dir.display(),
                s.listener.local_addr()?
            );
            use std::io::Write;
            std::io::stdout().flush()?;
            match cmd::boards::repo_serve(s)? {}
        }
    }
}

/// The command's own work, in the context made once for it.
fn dispatch(ctx: &Ctx, cli: &Cli) -> anyhow::Result<u8> {
    match &cli.command {
        Command::Resolve(args) => {
            let r = cmd::resolve::resolve(ctx, &args.target.spec(), args.download)
                .context("resolve failed")?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                print!("{}", cmd::resolve::render(&r));
                if !cli.quiet {
                    eprintln!("{}", cmd::resolve::summary(&r));
                }
            }
            Ok(0)
        }
        Command::Run(args) => Ok(cmd::run::run(
            ctx,
            &args.sandbox.request(args.command.clone()),
        )?),
        Command::Shell(args) => Ok(cmd::run::run(
            ctx,
            &args.sandbox.request(cmd::run::shell_argv()),
        )?),
        Command::Doctor(args) => {
            let d = cmd::doctor::doctor(ctx, args.fix)?;
            if let Some(f) = &d.fixed {
                eprint!("{}", cmd::doctor::render_fixed(f));
            }
            if args.json {
                println!("{}", serde_json::to_string_pretty(&d.checks)?);
            } else {
                print!("{}", cmd::doctor::render_checks(&d.checks));
            }
            Ok(u8::from(d.failed()))
        }
        Command::Create(args) => {
            let c = cmd::roots::create(ctx, &args.spec()).context("create failed")?;
            println!("{} {}", c.name, c.path.display());
            Ok(0)
        }
        Command::List(args) => {
            let rows = cmd::roots::list(ctx)?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                print!("{}", cmd::roots::render_list(&rows));
            }
            Ok(0)
        }
        Command::BuildDkms(args) => {
            let spec = args.build.spec(args.source.clone(), args.sha256.clone());
            let results = cmd::build::build_dkms(ctx, &spec).context("build-dkms failed")?;
            Ok(report_builds(results, &args.build.arch))
        }
        Command::BuildZfs(args) => {
            let (results, utils) =
                cmd::build::build_zfs(ctx, &args.spec()).context("build-zfs failed")?;
            let code = report_builds(results, &args.build.arch);
            if let Some(v) = utils {
                eprintln!("{}", cmd::build::zfs_utils_hint(&v));
            }
            Ok(code)
        }
        Command::Destroy(args) => {
            cmd::roots::destroy(
                ctx,
                &args.request(),
                &mut |d| match cmd::roots::render_destroyed(&d) {
                    Ok(line) => println!("{line}"),
                    Err(warning) => eprintln!("{warning}"),
                },
            )
            .context("destroy failed")?;
            Ok(0)
        }
        Command::Export(args) => {
            let out = cmd::roots::export(ctx, &args.root(), args.format, &args.output)
                .context("export failed")?;
            println!("{}", out.display());
            Ok(0)
        }
        Command::Target(c) => target(ctx, c),
        Command::Update(args) => update(ctx, args).context("update failed"),
        Command::Repo(c) => repo(ctx, c),
    }
}

fn run(cli: &Cli) -> anyhow::Result<u8> {
    let manifests = match &cli.manifests {
        Some(dir) => Manifests::from_dir(dir)?,
        None => Manifests::embedded(),
    };
    let bars;
    let shown: &dyn Reporter = if cli.quiet {
        &WarningsOnly
    } else {
        bars = Bars::new(cli.verbose);
        &bars
    };
    // ZCHROOT_TIMINGS=FILE: each phase's wall time written there at the
    // end (`cargo xtask bench create` reads it).
    let timed = zchroot::report::Timed::new(shown);
    let timings = std::env::var_os("ZCHROOT_TIMINGS").map(std::path::PathBuf::from);
    let reporter: &dyn Reporter = if timings.is_some() { &timed } else { shown };
    let env = DirsEnv::from_process();
    let options = match &cli.command {
        Command::Resolve(cli::ResolveArgs { target, .. })
        | Command::Create(cli::CreateArgs { target, .. }) => FetchOptions {
            parallel: target.parallel as usize,
            ..FetchOptions::default()
        },
        _ => FetchOptions::default(),
    };
    let ctx = Ctx {
        manifests,
        dirs: DataDirs::resolve(&env)?,
        env,
        options,
        exe: std::env::current_exe().context("finding zchroot's own executable")?,
        reporter,
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
        if let Some(w) = ctx.remove_stale_binfmt() {
            eprintln!("warning: {w}");
        }
    }
    let r = dispatch(&ctx, cli);
    if let Some(file) = timings {
        std::fs::write(&file, timed.render())
            .with_context(|| format!("cannot write the timings to {}", file.display()))?;
    }
    r
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
