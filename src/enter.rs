//! Entering a root: the one place that joins the host's facts, the archive
//! (qemu-user for a foreign root comes from it, verified) and the sandbox,
//! which itself fetches nothing.

use crate::archive::fetch::FetchOptions;
use crate::host::{self, SandboxFacts};
use crate::manifest::Manifests;
use crate::paths::DataDirs;
use crate::report::Reporter;
use crate::sandbox::idmap::IdMaps;
use crate::sandbox::{self, spawn, Emulation, RunSpec, SandboxError};

/// Checks the spec, decides how the root's programs run (fetching qemu-user
/// when they need it) and builds the plan the sandbox helper carries out.
pub fn prepare(
    manifests: &Manifests,
    spec: &RunSpec,
    dirs: &DataDirs,
    opts: FetchOptions,
    reporter: &dyn Reporter,
) -> Result<(spawn::SandboxPlan, IdMaps, Emulation), SandboxError> {
    let root = sandbox::check_root(spec)?;
    let archs = manifests.architectures()?;
    let root_arch = match &spec.arch {
        Some(a) => manifests.arch(a)?,
        None => host::root_arch(&archs, &root)
            .ok_or_else(|| SandboxError::UnknownRootArch(root.clone()))?,
    };
    let host_arch = host::host_arch(manifests)?;
    let maps = sandbox::id_maps()?;
    let facts = SandboxFacts::probe();
    let need = sandbox::choose_emulation(&root_arch, &host_arch, &facts)?;
    let interpreter = if need.needs_qemu() {
        Some(crate::qemu::qemu_binary(
            manifests,
            &spec.release,
            &root_arch,
            &host_arch,
            dirs,
            spec.mirror.as_deref(),
            opts,
            reporter,
        )?)
    } else {
        None
    };
    let emulation = need.with_interpreter(interpreter);
    let plan = sandbox::plan(spec, root, &root_arch, &emulation, &maps, &facts);
    Ok((plan, maps, emulation))
}
