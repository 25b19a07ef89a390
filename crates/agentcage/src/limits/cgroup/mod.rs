//! Control groups: a per-run leaf cgroup that caps memory, tasks and CPU, tracks every process
//! of the sandbox and tears all of them down.
//!
//! What it isolates: a fork bomb hits `pids.max` (fork fails with EAGAIN), a memory hog is
//! OOM-killed inside its own cgroup instead of pushing the host into swap or the global OOM
//! killer, a CPU spinner gets its quota. Membership is inherited by every descendant and cannot
//! be left without write access to cgroupfs, so the leaf is also how the launcher finds and
//! kills everything the command spawned, double-forked daemons included.
//!
//! Layouts, detected from `/proc/self/mountinfo` and `/proc/self/cgroup`, never assumed:
//! - **cgroup v2** (unified): the leaf goes under the nearest ancestor of our own cgroup that we
//!   can write and whose `cgroup.subtree_control` has (or accepts) the controllers we need:
//!   `memory.max`, `memory.swap.max` = 0, `pids.max`, `cpu.max`; `cgroup.kill` (5.14) tears
//!   down, `memory.events` `oom_kill` detects OOM, `memory.peak` (5.19) reports usage. Our own
//!   cgroup rarely qualifies: v2's "no internal processes" rule forbids enabling controllers
//!   where processes (we) live. A writable v2 tree without controllers still gets a leaf, for
//!   `cgroup.kill`.
//! - **cgroup v1**, for each controller the v2 tree does not have: `memory`
//!   (`memory.limit_in_bytes`, `memory.memsw.limit_in_bytes` when swap accounting is on,
//!   `memory.oom_control`, `memory.max_usage_in_bytes`), `pids` (`pids.max`), `cpu`
//!   (`cpu.cfs_quota_us`) and `freezer` (to stop processes before killing them). v1 has no
//!   internal-process rule, so the leaf goes under our own cgroup in each hierarchy, and the
//!   limits of the cgroup we were started in still apply to the sandbox.
//! - **Neither writable** (an unprivileged caller without a delegated subtree): no leaf, and a
//!   [`Note`] per requested limit says it is not enforced and why. rlimits stay as the floor.
//!
//! Naming: `<base>/agentcage/agentcage-<launcher pid>-<random>/` holds the limits; the processes
//! live one level down in `.../sandbox/`, so a sandbox that can see its own cgroup (a cgroup
//! namespace rooted there) never sees the files holding its limits. [`reap_stale`] removes
//! leaves whose launcher died without cleaning up (SIGKILL).
//!
//! Files: `layout.rs` (the hierarchies and our place in them), `v2.rs` and `v1.rs` (where the
//! leaf goes in each, how limits are written), this one (`prepare`: the leaf made and its
//! limits written), `leaf.rs` (the leaf during and after the run), `reap.rs` (stale leaves).
//!
//! Sides of the fork: everything here runs in the parent. [`prepare`] creates the leaf and writes
//! the limits before clone. On v1 the launcher then moves its own thread into the leaf
//! ([`PreparedCgroup::enter_self`], `0` to `sandbox/tasks`), clones the sandbox, which is born
//! in the leaf, and moves back ([`PreparedCgroup::leave_self`]). Moving the calling thread is
//! the one migration the kernel does without taking the global `cgroup_threadgroup_rwsem` for
//! writing, whose RCU grace period made a pid write to `cgroup.procs` cost 2 to 16 ms here
//! (issue 19). Leaves where that is not possible (v2: only whole processes move; our own
//! cgroup not known exactly or not writable) get [`PreparedCgroup::attach_from_parent`], which
//! writes the child's pid (to fds opened by `prepare`, without allocating) while the child
//! waits for the parent. The child itself never touches cgroupfs. Man pages: cgroups(7), cgroup_namespaces(7); kernel
//! docs: admin-guide/cgroup-v2.rst, admin-guide/cgroup-v1/{memory,pids,freezer-subsystem}.rst.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::sys;

use super::value::{format_cpus, format_size, ParseError};
use super::{Enforcement, Limit, LimitRow, LimitsSpec, Note, NoteKind};

mod layout;
mod leaf;
mod reap;
mod v1;
mod v2;

pub use leaf::in_leaf;
use leaf::teardown;

use layout::{choose, wanted, Choice, Probe};
pub use layout::{detect_layout, Hierarchy, Layout};
pub use layout::{Ctl, Version};
pub use reap::{process_state, reap_in, reap_stale, ReapReport};

pub use crate::host::cgroup_layout::PARENT_DIR;
/// Leaf names are `agentcage-<launcher pid>-<random hex>`.
pub const LEAF_PREFIX: &str = "agentcage-";
/// The sub-directory of a leaf that holds the processes.
pub const PROCS_DIR: &str = "sandbox";
/// The CFS period used for CPU quotas, in microseconds.
pub const CPU_PERIOD_US: u64 = 100_000;

/// A cgroup operation failed.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// The limits are out of range.
    #[error("invalid resource limits")]
    InvalidLimits(#[source] ParseError),
    /// Reading a proc or cgroup file failed.
    #[error("read {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Creating a cgroup directory failed.
    #[error("create cgroup {}", path.display())]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Writing a cgroup control file failed.
    #[error("write {value:?} to {}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// What was written.
        value: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Opening a cgroup file or directory failed.
    #[error("open {}", path.display())]
    Open {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Moving the child into the leaf failed.
    #[error("attach pid {pid} to {}", path.display())]
    AttachPid {
        /// The child.
        pid: i32,
        /// The `cgroup.procs` file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Removing a cgroup directory failed (processes still in it after the kill loop).
    #[error("remove cgroup {}", path.display())]
    RemoveDir {
        /// The directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

// ---------------------------------------------------------------------------------------------
// Small file helpers

/// Writes `value` with a single write(2), as cgroupfs expects; no O_CREAT, no O_TRUNC.
fn write_file(path: &Path, value: &str) -> Result<(), CgroupError> {
    let err = |source| CgroupError::Write {
        path: path.to_path_buf(),
        value: value.to_owned(),
        source,
    };
    let mut f = OpenOptions::new().write(true).open(path).map_err(err)?;
    let n = f.write(value.as_bytes()).map_err(err)?;
    if n != value.len() {
        return Err(err(io::Error::new(io::ErrorKind::WriteZero, "short write")));
    }
    Ok(())
}

/// Creates `dir`; Ok(true) if we created it, Ok(false) if it existed.
fn mkdir(dir: &Path) -> io::Result<bool> {
    match fs::create_dir(dir) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e),
    }
}

/// Creates `dir` if missing and checks that we may create leaves in it (another user's run
/// may have created it). Ok(true) if we created it.
fn mkdir_writable(dir: &Path) -> io::Result<bool> {
    let created = mkdir(dir)?;
    if !created {
        dir_writable(dir)?;
    }
    Ok(created)
}

/// Whether the effective ids may create and remove entries in `dir` (faccessat W_OK|X_OK).
fn dir_writable(dir: &Path) -> io::Result<()> {
    let c = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes())
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    sys::dir_writable_by_effective_ids(&c).map_err(|e| io::Error::from_raw_os_error(e.0))
}

/// The run's probe for [`choose`]: makes the leaves' parent and enables controllers as it
/// goes (doctor's is `host`'s `LookProbe`, which only looks).
struct RunProbe;

impl Probe for RunProbe {
    fn leaf_parent(&mut self, dir: &Path) -> io::Result<bool> {
        mkdir_writable(dir)
    }

    fn controllers(&mut self, base: &Path, want: &[Ctl]) -> (Vec<String>, Vec<String>) {
        let available = words(&base.join("cgroup.controllers"));
        let mut enabled = words(&base.join("cgroup.subtree_control"));
        for c in want {
            let n = c.name();
            if available.iter().any(|a| a == n) && !enabled.iter().any(|e| e == n) {
                // EBUSY where processes live (our own cgroup): that is v2's rule, not an error.
                if write_file(&base.join("cgroup.subtree_control"), &format!("+{n}")).is_ok() {
                    enabled.push(n.to_owned());
                }
            }
        }
        (available, enabled)
    }

    fn discard(&mut self, dir: &Path) {
        let _ = fs::remove_dir(dir);
    }
}

fn words(path: &Path) -> Vec<String> {
    fs::read_to_string(path)
        .map(|s| s.split_whitespace().map(str::to_owned).collect())
        .unwrap_or_default()
}

/// The `key N` line of a flat-keyed file such as `memory.events`.
fn keyed(path: &Path, key: &str) -> Option<u64> {
    let text = fs::read_to_string(path).ok()?;
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

fn read_u64(path: &Path) -> Option<u64> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

fn host_has_swap() -> bool {
    fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("SwapTotal:"))
                .map(|v| v.trim().trim_end_matches("kB").trim() != "0")
        })
        .unwrap_or(false)
}

pub fn random_u64() -> u64 {
    if let Some(buf) = sys::random_8() {
        return u64::from_ne_bytes(buf);
    }
    let buf = [0u8; 8];
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    t ^ (u64::from(std::process::id()) << 32) ^ (&buf as *const _ as u64)
}

// ---------------------------------------------------------------------------------------------
// The prepared leaf

#[derive(Debug)]
struct Leaf {
    version: Version,
    /// Controllers of this hierarchy that limit or account the sandbox here.
    roles: Vec<Ctl>,
    /// `<base>/agentcage`.
    parent: PathBuf,
    /// `<base>/agentcage/<name>`: holds the limits.
    dir: PathBuf,
    /// `<dir>/sandbox/cgroup.procs`, open for writing (None for reaped stale leaves).
    procs: Option<File>,
    /// v1 only: `<dir>/sandbox/tasks` and our own cgroup's `tasks` (and its path), open for
    /// writing, to move the launcher's thread in before clone and back after it.
    self_move: Option<(File, File, PathBuf)>,
}

impl Leaf {
    fn inner(&self) -> PathBuf {
        self.dir.join(PROCS_DIR)
    }
    fn has(&self, c: Ctl) -> bool {
        self.roles.contains(&c)
    }
}

/// A per-run leaf cgroup in every usable hierarchy, with the limits written. Removed (processes
/// killed, directories deleted) by [`PreparedCgroup::remove`], or best-effort on drop.
#[derive(Debug)]
pub struct PreparedCgroup {
    name: String,
    leaves: Vec<Leaf>,
    enforcement: Vec<LimitRow>,
    memory_limit: Option<u64>,
    removed: bool,
}

impl PreparedCgroup {
    /// Forgets the leaf without removing it, as a SIGKILLed launcher would (for reap tests).
    #[doc(hidden)]
    pub fn forget(mut self) {
        self.removed = true;
    }
}

/// Creates the run's leaf cgroup(s) and writes `limits`.
///
/// Returns `None` with notes when no hierarchy is writable (unprivileged, nothing delegated);
/// otherwise the leaf and notes on whatever is weaker than asked (a controller missing, swap
/// not covered). Call before clone; attach the child with
/// [`PreparedCgroup::attach_from_parent`] while it waits.
///
/// # Errors
/// Invalid limits, or an unexpected failure creating the leaf or writing a limit (the partial
/// leaf is removed before returning). Missing permissions are notes, not errors.
pub fn prepare(limits: &LimitsSpec) -> Result<(Option<PreparedCgroup>, Vec<Note>), CgroupError> {
    prepare_with(limits, Teardown::Cgroup)
}

/// Who takes the whole sandbox down at the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Teardown {
    /// The cgroup must be able to kill every member (no pid namespace): a v2 leaf for
    /// `cgroup.kill` even without controllers, or the v1 freezer for a race-free kill loop.
    Cgroup,
    /// A pid namespace does it (its init's death kills every member): leaves are created
    /// only where they carry a limit. Each extra leaf costs a mkdir, an attach and an rmdir.
    PidNamespace,
}

/// [`prepare`], knowing who tears the sandbox down.
///
/// # Errors
/// As [`prepare`].
pub fn prepare_with(
    limits: &LimitsSpec,
    teardown: Teardown,
) -> Result<(Option<PreparedCgroup>, Vec<Note>), CgroupError> {
    prepare_on(&detect_layout()?, limits, teardown)
}

/// [`prepare_with`] on a layout the caller already detected.
///
/// # Errors
/// As [`prepare`].
pub fn prepare_on(
    layout: &Layout,
    limits: &LimitsSpec,
    teardown: Teardown,
) -> Result<(Option<PreparedCgroup>, Vec<Note>), CgroupError> {
    limits.validate().map_err(CgroupError::InvalidLimits)?;
    let name = format!("{LEAF_PREFIX}{}-{:016x}", std::process::id(), random_u64());
    prepare_in(layout, limits, &name, teardown)
}

#[doc(hidden)]
pub fn prepare_in(
    layout: &Layout,
    limits: &LimitsSpec,
    name: &str,
    teardown: Teardown,
) -> Result<(Option<PreparedCgroup>, Vec<Note>), CgroupError> {
    let want = wanted(limits);
    let kill = teardown == Teardown::Cgroup;
    let chosen = choose(layout, &want, kill, &mut RunProbe);
    let why = chosen.why();
    let choices: Vec<Choice> = chosen.choices;

    let mut notes = Vec::new();
    if choices.is_empty() {
        let reason = if why.is_empty() {
            "no cgroup hierarchy mounted".to_owned()
        } else {
            why.join("; ")
        };
        for limit in [Limit::Pids, Limit::Memory, Limit::Cpus] {
            if limits.asks(limit) {
                notes.push(Note::new(
                    limit,
                    NoteKind::NotEnforced,
                    format!(
                        "no writable cgroup ({reason}); run as root or inside a delegated cgroup v2 \
                         subtree (e.g. systemd-run --user --scope -p Delegate=yes)"
                    ),
                ));
            }
        }
        return Ok((None, notes));
    }

    let mut cg = PreparedCgroup {
        name: name.to_owned(),
        leaves: Vec::new(),
        enforcement: Vec::new(),
        memory_limit: limits.memory,
        removed: false,
    };
    // On error, dropping `cg` removes whatever was created so far, and the `agentcage/`
    // parents chosen but not used yet go too (when empty).
    for (i, ch) in choices.iter().enumerate() {
        let created = create_leaf(ch, name).and_then(|leaf| {
            cg.leaves.push(leaf);
            let leaf = cg.leaves.last().expect("just pushed");
            write_limits(leaf, limits, &mut cg.enforcement, &mut notes)
        });
        if let Err(e) = created {
            for unused in &choices[i..] {
                let _ = fs::remove_dir(unused.base.join(PARENT_DIR));
            }
            return Err(e);
        }
    }
    for (c, limit) in [
        (Ctl::Pids, Limit::Pids),
        (Ctl::Memory, Limit::Memory),
        (Ctl::Cpu, Limit::Cpus),
    ] {
        if limits.asks(limit) && !cg.leaves.iter().any(|l| l.has(c)) {
            let msg = format!("no {} controller available (v2: not delegated to a writable subtree; v1: not mounted)", c.name());
            cg.enforcement
                .push(LimitRow::new(limit, Enforcement::NotEnforced, msg.clone()));
            notes.push(Note::new(limit, NoteKind::NotEnforced, msg));
        }
    }
    Ok((Some(cg), notes))
}

/// Creates `<base>/agentcage/<name>/sandbox`, retrying when a concurrent run removes an empty
/// `agentcage/` between our mkdirs.
fn create_leaf(ch: &Choice, name: &str) -> Result<Leaf, CgroupError> {
    let parent = ch.base.join(PARENT_DIR);
    let dir = parent.join(name);
    let mut last = None;
    for _ in 0..8 {
        if let Err(source) = mkdir(&parent) {
            return Err(CgroupError::CreateDir {
                path: parent,
                source,
            });
        }
        if ch.hierarchy.version == Version::V2 && !ch.roles.is_empty() {
            let enable: Vec<String> = ch.roles.iter().map(|c| format!("+{}", c.name())).collect();
            let enabled = words(&parent.join("cgroup.subtree_control"));
            if !ch
                .roles
                .iter()
                .all(|c| enabled.iter().any(|e| e == c.name()))
            {
                match write_file(&parent.join("cgroup.subtree_control"), &enable.join(" ")) {
                    Ok(()) => {}
                    Err(CgroupError::Write { source, .. })
                        if source.raw_os_error() == Some(libc::ENOENT) =>
                    {
                        continue
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        match fs::create_dir(&dir) {
            Ok(()) => {
                last = None;
                break;
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => last = Some(e),
            Err(source) => return Err(CgroupError::CreateDir { path: dir, source }),
        }
    }
    if let Some(source) = last {
        return Err(CgroupError::CreateDir { path: dir, source });
    }
    let mut leaf = Leaf {
        version: ch.hierarchy.version,
        roles: ch.roles.clone(),
        parent,
        dir,
        procs: None,
        self_move: None,
    };
    let inner = leaf.inner();
    if let Err(source) = fs::create_dir(&inner) {
        let _ = fs::remove_dir(&leaf.dir);
        return Err(CgroupError::CreateDir {
            path: inner,
            source,
        });
    }
    let procs_path = inner.join("cgroup.procs");
    let opened = OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_CLOEXEC)
        .open(&procs_path)
        .map_err(|source| CgroupError::Open {
            path: procs_path,
            source,
        });
    let opened = opened.map(|f| leaf.procs = Some(f));
    if let Err(e) = opened {
        let _ = fs::remove_dir(&inner);
        let _ = fs::remove_dir(&leaf.dir);
        return Err(e);
    }
    if ch.hierarchy.version == Version::V1 && ch.hierarchy.own_exact {
        // Either file missing or not writable: this leaf is attached by pid instead.
        let open_w = |p: PathBuf| {
            OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_CLOEXEC)
                .open(p)
        };
        let origin = ch.hierarchy.own.join("tasks");
        if let (Ok(into), Ok(back)) = (open_w(inner.join("tasks")), open_w(origin.clone())) {
            leaf.self_move = Some((into, back, origin));
        }
    }
    Ok(leaf)
}

fn write_limits(
    leaf: &Leaf,
    l: &LimitsSpec,
    rows: &mut Vec<LimitRow>,
    notes: &mut Vec<Note>,
) -> Result<(), CgroupError> {
    let v = leaf.version.name();
    let d = &leaf.dir;
    if let (true, Some(p)) = (leaf.has(Ctl::Pids), l.pids) {
        write_file(&d.join("pids.max"), &p.to_string())?;
        rows.push(LimitRow::new(
            Limit::Pids,
            Enforcement::Cgroup,
            format!("{v} pids.max={p}"),
        ));
    }
    if let (true, Some(m)) = (leaf.has(Ctl::Memory), l.memory) {
        let swap_file = match leaf.version {
            Version::V2 => v2::write_memory(d, m)?,
            Version::V1 => v1::write_memory(d, m)?,
        };
        let (file, value, main) = swap_file;
        let how = if d.join(file).exists() {
            write_file(&d.join(file), &value.to_string())?;
            let shown = if value == 0 {
                "0".to_owned()
            } else {
                format_size(value)
            };
            format!("{v} {main}={} ({file}={shown})", format_size(m))
        } else if host_has_swap() {
            if leaf.version == Version::V1 {
                let _ = write_file(&d.join("memory.swappiness"), "0");
            }
            notes.push(Note::new(
                Limit::Memory,
                NoteKind::Partial,
                format!("swap is not limited: {file} is missing (swap accounting off); the sandbox may also use swap"),
            ));
            format!("{v} {main}={} (swap not limited)", format_size(m))
        } else {
            format!("{v} {main}={} (host has no swap)", format_size(m))
        };
        rows.push(LimitRow::new(Limit::Memory, Enforcement::Cgroup, how));
    }
    if let (true, Some(c)) = (leaf.has(Ctl::Cpu), l.cpus) {
        let detail = match leaf.version {
            Version::V2 => v2::write_cpu(d, c)?,
            Version::V1 => v1::write_cpu(d, c)?,
        };
        rows.push(LimitRow::new(
            Limit::Cpus,
            Enforcement::Cgroup,
            format!("{v} {detail}"),
        ));
    }
    Ok(())
}

/// The CFS quota for `cpus` CPUs per [`CPU_PERIOD_US`], at least the kernel's 1 ms minimum.
pub fn cpu_quota_us(cpus: f64) -> u64 {
    let q = (cpus * CPU_PERIOD_US as f64).round();
    if q.is_finite() && q >= 1000.0 {
        q as u64
    } else {
        1000
    }
}

/// Formats `n` in decimal into `buf`, returning the used tail (no allocation).
fn fmt_decimal(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 || i == 0 {
            break;
        }
    }
    &buf[i..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quota_and_decimal_formatting() {
        assert_eq!(cpu_quota_us(0.5), 50_000);
        assert_eq!(cpu_quota_us(2.0), 200_000);
        assert_eq!(cpu_quota_us(0.001), 1000);
        assert_eq!(cpu_quota_us(f64::NAN), 1000);
        let mut b = [0u8; 20];
        assert_eq!(fmt_decimal(0, &mut b), b"0");
        let mut b = [0u8; 20];
        assert_eq!(fmt_decimal(u64::MAX, &mut b), b"18446744073709551615");
        let mut b = [0u8; 20];
        assert_eq!(fmt_decimal(4_194_304, &mut b), b"4194304");
    }

    #[test]
    fn a_failed_prepare_removes_what_it_created() {
        // A "hierarchy" on a plain directory: mkdir works, but there is no cgroup.procs.
        let tmp = std::env::temp_dir().join(format!(
            "agentcage-cg-test-{}-{:x}",
            std::process::id(),
            random_u64()
        ));
        fs::create_dir(&tmp).unwrap();
        let layout = Layout {
            v2: None,
            v1: vec![Hierarchy {
                version: Version::V1,
                controllers: vec![Ctl::Pids],
                mountpoint: tmp.clone(),
                own: tmp.clone(),
                own_exact: true,
            }],
        };
        let limits = LimitsSpec {
            pids: Some(8),
            ..Default::default()
        };
        let r = prepare_in(&layout, &limits, "agentcage-1-ab", Teardown::Cgroup);
        let left: Vec<_> = fs::read_dir(&tmp)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .collect();
        fs::remove_dir_all(&tmp).unwrap();
        match r {
            Err(CgroupError::Open { path, .. }) => {
                assert!(path.ends_with("sandbox/cgroup.procs"), "{path:?}")
            }
            other => panic!("expected an Open error, got {other:?}"),
        }
        assert!(left.is_empty(), "left behind: {left:?}");
    }
}
