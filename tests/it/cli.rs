//! The command line as a user meets it: exit status 2 for what clap
//! refuses and 1 for what zchroot does, the new spellings (`--arch`,
//! `--release`) and the old ones reaching the same checks, help and
//! completion scripts.

use std::process::Command;

use crate::common::{have_command, require, stderr, stdout, zchroot, ZCHROOT};

#[test]
fn argument_errors_exit_2_and_failures_1() {
    let home = tempfile::tempdir().unwrap();
    let z = home.path().join("z");
    for (args, msg) in [
        (vec!["create"], "--arch <ARCH>"),
        (vec!["create", "--arch", "arm64", "--bogus"], "--bogus"),
        (
            vec!["create", "arm64", "--arch", "armhf"],
            "cannot be used with",
        ),
        (vec!["frobnicate"], "unrecognized subcommand 'frobnicate'"),
        (vec!["completions", "tcsh"], "invalid value 'tcsh'"),
        (
            vec!["create", "--arch", "arm64", "--parallel", "0"],
            "--parallel",
        ),
    ] {
        let o = zchroot(&z, &args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(msg), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains("--help"), "{args:?}: {}", stderr(&o));
    }
    for (args, msg) in [
        (
            vec!["create", "--arch", "arm46"],
            "unknown architecture 'arm46': known are amd64, arm64, armhf, riscv64",
        ),
        (
            vec!["create", "--arch", "arm64", "--release", "sid"],
            "unknown release 'sid'",
        ),
        (
            vec!["create", "arm64", "--suite", "sid"],
            "unknown release 'sid'",
        ),
        (
            vec!["resolve", "--arch", "arm64", "--release", "sid"],
            "unknown release 'sid'",
        ),
    ] {
        let o = zchroot(&z, &args);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(msg), "{args:?}: {}", stderr(&o));
    }
}

#[test]
fn help_lists_the_commands_and_each_command_its_examples() {
    let home = tempfile::tempdir().unwrap();
    let o = zchroot(home.path(), &["--help"]);
    assert_eq!(o.status.code(), Some(0));
    let help = stdout(&o);
    let create = help.find("\n  create ").expect(&help);
    let doctor = help.find("\n  doctor ").expect(&help);
    assert!(create < doctor, "{help}");
    assert!(help.contains("--manifests <DIR>"), "{help}");

    let o = zchroot(home.path(), &["target", "add", "--help"]);
    assert_eq!(o.status.code(), Some(0));
    let help = stdout(&o);
    assert!(!help.contains("--manifests <DIR>"), "{help}");
    assert!(
        help.contains("Global options: -q, -v, --manifests DIR"),
        "{help}"
    );
    let examples = help.rsplit_once("Examples:\n").expect(&help).1;
    assert!(
        examples.trim_start().starts_with("zchroot target add "),
        "{help}"
    );
}

#[test]
fn completion_scripts_name_the_commands() {
    let home = tempfile::tempdir().unwrap();
    for (shell, start) in [
        ("bash", "_zchroot() {"),
        ("zsh", "#compdef zchroot"),
        ("fish", "complete -c zchroot"),
    ] {
        let o = zchroot(home.path(), &["completions", shell]);
        assert_eq!(o.status.code(), Some(0), "{shell}: {}", stderr(&o));
        let script = stdout(&o);
        assert!(script.contains(start), "{shell}: {script}");
        for word in ["create", "build-zfs", "target", "completions", "release"] {
            assert!(script.contains(word), "{shell}: no {word}");
        }
    }
    // bash: the script loads, and completes the commands.
    if !require(have_command("bash"), "bash", "apt-get install bash") {
        return;
    }
    let script = format!(
        "source <({ZCHROOT} completions bash)
         COMP_WORDS=(zchroot bui); COMP_CWORD=1; COMP_LINE='zchroot bui'; COMP_POINT=11
         _zchroot zchroot bui zchroot
         echo \"${{COMPREPLY[@]}}\""
    );
    let o = Command::new("bash").args(["-c", &script]).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "build-zfs build-dkms", "{}", stderr(&o));
}
