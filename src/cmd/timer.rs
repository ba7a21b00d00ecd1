//! `zchroot update --install-timer` and `--remove-timer`: a systemd timer
//! (system-wide for root, a user timer otherwise) that runs `zchroot
//! update`, or a crontab line where systemd is not running.

use std::path::{Path, PathBuf};

use super::{io, CmdError, Ctx};
use crate::paths::DirsEnv;

/// Where systemd says it runs as the init system (sd_booted(3)).
const SYSTEMD_RUNNING: &str = "/run/systemd/system";

/// The units' files and how to tell systemd about them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Units {
    pub service: PathBuf,
    pub timer: PathBuf,
    /// `systemctl`, or `systemctl --user` for a normal user.
    pub systemctl: &'static str,
}

/// Where the units go: /etc/systemd/system for root, the user's systemd
/// config directory otherwise.
pub fn units(env: &DirsEnv) -> Result<Units, CmdError> {
    let dir = if env.is_root {
        PathBuf::from("/etc/systemd/system")
    } else {
        match (&env.xdg_config_home, &env.home) {
            (Some(c), _) => c.join("systemd/user"),
            (None, Some(h)) => h.join(".config/systemd/user"),
            (None, None) => return Err(CmdError::NoUnitDir),
        }
    };
    Ok(Units {
        service: dir.join("zchroot-update.service"),
        timer: dir.join("zchroot-update.timer"),
        systemctl: if env.is_root {
            "systemctl"
        } else {
            "systemctl --user"
        },
    })
}

/// What `--install-timer` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Installed {
    /// The unit files were written.
    Units(Units),
    /// No systemd here: this line is for the user's crontab.
    Cron(String),
}

/// Writes the service and timer that run `zchroot update` every `every`
/// (a systemd calendar), or returns the crontab line without systemd.
pub fn install(ctx: &Ctx, every: &str) -> Result<Installed, CmdError> {
    install_with(ctx, every, Path::new(SYSTEMD_RUNNING).is_dir())
}

fn install_with(ctx: &Ctx, every: &str, systemd: bool) -> Result<Installed, CmdError> {
    let home = ctx.env.zchroot_home.as_deref();
    let units = units(&ctx.env)?;
    if !systemd {
        return crate::update::cron_line(&ctx.exe, home, every)
            .map(Installed::Cron)
            .ok_or_else(|| CmdError::CronEvery(every.to_string()));
    }
    let (s, t) = crate::update::timer_units(&ctx.exe, every, home);
    if let Some(dir) = units.service.parent() {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
    }
    std::fs::write(&units.service, s).map_err(io(&units.service))?;
    std::fs::write(&units.timer, t).map_err(io(&units.timer))?;
    Ok(Installed::Units(units))
}

/// Removes the timer and the service; returns the units and which of the
/// files were there.
pub fn remove(ctx: &Ctx) -> Result<(Units, Vec<PathBuf>), CmdError> {
    let units = units(&ctx.env)?;
    let mut removed = Vec::new();
    for p in [&units.timer, &units.service] {
        match std::fs::remove_file(p) {
            Ok(()) => removed.push(p.clone()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(p)(e)),
        }
    }
    Ok((units, removed))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(root: bool, home: Option<&str>, xdg: Option<&str>) -> DirsEnv {
        DirsEnv {
            home: home.map(PathBuf::from),
            xdg_config_home: xdg.map(PathBuf::from),
            is_root: root,
            ..Default::default()
        }
    }

    #[test]
    fn root_gets_system_units_and_a_user_gets_user_units() {
        let u = units(&env(true, Some("/root"), None)).unwrap();
        assert_eq!(
            u.service,
            PathBuf::from("/etc/systemd/system/zchroot-update.service")
        );
        assert_eq!(u.systemctl, "systemctl");
        let u = units(&env(false, Some("/home/a"), None)).unwrap();
        assert_eq!(
            u.timer,
            PathBuf::from("/home/a/.config/systemd/user/zchroot-update.timer")
        );
        assert_eq!(u.systemctl, "systemctl --user");
        let u = units(&env(false, Some("/home/a"), Some("/x"))).unwrap();
        assert_eq!(
            u.timer,
            PathBuf::from("/x/systemd/user/zchroot-update.timer")
        );
        assert!(matches!(
            units(&env(false, None, None)),
            Err(CmdError::NoUnitDir)
        ));
    }

    #[test]
    fn install_writes_both_units_or_gives_a_cron_line_and_remove_takes_them_away() {
        let tmp = tempfile::tempdir().unwrap();
        let ctx = crate::cmd::test_ctx(Path::new("/z"));
        let ctx = crate::cmd::Ctx {
            env: DirsEnv {
                xdg_config_home: Some(tmp.path().into()),
                zchroot_home: Some("/z".into()),
                ..Default::default()
            },
            ..ctx
        };
        match install_with(&ctx, "weekly", false).unwrap() {
            Installed::Cron(line) => {
                assert_eq!(
                    line,
                    "17 3 * * 1 ZCHROOT_HOME=/z /usr/bin/zchroot -q update"
                )
            }
            other => panic!("{other:?}"),
        }
        let Installed::Units(u) = install_with(&ctx, "weekly", true).unwrap() else {
            panic!("no units")
        };
        let service = std::fs::read_to_string(&u.service).unwrap();
        assert!(service.contains("Environment=ZCHROOT_HOME=/z\n"));
        assert!(service.contains("ExecStart=/usr/bin/zchroot update\n"));
        assert!(std::fs::read_to_string(&u.timer)
            .unwrap()
            .contains("OnCalendar=weekly\n"));
        let (_, removed) = remove(&ctx).unwrap();
        assert_eq!(removed, vec![u.timer.clone(), u.service.clone()]);
        assert_eq!(remove(&ctx).unwrap().1, Vec::<PathBuf>::new());
    }
}
