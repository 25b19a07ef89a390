//! Raw system calls: the only home of `unsafe` in this crate.
//!
//! Wrappers are thin: they take `&CStr`, `BorrowedFd` and integers, and return
//! `Result<_, Errno>`. Many of them deliberately pass an argument the kernel rejects *after*
//! its permission check (a bad magic, a zero length, an unknown flag): the op modules turn
//! the resulting errno into evidence that the check passed. Calls with side effects
//! (`mount`, `mknod`, namespaces, `chroot`) are only ever made from a forked op child or on a
//! probe-owned scratch directory; the op modules document that at each call site.

use std::ffi::CStr;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use crate::errno::Errno;

fn check(rc: libc::c_long) -> Result<libc::c_long, Errno> {
    if rc == -1 {
        Err(Errno::last())
    } else {
        Ok(rc)
    }
}

fn check_int(rc: libc::c_int) -> Result<libc::c_int, Errno> {
    if rc == -1 {
        Err(Errno::last())
    } else {
        Ok(rc)
    }
}

fn owned(rc: libc::c_long) -> Result<OwnedFd, Errno> {
    let fd = check(rc)? as RawFd;
    // SAFETY: the kernel just returned this fd to us; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

// ---------------------------------------------------------------------------------------
// Processes

/// Which side of a fork we are on.
pub enum Fork {
    /// In the parent, with the child's pid.
    Parent(libc::pid_t),
    /// In the child.
    Child,
}

/// fork(2). The probe is single-threaded when it forks (checked by `runner`), so the child
/// may allocate.
pub fn fork() -> Result<Fork, Errno> {
    // SAFETY: fork has no pointer arguments; the caller is single-threaded (runner checks).
    let pid = unsafe { libc::fork() };
    match pid {
        -1 => Err(Errno::last()),
        0 => Ok(Fork::Child),
        p => Ok(Fork::Parent(p)),
    }
}

/// _exit(2): ends the process without running destructors or flushing stdio.
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit never returns and takes no pointers.
    unsafe { libc::_exit(code) }
}

/// waitpid(2); returns (pid, raw status). `pid` 0 with WNOHANG means "still running".
pub fn waitpid(pid: libc::pid_t, flags: libc::c_int) -> Result<(libc::pid_t, libc::c_int), Errno> {
    let mut status: libc::c_int = 0;
    loop {
        // SAFETY: status is a live local the kernel writes an int into.
        let rc = unsafe { libc::waitpid(pid, &mut status, flags) };
        match rc {
            -1 if Errno::last().0 == libc::EINTR => continue,
            -1 => return Err(Errno::last()),
            p => return Ok((p, status)),
        }
    }
}

/// kill(2).
pub fn kill(pid: libc::pid_t, sig: libc::c_int) -> Result<(), Errno> {
    // SAFETY: no pointers.
    check_int(unsafe { libc::kill(pid, sig) }).map(drop)
}

/// getpid(2).
pub fn getpid() -> libc::pid_t {
    // SAFETY: no arguments, cannot fail.
    unsafe { libc::getpid() }
}

/// getppid(2).
pub fn getppid() -> libc::pid_t {
    // SAFETY: no arguments, cannot fail.
    unsafe { libc::getppid() }
}

/// (uid, euid, gid, egid).
pub fn ids() -> (u32, u32, u32, u32) {
    // SAFETY: none of these take arguments or fail.
    unsafe {
        (
            libc::getuid(),
            libc::geteuid(),
            libc::getgid(),
            libc::getegid(),
        )
    }
}

/// pause(2): sleeps until a signal arrives.
pub fn pause() {
    // SAFETY: no arguments.
    unsafe { libc::pause() };
}

/// setsid(2).
pub fn setsid() -> Result<(), Errno> {
    // SAFETY: no arguments.
    check_int(unsafe { libc::setsid() }).map(drop)
}

/// Ignores a signal in the calling process (SIG_IGN).
pub fn ignore_signal(sig: libc::c_int) -> Result<(), Errno> {
    // SAFETY: SIG_IGN is not a handler function, so no code of ours runs on delivery.
    if unsafe { libc::signal(sig, libc::SIG_IGN) } == libc::SIG_ERR {
        return Err(Errno::last());
    }
    Ok(())
}

/// prctl(PR_SET_PDEATHSIG, sig): the caller gets `sig` when its parent dies.
pub fn set_parent_death_signal(sig: libc::c_int) -> Result<(), Errno> {
    // SAFETY: integer arguments only.
    check_int(unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, sig as libc::c_ulong, 0, 0, 0) })
        .map(drop)
}

/// Number of threads of this process, from /proc/self/task (None if /proc is absent).
pub fn thread_count() -> Option<usize> {
    std::fs::read_dir("/proc/self/task").ok().map(|d| d.count())
}

// ---------------------------------------------------------------------------------------
// Pipes and polling

/// pipe2(O_CLOEXEC): (read end, write end).
pub fn pipe() -> Result<(OwnedFd, OwnedFd), Errno> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: fds is a live array of two ints, as pipe2 requires.
    check_int(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
    // SAFETY: the kernel just created both fds; we are their only owner.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// poll(2) for readability of one fd; Ok(true) if readable (or hung up) before the timeout.
pub fn poll_readable(fd: BorrowedFd<'_>, timeout_ms: i32) -> Result<bool, Errno> {
    let mut p = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: p is a live pollfd and we pass a count of 1.
    let rc = check_int(unsafe { libc::poll(&mut p, 1, timeout_ms) })?;
    Ok(rc > 0)
}

/// read(2) into `buf`.
pub fn read(fd: BorrowedFd<'_>, buf: &mut [u8]) -> Result<usize, Errno> {
    // SAFETY: buf is a live, writable slice of buf.len() bytes.
    let rc = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
    check(rc as libc::c_long).map(|n| n as usize)
}

/// write(2) of the whole buffer (retrying short writes and EINTR).
pub fn write_all(fd: BorrowedFd<'_>, mut buf: &[u8]) -> Result<(), Errno> {
    while !buf.is_empty() {
        // SAFETY: buf is a live slice of buf.len() bytes.
        let rc = unsafe { libc::write(fd.as_raw_fd(), buf.as_ptr().cast(), buf.len()) };
        match check(rc as libc::c_long) {
            Ok(n) => buf = &buf[n as usize..],
            Err(e) if e.0 == libc::EINTR => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// fcntl(fd, F_GETFD): does this descriptor number exist in our table?
pub fn fd_flags(fd: RawFd) -> Result<libc::c_int, Errno> {
    // SAFETY: F_GETFD only reads the descriptor flags; an unknown fd gives EBADF.
    check_int(unsafe { libc::fcntl(fd, libc::F_GETFD) })
}

/// isatty(3).
pub fn isatty(fd: RawFd) -> bool {
    // SAFETY: isatty takes an integer; a bad fd simply returns 0.
    unsafe { libc::isatty(fd) == 1 }
}

/// ioctl(fd, TIOCSTI, NULL): the NULL pointer makes a permitted call fail with EFAULT before
/// any byte is injected; a refused call fails with EPERM/EIO first.
pub fn tiocsti_null(fd: RawFd) -> Result<(), Errno> {
    // SAFETY: the kernel validates the NULL pointer with get_user and returns EFAULT; no
    // memory of ours is touched.
    check_int(unsafe { libc::ioctl(fd, libc::TIOCSTI, std::ptr::null::<u8>()) }).map(drop)
}

/// ioctl(fd, TIOCLINUX, NULL): the NULL subcode pointer makes a permitted call fail with
/// EFAULT (on a virtual console) or ENOTTY (elsewhere) without doing anything.
pub fn tioclinux_null(fd: RawFd) -> Result<(), Errno> {
    // SAFETY: the kernel validates the NULL pointer itself; no memory of ours is touched.
    check_int(unsafe { libc::ioctl(fd, libc::TIOCLINUX, std::ptr::null::<u8>()) }).map(drop)
}

/// A fresh pseudo-terminal pair (master, slave). The slave is opened without O_NOCTTY and
/// then claimed with TIOCSCTTY, so a caller that just did setsid() gets it as its
/// controlling terminal.
pub fn open_pty_as_ctty() -> Result<(OwnedFd, OwnedFd), Errno> {
    let master = open(c"/dev/ptmx", libc::O_RDWR | libc::O_NOCTTY, 0)?;
    let unlock: libc::c_int = 0;
    // SAFETY: TIOCSPTLCK reads one int from the live local `unlock`.
    check_int(unsafe {
        libc::ioctl(
            master.as_raw_fd(),
            libc::TIOCSPTLCK,
            &unlock as *const libc::c_int,
        )
    })?;
    let mut n: libc::c_uint = 0;
    // SAFETY: TIOCGPTN writes one unsigned int into the live local `n`.
    check_int(unsafe {
        libc::ioctl(
            master.as_raw_fd(),
            libc::TIOCGPTN,
            &mut n as *mut libc::c_uint,
        )
    })?;
    let path = std::ffi::CString::new(format!("/dev/pts/{n}")).map_err(|_| Errno(libc::EINVAL))?;
    let slave = open(&path, libc::O_RDWR, 0)?;
    // SAFETY: TIOCSCTTY takes an integer argument (0: do not steal).
    check_int(unsafe { libc::ioctl(slave.as_raw_fd(), libc::TIOCSCTTY, 0) })?;
    Ok((master, slave))
}

// ---------------------------------------------------------------------------------------
// Files and mounts

/// open(2) with raw flags.
pub fn open(path: &CStr, flags: libc::c_int, mode: libc::mode_t) -> Result<OwnedFd, Errno> {
    // SAFETY: path is a live NUL-terminated string the kernel copies.
    let fd = unsafe { libc::open(path.as_ptr(), flags | libc::O_CLOEXEC, mode as libc::c_uint) };
    owned(fd as libc::c_long)
}

/// renameat2(2) with `RENAME_EXCHANGE`: swaps two names atomically (both must exist). The
/// probe's way to try a rename over something without losing it: a second exchange swaps back.
pub fn rename_exchange(a: &CStr, b: &CStr) -> Result<(), Errno> {
    // SAFETY: both strings are live &CStr the kernel copies; AT_FDCWD and the flag are plain
    // integers.
    check(unsafe {
        libc::syscall(
            libc::SYS_renameat2,
            libc::AT_FDCWD,
            a.as_ptr(),
            libc::AT_FDCWD,
            b.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    })
    .map(drop)
}

/// link(2).
pub fn link(old: &CStr, new: &CStr) -> Result<(), Errno> {
    // SAFETY: both strings are live &CStr the kernel copies.
    check_int(unsafe { libc::link(old.as_ptr(), new.as_ptr()) }).map(drop)
}

/// fstat(2): `(st_mode, st_rdev)`.
pub fn fstat_mode_rdev(fd: BorrowedFd<'_>) -> Result<(u32, u64), Errno> {
    // SAFETY: a zeroed stat is a valid out-buffer.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fd is borrowed (open for the call); st is a live local.
    check_int(unsafe { libc::fstat(fd.as_raw_fd(), &mut st) })?;
    Ok((st.st_mode, st.st_rdev))
}

/// mount(2).
pub fn mount(
    src: &CStr,
    target: &CStr,
    fstype: Option<&CStr>,
    flags: libc::c_ulong,
) -> Result<(), Errno> {
    let fst = fstype.map_or(std::ptr::null(), CStr::as_ptr);
    // SAFETY: all strings are live &CStr (or NULL for fstype); data is NULL.
    check_int(unsafe { libc::mount(src.as_ptr(), target.as_ptr(), fst, flags, std::ptr::null()) })
        .map(drop)
}

/// umount2(2).
pub fn umount2(target: &CStr, flags: libc::c_int) -> Result<(), Errno> {
    // SAFETY: target is a live &CStr.
    check_int(unsafe { libc::umount2(target.as_ptr(), flags) }).map(drop)
}

/// pivot_root(2).
pub fn pivot_root(new_root: &CStr, put_old: &CStr) -> Result<(), Errno> {
    // SAFETY: both pointers come from live &CStr values; the kernel copies the strings.
    check(unsafe { libc::syscall(libc::SYS_pivot_root, new_root.as_ptr(), put_old.as_ptr()) })
        .map(drop)
}

/// chroot(2).
pub fn chroot(path: &CStr) -> Result<(), Errno> {
    // SAFETY: path is a live &CStr.
    check_int(unsafe { libc::chroot(path.as_ptr()) }).map(drop)
}

/// mknod(2).
pub fn mknod(path: &CStr, mode: libc::mode_t, major: u32, minor: u32) -> Result<(), Errno> {
    let dev = libc::makedev(major, minor);
    // SAFETY: path is a live &CStr.
    check_int(unsafe { libc::mknod(path.as_ptr(), mode, dev) }).map(drop)
}

/// fsopen(2) of a filesystem type: returns the fs-context fd (nothing is mounted).
pub fn fsopen(fstype: &CStr) -> Result<OwnedFd, Errno> {
    // SAFETY: fstype is a live &CStr; flags 1 = FSOPEN_CLOEXEC.
    owned(unsafe { libc::syscall(libc::SYS_fsopen, fstype.as_ptr(), 1 as libc::c_uint) })
}

/// open_by_handle_at(2) with an empty handle (handle_bytes 0): a permitted caller gets
/// EINVAL from the size check, which comes after the CAP_DAC_READ_SEARCH check.
pub fn open_by_handle_at_empty(mount_fd: BorrowedFd<'_>) -> Result<OwnedFd, Errno> {
    #[repr(C)]
    struct Handle {
        handle_bytes: u32,
        handle_type: i32,
        f_handle: [u8; 8],
    }
    let mut h = Handle {
        handle_bytes: 0,
        handle_type: 0,
        f_handle: [0; 8],
    };
    // SAFETY: h is a live struct file_handle with room for 8 handle bytes; the kernel reads
    // its header and rejects handle_bytes == 0.
    owned(unsafe {
        libc::syscall(
            libc::SYS_open_by_handle_at,
            mount_fd.as_raw_fd(),
            &mut h as *mut Handle,
            libc::O_RDONLY,
        )
    })
}

// ---------------------------------------------------------------------------------------
// Namespaces

/// unshare(2).
pub fn unshare(flags: libc::c_int) -> Result<(), Errno> {
    // SAFETY: integer argument only.
    check_int(unsafe { libc::unshare(flags) }).map(drop)
}

/// setns(2).
pub fn setns(fd: BorrowedFd<'_>, nstype: libc::c_int) -> Result<(), Errno> {
    // SAFETY: integer arguments only; fd is live for the call.
    check_int(unsafe { libc::setns(fd.as_raw_fd(), nstype) }).map(drop)
}

/// Raw clone(2) with fork semantics (no CLONE_VM, no new stack): the child continues on a
/// copy of our stack like after fork and must end with [`exit_now`].
pub fn clone_fork(flags: libc::c_ulong) -> Result<Fork, Errno> {
    // SAFETY: without CLONE_VM the child gets a copy-on-write copy of our address space,
    // exactly like fork; stack NULL means "keep the current stack pointer"; the tid pointers
    // are NULL and unused because no CLONE_*TID flag is set.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_clone,
            flags | libc::SIGCHLD as libc::c_ulong,
            std::ptr::null::<u8>(),
            std::ptr::null::<u8>(),
            std::ptr::null::<u8>(),
            0 as libc::c_ulong,
        )
    };
    match check(rc)? {
        0 => Ok(Fork::Child),
        p => Ok(Fork::Parent(p as libc::pid_t)),
    }
}

/// clone3(2) with fork semantics and the given flags.
pub fn clone3_fork(flags: u64) -> Result<Fork, Errno> {
    #[repr(C)]
    #[derive(Default)]
    struct CloneArgs {
        flags: u64,
        pidfd: u64,
        child_tid: u64,
        parent_tid: u64,
        exit_signal: u64,
        stack: u64,
        stack_size: u64,
        tls: u64,
    }
    let args = CloneArgs {
        flags,
        exit_signal: libc::SIGCHLD as u64,
        ..Default::default()
    };
    // SAFETY: args is a live struct clone_args (version 0, 64 bytes) the kernel copies; no
    // stack is given, so the child continues on a copy of our stack like after fork.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &args as *const CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    match check(rc)? {
        0 => Ok(Fork::Child),
        p => Ok(Fork::Parent(p as libc::pid_t)),
    }
}

// ---------------------------------------------------------------------------------------
// Privileged syscalls called with harmless arguments

/// reboot(2) with magic 0: refused with EPERM without CAP_SYS_BOOT, EINVAL (bad magic) with
/// it. Never reboots: the magic check cannot pass.
pub fn reboot_bad_magic() -> Result<(), Errno> {
    // SAFETY: integer arguments only; arg is NULL and unused on the error path.
    check(unsafe { libc::syscall(libc::SYS_reboot, 0, 0, 0, std::ptr::null::<u8>()) }).map(drop)
}

/// init_module(NULL, 0, ""): EPERM without CAP_SYS_MODULE, ENOEXEC (image too short) with it.
pub fn init_module_empty() -> Result<(), Errno> {
    // SAFETY: length 0 means the kernel never reads the NULL image; params is a static "".
    check(unsafe {
        libc::syscall(
            libc::SYS_init_module,
            std::ptr::null::<u8>(),
            0usize,
            c"".as_ptr(),
        )
    })
    .map(drop)
}

/// delete_module(name, O_NONBLOCK) of a module that does not exist: EPERM without
/// CAP_SYS_MODULE, ENOENT with it.
pub fn delete_module(name: &CStr) -> Result<(), Errno> {
    // SAFETY: name is a live &CStr.
    check(unsafe { libc::syscall(libc::SYS_delete_module, name.as_ptr(), libc::O_NONBLOCK) })
        .map(drop)
}

/// kexec_load(0, 0, NULL, flags) with an undefined flag bit: EPERM without CAP_SYS_BOOT,
/// EINVAL after the permission check. Nothing is loaded (zero segments).
pub fn kexec_load_bad_flags() -> Result<(), Errno> {
    // SAFETY: zero segments, so the NULL segment pointer is never read.
    check(unsafe {
        libc::syscall(
            libc::SYS_kexec_load,
            0usize,
            0usize,
            std::ptr::null::<u8>(),
            0x8000usize,
        )
    })
    .map(drop)
}

/// swapon(2).
pub fn swapon(path: &CStr) -> Result<(), Errno> {
    // SAFETY: path is a live &CStr.
    check(unsafe { libc::syscall(libc::SYS_swapon, path.as_ptr(), 0) }).map(drop)
}

/// swapoff(2).
pub fn swapoff(path: &CStr) -> Result<(), Errno> {
    // SAFETY: path is a live &CStr.
    check(unsafe { libc::syscall(libc::SYS_swapoff, path.as_ptr()) }).map(drop)
}

/// acct(2).
pub fn acct(path: &CStr) -> Result<(), Errno> {
    // SAFETY: path is a live &CStr.
    check_int(unsafe { libc::acct(path.as_ptr()) }).map(drop)
}

/// settimeofday(NULL, tz) with an out-of-range timezone: EPERM without CAP_SYS_TIME, EINVAL
/// after the check. The clock is never touched (tv is NULL, tz is rejected).
pub fn settimeofday_bad_tz() -> Result<(), Errno> {
    // struct timezone { int tz_minuteswest; int tz_dsttime; } (libc's type is opaque).
    let tz: [libc::c_int; 2] = [100_000, 0];
    // SAFETY: tv is NULL (allowed), tz is a live struct timezone the kernel copies.
    check(unsafe {
        libc::syscall(
            libc::SYS_settimeofday,
            std::ptr::null::<libc::timeval>(),
            tz.as_ptr(),
        )
    })
    .map(drop)
}

/// clock_settime(CLOCK_REALTIME) cannot be probed harmlessly (the kernel validates the time
/// before the permission check), so this is clock_adjtime(CLOCK_REALTIME) with ADJ_TICK and
/// tick 0: EPERM without CAP_SYS_TIME, EINVAL (tick out of range) after the check.
pub fn clock_adjtime_bad_tick() -> Result<(), Errno> {
    // SAFETY: timex is plain old data; all-zero is a valid value.
    let mut tx: libc::timex = unsafe { std::mem::zeroed() };
    tx.modes = libc::ADJ_TICK;
    tx.tick = 0;
    // SAFETY: tx is a live struct timex the kernel reads and may write back.
    check(unsafe {
        libc::syscall(
            libc::SYS_clock_adjtime,
            libc::CLOCK_REALTIME,
            &mut tx as *mut libc::timex,
        )
    })
    .map(drop)
}

/// sethostname(name, -1): EPERM without CAP_SYS_ADMIN over the UTS namespace, EINVAL (bad
/// length) after the check. The name is never read, let alone changed.
pub fn sethostname_bad_len() -> Result<(), Errno> {
    // SAFETY: a negative length is rejected before the pointer is read.
    check(unsafe { libc::syscall(libc::SYS_sethostname, c"x".as_ptr(), -1 as libc::c_long) })
        .map(drop)
}

/// personality(2); returns the previous persona.
pub fn personality(persona: libc::c_ulong) -> Result<libc::c_int, Errno> {
    // SAFETY: integer argument only.
    check_int(unsafe { libc::personality(persona) })
}

/// syslog(SYSLOG_ACTION_SIZE_BUFFER): the size of the kernel log buffer (read-only).
pub fn syslog_size_buffer() -> Result<libc::c_long, Errno> {
    // SAFETY: action 10 ignores the buffer pointer and length.
    check(unsafe { libc::syscall(libc::SYS_syslog, 10, std::ptr::null_mut::<u8>(), 0) })
}

/// iopl(2) (x86 only).
#[cfg(target_arch = "x86_64")]
pub fn iopl(level: libc::c_int) -> Result<(), Errno> {
    // SAFETY: integer argument only; the raised I/O privilege dies with the calling op child.
    check(unsafe { libc::syscall(libc::SYS_iopl, level) }).map(drop)
}

/// vhangup(2).
pub fn vhangup() -> Result<(), Errno> {
    // SAFETY: no arguments.
    check(unsafe { libc::syscall(libc::SYS_vhangup) }).map(drop)
}

/// ptrace(PTRACE_TRACEME).
pub fn ptrace_traceme() -> Result<(), Errno> {
    // SAFETY: TRACEME ignores the pid/addr/data arguments.
    check(unsafe {
        libc::ptrace(
            libc::PTRACE_TRACEME,
            0,
            std::ptr::null_mut::<u8>(),
            std::ptr::null_mut::<u8>(),
        )
    })
    .map(drop)
}

/// ptrace(PTRACE_SEIZE, pid): attaches without stopping the tracee. The tracer's exit
/// detaches it again.
pub fn ptrace_seize(pid: libc::pid_t) -> Result<(), Errno> {
    // SAFETY: SEIZE reads no memory; addr must be 0 and data holds options (none).
    check(unsafe {
        libc::ptrace(
            libc::PTRACE_SEIZE,
            pid,
            std::ptr::null_mut::<u8>(),
            std::ptr::null_mut::<u8>(),
        )
    })
    .map(drop)
}

/// process_vm_readv of `buf.len()` bytes at `remote_addr` in `pid`.
pub fn process_vm_read(
    pid: libc::pid_t,
    remote_addr: usize,
    buf: &mut [u8],
) -> Result<usize, Errno> {
    let local = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let remote = libc::iovec {
        iov_base: remote_addr as *mut libc::c_void,
        iov_len: buf.len(),
    };
    // SAFETY: local points at our live buffer; the remote address is only dereferenced by
    // the kernel in the other process, with fault handling.
    let rc = unsafe { libc::process_vm_readv(pid, &local, 1, &remote, 1, 0) };
    check(rc as libc::c_long).map(|n| n as usize)
}

/// bpf(BPF_PROG_LOAD) with an all-zero attr (no instructions): EPERM when unprivileged BPF is
/// refused, E2BIG or EINVAL (insn_cnt 0) after the checks. Nothing is loaded.
pub fn bpf_prog_load_empty() -> Result<OwnedFd, Errno> {
    let attr = [0u8; 128];
    // SAFETY: attr is a live zeroed buffer of the given size; the kernel copies it.
    owned(unsafe {
        libc::syscall(
            libc::SYS_bpf,
            5, /* BPF_PROG_LOAD */
            attr.as_ptr(),
            attr.len() as u32,
        )
    })
}

/// userfaultfd(O_CLOEXEC).
pub fn userfaultfd() -> Result<OwnedFd, Errno> {
    // SAFETY: integer flags only.
    owned(unsafe { libc::syscall(libc::SYS_userfaultfd, libc::O_CLOEXEC) })
}

/// perf_event_open of a software CPU-clock counter on ourselves, kernel counting included
/// (the case perf_event_paranoid restricts). The counter is never enabled.
pub fn perf_event_open_self() -> Result<OwnedFd, Errno> {
    let mut attr = [0u8; 128];
    // struct perf_event_attr: u32 type, u32 size, u64 config, ..., then a bitfield u64 at
    // offset 40 whose bit 0 is `disabled`.
    attr[0..4].copy_from_slice(&1u32.to_ne_bytes()); // PERF_TYPE_SOFTWARE
    attr[4..8].copy_from_slice(&128u32.to_ne_bytes()); // size
    attr[8..16].copy_from_slice(&0u64.to_ne_bytes()); // PERF_COUNT_SW_CPU_CLOCK
    attr[40..48].copy_from_slice(&1u64.to_ne_bytes()); // disabled = 1
                                                       // SAFETY: attr is a live buffer of the size it declares; pid 0 = self, cpu -1 = any,
                                                       // group fd -1, flags PERF_FLAG_FD_CLOEXEC (8).
    owned(unsafe { libc::syscall(libc::SYS_perf_event_open, attr.as_ptr(), 0, -1, -1, 8) })
}

/// keyctl(KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING, create=0): read-only.
pub fn keyctl_session_keyring_id() -> Result<libc::c_long, Errno> {
    // SAFETY: integer arguments only.
    check(unsafe { libc::syscall(libc::SYS_keyctl, 0, -3, 0) })
}

/// add_key with an unknown key type: ENODEV from the type lookup proves the call was
/// reachable; nothing is added.
pub fn add_key_unknown_type() -> Result<libc::c_long, Errno> {
    // SAFETY: static strings; payload NULL with length 0; KEY_SPEC_PROCESS_KEYRING (-2).
    check(unsafe {
        libc::syscall(
            libc::SYS_add_key,
            c"agentcage_probe_no_such_type".as_ptr(),
            c"agentcage-probe".as_ptr(),
            std::ptr::null::<u8>(),
            0usize,
            -2,
        )
    })
}

/// io_uring_setup(1, params): returns the ring fd (closed by the caller, nothing submitted).
pub fn io_uring_setup() -> Result<OwnedFd, Errno> {
    let mut params = [0u8; 120]; // struct io_uring_params
                                 // SAFETY: params is a live zeroed io_uring_params the kernel reads and fills in.
    owned(unsafe { libc::syscall(libc::SYS_io_uring_setup, 1u32, params.as_mut_ptr()) })
}

/// The Landlock ABI version, from `agentcage-landlock`'s detector (the launcher's), or the
/// errno of the version query.
pub fn landlock_abi() -> Result<libc::c_long, Errno> {
    use agentcage_landlock::Unavailable;
    agentcage_landlock::detect_abi()
        .map(libc::c_long::from)
        .map_err(|why| {
            Errno(match why {
                Unavailable::NotBuilt => libc::ENOSYS,
                Unavailable::DisabledAtBoot => libc::EOPNOTSUPP,
                Unavailable::Other { errno } => errno,
            })
        })
}

/// A raw syscall through the x32 ABI (number | 0x40000000) with pointer arguments.
#[cfg(target_arch = "x86_64")]
pub fn x32_mount(src: &CStr, target: &CStr, fstype: &CStr) -> Result<(), Errno> {
    const X32_BIT: libc::c_long = 0x4000_0000;
    // SAFETY: the strings are live &CStr values the kernel copies; x32 mount takes the same
    // arguments as the native one. Kernels without x32 support return ENOSYS.
    check(unsafe {
        libc::syscall(
            X32_BIT | libc::SYS_mount,
            src.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            0 as libc::c_ulong,
            std::ptr::null::<u8>(),
        )
    })
    .map(drop)
}

// ---------------------------------------------------------------------------------------
// The i386 entry point (int 0x80)

/// A page below 4 GiB, where pointers fit the 32-bit registers of `int 0x80`.
#[cfg(target_arch = "x86_64")]
pub struct LowPage {
    ptr: *mut u8,
}

#[cfg(target_arch = "x86_64")]
impl LowPage {
    const LEN: usize = 4096;

    /// mmap(MAP_32BIT) one read-write page.
    pub fn new() -> Result<Self, Errno> {
        // SAFETY: anonymous private mapping with no address hint; the kernel picks the page.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                Self::LEN,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_32BIT,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(Errno::last());
        }
        Ok(LowPage { ptr: p.cast() })
    }

    /// Copies NUL-terminated strings into the page; returns their 32-bit addresses.
    pub fn strings<const N: usize>(&mut self, items: [&CStr; N]) -> Result<[u32; N], Errno> {
        let mut out = [0u32; N];
        let mut off = 0usize;
        for (i, s) in items.iter().enumerate() {
            let b = s.to_bytes_with_nul();
            if off + b.len() > Self::LEN {
                return Err(Errno(libc::ENAMETOOLONG));
            }
            // SAFETY: off + b.len() <= LEN, so the copy stays inside our mapped page; the
            // source is a live slice that does not overlap the fresh mapping.
            unsafe { std::ptr::copy_nonoverlapping(b.as_ptr(), self.ptr.add(off), b.len()) };
            out[i] = (self.ptr as usize + off) as u32;
            off += b.len();
        }
        Ok(out)
    }
}

#[cfg(target_arch = "x86_64")]
impl Drop for LowPage {
    fn drop(&mut self) {
        // SAFETY: ptr/LEN describe the mapping created in new() and not unmapped since.
        unsafe { libc::munmap(self.ptr.cast(), Self::LEN) };
    }
}

/// A 32-bit system call through `int 0x80` (i386 numbering, up to five arguments). Kernels
/// without IA32 emulation raise SIGSEGV instead.
///
/// # Safety
/// Pointer arguments must be valid 32-bit addresses (see [`LowPage`]) for what the i386
/// syscall `nr` reads or writes.
#[cfg(target_arch = "x86_64")]
pub unsafe fn int80(nr: u32, a1: u32, a2: u32, a3: u32, a4: u32, a5: u32) -> Result<u32, Errno> {
    let ret: u32;
    // SAFETY: the caller vouches for pointer arguments. rbx is reserved by LLVM, so it is
    // saved and restored around the call by hand (hence no `nostack`); int 0x80 from 64-bit
    // code may clobber r8-r11, which are declared as such.
    unsafe {
        std::arch::asm!(
            "push rbx",
            "mov ebx, {a1:e}",
            "int 0x80",
            "pop rbx",
            a1 = in(reg) a1,
            inlateout("eax") nr => ret,
            in("ecx") a2,
            in("edx") a3,
            in("esi") a4,
            in("edi") a5,
            out("r8") _, out("r9") _, out("r10") _, out("r11") _,
        );
    }
    let r = ret as i32;
    if (-4095..0).contains(&r) {
        Err(Errno(-r))
    } else {
        Ok(ret)
    }
}

// ---------------------------------------------------------------------------------------
// Sockets and memory

/// socket(2) with SOCK_CLOEXEC.
pub fn socket(domain: libc::c_int, ty: libc::c_int, proto: libc::c_int) -> Result<OwnedFd, Errno> {
    // SAFETY: integer arguments only.
    let fd = unsafe { libc::socket(domain, ty | libc::SOCK_CLOEXEC, proto) };
    owned(fd as libc::c_long)
}

/// An anonymous private mapping of `len` bytes that is unmapped on drop.
pub struct Mapping {
    ptr: *mut u8,
    len: usize,
}

impl Mapping {
    /// mmap(PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS).
    pub fn anonymous(len: usize) -> Result<Self, Errno> {
        // SAFETY: anonymous mapping, no address hint, no fd.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(Errno::last());
        }
        // Ask for transparent huge pages where the host allows it (`madvise` mode): far
        // fewer faults when touching; a refusal only makes touching slower.
        // SAFETY: p/len describe the mapping just created; MADV_HUGEPAGE changes no contents.
        unsafe { libc::madvise(p, len, libc::MADV_HUGEPAGE) };
        Ok(Mapping { ptr: p.cast(), len })
    }

    /// Writes one byte per `step` bytes so every page is really allocated.
    pub fn touch(&mut self, step: usize) {
        let mut off = 0;
        while off < self.len {
            // SAFETY: off < len, inside our read-write mapping.
            unsafe { self.ptr.add(off).write_volatile(1) };
            off += step.max(1);
        }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: ptr/len describe the mapping created in anonymous().
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

/// uname(2) release string.
pub fn kernel_release() -> String {
    // SAFETY: utsname is plain old data; all-zero is valid.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: u is a live utsname the kernel fills in.
    if unsafe { libc::uname(&mut u) } != 0 {
        return String::from("unknown");
    }
    // SAFETY: the kernel NUL-terminates every utsname field.
    unsafe { CStr::from_ptr(u.release.as_ptr()) }
        .to_string_lossy()
        .into_owned()
}

/// A TCP socket bound to 127.0.0.1:`port` (not listening), closed on drop.
pub fn bind_tcp_loopback(port: u16) -> Result<OwnedFd, Errno> {
    let fd = socket(libc::AF_INET, libc::SOCK_STREAM, 0)?;
    let addr = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from_be_bytes([127, 0, 0, 1]).to_be(),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: addr is a live sockaddr_in and we pass its exact size.
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&addr as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    };
    check_int(rc)?;
    Ok(fd)
}

/// `(st_dev, st_rdev)` of an open fd.
pub fn fstat_dev_rdev(fd: RawFd) -> Result<(u64, u64), Errno> {
    // SAFETY: zeroed stat is a valid plain C struct; fstat fills it for a live fd.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: st is a live out-parameter.
    if unsafe { libc::fstat(fd, &mut st) } < 0 {
        return Err(Errno::last());
    }
    Ok((st.st_dev, st.st_rdev))
}

/// The device number of the terminal behind `fd` (ioctl TIOCGDEV, Linux 3.8+): for
/// `/dev/tty` it is the real terminal's, not 5:0. Falls back to fstat's st_rdev.
pub fn tty_rdev(fd: RawFd) -> Result<u64, Errno> {
    const TIOCGDEV: libc::c_ulong = 0x8004_5432;
    let mut dev: libc::c_uint = 0;
    // SAFETY: TIOCGDEV writes one unsigned int to a live out-parameter.
    if unsafe { libc::ioctl(fd, TIOCGDEV as _, &mut dev) } == 0 {
        // The kernel's new_encode_dev: minor low byte, major in bits 8-19, minor's high bits
        // from bit 20.
        let major = (dev >> 8) & 0xfff;
        let minor = (dev & 0xff) | ((dev >> 12) & 0xf_ff00);
        return Ok(libc::makedev(major, minor));
    }
    fstat_dev_rdev(fd).map(|(_, r)| r)
}

/// Finds key `desc` (type "user") in the session keyring (KEYCTL_SEARCH) and reads up to
/// `buf.len()` bytes of it (KEYCTL_READ). Returns the key's length.
pub fn read_session_key(desc: &std::ffi::CStr, buf: &mut [u8]) -> Result<usize, Errno> {
    const KEYCTL_SEARCH: libc::c_long = 10;
    const KEYCTL_READ: libc::c_long = 11;
    const KEY_SPEC_SESSION_KEYRING: libc::c_long = -3;
    // SAFETY: both strings are live NUL-terminated C strings; no destination keyring (0).
    let id = check(unsafe {
        libc::syscall(
            libc::SYS_keyctl,
            KEYCTL_SEARCH,
            KEY_SPEC_SESSION_KEYRING,
            c"user".as_ptr(),
            desc.as_ptr(),
            0 as libc::c_long,
        )
    })?;
    // SAFETY: buf is live and writable for buf.len() bytes.
    let n = check(unsafe {
        libc::syscall(
            libc::SYS_keyctl,
            KEYCTL_READ,
            id,
            buf.as_mut_ptr(),
            buf.len(),
        )
    })?;
    Ok(n as usize)
}
