//! The matrix's few raw system calls: the only home of `unsafe` in this crate.
//!
//! The matrix runs on the host side only (it never enters a sandbox itself), but it forks a
//! sentinel process and prepares an inherited fd for its `agentcage run` children, and it
//! catches Ctrl-C so that its bait is always cleaned up. Those need a handful of libc calls
//! that std does not wrap. Every wrapper is thin and returns `io::Result`.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};

/// Set by the SIGINT/SIGTERM/SIGHUP handler installed by [`InterruptGuard`].
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Whether an interrupt signal arrived since the last [`InterruptGuard::install`].
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

extern "C" fn on_interrupt(_sig: libc::c_int) {
    // Only an atomic store: async-signal-safe.
    INTERRUPTED.store(true, Ordering::SeqCst);
}

const CAUGHT: [libc::c_int; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

/// Catches SIGINT, SIGTERM and SIGHUP while alive, so that the matrix stops its runs and drops
/// its bait guards instead of dying with a sentinel process and temp dirs left behind. The
/// previous dispositions are restored on drop.
pub struct InterruptGuard {
    previous: Vec<(libc::c_int, libc::sigaction)>,
}

impl InterruptGuard {
    /// Installs the handler for the three signals.
    ///
    /// # Errors
    /// `sigaction(2)` failed (only for an invalid signal number, which cannot happen here).
    pub fn install() -> io::Result<InterruptGuard> {
        INTERRUPTED.store(false, Ordering::SeqCst);
        let mut guard = InterruptGuard {
            previous: Vec::new(),
        };
        for sig in CAUGHT {
            // SAFETY: sigaction is plain old data; all-zero is a valid empty value.
            let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
            action.sa_sigaction = on_interrupt as extern "C" fn(libc::c_int) as usize;
            action.sa_flags = libc::SA_RESTART;
            // SAFETY: sa_mask is a valid sigset_t inside our local `action`.
            unsafe { libc::sigemptyset(&mut action.sa_mask) };
            // SAFETY: as above.
            let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
            // SAFETY: both pointers refer to live local values; the handler only stores to an
            // atomic, which is async-signal-safe.
            if unsafe { libc::sigaction(sig, &action, &mut old) } != 0 {
                return Err(io::Error::last_os_error());
            }
            guard.previous.push((sig, old));
        }
        Ok(guard)
    }
}

impl Drop for InterruptGuard {
    fn drop(&mut self) {
        for (sig, old) in self.previous.drain(..) {
            // SAFETY: `old` is the disposition the kernel returned for `sig`.
            unsafe { libc::sigaction(sig, &old, std::ptr::null_mut()) };
        }
    }
}

/// A forked child of ours that only waits to be killed: the "process outside the sandbox" the
/// probe tries to signal, ptrace and read. It dies with the thread that forked it
/// (`PR_SET_PDEATHSIG`), so even a SIGKILLed matrix leaves no sentinel behind.
pub struct Sentinel {
    pid: libc::pid_t,
}

impl Sentinel {
    /// Forks the sentinel.
    ///
    /// # Errors
    /// `fork(2)` failed.
    pub fn spawn() -> io::Result<Sentinel> {
        // SAFETY: getpid has no preconditions.
        let parent = unsafe { libc::getpid() };
        // SAFETY: fork has no memory-safety preconditions; the child below only makes
        // async-signal-safe calls (prctl, getppid, pause, _exit) and never returns, so it is
        // sound even if other threads held locks at the time of the fork.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(io::Error::last_os_error());
        }
        if pid == 0 {
            // SAFETY: async-signal-safe calls only, with integer arguments.
            unsafe {
                libc::prctl(
                    libc::PR_SET_PDEATHSIG,
                    libc::SIGKILL as libc::c_ulong,
                    0,
                    0,
                    0,
                );
                if libc::getppid() != parent {
                    libc::_exit(0);
                }
                loop {
                    libc::pause();
                }
            }
        }
        Ok(Sentinel { pid })
    }

    /// The sentinel's pid in the host pid namespace.
    pub fn pid(&self) -> u32 {
        self.pid as u32
    }
}

impl Drop for Sentinel {
    fn drop(&mut self) {
        // SAFETY: `pid` is our own unreaped child, so it cannot have been recycled.
        unsafe { libc::kill(self.pid, libc::SIGKILL) };
        let mut status = 0;
        loop {
            // SAFETY: `status` is a live local; `pid` is our child.
            let rc = unsafe { libc::waitpid(self.pid, &mut status, 0) };
            if rc >= 0 || io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
                break;
            }
        }
    }
}

/// Duplicates `fd` to the lowest free descriptor `>= min`, close-on-exec. Reserving the number
/// in the parent guarantees no other descriptor (for example std's exec-error pipe) takes it.
///
/// # Errors
/// `fcntl(F_DUPFD_CLOEXEC)` failed.
pub fn dup_at_least(fd: BorrowedFd<'_>, min: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: `fd` is a live borrowed descriptor; F_DUPFD_CLOEXEC takes an integer argument.
    let new = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, min) };
    if new < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `new` is a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}

/// Clears close-on-exec on `fd`. Meant for a `pre_exec` hook: fcntl is async-signal-safe and
/// this function does not allocate.
pub fn clear_cloexec(fd: RawFd) -> io::Result<()> {
    // SAFETY: F_SETFD takes an integer argument; a bad fd only yields EBADF.
    if unsafe { libc::fcntl(fd, libc::F_SETFD, 0) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The real uid and gid of this process.
pub fn ids() -> (u32, u32) {
    // SAFETY: getuid/getgid have no preconditions and cannot fail.
    unsafe { (libc::getuid(), libc::getgid()) }
}

/// The Landlock ABI version (`agentcage-landlock`'s detector, the launcher's), or why there
/// is none.
pub fn landlock_abi() -> Result<u32, String> {
    use agentcage_landlock::Unavailable;
    agentcage_landlock::detect_abi().map_err(|why| match why {
        Unavailable::NotBuilt => "not built into this kernel (ENOSYS)".to_string(),
        Unavailable::DisabledAtBoot => "built in but disabled at boot (EOPNOTSUPP)".to_string(),
        Unavailable::Other { errno } => io::Error::from_raw_os_error(errno).to_string(),
    })
}

/// A fresh pseudo-terminal pair (master, slave), both close-on-exec.
pub fn open_pty() -> io::Result<(OwnedFd, OwnedFd)> {
    // SAFETY: posix_openpt takes flags only and returns a new fd or -1.
    let m = unsafe { libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC) };
    if m < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: m is a fresh fd we own.
    let master = unsafe { OwnedFd::from_raw_fd(m) };
    let mut name = [0 as libc::c_char; 128];
    // SAFETY: master is a pty master; name is a live buffer of the given length.
    let ok = unsafe {
        libc::grantpt(m) == 0
            && libc::unlockpt(m) == 0
            && libc::ptsname_r(m, name.as_mut_ptr(), name.len()) == 0
    };
    if !ok {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: ptsname_r NUL-terminated the name; open returns a new fd or -1.
    let s = unsafe {
        libc::open(
            name.as_ptr(),
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        )
    };
    if s < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: s is a fresh fd we own.
    Ok((master, unsafe { OwnedFd::from_raw_fd(s) }))
}

/// In a forked child before exec: a new session whose controlling terminal is `slave`, which
/// also becomes stdin. Async-signal-safe (setsid, ioctl, dup2).
pub fn take_terminal(slave: RawFd) -> io::Result<()> {
    // SAFETY: integer-only calls on an fd the parent keeps open across the spawn.
    unsafe {
        if libc::setsid() < 0
            || libc::ioctl(slave, libc::TIOCSCTTY as _, 0) < 0
            || libc::dup2(slave, 0) < 0
        {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Gives this process a fresh session keyring holding one "user" key `desc` = `payload`,
/// the bait of the probe's `proc.read.session_key`. Meant for a `pre_exec` hook: raw
/// syscalls only, no allocation; the caller's own session keyring is left untouched.
pub fn session_key_bait(desc: &std::ffi::CStr, payload: &[u8]) -> io::Result<()> {
    const KEYCTL_JOIN_SESSION_KEYRING: libc::c_long = 1;
    const KEY_SPEC_SESSION_KEYRING: libc::c_long = -3;
    // SAFETY: a null name asks for a new anonymous keyring.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_keyctl,
            KEYCTL_JOIN_SESSION_KEYRING,
            std::ptr::null::<libc::c_char>(),
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: live C strings and a payload slice of the given length.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_add_key,
            c"user".as_ptr(),
            desc.as_ptr(),
            payload.as_ptr(),
            payload.len(),
            KEY_SPEC_SESSION_KEYRING,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
