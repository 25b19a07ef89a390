//! Network setup of `--net allow` (see `egress.rs`): one rtnetlink request with its ACK, and
//! the listening sockets the sandbox creates in its own network namespace for the launcher.
//! Allocation-free: the child calls these between clone and execve.

use libc::{c_int, c_void};

use super::{check_int, close, Errno};

/// Sends one prepared rtnetlink request (it must ask for an ACK) on a fresh `NETLINK_ROUTE`
/// socket and waits for the kernel's answer: `Ok` for an ACK, the request's errno otherwise.
pub fn rtnetlink_request(msg: &[u8]) -> Result<(), Errno> {
    // SAFETY: plain socket call.
    let fd = check_int(unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::NETLINK_ROUTE,
        )
    })?;
    let r = rtnetlink_on(fd, msg);
    close(fd);
    r
}

fn rtnetlink_on(fd: c_int, msg: &[u8]) -> Result<(), Errno> {
    // SAFETY: a zeroed sockaddr_nl is the kernel's address (pid 0, no groups).
    let mut kernel: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    kernel.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    loop {
        // SAFETY: msg is a live slice and kernel a live sockaddr_nl of the given size.
        let n = unsafe {
            libc::sendto(
                fd,
                msg.as_ptr().cast::<c_void>(),
                msg.len(),
                0,
                (&kernel as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if n >= 0 {
            break;
        }
        let e = Errno::last();
        if e.0 != libc::EINTR {
            return Err(e);
        }
    }
    // An ACK is a nlmsghdr followed by a nlmsgerr (an int error and the request's header).
    let mut buf = [0u8; 512];
    loop {
        // SAFETY: buf is a live, writable buffer of its length.
        let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast::<c_void>(), buf.len(), 0) };
        if n < 0 {
            let e = Errno::last();
            if e.0 == libc::EINTR {
                continue;
            }
            return Err(e);
        }
        let n = n as usize;
        if n < 20 {
            return Err(Errno(libc::EPROTO));
        }
        let ty = u16::from_ne_bytes([buf[4], buf[5]]);
        if ty != libc::NLMSG_ERROR as u16 {
            // Not our answer (nothing else is expected on a fresh socket): keep reading.
            continue;
        }
        let err = i32::from_ne_bytes([buf[16], buf[17], buf[18], buf[19]]);
        return if err == 0 { Ok(()) } else { Err(Errno(-err)) };
    }
}

/// Which socket [`listener`] creates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenOn {
    /// TCP on `[::]:port` with IPV6_V6ONLY off (IPv4 and IPv6).
    AnyDual,
    /// TCP on `0.0.0.0:port` (a network namespace without IPv6).
    AnyV4,
    /// TCP on `127.0.0.1:port`.
    LoopbackTcp,
    /// UDP on `127.0.0.1:port`.
    LoopbackUdp,
}

/// A close-on-exec socket bound (and, for TCP, listening with `backlog`) as `on` says.
pub fn listener(on: ListenOn, port: u16, backlog: c_int) -> Result<c_int, Errno> {
    let (family, ty) = match on {
        ListenOn::AnyDual => (libc::AF_INET6, libc::SOCK_STREAM),
        ListenOn::AnyV4 | ListenOn::LoopbackTcp => (libc::AF_INET, libc::SOCK_STREAM),
        ListenOn::LoopbackUdp => (libc::AF_INET, libc::SOCK_DGRAM),
    };
    // SAFETY: plain socket call.
    let fd = check_int(unsafe { libc::socket(family, ty | libc::SOCK_CLOEXEC, 0) })?;
    let r = bind_listen(fd, on, port, backlog);
    if r.is_err() {
        close(fd);
    }
    r.map(|()| fd)
}

fn bind_listen(fd: c_int, on: ListenOn, port: u16, backlog: c_int) -> Result<(), Errno> {
    let one: c_int = 1;
    let zero: c_int = 0;
    let setopt = |level, name, v: &c_int| {
        // SAFETY: v is a live int of the size given.
        check_int(unsafe {
            libc::setsockopt(
                fd,
                level,
                name,
                (v as *const c_int).cast::<c_void>(),
                std::mem::size_of::<c_int>() as libc::socklen_t,
            )
        })
        .map(drop)
    };
    let rc = match on {
        ListenOn::AnyDual => {
            setopt(libc::IPPROTO_IPV6, libc::IPV6_V6ONLY, &zero)?;
            // SAFETY: a zeroed sockaddr_in6 is in6addr_any.
            let mut a: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
            a.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            a.sin6_port = port.to_be();
            // SAFETY: a is a live sockaddr_in6 of the size given.
            unsafe {
                libc::bind(
                    fd,
                    (&a as *const libc::sockaddr_in6).cast(),
                    std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t,
                )
            }
        }
        _ => {
            if on != ListenOn::LoopbackUdp {
                setopt(libc::SOL_SOCKET, libc::SO_REUSEADDR, &one)?;
            }
            // SAFETY: a zeroed sockaddr_in is 0.0.0.0:0.
            let mut a: libc::sockaddr_in = unsafe { std::mem::zeroed() };
            a.sin_family = libc::AF_INET as libc::sa_family_t;
            a.sin_port = port.to_be();
            if on != ListenOn::AnyV4 {
                a.sin_addr.s_addr = u32::from(std::net::Ipv4Addr::LOCALHOST).to_be();
            }
            // SAFETY: a is a live sockaddr_in of the size given.
            unsafe {
                libc::bind(
                    fd,
                    (&a as *const libc::sockaddr_in).cast(),
                    std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
                )
            }
        }
    };
    check_int(rc)?;
    if on != ListenOn::LoopbackUdp {
        // SAFETY: integer-only call on our socket.
        check_int(unsafe { libc::listen(fd, backlog) })?;
    }
    Ok(())
}

/// Clears O_NONBLOCK on `fd`'s open file description (one the launcher just opened).
pub fn clear_nonblock(fd: c_int) -> Result<(), Errno> {
    // SAFETY: integer-only fcntl calls.
    unsafe {
        let fl = check_int(libc::fcntl(fd, libc::F_GETFL))?;
        check_int(libc::fcntl(fd, libc::F_SETFL, fl & !libc::O_NONBLOCK)).map(drop)
    }
}
