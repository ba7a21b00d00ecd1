//! The boards zchroot keeps modules for: `target`, `update` (the timer is
//! in [`super::timer`]) and `repo`.

use std::net::TcpListener;
use std::path::{Path, PathBuf};

use super::{io, CmdError, Ctx};
use crate::targets::TargetFile;
use crate::update::{Summary, UpdateError};

/// Adds a target (replaces one with `force`); its paths are made absolute,
/// and a module given as a directory too. Returns the target's file.
pub fn target_add(
    ctx: &Ctx,
    name: &str,
    target: &TargetFile,
    force: bool,
) -> Result<PathBuf, CmdError> {
    let t = absolute(target)?;
    if let Some(m) = &t.security_mirror {
        crate::archive::fetch::check_mirror(m).map_err(|message| CmdError::BadMirror {
            option: "--security-mirror",
            url: m.clone(),
            message,
        })?;
    }
    let config = ctx.config_dir()?;
    crate::update::check_repo(name, &t, &ctx.dirs, Some(&config))?;
    Ok(ctx.targets()?.save(name, &t, force)?)
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
        keyring: abs(&t.keyring)?,
        repo: abs(&t.repo)?,
        ..t.clone()
    })
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
        .map(|(n, t)| format!("{n:<20} {:<8} {:<10} {}\n", t.arch, t.suite, t.module))
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
/// target that fails does not stop the others.
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
        let t = ts.load(name)?;
        // The target's own security mirror, over the config file's.
        let manifests = ctx
            .manifests
            .clone()
            .with_mirrors(crate::manifest::MirrorMap {
                security: t
                    .security_mirror
                    .clone()
                    .or_else(|| ctx.manifests.mirrors().security.clone()),
                ..ctx.manifests.mirrors().clone()
            });
        let r = crate::update::update_target(
            &manifests,
            name,
            &t,
            keep,
            &ctx.dirs,
            ctx.options.clone(),
            &ctx.exe,
            ctx.reporter,
        );
        ctx.reporter.finish();
        done(name, r);
    }
    Ok(())
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
    })
}

/// The instructions on stderr after the key.
pub fn render_board_setup(name: &str, b: &BoardSetup) -> String {
    format!(
        "On the board, as root: save the key above as {}, and this as /etc/apt/sources.list.d/zchroot-{name}.sources:\n\n{}\nthen: apt-get update && apt-get install {}",
        b.keyfile, b.sources, b.package
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

/// Serves the repository read-only over HTTP, until killed.
pub fn repo_serve(s: Serving) -> Result<std::convert::Infallible, CmdError> {
    let opts = crate::repo::serve::ServeOptions::default();
    crate::repo::serve::serve(s.listener, &s.dir, opts).map_err(|source| CmdError::Serve {
        dir: s.dir.clone(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> TargetFile {
        TargetFile {
            arch: "arm64".into(),
            suite: "trixie".into(),
            flavour: None,
            module: "zfs".into(),
            suites: vec![],
            kernel_deb_dir: Some("debs".into()),
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
        let path = target_add(&ctx, "pi", &target(), false).unwrap();
        assert!(path.starts_with(tmp.path().join("config")));
        assert!(target_add(&ctx, "pi", &target(), false).is_err());
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
