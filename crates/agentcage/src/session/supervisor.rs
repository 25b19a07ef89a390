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

use std::collections::{BTreeMap, VecDeque};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use super::dir::{self, State};
use super::protocol::{self, ExitInfo, FrameReader, Next, Request, TtySize, VERSION};
use super::SessionError;
use crate::error::{Error, Step};
use crate::launch::zygote::{self, Reply};
use crate::launch::{Prepared, Role, SpawnOptions, TIMEOUT_GRACE};
use crate::policy::Layer;
use crate::sys::{self, Errno};

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
    // SAFETY: fork of this single-threaded process (checked above): the child may allocate.
    let child = match unsafe { sys::clone_fork(0) } {
        Ok(0) => {
            sys::close(ready_r);
            // SAFETY: as above; the intermediate child exits at once, so the supervisor is
            // not our child (no zombie in a long-lived caller) and has no controlling tty.
            match unsafe { sys::clone_fork(0) } {
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

/// An error and its causes on one line, as the CLI prints a library error (the caller
/// prints it: the supervisor has no terminal).
fn error_message(e: &Error) -> String {
    let mut msg = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        msg.push_str(": ");
        match s
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.raw_os_error())
        {
            Some(n) => msg.push_str(&Errno(n).to_string()),
            None => msg.push_str(&s.to_string()),
        }
        src = s.source();
    }
    msg
}

/// The supervisor process: detach, spawn the sandbox, say ready, serve. Returns its exit code.
fn supervise(
    prepared: Prepared,
    mut opts: StartOptions,
    dir: PathBuf,
    name: String,
    listener: UnixListener,
    ready_w: i32,
) -> i32 {
    let _ = sys::setsid();
    let _ = sys::prctl(
        libc::PR_SET_NAME,
        c"agentcage-sess".as_ptr() as libc::c_ulong,
        0,
        0,
        0,
    );
    if let Ok(null) = sys::open(c"/dev/null", libc::O_RDWR, 0) {
        for fd in 0..3 {
            let _ = sys::dup2(null, fd);
        }
        if null > 2 {
            sys::close(null);
        }
    }
    let mut keep = vec![0, 1, 2, listener.as_raw_fd(), ready_w];
    keep.extend(&opts.keep_fds);
    keep.extend(opts.owner.as_ref().map(AsRawFd::as_raw_fd));
    // The prepared plan's own fds (the idmapped workspace's user namespaces).
    keep.extend(prepared.held_fds());
    keep.sort_unstable();
    keep.dedup();
    sys::close_all_except(&keep);
    let fail = |message: String, hint: Option<&str>| {
        let v = json!({"ok": false, "message": message, "hint": hint});
        let _ = sys::write_all(ready_w, v.to_string().as_bytes());
        sys::close(ready_w);
        dir::remove_files(&dir, &name);
        125
    };
    let (zchan, zchild) = match sys::seqpacket_pair((zygote::MAX_REQUEST + 4096) as i32) {
        Ok(p) => p,
        Err(e) => {
            return fail(
                format!("create the session's channel to its sandbox: {e}"),
                None,
            )
        }
    };
    // Egress (issue #12): the launch outcome's extra fds would be received here, next to
    // the zygote's channel, and the egress engine would run in this loop.
    let denials = opts
        .events
        .is_some()
        .then(crate::events::session::ExecDenials::default);
    let sink = denials
        .as_ref()
        .map(|d| d.sink(opts.events.take().flatten()));
    let spawn_opts = SpawnOptions {
        egress: crate::egress::EgressHooks {
            log: opts.net_log.take(),
            on_deny: sink.clone().map(|s| {
                std::sync::Arc::new(move |e: &agentcage_egress::Event| {
                    s(&crate::events::from_egress(e));
                }) as crate::egress::SharedDenyHook
            }),
        },
        events: sink,
        ..SpawnOptions::default()
    };
    let spawned = prepared.spawn(&spawn_opts, Role::Zygote { chan: zchild });
    sys::close(zchild);
    let spawned = match spawned {
        Ok(s) => s,
        Err(e) => return fail(error_message(&e), e.hint()),
    };
    if let Some(r) = spawned.report {
        let e = prepared.describe_setup_error(r);
        drop(spawned);
        return fail(error_message(&e), e.hint());
    }
    let me = std::process::id() as i32;
    let created = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let state = State {
        name: name.clone(),
        pid: me,
        start_time: dir::proc_start_time(me).unwrap_or(0),
        sandbox_pid: spawned.pid(),
        profile: prepared.policy.profile.name().into(),
        workspace: prepared.policy.workspace.clone(),
        created,
        idle_timeout_s: opts.idle_timeout.map(|d| d.as_secs_f64()),
        socket: dir::socket_path(&dir, &name),
    };
    if let Err(e) = dir::write_state(&dir, &state) {
        drop(spawned);
        return fail(format!("write the session's state file: {e}"), None);
    }
    if let Some(owner) = opts.owner.take() {
        if let Err(e) = super::owner::watch(owner, dir::socket_path(&dir, &name)) {
            drop(spawned);
            return fail(
                format!("start the thread that watches the owner: {e}"),
                None,
            );
        }
    }
    let _ = listener.set_nonblocking(true);
    let _ = sys::write_all(
        ready_w,
        json!({"ok": true, "pid": me}).to_string().as_bytes(),
    );
    sys::close(ready_w);
    let base_env = prepared
        .envp
        .items()
        .iter()
        .filter_map(|c| {
            let b = c.to_bytes();
            let i = b.iter().position(|&x| x == b'=')?;
            Some((b[..i].to_vec(), b[i + 1..].to_vec()))
        })
        .collect();
    let pidfd = sys::pidfd_open(spawned.pid()).unwrap_or(-1);
    let t0 = Instant::now();
    let mut sup = Supervisor {
        name: name.clone(),
        prepared: &prepared,
        listener,
        zchan,
        pidfd,
        conns: Vec::new(),
        execs: Vec::new(),
        next_exec: 1,
        next_conn: 1,
        idle_timeout: opts.idle_timeout,
        last_activity: Instant::now(),
        base_env,
        stop_conn: None,
        reason: "stop",
        started: 0,
        timeouts: 0,
        denials,
    };
    sup.serve();
    let summary = Summary {
        name: name.clone(),
        reason: sup.reason,
        execs: sup.started,
        timeouts: sup.timeouts,
        wall_seconds: t0.elapsed().as_secs_f64(),
        peak_memory_bytes: spawned.cgroup().and_then(|c| c.peak_memory()),
        oom: spawned.cgroup().is_some_and(|c| c.oom_killed()),
        limits: spawned.limit_lines().to_vec(),
    };
    // Everything inside dies with the zygote (pid namespace); then the cgroup goes.
    drop(spawned);
    dir::remove_files(&dir, &name);
    if let Some(f) = opts.on_end.take() {
        f(&summary);
    }
    if let Some(c) = sup.stop_conn.take() {
        let _ = protocol::send_frame(c.as_raw_fd(), &protocol::encode(&json!({"ok": true})), &[]);
    }
    0
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

impl Supervisor<'_> {
    fn serve(&mut self) {
        let mut pfds: Vec<libc::pollfd> = Vec::with_capacity(16);
        let pollfd = |fd: i32| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        loop {
            if self.stop_conn.is_some() {
                return;
            }
            let now = Instant::now();
            self.timers(now);
            let mut wake: Option<Instant> = None;
            for x in &self.execs {
                for t in [x.deadline, x.kill_at].into_iter().flatten() {
                    wake = Some(wake.map_or(t, |w| w.min(t)));
                }
            }
            if let Some(idle) = self.idle_timeout {
                if self.conns.is_empty() && self.execs.iter().all(|x| x.status.is_some()) {
                    let at = self.last_activity + idle;
                    if now >= at {
                        self.reason = "idle";
                        return;
                    }
                    wake = Some(wake.map_or(at, |w| w.min(at)));
                }
            }
            pfds.clear();
            pfds.push(pollfd(self.listener.as_raw_fd()));
            pfds.push(pollfd(self.zchan));
            pfds.push(pollfd(self.pidfd));
            for c in &self.conns {
                pfds.push(pollfd(c.stream.as_raw_fd()));
            }
            let nconn = self.conns.len();
            let report_ids: Vec<u64> = self
                .execs
                .iter()
                .filter(|x| x.report.is_some())
                .map(|x| x.id)
                .collect();
            for x in self.execs.iter().filter(|x| x.report.is_some()) {
                pfds.push(pollfd(x.report.as_ref().map_or(-1, AsRawFd::as_raw_fd)));
            }
            let timeout = wake.map_or(-1, |w| {
                w.saturating_duration_since(Instant::now())
                    .as_micros()
                    .div_ceil(1000)
                    .min(i32::MAX as u128) as i32
            });
            match sys::poll(&mut pfds, timeout) {
                Ok(_) => {}
                Err(e) if e.0 == libc::EINTR => continue,
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
            if pfds[2].revents != 0 {
                // The zygote is gone (killed from outside, or the cgroup's OOM killer):
                // the session is over.
                self.reason = "sandbox-exited";
                self.fail_all("the session's sandbox exited");
                return;
            }
            if pfds[1].revents != 0 {
                self.zygote_replies();
            }
            for (i, id) in report_ids.iter().enumerate() {
                if pfds[3 + nconn + i].revents != 0 {
                    self.report(*id);
                }
            }
            let ready: Vec<u64> = (0..nconn)
                .filter(|&i| pfds[3 + i].revents != 0)
                .map(|i| self.conns[i].id)
                .collect();
            for id in ready {
                self.read_conn(id);
            }
            if pfds[0].revents != 0 {
                self.accept();
            }
        }
    }

    fn accept(&mut self) {
        while let Ok((stream, _)) = self.listener.accept() {
            // Same uid as ours, or root: anyone else is refused before a byte is read.
            let me = sys::geteuid();
            match sys::peer_cred(stream.as_raw_fd()) {
                Ok((_, uid, _)) if uid == me || uid == 0 => {}
                _ => {
                    let f = protocol::encode(&err_frame(
                        "denied",
                        "this session belongs to another user",
                    ));
                    let _ = protocol::send_frame(stream.as_raw_fd(), &f, &[]);
                    continue;
                }
            }
            let _ = stream.set_nonblocking(false);
            let _ = stream.set_write_timeout(Some(Duration::from_secs(5)));
            self.last_activity = Instant::now();
            self.conns.push(Conn {
                id: self.next_conn,
                stream,
                reader: FrameReader::default(),
                fds: VecDeque::new(),
            });
            self.next_conn += 1;
        }
    }

    fn send(&mut self, conn: u64, v: &Value, fds: &[i32]) {
        let Some(i) = self.conns.iter().position(|c| c.id == conn) else {
            return;
        };
        let f = protocol::encode(v);
        if protocol::send_frame(self.conns[i].stream.as_raw_fd(), &f, fds).is_err() {
            self.drop_conn(conn);
        }
    }

    fn drop_conn(&mut self, conn: u64) {
        self.conns.retain(|c| c.id != conn);
        for x in &mut self.execs {
            x.waiters.retain(|&w| w != conn);
            if x.owner == conn {
                x.owner = 0;
            }
        }
        // Finished execs nobody can wait for any more.
        let gone: Vec<u64> = self
            .execs
            .iter()
            .filter(|x| x.owner == 0 && x.status.is_some() && x.report.is_none())
            .map(|x| x.id)
            .collect();
        for id in gone {
            self.forget(id);
        }
        self.last_activity = Instant::now();
    }

    fn read_conn(&mut self, conn: u64) {
        let Some(i) = self.conns.iter().position(|c| c.id == conn) else {
            return;
        };
        let mut buf = [0u8; 65536];
        let mut got = [-1; sys::MAX_MSG_FDS];
        let mut nfds = 0;
        let fd = self.conns[i].stream.as_raw_fd();
        let r = sys::recv_with_fds(fd, &mut buf, &mut got, &mut nfds);
        for &f in &got[..nfds] {
            // SAFETY: a fresh fd the kernel just gave us; nothing else owns it.
            self.conns[i]
                .fds
                .push_back(unsafe { OwnedFd::from_raw_fd(f) });
        }
        match r {
            Ok(0) | Err(_) => {
                self.drop_conn(conn);
                return;
            }
            Ok(n) => self.conns[i].reader.push(&buf[..n]),
        }
        self.last_activity = Instant::now();
        loop {
            let Some(i) = self.conns.iter().position(|c| c.id == conn) else {
                return;
            };
            match self.conns[i].reader.next_frame() {
                Next::Incomplete => return,
                Next::TooLarge(n) => {
                    let v = err_frame(
                        "bad_frame",
                        format!(
                            "frame of {n} bytes is larger than {} bytes",
                            protocol::MAX_FRAME
                        ),
                    );
                    self.send(conn, &v, &[]);
                    self.drop_conn(conn);
                    return;
                }
                Next::Frame(f) => match serde_json::from_slice::<Request>(&f) {
                    Ok(req) => self.request(conn, req),
                    Err(e) => {
                        let v = err_frame("bad_frame", format!("not a request: {e}"));
                        self.send(conn, &v, &[]);
                    }
                },
            }
            if self.stop_conn.is_some() {
                return;
            }
        }
    }

    fn request(&mut self, conn: u64, req: Request) {
        match req {
            Request::Hello { version } => {
                let v = if version == VERSION {
                    json!({"ok": true, "version": VERSION, "name": self.name, "pid": std::process::id()})
                } else {
                    err_frame(
                        "version",
                        format!(
                            "protocol version {version} is not spoken here (version {VERSION})"
                        ),
                    )
                };
                self.send(conn, &v, &[]);
            }
            Request::Exec {
                argv,
                env,
                cwd,
                timeout_ms,
                tty,
                fds,
                wait,
            } => self.exec(conn, argv, env, cwd, timeout_ms, tty, fds, wait),
            Request::Signal { exec_id, sig } => {
                let v = match self.execs.iter().find(|x| x.id == exec_id) {
                    _ if !(1..=64).contains(&sig) => {
                        err_frame("bad_request", format!("no signal {sig}"))
                    }
                    Some(x) if x.pid > 0 && x.status.is_none() => {
                        let m = zygote::encode_kill(0, x.pid, sig);
                        let _ = sys::send_with_fds(self.zchan, &m, &[]);
                        json!({"ok": true})
                    }
                    Some(_) => err_frame("not_running", format!("exec {exec_id} is not running")),
                    None => err_frame("no_exec", format!("no exec {exec_id}")),
                };
                self.send(conn, &v, &[]);
            }
            Request::Resize {
                exec_id,
                rows,
                cols,
            } => {
                let v = match self.execs.iter().find(|x| x.id == exec_id) {
                    Some(Exec {
                        master: Some(m), ..
                    }) => match sys::set_winsize(m.as_raw_fd(), rows, cols) {
                        Ok(()) => json!({"ok": true}),
                        Err(e) => err_frame("resize", format!("TIOCSWINSZ: {e}")),
                    },
                    Some(_) => err_frame("no_tty", format!("exec {exec_id} has no pty")),
                    None => err_frame("no_exec", format!("no exec {exec_id}")),
                };
                self.send(conn, &v, &[]);
            }
            Request::Wait { exec_id } => match self.execs.iter_mut().find(|x| x.id == exec_id) {
                Some(x) if x.status.is_some() && x.report.is_none() => {
                    let info = x.exit_info(x.status.unwrap_or(0));
                    let owned = x.owner == conn || x.owner == 0;
                    let frame = self.exit_frame(&info);
                    if owned {
                        self.forget(exec_id);
                    }
                    self.send(conn, &frame, &[]);
                }
                Some(x) => x.waiters.push(conn),
                None => {
                    let v = err_frame("no_exec", format!("no exec {exec_id}"));
                    self.send(conn, &v, &[]);
                }
            },
            Request::Denials { exec_id } => {
                let v = self.denials_frame(exec_id);
                self.send(conn, &v, &[]);
            }
            Request::List => {
                let execs: Vec<Value> = self
                    .execs
                    .iter()
                    .map(|x| {
                        json!({"exec_id": x.id, "pid": x.pid, "argv0": x.argv0,
                               "running": x.status.is_none()})
                    })
                    .collect();
                let v = json!({"ok": true, "name": self.name, "pid": std::process::id(),
                               "profile": self.prepared.policy.profile.name(), "execs": execs});
                self.send(conn, &v, &[]);
            }
            Request::Stop => {
                if let Some(i) = self.conns.iter().position(|c| c.id == conn) {
                    let c = self.conns.swap_remove(i);
                    self.stop_conn = Some(c.stream);
                }
                self.reason = "stop";
                self.fail_all("the session was stopped");
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn exec(
        &mut self,
        conn: u64,
        argv: Vec<String>,
        env: BTreeMap<String, String>,
        cwd: Option<String>,
        timeout_ms: Option<u64>,
        tty: Option<TtySize>,
        fd_targets: Vec<u8>,
        wait: bool,
    ) {
        let Some(ci) = self.conns.iter().position(|c| c.id == conn) else {
            return;
        };
        // The fds of this frame, taken whatever happens next (never left for another).
        let n = fd_targets.len().min(3);
        let taken: Vec<OwnedFd> = (0..n)
            .filter_map(|_| self.conns[ci].fds.pop_front())
            .collect();
        let bad = |m: String| err_frame("bad_request", m);
        let mut mask = 0u8;
        let mut check = || -> Result<(), Value> {
            if argv.is_empty() || argv[0].is_empty() {
                return Err(bad("argv is empty".into()));
            }
            if fd_targets.len() != taken.len() {
                return Err(bad(format!(
                    "fds lists {} fds, {} came with the frame",
                    fd_targets.len(),
                    taken.len()
                )));
            }
            let mut prev: i32 = -1;
            for (&t, fd) in fd_targets.iter().zip(&taken) {
                if t > 2 || i32::from(t) <= prev {
                    return Err(bad(
                        "fds must list 0, 1 or 2, ascending, each at most once".into()
                    ));
                }
                prev = i32::from(t);
                mask |= 1 << t;
                match sys::fd_kind(fd.as_raw_fd()) {
                    Ok(sys::FdKind::Other) => {}
                    Ok(k) => {
                        return Err(err_frame(
                            "bad_fd",
                            format!(
                                "fd {t}: {} cannot be passed into the sandbox{}",
                                match k {
                                    sys::FdKind::Directory => "a directory",
                                    sys::FdKind::Path => "an O_PATH fd",
                                    _ => "a terminal",
                                },
                                if k == sys::FdKind::Terminal {
                                    " (ask for a tty: the exec gets a pty of its own)"
                                } else {
                                    ""
                                }
                            ),
                        ))
                    }
                    Err(e) => return Err(err_frame("bad_fd", format!("fd {t}: {e}"))),
                }
            }
            let nul = |s: &str| s.contains('\0');
            if argv.iter().any(|a| nul(a))
                || cwd.as_deref().is_some_and(nul)
                || env
                    .iter()
                    .any(|(k, v)| k.is_empty() || k.contains('=') || nul(k) || nul(v))
            {
                return Err(bad(
                    "argv, cwd and env must not contain NUL; env names are non-empty, without '='"
                        .into(),
                ));
            }
            Ok(())
        };
        if let Err(v) = check() {
            self.send(conn, &v, &[]);
            return;
        }
        // The environment: the session's, with the exec's variables set on top.
        let mut envp = self.base_env.clone();
        for (k, v) in &env {
            let (k, v) = (k.as_bytes().to_vec(), v.as_bytes().to_vec());
            match envp.iter_mut().find(|(ek, _)| *ek == k) {
                Some(e) => e.1 = v,
                None => envp.push((k, v)),
            }
        }
        let path = envp
            .iter()
            .find(|(k, _)| k == b"PATH")
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| crate::hygiene::DEFAULT_PATH.as_bytes().to_vec());
        let arg0 = argv[0].as_bytes();
        let candidates: Vec<Vec<u8>> = if arg0.contains(&b'/') {
            vec![arg0.to_vec()]
        } else {
            path.split(|&b| b == b':')
                .map(|d| {
                    let mut c = if d.is_empty() {
                        b".".to_vec()
                    } else {
                        d.to_vec()
                    };
                    c.push(b'/');
                    c.extend_from_slice(arg0);
                    c
                })
                .collect()
        };
        let envp: Vec<Vec<u8>> = envp
            .into_iter()
            .map(|(mut k, v)| {
                k.push(b'=');
                k.extend(v);
                k
            })
            .collect();
        let argv_b: Vec<Vec<u8>> = argv.iter().map(|a| a.as_bytes().to_vec()).collect();
        // Relative to the session's directory unless absolute.
        let base = self.prepared.cwd.to_string_lossy().into_owned();
        let cwd_s = match cwd {
            Some(c) if c.starts_with('/') => c,
            Some(c) => format!("{}/{c}", base.trim_end_matches('/')),
            None => base,
        };
        let id = self.next_exec;
        let msg = zygote::ExecRequest {
            id: id as u32,
            tty: tty.map(|t| (t.rows, t.cols)),
            fdmask: mask,
            cwd: cwd_s.as_bytes(),
            argv: &argv_b,
            envp: &envp,
            candidates: &candidates,
        }
        .encode();
        if msg.len() > zygote::MAX_REQUEST {
            let v = err_frame(
                "too_large",
                format!(
                    "argv and environment take {} bytes; a session exec takes at most {}",
                    msg.len(),
                    zygote::MAX_REQUEST
                ),
            );
            self.send(conn, &v, &[]);
            return;
        }
        let raw: Vec<i32> = taken.iter().map(AsRawFd::as_raw_fd).collect();
        if let Err(e) = sys::send_with_fds(self.zchan, &msg, &raw) {
            let v = json!({"ok": false, "error": {"kind": "setup", "exit_code": 125,
                "message": format!("send the exec to the session's sandbox: {e}")}});
            self.send(conn, &v, &[]);
            return;
        }
        drop(taken);
        self.next_exec += 1;
        self.started += 1;
        self.execs.push(Exec {
            id,
            owner: conn,
            argv0: argv[0].clone(),
            cwd: cwd_s,
            pid: 0,
            report: None,
            master: None,
            status: None,
            waiters: if wait { vec![conn] } else { Vec::new() },
            deadline: timeout_ms.map(|t| Instant::now() + Duration::from_millis(t)),
            kill_at: None,
            timed_out: false,
        });
    }

    /// Timeouts: SIGTERM to the exec's group at the deadline, SIGKILL [`TIMEOUT_GRACE`] later.
    fn timers(&mut self, now: Instant) {
        let mut kills = Vec::new();
        for x in &mut self.execs {
            if x.pid <= 0 || x.status.is_some() {
                continue;
            }
            if x.deadline.is_some_and(|d| now >= d) {
                x.deadline = None;
                x.timed_out = true;
                self.timeouts += 1;
                x.kill_at = Some(now + TIMEOUT_GRACE);
                kills.push((x.pid, libc::SIGTERM));
            }
            if x.kill_at.is_some_and(|k| now >= k) {
                x.kill_at = None;
                kills.push((x.pid, libc::SIGKILL));
            }
        }
        for (pid, sig) in kills {
            let _ = sys::send_with_fds(self.zchan, &zygote::encode_kill(0, pid, sig), &[]);
        }
    }

    fn zygote_replies(&mut self) {
        loop {
            let mut buf = [0u8; 64];
            let mut got = [-1; sys::MAX_MSG_FDS];
            let mut nfds = 0;
            // The channel is blocking: only read what poll said is there.
            let mut p = [libc::pollfd {
                fd: self.zchan,
                events: libc::POLLIN,
                revents: 0,
            }];
            if !matches!(sys::poll(&mut p, 0), Ok(1..)) || p[0].revents & libc::POLLIN == 0 {
                return;
            }
            let n = match sys::recv_with_fds(self.zchan, &mut buf, &mut got, &mut nfds) {
                Ok(n) if n > 0 => n,
                _ => return,
            };
            // SAFETY: fresh fds from the kernel, owned by nobody else.
            let mut fds: VecDeque<OwnedFd> = got[..nfds]
                .iter()
                .map(|&f| unsafe { OwnedFd::from_raw_fd(f) })
                .collect();
            match zygote::decode_reply(&buf[..n]) {
                Some(Reply::Started { id, pid }) => {
                    let mut ready = false;
                    if let Some(x) = self.execs.iter_mut().find(|x| x.id == u64::from(id)) {
                        x.pid = pid;
                        if let Some(d) = &self.denials {
                            d.register(pid, x.id);
                        }
                        x.report = fds.pop_front();
                        x.master = fds.pop_front();
                        // The zygote resumes once the exec's execve succeeded (or it failed):
                        // its report is usually there already, no need for another poll.
                        let fd = x.report.as_ref().map_or(-1, AsRawFd::as_raw_fd);
                        let mut p = [libc::pollfd {
                            fd,
                            events: libc::POLLIN,
                            revents: 0,
                        }];
                        ready = fd >= 0 && matches!(sys::poll(&mut p, 0), Ok(1..));
                    }
                    if ready {
                        self.report(u64::from(id));
                    }
                }
                Some(Reply::Failed { id, what, errno }) => {
                    let what = match what {
                        zygote::FAILED_PIPE => "create the exec's report pipe",
                        zygote::FAILED_PTY => "open the exec's pty (/dev/ptmx of the sandbox)",
                        zygote::FAILED_FORK => "fork the exec in the session",
                        _ => "decode the exec request in the session",
                    };
                    let hint = (errno.0 == libc::EAGAIN)
                        .then_some("the session's process limit (--pids) is reached");
                    self.exec_failed(
                        u64::from(id),
                        json!({"ok": false, "error": {"kind": "setup", "exit_code": 125,
                            "message": format!("{what}: {errno}"), "hint": hint}}),
                    );
                }
                Some(Reply::Exited { id, status, .. }) => self.exited(u64::from(id), status),
                None => {}
            }
        }
    }

    fn exec_failed(&mut self, id: u64, v: Value) {
        let Some(i) = self.execs.iter().position(|x| x.id == id) else {
            return;
        };
        let x = self.execs.swap_remove(i);
        if let Some(d) = &self.denials {
            d.forget(id);
        }
        self.send(x.owner, &v, &[]);
    }

    /// The exec's report pipe: EOF, it was executed (the started frame goes out); a record,
    /// its setup failed (an error frame with run's message and exit code).
    fn report(&mut self, id: u64) {
        let Some(i) = self.execs.iter().position(|x| x.id == id) else {
            return;
        };
        // Read once: a report already handled is never handled again.
        let Some(fd) = self.execs[i].report.take() else {
            return;
        };
        let r = crate::launch::read_report(fd.as_raw_fd());
        drop(fd);
        let x = &self.execs[i];
        match r {
            None => {
                let v = json!({"ok": true, "exec_id": id, "pid": x.pid, "tty": x.master.is_some()});
                let master: Vec<i32> = x.master.iter().map(AsRawFd::as_raw_fd).collect();
                let (owner, status, waiters) = (x.owner, x.status, x.waiters.clone());
                self.send(owner, &v, &master);
                if let Some(st) = status {
                    // It exited before its report was read: answer the waiters now.
                    self.finish(id, st, &waiters);
                }
            }
            Some(r) => {
                let (message, hint, code) = match r.step {
                    Step::Exec => {
                        let e = Error::Exec {
                            command: x.argv0.clone(),
                            errno: r.errno,
                        };
                        let code = if matches!(r.errno.0, libc::ENOENT | libc::ENOTDIR) {
                            127
                        } else {
                            126
                        };
                        (error_message(&e), e.hint().map(str::to_owned), code)
                    }
                    Step::Chdir => (
                        format!("chdir {}: {}", x.cwd, r.errno),
                        Some("--cwd must be a directory inside the sandbox".to_owned()),
                        125,
                    ),
                    _ => {
                        let e = self.prepared.describe_setup_error(r);
                        (error_message(&e), e.hint().map(str::to_owned), 125)
                    }
                };
                let v = json!({"ok": false, "error": {"kind": if code == 125 { "setup" } else { "exec" },
                    "exit_code": code, "message": message, "hint": hint}});
                self.exec_failed(id, v);
            }
        }
    }

    fn exited(&mut self, id: u64, status: i32) {
        let Some(x) = self.execs.iter_mut().find(|x| x.id == id) else {
            return;
        };
        x.status = Some(status);
        x.master = None;
        x.deadline = None;
        x.kill_at = None;
        self.last_activity = Instant::now();
        if x.timed_out {
            // What of its group ignored SIGTERM goes now.
            let _ = sys::send_with_fds(
                self.zchan,
                &zygote::encode_kill(0, x.pid, libc::SIGKILL),
                &[],
            );
        }
        if x.report.is_none() {
            let waiters = x.waiters.clone();
            self.finish(id, status, &waiters);
        }
    }

    /// Sends the exit frame to the waiters; forgets the exec once its owner has it.
    fn finish(&mut self, id: u64, status: i32, waiters: &[u64]) {
        let Some(x) = self.execs.iter().find(|x| x.id == id) else {
            return;
        };
        let info = x.exit_info(status);
        let owner = x.owner;
        let frame = self.exit_frame(&info);
        for &w in waiters {
            self.send(w, &frame, &[]);
        }
        if owner == 0 || waiters.contains(&owner) {
            self.forget(id);
        } else if let Some(x) = self.execs.iter_mut().find(|x| x.id == id) {
            x.waiters.clear();
        }
    }

    /// The exit frame, with the exec's denials when the session records them.
    fn exit_frame(&self, info: &ExitInfo) -> Value {
        let mut v = exit_frame(info);
        if let Some(d) = &self.denials {
            let (list, dropped) = d.of(info.exec_id);
            v["denials"] = serde_json::to_value(list).unwrap_or_default();
            v["denials_dropped"] = json!(dropped);
        }
        v
    }

    /// Forgets an exec (and its denials).
    fn forget(&mut self, id: u64) {
        self.execs.retain(|x| x.id != id);
        if let Some(d) = &self.denials {
            d.forget(id);
        }
    }

    /// `{"op":"denials"}`: an exec's denials, or the unattributed ones.
    fn denials_frame(&self, exec_id: Option<u64>) -> Value {
        let Some(d) = &self.denials else {
            return err_frame("bad_request", "the session was started without --events");
        };
        match exec_id {
            Some(id) if self.execs.iter().any(|x| x.id == id) => {
                let (list, dropped) = d.of(id);
                json!({"ok": true, "exec_id": id, "denials": list, "dropped": dropped})
            }
            Some(id) => err_frame("no_exec", format!("no exec {id}")),
            None => {
                let (list, dropped) = d.unattributed();
                json!({"ok": true, "exec_id": null, "denials": list, "dropped": dropped})
            }
        }
    }

    /// Every pending request gets an error frame (the session ends).
    fn fail_all(&mut self, why: &str) {
        let mut to: Vec<u64> = Vec::new();
        for x in &self.execs {
            if x.status.is_none() || x.report.is_some() {
                to.extend(&x.waiters);
                if x.report.is_some() || x.pid == 0 {
                    to.push(x.owner);
                }
            }
        }
        to.sort_unstable();
        to.dedup();
        let v = json!({"ok": false, "error": {"kind": "gone", "exit_code": 125, "message": why}});
        for c in to {
            self.send(c, &v, &[]);
        }
    }
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
