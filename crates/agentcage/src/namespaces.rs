//! Namespaces: the one table of clone flags, the id maps (parent side) and the child-side
//! steps (inside ids, hostname, loopback, the nested namespace that locks the mounts).
//!
//! Parent: [`clone_flags`], [`id_maps`], [`write_id_maps_from_parent`]. Child (pre-exec, no
//! allocation): [`NetWorker`], [`apply_ids`], [`apply_hostname`], [`lock_mounts`]. Each failure
//! is a [`SetupError`] of its own [`Step`]; [`describe_lock_mounts`] names its sub-steps.

use std::ffi::CString;
use std::sync::atomic::{AtomicI64, Ordering};

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

/// The namespaces of a run: every namespace layer on, except the network namespace with
/// `--net host` and the cgroup namespace (unshared later, see `child.rs`). The network
/// namespace is then taken out of the clone itself (`prepared.rs`: [`NetWorker`] builds it).
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

/// Child side: the hostname of a new UTS namespace.
///
/// Runs in the child after clone: async-signal-safe only.
pub(crate) fn apply_hostname(hostname: Option<&[u8]>) -> Result<(), SetupError> {
    match hostname {
        Some(h) => sys::sethostname(h).map_err(|e| SetupError::new(Step::Hostname, 0, e)),
        None => Ok(()),
    }
}

/// Child side: [`apply_hostname`], and loopback of a new network namespace (the command's
/// nested one when it unshared it itself: [`NetWorker`] brings up the others).
///
/// Runs in the child after clone: async-signal-safe only.
fn apply_uts_net(hostname: Option<&[u8]>, loopback: bool) -> Result<(), SetupError> {
    apply_hostname(hostname)?;
    if loopback {
        sys::loopback_up().map_err(|e| SetupError::new(Step::Loopback, 0, e))?;
    }
    Ok(())
}

/// The sandbox's network namespace, built beside its first process (issue 19). In the
/// launcher's clone, CLONE_NEWNET cost ~0.5 ms (copy_net_ns: the pernet sysctl tables, the
/// loopback device) and lo ~0.1 ms more, all on the critical path while the second core
/// idled. Instead the first process starts a helper before anything else (creating a network
/// namespace needs only CAP_SYS_ADMIN in our user namespace, ours from birth: no id map
/// needed); the helper unshares it, brings lo up and hands over an fd of it; the first process
/// composes the root meanwhile and joins the namespace before anything of the command runs.
/// The namespace is created by a process of our user namespace: that one owns it, as before.
///
/// [`NetWorker::start_nested`]: the same for the command's nested namespace ([`LockMounts`]):
/// the helper first unshares a user namespace (a child of ours, owned by our uid, no maps
/// yet; started once our own maps exist) and creates the network namespace in it, so that one owns it, as when the command
/// unshared both itself; the command joins both ([`lock_mounts`]) instead of paying
/// copy_net_ns there.
pub(crate) struct NetWorker {
    helper: sys::Helper,
    nested: bool,
}

/// [`Step::NetNs`] sub-steps.
const NET_SPAWN: u32 = 0;
const NET_UNSHARE: u32 = 1;
const NET_SOCKET: u32 = 2;
const NET_LOOPBACK: u32 = 3;
const NET_FD: u32 = 4;
const NET_DIED: u32 = 5;
const NET_WAIT: u32 = 6;
const NET_JOIN: u32 = 7;
const NET_UNSHARE_USER: u32 = 8;
const NET_USERNS_FD: u32 = 9;

/// The helper's stack: its calls are a few raw syscalls (one ifreq on the stack).
const NET_STACK: usize = 16 * 1024;

/// The nested namespaces [`NetWorker::start_nested`] built, for the command's
/// [`lock_mounts`]: `userns_fd << 32 | netns_fd`, or -1. Set by the first process before it
/// forks the command (which gets a copy); a session's zygote never sets it (each exec
/// unshares its own).
static NESTED: AtomicI64 = AtomicI64::new(-1);

impl NetWorker {
    /// Child side, first thing after clone: starts the helper for our own network namespace.
    ///
    /// Runs in the child after clone: async-signal-safe only.
    pub(crate) fn start() -> Result<NetWorker, SetupError> {
        Self::spawn(build_netns, false)
    }

    /// Child side, first thing after clone: starts the helper for the command's nested user
    /// and network namespaces ([`LockMounts`]).
    ///
    /// Runs in the child after clone: async-signal-safe only.
    pub(crate) fn start_nested() -> Result<NetWorker, SetupError> {
        Self::spawn(build_nested_netns, true)
    }

    /// Waits until the helper runs (tests of the helper's path, never stolen).
    #[cfg(test)]
    fn started(self) -> NetWorker {
        self.helper.wait_claimed();
        self
    }

    fn spawn(work: fn(usize) -> i64, nested: bool) -> Result<NetWorker, SetupError> {
        sys::spawn_helper(work, 0, NET_STACK)
            .map(|helper| NetWorker { helper, nested })
            .map_err(|e| SetupError::at(Step::NetNs, NET_SPAWN, 0, e))
    }

    /// Child side, before anything uses the network: waits for the helper, reaps it and
    /// joins its namespace (lo up), or, nested, keeps the fds for the command's
    /// [`lock_mounts`]. Until this returns we are in the launcher's network namespace: it
    /// must run before the command, egress and the init's fork.
    ///
    /// Runs in the child after clone: async-signal-safe only.
    pub(crate) fn join(self, has_reaper: bool) -> Result<(), SetupError> {
        let fail = |sub| move |e| SetupError::at(Step::NetNs, sub, 0, e);
        if self.helper.steal() {
            // The helper got no CPU while we composed the root (no idle core): rather than
            // wait a time slice for it, do what the launcher's clone did before, here; nested,
            // the command unshares its namespaces itself (NESTED stays -1). The idle helper
            // exits when it runs: an init reaps it with its orphans, else we wait for it.
            if !has_reaper {
                self.helper.reap();
            }
            if self.nested {
                return Ok(());
            }
            sys::unshare(libc::CLONE_NEWNET).map_err(fail(NET_UNSHARE))?;
            return sys::loopback_up().map_err(fail(NET_LOOPBACK));
        }
        let end = self.helper.join().map_err(fail(NET_WAIT))?;
        if self.nested {
            // Prebuilding is only a shortcut for the command's own unshare, which stays the
            // fallback (NESTED -1) and reports its own error: the helper's unshare of a user
            // namespace fails with EPERM while our pivot_root is under way (for that instant
            // our root is not the mount namespace's: "chrooted").
            if let sys::HelperEnd::Done(r) = end {
                if r >= 0 {
                    NESTED.store(r, Ordering::Relaxed);
                }
            }
            return Ok(());
        }
        let r = match end {
            sys::HelperEnd::Done(r) => decode(r)?,
            sys::HelperEnd::Died(st) => {
                return Err(SetupError::at(
                    Step::NetNs,
                    NET_DIED,
                    st as u32,
                    Errno(libc::ECHILD),
                ))
            }
        };
        let fd = r as i32;
        let joined = sys::setns(fd, libc::CLONE_NEWNET).map_err(fail(NET_JOIN));
        sys::close(fd);
        joined
    }
}

/// `-(1 + (sub << 16 | errno))`: a helper's failure (decoded by [`decode`]).
fn helper_err(sub: u32, e: Errno) -> i64 {
    -1 - ((i64::from(sub) << 16) | i64::from(e.0 & 0xffff))
}

/// The helper's work: unshare(CLONE_NEWNET), lo up, an fd of the namespace (in the shared fd
/// table). Its result: the fd, or [`helper_err`]. Raw, errno-free calls only (see `sys::ns`).
fn build_netns(_: usize) -> i64 {
    if let Err(e) = sys::beside::unshare(libc::CLONE_NEWNET) {
        return helper_err(NET_UNSHARE, e);
    }
    let sock = match sys::beside::inet_socket() {
        Ok(s) => s,
        Err(e) => return helper_err(NET_SOCKET, e),
    };
    let r = sys::beside::loopback_up(sock)
        .map_err(|e| (NET_LOOPBACK, e))
        .and_then(|()| sys::beside::netns_of(sock).map_err(|e| (NET_FD, e)));
    sys::beside::close(sock);
    match r {
        Ok(fd) => i64::from(fd),
        Err((sub, e)) => helper_err(sub, e),
    }
}

/// The nested helper's work: unshare(CLONE_NEWUSER) (a child of our user namespace, owned by
/// our uid), then [`build_netns`] in it, then an fd of that user namespace (NS_GET_USERNS of
/// the network namespace). Its result: `userns_fd << 32 | netns_fd`, or [`helper_err`].
fn build_nested_netns(_: usize) -> i64 {
    if let Err(e) = sys::beside::unshare(libc::CLONE_NEWUSER) {
        return helper_err(NET_UNSHARE_USER, e);
    }
    let net = build_netns(0);
    if net < 0 {
        return net;
    }
    match sys::beside::ns_owner(net as i32) {
        Ok(user) => (i64::from(user) << 32) | net,
        Err(e) => {
            sys::beside::close(net as i32);
            helper_err(NET_USERNS_FD, e)
        }
    }
}

/// The helper's fd(s), or its failure as a [`SetupError`].
fn decode(r: i64) -> Result<i64, SetupError> {
    if r >= 0 {
        return Ok(r);
    }
    let v = -1 - r;
    Err(SetupError::at(
        Step::NetNs,
        (v >> 16) as u32,
        0,
        Errno((v & 0xffff) as i32),
    ))
}

/// The step of a failed [`NetWorker`] sub-step.
fn describe_net(sub: u32, index: u32) -> String {
    match sub {
        NET_SPAWN => "start the helper that creates the network namespace (mmap its stack, \
                      clone(CLONE_VM|CLONE_FILES))"
            .into(),
        NET_UNSHARE => "unshare(CLONE_NEWNET) in the sandbox's user namespace".into(),
        NET_SOCKET => "socket(AF_INET, SOCK_DGRAM) in the new network namespace".into(),
        NET_LOOPBACK => "bring up the loopback interface (SIOCSIFFLAGS lo)".into(),
        NET_FD => "ioctl(SIOCGSKNS): an fd of the new network namespace".into(),
        NET_DIED => {
            format!("the network namespace helper ended without a result (wait status {index:#x})")
        }
        NET_WAIT => "waitpid(__WALL) for the network namespace helper".into(),
        NET_UNSHARE_USER => "unshare(CLONE_NEWUSER) for the command's nested namespace".into(),
        NET_USERNS_FD => "ioctl(NS_GET_USERNS): an fd of the nested user namespace".into(),
        _ => "setns(CLONE_NEWNET) into the sandbox's network namespace".into(),
    }
}

/// A true hint for a failed [`NetWorker`] sub-step, where there is one.
pub(crate) fn net_hint(sub: u32, e: Errno) -> Option<String> {
    match (sub, e.0) {
        (NET_SPAWN, libc::EAGAIN) => Some(
            "the sandbox could not start one helper process: a pids limit (--pids, the cgroup's \
             pids.max) or RLIMIT_NPROC leaves no room"
                .into(),
        ),
        (NET_UNSHARE | NET_UNSHARE_USER, libc::ENOSPC) => Some(
            "the sandbox user's count of network or user namespaces is used up \
             (/proc/sys/user/max_net_namespaces, max_user_namespaces: the sandbox's own are \
             capped at half of its owner's)"
                .into(),
        ),
        _ => None,
    }
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
            loopback: net_moved,
        }
    }
}

/// [`Step::LockMounts`] sub-steps.
const LOCK_UNSHARE: u32 = 0;
const LOCK_SETGROUPS: u32 = 1;
const LOCK_UID_MAP: u32 = 2;
const LOCK_GID_MAP: u32 = 3;
const LOCK_JOIN_USER: u32 = 4;
const LOCK_JOIN_NET: u32 = 5;

/// Child side (the command's process): enters the nested user+mount namespace so every mount
/// of the composed root is locked (a command that keeps its capabilities cannot remount,
/// unmount or move them). With the nested user and network namespaces prebuilt
/// ([`NetWorker::start_nested`]) it joins them and unshares only the rest.
///
/// Runs in the child after clone: async-signal-safe only.
pub(crate) fn lock_mounts(l: &LockMounts) -> Result<(), SetupError> {
    let fail = |sub| move |e| SetupError::at(Step::LockMounts, sub, 0, e);
    let prebuilt = NESTED.swap(-1, Ordering::Relaxed);
    let mut flags = l.unshare_flags;
    if prebuilt >= 0 {
        let (user, net) = ((prebuilt >> 32) as i32, prebuilt as i32);
        // The user namespace first: its capabilities let us join its network namespace, and
        // the mount and UTS namespaces unshared below belong to it (the mounts are locked).
        let joined = sys::setns(user, libc::CLONE_NEWUSER)
            .map_err(fail(LOCK_JOIN_USER))
            .and_then(|()| sys::setns(net, libc::CLONE_NEWNET).map_err(fail(LOCK_JOIN_NET)));
        sys::close(user);
        sys::close(net);
        joined?;
        flags &= !(libc::CLONE_NEWUSER | libc::CLONE_NEWNET);
    }
    sys::unshare(flags).map_err(fail(LOCK_UNSHARE))?;
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
    // A prebuilt network namespace has lo up already.
    apply_uts_net(l.hostname, l.loopback && prebuilt < 0)
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
        Step::NetNs => describe_net(r.sub, r.index),
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
        LOCK_JOIN_USER => "setns(CLONE_NEWUSER) into the prebuilt nested user namespace".into(),
        LOCK_JOIN_NET => "setns(CLONE_NEWNET) into the prebuilt nested network namespace".into(),
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

    /// In a forked child that owns a fresh user namespace (as the sandbox's first process
    /// does): `f` runs there, its exit code comes back (77: no user namespaces here).
    fn in_own_userns(f: fn() -> i32) -> i32 {
        let pid = sys::raw_fork().expect("fork");
        if pid == 0 {
            let (uid, gid) = (sys::geteuid(), sys::getegid());
            let code = if sys::unshare(libc::CLONE_NEWUSER).is_err() {
                77
            } else {
                let _ = std::fs::write("/proc/self/setgroups", "deny");
                let ok = std::fs::write("/proc/self/uid_map", format!("0 {uid} 1\n")).is_ok()
                    && std::fs::write("/proc/self/gid_map", format!("0 {gid} 1\n")).is_ok();
                if ok {
                    f()
                } else {
                    78
                }
            };
            sys::exit(code);
        }
        let (_, st) = sys::waitpid(pid, 0).expect("waitpid");
        assert!(libc::WIFEXITED(st), "child died: {st:#x}");
        libc::WEXITSTATUS(st)
    }

    /// Runs `f` with [`in_own_userns`] and fails with `why[code]` unless it returns 0. Without
    /// user namespaces the test is skipped with a reason, or fails when
    /// `AGENTCAGE_TEST_EXPECT` lists `userns` (CI on a machine that has them).
    fn expect_in_own_userns(f: fn() -> i32, why: &[&str]) {
        match in_own_userns(f) {
            77 => {
                let expect = std::env::var("AGENTCAGE_TEST_EXPECT").unwrap_or_default();
                assert!(
                    !expect.split(',').any(|e| e.trim() == "userns"),
                    "AGENTCAGE_TEST_EXPECT lists userns, but unshare(CLONE_NEWUSER) failed"
                );
                eprintln!("skip: no user namespaces here");
            }
            c => assert_eq!(c, 0, "{}", why.get(c as usize).unwrap_or(&"?")),
        }
    }

    fn ns_ino(path: &str) -> u64 {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(path).map_or(0, |m| m.ino())
    }

    /// The inode of the user namespace that owns our network namespace (NS_GET_USERNS).
    fn net_owner_ino() -> Option<u64> {
        let f = std::fs::File::open("/proc/thread-self/ns/net").ok()?;
        let owner = sys::beside::ns_owner(std::os::fd::AsRawFd::as_raw_fd(&f)).ok()?;
        let ino = ns_ino(&format!("/proc/self/fd/{owner}"));
        sys::close(owner);
        Some(ino)
    }

    /// lo is up: 127.0.0.1 answers (with lo down, connect fails with ENETUNREACH).
    fn lo_is_up() -> bool {
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| std::net::TcpStream::connect(l.local_addr()?))
            .is_ok()
    }

    /// No child of ours is left, not even a zombie (a helper was reaped).
    fn no_child_left() -> bool {
        matches!(
            sys::waitpid(-1, libc::__WALL | libc::WNOHANG),
            Err(Errno(libc::ECHILD))
        )
    }

    /// The worker's namespace is joined (not the one we started in), owned by our user
    /// namespace, has lo up, and the worker is reaped: no child left.
    fn join_checks() -> i32 {
        let before = ns_ino("/proc/thread-self/ns/net");
        let w = match NetWorker::start() {
            Ok(w) => w.started(),
            Err(_) => return 2,
        };
        if w.join(false).is_err() {
            return 3;
        }
        if ns_ino("/proc/thread-self/ns/net") == before {
            return 4;
        }
        let Some(owner_ino) = net_owner_ino() else {
            return 6;
        };
        if owner_ino != ns_ino("/proc/self/ns/user") {
            return 7;
        }
        if !lo_is_up() {
            return 9;
        }
        if no_child_left() {
            0
        } else {
            10
        }
    }

    /// Joined at once (the helper has usually not run yet: the join takes its work over), the
    /// result is the same: a new network namespace with lo up, and no child left.
    fn join_at_once_checks() -> i32 {
        let before = ns_ino("/proc/thread-self/ns/net");
        if NetWorker::start().and_then(|w| w.join(false)).is_err() {
            return 2;
        }
        if ns_ino("/proc/thread-self/ns/net") == before {
            return 3;
        }
        if !lo_is_up() {
            return 4;
        }
        if no_child_left() {
            0
        } else {
            5
        }
    }

    #[test]
    fn a_net_worker_joined_at_once_gives_the_same_namespace() {
        let why = [
            "",
            "",
            "join failed",
            "same namespace",
            "lo is down",
            "a child is left",
        ];
        expect_in_own_userns(join_at_once_checks, &why);
    }

    #[test]
    fn the_net_worker_builds_the_namespace_we_join() {
        let why = [
            "",
            "",
            "start failed",
            "join failed",
            "still in the old network namespace",
            "",
            "open ns/net or NS_GET_USERNS",
            "the network namespace is not owned by our user namespace",
            "",
            "lo is down",
            "a child is left (the worker was not reaped)",
        ];
        expect_in_own_userns(join_checks, &why);
    }

    /// A failing worker is a typed setup error naming its sub-step and errno: here the
    /// namespace count of our user namespace is 0, so its unshare gets ENOSPC.
    fn failure_checks() -> i32 {
        if std::fs::write("/proc/sys/user/max_net_namespaces", "0").is_err() {
            return 2;
        }
        let before = ns_ino("/proc/thread-self/ns/net");
        let r = NetWorker::start().and_then(|w| w.started().join(false));
        let want = SetupError::at(Step::NetNs, NET_UNSHARE, 0, Errno(libc::ENOSPC));
        if r != Err(want) {
            return 3;
        }
        if ns_ino("/proc/thread-self/ns/net") != before {
            return 4;
        }
        if no_child_left() {
            0
        } else {
            5
        }
    }

    #[test]
    fn a_failing_net_worker_is_a_setup_error() {
        let why = [
            "",
            "",
            "write max_net_namespaces",
            "not the unshare's ENOSPC",
            "the network namespace changed",
            "a child is left",
        ];
        expect_in_own_userns(failure_checks, &why);
        assert_eq!(
            describe(
                SetupError::at(Step::NetNs, NET_UNSHARE, 0, Errno(libc::ENOSPC)),
                (0, 0),
                None
            ),
            "unshare(CLONE_NEWNET) in the sandbox's user namespace"
        );
        assert!(net_hint(NET_UNSHARE, Errno(libc::ENOSPC)).is_some());
    }

    /// ns-only: the nested user and network namespaces are built beside us, and the command's
    /// [`lock_mounts`] joins them: it ends in a user namespace below ours that owns its
    /// network namespace (lo up), with a mount namespace of its own; the fds are gone.
    fn nested_checks() -> i32 {
        let user_before = ns_ino("/proc/thread-self/ns/user");
        let mnt_before = ns_ino("/proc/thread-self/ns/mnt");
        if NetWorker::start_nested()
            .and_then(|w| w.started().join(false))
            .is_err()
        {
            return 2;
        }
        if NESTED.load(Ordering::Relaxed) < 0 {
            return 3;
        }
        let mut flags = (libc::CLONE_NEWNET | libc::CLONE_NEWUTS) as libc::c_ulong;
        let mut hostname = Some(&b"agentcage"[..]);
        let l = LockMounts::prepare(0, 0, false, &mut flags, &mut hostname);
        if lock_mounts(&l).is_err() {
            return 4;
        }
        let user = ns_ino("/proc/thread-self/ns/user");
        if user == user_before || ns_ino("/proc/thread-self/ns/mnt") == mnt_before {
            return 5;
        }
        let Some(owner_ino) = net_owner_ino() else {
            return 6;
        };
        if owner_ino != user {
            return 7;
        }
        if !lo_is_up() {
            return 8;
        }
        if NESTED.load(Ordering::Relaxed) != -1 {
            return 9;
        }
        if no_child_left() {
            0
        } else {
            10
        }
    }

    #[test]
    fn the_nested_namespaces_are_prebuilt_and_joined() {
        let why = [
            "",
            "",
            "start or join failed",
            "no fds kept",
            "lock_mounts failed",
            "not in new user and mount namespaces",
            "NS_GET_USERNS",
            "the network namespace is not owned by the nested user namespace",
            "lo is down",
            "the fds were not taken",
            "a child is left",
        ];
        expect_in_own_userns(nested_checks, &why);
    }
}
