//! The launcher: prepare -> spawn -> supervise -> [`RunOutcome`].
//!
//! Process tree of a namespaced run:
//!
//! ```text
//! agentcage (launcher, caller's uid)         writes id maps, attaches the cgroup, forwards
//!  └─ init   (pid 1 in the new pid ns)       composes the root, then reaps and forwards
//!      └─ command (pid 2 or 3)               hygiene, limits, Landlock, caps, seccomp, execve
//! ```
//!
//! Everything the child side touches is built in [`prepare`] ([`Prepared`]); the child side
//! (`child.rs`, `init.rs`) only makes raw syscalls on it. When the command exits, the init exits with
//! its status and the kernel kills whatever is left in the pid namespace. The init has
//! PR_SET_PDEATHSIG(SIGKILL), so the whole sandbox dies with the launcher, even on SIGKILL.

mod child;
mod init;
mod nested;
mod prepared;
mod pty;
mod report;
mod sync;
pub(crate) mod zygote;

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant};

pub use prepared::{prepare, Prepared};
pub(crate) use pty::Relay;

/// A setup report's record from a report pipe (`None`: EOF, the exec happened).
pub(crate) fn read_report(fd: i32) -> Option<crate::error::SetupError> {
    report::read(fd)
}

use crate::error::Error;
use crate::limits::{self, cgroup::Teardown};
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
    /// Peak RSS of the sandbox's processes, in KiB: the largest of the processes the init
    /// reaped (its `RUSAGE_CHILDREN`, when it reported that none was left), else from wait4
    /// of the sandbox's root (which counts the root, a copy of the launcher, too).
    pub max_rss_kib: i64,
    /// User + system CPU time of the sandbox (from the same source as `max_rss_kib`).
    pub cpu: Duration,
    /// `--timeout` expired and the sandbox was killed.
    pub timed_out: bool,
    /// This signal (SIGINT, SIGTERM, SIGHUP or SIGQUIT) reached the launcher, was forwarded,
    /// and the sandbox had not exited [`TIMEOUT_GRACE`] later: it was killed.
    pub killed_after_signal: Option<i32>,
    /// The memory limit's OOM killer killed a process of the sandbox (the command itself
    /// when `exit` is SIGKILL, else one of its children).
    pub oom: bool,
    /// Peak memory of the run's cgroup, when one was enforced.
    pub peak_memory: Option<u64>,
    /// How each requested limit was enforced (limit, mechanism).
    pub limits: Vec<(String, String)>,
    /// `--net allow`: the egress engine's final counters.
    pub egress: Option<agentcage_egress::Stats>,
    /// `--events`: how many syscalls the seccomp filter refused (reported as events).
    pub seccomp_denials: Option<u64>,
    /// The sandbox's init, still tearing its namespaces down when the outcome was made (every
    /// process of the agent was already reaped): reaped when the last clone of the outcome is
    /// dropped, so the caller's own work after the run overlaps that teardown. A caller that
    /// keeps outcomes should drop them (or let them go) soon: until then each keeps a zombie
    /// and, with limits, the run's cgroup.
    pub(crate) exiting_init: Option<std::sync::Arc<ExitingInit>>,
}

/// The sandbox's init after it reported that nothing else is left ([`sync::STATUS_DONE`]):
/// only its exit remains (the mount namespace's unmounting, its memory), which the launcher
/// need not wait for before it reports the outcome. Dropping it waits for that exit and reaps
/// the init (no zombie is left to the caller's reaper, which, as pid 1 of a container, may
/// never reap), then removes the run's cgroup, which the init leaves only at the end of its
/// exit. The init holds no agent process and no open file of the workspace.
pub(crate) struct ExitingInit {
    pub(crate) pid: libc::pid_t,
    /// Dropped (removed) after the reap.
    cgroup: Option<limits::cgroup::PreparedCgroup>,
}

impl std::fmt::Debug for ExitingInit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExitingInit")
            .field("pid", &self.pid)
            .field("cgroup", &self.cgroup.is_some())
            .finish()
    }
}

impl Drop for ExitingInit {
    fn drop(&mut self) {
        let _ = sys::waitpid(self.pid, 0);
        if let Some(cg) = self.cgroup.take() {
            let _ = cg.remove();
        }
    }
}

/// Receives (what, how) enforcement lines.
pub type EnforcementHook = Box<dyn Fn(&str, &str)>;

/// Options of a spawn that are not part of the policy.
#[derive(Default)]
pub struct SpawnOptions {
    /// Forward SIGINT, SIGTERM, SIGHUP and SIGQUIT received by this process to the sandbox
    /// (installs process-wide handlers: for CLIs, not for libraries with their own).
    pub forward_signals: bool,
    /// When any of fds 0-2 is a terminal (and the hygiene layer is on), give the command
    /// its own pseudo-terminal on those fds and relay to the caller's: job control works,
    /// TIOCSTI cannot reach the caller's terminal. When false, those fds become pipes (a
    /// terminal stdin reads EOF): the command has no terminal at all. Either way no fd of
    /// the caller's terminal reaches the sandbox.
    pub pty: bool,
    /// Called with (what, how) lines about run-time enforcement (the cgroup limits) before
    /// the command starts: `run -v` prints them.
    pub on_enforcement: Option<EnforcementHook>,
    /// Called with (what, how) for every requested limit this host cannot enforce as asked
    /// (the CLI prints them as warnings unless `-q`).
    pub on_degraded: Option<EnforcementHook>,
    /// `--net allow`: the engine's log file and denial hook.
    pub egress: crate::egress::EgressHooks,
    /// `--events`: where seccomp denials go (docs/EVENTS.md). Network denials come through
    /// `egress.on_deny`.
    pub events: Option<crate::events::EventSink>,
}

/// What the launcher was asked to run (kept for error messages).
#[derive(Debug, Clone)]
pub struct Command {
    /// argv (`argv[0]` is looked up in the sandbox's PATH when it has no slash).
    pub argv: Vec<OsString>,
    /// The agentcage binary to expose inside at `/run/agentcage/agentcage` (`rootfs::SELF_EXE`).
    pub self_exe: Option<PathBuf>,
}

static FORWARD_TO: AtomicI32 = AtomicI32::new(0);
/// Write end of the run's signal self-pipe: the supervisor learns of a forwarded signal
/// and gives the sandbox [`TIMEOUT_GRACE`] to exit before it kills it.
static SIGNAL_PIPE: AtomicI32 = AtomicI32::new(-1);

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
    let fd = SIGNAL_PIPE.load(Ordering::Relaxed);
    if fd >= 0 {
        // Non-blocking: a full pipe already says "a signal came".
        let _ = sys::write_some(fd, &[sig as u8]);
    }
}

/// The signals the launcher forwards to the init, and the init to the command.
const FORWARDED: [libc::c_int; 4] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT];

/// How long a command gets between SIGTERM and SIGKILL when `--timeout` expires, and
/// between a SIGINT/SIGTERM/SIGHUP/SIGQUIT forwarded from the launcher and SIGKILL.
pub const TIMEOUT_GRACE: Duration = Duration::from_secs(2);

/// Parent-side resources of one run, released on every path out of `run`.
struct RunGuard {
    pid: libc::pid_t,
    fds: Vec<i32>,
    cgroup: Option<limits::cgroup::PreparedCgroup>,
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
        SIGNAL_PIPE.store(-1, Ordering::Relaxed);
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

/// What the sandbox's first process becomes once the sandbox is set up.
#[derive(Clone, Copy)]
pub(crate) enum Role {
    /// `run`: the init, which forks the command (or, without a pid namespace, the command).
    Run,
    /// A session's zygote (`zygote.rs`): restricts itself once and forks each exec on the
    /// supervisor's request, received on `chan` (its end of a socketpair).
    Zygote { chan: i32 },
}

/// A sandbox after clone, release and the setup report: what [`Prepared::run`] supervises
/// and a session keeps (its guard kills the sandbox and removes its cgroup when dropped).
pub(crate) struct Spawned {
    t0: Instant,
    pub(crate) timings: Timings,
    guard: RunGuard,
    status_r: i32,
    sig_r: i32,
    relay: Option<pty::Relay>,
    /// The setup report: a step failed and the sandbox exits 125. `None`: the command was
    /// executed (`Role::Run`) or the zygote is ready (`Role::Zygote`).
    pub(crate) report: Option<crate::error::SetupError>,
    limit_lines: Vec<(String, String)>,
    /// `--net allow`: the egress engine serving the sandbox's listeners (its threads run
    /// until it is stopped; dropping it stops it too).
    pub(crate) engine: Option<agentcage_egress::Engine>,
    /// `--events`: the seccomp listener thread (events/seccomp.rs).
    pub(crate) seccomp_events: Option<crate::events::seccomp::Listener>,
}

impl Spawned {
    /// The sandbox's first process (host pid).
    pub(crate) fn pid(&self) -> libc::pid_t {
        self.guard.pid
    }

    /// The run's cgroup leaf, when the limits layer made one.
    pub(crate) fn cgroup(&self) -> Option<&limits::cgroup::PreparedCgroup> {
        self.guard.cgroup.as_ref()
    }

    /// How each requested limit is enforced (limit, mechanism).
    pub(crate) fn limit_lines(&self) -> &[(String, String)] {
        &self.limit_lines
    }
}

impl Prepared {
    /// Spawns the sandbox and waits for it.
    ///
    /// # Errors
    /// [`Error::Setup`] when a setup step fails (exit 125), [`Error::Exec`] when the command
    /// cannot be executed (126/127).
    pub fn run(&self, opts: &SpawnOptions) -> Result<RunOutcome, Error> {
        let spawned = self.spawn(opts, Role::Run)?;
        self.supervise(spawned)
    }

    /// Makes the run's limits (its cgroup leaf, the stale leaves reaped) now instead of in
    /// the spawn, e.g. while work beside the caller (the placeholders' helper) goes on: the
    /// launcher otherwise waited for that helper first and did this on its critical path
    /// after (issue 19: ~0.3-0.5 ms of cgroupfs mkdirs, opens and writes as root on cgroup
    /// v1, the layout probing unprivileged). An error is reported by the spawn, as before.
    pub fn prepare_limits(&self) {
        let made = self.make_limits();
        if let Ok(mut slot) = self.early_limits.lock() {
            *slot = Some(made);
        }
    }

    /// The run's limits: its cgroup leaf (if a hierarchy is writable) and how each limit is
    /// enforced; nothing without the limits layer.
    fn make_limits(&self) -> Result<limits::RunLimits, Error> {
        if !self.policy.layers.has(Layer::Limits) {
            return Ok(limits::RunLimits::default());
        }
        limits::prepare_run(
            &self.policy.limits,
            &self.rlimits,
            // With a pid namespace the init's death kills everything: no kill-only leaves.
            if self.init {
                Teardown::PidNamespace
            } else {
                Teardown::Cgroup
            },
        )
        .map_err(|source| Error::Cgroup {
            step: "create the run's cgroup".into(),
            source,
            hint: Some("see `agentcage doctor` for the cgroup layout and delegation".into()),
        })
    }

    /// Prepares the run's limits and terminal, clones the sandbox (its first process takes
    /// `role`), releases it and reads its setup report.
    pub(crate) fn spawn(&self, opts: &SpawnOptions, role: Role) -> Result<Spawned, Error> {
        let t0 = Instant::now();
        let mut timings = Timings::default();
        // The status pipe carries the init's messages: none without an init (no pid
        // namespace: the command is the child; a session's zygote does not use it). Without
        // it the launcher's wait is one wake-up (the pidfd), not two (the pipe's hang-up at
        // the exec, then the pidfd).
        let status = self.init || matches!(role, Role::Zygote { .. });
        let pipes = prepared::Pipes::new(self.egress.is_some(), status)
            .map_err(|e| setup_err("create the launcher's pipes", e))?;
        let mut guard = RunGuard {
            pid: 0,
            fds: vec![pipes.sync_r, pipes.sync_w, pipes.report_r, pipes.report_w],
            cgroup: None,
        };
        guard.fds.extend(
            [
                pipes.status_r,
                pipes.status_w,
                pipes.net_parent,
                pipes.net_child,
            ]
            .into_iter()
            .filter(|f| *f >= 0),
        );
        let mut sig_r = -1;
        let early = self.early_limits.lock().ok().and_then(|mut e| e.take());
        let mut run_limits = match early {
            Some(made) => made?,
            None => self.make_limits()?,
        };
        guard.cgroup = run_limits.cgroup.take();
        let data_floor = run_limits.data_floor;
        let limit_lines: Vec<(String, String)> = run_limits
            .rows
            .iter()
            .map(|r| (r.limit.name().to_owned(), r.to_string()))
            .collect();
        if let Some(f) = &opts.on_enforcement {
            for (what, how) in &limit_lines {
                f(what, how);
            }
        }
        if let Some(f) = &opts.on_degraded {
            // A requested limit without a cgroup to enforce it (an unprivileged caller without
            // delegation): said on every run, not only with -v.
            for (row, (what, how)) in run_limits.rows.iter().zip(&limit_lines) {
                if run_limits.degraded.contains(&row.limit) {
                    f(what, how);
                }
            }
        }
        // Which of fds 0-2 are the caller's terminal and what replaces them: the sandbox
        // opens the command's pty in its own devpts and sends us the master, or pipes.
        let mut stdio_plan = if self.hygiene {
            pty::StdioPlan::new(opts.pty).map_err(|e| Error::Setup {
                step: if opts.pty {
                    "create the socket for the command's pseudo-terminal".into()
                } else {
                    "create the pipes that replace the caller's terminal".into()
                },
                errno: e,
                hint: Some(if opts.pty {
                    "pass --no-pty to run without one (the command then has no terminal)".into()
                } else {
                    "redirect the command's terminal fds (e.g. </dev/null >log 2>&1)".into()
                }),
            })?
        } else {
            None
        };
        let child_stdio = stdio_plan.as_ref().map(pty::StdioPlan::child);
        // argv/environment areas the init overwrites in its copy of our memory. Only for a
        // child that stays (an init, a session's zygote): one that execs the command at once
        // (no pid namespace) shows our argv only until its execve, as we do all along.
        let title = (self.init || matches!(role, Role::Zygote { .. }))
            .then(sys::proc_title_areas)
            .flatten();
        if opts.forward_signals {
            let (r, w) =
                sys::pipe_nonblock().map_err(|e| setup_err("create the signal pipe", e))?;
            guard.fds.extend([r, w]);
            SIGNAL_PIPE.store(w, Ordering::Relaxed);
            sig_r = r;
            for s in FORWARDED {
                let _ = sys::signal_handler(s, forward_signal);
            }
        }
        // --events: the socket the command (a session's zygote) sends its seccomp listener on.
        let mut notif_sock = None;
        if let (Some(sink), Some(filter)) = (&opts.events, &self.seccomp) {
            let (parent, child) = sys::socketpair()
                .map_err(|e| setup_err("create the socket for the seccomp listener", e))?;
            guard.fds.extend([parent, child]);
            crate::events::seccomp::NOTIF_SOCK.store(child, Ordering::Relaxed);
            notif_sock = Some((parent, child, filter.clone(), sink.clone()));
        }
        let _idmapped = self
            .rootfs
            .as_ref()
            .map(|r| r.idmap.open_trees())
            .transpose()?; // rootfs/idmap.rs
                           // The limits layer on v1: this thread steps into the run's leaf so the child is born
                           // there (limits from its first instruction, no pid write to cgroup.procs and its RCU
                           // grace period on the critical path; limits/cgroup/mod.rs), and steps out right after.
        if let Some(cg) = &guard.cgroup {
            cg.enter_self().map_err(|source| Error::Cgroup {
                step: "move the launcher into the run's cgroup to clone the sandbox there".into(),
                source,
                hint: None,
            })?;
        }
        // Nothing for the launcher to do between the clone and the release (no id maps to
        // write, no RLIMIT_DATA to set on the child, no cgroup attach): the release byte is
        // in the pipe before the clone, so the child goes on at once instead of waiting for
        // the launcher to be scheduled again (`none`, and any profile without a user
        // namespace or limits). The child's side of the handshake is unchanged.
        // (Measured and not kept, issue 19: an unprivileged child writing its own one-line
        // maps instead. The launcher's writes overlap the child's start of the network
        // namespace's helper; done by the child they come after it: cloned -> pivot 0.48-0.51
        // ms became 0.55-0.58 for ns-only, and likewise for full.)
        let released_early = self.id_maps.is_none()
            && data_floor.is_none()
            && !guard.cgroup.as_ref().is_some_and(|cg| cg.needs_attach());
        if released_early {
            sys::write_all(pipes.sync_w, sync::RELEASE)
                .map_err(|e| setup_err("release the sandbox init", e))?;
        }
        let cloned = if self.child_execs_at_once(role, released_early) {
            self.spawn_vfork(&pipes, child_stdio)
        } else {
            // SAFETY: the child branch only runs child::main, which is async-signal-safe and
            // only reads `self`, `pipes`, `child_stdio` and `title`, all built before this
            // call. As root, the user namespace is created as the sandbox's host uid (see
            // `userns_owner`).
            let cloned = unsafe { sys::clone_fork_owned_by(self.clone_flags, self.userns_owner()) };
            if let Ok(0) = cloned {
                child::main(self, &pipes, child_stdio, title, role, child::Memory::Copy)
            }
            cloned
        };
        let left = guard.cgroup.as_ref().map_or(Ok(()), |cg| cg.leave_self());
        let pid = match cloned {
            Ok(pid) => pid,
            Err(e) => {
                crate::events::seccomp::NOTIF_SOCK.store(-1, Ordering::Relaxed);
                return Err(self.clone_error(e));
            }
        };
        guard.pid = pid;
        left.map_err(|source| Error::Cgroup {
            step: "move the launcher back to its own cgroup after the clone".into(),
            source,
            hint: None,
        })?;
        FORWARD_TO.store(pid, Ordering::Relaxed);
        timings.clone = t0.elapsed();
        crate::events::seccomp::NOTIF_SOCK.store(-1, Ordering::Relaxed);
        let seccomp_events = notif_sock.map(|(parent, child, filter, sink)| {
            guard.close(child);
            guard.fds.retain(|&f| f != parent); // the thread owns it now
            crate::events::seccomp::Listener::start(parent, filter, sink, None)
        });
        guard.close(pipes.sync_r);
        guard.close(pipes.report_w);
        guard.close(pipes.status_w);
        guard.close(pipes.net_child);
        if let Some(p) = &mut stdio_plan {
            p.after_clone();
        }

        if !released_early {
            self.release(pid, &pipes, guard.cgroup.as_ref(), data_floor)?;
        }
        timings.released = t0.elapsed();

        // --net allow: the listeners the sandbox made in its network namespace, then the
        // engine (its threads start only now: the launcher was single-threaded at clone).
        let engine = match &self.egress {
            Some(e) => Some(self.start_egress(e, pid, &pipes, &opts.egress)?),
            None => None,
        };
        guard.close(pipes.net_parent);

        // Blocks until the sandbox's root is composed and it sent the pty master (or failed).
        let relay = stdio_plan.and_then(pty::StdioPlan::into_relay);

        // EOF: the command was executed (the pipe is close-on-exec); a record: a setup error.
        let report = report::read(pipes.report_r);
        timings.exec = t0.elapsed();

        Ok(Spawned {
            t0,
            timings,
            guard,
            status_r: pipes.status_r,
            sig_r,
            relay,
            report,
            limit_lines,
            engine,
            seccomp_events,
        })
    }

    /// Whether the child of [`Prepared::spawn`] may share our memory (a vfork-like spawn):
    /// it must exec the command itself (no init, no zygote), create no namespace (none at
    /// clone, none built beside it: `own_net`; the launcher writes nothing for it after
    /// clone: no id maps) and need nothing from us
    /// between clone and exec (released before the clone, no egress), because we are
    /// suspended until it execs or exits. `run -p none` and the no-namespace ablations.
    fn child_execs_at_once(&self, role: Role, released_early: bool) -> bool {
        released_early
            && matches!(role, Role::Run)
            && !self.init
            && self.clone_flags == 0
            && !self.own_net
            && self.egress.is_none()
    }

    /// The child of a run that execs at once, spawned vfork-like (CLONE_VM|CLONE_VFORK, as
    /// posix_spawn does and as the init spawns the command): a fork copied the page tables of
    /// the launcher's whole image and heap only for execve to drop them, and the child's
    /// writes took copy-on-write faults. Returns once the child exec'd or exited (its setup
    /// error, if any, is in the report pipe as with a fork).
    fn spawn_vfork(
        &self,
        pipes: &prepared::Pipes,
        child_stdio: Option<pty::ChildStdio>,
    ) -> Result<libc::pid_t, sys::OwnedCloneError> {
        // The child's stack while it shares our memory: a few pages are touched.
        const STACK: usize = 128 * 1024;
        let mut stack = sys::map_stack(STACK).map_err(sys::OwnedCloneError::Clone)?;
        let mut child = || {
            child::main(
                self,
                pipes,
                child_stdio,
                None,
                Role::Run,
                child::Memory::Shared,
            )
        };
        // SAFETY: child::main is async-signal-safe, reads only `self`, `pipes` and
        // `child_stdio` (built before this call), writes only its stack, errno and
        // PRE_EXEC (reset below), and ends in execve or `_exit`. With Memory::Shared it
        // leaves the mm's dumpable flag alone (it is ours too).
        let r = unsafe { sys::clone_vfork(stack.as_mut_slice(), &mut child) };
        // The child set it in what is also our memory; it has exec'd or exited now.
        PRE_EXEC.store(false, Ordering::Relaxed);
        // SAFETY: the child no longer runs on it (it exec'd or exited: CLONE_VFORK).
        unsafe { stack.unmap() };
        r.map_err(sys::OwnedCloneError::Clone)
    }

    /// Waits for a spawned run: the supervisor loop, the exit status, the cgroup's verdicts.
    fn supervise(&self, spawned: Spawned) -> Result<RunOutcome, Error> {
        let Spawned {
            t0,
            mut timings,
            mut guard,
            status_r,
            sig_r,
            mut relay,
            report,
            limit_lines,
            engine,
            seccomp_events,
        } = spawned;
        let pid = guard.pid;
        let deadline = self
            .policy
            .limits
            .timeout
            .filter(|_| self.policy.layers.has(Layer::Limits))
            .map(|t| t0 + Duration::from_secs_f64(t));
        let pidfd = sys::pidfd_open(pid).ok();
        if let Some(fd) = pidfd {
            guard.fds.push(fd);
        }
        let mut sup = Supervisor {
            pid,
            pidfd,
            status_r,
            sig_r,
            deadline,
            exit_msg: None,
            done: None,
            timed_out: false,
            signal: None,
            killed: false,
        };
        if report.is_none() {
            sup.run(relay.as_mut(), guard.cgroup.as_ref());
        }
        if let Some(r) = &mut relay {
            r.stop();
        }
        let timed_out = sup.timed_out;
        let killed_after_signal = sup.signal.filter(|_| sup.killed && !timed_out);

        // The init reaped everything and only its exit remains: the outcome need not wait for
        // it (the outcome's ExitingInit reaps it, and removes the run's cgroup, when dropped).
        let done = sup.done.filter(|_| !sup.killed);
        let (st, max_rss_kib, cpu) = match done {
            Some(d) => (d.st, d.max_rss_kib, Duration::from_micros(d.cpu_us)),
            None => {
                let (st, ru) = sys::wait4(pid)
                    .map_err(|e| setup_err(format!("wait for the sandbox (pid {pid})"), e))?;
                (st, ru.ru_maxrss, sys::rusage_cpu(&ru))
            }
        };
        guard.pid = 0;
        FORWARD_TO.store(0, Ordering::Relaxed);
        timings.exit = t0.elapsed();

        // The init passes the command's raw wait status on the status pipe (after any stop
        // notifications, which only the pty relay acts on). Lost only when the agent filled
        // the pipe with stops: the init's own status (128+N for signal N) stands in.
        sup.read_status(None);
        let exit_status = sup.exit_msg;

        let egress = engine.map(agentcage_egress::Engine::stop);
        let seccomp_denials = seccomp_events.map(crate::events::seccomp::Listener::stop);
        // Final already: every process of the sandbox is gone (the init's own exit charges
        // nothing new).
        let (oom, peak_memory) = match &guard.cgroup {
            Some(cg) => (cg.oom_killed(), cg.peak_memory()),
            None => (false, None),
        };
        // The kernel lets a cgroup go only once its last task left it, at the very end of the
        // init's exit: with an early outcome the cgroup goes with the ExitingInit.
        let exiting_init = done.map(|_| {
            std::sync::Arc::new(ExitingInit {
                pid,
                cgroup: guard.cgroup.take(),
            })
        });
        drop(guard); // closes the pipes, removes the cgroup (unless the ExitingInit took it)
        drop(relay);

        if let Some(r) = report {
            return Err(self.describe_setup_error(r));
        }
        let exit = if let Some(status) = exit_status {
            Exit::from_wait_status(status)
        } else {
            Exit::from_wait_status(st)
        };
        Ok(RunOutcome {
            exit,
            timings,
            max_rss_kib,
            cpu,
            timed_out,
            killed_after_signal,
            oom,
            peak_memory,
            limits: limit_lines,
            egress,
            seccomp_denials,
            exiting_init,
        })
    }

    /// Receives the sandbox's egress listeners and starts the engine on them. When the
    /// sandbox failed before sending them all, its own report is the error.
    fn start_egress(
        &self,
        e: &crate::egress::Prepared,
        pid: libc::pid_t,
        pipes: &prepared::Pipes,
        hooks: &crate::egress::EgressHooks,
    ) -> Result<agentcage_egress::Engine, Error> {
        let listeners = crate::egress::receive(e, pipes.net_parent).map_err(|errno| {
            let fallback = setup_err("receive the sandbox's egress listeners", errno);
            self.child_report_or(pid, pipes.report_r, fallback)
        })?;
        crate::egress::start(e, listeners, hooks)
    }

    /// The handshake with the waiting child: id maps, the RLIMIT_DATA floor, release, and
    /// the cgroup attach (overlapping the child's mounts).
    fn release(
        &self,
        pid: libc::pid_t,
        pipes: &prepared::Pipes,
        cgroup: Option<&limits::cgroup::PreparedCgroup>,
        data_floor: Option<u64>,
    ) -> Result<(), Error> {
        if let Some(maps) = &self.id_maps {
            crate::namespaces::write_id_maps_from_parent(maps, pid)?;
        }
        if let Some(m) = data_floor {
            // Set on the waiting init; inherited by the command and everything it forks.
            sys::prlimit(pid, libc::RLIMIT_DATA as libc::c_int, m, m)
                .map_err(|e| setup_err(format!("prlimit(pid {pid}, RLIMIT_DATA, {m})"), e))?;
        }
        // Release the child ("2": a cgroup attach follows, overlapping the child's mounts).
        // sync_w stays open until the sandbox exits: the child checks it for a hang-up
        // after arming PDEATHSIG (see child.rs, sync.rs).
        // Leaves the launcher entered itself around the clone need no attach.
        let cgroup = cgroup.filter(|cg| cg.needs_attach());
        let release = if cgroup.is_some() {
            sync::RELEASE_ATTACH_FOLLOWS
        } else {
            sync::RELEASE
        };
        sys::write_all(pipes.sync_w, release)
            .map_err(|e| setup_err("release the sandbox init", e))?;
        if let Some(cg) = cgroup {
            // The child composes the root meanwhile: if that fails, it reports and exits, and
            // the attach (ESRCH) or the second write (EPIPE) fails here. Its report names the
            // real cause (found by the robustness fuzz test: `--ro /etc` said "release the
            // sandbox init: EPIPE" instead of "remount /etc read-only: EINVAL").
            cg.attach_rest_from_parent(pid)
                .map_err(|source| Error::Cgroup {
                    step: format!("attach the sandbox (pid {pid}) to its cgroup"),
                    source,
                    hint: None,
                })
                .and_then(|()| {
                    sys::write_all(pipes.sync_w, sync::ATTACHED)
                        .map_err(|e| setup_err("release the sandbox init", e))
                })
                .map_err(|e| self.child_report_or(pid, pipes.report_r, e))?;
        }
        Ok(())
    }

    /// A parent-side step failed after the child was released: when the child failed first
    /// (and exited, which is what made the parent's step fail), its setup report says why;
    /// otherwise `fallback`. Kills the child first so the read cannot block.
    fn child_report_or(&self, pid: libc::pid_t, report_r: i32, fallback: Error) -> Error {
        let _ = sys::kill(pid, libc::SIGKILL);
        report::read(report_r).map_or(fallback, |r| self.describe_setup_error(r))
    }
}

/// How long the relay waits for more of the sandbox's output once it exited (idle, and in all).
const DRAIN_IDLE: Duration = Duration::from_millis(500);
const DRAIN_MAX: Duration = Duration::from_secs(5);

/// The launcher's wait for the sandbox: never blocks on the sandbox's terminal or its
/// reports, and always ends it: on `--timeout` (SIGTERM, then SIGKILL after
/// [`TIMEOUT_GRACE`]) and on a signal forwarded from the launcher (SIGKILL of the init after
/// the grace period, whatever the command does with the signal).
struct Supervisor {
    pid: libc::pid_t,
    pidfd: Option<i32>,
    status_r: i32,
    sig_r: i32,
    deadline: Option<Instant>,
    /// The init's message with the command's raw wait status.
    exit_msg: Option<i32>,
    /// The init's [`sync::STATUS_DONE`]: every process of the sandbox is reaped.
    done: Option<sync::Status>,
    timed_out: bool,
    /// The first forwarded signal the launcher received.
    signal: Option<i32>,
    /// The grace period ran out: the sandbox was SIGKILLed.
    killed: bool,
}

impl Supervisor {
    /// Runs until the sandbox's root process has exited (not reaped), or the init reported
    /// that nothing of the sandbox runs any more ([`sync::STATUS_DONE`]), and the relay
    /// passed on what the sandbox wrote.
    fn run(
        &mut self,
        mut relay: Option<&mut pty::Relay>,
        cg: Option<&limits::cgroup::PreparedCgroup>,
    ) {
        if let Some(r) = relay.as_deref_mut() {
            r.start();
        }
        let mut kill_at: Option<Instant> = None;
        let mut exited = false;
        // After the sandbox exited: until when the relay still passes on what is left.
        let mut drain_until = Instant::now();
        let mut drain_cap = Instant::now();
        let mut status_open = self.status_r >= 0;
        let mut fds = Vec::with_capacity(16);
        loop {
            let now = Instant::now();
            if !exited {
                if self.deadline.is_some_and(|d| now >= d) && !self.timed_out {
                    // The init forwards SIGTERM to the command; after the grace period
                    // SIGKILL of the init takes the whole pid namespace down, the cgroup
                    // the rest.
                    self.timed_out = true;
                    let _ = sys::kill(self.pid, libc::SIGTERM);
                    kill_at =
                        Some(kill_at.map_or(now + TIMEOUT_GRACE, |k| k.min(now + TIMEOUT_GRACE)));
                }
                if kill_at.is_some_and(|k| now >= k) && !self.killed {
                    self.killed = true;
                    let _ = sys::kill(self.pid, libc::SIGKILL);
                    if let Some(cg) = cg {
                        cg.kill_all();
                    }
                }
            }
            fds.clear();
            let pidfd = self.pidfd.filter(|_| !exited).unwrap_or(-1);
            fds.push(libc::pollfd {
                fd: pidfd,
                events: libc::POLLIN,
                revents: 0,
            });
            let st = if status_open { self.status_r } else { -1 };
            fds.push(libc::pollfd {
                fd: st,
                events: libc::POLLIN,
                revents: 0,
            });
            fds.push(libc::pollfd {
                fd: self.sig_r,
                events: libc::POLLIN,
                revents: 0,
            });
            if let Some(r) = relay.as_deref() {
                r.pollfds(&mut fds);
            }
            let timeout = if exited {
                drain_until
                    .saturating_duration_since(now)
                    .as_millis()
                    .min(i32::MAX as u128) as i32
            } else {
                let mut wake = if self.timed_out { None } else { self.deadline };
                if !self.killed {
                    wake = match (wake, kill_at) {
                        (Some(a), Some(b)) => Some(a.min(b)),
                        (a, b) => a.or(b),
                    };
                }
                let mut ms = wake.map_or(-1, |w| {
                    // Round up: waking a little early would spin.
                    let d = w.saturating_duration_since(now);
                    d.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32
                });
                if self.pidfd.is_none() && !(0..=5).contains(&ms) {
                    ms = 5; // no pidfd: poll waitid every 5 ms
                }
                ms
            };
            match sys::poll(&mut fds, timeout) {
                Ok(_) => {}
                Err(e) if e.0 == libc::EINTR => continue,
                Err(_) => {
                    std::thread::sleep(Duration::from_millis(5));
                    for f in fds.iter_mut() {
                        f.revents = 0;
                    }
                }
            }
            if fds[1].revents != 0 {
                status_open = self.read_status(relay.as_deref());
            }
            if fds[2].revents != 0 {
                let mut b = [0u8; 64];
                while let Ok(1..) = sys::read_some(self.sig_r, &mut b) {
                    self.signal.get_or_insert(i32::from(b[0]));
                }
                // The handler forwarded the signal; the sandbox gets the grace period.
                if kill_at.is_none() && !exited {
                    kill_at = Some(Instant::now() + TIMEOUT_GRACE);
                }
            }
            let progress = match relay.as_deref_mut() {
                Some(r) => r.handle(&fds[3..]),
                None => false,
            };
            if !exited
                && (fds[0].revents != 0
                    || self.done.is_some()
                    || (self.pidfd.is_none() && sys::exited_nowait(self.pid)))
            {
                exited = true;
                if let Some(r) = relay.as_deref_mut() {
                    r.close_input();
                }
                // The command's last output may still be on its way to the pty master (the
                // tty layer pushes it from a work queue): the relay ends at EOF/EIO of
                // every output, or when nothing moved for DRAIN_IDLE (a process outside a
                // pid namespace may hold the terminal), at most DRAIN_MAX after the exit.
                let now = Instant::now();
                drain_until = now + DRAIN_IDLE;
                drain_cap = now + DRAIN_MAX;
                if relay.as_deref().is_none_or(pty::Relay::finished) {
                    break;
                }
                continue;
            }
            if exited {
                let now = Instant::now();
                if progress {
                    drain_until = (now + DRAIN_IDLE).min(drain_cap);
                }
                if relay.as_deref().is_none_or(pty::Relay::finished) || now >= drain_until {
                    break;
                }
            }
        }
    }

    /// Reads the init's status messages that are there; false at EOF. Job-control stops
    /// stop the launcher when the relay is interactive, and are dropped otherwise.
    fn read_status(&mut self, relay: Option<&pty::Relay>) -> bool {
        loop {
            let mut m = [0u8; sync::STATUS_MSG];
            match sys::read_some(self.status_r, &mut m) {
                Ok(sync::STATUS_MSG) => {
                    let s = sync::parse_status(&m);
                    match s.tag {
                        sync::STATUS_STOPPED => {
                            if let Some(r) = relay.filter(|r| r.interactive()) {
                                r.suspend(self.pid);
                            }
                        }
                        sync::STATUS_EXITED => self.exit_msg = Some(s.st),
                        sync::STATUS_DONE => {
                            self.exit_msg = Some(s.st);
                            self.done = Some(s);
                        }
                        _ => {}
                    }
                }
                Ok(0) => return false,
                Ok(_) => {}
                Err(e) if e.0 == libc::EAGAIN => return true,
                Err(_) => return false,
            }
        }
    }
}
