//! Raw system-call wrappers: the only home of `unsafe` in the launcher.
//!
//! Every wrapper is thin and allocation-free: it takes `&CStr`, raw fds and plain integers and
//! returns `Result<_, Errno>`, so it can run in the pre-exec child (see `launch::child`).

use std::ffi::CStr;
use std::fmt;
use std::ptr;

use libc::{c_int, c_long};

pub mod at;
pub mod fsx;

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

// Raw calls of sessions (`crate::session`, `launch/zygote.rs`).
mod session;
pub use session::*;

// Raw calls of the events listeners (`crate::events`).
mod audit;
mod notify;
pub use audit::audit_request;
pub use notify::{notif_id_valid, notif_recv, notif_send_errno};

mod fs;
mod mount;
mod net;
mod ns;
mod process;
mod tty;
pub use fs::*;
pub use mount::*;
pub use net::*;
pub use ns::*;
pub use process::*;
pub use tty::*;

#[cfg(test)]
mod tests {
    use super::*;
    use libc::c_ulong;

    /// read_head stops at the first newline in line mode, at EOF otherwise, and never reads
    /// past the buffer.
    #[test]
    fn read_head_reads_a_line_the_whole_file_or_a_full_buffer() {
        let d = std::env::temp_dir().join(format!("ac-read-head-{}", std::process::id()));
        std::fs::write(&d, b"first line\nsecond\n").unwrap();
        let c = std::ffi::CString::new(d.as_os_str().as_encoded_bytes()).unwrap();
        let mut big = [0u8; 64];
        assert_eq!(
            read_head(&c, &mut big, false).unwrap(),
            b"first line\nsecond\n"
        );
        let mut small = [0u8; 4];
        assert_eq!(read_head(&c, &mut small, true).unwrap(), b"firs");
        let mut big = [0u8; 64];
        assert!(read_head(&c, &mut big, true)
            .unwrap()
            .starts_with(b"first line\n"));
        std::fs::remove_file(&d).unwrap();
        let mut buf = [0u8; 8];
        assert_eq!(
            read_head(c"/nonexistent/agentcage", &mut buf, true),
            Err(Errno(libc::ENOENT))
        );
    }

    /// names_with_prefix lists exactly the matching names, never `.` or `..`.
    #[test]
    fn names_with_prefix_lists_the_matches() {
        let d = std::env::temp_dir().join(format!("ac-names-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join("python3.11")).unwrap();
        std::fs::write(d.join("python3"), "").unwrap();
        std::fs::write(d.join("pythonrc"), "").unwrap();
        std::fs::write(d.join("other"), "").unwrap();
        std::fs::write(d.join("xpython"), "").unwrap();
        let c = std::ffi::CString::new(d.as_os_str().as_encoded_bytes()).unwrap();
        let mut got = names_with_prefix(&c, b"python").unwrap();
        got.sort();
        assert_eq!(got, ["python3", "python3.11", "pythonrc"]);
        let mut all = names_with_prefix(&c, b"").unwrap();
        all.sort();
        assert_eq!(
            all,
            ["other", "python3", "python3.11", "pythonrc", "xpython"]
        );
        std::fs::remove_dir_all(&d).unwrap();
        assert_eq!(names_with_prefix(&c, b"p"), Err(Errno(libc::ENOENT)));
    }

    /// The argv and environment areas are this process's: argv[0] of /proc/self/cmdline is
    /// at arg_start, and the areas are ordered as the kernel lays them out.
    #[test]
    fn proc_title_areas_are_this_processes() {
        let [arg_start, arg_end, env_start, env_end] = proc_title_areas().unwrap();
        assert!(arg_start < arg_end && arg_end <= env_start && env_start <= env_end);
        let cmdline = std::fs::read("/proc/self/cmdline").unwrap();
        assert_eq!(arg_end - arg_start, cmdline.len());
    }

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

    /// num_threads is parsed from the right field: with a second thread parked, at least 2
    /// (the neighbouring fields, nice and itrealvalue, are 0 here).
    #[test]
    fn thread_count_sees_a_second_thread() {
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let t = std::thread::spawn(move || {
            let _ = rx.recv();
        });
        let n = thread_count().expect("read /proc/self/stat");
        drop(tx);
        t.join().expect("join");
        assert!(n >= 2, "thread_count() = {n} with two threads alive");
    }
}
