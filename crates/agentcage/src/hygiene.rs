//! Hygiene: what the sandbox inherits from the caller besides its files. The environment
//! (an allow-list), the fds (`--keep-fd`, everything else close-on-exec), the session and the
//! terminal (a new session; the relay's pty or pipes instead of the caller's terminal).
//!
//! Parent: [`environment`], [`keep_fds`]. Child (pre-exec, no allocation): [`apply_stdio_pipes`],
//! [`init_session`] (the init) and [`apply`] (the command). Failures are [`Step::Setsid`],
//! [`Step::ControllingTty`] (named sub-steps) and [`Step::Fds`] (index: the fd).

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::error::{Error, PolicyError, SetupError, Step};
use crate::policy::Policy;
use crate::sys;

/// Default PATH inside when the caller has none.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Environment variables the hygiene layer lets through (plus `LC_*`).
pub const ENV_ALLOW: &[&str] = &["PATH", "TERM", "LANG", "TZ", "COLORTERM", "NO_COLOR"];

/// [`Step::Setsid`] sub-steps.
pub(crate) const SETSID: u32 = 0;
const SETPGID: u32 = 1;
/// [`Step::ControllingTty`] sub-steps (the index: the stdio fd, for the dup2s).
pub(crate) const DUP_PTY: u32 = 0;
pub(crate) const SET_CTTY: u32 = 1;
const BLOCK_TTOU: u32 = 2;
const TCSETPGRP: u32 = 3;
/// Receiving the pty from the launcher (see `launch/pty.rs`).
pub(crate) const OPEN_PTY: u32 = 4;
const DUP_PIPE: u32 = 5;

/// The command's environment. With hygiene: the allow-list, `--pass-env`, a PATH, HOME
/// (`home` with a mount namespace, else the caller's) and USER/LOGNAME; without, the
/// caller's whole environment. `--env` is applied last either way.
pub(crate) fn environment(
    policy: &Policy,
    hygiene: bool,
    home: &Path,
    mount_ns: bool,
) -> Vec<(OsString, OsString)> {
    let mut env: Vec<(OsString, OsString)> = Vec::new();
    if hygiene {
        for (k, v) in std::env::vars_os() {
            let kb = k.as_bytes();
            if ENV_ALLOW.iter().any(|a| a.as_bytes() == kb) || kb.starts_with(b"LC_") {
                env.push((k, v));
            }
        }
        for k in &policy.pass_env {
            if let Some(v) = std::env::var_os(k) {
                env.retain(|(ek, _)| ek != OsStr::new(k));
                env.push((k.into(), v));
            }
        }
        if !env.iter().any(|(k, _)| k == "PATH") {
            env.push(("PATH".into(), DEFAULT_PATH.into()));
        }
        let home_val: OsString = if mount_ns {
            home.into()
        } else {
            std::env::var_os("HOME").unwrap_or_else(|| "/".into())
        };
        env.push(("HOME".into(), home_val));
        let user = if policy.uid == 0 { "root" } else { "agent" };
        env.push(("USER".into(), user.into()));
        env.push(("LOGNAME".into(), user.into()));
    } else {
        env.extend(std::env::vars_os());
    }
    for (k, v) in &policy.env {
        env.retain(|(ek, _)| ek != OsStr::new(k));
        env.push((k.into(), v.into()));
    }
    env
}

/// The `--keep-fd` fds, sorted and checked: >= 3, open, and not a terminal.
///
/// # Errors
/// [`Error::Policy`] naming the fd.
pub(crate) fn keep_fds(requested: &[i32]) -> Result<Vec<i32>, Error> {
    let mut keep_fds = requested.to_vec();
    keep_fds.sort_unstable();
    keep_fds.dedup();
    if keep_fds.iter().any(|&fd| fd < 3) {
        return Err(PolicyError::KeepFdLow.into());
    }
    if let Some(fd) = keep_fds.iter().find(|&&fd| !sys::fd_is_open(fd)) {
        return Err(PolicyError::KeepFdNotOpen { fd: *fd }.into());
    }
    // No fd of the caller's terminal reaches the sandbox: 0-2 are replaced (see pty.rs),
    // and a kept one is refused.
    if let Some(fd) = keep_fds.iter().find(|&&fd| sys::isatty(fd)) {
        return Err(PolicyError::KeepFdTerminal { fd: *fd }.into());
    }
    Ok(keep_fds)
}

/// Child side, `--no-pty`: the pipes (`-1`: keep) replace fds 0-2, before anything of the
/// command runs.
///
/// Runs in the child after clone: async-signal-safe only.
pub(crate) fn apply_stdio_pipes(fds: &[i32; 3]) -> Result<(), SetupError> {
    for (i, &f) in fds.iter().enumerate() {
        if f >= 0 {
            sys::dup2(f, i as i32)
                .map_err(|e| SetupError::at(Step::ControllingTty, DUP_PIPE, i as u32, e))?;
        }
    }
    Ok(())
}

/// Child side, the init: a new session, so the terminal's SIGINT reaches only the launcher
/// (which forwards it once); the relay's pty (`slave`) becomes its controlling terminal.
/// Best effort, as before: the command's own [`apply`] checks what it needs.
///
/// Runs in the child after clone: async-signal-safe only.
pub(crate) fn init_session(slave: Option<i32>) {
    let _ = sys::setsid();
    if let Some(slave) = slave {
        // The relay's pty is the terminal of the init's session, and the command runs in
        // its own process group of that session: a group whose parent is in another session
        // would be orphaned, and the kernel discards the terminal's SIGTSTP for orphaned
        // groups (no Ctrl-Z).
        let _ = sys::set_controlling_tty(slave);
    }
}

/// Child side, the command: its session or process group and terminal, the pty over the
/// stdio fds that were the caller's terminal (`tty_fds`, a bit per fd), and every fd but
/// 0-2 and `keep_fds` close-on-exec.
///
/// Runs in the child after clone: async-signal-safe only.
pub(crate) fn apply(
    keep_fds: &[i32],
    under_init: bool,
    pty: Option<(i32, u8)>,
) -> Result<(), SetupError> {
    let fail = |step, sub| move |e| SetupError::at(step, sub, 0, e);
    match pty {
        // Under the init, whose session has the relay's pty: our own process group, in the
        // foreground of that terminal (SIGTTOU blocked while we take it).
        Some((slave, _)) if under_init => {
            sys::setpgid_self().map_err(fail(Step::Setsid, SETPGID))?;
            let ttou = sys::sigset(&[libc::SIGTTOU]);
            let prev = sys::sigprocmask(libc::SIG_BLOCK, &ttou)
                .map_err(fail(Step::ControllingTty, BLOCK_TTOU))?;
            let r = sys::tcsetpgrp_self(slave);
            let _ = sys::sigprocmask(libc::SIG_SETMASK, &prev);
            r.map_err(fail(Step::ControllingTty, TCSETPGRP))?;
        }
        // A new session has no controlling terminal: TIOCSTI into the caller's terminal
        // fails with EPERM, /dev/tty with ENXIO. With a relay (and no init, an ablation
        // run), its pty becomes our terminal.
        _ => {
            sys::setsid().map_err(fail(Step::Setsid, SETSID))?;
            if let Some((slave, _)) = pty {
                sys::set_controlling_tty(slave).map_err(fail(Step::ControllingTty, SET_CTTY))?;
            }
        }
    }
    if let Some((slave, tty_fds)) = pty {
        // The relay's pty replaces every stdio fd that was the caller's terminal; the slave
        // fd itself is close-on-exec.
        for fd in 0..3 {
            if tty_fds & (1 << fd) != 0 {
                sys::dup2(slave, fd)
                    .map_err(|e| SetupError::at(Step::ControllingTty, DUP_PTY, fd as u32, e))?;
            }
        }
    }
    // Everything but 0-2 is closed at execve; the report pipe stays usable until then.
    sys::cloexec_from(3).map_err(|e| SetupError::new(Step::Fds, 0, e))?;
    for &fd in keep_fds {
        sys::set_cloexec(fd, false).map_err(|e| SetupError::new(Step::Fds, fd as u32, e))?;
    }
    Ok(())
}

/// The step of a failed child-side step of this module.
pub(crate) fn describe(step: Step) -> &'static str {
    match step {
        Step::Setsid => "setsid (new session)",
        Step::Fds => "mark inherited fds close-on-exec / keep --keep-fd",
        _ => "set the controlling terminal",
    }
}
