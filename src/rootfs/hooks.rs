//! What `create` lets a user add to a root as mmdebstrap does: hooks run at
//! named phases (on the host with the root's directory as `$1`, or inside
//! the root through the sandbox when written `chroot:COMMAND`), and apt and
//! dpkg options written into the root before its packages are installed.
//! The plan (which command, where, with which arguments and environment) is
//! pure and unit-tested; `run` and `write_options` apply it.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::archive::fetch::FetchOptions;
use crate::manifest::Manifests;
use crate::paths::DataDirs;
use crate::report::Reporter;
use crate::rootdir::RootDir;
use crate::sandbox::{spawn, RunSpec, SandboxError};

/// A hook written `chroot:COMMAND` runs COMMAND inside the root.
pub const INSIDE_PREFIX: &str = "chroot:";
/// Where `--aptopt` lines go, relative to the root.
pub const APT_CONF: &str = "etc/apt/apt.conf.d/99zchroot";
/// Where `--dpkgopt` lines go, relative to the root.
pub const DPKG_CFG: &str = "etc/dpkg/dpkg.cfg.d/99zchroot";

#[derive(Debug, thiserror::Error)]
pub enum HookError {
    #[error("{flag} '{command}': {reason}")]
    Bad {
        flag: String,
        command: String,
        reason: String,
    },
    #[error("{flag} '{command}' failed ({status}); nothing of the root was kept\nhelp: fix the hook (its output is above) and run create again")]
    Failed {
        flag: String,
        command: String,
        status: String,
    },
    #[error("{flag} '{command}' could not start: {source}")]
    Spawn {
        flag: String,
        command: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{flag} '{command}': {source}")]
    Sandbox {
        flag: String,
        command: String,
        #[source]
        source: Box<SandboxError>,
    },
    #[error(transparent)]
    Root(#[from] crate::rootdir::RootDirError),
}

/// The named moments of `create` at which hooks run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookPhase {
    /// The empty tree is made (merged-/usr links only): nothing to run
    /// inside yet.
    Setup,
    /// The Essential set is configured by the root's dpkg; the rest is
    /// unpacked and registered, not configured yet.
    Essential,
    /// Everything is installed and apt's lists are fresh; the root does not
    /// have its name yet (and no service starts: policy-rc.d is in place).
    Customize,
}

impl HookPhase {
    pub fn name(self) -> &'static str {
        match self {
            HookPhase::Setup => "setup",
            HookPhase::Essential => "essential",
            HookPhase::Customize => "customize",
        }
    }

    /// The option that gives hooks of this phase.
    pub fn flag(self) -> String {
        format!("--{}-hook", self.name())
    }
}

/// What the user gave on the command line.
#[derive(Debug, Clone, Default)]
pub struct HookSpec {
    pub setup: Vec<String>,
    pub essential: Vec<String>,
    pub customize: Vec<String>,
    /// `--aptopt` lines (apt.conf syntax; a missing final `;` is added).
    pub aptopt: Vec<String>,
    /// `--dpkgopt` lines (dpkg.cfg syntax: an option without its `--`).
    pub dpkgopt: Vec<String>,
}

/// Where a hook runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Place {
    /// On the host, as the caller, with the root's directory as `$1`.
    Host,
    /// Inside the root, through the sandbox (as root of the root), `$1` = `/`.
    Inside,
}

/// One hook to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hook {
    pub phase: HookPhase,
    pub place: Place,
    /// The shell command (without `chroot:`).
    pub command: String,
    /// As the user wrote it, for messages.
    pub given: String,
}

/// The checked hooks and the option files.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HookPlan {
    pub hooks: Vec<Hook>,
    /// Contents of [`APT_CONF`], if any option was given.
    pub apt_conf: Option<String>,
    /// Contents of [`DPKG_CFG`], if any option was given.
    pub dpkg_cfg: Option<String>,
}

/// What a hook is told about the root being made.
#[derive(Debug, Clone)]
pub struct HookEnv {
    /// The root's directory on the host (the staging tree).
    pub tree: PathBuf,
    pub name: String,
    pub arch: String,
    pub release: String,
    /// `--mirror`, for the sandbox (not told to hooks).
    pub mirror: Option<String>,
}

fn bad(phase: HookPhase, given: &str, reason: &str) -> HookError {
    HookError::Bad {
        flag: phase.flag(),
        command: given.into(),
        reason: reason.into(),
    }
}

fn option_line(flag: &str, line: &str) -> Result<String, HookError> {
    let line = line.trim();
    if line.is_empty() || line.contains('\n') {
        return Err(HookError::Bad {
            flag: flag.into(),
            command: line.into(),
            reason: "give one non-empty option line".into(),
        });
    }
    Ok(line.to_string())
}

impl HookSpec {
    /// Whether any hook is given. A hook may do anything to the tree, so
    /// such a root is neither copied from a template nor kept as one.
    pub fn has_hooks(&self) -> bool {
        !(self.setup.is_empty() && self.essential.is_empty() && self.customize.is_empty())
    }

    /// Checks the hooks and options; nothing is run or written.
    pub fn plan(&self) -> Result<HookPlan, HookError> {
        let mut hooks = Vec::new();
        for (phase, list) in [
            (HookPhase::Setup, &self.setup),
            (HookPhase::Essential, &self.essential),
            (HookPhase::Customize, &self.customize),
        ] {
            for given in list {
                let (place, command) = match given.strip_prefix(INSIDE_PREFIX) {
                    Some(rest) => (Place::Inside, rest.trim_start()),
                    None => (Place::Host, given.as_str()),
                };
                if command.trim().is_empty() {
                    return Err(bad(phase, given, "an empty command"));
                }
                if place == Place::Inside && phase == HookPhase::Setup {
                    return Err(bad(
                        phase,
                        given,
                        "at setup the root has no shell yet to run it inside\nhelp: run it on the host (without chroot:), or make it an --essential-hook",
                    ));
                }
                hooks.push(Hook {
                    phase,
                    place,
                    command: command.to_string(),
                    given: given.clone(),
                });
            }
        }
        let apt: Vec<String> = self
            .aptopt
            .iter()
            .map(|l| {
                let l = option_line("--aptopt", l)?;
                Ok(if l.ends_with(';') || l.ends_with('}') {
                    l
                } else {
                    format!("{l};")
                })
            })
            .collect::<Result<_, HookError>>()?;
        let dpkg: Vec<String> = self
            .dpkgopt
            .iter()
            .map(|l| option_line("--dpkgopt", l).map(|l| l.trim_start_matches("--").to_string()))
            .collect::<Result<_, HookError>>()?;
        let file = |lines: Vec<String>, flag: &str| {
            (!lines.is_empty()).then(|| {
                format!(
                    "// Written by zchroot create from {flag}.\n{}\n",
                    lines.join("\n")
                )
            })
        };
        Ok(HookPlan {
            hooks,
            apt_conf: file(apt, "--aptopt"),
            dpkg_cfg: file(dpkg, "--dpkgopt").map(|s| s.replacen("//", "#", 1)),
        })
    }
}

/// The argv and environment of a host hook (run with `sh -c`).
pub fn host_command(hook: &Hook, env: &HookEnv) -> (Vec<String>, Vec<(String, String)>) {
    let argv = vec![
        "/bin/sh".into(),
        "-c".into(),
        hook.command.clone(),
        "zchroot-hook".into(),
        env.tree.display().to_string(),
    ];
    (
        argv,
        hook_env(hook.phase, &env.tree.display().to_string(), env),
    )
}

/// The argv of an inside hook: the same `$1` convention, with `/` for the
/// root, and the environment exported by the script (the sandbox clears
/// the host's).
pub fn inside_argv(hook: &Hook, env: &HookEnv) -> Vec<String> {
    let exports: String = hook_env(hook.phase, "/", env)
        .iter()
        .map(|(k, v)| format!("{k}='{}'; export {k}\n", v.replace('\'', "'\\''")))
        .collect();
    vec![
        "/bin/sh".into(),
        "-c".into(),
        format!("{exports}{}", hook.command),
        "zchroot-hook".into(),
        "/".into(),
    ]
}

fn hook_env(phase: HookPhase, root: &str, env: &HookEnv) -> Vec<(String, String)> {
    [
        ("ZCHROOT_HOOK", phase.name()),
        ("ZCHROOT_ROOT", root),
        ("ZCHROOT_NAME", &env.name),
        ("ZCHROOT_ARCH", &env.arch),
        ("ZCHROOT_RELEASE", &env.release),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// What running an inside hook needs: the sandbox's context.
pub struct HookCtx<'a> {
    pub env: HookEnv,
    pub manifests: &'a Manifests,
    pub dirs: &'a DataDirs,
    pub opts: FetchOptions,
    /// zchroot's own executable (the sandbox helper).
    pub exe: &'a Path,
    pub reporter: &'a dyn Reporter,
}

impl HookEnv {
    /// The root `name` of recipe `t` being made in `tree`; `mirror` is
    /// `--mirror` (for the sandbox's qemu-user of a foreign root).
    pub fn of(
        t: &crate::rootfs::spec::RootRecipe,
        name: &str,
        tree: &Path,
        mirror: Option<String>,
    ) -> Self {
        HookEnv {
            tree: tree.to_owned(),
            name: name.into(),
            arch: t.arch.name.clone(),
            release: t.release.release.clone(),
            mirror,
        }
    }
}

impl<'a> HookCtx<'a> {
    pub fn new(
        env: HookEnv,
        manifests: &'a Manifests,
        dirs: &'a DataDirs,
        opts: &FetchOptions,
        exe: &'a Path,
        reporter: &'a dyn Reporter,
    ) -> Self {
        HookCtx {
            env,
            manifests,
            dirs,
            opts: opts.clone(),
            exe,
            reporter,
        }
    }
}

impl HookPlan {
    /// The install scripts of `create` (every package is unpacked and
    /// registered natively before), each with the hooks' phase to run after
    /// it: one script when no hook runs at the Essential phase; else the
    /// preinsts and the Essential set configured, then the rest.
    pub fn install_stages(
        &self,
        preinsts: &[(String, String)],
        essential: &[String],
    ) -> Vec<(String, Option<HookPhase>)> {
        use crate::rootfs::create::install_script;
        if !self.has(HookPhase::Essential) {
            return vec![(install_script(preinsts, None, false), None)];
        }
        vec![
            (
                install_script(preinsts, Some(essential), false),
                Some(HookPhase::Essential),
            ),
            (install_script(&[], None, false), None),
        ]
    }

    /// Runs the hooks of `phase` in the order given; the first that fails
    /// stops `create` (whose staging guard removes the tree).
    pub fn run(&self, phase: HookPhase, ctx: &HookCtx) -> Result<(), HookError> {
        for hook in self.hooks.iter().filter(|h| h.phase == phase) {
            ctx.reporter
                .note(&format!("running {} '{}'", phase.flag(), hook.given));
            let status = match hook.place {
                Place::Host => run_on_host(hook, &ctx.env)?,
                Place::Inside => run_inside(hook, ctx)?,
            };
            if let Some(status) = status {
                return Err(HookError::Failed {
                    flag: phase.flag(),
                    command: hook.given.clone(),
                    status,
                });
            }
        }
        Ok(())
    }

    /// Whether any hook runs at `phase`.
    pub fn has(&self, phase: HookPhase) -> bool {
        self.hooks.iter().any(|h| h.phase == phase)
    }

    /// Writes the apt and dpkg option files through the confined handle.
    pub fn write_options(&self, root: &RootDir) -> Result<(), HookError> {
        for (rel, contents) in [(APT_CONF, &self.apt_conf), (DPKG_CFG, &self.dpkg_cfg)] {
            if let Some(text) = contents {
                let rel = Path::new(rel);
                root.create_dir_all(rel.parent().expect("has a parent"), 0o755)?;
                root.write(rel, text.as_bytes(), 0o644)?;
            }
        }
        Ok(())
    }
}

/// `None` when the hook succeeded, else its status in words.
fn run_on_host(hook: &Hook, env: &HookEnv) -> Result<Option<String>, HookError> {
    let (argv, vars) = host_command(hook, env);
    let status = Command::new(&argv[0])
        .args(&argv[1..])
        .envs(vars)
        .status()
        .map_err(|source| HookError::Spawn {
            flag: hook.phase.flag(),
            command: hook.given.clone(),
            source,
        })?;
    Ok((!status.success()).then(|| status.to_string()))
}

fn run_inside(hook: &Hook, ctx: &HookCtx) -> Result<Option<String>, HookError> {
    let sandbox_err = |e: SandboxError| HookError::Sandbox {
        flag: hook.phase.flag(),
        command: hook.given.clone(),
        source: Box::new(e),
    };
    let run = RunSpec {
        root: ctx.env.tree.clone(),
        arch: Some(ctx.env.arch.clone()),
        release: ctx.env.release.clone(),
        mirror: ctx.env.mirror.clone(),
        binds: vec![],
        share_network: true,
        hostname: ctx.env.name.clone(),
        argv: inside_argv(hook, &ctx.env),
        cwd: "/".into(),
    };
    let (plan, maps, _) = crate::enter::prepare(
        ctx.manifests,
        &run,
        ctx.dirs,
        ctx.opts.clone(),
        ctx.reporter,
    )
    .map_err(sandbox_err)?;
    let code = spawn::run(ctx.exe, &plan, &maps).map_err(|e| sandbox_err(e.into()))?;
    Ok((code != 0).then(|| format!("exit status: {code}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> HookEnv {
        HookEnv {
            tree: "/data/roots/.staging-x/root".into(),
            name: "x".into(),
            arch: "amd64".into(),
            release: "trixie".into(),
            mirror: None,
        }
    }

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn hooks_are_planned_by_phase_and_place() {
        let plan = HookSpec {
            setup: s(&["echo setup > /tmp/log"]),
            essential: s(&["chroot: dpkg -l"]),
            customize: s(&["cp file \"$1/etc/\"", "chroot:apt-get install -y less"]),
            ..Default::default()
        }
        .plan()
        .unwrap();
        let got: Vec<_> = plan
            .hooks
            .iter()
            .map(|h| (h.phase, h.place.clone(), h.command.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                (HookPhase::Setup, Place::Host, "echo setup > /tmp/log"),
                (HookPhase::Essential, Place::Inside, "dpkg -l"),
                (HookPhase::Customize, Place::Host, "cp file \"$1/etc/\""),
                (
                    HookPhase::Customize,
                    Place::Inside,
                    "apt-get install -y less"
                ),
            ]
        );
        assert!(plan.has(HookPhase::Essential));
        assert!(!HookPlan::default().has(HookPhase::Essential));
        assert_eq!(plan.apt_conf, None);
    }

    #[test]
    fn bad_hooks_are_refused_before_anything_runs() {
        let err = |h: HookSpec| h.plan().unwrap_err().to_string();
        let e = err(HookSpec {
            setup: s(&["chroot:true"]),
            ..Default::default()
        });
        assert!(
            e.starts_with("--setup-hook 'chroot:true': at setup the root has no shell yet"),
            "{e}"
        );
        assert!(e.contains("\nhelp: "), "{e}");
        let e = err(HookSpec {
            customize: s(&["chroot:  "]),
            ..Default::default()
        });
        assert_eq!(e, "--customize-hook 'chroot:  ': an empty command");
        let e = err(HookSpec {
            aptopt: s(&["a;\nb"]),
            ..Default::default()
        });
        assert!(e.starts_with("--aptopt "), "{e}");
    }

    #[test]
    fn host_hooks_get_the_root_as_first_argument() {
        let hook = Hook {
            phase: HookPhase::Customize,
            place: Place::Host,
            command: "touch \"$1/x\"".into(),
            given: "touch \"$1/x\"".into(),
        };
        let (argv, vars) = host_command(&hook, &env());
        assert_eq!(
            argv,
            [
                "/bin/sh",
                "-c",
                "touch \"$1/x\"",
                "zchroot-hook",
                "/data/roots/.staging-x/root"
            ]
        );
        assert!(vars.contains(&("ZCHROOT_HOOK".into(), "customize".into())));
        assert!(vars.contains(&("ZCHROOT_ROOT".into(), "/data/roots/.staging-x/root".into())));
        assert!(vars.contains(&("ZCHROOT_ARCH".into(), "amd64".into())));
    }

    #[test]
    fn inside_hooks_run_in_the_root_with_slash_as_first_argument() {
        let hook = Hook {
            phase: HookPhase::Essential,
            place: Place::Inside,
            command: "echo \"$1\"".into(),
            given: "chroot:echo \"$1\"".into(),
        };
        let argv = inside_argv(
            &hook,
            &HookEnv {
                name: "it's".into(),
                ..env()
            },
        );
        assert_eq!(argv[..2], ["/bin/sh", "-c"]);
        assert_eq!(argv[3..], ["zchroot-hook", "/"]);
        assert!(argv[2].contains("ZCHROOT_HOOK='essential'; export ZCHROOT_HOOK\n"));
        assert!(argv[2].contains("ZCHROOT_ROOT='/'; export ZCHROOT_ROOT\n"));
        assert!(argv[2].contains("ZCHROOT_NAME='it'\\''s'"), "{}", argv[2]);
        assert!(argv[2].ends_with("\necho \"$1\""));
    }

    #[test]
    fn apt_and_dpkg_options_become_files() {
        let plan = HookSpec {
            aptopt: s(&[
                "Acquire::Languages \"none\"",
                "APT::Install-Recommends \"false\";",
            ]),
            dpkgopt: s(&["path-exclude=/usr/share/man/*", "--force-unsafe-io"]),
            ..Default::default()
        }
        .plan()
        .unwrap();
        assert_eq!(
            plan.apt_conf.unwrap(),
            "// Written by zchroot create from --aptopt.\nAcquire::Languages \"none\";\nAPT::Install-Recommends \"false\";\n"
        );
        assert_eq!(
            plan.dpkg_cfg.unwrap(),
            "# Written by zchroot create from --dpkgopt.\npath-exclude=/usr/share/man/*\nforce-unsafe-io\n"
        );
    }
}
