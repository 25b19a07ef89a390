//! Hygiene ops: what the caller's process leaks into the sandbox (descriptors, environment,
//! terminal).
//!
//! TIOCSTI is probed with a NULL pointer: a permitted call fails with EFAULT before any byte
//! is pushed into the terminal's input; a refused one fails first with EPERM or EIO.

use super::{Ctx, Op, Outcome};
use crate::errno::Errno;
use crate::schema::Category::Hygiene;
use crate::sys;

/// The hygiene ops.
pub const OPS: &[Op] = &[
    Op::new(
        "hygiene.fd.inherited",
        "use an inherited file descriptor",
        Hygiene,
        inherited_fd,
    ),
    Op::new(
        "hygiene.env.secret",
        "read a secret from the environment",
        Hygiene,
        env_secret,
    ),
    Op::new(
        "hygiene.env.ancestor",
        "read the secret from an ancestor's environment",
        Hygiene,
        env_ancestor,
    ),
    Op::new(
        "hygiene.tty.open",
        "open the controlling terminal",
        Hygiene,
        open_tty,
    ),
    Op::new(
        "hygiene.tty.tiocsti",
        "TIOCSTI into the terminal",
        Hygiene,
        tiocsti,
    ),
    Op::new(
        "hygiene.tty.stdio",
        "hold the caller's terminal on fd 0, 1 or 2",
        Hygiene,
        stdio_tty,
    ),
];

fn inherited_fd(ctx: &Ctx) -> Outcome {
    let Some(fd) = ctx.inherited_fd else {
        return Outcome::skipped("no --inherited-fd given");
    };
    match sys::fd_flags(fd) {
        Ok(_) => {
            let target = std::fs::read_link(format!("/proc/self/fd/{fd}"))
                .map(|p| p.display().to_string())
                .unwrap_or_else(|_| "?".into());
            Outcome::allowed(format!("fd {fd} is open ({target})"))
        }
        Err(e) => Outcome::blocked(e, &format!("fcntl({fd}, F_GETFD)")),
    }
}

fn env_secret(ctx: &Ctx) -> Outcome {
    let Some(name) = ctx.secret_env.as_deref() else {
        return Outcome::skipped("no --secret-env given");
    };
    match std::env::var_os(name) {
        Some(v) => Outcome::allowed(format!(
            "{name} is set ({} bytes; value not printed)",
            v.len()
        )),
        None => Outcome::Blocked {
            errno: Errno(libc::ENOENT),
            detail: format!("{name} is not in the environment"),
        },
    }
}

/// The parent pid of `pid` (field 4 of /proc/PID/stat, after the parenthesised comm).
fn ppid_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// Walks the probe's ancestors (not the probe itself: that is `hygiene.env.secret`) and reads
/// each one's environment: a launcher or init that keeps the caller's environment in memory
/// leaks it through /proc/PID/environ unless it is out of reach (pid namespace, user
/// namespace, non-dumpable, Landlock's ptrace restriction).
fn env_ancestor(ctx: &Ctx) -> Outcome {
    let Some(name) = ctx.secret_env.as_deref() else {
        return Outcome::skipped("no --secret-env given");
    };
    let needle = format!("{name}=");
    // SAFETY: getppid cannot fail.
    let probe = unsafe { libc::getppid() } as u32;
    let mut pid = ppid_of(probe);
    let mut refused: Option<(Errno, u32)> = None;
    let mut seen = 0;
    // Bounded: a pid chain cannot be longer than the pid space, stop at 64.
    while let Some(p) = pid.filter(|p| *p > 0) {
        seen += 1;
        match std::fs::read(format!("/proc/{p}/environ")) {
            Ok(env) => {
                if env
                    .split(|b| *b == 0)
                    .any(|kv| kv.starts_with(needle.as_bytes()))
                {
                    return Outcome::allowed(format!(
                        "{name} found in the environment of ancestor pid {p} (value not printed)"
                    ));
                }
            }
            Err(e) => {
                refused.get_or_insert((Errno(e.raw_os_error().unwrap_or(libc::EACCES)), p));
            }
        }
        if p == 1 || seen >= 64 {
            break;
        }
        pid = ppid_of(p);
    }
    match refused {
        Some((e, p)) => Outcome::blocked(e, &format!("read /proc/{p}/environ (ancestor)")),
        None => Outcome::Blocked {
            errno: Errno(libc::ENOENT),
            detail: format!("no readable ancestor ({seen} checked) has {name} in its environment"),
        },
    }
}

/// Whether `fd` is the caller's terminal: `None` when the caller did not say which it is.
/// A terminal is identified by its device number (TIOCGDEV, which sees through `/dev/tty`)
/// and the devpts instance it lives in (st_dev of a pty node with that number among `fd` and
/// fds 0-2): the launcher's relay pty comes from the sandbox's own devpts, where numbers
/// restart at 0 and may equal the caller's.
fn is_callers_tty(ctx: &Ctx, fd: i32) -> Option<bool> {
    let (host_dev, host_rdev) = ctx.host_tty?;
    let Ok(rdev) = sys::tty_rdev(fd) else {
        return Some(false);
    };
    if rdev != host_rdev {
        return Some(false);
    }
    let dev = [fd, 0, 1, 2]
        .into_iter()
        .find_map(|f| match sys::fstat_dev_rdev(f) {
            Ok((d, r)) if r == rdev => Some(d),
            _ => None,
        });
    // Same number, instance unknown (only /dev/tty open): err towards ALLOWED.
    Some(dev.is_none() || dev == Some(host_dev))
}

fn open_tty(ctx: &Ctx) -> Outcome {
    use std::os::fd::AsRawFd;
    match sys::open(c"/dev/tty", libc::O_RDWR | libc::O_NOCTTY, 0) {
        // A terminal of the sandbox's own (the launcher's pty relay) is not the caller's.
        Ok(t) if is_callers_tty(ctx, t.as_raw_fd()) == Some(false) => Outcome::blocked(
            Errno(libc::ENXIO),
            "/dev/tty is a terminal of the sandbox's own, not the caller's (--host-tty)",
        ),
        Ok(_) => Outcome::allowed("opened /dev/tty: a controlling terminal is reachable"),
        Err(e) => Outcome::blocked(e, "open /dev/tty"),
    }
}

fn tiocsti(ctx: &Ctx) -> Outcome {
    let tty = sys::open(c"/dev/tty", libc::O_RDWR | libc::O_NOCTTY, 0).ok();
    use std::os::fd::AsRawFd;
    let mut candidates: Vec<(String, i32)> = (0..=2)
        .filter(|fd| sys::isatty(*fd))
        .map(|fd| (format!("fd {fd}"), fd))
        .collect();
    if let Some(t) = &tty {
        candidates.push(("/dev/tty".into(), t.as_raw_fd()));
    }
    if candidates.is_empty() {
        return Outcome::skipped("no terminal: fds 0-2 are not ttys and /dev/tty does not open");
    }
    // Injecting into a pty of the sandbox's own (the launcher's relay) is harmless: only the
    // caller's terminal counts, when the caller said which one it is.
    let own = candidates.len();
    candidates.retain(|(_, fd)| is_callers_tty(ctx, *fd) != Some(false));
    if candidates.is_empty() {
        return Outcome::blocked(
            Errno(libc::ENXIO),
            &format!(
                "none of the {own} terminal fd(s) here is the caller's terminal (--host-tty): \
                 TIOCSTI could only reach the sandbox's own pty"
            ),
        );
    }
    let mut first_refusal = None;
    for (name, fd) in &candidates {
        match sys::tiocsti_null(*fd) {
            Err(e) if e.0 == libc::EFAULT => {
                return Outcome::allowed_by(
                    e,
                    &format!(
                        "TIOCSTI on {name} was permitted (NULL byte pointer: nothing injected)"
                    ),
                );
            }
            Ok(()) => return Outcome::allowed(format!("TIOCSTI on {name} succeeded")),
            Err(e) => {
                first_refusal.get_or_insert((e, name.clone()));
            }
        }
    }
    let (e, name) =
        first_refusal.expect("candidates is non-empty and every iteration records or returns");
    Outcome::blocked(
        e,
        &format!(
            "TIOCSTI on {name} (and {} other terminal fd(s))",
            candidates.len() - 1
        ),
    )
}

/// Whether any of fds 0-2 is the caller's terminal. Not only stdin: a command run with
/// stdin redirected (`</dev/null`, a pipe) used to get the caller's terminal, opened
/// read-write, on fds 1 and 2, and could read the user's typing and change its mode and size.
fn stdio_tty(ctx: &Ctx) -> Outcome {
    if ctx.host_tty.is_none() {
        return Outcome::skipped("no --host-tty given: the caller's terminal is unknown");
    }
    if let Some(fd) = (0..=2).find(|fd| is_callers_tty(ctx, *fd) == Some(true)) {
        return Outcome::allowed(format!("fd {fd} is the caller's terminal (--host-tty)"));
    }
    Outcome::Blocked {
        errno: Errno(libc::ENOTTY),
        detail: "none of fds 0-2 is the caller's terminal (--host-tty)".into(),
    }
}
