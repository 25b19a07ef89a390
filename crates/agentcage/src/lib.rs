//! agentcage: confines a process (an AI agent) with user, mount, pid, net, ipc, uts and
//! cgroup namespaces, a composed read-only root, Landlock, a capability drop and seccomp.
//!
//! The library prints nothing and knows no CLI. Build a [`Policy`] (usually with
//! [`Policy::for_profile`]), [`prepare`] it into a [`Prepared`] (every artifact the child
//! needs, built before clone), then [`Prepared::run`] it.
//!
//! Module map (one module per primitive, one sequencer):
//! - `policy`: what to isolate (pure data); `error`: errors and the child's step report;
//! - `host`: what this machine supports (`Features::detect`, the only detector); `ladder`:
//!   what each profile keeps here; `doctor`: the report the CLI renders;
//! - `namespaces`: the clone-flag table, id maps, inside ids, hostname, loopback and the
//!   nested namespace that locks the mounts; `hygiene`: environment, session, terminal, fds;
//! - `rootfs`: the composed root; `caps`: capability drop; `landlock`, `seccomp`: wiring of
//!   the `agentcage-landlock` and `agentcage-seccomp` crates;
//! - `limits`: resource limits (spec, flag grammar, rlimits, the run's cgroup); calls `host`
//!   (procfs parsers) and `sys`, never `policy` or `launch`;
//! - `launch`: prepare -> spawn -> supervise; `launch::child` is the whole pre-exec path;
//! - `egress`: `--net allow`: the routes and listeners the sandbox creates in its network
//!   namespace, passed to the launcher, which runs the `agentcage-egress` engine on them;
//! - `session`: one sandbox, many execs (the supervisor, the protocol, the client);
//!   `launch::zygote` is its pid 1;
//! - `hostfs`: the launcher's own host-side files (reports), written by fd, never through a
//!   symlink the sandbox planted;
//! - `sys`: raw syscall wrappers, the only home of `unsafe` (issue #11), apart from `launch`:
//!   its `clone_fork`/`clone_vfork` calls, whose contract (the child runs only
//!   async-signal-safe code) only the caller can keep, the pre-exec overwrite of the init's
//!   argv/environment areas, and `launch/pty.rs`'s termios calls (not yet in `sys/tty.rs`).
//!   The crate denies `unsafe_code`; only `sys` and `launch` allow it, so a new module starts
//!   without it; the rooms whose calls moved to `sys` (`egress`, `events`, `overlay`,
//!   `rootfs`, `session`) forbid it (no inner `allow` can undo that).

#![deny(unsafe_code)]

pub(crate) mod caps;
pub mod doctor;
#[forbid(unsafe_code)] // issue #11: its raw calls are in `sys`
pub(crate) mod egress;
pub(crate) mod error;
#[forbid(unsafe_code)] // issue #11: its raw calls are in `sys`
pub mod events;
pub mod host;
pub mod hostfs;
pub(crate) mod hygiene;
pub mod ladder;
pub(crate) mod landlock;
#[allow(unsafe_code)] // see the module map above: the clone call sites and the pty's termios
pub(crate) mod launch;
pub mod limits;
pub(crate) mod namespaces;
#[forbid(unsafe_code)] // issue #11: its raw calls are in `sys`
pub mod overlay;
pub(crate) mod policy;
#[forbid(unsafe_code)] // issue #11: its raw calls are in `sys`
pub(crate) mod rootfs;
pub(crate) mod seccomp;
#[forbid(unsafe_code)] // issue #11: its raw calls are in `sys`
pub mod session;
#[allow(unsafe_code)] // the home of raw calls: each `unsafe` block has its SAFETY comment
pub(crate) mod sys;

pub use doctor::DoctorReport;
pub use egress::{EgressHooks, SharedDenyHook};
pub use error::{Error, PolicyError, SetupError, Step, Unenforceable};
pub use host::Features;
pub use launch::{
    in_pre_exec, prepare, Command, Exit, Prepared, RunOutcome, SpawnOptions, Timings, TIMEOUT_GRACE,
};
pub use limits::{CgroupError, Limit, LimitsSpec, RlimitError};
pub use policy::{
    ExtraBind, Layer, LayerSet, NetMode, NetSpec, Policy, Profile, WorkspaceControls,
};
pub use sys::{geteuid, Errno};

/// The composed root's fixed parts and the environment allow-list, read-only, for exporters
/// (`agentcage export oci` mirrors the root in an OCI bundle from these, not from a copy).
pub mod layout {
    pub use crate::hygiene::{DEFAULT_PATH, ENV_ALLOW};
    pub use crate::rootfs::{
        DEV_NODES, ETC_FROM_HOST, PROC_MASKED_DIRS, PROC_MASKED_FILES, PROC_READONLY, SELF_EXE,
        SYSTEM_DIRS,
    };
    /// The hostname of a sandbox with its own UTS namespace.
    pub const HOSTNAME: &str = "agentcage";
    /// The home directory inside for `uid` (on the root tmpfs).
    pub fn home(uid: u32) -> &'static str {
        if uid == 0 {
            "/root"
        } else {
            "/home/agent"
        }
    }
}

/// What the test suites need of the internals; not part of the API.
#[doc(hidden)]
pub mod testing {
    pub use crate::sys::mount_setattr_available;

    /// The pid of the sandbox's init when the outcome was made before the init's exit was
    /// reaped (it reported that every other process was gone): reaped when the outcome drops.
    pub fn exiting_init_pid(o: &crate::RunOutcome) -> Option<libc::pid_t> {
        o.exiting_init.as_ref().map(|i| i.pid)
    }
}
