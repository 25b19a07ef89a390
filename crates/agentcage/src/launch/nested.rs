//! The nested rung (issue #14): `full` without namespaces, for hosts where no user namespace
//! can be created (a container's default seccomp profile, Ubuntu's AppArmor restriction,
//! `user.max_user_namespaces=0`). What stays: Landlock on host paths (system dirs read/exec,
//! /etc, /proc and a few /dev nodes read, workspace, /tmp, /dev/shm and `--rw` writable),
//! Landlock TCP and scopes, the `full` seccomp filter (stacked on the caller's), capabilities
//! dropped with locked securebits, no_new_privs, rlimits (and a cgroup where delegated), the
//! environment and fd hygiene and the pty relay. What goes: the pid, mount, network, IPC, UTS
//! and cgroup namespaces and the composed root (see `ladder::nested_lost`).
//!
//! As root, the command must not keep host uid 0: [`prepare`] picks the workspace owner's
//! ids when it is not root (the usual devcontainer layout), else `--host-uid`/`--host-gid`
//! (65534 by default) when they can write the workspace; a root-owned workspace that nothing
//! can remap is refused unless the policy says `nested_root` (explicit consent: uid 0 with an
//! empty bounding set, locked securebits and no_new_privs; Landlock still confines writes and
//! seccomp still refuses set-id modes). [`apply`] (child, pre-exec) switches ids before the
//! capability drop: SECBIT_NO_SETUID_FIXUP keeps the capabilities across setresuid so
//! `caps::apply` can still empty the bounding set and lock the securebits right after.

use std::os::unix::fs::MetadataExt;

use crate::error::{Error, PolicyError, SetupError, Step};
use crate::policy::{Policy, Profile};
use crate::sys::{self, Errno};

/// SECBIT_NO_SETUID_FIXUP (capabilities(7)): setresuid keeps the capability sets.
const SECBIT_NO_SETUID_FIXUP: libc::c_ulong = 1 << 2;

/// The ids the command switches to (nested rung, root caller), or only the death signal.
#[derive(Debug, Clone, Copy)]
pub(crate) struct NestedIds {
    /// (uid, gid) to switch to; `None`: keep the caller's (unprivileged caller, or uid 0
    /// with consent, which only drops its groups).
    pub(crate) switch: Option<(u32, u32)>,
    /// The caller is root: drop its supplementary groups.
    pub(crate) as_root: bool,
}

impl NestedIds {
    /// Whether the command keeps ids for which file permissions protect less than for
    /// "other": uid 0 (with consent), or an unprivileged caller's supplementary groups. Then
    /// Landlock reads only the world-readable entries of /etc.
    pub(crate) fn keeps_privileged_ids(&self) -> bool {
        match (self.switch, self.as_root) {
            (Some(_), _) => false,
            (None, true) => true,
            (None, false) => has_supplementary_groups(),
        }
    }
}

/// Whether this process has a supplementary group other than its effective gid.
fn has_supplementary_groups() -> bool {
    let egid = sys::getegid().to_string();
    std::fs::read_to_string("/proc/self/status").map_or(true, |s| {
        s.lines()
            .find_map(|l| l.strip_prefix("Groups:"))
            .is_some_and(|g| g.split_whitespace().any(|x| x != egid))
    })
}

impl NestedIds {
    /// USER and LOGNAME of the command: the host's name of the uid it runs as (its
    /// /etc/passwd is the one the command sees), or `None` when unknown.
    pub(crate) fn user_name(&self, caller_uid: u32) -> Option<String> {
        let uid = self.switch.map_or(caller_uid, |(u, _)| u).to_string();
        let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
        passwd.lines().find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() > 2 && f[2] == uid).then(|| f[0].to_string())
        })
    }
}

/// [`Step::NestedIds`] sub-steps.
const KEEP_CAPS: u32 = 0;
const SETGID: u32 = 1;
const SETGROUPS: u32 = 2;
const SETUID: u32 = 3;
const KEYRING: u32 = 4;

/// Parent side: the ids of a nested run, and the lines `run -v` prints about them.
///
/// # Errors
/// [`Error::Unenforceable`] for a root-owned workspace without consent; [`PolicyError::
/// HostRoot`] for `--host-uid 0`.
pub(crate) fn prepare(
    policy: &Policy,
    caller_uid: u32,
    enforcement: &mut Vec<(String, String)>,
) -> Result<Option<NestedIds>, Error> {
    if policy.profile != Profile::Nested {
        return Ok(None);
    }
    if caller_uid != 0 {
        enforcement.push((
            "nested".into(),
            format!("runs as your uid {caller_uid} (no user namespace to map another)"),
        ));
        return Ok(Some(NestedIds {
            switch: None,
            as_root: false,
        }));
    }
    let md = std::fs::metadata(&policy.workspace).map_err(|_| PolicyError::WorkspaceMissing {
        path: policy.workspace.clone(),
    })?;
    let (uid, gid, why) = if md.uid() != 0 {
        (md.uid(), md.gid(), "the workspace's owner")
    } else if policy.nested_root {
        enforcement.push((
            "nested".into(),
            "runs as uid 0 (--allow-nested-root): no capabilities (empty bounding set, locked \
             securebits, no_new_privs), so no DAC override and nothing setuid or file-capability \
             can give them back; but every root-owned file the Landlock allow-list reaches is \
             its own (the workspace, /tmp's root files, /etc files readable by root only are \
             left out of the allow-list) and a root-owned unix socket it can reach (e.g. a \
             mounted docker.sock) accepts it"
                .into(),
        ));
        return Ok(Some(NestedIds {
            switch: None,
            as_root: true,
        }));
    } else {
        (
            policy.host_uid,
            policy.host_gid,
            "--host-uid (the workspace is root's)",
        )
    };
    if uid == 0 || gid == 0 {
        return Err(PolicyError::HostRoot.into());
    }
    let can_write = md.uid() == uid || md.mode() & 0o002 != 0;
    if !can_write {
        return Err(Error::Unenforceable {
            profile: policy.profile.name().into(),
            cause: crate::error::Unenforceable::NestedRootWorkspace {
                workspace: policy.workspace.clone(),
                uid,
            },
            hint: Some(
                "chown the workspace to a non-root user (the sandbox then runs as that user), run \
                 the container as the workspace's owner (docker run --user UID), or pass \
                 --allow-nested-root to run as uid 0 with no capabilities (Landlock confines \
                 writes to the workspace and /tmp; set-id creation stays refused)"
                    .into(),
            ),
        });
    }
    enforcement.push((
        "nested".into(),
        format!("as root: the command runs as uid {uid} gid {gid}, {why}, with no groups"),
    ));
    Ok(Some(NestedIds {
        switch: Some((uid, gid)),
        as_root: true,
    }))
}

/// Child side (the command's process, after Landlock and before `caps::apply`): the switch
/// to the prepared ids, a fresh session keyring (the caller's is not namespaced) and
/// PDEATHSIG (no pid namespace kills the command with the launcher).
///
/// Runs in the child after clone: async-signal-safe only.
pub(crate) fn apply(n: &NestedIds) -> Result<(), SetupError> {
    let fail = |sub| move |e| SetupError::at(Step::NestedIds, sub, 0, e);
    if let Some((uid, gid)) = n.switch {
        // Keep the capabilities across setresuid: caps::apply still needs CAP_SETPCAP to
        // empty the bounding set and lock the securebits.
        sys::prctl(libc::PR_SET_SECUREBITS, SECBIT_NO_SETUID_FIXUP, 0, 0, 0)
            .map_err(fail(KEEP_CAPS))?;
        sys::setresgid(gid).map_err(fail(SETGID))?;
        sys::setgroups_empty().map_err(fail(SETGROUPS))?;
        sys::setresuid(uid).map_err(fail(SETUID))?;
    } else if n.as_root {
        sys::setgroups_empty().map_err(fail(SETGROUPS))?;
    }
    match sys::join_new_session_keyring() {
        // A seccomp filter of the container may refuse keyctl: nothing to leave then.
        Err(e) if matches!(e.0, libc::ENOSYS | libc::EPERM | libc::EACCES) => {}
        r => {
            r.map_err(fail(KEYRING))?;
        }
    }
    // The id switch cleared it; execve keeps it.
    let _ = sys::prctl(
        libc::PR_SET_PDEATHSIG,
        libc::SIGKILL as libc::c_ulong,
        0,
        0,
        0,
    );
    Ok(())
}

/// The step of a failed [`apply`].
pub(crate) fn describe(n: Option<&NestedIds>, sub: u32) -> String {
    let (uid, gid) = n.and_then(|n| n.switch).unwrap_or((0, 0));
    match sub {
        KEEP_CAPS => "prctl(PR_SET_SECUREBITS, NO_SETUID_FIXUP) before the id switch".into(),
        SETGID => format!("setresgid({gid}) (nested rung)"),
        SETGROUPS => "setgroups(0, NULL) (drop root's supplementary groups)".into(),
        SETUID => format!("setresuid({uid}) (nested rung)"),
        _ => "keyctl(KEYCTL_JOIN_SESSION_KEYRING, NULL) (a fresh session keyring)".into(),
    }
}

/// Hint of a failed [`apply`].
pub(crate) fn hint(e: Errno) -> Option<String> {
    (e.0 == libc::EINVAL).then(|| {
        "the uid or gid is not mapped in the launcher's user namespace (pick another \
         --host-uid/--host-gid, or chown the workspace to a mapped user)"
            .into()
    })
}
