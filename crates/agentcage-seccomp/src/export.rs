//! The filter as a JSON seccomp profile for OCI runtimes (runc, crun), Docker, Podman and
//! the kubelet (`seccompProfile: Localhost`).
//!
//! Derived from the same [`table`](crate::table) the BPF compiler reads, never from a second
//! list: every row becomes a profile entry, every [`ArgRule`] becomes `SCMP_CMP_MASKED_EQ`
//! conditions. A unit test evaluates the serialized JSON, with the runtimes' semantics, for
//! every syscall number and a grid of argument values, and checks it against the compiled BPF.
//!
//! How the runtimes read a profile (libseccomp, which runc, crun, youki and the Kata agent
//! use): a syscall's entry matches when *all* its `args` conditions hold (one condition per
//! argument at most); arguments are compared as 64-bit values. Our BPF compares only the low
//! 32 bits (every checked argument is an `int` in the kernel: a high word never changes the
//! outcome, and comparing it would be the CVE-2019-10063 bypass), so every condition here is
//! `MASKED_EQ` with a mask inside the low word: the high word is masked away. OR is several
//! entries. What libseccomp does when entries with *different* actions both match is not
//! specified, so entries of different actions are disjoint by construction (the test checks
//! it): the profile means the same on any runtime that implements the OCI semantics.
//!
//! What a profile cannot say, and what we export instead (the stricter choice, listed in
//! [`SeccompProfile::deviations`], the profile's `comment` and docs/FLEET.md):
//! - foreign ABIs (i386 `int 0x80`, x32, AArch32): only the native architecture is listed,
//!   so they get the runtime's bad-architecture action (libseccomp's default: kill), where
//!   our filter returns `SECCOMP_RET_KILL_PROCESS`;
//! - "any protocol but SCTP and MPTCP" for `AF_INET`/`AF_INET6` needs the complement of two
//!   values crossed with the `SOCK_PACKET` check (hundreds of entries): the profile allows the
//!   protocols real programs pass ([`INET_PROTOCOLS_ALLOWED`]) and refuses the rest;
//! - a denial whose complement needs more than [`COMPLEMENT_MAX`] entries (`personality`'s
//!   refused values) falls to the default action, `ENOSYS` instead of `EPERM`;
//!
//! The profile has no `flags` (agentcage's own filter passes
//! `SECCOMP_FILTER_FLAG_SPEC_ALLOW`): runc 1.1 refuses any flag ("seccomp flags are not yet
//! supported") and Docker 20.10 drops them, so the runtime keeps the speculative store bypass
//! mitigation: slower, not weaker.
//!
//! Rows whose action is the default (`ENOSYS`: `clone3`, `openat2`, never-implemented
//! syscalls) are listed anyway: Docker 20.10 drops `defaultErrnoRet` (and `flags`) when it
//! hands the profile to runc, whose default errno is then `EPERM`; runc and crun skip a
//! rule equal to the default action where it is honoured.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use crate::table::{
    Arch, ArgRule, Errno, Rule, AF_NETLINK, CLONE_NEW_MASK, INET_PROTOCOLS_DENIED, IPPROTO_TCP,
    MSG_FASTOPEN, NETLINK_PROTOCOLS, OPEN_MODE_FLAGS, PERSONALITIES, SETID_BITS, SOCKET_DOMAINS,
    SOCK_PACKET, SOCK_TYPE_MASK, SYSCALLS, TCP_FASTOPEN_CONNECT, TCP_RULE_GUARDS, TIOCLINUX,
    TIOCSETD, TIOCSTI,
};

/// Protocols an `AF_INET`/`AF_INET6` socket may be created with in the exported profile:
/// 0 (the type's default), `IPPROTO_ICMP`, `IPPROTO_TCP`, `IPPROTO_UDP`, `IPPROTO_ICMPV6`.
/// Our BPF allows every protocol but SCTP and MPTCP; see the module documentation.
pub const INET_PROTOCOLS_ALLOWED: [u32; 5] = [0, 1, 6, 17, 58];

/// Largest complement emitted as entries; a larger one is left to the default action.
pub const COMPLEMENT_MAX: usize = 40;

/// The `defaultErrnoRet` (and our filter's answer for unknown syscalls).
pub const DEFAULT_ERRNO: Errno = Errno::ENOSYS;

/// Output flavour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProfileFormat {
    /// The runtime-spec `linux.seccomp` object: only the spec's fields.
    Oci,
    /// The same object plus Docker's `comment` fields (the reason of each entry and what the
    /// export could not say). Docker, Podman, containerd and CRI-O ignore unknown fields.
    Docker,
}

/// What to export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportOptions {
    /// Architectures to list (the native one for a host; more for a mixed fleet).
    pub arches: Vec<Arch>,
    /// Add the [`TCP_RULE_GUARDS`] (TCP Fast Open refused), as the launcher does with
    /// Landlock TCP rules on a shared network.
    pub tcp_guards: bool,
}

/// An entry's action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Action {
    /// `SCMP_ACT_ALLOW`.
    Allow,
    /// `SCMP_ACT_ERRNO` with `errnoRet`.
    Errno(Errno),
}

/// `(arg[index] & mask) == value`, on the argument's low 32 bits (`SCMP_CMP_MASKED_EQ` with
/// a mask inside the low word).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ArgCond {
    /// Argument index (0..6).
    pub index: u8,
    /// Mask (the OCI `value`).
    pub mask: u32,
    /// Expected masked value (the OCI `valueTwo`).
    pub value: u32,
}

/// One profile entry: `names` get `action` when every condition holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Syscall names.
    pub names: Vec<&'static str>,
    /// The action.
    pub action: Action,
    /// Conditions, all of which must hold (at most one per argument index).
    pub args: Vec<ArgCond>,
    /// Why (Docker format `comment`).
    pub comment: String,
}

/// A place where the profile differs from the BPF filter, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deviation {
    /// The syscall, or `*` for the architecture handling.
    pub syscall: &'static str,
    /// Whether the profile denies some calls the filter allows (otherwise only the errno of
    /// some denied calls differs).
    pub stricter: bool,
    /// What differs.
    pub what: &'static str,
}

/// The exported profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeccompProfile {
    /// Listed architectures.
    pub arches: Vec<Arch>,
    /// Entries, in a stable order.
    pub entries: Vec<Entry>,
    /// Where the profile is stricter or answers another errno than the filter.
    pub deviations: Vec<Deviation>,
}

const FULL: u32 = u32::MAX;

const DEV_ARCH: Deviation = Deviation {
    syscall: "*",
    stricter: false,
    what: "foreign ABIs (i386 int 0x80, x32 numbers, AArch32) and numbers of 0x40000000 and \
           up: only the native architecture is listed, so the runtime's bad-architecture \
           action applies (libseccomp: kill) where agentcage's filter kills the process",
};
const DEV_INET: Deviation = Deviation {
    syscall: "socket",
    stricter: true,
    what: "AF_INET/AF_INET6 sockets only with protocol 0, IPPROTO_ICMP, IPPROTO_TCP, \
           IPPROTO_UDP or IPPROTO_ICMPV6 (others: ENOSYS); agentcage's filter refuses only \
           IPPROTO_SCTP and IPPROTO_MPTCP (EPROTONOSUPPORT, as here)",
};
const DEV_PERSONALITY: Deviation = Deviation {
    syscall: "personality",
    stricter: false,
    what: "refused personas answer ENOSYS instead of EPERM (their complement is too large \
           to list)",
};

fn eq(index: u8, value: u32) -> ArgCond {
    ArgCond {
        index,
        mask: FULL,
        value,
    }
}

fn masked(index: u8, mask: u32, value: u32) -> ArgCond {
    ArgCond { index, mask, value }
}

/// One condition per bit of `mask`: "this bit is set" (an OR of them is "any bit set").
fn any_bit(index: u8, mask: u32) -> Vec<ArgCond> {
    (0..32)
        .map(|b| 1u32 << b)
        .filter(|b| mask & b != 0)
        .rev()
        .map(|b| masked(index, b, b))
        .collect()
}

/// Disjoint conditions covering every `x` whose bits under `domain` are not one of
/// `values` (each value taken under `domain`): the siblings of the values' paths in a
/// binary trie of the domain's bits, most significant first.
pub fn complement(index: u8, domain: u32, values: &[u32]) -> Vec<ArgCond> {
    let bits: Vec<u32> = (0..32)
        .rev()
        .map(|b| 1u32 << b)
        .filter(|b| domain & b != 0)
        .collect();
    let mut vals: Vec<u32> = values.iter().map(|v| v & domain).collect();
    vals.sort_unstable();
    vals.dedup();
    let mut out = Vec::new();
    complement_rec(index, &bits, 0, 0, &vals, &mut out);
    out
}

fn complement_rec(
    index: u8,
    bits: &[u32],
    mask: u32,
    value: u32,
    vals: &[u32],
    out: &mut Vec<ArgCond>,
) {
    if vals.is_empty() {
        out.push(masked(index, mask, value));
        return;
    }
    let Some((&bit, rest)) = bits.split_first() else {
        return; // exactly a refused value
    };
    for side in [0, bit] {
        let sub: Vec<u32> = vals.iter().copied().filter(|v| v & bit == side).collect();
        complement_rec(index, rest, mask | bit, value | side, &sub, out);
    }
}

/// Every combination of one condition from each part (an AND of ORs as an OR of ANDs).
fn product(parts: &[Vec<ArgCond>]) -> Vec<Vec<ArgCond>> {
    let mut out: Vec<Vec<ArgCond>> = vec![Vec::new()];
    for part in parts {
        out = out
            .iter()
            .flat_map(|pre| {
                part.iter().map(move |c| {
                    let mut v = pre.clone();
                    v.push(*c);
                    v
                })
            })
            .collect();
    }
    out
}

/// An OR of ANDs of conditions.
type Clauses = Vec<Vec<ArgCond>>;

/// Profile entries being collected: (group order, action, args) -> (names, comment).
type Groups = BTreeMap<(u8, Action, Vec<ArgCond>), (Vec<&'static str>, String)>;

fn singles(conds: Vec<ArgCond>) -> Vec<Vec<ArgCond>> {
    conds.into_iter().map(|c| vec![c]).collect()
}

/// The clauses (AND of conditions) of each action for one argument rule, and the deviation
/// it needs, if any.
fn clauses(rule: ArgRule) -> (Vec<(Action, Clauses)>, Option<Deviation>) {
    let perm = Action::Errno(Errno::EPERM);
    let afno = Action::Errno(Errno::EAFNOSUPPORT);
    let protono = Action::Errno(Errno::EPROTONOSUPPORT);
    let opnotsupp = Action::Errno(Errno::EOPNOTSUPP);
    match rule {
        ArgRule::CloneFlags => (
            vec![
                (Action::Allow, vec![vec![masked(0, CLONE_NEW_MASK, 0)]]),
                (perm, singles(any_bit(0, CLONE_NEW_MASK))),
            ],
            None,
        ),
        ArgRule::IoctlRequest => {
            let denied = [TIOCSTI, TIOCLINUX, TIOCSETD];
            (
                vec![
                    (perm, singles(denied.iter().map(|&r| eq(1, r)).collect())),
                    (Action::Allow, singles(complement(1, FULL, &denied))),
                ],
                None,
            )
        }
        ArgRule::SocketDomain => {
            let inet = [libc::AF_INET as u32, libc::AF_INET6 as u32];
            let mut v = Vec::new();
            for (d, _) in SOCKET_DOMAINS {
                if inet.contains(&d) {
                    continue;
                }
                v.push((Action::Allow, vec![vec![eq(0, d)]]));
            }
            let not_packet = complement(1, SOCK_TYPE_MASK, &[SOCK_PACKET]);
            for d in inet {
                v.push((
                    afno,
                    vec![vec![eq(0, d), masked(1, SOCK_TYPE_MASK, SOCK_PACKET)]],
                ));
                let denied: Vec<ArgCond> =
                    INET_PROTOCOLS_DENIED.iter().map(|&p| eq(2, p)).collect();
                v.push((
                    protono,
                    product(&[vec![eq(0, d)], not_packet.clone(), denied]),
                ));
                let allowed: Vec<ArgCond> =
                    INET_PROTOCOLS_ALLOWED.iter().map(|&p| eq(2, p)).collect();
                v.push((
                    Action::Allow,
                    product(&[vec![eq(0, d)], not_packet.clone(), allowed]),
                ));
            }
            let nl: Vec<u32> = NETLINK_PROTOCOLS.iter().map(|(p, _)| *p).collect();
            v.push((
                Action::Allow,
                product(&[
                    vec![eq(0, AF_NETLINK)],
                    nl.iter().map(|&p| eq(2, p)).collect(),
                ]),
            ));
            v.push((
                protono,
                product(&[vec![eq(0, AF_NETLINK)], complement(2, FULL, &nl)]),
            ));
            let mut known: Vec<u32> = SOCKET_DOMAINS.iter().map(|(d, _)| *d).collect();
            known.push(AF_NETLINK);
            v.push((afno, singles(complement(0, FULL, &known))));
            (v, Some(DEV_INET))
        }
        ArgRule::SocketpairDomain => {
            let unix = libc::AF_UNIX as u32;
            (
                vec![
                    (Action::Allow, vec![vec![eq(0, unix)]]),
                    (afno, singles(complement(0, FULL, &[unix]))),
                ],
                None,
            )
        }
        ArgRule::Personality => {
            let allow = (
                Action::Allow,
                singles(PERSONALITIES.iter().map(|&p| eq(0, p)).collect()),
            );
            let refused = complement(0, FULL, &PERSONALITIES);
            if refused.len() > COMPLEMENT_MAX {
                (vec![allow], Some(DEV_PERSONALITY))
            } else {
                (vec![allow, (perm, singles(refused))], None)
            }
        }
        ArgRule::NoSetidMode { mode } => (
            vec![
                (Action::Allow, vec![vec![masked(mode, SETID_BITS, 0)]]),
                (perm, singles(any_bit(mode, SETID_BITS))),
            ],
            None,
        ),
        ArgRule::OpenNoSetidMode { flags, mode } => {
            let creates = any_bit(flags, OPEN_MODE_FLAGS);
            let mut allow = vec![vec![masked(flags, OPEN_MODE_FLAGS, 0)]];
            allow.extend(product(&[
                creates.clone(),
                vec![masked(mode, SETID_BITS, 0)],
            ]));
            (
                vec![
                    (Action::Allow, allow),
                    (perm, product(&[creates, any_bit(mode, SETID_BITS)])),
                ],
                None,
            )
        }
        ArgRule::NoFastOpenSend { flags } => (
            vec![
                (Action::Allow, vec![vec![masked(flags, MSG_FASTOPEN, 0)]]),
                (
                    opnotsupp,
                    vec![vec![masked(flags, MSG_FASTOPEN, MSG_FASTOPEN)]],
                ),
            ],
            None,
        ),
        ArgRule::NoFastOpenSockopt => {
            let mut allow = singles(complement(1, FULL, &[IPPROTO_TCP]));
            allow.extend(product(&[
                vec![eq(1, IPPROTO_TCP)],
                complement(2, FULL, &[TCP_FASTOPEN_CONNECT]),
            ]));
            (
                vec![
                    (Action::Allow, allow),
                    (
                        opnotsupp,
                        vec![vec![eq(1, IPPROTO_TCP), eq(2, TCP_FASTOPEN_CONNECT)]],
                    ),
                ],
                None,
            )
        }
    }
}

/// The SCMP_ARCH name of `arch`.
pub const fn scmp_arch(arch: Arch) -> &'static str {
    match arch {
        Arch::X86_64 => "SCMP_ARCH_X86_64",
        Arch::Aarch64 => "SCMP_ARCH_AARCH64",
    }
}

fn errno_name(e: Errno) -> String {
    e.name().map_or_else(|| e.0.to_string(), str::to_string)
}

/// Builds the profile of the `full` filter from the table.
pub fn export(opts: &ExportOptions) -> SeccompProfile {
    let present = |s: &crate::table::Syscall| opts.arches.iter().any(|&a| s.nr(a).is_some());
    let mut deviations = vec![DEV_ARCH];
    // (action, args) -> (names, comment): rows with the same outcome share an entry.
    let mut groups: Groups = BTreeMap::new();
    let mut add = |order: u8, action: Action, args: Vec<ArgCond>, name, comment: String| {
        let e = groups
            .entry((order, action, args))
            .or_insert_with(|| (Vec::new(), comment));
        if !e.0.contains(&name) {
            e.0.push(name);
        }
    };
    for s in SYSCALLS.iter().filter(|s| present(s)) {
        let guard = TCP_RULE_GUARDS
            .iter()
            .find(|(n, _)| *n == s.name)
            .filter(|_| opts.tcp_guards);
        let rule = match guard {
            Some(&(_, a)) => Rule::Args(a),
            None => s.rule,
        };
        match rule {
            Rule::Allow => add(0, Action::Allow, Vec::new(), s.name, String::new()),
            Rule::Deny(e, why) => add(1, Action::Errno(e), Vec::new(), s.name, why.into()),
            Rule::Args(a) => {
                let (by_action, dev) = clauses(a);
                if let Some(d) = dev {
                    if !deviations.contains(&d) {
                        deviations.push(d);
                    }
                }
                let why = crate::doc::describe_arg_rule(a);
                for (action, cl) in by_action {
                    for mut args in cl {
                        args.sort_by_key(|c| c.index);
                        add(2, action, args, s.name, why.clone());
                    }
                }
            }
        }
    }
    let mut entries: Vec<Entry> = groups
        .into_iter()
        .map(|((_, action, args), (names, comment))| Entry {
            names,
            action,
            args,
            comment,
        })
        .collect();
    // Stable and readable: unconditional entries first, then by first name's table order.
    let pos = |n: &str| {
        SYSCALLS
            .iter()
            .position(|s| s.name == n)
            .unwrap_or(usize::MAX)
    };
    entries.sort_by_key(|e| (!e.args.is_empty(), pos(e.names[0])));
    SeccompProfile {
        arches: opts.arches.clone(),
        entries,
        deviations,
    }
}

impl SeccompProfile {
    /// The one-paragraph summary that goes in the Docker format's `comment`.
    pub fn summary(&self) -> String {
        let mut s = String::from(
            "agentcage `full` seccomp filter, exported from the table its BPF compiler reads \
             (crates/agentcage-seccomp/src/table.rs). Unknown syscalls: ENOSYS. Arguments are \
             compared on their low 32 bits. No `flags`: the runtime keeps the speculative \
             store bypass mitigation (agentcage passes SECCOMP_FILTER_FLAG_SPEC_ALLOW; runc 1.1 \
             refuses flags and Docker 20.10 drops them). Differences from agentcage's own \
             filter:",
        );
        for d in &self.deviations {
            s.push_str(" [");
            s.push_str(d.syscall);
            s.push_str(if d.stricter { ", stricter] " } else { "] " });
            s.push_str(d.what);
            s.push('.');
        }
        s
    }

    /// The profile as JSON.
    pub fn to_json(&self, format: ProfileFormat) -> Value {
        let docker = format == ProfileFormat::Docker;
        let mut top = Map::new();
        if docker {
            top.insert("comment".into(), Value::String(self.summary()));
        }
        top.insert("defaultAction".into(), json!("SCMP_ACT_ERRNO"));
        top.insert("defaultErrnoRet".into(), json!(DEFAULT_ERRNO.0));
        top.insert(
            "architectures".into(),
            json!(self
                .arches
                .iter()
                .map(|&a| scmp_arch(a))
                .collect::<Vec<_>>()),
        );
        // A reason is written once, on the first entry that carries it.
        let mut said = std::collections::BTreeSet::new();
        let syscalls: Vec<Value> = self
            .entries
            .iter()
            .map(|e| {
                let mut m = Map::new();
                m.insert("names".into(), json!(e.names));
                match e.action {
                    Action::Allow => {
                        m.insert("action".into(), json!("SCMP_ACT_ALLOW"));
                    }
                    Action::Errno(n) => {
                        m.insert("action".into(), json!("SCMP_ACT_ERRNO"));
                        m.insert("errnoRet".into(), json!(n.0));
                    }
                }
                if !e.args.is_empty() {
                    let args: Vec<Value> = e
                        .args
                        .iter()
                        .map(|c| {
                            json!({
                                "index": c.index,
                                "value": c.mask,
                                "valueTwo": c.value,
                                "op": "SCMP_CMP_MASKED_EQ",
                            })
                        })
                        .collect();
                    m.insert("args".into(), Value::Array(args));
                }
                if docker && !e.comment.is_empty() {
                    let c = match e.action {
                        Action::Allow if e.args.is_empty() => String::new(),
                        Action::Allow => format!("allowed case of: {}", e.comment),
                        Action::Errno(n) => format!("{}: {}", errno_name(n), e.comment),
                    };
                    if !c.is_empty() && said.insert(c.clone()) {
                        m.insert("comment".into(), Value::String(c));
                    }
                }
                Value::Object(m)
            })
            .collect();
        top.insert("syscalls".into(), Value::Array(syscalls));
        Value::Object(top)
    }
}

#[cfg(test)]
mod tests;
