//! The Landlock ABI: the kernel's constants, which ABI version brought which right, and
//! detection of the running kernel's ABI and errata.
//!
//! Every constant here is part of the kernel's stable user-space ABI
//! (`include/uapi/linux/landlock.h`); we spell them out instead of depending on a header
//! crate because the set we need is small and must cover ABIs newer than the distribution's
//! headers (this host's `linux-libc-dev` stops at ABI 2).
//!
//! Detection asks the kernel (`landlock_create_ruleset(NULL, 0, VERSION)`), never the
//! version string: distributions backport Landlock, and a kernel built with Landlock may
//! still have it disabled at boot.

use serde::Serialize;

use crate::sys;

/// `LANDLOCK_CREATE_RULESET_VERSION`: return the highest supported ABI.
pub(crate) const CREATE_RULESET_VERSION: u32 = 1 << 0;
/// `LANDLOCK_CREATE_RULESET_ERRATA`: return the bitmask of fixed errata.
pub(crate) const CREATE_RULESET_ERRATA: u32 = 1 << 1;

/// `LANDLOCK_RULE_PATH_BENEATH`.
pub(crate) const RULE_PATH_BENEATH: libc::c_int = 1;
/// `LANDLOCK_RULE_NET_PORT` (ABI 4).
pub(crate) const RULE_NET_PORT: libc::c_int = 2;

/// Filesystem access rights (`LANDLOCK_ACCESS_FS_*`).
pub mod fs {
    /// Execute a file.
    pub const EXECUTE: u64 = 1 << 0;
    /// Open a file with write access.
    pub const WRITE_FILE: u64 = 1 << 1;
    /// Open a file with read access.
    pub const READ_FILE: u64 = 1 << 2;
    /// Open a directory or list its content.
    pub const READ_DIR: u64 = 1 << 3;
    /// Remove an empty directory or rename one.
    pub const REMOVE_DIR: u64 = 1 << 4;
    /// Unlink (or rename) a file.
    pub const REMOVE_FILE: u64 = 1 << 5;
    /// Create (or rename or link) a character device.
    pub const MAKE_CHAR: u64 = 1 << 6;
    /// Create (or rename) a directory.
    pub const MAKE_DIR: u64 = 1 << 7;
    /// Create (or rename or link) a regular file.
    pub const MAKE_REG: u64 = 1 << 8;
    /// Create (or rename or link) a unix socket.
    pub const MAKE_SOCK: u64 = 1 << 9;
    /// Create (or rename or link) a named pipe.
    pub const MAKE_FIFO: u64 = 1 << 10;
    /// Create (or rename or link) a block device.
    pub const MAKE_BLOCK: u64 = 1 << 11;
    /// Create (or rename or link) a symbolic link.
    pub const MAKE_SYM: u64 = 1 << 12;
    /// Link or rename a file from or to a different directory (ABI 2).
    pub const REFER: u64 = 1 << 13;
    /// Truncate a file (ABI 3).
    pub const TRUNCATE: u64 = 1 << 14;
    /// ioctl(2) on character and block devices (ABI 5).
    pub const IOCTL_DEV: u64 = 1 << 15;
    /// Connect to a pathname unix socket (ABI 9).
    pub const RESOLVE_UNIX: u64 = 1 << 16;

    /// The rights that make sense on a non-directory: adding any other right on a file
    /// makes `landlock_add_rule` fail with EINVAL.
    pub const FILE: u64 = EXECUTE | WRITE_FILE | READ_FILE | TRUNCATE | IOCTL_DEV | RESOLVE_UNIX;
}

/// Network access rights (`LANDLOCK_ACCESS_NET_*`, ABI 4).
pub mod net {
    /// bind(2) a TCP socket to a local port.
    pub const BIND_TCP: u64 = 1 << 0;
    /// connect(2) a TCP socket to a remote port.
    pub const CONNECT_TCP: u64 = 1 << 1;
}

/// Scope flags (`LANDLOCK_SCOPE_*`, ABI 6).
pub mod scope {
    /// Deny connecting to abstract unix sockets created outside the domain.
    pub const ABSTRACT_UNIX_SOCKET: u64 = 1 << 0;
    /// Deny sending signals to processes outside the domain.
    pub const SIGNAL: u64 = 1 << 1;
}

/// `landlock_restrict_self` flags (ABI 7).
pub mod restrict {
    /// Do not log denials of the process that called restrict_self (same executable).
    pub const LOG_SAME_EXEC_OFF: u32 = 1 << 0;
    /// Log denials of programs executed after restrict_self (off by default).
    pub const LOG_NEW_EXEC_ON: u32 = 1 << 1;
    /// Do not log denials of nested domains.
    pub const LOG_SUBDOMAINS_OFF: u32 = 1 << 2;
}

/// The newest ABI this crate knows. A newer kernel is used at this level: every right we
/// know is handled, rights added later are not (the report says so).
pub const MAX_KNOWN_ABI: u32 = 9;

/// Every right or flag the enforcement report covers, with its stable name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Right {
    /// `fs.execute`
    #[serde(rename = "fs.execute")]
    FsExecute,
    /// `fs.write_file`
    #[serde(rename = "fs.write_file")]
    FsWriteFile,
    /// `fs.read_file`
    #[serde(rename = "fs.read_file")]
    FsReadFile,
    /// `fs.read_dir`
    #[serde(rename = "fs.read_dir")]
    FsReadDir,
    /// `fs.remove_dir`
    #[serde(rename = "fs.remove_dir")]
    FsRemoveDir,
    /// `fs.remove_file`
    #[serde(rename = "fs.remove_file")]
    FsRemoveFile,
    /// `fs.make_char`
    #[serde(rename = "fs.make_char")]
    FsMakeChar,
    /// `fs.make_dir`
    #[serde(rename = "fs.make_dir")]
    FsMakeDir,
    /// `fs.make_reg`
    #[serde(rename = "fs.make_reg")]
    FsMakeReg,
    /// `fs.make_sock`
    #[serde(rename = "fs.make_sock")]
    FsMakeSock,
    /// `fs.make_fifo`
    #[serde(rename = "fs.make_fifo")]
    FsMakeFifo,
    /// `fs.make_block`
    #[serde(rename = "fs.make_block")]
    FsMakeBlock,
    /// `fs.make_sym`
    #[serde(rename = "fs.make_sym")]
    FsMakeSym,
    /// `fs.refer`
    #[serde(rename = "fs.refer")]
    FsRefer,
    /// `fs.truncate`
    #[serde(rename = "fs.truncate")]
    FsTruncate,
    /// `fs.ioctl_dev`
    #[serde(rename = "fs.ioctl_dev")]
    FsIoctlDev,
    /// `fs.resolve_unix`
    #[serde(rename = "fs.resolve_unix")]
    FsResolveUnix,
    /// `net.bind_tcp`
    #[serde(rename = "net.bind_tcp")]
    NetBindTcp,
    /// `net.connect_tcp`
    #[serde(rename = "net.connect_tcp")]
    NetConnectTcp,
    /// `scope.abstract_unix_socket`
    #[serde(rename = "scope.abstract_unix_socket")]
    ScopeAbstractUnixSocket,
    /// `scope.signal`
    #[serde(rename = "scope.signal")]
    ScopeSignal,
    /// `audit.log_new_exec`: denials of the executed command are logged (ABI 7).
    #[serde(rename = "audit.log_new_exec")]
    AuditLogNewExec,
}

/// What a [`Right`] is, to the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A bit of `handled_access_fs`.
    Fs(u64),
    /// A bit of `handled_access_net`.
    Net(u64),
    /// A bit of `scoped`.
    Scope(u64),
    /// A `landlock_restrict_self` flag.
    RestrictFlag(u32),
}

impl Right {
    /// Every right, in report order.
    pub const ALL: [Right; 22] = [
        Right::FsExecute,
        Right::FsWriteFile,
        Right::FsReadFile,
        Right::FsReadDir,
        Right::FsRemoveDir,
        Right::FsRemoveFile,
        Right::FsMakeChar,
        Right::FsMakeDir,
        Right::FsMakeReg,
        Right::FsMakeSock,
        Right::FsMakeFifo,
        Right::FsMakeBlock,
        Right::FsMakeSym,
        Right::FsRefer,
        Right::FsTruncate,
        Right::FsIoctlDev,
        Right::FsResolveUnix,
        Right::NetBindTcp,
        Right::NetConnectTcp,
        Right::ScopeAbstractUnixSocket,
        Right::ScopeSignal,
        Right::AuditLogNewExec,
    ];

    /// The stable name (`fs.truncate`), as in JSON.
    pub fn name(self) -> &'static str {
        match self {
            Right::FsExecute => "fs.execute",
            Right::FsWriteFile => "fs.write_file",
            Right::FsReadFile => "fs.read_file",
            Right::FsReadDir => "fs.read_dir",
            Right::FsRemoveDir => "fs.remove_dir",
            Right::FsRemoveFile => "fs.remove_file",
            Right::FsMakeChar => "fs.make_char",
            Right::FsMakeDir => "fs.make_dir",
            Right::FsMakeReg => "fs.make_reg",
            Right::FsMakeSock => "fs.make_sock",
            Right::FsMakeFifo => "fs.make_fifo",
            Right::FsMakeBlock => "fs.make_block",
            Right::FsMakeSym => "fs.make_sym",
            Right::FsRefer => "fs.refer",
            Right::FsTruncate => "fs.truncate",
            Right::FsIoctlDev => "fs.ioctl_dev",
            Right::FsResolveUnix => "fs.resolve_unix",
            Right::NetBindTcp => "net.bind_tcp",
            Right::NetConnectTcp => "net.connect_tcp",
            Right::ScopeAbstractUnixSocket => "scope.abstract_unix_socket",
            Right::ScopeSignal => "scope.signal",
            Right::AuditLogNewExec => "audit.log_new_exec",
        }
    }

    /// The ABI version that introduced this right.
    pub fn since_abi(self) -> u32 {
        match self {
            Right::FsRefer => 2,
            Right::FsTruncate => 3,
            Right::NetBindTcp | Right::NetConnectTcp => 4,
            Right::FsIoctlDev => 5,
            Right::ScopeAbstractUnixSocket | Right::ScopeSignal => 6,
            Right::AuditLogNewExec => 7,
            Right::FsResolveUnix => 9,
            _ => 1,
        }
    }

    /// The kernel bit this right is.
    pub fn kind(self) -> Kind {
        match self {
            Right::FsExecute => Kind::Fs(fs::EXECUTE),
            Right::FsWriteFile => Kind::Fs(fs::WRITE_FILE),
            Right::FsReadFile => Kind::Fs(fs::READ_FILE),
            Right::FsReadDir => Kind::Fs(fs::READ_DIR),
            Right::FsRemoveDir => Kind::Fs(fs::REMOVE_DIR),
            Right::FsRemoveFile => Kind::Fs(fs::REMOVE_FILE),
            Right::FsMakeChar => Kind::Fs(fs::MAKE_CHAR),
            Right::FsMakeDir => Kind::Fs(fs::MAKE_DIR),
            Right::FsMakeReg => Kind::Fs(fs::MAKE_REG),
            Right::FsMakeSock => Kind::Fs(fs::MAKE_SOCK),
            Right::FsMakeFifo => Kind::Fs(fs::MAKE_FIFO),
            Right::FsMakeBlock => Kind::Fs(fs::MAKE_BLOCK),
            Right::FsMakeSym => Kind::Fs(fs::MAKE_SYM),
            Right::FsRefer => Kind::Fs(fs::REFER),
            Right::FsTruncate => Kind::Fs(fs::TRUNCATE),
            Right::FsIoctlDev => Kind::Fs(fs::IOCTL_DEV),
            Right::FsResolveUnix => Kind::Fs(fs::RESOLVE_UNIX),
            Right::NetBindTcp => Kind::Net(net::BIND_TCP),
            Right::NetConnectTcp => Kind::Net(net::CONNECT_TCP),
            Right::ScopeAbstractUnixSocket => Kind::Scope(scope::ABSTRACT_UNIX_SOCKET),
            Right::ScopeSignal => Kind::Scope(scope::SIGNAL),
            Right::AuditLogNewExec => Kind::RestrictFlag(restrict::LOG_NEW_EXEC_ON),
        }
    }
}

impl std::fmt::Display for Right {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The filesystem rights a kernel of ABI `abi` knows (0 for no Landlock). Capped at
/// [`MAX_KNOWN_ABI`].
pub fn fs_rights(abi: u32) -> u64 {
    Right::ALL
        .iter()
        .filter(|r| r.since_abi() <= abi)
        .filter_map(|r| match r.kind() {
            Kind::Fs(bit) => Some(bit),
            _ => None,
        })
        .fold(0, |acc, bit| acc | bit)
}

/// The network rights a kernel of ABI `abi` knows.
pub fn net_rights(abi: u32) -> u64 {
    if abi >= 4 {
        net::BIND_TCP | net::CONNECT_TCP
    } else {
        0
    }
}

/// The scopes a kernel of ABI `abi` knows.
pub fn scopes(abi: u32) -> u64 {
    if abi >= 6 {
        scope::ABSTRACT_UNIX_SOCKET | scope::SIGNAL
    } else {
        0
    }
}

/// Size of `struct landlock_ruleset_attr` as a kernel of ABI `abi` knows it. Passing the
/// size the kernel expects keeps us clear of E2BIG on older kernels.
pub(crate) fn ruleset_attr_size(abi: u32) -> usize {
    match abi {
        0..=3 => 8,
        4 | 5 => 16,
        _ => 24,
    }
}

/// Why Landlock cannot be used on this host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Unavailable {
    /// ENOSYS: the kernel was built without `CONFIG_SECURITY_LANDLOCK` (or is older than 5.13),
    /// or a seccomp filter hides the syscall.
    NotBuilt,
    /// EOPNOTSUPP: Landlock is built but not enabled at boot (the `lsm=` list lacks it).
    DisabledAtBoot,
    /// Any other errno from the version query.
    Other {
        /// The errno.
        errno: i32,
    },
}

impl Unavailable {
    /// A reason a person can act on.
    pub fn reason(self) -> String {
        match self {
            Unavailable::NotBuilt => {
                "Landlock is not supported by this kernel (ENOSYS: built without \
                 CONFIG_SECURITY_LANDLOCK, older than 5.13, or the syscall is filtered)"
                    .to_string()
            }
            Unavailable::DisabledAtBoot => {
                "Landlock is built into this kernel but disabled at boot \
                 (EOPNOTSUPP: add landlock to the lsm= kernel parameter or CONFIG_LSM)"
                    .to_string()
            }
            Unavailable::Other { errno } => format!(
                "querying the Landlock ABI failed: {}",
                std::io::Error::from_raw_os_error(errno)
            ),
        }
    }

    pub(crate) fn from_errno(errno: i32) -> Self {
        match errno {
            libc::ENOSYS => Unavailable::NotBuilt,
            libc::EOPNOTSUPP => Unavailable::DisabledAtBoot,
            errno => Unavailable::Other { errno },
        }
    }
}

impl std::fmt::Display for Unavailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.reason())
    }
}

impl std::error::Error for Unavailable {}

/// What the host supports: its Landlock ABI, or why there is none. `prepare` takes this, so a
/// caller may also pass a lower ABI than the kernel's (tests use that to check old-ABI
/// behaviour on a new kernel).
pub type HostSupport = Result<u32, Unavailable>;

/// Ask the kernel for its Landlock ABI version.
///
/// # Errors
/// [`Unavailable`] with the reason: not built (ENOSYS), disabled at boot (EOPNOTSUPP), other.
pub fn detect_abi() -> HostSupport {
    match sys::create_ruleset_query(CREATE_RULESET_VERSION) {
        Ok(v) if v > 0 => Ok(u32::try_from(v).unwrap_or(u32::MAX)),
        // A kernel answering 0 or a negative number is not following the ABI; treat it as
        // absent rather than guessing.
        Ok(_) => Err(Unavailable::Other {
            errno: libc::EINVAL,
        }),
        Err(errno) => Err(Unavailable::from_errno(errno)),
    }
}

/// Ask the kernel which Landlock errata it has fixed: bit N-1 set means erratum N is fixed.
/// `None` when the kernel predates the query (it was added in 6.15 and backported).
pub fn detect_errata() -> Option<u32> {
    sys::create_ruleset_query(CREATE_RULESET_ERRATA)
        .ok()
        .and_then(|v| u32::try_from(v).ok())
}

/// Erratum 1 (ABI 4): non-TCP stream sockets (SMC, MPTCP, SCTP) were restricted by TCP rights.
pub const ERRATUM_TCP_SOCKET_IDENTIFICATION: u32 = 1 << 0;
/// Erratum 2 (ABI 6): signal scoping blocked signals between threads of one process.
pub const ERRATUM_SCOPED_SIGNAL_THREADS: u32 = 1 << 1;
/// Erratum 3 (ABI 1): disconnected directories could widen rights through rename/link.
pub const ERRATUM_DISCONNECTED_DIRECTORY: u32 = 1 << 2;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fs_rights_grow_with_abi() {
        assert_eq!(fs_rights(0), 0);
        assert_eq!(fs_rights(1), (1 << 13) - 1);
        assert_eq!(fs_rights(2), fs_rights(1) | fs::REFER);
        assert_eq!(fs_rights(3), fs_rights(2) | fs::TRUNCATE);
        assert_eq!(fs_rights(4), fs_rights(3));
        assert_eq!(fs_rights(5), fs_rights(4) | fs::IOCTL_DEV);
        assert_eq!(fs_rights(8), fs_rights(5));
        assert_eq!(fs_rights(9), fs_rights(8) | fs::RESOLVE_UNIX);
        assert_eq!(fs_rights(100), fs_rights(9));
    }

    #[test]
    fn net_and_scope_by_abi() {
        assert_eq!(net_rights(3), 0);
        assert_eq!(net_rights(4), 3);
        assert_eq!(scopes(5), 0);
        assert_eq!(scopes(6), 3);
        assert_eq!(ruleset_attr_size(1), 8);
        assert_eq!(ruleset_attr_size(4), 16);
        assert_eq!(ruleset_attr_size(7), 24);
    }

    #[test]
    fn right_names_match_serde() {
        for r in Right::ALL {
            let json = serde_json::to_string(&r).expect("a unit enum serializes");
            assert_eq!(json, format!("\"{}\"", r.name()));
            assert!(r.since_abi() >= 1 && r.since_abi() <= MAX_KNOWN_ABI);
        }
    }

    #[test]
    fn file_rights_are_a_subset_of_fs() {
        assert_eq!(fs::FILE & !fs_rights(MAX_KNOWN_ABI), 0);
        assert_eq!(fs::FILE & fs::READ_DIR, 0);
    }

    #[test]
    fn unavailable_reasons_are_distinct() {
        assert_eq!(Unavailable::from_errno(libc::ENOSYS), Unavailable::NotBuilt);
        assert_eq!(
            Unavailable::from_errno(libc::EOPNOTSUPP),
            Unavailable::DisabledAtBoot
        );
        assert!(Unavailable::NotBuilt.reason().contains("ENOSYS"));
        assert!(Unavailable::DisabledAtBoot.reason().contains("lsm="));
        assert!(Unavailable::from_errno(libc::EPERM)
            .reason()
            .contains("not permitted"));
    }
}
