//! `cargo xtask man`: zchroot's manual pages, rendered by clap_mangen from
//! the clap definitions the binary parses (`zchroot::cli`), so they cannot
//! drift from `--help`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap_mangen::Man;
use roff::{bold, roman, Roff};

/// Writes `zchroot.1` and a page for each command below it
/// (`zchroot-create.1`, `zchroot-target-add.1`, ...) into `out`, made if
/// missing; returns the files written.
pub fn write_pages(out: &Path) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(out).with_context(|| format!("cannot make {}", out.display()))?;
    let mut top = zchroot::cli::command().disable_help_subcommand(true);
    top.build();
    let version = top.get_version().unwrap_or_default().to_owned();
    let mut written = Vec::new();
    let mut todo = vec![(String::new(), top)];
    while let Some((path, cmd)) = todo.pop() {
        for sc in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
            let p = format!("{path} {}", sc.get_name()).trim().to_owned();
            todo.push((p, sc.clone()));
        }
        let file = out.join(format!("{}.1", page_name(&cmd)));
        let page = render(cmd, &path, &version)?;
        std::fs::write(&file, page).with_context(|| format!("cannot write {}", file.display()))?;
        written.push(file);
    }
    written.sort();
    Ok(written)
}

/// `zchroot`, `zchroot-target-add`: what clap names a built command.
fn page_name(cmd: &clap::Command) -> &str {
    cmd.get_display_name().unwrap_or(cmd.get_name())
}

/// One page: clap_mangen's sections, then the command's examples and, below
/// zchroot itself, where the global options are.
fn render(cmd: clap::Command, path: &str, version: &str) -> Result<Vec<u8>> {
    let has_options = cmd.get_arguments().any(|a| !a.is_hide_set());
    let has_commands = cmd.get_subcommands().any(|s| !s.is_hide_set());
    let has_version = cmd.get_version().is_some();
    let man = Man::new(cmd.after_help(None::<&str>))
        .source(format!("zchroot {version}"))
        .manual("zchroot manual");
    let mut page = Vec::new();
    man.render_title(&mut page)?;
    man.render_name_section(&mut page)?;
    man.render_synopsis_section(&mut page)?;
    man.render_description_section(&mut page)?;
    if has_options {
        man.render_options_section(&mut page)?;
    }
    if has_commands {
        man.render_subcommands_section(&mut page)?;
    }
    let mut roff = Roff::new();
    roff.control("SH", ["EXAMPLES"]).control("nf", []);
    for e in zchroot::cli::examples(path) {
        roff.text([roman(*e)]);
    }
    roff.control("fi", []);
    if !path.is_empty() {
        roff.control("SH", ["SEE ALSO"]).text([
            bold("zchroot"),
            roman("(1), for the global options every command accepts."),
        ]);
    }
    roff.to_writer(&mut page)?;
    if has_version {
        man.render_version_section(&mut page)?;
    }
    Ok(page)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// "zchroot-target-add" for every command below zchroot, help aside.
    fn command_pages(cmd: &clap::Command, prefix: &str, out: &mut Vec<String>) {
        for sc in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
            let name = format!("{prefix}-{}", sc.get_name());
            command_pages(sc, &name, out);
            out.push(name);
        }
    }

    #[test]
    fn a_page_for_zchroot_and_each_command_with_its_examples() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("man");
        let written = write_pages(&out).unwrap();
        let mut expected = vec!["zchroot".to_owned()];
        command_pages(&zchroot::cli::command(), "zchroot", &mut expected);
        let mut expected: Vec<PathBuf> = expected
            .iter()
            .map(|n| out.join(format!("{n}.1")))
            .collect();
        expected.sort();
        assert_eq!(written, expected);
        for page in [
            "zchroot-create",
            "zchroot-target-add",
            "zchroot-completions",
        ] {
            assert!(expected.contains(&out.join(format!("{page}.1"))), "{page}");
        }

        let top = std::fs::read_to_string(out.join("zchroot.1")).unwrap();
        assert!(
            top.starts_with(".ie") && top.contains(".TH zchroot 1"),
            "{top}"
        );
        for part in [
            "\\-\\-manifests",
            "zchroot\\-build\\-zfs(1)",
            ".SH EXAMPLES",
        ] {
            assert!(top.contains(part), "zchroot.1 lacks {part}:\n{top}");
        }
        let add = std::fs::read_to_string(out.join("zchroot-target-add.1")).unwrap();
        let examples = add.split_once(".SH EXAMPLES\n.nf\n").unwrap().1;
        let first = zchroot::cli::examples("target add")[0].replace('-', "\\-");
        assert!(examples.starts_with(&first), "{add}");
        assert!(
            add.contains("\\fBzchroot\\fR(1), for the global options"),
            "{add}"
        );
        assert!(!add.contains("\\-\\-manifests"), "{add}");
    }
}
