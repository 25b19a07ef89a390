//! cgroup v1: where the leaf goes in one hierarchy, how its limits are written, what it
//! reports.

use std::path::Path;

use super::{
    cpu_quota_us, format_cpus, keyed, read_u64, write_file, CgroupError, Leaf, CPU_PERIOD_US,
};

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
