//! Egress ops (issue #12): what `--net allow` must refuse when no rule names the target.
//! ALLOWED means the probe exchanged something with a listener *outside* the sandbox (the
//! bait on the host's loopback) or got an address for a name it made up; under `--net
//! allow` with no rule each must be BLOCKED (refused, reset by the egress engine, or
//! NXDOMAIN), and without a network namespace they show what the host lets through.
//!
//! Non-destructive and loopback-only: the TCP and UDP ops talk to the bait on 127.0.0.1
//! (`--tcp-port`, `--udp-port`); the DNS op asks the configured resolver only when it is on
//! a loopback address (the sandbox's stub, or the host's local one), and never sends anything
//! elsewhere.

use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, UdpSocket};
use std::time::Duration;

use super::{Ctx, Op, Outcome};
use crate::errno::Errno;
use crate::schema::Category::Net;

/// The egress ops.
pub const OPS: &[Op] = &[
    Op::new(
        "net.egress.literal_ip",
        "egress: TCP to a literal IPv4 address (the host's loopback bait)",
        Net,
        literal_ip,
    ),
    Op::new(
        "net.egress.ipv6_literal",
        "egress: TCP to a literal IPv6 address (v4-mapped host loopback bait)",
        Net,
        ipv6_literal,
    ),
    Op::new(
        "net.egress.udp_datagram",
        "egress: UDP datagram to a non-DNS port (the host's loopback echo bait)",
        Net,
        udp_datagram,
    ),
    Op::new(
        "net.egress.dns_denied",
        "egress: DNS answer for a name no rule allows",
        Net,
        dns_denied,
    ),
];

const WAIT: Duration = Duration::from_millis(1000);

/// Connects to `addr` and reads: the bait accepts and closes (EOF: reached); an egress
/// engine that refuses resets the connection (ECONNRESET) or the connect fails.
fn tcp_exchange(addr: SocketAddr, what: &str) -> Outcome {
    let mut s = match TcpStream::connect_timeout(&addr, WAIT) {
        Ok(s) => s,
        Err(e) => return Outcome::blocked(Errno::from_io(&e), &format!("TCP connect {what}")),
    };
    let _ = s.set_read_timeout(Some(WAIT));
    let mut b = [0u8; 64];
    match s.read(&mut b) {
        Ok(n) => Outcome::allowed(format!(
            "reached the listener at {what} (it accepted and closed after {n} byte(s); \
             nothing sent)"
        )),
        Err(e) => Outcome::blocked(
            Errno::from_io(&e),
            &format!("TCP {what}: the connection was not the bait's"),
        ),
    }
}

fn literal_ip(ctx: &Ctx) -> Outcome {
    let Some(port) = ctx.tcp_port else {
        return Outcome::skipped("no --tcp-port given");
    };
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    tcp_exchange(addr, &addr.to_string())
}

fn ipv6_literal(ctx: &Ctx) -> Outcome {
    let Some(port) = ctx.tcp_port else {
        return Outcome::skipped("no --tcp-port given");
    };
    // An AF_INET6 socket to the bait: ::ffff:127.0.0.1 reaches the IPv4 listener.
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST.to_ipv6_mapped(), port));
    tcp_exchange(addr, &addr.to_string())
}

fn udp_datagram(ctx: &Ctx) -> Outcome {
    let Some(port) = ctx.udp_port else {
        return Outcome::skipped("no --udp-port given");
    };
    let dest = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let r = (|| {
        let s = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?;
        s.set_read_timeout(Some(WAIT))?;
        s.connect(dest)?;
        s.send(b"agentcage-probe")?;
        let mut b = [0u8; 64];
        s.recv(&mut b)
    })();
    match r {
        Ok(_) => Outcome::allowed(format!("the echo bait at udp {dest} answered")),
        Err(e) => Outcome::blocked(Errno::from_io(&e), &format!("UDP datagram to {dest}")),
    }
}

/// The resolver `/etc/resolv.conf` names first, if any (a sandbox without network names
/// none).
fn first_nameserver() -> Option<IpAddr> {
    std::fs::read_to_string("/etc/resolv.conf")
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                let mut w = l.split_whitespace();
                (w.next() == Some("nameserver"))
                    .then(|| w.next().and_then(|a| a.parse().ok()))
                    .flatten()
            })
        })
}

/// A DNS query (A, recursion desired) for `name`.
fn query(id: u16, name: &str) -> Vec<u8> {
    let mut q = Vec::with_capacity(64);
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    q
}

fn dns_denied(_: &Ctx) -> Outcome {
    const NAME: &str = "agentcage-probe.invalid";
    let Some(ns) = first_nameserver() else {
        return Outcome::skipped("no resolver configured in /etc/resolv.conf (no network)");
    };
    if !ns.is_loopback() {
        return Outcome::skipped(format!(
            "the resolver {ns} is not on loopback (the probe sends nothing off the machine)"
        ));
    }
    let dest = SocketAddr::new(ns, 53);
    let id = (std::process::id() & 0xffff) as u16;
    let r = (|| {
        let s = UdpSocket::bind(SocketAddr::new(
            if ns.is_ipv4() {
                IpAddr::V4(Ipv4Addr::UNSPECIFIED)
            } else {
                IpAddr::V6(Ipv6Addr::UNSPECIFIED)
            },
            0,
        ))?;
        s.set_read_timeout(Some(WAIT))?;
        s.connect(dest)?;
        s.send(&query(id, NAME))?;
        let mut b = [0u8; 512];
        let n = s.recv(&mut b)?;
        Ok::<_, std::io::Error>(b[..n].to_vec())
    })();
    let r = match r {
        Ok(r) => r,
        Err(e) => {
            return Outcome::blocked(Errno::from_io(&e), &format!("DNS query {NAME} to {dest}"))
        }
    };
    if r.len() < 12 || r[..2] != id.to_be_bytes() {
        return Outcome::blocked(
            Errno(libc::EPROTO),
            &format!("DNS query {NAME} to {dest}: a malformed answer"),
        );
    }
    let rcode = r[3] & 0x0f;
    let answers = u16::from_be_bytes([r[6], r[7]]);
    match (rcode, answers) {
        (0, 1..) => Outcome::allowed(format!(
            "{dest} answered {answers} record(s) for the made-up name {NAME}"
        )),
        (3, _) => Outcome::blocked(
            Errno(libc::ENOENT),
            &format!("{dest} answered NXDOMAIN for {NAME}"),
        ),
        (c, n) => Outcome::blocked(
            Errno(libc::EACCES),
            &format!("{dest} answered rcode {c} with {n} record(s) for {NAME}"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_bytes() {
        let q = query(0x1234, "a.bc");
        assert_eq!(
            q,
            [0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, b'a', 2, b'b', b'c', 0, 0, 1, 0, 1]
        );
    }
}
