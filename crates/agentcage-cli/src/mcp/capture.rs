//! One exec in the MCP server's session with its output captured: stdin, stdout and stderr
//! are pipes of ours passed by SCM_RIGHTS (the protocol of docs/SESSIONS.md), read by one
//! thread each into bounded buffers. Blocking: the server runs it on tokio's blocking pool.

use std::collections::{BTreeMap, VecDeque};
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agentcage::session::{Client, ExitInfo, Request, SessionError};
use serde_json::Value;

/// How long to wait, after the exec's exit, for its output pipes to reach EOF. A background
/// process it started may keep them open forever: then the result says so
/// (`output_open`) and carries what was read by then.
const DRAIN_AFTER_EXIT: Duration = Duration::from_millis(500);

/// What to run.
#[derive(Debug, Clone, Default)]
pub struct ExecRequest {
    /// argv (`argv[0]` without a slash is looked up in the session's PATH inside).
    pub argv: Vec<String>,
    /// Variables set on top of the session's environment.
    pub env: BTreeMap<String, String>,
    /// Working directory inside (absolute, or relative to the session's).
    pub cwd: Option<String>,
    /// Kill the exec's process group after this long (exit 124, `timed_out`).
    pub timeout: Option<Duration>,
    /// Bytes for its stdin (closed after them); `None`: /dev/null.
    pub stdin: Option<Vec<u8>>,
    /// Bytes kept of each of stdout and stderr: the first and last halves (see [`Stream`]).
    pub keep: Keep,
    /// The tool call's cancellation: once cancelled, the exec is killed.
    pub cancel: Option<Arc<Cancel>>,
}

/// A tool call's cancellation (MCP `notifications/cancelled`): whichever of the exec's start
/// and the cancellation comes second kills the exec's process group ([`kill`]).
#[derive(Debug, Default)]
pub struct Cancel {
    /// The exec's id once it started; whether the call was cancelled.
    state: Mutex<(Option<u64>, bool)>,
    /// The exec's exit frame came.
    exited: AtomicBool,
}

impl Cancel {
    /// Marks the call cancelled; the exec's id when it runs already (kill it).
    pub fn cancel(&self) -> Option<u64> {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.1 = true;
        s.0
    }

    /// The exec started as `id`; true when the call was cancelled already (kill it).
    fn started(&self, id: u64) -> bool {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.0 = Some(id);
        s.1
    }
}

/// How long a cancelled exec gets between SIGTERM and SIGKILL (as for a timeout, shorter:
/// the caller has given up on the result).
const CANCEL_GRACE: Duration = Duration::from_secs(1);

/// Kills a cancelled exec: SIGTERM to its process group, SIGKILL [`CANCEL_GRACE`] later
/// unless its exit came. Blocking (run it on a thread).
pub fn kill(session: &str, exec_id: u64, cancel: &Cancel) {
    let Ok(mut c) = Client::connect(session) else {
        return; // the session is gone, and the exec with it
    };
    let signal = |c: &mut Client, sig| {
        // `not_running`: it has just ended.
        let _ = c.call(&Request::Signal { exec_id, sig });
    };
    signal(&mut c, libc::SIGTERM);
    let t = Instant::now();
    while !cancel.exited.load(Ordering::SeqCst) && t.elapsed() < CANCEL_GRACE {
        std::thread::sleep(Duration::from_millis(10));
    }
    if !cancel.exited.load(Ordering::SeqCst) {
        signal(&mut c, libc::SIGKILL);
    }
}

/// Which bytes of an output stream are kept.
#[derive(Debug, Clone, Copy)]
pub struct Keep {
    /// The first `head` bytes.
    pub head: usize,
    /// And the last `tail` bytes.
    pub tail: usize,
}

impl Default for Keep {
    fn default() -> Keep {
        Keep {
            head: 32 * 1024,
            tail: 32 * 1024,
        }
    }
}

/// An output stream, bounded: the first `head` and last `tail` bytes, and the total.
#[derive(Debug, Default)]
pub struct Stream {
    head: Vec<u8>,
    tail: VecDeque<u8>,
    total: u64,
    keep_head: usize,
    keep_tail: usize,
}

impl Stream {
    pub fn new(keep: Keep) -> Stream {
        Stream {
            keep_head: keep.head,
            keep_tail: keep.tail,
            ..Stream::default()
        }
    }

    pub fn push(&mut self, mut b: &[u8]) {
        self.total += b.len() as u64;
        let room = self.keep_head.saturating_sub(self.head.len());
        let n = room.min(b.len());
        self.head.extend_from_slice(&b[..n]);
        b = &b[n..];
        if self.keep_tail == 0 || b.is_empty() {
            return;
        }
        if b.len() >= self.keep_tail {
            self.tail.clear();
            self.tail.extend(&b[b.len() - self.keep_tail..]);
        } else {
            let over = (self.tail.len() + b.len()).saturating_sub(self.keep_tail);
            self.tail.drain(..over);
            self.tail.extend(b);
        }
    }

    /// Every byte written to the stream.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Whether bytes were dropped.
    pub fn truncated(&self) -> bool {
        self.total > (self.head.len() + self.tail.len()) as u64
    }

    /// The kept bytes; when some were dropped, a marker line stands where they were.
    pub fn bytes(&self) -> Vec<u8> {
        let mut out = self.head.clone();
        if self.truncated() {
            let dropped = self.total - (self.head.len() + self.tail.len()) as u64;
            out.extend_from_slice(
                format!(
                    "\n[agentcage: output truncated: {dropped} of {} bytes omitted here]\n",
                    self.total
                )
                .as_bytes(),
            );
        }
        out.extend(self.tail.iter());
        out
    }

    /// The kept bytes without any marker (for file contents).
    pub fn raw(&self) -> Vec<u8> {
        let mut out = self.head.clone();
        out.extend(self.tail.iter());
        out
    }
}

/// A finished exec.
#[derive(Debug)]
pub struct Captured {
    /// The exit frame.
    pub exit: ExitInfo,
    /// Its stdout.
    pub stdout: Stream,
    /// Its stderr.
    pub stderr: Stream,
    /// An output pipe was still open [`DRAIN_AFTER_EXIT`] after the exit (a background
    /// process holds it): later output is not in the result.
    pub output_open: bool,
    /// From the request to the exit frame.
    pub wall: Duration,
    /// The exec's denials when the session reports them (`session start --events`):
    /// the exit frame's list (attributed by session id), then the session's unattributed
    /// denials (egress events carry no pid) whose time falls in the exec's window, each
    /// marked `"attributed_by":"time"`. `None` when the session reports no denials.
    pub denials: Option<Vec<Value>>,
    /// Denials beyond the exit frame's limit (its `denials_dropped`).
    pub denials_dropped: u64,
}

/// Runs `req` in session `name` and waits for its end.
///
/// # Errors
/// [`SessionError::Refused`] with the supervisor's error frame (bad cwd, command not found
/// (`exit_code` 127), not executable (126), setup (125)); [`SessionError::Gone`] /
/// `Protocol` when the session is not there or ends.
pub fn exec(name: &str, req: &ExecRequest) -> Result<Captured, SessionError> {
    let io = |what: &str, e: std::io::Error| SessionError::Protocol(format!("{what}: {e}"));
    let mut client = Client::connect(name)?;
    let (out_r, out_w) = std::io::pipe().map_err(|e| io("create the stdout pipe", e))?;
    let (err_r, err_w) = std::io::pipe().map_err(|e| io("create the stderr pipe", e))?;
    let stdin = match &req.stdin {
        Some(_) => Some(std::io::pipe().map_err(|e| io("create the stdin pipe", e))?),
        None => None,
    };
    let mut fds = Vec::new();
    let mut which = Vec::new();
    if let Some((r, _)) = &stdin {
        which.push(0u8);
        fds.push(r.as_raw_fd());
    }
    which.extend([1u8, 2]);
    fds.extend([out_w.as_raw_fd(), err_w.as_raw_fd()]);
    let start = Instant::now();
    let window_start = agentcage_egress::rfc3339_now();
    client.send(
        &Request::Exec {
            argv: req.argv.clone(),
            env: req.env.clone(),
            cwd: req.cwd.clone(),
            timeout_ms: req.timeout.map(|d| d.as_millis().max(1) as u64),
            tty: None,
            fds: which,
            wait: true,
        },
        &fds,
    )?;
    // The supervisor holds its own copies now: ours would keep the pipes from EOF.
    drop((out_w, err_w));
    let stdin_w = stdin.map(|(r, w)| {
        drop(r);
        w
    });
    let stdout = Arc::new(Mutex::new(Stream::new(req.keep)));
    let stderr = Arc::new(Mutex::new(Stream::new(req.keep)));
    let (done_tx, done_rx) = mpsc::channel::<()>();
    for (mut r, s) in [(out_r, stdout.clone()), (err_r, stderr.clone())] {
        let done = done_tx.clone();
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                match r.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => s.lock().unwrap_or_else(|p| p.into_inner()).push(&buf[..n]),
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
            let _ = done.send(());
        });
    }
    drop(done_tx);
    let (started, _) = client.recv()?;
    check_ok(&started)?;
    if let (Some(c), Some(id)) = (&req.cancel, started["exec_id"].as_u64()) {
        if c.started(id) {
            let (c, session) = (c.clone(), name.to_string());
            std::thread::spawn(move || kill(&session, id, &c));
        }
    }
    if let (Some(mut w), Some(data)) = (stdin_w, req.stdin.clone()) {
        // EPIPE (the command does not read it all) is not an error of the exec; SIGPIPE is
        // ignored in this process (Rust's default), so it comes back as an error here.
        std::thread::spawn(move || {
            let _ = w.write_all(&data);
        });
    }
    let denials_dropped;
    let exit = loop {
        let (v, _) = client.recv()?;
        check_ok(&v)?;
        if v["exit"] == Value::Bool(true) {
            if let Some(c) = &req.cancel {
                c.exited.store(true, Ordering::SeqCst);
            }
            let denials = v.get("denials").and_then(Value::as_array).cloned();
            denials_dropped = v["denials_dropped"].as_u64().unwrap_or(0);
            let info = serde_json::from_value::<ExitInfo>(v)
                .map_err(|e| SessionError::Protocol(format!("an exit frame: {e}")))?;
            break (info, denials);
        }
    };
    let (exit, mut denials) = exit;
    let wall = start.elapsed();
    let window_end = agentcage_egress::rfc3339_now();
    let dropped = denials_dropped;
    if let Some(d) = &mut denials {
        d.extend(unattributed_in(&mut client, &window_start, &window_end)?);
    }
    let deadline = Instant::now() + DRAIN_AFTER_EXIT;
    let mut ended = 0;
    while ended < 2 {
        let left = deadline.saturating_duration_since(Instant::now());
        match done_rx.recv_timeout(left) {
            Ok(()) => ended += 1,
            Err(_) => break,
        }
    }
    let take =
        |s: &Arc<Mutex<Stream>>| std::mem::take(&mut *s.lock().unwrap_or_else(|p| p.into_inner()));
    Ok(Captured {
        exit,
        stdout: take(&stdout),
        stderr: take(&stderr),
        output_open: ended < 2,
        wall,
        denials,
        denials_dropped: dropped,
    })
}

/// The session's denials that no exec could be found for (egress events carry no pid) with
/// a time in `[from, to]`, marked `"attributed_by":"time"`: an exec running at the same
/// time may have caused them instead (docs/AGENT-API.md). Times are the events' fixed
/// `YYYY-MM-DDTHH:MM:SS.mmmZ` form, so they compare as strings.
fn unattributed_in(client: &mut Client, from: &str, to: &str) -> Result<Vec<Value>, SessionError> {
    client.send(&Request::Denials { exec_id: None }, &[])?;
    let (v, _) = client.recv()?;
    check_ok(&v)?;
    let all = v["denials"].as_array().cloned().unwrap_or_default();
    Ok(all
        .into_iter()
        .filter(|e| e["time"].as_str().is_some_and(|t| t >= from && t <= to))
        .map(|mut e| {
            e["attributed_by"] = "time".into();
            e
        })
        .collect())
}

/// An error frame as [`SessionError::Refused`].
fn check_ok(v: &Value) -> Result<(), SessionError> {
    if v["ok"] == Value::Bool(true) {
        return Ok(());
    }
    let e = &v["error"];
    Err(SessionError::Refused {
        kind: e["kind"].as_str().unwrap_or("error").into(),
        message: e["message"].as_str().unwrap_or("(no message)").into(),
        hint: e["hint"].as_str().map(str::to_owned),
        exit_code: e["exit_code"].as_i64().map(|c| c as i32),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_keeps_head_and_tail_with_a_marker() {
        let mut s = Stream::new(Keep { head: 4, tail: 3 });
        s.push(b"ab");
        s.push(b"cdefgh");
        s.push(b"ij");
        assert_eq!(s.total(), 10);
        assert!(s.truncated());
        assert_eq!(s.raw(), b"abcdhij");
        let text = String::from_utf8(s.bytes()).unwrap();
        assert!(text.starts_with("abcd\n[agentcage: output truncated: 3 of 10 bytes"));
        assert!(text.ends_with("]\nhij"));
        let mut small = Stream::new(Keep { head: 4, tail: 3 });
        small.push(b"abcdefg");
        assert!(!small.truncated());
        assert_eq!(small.bytes(), b"abcdefg");
        let mut head_only = Stream::new(Keep { head: 2, tail: 0 });
        head_only.push(b"xyz");
        assert_eq!(head_only.raw(), b"xy");
        assert!(head_only.truncated());
    }
}
