//! Processes: clone, exec, wait, kill, signals, prctl, ids, capabilities, keyrings, limits.

use std::ffi::CStr;
use std::ptr;

use libc::{c_int, c_long, c_ulong, c_void};

use super::{check, check_int, Errno};

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

/// The number of threads of this process (`num_threads` of /proc/self/stat), read into a
/// stack buffer: allocation-free.
///
/// # Errors
/// The errno of open/read; EINVAL when the file does not parse.
pub fn thread_count() -> Result<usize, Errno> {
    let fd = super::open(c"/proc/self/stat", libc::O_RDONLY, 0)?;
    let mut buf = [0u8; 1024];
    let r = super::read_some(fd, &mut buf);
    super::close(fd);
    let buf = &buf[..r?];
    // The command name may hold spaces and parens: fields are counted after the last ')'.
    let after = buf
        .iter()
        .rposition(|&b| b == b')')
        .ok_or(Errno(libc::EINVAL))?;
    // Field 3 (state) is the first after ')'; num_threads is field 20.
    let field = buf[after + 1..]
        .split(|&b| b == b' ')
        .filter(|f| !f.is_empty())
        .nth(17)
        .ok_or(Errno(libc::EINVAL))?;
    let mut n = 0usize;
    for &b in field {
        if !b.is_ascii_digit() {
            return Err(Errno(libc::EINVAL));
        }
        n = n.saturating_mul(10).saturating_add(usize::from(b - b'0'));
    }
    Ok(n)
}

/// fork(2) (a [`clone_fork`] without flags) of a process that has one thread, checked here
/// (EBUSY otherwise): the child is then a full copy that may allocate and take locks, since
/// no other thread held them at the fork. Returns 0 in the child.
///
/// # Errors
/// EBUSY when the process has other threads; the errno of reading their count or of clone.
pub fn fork_single_threaded() -> Result<libc::pid_t, Errno> {
    if thread_count()? != 1 {
        return Err(Errno(libc::EBUSY));
    }
    // SAFETY: one thread (checked just above; only this thread can start another): no lock or
    // allocator state can be held by a thread that the child would lack.
    unsafe { clone_fork(0) }
}

/// A new user namespace whose only process has already exited: clone(CLONE_NEWUSER |
/// CLONE_VM | CLONE_VFORK) of a child that exits at once, and we resume after its exit. It is
/// our zombie until we reap it, and a zombie keeps its credentials: its /proc/PID/uid_map,
/// gid_map and ns/user still reach the namespace (to map it and keep it by an fd). Those files
/// of a process without memory belong to root, so only a privileged caller (the idmap's root
/// launcher) can map it; an unprivileged one needs a live child. Nothing is copied (no page
/// table) and nothing has to run again later: a child that waited on a pipe had to be woken
/// once more and, on a busy machine, waited behind whatever held the other core before the
/// caller could reap it (issue 19: root's runs on a root-owned workspace 2-8% faster).
///
/// # Errors
/// The errno of clone (e.g. EPERM or ENOSPC: user namespaces not allowed, or too many).
pub fn spawn_exited_userns() -> Result<libc::pid_t, Errno> {
    // The child's stack: it only returns (exit(2)) while we are suspended, so a buffer in our
    // frame will do. 16 KiB: a signal caught meanwhile (it has copies of our handlers) puts a
    // frame of up to ~4 KiB there (the AVX-512 state), and below the buffer are our own
    // live frames.
    let mut stack = [0u8; 16 * 1024];
    // SAFETY: the child runs nothing but returning 0 (no allocation, no lock, no unwinding)
    // and so exits at once.
    unsafe { super::clone_vfork_in(libc::CLONE_NEWUSER, &mut stack, &mut || 0) }
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

/// User + system CPU time of a rusage.
pub fn rusage_cpu(ru: &libc::rusage) -> std::time::Duration {
    let tv = |t: libc::timeval| {
        std::time::Duration::new(
            t.tv_sec.max(0) as u64,
            t.tv_usec.clamp(0, 999_999) as u32 * 1000,
        )
    };
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// getrusage(RUSAGE_CHILDREN): the usage of every child this process reaped (and of theirs).
pub fn children_rusage() -> libc::rusage {
    // SAFETY: zeroed rusage is a valid plain C struct; getrusage only writes into it and
    // cannot fail for RUSAGE_CHILDREN with a valid pointer.
    unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru);
        ru
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

/// pidfd_open(2) (Linux 5.3+); the fd is close-on-exec.
pub fn pidfd_open(pid: libc::pid_t) -> Result<c_int, Errno> {
    // SAFETY: integer-only syscall.
    Errno::result(unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) }).map(|fd| fd as c_int)
}

/// [`pidfd_open`], the fd owned: nothing else holds it, dropping it closes it.
pub fn pidfd_open_owned(pid: libc::pid_t) -> Result<std::os::fd::OwnedFd, Errno> {
    let fd = pidfd_open(pid)?;
    // SAFETY: pidfd_open just returned this fd and nothing else owns it.
    Ok(unsafe { std::os::fd::FromRawFd::from_raw_fd(fd) })
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
/// (fields 48-51 of /proc/self/stat, Linux 3.5+), read into a stack buffer up to its newline
/// (52 numbers and a comm of at most 64 bytes: under 1.2 KiB); `None` when the line did not
/// fit (a cut number would name a wrong area). Call before clone.
pub fn proc_title_areas() -> Option<[usize; 4]> {
    let mut buf = [0u8; 2048];
    let stat = super::read_head(c"/proc/self/stat", &mut buf, true).ok()?;
    let stat = std::str::from_utf8(stat.strip_suffix(b"\n")?).ok()?;
    // Fields after the parenthesised comm start at field 3.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut f = rest.split_whitespace().skip(48 - 3);
    let mut next = || f.next().and_then(|v| v.parse::<usize>().ok());
    Some([next()?, next()?, next()?, next()?])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    /// We resume after the child's exit (a zombie, not yet reaped), and its /proc entries
    /// still reach its user namespace: the map can be written and read back, and ns/user is
    /// another namespace than ours, kept after the reap by the fd.
    #[test]
    fn exited_userns_child_is_a_mappable_zombie() {
        let pid = match spawn_exited_userns() {
            Ok(pid) => pid,
            Err(e) => {
                eprintln!("skipped: no user namespace here ({e:?})");
                return;
            }
        };
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
        let state = stat[stat.rfind(')').expect("comm") + 2..].chars().next();
        assert_eq!(state, Some('Z'), "the child exited before we resumed");
        // SAFETY: geteuid has no failure.
        let euid = unsafe { libc::geteuid() };
        if euid != 0 {
            // A zombie's /proc files belong to root (no mm to take the owner from).
            assert_eq!(waitpid(pid, 0).map(|(p, _)| p), Ok(pid));
            eprintln!("skipped the map: only root can map an exited child's namespace");
            return;
        }
        std::fs::write(format!("/proc/{pid}/uid_map"), format!("0 {euid} 1")).expect("uid_map");
        let map = std::fs::read_to_string(format!("/proc/{pid}/uid_map")).expect("read back");
        let fields: Vec<&str> = map.split_whitespace().collect();
        assert_eq!(fields, ["0", &euid.to_string(), "1"]);
        let ns = std::fs::File::open(format!("/proc/{pid}/ns/user")).expect("ns/user");
        assert_eq!(waitpid(pid, 0).map(|(p, _)| p), Ok(pid));
        let ours = std::fs::metadata("/proc/self/ns/user")
            .expect("our ns")
            .ino();
        assert_ne!(ns.metadata().expect("fstat").ino(), ours);
    }
}
