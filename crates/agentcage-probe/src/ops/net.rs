//! Network ops: the host's loopback, the outside world (route check only), unix sockets
//! outside, raw/packet/vsock sockets and low ports.
//!
//! No packet ever leaves the machine: the external check is a UDP `connect`, which only
//! looks up a route; the loopback and unix connects send nothing; raw and packet sockets are
//! created and closed unused.

use std::net::{Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use super::{flatten, gate, Ctx, Op, Outcome};
use crate::errno::Errno;
use crate::schema::Category::Net;
use crate::sys;

/// The network ops.
pub const OPS: &[Op] = &[
    Op::new("net.socket.raw_icmp", "socket RAW ICMP", Net, raw_icmp),
    Op::new(
        "net.connect.external",
        "connect 8.8.8.8:53",
        Net,
        external_route,
    ),
    Op::new(
        "net.connect.host_loopback",
        "TCP connect to the host's loopback",
        Net,
        host_loopback,
    ),
    Op::new(
        "net.connect.unix_path",
        "connect to a unix socket outside",
        Net,
        unix_path,
    ),
    Op::new(
        "net.connect.unix_ro",
        "connect to a unix socket under a read-only bind",
        Net,
        unix_ro,
    ),
    Op::new(
        "net.connect.unix_abstract",
        "connect to an abstract unix socket outside",
        Net,
        unix_abstract,
    ),
    Op::new("net.socket.packet", "socket AF_PACKET", Net, packet_socket),
    Op::new("net.socket.vsock", "socket AF_VSOCK", Net, vsock_socket),
    Op::new(
        "net.bind.low_port",
        "bind TCP 127.0.0.1:80",
        Net,
        bind_low_port,
    ),
];

fn raw_icmp(_: &Ctx) -> Outcome {
    gate(
        sys::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_ICMP),
        &[],
        "socket(AF_INET, SOCK_RAW, IPPROTO_ICMP), closed unused",
    )
}

fn external_route(_: &Ctx) -> Outcome {
    const NOTE: &str = "route check only: UDP connect sends no packet";
    let sock = match UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)) {
        Ok(s) => s,
        Err(e) => return Outcome::blocked(Errno::from_io(&e), &format!("UDP socket ({NOTE})")),
    };
    match sock.connect((Ipv4Addr::new(8, 8, 8, 8), 53)) {
        Ok(()) => Outcome::allowed(format!("a route to 8.8.8.8 exists ({NOTE})")),
        Err(e) => Outcome::blocked(
            Errno::from_io(&e),
            &format!("UDP connect 8.8.8.8:53 ({NOTE})"),
        ),
    }
}

fn host_loopback(ctx: &Ctx) -> Outcome {
    let Some(port) = ctx.tcp_port else {
        return Outcome::skipped("no --tcp-port given");
    };
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    match TcpStream::connect_timeout(&addr, Duration::from_millis(1000)) {
        Ok(_) => Outcome::allowed(format!("connected to {addr} (nothing sent)")),
        Err(e) => Outcome::blocked(Errno::from_io(&e), &format!("TCP connect {addr}")),
    }
}

fn unix_path(ctx: &Ctx) -> Outcome {
    flatten((|| {
        let path = ctx
            .unix_path
            .as_deref()
            .ok_or_else(|| Outcome::skipped("no --unix-path given"))?;
        Ok(match UnixStream::connect(path) {
            Ok(_) => Outcome::allowed(format!("connected to {} (nothing sent)", path.display())),
            Err(e) => Outcome::blocked(Errno::from_io(&e), &format!("connect {}", path.display())),
        })
    })())
}

/// Read-only does not stop connect(2): the launcher masks the sockets it finds under `--ro`
/// paths (issue #10, finding 10).
fn unix_ro(ctx: &Ctx) -> Outcome {
    flatten((|| {
        let path = ctx
            .unix_ro_path
            .as_deref()
            .ok_or_else(|| Outcome::skipped("no --unix-ro-path given"))?;
        Ok(match UnixStream::connect(path) {
            Ok(_) => Outcome::allowed(format!("connected to {} (nothing sent)", path.display())),
            Err(e) => Outcome::blocked(Errno::from_io(&e), &format!("connect {}", path.display())),
        })
    })())
}

fn unix_abstract(ctx: &Ctx) -> Outcome {
    flatten((|| {
        let name = ctx
            .abstract_name
            .as_deref()
            .ok_or_else(|| Outcome::skipped("no --abstract given"))?;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())
            .map_err(|e| Outcome::skipped(format!("bad abstract name: {e}")))?;
        Ok(match UnixStream::connect_addr(&addr) {
            Ok(_) => Outcome::allowed(format!("connected to @{name} (nothing sent)")),
            Err(e) => Outcome::blocked(Errno::from_io(&e), &format!("connect @{name}")),
        })
    })())
}

fn packet_socket(_: &Ctx) -> Outcome {
    // Protocol 0: the socket receives nothing until bound to a protocol; closed unused.
    gate(
        sys::socket(libc::AF_PACKET, libc::SOCK_RAW, 0),
        &[],
        "socket(AF_PACKET, SOCK_RAW, 0), closed unused",
    )
}

fn vsock_socket(_: &Ctx) -> Outcome {
    gate(
        sys::socket(libc::AF_VSOCK, libc::SOCK_STREAM, 0),
        &[],
        "socket(AF_VSOCK, SOCK_STREAM), closed unused",
    )
}

fn bind_low_port(_: &Ctx) -> Outcome {
    // The CAP_NET_BIND_SERVICE check comes before the port-in-use check: EADDRINUSE means
    // the bind was permitted. The socket never listens.
    gate(
        sys::bind_tcp_loopback(80),
        &[libc::EADDRINUSE],
        "bind 127.0.0.1:80 (never listened, closed)",
    )
}
