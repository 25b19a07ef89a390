//! The command's standard fds when the caller's are terminals, and the relay.
//!
//! No fd of the caller's terminal ever reaches the sandbox: each of fds 0-2 that is a
//! terminal is replaced in the command, whether or not stdin is one (`agent </dev/null`,
//! `cmd | agentcage run` used to leave fds 1/2 the caller's tty, opened read-write before
//! Landlock: the agent read the user's typing, turned echo off, resized the terminal).
//!
//! - pty relay (the default): those fds become a fresh pseudo-terminal of the sandbox's
//!   own devpts, its controlling terminal; the launcher copies bytes between the two. The
//!   agent never holds an fd of the caller's terminal, so TIOCSTI/TIOCLINUX can only inject
//!   into its own pty, while job control (Ctrl-Z, fg) keeps working inside when stdin is the
//!   terminal (bubblewrap#142, #555: `--new-session` alone breaks it).
//! - `--no-pty`: no terminal at all. A terminal stdout/stderr becomes a pipe whose bytes the
//!   launcher copies to the caller's fd; a terminal stdin becomes an empty pipe (EOF at once:
//!   the launcher never reads the caller's terminal, which stays the shell's).
//!
//! The relay never blocks the supervisor: the pty master and the pipes are non-blocking,
//! buffers are bounded (a full buffer stops reading its source: backpressure), and the
//! caller's fds (whose file descriptions are shared with the caller's shell, so they are
//! never made non-blocking for longer than one write) are written only after poll says POLLOUT: a
//! terminal through a non-blocking description of our own (reopened through /proc/self/fd;
//! if that is refused, O_NONBLOCK is set around each single write and restored at once),
//! anything else at most PIPE_BUF bytes at a time (which a pipe with room takes whole). A command that stops reading its terminal cannot hold up `--timeout`, the
//! pidfd or the launcher's signals.
//!
//! Parent side only (allocation is fine here); the child just does setsid, TIOCSCTTY and
//! dup2 on the prepared fds (see `child.rs`).

use std::sync::atomic::{AtomicI32, Ordering};

use crate::sys::{self, Errno};

/// What the sandbox does with its standard fds (prepared before clone; `Copy` so the child
/// reads it without allocating).
#[derive(Clone, Copy)]
pub(crate) enum ChildStdio {
    /// Open a pty in the sandbox's devpts, send its master on `sock`, and put the slave on
    /// the fds of `tty_fds` (bit i: fd i).
    Pty { sock: i32, tty_fds: u8 },
    /// dup2 `fds[i]` onto fd i where `fds[i] >= 0`.
    Pipes([i32; 3]),
}

/// Before clone: the fds 0-2 that are terminals, and what replaces them.
pub(crate) struct StdioPlan {
    tty_fds: u8,
    kind: PlanKind,
}

enum PlanKind {
    Pty {
        parent_sock: i32,
        child_sock: i32,
    },
    Pipes {
        /// The sandbox's ends (-1: fd i is not replaced).
        child: [i32; 3],
        /// The launcher's ends: fd 0's write end (closed after clone: EOF), fds 1/2's read
        /// ends (relayed).
        parent: [i32; 3],
    },
}

impl StdioPlan {
    /// A plan when any of fds 0-2 is a terminal; `None` when none is. `pty`: relay through a
    /// pty of the sandbox's own, else replace them by pipes (`--no-pty`).
    pub(crate) fn new(pty: bool) -> Result<Option<StdioPlan>, Errno> {
        let tty_fds = (0..3)
            .filter(|fd| sys::isatty(*fd))
            .fold(0u8, |m, fd| m | 1 << fd);
        if tty_fds == 0 {
            return Ok(None);
        }
        let kind = if pty {
            let (parent_sock, child_sock) = sys::socketpair()?;
            PlanKind::Pty {
                parent_sock,
                child_sock,
            }
        } else {
            let mut child = [-1; 3];
            let mut parent = [-1; 3];
            let mut made = || -> Result<(), Errno> {
                for fd in 0..3 {
                    if tty_fds & (1 << fd) == 0 {
                        continue;
                    }
                    let (r, w) = sys::pipe()?;
                    if fd == 0 {
                        (child[0], parent[0]) = (r, w);
                    } else {
                        (child[fd], parent[fd]) = (w, r);
                    }
                }
                Ok(())
            };
            if let Err(e) = made() {
                child
                    .into_iter()
                    .chain(parent)
                    .filter(|f| *f >= 0)
                    .for_each(sys::close);
                return Err(e);
            }
            PlanKind::Pipes { child, parent }
        };
        Ok(Some(StdioPlan { tty_fds, kind }))
    }

    /// What the child does.
    pub(crate) fn child(&self) -> ChildStdio {
        match &self.kind {
            PlanKind::Pty { child_sock, .. } => ChildStdio::Pty {
                sock: *child_sock,
                tty_fds: self.tty_fds,
            },
            PlanKind::Pipes { child, .. } => ChildStdio::Pipes(*child),
        }
    }

    /// Parent, after clone: closes the sandbox's ends (and stdin's write end: the command
    /// reads EOF), so only the sandbox holds them.
    pub(crate) fn after_clone(&mut self) {
        match &mut self.kind {
            PlanKind::Pty { child_sock, .. } => {
                sys::close(*child_sock);
                *child_sock = -1;
            }
            PlanKind::Pipes { child, parent } => {
                for f in child.iter_mut().chain(std::iter::once(&mut parent[0])) {
                    if *f >= 0 {
                        sys::close(*f);
                        *f = -1;
                    }
                }
            }
        }
    }

    /// Parent, after releasing the sandbox: the relay. For a pty, blocks until the sandbox
    /// sent the master it opened in its own devpts (so `tty` and ttyname work inside) and
    /// starts it in the caller's terminal mode and size. `None` when the sandbox failed
    /// before sending it.
    pub(crate) fn into_relay(mut self) -> Option<Relay> {
        self.after_clone();
        let tty_fds = self.tty_fds;
        let mut relay = Relay {
            streams: Vec::new(),
            term: None,
            winch: None,
        };
        match &mut self.kind {
            PlanKind::Pty { parent_sock, .. } => {
                let master = sys::recv_fd(*parent_sock);
                sys::close(*parent_sock);
                *parent_sock = -1;
                let master = master.ok()?;
                relay = Relay::from_master(master, tty_fds);
            }
            PlanKind::Pipes { parent, .. } => {
                for (fd, f) in parent.iter_mut().enumerate().skip(1) {
                    if *f >= 0 {
                        let _ = sys::set_nonblock(*f);
                        relay.streams.push(Stream::to_caller(*f, fd as i32));
                        *f = -1;
                    }
                }
            }
        }
        Some(relay)
    }
}

impl Relay {
    /// A relay of output pipes only: each `(src, dst)` copies our read end `src` (made
    /// non-blocking) to the caller's `dst` (a session exec's `--no-tty` terminal outputs).
    pub(crate) fn from_outputs(outs: &[(i32, i32)]) -> Relay {
        let mut relay = Relay {
            streams: Vec::new(),
            term: None,
            winch: None,
        };
        for &(src, dst) in outs {
            let _ = sys::set_nonblock(src);
            relay.streams.push(Stream::to_caller(src, dst));
        }
        relay
    }

    /// The relay of a pty master the sandbox sent (ours alone: the sandbox closed its
    /// copy), for the caller's terminal fds `tty_fds` (bit i: fd i), started in the caller's
    /// terminal mode and size. Also a session exec's (`session::client`).
    pub(crate) fn from_master(master: i32, tty_fds: u8) -> Relay {
        let mut relay = Relay {
            streams: Vec::new(),
            term: None,
            winch: None,
        };
        // Ours alone (the sandbox closed its copy after sending it).
        let _ = sys::set_nonblock(master);
        let term_fd = (0..3).find(|fd| tty_fds & (1 << fd) != 0).unwrap_or(0);
        let interactive = tty_fds & 1 != 0;
        // SAFETY: zeroed termios is a valid plain C struct; both fds are live
        // terminals (setting the mode through the master sets it for the pair).
        let saved = unsafe {
            let mut t: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(term_fd, &mut t) == 0 {
                libc::tcsetattr(master, libc::TCSANOW, &t);
                Some(t)
            } else {
                None
            }
        };
        if interactive {
            relay.streams.push(Stream::new(0, master, false));
        }
        let out_fd = [1, 2, 0]
            .into_iter()
            .find(|fd| tty_fds & (1 << fd) != 0)
            .unwrap_or(1);
        relay.streams.push(Stream::to_caller(master, out_fd));
        relay.term = Some(Term {
            master,
            term_fd,
            saved,
            interactive,
        });
        relay.copy_winsize();
        relay
    }
}

impl Drop for StdioPlan {
    fn drop(&mut self) {
        let fds: Vec<i32> = match &self.kind {
            PlanKind::Pty {
                parent_sock,
                child_sock,
            } => vec![*parent_sock, *child_sock],
            PlanKind::Pipes { child, parent } => child.iter().chain(parent).copied().collect(),
        };
        fds.into_iter().filter(|f| *f >= 0).for_each(sys::close);
    }
}

/// Sandbox side, after its root is composed: opens a pty in the sandbox's own devpts,
/// sends the master to the launcher over `sock` and returns the slave.
///
/// Runs in the child after clone: async-signal-safe only.
pub(crate) fn open_inside(sock: i32) -> Result<i32, Errno> {
    let master = sys::open(c"/dev/ptmx", libc::O_RDWR | libc::O_NOCTTY, 0)?;
    let r = sys::unlockpt(master)
        .and_then(|()| sys::pty_peer(master))
        .and_then(|slave| sys::send_fd(sock, master).map(|()| slave));
    sys::close(master);
    sys::close(sock);
    r
}

/// Bytes buffered per direction: a full buffer stops reading its source.
const BUF_CAP: usize = 64 * 1024;
/// Largest write to a caller's fd after POLLOUT (atomic, and fits, on a pipe).
const CALLER_CHUNK: usize = libc::PIPE_BUF;

/// One direction of the relay: `src` -> buffer -> `dst`.
struct Stream {
    src: i32,
    dst: i32,
    /// `dst` is a non-blocking description of our own (closed on drop when it is an output's):
    /// any length may be written. Otherwise a caller's fd, written at most [`CALLER_CHUNK`]
    /// after POLLOUT.
    own_dst: bool,
    /// `dst` is the caller's terminal through the caller's own description (the reopen was
    /// refused): each write sets O_NONBLOCK for that one call.
    shared_tty: bool,
    /// Output of the sandbox (its end closes when the sandbox is gone) rather than the
    /// caller's input.
    from_sandbox: bool,
    buf: Vec<u8>,
    /// `src` has not reached EOF or an error.
    open: bool,
    /// `dst` failed (the caller closed its end, the sandbox hung up): drop what comes.
    dead: bool,
}

impl Stream {
    fn new(src: i32, dst: i32, from_sandbox: bool) -> Stream {
        Stream {
            src,
            dst,
            own_dst: !from_sandbox,
            shared_tty: false,
            from_sandbox,
            buf: Vec::with_capacity(BUF_CAP),
            open: true,
            dead: false,
        }
    }

    /// Output of the sandbox to the caller's fd `dst`. A terminal is reopened (through
    /// /proc/self/fd) as a non-blocking description of our own: a terminal that stops
    /// taking output (a frozen emulator) could otherwise block even a write after POLLOUT.
    /// When the reopen is refused (not the node's owner), each write sets O_NONBLOCK on the
    /// shared description for that one call only.
    fn to_caller(src: i32, dst: i32) -> Stream {
        let mut s = Stream::new(src, dst, true);
        if sys::isatty(dst) {
            let path = format!("/proc/self/fd/{dst}\0");
            let path = std::ffi::CStr::from_bytes_with_nul(path.as_bytes()).ok();
            let flags = libc::O_WRONLY | libc::O_NOCTTY | libc::O_NONBLOCK | libc::O_CLOEXEC;
            if let Some(fd) = path.and_then(|p| sys::open(p, flags, 0).ok()) {
                s.dst = fd;
                s.own_dst = true;
            } else {
                s.shared_tty = true;
            }
        }
        s
    }

    fn done(&self) -> bool {
        !self.open && (self.buf.is_empty() || self.dead)
    }
}

/// The pty of a relay and the caller's terminal it stands in for.
struct Term {
    master: i32,
    /// The caller's terminal (the first of fds 0-2 that is one): mode and size come from it.
    term_fd: i32,
    saved: Option<libc::termios>,
    /// stdin is the terminal: the caller's terminal is in raw mode while the relay runs,
    /// and the command's job-control stops stop the launcher.
    interactive: bool,
}

/// The launcher side of a relay: a pty or `--no-pty`'s pipes.
pub(crate) struct Relay {
    streams: Vec<Stream>,
    term: Option<Term>,
    /// SIGWINCH self-pipe (read, write) while the relay runs.
    winch: Option<(i32, i32)>,
}

static WINCH_PIPE: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_winch(_: libc::c_int) {
    let fd = WINCH_PIPE.load(Ordering::Relaxed);
    if fd >= 0 {
        let _ = sys::write_some(fd, b"w");
    }
}

fn pollfd(fd: i32, events: libc::c_short) -> libc::pollfd {
    libc::pollfd {
        fd,
        events,
        revents: 0,
    }
}

impl Relay {
    /// Starts relaying: the caller's terminal in raw mode (when stdin is it), SIGWINCH
    /// followed.
    pub(crate) fn start(&mut self) {
        if self.term.is_some() {
            if let Ok((r, w)) = sys::pipe() {
                let _ = sys::set_nonblock(r);
                let _ = sys::set_nonblock(w);
                WINCH_PIPE.store(w, Ordering::Relaxed);
                let _ = sys::signal_handler(libc::SIGWINCH, on_winch);
                self.winch = Some((r, w));
            }
        }
        self.raw();
    }

    /// Stops relaying: the caller's terminal mode restored, SIGWINCH back to default.
    pub(crate) fn stop(&mut self) {
        self.restore();
        if let Some((r, w)) = self.winch.take() {
            WINCH_PIPE.store(-1, Ordering::Relaxed);
            sys::signal_default(libc::SIGWINCH);
            sys::close(r);
            sys::close(w);
        }
    }

    /// Whether the command's job-control stops should stop the launcher (stdin is the
    /// caller's terminal, relayed through the pty).
    pub(crate) fn interactive(&self) -> bool {
        self.term.as_ref().is_some_and(|t| t.interactive)
    }

    /// Appends this relay's pollfds (a fixed layout per relay: `handle` reads them back).
    pub(crate) fn pollfds(&self, fds: &mut Vec<libc::pollfd>) {
        fds.push(pollfd(self.winch.map_or(-1, |w| w.0), libc::POLLIN));
        for s in &self.streams {
            let read = s.open && s.buf.len() < BUF_CAP;
            fds.push(pollfd(if read { s.src } else { -1 }, libc::POLLIN));
            let write = !s.buf.is_empty() && !s.dead;
            fds.push(pollfd(if write { s.dst } else { -1 }, libc::POLLOUT));
        }
    }

    /// Acts on the revents of [`Relay::pollfds`]' entries; true when bytes moved.
    pub(crate) fn handle(&mut self, fds: &[libc::pollfd]) -> bool {
        let mut progress = false;
        if fds[0].revents != 0 {
            if let Some((r, _)) = self.winch {
                let mut b = [0u8; 64];
                while matches!(sys::read_some(r, &mut b), Ok(n) if n > 0) {}
            }
            self.copy_winsize();
        }
        for (i, s) in self.streams.iter_mut().enumerate() {
            let (rd, wr) = (fds[1 + 2 * i].revents, fds[2 + 2 * i].revents);
            if rd != 0 {
                let len = s.buf.len();
                s.buf.resize(BUF_CAP, 0);
                match sys::read_some(s.src, &mut s.buf[len..]) {
                    Ok(0) => {
                        s.buf.truncate(len);
                        s.open = false;
                    }
                    Ok(n) => {
                        s.buf.truncate(len + n);
                        progress = true;
                    }
                    Err(e) if e.0 == libc::EAGAIN => s.buf.truncate(len),
                    // EIO on the master: every slave fd is closed, the sandbox is gone.
                    Err(_) => {
                        s.buf.truncate(len);
                        s.open = false;
                    }
                }
                if s.dead {
                    s.buf.clear();
                }
            }
            if wr != 0 && !s.buf.is_empty() && !s.dead {
                // The master is non-blocking (any length); a caller's fd gets at most what
                // POLLOUT promises room for.
                let n = if s.own_dst {
                    s.buf.len()
                } else {
                    s.buf.len().min(CALLER_CHUNK)
                };
                let r = if s.shared_tty {
                    sys::write_nonblocking_shared(s.dst, &s.buf[..n])
                } else {
                    sys::write_some(s.dst, &s.buf[..n])
                };
                match r {
                    Ok(k) => {
                        s.buf.drain(..k);
                        progress |= k > 0;
                    }
                    Err(e) if e.0 == libc::EAGAIN => {}
                    Err(_) => {
                        s.dead = true;
                        s.buf.clear();
                    }
                }
            }
        }
        progress
    }

    /// The sandbox exited: stop reading the caller's input (what the user types next is for
    /// the shell, not for a dead pty).
    pub(crate) fn close_input(&mut self) {
        for s in self.streams.iter_mut().filter(|s| !s.from_sandbox) {
            s.open = false;
            s.buf.clear();
        }
    }

    /// Everything the sandbox wrote has been passed on (its ends are closed).
    pub(crate) fn finished(&self) -> bool {
        self.streams
            .iter()
            .filter(|s| s.from_sandbox)
            .all(Stream::done)
    }

    /// Stops the launcher like the command was stopped, then resumes everything.
    pub(crate) fn suspend(&self, init_pid: libc::pid_t) {
        self.restore();
        sys::signal_default(libc::SIGTSTP);
        // SAFETY: getpid cannot fail.
        let me = unsafe { libc::getpid() };
        let _ = sys::kill(me, libc::SIGTSTP);
        // Resumed (SIGCONT from the caller's shell).
        self.raw();
        self.copy_winsize();
        let _ = sys::kill(init_pid, libc::SIGCONT);
    }

    fn copy_winsize(&self) {
        let Some(t) = &self.term else { return };
        // SAFETY: zeroed winsize is valid; both fds are live terminals.
        unsafe {
            let mut ws: libc::winsize = std::mem::zeroed();
            if libc::ioctl(t.term_fd, libc::TIOCGWINSZ, &mut ws) == 0 {
                libc::ioctl(t.master, libc::TIOCSWINSZ, &ws);
            }
        }
    }

    /// Puts the caller's terminal in raw mode when stdin is it: every byte goes to the
    /// command's pty, whose own line discipline does echo, line editing and job-control
    /// signals. (Output-only: the caller's terminal keeps its mode, and Ctrl-C there signals
    /// the launcher.)
    fn raw(&self) {
        let Some(t) = self.term.as_ref().filter(|t| t.interactive) else {
            return;
        };
        if let Some(mut m) = t.saved {
            // SAFETY: m is a live termios; term_fd is a terminal.
            unsafe {
                libc::cfmakeraw(&mut m);
                libc::tcsetattr(t.term_fd, libc::TCSADRAIN, &m);
            }
        }
    }

    fn restore(&self) {
        let Some(t) = self.term.as_ref().filter(|t| t.interactive) else {
            return;
        };
        if let Some(m) = t.saved {
            // SAFETY: restoring the mode we saved on the same fd. TCSANOW: TCSADRAIN
            // would wait for the caller's terminal to drain, which a stopped (Ctrl-S)
            // terminal never does.
            unsafe { libc::tcsetattr(t.term_fd, libc::TCSANOW, &m) };
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop();
        for s in &self.streams {
            if s.own_dst && s.from_sandbox {
                sys::close(s.dst);
            }
        }
        if let Some(t) = &self.term {
            sys::close(t.master);
        } else {
            for s in &self.streams {
                sys::close(s.src);
            }
        }
    }
}
