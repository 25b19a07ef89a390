//! The request handlers: one arm per protocol request (`exec` has its own file).

use std::os::fd::AsRawFd;

use serde_json::{json, Value};

use super::{err_frame, Exec, Supervisor};
use crate::launch::zygote;
use crate::session::protocol::{Request, VERSION};
use crate::sys;

impl Supervisor<'_> {
    pub(super) fn request(&mut self, conn: u64, req: Request) {
        match req {
            Request::Hello { version } => {
                let v = if version == VERSION {
                    json!({"ok": true, "version": VERSION, "name": self.name, "pid": std::process::id()})
                } else {
                    err_frame(
                        "version",
                        format!(
                            "protocol version {version} is not spoken here (version {VERSION})"
                        ),
                    )
                };
                self.send(conn, &v, &[]);
            }
            Request::Exec {
                argv,
                env,
                cwd,
                timeout_ms,
                tty,
                fds,
                wait,
            } => self.exec(conn, argv, env, cwd, timeout_ms, tty, fds, wait),
            Request::Signal { exec_id, sig } => {
                let v = match self.execs.iter().find(|x| x.id == exec_id) {
                    _ if !(1..=64).contains(&sig) => {
                        err_frame("bad_request", format!("no signal {sig}"))
                    }
                    Some(x) if x.pid > 0 && x.status.is_none() => {
                        let m = zygote::encode_kill(0, x.pid, sig);
                        let _ = sys::send_with_fds(self.zchan, &m, &[]);
                        json!({"ok": true})
                    }
                    Some(_) => err_frame("not_running", format!("exec {exec_id} is not running")),
                    None => err_frame("no_exec", format!("no exec {exec_id}")),
                };
                self.send(conn, &v, &[]);
            }
            Request::Resize {
                exec_id,
                rows,
                cols,
            } => {
                let v = match self.execs.iter().find(|x| x.id == exec_id) {
                    Some(Exec {
                        master: Some(m), ..
                    }) => match sys::set_winsize(m.as_raw_fd(), rows, cols) {
                        Ok(()) => json!({"ok": true}),
                        Err(e) => err_frame("resize", format!("TIOCSWINSZ: {e}")),
                    },
                    Some(_) => err_frame("no_tty", format!("exec {exec_id} has no pty")),
                    None => err_frame("no_exec", format!("no exec {exec_id}")),
                };
                self.send(conn, &v, &[]);
            }
            Request::Wait { exec_id } => match self.execs.iter_mut().find(|x| x.id == exec_id) {
                Some(x) if x.status.is_some() && x.report.is_none() => {
                    let info = x.exit_info(x.status.unwrap_or(0));
                    let owned = x.owner == conn || x.owner == 0;
                    let frame = self.exit_frame(&info);
                    if owned {
                        self.forget(exec_id);
                    }
                    self.send(conn, &frame, &[]);
                }
                Some(x) => x.waiters.push(conn),
                None => {
                    let v = err_frame("no_exec", format!("no exec {exec_id}"));
                    self.send(conn, &v, &[]);
                }
            },
            Request::Denials { exec_id } => {
                let v = self.denials_frame(exec_id);
                self.send(conn, &v, &[]);
            }
            Request::List => {
                let execs: Vec<Value> = self
                    .execs
                    .iter()
                    .map(|x| {
                        json!({"exec_id": x.id, "pid": x.pid, "argv0": x.argv0,
                               "running": x.status.is_none()})
                    })
                    .collect();
                let v = json!({"ok": true, "name": self.name, "pid": std::process::id(),
                               "profile": self.prepared.policy.profile.name(), "execs": execs});
                self.send(conn, &v, &[]);
            }
            Request::Stop => {
                if let Some(i) = self.conns.iter().position(|c| c.id == conn) {
                    let c = self.conns.swap_remove(i);
                    self.stop_conn = Some(c.stream);
                }
                self.reason = "stop";
                self.fail_all("the session was stopped");
            }
        }
    }

    /// `{"op":"denials"}`: an exec's denials, or the unattributed ones.
    pub(super) fn denials_frame(&self, exec_id: Option<u64>) -> Value {
        let Some(d) = &self.denials else {
            return err_frame("bad_request", "the session was started without --events");
        };
        match exec_id {
            Some(id) if self.execs.iter().any(|x| x.id == id) => {
                let (list, dropped) = d.of(id);
                json!({"ok": true, "exec_id": id, "denials": list, "dropped": dropped})
            }
            Some(id) => err_frame("no_exec", format!("no exec {id}")),
            None => {
                let (list, dropped) = d.unattributed();
                json!({"ok": true, "exec_id": null, "denials": list, "dropped": dropped})
            }
        }
    }
}
