//! A session's pid 1: the zygote (issue #13, docs/SESSIONS.md).
//!
//! It is the clone child of the session's supervisor, set up exactly like a run's init
//! (`child::setup_sandbox`: ids, root, hostname, cgroup), but instead of forking one command
//! it restricts ITSELF once with the command's restrictions (rlimits, locked mounts,
//! no_new_privs, Landlock, capability drop, seccomp) and then forks one child per exec the
//! supervisor asks for. Every exec inherits those restrictions; none can be removed.
//!
//! The zygote never execs and reads nothing but its end of the supervisor's socketpair
//! (`chan`, SOCK_SEQPACKET: one request per message, fds by SCM_RIGHTS). It blocks every
//! signal (SIGCHLD comes from a signalfd; a signal sent from inside is never acted on, and
//! SIGKILL/SIGSTOP from inside are ignored by the kernel for a namespace's pid 1), reaps
//! every process (orphans are reparented to it) and reports the exits of its execs.
//!
//! Allocation: the zygote is a fork of the single-threaded supervisor that never execs, so
//! it may allocate (it decodes requests into pointer arrays); it clears the pre-exec guard
//! once set up. Between its clone of an exec and that exec's execve nothing allocates: the
//! argv/envp arrays are built before (`exec_child` only makes `sys::` calls). That clone is
//! vfork-like (CLONE_VM|CLONE_VFORK, as posix_spawn): no page table is copied and the zygote
//! resumes once the exec's execve succeeded or it exited.
//!
//! The wire format of `chan` (both ends live here, like `sync.rs`; native endian, one binary):
//!
//! ```text
//! supervisor -> zygote
//!   'E' id:u32 flags:u8 fdmask:u8 rows:u16 cols:u16 argc:u32 envc:u32 candc:u32
//!       cwd\0 argv\0... envp\0... candidates\0...        fds: those of fdmask (bit i: fd i)
//!   'K' id:u32 pid:i32 sig:i32                            kill(-pid, sig) (the exec's group)
//! zygote -> supervisor
//!   'S' id:u32 pid:i32                                    fds: report pipe (read end)[, pty master]
//!   'F' id:u32 what:u32 errno:i32                         the fork, pipe or pty failed
//!   'X' id:u32 pid:i32 status:i32                         the exec's first process exited
//! ```
//!
//! The report pipe works as in `run`: EOF means the exec's execve succeeded, a record
//! ([`super::report`]) names the failed step (`Step::Exec` for 126/127).

use std::ffi::CStr;

use super::child::execve_candidates;
use super::prepared::{Pipes, Prepared};
use super::report::report_and_exit;
use crate::error::{SetupError, Step};
use crate::sys::{self, Errno};
use crate::{caps, hygiene, landlock, namespaces, seccomp};

/// The largest request (an exec's argv, environment and PATH candidates): the channel's
/// socket buffers are sized for it.
pub(crate) const MAX_REQUEST: usize = 256 * 1024;

/// Request and reply tags.
pub(crate) const EXEC: u8 = b'E';
pub(crate) const KILL: u8 = b'K';
pub(crate) const STARTED: u8 = b'S';
pub(crate) const FAILED: u8 = b'F';
pub(crate) const EXITED: u8 = b'X';

/// `FAILED`'s `what`.
pub(crate) const FAILED_PIPE: u32 = 1;
pub(crate) const FAILED_PTY: u32 = 2;
pub(crate) const FAILED_FORK: u32 = 3;
pub(crate) const FAILED_REQUEST: u32 = 4;

/// `EXEC` flag: open a pty for the fds not in the mask.
pub(crate) const FLAG_TTY: u8 = 1;

/// An exec request, supervisor side.
pub(crate) struct ExecRequest<'a> {
    pub(crate) id: u32,
    pub(crate) tty: Option<(u16, u16)>,
    /// Bit i: fd i is passed (in order).
    pub(crate) fdmask: u8,
    pub(crate) cwd: &'a [u8],
    pub(crate) argv: &'a [Vec<u8>],
    pub(crate) envp: &'a [Vec<u8>],
    pub(crate) candidates: &'a [Vec<u8>],
}

impl ExecRequest<'_> {
    /// The `EXEC` message (strings must not contain NUL: checked by the supervisor).
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(256);
        b.push(EXEC);
        b.extend_from_slice(&self.id.to_ne_bytes());
        b.push(if self.tty.is_some() { FLAG_TTY } else { 0 });
        b.push(self.fdmask);
        let (rows, cols) = self.tty.unwrap_or((0, 0));
        b.extend_from_slice(&rows.to_ne_bytes());
        b.extend_from_slice(&cols.to_ne_bytes());
        for n in [self.argv.len(), self.envp.len(), self.candidates.len()] {
            b.extend_from_slice(&(n as u32).to_ne_bytes());
        }
        let strings = std::iter::once(self.cwd)
            .chain(self.argv.iter().map(Vec::as_slice))
            .chain(self.envp.iter().map(Vec::as_slice))
            .chain(self.candidates.iter().map(Vec::as_slice));
        for s in strings {
            b.extend_from_slice(s);
            b.push(0);
        }
        b
    }
}

/// The `KILL` message: `sig` to the process group of the exec whose first process is `pid`.
pub(crate) fn encode_kill(id: u32, pid: i32, sig: i32) -> [u8; 13] {
    let mut b = [0u8; 13];
    b[0] = KILL;
    b[1..5].copy_from_slice(&id.to_ne_bytes());
    b[5..9].copy_from_slice(&pid.to_ne_bytes());
    b[9..13].copy_from_slice(&sig.to_ne_bytes());
    b
}

/// A reply of the zygote, supervisor side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reply {
    Started { id: u32, pid: i32 },
    Failed { id: u32, what: u32, errno: Errno },
    Exited { id: u32, pid: i32, status: i32 },
}

/// Parses a reply (13 bytes); `None` for anything else.
pub(crate) fn decode_reply(b: &[u8]) -> Option<Reply> {
    if b.len() < 9 {
        return None;
    }
    let u = |i: usize| u32::from_ne_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
    let id = u(1);
    match b[0] {
        STARTED => Some(Reply::Started {
            id,
            pid: u(5) as i32,
        }),
        FAILED if b.len() >= 13 => Some(Reply::Failed {
            id,
            what: u(5),
            errno: Errno(u(9) as i32),
        }),
        EXITED if b.len() >= 13 => Some(Reply::Exited {
            id,
            pid: u(5) as i32,
            status: u(9) as i32,
        }),
        _ => None,
    }
}

fn reply(tag: u8, id: u32, a: i32, b: i32) -> [u8; 13] {
    let mut m = [0u8; 13];
    m[0] = tag;
    m[1..5].copy_from_slice(&id.to_ne_bytes());
    m[5..9].copy_from_slice(&a.to_ne_bytes());
    m[9..13].copy_from_slice(&b.to_ne_bytes());
    m
}

/// The stack of an exec child between its clone and its execve (see `spawn`).
const EXEC_STACK: usize = 256 * 1024;

/// pid 1 of a session. Never returns.
///
/// Runs in the child after clone: until it is set up, async-signal-safe only.
pub(super) fn main(p: &Prepared, pipes: &Pipes, chan: i32) -> ! {
    // Every signal blocked, for good: SIGCHLD is read from a signalfd, anything an agent
    // sends from inside stays pending and is never acted on.
    if let Err(e) = sys::sigprocmask(libc::SIG_BLOCK, &sys::sigset_all()) {
        report_and_exit(pipes.report_w, SetupError::new(Step::InitSignals, 0, e));
    }
    let sfd = match sys::signalfd(&sys::sigset(&[libc::SIGCHLD])) {
        Ok(fd) => fd,
        Err(e) => report_and_exit(pipes.report_w, SetupError::new(Step::InitSignals, 1, e)),
    };
    // A session of its own without a terminal; each exec makes its own session.
    hygiene::init_session(None);
    if let Err(e) = restrict_self(p) {
        report_and_exit(pipes.report_w, e);
    }
    // Keep fds 0-2 (the supervisor's /dev/null: execs that pass no fd get them), the
    // channel and the signalfd; everything else the supervisor had goes, the report pipe
    // too: its EOF tells the supervisor the session is ready.
    let mut keep = [0, 1, 2, chan, sfd];
    keep.sort_unstable();
    sys::close_all_except(&keep);
    // From here on the zygote is an ordinary single-threaded process that never execs: it
    // may allocate (see the module doc). Each exec child sets the guard again.
    super::PRE_EXEC.store(false, std::sync::atomic::Ordering::Relaxed);
    serve(chan, sfd)
}

/// The restrictions of a command, applied once to the zygote (same order and reasons as
/// `child::command_setup`); every exec inherits them.
fn restrict_self(p: &Prepared) -> Result<(), SetupError> {
    crate::limits::rlimit::apply(&p.rlimits)
        .map_err(|(r, e)| SetupError::new(Step::Rlimits, r.raw() as u32, Errno(e)))?;
    sys::chdir(&p.cwd).map_err(|e| SetupError::new(Step::Chdir, 0, e))?;
    if let Some(l) = &p.lock_mounts {
        namespaces::lock_mounts(l)?; // keeps caps: lock the mounts
    }
    if p.nnp {
        sys::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
            .map_err(|e| SetupError::new(Step::NoNewPrivs, 0, e))?;
    }
    if let Some(l) = &p.landlock {
        landlock::apply(l)?;
    }
    if !p.nnp {
        if let Some(s) = &p.seccomp {
            seccomp::apply(s)?;
        }
    }
    if let Some(c) = &p.caps {
        caps::apply(c)?;
    }
    if p.nnp {
        if let Some(s) = &p.seccomp {
            // Last: the zygote's own calls from here on (recvmsg, clone without namespace
            // flags, wait4, kill, setsid, the tty ioctls, /dev/ptmx) are all on the allow-list.
            seccomp::apply(s)?;
        }
    }
    Ok(())
}

fn send(chan: i32, m: &[u8], fds: &[i32]) {
    // The supervisor always reads; if it is gone, PDEATHSIG ends us.
    let _ = sys::send_with_fds(chan, m, fds);
}

/// The zygote's loop: requests from the supervisor, SIGCHLD from the signalfd.
fn serve(chan: i32, sfd: i32) -> ! {
    let mut buf = vec![0u8; MAX_REQUEST + 64];
    // The exec children's stack (see `spawn`).
    let mut stack = vec![0u8; EXEC_STACK];
    // (pid, exec id) of the execs still running.
    let mut execs: Vec<(i32, u32)> = Vec::new();
    loop {
        let mut fds = [
            libc::pollfd {
                fd: chan,
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: sfd,
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        if sys::poll(&mut fds, -1).is_err() {
            continue;
        }
        if fds[1].revents != 0 {
            sys::drain_signalfd(sfd);
            reap(chan, &mut execs);
        }
        if fds[0].revents != 0 {
            let mut got = [-1; sys::MAX_MSG_FDS];
            let mut nfds = 0;
            match sys::recv_with_fds(chan, &mut buf, &mut got, &mut nfds) {
                // The supervisor is gone (PDEATHSIG will follow): leave now.
                Ok(0) | Err(_) if fds[0].revents & (libc::POLLHUP | libc::POLLERR) != 0 => {
                    sys::exit(0)
                }
                Ok(0) => sys::exit(0),
                Ok(n) => handle(chan, &buf[..n], &got[..nfds], &mut execs, &mut stack),
                Err(_) => {}
            }
            got[..nfds].iter().for_each(|&fd| sys::close(fd));
        }
    }
}

/// Reaps every exited process; reports those that were an exec's first process.
fn reap(chan: i32, execs: &mut Vec<(i32, u32)>) {
    loop {
        match sys::waitpid(-1, libc::WNOHANG | libc::WUNTRACED) {
            Ok((0, _)) | Err(_) => return,
            Ok((pid, st)) if libc::WIFSTOPPED(st) => {
                // A ptrace-stop (a process made us its tracer) waits for us forever: detach.
                // A job-control stop of an exec is the exec's business (its pty, its shell).
                let sig = libc::WSTOPSIG(st);
                let pass = if sig == libc::SIGTRAP { 0 } else { sig };
                let _ = sys::ptrace_detach(pid, pass);
            }
            Ok((pid, st)) => {
                if let Some(i) = execs.iter().position(|&(p, _)| p == pid) {
                    let (_, id) = execs.swap_remove(i);
                    send(chan, &reply(EXITED, id, pid, st), &[]);
                }
            }
        }
    }
}

/// A decoded exec request; the strings point into the request buffer.
struct Exec<'a> {
    id: u32,
    tty: Option<(u16, u16)>,
    fdmask: u8,
    cwd: &'a CStr,
    argv: Vec<*const libc::c_char>,
    envp: Vec<*const libc::c_char>,
    candidates: Vec<&'a CStr>,
}

fn decode_exec(b: &[u8]) -> Option<Exec<'_>> {
    let u16_at = |i: usize| Some(u16::from_ne_bytes([*b.get(i)?, *b.get(i + 1)?]));
    let u32_at = |i: usize| {
        Some(u32::from_ne_bytes([
            *b.get(i)?,
            *b.get(i + 1)?,
            *b.get(i + 2)?,
            *b.get(i + 3)?,
        ]))
    };
    let id = u32_at(1)?;
    let flags = *b.get(5)?;
    let fdmask = *b.get(6)?;
    let (rows, cols) = (u16_at(7)?, u16_at(9)?);
    let (argc, envc, candc) = (
        u32_at(11)? as usize,
        u32_at(15)? as usize,
        u32_at(19)? as usize,
    );
    let mut rest = b.get(23..)?;
    let mut next = || -> Option<&CStr> {
        let s = CStr::from_bytes_until_nul(rest).ok()?;
        rest = &rest[s.to_bytes().len() + 1..];
        Some(s)
    };
    let cwd = next()?;
    if argc == 0 || argc + envc + candc > b.len() {
        return None;
    }
    let mut argv = Vec::with_capacity(argc + 1);
    for _ in 0..argc {
        argv.push(next()?.as_ptr());
    }
    argv.push(std::ptr::null());
    let mut envp = Vec::with_capacity(envc + 1);
    for _ in 0..envc {
        envp.push(next()?.as_ptr());
    }
    envp.push(std::ptr::null());
    let mut candidates = Vec::with_capacity(candc);
    for _ in 0..candc {
        candidates.push(next()?);
    }
    Some(Exec {
        id,
        tty: (flags & FLAG_TTY != 0).then_some((rows, cols)),
        fdmask,
        cwd,
        argv,
        envp,
        candidates,
    })
}

fn handle(chan: i32, m: &[u8], fds: &[i32], execs: &mut Vec<(i32, u32)>, stack: &mut [u8]) {
    match m.first() {
        Some(&KILL) if m.len() >= 13 => {
            let pid = i32::from_ne_bytes([m[5], m[6], m[7], m[8]]);
            let sig = i32::from_ne_bytes([m[9], m[10], m[11], m[12]]);
            if pid > 1 {
                let _ = sys::kill_group_or_pid(pid, sig);
            }
        }
        Some(&EXEC) => {
            let Some(x) = decode_exec(m).filter(|x| x.fdmask.count_ones() as usize == fds.len())
            else {
                let id = m
                    .get(1..5)
                    .map_or(0, |b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
                send(
                    chan,
                    &reply(FAILED, id, FAILED_REQUEST as i32, libc::EINVAL),
                    &[],
                );
                return;
            };
            spawn(chan, &x, fds, execs, stack);
        }
        _ => {}
    }
}

/// Forks one exec: its report pipe, its pty when asked, then the child.
fn spawn(chan: i32, x: &Exec<'_>, fds: &[i32], execs: &mut Vec<(i32, u32)>, stack: &mut [u8]) {
    let fail = |what: u32, e: Errno| send(chan, &reply(FAILED, x.id, what as i32, e.0), &[]);
    let (report_r, report_w) = match sys::pipe() {
        Ok(p) => p,
        Err(e) => return fail(FAILED_PIPE, e),
    };
    let pty = match x.tty {
        Some((rows, cols)) => match open_pty(rows, cols) {
            Ok(p) => Some(p),
            Err(e) => {
                sys::close(report_r);
                sys::close(report_w);
                return fail(FAILED_PTY, e);
            }
        },
        None => None,
    };
    // Which received fd goes on which of 0-2.
    let mut targets = [-1i32; 3];
    let mut it = fds.iter();
    for (i, t) in targets.iter_mut().enumerate() {
        if x.fdmask & (1 << i) != 0 {
            *t = it.next().copied().unwrap_or(-1);
        } else if let Some((_, slave)) = pty {
            *t = slave;
        }
    }
    // A vfork-like clone (CLONE_VM|CLONE_VFORK, as posix_spawn): the zygote's page tables
    // are not copied, and we resume once the exec's execve succeeded or it exited.
    let slave = pty.map(|(_, s)| s);
    let mut child = || exec_child(x, targets, slave, report_w);
    // SAFETY: `exec_child` only makes `sys::` calls on data built above (no allocation, no
    // unwinding) and ends in execve or `_exit`; the one shared write it makes (the pre-exec
    // flag) is undone below.
    let r = unsafe { sys::clone_vfork(stack, &mut child) };
    super::PRE_EXEC.store(false, std::sync::atomic::Ordering::Relaxed);
    let pid = match r {
        Ok(pid) => pid,
        Err(e) => {
            sys::close(report_r);
            sys::close(report_w);
            if let Some((m, s)) = pty {
                sys::close(m);
                sys::close(s);
            }
            return fail(FAILED_FORK, e);
        }
    };
    sys::close(report_w);
    execs.push((pid, x.id));
    match pty {
        Some((master, slave)) => {
            sys::close(slave);
            send(chan, &reply(STARTED, x.id, pid, 0), &[report_r, master]);
            sys::close(master);
        }
        None => send(chan, &reply(STARTED, x.id, pid, 0), &[report_r]),
    }
    sys::close(report_r);
}

/// A pty of the sandbox's own devpts: (master, slave), the size set.
fn open_pty(rows: u16, cols: u16) -> Result<(i32, i32), Errno> {
    let master = sys::open(c"/dev/ptmx", libc::O_RDWR | libc::O_NOCTTY, 0)?;
    let r = sys::unlockpt(master).and_then(|()| sys::pty_peer(master));
    match r {
        Ok(slave) => {
            if rows > 0 && cols > 0 {
                let _ = sys::set_winsize(master, rows, cols);
            }
            Ok((master, slave))
        }
        Err(e) => {
            sys::close(master);
            Err(e)
        }
    }
}

/// One exec, after the fork: its own session (and process group; with a pty, that pty is
/// its controlling terminal), its fds, its directory, execve.
///
/// Runs in the child after clone (on the zygote's memory: see `spawn`): async-signal-safe only.
fn exec_child(x: &Exec<'_>, targets: [i32; 3], slave: Option<i32>, report_w: i32) -> ! {
    super::PRE_EXEC.store(true, std::sync::atomic::Ordering::Relaxed);
    let r = (|| -> Result<(), SetupError> {
        sys::sigprocmask(libc::SIG_SETMASK, &sys::sigset(&[]))
            .map_err(|e| SetupError::new(Step::InitSignals, 1, e))?;
        sys::signal_default(libc::SIGPIPE); // Rust's runtime ignores it; programs expect it
        sys::setsid().map_err(|e| SetupError::at(Step::Setsid, hygiene::SETSID, 0, e))?;
        if let Some(s) = slave {
            sys::set_controlling_tty(s)
                .map_err(|e| SetupError::at(Step::ControllingTty, hygiene::SET_CTTY, 0, e))?;
        }
        for (i, &fd) in targets.iter().enumerate() {
            if fd >= 0 {
                sys::dup2(fd, i as i32).map_err(|e| {
                    SetupError::at(Step::ControllingTty, hygiene::DUP_PTY, i as u32, e)
                })?;
            }
        }
        sys::cloexec_from(3).map_err(|e| SetupError::new(Step::Fds, 0, e))?;
        sys::chdir(x.cwd).map_err(|e| SetupError::new(Step::Chdir, 0, e))?;
        Ok(())
    })();
    if let Err(e) = r {
        report_and_exit(report_w, e);
    }
    report_and_exit(report_w, execve_candidates(&x.candidates, &x.argv, &x.envp))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_request_round_trip() {
        let argv = vec![b"sh".to_vec(), b"-c".to_vec(), b"echo hi".to_vec()];
        let envp = vec![b"PATH=/bin".to_vec(), b"A=".to_vec()];
        let cands = vec![b"/bin/sh".to_vec()];
        let m = ExecRequest {
            id: 7,
            tty: Some((24, 80)),
            fdmask: 0b101,
            cwd: b"/tmp",
            argv: &argv,
            envp: &envp,
            candidates: &cands,
        }
        .encode();
        let x = decode_exec(&m).expect("decodes");
        assert_eq!((x.id, x.tty, x.fdmask), (7, Some((24, 80)), 0b101));
        assert_eq!(x.cwd.to_bytes(), b"/tmp");
        assert_eq!((x.argv.len(), x.envp.len()), (4, 3)); // null-terminated
        assert!(x.argv[3].is_null() && x.envp[2].is_null());
        assert_eq!(x.candidates[0].to_bytes(), b"/bin/sh");
        // Truncated or lying counts are refused, never read past the message.
        for cut in [1, 10, 23, m.len() - 1] {
            assert!(decode_exec(&m[..cut]).is_none(), "cut at {cut}");
        }
        let mut lying = m.clone();
        lying[11..15].copy_from_slice(&1000u32.to_ne_bytes());
        assert!(decode_exec(&lying).is_none());
    }

    #[test]
    fn replies_decode() {
        let m = reply(EXITED, 3, 42, 9);
        assert_eq!(
            decode_reply(&m),
            Some(Reply::Exited {
                id: 3,
                pid: 42,
                status: 9
            })
        );
        assert_eq!(
            decode_reply(&reply(STARTED, 1, 5, 0)),
            Some(Reply::Started { id: 1, pid: 5 })
        );
        assert_eq!(decode_reply(b"Z123456789012"), None);
        assert_eq!(decode_reply(b"X1"), None);
    }
}
