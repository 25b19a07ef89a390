//! The operation table: what the probe tries, one function per operation.
//!
//! Each area module (`fs`, `protected`, `proc`, `net`, `kernel`, `hygiene`, `resources`,
//! `info`; `protected` holds `fs` ops too) exports `pub const OPS: &[Op]`; [`all`] chains them in that order, which is also the output order.
//! Ids are stable (`area.verb.object`) and never reused.
//!
//! Every op runs in its own forked child (see `runner`), so an op may change per-process
//! state (chroot, unshare, personality, ptrace TRACEME) without affecting the next one, and a
//! seccomp kill costs one row. Ops are non-destructive on any host, even as root without a
//! sandbox: privileged syscalls get an argument the kernel rejects only *after* its
//! permission check, files are opened for writing and closed without a byte written, and
//! anything created lives under the probe's scratch directory and is removed at once.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::path::{Path, PathBuf};

use crate::errno::Errno;
use crate::schema::Category;

pub mod egress;
pub mod fs;
pub mod hygiene;
pub mod info;
pub mod kernel;
pub mod net;
pub mod proc;
pub mod protected;
pub mod resources;

/// Default time an op child may take before it is killed.
pub const DEFAULT_TIMEOUT_MS: u32 = 2000;

/// One probe operation.
#[derive(Debug, Clone, Copy)]
pub struct Op {
    /// Stable id, `area.verb.object`.
    pub id: &'static str,
    /// Human title.
    pub title: &'static str,
    /// Area.
    pub category: Category,
    /// Longest run time in milliseconds before the op child is killed, at the default
    /// `--timeout-ms`; resource ops get more.
    pub timeout_ms: u32,
    /// The operation; runs in a forked child.
    pub run: fn(&Ctx) -> Outcome,
}

impl Op {
    /// An op with the default timeout.
    pub const fn new(
        id: &'static str,
        title: &'static str,
        category: Category,
        run: fn(&Ctx) -> Outcome,
    ) -> Op {
        Op {
            id,
            title,
            category,
            timeout_ms: DEFAULT_TIMEOUT_MS,
            run,
        }
    }

    /// The same op with a longer time budget.
    pub const fn with_timeout(self, timeout_ms: u32) -> Op {
        Op { timeout_ms, ..self }
    }
}

/// Every op in table order.
pub fn all() -> impl Iterator<Item = &'static Op> {
    [
        fs::OPS,
        protected::OPS,
        proc::OPS,
        net::OPS,
        egress::OPS,
        kernel::OPS,
        hygiene::OPS,
        resources::OPS,
        info::OPS,
    ]
    .into_iter()
    .flatten()
}

/// What an op observed, before it becomes an [`crate::schema::OpResult`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Permitted. `errno` is the error that proved the permission check passed (e.g.
    /// EINVAL from a deliberately bad argument), None if the call succeeded.
    Allowed {
        errno: Option<Errno>,
        detail: String,
    },
    /// Refused with this errno.
    Blocked { errno: Errno, detail: String },
    /// Not tried, with the reason.
    Skipped(String),
    /// An informational value.
    Info(String),
}

impl Outcome {
    /// Succeeded outright.
    pub fn allowed(detail: impl Into<String>) -> Outcome {
        Outcome::Allowed {
            errno: None,
            detail: detail.into(),
        }
    }

    /// Got past the permission check; `e` from a later, deliberate failure proves it.
    pub fn allowed_by(e: Errno, why: &str) -> Outcome {
        Outcome::Allowed {
            errno: Some(e),
            detail: format!("{}: {why}", e.message()),
        }
    }

    /// Refused; the detail is the errno message and what was tried.
    pub fn blocked(e: Errno, what: &str) -> Outcome {
        Outcome::Blocked {
            errno: e,
            detail: format!("{}: {what}", e.message()),
        }
    }

    /// Not tried.
    pub fn skipped(why: impl Into<String>) -> Outcome {
        Outcome::Skipped(why.into())
    }

    /// Information.
    pub fn info(value: impl Into<String>) -> Outcome {
        Outcome::Info(value.into())
    }
}

/// Classifies a privileged call made with a harmless argument: success or an errno in
/// `permitted` (raised after the permission check) is ALLOWED, anything else BLOCKED.
pub fn gate<T>(res: Result<T, Errno>, permitted: &[i32], what: &str) -> Outcome {
    match res {
        Ok(_) => Outcome::allowed(format!("succeeded: {what}")),
        Err(e) if permitted.contains(&e.0) => Outcome::allowed_by(
            e,
            &format!("{what} (this errno comes after the permission check)"),
        ),
        Err(e) => Outcome::blocked(e, what),
    }
}

/// Everything the ops may use: the bait the caller set up outside, limits, and the scratch
/// directory the runner created (removed when the run ends).
#[derive(Debug, Clone)]
pub struct Ctx {
    /// A process outside the sandbox, same uid as the caller.
    pub sentinel_pid: Option<i32>,
    /// A TCP listener on the host's 127.0.0.1.
    pub tcp_port: Option<u16>,
    /// A UDP echo socket on the host's 127.0.0.1.
    pub udp_port: Option<u16>,
    /// A filesystem unix socket listener outside.
    pub unix_path: Option<PathBuf>,
    /// A filesystem unix socket listener under a path bound read-only into the sandbox.
    pub unix_ro_path: Option<PathBuf>,
    /// An abstract unix socket listener outside (name without the leading NUL).
    pub abstract_name: Option<String>,
    /// A secret file outside the workspace.
    pub canary: Option<PathBuf>,
    /// The workspace directory (writable by design).
    pub workspace: Option<PathBuf>,
    /// A descriptor the caller left open on purpose.
    pub inherited_fd: Option<i32>,
    /// An environment variable holding a secret.
    pub secret_env: Option<String>,
    /// Description of a "user" key in the caller's session keyring.
    pub session_key: Option<String>,
    /// The host's namespace inodes by type (`net` -> inode), if the caller passed them.
    pub host_ns: BTreeMap<String, u64>,
    /// Identity `(st_dev, st_ino)` of host files by path, read outside by the caller, so a
    /// read inside can tell the host's file from a sandbox's own copy at the same path.
    pub host_inodes: BTreeMap<PathBuf, (u64, u64)>,
    /// `(st_dev, st_rdev)` of the caller's terminal, if the caller gave the sandbox one.
    pub host_tty: Option<(u64, u64)>,
    /// How many processes the fork op tries to create.
    pub fork_limit: u32,
    /// How much memory the memory op tries to touch, in MiB.
    pub mem_limit_mib: u64,
    /// The probe-owned scratch directory, or why there is none.
    pub scratch: Result<PathBuf, String>,
}

impl Default for Ctx {
    /// No bait, default limits, no scratch directory.
    fn default() -> Self {
        Ctx {
            sentinel_pid: None,
            tcp_port: None,
            udp_port: None,
            unix_path: None,
            unix_ro_path: None,
            abstract_name: None,
            canary: None,
            workspace: None,
            inherited_fd: None,
            secret_env: None,
            session_key: None,
            host_ns: BTreeMap::new(),
            host_inodes: BTreeMap::new(),
            host_tty: None,
            fork_limit: 2000,
            mem_limit_mib: 1024,
            scratch: Err("none created".into()),
        }
    }
}

impl Ctx {
    /// Creates `<scratch>/<name>` for one op (the op child removes what it puts inside).
    pub fn scratch_dir(&self, name: &str) -> Result<PathBuf, Outcome> {
        let base = self
            .scratch
            .as_ref()
            .map_err(|why| Outcome::skipped(format!("no scratch directory: {why}")))?;
        let dir = base.join(name);
        match std::fs::create_dir(&dir) {
            Ok(()) => Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(dir),
            Err(e) => Err(Outcome::skipped(format!(
                "cannot create scratch dir {}: {e}",
                dir.display()
            ))),
        }
    }
}

/// A path as a C string; a path with a NUL byte makes the op SKIPPED.
/// A name no other probe uses at the same time: the pid alone is not enough, because concurrent
/// probe runs (the matrix runs two at once) each have their own pid namespace, where the probe
/// often has the same pid, and share the workspace.
pub fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{prefix}-{}-{nanos}", crate::sys::getpid())
}

pub fn cpath(p: &Path) -> Result<CString, Outcome> {
    use std::os::unix::ffi::OsStrExt;
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| Outcome::skipped(format!("path {} contains a NUL byte", p.display())))
}

/// Turns `Result<Outcome, Outcome>` (early returns via `?`) into one outcome.
pub fn flatten(r: Result<Outcome, Outcome>) -> Outcome {
    r.unwrap_or_else(|o| o)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn ids_are_unique_and_well_formed() {
        let mut ids = HashSet::new();
        let mut titles = HashSet::new();
        for op in all() {
            assert!(ids.insert(op.id), "duplicate id {}", op.id);
            assert!(titles.insert(op.title), "duplicate title {}", op.title);
            let parts: Vec<&str> = op.id.split('.').collect();
            assert_eq!(parts.len(), 3, "id {} is not area.verb.object", op.id);
            assert!(
                op.id.bytes().all(|b| b.is_ascii_lowercase()
                    || b.is_ascii_digit()
                    || b == b'.'
                    || b == b'_'),
                "{}",
                op.id
            );
            let area = match op.category {
                Category::Kernel => "kernel",
                c => c.as_str(),
            };
            assert_eq!(
                parts[0], area,
                "id {} not in its category {}",
                op.id, op.category
            );
        }
        assert!(ids.len() >= 45, "only {} ops", ids.len());
    }

    #[test]
    fn reference_titles_are_present() {
        let titles: HashSet<&str> = all().map(|o| o.title).collect();
        for t in [
            "read /etc/passwd",
            "read /etc/shadow",
            "read /proc/2/status",
            "write /evil",
            "open /dev/mem",
            "socket RAW ICMP",
            "connect 8.8.8.8:53",
            "ptrace TRACEME",
            "mount tmpfs /tmp",
            "kill(-1, SIGKILL)",
        ] {
            assert!(titles.contains(t), "missing reference op {t:?}");
        }
    }

    #[test]
    fn gate_classifies() {
        let ok: Result<(), Errno> = Ok(());
        assert!(matches!(
            gate(ok, &[], "x"),
            Outcome::Allowed { errno: None, .. }
        ));
        let inval: Result<(), Errno> = Err(Errno(libc::EINVAL));
        assert!(matches!(
            gate(inval, &[libc::EINVAL], "x"),
            Outcome::Allowed {
                errno: Some(Errno(libc::EINVAL)),
                ..
            }
        ));
        let perm: Result<(), Errno> = Err(Errno(libc::EPERM));
        assert!(matches!(
            gate(perm, &[libc::EINVAL], "x"),
            Outcome::Blocked {
                errno: Errno(libc::EPERM),
                ..
            }
        ));
    }
}
