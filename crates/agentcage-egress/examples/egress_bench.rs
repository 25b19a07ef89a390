//! Overhead of the egress engine on loopback: added latency per connection (connect + first
//! byte, median) and bulk throughput through the relay, each against a direct loopback
//! connection to the same server.
//!
//! `cargo run --release -p agentcage-egress --example egress_bench [-- ROUNDS MIB]`
//! (defaults: 2000 rounds, 512 MiB per transfer)
//!
//! The capture listener sits on 127.77.0.1 (a loopback stand-in for the fake range, as in the
//! tests), the upstream on 127.0.0.1 with the same port, reached through a pin.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::OwnedFd;
use std::thread;
use std::time::{Duration, Instant};

use agentcage_egress::{Config, Listeners};

const FAKE: (Ipv4Addr, u8) = (Ipv4Addr::new(127, 77, 0, 0), 16);
const FAKE1: Ipv4Addr = Ipv4Addr::new(127, 77, 0, 1);

/// Echoes the first read back; or, after a 'B' first byte, discards everything and answers
/// one byte at EOF (bulk mode).
fn serve(listener: TcpListener) {
    thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut s) = conn else { continue };
            let _ = s.set_nodelay(true);
            thread::spawn(move || {
                let mut buf = vec![0u8; 256 * 1024];
                let Ok(n) = s.read(&mut buf) else { return };
                if n == 0 {
                    return;
                }
                if buf[0] == b'B' {
                    while let Ok(k) = s.read(&mut buf) {
                        if k == 0 {
                            break;
                        }
                    }
                    let _ = s.write_all(b"k");
                    return;
                }
                if s.write_all(&buf[..n]).is_err() {
                    return;
                }
                while let Ok(k) = s.read(&mut buf) {
                    if k == 0 || s.write_all(&buf[..k]).is_err() {
                        break;
                    }
                }
            });
        }
    });
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn p90(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() * 9 / 10]
}

/// connect + send `first` + read one byte, per round.
fn latency(rounds: usize, mut dial: impl FnMut() -> TcpStream, first: &[u8]) -> Vec<Duration> {
    let mut out = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let t = Instant::now();
        let mut s = dial();
        s.write_all(first).expect("write");
        let mut b = [0u8; 1];
        s.read_exact(&mut b).expect("first byte");
        out.push(t.elapsed());
    }
    out
}

/// MiB/s of `mib` MiB written through `s` (the server answers one byte at EOF).
fn bulk(mut s: TcpStream, mib: usize) -> f64 {
    let chunk = vec![b'B'; 1024 * 1024];
    let t = Instant::now();
    for _ in 0..mib {
        s.write_all(&chunk).expect("bulk write");
    }
    s.shutdown(Shutdown::Write).expect("shutdown");
    let mut b = [0u8; 1];
    s.read_exact(&mut b).expect("ack");
    mib as f64 / t.elapsed().as_secs_f64()
}

fn main() {
    let mut args = std::env::args().skip(1);
    let rounds: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(2000);
    let mib: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(512);

    let (cap, port) = loop {
        let cap = TcpListener::bind((FAKE1, 0)).expect("bind capture");
        let port = cap.local_addr().expect("addr").port();
        if let Ok(up) = TcpListener::bind((Ipv4Addr::LOCALHOST, port)) {
            serve(up);
            break (cap, port);
        }
    };
    let proxy = TcpListener::bind("127.0.0.1:0").expect("proxy");
    let proxy_addr = proxy.local_addr().expect("addr");
    let dns_udp = UdpSocket::bind("127.0.0.1:0").expect("dns");
    let dns_addr = dns_udp.local_addr().expect("addr");
    let dns_tcp = TcpListener::bind("127.0.0.1:0").expect("dns tcp");
    let config = Config {
        rules: vec![format!("bench.test:{port}").parse().expect("rule")],
        pins: vec![("bench.test".into(), IpAddr::V4(Ipv4Addr::LOCALHOST))],
        upstream_dns: None,
        log: None,
        on_deny: None,
    };
    let listeners = Listeners {
        tcp: vec![(port, OwnedFd::from(cap))],
        proxy: proxy.into(),
        dns_udp: dns_udp.into(),
        dns_tcp: dns_tcp.into(),
    };
    let engine = agentcage_egress::start_with_fake_range(config, listeners, FAKE).expect("start");
    // The fake address is handed out by the stub; ask it once so 127.77.0.1 means bench.test.
    let q = [
        0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 5, b'b', b'e', b'n', b'c', b'h', 4, b't',
        b'e', b's', b't', 0, 0, 1, 0, 1,
    ];
    let s = UdpSocket::bind("127.0.0.1:0").expect("udp");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    s.send_to(&q, dns_addr).expect("send");
    let mut answer = [0u8; 512];
    let n = s.recv(&mut answer).expect("stub answers");
    assert!(
        answer[..n].ends_with(&[127, 77, 0, 1]),
        "bench.test -> 127.77.0.1"
    );

    let direct = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port);
    let captured = SocketAddr::new(IpAddr::V4(FAKE1), port);
    let dial = |a: SocketAddr| {
        move || {
            let s = TcpStream::connect(a).expect("connect");
            s.set_nodelay(true).expect("nodelay");
            s
        }
    };
    let hello = agentcage_egress::client_hello(Some(b"bench.test"));
    let connect_req = format!("CONNECT bench.test:{port} HTTP/1.1\r\n\r\n");
    let via_proxy = || {
        let mut s = TcpStream::connect(proxy_addr).expect("proxy");
        s.set_nodelay(true).expect("nodelay");
        s.write_all(connect_req.as_bytes()).expect("CONNECT");
        let mut head = Vec::new();
        let mut b = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            s.read_exact(&mut b).expect("CONNECT reply");
            head.push(b[0]);
        }
        assert!(head.starts_with(b"HTTP/1.1 200"), "CONNECT refused");
        s
    };

    // Warm-up, then interleave one of each per round so load from elsewhere hits every
    // variant alike.
    let _ = latency(200, dial(direct), b"x");
    let _ = latency(200, dial(captured), &hello);
    let (mut d, mut c_tls, mut c_tcp, mut p) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        d.extend(latency(1, dial(direct), &hello));
        c_tls.extend(latency(1, dial(captured), &hello));
        c_tcp.extend(latency(1, dial(captured), b"SSH-2.0-bench\r\n"));
        p.extend(latency(1, via_proxy, b"x"));
    }
    let md = median(d.clone());
    println!(
        "latency, connect + first byte, {} rounds each (median / p90):",
        d.len()
    );
    println!(
        "  direct loopback            {:>8.1} us / {:>8.1} us",
        us(md),
        us(p90(d))
    );
    for (name, v) in [
        ("capture, TLS ClientHello", c_tls),
        ("capture, opaque (ssh)", c_tcp),
        ("proxy CONNECT (+ 200)", p),
    ] {
        let m = median(v.clone());
        println!(
            "  {name:<26} {:>8.1} us / {:>8.1} us   added median {:>7.1} us",
            us(m),
            us(p90(v)),
            us(m) - us(md)
        );
    }

    // Alternate direct and relayed transfers; report the median and the best of each (the
    // best approximates capacity on a machine shared with other work).
    // CPU time of the whole process (client, server and engine threads) per GiB moved is
    // the load-independent figure: the relay's share is the difference.
    let (mut dt, mut rt) = (Vec::new(), Vec::new());
    let (mut dcpu, mut rcpu) = (0.0, 0.0);
    for _ in 0..5 {
        let c0 = cpu_seconds();
        dt.push(bulk(dial(direct)(), mib));
        let c1 = cpu_seconds();
        rt.push(bulk(dial(captured)(), mib));
        let c2 = cpu_seconds();
        dcpu += c1 - c0;
        rcpu += c2 - c1;
    }
    let gib = 5.0 * mib as f64 / 1024.0;
    let stat = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        (v[v.len() / 2], v[v.len() - 1])
    };
    let ((dm, db), (rm, rb)) = (stat(dt), stat(rt));
    println!("bulk throughput, {mib} MiB one way, 5 runs each (median / best):");
    println!("  direct loopback            {dm:>8.0} / {db:>6.0} MiB/s");
    println!(
        "  through the relay          {rm:>8.0} / {rb:>6.0} MiB/s   {:.0}% / {:.0}% of direct",
        100.0 * rm / dm,
        100.0 * rb / db
    );
    println!(
        "  CPU per GiB (all threads)  direct {:.2} s, relayed {:.2} s",
        dcpu / gib,
        rcpu / gib
    );
    let st = engine.stop();
    println!(
        "engine stats: {}",
        serde_json::to_string(&st).expect("json")
    );
}

/// User + system CPU seconds of this process so far.
fn cpu_seconds() -> f64 {
    // SAFETY: an all-zero rusage is a valid value to be overwritten.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is a valid out-pointer.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}
