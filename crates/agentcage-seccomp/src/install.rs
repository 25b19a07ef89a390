//! Attaching a prepared filter to the calling thread: seccomp(2), prctl(2) fallback.
//!
//! [`install()`] runs in the child between clone and execve: it allocates nothing, takes
//! no lock and cannot panic. The program was built by [`crate::prepare`] in the parent.
//! The caller guarantees `no_new_privs` (or CAP_SYS_ADMIN in its user namespace), as
//! the kernel requires for an unprivileged filter.

use crate::table::Errno;
use crate::PreparedFilter;

/// `SECCOMP_SET_MODE_FILTER`.
const SECCOMP_SET_MODE_FILTER: libc::c_ulong = 1;
/// `SECCOMP_MODE_FILTER` (prctl).
const SECCOMP_MODE_FILTER: libc::c_ulong = 2;
/// `SECCOMP_FILTER_FLAG_SPEC_ALLOW` (Linux 4.17).
pub const SECCOMP_FILTER_FLAG_SPEC_ALLOW: u32 = 1 << 2;
/// `SECCOMP_FILTER_FLAG_NEW_LISTENER` (Linux 5.0).
pub const SECCOMP_FILTER_FLAG_NEW_LISTENER: u32 = 1 << 3;

fn last_errno() -> Errno {
    // `last_os_error` only reads errno: no allocation.
    Errno(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
}

/// Attaches `p` to the calling thread with `seccomp(SECCOMP_SET_MODE_FILTER, p.flags())`.
///
/// Fallbacks, each one weaker only in performance, never in what is filtered:
/// `EINVAL` while passing `SECCOMP_FILTER_FLAG_SPEC_ALLOW` (kernel before 4.17 does not
/// know the flag) retries without it, so the speculation mitigation stays on; `ENOSYS`
/// (no seccomp(2), kernel before 3.17) uses `prctl(PR_SET_SECCOMP)`, which takes no flags.
///
/// Runs in the child after clone: async-signal-safe only.
///
/// # Errors
/// The kernel's errno: `EACCES` without no_new_privs or CAP_SYS_ADMIN, `EINVAL` for a
/// kernel without seccomp filters, `ENOMEM` when the stacked filters exceed the
/// kernel's total limit.
pub fn install(p: &PreparedFilter) -> Result<(), Errno> {
    install_program(p.program(), p.len_u16(), p.flags()).map(drop)
}

/// Attaches the events variant of `p` ([`PreparedFilter::notify_program`]) with
/// `SECCOMP_FILTER_FLAG_NEW_LISTENER` and returns the listener fd (close-on-exec). The
/// caller passes it out of the sandbox and closes it before execve.
///
/// No `prctl` fallback (it cannot create a listener): a kernel without seccomp(2) fails.
/// Runs in the child after clone: async-signal-safe only.
///
/// # Errors
/// As [`install()`], plus `EINVAL` on a kernel without user notification (before 5.0) and
/// `EBUSY` when a filter already on this thread has a listener (the kernel allows one per
/// filter chain).
pub fn install_notify(p: &PreparedFilter) -> Result<i32, Errno> {
    let flags = p.flags() | SECCOMP_FILTER_FLAG_NEW_LISTENER;
    match install_program(p.notify_program(), p.len_u16(), flags)? {
        Some(fd) => Ok(fd),
        None => Err(Errno(libc::ENOSYS)),
    }
}

/// `Some(fd)` when `flags` asked for a listener, `None` otherwise.
fn install_program(
    program: &[libc::sock_filter],
    len: u16,
    flags: u32,
) -> Result<Option<i32>, Errno> {
    let listener = flags & SECCOMP_FILTER_FLAG_NEW_LISTENER != 0;
    let prog = libc::sock_fprog {
        len,
        // The kernel only reads through this pointer (the C type is not const).
        filter: program.as_ptr().cast_mut(),
    };
    let mut flags = flags;
    loop {
        // SAFETY: `prog` points at `p`'s instruction buffer, which lives as long as `p`,
        // and `len` is its exact length (at most 4096, checked in `prepare`). The kernel
        // copies the program before returning.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                SECCOMP_SET_MODE_FILTER,
                libc::c_ulong::from(flags),
                &prog as *const libc::sock_fprog,
            )
        };
        if rc >= 0 && listener {
            return Ok(Some(rc as i32));
        }
        if rc == 0 {
            return Ok(None);
        }
        let e = last_errno();
        if e.0 == libc::EINVAL && flags & SECCOMP_FILTER_FLAG_SPEC_ALLOW != 0 {
            flags &= !SECCOMP_FILTER_FLAG_SPEC_ALLOW;
            continue;
        }
        if e.0 != libc::ENOSYS || listener {
            return Err(e);
        }
        break;
    }
    // SAFETY: same pointer and lifetime argument as above; PR_SET_SECCOMP copies too.
    let rc = unsafe {
        libc::prctl(
            libc::PR_SET_SECCOMP,
            SECCOMP_MODE_FILTER,
            &prog as *const libc::sock_fprog,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
        )
    };
    if rc == 0 {
        Ok(None)
    } else {
        Err(last_errno())
    }
}
