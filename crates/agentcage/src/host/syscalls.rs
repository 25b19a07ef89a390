//! Newer syscalls, each called with arguments the kernel rejects before acting: `ENOSYS`
//! means absent.

use serde::Serialize;

use super::Support;
use crate::sys::{self, Probe};

/// Newer syscalls, each called with arguments the kernel rejects before acting.
#[derive(Debug, Clone, Serialize)]
pub struct Syscalls {
    /// `mount_setattr` (5.12): recursive read-only binds in one call.
    pub mount_setattr: Support,
    /// `open_tree` (5.2): detached bind mounts.
    pub open_tree: Support,
    /// `close_range` (5.9): closing inherited fds in one call.
    pub close_range: Support,
    /// `pidfd_open` (5.3): race-free signalling of the sandbox.
    pub pidfd_open: Support,
    /// `clone3` (5.3).
    pub clone3: Support,
}

/// Classifies the errno of a deliberately invalid call.
fn classify_probe(rc: libc::c_long, errno: i32, name: &str) -> Support {
    if rc >= 0 {
        return Support::yes_because(format!("{name} unexpectedly accepted invalid arguments"));
    }
    match errno {
        libc::ENOSYS => Support::no(format!(
            "{name} returns ENOSYS: the kernel is too old (or a seccomp filter hides it)"
        )),
        libc::EPERM => Support::no(format!("{name} returns EPERM: a seccomp filter denies it")),
        _ => Support::yes(),
    }
}

/// Calls `probe` with arguments the kernel rejects and classifies the answer.
fn probe(probe: Probe, name: &str) -> Support {
    match sys::probe_invalid(probe) {
        Ok(rc) => classify_probe(rc, 0, name),
        Err(e) => classify_probe(-1, e.0, name),
    }
}

/// Whether `mount_setattr(2)` exists (one syscall; fine on the hot path).
pub fn mount_setattr_available() -> bool {
    probe(Probe::MountSetattr, "mount_setattr").available
}

pub(super) fn detect_syscalls() -> Syscalls {
    Syscalls {
        mount_setattr: probe(Probe::MountSetattr, "mount_setattr"),
        open_tree: probe(Probe::OpenTree, "open_tree"),
        close_range: probe(Probe::CloseRange, "close_range"),
        pidfd_open: probe(Probe::PidfdOpen, "pidfd_open"),
        clone3: probe(Probe::Clone3, "clone3"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_classification() {
        assert!(classify_probe(-1, libc::EINVAL, "x").available);
        assert!(classify_probe(-1, libc::EBADF, "x").available);
        assert!(!classify_probe(-1, libc::ENOSYS, "x").available);
        assert!(!classify_probe(-1, libc::EPERM, "x").available);
    }
}
