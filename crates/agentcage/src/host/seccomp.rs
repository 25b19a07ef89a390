//! seccomp: the caller's mode, the actions the kernel knows, and an allow-all filter installed
//! in a throwaway child.

use std::time::Instant;

use serde::Serialize;

use super::trial::{finish_child, signal_name, spawn_child, Child, Ended, Reporter};
use super::{errno_text, Support};
use crate::sys;

/// seccomp as detected.
#[derive(Debug, Clone, Serialize)]
pub struct SeccompInfo {
    /// An allow-all filter could be installed in a forked child (after no_new_privs).
    pub filter: Support,
    /// The caller's own mode (`PR_GET_SECCOMP`): 0 none, 2 filter; `None` = no seccomp.
    pub caller_mode: Option<i32>,
    /// Filter return actions the kernel knows (`SECCOMP_GET_ACTION_AVAIL`).
    pub actions: Vec<&'static str>,
}

const SECCOMP_ACTIONS: [(u32, &str); 8] = [
    (libc::SECCOMP_RET_KILL_PROCESS, "kill_process"),
    (libc::SECCOMP_RET_KILL_THREAD, "kill_thread"),
    (libc::SECCOMP_RET_TRAP, "trap"),
    (libc::SECCOMP_RET_ERRNO, "errno"),
    (libc::SECCOMP_RET_USER_NOTIF, "user_notif"),
    (libc::SECCOMP_RET_TRACE, "trace"),
    (libc::SECCOMP_RET_LOG, "log"),
    (libc::SECCOMP_RET_ALLOW, "allow"),
];

fn seccomp_actions() -> Vec<&'static str> {
    SECCOMP_ACTIONS
        .iter()
        .filter(|(action, _)| sys::seccomp_action_available(*action))
        .map(|(_, name)| *name)
        .collect()
}

const SECCOMP_STEP_NNP: u32 = 1;
const SECCOMP_STEP_INSTALL: u32 = 2;
const SECCOMP_STEP_VERIFY: u32 = 3;

/// Runs in the trial child after fork: async-signal-safe only.
fn seccomp_child(filter: &[libc::sock_filter], rep: &Reporter) -> i32 {
    if let Err(e) = sys::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) {
        return rep.fail(SECCOMP_STEP_NNP, e.0, 0);
    }
    if let Err(e) = sys::seccomp_set_filter(filter) {
        return rep.fail(SECCOMP_STEP_INSTALL, e.0, 0);
    }
    match sys::prctl(libc::PR_GET_SECCOMP, 0, 0, 0, 0) {
        Ok(2) => 0,
        Ok(mode) => rep.fail(SECCOMP_STEP_VERIFY, 0, mode as u32),
        Err(e) => rep.fail(SECCOMP_STEP_VERIFY, e.0, -1i32 as u32),
    }
}

pub(super) fn spawn_seccomp_trial() -> Result<Child, i32> {
    let filter = [libc::sock_filter {
        code: (libc::BPF_RET | libc::BPF_K) as u16,
        jt: 0,
        jf: 0,
        k: libc::SECCOMP_RET_ALLOW,
    }];
    spawn_child(|rep| seccomp_child(&filter, rep))
}

pub(super) fn finish_seccomp_trial(
    child: Result<Child, i32>,
    caller_mode: Option<i32>,
    deadline: Instant,
) -> SeccompInfo {
    let filter = match child {
        Err(errno) => Support::no(format!(
            "could not fork the trial child: {}",
            errno_text(errno)
        )),
        Ok(child) => match finish_child(child, deadline) {
            (Ended::Code(0), None) => match caller_mode {
                Some(2) => Support::yes_because(
                    "the caller already runs under a seccomp filter; ours stacks on top",
                ),
                _ => Support::yes(),
            },
            (_, Some(r)) => Support::no(match r.step {
                SECCOMP_STEP_NNP => {
                    format!("prctl(PR_SET_NO_NEW_PRIVS) failed: {}", errno_text(r.errno))
                }
                SECCOMP_STEP_VERIFY => format!(
                    "a filter was installed but PR_GET_SECCOMP reports mode {}",
                    r.detail as i32
                ),
                _ if r.errno == libc::EINVAL && caller_mode.is_none() => {
                    "the kernel is built without CONFIG_SECCOMP_FILTER (EINVAL)".to_string()
                }
                _ => format!(
                    "seccomp(SECCOMP_SET_MODE_FILTER) failed: {}",
                    errno_text(r.errno)
                ),
            }),
            (Ended::Signal(sig), None) => Support::no(format!(
                "the trial child was killed by {}",
                signal_name(sig)
            )),
            (Ended::Code(code), None) => Support::no(format!("the trial child exited with {code}")),
            (Ended::TimedOut, None) => Support::no("the trial child hung"),
            (Ended::Lost, None) => Support::no("the trial child vanished without a result"),
        },
    };
    SeccompInfo {
        filter,
        caller_mode,
        actions: seccomp_actions(),
    }
}
