//! Runs one op in a forked child and turns what happened into an [`OpResult`].
//!
//! The child runs the op, writes one fixed-size record (kind, errno, detail) to a CLOEXEC
//! pipe and `_exit`s. The parent waits for the record with a deadline, kills the child if it
//! overruns, and reaps it. A child killed by a signal becomes BLOCKED with the signal's name
//! as errno (`SIGSYS` is a seccomp kill), so a kill or a hang costs one row, not the run.
//!
//! Forking is only sound here because the probe is single-threaded ([`ensure_single_thread`]):
//! the child allocates (op details are `String`s), which is safe when no other thread can
//! hold the allocator lock.

use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use crate::errno::{signal_name, Errno};
use crate::ops::{Ctx, Op, Outcome};
use crate::schema::{OpResult, Verdict};
use crate::sys::{self, Fork};

/// Size of the child's result record; below PIPE_BUF, so one write is atomic.
const RECORD: usize = 1024;
const HEADER: usize = 7;

/// Fails unless the calling process has exactly one thread.
///
/// # Errors
/// A message naming the thread count.
pub fn ensure_single_thread() -> Result<(), String> {
    match sys::thread_count() {
        Some(1) | None => Ok(()),
        Some(n) => Err(format!(
            "the probe forks a child per op and must run in a single-threaded process (this one has {n} threads)"
        )),
    }
}

fn encode(o: &Outcome) -> [u8; RECORD] {
    let (kind, errno, detail): (u8, i32, &str) = match o {
        Outcome::Allowed { errno, detail } => (0, errno.map_or(0, |e| e.0), detail),
        Outcome::Blocked { errno, detail } => (1, errno.0, detail),
        Outcome::Skipped(d) => (2, 0, d),
        Outcome::Info(d) => (3, 0, d),
    };
    let mut rec = [0u8; RECORD];
    rec[0] = kind;
    rec[1..5].copy_from_slice(&errno.to_ne_bytes());
    // Truncate on a char boundary so the parent always gets valid UTF-8.
    let mut n = detail.len().min(RECORD - HEADER);
    while !detail.is_char_boundary(n) {
        n -= 1;
    }
    rec[5..7].copy_from_slice(&(n as u16).to_ne_bytes());
    rec[HEADER..HEADER + n].copy_from_slice(&detail.as_bytes()[..n]);
    rec
}

fn decode(rec: &[u8; RECORD]) -> Option<Outcome> {
    let errno = i32::from_ne_bytes(rec[1..5].try_into().ok()?);
    let n = (u16::from_ne_bytes(rec[5..7].try_into().ok()?) as usize).min(RECORD - HEADER);
    let detail = String::from_utf8_lossy(&rec[HEADER..HEADER + n]).into_owned();
    Some(match rec[0] {
        0 => Outcome::Allowed {
            errno: (errno != 0).then_some(Errno(errno)),
            detail,
        },
        1 => Outcome::Blocked {
            errno: Errno(errno),
            detail,
        },
        2 => Outcome::Skipped(detail),
        3 => Outcome::Info(detail),
        _ => return None,
    })
}

fn row(op: &Op, result: Verdict, errno: Option<String>, detail: String) -> OpResult {
    OpResult {
        id: op.id.into(),
        title: op.title.into(),
        category: op.category,
        result,
        errno,
        detail,
    }
}

/// Converts an op outcome into a schema row.
pub fn to_row(op: &Op, o: Outcome) -> OpResult {
    match o {
        Outcome::Allowed { errno, detail } => {
            row(op, Verdict::Allowed, errno.map(Errno::name), detail)
        }
        Outcome::Blocked { errno, detail } => row(op, Verdict::Blocked, Some(errno.name()), detail),
        Outcome::Skipped(d) => row(op, Verdict::Skipped, None, d),
        Outcome::Info(d) => row(op, Verdict::Info, None, d),
    }
}

/// Runs `op` in a forked child with a time budget of `timeout_ms`.
pub fn run_op(op: &Op, ctx: &Ctx, timeout_ms: u32) -> OpResult {
    let probe_error =
        |what: String| row(op, Verdict::Skipped, None, format!("probe error: {what}"));
    let (r, w) = match sys::pipe() {
        Ok(p) => p,
        Err(e) => return probe_error(format!("pipe: {e}")),
    };
    let pid = match sys::fork() {
        Err(e) => return probe_error(format!("fork: {e}")),
        Ok(Fork::Child) => {
            drop(r);
            let out = std::panic::catch_unwind(|| (op.run)(ctx))
                .unwrap_or_else(|_| Outcome::skipped("probe error: the op panicked"));
            let _ = sys::write_all(w.as_fd(), &encode(&out));
            sys::exit_now(0);
        }
        Ok(Fork::Parent(pid)) => pid,
    };
    drop(w);

    let deadline = Instant::now() + Duration::from_millis(timeout_ms.into());
    let mut rec = [0u8; RECORD];
    let mut got = 0usize;
    let mut timed_out = false;
    while got < RECORD {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            timed_out = true;
            break;
        }
        match sys::poll_readable(r.as_fd(), left.as_millis().min(i32::MAX as u128) as i32) {
            Ok(true) => match sys::read(r.as_fd(), &mut rec[got..]) {
                Ok(0) => break, // EOF: the child is gone
                Ok(n) => got += n,
                Err(e) if e.0 == libc::EINTR => {}
                Err(_) => break,
            },
            Ok(false) => {
                timed_out = true;
                break;
            }
            Err(e) if e.0 == libc::EINTR => {}
            Err(_) => break,
        }
    }
    if timed_out {
        let _ = sys::kill(pid, libc::SIGKILL);
    }
    let status = reap(pid);

    if got == RECORD {
        if let Some(o) = decode(&rec) {
            return to_row(op, o);
        }
        return probe_error("malformed result record".into());
    }
    if timed_out {
        return row(
            op,
            Verdict::Blocked,
            Some("ETIMEDOUT".into()),
            format!("no answer within {timeout_ms} ms: the op hung and its child was killed"),
        );
    }
    match status {
        Some(s) if libc::WIFSIGNALED(s) => {
            let sig = libc::WTERMSIG(s);
            let why = if sig == libc::SIGSYS {
                " (a seccomp filter killed it)"
            } else {
                ""
            };
            row(
                op,
                Verdict::Blocked,
                Some(signal_name(sig)),
                format!("op child killed by {}{why}", signal_name(sig)),
            )
        }
        Some(s) if libc::WIFEXITED(s) => probe_error(format!(
            "op child exited {} without a result",
            libc::WEXITSTATUS(s)
        )),
        _ => probe_error("op child vanished without a result".into()),
    }
}

/// Waits for the child to end; a traced child (ptrace TRACEME ops) may report stops, which
/// are answered with SIGKILL. Bounded.
fn reap(pid: libc::pid_t) -> Option<libc::c_int> {
    for _ in 0..16 {
        match sys::waitpid(pid, 0) {
            Ok((_, s)) if libc::WIFEXITED(s) || libc::WIFSIGNALED(s) => return Some(s),
            Ok(_) => {
                let _ = sys::kill(pid, libc::SIGKILL);
            }
            Err(_) => return None,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_round_trip_and_truncation() {
        for o in [
            Outcome::Allowed {
                errno: Some(Errno(libc::EINVAL)),
                detail: "x".into(),
            },
            Outcome::Allowed {
                errno: None,
                detail: String::new(),
            },
            Outcome::Blocked {
                errno: Errno(libc::EPERM),
                detail: "é".repeat(2000),
            },
            Outcome::Skipped("why".into()),
            Outcome::Info("7".into()),
        ] {
            let back = decode(&encode(&o)).unwrap();
            match (&o, &back) {
                (Outcome::Blocked { detail: a, .. }, Outcome::Blocked { detail: b, .. }) => {
                    assert!(b.len() <= RECORD - HEADER && a.starts_with(b.as_str()));
                }
                _ => assert_eq!(o, back),
            }
        }
        let mut bad = [0u8; RECORD];
        bad[0] = 9;
        assert!(decode(&bad).is_none());
    }
}
