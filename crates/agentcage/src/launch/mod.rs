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
mod pty;

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant};

pub use prepared::{prepare, Prepared};

use crate::cgroups;
use crate::error::{Error, SetupError};
use crate::policy::Layer;
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
    /// `--timeout` expired and the sandbox was killed.
    pub timed_out: bool,
    /// The memory limit's OOM killer killed a process of the sandbox (the command itself
    /// when `exit` is SIGKILL, else one of its children).
    pub oom: bool,
    /// Peak memory of the run's cgroup, when one was enforced.
    pub peak_memory: Option<u64>,
    /// How each requested limit was enforced (limit, mechanism).
    pub limits: Vec<(String, String)>,
}

/// Receives (what, how) enforcement lines.
pub type EnforcementHook = Box<dyn Fn(&str, &str)>;

/// Options of a spawn that are not part of the policy.
#[derive(Default)]
pub struct SpawnOptions {
    /// Forward SIGINT, SIGTERM, SIGHUP and SIGQUIT received by this process to the sandbox
    /// (installs process-wide handlers: for CLIs, not for libraries with their own).
    pub forward_signals: bool,
    /// When stdin is a terminal (and the hygiene layer is on), give the command its own
    /// pseudo-terminal and relay to the caller's: job control works, TIOCSTI cannot reach
    /// the caller's terminal.
    pub pty: bool,
    /// Called with (what, how) lines about run-time enforcement (the cgroup limits) before
    /// the command starts: `run -v` prints them.
    pub on_enforcement: Option<EnforcementHook>,
    /// Called with (what, how) for every requested limit this host cannot enforce as asked
    /// (the CLI prints them as warnings unless `-q`).
    pub on_degraded: Option<EnforcementHook>,
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

/// Set in the child right after clone (in its own copy of memory): from then until execve
/// nothing may allocate. Allocators can check it with [`in_pre_exec`].
static PRE_EXEC: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether this process is a launcher child between clone and execve (STYLE.md section 4).
/// The CLI's debug builds install a global allocator that aborts when this is true, so every
/// sandbox test doubles as an allocation check of the pre-exec path.
pub fn in_pre_exec() -> bool {
    PRE_EXEC.load(Ordering::Relaxed)
}

extern "C" fn forward_signal(sig: libc::c_int) {
    let pid = FORWARD_TO.load(Ordering::Relaxed);
    if pid > 0 {
        let _ = sys::kill(pid, sig);
    }
}

const FORWARDED: [libc::c_int; 4] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT];

/// How long a command gets between SIGTERM and SIGKILL when `--timeout` expires.
pub const TIMEOUT_GRACE: Duration = Duration::from_secs(2);

/// Parent-side resources of one run, released on every path out of `run`.
struct RunGuard {
    pid: libc::pid_t,
    fds: Vec<i32>,
    cgroup: Option<cgroups::PreparedCgroup>,
}

impl RunGuard {
    fn close(&mut self, fd: i32) {
        if let Some(i) = self.fds.iter().position(|&f| f == fd) {
            self.fds.swap_remove(i);
            sys::close(fd);
        }
    }
}

impl Drop for RunGuard {
    fn drop(&mut self) {
        if self.pid > 0 {
            // Bailing out between clone and wait: take the sandbox down with us.
            let _ = sys::kill(self.pid, libc::SIGKILL);
            let _ = sys::waitpid(self.pid, 0);
        }
        FORWARD_TO.store(0, Ordering::Relaxed);
        for fd in self.fds.drain(..) {
            sys::close(fd);
        }
        if let Some(cg) = self.cgroup.take() {
            let _ = cg.remove();
        }
    }
}

fn setup_err(step: impl Into<String>, errno: Errno) -> Error {
    Error::Setup {
        step: step.into(),
        errno,
        hint: None,
    }
}

impl Prepared {
    /// Spawns the sandbox and waits for it.
    ///
    /// # Errors
    /// [`Error::Setup`] when a setup step fails (exit 125), [`Error::Exec`] when the command
    /// cannot be executed (126/127).
    pub fn run(&self, opts: &SpawnOptions) -> Result<RunOutcome, Error> {
        let t0 = Instant::now();
        let mut timings = Timings::default();
        let pipes =
            prepared::Pipes::new().map_err(|e| setup_err("create the launcher's pipes", e))?;
        let mut guard = RunGuard {
            pid: 0,
            fds: vec![
                pipes.sync_r,
                pipes.sync_w,
                pipes.report_r,
                pipes.report_w,
                pipes.status_r,
                pipes.status_w,
            ],
            cgroup: None,
        };
        let mut limit_lines = Vec::new();
        let mut degraded_limits: Vec<&str> = Vec::new();
        let mut data_floor = None;
        if self.policy.layers.has(Layer::Limits) {
            // A cgroup left behind by a SIGKILLed launcher is reaped by the next run.
            let _ = cgroups::reap_stale();
            let (cg, notes) = cgroups::prepare_with(
                &self.policy.limits,
                // With a pid namespace the init's death kills everything: no kill-only leaves.
                if self.init {
                    cgroups::Teardown::PidNamespace
                } else {
                    cgroups::Teardown::Cgroup
                },
            )
            .map_err(|e| Error::Setup {
                step: format!("create the run's cgroup: {e}"),
                errno: Errno(libc::EIO),
                hint: Some("see `agentcage doctor` for the cgroup layout and delegation".into()),
            })?;
            limit_lines = cgroups::enforcement_summary(
                &self.policy.limits,
                cg.as_ref(),
                &notes,
                &self.rlimits,
            );
            // Requested limits no cgroup enforces and no rlimit stands in for exactly (memory:
            // RLIMIT_DATA below is per process only). pids has RLIMIT_NPROC, exact in the
            // sandbox's own user namespace.
            degraded_limits = notes
                .iter()
                .filter(|n| n.kind == cgroups::NoteKind::NotEnforced)
                .map(|n| n.limit)
                .filter(|l| !self.rlimits.iter().any(|(r, _)| r.limit() == *l))
                .collect();
            // Without a memory cgroup, RLIMIT_DATA (private writable memory per process) is
            // the floor. Not RLIMIT_AS: runtimes reserve far more address space than they use.
            if let Some(m) = self.policy.limits.memory {
                if !cg.as_ref().is_some_and(|c| c.enforces("memory")) {
                    data_floor = Some(m);
                    for (what, how) in limit_lines.iter_mut() {
                        if what == "memory" {
                            let m = crate::units::format_size(m);
                            *how = format!(
                                "{m} per process only (RLIMIT_DATA), and one {m} budget shared by \
                                 every tmpfs and SysV shared memory; memfds and shared anonymous \
                                 memory are not bounded: no writable memory cgroup for this caller \
                                 (`agentcage doctor` says why and how to delegate one)"
                            );
                        }
                    }
                }
            }
            guard.cgroup = cg;
        }
        if let Some(f) = &opts.on_enforcement {
            for (what, how) in &limit_lines {
                f(what, how);
            }
        }
        if let Some(f) = &opts.on_degraded {
            // A requested limit without a cgroup to enforce it (an unprivileged caller without
            // delegation): said on every run, not only with -v.
            for (what, how) in &limit_lines {
                if degraded_limits.contains(&what.as_str()) {
                    f(what, how);
                }
            }
        }
        // The sandbox opens the command's pty in its own devpts and sends us the master.
        let pty_plan = if opts.pty && self.hygiene {
            pty::PtyPlan::if_interactive().map_err(|e| Error::Setup {
                step: "create the socket for the command's pseudo-terminal".into(),
                errno: e,
                hint: Some(
                    "pass --no-pty to run without one (the command then has no terminal)".into(),
                ),
            })?
        } else {
            None
        };
        let pty_fds = pty_plan.as_ref().map(|p| (p.child_sock, p.tty_fds));
        if opts.forward_signals {
            for s in FORWARDED {
                let _ = sys::signal_handler(s, forward_signal);
            }
        }
        // SAFETY: the child branch only runs child::main, which is async-signal-safe and
        // only reads `self`, `pipes` and `pty_fds`, all built before this call.
        // As root, the user namespace is created as the sandbox's host uid (see
        // `userns_owner`).
        let pid = match unsafe { sys::clone_fork_owned_by(self.clone_flags, self.userns_owner()) } {
            Ok(0) => child::main(self, &pipes, pty_fds),
            Ok(pid) => pid,
            Err(e) => return Err(self.clone_error(e)),
        };
        guard.pid = pid;
        FORWARD_TO.store(pid, Ordering::Relaxed);
        timings.clone = t0.elapsed();
        guard.close(pipes.sync_r);
        guard.close(pipes.report_w);
        guard.close(pipes.status_w);

        self.configure_from_parent(pid)?;
        if let Some(m) = data_floor {
            // Set on the waiting init; inherited by the command and everything it forks.
            sys::prlimit(pid, libc::RLIMIT_DATA as libc::c_int, m, m)
                .map_err(|e| setup_err(format!("prlimit(pid {pid}, RLIMIT_DATA, {m})"), e))?;
        }
        // Release the child ("2": a cgroup attach follows, overlapping the child's mounts).
        // sync_w stays open until the sandbox exits: the child checks it for a hang-up
        // after arming PDEATHSIG (see child.rs).
        let release: &[u8] = if guard.cgroup.is_some() { b"2" } else { b"1" };
        sys::write_all(pipes.sync_w, release)
            .map_err(|e| setup_err("release the sandbox init", e))?;
        if let Some(cg) = &guard.cgroup {
            // The child composes the root meanwhile: if that fails, it reports and exits, and
            // the attach (ESRCH) or the second write (EPIPE) fails here. Its report names the
            // real cause (found by the robustness fuzz test: `--ro /etc` said "release the
            // sandbox init: EPIPE" instead of "remount /etc read-only: EINVAL").
            cg.attach_from_parent(pid)
                .map_err(|e| Error::Setup {
                    step: format!("attach the sandbox (pid {pid}) to its cgroup: {e}"),
                    errno: Errno(libc::EIO),
                    hint: None,
                })
                .and_then(|()| {
                    sys::write_all(pipes.sync_w, b"a")
                        .map_err(|e| setup_err("release the sandbox init", e))
                })
                .map_err(|e| self.child_report_or(pid, pipes.report_r, e))?;
        }
        timings.released = t0.elapsed();

        // Blocks until the sandbox's root is composed and it sent the pty master (or failed).
        let pty = pty_plan.and_then(pty::PtyPlan::receive);

        // EOF: the command was executed (the pipe is close-on-exec); 12 bytes: a setup error.
        let mut buf = [0u8; SetupError::WIRE];
        let n = sys::read_full(pipes.report_r, &mut buf).unwrap_or(0);
        timings.exec = t0.elapsed();
        let report = if n == SetupError::WIRE {
            SetupError::from_bytes(&buf)
        } else {
            None
        };

        let deadline = self
            .policy
            .limits
            .timeout
            .filter(|_| self.policy.layers.has(Layer::Limits))
            .map(|t| t0 + Duration::from_secs_f64(t));
        let pidfd = sys::pidfd_open(pid).ok();
        let mut exit_msg = None;
        if let Some(fd) = pidfd {
            guard.fds.push(fd);
        }
        if let (Some(p), None) = (&pty, report) {
            exit_msg = p.relay(pidfd.unwrap_or(-1), pipes.status_r, pid, deadline);
        }
        let mut timed_out = false;
        if let Some(d) = deadline {
            if !wait_until(pid, pidfd, Some(d)) {
                // The init forwards SIGTERM to the command; after the grace period SIGKILL
                // of the init takes the whole pid namespace down, the cgroup the rest.
                timed_out = true;
                let _ = sys::kill(pid, libc::SIGTERM);
                if !wait_until(pid, pidfd, Some(Instant::now() + TIMEOUT_GRACE)) {
                    let _ = sys::kill(pid, libc::SIGKILL);
                    if let Some(cg) = &guard.cgroup {
                        cg.kill_all();
                    }
                }
            }
        }

        let (st, ru) = sys::wait4(pid)
            .map_err(|e| setup_err(format!("wait for the sandbox (pid {pid})"), e))?;
        guard.pid = 0;
        FORWARD_TO.store(0, Ordering::Relaxed);
        timings.exit = t0.elapsed();

        // The init passes the command's raw wait status on the status pipe (after any stop
        // notifications, which only the pty relay acts on).
        let exit_status = exit_msg.or_else(|| loop {
            let mut m = [0u8; child::STATUS_MSG];
            match sys::read_full(pipes.status_r, &mut m) {
                Ok(child::STATUS_MSG) if m[0] == child::STATUS_STOPPED => continue,
                Ok(child::STATUS_MSG) if m[0] == child::STATUS_EXITED => {
                    break Some(i32::from_ne_bytes([m[1], m[2], m[3], m[4]]))
                }
                _ => break None,
            }
        });

        let (oom, peak_memory) = match &guard.cgroup {
            Some(cg) => (cg.oom_killed(), cg.peak_memory()),
            None => (false, None),
        };
        drop(guard); // closes the pipes, removes the cgroup
        drop(pty);

        if let Some(r) = report {
            return Err(self.describe_setup_error(r));
        }
        let exit = if let Some(status) = exit_status {
            Exit::from_wait_status(status)
        } else {
            Exit::from_wait_status(st)
        };
        let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
        Ok(RunOutcome {
            exit,
            timings,
            max_rss_kib: ru.ru_maxrss,
            cpu: tv(ru.ru_utime) + tv(ru.ru_stime),
            timed_out,
            oom,
            peak_memory,
            limits: limit_lines,
        })
    }

    /// A parent-side step failed after the child was released: when the child failed first
    /// (and exited, which is what made the parent's step fail), its setup report says why;
    /// otherwise `fallback`. Kills the child first so the read cannot block.
    fn child_report_or(&self, pid: libc::pid_t, report_r: i32, fallback: Error) -> Error {
        let _ = sys::kill(pid, libc::SIGKILL);
        let mut buf = [0u8; SetupError::WIRE];
        match sys::read_full(report_r, &mut buf) {
            Ok(n) if n == SetupError::WIRE => {
                SetupError::from_bytes(&buf).map_or(fallback, |r| self.describe_setup_error(r))
            }
            _ => fallback,
        }
    }

    /// Parent-side configuration while the child waits: uid/gid maps.
    fn configure_from_parent(&self, pid: libc::pid_t) -> Result<(), Error> {
        let Some(maps) = &self.id_maps else {
            return Ok(());
        };
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

/// Waits until `pid` has exited (without reaping it) or `deadline` passes; true when it
/// exited. Uses the pidfd when there is one, else polls waitid(WNOWAIT) every 5 ms.
fn wait_until(pid: libc::pid_t, pidfd: Option<i32>, deadline: Option<Instant>) -> bool {
    loop {
        let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        if let Some(fd) = pidfd {
            let ms = left.map_or(-1, |l| l.as_millis().min(i32::MAX as u128) as i32);
            match sys::poll_in(fd, ms) {
                Ok(true) => return true,
                Ok(false) if left.is_some_and(|l| l.is_zero()) => return false,
                Ok(false) => {}
                Err(_) => return sys::exited_nowait(pid),
            }
        } else {
            if sys::exited_nowait(pid) {
                return true;
            }
            if left.is_some_and(|l| l.is_zero()) {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}
