//! Sessions (issue #13, docs/SESSIONS.md): one sandbox, many commands, each at about the cost
//! of a fork and an exec.
//!
//! - [`supervisor`]: `start` forks the detached supervisor, which spawns the sandbox with a
//!   zygote as pid 1 (`launch/zygote.rs`) and serves the control socket; `stop`.
//! - [`protocol`]: the control socket's frames (u32 BE length + JSON, fds by SCM_RIGHTS).
//! - [`client`]: connect, request, and `exec` with the caller's stdio (pty relay included).
//! - [`dir`]: the runtime directory, names, state files, and reaping dead sessions.
//! - [`owner`]: `--die-with-parent`, a session stopped when its owner exits.
//!
//! Never `setns` from the host into the sandbox: every exec is a fork of the zygote, which
//! is inside already and holds none of the caller's fds, environment or credentials.

pub mod client;
pub mod dir;
pub mod owner;
pub mod protocol;
pub mod supervisor;

use std::path::PathBuf;

pub use client::{Client, ExecSpec, TtyMode};
pub use protocol::{ExitInfo, Request};
pub use supervisor::{start, stop, StartOptions, Started, Summary};

/// What can go wrong with a session.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The runtime directory cannot be used.
    #[error("session directory {}: {why}", path.display())]
    RuntimeDir {
        /// The directory.
        path: PathBuf,
        /// What is wrong with it.
        why: String,
    },
    /// Not a valid session name.
    #[error("session name {name:?}: 1 to 64 of A-Z a-z 0-9 . _ - (not starting with . or -)")]
    BadName {
        /// The name.
        name: String,
    },
    /// A live session has this name.
    #[error("session {name} exists already")]
    Exists {
        /// The name.
        name: String,
    },
    /// No such session, or it does not answer.
    #[error("no session {name} (see `agentcage session list`)")]
    Gone {
        /// The name.
        name: String,
    },
    /// Sessions need the pid namespace (the zygote is the sandbox's pid 1).
    #[error("a session needs the pid-ns layer: its zygote is the sandbox's pid 1")]
    NeedsPidNs,
    /// The control socket would be visible inside.
    #[error(
        "session directory {} is inside {}, which the sandbox sees: its control socket would \
         be reachable from inside", dir.display(), root.display()
    )]
    VisibleInside {
        /// The runtime directory.
        dir: PathBuf,
        /// The workspace or bind it is under.
        root: PathBuf,
    },
    /// The sandbox could not be set up (run's message, from the supervisor).
    #[error("{message}")]
    Setup {
        /// The error and its causes.
        message: String,
        /// A hint.
        hint: Option<String>,
    },
    /// A system call of the host side failed.
    #[error("{what}")]
    Io {
        /// What was being done.
        what: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The connection broke or the peer does not speak the protocol.
    #[error("{0}")]
    Protocol(String),
    /// The supervisor answered with an error frame.
    #[error("{message}")]
    Refused {
        /// The error's kind (`exec`, `setup`, `bad_request`, `bad_fd`, `denied`, ...).
        kind: String,
        /// Its message.
        message: String,
        /// A hint.
        hint: Option<String>,
        /// The exit code the CLI uses (126/127 exec, 125 setup), when it says one.
        exit_code: Option<i32>,
    },
}

impl SessionError {
    /// A hint for the user, when there is one.
    pub fn hint(&self) -> Option<&str> {
        match self {
            SessionError::Setup { hint, .. } | SessionError::Refused { hint, .. } => {
                hint.as_deref()
            }
            SessionError::RuntimeDir { .. } => {
                Some("set XDG_RUNTIME_DIR to a directory of yours (mode 0700), e.g. /run/user/UID")
            }
            SessionError::VisibleInside { .. } => {
                Some("set XDG_RUNTIME_DIR to a directory outside the workspace and the binds")
            }
            _ => None,
        }
    }
}
