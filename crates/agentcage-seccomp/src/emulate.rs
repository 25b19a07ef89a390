//! A classic-BPF interpreter for seccomp programs, and a replay of the kernel's
//! action-cache emulation.
//!
//! [`emulate()`] runs a program on a `seccomp_data` value the way the kernel does and
//! records how many instructions it executed and whether it read an argument. The
//! tests run it over every syscall number on every architecture; the matrix and docs can
//! use it to explain a verdict without a kernel.
//!
//! [`kernel_cache_allows`] is a line-by-line port of `seccomp_is_const_allow` from
//! `kernel/seccomp.c` (Linux 5.11+): at filter-attach time the kernel runs the program for
//! each syscall number with only `arch` and `nr` known; if it reaches `RET ALLOW`
//! without loading anything else, that number goes into a bitmap and later calls skip
//! the filter. Tests use it to prove the hot syscalls are cached.

use libc::sock_filter;

use crate::bpf;

/// `struct seccomp_data` as the filter sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SeccompData {
    /// Syscall number.
    pub nr: i32,
    /// `AUDIT_ARCH_*` value of the calling ABI.
    pub arch: u32,
    /// Instruction pointer at the syscall.
    pub instruction_pointer: u64,
    /// The six arguments, zero-extended to 64 bits.
    pub args: [u64; 6],
}

impl SeccompData {
    /// A value with instruction pointer 0.
    pub const fn new(nr: i32, arch: u32, args: [u64; 6]) -> SeccompData {
        SeccompData {
            nr,
            arch,
            instruction_pointer: 0,
            args,
        }
    }

    /// The 32-bit word at byte offset `k`, in native byte order as the kernel loads it.
    fn word(&self, k: u32) -> Option<u32> {
        let mut bytes = [0u8; bpf::DATA_LEN as usize];
        bytes[0..4].copy_from_slice(&self.nr.to_ne_bytes());
        bytes[4..8].copy_from_slice(&self.arch.to_ne_bytes());
        bytes[8..16].copy_from_slice(&self.instruction_pointer.to_ne_bytes());
        for (i, a) in self.args.iter().enumerate() {
            bytes[16 + 8 * i..24 + 8 * i].copy_from_slice(&a.to_ne_bytes());
        }
        let k = usize::try_from(k).ok()?;
        if k % 4 != 0 {
            return None;
        }
        let w = bytes.get(k..k + 4)?;
        Some(u32::from_ne_bytes([w[0], w[1], w[2], w[3]]))
    }
}

/// The decoded action of a filter's return value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// `SECCOMP_RET_ALLOW`.
    Allow,
    /// `SECCOMP_RET_ERRNO` with this errno.
    Errno(i32),
    /// `SECCOMP_RET_KILL_PROCESS`.
    KillProcess,
    /// `SECCOMP_RET_KILL_THREAD`.
    KillThread,
    /// `SECCOMP_RET_TRAP` (SIGSYS to the thread).
    Trap,
    /// Any other action (trace, log, user notification), raw.
    Other(u32),
}

impl Verdict {
    /// Decodes a filter return value.
    pub const fn from_ret(ret: u32) -> Verdict {
        match ret & bpf::RET_ACTION_FULL {
            bpf::RET_ALLOW => Verdict::Allow,
            bpf::RET_ERRNO => Verdict::Errno((ret & bpf::RET_DATA) as i32),
            bpf::RET_KILL_PROCESS => Verdict::KillProcess,
            bpf::RET_KILL_THREAD => Verdict::KillThread,
            bpf::RET_TRAP => Verdict::Trap,
            _ => Verdict::Other(ret),
        }
    }
}

/// The result of one emulated run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// The raw return value.
    pub ret: u32,
    /// The decoded action.
    pub verdict: Verdict,
    /// Instructions executed, the final `ret` included.
    pub executed: usize,
    /// Whether any argument (or the instruction pointer) was loaded on the path taken.
    pub loaded_args: bool,
}

/// Why a program could not be run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EmulateError {
    /// An opcode this interpreter (and this crate's compiler) does not use.
    #[error("unsupported opcode {code:#06x} at {pc}")]
    Opcode {
        /// Instruction index.
        pc: usize,
        /// The opcode.
        code: u16,
    },
    /// A load outside `seccomp_data` or misaligned.
    #[error("bad load of offset {k} at {pc}")]
    Load {
        /// Instruction index.
        pc: usize,
        /// The offset.
        k: u32,
    },
    /// Execution left the program (a jump too far, or no final return).
    #[error("execution ran off the program at {pc}")]
    RanOff {
        /// The first index outside the program.
        pc: usize,
    },
}

/// Runs `prog` on `data`.
///
/// # Errors
/// An instruction outside the subset the kernel's seccomp checker accepts and this crate
/// emits, a bad load, or control leaving the program. Never panics.
pub fn emulate(prog: &[sock_filter], data: &SeccompData) -> Result<Outcome, EmulateError> {
    let mut a: u32 = 0;
    let mut pc: usize = 0;
    let mut executed = 0;
    let mut loaded_args = false;
    loop {
        let insn = prog.get(pc).ok_or(EmulateError::RanOff { pc })?;
        executed += 1;
        let advance = |off: usize| pc.saturating_add(1).saturating_add(off);
        match insn.code {
            bpf::LD_W_ABS => {
                a = data
                    .word(insn.k)
                    .ok_or(EmulateError::Load { pc, k: insn.k })?;
                if insn.k >= bpf::OFF_IP {
                    loaded_args = true;
                }
                pc += 1;
            }
            bpf::ALU_AND_K => {
                a &= insn.k;
                pc += 1;
            }
            bpf::RET_K => {
                return Ok(Outcome {
                    ret: insn.k,
                    verdict: Verdict::from_ret(insn.k),
                    executed,
                    loaded_args,
                });
            }
            bpf::JMP_JA => pc = advance(usize::try_from(insn.k).unwrap_or(usize::MAX)),
            bpf::JMP_JEQ_K | bpf::JMP_JGE_K | bpf::JMP_JGT_K | bpf::JMP_JSET_K => {
                let taken = match insn.code {
                    bpf::JMP_JEQ_K => a == insn.k,
                    bpf::JMP_JGE_K => a >= insn.k,
                    bpf::JMP_JGT_K => a > insn.k,
                    _ => a & insn.k != 0,
                };
                pc = advance(usize::from(if taken { insn.jt } else { insn.jf }));
            }
            code => return Err(EmulateError::Opcode { pc, code }),
        }
    }
}

/// Port of the kernel's `seccomp_is_const_allow()`: would the kernel put `nr` on `arch`
/// into its allow bitmap for this program? True only if the path depends on `arch` and
/// `nr` alone and ends in `SECCOMP_RET_ALLOW`.
pub fn kernel_cache_allows(prog: &[sock_filter], arch: u32, nr: u32) -> bool {
    let mut reg: u32 = 0;
    let mut pc: usize = 0;
    while let Some(insn) = prog.get(pc) {
        match insn.code {
            bpf::LD_W_ABS => match insn.k {
                bpf::OFF_NR => reg = nr,
                bpf::OFF_ARCH => reg = arch,
                _ => return false, // non-constant value load
            },
            bpf::RET_K => return insn.k == bpf::RET_ALLOW,
            bpf::JMP_JA => pc = pc.saturating_add(usize::try_from(insn.k).unwrap_or(usize::MAX)),
            bpf::JMP_JEQ_K | bpf::JMP_JGE_K | bpf::JMP_JGT_K | bpf::JMP_JSET_K => {
                let taken = match insn.code {
                    bpf::JMP_JEQ_K => reg == insn.k,
                    bpf::JMP_JGE_K => reg >= insn.k,
                    bpf::JMP_JGT_K => reg > insn.k,
                    _ => reg & insn.k != 0,
                };
                pc += usize::from(if taken { insn.jt } else { insn.jf });
            }
            bpf::ALU_AND_K => reg &= insn.k,
            _ => return false, // unknown instruction
        }
        pc = pc.saturating_add(1);
    }
    false // ran off the end (the kernel WARNs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bpf::{jump, stmt};

    #[test]
    fn words_are_laid_out_like_the_kernel_struct() {
        let d = SeccompData {
            nr: 39,
            arch: 0xc000_003e,
            instruction_pointer: 0x1122_3344_5566_7788,
            args: [0x1_0000_5412, 2, 3, 4, 5, 0xffff_ffff_0000_0006],
        };
        assert_eq!(d.word(0), Some(39));
        assert_eq!(d.word(4), Some(0xc000_003e));
        assert_eq!(d.word(8), Some(0x5566_7788));
        assert_eq!(d.word(12), Some(0x1122_3344));
        assert_eq!(d.word(16), Some(0x5412));
        assert_eq!(d.word(20), Some(1));
        assert_eq!(d.word(56), Some(6));
        assert_eq!(d.word(60), Some(0xffff_ffff));
        assert_eq!(d.word(64), None);
        assert_eq!(d.word(2), None);
    }

    #[test]
    fn errors_instead_of_panics() {
        let d = SeccompData::default();
        assert_eq!(
            emulate(&[], &d),
            Err(EmulateError::RanOff { pc: 0 }),
            "empty program"
        );
        let off = [stmt(bpf::JMP_JA, u32::MAX), stmt(bpf::RET_K, 0)];
        assert!(matches!(
            emulate(&off, &d),
            Err(EmulateError::RanOff { .. })
        ));
        let bad = [stmt(bpf::LD_W_ABS, 3)];
        assert_eq!(emulate(&bad, &d), Err(EmulateError::Load { pc: 0, k: 3 }));
        let ldx = [stmt(0x61, 0)];
        assert!(matches!(
            emulate(&ldx, &d),
            Err(EmulateError::Opcode { .. })
        ));
        assert!(!kernel_cache_allows(&off, 0, 0));
        assert!(!kernel_cache_allows(&[], 0, 0));
    }

    #[test]
    fn cache_emulation_refuses_argument_paths() {
        let prog = [
            stmt(bpf::LD_W_ABS, bpf::OFF_NR),
            jump(bpf::JMP_JEQ_K, 16, 0, 2),
            stmt(bpf::LD_W_ABS, bpf::off_arg_lo(1)),
            stmt(bpf::RET_K, bpf::RET_ALLOW),
            stmt(bpf::RET_K, bpf::RET_ALLOW),
        ];
        assert!(!kernel_cache_allows(&prog, 0, 16));
        assert!(kernel_cache_allows(&prog, 0, 17));
        let run = emulate(&prog, &SeccompData::new(16, 0, [0; 6])).expect("runs");
        assert!(run.loaded_args);
        assert_eq!(run.executed, 4);
        assert_eq!(run.verdict, Verdict::Allow);
    }

    #[test]
    fn verdicts_decode() {
        assert_eq!(Verdict::from_ret(0x7fff_0000), Verdict::Allow);
        assert_eq!(Verdict::from_ret(0x0005_0001), Verdict::Errno(1));
        assert_eq!(Verdict::from_ret(0x8000_0000), Verdict::KillProcess);
        assert_eq!(Verdict::from_ret(0), Verdict::KillThread);
        assert_eq!(Verdict::from_ret(0x0003_0000), Verdict::Trap);
        assert_eq!(Verdict::from_ret(0x7ff0_0000), Verdict::Other(0x7ff0_0000));
    }
}
