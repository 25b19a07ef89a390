//! The supervisor's poll loop (listener, clients, zygote channel, pidfd, report pipes,
//! timers, idle) and its connections (accept, read frames, send, drop).

use std::collections::VecDeque;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{err_frame, Conn, Supervisor};
use crate::session::protocol::{self, FrameReader, Next, Request};
use crate::sys;

impl Supervisor<'_> {
    pub(super) fn serve(&mut self) {
        let mut pfds: Vec<libc::pollfd> = Vec::with_capacity(16);
        let pollfd = |fd: i32| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        loop {
            if self.stop_conn.is_some() {
                return;
            }
            let now = Instant::now();
            self.timers(now);
            let mut wake: Option<Instant> = None;
            for x in &self.execs {
                for t in [x.deadline, x.kill_at].into_iter().flatten() {
                    wake = Some(wake.map_or(t, |w| w.min(t)));
                }
            }
            if let Some(idle) = self.idle_timeout {
                if self.conns.is_empty() && self.execs.iter().all(|x| x.status.is_some()) {
                    let at = self.last_activity + idle;
                    if now >= at {
                        self.reason = "idle";
                        return;
                    }
                    wake = Some(wake.map_or(at, |w| w.min(at)));
                }
            }
            pfds.clear();
            pfds.push(pollfd(self.listener.as_raw_fd()));
            pfds.push(pollfd(self.zchan));
            pfds.push(pollfd(self.pidfd));
            for c in &self.conns {
                pfds.push(pollfd(c.stream.as_raw_fd()));
            }
            let nconn = self.conns.len();
            let report_ids: Vec<u64> = self
                .execs
                .iter()
                .filter(|x| x.report.is_some())
                .map(|x| x.id)
                .collect();
            for x in self.execs.iter().filter(|x| x.report.is_some()) {
                pfds.push(pollfd(x.report.as_ref().map_or(-1, AsRawFd::as_raw_fd)));
            }
            let timeout = wake.map_or(-1, |w| {
                w.saturating_duration_since(Instant::now())
                    .as_micros()
                    .div_ceil(1000)
                    .min(i32::MAX as u128) as i32
            });
            match sys::poll(&mut pfds, timeout) {
                Ok(_) => {}
                Err(e) if e.0 == libc::EINTR => continue,
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
            if pfds[2].revents != 0 {
                // The zygote is gone (killed from outside, or the cgroup's OOM killer):
                // the session is over.
                self.reason = "sandbox-exited";
                self.fail_all("the session's sandbox exited");
                return;
            }
            if pfds[1].revents != 0 {
                self.zygote_replies();
            }
            for (i, id) in report_ids.iter().enumerate() {
                if pfds[3 + nconn + i].revents != 0 {
                    self.report(*id);
                }
            }
            let ready: Vec<u64> = (0..nconn)
                .filter(|&i| pfds[3 + i].revents != 0)
                .map(|i| self.conns[i].id)
                .collect();
            for id in ready {
                self.read_conn(id);
            }
            if pfds[0].revents != 0 {
                self.accept();
            }
        }
    }

    pub(super) fn accept(&mut self) {
        while let Ok((stream, _)) = self.listener.accept() {
            // Same uid as ours, or root: anyone else is refused before a byte is read.
            let me = sys::geteuid();
            match sys::peer_cred(stream.as_raw_fd()) {
                Ok((_, uid, _)) if uid == me || uid == 0 => {}
                _ => {
                    let f = protocol::encode(&err_frame(
                        "denied",
                        "this session belongs to another user",
                    ));
                    let _ = protocol::send_frame(stream.as_raw_fd(), &f, &[]);
                    continue;
                }
            }
            let _ = stream.set_nonblocking(false);
            let _ = stream.set_write_timeout(Some(Duration::from_secs(5)));
            self.last_activity = Instant::now();
            self.conns.push(Conn {
                id: self.next_conn,
                stream,
                reader: FrameReader::default(),
                fds: VecDeque::new(),
            });
            self.next_conn += 1;
        }
    }

    pub(super) fn send(&mut self, conn: u64, v: &Value, fds: &[i32]) {
        let Some(i) = self.conns.iter().position(|c| c.id == conn) else {
            return;
        };
        let f = protocol::encode(v);
        if protocol::send_frame(self.conns[i].stream.as_raw_fd(), &f, fds).is_err() {
            self.drop_conn(conn);
        }
    }

    pub(super) fn drop_conn(&mut self, conn: u64) {
        self.conns.retain(|c| c.id != conn);
        for x in &mut self.execs {
            x.waiters.retain(|&w| w != conn);
            if x.owner == conn {
                x.owner = 0;
            }
        }
        // Finished execs nobody can wait for any more.
        let gone: Vec<u64> = self
            .execs
            .iter()
            .filter(|x| x.owner == 0 && x.status.is_some() && x.report.is_none())
            .map(|x| x.id)
            .collect();
        for id in gone {
            self.forget(id);
        }
        self.last_activity = Instant::now();
    }

    pub(super) fn read_conn(&mut self, conn: u64) {
        let Some(i) = self.conns.iter().position(|c| c.id == conn) else {
            return;
        };
        let mut buf = [0u8; 65536];
        let fd = self.conns[i].stream.as_raw_fd();
        let r = sys::recv_with_owned_fds(fd, &mut buf, &mut self.conns[i].fds);
        match r {
            Ok(0) | Err(_) => {
                self.drop_conn(conn);
                return;
            }
            Ok(n) => self.conns[i].reader.push(&buf[..n]),
        }
        self.last_activity = Instant::now();
        loop {
            let Some(i) = self.conns.iter().position(|c| c.id == conn) else {
                return;
            };
            match self.conns[i].reader.next_frame() {
                Next::Incomplete => return,
                Next::TooLarge(n) => {
                    let v = err_frame(
                        "bad_frame",
                        format!(
                            "frame of {n} bytes is larger than {} bytes",
                            protocol::MAX_FRAME
                        ),
                    );
                    self.send(conn, &v, &[]);
                    self.drop_conn(conn);
                    return;
                }
                Next::Frame(f) => match serde_json::from_slice::<Request>(&f) {
                    Ok(req) => self.request(conn, req),
                    Err(e) => {
                        let v = err_frame("bad_frame", format!("not a request: {e}"));
                        self.send(conn, &v, &[]);
                    }
                },
            }
            if self.stop_conn.is_some() {
                return;
            }
        }
    }
}
