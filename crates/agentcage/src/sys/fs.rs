//! Files and descriptors: open, mkdir, chmod, symlink, read/write, pipes, fd passing, poll.

use std::ffi::CStr;

use libc::{c_int, c_long, c_void};

use super::{check, check_int, Errno};

/// mkdir(2). `EEXIST` is returned as an error; callers decide.
pub fn mkdir(path: &CStr, mode: libc::mode_t) -> Result<(), Errno> {
    // SAFETY: path is a live &CStr.
    check_int(unsafe { libc::mkdir(path.as_ptr(), mode) }).map(drop)
}

/// mknod(2) of an empty regular file (`S_IFREG | mode`, cut by the umask): one syscall
/// where open(O_CREAT) + close are two. `EEXIST` is returned as an error; callers decide.
pub fn mknod_file(path: &CStr, mode: libc::mode_t) -> Result<(), Errno> {
    // SAFETY: path is a live &CStr; a regular file needs no device number.
    check_int(unsafe { libc::mknod(path.as_ptr(), libc::S_IFREG | (mode & 0o7777), 0) }).map(drop)
}

/// rmdir(2).
pub fn rmdir(path: &CStr) -> Result<(), Errno> {
    // SAFETY: path is a live &CStr.
    check_int(unsafe { libc::rmdir(path.as_ptr()) }).map(drop)
}

/// chmod(2).
pub fn chmod(path: &CStr, mode: u32) -> Result<(), Errno> {
    // SAFETY: path is a live &CStr.
    check_int(unsafe { libc::chmod(path.as_ptr(), mode as libc::mode_t) }).map(drop)
}

/// symlink(2).
pub fn symlink(target: &CStr, link: &CStr) -> Result<(), Errno> {
    // SAFETY: both are live &CStr values.
    check_int(unsafe { libc::symlink(target.as_ptr(), link.as_ptr()) }).map(drop)
}

/// open(2); the fd is returned raw and must be closed by the caller.
pub fn open(path: &CStr, flags: c_int, mode: libc::mode_t) -> Result<c_int, Errno> {
    // SAFETY: path is a live &CStr; mode is passed as the variadic third argument.
    check_int(unsafe { libc::open(path.as_ptr(), flags | libc::O_CLOEXEC, mode as libc::c_uint) })
}

/// openat(2) relative to a raw directory fd (`O_CLOEXEC` added); the fd is returned raw
/// and must be closed by the caller. Allocation-free, for the child.
pub fn openat_raw(
    dir: c_int,
    name: &CStr,
    flags: c_int,
    mode: libc::mode_t,
) -> Result<c_int, Errno> {
    // SAFETY: name is a live &CStr; a wrong dir fd only yields EBADF; mode is passed as the
    // variadic fourth argument.
    check_int(unsafe {
        libc::openat(
            dir,
            name.as_ptr(),
            flags | libc::O_CLOEXEC,
            mode as libc::c_uint,
        )
    })
}

/// close(2), ignoring errors (there is nothing useful to do about them).
pub fn close(fd: c_int) {
    // SAFETY: closing an fd we own; a wrong fd only yields EBADF.
    unsafe { libc::close(fd) };
}

/// write(2) of the whole buffer (retries on EINTR and short writes).
pub fn write_all(fd: c_int, mut buf: &[u8]) -> Result<(), Errno> {
    while !buf.is_empty() {
        match write_some(fd, buf)? {
            0 => return Err(Errno(libc::EIO)),
            n => buf = &buf[n..],
        }
    }
    Ok(())
}

/// read(2) until `buf` is full or EOF; returns the number of bytes read.
pub fn read_full(fd: c_int, buf: &mut [u8]) -> Result<usize, Errno> {
    let mut got = 0;
    while got < buf.len() {
        match read_some(fd, &mut buf[got..])? {
            0 => break,
            n => got += n,
        }
    }
    Ok(got)
}

/// The start of a small kernel file (procfs, sysfs) read into `buf`: open, read(2) until `buf`
/// is full, EOF, or (`line`) the first newline has arrived, close. No stat for a size hint and
/// no allocation (`fs::read_to_string` costs a statx, a read per doubling and a heap buffer).
///
/// # Errors
/// The errno of open or read.
pub fn read_head<'a>(path: &CStr, buf: &'a mut [u8], line: bool) -> Result<&'a [u8], Errno> {
    let fd = open(path, libc::O_RDONLY, 0)?;
    let mut got = 0;
    let r = loop {
        if got == buf.len() || (line && buf[..got].contains(&b'\n')) {
            break Ok(got);
        }
        match read_some(fd, &mut buf[got..]) {
            Ok(0) => break Ok(got),
            Ok(n) => got += n,
            Err(e) => break Err(e),
        }
    };
    close(fd);
    Ok(&buf[..r?])
}

/// The names in the directory `path` that start with `prefix`, in readdir order (never `.`
/// or `..`). Only the matches are copied: std's `ReadDir` allocates every entry's name (the
/// mount plan looks for /etc/python* among ~150 entries on every run). Unreadable entries
/// end the listing, as `read_dir(..).flatten()` skips them.
///
/// # Errors
/// The errno of opendir.
pub fn names_with_prefix(path: &CStr, prefix: &[u8]) -> Result<Vec<std::ffi::OsString>, Errno> {
    use std::os::unix::ffi::OsStringExt;
    // SAFETY: path is a live &CStr.
    let dp = unsafe { libc::opendir(path.as_ptr()) };
    if dp.is_null() {
        return Err(Errno::last());
    }
    let mut out = Vec::new();
    loop {
        // SAFETY: dp is a valid DIR*; the entry is read before the next call.
        let ent = unsafe { libc::readdir64(dp) };
        if ent.is_null() {
            break;
        }
        // SAFETY: d_name is NUL-terminated, and lives until the next readdir.
        let name = unsafe { CStr::from_ptr((*ent).d_name.as_ptr()) }.to_bytes();
        if name.starts_with(prefix) && name != b"." && name != b".." {
            out.push(std::ffi::OsString::from_vec(name.to_vec()));
        }
    }
    // SAFETY: dp came from opendir and is closed once.
    unsafe { libc::closedir(dp) };
    Ok(out)
}

/// pipe2(O_CLOEXEC): (read end, write end).
pub fn pipe() -> Result<(c_int, c_int), Errno> {
    let mut fds = [0 as c_int; 2];
    // SAFETY: fds is a live array of two ints.
    check_int(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
    Ok((fds[0], fds[1]))
}

/// pipe2(O_CLOEXEC | O_NONBLOCK): (read end, write end). One syscall instead of a pipe and
/// two fcntl pairs, and no window in which either end blocks.
pub fn pipe_nonblock() -> Result<(c_int, c_int), Errno> {
    let mut fds = [0 as c_int; 2];
    // SAFETY: fds is a live array of two ints.
    check_int(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) })?;
    Ok((fds[0], fds[1]))
}

/// chdir(2).
pub fn chdir(path: &CStr) -> Result<(), Errno> {
    // SAFETY: path is a live &CStr.
    check_int(unsafe { libc::chdir(path.as_ptr()) }).map(drop)
}

/// close_range(first, last, flags) (Linux 5.9+; CLOSE_RANGE_CLOEXEC 5.11+).
pub fn close_range(first: u32, last: u32, flags: u32) -> Result<(), Errno> {
    // SAFETY: integer-only syscall.
    check(unsafe { libc::syscall(libc::SYS_close_range, first, last, flags) })
}

/// Sets or clears FD_CLOEXEC.
pub fn set_cloexec(fd: c_int, on: bool) -> Result<(), Errno> {
    let v = if on { libc::FD_CLOEXEC } else { 0 };
    // SAFETY: integer-only fcntl.
    check_int(unsafe { libc::fcntl(fd, libc::F_SETFD, v) }).map(drop)
}

/// Marks every fd from `first` up as close-on-exec, without closing anything now.
pub fn cloexec_from(first: c_int) -> Result<(), Errno> {
    const CLOSE_RANGE_CLOEXEC: u32 = 1 << 2;
    match close_range(first as u32, u32::MAX, CLOSE_RANGE_CLOEXEC) {
        Ok(()) => Ok(()),
        Err(e) if e.0 == libc::ENOSYS || e.0 == libc::EINVAL => {
            // Older kernels: walk the fd table up to the soft RLIMIT_NOFILE (bounded).
            let max = rlimit_nofile_cur().min(1 << 20);
            for fd in first..max as c_int {
                let _ = set_cloexec(fd, true);
            }
            Ok(())
        }
        Err(e) => Err(e),
    }
}

fn rlimit_nofile_cur() -> u64 {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: rl is a live out-parameter.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) } == 0 {
        rl.rlim_cur
    } else {
        1024
    }
}

/// Closes every fd from `first` up, except `keep` (allocation-free).
pub fn close_from_except(first: c_int, keep: c_int) {
    if keep >= first {
        if keep > first {
            let _ = close_range(first as u32, (keep - 1) as u32, 0);
        }
        let _ = close_range(keep as u32 + 1, u32::MAX, 0);
    } else {
        let _ = close_range(first as u32, u32::MAX, 0);
    }
}

/// dup2(2).
pub fn dup2(old: c_int, new: c_int) -> Result<(), Errno> {
    // SAFETY: integer-only syscall.
    check_int(unsafe { libc::dup2(old, new) }).map(drop)
}

/// Whether the other end of a pipe has hung up (poll with a zero timeout).
pub fn hung_up(fd: c_int) -> bool {
    let mut pfd = libc::pollfd {
        fd,
        events: 0,
        revents: 0,
    };
    // SAFETY: pfd is a live pollfd; nfds is 1.
    let rc = unsafe { libc::poll(&mut pfd, 1, 0) };
    rc > 0 && pfd.revents & (libc::POLLHUP | libc::POLLERR) != 0
}

/// Whether `path` exists (faccessat F_OK, following symlinks).
pub fn exists(path: &CStr) -> bool {
    // SAFETY: path is a live &CStr.
    unsafe { libc::access(path.as_ptr(), libc::F_OK) == 0 }
}

/// One read(2), retrying on EINTR; returns the byte count (0 at EOF).
pub fn read_some(fd: c_int, buf: &mut [u8]) -> Result<usize, Errno> {
    loop {
        // SAFETY: buf is a live slice; the kernel writes at most buf.len() bytes.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast::<c_void>(), buf.len()) };
        if n < 0 {
            let e = Errno::last();
            if e.0 == libc::EINTR {
                continue;
            }
            return Err(e);
        }
        return Ok(n as usize);
    }
}

/// poll(2) one fd for input with a timeout in ms (-1: forever); true when readable.
pub fn poll_in(fd: c_int, timeout_ms: c_int) -> Result<bool, Errno> {
    loop {
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: pfd is a live pollfd; nfds is 1.
        let rc = unsafe { libc::poll(&mut pfd, 1, timeout_ms) };
        if rc < 0 {
            let e = Errno::last();
            if e.0 == libc::EINTR {
                continue;
            }
            return Err(e);
        }
        return Ok(rc > 0);
    }
}

/// Whether `fd` is an open file descriptor of this process (fcntl F_GETFD).
pub fn fd_is_open(fd: c_int) -> bool {
    // SAFETY: integer-only fcntl.
    unsafe { libc::fcntl(fd, libc::F_GETFD) >= 0 }
}

/// socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC): two connected sockets.
pub fn socketpair() -> Result<(c_int, c_int), Errno> {
    let mut fds = [0 as c_int; 2];
    // SAFETY: fds is a live array of two ints.
    check_int(unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    })?;
    Ok((fds[0], fds[1]))
}

/// The control message buffer for one fd (SCM_RIGHTS), aligned like a cmsghdr.
#[repr(C)]
struct FdCmsg {
    hdr: libc::cmsghdr,
    fd: c_int,
}

/// Sends `fd` over the unix socket `sock` (SCM_RIGHTS). Allocation-free.
pub fn send_fd(sock: c_int, fd: c_int) -> Result<(), Errno> {
    let mut byte = [b'f'];
    let mut iov = libc::iovec {
        iov_base: byte.as_mut_ptr().cast(),
        iov_len: 1,
    };
    // SAFETY: zeroed msghdr/cmsghdr are valid plain C structs.
    let mut c: FdCmsg = unsafe { std::mem::zeroed() };
    // SAFETY: CMSG_LEN only computes a length.
    c.hdr.cmsg_len = unsafe { libc::CMSG_LEN(std::mem::size_of::<c_int>() as u32) } as _;
    c.hdr.cmsg_level = libc::SOL_SOCKET;
    c.hdr.cmsg_type = libc::SCM_RIGHTS;
    c.fd = fd;
    // SAFETY: as above.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = (&mut c as *mut FdCmsg).cast();
    msg.msg_controllen = std::mem::size_of::<FdCmsg>() as _;
    // SAFETY: msg points at live iov/control buffers for the duration of the call.
    check(unsafe { libc::sendmsg(sock, &msg, libc::MSG_NOSIGNAL) } as c_long)
}

/// Receives one fd sent with [`send_fd`]; ENODATA when the peer closed without sending.
pub fn recv_fd(sock: c_int) -> Result<c_int, Errno> {
    let mut byte = [0u8];
    let mut iov = libc::iovec {
        iov_base: byte.as_mut_ptr().cast(),
        iov_len: 1,
    };
    // SAFETY: zeroed structs are valid; the kernel fills them.
    let mut c: FdCmsg = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = (&mut c as *mut FdCmsg).cast();
    msg.msg_controllen = std::mem::size_of::<FdCmsg>() as _;
    loop {
        // SAFETY: msg points at live buffers; MSG_CMSG_CLOEXEC marks the received fd.
        let n = unsafe { libc::recvmsg(sock, &mut msg, libc::MSG_CMSG_CLOEXEC) };
        if n < 0 {
            let e = Errno::last();
            if e.0 == libc::EINTR {
                continue;
            }
            return Err(e);
        }
        if n == 0 || c.hdr.cmsg_level != libc::SOL_SOCKET || c.hdr.cmsg_type != libc::SCM_RIGHTS {
            return Err(Errno(libc::ENODATA));
        }
        return Ok(c.fd);
    }
}

/// [`recv_fd`], the fd owned: nothing else holds it, dropping it closes it.
pub fn recv_fd_owned(sock: c_int) -> Result<std::os::fd::OwnedFd, Errno> {
    let fd = recv_fd(sock)?;
    // SAFETY: recvmsg just installed this fd in our table and nothing else owns it.
    Ok(unsafe { std::os::fd::FromRawFd::from_raw_fd(fd) })
}

/// flock(2) (`op`: LOCK_EX, LOCK_SH, LOCK_UN, with LOCK_NB).
///
/// # Errors
/// The errno of flock(2) (EWOULDBLOCK: held elsewhere, with LOCK_NB).
pub fn flock(fd: c_int, op: c_int) -> Result<(), Errno> {
    // SAFETY: integer-only syscall.
    check_int(unsafe { libc::flock(fd, op) }).map(drop)
}

/// Sets O_NONBLOCK on `fd`'s open file description. Only for descriptions this process
/// alone uses (its own pipe ends, a pty master it received): never the caller's terminal.
pub fn set_nonblock(fd: c_int) -> Result<(), Errno> {
    // SAFETY: integer-only fcntl calls.
    unsafe {
        let fl = check_int(libc::fcntl(fd, libc::F_GETFL))?;
        check_int(libc::fcntl(fd, libc::F_SETFL, fl | libc::O_NONBLOCK)).map(drop)
    }
}

/// One write(2), retrying on EINTR; returns the byte count written.
pub fn write_some(fd: c_int, buf: &[u8]) -> Result<usize, Errno> {
    loop {
        // SAFETY: buf is a live slice; the kernel reads at most buf.len() bytes.
        let n = unsafe { libc::write(fd, buf.as_ptr().cast::<c_void>(), buf.len()) };
        if n < 0 {
            let e = Errno::last();
            if e.0 == libc::EINTR {
                continue;
            }
            return Err(e);
        }
        return Ok(n as usize);
    }
}

/// poll(2) on `fds` (timeout in ms, -1: forever); EINTR is returned as an error.
pub fn poll(fds: &mut [libc::pollfd], timeout_ms: c_int) -> Result<usize, Errno> {
    // SAFETY: fds is a live, exclusively borrowed array of pollfd of the given length.
    let rc = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
    check_int(rc).map(|n| n as usize)
}
