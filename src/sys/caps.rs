//! Capabilities the sandboxed command must not keep. It is root of its own
//! user namespace, which owns the sandbox's mount namespace: with
//! `CAP_SYS_ADMIN` it could remount a read-only bind read-write (mounts made
//! in one's own namespace are not locked) or mount over what zchroot set up.

use nix::errno::Errno;

use super::{SysError, SysResult};

const CAP_SYS_ADMIN: u32 = 21;
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

/// Drops `CAP_SYS_ADMIN` from the bounding set and from the effective,
/// permitted and inheritable sets of the calling thread, for good: neither
/// root nor a setuid program exec'd later gets it back.
pub fn drop_sys_admin() -> SysResult<()> {
    // SAFETY: prctl with integer arguments only.
    let r = unsafe {
        libc::prctl(
            libc::PR_CAPBSET_DROP,
            CAP_SYS_ADMIN as libc::c_ulong,
            0,
            0,
            0,
        )
    };
    if r != 0 {
        return Err(last("prctl(PR_CAPBSET_DROP, CAP_SYS_ADMIN)"));
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
    let bit = !(1u32 << CAP_SYS_ADMIN);
    data[0].effective &= bit;
    data[0].permitted &= bit;
    data[0].inheritable &= bit;
    // SAFETY: the same structures, read by the kernel.
    let r = unsafe { libc::syscall(libc::SYS_capset, &mut header as *mut Header, data.as_ptr()) };
    if r != 0 {
        return Err(last("capset(0, <without CAP_SYS_ADMIN>)"));
    }
    Ok(())
}
