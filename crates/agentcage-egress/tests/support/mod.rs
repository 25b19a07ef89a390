//! Loopback fixtures for the engine tests: listeners standing in for the ones the launcher
//! creates inside the sandbox, echo upstreams, a counting upstream DNS server, a DNS client.
//! Everything binds 127.0.0.0/8 with ephemeral ports; nothing is sent anywhere else.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use agentcage_egress::{Config, Engine, Event, Listeners, Rule};
use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use libtest_mimic::{Failed, Trial};

/// The fake IPv4 range the tests use instead of 198.18.0.0/15: loopback, so a test can
/// connect to a fake address without a network namespace.
pub const TEST_FAKE: (Ipv4Addr, u8) = (Ipv4Addr::new(127, 77, 0, 0), 16);
/// The first fake address the stub hands out.
pub const FAKE1: Ipv4Addr = Ipv4Addr::new(127, 77, 0, 1);
pub const FAKE2: Ipv4Addr = Ipv4Addr::new(127, 77, 0, 2);

pub const T: Duration = Duration::from_secs(5);

/// 127.0.0.1, where the upstreams listen (pins name it).
pub const LO: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

pub type TestResult = Result<(), Failed>;

pub fn err(e: impl std::fmt::Display) -> Failed {
    e.to_string().into()
}

pub fn ensure(cond: bool, msg: impl std::fmt::Display) -> TestResult {
    if cond {
        Ok(())
    } else {
        Err(err(msg))
    }
}

/// An upstream server on 127.0.0.1:`port` that echoes every connection and counts accepts.
pub struct Upstream {
    pub addr: SocketAddr,
    pub accepts: Arc<AtomicUsize>,
    /// The first bytes each connection sent (up to 64 KiB or the first read).
    pub first: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl Upstream {
    pub fn serve(listener: TcpListener) -> Upstream {
        let addr = listener.local_addr().expect("local addr");
        let accepts = Arc::new(AtomicUsize::new(0));
        let first = Arc::new(Mutex::new(Vec::new()));
        let (a, f) = (accepts.clone(), first.clone());
        thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut s) = conn else { continue };
                a.fetch_add(1, SeqCst);
                let f = f.clone();
                thread::spawn(move || {
                    let mut buf = vec![0u8; 65536];
                    let mut firsts = true;
                    loop {
                        match s.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                if firsts {
                                    f.lock().expect("lock").push(buf[..n].to_vec());
                                    firsts = false;
                                }
                                if s.write_all(&buf[..n]).is_err() {
                                    break;
                                }
                            }
                        }
                    }
                });
            }
        });
        Upstream {
            addr,
            accepts,
            first,
        }
    }

    pub fn accepts(&self) -> usize {
        self.accepts.load(SeqCst)
    }
}

/// An echo upstream on 127.0.0.1 with an ephemeral port.
pub fn upstream() -> Upstream {
    Upstream::serve(TcpListener::bind("127.0.0.1:0").expect("bind upstream"))
}

/// A capture listener on `ip` and an upstream on 127.0.0.1 with the same port number (the
/// engine dials the captured port on the resolved address).
pub fn capture_pair(ip: Ipv4Addr) -> (TcpListener, Upstream) {
    for _ in 0..200 {
        let cap = TcpListener::bind((ip, 0)).expect("bind capture");
        let port = cap.local_addr().expect("addr").port();
        if let Ok(up) = TcpListener::bind((Ipv4Addr::LOCALHOST, port)) {
            return (cap, Upstream::serve(up));
        }
    }
    panic!("no free port pair");
}

/// An echo upstream reached through the proxy: `name:PORT` allowed and pinned to 127.0.0.1,
/// no upstream resolver, no capture listener. Returns the fixture, the upstream and PORT.
pub fn proxied(name: &str) -> (Fixture, Upstream, u16) {
    let up = upstream();
    let port = up.addr.port();
    let f = Fixture::start(&[&format!("{name}:{port}")], &[(name, LO)], None, vec![]);
    (f, up, port)
}

/// An echo upstream reached through capture: `name:PORT` allowed and pinned to 127.0.0.1,
/// a capture listener on [`FAKE1`], and `name` already resolved (to [`FAKE1`], checked).
pub fn captured(name: &str) -> Result<(Fixture, Upstream, u16), Failed> {
    let (cap, up) = capture_pair(FAKE1);
    let port = up.addr.port();
    let f = Fixture::start(&[&format!("{name}:{port}")], &[(name, LO)], None, vec![cap]);
    ensure(f.resolve(&format!("{name}."))? == FAKE1, "fake")?;
    Ok((f, up, port))
}

/// `CONNECT authority` through the fixture's proxy: the stream and the response head.
pub fn connect_via_proxy(f: &Fixture, authority: &str) -> (TcpStream, String) {
    let mut s = connect(f.proxy);
    write!(
        s,
        "CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n"
    )
    .expect("write");
    let head = read_head(&mut s);
    (s, head)
}

/// A fake upstream DNS server: answers every A with 127.0.0.1 and every AAAA with ::1, and
/// counts the questions it saw (udp and tcp). Names starting with `tc-` get a truncated UDP
/// answer, so the client must retry over TCP.
pub struct UpstreamDns {
    pub addr: SocketAddr,
    pub queries: Arc<Mutex<Vec<String>>>,
    pub tcp_queries: Arc<AtomicUsize>,
}

fn dns_answer(req: &Message, q: &Mutex<Vec<String>>, udp: bool) -> Message {
    let mut resp = Message::new();
    resp.set_id(req.id())
        .set_message_type(MessageType::Response)
        .set_op_code(OpCode::Query)
        .set_recursion_available(true);
    for query in req.queries() {
        let name = query.name().to_ascii();
        q.lock().expect("lock").push(name.clone());
        resp.add_query(query.clone());
        if udp && name.starts_with("tc-") {
            resp.set_truncated(true);
            continue;
        }
        let rdata = match query.query_type() {
            RecordType::A => Some(RData::A(A(Ipv4Addr::LOCALHOST))),
            RecordType::AAAA => Some(RData::AAAA(AAAA("::1".parse().expect("v6")))),
            _ => None,
        };
        if let Some(r) = rdata {
            resp.add_answer(Record::from_rdata(query.name().clone(), 5, r));
        }
    }
    resp
}

impl UpstreamDns {
    pub fn start() -> UpstreamDns {
        let (sock, tcp) = loop {
            let u = UdpSocket::bind("127.0.0.1:0").expect("bind dns");
            if let Ok(t) = TcpListener::bind(u.local_addr().expect("addr")) {
                break (u, t);
            }
        };
        let addr = sock.local_addr().expect("addr");
        let queries = Arc::new(Mutex::new(Vec::new()));
        let tcp_queries = Arc::new(AtomicUsize::new(0));
        let q = queries.clone();
        thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok((n, peer)) = sock.recv_from(&mut buf) {
                let Ok(req) = Message::from_vec(&buf[..n]) else {
                    continue;
                };
                if let Ok(wire) = dns_answer(&req, &q, true).to_vec() {
                    let _ = sock.send_to(&wire, peer);
                }
            }
        });
        let (q, tq) = (queries.clone(), tcp_queries.clone());
        thread::spawn(move || {
            for conn in tcp.incoming() {
                let Ok(mut s) = conn else { continue };
                let mut len = [0u8; 2];
                if s.read_exact(&mut len).is_err() {
                    continue;
                }
                let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
                if s.read_exact(&mut buf).is_err() {
                    continue;
                }
                let Ok(req) = Message::from_vec(&buf) else {
                    continue;
                };
                tq.fetch_add(1, SeqCst);
                if let Ok(wire) = dns_answer(&req, &q, false).to_vec() {
                    let mut out = (wire.len() as u16).to_be_bytes().to_vec();
                    out.extend_from_slice(&wire);
                    let _ = s.write_all(&out);
                }
            }
        });
        UpstreamDns {
            addr,
            queries,
            tcp_queries,
        }
    }

    pub fn count(&self) -> usize {
        self.queries.lock().expect("lock").len()
    }
}

/// The inode of the socket behind `fd` (`socket:[INO]`).
pub fn socket_ino(fd: i32) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(format!("/proc/self/fd/{fd}"))
        .ok()
        .map(|m| m.ino())
}

/// Whether any fd of this process refers to the socket with inode `ino`.
pub fn socket_open(ino: u64) -> bool {
    let want = format!("socket:[{ino}]");
    std::fs::read_dir("/proc/self/fd")
        .into_iter()
        .flatten()
        .flatten()
        .any(|e| std::fs::read_link(e.path()).is_ok_and(|l| l.as_os_str() == want.as_str()))
}

/// A running engine with its "inside" addresses.
pub struct Fixture {
    pub engine: Option<Engine>,
    pub proxy: SocketAddr,
    /// The inode of the proxy listener's socket (to tell whether any fd of ours still holds
    /// it: after a stop, another test may already listen on the same port).
    pub proxy_ino: u64,
    pub dns: SocketAddr,
    pub denials: Arc<Mutex<Vec<Event>>>,
    pub log: std::path::PathBuf,
}

impl Fixture {
    pub fn start(
        rules: &[&str],
        pins: &[(&str, IpAddr)],
        upstream_dns: Option<SocketAddr>,
        capture: Vec<TcpListener>,
    ) -> Fixture {
        let rules: Vec<Rule> = rules.iter().map(|r| r.parse().expect("rule")).collect();
        let proxy = TcpListener::bind("127.0.0.1:0").expect("proxy");
        let (dns_udp, dns_tcp) = loop {
            let u = UdpSocket::bind("127.0.0.1:0").expect("dns udp");
            if let Ok(t) = TcpListener::bind(u.local_addr().expect("addr")) {
                break (u, t);
            }
        };
        let proxy_addr = proxy.local_addr().expect("addr");
        let proxy_ino = socket_ino(proxy.as_raw_fd()).expect("proxy socket inode");
        let dns = dns_udp.local_addr().expect("addr");
        let denials = Arc::new(Mutex::new(Vec::new()));
        let d = denials.clone();
        static N: AtomicUsize = AtomicUsize::new(0);
        let log = std::env::temp_dir().join(format!(
            "agentcage-egress-test-{}-{}.log",
            std::process::id(),
            N.fetch_add(1, SeqCst)
        ));
        let _ = std::fs::remove_file(&log);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("log");
        let config = Config {
            rules,
            pins: pins.iter().map(|(n, ip)| (n.to_string(), *ip)).collect(),
            upstream_dns,
            log: Some(file),
            on_deny: Some(Box::new(move |e: &Event| {
                d.lock().expect("lock").push(e.clone())
            })),
        };
        let tcp = capture
            .into_iter()
            .map(|l| (l.local_addr().expect("addr").port(), OwnedFd::from(l)))
            .collect();
        let listeners = Listeners {
            tcp,
            proxy: proxy.into(),
            dns_udp: dns_udp.into(),
            dns_tcp: dns_tcp.into(),
        };
        let engine = agentcage_egress::start_with_fake_range(config, listeners, TEST_FAKE)
            .expect("engine starts");
        Fixture {
            engine: Some(engine),
            proxy: proxy_addr,
            proxy_ino,
            dns,
            denials,
            log,
        }
    }

    pub fn engine(&self) -> &Engine {
        self.engine.as_ref().expect("running")
    }

    /// The log's JSON lines so far.
    pub fn log_lines(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("log line is JSON"))
            .collect()
    }

    pub fn denied_reasons(&self) -> Vec<String> {
        self.denials
            .lock()
            .expect("lock")
            .iter()
            .map(|e| {
                format!(
                    "{} {:?}: {}",
                    e.proto,
                    e.name,
                    e.reason.clone().unwrap_or_default()
                )
            })
            .collect()
    }

    /// Asks the stub over UDP (or TCP).
    pub fn query(&self, name: &str, qtype: RecordType, tcp: bool) -> Message {
        let mut m = Message::new();
        m.set_id(0x4242)
            .set_message_type(MessageType::Query)
            .set_op_code(OpCode::Query)
            .set_recursion_desired(true)
            .add_query(Query::query(Name::from_ascii(name).expect("name"), qtype));
        let wire = m.to_vec().expect("wire");
        let resp = if tcp {
            raw_tcp_query(self.dns, &wire)
        } else {
            raw_udp_query(self.dns, &wire)
        };
        Message::from_vec(&resp).expect("parse answer")
    }

    /// The fake IPv4 the stub answers for `name`.
    pub fn resolve(&self, name: &str) -> Result<Ipv4Addr, Failed> {
        let m = self.query(name, RecordType::A, false);
        match m.answers().first().map(|r| r.data()) {
            Some(RData::A(a)) => Ok(a.0),
            _ => Err(err(format!(
                "{name}: no A answer ({:?})",
                m.response_code()
            ))),
        }
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if let Some(e) = self.engine.take() {
            e.stop();
        }
        let _ = std::fs::remove_file(&self.log);
    }
}

pub fn raw_udp_query(dns: SocketAddr, wire: &[u8]) -> Vec<u8> {
    let s = UdpSocket::bind("127.0.0.1:0").expect("udp");
    s.set_read_timeout(Some(T)).expect("timeout");
    s.send_to(wire, dns).expect("send");
    let mut buf = [0u8; 4096];
    let n = s.recv(&mut buf).expect("stub answers");
    buf[..n].to_vec()
}

pub fn raw_tcp_query(dns: SocketAddr, wire: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(dns).expect("tcp dns");
    s.set_read_timeout(Some(T)).expect("timeout");
    let mut out = (wire.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(wire);
    s.write_all(&out).expect("send");
    let mut len = [0u8; 2];
    s.read_exact(&mut len).expect("len");
    let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
    s.read_exact(&mut buf).expect("body");
    buf
}

pub fn rcode(m: &Message) -> ResponseCode {
    m.response_code()
}

pub fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect_timeout(&addr, T).expect("connect");
    s.set_read_timeout(Some(T)).expect("timeout");
    s
}

/// Connects, sends `bytes` and reads: true when nothing came back (refused by a reset at
/// any point, or EOF). The engine may reset before the connect call has returned.
pub fn refused(addr: SocketAddr, bytes: &[u8]) -> bool {
    let mut s = match TcpStream::connect_timeout(&addr, T) {
        Ok(s) => s,
        Err(e) => return e.kind() == std::io::ErrorKind::ConnectionReset,
    };
    let _ = s.set_read_timeout(Some(T));
    let _ = s.write_all(bytes);
    read_all(&mut s).is_empty()
}

/// Reads until EOF, a reset or the timeout; returns what arrived.
pub fn read_all(s: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = s.read(&mut buf) {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    out
}

/// Reads an HTTP response head (up to the blank line).
pub fn read_head(s: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let mut b = [0u8; 1];
    while !out.ends_with(b"\r\n\r\n") {
        match s.read(&mut b) {
            Ok(1) => out.push(b[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Sends `payload` through an open tunnel and expects it echoed.
pub fn echo_roundtrip(s: &mut TcpStream, payload: &[u8]) -> TestResult {
    s.write_all(payload).map_err(err)?;
    let mut got = vec![0u8; payload.len()];
    s.read_exact(&mut got).map_err(err)?;
    ensure(got == payload, "echo differs")
}

/// Waits until `f` holds (up to 5 s).
pub fn eventually(mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < T {
        if f() {
            return true;
        }
        thread::sleep(Duration::from_millis(10));
    }
    false
}

pub type TestFn = fn() -> TestResult;

const CHILD_ENV: &str = "AGENTCAGE_EGRESS_TEST_CHILD";

/// Each test in-process (as whoever runs the tests), and, when that is root, once more as
/// uid/gid 65534 in a child process running this same test binary with `--exact`.
pub fn trials(tests: &[(&'static str, TestFn)]) -> Vec<Trial> {
    let child = std::env::var_os(CHILD_ENV).is_some();
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let mut out = Vec::new();
    for &(name, f) in tests {
        out.push(Trial::test(name, f));
        if child {
            continue;
        }
        let skip = (!root).then_some("not root: cannot switch to uid 65534");
        if let Some(why) = skip {
            eprintln!("skip as_nobody::{name}: {why}");
        }
        out.push(
            Trial::test(format!("as_nobody::{name}"), move || as_nobody(name))
                .with_ignored_flag(skip.is_some()),
        );
    }
    out
}

fn as_nobody(name: &str) -> TestResult {
    use std::os::unix::process::CommandExt;
    let exe = std::env::current_exe().map_err(err)?;
    let out = std::process::Command::new(&exe)
        .args(["--exact", name, "--test-threads", "1"])
        .env(CHILD_ENV, "1")
        .uid(65534)
        .gid(65534)
        .output()
        .map_err(|e| err(format!("run {} as 65534: {e}", exe.display())))?;
    let text = String::from_utf8_lossy(&out.stdout);
    ensure(
        out.status.success() && text.contains("1 passed"),
        format!(
            "as uid 65534: {}\n{text}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}
