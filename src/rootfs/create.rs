//! `create`: resolve and download the package set, unpack the Essential
//! packages natively (confined, ownership as in the packages), then let the
//! root's own dpkg install everything inside the sandbox (under qemu for a
//! foreign architecture), so that dpkg's database is complete and the
//! maintainer scripts ran. Built in a staging directory that appears under
//! its name only when complete; any failure removes it.

use std::path::{Path, PathBuf};

use crate::archive::fetch::FetchOptions;
use crate::archive::index::Package;
use crate::archive::resolve;
use crate::host;
use crate::manifest::Manifests;
use crate::paths::DataDirs;
use crate::report::{Phase, Reporter};
use crate::rootdir::RootDir;
use crate::rootfs::hooks::{self, HookPhase};
use crate::rootfs::spec::{RootRecipe, RootSpec, SpecError};
use crate::sandbox::idmap::IdMaps;
use crate::sandbox::mounts::Bind;
use crate::sandbox::spawn::{self, Job, SandboxPlan};
use crate::sandbox::{self, RunSpec, SandboxError};

use super::template::{KeyInputs, Template};
use super::{RootMeta, Roots, RootsError};

#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error(transparent)]
    Roots(#[from] RootsError),
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
    #[error("a root named '{name}' exists already at {}\nhelp: use it (`zchroot run {name} -- CMD`), pick another --name, or replace it with --force", path.display())]
    Exists { name: String, path: PathBuf },
    #[error("unpacking the Essential packages failed: {0}")]
    Unpack(String),
    #[error("installing the packages inside the root failed (exit status {code}); the end of its log:\n{log}")]
    Configure { code: i32, log: String },
    #[error(transparent)]
    Root(#[from] crate::rootdir::RootDirError),
    #[error(transparent)]
    Hook(#[from] hooks::HookError),
    #[error(transparent)]
    Template(#[from] super::template::TemplateError),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CreateError + '_ {
    move |source| CreateError::Io {
        path: path.to_owned(),
        source,
    }
}

/// What to create.
#[derive(Debug, Clone)]
pub struct CreateSpec {
    pub target: RootSpec,
    pub name: Option<String>,
    pub force: bool,
    /// Hooks and apt/dpkg options (`--*-hook`, `--aptopt`, `--dpkgopt`).
    pub hooks: hooks::HookSpec,
    /// Copy the root from its template when there is one (`--no-template`:
    /// build cold, and keep the result as the new template).
    pub use_template: bool,
}

/// A finished root.
#[derive(Debug, Clone)]
pub struct Created {
    pub name: String,
    pub path: PathBuf,
    pub packages: usize,
}

/// Runs a job as root of a user namespace (rootless) or directly.
fn host_job(exe: &Path, maps: &IdMaps, job: Job) -> Result<(), String> {
    match spawn::run(exe, &SandboxPlan::host_job(job), maps) {
        Ok(0) => Ok(()),
        Ok(code) => Err(format!("exit status {code}")),
        Err(e) => Err(e.to_string()),
    }
}

/// Removes a tree whose files may belong to subuids, without crossing
/// mount points; with `aside`, it is first checked and moved there.
pub fn remove_as_owner(
    exe: &Path,
    maps: &IdMaps,
    path: &Path,
    aside: Option<&Path>,
) -> Result<(), String> {
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(format!("{}: {e}", path.display())),
        Ok(_) => {}
    }
    if maps.helpers {
        let job = Job::Remove {
            path: path.to_owned(),
            aside: aside.map(Path::to_owned),
        };
        host_job(exe, maps, job)
    } else {
        match aside {
            Some(a) => crate::teardown::remove_tree_aside(path, a),
            None => crate::teardown::remove_tree(path),
        }
        .map_err(|e| e.to_string())
    }
}

/// Removes the staging directory unless disarmed.
struct Staging<'a> {
    path: PathBuf,
    exe: &'a Path,
    maps: &'a IdMaps,
    armed: bool,
}

impl Drop for Staging<'_> {
    fn drop(&mut self) {
        if self.armed {
            let _ = remove_as_owner(self.exe, self.maps, &self.path, None);
        }
    }
}

/// The deb822 sources of the root, for apt inside it.
pub fn sources_file(t: &RootRecipe, keyring_in_root: &str) -> String {
    t.sources
        .iter()
        .map(|s| {
            format!(
                "Types: deb\nURIs: {}\nSuites: {}\nComponents: {}\nSigned-By: {keyring_in_root}\n",
                s.mirror,
                s.suite,
                s.components.join(" ")
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Splits the non-Essential packages into `dpkg --install` batches so that
/// every Pre-Depends is configured before its dependant is unpacked (dpkg
/// does not reorder a batch for Pre-Depends) and every Depends is in the
/// same batch or an earlier one (so each batch can be configured whole).
/// `rest` is (name, names its Pre-Depends mention, names its Depends
/// mention); names outside `rest` count as installed. A Pre-Depends cycle
/// ends up in the last batch, for dpkg to sort out.
pub fn batches(rest: &[(String, Vec<String>, Vec<String>)]) -> Vec<Vec<String>> {
    let n = rest.len();
    let index: std::collections::HashMap<&str, usize> = rest
        .iter()
        .enumerate()
        .map(|(i, (name, _, _))| (name.as_str(), i))
        .collect();
    let mut level = vec![0usize; n];
    for _ in 0..=n {
        let mut changed = false;
        for (i, (_, pre, deps)) in rest.iter().enumerate() {
            let mut l = level[i];
            for (d, step) in pre
                .iter()
                .map(|d| (d, 1))
                .chain(deps.iter().map(|d| (d, 0)))
            {
                if let Some(&j) = index.get(d.as_str()) {
                    if j != i {
                        l = l.max(level[j] + step);
                    }
                }
            }
            let l = l.min(n);
            if l != level[i] {
                level[i] = l;
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    let mut out: Vec<Vec<String>> = Vec::new();
    let mut levels: Vec<usize> = level.clone();
    levels.sort_unstable();
    levels.dedup();
    for l in levels {
        out.push(
            rest.iter()
                .zip(&level)
                .filter(|(_, &x)| x == l)
                .map(|((name, _, _), _)| name.clone())
                .collect(),
        );
    }
    out
}

/// The shell script that installs the packages inside the root: the
/// Essential set at once (dpkg's --force-depends also covers Pre-Depends
/// there, as debootstrap and mmdebstrap do), then the rest in batches.
pub fn install_script(essential: &[String], rest: &[Vec<String>], apt_update: bool) -> String {
    let mut s = String::from(
        "set -e\nexport DEBIAN_FRONTEND=noninteractive DEBCONF_NONINTERACTIVE_SEEN=true\n",
    );
    if !essential.is_empty() {
        s.push_str(&format!(
            "dpkg --force-depends --force-confold --install {}\n",
            essential.join(" ")
        ));
    }
    for batch in rest.iter().filter(|b| !b.is_empty()) {
        s.push_str(&format!(
            "dpkg --force-confold --install {}\n",
            batch.join(" ")
        ));
    }
    s.push_str("dpkg --configure --pending\ndpkg --audit\n");
    if apt_update {
        s.push_str("apt-get update -q\n");
    }
    s
}

/// Where the .debs are bound inside the root while it is being made.
const DEBS_IN_ROOT: &str = "/zchroot-debs";
const LOG_IN_ROOT: &str = "var/log/zchroot-create.log";
/// How much of a failed run's log is read back from the root.
pub const LOG_TAIL_MAX: u64 = 1 << 20;

/// The staging tree, made new (never an existing directory), with merged
/// /usr from the start as the packages of current releases expect.
fn make_tree(staging_dir: &Path, tree: &Path, arch: &str) -> Result<RootDir, CreateError> {
    std::fs::create_dir(staging_dir).map_err(io(staging_dir))?;
    std::fs::create_dir(tree).map_err(io(tree))?;
    let root_dir = RootDir::open(tree)?;
    let mut links = vec![("bin", "usr/bin"), ("sbin", "usr/sbin"), ("lib", "usr/lib")];
    if arch == "amd64" {
        links.push(("lib64", "usr/lib64"));
    }
    for (link, to) in links {
        root_dir.create_dir_all(Path::new(to), 0o755)?;
        root_dir.symlink(to.as_ref(), Path::new(link))?;
    }
    Ok(root_dir)
}

/// Unpacks `debs` into `tree` (confined, bounded), as root of a user
/// namespace when rootless so that ownership is the packages'.
fn unpack_natively(
    exe: &Path,
    maps: &IdMaps,
    tree: &Path,
    debs: Vec<(PathBuf, crate::deb::ExtractLimit)>,
) -> Result<(), CreateError> {
    if maps.helpers {
        let job = Job::Extract {
            debs,
            root: tree.to_owned(),
        };
        return host_job(exe, maps, job).map_err(CreateError::Unpack);
    }
    for (deb, limit) in &debs {
        crate::deb::read::extract_data_with(deb, tree, limit)
            .map_err(|e| CreateError::Unpack(e.to_string()))?;
    }
    Ok(())
}

/// dpkg's database, apt's sources and keyring, no services started:
/// written through the confined handle, since the packages just unpacked
/// may have put symlinks anywhere.
fn write_system_files(
    root_dir: &RootDir,
    manifests: &Manifests,
    t: &RootRecipe,
    spec: &CreateSpec,
    name: &str,
) -> Result<(), CreateError> {
    let write = |rel: &str, contents: &[u8], mode: u32| -> Result<(), CreateError> {
        Ok(root_dir.write(Path::new(rel), contents, mode)?)
    };
    for d in [
        "var/lib/dpkg/info",
        "var/lib/dpkg/updates",
        "var/lib/dpkg/triggers",
        "var/lib/dpkg/alternatives",
        "var/log",
    ] {
        root_dir.create_dir_all(Path::new(d), 0o755)?;
    }
    write("var/lib/dpkg/status", b"", 0o644)?;
    write("var/lib/dpkg/available", b"", 0o644)?;
    let keyring_rel = format!("etc/apt/keyrings/zchroot-{}.pgp", t.release.release);
    let keyring_bytes = match &spec.target.keyring {
        Some(p) => std::fs::read(p).map_err(io(p))?,
        None => manifests.keyring(&t.release).map_err(SpecError::from)?,
    };
    write(&keyring_rel, &keyring_bytes, 0o644)?;
    write(
        "etc/apt/sources.list.d/debian.sources",
        sources_file(t, &format!("/{keyring_rel}")).as_bytes(),
        0o644,
    )?;
    write(
        "usr/sbin/policy-rc.d",
        b"#!/bin/sh\n# zchroot: no services in a build root\nexit 101\n",
        0o755,
    )?;
    write("etc/hostname", format!("{name}\n").as_bytes(), 0o644)
}

/// The `dpkg --install` arguments: the Essential set (`order`) first, then
/// the rest of `all` in [`batches`], each .deb named as bound in the root.
fn dpkg_batches(order: &[&Package], all: &[&Package], essential: &[&Package]) -> Vec<Vec<String>> {
    let deb_in_root = |p: &Package| format!("{DEBS_IN_ROOT}/{}", p.sha256);
    let rest: Vec<&Package> = all
        .iter()
        .copied()
        .filter(|p| !essential.iter().any(|e| std::ptr::eq(*e, *p)))
        .collect();
    let names = |field: &str| -> Vec<String> {
        crate::archive::relation::parse_relations(field)
            .map(|alts| alts.into_iter().flatten().map(|r| r.name).collect())
            .unwrap_or_default()
    };
    let rest_pre: Vec<(String, Vec<String>, Vec<String>)> = rest
        .iter()
        .map(|p| (p.name.clone(), names(&p.pre_depends), names(&p.depends)))
        .collect();
    let mut out = vec![order.iter().map(|p| deb_in_root(p)).collect()];
    out.extend(batches(&rest_pre).into_iter().map(|b| {
        b.iter()
            .map(|n| deb_in_root(rest.iter().find(|p| &p.name == n).unwrap()))
            .collect()
    }));
    out
}

/// The error of a failed install, with the end of its log; the log is the
/// sandbox's file, read confined (regular files only, its end only), and
/// kept beside the roots since the staging directory goes.
fn failed_install(dirs: &DataDirs, name: &str, root_dir: &RootDir, code: i32) -> CreateError {
    let log = root_dir.read_tail(Path::new(LOG_IN_ROOT), LOG_TAIL_MAX);
    let kept = dirs.logs().join(format!("create-{name}.log"));
    let _ = crate::paths::create_private_dir_all(&dirs.logs());
    let _ = crate::atomic::write_atomic(&kept, log.as_bytes(), 0o644);
    let tail: Vec<&str> = log.lines().rev().take(25).collect();
    CreateError::Configure {
        code,
        log: format!(
            "{}\n(the whole log: {})",
            tail.into_iter().rev().collect::<Vec<_>>().join("\n"),
            kept.display()
        ),
    }
}

/// The finished staging directory appears under `name`, replacing an old
/// root (with --force), which is then removed.
fn appear(roots: &Roots, name: &str, staging: &mut Staging<'_>) -> Result<(), CreateError> {
    let final_dir = roots.path(name);
    if final_dir.exists() {
        // One atomic swap: the new root under the name, the old one where
        // the staging directory was, removed by the armed guard. No moment
        // without a root under the name, nor an old root lost on an error.
        nix::fcntl::renameat2(
            nix::fcntl::AT_FDCWD,
            &staging.path,
            nix::fcntl::AT_FDCWD,
            &final_dir,
            nix::fcntl::RenameFlags::RENAME_EXCHANGE,
        )
        .map_err(|e| io(&final_dir)(e.into()))?;
    } else {
        std::fs::rename(&staging.path, &final_dir).map_err(io(&final_dir))?;
        staging.armed = false;
    }
    Ok(())
}

/// How the install script runs in the new root: the cache's .debs bound
/// read-only, the network shared (for apt's update), output to the log.
fn install_run(
    t: &RootRecipe,
    spec: &CreateSpec,
    dirs: &DataDirs,
    name: &str,
    tree: &Path,
    script: &str,
) -> RunSpec {
    RunSpec {
        root: tree.to_owned(),
        arch: Some(t.arch.name.clone()),
        release: t.release.release.clone(),
        mirror: spec.target.mirror.clone(),
        binds: vec![Bind {
            host: dirs.blobs(),
            guest: DEBS_IN_ROOT.into(),
            readonly: true,
        }],
        share_network: true,
        hostname: name.to_owned(),
        argv: vec![
            "/bin/sh".into(),
            "-c".into(),
            format!("exec >>/{LOG_IN_ROOT} 2>&1\n{script}"),
        ],
        cwd: "/".into(),
    }
}

/// What `list` says of a root, written when it is complete.
fn root_meta(t: &RootRecipe, spec: &CreateSpec, name: &str, packages: usize) -> RootMeta {
    RootMeta {
        name: name.to_owned(),
        arch: t.arch.name.clone(),
        release: t.release.release.clone(),
        variant: t.variant.clone(),
        include: spec.target.include.clone(),
        mirror: spec.target.mirror.clone(),
        keyring: spec.target.keyring.clone(),
        created: super::now(),
        packages,
        owner: host::user().1,
    }
}

/// The template a root of this recipe and package set is kept as
/// (`rootfs::template`): keyed on everything that shapes its tree.
fn template_of(
    dirs: &DataDirs,
    manifests: &Manifests,
    t: &RootRecipe,
    spec: &CreateSpec,
    all: &[&Package],
    maps: &IdMaps,
) -> Result<Template, CreateError> {
    let keyring = match &spec.target.keyring {
        Some(p) => std::fs::read(p).map_err(io(p))?,
        None => manifests.keyring(&t.release).map_err(SpecError::from)?,
    };
    let keyring_rel = format!("/etc/apt/keyrings/zchroot-{}.pgp", t.release.release);
    let inputs = KeyInputs {
        arch: t.arch.name.clone(),
        release: t.release.release.clone(),
        variant: t.variant.clone(),
        include: spec.target.include.clone(),
        // --aptopt/--dpkgopt are files in the tree (and shape the install).
        recipe: format!(
            "{:?}\n{:?}\n{:?}\n{:?}\n{:?}",
            t.arch, t.release, t.request, spec.hooks.aptopt, spec.hooks.dpkgopt
        ),
        packages: all.iter().map(|p| KeyInputs::package(p)).collect(),
        sources: sources_file(t, &keyring_rel),
        keyring: crate::archive::hash::Sha256::digest(&keyring).to_hex(),
        ids: KeyInputs::ids(maps),
    };
    Ok(Template::new(dirs, &inputs))
}

/// A root copied from its template: only its hostname is its own.
fn from_template(
    template: &Template,
    roots: &Roots,
    meta: &RootMeta,
    exe: &Path,
    maps: &IdMaps,
    reporter: &dyn Reporter,
) -> Result<Created, CreateError> {
    reporter.note(&format!(
        "copying the root from its template {} (no download, no install; --no-template builds it anew)",
        template.meta.key
    ));
    reporter.phase(Phase::Unpack, 0, 0);
    let staging_dir = roots.staging(&meta.name);
    std::fs::create_dir(&staging_dir).map_err(io(&staging_dir))?;
    let mut staging = Staging {
        path: staging_dir.clone(),
        exe,
        maps,
        armed: true,
    };
    let tree = staging_dir.join("root");
    template.restore(&tree, exe, maps)?;
    reporter.finish();
    let root_dir = RootDir::open(&tree)?;
    root_dir.write(
        Path::new("etc/hostname"),
        format!("{}\n", meta.name).as_bytes(),
        0o644,
    )?;
    roots.write_meta(&staging_dir, meta)?;
    appear(roots, &meta.name, &mut staging)?;
    Ok(Created {
        path: roots.tree(&meta.name),
        name: meta.name.clone(),
        packages: meta.packages,
    })
}

/// Builds a root. `exe` is zchroot's own executable (the sandbox helper).
pub fn create(
    manifests: &Manifests,
    spec: &CreateSpec,
    dirs: &DataDirs,
    opts: FetchOptions,
    exe: &Path,
    reporter: &dyn Reporter,
) -> Result<Created, CreateError> {
    let t = RootRecipe::new(manifests, &spec.target)?;
    let hooks = spec.hooks.plan()?;
    let name = spec
        .name
        .clone()
        .unwrap_or_else(|| format!("{}-{}", t.release.release, t.arch.name));
    Roots::check_name(&name)?;
    let maps = sandbox::id_maps().map_err(SandboxError::from)?;
    let roots = Roots::new(dirs);
    roots.make_private()?;
    for old in roots.leftovers() {
        reporter.note(&format!(
            "removing the leftovers of an interrupted run: {}",
            old.display()
        ));
        let _ = remove_as_owner(exe, &maps, &old, None);
    }
    let _lock = roots.lock_exclusive(&name, || {
        reporter.warn(&format!(
            "waiting for another zchroot that is using '{name}'"
        ))
    })?;
    if roots.exists(&name) && !spec.force {
        return Err(CreateError::Exists {
            path: roots.tree(&name),
            name,
        });
    }

    // Resolve and download.
    let fetcher = t.fetcher(dirs, opts.clone(), reporter)?;
    let indexes = t.update(&fetcher, reporter)?;
    let plan = t.resolve_explained(&fetcher, &indexes, reporter)?;
    let all: Vec<&Package> = plan.packages.iter().map(|(p, _)| *p).collect();
    let meta = root_meta(&t, spec, &name, all.len());
    let template = template_of(dirs, manifests, &t, spec, &all, &maps)?;
    // Hooks may do anything to the tree: such a root is not templated.
    let templated = !spec.hooks.has_hooks();
    if templated && spec.use_template && template.find().is_some() {
        return from_template(&template, &roots, &meta, exe, &maps, reporter);
    }
    // The Essential packages and what they need: unpacked first, so that the
    // root's own dpkg can run.
    let essential_plan = resolve::resolve(&indexes.packages, &t.arch.name, &t.essential_request())
        .map_err(SpecError::from)?;
    let essential: Vec<&Package> = essential_plan.packages.iter().map(|(p, _)| *p).collect();
    let paths = t.download(&fetcher, &all, reporter)?;
    drop(fetcher);
    let path_of = |p: &Package| -> PathBuf {
        let i = all
            .iter()
            .position(|q| std::ptr::eq(*q, p))
            .expect("downloaded");
        paths[i].clone()
    };

    // Stage.
    let staging_dir = roots.staging(&name);
    let mut staging = Staging {
        path: staging_dir.clone(),
        exe,
        maps: &maps,
        armed: true,
    };
    let tree = staging_dir.join("root");
    let root_dir = make_tree(&staging_dir, &tree, &t.arch.name)?;
    let hook_env = hooks::HookEnv::of(&t, &name, &tree, spec.target.mirror.clone());
    let hook_ctx = hooks::HookCtx::new(hook_env, manifests, dirs, &opts, exe, reporter);
    hooks.run(HookPhase::Setup, &hook_ctx)?;

    // Unpack the Essential set natively: base-files first (it holds the
    // merged-/usr links), ownership as the packages say (inside the user
    // namespace when rootless).
    reporter.phase(Phase::Unpack, essential.len() as u64, 0);
    let mut order: Vec<&Package> = essential.clone();
    order.sort_by_key(|p| p.name != "base-files");
    let debs: Vec<(PathBuf, crate::deb::ExtractLimit)> = order
        .iter()
        .map(|p| (path_of(p), p.extract_limit()))
        .collect();
    unpack_natively(exe, &maps, &tree, debs)?;
    reporter.finish();

    write_system_files(&root_dir, manifests, &t, spec, &name)?;
    hooks.write_options(&root_dir)?;

    // Install everything with the root's own dpkg, inside the sandbox.
    let batches = dpkg_batches(&order, &all, &essential);
    let (log, n) = (Path::new(LOG_IN_ROOT), all.len() as u64);
    for (script, then) in hooks.install_stages(&batches) {
        let run = install_run(&t, spec, dirs, &name, &tree, &script);
        let (plan, maps2, _) =
            crate::enter::prepare(manifests, &run, dirs, opts.clone(), reporter)?;
        // The log is appended to by each stage and read from its start, so
        // the count goes on where the last stage left it.
        reporter.phase(Phase::Configure, n, 0);
        let code = super::dpkg_progress::follow(&root_dir, log, n, reporter, || {
            spawn::run(exe, &plan, &maps2)
        })
        .map_err(SandboxError::from)?;
        reporter.finish();
        if code != 0 {
            return Err(failed_install(dirs, &name, &root_dir, code));
        }
        if let Some(phase) = then {
            hooks.run(phase, &hook_ctx)?;
        }
    }
    hooks.run(HookPhase::Customize, &hook_ctx)?;
    // Tidy: the bind point and the no-services policy go.
    let _ = root_dir.remove(Path::new(DEBS_IN_ROOT));
    root_dir.remove(Path::new("usr/sbin/policy-rc.d"))?;

    // Kept as the template of its key (a failure to keep it is no failure).
    if templated {
        if let Err(e) = template.store(&tree, exe, &maps, !spec.use_template) {
            reporter.warn(&format!(
                "the root was made, but not kept as a template: {e}"
            ));
        }
    }
    roots.write_meta(&staging_dir, &meta)?;

    appear(&roots, &name, &mut staging)?;
    Ok(Created {
        path: roots.tree(&name),
        name,
        packages: all.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn install_script_installs_essential_first_then_the_rest() {
        let s = install_script(
            &["/d/a".into(), "/d/b".into()],
            &[vec!["/d/c".into()]],
            true,
        );
        let lines: Vec<&str> = s.lines().collect();
        assert_eq!(lines[0], "set -e");
        assert_eq!(
            lines[2],
            "dpkg --force-depends --force-confold --install /d/a /d/b"
        );
        assert_eq!(lines[3], "dpkg --force-confold --install /d/c");
        assert!(s.contains("dpkg --audit"));
        assert!(s.ends_with("apt-get update -q\n"));
    }

    #[test]
    fn batches_configure_pre_dependencies_first() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let rest = vec![
            ("login".to_string(), s(&["login.defs"]), vec![]),
            ("login.defs".to_string(), vec![], vec![]),
            ("apt".to_string(), s(&["libc6"]), vec![]), // libc6: installed already
            ("x".to_string(), s(&["login"]), vec![]),
        ];
        assert_eq!(
            batches(&rest),
            vec![
                vec!["login.defs".to_string(), "apt".to_string()],
                vec!["login".to_string()],
                vec!["x".to_string()]
            ]
        );
        let cycle = vec![
            ("a".to_string(), s(&["b"]), vec![]),
            ("b".to_string(), s(&["a"]), vec![]),
        ];
        assert_eq!(
            batches(&cycle),
            vec![vec!["a".to_string(), "b".to_string()]]
        );
        // udev depends on systemd, which pre-depends on libsystemd-shared:
        // udev waits for systemd's batch, so each batch configures whole.
        let rest = vec![
            (
                "udev".to_string(),
                vec![],
                s(&["systemd", "systemd-sysusers"]),
            ),
            ("systemd".to_string(), s(&["libsystemd-shared"]), vec![]),
            ("libsystemd-shared".to_string(), vec![], vec![]),
            ("initramfs-tools".to_string(), vec![], s(&["udev"])),
            ("a".to_string(), vec![], s(&["b"])), // a Depends cycle stays together
            ("b".to_string(), vec![], s(&["a"])),
        ];
        assert_eq!(
            batches(&rest),
            vec![
                s(&["libsystemd-shared", "a", "b"]),
                s(&["udev", "systemd", "initramfs-tools"])
            ]
        );
    }

    #[test]
    fn sources_are_deb822_with_signed_by() {
        let t = RootRecipe::new(
            &Manifests::embedded(),
            &RootSpec {
                arch: "arm64".into(),
                release: "trixie".into(),
                variant: "minbase".into(),
                ..Default::default()
            },
        )
        .unwrap();
        let s = sources_file(&t, "/etc/apt/keyrings/zchroot-trixie.pgp");
        assert!(s.starts_with("Types: deb\nURIs: http://deb.debian.org/debian\nSuites: trixie\nComponents: main contrib\nSigned-By: /etc/apt/keyrings/zchroot-trixie.pgp\n"), "{s}");
        assert!(
            s.contains("URIs: http://deb.debian.org/debian-security\nSuites: trixie-security\n"),
            "{s}"
        );
        assert_eq!(s.matches("Types: deb").count(), 3);
    }
}
