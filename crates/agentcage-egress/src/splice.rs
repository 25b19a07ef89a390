//! Zero-copy relay: splice(2) socket -> pipe -> socket on tokio readiness, one pipe per
//! direction. The bytes never enter user space, which keeps the relay near loopback speed,
//! and an idle connection holds no buffer (pipe pages are allocated only while data is in
//! flight). [`relay`] returns `None` when no pipe could be made (fd limit), so the caller
//! falls back to a copy loop.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use tokio::io::Interest;
use tokio::net::TcpStream;

/// Most bytes moved per splice call (the pipe is grown towards this).
const CHUNK: usize = 256 * 1024;

fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: `fds` is a valid two-int out array for pipe2.
    let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe2 succeeded, so both fds are open and owned by nobody else.
    let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // A bigger pipe means fewer syscalls per MiB; failure (pipe-max-size, quota) is harmless.
    // SAFETY: F_SETPIPE_SZ on a pipe fd we own, with an int argument.
    unsafe { libc::fcntl(w.as_raw_fd(), libc::F_SETPIPE_SZ, CHUNK as libc::c_int) };
    Ok((r, w))
}

fn splice(from: i32, to: i32, len: usize) -> io::Result<usize> {
    // SAFETY: both fds are open for the duration of the call (borrowed from live owners); null
    // offsets are required for sockets and pipes.
    let n = unsafe {
        libc::splice(
            from,
            std::ptr::null_mut(),
            to,
            std::ptr::null_mut(),
            len,
            libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// Writes `buf` to `to` in full.
pub(crate) async fn write_all(to: &TcpStream, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        to.writable().await?;
        match to.try_write(buf) {
            Ok(n) => buf = &buf[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Moves everything `from` sends to `to` until EOF, then shuts `to`'s write side down.
async fn pump(
    from: &TcpStream,
    to: &TcpStream,
    pipe: (OwnedFd, OwnedFd),
    counter: &AtomicU64,
) -> io::Result<()> {
    let (pr, pw) = pipe;
    let (from_fd, to_fd) = (from.as_raw_fd(), to.as_raw_fd());
    loop {
        // Fill the (empty) pipe from the socket.
        let filled = loop {
            from.readable().await?;
            match from.try_io(Interest::READABLE, || {
                splice(from_fd, pw.as_raw_fd(), CHUNK)
            }) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        };
        if filled == 0 {
            return socket2::SockRef::from(to).shutdown(std::net::Shutdown::Write);
        }
        // Drain it into the other socket.
        let mut left = filled;
        while left > 0 {
            to.writable().await?;
            match to.try_io(Interest::WRITABLE, || splice(pr.as_raw_fd(), to_fd, left)) {
                Ok(n) => {
                    left -= n;
                    counter.fetch_add(n as u64, Relaxed);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
    }
}

/// Relays both ways until both sides have closed, or either fails. `None`: no pipes could be
/// made; nothing was relayed and the caller should copy instead.
pub(crate) async fn relay(
    client: &TcpStream,
    upstream: &TcpStream,
    up: &AtomicU64,
    down: &AtomicU64,
) -> Option<()> {
    let (p1, p2) = match (pipe(), pipe()) {
        (Ok(a), Ok(b)) => (a, b),
        _ => return None,
    };
    let a = pump(client, upstream, p1, up);
    let b = pump(upstream, client, p2, down);
    tokio::pin!(a, b);
    tokio::select! {
        r = &mut a => if r.is_ok() { let _ = b.await; },
        r = &mut b => if r.is_ok() { let _ = a.await; },
    }
    Some(())
}
