//! The control socket's protocol (docs/SESSIONS.md is its spec): frames of a big-endian u32
//! length and that many bytes of one JSON object; fds travel by SCM_RIGHTS with the first
//! byte of the frame that uses them (an exec's stdin/stdout/stderr in, a pty master out).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::sys::{self, Errno};

/// The protocol version this build speaks (`hello` answers it; a client asking for another
/// gets an error frame).
pub const VERSION: u32 = 1;

/// The largest frame either side accepts (a larger length prefix closes the connection
/// after an error frame).
pub const MAX_FRAME: usize = 1 << 20;

/// A pty's size.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TtySize {
    /// Rows.
    pub rows: u16,
    /// Columns.
    pub cols: u16,
}

/// A request (`{"op": "...", ...}`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// Version check: answered with the server's version, the session's name and pid.
    Hello {
        /// The client's protocol version.
        version: u32,
    },
    /// Run a command in the session.
    Exec {
        /// argv; `argv[0]` without a slash is looked up in the exec's PATH.
        argv: Vec<String>,
        /// Variables set on top of the session's environment.
        #[serde(default)]
        env: BTreeMap<String, String>,
        /// Working directory inside (absolute); default: the session's.
        #[serde(default)]
        cwd: Option<String>,
        /// Kill the exec's process group after this long (SIGTERM, SIGKILL 2 s later).
        #[serde(default)]
        timeout_ms: Option<u64>,
        /// Give the exec a pty of the sandbox's own on the fds not passed; its master comes
        /// back with the reply.
        #[serde(default)]
        tty: Option<TtySize>,
        /// Which of fds 0, 1, 2 the frame carries (SCM_RIGHTS, in this order). Fds not
        /// passed are the pty's slave (with `tty`) or /dev/null.
        #[serde(default)]
        fds: Vec<u8>,
        /// Also send the exit frame when the exec ends (no `wait` round trip).
        #[serde(default)]
        wait: bool,
    },
    /// Send a signal to an exec's process group.
    Signal {
        /// The exec.
        exec_id: u64,
        /// The signal number.
        sig: i32,
    },
    /// Resize an exec's pty.
    Resize {
        /// The exec.
        exec_id: u64,
        /// Rows.
        rows: u16,
        /// Columns.
        cols: u16,
    },
    /// Wait for an exec's end: answered by its exit frame.
    Wait {
        /// The exec.
        exec_id: u64,
    },
    /// `--events` sessions: an exec's denials (`exec_id`), or those no exec could be found
    /// for (no `exec_id`). docs/SESSIONS.md, "Denials".
    Denials {
        /// The exec.
        #[serde(default)]
        exec_id: Option<u64>,
    },
    /// The session and its running execs.
    List,
    /// End the session: everything inside is killed, mounts, cgroup, socket and state go;
    /// answered once that is done.
    Stop,
}

/// An exec's end, as the `exit` frame says it.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct ExitInfo {
    /// The exec.
    pub exec_id: u64,
    /// Exit code, when it exited.
    pub exit_code: Option<i32>,
    /// Signal number, when it was killed by one.
    pub signal: Option<i32>,
    /// `timeout_ms` expired and its process group was killed.
    pub timed_out: bool,
    /// run's convention: the code, 128+N for signal N, 124 for a timeout.
    pub status: i32,
}

/// A frame's length prefix, checked.
///
/// # Errors
/// The length when it is above [`MAX_FRAME`].
pub fn frame_len(b: [u8; 4]) -> Result<usize, usize> {
    let n = u32::from_be_bytes(b) as usize;
    if n > MAX_FRAME {
        Err(n)
    } else {
        Ok(n)
    }
}

/// A frame: the length prefix and the JSON.
pub fn encode(v: &impl Serialize) -> Vec<u8> {
    let body = serde_json::to_vec(v).unwrap_or_else(|_| b"{}".to_vec());
    let mut out = Vec::with_capacity(body.len() + 4);
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&body);
    out
}

/// Sends a whole frame on a blocking stream socket, `fds` with its first byte.
///
/// # Errors
/// The errno of sendmsg/write.
pub fn send_frame(sock: i32, frame: &[u8], fds: &[i32]) -> Result<(), Errno> {
    let n = sys::send_with_fds(sock, frame, fds)?;
    if n < frame.len() {
        sys::write_all(sock, &frame[n..])?;
    }
    Ok(())
}

/// The frames of a byte stream, as they complete.
#[derive(Debug, Default)]
pub struct FrameReader {
    buf: Vec<u8>,
}

/// What [`FrameReader::next_frame`] found.
#[derive(Debug, PartialEq)]
pub enum Next {
    /// A whole frame's JSON bytes.
    Frame(Vec<u8>),
    /// Not yet a whole frame.
    Incomplete,
    /// A length prefix above [`MAX_FRAME`]: the stream cannot be resynchronised.
    TooLarge(usize),
}

impl FrameReader {
    /// Adds received bytes.
    pub fn push(&mut self, b: &[u8]) {
        self.buf.extend_from_slice(b);
    }

    /// Bytes received that are not part of a returned frame yet.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    /// Whether a whole frame (or a bad length) is buffered: [`FrameReader::next_frame`]
    /// would not say `Incomplete`.
    pub fn has_frame(&self) -> bool {
        self.buf.len() >= 4
            && frame_len([self.buf[0], self.buf[1], self.buf[2], self.buf[3]])
                .map_or(true, |n| self.buf.len() >= 4 + n)
    }

    /// The next complete frame.
    pub fn next_frame(&mut self) -> Next {
        if self.buf.len() < 4 {
            return Next::Incomplete;
        }
        let n = match frame_len([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]) {
            Ok(n) => n,
            Err(n) => return Next::TooLarge(n),
        };
        if self.buf.len() < 4 + n {
            return Next::Incomplete;
        }
        let frame = self.buf[4..4 + n].to_vec();
        self.buf.drain(..4 + n);
        Next::Frame(frame)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_parse_and_refuse_unknown_fields() {
        let r: Request = serde_json::from_str(r#"{"op":"exec","argv":["true"]}"#).unwrap();
        assert!(matches!(r, Request::Exec { ref argv, wait: false, .. } if argv == &["true"]));
        let r: Request = serde_json::from_str(r#"{"op":"signal","exec_id":3,"sig":2}"#).unwrap();
        assert_eq!(r, Request::Signal { exec_id: 3, sig: 2 });
        assert!(serde_json::from_str::<Request>(r#"{"op":"exec","argv":[],"bogus":1}"#).is_err());
        assert!(serde_json::from_str::<Request>(r#"{"op":"format_disk"}"#).is_err());
        assert_eq!(
            serde_json::from_str::<Request>(r#"{"op":"stop"}"#).unwrap(),
            Request::Stop
        );
    }

    #[test]
    fn frames_split_and_join() {
        let f = encode(&Request::List);
        let mut r = FrameReader::default();
        r.push(&f[..3]);
        assert_eq!(r.next_frame(), Next::Incomplete);
        r.push(&f[3..]);
        r.push(&f);
        assert_eq!(r.next_frame(), Next::Frame(br#"{"op":"list"}"#.to_vec()));
        assert!(matches!(r.next_frame(), Next::Frame(_)));
        assert_eq!(r.next_frame(), Next::Incomplete);
        r.push(&u32::MAX.to_be_bytes());
        assert_eq!(r.next_frame(), Next::TooLarge(u32::MAX as usize));
    }
}
