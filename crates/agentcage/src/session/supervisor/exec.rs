//! The exec request: its fds and strings checked, the environment and PATH candidates
//! built, the request sent to the zygote.

use std::collections::BTreeMap;
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::{err_frame, Exec, Supervisor};
use crate::launch::zygote;
use crate::session::protocol::TtySize;
use crate::sys;

impl Supervisor<'_> {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn exec(
        &mut self,
        conn: u64,
        argv: Vec<String>,
        env: BTreeMap<String, String>,
        cwd: Option<String>,
        timeout_ms: Option<u64>,
        tty: Option<TtySize>,
        fd_targets: Vec<u8>,
        wait: bool,
    ) {
        let Some(ci) = self.conns.iter().position(|c| c.id == conn) else {
            return;
        };
        // The fds of this frame, taken whatever happens next (never left for another).
        let n = fd_targets.len().min(3);
        let taken: Vec<OwnedFd> = (0..n)
            .filter_map(|_| self.conns[ci].fds.pop_front())
            .collect();
        let bad = |m: String| err_frame("bad_request", m);
        let mut mask = 0u8;
        let mut check = || -> Result<(), Value> {
            if argv.is_empty() || argv[0].is_empty() {
                return Err(bad("argv is empty".into()));
            }
            if fd_targets.len() != taken.len() {
                return Err(bad(format!(
                    "fds lists {} fds, {} came with the frame",
                    fd_targets.len(),
                    taken.len()
                )));
            }
            let mut prev: i32 = -1;
            for (&t, fd) in fd_targets.iter().zip(&taken) {
                if t > 2 || i32::from(t) <= prev {
                    return Err(bad(
                        "fds must list 0, 1 or 2, ascending, each at most once".into()
                    ));
                }
                prev = i32::from(t);
                mask |= 1 << t;
                match sys::fd_kind(fd.as_raw_fd()) {
                    Ok(sys::FdKind::Other) => {}
                    Ok(k) => {
                        return Err(err_frame(
                            "bad_fd",
                            format!(
                                "fd {t}: {} cannot be passed into the sandbox{}",
                                match k {
                                    sys::FdKind::Directory => "a directory",
                                    sys::FdKind::Path => "an O_PATH fd",
                                    _ => "a terminal",
                                },
                                if k == sys::FdKind::Terminal {
                                    " (ask for a tty: the exec gets a pty of its own)"
                                } else {
                                    ""
                                }
                            ),
                        ))
                    }
                    Err(e) => return Err(err_frame("bad_fd", format!("fd {t}: {e}"))),
                }
            }
            let nul = |s: &str| s.contains('\0');
            if argv.iter().any(|a| nul(a))
                || cwd.as_deref().is_some_and(nul)
                || env
                    .iter()
                    .any(|(k, v)| k.is_empty() || k.contains('=') || nul(k) || nul(v))
            {
                return Err(bad(
                    "argv, cwd and env must not contain NUL; env names are non-empty, without '='"
                        .into(),
                ));
            }
            Ok(())
        };
        if let Err(v) = check() {
            self.send(conn, &v, &[]);
            return;
        }
        // The environment: the session's, with the exec's variables set on top.
        let mut envp = self.base_env.clone();
        for (k, v) in &env {
            let (k, v) = (k.as_bytes().to_vec(), v.as_bytes().to_vec());
            match envp.iter_mut().find(|(ek, _)| *ek == k) {
                Some(e) => e.1 = v,
                None => envp.push((k, v)),
            }
        }
        let path = envp
            .iter()
            .find(|(k, _)| k == b"PATH")
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| crate::hygiene::DEFAULT_PATH.as_bytes().to_vec());
        let arg0 = argv[0].as_bytes();
        let candidates: Vec<Vec<u8>> = if arg0.contains(&b'/') {
            vec![arg0.to_vec()]
        } else {
            path.split(|&b| b == b':')
                .map(|d| {
                    let mut c = if d.is_empty() {
                        b".".to_vec()
                    } else {
                        d.to_vec()
                    };
                    c.push(b'/');
                    c.extend_from_slice(arg0);
                    c
                })
                .collect()
        };
        let envp: Vec<Vec<u8>> = envp
            .into_iter()
            .map(|(mut k, v)| {
                k.push(b'=');
                k.extend(v);
                k
            })
            .collect();
        let argv_b: Vec<Vec<u8>> = argv.iter().map(|a| a.as_bytes().to_vec()).collect();
        // Relative to the session's directory unless absolute.
        let base = self.prepared.cwd.to_string_lossy().into_owned();
        let cwd_s = match cwd {
            Some(c) if c.starts_with('/') => c,
            Some(c) => format!("{}/{c}", base.trim_end_matches('/')),
            None => base,
        };
        let id = self.next_exec;
        let msg = zygote::ExecRequest {
            id: id as u32,
            tty: tty.map(|t| (t.rows, t.cols)),
            fdmask: mask,
            cwd: cwd_s.as_bytes(),
            argv: &argv_b,
            envp: &envp,
            candidates: &candidates,
        }
        .encode();
        if msg.len() > zygote::MAX_REQUEST {
            let v = err_frame(
                "too_large",
                format!(
                    "argv and environment take {} bytes; a session exec takes at most {}",
                    msg.len(),
                    zygote::MAX_REQUEST
                ),
            );
            self.send(conn, &v, &[]);
            return;
        }
        let raw: Vec<i32> = taken.iter().map(AsRawFd::as_raw_fd).collect();
        if let Err(e) = sys::send_with_fds(self.zchan, &msg, &raw) {
            let v = json!({"ok": false, "error": {"kind": "setup", "exit_code": 125,
                "message": format!("send the exec to the session's sandbox: {e}")}});
            self.send(conn, &v, &[]);
            return;
        }
        drop(taken);
        self.next_exec += 1;
        self.started += 1;
        self.execs.push(Exec {
            id,
            owner: conn,
            argv0: argv[0].clone(),
            cwd: cwd_s,
            pid: 0,
            report: None,
            master: None,
            status: None,
            waiters: if wait { vec![conn] } else { Vec::new() },
            deadline: timeout_ms.map(|t| Instant::now() + Duration::from_millis(t)),
            kill_at: None,
            timed_out: false,
        });
    }
}
