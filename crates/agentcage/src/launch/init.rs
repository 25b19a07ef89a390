//! The sandbox's pid 1 (with a pid namespace): forks the command, forwards signals to it,
//! reaps every zombie (and detaches accidental tracees), reports the command's stops and exit
//! on the status pipe, and exits with its status. Pre-exec rules apply (STYLE.md section 4):
//! only `sys::` calls on data prepared before clone.

use super::prepared::{Pipes, Prepared};
use super::report::report_and_exit;
use super::{child, sync};
use crate::error::{SetupError, Step};
use crate::hygiene;
use crate::sys;

/// The command's stack between its clone and its execve (faulted in as used: a few pages).
const CMD_STACK: usize = 256 * 1024;

/// Reaps every child that has exited; true when none is left at all (ECHILD, `__WALL`: the
/// network-namespace helper too). Every process of our pid namespace descends from us
/// (orphans are reparented to us; nothing joins it from outside), so no child means no
/// process of the sandbox but us.
fn reap_all_exited() -> bool {
    loop {
        match sys::waitpid(-1, libc::WNOHANG | libc::__WALL) {
            Ok((0, _)) => return false, // a child still runs
            Ok(_) => {}                 // reaped a zombie: look again
            Err(e) => return e.0 == libc::ECHILD,
        }
    }
}

/// pid 1 of the sandbox: forks the command, forwards signals to it, reaps every zombie,
/// and exits with the command's status (passed raw on the status pipe). When it exits the
/// kernel kills everything left in the pid namespace.
pub(super) fn main(p: &Prepared, pipes: &Pipes, pty: Option<(i32, u8)>) -> ! {
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
    // The command is spawned vfork-like (CLONE_VM|CLONE_VFORK, as posix_spawn and the
    // session zygote do): a fork copied the page tables of our whole image (the launcher's)
    // only for execve to throw them away, and the child's writes took copy-on-write faults.
    // The child shares our memory until its execve: `command` is async-signal-safe and
    // writes only its own stack (below) and errno; every restriction it applies (ids,
    // rlimits, no_new_privs, Landlock, capabilities, seccomp) is per task or per process,
    // never per address space, and the mm's one flag it touches (dumpable, lock_mounts) it
    // restores. We resume once it exec'd or exited.
    let mut stack = match sys::map_stack(CMD_STACK) {
        Ok(s) => s,
        Err(e) => report_and_exit(pipes.report_w, SetupError::new(Step::ForkCommand, 1, e)),
    };
    let mut spawn = || {
        sys::close(pipes.status_w);
        child::command(p, pipes.report_w, Some(&old_mask), pty)
    };
    // SAFETY: `command` only makes `sys::` calls on data prepared before clone (no
    // allocation, no unwinding) and ends in execve or `_exit`.
    let cmd = match unsafe { sys::clone_vfork(stack.as_mut_slice(), &mut spawn) } {
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
            if super::FORWARDED.contains(&sig) {
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
                        let _ = sys::write_all(
                            pipes.status_w,
                            &sync::status_msg(sync::STATUS_STOPPED, st),
                        );
                    }
                }
                Ok((pid, st)) if pid == cmd => {
                    // With every process of the sandbox reaped, the launcher may finish (its
                    // own cleanup, the caller's next step) while our exit tears the
                    // namespaces down (issue 19: ~0.3 ms of unmounting, on the other core).
                    // Otherwise our exit kills what is left and the launcher waits for it.
                    let msg = if reap_all_exited() {
                        sync::done_msg(st, &sys::children_rusage())
                    } else {
                        sync::status_msg(sync::STATUS_EXITED, st)
                    };
                    let _ = sys::write_all(pipes.status_w, &msg);
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
