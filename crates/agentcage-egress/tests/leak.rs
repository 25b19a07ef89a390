//! 10k sequential connections through the proxy, the capture and the DNS stub leave no fd
//! and no thread behind. Its own test binary: it counts this process's fds and threads.

mod support;

use std::io::Write;
use std::net::SocketAddr;

use hickory_proto::rr::RecordType;
use support::*;

fn main() {
    let args = libtest_mimic::Arguments::from_args();
    let tests: &[(&'static str, TestFn)] =
        &[("ten_thousand_connections", ten_thousand_connections)];
    libtest_mimic::run(&args, trials(tests)).exit();
}

fn count(dir: &str) -> usize {
    std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
}

fn ten_thousand_connections() -> TestResult {
    let (f, up, port) = captured("allowed.test")?;
    let captured = SocketAddr::new(FAKE1.into(), port);
    let one = |i: usize| -> TestResult {
        match i % 4 {
            0 => {
                let mut s = connect(f.proxy);
                write!(s, "CONNECT allowed.test:{port} HTTP/1.1\r\n\r\n").map_err(err)?;
                let head = read_head(&mut s);
                ensure(head.starts_with("HTTP/1.1 200"), head)?;
                echo_roundtrip(&mut s, b"x")
            }
            1 => echo_roundtrip(&mut connect(captured), b"SSH-2.0-x\r\n"),
            // Denied ones must not leak either.
            2 => ensure(
                refused(
                    captured,
                    &agentcage_egress::client_hello(Some(b"evil.test")),
                ),
                "denied",
            ),
            _ => {
                let m = f.query("allowed.test.", RecordType::A, true);
                ensure(m.answers().len() == 1, "dns over tcp")
            }
        }
    };
    for i in 0..8 {
        one(i)?;
    }
    let settle = || {
        let (fds, threads) = (count("/proc/self/fd"), count("/proc/self/task"));
        std::thread::sleep(std::time::Duration::from_millis(50));
        (fds, threads)
    };
    ensure(eventually(|| up.accepts() == 4), "warm-up")?;
    // Baseline once the echo threads of the warm-up have gone.
    let mut before = settle();
    for _ in 0..20 {
        let now = settle();
        if now == before {
            break;
        }
        before = now;
    }
    for i in 0..10_000 {
        one(i).map_err(|e| err(format!("connection {i}: {e:?}")))?;
    }
    let mut after = (0, 0);
    let same = eventually(|| {
        after = settle();
        after.0 <= before.0 && after.1 <= before.1
    });
    ensure(
        same,
        format!("fds/threads before {before:?}, after {after:?}"),
    )?;
    let st = f.engine().stats();
    ensure(st.allowed >= 5000 && st.denied >= 2500, format!("{st:?}"))
}
