//! Stale leaves: cgroups left behind by launchers that died without cleaning up.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::sys;

use super::{
    detect_layout, dir_writable, teardown, CgroupError, Layout, Leaf, Version, LEAF_PREFIX,
    PARENT_DIR,
};

// ---------------------------------------------------------------------------------------------
// Stale leaves

/// What `reap_stale` did.
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

pub fn reap_in(layout: &Layout) -> ReapReport {
    // name -> the leaf's directory in each hierarchy.
    let mut stale: BTreeMap<String, Vec<Leaf>> = BTreeMap::new();
    let hierarchies = layout.v2.iter().chain(layout.v1.iter());
    for h in hierarchies {
        for base in h.candidates() {
            let parent = base.join(PARENT_DIR);
            // A leaf is removed from its parent: where we may not write (another user's
            // `agentcage/`, the usual case unprivileged, where the listing is the cgroup's
            // own files) there is nothing we could reap, and one access check is cheaper
            // than the listing (issue 19).
            if dir_writable(&parent).is_err() {
                continue;
            }
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
                    self_move: None,
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
    // Signal 0 only checks existence and permission.
    let alive = match sys::kill(pid, 0) {
        Ok(()) => true,
        Err(e) => e.0 == libc::EPERM,
    };
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
pub fn process_state(pid: i32) -> Option<char> {
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
    let hz = sys::clock_ticks()?;
    Some(
        UNIX_EPOCH
            + Duration::from_secs(btime)
            + Duration::from_millis(ticks.saturating_mul(1000) / hz),
    )
}
