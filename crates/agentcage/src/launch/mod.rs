//! The launcher: prepare -> spawn -> supervise -> [`RunOutcome`].
//!
//! Process tree of a namespaced run:
//!
//! ```text
//! agentcage (launcher, caller's uid)         writes id maps, attaches the cgroup, forwards
//!  └─ init   (pid 1 in the new pid ns)       composes the root, then reaps and forwards
//!      └─ command (pid 2)                    hygiene, limits, Landlock, caps, seccomp, execve
//! ```
//!
//! Everything the child side touches is built in [`prepare`] ([`Prepared`]); the child side
//! (`child.rs`) only makes raw syscalls on it. When the command exits, the init exits with
//! its status and the kernel kills whatever is left in the pid namespace. The init has
//! PR_SET_PDEATHSIG(SIGKILL), so the whole sandbox dies with the launcher, even on SIGKILL.

mod child;
mod prepared;

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant};

pub use prepared::{prepare, Prepared};

use crate::error::{Error, SetupError};
use crate::sys::{self, Errno};

/// How the command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Exited with this code.
    Code(i32),
    /// Killed by this signal.
    Signal(i32),
}

impl Exit {
    /// Shell convention: the code, or 128+N for signal N.
    pub fn code(self) -> i32 {
        match self {
            Exit::Code(c) => c,
            Exit::Signal(s) => 128 + s,
        }
    }

    fn from_wait_status(st: i32) -> Exit {
        if libc::WIFSIGNALED(st) {
            Exit::Signal(libc::WTERMSIG(st))
        } else {
            Exit::Code(libc::WEXITSTATUS(st))
        }
    }
}

/// Phase timestamps of one run (parent's view), for `run -v` and the bench.
#[derive(Debug, Clone, Default)]
pub struct Timings {
    /// clone(2) returned in the parent, since spawn started.
    pub clone: Duration,
    /// Id maps written and the child released.
    pub released: Duration,
    /// The command was executed (report pipe closed).
    pub exec: Duration,
    /// The sandbox exited.
    pub exit: Duration,
}

/// The outcome of a run.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    /// How the command ended.
    pub exit: Exit,
    /// Phase timestamps.
    pub timings: Timings,
    /// Peak RSS of the sandbox's processes (from wait4 of the sandbox root), in KiB.
    pub max_rss_kib: i64,
    /// User + system CPU time of the sandbox.
    pub cpu: Duration,
}

/// Options of a spawn that are not part of the policy.
#[derive(Debug, Clone, Default)]
pub struct SpawnOptions {
    /// Forward SIGINT, SIGTERM, SIGHUP and SIGQUIT received by this process to the sandbox
    /// (installs process-wide handlers: for CLIs, not for libraries with their own).
    pub forward_signals: bool,
}

/// What the launcher was asked to run (kept for error messages).
#[derive(Debug, Clone)]
pub struct Command {
    /// argv (argv[0] is looked up in the sandbox's PATH when it has no slash).
    pub argv: Vec<OsString>,
    /// The agentcage binary to expose inside at [`crate::rootfs::SELF_EXE`].
    pub self_exe: Option<PathBuf>,
}

static FORWARD_TO: AtomicI32 = AtomicI32::new(0);

extern "C" fn forward_signal(sig: libc::c_int) {
    let pid = FORWARD_TO.load(Ordering::Relaxed);
    if pid > 0 {
        let _ = sys::kill(pid, sig);
    }
}

const FORWARDED: [libc::c_int; 4] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT];

impl Prepared {
    /// Spawns the sandbox and waits for it.
    ///
    /// # Errors
    /// [`Error::Setup`] when a setup step fails (exit 125), [`Error::Exec`] when the command
    /// cannot be executed (126/127).
    pub fn run(&self, opts: &SpawnOptions) -> Result<RunOutcome, Error> {
        let t0 = Instant::now();
        let mut timings = Timings::default();
        let pipes = prepared::Pipes::new().map_err(|e| Error::Setup {
            step: "create the launcher's pipes".into(),
            errno: e,
            hint: None,
        })?;
        if opts.forward_signals {
            for s in FORWARDED {
                let _ = sys::signal_handler(s, forward_signal);
            }
        }
        // SAFETY: the child branch only runs child::main, which is async-signal-safe and
        // only reads `self` and `pipes`, built before this call.
        let pid = match unsafe { sys::clone_fork(self.clone_flags) } {
            Ok(0) => child::main(self, &pipes),
            Ok(pid) => pid,
            Err(e) => {
                return Err(Error::Setup {
                    step: format!("clone({})", prepared::clone_flag_names(self.clone_flags)),
                    errno: e,
                    hint: self.clone_hint(e),
                })
            }
        };
        FORWARD_TO.store(pid, Ordering::Relaxed);
        timings.clone = t0.elapsed();
        let guard = ChildGuard(pid);
        pipes.close_child_ends();

        if let Err(err) = self.configure_from_parent(pid) {
            drop(guard);
            sys::close(pipes.sync_w);
            return Err(err);
        }
        // Release the child: maps are written.
        if let Err(e) = sys::write_all(pipes.sync_w, b"1") {
            drop(guard);
            sys::close(pipes.sync_w);
            return Err(Error::Setup { step: "release the sandbox init".into(), errno: e, hint: None });
        }
        // sync_w stays open until the sandbox exits: the child checks it for a hang-up
        // after arming PDEATHSIG (see child.rs).
        timings.released = t0.elapsed();

        // EOF: the command was executed (the pipe is close-on-exec); 12 bytes: a setup error.
        let mut buf = [0u8; SetupError::WIRE];
        let n = sys::read_full(pipes.report_r, &mut buf).unwrap_or(0);
        sys::close(pipes.report_r);
        timings.exec = t0.elapsed();
        let report = if n == SetupError::WIRE { SetupError::from_bytes(&buf) } else { None };

        let (st, ru) = match sys::wait4(pid) {
            Ok(v) => v,
            Err(e) => {
                return Err(Error::Setup { step: format!("wait for the sandbox (pid {pid})"), errno: e, hint: None })
            }
        };
        std::mem::forget(guard);
        sys::close(pipes.sync_w);
        FORWARD_TO.store(0, Ordering::Relaxed);
        timings.exit = t0.elapsed();

        // The init passes the command's raw wait status on the status pipe.
        let mut sbuf = [0u8; 4];
        let sn = sys::read_full(pipes.status_r, &mut sbuf).unwrap_or(0);
        sys::close(pipes.status_r);

        if let Some(r) = report {
            return Err(self.describe_setup_error(r));
        }
        let exit = if sn == 4 {
            Exit::from_wait_status(i32::from_ne_bytes(sbuf))
        } else {
            Exit::from_wait_status(st)
        };
        let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
        Ok(RunOutcome {
            exit,
            timings,
            max_rss_kib: ru.ru_maxrss,
            cpu: tv(ru.ru_utime) + tv(ru.ru_stime),
        })
    }

    /// Parent-side configuration while the child waits: uid/gid maps.
    fn configure_from_parent(&self, pid: libc::pid_t) -> Result<(), Error> {
        let Some(maps) = &self.id_maps else { return Ok(()) };
        let write = |file: &str, data: &[u8]| -> Result<(), Error> {
            let path = format!("/proc/{pid}/{file}");
            std::fs::write(&path, data).map_err(|e| Error::Setup {
                step: format!("write {path} ({:?})", String::from_utf8_lossy(data).trim()),
                errno: Errno(e.raw_os_error().unwrap_or(libc::EIO)),
                hint: Some(
                    "the user namespace id mapping was refused: check /etc/subuid is not needed \
                     (a single mapping of your own uid) and that no LSM restricts user namespaces"
                        .into(),
                ),
            })
        };
        write("uid_map", &maps.uid_map)?;
        if let Some(sg) = &maps.setgroups {
            write("setgroups", sg)?;
        }
        write("gid_map", &maps.gid_map)
    }
}

/// Kills and reaps the child if the parent bails out between clone and wait.
struct ChildGuard(libc::pid_t);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = sys::kill(self.0, libc::SIGKILL);
        let _ = sys::waitpid(self.0, 0);
        FORWARD_TO.store(0, Ordering::Relaxed);
    }
}
