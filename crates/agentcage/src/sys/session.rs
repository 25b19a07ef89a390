//! Raw calls of sessions (`crate::session`, `launch/zygote.rs`): messages with fds
//! (SCM_RIGHTS), the zygote's signalfd, peer credentials, fd checks, the pty size.
//! Allocation-free like the rest of `sys` (the zygote's exec child calls some of them).

use libc::{c_int, c_void};

use super::{check_int, Errno};

/// Most fds one message carries (the exec's stdin, stdout, stderr; a report pipe and a pty
/// master the other way).
pub const MAX_MSG_FDS: usize = 4;

/// The control message buffer for up to [`MAX_MSG_FDS`] fds, aligned like a cmsghdr.
#[repr(C)]
struct FdsCmsg {
    hdr: libc::cmsghdr,
    fds: [c_int; MAX_MSG_FDS],
}

fn cmsg_len(n: usize) -> usize {
    // SAFETY: CMSG_LEN only computes a length.
    unsafe { libc::CMSG_LEN((n * std::mem::size_of::<c_int>()) as u32) as usize }
}

/// sendmsg(2) of `buf` with `fds` attached (SCM_RIGHTS; at most [`MAX_MSG_FDS`]), retrying
/// on EINTR; returns the bytes sent (a stream socket may take fewer than `buf.len()`).
pub fn send_with_fds(sock: c_int, buf: &[u8], fds: &[c_int]) -> Result<usize, Errno> {
    if fds.len() > MAX_MSG_FDS {
        return Err(Errno(libc::EINVAL));
    }
    let mut iov = libc::iovec {
        iov_base: buf.as_ptr() as *mut c_void,
        iov_len: buf.len(),
    };
    // SAFETY: zeroed msghdr/cmsghdr are valid plain C structs.
    let mut c: FdsCmsg = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if !fds.is_empty() {
        c.hdr.cmsg_len = cmsg_len(fds.len()) as _;
        c.hdr.cmsg_level = libc::SOL_SOCKET;
        c.hdr.cmsg_type = libc::SCM_RIGHTS;
        c.fds[..fds.len()].copy_from_slice(fds);
        msg.msg_control = (&mut c as *mut FdsCmsg).cast();
        // SAFETY: CMSG_SPACE only computes a length.
        msg.msg_controllen = unsafe { libc::CMSG_SPACE(std::mem::size_of_val(fds) as u32) } as _;
    }
    loop {
        // SAFETY: msg points at live iov/control buffers for the duration of the call; the
        // kernel only reads them.
        let n = unsafe { libc::sendmsg(sock, &msg, libc::MSG_NOSIGNAL) };
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

/// recvmsg(2) into `buf`; fds that came with the bytes land in `fds` (close-on-exec),
/// `nfds` of them. Returns the byte count (0: the peer closed). Fds beyond `fds`' room are
/// closed (MSG_CTRUNC would otherwise leak them into us unseen).
pub fn recv_with_fds(
    sock: c_int,
    buf: &mut [u8],
    fds: &mut [c_int; MAX_MSG_FDS],
    nfds: &mut usize,
) -> Result<usize, Errno> {
    *nfds = 0;
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // Room for more than we accept, so that a peer sending too many is seen (and its fds
    // closed) rather than truncated.
    #[repr(C)]
    struct Big {
        hdr: libc::cmsghdr,
        fds: [c_int; 32],
    }
    // SAFETY: zeroed structs are valid; the kernel fills them.
    let mut c: Big = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = (&mut c as *mut Big).cast();
    msg.msg_controllen = std::mem::size_of::<Big>() as _;
    let n = loop {
        // SAFETY: msg points at live buffers; MSG_CMSG_CLOEXEC marks the received fds.
        let n = unsafe { libc::recvmsg(sock, &mut msg, libc::MSG_CMSG_CLOEXEC) };
        if n < 0 {
            let e = Errno::last();
            if e.0 == libc::EINTR {
                continue;
            }
            return Err(e);
        }
        break n as usize;
    };
    if msg.msg_controllen as usize >= std::mem::size_of::<libc::cmsghdr>()
        && c.hdr.cmsg_level == libc::SOL_SOCKET
        && c.hdr.cmsg_type == libc::SCM_RIGHTS
    {
        let hdr = cmsg_len(0);
        let count = (c.hdr.cmsg_len as usize).saturating_sub(hdr) / std::mem::size_of::<c_int>();
        for (i, &fd) in c.fds.iter().take(count.min(32)).enumerate() {
            if i < MAX_MSG_FDS {
                fds[i] = fd;
                *nfds = i + 1;
            } else {
                super::close(fd);
            }
        }
    }
    Ok(n)
}

/// [`recv_with_fds`] with the received fds owned and appended to `out` (also when the
/// call returns 0 bytes; on an error none were received).
pub fn recv_with_owned_fds(
    sock: c_int,
    buf: &mut [u8],
    out: &mut impl Extend<std::os::fd::OwnedFd>,
) -> Result<usize, Errno> {
    let mut got = [-1; MAX_MSG_FDS];
    let mut nfds = 0;
    let r = recv_with_fds(sock, buf, &mut got, &mut nfds);
    // SAFETY: recvmsg just installed these fds in our table and nothing else owns them.
    out.extend(
        got[..nfds]
            .iter()
            .map(|&f| unsafe { std::os::fd::FromRawFd::from_raw_fd(f) }),
    );
    r
}

/// A socketpair(AF_UNIX, SOCK_SEQPACKET) with a send buffer of `bytes` on both ends (the
/// zygote's channel: one message per request, as large as an exec's argv and environment).
pub fn seqpacket_pair(bytes: c_int) -> Result<(c_int, c_int), Errno> {
    let (a, b) = super::socketpair()?;
    for fd in [a, b] {
        for opt in [libc::SO_SNDBUF, libc::SO_RCVBUF] {
            // SAFETY: a live int of the right size.
            unsafe {
                libc::setsockopt(
                    fd,
                    libc::SOL_SOCKET,
                    opt,
                    (&bytes as *const c_int).cast(),
                    std::mem::size_of::<c_int>() as u32,
                );
            }
        }
    }
    Ok((a, b))
}

/// SO_PEERCRED of a connected unix socket: (pid, uid, gid) of the peer at connect time.
pub fn peer_cred(sock: c_int) -> Result<(libc::pid_t, u32, u32), Errno> {
    // SAFETY: zeroed ucred is a valid plain C struct.
    let mut cred: libc::ucred = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: cred and len are live and sized for SO_PEERCRED.
    check_int(unsafe {
        libc::getsockopt(
            sock,
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    })?;
    Ok((cred.pid, cred.uid, cred.gid))
}

/// What a passed-in fd is, for the exec's checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FdKind {
    /// A directory (an fd on a host directory would let the sandbox walk the host).
    Directory,
    /// An O_PATH fd.
    Path,
    /// A terminal (never passed in: the exec gets a pty of the sandbox's own).
    Terminal,
    /// Anything else (pipe, socket, regular file, other devices).
    Other,
}

/// Classifies `fd` (fstat, F_GETFL, isatty).
pub fn fd_kind(fd: c_int) -> Result<FdKind, Errno> {
    // SAFETY: integer-only fcntl.
    let fl = check_int(unsafe { libc::fcntl(fd, libc::F_GETFL) })?;
    if fl & libc::O_PATH != 0 {
        return Ok(FdKind::Path);
    }
    // SAFETY: zeroed stat is valid; the kernel fills it.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: st is live.
    check_int(unsafe { libc::fstat(fd, &mut st) })?;
    if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
        return Ok(FdKind::Directory);
    }
    if super::isatty(fd) {
        return Ok(FdKind::Terminal);
    }
    Ok(FdKind::Other)
}

/// A signalfd (close-on-exec) for `set`, which the caller has blocked.
pub fn signalfd(set: &libc::sigset_t) -> Result<c_int, Errno> {
    // SAFETY: set is live.
    check_int(unsafe { libc::signalfd(-1, set, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK) })
}

/// Every signal (for the zygote, which blocks them all: it takes SIGCHLD from a signalfd).
pub fn sigset_all() -> libc::sigset_t {
    // SAFETY: sigfillset initializes the set.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut set);
        set
    }
}

/// Drains a signalfd (non-blocking); true when anything was read.
pub fn drain_signalfd(fd: c_int) -> bool {
    // SAFETY: zeroed siginfo records are valid plain C structs.
    let mut buf: [libc::signalfd_siginfo; 8] = unsafe { std::mem::zeroed() };
    let mut any = false;
    loop {
        // SAFETY: buf is live and its size is passed.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), std::mem::size_of_val(&buf)) };
        if n <= 0 {
            return any;
        }
        any = true;
    }
}

/// TIOCSWINSZ on a terminal (a pty master: the size of the pair).
pub fn set_winsize(fd: c_int, rows: u16, cols: u16) -> Result<(), Errno> {
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: ws is a live winsize.
    check_int(unsafe { libc::ioctl(fd, libc::TIOCSWINSZ, &ws) }).map(drop)
}

/// TIOCGWINSZ: (rows, cols) of a terminal.
pub fn get_winsize(fd: c_int) -> Option<(u16, u16)> {
    // SAFETY: zeroed winsize is valid; the kernel fills it.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: ws is live.
    let rc = unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut ws) };
    (rc == 0).then_some((ws.ws_row, ws.ws_col))
}

/// Closes every fd but those in `keep` (sorted ascending, no duplicates).
pub fn close_all_except(keep: &[c_int]) {
    let mut next: u32 = 0;
    for &k in keep {
        if k < 0 {
            continue;
        }
        let k = k as u32;
        if k > next {
            let _ = super::close_range(next, k - 1, 0);
        }
        next = k + 1;
    }
    let _ = super::close_range(next, u32::MAX, 0);
}

/// kill(2) of a process group, falling back to the process itself when the group does not
/// exist yet (a just-forked exec child that has not called setsid).
pub fn kill_group_or_pid(pid: libc::pid_t, sig: c_int) -> Result<(), Errno> {
    match super::kill(-pid, sig) {
        Err(e) if e.0 == libc::ESRCH => super::kill(pid, sig),
        r => r,
    }
}

/// The stack of a vfork-like child ([`clone_vfork`]) made with mmap(2), not the allocator, so
/// the pre-exec init can make one: `len` usable bytes above one `PROT_NONE` guard page (an
/// overflow faults instead of running into the parent's memory). Pages are faulted in only
/// as the child touches them. Not unmapped on drop: the init and the zygote exec or exit on
/// it; a launcher that goes on calls [`MappedStack::unmap`].
pub struct MappedStack {
    usable: *mut u8,
    len: usize,
}

impl MappedStack {
    /// The usable part, for [`clone_vfork`].
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: `usable..usable+len` is a private read-write mapping of ours, never
        // unmapped, and borrowed mutably through `self` only.
        unsafe { std::slice::from_raw_parts_mut(self.usable, self.len) }
    }
}

impl MappedStack {
    /// Unmaps the stack (with its guard page).
    ///
    /// # Safety
    /// No process may still run on it: a [`clone_vfork`] child that exec'd or exited.
    pub unsafe fn unmap(self) {
        const GUARD: usize = 4096;
        // SAFETY: the mapping made by `map_stack` (guard page below `usable`); the caller
        // guarantees nothing runs on it.
        unsafe { libc::munmap(self.usable.sub(GUARD).cast(), self.len + GUARD) };
    }
}

/// Maps a [`MappedStack`] of `len` bytes (a multiple of the page size) plus its guard page.
///
/// # Errors
/// The errno of mmap or mprotect (ENOMEM).
pub fn map_stack(len: usize) -> Result<MappedStack, Errno> {
    const GUARD: usize = 4096;
    // SAFETY: a fresh anonymous mapping; no existing memory is touched.
    let base = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len + GUARD,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if base == libc::MAP_FAILED {
        return Err(Errno::last());
    }
    // The stack grows down: its lowest page is the guard.
    // SAFETY: the first page of the mapping just made.
    if unsafe { libc::mprotect(base, GUARD, libc::PROT_NONE) } != 0 {
        let e = Errno::last();
        // SAFETY: the mapping just made, not used by anyone.
        unsafe { libc::munmap(base, len + GUARD) };
        return Err(e);
    }
    Ok(MappedStack {
        // SAFETY: within the mapping.
        usable: unsafe { base.cast::<u8>().add(GUARD) },
        len,
    })
}

/// clone(CLONE_VM | CLONE_VFORK): runs `f` in a child process that shares our memory, on
/// `stack`, and returns (its pid) once the child has exec'd or exited, like posix_spawn. No
/// page table is copied, which is most of what a fork of a large process costs.
///
/// # Safety
/// `f` runs in the child on our memory while we are suspended: it must be async-signal-safe
/// (no allocation, no locks), must not unwind, and must end in execve or `_exit`; whatever
/// it writes to memory the parent sees afterwards.
pub unsafe fn clone_vfork<F: FnMut() -> c_int>(
    stack: &mut [u8],
    f: &mut F,
) -> Result<libc::pid_t, Errno> {
    // SAFETY: the caller's contract, unchanged.
    unsafe { clone_vfork_in(0, stack, f) }
}

/// [`clone_vfork`] with more clone flags (`new`: CLONE_NEW*, namespaces the child is born in).
///
/// # Safety
/// As [`clone_vfork`]; returning from `f` is `_exit` with its value.
pub unsafe fn clone_vfork_in<F: FnMut() -> c_int>(
    new: c_int,
    stack: &mut [u8],
    f: &mut F,
) -> Result<libc::pid_t, Errno> {
    extern "C" fn trampoline<F: FnMut() -> c_int>(arg: *mut c_void) -> c_int {
        // SAFETY: `arg` is the `&mut F` below, live until the child execs or exits (the
        // parent is suspended until then: CLONE_VFORK).
        let f = unsafe { &mut *arg.cast::<F>() };
        f()
    }
    // The stack grows down: its top, 16-byte aligned.
    let top = (stack.as_mut_ptr() as usize + stack.len()) & !15;
    // SAFETY: the stack is live and ours for the child's whole life (we are suspended until it
    // execs or exits); the caller upholds the contract of `f`.
    let rc = unsafe {
        libc::clone(
            trampoline::<F>,
            top as *mut c_void,
            new | libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
            (f as *mut F).cast::<c_void>(),
        )
    };
    check_int(rc)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The usable part is writable end to end; the page below it faults (the guard), so a
    /// child that overflows its stack dies instead of writing into the parent's memory.
    #[test]
    fn mapped_stack_is_writable_above_its_guard() {
        let mut s = map_stack(64 * 1024).expect("mmap");
        let slice = s.as_mut_slice();
        assert_eq!(slice.len(), 64 * 1024);
        slice.fill(0xa5);
        assert!(slice.iter().all(|&b| b == 0xa5));
        let below = slice.as_mut_ptr().wrapping_sub(1);
        // SAFETY: the child writes one byte (the guard page must make it fault) and exits.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork");
        if pid == 0 {
            // SAFETY: deliberately the guard page; the fault kills this child only.
            unsafe { std::ptr::write_volatile(below, 1) };
            // SAFETY: _exit in a forked child.
            unsafe { libc::_exit(0) };
        }
        let mut st = 0;
        // SAFETY: our own child.
        assert_eq!(unsafe { libc::waitpid(pid, &mut st, 0) }, pid);
        assert!(
            libc::WIFSIGNALED(st) && libc::WTERMSIG(st) == libc::SIGSEGV,
            "status {st:#x}: the guard page did not fault"
        );
    }
}
