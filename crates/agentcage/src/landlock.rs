//! Landlock: the filesystem allow-list matching the composed root, and in `full` the TCP
//! port and scope restrictions. The mechanics (ABI negotiation, alloc-free apply) live in
//! the `agentcage-landlock` crate; this module decides *what* is allowed.
//!
//! `prepare` (parent) builds the rule list from the policy; `apply` (child, after
//! pivot_root and no_new_privs, before the capability drop) restricts the command.

use std::path::Path;

use agentcage_landlock as ll;
use agentcage_landlock::{Access, Rule};

use crate::error::{Error, SetupError, Step};
use crate::policy::Policy;
use crate::rootfs;
use crate::sys::Errno;

/// The prepared ruleset.
pub type Prepared = ll::Prepared;

/// The allow-list of a policy (inside paths): read/execute on the system dirs, read on the
/// composed root (so on /etc, /proc and /dev; without a mount namespace on those three only),
/// everything on the workspace, /tmp, /dev/shm, the home and `--rw` paths, read/write on the
/// /dev nodes, nothing else.
pub fn rules(policy: &Policy, home: &Path, mount_ns: bool, self_exe: bool) -> Vec<Rule> {
    // A system dir that is a symlink into /usr (merged-/usr hosts: /bin -> usr/bin) is
    // covered by the /usr rule: one rule fewer to open and add per run.
    let mut r: Vec<Rule> = rootfs::SYSTEM_DIRS
        .iter()
        .filter(|d| {
            **d == "/usr"
                || !std::fs::symlink_metadata(d).is_ok_and(|m| m.file_type().is_symlink())
                || !std::fs::canonicalize(d).is_ok_and(|t| t.starts_with("/usr"))
        })
        .map(|d| Rule::new(*d, Access::ReadExec))
        .collect();
    if mount_ns {
        // Listing and reading "/" of the composed root exposes nothing the policy did not
        // put there, and covers /etc, /proc and /dev (rules are hierarchical). Without a
        // mount namespace "/" is the host's root: then only those three are readable.
        r.push(Rule::new("/", Access::ReadOnly));
    } else {
        r.push(Rule::new("/etc", Access::ReadOnly));
        r.push(Rule::new("/proc", Access::ReadOnly));
        r.push(Rule::new("/dev", Access::ReadOnly));
    }
    if mount_ns {
        // The composed /dev holds only the harmless nodes, pts and shm: one read/write/ioctl
        // rule for all of it (no create/remove: nothing can be added to /dev).
        r.push(Rule::new("/dev", Access::DevRw));
    } else {
        // The host's /dev: only the nodes that need it.
        for n in rootfs::DEV_NODES {
            r.push(Rule::new(format!("/dev/{n}"), Access::DevRw));
        }
        r.push(Rule::new("/dev/pts", Access::DevRw));
    }
    r.push(Rule::new("/dev/shm", Access::ReadWrite));
    r.push(Rule::new("/tmp", Access::ReadWrite));
    if mount_ns {
        // The home exists only in the composed root (without it, this would be the host's).
        r.push(Rule::new(home, Access::ReadWrite));
        if self_exe {
            r.push(Rule::new("/run/agentcage", Access::ReadExec));
        }
    }
    r.push(Rule::new(&policy.workspace, Access::ReadWrite));
    for b in &policy.binds {
        r.push(Rule::new(
            &b.path,
            if b.writable {
                Access::ReadWrite
            } else {
                Access::ReadExec
            },
        ));
    }
    r
}

/// Builds the ruleset data; fails closed when the kernel cannot enforce it, unless the
/// policy says best effort (then the gap is reported in `enforcement`).
pub(crate) fn prepare(
    policy: &Policy,
    home: &Path,
    mount_ns: bool,
    self_exe: bool,
    egress_ports: &[u16],
    enforcement: &mut Vec<(String, String)>,
    degraded: &mut Vec<(String, String)>,
) -> Result<Option<Prepared>, Error> {
    // `--net allow`: the command reaches the egress engine's listeners in its own network
    // namespace (the engine decides; Landlock keeps every other port refused).
    let mut tcp_connect = policy.landlock.tcp_connect.clone();
    if policy.landlock.restrict_net {
        tcp_connect.extend_from_slice(egress_ports);
    }
    tcp_connect.sort_unstable();
    tcp_connect.dedup();
    let spec = ll::Spec {
        rules: rules(policy, home, mount_ns, self_exe),
        restrict_tcp: policy.landlock.restrict_net,
        tcp_bind: policy.landlock.tcp_bind.clone(),
        tcp_connect,
        scope_abstract_unix: policy.landlock.scope,
        scope_signal: policy.landlock.scope,
        log_denials: false,
        requirement: if policy.best_effort {
            ll::Requirement::BestEffort
        } else {
            ll::Requirement::HardRequirement
        },
    };
    let host = ll::detect_abi();
    if let Err(why) = &host {
        if !policy.best_effort {
            return Err(Error::Unenforceable {
                profile: policy.profile.name().into(),
                what: format!("Landlock: {why}"),
                hint: Some(
                    "pass --best-effort to run without Landlock (reported, never silent)".into(),
                ),
            });
        }
    }
    let prepared = ll::prepare(&spec, &host).map_err(|e| Error::Unenforceable {
        profile: policy.profile.name().into(),
        what: format!("Landlock: {e}"),
        hint: Some("pass --best-effort to run with what this kernel supports".into()),
    })?;
    // One line per right: enforced, partially, or not (and which ABI would bring it).
    let report = prepared.enforcement();
    // What the caller must hear about even without -v: Landlock missing altogether, or a
    // requested network/scope restriction this kernel lacks (--best-effort runs only get
    // here; otherwise prepare failed above). Filesystem rights newer than the kernel are not
    // listed: they govern features this kernel does not have.
    if report.overall() == ll::Overall::NotEnforced {
        let summary = report.summary();
        let text = summary.strip_prefix("landlock: ").unwrap_or(&summary);
        degraded.push(("landlock".into(), text.to_string()));
    } else {
        for (right, why) in report.missing() {
            if !matches!(right.kind(), ll::abi::Kind::Fs(_)) {
                degraded.push((
                    "landlock".into(),
                    format!("{}: not enforced: {why}", right.name()),
                ));
            }
        }
    }
    for line in report.to_string().lines().filter(|l| !l.trim().is_empty()) {
        enforcement.push(("landlock".into(), line.trim().to_string()));
    }
    if prepared.is_noop() {
        return Ok(None);
    }
    Ok(Some(prepared))
}

/// Restricts the calling process. The report's sub-step is the landlock crate's
/// [`ll::ApplyStep`], its index the rule ([`ll::ApplyError::NO_INDEX`]: none).
///
/// Runs in the child after clone: async-signal-safe only.
pub(crate) fn apply(p: &Prepared) -> Result<(), SetupError> {
    ll::apply(p)
        .map(drop)
        .map_err(|e| SetupError::at(Step::Landlock, e.step as u32, e.index, Errno(e.errno)))
}

/// The step of a failed [`apply`].
pub(crate) fn describe(p: Option<&Prepared>, sub: u32, index: u32) -> String {
    let mut b = [0u8; ll::ApplyError::WIRE_SIZE];
    b[0] = u8::try_from(sub).unwrap_or(u8::MAX);
    b[4..8].copy_from_slice(&index.to_ne_bytes());
    match (p, ll::ApplyError::from_bytes(&b)) {
        (Some(p), Some(e)) => format!("landlock: {}", p.explain(e)),
        _ => "landlock".into(),
    }
}
