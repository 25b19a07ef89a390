//! Terminals: pty, isatty, controlling tty, process groups, non-blocking writes.

use libc::c_int;

use super::{check_int, write_some, Errno};

/// ioctl(fd, TIOCSCTTY, 0): make `fd` the controlling terminal of this new session.
pub fn set_controlling_tty(fd: c_int) -> Result<(), Errno> {
    // SAFETY: integer-only ioctl.
    check_int(unsafe { libc::ioctl(fd, libc::TIOCSCTTY as _, 0) }).map(drop)
}

/// setpgid(0, 0): a new process group led by the caller.
pub fn setpgid_self() -> Result<(), Errno> {
    // SAFETY: integer-only syscall.
    check_int(unsafe { libc::setpgid(0, 0) }).map(drop)
}

/// Makes the caller's process group the foreground group of terminal `fd` (TIOCSPGRP).
pub fn tcsetpgrp_self(fd: c_int) -> Result<(), Errno> {
    // SAFETY: getpgrp cannot fail; TIOCSPGRP reads one pid_t from a live variable.
    let pgrp = unsafe { libc::getpgrp() };
    // SAFETY: as above.
    check_int(unsafe { libc::ioctl(fd, libc::TIOCSPGRP as _, &pgrp) }).map(drop)
}

/// Unlocks a pty master's slave (ioctl TIOCSPTLCK 0).
pub fn unlockpt(master: c_int) -> Result<(), Errno> {
    let zero: c_int = 0;
    // SAFETY: TIOCSPTLCK reads one int from a live variable.
    check_int(unsafe { libc::ioctl(master, libc::TIOCSPTLCK as _, &zero) }).map(drop)
}

/// Opens the slave of a pty master without a path (ioctl TIOCGPTPEER, Linux 4.13+): the
/// slave of *this* master's devpts instance, close-on-exec, not a controlling terminal yet.
pub fn pty_peer(master: c_int) -> Result<c_int, Errno> {
    const TIOCGPTPEER: libc::c_ulong = 0x5441;
    // SAFETY: integer-only ioctl returning a new fd.
    check_int(unsafe {
        libc::ioctl(
            master,
            TIOCGPTPEER as _,
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        )
    })
}

/// isatty(3): whether `fd` is a terminal.
pub fn isatty(fd: c_int) -> bool {
    // SAFETY: integer-only libc call.
    unsafe { libc::isatty(fd) == 1 }
}

/// One write(2) that does not block, on a file description shared with other processes (the
/// caller's terminal): O_NONBLOCK is set for this one call and the previous flags restored
/// right after it, on every path.
pub fn write_nonblocking_shared(fd: c_int, buf: &[u8]) -> Result<usize, Errno> {
    // SAFETY: integer-only fcntl.
    let fl = check_int(unsafe { libc::fcntl(fd, libc::F_GETFL) })?;
    if fl & libc::O_NONBLOCK != 0 {
        return write_some(fd, buf);
    }
    // SAFETY: as above.
    check_int(unsafe { libc::fcntl(fd, libc::F_SETFL, fl | libc::O_NONBLOCK) })?;
    let r = write_some(fd, buf);
    // SAFETY: as above; restores the flags read before.
    unsafe { libc::fcntl(fd, libc::F_SETFL, fl) };
    r
}
