//! `build-dkms` and `build-zfs`: thin calls into the module builder, and the
//! lines that say what was built.

use super::{CmdError, Ctx};
use crate::kmod::zfs::Userland;
use crate::kmod::{BuildError, BuildSpec, Built, ZfsSpec};

/// One result per kernel: a failed kernel does not stop the others.
pub type Builds = Vec<Result<Built, BuildError>>;

pub fn build_dkms(ctx: &Ctx, spec: &BuildSpec) -> Result<Builds, CmdError> {
    ctx.call(crate::kmod::build_dkms, spec)
}

/// The builds, and the zfsutils-linux matching the module when the module
/// came from the suites.
pub fn build_zfs(ctx: &Ctx, spec: &ZfsSpec) -> Result<(Builds, Option<Userland>), CmdError> {
    ctx.call(crate::kmod::build_zfs, spec)
}

/// The line on stderr that says what a built package holds.
pub fn describe(b: &Built, arch: &str) -> String {
    format!(
        "  {} {} for {} ({arch}, {}): Depends: {}; modules {}; compiler {}; {}",
        b.module,
        b.version,
        b.kernel.release,
        b.strategy,
        b.kernel.depends(),
        b.modules.join(", "),
        b.compiler,
        match (b.signed, b.signed_with_given_key) {
            (true, true) => "signed with your key",
            (true, false) =>
                "signed with the build root's throwaway DKMS key (not trusted by Secure Boot)",
            (false, _) => "unsigned",
        }
    )
}

/// A built package as the board installs it: the kernel it is for and
/// its file name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForBoard {
    pub kernel: String,
    pub file: String,
}

impl ForBoard {
    pub fn of(b: &Built) -> ForBoard {
        ForBoard {
            kernel: b.kernel.release.clone(),
            file: b
                .deb
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
        }
    }
}

/// What the board runs after a build: `apt install ./FILE` (apt, unlike
/// `dpkg -i`, brings what the package depends on), with the matching
/// zfsutils-linux for ZFS, and its archive component enabled first when
/// it is not `main` (Debian's zfsutils-linux is in `contrib`).
pub fn board_commands(built: &[ForBoard], utils: Option<&Userland>) -> String {
    if built.is_empty() {
        return String::new();
    }
    let mut out = String::from("On the board, as root: copy the package there");
    if built.len() > 1 {
        out.push_str(" (the one for its kernel: uname -r)");
    }
    out.push_str(", then:\n");
    if let Some(u) = utils.filter(|u| u.component != "main") {
        let c = &u.component;
        out.push_str(&format!(
            "  # zfsutils-linux is in {c}: enable {c} (with /etc/apt/sources.list instead, add {c} to its deb lines)\n  \
             sed -i -E '/^Components:/{{/\\<{c}\\>/!s/$/ {c}/}}' /etc/apt/sources.list.d/debian.sources\n  \
             apt update\n"
        ));
    }
    let userland = utils
        .map(|u| format!(" zfsutils-linux={}", u.version))
        .unwrap_or_default();
    for b in built {
        out.push_str(&format!(
            "  apt install ./{}{userland}",
            shell_word(&b.file)
        ));
        if built.len() > 1 {
            out.push_str(&format!("    # kernel {}", b.kernel));
        }
        out.push('\n');
    }
    out
}

/// `s` as one shell word.
fn shell_word(s: &str) -> String {
    if s.chars()
        .all(|c| c.is_ascii_alphanumeric() || "/._-+:=@%~".contains(c))
    {
        s.into()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn built(kernel: &str) -> ForBoard {
        ForBoard {
            kernel: kernel.into(),
            file: format!("zfs-modules-{kernel}_2.3.2_arm64.deb"),
        }
    }

    #[test]
    fn the_board_installs_the_module_with_apt_and_enables_contrib_for_the_userland() {
        let utils = Userland {
            version: "2.3.2-2".into(),
            component: "contrib".into(),
        };
        assert_eq!(
            board_commands(&[built("6.12.118+deb13-arm64")], Some(&utils)),
            "On the board, as root: copy the package there, then:\n  \
             # zfsutils-linux is in contrib: enable contrib (with /etc/apt/sources.list instead, add contrib to its deb lines)\n  \
             sed -i -E '/^Components:/{/\\<contrib\\>/!s/$/ contrib/}' /etc/apt/sources.list.d/debian.sources\n  \
             apt update\n  \
             apt install ./zfs-modules-6.12.118+deb13-arm64_2.3.2_arm64.deb zfsutils-linux=2.3.2-2\n"
        );
    }

    #[test]
    fn a_module_without_userland_or_in_main_needs_no_sources_change() {
        let main = Userland {
            version: "1.0-1".into(),
            component: "main".into(),
        };
        let two = [built("6.12.117+deb13-arm64"), built("6.12.118+deb13-arm64")];
        let text = board_commands(&two, Some(&main));
        assert!(!text.contains("sed "), "{text}");
        assert!(
            text.contains("(the one for its kernel: uname -r)"),
            "{text}"
        );
        assert!(text.contains(
            "  apt install ./zfs-modules-6.12.118+deb13-arm64_2.3.2_arm64.deb zfsutils-linux=1.0-1    # kernel 6.12.118+deb13-arm64\n"
        ), "{text}");
        assert_eq!(
            board_commands(&[built("6.1.0-arm64")], None),
            "On the board, as root: copy the package there, then:\n  apt install ./zfs-modules-6.1.0-arm64_2.3.2_arm64.deb\n"
        );
        assert_eq!(board_commands(&[], None), "");
    }
}
