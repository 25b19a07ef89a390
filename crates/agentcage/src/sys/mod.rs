//! Raw system-call wrappers: the only home of `unsafe` in the launcher.
//!
//! Every wrapper is thin and allocation-free: it takes `&CStr`, raw fds and plain integers and
//! returns `Result<_, Errno>`, so it can run in the pre-exec child (see `launch::child`).

use std::ffi::CStr;
use std::fmt;
use std::ptr;

use libc::{c_int, c_long, c_ulong, c_void};

pub mod at;

/// An errno value. `Copy`, so the pre-exec child can report it without allocating.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Errno(pub i32);

impl Errno {
    /// The calling thread's current errno.
    pub fn last() -> Errno {
        // SAFETY: __errno_location returns a valid pointer to this thread's errno.
        Errno(unsafe { *libc::__errno_location() })
    }

    /// `Ok(rc)` when `rc >= 0`, else the current errno.
    pub fn result(rc: c_long) -> Result<c_long, Errno> {
        if rc < 0 {
            Err(Errno::last())
        } else {
            Ok(rc)
        }
    }

    /// The symbolic name (`EPERM`), or `E?` for values this table does not know.
    pub fn name(self) -> &'static str {
        errno_name(self.0)
    }
}

impl fmt::Debug for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.name())
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let msg = std::io::Error::from_raw_os_error(self.0).to_string();
        // std appends " (os error N)"; keep the kernel's words only.
        let msg = msg.split(" (os error").next().unwrap_or("");
        write!(f, "{} ({})", self.name(), msg)
    }
}

impl std::error::Error for Errno {}

/// Symbolic errno names for the values a sandbox setup can meet.
pub fn errno_name(e: i32) -> &'static str {
    match e {
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::ESRCH => "ESRCH",
        libc::EINTR => "EINTR",
        libc::EIO => "EIO",
        libc::ENXIO => "ENXIO",
        libc::E2BIG => "E2BIG",
        libc::ENOEXEC => "ENOEXEC",
        libc::EBADF => "EBADF",
        libc::ECHILD => "ECHILD",
        libc::EAGAIN => "EAGAIN",
        libc::ENOMEM => "ENOMEM",
        libc::EACCES => "EACCES",
        libc::EFAULT => "EFAULT",
        libc::EBUSY => "EBUSY",
        libc::EEXIST => "EEXIST",
        libc::EXDEV => "EXDEV",
        libc::ENODEV => "ENODEV",
        libc::ENOTDIR => "ENOTDIR",
        libc::EISDIR => "EISDIR",
        libc::EINVAL => "EINVAL",
        libc::ENFILE => "ENFILE",
        libc::EMFILE => "EMFILE",
        libc::ENOTTY => "ENOTTY",
        libc::ETXTBSY => "ETXTBSY",
        libc::EFBIG => "EFBIG",
        libc::ENOSPC => "ENOSPC",
        libc::EROFS => "EROFS",
        libc::EMLINK => "EMLINK",
        libc::EPIPE => "EPIPE",
        libc::ERANGE => "ERANGE",
        libc::ENAMETOOLONG => "ENAMETOOLONG",
        libc::ENOSYS => "ENOSYS",
        libc::ELOOP => "ELOOP",
        libc::EOVERFLOW => "EOVERFLOW",
        libc::EUSERS => "EUSERS",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        libc::EAFNOSUPPORT => "EAFNOSUPPORT",
        libc::EADDRINUSE => "EADDRINUSE",
        libc::ENETUNREACH => "ENETUNREACH",
        libc::ECONNREFUSED => "ECONNREFUSED",
        libc::ETIMEDOUT => "ETIMEDOUT",
        _ => "E?",
    }
}

// Raw calls of host detection (`crate::host`), in their own file.
mod host;
pub use host::{
    getpid, pipe_owned, probe_invalid, raw_fork, seccomp_action_available, seccomp_set_filter,
    uname, writable_by_effective_ids, write_once, Probe,
};
#[cfg(target_arch = "x86_64")]
pub use host::{int80_getpid, x32_getpid};

// Raw calls of the limits room (`crate::limits`).
mod limits;
pub use limits::{
    clock_ticks, dir_writable_by_effective_ids, pidfd_send_signal, prlimit64, random_8,
};

fn check(rc: c_long) -> Result<(), Errno> {
    Errno::result(rc).map(drop)
}

fn check_int(rc: c_int) -> Result<c_int, Errno> {
    if rc < 0 {
        Err(Errno::last())
    } else {
        Ok(rc)
    }
}

fn opt_ptr(s: Option<&CStr>) -> *const libc::c_char {
    s.map_or(ptr::null(), CStr::as_ptr)
}

/// mount(2).
pub fn mount(
    src: Option<&CStr>,
    target: &CStr,
    fstype: Option<&CStr>,
    flags: c_ulong,
    data: Option<&CStr>,
) -> Result<(), Errno> {
    // SAFETY: every pointer is null or comes from a live &CStr; the kernel copies them.
    let rc = unsafe {
        libc::mount(
            opt_ptr(src),
            target.as_ptr(),
            opt_ptr(fstype),
            flags,
            opt_ptr(data).cast::<c_void>(),
        )
    };
    check_int(rc).map(drop)
}

/// umount2(2).
pub fn umount2(target: &CStr, flags: c_int) -> Result<(), Errno> {
    // SAFETY: target is a live &CStr.
    check_int(unsafe { libc::umount2(target.as_ptr(), flags) }).map(drop)
}

/// pivot_root(2).
pub fn pivot_root(new_root: &CStr, put_old: &CStr) -> Result<(), Errno> {
    // SAFETY: both pointers come from live &CStr values; the kernel copies the strings.
    check(unsafe { libc::syscall(libc::SYS_pivot_root, new_root.as_ptr(), put_old.as_ptr()) })
}

/// The kernel's `struct mount_attr` (mount_setattr(2)).
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// MOUNT_ATTR_RDONLY.
pub const MOUNT_ATTR_RDONLY: u64 = 0x1;
/// MOUNT_ATTR_NOSUID.
pub const MOUNT_ATTR_NOSUID: u64 = 0x2;
/// MOUNT_ATTR_NODEV.
pub const MOUNT_ATTR_NODEV: u64 = 0x4;
/// MOUNT_ATTR_NOEXEC.
pub const MOUNT_ATTR_NOEXEC: u64 = 0x8;

/// mount_setattr(2) on `path`, recursively. Sets `attr_set`, leaves every other attribute
/// (including the ones locked by a more privileged namespace) untouched.
pub fn mount_setattr_recursive(path: &CStr, attr_set: u64) -> Result<(), Errno> {
    let attr = MountAttr {
        attr_set,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: path is a live &CStr; attr is a live, correctly sized struct on our stack.
    check(unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            libc::AT_FDCWD,
            path.as_ptr(),
            libc::AT_RECURSIVE as c_ulong,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    })
}

/// Whether mount_setattr(2) exists (Linux 5.12+): asks the kernel with an invalid fd.
pub fn mount_setattr_available() -> bool {
    // SAFETY: a null attr with size 0 and fd -1 makes the kernel fail before touching memory.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            -1,
            c"".as_ptr(),
            0,
            ptr::null::<c_void>(),
            0,
        )
    };
    !(rc < 0 && Errno::last().0 == libc::ENOSYS)
}

/// statvfs(3) mount flags (ST_*) of `path`.
pub fn statvfs_flags(path: &CStr) -> Result<c_ulong, Errno> {
    // SAFETY: zeroed statvfs is a valid value of a plain C struct.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: path is a live &CStr and st a live out-parameter.
    check_int(unsafe { libc::statvfs(path.as_ptr(), &mut st) })?;
    Ok(st.f_flag)
}

/// mkdir(2). `EEXIST` is returned as an error; callers decide.
pub fn mkdir(path: &CStr, mode: libc::mode_t) -> Result<(), Errno> {
    // SAFETY: path is a live &CStr.
    check_int(unsafe { libc::mkdir(path.as_ptr(), mode) }).map(drop)
}

/// chmod(2).
pub fn chmod(path: &CStr, mode: u32) -> Result<(), Errno> {
    // SAFETY: path is a live &CStr.
    check_int(unsafe { libc::chmod(path.as_ptr(), mode as libc::mode_t) }).map(drop)
}

/// symlink(2).
pub fn symlink(target: &CStr, link: &CStr) -> Result<(), Errno> {
    // SAFETY: both are live &CStr values.
    check_int(unsafe { libc::symlink(target.as_ptr(), link.as_ptr()) }).map(drop)
}

/// open(2); the fd is returned raw and must be closed by the caller.
pub fn open(path: &CStr, flags: c_int, mode: libc::mode_t) -> Result<c_int, Errno> {
    // SAFETY: path is a live &CStr; mode is passed as the variadic third argument.
    check_int(unsafe { libc::open(path.as_ptr(), flags | libc::O_CLOEXEC, mode as libc::c_uint) })
}

/// close(2), ignoring errors (there is nothing useful to do about them).
pub fn close(fd: c_int) {
    // SAFETY: closing an fd we own; a wrong fd only yields EBADF.
    unsafe { libc::close(fd) };
}

/// write(2) of the whole buffer (retries on EINTR and short writes).
pub fn write_all(fd: c_int, mut buf: &[u8]) -> Result<(), Errno> {
    while !buf.is_empty() {
        // SAFETY: buf is a live slice; the kernel reads at most buf.len() bytes.
        let n = unsafe { libc::write(fd, buf.as_ptr().cast::<c_void>(), buf.len()) };
        if n < 0 {
            let e = Errno::last();
            if e.0 == libc::EINTR {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            return Err(Errno(libc::EIO));
        }
        buf = &buf[n as usize..];
    }
    Ok(())
}

/// read(2) until `buf` is full or EOF; returns the number of bytes read.
pub fn read_full(fd: c_int, buf: &mut [u8]) -> Result<usize, Errno> {
    let mut got = 0;
    while got < buf.len() {
        // SAFETY: the pointer and length describe the unfilled tail of a live buffer.
        let n = unsafe {
            libc::read(
                fd,
                buf[got..].as_mut_ptr().cast::<c_void>(),
                buf.len() - got,
            )
        };
        if n < 0 {
            let e = Errno::last();
            if e.0 == libc::EINTR {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            break;
        }
        got += n as usize;
    }
    Ok(got)
}

/// pipe2(O_CLOEXEC): (read end, write end).
pub fn pipe() -> Result<(c_int, c_int), Errno> {
    let mut fds = [0 as c_int; 2];
    // SAFETY: fds is a live array of two ints.
    check_int(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
    Ok((fds[0], fds[1]))
}

/// chdir(2).
pub fn chdir(path: &CStr) -> Result<(), Errno> {
    // SAFETY: path is a live &CStr.
    check_int(unsafe { libc::chdir(path.as_ptr()) }).map(drop)
}

/// sethostname(2).
pub fn sethostname(name: &[u8]) -> Result<(), Errno> {
    // SAFETY: name is a live slice; the kernel copies len bytes.
    check_int(unsafe { libc::sethostname(name.as_ptr().cast(), name.len()) }).map(drop)
}

/// Brings the loopback interface up (SIOCGIFFLAGS / SIOCSIFFLAGS on "lo").
pub fn loopback_up() -> Result<(), Errno> {
    // SAFETY: plain socket call.
    let fd = check_int(unsafe {
        libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0)
    })?;
    // SAFETY: ifreq is a plain C struct; zero is a valid value.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in ifr.ifr_name.iter_mut().zip(b"lo\0") {
        *d = *s as libc::c_char;
    }
    // SAFETY: ifr is a live ifreq; SIOCGIFFLAGS fills ifru_flags.
    let rc = unsafe { libc::ioctl(fd, libc::SIOCGIFFLAGS as _, &mut ifr) };
    let rc = if rc == 0 {
        // SAFETY: reading the union member SIOCGIFFLAGS just filled.
        unsafe { ifr.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short };
        // SAFETY: as above, SIOCSIFFLAGS reads the same struct.
        unsafe { libc::ioctl(fd, libc::SIOCSIFFLAGS as _, &ifr) }
    } else {
        rc
    };
    let res = check_int(rc).map(drop);
    close(fd);
    res
}

/// prctl(2) with integer arguments.
pub fn prctl(
    option: c_int,
    a2: c_ulong,
    a3: c_ulong,
    a4: c_ulong,
    a5: c_ulong,
) -> Result<c_int, Errno> {
    // SAFETY: every prctl option we use takes integer arguments only.
    check_int(unsafe { libc::prctl(option, a2, a3, a4, a5) })
}

/// Clears the effective, permitted and inheritable capability sets (capset(2), v3).
pub fn capset_clear() -> Result<(), Errno> {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: c_int,
    }
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    let hdr = Header {
        version: 0x2008_0522,
        pid: 0,
    };
    let data = [Data {
        effective: 0,
        permitted: 0,
        inheritable: 0,
    }; 2];
    // SAFETY: header and two data structs (v3 layout) are live and correctly sized.
    check(unsafe { libc::syscall(libc::SYS_capset, &hdr as *const Header, data.as_ptr()) })
}

/// setresuid(2) via the raw syscall (no glibc set*id broadcast: one thread, one process).
pub fn setresuid(uid: u32) -> Result<(), Errno> {
    // SAFETY: integer-only syscall.
    check(unsafe { libc::syscall(libc::SYS_setresuid, uid, uid, uid) })
}

/// setresgid(2) via the raw syscall.
pub fn setresgid(gid: u32) -> Result<(), Errno> {
    // SAFETY: integer-only syscall.
    check(unsafe { libc::syscall(libc::SYS_setresgid, gid, gid, gid) })
}

/// keyctl(KEYCTL_JOIN_SESSION_KEYRING, NULL): replace the inherited session keyring with a
/// new anonymous one. `Ok(false)` when the kernel has no keyrings (ENOSYS: nothing to leak).
pub fn join_new_session_keyring() -> Result<bool, Errno> {
    const KEYCTL_JOIN_SESSION_KEYRING: c_long = 1;
    // SAFETY: a null name asks for an anonymous keyring; no other pointer is passed.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_keyctl,
            KEYCTL_JOIN_SESSION_KEYRING,
            ptr::null::<libc::c_char>(),
        )
    };
    match Errno::result(rc) {
        Ok(_) => Ok(true),
        Err(Errno(libc::ENOSYS)) => Ok(false),
        Err(e) => Err(e),
    }
}

/// setgroups(0, NULL): drop every supplementary group.
pub fn setgroups_empty() -> Result<(), Errno> {
    // SAFETY: a zero-length list with a null pointer is valid.
    check(unsafe { libc::syscall(libc::SYS_setgroups, 0, ptr::null::<libc::gid_t>()) })
}

/// setsid(2).
pub fn setsid() -> Result<(), Errno> {
    // SAFETY: no arguments.
    check_int(unsafe { libc::setsid() }).map(drop)
}

/// close_range(first, last, flags) (Linux 5.9+; CLOSE_RANGE_CLOEXEC 5.11+).
pub fn close_range(first: u32, last: u32, flags: u32) -> Result<(), Errno> {
    // SAFETY: integer-only syscall.
    check(unsafe { libc::syscall(libc::SYS_close_range, first, last, flags) })
}

/// Sets or clears FD_CLOEXEC.
pub fn set_cloexec(fd: c_int, on: bool) -> Result<(), Errno> {
    let v = if on { libc::FD_CLOEXEC } else { 0 };
    // SAFETY: integer-only fcntl.
    check_int(unsafe { libc::fcntl(fd, libc::F_SETFD, v) }).map(drop)
}

/// Marks every fd from `first` up as close-on-exec, without closing anything now.
pub fn cloexec_from(first: c_int) -> Result<(), Errno> {
    const CLOSE_RANGE_CLOEXEC: u32 = 1 << 2;
    match close_range(first as u32, u32::MAX, CLOSE_RANGE_CLOEXEC) {
        Ok(()) => Ok(()),
        Err(e) if e.0 == libc::ENOSYS || e.0 == libc::EINVAL => {
            // Older kernels: walk the fd table up to the soft RLIMIT_NOFILE (bounded).
            let max = rlimit_nofile_cur().min(1 << 20);
            for fd in first..max as c_int {
                let _ = set_cloexec(fd, true);
            }
            Ok(())
        }
        Err(e) => Err(e),
    }
}

fn rlimit_nofile_cur() -> u64 {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: rl is a live out-parameter.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) } == 0 {
        rl.rlim_cur
    } else {
        1024
    }
}

/// Closes every fd from `first` up, except `keep` (allocation-free).
pub fn close_from_except(first: c_int, keep: c_int) {
    if keep >= first {
        if keep > first {
            let _ = close_range(first as u32, (keep - 1) as u32, 0);
        }
        let _ = close_range(keep as u32 + 1, u32::MAX, 0);
    } else {
        let _ = close_range(first as u32, u32::MAX, 0);
    }
}

/// A fork-like clone(2) with extra flags (namespaces). Returns 0 in the child.
///
/// # Safety
/// The child runs on a copy of the parent's address space with one thread: it must only
/// call async-signal-safe code (no allocation, no locks) until it execs or exits.
pub unsafe fn clone_fork(flags: c_ulong) -> Result<libc::pid_t, Errno> {
    // SAFETY: with a null stack the kernel uses the caller's stack copy, like fork(); the
    // caller upholds the async-signal-safety contract above.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_clone,
            flags | libc::SIGCHLD as c_ulong,
            ptr::null::<c_void>(),
            ptr::null::<c_int>(),
            ptr::null::<c_int>(),
            0 as c_ulong,
        )
    };
    Errno::result(rc).map(|p| p as libc::pid_t)
}

/// Which step of [`clone_fork_owned_by`] failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OwnedCloneError {
    /// setresgid/setresuid of the calling thread to the owner ids.
    SwitchIds(Errno),
    /// clone(2) itself.
    Clone(Errno),
    /// Restoring the parent thread's effective ids after the clone.
    RestoreIds(Errno),
}

/// [`clone_fork`] with the calling thread's effective uid/gid switched to `owner` for the
/// clone, so a new user namespace is owned by (and its per-user counts charged to) that
/// host uid rather than the launcher's root (issue 10, finding 6). Thread-only: raw
/// setresuid/setresgid, not glibc's process-wide broadcast. The real and saved ids stay,
/// so the parent restores its effective ids, and with euid 0 its effective capabilities
/// (the kernel copies the permitted set back when euid returns to 0). The dumpable flag,
/// which an euid change resets, is restored on both sides.
///
/// # Safety
/// As [`clone_fork`].
///
/// # Errors
/// Which step failed: the switch to `owner`, the clone, or the restore of the parent's ids
/// (then the child is killed and reaped).
pub unsafe fn clone_fork_owned_by(
    flags: c_ulong,
    owner: Option<(u32, u32)>,
) -> Result<libc::pid_t, OwnedCloneError> {
    let Some((uid, gid)) = owner else {
        // SAFETY: forwarded contract.
        return unsafe { clone_fork(flags) }.map_err(OwnedCloneError::Clone);
    };
    let keep = u32::MAX; // -1: leave that id unchanged
    let (euid, egid) = (geteuid(), getegid());
    // SAFETY: integer-only prctl.
    let dumpable = unsafe { libc::prctl(libc::PR_GET_DUMPABLE, 0, 0, 0, 0) };
    let set_ids = |u: u32, g: u32, gid_first: bool| -> Result<(), Errno> {
        // SAFETY: integer-only syscalls on the calling thread.
        let g_ = || check(unsafe { libc::syscall(libc::SYS_setresgid, keep, g, keep) });
        // SAFETY: as above.
        let u_ = || check(unsafe { libc::syscall(libc::SYS_setresuid, keep, u, keep) });
        if gid_first {
            g_().and_then(|()| u_())
        } else {
            u_().and_then(|()| g_())
        }
    };
    let restore_dumpable = || {
        if dumpable >= 0 {
            // SAFETY: integer-only prctl.
            unsafe { libc::prctl(libc::PR_SET_DUMPABLE, dumpable as c_ulong, 0, 0, 0) };
        }
    };
    if let Err(e) = set_ids(uid, gid, true) {
        let _ = set_ids(euid, egid, false);
        restore_dumpable();
        return Err(OwnedCloneError::SwitchIds(e));
    }
    // SAFETY: forwarded contract.
    let r = unsafe { clone_fork(flags) }.map_err(OwnedCloneError::Clone);
    if r == Ok(0) {
        // The child keeps the owner ids until its own setresuid in the new namespace.
        restore_dumpable();
        return r;
    }
    // uid first: euid 0 brings CAP_SETGID back for the gid.
    if let Err(e) = set_ids(euid, egid, false) {
        if let Ok(pid) = r {
            let _ = kill(pid, libc::SIGKILL);
            let _ = waitpid(pid, 0);
        }
        return Err(OwnedCloneError::RestoreIds(e));
    }
    // After the ids: every euid change resets it.
    restore_dumpable();
    r
}

/// execve(2). Only returns on failure.
pub fn execve(path: &CStr, argv: &[*const libc::c_char], envp: &[*const libc::c_char]) -> Errno {
    debug_assert!(argv.last().is_some_and(|p| p.is_null()));
    debug_assert!(envp.last().is_some_and(|p| p.is_null()));
    // SAFETY: argv and envp are null-terminated arrays of pointers into CStrings that the
    // caller keeps alive (built before clone).
    unsafe { libc::execve(path.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
    Errno::last()
}

/// _exit(2): no atexit handlers, no stdio flush (safe after fork).
pub fn exit(code: c_int) -> ! {
    // SAFETY: _exit never returns and touches no user-space state.
    unsafe { libc::_exit(code) }
}

/// kill(2).
pub fn kill(pid: libc::pid_t, sig: c_int) -> Result<(), Errno> {
    // SAFETY: integer-only syscall.
    check_int(unsafe { libc::kill(pid, sig) }).map(drop)
}

/// waitpid(2), retrying on EINTR. Returns (pid, raw status).
pub fn waitpid(pid: libc::pid_t, flags: c_int) -> Result<(libc::pid_t, c_int), Errno> {
    loop {
        let mut st = 0;
        // SAFETY: st is a live out-parameter.
        let rc = unsafe { libc::waitpid(pid, &mut st, flags) };
        if rc < 0 {
            let e = Errno::last();
            if e.0 == libc::EINTR {
                continue;
            }
            return Err(e);
        }
        return Ok((rc, st));
    }
}

/// wait4(2) for one child with resource usage, retrying on EINTR.
pub fn wait4(pid: libc::pid_t) -> Result<(c_int, libc::rusage), Errno> {
    loop {
        let mut st = 0;
        // SAFETY: zeroed rusage is a valid plain C struct.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: st and ru are live out-parameters.
        let rc = unsafe { libc::wait4(pid, &mut st, 0, &mut ru) };
        if rc < 0 {
            let e = Errno::last();
            if e.0 == libc::EINTR {
                continue;
            }
            return Err(e);
        }
        return Ok((st, ru));
    }
}

/// A signal set built from a list of signals.
pub fn sigset(signals: &[c_int]) -> libc::sigset_t {
    // SAFETY: sigemptyset initializes the set; sigaddset only writes into it.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for &s in signals {
            libc::sigaddset(&mut set, s);
        }
        set
    }
}

/// sigprocmask(2); returns the previous mask.
pub fn sigprocmask(how: c_int, set: &libc::sigset_t) -> Result<libc::sigset_t, Errno> {
    // SAFETY: zeroed sigset_t is valid; both pointers are live.
    let mut old: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: see above.
    check_int(unsafe { libc::sigprocmask(how, set, &mut old) })?;
    Ok(old)
}

/// sigwaitinfo(2) on `set` (which must be blocked); returns the signal number.
pub fn sigwait(set: &libc::sigset_t) -> Result<c_int, Errno> {
    loop {
        // SAFETY: set is live; a null siginfo pointer is allowed.
        let rc = unsafe { libc::sigwaitinfo(set, ptr::null_mut()) };
        if rc < 0 {
            let e = Errno::last();
            if e.0 == libc::EINTR {
                continue;
            }
            return Err(e);
        }
        return Ok(rc);
    }
}

/// Resets `sig` to its default disposition.
pub fn signal_default(sig: c_int) {
    // SAFETY: SIG_DFL is always a valid disposition.
    unsafe { libc::signal(sig, libc::SIG_DFL) };
}

/// Installs `handler` for `sig` (no SA_RESTART, so blocking calls see EINTR).
pub fn signal_handler(sig: c_int, handler: extern "C" fn(c_int)) -> Result<(), Errno> {
    // SAFETY: zeroed sigaction is valid; the handler is an extern "C" fn of the right type.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = handler as usize;
        libc::sigemptyset(&mut sa.sa_mask);
        check_int(libc::sigaction(sig, &sa, ptr::null_mut())).map(drop)
    }
}

/// getuid(2).
pub fn getuid() -> u32 {
    // SAFETY: no arguments, cannot fail.
    unsafe { libc::getuid() }
}

/// geteuid(2).
pub fn geteuid() -> u32 {
    // SAFETY: no arguments, cannot fail.
    unsafe { libc::geteuid() }
}

/// getegid(2).
pub fn getegid() -> u32 {
    // SAFETY: no arguments, cannot fail.
    unsafe { libc::getegid() }
}

/// ioctl(fd, TIOCSCTTY, 0): make `fd` the controlling terminal of this new session.
pub fn set_controlling_tty(fd: c_int) -> Result<(), Errno> {
    // SAFETY: integer-only ioctl.
    check_int(unsafe { libc::ioctl(fd, libc::TIOCSCTTY as _, 0) }).map(drop)
}

/// dup2(2).
pub fn dup2(old: c_int, new: c_int) -> Result<(), Errno> {
    // SAFETY: integer-only syscall.
    check_int(unsafe { libc::dup2(old, new) }).map(drop)
}

/// Whether the other end of a pipe has hung up (poll with a zero timeout).
pub fn hung_up(fd: c_int) -> bool {
    let mut pfd = libc::pollfd {
        fd,
        events: 0,
        revents: 0,
    };
    // SAFETY: pfd is a live pollfd; nfds is 1.
    let rc = unsafe { libc::poll(&mut pfd, 1, 0) };
    rc > 0 && pfd.revents & (libc::POLLHUP | libc::POLLERR) != 0
}

/// Whether `path` exists (faccessat F_OK, following symlinks).
pub fn exists(path: &CStr) -> bool {
    // SAFETY: path is a live &CStr.
    unsafe { libc::access(path.as_ptr(), libc::F_OK) == 0 }
}

/// A bind-less remount of the filesystem at `target` (for a tmpfs we mounted).
pub fn remount(target: &CStr, flags: c_ulong, data: Option<&CStr>) -> Result<(), Errno> {
    mount(None, target, None, libc::MS_REMOUNT | flags, data)
}

/// One read(2), retrying on EINTR; returns the byte count (0 at EOF).
pub fn read_some(fd: c_int, buf: &mut [u8]) -> Result<usize, Errno> {
    loop {
        // SAFETY: buf is a live slice; the kernel writes at most buf.len() bytes.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast::<c_void>(), buf.len()) };
        if n < 0 {
            let e = Errno::last();
            if e.0 == libc::EINTR {
                continue;
            }
            return Err(e);
        }
        return Ok(n as usize);
    }
}

/// unshare(2).
pub fn unshare(flags: c_int) -> Result<(), Errno> {
    // SAFETY: integer-only syscall.
    check_int(unsafe { libc::unshare(flags) }).map(drop)
}

/// pidfd_open(2) (Linux 5.3+); the fd is close-on-exec.
pub fn pidfd_open(pid: libc::pid_t) -> Result<c_int, Errno> {
    // SAFETY: integer-only syscall.
    Errno::result(unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) }).map(|fd| fd as c_int)
}

/// poll(2) one fd for input with a timeout in ms (-1: forever); true when readable.
pub fn poll_in(fd: c_int, timeout_ms: c_int) -> Result<bool, Errno> {
    loop {
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: pfd is a live pollfd; nfds is 1.
        let rc = unsafe { libc::poll(&mut pfd, 1, timeout_ms) };
        if rc < 0 {
            let e = Errno::last();
            if e.0 == libc::EINTR {
                continue;
            }
            return Err(e);
        }
        return Ok(rc > 0);
    }
}

/// Whether child `pid` has exited, without reaping it (waitid WEXITED|WNOHANG|WNOWAIT).
pub fn exited_nowait(pid: libc::pid_t) -> bool {
    // SAFETY: zeroed siginfo_t is valid; waitid fills it.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: info is a live out-parameter.
    let rc = unsafe {
        libc::waitid(
            libc::P_PID,
            pid as libc::id_t,
            &mut info,
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
        )
    };
    // SAFETY: si_pid is valid to read for a waitid result (0 when nothing changed).
    rc == 0 && unsafe { info.si_pid() } != 0
}

/// prlimit(2) on another process (soft = `cur`, hard = `max`).
pub fn prlimit(pid: libc::pid_t, resource: c_int, cur: u64, max: u64) -> Result<(), Errno> {
    let rl = libc::rlimit64 {
        rlim_cur: cur,
        rlim_max: max,
    };
    // SAFETY: rl is a live struct; the old-limit pointer may be null.
    check_int(unsafe { libc::prlimit64(pid, resource as _, &rl, ptr::null_mut()) }).map(drop)
}

/// Whether `fd` is an open file descriptor of this process (fcntl F_GETFD).
pub fn fd_is_open(fd: c_int) -> bool {
    // SAFETY: integer-only fcntl.
    unsafe { libc::fcntl(fd, libc::F_GETFD) >= 0 }
}

/// setpgid(0, 0): a new process group led by the caller.
pub fn setpgid_self() -> Result<(), Errno> {
    // SAFETY: integer-only syscall.
    check_int(unsafe { libc::setpgid(0, 0) }).map(drop)
}

/// Makes the caller's process group the foreground group of terminal `fd` (TIOCSPGRP).
pub fn tcsetpgrp_self(fd: c_int) -> Result<(), Errno> {
    // SAFETY: getpgrp cannot fail; TIOCSPGRP reads one pid_t from a live variable.
    let pgrp = unsafe { libc::getpgrp() };
    // SAFETY: as above.
    check_int(unsafe { libc::ioctl(fd, libc::TIOCSPGRP as _, &pgrp) }).map(drop)
}

/// socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC): two connected sockets.
pub fn socketpair() -> Result<(c_int, c_int), Errno> {
    let mut fds = [0 as c_int; 2];
    // SAFETY: fds is a live array of two ints.
    check_int(unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    })?;
    Ok((fds[0], fds[1]))
}

/// The control message buffer for one fd (SCM_RIGHTS), aligned like a cmsghdr.
#[repr(C)]
struct FdCmsg {
    hdr: libc::cmsghdr,
    fd: c_int,
}

/// Sends `fd` over the unix socket `sock` (SCM_RIGHTS). Allocation-free.
pub fn send_fd(sock: c_int, fd: c_int) -> Result<(), Errno> {
    let mut byte = [b'f'];
    let mut iov = libc::iovec {
        iov_base: byte.as_mut_ptr().cast(),
        iov_len: 1,
    };
    // SAFETY: zeroed msghdr/cmsghdr are valid plain C structs.
    let mut c: FdCmsg = unsafe { std::mem::zeroed() };
    // SAFETY: CMSG_LEN only computes a length.
    c.hdr.cmsg_len = unsafe { libc::CMSG_LEN(std::mem::size_of::<c_int>() as u32) } as _;
    c.hdr.cmsg_level = libc::SOL_SOCKET;
    c.hdr.cmsg_type = libc::SCM_RIGHTS;
    c.fd = fd;
    // SAFETY: as above.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = (&mut c as *mut FdCmsg).cast();
    msg.msg_controllen = std::mem::size_of::<FdCmsg>() as _;
    // SAFETY: msg points at live iov/control buffers for the duration of the call.
    check(unsafe { libc::sendmsg(sock, &msg, libc::MSG_NOSIGNAL) } as c_long)
}

/// Receives one fd sent with [`send_fd`]; ENODATA when the peer closed without sending.
pub fn recv_fd(sock: c_int) -> Result<c_int, Errno> {
    let mut byte = [0u8];
    let mut iov = libc::iovec {
        iov_base: byte.as_mut_ptr().cast(),
        iov_len: 1,
    };
    // SAFETY: zeroed structs are valid; the kernel fills them.
    let mut c: FdCmsg = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = (&mut c as *mut FdCmsg).cast();
    msg.msg_controllen = std::mem::size_of::<FdCmsg>() as _;
    loop {
        // SAFETY: msg points at live buffers; MSG_CMSG_CLOEXEC marks the received fd.
        let n = unsafe { libc::recvmsg(sock, &mut msg, libc::MSG_CMSG_CLOEXEC) };
        if n < 0 {
            let e = Errno::last();
            if e.0 == libc::EINTR {
                continue;
            }
            return Err(e);
        }
        if n == 0 || c.hdr.cmsg_level != libc::SOL_SOCKET || c.hdr.cmsg_type != libc::SCM_RIGHTS {
            return Err(Errno(libc::ENODATA));
        }
        return Ok(c.fd);
    }
}

/// Unlocks a pty master's slave (ioctl TIOCSPTLCK 0).
pub fn unlockpt(master: c_int) -> Result<(), Errno> {
    let zero: c_int = 0;
    // SAFETY: TIOCSPTLCK reads one int from a live variable.
    check_int(unsafe { libc::ioctl(master, libc::TIOCSPTLCK as _, &zero) }).map(drop)
}

/// Opens the slave of a pty master without a path (ioctl TIOCGPTPEER, Linux 4.13+): the
/// slave of *this* master's devpts instance, close-on-exec, not a controlling terminal yet.
pub fn pty_peer(master: c_int) -> Result<c_int, Errno> {
    const TIOCGPTPEER: libc::c_ulong = 0x5441;
    // SAFETY: integer-only ioctl returning a new fd.
    check_int(unsafe {
        libc::ioctl(
            master,
            TIOCGPTPEER as _,
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        )
    })
}

// ---------------------------------------------------------------------------------------------
// Mounting by fd (Linux 5.12+ together with mount_setattr): binds whose path a sandbox could
// have prepared (inside a writable bind) are resolved without following any symlink and
// mounted from the fd, so a link swapped in after the launcher checked the path is refused.

/// RESOLVE_NO_SYMLINKS (openat2(2)).
const RESOLVE_NO_SYMLINKS: u64 = 0x04;
/// OPEN_TREE_CLONE (open_tree(2)).
const OPEN_TREE_CLONE: c_ulong = 1;
/// MOVE_MOUNT_F_EMPTY_PATH / MOVE_MOUNT_T_EMPTY_PATH (move_mount(2)).
const MOVE_MOUNT_F_EMPTY_PATH: c_ulong = 0x04;
const MOVE_MOUNT_T_EMPTY_PATH: c_ulong = 0x40;

/// openat2(AT_FDCWD, path, O_PATH|O_CLOEXEC, RESOLVE_NO_SYMLINKS): an fd for `path` or ELOOP
/// when any component of it is a symlink. The fd must be closed by the caller.
pub fn open_path_nofollow(path: &CStr) -> Result<c_int, Errno> {
    /// The kernel's `struct open_how` (libc's is non-exhaustive).
    #[repr(C)]
    struct OpenHow {
        flags: u64,
        mode: u64,
        resolve: u64,
    }
    let how = OpenHow {
        flags: (libc::O_PATH | libc::O_CLOEXEC) as u64,
        mode: 0,
        resolve: RESOLVE_NO_SYMLINKS,
    };
    // SAFETY: path is a live &CStr; how is a live, correctly sized struct on our stack.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            libc::AT_FDCWD,
            path.as_ptr(),
            &how as *const OpenHow,
            std::mem::size_of::<OpenHow>(),
        )
    };
    Errno::result(rc).map(|fd| fd as c_int)
}

/// open_tree(fd, "", OPEN_TREE_CLONE|AT_RECURSIVE|AT_EMPTY_PATH|O_CLOEXEC): a detached recursive
/// copy of the mount tree at `fd`. The returned fd must be closed by the caller.
pub fn open_tree_clone(fd: c_int) -> Result<c_int, Errno> {
    let flags = OPEN_TREE_CLONE
        | libc::AT_RECURSIVE as c_ulong
        | libc::AT_EMPTY_PATH as c_ulong
        | libc::O_CLOEXEC as c_ulong;
    // SAFETY: integer arguments and a static empty C string.
    let rc = unsafe { libc::syscall(libc::SYS_open_tree, fd, c"".as_ptr(), flags) };
    Errno::result(rc).map(|fd| fd as c_int)
}

/// mount_setattr(fd, "", AT_EMPTY_PATH|AT_RECURSIVE, attr_set): like
/// [`mount_setattr_recursive`] on the mount tree `fd` refers to (e.g. a detached one).
pub fn mount_setattr_fd(fd: c_int, attr_set: u64) -> Result<(), Errno> {
    let attr = MountAttr {
        attr_set,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: a static empty C string; attr is a live, correctly sized struct on our stack.
    check(unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd,
            c"".as_ptr(),
            (libc::AT_EMPTY_PATH | libc::AT_RECURSIVE) as c_ulong,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    })
}

/// move_mount(from, "", to, "", F_EMPTY_PATH|T_EMPTY_PATH): attaches the mount tree `from` on
/// the object `to` refers to.
pub fn move_mount_fds(from: c_int, to: c_int) -> Result<(), Errno> {
    // SAFETY: integer arguments and static empty C strings.
    check(unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            from,
            c"".as_ptr(),
            to,
            c"".as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH,
        )
    })
}

/// Sets O_NONBLOCK on `fd`'s open file description. Only for descriptions this process
/// alone uses (its own pipe ends, a pty master it received): never the caller's terminal.
pub fn set_nonblock(fd: c_int) -> Result<(), Errno> {
    // SAFETY: integer-only fcntl calls.
    unsafe {
        let fl = check_int(libc::fcntl(fd, libc::F_GETFL))?;
        check_int(libc::fcntl(fd, libc::F_SETFL, fl | libc::O_NONBLOCK)).map(drop)
    }
}

/// One write(2), retrying on EINTR; returns the byte count written.
pub fn write_some(fd: c_int, buf: &[u8]) -> Result<usize, Errno> {
    loop {
        // SAFETY: buf is a live slice; the kernel reads at most buf.len() bytes.
        let n = unsafe { libc::write(fd, buf.as_ptr().cast::<c_void>(), buf.len()) };
        if n < 0 {
            let e = Errno::last();
            if e.0 == libc::EINTR {
                continue;
            }
            return Err(e);
        }
        return Ok(n as usize);
    }
}

/// poll(2) on `fds` (timeout in ms, -1: forever); EINTR is returned as an error.
pub fn poll(fds: &mut [libc::pollfd], timeout_ms: c_int) -> Result<usize, Errno> {
    // SAFETY: fds is a live, exclusively borrowed array of pollfd of the given length.
    let rc = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
    check_int(rc).map(|n| n as usize)
}

/// ptrace(PTRACE_DETACH, pid, 0, sig): succeeds only when the caller is `pid`'s tracer and
/// `pid` is in a ptrace-stop; it then resumes with `sig` delivered (0: none).
pub fn ptrace_detach(pid: libc::pid_t, sig: c_int) -> Result<(), Errno> {
    // SAFETY: integer-only syscall (addr is unused by PTRACE_DETACH, data is the signal).
    check(unsafe {
        libc::ptrace(
            libc::PTRACE_DETACH,
            pid,
            ptr::null_mut::<c_void>(),
            sig as usize as *mut c_void,
        )
    })
}

/// Overwrites this process's memory in `[start, end)` with `text` followed by zeros
/// (truncated to the range). For the argv/environment area of a forked copy of the
/// launcher, so its /proc/PID/cmdline shows `text` instead of the launcher's argv.
///
/// # Safety
/// `[start, end)` must be writable memory of this process that no live Rust reference
/// points into: the argv/env strings area from /proc/self/stat (fields 48-51), in a child
/// that reads neither `std::env::args` nor the environment afterwards.
pub unsafe fn overwrite_area(start: usize, end: usize, text: &[u8]) {
    if start == 0 || end <= start {
        return;
    }
    let len = end - start;
    let p = start as *mut u8;
    let n = text.len().min(len);
    // SAFETY: the caller guarantees [start, end) is writable and unaliased; n <= len.
    unsafe {
        ptr::copy_nonoverlapping(text.as_ptr(), p, n);
        ptr::write_bytes(p.add(n), 0, len - n);
    }
}

/// This process's argv and environment areas `(arg_start, arg_end, env_start, env_end)`
/// (fields 48-51 of /proc/self/stat, Linux 3.5+). Allocates: call before clone.
pub fn proc_title_areas() -> Option<[usize; 4]> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised comm start at field 3.
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let at = |n: usize| f.get(n - 3).and_then(|v| v.parse::<usize>().ok());
    Some([at(48)?, at(49)?, at(50)?, at(51)?])
}

/// isatty(3): whether `fd` is a terminal.
pub fn isatty(fd: c_int) -> bool {
    // SAFETY: integer-only libc call.
    unsafe { libc::isatty(fd) == 1 }
}

/// One write(2) that does not block, on a file description shared with other processes (the
/// caller's terminal): O_NONBLOCK is set for this one call and the previous flags restored
/// right after it, on every path.
pub fn write_nonblocking_shared(fd: c_int, buf: &[u8]) -> Result<usize, Errno> {
    // SAFETY: integer-only fcntl.
    let fl = check_int(unsafe { libc::fcntl(fd, libc::F_GETFL) })?;
    if fl & libc::O_NONBLOCK != 0 {
        return write_some(fd, buf);
    }
    // SAFETY: as above.
    check_int(unsafe { libc::fcntl(fd, libc::F_SETFL, fl | libc::O_NONBLOCK) })?;
    let r = write_some(fd, buf);
    // SAFETY: as above; restores the flags read before.
    unsafe { libc::fcntl(fd, libc::F_SETFL, fl) };
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status_field(name: &str) -> String {
        let text = std::fs::read_to_string("/proc/thread-self/status").expect("read status");
        text.lines()
            .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_string()))
            .expect("field present")
    }

    /// As root: the new user namespace belongs to the given ids, and the parent thread gets
    /// its ids, effective capabilities and dumpable flag back.
    #[test]
    fn clone_owned_by_sets_the_owner_and_restores_the_parent() {
        if geteuid() != 0 {
            eprintln!("skip clone_owned_by_sets_the_owner_and_restores_the_parent: needs root");
            return;
        }
        // In a forked child, so the test process's threads never see the switch.
        // SAFETY: the child runs only the checks below and _exits.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            let cap_eff = status_field("CapEff:");
            // SAFETY: integer-only prctl.
            let dumpable = unsafe { libc::prctl(libc::PR_GET_DUMPABLE, 0, 0, 0, 0) };
            // SAFETY: the grandchild only pauses until killed.
            let r = unsafe {
                clone_fork_owned_by(libc::CLONE_NEWUSER as c_ulong, Some((65534, 65534)))
            };
            let g = match r {
                Ok(0) => loop {
                    // SAFETY: waits for the SIGKILL below.
                    unsafe { libc::pause() };
                },
                Ok(g) => g,
                // SAFETY: ends the forked child.
                Err(_) => unsafe { libc::_exit(2) },
            };
            let owner = std::fs::File::open(format!("/proc/{g}/ns/user")).map(|f| {
                let mut uid: u32 = u32::MAX;
                // SAFETY: NS_GET_OWNER_UID writes one uid_t into `uid`.
                let rc = unsafe {
                    libc::ioctl(
                        std::os::fd::AsRawFd::as_raw_fd(&f),
                        0xb704,
                        &mut uid as *mut u32,
                    )
                };
                (rc, uid)
            });
            let _ = kill(g, libc::SIGKILL);
            let _ = waitpid(g, 0);
            let code = if !matches!(owner, Ok((0, 65534))) {
                3
            } else if geteuid() != 0 || getegid() != 0 {
                4
            } else if status_field("CapEff:") != cap_eff {
                5
            // SAFETY: integer-only prctl.
            } else if unsafe { libc::prctl(libc::PR_GET_DUMPABLE, 0, 0, 0, 0) } != dumpable {
                6
            } else {
                0
            };
            // SAFETY: ends the forked child.
            unsafe { libc::_exit(code) };
        }
        let mut st = 0;
        // SAFETY: our own child; st is a live local.
        assert_eq!(unsafe { libc::waitpid(pid, &mut st, 0) }, pid);
        assert!(libc::WIFEXITED(st), "child died: {st:#x}");
        let why = [
            "",
            "",
            "clone failed",
            "the namespace is not owned by 65534",
            "ids not restored",
            "effective capabilities not restored",
            "dumpable flag not restored",
        ];
        let code = libc::WEXITSTATUS(st) as usize;
        assert_eq!(code, 0, "{}", why.get(code).unwrap_or(&"?"));
    }
}
