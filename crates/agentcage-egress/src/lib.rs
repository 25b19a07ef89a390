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

mod classify;
mod dns;
mod engine;
mod event;
mod http;
mod names;
mod peek;
mod rules;
mod splice;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4};
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[doc(hidden)]
pub use event::{rfc3339, rfc3339_now};
pub use peek::client_hello;

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
    rt: Option<tokio::runtime::Runtime>,
    shared: Arc<engine::Shared>,
}

/// The most connections (capture + proxy + DNS over TCP) handled at once; further ones wait
/// in the listen backlog.
const MAX_CONNECTIONS: usize = 4096;

/// Starts the engine on its own threads (a tokio runtime) and returns at once.
///
/// # Errors
/// A pin whose name is not a valid host name, a listener that is not a socket of the
/// expected kind, or the runtime cannot start.
pub fn start(config: Config, listeners: Listeners) -> std::io::Result<Engine> {
    start_with_fake_range(config, listeners, FAKE_V4)
}

fn invalid(msg: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidInput, msg)
}

/// Checks that `fd` is a socket of `kind` (listening when a stream socket) and makes it
/// non-blocking.
fn check_socket(fd: &OwnedFd, kind: socket2::Type, what: &str) -> std::io::Result<()> {
    let s = socket2::SockRef::from(fd);
    let ty = s
        .r#type()
        .map_err(|e| invalid(format!("{what}: not a socket ({e})")))?;
    if ty != kind {
        return Err(invalid(format!("{what}: wrong socket type {ty:?}")));
    }
    if kind == socket2::Type::STREAM && !s.is_listener()? {
        return Err(invalid(format!("{what}: TCP socket is not listening")));
    }
    s.set_nonblocking(true)
}

/// Raises the soft open-file limit towards the hard one and splits it: (connection cap, pipe
/// pairs). Every connection holds two sockets; a spliced one also a pipe per direction (four
/// more fds), taken only while pipe pairs are left (else the relay copies). 128 fds are kept
/// for everything else.
fn fd_budget() -> (usize, usize) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid out-pointer for getrlimit.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return (64, 0);
    }
    let want = lim.rlim_max.min(65_536);
    if lim.rlim_cur < want {
        let new = libc::rlimit {
            rlim_cur: want,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: `new` is a valid rlimit; raising the soft limit up to the hard one is allowed.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &new) } == 0 {
            lim.rlim_cur = want;
        }
    }
    let spare = usize::try_from(lim.rlim_cur)
        .unwrap_or(usize::MAX)
        .saturating_sub(128);
    let connections = (spare / 2).clamp(64, MAX_CONNECTIONS);
    let pipes = spare.saturating_sub(2 * connections) / 4;
    (connections, pipes)
}

/// [`start`] with another fake IPv4 range (tests use a loopback block, which a test can
/// connect to without a network namespace).
#[doc(hidden)]
pub fn start_with_fake_range(
    config: Config,
    listeners: Listeners,
    fake_v4: (Ipv4Addr, u8),
) -> std::io::Result<Engine> {
    let mut pins = Vec::with_capacity(config.pins.len());
    for (name, ip) in config.pins {
        let canon = rules::canonical_name(name.as_bytes())
            .map_err(|e| invalid(format!("--net-resolve {name}={ip}: {e}")))?;
        pins.push((canon, ip));
    }
    for (port, fd) in &listeners.tcp {
        check_socket(
            fd,
            socket2::Type::STREAM,
            &format!("capture listener for port {port}"),
        )?;
    }
    check_socket(&listeners.proxy, socket2::Type::STREAM, "proxy listener")?;
    check_socket(
        &listeners.dns_tcp,
        socket2::Type::STREAM,
        "DNS tcp listener",
    )?;
    check_socket(&listeners.dns_udp, socket2::Type::DGRAM, "DNS udp socket")?;
    let upstream = match config.upstream_dns {
        Some(a) => vec![a],
        None => dns::host_resolvers(),
    };
    let (connections, pipes) = fd_budget();
    let shared = Arc::new(engine::Shared {
        rules: config.rules,
        pins,
        fake: Mutex::new(names::FakeMap::new(fake_v4, FAKE_V6)),
        sink: event::Sink::new(config.log, config.on_deny),
        upstream,
        cache: Mutex::new(Default::default()),
        host_own: classify::host_addrs(),
        limit: Arc::new(tokio::sync::Semaphore::new(connections)),
        pipes: tokio::sync::Semaphore::new(pipes),
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("agentcage-egress")
        .enable_all()
        .build()?;
    {
        let _guard = rt.enter();
        for (_, fd) in listeners.tcp {
            let l = tokio::net::TcpListener::from_std(std::net::TcpListener::from(fd))?;
            rt.spawn(engine::serve_capture(shared.clone(), l));
        }
        let proxy =
            tokio::net::TcpListener::from_std(std::net::TcpListener::from(listeners.proxy))?;
        rt.spawn(engine::serve_proxy(shared.clone(), proxy));
        let dns_tcp =
            tokio::net::TcpListener::from_std(std::net::TcpListener::from(listeners.dns_tcp))?;
        rt.spawn(dns::serve_tcp(shared.clone(), dns_tcp));
        let dns_udp =
            tokio::net::UdpSocket::from_std(std::net::UdpSocket::from(listeners.dns_udp))?;
        rt.spawn(dns::serve_udp(shared.clone(), dns_udp));
    }
    Ok(Engine {
        rt: Some(rt),
        shared,
    })
}

impl Engine {
    /// Counters so far.
    pub fn stats(&self) -> Stats {
        self.shared.sink.stats()
    }

    /// Closes every listener and connection, joins the threads, returns the final counters.
    pub fn stop(mut self) -> Stats {
        if let Some(rt) = self.rt.take() {
            // Dropping the tasks closes every socket they own.
            rt.shutdown_timeout(Duration::from_secs(2));
        }
        self.shared.sink.stats()
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_timeout(Duration::from_secs(2));
        }
    }
}
