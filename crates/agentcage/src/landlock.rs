//! Landlock: the filesystem allow-list matching the composed root, and in `full` the TCP
//! port and scope restrictions. The mechanics (ABI negotiation, alloc-free apply) live in
//! the `agentcage-landlock` crate; this module decides *what* is allowed.
//!
//! `prepare` (parent) builds the rule list from the policy; `apply` (child, after
//! pivot_root and no_new_privs, before the capability drop) restricts the command.

use std::path::Path;

use agentcage_landlock as ll;
use agentcage_landlock::{Access, Rule};

use crate::error::{Error, SetupError, Step, Unenforceable};
use crate::policy::{Policy, Profile};
use crate::rootfs;
use crate::sys::Errno;

/// The prepared ruleset.
pub type Prepared = ll::Prepared;

/// The allow-list of a policy (inside paths): read/execute on the system dirs, read on the
/// composed root (so on /etc, /proc and /dev; without a mount namespace on those three only),
/// everything on the workspace, /tmp, /dev/shm, the home and `--rw` paths, read/write on the
/// /dev nodes, nothing else.
///
/// `etc`: without a mount namespace, whether /etc is read whole or only its world-readable
/// entries (the nested rung, when the command keeps uid 0 or supplementary groups: no DAC
/// check would keep root's or a group's files closed then).
pub fn rules(
    policy: &Policy,
    home: &Path,
    mount_ns: bool,
    self_exe: Option<&Path>,
    etc: EtcAccess,
) -> Vec<Rule> {
    let nested = policy.profile == Profile::Nested;
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
    } else if etc == EtcAccess::WorldReadable {
        // The host's /etc: only what every user may read (as uid 0 without capabilities the
        // sandbox would otherwise read root's 0600/0640 files: shadow, ssh host keys).
        r.extend(world_readable_rules(Path::new("/etc")));
        r.push(Rule::new("/proc", Access::ReadOnly));
        r.push(Rule::new("/dev", Access::ReadOnly));
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
        if !nested {
            // Nested: the command's pty is opened before Landlock applies; the host's other
            // terminals (the caller's among them) stay closed to it.
            r.push(Rule::new("/dev/pts", Access::DevRw));
        }
    }
    r.push(Rule::new("/dev/shm", Access::ReadWrite));
    r.push(Rule::new("/tmp", Access::ReadWrite));
    if mount_ns {
        // The home exists only in the composed root (without it, this would be the host's).
        r.push(Rule::new(home, Access::ReadWrite));
        if self_exe.is_some() {
            r.push(Rule::new("/run/agentcage", Access::ReadExec));
        }
    } else if let (true, Some(exe)) = (nested, self_exe) {
        // The agentcage binary itself (`agentcage probe` inside), where it is.
        r.push(Rule::new(exe, Access::ReadExec));
    }
    r.push(Rule::new(
        &policy.workspace,
        if policy.controls.read_only {
            Access::ReadExec
        } else {
            Access::ReadWrite
        },
    ));
    if mount_ns {
        // `--tmpfs` directories (fresh, the sandbox's own).
        for t in &policy.controls.tmpfs {
            r.push(Rule::new(t, Access::ReadWrite));
        }
        for (_, dst, writable) in &policy.controls.binds {
            r.push(Rule::new(
                dst,
                if *writable {
                    Access::ReadWrite
                } else {
                    Access::ReadExec
                },
            ));
        }
    }
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

/// How much of the host's /etc a run without a mount namespace may read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EtcAccess {
    /// All of it (file permissions decide).
    Whole,
    /// Only the world-readable entries (one walk of /etc per run, about 1 ms per 1000
    /// entries).
    WorldReadable,
}

/// Rules for the world-readable entries of `dir` (a host directory, /etc), in one walk: a
/// directory whose whole tree is world-readable gets one rule, else its world-readable parts
/// get theirs. A symlink below the top is not followed: Landlock rules follow inodes, so its
/// target is readable only where a rule covers it anyway. At the top, a symlink gets a rule
/// on its target when that is world-readable (a directory target only inside /etc or /usr:
/// it could name "/"). Bounded: 8 levels, 20000 entries; a deeper or further part gets no
/// rule.
fn world_readable_rules(dir: &Path) -> Vec<Rule> {
    let mut budget = 20_000;
    match readable_tree(dir, 0, &mut budget) {
        (true, _) => vec![Rule::new(dir, Access::ReadOnly)],
        (false, rules) => rules,
    }
}

/// Whether `m` is readable (and, for a directory, searchable) by every user.
fn world_readable(m: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    let need = if m.is_dir() { 0o005 } else { 0o004 };
    m.mode() & need == need
}

/// One directory of [`world_readable_rules`]: (its whole tree is world-readable, the rules
/// of its readable parts when it is not).
fn readable_tree(dir: &Path, depth: usize, budget: &mut usize) -> (bool, Vec<Rule>) {
    let mut rules = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return (false, rules);
    };
    let mut clean = true;
    for e in rd.flatten() {
        if *budget == 0 {
            clean = false;
            break;
        }
        *budget -= 1;
        let Ok(ft) = e.file_type() else {
            clean = false;
            continue;
        };
        let p = e.path();
        if ft.is_symlink() {
            if depth == 0 {
                let target_ok = std::fs::metadata(&p).is_ok_and(|m| {
                    world_readable(&m)
                        && (!m.is_dir()
                            || std::fs::canonicalize(&p)
                                .is_ok_and(|t| t.starts_with("/etc") || t.starts_with("/usr")))
                });
                if target_ok {
                    rules.push(Rule::new(p, Access::ReadOnly));
                }
            }
            continue;
        }
        let Ok(md) = e.metadata() else {
            clean = false;
            continue;
        };
        if !world_readable(&md) {
            clean = false;
            continue;
        }
        if md.is_dir() {
            if depth >= 8 {
                clean = false;
                continue;
            }
            match readable_tree(&p, depth + 1, budget) {
                (true, _) => rules.push(Rule::new(p, Access::ReadOnly)),
                (false, r) => {
                    clean = false;
                    rules.extend(r);
                }
            }
        } else {
            rules.push(Rule::new(p, Access::ReadOnly));
        }
    }
    (clean, rules)
}

/// What the command sees, which decides the path rules (see [`rules`]).
pub(crate) struct View<'a> {
    /// The command's HOME.
    pub home: &'a Path,
    /// Whether the command is in the composed root (else: host paths).
    pub mount_ns: bool,
    /// The launcher's own binary, when the command may execute it.
    pub self_exe: Option<&'a Path>,
    /// How much of /etc is readable.
    pub etc: EtcAccess,
}

/// Builds the ruleset data; fails closed when the kernel cannot enforce it, unless the
/// policy says best effort (then the gap is reported in `enforcement`). `egress_ports`: the
/// `--net allow` listeners' ports, which the command may connect to.
pub(crate) fn prepare(
    policy: &Policy,
    view: View<'_>,
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
        rules: rules(policy, view.home, view.mount_ns, view.self_exe, view.etc),
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
                cause: Unenforceable::LandlockUnavailable(*why),
                hint: Some(
                    "pass --best-effort to run without Landlock (reported, never silent)".into(),
                ),
            });
        }
    }
    let prepared = ll::prepare(&spec, &host).map_err(|e| Error::Unenforceable {
        profile: policy.profile.name().into(),
        cause: Unenforceable::Landlock(e),
        hint: Some("pass --best-effort to run with what this kernel supports".into()),
    })?;
    // One line per right: enforced, partially, or not (and which ABI would bring it).
    let report = prepared.enforcement();
    // What the caller must hear about even without -v: Landlock missing altogether, or a
    // requested network/scope restriction this kernel lacks (--best-effort runs only get
    // here; otherwise prepare failed above). Filesystem rights newer than the kernel are not
    // listed: they govern features this kernel does not have.
    if let Some(reason) = &report.unavailable {
        // (overall() is NotEnforced exactly when Landlock is unavailable.)
        degraded.push(("landlock".into(), format!("not enforced: {reason}")));
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// The nested rung's /etc rules: a fully readable directory is one rule, a directory
    /// holding a root-only file is split into its readable entries, and the root-only file,
    /// a root-only directory and a symlink out of the tree get none.
    #[test]
    fn world_readable_rules_leave_private_files_out() {
        let d = std::env::temp_dir().join(format!("agentcage-ll-etc-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        let mk = |p: &str, mode: u32, dir: bool| {
            let p = d.join(p);
            if dir {
                std::fs::create_dir_all(&p).unwrap();
            } else {
                std::fs::write(&p, "x").unwrap();
            }
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        };
        mk("", 0o755, true);
        mk("clean", 0o755, true);
        mk("clean/a", 0o644, false);
        mk("mixed", 0o755, true);
        mk("mixed/pub", 0o644, false);
        mk("mixed/key", 0o600, false);
        mk("private", 0o700, true);
        mk("shadow", 0o640, false);
        mk("passwd", 0o644, false);
        std::os::unix::fs::symlink("/", d.join("mixed/root-link")).unwrap();
        let mut got: Vec<String> = world_readable_rules(&d)
            .iter()
            .map(|r| r.path.strip_prefix(&d).unwrap().display().to_string())
            .collect();
        got.sort();
        let _ = std::fs::remove_dir_all(&d);
        assert_eq!(got, ["clean", "mixed/pub", "passwd"]);
    }
}
