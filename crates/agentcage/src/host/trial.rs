//! The throwaway child: fork (raw `clone(SIGCHLD)`), run an async-signal-safe body, report
//! one fixed-size `(step, errno, detail)` record over a pipe, and always reap it (a deadline
//! kills a child that hangs).

use std::ffi::CStr;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::time::Instant;

use crate::sys;

/// What a failing child reports: the step that failed, its errno and a step-specific detail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Record {
    pub(super) step: u32,
    pub(super) errno: i32,
    pub(super) detail: u32,
}

impl Record {
    pub(super) const LEN: usize = 12;

    pub(super) fn to_bytes(self) -> [u8; Record::LEN] {
        let mut b = [0u8; Record::LEN];
        b[0..4].copy_from_slice(&self.step.to_ne_bytes());
        b[4..8].copy_from_slice(&self.errno.to_ne_bytes());
        b[8..12].copy_from_slice(&self.detail.to_ne_bytes());
        b
    }

    pub(super) fn from_bytes(b: &[u8; Record::LEN]) -> Record {
        let word = |i: usize| [b[i], b[i + 1], b[i + 2], b[i + 3]];
        Record {
            step: u32::from_ne_bytes(word(0)),
            errno: i32::from_ne_bytes(word(4)),
            detail: u32::from_ne_bytes(word(8)),
        }
    }
}

/// The write end of the report pipe, as seen by the child.
pub(super) struct Reporter(RawFd);

/// `Record::step` of the final record every child writes after its body returns; `detail`
/// carries the exit code. The outcome is read from the pipe, so it survives a caller that
/// ignores SIGCHLD (children auto-reaped, `waitpid` fails with ECHILD).
const DONE_STEP: u32 = u32::MAX;

impl Reporter {
    /// Writes the final record. Async-signal-safe.
    fn done(&self, code: i32) {
        let bytes = Record {
            step: DONE_STEP,
            errno: 0,
            detail: code as u32,
        }
        .to_bytes();
        let _ = sys::write_once(self.0, &bytes);
    }

    /// Writes one record and returns the exit code to use. Async-signal-safe.
    pub(super) fn fail(&self, step: u32, errno: i32, detail: u32) -> i32 {
        let bytes = Record {
            step,
            errno,
            detail,
        }
        .to_bytes();
        // The fd is the pipe's write end, kept open by this child. A short or failed write
        // only loses the detail, not the exit code.
        let _ = sys::write_once(self.0, &bytes);
        1
    }
}

/// A forked child we still have to reap.
pub(super) struct Child {
    pid: libc::pid_t,
    report: OwnedFd,
}

/// How a child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Ended {
    /// `_exit(code)`.
    Code(i32),
    /// Killed by this signal.
    Signal(i32),
    /// Did not finish before the deadline; it was killed and reaped.
    TimedOut,
    /// Ended without a final record and could not be reaped (SIGCHLD ignored by the
    /// embedding program): the outcome is unknown.
    Lost,
}

/// Forks a child that runs `body` and `_exit`s with its return value.
///
/// `body` runs after fork in a possibly multi-threaded process: it must be async-signal-safe
/// (raw syscalls on data prepared by the caller; no allocation, no locks, no panics).
pub(super) fn spawn_child(body: impl FnOnce(&Reporter) -> i32) -> Result<Child, i32> {
    let (read_end, write_end) = sys::pipe_owned().map_err(|e| e.0)?;
    let pid = sys::raw_fork().map_err(|e| e.0)?;
    if pid == 0 {
        let reporter = Reporter(write_end.as_raw_fd());
        // A panic must never unwind into the parent's copied stack frames.
        let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| body(&reporter)))
            .unwrap_or(127);
        reporter.done(code);
        // _exit: the parent's destructors and atexit handlers must not run twice.
        sys::exit(code)
    }
    drop(write_end);
    #[cfg(test)]
    super::tests::note_child(pid);
    Ok(Child {
        pid,
        report: read_end,
    })
}

/// Reads the child's record (if any) until EOF or `deadline`, then reaps it. Never leaves a
/// zombie: on timeout the child is killed first.
pub(super) fn finish_child(child: Child, deadline: Instant) -> (Ended, Option<Record>) {
    let mut buf = [0u8; Record::LEN];
    let mut got = 0usize;
    let mut timed_out = false;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            timed_out = true;
            break;
        }
        let ms = libc::c_int::try_from(left.as_millis().max(1)).unwrap_or(libc::c_int::MAX);
        match sys::poll_in(child.report.as_raw_fd(), ms) {
            Err(_) => break,
            Ok(false) => {
                timed_out = true;
                break;
            }
            Ok(true) => {}
        }
        let n = match sys::read_some(child.report.as_raw_fd(), &mut buf[got..]) {
            Err(_) => break,
            Ok(0) => break, // EOF: the child (and any grandchild) closed the pipe
            Ok(n) => n,
        };
        got += n;
        if got == Record::LEN {
            break;
        }
    }
    if timed_out {
        // `pid` is our unreaped child, so the pid cannot have been reused.
        let _ = sys::kill(child.pid, libc::SIGKILL);
    }
    let (reaped, status) = match sys::waitpid(child.pid, 0) {
        Ok((pid, status)) if pid == child.pid => (true, status),
        // ECHILD: auto-reaped because the program ignores SIGCHLD; rely on the pipe.
        _ => (false, 0),
    };
    let record = (got == Record::LEN).then(|| Record::from_bytes(&buf));
    if let Some(r) = record.filter(|r| r.step == DONE_STEP && !timed_out) {
        return (Ended::Code(r.detail as i32), None);
    }
    let ended = if timed_out {
        Ended::TimedOut
    } else if !reaped {
        Ended::Lost
    } else if libc::WIFSIGNALED(status) {
        Ended::Signal(libc::WTERMSIG(status))
    } else {
        Ended::Code(libc::WEXITSTATUS(status))
    };
    (ended, record)
}

pub(super) fn signal_name(sig: i32) -> String {
    match sig {
        libc::SIGSEGV => "SIGSEGV".into(),
        libc::SIGSYS => "SIGSYS (seccomp)".into(),
        libc::SIGKILL => "SIGKILL".into(),
        libc::SIGILL => "SIGILL".into(),
        libc::SIGBUS => "SIGBUS".into(),
        libc::SIGABRT => "SIGABRT".into(),
        other => format!("signal {other}"),
    }
}

/// Writes `data` to `path` (open, one write, close). Async-signal-safe.
pub(super) fn write_proc_file(path: &CStr, data: &[u8]) -> Result<(), i32> {
    let fd = sys::open(path, libc::O_WRONLY, 0).map_err(|e| e.0)?;
    let n = sys::write_once(fd, data);
    sys::close(fd);
    match n {
        Err(e) => Err(e.0),
        Ok(n) if n == data.len() => Ok(()),
        Ok(_) => Err(libc::EIO),
    }
}
