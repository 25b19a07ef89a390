//! The layout the run works on (`host::cgroup_layout`: the hierarchies and the one choice of
//! base, shared with doctor), read from this process's /proc, and the controllers a run wants.

use std::fs;
use std::path::Path;

pub use crate::host::cgroup_layout::{
    choose, parse_layout, Choice, Ctl, Hierarchy, Layout, Probe, Version,
};

use super::CgroupError;
use crate::limits::LimitsSpec;

fn read(path: &Path) -> Result<String, CgroupError> {
    fs::read_to_string(path).map_err(|source| CgroupError::Read {
        path: path.to_path_buf(),
        source,
    })
}

pub fn detect_layout() -> Result<Layout, CgroupError> {
    let mountinfo = read(Path::new("/proc/self/mountinfo"))?;
    let cgroup = read(Path::new("/proc/self/cgroup"))?;
    Ok(parse_layout(&mountinfo, &cgroup))
}

pub(crate) fn wanted(limits: &LimitsSpec) -> Vec<Ctl> {
    // Memory and pids are always accounted (OOM detection, peak memory, kill tracking);
    // cpu only when a quota is asked for; freezer (v1) for a race-free kill loop.
    let mut w = vec![Ctl::Memory, Ctl::Pids];
    if limits.cpus.is_some() {
        w.push(Ctl::Cpu);
    }
    w
}
