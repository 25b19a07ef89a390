//! The layout the run works on (`host::cgroup_layout`: the hierarchies and the one choice of
//! base, shared with doctor), read from this process's /proc, and the controllers a run wants.

use std::fs;
use std::path::Path;

pub use crate::host::cgroup_layout::{
    choose, parse_layout, Choice, Ctl, Hierarchy, Layout, Probe, Version,
};

use super::CgroupError;
use crate::limits::LimitsSpec;

/// A /proc file read whole into one buffer. `fs::read_to_string` sizes its buffer from a
/// statx, which says 0 for procfs, so it reads 32 bytes, then 32, 64, ... (8 reads for a
/// 3 KiB mountinfo), and each read of a seq_file walks the mount table again up to its
/// offset: most of the launcher's kernel time in detect_layout (issue 19). Here: one read
/// for most tables, one more to see EOF, no statx (`Take` reads with the generic loop).
fn read(path: &Path) -> Result<String, CgroupError> {
    use std::io::Read;
    let err = |source| CgroupError::Read {
        path: path.to_path_buf(),
        source,
    };
    let f = fs::File::open(path).map_err(err)?;
    let mut s = String::with_capacity(16 << 10);
    f.take(u64::MAX).read_to_string(&mut s).map_err(err)?;
    Ok(s)
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
