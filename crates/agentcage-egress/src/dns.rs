//! The DNS stub the sandbox sees at [`crate::DNS_ADDR`] (udp + tcp), and the small upstream
//! client the engine itself uses to resolve allowed names (hickory-proto messages).
//!
//! The stub never asks upstream: an allowed name gets its fake addresses, any other name
//! NXDOMAIN. So no query for a name the policy does not allow ever leaves the host (no DNS
//! exfiltration); only the engine's own resolution of allowed names, at connect time, does.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

use crate::engine::Shared;
use crate::event::event;
use crate::rules::canonical_name;

/// TTL of fake answers: the mapping never changes within a run.
const FAKE_TTL: u32 = 60;
/// How long the stub waits for a TCP query, and the engine for an upstream answer.
const TCP_QUERY_TIMEOUT: Duration = Duration::from_secs(10);
const UPSTREAM_UDP_TIMEOUT: Duration = Duration::from_secs(2);
const UPSTREAM_TCP_TIMEOUT: Duration = Duration::from_secs(4);
/// Queries per stub TCP connection.
const TCP_MAX_QUERIES: usize = 64;
/// Upstream answers are kept for their TTL, at most this long, in at most this many entries.
const MAX_CACHE_TTL: u32 = 60;
const CACHE_ENTRIES: usize = 1024;

/// The engine's cache of upstream answers (name -> addresses, expiry). A burst of connections
/// to one name costs one resolution; every connection still classifies the addresses, and a
/// TTL of 0 is never cached (a rebinding resolver gains nothing).
pub(crate) type Cache = HashMap<String, (Vec<IpAddr>, Instant)>;

fn cache_get(shared: &Shared, name: &str) -> Option<Vec<IpAddr>> {
    let cache = shared.cache.lock().ok()?;
    let (addrs, expiry) = cache.get(name)?;
    (Instant::now() < *expiry).then(|| addrs.clone())
}

fn cache_put(shared: &Shared, name: &str, addrs: &[IpAddr], ttl: u32) {
    let ttl = ttl.min(MAX_CACHE_TTL);
    if ttl == 0 {
        return;
    }
    let Ok(mut cache) = shared.cache.lock() else {
        return;
    };
    let now = Instant::now();
    if cache.len() >= CACHE_ENTRIES {
        cache.retain(|_, (_, expiry)| *expiry > now);
        if cache.len() >= CACHE_ENTRIES {
            cache.clear();
        }
    }
    let expiry = now + Duration::from_secs(u64::from(ttl));
    cache.insert(name.to_owned(), (addrs.to_vec(), expiry));
}

/// The canonical name of a DNS question name (labels as raw bytes, checked one by one so
/// that a label holding a '.' byte cannot pass for two labels).
pub(crate) fn name_from_wire(name: &Name) -> Result<String, String> {
    let mut joined = Vec::with_capacity(64);
    for (i, label) in name.iter().enumerate() {
        if label.contains(&b'.') {
            return Err("a label holds a '.' byte".into());
        }
        if i > 0 {
            joined.push(b'.');
        }
        joined.extend_from_slice(label);
    }
    canonical_name(&joined).map_err(|e| e.to_string())
}

fn response_to(req: &Message, code: ResponseCode) -> Message {
    let mut m = Message::new();
    m.set_id(req.id())
        .set_message_type(MessageType::Response)
        .set_op_code(req.op_code())
        .set_recursion_desired(req.recursion_desired())
        .set_recursion_available(true)
        .set_response_code(code);
    for q in req.queries() {
        m.add_query(q.clone());
    }
    m
}

/// The stub's answer to one query message; None: not worth an answer (not a query, or too
/// broken to echo an id).
pub(crate) fn answer(shared: &Shared, wire: &[u8]) -> Option<Vec<u8>> {
    let req = match Message::from_vec(wire) {
        Ok(m) => m,
        Err(_) if wire.len() >= 2 => {
            let id = u16::from_be_bytes([wire[0], wire[1]]);
            return Message::error_msg(id, OpCode::Query, ResponseCode::FormErr)
                .to_vec()
                .ok();
        }
        Err(_) => return None,
    };
    if req.message_type() != MessageType::Query {
        return None;
    }
    let resp = if req.op_code() != OpCode::Query {
        response_to(&req, ResponseCode::NotImp)
    } else if req.queries().len() != 1 {
        response_to(&req, ResponseCode::FormErr)
    } else {
        answer_query(shared, &req, &req.queries()[0])
    };
    resp.to_vec().ok()
}

fn answer_query(shared: &Shared, req: &Message, q: &Query) -> Message {
    let name = match name_from_wire(q.name()) {
        Ok(n) => n,
        Err(why) => {
            shared
                .sink
                .emit(event("dns", None, None, None).deny(format!("bad name: {why}")));
            return response_to(req, ResponseCode::NXDomain);
        }
    };
    let Some(rule) = shared.rules.iter().find(|r| r.names(&name)) else {
        shared
            .sink
            .emit(event("dns", Some(&name), None, None).deny(format!(
                "no rule names {name} (NXDOMAIN, nothing asked upstream)"
            )));
        return response_to(req, ResponseCode::NXDomain);
    };
    if q.query_class() != DNSClass::IN {
        shared
            .sink
            .emit(event("dns", Some(&name), None, None).deny("query class is not IN"));
        return response_to(req, ResponseCode::Refused);
    }
    let fake = shared
        .fake
        .lock()
        .ok()
        .and_then(|mut m| m.get_or_alloc(&name));
    let Some((v4, v6)) = fake else {
        shared
            .sink
            .emit(event("dns", Some(&name), None, None).deny("fake address range used up"));
        return response_to(req, ResponseCode::ServFail);
    };
    let mut resp = response_to(req, ResponseCode::NoError);
    resp.set_authoritative(true);
    let (rdata, ip) = match q.query_type() {
        RecordType::A => (Some(RData::A(A(v4))), Some(IpAddr::V4(v4))),
        RecordType::AAAA => (Some(RData::AAAA(AAAA(v6))), Some(IpAddr::V6(v6))),
        _ => (None, None),
    };
    if let Some(rdata) = rdata {
        // Echo the question's name as sent (0x20 case randomisation).
        resp.add_answer(Record::from_rdata(q.name().clone(), FAKE_TTL, rdata));
    }
    shared
        .sink
        .emit(event("dns", Some(&name), None, ip).allow(Some(rule.to_string())));
    resp
}

/// Serves the UDP stub until the runtime stops.
pub(crate) async fn serve_udp(shared: Arc<Shared>, sock: UdpSocket) {
    let mut buf = vec![0u8; 4096];
    loop {
        let (n, peer) = match sock.recv_from(&mut buf).await {
            Ok(x) => x,
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        if let Some(resp) = answer(&shared, &buf[..n]) {
            let _ = sock.send_to(&resp, peer).await;
        }
    }
}

/// Serves the TCP stub until the runtime stops.
pub(crate) async fn serve_tcp(shared: Arc<Shared>, listener: TcpListener) {
    loop {
        let Some((stream, permit)) = crate::engine::accept(&shared, &listener).await else {
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let _ =
                tokio::time::timeout(TCP_QUERY_TIMEOUT * 4, serve_tcp_conn(&shared, stream)).await;
        });
    }
}

async fn serve_tcp_conn(shared: &Shared, mut s: TcpStream) -> std::io::Result<()> {
    let mut buf = vec![0u8; 65_535];
    for _ in 0..TCP_MAX_QUERIES {
        let mut len = [0u8; 2];
        match tokio::time::timeout(TCP_QUERY_TIMEOUT, s.read_exact(&mut len)).await {
            Ok(Ok(_)) => {}
            _ => return Ok(()),
        }
        let n = usize::from(u16::from_be_bytes(len));
        tokio::time::timeout(TCP_QUERY_TIMEOUT, s.read_exact(&mut buf[..n]))
            .await
            .map_err(|_| std::io::ErrorKind::TimedOut)??;
        if let Some(resp) = answer(shared, &buf[..n]) {
            let Ok(rlen) = u16::try_from(resp.len()) else {
                return Ok(());
            };
            let mut out = rlen.to_be_bytes().to_vec();
            out.extend_from_slice(&resp);
            s.write_all(&out).await?;
        }
    }
    Ok(())
}

/// The host's resolvers from /etc/resolv.conf (port 53), in order.
pub(crate) fn host_resolvers() -> Vec<SocketAddr> {
    let text = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            (w.next() == Some("nameserver")).then(|| w.next()).flatten()
        })
        .filter_map(|a| a.split('%').next().and_then(|a| a.parse::<IpAddr>().ok()))
        .map(|ip| SocketAddr::new(ip, 53))
        .collect()
}

/// Resolves an allowed, canonical `name` for the engine's own dial: the pins for that name if
/// any, else a cached answer, else A and AAAA from the upstream resolver(s). Never called for a
/// name no rule allows.
pub(crate) async fn resolve(shared: &Shared, name: &str) -> Result<Vec<IpAddr>, String> {
    let pinned: Vec<IpAddr> = shared
        .pins
        .iter()
        .filter(|(n, _)| n == name)
        .map(|(_, ip)| *ip)
        .collect();
    if !pinned.is_empty() {
        return Ok(pinned);
    }
    if let Some(addrs) = cache_get(shared, name) {
        return Ok(addrs);
    }
    if shared.upstream.is_empty() {
        return Err(
            "no upstream resolver (no --net-dns and no nameserver in the host's resolv.conf)"
                .into(),
        );
    }
    let qname = Name::from_ascii(format!("{name}.")).map_err(|e| format!("name {name}: {e}"))?;
    let mut last = String::new();
    for &server in &shared.upstream {
        let (a, aaaa) = tokio::join!(
            query(server, &qname, RecordType::A),
            query(server, &qname, RecordType::AAAA)
        );
        let (addrs, ttl) = match (a, aaaa) {
            (Ok((mut v4, t4)), Ok((v6, t6))) => {
                v4.extend(v6);
                if v4.is_empty() {
                    return Err(format!("{name} has no address"));
                }
                (v4, t4.min(t6))
            }
            (Ok((v, t)), Err(e)) | (Err(e), Ok((v, t))) => {
                if v.is_empty() {
                    last = e;
                    continue;
                }
                (v, t)
            }
            (Err(e), Err(_)) => {
                last = e;
                continue;
            }
        };
        cache_put(shared, name, &addrs, ttl);
        return Ok(addrs);
    }
    Err(format!("resolving {name}: {last}"))
}

/// One question to one server: UDP from a fresh ephemeral port (connected, so only that
/// server's address and port are accepted) with a random id, TCP when truncated.
async fn query(
    server: SocketAddr,
    qname: &Name,
    qtype: RecordType,
) -> Result<(Vec<IpAddr>, u32), String> {
    let id: u16 = rand::random();
    let mut msg = Message::new();
    msg.set_id(id)
        .set_message_type(MessageType::Query)
        .set_op_code(OpCode::Query)
        .set_recursion_desired(true)
        .add_query(Query::query(qname.clone(), qtype));
    let wire = msg.to_vec().map_err(|e| e.to_string())?;
    let resp = match query_udp(server, &wire, id, qname, qtype).await? {
        Some(m) => m,
        None => query_tcp(server, &wire, id, qname, qtype).await?,
    };
    addresses(&resp, qname, qtype)
}

fn matches(resp: &Message, id: u16, qname: &Name, qtype: RecordType) -> bool {
    resp.id() == id
        && resp.message_type() == MessageType::Response
        && resp.queries().len() == 1
        && resp.queries()[0].name().eq_case(qname)
        && resp.queries()[0].query_type() == qtype
}

/// `Ok(None)`: truncated, ask over TCP.
async fn query_udp(
    server: SocketAddr,
    wire: &[u8],
    id: u16,
    qname: &Name,
    qtype: RecordType,
) -> Result<Option<Message>, String> {
    let bind: SocketAddr = if server.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    }
    .parse()
    .map_err(|_| "bind address".to_owned())?;
    let sock = UdpSocket::bind(bind)
        .await
        .map_err(|e| format!("udp socket: {e}"))?;
    sock.connect(server)
        .await
        .map_err(|e| format!("udp connect {server}: {e}"))?;
    sock.send(wire)
        .await
        .map_err(|e| format!("udp send to {server}: {e}"))?;
    let mut buf = vec![0u8; 4096];
    let deadline = tokio::time::Instant::now() + UPSTREAM_UDP_TIMEOUT;
    loop {
        let n = tokio::time::timeout_at(deadline, sock.recv(&mut buf))
            .await
            .map_err(|_| format!("no answer from {server}"))?
            .map_err(|e| format!("udp recv from {server}: {e}"))?;
        // Anything that is not the answer to this question is ignored (spoofing attempts).
        let Ok(resp) = Message::from_vec(&buf[..n]) else {
            continue;
        };
        if !matches(&resp, id, qname, qtype) {
            continue;
        }
        return Ok(if resp.truncated() { None } else { Some(resp) });
    }
}

async fn query_tcp(
    server: SocketAddr,
    wire: &[u8],
    id: u16,
    qname: &Name,
    qtype: RecordType,
) -> Result<Message, String> {
    let work = async {
        let mut s = TcpStream::connect(server)
            .await
            .map_err(|e| format!("tcp {server}: {e}"))?;
        let mut out = u16::try_from(wire.len())
            .map_err(|_| "query too long")?
            .to_be_bytes()
            .to_vec();
        out.extend_from_slice(wire);
        s.write_all(&out)
            .await
            .map_err(|e| format!("tcp {server}: {e}"))?;
        let mut len = [0u8; 2];
        s.read_exact(&mut len)
            .await
            .map_err(|e| format!("tcp {server}: {e}"))?;
        let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
        s.read_exact(&mut buf)
            .await
            .map_err(|e| format!("tcp {server}: {e}"))?;
        let resp = Message::from_vec(&buf).map_err(|e| format!("bad answer from {server}: {e}"))?;
        if matches(&resp, id, qname, qtype) {
            Ok(resp)
        } else {
            Err(format!("{server} answered another question"))
        }
    };
    tokio::time::timeout(UPSTREAM_TCP_TIMEOUT, work)
        .await
        .map_err(|_| format!("no answer from {server} over tcp"))?
}

/// The addresses for `qname` in an answer, following CNAMEs from `qname` only, and the
/// smallest TTL among the records used (0 when there are none).
fn addresses(
    resp: &Message,
    qname: &Name,
    qtype: RecordType,
) -> Result<(Vec<IpAddr>, u32), String> {
    match resp.response_code() {
        ResponseCode::NoError => {}
        ResponseCode::NXDomain => return Err("no such name (NXDOMAIN)".into()),
        code => return Err(format!("upstream answered {code}")),
    }
    let mut names = vec![qname.clone()];
    // A chain is at most as long as the answer section.
    for _ in 0..resp.answers().len() {
        let before = names.len();
        for r in resp.answers() {
            if let RData::CNAME(target) = r.data() {
                if names.iter().any(|n| n.eq_case(r.name()) || n == r.name())
                    && !names.iter().any(|n| n == &target.0)
                {
                    names.push(target.0.clone());
                }
            }
        }
        if names.len() == before {
            break;
        }
    }
    let mut out = Vec::new();
    let mut ttl = u32::MAX;
    for r in resp.answers() {
        if !names.iter().any(|n| n == r.name()) {
            continue;
        }
        ttl = ttl.min(r.ttl());
        match (r.data(), qtype) {
            (RData::A(a), RecordType::A) => out.push(IpAddr::V4(a.0)),
            (RData::AAAA(a), RecordType::AAAA) => out.push(IpAddr::V6(a.0)),
            _ => {}
        }
    }
    Ok((out, if ttl == u32::MAX { 0 } else { ttl }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_names() {
        let n = Name::from_labels(vec![b"API".as_slice(), b"Example", b"com"]).unwrap();
        assert_eq!(name_from_wire(&n).unwrap(), "api.example.com");
        let nul = Name::from_labels(vec![b"a\0b".as_slice(), b"com"]).unwrap();
        assert!(name_from_wire(&nul).is_err());
        let dot = Name::from_labels(vec![b"evil.allowed".as_slice(), b"com"]);
        if let Ok(dot) = dot {
            // A label holding a '.' byte never passes for two labels.
            if dot.num_labels() == 2 {
                assert!(name_from_wire(&dot).is_err());
            }
        }
    }
}
