//! `build-dkms` and `build-zfs`: thin calls into the module builder, and the
//! lines that say what was built.

use super::{CmdError, Ctx};
use crate::kmod::{BuildError, BuildSpec, Built, ZfsSpec};

/// One result per kernel: a failed kernel does not stop the others.
pub type Builds = Vec<Result<Built, BuildError>>;

pub fn build_dkms(ctx: &Ctx, spec: &BuildSpec) -> Result<Builds, CmdError> {
    ctx.call(crate::kmod::build_dkms, spec)
}

/// The builds, and the zfsutils-linux version matching the module when the
/// module came from the suites.
pub fn build_zfs(ctx: &Ctx, spec: &ZfsSpec) -> Result<(Builds, Option<String>), CmdError> {
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

/// The hint after a ZFS build: the userland to install with the module.
pub fn zfs_utils_hint(version: &str) -> String {
    format!(
        "  on the board: apt-get install zfsutils-linux={version} (userland matching the module)"
    )
}
