//! End-to-end engine tests on loopback: the launcher's listeners are stood in for by sockets
//! on 127.0.0.0/8, upstreams are echo servers on 127.0.0.1 reached through pins, and the
//! upstream resolver is a counting DNS server on 127.0.0.1. Nothing leaves loopback.

mod support;

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::thread;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{RData, RecordType};
use support::*;

fn main() {
    let args = libtest_mimic::Arguments::from_args();
    let tests: &[(&'static str, TestFn)] = &[
        (
            "dns_allowed_fake_denied_nxdomain_no_upstream",
            dns_allowed_fake_denied_nxdomain_no_upstream,
        ),
        ("dns_name_variants", dns_name_variants),
        ("proxy_connect_allowed", proxy_connect_allowed),
        ("proxy_connect_denied_403", proxy_connect_denied_403),
        ("proxy_absolute_form", proxy_absolute_form),
        (
            "proxy_absolute_denied_403_header",
            proxy_absolute_denied_403_header,
        ),
        (
            "proxy_ambiguous_requests_refused",
            proxy_ambiguous_requests_refused,
        ),
        ("proxy_socks_refused", proxy_socks_refused),
        ("capture_tls_allowed", capture_tls_allowed),
        ("capture_sni_mismatch_refused", capture_sni_mismatch_refused),
        ("capture_http_host_checked", capture_http_host_checked),
        (
            "capture_opaque_needs_explicit_port",
            capture_opaque_needs_explicit_port,
        ),
        (
            "capture_literal_ip_needs_ip_rule",
            capture_literal_ip_needs_ip_rule,
        ),
        (
            "rebinding_to_loopback_refused",
            rebinding_to_loopback_refused,
        ),
        ("concurrent_200", concurrent_200),
        ("events_logged", events_logged),
        ("relay_bulk_and_half_close", relay_bulk_and_half_close),
        (
            "upstream_resolution_and_ip_rules",
            upstream_resolution_and_ip_rules,
        ),
        ("start_checks_its_inputs", start_checks_its_inputs),
        ("stop_closes_everything", stop_closes_everything),
    ];
    libtest_mimic::run(&args, trials(tests)).exit();
}

/// Allowed names get fake addresses (A and AAAA), other qtypes an empty NOERROR; denied
/// names NXDOMAIN; and the upstream resolver never hears of any of it.
fn dns_allowed_fake_denied_nxdomain_no_upstream() -> TestResult {
    let up = UpstreamDns::start();
    let f = Fixture::start(
        &["allowed.test", "*.wild.test:22"],
        &[],
        Some(up.addr),
        vec![],
    );
    ensure(
        f.resolve("allowed.test.")? == FAKE1,
        "first name gets the first fake address",
    )?;
    ensure(
        f.resolve("x.wild.test.")? == FAKE2,
        "second name gets the next one",
    )?;
    ensure(
        f.resolve("ALLOWED.test.")? == FAKE1,
        "same name, same address",
    )?;
    let m = f.query("allowed.test.", RecordType::AAAA, false);
    match m.answers().first().map(|r| r.data()) {
        Some(RData::AAAA(a)) => ensure(
            a.0 == "fd61:6763:6167::1"
                .parse::<std::net::Ipv6Addr>()
                .map_err(err)?,
            format!("AAAA {a}"),
        )?,
        other => return Err(err(format!("no AAAA: {other:?}"))),
    }
    let m = f.query("allowed.test.", RecordType::MX, false);
    ensure(
        rcode(&m) == ResponseCode::NoError && m.answers().is_empty(),
        "MX: empty NOERROR",
    )?;
    let m = f.query("allowed.test.", RecordType::A, true);
    ensure(m.answers().len() == 1, "TCP query answered")?;
    for denied in [
        "evil.test.",
        "wild.test.",
        "allowed.test.evil.",
        "a.allowed.test.",
    ] {
        for tcp in [false, true] {
            let m = f.query(denied, RecordType::A, tcp);
            ensure(
                rcode(&m) == ResponseCode::NXDomain,
                format!("{denied}: {:?}", rcode(&m)),
            )?;
            ensure(m.answers().is_empty(), "no answers")?;
        }
    }
    let m = f.query("evil.test.", RecordType::TXT, false);
    ensure(
        rcode(&m) == ResponseCode::NXDomain,
        "TXT for a denied name: NXDOMAIN",
    )?;
    ensure(
        up.count() == 0,
        format!("upstream saw {:?}", up.queries.lock().map_err(err)?),
    )?;
    let st = f.engine().stats();
    ensure(
        st.dns_refused >= 9 && st.dns_answered >= 6,
        format!("{st:?}"),
    )
}

/// Trailing dot, upper case, NUL and '.'-inside-a-label variants in raw DNS wire format.
fn dns_name_variants() -> TestResult {
    let up = UpstreamDns::start();
    let f = Fixture::start(&["allowed.test"], &[], Some(up.addr), vec![]);
    // id, flags (RD), qd=1, an=0, ns=0, ar=0, then the question, type A, class IN.
    let wire = |labels: &[&[u8]]| {
        let mut w = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        for l in labels {
            w.push(l.len() as u8);
            w.extend_from_slice(l);
        }
        w.extend_from_slice(&[0, 0, 1, 0, 1]);
        w
    };
    let ask = |labels: &[&[u8]]| {
        hickory_proto::op::Message::from_vec(&raw_udp_query(f.dns, &wire(labels))).map_err(err)
    };
    let m = ask(&[b"AlLoWeD", b"TEST"])?;
    ensure(m.answers().len() == 1, "mixed case answered")?;
    // The answer echoes the question's case.
    ensure(
        m.answers()[0].name().to_ascii() == "AlLoWeD.TEST.",
        "case echoed",
    )?;
    for bad in [
        &[b"allowed\0".as_slice(), b"test".as_slice()][..],
        &[
            b"evil".as_slice(),
            b"allowed\0".as_slice(),
            b"test".as_slice(),
        ][..],
        &[b"allowed.test\0".as_slice(), b"evil".as_slice()][..],
        &[b"evil.allowed".as_slice(), b"test".as_slice()][..],
        &[b"allowed".as_slice(), b"test\0".as_slice()][..],
        &[b"allowed ".as_slice(), b"test".as_slice()][..],
    ] {
        let m = ask(bad)?;
        ensure(
            rcode(&m) == ResponseCode::NXDomain,
            format!("{bad:?}: {:?}", rcode(&m)),
        )?;
    }
    ensure(up.count() == 0, "upstream asked nothing")
}

fn proxy_connect_allowed() -> TestResult {
    let up = upstream();
    let port = up.addr.port();
    let dns = UpstreamDns::start();
    let f = Fixture::start(
        &[&format!("allowed.test:{port}")],
        &[("allowed.test", LO)],
        Some(dns.addr),
        vec![],
    );
    for authority in [
        format!("allowed.test:{port}"),
        format!("ALLOWED.Test.:{port}"),
    ] {
        let (mut s, head) = connect_via_proxy(&f, &authority);
        ensure(
            head.starts_with("HTTP/1.1 200"),
            format!("{authority}: {head}"),
        )?;
        echo_roundtrip(&mut s, b"hello through the tunnel")?;
    }
    ensure(up.accepts() == 2, "two tunnels")?;
    ensure(dns.count() == 0, "a pin short-circuits resolution")?;
    let st = f.engine().stats();
    ensure(st.allowed == 2 && st.bytes_up >= 48, format!("{st:?}"))
}

fn proxy_connect_denied_403() -> TestResult {
    let up = upstream();
    let port = up.addr.port();
    let dns = UpstreamDns::start();
    let f = Fixture::start(
        &[&format!("allowed.test:{port}")],
        &[("allowed.test", LO), ("evil.test", LO)],
        Some(dns.addr),
        vec![],
    );
    for authority in [
        format!("evil.test:{port}"),
        format!("allowed.test:{}", port.wrapping_add(1).max(1)),
        format!("allowed.test.evil.test:{port}"),
        format!("127.0.0.1:{port}"),
        format!("[::1]:{port}"),
    ] {
        let (mut s, head) = connect_via_proxy(&f, &authority);
        ensure(
            head.starts_with("HTTP/1.1 403"),
            format!("{authority}: {head}"),
        )?;
        ensure(
            head.contains("X-Agentcage-Deny: "),
            format!("{authority}: {head}"),
        )?;
        let body = String::from_utf8_lossy(&read_all(&mut s)).into_owned();
        ensure(
            body.contains("no rule allows"),
            format!("{authority}: body {body}"),
        )?;
    }
    let (_, head) = connect_via_proxy(&f, &format!("evil.test:{port}"));
    ensure(
        head.contains(&format!("X-Agentcage-Deny: evil.test:{port}\r\n")),
        head,
    )?;
    ensure(up.accepts() == 0, "upstream saw no connection")?;
    ensure(dns.count() == 0, "nothing resolved for denied names")
}

fn proxy_absolute_form() -> TestResult {
    let (f, _up, port) = proxied("allowed.test");
    let mut s = connect(f.proxy);
    write!(
        s,
        "POST http://Allowed.Test:{port}/x?y HTTP/1.1\r\nHost: allowed.test:{port}\r\nProxy-Connection: keep-alive\r\nContent-Length: 5\r\n\r\nhello"
    )
    .map_err(err)?;
    // The echo upstream sends the forwarded request back as its "response".
    let mut got = vec![0u8; 4096];
    let mut n = 0;
    while !got[..n].ends_with(b"hello") {
        let k = s.read(&mut got[n..]).map_err(err)?;
        ensure(k > 0, "EOF before the echoed body")?;
        n += k;
    }
    let text = String::from_utf8_lossy(&got[..n]).into_owned();
    let want = format!("POST /x?y HTTP/1.1\r\nHost: allowed.test:{port}\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello");
    ensure(text == want, format!("forwarded {text:?}"))?;
    // Chunked body.
    let mut s = connect(f.proxy);
    write!(s, "POST http://allowed.test:{port}/c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
        .map_err(err)?;
    let mut got = vec![0u8; 4096];
    let mut n = 0;
    while !got[..n].ends_with(b"0\r\n\r\n") {
        let k = s.read(&mut got[n..]).map_err(err)?;
        ensure(k > 0, "EOF before the echoed chunks")?;
        n += k;
    }
    ensure(
        String::from_utf8_lossy(&got[..n]).contains("\r\n\r\n5\r\nhello\r\n0\r\n\r\n"),
        "chunks forwarded",
    )
}

fn proxy_absolute_denied_403_header() -> TestResult {
    let up = upstream();
    let port = up.addr.port();
    let dns = UpstreamDns::start();
    let f = Fixture::start(
        &[&format!("allowed.test:{port}")],
        &[("evil.test", LO)],
        Some(dns.addr),
        vec![],
    );
    let mut s = connect(f.proxy);
    write!(
        s,
        "GET http://evil.test:{port}/ HTTP/1.1\r\nHost: evil.test:{port}\r\n\r\n"
    )
    .map_err(err)?;
    let head = read_head(&mut s);
    ensure(head.starts_with("HTTP/1.1 403 Forbidden\r\n"), head.clone())?;
    ensure(
        head.contains(&format!("X-Agentcage-Deny: evil.test:{port}\r\n")),
        head,
    )?;
    let body = String::from_utf8_lossy(&read_all(&mut s)).into_owned();
    ensure(
        body.contains(&format!("--allow-host evil.test:{port}")),
        body,
    )?;
    ensure(
        up.accepts() == 0 && dns.count() == 0,
        "nothing reached upstream",
    )
}

fn proxy_ambiguous_requests_refused() -> TestResult {
    let up = upstream();
    let p = up.addr.port();
    let f = Fixture::start(
        &[&format!("allowed.test:{p}")],
        &[("allowed.test", LO), ("evil.test", LO)],
        None,
        vec![],
    );
    let requests = [
        format!("GET http://allowed.test:{p}/ HTTP/1.1\r\nHost: allowed.test:{p}\r\nHost: evil.test:{p}\r\n\r\n"),
        format!("GET http://allowed.test:{p}/ HTTP/1.1\r\nHost: evil.test:{p}\r\n\r\n"),
        format!("GET http://allowed.test:{p}/ HTTP/1.1\r\nHost: evil.test:{p}\r\nHost: allowed.test:{p}\r\n\r\n"),
        format!("GET http://evil.test\0.allowed.test:{p}/ HTTP/1.1\r\n\r\n"),
        format!("GET http://allowed.test:{p}/ HTTP/1.1\r\nX: a\r\n b\r\n\r\n"),
        format!("POST http://allowed.test:{p}/ HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"),
        format!("POST http://allowed.test:{p}/ HTTP/1.1\r\nTransfer-Encoding: chunked, identity\r\n\r\n"),
        format!("CONNECT allowed.test:{p} HTTP/1.1\r\nHost: evil.test:{p}\r\n\r\n"),
        format!("CONNECT allowed.test\0evil:{p} HTTP/1.1\r\n\r\n"),
        format!("GET http://user@allowed.test:{p}/ HTTP/1.1\r\n\r\n"),
        "GET / HTTP/1.1\r\nHost: allowed.test\r\n\r\n".to_owned(),
    ];
    for req in &requests {
        let mut s = connect(f.proxy);
        s.write_all(req.as_bytes()).map_err(err)?;
        let head = read_head(&mut s);
        ensure(
            head.starts_with("HTTP/1.1 400"),
            format!("{req:?}: {head:?}"),
        )?;
    }
    // Bad chunking after an allowed head: the body never completes upstream.
    let mut s = connect(f.proxy);
    write!(
        s,
        "POST http://allowed.test:{p}/ HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"
    )
    .map_err(err)?;
    let _ = read_all(&mut s);
    let firsts = up.first.lock().map_err(err)?.clone();
    ensure(
        firsts.iter().all(|b| !b.windows(2).any(|w| w == b"zz")),
        "bad chunk not forwarded",
    )?;
    ensure(
        up.accepts() <= 1,
        format!("upstream accepts {}", up.accepts()),
    )
}

fn proxy_socks_refused() -> TestResult {
    let (f, up, _) = proxied("allowed.test");
    let mut s = connect(f.proxy);
    s.write_all(&[0x05, 0x01, 0x00]).map_err(err)?;
    let got = read_all(&mut s);
    ensure(
        got == [0x05, 0xff],
        format!("SOCKS5 greeting answered {got:?}"),
    )?;
    let mut s = connect(f.proxy);
    let mut req = vec![0x04, 0x01];
    req.extend_from_slice(&up.addr.port().to_be_bytes());
    req.extend_from_slice(&[127, 0, 0, 1, 0]);
    s.write_all(&req).map_err(err)?;
    let got = read_all(&mut s);
    ensure(
        got.get(1) == Some(&0x5b),
        format!("SOCKS4 answered {got:?}"),
    )?;
    ensure(up.accepts() == 0, "no upstream connection")?;
    ensure(
        f.denied_reasons()
            .iter()
            .filter(|r| r.contains("SOCKS"))
            .count()
            == 2,
        "logged",
    )
}

/// A real-looking ClientHello with the right SNI, sent to the fake address the stub gave
/// out, reaches the (pinned, loopback) upstream byte for byte.
fn capture_tls_allowed() -> TestResult {
    let (cap, up) = capture_pair(FAKE1);
    let port = up.addr.port();
    let dns = UpstreamDns::start();
    let f = Fixture::start(
        &[&format!("allowed.test:{port}")],
        &[("allowed.test", LO)],
        Some(dns.addr),
        vec![cap],
    );
    let fake = f.resolve("allowed.test.")?;
    ensure(fake == FAKE1, "fake address")?;
    let mut s = connect(SocketAddr::new(fake.into(), port));
    let hello = agentcage_egress::client_hello(Some(b"allowed.test"));
    s.write_all(&hello).map_err(err)?;
    let mut got = vec![0u8; hello.len()];
    s.read_exact(&mut got).map_err(err)?;
    ensure(got == hello, "echoed ClientHello")?;
    echo_roundtrip(&mut s, b"after the hello")?;
    ensure(
        up.first.lock().map_err(err)?.first() == Some(&hello),
        "upstream got the exact hello",
    )?;
    ensure(dns.count() == 0, "pinned: no upstream DNS")
}

fn capture_sni_mismatch_refused() -> TestResult {
    let (cap, up) = capture_pair(FAKE1);
    let port = up.addr.port();
    let f = Fixture::start(
        &[
            &format!("allowed.test:{port}"),
            &format!("other.test:{port}"),
        ],
        &[("allowed.test", LO), ("other.test", LO)],
        None,
        vec![cap],
    );
    ensure(f.resolve("allowed.test.")? == FAKE1, "fake")?;
    for sni in [
        Some(b"other.test".as_slice()),
        Some(b"evil.test"),
        None,
        Some(b"allowed.test.evil"),
    ] {
        let hello = agentcage_egress::client_hello(sni);
        let addr = SocketAddr::new(FAKE1.into(), port);
        ensure(refused(addr, &hello), format!("{sni:?}: relayed"))?;
    }
    ensure(up.accepts() == 0, "upstream saw no connection")?;
    let reasons = f.denied_reasons();
    ensure(
        reasons.iter().filter(|r| r.starts_with("tls")).count() == 4,
        format!("{reasons:?}"),
    )
}

fn capture_http_host_checked() -> TestResult {
    let (cap, up) = capture_pair(FAKE1);
    let port = up.addr.port();
    let f = Fixture::start(
        &[&format!("allowed.test:{port}")],
        &[("allowed.test", LO), ("evil.test", LO)],
        None,
        vec![cap],
    );
    ensure(f.resolve("allowed.test.")? == FAKE1, "fake")?;
    for bad in [
        format!("GET / HTTP/1.1\r\nHost: evil.test:{port}\r\n\r\n"),
        "GET / HTTP/1.0\r\n\r\n".to_owned(),
        "GET / HTTP/1.1\r\nHost: allowed.test\r\nHost: evil.test\r\n\r\n".to_owned(),
        "GET / HTTP/1.1\r\nHost: allowed.test\0.evil.test\r\n\r\n".to_owned(),
        "GET http://evil.test/ HTTP/1.1\r\nHost: allowed.test\r\n\r\n".to_owned(),
        "GET / HTTP/1.1\r\nHost: allowed.test\r\nX: a\r\n b\r\n\r\n".to_owned(),
    ] {
        let addr = SocketAddr::new(FAKE1.into(), port);
        ensure(
            refused(addr, bad.as_bytes()),
            format!("{bad:?} was relayed"),
        )?;
    }
    ensure(up.accepts() == 0, "upstream saw no connection")?;
    let mut s = connect(SocketAddr::new(FAKE1.into(), port));
    let good = format!("GET / HTTP/1.1\r\nHost: Allowed.Test.:{port}\r\n\r\n");
    s.write_all(good.as_bytes()).map_err(err)?;
    let mut got = vec![0u8; good.len()];
    s.read_exact(&mut got).map_err(err)?;
    ensure(
        got == good.as_bytes() && up.accepts() == 1,
        "matching Host relayed",
    )
}

fn capture_opaque_needs_explicit_port() -> TestResult {
    let (_f, up, port) = captured("git.test")?;
    let mut s = connect(SocketAddr::new(FAKE1.into(), port));
    echo_roundtrip(&mut s, b"SSH-2.0-OpenSSH_9.6\r\n")?;
    // A server-speaks-first client that sends nothing still connects (after a short wait).
    let mut s = connect(SocketAddr::new(FAKE1.into(), port));
    thread::sleep(std::time::Duration::from_millis(600));
    ensure(
        eventually(|| up.accepts() == 2),
        "silent client connected upstream",
    )?;
    echo_roundtrip(&mut s, b"late bytes")?;
    // A TLS hello with another SNI is still refused on an explicit port.
    let hello = agentcage_egress::client_hello(Some(b"evil.test"));
    let no = refused(SocketAddr::new(FAKE1.into(), port), &hello);
    ensure(no && up.accepts() == 2, "SNI checked on explicit ports")
}

fn capture_literal_ip_needs_ip_rule() -> TestResult {
    // A capture listener on a non-fake loopback address stands for a literal-IP connect.
    let (cap, up) = capture_pair(Ipv4Addr::new(127, 0, 0, 2));
    let port = up.addr.port();
    // The name rule must not imply the IP the name resolves to.
    let f = Fixture::start(
        &[&format!("allowed.test:{port}")],
        &[("allowed.test", LO)],
        None,
        vec![cap],
    );
    let addr = SocketAddr::new(Ipv4Addr::new(127, 0, 0, 2).into(), port);
    ensure(refused(addr, b"SSH-2.0-x\r\n"), "literal IP relayed")?;
    ensure(up.accepts() == 0, "upstream saw no connection")?;
    let reasons = f.denied_reasons();
    ensure(
        reasons
            .iter()
            .any(|r| r.contains(&format!("no rule allows 127.0.0.2:{port}"))),
        format!("{reasons:?}"),
    )
}

/// An allowed name whose upstream resolver answers 127.0.0.1 (no pin): refused at dial time,
/// via the proxy and via capture; the upstream listener sees nothing.
fn rebinding_to_loopback_refused() -> TestResult {
    let (cap, up) = capture_pair(FAKE1);
    let port = up.addr.port();
    let dns = UpstreamDns::start();
    let f = Fixture::start(
        &[&format!("rebind.test:{port}")],
        &[],
        Some(dns.addr),
        vec![cap],
    );
    let (_, head) = connect_via_proxy(&f, &format!("rebind.test:{port}"));
    ensure(head.starts_with("HTTP/1.1 403"), head.clone())?;
    ensure(head.contains("loopback"), head)?;
    ensure(f.resolve("rebind.test.")? == FAKE1, "fake")?;
    let hello = agentcage_egress::client_hello(Some(b"rebind.test"));
    ensure(
        refused(SocketAddr::new(FAKE1.into(), port), &hello),
        "relayed",
    )?;
    ensure(up.accepts() == 0, "upstream saw no connection")?;
    let asked = dns.queries.lock().map_err(err)?.clone();
    ensure(
        !asked.is_empty() && asked.iter().all(|q| q == "rebind.test."),
        format!("asked {asked:?}"),
    )
}

fn concurrent_200() -> TestResult {
    let (f, up, port) = captured("allowed.test")?;
    let mut held = Vec::new();
    for i in 0..200 {
        let mut s = if i % 2 == 0 {
            let (s, head) = connect_via_proxy(&f, &format!("allowed.test:{port}"));
            ensure(head.starts_with("HTTP/1.1 200"), head)?;
            s
        } else {
            connect(SocketAddr::new(FAKE1.into(), port))
        };
        echo_roundtrip(&mut s, format!("SSH-2.0-conn{i}\r\n").as_bytes())?;
        held.push(s);
    }
    // All 200 are open at once; each still works.
    for (i, s) in held.iter_mut().enumerate() {
        echo_roundtrip(s, format!("again {i}").as_bytes())?;
    }
    ensure(up.accepts() == 200, format!("accepts {}", up.accepts()))
}

fn events_logged() -> TestResult {
    let (f, _up, port) = proxied("allowed.test");
    let (mut s, _) = connect_via_proxy(&f, &format!("allowed.test:{port}"));
    echo_roundtrip(&mut s, b"x")?;
    let _ = connect_via_proxy(&f, &format!("evil.test:{port}"));
    let _ = f.query("evil.test.", RecordType::A, false);
    let lines = f.log_lines();
    let find = |proto: &str, decision: &str| {
        lines
            .iter()
            .find(|l| l["proto"] == proto && l["decision"] == decision)
            .cloned()
    };
    let allow = find("connect", "allow").ok_or_else(|| err(format!("{lines:?}")))?;
    ensure(
        allow["name"] == "allowed.test" && allow["port"] == port && allow["ip"] == "127.0.0.1",
        format!("{allow}"),
    )?;
    ensure(
        allow["rule"] == format!("allowed.test:{port}"),
        format!("{allow}"),
    )?;
    let t = allow["time"].as_str().unwrap_or("");
    ensure(
        t.len() == 24 && t.ends_with('Z') && t.as_bytes()[10] == b'T',
        format!("time {t}"),
    )?;
    let deny = find("connect", "deny").ok_or_else(|| err(format!("{lines:?}")))?;
    ensure(
        deny["reason"]
            .as_str()
            .unwrap_or("")
            .contains("no rule allows evil.test"),
        format!("{deny}"),
    )?;
    ensure(find("dns", "deny").is_some(), "dns denial logged")?;
    let denials = f.denials.lock().map_err(err)?.len();
    ensure(denials == 2, format!("on_deny called {denials} times"))
}

/// 8 MiB of varied bytes through the capture come back identical, and a client that shuts
/// down its write side still gets everything the server sends afterwards (half-close is
/// passed on both ways).
fn relay_bulk_and_half_close() -> TestResult {
    let (f, _up, port) = captured("bulk.test")?;
    let mut s = connect(SocketAddr::new(FAKE1.into(), port));
    let data: Vec<u8> = (0..8u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let mut w = s.try_clone().map_err(err)?;
    let sent = data.clone();
    let writer = thread::spawn(move || {
        w.write_all(b"SSH-2.0-bulk\r\n")
            .and_then(|_| w.write_all(&sent))
            .and_then(|_| w.shutdown(std::net::Shutdown::Write))
    });
    let got = read_all(&mut s);
    writer
        .join()
        .map_err(|_| err("writer panicked"))?
        .map_err(err)?;
    ensure(
        got.len() == data.len() + 14,
        format!("got {} bytes", got.len()),
    )?;
    ensure(got[14..] == data[..], "bytes differ")?;
    let st = f.engine().stats();
    ensure(
        st.bytes_up == st.bytes_down && st.bytes_up == got.len() as u64,
        format!("{st:?}"),
    )
}

/// Without a pin the engine resolves through `upstream_dns` (TCP after a truncated UDP
/// answer); the loopback answer is then dialled only because an IP rule inside the loopback
/// range names it. The same IP rule lets a literal-IP connect through.
fn upstream_resolution_and_ip_rules() -> TestResult {
    let up = upstream();
    let port = up.addr.port();
    let dns = UpstreamDns::start();
    let rules = [format!("tc-name.test:{port}"), format!("127.0.0.1:{port}")];
    let rules: Vec<&str> = rules.iter().map(String::as_str).collect();
    let f = Fixture::start(&rules, &[], Some(dns.addr), vec![]);
    let (mut s, head) = connect_via_proxy(&f, &format!("tc-name.test:{port}"));
    ensure(head.starts_with("HTTP/1.1 200"), head)?;
    echo_roundtrip(&mut s, b"resolved upstream")?;
    ensure(
        dns.tcp_queries.load(std::sync::atomic::Ordering::SeqCst) >= 1,
        "TCP fallback used",
    )?;
    // A second connection within the answer's TTL (5 s) is served from the cache.
    let asked = dns.count();
    let (mut s, head) = connect_via_proxy(&f, &format!("tc-name.test:{port}"));
    ensure(head.starts_with("HTTP/1.1 200"), head)?;
    echo_roundtrip(&mut s, b"cached")?;
    ensure(dns.count() == asked, "answer cached for its TTL")?;
    let (mut s, head) = connect_via_proxy(&f, &format!("127.0.0.1:{port}"));
    ensure(head.starts_with("HTTP/1.1 200"), head)?;
    echo_roundtrip(&mut s, b"literal")?;
    // 127.0.0.2 is loopback too, but no rule names it.
    let (_, head) = connect_via_proxy(&f, &format!("127.0.0.2:{port}"));
    ensure(head.starts_with("HTTP/1.1 403"), head)?;
    ensure(up.accepts() == 3, format!("accepts {}", up.accepts()))
}

fn config(pins: Vec<(String, IpAddr)>) -> agentcage_egress::Config {
    agentcage_egress::Config {
        rules: vec![],
        pins,
        upstream_dns: None,
        log: None,
        on_deny: None,
    }
}

/// Wrong sockets and bad pins are clear errors, never a panic.
fn start_checks_its_inputs() -> TestResult {
    use std::net::{TcpListener, UdpSocket};
    use std::os::fd::OwnedFd;
    let listeners = |proxy: OwnedFd, dns_udp: OwnedFd| agentcage_egress::Listeners {
        tcp: vec![],
        proxy,
        dns_udp,
        dns_tcp: TcpListener::bind("127.0.0.1:0").expect("bind").into(),
    };
    let tcp = || -> OwnedFd { TcpListener::bind("127.0.0.1:0").expect("bind").into() };
    let udp = || -> OwnedFd { UdpSocket::bind("127.0.0.1:0").expect("bind").into() };
    type Case = (
        agentcage_egress::Listeners,
        Vec<(String, IpAddr)>,
        &'static str,
    );
    let cases: Vec<Case> = vec![
        (
            listeners(udp(), udp()),
            vec![],
            "proxy listener: wrong socket type",
        ),
        (
            listeners(tcp(), tcp()),
            vec![],
            "DNS udp socket: wrong socket type",
        ),
        (
            listeners(
                socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
                    .expect("socket")
                    .into(),
                udp(),
            ),
            vec![],
            "proxy listener: TCP socket is not listening",
        ),
        (
            listeners(
                std::fs::File::open("/dev/null").expect("open").into(),
                udp(),
            ),
            vec![],
            "proxy listener: not a socket",
        ),
        (
            listeners(tcp(), udp()),
            vec![("bad name".into(), LO)],
            "--net-resolve bad name=",
        ),
        (
            listeners(tcp(), udp()),
            vec![("a.test\0.evil".into(), LO)],
            "NUL",
        ),
    ];
    for (l, pins, want) in cases {
        match agentcage_egress::start(config(pins), l) {
            Ok(e) => {
                e.stop();
                return Err(err(format!("started despite {want:?}")));
            }
            Err(e) => ensure(e.to_string().contains(want), format!("{e} lacks {want:?}"))?,
        }
    }
    Ok(())
}

/// `stop` returns the final counters and closes every listener.
fn stop_closes_everything() -> TestResult {
    let up = upstream();
    let port = up.addr.port();
    let mut f = Fixture::start(
        &[&format!("allowed.test:{port}")],
        &[("allowed.test", LO)],
        None,
        vec![],
    );
    let (mut s, _) = connect_via_proxy(&f, &format!("allowed.test:{port}"));
    echo_roundtrip(&mut s, b"x")?;
    let stats = f.engine.take().ok_or_else(|| err("no engine"))?.stop();
    ensure(
        stats.allowed == 1 && stats.bytes_up == 1 && stats.bytes_down == 1,
        format!("{stats:?}"),
    )?;
    // Closed, not merely unreachable: the port may already be another parallel test's.
    ensure(
        !socket_open(f.proxy_ino),
        "proxy listener still open after stop",
    )?;
    ensure(read_all(&mut s).is_empty(), "tunnel closed by stop")
}
