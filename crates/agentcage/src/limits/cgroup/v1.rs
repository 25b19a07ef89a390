//! cgroup v1: where the leaf goes in one hierarchy, how its limits are written, what it
//! reports.

use std::path::Path;

use super::{
    cpu_quota_us, format_cpus, keyed, mkdir_writable, read_u64, short, write_file, CgroupError,
    Choice, Ctl, Hierarchy, Leaf, CPU_PERIOD_US, PARENT_DIR,
};

/// Finds the v1 base of a hierarchy: our own cgroup, or the nearest writable ancestor.
pub(super) fn choose_v1(h: &Hierarchy, want: &[Ctl], why: &mut Vec<String>) -> Option<Choice> {
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

/// Writes `memory.limit_in_bytes`; returns the swap file to cap, its value and the main file's
/// name.
pub(super) fn write_memory(
    d: &Path,
    m: u64,
) -> Result<(&'static str, u64, &'static str), CgroupError> {
    write_file(&d.join("memory.limit_in_bytes"), &m.to_string())?;
    // memsw counts memory + swap; equal to the limit means no swap (set after
    // limit_in_bytes: the kernel requires memsw >= limit).
    Ok(("memory.memsw.limit_in_bytes", m, "memory.limit_in_bytes"))
}

/// Writes `cpu.cfs_period_us` and `cpu.cfs_quota_us` for `cpus` CPUs; returns the row's detail.
pub(super) fn write_cpu(d: &Path, cpus: f64) -> Result<String, CgroupError> {
    let quota = cpu_quota_us(cpus);
    write_file(&d.join("cpu.cfs_period_us"), &CPU_PERIOD_US.to_string())?;
    write_file(&d.join("cpu.cfs_quota_us"), &quota.to_string())?;
    Ok(format!(
        "cpu.cfs_quota_us={quota}/{CPU_PERIOD_US} ({} CPUs)",
        format_cpus(cpus)
    ))
}

/// `memory.oom_control` `oom_kill` (4.13+), or on older kernels a hit limit
/// (`memory.failcnt`) with usage at the limit.
pub(super) fn oom_killed(l: &Leaf, limit: Option<u64>) -> bool {
    // v1 counts the kill in the victim's own memcg (`sandbox/`) and, depending on the
    // kernel, in the limiting one: read both.
    match keyed(&l.dir.join("memory.oom_control"), "oom_kill")
        .into_iter()
        .chain(keyed(&l.inner().join("memory.oom_control"), "oom_kill"))
        .reduce(|a, b| a + b)
    {
        Some(n) => n > 0,
        None => {
            let failcnt = read_u64(&l.dir.join("memory.failcnt")).unwrap_or(0);
            let peak = read_u64(&l.dir.join("memory.max_usage_in_bytes")).unwrap_or(0);
            failcnt > 0 && limit.is_some_and(|m| peak + (1 << 20) >= m)
        }
    }
}

/// `memory.max_usage_in_bytes`.
pub(super) fn peak_memory(l: &Leaf) -> Option<u64> {
    read_u64(&l.dir.join("memory.max_usage_in_bytes"))
}
