//! A seccomp filter that makes `ioctl(fd, TIOCSTI | TIOCLINUX, ..)` fail
//! with EPERM for everything run in a sandbox, so no command can push
//! input into a terminal (bubblewrap's fix for CVE-2017-5226).
//!
//! The filter checks the syscall ABI: foreign binaries run under qemu-user,
//! which turns a guest's ioctl into a host ioctl, so the host's own ABIs are
//! the ones to cover (x86_64 with x32 and i386; aarch64 with arm; riscv64).
//! A syscall of an ABI the filter does not know kills the process. Only the
//! low 32 bits of the request are compared, as the kernel truncates it to
//! an `unsigned int` (CVE-2019-10063).
//!
//! The filter is installed without `PR_SET_NO_NEW_PRIVS`: the command's
//! process is root of the sandbox's user namespace, where `CAP_SYS_ADMIN`
//! allows it, and setuid programs inside the root (`su`) keep working.

use super::{SysError, SysResult};
use nix::errno::Errno;

/// `AUDIT_ARCH_*` values from <linux/audit.h> (not in the libc crate).
pub const AUDIT_ARCH_X86_64: u32 = 0xC000_003E;
pub const AUDIT_ARCH_I386: u32 = 0x4000_0003;
pub const AUDIT_ARCH_AARCH64: u32 = 0xC000_00B7;
pub const AUDIT_ARCH_ARM: u32 = 0x4000_0028;
pub const AUDIT_ARCH_RISCV64: u32 = 0xC000_00F3;
/// x32 system calls are x86_64 calls with this bit set in the number.
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

/// The terminal requests that are refused (same values on every ABI the
/// filter covers).
pub const TIOCSTI: u32 = 0x5412;
pub const TIOCLINUX: u32 = 0x541C;

/// Offsets in `struct seccomp_data` (little-endian hosts only: the low
/// word of `args[1]` comes first).
const OFF_NR: u32 = 0;
const OFF_ARCH: u32 = 4;
const OFF_ARG1_LOW: u32 = 16 + 8;

/// One ABI the filter knows: its audit arch and its ioctl numbers (x86_64
/// lists the x32 ones with the x32 bit cleared: the filter clears it).
struct Abi {
    arch: u32,
    ioctl: &'static [u32],
    clear_x32_bit: bool,
}

#[cfg(target_arch = "x86_64")]
const ABIS: &[Abi] = &[
    Abi {
        arch: AUDIT_ARCH_X86_64,
        // 16: ioctl; 514: ioctl of x32 (with the x32 bit).
        ioctl: &[16, 514],
        clear_x32_bit: true,
    },
    Abi {
        arch: AUDIT_ARCH_I386,
        ioctl: &[54],
        clear_x32_bit: false,
    },
];

#[cfg(target_arch = "aarch64")]
const ABIS: &[Abi] = &[
    Abi {
        arch: AUDIT_ARCH_AARCH64,
        ioctl: &[29],
        clear_x32_bit: false,
    },
    Abi {
        arch: AUDIT_ARCH_ARM,
        ioctl: &[54],
        clear_x32_bit: false,
    },
];

#[cfg(target_arch = "riscv64")]
const ABIS: &[Abi] = &[Abi {
    arch: AUDIT_ARCH_RISCV64,
    ioctl: &[29],
    clear_x32_bit: false,
}];

#[cfg(not(any(
    target_arch = "x86_64",
    target_arch = "aarch64",
    target_arch = "riscv64"
)))]
compile_error!("the terminal seccomp filter knows x86_64, aarch64 and riscv64 hosts only");

fn stmt(code: u32, k: u32) -> libc::sock_filter {
    libc::sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jeq(k: u32, jt: u8, jf: u8) -> libc::sock_filter {
    libc::sock_filter {
        code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
        jt,
        jf,
        k,
    }
}

const LD_ABS: u32 = libc::BPF_LD | libc::BPF_W | libc::BPF_ABS;
const AND_K: u32 = libc::BPF_ALU | libc::BPF_AND | libc::BPF_K;
const RET_K: u32 = libc::BPF_RET | libc::BPF_K;
pub const RET_ALLOW: u32 = libc::SECCOMP_RET_ALLOW;
pub const RET_EPERM: u32 = libc::SECCOMP_RET_ERRNO | libc::EPERM as u32;
pub const RET_KILL: u32 = libc::SECCOMP_RET_KILL_PROCESS;

/// The filter program for this host's ABIs.
pub fn terminal_filter() -> Vec<libc::sock_filter> {
    // Layout:
    //   ld arch
    //   per ABI: jeq arch ? -> its block
    //   ret KILL
    //   per ABI block: ld nr; [and ~x32]; jeq ioctl_i ? -> check; ...; ret ALLOW
    //   check: ld args[1] (low word); jeq TIOCSTI -> EPERM; jeq TIOCLINUX -> EPERM; ret ALLOW
    //   EPERM: ret EPERM
    let block_len = |a: &Abi| 1 + usize::from(a.clear_x32_bit) + a.ioctl.len() + 1; // ld, and, jeqs, ret
    let mut p = vec![stmt(LD_ABS, OFF_ARCH)];
    // Dispatch: instruction i (0-based among the dispatch jumps) jumps over
    // the rest of the dispatch, the KILL and the blocks before its own.
    let n = ABIS.len();
    let mut before = 0usize;
    for (i, abi) in ABIS.iter().enumerate() {
        let skip = (n - 1 - i) + 1 + before;
        p.push(jeq(abi.arch, skip as u8, 0));
        before += block_len(abi);
    }
    p.push(stmt(RET_K, RET_KILL));
    let blocks_total = before;
    let mut done = 0usize;
    for abi in ABIS {
        p.push(stmt(LD_ABS, OFF_NR));
        if abi.clear_x32_bit {
            p.push(stmt(AND_K, !X32_SYSCALL_BIT));
        }
        let m = abi.ioctl.len();
        for (j, nr) in abi.ioctl.iter().enumerate() {
            // To `check`: over the remaining jeqs, this block's ret, and the
            // blocks after this one.
            let after_this = blocks_total - done - block_len(abi);
            let to_check = (m - 1 - j) + 1 + after_this;
            p.push(jeq(*nr, to_check as u8, 0));
        }
        p.push(stmt(RET_K, RET_ALLOW));
        done += block_len(abi);
    }
    p.push(stmt(LD_ABS, OFF_ARG1_LOW));
    p.push(jeq(TIOCSTI, 2, 0));
    p.push(jeq(TIOCLINUX, 1, 0));
    p.push(stmt(RET_K, RET_ALLOW));
    p.push(stmt(RET_K, RET_EPERM));
    p
}

/// Installs [`terminal_filter`] on the calling thread and its future
/// children. Needs `CAP_SYS_ADMIN` in the current user namespace (or
/// no_new_privs set before).
pub fn deny_terminal_injection() -> SysResult<()> {
    let filter = terminal_filter();
    let prog = libc::sock_fprog {
        len: filter.len() as u16,
        filter: filter.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: `prog` points at `filter`, which lives until the call returns;
    // the kernel copies the program.
    let r = unsafe {
        libc::prctl(
            libc::PR_SET_SECCOMP,
            libc::SECCOMP_MODE_FILTER as libc::c_ulong,
            &prog as *const libc::sock_fprog,
        )
    };
    if r != 0 {
        return Err(SysError {
            call: "prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, <deny TIOCSTI, TIOCLINUX>)".into(),
            errno: Errno::last(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the classic-BPF program on (arch, nr, args[1]) the way the
    /// kernel does, for the instructions the filter uses.
    fn run(p: &[libc::sock_filter], arch: u32, nr: u32, arg1: u64) -> u32 {
        let word = |off: u32| -> u32 {
            match off {
                OFF_NR => nr,
                OFF_ARCH => arch,
                OFF_ARG1_LOW => arg1 as u32,
                o => panic!("unexpected load at {o}"),
            }
        };
        let (mut pc, mut acc) = (0usize, 0u32);
        loop {
            let i = p[pc];
            let code = i.code as u32;
            if code == LD_ABS {
                acc = word(i.k);
                pc += 1;
            } else if code == AND_K {
                acc &= i.k;
                pc += 1;
            } else if code == libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K {
                pc += 1 + if acc == i.k { i.jt } else { i.jf } as usize;
            } else if code == RET_K {
                return i.k;
            } else {
                panic!("unexpected instruction {code:#x}");
            }
        }
    }

    #[test]
    fn denies_tiocsti_and_tioclinux_on_every_abi_and_allows_the_rest() {
        let p = terminal_filter();
        assert!(p.len() < 64);
        for abi in ABIS {
            for nr in abi.ioctl {
                let nr = if abi.clear_x32_bit && *nr == 514 {
                    nr | X32_SYSCALL_BIT
                } else {
                    *nr
                };
                assert_eq!(run(&p, abi.arch, nr, TIOCSTI as u64), RET_EPERM);
                assert_eq!(run(&p, abi.arch, nr, TIOCLINUX as u64), RET_EPERM);
                // High bits of the request are ignored by the kernel.
                assert_eq!(
                    run(&p, abi.arch, nr, (1u64 << 32) | TIOCSTI as u64),
                    RET_EPERM
                );
                // Other terminal requests pass: TIOCGWINSZ, TCGETS.
                assert_eq!(run(&p, abi.arch, nr, 0x5413), RET_ALLOW);
                assert_eq!(run(&p, abi.arch, nr, 0x5401), RET_ALLOW);
            }
            // Another syscall with TIOCSTI's value as its second argument.
            assert_eq!(run(&p, abi.arch, 1, TIOCSTI as u64), RET_ALLOW);
        }
        // An ABI the filter does not know.
        assert_eq!(run(&p, 0x1234_5678, 16, TIOCSTI as u64), RET_KILL);
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn x86_64_covers_x32_and_i386() {
        let p = terminal_filter();
        let x32_ioctl = 514 | X32_SYSCALL_BIT;
        assert_eq!(
            run(&p, AUDIT_ARCH_X86_64, x32_ioctl, TIOCSTI as u64),
            RET_EPERM
        );
        assert_eq!(
            run(&p, AUDIT_ARCH_X86_64, 16 | X32_SYSCALL_BIT, TIOCSTI as u64),
            RET_EPERM
        );
        assert_eq!(run(&p, AUDIT_ARCH_I386, 54, TIOCSTI as u64), RET_EPERM);
        // i386's 16 is lchown, not ioctl.
        assert_eq!(run(&p, AUDIT_ARCH_I386, 16, TIOCSTI as u64), RET_ALLOW);
    }
}
