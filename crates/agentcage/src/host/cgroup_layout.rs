//! The cgroup hierarchies of this host and our place in them ([`Layout`], from the one
//! procfs parser), and the one choice of where a leaf can go ([`choose`]): the launcher's run
//! makes the directories and enables controllers as it goes (`limits::cgroup`'s probe); doctor
//! only looks ([`LookProbe`]). Both take the same decisions from the same rules, so doctor
//! cannot promise a backend the launcher would not find, nor miss one it would.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::procfs::{mountinfo_fields, parse_proc_cgroup, unescape_mountinfo};
use crate::sys;

/// The directory every leaf lives in, under the chosen base of each hierarchy.
pub const PARENT_DIR: &str = "agentcage";

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
pub fn parse_layout(mountinfo: &str, self_cgroup: &str) -> Layout {
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
    // Borrowed fields, unescaped only for the hierarchies kept: most lines are not cgroup
    // mounts, and most v1 hierarchies hold no controller we use.
    for m in mountinfo.lines().filter_map(mountinfo_fields) {
        match m.fs_type {
            "cgroup2" if layout.v2.is_none() => {
                let mountpoint = PathBuf::from(unescape_mountinfo(m.mount_point));
                let root = unescape_mountinfo(m.root);
                let (own, own_exact) = own_dir(&mountpoint, &root, own_v2.unwrap_or("/"));
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
                    .filter(|c| m.super_options.split(',').any(|o| o == c.name()))
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
                let mountpoint = PathBuf::from(unescape_mountinfo(m.mount_point));
                let root = unescape_mountinfo(m.root);
                let (own, own_exact) = own_dir(&mountpoint, &root, path.unwrap_or("/"));
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

// ---------------------------------------------------------------------------------------------
// Where a leaf can go

/// What choosing a base asks of the host. The run makes the leaves' parent directory and
/// enables controllers as it goes (`limits::cgroup`); doctor only looks ([`LookProbe`]).
pub trait Probe {
    /// Makes (the run) or checks (doctor) `dir`, the leaves' parent under a candidate base,
    /// where we must be able to create leaves. `Ok(true)`: this call made it.
    ///
    /// # Errors
    /// Why no leaf can be made there (the OS error).
    fn leaf_parent(&mut self, dir: &Path) -> io::Result<bool>;
    /// v2: the controllers `base` offers (`cgroup.controllers`) and those enabled for its
    /// children (`cgroup.subtree_control`), after asking to enable each of `want` it offers.
    fn controllers(&mut self, base: &Path, want: &[Ctl]) -> (Vec<String>, Vec<String>);
    /// Removes `dir`, a leaves' parent this probe made for a base that was not kept.
    fn discard(&mut self, dir: &Path);
}

/// What a hierarchy contributed while choosing where to put the leaf.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    /// The hierarchy.
    pub hierarchy: Hierarchy,
    /// The cgroup the leaves' parent goes under.
    pub base: PathBuf,
    /// The controllers this base serves.
    pub roles: Vec<Ctl>,
}

/// A hierarchy that offered no base.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// Its version.
    pub version: Version,
    /// v1: its controllers (empty for v2).
    pub controllers: Vec<Ctl>,
    /// The first candidate's failure (`v2 /sys/fs/cgroup/x/agentcage: permission denied`).
    pub reason: Option<String>,
}

/// What [`choose`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Chosen {
    /// The bases kept, v2 first, each with the controllers it serves there.
    pub choices: Vec<Choice>,
    /// The hierarchies that offered no base, in order.
    pub refused: Vec<Refusal>,
    /// v2's best base when it serves none of the controllers and no leaf is wanted for
    /// `cgroup.kill` alone (not kept; doctor says what it lacks).
    pub v2_unused: Option<Choice>,
    /// Whether a cgroup v2 hierarchy is mounted.
    pub v2_mounted: bool,
}

impl Chosen {
    /// Why hierarchies were not used, in the order they were tried (the run's note).
    pub fn why(&self) -> Vec<String> {
        let mut why = Vec::new();
        if !self.v2_mounted {
            why.push("no cgroup v2 mount".to_owned());
        }
        why.extend(self.refused.iter().filter_map(|r| r.reason.clone()));
        why
    }

    /// Whether a kept base serves `c`.
    pub fn covers(&self, c: Ctl) -> bool {
        self.choices.iter().any(|ch| ch.roles.contains(&c))
    }
}

/// Where the leaves of a run go: a v2 base (when one serves a wanted controller, or any when
/// `kill` wants `cgroup.kill`), then a v1 base for each wanted controller v2 does not serve
/// (and the freezer for a race-free kill where there is no v2 base).
pub fn choose(layout: &Layout, want: &[Ctl], kill: bool, probe: &mut impl Probe) -> Chosen {
    let mut out = Chosen {
        v2_mounted: layout.v2.is_some(),
        ..Chosen::default()
    };
    if let Some(v2) = &layout.v2 {
        // A v2 leaf without controllers only serves cgroup.kill.
        match choose_v2(v2, want, probe) {
            Ok(c) if kill || !c.roles.is_empty() => out.choices.push(c),
            Ok(c) => out.v2_unused = Some(c),
            Err(reason) => out.refused.push(Refusal {
                version: Version::V2,
                controllers: Vec::new(),
                reason,
            }),
        }
    }
    for h in &layout.v1 {
        let useful = h
            .controllers
            .iter()
            .any(|c| (want.contains(c) || (kill && *c == Ctl::Freezer)) && !out.covers(*c));
        // Freezer only matters where v2 (with cgroup.kill) is absent.
        let only_freezer = h.controllers == [Ctl::Freezer];
        let v2_kept = out
            .choices
            .iter()
            .any(|c| c.hierarchy.version == Version::V2);
        if !useful || (only_freezer && v2_kept) {
            continue;
        }
        match choose_v1(h, want, probe) {
            Ok(mut ch) => {
                ch.roles.retain(|c| !out.covers(*c));
                out.choices.push(ch);
            }
            Err(reason) => out.refused.push(Refusal {
                version: Version::V1,
                controllers: h.controllers.clone(),
                reason,
            }),
        }
    }
    out
}

/// An io::Error without the "(os error N)" suffix, for compact notes.
pub fn short(e: &io::Error) -> String {
    let s = e.to_string();
    match s.find(" (os error") {
        Some(i) => s[..i].to_lowercase(),
        None => s,
    }
}

/// The v2 base: the nearest writable ancestor whose subtree_control has (or accepts) the
/// controllers we want. Falls back to the best partial one. `Err`: the first refusal.
fn choose_v2(
    h: &Hierarchy,
    want: &[Ctl],
    probe: &mut impl Probe,
) -> Result<Choice, Option<String>> {
    let mut best: Option<Choice> = None;
    let mut first_err: Option<String> = None;
    for base in h.candidates() {
        let parent = base.join(PARENT_DIR);
        let created = match probe.leaf_parent(&parent) {
            Ok(c) => c,
            Err(e) => {
                first_err.get_or_insert_with(|| format!("v2 {}: {}", parent.display(), short(&e)));
                continue;
            }
        };
        let (available, enabled) = probe.controllers(&base, want);
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
                probe.discard(&old.base.join(PARENT_DIR));
            }
            best = Some(Choice {
                hierarchy: h.clone(),
                base,
                roles,
            });
        } else if created {
            probe.discard(&parent);
        }
        if complete && best.as_ref().is_some_and(|b| b.roles.len() == want.len()) {
            break;
        }
        if complete && available.is_empty() {
            // Nothing to gain further up in a tree without controllers (e.g. a hybrid host).
            break;
        }
    }
    best.ok_or(first_err)
}

/// The v1 base of a hierarchy: our own cgroup, or the nearest writable ancestor. `Err`: the
/// first refusal.
fn choose_v1(
    h: &Hierarchy,
    want: &[Ctl],
    probe: &mut impl Probe,
) -> Result<Choice, Option<String>> {
    let mut first_err: Option<String> = None;
    for base in h.candidates() {
        match probe.leaf_parent(&base.join(PARENT_DIR)) {
            Ok(_) => {
                let roles = h
                    .controllers
                    .iter()
                    .copied()
                    .filter(|c| want.contains(c) || *c == Ctl::Freezer)
                    .collect();
                return Ok(Choice {
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
    Err(first_err)
}

/// Doctor's probe: looks, writes nothing. A leaves' parent is possible where we may create
/// entries (in it when it exists, else in its base); a controller can be enabled where we may
/// write `cgroup.subtree_control` and no process lives in the base (cgroup v2's "no internal
/// processes" rule, which the run meets as EBUSY). Refusals say whose directory it is.
pub struct LookProbe {
    /// Our effective uid (for the refusals).
    pub euid: u32,
}

/// Why `path` refused us (`errno` from an access check), for doctor: a read-only mount,
/// whose it is, or the errno.
pub(super) fn denied(path: &Path, euid: u32, errno: i32) -> String {
    match errno {
        libc::EROFS => format!("{} is on a read-only mount", path.display()),
        libc::EACCES | libc::EPERM => {
            use std::os::unix::fs::MetadataExt;
            match fs::metadata(path).map(|m| m.uid()) {
                Ok(o) => format!(
                    "{} is owned by uid {o} and not delegated to uid {euid}",
                    path.display()
                ),
                Err(_) => format!("{} is not writable by uid {euid}", path.display()),
            }
        }
        libc::ENOENT => format!("{} does not exist", path.display()),
        _ => format!(
            "{} is not writable: {}",
            path.display(),
            super::errno_text(errno)
        ),
    }
}

impl Probe for LookProbe {
    fn leaf_parent(&mut self, dir: &Path) -> io::Result<bool> {
        let target = if dir.exists() {
            dir
        } else {
            dir.parent().unwrap_or(dir)
        };
        let c = std::ffi::CString::new(target.as_os_str().as_encoded_bytes())
            .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
        sys::dir_writable_by_effective_ids(&c).map_err(|e| {
            io::Error::new(
                io::Error::from_raw_os_error(e.0).kind(),
                denied(target, self.euid, e.0),
            )
        })?;
        Ok(false)
    }

    fn controllers(&mut self, base: &Path, want: &[Ctl]) -> (Vec<String>, Vec<String>) {
        let words = |p: &Path| -> Vec<String> {
            fs::read_to_string(p)
                .map(|s| s.split_whitespace().map(str::to_owned).collect())
                .unwrap_or_default()
        };
        let available = words(&base.join("cgroup.controllers"));
        let mut enabled = words(&base.join("cgroup.subtree_control"));
        let control = std::ffi::CString::new(
            base.join("cgroup.subtree_control")
                .as_os_str()
                .as_encoded_bytes(),
        );
        let may_enable = control.is_ok_and(|c| sys::writable_by_effective_ids(&c).is_ok())
            && fs::read_to_string(base.join("cgroup.procs")).is_ok_and(|p| p.trim().is_empty());
        for c in want {
            let n = c.name();
            if may_enable && available.iter().any(|a| a == n) && !enabled.iter().any(|e| e == n) {
                enabled.push(n.to_owned());
            }
        }
        (available, enabled)
    }

    fn discard(&mut self, _dir: &Path) {}
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
