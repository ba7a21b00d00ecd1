//! `create`: resolve and download the package set, unpack every package
//! natively (confined, on all cores, ownership as in the packages) and
//! register it with dpkg, write apt's lists from the verified indexes, then
//! let the root's own dpkg configure everything inside the sandbox (under
//! qemu for a foreign architecture): only the maintainer scripts run
//! emulated. Built in a staging directory that appears under its name only
//! when complete; any failure removes it.

use std::path::{Path, PathBuf};

use crate::archive::fetch::FetchOptions;
use crate::archive::index::Package;
use crate::archive::refresh::Indexes;
use crate::archive::resolve;
use crate::host;
use crate::manifest::Manifests;
use crate::paths::DataDirs;
use crate::report::{Phase, Reporter};
use crate::rootdir::RootDir;
use crate::rootfs::hooks::{self, HookPhase};
use crate::rootfs::spec::{RootRecipe, RootSpec, SpecError};
use crate::sandbox::idmap::IdMaps;
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
    #[error("unpacking the packages failed: {0}")]
    Unpack(String),
    #[error("installing the packages inside the root failed{packages} (exit status {code}); the end of its log:\n{log}")]
    Configure {
        code: i32,
        /// ` at NAME, NAME` when the log says which packages failed.
        packages: String,
        log: String,
    },
    #[error(transparent)]
    Interrupted(#[from] crate::interrupt::Interrupted),
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

/// The shell script that finishes the packages inside the root, all of
/// them unpacked and registered natively already: each package's
/// `preinst install` (in `preinsts`' order: (name as under
/// `/var/lib/dpkg/info`, architecture)), with the environment dpkg gives
/// it, then `dpkg --configure -a` (every postinst, triggers deferred to
/// one run at its end) and `dpkg --audit`. With `configure_only`, the
/// script configures just those packages (the Essential set, before an
/// --essential-hook) and stops there.
pub fn install_script(
    preinsts: &[(String, String)],
    configure_only: Option<&[String]>,
    apt_update: bool,
) -> String {
    let mut s = String::from(
        "set -e\nexport DEBIAN_FRONTEND=noninteractive DEBCONF_NONINTERACTIVE_SEEN=true\n",
    );
    s.push_str(
        "preinst() {\n  f=/var/lib/dpkg/info/$1.preinst\n  [ -x \"$f\" ] || return 0\n  echo \"zchroot: running the preinst of $1\"\n  DPKG_MAINTSCRIPT_PACKAGE=\"${1%%:*}\" DPKG_MAINTSCRIPT_ARCH=\"$2\" DPKG_MAINTSCRIPT_NAME=preinst \\\n    DPKG_MAINTSCRIPT_PACKAGE_REFCOUNT=1 DPKG_ADMINDIR=/var/lib/dpkg DPKG_ROOT= \"$f\" install\n}\n",
    );
    for (name, arch) in preinsts {
        s.push_str(&format!("preinst {name} {arch}\n"));
    }
    if let Some(names) = configure_only {
        s.push_str(&format!("dpkg --configure {}\n", names.join(" ")));
        return s;
    }
    s.push_str("dpkg --configure -a\ndpkg --audit\n");
    if apt_update {
        s.push_str("apt-get update -q\n");
    } else {
        // The lists were written natively: their folders are _apt's, as
        // apt-get update leaves them (the user exists once apt is set up).
        s.push_str("if id _apt >/dev/null 2>&1; then\n  chown _apt:root /var/lib/apt/lists/partial /var/lib/apt/lists/auxfiles\n  chmod 0700 /var/lib/apt/lists/partial\nfi\n");
    }
    s
}

/// The packages that failed in an install log: those dpkg lists after
/// "Errors were encountered while processing:", else the one whose
/// preinst ran last when the log ends in a failed preinst.
pub fn failed_packages(log: &str) -> Vec<String> {
    let lines: Vec<&str> = log.lines().collect();
    if let Some(i) = lines
        .iter()
        .rposition(|l| l.starts_with("Errors were encountered while processing:"))
    {
        return lines[i + 1..]
            .iter()
            .take_while(|l| l.starts_with(' '))
            .map(|l| l.trim().to_string())
            .collect();
    }
    if lines.iter().any(|l| l.starts_with("dpkg")) {
        return vec![];
    }
    lines
        .iter()
        .rev()
        .find_map(|l| l.strip_prefix("zchroot: running the preinst of "))
        .map(|p| vec![p.trim().to_string()])
        .unwrap_or_default()
}

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

/// Unpacks `debs` into `tree` (confined, bounded, on all cores) and
/// registers them with dpkg as unpacked, as root of a user namespace when
/// rootless so that ownership is the packages'.
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
    super::native::unpack_and_register(tree, &debs).map_err(CreateError::Unpack)
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
    // dpkg's status and info/ are the native unpack's (see native.rs).
    root_dir.create_dir_all(Path::new("var/log"), 0o755)?;
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

/// The order packages are unpacked and their preinst run in: the
/// Essential set (`order`) first, then the rest of `all` in [`batches`]
/// (what dpkg would install one batch after another).
fn dpkg_batches<'a>(
    order: &[&'a Package],
    all: &[&'a Package],
    essential: &[&Package],
) -> Vec<Vec<&'a Package>> {
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
    let mut out = vec![order.to_vec()];
    out.extend(batches(&rest_pre).into_iter().map(|b| {
        b.iter()
            .map(|n| *rest.iter().find(|p| &p.name == n).unwrap())
            .collect()
    }));
    out
}

/// A package as dpkg names its files under `/var/lib/dpkg/info`.
fn info_name(p: &Package) -> String {
    match p.multi_arch {
        crate::archive::index::MultiArch::Same => format!("{}:{}", p.name, p.arch),
        _ => p.name.clone(),
    }
}

/// apt's lists, written natively from the indexes zchroot fetched and
/// verified (under apt's own names, each suite's InRelease beside its
/// Packages files, so that apt trusts and later re-verifies them), in
/// place of an emulated `apt-get update`.
fn write_apt_lists(root_dir: &RootDir, indexes: &Indexes) -> Result<(), CreateError> {
    let lists = Path::new("var/lib/apt/lists");
    root_dir.create_dir_all(&lists.join("partial"), 0o700)?;
    root_dir.create_dir_all(&lists.join("auxfiles"), 0o755)?;
    for suite in &indexes.suites {
        let url = format!(
            "{}/dists/{}/InRelease",
            suite.source.mirror, suite.source.suite
        );
        root_dir.write(
            &lists.join(super::register::apt_list_name(&url)),
            &suite.inrelease,
            0o644,
        )?;
    }
    for t in &indexes.texts {
        root_dir.write(
            &lists.join(super::register::apt_list_name(&t.url)),
            t.text.as_bytes(),
            0o644,
        )?;
    }
    Ok(())
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
    let failed = failed_packages(&log);
    CreateError::Configure {
        code,
        packages: if failed.is_empty() {
            String::new()
        } else {
            format!(" at {}", failed.join(", "))
        },
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

/// How the install script runs in the new root: output to the log, the
/// network shared (for maintainer scripts that fetch).
fn install_run(
    t: &RootRecipe,
    spec: &CreateSpec,
    name: &str,
    tree: &Path,
    script: &str,
) -> RunSpec {
    RunSpec {
        root: tree.to_owned(),
        arch: Some(t.arch.name.clone()),
        release: t.release.release.clone(),
        mirror: spec.target.mirror.clone(),
        binds: vec![],
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
    crate::interrupt::check()?;
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

/// qemu-user for a foreign root, fetched into the cache on a thread of its
/// own while the packages download and unpack, so that configuring finds
/// it ready; a failure here is left for that first use to report.
fn prefetch_qemu(
    manifests: &Manifests,
    t: &RootRecipe,
    spec: &CreateSpec,
    dirs: &DataDirs,
    opts: &FetchOptions,
) -> Option<std::thread::JoinHandle<()>> {
    let host = host::host_arch(manifests).ok()?;
    if host.name == t.arch.name {
        return None;
    }
    let (m, target, release) = (manifests.clone(), t.arch.clone(), t.release.release.clone());
    let (dirs, mirror, opts) = (dirs.clone(), spec.target.mirror.clone(), opts.clone());
    Some(std::thread::spawn(move || {
        let quiet = crate::report::Silent;
        let _ = crate::qemu::qemu_binary(
            &m,
            &release,
            &target,
            &host,
            &dirs,
            mirror.as_deref(),
            opts,
            &quiet,
        );
    }))
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
        match from_template(&template, &roots, &meta, exe, &maps, reporter) {
            // Replaced or removed by another zchroot since it was found
            // (its staging copy is gone with the error): built anew.
            Err(CreateError::Template(e)) if crate::interrupt::check().is_ok() => {
                reporter.warn(&format!(
                    "the root's template could not be copied ({e}); building the root instead"
                ))
            }
            r => return r,
        }
    }
    // The Essential packages and what they need: unpacked first, so that the
    // root's own dpkg can run.
    let essential_plan = resolve::resolve(&indexes.packages, &t.arch.name, &t.essential_request())
        .map_err(SpecError::from)?;
    let essential: Vec<&Package> = essential_plan.packages.iter().map(|(p, _)| *p).collect();
    let qemu = prefetch_qemu(manifests, &t, spec, dirs, &opts);
    let paths = t.download(&fetcher, &all, reporter)?;
    drop(fetcher);
    crate::interrupt::check()?;
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

    // Unpack everything natively, base-files first (the merged-/usr
    // links), then the Essential set, then the rest in dependency order
    // (a file two packages ship is the later one's), ownership as the
    // packages say (inside the user namespace when rootless), and register
    // it all with dpkg as unpacked.
    reporter.phase(Phase::Unpack, all.len() as u64, 0);
    let mut order: Vec<&Package> = essential.clone();
    order.sort_by_key(|p| p.name != "base-files");
    let batches = dpkg_batches(&order, &all, &essential);
    let sequence: Vec<&Package> = batches.iter().flatten().copied().collect();
    let debs: Vec<(PathBuf, crate::deb::ExtractLimit)> = sequence
        .iter()
        .map(|p| (path_of(p), p.extract_limit()))
        .collect();
    crate::interrupt::check()?;
    unpack_natively(exe, &maps, &tree, debs)?;
    crate::interrupt::check()?;
    write_system_files(&root_dir, manifests, &t, spec, &name)?;
    write_apt_lists(&root_dir, &indexes)?;
    // dpkg's path-exclude/path-include of --dpkgopt, which dpkg applies only
    // to what it unpacks itself.
    let filters = super::pathfilter::filters(&spec.hooks.dpkgopt);
    let removed = super::pathfilter::apply(&root_dir, &filters)?;
    if removed > 0 {
        reporter.note(&format!(
            "{removed} files left out by --dpkgopt path-exclude"
        ));
    }
    reporter.finish();

    hooks.write_options(&root_dir)?;

    // Only the maintainer scripts run inside, under emulation for a
    // foreign root: the preinsts (base-passwd's first: it makes
    // /etc/passwd), then `dpkg --configure -a` (with an --essential-hook,
    // the Essential set is configured first, the hook runs, then the rest).
    if let Some(q) = qemu {
        let _ = q.join();
    }
    let mut preinsts: Vec<(String, String)> = sequence
        .iter()
        .map(|p| (info_name(p), p.arch.clone()))
        .collect();
    preinsts.sort_by_key(|(n, _)| n != "base-passwd");
    let essential_names: Vec<String> = essential.iter().map(|p| info_name(p)).collect();
    let (log, n) = (Path::new(LOG_IN_ROOT), all.len() as u64);
    for (script, then) in hooks.install_stages(&preinsts, &essential_names) {
        crate::interrupt::check()?;
        let run = install_run(&t, spec, &name, &tree, &script);
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
        crate::interrupt::check()?;
        if code != 0 {
            return Err(failed_install(dirs, &name, &root_dir, code));
        }
        if let Some(phase) = then {
            hooks.run(phase, &hook_ctx)?;
        }
    }
    crate::interrupt::check()?;
    hooks.run(HookPhase::Customize, &hook_ctx)?;
    // Tidy: the no-services policy goes.
    root_dir.remove(Path::new("usr/sbin/policy-rc.d"))?;
    // Nothing was synced while unpacking (as dpkg's force-unsafe-io): one
    // sync of the root's filesystem before it appears under its name.
    let tree_fd = std::fs::File::open(&tree).map_err(io(&tree))?;
    nix::unistd::syncfs(&tree_fd).map_err(|e| io(&tree)(e.into()))?;

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
    fn install_script_runs_the_preinsts_in_order_then_configures() {
        let s = install_script(
            &[
                ("base-passwd".into(), "arm64".into()),
                ("libc6:arm64".into(), "arm64".into()),
            ],
            None,
            false,
        );
        let lines: Vec<&str> = s.lines().collect();
        assert_eq!(lines[0], "set -e");
        let a = lines.iter().position(|l| *l == "preinst base-passwd arm64");
        let b = lines.iter().position(|l| *l == "preinst libc6:arm64 arm64");
        assert!(a.is_some() && a < b, "{s}");
        assert!(s.contains("DPKG_MAINTSCRIPT_PACKAGE=\"${1%%:*}\""), "{s}");
        assert!(
            s.contains("dpkg --configure -a\ndpkg --audit\nif id _apt"),
            "{s}"
        );
        assert!(install_script(&[], None, true).ends_with("apt-get update -q\n"));
        // Before an --essential-hook: only the Essential set is configured.
        let names = ["dpkg".to_string(), "libc6:arm64".to_string()];
        let s = install_script(&[], Some(&names), false);
        assert!(s.ends_with("dpkg --configure dpkg libc6:arm64\n"), "{s}");
        assert!(!s.contains("--audit"), "{s}");
    }

    #[test]
    fn the_failed_packages_are_named_from_the_log() {
        let log = "Setting up a (1) ...\ndpkg: error processing package libc-bin (--configure):\n installed libc-bin package post-installation script subprocess returned error exit status 1\nErrors were encountered while processing:\n libc-bin\n dash\n";
        assert_eq!(failed_packages(log), ["libc-bin", "dash"]);
        let log = "zchroot: running the preinst of base-passwd\nzchroot: running the preinst of libc6:arm64\nboom\n";
        assert_eq!(failed_packages(log), ["libc6:arm64"]);
        assert!(failed_packages("dpkg: error: no\n").is_empty());
        assert!(failed_packages("").is_empty());
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
