//! The engine proper: shared state, the decision for one destination, the dial (resolve,
//! classify, connect), the relay, the TCP capture and the HTTP proxy.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{timeout, timeout_at, Instant};

use crate::classify::classify;
use crate::event::{event, Sink};
use crate::http::{chunk_step, parse_head, rewrite_for_origin, Body, Form, Host, MAX_HEAD};
use crate::names::FakeMap;
use crate::peek::Hello;
use crate::rules::Rule;

/// The whole first flight (ClientHello or request head) must arrive within this.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// For a rule with an explicit port, how long to wait for the client to speak first before
/// treating the connection as a server-speaks-first protocol.
const OPAQUE_FIRST_BYTE_WAIT: Duration = Duration::from_millis(300);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Relay buffer per direction.
const RELAY_BUF: usize = 64 * 1024;
/// Most bytes the first flight may take (a TLS record, or a request head).
const MAX_FIRST_FLIGHT: usize = 16_384 + 4096;

/// State shared by every task of one engine.
pub(crate) struct Shared {
    pub(crate) rules: Vec<Rule>,
    /// (canonical name, address)
    pub(crate) pins: Vec<(String, IpAddr)>,
    pub(crate) fake: Mutex<FakeMap>,
    pub(crate) sink: Sink,
    pub(crate) upstream: Vec<SocketAddr>,
    pub(crate) cache: Mutex<crate::dns::Cache>,
    pub(crate) host_own: Vec<IpAddr>,
    pub(crate) limit: Arc<Semaphore>,
    /// Pipe pairs the splice relay may hold (see `fd_budget`).
    pub(crate) pipes: Semaphore,
}

/// A destination as decided on: a canonical name (from a fake address or a proxy request)
/// or an IP literal (only IP rules apply).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Dest {
    Name(String),
    Ip(IpAddr),
}

impl Dest {
    fn name(&self) -> Option<&str> {
        match self {
            Dest::Name(n) => Some(n),
            Dest::Ip(_) => None,
        }
    }

    fn ip(&self) -> Option<IpAddr> {
        match self {
            Dest::Name(_) => None,
            Dest::Ip(ip) => Some(*ip),
        }
    }

    /// The rule that would allow this destination, in rule syntax.
    fn missing_rule(&self, port: u16) -> String {
        match self {
            Dest::Name(n) => format!("{n}:{port}"),
            Dest::Ip(IpAddr::V6(a)) => format!("[{a}]:{port}"),
            Dest::Ip(a) => format!("{a}:{port}"),
        }
    }
}

/// Why a dial did not happen.
pub(crate) enum DialError {
    /// Policy: the destination resolves only to refused addresses.
    Refused(String),
    /// Resolution or connect failed.
    Failed(String),
}

impl DialError {
    fn text(&self) -> &str {
        match self {
            DialError::Refused(s) | DialError::Failed(s) => s,
        }
    }
}

/// Accepts one connection once a slot under the concurrency cap is free.
pub(crate) async fn accept(
    shared: &Shared,
    listener: &TcpListener,
) -> Option<(TcpStream, OwnedSemaphorePermit)> {
    let permit = shared.limit.clone().acquire_owned().await.ok()?;
    match listener.accept().await {
        Ok((s, _)) => {
            let _ = s.set_nodelay(true);
            Some((s, permit))
        }
        Err(_) => {
            // EMFILE and friends: back off instead of spinning.
            tokio::time::sleep(Duration::from_millis(20)).await;
            None
        }
    }
}

/// Closes with a reset (SO_LINGER 0), so the client sees ECONNRESET, not a clean EOF.
fn reset(s: TcpStream) {
    let _ = socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO));
    drop(s);
}

impl Shared {
    /// A captured or requested IP: a fake address stands for its name; any other is itself.
    pub(crate) fn dest_of_ip(&self, ip: IpAddr) -> Result<Dest, String> {
        let ip = ip.to_canonical();
        let map = self
            .fake
            .lock()
            .map_err(|_| "fake address map poisoned".to_owned())?;
        if map.in_range(ip) {
            return match map.name_of(ip) {
                Some(n) => Ok(Dest::Name(n.to_owned())),
                None => Err(format!(
                    "{ip} is a fake address the DNS stub never handed out"
                )),
            };
        }
        Ok(Dest::Ip(ip))
    }

    fn rules_for<'a>(&'a self, dest: &'a Dest, port: u16) -> impl Iterator<Item = &'a Rule> + 'a {
        self.rules.iter().filter(move |r| match dest {
            Dest::Name(n) => r.allows_name(n, port),
            Dest::Ip(ip) => r.allows_ip(*ip, port),
        })
    }

    /// A special (loopback, private, ...) address is dialled only when an IP rule inside that
    /// special range covers it, or a pin names it for this name.
    fn permitted(&self, dest: &Dest, ip: IpAddr) -> Result<(), String> {
        let Some((class, range_len)) = classify(ip, &self.host_own) else {
            return Ok(());
        };
        if self.rules.iter().any(|r| r.covers_ip_within(ip, range_len)) {
            return Ok(());
        }
        if let Dest::Name(n) = dest {
            let canon = ip.to_canonical();
            if self
                .pins
                .iter()
                .any(|(pn, pip)| pn == n && pip.to_canonical() == canon)
            {
                return Ok(());
            }
        }
        Err(format!(
            "{ip} is {}; no IP rule or pin names it",
            class.describe()
        ))
    }

    /// Resolves (names), classifies every address and connects to the first permitted one.
    async fn dial(&self, dest: &Dest, port: u16) -> Result<(TcpStream, IpAddr), DialError> {
        let candidates = match dest {
            Dest::Name(n) => crate::dns::resolve(self, n)
                .await
                .map_err(DialError::Failed)?,
            Dest::Ip(ip) => vec![*ip],
        };
        let mut refused = Vec::new();
        let mut failed = None;
        for ip in candidates {
            if let Err(why) = self.permitted(dest, ip) {
                refused.push(why);
                continue;
            }
            match timeout(CONNECT_TIMEOUT, TcpStream::connect((ip, port))).await {
                Ok(Ok(s)) => {
                    let _ = s.set_nodelay(true);
                    return Ok((s, ip));
                }
                Ok(Err(e)) => failed = Some(format!("connect {}: {e}", SocketAddr::new(ip, port))),
                Err(_) => {
                    failed = Some(format!("connect {}: timed out", SocketAddr::new(ip, port)))
                }
            }
        }
        match failed {
            Some(f) => Err(DialError::Failed(f)),
            None => Err(DialError::Refused(refused.join("; "))),
        }
    }
}

/// Copies `r` to `w` until EOF, then shuts `w` down (half-close); counts bytes.
async fn pump<R, W>(mut r: R, mut w: W, counter: &AtomicU64) -> io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; RELAY_BUF];
    loop {
        let n = r.read(&mut buf).await?;
        if n == 0 {
            return w.shutdown().await;
        }
        w.write_all(&buf[..n]).await?;
        counter.fetch_add(n as u64, Relaxed);
    }
}

/// Relays both ways (first sending `initial` upstream) until both sides have closed, or
/// either fails (then both are dropped). splice(2) while the fd budget has pipe pairs left and
/// pipes can be made, else a copy loop.
async fn relay(shared: &Shared, client: TcpStream, upstream: TcpStream, initial: &[u8]) {
    let sink = &shared.sink;
    if !initial.is_empty() {
        if crate::splice::write_all(&upstream, initial).await.is_err() {
            return;
        }
        sink.bytes_up.fetch_add(initial.len() as u64, Relaxed);
    }
    if let Ok(_pipes) = shared.pipes.try_acquire() {
        if crate::splice::relay(&client, &upstream, &sink.bytes_up, &sink.bytes_down)
            .await
            .is_some()
        {
            return;
        }
    }
    let (cr, cw) = client.into_split();
    let (ur, uw) = upstream.into_split();
    let up = pump(cr, uw, &sink.bytes_up);
    let down = pump(ur, cw, &sink.bytes_down);
    tokio::pin!(up, down);
    tokio::select! {
        r = &mut up => if r.is_ok() { let _ = down.await; },
        r = &mut down => if r.is_ok() { let _ = up.await; },
    }
}

/// Reads the first flight. For opaque-capable rules, no bytes within a short wait means a
/// server-speaks-first protocol (`Hello::Other` with no bytes).
async fn read_first_flight(
    s: &mut TcpStream,
    first_byte_wait: Duration,
) -> Result<(Hello, Vec<u8>), String> {
    let mut buf = Vec::with_capacity(2048);
    let mut chunk = vec![0u8; 4096];
    let deadline = Instant::now() + HANDSHAKE_TIMEOUT;
    loop {
        let wait = if buf.is_empty() {
            Instant::now() + first_byte_wait
        } else {
            deadline
        };
        let n = match timeout_at(wait.min(deadline), s.read(&mut chunk)).await {
            Err(_) if buf.is_empty() && first_byte_wait < HANDSHAKE_TIMEOUT => {
                return Ok((Hello::Other, buf));
            }
            Err(_) => return Err("timed out waiting for the ClientHello / request head".into()),
            Ok(Err(e)) => return Err(format!("reading the first bytes: {e}")),
            Ok(Ok(n)) => n,
        };
        if n == 0 {
            return Err("client closed before a complete first message".into());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(hello) = crate::peek::classify(&buf)? {
            return Ok((hello, buf));
        }
        if buf.len() > MAX_FIRST_FLIGHT {
            return Err("first message too long".into());
        }
    }
}

/// Serves one capture listener until the runtime stops.
pub(crate) async fn serve_capture(shared: Arc<Shared>, listener: TcpListener) {
    loop {
        let Some((stream, permit)) = accept(&shared, &listener).await else {
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let _permit = permit;
            capture_one(&shared, stream).await;
        });
    }
}

async fn capture_one(shared: &Shared, mut client: TcpStream) {
    let Ok(local) = client.local_addr() else {
        return;
    };
    // The accepted socket's local address is the address the client connected to.
    let (ip, port) = (local.ip().to_canonical(), local.port());
    let dest = match shared.dest_of_ip(ip) {
        Ok(d) => d,
        Err(why) => {
            shared
                .sink
                .emit(event("tcp", None, Some(port), Some(ip)).deny(why));
            return reset(client);
        }
    };
    let ev = |proto| event(proto, dest.name(), Some(port), dest.ip());
    let rules: Vec<&Rule> = shared.rules_for(&dest, port).collect();
    let Some(first_rule) = rules.first() else {
        let why = format!("no rule allows {}", dest.missing_rule(port));
        shared.sink.emit(ev("tcp").deny(why));
        return reset(client);
    };
    let explicit = rules.iter().find(|r| r.explicit_port());
    let wait = if explicit.is_some() {
        OPAQUE_FIRST_BYTE_WAIT
    } else {
        HANDSHAKE_TIMEOUT
    };
    let (hello, first) = match read_first_flight(&mut client, wait).await {
        Ok(x) => x,
        Err(why) => {
            shared.sink.emit(ev("tcp").deny(why));
            return reset(client);
        }
    };
    let (proto, verdict) = check_hello(&dest, port, &hello, explicit.is_some());
    if let Err(why) = verdict {
        shared.sink.emit(ev(proto).deny(why));
        return reset(client);
    }
    let rule = explicit.unwrap_or(first_rule).to_string();
    match shared.dial(&dest, port).await {
        Ok((upstream, upstream_ip)) => {
            let mut e = ev(proto).allow(Some(rule));
            e.ip = Some(upstream_ip);
            shared.sink.emit(e);
            relay(shared, client, upstream, &first).await;
        }
        Err(err) => {
            shared.sink.emit(ev(proto).deny(err.text()));
            reset(client);
        }
    }
}

/// The first flight must agree with the destination: the SNI (TLS) or Host (HTTP) is the
/// name the fake address stands for; other protocols need a rule with an explicit port.
fn check_hello(
    dest: &Dest,
    port: u16,
    hello: &Hello,
    explicit: bool,
) -> (&'static str, Result<(), String>) {
    match (hello, dest) {
        (Hello::Tls(_), Dest::Ip(_)) => ("tls", Ok(())),
        (Hello::Tls(Some(sni)), Dest::Name(n)) if sni == n => ("tls", Ok(())),
        (Hello::Tls(Some(sni)), Dest::Name(n)) => (
            "tls",
            Err(format!(
                "TLS server name {sni} is not {n}, the name this address stands for"
            )),
        ),
        (Hello::Tls(None), Dest::Name(n)) => (
            "tls",
            Err(format!("TLS ClientHello without a server name (to {n})")),
        ),
        (Hello::Http(_), Dest::Ip(_)) => ("http", Ok(())),
        (Hello::Http(head), Dest::Name(n)) => {
            let target = match &head.form {
                Form::Absolute(h, _, _) | Form::Authority(h, _) => Some(h),
                Form::Origin(_) => None,
            };
            match (&head.host, target) {
                (Some((Host::Name(h), _)), None) if h == n => ("http", Ok(())),
                (Some((Host::Name(h), _)), Some(Host::Name(t))) if h == n && t == n => {
                    ("http", Ok(()))
                }
                (None, _) => (
                    "http",
                    Err(format!("HTTP request without a Host header (to {n})")),
                ),
                (Some((h, _)), _) => (
                    "http",
                    Err(format!(
                        "HTTP Host {h} is not {n}, the name this address stands for"
                    )),
                ),
            }
        }
        (Hello::Other, _) if explicit => ("tcp", Ok(())),
        (Hello::Other, d) => (
            "tcp",
            Err(format!(
                "not TLS or HTTP: other protocols need a rule naming the port ({})",
                d.missing_rule(port)
            )),
        ),
    }
}

/// Serves the HTTP proxy until the runtime stops.
pub(crate) async fn serve_proxy(shared: Arc<Shared>, listener: TcpListener) {
    loop {
        let Some((stream, permit)) = accept(&shared, &listener).await else {
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let _permit = permit;
            proxy_one(&shared, stream).await;
        });
    }
}

fn header_safe(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .collect()
}

async fn respond(mut client: TcpStream, status: &str, deny: Option<&str>, msg: &str) {
    let body = format!("agentcage: {msg}\n");
    let mut head = format!("HTTP/1.1 {status}\r\nContent-Type: text/plain; charset=utf-8\r\n");
    if let Some(d) = deny {
        head.push_str(&format!("X-Agentcage-Deny: {}\r\n", header_safe(d)));
    }
    head.push_str(&format!(
        "Connection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    ));
    let _ = timeout(Duration::from_secs(5), async {
        let _ = client.write_all(head.as_bytes()).await;
        let _ = client.shutdown().await;
        // Drain briefly so that unread request bytes do not turn the close into a reset
        // that could destroy the response before the client reads it.
        let mut sink = [0u8; 4096];
        while let Ok(n) = client.read(&mut sink).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
}

async fn proxy_one(shared: &Shared, mut client: TcpStream) {
    let mut buf = Vec::with_capacity(2048);
    let mut chunk = vec![0u8; 4096];
    let deadline = Instant::now() + HANDSHAKE_TIMEOUT;
    let head = loop {
        let n = match timeout_at(deadline, client.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => n,
            _ => return,
        };
        buf.extend_from_slice(&chunk[..n]);
        if buf[0] == 0x05 || buf[0] == 0x04 {
            shared.sink.emit(
                event("tcp", None, Some(crate::PROXY_ADDR.port()), None)
                    .deny("SOCKS is not supported: use the HTTP proxy (CONNECT)"),
            );
            // SOCKS5: "no acceptable methods"; SOCKS4: "request rejected".
            let reply: &[u8] = if buf[0] == 0x05 {
                &[0x05, 0xff]
            } else {
                &[0x00, 0x5b, 0, 0, 0, 0, 0, 0]
            };
            let _ = client.write_all(reply).await;
            return;
        }
        match parse_head(&buf) {
            Ok(Some(h)) => break h,
            Ok(None) if buf.len() < MAX_HEAD => continue,
            Ok(None) => {
                return respond(
                    client,
                    "431 Request Header Fields Too Large",
                    None,
                    "request head too long",
                )
                .await
            }
            Err(why) => {
                shared
                    .sink
                    .emit(event("http", None, None, None).deny(format!("bad request: {why}")));
                return respond(
                    client,
                    "400 Bad Request",
                    Some(&format!("bad request: {why}")),
                    &why,
                )
                .await;
            }
        }
    };
    let (proto, host, port) = match &head.form {
        Form::Authority(h, p) => ("connect", h.clone(), *p),
        Form::Absolute(h, p, _) => ("http", h.clone(), *p),
        Form::Origin(_) => {
            let why = "not a proxy request (origin-form target): this is an HTTP proxy";
            shared.sink.emit(event("http", None, None, None).deny(why));
            return respond(client, "400 Bad Request", Some(why), why).await;
        }
    };
    let dest = match host {
        Host::Name(n) => Ok(Dest::Name(n)),
        Host::Ip(ip) => shared.dest_of_ip(ip),
    };
    let dest = match dest {
        Ok(d) => d,
        Err(why) => {
            shared
                .sink
                .emit(event(proto, None, Some(port), None).deny(why.clone()));
            return respond(client, "403 Forbidden", Some(&why), &why).await;
        }
    };
    let ev = || event(proto, dest.name(), Some(port), dest.ip());
    let Some(rule) = shared.rules_for(&dest, port).next() else {
        let missing = dest.missing_rule(port);
        shared
            .sink
            .emit(ev().deny(format!("no rule allows {missing}")));
        let msg = format!("no rule allows {missing} (add --allow-host {missing})");
        return respond(client, "403 Forbidden", Some(&missing), &msg).await;
    };
    let rule = rule.to_string();
    let (upstream, upstream_ip) = match shared.dial(&dest, port).await {
        Ok(x) => x,
        Err(err) => {
            shared.sink.emit(ev().deny(err.text()));
            let (status, hdr) = match &err {
                DialError::Refused(s) => ("403 Forbidden", Some(s.as_str())),
                DialError::Failed(_) => ("502 Bad Gateway", None),
            };
            return respond(client, status, hdr, err.text()).await;
        }
    };
    let mut e = ev().allow(Some(rule));
    e.ip = Some(upstream_ip);
    shared.sink.emit(e);
    let rest = buf[head.len..].to_vec();
    if let Form::Absolute(h, p, path) = &head.form {
        let out = rewrite_for_origin(&head, h, *p, path);
        forward_one_request(shared, client, upstream, &out, head.body, rest).await;
        return;
    }
    if client
        .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
        .await
        .is_err()
    {
        return;
    }
    relay(shared, client, upstream, &rest).await;
}

/// One absolute-form request: the rewritten head and its body upstream, the response back,
/// then close (the upstream was told `Connection: close`). Further client bytes (a pipelined
/// request for perhaps another host) are read and discarded, never forwarded.
async fn forward_one_request(
    shared: &Shared,
    client: TcpStream,
    upstream: TcpStream,
    head: &[u8],
    body: Body,
    mut pending: Vec<u8>,
) {
    let (mut cr, mut cw) = client.into_split();
    let (mut ur, mut uw) = upstream.into_split();
    let sink = &shared.sink;
    let up = async {
        uw.write_all(head).await?;
        sink.bytes_up.fetch_add(head.len() as u64, Relaxed);
        let mut chunk = vec![0u8; RELAY_BUF];
        match body {
            Body::None => {}
            Body::Length(mut left) => loop {
                let take = usize::try_from(left)
                    .unwrap_or(usize::MAX)
                    .min(pending.len());
                uw.write_all(&pending[..take]).await?;
                sink.bytes_up.fetch_add(take as u64, Relaxed);
                pending.drain(..take);
                left -= take as u64;
                if left == 0 {
                    break;
                }
                let n = cr.read(&mut chunk).await?;
                if n == 0 {
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
                pending.extend_from_slice(&chunk[..n]);
            },
            Body::Chunked => loop {
                match chunk_step(&pending).map_err(io::Error::other)? {
                    Some((n, done)) => {
                        uw.write_all(&pending[..n]).await?;
                        sink.bytes_up.fetch_add(n as u64, Relaxed);
                        pending.drain(..n);
                        if done {
                            break;
                        }
                    }
                    None => {
                        let n = cr.read(&mut chunk).await?;
                        if n == 0 {
                            return Err(io::ErrorKind::UnexpectedEof.into());
                        }
                        pending.extend_from_slice(&chunk[..n]);
                    }
                }
            },
        }
        // Discard anything further until the client closes.
        while cr.read(&mut chunk).await? > 0 {}
        Ok::<(), io::Error>(())
    };
    let down = async {
        let mut buf = vec![0u8; RELAY_BUF];
        loop {
            let n = ur.read(&mut buf).await?;
            if n == 0 {
                return cw.shutdown().await;
            }
            cw.write_all(&buf[..n]).await?;
            sink.bytes_down.fetch_add(n as u64, Relaxed);
        }
    };
    tokio::pin!(up, down);
    tokio::select! {
        r = &mut up => if r.is_ok() { let _ = down.await; },
        r = &mut down => if r.is_ok() {
            // Response done: give the client a moment to close, then drop everything.
            let _ = timeout(Duration::from_secs(5), up).await;
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::parse_head;

    fn http(s: &str) -> Hello {
        Hello::Http(parse_head(s.as_bytes()).unwrap().unwrap())
    }

    fn shared(rules: &[&str], pins: &[(&str, &str)], own: &[&str]) -> Shared {
        Shared {
            rules: rules.iter().map(|r| r.parse().unwrap()).collect(),
            pins: pins
                .iter()
                .map(|(n, ip)| (n.to_string(), ip.parse().unwrap()))
                .collect(),
            fake: Mutex::new(FakeMap::new(crate::FAKE_V4, crate::FAKE_V6)),
            sink: Sink::new(None, None),
            upstream: Vec::new(),
            cache: Mutex::new(Default::default()),
            host_own: own.iter().map(|a| a.parse().unwrap()).collect(),
            limit: Arc::new(Semaphore::new(1)),
            pipes: Semaphore::new(0),
        }
    }

    #[test]
    fn special_addresses_need_a_rule_inside_the_range_or_a_pin() {
        let name = Dest::Name("a.test".into());
        let ok = |s: &Shared, d: &Dest, ip: &str| s.permitted(d, ip.parse().unwrap()).is_ok();
        let none = shared(&["a.test"], &[], &["93.184.215.14"]);
        assert!(ok(&none, &name, "8.8.8.8"));
        for ip in [
            "127.0.0.1",
            "::1",
            "169.254.169.254",
            "10.1.2.3",
            "::ffff:10.1.2.3",
            "100.64.1.1",
            "93.184.215.14",
        ] {
            assert!(!ok(&none, &name, ip), "{ip}");
        }
        let wide = shared(&["0.0.0.0/0", "::/0"], &[], &["93.184.215.14"]);
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "169.254.169.254",
            "::1",
            "fd00::1",
            "93.184.215.14",
        ] {
            assert!(
                !ok(&wide, &Dest::Ip(ip.parse().unwrap()), ip),
                "{ip} via a /0 rule"
            );
        }
        let inside = shared(
            &["10.0.0.0/8:5432", "93.184.215.14"],
            &[],
            &["93.184.215.14"],
        );
        assert!(ok(&inside, &name, "10.1.2.3"));
        assert!(ok(&inside, &name, "::ffff:10.1.2.3"));
        assert!(ok(&inside, &name, "93.184.215.14"));
        assert!(!ok(&inside, &name, "127.0.0.1"));
        let pinned = shared(&["a.test"], &[("a.test", "127.0.0.1")], &[]);
        assert!(ok(&pinned, &name, "127.0.0.1"));
        assert!(
            !ok(&pinned, &name, "127.0.0.2"),
            "the pin permits that address only"
        );
        assert!(
            !ok(&pinned, &Dest::Name("b.test".into()), "127.0.0.1"),
            "and for that name only"
        );
    }

    #[test]
    fn fake_addresses_map_back_to_names() {
        let s = shared(&["a.test"], &[], &[]);
        let (v4, v6) = s.fake.lock().unwrap().get_or_alloc("a.test").unwrap();
        assert_eq!(s.dest_of_ip(v4.into()), Ok(Dest::Name("a.test".into())));
        assert_eq!(s.dest_of_ip(v6.into()), Ok(Dest::Name("a.test".into())));
        assert_eq!(
            s.dest_of_ip(IpAddr::V6(v4.to_ipv6_mapped())),
            Ok(Dest::Name("a.test".into()))
        );
        assert!(
            s.dest_of_ip("198.18.0.77".parse().unwrap()).is_err(),
            "never handed out"
        );
        assert_eq!(
            s.dest_of_ip("8.8.8.8".parse().unwrap()),
            Ok(Dest::Ip("8.8.8.8".parse().unwrap()))
        );
    }

    /// Both relay paths (splice with a pipe pair available, the copy loop without) carry the
    /// first flight and both directions, and pass on each half-close.
    #[test]
    fn relay_paths_move_bytes_and_half_close() {
        for pipes in [0, 1] {
            let mut s = shared(&[], &[], &[]);
            s.pipes = Semaphore::new(pipes);
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let l1 = TcpListener::bind("127.0.0.1:0").await.unwrap();
                let l2 = TcpListener::bind("127.0.0.1:0").await.unwrap();
                let mut outside = TcpStream::connect(l1.local_addr().unwrap()).await.unwrap();
                let (client, _) = l1.accept().await.unwrap();
                let upstream = TcpStream::connect(l2.local_addr().unwrap()).await.unwrap();
                let (mut server, _) = l2.accept().await.unwrap();
                let check = async {
                    outside.write_all(b" there").await.unwrap();
                    outside.shutdown().await.unwrap();
                    let mut got = Vec::new();
                    server.read_to_end(&mut got).await.unwrap();
                    assert_eq!(got, b"hi there", "pipes {pipes}");
                    server.write_all(b"back").await.unwrap();
                    server.shutdown().await.unwrap();
                    let mut back = Vec::new();
                    outside.read_to_end(&mut back).await.unwrap();
                    assert_eq!(back, b"back", "pipes {pipes}");
                };
                tokio::join!(relay(&s, client, upstream, b"hi"), check);
            });
            let st = s.sink.stats();
            assert_eq!((st.bytes_up, st.bytes_down), (8, 4), "pipes {pipes}");
        }
    }

    #[test]
    fn hello_must_match_the_name() {
        let d = Dest::Name("a.com".into());
        let ok = |h: &Hello, explicit| check_hello(&d, 443, h, explicit).1.is_ok();
        assert!(ok(&Hello::Tls(Some("a.com".into())), false));
        assert!(!ok(&Hello::Tls(Some("b.com".into())), false));
        assert!(
            !ok(&Hello::Tls(Some("b.com".into())), true),
            "explicit port still checks SNI"
        );
        assert!(!ok(&Hello::Tls(None), false));
        assert!(ok(&http("GET / HTTP/1.1\r\nHost: a.com\r\n\r\n"), false));
        assert!(ok(
            &http("GET / HTTP/1.1\r\nHost: A.com.:443\r\n\r\n"),
            false
        ));
        assert!(!ok(&http("GET / HTTP/1.1\r\nHost: b.com\r\n\r\n"), false));
        assert!(!ok(&http("GET / HTTP/1.0\r\n\r\n"), false));
        assert!(!ok(
            &http("GET http://b.com/ HTTP/1.1\r\nHost: b.com\r\n\r\n"),
            false
        ));
        assert!(
            !ok(&Hello::Other, false),
            "default-port rules carry only TLS and HTTP"
        );
        assert!(
            ok(&Hello::Other, true),
            "an explicit port carries any protocol"
        );
        let ip = Dest::Ip("10.0.0.1".parse().unwrap());
        assert!(check_hello(&ip, 22, &Hello::Other, true).1.is_ok());
    }
}
