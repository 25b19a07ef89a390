//! The launcher <-> sandbox handshake and the init's status messages: every byte that
//! crosses the sync and status pipes is named here.
//!
//! Sync pipe (launcher -> first child): [`RELEASE`] (id maps written), or
//! [`RELEASE_ATTACH_FOLLOWS`] and later [`ATTACHED`] (the cgroup attach overlaps the child's
//! mounts). The launcher keeps the write end open until the sandbox exits: a hang-up means it
//! is gone. Status pipe (init -> launcher, non-blocking): [`STATUS_MSG`]-byte messages, a tag
//! and the command's raw wait status.

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

/// Status message: the command exited (raw wait status follows).
pub(super) const STATUS_EXITED: u8 = b'X';
/// Status message: the command was stopped (job control).
pub(super) const STATUS_STOPPED: u8 = b'S';
/// Size of one status message.
pub(super) const STATUS_MSG: usize = 5;

/// One status message.
pub(super) fn status_msg(tag: u8, st: i32) -> [u8; STATUS_MSG] {
    let b = st.to_ne_bytes();
    [tag, b[0], b[1], b[2], b[3]]
}

/// Decodes a status message: its tag and raw wait status.
pub(super) fn parse_status(m: &[u8; STATUS_MSG]) -> (u8, i32) {
    (m[0], i32::from_ne_bytes([m[1], m[2], m[3], m[4]]))
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
