//! Landlock: the filesystem allow-list matching the composed root, and in `full` the TCP
//! port and scope restrictions. The mechanics (ABI negotiation, alloc-free apply) live in
//! the `agentcage-landlock` crate; this module decides *what* is allowed.
//!
//! `prepare` (parent) builds the rule list from the policy; `apply` (child, after
//! pivot_root and no_new_privs, before the capability drop) restricts the command.

use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use agentcage_landlock as ll;
use agentcage_landlock::{Access, Rule};

use crate::error::{Error, SetupError, Step, Unenforceable};
use crate::policy::{Policy, Profile};
use crate::rootfs::{self, Op, PreparedRootfs};
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
///
/// `plan`: with a mount namespace, the mount plan of the composed root. The system dirs are
/// then taken from it rather than asked of the host again, and paths it makes as directories
/// are marked [`Rule::dir`] (a hint that saves the child an fstat per rule; the rights do not
/// depend on it).
pub fn rules(
    policy: &Policy,
    home: &Path,
    mount_ns: bool,
    self_exe: Option<&Path>,
    etc: EtcAccess,
    plan: Option<&PreparedRootfs>,
) -> Vec<Rule> {
    let nested = policy.profile == Profile::Nested;
    let planned = plan.map(system_dir_ops);
    let mut r: Vec<Rule> = rootfs::SYSTEM_DIRS
        .iter()
        .enumerate()
        .filter_map(|(i, d)| system_dir_rule(d, planned.as_ref().map(|p| p[i])))
        .collect();
    if mount_ns {
        // Listing and reading "/" of the composed root exposes nothing the policy did not
        // put there, and covers /etc, /proc and /dev (rules are hierarchical). Without a
        // mount namespace "/" is the host's root: then only those three are readable.
        r.push(Rule::new("/", Access::ReadOnly).dir());
    } else if etc == EtcAccess::WorldReadable {
        // The host's /etc: only what every user may read (as uid 0 without capabilities the
        // sandbox would otherwise read root's 0600/0640 files: shadow, ssh host keys).
        r.extend(world_readable_rules(Path::new("/etc")));
        r.push(Rule::new("/proc", Access::ReadOnly).dir());
        r.push(Rule::new("/dev", Access::ReadOnly).dir());
    } else {
        r.push(Rule::new("/etc", Access::ReadOnly).dir());
        r.push(Rule::new("/proc", Access::ReadOnly).dir());
        r.push(Rule::new("/dev", Access::ReadOnly).dir());
    }
    if mount_ns {
        // The composed /dev holds only the harmless nodes, pts and shm: one read/write/ioctl
        // rule for all of it (no create/remove: nothing can be added to /dev).
        r.push(Rule::new("/dev", Access::DevRw).dir());
    } else {
        // The host's /dev: only the nodes that need it.
        for n in rootfs::DEV_NODES {
            r.push(Rule::new(format!("/dev/{n}"), Access::DevRw));
        }
        if !nested {
            // Nested: the command's pty is opened before Landlock applies; the host's other
            // terminals (the caller's among them) stay closed to it.
            r.push(Rule::new("/dev/pts", Access::DevRw).dir());
        }
    }
    r.push(Rule::new("/dev/shm", Access::ReadWrite).dir());
    r.push(Rule::new("/tmp", Access::ReadWrite).dir());
    if mount_ns {
        // The home exists only in the composed root (without it, this would be the host's).
        r.push(Rule::new(home, Access::ReadWrite).dir());
        if self_exe.is_some() {
            r.push(Rule::new("/run/agentcage", Access::ReadExec).dir());
        }
    } else if let (true, Some(exe)) = (nested, self_exe) {
        // The agentcage binary itself (`agentcage probe` inside), where it is.
        r.push(Rule::new(exe, Access::ReadExec));
    }
    // The workspace is a canonical directory (the CLI checked it).
    r.push(
        Rule::new(
            &policy.workspace,
            if policy.controls.read_only {
                Access::ReadExec
            } else {
                Access::ReadWrite
            },
        )
        .dir(),
    );
    if mount_ns {
        // `--tmpfs` directories (fresh, the sandbox's own).
        for t in &policy.controls.tmpfs {
            r.push(Rule::new(t, Access::ReadWrite).dir());
        }
        for (_, dst, writable) in &policy.controls.binds {
            let rule = Rule::new(
                dst,
                if *writable {
                    Access::ReadWrite
                } else {
                    Access::ReadExec
                },
            );
            r.push(hint_from_plan(rule, plan));
        }
    }
    for b in &policy.binds {
        let rule = Rule::new(
            &b.path,
            if b.writable {
                Access::ReadWrite
            } else {
                Access::ReadExec
            },
        );
        r.push(if b.fresh_placeholder == Some(true) {
            rule.dir()
        } else if mount_ns {
            hint_from_plan(rule, plan)
        } else {
            rule
        });
    }
    r
}

/// The rule for system directory `d`, if it needs one. A system dir that is a symlink into
/// /usr (merged-/usr hosts: /bin -> usr/bin) is covered by the /usr rule: one rule fewer to
/// open and add per run. One that is absent from the composed root gets none (it would only
/// be skipped as missing in the child).
///
/// `planned`: with a mount namespace, what the mount plan makes at `d` and at /usr
/// ([`system_dir_ops`]). The plan already looked at every system dir on the host (it binds a
/// directory, replicates a symlink, skips what is absent): its answers are used instead of
/// asking the host again. Without one (no mount namespace) the host's paths are the rules'.
fn system_dir_rule(d: &str, planned: Option<(Option<&Op>, bool)>) -> Option<Rule> {
    let rule = Rule::new(d, Access::ReadExec).dir();
    if d == "/usr" {
        return Some(rule);
    }
    let (link, usr_plain) = match planned {
        Some((op, usr_plain)) => match op {
            // Nothing at `d` in the composed root (a fresh tmpfs holding only what the plan
            // makes): the child would find it missing.
            None => return None,
            Some(Op::Symlink { target, .. }) => (
                PathBuf::from(std::ffi::OsStr::from_bytes(target.as_bytes())),
                usr_plain,
            ),
            Some(_) => return Some(rule),
        },
        None => match std::fs::read_link(d) {
            Ok(t) => (t, false),
            Err(_) => return Some(rule),
        },
    };
    (!link_into_usr(d, &link, usr_plain)).then_some(rule)
}

/// For each of [`rootfs::SYSTEM_DIRS`], the first step of the plan that makes it, and whether
/// /usr is bound as a directory (then the host's /usr is not a symlink: the plan replicates
/// those). One pass; a step deeper than the top level is rejected by its length.
fn system_dir_ops(plan: &PreparedRootfs) -> [(Option<&Op>, bool); SYSTEM_DIR_COUNT] {
    let longest = rootfs::SYSTEM_DIRS
        .iter()
        .map(|d| d.len())
        .max()
        .unwrap_or(0);
    let mut at: [Option<&Op>; SYSTEM_DIR_COUNT] = [None; SYSTEM_DIR_COUNT];
    let mut usr_bound = false;
    for op in &plan.ops {
        let t = op.target().to_bytes();
        if t.len() > longest {
            continue;
        }
        if let Some(i) = rootfs::SYSTEM_DIRS.iter().position(|d| d.as_bytes() == t) {
            // The first step makes the path (a mount point's mkdir comes before its bind).
            at[i].get_or_insert(op);
            usr_bound |= t == b"/usr" && matches!(op, Op::Bind { .. });
        }
    }
    let usr_plain = usr_bound
        && rootfs::SYSTEM_DIRS
            .iter()
            .position(|d| *d == "/usr")
            .is_some_and(|i| !matches!(at[i], Some(Op::Symlink { .. })));
    at.map(|op| (op, usr_plain))
}

const SYSTEM_DIR_COUNT: usize = rootfs::SYSTEM_DIRS.len();

/// Whether the symlink at top-level `link` (text `text`) resolves into /usr, exactly as
/// `canonicalize(link).starts_with("/usr")` says, in one readlink for the common
/// `usr/<name>` form: realpath reads each component of `/usr/<name>`; when neither is a
/// symlink (readlink: EINVAL) the canonical path is `/usr/<name>` itself, and when one is
/// missing or unreadable realpath fails (the rule stays). `usr_plain`: /usr is known not to
/// be a symlink (the plan bound it as a directory). Any other form asks realpath.
fn link_into_usr(link: &str, text: &Path, usr_plain: bool) -> bool {
    let canonical = || std::fs::canonicalize(link).is_ok_and(|t| t.starts_with("/usr"));
    let rel = text.strip_prefix("/").unwrap_or(text);
    let mut comps = rel.components();
    let (Some(Component::Normal(first)), Some(Component::Normal(name)), None) =
        (comps.next(), comps.next(), comps.next())
    else {
        return canonical();
    };
    // `Path::components` drops "." and repeated or trailing "/", which realpath also
    // ignores; ".." is a Component::ParentDir, handled by realpath above.
    if first != "usr" {
        return canonical();
    }
    let not_symlink = |p: &Path| match std::fs::read_link(p) {
        Ok(_) => None,
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Some(true),
        Err(_) => Some(false),
    };
    if !usr_plain {
        match not_symlink(Path::new("/usr")) {
            Some(true) => {}
            Some(false) => return false,
            None => return canonical(),
        }
    }
    match not_symlink(&Path::new("/usr").join(name)) {
        Some(plain) => plain,
        None => canonical(),
    }
}

/// `rule` with [`Rule::expect_dir`] when the plan makes a directory at its path (a mount point
/// it created with mkdir, or a tmpfs). Only a hint: the child checks the kind it finds.
fn hint_from_plan(rule: Rule, plan: Option<&PreparedRootfs>) -> Rule {
    let path = rule.path.as_os_str().as_bytes();
    let dir = plan.is_some_and(|p| {
        p.ops.iter().any(|op| match op {
            Op::Mkdir { path: m, .. } => m.to_bytes() == path,
            Op::Tmpfs { target, .. } => target.to_bytes() == path,
            _ => false,
        })
    });
    if dir {
        rule.dir()
    } else {
        rule
    }
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
        (true, _) => vec![Rule::new(dir, Access::ReadOnly).dir()],
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
                (true, _) => rules.push(Rule::new(p, Access::ReadOnly).dir()),
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
    /// The mount plan of the composed root (with a mount namespace).
    pub plan: Option<&'a PreparedRootfs>,
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
        rules: rules(
            policy,
            view.home,
            view.mount_ns,
            view.self_exe,
            view.etc,
            view.plan,
        ),
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

    /// The filter as it was before it used the plan: the rule stays unless `d` is a symlink
    /// whose canonical target is in /usr.
    fn kept_by_realpath(d: &str) -> bool {
        d == "/usr"
            || !std::fs::symlink_metadata(d).is_ok_and(|m| m.file_type().is_symlink())
            || !std::fs::canonicalize(d).is_ok_and(|t| t.starts_with("/usr"))
    }

    /// The system dir rules, from the host or from the plan, are those the realpath filter
    /// gave, less (with a plan) the dirs absent from the host, which the composed root lacks.
    #[test]
    fn system_dir_rules_match_realpath() {
        let plan = rootfs::prepare(&rootfs::tests::spec("/tmp/ws"));
        let ops = system_dir_ops(&plan);
        let usr_is_dir = std::fs::symlink_metadata("/usr").is_ok_and(|m| m.is_dir());
        assert!(ops.iter().all(|(_, plain)| *plain == usr_is_dir));
        for d in rootfs::SYSTEM_DIRS {
            let old = kept_by_realpath(d);
            assert_eq!(system_dir_rule(d, None).is_some(), old, "{d} (host)");
            let exists = std::fs::symlink_metadata(d).is_ok();
            let i = rootfs::SYSTEM_DIRS.iter().position(|x| x == d).unwrap();
            assert_eq!(
                system_dir_rule(d, Some(system_dir_ops(&plan)[i])).is_some(),
                old && exists,
                "{d} (plan)"
            );
            if let Some(r) = system_dir_rule(d, None) {
                assert!(r.expect_dir && r.access == Access::ReadExec, "{d}");
            }
        }
    }

    /// The one-readlink check agrees with realpath on every form of link text: the plain
    /// `usr/<name>` form (present or not), others (`.`, `..`, deeper, outside /usr) go to
    /// realpath.
    #[test]
    fn link_into_usr_agrees_with_realpath() {
        let d = std::env::temp_dir().join(format!("agentcage-ll-usr-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        let usr_child = std::fs::read_dir("/usr")
            .unwrap()
            .flatten()
            .find(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .map(|e| e.path())
            .expect("a directory in /usr");
        let texts = [
            usr_child.display().to_string(),
            "/usr".into(),
            "/usr/agentcage-does-not-exist".into(),
            "/usr/./lib".into(),
            "/usr/../etc".into(),
            "/usr/lib/..".into(),
            "/etc".into(),
            "/usr//lib/".into(),
        ];
        for (i, t) in texts.iter().enumerate() {
            let link = d.join(format!("l{i}"));
            std::os::unix::fs::symlink(t, &link).unwrap();
            let link = link.to_str().unwrap();
            let want = std::fs::canonicalize(link).is_ok_and(|c| c.starts_with("/usr"));
            for usr_plain in [false, true] {
                assert_eq!(
                    link_into_usr(link, Path::new(t), usr_plain),
                    want,
                    "{t} (usr_plain {usr_plain})"
                );
            }
        }
        let _ = std::fs::remove_dir_all(&d);
    }

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
