//! The composed root: a fresh tmpfs with read-only system dirs, a minimal /dev, a fresh
//! /proc with masked paths, a tmpfs /tmp, a synthesized /etc, the workspace and the extras.
//!
//! `prepare` (parent) turns the policy into a flat list of [`Op`]s whose strings are all
//! built up front; `apply` (child, after clone into a new user+mount namespace) executes them
//! with raw syscalls only. The sequence: mount the root tmpfs on any host directory, pivot
//! into it with the host root put at [`OLDROOT`] inside it (sources under the host's `/tmp`
//! stay visible: the tmpfs leaves that directory when it becomes the root), compose the tree
//! in place, then detach the host root and remove its mount point. bubblewrap pivots twice
//! (a staging tmpfs holding both roots); one pivot saves a tmpfs and a pivot_root per run.
//!
//! Read-only binds are made with a bind followed by `mount_setattr(AT_RECURSIVE, RDONLY)`
//! (Linux 5.12+) or, on older kernels, a `MS_REMOUNT|MS_BIND|MS_RDONLY` that keeps the flags
//! a more privileged namespace locked: a single `mount(MS_BIND|MS_RDONLY)` ignores RDONLY.
//! With mount_setattr, the binds of /etc and of /dev's nodes take their attributes from one
//! recursive setattr on their dir after them ([`Op::SetAttrs`]), and the /proc masks after
//! the first copy its flags ([`Op::ProcMask`]): a bind copies its source mount's flags. The
//! resulting mount table is the same (per-bind setattr: 51 calls per `full` run; grouped, with
//! the pinned binds cloned with their attributes by `open_tree_attr`: 11).
//! Kernel: mount_namespaces(7), pivot_root(2), mount_setattr(2).

use std::ffi::{CStr, CString};
use std::path::{Path, PathBuf};

use crate::error::{PolicyError, Step};
use crate::sys;

/// Where the staging tmpfs may be mounted: the first existing directory of these (any
/// directory works: the mount is private to the new namespace and pivoted away).
const STAGE_CANDIDATES: &[&str] = &["/tmp", "/run", "/mnt", "/var/tmp", "/dev", "/"];
/// Where the host root is while the plan runs: a directory of the root tmpfs, detached and
/// removed before anything of the command runs. No plan target may lie at or below it
/// (`PreparedRootfs::oldroot_taken`: the run fails rather than write to the host).
const OLDROOT: &str = "/.agentcage-oldroot";
/// The host's /dev/null and /proc while the plan runs (under [`OLDROOT`]).
const OLDROOT_DEV_NULL: &CStr = c"/.agentcage-oldroot/dev/null";
const OLDROOT_PROC: &CStr = c"/.agentcage-oldroot/proc";
/// Prefix of the plan's targets: none, the root tmpfs is the process root while the plan runs.
const NEWROOT: &str = "";

/// Inside path of the agentcage binary (read-only, executable) in namespaced profiles.
pub const SELF_EXE: &str = "/run/agentcage/agentcage";

/// System directories bound read-only (or replicated as symlinks, as the host has them).
pub const SYSTEM_DIRS: &[&str] = &[
    "/usr", "/bin", "/sbin", "/lib", "/lib64", "/lib32", "/libx32",
];

/// Host files and dirs under /etc that real programs need (certificates, loader cache,
/// time zone, alternatives, service tables). Bound read-only when present.
pub const ETC_FROM_HOST: &[&str] = &[
    "/etc/ssl",
    "/etc/ca-certificates",
    "/etc/ca-certificates.conf",
    "/etc/pki",
    "/etc/crypto-policies",
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/localtime",
    "/etc/timezone",
    "/etc/alternatives",
    "/etc/mime.types",
    "/etc/protocols",
    "/etc/services",
    "/etc/gai.conf",
    "/etc/host.conf",
    "/etc/os-release",
    "/etc/debian_version",
    "/etc/gitconfig",
    "/etc/inputrc",
    "/etc/terminfo",
];

/// Device nodes bound from the host's /dev.
pub const DEV_NODES: &[&str] = &["null", "zero", "full", "random", "urandom", "tty"];

/// /proc files hidden behind /dev/null: container runtimes' masked paths, plus what tells
/// an agent about the host and nothing it needs (the host's boot command line, its
/// interrupt and module lists, kernel symbol names).
pub const PROC_MASKED_FILES: &[&str] = &[
    "/proc/cmdline",
    "/proc/interrupts",
    "/proc/kallsyms",
    "/proc/modules",
    "/proc/kcore",
    "/proc/keys",
    "/proc/timer_list",
    "/proc/sched_debug",
    "/proc/latency_stats",
    "/proc/sysrq-trigger",
    "/proc/kmsg",
    "/proc/config.gz",
];
/// /proc dirs hidden behind an empty read-only tmpfs.
pub const PROC_MASKED_DIRS: &[&str] = &["/proc/acpi", "/proc/scsi", "/proc/asound"];
/// /proc dirs bound read-only onto themselves.
pub const PROC_READONLY: &[&str] = &["/proc/sys", "/proc/irq", "/proc/bus", "/proc/fs"];

/// One step of the mount plan. Paths are absolute; sources on the host are prefixed with
/// [`OLDROOT`], targets are paths of the composed root.
#[derive(Debug)]
pub(crate) enum Op {
    /// mkdir; EEXIST is fine.
    Mkdir { path: CString, mode: u32 },
    /// Create an empty file as a mount point; EEXIST is fine.
    Touch { path: CString },
    /// symlink(target, link).
    Symlink { target: CString, link: CString },
    /// Mount a tmpfs.
    Tmpfs {
        target: CString,
        flags: libc::c_ulong,
        data: CString,
        /// Mounted read-only from the start: an empty mask, nothing is written to it.
        readonly: bool,
        optional: bool,
    },
    /// Bind `src` onto `dst` (recursively), then set attributes; `grouped`: the attributes
    /// come from the [`Op::SetAttrs`] of its parent that follows the group (one syscall for
    /// the group: `Planner::group_attrs`), `attrs` only names them.
    Bind {
        src: CString,
        dst: CString,
        attrs: u64,
        optional: bool,
        grouped: bool,
    },
    /// Recursive mount_setattr on `target` once the binds of its group are attached below it:
    /// the target and every mount under it get `attrs` (none is cleared).
    SetAttrs { target: CString, attrs: u64 },
    /// Hide a /proc file behind the host's /dev/null (read-only, nosuid, nodev, noexec). The
    /// first mask of the plan is bound from the host's /dev/null and gets its attributes; the
    /// next ones are bound from that mask, whose mount they copy with its attributes (a bind
    /// copies the source mount's flags), so they need no mount_setattr. A file the kernel
    /// lacks (ENOENT, ENOTDIR) needs no mask.
    ProcMask { dst: CString },
    /// Bind `src` onto `dst` where both lie inside a writable bind (a protected path, or a
    /// directory pinned above one): resolved with no symlink followed and mounted by fd, so a
    /// link the sandbox planted (in a previous or a concurrent run) is refused, not followed.
    /// Needs no mount point: the path exists below the writable bind, or the step fails.
    PinnedBind {
        src: CString,
        dst: CString,
        attrs: u64,
    },
    /// Bind /dev/null (read-only, nodev, noexec) over a unix socket under a read-only bind, so
    /// connect(2) fails. A socket gone (ENOENT, ENOTDIR) or out of the sandbox's reach
    /// (EACCES: the sandbox cannot reach it either) needs no mask.
    MaskSocket { dst: CString },
    /// Mount a fresh proc (needs the new pid namespace) or, without one, bind the host's.
    Proc { target: CString, fresh: bool },
    /// Mount a new devpts instance.
    Devpts { target: CString },
    /// Write a synthesized file.
    WriteFile { path: CString, contents: Vec<u8> },
    /// Remount a tmpfs we mounted read-only once it is filled.
    RemountRo {
        target: CString,
        flags: libc::c_ulong,
        data: CString,
    },
    /// Attach this run's idmapped copy of a writable host path (see `idmap.rs`) on `dst`.
    IdmappedBind { dst: CString, tree: usize },
    /// chmod (mkdir's mode is cut by the umask; a sticky 1777 dir must be exact).
    Chmod { path: CString, mode: u32 },
    /// Mount the overlayfs of `--overlay` on `target` (the workspace, already bound
    /// read-only there: its lower layer); `data` names the upper and work layers by their
    /// host paths under [`OLDROOT`] (overlayfs clones the upper layer's mount, which must be
    /// one of the mount namespace doing the mount: an fd opened by the launcher is not).
    Overlay { target: CString, data: CString },
    /// Write a value to a sysctl of the sandbox's own namespaces (an existing file);
    /// skipped when the kernel does not let a user namespace set it.
    Sysctl { path: CString, value: CString },
}

impl Op {
    /// The path this step creates, writes or mounts on (parent side).
    pub(crate) fn target(&self) -> &CStr {
        match self {
            Op::Mkdir { path, .. }
            | Op::Touch { path }
            | Op::WriteFile { path, .. }
            | Op::Chmod { path, .. }
            | Op::Sysctl { path, .. } => path,
            Op::Symlink { link, .. } => link,
            Op::Tmpfs { target, .. }
            | Op::Proc { target, .. }
            | Op::Devpts { target }
            | Op::RemountRo { target, .. }
            | Op::SetAttrs { target, .. }
            | Op::Overlay { target, .. } => target,
            Op::Bind { dst, .. }
            | Op::PinnedBind { dst, .. }
            | Op::MaskSocket { dst }
            | Op::ProcMask { dst }
            | Op::IdmappedBind { dst, .. } => dst,
        }
    }

    /// Human description for error messages (parent side).
    pub(crate) fn describe(&self) -> String {
        let s = |c: &CString| inside(c);
        match self {
            Op::Mkdir { path, .. } => format!("mkdir {}", s(path)),
            Op::Touch { path } => format!("create mount point {}", s(path)),
            Op::Symlink { target, link } => {
                format!("symlink {} -> {}", s(link), target.to_string_lossy())
            }
            Op::Tmpfs {
                target,
                data,
                readonly,
                ..
            } => format!(
                "mount tmpfs on {} ({}{})",
                s(target),
                data.to_string_lossy(),
                if *readonly { ",ro" } else { "" }
            ),
            Op::Bind {
                src,
                dst,
                attrs,
                grouped,
                ..
            } => format!(
                "bind-mount {} onto {} ({}{})",
                host(src),
                s(dst),
                attr_names(*attrs),
                if *grouped {
                    ", set with its parent's"
                } else {
                    ""
                }
            ),
            Op::SetAttrs { target, attrs } => format!(
                "set the attributes of {} and every mount below it ({}; mount_setattr, \
                 AT_RECURSIVE)",
                s(target),
                attr_names(*attrs)
            ),
            Op::ProcMask { dst } => format!(
                "mask {} (bind the host's /dev/null, {}, or the first such mask, over it; \
                 ro,nosuid,nodev,noexec)",
                s(dst),
                OLDROOT_DEV_NULL.to_string_lossy()
            ),
            Op::PinnedBind { src, dst, attrs } => format!(
                "bind-mount {} onto {} ({}; no symlink followed: it lies inside a writable bind)",
                host(src),
                s(dst),
                attr_names(*attrs)
            ),
            Op::MaskSocket { dst } => {
                format!(
                    "mask the unix socket {} (bind the host's /dev/null, {}, over it)",
                    s(dst),
                    OLDROOT_DEV_NULL.to_string_lossy()
                )
            }
            Op::IdmappedBind { dst, .. } => {
                format!("attach the idmapped copy of {} (move_mount)", s(dst))
            }
            Op::Proc { target, fresh } => {
                if *fresh {
                    format!("mount proc on {}", s(target))
                } else {
                    format!("bind the host's /proc onto {}", s(target))
                }
            }
            Op::Devpts { target } => format!("mount devpts (newinstance) on {}", s(target)),
            Op::WriteFile { path, .. } => format!("write {}", s(path)),
            Op::RemountRo { target, .. } => format!("remount {} read-only", s(target)),
            Op::Chmod { path, mode } => format!("chmod {mode:o} {}", s(path)),
            Op::Overlay { target, data } => format!(
                "mount overlayfs on {} ({}; rootless overlayfs needs Linux >= 5.11 and an upper \
                 layer on a filesystem with user xattrs; run without --overlay otherwise)",
                s(target),
                data.to_string_lossy()
            ),
            Op::Sysctl { path, value } => {
                format!("write {} to {}", value.to_string_lossy(), s(path))
            }
        }
    }
}

fn inside(c: &CStr) -> String {
    let s = c.to_string_lossy();
    s.strip_prefix(NEWROOT).map_or_else(
        || s.to_string(),
        |r| {
            if r.is_empty() {
                "/".into()
            } else {
                r.to_string()
            }
        },
    )
}

fn host(c: &CStr) -> String {
    let s = c.to_string_lossy();
    s.strip_prefix(OLDROOT)
        .map_or_else(|| s.to_string(), str::to_string)
}

fn attr_names(a: u64) -> String {
    let mut v = Vec::new();
    if a & sys::MOUNT_ATTR_RDONLY != 0 {
        v.push("ro");
    } else {
        v.push("rw");
    }
    if a & sys::MOUNT_ATTR_NOSUID != 0 {
        v.push("nosuid");
    }
    if a & sys::MOUNT_ATTR_NODEV != 0 {
        v.push("nodev");
    }
    if a & sys::MOUNT_ATTR_NOEXEC != 0 {
        v.push("noexec");
    }
    v.join(",")
}

/// What the root must contain (parent side input).
#[derive(Debug, Clone)]
pub struct RootSpec {
    /// Workspace (absolute, canonical).
    pub workspace: PathBuf,
    /// Extra binds (absolute, canonical), writable or not.
    pub binds: Vec<(PathBuf, bool)>,
    /// Those of the read-only `binds` that are fresh placeholders, with whether each is a
    /// directory (`ExtraBind::fresh_placeholder`): planned without a stat, not scanned for
    /// sockets when a writable bind contains them.
    pub fresh_placeholders: Vec<(PathBuf, bool)>,
    /// The agentcage binary to expose at [`SELF_EXE`], if any.
    pub self_exe: Option<PathBuf>,
    /// Inside uid/gid and home (for passwd/group).
    pub uid: u32,
    /// Inside gid.
    pub gid: u32,
    /// Home directory inside.
    pub home: PathBuf,
    /// Fresh /proc (own pid namespace) or the host's.
    pub fresh_proc: bool,
    /// Own network namespace (synthesized hosts/resolv.conf) or the host's (bound).
    pub own_net: bool,
    /// mount_setattr(2) is available.
    pub mount_setattr: bool,
    /// One size budget for everything the agent can write in memory-backed filesystems
    /// (/, /tmp, /dev/shm and the home directory all live on the root tmpfs; /dev and /etc
    /// are read-only) and for SysV shared memory (own IPC namespace): the memory limit when
    /// there is one. tmpfs pages are charged to a memory cgroup, but without one (an
    /// unprivileged caller with no delegation) RLIMIT_DATA does not count them.
    pub tmpfs_size: Option<u64>,
    /// Own IPC namespace: its SysV shared memory limits may be set (never the host's).
    pub own_ipc: bool,
    /// As root: writable paths owned by someone else get idmapped binds (`idmap.rs`).
    pub idmap: Option<IdmapSpec>,
    /// Read-only workspace, masks, tmpfs dirs, persistent home (`plan.rs`, "controls").
    pub controls: crate::policy::WorkspaceControls,
    /// `--net allow`: /etc/resolv.conf names the egress engine's DNS stub (127.0.0.1).
    pub resolver: bool,
    /// `--overlay`: the overlay directory (holds `upper/` and `work/`); the workspace is
    /// mounted read-only and an overlayfs on top of it.
    pub overlay: Option<PathBuf>,
}

/// The prepared mount plan.
#[derive(Debug)]
pub struct PreparedRootfs {
    pub(crate) ops: Vec<Op>,
    /// [`OLDROOT`], and relative to the root tmpfs (for the pivot).
    oldroot: CString,
    oldroot_rel: CString,
    /// A plan target has a component named like [`OLDROOT`] (a host path bound at its own
    /// path there): it could be made in the host's tree, so the child refuses to run the plan.
    oldroot_taken: bool,
    mount_setattr: bool,
    root_data: CString,
    stage: CString,
    /// What [`Planner::mask_sockets`] did.
    pub sockets: SocketMasks,
    /// The idmapped binds (`idmap.rs`).
    pub idmap: PreparedIdmap,
    /// Writable paths owned by another uid than the sandbox's host uid, and what was done
    /// about each (`run -v`, and a warning when it stays unwritable).
    pub idmap_decisions: Vec<(PathBuf, Decision)>,
}

/// Unix sockets found under the read-only binds at prepare time and masked (issue #10,
/// finding 10): read-only does not stop connect(2), and Landlock controls it only from ABI 9.
#[derive(Debug, Default, Clone)]
pub struct SocketMasks {
    /// Sockets masked.
    pub masked: Vec<PathBuf>,
    /// Read-only binds whose scan stopped at a bound (entries or depth): sockets deeper in
    /// them stay connectable.
    pub truncated: Vec<PathBuf>,
}

/// Entries the socket scan of one read-only bind looks at, at most (about 0.1 s).
pub const SOCKET_SCAN_MAX_ENTRIES: usize = 100_000;
/// Directory depth the socket scan of one read-only bind goes to, at most.
pub const SOCKET_SCAN_MAX_DEPTH: usize = 32;

impl PreparedRootfs {
    /// Whether binds inside writable binds are made by path (no mount_setattr, Linux < 5.12):
    /// a symlink swapped in after the launcher checked them would then be followed.
    pub fn protected_by_path(&self) -> bool {
        !self.mount_setattr && self.ops.iter().any(|o| matches!(o, Op::PinnedBind { .. }))
    }
}

/// ST_RELATIME (statvfs(3)); not exported by every libc the `libc` crate targets.
const ST_RELATIME: libc::c_ulong = 0x1000;

const RO: u64 = sys::MOUNT_ATTR_RDONLY | sys::MOUNT_ATTR_NOSUID | sys::MOUNT_ATTR_NODEV;
const RW: u64 = sys::MOUNT_ATTR_NOSUID | sys::MOUNT_ATTR_NODEV;

/// The step of a failed [`apply`]; `index`: the staging/root tmpfs (0/1) or the plan entry.
pub(crate) fn describe(p: Option<&PreparedRootfs>, step: Step, index: u32) -> String {
    let i = index as usize;
    match step {
        Step::MountPrivate => "make / a recursive private mount (MS_PRIVATE|MS_REC)".into(),
        Step::StageTmpfs if i == 0 => "mount the staging tmpfs".into(),
        Step::StageTmpfs => "mount the root tmpfs".into(),
        Step::PivotStage if p.is_some_and(|r| r.oldroot_taken) => format!(
            "compose the root: a path of the plan has a component named {}, the host root's \
             mount point while the root is composed (bind it elsewhere)",
            OLDROOT.trim_start_matches('/')
        ),
        Step::PivotStage => {
            format!("pivot_root into the root tmpfs (the host root at {OLDROOT} in it)")
        }
        Step::Mount => p
            .and_then(|r| r.ops.get(i))
            .map_or_else(|| format!("mount plan entry {i}"), |op| op.describe()),
        Step::PivotRoot => "pivot_root into the composed root".into(),
        _ => format!("detach the host root (umount2 {OLDROOT}, MNT_DETACH) and remove {OLDROOT}"),
    }
}

/// Whether `path` (canonical) may be the workspace: not `/` and not a system dir itself.
pub fn check_workspace(path: &Path) -> Result<(), PolicyError> {
    if path == Path::new("/") {
        return Err(PolicyError::WorkspaceRoot);
    }
    for d in SYSTEM_DIRS
        .iter()
        .chain(["/proc", "/dev", "/etc", "/sys"].iter())
    {
        if path == Path::new(d) {
            return Err(PolicyError::WorkspaceSystemDir {
                path: PathBuf::from(d),
            });
        }
    }
    Ok(())
}

mod apply;
mod idmap;
mod plan;
#[cfg(test)]
pub(crate) mod tests;

pub(crate) use apply::apply;
pub(crate) use idmap::traverse_hint;
pub use idmap::{idmap_spec, Decision, IdmapSpec, PreparedIdmap};
pub use plan::prepare;
