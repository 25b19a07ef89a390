//! Raw system calls the bench needs; the only home of `unsafe` in this crate.
//!
//! - `posix_spawn(3)` + `waitpid(2)`: the timed launch path. glibc's `posix_spawn` uses
//!   `clone(CLONE_VM | CLONE_VFORK)`, so the cost of spawning does not grow with the bench's
//!   own address space (a `fork()` from a large parent is slow). The same sharing is why the
//!   launcher's peak RSS is measured through `elf::rss_probe` instead of this path's rusage.
//! - `getpid(2)`, `open(2)`/`close(2)`, `stat(2)`: the loops timed inside the sandbox by
//!   `agentcage bench-inner`.
//! - `pidfd_open(2)` + `poll(2)`: waiting for whichever of C launches ends first, by pid.
//! - `prctl(PR_SET_CHILD_SUBREAPER)` and `kill(2)`: leak detection after the throughput run
//!   (a process a launcher leaves behind is re-parented to the bench, which then sees it).
//!
//! Wrappers are thin: they take `&CStr` and prebuilt pointer arrays, allocate nothing on the
//! timed path and return `io::Result`.

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::ptr;

/// An argv or envp array built once, before any timed spawn: owned strings plus the
/// NULL-terminated pointer array `posix_spawn` reads.
pub struct CArgs {
    strings: Vec<CString>,
    ptrs: Vec<*mut libc::c_char>,
}

impl CArgs {
    /// Builds the array. Fails if a string contains a NUL byte.
    pub fn new<I, S>(items: I) -> io::Result<CArgs>
    where
        I: IntoIterator<Item = S>,
        S: Into<Vec<u8>>,
    {
        let strings = items
            .into_iter()
            .map(CString::new)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let mut ptrs: Vec<*mut libc::c_char> =
            strings.iter().map(|s| s.as_ptr().cast_mut()).collect();
        ptrs.push(ptr::null_mut());
        Ok(CArgs { strings, ptrs })
    }

    /// The first string (the program path for an argv array).
    pub fn first(&self) -> Option<&CStr> {
        self.strings.first().map(CString::as_c_str)
    }

    fn as_ptr(&self) -> *const *mut libc::c_char {
        self.ptrs.as_ptr()
    }
}

/// What `waitpid` reports about one reaped child.
#[derive(Debug, Clone, Copy)]
pub struct Reaped {
    /// Raw wait status.
    pub status: libc::c_int,
}

impl Reaped {
    /// The exit code as a shell reports it: the code, or 128+N for a signal.
    pub fn exit_code(&self) -> i32 {
        let s = self.status;
        if libc::WIFEXITED(s) {
            libc::WEXITSTATUS(s)
        } else if libc::WIFSIGNALED(s) {
            128 + libc::WTERMSIG(s)
        } else {
            -1
        }
    }
}

/// Starts `argv[0]` (an absolute path) with `envp`, stdin, stdout and stderr on `devnull`
/// (the preflight run showed each contender's stderr once; a line written on every timed
/// launch would be measured too, e.g. `none`'s host-root warning as root). Returns the pid.
pub fn spawn(argv: &CArgs, envp: &CArgs, devnull: BorrowedFd<'_>) -> io::Result<libc::pid_t> {
    let path = argv
        .first()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "empty argv"))?;
    let mut actions = std::mem::MaybeUninit::<libc::posix_spawn_file_actions_t>::uninit();
    // SAFETY: `actions` is valid writable storage for the object being initialised.
    let rc = unsafe { libc::posix_spawn_file_actions_init(actions.as_mut_ptr()) };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    let result = (|| {
        let fd = devnull.as_raw_fd();
        for target in [libc::STDIN_FILENO, libc::STDOUT_FILENO, libc::STDERR_FILENO] {
            // SAFETY: `actions` was initialised above; dup2 of an open fd (the borrow keeps it
            // open) onto 0/1 is recorded, not performed, here.
            let rc =
                unsafe { libc::posix_spawn_file_actions_adddup2(actions.as_mut_ptr(), fd, target) };
            if rc != 0 {
                return Err(io::Error::from_raw_os_error(rc));
            }
        }
        let mut pid: libc::pid_t = 0;
        // SAFETY: `path` is a live C string; `actions` is initialised; argv and envp are
        // NULL-terminated arrays of pointers into strings owned by `argv`/`envp`, which outlive
        // the call (posix_spawn returns after the child has exec'd or failed).
        let rc = unsafe {
            libc::posix_spawn(
                &mut pid,
                path.as_ptr(),
                actions.as_ptr(),
                ptr::null(),
                argv.as_ptr(),
                envp.as_ptr(),
            )
        };
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc));
        }
        Ok(pid)
    })();
    // SAFETY: `actions` was initialised by posix_spawn_file_actions_init and is destroyed once.
    unsafe { libc::posix_spawn_file_actions_destroy(actions.as_mut_ptr()) };
    result
}

/// `waitpid(pid, .., flags)`, retrying on EINTR. `Ok(None)` when `WNOHANG` found nothing.
pub fn wait(pid: libc::pid_t, flags: libc::c_int) -> io::Result<Option<Reaped>> {
    loop {
        let mut status: libc::c_int = 0;
        // SAFETY: `status` is a live, writable local.
        let rc = unsafe { libc::waitpid(pid, &mut status, flags) };
        if rc > 0 {
            return Ok(Some(Reaped { status }));
        }
        if rc == 0 {
            return Ok(None);
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// The raw `getpid` system call (never a cached value).
#[inline]
pub fn getpid_syscall() -> libc::c_long {
    // SAFETY: getpid takes no arguments and cannot fail.
    unsafe { libc::syscall(libc::SYS_getpid) }
}

/// `open(path, O_RDONLY | O_CLOEXEC)` then `close`.
#[inline]
pub fn open_close(path: &CStr) -> io::Result<()> {
    // SAFETY: `path` is a live NUL-terminated string; the kernel copies it.
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by open and is closed exactly once.
    unsafe { libc::close(fd) };
    Ok(())
}

/// `stat(path)`, discarding the result.
#[inline]
pub fn stat(path: &CStr) -> io::Result<()> {
    // SAFETY: an all-zero `stat` is a valid value of this plain C struct.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is a live NUL-terminated string and `st` a writable local.
    let rc = unsafe { libc::stat(path.as_ptr(), &mut st) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Makes this process the reaper of orphaned descendants (`PR_SET_CHILD_SUBREAPER`).
pub fn set_child_subreaper() -> io::Result<()> {
    // SAFETY: prctl with integer arguments only.
    let rc = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1 as libc::c_ulong, 0, 0, 0) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `kill(pid, SIGKILL)`. Only used on processes the bench itself started (directly or as
/// orphans re-parented to it).
pub fn kill9(pid: libc::pid_t) -> io::Result<()> {
    // SAFETY: kill with integer arguments only.
    let rc = unsafe { libc::kill(pid, libc::SIGKILL) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `pidfd_open(pid, 0)`: an fd that polls readable when `pid` exits (Linux 5.3+).
pub fn pidfd_open(pid: libc::pid_t) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open with integer arguments only.
    let rc = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel returned a fresh fd (O_CLOEXEC is implied for pidfds) that nothing
    // else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(rc as RawFd) })
}

/// `poll(fds, timeout_ms)`, retrying on EINTR. Returns the number of ready entries.
pub fn poll(fds: &mut [libc::pollfd], timeout_ms: libc::c_int) -> io::Result<usize> {
    loop {
        // SAFETY: `fds` is a live, writable slice of pollfd and its length is passed with it.
        let rc = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
        if rc >= 0 {
            return Ok(rc as usize);
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// The effective uid.
pub fn euid() -> u32 {
    // SAFETY: geteuid takes no arguments and cannot fail.
    unsafe { libc::geteuid() }
}

/// This process's pid.
pub fn own_pid() -> libc::pid_t {
    std::process::id() as libc::pid_t
}
