//! The pty relay: when the caller's stdin is a terminal, the command gets a fresh
//! pseudo-terminal as its controlling terminal and the launcher copies bytes between the
//! two. The agent never holds an fd of the caller's terminal, so TIOCSTI/TIOCLINUX can only
//! inject into its own pty, while job control (Ctrl-C, Ctrl-Z, fg) keeps working inside
//! (bubblewrap#142, #555: `--new-session` alone breaks it).
//!
//! Parent side only (allocation is fine here); the child just does setsid, TIOCSCTTY and
//! dup2 on the prepared slave fd (see `child.rs`).

use std::sync::atomic::{AtomicI32, Ordering};

use crate::sys::{self, Errno};

/// Before clone: the decision to relay, and the socket the sandbox sends its pty master on.
pub(crate) struct PtyPlan {
    /// Bit i set: fd i (0-2) was a terminal and becomes the pty in the command.
    pub(crate) tty_fds: u8,
    parent_sock: i32,
    /// The sandbox's end (closed in the parent after clone).
    pub(crate) child_sock: i32,
}

impl PtyPlan {
    /// A plan when stdin is a terminal; `None` otherwise.
    pub(crate) fn if_interactive() -> Result<Option<PtyPlan>, Errno> {
        if !isatty(0) {
            return Ok(None);
        }
        let mut tty_fds = 0u8;
        for fd in 0..3 {
            if isatty(fd) {
                tty_fds |= 1 << fd;
            }
        }
        let (parent_sock, child_sock) = sys::socketpair()?;
        Ok(Some(PtyPlan {
            tty_fds,
            parent_sock,
            child_sock,
        }))
    }

    /// Parent, after releasing the sandbox: receives the pty master the sandbox opened in
    /// its own devpts (so `tty` and ttyname work inside) and starts it in the caller's
    /// terminal mode and size. `None` when the sandbox failed before sending it.
    pub(crate) fn receive(self) -> Option<Pty> {
        sys::close(self.child_sock);
        let master = sys::recv_fd(self.parent_sock);
        sys::close(self.parent_sock);
        let master = master.ok()?;
        let term_fd = 0;
        // SAFETY: zeroed termios is a valid plain C struct; both fds are live terminals
        // (setting the mode through the master sets it for the pair).
        let saved = unsafe {
            let mut t: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(term_fd, &mut t) == 0 {
                libc::tcsetattr(master, libc::TCSANOW, &t);
                Some(t)
            } else {
                None
            }
        };
        let pty = Pty {
            master,
            tty_fds: self.tty_fds,
            term_fd,
            saved,
        };
        pty.copy_winsize();
        Some(pty)
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

/// The launcher side of a relay.
pub(crate) struct Pty {
    master: i32,
    /// Bit i set: fd i (0-2) was a terminal and is the pty in the command.
    tty_fds: u8,
    /// The caller's terminal (an fd among 0-2) and its saved mode.
    term_fd: i32,
    saved: Option<libc::termios>,
}

static WINCH_PIPE: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_winch(_: libc::c_int) {
    let fd = WINCH_PIPE.load(Ordering::Relaxed);
    if fd >= 0 {
        let _ = sys::write_all(fd, b"w");
    }
}

fn isatty(fd: i32) -> bool {
    // SAFETY: integer-only libc call.
    unsafe { libc::isatty(fd) == 1 }
}

impl Pty {
    /// Stops the launcher like the command was stopped, then resumes everything.
    fn suspend(&self, init_pid: libc::pid_t) {
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
        // SAFETY: zeroed winsize is valid; both fds are live terminals.
        unsafe {
            let mut ws: libc::winsize = std::mem::zeroed();
            if libc::ioctl(self.term_fd, libc::TIOCGWINSZ, &mut ws) == 0 {
                libc::ioctl(self.master, libc::TIOCSWINSZ, &ws);
            }
        }
    }

    /// Puts the caller's terminal in raw mode: every byte goes to the command's pty, whose
    /// own line discipline does echo, line editing and job-control signals.
    fn raw(&self) {
        if let Some(mut t) = self.saved {
            // SAFETY: t is a live termios; term_fd is a terminal.
            unsafe {
                libc::cfmakeraw(&mut t);
                libc::tcsetattr(self.term_fd, libc::TCSADRAIN, &t);
            }
        }
    }

    fn restore(&self) {
        if let Some(t) = self.saved {
            // SAFETY: restoring the mode we saved on the same fd.
            unsafe { libc::tcsetattr(self.term_fd, libc::TCSADRAIN, &t) };
        }
    }

    /// Relays until the command side hangs up (every slave fd closed: the sandbox exited),
    /// `done_fd` becomes readable or `deadline` passes. Restores the terminal on return.
    ///
    /// Job control: when the init reports on `status_fd` that the command stopped (Ctrl-Z
    /// on its pty), the launcher restores the caller's terminal and stops itself, so the
    /// caller's shell takes over; when the shell resumes it (`fg`), it re-enters raw mode and
    /// resumes the sandbox (`init_pid` forwards SIGCONT to the command's process group).
    /// Returns the init's exit message if it read it.
    pub(crate) fn relay(
        &self,
        done_fd: i32,
        status_fd: i32,
        init_pid: libc::pid_t,
        deadline: Option<std::time::Instant>,
    ) -> Option<i32> {
        let mut exit_status = None;
        let Ok((wr, ww)) = sys::pipe() else {
            return None;
        };
        WINCH_PIPE.store(ww, Ordering::Relaxed);
        let _ = sys::signal_handler(libc::SIGWINCH, on_winch);
        self.raw();
        let out_fd = [1, 2, 0]
            .into_iter()
            .find(|fd| self.tty_fds & (1 << fd) != 0)
            .unwrap_or(1);
        let mut buf = [0u8; 8192];
        let mut stdin_open = true;
        loop {
            let mut fds = [
                libc::pollfd {
                    fd: if stdin_open { 0 } else { -1 },
                    events: libc::POLLIN,
                    revents: 0,
                },
                libc::pollfd {
                    fd: self.master,
                    events: libc::POLLIN,
                    revents: 0,
                },
                libc::pollfd {
                    fd: wr,
                    events: libc::POLLIN,
                    revents: 0,
                },
                libc::pollfd {
                    fd: done_fd,
                    events: libc::POLLIN,
                    revents: 0,
                },
                libc::pollfd {
                    fd: if exit_status.is_none() { status_fd } else { -1 },
                    events: libc::POLLIN,
                    revents: 0,
                },
            ];
            let timeout = deadline.map_or(-1, |d| {
                d.saturating_duration_since(std::time::Instant::now())
                    .as_millis()
                    .min(i32::MAX as u128) as i32
            });
            if timeout == 0 {
                break;
            }
            // SAFETY: fds is a live array of pollfd.
            let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
            if n < 0 {
                if Errno::last().0 == libc::EINTR {
                    continue;
                }
                break;
            }
            if fds[4].revents & libc::POLLIN != 0 {
                let mut m = [0u8; super::child::STATUS_MSG];
                if let Ok(super::child::STATUS_MSG) = sys::read_full(status_fd, &mut m) {
                    let st = i32::from_ne_bytes([m[1], m[2], m[3], m[4]]);
                    if m[0] == super::child::STATUS_STOPPED {
                        self.suspend(init_pid);
                    } else {
                        exit_status = Some(st);
                    }
                }
            }
            if fds[2].revents & libc::POLLIN != 0 {
                let _ = sys::read_some(wr, &mut buf);
                self.copy_winsize();
            }
            if fds[0].revents & (libc::POLLIN | libc::POLLHUP) != 0 {
                match sys::read_some(0, &mut buf) {
                    Ok(0) | Err(_) => stdin_open = false,
                    Ok(k) => {
                        let _ = sys::write_all(self.master, &buf[..k]);
                    }
                }
            }
            if fds[1].revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0 {
                match sys::read_some(self.master, &mut buf) {
                    // EIO: every slave fd is closed, the sandbox is gone.
                    Ok(0) | Err(_) => break,
                    Ok(k) => {
                        let _ = sys::write_all(out_fd, &buf[..k]);
                    }
                }
            }
            if fds[3].revents != 0 && fds[1].revents == 0 {
                break;
            }
        }
        self.restore();
        WINCH_PIPE.store(-1, Ordering::Relaxed);
        sys::signal_default(libc::SIGWINCH);
        sys::close(wr);
        sys::close(ww);
        exit_status
    }
}

impl Drop for Pty {
    fn drop(&mut self) {
        self.restore();
        sys::close(self.master);
    }
}
