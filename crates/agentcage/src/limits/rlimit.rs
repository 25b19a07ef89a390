//! Resource limits (setrlimit(2)): the floor that holds on every host, with or without cgroups.
//!
//! What they limit: `RLIMIT_NOFILE` (open files), `RLIMIT_FSIZE` (largest file written: a runaway
//! log cannot fill the disk in one file), `RLIMIT_CORE` = 0 (no core dumps of sandboxed secrets
//! into the workspace), and `RLIMIT_NPROC` only as a last resort when no pids cgroup is
//! available (see [`NprocMode`]). Memory is never limited with `RLIMIT_AS`: address-space limits
//! break JITs, Go and sanitizer runtimes that reserve large mappings; memory belongs to cgroups.
//!
//! Sides of the fork:
//! - [`prepare`] (parent): reads the caller's current limits, clamps every requested value to the
//!   current hard limit (an unprivileged process can never raise a hard limit, and we never try,
//!   even as root), and returns a fixed-size [`PreparedRlimits`] plus notes on what was clamped.
//! - [`apply`] (child after clone): `prlimit64(0, ...)` on each entry; no allocation, no locks.
//!   [`apply_to_pid`] does the same from the parent for a waiting child.
//!
//! Soft and hard limits are set to the same value so the sandbox cannot raise its soft limit
//! back. Man pages: getrlimit(2), prlimit(1).
//!

use std::io;

use serde::Serialize;

use super::value::format_size;
use super::{Enforcement, Limit, LimitRow, LimitsSpec, Note, NoteKind};
use crate::sys;

/// A resource limited with setrlimit(2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Resource {
    /// `RLIMIT_NOFILE`: one more than the highest fd number.
    Nofile,
    /// `RLIMIT_FSIZE`: largest file size written, in bytes (SIGXFSZ/EFBIG beyond).
    Fsize,
    /// `RLIMIT_CORE`: core dump size.
    Core,
    /// `RLIMIT_NPROC`: tasks per user (see [`NprocMode`]).
    Nproc,
}

impl Resource {
    /// The kernel's resource number.
    pub fn raw(self) -> libc::c_int {
        // The libc constants have a platform-specific integer type; all are small.
        (match self {
            Resource::Nofile => libc::RLIMIT_NOFILE,
            Resource::Fsize => libc::RLIMIT_FSIZE,
            Resource::Core => libc::RLIMIT_CORE,
            Resource::Nproc => libc::RLIMIT_NPROC,
        }) as libc::c_int
    }

    /// The resource with kernel number `raw`, if it is one of ours.
    pub fn from_raw(raw: libc::c_int) -> Option<Resource> {
        [
            Resource::Nofile,
            Resource::Fsize,
            Resource::Core,
            Resource::Nproc,
        ]
        .into_iter()
        .find(|r| r.raw() == raw)
    }

    /// The kernel's name, `RLIMIT_NOFILE`.
    pub fn name(self) -> &'static str {
        match self {
            Resource::Nofile => "RLIMIT_NOFILE",
            Resource::Fsize => "RLIMIT_FSIZE",
            Resource::Core => "RLIMIT_CORE",
            Resource::Nproc => "RLIMIT_NPROC",
        }
    }

    /// The limit it enforces (RLIMIT_NPROC stands in for pids).
    pub fn limit(self) -> Limit {
        match self {
            Resource::Nofile => Limit::Nofile,
            Resource::Fsize => Limit::Fsize,
            Resource::Core => Limit::Core,
            Resource::Nproc => Limit::Pids,
        }
    }
}

/// Whether and how `RLIMIT_NPROC` stands in for a missing pids cgroup.
///
/// `RLIMIT_NPROC` is checked at fork against a per-user task count (threads included). Since
/// Linux 5.14 the count is kept per (user namespace, uid): inside a fresh user namespace it
/// counts only the sandbox's own tasks of that uid, which makes it a usable per-sandbox cap.
/// Without a user namespace it counts every task of the host uid, other sandboxes and the
/// user's own session included, so the limit must add the tasks that uid already has. It does
/// not apply at all to real root or to tasks with CAP_SYS_RESOURCE/CAP_SYS_ADMIN in the initial
/// user namespace. Prefer `pids.max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NprocMode {
    /// A pids cgroup enforces the limit (or none is requested): leave RLIMIT_NPROC alone.
    Off,
    /// The sandbox runs in its own user namespace: RLIMIT_NPROC = pids.
    OwnUserNs,
    /// No user namespace: the sandbox shares the task count of `host_uid`;
    /// RLIMIT_NPROC = pids + the tasks `host_uid` has now.
    SharedUid {
        /// The real uid the sandboxed command runs as on the host.
        host_uid: u32,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    resource: Resource,
    value: u64,
}

/// Every rlimit to set in the child, built in the parent (fixed size, no heap).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PreparedRlimits {
    entries: [Entry; 4],
    len: usize,
}

impl PreparedRlimits {
    /// No limits at all (the `limits` layer is off).
    pub const NONE: PreparedRlimits = PreparedRlimits {
        entries: [Entry {
            resource: Resource::Core,
            value: 0,
        }; 4],
        len: 0,
    };

    fn push(&mut self, resource: Resource, value: u64) {
        // At most one entry per Resource variant: 4 slots always suffice.
        if self.len < self.entries.len() {
            self.entries[self.len] = Entry { resource, value };
            self.len += 1;
        }
    }

    /// The limits to set, as (resource, soft = hard value).
    pub fn iter(&self) -> impl Iterator<Item = (Resource, u64)> + '_ {
        self.entries[..self.len]
            .iter()
            .map(|e| (e.resource, e.value))
    }

    /// The value set for `r`, if any.
    pub fn get(&self, r: Resource) -> Option<u64> {
        self.iter().find(|(res, _)| *res == r).map(|(_, v)| v)
    }

    /// How each limit is enforced: nofile by `rlimit RLIMIT_NOFILE=4096`.
    pub fn enforcement(&self) -> Vec<LimitRow> {
        self.iter()
            .map(|(r, v)| {
                let shown = match r {
                    Resource::Fsize | Resource::Core => format_size(v),
                    _ => v.to_string(),
                };
                LimitRow::new(
                    r.limit(),
                    Enforcement::Rlimit,
                    format!("rlimit {}={shown}", r.name()),
                )
            })
            .collect()
    }
}

/// Preparing rlimits failed.
#[derive(Debug, thiserror::Error)]
pub enum RlimitError {
    /// Reading the caller's current limit failed.
    #[error("read the current {}", resource.name())]
    GetLimit {
        /// The resource.
        resource: Resource,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

fn prlimit(
    pid: libc::pid_t,
    r: Resource,
    new: Option<&libc::rlimit64>,
) -> Result<libc::rlimit64, i32> {
    crate::sys::prlimit64(pid, r.raw(), new).map_err(|e| e.0)
}

/// Builds the rlimits for `limits` in the parent, clamped to the caller's hard limits.
///
/// `nproc` says whether RLIMIT_NPROC must stand in for a missing pids cgroup. The notes say
/// what was clamped and what RLIMIT_NPROC does and does not cover; they are data for the
/// report, never printed here.
///
/// # Errors
/// [`RlimitError::GetLimit`] if the current limits cannot be read (never on Linux ≥ 2.6.36).
pub fn prepare(
    limits: &LimitsSpec,
    nproc: NprocMode,
) -> Result<(PreparedRlimits, Vec<Note>), RlimitError> {
    let mut p = PreparedRlimits::NONE;
    let mut notes = Vec::new();
    let mut wanted: Vec<(Resource, u64)> = Vec::with_capacity(4);
    if let Some(n) = limits.nofile {
        wanted.push((Resource::Nofile, n));
    }
    if let Some(f) = limits.fsize {
        wanted.push((Resource::Fsize, f));
    }
    if limits.no_core {
        wanted.push((Resource::Core, 0));
    }
    if let Some(pids) = limits.pids {
        match nproc {
            NprocMode::Off => {}
            NprocMode::OwnUserNs => {
                wanted.push((Resource::Nproc, pids));
                notes.push(Note::new(
                    Limit::Pids,
                    NoteKind::Partial,
                    format!(
                        "no pids cgroup: RLIMIT_NPROC={pids} instead; it counts the sandbox's tasks \
                         of its uid in its own user namespace, not tasks of other uids"
                    ),
                ));
            }
            NprocMode::SharedUid { host_uid } => {
                let existing = count_tasks_of_uid(host_uid);
                let v = pids.saturating_add(existing);
                wanted.push((Resource::Nproc, v));
                notes.push(Note::new(
                    Limit::Pids,
                    NoteKind::Partial,
                    format!(
                        "no pids cgroup: RLIMIT_NPROC={v} instead ({pids} + the {existing} tasks host uid \
                         {host_uid} already has); it counts every task of that uid on the host and does \
                         not bind root or CAP_SYS_RESOURCE"
                    ),
                ));
            }
        }
    }
    for (r, want) in wanted {
        let cur = prlimit(0, r, None).map_err(|e| RlimitError::GetLimit {
            resource: r,
            source: io::Error::from_raw_os_error(e),
        })?;
        let hard = cur.rlim_max;
        let value = if hard != libc::RLIM64_INFINITY && want > hard {
            notes.push(Note::new(
                r.limit(),
                NoteKind::Partial,
                format!(
                    "{} asked {want}, clamped to the caller's hard limit {hard}",
                    r.name()
                ),
            ));
            hard
        } else {
            want
        };
        p.push(r, value);
    }
    Ok((p, notes))
}

/// Sets every prepared limit on the calling process (soft = hard = the prepared value).
///
/// Runs in the child after clone: async-signal-safe only (no allocation, no locks).
///
/// # Errors
/// The first resource the kernel refused and its errno (EPERM: above the hard limit, which
/// `prepare` rules out unless the limit changed since; EINVAL: bad value).
pub fn apply(p: &PreparedRlimits) -> Result<(), (Resource, i32)> {
    apply_to_pid(p, 0)
}

/// Sets every prepared limit on process `pid` (0: the caller) with prlimit(2), e.g. from the
/// parent while the child waits. Needs the same uid as the target or CAP_SYS_RESOURCE.
///
/// Allocation-free, so also usable in the child.
///
/// # Errors
/// The first resource the kernel refused and its errno.
pub fn apply_to_pid(p: &PreparedRlimits, pid: libc::pid_t) -> Result<(), (Resource, i32)> {
    for e in &p.entries[..p.len] {
        let new = libc::rlimit64 {
            rlim_cur: e.value,
            rlim_max: e.value,
        };
        prlimit(pid, e.resource, Some(&new)).map_err(|errno| (e.resource, errno))?;
    }
    Ok(())
}

/// Per-user kernel counts of the sandbox's user namespace, capped so the sandbox cannot use
/// up the budget of the uid that owns it (issue 10, finding 6): inotify instances and
/// watches, fanotify groups and marks, namespaces (the `/proc/sys/user/max_*` ucount
/// limits, kept per user namespace) and queued signals (`RLIMIT_SIGPENDING`, which
/// `timer_create` also draws on).
///
/// The kernel charges a count at every user-namespace level up to the host's, where it lands
/// on the namespace's owner: the caller, or, as root, the sandbox's host uid (`launch`
/// creates the namespace as that uid). Each cap is half of the owner's own limit, so the
/// owner keeps the other half; concurrent sandboxes of one owner share its budget.
#[derive(Debug, Clone, Default)]
pub struct UserCaps {
    /// `(name, value)` pairs for `/proc/sys/user/*` ([`USER_SYSCTL_DIR`]), written by the
    /// sandbox's first process in its own user namespace (needs CAP_SYS_RESOURCE there).
    sysctls: Vec<(&'static std::ffi::CStr, Vec<u8>)>,
    /// `RLIMIT_SIGPENDING` (soft = hard).
    sigpending: Option<u64>,
}

/// The `/proc/sys/user` limits capped in the sandbox.
pub const USER_SYSCTLS: [&str; 12] = [
    "max_inotify_instances",
    "max_inotify_watches",
    "max_fanotify_groups",
    "max_fanotify_marks",
    "max_user_namespaces",
    "max_mnt_namespaces",
    "max_pid_namespaces",
    "max_net_namespaces",
    "max_ipc_namespaces",
    "max_uts_namespaces",
    "max_cgroup_namespaces",
    "max_time_namespaces",
];

/// [`USER_SYSCTLS`] as the child opens them (relative to [`USER_SYSCTL_DIR`]).
const USER_SYSCTL_NAMES: [&std::ffi::CStr; 12] = [
    c"max_inotify_instances",
    c"max_inotify_watches",
    c"max_fanotify_groups",
    c"max_fanotify_marks",
    c"max_user_namespaces",
    c"max_mnt_namespaces",
    c"max_pid_namespaces",
    c"max_net_namespaces",
    c"max_ipc_namespaces",
    c"max_uts_namespaces",
    c"max_cgroup_namespaces",
    c"max_time_namespaces",
];

/// Where the [`USER_SYSCTLS`] are.
pub const USER_SYSCTL_DIR: &std::ffi::CStr = c"/proc/sys/user";

/// One integer sysctl: one open and one read into a stack buffer (issue #19: a launch reads
/// twelve of these; `read_to_string` adds a statx for its size hint and a second read for
/// EOF to each). None when missing, unreadable or not a number.
fn read_sysctl_u64(path: &str) -> Option<u64> {
    use std::io::Read;
    let mut buf = [0u8; 32];
    let n = std::fs::File::open(path).ok()?.read(&mut buf).ok()?;
    // A full buffer may be a cut value: not a number we can trust (u64 needs 20 digits).
    if n == buf.len() {
        return None;
    }
    std::str::from_utf8(&buf[..n]).ok()?.trim().parse().ok()
}

fn half(v: u64) -> u64 {
    v.div_ceil(2)
}

impl UserCaps {
    /// Builds the caps in the parent from the caller's limits (its user namespace's
    /// `/proc/sys/user` values and its `RLIMIT_SIGPENDING`). Returns the caps and what could
    /// not be capped (say it: the run goes on without that cap).
    pub fn prepare() -> (UserCaps, Vec<String>) {
        let mut caps = UserCaps::default();
        let mut missing = Vec::new();
        // Written through the host's /proc before the sandbox's own is mounted: a read-only
        // /proc/sys (some container runtimes) cannot take them.
        let ro = std::ffi::CString::new("/proc/sys/user")
            .ok()
            .and_then(|p| crate::sys::statvfs_flags(&p).ok())
            .is_none_or(|f| f & libc::ST_RDONLY != 0);
        if ro {
            missing.push(
                "per-user counts (inotify, fanotify, namespaces) not capped: /proc/sys/user is \
                 missing or read-only here"
                    .to_string(),
            );
        } else {
            for (name, cname) in USER_SYSCTLS.iter().zip(USER_SYSCTL_NAMES) {
                let path = format!("/proc/sys/user/{name}");
                // A kernel without fanotify or time namespaces has no such file: nothing to cap.
                let Some(v) = read_sysctl_u64(&path) else {
                    continue;
                };
                caps.sysctls.push((cname, half(v).to_string().into_bytes()));
            }
        }
        match sys::prlimit64(0, libc::RLIMIT_SIGPENDING as libc::c_int, None) {
            Err(_) => {
                missing.push("RLIMIT_SIGPENDING not capped: cannot read the caller's".to_string())
            }
            Ok(old) if old.rlim_cur != libc::RLIM64_INFINITY => {
                caps.sigpending = Some(half(old.rlim_cur));
            }
            Ok(_) => {}
        }
        (caps, missing)
    }

    /// What is capped, for `run -v`: `max_inotify_instances=64, ..., RLIMIT_SIGPENDING=N`
    /// (the namespace counts, one value each in practice, as `max_*_namespaces=N`).
    pub fn describe(&self) -> String {
        let mut parts: Vec<String> = Vec::new();
        let mut ns: Vec<String> = Vec::new();
        for (name, v) in &self.sysctls {
            let name = name.to_string_lossy();
            let v = String::from_utf8_lossy(v).into_owned();
            if name.ends_with("_namespaces") {
                if !ns.contains(&v) {
                    ns.push(v);
                }
            } else {
                parts.push(format!("{name}={v}"));
            }
        }
        if !ns.is_empty() {
            parts.push(format!("max_*_namespaces={}", ns.join("/")));
        }
        if let Some(v) = self.sigpending {
            parts.push(format!("RLIMIT_SIGPENDING={v}"));
        }
        parts.join(", ")
    }

    /// Writes each of [`UserCaps::sysctls`] relative to `dir`.
    ///
    /// Runs in the child after clone: async-signal-safe only.
    fn write_sysctls(&self, dir: i32) -> Result<(), (u32, sys::Errno)> {
        for (i, (name, value)) in self.sysctls.iter().enumerate() {
            let at = |e| (i as u32, e);
            let fd = sys::openat_raw(dir, name, libc::O_WRONLY, 0).map_err(at)?;
            let r = sys::write_all(fd, value);
            sys::close(fd);
            r.map_err(at)?;
        }
        Ok(())
    }

    /// The path of sysctl entry `i` (for error messages); past RLIMIT_SIGPENDING's index
    /// (`sysctls.len()`), the directory they are opened in.
    pub fn sysctl_path(&self, i: usize) -> Option<String> {
        let dir = USER_SYSCTL_DIR.to_string_lossy();
        match self.sysctls.get(i) {
            Some((name, _)) => Some(format!("{dir}/{}", name.to_string_lossy())),
            None if i > self.sysctls.len() => Some(format!("{dir}/ (opened for the writes)")),
            None => None,
        }
    }

    /// Writes the caps in the sandbox's user namespace, then sets RLIMIT_SIGPENDING.
    ///
    /// Runs in the child after clone: async-signal-safe only (no allocation, no locks).
    ///
    /// # Errors
    /// The index of the failing entry (`sysctls.len()` for RLIMIT_SIGPENDING,
    /// `sysctls.len() + 1` for opening [`USER_SYSCTL_DIR`]) and the errno.
    pub fn apply(&self) -> Result<(), (u32, sys::Errno)> {
        if !self.sysctls.is_empty() {
            // One walk to the directory, then one component per file (was the whole path
            // each time). Opened here, not by the launcher: the entries a lookup in
            // /proc/sys/user finds are those of the looking process's user namespace, ours.
            let n = self.sysctls.len() as u32;
            let dir = sys::open(USER_SYSCTL_DIR, libc::O_PATH | libc::O_DIRECTORY, 0)
                .map_err(|e| (n + 1, e))?;
            let r = self.write_sysctls(dir);
            sys::close(dir);
            r?;
        }
        if let Some(v) = self.sigpending {
            let new = libc::rlimit64 {
                rlim_cur: v,
                rlim_max: v,
            };
            sys::prlimit64(0, libc::RLIMIT_SIGPENDING as libc::c_int, Some(&new))
                .map_err(|e| (self.sysctls.len() as u32, e))?;
        }
        Ok(())
    }
}

/// Tasks (threads included) whose real uid is `uid`, from `/proc/*/status`. Bounded by the
/// number of /proc entries; processes that exit while we scan are skipped.
fn count_tasks_of_uid(uid: u32) -> u64 {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0;
    };
    let mut total = 0u64;
    for entry in dir.flatten().take(1 << 22) {
        let name = entry.file_name();
        if !name.as_encoded_bytes().iter().all(u8::is_ascii_digit) {
            continue;
        }
        let Ok(status) = std::fs::read_to_string(entry.path().join("status")) else {
            continue;
        };
        let field = |key: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.split_whitespace().next())
        };
        if field("Uid:").and_then(|u| u.parse::<u32>().ok()) == Some(uid) {
            total += field("Threads:")
                .and_then(|t| t.parse::<u64>().ok())
                .unwrap_or(1);
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_caps_error_indexes_name_the_file_the_limit_or_the_dir() {
        let caps = UserCaps {
            sysctls: vec![
                (USER_SYSCTL_NAMES[0], b"64".to_vec()),
                (USER_SYSCTL_NAMES[4], b"7".to_vec()),
            ],
            sigpending: Some(9),
        };
        assert_eq!(
            caps.sysctl_path(0).as_deref(),
            Some("/proc/sys/user/max_inotify_instances")
        );
        assert_eq!(
            caps.sysctl_path(1).as_deref(),
            Some("/proc/sys/user/max_user_namespaces")
        );
        // RLIMIT_SIGPENDING: no path (the caller names the setrlimit).
        assert_eq!(caps.sysctl_path(2), None);
        assert_eq!(
            caps.sysctl_path(3).as_deref(),
            Some("/proc/sys/user/ (opened for the writes)")
        );
        assert_eq!(
            caps.describe(),
            "max_inotify_instances=64, max_*_namespaces=7, RLIMIT_SIGPENDING=9"
        );
        for (name, c) in USER_SYSCTLS.iter().zip(USER_SYSCTL_NAMES) {
            assert_eq!(c.to_str(), Ok(*name));
        }
    }

    #[test]
    fn sysctls_read_in_one_go_match_the_whole_file() {
        let mut seen = 0;
        for name in USER_SYSCTLS {
            let path = format!("/proc/sys/user/{name}");
            let whole = std::fs::read_to_string(&path)
                .ok()
                .and_then(|t| t.trim().parse::<u64>().ok());
            assert_eq!(read_sysctl_u64(&path), whole, "{path}");
            seen += usize::from(whole.is_some());
        }
        assert!(seen > 0, "no /proc/sys/user value read on this host");
        assert_eq!(read_sysctl_u64("/proc/sys/user/no_such_sysctl"), None);
        // Not a number, and text longer than the buffer whose first 32 bytes parse: refused,
        // not cut.
        let dir = std::env::temp_dir().join(format!("agentcage-sysctl-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let f = dir.join("v");
        std::fs::write(&f, "abc\n").expect("write");
        assert_eq!(read_sysctl_u64(f.to_str().expect("utf-8")), None);
        std::fs::write(&f, format!("12345{}6\n", " ".repeat(30))).expect("write");
        assert_eq!(read_sysctl_u64(f.to_str().expect("utf-8")), None);
        std::fs::write(&f, "12345\n").expect("write");
        assert_eq!(read_sysctl_u64(f.to_str().expect("utf-8")), Some(12345));
        std::fs::remove_dir_all(&dir).expect("remove temp dir");
    }

    #[test]
    fn prepare_clamps_and_builds_entries() {
        let l = LimitsSpec {
            nofile: Some(4096),
            fsize: Some(1 << 20),
            no_core: true,
            pids: Some(64),
            ..Default::default()
        };
        let (p, notes) = prepare(&l, NprocMode::Off).unwrap();
        assert_eq!(p.get(Resource::Core), Some(0));
        assert_eq!(p.get(Resource::Fsize), Some(1 << 20));
        assert_eq!(
            p.get(Resource::Nproc),
            None,
            "pids cgroup present: no NPROC"
        );
        let hard = prlimit(0, Resource::Nofile, None).unwrap().rlim_max;
        assert_eq!(p.get(Resource::Nofile), Some(4096.min(hard)));
        assert_eq!(notes.iter().any(|n| n.limit == Limit::Nofile), hard < 4096);

        // Far above any hard limit: clamped and noted, never raised.
        let l = LimitsSpec {
            nofile: Some(u64::MAX - 1),
            ..Default::default()
        };
        let (p, notes) = prepare(&l, NprocMode::Off).unwrap();
        assert_eq!(p.get(Resource::Nofile), Some(hard));
        assert!(
            notes[0]
                .message
                .contains("clamped to the caller's hard limit"),
            "{notes:?}"
        );

        let l = LimitsSpec {
            pids: Some(64),
            ..Default::default()
        };
        let (p, notes) = prepare(&l, NprocMode::OwnUserNs).unwrap();
        assert_eq!(p.get(Resource::Nproc), Some(64));
        assert_eq!(notes[0].kind, NoteKind::Partial);
        assert_eq!(
            crate::limits::tests::pairs(&p.enforcement()),
            vec![("pids".to_owned(), "rlimit RLIMIT_NPROC=64".to_owned())]
        );
    }

    #[test]
    fn defaults_are_sane() {
        let d = crate::limits::default_limits();
        assert_eq!(d.pids, Some(1024));
        assert_eq!(d.nofile, Some(4096));
        assert!(d.no_core);
        assert_eq!(d.cpus, None);
        assert_eq!(d.timeout, None);
        let mem = d.memory.expect("/proc/meminfo readable here");
        let total = crate::limits::host_memory().unwrap();
        assert!(
            mem <= total / 2 && mem > total / 2 - (1 << 20),
            "{mem} vs {total}"
        );
        assert_eq!(d.validate(), Ok(()));
    }
}
