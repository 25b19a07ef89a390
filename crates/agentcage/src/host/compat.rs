//! The 32-bit syscall entry points (IA32 `int 0x80`, x32), tried in throwaway children.

use std::fs;
use std::time::Instant;

use serde::Serialize;

use super::trial::{finish_child, signal_name, spawn_child, Child, Ended};
use super::{errno_text, Support};
#[cfg(target_arch = "x86_64")]
use crate::sys;

/// The compat syscall entry points (x86_64). A live one must be closed by the seccomp
/// filter's `arch` check, or its different syscall numbers bypass a deny-list.
#[derive(Debug, Clone, Serialize)]
pub struct CompatAbis {
    /// IA32 emulation: `int 0x80` reaches the i386 syscall table.
    pub ia32: Support,
    /// The `ia32_emulation=` boot parameter, if given on the kernel command line.
    pub ia32_emulation_boot_param: Option<String>,
    /// `abi.vsyscall32` (present only with IA32 emulation built in).
    pub vsyscall32: Option<i64>,
    /// x32: `nr | 0x40000000` reaches the x32 syscall table.
    pub x32: Support,
}

const COMPAT_OFF_ENOSYS: i32 = 3;
const COMPAT_WRONG: i32 = 4;

pub(super) fn spawn_ia32_trial() -> Option<Result<Child, i32>> {
    #[cfg(target_arch = "x86_64")]
    {
        Some(spawn_child(|_rep| {
            // We are the throwaway child; a SIGSEGV here is the "off" answer.
            let got = sys::int80_getpid();
            let pid = i64::from(sys::getpid());
            if got == pid {
                0
            } else if got == -i64::from(libc::ENOSYS) {
                COMPAT_OFF_ENOSYS
            } else {
                COMPAT_WRONG
            }
        }))
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        None
    }
}

fn finish_compat_trial(
    child: Option<Result<Child, i32>>,
    deadline: Instant,
    what: &str,
    off_by_signal: &str,
) -> Support {
    match child {
        None => Support::no("not an x86_64 host"),
        Some(Err(errno)) => Support::no(format!(
            "could not fork the trial child: {}",
            errno_text(errno)
        )),
        Some(Ok(child)) => match finish_child(child, deadline).0 {
            Ended::Code(0) => Support::yes_because(format!("{what} returned our pid")),
            Ended::Code(COMPAT_OFF_ENOSYS) => Support::no(format!("{what} returned ENOSYS")),
            Ended::Code(code) => {
                Support::no(format!("{what} returned an unexpected value (exit {code})"))
            }
            Ended::Signal(sig) if sig == libc::SIGSEGV => {
                Support::no(format!("{what} raised SIGSEGV{off_by_signal}"))
            }
            Ended::Signal(sig) => {
                Support::no(format!("{what} killed the child with {}", signal_name(sig)))
            }
            Ended::TimedOut => Support::no(format!("{what} hung")),
            Ended::Lost => Support::no(format!("{what}: the child vanished without a result")),
        },
    }
}

pub(super) fn finish_ia32_trial(child: Option<Result<Child, i32>>, deadline: Instant) -> Support {
    finish_compat_trial(
        child,
        deadline,
        "int 0x80 getpid",
        " (IA32 emulation not built in, or disabled with ia32_emulation=0)",
    )
}

pub(super) fn spawn_x32_trial() -> Option<Result<Child, i32>> {
    #[cfg(target_arch = "x86_64")]
    {
        Some(spawn_child(|_rep| {
            let pid = libc::c_long::from(sys::getpid());
            match sys::x32_getpid() {
                Ok(got) if got == pid => 0,
                Err(e) if e.0 == libc::ENOSYS => COMPAT_OFF_ENOSYS,
                _ => COMPAT_WRONG,
            }
        }))
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        None
    }
}

pub(super) fn finish_x32_trial(child: Option<Result<Child, i32>>, deadline: Instant) -> Support {
    finish_compat_trial(child, deadline, "x32 getpid (nr | 0x40000000)", "")
}

/// Value of `name=` on the kernel command line.
pub(super) fn cmdline_param(name: &str) -> Option<String> {
    let cmdline = fs::read_to_string("/proc/cmdline").ok()?;
    parse_cmdline_param(&cmdline, name)
}

fn parse_cmdline_param(cmdline: &str, name: &str) -> Option<String> {
    cmdline
        .split_whitespace()
        .take_while(|w| *w != "--") // what follows `--` goes to init
        .filter_map(|w| w.split_once('='))
        .filter(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
        .last()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cmdline_params_stop_at_the_init_separator() {
        let c = "console=ttyS0 ia32_emulation=0 quiet -- ia32_emulation=1";
        assert_eq!(parse_cmdline_param(c, "ia32_emulation"), Some("0".into()));
        assert_eq!(parse_cmdline_param("quiet", "ia32_emulation"), None);
        assert_eq!(
            parse_cmdline_param("lsm=landlock,lockdown,yama", "lsm"),
            Some("landlock,lockdown,yama".into())
        );
    }
}
