//! Raw syscall wrappers: the only home of `unsafe` in this crate.
//!
//! Every wrapper is thin and allocation-free (plain integers, `&CStr`, stack structs) and
//! returns the errno on failure, so `apply` can call them between clone and execve.

use std::ffi::CStr;
use std::mem::MaybeUninit;
use std::os::fd::RawFd;

/// An errno value.
pub(crate) type Errno = i32;

fn last_errno() -> Errno {
    // `last_os_error` reads errno; `raw_os_error` is always Some for it. Neither allocates.
    std::io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

/// `struct landlock_ruleset_attr` (ABI 6 layout; shorter sizes are passed to older kernels).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct RulesetAttr {
    pub handled_access_fs: u64,
    pub handled_access_net: u64,
    pub scoped: u64,
}

/// `struct landlock_path_beneath_attr` (packed in the UAPI).
#[repr(C, packed)]
struct PathBeneathAttr {
    allowed_access: u64,
    parent_fd: i32,
}

/// `struct landlock_net_port_attr`.
#[repr(C)]
struct NetPortAttr {
    allowed_access: u64,
    port: u64,
}

/// `landlock_create_ruleset(NULL, 0, flags)`: the VERSION and ERRATA queries.
pub(crate) fn create_ruleset_query(flags: u32) -> Result<i64, Errno> {
    // SAFETY: a NULL attr with size 0 is the documented form of the query; the kernel reads
    // no user memory.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<RulesetAttr>(),
            0usize,
            flags,
        )
    };
    if rc < 0 {
        Err(last_errno())
    } else {
        Ok(rc)
    }
}

/// `landlock_create_ruleset(attr, size, 0)`. `size` is at most `size_of::<RulesetAttr>()`.
pub(crate) fn create_ruleset(attr: &RulesetAttr, size: usize) -> Result<RawFd, Errno> {
    let size = size.min(std::mem::size_of::<RulesetAttr>());
    // SAFETY: `attr` is a live reference to a repr(C) struct of at least `size` bytes; the
    // kernel copies `size` bytes and keeps no pointer.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            attr as *const RulesetAttr,
            size,
            0u32,
        )
    };
    if rc < 0 {
        Err(last_errno())
    } else {
        // A file descriptor always fits in an int.
        Ok(rc as RawFd)
    }
}

/// `landlock_add_rule(ruleset, LANDLOCK_RULE_PATH_BENEATH, {access, parent}, 0)`.
pub(crate) fn add_path_rule(ruleset: RawFd, parent: RawFd, access: u64) -> Result<(), Errno> {
    let attr = PathBeneathAttr {
        allowed_access: access,
        parent_fd: parent,
    };
    // SAFETY: `attr` lives on our stack for the duration of the call; the kernel copies it.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_landlock_add_rule,
            ruleset,
            crate::abi::RULE_PATH_BENEATH,
            &attr as *const PathBeneathAttr,
            0u32,
        )
    };
    if rc < 0 {
        Err(last_errno())
    } else {
        Ok(())
    }
}

/// `landlock_add_rule(ruleset, LANDLOCK_RULE_NET_PORT, {access, port}, 0)`.
pub(crate) fn add_net_rule(ruleset: RawFd, port: u16, access: u64) -> Result<(), Errno> {
    let attr = NetPortAttr {
        allowed_access: access,
        port: u64::from(port),
    };
    // SAFETY: `attr` lives on our stack for the duration of the call; the kernel copies it.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_landlock_add_rule,
            ruleset,
            crate::abi::RULE_NET_PORT,
            &attr as *const NetPortAttr,
            0u32,
        )
    };
    if rc < 0 {
        Err(last_errno())
    } else {
        Ok(())
    }
}

/// `landlock_restrict_self(ruleset, flags)`.
pub(crate) fn restrict_self(ruleset: RawFd, flags: u32) -> Result<(), Errno> {
    // SAFETY: plain integer arguments.
    let rc = unsafe { libc::syscall(libc::SYS_landlock_restrict_self, ruleset, flags) };
    if rc < 0 {
        Err(last_errno())
    } else {
        Ok(())
    }
}

/// `open(path, O_PATH | O_CLOEXEC)`, following symlinks (a rule on `/bin -> usr/bin` must land
/// on the directory).
pub(crate) fn open_path(path: &CStr) -> Result<RawFd, Errno> {
    // SAFETY: `path` is a live NUL-terminated string; the kernel copies it.
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_PATH | libc::O_CLOEXEC) };
    if fd < 0 {
        Err(last_errno())
    } else {
        Ok(fd)
    }
}

/// `open(path, O_PATH | O_DIRECTORY | O_CLOEXEC)`, following symlinks: success means the fd is
/// a directory (no `fstat` needed); ENOTDIR means the last component, or one before it, is not
/// a directory.
pub(crate) fn open_dir_path(path: &CStr) -> Result<RawFd, Errno> {
    // SAFETY: `path` is a live NUL-terminated string; the kernel copies it.
    let fd = unsafe {
        libc::open(
            path.as_ptr(),
            libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        Err(last_errno())
    } else {
        Ok(fd)
    }
}

/// Whether `fd` (an O_PATH fd is fine) refers to a directory.
pub(crate) fn is_dir(fd: RawFd) -> Result<bool, Errno> {
    let mut st = MaybeUninit::<libc::stat>::uninit();
    // SAFETY: `st` is a writable stat buffer on our stack; fstat fills it on success.
    let rc = unsafe { libc::fstat(fd, st.as_mut_ptr()) };
    if rc < 0 {
        return Err(last_errno());
    }
    // SAFETY: fstat returned 0, so it initialized the whole struct.
    let st = unsafe { st.assume_init() };
    Ok(st.st_mode & libc::S_IFMT == libc::S_IFDIR)
}

/// `close(fd)`, ignoring errors (nothing useful can be done about them here).
pub(crate) fn close(fd: RawFd) {
    // SAFETY: the caller owns `fd` and does not use it afterwards.
    unsafe {
        libc::close(fd);
    }
}

/// `prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)`.
pub(crate) fn set_no_new_privs() -> Result<(), Errno> {
    // SAFETY: plain integer arguments.
    let rc = unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1 as libc::c_ulong, 0, 0, 0) };
    if rc < 0 {
        Err(last_errno())
    } else {
        Ok(())
    }
}

/// Owns a raw fd and closes it on drop: lets `apply` return early without leaking the
/// ruleset or a path fd.
pub(crate) struct FdGuard(pub RawFd);

impl Drop for FdGuard {
    fn drop(&mut self) {
        close(self.0);
    }
}
