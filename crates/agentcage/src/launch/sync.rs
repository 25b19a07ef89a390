//! The launcher <-> sandbox handshake and the init's status messages: every byte that
//! crosses the sync and status pipes is named here.
//!
//! Sync pipe (launcher -> first child): [`RELEASE`] (id maps written), or
//! [`RELEASE_ATTACH_FOLLOWS`] and later [`ATTACHED`] (the cgroup attach overlaps the child's
//! mounts). The launcher keeps the write end open until the sandbox exits: a hang-up means it
//! is gone. Status pipe (init -> launcher, non-blocking): [`STATUS_MSG`]-byte messages, a tag,
//! the command's raw wait status and, with [`STATUS_DONE`], the usage of the sandbox's reaped
//! processes.

use crate::error::{SetupError, Step};
use crate::sys::{self, Errno};

/// Id maps written, nothing else follows.
pub(super) const RELEASE: &[u8] = b"1";
/// Id maps written; a cgroup attach follows, ended by [`ATTACHED`].
pub(super) const RELEASE_ATTACH_FOLLOWS: &[u8] = b"2";
/// The cgroup attach is done.
pub(super) const ATTACHED: &[u8] = b"a";

/// [`Step::WaitParent`] sub-steps.
const WAIT_RELEASE: u32 = 0;
const PARENT_GONE: u32 = 1;
const WAIT_ATTACH: u32 = 2;

/// Status message: the command exited (raw wait status follows); other processes of the
/// sandbox may live on until the init's exit kills them.
pub(super) const STATUS_EXITED: u8 = b'X';
/// Status message: the command exited and the init reaped every process of the sandbox (it
/// has no child left): nothing of the agent runs any more, only the init's own exit (the
/// namespaces' teardown) remains. The usage of the reaped processes follows.
pub(super) const STATUS_DONE: u8 = b'D';
/// Status message: the command was stopped (job control).
pub(super) const STATUS_STOPPED: u8 = b'S';
/// Size of one status message: tag, wait status (4), peak RSS in KiB (8), CPU time in
/// microseconds (8). Far below PIPE_BUF: each write is atomic.
pub(super) const STATUS_MSG: usize = 21;

/// One status message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Status {
    pub(super) tag: u8,
    /// The command's raw wait status.
    pub(super) st: i32,
    /// [`STATUS_DONE`]: the largest peak RSS of the reaped processes (KiB), else 0.
    pub(super) max_rss_kib: i64,
    /// [`STATUS_DONE`]: their user + system CPU time (microseconds), else 0.
    pub(super) cpu_us: u64,
}

/// A status message without usage ([`STATUS_EXITED`], [`STATUS_STOPPED`]).
pub(super) fn status_msg(tag: u8, st: i32) -> [u8; STATUS_MSG] {
    encode(Status {
        tag,
        st,
        max_rss_kib: 0,
        cpu_us: 0,
    })
}

/// [`STATUS_DONE`] with the usage of everything the init reaped.
pub(super) fn done_msg(st: i32, ru: &libc::rusage) -> [u8; STATUS_MSG] {
    encode(Status {
        tag: STATUS_DONE,
        st,
        max_rss_kib: ru.ru_maxrss,
        cpu_us: u64::try_from(crate::sys::rusage_cpu(ru).as_micros()).unwrap_or(u64::MAX),
    })
}

fn encode(s: Status) -> [u8; STATUS_MSG] {
    let mut m = [0u8; STATUS_MSG];
    m[0] = s.tag;
    m[1..5].copy_from_slice(&s.st.to_ne_bytes());
    m[5..13].copy_from_slice(&s.max_rss_kib.to_ne_bytes());
    m[13..21].copy_from_slice(&s.cpu_us.to_ne_bytes());
    m
}

/// Decodes a status message.
pub(super) fn parse_status(m: &[u8; STATUS_MSG]) -> Status {
    let mut w4 = [0u8; 4];
    let mut w8 = [0u8; 8];
    w4.copy_from_slice(&m[1..5]);
    let st = i32::from_ne_bytes(w4);
    w8.copy_from_slice(&m[5..13]);
    let max_rss_kib = i64::from_ne_bytes(w8);
    w8.copy_from_slice(&m[13..21]);
    Status {
        tag: m[0],
        st,
        max_rss_kib,
        cpu_us: u64::from_ne_bytes(w8),
    }
}

fn read_byte(sync_r: i32, sub: u32) -> Result<u8, SetupError> {
    let mut b = [0u8; 1];
    match sys::read_full(sync_r, &mut b) {
        Ok(1) => Ok(b[0]),
        Ok(_) => Err(SetupError::at(Step::WaitParent, sub, 0, Errno(libc::EPIPE))),
        Err(e) => Err(SetupError::at(Step::WaitParent, sub, 0, e)),
    }
}

/// Child side: waits until the launcher has written the id maps. `true` when a cgroup attach
/// follows ([`wait_for_attach`]).
///
/// Runs in the child after clone: async-signal-safe only.
pub(super) fn wait_for_release(sync_r: i32) -> Result<bool, SetupError> {
    read_byte(sync_r, WAIT_RELEASE).map(|b| b == RELEASE_ATTACH_FOLLOWS[0])
}

/// Child side, after PR_SET_PDEATHSIG is armed: fails when the launcher already died (it
/// died before the death signal could be delivered).
///
/// Runs in the child after clone: async-signal-safe only.
pub(super) fn check_parent_alive(sync_r: i32) -> Result<(), SetupError> {
    if sys::hung_up(sync_r) {
        return Err(SetupError::at(
            Step::WaitParent,
            PARENT_GONE,
            0,
            Errno(libc::EPIPE),
        ));
    }
    Ok(())
}

/// Child side: waits for [`ATTACHED`].
///
/// Runs in the child after clone: async-signal-safe only.
pub(super) fn wait_for_attach(sync_r: i32) -> Result<(), SetupError> {
    read_byte(sync_r, WAIT_ATTACH).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_messages_round_trip() {
        let m = status_msg(STATUS_STOPPED, 0x137f);
        assert_eq!(
            parse_status(&m),
            Status {
                tag: STATUS_STOPPED,
                st: 0x137f,
                max_rss_kib: 0,
                cpu_us: 0
            }
        );
        // SAFETY: zeroed rusage is a valid plain C struct.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        ru.ru_maxrss = 4321;
        ru.ru_utime.tv_sec = 1;
        ru.ru_utime.tv_usec = 250;
        ru.ru_stime.tv_usec = 750;
        let d = parse_status(&done_msg(-1, &ru));
        assert_eq!(
            (d.tag, d.st, d.max_rss_kib, d.cpu_us),
            (STATUS_DONE, -1, 4321, 1_001_000)
        );
    }
}
