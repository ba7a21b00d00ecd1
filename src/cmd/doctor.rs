//! `zchroot doctor`: what this host supports and what zchroot will use, and
//! with `--fix` what zchroot can repair itself.

use super::{CmdError, Ctx};
use crate::doctor::{checks, writable_check, Check, Fixed, Private, Status, Writable};
use crate::host::dir_facts;
use crate::sandbox::host_binfmt;

/// What doctor found (and fixed first, with `--fix`).
#[derive(Debug)]
pub struct Diagnosis {
    pub fixed: Option<Fixed>,
    pub checks: Vec<Check>,
}

impl Diagnosis {
    /// A check failed: the exit status is 1.
    pub fn failed(&self) -> bool {
        self.checks.iter().any(|c| c.status == Status::Fail)
    }
}

pub fn doctor(ctx: &Ctx, fix: bool) -> Result<Diagnosis, CmdError> {
    let private = [
        ctx.dirs.state.clone(),
        ctx.roots().dir,
        ctx.dirs.cache.clone(),
    ];
    let config = ctx.config_dir().ok();
    let more = Private::find(&ctx.dirs.state, &ctx.dirs.cache, config.as_deref());
    let fixed = fix.then(|| {
        let dirs = [&private[..], &more.dirs].concat();
        crate::doctor::fix(&dirs, &more.locks, &ctx.exe)
    });
    let mut facts = crate::host::facts(&ctx.dirs.state, &private);
    facts.more_private_dirs = more.dirs.iter().map(|p| dir_facts(p)).collect();
    facts.lock_files = more.locks.iter().map(|p| dir_facts(p)).collect();
    if host_binfmt::uses_host_table() {
        facts.stale_binfmt = Some(host_binfmt::stale_entries(&ctx.exe).map_err(|e| e.to_string()));
    }
    let host = crate::host::host_arch(&ctx.manifests).ok();
    let foreign: Vec<_> = ctx
        .manifests
        .architectures()?
        .into_iter()
        .filter(|a| host.as_ref().is_none_or(|h| h.name != a.name))
        .collect();
    let mut list = checks(&facts, &foreign);
    let mut dirs = vec![
        ("state", ctx.dirs.state.clone()),
        ("cache", ctx.dirs.cache.clone()),
    ];
    if let Some(config) = config {
        dirs.push(("config", config));
    }
    let writable: Vec<Writable> = dirs
        .iter()
        .map(|(what, dir)| Writable::probe(what, dir))
        .collect();
    // Before the free disk, which is only worth having where zchroot can write.
    let at = list
        .iter()
        .position(|c| c.name == "free disk")
        .unwrap_or(list.len());
    list.splice(
        at..at,
        writable.iter().map(|w| writable_check(w, &facts.user)),
    );
    if writable[0].refused.is_some() {
        for c in list.iter_mut().filter(|c| c.name == "free disk") {
            c.status = c.status.max(Status::Warn);
            c.detail
                .push_str(", but zchroot cannot write there (see writable)");
        }
    }
    Ok(Diagnosis {
        fixed,
        checks: list,
    })
}

/// The lines of `--fix` (stderr).
pub fn render_fixed(f: &Fixed) -> String {
    let done = f.done.iter().map(|l| format!("fixed: {l}\n"));
    let failed = f.failed.iter().map(|l| format!("could not fix: {l}\n"));
    done.chain(failed).collect()
}

/// The checks as a table: a mark, the name, the detail, and a help line.
pub fn render_checks(list: &[Check]) -> String {
    let mut out = String::new();
    for c in list {
        let mark = match c.status {
            Status::Ok => "ok  ",
            Status::Warn => "warn",
            Status::Fail => "FAIL",
        };
        out.push_str(&format!("{mark} {:<24} {}\n", c.name, c.detail));
        if let Some(h) = &c.help {
            out.push_str(&format!("     {:<24} help: {h}\n", ""));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_render_a_mark_and_a_help_line_under_the_detail() {
        let list = vec![
            Check {
                name: "userns",
                status: Status::Ok,
                detail: "enabled".into(),
                help: None,
            },
            Check {
                name: "binfmt",
                status: Status::Fail,
                detail: "missing".into(),
                help: Some("modprobe binfmt_misc".into()),
            },
        ];
        let text = render_checks(&list);
        let lines: Vec<_> = text.lines().collect();
        assert_eq!(lines[0], format!("ok   {:<24} enabled", "userns"));
        assert_eq!(lines[1], format!("FAIL {:<24} missing", "binfmt"));
        assert_eq!(
            lines[2],
            format!("     {:<24} help: modprobe binfmt_misc", "")
        );
        let fixed = Fixed {
            done: vec!["a".into()],
            failed: vec!["b".into()],
        };
        assert_eq!(render_fixed(&fixed), "fixed: a\ncould not fix: b\n");
    }
}
