//! Process ops: other processes' /proc entries, signals, ptrace and process_vm_readv.
//!
//! Ops against "a process outside" use the sentinel the caller started (`--sentinel-pid`,
//! same uid as the caller). Nothing is ever delivered or written: signals use signal 0 (the
//! permission check only), ptrace uses `PTRACE_SEIZE` (no stop; the op child's exit detaches),
//! process_vm_readv reads one byte.

use std::io::Read;

use super::{flatten, Ctx, Op, Outcome};
use crate::errno::Errno;
use crate::schema::Category::Proc;
use crate::sys;

/// The process ops.
pub const OPS: &[Op] = &[
    Op::new(
        "proc.read.pid2_status",
        "read /proc/2/status",
        Proc,
        read_pid2_status,
    ),
    Op::new(
        "proc.ptrace.traceme",
        "ptrace TRACEME",
        Proc,
        ptrace_traceme,
    ),
    Op::new("proc.kill.all", "kill(-1, SIGKILL)", Proc, kill_all),
    Op::new(
        "proc.signal.sentinel",
        "signal a process outside",
        Proc,
        signal_sentinel,
    ),
    Op::new(
        "proc.ptrace.sentinel",
        "ptrace-attach a process outside",
        Proc,
        ptrace_sentinel,
    ),
    Op::new(
        "proc.vm_read.sentinel",
        "process_vm_readv a process outside",
        Proc,
        vm_read_sentinel,
    ),
    Op::new(
        "proc.read.sentinel_environ",
        "read /proc/PID/environ of a process outside",
        Proc,
        read_sentinel_environ,
    ),
    Op::new(
        "proc.read.session_key",
        "read a key of the caller's session keyring",
        Proc,
        read_session_key,
    ),
];

/// A `Key:\tvalue` field of a /proc status file.
pub(crate) fn status_field<'a>(status: &'a str, key: &str) -> Option<&'a str> {
    status.lines().find_map(|l| {
        l.strip_prefix(key)
            .and_then(|r| r.strip_prefix(':'))
            .map(str::trim)
    })
}

/// On the host, pid 2 is the kernel's kthreadd (parent pid 0). In a fresh pid namespace pid
/// 2 is one of the namespace's own processes (the probe itself under agentcage), so reading
/// it proves nothing: that case is BLOCKED with ESRCH, because the host's pid 2 is invisible.
fn read_pid2_status(_: &Ctx) -> Outcome {
    let text = match std::fs::read_to_string("/proc/2/status") {
        Ok(t) => t,
        Err(e) => return Outcome::blocked(Errno::from_io(&e), "read /proc/2/status"),
    };
    let name = status_field(&text, "Name").unwrap_or("?");
    let ppid = status_field(&text, "PPid").unwrap_or("?");
    if ppid == "0" && name == "kthreadd" {
        Outcome::allowed("read the status of the host's pid 2 (kthreadd)")
    } else {
        Outcome::Blocked {
            errno: Errno(libc::ESRCH),
            detail: format!(
                "pid 2 here is {name:?} (PPid {ppid}), a process of this pid namespace; the host's pid 2 (kthreadd) is invisible"
            ),
        }
    }
}

fn ptrace_traceme(_: &Ctx) -> Outcome {
    // The op child becomes traced by the probe; it exits right after, which ends the trace.
    super::gate(sys::ptrace_traceme(), &[], "ptrace(PTRACE_TRACEME)")
}

/// kill(-1, sig) reaches every process the caller may signal except pid 1 of its pid
/// namespace and itself. This op never sends a real signal: it checks each visible pid with
/// signal 0 (the permission check alone), skipping the probe itself (this op child and its
/// parent, which the op stands in for) and pid 1.
fn kill_all(_: &Ctx) -> Outcome {
    let me = sys::getpid();
    let parent = sys::getppid();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        // No /proc to enumerate: ask the kernel directly. Our parent (the probe) counts too.
        return match sys::kill(-1, 0) {
            Ok(()) => Outcome::allowed("kill(-1, 0) found processes to signal (signal 0: nothing delivered; /proc absent, the probe's own parent may be the only one)"),
            Err(e) => Outcome::blocked(e, "kill(-1, 0) (signal 0: nothing delivered)"),
        };
    };
    let (mut reachable, mut refused) = (Vec::new(), 0usize);
    for entry in dir.take(100_000).flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<libc::pid_t>().ok())
        else {
            continue;
        };
        if pid == 1 || pid == me || pid == parent {
            continue;
        }
        match sys::kill(pid, 0) {
            Ok(()) => reachable.push(pid),
            Err(e) if e.0 == libc::EPERM => refused += 1,
            Err(_) => {}
        }
    }
    if !reachable.is_empty() {
        let sample: Vec<String> = reachable.iter().take(5).map(|p| p.to_string()).collect();
        Outcome::allowed(format!(
            "kill(-1, SIGKILL) would reach {} other process(es), e.g. pid {} (checked with signal 0: nothing delivered)",
            reachable.len(),
            sample.join(", ")
        ))
    } else if refused > 0 {
        Outcome::blocked(
            Errno(libc::EPERM),
            &format!(
                "{refused} other process(es) visible, none may be signalled (signal 0 checks)"
            ),
        )
    } else {
        Outcome::blocked(
            Errno(libc::ESRCH),
            "no other process visible besides pid 1 and the probe (signal 0 checks)",
        )
    }
}

fn sentinel(ctx: &Ctx) -> Result<libc::pid_t, Outcome> {
    ctx.sentinel_pid
        .ok_or_else(|| Outcome::skipped("no --sentinel-pid given"))
}

fn signal_sentinel(ctx: &Ctx) -> Outcome {
    flatten(sentinel(ctx).map(|pid| {
        super::gate(
            sys::kill(pid, 0),
            &[],
            &format!("kill({pid}, 0) (signal 0: nothing delivered)"),
        )
    }))
}

fn ptrace_sentinel(ctx: &Ctx) -> Outcome {
    flatten(sentinel(ctx).map(|pid| match sys::ptrace_seize(pid) {
        Ok(()) => Outcome::allowed(format!(
            "PTRACE_SEIZE of pid {pid} succeeded (no stop; detached when the op child exited)"
        )),
        Err(e) => Outcome::blocked(e, &format!("PTRACE_SEIZE pid {pid}")),
    }))
}

/// The start address of the first mapping of `pid`, if its maps file is readable.
fn first_mapping(pid: libc::pid_t) -> Option<usize> {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).ok()?;
    let start = maps.lines().next()?.split('-').next()?;
    usize::from_str_radix(start, 16).ok()
}

fn vm_read_sentinel(ctx: &Ctx) -> Outcome {
    flatten(sentinel(ctx).map(|pid| {
        // Without a readable maps file the address is a guess; EFAULT then still proves the
        // access check (done first, on the whole process) passed.
        let (addr, how) = match first_mapping(pid) {
            Some(a) => (a, "its first mapping"),
            None => (0x1000, "a guessed address (maps unreadable)"),
        };
        let mut byte = [0u8; 1];
        match sys::process_vm_read(pid, addr, &mut byte) {
            Ok(n) => Outcome::allowed(format!("read {n} byte of pid {pid} at {addr:#x} ({how})")),
            Err(e) if e.0 == libc::EFAULT => Outcome::allowed_by(
                e,
                &format!("pid {pid} memory access permitted; {addr:#x} ({how}) unmapped"),
            ),
            Err(e) => Outcome::blocked(e, &format!("process_vm_readv pid {pid}")),
        }
    }))
}

fn read_sentinel_environ(ctx: &Ctx) -> Outcome {
    flatten(sentinel(ctx).map(|pid| {
        let path = format!("/proc/{pid}/environ");
        let mut buf = [0u8; 256];
        match std::fs::File::open(&path).and_then(|mut f| f.read(&mut buf)) {
            Ok(n) => Outcome::allowed(format!("read {n} bytes of {path}")),
            Err(e) => Outcome::blocked(Errno::from_io(&e), &format!("read {path}")),
        }
    }))
}

/// The kernel keyrings are not namespaced: a sandbox that inherits the caller's session
/// keyring reads (and can change) its keys (issue 10, finding 7). The caller put a "user"
/// key named `--session-key` there.
fn read_session_key(ctx: &Ctx) -> Outcome {
    let Some(name) = &ctx.session_key else {
        return Outcome::skipped("no --session-key bait");
    };
    let Ok(desc) = std::ffi::CString::new(name.as_str()) else {
        return Outcome::skipped("--session-key contains a NUL byte");
    };
    let mut buf = [0u8; 256];
    match sys::read_session_key(&desc, &mut buf) {
        Ok(n) => Outcome::allowed(format!(
            "read the caller's key {name:?} ({n} bytes) from the session keyring"
        )),
        Err(e) => Outcome::blocked(e, &format!("find and read key {name:?} in @s")),
    }
}
