//! The cgroup layout as doctor sees it: the v2 mount, our cgroup's controllers and
//! delegation, the v1 hierarchies, and which limits backend that leaves.

use std::ffi::CString;
use std::fs;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::cgroup_layout::{
    choose, denied, parse_layout, Chosen, Ctl, Layout, LookProbe, Refusal, Version,
};
use super::procfs::{parse_mountinfo, parse_proc_cgroup, MountInfo, ProcCgroup};
use super::Support;
use crate::sys;

/// Where our cgroup lives on disk, given its path and the mount that shows the hierarchy.
fn cgroup_dir(mount: &MountInfo, path: &str) -> Option<PathBuf> {
    // The mount shows the hierarchy from `mount.root`; our path must lie below it.
    let root = mount.root.trim_end_matches('/');
    let rel = if root.is_empty() {
        path
    } else {
        let rest = path.strip_prefix(root)?;
        if !(rest.is_empty() || rest.starts_with('/')) {
            return None;
        }
        rest
    };
    let rel = rel.trim_start_matches('/');
    if rel.split('/').any(|c| c == "..") {
        return None; // we are outside the mounted view (e.g. another cgroup namespace)
    }
    let mut dir = PathBuf::from(&mount.mount_point);
    if !rel.is_empty() {
        dir.push(rel);
    }
    Some(dir)
}

/// The shape of the cgroup setup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CgroupLayout {
    /// Only cgroup v2 (modern distros).
    Unified,
    /// v1 controller hierarchies plus a v2 mount (systemd "hybrid").
    Hybrid,
    /// Only v1 hierarchies.
    Legacy,
    /// No cgroup filesystem is mounted.
    None,
}

/// Which mechanism the `limits` layer can use here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LimitsBackend {
    /// A writable v2 cgroup with the memory and pids controllers.
    CgroupV2,
    /// Writable v1 memory and pids hierarchies.
    CgroupV1,
    /// No usable cgroup: rlimits only.
    Rlimits,
}

/// The v2 hierarchy as seen from our cgroup.
#[derive(Debug, Clone, Serialize)]
pub struct CgroupV2 {
    /// Where cgroup2 is mounted.
    pub mount_point: String,
    /// Our cgroup (from /proc/self/cgroup, `0::` line).
    pub path: String,
    /// Our cgroup's directory, when it is visible through the mount.
    pub dir: Option<String>,
    /// `cgroup.controllers` of our cgroup: the controllers available to us.
    pub controllers: Vec<String>,
    /// `cgroup.subtree_control`: the controllers enabled for our children.
    pub subtree_control: Vec<String>,
    /// We may create children, move processes and enable controllers (delegation).
    pub delegated: Support,
}

/// One v1 hierarchy we are a member of.
#[derive(Debug, Clone, Serialize)]
pub struct CgroupV1 {
    /// Hierarchy id from /proc/self/cgroup.
    pub hierarchy: u32,
    /// Its controllers.
    pub controllers: Vec<String>,
    /// Where it is mounted, if it is.
    pub mount_point: Option<String>,
    /// Our cgroup in it.
    pub path: String,
    /// Our cgroup's directory.
    pub dir: Option<String>,
    /// We may create child cgroups there.
    pub writable: Support,
}

/// cgroup layout, controllers and delegation.
#[derive(Debug, Clone, Serialize)]
pub struct Cgroups {
    /// Unified, hybrid, legacy or none.
    pub layout: CgroupLayout,
    /// The v2 hierarchy, when mounted.
    pub v2: Option<CgroupV2>,
    /// The v1 hierarchies with controllers (named ones like `name=systemd` are skipped).
    pub v1: Vec<CgroupV1>,
    /// What the `limits` layer can use.
    pub limits_backend: LimitsBackend,
    /// Why that backend (and not a better one).
    pub limits_reason: String,
}

/// Our cgroup locations, computed from the two /proc files (pure; unit-tested).
#[derive(Debug, Clone, PartialEq, Eq)]
struct CgroupPlan {
    /// (mount point, our path, our dir) for v2.
    v2: Option<(String, String, Option<PathBuf>)>,
    /// Each v1 controller hierarchy.
    v1: Vec<V1Plan>,
}

/// A v1 hierarchy we are in, located on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
struct V1Plan {
    hierarchy: u32,
    controllers: Vec<String>,
    mount_point: Option<String>,
    path: String,
    dir: Option<PathBuf>,
}

fn plan_cgroups(mounts: &[MountInfo], cgroups: &[ProcCgroup]) -> CgroupPlan {
    let v2_mount = mounts.iter().find(|m| m.fs_type == "cgroup2");
    let v2_line = cgroups.iter().find(|c| c.hierarchy == 0);
    let v2 = match (v2_mount, v2_line) {
        (Some(m), Some(c)) => Some((
            m.mount_point.clone(),
            c.path.clone(),
            cgroup_dir(m, &c.path),
        )),
        (Some(m), None) => Some((m.mount_point.clone(), String::new(), None)),
        _ => None,
    };
    let v1 = cgroups
        .iter()
        .filter(|c| c.hierarchy != 0)
        .filter(|c| c.controllers.iter().any(|ctl| !ctl.starts_with("name=")))
        .map(|c| {
            let mount = mounts.iter().find(|m| {
                m.fs_type == "cgroup"
                    && c.controllers
                        .iter()
                        .all(|ctl| m.super_options.contains(ctl))
            });
            V1Plan {
                hierarchy: c.hierarchy,
                controllers: c.controllers.clone(),
                mount_point: mount.map(|m| m.mount_point.clone()),
                path: c.path.clone(),
                dir: mount.and_then(|m| cgroup_dir(m, &c.path)),
            }
        })
        .collect();
    CgroupPlan { v2, v1 }
}

fn read_words(path: &Path) -> Vec<String> {
    fs::read_to_string(path)
        .map(|s| s.split_whitespace().map(str::to_string).collect())
        .unwrap_or_default()
}

/// Whether we (effective ids) may write `path`, with the reason when not.
fn writable(path: &Path, euid: u32) -> Support {
    let Ok(c) = CString::new(path.as_os_str().as_encoded_bytes()) else {
        return Support::no("path contains a NUL byte");
    };
    match sys::writable_by_effective_ids(&c) {
        Ok(()) => Support::yes(),
        Err(e) => Support::no(denied(path, euid, e.0)),
    }
}

impl Cgroups {
    pub(super) fn detect(euid: u32) -> Cgroups {
        let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let proc_cgroup = fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
        let plan = plan_cgroups(
            &parse_mountinfo(&mountinfo),
            &parse_proc_cgroup(&proc_cgroup),
        );
        let v2 = plan.v2.map(|(mount_point, path, dir)| {
            let (controllers, subtree_control, delegated) = match &dir {
                Some(d) => {
                    let delegated = [
                        d.clone(),
                        d.join("cgroup.procs"),
                        d.join("cgroup.subtree_control"),
                    ]
                    .iter()
                    .map(|p| writable(p, euid))
                    .find(|s| !s.available)
                    .unwrap_or_else(Support::yes);
                    (
                        read_words(&d.join("cgroup.controllers")),
                        read_words(&d.join("cgroup.subtree_control")),
                        delegated,
                    )
                }
                None => (
                    Vec::new(),
                    Vec::new(),
                    Support::no(format!(
                        "our cgroup {path:?} is not visible under {mount_point}"
                    )),
                ),
            };
            CgroupV2 {
                mount_point,
                path,
                dir: dir.map(|d| d.display().to_string()),
                controllers,
                subtree_control,
                delegated,
            }
        });
        let v1: Vec<CgroupV1> = plan
            .v1
            .into_iter()
            .map(
                |V1Plan {
                     hierarchy,
                     controllers,
                     mount_point,
                     path,
                     dir,
                 }| {
                    let writable = match &dir {
                        Some(d) => writable(d, euid),
                        None => Support::no("the hierarchy is not mounted in our view"),
                    };
                    CgroupV1 {
                        hierarchy,
                        controllers,
                        mount_point,
                        path,
                        dir: dir.map(|d| d.display().to_string()),
                        writable,
                    }
                },
            )
            .collect();
        let layout = match (v2.is_some(), !v1.is_empty()) {
            (true, false) => CgroupLayout::Unified,
            (true, true) => CgroupLayout::Hybrid,
            (false, true) => CgroupLayout::Legacy,
            (false, false) => CgroupLayout::None,
        };
        // The launcher's own choice of base, dry-run: doctor promises what a run would find.
        let hierarchies = parse_layout(&mountinfo, &proc_cgroup);
        let chosen = choose(&hierarchies, &NEEDED, false, &mut LookProbe { euid });
        let (limits_backend, limits_reason) = limits_backend(&hierarchies, &chosen);
        Cgroups {
            layout,
            v2,
            v1,
            limits_backend,
            limits_reason,
        }
    }

    /// The v1 hierarchy carrying `controller`, if any.
    pub fn v1_with(&self, controller: &str) -> Option<&CgroupV1> {
        self.v1
            .iter()
            .find(|h| h.controllers.iter().any(|c| c == controller))
    }
}

/// The controllers the `limits` layer needs of a cgroup backend.
const NEEDED: [Ctl; 2] = [Ctl::Memory, Ctl::Pids];

/// The backend [`choose`] leaves for memory and pids, and why (doctor's words).
fn limits_backend(layout: &Layout, chosen: &Chosen) -> (LimitsBackend, String) {
    let names = |cs: &[Ctl]| cs.iter().map(|c| c.name()).collect::<Vec<_>>().join(", ");
    let mut why = Vec::new();
    let v2_roles: Vec<Ctl> = chosen
        .choices
        .iter()
        .filter(|c| c.hierarchy.version == Version::V2)
        .flat_map(|c| c.roles.iter().copied())
        .collect();
    match &layout.v2 {
        None => why.push("no cgroup v2 mount".to_string()),
        Some(h) => {
            if let Some(r) = chosen.refused.iter().find(|r| r.version == Version::V2) {
                why.push(format!(
                    "cgroup v2 is not delegated to us: {}",
                    r.reason.as_deref().unwrap_or("not writable")
                ));
            } else {
                let missing: Vec<Ctl> = NEEDED
                    .into_iter()
                    .filter(|c| !v2_roles.contains(c))
                    .collect();
                if missing.is_empty() {
                    let base = chosen
                        .choices
                        .iter()
                        .find(|c| c.hierarchy.version == Version::V2)
                        .map_or(&h.mountpoint, |c| &c.base);
                    return (
                        LimitsBackend::CgroupV2,
                        format!(
                            "cgroup v2 {} is writable with memory and pids",
                            base.display()
                        ),
                    );
                }
                why.push(format!(
                    "cgroup v2 at {} lacks the {} controller(s) where we may create cgroups",
                    h.mountpoint.display(),
                    names(&missing)
                ));
            }
        }
    }
    let mut v1_ok = true;
    for c in NEEDED.into_iter().filter(|c| !v2_roles.contains(c)) {
        if chosen
            .choices
            .iter()
            .any(|ch| ch.hierarchy.version == Version::V1 && ch.roles.contains(&c))
        {
            continue;
        }
        v1_ok = false;
        match chosen
            .refused
            .iter()
            .find(|r| r.version == Version::V1 && r.controllers.contains(&c))
        {
            // The reason names the hierarchy (`v1 /sys/fs/cgroup/memory/...`).
            Some(Refusal {
                reason: Some(r), ..
            }) => why.push(r.clone()),
            Some(_) => why.push(format!("v1 {}: not writable", c.name())),
            None => why.push(format!("no v1 {} hierarchy", c.name())),
        }
    }
    if v1_ok {
        return (
            LimitsBackend::CgroupV1,
            format!(
                "{}; v1 memory and pids hierarchies are writable",
                why.join("; ")
            ),
        );
    }
    (LimitsBackend::Rlimits, why.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::cgroup_layout::{Hierarchy, Probe};
    use crate::host::procfs::tests::*;

    #[test]
    fn cgroup_plan_hybrid() {
        let p = plan_cgroups(
            &parse_mountinfo(MOUNTINFO_HYBRID),
            &parse_proc_cgroup(CGROUP_HYBRID),
        );
        let (mp, path, dir) = p.v2.unwrap();
        assert_eq!(
            (mp.as_str(), path.as_str()),
            ("/sys/fs/cgroup/unified", "/")
        );
        assert_eq!(dir, Some(PathBuf::from("/sys/fs/cgroup/unified")));
        assert_eq!(p.v1.len(), 3, "name=systemd is skipped: {:?}", p.v1);
        let mem = p.v1.iter().find(|h| h.controllers == ["memory"]).unwrap();
        assert_eq!(
            mem.dir,
            Some(PathBuf::from(
                "/sys/fs/cgroup/memory/process_api/6b9e496e3a641f55cf664606931acb5f"
            ))
        );
        let pids = p.v1.iter().find(|h| h.controllers == ["pids"]).unwrap();
        assert_eq!(pids.dir, Some(PathBuf::from("/sys/fs/cgroup/pids")));
    }

    #[test]
    fn cgroup_plan_unified_legacy_and_docker() {
        let u = plan_cgroups(
            &parse_mountinfo(MOUNTINFO_UNIFIED),
            &parse_proc_cgroup(CGROUP_UNIFIED),
        );
        assert!(u.v1.is_empty());
        assert_eq!(
            u.v2.unwrap().2,
            Some(PathBuf::from(
                "/sys/fs/cgroup/user.slice/user-1000.slice/user@1000.service/app.slice/tmux.scope"
            ))
        );
        let l = plan_cgroups(
            &parse_mountinfo(MOUNTINFO_LEGACY),
            &parse_proc_cgroup(CGROUP_LEGACY),
        );
        assert!(l.v2.is_none());
        let cpu =
            l.v1.iter()
                .find(|h| h.controllers == ["cpu", "cpuacct"])
                .unwrap();
        assert_eq!(
            cpu.mount_point.as_deref(),
            Some("/sys/fs/cgroup/cpu,cpuacct")
        );
        assert_eq!(
            cpu.dir,
            Some(PathBuf::from("/sys/fs/cgroup/cpu,cpuacct/user.slice"))
        );
        let d = plan_cgroups(
            &parse_mountinfo(MOUNTINFO_DOCKER),
            &parse_proc_cgroup(CGROUP_DOCKER),
        );
        assert_eq!(d.v2.unwrap().2, Some(PathBuf::from("/sys/fs/cgroup")));
        // A path outside the mounted subtree is not guessed.
        let m = &parse_mountinfo(MOUNTINFO_DOCKER)[0];
        assert_eq!(cgroup_dir(m, "/docker/abc1234"), None);
        assert_eq!(cgroup_dir(m, "/other"), None);
        assert_eq!(
            cgroup_dir(m, "/docker/abc123/x"),
            Some(PathBuf::from("/sys/fs/cgroup/x"))
        );
        assert_eq!(
            cgroup_dir(&parse_mountinfo(MOUNTINFO_UNIFIED)[1], "/../x"),
            None
        );
    }

    /// A host for [`choose`]: which leaves' parents can be made, what each base offers.
    struct FakeProbe {
        writable: Vec<&'static str>,
        controllers: Vec<(&'static str, Vec<&'static str>)>,
    }

    impl Probe for FakeProbe {
        fn leaf_parent(&mut self, dir: &Path) -> std::io::Result<bool> {
            if self
                .writable
                .iter()
                .any(|w| dir.parent() == Some(Path::new(w)))
            {
                Ok(false)
            } else {
                Err(std::io::Error::from_raw_os_error(libc::EACCES))
            }
        }

        fn controllers(&mut self, base: &Path, _want: &[Ctl]) -> (Vec<String>, Vec<String>) {
            let c: Vec<String> = self
                .controllers
                .iter()
                .find(|(b, _)| Path::new(b) == base)
                .map(|(_, c)| c.iter().map(|s| s.to_string()).collect())
                .unwrap_or_default();
            (c.clone(), c)
        }

        fn discard(&mut self, _dir: &Path) {}
    }

    fn hierarchy(version: Version, controllers: &[Ctl], dir: &str) -> Hierarchy {
        Hierarchy {
            version,
            controllers: controllers.to_vec(),
            mountpoint: PathBuf::from(dir),
            own: PathBuf::from(dir),
            own_exact: true,
        }
    }

    fn backend(layout: &Layout, probe: &mut FakeProbe) -> (LimitsBackend, String) {
        limits_backend(layout, &choose(layout, &NEEDED, false, probe))
    }

    /// Doctor's backend is the launcher's choice (`choose`) on a probe that only looks.
    #[test]
    fn limits_backend_choice() {
        let cg = "/sys/fs/cgroup";
        let v2 = Some(hierarchy(Version::V2, &[], cg));
        let v1_mem = hierarchy(Version::V1, &[Ctl::Memory], "/sys/fs/cgroup/memory");
        let v1_pids = hierarchy(Version::V1, &[Ctl::Pids], "/sys/fs/cgroup/pids");
        let full = Layout {
            v2: v2.clone(),
            v1: vec![],
        };
        let mut delegated = FakeProbe {
            writable: vec![cg],
            controllers: vec![(cg, vec!["cpu", "memory", "pids"])],
        };
        assert_eq!(backend(&full, &mut delegated).0, LimitsBackend::CgroupV2);
        let hybrid = Layout {
            v2: v2.clone(),
            v1: vec![v1_mem.clone(), v1_pids],
        };
        let mut v1_ok = FakeProbe {
            writable: vec![cg, "/sys/fs/cgroup/memory", "/sys/fs/cgroup/pids"],
            controllers: vec![],
        };
        let (b, why) = backend(&hybrid, &mut v1_ok);
        assert_eq!(b, LimitsBackend::CgroupV1);
        assert!(why.contains("lacks the memory, pids"), "{why}");
        let mut nothing = FakeProbe {
            writable: vec![],
            controllers: vec![(cg, vec!["memory", "pids"])],
        };
        let (b, why) = backend(
            &Layout {
                v2,
                v1: vec![v1_mem],
            },
            &mut nothing,
        );
        assert_eq!(b, LimitsBackend::Rlimits);
        assert!(
            why.contains("not delegated") && why.contains("no v1 pids"),
            "{why}"
        );
        assert_eq!(
            backend(&Layout::default(), &mut nothing).0,
            LimitsBackend::Rlimits
        );
    }
}
