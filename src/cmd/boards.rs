//! The boards zchroot keeps modules for: `target`, `update` (the timer is
//! in [`super::timer`]) and `repo`.

use std::net::TcpListener;
use std::path::{Path, PathBuf};

use super::{io, CmdError, Ctx};
use crate::targets::{Origin, TargetFile, TargetsError};
use crate::update::{Summary, UpdateError};

/// Adds a target (replaces one with `force`); its paths are made absolute,
/// and a module given as a directory too. Everything `update` will need is
/// checked first (against the archive's indexes too, unless `archive` is
/// false); nothing is written when a check fails. Returns the target's file.
pub fn target_add(
    ctx: &Ctx,
    name: &str,
    target: &TargetFile,
    force: bool,
    archive: bool,
) -> Result<PathBuf, CmdError> {
    let ts = ctx.targets()?;
    crate::targets::check_name(name)?;
    if !force && ts.path(name).exists() {
        return Err(TargetsError::Exists {
            name: name.into(),
            path: ts.path(name),
        }
        .into());
    }
    let t = absolute(target)?;
    check(ctx, name, &t, Origin::Options, archive)?;
    Ok(ts.save(name, &t, force)?)
}

/// Checks target `name` as `target add` does, naming `origin` in errors.
fn check(
    ctx: &Ctx,
    name: &str,
    t: &TargetFile,
    origin: Origin,
    archive: bool,
) -> Result<(), CmdError> {
    if let Some(m) = &t.security_mirror {
        crate::archive::fetch::check_mirror(m).map_err(|message| CmdError::BadMirror {
            option: "--security-mirror",
            url: m.clone(),
            message,
        })?;
    }
    let config = ctx.config_dir()?;
    crate::update::check_repo(name, t, &ctx.dirs, Some(&config))?;
    crate::update::check_target(
        &target_manifests(ctx, t),
        t,
        &ctx.dirs,
        ctx.options.clone(),
        ctx.reporter,
        archive,
    )
    .map_err(|p| p.at(origin))?;
    Ok(())
}

/// The manifests a target is checked and updated with: its own security
/// mirror over the config file's.
fn target_manifests(ctx: &Ctx, t: &TargetFile) -> crate::manifest::Manifests {
    ctx.manifests
        .clone()
        .with_mirrors(crate::manifest::MirrorMap {
            security: t
                .security_mirror
                .clone()
                .or_else(|| ctx.manifests.mirrors().security.clone()),
            ..ctx.manifests.mirrors().clone()
        })
}

/// Re-checks a target's file (after editing it by hand) as `target add`
/// checks its options; returns the file.
pub fn target_check(ctx: &Ctx, name: &str, archive: bool) -> Result<PathBuf, CmdError> {
    let ts = ctx.targets()?;
    let t = ts.load(name)?;
    let path = ts.path(name);
    check(ctx, name, &t, Origin::File(path.clone()), archive)?;
    Ok(path)
}

/// The target with its paths absolute (a target file is read from
/// anywhere, later).
fn absolute(t: &TargetFile) -> Result<TargetFile, CmdError> {
    let abs = |p: &Option<PathBuf>| {
        p.as_ref()
            .map(|p| std::path::absolute(p).map_err(io(p)))
            .transpose()
    };
    // A module directory is kept as an absolute path.
    let module = if Path::new(&t.module).is_dir() {
        let m = Path::new(&t.module);
        std::path::absolute(m).map_err(io(m))?.display().to_string()
    } else {
        t.module.clone()
    };
    Ok(TargetFile {
        module,
        kernel_deb_dir: abs(&t.kernel_deb_dir)?,
        kernel_keyring: abs(&t.kernel_keyring)?,
        keyring: abs(&t.keyring)?,
        repo: abs(&t.repo)?,
        ..t.clone()
    })
}

/// The targets' names, sorted.
pub fn target_list_names(ctx: &Ctx) -> Result<Vec<String>, CmdError> {
    Ok(ctx.targets()?.names()?)
}

/// Every target, by name.
pub fn target_list(ctx: &Ctx) -> Result<Vec<(String, TargetFile)>, CmdError> {
    let ts = ctx.targets()?;
    let mut list = Vec::new();
    for n in ts.names()? {
        let t = ts.load(&n)?;
        list.push((n, t));
    }
    Ok(list)
}

/// A line per target: name, architecture, suite, module.
pub fn render_targets(list: &[(String, TargetFile)]) -> String {
    list.iter()
        .map(|(n, t)| format!("{n:<20} {:<8} {:<10} {}\n", t.arch, t.release, t.module))
        .collect()
}

/// The text of a target's file (checked first).
pub fn target_show(ctx: &Ctx, name: &str) -> Result<String, CmdError> {
    let ts = ctx.targets()?;
    ts.load(name)?;
    let path = ts.path(name);
    std::fs::read_to_string(&path).map_err(io(&path))
}

pub fn target_remove(ctx: &Ctx, name: &str) -> Result<(), CmdError> {
    Ok(ctx.targets()?.remove(name)?)
}

/// Updates the targets `names` (all when empty): for each, builds modules
/// for the kernels its repository lacks, keeps the newest `keep` per
/// series, and publishes. `done` hears of each target as it finishes; a
/// target that fails (its file too) does not stop the others.
pub fn update(
    ctx: &Ctx,
    names: &[String],
    keep: usize,
    done: &mut dyn FnMut(&str, Result<Summary, UpdateError>),
) -> Result<(), CmdError> {
    let ts = ctx.targets()?;
    let names = if names.is_empty() {
        ts.names()?
    } else {
        names.to_vec()
    };
    if names.is_empty() {
        return Err(CmdError::NoTargets);
    }
    for name in &names {
        crate::interrupt::check()?;
        let r = ts.load(name).map_err(UpdateError::from).and_then(|t| {
            crate::update::update_target(
                &target_manifests(ctx, &t),
                name,
                &t,
                keep,
                &ctx.dirs,
                ctx.options.clone(),
                &ctx.exe,
                ctx.reporter,
            )
        });
        ctx.reporter.finish();
        // A setting the update could not use names the file.
        let r = r.map_err(|e| match e {
            UpdateError::Invalid(p) => p.at(Origin::File(ts.path(name))).into(),
            e => e,
        });
        done(name, r);
    }
    Ok(())
}

/// One target's line of `update --json`: its summary, or why it failed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(untagged)]
pub enum UpdateOutcome {
    Done(Summary),
    Failed {
        target: String,
        /// The error, its causes and help lines, as on stderr.
        error: String,
    },
}

impl UpdateOutcome {
    pub fn new(name: &str, r: &Result<Summary, UpdateError>) -> UpdateOutcome {
        match r {
            Ok(s) => UpdateOutcome::Done(s.clone()),
            Err(e) => UpdateOutcome::Failed {
                target: name.to_string(),
                error: error_chain(e),
            },
        }
    }
}

/// An error with its causes, as the binary prints it.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        msg.push_str(&format!("\n  caused by: {c}"));
        cause = c.source();
    }
    msg
}

/// The lines on stderr that sum up a target's update.
pub fn render_summary(s: &Summary) -> String {
    let mut out = format!(
        "{}: kernels seen {}, built {}, already there {}, failed {}{}; repository {}\n",
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
        out.push_str(&format!("  built for {k}\n"));
    }
    for f in &s.failed {
        out.push_str(&format!("  failed: {f}\n"));
    }
    out
}

/// What a board needs to use a target's repository.
#[derive(Debug, Clone)]
pub struct BoardSetup {
    /// The repository's public key, ASCII-armoured.
    pub public_key: Vec<u8>,
    /// Where the board keeps the key.
    pub keyfile: String,
    /// The board's /etc/apt/sources.list.d/zchroot-NAME.sources.
    pub sources: String,
    /// The metapackage that follows the board's kernel.
    pub package: String,
    /// The board's line that fetches the key from the served repository.
    pub fetch_key: String,
}

/// The repository's key (made on first use) and the lines for the board,
/// which reaches the repository at `url`.
pub fn repo_key(ctx: &Ctx, name: &str, url: &str) -> Result<BoardSetup, CmdError> {
    let t = ctx.targets()?.load(name)?;
    let repo = crate::update::repo_of(name, &t, &ctx.dirs);
    let key = crate::repo::key::RepoKey::load_or_generate(&repo.key_path, name)?;
    let (keyfile, sources) = crate::repo::board_lines(&repo, url);
    let flavour = match &t.flavour {
        Some(f) => f.clone(),
        None => ctx.manifests.arch(&t.arch)?.kernel_flavour,
    };
    Ok(BoardSetup {
        public_key: key.public_armored()?,
        keyfile,
        sources,
        package: crate::update::meta_name(&crate::update::module_name(&t), &flavour),
        fetch_key: crate::repo::key_fetch_line(&repo, url),
    })
}

/// The instructions on stderr after the key.
pub fn render_board_setup(name: &str, b: &BoardSetup) -> String {
    format!(
        "On the board, as root: save the key above as {}, or fetch it from the served repository \
         (there once `zchroot update` has published it; plain HTTP proves nothing: check it is the key above):\n  \
         {}\nand save this as /etc/apt/sources.list.d/zchroot-{name}.sources:\n\n{}\nthen: apt-get update && apt-get install {}",
        b.keyfile, b.fetch_key, b.sources, b.package
    )
}

/// A repository ready to serve: bound, not serving yet (so the caller can
/// say where it is first).
pub struct Serving {
    pub listener: TcpListener,
    pub dir: PathBuf,
}

/// Checks the target's repository was published and binds `listen`.
pub fn repo_bind(ctx: &Ctx, name: &str, listen: &str) -> Result<Serving, CmdError> {
    let t = ctx.targets()?.load(name)?;
    crate::update::check_repo(name, &t, &ctx.dirs, None)?;
    let repo = crate::update::repo_of(name, &t, &ctx.dirs);
    if !repo.dir.join("dists").exists() {
        return Err(CmdError::NothingPublished {
            dir: repo.dir,
            name: name.to_string(),
        });
    }
    let listener = TcpListener::bind(listen).map_err(|source| CmdError::Listen {
        addr: listen.to_string(),
        source,
    })?;
    Ok(Serving {
        listener,
        dir: repo.dir,
    })
}

/// The server's limits: the defaults, but for those given.
pub fn serve_options(l: &crate::cli::ServeLimits) -> crate::repo::serve::ServeOptions {
    let d = crate::repo::serve::ServeOptions::default();
    crate::repo::serve::ServeOptions {
        workers: l.workers.map_or(d.workers, usize::from),
        per_peer: l.per_host.map_or(d.per_peer, usize::from),
        min_rate: l.min_rate.unwrap_or(d.min_rate),
        min_time: l
            .min_time
            .map_or(d.min_time, std::time::Duration::from_secs),
        ..d
    }
}

/// Serves the repository read-only over HTTP, until killed.
pub fn repo_serve(
    s: Serving,
    limits: &crate::cli::ServeLimits,
) -> Result<std::convert::Infallible, CmdError> {
    let opts = serve_options(limits);
    crate::repo::serve::serve(s.listener, &s.dir, opts).map_err(|source| CmdError::Serve {
        dir: s.dir.clone(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_board_setup_gives_the_line_that_fetches_the_key() {
        let repo = crate::repo::Repo {
            name: "b".into(),
            dir: "/s/repos/b/public".into(),
            suite: "trixie".into(),
            arch: "arm64".into(),
            key_path: "/s/repos/b/secret.key".into(),
        };
        let (keyfile, sources) = crate::repo::board_lines(&repo, "http://laptop:8080");
        let b = BoardSetup {
            public_key: vec![],
            keyfile,
            sources,
            package: "zfs-modules-arm64".into(),
            fetch_key: crate::repo::key_fetch_line(&repo, "http://laptop:8080"),
        };
        let text = render_board_setup("b", &b);
        assert!(
            text.contains(
                "\n  curl -fsSL http://laptop:8080/zchroot-b.asc -o /etc/apt/keyrings/zchroot-b.asc\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("Signed-By: /etc/apt/keyrings/zchroot-b.asc\n"),
            "{text}"
        );
        assert!(text.ends_with("then: apt-get update && apt-get install zfs-modules-arm64"));
    }

    fn target() -> TargetFile {
        TargetFile {
            arch: "arm64".into(),
            release: "trixie".into(),
            flavour: None,
            module: "zfs".into(),
            suites: vec![],
            kernel_deb_dir: Some("debs".into()),
            kernel_archive: None,
            kernel_keyring: None,
            kernel_suite: None,
            kernel_components: vec![],
            mirror: None,
            security_mirror: None,
            keyring: None,
            repo: Some("/srv/repo".into()),
            strategy: crate::kmod::Strategy::Auto,
        }
    }

    #[test]
    fn targets_list_as_aligned_columns() {
        let text = render_targets(&[("pi".into(), target())]);
        assert_eq!(
            text,
            format!("{:<20} {:<8} {:<10} zfs\n", "pi", "arm64", "trixie")
        );
    }

    #[test]
    fn a_target_is_saved_with_absolute_paths() {
        let t = absolute(&target()).unwrap();
        assert!(t.kernel_deb_dir.unwrap().is_absolute());
        assert_eq!(t.repo, Some(PathBuf::from("/srv/repo")));
        assert_eq!(t.module, "zfs");
        assert_eq!(t.keyring, None);
    }

    #[test]
    fn bad_settings_are_refused_before_anything_is_written() {
        let tmp = tempfile::tempdir().unwrap();
        let ctx = crate::cmd::test_ctx(tmp.path());
        let add = |t: TargetFile| {
            target_add(&ctx, "pi", &t, false, false)
                .unwrap_err()
                .to_string()
        };
        let e = add(TargetFile {
            arch: "arm46".into(),
            ..target()
        });
        assert_eq!(
            e,
            "--arch: unknown architecture 'arm46': known are amd64, arm64, armhf, riscv64"
        );
        let e = add(TargetFile {
            release: "trixy".into(),
            ..target()
        });
        assert!(
            e.starts_with("--release: unknown release 'trixy': known are "),
            "{e}"
        );
        let e = add(TargetFile {
            suites: vec!["trixie".into(), "trixie-backports".into()],
            ..target()
        });
        assert_eq!(e, "--suites: suite 'trixie-backports' is not one of trixie's: known are trixie, trixie-updates, trixie-security\nhelp: an opt-in suite such as backports is added as +SUITE, e.g. +trixie-backports");
        let e = add(TargetFile {
            kernel_deb_dir: Some("/nonexistent".into()),
            ..target()
        });
        assert!(
            e.starts_with("--kernel-deb-dir: /nonexistent: No such file or directory"),
            "{e}"
        );
        assert!(e.contains("\nhelp: make it (mkdir -p /nonexistent)"), "{e}");
        let e = add(TargetFile {
            module: "zfs-modules".into(),
            kernel_deb_dir: None,
            ..target()
        });
        assert!(e.starts_with("--module: 'zfs-modules' is neither"), "{e}");
        let e = add(TargetFile {
            module: "no/such/dir".into(),
            ..target()
        });
        assert!(e.starts_with("--module: 'no/such/dir' is neither"), "{e}");
        assert!(!ctx.targets().unwrap().path("pi").exists());

        // A hand-edited file: the same checks, naming the file and key.
        let ts = ctx.targets().unwrap();
        std::fs::create_dir_all(ts.path("pi").parent().unwrap()).unwrap();
        std::fs::write(ts.path("pi"), "arch = \"arm64\"\nrelease = \"trixy\"\n").unwrap();
        let e = target_check(&ctx, "pi", false).unwrap_err().to_string();
        let file = ts.path("pi").display().to_string();
        assert!(
            e.starts_with(&format!("{file}: release: unknown release 'trixy'")),
            "{e}"
        );
        assert!(
            e.ends_with(&format!("help: fix release in {file} (then: zchroot target check), or replace the target with zchroot target add --force")),
            "{e}"
        );
    }

    #[test]
    fn a_summary_names_what_was_built_failed_and_pruned() {
        let s = Summary {
            target: "pi".into(),
            seen: 3,
            built: vec!["6.12.1".into()],
            present: 1,
            failed: vec!["6.12.2: no headers".into()],
            pruned: vec!["old".into()],
            published: true,
            repo: "/r".into(),
        };
        assert_eq!(
            render_summary(&s),
            "pi: kernels seen 3, built 1, already there 1, failed 1, pruned 1; repository /r\n  built for 6.12.1\n  failed: 6.12.2: no headers\n"
        );
    }

    #[test]
    fn a_target_is_added_listed_shown_and_removed_without_the_binary() {
        let tmp = tempfile::tempdir().unwrap();
        let ctx = crate::cmd::test_ctx(tmp.path());
        let t = TargetFile {
            kernel_deb_dir: Some(tmp.path().to_owned()),
            ..target()
        };
        let path = target_add(&ctx, "pi", &t, false, false).unwrap();
        assert!(path.starts_with(tmp.path().join("config")));
        assert!(target_add(&ctx, "pi", &t, false, false).is_err());
        assert_eq!(target_check(&ctx, "pi", false).unwrap(), path);
        let list = target_list(&ctx).unwrap();
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].0, "pi");
        assert!(target_show(&ctx, "pi")
            .unwrap()
            .contains("arch = \"arm64\""));
        target_remove(&ctx, "pi").unwrap();
        assert!(target_list(&ctx).unwrap().is_empty());
        assert!(matches!(
            update(&ctx, &[], 0, &mut |_, _| panic!("no targets")),
            Err(CmdError::NoTargets)
        ));
    }
}
