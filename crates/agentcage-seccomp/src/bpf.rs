//! Classic BPF as seccomp uses it: opcodes, `seccomp_data` offsets, return actions, and a
//! tiny label assembler.
//!
//! Only the instructions this crate emits are defined here (32-bit absolute loads,
//! `jeq`/`jge`/`jset` against constants, `ja`, `ret` of a constant). They are exactly the
//! ones the kernel's action-cache emulator (`seccomp_is_const_allow` in
//! `kernel/seccomp.c`) understands, which is what lets the kernel prove an
//! argument-free path constant. Conditional jumps carry 8-bit offsets; the assembler
//! resolves labels and refuses (returns an error, never wraps) an offset that does not
//! fit, so a program it returns is structurally valid by construction. [`validate`]
//! re-checks any program with the kernel's own rules.

use libc::sock_filter;

/// `BPF_LD | BPF_W | BPF_ABS`: load a 32-bit word of `seccomp_data` into A.
pub const LD_W_ABS: u16 = 0x20; // BPF_LD 0x00 | BPF_W 0x00 | BPF_ABS 0x20
/// `BPF_JMP | BPF_JA`: unconditional jump by `k`.
pub const JMP_JA: u16 = 0x05;
/// `BPF_JMP | BPF_JEQ | BPF_K`.
pub const JMP_JEQ_K: u16 = 0x05 | 0x10;
/// `BPF_JMP | BPF_JGT | BPF_K`.
pub const JMP_JGT_K: u16 = 0x05 | 0x20;
/// `BPF_JMP | BPF_JGE | BPF_K`.
pub const JMP_JGE_K: u16 = 0x05 | 0x30;
/// `BPF_JMP | BPF_JSET | BPF_K`.
pub const JMP_JSET_K: u16 = 0x05 | 0x40;
/// `BPF_RET | BPF_K`: return the constant `k` as the filter's action.
pub const RET_K: u16 = 0x06;
/// `BPF_ALU | BPF_AND | BPF_K`: `A &= k`.
pub const ALU_AND_K: u16 = 0x04 | 0x50;

/// Largest program the kernel accepts (`BPF_MAXINSNS`).
pub const MAX_INSNS: usize = 4096;

/// Offset of `seccomp_data.nr` (int).
pub const OFF_NR: u32 = 0;
/// Offset of `seccomp_data.arch` (u32, an `AUDIT_ARCH_*` value).
pub const OFF_ARCH: u32 = 4;
/// Offset of `seccomp_data.instruction_pointer` (u64).
pub const OFF_IP: u32 = 8;
/// Size of `struct seccomp_data`.
pub const DATA_LEN: u32 = 64;

/// Offset of the low 32 bits of syscall argument `i` (0..6). Both supported architectures
/// are little-endian, so the low word comes first (checked at compile time in `lib.rs`).
pub const fn off_arg_lo(i: u32) -> u32 {
    16 + 8 * i
}

/// `SECCOMP_RET_KILL_PROCESS`. Kernels before 4.14 mask it to `SECCOMP_RET_KILL_THREAD`.
pub const RET_KILL_PROCESS: u32 = 0x8000_0000;
/// `SECCOMP_RET_KILL_THREAD`.
pub const RET_KILL_THREAD: u32 = 0x0000_0000;
/// `SECCOMP_RET_TRAP`.
pub const RET_TRAP: u32 = 0x0003_0000;
/// `SECCOMP_RET_ERRNO`; the errno goes in the low 16 bits.
pub const RET_ERRNO: u32 = 0x0005_0000;
/// `SECCOMP_RET_USER_NOTIF` (Linux 5.0): the syscall waits for the filter's listener,
/// which answers it; without a listener the kernel fails it with `ENOSYS`.
pub const RET_USER_NOTIF: u32 = 0x7fc0_0000;
/// `SECCOMP_RET_ALLOW`.
pub const RET_ALLOW: u32 = 0x7fff_0000;
/// `SECCOMP_RET_ACTION_FULL`: the action part of a return value.
pub const RET_ACTION_FULL: u32 = 0xffff_0000;
/// `SECCOMP_RET_DATA`: the data part of a return value.
pub const RET_DATA: u32 = 0x0000_ffff;

/// A plain statement.
pub const fn stmt(code: u16, k: u32) -> sock_filter {
    sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

/// A conditional jump with resolved offsets.
pub const fn jump(code: u16, k: u32, jt: u8, jf: u8) -> sock_filter {
    sock_filter { code, jt, jf, k }
}

/// A forward label inside an [`Asm`] program.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Label(usize);

/// Why a program could not be assembled or is not acceptable to the kernel.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AsmError {
    /// A conditional jump target lies more than 255 instructions ahead.
    #[error("conditional jump at {pc} needs offset {offset}, more than 255")]
    JumpTooFar {
        /// Instruction index of the jump.
        pc: usize,
        /// The offset it would need.
        offset: usize,
    },
    /// A label was used but never placed, or placed behind its use (BPF jumps only forward).
    #[error("jump at {pc} targets a label that is unplaced or not ahead of it")]
    BadLabel {
        /// Instruction index of the jump.
        pc: usize,
    },
    /// The program is empty or longer than `BPF_MAXINSNS`.
    #[error("program has {len} instructions; the kernel accepts 1 to 4096")]
    Length {
        /// Number of instructions.
        len: usize,
    },
    /// A jump leaves the program.
    #[error("jump at {pc} leaves the program")]
    OutOfRange {
        /// Instruction index of the jump.
        pc: usize,
    },
    /// An instruction seccomp does not accept (or this crate does not use).
    #[error("instruction {pc} has opcode {code:#06x}, not allowed here")]
    Opcode {
        /// Instruction index.
        pc: usize,
        /// The opcode.
        code: u16,
    },
    /// A load outside `seccomp_data` or not 4-byte aligned.
    #[error("instruction {pc} loads offset {k}, outside or misaligned in seccomp_data")]
    Load {
        /// Instruction index.
        pc: usize,
        /// The offset.
        k: u32,
    },
    /// The last instruction is not a return, so execution could fall off the end.
    #[error("the last instruction is not a return")]
    NoFinalReturn,
}

#[derive(Debug, Clone, Copy)]
enum Target {
    Next,
    Label(Label),
}

#[derive(Debug, Clone, Copy)]
enum Pending {
    Stmt(sock_filter),
    Cond {
        code: u16,
        k: u32,
        jt: Target,
        jf: Target,
    },
    Ja(Label),
}

/// A forward-only label assembler for seccomp programs.
#[derive(Debug, Default)]
pub struct Asm {
    code: Vec<Pending>,
    labels: Vec<Option<usize>>,
}

impl Asm {
    /// An empty program.
    pub fn new() -> Asm {
        Asm::default()
    }

    /// Number of instructions emitted so far.
    pub fn len(&self) -> usize {
        self.code.len()
    }

    /// Whether nothing has been emitted yet.
    pub fn is_empty(&self) -> bool {
        self.code.is_empty()
    }

    /// A new, not yet placed label.
    pub fn label(&mut self) -> Label {
        self.labels.push(None);
        Label(self.labels.len() - 1)
    }

    /// Places `l` at the next instruction.
    pub fn place(&mut self, l: Label) {
        if let Some(slot) = self.labels.get_mut(l.0) {
            *slot = Some(self.code.len());
        }
    }

    /// `A = seccomp_data[k]` (32 bits).
    pub fn load(&mut self, k: u32) {
        self.code.push(Pending::Stmt(stmt(LD_W_ABS, k)));
    }

    /// `A &= k`.
    pub fn and(&mut self, k: u32) {
        self.code.push(Pending::Stmt(stmt(ALU_AND_K, k)));
    }

    /// `return k`.
    pub fn ret(&mut self, k: u32) {
        self.code.push(Pending::Stmt(stmt(RET_K, k)));
    }

    /// `goto l` (32-bit offset, never too far).
    pub fn ja(&mut self, l: Label) {
        self.code.push(Pending::Ja(l));
    }

    /// `if A == k goto l` (else fall through).
    pub fn jeq(&mut self, k: u32, l: Label) {
        self.cond(JMP_JEQ_K, k, Target::Label(l), Target::Next);
    }

    /// `if A != k goto l` (else fall through).
    pub fn jne(&mut self, k: u32, l: Label) {
        self.cond(JMP_JEQ_K, k, Target::Next, Target::Label(l));
    }

    /// `if A >= k goto l` (else fall through).
    pub fn jge(&mut self, k: u32, l: Label) {
        self.cond(JMP_JGE_K, k, Target::Label(l), Target::Next);
    }

    /// `if A & k goto l` (else fall through).
    pub fn jset(&mut self, k: u32, l: Label) {
        self.cond(JMP_JSET_K, k, Target::Label(l), Target::Next);
    }

    /// `if !(A >= k) goto l` (else fall through): a `jge` with the branches swapped.
    pub fn jlt(&mut self, k: u32, l: Label) {
        self.cond(JMP_JGE_K, k, Target::Next, Target::Label(l));
    }

    /// `if A <op> k goto jt else goto jf`, `None` meaning the next instruction: a jump with
    /// both branches taken (`code` one of the `JMP_*_K` conditionals).
    pub fn branch(&mut self, code: u16, k: u32, jt: Option<Label>, jf: Option<Label>) {
        let t = |l: Option<Label>| l.map_or(Target::Next, Target::Label);
        self.cond(code, k, t(jt), t(jf));
    }

    fn cond(&mut self, code: u16, k: u32, jt: Target, jf: Target) {
        self.code.push(Pending::Cond { code, k, jt, jf });
    }

    fn resolve(&self, pc: usize, t: Target) -> Result<usize, AsmError> {
        match t {
            Target::Next => Ok(0),
            Target::Label(l) => match self.labels.get(l.0).copied().flatten() {
                Some(at) if at > pc => Ok(at - pc - 1),
                _ => Err(AsmError::BadLabel { pc }),
            },
        }
    }

    /// Resolves every label and returns the program, validated with [`validate`].
    ///
    /// # Errors
    /// A jump that cannot be encoded, or a program the kernel would reject.
    pub fn finish(self) -> Result<Vec<sock_filter>, AsmError> {
        let mut out = Vec::with_capacity(self.code.len());
        for (pc, p) in self.code.iter().enumerate() {
            let insn = match *p {
                Pending::Stmt(s) => s,
                Pending::Ja(l) => {
                    let off = self.resolve(pc, Target::Label(l))?;
                    let k = u32::try_from(off).map_err(|_| AsmError::OutOfRange { pc })?;
                    stmt(JMP_JA, k)
                }
                Pending::Cond { code, k, jt, jf } => {
                    let narrow = |off: usize| {
                        u8::try_from(off).map_err(|_| AsmError::JumpTooFar { pc, offset: off })
                    };
                    let jt = narrow(self.resolve(pc, jt)?)?;
                    let jf = narrow(self.resolve(pc, jf)?)?;
                    jump(code, k, jt, jf)
                }
            };
            out.push(insn);
        }
        validate(&out)?;
        Ok(out)
    }
}

/// Checks `prog` the way `seccomp_check_filter` and `bpf_check_classic` do for the
/// subset of classic BPF this crate uses: length 1..=4096, every jump lands inside the
/// program, loads are aligned words inside `seccomp_data`, and the program ends in a
/// return.
///
/// # Errors
/// The first violation found.
pub fn validate(prog: &[sock_filter]) -> Result<(), AsmError> {
    let len = prog.len();
    if len == 0 || len > MAX_INSNS {
        return Err(AsmError::Length { len });
    }
    for (pc, insn) in prog.iter().enumerate() {
        let lands = |off: usize| pc.checked_add(1 + off).is_some_and(|t| t < len);
        match insn.code {
            LD_W_ABS => {
                if insn.k % 4 != 0 || insn.k >= DATA_LEN {
                    return Err(AsmError::Load { pc, k: insn.k });
                }
            }
            RET_K | ALU_AND_K => {}
            JMP_JA => {
                if !usize::try_from(insn.k).is_ok_and(lands) {
                    return Err(AsmError::OutOfRange { pc });
                }
            }
            JMP_JEQ_K | JMP_JGE_K | JMP_JGT_K | JMP_JSET_K => {
                if !lands(usize::from(insn.jt)) || !lands(usize::from(insn.jf)) {
                    return Err(AsmError::OutOfRange { pc });
                }
            }
            code => return Err(AsmError::Opcode { pc, code }),
        }
    }
    if prog[len - 1].code != RET_K {
        return Err(AsmError::NoFinalReturn);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_resolve_forward() {
        let mut a = Asm::new();
        let yes = a.label();
        a.load(OFF_NR);
        a.jeq(7, yes);
        a.ret(RET_ERRNO | 1);
        a.place(yes);
        a.ret(RET_ALLOW);
        let p = a.finish().expect("valid program");
        assert_eq!(p.len(), 4);
        assert_eq!((p[1].code, p[1].jt, p[1].jf, p[1].k), (JMP_JEQ_K, 1, 0, 7));
    }

    #[test]
    fn too_far_conditional_is_an_error() {
        let mut a = Asm::new();
        let far = a.label();
        a.load(OFF_NR);
        a.jeq(1, far);
        for _ in 0..256 {
            a.ret(RET_ALLOW);
        }
        a.place(far);
        a.ret(RET_ALLOW);
        assert_eq!(
            a.finish().unwrap_err(),
            AsmError::JumpTooFar { pc: 1, offset: 256 }
        );
    }

    #[test]
    fn unplaced_label_is_an_error() {
        let mut a = Asm::new();
        let nowhere = a.label();
        a.ja(nowhere);
        a.ret(RET_ALLOW);
        assert_eq!(a.finish().unwrap_err(), AsmError::BadLabel { pc: 0 });
    }

    #[test]
    fn validate_rejects_bad_programs() {
        assert!(matches!(validate(&[]), Err(AsmError::Length { len: 0 })));
        let fall_off = [stmt(LD_W_ABS, OFF_NR)];
        assert_eq!(validate(&fall_off), Err(AsmError::NoFinalReturn));
        let misaligned = [stmt(LD_W_ABS, 2), stmt(RET_K, RET_ALLOW)];
        assert_eq!(validate(&misaligned), Err(AsmError::Load { pc: 0, k: 2 }));
        let outside = [stmt(LD_W_ABS, 64), stmt(RET_K, RET_ALLOW)];
        assert_eq!(validate(&outside), Err(AsmError::Load { pc: 0, k: 64 }));
        let escape = [jump(JMP_JEQ_K, 0, 0, 1), stmt(RET_K, RET_ALLOW)];
        assert_eq!(validate(&escape), Err(AsmError::OutOfRange { pc: 0 }));
        let ja_escape = [stmt(JMP_JA, u32::MAX), stmt(RET_K, RET_ALLOW)];
        assert_eq!(validate(&ja_escape), Err(AsmError::OutOfRange { pc: 0 }));
        let ldx = [stmt(0x01, 0), stmt(RET_K, RET_ALLOW)];
        assert_eq!(validate(&ldx), Err(AsmError::Opcode { pc: 0, code: 1 }));
    }
}
