//! `zchroot run` and `zchroot shell`: a command inside a root, in a sandbox
//! of its own, talking to the caller through a pty.

use std::path::PathBuf;

use super::{find_root, CmdError, Ctx, RootRef};
use crate::sandbox::{self, mounts::Bind, RunSpec};

/// The sandbox's network (`--network`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Network {
    /// Share the host's network.
    #[default]
    Host,
    /// An empty network namespace.
    None,
}

/// What `run` and `shell` were asked for.
#[derive(Debug, Clone)]
pub struct RunRequest {
    pub root: RootRef,
    /// The root's architecture (found from its shell when not given).
    pub arch: Option<String>,
    /// The release whose archive supplies qemu-user (default: the root's
    /// own, or trixie for a directory).
    pub suite: Option<String>,
    pub mirror: Option<String>,
    /// HOST[:GUEST][:ro] as given.
    pub binds: Vec<String>,
    pub network: Network,
    pub cwd: PathBuf,
    pub argv: Vec<String>,
}

/// The argv of `zchroot shell`: bash when the root has it, else sh.
pub fn shell_argv() -> Vec<String> {
    vec![
        "/bin/sh".to_string(),
        "-c".to_string(),
        "if command -v bash >/dev/null; then exec bash -l; else exec sh -l; fi".to_string(),
    ]
}

/// The binds, parsed, each host path checked to exist.
pub fn binds(specs: &[String]) -> Result<Vec<Bind>, sandbox::mounts::BindError> {
    specs
        .iter()
        .map(|b| {
            let bind = Bind::parse(b)?;
            if !bind.host.exists() {
                return Err(sandbox::mounts::BindError::Missing {
                    spec: b.clone(),
                    path: bind.host.display().to_string(),
                });
            }
            Ok(bind)
        })
        .collect()
}

/// Runs the request's argv in the sandbox; returns the command's exit
/// status (0-255).
pub fn run(ctx: &Ctx, req: &RunRequest) -> Result<u8, CmdError> {
    let binds = binds(&req.binds)?;
    let found = find_root(ctx, &req.root, super::Hold::Shared)?;
    let (arch, release, mirror) = match (&req.root, found.meta) {
        (RootRef::Name(name), Some(meta)) => {
            ctx.roots().touch(name);
            (
                Some(meta.arch),
                meta.release,
                req.mirror.clone().or(meta.mirror),
            )
        }
        _ => (req.arch.clone(), "trixie".to_string(), req.mirror.clone()),
    };
    let spec = RunSpec {
        root: found.tree,
        arch: req.arch.clone().or(arch),
        release: req.suite.clone().unwrap_or(release),
        mirror,
        binds,
        share_network: req.network == Network::Host,
        hostname: "zchroot".into(),
        argv: req.argv.clone(),
        cwd: req.cwd.clone(),
    };
    let (mut plan, maps, _) = crate::enter::prepare(
        &ctx.manifests,
        &spec,
        &ctx.dirs,
        ctx.options.clone(),
        ctx.reporter,
    )?;
    // `run` and `shell` talk to the caller (through a pty of their own).
    plan.stdio = sandbox::spawn::Stdio::Interactive;
    ctx.reporter.finish();
    let code = sandbox::spawn::run(&ctx.exe, &plan, &maps)?;
    drop(found.lock);
    Ok(code.clamp(0, 255) as u8)
}
