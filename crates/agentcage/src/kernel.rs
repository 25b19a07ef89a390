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
//! From [`Features`] we derive the degradation ladder ([`Features::ladder`]): for each
//! profile, whether each of its layers can be enforced by this caller and, if not, which
//! weaker set of layers remains and exactly which guarantees are lost. The same value feeds
//! `agentcage doctor` (see `doctor.rs`), the launcher's fail-closed checks, the matrix header
//! and the test gates.
//!
//! The launcher's hot path uses the cheap pieces separately: [`landlock_abi`],
//! [`mount_setattr_available`] and, after a failed `clone(CLONE_NEWUSER)`,
//! [`userns_failure_hint`].
//!
//! Man pages: user_namespaces(7), landlock(7), seccomp(2), cgroups(7), proc_sys_kernel(5).

use std::ffi::{CStr, CString};
use std::fs;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::policy::{Layer, LayerSet, Profile};

/// The uid/gid the unprivileged trial drops to when detection runs as root (`nobody`).
pub const NOBODY: u32 = 65534;

/// How long a throwaway child may take before it is killed and reported as hung.
const CHILD_DEADLINE: Duration = Duration::from_secs(2);

// ---------------------------------------------------------------------------------------------
// Common result type
// ---------------------------------------------------------------------------------------------

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

fn last_errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

// ---------------------------------------------------------------------------------------------
// Features
// ---------------------------------------------------------------------------------------------

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
        let landlock = LandlockInfo::from_abi(landlock_abi());
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

fn c_chars_to_string(chars: &[libc::c_char]) -> String {
    let bytes: Vec<u8> = chars
        .iter()
        .take_while(|c| **c != 0)
        .map(|c| *c as u8)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

fn detect_kernel() -> KernelInfo {
    // SAFETY: utsname is plain old data; all-zero is a valid value.
    let mut uts: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: `uts` is a valid, writable utsname for the duration of the call.
    if unsafe { libc::uname(&mut uts) } != 0 {
        let why = errno_text(last_errno());
        return KernelInfo {
            release: format!("unknown (uname failed: {why})"),
            version: String::new(),
            machine: String::new(),
        };
    }
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

fn detect_caller() -> Caller {
    // SAFETY: getuid/geteuid/getegid cannot fail and take no pointers.
    let (uid, euid, egid) = unsafe { (libc::getuid(), libc::geteuid(), libc::getegid()) };
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    // SAFETY: PR_GET_SECCOMP takes no pointer arguments.
    let mode = unsafe { libc::prctl(libc::PR_GET_SECCOMP, 0, 0, 0, 0) };
    let seccomp_mode = if mode >= 0 { Some(mode) } else { None };
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

// ---------------------------------------------------------------------------------------------
// Throwaway children
// ---------------------------------------------------------------------------------------------

/// What a failing child reports: the step that failed, its errno and a step-specific detail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Record {
    step: u32,
    errno: i32,
    detail: u32,
}

impl Record {
    const LEN: usize = 12;

    fn to_bytes(self) -> [u8; Record::LEN] {
        let mut b = [0u8; Record::LEN];
        b[0..4].copy_from_slice(&self.step.to_ne_bytes());
        b[4..8].copy_from_slice(&self.errno.to_ne_bytes());
        b[8..12].copy_from_slice(&self.detail.to_ne_bytes());
        b
    }

    fn from_bytes(b: &[u8; Record::LEN]) -> Record {
        let word = |i: usize| [b[i], b[i + 1], b[i + 2], b[i + 3]];
        Record {
            step: u32::from_ne_bytes(word(0)),
            errno: i32::from_ne_bytes(word(4)),
            detail: u32::from_ne_bytes(word(8)),
        }
    }
}

/// The write end of the report pipe, as seen by the child.
struct Reporter(RawFd);

/// `Record::step` of the final record every child writes after its body returns; `detail`
/// carries the exit code. The outcome is read from the pipe, so it survives a caller that
/// ignores SIGCHLD (children auto-reaped, `waitpid` fails with ECHILD).
const DONE_STEP: u32 = u32::MAX;

impl Reporter {
    /// Writes the final record. Async-signal-safe.
    fn done(&self, code: i32) {
        let bytes = Record {
            step: DONE_STEP,
            errno: 0,
            detail: code as u32,
        }
        .to_bytes();
        // SAFETY: as in `fail`.
        unsafe { libc::write(self.0, bytes.as_ptr().cast(), bytes.len()) };
    }

    /// Writes one record and returns the exit code to use. Async-signal-safe.
    fn fail(&self, step: u32, errno: i32, detail: u32) -> i32 {
        let bytes = Record {
            step,
            errno,
            detail,
        }
        .to_bytes();
        // SAFETY: `bytes` is a live 12-byte buffer; the fd is the pipe's write end, kept open
        // by this child. A short or failed write only loses the detail, not the exit code.
        unsafe { libc::write(self.0, bytes.as_ptr().cast(), bytes.len()) };
        1
    }
}

/// A forked child we still have to reap.
struct Child {
    pid: libc::pid_t,
    report: OwnedFd,
}

/// How a child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ended {
    /// `_exit(code)`.
    Code(i32),
    /// Killed by this signal.
    Signal(i32),
    /// Did not finish before the deadline; it was killed and reaped.
    TimedOut,
    /// Ended without a final record and could not be reaped (SIGCHLD ignored by the
    /// embedding program): the outcome is unknown.
    Lost,
}

/// fork(2) without glibc's atfork machinery (a raw `clone(SIGCHLD)`): safe to call from a
/// child of a multi-threaded process, where glibc's `fork` could wait on a copied lock.
fn raw_fork() -> libc::pid_t {
    // SAFETY: clone without CLONE_VM gives the child its own copy of memory and the current
    // stack, exactly like fork; no pointer arguments are passed.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_clone,
            libc::SIGCHLD as libc::c_ulong,
            0usize,
            0usize,
            0usize,
            0usize,
        )
    };
    libc::pid_t::try_from(rc).unwrap_or(-1)
}

/// Forks a child that runs `body` and `_exit`s with its return value.
///
/// `body` runs after fork in a possibly multi-threaded process: it must be async-signal-safe
/// (raw syscalls on data prepared by the caller; no allocation, no locks, no panics).
fn spawn_child(body: impl FnOnce(&Reporter) -> i32) -> Result<Child, i32> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: `fds` is a writable array of two fds, as pipe2 requires.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(last_errno());
    }
    // SAFETY: pipe2 just created both fds and nothing else owns them.
    let (read_end, write_end) =
        unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    let pid = raw_fork();
    if pid < 0 {
        return Err(last_errno());
    }
    if pid == 0 {
        let reporter = Reporter(write_end.as_raw_fd());
        // A panic must never unwind into the parent's copied stack frames.
        let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| body(&reporter)))
            .unwrap_or(127);
        reporter.done(code);
        // SAFETY: _exit ends the child without running the parent's destructors or atexit
        // handlers, which must not run twice.
        unsafe { libc::_exit(code) }
    }
    drop(write_end);
    #[cfg(test)]
    tests::note_child(pid);
    Ok(Child {
        pid,
        report: read_end,
    })
}

/// Reads the child's record (if any) until EOF or `deadline`, then reaps it. Never leaves a
/// zombie: on timeout the child is killed first.
fn finish_child(child: Child, deadline: Instant) -> (Ended, Option<Record>) {
    let mut buf = [0u8; Record::LEN];
    let mut got = 0usize;
    let mut timed_out = false;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            timed_out = true;
            break;
        }
        let mut pfd = libc::pollfd {
            fd: child.report.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = libc::c_int::try_from(left.as_millis().max(1)).unwrap_or(libc::c_int::MAX);
        // SAFETY: `pfd` is one valid pollfd on an fd we own.
        let rc = unsafe { libc::poll(&mut pfd, 1, ms) };
        if rc < 0 {
            if last_errno() == libc::EINTR {
                continue;
            }
            break;
        }
        if rc == 0 {
            timed_out = true;
            break;
        }
        // SAFETY: reading into the unfilled tail of `buf`, which is `LEN - got` bytes long.
        let n = unsafe {
            libc::read(
                child.report.as_raw_fd(),
                buf[got..].as_mut_ptr().cast(),
                Record::LEN - got,
            )
        };
        if n < 0 {
            if last_errno() == libc::EINTR {
                continue;
            }
            break;
        }
        if n == 0 {
            break; // EOF: the child (and any grandchild) closed the pipe
        }
        got += usize::try_from(n).unwrap_or(0);
        if got == Record::LEN {
            break;
        }
    }
    if timed_out {
        // SAFETY: `pid` is our unreaped child, so the pid cannot have been reused.
        unsafe { libc::kill(child.pid, libc::SIGKILL) };
    }
    let mut status = 0;
    let mut reaped = true;
    loop {
        // SAFETY: `status` is a valid out pointer; `pid` is our own child.
        let rc = unsafe { libc::waitpid(child.pid, &mut status, 0) };
        if rc == child.pid {
            break;
        }
        if rc < 0 && last_errno() == libc::EINTR {
            continue;
        }
        // ECHILD: auto-reaped because the program ignores SIGCHLD; rely on the pipe.
        reaped = false;
        break;
    }
    let record = (got == Record::LEN).then(|| Record::from_bytes(&buf));
    if let Some(r) = record.filter(|r| r.step == DONE_STEP && !timed_out) {
        return (Ended::Code(r.detail as i32), None);
    }
    let ended = if timed_out {
        Ended::TimedOut
    } else if !reaped {
        Ended::Lost
    } else if libc::WIFSIGNALED(status) {
        Ended::Signal(libc::WTERMSIG(status))
    } else {
        Ended::Code(libc::WEXITSTATUS(status))
    };
    (ended, record)
}

fn signal_name(sig: i32) -> String {
    match sig {
        libc::SIGSEGV => "SIGSEGV".into(),
        libc::SIGSYS => "SIGSYS (seccomp)".into(),
        libc::SIGKILL => "SIGKILL".into(),
        libc::SIGILL => "SIGILL".into(),
        libc::SIGBUS => "SIGBUS".into(),
        libc::SIGABRT => "SIGABRT".into(),
        other => format!("signal {other}"),
    }
}

/// Writes `data` to `path` (open, one write, close). Async-signal-safe.
fn write_proc_file(path: &CStr, data: &[u8]) -> Result<(), i32> {
    // SAFETY: `path` is a live NUL-terminated string.
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(last_errno());
    }
    // SAFETY: `data` is a live buffer of `data.len()` bytes; `fd` was just opened.
    let n = unsafe { libc::write(fd, data.as_ptr().cast(), data.len()) };
    let err = if n < 0 { Some(last_errno()) } else { None };
    // SAFETY: `fd` is ours and closed once.
    unsafe { libc::close(fd) };
    match err {
        Some(e) => Err(e),
        None if usize::try_from(n).ok() == Some(data.len()) => Ok(()),
        None => Err(libc::EIO),
    }
}

// ---------------------------------------------------------------------------------------------
// User namespaces
// ---------------------------------------------------------------------------------------------

/// User-namespace support, tried for real.
#[derive(Debug, Clone, Serialize)]
pub struct UserNamespaces {
    /// The trial as the calling user.
    pub as_caller: UsernsTrial,
    /// The trial as an unprivileged user: as root, after `setresuid(65534)`; otherwise the
    /// same as `as_caller`.
    pub for_unprivileged: UsernsTrial,
    /// The distro knobs that gate unprivileged user namespaces.
    pub knobs: UsernsKnobs,
}

/// One user-namespace trial: what the launcher does, up to a fresh /proc.
#[derive(Debug, Clone, Serialize)]
pub struct UsernsTrial {
    /// Host uid the trial ran as.
    pub uid: u32,
    /// Every step succeeded.
    pub works: bool,
    /// The first step that failed.
    pub failed_step: Option<UsernsStep>,
    /// Its errno.
    pub errno: Option<i32>,
    /// For `unshare-namespaces`: the namespace the kernel refused (net, ipc, ...).
    pub namespace: Option<String>,
    /// What went wrong, in words.
    pub reason: Option<String>,
    /// How to fix it on this host, when we know.
    pub fix: Option<String>,
}

/// The steps of a user-namespace trial, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum UsernsStep {
    /// Forking the trial child.
    Fork,
    /// setgroups/setresgid/setresuid to the unprivileged uid (root only).
    DropPrivileges,
    /// `unshare(CLONE_NEWUSER)`.
    UnshareUser,
    /// Writing `deny` to /proc/self/setgroups.
    WriteSetgroups,
    /// Writing /proc/self/uid_map.
    WriteUidMap,
    /// Writing /proc/self/gid_map.
    WriteGidMap,
    /// `unshare` of the mount, pid, net, ipc, uts and cgroup namespaces.
    UnshareNamespaces,
    /// Making the mount tree private (`MS_REC|MS_PRIVATE` on /).
    MakeMountsPrivate,
    /// Mounting a tmpfs.
    MountTmpfs,
    /// Forking pid 1 of the new pid namespace.
    ForkInit,
    /// Mounting a fresh proc from inside the new pid namespace.
    MountProc,
    /// The trial child was killed by a signal (e.g. a seccomp filter's SIGSYS).
    Killed,
    /// The trial did not finish in time.
    Timeout,
}

impl UsernsStep {
    const ORDER: [UsernsStep; 13] = [
        UsernsStep::Fork,
        UsernsStep::DropPrivileges,
        UsernsStep::UnshareUser,
        UsernsStep::WriteSetgroups,
        UsernsStep::WriteUidMap,
        UsernsStep::WriteGidMap,
        UsernsStep::UnshareNamespaces,
        UsernsStep::MakeMountsPrivate,
        UsernsStep::MountTmpfs,
        UsernsStep::ForkInit,
        UsernsStep::MountProc,
        UsernsStep::Killed,
        UsernsStep::Timeout,
    ];

    fn code(self) -> u32 {
        self as u32
    }

    fn from_code(code: u32) -> Option<UsernsStep> {
        UsernsStep::ORDER.into_iter().find(|s| s.code() == code)
    }

    /// What the step does, for messages.
    pub fn describe(self) -> &'static str {
        match self {
            UsernsStep::Fork => "fork the trial child",
            UsernsStep::DropPrivileges => "drop to uid/gid 65534",
            UsernsStep::UnshareUser => "unshare(CLONE_NEWUSER)",
            UsernsStep::WriteSetgroups => "write /proc/self/setgroups",
            UsernsStep::WriteUidMap => "write /proc/self/uid_map",
            UsernsStep::WriteGidMap => "write /proc/self/gid_map",
            UsernsStep::UnshareNamespaces => "unshare mount/pid/net/ipc/uts/cgroup namespaces",
            UsernsStep::MakeMountsPrivate => "make / private in the new mount namespace",
            UsernsStep::MountTmpfs => "mount a tmpfs in the new mount namespace",
            UsernsStep::ForkInit => "fork pid 1 of the new pid namespace",
            UsernsStep::MountProc => "mount a fresh /proc in the new pid namespace",
            UsernsStep::Killed => "run the trial (child killed)",
            UsernsStep::Timeout => "finish the trial in time",
        }
    }
}

/// The namespaces unshared after the user namespace, each tried alone on failure to name the
/// culprit.
const OTHER_NAMESPACES: [(libc::c_int, &str); 6] = [
    (libc::CLONE_NEWNS, "mount"),
    (libc::CLONE_NEWPID, "pid"),
    (libc::CLONE_NEWNET, "net"),
    (libc::CLONE_NEWIPC, "ipc"),
    (libc::CLONE_NEWUTS, "uts"),
    (libc::CLONE_NEWCGROUP, "cgroup"),
];

/// Everything the userns trial child touches, built before the fork.
struct UsernsPlan {
    uid: u32,
    drop_to: Option<(u32, u32)>,
    uid_map: Vec<u8>,
    gid_map: Vec<u8>,
    tmpfs_target: CString,
    proc_target: CString,
}

impl UsernsPlan {
    /// `uid`/`gid`: the host ids the trial runs as (mapped to 0 inside).
    fn new(uid: u32, gid: u32, drop_to: Option<(u32, u32)>) -> UsernsPlan {
        // The tmpfs goes over an existing directory; it lives only in the child's private
        // mount namespace.
        let target = ["/tmp", "/mnt", "/run", "/var/tmp", "/dev"]
            .into_iter()
            .find(|p| Path::new(p).is_dir())
            .unwrap_or("/tmp");
        UsernsPlan {
            uid,
            drop_to,
            uid_map: format!("0 {uid} 1\n").into_bytes(),
            gid_map: format!("0 {gid} 1\n").into_bytes(),
            tmpfs_target: CString::new(target).unwrap_or_default(),
            proc_target: CString::new(format!("{target}/proc")).unwrap_or_default(),
        }
    }
}

/// Runs in the trial child after fork: async-signal-safe only.
fn userns_child(plan: &UsernsPlan, rep: &Reporter) -> i32 {
    let fail = |step: UsernsStep, detail: u32| rep.fail(step.code(), last_errno(), detail);
    // SAFETY: integer-only prctl: kill this child if the detecting thread goes away.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) };
    // We wait for pid 1 below: an inherited SIG_IGN would auto-reap it and hide its status.
    // SAFETY: resetting a disposition to SIG_DFL is async-signal-safe and touches no memory.
    unsafe { libc::signal(libc::SIGCHLD, libc::SIG_DFL) };
    if let Some((uid, gid)) = plan.drop_to {
        // Raw syscalls, not the libc wrappers: after a raw fork glibc still believes the
        // parent's other threads exist, and its set*id wrappers would signal them and wait
        // forever (the setxid broadcast). The kernel calls change just this (only) thread.
        // SAFETY: setgroups with an empty list reads no memory.
        if unsafe { libc::syscall(libc::SYS_setgroups, 0usize, std::ptr::null::<libc::gid_t>()) }
            != 0
        {
            return fail(UsernsStep::DropPrivileges, 0);
        }
        // SAFETY: integer-only credential syscalls.
        if unsafe { libc::syscall(libc::SYS_setresgid, gid, gid, gid) } != 0 {
            return fail(UsernsStep::DropPrivileges, 1);
        }
        // SAFETY: as above. Dropping every uid to non-zero also clears our capabilities.
        if unsafe { libc::syscall(libc::SYS_setresuid, uid, uid, uid) } != 0 {
            return fail(UsernsStep::DropPrivileges, 2);
        }
        // The uid change made us non-dumpable, which would make /proc/self/*_map root-owned.
        // SAFETY: integer-only prctl.
        unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 1, 0, 0, 0) };
    }
    // SAFETY: integer-only syscall; this child is single-threaded, as unshare(CLONE_NEWUSER)
    // requires.
    if unsafe { libc::unshare(libc::CLONE_NEWUSER) } != 0 {
        return fail(UsernsStep::UnshareUser, 0);
    }
    match write_proc_file(c"/proc/self/setgroups", b"deny") {
        Ok(()) | Err(libc::ENOENT) => {} // before 3.19 there is no setgroups file
        Err(e) => return rep.fail(UsernsStep::WriteSetgroups.code(), e, 0),
    }
    if let Err(e) = write_proc_file(c"/proc/self/uid_map", &plan.uid_map) {
        return rep.fail(UsernsStep::WriteUidMap.code(), e, 0);
    }
    if let Err(e) = write_proc_file(c"/proc/self/gid_map", &plan.gid_map) {
        return rep.fail(UsernsStep::WriteGidMap.code(), e, 0);
    }
    let all = OTHER_NAMESPACES.iter().fold(0, |acc, (flag, _)| acc | flag);
    // SAFETY: integer-only syscall.
    if unsafe { libc::unshare(all) } != 0 {
        let errno = last_errno();
        // Name the culprit: try each namespace alone (we exit right after anyway).
        for (flag, _) in OTHER_NAMESPACES {
            // SAFETY: integer-only syscall.
            if unsafe { libc::unshare(flag) } != 0 {
                return rep.fail(
                    UsernsStep::UnshareNamespaces.code(),
                    last_errno(),
                    flag as u32,
                );
            }
        }
        return rep.fail(UsernsStep::UnshareNamespaces.code(), errno, 0);
    }
    // SAFETY: NULL source/type/data are allowed for a propagation change; "/" is a literal.
    let rc = unsafe {
        libc::mount(
            std::ptr::null(),
            c"/".as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return fail(UsernsStep::MakeMountsPrivate, 0);
    }
    // SAFETY: all strings are live NUL-terminated literals or prepared CStrings.
    let rc = unsafe {
        libc::mount(
            c"tmpfs".as_ptr(),
            plan.tmpfs_target.as_ptr(),
            c"tmpfs".as_ptr(),
            libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
            c"size=64k,mode=0755".as_ptr().cast(),
        )
    };
    if rc != 0 {
        return fail(UsernsStep::MountTmpfs, 0);
    }
    // Our first child is pid 1 of the new pid namespace; proc must be mounted from inside it.
    let pid = raw_fork();
    if pid < 0 {
        return fail(UsernsStep::ForkInit, 0);
    }
    if pid == 0 {
        // SAFETY: integer-only prctl.
        unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) };
        // SAFETY: prepared CString; the directory is created in our private tmpfs.
        if unsafe { libc::mkdir(plan.proc_target.as_ptr(), 0o755) } != 0 {
            let code = fail(UsernsStep::MountProc, 1);
            // SAFETY: leaves this grandchild without running inherited destructors.
            unsafe { libc::_exit(code) }
        }
        // SAFETY: live NUL-terminated strings; NULL data is allowed.
        let rc = unsafe {
            libc::mount(
                c"proc".as_ptr(),
                plan.proc_target.as_ptr(),
                c"proc".as_ptr(),
                libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                std::ptr::null(),
            )
        };
        let code = if rc != 0 {
            fail(UsernsStep::MountProc, 2)
        } else {
            0
        };
        // SAFETY: as above.
        unsafe { libc::_exit(code) }
    }
    let mut status = 0;
    loop {
        // SAFETY: `status` is a valid out pointer; `pid` is our child.
        let rc = unsafe { libc::waitpid(pid, &mut status, 0) };
        if rc == pid {
            break;
        }
        if rc < 0 && last_errno() != libc::EINTR {
            return fail(UsernsStep::ForkInit, 1);
        }
    }
    if libc::WIFSIGNALED(status) {
        return rep.fail(UsernsStep::Killed.code(), 0, libc::WTERMSIG(status) as u32);
    }
    // A failing grandchild already wrote its record.
    libc::WEXITSTATUS(status)
}

fn spawn_userns_trial(plan: &UsernsPlan) -> Result<Child, i32> {
    spawn_child(|rep| userns_child(plan, rep))
}

fn finish_userns_trial(
    child: Result<Child, i32>,
    plan: &UsernsPlan,
    knobs: &UsernsKnobs,
    deadline: Instant,
) -> UsernsTrial {
    let (step, errno, detail) = match child {
        Err(errno) => (Some(UsernsStep::Fork), errno, 0),
        Ok(child) => match finish_child(child, deadline) {
            (_, Some(r)) => (UsernsStep::from_code(r.step), r.errno, r.detail),
            (Ended::Code(0), None) => (None, 0, 0),
            (Ended::Code(_), None) => (Some(UsernsStep::Killed), 0, 0),
            (Ended::Signal(sig), None) => (Some(UsernsStep::Killed), 0, sig as u32),
            (Ended::TimedOut, None) => (Some(UsernsStep::Timeout), 0, 0),
            (Ended::Lost, None) => (Some(UsernsStep::Killed), 0, 0),
        },
    };
    userns_trial_from(plan.uid, step, errno, detail, knobs)
}

/// Turns a trial's raw outcome into words and a fix.
fn userns_trial_from(
    uid: u32,
    step: Option<UsernsStep>,
    errno: i32,
    detail: u32,
    knobs: &UsernsKnobs,
) -> UsernsTrial {
    let Some(step) = step else {
        return UsernsTrial {
            uid,
            works: true,
            failed_step: None,
            errno: None,
            namespace: None,
            reason: None,
            fix: None,
        };
    };
    let namespace = (step == UsernsStep::UnshareNamespaces)
        .then(|| {
            OTHER_NAMESPACES
                .iter()
                .find(|(flag, _)| *flag as u32 == detail)
                .map(|(_, name)| (*name).to_string())
        })
        .flatten();
    let mut reason = match step {
        UsernsStep::Killed if detail != 0 => format!(
            "the trial child was killed by {} (a seccomp filter that kills instead of failing?)",
            signal_name(detail as i32)
        ),
        UsernsStep::Killed => "the trial child failed without reporting a step".to_string(),
        UsernsStep::Timeout => format!("the trial did not finish within {CHILD_DEADLINE:?}"),
        _ => format!("{} failed with {}", step.describe(), errno_text(errno)),
    };
    if let Some(ns) = &namespace {
        reason.push_str(&format!(" (the {ns} namespace)"));
    }
    let fix = match step {
        UsernsStep::UnshareUser
        | UsernsStep::WriteSetgroups
        | UsernsStep::WriteUidMap
        | UsernsStep::WriteGidMap => userns_hint_from(errno, knobs),
        UsernsStep::MountProc if errno == libc::EPERM => Some(
            "the kernel only lets a user namespace mount proc when a fully visible /proc exists \
             in its mount namespace; container runtimes mask parts of /proc (e.g. Docker's \
             /proc/kcore, /proc/sys): run with an unmasked /proc (docker run \
             --security-opt systempaths=unconfined) or use a landlock-only fallback"
                .to_string(),
        ),
        UsernsStep::UnshareNamespaces | UsernsStep::MountTmpfs | UsernsStep::MakeMountsPrivate
            if errno == libc::EPERM =>
        {
            Some(
                "a security module or a seccomp filter denies this inside the user namespace; \
                 check `dmesg` for AppArmor/SELinux denials"
                    .to_string(),
            )
        }
        UsernsStep::UnshareNamespaces if errno == libc::ENOSPC => Some(format!(
            "a namespace count limit is exhausted (user.max_{}_namespaces)",
            namespace.as_deref().unwrap_or("*")
        )),
        UsernsStep::Killed => knobs.seccomp_filtered.then(|| {
            "the caller runs under a seccomp filter that kills on unshare/mount".to_string()
        }),
        _ => None,
    };
    UsernsTrial {
        uid,
        works: false,
        failed_step: Some(step),
        errno: (errno != 0).then_some(errno),
        namespace,
        reason: Some(reason),
        fix,
    }
}

/// The distro and kernel knobs that gate unprivileged user namespaces (absent = `None`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UsernsKnobs {
    /// `kernel.unprivileged_userns_clone` (Debian, older Ubuntu, linux-hardened): 0 = denied.
    pub unprivileged_userns_clone: Option<i64>,
    /// `user.max_user_namespaces`: 0 = denied for everyone.
    pub max_user_namespaces: Option<i64>,
    /// `kernel.apparmor_restrict_unprivileged_userns` (Ubuntu 23.10+): 1 = only profiles that
    /// grant `userns` may create one with capabilities.
    pub apparmor_restrict_unprivileged_userns: Option<i64>,
    /// The caller has CAP_SYS_ADMIN (the knobs above do not apply to it).
    pub cap_sys_admin: bool,
    /// The caller already runs under a seccomp filter.
    pub seccomp_filtered: bool,
    /// The container runtime, if any (for the hint).
    pub container: Option<String>,
}

impl UsernsKnobs {
    fn read(caller: &Caller) -> UsernsKnobs {
        UsernsKnobs {
            unprivileged_userns_clone: read_sysctl_int("kernel/unprivileged_userns_clone"),
            max_user_namespaces: read_sysctl_int("user/max_user_namespaces"),
            apparmor_restrict_unprivileged_userns: read_sysctl_int(
                "kernel/apparmor_restrict_unprivileged_userns",
            ),
            cap_sys_admin: caller.cap_sys_admin,
            seccomp_filtered: caller.seccomp_mode == Some(2),
            container: caller.container.clone(),
        }
    }
}

/// Given the errno of a failed `clone(CLONE_NEWUSER)`/`unshare(CLONE_NEWUSER)` (or of the
/// `uid_map` write that follows it), explains why and how to fix it on this host.
///
/// Reads the relevant sysctls and /proc/self/status; call it only on the failure path.
/// Returns `None` when the errno is not one user-namespace creation produces.
pub fn userns_failure_hint(errno: i32) -> Option<String> {
    userns_hint_from(errno, &UsernsKnobs::read(&detect_caller()))
}

/// [`userns_failure_hint`] on given knob values (pure; unit-tested).
fn userns_hint_from(errno: i32, k: &UsernsKnobs) -> Option<String> {
    let in_container = k
        .container
        .as_deref()
        .map(|c| format!(" (we appear to run in {c})"))
        .unwrap_or_default();
    match errno {
        libc::EPERM | libc::EACCES => {
            if !k.cap_sys_admin && k.unprivileged_userns_clone == Some(0) {
                return Some(
                    "unprivileged user namespaces are disabled by kernel.unprivileged_userns_clone=0; \
                     enable them with `sysctl -w kernel.unprivileged_userns_clone=1` (persist it in \
                     /etc/sysctl.d/)"
                        .to_string(),
                );
            }
            if !k.cap_sys_admin && k.apparmor_restrict_unprivileged_userns == Some(1) {
                return Some(
                    "unprivileged user namespaces are disabled by \
                     kernel.apparmor_restrict_unprivileged_userns=1; allow them with an AppArmor \
                     profile granting `userns` for the agentcage binary, or \
                     `sysctl -w kernel.apparmor_restrict_unprivileged_userns=0`"
                        .to_string(),
                );
            }
            if k.seccomp_filtered {
                return Some(format!(
                    "the caller runs under a seccomp filter that denies unshare/clone with \
                     CLONE_NEWUSER{in_container}; Docker's and Podman's default profiles do: run \
                     the container with a seccomp profile that allows them (e.g. \
                     `--security-opt seccomp=unconfined`), or use a landlock-only fallback \
                     (--best-effort)"
                ));
            }
            if k.container.is_some() {
                return Some(format!(
                    "user namespace creation is denied{in_container}; the runtime's seccomp \
                     profile, LSM policy or a chroot may forbid it: allow nested user namespaces \
                     in the container configuration, or use a landlock-only fallback \
                     (--best-effort)"
                ));
            }
            Some(
                "user namespace creation is denied: the caller may be chrooted, or an LSM \
                 (AppArmor, SELinux) denies it; check `dmesg` for denials"
                    .to_string(),
            )
        }
        libc::ENOSPC | libc::EUSERS => Some(match k.max_user_namespaces {
            Some(0) => "user namespaces are disabled by user.max_user_namespaces=0; enable them \
                        with `sysctl -w user.max_user_namespaces=15000`"
                .to_string(),
            Some(n) => format!(
                "the user namespace limit is exhausted (user.max_user_namespaces={n}, the \
                 per-user count, or the nesting depth of 32); raise it with \
                 `sysctl -w user.max_user_namespaces=N` or end leftover sandboxes"
            ),
            None => "the user namespace limit or nesting depth (32) is exhausted".to_string(),
        }),
        libc::EINVAL => Some(
            "the kernel does not support user namespaces (built without CONFIG_USER_NS), or \
             the caller is multi-threaded (unshare only)"
                .to_string(),
        ),
        libc::ENOMEM => Some(
            "out of memory, or the pid limit of the caller's pid namespace is reached".to_string(),
        ),
        libc::ENOSYS => Some(format!(
            "clone/unshare is not available: a seccomp filter returns ENOSYS for it{in_container}"
        )),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------
// Landlock
// ---------------------------------------------------------------------------------------------

/// The Landlock ABI this kernel offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "kebab-case")]
pub enum LandlockAbi {
    /// Landlock is enabled; `version` >= 1.
    Available {
        /// The ABI version (`landlock_create_ruleset(.., VERSION)`).
        version: u32,
    },
    /// `ENOSYS`: the kernel is built without CONFIG_SECURITY_LANDLOCK (or a seccomp filter
    /// returns ENOSYS for it).
    NotBuilt,
    /// `EOPNOTSUPP`: built in, but not enabled at boot (`lsm=` lacks `landlock`).
    Disabled,
    /// Another errno (e.g. `EPERM` from a container's seccomp filter).
    Error {
        /// The errno.
        errno: i32,
    },
}

impl LandlockAbi {
    /// The ABI version, 0 when Landlock is unusable.
    pub fn version(self) -> u32 {
        match self {
            LandlockAbi::Available { version } => version,
            _ => 0,
        }
    }

    /// Why Landlock is unusable (with the fix), `None` when available.
    pub fn reason(self) -> Option<String> {
        match self {
            LandlockAbi::Available { .. } => None,
            LandlockAbi::NotBuilt => Some(
                "the kernel is built without Landlock (ENOSYS; CONFIG_SECURITY_LANDLOCK=y is needed, \
                 kernel 5.13+)"
                    .to_string(),
            ),
            LandlockAbi::Disabled => Some(
                "Landlock is built in but not enabled (EOPNOTSUPP): boot with \
                 lsm=...,landlock (add it to the list in /sys/kernel/security/lsm)"
                    .to_string(),
            ),
            LandlockAbi::Error { errno } if errno == libc::EPERM => Some(format!(
                "landlock_create_ruleset failed with {} (a seccomp filter, e.g. an older \
                 container profile, denies the Landlock syscalls)",
                errno_text(errno)
            )),
            LandlockAbi::Error { errno } => Some(format!(
                "landlock_create_ruleset failed with {}",
                errno_text(errno)
            )),
        }
    }
}

/// Asks the kernel for its Landlock ABI (one syscall; fine on the launcher's hot path).
pub fn landlock_abi() -> LandlockAbi {
    // SAFETY: LANDLOCK_CREATE_RULESET_VERSION takes a NULL attr and size 0; no memory is
    // read or written.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<u8>(),
            0usize,
            1u32, // LANDLOCK_CREATE_RULESET_VERSION
        )
    };
    if rc >= 1 {
        return LandlockAbi::Available {
            version: u32::try_from(rc).unwrap_or(u32::MAX),
        };
    }
    match last_errno() {
        libc::ENOSYS => LandlockAbi::NotBuilt,
        libc::EOPNOTSUPP => LandlockAbi::Disabled,
        errno => LandlockAbi::Error { errno },
    }
}

/// One Landlock right (or restrict_self flag) and the ABI that introduced it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct LandlockRight {
    /// `fs`, `net`, `scope` or `restrict_self` (flags of landlock_restrict_self).
    pub kind: &'static str,
    /// The right's name (`LANDLOCK_ACCESS_FS_` etc. stripped, lower case).
    pub name: &'static str,
    /// First ABI version that has it.
    pub abi: u32,
}

/// Every right and flag known to this build, by ABI (landlock(7); rust-landlock `compat.rs`).
pub const LANDLOCK_RIGHTS: &[LandlockRight] = {
    const fn r(kind: &'static str, name: &'static str, abi: u32) -> LandlockRight {
        LandlockRight { kind, name, abi }
    }
    &[
        r("fs", "execute", 1),
        r("fs", "write_file", 1),
        r("fs", "read_file", 1),
        r("fs", "read_dir", 1),
        r("fs", "remove_dir", 1),
        r("fs", "remove_file", 1),
        r("fs", "make_char", 1),
        r("fs", "make_dir", 1),
        r("fs", "make_reg", 1),
        r("fs", "make_sock", 1),
        r("fs", "make_fifo", 1),
        r("fs", "make_block", 1),
        r("fs", "make_sym", 1),
        r("fs", "refer", 2),
        r("fs", "truncate", 3),
        r("net", "bind_tcp", 4),
        r("net", "connect_tcp", 4),
        r("fs", "ioctl_dev", 5),
        r("scope", "abstract_unix_socket", 6),
        r("scope", "signal", 6),
        r("restrict_self", "log_same_exec_off", 7),
        r("restrict_self", "log_new_exec_on", 7),
        r("restrict_self", "log_subdomains_off", 7),
        r("restrict_self", "tsync", 8),
        r("fs", "resolve_unix", 9),
    ]
};

/// The highest ABI [`LANDLOCK_RIGHTS`] describes.
pub const LANDLOCK_ABI_KNOWN: u32 = 9;

/// What each ABI version adds, for humans.
pub fn landlock_abi_summary(abi: u32) -> &'static str {
    match abi {
        1 => "filesystem access rights (Linux 5.13)",
        2 => "REFER: linking and renaming across directories (5.19)",
        3 => "TRUNCATE (6.2)",
        4 => "TCP bind/connect restriction (6.7)",
        5 => "IOCTL_DEV: ioctl on device files (6.10)",
        6 => "scoping of abstract unix sockets and signals (6.12)",
        7 => "audit logging flags (6.15)",
        8 => "TSYNC: restrict all threads at once (7.0)",
        9 => "RESOLVE_UNIX: connecting to named unix sockets (7.1)",
        _ => "unknown to this build of agentcage",
    }
}

/// Landlock as detected.
#[derive(Debug, Clone, Serialize)]
pub struct LandlockInfo {
    /// The ABI.
    pub abi: LandlockAbi,
    /// `abi.version()`, for convenience (0 = unusable).
    pub version: u32,
    /// Support with its reason.
    pub support: Support,
    /// The rights this ABI brings.
    pub rights: Vec<LandlockRight>,
    /// Rights of newer ABIs this kernel lacks (each is a gap a newer kernel would close).
    pub missing: Vec<LandlockRight>,
}

impl LandlockInfo {
    /// Builds the report for an ABI.
    pub fn from_abi(abi: LandlockAbi) -> LandlockInfo {
        let version = abi.version();
        let (rights, missing) = LANDLOCK_RIGHTS.iter().partition(|r| r.abi <= version);
        let support = match abi.reason() {
            None if version > LANDLOCK_ABI_KNOWN => Support::yes_because(format!(
                "ABI {version} is newer than this build knows (ABI {LANDLOCK_ABI_KNOWN}); its \
                 extra rights are not used"
            )),
            None => Support::yes(),
            Some(why) => Support::no(why),
        };
        LandlockInfo {
            abi,
            version,
            support,
            rights,
            missing,
        }
    }

    /// Whether the kernel has a right, e.g. `has("net", "connect_tcp")`.
    pub fn has(&self, kind: &str, name: &str) -> bool {
        self.rights.iter().any(|r| r.kind == kind && r.name == name)
    }
}

// ---------------------------------------------------------------------------------------------
// seccomp
// ---------------------------------------------------------------------------------------------

/// seccomp as detected.
#[derive(Debug, Clone, Serialize)]
pub struct SeccompInfo {
    /// An allow-all filter could be installed in a forked child (after no_new_privs).
    pub filter: Support,
    /// The caller's own mode (`PR_GET_SECCOMP`): 0 none, 2 filter; `None` = no seccomp.
    pub caller_mode: Option<i32>,
    /// Filter return actions the kernel knows (`SECCOMP_GET_ACTION_AVAIL`).
    pub actions: Vec<&'static str>,
}

const SECCOMP_ACTIONS: [(u32, &str); 8] = [
    (libc::SECCOMP_RET_KILL_PROCESS, "kill_process"),
    (libc::SECCOMP_RET_KILL_THREAD, "kill_thread"),
    (libc::SECCOMP_RET_TRAP, "trap"),
    (libc::SECCOMP_RET_ERRNO, "errno"),
    (libc::SECCOMP_RET_USER_NOTIF, "user_notif"),
    (libc::SECCOMP_RET_TRACE, "trace"),
    (libc::SECCOMP_RET_LOG, "log"),
    (libc::SECCOMP_RET_ALLOW, "allow"),
];

fn seccomp_actions() -> Vec<&'static str> {
    SECCOMP_ACTIONS
        .iter()
        .filter(|(action, _)| {
            let a: u32 = *action;
            // SAFETY: GET_ACTION_AVAIL reads one u32 from a live local.
            let rc = unsafe {
                libc::syscall(
                    libc::SYS_seccomp,
                    libc::SECCOMP_GET_ACTION_AVAIL,
                    0u32,
                    &a as *const u32,
                )
            };
            rc == 0
        })
        .map(|(_, name)| *name)
        .collect()
}

const SECCOMP_STEP_NNP: u32 = 1;
const SECCOMP_STEP_INSTALL: u32 = 2;
const SECCOMP_STEP_VERIFY: u32 = 3;

/// Runs in the trial child after fork: async-signal-safe only.
fn seccomp_child(prog: &libc::sock_fprog, rep: &Reporter) -> i32 {
    // SAFETY: integer-only prctl.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return rep.fail(SECCOMP_STEP_NNP, last_errno(), 0);
    }
    // SAFETY: `prog` points to a one-instruction program that outlives the call; the kernel
    // copies it.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            0u32,
            prog as *const libc::sock_fprog,
        )
    };
    if rc != 0 {
        return rep.fail(SECCOMP_STEP_INSTALL, last_errno(), 0);
    }
    // SAFETY: integer-only prctl.
    let mode = unsafe { libc::prctl(libc::PR_GET_SECCOMP, 0, 0, 0, 0) };
    if mode != 2 {
        return rep.fail(SECCOMP_STEP_VERIFY, last_errno(), mode as u32);
    }
    0
}

fn spawn_seccomp_trial() -> Result<Child, i32> {
    let filter = [libc::sock_filter {
        code: (libc::BPF_RET | libc::BPF_K) as u16,
        jt: 0,
        jf: 0,
        k: libc::SECCOMP_RET_ALLOW,
    }];
    let prog = libc::sock_fprog {
        len: 1,
        filter: filter.as_ptr().cast_mut(),
    };
    spawn_child(|rep| seccomp_child(&prog, rep))
}

fn finish_seccomp_trial(
    child: Result<Child, i32>,
    caller_mode: Option<i32>,
    deadline: Instant,
) -> SeccompInfo {
    let filter = match child {
        Err(errno) => Support::no(format!(
            "could not fork the trial child: {}",
            errno_text(errno)
        )),
        Ok(child) => match finish_child(child, deadline) {
            (Ended::Code(0), None) => match caller_mode {
                Some(2) => Support::yes_because(
                    "the caller already runs under a seccomp filter; ours stacks on top",
                ),
                _ => Support::yes(),
            },
            (_, Some(r)) => Support::no(match r.step {
                SECCOMP_STEP_NNP => {
                    format!("prctl(PR_SET_NO_NEW_PRIVS) failed: {}", errno_text(r.errno))
                }
                SECCOMP_STEP_VERIFY => format!(
                    "a filter was installed but PR_GET_SECCOMP reports mode {}",
                    r.detail as i32
                ),
                _ if r.errno == libc::EINVAL && caller_mode.is_none() => {
                    "the kernel is built without CONFIG_SECCOMP_FILTER (EINVAL)".to_string()
                }
                _ => format!(
                    "seccomp(SECCOMP_SET_MODE_FILTER) failed: {}",
                    errno_text(r.errno)
                ),
            }),
            (Ended::Signal(sig), None) => Support::no(format!(
                "the trial child was killed by {}",
                signal_name(sig)
            )),
            (Ended::Code(code), None) => Support::no(format!("the trial child exited with {code}")),
            (Ended::TimedOut, None) => Support::no("the trial child hung"),
            (Ended::Lost, None) => Support::no("the trial child vanished without a result"),
        },
    };
    SeccompInfo {
        filter,
        caller_mode,
        actions: seccomp_actions(),
    }
}

// ---------------------------------------------------------------------------------------------
// 32-bit entry points
// ---------------------------------------------------------------------------------------------

/// The compat syscall entry points (x86_64). A live one must be closed by the seccomp
/// filter's `arch` check, or its different syscall numbers bypass a deny-list.
#[derive(Debug, Clone, Serialize)]
pub struct CompatAbis {
    /// IA32 emulation: `int 0x80` reaches the i386 syscall table.
    pub ia32: Support,
    /// The `ia32_emulation=` boot parameter, if given on the kernel command line.
    pub ia32_emulation_boot_param: Option<String>,
    /// `abi.vsyscall32` (present only with IA32 emulation built in).
    pub vsyscall32: Option<i64>,
    /// x32: `nr | 0x40000000` reaches the x32 syscall table.
    pub x32: Support,
}

/// `int 0x80` with eax = 20 (i386 getpid). Returns rax.
///
/// # Safety
///
/// Only call in a throwaway child: without IA32 emulation the kernel answers with SIGSEGV.
#[cfg(target_arch = "x86_64")]
unsafe fn int80_getpid() -> i64 {
    let ret: i64;
    // SAFETY: the caller accepts a possible SIGSEGV; i386 getpid takes no arguments and
    // touches no memory. r8-r11 are declared clobbered (older kernels zero them on int 0x80).
    unsafe {
        std::arch::asm!(
            "int 0x80",
            inlateout("rax") 20i64 => ret,
            lateout("r8") _, lateout("r9") _, lateout("r10") _, lateout("r11") _,
            options(nostack),
        );
    }
    ret
}

const COMPAT_OFF_ENOSYS: i32 = 3;
const COMPAT_WRONG: i32 = 4;

fn spawn_ia32_trial() -> Option<Result<Child, i32>> {
    #[cfg(target_arch = "x86_64")]
    {
        Some(spawn_child(|_rep| {
            // SAFETY: we are the throwaway child; a SIGSEGV here is the "off" answer.
            let got = unsafe { int80_getpid() };
            // SAFETY: getpid cannot fail.
            let pid = i64::from(unsafe { libc::getpid() });
            if got == pid {
                0
            } else if got == -i64::from(libc::ENOSYS) {
                COMPAT_OFF_ENOSYS
            } else {
                COMPAT_WRONG
            }
        }))
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        None
    }
}

fn finish_compat_trial(
    child: Option<Result<Child, i32>>,
    deadline: Instant,
    what: &str,
    off_by_signal: &str,
) -> Support {
    match child {
        None => Support::no("not an x86_64 host"),
        Some(Err(errno)) => Support::no(format!(
            "could not fork the trial child: {}",
            errno_text(errno)
        )),
        Some(Ok(child)) => match finish_child(child, deadline).0 {
            Ended::Code(0) => Support::yes_because(format!("{what} returned our pid")),
            Ended::Code(COMPAT_OFF_ENOSYS) => Support::no(format!("{what} returned ENOSYS")),
            Ended::Code(code) => {
                Support::no(format!("{what} returned an unexpected value (exit {code})"))
            }
            Ended::Signal(sig) if sig == libc::SIGSEGV => {
                Support::no(format!("{what} raised SIGSEGV{off_by_signal}"))
            }
            Ended::Signal(sig) => {
                Support::no(format!("{what} killed the child with {}", signal_name(sig)))
            }
            Ended::TimedOut => Support::no(format!("{what} hung")),
            Ended::Lost => Support::no(format!("{what}: the child vanished without a result")),
        },
    }
}

fn finish_ia32_trial(child: Option<Result<Child, i32>>, deadline: Instant) -> Support {
    finish_compat_trial(
        child,
        deadline,
        "int 0x80 getpid",
        " (IA32 emulation not built in, or disabled with ia32_emulation=0)",
    )
}

fn spawn_x32_trial() -> Option<Result<Child, i32>> {
    #[cfg(target_arch = "x86_64")]
    {
        Some(spawn_child(|_rep| {
            const X32_SYSCALL_BIT: libc::c_long = 0x4000_0000;
            // SAFETY: getpid takes no arguments; through the x32 table it is the same call.
            let got = unsafe { libc::syscall(libc::SYS_getpid | X32_SYSCALL_BIT) };
            let errno = last_errno();
            // SAFETY: getpid cannot fail.
            let pid = libc::c_long::from(unsafe { libc::getpid() });
            if got == pid {
                0
            } else if got == -1 && errno == libc::ENOSYS {
                COMPAT_OFF_ENOSYS
            } else {
                COMPAT_WRONG
            }
        }))
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        None
    }
}

fn finish_x32_trial(child: Option<Result<Child, i32>>, deadline: Instant) -> Support {
    finish_compat_trial(child, deadline, "x32 getpid (nr | 0x40000000)", "")
}

/// Value of `name=` on the kernel command line.
fn cmdline_param(name: &str) -> Option<String> {
    let cmdline = fs::read_to_string("/proc/cmdline").ok()?;
    parse_cmdline_param(&cmdline, name)
}

fn parse_cmdline_param(cmdline: &str, name: &str) -> Option<String> {
    cmdline
        .split_whitespace()
        .take_while(|w| *w != "--") // what follows `--` goes to init
        .filter_map(|w| w.split_once('='))
        .filter(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
        .last()
}

// ---------------------------------------------------------------------------------------------
// Newer syscalls
// ---------------------------------------------------------------------------------------------

/// Newer syscalls, each called with arguments the kernel rejects before acting.
#[derive(Debug, Clone, Serialize)]
pub struct Syscalls {
    /// `mount_setattr` (5.12): recursive read-only binds in one call.
    pub mount_setattr: Support,
    /// `open_tree` (5.2): detached bind mounts.
    pub open_tree: Support,
    /// `close_range` (5.9): closing inherited fds in one call.
    pub close_range: Support,
    /// `pidfd_open` (5.3): race-free signalling of the sandbox.
    pub pidfd_open: Support,
    /// `clone3` (5.3).
    pub clone3: Support,
}

/// Classifies the errno of a deliberately invalid call.
fn classify_probe(rc: libc::c_long, errno: i32, name: &str) -> Support {
    if rc >= 0 {
        return Support::yes_because(format!("{name} unexpectedly accepted invalid arguments"));
    }
    match errno {
        libc::ENOSYS => Support::no(format!(
            "{name} returns ENOSYS: the kernel is too old (or a seccomp filter hides it)"
        )),
        libc::EPERM => Support::no(format!("{name} returns EPERM: a seccomp filter denies it")),
        _ => Support::yes(),
    }
}

fn probe_mount_setattr() -> (libc::c_long, i32) {
    // SAFETY: a NULL attr with size 0 is rejected (EINVAL) before any memory is read.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            -1 as libc::c_int,
            std::ptr::null::<libc::c_char>(),
            0u32,
            std::ptr::null::<u8>(),
            0usize,
        )
    };
    (rc, last_errno())
}

/// Whether `mount_setattr(2)` exists (one syscall; fine on the hot path).
pub fn mount_setattr_available() -> bool {
    let (rc, errno) = probe_mount_setattr();
    classify_probe(rc, errno, "mount_setattr").available
}

fn detect_syscalls() -> Syscalls {
    let (rc, e) = probe_mount_setattr();
    let mount_setattr = classify_probe(rc, e, "mount_setattr");
    // SAFETY: all-ones flags are rejected (EINVAL) before the NULL path is read.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            -1 as libc::c_int,
            std::ptr::null::<libc::c_char>(),
            u32::MAX,
        )
    };
    let open_tree = classify_probe(rc, last_errno(), "open_tree");
    // SAFETY: first > last is rejected with EINVAL; no fd is closed.
    let rc = unsafe { libc::syscall(libc::SYS_close_range, u32::MAX, 0u32, 0u32) };
    let close_range = classify_probe(rc, last_errno(), "close_range");
    // SAFETY: pid 0 is rejected with EINVAL; no fd is created.
    let rc = unsafe { libc::syscall(libc::SYS_pidfd_open, 0 as libc::pid_t, 0u32) };
    let pidfd_open = classify_probe(rc, last_errno(), "pidfd_open");
    // SAFETY: a NULL clone_args with size 0 is rejected (EINVAL) before anything is read.
    let rc = unsafe { libc::syscall(libc::SYS_clone3, std::ptr::null::<u8>(), 0usize) };
    let clone3 = classify_probe(rc, last_errno(), "clone3");
    Syscalls {
        mount_setattr,
        open_tree,
        close_range,
        pidfd_open,
        clone3,
    }
}

// ---------------------------------------------------------------------------------------------
// cgroups
// ---------------------------------------------------------------------------------------------

/// One line of /proc/self/mountinfo (proc(5)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountInfo {
    /// Mount id.
    pub id: u32,
    /// Parent mount id.
    pub parent: u32,
    /// Root of the mount within its filesystem (for cgroup fs: relative to our cgroup ns).
    pub root: String,
    /// Mount point (octal escapes decoded).
    pub mount_point: String,
    /// Per-mount options (`rw`, `nosuid`, ...).
    pub mount_options: Vec<String>,
    /// Filesystem type (`cgroup2`, `cgroup`, ...).
    pub fs_type: String,
    /// Mount source.
    pub source: String,
    /// Per-superblock options (for cgroup v1: the controllers).
    pub super_options: Vec<String>,
}

/// Decodes mountinfo's `\040`-style octal escapes.
pub(crate) fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') as u32 * 64
                + (b[i + 2] - b'0') as u32 * 8
                + (b[i + 3] - b'0') as u32;
            if let Ok(byte) = u8::try_from(v) {
                out.push(byte);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses /proc/self/mountinfo; malformed lines are skipped.
pub fn parse_mountinfo(text: &str) -> Vec<MountInfo> {
    text.lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let l: Vec<&str> = left.split(' ').collect();
            let r: Vec<&str> = right.split(' ').collect();
            if l.len() < 6 || r.len() < 2 {
                return None;
            }
            Some(MountInfo {
                id: l[0].parse().ok()?,
                parent: l[1].parse().ok()?,
                root: unescape_mountinfo(l[3]),
                mount_point: unescape_mountinfo(l[4]),
                mount_options: l[5].split(',').map(str::to_string).collect(),
                fs_type: r[0].to_string(),
                source: unescape_mountinfo(r[1]),
                super_options: r
                    .get(2)
                    .map(|o| o.split(',').map(str::to_string).collect())
                    .unwrap_or_default(),
            })
        })
        .collect()
}

/// One line of /proc/self/cgroup (cgroups(7)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcCgroup {
    /// Hierarchy id; 0 for the v2 unified hierarchy.
    pub hierarchy: u32,
    /// Controllers bound to the hierarchy (empty for v2; `name=systemd` for named ones).
    pub controllers: Vec<String>,
    /// Our cgroup's path, relative to the hierarchy's root (in our cgroup namespace).
    pub path: String,
}

/// Parses /proc/self/cgroup; malformed lines are skipped.
pub fn parse_proc_cgroup(text: &str) -> Vec<ProcCgroup> {
    text.lines()
        .filter_map(|line| {
            let mut parts = line.splitn(3, ':');
            let hierarchy = parts.next()?.parse().ok()?;
            let controllers = parts.next()?;
            let path = parts.next()?;
            Some(ProcCgroup {
                hierarchy,
                controllers: controllers
                    .split(',')
                    .filter(|c| !c.is_empty())
                    .map(str::to_string)
                    .collect(),
                path: path.to_string(),
            })
        })
        .collect()
}

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
    // SAFETY: `c` is a live NUL-terminated path.
    let rc = unsafe { libc::faccessat(libc::AT_FDCWD, c.as_ptr(), libc::W_OK, libc::AT_EACCESS) };
    if rc == 0 {
        return Support::yes();
    }
    let errno = last_errno();
    Support::no(match errno {
        libc::EROFS => format!("{} is on a read-only mount", path.display()),
        libc::EACCES | libc::EPERM => {
            use std::os::unix::fs::MetadataExt;
            let owner = fs::metadata(path).map(|m| m.uid()).ok();
            match owner {
                Some(o) => format!(
                    "{} is owned by uid {o} and not delegated to uid {euid}",
                    path.display()
                ),
                None => format!("{} is not writable by uid {euid}", path.display()),
            }
        }
        libc::ENOENT => format!("{} does not exist", path.display()),
        _ => format!("{} is not writable: {}", path.display(), errno_text(errno)),
    })
}

impl Cgroups {
    fn detect(euid: u32) -> Cgroups {
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
        let (limits_backend, limits_reason) = choose_limits_backend(v2.as_ref(), &v1);
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

fn choose_limits_backend(v2: Option<&CgroupV2>, v1: &[CgroupV1]) -> (LimitsBackend, String) {
    const NEEDED: [&str; 2] = ["memory", "pids"];
    let mut why = Vec::new();
    match v2 {
        Some(v2) => {
            let missing: Vec<&str> = NEEDED
                .iter()
                .copied()
                .filter(|c| !v2.controllers.iter().any(|have| have == c))
                .collect();
            if !missing.is_empty() {
                why.push(format!(
                    "cgroup v2 at {} lacks the {} controller(s) in our cgroup",
                    v2.mount_point,
                    missing.join(", ")
                ));
            } else if !v2.delegated.available {
                why.push(format!(
                    "cgroup v2 is not delegated to us: {}",
                    v2.delegated.reason.as_deref().unwrap_or("not writable")
                ));
            } else {
                return (
                    LimitsBackend::CgroupV2,
                    format!(
                        "cgroup v2 {} is writable with memory and pids",
                        v2.dir.as_deref().unwrap_or(&v2.mount_point)
                    ),
                );
            }
        }
        None => why.push("no cgroup v2 mount".to_string()),
    }
    let mut v1_ok = true;
    for c in NEEDED {
        match v1.iter().find(|h| h.controllers.iter().any(|x| x == c)) {
            Some(h) if h.writable.available => {}
            Some(h) => {
                v1_ok = false;
                why.push(format!(
                    "v1 {c}: {}",
                    h.writable.reason.as_deref().unwrap_or("not writable")
                ));
            }
            None => {
                v1_ok = false;
                why.push(format!("no v1 {c} hierarchy"));
            }
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

// ---------------------------------------------------------------------------------------------
// sysctls
// ---------------------------------------------------------------------------------------------

/// Attack-surface sysctls (absent = `None`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Sysctls {
    /// `dev.tty.legacy_tiocsti` (6.2+): 1 = TIOCSTI may inject input into a terminal.
    pub legacy_tiocsti: Option<i64>,
    /// `kernel.io_uring_disabled` (6.6+): 0 all, 1 only `io_uring_group`/CAP_SYS_ADMIN, 2 none.
    pub io_uring_disabled: Option<i64>,
    /// `kernel.yama.ptrace_scope`: 0 classic, 1 descendants only, 2 admin only, 3 none.
    pub ptrace_scope: Option<i64>,
    /// `kernel.unprivileged_bpf_disabled`: 0 allowed, 1/2 denied.
    pub unprivileged_bpf_disabled: Option<i64>,
    /// `kernel.perf_event_paranoid`: -1 .. 2 (3/4 on Debian/Android: denied).
    pub perf_event_paranoid: Option<i64>,
}

impl Sysctls {
    fn read() -> Sysctls {
        Sysctls {
            legacy_tiocsti: read_sysctl_int("dev/tty/legacy_tiocsti"),
            io_uring_disabled: read_sysctl_int("kernel/io_uring_disabled"),
            ptrace_scope: read_sysctl_int("kernel/yama/ptrace_scope"),
            unprivileged_bpf_disabled: read_sysctl_int("kernel/unprivileged_bpf_disabled"),
            perf_event_paranoid: read_sysctl_int("kernel/perf_event_paranoid"),
        }
    }
}

/// Parses a single-integer sysctl value (`"1\n"`, `" -1"`).
pub fn parse_sysctl_int(text: &str) -> Option<i64> {
    text.trim().parse().ok()
}

/// Reads /proc/sys/`rel` as an integer; `None` if absent or not an integer.
fn read_sysctl_int(rel: &str) -> Option<i64> {
    fs::read_to_string(Path::new("/proc/sys").join(rel))
        .ok()
        .as_deref()
        .and_then(parse_sysctl_int)
}

// ---------------------------------------------------------------------------------------------
// The degradation ladder
// ---------------------------------------------------------------------------------------------

/// Whether one layer can be enforced by this caller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "kebab-case")]
pub enum LayerStatus {
    /// Fully enforceable.
    Available,
    /// Enforceable, but weaker than on a fully capable host.
    Degraded {
        /// Why.
        reason: String,
        /// What is weaker.
        lost: String,
    },
    /// Cannot be enforced here.
    Unavailable {
        /// Why.
        reason: String,
        /// The guarantee lost without it.
        lost: String,
    },
}

impl LayerStatus {
    /// Available or degraded.
    pub fn enforceable(&self) -> bool {
        !matches!(self, LayerStatus::Unavailable { .. })
    }
}

/// One layer of a profile with its status.
#[derive(Debug, Clone, Serialize)]
pub struct LayerReport {
    /// The layer.
    pub layer: Layer,
    /// Its status here.
    #[serde(flatten)]
    pub status: LayerStatus,
}

/// What `--best-effort` leaves of a profile that cannot be enforced.
#[derive(Debug, Clone, Serialize)]
pub struct Fallback {
    /// The layers that still apply.
    pub layers: Vec<Layer>,
    /// The guarantees lost, one sentence each.
    pub lost: Vec<String>,
    /// The strongest weaker profile that is fully enforceable here.
    pub nearest_profile: Option<Profile>,
}

/// One rung of the ladder: a profile, as this caller could run it.
#[derive(Debug, Clone, Serialize)]
pub struct Rung {
    /// The profile.
    pub profile: Profile,
    /// Every layer is available or degraded.
    pub enforceable: bool,
    /// Each layer of the profile and its status.
    pub layers: Vec<LayerReport>,
    /// Weakened-but-enforced layers, one sentence each.
    pub degraded: Vec<String>,
    /// For a profile that cannot be enforced: what `--best-effort` would give.
    pub fallback: Option<Fallback>,
}

/// The reason given for a namespace layer that fails only because the user namespace does.
pub const USERNS_DEPENDENT: &str = "created inside the user namespace, which fails (see user-ns)";

const NAMESPACE_LAYERS: [Layer; 7] = [
    Layer::UserNs,
    Layer::MountNs,
    Layer::PidNs,
    Layer::NetNs,
    Layer::IpcNs,
    Layer::UtsNs,
    Layer::CgroupNs,
];

/// The guarantee a missing layer takes away.
fn lost_without(layer: Layer, f: &Features) -> String {
    let landlock_net = f.landlock.has("net", "connect_tcp");
    match layer {
        Layer::UserNs if f.caller.is_root => "no namespaces at all (the launcher creates every \
             namespace inside the user namespace): the agent sees the whole host filesystem, \
             limited only by Landlock's allow-list if present, shares the host network, pids, IPC \
             and hostname, and keeps host uid 0, so only the caps layer and Landlock separate it \
             from the host"
            .into(),
        Layer::UserNs => "no namespaces at all (an unprivileged caller needs the user namespace \
             for every other one): the agent sees the whole host filesystem, limited only by \
             Landlock's allow-list if present (read/exec on system dirs, read on /etc and /proc, \
             writes only to the workspace, /tmp and --rw paths; the host /tmp is shared), shares \
             the host network, pids (it sees your processes and can signal those of your uid), \
             IPC and hostname, and runs as your uid"
            .into(),
        Layer::MountNs => "no private root: the agent sees the host filesystem; only Landlock \
             (if enabled) restricts it"
            .into(),
        Layer::PidNs => "shares the host pid namespace: it sees every process in /proc and can \
             signal those of its uid"
            .into(),
        Layer::NetNs if landlock_net => "shares the host network (LAN, internet, host loopback \
             services); in full, Landlock still denies TCP bind/connect"
            .into(),
        Layer::NetNs => "shares the host network: it can reach the LAN, the internet and \
             services on the host's loopback"
            .into(),
        Layer::IpcNs => "shares SysV IPC and POSIX message queues with the host".into(),
        Layer::UtsNs => "shares (and, with CAP_SYS_ADMIN, could change) the hostname".into(),
        Layer::CgroupNs => "sees the host's cgroup paths".into(),
        Layer::Hygiene => "inherits fds, the whole environment and the controlling terminal".into(),
        Layer::Landlock => "no filesystem allow-list: inside the private root the agent may \
             write everything mounted writable and read everything bound in (the mount-ns root \
             still hides the rest of the host); no TCP or scope restrictions"
            .into(),
        Layer::Caps => "keeps its capabilities inside the user namespace (raw sockets, mounts \
             in its namespaces)"
            .into(),
        Layer::NoNewPrivs => "setuid binaries could raise privileges".into(),
        Layer::Seccomp if f.compat.ia32.available => "no syscall filter: mount, ptrace, unshare \
             (nested user namespaces expose kernel attack surface), bpf, keyctl, io_uring and the \
             live i386 `int 0x80` entry point stay reachable; caps and no_new_privs still apply"
            .into(),
        Layer::Seccomp => "no syscall filter: mount, ptrace, unshare (nested user namespaces \
             expose kernel attack surface), bpf, keyctl and io_uring stay reachable; caps and \
             no_new_privs still apply"
            .into(),
        Layer::Limits => {
            "no resource limits: fork bombs and memory exhaustion are unmitigated".into()
        }
    }
}

/// The feature names [`Features::feature`] knows (the `AGENTCAGE_TEST_EXPECT` vocabulary):
/// `userns` (works for an unprivileged user), `landlock`, `seccomp`, `ia32` (live), `x32`
/// (live), `cgroup2` (delegated v2 with memory and pids), `cgroup` (v2 or v1 limits),
/// `mount_setattr`.
pub const FEATURE_NAMES: [&str; 8] = [
    "userns",
    "landlock",
    "seccomp",
    "ia32",
    "x32",
    "cgroup2",
    "cgroup",
    "mount_setattr",
];

impl Features {
    /// Whether this caller can enforce `layer`, and if not, why and what is lost.
    pub fn layer_status(&self, layer: Layer) -> LayerStatus {
        let unavailable = |reason: String| LayerStatus::Unavailable {
            reason,
            lost: lost_without(layer, self),
        };
        let trial = &self.userns.as_caller;
        let failed_at = trial.failed_step;
        let userns_reason = || {
            let mut r = trial
                .reason
                .clone()
                .unwrap_or_else(|| "user namespaces fail".into());
            if let Some(fix) = &trial.fix {
                r.push_str("; fix: ");
                r.push_str(fix);
            }
            r
        };
        // Steps up to the id maps decide the user namespace; later ones single out a layer.
        let userns_broken = matches!(
            failed_at,
            Some(
                UsernsStep::Fork
                    | UsernsStep::DropPrivileges
                    | UsernsStep::UnshareUser
                    | UsernsStep::WriteSetgroups
                    | UsernsStep::WriteUidMap
                    | UsernsStep::WriteGidMap
                    | UsernsStep::Killed
                    | UsernsStep::Timeout
            )
        );
        match layer {
            Layer::UserNs if userns_broken => unavailable(userns_reason()),
            l if NAMESPACE_LAYERS.contains(&l) && userns_broken => {
                unavailable(USERNS_DEPENDENT.to_string())
            }
            Layer::UserNs => LayerStatus::Available,
            l if NAMESPACE_LAYERS.contains(&l) => {
                let ns_name = match l {
                    Layer::MountNs => "mount",
                    Layer::PidNs => "pid",
                    Layer::NetNs => "net",
                    Layer::IpcNs => "ipc",
                    Layer::UtsNs => "uts",
                    _ => "cgroup",
                };
                match failed_at {
                    Some(UsernsStep::UnshareNamespaces) if !matches!(trial.namespace.as_deref(), Some(n) if n != ns_name) => {
                        unavailable(userns_reason())
                    }
                    Some(UsernsStep::MakeMountsPrivate | UsernsStep::MountTmpfs)
                        if l == Layer::MountNs =>
                    {
                        unavailable(userns_reason())
                    }
                    Some(UsernsStep::ForkInit | UsernsStep::MountProc) if l == Layer::PidNs => {
                        unavailable(userns_reason())
                    }
                    _ => LayerStatus::Available,
                }
            }
            Layer::Landlock => {
                let ll = &self.landlock;
                if !ll.support.available {
                    return unavailable(ll.support.reason.clone().unwrap_or_default());
                }
                if ll.version < 6 {
                    let gaps: Vec<String> = ll
                        .missing
                        .iter()
                        .filter(|r| r.abi <= 6)
                        .map(|r| format!("{}.{}", r.kind, r.name))
                        .collect();
                    return LayerStatus::Degraded {
                        reason: format!(
                            "Landlock ABI {} (6 covers everything agentcage uses)",
                            ll.version
                        ),
                        lost: format!(
                            "not enforced: {}{}",
                            gaps.join(", "),
                            if ll.version < 2 {
                                " (without REFER, renames across directories are always denied)"
                            } else {
                                ""
                            }
                        ),
                    };
                }
                LayerStatus::Available
            }
            Layer::Seccomp => {
                if self.seccomp.filter.available {
                    LayerStatus::Available
                } else {
                    unavailable(self.seccomp.filter.reason.clone().unwrap_or_default())
                }
            }
            Layer::Limits => match self.cgroups.limits_backend {
                LimitsBackend::CgroupV2 | LimitsBackend::CgroupV1 => LayerStatus::Available,
                LimitsBackend::Rlimits => LayerStatus::Degraded {
                    reason: format!("no cgroup delegation: {}", self.cgroups.limits_reason),
                    lost: "limits by rlimits only: RLIMIT_NPROC counts every process of the host \
                           uid (not just the sandbox), and there is no memory or CPU cap"
                        .into(),
                },
            },
            Layer::Hygiene if !self.syscalls.close_range.available => LayerStatus::Degraded {
                reason: "no close_range".into(),
                lost: "inherited fds are closed one by one (slower, same guarantee)".into(),
            },
            // Capabilities, no_new_privs and hygiene need nothing beyond Linux 3.5.
            _ => LayerStatus::Available,
        }
    }

    /// One rung per profile, weakest first.
    pub fn ladder(&self) -> Vec<Rung> {
        let rungs: Vec<(Profile, Vec<LayerReport>)> = Profile::ALL
            .iter()
            .map(|p| {
                let layers = p
                    .layers()
                    .iter()
                    .map(|layer| LayerReport {
                        layer,
                        status: self.layer_status(layer),
                    })
                    .collect();
                (*p, layers)
            })
            .collect();
        let enforceable: Vec<bool> = rungs
            .iter()
            .map(|(_, layers)| layers.iter().all(|l| l.status.enforceable()))
            .collect();
        rungs
            .iter()
            .enumerate()
            .map(|(i, (profile, layers))| {
                let degraded = layers
                    .iter()
                    .filter_map(|l| match &l.status {
                        LayerStatus::Degraded { reason, lost } => {
                            Some(format!("{}: {reason}; {lost}", l.layer))
                        }
                        _ => None,
                    })
                    .collect();
                let fallback = (!enforceable[i])
                    .then(|| self.fallback(layers, &rungs[..i], &enforceable[..i]));
                Rung {
                    profile: *profile,
                    enforceable: enforceable[i],
                    layers: layers.clone(),
                    degraded,
                    fallback,
                }
            })
            .collect()
    }

    fn fallback(
        &self,
        layers: &[LayerReport],
        weaker: &[(Profile, Vec<LayerReport>)],
        weaker_ok: &[bool],
    ) -> Fallback {
        let kept: Vec<Layer> = layers
            .iter()
            .filter(|l| l.status.enforceable())
            .map(|l| l.layer)
            .collect();
        let missing: LayerSet = LayerSet::of(
            &layers
                .iter()
                .filter(|l| !l.status.enforceable())
                .map(|l| l.layer)
                .collect::<Vec<_>>(),
        );
        // Without the user namespace every namespace is lost at once: say it in one sentence
        // instead of seven.
        let all_ns_lost = missing.has(Layer::UserNs);
        let mut lost = Vec::new();
        for l in layers.iter().filter(|l| !l.status.enforceable()) {
            if all_ns_lost && NAMESPACE_LAYERS.contains(&l.layer) && l.layer != Layer::UserNs {
                continue;
            }
            if let LayerStatus::Unavailable { lost: what, .. } = &l.status {
                lost.push(format!("{}: {what}", l.layer));
            }
        }
        let nearest_profile = weaker
            .iter()
            .zip(weaker_ok)
            .filter(|(_, ok)| **ok)
            .map(|((p, _), _)| *p)
            .next_back();
        Fallback {
            layers: kept,
            lost,
            nearest_profile,
        }
    }

    /// The strongest profile every layer of which can be enforced here.
    pub fn strongest_enforceable(&self) -> Profile {
        self.ladder()
            .iter()
            .filter(|r| r.enforceable)
            .map(|r| r.profile)
            .next_back()
            .unwrap_or(Profile::None)
    }

    /// The features in `names` (from `AGENTCAGE_TEST_EXPECT`: see [`FEATURE_NAMES`]) that are
    /// missing, with reasons.
    /// Unknown names are reported as missing so that a typo cannot pass.
    pub fn missing(&self, names: &[&str]) -> Option<String> {
        let why: Vec<String> = names
            .iter()
            .filter_map(|name| {
                let s = self.feature(name);
                (!s.available)
                    .then(|| format!("{name}: {}", s.reason.unwrap_or_else(|| "missing".into())))
            })
            .collect();
        (!why.is_empty()).then(|| why.join("; "))
    }

    /// One named feature (see [`Features::missing`]).
    pub fn feature(&self, name: &str) -> Support {
        match name {
            "userns" => {
                let t = &self.userns.for_unprivileged;
                if t.works {
                    Support::yes()
                } else {
                    Support::no(t.reason.clone().unwrap_or_default())
                }
            }
            "landlock" => self.landlock.support.clone(),
            "seccomp" => self.seccomp.filter.clone(),
            "ia32" => self.compat.ia32.clone(),
            "x32" => self.compat.x32.clone(),
            "mount_setattr" => self.syscalls.mount_setattr.clone(),
            // cgroup v2 usable for limits: delegated to us, with memory and pids.
            "cgroup2" => match self.cgroups.limits_backend {
                LimitsBackend::CgroupV2 => Support::yes(),
                _ => Support::no(self.cgroups.limits_reason.clone()),
            },
            // Any cgroup backend (v2, or writable v1 memory and pids).
            "cgroup" => match self.cgroups.limits_backend {
                LimitsBackend::Rlimits => Support::no(self.cgroups.limits_reason.clone()),
                _ => Support::yes(),
            },
            other => Support::no(format!("unknown feature name {other:?}")),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::cell::RefCell;

    thread_local! {
        static CHILDREN: RefCell<Vec<libc::pid_t>> = const { RefCell::new(Vec::new()) };
    }

    pub(super) fn note_child(pid: libc::pid_t) {
        CHILDREN.with(|c| c.borrow_mut().push(pid));
    }

    fn knobs() -> UsernsKnobs {
        UsernsKnobs {
            unprivileged_userns_clone: None,
            max_user_namespaces: Some(15000),
            apparmor_restrict_unprivileged_userns: None,
            cap_sys_admin: false,
            seccomp_filtered: false,
            container: None,
        }
    }

    #[test]
    fn hint_names_the_apparmor_knob() {
        let k = UsernsKnobs {
            apparmor_restrict_unprivileged_userns: Some(1),
            ..knobs()
        };
        let h = userns_hint_from(libc::EPERM, &k).unwrap();
        assert!(
            h.contains("kernel.apparmor_restrict_unprivileged_userns=1"),
            "{h}"
        );
        assert!(h.contains("`userns`"), "{h}");
        assert!(
            h.contains("sysctl -w kernel.apparmor_restrict_unprivileged_userns=0"),
            "{h}"
        );
        // The same failure surfaces as EACCES/EPERM at the uid_map write on Ubuntu.
        assert_eq!(userns_hint_from(libc::EACCES, &k).unwrap(), h);
    }

    #[test]
    fn hint_prefers_the_debian_knob_and_skips_knobs_for_cap_sys_admin() {
        let k = UsernsKnobs {
            unprivileged_userns_clone: Some(0),
            apparmor_restrict_unprivileged_userns: Some(1),
            ..knobs()
        };
        let h = userns_hint_from(libc::EPERM, &k).unwrap();
        assert!(h.contains("kernel.unprivileged_userns_clone=0"), "{h}");
        assert!(
            h.contains("sysctl -w kernel.unprivileged_userns_clone=1"),
            "{h}"
        );
        let root = UsernsKnobs {
            cap_sys_admin: true,
            ..k
        };
        let h = userns_hint_from(libc::EPERM, &root).unwrap();
        assert!(!h.contains("unprivileged_userns_clone"), "{h}");
        assert!(!h.contains("apparmor_restrict"), "{h}");
    }

    #[test]
    fn hint_blames_a_container_seccomp_filter() {
        let k = UsernsKnobs {
            seccomp_filtered: true,
            container: Some("docker".into()),
            ..knobs()
        };
        let h = userns_hint_from(libc::EPERM, &k).unwrap();
        assert!(h.contains("seccomp"), "{h}");
        assert!(h.contains("docker"), "{h}");
        assert!(h.contains("--security-opt seccomp="), "{h}");
    }

    #[test]
    fn hint_for_limits_and_unknown_errnos() {
        let zero = UsernsKnobs {
            max_user_namespaces: Some(0),
            ..knobs()
        };
        let h = userns_hint_from(libc::ENOSPC, &zero).unwrap();
        assert!(h.contains("user.max_user_namespaces=0"), "{h}");
        let h = userns_hint_from(libc::ENOSPC, &knobs()).unwrap();
        assert!(h.contains("user.max_user_namespaces=15000"), "{h}");
        assert!(userns_hint_from(libc::EINVAL, &knobs())
            .unwrap()
            .contains("CONFIG_USER_NS"));
        assert_eq!(userns_hint_from(libc::EBADF, &knobs()), None);
        assert_eq!(userns_hint_from(0, &knobs()), None);
    }

    #[test]
    fn trial_outcome_turns_into_words() {
        let k = UsernsKnobs {
            apparmor_restrict_unprivileged_userns: Some(1),
            ..knobs()
        };
        let t = userns_trial_from(1000, Some(UsernsStep::WriteUidMap), libc::EPERM, 0, &k);
        assert!(!t.works);
        assert_eq!(t.errno, Some(libc::EPERM));
        let reason = t.reason.unwrap();
        assert!(
            reason.contains("uid_map") && reason.contains("EPERM"),
            "{reason}"
        );
        assert!(t.fix.unwrap().contains("apparmor"));
        let t = userns_trial_from(
            1000,
            Some(UsernsStep::UnshareNamespaces),
            libc::EPERM,
            libc::CLONE_NEWNET as u32,
            &k,
        );
        assert_eq!(t.namespace.as_deref(), Some("net"));
        let t = userns_trial_from(1000, Some(UsernsStep::Killed), 0, libc::SIGSYS as u32, &k);
        assert!(t.reason.unwrap().contains("SIGSYS"));
        let t = userns_trial_from(1000, None, 0, 0, &k);
        assert!(t.works && t.reason.is_none() && t.failed_step.is_none());
    }

    #[test]
    fn record_round_trips_and_steps_have_codes() {
        let r = Record {
            step: 7,
            errno: -3,
            detail: 0xdead_beef,
        };
        assert_eq!(Record::from_bytes(&r.to_bytes()), r);
        for s in UsernsStep::ORDER {
            assert_eq!(UsernsStep::from_code(s.code()), Some(s));
        }
        assert_eq!(UsernsStep::from_code(99), None);
    }

    #[test]
    fn sysctl_values_parse() {
        assert_eq!(parse_sysctl_int("1\n"), Some(1));
        assert_eq!(parse_sysctl_int("  -1\n"), Some(-1));
        assert_eq!(parse_sysctl_int("96365"), Some(96365));
        assert_eq!(parse_sysctl_int(""), None);
        assert_eq!(parse_sysctl_int("4096\t8192"), None);
        assert_eq!(parse_sysctl_int("yes"), None);
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
    fn cmdline_params_stop_at_the_init_separator() {
        let c = "console=ttyS0 ia32_emulation=0 quiet -- ia32_emulation=1";
        assert_eq!(parse_cmdline_param(c, "ia32_emulation"), Some("0".into()));
        assert_eq!(parse_cmdline_param("quiet", "ia32_emulation"), None);
        assert_eq!(
            parse_cmdline_param("lsm=landlock,lockdown,yama", "lsm"),
            Some("landlock,lockdown,yama".into())
        );
    }

    // Samples: this VM (hybrid: v1 controllers + empty v2 at /sys/fs/cgroup/unified), a
    // systemd v2-only desktop, a v1-only (legacy) host and a Docker container with cgroupns.
    const MOUNTINFO_HYBRID: &str = "\
22 27 0:21 / /proc rw,relatime - proc proc rw
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw,discard
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
    const CGROUP_HYBRID: &str = "\
9:name=systemd:/
8:pids:/
4:memory:/process_api/6b9e496e3a641f55cf664606931acb5f
1:cpu:/
0::/
";
    const MOUNTINFO_UNIFIED: &str = "\
24 1 259:2 / / rw,relatime shared:1 - ext4 /dev/nvme0n1p2 rw
35 24 0:30 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
40 24 0:35 / /mnt/my\\040disk rw,relatime shared:20 - ext4 /dev/sdb1 rw
";
    const CGROUP_UNIFIED: &str =
        "0::/user.slice/user-1000.slice/user@1000.service/app.slice/tmux.scope\n";
    const MOUNTINFO_LEGACY: &str = "\
25 20 0:22 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:8 - tmpfs tmpfs ro,mode=755
26 25 0:23 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:9 - cgroup cgroup rw,xattr,name=systemd
29 25 0:26 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:12 - cgroup cgroup rw,cpu,cpuacct
30 25 0:27 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:13 - cgroup cgroup rw,memory
31 25 0:28 / /sys/fs/cgroup/pids rw,nosuid,nodev,noexec,relatime shared:14 - cgroup cgroup rw,pids
";
    const CGROUP_LEGACY: &str = "\
11:pids:/user.slice/user-1000.slice/session-2.scope
7:memory:/user.slice/user-1000.slice/session-2.scope
3:cpu,cpuacct:/user.slice
1:name=systemd:/user.slice/user-1000.slice/session-2.scope
";
    // Docker without cgroupns: the mount shows only the container's subtree.
    const MOUNTINFO_DOCKER: &str = "\
700 650 0:50 /docker/abc123 /sys/fs/cgroup ro,nosuid,nodev,noexec,relatime - cgroup2 cgroup ro
";
    const CGROUP_DOCKER: &str = "0::/docker/abc123\n";

    #[test]
    fn mountinfo_parses_fields_and_escapes() {
        let m = parse_mountinfo(MOUNTINFO_UNIFIED);
        assert_eq!(m.len(), 3);
        assert_eq!(m[1].fs_type, "cgroup2");
        assert_eq!(m[1].mount_point, "/sys/fs/cgroup");
        assert_eq!(
            m[1].super_options,
            ["rw", "nsdelegate", "memory_recursiveprot"]
        );
        assert_eq!(m[2].mount_point, "/mnt/my disk");
        let h = parse_mountinfo(MOUNTINFO_HYBRID);
        assert_eq!(h.len(), 8);
        assert_eq!(h[4].super_options, ["rw", "memory"]);
        assert_eq!((h[4].id, h[4].parent), (35, 31));
        // Garbage is skipped, not a panic.
        assert!(parse_mountinfo("nonsense\n1 2\n - x\n").is_empty());
        assert_eq!(unescape_mountinfo("a\\134b\\011c\\"), "a\\b\tc\\");
    }

    #[test]
    fn proc_cgroup_parses() {
        let c = parse_proc_cgroup(CGROUP_LEGACY);
        assert_eq!(c.len(), 4);
        assert_eq!(c[2].controllers, ["cpu", "cpuacct"]);
        assert_eq!(c[3].controllers, ["name=systemd"]);
        let u = parse_proc_cgroup(CGROUP_UNIFIED);
        assert_eq!(u[0].hierarchy, 0);
        assert!(u[0].controllers.is_empty());
        assert!(u[0].path.ends_with("tmux.scope"));
        // Paths may contain ':'.
        assert_eq!(parse_proc_cgroup("0::/a:b\n")[0].path, "/a:b");
        assert!(parse_proc_cgroup("x:y\nfoo:bar:baz\n").is_empty());
    }

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

    fn support(ok: bool) -> Support {
        if ok {
            Support::yes()
        } else {
            Support::no("test")
        }
    }

    fn v1(ctl: &str, ok: bool) -> CgroupV1 {
        CgroupV1 {
            hierarchy: 1,
            controllers: vec![ctl.into()],
            mount_point: Some(format!("/sys/fs/cgroup/{ctl}")),
            path: "/".into(),
            dir: Some(format!("/sys/fs/cgroup/{ctl}")),
            writable: support(ok),
        }
    }

    #[test]
    fn limits_backend_choice() {
        let v2 = |controllers: &[&str], delegated: bool| CgroupV2 {
            mount_point: "/sys/fs/cgroup".into(),
            path: "/".into(),
            dir: Some("/sys/fs/cgroup".into()),
            controllers: controllers.iter().map(|s| s.to_string()).collect(),
            subtree_control: vec![],
            delegated: support(delegated),
        };
        let full = v2(&["cpu", "memory", "pids"], true);
        assert_eq!(
            choose_limits_backend(Some(&full), &[]).0,
            LimitsBackend::CgroupV2
        );
        let empty = v2(&[], true);
        let v1_ok = [v1("memory", true), v1("pids", true)];
        let (b, why) = choose_limits_backend(Some(&empty), &v1_ok);
        assert_eq!(b, LimitsBackend::CgroupV1);
        assert!(why.contains("lacks the memory, pids"), "{why}");
        let (b, why) = choose_limits_backend(
            Some(&v2(&["memory", "pids"], false)),
            &[v1("memory", false)],
        );
        assert_eq!(b, LimitsBackend::Rlimits);
        assert!(
            why.contains("not delegated") && why.contains("no v1 pids"),
            "{why}"
        );
        assert_eq!(choose_limits_backend(None, &[]).0, LimitsBackend::Rlimits);
    }

    #[test]
    fn landlock_abi_reasons_and_rights() {
        assert!(LandlockAbi::NotBuilt.reason().unwrap().contains("ENOSYS"));
        assert!(LandlockAbi::Disabled.reason().unwrap().contains("lsm="));
        assert!(LandlockAbi::Error { errno: libc::EPERM }
            .reason()
            .unwrap()
            .contains("seccomp"));
        let v3 = LandlockInfo::from_abi(LandlockAbi::Available { version: 3 });
        assert!(v3.has("fs", "truncate") && !v3.has("net", "connect_tcp"));
        assert_eq!(v3.rights.len() + v3.missing.len(), LANDLOCK_RIGHTS.len());
        let off = LandlockInfo::from_abi(LandlockAbi::Disabled);
        assert!(!off.support.available && off.rights.is_empty() && off.version == 0);
        let future = LandlockInfo::from_abi(LandlockAbi::Available { version: 42 });
        assert!(future.support.available && future.support.reason.is_some());
        for abi in 1..=LANDLOCK_ABI_KNOWN {
            assert!(
                LANDLOCK_RIGHTS.iter().any(|r| r.abi == abi),
                "ABI {abi} adds nothing?"
            );
            assert_ne!(landlock_abi_summary(abi), landlock_abi_summary(0));
        }
    }

    #[test]
    fn probe_classification() {
        assert!(classify_probe(-1, libc::EINVAL, "x").available);
        assert!(classify_probe(-1, libc::EBADF, "x").available);
        assert!(!classify_probe(-1, libc::ENOSYS, "x").available);
        assert!(!classify_probe(-1, libc::EPERM, "x").available);
    }

    /// A synthetic host for ladder tests.
    pub(crate) fn fake_features(
        root: bool,
        userns_ok: bool,
        landlock: u32,
        seccomp_ok: bool,
    ) -> Features {
        let k = knobs();
        let trial = if userns_ok {
            userns_trial_from(1000, None, 0, 0, &k)
        } else {
            let k = UsernsKnobs {
                apparmor_restrict_unprivileged_userns: Some(1),
                ..k.clone()
            };
            userns_trial_from(1000, Some(UsernsStep::WriteUidMap), libc::EPERM, 0, &k)
        };
        let abi = if landlock == 0 {
            LandlockAbi::Disabled
        } else {
            LandlockAbi::Available { version: landlock }
        };
        Features {
            kernel: KernelInfo {
                release: "6.8.0-test".into(),
                version: "#1".into(),
                machine: "x86_64".into(),
            },
            caller: Caller {
                uid: if root { 0 } else { 1000 },
                euid: if root { 0 } else { 1000 },
                egid: if root { 0 } else { 1000 },
                is_root: root,
                cap_sys_admin: root,
                initial_user_ns: true,
                seccomp_mode: Some(0),
                no_new_privs: false,
                container: None,
            },
            userns: UserNamespaces {
                as_caller: trial.clone(),
                for_unprivileged: trial,
                knobs: k,
            },
            landlock: LandlockInfo::from_abi(abi),
            seccomp: SeccompInfo {
                filter: support(seccomp_ok),
                caller_mode: Some(0),
                actions: vec!["allow"],
            },
            compat: CompatAbis {
                ia32: Support::yes(),
                ia32_emulation_boot_param: None,
                vsyscall32: Some(1),
                x32: Support::no("test"),
            },
            syscalls: Syscalls {
                mount_setattr: Support::yes(),
                open_tree: Support::yes(),
                close_range: Support::yes(),
                pidfd_open: Support::yes(),
                clone3: Support::yes(),
            },
            cgroups: Cgroups {
                layout: CgroupLayout::Unified,
                v2: None,
                v1: vec![],
                limits_backend: LimitsBackend::Rlimits,
                limits_reason: "no cgroup v2 mount".into(),
            },
            sysctls: Sysctls {
                legacy_tiocsti: Some(0),
                io_uring_disabled: Some(0),
                ptrace_scope: Some(1),
                unprivileged_bpf_disabled: Some(2),
                perf_event_paranoid: Some(2),
            },
            detect_micros: 1,
        }
    }

    #[test]
    fn ladder_on_a_capable_host() {
        let f = fake_features(false, true, 7, true);
        let ladder = f.ladder();
        assert_eq!(ladder.len(), 4);
        assert!(ladder.iter().all(|r| r.enforceable && r.fallback.is_none()));
        assert_eq!(f.strongest_enforceable(), Profile::Full);
        // No cgroup: limits degrade to rlimits, which is said, not hidden.
        let full = &ladder[3];
        assert!(full
            .degraded
            .iter()
            .any(|d| d.starts_with("limits:") && d.contains("RLIMIT_NPROC")));
        assert!(ladder[0].layers.is_empty());
    }

    #[test]
    fn ladder_without_userns_falls_back_to_landlock_only() {
        let f = fake_features(false, false, 7, true);
        let ladder = f.ladder();
        assert!(ladder[0].enforceable);
        for r in &ladder[1..] {
            assert!(!r.enforceable, "{}", r.profile);
            let fb = r.fallback.as_ref().unwrap();
            assert_eq!(fb.nearest_profile, Some(Profile::None));
            assert!(fb.layers.iter().all(|l| !NAMESPACE_LAYERS.contains(l)));
            // One sentence for all namespaces, naming the host-wide exposure.
            assert_eq!(fb.lost.len(), 1, "{:?}", fb.lost);
            assert!(
                fb.lost[0].contains("whole host filesystem"),
                "{:?}",
                fb.lost
            );
        }
        let full_fb = ladder[3].fallback.as_ref().unwrap();
        assert!(
            full_fb.layers.contains(&Layer::Landlock) && full_fb.layers.contains(&Layer::Seccomp)
        );
        match f.layer_status(Layer::UserNs) {
            LayerStatus::Unavailable { reason, .. } => {
                assert!(reason.contains("apparmor"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn ladder_without_landlock_or_seccomp() {
        let f = fake_features(false, true, 0, false);
        let ladder = f.ladder();
        assert!(ladder[1].enforceable);
        assert!(!ladder[2].enforceable && !ladder[3].enforceable);
        let fb = ladder[3].fallback.as_ref().unwrap();
        assert_eq!(fb.nearest_profile, Some(Profile::NsOnly));
        assert!(fb
            .lost
            .iter()
            .any(|l| l.starts_with("landlock:") && l.contains("mount-ns root")));
        assert!(fb
            .lost
            .iter()
            .any(|l| l.starts_with("seccomp:") && l.contains("int 0x80")));
        assert_eq!(f.strongest_enforceable(), Profile::NsOnly);
        // An old Landlock degrades, it does not disable.
        let old = fake_features(false, true, 3, true);
        assert!(old.ladder()[3].enforceable);
        match old.layer_status(Layer::Landlock) {
            LayerStatus::Degraded { lost, .. } => {
                assert!(lost.contains("net.connect_tcp"), "{lost}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn missing_reports_reasons_and_rejects_typos() {
        let f = fake_features(false, false, 0, true);
        let m = f
            .missing(&["seccomp", "landlock", "userns", "landlok"])
            .unwrap();
        assert!(
            m.contains("landlock: Landlock is built in but not enabled"),
            "{m}"
        );
        assert!(m.contains("userns:"), "{m}");
        assert!(m.contains("unknown feature name \"landlok\""), "{m}");
        assert!(!m.contains("seccomp"), "{m}");
        assert_eq!(
            fake_features(false, true, 7, true).missing(&["userns", "landlock", "seccomp", "ia32"]),
            None
        );
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
        // SAFETY: geteuid cannot fail.
        assert_eq!(f.caller.is_root, unsafe { libc::geteuid() } == 0);
        assert_eq!(f.landlock.version, landlock_abi().version());
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
            // SAFETY: signal 0 only checks for existence.
            let rc = unsafe { libc::kill(pid, 0) };
            assert!(
                rc == -1 && last_errno() == libc::ESRCH,
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
            let s = f.feature(name);
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
            f.strongest_enforceable() == Profile::Full
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
