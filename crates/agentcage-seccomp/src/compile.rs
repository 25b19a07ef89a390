//! Table → BPF compiler.
//!
//! Program shape (all jumps forward, as classic BPF requires):
//!
//! ```text
//! ld  arch
//! jeq AUDIT_ARCH_<native>, 0, <kill>   ; i386 int 0x80, AArch32, anything else:
//!                                      ;   killed (see lib.rs for why kill, not EPERM)
//! ld  nr
//! <binary search over number intervals>   ; ~log2(#intervals) jge's, each jumping
//!                                         ; straight to a shared return or arg block
//! <arg blocks: ld args[i] (low word), compare, jump to a shared return>
//! <shared returns: one `ret` per distinct action (ALLOW, each ERRNO, KILL_PROCESS)>
//! ```
//!
//! The number space `0..=u32::MAX` is cut into maximal intervals of equal action
//! (consecutive allowed syscalls share one leaf; gaps and everything above the last
//! known number are `ENOSYS`; x32 numbers are killed). A balanced binary search over
//! interval starts makes every syscall cost the same few instructions (about 3 + log2 of
//! the interval count), instead of a linear chain of 300 compares.
//!
//! Leaves are not instructions of their own: a search node whose half is one interval
//! jumps (`jt`/`jf`) directly to that interval's shared `ret` or arg block, and the arg
//! blocks end in jumps to the same returns. That almost halves the program (x86_64: 290 →
//! 159 instructions, aarch64: 239 → 133; more in eBPF, where each `ret` is two), and the
//! length is what attaching costs: `seccomp(2)` checks, converts and JIT-compiles the
//! whole program on every run, then emulates it once per syscall number for its action
//! cache. Where a jump would need an offset over 255 (a much larger table),
//! [`compile_with`] falls back to the inline layout (a `ret` per leaf, `ja` trampolines),
//! which makes the same decisions (tests compare the two for every number).
//!
//! Arguments are loaded only inside the arg blocks, so for every other syscall the
//! kernel's constant-action emulation (`seccomp_cache_prepare_bitmap`) sees a path that
//! depends on `arch` and `nr` alone and caches `ALLOW` in its bitmap: allowed hot
//! syscalls then skip the filter entirely. `emulate::kernel_cache_allows` replays that
//! emulation in tests.

use libc::sock_filter;

use crate::bpf::{self, Asm, AsmError, Label};
use crate::table::{
    Arch, ArgRule, Errno, Rule, AF_NETLINK, CLONE_NEW_MASK, INET_PROTOCOLS_DENIED, IPPROTO_TCP,
    MSG_FASTOPEN, NETLINK_PROTOCOLS, OPEN_MODE_FLAGS, PERSONALITIES, SETID_BITS, SOCKET_DOMAINS,
    SOCK_PACKET, SOCK_TYPE_MASK, SYSCALLS, TCP_FASTOPEN_CONNECT, TCP_RULE_GUARDS, TIOCLINUX,
    TIOCSETD, TIOCSTI,
};

/// The filter's action for a syscall number, before it is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Allow,
    Errno(Errno),
    Kill,
    Args(ArgRule),
}

/// The return value of a foreign ABI (wrong `arch`, x32 numbers).
pub const FOREIGN_ABI_ACTION: u32 = bpf::RET_KILL_PROCESS;

fn ret_errno(e: Errno) -> u32 {
    // Errnos are small positive numbers; the data field is 16 bits.
    bpf::RET_ERRNO | (e.0 as u32 & bpf::RET_DATA)
}

/// `(start, action)` pairs covering `0..=u32::MAX`, sorted, adjacent actions distinct.
fn intervals(arch: Arch, tcp_guards: bool) -> Vec<(u32, Action)> {
    let mut known: Vec<(u32, Action)> = SYSCALLS
        .iter()
        .filter_map(|s| {
            let guard = TCP_RULE_GUARDS.iter().find(|(n, _)| *n == s.name);
            let action = match (s.rule, guard) {
                (_, Some(&(_, a))) if tcp_guards => Action::Args(a),
                (Rule::Allow, _) => Action::Allow,
                (Rule::Deny(e, _), _) => Action::Errno(e),
                (Rule::Args(a), _) => Action::Args(a),
            };
            s.nr(arch).map(|nr| (nr, action))
        })
        .collect();
    known.sort_by_key(|&(nr, _)| nr);

    let unknown = Action::Errno(Errno::ENOSYS);
    let mut points: Vec<(u32, Action)> = Vec::with_capacity(known.len() * 2 + 4);
    let mut next_free: u64 = 0; // first number not yet covered
    for (nr, action) in known {
        if u64::from(nr) > next_free {
            points.push((next_free as u32, unknown));
        }
        points.push((nr, action));
        next_free = u64::from(nr) + 1;
    }
    let foreign = arch.foreign_nr_range();
    if let Some((lo, hi)) = foreign {
        if u64::from(lo) > next_free {
            points.push((next_free as u32, unknown));
        }
        points.push((lo, Action::Kill));
        next_free = u64::from(hi) + 1;
    }
    if next_free <= u64::from(u32::MAX) {
        points.push((next_free as u32, unknown));
    }
    // Merge neighbours with the same action (never arg rules: each is its own syscall).
    let mut merged: Vec<(u32, Action)> = Vec::with_capacity(points.len());
    for p in points {
        match merged.last() {
            Some(&(_, last)) if last == p.1 && !matches!(p.1, Action::Args(_)) => {}
            _ => merged.push(p),
        }
    }
    merged
}

/// Instructions [`emit_tree`] produces for `iv`: one per leaf, one `jge` per inner node,
/// plus one `ja` trampoline where the left subtree is too long for an 8-bit offset.
fn tree_len(iv: &[(u32, Action)]) -> usize {
    if iv.len() <= 1 {
        return 1;
    }
    let (left, right) = iv.split_at(iv.len() / 2);
    let l = tree_len(left);
    1 + usize::from(l > 255) + l + tree_len(right)
}

fn emit_tree(
    a: &mut Asm,
    iv: &[(u32, Action)],
    blocks: &mut Vec<(ArgRule, Label)>,
) -> Result<(), AsmError> {
    match iv {
        [] => a.ret(ret_errno(Errno::ENOSYS)), // unreachable: intervals cover all numbers
        [(_, action)] => match *action {
            Action::Allow => a.ret(bpf::RET_ALLOW),
            Action::Errno(e) => a.ret(ret_errno(e)),
            Action::Kill => a.ret(FOREIGN_ABI_ACTION),
            Action::Args(rule) => {
                let l = a.label();
                blocks.push((rule, l));
                a.ja(l);
            }
        },
        _ => {
            let (left, right) = iv.split_at(iv.len() / 2);
            let right_start = a.label();
            let pivot = right[0].0;
            if tree_len(left) > 255 {
                let to_left = a.label();
                a.jlt(pivot, to_left);
                a.ja(right_start);
                a.place(to_left);
            } else {
                a.jge(pivot, right_start);
            }
            emit_tree(a, left, blocks)?;
            a.place(right_start);
            emit_tree(a, right, blocks)?;
        }
    }
    Ok(())
}

fn emit_arg_block(a: &mut Asm, rule: ArgRule) {
    let allow = a.label();
    let deny = a.label();
    match rule {
        ArgRule::CloneFlags => {
            a.load(bpf::off_arg_lo(0));
            a.jset(CLONE_NEW_MASK, deny);
            a.ret(bpf::RET_ALLOW);
            a.place(deny);
            a.ret(ret_errno(Errno::EPERM));
        }
        ArgRule::IoctlRequest => {
            a.load(bpf::off_arg_lo(1));
            a.jeq(TIOCSTI, deny);
            a.jeq(TIOCLINUX, deny);
            a.jeq(TIOCSETD, deny);
            a.ret(bpf::RET_ALLOW);
            a.place(deny);
            a.ret(ret_errno(Errno::EPERM));
        }
        ArgRule::SocketDomain => {
            let netlink = a.label();
            let inet = a.label();
            let denied_proto = a.label();
            a.load(bpf::off_arg_lo(0));
            let inet_proto = a.label();
            for (domain, _) in SOCKET_DOMAINS {
                if domain == libc::AF_INET as u32 || domain == libc::AF_INET6 as u32 {
                    a.jeq(domain, inet);
                } else {
                    a.jeq(domain, allow);
                }
            }
            a.jeq(AF_NETLINK, netlink);
            a.ret(ret_errno(Errno::EAFNOSUPPORT));
            a.place(inet);
            a.load(bpf::off_arg_lo(1));
            a.and(SOCK_TYPE_MASK);
            a.jne(SOCK_PACKET, inet_proto);
            a.ret(ret_errno(Errno::EAFNOSUPPORT));
            // Landlock's TCP rules see neither MPTCP nor SCTP (landlock-lsm/linux#54, #40):
            // refuse them so a port allow-list cannot be bypassed. EPROTONOSUPPORT is what
            // a kernel without them says, so runtimes (Go's MPTCP default) fall back to TCP.
            a.place(inet_proto);
            a.load(bpf::off_arg_lo(2));
            for proto in INET_PROTOCOLS_DENIED {
                a.jeq(proto, denied_proto);
            }
            a.ja(allow);
            a.place(denied_proto);
            a.ret(ret_errno(Errno::EPROTONOSUPPORT));
            a.place(netlink);
            a.load(bpf::off_arg_lo(2));
            for (proto, _) in NETLINK_PROTOCOLS {
                a.jeq(proto, allow);
            }
            a.ret(ret_errno(Errno::EPROTONOSUPPORT));
            a.place(allow);
            a.ret(bpf::RET_ALLOW);
        }
        ArgRule::SocketpairDomain => {
            a.load(bpf::off_arg_lo(0));
            a.jeq(libc::AF_UNIX as u32, allow);
            a.ret(ret_errno(Errno::EAFNOSUPPORT));
            a.place(allow);
            a.ret(bpf::RET_ALLOW);
        }
        ArgRule::Personality => {
            a.load(bpf::off_arg_lo(0));
            for p in PERSONALITIES {
                a.jeq(p, allow);
            }
            a.ret(ret_errno(Errno::EPERM));
            a.place(allow);
            a.ret(bpf::RET_ALLOW);
        }
        ArgRule::NoSetidMode { mode } => {
            a.load(bpf::off_arg_lo(mode.into()));
            a.jset(SETID_BITS, deny);
            a.ret(bpf::RET_ALLOW);
            a.place(deny);
            a.ret(ret_errno(Errno::EPERM));
        }
        ArgRule::OpenNoSetidMode { flags, mode } => {
            // Without O_CREAT/O_TMPFILE the kernel ignores `mode` (callers pass garbage).
            let creates = a.label();
            a.load(bpf::off_arg_lo(flags.into()));
            a.jset(OPEN_MODE_FLAGS, creates);
            a.ret(bpf::RET_ALLOW);
            a.place(creates);
            a.load(bpf::off_arg_lo(mode.into()));
            a.jset(SETID_BITS, deny);
            a.ret(bpf::RET_ALLOW);
            a.place(deny);
            a.ret(ret_errno(Errno::EPERM));
        }
        ArgRule::NoFastOpenSend { flags } => {
            a.load(bpf::off_arg_lo(flags.into()));
            a.jset(MSG_FASTOPEN, deny);
            a.ret(bpf::RET_ALLOW);
            a.place(deny);
            a.ret(ret_errno(Errno::EOPNOTSUPP));
        }
        ArgRule::NoFastOpenSockopt => {
            let check = a.label();
            a.load(bpf::off_arg_lo(1));
            a.jeq(IPPROTO_TCP, check);
            a.ret(bpf::RET_ALLOW);
            a.place(check);
            a.load(bpf::off_arg_lo(2));
            a.jeq(TCP_FASTOPEN_CONNECT, deny);
            a.ret(bpf::RET_ALLOW);
            a.place(deny);
            a.ret(ret_errno(Errno::EOPNOTSUPP));
        }
    }
}

/// The shared returns at the end of the program: one `ret` per distinct action, the
/// target of every deciding jump of the search and the arg blocks.
#[derive(Default)]
struct Rets {
    slots: Vec<(u32, Label)>,
}

impl Rets {
    /// The label of the shared `ret k`.
    fn to(&mut self, a: &mut Asm, k: u32) -> Label {
        if let Some(&(_, l)) = self.slots.iter().find(|(r, _)| *r == k) {
            return l;
        }
        let l = a.label();
        self.slots.push((k, l));
        l
    }

    fn errno(&mut self, a: &mut Asm, e: Errno) -> Label {
        self.to(a, ret_errno(e))
    }

    fn allow(&mut self, a: &mut Asm) -> Label {
        self.to(a, bpf::RET_ALLOW)
    }

    fn place(self, a: &mut Asm) {
        for (k, l) in self.slots {
            a.place(l);
            a.ret(k);
        }
    }
}

/// Where a jump to the single interval `iv` goes (its shared return, or a new arg block);
/// `None` when `iv` holds more than one interval (a subtree follows).
fn leaf_target(
    a: &mut Asm,
    iv: &[(u32, Action)],
    rets: &mut Rets,
    blocks: &mut Vec<(ArgRule, Label)>,
) -> Option<Label> {
    let [(_, action)] = iv else { return None };
    Some(match *action {
        Action::Allow => rets.allow(a),
        Action::Errno(e) => rets.errno(a, e),
        Action::Kill => rets.to(a, FOREIGN_ABI_ACTION),
        Action::Args(rule) => {
            let l = a.label();
            blocks.push((rule, l));
            l
        }
    })
}

/// The search over `iv` (at least two intervals): one `jge` per inner node, whose branches
/// go to a subtree emitted right after it or straight to a leaf's target. The left subtree
/// (when there is one) falls through, so most nodes need one eBPF instruction.
fn emit_search(
    a: &mut Asm,
    iv: &[(u32, Action)],
    rets: &mut Rets,
    blocks: &mut Vec<(ArgRule, Label)>,
) {
    let (left, right) = iv.split_at(iv.len() / 2);
    let pivot = right[0].0;
    let lt = leaf_target(a, left, rets, blocks);
    let rt = leaf_target(a, right, rets, blocks);
    match (lt, rt) {
        (Some(l), Some(r)) => a.branch(bpf::JMP_JGE_K, pivot, Some(r), Some(l)),
        (Some(l), None) => {
            a.branch(bpf::JMP_JGE_K, pivot, None, Some(l));
            emit_search(a, right, rets, blocks);
        }
        (None, Some(r)) => {
            a.branch(bpf::JMP_JGE_K, pivot, Some(r), None);
            emit_search(a, left, rets, blocks);
        }
        (None, None) => {
            let r = a.label();
            a.branch(bpf::JMP_JGE_K, pivot, Some(r), None);
            emit_search(a, left, rets, blocks);
            a.place(r);
            emit_search(a, right, rets, blocks);
        }
    }
}

/// `if A == k for some k of ks goto hit else goto miss`.
fn jeq_any(a: &mut Asm, ks: &[u32], hit: Label, miss: Label) {
    match ks.split_last() {
        Some((&last, rest)) => {
            for &k in rest {
                a.jeq(k, hit);
            }
            a.branch(bpf::JMP_JEQ_K, last, Some(hit), Some(miss));
        }
        None => a.ja(miss),
    }
}

/// The arg block of `rule`, its decisions jumps to the shared returns: the comparisons of
/// [`emit_arg_block`] (the inline layout's), in the same order, with the same outcomes.
fn emit_arg_block_shared(a: &mut Asm, rule: ArgRule, rets: &mut Rets) {
    let allow = rets.allow(a);
    match rule {
        ArgRule::CloneFlags => {
            let deny = rets.errno(a, Errno::EPERM);
            a.load(bpf::off_arg_lo(0));
            a.branch(bpf::JMP_JSET_K, CLONE_NEW_MASK, Some(deny), Some(allow));
        }
        ArgRule::IoctlRequest => {
            let deny = rets.errno(a, Errno::EPERM);
            a.load(bpf::off_arg_lo(1));
            jeq_any(a, &[TIOCSTI, TIOCLINUX, TIOCSETD], deny, allow);
        }
        ArgRule::SocketDomain => {
            let inet = a.label();
            let netlink = a.label();
            let no_family = rets.errno(a, Errno::EAFNOSUPPORT);
            let no_proto = rets.errno(a, Errno::EPROTONOSUPPORT);
            a.load(bpf::off_arg_lo(0));
            for (domain, _) in SOCKET_DOMAINS {
                if domain == libc::AF_INET as u32 || domain == libc::AF_INET6 as u32 {
                    a.jeq(domain, inet);
                } else {
                    a.jeq(domain, allow);
                }
            }
            a.branch(bpf::JMP_JEQ_K, AF_NETLINK, Some(netlink), Some(no_family));
            a.place(inet);
            a.load(bpf::off_arg_lo(1));
            a.and(SOCK_TYPE_MASK);
            a.jeq(SOCK_PACKET, no_family);
            // Landlock's TCP rules see neither MPTCP nor SCTP: see `emit_arg_block`.
            a.load(bpf::off_arg_lo(2));
            jeq_any(a, &INET_PROTOCOLS_DENIED, no_proto, allow);
            a.place(netlink);
            a.load(bpf::off_arg_lo(2));
            jeq_any(a, &NETLINK_PROTOCOLS.map(|(p, _)| p), allow, no_proto);
        }
        ArgRule::SocketpairDomain => {
            let deny = rets.errno(a, Errno::EAFNOSUPPORT);
            a.load(bpf::off_arg_lo(0));
            a.branch(
                bpf::JMP_JEQ_K,
                libc::AF_UNIX as u32,
                Some(allow),
                Some(deny),
            );
        }
        ArgRule::Personality => {
            let deny = rets.errno(a, Errno::EPERM);
            a.load(bpf::off_arg_lo(0));
            jeq_any(a, &PERSONALITIES, allow, deny);
        }
        ArgRule::NoSetidMode { mode } => {
            let deny = rets.errno(a, Errno::EPERM);
            a.load(bpf::off_arg_lo(mode.into()));
            a.branch(bpf::JMP_JSET_K, SETID_BITS, Some(deny), Some(allow));
        }
        ArgRule::OpenNoSetidMode { flags, mode } => {
            // Without O_CREAT/O_TMPFILE the kernel ignores `mode` (callers pass garbage).
            let deny = rets.errno(a, Errno::EPERM);
            a.load(bpf::off_arg_lo(flags.into()));
            a.branch(bpf::JMP_JSET_K, OPEN_MODE_FLAGS, None, Some(allow));
            a.load(bpf::off_arg_lo(mode.into()));
            a.branch(bpf::JMP_JSET_K, SETID_BITS, Some(deny), Some(allow));
        }
        ArgRule::NoFastOpenSend { flags } => {
            let deny = rets.errno(a, Errno::EOPNOTSUPP);
            a.load(bpf::off_arg_lo(flags.into()));
            a.branch(bpf::JMP_JSET_K, MSG_FASTOPEN, Some(deny), Some(allow));
        }
        ArgRule::NoFastOpenSockopt => {
            let deny = rets.errno(a, Errno::EOPNOTSUPP);
            a.load(bpf::off_arg_lo(1));
            a.branch(bpf::JMP_JEQ_K, IPPROTO_TCP, None, Some(allow));
            a.load(bpf::off_arg_lo(2));
            a.branch(
                bpf::JMP_JEQ_K,
                TCP_FASTOPEN_CONNECT,
                Some(deny),
                Some(allow),
            );
        }
    }
}

/// The shared-returns layout (see the module doc).
///
/// # Errors
/// [`AsmError::JumpTooFar`] when a table this large needs offsets over 255.
fn compile_shared(arch: Arch, iv: &[(u32, Action)]) -> Result<Vec<sock_filter>, AsmError> {
    let mut a = Asm::new();
    let mut rets = Rets::default();
    let mut blocks = Vec::new();
    let kill = rets.to(&mut a, FOREIGN_ABI_ACTION);
    a.load(bpf::OFF_ARCH);
    a.branch(bpf::JMP_JEQ_K, arch.audit_arch(), None, Some(kill));
    a.load(bpf::OFF_NR);
    match leaf_target(&mut a, iv, &mut rets, &mut blocks) {
        Some(l) => a.ja(l), // one interval: no search (not a real table)
        None => emit_search(&mut a, iv, &mut rets, &mut blocks),
    }
    for (rule, label) in blocks {
        a.place(label);
        emit_arg_block_shared(&mut a, rule, &mut rets);
    }
    rets.place(&mut a);
    a.finish()
}

/// The inline layout: a `ret` per leaf, `ja` trampolines where a subtree is too long.
fn compile_inline(arch: Arch, iv: &[(u32, Action)]) -> Result<Vec<sock_filter>, AsmError> {
    let mut a = Asm::new();
    let native = a.label();
    a.load(bpf::OFF_ARCH);
    a.jeq(arch.audit_arch(), native);
    a.ret(FOREIGN_ABI_ACTION);
    a.place(native);
    a.load(bpf::OFF_NR);
    let mut blocks = Vec::new();
    emit_tree(&mut a, iv, &mut blocks)?;
    for (rule, label) in blocks {
        a.place(label);
        emit_arg_block(&mut a, rule);
    }
    a.finish()
}

/// Compiles the policy table for `arch`.
///
/// # Errors
/// Only if the table could not be encoded (a jump too far, more than 4096 instructions):
/// a bug in this crate, covered by the tests, never a property of the host.
pub fn compile(arch: Arch) -> Result<Vec<sock_filter>, AsmError> {
    compile_with(arch, false)
}

/// Compiles the policy table for `arch`, with the [`TCP_RULE_GUARDS`] when `tcp_guards`
/// (Landlock TCP rules guard a network shared with the host).
///
/// # Errors
/// As [`compile`].
pub fn compile_with(arch: Arch, tcp_guards: bool) -> Result<Vec<sock_filter>, AsmError> {
    let iv = intervals(arch, tcp_guards);
    match compile_shared(arch, &iv) {
        Err(AsmError::JumpTooFar { .. }) => compile_inline(arch, &iv),
        r => r,
    }
}

/// The events variant of `program` (a compiled filter): every policy denial
/// (`SECCOMP_RET_ERRNO` with an errno other than `ENOSYS`) becomes
/// `SECCOMP_RET_USER_NOTIF`, so a listener outside the sandbox sees it and answers with
/// the errno of the original program (see `PreparedFilter::denial_errno`). `ENOSYS` (unknown
/// numbers, never-implemented and too-new interfaces, `clone3`) stays a plain errno:
/// libraries probe those on every start and fall back, they are not denials of
/// anything the policy could allow. `ALLOW` and `KILL` returns are unchanged, and no
/// jump moves, so the allowed paths (and the kernel's action cache) are the same.
pub fn notify_variant(program: &[sock_filter]) -> Vec<sock_filter> {
    program
        .iter()
        .map(|&ins| {
            let is_ret = ins.code == bpf::RET_K;
            let denial = ins.k & bpf::RET_ACTION_FULL == bpf::RET_ERRNO
                && (ins.k & bpf::RET_DATA) as i32 != Errno::ENOSYS.0;
            if is_ret && denial {
                sock_filter {
                    k: bpf::RET_USER_NOTIF,
                    ..ins
                }
            } else {
                ins
            }
        })
        .collect()
}

/// Number of number intervals the binary search distinguishes on `arch` (for docs and
/// the cost estimate).
pub fn interval_count(arch: Arch) -> usize {
    intervals(arch, false).len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_cover_everything_in_order() {
        for arch in Arch::ALL {
            let iv = intervals(arch, false);
            assert_eq!(iv[0].0, 0);
            for w in iv.windows(2) {
                assert!(w[0].0 < w[1].0, "{arch:?}: unsorted {:?}", w);
                let both_args = matches!(w[0].1, Action::Args(_));
                assert!(w[0].1 != w[1].1 || both_args, "{arch:?}: unmerged {:?}", w);
            }
            let last = iv.last().expect("non-empty");
            assert_eq!(last.1, Action::Errno(Errno::ENOSYS), "{arch:?}");
        }
    }

    /// The events variant: same verdict for every syscall except policy denials (not
    /// ENOSYS), which become user notifications; the action cache is unchanged.
    #[test]
    fn notify_variant_only_changes_denials() {
        use crate::emulate::{emulate, kernel_cache_allows, SeccompData, Verdict};
        for arch in Arch::ALL {
            for tcp in [false, true] {
                let plain = compile_with(arch, tcp).expect("compiles");
                let notify = notify_variant(&plain);
                assert_eq!(plain.len(), notify.len());
                let mut notified = 0;
                for nr in (0..600u32).chain([X32_PROBE, u32::MAX]) {
                    assert_eq!(
                        kernel_cache_allows(&plain, arch.audit_arch(), nr),
                        kernel_cache_allows(&notify, arch.audit_arch(), nr),
                        "{arch:?} nr {nr}: action cache differs"
                    );
                    for args in [
                        [0u64; 6],
                        [0x1000_0000, 0x5412, 0x3, 0, 0, 0],
                        [17, 3, 768, 0, 0, 0],
                    ] {
                        let d = SeccompData::new(nr as i32, arch.audit_arch(), args);
                        let p = emulate(&plain, &d).expect("runs").verdict;
                        let n = emulate(&notify, &d).expect("runs").verdict;
                        match p {
                            Verdict::Errno(e) if e != libc::ENOSYS => {
                                assert_eq!(n, Verdict::Other(bpf::RET_USER_NOTIF), "{arch:?} {nr}");
                                notified += 1;
                            }
                            _ => assert_eq!(p, n, "{arch:?} nr {nr} args {args:?}"),
                        }
                    }
                }
                assert!(notified > 0, "{arch:?}: no denial became a notification");
            }
        }
    }

    const X32_PROBE: u32 = 0x4000_0001;

    /// The shared-returns layout makes the inline layout's decisions: on both arches, with
    /// and without TCP guards, for every number up to 1100, both sides of every interval
    /// bound, the x32 and sign edges and the top, the same verdict and the same action-cache
    /// bit; for the foreign arches the same kill; and for every arg-checked syscall the same
    /// verdict on 20000 argument vectors built from the constants the blocks compare with
    /// (each, its neighbours, single bits, with random high bits or'ed in).
    #[test]
    fn shared_layout_decides_like_the_inline_one() {
        use crate::emulate::{emulate, kernel_cache_allows, SeccompData};
        use crate::table::{AUDIT_ARCH_ARM, AUDIT_ARCH_I386};
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut rand = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for arch in Arch::ALL {
            for tcp in [false, true] {
                let iv = intervals(arch, tcp);
                let shared = compile_shared(arch, &iv).expect("offsets fit");
                let inline = compile_inline(arch, &iv).expect("encodable");
                let key = |p: &[sock_filter]| -> Vec<(u16, u8, u8, u32)> {
                    p.iter().map(|i| (i.code, i.jt, i.jf, i.k)).collect()
                };
                assert_eq!(
                    key(&compile_with(arch, tcp).expect("compiles")),
                    key(&shared)
                );
                assert!(
                    shared.len() * 3 < inline.len() * 2,
                    "{arch:?}: {} vs {} instructions",
                    shared.len(),
                    inline.len()
                );
                let verdict = |prog: &[sock_filter], audit: u32, nr: u32, args: [u64; 6]| {
                    let d = SeccompData::new(nr as i32, audit, args);
                    emulate(prog, &d).expect("runs").ret
                };
                let mut nrs: Vec<u32> = (0..1100).collect();
                for &(start, _) in &iv {
                    nrs.extend([start.wrapping_sub(1), start, start.wrapping_add(1)]);
                }
                nrs.extend([
                    X32_PROBE - 1,
                    0x3fff_ffff,
                    0x7fff_ffff,
                    0x8000_0000,
                    u32::MAX,
                ]);
                // Every constant either program compares with, its neighbours, single bits.
                let mut ks: Vec<u64> = vec![0, u64::from(u32::MAX), u64::MAX];
                for ins in inline.iter().chain(&shared) {
                    if ins.code & 0x07 == 0x05 && ins.code != bpf::JMP_JA {
                        let k = u64::from(ins.k);
                        ks.extend([k, k.wrapping_sub(1), k + 1]);
                    }
                }
                ks.extend((0..64).map(|b| 1u64 << b));
                let native = arch.audit_arch();
                for &nr in &nrs {
                    assert_eq!(
                        kernel_cache_allows(&shared, native, nr),
                        kernel_cache_allows(&inline, native, nr),
                        "{arch:?} tcp {tcp} nr {nr:#x}: action cache"
                    );
                    for audit in [native, AUDIT_ARCH_I386, AUDIT_ARCH_ARM, 0] {
                        assert_eq!(
                            verdict(&shared, audit, nr, [0; 6]),
                            verdict(&inline, audit, nr, [0; 6]),
                            "{arch:?} tcp {tcp} arch {audit:#x} nr {nr:#x}"
                        );
                    }
                }
                let args_checked = iv.iter().filter_map(|&(nr, a)| match a {
                    Action::Args(_) => Some(nr),
                    _ => None,
                });
                for nr in args_checked {
                    for _ in 0..20_000 {
                        let mut args = [0u64; 6];
                        for a in &mut args {
                            let r = rand();
                            *a = ks[(r % ks.len() as u64) as usize];
                            if r & 0x300 == 0 {
                                *a |= rand() & 0xffff_ffff_fff0_0000;
                            }
                        }
                        assert_eq!(
                            verdict(&shared, native, nr, args),
                            verdict(&inline, native, nr, args),
                            "{arch:?} tcp {tcp} nr {nr} args {args:x?}"
                        );
                    }
                }
            }
        }
    }

    /// A table whose shared layout needs offsets over 255 is compiled inline instead, with
    /// the same decisions.
    /// `n` intervals, every third syscall number, alternating allow and EPERM.
    fn alternating(n: u32) -> Vec<(u32, Action)> {
        (0..n)
            .map(|i| {
                let act = if i % 2 == 0 {
                    Action::Allow
                } else {
                    Action::Errno(Errno::EPERM)
                };
                (i * 3, act)
            })
            .collect()
    }

    #[test]
    fn too_wide_for_shared_returns_falls_back_to_inline() {
        // 600 alternating intervals: the first jumps cannot reach the shared returns.
        let iv = alternating(600);
        let arch = Arch::ALL[0];
        assert!(matches!(
            compile_shared(arch, &iv),
            Err(AsmError::JumpTooFar { .. })
        ));
        let prog = compile_inline(arch, &iv).expect("trampolines make it encodable");
        for (i, &(start, act)) in iv.iter().enumerate() {
            let want = match act {
                Action::Allow => bpf::RET_ALLOW,
                _ => ret_errno(Errno::EPERM),
            };
            let d = crate::emulate::SeccompData::new(start as i32, arch.audit_arch(), [0; 6]);
            assert_eq!(
                crate::emulate::emulate(&prog, &d).expect("runs").ret,
                want,
                "{i}"
            );
        }
    }

    #[test]
    fn tree_len_matches_emission() {
        for arch in Arch::ALL {
            let iv = intervals(arch, false);
            let mut a = Asm::new();
            let mut blocks = Vec::new();
            emit_tree(&mut a, &iv, &mut blocks).expect("emits");
            assert_eq!(a.len(), tree_len(&iv), "{arch:?}");
        }
    }

    #[test]
    fn trampolines_keep_huge_trees_encodable() {
        // 2000 alternating intervals force left subtrees longer than 255 instructions.
        let iv = alternating(2000);
        let mut a = Asm::new();
        a.load(bpf::OFF_NR);
        let mut blocks = Vec::new();
        emit_tree(&mut a, &iv, &mut blocks).expect("emits");
        let prog = a.finish().expect("all jumps encodable");
        for (i, &(start, act)) in iv.iter().enumerate() {
            let want = match act {
                Action::Allow => bpf::RET_ALLOW,
                _ => ret_errno(Errno::EPERM),
            };
            let data = crate::emulate::SeccompData::new(start as i32, 0, [0; 6]);
            let got = crate::emulate::emulate(&prog, &data).expect("runs");
            assert_eq!(got.ret, want, "interval {i}");
        }
    }
}
