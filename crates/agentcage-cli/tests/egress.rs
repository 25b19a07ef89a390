//! `--net allow` end to end (issue #12): the real binary, as root and as uid 65534, against
//! servers this test runs on 127.0.0.1 of the host's network namespace, reached only through
//! the launcher's egress engine. Every name is pinned with `--net-resolve` or answered by the
//! test's own DNS server on loopback (`--net-dns`): nothing here sends a packet to a
//! non-loopback address, not even to show that it is refused.
//!
//! - `curl_allowed_name`: curl through the proxy environment and with `--noproxy '*'` (the
//!   capture path), under full and ns-only (the nested namespace that locks the mounts), and
//!   python's urllib: each reaches the allowed server, which counts them.
//! - `git_clone_dumb_http`: `git clone http://NAME:PORT/repo.git` from a dumb-HTTP server
//!   (static files of a bare repository after `git update-server-info`).
//! - `denials_battery`: one sandbox runs every bypass attempt (denied name NXDOMAIN, literal
//!   loopback IPv4 and IPv6 connects, a UDP datagram, CONNECT to a denied authority, SOCKS4
//!   and SOCKS5 greetings, plain HTTP with a denied Host through the proxy and through the
//!   capture, a NUL byte in a CONNECT authority and in a DNS label, upper-case and
//!   trailing-dot variants of a denied name, a TLS ClientHello whose SNI is not the name the
//!   address stands for, and a name the test's DNS server rebinds to 127.0.0.1), next to
//!   positive controls; then the host side checks that the forbidden listeners saw zero
//!   connections and that `--net-log` has a deny line for each.
//! - `sandbox_side`: what the launcher sets up inside (resolv.conf, proxy environment that
//!   `--env` may override, no listener left in the command), `-v` printing a denial as it
//!   happens, and the JSON report's counters.
//! - `probe_ops_refused`: the probe's `net.egress.*` ops are BLOCKED under `--net allow`
//!   without rules (full and ns-only), and reach the bait without a sandbox (the control).
//! - `policy_file_keys`: `[network]` in a policy file, `policy show` and its round trip, a bad
//!   rule refused with FILE:LINE.
//! - `net_host_warns`: `--net host` still works and says what it leaves open.
//! - `usage_errors`: `--net allow` without a network namespace, egress flags with `--net
//!   host`, a bad rule, a `--net-log` inside the workspace: exit 2 with a clear message.

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{err, Env, Out, TestFn};
use libtest_mimic::{Arguments, Failed, Trial};

/// What an [`Upstream`] does with a connection.
#[derive(Clone)]
enum Mode {
    /// Answer each HTTP request with `hello-agentcage-TAG`.
    Body,
    /// Serve the files of this directory (dumb HTTP).
    Files(PathBuf),
    /// Close after the first bytes (a stand-in TLS server: only the count matters).
    Close,
}

/// A TCP server on 127.0.0.1 that counts connections and serves them as its [`Mode`] says.
struct Upstream {
    port: u16,
    hits: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Upstream {
    fn start(tag: &str, mode: Mode) -> Result<Upstream, Failed> {
        let l = TcpListener::bind("127.0.0.1:0").map_err(err)?;
        l.set_nonblocking(true).map_err(err)?;
        let port = l.local_addr().map_err(err)?.port();
        let hits = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (h, s) = (hits.clone(), stop.clone());
        let body = format!("hello-agentcage-{tag}\n");
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match l.accept() {
                    Ok((c, _)) => {
                        h.fetch_add(1, Ordering::Relaxed);
                        let body = body.clone();
                        let mode = mode.clone();
                        std::thread::spawn(move || serve(c, &body, &mode));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Ok(Upstream {
            port,
            hits,
            stop,
            thread: Some(thread),
        })
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::Relaxed)
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One connection: HTTP/1.x requests until EOF (keep-alive for git), each answered with
/// `body` or a file under `root`.
fn serve(mut c: TcpStream, body: &str, mode: &Mode) {
    let _ = c.set_nonblocking(false);
    let _ = c.set_read_timeout(Some(Duration::from_secs(10)));
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    if let Mode::Close = mode {
        let _ = c.read(&mut chunk);
        return;
    }
    let root = match mode {
        Mode::Files(p) => Some(p.as_path()),
        _ => None,
    };
    loop {
        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            match c.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
            continue;
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        buf.drain(..end + 4);
        let path = head
            .lines()
            .next()
            .and_then(|l| l.split_whitespace().nth(1))
            .unwrap_or("/")
            .to_string();
        let (status, content) = match root {
            None => ("200 OK", body.as_bytes().to_vec()),
            Some(r) => {
                // Absolute-form (a proxy that forwards it) or origin-form.
                let p = path
                    .split_once("://")
                    .and_then(|(_, rest)| rest.find('/').map(|i| rest[i..].to_string()))
                    .unwrap_or(path);
                let p = p.split('?').next().unwrap_or("/").trim_start_matches('/');
                match (p.contains(".."), std::fs::read(r.join(p))) {
                    (false, Ok(b)) => ("200 OK", b),
                    _ => ("404 Not Found", b"not found\n".to_vec()),
                }
            }
        };
        let h = format!(
            "HTTP/1.1 {status}\r\nContent-Length: {}\r\nContent-Type: application/octet-stream\r\n\r\n",
            content.len()
        );
        if c.write_all(h.as_bytes()).is_err() || c.write_all(&content).is_err() {
            return;
        }
    }
}

/// A UDP socket on 127.0.0.1 that counts datagrams.
struct UdpCounter {
    port: u16,
    hits: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl UdpCounter {
    fn start() -> Result<UdpCounter, Failed> {
        let s = UdpSocket::bind("127.0.0.1:0").map_err(err)?;
        s.set_read_timeout(Some(Duration::from_millis(20)))
            .map_err(err)?;
        let port = s.local_addr().map_err(err)?.port();
        let hits = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (h, st) = (hits.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut b = [0u8; 2048];
            while !st.load(Ordering::Relaxed) {
                if s.recv_from(&mut b).is_ok() {
                    h.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        Ok(UdpCounter {
            port,
            hits,
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for UdpCounter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A tiny DNS server on 127.0.0.1 (UDP): A queries for the names of `answers` get that
/// address, AAAA queries for them an empty NOERROR, anything else NXDOMAIN. Counts queries.
struct TestDns {
    port: u16,
    queries: Arc<std::sync::Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TestDns {
    fn start(answers: &[(&str, [u8; 4])]) -> Result<TestDns, Failed> {
        let s = UdpSocket::bind("127.0.0.1:0").map_err(err)?;
        s.set_read_timeout(Some(Duration::from_millis(20)))
            .map_err(err)?;
        let port = s.local_addr().map_err(err)?.port();
        let answers: HashMap<String, [u8; 4]> =
            answers.iter().map(|(n, a)| (n.to_string(), *a)).collect();
        let queries = Arc::new(std::sync::Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (q, st) = (queries.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut b = [0u8; 1500];
            while !st.load(Ordering::Relaxed) {
                let Ok((n, from)) = s.recv_from(&mut b) else {
                    continue;
                };
                if let Some((name, reply)) = dns_reply(&b[..n], &answers) {
                    if let Ok(mut v) = q.lock() {
                        v.push(name);
                    }
                    let _ = s.send_to(&reply, from);
                }
            }
        });
        Ok(TestDns {
            port,
            queries,
            stop,
            thread: Some(thread),
        })
    }

    fn queries(&self) -> Vec<String> {
        self.queries.lock().map(|v| v.clone()).unwrap_or_default()
    }
}

impl Drop for TestDns {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The answer to one query (test code: the first question only, no compression).
fn dns_reply(q: &[u8], answers: &HashMap<String, [u8; 4]>) -> Option<(String, Vec<u8>)> {
    if q.len() < 12 {
        return None;
    }
    let mut i = 12;
    let mut labels = Vec::new();
    loop {
        let len = *q.get(i)? as usize;
        i += 1;
        if len == 0 {
            break;
        }
        labels.push(String::from_utf8_lossy(q.get(i..i + len)?).to_ascii_lowercase());
        i += len;
    }
    let qtype = u16::from_be_bytes([*q.get(i)?, *q.get(i + 1)?]);
    let qend = i + 4;
    let name = labels.join(".");
    let mut r = q.get(..qend)?.to_vec();
    r[2] = 0x84 | (q[2] & 0x01); // QR, AA, RD copied
    r[3] = 0x80; // RA, NOERROR
    r[6..12].copy_from_slice(&[0, 0, 0, 0, 0, 0]);
    match answers.get(&name) {
        Some(a) if qtype == 1 => {
            r[7] = 1;
            r.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 5, 0, 4]);
            r.extend_from_slice(a);
        }
        Some(_) => {}
        None => r[3] = 0x83, // NXDOMAIN
    }
    Some((name, r))
}

/// Why the egress trials cannot run here: the engine of this build is the skeleton (its
/// `start` or rule parser says "not implemented"), or the sandbox cannot start at all.
fn engine_missing() -> Option<String> {
    static WHY: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    WHY.get_or_init(|| {
        let o = std::process::Command::new(common::binary())
            .args([
                "run",
                "-p",
                "ns-only",
                "-w",
                "/tmp",
                "--allow-host",
                "probe.test",
                "--",
                "true",
            ])
            .current_dir("/")
            .stdin(std::process::Stdio::null())
            .output();
        match o {
            Ok(o) if !o.status.success() => {
                let e = String::from_utf8_lossy(&o.stderr);
                e.contains("not implemented").then(|| {
                    format!(
                        "the egress engine (crate agentcage-egress) is not implemented in this \
                         build: {}",
                        e.trim()
                    )
                })
            }
            _ => None,
        }
    })
    .clone()
}

fn have(tool: &str) -> bool {
    ["/usr/bin", "/bin", "/usr/local/bin"]
        .iter()
        .any(|d| Path::new(d).join(tool).exists())
}

fn run(env: &Env, args: &[&str]) -> Result<Out, Failed> {
    env.run(args)
}

/// The JSON lines of a `--net-log` file.
fn log_lines(p: &Path) -> Result<Vec<serde_json::Value>, Failed> {
    let text = std::fs::read_to_string(p).map_err(|e| format!("read {}: {e}", p.display()))?;
    text.lines()
        .map(|l| serde_json::from_str(l).map_err(|e| format!("log line {l:?}: {e}").into()))
        .collect()
}

/// Whether the log has a deny event whose line mentions every one of `tokens`.
fn denied_in_log(lines: &[serde_json::Value], tokens: &[&str]) -> bool {
    lines.iter().any(|v| {
        let s = v.to_string();
        v["decision"] == "deny" && tokens.iter().all(|t| s.contains(t))
    })
}

fn curl_allowed_name(env: &Env) -> Result<(), Failed> {
    if !have("curl") {
        if common::expected("curl") {
            return Err("AGENTCAGE_TEST_EXPECT lists curl, but it is not installed".into());
        }
        eprintln!(
            "skip {}::curl_allowed_name: curl is not installed",
            env.who.name()
        );
        return Ok(());
    }
    let ws = env.workspace()?;
    let up = Upstream::start("web", Mode::Body)?;
    let dns = TestDns::start(&[])?;
    let rule = format!("web.test:{}", up.port);
    let dns_arg = format!("127.0.0.1:{}", dns.port);
    let url = format!("http://web.test:{}/x", up.port);
    let mut want = 0;
    for profile in ["full", "ns-only"] {
        for (how, script) in [
            ("proxy env", format!("curl -sS --max-time 10 {url}")),
            ("capture", format!("curl -sS --max-time 10 --noproxy '*' {url}")),
            (
                "capture over IPv4",
                format!("curl -sS --max-time 10 -4 --noproxy '*' {url}"),
            ),
            (
                "python urllib",
                format!(
                    "python3 -c 'import urllib.request,sys; \
                     sys.stdout.write(urllib.request.urlopen(\"{url}\", timeout=10).read().decode())'"
                ),
            ),
        ] {
            let out = run(
                env,
                &[
                    "run", "-p", profile, "-w", ws.s(), "--allow-host", &rule, "--net-resolve",
                    "web.test=127.0.0.1", "--net-dns", &dns_arg, "--", "sh", "-c", &script,
                ],
            )?;
            out.expect_code(0, &format!("{profile}: {how}"))?;
            if !out.stdout.contains("hello-agentcage-web") {
                return Err(format!("{profile}: {how}: no answer from the server: {}", out.stdout).into());
            }
            want += 1;
            if up.hits() != want {
                return Err(format!(
                    "{profile}: {how}: the server counted {} connections, want {want}",
                    up.hits()
                )
                .into());
            }
        }
    }
    if !dns.queries().is_empty() {
        return Err(format!(
            "a pinned name reached the upstream resolver: {:?}",
            dns.queries()
        )
        .into());
    }
    Ok(())
}

fn git_clone_dumb_http(env: &Env) -> Result<(), Failed> {
    if !have("git") {
        return Err("git is not installed (the sandbox tests need it)".into());
    }
    let ws = env.workspace()?;
    let srv = env.secret_dir()?;
    let src = srv.path().join("src");
    let bare = srv.path().join("repo.git");
    let git = |args: &[&str], dir: &Path| -> Result<(), Failed> {
        let o = std::process::Command::new("git")
            .args(args)
            .current_dir(dir)
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@t")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@t")
            .output()
            .map_err(err)?;
        if o.status.success() {
            Ok(())
        } else {
            Err(format!("git {args:?}: {}", String::from_utf8_lossy(&o.stderr)).into())
        }
    };
    std::fs::create_dir_all(&src).map_err(err)?;
    std::fs::write(src.join("README"), "cloned-through-agentcage\n").map_err(err)?;
    git(&["init", "-q", "-b", "main"], &src)?;
    git(&["add", "README"], &src)?;
    git(&["commit", "-q", "-m", "one"], &src)?;
    git(
        &[
            "clone",
            "-q",
            "--bare",
            src.to_str().unwrap_or("."),
            bare.to_str().unwrap_or("."),
        ],
        srv.path(),
    )?;
    git(&["update-server-info"], &bare)?;
    let up = Upstream::start("git", Mode::Files(srv.path().to_path_buf()))?;
    let dns = TestDns::start(&[])?;
    let rule = format!("git.test:{}", up.port);
    let dns_arg = format!("127.0.0.1:{}", dns.port);
    let script = format!(
        "git clone -q http://git.test:{}/repo.git /tmp/c && cat /tmp/c/README",
        up.port
    );
    let out = run(
        env,
        &[
            "run",
            "-w",
            ws.s(),
            "--allow-host",
            &rule,
            "--net-resolve",
            "git.test=127.0.0.1",
            "--net-dns",
            &dns_arg,
            "--",
            "sh",
            "-c",
            &script,
        ],
    )?;
    out.expect_code(0, "git clone")?;
    if !out.stdout.contains("cloned-through-agentcage") || up.hits() == 0 {
        return Err(format!(
            "git clone: stdout {:?}, {} connections",
            out.stdout,
            up.hits()
        )
        .into());
    }
    Ok(())
}

/// The in-sandbox half of the battery: each line `NAME RESULT DETAIL`, RESULT one of
/// `refused` / `reached`.
const BATTERY: &str = r#"
import socket, ssl, sys
P = {ports}
def out(name, ok, detail=""):
    print(name, "reached" if ok else "refused", repr(detail)[:200], flush=True)
CTX = ssl.create_default_context(); CTX.check_hostname = False; CTX.verify_mode = ssl.CERT_NONE
def tcp(host, port, send=b"", fam=socket.AF_INET, tls=None):
    s = socket.socket(fam, socket.SOCK_STREAM); s.settimeout(5)
    data = b""
    try:
        s.connect((host, port))
        if tls is not None:
            # The ClientHello goes out at once (the context is ready).
            s = CTX.wrap_socket(s, server_hostname=tls)
        if send: s.sendall(send)
        while True:
            d = s.recv(4096)
            if not d: break
            data += d
            if b"hello-agentcage" in data: break
            # A refusal's head is complete: nothing else comes (200s are read to the body).
            if b"\r\n\r\n" in data and not data.startswith(b"HTTP/1.1 200"): break
    except Exception as e:
        return data, e
    return data, None
def resolve(name):
    try: return socket.getaddrinfo(name, 80, socket.AF_INET, socket.SOCK_STREAM)[0][4][0]
    except Exception as e: return None
def dns_raw(labels):
    q = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00" + b"".join(bytes([len(l)]) + l for l in labels) + b"\x00\x00\x01\x00\x01"
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(3)
    try:
        s.sendto(q, ("127.0.0.1", 53)); r = s.recv(1500)
        return r[3] & 0x0f, int.from_bytes(r[6:8], "big")
    except Exception as e: return None, str(e)
# DNS: a denied name gets no address; an allowed one a fake address.
out("dns.denied", resolve("denied.test") is not None, resolve("denied.test"))
web = resolve("web.test")
out("control.dns.allowed", web is not None and web.startswith("198.1"), web)
rc, an = dns_raw([b"web\x00", b"test"])
out("dns.nul_label", rc == 0 and an, (rc, an))
rc, an = dns_raw([b"web", b"test\x00.denied", b"test"])
out("dns.nul_label2", rc == 0 and an, (rc, an))
# Literal addresses, IPv6, UDP.
d, e = tcp("127.0.0.1", P["forbidden"], b"GET / HTTP/1.0\r\n\r\n"); out("tcp.literal_v4", b"hello-agentcage" in d, (d[:60], e))
d, e = tcp("::1", P["forbidden"], b"GET / HTTP/1.0\r\n\r\n", socket.AF_INET6); out("tcp.literal_v6", b"hello-agentcage" in d, (d[:60], e))
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.settimeout(2)
try:
    u.connect(("127.0.0.1", P["udp"])); u.send(b"x"); u.recv(10); out("udp.datagram", True)
except Exception as e: out("udp.datagram", False, e)
# The proxy: CONNECT and absolute-form with denied names, SOCKS, NUL, case and dot variants.
def proxy(req):
    d, e = tcp("127.0.0.1", 3128, req)
    return d, e
for name, auth in [("connect.denied", b"denied.test:%d" % P["forbidden"]),
                   ("connect.nul", b"web.test\x00.denied.test:%d" % P["web"]),
                   ("connect.nul2", b"denied.test\x00web.test:%d" % P["web"]),
                   ("connect.upper_dot", b"DENIED.TEST.:%d" % P["forbidden"]),
                   ("connect.rebind", b"rebind.test:%d" % P["forbidden"]),
                   ("connect.literal", b"127.0.0.1:%d" % P["forbidden"])]:
    d, e = proxy(b"CONNECT " + auth + b" HTTP/1.1\r\nHost: " + auth + b"\r\n\r\n" + b"GET / HTTP/1.0\r\n\r\n")
    out(name, d.startswith(b"HTTP/1.1 200") or b"hello-agentcage" in d, (d[:80], e))
d, e = proxy(b"CONNECT WEB.TEST.:%d HTTP/1.1\r\nHost: web.test\r\n\r\nGET / HTTP/1.0\r\n\r\n" % P["web"])
out("control.connect.upper_dot", b"hello-agentcage-web" in d, (d[:80], e))
d, e = proxy(b"GET http://denied.test:%d/ HTTP/1.1\r\nHost: denied.test:%d\r\n\r\n" % (P["forbidden"], P["forbidden"]))
out("http.proxy_denied_host", b"hello-agentcage" in d, (d[:80], e))
out("http.403_names_rule", not (d.startswith(b"HTTP/1.1 403") and b"x-agentcage-deny" in d.lower()), d[:200])
d, e = proxy(b"GET http://web.test:%d/ HTTP/1.1\r\nHost: denied.test:%d\r\n\r\n" % (P["web"], P["forbidden"]))
out("http.proxy_host_mismatch", b"hello-agentcage-forbidden" in d, (d[:80], e))
d, e = proxy(b"\x05\x01\x00"); out("socks5.proxy", d[:2] == b"\x05\x00", (d[:20], e))
d, e = proxy(b"\x04\x01" + P["forbidden"].to_bytes(2, "big") + b"\x7f\x00\x00\x01agent\x00"); out("socks4.proxy", d[:2] == b"\x00\x5a", (d[:20], e))
if web:
    d, e = tcp(web, P["web"], b"\x05\x01\x00"); out("socks5.capture", d[:2] == b"\x05\x00", (d[:20], e))
    d, e = tcp(web, P["web"], b"GET / HTTP/1.1\r\nHost: denied.test\r\n\r\n"); out("http.capture_host_mismatch", b"hello-agentcage" in d, (d[:80], e))
    d, e = tcp(web, P["web"], b"GET / HTTP/1.1\r\nHost: web.test\r\n\r\n"); out("control.http.capture", b"hello-agentcage-web" in d, (d[:80], e))
import os
if os.path.exists("/proc/net/if_inet6"):
    try: web6 = socket.getaddrinfo("web.test", 80, socket.AF_INET6, socket.SOCK_STREAM)[0][4][0]
    except Exception as e: web6 = None
    d, e = tcp(web6 or "::", P["web"], b"GET / HTTP/1.1\r\nHost: web.test\r\n\r\n", socket.AF_INET6)
    out("control.http.capture_v6", web6 is not None and b"hello-agentcage-web" in d, (web6, d[:60], e))
tls = resolve("tls.test")
if tls:
    d, e = tcp(tls, P["tls"], tls="denied.test"); out("tls.sni_mismatch", False, e)
    d, e = tcp(tls, P["tls"], tls="tls.test"); out("control.tls.sni", False, e)
rb = resolve("rebind.test")
out("control.dns.rebind_name_allowed", rb is not None, rb)
if rb:
    d, e = tcp(rb, P["forbidden"], b"GET / HTTP/1.1\r\nHost: rebind.test\r\n\r\n"); out("tcp.rebind", b"hello-agentcage" in d, (d[:60], e))
"#;

fn denials_battery(env: &Env) -> Result<(), Failed> {
    let ws = env.workspace()?;
    let logdir = env.secret_dir()?;
    let log = logdir.path().join("net.jsonl");
    let web = Upstream::start("web", Mode::Body)?;
    let forbidden = Upstream::start("forbidden", Mode::Body)?;
    let tls = Upstream::start("tls", Mode::Close)?;
    let udp = UdpCounter::start()?;
    let dns = TestDns::start(&[("rebind.test", [127, 0, 0, 1])])?;
    let ports = format!(
        "{{\"web\": {}, \"forbidden\": {}, \"tls\": {}, \"udp\": {}}}",
        web.port, forbidden.port, tls.port, udp.port
    );
    let script = BATTERY.replace("{ports}", &ports);
    let rules = [
        format!("web.test:{}", web.port),
        format!("tls.test:{}", tls.port),
        // Allowed by name, resolved by the test's DNS server to 127.0.0.1, never pinned.
        format!("rebind.test:{}", forbidden.port),
    ];
    let dns_arg = format!("127.0.0.1:{}", dns.port);
    let mut args: Vec<&str> = vec!["run", "-w", ws.s(), "--net-dns", &dns_arg];
    for r in &rules {
        args.extend(["--allow-host", r]);
    }
    let log_s = log.to_str().unwrap_or_default();
    args.extend([
        "--net-resolve",
        "web.test=127.0.0.1",
        "--net-resolve",
        "tls.test=127.0.0.1",
        // A pin is no allow rule: denied.test stays denied.
        "--net-resolve",
        "denied.test=127.0.0.1",
        "--net-log",
        log_s,
        "--",
        "python3",
        "-c",
        &script,
    ]);
    let out = run(env, &args)?;
    out.expect_code(0, "the battery")?;
    let mut problems = Vec::new();
    let mut seen = 0;
    for line in out.stdout.lines() {
        let mut f = line.splitn(3, ' ');
        let (Some(name), Some(result)) = (f.next(), f.next()) else {
            continue;
        };
        seen += 1;
        let want = if name.starts_with("control.") {
            "reached"
        } else {
            "refused"
        };
        // The TLS controls cannot complete a handshake with a plain server: the counter says.
        if name.starts_with("control.tls") || name == "tls.sni_mismatch" {
            continue;
        }
        if result != want {
            problems.push(format!("{line} (want {want})"));
        }
    }
    if seen < 20 {
        return Err(format!(
            "the battery ran {seen} checks\nstdout: {}\nstderr: {}",
            out.stdout, out.stderr
        )
        .into());
    }
    if forbidden.hits() != 0 {
        problems.push(format!(
            "the forbidden server saw {} connections",
            forbidden.hits()
        ));
    }
    if udp.hits.load(Ordering::Relaxed) != 0 {
        problems.push("the UDP server got a datagram".into());
    }
    // Exactly the control's connection: the SNI mismatch never reached it.
    if tls.hits() != 1 {
        problems.push(format!(
            "the TLS server saw {} connections, want 1 (the SNI control)",
            tls.hits()
        ));
    }
    let q = dns.queries();
    if q.iter().any(|n| n != "rebind.test") {
        problems.push(format!(
            "names other than the allowed rebind.test reached the upstream resolver: {q:?}"
        ));
    }
    let lines = log_lines(&log)?;
    let fport = forbidden.port.to_string();
    for (what, tokens) in [
        (
            "the denied name's DNS query",
            vec!["\"dns\"", "denied.test"],
        ),
        (
            "the literal IPv4 connect",
            vec!["127.0.0.1", fport.as_str()],
        ),
        ("the literal IPv6 connect", vec!["::1", fport.as_str()]),
        (
            "the CONNECT to a denied name",
            vec!["denied.test", fport.as_str()],
        ),
        (
            "the rebound name (proxy)",
            vec!["rebind.test", "\"connect\"", "loopback"],
        ),
        (
            "the rebound name (capture)",
            vec!["rebind.test", "\"http\"", "loopback"],
        ),
        ("the SNI mismatch", vec!["denied.test", "\"tls\""]),
    ] {
        if !denied_in_log(&lines, &tokens) {
            problems.push(format!(
                "--net-log has no deny event for {what} ({tokens:?})"
            ));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{}\nbattery output:\n{}\nlog:\n{}",
            problems.join("\n"),
            out.stdout,
            lines
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        )
        .into())
    }
}

fn sandbox_side(env: &Env) -> Result<(), Failed> {
    let ws = env.workspace()?;
    let repdir = env.secret_dir()?;
    let report = repdir.path().join("r.json");
    let up = Upstream::start("web", Mode::Body)?;
    let dns = TestDns::start(&[])?;
    let rule = format!("web.test:{}", up.port);
    let dns_arg = format!("127.0.0.1:{}", dns.port);
    let script = format!(
        "cat /etc/resolv.conf; env | sort | grep -i proxy; ls -l /proc/self/fd | grep -c socket; \
         python3 -c 'import urllib.request; urllib.request.urlopen(\"http://web.test:{}/\", timeout=10).read()' && echo fetched; \
         python3 -c 'import urllib.request; urllib.request.urlopen(\"http://denied.test:{}/\", timeout=10).read()' 2>/dev/null || echo denied-fetch-failed",
        up.port, up.port
    );
    let out = run(
        env,
        &[
            "run",
            "-w",
            ws.s(),
            "--allow-host",
            &rule,
            "--net-resolve",
            "web.test=127.0.0.1",
            "--net-dns",
            &dns_arg,
            "--json-report",
            report.to_str().unwrap_or_default(),
            "--env",
            "HTTPS_PROXY=http://wrong:1",
            "-v",
            "--",
            "sh",
            "-c",
            &script,
        ],
    )?;
    out.expect_code(0, "sandbox side")?;
    for want in [
        "nameserver 127.0.0.1",
        "HTTP_PROXY=http://127.0.0.1:3128",
        "https_proxy=http://127.0.0.1:3128",
        "ALL_PROXY=http://127.0.0.1:3128",
        "NO_PROXY=\n",
        "NODE_USE_ENV_PROXY=1",
        // --env has the last word.
        "HTTPS_PROXY=http://wrong:1",
        "fetched",
        "denied-fetch-failed",
    ] {
        if !out.stdout.contains(want) {
            return Err(format!("inside: no {want:?} in\n{}", out.stdout).into());
        }
    }
    // -v: the denial, live, on stderr.
    if !out
        .stderr
        .contains("agentcage: net: denied http denied.test")
    {
        return Err(format!("-v printed no denial:\n{}", out.stderr).into());
    }
    // No listener reached the command: `ls /proc/self/fd` of the shell shows no socket.
    if !out.stdout.lines().any(|l| l.trim() == "0") {
        return Err(format!("the command holds sockets:\n{}", out.stdout).into());
    }
    let r: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&report).map_err(err)?).map_err(err)?;
    let allowed = r["egress"]["allowed"].as_u64().unwrap_or(0);
    if allowed == 0 || r["egress"]["dns_answered"].is_null() {
        return Err(format!("the JSON report's egress counters: {}", r["egress"]).into());
    }
    Ok(())
}

/// The probe's egress ops (what `agentcage matrix` shows): every one BLOCKED under `--net
/// allow` without rules (the engine resets or nothing listens, the DNS stub answers
/// NXDOMAIN), while the same ops reach the bait without a sandbox (the control).
fn probe_ops_refused(env: &Env) -> Result<(), Failed> {
    let ws = env.workspace()?;
    let tcp = TcpListener::bind("127.0.0.1:0").map_err(err)?;
    let tcp_port = tcp.local_addr().map_err(err)?.port().to_string();
    tcp.set_nonblocking(true).map_err(err)?;
    let udp = UdpSocket::bind("127.0.0.1:0").map_err(err)?;
    udp.set_read_timeout(Some(Duration::from_millis(20)))
        .map_err(err)?;
    let udp_port = udp.local_addr().map_err(err)?.port().to_string();
    let stop = Arc::new(AtomicBool::new(false));
    let st = stop.clone();
    let bait = std::thread::spawn(move || {
        let mut b = [0u8; 512];
        while !st.load(Ordering::Relaxed) {
            if let Ok((c, _)) = tcp.accept() {
                drop(c);
            }
            if let Ok((n, from)) = udp.recv_from(&mut b) {
                let _ = udp.send_to(&b[..n], from);
            }
        }
    });
    let ids = [
        "net.egress.literal_ip",
        "net.egress.ipv6_literal",
        "net.egress.udp_datagram",
        "net.egress.dns_denied",
        // Raw and packet sockets stay refused under --net allow (caps and seccomp).
        "net.socket.raw_icmp",
        "net.socket.packet",
    ];
    let results = |profile: &str, net: &[&str]| -> Result<HashMap<String, String>, Failed> {
        let exe = common::binary().to_str().unwrap_or_default().to_string();
        let probe = if profile == "none" {
            exe.as_str()
        } else {
            "/run/agentcage/agentcage"
        };
        let mut args = vec!["run", "-p", profile, "-w", ws.s()];
        args.extend(net);
        args.extend(["--", probe, "probe", "--format", "jsonl"]);
        args.extend(["--tcp-port", &tcp_port, "--udp-port", &udp_port]);
        for id in ids {
            args.extend(["--only", id]);
        }
        let out = run(env, &args)?;
        out.expect_code(0, &format!("probe under {profile} {net:?}"))?;
        let mut m = HashMap::new();
        for l in out.stdout.lines() {
            let v: serde_json::Value = serde_json::from_str(l).map_err(err)?;
            m.insert(
                v["id"].as_str().unwrap_or_default().to_string(),
                format!("{} {}", v["result"].as_str().unwrap_or("?"), v["detail"]),
            );
        }
        Ok(m)
    };
    let check = || -> Result<(), Failed> {
        for profile in ["full", "ns-only"] {
            let m = results(profile, &["--net", "allow"])?;
            // ns-only keeps every capability: raw sockets are its documented gap (on a
            // network namespace with only lo, whose routes it cannot change).
            let n = if profile == "full" { ids.len() } else { 4 };
            for id in &ids[..n] {
                let r = m.get(*id).map(String::as_str).unwrap_or("missing");
                if !r.starts_with("BLOCKED") {
                    return Err(format!("{profile} --net allow: {id}: {r}").into());
                }
            }
        }
        let m = results("none", &[])?;
        for id in &ids[..3] {
            let r = m.get(*id).map(String::as_str).unwrap_or("missing");
            if !r.starts_with("ALLOWED") {
                return Err(format!("control (-p none): {id}: {r}").into());
            }
        }
        Ok(())
    };
    let r = check();
    stop.store(true, Ordering::Relaxed);
    let _ = bait.join();
    r
}

/// `[network]` in a policy file: `policy show` prints the canonical allow list and the other
/// keys (and its output loads again); a bad rule is refused with FILE:LINE.
fn policy_file_keys(env: &Env) -> Result<(), Failed> {
    let ws = env.workspace()?;
    let dir = env.policy_dir()?;
    let f = dir.path().join("p.toml");
    std::fs::write(
        &f,
        "extends = \"full\"\n[network]\nallow = [\"API.Example.TEST.\", \"*.pypi.test:443\"]\n\
         resolve = [\"mirror.test=127.0.0.1\"]\ndns = \"127.0.0.1:5353\"\n",
    )
    .map_err(err)?;
    let f_s = f.to_str().unwrap_or_default();
    let out = run(env, &["policy", "show", "--policy", f_s, "-w", ws.s()])?;
    out.expect_code(0, "policy show")?;
    for want in [
        "net = \"allow\"",
        "allow = [\"api.example.test\", \"*.pypi.test:443\"]",
        "resolve = [\"mirror.test=127.0.0.1\"]",
        "dns = \"127.0.0.1:5353\"",
    ] {
        if !out.stdout.contains(want) {
            return Err(format!("policy show: no {want:?} in\n{}", out.stdout).into());
        }
    }
    let again = dir.path().join("again.toml");
    std::fs::write(&again, &out.stdout).map_err(err)?;
    let out2 = run(
        env,
        &[
            "policy",
            "show",
            "--policy",
            again.to_str().unwrap_or_default(),
            "-w",
            ws.s(),
        ],
    )?;
    out2.expect_code(0, "policy show of policy show's output")?;
    if out2.stdout != out.stdout {
        return Err(format!("not a round trip:\n{}\n---\n{}", out.stdout, out2.stdout).into());
    }
    std::fs::write(
        &f,
        "[network]\nallow = [\"ok.test\",\n  \"bad name.test\"]\n",
    )
    .map_err(err)?;
    let out = run(env, &["policy", "show", "--policy", f_s, "-w", ws.s()])?;
    out.expect_code(2, "a bad rule in a policy file")?;
    if !out.stderr.contains("p.toml:3") || !out.stderr.contains("bad name.test") {
        return Err(format!("a bad rule's error: {}", out.stderr).into());
    }
    Ok(())
}

/// `--net host` keeps its meaning and says what it leaves open.
fn net_host_warns(env: &Env) -> Result<(), Failed> {
    let ws = env.workspace()?;
    let out = run(env, &["run", "-w", ws.s(), "--net", "host", "--", "true"])?;
    out.expect_code(0, "--net host")?;
    for want in [
        "network isolation is OFF",
        "UDP and DNS to any address",
        "--allow-host",
    ] {
        if !out.stderr.contains(want) {
            return Err(format!("--net host: no {want:?} in {}", out.stderr).into());
        }
    }
    Ok(())
}

fn usage_errors(env: &Env) -> Result<(), Failed> {
    let ws = env.workspace()?;
    let inside = ws.path().join("net.log");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["-p", "none", "--net", "allow"],
            "needs the sandbox's own network namespace",
        ),
        (
            vec!["--without", "net-ns", "--net", "allow"],
            "--without net-ns",
        ),
        (
            vec!["--net", "host", "--net-dns", "127.0.0.1:53"],
            "need --net allow",
        ),
        (
            vec!["--net", "host", "--net-resolve", "a.test=127.0.0.1"],
            "need --net allow",
        ),
        (
            vec!["--net", "none", "--net-dns", "127.0.0.1:53"],
            "need --net allow",
        ),
        (vec!["--allow-host", "exa mple.test"], "--allow-host"),
        (vec!["--net-resolve", "x.test"], "NAME=IP"),
        (
            vec!["--net-resolve", "*.x.test=127.0.0.1"],
            "NAME must be a host name",
        ),
        (
            vec!["--net-resolve", "a\u{1}b.test=127.0.0.1"],
            "--net-resolve",
        ),
        (
            vec![
                "--net",
                "allow",
                "--net-log",
                inside.to_str().unwrap_or_default(),
            ],
            "the sandbox can write",
        ),
    ];
    for (extra, want) in cases {
        let mut args = vec!["run", "-w", ws.s()];
        args.extend(&extra);
        args.extend(["--", "true"]);
        let out = run(env, &args)?;
        out.expect_code(2, &format!("{extra:?}"))?;
        if !out.stderr.contains(want) {
            return Err(format!("{extra:?}: want {want:?} in: {}", out.stderr).into());
        }
    }
    if inside.exists() {
        return Err("the refused --net-log was created".into());
    }
    Ok(())
}

fn main() {
    let args = Arguments::from_args();
    let engine: &[(&str, TestFn)] = &[
        ("curl_allowed_name", curl_allowed_name),
        ("git_clone_dumb_http", git_clone_dumb_http),
        ("denials_battery", denials_battery),
        ("sandbox_side", sandbox_side),
        ("probe_ops_refused", probe_ops_refused),
    ];
    let mut trials: Vec<Trial> = Vec::new();
    for who in [common::Who::Root, common::Who::Nobody] {
        let base = common::skip_reason(who);
        for &(name, f) in engine {
            let skip = base.clone().or_else(|| {
                engine_missing().inspect(|_| {
                    if common::expected("egress") {
                        panic!("AGENTCAGE_TEST_EXPECT lists egress but the engine is missing");
                    }
                })
            });
            trials.push(common::trial(who, name, f, skip));
        }
        trials.push(common::trial(
            who,
            "usage_errors",
            usage_errors,
            base.clone(),
        ));
        trials.push(common::trial(
            who,
            "policy_file_keys",
            policy_file_keys,
            base.clone(),
        ));
        trials.push(common::trial(who, "net_host_warns", net_host_warns, base));
    }
    common::run(&args, trials)
}
