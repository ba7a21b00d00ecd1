//! The seccomp filter of everything run in a sandbox, modelled on Docker's
//! default profile for what a build or a package's scripts never need:
//!
//! - `ioctl(fd, TIOCSTI | TIOCLINUX, ..)` fails with EPERM, so no command
//!   can push input into a terminal (bubblewrap's fix for CVE-2017-5226);
//!   only the low 32 bits of the request are compared, as the kernel
//!   truncates it to an `unsigned int` (CVE-2019-10063);
//! - the kernel keyring (`keyctl`, `add_key`, `request_key`), `bpf`,
//!   `perf_event_open`, `open_by_handle_at`, module loading and `kexec`,
//!   and every mount call (`mount`, `umount2`, `pivot_root`, the new mount
//!   API) and `setns` fail with EPERM;
//! - `unshare` and `clone` with `CLONE_NEWUSER` fail with EPERM (a new
//!   user namespace would give the command back every capability inside
//!   it); `clone3`, whose flags a filter cannot read, fails with ENOSYS, so
//!   that the C library falls back to `clone` (as Docker does).
//!
//! The filter checks the syscall ABI: foreign binaries run under qemu-user,
//! which turns a guest's system call into a host one, so the host's own ABIs
//! are the ones to cover (x86_64 with x32 and i386; aarch64 with arm;
//! riscv64). A syscall of an ABI the filter does not know kills the process.
//!
//! The filter is installed without `PR_SET_NO_NEW_PRIVS`: the command's
//! process is root of its user namespace, where `CAP_SYS_ADMIN` allows it,
//! and setuid programs inside the root (`su`) keep working.

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
/// From <linux/sched.h>.
pub const CLONE_NEWUSER: u32 = 0x1000_0000;

/// Offsets in `struct seccomp_data` (little-endian hosts only: the low
/// word of an argument comes first).
const OFF_NR: u32 = 0;
const OFF_ARCH: u32 = 4;
const OFF_ARG0_LOW: u32 = 16;
const OFF_ARG1_LOW: u32 = 16 + 8;

/// One ABI the filter knows, by its system call numbers (x86_64 lists the
/// x32 ones with the x32 bit cleared: the filter clears it).
struct Abi {
    arch: u32,
    clear_x32_bit: bool,
    ioctl: &'static [u32],
    /// `unshare` and `clone`: both take their flags first.
    ns_flags: &'static [u32],
    clone3: u32,
    /// Refused outright with EPERM.
    denied: &'static [u32],
}

#[cfg(target_arch = "x86_64")]
const ABIS: &[Abi] = &[
    Abi {
        arch: AUDIT_ARCH_X86_64,
        clear_x32_bit: true,
        // 16: ioctl; 514: ioctl of x32 (with the x32 bit).
        ioctl: &[16, 514],
        ns_flags: &[272, 56],
        clone3: 435,
        // keyctl add_key request_key open_by_handle_at bpf perf_event_open
        // init_module finit_module delete_module kexec_load (and x32's)
        // kexec_file_load mount umount2 pivot_root setns open_tree
        // move_mount fsopen fsconfig fsmount fspick mount_setattr
        denied: &[
            250, 248, 249, 304, 321, 298, 175, 313, 176, 246, 528, 320, 165, 166, 155, 308, 428,
            429, 430, 431, 432, 433, 442,
        ],
    },
    Abi {
        arch: AUDIT_ARCH_I386,
        clear_x32_bit: false,
        ioctl: &[54],
        ns_flags: &[310, 120],
        clone3: 435,
        // the same, and umount (22); i386 has no kexec_file_load
        denied: &[
            288, 286, 287, 342, 357, 336, 128, 350, 129, 283, 21, 52, 22, 217, 346, 428, 429, 430,
            431, 432, 433, 442,
        ],
    },
];

#[cfg(any(target_arch = "aarch64", target_arch = "riscv64"))]
const GENERIC_DENIED: &[u32] = &[
    219, 217, 218, 265, 280, 241, 105, 273, 106, 104, 294, 40, 39, 41, 268, 428, 429, 430, 431,
    432, 433, 442,
];

#[cfg(target_arch = "aarch64")]
const ABIS: &[Abi] = &[
    Abi {
        arch: AUDIT_ARCH_AARCH64,
        clear_x32_bit: false,
        ioctl: &[29],
        ns_flags: &[97, 220],
        clone3: 435,
        denied: GENERIC_DENIED,
    },
    Abi {
        arch: AUDIT_ARCH_ARM,
        clear_x32_bit: false,
        ioctl: &[54],
        ns_flags: &[337, 120],
        clone3: 435,
        denied: &[
            311, 309, 310, 371, 386, 364, 128, 379, 129, 347, 401, 21, 52, 218, 375, 428, 429, 430,
            431, 432, 433, 442,
        ],
    },
];

#[cfg(target_arch = "riscv64")]
const ABIS: &[Abi] = &[Abi {
    arch: AUDIT_ARCH_RISCV64,
    clear_x32_bit: false,
    ioctl: &[29],
    ns_flags: &[97, 220],
    clone3: 435,
    denied: GENERIC_DENIED,
}];

#[cfg(not(any(
    target_arch = "x86_64",
    target_arch = "aarch64",
    target_arch = "riscv64"
)))]
compile_error!("the sandbox's seccomp filter knows x86_64, aarch64 and riscv64 hosts only");

const LD_ABS: u32 = libc::BPF_LD | libc::BPF_W | libc::BPF_ABS;
const AND_K: u32 = libc::BPF_ALU | libc::BPF_AND | libc::BPF_K;
const JEQ_K: u32 = libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K;
const JSET_K: u32 = libc::BPF_JMP | libc::BPF_JSET | libc::BPF_K;
const RET_K: u32 = libc::BPF_RET | libc::BPF_K;
pub const RET_ALLOW: u32 = libc::SECCOMP_RET_ALLOW;
pub const RET_EPERM: u32 = libc::SECCOMP_RET_ERRNO | libc::EPERM as u32;
pub const RET_ENOSYS: u32 = libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32;
pub const RET_KILL: u32 = libc::SECCOMP_RET_KILL_PROCESS;

/// Where a conditional jump goes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum To {
    Next,
    Label(usize),
}

/// A tiny assembler: instructions whose jumps name labels, resolved to the
/// forward offsets classic BPF takes.
#[derive(Default)]
struct Asm {
    code: Vec<(u32, u32, To, To)>,
    labels: Vec<Option<usize>>,
}

impl Asm {
    fn label(&mut self) -> usize {
        self.labels.push(None);
        self.labels.len() - 1
    }
    fn here(&mut self, l: usize) {
        self.labels[l] = Some(self.code.len());
    }
    fn stmt(&mut self, code: u32, k: u32) {
        self.code.push((code, k, To::Next, To::Next));
    }
    fn jump(&mut self, code: u32, k: u32, jt: To, jf: To) {
        self.code.push((code, k, jt, jf));
    }
    fn finish(self) -> Vec<libc::sock_filter> {
        let off = |i: usize, to: To| -> u8 {
            match to {
                To::Next => 0,
                To::Label(l) => {
                    let at = self.labels[l].expect("every label is placed");
                    assert!(at > i, "classic BPF jumps forward only");
                    u8::try_from(at - i - 1).expect("a jump of at most 255 instructions")
                }
            }
        };
        self.code
            .iter()
            .enumerate()
            .map(|(i, &(code, k, jt, jf))| libc::sock_filter {
                code: code as u16,
                jt: off(i, jt),
                jf: off(i, jf),
                k,
            })
            .collect()
    }
}

/// The filter program for this host's ABIs.
pub fn sandbox_filter() -> Vec<libc::sock_filter> {
    let mut a = Asm::default();
    let blocks: Vec<usize> = ABIS.iter().map(|_| a.label()).collect();
    let (ioctl, ns, enosys, eperm) = (a.label(), a.label(), a.label(), a.label());
    a.stmt(LD_ABS, OFF_ARCH);
    for (abi, block) in ABIS.iter().zip(&blocks) {
        a.jump(JEQ_K, abi.arch, To::Label(*block), To::Next);
    }
    a.stmt(RET_K, RET_KILL);
    for (abi, block) in ABIS.iter().zip(&blocks) {
        a.here(*block);
        a.stmt(LD_ABS, OFF_NR);
        if abi.clear_x32_bit {
            a.stmt(AND_K, !X32_SYSCALL_BIT);
        }
        for nr in abi.ioctl {
            a.jump(JEQ_K, *nr, To::Label(ioctl), To::Next);
        }
        for nr in abi.ns_flags {
            a.jump(JEQ_K, *nr, To::Label(ns), To::Next);
        }
        a.jump(JEQ_K, abi.clone3, To::Label(enosys), To::Next);
        for nr in abi.denied {
            a.jump(JEQ_K, *nr, To::Label(eperm), To::Next);
        }
        a.stmt(RET_K, RET_ALLOW);
    }
    a.here(ioctl);
    a.stmt(LD_ABS, OFF_ARG1_LOW);
    a.jump(JEQ_K, TIOCSTI, To::Label(eperm), To::Next);
    a.jump(JEQ_K, TIOCLINUX, To::Label(eperm), To::Next);
    a.stmt(RET_K, RET_ALLOW);
    a.here(ns);
    a.stmt(LD_ABS, OFF_ARG0_LOW);
    a.jump(JSET_K, CLONE_NEWUSER, To::Label(eperm), To::Next);
    a.stmt(RET_K, RET_ALLOW);
    a.here(enosys);
    a.stmt(RET_K, RET_ENOSYS);
    a.here(eperm);
    a.stmt(RET_K, RET_EPERM);
    a.finish()
}

/// Installs [`sandbox_filter`] on the calling thread and its future
/// children. Needs `CAP_SYS_ADMIN` in the current user namespace (or
/// no_new_privs set before).
pub fn install_sandbox_filter() -> SysResult<()> {
    let filter = sandbox_filter();
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
            call: "prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, <the sandbox's filter>)".into(),
            errno: Errno::last(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the classic-BPF program on (arch, nr, args[0], args[1]) the way
    /// the kernel does, for the instructions the filter uses.
    fn run(p: &[libc::sock_filter], arch: u32, nr: u32, arg0: u64, arg1: u64) -> u32 {
        let word = |off: u32| -> u32 {
            match off {
                OFF_NR => nr,
                OFF_ARCH => arch,
                OFF_ARG0_LOW => arg0 as u32,
                OFF_ARG1_LOW => arg1 as u32,
                o => panic!("unexpected load at {o}"),
            }
        };
        let (mut pc, mut acc) = (0usize, 0u32);
        loop {
            let i = p[pc];
            let code = i.code as u32;
            let jump = |taken: bool| 1 + if taken { i.jt } else { i.jf } as usize;
            if code == LD_ABS {
                acc = word(i.k);
                pc += 1;
            } else if code == AND_K {
                acc &= i.k;
                pc += 1;
            } else if code == JEQ_K {
                pc += jump(acc == i.k);
            } else if code == JSET_K {
                pc += jump(acc & i.k != 0);
            } else if code == RET_K {
                return i.k;
            } else {
                panic!("unexpected instruction {code:#x}");
            }
        }
    }

    #[test]
    fn denies_tiocsti_and_tioclinux_on_every_abi_and_allows_the_rest() {
        let p = sandbox_filter();
        for abi in ABIS {
            for nr in abi.ioctl {
                let nr = if abi.clear_x32_bit && *nr == 514 {
                    nr | X32_SYSCALL_BIT
                } else {
                    *nr
                };
                assert_eq!(run(&p, abi.arch, nr, 0, TIOCSTI as u64), RET_EPERM);
                assert_eq!(run(&p, abi.arch, nr, 0, TIOCLINUX as u64), RET_EPERM);
                // High bits of the request are ignored by the kernel.
                assert_eq!(
                    run(&p, abi.arch, nr, 0, (1u64 << 32) | TIOCSTI as u64),
                    RET_EPERM
                );
                // Other terminal requests pass: TIOCGWINSZ, TCGETS.
                assert_eq!(run(&p, abi.arch, nr, 0, 0x5413), RET_ALLOW);
                assert_eq!(run(&p, abi.arch, nr, 0, 0x5401), RET_ALLOW);
            }
            // Another syscall with TIOCSTI's value as its second argument.
            assert_eq!(run(&p, abi.arch, 1, 0, TIOCSTI as u64), RET_ALLOW);
        }
        // An ABI the filter does not know.
        assert_eq!(run(&p, 0x1234_5678, 16, 0, TIOCSTI as u64), RET_KILL);
    }

    #[test]
    fn refuses_the_kernels_doors_and_new_user_namespaces_on_every_abi() {
        let p = sandbox_filter();
        for abi in ABIS {
            for nr in abi.denied {
                assert_eq!(run(&p, abi.arch, *nr, 0, 0), RET_EPERM, "{nr}");
            }
            for nr in abi.ns_flags {
                // unshare(CLONE_NEWUSER | CLONE_NEWNS), clone(.. NEWUSER ..)
                let flags = (CLONE_NEWUSER | 0x0002_0000) as u64;
                assert_eq!(run(&p, abi.arch, *nr, flags, 0), RET_EPERM);
                // unshare(CLONE_NEWNS), fork()'s clone(SIGCHLD|..): allowed.
                assert_eq!(run(&p, abi.arch, *nr, 0x0002_0000, 0), RET_ALLOW);
                assert_eq!(run(&p, abi.arch, *nr, 0x0120_0011, 0), RET_ALLOW);
            }
            assert_eq!(run(&p, abi.arch, abi.clone3, 0, 0), RET_ENOSYS);
            // read, write, openat and friends pass.
            for nr in [0, 1, 3, 63, 64, 56 + 1] {
                if !abi.denied.contains(&nr)
                    && !abi.ns_flags.contains(&nr)
                    && !abi.ioctl.contains(&nr)
                {
                    assert_eq!(run(&p, abi.arch, nr, 0, 0), RET_ALLOW, "{nr}");
                }
            }
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn x86_64_covers_x32_and_i386() {
        let p = sandbox_filter();
        let x32_ioctl = 514 | X32_SYSCALL_BIT;
        assert_eq!(
            run(&p, AUDIT_ARCH_X86_64, x32_ioctl, 0, TIOCSTI as u64),
            RET_EPERM
        );
        assert_eq!(
            run(
                &p,
                AUDIT_ARCH_X86_64,
                16 | X32_SYSCALL_BIT,
                0,
                TIOCSTI as u64
            ),
            RET_EPERM
        );
        assert_eq!(run(&p, AUDIT_ARCH_I386, 54, 0, TIOCSTI as u64), RET_EPERM);
        // i386's 16 is lchown, not ioctl.
        assert_eq!(run(&p, AUDIT_ARCH_I386, 16, 0, TIOCSTI as u64), RET_ALLOW);
        // keyctl of x32, mount of i386, x86_64's keyctl number on i386
        // (250: fadvise64_64, allowed).
        assert_eq!(
            run(&p, AUDIT_ARCH_X86_64, 250 | X32_SYSCALL_BIT, 0, 0),
            RET_EPERM
        );
        assert_eq!(run(&p, AUDIT_ARCH_I386, 21, 0, 0), RET_EPERM);
        assert_eq!(run(&p, AUDIT_ARCH_I386, 250, 0, 0), RET_ALLOW);
    }
}
