//! Raw calls of the limits room (`crate::limits`): prlimit64 both ways, the cgroup directory
//! access check, getrandom for leaf names, pidfd signals and the clock tick. Allocation-free;
//! [`prlimit64`] also runs in the child before execve.

use std::ffi::CStr;
use std::ptr;

use libc::c_int;

use super::{check, check_int, Errno};

/// prlimit64(2) on `pid` (0: ourselves): sets `new` when given, returns the previous limit.
pub fn prlimit64(
    pid: libc::pid_t,
    resource: c_int,
    new: Option<&libc::rlimit64>,
) -> Result<libc::rlimit64, Errno> {
    let mut old = libc::rlimit64 {
        rlim_cur: 0,
        rlim_max: 0,
    };
    let new_ptr = new.map_or(ptr::null(), |n| n as *const libc::rlimit64);
    // SAFETY: `new_ptr` is null or points to a live rlimit64 the kernel only reads; `old` is a
    // live, writable rlimit64 on our stack. prlimit64 takes (pid, resource, new, old).
    check(unsafe {
        libc::syscall(
            libc::SYS_prlimit64,
            pid,
            resource,
            new_ptr,
            &mut old as *mut libc::rlimit64,
        )
    })?;
    Ok(old)
}

/// faccessat(AT_FDCWD, path, W_OK | X_OK, AT_EACCESS): whether the effective ids may create
/// entries in the directory `path`.
pub fn dir_writable_by_effective_ids(path: &CStr) -> Result<(), Errno> {
    // SAFETY: `path` is a live NUL-terminated path; faccessat only reads it.
    check_int(unsafe {
        libc::faccessat(
            libc::AT_FDCWD,
            path.as_ptr(),
            libc::W_OK | libc::X_OK,
            libc::AT_EACCESS,
        )
    })
    .map(drop)
}

/// getrandom(2) without blocking: 8 random bytes, or None (not enough entropy yet, or no
/// getrandom).
pub fn random_8() -> Option<[u8; 8]> {
    let mut buf = [0u8; 8];
    // SAFETY: `buf` is a live, writable 8-byte buffer; getrandom writes at most 8 bytes.
    let n = unsafe { libc::getrandom(buf.as_mut_ptr().cast(), buf.len(), libc::GRND_NONBLOCK) };
    (n == 8).then_some(buf)
}

/// pidfd_send_signal(2) with no siginfo and no flags.
pub fn pidfd_send_signal(pidfd: c_int, sig: c_int) -> Result<(), Errno> {
    // SAFETY: `pidfd` is an fd number; null siginfo and flags 0 as documented.
    check(unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd,
            sig,
            ptr::null::<libc::siginfo_t>(),
            0,
        )
    })
}

/// sysconf(_SC_CLK_TCK): clock ticks per second, if known.
pub fn clock_ticks() -> Option<u64> {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(hz).ok().filter(|h| *h > 0)
}
