//! What follows an exec request: timeouts, the zygote's replies (started, failed, exited),
//! the exec's report, the exit frame and its waiters, and the end of the session.

use std::collections::VecDeque;
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::Instant;

use serde_json::{json, Value};

use super::{exit_frame, Supervisor};
use crate::error::{Error, Step};
use crate::launch::zygote::{self, Reply};
use crate::launch::TIMEOUT_GRACE;
use crate::session::protocol::ExitInfo;
use crate::sys;

impl Supervisor<'_> {
    /// Timeouts: SIGTERM to the exec's group at the deadline, SIGKILL [`TIMEOUT_GRACE`] later.
    pub(super) fn timers(&mut self, now: Instant) {
        let mut kills = Vec::new();
        for x in &mut self.execs {
            if x.pid <= 0 || x.status.is_some() {
                continue;
            }
            if x.deadline.is_some_and(|d| now >= d) {
                x.deadline = None;
                x.timed_out = true;
                self.timeouts += 1;
                x.kill_at = Some(now + TIMEOUT_GRACE);
                kills.push((x.pid, libc::SIGTERM));
            }
            if x.kill_at.is_some_and(|k| now >= k) {
                x.kill_at = None;
                kills.push((x.pid, libc::SIGKILL));
            }
        }
        for (pid, sig) in kills {
            let _ = sys::send_with_fds(self.zchan, &zygote::encode_kill(0, pid, sig), &[]);
        }
    }

    pub(super) fn zygote_replies(&mut self) {
        loop {
            let mut buf = [0u8; 64];
            let mut fds: VecDeque<OwnedFd> = VecDeque::new();
            // The channel is blocking: only read what poll said is there.
            let mut p = [libc::pollfd {
                fd: self.zchan,
                events: libc::POLLIN,
                revents: 0,
            }];
            if !matches!(sys::poll(&mut p, 0), Ok(1..)) || p[0].revents & libc::POLLIN == 0 {
                return;
            }
            let n = match sys::recv_with_owned_fds(self.zchan, &mut buf, &mut fds) {
                Ok(n) if n > 0 => n,
                _ => return,
            };
            match zygote::decode_reply(&buf[..n]) {
                Some(Reply::Started { id, pid }) => {
                    let mut ready = false;
                    if let Some(x) = self.execs.iter_mut().find(|x| x.id == u64::from(id)) {
                        x.pid = pid;
                        if let Some(d) = &self.denials {
                            d.register(pid, x.id);
                        }
                        x.report = fds.pop_front();
                        x.master = fds.pop_front();
                        // The zygote resumes once the exec's execve succeeded (or it failed):
                        // its report is usually there already, no need for another poll.
                        let fd = x.report.as_ref().map_or(-1, AsRawFd::as_raw_fd);
                        let mut p = [libc::pollfd {
                            fd,
                            events: libc::POLLIN,
                            revents: 0,
                        }];
                        ready = fd >= 0 && matches!(sys::poll(&mut p, 0), Ok(1..));
                    }
                    if ready {
                        self.report(u64::from(id));
                    }
                }
                Some(Reply::Failed { id, what, errno }) => {
                    let what = match what {
                        zygote::FAILED_PIPE => "create the exec's report pipe",
                        zygote::FAILED_PTY => "open the exec's pty (/dev/ptmx of the sandbox)",
                        zygote::FAILED_FORK => "fork the exec in the session",
                        _ => "decode the exec request in the session",
                    };
                    let hint = (errno.0 == libc::EAGAIN)
                        .then_some("the session's process limit (--pids) is reached");
                    self.exec_failed(
                        u64::from(id),
                        json!({"ok": false, "error": {"kind": "setup", "exit_code": 125,
                            "message": format!("{what}: {errno}"), "hint": hint}}),
                    );
                }
                Some(Reply::Exited { id, status, .. }) => self.exited(u64::from(id), status),
                None => {}
            }
        }
    }

    pub(super) fn exec_failed(&mut self, id: u64, v: Value) {
        let Some(i) = self.execs.iter().position(|x| x.id == id) else {
            return;
        };
        let x = self.execs.swap_remove(i);
        if let Some(d) = &self.denials {
            d.forget(id);
        }
        self.send(x.owner, &v, &[]);
    }

    /// The exec's report pipe: EOF, it was executed (the started frame goes out); a record,
    /// its setup failed (an error frame with run's message and exit code).
    pub(super) fn report(&mut self, id: u64) {
        let Some(i) = self.execs.iter().position(|x| x.id == id) else {
            return;
        };
        // Read once: a report already handled is never handled again.
        let Some(fd) = self.execs[i].report.take() else {
            return;
        };
        let r = crate::launch::read_report(fd.as_raw_fd());
        drop(fd);
        let x = &self.execs[i];
        match r {
            None => {
                let v = json!({"ok": true, "exec_id": id, "pid": x.pid, "tty": x.master.is_some()});
                let master: Vec<i32> = x.master.iter().map(AsRawFd::as_raw_fd).collect();
                let (owner, status, waiters) = (x.owner, x.status, x.waiters.clone());
                self.send(owner, &v, &master);
                if let Some(st) = status {
                    // It exited before its report was read: answer the waiters now.
                    self.finish(id, st, &waiters);
                }
            }
            Some(r) => {
                let (message, hint, code) = match r.step {
                    Step::Exec => {
                        let e = Error::Exec {
                            command: x.argv0.clone(),
                            errno: r.errno,
                        };
                        let code = if matches!(r.errno.0, libc::ENOENT | libc::ENOTDIR) {
                            127
                        } else {
                            126
                        };
                        (e.chain(), e.hint().map(str::to_owned), code)
                    }
                    Step::Chdir => (
                        format!("chdir {}: {}", x.cwd, r.errno),
                        Some("--cwd must be a directory inside the sandbox".to_owned()),
                        125,
                    ),
                    _ => {
                        let e = self.prepared.describe_setup_error(r);
                        (e.chain(), e.hint().map(str::to_owned), 125)
                    }
                };
                let v = json!({"ok": false, "error": {"kind": if code == 125 { "setup" } else { "exec" },
                    "exit_code": code, "message": message, "hint": hint}});
                self.exec_failed(id, v);
            }
        }
    }

    pub(super) fn exited(&mut self, id: u64, status: i32) {
        let Some(x) = self.execs.iter_mut().find(|x| x.id == id) else {
            return;
        };
        x.status = Some(status);
        x.master = None;
        x.deadline = None;
        x.kill_at = None;
        self.last_activity = Instant::now();
        if x.timed_out {
            // What of its group ignored SIGTERM goes now.
            let _ = sys::send_with_fds(
                self.zchan,
                &zygote::encode_kill(0, x.pid, libc::SIGKILL),
                &[],
            );
        }
        if x.report.is_none() {
            let waiters = x.waiters.clone();
            self.finish(id, status, &waiters);
        }
    }

    /// Sends the exit frame to the waiters; forgets the exec once its owner has it.
    pub(super) fn finish(&mut self, id: u64, status: i32, waiters: &[u64]) {
        let Some(x) = self.execs.iter().find(|x| x.id == id) else {
            return;
        };
        let info = x.exit_info(status);
        let owner = x.owner;
        let frame = self.exit_frame(&info);
        for &w in waiters {
            self.send(w, &frame, &[]);
        }
        if owner == 0 || waiters.contains(&owner) {
            self.forget(id);
        } else if let Some(x) = self.execs.iter_mut().find(|x| x.id == id) {
            x.waiters.clear();
        }
    }

    /// The exit frame, with the exec's denials when the session records them.
    pub(super) fn exit_frame(&self, info: &ExitInfo) -> Value {
        let mut v = exit_frame(info);
        if let Some(d) = &self.denials {
            let (list, dropped) = d.of(info.exec_id);
            v["denials"] = serde_json::to_value(list).unwrap_or_default();
            v["denials_dropped"] = json!(dropped);
        }
        v
    }

    /// Forgets an exec (and its denials).
    pub(super) fn forget(&mut self, id: u64) {
        self.execs.retain(|x| x.id != id);
        if let Some(d) = &self.denials {
            d.forget(id);
        }
    }

    /// Every pending request gets an error frame (the session ends).
    pub(super) fn fail_all(&mut self, why: &str) {
        let mut to: Vec<u64> = Vec::new();
        for x in &self.execs {
            if x.status.is_none() || x.report.is_some() {
                to.extend(&x.waiters);
                if x.report.is_some() || x.pid == 0 {
                    to.push(x.owner);
                }
            }
        }
        to.sort_unstable();
        to.dedup();
        let v = json!({"ok": false, "error": {"kind": "gone", "exit_code": 125, "message": why}});
        for c in to {
            self.send(c, &v, &[]);
        }
    }
}
