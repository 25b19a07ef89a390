//! cgroup v2 (unified): where the leaf goes, how its limits are written, what it reports.

use std::fs;
use std::path::Path;

use super::{
    cpu_quota_us, format_cpus, keyed, mkdir_writable, read_u64, short, words, write_file,
    CgroupError, Choice, Ctl, Hierarchy, Leaf, CPU_PERIOD_US, PARENT_DIR,
};

/// Finds the v2 base: the nearest writable ancestor whose subtree_control has (or accepts) the
/// controllers we want. Falls back to the best partial one.
pub(super) fn choose_v2(h: &Hierarchy, want: &[Ctl], why: &mut Vec<String>) -> Option<Choice> {
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

/// Writes `memory.max`; returns the swap file to cap, its value and the main file's name.
pub(super) fn write_memory(
    d: &Path,
    m: u64,
) -> Result<(&'static str, u64, &'static str), CgroupError> {
    write_file(&d.join("memory.max"), &m.to_string())?;
    // No swap at all: a hog is OOM-killed promptly instead of thrashing the host.
    Ok(("memory.swap.max", 0, "memory.max"))
}

/// Writes `cpu.max` for `cpus` CPUs; returns the row's detail.
pub(super) fn write_cpu(d: &Path, cpus: f64) -> Result<String, CgroupError> {
    let quota = cpu_quota_us(cpus);
    write_file(&d.join("cpu.max"), &format!("{quota} {CPU_PERIOD_US}"))?;
    Ok(format!(
        "cpu.max={quota} {CPU_PERIOD_US} ({} CPUs)",
        format_cpus(cpus)
    ))
}

/// `memory.events` `oom_kill`.
pub(super) fn oom_killed(l: &Leaf) -> bool {
    keyed(&l.dir.join("memory.events"), "oom_kill").is_some_and(|n| n > 0)
}

/// `memory.peak` (5.19+).
pub(super) fn peak_memory(l: &Leaf) -> Option<u64> {
    read_u64(&l.dir.join("memory.peak"))
}
