//! Where the leaf goes: the mounted hierarchies and our place in them, and the choice of
//! base per hierarchy (`v1`, `v2`).

use std::fs;
use std::path::{Path, PathBuf};

use crate::host::{parse_mountinfo, parse_proc_cgroup};

use super::CgroupError;
use crate::limits::LimitsSpec;

// ---------------------------------------------------------------------------------------------
// Layout detection

/// A controller this module uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Ctl {
    Memory,
    Pids,
    Cpu,
    Freezer,
}

impl Ctl {
    pub fn name(self) -> &'static str {
        match self {
            Ctl::Memory => "memory",
            Ctl::Pids => "pids",
            Ctl::Cpu => "cpu",
            Ctl::Freezer => "freezer",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V1,
    V2,
}

impl Version {
    pub fn name(self) -> &'static str {
        match self {
            Version::V1 => "cgroup v1",
            Version::V2 => "cgroup v2",
        }
    }
}

/// One mounted hierarchy and our place in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hierarchy {
    pub version: Version,
    /// v1: the controllers of this hierarchy we use (co-mounted ones share one hierarchy).
    pub controllers: Vec<Ctl>,
    pub mountpoint: PathBuf,
    /// Our own cgroup's directory (the mountpoint if our cgroup is outside the mount's root).
    pub own: PathBuf,
    /// `own` is really our cgroup (not the mountpoint standing in for a cgroup outside the
    /// mount's root): the launcher may move itself out to it and back (see `enter_self`).
    pub own_exact: bool,
}

impl Hierarchy {
    /// Our cgroup and its ancestors up to the mountpoint, nearest first.
    pub fn candidates(&self) -> Vec<PathBuf> {
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
pub struct Layout {
    pub v2: Option<Hierarchy>,
    pub v1: Vec<Hierarchy>,
}

/// Builds the [`Layout`] from `/proc/self/mountinfo` and `/proc/self/cgroup` text, parsed by
/// `host::procfs` (the one parser doctor uses too).
pub(crate) fn parse_layout(mountinfo: &str, self_cgroup: &str) -> Layout {
    let procs = parse_proc_cgroup(self_cgroup);
    // Our cgroup path in the v2 hierarchy (id 0, no controllers) and in each v1 one.
    let own_v2 = procs
        .iter()
        .rev()
        .find(|c| c.hierarchy == 0 && c.controllers.is_empty())
        .map(|c| c.path.as_str());
    let own_dir = |mountpoint: &Path, root: &str, path: &str| -> (PathBuf, bool) {
        // Our path is relative to the hierarchy's root; the mount may show only a subtree.
        let rel = if root == "/" {
            Some(path)
        } else {
            path.strip_prefix(root)
                .filter(|r| r.is_empty() || r.starts_with('/'))
        };
        match rel {
            Some(r) if !r.split('/').any(|c| c == "..") => {
                (mountpoint.join(r.trim_start_matches('/')), true)
            }
            _ => (mountpoint.to_path_buf(), false),
        }
    };
    let mut layout = Layout::default();
    for m in parse_mountinfo(mountinfo) {
        let mountpoint = PathBuf::from(&m.mount_point);
        match m.fs_type.as_str() {
            "cgroup2" if layout.v2.is_none() => {
                let (own, own_exact) = own_dir(&mountpoint, &m.root, own_v2.unwrap_or("/"));
                layout.v2 = Some(Hierarchy {
                    version: Version::V2,
                    controllers: Vec::new(),
                    mountpoint,
                    own,
                    own_exact: own_exact && own_v2.is_some(),
                });
            }
            "cgroup" => {
                let controllers: Vec<Ctl> = [Ctl::Memory, Ctl::Pids, Ctl::Cpu, Ctl::Freezer]
                    .into_iter()
                    .filter(|c| m.super_options.iter().any(|o| o == c.name()))
                    .filter(|c| !layout.v1.iter().any(|h| h.controllers.contains(c)))
                    .collect();
                let Some(first) = controllers.first() else {
                    continue;
                };
                let path = procs
                    .iter()
                    .filter(|c| !(c.hierarchy == 0 && c.controllers.is_empty()))
                    .find(|c| c.controllers.iter().any(|n| n == first.name()))
                    .map(|c| c.path.as_str());
                let (own, own_exact) = own_dir(&mountpoint, &m.root, path.unwrap_or("/"));
                layout.v1.push(Hierarchy {
                    version: Version::V1,
                    controllers,
                    mountpoint,
                    own,
                    own_exact: own_exact && path.is_some(),
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

pub fn detect_layout() -> Result<Layout, CgroupError> {
    let mountinfo = read(Path::new("/proc/self/mountinfo"))?;
    let cgroup = read(Path::new("/proc/self/cgroup"))?;
    Ok(parse_layout(&mountinfo, &cgroup))
}

/// What a hierarchy contributed while choosing where to put the leaf.
pub(crate) struct Choice {
    pub(crate) hierarchy: Hierarchy,
    pub(crate) base: PathBuf,
    pub(crate) roles: Vec<Ctl>,
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
        assert!(mem.own_exact && v2.own_exact);
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
        let v2 = l.v2.unwrap();
        assert_eq!(v2.own, Path::new("/sys/fs/cgroup x"));
        assert!(
            !v2.own_exact,
            "the mountpoint stands in for a cgroup it is not"
        );
        let l = parse_layout(
            "40 30 0:26 / /cg rw - cgroup2 cgroup2 rw\n",
            "0::/../../etc\n",
        );
        let v2 = l.v2.unwrap();
        assert_eq!(v2.own, Path::new("/cg"));
        assert!(!v2.own_exact);
        // Garbage never panics.
        let l = parse_layout("x - \n - - -\n1 2 3\n", "::::\n0:\n");
        assert_eq!(l, Layout::default());
    }
}
