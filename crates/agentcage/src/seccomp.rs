//! seccomp: the syscall allow-list of the `full` profile. The table, the BPF compiler and
//! the emulator live in the `agentcage-seccomp` crate (see its SYSCALLS.md for every
//! syscall and why); this module wires it into the launcher.
//!
//! `prepare` (parent) compiles the program; `apply` (child) installs it as the last step
//! before execve.

use agentcage_seccomp as sc;

use crate::error::{Error, SetupError, Unenforceable};
use crate::policy::{NetMode, Policy};

/// The compiled filter.
pub type Prepared = sc::PreparedFilter;

/// Compiles the filter (parent side).
pub(crate) fn prepare(
    policy: &Policy,
    enforcement: &mut Vec<(String, String)>,
) -> Result<Prepared, Error> {
    // Socket families are the same in every network mode, and consistent with `--net
    // allow`: the table allows AF_INET/AF_INET6 (stream and datagram: the egress listeners
    // and the DNS stub answer there, UDP elsewhere routes nowhere), refuses SOCK_PACKET,
    // AF_PACKET and every other family, and SCTP/MPTCP (IPPROTO_SCTP, IPPROTO_MPTCP);
    // SOCK_RAW needs CAP_NET_RAW, which `full` drops. With `--net allow` a Fast Open connect
    // lands on the same captured listeners as connect(2), so no TCP guard is needed there.
    let opts = sc::FilterOptions {
        spec_mitigation: policy.seccomp.spec_mitigation,
        // Landlock's TCP rules guard the host's network only with --net host; in the
        // sandbox's own namespace a Fast Open connect reaches only its own loopback.
        tcp_guards: policy.landlock.restrict_net && policy.net == NetMode::Host,
    };
    let p = sc::prepare(&opts).map_err(|e| Error::Unenforceable {
        profile: policy.profile.name().into(),
        cause: Unenforceable::Seccomp(e),
        hint: None,
    })?;
    enforcement.push((
        "seccomp".into(),
        format!(
            "allow-list filter, {} instructions, foreign arches and x32 killed, unknown syscalls ENOSYS, set-id modes EPERM{}{}",
            p.program().len(),
            if opts.tcp_guards { ", TCP Fast Open EOPNOTSUPP" } else { "" },
            if opts.spec_mitigation { ", speculation mitigation kept" } else { "" }
        ),
    ));
    Ok(p)
}

/// Installs the filter on the calling thread.
///
/// Runs in the child after clone: async-signal-safe only.
/// With `--events` (a `run`), the events variant and its listener: `events::seccomp`.
pub(crate) fn apply(p: &Prepared) -> Result<(), SetupError> {
    crate::events::seccomp::install(p)
}
