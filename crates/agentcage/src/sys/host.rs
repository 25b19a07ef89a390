//! Raw calls of host detection (`crate::host`): the throwaway child's fork and pipe, uname,
//! `faccessat`, the seccomp trial, the 32-bit entry points and the `ENOSYS` probes. Thin and
//! allocation-free like the rest of `sys`, so the trial children may call them after fork.

use std::ffi::CStr;
use std::os::fd::{FromRawFd, OwnedFd};
use std::ptr;

use libc::{c_int, c_long};

use super::{check, check_int, Errno};

/// fork(2) without glibc's atfork machinery (a raw `clone(SIGCHLD)`): safe to call from a
/// child of a multi-threaded process, where glibc's `fork` could wait on a copied lock.
///
/// The child (return value 0) must run only async-signal-safe code (raw syscalls on data
/// prepared before the fork) and end with [`super::exit`].
pub fn raw_fork() -> Result<libc::pid_t, Errno> {
    // SAFETY: clone without CLONE_VM gives the child its own copy of memory and the current
    // stack, exactly like fork; no pointer arguments are passed.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_clone,
            libc::SIGCHLD as libc::c_ulong,
            0usize,
            0usize,
            0usize,
            0usize,
        )
    };
    Errno::result(rc).map(|pid| libc::pid_t::try_from(pid).unwrap_or(-1))
}

/// pipe2(O_CLOEXEC) as owned fds: (read end, write end).
pub fn pipe_owned() -> Result<(OwnedFd, OwnedFd), Errno> {
    let (r, w) = super::pipe()?;
    // SAFETY: pipe2 just created both fds and nothing else owns them.
    Ok(unsafe { (OwnedFd::from_raw_fd(r), OwnedFd::from_raw_fd(w)) })
}

/// One write(2) (no retry): the byte count. `/proc/self/{uid,gid}_map` must be written in one
/// call.
pub fn write_once(fd: c_int, data: &[u8]) -> Result<usize, Errno> {
    // SAFETY: `data` is a live buffer of `data.len()` bytes.
    let n = unsafe { libc::write(fd, data.as_ptr().cast(), data.len()) };
    Errno::result(n as c_long).map(|n| n as usize)
}

/// uname(2).
pub fn uname() -> Result<libc::utsname, Errno> {
    // SAFETY: utsname is plain old data; all-zero is a valid value.
    let mut uts: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: `uts` is a valid, writable utsname for the duration of the call.
    check_int(unsafe { libc::uname(&mut uts) })?;
    Ok(uts)
}

/// faccessat(AT_FDCWD, path, W_OK, AT_EACCESS): whether the effective ids may write `path`.
pub fn writable_by_effective_ids(path: &CStr) -> Result<(), Errno> {
    // SAFETY: `path` is a live NUL-terminated path.
    check_int(unsafe {
        libc::faccessat(libc::AT_FDCWD, path.as_ptr(), libc::W_OK, libc::AT_EACCESS)
    })
    .map(drop)
}

/// getpid(2).
pub fn getpid() -> libc::pid_t {
    // SAFETY: getpid cannot fail.
    unsafe { libc::getpid() }
}

/// seccomp(SECCOMP_GET_ACTION_AVAIL): whether the kernel knows the filter return `action`.
pub fn seccomp_action_available(action: u32) -> bool {
    // SAFETY: GET_ACTION_AVAIL reads one u32 from a live local.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_GET_ACTION_AVAIL,
            0u32,
            &action as *const u32,
        )
    };
    rc == 0
}

/// seccomp(SECCOMP_SET_MODE_FILTER) of `filter` (no_new_privs or CAP_SYS_ADMIN needed).
pub fn seccomp_set_filter(filter: &[libc::sock_filter]) -> Result<(), Errno> {
    let prog = libc::sock_fprog {
        len: u16::try_from(filter.len()).map_err(|_| Errno(libc::EINVAL))?,
        filter: filter.as_ptr().cast_mut(),
    };
    // SAFETY: `prog` points to `filter`, which outlives the call; the kernel copies it.
    check(unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            0u32,
            &prog as *const libc::sock_fprog,
        )
    })
}

/// `int 0x80` with eax = 20 (i386 getpid): rax, i.e. our pid when IA32 emulation is live,
/// `-ENOSYS` when it is disabled. Without IA32 emulation built in, the kernel answers with
/// SIGSEGV, which ends the process: call it only in a throwaway child.
#[cfg(target_arch = "x86_64")]
pub fn int80_getpid() -> i64 {
    let ret: i64;
    // SAFETY: i386 getpid takes no arguments and touches no memory; the only other outcome is
    // SIGSEGV (see above). r8-r11 are declared clobbered (older kernels zero them on int 0x80).
    unsafe {
        std::arch::asm!(
            "int 0x80",
            inlateout("rax") 20i64 => ret,
            lateout("r8") _, lateout("r9") _, lateout("r10") _, lateout("r11") _,
            options(nostack),
        );
    }
    ret
}

/// getpid through the x32 syscall table (`nr | __X32_SYSCALL_BIT`).
#[cfg(target_arch = "x86_64")]
pub fn x32_getpid() -> Result<c_long, Errno> {
    const X32_SYSCALL_BIT: c_long = 0x4000_0000;
    // SAFETY: getpid takes no arguments; through the x32 table it is the same call.
    Errno::result(unsafe { libc::syscall(libc::SYS_getpid | X32_SYSCALL_BIT) })
}

/// A newer syscall that [`probe_invalid`] calls with arguments the kernel rejects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// mount_setattr(-1, NULL, 0, NULL, 0).
    MountSetattr,
    /// open_tree(-1, NULL, all-ones flags).
    OpenTree,
    /// close_range(u32::MAX, 0, 0): first > last.
    CloseRange,
    /// pidfd_open(0, 0).
    PidfdOpen,
    /// clone3(NULL, 0).
    Clone3,
}

/// Calls `probe` with arguments the kernel rejects before acting (nothing is mounted, closed,
/// opened or created): `Err(ENOSYS)` means the syscall is absent, `EINVAL`/`EBADF` present.
pub fn probe_invalid(probe: Probe) -> Result<c_long, Errno> {
    let rc = match probe {
        // SAFETY: a NULL attr with size 0 is rejected (EINVAL) before any memory is read.
        Probe::MountSetattr => unsafe {
            libc::syscall(
                libc::SYS_mount_setattr,
                -1 as c_int,
                ptr::null::<libc::c_char>(),
                0u32,
                ptr::null::<u8>(),
                0usize,
            )
        },
        // SAFETY: all-ones flags are rejected (EINVAL) before the NULL path is read.
        Probe::OpenTree => unsafe {
            libc::syscall(
                libc::SYS_open_tree,
                -1 as c_int,
                ptr::null::<libc::c_char>(),
                u32::MAX,
            )
        },
        // SAFETY: first > last is rejected with EINVAL; no fd is closed.
        Probe::CloseRange => unsafe { libc::syscall(libc::SYS_close_range, u32::MAX, 0u32, 0u32) },
        // SAFETY: pid 0 is rejected with EINVAL; no fd is created.
        Probe::PidfdOpen => unsafe { libc::syscall(libc::SYS_pidfd_open, 0 as libc::pid_t, 0u32) },
        // SAFETY: a NULL clone_args with size 0 is rejected (EINVAL) before anything is read.
        Probe::Clone3 => unsafe { libc::syscall(libc::SYS_clone3, ptr::null::<u8>(), 0usize) },
    };
    Errno::result(rc)
}
