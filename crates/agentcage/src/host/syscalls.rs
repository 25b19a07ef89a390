//! Newer syscalls, each called with arguments the kernel rejects before acting: `ENOSYS`
//! means absent.

use serde::Serialize;

use super::{last_errno, Support};

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

fn probe_mount_setattr() -> (libc::c_long, i32) {
    // SAFETY: a NULL attr with size 0 is rejected (EINVAL) before any memory is read.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            -1 as libc::c_int,
            std::ptr::null::<libc::c_char>(),
            0u32,
            std::ptr::null::<u8>(),
            0usize,
        )
    };
    (rc, last_errno())
}

/// Whether `mount_setattr(2)` exists (one syscall; fine on the hot path).
pub fn mount_setattr_available() -> bool {
    let (rc, errno) = probe_mount_setattr();
    classify_probe(rc, errno, "mount_setattr").available
}

pub(super) fn detect_syscalls() -> Syscalls {
    let (rc, e) = probe_mount_setattr();
    let mount_setattr = classify_probe(rc, e, "mount_setattr");
    // SAFETY: all-ones flags are rejected (EINVAL) before the NULL path is read.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            -1 as libc::c_int,
            std::ptr::null::<libc::c_char>(),
            u32::MAX,
        )
    };
    let open_tree = classify_probe(rc, last_errno(), "open_tree");
    // SAFETY: first > last is rejected with EINVAL; no fd is closed.
    let rc = unsafe { libc::syscall(libc::SYS_close_range, u32::MAX, 0u32, 0u32) };
    let close_range = classify_probe(rc, last_errno(), "close_range");
    // SAFETY: pid 0 is rejected with EINVAL; no fd is created.
    let rc = unsafe { libc::syscall(libc::SYS_pidfd_open, 0 as libc::pid_t, 0u32) };
    let pidfd_open = classify_probe(rc, last_errno(), "pidfd_open");
    // SAFETY: a NULL clone_args with size 0 is rejected (EINVAL) before anything is read.
    let rc = unsafe { libc::syscall(libc::SYS_clone3, std::ptr::null::<u8>(), 0usize) };
    let clone3 = classify_probe(rc, last_errno(), "clone3");
    Syscalls {
        mount_setattr,
        open_tree,
        close_range,
        pidfd_open,
        clone3,
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
