//! Namespaces: the one table of clone flags, the id maps (parent side) and the child-side
//! steps (inside ids, hostname, loopback, the nested namespace that locks the mounts).
//!
//! Parent: [`clone_flags`], [`id_maps`], [`write_id_maps_from_parent`]. Child (pre-exec, no
//! allocation): [`apply_ids`], [`apply_uts_net`], [`lock_mounts`]. Each failure is a
//! [`SetupError`] of its own [`Step`]; [`describe_lock_mounts`] names its sub-steps.

use std::ffi::CString;

use crate::error::{Error, SetupError, Step, Unenforceable};
use crate::policy::{Layer, LayerSet, NetMode, Policy};
use crate::sys::{self, Errno};

/// Every namespace the launcher can create: its layer, its clone flag and the flag's name.
/// The cgroup namespace is last: it is unshared in the child after the cgroup attach, never
/// at clone (see [`clone_flags`]).
pub(crate) const NAMESPACES: [(Layer, libc::c_int, &str); 7] = [
    (Layer::UserNs, libc::CLONE_NEWUSER, "CLONE_NEWUSER"),
    (Layer::MountNs, libc::CLONE_NEWNS, "CLONE_NEWNS"),
    (Layer::PidNs, libc::CLONE_NEWPID, "CLONE_NEWPID"),
    (Layer::NetNs, libc::CLONE_NEWNET, "CLONE_NEWNET"),
    (Layer::IpcNs, libc::CLONE_NEWIPC, "CLONE_NEWIPC"),
    (Layer::UtsNs, libc::CLONE_NEWUTS, "CLONE_NEWUTS"),
    (Layer::CgroupNs, libc::CLONE_NEWCGROUP, "CLONE_NEWCGROUP"),
];

/// The clone flags of a run: every namespace layer on, except the network namespace with
/// `--net host` and the cgroup namespace (unshared later, see `child.rs`).
pub(crate) fn clone_flags(layers: LayerSet, net: NetMode) -> libc::c_ulong {
    NAMESPACES
        .iter()
        .filter(|(l, _, _)| *l != Layer::CgroupNs && layers.has(*l))
        .filter(|(l, _, _)| !(*l == Layer::NetNs && net == NetMode::Host))
        .fold(0, |acc, (_, f, _)| acc | *f as libc::c_ulong)
}

/// The namespaces of a run, as the parent prepared them.
pub(crate) struct PreparedNs {
    pub(crate) clone_flags: libc::c_ulong,
    /// With a user namespace: the maps the parent writes.
    pub(crate) id_maps: Option<IdMaps>,
    /// With a user namespace: the ids the child switches to.
    pub(crate) set_ids: Option<SetIds>,
}

/// Parent side: the clone flags, id maps and inside ids of `policy` for a caller with
/// effective ids `caller`.
///
/// # Errors
/// [`Error::Unenforceable`] for namespaces without a user namespace (never as host root).
pub(crate) fn prepare(
    policy: &Policy,
    caller: (u32, u32),
    enforcement: &mut Vec<(String, String)>,
) -> Result<PreparedNs, Error> {
    let layers = policy.layers;
    let as_root = caller.0 == 0;
    let clone_flags = clone_flags(layers, policy.net);
    if layers.has(Layer::NetNs) && policy.net == NetMode::Host {
        enforcement.push((
            "net-ns".into(),
            "OFF: --net host shares the host's network".into(),
        ));
    }
    let userns = layers.has(Layer::UserNs);
    if !userns && layers.any_namespace() {
        // Unprivileged, the other namespaces need the user namespace's capabilities; as root
        // they would not, but the command would then run as host root: never.
        return Err(Error::Unenforceable {
            profile: policy.profile.name().into(),
            cause: if as_root {
                Unenforceable::NamespacesAsRoot
            } else {
                Unenforceable::NamespacesNeedRoot
            },
            hint: None,
        });
    }
    let host = if as_root {
        (policy.host_uid, policy.host_gid)
    } else {
        caller
    };
    Ok(PreparedNs {
        clone_flags,
        id_maps: userns.then(|| id_maps(policy.uid, policy.gid, host, as_root)),
        set_ids: userns.then_some(SetIds {
            uid: policy.uid,
            gid: policy.gid,
            as_root,
        }),
    })
}

/// `CLONE_NEWUSER|CLONE_NEWNS|...` for messages; `SIGCHLD` when none.
pub(crate) fn clone_flag_names(flags: libc::c_ulong) -> String {
    let v: Vec<&str> = NAMESPACES
        .iter()
        .filter(|(_, f, _)| flags & *f as libc::c_ulong != 0)
        .map(|(_, _, n)| *n)
        .collect();
    if v.is_empty() {
        "SIGCHLD".into()
    } else {
        v.join("|")
    }
}

/// uid_map / setgroups / gid_map contents, written by the parent.
#[derive(Debug)]
pub(crate) struct IdMaps {
    pub(crate) uid_map: Vec<u8>,
    pub(crate) setgroups: Option<Vec<u8>>,
    pub(crate) gid_map: Vec<u8>,
}

/// The maps of the sandbox's user namespace: inside `uid`/`gid` is `host` outside.
/// Unprivileged callers must deny setgroups before writing gid_map; as root we keep it so the
/// child can drop root's supplementary groups.
pub(crate) fn id_maps(uid: u32, gid: u32, host: (u32, u32), as_root: bool) -> IdMaps {
    IdMaps {
        uid_map: format!("{} {} 1\n", uid, host.0).into_bytes(),
        setgroups: (!as_root).then(|| b"deny".to_vec()),
        gid_map: format!("{} {} 1\n", gid, host.1).into_bytes(),
    }
}

/// Parent side, while the child waits: writes the child's uid_map, setgroups and gid_map.
///
/// # Errors
/// [`Error::Setup`] naming the file and its content.
pub(crate) fn write_id_maps_from_parent(maps: &IdMaps, pid: libc::pid_t) -> Result<(), Error> {
    let write = |file: &str, data: &[u8]| -> Result<(), Error> {
        let path = format!("/proc/{pid}/{file}");
        std::fs::write(&path, data).map_err(|e| Error::Setup {
            step: format!("write {path} ({:?})", String::from_utf8_lossy(data).trim()),
            errno: Errno(e.raw_os_error().unwrap_or(libc::EIO)),
            hint: Some(
                "the user namespace id mapping was refused: check /etc/subuid is not needed \
                 (a single mapping of your own uid) and that no LSM restricts user namespaces"
                    .into(),
            ),
        })
    };
    write("uid_map", &maps.uid_map)?;
    if let Some(sg) = &maps.setgroups {
        write("setgroups", sg)?;
    }
    write("gid_map", &maps.gid_map)
}

/// The inside ids the child switches to (in a user namespace).
#[derive(Debug, Clone, Copy)]
pub(crate) struct SetIds {
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    /// The launcher is root: the child still carries root's supplementary groups.
    pub(crate) as_root: bool,
}

/// Child side: switch to the mapped inside ids, drop root's groups, and replace the session
/// keyring.
///
/// Runs in the child after clone: async-signal-safe only.
pub(crate) fn apply_ids(ids: &SetIds) -> Result<(), SetupError> {
    // As root the child still carries host uid 0 and root's groups: switch to the mapped
    // inside ids (host 65534 by default) and drop every supplementary group.
    sys::setresgid(ids.gid).map_err(|e| SetupError::new(Step::SetGid, 0, e))?;
    if ids.as_root {
        sys::setgroups_empty().map_err(|e| SetupError::new(Step::SetGroups, 0, e))?;
    }
    sys::setresuid(ids.uid).map_err(|e| SetupError::new(Step::SetUid, 0, e))?;
    // The session keyring is not namespaced: the caller's (and every key in it) would stay
    // readable and writable inside. A fresh anonymous one, owned by the sandbox user,
    // replaces it; the user keyrings are per user namespace already.
    sys::join_new_session_keyring().map_err(|e| SetupError::new(Step::SessionKeyring, 0, e))?;
    Ok(())
}

/// Child side: the hostname of a new UTS namespace and loopback of a new network namespace.
///
/// Runs in the child after clone: async-signal-safe only.
pub(crate) fn apply_uts_net(hostname: Option<&[u8]>, loopback: bool) -> Result<(), SetupError> {
    if let Some(h) = hostname {
        sys::sethostname(h).map_err(|e| SetupError::new(Step::Hostname, 0, e))?;
    }
    if loopback {
        sys::loopback_up().map_err(|e| SetupError::new(Step::Loopback, 0, e))?;
    }
    Ok(())
}

/// A nested user (and mount) namespace for a command that keeps its capabilities (ns-only,
/// or an ablation without the caps layer): copying the mount tree into a namespace owned by
/// a less privileged user namespace makes the kernel lock every mount (mount_namespaces(7)
/// "locked mounts"): read-only binds cannot be remounted read-write, masks over /proc and
/// nested binds cannot be unmounted, even by root in the nested namespace. The command maps
/// only its own ids, so the nested namespace needs no help from the launcher.
#[derive(Debug)]
pub(crate) struct LockMounts {
    /// "ID ID 1\n" for uid_map and gid_map (the command's ids, unchanged).
    pub(crate) uid_map: CString,
    pub(crate) gid_map: CString,
    /// CLONE_NEWUSER|CLONE_NEWNS, plus CLONE_NEWNET/CLONE_NEWUTS when the sandbox has them
    /// (created here instead of at clone, so the nested user namespace owns them).
    pub(crate) unshare_flags: libc::c_int,
    /// sethostname in the nested UTS namespace.
    pub(crate) hostname: Option<&'static [u8]>,
    /// Bring up lo in the nested network namespace.
    pub(crate) loopback: bool,
}

impl LockMounts {
    /// Parent side: the nested namespace for ids `uid`/`gid`; moves the network and UTS
    /// namespaces (and their hostname/loopback steps) out of `clone_flags` into it. With
    /// `egress` (`--net allow`) the network namespace stays the init's: it holds the egress
    /// routes and listeners the init set up, and the command gets no capability over it.
    pub(crate) fn prepare(
        uid: u32,
        gid: u32,
        egress: bool,
        clone_flags: &mut libc::c_ulong,
        hostname: &mut Option<&'static [u8]>,
        loopback: &mut bool,
    ) -> LockMounts {
        let mut own = libc::CLONE_NEWUTS as libc::c_ulong;
        if !egress {
            own |= libc::CLONE_NEWNET as libc::c_ulong;
        }
        let moved = *clone_flags & own;
        *clone_flags &= !own;
        let net_moved = moved & libc::CLONE_NEWNET as libc::c_ulong != 0;
        LockMounts {
            uid_map: CString::new(format!("{uid} {uid} 1\n")).unwrap_or_default(),
            gid_map: CString::new(format!("{gid} {gid} 1\n")).unwrap_or_default(),
            unshare_flags: (libc::CLONE_NEWUSER | libc::CLONE_NEWNS) | moved as libc::c_int,
            hostname: hostname.take(),
            loopback: net_moved && std::mem::take(loopback),
        }
    }
}

/// [`Step::LockMounts`] sub-steps.
const LOCK_UNSHARE: u32 = 0;
const LOCK_SETGROUPS: u32 = 1;
const LOCK_UID_MAP: u32 = 2;
const LOCK_GID_MAP: u32 = 3;

/// Child side (the command's process): enters the nested user+mount namespace so every mount
/// of the composed root is locked (a command that keeps its capabilities cannot remount,
/// unmount or move them).
///
/// Runs in the child after clone: async-signal-safe only.
pub(crate) fn lock_mounts(l: &LockMounts) -> Result<(), SetupError> {
    let fail = |sub| move |e| SetupError::at(Step::LockMounts, sub, 0, e);
    sys::unshare(l.unshare_flags).map_err(fail(LOCK_UNSHARE))?;
    // We are a fork of the non-dumpable init: our /proc/self files belong to the host's
    // root until we are dumpable. Only for the three writes (nothing else of the sandbox runs
    // yet); execve decides dumpability afterwards anyway.
    let _ = sys::prctl(libc::PR_SET_DUMPABLE, 1, 0, 0, 0);
    // An unprivileged map of one's own ids needs setgroups denied first (user_namespaces(7)).
    let r = write_proc(c"/proc/self/setgroups", b"deny")
        .map_err(fail(LOCK_SETGROUPS))
        .and_then(|()| {
            write_proc(c"/proc/self/uid_map", l.uid_map.as_bytes()).map_err(fail(LOCK_UID_MAP))
        })
        .and_then(|()| {
            write_proc(c"/proc/self/gid_map", l.gid_map.as_bytes()).map_err(fail(LOCK_GID_MAP))
        });
    let _ = sys::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0);
    r?;
    apply_uts_net(l.hostname, l.loopback)
}

/// The step of a failed child-side step of this module; `ids`: the inside uid and gid.
pub(crate) fn describe(r: SetupError, ids: (u32, u32), l: Option<&LockMounts>) -> String {
    match r.step {
        Step::SetGid => format!("setresgid({})", ids.1),
        Step::SetGroups => "setgroups(0, NULL) (drop the launcher's supplementary groups)".into(),
        Step::SetUid => format!("setresuid({})", ids.0),
        Step::SessionKeyring => "keyctl(KEYCTL_JOIN_SESSION_KEYRING, NULL) (a fresh session \
                                 keyring instead of the caller's)"
            .into(),
        Step::Hostname => "sethostname(agentcage)".into(),
        Step::Loopback => "bring up the loopback interface".into(),
        _ => describe_lock_mounts(l, r.sub),
    }
}

/// The step of a failed [`lock_mounts`], by its sub-step.
fn describe_lock_mounts(l: Option<&LockMounts>, sub: u32) -> String {
    match sub {
        LOCK_UNSHARE => format!(
            "unshare({}) to lock the mounts",
            clone_flag_names(l.map_or(0, |l| l.unshare_flags as libc::c_ulong))
        ),
        LOCK_SETGROUPS => "write /proc/self/setgroups (deny) in the nested user namespace".into(),
        LOCK_UID_MAP => "write /proc/self/uid_map of the nested user namespace".into(),
        _ => "write /proc/self/gid_map of the nested user namespace".into(),
    }
}

fn write_proc(path: &std::ffi::CStr, data: &[u8]) -> Result<(), Errno> {
    let fd = sys::open(path, libc::O_WRONLY, 0)?;
    let r = sys::write_all(fd, data);
    sys::close(fd);
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describes_its_steps() {
        let r = |step, sub| SetupError::at(step, sub, 0, Errno(libc::EPERM));
        assert_eq!(
            describe(r(Step::SessionKeyring, 0), (0, 0), None),
            "keyctl(KEYCTL_JOIN_SESSION_KEYRING, NULL) (a fresh session keyring instead of the \
             caller's)"
        );
        assert_eq!(
            describe(r(Step::SetGid, 0), (1000, 1001), None),
            "setresgid(1001)"
        );
        assert_eq!(
            describe(r(Step::LockMounts, LOCK_UNSHARE), (0, 0), None),
            "unshare(SIGCHLD) to lock the mounts"
        );
        assert_eq!(
            describe(r(Step::LockMounts, LOCK_GID_MAP), (0, 0), None),
            "write /proc/self/gid_map of the nested user namespace"
        );
    }

    #[test]
    fn flag_names_follow_the_table() {
        assert_eq!(clone_flag_names(0), "SIGCHLD");
        let all = NAMESPACES
            .iter()
            .fold(0, |acc, (_, f, _)| acc | *f as libc::c_ulong);
        assert_eq!(
            clone_flag_names(all),
            "CLONE_NEWUSER|CLONE_NEWNS|CLONE_NEWPID|CLONE_NEWNET|CLONE_NEWIPC|CLONE_NEWUTS|\
             CLONE_NEWCGROUP"
        );
    }
}
