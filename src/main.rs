//! The `zchroot` binary: parses the command line, builds the [`Ctx`] once,
//! calls the command (`zchroot::cmd`), renders its result (and progress,
//! through `progress`), prints the error chain and sets the exit status.

#![deny(unsafe_code)]

mod progress;

use std::process::ExitCode;

use anyhow::Context;
use clap::FromArgMatches;

use zchroot::cli::{self, Cli, Command, RepoCommand, TargetCommand};
use zchroot::cmd::{self, Ctx};
use zchroot::manifest::Manifests;
use zchroot::paths::DirsEnv;
use zchroot::report::Reporter;
use zchroot::sandbox;

use progress::{Bars, Lines, WarningsOnly};

/// Prints what was built, then what the board runs to install it; exit
/// status 1 if any kernel failed.
fn report_builds(
    results: cmd::build::Builds,
    arch: &str,
    utils: Option<&zchroot::kmod::zfs::Userland>,
) -> u8 {
    let mut failed = false;
    let mut for_board = Vec::new();
    for r in results {
        match r {
            Ok(b) => {
                println!("{}", b.deb.display());
                eprintln!("{}", cmd::build::describe(&b, arch));
                for_board.push(cmd::build::ForBoard::of(&b));
            }
            Err(e) => {
                failed = true;
                eprintln!("error: {}", printable(&e.to_string()));
            }
        }
    }
    eprint!(
        "{}",
        printable(&cmd::build::board_commands(&for_board, utils))
    );
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
        cmd::boards::update(ctx, &args.names, args.keep, &mut |name, r| {
            summaries.push(cmd::boards::UpdateOutcome::new(name, &r));
            match r {
                Ok(s) => {
                    code = code.max(u8::from(!s.failed.is_empty()));
                    if !args.json {
                        eprint!("{}", cmd::boards::render_summary(&s));
                    }
                }
                Err(e) => {
                    code = 1;
                    eprintln!(
                        "error: {name}: {}",
                        printable(&cmd::boards::error_chain(&e))
                    );
                }
            }
        })?;
        // Stopped by a signal: no summary of what did not run.
        zchroot::interrupt::check()?;
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
            let path =
                cmd::boards::target_add(ctx, &a.name, &a.target(), a.force, !a.no_archive_check)?;
            println!("{}", path.display());
        }
        TargetCommand::Check(a) => return target_check(ctx, a),
        TargetCommand::List => print!(
            "{}",
            cmd::boards::render_targets(&cmd::boards::target_list(ctx)?)
        ),
        TargetCommand::Show { name } => print!("{}", cmd::boards::target_show(ctx, name)?),
        TargetCommand::Remove { name } => cmd::boards::target_remove(ctx, name)?,
    }
    Ok(0)
}

/// `zchroot target check`: a line per target; exit status 1 if any is bad.
fn target_check(ctx: &Ctx, a: &cli::TargetCheckArgs) -> anyhow::Result<u8> {
    let names = match a.names.is_empty() {
        true => cmd::boards::target_list_names(ctx)?,
        false => a.names.clone(),
    };
    let mut code = 0;
    for name in &names {
        match cmd::boards::target_check(ctx, name, !a.no_archive_check) {
            Ok(path) => println!("{}: ok", path.display()),
            Err(e) => {
                code = 1;
                eprintln!("error: {}", printable(&e.to_string()));
            }
        }
    }
    Ok(code)
}

fn repo(ctx: &Ctx, c: &RepoCommand) -> anyhow::Result<u8> {
    match c {
        RepoCommand::Key { name, url } => {
            let b = cmd::boards::repo_key(ctx, name, url)?;
            print!("{}", String::from_utf8_lossy(&b.public_key));
            eprintln!("{}", cmd::boards::render_board_setup(name, &b));
            Ok(0)
        }
        RepoCommand::Serve {
            name,
            listen,
            limits,
        } => {
            let s = cmd::boards::repo_bind(ctx, name, listen)?;
            println!(
                "serving {} on http://{}/",
                s.dir.display(),
                s.listener.local_addr()?
            );
            use std::io::Write;
            std::io::stdout().flush()?;
            match cmd::boards::repo_serve(s, limits)? {}
        }
    }
}

/// `run` and `shell`: the command's exit status, or zchroot's own (125 when
/// the command's user cannot be found, with the error printed here).
fn run_in_root(ctx: &Ctx, req: &cmd::run::RunRequest) -> anyhow::Result<u8> {
    match cmd::run::run(ctx, req) {
        Ok(code) => Ok(code),
        Err(e @ cmd::run::RunError::Context(_)) => {
            eprintln!("error: {}", printable(&e.to_string()));
            Ok(e.exit_status())
        }
        Err(cmd::run::RunError::Cmd(e)) => Err(e.into()),
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
        Command::Run(args) => run_in_root(ctx, &args.request()),
        Command::Shell(args) => run_in_root(ctx, &args.request(cmd::run::shell_argv())),
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
        Command::List(args) if args.templates => {
            let rows = cmd::roots::list_templates(ctx)?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                print!("{}", zchroot::rootfs::template::render_list(&rows));
            }
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
            Ok(report_builds(results, &args.build.arch, None))
        }
        Command::BuildZfs(args) => {
            let (results, utils) =
                cmd::build::build_zfs(ctx, &args.spec()).context("build-zfs failed")?;
            Ok(report_builds(results, &args.build.arch, utils.as_ref()))
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
            let out = cmd::roots::export(ctx, &args.root(), &args.request(), &args.output)
                .context("export failed")?;
            println!("{}", out.display());
            Ok(0)
        }
        Command::Target(c) => target(ctx, c),
        Command::Update(args) => update(ctx, args).context("update failed"),
        Command::Repo(c) => repo(ctx, c),
        Command::Completions(_) => unreachable!("run() answers it before making a context"),
    }
}

fn run(cli: &Cli) -> anyhow::Result<u8> {
    if let Command::Completions(args) = &cli.command {
        // Needs no data directory: it works before anything is set up.
        let mut stdout = std::io::stdout();
        clap_complete::generate(args.shell, &mut cli::command(), "zchroot", &mut stdout);
        return Ok(0);
    }
    let manifests = match &cli.manifests {
        Some(dir) => Manifests::from_dir(dir)?,
        None => Manifests::embedded(),
    };
    let (bars, lines);
    let shown: &dyn Reporter = if cli.quiet {
        &WarningsOnly
    } else if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        bars = Bars::new(cli.verbose);
        &bars
    } else {
        // A log (CI, cron, a pipe): plain lines, no bars.
        lines = Lines::new(cli.verbose);
        &lines
    };
    // ZCHROOT_TIMINGS=FILE: each phase's wall time written there at the
    // end (`cargo xtask bench create` reads it).
    let timed = zchroot::report::Timed::new(shown);
    let timings = std::env::var_os("ZCHROOT_TIMINGS").map(std::path::PathBuf::from);
    let reporter: &dyn Reporter = if timings.is_some() { &timed } else { shown };
    let env = DirsEnv::from_process();
    // The network options on the command line; the config file fills in
    // the rest (Ctx::load).
    let net = match &cli.command {
        Command::Resolve(cli::ResolveArgs { target, .. })
        | Command::Create(cli::CreateArgs { target, .. }) => cmd::NetArgs {
            parallel: target.parallel.map(usize::from),
            security_mirror: target.security_mirror.clone(),
        },
        Command::BuildDkms(cli::BuildDkmsArgs { build, .. })
        | Command::BuildZfs(cli::BuildZfsArgs { build, .. }) => cmd::NetArgs {
            security_mirror: build.security_mirror.clone(),
            ..Default::default()
        },
        _ => cmd::NetArgs::default(),
    };
    let exe = std::env::current_exe().context("finding zchroot's own executable")?;
    let ctx = Ctx::load(manifests, env, &net, exe, reporter)?;
    // A command that writes says first which directory it cannot write.
    if !matches!(
        cli.command,
        Command::Doctor(_)
            | Command::List(_)
            | Command::Target(TargetCommand::List | TargetCommand::Show { .. })
    ) {
        ctx.dirs.check_writable()?;
    }
    if let Command::Target(TargetCommand::Add(_) | TargetCommand::Remove { .. }) = cli.command {
        zchroot::paths::check_writable("config", &ctx.config_dir()?)?;
    }
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

/// An error's text as it may reach the terminal: it can carry what a root
/// wrote (a log's tail, names from its /etc/passwd or its dpkg output), so
/// control characters but newlines and tabs are shown as `?`.
fn printable(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_control() && c != '\n' && c != '\t' {
                '?'
            } else {
                c
            }
        })
        .collect()
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
    let cli = Cli::from_arg_matches(&cli::command().get_matches())
        .unwrap_or_else(|e| e.format(&mut cli::command()).exit());
    // Ctrl-C, SIGTERM and SIGHUP stop the long work that makes trees and
    // temporary directories through its errors (it checks between steps),
    // so that what it made is removed at once; a second signal kills at
    // once. Other commands keep the default: they die at once (`repo
    // serve`, a quick listing), or pass every signal on to the command
    // (`run`, `shell`).
    let stops_cleanly = matches!(
        cli.command,
        Command::Create(_) | Command::BuildDkms(_) | Command::BuildZfs(_) | Command::Update(_)
    );
    if stops_cleanly {
        if let Err(e) = zchroot::sys::interrupt::install() {
            eprintln!("warning: {e}: an interrupted run may leave files behind until the next one");
        }
    }
    match run(&cli) {
        Ok(code) => ExitCode::from(code),
        Err(_) if stops_cleanly && zchroot::sys::interrupt::received().is_some() => {
            let sig = zchroot::sys::interrupt::received().expect("received");
            eprintln!("zchroot: stopped by {sig}; what this run had made is removed");
            ExitCode::from(zchroot::interrupt::exit_status(sig))
        }
        Err(e) => {
            let mut msg = format!("error: {e}");
            for cause in e.chain().skip(1) {
                msg.push_str(&format!("\n  caused by: {cause}"));
            }
            eprintln!("{}", printable(&msg));
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_error_cannot_drive_the_terminal() {
        let shown = super::printable("log tail:\n\x1b]52;c;aGk=\x07 ok\t\u{9b}2J");
        assert_eq!(shown, "log tail:\n?]52;c;aGk=? ok\t?2J");
    }
}
