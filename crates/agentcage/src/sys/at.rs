//! `*at` system calls relative to a directory fd, for the launcher's host-side writes (see
//! `hostfs`). Parent side only (they return `OwnedFd`), but allocation-free like the rest of
//! `sys`.

use std::ffi::CStr;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use libc::c_int;

use super::Errno;

/// openat(2) with `O_CLOEXEC` added; `mode` matters only with `O_CREAT`.
///
/// # Errors
/// The errno of openat(2).
pub fn openat(
    dir: BorrowedFd<'_>,
    name: &CStr,
    flags: c_int,
    mode: libc::mode_t,
) -> Result<OwnedFd, Errno> {
    // SAFETY: dir is a live fd borrowed for the call; name is a live &CStr; mode is passed
    // as the variadic third argument.
    let fd = unsafe {
        libc::openat(
            dir.as_raw_fd(),
            name.as_ptr(),
            flags | libc::O_CLOEXEC,
            mode as libc::c_uint,
        )
    };
    if fd < 0 {
        return Err(Errno::last());
    }
    // SAFETY: openat just returned this fd and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// renameat(2) within one directory: `from` replaces `to` (never following `to`).
///
/// # Errors
/// The errno of renameat(2) (EISDIR when `to` is a directory).
pub fn renameat(dir: BorrowedFd<'_>, from: &CStr, to: &CStr) -> Result<(), Errno> {
    let d = dir.as_raw_fd();
    // SAFETY: d is a live fd borrowed for the call; both names are live &CStr values.
    let rc = unsafe { libc::renameat(d, from.as_ptr(), d, to.as_ptr()) };
    if rc < 0 {
        Err(Errno::last())
    } else {
        Ok(())
    }
}

/// unlinkat(2) of a non-directory entry.
///
/// # Errors
/// The errno of unlinkat(2).
pub fn unlinkat(dir: BorrowedFd<'_>, name: &CStr) -> Result<(), Errno> {
    // SAFETY: dir is a live fd borrowed for the call; name is a live &CStr.
    let rc = unsafe { libc::unlinkat(dir.as_raw_fd(), name.as_ptr(), 0) };
    if rc < 0 {
        Err(Errno::last())
    } else {
        Ok(())
    }
}
