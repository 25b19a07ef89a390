//! The prepared leaf during and after the run: entering and attaching the sandbox, signals
//! and kill, OOM and peak memory, how each limit is enforced, teardown.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::{
    fmt_decimal, v1, v2, words, write_file, CgroupError, Ctl, Leaf, PreparedCgroup, Version,
    PROCS_DIR,
};
use crate::limits::{Enforcement, Limit, LimitRow};
use crate::sys;

impl PreparedCgroup {
    /// The leaf's name, `agentcage-<pid>-<random>`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The leaf directories (one per hierarchy used), for reports and tests.
    pub fn dirs(&self) -> Vec<PathBuf> {
        self.leaves.iter().map(|l| l.dir.clone()).collect()
    }

    /// Moves the calling thread into every leaf it can enter itself (v1 with our own cgroup
    /// known; see the module doc), so that a process it clones is born there: the limits hold
    /// from the child's first instruction and its page tables and task struct are charged to
    /// the leaf. Call right before clone and [`PreparedCgroup::leave_self`] right after it,
    /// single-threaded or not (only this thread moves). While inside, the launcher counts
    /// against `pids.max` (so `--pids 1` fails at clone with EAGAIN instead of at the
    /// command's fork). On error nothing stays moved.
    ///
    /// # Errors
    /// [`CgroupError::AttachPid`] with our pid and the `tasks` file.
    pub fn enter_self(&self) -> Result<(), CgroupError> {
        for (i, leaf) in self.leaves.iter().enumerate() {
            let Some((into, _, _)) = &leaf.self_move else {
                continue;
            };
            if let Err(source) = write_zero(into) {
                for entered in &self.leaves[..i] {
                    if let Some((_, back, _)) = &entered.self_move {
                        let _ = write_zero(back);
                    }
                }
                return Err(CgroupError::AttachPid {
                    pid: std::process::id() as i32,
                    path: leaf.inner().join("tasks"),
                    source,
                });
            }
        }
        Ok(())
    }

    /// Moves the calling thread back to its own cgroup in every leaf
    /// [`PreparedCgroup::enter_self`] entered. Tries all of them.
    ///
    /// # Errors
    /// [`CgroupError::AttachPid`] for the first that failed (the launcher is still in that
    /// leaf: the caller must not go on; [`PreparedCgroup::members`] never lists the launcher).
    pub fn leave_self(&self) -> Result<(), CgroupError> {
        let mut first = None;
        for leaf in &self.leaves {
            let Some((_, back, origin)) = &leaf.self_move else {
                continue;
            };
            if let Err(source) = write_zero(back) {
                first.get_or_insert_with(|| CgroupError::AttachPid {
                    pid: std::process::id() as i32,
                    path: origin.clone(),
                    source,
                });
            }
        }
        first.map_or(Ok(()), Err)
    }

    /// Whether some leaf still needs [`PreparedCgroup::attach_from_parent`] after clone
    /// (one that [`PreparedCgroup::enter_self`] cannot enter).
    pub fn needs_attach(&self) -> bool {
        self.leaves
            .iter()
            .any(|l| l.procs.is_some() && l.self_move.is_none())
    }

    /// [`PreparedCgroup::attach_from_parent`] for the leaves [`PreparedCgroup::enter_self`]
    /// does not cover (the launcher's path after a clone inside the entered leaves).
    ///
    /// # Errors
    /// As [`PreparedCgroup::attach_from_parent`].
    pub fn attach_rest_from_parent(&self, pid: i32) -> Result<(), CgroupError> {
        self.attach(pid, |l| l.self_move.is_none())
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
        self.attach(pid, |_| true)
    }

    fn attach(&self, pid: i32, which: fn(&Leaf) -> bool) -> Result<(), CgroupError> {
        let mut buf = [0u8; 20];
        let digits = fmt_decimal(u64::from(pid.unsigned_abs()), &mut buf);
        for leaf in self.leaves.iter().filter(|l| which(l)) {
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
                Version::V2 => v2::oom_killed(l),
                Version::V1 => v1::oom_killed(l, self.memory_limit),
            })
    }

    /// Peak memory use of the sandbox in bytes: v2 `memory.peak` (5.19+), v1
    /// `memory.max_usage_in_bytes`.
    pub fn peak_memory(&self) -> Option<u64> {
        self.leaves
            .iter()
            .filter(|l| l.has(Ctl::Memory))
            .find_map(|l| match l.version {
                Version::V2 => v2::peak_memory(l),
                Version::V1 => v1::peak_memory(l),
            })
    }

    /// How each cgroup limit is enforced: memory by `cgroup v1 memory.limit_in_bytes=512M
    /// (memory.memsw.limit_in_bytes=536870912)`, cpus not enforced because ...
    pub fn enforcement(&self) -> Vec<LimitRow> {
        self.enforcement.clone()
    }

    /// Whether `limit` (pids, memory, cpus) is enforced by this cgroup. Use
    /// `enforces(Limit::Pids)` to pick [`super::rlimit::NprocMode::Off`].
    pub fn enforces(&self, limit: Limit) -> bool {
        self.enforcement
            .iter()
            .any(|r| r.limit == limit && r.how == Enforcement::Cgroup)
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

    /// Every pid in the leaf, both levels.
    pub fn members(&self) -> Vec<i32> {
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

/// Writes "0" (the calling thread) to an open v1 `tasks` file.
fn write_zero(mut f: &File) -> io::Result<()> {
    match f.write(b"0") {
        Ok(1) => Ok(()),
        Ok(_) => Err(io::Error::new(io::ErrorKind::WriteZero, "short write")),
        Err(e) => Err(e),
    }
}

/// Every pid listed in any leaf (both levels), deduplicated; never the launcher itself (it is
/// in a leaf only between [`PreparedCgroup::enter_self`] and a failed `leave_self`).
fn members(leaves: &[Leaf]) -> Vec<i32> {
    let me = std::process::id() as i32;
    let mut pids: Vec<i32> = vec![me];
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
    pids.remove(0);
    pids
}

/// Signals `pid` only if it is (still) a member of the leaf named `name`.
fn signal_member(pid: i32, sig: i32, name: &str) {
    let fd = match sys::pidfd_open(pid) {
        Ok(fd) => fd,
        Err(e) => {
            if e.0 == libc::ENOSYS {
                // Before 5.3: no pidfd. Fall back to the checked plain kill (tiny reuse window).
                if in_leaf(pid, name) {
                    let _ = sys::kill(pid, sig);
                }
            }
            return;
        }
    };
    // The pidfd pins the process we opened. If /proc/<pid> still shows our leaf, it is that
    // process (or it died, and then the signal below goes nowhere).
    if in_leaf(pid, name) {
        let _ = sys::pidfd_send_signal(fd, sig);
    }
    sys::close(fd);
}

pub fn in_leaf(pid: i32, name: &str) -> bool {
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

pub(super) fn teardown(leaves: &mut Vec<Leaf>, name: &str) -> Result<(), CgroupError> {
    kill_leaves(leaves, name);
    let mut first_err = None;
    for l in leaves.drain(..) {
        // Close our fds first: an open cgroup.procs does not pin the directory, but be tidy.
        let Leaf {
            parent, dir, procs, ..
        } = l;
        drop(procs);
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
