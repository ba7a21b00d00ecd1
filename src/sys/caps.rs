//! Capabilities of the sandbox's processes. The command is root of its own
//! user namespace and keeps only a container's capabilities ([`CONTAINER`],
//! the set Docker and podman give a container): with `CAP_SYS_ADMIN` it
//! could mount over what zchroot set up, with `CAP_SYS_PTRACE` look into
//! other processes. The sandbox's init keeps only `CAP_KILL` once the
//! mounts are made.

use nix::errno::Errno;

use super::{SysError, SysResult};

/// `CAP_KILL`: init signals a command that runs as another user.
pub const CAP_KILL: u32 = 5;

/// A container's capabilities (<linux/capability.h> numbers): CHOWN,
/// DAC_OVERRIDE, FOWNER, FSETID, KILL, SETGID, SETUID, SETPCAP,
/// NET_BIND_SERVICE, SYS_CHROOT, MKNOD, AUDIT_WRITE, SETFCAP: what dpkg,
/// maintainer scripts and builds need, and nothing that reaches past the
/// sandbox (no SYS_ADMIN, SYS_PTRACE, DAC_READ_SEARCH, NET_ADMIN, NET_RAW,
/// SYS_MODULE, ...).
pub const CONTAINER: [u32; 13] = [0, 1, 3, 4, 5, 6, 7, 8, 10, 18, 27, 29, 31];
const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

#[repr(C)]
struct Header {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Default, Clone, Copy)]
struct Data {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

fn last(call: &str) -> SysError {
    SysError {
        call: call.into(),
        errno: Errno::last(),
    }
}

/// Keeps only the capabilities in `keep`, for good: every other one leaves
/// the bounding set (so no later exec of root or a setuid program gets it
/// back), the ambient set is emptied, and the effective, permitted and
/// inheritable sets keep only `keep`.
pub fn keep_only(keep: &[u32]) -> SysResult<()> {
    let mask: u64 = keep.iter().fold(0, |m, c| m | (1u64 << c));
    for cap in 0..64u32 {
        // SAFETY: prctl with integer arguments only.
        let r = unsafe { libc::prctl(libc::PR_CAPBSET_READ, cap as libc::c_ulong, 0, 0, 0) };
        if r < 0 {
            break; // past the kernel's last capability
        }
        if r == 1 && mask & (1u64 << cap) == 0 {
            // SAFETY: prctl with integer arguments only.
            let r = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) };
            if r != 0 {
                return Err(last(&format!("prctl(PR_CAPBSET_DROP, {cap})")));
            }
        }
    }
    // SAFETY: prctl with integer arguments only.
    let r = unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
            0,
            0,
            0,
        )
    };
    if r != 0 {
        return Err(last("prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)"));
    }
    let mut header = Header {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let mut data = [Data::default(); 2];
    // SAFETY: `header` and `data` are the version-3 structures capget
    // fills in (two data elements for 64 capabilities).
    let r = unsafe {
        libc::syscall(
            libc::SYS_capget,
            &mut header as *mut Header,
            data.as_mut_ptr(),
        )
    };
    if r != 0 {
        return Err(last("capget(0)"));
    }
    for (i, d) in data.iter_mut().enumerate() {
        let m = (mask >> (32 * i)) as u32;
        d.effective &= m;
        d.permitted &= m;
        d.inheritable &= m;
    }
    // SAFETY: the same structures, read by the kernel.
    let r = unsafe { libc::syscall(libc::SYS_capset, &mut header as *mut Header, data.as_ptr()) };
    if r != 0 {
        return Err(last(&format!("capset(0, <only {keep:?}>)")));
    }
    Ok(())
}
