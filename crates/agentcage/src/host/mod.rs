//! Host feature detection: what this kernel, in this context, lets *this caller* enforce.
//!
//! [`Features::detect`] asks the kernel, never the version string (rust-landlock's rule):
//!
//! - **user namespaces** are tried in a throwaway forked child that does what the launcher
//!   does: `unshare(CLONE_NEWUSER)`, write `setgroups`/`uid_map`/`gid_map`, unshare the mount,
//!   pid, net, ipc, uts and cgroup namespaces, mount a tmpfs and, as pid 1 of the new pid
//!   namespace, a fresh `proc`. As root the trial is repeated after `setresuid(65534)`, because
//!   the distro knobs (`kernel.unprivileged_userns_clone`, AppArmor's
//!   `kernel.apparmor_restrict_unprivileged_userns`) only bite callers without
//!   `CAP_SYS_ADMIN`. A failure names the step, the errno and the fix ([`userns_failure_hint`]).
//! - **Landlock**: `landlock_create_ruleset(NULL, 0, LANDLOCK_CREATE_RULESET_VERSION)`;
//!   `ENOSYS` = not built in, `EOPNOTSUPP` = built in but not in the `lsm=` boot list.
//! - **seccomp**: `prctl(PR_GET_SECCOMP)` for the caller's own mode, the actions the kernel
//!   knows (`SECCOMP_GET_ACTION_AVAIL`), and an allow-all filter installed in a forked child.
//! - **32-bit entry points**: `int 0x80` `getpid` in a forked child (IA32 emulation; a
//!   `SIGSEGV` or `-ENOSYS` means it is off) and `getpid | __X32_SYSCALL_BIT` (x32).
//! - **newer syscalls** (`mount_setattr`, `open_tree`, `close_range`, `pidfd_open`, `clone3`)
//!   are called with arguments the kernel rejects before doing anything: `ENOSYS` means absent,
//!   `EINVAL`/`EBADF` means present.
//! - **cgroups** from `/proc/self/mountinfo` and `/proc/self/cgroup`: the v2 mount, our
//!   cgroup's `cgroup.controllers`/`cgroup.subtree_control`, whether we may write it
//!   (delegation), and the v1 hierarchies that carry `memory` and `pids`.
//! - **sysctls** that change the attack surface (`dev.tty.legacy_tiocsti`,
//!   `kernel.io_uring_disabled`, Yama, BPF, perf).
//!
//! Every "no" carries a reason string. The forked children run only async-signal-safe code
//! on data prepared before the fork (the caller may be multi-threaded: a test harness, the
//! benchmark), report a fixed-size `(step, errno, detail)` record over a pipe, and are always
//! reaped; a 2 s deadline kills a child that hangs. The whole detection takes a few
//! milliseconds.
//!
//! From [`Features`] we derive the degradation ladder ([`Features::ladder`], in
//! `crate::ladder`): for each profile, whether each of its layers can be enforced by this
//! caller and, if not, which weaker set of layers remains and exactly which guarantees are
//! lost. The same value feeds `agentcage doctor` (`crate::doctor`), `agentcage policy show`
//! and, through `doctor --json`, the matrix header.
//!
//! The launcher does not run this detection: it asks for the cheap pieces on its own path
//! ([`agentcage_landlock::detect_abi`], `sys::mount_setattr_available`) and, after a failed
//! `clone(CLONE_NEWUSER)`, calls [`userns_failure_hint`].
//!
//! Rooms: `trial` (the throwaway child), `userns`, `seccomp`, `compat` (ia32/x32), `syscalls`
//! (ENOSYS probes), `landlock` (the report over `agentcage-landlock`), `procfs` (mountinfo and
//! /proc/self/cgroup), `cgroup` (layout and limits backend), `sysctl`. The ladder built on
//! [`Features`] is `crate::ladder`.
//!
//! Man pages: user_namespaces(7), landlock(7), seccomp(2), cgroups(7), proc_sys_kernel(5).

#![forbid(unsafe_code)] // raw calls live in `crate::sys` (`sys/host.rs`)

mod cgroup;
pub(crate) mod cgroup_layout;
mod compat;
mod landlock;
mod procfs;
mod seccomp;
mod syscalls;
mod sysctl;
mod trial;
mod userns;

#[cfg(any(test, feature = "test-support"))]
pub mod testing;

pub use cgroup::{CgroupLayout, CgroupV1, CgroupV2, Cgroups, LimitsBackend};
pub use compat::CompatAbis;
pub use landlock::{landlock_rights, LandlockInfo, LandlockRight};
pub use procfs::{parse_mountinfo, parse_proc_cgroup, MountInfo, ProcCgroup};
pub use seccomp::SeccompInfo;
pub use syscalls::{mount_setattr_available, Syscalls};
pub use sysctl::{parse_sysctl_int, Sysctls};
pub use userns::{userns_failure_hint, UserNamespaces, UsernsKnobs, UsernsStep, UsernsTrial};

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::host::compat::{
    cmdline_param, finish_ia32_trial, finish_x32_trial, spawn_ia32_trial, spawn_x32_trial,
};
use crate::host::seccomp::{finish_seccomp_trial, spawn_seccomp_trial};
use crate::host::syscalls::detect_syscalls;
use crate::host::sysctl::read_sysctl_int;
use crate::host::userns::{finish_userns_trial, spawn_userns_trial, UsernsPlan};
use crate::sys;

/// The uid/gid the unprivileged trial drops to when detection runs as root (`nobody`).
pub const NOBODY: u32 = 65534;

/// How long a throwaway child may take before it is killed and reported as hung.
pub(super) const CHILD_DEADLINE: Duration = Duration::from_secs(2);

/// Whether something is available, and if not, why (never a bare "no").
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Support {
    /// The kernel (in this context) provides it.
    pub available: bool,
    /// Why not, or a qualification when available. `None` for a plain yes.
    pub reason: Option<String>,
}

impl Support {
    /// A plain yes.
    pub fn yes() -> Support {
        Support {
            available: true,
            reason: None,
        }
    }

    /// A yes with a remark.
    pub fn yes_because(reason: impl Into<String>) -> Support {
        Support {
            available: true,
            reason: Some(reason.into()),
        }
    }

    /// A no with its reason.
    pub fn no(reason: impl Into<String>) -> Support {
        Support {
            available: false,
            reason: Some(reason.into()),
        }
    }
}

/// `EPERM: Operation not permitted`-style text for an errno.
pub fn errno_text(errno: i32) -> String {
    let desc = std::io::Error::from_raw_os_error(errno).to_string();
    // std appends " (os error N)": keep only the description.
    let desc = desc.split(" (os error").next().unwrap_or(&desc).to_string();
    match errno_name(errno) {
        Some(name) => format!("{name}: {desc}"),
        None => format!("errno {errno}: {desc}"),
    }
}

/// Symbolic name of an errno (the launcher's table, `sys::errno_name`).
pub fn errno_name(errno: i32) -> Option<&'static str> {
    Some(crate::sys::errno_name(errno)).filter(|n| *n != "E?")
}

/// Everything detection found, with reasons. Serialized as-is in `agentcage doctor --json`.
#[derive(Debug, Clone, Serialize)]
pub struct Features {
    /// uname(2).
    pub kernel: KernelInfo,
    /// Who is asking, and from where (root, capabilities, container, existing seccomp filter).
    pub caller: Caller,
    /// Unprivileged user namespaces, tried for real.
    pub userns: UserNamespaces,
    /// Landlock ABI and the rights it brings.
    pub landlock: LandlockInfo,
    /// seccomp filter support.
    pub seccomp: SeccompInfo,
    /// The 32-bit syscall entry points a seccomp filter must close.
    pub compat: CompatAbis,
    /// Newer syscalls the launcher prefers when present.
    pub syscalls: Syscalls,
    /// cgroup layout, controllers and delegation.
    pub cgroups: Cgroups,
    /// Attack-surface sysctls.
    pub sysctls: Sysctls,
    /// Wall-clock time detection took, in microseconds.
    pub detect_micros: u64,
}

/// uname(2) fields.
#[derive(Debug, Clone, Serialize)]
pub struct KernelInfo {
    /// `uname -r`, e.g. `6.18.44`. Informational only: nothing is decided from it.
    pub release: String,
    /// `uname -v`.
    pub version: String,
    /// `uname -m`, e.g. `x86_64`.
    pub machine: String,
}

/// The calling process's identity and confinement.
#[derive(Debug, Clone, Serialize)]
pub struct Caller {
    /// Real uid.
    pub uid: u32,
    /// Effective uid.
    pub euid: u32,
    /// Effective gid.
    pub egid: u32,
    /// euid 0.
    pub is_root: bool,
    /// CAP_SYS_ADMIN in the effective set (what the userns distro knobs test).
    pub cap_sys_admin: bool,
    /// Our user namespace is the initial one (`/proc/self/uid_map` is the identity map).
    pub initial_user_ns: bool,
    /// `PR_GET_SECCOMP`: 0 none, 2 already under a filter (e.g. a container's profile);
    /// `None` when the kernel has no seccomp.
    pub seccomp_mode: Option<i32>,
    /// `NoNewPrivs` from /proc/self/status.
    pub no_new_privs: bool,
    /// Container runtime we appear to run in (docker, podman, kubernetes, lxc, ...), if any.
    pub container: Option<String>,
}

impl Features {
    /// Detects everything. Fast (a few ms: three to five short-lived children run in
    /// parallel) and never fails: each probe that cannot decide reports why.
    pub fn detect() -> Features {
        let start = Instant::now();
        let caller = detect_caller();

        // Start every forked trial first so they run concurrently, then do the in-process
        // probes, then collect.
        let userns_plan = UsernsPlan::new(caller.euid, caller.egid, None);
        let userns_caller = spawn_userns_trial(&userns_plan);
        let nobody_plan = UsernsPlan::new(NOBODY, NOBODY, Some((NOBODY, NOBODY)));
        let userns_nobody = caller.is_root.then(|| spawn_userns_trial(&nobody_plan));
        let seccomp_child = spawn_seccomp_trial();
        let ia32_child = spawn_ia32_trial();
        let x32_child = spawn_x32_trial();

        let kernel = detect_kernel();
        let landlock = LandlockInfo::from_abi(agentcage_landlock::detect_abi());
        let syscalls = detect_syscalls();
        let cgroups = Cgroups::detect(caller.euid);
        let sysctls = Sysctls::read();
        let knobs = UsernsKnobs::read(&caller);

        let deadline = Instant::now() + CHILD_DEADLINE;
        let as_caller = finish_userns_trial(userns_caller, &userns_plan, &knobs, deadline);
        let for_unprivileged = match userns_nobody {
            Some(child) => {
                let unpriv_knobs = UsernsKnobs {
                    cap_sys_admin: false,
                    ..knobs.clone()
                };
                finish_userns_trial(child, &nobody_plan, &unpriv_knobs, deadline)
            }
            None => as_caller.clone(),
        };
        let seccomp = finish_seccomp_trial(seccomp_child, caller.seccomp_mode, deadline);
        let compat = CompatAbis {
            ia32: finish_ia32_trial(ia32_child, deadline),
            ia32_emulation_boot_param: cmdline_param("ia32_emulation"),
            vsyscall32: read_sysctl_int("abi/vsyscall32"),
            x32: finish_x32_trial(x32_child, deadline),
        };

        Features {
            kernel,
            userns: UserNamespaces {
                as_caller,
                for_unprivileged,
                knobs,
            },
            caller,
            landlock,
            seccomp,
            compat,
            syscalls,
            cgroups,
            sysctls,
            detect_micros: u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX),
        }
    }
}

/// The caller's user-namespace trial alone (what the launcher does, up to a fresh /proc):
/// `run --best-effort` asks it before falling back to the nested rung. A few ms.
pub fn userns_trial() -> UsernsTrial {
    let caller = detect_caller();
    let plan = UsernsPlan::new(caller.euid, caller.egid, None);
    let child = spawn_userns_trial(&plan);
    let knobs = UsernsKnobs::read(&caller);
    finish_userns_trial(child, &plan, &knobs, Instant::now() + CHILD_DEADLINE)
}

fn c_chars_to_string(chars: &[libc::c_char]) -> String {
    let bytes: Vec<u8> = chars
        .iter()
        .take_while(|c| **c != 0)
        .map(|c| *c as u8)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

fn detect_kernel() -> KernelInfo {
    let uts = match sys::uname() {
        Ok(uts) => uts,
        Err(e) => {
            let why = errno_text(e.0);
            return KernelInfo {
                release: format!("unknown (uname failed: {why})"),
                version: String::new(),
                machine: String::new(),
            };
        }
    };
    KernelInfo {
        release: c_chars_to_string(&uts.release),
        version: c_chars_to_string(&uts.version),
        machine: c_chars_to_string(&uts.machine),
    }
}

/// A `Key:\tvalue` field of /proc/self/status.
fn status_field<'a>(status: &'a str, key: &str) -> Option<&'a str> {
    status.lines().find_map(|l| {
        l.strip_prefix(key)
            .and_then(|rest| rest.strip_prefix(':'))
            .map(str::trim)
    })
}

/// Whether `CapEff` (hex) contains CAP_SYS_ADMIN (bit 21).
fn cap_eff_has_sys_admin(cap_eff_hex: &str) -> bool {
    u64::from_str_radix(cap_eff_hex, 16)
        .map(|caps| caps & (1 << 21) != 0)
        .unwrap_or(false)
}

/// Whether a uid_map is the initial namespace's identity map.
fn is_identity_uid_map(map: &str) -> bool {
    let fields: Vec<&str> = map.split_whitespace().collect();
    fields == ["0", "0", "4294967295"]
}

pub(super) fn detect_caller() -> Caller {
    let (uid, euid, egid) = (sys::getuid(), sys::geteuid(), sys::getegid());
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    let seccomp_mode = sys::prctl(libc::PR_GET_SECCOMP, 0, 0, 0, 0).ok();
    let uid_map = fs::read_to_string("/proc/self/uid_map").unwrap_or_default();
    let initial_user_ns = is_identity_uid_map(&uid_map);
    let cgroup = fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    Caller {
        uid,
        euid,
        egid,
        is_root: euid == 0,
        cap_sys_admin: status_field(&status, "CapEff").is_some_and(cap_eff_has_sys_admin),
        initial_user_ns,
        seccomp_mode,
        no_new_privs: status_field(&status, "NoNewPrivs") == Some("1"),
        container: detect_container(&cgroup, &mountinfo, initial_user_ns),
    }
}

/// Guesses the container runtime from the usual markers. Used only to phrase hints.
///
/// Marker files (`/.dockerenv`, `/run/.containerenv`) also survive in VM images built from
/// container images, so they count only when the root filesystem is an overlay.
fn detect_container(
    proc_self_cgroup: &str,
    mountinfo: &str,
    initial_user_ns: bool,
) -> Option<String> {
    if std::env::var_os("KUBERNETES_SERVICE_HOST").is_some() {
        return Some("kubernetes".into());
    }
    if let Some(c) = std::env::var("container").ok().filter(|c| !c.is_empty()) {
        return Some(c);
    }
    if let Some(c) = container_from_cgroup(proc_self_cgroup) {
        return Some(c);
    }
    if root_is_overlay(&parse_mountinfo(mountinfo)) {
        if Path::new("/.dockerenv").exists() {
            return Some("docker".into());
        }
        if Path::new("/run/.containerenv").exists() {
            return Some("podman".into());
        }
    }
    (!initial_user_ns).then(|| "unknown (running inside a user namespace)".to_string())
}

/// Whether `/` is an overlay (the usual container root).
fn root_is_overlay(mounts: &[MountInfo]) -> bool {
    mounts
        .iter()
        .rev()
        .find(|m| m.mount_point == "/")
        .is_some_and(|m| {
            matches!(
                m.fs_type.as_str(),
                "overlay" | "fuse.fuse-overlayfs" | "aufs"
            )
        })
}

/// Recognizes container runtimes from the paths in /proc/self/cgroup.
fn container_from_cgroup(proc_self_cgroup: &str) -> Option<String> {
    for entry in parse_proc_cgroup(proc_self_cgroup) {
        let p = entry.path.as_str();
        if p.contains("kubepods") {
            return Some("kubernetes".into());
        }
        if p.contains("/docker") || p.contains("docker-") {
            return Some("docker".into());
        }
        if p.contains("libpod") {
            return Some("podman".into());
        }
        if p.contains("/lxc") || p.contains("lxc.payload") {
            return Some("lxc".into());
        }
        if p.contains("containerd") {
            return Some("containerd".into());
        }
    }
    None
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    use crate::host::procfs::tests::*;
    use crate::ladder::tests::strongest_enforceable;
    use crate::policy::Profile;

    use std::cell::RefCell;

    thread_local! {
        static CHILDREN: RefCell<Vec<libc::pid_t>> = const { RefCell::new(Vec::new()) };
    }

    pub(super) fn note_child(pid: libc::pid_t) {
        CHILDREN.with(|c| c.borrow_mut().push(pid));
    }

    #[test]
    fn status_fields_and_caps() {
        let status = "Name:\tx\nNoNewPrivs:\t1\nCapEff:\t000001ffffffffff\nSeccomp:\t2\n";
        assert_eq!(status_field(status, "NoNewPrivs"), Some("1"));
        assert_eq!(status_field(status, "Seccomp"), Some("2"));
        assert_eq!(status_field(status, "Cap"), None);
        assert!(cap_eff_has_sys_admin("000001ffffffffff"));
        assert!(!cap_eff_has_sys_admin("0000000000000000"));
        assert!(!cap_eff_has_sys_admin("00000000a80425fb")); // Docker's default set
        assert!(is_identity_uid_map("         0          0 4294967295\n"));
        assert!(!is_identity_uid_map("         0       1000          1\n"));
    }

    #[test]
    fn container_markers_in_cgroup_paths() {
        assert_eq!(
            container_from_cgroup(CGROUP_DOCKER).as_deref(),
            Some("docker")
        );
        assert_eq!(
            container_from_cgroup("0::/kubepods/burstable/pod1/abc\n").as_deref(),
            Some("kubernetes")
        );
        assert_eq!(container_from_cgroup(CGROUP_UNIFIED), None);
        assert_eq!(container_from_cgroup(CGROUP_HYBRID), None);
        assert!(!root_is_overlay(&parse_mountinfo(MOUNTINFO_HYBRID)));
        let overlay = "1 0 0:40 / / rw - overlay overlay rw,lowerdir=/l,upperdir=/u,workdir=/w\n";
        assert!(root_is_overlay(&parse_mountinfo(overlay)));
    }

    /// The feature names [`feature`] knows (the `AGENTCAGE_TEST_EXPECT` vocabulary):
    /// `userns` (works for an unprivileged user), `landlock`, `seccomp`, `ia32` (live), `x32`
    /// (live), `cgroup2` (delegated v2 with memory and pids), `cgroup` (v2 or v1 limits),
    /// `mount_setattr`.
    const FEATURE_NAMES: [&str; 8] = [
        "userns",
        "landlock",
        "seccomp",
        "ia32",
        "x32",
        "cgroup2",
        "cgroup",
        "mount_setattr",
    ];

    /// One named feature of [`FEATURE_NAMES`].
    fn feature(f: &Features, name: &str) -> Support {
        match name {
            "userns" => {
                let t = &f.userns.for_unprivileged;
                if t.works {
                    Support::yes()
                } else {
                    Support::no(t.reason.clone().unwrap_or_default())
                }
            }
            "landlock" => f.landlock.support.clone(),
            "seccomp" => f.seccomp.filter.clone(),
            "ia32" => f.compat.ia32.clone(),
            "x32" => f.compat.x32.clone(),
            "mount_setattr" => f.syscalls.mount_setattr.clone(),
            // cgroup v2 usable for limits: delegated to us, with memory and pids.
            "cgroup2" => match f.cgroups.limits_backend {
                LimitsBackend::CgroupV2 => Support::yes(),
                _ => Support::no(f.cgroups.limits_reason.clone()),
            },
            // Any cgroup backend (v2, or writable v1 memory and pids).
            "cgroup" => match f.cgroups.limits_backend {
                LimitsBackend::Rlimits => Support::no(f.cgroups.limits_reason.clone()),
                _ => Support::yes(),
            },
            other => Support::no(format!("unknown feature name {other:?}")),
        }
    }

    /// Runs detection on this machine. Facts that differ between hosts are only asserted
    /// when listed in `AGENTCAGE_TEST_EXPECT` (e.g. `userns,landlock,seccomp,ia32`); the
    /// rest is printed.
    #[test]
    fn detect_on_this_host() {
        CHILDREN.with(|c| c.borrow_mut().clear());
        let f = Features::detect();
        eprintln!("{}", serde_json::to_string_pretty(&f).unwrap());
        eprintln!("detect took {} us", f.detect_micros);

        // Independent oracles.
        let osrelease = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
        assert_eq!(f.kernel.release, osrelease.trim());
        assert_eq!(f.caller.is_root, sys::geteuid() == 0);
        assert_eq!(
            f.landlock.version,
            agentcage_landlock::detect_abi().unwrap_or(0)
        );
        assert_eq!(
            f.syscalls.mount_setattr.available,
            mount_setattr_available()
        );
        let status = fs::read_to_string("/proc/self/status").unwrap();
        assert_eq!(
            f.caller.seccomp_mode.map(|m| m.to_string()).as_deref(),
            status_field(&status, "Seccomp")
        );
        assert!(
            f.detect_micros < 2_000_000,
            "detection took {} us",
            f.detect_micros
        );

        // No child outlives detection: every forked pid is reaped (kill(pid, 0) -> ESRCH).
        let pids = CHILDREN.with(|c| c.borrow().clone());
        assert!(!pids.is_empty());
        for pid in pids {
            // Signal 0 only checks for existence.
            assert!(
                sys::kill(pid, 0) == Err(sys::Errno(libc::ESRCH)),
                "child {pid} still exists"
            );
        }

        let expect = std::env::var("AGENTCAGE_TEST_EXPECT").unwrap_or_default();
        let expected: Vec<&str> = expect
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        for name in FEATURE_NAMES {
            let s = feature(&f, name);
            if expected.contains(&name) {
                assert!(
                    s.available,
                    "AGENTCAGE_TEST_EXPECT lists {name}, but: {:?}",
                    s.reason
                );
            } else {
                eprintln!(
                    "{name}: {} ({})",
                    s.available,
                    s.reason.as_deref().unwrap_or("-")
                );
            }
        }
        if expected.contains(&"userns") {
            assert!(f.userns.as_caller.works, "{:?}", f.userns.as_caller);
        }
        if expected.contains(&"landlock") {
            assert!(f.landlock.version >= 1);
            assert!(f.landlock.has("fs", "read_file"));
        }
        // The variable is shared by the whole workspace: names other crates gate on are
        // not ours to judge.
        for name in expected.iter().filter(|n| !FEATURE_NAMES.contains(n)) {
            eprintln!("AGENTCAGE_TEST_EXPECT: {name:?} is not a kernel feature name; ignored here");
        }
        assert_no_hang(&f);
        // The ladder is consistent with the features.
        let ladder = f.ladder();
        assert!(ladder[0].enforceable);
        assert_eq!(
            ladder[3].enforceable,
            strongest_enforceable(&f) == Profile::Full
        );
    }

    /// No trial may hit the deadline on a healthy host: a hang means the child blocked on
    /// something not async-signal-safe (e.g. glibc's set*id broadcast after a raw fork).
    fn assert_no_hang(f: &Features) {
        for t in [&f.userns.as_caller, &f.userns.for_unprivileged] {
            assert_ne!(t.failed_step, Some(UsernsStep::Timeout), "{t:?}");
        }
        for s in [&f.seccomp.filter, &f.compat.ia32, &f.compat.x32] {
            assert!(!s.reason.as_deref().unwrap_or("").contains("hung"), "{s:?}");
        }
    }

    #[test]
    fn detect_is_fast() {
        // Several detections at once from many threads, as a multi-threaded embedder would.
        let threads: Vec<_> = (0..4)
            .map(|_| {
                std::thread::spawn(|| {
                    let t = Instant::now();
                    let f = Features::detect();
                    (t.elapsed(), f)
                })
            })
            .collect();
        for th in threads {
            let (took, f) = th.join().unwrap();
            assert_no_hang(&f);
            assert!(took < Duration::from_secs(1), "detect took {took:?}");
        }
        let t = Instant::now();
        let f = Features::detect();
        let took = t.elapsed();
        assert_no_hang(&f);
        eprintln!("detect: {took:?} (self-reported {} us)", f.detect_micros);
        assert!(took < Duration::from_millis(500), "detect took {took:?}");
    }
}
