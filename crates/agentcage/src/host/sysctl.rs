//! Attack-surface sysctls.

use std::fs;
use std::path::Path;

use serde::Serialize;

/// Attack-surface sysctls (absent = `None`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Sysctls {
    /// `dev.tty.legacy_tiocsti` (6.2+): 1 = TIOCSTI may inject input into a terminal.
    pub legacy_tiocsti: Option<i64>,
    /// `kernel.io_uring_disabled` (6.6+): 0 all, 1 only `io_uring_group`/CAP_SYS_ADMIN, 2 none.
    pub io_uring_disabled: Option<i64>,
    /// `kernel.yama.ptrace_scope`: 0 classic, 1 descendants only, 2 admin only, 3 none.
    pub ptrace_scope: Option<i64>,
    /// `kernel.unprivileged_bpf_disabled`: 0 allowed, 1/2 denied.
    pub unprivileged_bpf_disabled: Option<i64>,
    /// `kernel.perf_event_paranoid`: -1 .. 2 (3/4 on Debian/Android: denied).
    pub perf_event_paranoid: Option<i64>,
}

impl Sysctls {
    pub(super) fn read() -> Sysctls {
        Sysctls {
            legacy_tiocsti: read_sysctl_int("dev/tty/legacy_tiocsti"),
            io_uring_disabled: read_sysctl_int("kernel/io_uring_disabled"),
            ptrace_scope: read_sysctl_int("kernel/yama/ptrace_scope"),
            unprivileged_bpf_disabled: read_sysctl_int("kernel/unprivileged_bpf_disabled"),
            perf_event_paranoid: read_sysctl_int("kernel/perf_event_paranoid"),
        }
    }
}

/// Parses a single-integer sysctl value (`"1\n"`, `" -1"`).
pub fn parse_sysctl_int(text: &str) -> Option<i64> {
    text.trim().parse().ok()
}

/// Reads /proc/sys/`rel` as an integer; `None` if absent or not an integer.
pub(super) fn read_sysctl_int(rel: &str) -> Option<i64> {
    fs::read_to_string(Path::new("/proc/sys").join(rel))
        .ok()
        .as_deref()
        .and_then(parse_sysctl_int)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sysctl_values_parse() {
        assert_eq!(parse_sysctl_int("1\n"), Some(1));
        assert_eq!(parse_sysctl_int("  -1\n"), Some(-1));
        assert_eq!(parse_sysctl_int("96365"), Some(96365));
        assert_eq!(parse_sysctl_int(""), None);
        assert_eq!(parse_sysctl_int("4096\t8192"), None);
        assert_eq!(parse_sysctl_int("yes"), None);
    }
}
