//! What the caller asks for: an allow-list of paths with coarse access classes, TCP port
//! allow-lists and scopes. Pure data; `prepare` turns it into kernel bit masks for one ABI.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::abi::fs;

/// The access a rule grants beneath its path. Each class is intersected with the rights the
/// kernel handles, and with the file-only rights when the path is not a directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Access {
    /// Read files and list directories (`/etc`, `/proc`).
    ReadOnly,
    /// Read, list and execute (`/usr`, `/bin`, `/lib`...).
    ReadExec,
    /// Every right the kernel knows: write, create, remove, rename, truncate, ioctl, execute
    /// (workspace, `/tmp`, `/dev/shm`, `--rw` paths).
    ReadWrite,
    /// Read, write, truncate and device ioctls, but no create/remove/list: `/dev` nodes such
    /// as `/dev/null` and `/dev/tty`.
    DevRw,
}

impl Access {
    /// The rights of this class, before intersecting with what the kernel handles.
    pub fn rights(self) -> u64 {
        match self {
            Access::ReadOnly => fs::READ_FILE | fs::READ_DIR,
            Access::ReadExec => fs::READ_FILE | fs::READ_DIR | fs::EXECUTE,
            Access::ReadWrite => u64::MAX,
            Access::DevRw => fs::READ_FILE | fs::WRITE_FILE | fs::TRUNCATE | fs::IOCTL_DEV,
        }
    }
}

/// One allow-list entry: `access` on `path` and everything beneath it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    /// Absolute path, resolved in the child at apply time (after pivot_root it is a path in
    /// the new root). Symlinks are followed. A path missing at apply time is skipped and
    /// counted in [`crate::ApplyOutcome`].
    pub path: PathBuf,
    /// What the rule allows.
    pub access: Access,
    /// The caller expects a directory at `path` (it made or checked one): the child then
    /// opens it with `O_DIRECTORY`, which tells it the kind without an `fstat`. A hint, never
    /// trusted: a path that turns out not to be a directory is opened again and `fstat`ed, as
    /// a rule without the hint is, so the rights are those of the kind actually found.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub expect_dir: bool,
}

impl Rule {
    /// A rule granting `access` beneath `path`.
    pub fn new(path: impl Into<PathBuf>, access: Access) -> Self {
        Rule {
            path: path.into(),
            access,
            expect_dir: false,
        }
    }

    /// The same rule, with [`Rule::expect_dir`] set: the path is expected to be a directory.
    #[must_use]
    pub fn dir(mut self) -> Self {
        self.expect_dir = true;
        self
    }
}

/// How to treat a kernel that cannot enforce what the spec asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Requirement {
    /// Enforce what the kernel supports (possibly nothing); the report says what is missing.
    BestEffort,
    /// `prepare` fails when Landlock is unavailable, or when an explicitly requested feature
    /// (TCP restriction, a scope) needs a newer ABI. Filesystem rights newer than the kernel
    /// do not fail: the allow-list is still deny-by-default for every right the kernel has,
    /// and the report lists the missing ones (`EnforcementReport::overall`).
    #[default]
    HardRequirement,
}

/// The Landlock policy for one sandbox.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Spec {
    /// The filesystem allow-list. Every filesystem right the kernel knows is handled, so a
    /// path no rule covers gets nothing.
    pub rules: Vec<Rule>,
    /// Handle TCP bind/connect (ABI 4): only the ports below are allowed.
    pub restrict_tcp: bool,
    /// Ports the sandbox may bind when `restrict_tcp` (port 0 = let the kernel pick).
    pub tcp_bind: Vec<u16>,
    /// Ports the sandbox may connect to when `restrict_tcp`.
    pub tcp_connect: Vec<u16>,
    /// Deny connecting to abstract unix sockets created outside the sandbox (ABI 6).
    pub scope_abstract_unix: bool,
    /// Deny signals to processes outside the sandbox (ABI 6).
    pub scope_signal: bool,
    /// Ask the kernel to log denials of the executed command to the audit log (ABI 7;
    /// diagnostics only, never a reason to fail).
    pub log_denials: bool,
    /// Fail or degrade when the kernel falls short.
    pub requirement: Requirement,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::abi::fs_rights;

    #[test]
    fn classes_nest() {
        for abi in 0..=10 {
            let handled = fs_rights(abi);
            let ro = Access::ReadOnly.rights() & handled;
            let rx = Access::ReadExec.rights() & handled;
            let rw = Access::ReadWrite.rights() & handled;
            let dev = Access::DevRw.rights() & handled;
            assert_eq!(ro & !rx, 0, "ReadOnly within ReadExec at ABI {abi}");
            assert_eq!(rx & !rw, 0, "ReadExec within ReadWrite at ABI {abi}");
            assert_eq!(dev & !rw, 0, "DevRw within ReadWrite at ABI {abi}");
            assert_eq!(rw, handled, "ReadWrite is everything at ABI {abi}");
        }
    }

    #[test]
    fn dev_rw_cannot_create_or_remove() {
        let r = Access::DevRw.rights();
        for bit in [
            fs::MAKE_REG,
            fs::MAKE_DIR,
            fs::MAKE_CHAR,
            fs::REMOVE_FILE,
            fs::REMOVE_DIR,
            fs::READ_DIR,
            fs::EXECUTE,
        ] {
            assert_eq!(r & bit, 0);
        }
        assert_ne!(r & fs::IOCTL_DEV, 0);
        assert_eq!(Access::ReadOnly.rights() & fs::EXECUTE, 0);
        assert_ne!(Access::ReadExec.rights() & fs::EXECUTE, 0);
    }

    #[test]
    fn default_requirement_fails_closed() {
        assert_eq!(Spec::default().requirement, Requirement::HardRequirement);
    }
}
