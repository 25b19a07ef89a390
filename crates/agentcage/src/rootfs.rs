//! The composed root: a fresh tmpfs with read-only system dirs, a minimal /dev, a fresh
//! /proc with masked paths, a tmpfs /tmp, a synthesized /etc, the workspace and the extras.
//!
//! `prepare` (parent) turns the policy into a flat list of [`Op`]s whose strings are all
//! built up front; `apply` (child, after clone into a new user+mount namespace) executes them
//! with raw syscalls only. The sequence follows bubblewrap: mount a staging tmpfs, pivot into
//! it so the host root stays reachable at `/oldroot` (sources under a host `/tmp` stay
//! visible), build `/newroot`, pivot into it and detach everything else.
//!
//! Read-only binds are made with a bind followed by `mount_setattr(AT_RECURSIVE, RDONLY)`
//! (Linux 5.12+) or, on older kernels, a `MS_REMOUNT|MS_BIND|MS_RDONLY` that keeps the flags
//! a more privileged namespace locked: a single `mount(MS_BIND|MS_RDONLY)` ignores RDONLY.
//! Kernel: mount_namespaces(7), pivot_root(2), mount_setattr(2).

use std::collections::BTreeSet;
use std::ffi::{CStr, CString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::error::{PolicyError, SetupError, Step};
use crate::sys::{self, Errno};

/// Where the staging tmpfs may be mounted: the first existing directory of these (any
/// directory works: the mount is private to the new namespace and pivoted away).
const STAGE_CANDIDATES: &[&str] = &["/tmp", "/run", "/mnt", "/var/tmp", "/dev", "/"];
/// Host root after the first pivot.
const OLDROOT: &str = "/oldroot";
/// The composed root after the first pivot.
const NEWROOT: &str = "/newroot";

/// Inside path of the agentcage binary (read-only, executable) in namespaced profiles.
pub const SELF_EXE: &str = "/run/agentcage/agentcage";

/// System directories bound read-only (or replicated as symlinks, as the host has them).
pub const SYSTEM_DIRS: &[&str] = &[
    "/usr", "/bin", "/sbin", "/lib", "/lib64", "/lib32", "/libx32",
];

/// Host files and dirs under /etc that real programs need (certificates, loader cache,
/// time zone, alternatives, service tables). Bound read-only when present.
const ETC_FROM_HOST: &[&str] = &[
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
const PROC_MASKED_FILES: &[&str] = &[
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
const PROC_MASKED_DIRS: &[&str] = &["/proc/acpi", "/proc/scsi", "/proc/asound"];
/// /proc dirs bound read-only onto themselves.
const PROC_READONLY: &[&str] = &["/proc/sys", "/proc/irq", "/proc/bus", "/proc/fs"];

/// One step of the mount plan. Paths are absolute and already prefixed (`/oldroot` for
/// sources on the host, `/newroot` for targets).
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
        readonly: bool,
        optional: bool,
    },
    /// Bind `src` onto `dst` (recursively), then set attributes.
    Bind {
        src: CString,
        dst: CString,
        attrs: u64,
        optional: bool,
    },
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
    /// chmod (mkdir's mode is cut by the umask; a sticky 1777 dir must be exact).
    Chmod { path: CString, mode: u32 },
    /// Write a value to a sysctl of the sandbox's own namespaces (an existing file);
    /// skipped when the kernel does not let a user namespace set it.
    Sysctl { path: CString, value: CString },
}

impl Op {
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
                src, dst, attrs, ..
            } => format!(
                "bind-mount {} onto {} ({})",
                host(src),
                s(dst),
                attr_names(*attrs)
            ),
            Op::PinnedBind { src, dst, attrs } => format!(
                "bind-mount {} onto {} ({}; no symlink followed: it lies inside a writable bind)",
                host(src),
                s(dst),
                attr_names(*attrs)
            ),
            Op::MaskSocket { dst } => {
                format!("mask the unix socket {} (bind /dev/null over it)", s(dst))
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
}

/// The prepared mount plan.
#[derive(Debug)]
pub struct PreparedRootfs {
    pub(crate) ops: Vec<Op>,
    newroot: CString,
    oldroot_rel: CString,
    mount_setattr: bool,
    root_data: CString,
    stage: CString,
    /// What [`Planner::mask_sockets`] did.
    pub sockets: SocketMasks,
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

struct Planner {
    ops: Vec<Op>,
    /// ",size=N" for every tmpfs, or empty.
    size_opt: String,
    /// Inside dirs known to exist in the composed tree (created or covered by a bind).
    dirs: BTreeSet<PathBuf>,
}

fn cpath(prefix: &str, p: &Path) -> CString {
    let mut v = prefix.as_bytes().to_vec();
    v.extend_from_slice(p.as_os_str().as_bytes());
    // Paths come from the OS or from our constants: an interior NUL is impossible, but map
    // it to a harmless name rather than panicking.
    CString::new(v).unwrap_or_else(|_| c"/nonexistent".to_owned())
}

impl Planner {
    fn new() -> Planner {
        let mut dirs = BTreeSet::new();
        dirs.insert(PathBuf::from("/"));
        Planner {
            ops: Vec::new(),
            size_opt: String::new(),
            dirs,
        }
    }

    /// Creates every missing ancestor of `p` (inside path), not `p` itself.
    fn parents(&mut self, p: &Path) {
        if let Some(parent) = p.parent() {
            self.mkdir(parent, 0o755);
        }
    }

    fn mkdir(&mut self, p: &Path, mode: u32) {
        if self.dirs.contains(p) {
            return;
        }
        self.parents(p);
        self.ops.push(Op::Mkdir {
            path: cpath(NEWROOT, p),
            mode,
        });
        self.dirs.insert(p.to_path_buf());
    }

    fn tmpfs(&mut self, p: &Path, mode: &str, readonly: bool) {
        self.mkdir(p, 0o755);
        self.forget_below(p);
        self.ops.push(Op::Tmpfs {
            target: cpath(NEWROOT, p),
            flags: libc::MS_NOSUID | libc::MS_NODEV,
            data: CString::new(format!("mode={mode}{}", self.size_opt)).unwrap_or_default(),
            readonly,
            optional: false,
        });
    }

    /// A mount on `p` hides whatever we created below it.
    fn forget_below(&mut self, p: &Path) {
        let below: Vec<PathBuf> = self
            .dirs
            .iter()
            .filter(|d| d.starts_with(p) && *d != p)
            .cloned()
            .collect();
        for d in below {
            self.dirs.remove(&d);
        }
    }

    /// Bind host `src` at inside `dst` with `attrs`; dirs get a dir mount point, others a file.
    fn bind(&mut self, src: &Path, dst: &Path, is_dir: bool, attrs: u64, optional: bool) {
        if is_dir {
            self.mkdir(dst, 0o755);
            self.forget_below(dst);
            // Everything below a bound dir exists as the host has it.
            self.dirs.insert(dst.to_path_buf());
        } else {
            self.parents(dst);
            self.ops.push(Op::Touch {
                path: cpath(NEWROOT, dst),
            });
        }
        self.ops.push(Op::Bind {
            src: cpath(OLDROOT, src),
            dst: cpath(NEWROOT, dst),
            attrs,
            optional,
        });
    }

    /// A world-writable sticky directory (1777) on the tree we compose.
    fn sticky_dir(&mut self, p: &Path) {
        self.mkdir(p, 0o755);
        self.ops.push(Op::Chmod {
            path: cpath(NEWROOT, p),
            mode: 0o1777,
        });
    }

    fn symlink(&mut self, target: &Path, link: &Path) {
        self.parents(link);
        self.ops.push(Op::Symlink {
            target: CString::new(target.as_os_str().as_bytes()).unwrap_or_default(),
            link: cpath(NEWROOT, link),
        });
    }

    fn write(&mut self, p: &Path, contents: String) {
        self.parents(p);
        self.ops.push(Op::WriteFile {
            path: cpath(NEWROOT, p),
            contents: contents.into_bytes(),
        });
    }

    /// Host path as it is: a symlink stays a symlink, a dir or file is bound.
    fn host_entry(&mut self, p: &Path, attrs: u64) {
        let Ok(md) = std::fs::symlink_metadata(p) else {
            return;
        };
        if md.file_type().is_symlink() {
            if let Ok(t) = std::fs::read_link(p) {
                self.symlink(&t, p);
            }
        } else {
            self.bind(p, p, md.is_dir(), attrs, false);
        }
    }
}

// Binds inside writable binds (issue #10, finding 3). The kernel lets a directory that
// contains mount points be renamed or replaced (the mounts move along), but not a mount point
// itself (EBUSY in the namespace that has the mount). So a read-only bind nested in the
// writable workspace (`.git/hooks`) only protects its path if every directory between the
// writable bind and it is a mount point too: each one is bound onto itself ("pinned").
impl Planner {
    /// The workspace and the extra binds, sorted shallowest first. A bind nested in a
    /// writable one is protected: its ancestors up to that bind are pinned and it is mounted
    /// with [`Op::PinnedBind`].
    fn user_binds(&mut self, binds: &[(PathBuf, bool, bool)]) {
        let mut done: Vec<(PathBuf, bool)> = Vec::new();
        for (p, writable, is_dir) in binds {
            let attrs = if *writable { RW } else { RO };
            // The deepest bind already made that contains this one.
            let parent = done
                .iter()
                .filter(|(d, _)| p.starts_with(d) && d != p)
                .max_by_key(|(d, _)| d.components().count())
                .cloned();
            match parent {
                Some((root, true)) => self.protect(&root, p, *is_dir, attrs, &mut done),
                _ => self.bind(p, p, *is_dir, attrs, false),
            }
            done.push((p.clone(), *writable));
        }
    }

    /// Protects `path` (bound with `attrs`) below the writable bind `root`: pins every
    /// directory strictly between them (writable, like `root`), then binds `path` itself, all
    /// by fd without following symlinks. `done` lists the mounts already made (path,
    /// writable): a pin already there is not repeated. Generic on purpose: default protected
    /// paths (issue #15) go through here too.
    fn protect(
        &mut self,
        root: &Path,
        path: &Path,
        is_dir: bool,
        attrs: u64,
        done: &mut Vec<(PathBuf, bool)>,
    ) {
        for d in pins(root, path) {
            if done.iter().any(|(m, _)| *m == d) {
                continue;
            }
            self.pinned(&d, true, RW);
            done.push((d, true));
        }
        self.pinned(path, is_dir, attrs);
    }

    fn pinned(&mut self, p: &Path, is_dir: bool, attrs: u64) {
        if is_dir {
            self.forget_below(p);
            self.dirs.insert(p.to_path_buf());
        }
        self.ops.push(Op::PinnedBind {
            src: cpath(OLDROOT, p),
            dst: cpath(NEWROOT, p),
            attrs,
        });
    }
}

impl Planner {
    /// Masks every unix socket under the read-only directory binds with /dev/null (read-only,
    /// nodev: connect(2) gets ECONNREFUSED, open(2) EACCES). A socket below a deeper writable
    /// bind is left alone (the caller asked for it writable). Each bind's scan is bounded.
    fn mask_sockets(&mut self, binds: &[(PathBuf, bool, bool)]) -> SocketMasks {
        use std::os::unix::fs::FileTypeExt;
        let mut out = SocketMasks::default();
        for (root, writable, is_dir) in binds {
            if *writable || !is_dir {
                continue;
            }
            let mut entries = 0;
            let mut stack: Vec<(PathBuf, usize)> = vec![(root.clone(), 0)];
            let mut truncated = false;
            while let Some((dir, depth)) = stack.pop() {
                let Ok(rd) = std::fs::read_dir(&dir) else {
                    continue;
                };
                for e in rd.flatten() {
                    entries += 1;
                    if entries > SOCKET_SCAN_MAX_ENTRIES {
                        truncated = true;
                        break;
                    }
                    let Ok(ft) = e.file_type() else { continue };
                    if ft.is_dir() {
                        if depth + 1 >= SOCKET_SCAN_MAX_DEPTH {
                            truncated = true;
                        } else {
                            stack.push((e.path(), depth + 1));
                        }
                    } else if ft.is_socket() {
                        let p = e.path();
                        let under_ro = binds
                            .iter()
                            .filter(|(b, _, _)| p.starts_with(b))
                            .max_by_key(|(b, _, _)| b.components().count())
                            .is_some_and(|(_, w, _)| !w);
                        if under_ro && !out.masked.contains(&p) {
                            self.ops.push(Op::MaskSocket {
                                dst: cpath(NEWROOT, &p),
                            });
                            out.masked.push(p);
                        }
                    }
                }
                if entries > SOCKET_SCAN_MAX_ENTRIES {
                    break;
                }
            }
            if truncated {
                out.truncated.push(root.clone());
            }
        }
        out
    }
}

/// The directories strictly between `root` and `path` (a path below it), shallowest first:
/// the ones that must be mount points for `path` to stay where it is.
pub fn pins(root: &Path, path: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = path
        .ancestors()
        .skip(1)
        .take_while(|a| a.starts_with(root) && *a != root)
        .map(Path::to_path_buf)
        .collect();
    v.reverse();
    v
}

/// ST_RELATIME (statvfs(3)); not exported by every libc the `libc` crate targets.
const ST_RELATIME: libc::c_ulong = 0x1000;

const RO: u64 = sys::MOUNT_ATTR_RDONLY | sys::MOUNT_ATTR_NOSUID | sys::MOUNT_ATTR_NODEV;
const RW: u64 = sys::MOUNT_ATTR_NOSUID | sys::MOUNT_ATTR_NODEV;

/// Builds the mount plan (parent side; allocates freely).
pub fn prepare(spec: &RootSpec) -> PreparedRootfs {
    let mut pl = Planner::new();
    if let Some(n) = spec.tmpfs_size {
        pl.size_opt = format!(",size={n}");
    }
    // Sorted mount targets: a parent always comes before its children, so nothing we
    // mount later hides a mount point we made earlier.
    for d in SYSTEM_DIRS {
        pl.host_entry(Path::new(d), RO);
    }

    // /dev: a tmpfs with the host's harmless nodes bound in (no mknod in a user namespace).
    let dev = Path::new("/dev");
    pl.tmpfs(dev, "0755", false);
    for n in DEV_NODES {
        let p = dev.join(n);
        if p.exists() {
            // nodev must stay off: these are device nodes. Read-only: a device stays
            // readable and writable on a read-only mount (only regular files, dirs and
            // symlinks are refused), but the host's inode cannot be changed (utimensat on
            // /dev/null set the host's mtime; chmod and chown are refused anyway).
            pl.bind(
                &p,
                &p,
                false,
                sys::MOUNT_ATTR_RDONLY | sys::MOUNT_ATTR_NOSUID | sys::MOUNT_ATTR_NOEXEC,
                true,
            );
        }
    }
    pl.mkdir(&dev.join("pts"), 0o755);
    pl.ops.push(Op::Devpts {
        target: cpath(NEWROOT, &dev.join("pts")),
    });
    pl.symlink(Path::new("pts/ptmx"), &dev.join("ptmx"));
    // /dev/shm: bound from /run/shm on the root tmpfs below (one budget), /dev itself is
    // remounted read-only at the end.
    pl.mkdir(&dev.join("shm"), 0o755);
    pl.symlink(Path::new("/proc/self/fd"), &dev.join("fd"));
    for (i, n) in ["stdin", "stdout", "stderr"].iter().enumerate() {
        pl.symlink(&PathBuf::from(format!("/proc/self/fd/{i}")), &dev.join(n));
    }

    // /etc: synthesized identity and name service files, plus host files programs need.
    let etc = Path::new("/etc");
    // Its own tmpfs, remounted read-only at the end of the plan.
    pl.tmpfs(etc, "0755", false);
    let user = if spec.uid == 0 { "root" } else { "agent" };
    let group = if spec.gid == 0 { "root" } else { "agent" };
    let mut passwd = String::from("root:x:0:0:root:/root:/bin/sh\n");
    if spec.uid != 0 {
        passwd += &format!(
            "{user}:x:{}:{}:agentcage:{}:/bin/sh\n",
            spec.uid,
            spec.gid,
            spec.home.display()
        );
    }
    passwd += "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n";
    let mut groups = String::from("root:x:0:\n");
    if spec.gid != 0 {
        groups += &format!("{group}:x:{}:\n", spec.gid);
    }
    groups += "nogroup:x:65534:\n";
    pl.write(&etc.join("passwd"), passwd);
    pl.write(&etc.join("group"), groups);
    pl.write(&etc.join("hostname"), "agentcage\n".into());
    pl.write(
        &etc.join("nsswitch.conf"),
        "passwd: files\ngroup: files\nshadow: files\nhosts: files dns\nnetworks: files\nprotocols: files\nservices: files\n"
            .into(),
    );
    if spec.own_net {
        pl.write(
            &etc.join("hosts"),
            "127.0.0.1\tlocalhost\n127.0.1.1\tagentcage\n::1\tlocalhost ip6-localhost ip6-loopback\n".into(),
        );
        pl.write(
            &etc.join("resolv.conf"),
            "# agentcage: no network (loopback only)\n".into(),
        );
    } else {
        for f in ["/etc/hosts", "/etc/resolv.conf"] {
            // Follow symlinks (resolv.conf often points into /run): bind the file itself.
            if let Ok(md) = std::fs::metadata(f) {
                pl.bind(Path::new(f), Path::new(f), md.is_dir(), RO, true);
            }
        }
    }
    let mut etc_entries: Vec<PathBuf> = ETC_FROM_HOST.iter().map(PathBuf::from).collect();
    // Distribution Python keeps its site configuration in /etc/python3.X.
    if let Ok(rd) = std::fs::read_dir(etc) {
        for e in rd.flatten() {
            if e.file_name().as_bytes().starts_with(b"python") {
                etc_entries.push(e.path());
            }
        }
    }
    etc_entries.sort();
    for p in &etc_entries {
        pl.host_entry(p, RO);
    }

    // Home directory on the root tmpfs (owned by the inside user, who runs the init).
    pl.mkdir(&spec.home, 0o755);

    // /run with the agentcage binary (the probe and bench run it inside), and /run/shm,
    // the directory bound onto /dev/shm.
    pl.mkdir(Path::new("/run"), 0o755);
    let run_shm = Path::new("/run/shm");
    pl.sticky_dir(run_shm);
    pl.ops.push(Op::Bind {
        src: cpath(NEWROOT, run_shm),
        dst: cpath(NEWROOT, &dev.join("shm")),
        attrs: RW,
        optional: false,
    });
    if let Some(exe) = &spec.self_exe {
        let dst = Path::new(SELF_EXE);
        pl.parents(dst);
        pl.ops.push(Op::Touch {
            path: cpath(NEWROOT, dst),
        });
        pl.ops.push(Op::Bind {
            src: cpath(OLDROOT, exe),
            dst: cpath(NEWROOT, dst),
            attrs: sys::MOUNT_ATTR_RDONLY | sys::MOUNT_ATTR_NOSUID | sys::MOUNT_ATTR_NODEV,
            optional: false,
        });
    }

    // /tmp is a directory of the root tmpfs, not a tmpfs of its own: every writable
    // memory-backed place shares the root's size budget (a tmpfs per place would multiply
    // the limit by their number).
    pl.sticky_dir(Path::new("/tmp"));

    // The workspace and extras, shallowest first so nested ones land on top.
    let mut binds: Vec<(PathBuf, bool, bool)> = spec
        .binds
        .iter()
        .map(|(p, w)| (p.clone(), *w, p.is_dir()))
        .collect();
    binds.push((spec.workspace.clone(), true, true));
    binds.sort_by_key(|(p, _, _)| p.components().count());
    pl.user_binds(&binds);
    let sockets = pl.mask_sockets(&binds);

    // /proc last among the top-level mounts so its masks can use our /dev/null.
    let proc_ = Path::new("/proc");
    pl.mkdir(proc_, 0o555);
    pl.ops.push(Op::Proc {
        target: cpath(NEWROOT, proc_),
        fresh: spec.fresh_proc,
    });
    if spec.fresh_proc {
        for f in PROC_MASKED_FILES {
            pl.ops.push(Op::Bind {
                src: cpath(OLDROOT, Path::new("/dev/null")),
                dst: cpath(NEWROOT, Path::new(f)),
                attrs: RO | sys::MOUNT_ATTR_NOEXEC,
                optional: true,
            });
        }
        for d in PROC_MASKED_DIRS {
            pl.ops.push(Op::Tmpfs {
                target: cpath(NEWROOT, Path::new(d)),
                flags: libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                data: c"mode=0555,size=0".to_owned(),
                readonly: true,
                optional: true,
            });
        }
        if let (Some(budget), true) = (spec.tmpfs_size, spec.own_ipc) {
            // SysV shared memory of the sandbox's own IPC namespace: without a memory cgroup
            // nothing else bounds it (shm pages are not RLIMIT_DATA). Before /proc/sys is made
            // read-only; these files show the IPC namespace of the writer, ours.
            let pages = budget.div_ceil(4096).max(1);
            for (f, v) in [
                ("/proc/sys/kernel/shmmax", budget),
                ("/proc/sys/kernel/shmall", pages),
            ] {
                pl.ops.push(Op::Sysctl {
                    path: cpath(NEWROOT, Path::new(f)),
                    value: CString::new(v.to_string()).unwrap_or_default(),
                });
            }
        }
        for d in PROC_READONLY {
            pl.ops.push(Op::Bind {
                src: cpath(NEWROOT, Path::new(d)),
                dst: cpath(NEWROOT, Path::new(d)),
                attrs: RO | sys::MOUNT_ATTR_NOEXEC,
                optional: true,
            });
        }
    }

    // Unless the caller bound something over /etc itself (`--ro /etc`): then that bind
    // is what /etc is, with the access the caller asked for.
    let etc_overridden = binds.iter().any(|(p, _, _)| p == etc);
    if !etc_overridden {
        pl.ops.push(Op::RemountRo {
            target: cpath(NEWROOT, etc),
            flags: libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV,
            data: c"mode=0755".to_owned(),
        });
    }
    // /dev is complete: read-only, so the agent cannot add files or fill it (its writable
    // /dev/shm is a bind from the root tmpfs). The same exception as /etc.
    if !binds.iter().any(|(p, _, _)| p == dev) {
        pl.ops.push(Op::RemountRo {
            target: cpath(NEWROOT, dev),
            flags: libc::MS_RDONLY | libc::MS_NOSUID,
            data: c"mode=0755".to_owned(),
        });
    }

    PreparedRootfs {
        ops: pl.ops,
        newroot: CString::new(NEWROOT).unwrap_or_default(),
        oldroot_rel: c"oldroot".to_owned(),
        mount_setattr: spec.mount_setattr,
        sockets,
        root_data: CString::new(format!("mode=0755{}", pl.size_opt)).unwrap_or_default(),
        stage: STAGE_CANDIDATES
            .iter()
            .find(|d| Path::new(d).is_dir())
            .and_then(|d| CString::new(*d).ok())
            .unwrap_or_else(|| c"/".to_owned()),
    }
}

/// Sets mount attributes on `path`: mount_setattr when available, else a bind remount that
/// keeps the flags the kernel locked (atime, nosuid, nodev, noexec of the source).
fn set_attrs(path: &CStr, attrs: u64, use_setattr: bool) -> Result<(), Errno> {
    if use_setattr {
        return sys::mount_setattr_recursive(path, attrs);
    }
    let st = sys::statvfs_flags(path)?;
    let mut flags = libc::MS_BIND | libc::MS_REMOUNT;
    if attrs & sys::MOUNT_ATTR_RDONLY != 0 || st & libc::ST_RDONLY != 0 {
        flags |= libc::MS_RDONLY;
    }
    if attrs & sys::MOUNT_ATTR_NOSUID != 0 || st & libc::ST_NOSUID != 0 {
        flags |= libc::MS_NOSUID;
    }
    if attrs & sys::MOUNT_ATTR_NODEV != 0 || st & libc::ST_NODEV != 0 {
        flags |= libc::MS_NODEV;
    }
    if attrs & sys::MOUNT_ATTR_NOEXEC != 0 || st & libc::ST_NOEXEC != 0 {
        flags |= libc::MS_NOEXEC;
    }
    for (st_flag, ms_flag) in [
        (libc::ST_NOATIME, libc::MS_NOATIME),
        (libc::ST_NODIRATIME, libc::MS_NODIRATIME),
        (ST_RELATIME, libc::MS_RELATIME),
    ] {
        if st & st_flag != 0 {
            flags |= ms_flag;
        }
    }
    sys::mount(None, path, None, flags, None)
}

fn ok_exists(r: Result<(), Errno>) -> Result<(), Errno> {
    match r {
        Err(e) if e.0 == libc::EEXIST => Ok(()),
        other => other,
    }
}

fn run_op(op: &Op, use_setattr: bool) -> Result<(), Errno> {
    match op {
        Op::Mkdir { path, mode } => ok_exists(sys::mkdir(path, *mode)),
        Op::Touch { path } => {
            let fd = sys::open(
                path,
                libc::O_RDONLY | libc::O_CREAT | libc::O_NOFOLLOW,
                0o644,
            )?;
            sys::close(fd);
            Ok(())
        }
        Op::Symlink { target, link } => ok_exists(sys::symlink(target, link)),
        Op::Tmpfs {
            target,
            flags,
            data,
            readonly,
            optional,
        } => {
            match sys::mount(Some(c"tmpfs"), target, Some(c"tmpfs"), *flags, Some(data)) {
                Err(e) if *optional && (e.0 == libc::ENOENT || e.0 == libc::ENOTDIR) => {
                    return Ok(())
                }
                r => r?,
            }
            if *readonly {
                sys::mount(
                    None,
                    target,
                    None,
                    libc::MS_REMOUNT | libc::MS_RDONLY | flags,
                    Some(data),
                )?;
            }
            Ok(())
        }
        Op::Bind {
            src,
            dst,
            attrs,
            optional,
        } => {
            match sys::mount(Some(src), dst, None, libc::MS_BIND | libc::MS_REC, None) {
                Err(e) if *optional && (e.0 == libc::ENOENT || e.0 == libc::ENOTDIR) => {
                    return Ok(())
                }
                r => r?,
            }
            set_attrs(dst, *attrs, use_setattr)
        }
        Op::PinnedBind { src, dst, attrs } => pinned_bind(src, dst, *attrs, use_setattr),
        Op::MaskSocket { dst } => {
            let src = c"/oldroot/dev/null";
            match sys::mount(Some(src), dst, None, libc::MS_BIND, None) {
                Err(e) if matches!(e.0, libc::ENOENT | libc::ENOTDIR | libc::EACCES) => {
                    return Ok(())
                }
                r => r?,
            }
            set_attrs(dst, RO | sys::MOUNT_ATTR_NOEXEC, use_setattr)
        }
        Op::Proc { target, fresh } => {
            if *fresh {
                sys::mount(
                    Some(c"proc"),
                    target,
                    Some(c"proc"),
                    libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                    None,
                )
            } else {
                sys::mount(
                    Some(c"/oldroot/proc"),
                    target,
                    None,
                    libc::MS_BIND | libc::MS_REC,
                    None,
                )
            }
        }
        Op::Devpts { target } => sys::mount(
            Some(c"devpts"),
            target,
            Some(c"devpts"),
            libc::MS_NOSUID | libc::MS_NOEXEC,
            Some(c"newinstance,ptmxmode=0666,mode=0620"),
        ),
        Op::WriteFile { path, contents } => {
            let fd = sys::open(
                path,
                libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC | libc::O_NOFOLLOW,
                0o644,
            )?;
            let r = sys::write_all(fd, contents);
            sys::close(fd);
            r
        }
        Op::RemountRo {
            target,
            flags,
            data,
        } => sys::remount(target, *flags, Some(data)),
        Op::Chmod { path, mode } => sys::chmod(path, *mode),
        Op::Sysctl { path, value } => {
            let fd = match sys::open(path, libc::O_WRONLY | libc::O_NOFOLLOW, 0) {
                // Kernels before 5.17 keep IPC sysctls root-owned in every namespace.
                Err(e) if matches!(e.0, libc::EACCES | libc::EPERM | libc::ENOENT) => return Ok(()),
                r => r?,
            };
            let r = sys::write_all(fd, value.as_bytes());
            sys::close(fd);
            r
        }
    }
}

/// [`Op::PinnedBind`]: source and target opened with no symlink in their paths (ELOOP
/// otherwise), the source's tree cloned, its attributes set while detached, then attached on
/// the target, so nothing is resolved twice. Without mount_setattr (Linux < 5.12, which also
/// lacks nothing else used here but comes last), a plain bind by path: the launcher says so.
fn pinned_bind(src: &CStr, dst: &CStr, attrs: u64, use_setattr: bool) -> Result<(), Errno> {
    if !use_setattr {
        sys::mount(Some(src), dst, None, libc::MS_BIND | libc::MS_REC, None)?;
        return set_attrs(dst, attrs, false);
    }
    let s = sys::open_path_nofollow(src)?;
    let tree = sys::open_tree_clone(s);
    sys::close(s);
    let tree = tree?;
    let r = sys::mount_setattr_fd(tree, attrs).and_then(|()| {
        let d = sys::open_path_nofollow(dst)?;
        let r = sys::move_mount_fds(tree, d);
        sys::close(d);
        r
    });
    sys::close(tree);
    r
}

/// The step of a failed [`apply`]; `index`: the staging/root tmpfs (0/1) or the plan entry.
pub(crate) fn describe(p: Option<&PreparedRootfs>, step: Step, index: u32) -> String {
    let i = index as usize;
    match step {
        Step::MountPrivate => "make / a recursive private mount (MS_PRIVATE|MS_REC)".into(),
        Step::StageTmpfs if i == 0 => "mount the staging tmpfs".into(),
        Step::StageTmpfs => "mount the root tmpfs".into(),
        Step::PivotStage => "pivot_root into the staging tmpfs".into(),
        Step::Mount => p
            .and_then(|r| r.ops.get(i))
            .map_or_else(|| format!("mount plan entry {i}"), |op| op.describe()),
        Step::PivotRoot => "pivot_root into the composed root".into(),
        _ => "detach the old root (umount2 MNT_DETACH)".into(),
    }
}

/// Composes the root and pivots into it.
///
/// Runs in the child after clone: async-signal-safe only. Needs CAP_SYS_ADMIN in the
/// mount namespace's user namespace.
pub(crate) fn apply(p: &PreparedRootfs) -> Result<(), SetupError> {
    let e = |step: Step, i: usize| move |err: Errno| SetupError::new(step, i as u32, err);
    // Private, not slave: our mounts never propagate to the host, and the host's never
    // propagate in (a host mount under a bound tree would arrive without our ro/nosuid).
    sys::mount(None, c"/", None, libc::MS_PRIVATE | libc::MS_REC, None)
        .map_err(e(Step::MountPrivate, 0))?;
    // Staging tmpfs: after the first pivot the host root is at /oldroot, so every source,
    // even one under the host's /tmp, stays reachable while /newroot is composed.
    sys::mount(
        Some(c"tmpfs"),
        &p.stage,
        Some(c"tmpfs"),
        libc::MS_NOSUID | libc::MS_NODEV,
        Some(c"mode=0755"),
    )
    .map_err(e(Step::StageTmpfs, 0))?;
    sys::chdir(&p.stage).map_err(e(Step::PivotStage, 0))?;
    ok_exists(sys::mkdir(c"newroot", 0o755)).map_err(e(Step::PivotStage, 0))?;
    ok_exists(sys::mkdir(&p.oldroot_rel, 0o755)).map_err(e(Step::PivotStage, 0))?;
    sys::pivot_root(c".", &p.oldroot_rel).map_err(e(Step::PivotStage, 0))?;
    sys::chdir(c"/").map_err(e(Step::PivotStage, 0))?;
    sys::mount(
        Some(c"tmpfs"),
        &p.newroot,
        Some(c"tmpfs"),
        libc::MS_NOSUID | libc::MS_NODEV,
        Some(&p.root_data),
    )
    .map_err(e(Step::StageTmpfs, 1))?;

    for (i, op) in p.ops.iter().enumerate() {
        run_op(op, p.mount_setattr).map_err(e(Step::Mount, i))?;
    }

    // pivot_root(".", ".") stacks the old root on top of the new one; detaching "." then
    // removes the staging tmpfs and the whole host tree from this namespace.
    sys::chdir(&p.newroot).map_err(e(Step::PivotRoot, 0))?;
    sys::pivot_root(c".", c".").map_err(e(Step::PivotRoot, 0))?;
    sys::umount2(c".", libc::MNT_DETACH).map_err(e(Step::DetachOldRoot, 0))?;
    sys::chdir(c"/").map_err(e(Step::DetachOldRoot, 0))?;
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(ws: &str) -> RootSpec {
        RootSpec {
            workspace: PathBuf::from(ws),
            binds: vec![],
            self_exe: None,
            uid: 0,
            gid: 0,
            home: PathBuf::from("/root"),
            fresh_proc: true,
            own_net: true,
            mount_setattr: true,
            tmpfs_size: None,
            own_ipc: true,
        }
    }

    fn idx(p: &PreparedRootfs, pred: impl Fn(&Op) -> bool) -> usize {
        p.ops.iter().position(pred).expect("op present")
    }

    #[test]
    fn workspace_under_tmp_is_bound_after_tmp_is_made() {
        let p = prepare(&spec("/tmp/ws/proj"));
        let tmp = idx(
            &p,
            |o| matches!(o, Op::Chmod { path, .. } if path.as_bytes() == b"/newroot/tmp"),
        );
        let mk = idx(
            &p,
            |o| matches!(o, Op::Mkdir { path, .. } if path.as_bytes() == b"/newroot/tmp/ws/proj"),
        );
        let bind = idx(
            &p,
            |o| matches!(o, Op::Bind { dst, .. } if dst.as_bytes() == b"/newroot/tmp/ws/proj"),
        );
        assert!(tmp < mk && mk < bind, "{tmp} {mk} {bind}");
        match &p.ops[bind] {
            Op::Bind { src, attrs, .. } => {
                assert_eq!(src.as_bytes(), b"/oldroot/tmp/ws/proj");
                assert_eq!(attrs & sys::MOUNT_ATTR_RDONLY, 0);
            }
            _ => unreachable!(),
        }
    }

    #[test]
    fn system_dirs_are_readonly_or_symlinks() {
        let p = prepare(&spec("/tmp/ws"));
        for d in SYSTEM_DIRS {
            let Ok(md) = std::fs::symlink_metadata(d) else {
                continue;
            };
            let target = format!("/newroot{d}");
            let found = p.ops.iter().any(|o| match o {
                Op::Bind { dst, attrs, .. } => {
                    dst.as_bytes() == target.as_bytes() && attrs & sys::MOUNT_ATTR_RDONLY != 0
                }
                Op::Symlink { link, .. } => {
                    md.file_type().is_symlink() && link.as_bytes() == target.as_bytes()
                }
                _ => false,
            });
            assert!(found, "{d} missing from the plan");
        }
    }

    #[test]
    fn nothing_is_created_under_a_later_mount() {
        // Every Mkdir/Touch/Write under a tmpfs or bind target must come after that mount.
        let p = prepare(&spec("/tmp/a/b"));
        let mounts: Vec<(usize, String)> = p
            .ops
            .iter()
            .enumerate()
            .filter_map(|(i, o)| match o {
                Op::Tmpfs { target, .. } => Some((i, target.to_string_lossy().into_owned())),
                Op::Bind { dst, .. } => Some((i, dst.to_string_lossy().into_owned())),
                _ => None,
            })
            .collect();
        for (i, o) in p.ops.iter().enumerate() {
            let path = match o {
                Op::Mkdir { path, .. } | Op::Touch { path } | Op::WriteFile { path, .. } => path,
                _ => continue,
            };
            let path = path.to_string_lossy();
            for (mi, m) in &mounts {
                if path.starts_with(&format!("{m}/")) {
                    assert!(i > *mi, "{path} created before mount {m}");
                }
            }
        }
    }

    #[test]
    fn one_tmpfs_budget_for_every_writable_place() {
        let mut sp = spec("/tmp/ws");
        sp.tmpfs_size = Some(1 << 20);
        let p = prepare(&sp);
        assert!(p.root_data.to_bytes().ends_with(b",size=1048576"));
        // /tmp is a sticky dir of the root tmpfs, /dev/shm a bind of another one: no
        // writable tmpfs of their own (each would get the whole budget again).
        for o in &p.ops {
            if let Op::Tmpfs { target, .. } = o {
                let t = target.to_bytes();
                assert!(
                    t == b"/newroot/dev"
                        || t == b"/newroot/etc"
                        || t.starts_with(b"/newroot/proc/"),
                    "unexpected tmpfs {target:?}"
                );
            }
        }
        for d in ["/newroot/tmp", "/newroot/run/shm"] {
            assert!(
                p.ops.iter().any(|o| matches!(o, Op::Chmod { path, mode: 0o1777 } if path.to_bytes() == d.as_bytes())),
                "{d} is not a sticky dir"
            );
        }
        assert!(p.ops.iter().any(|o| matches!(o,
            Op::Bind { src, dst, .. } if src.to_bytes() == b"/newroot/run/shm" && dst.to_bytes() == b"/newroot/dev/shm")));
        // /dev and /etc end read-only.
        for d in ["/newroot/dev", "/newroot/etc"] {
            assert!(
                p.ops.iter().any(|o| matches!(o, Op::RemountRo { target, flags, .. } if target.to_bytes() == d.as_bytes() && flags & libc::MS_RDONLY != 0)),
                "{d} not remounted read-only"
            );
        }
        // SysV shm of the own IPC namespace gets the same budget, never the host's.
        let shm: Vec<_> = p
            .ops
            .iter()
            .filter_map(|o| match o {
                Op::Sysctl { path, value } => {
                    Some((path.to_bytes().to_vec(), value.to_bytes().to_vec()))
                }
                _ => None,
            })
            .collect();
        assert!(
            shm.contains(&(b"/newroot/proc/sys/kernel/shmall".to_vec(), b"256".to_vec())),
            "{shm:?}"
        );
        sp.own_ipc = false;
        assert!(!prepare(&sp)
            .ops
            .iter()
            .any(|o| matches!(o, Op::Sysctl { .. })));
        let unlimited = prepare(&spec("/tmp/ws"));
        assert_eq!(unlimited.root_data.to_bytes(), b"mode=0755");
        assert!(!unlimited.ops.iter().any(|o| matches!(o, Op::Sysctl { .. })));
    }

    #[test]
    fn device_nodes_are_read_only_binds() {
        let p = prepare(&spec("/tmp/ws"));
        let mut n = 0;
        for o in &p.ops {
            if let Op::Bind { dst, attrs, .. } = o {
                if dst.to_bytes().starts_with(b"/newroot/dev/")
                    && !dst.to_bytes().ends_with(b"/shm")
                {
                    assert_ne!(attrs & sys::MOUNT_ATTR_RDONLY, 0, "{dst:?} writable");
                    assert_eq!(attrs & sys::MOUNT_ATTR_NODEV, 0, "{dst:?} nodev");
                    n += 1;
                }
            }
        }
        assert!(n >= 3, "{n} device binds");
    }

    #[test]
    fn pins_are_the_dirs_between() {
        let v = pins(Path::new("/w"), Path::new("/w/.git/modules/a/hooks"));
        let want: Vec<PathBuf> = ["/w/.git", "/w/.git/modules", "/w/.git/modules/a"]
            .iter()
            .map(PathBuf::from)
            .collect();
        assert_eq!(v, want);
        assert!(pins(Path::new("/w"), Path::new("/w/x")).is_empty());
    }

    #[test]
    fn nested_binds_pin_their_ancestors() {
        // A read-only bind two levels below the workspace: its parent is pinned (once, even
        // for two protected paths), then it is bound by fd; a bind outside stays plain.
        let mut sp = spec("/w");
        sp.binds = vec![
            (PathBuf::from("/w/.git/hooks"), false),
            (PathBuf::from("/w/.git/config"), false),
            (PathBuf::from("/opt/x"), false),
        ];
        let p = prepare(&sp);
        let pinned: Vec<(String, u64)> = p
            .ops
            .iter()
            .filter_map(|o| match o {
                Op::PinnedBind { dst, attrs, .. } => {
                    Some((dst.to_string_lossy().into_owned(), *attrs))
                }
                _ => None,
            })
            .collect();
        assert_eq!(
            pinned,
            vec![
                ("/newroot/w/.git".to_string(), RW),
                ("/newroot/w/.git/hooks".to_string(), RO),
                ("/newroot/w/.git/config".to_string(), RO),
            ]
        );
        let ws = idx(
            &p,
            |o| matches!(o, Op::Bind { dst, .. } if dst.as_bytes() == b"/newroot/w"),
        );
        let pin = idx(
            &p,
            |o| matches!(o, Op::PinnedBind { dst, .. } if dst.as_bytes() == b"/newroot/w/.git"),
        );
        assert!(ws < pin);
        // Nothing is created below the workspace (it would land on the host).
        assert!(!p.ops.iter().any(|o| matches!(o,
            Op::Mkdir { path, .. } | Op::Touch { path } if path.to_bytes().starts_with(b"/newroot/w/"))));
        assert!(p
            .ops
            .iter()
            .any(|o| matches!(o, Op::Bind { dst, .. } if dst.as_bytes() == b"/newroot/opt/x")));
    }

    #[test]
    fn sockets_under_ro_binds_are_masked() {
        let d = std::env::temp_dir().join(format!("agentcage-rootfs-sock-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join("a/rw")).expect("mkdir");
        let _l1 = std::os::unix::net::UnixListener::bind(d.join("a/S")).expect("bind");
        let _l2 = std::os::unix::net::UnixListener::bind(d.join("a/rw/S")).expect("bind");
        let mut sp = spec("/w");
        sp.binds = vec![(d.join("a"), false), (d.join("a/rw"), true)];
        let p = prepare(&sp);
        let masked: Vec<String> = p
            .ops
            .iter()
            .filter_map(|o| match o {
                Op::MaskSocket { dst } => Some(dst.to_string_lossy().into_owned()),
                _ => None,
            })
            .collect();
        let _ = std::fs::remove_dir_all(&d);
        // The one below the writable bind stays: the caller asked for it writable.
        assert_eq!(masked, vec![format!("/newroot{}", d.join("a/S").display())]);
        assert_eq!(p.sockets.masked, vec![d.join("a/S")]);
        assert!(p.sockets.truncated.is_empty());
    }

    #[test]
    fn workspace_checks() {
        assert!(check_workspace(Path::new("/")).is_err());
        assert!(check_workspace(Path::new("/usr")).is_err());
        assert!(check_workspace(Path::new("/home/u/p")).is_ok());
    }
}
