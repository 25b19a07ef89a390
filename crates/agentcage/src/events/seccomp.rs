//! The seccomp user-notification listener (launcher side) and the child's hand-off.
//!
//! Child (pre-exec, no allocation): [`install`] attaches the events variant of the filter
//! with `SECCOMP_FILTER_FLAG_NEW_LISTENER`, sends the listener fd to the launcher over
//! the socket in [`NOTIF_SOCK`] (SCM_RIGHTS, one message on a SEQPACKET pair: never
//! blocks), and closes both before execve: the listener is never reachable inside.
//!
//! Launcher: [`Listener::start`] runs one thread that receives the fd, then answers every
//! notification with the errno the plain filter returns for the same (nr, arch, args)
//! (emulated, [`agentcage_seccomp::PreparedFilter::denial_errno`]; register values only,
//! never the process's memory) and never `SECCOMP_USER_NOTIF_FLAG_CONTINUE`. Before
//! answering it reads `/proc/PID/exe` and `NSpid` and checks the notification is still
//! valid (`SECCOMP_IOCTL_NOTIF_ID_VALID`: the pid was not reused).
//!
//! If the launcher dies, the kernel fails every pending and later notification with
//! `ENOSYS` (no listener): still refused, nothing hangs.

use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use agentcage_seccomp as sc;

use super::{Event, EventSink};
use crate::error::{SetupError, Step};
use crate::sys::{self, Errno};

/// The child's end of the listener socket (-1: events off). Set by the launcher right
/// before clone and read by the command in its copy of memory.
pub(crate) static NOTIF_SOCK: AtomicI32 = AtomicI32::new(-1);

/// Installs the filter; with events on, the notify variant, whose listener it sends out.
///
/// Runs in the child after clone: async-signal-safe only.
pub(crate) fn install(p: &sc::PreparedFilter) -> Result<(), SetupError> {
    let sock = NOTIF_SOCK.load(Ordering::Relaxed);
    if sock < 0 {
        return sc::install(p).map_err(|e| SetupError::new(Step::Seccomp, 0, Errno(e.0)));
    }
    let fd = sc::install_notify(p).map_err(|e| SetupError::at(Step::Seccomp, 1, 0, Errno(e.0)))?;
    let sent = sys::send_fd(sock, fd);
    sys::close(fd);
    sys::close(sock);
    sent.map_err(|e| SetupError::at(Step::Seccomp, 2, 0, e))
}

/// What `describe_setup_error` says for the sub-steps of [`install`].
pub(crate) fn describe(sub: u32) -> &'static str {
    match sub {
        1 => "install the seccomp filter with a listener for --events (SECCOMP_FILTER_FLAG_NEW_LISTENER; Linux 5.0, one listener per filter chain)",
        2 => "pass the seccomp listener to the launcher (SCM_RIGHTS)",
        _ => "install the seccomp filter",
    }
}

/// The launcher's listener thread; [`Listener::stop`] ends it and returns the count.
pub(crate) struct Listener {
    stop: Arc<AtomicBool>,
    count: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl Listener {
    /// Starts the thread on `sock` (the launcher's end; the thread owns and closes it).
    pub(crate) fn start(
        sock: i32,
        filter: sc::PreparedFilter,
        sink: EventSink,
        exec_id: Option<u64>,
    ) -> Listener {
        let stop = Arc::new(AtomicBool::new(false));
        let count = Arc::new(AtomicU64::new(0));
        let (s, c) = (stop.clone(), count.clone());
        let thread = std::thread::Builder::new()
            .name("agentcage-seccomp-events".into())
            .spawn(move || serve(sock, &filter, &*sink, exec_id, &s, &c))
            .ok();
        if thread.is_none() {
            // No thread: the command's sendmsg still succeeds (the socket buffers it); the
            // listener is closed with the socket and every denial becomes ENOSYS.
            sys::close(sock);
        }
        Listener {
            stop,
            count,
            thread,
        }
    }

    /// Stops the thread (after the sandbox exited) and returns how many denials it saw.
    pub(crate) fn stop(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.count.load(Ordering::Relaxed)
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// poll(2) one fd for input for up to 100 ms: (readable, hung up).
fn wait(fd: i32) -> (bool, bool) {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    if !matches!(sys::poll(std::slice::from_mut(&mut p), 100), Ok(1..)) {
        return (false, false);
    }
    (
        p.revents & libc::POLLIN != 0,
        p.revents & (libc::POLLHUP | libc::POLLERR | libc::POLLNVAL) != 0,
    )
}

fn serve(
    sock: i32,
    filter: &sc::PreparedFilter,
    sink: &(dyn Fn(&Event) + Send + Sync),
    exec_id: Option<u64>,
    stop: &AtomicBool,
    count: &AtomicU64,
) {
    // Phase 1: the listener fd (or EOF: the command failed before, or has no seccomp).
    let listener = loop {
        let (readable, hup) = wait(sock);
        if readable || hup {
            break sys::recv_fd(sock).ok();
        }
        if stop.load(Ordering::Relaxed) {
            break None;
        }
    };
    sys::close(sock);
    let Some(fd) = listener else { return };
    // Test builds: the listener "dies" at once (tests/events.rs: nothing may hang).
    if cfg!(debug_assertions) && std::env::var_os("AGENTCAGE_TEST_DROP_SECCOMP_LISTENER").is_some()
    {
        sys::close(fd);
        return;
    }
    // Phase 2: until every process of the filter is gone (POLLHUP, Linux 5.8) or stop.
    loop {
        let (readable, hup) = wait(fd);
        if readable {
            if answer(fd, filter, exec_id, sink) {
                count.fetch_add(1, Ordering::Relaxed);
            }
            continue;
        }
        if hup || stop.load(Ordering::Relaxed) {
            break;
        }
    }
    sys::close(fd);
}

/// Receives one notification, records its event, then answers it (in that order: when the
/// process goes on, its event is already recorded, so a session's exit frame has it).
fn answer(
    fd: i32,
    filter: &sc::PreparedFilter,
    exec_id: Option<u64>,
    sink: &(dyn Fn(&Event) + Send + Sync),
) -> bool {
    let Ok(n) = sys::notif_recv(fd) else {
        return false; // ENOENT: the caller died (or was signalled) before we received it
    };
    let errno = filter
        .denial_errno(n.data.nr, n.data.arch, n.data.args)
        .unwrap_or(libc::EPERM);
    let exe = std::fs::read_link(format!("/proc/{}/exe", n.pid))
        .ok()
        .map(|p| p.to_string_lossy().into_owned());
    let (ns_pid, ns_sid) = ns_ids(n.pid);
    let valid = sys::notif_id_valid(fd, n.id).is_ok();
    let arch = filter.arch();
    let (name, object, reason) = describe_syscall(arch, n.data.nr, n.data.args);
    sink(&Event {
        time: agentcage_egress::rfc3339_now(),
        layer: "seccomp".into(),
        pid: Some(n.pid),
        ns_pid: ns_pid.filter(|_| valid),
        ns_sid: ns_sid.filter(|_| valid),
        exe: exe.filter(|_| valid),
        object,
        key: format!(
            "{}: {name} is always denied under the full profile's seccomp filter",
            super::NO_KEY
        ),
        reason,
        errno: Some(errno_name(errno)),
        exec_id,
    });
    // ENOENT: the caller is gone.
    let _ = sys::notif_send_errno(fd, n.id, errno);
    true
}

/// The last `NSpid:` and `NSsid:` fields of /proc/PID/status: the pid and session id in
/// the sandbox's namespace.
fn ns_ids(pid: u32) -> (Option<u32>, Option<u32>) {
    let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return (None, None);
    };
    let last = |key: &str| {
        s.lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().last())
            .and_then(|v| v.parse().ok())
    };
    (last("NSpid:"), last("NSsid:"))
}

fn errno_name(e: i32) -> String {
    sc::Errno(e)
        .name()
        .map(str::to_owned)
        .unwrap_or_else(|| format!("errno {e}"))
}

/// (syscall name, object, reason) of a denied call.
fn describe_syscall(arch: sc::Arch, nr: i32, args: [u64; 6]) -> (String, String, String) {
    let row = sc::table::by_nr(arch, nr as u32);
    let name = row.map_or_else(|| format!("syscall {nr}"), |r| r.name.to_owned());
    let lo = |i: usize| args[i] & 0xffff_ffff;
    let object = match name.as_str() {
        "clone" | "unshare" | "setns" => format!(
            "{name}({})",
            clone_flags(lo(if name == "setns" { 1 } else { 0 }))
        ),
        "socket" | "socketpair" => format!(
            "{name}(domain {}, type {:#x}, protocol {})",
            lo(0),
            lo(1),
            lo(2)
        ),
        "ioctl" => format!("ioctl(request {:#x})", lo(1)),
        "personality" => format!("personality({:#x})", lo(0)),
        _ => format!("{name}()"),
    };
    let reason = match row.map(|r| r.rule) {
        Some(sc::Rule::Deny(_, why)) => why.to_owned(),
        Some(sc::Rule::Args(rule)) => arg_reason(rule).to_owned(),
        _ => "denied by the filter".into(),
    };
    (name, object, reason)
}

fn arg_reason(rule: sc::ArgRule) -> &'static str {
    match rule {
        sc::ArgRule::CloneFlags => "new namespaces (CLONE_NEW*) are refused: a nested user namespace hands back a full capability set over new kernel surface",
        sc::ArgRule::IoctlRequest => "TIOCSTI, TIOCLINUX and TIOCSETD can inject input into or reconfigure a terminal",
        sc::ArgRule::SocketDomain | sc::ArgRule::SocketpairDomain => "only unix, inet, inet6 and NETLINK_ROUTE sockets are allowed",
        sc::ArgRule::Personality => "only the personalities Docker allows",
        sc::ArgRule::NoSetidMode { .. } | sc::ArgRule::OpenNoSetidMode { .. } => "a set-id file made inside is a set-id file on the host's disk",
        _ => "TCP Fast Open connects without the hook Landlock's TCP rules check",
    }
}

/// `CLONE_NEW*` names of the low 32 bits of clone/unshare flags.
fn clone_flags(f: u64) -> String {
    const NAMES: [(u64, &str); 7] = [
        (libc::CLONE_NEWUSER as u64, "CLONE_NEWUSER"),
        (libc::CLONE_NEWNS as u64, "CLONE_NEWNS"),
        (libc::CLONE_NEWPID as u64, "CLONE_NEWPID"),
        (libc::CLONE_NEWNET as u64, "CLONE_NEWNET"),
        (libc::CLONE_NEWIPC as u64, "CLONE_NEWIPC"),
        (libc::CLONE_NEWUTS as u64, "CLONE_NEWUTS"),
        (libc::CLONE_NEWCGROUP as u64, "CLONE_NEWCGROUP"),
    ];
    let mut out: Vec<&str> = NAMES
        .iter()
        .filter(|(b, _)| f & b != 0)
        .map(|(_, n)| *n)
        .collect();
    let rest = f & !NAMES.iter().fold(0, |a, (b, _)| a | b);
    let hex;
    if rest != 0 {
        hex = format!("{rest:#x}");
        out.push(&hex);
    }
    if out.is_empty() {
        "0".into()
    } else {
        out.join("|")
    }
}
