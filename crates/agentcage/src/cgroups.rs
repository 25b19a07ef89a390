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
//! Sides of the fork: everything here runs in the parent. [`prepare`] creates the leaf and writes
//! the limits before clone; [`PreparedCgroup::attach_from_parent`] writes the child's pid (to
//! fds opened by `prepare`, without allocating) while the child waits for the parent;
//! [`PreparedCgroup::v2_dir_fd`] serves `clone3(CLONE_INTO_CGROUP)` instead where v2 is used.
//! The child itself never touches cgroupfs. Man pages: cgroups(7), cgroup_namespaces(7); kernel
//! docs: admin-guide/cgroup-v2.rst, admin-guide/cgroup-v1/{memory,pids,freezer-subsystem}.rst.

use std::collections::BTreeMap;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::policy::LimitsSpec;
use crate::rlimits::PreparedRlimits;
use crate::units::{format_cpus, format_duration, format_size, validate_limits, ParseError};

/// The directory every leaf lives in, under the chosen base of each hierarchy.
pub const PARENT_DIR: &str = "agentcage";
/// Leaf names are `agentcage-<launcher pid>-<random hex>`.
pub const LEAF_PREFIX: &str = "agentcage-";
/// The sub-directory of a leaf that holds the processes.
pub const PROCS_DIR: &str = "sandbox";
/// The CFS period used for CPU quotas, in microseconds.
pub const CPU_PERIOD_US: u64 = 100_000;

/// How strongly a note's limit is affected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum NoteKind {
    /// The limit is not enforced at all.
    NotEnforced,
    /// The limit is enforced, but weaker than asked (clamped, swap not covered, per-uid count).
    Partial,
    /// Context worth reporting; nothing is weaker.
    Info,
}

/// One fact about how a limit is (not) enforced: data for `run -v`, `doctor` and the JSON
/// report, never printed by the library.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Note {
    /// The limit: `pids`, `memory`, `cpus`, `timeout`, `nofile`, `fsize`, `core` or `cgroup`.
    pub limit: &'static str,
    /// How strongly it is affected.
    pub kind: NoteKind,
    /// What happened and why, for a human.
    pub message: String,
}

impl Note {
    /// A note on `limit`.
    pub fn new(limit: &'static str, kind: NoteKind, message: impl Into<String>) -> Note {
        Note {
            limit,
            kind,
            message: message.into(),
        }
    }
}

impl fmt::Display for Note {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            NoteKind::NotEnforced => "not enforced: ",
            NoteKind::Partial => "",
            NoteKind::Info => "",
        };
        write!(f, "{}: {kind}{}", self.limit, self.message)
    }
}

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
// Layout detection

/// A controller this module uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Ctl {
    Memory,
    Pids,
    Cpu,
    Freezer,
}

impl Ctl {
    fn name(self) -> &'static str {
        match self {
            Ctl::Memory => "memory",
            Ctl::Pids => "pids",
            Ctl::Cpu => "cpu",
            Ctl::Freezer => "freezer",
        }
    }
    fn limit(self) -> &'static str {
        match self {
            Ctl::Memory => "memory",
            Ctl::Pids => "pids",
            Ctl::Cpu => "cpus",
            Ctl::Freezer => "cgroup",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Version {
    V1,
    V2,
}

impl Version {
    fn name(self) -> &'static str {
        match self {
            Version::V1 => "cgroup v1",
            Version::V2 => "cgroup v2",
        }
    }
}

/// One mounted hierarchy and our place in it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Hierarchy {
    version: Version,
    /// v1: the controllers of this hierarchy we use (co-mounted ones share one hierarchy).
    controllers: Vec<Ctl>,
    mountpoint: PathBuf,
    /// Our own cgroup's directory (the mountpoint if our cgroup is outside the mount's root).
    own: PathBuf,
}

impl Hierarchy {
    /// Our cgroup and its ancestors up to the mountpoint, nearest first.
    fn candidates(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        let mut p = self.own.as_path();
        for _ in 0..64 {
            out.push(p.to_path_buf());
            if p == self.mountpoint {
                break;
            }
            match p.parent() {
                Some(parent) if parent.starts_with(&self.mountpoint) => p = parent,
                _ => break,
            }
        }
        out
    }
}

/// The cgroup hierarchies of this host, as seen by this process.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Layout {
    v2: Option<Hierarchy>,
    v1: Vec<Hierarchy>,
}

/// Undoes mountinfo's octal escapes (`\040` for a space): the same decoder `kernel` uses.
fn unescape_mountinfo(s: &str) -> String {
    crate::host::unescape_mountinfo(s)
}

/// Parses `/proc/self/mountinfo` and `/proc/self/cgroup` text into a [`Layout`].
fn parse_layout(mountinfo: &str, self_cgroup: &str) -> Layout {
    // (controllers or "" for v2) -> our cgroup path in that hierarchy.
    let mut own_v2: Option<&str> = None;
    let mut own_v1: Vec<(Vec<&str>, &str)> = Vec::new();
    for line in self_cgroup.lines() {
        let mut it = line.splitn(3, ':');
        let (Some(id), Some(ctls), Some(path)) = (it.next(), it.next(), it.next()) else {
            continue;
        };
        if id == "0" && ctls.is_empty() {
            own_v2 = Some(path);
        } else {
            own_v1.push((ctls.split(',').collect(), path));
        }
    }
    let own_dir = |mountpoint: &Path, root: &str, path: &str| -> PathBuf {
        // Our path is relative to the hierarchy's root; the mount may show only a subtree.
        let rel = if root == "/" {
            Some(path)
        } else {
            path.strip_prefix(root)
                .filter(|r| r.is_empty() || r.starts_with('/'))
        };
        match rel {
            Some(r) if !r.split('/').any(|c| c == "..") => {
                mountpoint.join(r.trim_start_matches('/'))
            }
            _ => mountpoint.to_path_buf(),
        }
    };
    let mut layout = Layout::default();
    for line in mountinfo.lines() {
        let Some((pre, post)) = line.split_once(" - ") else {
            continue;
        };
        let pre: Vec<&str> = pre.split(' ').collect();
        let post: Vec<&str> = post.split(' ').collect();
        if pre.len() < 5 || post.len() < 3 {
            continue;
        }
        let root = unescape_mountinfo(pre[3]);
        let mountpoint = PathBuf::from(unescape_mountinfo(pre[4]));
        match post[0] {
            "cgroup2" if layout.v2.is_none() => {
                let own = own_dir(&mountpoint, &root, own_v2.unwrap_or("/"));
                layout.v2 = Some(Hierarchy {
                    version: Version::V2,
                    controllers: Vec::new(),
                    mountpoint,
                    own,
                });
            }
            "cgroup" => {
                let opts: Vec<&str> = post[2].split(',').collect();
                let controllers: Vec<Ctl> = [Ctl::Memory, Ctl::Pids, Ctl::Cpu, Ctl::Freezer]
                    .into_iter()
                    .filter(|c| opts.contains(&c.name()))
                    .filter(|c| !layout.v1.iter().any(|h| h.controllers.contains(c)))
                    .collect();
                let Some(first) = controllers.first() else {
                    continue;
                };
                let path = own_v1
                    .iter()
                    .find(|(ctls, _)| ctls.contains(&first.name()))
                    .map_or("/", |(_, p)| *p);
                let own = own_dir(&mountpoint, &root, path);
                layout.v1.push(Hierarchy {
                    version: Version::V1,
                    controllers,
                    mountpoint,
                    own,
                });
            }
            _ => {}
        }
    }
    layout
}

fn read(path: &Path) -> Result<String, CgroupError> {
    fs::read_to_string(path).map_err(|source| CgroupError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn detect_layout() -> Result<Layout, CgroupError> {
    let mountinfo = read(Path::new("/proc/self/mountinfo"))?;
    let cgroup = read(Path::new("/proc/self/cgroup"))?;
    Ok(parse_layout(&mountinfo, &cgroup))
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

/// An io::Error without the "(os error N)" suffix, for compact notes.
fn short(e: &io::Error) -> String {
    let s = e.to_string();
    match s.find(" (os error") {
        Some(i) => s[..i].to_lowercase(),
        None => s,
    }
}

/// Creates `dir` if missing and checks that we may create leaves in it (another user's run
/// may have created it). Ok(true) if we created it.
fn mkdir_writable(dir: &Path) -> io::Result<bool> {
    let created = mkdir(dir)?;
    if !created {
        let c = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes())
            .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
        // SAFETY: `c` is a live NUL-terminated path; faccessat only reads it.
        let rc = unsafe {
            libc::faccessat(
                libc::AT_FDCWD,
                c.as_ptr(),
                libc::W_OK | libc::X_OK,
                libc::AT_EACCESS,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(created)
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

fn random_u64() -> u64 {
    let mut buf = [0u8; 8];
    // SAFETY: `buf` is a live, writable 8-byte buffer; getrandom writes at most 8 bytes.
    let n = unsafe { libc::getrandom(buf.as_mut_ptr().cast(), buf.len(), libc::GRND_NONBLOCK) };
    if n == 8 {
        return u64::from_ne_bytes(buf);
    }
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
    /// v2: `<dir>/sandbox` opened as a directory, for CLONE_INTO_CGROUP.
    dir_fd: Option<File>,
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
    enforcement: Vec<(String, String)>,
    memory_limit: Option<u64>,
    removed: bool,
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
    validate_limits(limits).map_err(CgroupError::InvalidLimits)?;
    let layout = detect_layout()?;
    let name = format!("{LEAF_PREFIX}{}-{:016x}", std::process::id(), random_u64());
    prepare_in(&layout, limits, &name, teardown)
}

/// What a hierarchy contributed while choosing where to put the leaf.
struct Choice {
    hierarchy: Hierarchy,
    base: PathBuf,
    roles: Vec<Ctl>,
}

fn wanted(limits: &LimitsSpec) -> Vec<Ctl> {
    // Memory and pids are always accounted (OOM detection, peak memory, kill tracking);
    // cpu only when a quota is asked for; freezer (v1) for a race-free kill loop.
    let mut w = vec![Ctl::Memory, Ctl::Pids];
    if limits.cpus.is_some() {
        w.push(Ctl::Cpu);
    }
    w
}

/// Finds the v2 base: the nearest writable ancestor whose subtree_control has (or accepts) the
/// controllers we want. Falls back to the best partial one.
fn choose_v2(h: &Hierarchy, want: &[Ctl], why: &mut Vec<String>) -> Option<Choice> {
    let mut best: Option<Choice> = None;
    let mut first_err: Option<String> = None;
    for base in h.candidates() {
        let parent = base.join(PARENT_DIR);
        let created = match mkdir_writable(&parent) {
            Ok(c) => c,
            Err(e) => {
                first_err.get_or_insert_with(|| format!("v2 {}: {}", parent.display(), short(&e)));
                continue;
            }
        };
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
        let roles: Vec<Ctl> = want
            .iter()
            .copied()
            .filter(|c| enabled.iter().any(|e| e == c.name()))
            .collect();
        let complete = want
            .iter()
            .all(|c| roles.contains(c) || !available.iter().any(|a| a == c.name()));
        let better = match &best {
            None => true,
            Some(b) => roles.len() > b.roles.len(),
        };
        if better {
            if let Some(old) = best.take() {
                let _ = fs::remove_dir(old.base.join(PARENT_DIR));
            }
            best = Some(Choice {
                hierarchy: h.clone(),
                base,
                roles,
            });
        } else if created {
            let _ = fs::remove_dir(&parent);
        }
        if complete && best.as_ref().is_some_and(|b| b.roles.len() == want.len()) {
            break;
        }
        if complete && available.is_empty() {
            // Nothing to gain further up in a tree without controllers (e.g. a hybrid host).
            break;
        }
    }
    if best.is_none() {
        why.extend(first_err);
    }
    best
}

/// Finds the v1 base of a hierarchy: our own cgroup, or the nearest writable ancestor.
fn choose_v1(h: &Hierarchy, want: &[Ctl], why: &mut Vec<String>) -> Option<Choice> {
    let mut first_err: Option<String> = None;
    for base in h.candidates() {
        match mkdir_writable(&base.join(PARENT_DIR)) {
            Ok(_) => {
                let roles = h
                    .controllers
                    .iter()
                    .copied()
                    .filter(|c| want.contains(c) || *c == Ctl::Freezer)
                    .collect();
                return Some(Choice {
                    hierarchy: h.clone(),
                    base,
                    roles,
                });
            }
            Err(e) => {
                first_err.get_or_insert_with(|| {
                    format!("v1 {}: {}", base.join(PARENT_DIR).display(), short(&e))
                });
            }
        }
    }
    why.extend(first_err);
    None
}

fn prepare_in(
    layout: &Layout,
    limits: &LimitsSpec,
    name: &str,
    teardown: Teardown,
) -> Result<(Option<PreparedCgroup>, Vec<Note>), CgroupError> {
    let want = wanted(limits);
    let kill = teardown == Teardown::Cgroup;
    let mut why: Vec<String> = Vec::new();
    let mut choices: Vec<Choice> = Vec::new();
    if let Some(v2) = &layout.v2 {
        // A v2 leaf without controllers only serves cgroup.kill.
        choices.extend(choose_v2(v2, &want, &mut why).filter(|c| kill || !c.roles.is_empty()));
    } else {
        why.push("no cgroup v2 mount".to_owned());
    }
    let covered = |choices: &[Choice], c: Ctl| choices.iter().any(|ch| ch.roles.contains(&c));
    for h in &layout.v1 {
        let useful = h
            .controllers
            .iter()
            .any(|c| (want.contains(c) || (kill && *c == Ctl::Freezer)) && !covered(&choices, *c));
        // Freezer only matters where v2 (with cgroup.kill) is absent.
        let only_freezer = h.controllers == [Ctl::Freezer];
        if !useful || (only_freezer && choices.iter().any(|c| c.hierarchy.version == Version::V2)) {
            continue;
        }
        if let Some(mut ch) = choose_v1(h, &want, &mut why) {
            ch.roles.retain(|c| !covered(&choices, *c));
            choices.push(ch);
        }
    }

    let mut notes = Vec::new();
    if choices.is_empty() {
        let reason = if why.is_empty() {
            "no cgroup hierarchy mounted".to_owned()
        } else {
            why.join("; ")
        };
        for (limit, asked) in [
            ("pids", limits.pids.is_some()),
            ("memory", limits.memory.is_some()),
            ("cpus", limits.cpus.is_some()),
        ] {
            if asked {
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
    for (c, asked) in [
        (Ctl::Pids, limits.pids.is_some()),
        (Ctl::Memory, limits.memory.is_some()),
        (Ctl::Cpu, limits.cpus.is_some()),
    ] {
        if asked && !cg.leaves.iter().any(|l| l.has(c)) {
            let msg = format!("no {} controller available (v2: not delegated to a writable subtree; v1: not mounted)", c.name());
            cg.enforcement
                .push((c.limit().to_owned(), format!("not enforced: {msg}")));
            notes.push(Note::new(c.limit(), NoteKind::NotEnforced, msg));
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
        dir_fd: None,
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
    let opened = opened.and_then(|f| {
        leaf.procs = Some(f);
        if leaf.version == Version::V2 {
            let d = OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
                .open(&inner)
                .map_err(|source| CgroupError::Open {
                    path: inner.clone(),
                    source,
                })?;
            leaf.dir_fd = Some(d);
        }
        Ok(())
    });
    if let Err(e) = opened {
        let _ = fs::remove_dir(&inner);
        let _ = fs::remove_dir(&leaf.dir);
        return Err(e);
    }
    Ok(leaf)
}

fn write_limits(
    leaf: &Leaf,
    l: &LimitsSpec,
    rows: &mut Vec<(String, String)>,
    notes: &mut Vec<Note>,
) -> Result<(), CgroupError> {
    let v = leaf.version.name();
    let d = &leaf.dir;
    if let (true, Some(p)) = (leaf.has(Ctl::Pids), l.pids) {
        write_file(&d.join("pids.max"), &p.to_string())?;
        rows.push(("pids".into(), format!("{v} pids.max={p}")));
    }
    if let (true, Some(m)) = (leaf.has(Ctl::Memory), l.memory) {
        let swap_file = match leaf.version {
            Version::V2 => {
                write_file(&d.join("memory.max"), &m.to_string())?;
                // No swap at all: a hog is OOM-killed promptly instead of thrashing the host.
                ("memory.swap.max", "0".to_owned(), "memory.max")
            }
            Version::V1 => {
                write_file(&d.join("memory.limit_in_bytes"), &m.to_string())?;
                // memsw counts memory + swap; equal to the limit means no swap (set after
                // limit_in_bytes: the kernel requires memsw >= limit).
                (
                    "memory.memsw.limit_in_bytes",
                    m.to_string(),
                    "memory.limit_in_bytes",
                )
            }
        };
        let (file, value, main) = swap_file;
        let how = if d.join(file).exists() {
            write_file(&d.join(file), &value)?;
            let shown = if value == "0" { value } else { format_size(m) };
            format!("{v} {main}={} ({file}={shown})", format_size(m))
        } else if host_has_swap() {
            if leaf.version == Version::V1 {
                let _ = write_file(&d.join("memory.swappiness"), "0");
            }
            notes.push(Note::new(
                "memory",
                NoteKind::Partial,
                format!("swap is not limited: {file} is missing (swap accounting off); the sandbox may also use swap"),
            ));
            format!("{v} {main}={} (swap not limited)", format_size(m))
        } else {
            format!("{v} {main}={} (host has no swap)", format_size(m))
        };
        rows.push(("memory".into(), how));
    }
    if let (true, Some(c)) = (leaf.has(Ctl::Cpu), l.cpus) {
        let quota = cpu_quota_us(c);
        match leaf.version {
            Version::V2 => {
                write_file(&d.join("cpu.max"), &format!("{quota} {CPU_PERIOD_US}"))?;
                rows.push((
                    "cpus".into(),
                    format!(
                        "{v} cpu.max={quota} {CPU_PERIOD_US} ({} CPUs)",
                        format_cpus(c)
                    ),
                ));
            }
            Version::V1 => {
                write_file(&d.join("cpu.cfs_period_us"), &CPU_PERIOD_US.to_string())?;
                write_file(&d.join("cpu.cfs_quota_us"), &quota.to_string())?;
                rows.push((
                    "cpus".into(),
                    format!(
                        "{v} cpu.cfs_quota_us={quota}/{CPU_PERIOD_US} ({} CPUs)",
                        format_cpus(c)
                    ),
                ));
            }
        }
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

impl PreparedCgroup {
    /// The leaf's name, `agentcage-<pid>-<random>`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The leaf directories (one per hierarchy used), for reports and tests.
    pub fn dirs(&self) -> Vec<PathBuf> {
        self.leaves.iter().map(|l| l.dir.clone()).collect()
    }

    /// Moves process `pid` into the leaf of every hierarchy (its `sandbox/cgroup.procs`).
    ///
    /// Call from the parent right after clone, while the child waits for the parent, before it
    /// forks or execs anything: descendants then inherit the membership. Does not allocate on
    /// success (writes go to fds opened by [`prepare`]).
    ///
    /// # Errors
    /// [`CgroupError::AttachPid`] (ESRCH: the child is gone; EACCES: migration not permitted).
    pub fn attach_from_parent(&self, pid: i32) -> Result<(), CgroupError> {
        let mut buf = [0u8; 20];
        let digits = fmt_decimal(u64::from(pid.unsigned_abs()), &mut buf);
        for leaf in &self.leaves {
            let Some(f) = &leaf.procs else { continue };
            let mut f: &File = f;
            match f.write(digits) {
                Ok(n) if n == digits.len() => {}
                Ok(_) => {
                    return Err(CgroupError::AttachPid {
                        pid,
                        path: leaf.inner().join("cgroup.procs"),
                        source: io::Error::new(io::ErrorKind::WriteZero, "short write"),
                    })
                }
                Err(source) => {
                    return Err(CgroupError::AttachPid {
                        pid,
                        path: leaf.inner().join("cgroup.procs"),
                        source,
                    })
                }
            }
        }
        Ok(())
    }

    /// The v2 leaf's `sandbox` directory fd, for `clone3` with `CLONE_INTO_CGROUP` (5.7+): the
    /// child then starts inside the leaf. v1 leaves still need [`Self::attach_from_parent`].
    /// The fd is O_CLOEXEC and owned by `self`.
    pub fn v2_dir_fd(&self) -> Option<RawFd> {
        self.leaves
            .iter()
            .find_map(|l| l.dir_fd.as_ref().map(AsRawFd::as_raw_fd))
    }

    /// Sends `sig` to every process in the leaf, once (e.g. SIGTERM before the grace period of a
    /// timeout). Processes are checked to still be in our leaf through a pidfd, so a recycled
    /// pid is never signalled.
    pub fn signal_all(&self, sig: i32) {
        for pid in self.members() {
            signal_member(pid, sig, &self.name);
        }
    }

    /// Kills every process in the leaf and waits (bounded, about 2 s) until none is left.
    ///
    /// v2 with `cgroup.kill` (5.14+): one write, atomic against concurrent forks. Otherwise a
    /// loop: freeze (v1 freezer / v2 `cgroup.freeze`) so nothing forks or exits mid-scan, SIGKILL
    /// every member, thaw so the kills are delivered, until the leaf is empty.
    pub fn kill_all(&self) {
        kill_leaves(&self.leaves, &self.name);
    }

    /// Whether the kernel OOM-killed a process of the sandbox because of its memory limit:
    /// v2 `memory.events` `oom_kill`, v1 `memory.oom_control` `oom_kill` (4.13+), or on older v1
    /// kernels a hit limit (`memory.failcnt`) with usage at the limit.
    pub fn oom_killed(&self) -> bool {
        self.leaves
            .iter()
            .filter(|l| l.has(Ctl::Memory))
            .any(|l| match l.version {
                Version::V2 => {
                    keyed(&l.dir.join("memory.events"), "oom_kill").is_some_and(|n| n > 0)
                }
                // v1 counts the kill in the victim's own memcg (`sandbox/`) and, depending on
                // the kernel, in the limiting one: read both.
                Version::V1 => match keyed(&l.dir.join("memory.oom_control"), "oom_kill")
                    .into_iter()
                    .chain(keyed(&l.inner().join("memory.oom_control"), "oom_kill"))
                    .reduce(|a, b| a + b)
                {
                    Some(n) => n > 0,
                    None => {
                        let failcnt = read_u64(&l.dir.join("memory.failcnt")).unwrap_or(0);
                        let peak = read_u64(&l.dir.join("memory.max_usage_in_bytes")).unwrap_or(0);
                        failcnt > 0 && self.memory_limit.is_some_and(|m| peak + (1 << 20) >= m)
                    }
                },
            })
    }

    /// Peak memory use of the sandbox in bytes: v2 `memory.peak` (5.19+), v1
    /// `memory.max_usage_in_bytes`.
    pub fn peak_memory(&self) -> Option<u64> {
        self.leaves
            .iter()
            .filter(|l| l.has(Ctl::Memory))
            .find_map(|l| match l.version {
                Version::V2 => read_u64(&l.dir.join("memory.peak")),
                Version::V1 => read_u64(&l.dir.join("memory.max_usage_in_bytes")),
            })
    }

    /// How each cgroup limit is enforced: `("memory", "cgroup v1 memory.limit_in_bytes=512M
    /// (memory.memsw.limit_in_bytes=536870912)")`, `("cpus", "not enforced: ...")`.
    pub fn enforcement(&self) -> Vec<(String, String)> {
        self.enforcement.clone()
    }

    /// Whether `limit` (`pids`, `memory`, `cpus`) is enforced by this cgroup. Use
    /// `enforces("pids")` to pick [`crate::rlimits::NprocMode::Off`].
    pub fn enforces(&self, limit: &str) -> bool {
        self.enforcement
            .iter()
            .any(|(l, how)| l == limit && how.starts_with("cgroup"))
    }

    /// Kills what is left, then deletes the leaf directories and `agentcage/` if now empty.
    ///
    /// # Errors
    /// [`CgroupError::RemoveDir`] if a directory could not be removed (processes survived the
    /// bounded kill loop, e.g. stuck in uninterruptible sleep); a later [`reap_stale`] retries.
    pub fn remove(mut self) -> Result<(), CgroupError> {
        self.removed = true;
        teardown(&mut self.leaves, &self.name)
    }

    fn members(&self) -> Vec<i32> {
        members(&self.leaves)
    }
}

impl Drop for PreparedCgroup {
    fn drop(&mut self) {
        if !self.removed {
            let _ = teardown(&mut self.leaves, &self.name);
        }
    }
}

/// Every pid listed in any leaf (both levels), deduplicated.
fn members(leaves: &[Leaf]) -> Vec<i32> {
    let mut pids: Vec<i32> = Vec::new();
    for l in leaves {
        for dir in [l.inner(), l.dir.clone()] {
            for w in words(&dir.join("cgroup.procs")) {
                if let Ok(p) = w.parse::<i32>() {
                    if p > 0 && !pids.contains(&p) {
                        pids.push(p);
                    }
                }
            }
        }
    }
    pids
}

/// Signals `pid` only if it is (still) a member of the leaf named `name`.
fn signal_member(pid: i32, sig: i32, name: &str) {
    // SAFETY: pidfd_open takes a pid and flags; it returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        if io::Error::last_os_error().raw_os_error() == Some(libc::ENOSYS) {
            // Before 5.3: no pidfd. Fall back to the checked plain kill (tiny reuse window).
            if in_leaf(pid, name) {
                // SAFETY: kill with plain integers.
                unsafe { libc::kill(pid, sig) };
            }
        }
        return;
    }
    let fd = fd as RawFd;
    // The pidfd pins the process we opened. If /proc/<pid> still shows our leaf, it is that
    // process (or it died, and then the signal below goes nowhere).
    if in_leaf(pid, name) {
        // SAFETY: `fd` is the pidfd we just opened; null siginfo and flags 0 as documented.
        unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                fd,
                sig,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            )
        };
    }
    // SAFETY: we own `fd` and close it once.
    unsafe { libc::close(fd) };
}

fn in_leaf(pid: i32, name: &str) -> bool {
    fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .is_ok_and(|s| s.lines().any(|l| l.contains(name)))
}

fn set_frozen(leaves: &[Leaf], frozen: bool) {
    for l in leaves {
        match l.version {
            Version::V1 if l.has(Ctl::Freezer) => {
                let _ = write_file(
                    &l.dir.join("freezer.state"),
                    if frozen { "FROZEN" } else { "THAWED" },
                );
            }
            Version::V2 if l.dir.join("cgroup.freeze").exists() => {
                let _ = write_file(&l.dir.join("cgroup.freeze"), if frozen { "1" } else { "0" });
            }
            _ => {}
        }
    }
}

fn kill_leaves(leaves: &[Leaf], name: &str) {
    const DEADLINE: Duration = Duration::from_secs(2);
    let start = Instant::now();
    // cgroup.kill: the kernel kills every member, including ones forking right now.
    for l in leaves.iter().filter(|l| l.version == Version::V2) {
        let _ = write_file(&l.dir.join("cgroup.kill"), "1");
    }
    for round in 0..400u32 {
        let pids = members(leaves);
        if pids.is_empty() || start.elapsed() > DEADLINE {
            break;
        }
        // Give cgroup.kill a moment before falling back to signalling pid by pid.
        let killed_by_kernel = leaves
            .iter()
            .any(|l| l.version == Version::V2 && l.dir.join("cgroup.kill").exists());
        if !(killed_by_kernel && round < 20) {
            set_frozen(leaves, true);
            for pid in members(leaves) {
                signal_member(pid, libc::SIGKILL, name);
            }
            // Fatal signals do not wake v1-frozen tasks: thaw so they die.
            set_frozen(leaves, false);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn teardown(leaves: &mut Vec<Leaf>, name: &str) -> Result<(), CgroupError> {
    kill_leaves(leaves, name);
    let mut first_err = None;
    for l in leaves.drain(..) {
        // Close our fds first: an open cgroup.procs does not pin the directory, but be tidy.
        let Leaf {
            parent,
            dir,
            procs,
            dir_fd,
            ..
        } = l;
        drop(procs);
        drop(dir_fd);
        for d in [dir.join(PROCS_DIR), dir.clone()] {
            if let Err(e) = rmdir_retry(&d) {
                first_err.get_or_insert(CgroupError::RemoveDir { path: d, source: e });
            }
        }
        // Shared by concurrent runs: only goes when empty; ENOTEMPTY/EBUSY are expected.
        let _ = fs::remove_dir(&parent);
    }
    first_err.map_or(Ok(()), Err)
}

/// rmdir, retrying EBUSY briefly: exiting tasks leave a cgroup a moment after SIGKILL.
fn rmdir_retry(d: &Path) -> io::Result<()> {
    let mut last = Ok(());
    for _ in 0..200 {
        match fs::remove_dir(d) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                last = Err(e);
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => return Err(e),
        }
    }
    last
}

// ---------------------------------------------------------------------------------------------
// Summaries

/// One row per requested limit with the strongest mechanism that enforces it: the cgroup's row,
/// else the rlimit's, else `not enforced: <reason>` from the notes. `timeout` is the launcher's
/// wall-clock timer.
pub fn enforcement_summary(
    limits: &LimitsSpec,
    cgroup: Option<&PreparedCgroup>,
    notes: &[Note],
    rlimits: &PreparedRlimits,
) -> Vec<(String, String)> {
    let cg_rows = cgroup.map(PreparedCgroup::enforcement).unwrap_or_default();
    let rl_rows = rlimits.enforcement();
    let reason = |limit: &str| {
        notes
            .iter()
            .find(|n| n.limit == limit && n.kind == NoteKind::NotEnforced)
            .map_or_else(
                || "no mechanism available".to_owned(),
                |n| n.message.clone(),
            )
    };
    let pick = |limit: &str| -> String {
        let enforced = |rows: &[(String, String)]| {
            rows.iter()
                .find(|(l, how)| l == limit && !how.starts_with("not enforced"))
                .map(|(_, h)| h.clone())
        };
        enforced(&cg_rows)
            .or_else(|| enforced(&rl_rows))
            .unwrap_or_else(|| format!("not enforced: {}", reason(limit)))
    };
    let mut out = Vec::new();
    let asked = [
        ("pids", limits.pids.is_some()),
        ("memory", limits.memory.is_some()),
        ("cpus", limits.cpus.is_some()),
        ("nofile", limits.nofile.is_some()),
        ("fsize", limits.fsize.is_some()),
        ("core", limits.no_core),
    ];
    for (limit, is_asked) in asked {
        if is_asked {
            out.push((limit.to_owned(), pick(limit)));
        }
        if limit == "cpus" {
            if let Some(t) = limits.timeout {
                let shown = Duration::try_from_secs_f64(t)
                    .map_or_else(|_| format!("{t}s"), format_duration);
                out.push(("timeout".to_owned(), format!("launcher timer ({shown})")));
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Stale leaves

/// What [`reap_stale`] did.
#[derive(Debug, Default)]
pub struct ReapReport {
    /// Leaf directories removed.
    pub removed: Vec<PathBuf>,
    /// Stale leaves that could not be removed, with the reason.
    pub failed: Vec<(PathBuf, String)>,
}

/// Removes leaves left behind by launchers that died without cleaning up (SIGKILL, crash):
/// kills their processes and deletes their directories, in every hierarchy.
///
/// A leaf is stale when the pid in its name no longer exists, or exists but started after the
/// leaf was created (a recycled pid). The pid is read in our pid namespace: launchers sharing
/// cgroupfs from another pid namespace must use another base. Leaves we cannot write are left
/// alone. Cheap when there is nothing to do (one readdir per hierarchy).
///
/// # Errors
/// Only when `/proc/self/mountinfo` or `/proc/self/cgroup` is unreadable.
pub fn reap_stale() -> Result<ReapReport, CgroupError> {
    Ok(reap_in(&detect_layout()?))
}

fn reap_in(layout: &Layout) -> ReapReport {
    // name -> the leaf's directory in each hierarchy.
    let mut stale: BTreeMap<String, Vec<Leaf>> = BTreeMap::new();
    let hierarchies = layout.v2.iter().chain(layout.v1.iter());
    for h in hierarchies {
        for base in h.candidates() {
            let parent = base.join(PARENT_DIR);
            let Ok(entries) = fs::read_dir(&parent) else {
                continue;
            };
            for e in entries.flatten().take(100_000) {
                let name = e.file_name().to_string_lossy().into_owned();
                if !is_stale(&name, &e.path()) {
                    continue;
                }
                let roles = if h.version == Version::V1 {
                    h.controllers.clone()
                } else {
                    Vec::new()
                };
                stale.entry(name).or_default().push(Leaf {
                    version: h.version,
                    roles,
                    parent: parent.clone(),
                    dir: e.path(),
                    procs: None,
                    dir_fd: None,
                });
            }
        }
    }
    let mut report = ReapReport::default();
    for (name, mut leaves) in stale {
        let dirs: Vec<PathBuf> = leaves.iter().map(|l| l.dir.clone()).collect();
        match teardown(&mut leaves, &name) {
            Ok(()) => report.removed.extend(dirs),
            Err(e) => report
                .failed
                .push((dirs[0].clone(), format!("{e}: {}", error_source(&e)))),
        }
    }
    report
}

fn error_source(e: &CgroupError) -> String {
    std::error::Error::source(e)
        .map(ToString::to_string)
        .unwrap_or_default()
}

/// Parses `agentcage-<pid>-<hex>` and decides whether its launcher is gone.
fn is_stale(name: &str, dir: &Path) -> bool {
    let Some(rest) = name.strip_prefix(LEAF_PREFIX) else {
        return false;
    };
    let Some((pid, rand)) = rest.split_once('-') else {
        return false;
    };
    let Ok(pid) = pid.parse::<i32>() else {
        return false;
    };
    if pid <= 0 || rand.is_empty() || !rand.bytes().all(|b| b.is_ascii_hexdigit()) {
        return false;
    }
    // SAFETY: kill with signal 0 only checks existence and permission.
    let alive = unsafe { libc::kill(pid, 0) } == 0
        || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
    // A zombie launcher (killed, not yet reaped by its parent) is dead too.
    if !alive || matches!(process_state(pid), Some('Z' | 'X')) {
        return true;
    }
    // Alive: stale only if that process started after the leaf was created (pid recycled).
    let (Some(started), Ok(meta)) = (process_start(pid), fs::metadata(dir)) else {
        return false;
    };
    let Ok(created) = meta.modified() else {
        return false;
    };
    started > created + Duration::from_secs(2)
}

/// The state letter of `/proc/<pid>/stat` (`R`, `S`, `Z`, ...).
fn process_state(pid: i32) -> Option<char> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.get(stat.rfind(')')? + 2..)?.chars().next()
}

/// When process `pid` started, from `/proc/<pid>/stat` field 22 and `btime`.
fn process_start(pid: i32) -> Option<SystemTime> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised comm, which may itself contain spaces and parentheses.
    let after = stat.get(stat.rfind(')')? + 2..)?;
    let ticks: u64 = after.split(' ').nth(19)?.parse().ok()?;
    let btime: u64 = fs::read_to_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let hz = u64::try_from(hz).ok().filter(|h| *h > 0)?;
    Some(
        UNIX_EPOCH
            + Duration::from_secs(btime)
            + Duration::from_millis(ticks.saturating_mul(1000) / hz),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO_HYBRID: &str = "\
25 30 0:23 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
32 25 0:27 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
33 32 0:28 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
34 32 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
35 32 0:30 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 32 0:31 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
37 32 0:32 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
38 32 0:33 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
";
    const CGROUP_HYBRID: &str = "\
9:name=systemd:/
8:pids:/
6:freezer:/
4:memory:/process_api/abc
1:cpu,cpuacct:/
0::/
";

    #[test]
    fn parses_a_hybrid_layout() {
        let l = parse_layout(MOUNTINFO_HYBRID, CGROUP_HYBRID);
        let v2 = l.v2.expect("v2");
        assert_eq!(v2.mountpoint, Path::new("/sys/fs/cgroup/unified"));
        assert_eq!(v2.own, Path::new("/sys/fs/cgroup/unified"));
        let mem =
            l.v1.iter()
                .find(|h| h.controllers.contains(&Ctl::Memory))
                .expect("memory");
        assert_eq!(mem.own, Path::new("/sys/fs/cgroup/memory/process_api/abc"));
        assert_eq!(
            mem.candidates(),
            vec![
                PathBuf::from("/sys/fs/cgroup/memory/process_api/abc"),
                PathBuf::from("/sys/fs/cgroup/memory/process_api"),
                PathBuf::from("/sys/fs/cgroup/memory"),
            ]
        );
        let cpu =
            l.v1.iter()
                .find(|h| h.controllers.contains(&Ctl::Cpu))
                .expect("cpu");
        assert_eq!(cpu.mountpoint, Path::new("/sys/fs/cgroup/cpu,cpuacct"));
        assert_eq!(
            l.v1.len(),
            4,
            "memory, pids, cpu, freezer; name=systemd ignored"
        );
    }

    #[test]
    fn parses_unified_and_container_layouts() {
        let mi = "30 25 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n";
        let l = parse_layout(
            mi,
            "0::/user.slice/user-1000.slice/user@1000.service/app.slice/x.scope\n",
        );
        let v2 = l.v2.unwrap();
        assert_eq!(
            v2.own,
            Path::new(
                "/sys/fs/cgroup/user.slice/user-1000.slice/user@1000.service/app.slice/x.scope"
            )
        );
        assert_eq!(v2.candidates().len(), 6);
        assert!(l.v1.is_empty());
        // A container whose mount shows only its own subtree, without a cgroup namespace.
        let mi = "40 30 0:26 /docker/abc /sys/fs/cgroup\\040x rw - cgroup2 cgroup2 rw\n";
        let l = parse_layout(mi, "0::/docker/abc/sub\n");
        assert_eq!(l.v2.unwrap().own, Path::new("/sys/fs/cgroup x/sub"));
        // Our cgroup outside the mounted subtree, or a hostile "..": fall back to the mountpoint.
        let l = parse_layout(mi, "0::/elsewhere\n");
        assert_eq!(l.v2.unwrap().own, Path::new("/sys/fs/cgroup x"));
        let l = parse_layout(
            "40 30 0:26 / /cg rw - cgroup2 cgroup2 rw\n",
            "0::/../../etc\n",
        );
        assert_eq!(l.v2.unwrap().own, Path::new("/cg"));
        // Garbage never panics.
        let l = parse_layout("x - \n - - -\n1 2 3\n", "::::\n0:\n");
        assert_eq!(l, Layout::default());
    }

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
    fn summary_prefers_cgroup_then_rlimit_then_reason() {
        let limits = LimitsSpec {
            pids: Some(10),
            memory: Some(64 << 20),
            cpus: Some(1.0),
            timeout: Some(90.0),
            nofile: Some(100),
            no_core: true,
            ..Default::default()
        };
        let notes = vec![
            Note::new("pids", NoteKind::NotEnforced, "no writable cgroup"),
            Note::new("memory", NoteKind::NotEnforced, "no writable cgroup"),
        ];
        let (rl, _) =
            crate::rlimits::prepare(&limits, crate::rlimits::NprocMode::OwnUserNs).unwrap();
        let rows = enforcement_summary(&limits, None, &notes, &rl);
        let get = |k: &str| {
            rows.iter()
                .find(|(l, _)| l == k)
                .map(|(_, h)| h.as_str())
                .unwrap()
        };
        assert_eq!(get("pids"), "rlimit RLIMIT_NPROC=10");
        assert_eq!(get("memory"), "not enforced: no writable cgroup");
        assert_eq!(get("cpus"), "not enforced: no mechanism available");
        assert_eq!(get("timeout"), "launcher timer (90s)");
        assert!(get("nofile").starts_with("rlimit RLIMIT_NOFILE="));
        assert_eq!(get("core"), "rlimit RLIMIT_CORE=0");
        assert_eq!(rows.len(), 6);
        assert_eq!(
            Note::new("cpus", NoteKind::NotEnforced, "x").to_string(),
            "cpus: not enforced: x"
        );
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

    // ---- kernel tests: need root and a writable cgroup hierarchy -----------------------------

    fn is_root() -> bool {
        // SAFETY: geteuid has no preconditions.
        unsafe { libc::geteuid() == 0 }
    }

    /// Whether this host lets us create a leaf with `ctl` enforced; the reason otherwise.
    fn missing(limits: &LimitsSpec, limit: &str) -> Option<String> {
        if !is_root() {
            return Some("needs root".into());
        }
        match prepare(limits) {
            Ok((Some(cg), notes)) => {
                let rows = cg.enforcement();
                let ok = rows
                    .iter()
                    .any(|(l, h)| l == limit && h.starts_with("cgroup"));
                drop(cg);
                (!ok).then(|| format!("{limit} not enforced here: {notes:?}"))
            }
            Ok((None, notes)) => Some(format!("no cgroup: {notes:?}")),
            Err(e) => Some(format!("prepare failed: {e}: {}", error_source(&e))),
        }
    }

    #[test]
    fn pid_namespace_teardown_makes_no_kill_only_leaves() {
        let limits = LimitsSpec {
            pids: Some(64),
            memory: Some(64 << 20),
            ..LimitsSpec::default()
        };
        if gate("pid_namespace_teardown", missing(&limits, "memory")) {
            return;
        }
        let (Some(with_kill), _) = prepare_with(&limits, Teardown::Cgroup).expect("prepare") else {
            panic!("root with cgroups gave no leaf")
        };
        let (Some(lean), _) = prepare_with(&limits, Teardown::PidNamespace).expect("prepare")
        else {
            panic!("root with cgroups gave no leaf")
        };
        let (a, b) = (with_kill.dirs(), lean.dirs());
        // The same limits are enforced either way...
        assert_eq!(with_kill.enforcement(), lean.enforcement());
        // ...and every leaf of the lean one carries a limit: never more leaves.
        assert!(b.len() <= a.len(), "{b:?} vs {a:?}");
        for d in &b {
            let s = d.to_string_lossy();
            assert!(!s.contains("/freezer/"), "kill-only freezer leaf: {s}");
        }
        drop(with_kill);
        drop(lean);
    }

    /// Skips (with the reason on stderr) unless AGENTCAGE_TEST_EXPECT lists cgroup, then fails.
    fn gate(name: &str, why: Option<String>) -> bool {
        let Some(why) = why else { return true };
        let expected = std::env::var("AGENTCAGE_TEST_EXPECT").unwrap_or_default();
        assert!(
            !expected.split(',').any(|f| f == "cgroup" || f == "cgroup2"),
            "{name}: cgroup expected: {why}"
        );
        eprintln!("skip {name}: {why}");
        false
    }

    /// A forked child that waits on a pipe until released, then runs `f` and exits with its value.
    struct Held {
        pid: i32,
        release: RawFd,
    }

    fn spawn_held(f: fn() -> i32) -> Held {
        let mut fds = [0; 2];
        // SAFETY: `fds` is a live [c_int; 2].
        assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
        // SAFETY: the child only reads the pipe, runs `f` (raw syscalls) and _exits.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            let mut b = [0u8; 1];
            // SAFETY: fds[0] is the pipe's read end; `b` is a live 1-byte buffer.
            unsafe {
                libc::close(fds[1]);
                libc::read(fds[0], b.as_mut_ptr().cast(), 1);
                libc::_exit(f())
            }
        }
        // SAFETY: closing our copy of the read end.
        unsafe { libc::close(fds[0]) };
        Held {
            pid,
            release: fds[1],
        }
    }

    impl Held {
        fn release(&self) {
            // SAFETY: writing one byte to our pipe's write end, then closing it once.
            unsafe {
                libc::write(self.release, b"x".as_ptr().cast(), 1);
                libc::close(self.release);
            }
        }
        /// waitpid with a deadline; kills the child if it overruns. Returns the raw status.
        fn wait(&self, limit: Duration) -> i32 {
            let start = Instant::now();
            loop {
                let mut status = 0;
                // SAFETY: `status` is a live c_int; pid is our child.
                let r = unsafe { libc::waitpid(self.pid, &mut status, libc::WNOHANG) };
                if r == self.pid {
                    return status;
                }
                assert!(r == 0, "waitpid: {}", io::Error::last_os_error());
                if start.elapsed() > limit {
                    // SAFETY: our own child.
                    unsafe { libc::kill(self.pid, libc::SIGKILL) };
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }

    fn touch_128m() -> i32 {
        const LEN: usize = 128 << 20;
        // SAFETY: anonymous private mapping; no file, no fixed address.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                LEN,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return 2;
        }
        let p = p.cast::<u8>();
        for off in (0..LEN).step_by(4096) {
            // SAFETY: `off` < LEN, inside the mapping we just created.
            unsafe { p.add(off).write_volatile(1) };
        }
        0
    }

    #[test]
    fn root_memory_hog_is_oom_killed() {
        let limits = LimitsSpec {
            memory: Some(32 << 20),
            pids: Some(64),
            ..Default::default()
        };
        if !gate("root_memory_hog_is_oom_killed", missing(&limits, "memory")) {
            return;
        }
        let (cg, _notes) = prepare(&limits).unwrap();
        let cg = cg.unwrap();
        let dirs = cg.dirs();
        assert!(dirs.iter().all(|d| d.join(PROCS_DIR).is_dir()));
        let child = spawn_held(touch_128m);
        cg.attach_from_parent(child.pid).unwrap();
        // Independent oracle: the kernel lists the child in the leaf.
        assert!(
            in_leaf(child.pid, cg.name()),
            "{}",
            fs::read_to_string(format!("/proc/{}/cgroup", child.pid)).unwrap()
        );
        assert!(!cg.oom_killed(), "no OOM before the hog runs");
        child.release();
        let status = child.wait(Duration::from_secs(30));
        assert!(
            libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGKILL,
            "status {status:#x}"
        );
        assert!(cg.oom_killed());
        let peak = cg.peak_memory().expect("peak");
        assert!(
            peak > 16 << 20 && peak <= (32 << 20) + (1 << 20),
            "peak {peak}"
        );
        let rows = cg.enforcement();
        assert!(
            rows.iter().any(|(l, h)| l == "memory" && h.contains("32M")),
            "{rows:?}"
        );
        assert!(cg.enforces("memory") && cg.enforces("pids") && !cg.enforces("cpus"));
        cg.remove().unwrap();
        assert!(dirs.iter().all(|d| !d.exists()), "{dirs:?} left behind");
    }

    fn fork_50() -> i32 {
        for n in 0..50 {
            // SAFETY: the grandchild only pauses until the test kills the leaf.
            let pid = unsafe { libc::fork() };
            if pid == 0 {
                // SAFETY: pause/_exit are async-signal-safe.
                unsafe {
                    libc::pause();
                    libc::_exit(0)
                }
            }
            if pid < 0 {
                return if io::Error::last_os_error().raw_os_error() == Some(libc::EAGAIN) {
                    n
                } else {
                    200
                };
            }
        }
        201
    }

    /// pids.max=16 stops a fork loop with EAGAIN; signal_all reaches every member;
    /// kill_all kills the orphans left in the leaf; remove leaves nothing.
    fn pids_scenario(layout: &Layout) {
        let limits = LimitsSpec {
            pids: Some(16),
            ..Default::default()
        };
        let name = format!("{LEAF_PREFIX}{}-{:016x}", std::process::id(), random_u64());
        let (cg, _) = prepare_in(layout, &limits, &name, Teardown::Cgroup).unwrap();
        let cg = cg.unwrap();
        let dirs = cg.dirs();
        // Orphaned grandchildren come to us, so the test can reap them (and leaves no zombie).
        // SAFETY: prctl with integer arguments.
        let rc = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
        assert_eq!(rc, 0);
        let child = spawn_held(fork_50);
        cg.attach_from_parent(child.pid).unwrap();
        child.release();
        let status = child.wait(Duration::from_secs(30));
        assert!(libc::WIFEXITED(status), "status {status:#x}");
        // The child itself is one of the 16 tasks: 15 forks succeed, the 16th gets EAGAIN.
        assert_eq!(libc::WEXITSTATUS(status), 15);
        let orphans = cg.members();
        assert_eq!(
            orphans.len(),
            15,
            "the paused grandchildren are still in the leaf"
        );
        cg.signal_all(libc::SIGSTOP);
        for &pid in &orphans {
            let mut stopped = false;
            for _ in 0..200 {
                if process_state(pid) == Some('T') {
                    stopped = true;
                    break;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            assert!(stopped, "signal_all missed {pid}: {:?}", process_state(pid));
        }
        cg.kill_all();
        assert!(cg.members().is_empty());
        for pid in orphans {
            // We are their subreaper: each must have died of SIGKILL.
            let mut status = 0;
            // SAFETY: `status` is a live c_int; `pid` was reparented to us.
            let r = unsafe { libc::waitpid(pid, &mut status, 0) };
            assert_eq!(r, pid, "waitpid({pid}): {}", io::Error::last_os_error());
            assert!(
                libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGKILL,
                "{status:#x}"
            );
        }
        cg.remove().unwrap();
        assert!(dirs.iter().all(|d| !d.exists()), "{dirs:?}");
    }

    #[test]
    fn root_pids_limit_and_kill_all_with_the_detected_layout() {
        let limits = LimitsSpec {
            pids: Some(16),
            ..Default::default()
        };
        if gate(
            "root_pids_limit_and_kill_all_with_the_detected_layout",
            missing(&limits, "pids"),
        ) {
            pids_scenario(&detect_layout().unwrap());
        }
    }

    #[test]
    fn root_pids_limit_and_kill_all_with_v1_only() {
        // The v1 path: no cgroup.kill, so the freeze/kill/thaw loop must do the work.
        let mut layout = detect_layout().unwrap();
        layout.v2 = None;
        let why = if !is_root() {
            Some("needs root".to_owned())
        } else if !layout.v1.iter().any(|h| h.controllers.contains(&Ctl::Pids)) {
            Some("no cgroup v1 pids hierarchy on this host".to_owned())
        } else {
            None
        };
        if gate("root_pids_limit_and_kill_all_with_v1_only", why) {
            pids_scenario(&layout);
        }
    }

    #[test]
    fn root_concurrent_prepare_and_remove_leave_nothing() {
        let limits = LimitsSpec {
            pids: Some(32),
            memory: Some(64 << 20),
            ..Default::default()
        };
        if !gate(
            "root_concurrent_prepare_and_remove_leave_nothing",
            missing(&limits, "pids"),
        ) {
            return;
        }
        let threads: Vec<_> = (0..16)
            .map(|_| {
                let limits = limits.clone();
                std::thread::spawn(move || {
                    for _ in 0..25 {
                        let (cg, _) = prepare(&limits).expect("prepare under contention");
                        let cg = cg.expect("leaf");
                        let dirs = cg.dirs();
                        cg.remove().expect("remove under contention");
                        assert!(dirs.iter().all(|d| !d.exists()), "{dirs:?}");
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("thread");
        }
    }

    #[test]
    fn root_reap_stale_removes_a_dead_launchers_leaf() {
        let limits = LimitsSpec {
            pids: Some(8),
            memory: Some(64 << 20),
            ..Default::default()
        };
        if !gate(
            "root_reap_stale_removes_a_dead_launchers_leaf",
            missing(&limits, "pids"),
        ) {
            return;
        }
        // A pid that surely existed and is now dead: a reaped child of ours.
        let dead = spawn_held(|| 0);
        dead.release();
        dead.wait(Duration::from_secs(10));
        let layout = detect_layout().unwrap();
        let name = format!("{LEAF_PREFIX}{}-{:016x}", dead.pid, random_u64());
        let (cg, _) = prepare_in(&layout, &limits, &name, Teardown::Cgroup).unwrap();
        let mut cg = cg.unwrap();
        let dirs = cg.dirs();
        // A process left inside, as after a SIGKILLed launcher.
        let orphan = spawn_held(|| 0);
        cg.attach_from_parent(orphan.pid).unwrap();
        // Simulate the launcher's death: forget the leaf without removing it.
        cg.removed = true;
        drop(cg);
        assert!(dirs.iter().all(|d| d.is_dir()));
        // A live launcher's leaf (ours) must survive the reap.
        let (live, _) = prepare(&limits).unwrap();
        let live = live.unwrap();
        let report = reap_in(&layout);
        assert!(report.failed.is_empty(), "{:?}", report.failed);
        for d in &dirs {
            assert!(
                report.removed.contains(d),
                "{d:?} not in {:?}",
                report.removed
            );
            assert!(!d.exists());
        }
        assert!(live.dirs().iter().all(|d| d.is_dir()), "live leaf reaped");
        let status = orphan.wait(Duration::from_secs(10));
        assert!(
            libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGKILL,
            "{status:#x}"
        );
        live.remove().unwrap();
    }

    #[test]
    fn root_reap_stale_treats_a_zombie_launcher_as_dead() {
        let limits = LimitsSpec {
            pids: Some(8),
            ..Default::default()
        };
        if !gate(
            "root_reap_stale_treats_a_zombie_launcher_as_dead",
            missing(&limits, "pids"),
        ) {
            return;
        }
        // A launcher that was SIGKILLed but not yet reaped by its parent.
        let zombie = spawn_held(|| 0);
        zombie.release();
        let mut zombie_seen = false;
        for _ in 0..400 {
            if process_state(zombie.pid) == Some('Z') {
                zombie_seen = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(zombie_seen, "child never became a zombie");
        let layout = detect_layout().unwrap();
        let name = format!("{LEAF_PREFIX}{}-{:016x}", zombie.pid, random_u64());
        let (cg, _) = prepare_in(&layout, &limits, &name, Teardown::Cgroup).unwrap();
        let mut cg = cg.unwrap();
        let dirs = cg.dirs();
        cg.removed = true;
        drop(cg);
        let report = reap_in(&layout);
        zombie.wait(Duration::from_secs(10));
        for d in &dirs {
            assert!(
                report.removed.contains(d) && !d.exists(),
                "{d:?}: {report:?}"
            );
        }
    }

    #[test]
    fn root_attach_after_exit_is_an_error_and_cleans_up() {
        let limits = LimitsSpec {
            pids: Some(8),
            ..Default::default()
        };
        if !gate(
            "root_attach_after_exit_is_an_error",
            missing(&limits, "pids"),
        ) {
            return;
        }
        let dead = spawn_held(|| 0);
        dead.release();
        dead.wait(Duration::from_secs(10));
        let (cg, _) = prepare(&limits).unwrap();
        let cg = cg.unwrap();
        let dirs = cg.dirs();
        let e = cg.attach_from_parent(dead.pid).unwrap_err();
        assert!(matches!(e, CgroupError::AttachPid { .. }), "{e}");
        drop(cg); // Drop removes too.
        assert!(dirs.iter().all(|d| !d.exists()));
    }

    #[test]
    fn unprivileged_gets_notes_not_errors() {
        if !is_root() {
            // Already unprivileged: the real thing.
            let limits = LimitsSpec {
                pids: Some(8),
                memory: Some(64 << 20),
                ..Default::default()
            };
            let (cg, notes) = prepare(&limits).unwrap();
            match cg {
                None => assert!(notes
                    .iter()
                    .any(|n| n.limit == "memory" && n.kind == NoteKind::NotEnforced)),
                // A delegated subtree: then it must really be a usable leaf.
                Some(cg) => {
                    assert!(cg.dirs().iter().all(|d| d.is_dir()));
                    cg.remove().unwrap();
                }
            }
            return;
        }
        // As root: drop to nobody in a forked child and check prepare's answer there.
        let child = spawn_held(|| {
            if !crate::rlimits::tests::become_uid(65534) {
                return 2;
            }
            let limits = LimitsSpec {
                pids: Some(8),
                memory: Some(64 << 20),
                ..Default::default()
            };
            match prepare(&limits) {
                Ok((None, notes)) => {
                    let ok = ["pids", "memory"].iter().all(|l| {
                        notes.iter().any(|n| {
                            n.limit == *l
                                && n.kind == NoteKind::NotEnforced
                                && n.message.contains("no writable cgroup")
                        })
                    });
                    if ok {
                        0
                    } else {
                        3
                    }
                }
                Ok((Some(_), _)) => 4,
                Err(_) => 5,
            }
        });
        child.release();
        let status = child.wait(Duration::from_secs(30));
        assert!(libc::WIFEXITED(status), "{status:#x}");
        assert_eq!(libc::WEXITSTATUS(status), 0);
    }
}
