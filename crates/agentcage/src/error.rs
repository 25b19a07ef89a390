//! Errors: the child's fixed-size `(Step, index, errno)` report and the parent's full error.

use std::path::PathBuf;

use crate::limits::{CgroupError, RlimitError};
use crate::sys::Errno;

/// A pre-exec setup step. The child reports the step (plus an index into a prepared table)
/// and the errno; the parent turns it into a message naming paths and flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum Step {
    /// Waiting for the parent to write the id maps (EOF: the parent died).
    WaitParent = 1,
    /// setresgid to the inside gid.
    SetGid,
    /// setgroups(0, NULL).
    SetGroups,
    /// setresuid to the inside uid.
    SetUid,
    /// Making the inherited mount tree private (no propagation either way).
    MountPrivate,
    /// Mounting the staging tmpfs.
    StageTmpfs,
    /// First pivot_root into the staging tmpfs.
    PivotStage,
    /// One entry of the mount plan (index = entry).
    Mount,
    /// Final pivot_root into the composed root.
    PivotRoot,
    /// Detaching the old root.
    DetachOldRoot,
    /// sethostname in the new UTS namespace.
    Hostname,
    /// Bringing loopback up in the new network namespace.
    Loopback,
    /// Forking the command from the init.
    ForkCommand,
    /// Signal setup of the init.
    InitSignals,
    /// setsid (new session, no controlling terminal).
    Setsid,
    /// Controlling terminal of the pty relay.
    ControllingTty,
    /// Closing or keeping inherited fds.
    Fds,
    /// Setting resource limits (index = rlimit resource).
    Rlimits,
    /// Changing to the working directory.
    Chdir,
    /// PR_SET_NO_NEW_PRIVS.
    NoNewPrivs,
    /// Landlock ruleset (index = rule, or u32::MAX for create/restrict).
    Landlock,
    /// Dropping capabilities (index: 0 bounding, 1 securebits, 2 ambient, 3 capset).
    Caps,
    /// Installing the seccomp filter.
    Seccomp,
    /// execve of the command (index = PATH candidate).
    Exec,
    /// unshare(CLONE_NEWCGROUP) after the cgroup attach.
    CgroupNs,
    /// Nested user+mount namespace that locks the mounts (index: 0 unshare, 1 setgroups,
    /// 2 uid_map, 3 gid_map).
    LockMounts,
    /// Joining a fresh anonymous session keyring (the caller's stays outside).
    SessionKeyring,
    /// Capping the sandbox's per-user counts in its user namespace (index: which).
    UserLimits,
    /// The nested rung's switch to an unprivileged uid (sub-step: see `launch/nested.rs`).
    NestedIds,
    /// `--net allow`: the routes, listeners and their hand-over (sub-step: see `egress.rs`;
    /// index: the listener).
    Egress,
    /// The sandbox's network namespace, built beside its first process and joined by it
    /// (sub-step: see `namespaces.rs`).
    NetNs,
}

impl Step {
    /// Decodes the wire value the child wrote.
    pub fn from_u32(v: u32) -> Option<Step> {
        use Step::*;
        const ALL: [Step; 31] = [
            WaitParent,
            SetGid,
            SetGroups,
            SetUid,
            MountPrivate,
            StageTmpfs,
            PivotStage,
            Mount,
            PivotRoot,
            DetachOldRoot,
            Hostname,
            Loopback,
            ForkCommand,
            InitSignals,
            Setsid,
            ControllingTty,
            Fds,
            Rlimits,
            Chdir,
            NoNewPrivs,
            Landlock,
            Caps,
            Seccomp,
            Exec,
            CgroupNs,
            LockMounts,
            SessionKeyring,
            UserLimits,
            NestedIds,
            Egress,
            NetNs,
        ];
        ALL.into_iter().find(|s| *s as u32 == v)
    }
}

/// What the child reports before `_exit(125)`: the step, its named sub-step (0 when it has
/// none), an index into the step's prepared table and the errno. Fixed size, no allocation;
/// the wire codec is `launch/report.rs`. Each room describes its own sub-steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SetupError {
    /// The failing step.
    pub step: Step,
    /// The step's sub-step (e.g. Landlock's create/add-rule/restrict, the caps sets).
    pub sub: u32,
    /// Index into the step's prepared table (mount entry, PATH candidate, rule...).
    pub index: u32,
    /// The errno.
    pub errno: Errno,
}

impl SetupError {
    /// A report of a step without sub-steps.
    pub fn new(step: Step, index: u32, errno: Errno) -> SetupError {
        SetupError {
            step,
            sub: 0,
            index,
            errno,
        }
    }

    /// A report of one sub-step of `step`.
    pub fn at(step: Step, sub: u32, index: u32, errno: Errno) -> SetupError {
        SetupError {
            step,
            sub,
            index,
            errno,
        }
    }
}

/// Why a policy cannot be run as given (a usage error: the CLI exits 2). The Display
/// text is the whole message the CLI prints.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// The command line is empty, or its first word is.
    #[error("no command given (usage: agentcage run [OPTIONS] -- CMD [ARGS]...)")]
    NoCommand,
    /// The workspace is a relative path.
    #[error("workspace {} must be an absolute path", .path.display())]
    WorkspaceNotAbsolute {
        /// The workspace as given.
        path: PathBuf,
    },
    /// The workspace is missing or not a directory.
    #[error("workspace {} does not exist or is not a directory", .path.display())]
    WorkspaceMissing {
        /// The workspace as given.
        path: PathBuf,
    },
    /// The workspace is `/`.
    #[error("the workspace cannot be / (the whole host would be writable)")]
    WorkspaceRoot,
    /// The workspace is a system directory.
    #[error("the workspace cannot be {} (a system directory)", .path.display())]
    WorkspaceSystemDir {
        /// The system directory.
        path: PathBuf,
    },
    /// A `--ro`/`--rw` path is relative.
    #[error("{} must be an absolute path", .path.display())]
    BindNotAbsolute {
        /// The path as given.
        path: PathBuf,
    },
    /// A `--ro`/`--rw` path does not exist.
    #[error("{} does not exist", .path.display())]
    BindMissing {
        /// The path as given.
        path: PathBuf,
    },
    /// A `--ro`/`--rw` path is `/`.
    #[error("binding / would expose the whole host")]
    BindRoot,
    /// Run as root with `--host-uid`/`--host-gid` 0.
    #[error("--host-uid/--host-gid 0 would give the agent host root: refused")]
    HostRoot,
    /// `--overlay` with what it cannot serve: no mount namespace, or a bind below the
    /// workspace (it would show the host's tree, not the overlay's, at its path).
    #[error("--overlay: {reason}")]
    Overlay {
        /// Why.
        reason: String,
    },
    /// A `--keep-fd` below 3.
    #[error("--keep-fd takes fds >= 3 (0-2 are always kept)")]
    KeepFdLow,
    /// A `--keep-fd` fd that is not open.
    #[error("--keep-fd {fd}: fd {fd} is not open in the caller")]
    KeepFdNotOpen {
        /// The fd.
        fd: i32,
    },
    /// A `--keep-fd` fd that is a terminal.
    #[error(
        "--keep-fd {fd}: fd {fd} is a terminal, and no fd of the caller's terminal may \
         reach the sandbox (the command's terminal is its own pty)"
    )]
    KeepFdTerminal {
        /// The fd.
        fd: i32,
    },
    /// A `--allow-host` rule (or `[network] allow` entry) the egress engine rejects.
    #[error("--allow-host {rule:?}: {why}")]
    NetRule {
        /// The rule as given.
        rule: String,
        /// Why (names the bad byte or label).
        why: String,
    },
    /// `--net allow` (or an egress option) without a network namespace of the sandbox's own.
    #[error(
        "--net allow needs the sandbox's own network namespace, and this policy has none \
         ({why})"
    )]
    NetAllowWithoutNetns {
        /// Why there is none (profile none, --without net-ns, ...).
        why: String,
    },
    /// A string handed to the kernel (argv, env, path) contains a NUL byte.
    #[error("{text:?} contains a NUL byte")]
    NulByte {
        /// The string, lossily decoded.
        text: String,
    },
}

/// What a profile needs and this host cannot give ([`Error::Unenforceable`]'s cause): one
/// variant per primitive, the primitive's own error as the source. Callers match on the
/// variant, never on the text.
#[derive(Debug, thiserror::Error)]
pub enum Unenforceable {
    /// The kernel has no usable Landlock (the run is not `--best-effort`).
    #[error("Landlock")]
    LandlockUnavailable(#[source] agentcage_landlock::Unavailable),
    /// Landlock cannot enforce the requested rules (hard requirement, bad rule, ...).
    #[error("Landlock")]
    Landlock(#[source] agentcage_landlock::LandlockError),
    /// No seccomp filter can be built for this architecture.
    #[error("seccomp")]
    Seccomp(#[source] agentcage_seccomp::SeccompError),
    /// Namespaces without a user namespace, as root: the command would be host root.
    #[error("without a user namespace the command would run as host root (refused)")]
    NamespacesAsRoot,
    /// Namespaces without a user namespace, unprivileged: they need its capabilities.
    #[error("namespaces without a user namespace need root")]
    NamespacesNeedRoot,
    /// `--overlay`: overlayfs cannot be used on this host.
    #[error(transparent)]
    OverlayUnavailable(crate::overlay::OverlayError),
    /// `--overlay`: the overlay directory's layers cannot be opened.
    #[error("overlay")]
    OverlayLayers(#[source] crate::overlay::OverlayError),
    /// The nested rung: a root-owned workspace nothing can remap, without consent to run as
    /// uid 0.
    #[error(
        "{} is owned by root and nothing can remap it here (no user namespace for an \
         idmapped mount): the sandbox would run as uid {uid} and could not write it",
        .workspace.display()
    )]
    NestedRootWorkspace {
        /// The workspace.
        workspace: PathBuf,
        /// The uid the sandbox would run as.
        uid: u32,
    },
}

/// The library's error.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The policy cannot be run as given (bad path, bad value): a usage error.
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// A primitive the profile needs cannot be enforced on this host (fail closed).
    #[error("cannot enforce the {profile} profile")]
    Unenforceable {
        /// Profile name.
        profile: String,
        /// What is missing, and why (typed; its own cause, if any, is its source).
        #[source]
        cause: Unenforceable,
        /// How to fix it or run anyway.
        hint: Option<String>,
    },
    /// A setup step failed (in the parent or in the child).
    #[error("{step}")]
    Setup {
        /// The step and its objects (paths, flags).
        step: String,
        /// The errno.
        #[source]
        errno: Errno,
        /// A hint, where one helps.
        hint: Option<String>,
    },
    /// A cgroup step of the run failed (creating the run's leaf, attaching the sandbox):
    /// the cause, with the real errno, is the source.
    #[error("{step}")]
    Cgroup {
        /// The step and its objects.
        step: String,
        /// The cgroup operation that failed.
        #[source]
        source: CgroupError,
        /// A hint, where one helps.
        hint: Option<String>,
    },
    /// The egress engine of `--net allow` could not start (the launcher's side): the cause is
    /// the source.
    #[error("{step}")]
    Egress {
        /// The step and its objects.
        step: String,
        /// The engine's error.
        #[source]
        source: std::io::Error,
        /// A hint, where one helps.
        hint: Option<String>,
    },
    /// Reading the caller's resource limits failed (prepare): the real cause is the source.
    #[error(transparent)]
    Rlimit(#[from] RlimitError),
    /// The command could not be executed.
    #[error("cannot execute {command}")]
    Exec {
        /// The command as given.
        command: String,
        /// The errno (ENOENT: not found; EACCES/ENOEXEC...: not executable).
        #[source]
        errno: Errno,
    },
}

impl Error {
    /// The error and its causes on one line, joined by `": "`, an OS error written as an
    /// errno (`EACCES (Permission denied)`): what the CLI prints.
    pub fn chain(&self) -> String {
        let mut msg = self.to_string();
        let mut src = std::error::Error::source(self);
        while let Some(s) = src {
            msg.push_str(": ");
            match s
                .downcast_ref::<std::io::Error>()
                .and_then(std::io::Error::raw_os_error)
            {
                Some(n) => msg.push_str(&Errno(n).to_string()),
                None => msg.push_str(&s.to_string()),
            }
            src = s.source();
        }
        msg
    }

    /// The hint to print after the error, if any.
    pub fn hint(&self) -> Option<&str> {
        match self {
            Error::Setup { hint, .. }
            | Error::Unenforceable { hint, .. }
            | Error::Cgroup { hint, .. }
            | Error::Egress { hint, .. } => hint.as_deref(),
            Error::Exec { errno, .. } if errno.0 == libc::ENOENT => {
                Some("the command must exist inside the sandbox (system dirs, the workspace or a --ro/--rw path)")
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The CLI prints these texts as they are: they must not drift with the types.
    #[test]
    fn policy_error_texts() {
        let p = |s: &str| PathBuf::from(s);
        let cases: Vec<(PolicyError, &str)> = vec![
            (
                PolicyError::NoCommand,
                "no command given (usage: agentcage run [OPTIONS] -- CMD [ARGS]...)",
            ),
            (
                PolicyError::WorkspaceNotAbsolute { path: p("w") },
                "workspace w must be an absolute path",
            ),
            (
                PolicyError::WorkspaceMissing { path: p("/nx") },
                "workspace /nx does not exist or is not a directory",
            ),
            (
                PolicyError::WorkspaceRoot,
                "the workspace cannot be / (the whole host would be writable)",
            ),
            (
                PolicyError::WorkspaceSystemDir { path: p("/usr") },
                "the workspace cannot be /usr (a system directory)",
            ),
            (
                PolicyError::BindNotAbsolute { path: p("rel") },
                "rel must be an absolute path",
            ),
            (
                PolicyError::BindMissing { path: p("/nx") },
                "/nx does not exist",
            ),
            (
                PolicyError::BindRoot,
                "binding / would expose the whole host",
            ),
            (
                PolicyError::HostRoot,
                "--host-uid/--host-gid 0 would give the agent host root: refused",
            ),
            (
                PolicyError::KeepFdLow,
                "--keep-fd takes fds >= 3 (0-2 are always kept)",
            ),
            (
                PolicyError::KeepFdNotOpen { fd: 9 },
                "--keep-fd 9: fd 9 is not open in the caller",
            ),
            (
                PolicyError::KeepFdTerminal { fd: 9 },
                "--keep-fd 9: fd 9 is a terminal, and no fd of the caller's terminal may \
                 reach the sandbox (the command's terminal is its own pty)",
            ),
            (
                PolicyError::NulByte {
                    text: "a\0b".into(),
                },
                "\"a\\0b\" contains a NUL byte",
            ),
        ];
        for (e, want) in cases {
            assert_eq!(Error::Policy(e.clone()).to_string(), want, "{e:?}");
            assert_eq!(e.to_string(), want);
        }
    }

    /// The CLI prints `Error::Unenforceable` as its chain: the same sentences as when the
    /// cause was text (the profile, the primitive, the primitive's reason).
    #[test]
    fn unenforceable_texts() {
        let e = |cause: Unenforceable| Error::Unenforceable {
            profile: "full".into(),
            cause,
            hint: None,
        };
        let ll = agentcage_landlock::Unavailable::NotBuilt;
        assert_eq!(
            e(Unenforceable::LandlockUnavailable(ll)).chain(),
            format!("cannot enforce the full profile: Landlock: {ll}")
        );
        let sc = agentcage_seccomp::SeccompError::UnsupportedArch;
        assert_eq!(
            e(Unenforceable::Seccomp(sc.clone())).chain(),
            format!("cannot enforce the full profile: seccomp: {sc}")
        );
        assert_eq!(
            e(Unenforceable::NamespacesAsRoot).chain(),
            "cannot enforce the full profile: without a user namespace the command would run \
             as host root (refused)"
        );
        assert_eq!(
            e(Unenforceable::NestedRootWorkspace {
                workspace: PathBuf::from("/w"),
                uid: 65534
            })
            .chain(),
            "cannot enforce the full profile: /w is owned by root and nothing can remap it here \
             (no user namespace for an idmapped mount): the sandbox would run as uid 65534 and \
             could not write it"
        );
        assert!(matches!(
            e(Unenforceable::NamespacesNeedRoot),
            Error::Unenforceable {
                cause: Unenforceable::NamespacesNeedRoot,
                ..
            }
        ));
    }
}
