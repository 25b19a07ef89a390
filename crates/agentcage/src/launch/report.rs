//! The child -> launcher report: one fixed-size record of a failed setup step
//! ([`SetupError`]: step, sub-step, index, errno) on the report pipe, written just before
//! `_exit(125)`. EOF without a record: the command was executed (the pipe is close-on-exec).
//!
//! (`host/trial.rs` keeps its own 12-byte `(step, errno, detail)` record: its steps are the
//! trials' own enum, and `host/` knows nothing of the launcher.)

use crate::error::{SetupError, Step};
use crate::sys::{self, Errno};

/// Size of one record.
pub(super) const WIRE: usize = 16;

/// The record of `e` (native endian: both ends are the same process image).
pub(super) fn encode(e: SetupError) -> [u8; WIRE] {
    let mut b = [0u8; WIRE];
    b[0..4].copy_from_slice(&(e.step as u32).to_ne_bytes());
    b[4..8].copy_from_slice(&e.sub.to_ne_bytes());
    b[8..12].copy_from_slice(&e.index.to_ne_bytes());
    b[12..16].copy_from_slice(&e.errno.0.to_ne_bytes());
    b
}

/// Parses a record; `None` for an unknown step.
pub(super) fn decode(b: &[u8; WIRE]) -> Option<SetupError> {
    let word = |i: usize| [b[i], b[i + 1], b[i + 2], b[i + 3]];
    Some(SetupError {
        step: Step::from_u32(u32::from_ne_bytes(word(0)))?,
        sub: u32::from_ne_bytes(word(4)),
        index: u32::from_ne_bytes(word(8)),
        errno: Errno(i32::from_ne_bytes(word(12))),
    })
}

/// Child side: writes the record and exits 125.
///
/// Runs in the child after clone: async-signal-safe only.
pub(super) fn report_and_exit(fd: i32, e: SetupError) -> ! {
    let _ = sys::write_all(fd, &encode(e));
    sys::exit(125)
}

/// Launcher side: reads the child's record, `None` at EOF (the command was executed) or on a
/// short or unknown record.
pub(super) fn read(report_r: i32) -> Option<SetupError> {
    let mut buf = [0u8; WIRE];
    match sys::read_full(report_r, &mut buf) {
        Ok(WIRE) => decode(&buf),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let e = SetupError::at(Step::Landlock, 2, 7, Errno(libc::EPERM));
        assert_eq!(decode(&encode(e)), Some(e));
        let mut bad = encode(e);
        bad[0..4].copy_from_slice(&999u32.to_ne_bytes());
        assert_eq!(decode(&bad), None);
    }
}
