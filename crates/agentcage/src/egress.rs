//! `--net allow`: the sandbox keeps its own network namespace with only `lo`, and its only
//! way out is the launcher's egress engine (the `agentcage-egress` crate), which runs outside,
//! in the launcher, on sockets the sandbox created in its namespace before exec.
//!
//! - Parent, before clone ([`prepare`]): the rules parsed by the engine, the TCP ports to
//!   capture ([`agentcage_egress::capture_ports`]) and the two rtnetlink requests, as bytes.
//! - Child, pre-exec ([`apply`], after `lo` is up, in the sandbox's final network namespace):
//!   a `local` default route on `lo` for IPv4 and IPv6 (every destination is local, so a TCP
//!   connect to any address lands on a wildcard listener of its port, and `getsockname` on
//!   the accepted socket is the original destination; UDP and everything else has no
//!   listener), then the listeners: the HTTP proxy, the DNS stub (UDP and TCP) and one
//!   wildcard TCP listener per captured port. Each is sent to the launcher over SCM_RIGHTS
//!   and closed at once: the command never holds one. No sysctl is needed: the sandbox's init
//!   holds CAP_NET_BIND_SERVICE in the user namespace that owns this network namespace, so
//!   ports below 1024 bind (a sandbox whose command keeps its capabilities still gets this
//!   namespace from the init: see `LockMounts::prepare`).
//! - Parent, after the child was released ([`receive`], [`start`]): receives the listeners
//!   and starts the engine on its own threads (the launcher was single-threaded at clone);
//!   `Prepared::run` stops it after the run and returns its counters.
//!
//! The sockets keep their network namespace, so nothing inside the sandbox relays traffic and
//! no capability on the host is needed.

use std::net::SocketAddr;
use std::os::fd::OwnedFd;

use agentcage_egress as engine;

use crate::error::{Error, PolicyError, SetupError, Step};
use crate::policy::{Layer, NetMode, Policy};
use crate::sys::{self, Errno, ListenOn};

/// The proxy URL the command's environment names.
pub(crate) const PROXY_URL: &str = "http://127.0.0.1:3128";

/// What the sandbox needs to be told about the proxy (set by the launcher, never taken from
/// the caller's environment).
pub(crate) fn proxy_env() -> [(&'static str, &'static str); 9] {
    [
        ("HTTP_PROXY", PROXY_URL),
        ("HTTPS_PROXY", PROXY_URL),
        ("ALL_PROXY", PROXY_URL),
        ("http_proxy", PROXY_URL),
        ("https_proxy", PROXY_URL),
        ("all_proxy", PROXY_URL),
        ("NO_PROXY", ""),
        ("no_proxy", ""),
        ("NODE_USE_ENV_PROXY", "1"),
    ]
}

/// The sandbox's /etc/resolv.conf with `--net allow`: the engine's DNS stub.
pub(crate) const RESOLV_CONF: &str =
    "# agentcage: --net allow (the launcher answers)\nnameserver 127.0.0.1\n";

/// Listen backlog of every TCP listener (the engine accepts from outside; a burst of connects
/// waits here).
const BACKLOG: libc::c_int = 512;

/// [`Step::Egress`] sub-steps.
pub(crate) const ROUTE_V4: u32 = 0;
pub(crate) const ROUTE_V6: u32 = 1;
pub(crate) const LISTEN: u32 = 2;
pub(crate) const SEND: u32 = 3;

/// The fixed listeners, first in the hand-over order; the captured ports follow.
const PROXY: usize = 0;
const DNS_UDP: usize = 1;
const DNS_TCP: usize = 2;
const FIXED: usize = 3;

/// Everything `--net allow` needs, built before clone.
#[derive(Debug)]
pub(crate) struct Prepared {
    pub(crate) rules: Vec<engine::Rule>,
    pub(crate) pins: Vec<(String, std::net::IpAddr)>,
    pub(crate) upstream_dns: Option<SocketAddr>,
    /// The captured TCP ports (every port a rule can allow and a few common ones), without the
    /// proxy's and the DNS stub's.
    pub(crate) ports: Vec<u16>,
    route_v4: Vec<u8>,
    route_v6: Vec<u8>,
}

/// Parent side: the egress plan of `policy`, or `None` unless `--net allow`.
///
/// # Errors
/// [`Error::Policy`]: a rule the engine rejects, or no network namespace of the sandbox's own.
pub(crate) fn prepare(
    policy: &Policy,
    enforcement: &mut Vec<(String, String)>,
    degraded: &mut Vec<(String, String)>,
) -> Result<Option<Prepared>, Error> {
    if policy.net != NetMode::Allow {
        return Ok(None);
    }
    if let Some(why) = without_netns(policy) {
        return Err(PolicyError::NetAllowWithoutNetns { why }.into());
    }
    let rules = parse_rules(&policy.egress.allow)?;
    if !policy.layers.has(Layer::MountNs) {
        // Still fail closed (the host's resolver address routes to nothing inside), but names
        // then resolve only through the proxy: said, not silent.
        degraded.push((
            "egress".into(),
            "without a mount namespace /etc/resolv.conf is the host's, not the egress DNS \
             stub: names resolve only through the proxy (HTTP_PROXY), other lookups fail"
                .into(),
        ));
    }
    let ports = ports(&rules);
    enforcement.push((
        "egress".into(),
        format!(
            "--net allow: {} rule(s) [{}]; DNS stub {}, HTTP proxy {}, TCP captured on ports \
             [{}], every other TCP port, UDP and raw traffic refused inside",
            rules.len(),
            rules
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", "),
            engine::DNS_ADDR,
            engine::PROXY_ADDR,
            ports
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(" "),
        ),
    ));
    Ok(Some(Prepared {
        rules,
        pins: policy.egress.resolve.clone(),
        upstream_dns: policy.egress.dns,
        ports,
        route_v4: local_default_route(libc::AF_INET as u8),
        route_v6: local_default_route(libc::AF_INET6 as u8),
    }))
}

/// Why `policy` has no network namespace of the sandbox's own, if it has none.
pub(crate) fn without_netns(policy: &Policy) -> Option<String> {
    if policy.layers.has(Layer::NetNs) {
        return None;
    }
    Some(if policy.layers.is_empty() {
        format!("profile {}", policy.profile)
    } else {
        "--without net-ns".into()
    })
}

/// Parses allow rules with the engine's parser.
///
/// # Errors
/// [`PolicyError::NetRule`] naming the first bad rule.
pub(crate) fn parse_rules(texts: &[String]) -> Result<Vec<engine::Rule>, Error> {
    texts
        .iter()
        .map(|t| {
            t.parse::<engine::Rule>().map_err(|e| {
                Error::Policy(PolicyError::NetRule {
                    rule: t.clone(),
                    why: e.to_string(),
                })
            })
        })
        .collect()
}

/// The captured ports of `rules`: the engine's list without the proxy's and the DNS stub's
/// ports (those have their own listeners on 127.0.0.1; a wildcard listener would collide).
pub(crate) fn ports(rules: &[engine::Rule]) -> Vec<u16> {
    let mut p = engine::capture_ports(rules);
    p.retain(|&x| x != engine::PROXY_ADDR.port() && x != engine::DNS_ADDR.port());
    p.sort_unstable();
    p.dedup();
    p
}

/// The TCP ports the command connects to with `--net allow` (Landlock's TCP connect rules
/// must let them through under `full`): the captured ports, the proxy and the DNS stub.
pub(crate) fn connect_ports(p: Option<&Prepared>) -> Vec<u16> {
    p.map(|p| {
        let mut v = p.ports.clone();
        v.push(engine::PROXY_ADDR.port());
        v.push(engine::DNS_ADDR.port());
        v
    })
    .unwrap_or_default()
}

/// `ip route add local default dev lo table local` as one RTM_NEWROUTE request (with
/// NLM_F_ACK, so the kernel answers with the errno).
fn local_default_route(family: u8) -> Vec<u8> {
    const RTM_NEWROUTE: u16 = 24;
    const RT_TABLE_LOCAL: u8 = 255;
    const RTPROT_BOOT: u8 = 3;
    const RT_SCOPE_HOST: u8 = 254;
    const RTN_LOCAL: u8 = 2;
    const RTA_OIF: u16 = 4;
    /// `lo` is always the first device of a network namespace (LOOPBACK_IFINDEX).
    const LO_IFINDEX: u32 = 1;
    let flags =
        (libc::NLM_F_REQUEST | libc::NLM_F_ACK | libc::NLM_F_CREATE | libc::NLM_F_EXCL) as u16;
    let mut m = Vec::with_capacity(36);
    m.extend_from_slice(&36u32.to_ne_bytes()); // nlmsg_len
    m.extend_from_slice(&RTM_NEWROUTE.to_ne_bytes());
    m.extend_from_slice(&flags.to_ne_bytes());
    m.extend_from_slice(&1u32.to_ne_bytes()); // seq
    m.extend_from_slice(&0u32.to_ne_bytes()); // pid: the kernel assigns
                                              // struct rtmsg: family, dst_len 0 (default), src_len, tos, table, protocol, scope, type,
                                              // flags.
    m.extend_from_slice(&[
        family,
        0,
        0,
        0,
        RT_TABLE_LOCAL,
        RTPROT_BOOT,
        RT_SCOPE_HOST,
        RTN_LOCAL,
    ]);
    m.extend_from_slice(&0u32.to_ne_bytes());
    // RTA_OIF = lo.
    m.extend_from_slice(&8u16.to_ne_bytes());
    m.extend_from_slice(&RTA_OIF.to_ne_bytes());
    m.extend_from_slice(&LO_IFINDEX.to_ne_bytes());
    debug_assert_eq!(m.len(), 36);
    m
}

/// Child side, in the sandbox's final network namespace with `lo` up: the routes, then each
/// listener created, sent to the launcher on `sock` and closed; `sock` is closed too.
///
/// Runs in the child after clone: async-signal-safe only.
pub(crate) fn apply(p: &Prepared, sock: i32) -> Result<(), SetupError> {
    let r = apply_on(p, sock);
    sys::close(sock);
    r
}

fn apply_on(p: &Prepared, sock: i32) -> Result<(), SetupError> {
    let fail = |sub, i: usize| move |e| SetupError::at(Step::Egress, sub, i as u32, e);
    sys::rtnetlink_request(&p.route_v4).map_err(fail(ROUTE_V4, 0))?;
    // A kernel without IPv6 has nothing to route there: the listeners are IPv4-only then.
    let v6 = match sys::rtnetlink_request(&p.route_v6) {
        Ok(()) => true,
        Err(Errno(libc::EAFNOSUPPORT)) => false,
        Err(e) => return Err(fail(ROUTE_V6, 0)(e)),
    };
    let any = if v6 {
        ListenOn::AnyDual
    } else {
        ListenOn::AnyV4
    };
    for i in 0..FIXED + p.ports.len() {
        let (on, port) = match i {
            PROXY => (ListenOn::LoopbackTcp, engine::PROXY_ADDR.port()),
            DNS_UDP => (ListenOn::LoopbackUdp, engine::DNS_ADDR.port()),
            DNS_TCP => (ListenOn::LoopbackTcp, engine::DNS_ADDR.port()),
            _ => (any, p.ports[i - FIXED]),
        };
        let fd = sys::listener(on, port, BACKLOG).map_err(fail(LISTEN, i))?;
        let sent = sys::send_fd(sock, fd);
        sys::close(fd);
        sent.map_err(fail(SEND, i))?;
    }
    Ok(())
}

/// Parent side: receives the listeners [`apply`] sent, in its order. `ENODATA` when the
/// sandbox closed its end first (it failed: its report says why).
pub(crate) fn receive(p: &Prepared, sock: i32) -> Result<engine::Listeners, Errno> {
    let mut fds: Vec<OwnedFd> = Vec::with_capacity(FIXED + p.ports.len());
    for _ in 0..FIXED + p.ports.len() {
        fds.push(sys::recv_fd_owned(sock)?);
    }
    let mut it = fds.into_iter();
    let mut next = || it.next().ok_or(Errno(libc::ENODATA));
    let proxy = next()?;
    let dns_udp = next()?;
    let dns_tcp = next()?;
    let mut tcp = Vec::with_capacity(p.ports.len());
    for &port in &p.ports {
        tcp.push((port, next()?));
    }
    Ok(engine::Listeners {
        tcp,
        proxy,
        dns_udp,
        dns_tcp,
    })
}

/// A denial hook the launcher shares with each run's engine.
pub type SharedDenyHook = std::sync::Arc<dyn Fn(&engine::Event) + Send + Sync>;

/// The launcher's hooks for the engine (not part of the policy).
#[derive(Default)]
pub struct EgressHooks {
    /// `--net-log FILE`, opened by the caller (append); each run writes through a duplicate.
    pub log: Option<std::fs::File>,
    /// Called for every denial, from an engine thread (`-v` prints it); must not block.
    pub on_deny: Option<SharedDenyHook>,
}

/// Parent side: starts the engine on `listeners` (after clone: it starts threads).
///
/// # Errors
/// [`Error::Egress`] with the engine's error.
pub(crate) fn start(
    p: &Prepared,
    listeners: engine::Listeners,
    hooks: &EgressHooks,
) -> Result<engine::Engine, Error> {
    let log = match &hooks.log {
        Some(f) => Some(f.try_clone().map_err(|source| Error::Egress {
            step: "duplicate the --net-log file for the egress engine".into(),
            source,
            hint: None,
        })?),
        None => None,
    };
    let on_deny = hooks
        .on_deny
        .clone()
        .map(|f| Box::new(move |e: &engine::Event| f(e)) as engine::DenyHook);
    let config = engine::Config {
        rules: p.rules.clone(),
        pins: p.pins.clone(),
        upstream_dns: p.upstream_dns,
        log,
        on_deny,
    };
    engine::start(config, listeners).map_err(|source| Error::Egress {
        step: "start the egress engine of --net allow".into(),
        source,
        hint: None,
    })
}

/// The step of a failed [`apply`] (sub-step, listener index), for the error message.
pub(crate) fn describe(p: Option<&Prepared>, sub: u32, index: u32) -> String {
    let listener = |i: u32| -> String {
        let i = i as usize;
        match i {
            PROXY => format!("the HTTP proxy listener (tcp {})", engine::PROXY_ADDR),
            DNS_UDP => format!("the DNS stub (udp {})", engine::DNS_ADDR),
            DNS_TCP => format!("the DNS stub (tcp {})", engine::DNS_ADDR),
            _ => match p.and_then(|p| p.ports.get(i - FIXED)) {
                Some(port) => format!("the capture listener of TCP port {port} ([::]:{port})"),
                None => "a capture listener".into(),
            },
        }
    };
    match sub {
        ROUTE_V4 => "add the local default route on lo (IPv4: RTM_NEWROUTE local 0.0.0.0/0 dev lo \
                     table local) for --net allow"
            .into(),
        ROUTE_V6 => "add the local default route on lo (IPv6: RTM_NEWROUTE local ::/0 dev lo \
                     table local) for --net allow"
            .into(),
        LISTEN => format!(
            "create {} in the sandbox's network namespace",
            listener(index)
        ),
        _ => format!("pass {} to the launcher (SCM_RIGHTS)", listener(index)),
    }
}

/// A hint for a failed [`apply`].
pub(crate) fn hint(sub: u32, errno: Errno) -> Option<String> {
    match (sub, errno.0) {
        (ROUTE_V4 | ROUTE_V6, libc::EPERM) => Some(
            "the sandbox's init lacks CAP_NET_ADMIN over its network namespace; an LSM or the \
             outer container may forbid rtnetlink"
                .into(),
        ),
        (LISTEN, libc::EACCES) => Some(
            "binding a port below 1024 needs CAP_NET_BIND_SERVICE in the sandbox's user \
             namespace, which owns its network namespace"
                .into(),
        ),
        (SEND, libc::ETOOMANYREFS) | (SEND, libc::EMFILE) => Some(
            "too many file descriptors in flight: raise RLIMIT_NOFILE or allow fewer ports".into(),
        ),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_request_bytes() {
        let m = local_default_route(libc::AF_INET6 as u8);
        assert_eq!(m.len(), 36);
        assert_eq!(u32::from_ne_bytes(m[0..4].try_into().unwrap()), 36);
        assert_eq!(u16::from_ne_bytes([m[4], m[5]]), 24); // RTM_NEWROUTE
        assert_eq!(
            u16::from_ne_bytes([m[6], m[7]]),
            0x1 | 0x4 | 0x400 | 0x200 // REQUEST|ACK|CREATE|EXCL
        );
        assert_eq!(m[16], libc::AF_INET6 as u8);
        assert_eq!(&m[17..24], &[0, 0, 0, 255, 3, 254, 2]);
        assert_eq!(&m[28..36], &[8, 0, 4, 0, 1, 0, 0, 0]);
    }

    #[test]
    fn describes_its_steps() {
        assert!(describe(None, ROUTE_V6, 0).contains("::/0 dev lo"));
        assert_eq!(
            describe(None, LISTEN, DNS_UDP as u32),
            "create the DNS stub (udp 127.0.0.1:53) in the sandbox's network namespace"
        );
        assert_eq!(
            describe(None, SEND, PROXY as u32),
            "pass the HTTP proxy listener (tcp 127.0.0.1:3128) to the launcher (SCM_RIGHTS)"
        );
    }

    #[test]
    fn proxy_env_is_complete() {
        let env = proxy_env();
        for k in [
            "HTTP_PROXY",
            "https_proxy",
            "ALL_PROXY",
            "NO_PROXY",
            "no_proxy",
        ] {
            assert!(env.iter().any(|(n, _)| *n == k), "{k}");
        }
        assert!(env
            .iter()
            .filter(|(k, _)| k.to_ascii_lowercase().ends_with("_proxy")
                && !k.contains("NO")
                && !k.contains("no"))
            .all(|(_, v)| *v == PROXY_URL));
    }
}
