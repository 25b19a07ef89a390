//! A session that dies with its owner (`session start --die-with-parent`): the process that
//! started it (an MCP server, an SDK) holds it for its own life, and a `kill -9` of that
//! process must not leave the sandbox running.
//!
//! `session start` opens a pidfd of its parent ([`parent`]) before the supervisor's double
//! fork; the supervisor keeps it and, once the sandbox is ready, a thread of its own
//! ([`watch`]) waits for it to become readable (the process exited) and then sends the
//! session a `stop` over its control socket: the same path as `agentcage session stop`
//! (every process inside, the mounts, cgroup, socket and state go). A thread, not a slot in
//! the poll loop: the supervisor already runs threads after the sandbox's clone (the egress
//! engine), and the stop is a plain client request.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;

use super::{Client, SessionError};
use crate::sys;

/// A pidfd of the calling process's parent (Linux 5.3+), checked to be that parent: when the
/// parent exited between `getppid` and `pidfd_open`, the pidfd could name a recycled pid, so
/// the parent is read again after the open.
///
/// The window before the first `getppid` remains: a parent killed before it leaves this
/// process reparented (to init or a subreaper), and the session then belongs to that one.
/// `agentcage mcp` covers it by sweeping sessions named after dead servers at its start.
///
/// # Errors
/// [`SessionError::Io`] when no pidfd can be opened (or the parent changed meanwhile).
pub fn parent() -> Result<OwnedFd, SessionError> {
    let ppid = std::os::unix::process::parent_id() as libc::pid_t;
    let fd = sys::pidfd_open_owned(ppid).map_err(|e| SessionError::Io {
        what: format!(
            "open a pidfd of the parent process {ppid} (--die-with-parent needs pidfd_open, \
             Linux 5.3+)"
        ),
        source: std::io::Error::from_raw_os_error(e.0),
    })?;
    if std::os::unix::process::parent_id() as libc::pid_t != ppid {
        return Err(SessionError::Io {
            what: format!(
                "--die-with-parent: the parent process {ppid} exited before the session started"
            ),
            source: std::io::Error::from_raw_os_error(libc::ESRCH),
        });
    }
    Ok(fd)
}

/// In the supervisor, before the session says it is ready: a thread that stops the session
/// (a `stop` request on `socket`) when the process of `owner` (a pidfd) exits.
///
/// # Errors
/// The thread could not be started (the session must then not start: it would outlive its
/// owner).
pub(crate) fn watch(owner: OwnedFd, socket: PathBuf) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("agentcage-owner".into())
        .spawn(move || {
            // poll_in retries EINTR; a pidfd is readable once its process has exited.
            while let Ok(false) = sys::poll_in(owner.as_raw_fd(), -1) {}
            if let Ok(mut c) = Client::connect_path(&socket) {
                let _ = c.stop();
            }
        })
        .map(drop)
}
