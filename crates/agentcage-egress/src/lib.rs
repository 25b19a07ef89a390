//! agentcage egress engine: the host side of `--net allow`.
//!
//! The launcher creates listening sockets inside the sandbox's network namespace (which has
//! only `lo`, with a `local` default route so that every TCP connect lands on a wildcard
//! listener) and passes them out over SCM_RIGHTS. This crate accepts on them from the host's
//! network namespace: a fake-IP DNS stub, a TCP capture per port, and an HTTP proxy. Each
//! connection is decided on the canonical name the client resolved (fake address -> name),
//! checked against the SNI / Host it sends, resolved upstream by the engine, classified (no
//! loopback/private/link-local/... unless a rule or pin names it) and relayed.
//!
//! Nothing here runs inside the sandbox, and nothing depends on the `agentcage` crate.

mod rules;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4};
use std::os::fd::OwnedFd;

pub use rules::{capture_ports, Rule, RuleError};

/// The DNS stub inside the sandbox (udp + tcp); the launcher's resolv.conf points here.
pub const DNS_ADDR: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 53));
/// The HTTP proxy inside the sandbox (CONNECT and absolute-form requests).
pub const PROXY_ADDR: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 3128));
/// Fake IPv4 answers, one per allowed name (RFC 2544 benchmark range, never routed).
pub const FAKE_V4: (Ipv4Addr, u8) = (Ipv4Addr::new(198, 18, 0, 0), 15);
/// Fake IPv6 answers, one per allowed name (a ULA /48 of our own).
pub const FAKE_V6: (Ipv6Addr, u8) = (Ipv6Addr::new(0xfd61, 0x6763, 0x6167, 0, 0, 0, 0, 0), 48);

/// The `on_deny` callback: called for every denial, from an engine thread; must not block.
pub type DenyHook = Box<dyn Fn(&Event) + Send + Sync>;

/// The engine's configuration.
pub struct Config {
    /// The allow rules.
    pub rules: Vec<Rule>,
    /// `--net-resolve NAME=IP`: pin, and permit that address for that name (even loopback).
    pub pins: Vec<(String, IpAddr)>,
    /// `--net-dns IP:PORT`: upstream resolver the engine asks; None = the host's resolv.conf.
    pub upstream_dns: Option<SocketAddr>,
    /// `--net-log FILE` (already opened by the caller, by fd, append): one JSON line per decision.
    pub log: Option<std::fs::File>,
    /// Called for every denial (the CLI prints it with -v). Must not block.
    pub on_deny: Option<DenyHook>,
}

/// The sockets the launcher created inside the sandbox's netns and passed out.
pub struct Listeners {
    /// (port, listening TCP socket bound to `[::]:port` with IPV6_V6ONLY=0, or `0.0.0.0:port`)
    /// for each of [`capture_ports`].
    pub tcp: Vec<(u16, OwnedFd)>,
    /// Listening TCP at [`PROXY_ADDR`].
    pub proxy: OwnedFd,
    /// Bound UDP at [`DNS_ADDR`].
    pub dns_udp: OwnedFd,
    /// Listening TCP at [`DNS_ADDR`].
    pub dns_tcp: OwnedFd,
}

/// Counters of decisions and relayed bytes.
#[derive(serde::Serialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub allowed: u64,
    pub denied: u64,
    pub dns_answered: u64,
    pub dns_refused: u64,
    pub bytes_up: u64,
    pub bytes_down: u64,
}

/// One decision; also the JSON line written to the log.
#[derive(serde::Serialize, Clone, Debug)]
pub struct Event {
    /// RFC 3339 UTC.
    pub time: String,
    pub pid: Option<u32>,
    pub exe: Option<String>,
    /// "dns" | "http" | "connect" | "tls" | "tcp"
    pub proto: &'static str,
    pub name: Option<String>,
    pub port: Option<u16>,
    pub ip: Option<IpAddr>,
    /// "allow" | "deny"
    pub decision: &'static str,
    pub rule: Option<String>,
    pub reason: Option<String>,
}

/// A running engine; [`Engine::stop`] ends it.
pub struct Engine {
    _private: (),
}

/// Starts the engine on its own thread(s) and returns at once.
///
/// # Errors
/// A listener that is not a socket of the expected kind, or the runtime cannot start.
pub fn start(config: Config, listeners: Listeners) -> std::io::Result<Engine> {
    let _ = (config, listeners);
    Err(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "agentcage-egress: engine not implemented yet",
    ))
}

impl Engine {
    /// Counters so far.
    pub fn stats(&self) -> Stats {
        Stats::default()
    }

    /// Closes every listener and connection, joins the threads, returns the final counters.
    pub fn stop(self) -> Stats {
        Stats::default()
    }
}
