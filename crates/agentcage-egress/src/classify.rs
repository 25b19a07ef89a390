//! Address classifier: which destinations are never dialled unless a rule or pin names them.
//!
//! Checked after resolution on every connection (a name that resolved to a public address a
//! moment ago may resolve to 127.0.0.1 now: DNS rebinding). IPv6 forms that embed an IPv4
//! address (mapped `::ffff:a.b.c.d`, compatible `::a.b.c.d`, NAT64 `64:ff9b::/96`, 6to4
//! `2002::/16`) are classified by the embedded address. Unit-tested only: the tests never dial
//! a non-loopback address.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Why an address is special; `None` from [`classify`] means an ordinary public address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Special {
    Loopback,
    LinkLocal,
    Private,
    Cgnat,
    Multicast,
    Unspecified,
    Broadcast,
    Documentation,
    Benchmark,
    Reserved,
    HostOwn,
}

impl Special {
    pub(crate) fn describe(self) -> &'static str {
        match self {
            Special::Loopback => "loopback",
            Special::LinkLocal => "link-local (incl. cloud metadata)",
            Special::Private => "private",
            Special::Cgnat => "CGNAT shared space",
            Special::Multicast => "multicast",
            Special::Unspecified => "unspecified",
            Special::Broadcast => "broadcast",
            Special::Documentation => "documentation range",
            Special::Benchmark => "benchmark range",
            Special::Reserved => "reserved",
            Special::HostOwn => "one of the host's own addresses",
        }
    }
}

fn in4(a: Ipv4Addr, net: [u8; 4], len: u32) -> bool {
    let mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
    u32::from(a) & mask == u32::from(Ipv4Addr::from(net)) & mask
}

fn in6(a: Ipv6Addr, net: Ipv6Addr, len: u32) -> bool {
    let mask = u128::MAX.checked_shl(128 - len).unwrap_or(0);
    u128::from(a) & mask == u128::from(net) & mask
}

fn classify_v4(a: Ipv4Addr) -> Option<(Special, u8)> {
    let table: &[([u8; 4], u32, Special)] = &[
        ([0, 0, 0, 0], 8, Special::Unspecified), // "this network"
        ([127, 0, 0, 0], 8, Special::Loopback),
        ([169, 254, 0, 0], 16, Special::LinkLocal),
        ([10, 0, 0, 0], 8, Special::Private),
        ([172, 16, 0, 0], 12, Special::Private),
        ([192, 168, 0, 0], 16, Special::Private),
        ([100, 64, 0, 0], 10, Special::Cgnat),
        ([224, 0, 0, 0], 4, Special::Multicast),
        ([255, 255, 255, 255], 32, Special::Broadcast),
        ([240, 0, 0, 0], 4, Special::Reserved),
        ([192, 0, 0, 0], 24, Special::Reserved), // IETF protocol assignments
        ([192, 88, 99, 0], 24, Special::Reserved), // 6to4 relay anycast
        ([192, 0, 2, 0], 24, Special::Documentation),
        ([198, 51, 100, 0], 24, Special::Documentation),
        ([203, 0, 113, 0], 24, Special::Documentation),
        ([198, 18, 0, 0], 15, Special::Benchmark),
    ];
    table
        .iter()
        .find(|(net, len, _)| in4(a, *net, *len))
        .map(|&(_, len, s)| (s, len as u8))
}

fn v6(s: &str) -> Ipv6Addr {
    // Only called on the literals below.
    s.parse().unwrap_or(Ipv6Addr::UNSPECIFIED)
}

fn classify_v6(a: Ipv6Addr) -> Option<(Special, u8)> {
    let seg = a.segments();
    let low32 = Ipv4Addr::from((u32::from(seg[6]) << 16) | u32::from(seg[7]));
    if a.is_unspecified() {
        return Some((Special::Unspecified, 128));
    }
    if a.is_loopback() {
        return Some((Special::Loopback, 128));
    }
    if let Some(v4) = a.to_ipv4_mapped() {
        return classify_v4(v4);
    }
    // IPv4-compatible ::a.b.c.d (deprecated) and NAT64 64:ff9b::/96: by the embedded address.
    // Only a rule naming the exact address permits these forms.
    if seg[..6] == [0; 6] || in6(a, v6("64:ff9b::"), 96) {
        return classify_v4(low32).map(|(s, _)| (s, 128));
    }
    // 6to4 2002:AABB:CCDD::/48 embeds AA.BB.CC.DD.
    if seg[0] == 0x2002 {
        let inner = Ipv4Addr::from((u32::from(seg[1]) << 16) | u32::from(seg[2]));
        return classify_v4(inner).map(|(s, _)| (s, 128));
    }
    let table: &[(&str, u32, Special)] = &[
        ("fe80::", 10, Special::LinkLocal),
        ("fc00::", 7, Special::Private),
        ("fec0::", 10, Special::Private), // deprecated site-local
        ("ff00::", 8, Special::Multicast),
        ("2001:db8::", 32, Special::Documentation),
        ("3fff::", 20, Special::Documentation),
        ("2001:2::", 48, Special::Benchmark),
        ("100::", 64, Special::Reserved),       // discard-only
        ("64:ff9b:1::", 48, Special::Reserved), // local-use NAT64
        ("2001::", 32, Special::Reserved),      // Teredo (tunnels to an embedded IPv4)
        ("2001:10::", 28, Special::Reserved),   // ORCHID
        ("2001:20::", 28, Special::Reserved),   // ORCHIDv2
        ("5f00::", 16, Special::Reserved),      // SRv6 SIDs
    ];
    table
        .iter()
        .find(|(net, len, _)| in6(a, v6(net), *len))
        .map(|&(_, len, s)| (s, len as u8))
}

/// The class of `ip` and the prefix length of its special range (a rule must lie inside that
/// range to permit it), or `None` for an ordinary public address. IPv4-mapped addresses count
/// as IPv4. `host_own` is the list of the host's interface addresses (see [`host_addrs`]).
pub(crate) fn classify(ip: IpAddr, host_own: &[IpAddr]) -> Option<(Special, u8)> {
    let class = match ip {
        IpAddr::V4(a) => classify_v4(a),
        IpAddr::V6(a) => classify_v6(a),
    };
    if class.is_some() {
        return class;
    }
    let canon = ip.to_canonical();
    if host_own.iter().any(|h| h.to_canonical() == canon) {
        return Some((Special::HostOwn, if canon.is_ipv4() { 32 } else { 128 }));
    }
    None
}

/// The host's own interface addresses (getifaddrs(3)), in the namespace the engine runs in.
/// On failure, an empty list: every private and loopback range is refused regardless, so this
/// only widens the refusal to public addresses of the host itself.
pub(crate) fn host_addrs() -> Vec<IpAddr> {
    let mut out = Vec::new();
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs writes a list head into `head`, which is a valid out-pointer.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return out;
    }
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: `cur` is a node of the list getifaddrs returned; it is freed only below.
        let ifa = unsafe { &*cur };
        if !ifa.ifa_addr.is_null() {
            // SAFETY: ifa_addr points to a sockaddr whose family says which struct it is.
            let family = i32::from(unsafe { (*ifa.ifa_addr).sa_family });
            if family == libc::AF_INET {
                // SAFETY: AF_INET means the storage is a sockaddr_in.
                let sin = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in) };
                out.push(IpAddr::V4(Ipv4Addr::from(u32::from_be(
                    sin.sin_addr.s_addr,
                ))));
            } else if family == libc::AF_INET6 {
                // SAFETY: AF_INET6 means the storage is a sockaddr_in6.
                let sin6 = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in6) };
                out.push(IpAddr::V6(Ipv6Addr::from(sin6.sin6_addr.s6_addr)));
            }
        }
        cur = ifa.ifa_next;
    }
    // SAFETY: `head` came from a successful getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(head) };
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(s: &str) -> Option<Special> {
        classify(s.parse().unwrap(), &[]).map(|(s, _)| s)
    }

    #[test]
    fn ipv4_ranges() {
        use Special::*;
        for (ip, want) in [
            ("127.0.0.1", Some(Loopback)),
            ("127.255.255.254", Some(Loopback)),
            ("169.254.169.254", Some(LinkLocal)),
            ("169.254.0.1", Some(LinkLocal)),
            ("10.0.0.1", Some(Private)),
            ("172.16.0.1", Some(Private)),
            ("172.31.255.255", Some(Private)),
            ("172.32.0.1", None),
            ("192.168.1.1", Some(Private)),
            ("100.64.0.1", Some(Cgnat)),
            ("100.127.255.255", Some(Cgnat)),
            ("100.128.0.1", None),
            ("224.0.0.1", Some(Multicast)),
            ("239.255.255.250", Some(Multicast)),
            ("0.0.0.0", Some(Unspecified)),
            ("0.1.2.3", Some(Unspecified)),
            ("255.255.255.255", Some(Broadcast)),
            ("240.0.0.1", Some(Reserved)),
            ("192.0.0.170", Some(Reserved)),
            ("192.0.2.1", Some(Documentation)),
            ("198.51.100.1", Some(Documentation)),
            ("203.0.113.1", Some(Documentation)),
            ("198.18.0.1", Some(Benchmark)),
            ("198.19.255.255", Some(Benchmark)),
            ("198.20.0.1", None),
            ("8.8.8.8", None),
            ("93.184.215.14", None),
        ] {
            assert_eq!(c(ip), want, "{ip}");
        }
    }

    #[test]
    fn ipv6_ranges_and_embedded_ipv4() {
        use Special::*;
        for (ip, want) in [
            ("::1", Some(Loopback)),
            ("::", Some(Unspecified)),
            ("fe80::1", Some(LinkLocal)),
            ("fd00::1", Some(Private)),
            ("fc00::1", Some(Private)),
            ("fec0::1", Some(Private)),
            ("ff02::1", Some(Multicast)),
            ("2001:db8::1", Some(Documentation)),
            ("2001:2::1", Some(Benchmark)),
            ("2001::1", Some(Reserved)),
            ("100::1", Some(Reserved)),
            // embedded IPv4 forms of the v4 ranges
            ("::ffff:127.0.0.1", Some(Loopback)),
            ("::ffff:169.254.169.254", Some(LinkLocal)),
            ("::ffff:10.1.2.3", Some(Private)),
            ("::ffff:100.64.0.1", Some(Cgnat)),
            ("::ffff:224.0.0.1", Some(Multicast)),
            ("::ffff:0.0.0.0", Some(Unspecified)),
            ("::ffff:255.255.255.255", Some(Broadcast)),
            ("::ffff:192.0.2.1", Some(Documentation)),
            ("::ffff:198.18.0.1", Some(Benchmark)),
            ("::127.0.0.1", Some(Loopback)),
            ("::169.254.169.254", Some(LinkLocal)),
            ("::10.0.0.1", Some(Private)),
            ("64:ff9b::127.0.0.1", Some(Loopback)),
            ("64:ff9b::a9fe:a9fe", Some(LinkLocal)),
            ("2002:7f00:1::", Some(Loopback)),
            ("2002:a9fe:a9fe::1", Some(LinkLocal)),
            ("2002:c0a8:0101::1", Some(Private)),
            ("::ffff:8.8.8.8", None),
            ("2606:4700::1111", None),
            ("2a00:1450:4001:80e::200e", None),
        ] {
            assert_eq!(c(ip), want, "{ip}");
        }
    }

    #[test]
    fn host_own_addresses() {
        let own: Vec<IpAddr> = vec![
            "93.184.215.14".parse().unwrap(),
            "2606:4700::1".parse().unwrap(),
        ];
        let f = |s: &str| classify(s.parse().unwrap(), &own).map(|(s, _)| s);
        assert_eq!(f("93.184.215.14"), Some(Special::HostOwn));
        assert_eq!(f("::ffff:93.184.215.14"), Some(Special::HostOwn));
        assert_eq!(f("2606:4700::1"), Some(Special::HostOwn));
        assert_eq!(f("93.184.215.15"), None);
        // getifaddrs sees at least loopback here.
        assert!(host_addrs().iter().any(|a| a.is_loopback()));
    }
}
