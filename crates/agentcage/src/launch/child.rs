//! The post-clone path: only `sys::` calls on `&Prepared`. Async-signal-safe only: no
//! allocation, no locks, no panics (STYLE.md section 4). A failing step writes a fixed-size
//! [`SetupError`] to the report pipe and exits 125.

use super::prepared::{Pipes, Prepared};
use super::pty::ChildStdio;
use crate::error::{SetupError, Step};
use crate::sys::{self, Errno};
use crate::{caps, hygiene, landlock, namespaces, rootfs, seccomp};

type R = Result<(), SetupError>;

fn fail(step: Step, index: u32) -> impl Fn(Errno) -> SetupError {
    move |e| SetupError::new(step, index, e)
}

fn report_and_exit(fd: i32, e: SetupError) -> ! {
    let _ = sys::write_all(fd, &e.to_bytes());
    sys::exit(125)
}

/// Entry of the clone child. Never returns.
///
/// Runs in the child after clone: async-signal-safe only.
pub(super) fn main(
    p: &Prepared,
    pipes: &Pipes,
    stdio: Option<ChildStdio>,
    title: Option<[usize; 4]>,
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
    if let Err(e) = setup_sandbox(p, pipes) {
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
                SetupError::new(Step::ControllingTty, hygiene::OPEN_PTY, e),
            ),
        },
        Some(ChildStdio::Pipes(fds)) => match hygiene::apply_stdio_pipes(&fds) {
            Ok(()) => None,
            Err(e) => report_and_exit(pipes.report_w, e),
        },
        None => None,
    };
    if p.init {
        init(p, pipes, pty)
    } else {
        sys::close(pipes.status_w);
        command(p, pipes.report_w, None, pty)
    }
}

/// Namespaces-level setup, done once by the sandbox's first process.
fn setup_sandbox(p: &Prepared, pipes: &Pipes) -> R {
    // Wait until the parent has written the id maps (and attached the cgroup).
    let mut b = [0u8; 1];
    match sys::read_full(pipes.sync_r, &mut b) {
        Ok(1) => {}
        Ok(_) => return Err(SetupError::new(Step::WaitParent, 0, Errno(libc::EPIPE))),
        Err(e) => return Err(SetupError::new(Step::WaitParent, 0, e)),
    }
    if let Some(ids) = &p.set_ids {
        namespaces::apply_ids(ids)?;
    }
    if let Some(c) = &p.user_caps {
        // While we hold CAP_SYS_RESOURCE in our user namespace and still see the host's
        // /proc (its /proc/sys/user shows the reader's namespace: ours).
        c.apply()
            .map_err(|(i, e)| SetupError::new(Step::UserLimits, i, e))?;
    }
    // The init is a fork of the launcher: its memory holds the caller's whole environment
    // and /proc/1/exe is the host's agentcage binary. Non-dumpable, /proc/1/{environ,mem,
    // exe,fd,...} and ptrace stay closed even to a root-in-namespace agent (ns-only): the
    // check then needs CAP_SYS_PTRACE in the init's mm's user namespace, the host's. Only
    // now: the launcher had to open our /proc/PID/uid_map, which non-dumpable forbids.
    // (execve makes the command dumpable again.)
    let _ = sys::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0);
    if p.clone_flags != 0 {
        // Die with the launcher, even when it is SIGKILLed. Set after the id switch, which
        // clears it. The launcher holds the sync pipe's write end until the sandbox exits:
        // if it is already gone (hang-up), it died before PDEATHSIG was armed.
        let _ = sys::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0,
            0,
            0,
        );
        if sys::hung_up(pipes.sync_r) {
            return Err(SetupError::new(Step::WaitParent, 1, Errno(libc::EPIPE)));
        }
    }
    if let Some(r) = &p.rootfs {
        rootfs::apply(r).map_err(|(s, i, e)| SetupError::new(s, i, e))?;
    }
    namespaces::apply_uts_net(p.hostname, p.loopback)?;
    if b[0] == b'2' {
        // The launcher attaches us to the run's cgroup while we composed the root (the
        // attach can take milliseconds: cgroup v1 waits for an RCU grace period); nothing
        // of the command runs before it is done.
        match sys::read_full(pipes.sync_r, &mut b) {
            Ok(1) => {}
            Ok(_) => return Err(SetupError::new(Step::WaitParent, 2, Errno(libc::EPIPE))),
            Err(e) => return Err(SetupError::new(Step::WaitParent, 2, e)),
        }
    }
    sys::close(pipes.sync_r);
    if p.cgroup_ns {
        // After the launcher attached us to the run's cgroup: that leaf becomes our root,
        // and the limits set on it stay out of view.
        sys::unshare(libc::CLONE_NEWCGROUP).map_err(fail(Step::CgroupNs, 0))?;
    }
    Ok(())
}

/// Status pipe messages from the init: a tag byte and a raw wait status.
pub(super) const STATUS_EXITED: u8 = b'X';
/// The command was stopped (job control).
pub(super) const STATUS_STOPPED: u8 = b'S';
/// Size of one status message.
pub(super) const STATUS_MSG: usize = 5;

fn status_msg(tag: u8, st: i32) -> [u8; STATUS_MSG] {
    let b = st.to_ne_bytes();
    [tag, b[0], b[1], b[2], b[3]]
}

const FORWARDED: [libc::c_int; 4] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT];

/// pid 1 of the sandbox: forks the command, forwards signals to it, reaps every zombie,
/// and exits with the command's status (passed raw on the status pipe). When it exits the
/// kernel kills everything left in the pid namespace.
fn init(p: &Prepared, pipes: &Pipes, pty: Option<(i32, u8)>) -> ! {
    let set = sys::sigset(&[
        libc::SIGCHLD,
        libc::SIGINT,
        libc::SIGTERM,
        libc::SIGHUP,
        libc::SIGQUIT,
        libc::SIGCONT,
    ]);
    let old_mask = match sys::sigprocmask(libc::SIG_BLOCK, &set) {
        Ok(m) => m,
        Err(e) => report_and_exit(pipes.report_w, SetupError::new(Step::InitSignals, 0, e)),
    };
    if p.hygiene {
        hygiene::init_session(pty.map(|(slave, _)| slave));
    }
    // SAFETY: fork-like clone of this single-threaded process; the child runs `command`,
    // which is async-signal-safe.
    let cmd = match unsafe { sys::clone_fork(0) } {
        Ok(0) => {
            sys::close(pipes.status_w);
            command(p, pipes.report_w, Some(&old_mask), pty)
        }
        Ok(pid) => pid,
        Err(e) => report_and_exit(pipes.report_w, SetupError::new(Step::ForkCommand, 0, e)),
    };
    // The init keeps only the status pipe: the report pipe must reach EOF when the command
    // execs, and inherited fds are the command's business, not ours.
    sys::close_from_except(3, pipes.status_w);
    // The status pipe is non-blocking (the launcher set it): a report that does not fit is
    // dropped, never waited for. Stops are coalesced: one report until the next SIGCONT.
    let mut stop_reported = false;
    loop {
        let sig = match sys::sigwait(&set) {
            Ok(s) => s,
            Err(_) => continue,
        };
        if sig == libc::SIGCONT {
            stop_reported = false;
            // The launcher was resumed after a stop (job control): resume the command's
            // process group, which the terminal stopped.
            let _ = sys::kill(-cmd, libc::SIGCONT);
            let _ = sys::kill(cmd, libc::SIGCONT);
            continue;
        }
        if sig != libc::SIGCHLD {
            if FORWARDED.contains(&sig) {
                let _ = sys::kill(cmd, sig);
            }
            continue;
        }
        // Reap everything that has exited: the command and orphans reparented to us.
        loop {
            match sys::waitpid(-1, libc::WNOHANG | libc::WUNTRACED) {
                Ok((0, _)) | Err(_) => break,
                Ok((pid, st)) if libc::WIFSTOPPED(st) => {
                    // A ptrace-stop: the process made us its tracer (PTRACE_TRACEME, possible
                    // without seccomp) and would wait for us forever. PTRACE_DETACH succeeds
                    // only for our tracee; it resumes with the signal it stopped for (not
                    // the SIGTRAP of an exec under ptrace, which would kill it).
                    let sig = libc::WSTOPSIG(st);
                    let pass = if sig == libc::SIGTRAP { 0 } else { sig };
                    if sys::ptrace_detach(pid, pass).is_ok() || pid != cmd {
                        continue;
                    }
                    // Ctrl-Z on the command's pty: tell the launcher, which stops itself so
                    // the caller's shell gets its terminal back; `fg` resumes us both.
                    if !stop_reported {
                        stop_reported = true;
                        let _ = sys::write_all(pipes.status_w, &status_msg(STATUS_STOPPED, st));
                    }
                }
                Ok((pid, st)) if pid == cmd => {
                    let _ = sys::write_all(pipes.status_w, &status_msg(STATUS_EXITED, st));
                    let code = if libc::WIFSIGNALED(st) {
                        128 + libc::WTERMSIG(st)
                    } else {
                        libc::WEXITSTATUS(st)
                    };
                    sys::exit(code);
                }
                Ok(_) => {}
            }
        }
    }
}

/// The command's own setup, in its final process, then execve. Order matters:
/// hygiene and limits first (they need nothing), then no_new_privs, Landlock (needs NNP or
/// CAP_SYS_ADMIN), capabilities (after Landlock, which needed them), and seccomp last, as
/// close to execve as possible, so the filter never has to allow setup syscalls.
fn command(
    p: &Prepared,
    report_w: i32,
    old_mask: Option<&libc::sigset_t>,
    pty: Option<(i32, u8)>,
) -> ! {
    if let Err(e) = command_setup(p, old_mask, pty) {
        report_and_exit(report_w, e);
    }
    let mut err = Errno(libc::ENOENT);
    let mut failed_at = 0u32;
    let mut seen_eacces = false;
    for (i, c) in p.candidates.iter().enumerate() {
        let e = sys::execve(c, p.argv.ptrs(), p.envp.ptrs());
        match e.0 {
            libc::ENOENT | libc::ENOTDIR => {}
            // EACCES from an untraversable PATH directory means "not here", not "not
            // executable": only a file that exists makes it a 126.
            libc::EACCES if sys::exists(c) => {
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
    report_and_exit(report_w, SetupError::new(Step::Exec, failed_at, err))
}

fn command_setup(p: &Prepared, old_mask: Option<&libc::sigset_t>, pty: Option<(i32, u8)>) -> R {
    if let Some(m) = old_mask {
        sys::sigprocmask(libc::SIG_SETMASK, m).map_err(fail(Step::InitSignals, 1))?;
    }
    // Rust's runtime ignores SIGPIPE; programs expect the default.
    sys::signal_default(libc::SIGPIPE);
    if p.hygiene {
        hygiene::apply(&p.keep_fds, old_mask.is_some(), pty)?;
    }
    crate::limits::rlimit::apply(&p.rlimits)
        .map_err(|(r, e)| SetupError::new(Step::Rlimits, r.raw() as u32, Errno(e)))?;
    sys::chdir(&p.cwd).map_err(fail(Step::Chdir, 0))?;
    if let Some(l) = &p.lock_mounts {
        namespaces::lock_mounts(l)?;
    }
    if p.nnp {
        sys::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0).map_err(fail(Step::NoNewPrivs, 0))?;
    }
    if let Some(l) = &p.landlock {
        landlock::apply(l).map_err(|(i, e)| SetupError::new(Step::Landlock, i, e))?;
    }
    // Without no_new_privs (an ablation run) seccomp needs CAP_SYS_ADMIN: install it while
    // the capabilities are still there.
    if !p.nnp {
        if let Some(s) = &p.seccomp {
            seccomp::apply(s).map_err(fail(Step::Seccomp, 0))?;
        }
    }
    if let Some(c) = &p.caps {
        caps::apply(c).map_err(|(i, e)| SetupError::new(Step::Caps, i, e))?;
    }
    // Last thing before execve.
    if p.nnp {
        if let Some(s) = &p.seccomp {
            seccomp::apply(s).map_err(fail(Step::Seccomp, 0))?;
        }
    }
    Ok(())
}
