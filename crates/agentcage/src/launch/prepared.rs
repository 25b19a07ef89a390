//! `Prepared`: every artifact the child will touch, built before clone.
//!
//! Strings, pointer arrays, the mount plan, the Landlock rules, the BPF program and the id
//! map bytes all live here, so the child never allocates (STYLE.md section 4).

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::Command;
use crate::caps::{self, PreparedCaps};
use crate::error::{Error, PolicyError, SetupError, Step};
use crate::hygiene;
use crate::limits::rlimit::{self, NprocMode, PreparedRlimits};
use crate::limits::{Limit, NoteKind};
use crate::namespaces::{self, IdMaps, LockMounts, SetIds};
use crate::policy::{Layer, Policy};
use crate::rootfs::{self, PreparedRootfs, RootSpec};
use crate::sys::{self, Errno};
use crate::{egress, landlock, seccomp};

/// A null-terminated argv/envp array pointing into owned CStrings.
#[derive(Debug)]
pub(crate) struct CArray {
    _owned: Vec<CString>,
    ptrs: Vec<*const libc::c_char>,
}

impl CArray {
    fn new(items: Vec<CString>) -> CArray {
        let mut ptrs: Vec<*const libc::c_char> = items.iter().map(|c| c.as_ptr()).collect();
        ptrs.push(std::ptr::null());
        CArray {
            _owned: items,
            ptrs,
        }
    }

    pub(crate) fn ptrs(&self) -> &[*const libc::c_char] {
        &self.ptrs
    }

    /// The strings (a session's base environment).
    pub(crate) fn items(&self) -> &[CString] {
        &self._owned
    }
}

/// Everything the child side needs.
#[derive(Debug)]
pub struct Prepared {
    pub(crate) policy: Policy,
    pub(crate) command: Command,
    pub(crate) clone_flags: libc::c_ulong,
    pub(crate) id_maps: Option<IdMaps>,
    /// setresgid/setgroups/setresuid in the child (inside ids), when in a user namespace.
    pub(crate) set_ids: Option<SetIds>,
    pub(crate) rootfs: Option<PreparedRootfs>,
    pub(crate) hostname: Option<&'static [u8]>,
    /// The sandbox's own network namespace, not made at clone: its first process builds it
    /// beside itself (lo up) and joins it before anything of the command runs
    /// ([`namespaces::NetWorker`]).
    pub(crate) own_net: bool,
    pub(crate) init: bool,
    pub(crate) hygiene: bool,
    pub(crate) keep_fds: Vec<i32>,
    pub(crate) rlimits: PreparedRlimits,
    /// Per-user counts capped in the sandbox's user namespace (with a user namespace).
    pub(crate) user_caps: Option<crate::limits::rlimit::UserCaps>,
    /// unshare(CLONE_NEWCGROUP) in the child once the launcher has attached the cgroup.
    pub(crate) cgroup_ns: bool,
    pub(crate) cwd: CString,
    /// Lock the composed mounts before the command runs (see [`LockMounts`]).
    pub(crate) lock_mounts: Option<LockMounts>,
    /// The nested rung's id switch (`launch/nested.rs`).
    pub(crate) nested: Option<super::nested::NestedIds>,
    pub(crate) nnp: bool,
    pub(crate) landlock: Option<landlock::Prepared>,
    pub(crate) caps: Option<PreparedCaps>,
    pub(crate) seccomp: Option<seccomp::Prepared>,
    /// `--net allow`: routes and listeners (child), the engine's configuration (parent).
    pub(crate) egress: Option<egress::Prepared>,
    pub(crate) candidates: Vec<CString>,
    pub(crate) argv: CArray,
    pub(crate) envp: CArray,
    /// Enforcement lines for `run -v` (what each layer does on this host).
    pub enforcement: Vec<(String, String)>,
    /// What the profile asks for but this host does not enforce (only possible with
    /// `best_effort`): the CLI prints these even without `-v`.
    pub degraded: Vec<(String, String)>,
    /// The run's limits made ahead of its spawn ([`Prepared::prepare_limits`]), taken by the
    /// spawn. A leaf never taken is removed when this is dropped (`PreparedCgroup`'s Drop).
    pub(crate) early_limits: std::sync::Mutex<Option<Result<crate::limits::RunLimits, Error>>>,
}

/// The pipes between launcher and child (all O_CLOEXEC).
pub(crate) struct Pipes {
    pub(crate) sync_r: i32,
    pub(crate) sync_w: i32,
    pub(crate) report_r: i32,
    pub(crate) report_w: i32,
    /// The init's status messages (-1 without an init: the command is the first child and
    /// its wait status comes from waiting for it).
    pub(crate) status_r: i32,
    pub(crate) status_w: i32,
    /// `--net allow`: the socket pair the sandbox sends its listeners on (-1 without).
    pub(crate) net_parent: i32,
    pub(crate) net_child: i32,
}

impl Pipes {
    pub(crate) fn new(egress: bool, status: bool) -> Result<Pipes, Errno> {
        let (sync_r, sync_w) = sys::pipe()?;
        let (report_r, report_w) = sys::pipe()?;
        // The init never blocks on a status report (see init.rs), and we never block
        // reading one: both ends are non-blocking from creation.
        let (status_r, status_w) = if status {
            sys::pipe_nonblock()?
        } else {
            (-1, -1)
        };
        let (net_parent, net_child) = if egress { sys::socketpair()? } else { (-1, -1) };
        Ok(Pipes {
            sync_r,
            sync_w,
            report_r,
            report_w,
            status_r,
            status_w,
            net_parent,
            net_child,
        })
    }
}

/// [`cstr`] of an owned buffer: no copy (and no realloc when it has room for the NUL).
fn cstr_vec(b: Vec<u8>) -> Result<CString, Error> {
    CString::new(b).map_err(|e| {
        Error::Policy(PolicyError::NulByte {
            text: String::from_utf8_lossy(&e.into_vec()).into_owned(),
        })
    })
}

fn cstr(b: &[u8]) -> Result<CString, Error> {
    CString::new(b).map_err(|_| {
        Error::Policy(PolicyError::NulByte {
            text: String::from_utf8_lossy(b).into_owned(),
        })
    })
}

/// Validates the policy and builds every artifact (parent side).
///
/// # Errors
/// [`Error::Policy`] for bad input, [`Error::Unenforceable`] when a primitive of the
/// profile cannot be enforced here and `best_effort` is off.
pub fn prepare(policy: &Policy, command: &Command) -> Result<Prepared, Error> {
    let layers = policy.layers;
    validate(policy, command)?;
    let ws = &policy.workspace;
    let caller_uid = sys::geteuid();
    let caller_gid = sys::getegid();
    let as_root = caller_uid == 0;
    if as_root && layers.has(Layer::UserNs) && (policy.host_uid == 0 || policy.host_gid == 0) {
        return Err(PolicyError::HostRoot.into());
    }
    let mut enforcement = Vec::new();
    let mut degraded = Vec::new();
    let namespaces::PreparedNs {
        mut clone_flags,
        id_maps,
        set_ids,
    } = namespaces::prepare(policy, (caller_uid, caller_gid), &mut enforcement)?;
    let userns = set_ids.is_some();
    let egress = egress::prepare(policy, &mut enforcement, &mut degraded)?;
    let user_caps = userns.then(|| {
        let (caps, missing) = crate::limits::rlimit::UserCaps::prepare();
        for m in missing {
            degraded.push(("user-limits".into(), m));
        }
        enforcement.push((
            "user-limits".into(),
            format!(
                "per-user counts of the sandbox's user namespace capped (half of its owner's, \
                 host uid {}): {}",
                if as_root { policy.host_uid } else { caller_uid },
                caps.describe()
            ),
        ));
        caps
    });

    let nested = super::nested::prepare(policy, caller_uid, &mut enforcement)?;
    let home: PathBuf = if nested.is_some() {
        // The host's home is outside the allow-list: tools get a writable one.
        "/tmp".into()
    } else if policy.uid == 0 {
        "/root".into()
    } else {
        "/home/agent".into()
    };
    let mount_ns = layers.has(Layer::MountNs);
    let overlay = overlay_layers(policy, mount_ns && layers.has(Layer::UserNs))?;
    let rootfs = mount_ns.then(|| {
        rootfs::prepare(&RootSpec {
            workspace: ws.clone(),
            binds: policy
                .binds
                .iter()
                .map(|b| (b.path.clone(), b.writable))
                .collect(),
            fresh_placeholders: policy
                .binds
                .iter()
                .filter(|b| !b.writable)
                .filter_map(|b| Some((b.path.clone(), b.fresh_placeholder?)))
                .collect(),
            self_exe: command.self_exe.clone(),
            uid: policy.uid,
            gid: policy.gid,
            home: home.clone(),
            fresh_proc: layers.has(Layer::PidNs),
            own_net: clone_flags & libc::CLONE_NEWNET as libc::c_ulong != 0,
            mount_setattr: sys::mount_setattr_available(),
            tmpfs_size: policy.limits.memory.filter(|_| layers.has(Layer::Limits)),
            own_ipc: layers.has(Layer::IpcNs),
            idmap: as_root.then(|| rootfs::idmap_spec(policy)),
            controls: policy.controls.clone(),
            resolver: egress.is_some(),
            overlay,
        })
    });
    if as_root && layers.has(Layer::UserNs) {
        owner_notes(policy, rootfs.as_ref(), &mut enforcement, &mut degraded);
    }

    if let Some(r) = &rootfs {
        for note in socket_notes(&r.sockets) {
            // Said without -v (a warning) and with it (an enforcement line).
            enforcement.push(note.clone());
            degraded.push(note);
        }
    }
    if rootfs
        .as_ref()
        .is_some_and(PreparedRootfs::protected_by_path)
    {
        enforcement.push((
            "mount-ns".into(),
            "no mount_setattr (Linux < 5.12): binds inside the workspace or a --rw bind are made \
             by path, so a symlink the sandbox planted there in a previous run would be followed"
                .into(),
        ));
    }

    // Working directory: the caller's when inside the workspace, else the workspace.
    let cwd = match &policy.cwd {
        Some(c) => c.clone(),
        // getcwd(2) is already canonical (the kernel's path of the directory, no symlink;
        // glibc fails with ENOENT for an unreachable or deleted one): no realpath, which
        // cost a readlink per component.
        None => std::env::current_dir()
            .ok()
            .filter(|c| c.starts_with(ws))
            .unwrap_or_else(|| ws.clone()),
    };

    // Environment.
    let hygiene = layers.has(Layer::Hygiene);
    let mut env = hygiene::environment(policy, hygiene, &home, mount_ns || nested.is_some());
    if let Some(name) = nested.as_ref().and_then(|n| n.user_name(caller_uid)) {
        // No user namespace: the command is that host uid, not the inside uid's name.
        for (k, v) in env.iter_mut() {
            if hygiene && (k == "USER" || k == "LOGNAME") {
                *v = name.clone().into();
            }
        }
    }
    if egress.is_some() {
        // The proxy the launcher serves, never the caller's; `--env` still has the last word.
        for (k, v) in egress::proxy_env() {
            if !policy.env.iter().any(|(ek, _)| ek == k) {
                env.retain(|(ek, _)| ek != k);
                env.push((k.into(), v.into()));
            }
        }
    }
    let (candidates, argv, envp) = exec_arrays(command, &env)?;

    // Landlock.
    let landlock = if layers.has(Layer::Landlock) {
        let view = landlock::View {
            home: &home,
            mount_ns,
            self_exe: command.self_exe.as_deref(),
            etc: if nested.is_some_and(|n| n.keeps_privileged_ids()) {
                landlock::EtcAccess::WorldReadable
            } else {
                landlock::EtcAccess::Whole
            },
            plan: rootfs.as_ref(),
        };
        landlock::prepare(
            policy,
            view,
            &egress::connect_ports(egress.as_ref()),
            &mut enforcement,
            &mut degraded,
        )?
    } else {
        None
    };
    // Capabilities and seccomp.
    let caps = layers.has(Layer::Caps).then(|| match nested {
        Some(_) => caps::prepare_in_place(),
        None => caps::prepare(),
    });
    let seccomp = if layers.has(Layer::Seccomp) {
        Some(seccomp::prepare(policy, &mut enforcement)?)
    } else {
        None
    };
    let nnp = layers.has(Layer::NoNewPrivs);

    let rlimits = if layers.has(Layer::Limits) {
        let uid = nested.and_then(|n| n.switch).map_or(caller_uid, |(u, _)| u);
        rlimits(policy, userns, uid, &mut enforcement)?
    } else {
        PreparedRlimits::NONE
    };

    let keep_fds = hygiene::keep_fds(&policy.keep_fds)?;

    let cwd = cstr(cwd.as_os_str().as_bytes())?;
    // Without the caps layer the command keeps CAP_SYS_ADMIN over its mount namespace and
    // could remount our read-only binds read-write: lock them (see LockMounts). Its network
    // and UTS namespaces are then created with the nested user namespace, which owns them:
    // root inside keeps every capability over its own network stack and hostname (ns-only's
    // point: namespaces alone are not a sandbox), just not over the mounts.
    let mut hostname = layers.has(Layer::UtsNs).then_some(&b"agentcage"[..]);
    let lock_mounts = (userns && mount_ns && !layers.has(Layer::Caps)).then(|| {
        LockMounts::prepare(
            policy.uid,
            policy.gid,
            egress.is_some(),
            &mut clone_flags,
            &mut hostname,
        )
    });
    // Not in the launcher's clone, where copy_net_ns cost ~0.5 ms inside the syscall on the
    // critical path: the first process has it built beside itself while it composes the root
    // (issue 19). Its user namespace creates it: the owner is the same.
    let own_net = clone_flags & libc::CLONE_NEWNET as libc::c_ulong != 0;
    clone_flags &= !(libc::CLONE_NEWNET as libc::c_ulong);
    Ok(Prepared {
        policy: policy.clone(),
        command: command.clone(),
        clone_flags,
        id_maps,
        set_ids,
        rootfs,
        hostname,
        own_net,
        init: layers.has(Layer::PidNs),
        hygiene,
        keep_fds,
        rlimits,
        user_caps,
        cgroup_ns: layers.has(Layer::CgroupNs),
        cwd,
        lock_mounts,
        nested,
        nnp,
        landlock,
        caps,
        seccomp,
        egress,
        candidates,
        argv,
        envp,
        enforcement,
        degraded,
        early_limits: std::sync::Mutex::new(None),
    })
}

/// The policy's paths and the command, checked before anything is built.
/// `--overlay`: checks it can be served and opens its layers (see `overlay/`).
fn overlay_layers(policy: &Policy, namespaced: bool) -> Result<Option<PathBuf>, Error> {
    let Some(dir) = &policy.overlay else {
        return Ok(None);
    };
    if !namespaced {
        return Err(PolicyError::Overlay {
            reason: format!(
                "the {} profile has no user and mount namespace to mount an overlay in",
                policy.profile
            ),
        }
        .into());
    }
    if let Some(b) = policy
        .binds
        .iter()
        .find(|b| b.path.starts_with(&policy.workspace))
    {
        return Err(PolicyError::Overlay {
            reason: format!(
                "{} lies inside the workspace: a bind there would bypass the overlay",
                b.path.display()
            ),
        }
        .into());
    }
    let unenforceable = |cause: crate::error::Unenforceable| Error::Unenforceable {
        profile: policy.profile.to_string(),
        cause,
        hint: Some("run without --overlay (the agent then writes the workspace directly)".into()),
    };
    crate::overlay::check_available()
        .map_err(|e| unenforceable(crate::error::Unenforceable::OverlayUnavailable(e)))?;
    crate::overlay::check_layers(dir)
        .map_err(|e| unenforceable(crate::error::Unenforceable::OverlayLayers(e)))?;
    for p in [dir, &policy.workspace] {
        crate::overlay::check_path(p).map_err(|e| PolicyError::Overlay {
            reason: e.to_string(),
        })?;
    }
    Ok(Some(dir.clone()))
}

fn validate(policy: &Policy, command: &Command) -> Result<(), Error> {
    if command.argv.is_empty() || command.argv[0].is_empty() {
        return Err(PolicyError::NoCommand.into());
    }
    let ws = &policy.workspace;
    if !ws.is_absolute() {
        return Err(PolicyError::WorkspaceNotAbsolute { path: ws.clone() }.into());
    }
    if !ws.is_dir() {
        return Err(PolicyError::WorkspaceMissing { path: ws.clone() }.into());
    }
    rootfs::check_workspace(ws)?;
    for b in &policy.binds {
        if !b.path.is_absolute() {
            return Err(PolicyError::BindNotAbsolute {
                path: b.path.clone(),
            }
            .into());
        }
        // A placeholder this launcher just made is not looked up again: if it is gone or
        // replaced since, its pinned bind fails the run (see ExtraBind::fresh_placeholder).
        if b.fresh_placeholder.is_none() && std::fs::symlink_metadata(&b.path).is_err() {
            return Err(PolicyError::BindMissing {
                path: b.path.clone(),
            }
            .into());
        }
        if b.path == Path::new("/") {
            return Err(PolicyError::BindRoot.into());
        }
    }
    Ok(())
}

/// Run as root, the sandbox is host uid `host_uid`: a writable path owned by someone else is
/// bound idmapped (said with -v), or, where it cannot be, said before the command finds out.
fn owner_notes(
    policy: &Policy,
    rootfs: Option<&PreparedRootfs>,
    enforcement: &mut Vec<(String, String)>,
    degraded: &mut Vec<(String, String)>,
) {
    use std::os::unix::fs::MetadataExt;
    let decisions: Vec<(PathBuf, rootfs::Decision)> = match rootfs {
        Some(r) => r.idmap_decisions.clone(),
        // No mount namespace: the workspace is the host's path, as host uid `host_uid`.
        None => vec![(
            policy.workspace.clone(),
            rootfs::Decision::Refused("no mount namespace".into()),
        )],
    };
    for (path, d) in decisions {
        match d {
            rootfs::Decision::Idmapped(i) => {
                if let Some(r) = rootfs {
                    enforcement.push(("idmap".into(), r.idmap.describe(i)));
                }
            }
            rootfs::Decision::NotNeeded => {}
            rootfs::Decision::Refused(why) => {
                let Ok(md) = std::fs::metadata(&path) else {
                    continue;
                };
                if md.uid() == policy.host_uid || md.mode() & 0o002 != 0 {
                    continue;
                }
                let what = if path == policy.workspace {
                    "workspace"
                } else {
                    "rw"
                };
                degraded.push((
                    what.into(),
                    format!(
                        "{} is owned by uid {}, but as root the sandbox runs as host uid {}: it \
                         cannot write there, and no idmapped bind is possible ({why}) (chown it \
                         to {}, or pass --host-uid {})",
                        path.display(),
                        md.uid(),
                        policy.host_uid,
                        policy.host_uid,
                        if md.uid() == 0 {
                            "a non-root owner".to_string()
                        } else {
                            md.uid().to_string()
                        }
                    ),
                ));
            }
        }
    }
}

/// Resource limits: rlimits are the floor; cgroups, when available, are created by the
/// launcher around each spawn (see `Prepared::run`).
fn rlimits(
    policy: &Policy,
    userns: bool,
    caller_uid: u32,
    enforcement: &mut Vec<(String, String)>,
) -> Result<PreparedRlimits, Error> {
    let mode = if userns {
        NprocMode::OwnUserNs
    } else {
        NprocMode::SharedUid {
            host_uid: caller_uid,
        }
    };
    let (rlimits, notes) = rlimit::prepare(&policy.limits, mode)?;
    // The RLIMIT_NPROC note ("no pids cgroup") and other informational notes are superseded
    // by the run-time summary once the cgroup is known; keep the other warnings (clamped
    // limits).
    for n in notes
        .iter()
        .filter(|n| n.kind != NoteKind::Info && n.limit != Limit::Pids)
    {
        enforcement.push(("limits".into(), n.to_string()));
    }
    Ok(rlimits)
}

/// What execve gets: the PATH candidates for argv[0] (like execvp, but in the sandbox's
/// PATH, tried in the child), argv and envp.
fn exec_arrays(
    command: &Command,
    env: &[(std::ffi::OsString, std::ffi::OsString)],
) -> Result<(Vec<CString>, CArray, CArray), Error> {
    let envp: Vec<CString> = env
        .iter()
        .map(|(k, v)| {
            // One allocation per entry, sized for the NUL too (growing it cost a realloc or
            // two per variable, and CString::new a copy: issue 19).
            let (k, v) = (k.as_bytes(), v.as_bytes());
            let mut b = Vec::with_capacity(k.len() + v.len() + 2);
            b.extend_from_slice(k);
            b.push(b'=');
            b.extend_from_slice(v);
            cstr_vec(b)
        })
        .collect::<Result<_, _>>()?;

    let arg0 = command.argv[0].as_bytes();
    let candidates: Vec<CString> = if arg0.contains(&b'/') {
        vec![cstr(arg0)?]
    } else {
        let path = env
            .iter()
            .find(|(k, _)| k == "PATH")
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| hygiene::DEFAULT_PATH.into());
        let mut c = Vec::new();
        for dir in path.as_bytes().split(|b| *b == b':') {
            let dir: &[u8] = if dir.is_empty() { b"." } else { dir };
            let mut full = dir.to_vec();
            full.push(b'/');
            full.extend_from_slice(arg0);
            c.push(cstr(&full)?);
        }
        c
    };
    let argv: Vec<CString> = command
        .argv
        .iter()
        .map(|a| cstr(a.as_bytes()))
        .collect::<Result<_, _>>()?;

    Ok((candidates, CArray::new(argv), CArray::new(envp)))
}

/// Says which sockets under read-only binds were masked, and what masking cannot cover.
fn socket_notes(m: &rootfs::SocketMasks) -> Vec<(String, String)> {
    let mut notes = Vec::new();
    let list = |v: &[PathBuf]| {
        let mut s: Vec<String> = v.iter().take(5).map(|p| p.display().to_string()).collect();
        if v.len() > 5 {
            s.push(format!("and {} more", v.len() - 5));
        }
        s.join(", ")
    };
    if !m.masked.is_empty() {
        notes.push((
            "ro".into(),
            format!(
                "unix sockets under read-only paths masked (read-only does not stop connect(2)): \
                 {}; a socket created there while the sandbox runs stays connectable",
                list(&m.masked)
            ),
        ));
    }
    if !m.truncated.is_empty() {
        notes.push((
            "ro".into(),
            format!(
                "the unix-socket scan of {} stopped at its bound ({} entries or depth {}): \
                 sockets deeper in it are not masked and stay connectable",
                list(&m.truncated),
                rootfs::SOCKET_SCAN_MAX_ENTRIES,
                rootfs::SOCKET_SCAN_MAX_DEPTH
            ),
        ));
    }
    notes
}

impl Prepared {
    /// The fds `self` holds and needs at every spawn (see `PreparedIdmap::held_fds`).
    pub(crate) fn held_fds(&self) -> Vec<i32> {
        self.rootfs
            .as_ref()
            .map(|r| r.idmap.held_fds().collect())
            .unwrap_or_default()
    }

    /// The host ids a root launcher creates the user namespace as: the sandbox's host
    /// uid/gid, so the namespace is theirs and the kernel charges the sandbox's per-user
    /// counts (inotify, queued signals, namespaces) to them, not to host root. `None` for
    /// unprivileged callers (already their own) and runs without a user namespace.
    pub(crate) fn userns_owner(&self) -> Option<(u32, u32)> {
        let userns = self.clone_flags & libc::CLONE_NEWUSER as libc::c_ulong != 0;
        match self.set_ids {
            Some(SetIds { as_root: true, .. }) if userns => {
                Some((self.policy.host_uid, self.policy.host_gid))
            }
            _ => None,
        }
    }

    /// The error of a failed [`sys::clone_fork_owned_by`].
    pub(crate) fn clone_error(&self, e: sys::OwnedCloneError) -> Error {
        let (uid, gid) = self.userns_owner().unwrap_or((0, 0));
        let (step, errno) = match e {
            sys::OwnedCloneError::Clone(errno) => {
                let step = format!("clone({})", namespaces::clone_flag_names(self.clone_flags));
                return Error::Setup {
                    step,
                    errno,
                    hint: self.clone_hint(errno),
                };
            }
            sys::OwnedCloneError::SwitchIds(errno) => (
                format!(
                    "switch the cloning thread to host uid {uid} / gid {gid} (setresgid, \
                     setresuid) to create the user namespace as the sandbox's host uid"
                ),
                errno,
            ),
            sys::OwnedCloneError::RestoreIds(errno) => (
                "restore the launcher's effective uid/gid after the clone (the sandbox was \
                 killed)"
                    .to_string(),
                errno,
            ),
        };
        Error::Setup {
            step,
            errno,
            hint: Some(format!(
                "uid {uid} and gid {gid} must be mapped in the launcher's user namespace \
                 (--host-uid/--host-gid pick others)"
            )),
        }
    }

    /// Hint for a failed clone.
    pub(crate) fn clone_hint(&self, e: Errno) -> Option<String> {
        if self.clone_flags & libc::CLONE_NEWUSER as libc::c_ulong == 0 {
            return None;
        }
        crate::host::userns_failure_hint(e.0)
    }

    /// Turns the child's report into a full error naming the step's objects.
    pub(crate) fn describe_setup_error(&self, r: SetupError) -> Error {
        let i = r.index as usize;
        let step = match r.step {
            Step::Exec => {
                let cmd = self.command.argv[0].to_string_lossy().into_owned();
                return Error::Exec {
                    command: cmd,
                    errno: r.errno,
                };
            }
            Step::WaitParent => "wait for the launcher (it exited)".into(),
            Step::SetGid
            | Step::SetGroups
            | Step::SetUid
            | Step::SessionKeyring
            | Step::Hostname
            | Step::Loopback
            | Step::NetNs
            | Step::LockMounts => namespaces::describe(
                r,
                (self.policy.uid, self.policy.gid),
                self.lock_mounts.as_ref(),
            ),
            Step::MountPrivate
            | Step::StageTmpfs
            | Step::PivotStage
            | Step::Mount
            | Step::PivotRoot
            | Step::DetachOldRoot => rootfs::describe(self.rootfs.as_ref(), r.step, r.index),
            Step::ForkCommand => "fork the command from the sandbox init".into(),
            Step::InitSignals => "set up the init's signal handling".into(),
            Step::Setsid | Step::ControllingTty | Step::Fds => hygiene::describe(r.step).into(),
            Step::Rlimits => format!(
                "setrlimit ({})",
                crate::limits::rlimit::Resource::from_raw(r.index as i32).map_or("?", |r| r.name())
            ),
            Step::CgroupNs => "unshare(CLONE_NEWCGROUP)".into(),
            Step::UserLimits => match self.user_caps.as_ref().and_then(|c| c.sysctl_path(i)) {
                Some(path) => format!("write {path} in the sandbox's user namespace"),
                None => "setrlimit (RLIMIT_SIGPENDING)".into(),
            },
            Step::Chdir => format!("chdir {}", self.cwd.to_string_lossy()),
            Step::NoNewPrivs => "prctl(PR_SET_NO_NEW_PRIVS)".into(),
            Step::Landlock => landlock::describe(self.landlock.as_ref(), r.sub, r.index),
            Step::Caps => caps::describe(r.sub),
            Step::Seccomp => crate::events::seccomp::describe(r.sub).into(),
            Step::NestedIds => super::nested::describe(self.nested.as_ref(), r.sub),
            Step::Egress => egress::describe(self.egress.as_ref(), r.sub, r.index),
        };
        let hint = match (r.step, r.errno.0) {
            (Step::Mount, libc::EACCES)
                if self.set_ids.is_some_and(|s| s.as_root) && self.rootfs.is_some() =>
            {
                self.rootfs.as_ref().and_then(|p| {
                    rootfs::traverse_hint(p, r.index, (self.policy.host_uid, self.policy.host_gid))
                })
            }
            _ => None,
        }
        .or(match (r.step, r.errno.0) {
            (Step::Mount, libc::EPERM) | (Step::Mount, libc::EACCES) => Some(
                "the kernel refused a mount in the sandbox's user namespace; inside a container, \
                 the outer runtime may forbid it (see `agentcage doctor`)"
                    .to_string(),
            ),
            (Step::Mount, libc::ELOOP) => Some(
                "a path inside a writable bind (workspace or --rw) is a symlink now: the sandbox \
                 (a previous or a concurrent run) may have planted it; look at it, remove it and \
                 run again"
                    .to_string(),
            ),
            (Step::Chdir, libc::EACCES) => Some(
                "the sandbox user cannot enter the working directory: as root the sandbox runs as \
                 host uid --host-uid (65534 by default); give it access or pick another --host-uid"
                    .into(),
            ),
            (Step::Chdir, _) => Some("the working directory must be inside the workspace".into()),
            (Step::NestedIds, e) => super::nested::hint(Errno(e)),
            (Step::SessionKeyring, libc::EDQUOT) => Some(
                "the sandbox user's key quota is used up (/proc/sys/kernel/keys/maxkeys, \
                 maxbytes; root_maxkeys for uid 0)"
                    .into(),
            ),
            (Step::Egress, _) => egress::hint(r.sub, r.errno),
            (Step::NetNs, _) => namespaces::net_hint(r.sub, r.errno),
            (Step::UserLimits, _) => Some(
                "the sandbox writes its own namespace's /proc/sys/user limits through the \
                 host's /proc; a /proc mounted read-only or masked for the launcher prevents it"
                    .into(),
            ),
            _ => None,
        });
        Error::Setup {
            step,
            errno: r.errno,
            hint,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Pipes;
    use crate::sys;

    /// The open flags of `fd` as /proc/self/fdinfo shows them (octal).
    fn flags(fd: libc::c_int) -> libc::c_int {
        let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}")).expect("fdinfo");
        let line = info
            .lines()
            .find_map(|l| l.strip_prefix("flags:"))
            .expect("flags line");
        libc::c_int::from_str_radix(line.trim(), 8).expect("octal flags")
    }

    /// The network namespace is never in the launcher's clone: `full` has the sandbox's first
    /// process build it beside itself (`own_net`); `ns-only` and `landlock` (no caps layer:
    /// the mounts are locked) leave it to the command's nested namespace; `--net host` has
    /// none.
    #[test]
    fn the_network_namespace_is_not_made_at_clone() {
        use crate::policy::{NetMode, Policy, Profile};
        let ws = std::env::temp_dir();
        let cmd = super::Command {
            argv: vec!["true".into()],
            self_exe: None,
        };
        for (profile, net, own_net) in [
            (Profile::Full, NetMode::None, true),
            (Profile::Landlock, NetMode::None, false),
            (Profile::NsOnly, NetMode::None, false),
            (Profile::Full, NetMode::Host, false),
        ] {
            let mut policy = Policy::for_profile(profile, ws.clone());
            policy.net = net;
            policy.best_effort = true;
            let p = super::prepare(&policy, &cmd).expect("prepare");
            let newnet = libc::CLONE_NEWNET as libc::c_ulong;
            assert_eq!(p.clone_flags & newnet, 0, "{profile:?} {net:?}");
            assert_eq!(p.own_net, own_net, "{profile:?} {net:?}");
            let nested = p
                .lock_mounts
                .as_ref()
                .map(|l| l.unshare_flags & libc::CLONE_NEWNET);
            let want = (profile != Profile::Full).then_some(libc::CLONE_NEWNET);
            assert_eq!(nested, want, "{profile:?} {net:?}");
        }
    }

    /// Without an init there is no status pipe (its ends are -1, never a descriptor).
    #[test]
    fn no_status_pipe_without_an_init() {
        let p = Pipes::new(false, false).expect("pipes");
        assert_eq!((p.status_r, p.status_w), (-1, -1));
        for fd in [p.sync_r, p.sync_w, p.report_r, p.report_w] {
            assert!(fd >= 0);
            sys::close(fd);
        }
    }

    #[test]
    fn only_the_status_pipe_is_non_blocking_and_every_end_is_cloexec() {
        let p = Pipes::new(false, true).expect("pipes");
        for fd in [p.status_r, p.status_w] {
            assert_ne!(flags(fd) & libc::O_NONBLOCK, 0, "status pipe fd {fd}");
        }
        // The sync and report pipes block: the child waits on one, the parent on the other.
        for fd in [p.sync_r, p.sync_w, p.report_r, p.report_w] {
            assert_eq!(flags(fd) & libc::O_NONBLOCK, 0, "fd {fd}");
        }
        for fd in [
            p.sync_r, p.sync_w, p.report_r, p.report_w, p.status_r, p.status_w,
        ] {
            assert_ne!(flags(fd) & libc::O_CLOEXEC, 0, "fd {fd}");
            sys::close(fd);
        }
    }
}
