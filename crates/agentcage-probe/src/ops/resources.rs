//! Resource ops: bounded process-count and memory exhaustion.
//!
//! Both are bounded (`--fork-limit`, `--mem-limit-mib`) and clean up after themselves: forked
//! helpers die with their parent (PR_SET_PDEATHSIG) and are killed and reaped; memory is
//! touched in a grandchild with oom_score_adj 1000, so an OOM kill hits it and nothing else.

use std::os::fd::AsFd;

use super::{Ctx, Op, Outcome};
use crate::errno::Errno;
use crate::schema::Category::Resources;
use crate::sys::{self, Fork};

/// The resource ops.
pub const OPS: &[Op] = &[
    Op::new(
        "resources.fork.count",
        "fork many processes (bounded)",
        Resources,
        fork_count,
    )
    .with_timeout(15_000),
    Op::new(
        "resources.memory.touch",
        "allocate and touch memory (bounded)",
        Resources,
        memory_touch,
    )
    .with_timeout(15_000),
];

fn fork_count(ctx: &Ctx) -> Outcome {
    let limit = ctx.fork_limit;
    let me = sys::getpid();
    let mut pids = Vec::with_capacity(limit as usize);
    let mut stop = None;
    for _ in 0..limit {
        match sys::fork() {
            Ok(Fork::Child) => {
                // Die with the op child, even if it is killed before it can clean up.
                let _ = sys::set_parent_death_signal(libc::SIGKILL);
                if sys::getppid() == me {
                    sys::pause();
                }
                sys::exit_now(0);
            }
            Ok(Fork::Parent(pid)) => pids.push(pid),
            Err(e) => {
                stop = Some(e);
                break;
            }
        }
    }
    let made = pids.len();
    for pid in &pids {
        let _ = sys::kill(*pid, libc::SIGKILL);
    }
    for pid in &pids {
        let _ = sys::waitpid(*pid, 0);
    }
    match stop {
        None => Outcome::allowed(format!(
            "created {made} of {limit} processes (all killed and reaped)"
        )),
        Some(e) => Outcome::blocked(
            e,
            &format!("fork stopped after {made} of {limit} processes (all killed and reaped)"),
        ),
    }
}

/// MemAvailable from /proc/meminfo, in MiB.
fn mem_available_mib() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kb: u64 = super::proc::status_field(&text, "MemAvailable")?
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb / 1024)
}

const CHUNK_MIB: u64 = 32;
const DONE: u64 = u64::MAX;

fn memory_touch(ctx: &Ctx) -> Outcome {
    // Never push the host towards its own OOM killer: at most half of what is available.
    let (target, note) = match mem_available_mib() {
        Some(avail) if avail / 2 < ctx.mem_limit_mib => (
            avail / 2,
            format!(" (capped at half of MemAvailable {avail} MiB)"),
        ),
        _ => (ctx.mem_limit_mib, String::new()),
    };
    let (r, w) = match sys::pipe() {
        Ok(p) => p,
        Err(e) => return Outcome::skipped(format!("pipe: {e}")),
    };
    let pid = match sys::fork() {
        Err(e) => return Outcome::skipped(format!("fork: {e}")),
        Ok(Fork::Child) => {
            drop(r);
            let _ = sys::set_parent_death_signal(libc::SIGKILL);
            let _ = std::fs::write("/proc/self/oom_score_adj", "1000");
            let mut maps = Vec::new();
            let mut done = 0u64;
            while done < target {
                let mib = CHUNK_MIB.min(target - done);
                match sys::Mapping::anonymous((mib << 20) as usize) {
                    Ok(mut m) => {
                        m.touch(4096);
                        maps.push(m);
                        done += mib;
                        let _ = sys::write_all(w.as_fd(), &done.to_ne_bytes());
                    }
                    Err(e) => {
                        let _ = sys::write_all(w.as_fd(), &(e.0 as u64 | 1 << 63).to_ne_bytes());
                        sys::exit_now(2);
                    }
                }
            }
            let _ = sys::write_all(w.as_fd(), &DONE.to_ne_bytes());
            sys::exit_now(0);
        }
        Ok(Fork::Parent(pid)) => pid,
    };
    drop(w);
    let (mut touched, mut errno) = (0u64, None);
    let mut buf = [0u8; 8];
    // Records are 8 bytes, written atomically; stop at EOF (the grandchild is gone).
    for _ in 0..=(target / CHUNK_MIB + 2) {
        match sys::read(r.as_fd(), &mut buf) {
            Ok(8) => {
                let v = u64::from_ne_bytes(buf);
                if v == DONE {
                    break;
                } else if v & (1 << 63) != 0 {
                    errno = Some(Errno((v & 0xffff_ffff) as i32));
                } else {
                    touched = v;
                }
            }
            _ => break,
        }
    }
    let status = sys::waitpid(pid, 0).map(|(_, s)| s);
    match status {
        Ok(s) if libc::WIFEXITED(s) && libc::WEXITSTATUS(s) == 0 => Outcome::allowed(format!(
            "touched {touched} of {target} MiB{note}, then freed"
        )),
        Ok(s) if libc::WIFSIGNALED(s) => Outcome::blocked(
            Errno(libc::ENOMEM),
            &format!(
                "killed by {} after {touched} of {target} MiB{note} (memory limit / OOM killer)",
                crate::errno::signal_name(libc::WTERMSIG(s))
            ),
        ),
        _ => Outcome::blocked(
            errno.unwrap_or(Errno(libc::ENOMEM)),
            &format!("mmap failed after {touched} of {target} MiB{note}"),
        ),
    }
}
