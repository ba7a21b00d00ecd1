//! `zchroot run` and `zchroot shell`: a command inside a root, in a sandbox
//! of its own, talking to the caller through a pty.

use std::path::{Path, PathBuf};

use super::{find_root, CmdError, Ctx, RootRef};
use crate::rootdir::RootDir;
use crate::sandbox::user::{self, Identity, UserError};
use crate::sandbox::{self, mounts::Bind, RunSpec};

/// Exit status of `run` and `shell` when zchroot cannot give the command its
/// context: an unknown `--user`, a working directory that is missing or
/// cannot be entered (podman's 125; 126: cannot run, 127: not found).
pub const CONTEXT_FAILED: u8 = sandbox::spawn::CONTEXT_FAILED as u8;

/// A `--env` given on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvArg {
    /// `NAME=VALUE`.
    Set(String, String),
    /// `NAME`: the caller's value, if it has one.
    Pass(String),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EnvArgError {
    #[error("expected NAME=VALUE or NAME, NAME made of letters, digits and _ (not starting with a digit)")]
    BadName,
}

impl std::str::FromStr for EnvArg {
    type Err = EnvArgError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (name, value) = match s.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (s, None),
        };
        let valid = name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !valid {
            return Err(EnvArgError::BadName);
        }
        Ok(match value {
            Some(v) => EnvArg::Set(name.into(), v.into()),
            None => EnvArg::Pass(name.into()),
        })
    }
}

/// The variables the `--env`s set, in order (a later one wins): `NAME`
/// takes the caller's value from `lookup`, and is left out when the caller
/// has none.
pub fn env_vars(args: &[EnvArg], lookup: impl Fn(&str) -> Option<String>) -> Vec<(String, String)> {
    args.iter()
        .filter_map(|a| match a {
            EnvArg::Set(n, v) => Some((n.clone(), v.clone())),
            EnvArg::Pass(n) => lookup(n).map(|v| (n.clone(), v)),
        })
        .collect()
}

/// Why `run` did not run the command.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The command's context cannot be made ([`CONTEXT_FAILED`]).
    #[error(transparent)]
    Context(#[from] UserError),
    #[error(transparent)]
    Cmd(#[from] CmdError),
}

impl RunError {
    /// `run`'s exit status for this error.
    pub fn exit_status(&self) -> u8 {
        match self {
            RunError::Context(_) => CONTEXT_FAILED,
            RunError::Cmd(_) => 1,
        }
    }
}

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
    /// The working directory inside the root.
    pub cwd: PathBuf,
    /// `--user USER[:GROUP]` as given.
    pub user: Option<String>,
    /// `--env`s, in order.
    pub env: Vec<EnvArg>,
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

/// The hostname inside: the root's name; for `--dir`, the root's
/// /etc/hostname, else the directory's name (`zchroot`'s own layout,
/// `NAME/root`, gives NAME). Made a valid hostname.
fn hostname(root: &RootRef, tree: &Path) -> String {
    let name = match root {
        RootRef::Name(n) => n.clone(),
        RootRef::Dir(_) => {
            let from_file = RootDir::open(tree)
                .and_then(|r| r.read(Path::new("etc/hostname"), 4096))
                .ok()
                .and_then(|b| {
                    let text = String::from_utf8_lossy(&b).into_owned();
                    text.lines().next().map(|l| l.trim().to_string())
                })
                .filter(|l| !l.is_empty());
            let dir_name = || {
                let base = |p: &Path| p.file_name().map(|n| n.to_string_lossy().into_owned());
                match base(tree) {
                    Some(n) if n == "root" => tree.parent().and_then(base),
                    other => other,
                }
            };
            from_file.or_else(dir_name).unwrap_or_default()
        }
    };
    sandbox::hostname_for(&name)
}

/// Who `--user` names, looked up in the root's own /etc/passwd and
/// /etc/group (a root without them: numbers only).
fn identity(root: &RootRef, tree: &Path, spec: &str) -> Result<Identity, RunError> {
    let text = |rel: &str| -> Result<String, RunError> {
        let root = RootDir::open(tree).map_err(|e| CmdError::Io {
            path: tree.into(),
            source: std::io::Error::other(e),
        })?;
        match root.read(Path::new(rel), 16 << 20) {
            Ok(b) => Ok(String::from_utf8_lossy(&b).into_owned()),
            Err(e) if e.errno() == Some(nix::errno::Errno::ENOENT) => Ok(String::new()),
            Err(e) => Err(CmdError::Io {
                path: tree.join(rel),
                source: std::io::Error::other(e),
            }
            .into()),
        }
    };
    let label = match root {
        RootRef::Name(n) => user::RootLabel {
            label: n.clone(),
            arg: n.clone(),
        },
        RootRef::Dir(d) => user::RootLabel {
            label: d.display().to_string(),
            arg: format!("--dir {}", d.display()),
        },
    };
    Ok(user::resolve(
        spec,
        &label,
        &text("etc/passwd")?,
        &text("etc/group")?,
    )?)
}

/// Runs the request's argv in the sandbox; returns the command's exit
/// status (0-255; [`CONTEXT_FAILED`] when its user or working directory
/// cannot be taken inside).
pub fn run(ctx: &Ctx, req: &RunRequest) -> Result<u8, RunError> {
    let binds = binds(&req.binds).map_err(CmdError::from)?;
    let found = find_root(ctx, &req.root, super::Hold::Shared)?;
    let identity = match &req.user {
        Some(spec) => Some(identity(&req.root, &found.tree, spec)?),
        None => None,
    };
    let env = env_vars(&req.env, |n| std::env::var(n).ok());
    let hostname = hostname(&req.root, &found.tree);
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
        hostname,
        argv: req.argv.clone(),
        cwd: req.cwd.clone(),
    };
    let (mut plan, maps, _) = crate::enter::prepare(
        &ctx.manifests,
        &spec,
        &ctx.dirs,
        ctx.options.clone(),
        ctx.reporter,
    )
    .map_err(CmdError::from)?;
    let identity = match (identity, &req.user) {
        (Some(id), Some(spec)) => Some(user::check_mapped(spec, id, &maps)?),
        _ => None,
    };
    sandbox::run_as(&mut plan, identity, &env);
    // `run` and `shell` talk to the caller (through a pty of their own).
    plan.stdio = sandbox::spawn::Stdio::Interactive;
    ctx.reporter.finish();
    let code = sandbox::spawn::run(&ctx.exe, &plan, &maps).map_err(CmdError::from)?;
    drop(found.lock);
    Ok(code.clamp(0, 255) as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_args_set_or_pass_a_variable_through() {
        let parse = |s: &str| s.parse::<EnvArg>();
        assert_eq!(
            parse("http_proxy=http://p:3128/").unwrap(),
            EnvArg::Set("http_proxy".into(), "http://p:3128/".into())
        );
        assert_eq!(parse("A=").unwrap(), EnvArg::Set("A".into(), "".into()));
        assert_eq!(
            parse("A=b=c").unwrap(),
            EnvArg::Set("A".into(), "b=c".into())
        );
        assert_eq!(parse("_X1").unwrap(), EnvArg::Pass("_X1".into()));
        for bad in ["", "=v", "1A=v", "A B=v", "A-B", "Ä=1"] {
            assert_eq!(parse(bad), Err(EnvArgError::BadName), "{bad:?}");
        }
        let args = [
            parse("FROM_CALLER").unwrap(),
            parse("UNSET_IN_CALLER").unwrap(),
            parse("X=1").unwrap(),
            parse("X=2").unwrap(),
        ];
        let caller = |n: &str| (n == "FROM_CALLER").then(|| "yes".to_string());
        assert_eq!(
            env_vars(&args, caller),
            vec![
                ("FROM_CALLER".to_string(), "yes".to_string()),
                ("X".to_string(), "1".to_string()),
                ("X".to_string(), "2".to_string()),
            ]
        );
    }

    #[test]
    fn the_hostname_is_the_roots_name() {
        let tree = Path::new("/nonexistent/roots/x/root");
        assert_eq!(
            hostname(&RootRef::Name("trixie-arm64".into()), tree),
            "trixie-arm64"
        );
        assert_eq!(
            hostname(&RootRef::Name("my_root.v2".into()), tree),
            "my-root.v2"
        );
        // A directory without /etc/hostname: its name, or its parent's for
        // zchroot's NAME/root layout.
        assert_eq!(hostname(&RootRef::Dir(tree.into()), tree), "x");
        let other = Path::new("/nonexistent/Bookworm_Tree");
        assert_eq!(
            hostname(&RootRef::Dir(other.into()), other),
            "bookworm-tree"
        );
    }
}
