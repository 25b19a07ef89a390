//! The audit netlink socket (NETLINK_AUDIT), for `events/landlock.rs`'s AUDIT_GET.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use super::Errno;

/// One request on a fresh NETLINK_AUDIT socket and its first reply (1 s receive timeout):
/// sends `req` whole, receives into `reply`, returns the reply's length; the socket is
/// closed on return.
///
/// # Errors
/// The errno of socket, send (EMSGSIZE for a short send) or recv (EAGAIN on timeout).
pub fn audit_request(req: &[u8], reply: &mut [u8]) -> Result<usize, Errno> {
    // SAFETY: plain socket(2).
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::NETLINK_AUDIT,
        )
    };
    if fd < 0 {
        return Err(Errno::last());
    }
    // SAFETY: socket just returned this fd and nothing else owns it.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    let tv = libc::timeval {
        tv_sec: 1,
        tv_usec: 0,
    };
    // SAFETY: `tv` is a live timeval of the size given. Best effort: without the timeout
    // the kernel still answers AUDIT_GET at once.
    unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&tv as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as u32,
        )
    };
    // SAFETY: `req` is a live buffer of the length given.
    let sent = unsafe { libc::send(sock.as_raw_fd(), req.as_ptr().cast(), req.len(), 0) };
    if sent < 0 {
        return Err(Errno::last());
    }
    if sent as usize != req.len() {
        return Err(Errno(libc::EMSGSIZE));
    }
    // SAFETY: `reply` is a live, exclusively borrowed buffer of the length given.
    let n = unsafe { libc::recv(sock.as_raw_fd(), reply.as_mut_ptr().cast(), reply.len(), 0) };
    if n < 0 {
        return Err(Errno::last());
    }
    Ok(n as usize)
}
