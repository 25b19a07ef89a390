//! cgroup v2 (unified): where the leaf goes, how its limits are written, what it reports.

use std::path::Path;

use super::{
    cpu_quota_us, format_cpus, keyed, read_u64, write_file, CgroupError, Leaf, CPU_PERIOD_US,
};

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
