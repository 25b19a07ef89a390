//! User namespaces, tried for real in a throwaway child that does what the launcher does, and
//! the hints that explain a failure (pure, unit-tested).

use std::ffi::CString;
use std::path::Path;
use std::time::Instant;

use serde::Serialize;

use super::sysctl::read_sysctl_int;
use super::trial::{
    finish_child, signal_name, spawn_child, write_proc_file, Child, Ended, Reporter,
};
use super::{detect_caller, errno_text, Caller, CHILD_DEADLINE};
use crate::sys::{self, Errno};

/// User-namespace support, tried for real.
#[derive(Debug, Clone, Serialize)]
pub struct UserNamespaces {
    /// The trial as the calling user.
    pub as_caller: UsernsTrial,
    /// The trial as an unprivileged user: as root, after `setresuid(65534)`; otherwise the
    /// same as `as_caller`.
    pub for_unprivileged: UsernsTrial,
    /// The distro knobs that gate unprivileged user namespaces.
    pub knobs: UsernsKnobs,
}

/// One user-namespace trial: what the launcher does, up to a fresh /proc.
#[derive(Debug, Clone, Serialize)]
pub struct UsernsTrial {
    /// Host uid the trial ran as.
    pub uid: u32,
    /// Every step succeeded.
    pub works: bool,
    /// The first step that failed.
    pub failed_step: Option<UsernsStep>,
    /// Its errno.
    pub errno: Option<i32>,
    /// For `unshare-namespaces`: the namespace the kernel refused (net, ipc, ...).
    pub namespace: Option<String>,
    /// What went wrong, in words.
    pub reason: Option<String>,
    /// How to fix it on this host, when we know.
    pub fix: Option<String>,
}

/// The steps of a user-namespace trial, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum UsernsStep {
    /// Forking the trial child.
    Fork,
    /// setgroups/setresgid/setresuid to the unprivileged uid (root only).
    DropPrivileges,
    /// `unshare(CLONE_NEWUSER)`.
    UnshareUser,
    /// Writing `deny` to /proc/self/setgroups.
    WriteSetgroups,
    /// Writing /proc/self/uid_map.
    WriteUidMap,
    /// Writing /proc/self/gid_map.
    WriteGidMap,
    /// `unshare` of the mount, pid, net, ipc, uts and cgroup namespaces.
    UnshareNamespaces,
    /// Making the mount tree private (`MS_REC|MS_PRIVATE` on /).
    MakeMountsPrivate,
    /// Mounting a tmpfs.
    MountTmpfs,
    /// Forking pid 1 of the new pid namespace.
    ForkInit,
    /// Mounting a fresh proc from inside the new pid namespace.
    MountProc,
    /// The trial child was killed by a signal (e.g. a seccomp filter's SIGSYS).
    Killed,
    /// The trial did not finish in time.
    Timeout,
}

impl UsernsStep {
    const ORDER: [UsernsStep; 13] = [
        UsernsStep::Fork,
        UsernsStep::DropPrivileges,
        UsernsStep::UnshareUser,
        UsernsStep::WriteSetgroups,
        UsernsStep::WriteUidMap,
        UsernsStep::WriteGidMap,
        UsernsStep::UnshareNamespaces,
        UsernsStep::MakeMountsPrivate,
        UsernsStep::MountTmpfs,
        UsernsStep::ForkInit,
        UsernsStep::MountProc,
        UsernsStep::Killed,
        UsernsStep::Timeout,
    ];

    fn code(self) -> u32 {
        self as u32
    }

    fn from_code(code: u32) -> Option<UsernsStep> {
        UsernsStep::ORDER.into_iter().find(|s| s.code() == code)
    }

    /// What the step does, for messages.
    pub fn describe(self) -> &'static str {
        match self {
            UsernsStep::Fork => "fork the trial child",
            UsernsStep::DropPrivileges => "drop to uid/gid 65534",
            UsernsStep::UnshareUser => "unshare(CLONE_NEWUSER)",
            UsernsStep::WriteSetgroups => "write /proc/self/setgroups",
            UsernsStep::WriteUidMap => "write /proc/self/uid_map",
            UsernsStep::WriteGidMap => "write /proc/self/gid_map",
            UsernsStep::UnshareNamespaces => "unshare mount/pid/net/ipc/uts/cgroup namespaces",
            UsernsStep::MakeMountsPrivate => "make / private in the new mount namespace",
            UsernsStep::MountTmpfs => "mount a tmpfs in the new mount namespace",
            UsernsStep::ForkInit => "fork pid 1 of the new pid namespace",
            UsernsStep::MountProc => "mount a fresh /proc in the new pid namespace",
            UsernsStep::Killed => "run the trial (child killed)",
            UsernsStep::Timeout => "finish the trial in time",
        }
    }
}

/// The namespaces unshared after the user namespace, each tried alone on failure to name the
/// culprit.
const OTHER_NAMESPACES: [(libc::c_int, &str); 6] = [
    (libc::CLONE_NEWNS, "mount"),
    (libc::CLONE_NEWPID, "pid"),
    (libc::CLONE_NEWNET, "net"),
    (libc::CLONE_NEWIPC, "ipc"),
    (libc::CLONE_NEWUTS, "uts"),
    (libc::CLONE_NEWCGROUP, "cgroup"),
];

/// Everything the userns trial child touches, built before the fork.
pub(super) struct UsernsPlan {
    uid: u32,
    drop_to: Option<(u32, u32)>,
    uid_map: Vec<u8>,
    gid_map: Vec<u8>,
    tmpfs_target: CString,
    proc_target: CString,
}

impl UsernsPlan {
    /// `uid`/`gid`: the host ids the trial runs as (mapped to 0 inside).
    pub(super) fn new(uid: u32, gid: u32, drop_to: Option<(u32, u32)>) -> UsernsPlan {
        // The tmpfs goes over an existing directory; it lives only in the child's private
        // mount namespace.
        let target = ["/tmp", "/mnt", "/run", "/var/tmp", "/dev"]
            .into_iter()
            .find(|p| Path::new(p).is_dir())
            .unwrap_or("/tmp");
        UsernsPlan {
            uid,
            drop_to,
            uid_map: format!("0 {uid} 1\n").into_bytes(),
            gid_map: format!("0 {gid} 1\n").into_bytes(),
            tmpfs_target: CString::new(target).unwrap_or_default(),
            proc_target: CString::new(format!("{target}/proc")).unwrap_or_default(),
        }
    }
}

/// Runs in the trial child after fork: async-signal-safe only.
fn userns_child(plan: &UsernsPlan, rep: &Reporter) -> i32 {
    let fail = |step: UsernsStep, e: Errno, detail: u32| rep.fail(step.code(), e.0, detail);
    // Kill this child if the detecting thread goes away.
    let _ = sys::prctl(
        libc::PR_SET_PDEATHSIG,
        libc::SIGKILL as libc::c_ulong,
        0,
        0,
        0,
    );
    // We wait for pid 1 below: an inherited SIG_IGN would auto-reap it and hide its status.
    sys::signal_default(libc::SIGCHLD);
    if let Some((uid, gid)) = plan.drop_to {
        // Raw syscalls, not the libc wrappers: after a raw fork glibc still believes the
        // parent's other threads exist, and its set*id wrappers would signal them and wait
        // forever (the setxid broadcast). The kernel calls change just this (only) thread.
        if let Err(e) = sys::setgroups_empty() {
            return fail(UsernsStep::DropPrivileges, e, 0);
        }
        if let Err(e) = sys::setresgid(gid) {
            return fail(UsernsStep::DropPrivileges, e, 1);
        }
        // Dropping every uid to non-zero also clears our capabilities.
        if let Err(e) = sys::setresuid(uid) {
            return fail(UsernsStep::DropPrivileges, e, 2);
        }
        // The uid change made us non-dumpable, which would make /proc/self/*_map root-owned.
        let _ = sys::prctl(libc::PR_SET_DUMPABLE, 1, 0, 0, 0);
    }
    // This child is single-threaded, as unshare(CLONE_NEWUSER) requires.
    if let Err(e) = sys::unshare(libc::CLONE_NEWUSER) {
        return fail(UsernsStep::UnshareUser, e, 0);
    }
    match write_proc_file(c"/proc/self/setgroups", b"deny") {
        Ok(()) | Err(libc::ENOENT) => {} // before 3.19 there is no setgroups file
        Err(e) => return rep.fail(UsernsStep::WriteSetgroups.code(), e, 0),
    }
    if let Err(e) = write_proc_file(c"/proc/self/uid_map", &plan.uid_map) {
        return rep.fail(UsernsStep::WriteUidMap.code(), e, 0);
    }
    if let Err(e) = write_proc_file(c"/proc/self/gid_map", &plan.gid_map) {
        return rep.fail(UsernsStep::WriteGidMap.code(), e, 0);
    }
    let all = OTHER_NAMESPACES.iter().fold(0, |acc, (flag, _)| acc | flag);
    if let Err(errno) = sys::unshare(all) {
        // Name the culprit: try each namespace alone (we exit right after anyway).
        for (flag, _) in OTHER_NAMESPACES {
            if let Err(e) = sys::unshare(flag) {
                return fail(UsernsStep::UnshareNamespaces, e, flag as u32);
            }
        }
        return fail(UsernsStep::UnshareNamespaces, errno, 0);
    }
    let private = libc::MS_REC | libc::MS_PRIVATE;
    if let Err(e) = sys::mount(None, c"/", None, private, None) {
        return fail(UsernsStep::MakeMountsPrivate, e, 0);
    }
    let tmpfs = sys::mount(
        Some(c"tmpfs"),
        &plan.tmpfs_target,
        Some(c"tmpfs"),
        libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
        Some(c"size=64k,mode=0755"),
    );
    if let Err(e) = tmpfs {
        return fail(UsernsStep::MountTmpfs, e, 0);
    }
    // Our first child is pid 1 of the new pid namespace; proc must be mounted from inside it.
    let pid = match sys::raw_fork() {
        Ok(pid) => pid,
        Err(e) => return fail(UsernsStep::ForkInit, e, 0),
    };
    if pid == 0 {
        let _ = sys::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0,
            0,
            0,
        );
        // The directory is created in our private tmpfs.
        if let Err(e) = sys::mkdir(&plan.proc_target, 0o755) {
            sys::exit(fail(UsernsStep::MountProc, e, 1));
        }
        let proc = sys::mount(
            Some(c"proc"),
            &plan.proc_target,
            Some(c"proc"),
            libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
            None,
        );
        // _exit: this grandchild must not run inherited destructors.
        sys::exit(match proc {
            Err(e) => fail(UsernsStep::MountProc, e, 2),
            Ok(()) => 0,
        });
    }
    let status = match sys::waitpid(pid, 0) {
        Ok((_, status)) => status,
        Err(e) => return fail(UsernsStep::ForkInit, e, 1),
    };
    if libc::WIFSIGNALED(status) {
        return rep.fail(UsernsStep::Killed.code(), 0, libc::WTERMSIG(status) as u32);
    }
    // A failing grandchild already wrote its record.
    libc::WEXITSTATUS(status)
}

pub(super) fn spawn_userns_trial(plan: &UsernsPlan) -> Result<Child, i32> {
    spawn_child(|rep| userns_child(plan, rep))
}

pub(super) fn finish_userns_trial(
    child: Result<Child, i32>,
    plan: &UsernsPlan,
    knobs: &UsernsKnobs,
    deadline: Instant,
) -> UsernsTrial {
    let (step, errno, detail) = match child {
        Err(errno) => (Some(UsernsStep::Fork), errno, 0),
        Ok(child) => match finish_child(child, deadline) {
            (_, Some(r)) => (UsernsStep::from_code(r.step), r.errno, r.detail),
            (Ended::Code(0), None) => (None, 0, 0),
            (Ended::Code(_), None) => (Some(UsernsStep::Killed), 0, 0),
            (Ended::Signal(sig), None) => (Some(UsernsStep::Killed), 0, sig as u32),
            (Ended::TimedOut, None) => (Some(UsernsStep::Timeout), 0, 0),
            (Ended::Lost, None) => (Some(UsernsStep::Killed), 0, 0),
        },
    };
    userns_trial_from(plan.uid, step, errno, detail, knobs)
}

/// Turns a trial's raw outcome into words and a fix.
pub(super) fn userns_trial_from(
    uid: u32,
    step: Option<UsernsStep>,
    errno: i32,
    detail: u32,
    knobs: &UsernsKnobs,
) -> UsernsTrial {
    let Some(step) = step else {
        return UsernsTrial {
            uid,
            works: true,
            failed_step: None,
            errno: None,
            namespace: None,
            reason: None,
            fix: None,
        };
    };
    let namespace = (step == UsernsStep::UnshareNamespaces)
        .then(|| {
            OTHER_NAMESPACES
                .iter()
                .find(|(flag, _)| *flag as u32 == detail)
                .map(|(_, name)| (*name).to_string())
        })
        .flatten();
    let mut reason = match step {
        UsernsStep::Killed if detail != 0 => format!(
            "the trial child was killed by {} (a seccomp filter that kills instead of failing?)",
            signal_name(detail as i32)
        ),
        UsernsStep::Killed => "the trial child failed without reporting a step".to_string(),
        UsernsStep::Timeout => format!("the trial did not finish within {CHILD_DEADLINE:?}"),
        _ => format!("{} failed with {}", step.describe(), errno_text(errno)),
    };
    if let Some(ns) = &namespace {
        reason.push_str(&format!(" (the {ns} namespace)"));
    }
    let fix = match step {
        UsernsStep::UnshareUser
        | UsernsStep::WriteSetgroups
        | UsernsStep::WriteUidMap
        | UsernsStep::WriteGidMap => userns_hint_from(errno, knobs),
        UsernsStep::MountProc if errno == libc::EPERM => Some(
            "the kernel only lets a user namespace mount proc when a fully visible /proc exists \
             in its mount namespace; container runtimes mask parts of /proc (e.g. Docker's \
             /proc/kcore, /proc/sys): run with an unmasked /proc (docker run \
             --security-opt systempaths=unconfined) or run the nested rung (--best-effort or \
             --profile nested)"
                .to_string(),
        ),
        UsernsStep::UnshareNamespaces | UsernsStep::MountTmpfs | UsernsStep::MakeMountsPrivate
            if errno == libc::EPERM =>
        {
            Some(
                "a security module or a seccomp filter denies this inside the user namespace; \
                 check `dmesg` for AppArmor/SELinux denials"
                    .to_string(),
            )
        }
        UsernsStep::UnshareNamespaces if errno == libc::ENOSPC => Some(format!(
            "a namespace count limit is exhausted (user.max_{}_namespaces)",
            namespace.as_deref().unwrap_or("*")
        )),
        UsernsStep::Killed => knobs.seccomp_filtered.then(|| {
            "the caller runs under a seccomp filter that kills on unshare/mount".to_string()
        }),
        _ => None,
    };
    UsernsTrial {
        uid,
        works: false,
        failed_step: Some(step),
        errno: (errno != 0).then_some(errno),
        namespace,
        reason: Some(reason),
        fix,
    }
}

/// The distro and kernel knobs that gate unprivileged user namespaces (absent = `None`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UsernsKnobs {
    /// `kernel.unprivileged_userns_clone` (Debian, older Ubuntu, linux-hardened): 0 = denied.
    pub unprivileged_userns_clone: Option<i64>,
    /// `user.max_user_namespaces`: 0 = denied for everyone.
    pub max_user_namespaces: Option<i64>,
    /// `kernel.apparmor_restrict_unprivileged_userns` (Ubuntu 23.10+): 1 = only profiles that
    /// grant `userns` may create one with capabilities.
    pub apparmor_restrict_unprivileged_userns: Option<i64>,
    /// The caller has CAP_SYS_ADMIN (the knobs above do not apply to it).
    pub cap_sys_admin: bool,
    /// The caller already runs under a seccomp filter.
    pub seccomp_filtered: bool,
    /// The container runtime, if any (for the hint).
    pub container: Option<String>,
}

impl UsernsKnobs {
    pub(super) fn read(caller: &Caller) -> UsernsKnobs {
        UsernsKnobs {
            unprivileged_userns_clone: read_sysctl_int("kernel/unprivileged_userns_clone"),
            max_user_namespaces: read_sysctl_int("user/max_user_namespaces"),
            apparmor_restrict_unprivileged_userns: read_sysctl_int(
                "kernel/apparmor_restrict_unprivileged_userns",
            ),
            cap_sys_admin: caller.cap_sys_admin,
            seccomp_filtered: caller.seccomp_mode == Some(2),
            container: caller.container.clone(),
        }
    }
}

/// Given the errno of a failed `clone(CLONE_NEWUSER)`/`unshare(CLONE_NEWUSER)` (or of the
/// `uid_map` write that follows it), explains why and how to fix it on this host.
///
/// Reads the relevant sysctls and /proc/self/status; call it only on the failure path.
/// Returns `None` when the errno is not one user-namespace creation produces.
pub fn userns_failure_hint(errno: i32) -> Option<String> {
    userns_hint_from(errno, &UsernsKnobs::read(&detect_caller()))
}

/// Whether we run in the initial user namespace (its uid_map maps every id).
fn initial_user_ns() -> bool {
    std::fs::read_to_string("/proc/self/uid_map")
        .map(|m| m.split_whitespace().collect::<Vec<_>>() == ["0", "0", "4294967295"])
        .unwrap_or(true)
}

/// [`userns_failure_hint`] on given knob values (pure; unit-tested).
fn userns_hint_from(errno: i32, k: &UsernsKnobs) -> Option<String> {
    let in_container = k
        .container
        .as_deref()
        .map(|c| format!(" (we appear to run in {c})"))
        .unwrap_or_default();
    match errno {
        libc::EPERM | libc::EACCES => {
            if !k.cap_sys_admin && k.unprivileged_userns_clone == Some(0) {
                return Some(
                    "unprivileged user namespaces are disabled by kernel.unprivileged_userns_clone=0; \
                     enable them with `sysctl -w kernel.unprivileged_userns_clone=1` (persist it in \
                     /etc/sysctl.d/)"
                        .to_string(),
                );
            }
            if !k.cap_sys_admin && k.apparmor_restrict_unprivileged_userns == Some(1) {
                return Some(
                    "unprivileged user namespaces are disabled by \
                     kernel.apparmor_restrict_unprivileged_userns=1; allow them with an AppArmor \
                     profile granting `userns` for the agentcage binary, or \
                     `sysctl -w kernel.apparmor_restrict_unprivileged_userns=0`"
                        .to_string(),
                );
            }
            if k.seccomp_filtered {
                return Some(format!(
                    "the caller runs under a seccomp filter that denies unshare/clone with \
                     CLONE_NEWUSER{in_container}; Docker's and Podman's default profiles do: run \
                     the container with a seccomp profile that allows them (e.g. \
                     `--security-opt seccomp=unconfined`), or run the nested rung (--best-effort \
                     or --profile nested: no namespaces, see docs/CONTAINERS.md)"
                ));
            }
            if k.container.is_some() {
                return Some(format!(
                    "user namespace creation is denied{in_container}; the runtime's seccomp \
                     profile, LSM policy or a chroot may forbid it: allow nested user namespaces \
                     in the container configuration, or run the nested rung (--best-effort or \
                     --profile nested)"
                ));
            }
            Some(
                "user namespace creation is denied: the caller may be chrooted, or an LSM \
                 (AppArmor, SELinux) denies it; check `dmesg` for denials"
                    .to_string(),
            )
        }
        libc::ENOSPC | libc::EUSERS => Some(match k.max_user_namespaces {
            Some(0) if !initial_user_ns() => "user namespaces are disabled in the user \
                namespace we run in (its user.max_user_namespaces is 0, as `bwrap \
                --disable-userns` or an outer sandbox sets): only whoever created it can raise \
                it; run the nested rung (--best-effort or --profile nested)"
                .to_string(),
            Some(0) => "user namespaces are disabled by user.max_user_namespaces=0; enable them \
                        with `sysctl -w user.max_user_namespaces=15000`"
                .to_string(),
            Some(n) => format!(
                "the user namespace limit is exhausted (user.max_user_namespaces={n}, the \
                 per-user count, or the nesting depth of 32); raise it with \
                 `sysctl -w user.max_user_namespaces=N` or end leftover sandboxes"
            ),
            None => "the user namespace limit or nesting depth (32) is exhausted".to_string(),
        }),
        libc::EINVAL => Some(
            "the kernel does not support user namespaces (built without CONFIG_USER_NS), or \
             the caller is multi-threaded (unshare only)"
                .to_string(),
        ),
        libc::ENOMEM => Some(
            "out of memory, or the pid limit of the caller's pid namespace is reached".to_string(),
        ),
        libc::ENOSYS => Some(format!(
            "clone/unshare is not available: a seccomp filter returns ENOSYS for it{in_container}"
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::testing::knobs;
    use crate::host::trial::Record;

    #[test]
    fn hint_names_the_apparmor_knob() {
        let k = UsernsKnobs {
            apparmor_restrict_unprivileged_userns: Some(1),
            ..knobs()
        };
        let h = userns_hint_from(libc::EPERM, &k).unwrap();
        assert!(
            h.contains("kernel.apparmor_restrict_unprivileged_userns=1"),
            "{h}"
        );
        assert!(h.contains("`userns`"), "{h}");
        assert!(
            h.contains("sysctl -w kernel.apparmor_restrict_unprivileged_userns=0"),
            "{h}"
        );
        // The same failure surfaces as EACCES/EPERM at the uid_map write on Ubuntu.
        assert_eq!(userns_hint_from(libc::EACCES, &k).unwrap(), h);
    }

    #[test]
    fn hint_prefers_the_debian_knob_and_skips_knobs_for_cap_sys_admin() {
        let k = UsernsKnobs {
            unprivileged_userns_clone: Some(0),
            apparmor_restrict_unprivileged_userns: Some(1),
            ..knobs()
        };
        let h = userns_hint_from(libc::EPERM, &k).unwrap();
        assert!(h.contains("kernel.unprivileged_userns_clone=0"), "{h}");
        assert!(
            h.contains("sysctl -w kernel.unprivileged_userns_clone=1"),
            "{h}"
        );
        let root = UsernsKnobs {
            cap_sys_admin: true,
            ..k
        };
        let h = userns_hint_from(libc::EPERM, &root).unwrap();
        assert!(!h.contains("unprivileged_userns_clone"), "{h}");
        assert!(!h.contains("apparmor_restrict"), "{h}");
    }

    #[test]
    fn hint_blames_a_container_seccomp_filter() {
        let k = UsernsKnobs {
            seccomp_filtered: true,
            container: Some("docker".into()),
            ..knobs()
        };
        let h = userns_hint_from(libc::EPERM, &k).unwrap();
        assert!(h.contains("seccomp"), "{h}");
        assert!(h.contains("docker"), "{h}");
        assert!(h.contains("--security-opt seccomp="), "{h}");
    }

    #[test]
    fn hint_for_limits_and_unknown_errnos() {
        let zero = UsernsKnobs {
            max_user_namespaces: Some(0),
            ..knobs()
        };
        let h = userns_hint_from(libc::ENOSPC, &zero).unwrap();
        assert!(h.contains("user.max_user_namespaces=0"), "{h}");
        let h = userns_hint_from(libc::ENOSPC, &knobs()).unwrap();
        assert!(h.contains("user.max_user_namespaces=15000"), "{h}");
        assert!(userns_hint_from(libc::EINVAL, &knobs())
            .unwrap()
            .contains("CONFIG_USER_NS"));
        assert_eq!(userns_hint_from(libc::EBADF, &knobs()), None);
        assert_eq!(userns_hint_from(0, &knobs()), None);
    }

    #[test]
    fn trial_outcome_turns_into_words() {
        let k = UsernsKnobs {
            apparmor_restrict_unprivileged_userns: Some(1),
            ..knobs()
        };
        let t = userns_trial_from(1000, Some(UsernsStep::WriteUidMap), libc::EPERM, 0, &k);
        assert!(!t.works);
        assert_eq!(t.errno, Some(libc::EPERM));
        let reason = t.reason.unwrap();
        assert!(
            reason.contains("uid_map") && reason.contains("EPERM"),
            "{reason}"
        );
        assert!(t.fix.unwrap().contains("apparmor"));
        let t = userns_trial_from(
            1000,
            Some(UsernsStep::UnshareNamespaces),
            libc::EPERM,
            libc::CLONE_NEWNET as u32,
            &k,
        );
        assert_eq!(t.namespace.as_deref(), Some("net"));
        let t = userns_trial_from(1000, Some(UsernsStep::Killed), 0, libc::SIGSYS as u32, &k);
        assert!(t.reason.unwrap().contains("SIGSYS"));
        let t = userns_trial_from(1000, None, 0, 0, &k);
        assert!(t.works && t.reason.is_none() && t.failed_step.is_none());
    }

    #[test]
    fn record_round_trips_and_steps_have_codes() {
        let r = Record {
            step: 7,
            errno: -3,
            detail: 0xdead_beef,
        };
        assert_eq!(Record::from_bytes(&r.to_bytes()), r);
        for s in UsernsStep::ORDER {
            assert_eq!(UsernsStep::from_code(s.code()), Some(s));
        }
        assert_eq!(UsernsStep::from_code(99), None);
    }
}
