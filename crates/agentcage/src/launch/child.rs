//! The post-clone path: only `sys::` calls on `&Prepared`. Async-signal-safe only: no
//! allocation, no locks, no panics (STYLE.md section 4). A failing step writes a fixed-size
//! [`SetupError`] to the report pipe and exits 125.

use super::prepared::{Pipes, Prepared};
use super::pty::ChildStdio;
use super::report::report_and_exit;
use super::sync;
use super::Role;
use crate::error::{SetupError, Step};
use crate::sys::{self, Errno};
use crate::{caps, egress, hygiene, landlock, namespaces, rootfs, seccomp};

type R = Result<(), SetupError>;

/// How the child relates to the launcher's memory.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Memory {
    /// A fork: its own copy (the init, a zygote, a child the launcher still talks to).
    Copy,
    /// vfork-like (the launcher is suspended until our execve): writes to memory are the
    /// launcher's, and so is the mm's dumpable flag.
    Shared,
}

fn fail(step: Step, index: u32) -> impl Fn(Errno) -> SetupError {
    move |e| SetupError::new(step, index, e)
}

/// Entry of the clone child. Never returns.
///
/// Runs in the child after clone: async-signal-safe only.
pub(super) fn main(
    p: &Prepared,
    pipes: &Pipes,
    stdio: Option<ChildStdio>,
    title: Option<[usize; 4]>,
    role: Role,
    memory: Memory,
) -> ! {
    // This copy of the process is now in the pre-exec zone: a debug build's guard allocator
    // (see the CLI's main.rs) aborts on any allocation from here on.
    super::PRE_EXEC.store(true, std::sync::atomic::Ordering::Relaxed);
    // The init is a fork of the launcher: /proc/1/cmdline inside would show the launcher's
    // argv (`--env SECRET=...`) and its comm "agentcage". Overwrite our copy-on-write copy
    // of the argv and environment areas (the launcher keeps its own) and rename us.
    if let Some([arg_start, arg_end, env_start, env_end]) = title {
        // SAFETY: the areas come from our own /proc/self/stat, read just before clone; the
        // pre-exec path reads neither std::env::args nor the environment (execve gets the
        // prepared envp).
        unsafe {
            sys::overwrite_area(arg_start, arg_end, b"agentcage-init\0");
            sys::overwrite_area(env_start, env_end, b"");
        }
    }
    let _ = sys::prctl(
        libc::PR_SET_NAME,
        c"agentcage-init".as_ptr() as libc::c_ulong,
        0,
        0,
        0,
    );
    sys::close(pipes.sync_w);
    sys::close(pipes.report_r);
    sys::close(pipes.status_r);
    if pipes.net_parent >= 0 {
        sys::close(pipes.net_parent);
    }
    // ns-only/landlock: the command's nested user and network namespaces are built beside us
    // too (not for a session's zygote: each of its execs unshares its own).
    let nested_net = !matches!(role, Role::Zygote { .. })
        && p.lock_mounts
            .as_ref()
            .is_some_and(|l| l.unshare_flags & libc::CLONE_NEWNET != 0);
    if let Err(e) = setup_sandbox(p, pipes, nested_net, memory) {
        report_and_exit(pipes.report_w, e);
    }
    // The command's terminal: a pty of the sandbox's own devpts (its master goes to the
    // launcher's relay), so ttyname and `tty` work inside. With --no-pty, pipes replace the
    // caller's terminal fds here, before anything of the command runs.
    let pty = match stdio {
        Some(ChildStdio::Pty { sock, tty_fds }) => match super::pty::open_inside(sock) {
            Ok(slave) => Some((slave, tty_fds)),
            Err(e) => report_and_exit(
                pipes.report_w,
                SetupError::at(Step::ControllingTty, hygiene::OPEN_PTY, 0, e),
            ),
        },
        Some(ChildStdio::Pipes(fds)) => match hygiene::apply_stdio_pipes(&fds) {
            Ok(()) => None,
            Err(e) => report_and_exit(pipes.report_w, e),
        },
        None => None,
    };
    if let Role::Zygote { chan } = role {
        // A session: pid 1 restricts itself and forks each exec (see zygote.rs).
        super::zygote::main(p, pipes, chan)
    }
    if p.init {
        super::init::main(p, pipes, pty)
    } else {
        sys::close(pipes.status_w);
        command(p, pipes.report_w, None, pty)
    }
}

/// Namespaces-level setup, done once by the sandbox's first process: one line per step.
fn setup_sandbox(p: &Prepared, pipes: &Pipes, nested_net: bool, memory: Memory) -> R {
    // First: the network namespace is built beside us (~0.6 ms, on the other core) while we
    // wait and compose; it needs only our user namespace's CAP_SYS_ADMIN, held from birth.
    // If we fail before the join, the helper dies with us (its PDEATHSIG, our pid namespace).
    let mut net = if p.own_net {
        Some(namespaces::NetWorker::start()?)
    } else {
        None
    };
    let attach_follows = sync::wait_for_release(pipes.sync_r)?; // parent wrote the id maps
    if nested_net {
        // After the maps: a user namespace can only be created by a uid mapped in its parent.
        net = Some(namespaces::NetWorker::start_nested()?);
    }
    opt(p.set_ids.as_ref(), namespaces::apply_ids)?; // mapped inside ids, no groups, own keyring
    opt(p.user_caps.as_ref(), user_caps)?; // needs CAP_SYS_RESOURCE and the host's /proc
    if memory == Memory::Copy {
        // Shared memory: the mm (and its flag) is the launcher's, and we exec at once.
        hide_init(); // non-dumpable: /proc/1 stays closed (after the parent wrote our maps)
    }
    if p.clone_flags != 0 {
        die_with_launcher(pipes.sync_r)?; // after the id switch, which clears PDEATHSIG
    }
    opt(p.rootfs.as_ref(), rootfs::apply)?; // needs CAP_SYS_ADMIN in our userns
    namespaces::apply_hostname(p.hostname)?; // our UTS namespace
    opt(net, |w| w.join(p.init))?; // our own netns, lo up (nested: for the command)
    opt(p.egress.as_ref(), |e| egress::apply(e, pipes.net_child))?; // routes, listeners out
    if attach_follows {
        // The launcher attaches us to the run's cgroup while we composed the root (the
        // attach can take milliseconds: cgroup v1 waits for an RCU grace period); nothing
        // of the command runs before it is done.
        sync::wait_for_attach(pipes.sync_r)?;
    }
    sys::close(pipes.sync_r);
    if p.cgroup_ns {
        // After the launcher attached us to the run's cgroup: that leaf becomes our root,
        // and the limits set on it stay out of view.
        sys::unshare(libc::CLONE_NEWCGROUP).map_err(fail(Step::CgroupNs, 0))?;
    }
    Ok(())
}

/// Runs `f` on the prepared value of an enabled step; a disabled step is a no-op.
fn opt<T>(v: Option<T>, f: impl FnOnce(T) -> R) -> R {
    v.map_or(Ok(()), f)
}

fn user_caps(c: &crate::limits::rlimit::UserCaps) -> R {
    // While we hold CAP_SYS_RESOURCE in our user namespace and still see the host's /proc
    // (its /proc/sys/user shows the reader's namespace: ours).
    c.apply()
        .map_err(|(i, e)| SetupError::new(Step::UserLimits, i, e))
}

/// The init is a fork of the launcher: its memory holds the caller's whole environment and
/// /proc/1/exe is the host's agentcage binary. Non-dumpable, /proc/1/{environ,mem,exe,fd,...}
/// and ptrace stay closed even to a root-in-namespace agent (ns-only): the check then needs
/// CAP_SYS_PTRACE in the init's mm's user namespace, the host's. Only now: the launcher had
/// to open our /proc/PID/uid_map, which non-dumpable forbids. (execve makes the command
/// dumpable again.)
fn hide_init() {
    let _ = sys::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0);
}

/// Die with the launcher, even when it is SIGKILLed. Set after the id switch, which clears
/// it. The launcher holds the sync pipe's write end until the sandbox exits: if it is already
/// gone (hang-up), it died before PDEATHSIG was armed.
fn die_with_launcher(sync_r: i32) -> R {
    let _ = sys::prctl(
        libc::PR_SET_PDEATHSIG,
        libc::SIGKILL as libc::c_ulong,
        0,
        0,
        0,
    );
    sync::check_parent_alive(sync_r)
}

/// The command's own setup, in its final process, then execve. Order matters:
/// hygiene and limits first (they need nothing), then no_new_privs, Landlock (needs NNP or
/// CAP_SYS_ADMIN), capabilities (after Landlock, which needed them), and seccomp last, as
/// close to execve as possible, so the filter never has to allow setup syscalls.
pub(super) fn command(
    p: &Prepared,
    report_w: i32,
    old_mask: Option<&libc::sigset_t>,
    pty: Option<(i32, u8)>,
) -> ! {
    if let Err(e) = command_setup(p, old_mask, pty) {
        report_and_exit(report_w, e);
    }
    report_and_exit(
        report_w,
        execve_candidates(&p.candidates, p.argv.ptrs(), p.envp.ptrs()),
    )
}

/// execve over the PATH candidates of argv[0] (like execvp, in the sandbox's PATH); returns
/// the error to report when none could be executed.
///
/// Runs in the child after clone: async-signal-safe only.
pub(super) fn execve_candidates<C: AsRef<std::ffi::CStr>>(
    candidates: &[C],
    argv: &[*const libc::c_char],
    envp: &[*const libc::c_char],
) -> SetupError {
    let mut err = Errno(libc::ENOENT);
    let mut failed_at = 0u32;
    let mut seen_eacces = false;
    for (i, c) in candidates.iter().enumerate() {
        let e = sys::execve(c.as_ref(), argv, envp);
        match e.0 {
            libc::ENOENT | libc::ENOTDIR => {}
            // EACCES from an untraversable PATH directory means "not here", not "not
            // executable": only a file that exists makes it a 126.
            libc::EACCES if sys::exists(c.as_ref()) => {
                seen_eacces = true;
                failed_at = i as u32;
            }
            libc::EACCES => {}
            _ => {
                err = e;
                failed_at = i as u32;
                break;
            }
        }
    }
    if seen_eacces && (err.0 == libc::ENOENT) {
        err = Errno(libc::EACCES);
    }
    SetupError::new(Step::Exec, failed_at, err)
}

/// The command's setup, one line per step (the order is the reason: see [`command`]).
fn command_setup(p: &Prepared, old_mask: Option<&libc::sigset_t>, pty: Option<(i32, u8)>) -> R {
    opt(old_mask, unblock_signals)?; // the init blocked them for sigwait
    sys::signal_default(libc::SIGPIPE); // Rust's runtime ignores SIGPIPE; programs expect it
    if p.hygiene {
        hygiene::apply(&p.keep_fds, old_mask.is_some(), pty)?; // session, terminal, fds
    }
    rlimits(p)?; // needs nothing; before anything of the command runs
    sys::chdir(&p.cwd).map_err(fail(Step::Chdir, 0))?; // inside the composed root
    opt(p.lock_mounts.as_ref(), namespaces::lock_mounts)?; // keeps caps: lock the mounts
    if p.nnp {
        sys::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0).map_err(fail(Step::NoNewPrivs, 0))?;
    }
    opt(p.landlock.as_ref(), landlock::apply)?; // needs no_new_privs or CAP_SYS_ADMIN
    if !p.nnp {
        // Without no_new_privs (an ablation run) seccomp needs CAP_SYS_ADMIN: install it
        // while the capabilities are still there.
        opt(p.seccomp.as_ref(), seccomp::apply)?;
    }
    opt(p.nested.as_ref(), super::nested::apply)?; // nested rung: unprivileged uid, caps kept
    opt(p.caps.as_ref(), caps::apply)?; // after Landlock and mounts, which needed them
    if p.nnp {
        opt(p.seccomp.as_ref(), seccomp::apply)?; // last thing before execve
    }
    Ok(())
}

fn unblock_signals(m: &libc::sigset_t) -> R {
    sys::sigprocmask(libc::SIG_SETMASK, m)
        .map(drop)
        .map_err(fail(Step::InitSignals, 1))
}

fn rlimits(p: &Prepared) -> R {
    crate::limits::rlimit::apply(&p.rlimits)
        .map_err(|(r, e)| SetupError::new(Step::Rlimits, r.raw() as u32, Errno(e)))
}
