//! The client side of the control socket: what `agentcage exec`, `session list/stop` and the
//! bench use (an SDK can speak the protocol itself, see docs/SESSIONS.md).

use std::collections::BTreeMap;
use std::os::fd::{AsRawFd, IntoRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::protocol::{self, ExitInfo, FrameReader, Next, Request, TtySize};
use super::{dir, SessionError};
use crate::launch::Relay;
use crate::sys;

/// A connection to a session's supervisor.
pub struct Client {
    stream: UnixStream,
    reader: FrameReader,
    fds: Vec<OwnedFd>,
}

impl Client {
    /// Connects to session `name` in the caller's runtime directory.
    ///
    /// # Errors
    /// [`SessionError::Gone`] when there is no such session (or it does not answer).
    pub fn connect(name: &str) -> Result<Client, SessionError> {
        dir::check_name(name)?;
        let d = dir::runtime_dir()?;
        Client::connect_path(&dir::socket_path(&d, name))
            .map_err(|_| SessionError::Gone { name: name.into() })
    }

    /// Connects to a control socket by path.
    ///
    /// # Errors
    /// The io error of connect(2).
    pub fn connect_path(path: &Path) -> std::io::Result<Client> {
        Ok(Client {
            stream: UnixStream::connect(path)?,
            reader: FrameReader::default(),
            fds: Vec::new(),
        })
    }

    /// The socket's fd (to poll it).
    pub fn fd(&self) -> i32 {
        self.stream.as_raw_fd()
    }

    /// Sends a request, `fds` with its first byte.
    ///
    /// # Errors
    /// [`SessionError::Protocol`] when the socket fails.
    pub fn send(&mut self, req: &Request, fds: &[i32]) -> Result<(), SessionError> {
        protocol::send_frame(self.fd(), &protocol::encode(req), fds)
            .map_err(|e| SessionError::Protocol(format!("send a request: {e}")))
    }

    /// The next frame (blocking) and the fds that came with it.
    ///
    /// # Errors
    /// [`SessionError::Protocol`] when the supervisor closed the connection or sent garbage.
    pub fn recv(&mut self) -> Result<(Value, Vec<OwnedFd>), SessionError> {
        loop {
            match self.reader.next_frame() {
                Next::Frame(f) => {
                    let v = serde_json::from_slice(&f).map_err(|e| {
                        SessionError::Protocol(format!("a frame that is not JSON: {e}"))
                    })?;
                    return Ok((v, std::mem::take(&mut self.fds)));
                }
                Next::TooLarge(n) => {
                    return Err(SessionError::Protocol(format!("a frame of {n} bytes")))
                }
                Next::Incomplete => {}
            }
            let mut buf = [0u8; 4096];
            let fd = self.fd();
            let n = sys::recv_with_owned_fds(fd, &mut buf, &mut self.fds)
                .map_err(|e| SessionError::Protocol(format!("read a reply: {e}")))?;
            if n == 0 {
                return Err(SessionError::Protocol(
                    "the session closed the connection (it was stopped or its sandbox exited)"
                        .into(),
                ));
            }
            self.reader.push(&buf[..n]);
        }
    }

    /// A request and its reply; an error frame becomes [`SessionError::Refused`].
    ///
    /// # Errors
    /// As [`Client::recv`], and the server's error frames.
    pub fn call(&mut self, req: &Request) -> Result<Value, SessionError> {
        self.send(req, &[])?;
        let (v, _) = self.recv()?;
        check_ok(v)
    }

    /// Stops the session; returns once everything of it is gone.
    ///
    /// # Errors
    /// As [`Client::call`].
    pub fn stop(&mut self) -> Result<(), SessionError> {
        self.send(&Request::Stop, &[])?;
        match self.recv() {
            Ok((v, _)) if v["ok"] == Value::Bool(true) => Ok(()),
            // The supervisor answers only after the cleanup; a closed connection after a
            // stop also means it is gone.
            Err(SessionError::Protocol(_)) => Ok(()),
            Ok((v, _)) => check_ok(v).map(drop),
            Err(e) => Err(e),
        }
    }
}

fn check_ok(v: Value) -> Result<Value, SessionError> {
    if v["ok"] == Value::Bool(true) {
        return Ok(v);
    }
    let e = &v["error"];
    Err(SessionError::Refused {
        kind: e["kind"].as_str().unwrap_or("error").into(),
        message: e["message"].as_str().unwrap_or("(no message)").into(),
        hint: e["hint"].as_str().map(str::to_owned),
        exit_code: e["exit_code"].as_i64().map(|c| c as i32),
    })
}

/// Whether an exec gets a pty.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TtyMode {
    /// When any of fds 0-2 is a terminal.
    Auto,
    /// Always (24x80 when no fd is a terminal).
    On,
    /// Never: a terminal stdin reads EOF, terminal outputs are relayed through pipes.
    Off,
}

/// One exec, as `agentcage exec` asks for it.
#[derive(Debug, Clone)]
pub struct ExecSpec {
    /// argv.
    pub argv: Vec<String>,
    /// Variables set on top of the session's environment.
    pub env: BTreeMap<String, String>,
    /// Working directory inside.
    pub cwd: Option<String>,
    /// Timeout.
    pub timeout: Option<Duration>,
    /// Pty or not.
    pub tty: TtyMode,
    /// Forward SIGINT, SIGTERM, SIGHUP and SIGQUIT received by this process to the exec's
    /// process group (installs process-wide handlers: for CLIs).
    pub forward_signals: bool,
}

static SIG_PIPE: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_signal(sig: libc::c_int) {
    let fd = SIG_PIPE.load(Ordering::Relaxed);
    if fd >= 0 {
        let _ = sys::write_some(fd, &[sig as u8]);
    }
}

/// After an exec ended: how long its output may still come (idle, and in all).
const DRAIN_IDLE: Duration = Duration::from_millis(500);
const DRAIN_MAX: Duration = Duration::from_secs(5);

/// Runs one exec with this process's stdin/stdout/stderr (terminals never passed: a pty of
/// the sandbox's own is relayed instead) and waits for it.
///
/// # Errors
/// [`SessionError::Refused`] with the exit code to use (126/127 for exec failures, 125 for
/// setup), [`SessionError::Protocol`] when the session went away.
pub fn exec(client: &mut Client, spec: &ExecSpec) -> Result<ExitInfo, SessionError> {
    let terminals: u8 = (0..3)
        .filter(|&fd| sys::isatty(fd))
        .fold(0, |m, fd| m | 1 << fd);
    let tty = match spec.tty {
        TtyMode::Auto => terminals != 0,
        TtyMode::On => true,
        TtyMode::Off => false,
    };
    // The fds we pass: open ones that are not terminals. With a pty, the others get its
    // slave; without, a terminal stdin gets /dev/null and terminal outputs a pipe we relay.
    let mut targets: Vec<u8> = Vec::new();
    let mut fds: Vec<i32> = Vec::new();
    let mut own: Vec<OwnedFd> = Vec::new();
    let mut outs: Vec<(i32, i32)> = Vec::new();
    let pty_fds = if tty {
        if terminals == 0 {
            0b111
        } else {
            terminals
        }
    } else {
        0
    };
    for fd in 0..3 {
        if pty_fds & (1 << fd) != 0 || !sys::fd_is_open(fd) {
            continue;
        }
        if terminals & (1 << fd) != 0 {
            if fd == 0 {
                continue;
            }
            let (r, w) = sys::pipe_owned()
                .map_err(|e| SessionError::Protocol(format!("create an output pipe: {e}")))?;
            fds.push(w.as_raw_fd());
            own.push(w);
            outs.push((r.into_raw_fd(), fd));
            targets.push(fd as u8);
            continue;
        }
        targets.push(fd as u8);
        fds.push(fd);
    }
    let size = tty.then(|| {
        let (rows, cols) = (0..3)
            .filter(|fd| terminals & (1 << fd) != 0)
            .find_map(sys::get_winsize)
            .unwrap_or((24, 80));
        TtySize { rows, cols }
    });
    let req = Request::Exec {
        argv: spec.argv.clone(),
        env: spec.env.clone(),
        cwd: spec.cwd.clone(),
        timeout_ms: spec.timeout.map(|t| t.as_millis() as u64),
        tty: size,
        fds: targets,
        wait: true,
    };
    client.send(&req, &fds)?;
    drop(own); // the sandbox holds the write ends now
    let (v, mut got) = client.recv()?;
    let v = match check_ok(v) {
        Ok(v) => v,
        Err(e) => {
            outs.iter().for_each(|&(r, _)| sys::close(r));
            return Err(e);
        }
    };
    let exec_id = v["exec_id"].as_u64().unwrap_or(0);
    let mut relay = if tty {
        got.pop()
            .map(|m| Relay::from_master(m.into_raw_fd(), pty_fds))
    } else if !outs.is_empty() {
        Some(Relay::from_outputs(&outs))
    } else {
        None
    };
    let mut sig_r = -1;
    if spec.forward_signals {
        if let Ok((r, w)) = sys::pipe() {
            let _ = sys::set_nonblock(r);
            let _ = sys::set_nonblock(w);
            SIG_PIPE.store(w, Ordering::Relaxed);
            sig_r = r;
            for s in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT] {
                let _ = sys::signal_handler(s, on_signal);
            }
        }
    }
    let r = wait_loop(client, exec_id, relay.as_mut(), sig_r);
    if sig_r >= 0 {
        let w = SIG_PIPE.swap(-1, Ordering::Relaxed);
        for s in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT] {
            sys::signal_default(s);
        }
        sys::close(sig_r);
        sys::close(w);
    }
    if let Some(r) = &mut relay {
        r.stop();
    }
    r
}

fn wait_loop(
    client: &mut Client,
    exec_id: u64,
    mut relay: Option<&mut Relay>,
    sig_r: i32,
) -> Result<ExitInfo, SessionError> {
    if let Some(r) = relay.as_deref_mut() {
        r.start();
    }
    let mut exit: Option<ExitInfo> = None;
    let mut drain_until = Instant::now();
    let mut drain_cap = Instant::now();
    let mut pfds: Vec<libc::pollfd> = Vec::with_capacity(16);
    loop {
        if let Some(info) = exit {
            let now = Instant::now();
            if relay.as_deref().is_none_or(Relay::finished) || now >= drain_until {
                return Ok(info);
            }
        }
        pfds.clear();
        let sock = if exit.is_none() { client.fd() } else { -1 };
        pfds.push(libc::pollfd {
            fd: sock,
            events: libc::POLLIN,
            revents: 0,
        });
        pfds.push(libc::pollfd {
            fd: sig_r,
            events: libc::POLLIN,
            revents: 0,
        });
        if let Some(r) = relay.as_deref() {
            r.pollfds(&mut pfds);
        }
        let timeout = if exit.is_some() {
            drain_until
                .saturating_duration_since(Instant::now())
                .as_millis()
                .min(i32::MAX as u128) as i32
        } else {
            -1
        };
        // A frame already read along with the previous one is not announced by poll.
        let buffered = exit.is_none() && client.reader.has_frame();
        match sys::poll(&mut pfds, if buffered { 0 } else { timeout }) {
            Ok(_) => {}
            Err(e) if e.0 == libc::EINTR => continue,
            Err(e) => return Err(SessionError::Protocol(format!("poll: {e}"))),
        }
        if buffered {
            pfds[0].revents |= libc::POLLIN;
        }
        if pfds[1].revents != 0 {
            let mut b = [0u8; 16];
            while let Ok(n @ 1..) = sys::read_some(sig_r, &mut b) {
                for &s in &b[..n] {
                    client.send(
                        &Request::Signal {
                            exec_id,
                            sig: i32::from(s),
                        },
                        &[],
                    )?;
                }
            }
        }
        let progress = match relay.as_deref_mut() {
            Some(r) => r.handle(&pfds[2..]),
            None => false,
        };
        if pfds[0].revents != 0 {
            let (v, _) = client.recv()?;
            if v["exit"] == Value::Bool(true) {
                let info: ExitInfo = serde_json::from_value(v).map_err(|e| {
                    SessionError::Protocol(format!("an exit frame without its fields: {e}"))
                })?;
                exit = Some(info);
                if let Some(r) = relay.as_deref_mut() {
                    r.close_input();
                }
                let now = Instant::now();
                drain_until = now + DRAIN_IDLE;
                drain_cap = now + DRAIN_MAX;
            } else {
                check_ok(v)?; // a signal's answer, or the session going away
            }
        } else if exit.is_some() && progress {
            drain_until = (Instant::now() + DRAIN_IDLE).min(drain_cap);
        }
    }
}
