//! The roots themselves: `create`, `list`, `destroy` and `export`.

use std::path::{Path, PathBuf};

use super::{find_root, io, CmdError, Ctx, RootRef};
use crate::export::ExportFormat;
use crate::rootfs::create::{remove_as_owner, CreateSpec, Created};
use crate::rootfs::template::{ListedTemplate, Templates};
use crate::rootfs::{Listed, Roots};
use crate::sandbox;

/// Builds a root from the archive.
pub fn create(ctx: &Ctx, spec: &CreateSpec) -> Result<Created, CmdError> {
    ctx.call(crate::rootfs::create::create, spec)
}

/// The roots, with their size and when they were last used.
pub fn list(ctx: &Ctx) -> Result<Vec<Listed>, CmdError> {
    Ok(ctx.roots().list()?)
}

/// The root templates in the cache, with their size.
pub fn list_templates(ctx: &Ctx) -> Result<Vec<ListedTemplate>, CmdError> {
    Ok(Templates::new(&ctx.dirs).list()?)
}

/// The table `zchroot list` prints.
pub fn render_list(rows: &[Listed]) -> String {
    let date = |t: u64| {
        crate::archive::release::format_date(
            std::time::UNIX_EPOCH + std::time::Duration::from_secs(t),
        )
    };
    let mut out = format!(
        "{:<20} {:<8} {:<10} {:<8} {:>9}  {:<29}  LAST USED\n",
        "NAME", "ARCH", "RELEASE", "VARIANT", "SIZE", "CREATED"
    );
    for r in rows {
        out.push_str(&format!(
            "{:<20} {:<8} {:<10} {:<8} {:>7.0}Mi  {:<29}  {}\n",
            r.meta.name,
            r.meta.arch,
            r.meta.release,
            r.meta.variant,
            r.size_bytes as f64 / (1 << 20) as f64,
            date(r.meta.created),
            r.last_used.map(date).unwrap_or_else(|| "never".into())
        ));
    }
    out
}

/// What `destroy` asks for.
#[derive(Debug, Clone, Default)]
pub struct DestroyRequest {
    pub names: Vec<String>,
    /// Every root, and what killed runs left behind.
    pub all: bool,
    pub purge_cache: bool,
}

/// What `destroy` did, told as it happens (a later root may fail).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destroyed {
    Root(String),
    /// Something left behind that could not be cleaned up (not fatal).
    Warning(String),
    Cache(PathBuf),
    /// A target's repository and file, kept on purpose.
    Kept(KeptBoard),
}

/// What `destroy --all --purge-cache` keeps of a target: the key its
/// boards trust (a new one would have to be fetched again by each board),
/// the repository it signs, and the target's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeptBoard {
    pub name: String,
    /// `STATE/repos/NAME` (secret.key, and public/ unless the target
    /// publishes elsewhere), when it exists.
    pub repo: Option<PathBuf>,
    /// `CONFIG/targets/NAME.toml`, when it exists.
    pub target: Option<PathBuf>,
    /// The target's own repository directory (`repo = ...`), when set.
    pub published: Option<PathBuf>,
}

/// The targets and repositories `destroy` leaves alone: every name with a
/// target file or a directory under `STATE/repos`.
fn kept_boards(ctx: &Ctx) -> Vec<KeptBoard> {
    let repos = ctx.dirs.state.join("repos");
    let mut names: Vec<String> = std::fs::read_dir(&repos)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    let targets = ctx.targets().ok();
    if let Some(t) = &targets {
        names.extend(t.names().unwrap_or_default());
    }
    names.sort();
    names.dedup();
    names
        .into_iter()
        .map(|name| {
            let repo = Some(repos.join(&name)).filter(|p| p.exists());
            let file = targets.as_ref().map(|t| t.path(&name));
            let loaded = targets.as_ref().and_then(|t| t.load(&name).ok());
            KeptBoard {
                target: file.filter(|p| p.exists()),
                published: loaded.and_then(|t| t.repo),
                repo,
                name,
            }
        })
        .collect()
}

/// What `destroy` says it kept, why, and how to remove it too.
pub fn render_kept(k: &KeptBoard) -> String {
    let mut what = Vec::new();
    if let Some(r) = &k.repo {
        what.push(format!("its repository and signing key {}", r.display()));
    }
    if let Some(p) = &k.published {
        what.push(format!("its published repository {}", p.display()));
    }
    if let Some(t) = &k.target {
        what.push(format!("its settings {}", t.display()));
    }
    let mut out = format!(
        "kept target '{}': {}\n  (the key is the one the boards trust: a new one would have to be installed on each board again)",
        k.name,
        what.join(", ")
    );
    let mut steps = Vec::new();
    if k.target.is_some() {
        steps.push(format!("zchroot target remove {}", k.name));
    }
    for p in [&k.repo, &k.published].into_iter().flatten() {
        steps.push(format!("rm -r {}", shell_quote(p)));
    }
    if !steps.is_empty() {
        out.push_str(&format!("\n  to remove it too: {}", steps.join(" && ")));
    }
    out
}

/// `path` as one shell word.
fn shell_quote(path: &Path) -> String {
    let s = path.to_string_lossy();
    if s.chars()
        .all(|c| c.is_ascii_alphanumeric() || "/._-+:@%".contains(c))
    {
        s.into_owned()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// Removes roots (never crossing a mount), and with `purge_cache` the
/// download cache; `done` hears of each step as it is done.
pub fn destroy(
    ctx: &Ctx,
    req: &DestroyRequest,
    done: &mut dyn FnMut(Destroyed),
) -> Result<(), CmdError> {
    let roots = ctx.roots();
    let maps = sandbox::id_maps()?;
    let names = if req.all {
        roots.names()
    } else {
        req.names.clone()
    };
    for name in &names {
        Roots::check_name(name)?;
        roots.meta(name)?; // says what exists when the name is wrong
    }
    let remove = |path: &Path, aside: Option<&Path>| {
        remove_as_owner(&ctx.exe, &maps, path, aside).map_err(|error| CmdError::Remove {
            path: path.to_owned(),
            error,
        })
    };
    for name in &names {
        let _lock = roots.lock_exclusive(name, || {
            ctx.reporter.warn(&format!(
                "waiting for another zchroot that is using '{name}'"
            ))
        })?;
        remove(&roots.path(name), Some(&roots.doomed(name)))?;
        done(Destroyed::Root(name.clone()));
    }
    if req.all {
        // Qemu entries a killed run left in the host's binfmt_misc.
        if let Some(w) = ctx.remove_stale_binfmt() {
            done(Destroyed::Warning(w));
        }
        for old in roots.leftovers() {
            remove(&old, None)?;
        }
        let _ = std::fs::remove_dir(&roots.dir);
        let _ = crate::teardown::remove_tree(&ctx.dirs.state.join("locks"));
    }
    if req.purge_cache {
        // The templates' files belong to the roots' owners: removed as them.
        crate::rootfs::template::remove_all(&ctx.dirs, &ctx.exe, &maps)?;
        crate::teardown::remove_tree(&ctx.dirs.cache)?;
        done(Destroyed::Cache(ctx.dirs.cache.clone()));
        if req.all {
            // Nothing of zchroot's is left: the logs, and the Release dates
            // seen (the next run accepts any validly signed, not future-dated
            // Release again, as on a new machine).
            crate::teardown::remove_tree(&ctx.dirs.logs())?;
            crate::teardown::remove_tree(&ctx.dirs.archive_dates())?;
        }
    }
    if req.all && req.purge_cache {
        for k in kept_boards(ctx) {
            done(Destroyed::Kept(k));
        }
    }
    if req.all {
        let _ = std::fs::remove_dir(&ctx.dirs.state);
    }
    Ok(())
}

/// The line `destroy` prints for a step (stdout), or a warning or what it
/// kept (stderr).
pub fn render_destroyed(d: &Destroyed) -> Result<String, String> {
    match d {
        Destroyed::Kept(k) => Err(render_kept(k)),
        Destroyed::Root(name) => Ok(format!("destroyed {name}")),
        Destroyed::Cache(dir) => Ok(format!("emptied the cache {}", dir.display())),
        Destroyed::Warning(w) => Err(format!("warning: {w}")),
    }
}

/// What `export` was asked for besides the root and the file.
#[derive(Debug, Clone, Default)]
pub struct ExportRequest {
    /// `--format` (else from the file name).
    pub format: Option<ExportFormat>,
    /// `--size` of an ext4 image, in KiB.
    pub size_kib: Option<u64>,
    /// `--include-apt-lists`.
    pub include_apt_lists: bool,
}

/// Writes a root out as `request` says to `output`; returns the absolute
/// path written.
pub fn export(
    ctx: &Ctx,
    root: &RootRef,
    request: &ExportRequest,
    output: &Path,
) -> Result<PathBuf, CmdError> {
    // What is wrong with the output is said before a root is looked at.
    crate::export::check_output_dir(output)?;
    let plan = crate::export::plan(
        request.format,
        request.size_kib,
        request.include_apt_lists,
        output,
    )?;
    let found = find_root(ctx, root, super::Hold::Exclusive)?;
    let tree = std::fs::canonicalize(&found.tree)
        .ok()
        .filter(|p| p.is_dir() && p != Path::new("/"))
        .ok_or_else(|| CmdError::NotARoot {
            path: found.tree.clone(),
        })?;
    let out = std::path::absolute(output).map_err(io(output))?;
    // The export writes a temporary file it creates exclusively next to
    // `out` and renames it over `out` (crate::atomic).
    let maps = sandbox::id_maps()?;
    if maps.helpers {
        // Rootless: inside the user namespace, where owners read as inside
        // the root and every file can be read.
        let job = sandbox::spawn::Job::Export {
            root: tree,
            plan,
            out: out.clone(),
        };
        match sandbox::spawn::run(&ctx.exe, &sandbox::spawn::SandboxPlan::host_job(job), &maps)? {
            0 => {}
            code => return Err(CmdError::ExportJob { code }),
        }
    } else {
        crate::export::export(&tree, &plan, &out)?;
    }
    drop(found.lock);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rootfs::RootMeta;

    #[test]
    fn destroy_says_what_it_kept_why_and_how_to_remove_it() {
        let k = KeptBoard {
            name: "b".into(),
            repo: Some("/s/repos/b".into()),
            target: Some("/c/targets/b.toml".into()),
            published: Some("/srv/my repo".into()),
        };
        assert_eq!(
            render_kept(&k),
            "kept target 'b': its repository and signing key /s/repos/b, its published repository /srv/my repo, its settings /c/targets/b.toml\n  \
             (the key is the one the boards trust: a new one would have to be installed on each board again)\n  \
             to remove it too: zchroot target remove b && rm -r /s/repos/b && rm -r '/srv/my repo'"
        );
    }

    fn listed(name: &str, size: u64, last_used: Option<u64>) -> Listed {
        Listed {
            meta: RootMeta::example(name),
            path: PathBuf::from("/r").join(name),
            size_bytes: size,
            last_used,
        }
    }

    #[test]
    fn the_list_is_a_header_and_a_row_per_root_in_mib() {
        let text = render_list(&[
            listed("trixie-arm64", 300 << 20, None),
            listed("b", 1 << 20, Some(86400)),
        ]);
        let lines: Vec<_> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("NAME                 ARCH     RELEASE"));
        assert!(lines[0].ends_with("LAST USED"));
        assert!(
            lines[1].starts_with("trixie-arm64         arm64    trixie     minbase      300Mi  ")
        );
        assert!(lines[1].ends_with("  never"), "{}", lines[1]);
        assert!(lines[2].contains("      1Mi  "));
        assert!(
            lines[2].ends_with("02 Jan 1970 00:00:00 UTC"),
            "{}",
            lines[2]
        );
        assert_eq!(render_list(&[]).lines().count(), 1);
    }

    #[test]
    fn destroy_steps_are_lines_on_stdout_and_warnings_on_stderr() {
        assert_eq!(
            render_destroyed(&Destroyed::Root("a".into())),
            Ok("destroyed a".into())
        );
        assert_eq!(
            render_destroyed(&Destroyed::Cache("/c".into())),
            Ok("emptied the cache /c".into())
        );
        assert_eq!(
            render_destroyed(&Destroyed::Warning("x".into())),
            Err("warning: x".into())
        );
    }
}
