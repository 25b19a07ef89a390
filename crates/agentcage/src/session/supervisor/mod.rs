//! The session's supervisor: a detached process (its own session, stdio on /dev/null, none
//! of the caller's fds) that owns the sandbox (`Prepared::spawn` with the zygote as pid 1),
//! the control socket and the state file, and serves the protocol in one poll loop.
//!
//! ```text
//! agentcage session start (caller)        prepare, runtime dir, bind NAME.sock, fork, fork
//!  └─ supervisor (setsid, detached)       spawn the sandbox; state file; "ready" to the caller;
//!      │                                  poll: listener, clients, zygote channel, pidfd, reports
//!      └─ zygote (pid 1 inside)           restricted once; forks each exec (launch/zygote.rs)
//!          └─ exec (own session/group)    fds, cwd, execve
//! ```
//!
//! The supervisor dies -> the zygote dies (PDEATHSIG) -> the pid namespace dies; the state
//! file it leaves names a dead pid and the next `session list` reaps it.
//!
//! The files, by phase: this one has the public entry points (`start`, `stop`) and the
//! supervisor's state; `detached.rs` the supervisor process (detach, spawn the sandbox, say
//! ready, serve, summary); `serve.rs` the poll loop and the connections; `requests.rs` the
//! request handlers; `exec.rs` the exec request (checks, environment, the zygote's request);
//! `running.rs` what follows an exec (timeouts, the zygote's replies, the report, the exit).

mod detached;
mod exec;
mod requests;
mod running;
mod serve;

use std::collections::VecDeque;
use std::os::fd::OwnedFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::dir;
use super::protocol::{ExitInfo, FrameReader};
use super::SessionError;
use crate::launch::Prepared;
use crate::policy::Layer;
use crate::sys::{self, Errno};
use detached::supervise;

/// Called in the supervisor with the session's summary when it ends.
pub type OnEnd = Box<dyn FnOnce(&Summary)>;

/// What `session start` asks for besides the policy.
#[derive(Default)]
pub struct StartOptions {
    /// The session's name (generated when `None`).
    pub name: Option<String>,
    /// End the session after this long without an exec running or a client connected.
    pub idle_timeout: Option<Duration>,
    /// Fds the supervisor keeps open (e.g. the directory of a `--json-report`); every other
    /// fd of the caller is closed in it.
    pub keep_fds: Vec<i32>,
    /// Called in the supervisor when the session ends (the per-session report).
    pub on_end: Option<OnEnd>,
    /// `--events`: record each exec's denials (exit frames, `denials` requests) and pass
    /// every event to this sink too, when given (docs/EVENTS.md).
    pub events: Option<Option<crate::events::EventSink>>,
    /// `--net-log` (its fd must be in `keep_fds`).
    pub net_log: Option<std::fs::File>,
    /// `--die-with-parent`: a pidfd of the session's owner ([`super::owner::parent`]); the
    /// session stops when that process exits.
    pub owner: Option<OwnedFd>,
}

/// A session that is ready to exec.
#[derive(Debug, Clone)]
pub struct Started {
    /// Its name.
    pub name: String,
    /// Its control socket.
    pub socket: PathBuf,
    /// The supervisor's pid.
    pub pid: i32,
}

/// How a session ended (for `--json-report`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Summary {
    /// The session's name.
    pub name: String,
    /// `stop`, `idle` or `sandbox-exited`.
    pub reason: &'static str,
    /// Execs started.
    pub execs: u64,
    /// Execs whose timeout expired.
    pub timeouts: u64,
    /// Seconds the session lived.
    pub wall_seconds: f64,
    /// The cgroup's peak memory, when one was enforced.
    pub peak_memory_bytes: Option<u64>,
    /// The memory limit's OOM killer killed a process of the session.
    pub oom: bool,
    /// How each requested limit was enforced (limit, mechanism).
    pub limits: Vec<(String, String)>,
}

/// Starts a session: binds its socket, forks the detached supervisor and returns once the
/// zygote is ready (or with the setup error the sandbox reported). Call it from a
/// single-threaded process (the supervisor is a fork that allocates).
///
/// # Errors
/// [`SessionError`]: the runtime directory, the name, the policy (sessions need the pid
/// namespace), or the sandbox's setup ([`SessionError::Setup`], run's messages).
pub fn start(prepared: Prepared, opts: StartOptions) -> Result<Started, SessionError> {
    if !prepared.policy.layers.has(Layer::PidNs) {
        return Err(SessionError::NeedsPidNs);
    }
    if threads() != Some(1) {
        return Err(SessionError::Io {
            what: "start a session (the caller must be single-threaded: the supervisor is a fork)"
                .into(),
            source: std::io::Error::from_raw_os_error(libc::EBUSY),
        });
    }
    let dir = dir::runtime_dir()?;
    let name = match &opts.name {
        Some(n) => n.clone(),
        None => dir::generate_name(),
    };
    dir::check_name(&name)?;
    // The socket must not be reachable from inside: not under the workspace or a bind.
    let real_dir = dir.canonicalize().unwrap_or_else(|_| dir.clone());
    let p = &prepared.policy;
    let roots = std::iter::once(&p.workspace).chain(p.binds.iter().map(|b| &b.path));
    for r in roots {
        let real = r.canonicalize().unwrap_or_else(|_| r.clone());
        if real_dir.starts_with(&real) {
            return Err(SessionError::VisibleInside {
                dir: real_dir,
                root: real,
            });
        }
    }
    let sock = dir::socket_path(&dir, &name);
    match dir::read_state(&dir, &name) {
        Some(st) if st.alive() => return Err(SessionError::Exists { name }),
        _ if UnixStream::connect(&sock).is_ok() => return Err(SessionError::Exists { name }),
        _ => dir::remove_files(&dir, &name),
    }
    let listener = UnixListener::bind(&sock).map_err(|source| SessionError::Io {
        what: format!("bind the control socket {}", sock.display()),
        source,
    })?;
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o600));
    }
    let (ready_r, ready_w) = sys::pipe().map_err(|e| io_err("create the ready pipe", e))?;
    // A fork of this single-threaded process (checked above, and again by the wrapper): the
    // child may allocate.
    let child = match sys::fork_single_threaded() {
        Ok(0) => {
            sys::close(ready_r);
            // The intermediate child exits at once, so the supervisor is not our child (no
            // zombie in a long-lived caller) and has no controlling tty.
            match sys::fork_single_threaded() {
                Ok(0) => {
                    let code = supervise(prepared, opts, dir, name, listener, ready_w);
                    sys::exit(code)
                }
                _ => sys::exit(0),
            }
        }
        Ok(pid) => pid,
        Err(e) => {
            sys::close(ready_r);
            sys::close(ready_w);
            dir::remove_files(&dir, &name);
            return Err(io_err("fork the session's supervisor", e));
        }
    };
    sys::close(ready_w);
    drop(listener);
    let _ = sys::waitpid(child, 0);
    let mut msg = Vec::new();
    let mut b = [0u8; 4096];
    while let Ok(n @ 1..) = sys::read_some(ready_r, &mut b) {
        msg.extend_from_slice(&b[..n]);
    }
    sys::close(ready_r);
    let v: Value = serde_json::from_slice(&msg).unwrap_or(Value::Null);
    if v["ok"] == json!(true) {
        return Ok(Started {
            name,
            socket: sock,
            pid: v["pid"].as_i64().unwrap_or(0) as i32,
        });
    }
    dir::remove_files(&dir, &name);
    Err(SessionError::Setup {
        message: v["message"]
            .as_str()
            .unwrap_or("the session's supervisor exited before the sandbox was ready")
            .into(),
        hint: v["hint"].as_str().map(str::to_owned),
    })
}

fn io_err(what: &str, e: Errno) -> SessionError {
    SessionError::Io {
        what: what.into(),
        source: std::io::Error::from_raw_os_error(e.0),
    }
}

fn threads() -> Option<usize> {
    std::fs::read_dir("/proc/self/task")
        .ok()
        .map(Iterator::count)
}

/// One client connection.
struct Conn {
    id: u64,
    stream: UnixStream,
    reader: FrameReader,
    /// Fds received and not yet taken by an exec frame.
    fds: VecDeque<OwnedFd>,
}

/// One exec.
struct Exec {
    id: u64,
    /// The connection that started it (0: gone).
    owner: u64,
    argv0: String,
    cwd: String,
    /// Host-visible pid inside the sandbox's pid namespace (0 until the zygote forked it).
    pid: i32,
    /// The report pipe until it said exec or error.
    report: Option<OwnedFd>,
    /// The pty master (kept for `resize`).
    master: Option<OwnedFd>,
    /// Raw wait status once it exited.
    status: Option<i32>,
    /// Connections waiting for the exit frame.
    waiters: Vec<u64>,
    deadline: Option<Instant>,
    kill_at: Option<Instant>,
    timed_out: bool,
}

impl Exec {
    fn exit_info(&self, status: i32) -> ExitInfo {
        let (exit_code, signal) = if libc::WIFSIGNALED(status) {
            (None, Some(libc::WTERMSIG(status)))
        } else {
            (Some(libc::WEXITSTATUS(status)), None)
        };
        ExitInfo {
            exec_id: self.id,
            exit_code,
            signal,
            timed_out: self.timed_out,
            status: if self.timed_out {
                124
            } else {
                signal.map_or(exit_code.unwrap_or(0), |s| 128 + s)
            },
        }
    }
}

struct Supervisor<'a> {
    name: String,
    prepared: &'a Prepared,
    listener: UnixListener,
    zchan: i32,
    pidfd: i32,
    conns: Vec<Conn>,
    execs: Vec<Exec>,
    next_exec: u64,
    next_conn: u64,
    idle_timeout: Option<Duration>,
    last_activity: Instant,
    base_env: Vec<(Vec<u8>, Vec<u8>)>,
    /// The connection that asked to stop: answered once everything is gone.
    stop_conn: Option<UnixStream>,
    reason: &'static str,
    /// `--events`: each exec's denials.
    denials: Option<crate::events::session::ExecDenials>,
    started: u64,
    timeouts: u64,
}

fn err_frame(kind: &str, message: impl Into<String>) -> Value {
    json!({"ok": false, "error": {"kind": kind, "message": message.into()}})
}

fn exit_frame(info: &ExitInfo) -> Value {
    let mut v = serde_json::to_value(info).unwrap_or(Value::Null);
    v["ok"] = json!(true);
    v["exit"] = json!(true);
    v
}

/// Stops session `name` in `dir`: asks its supervisor, or (dead or unreachable) kills what
/// the state file names and removes its files. Idempotent.
///
/// # Errors
/// [`SessionError::Gone`] when there is no such session.
pub fn stop(dir: &Path, name: &str) -> Result<(), SessionError> {
    dir::check_name(name)?;
    let st = dir::read_state(dir, name);
    let sock = dir::socket_path(dir, name);
    if let Ok(mut c) = super::client::Client::connect_path(&sock) {
        if c.stop().is_ok() {
            return Ok(());
        }
    }
    match st {
        Some(st) => {
            if st.alive() {
                // Unreachable but running: end it (the zygote follows by PDEATHSIG).
                let _ = sys::kill(st.pid, libc::SIGKILL);
                for _ in 0..200 {
                    if !st.alive() {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
            dir::remove_files(dir, name);
            let _ = crate::limits::cgroup::reap_stale();
            Ok(())
        }
        None => Err(SessionError::Gone { name: name.into() }),
    }
}
