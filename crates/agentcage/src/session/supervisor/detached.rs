//! The supervisor process: detach, spawn the sandbox, say ready, serve, then the summary.

use std::os::fd::AsRawFd;
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde_json::json;

use super::{StartOptions, Summary, Supervisor};
use crate::launch::zygote;
use crate::launch::{Prepared, Role, SpawnOptions};
use crate::session::dir::{self, State};
use crate::session::protocol;
use crate::sys;

/// The supervisor process: detach, spawn the sandbox, say ready, serve. Returns its exit code.
pub(super) fn supervise(
    prepared: Prepared,
    mut opts: StartOptions,
    dir: PathBuf,
    name: String,
    listener: UnixListener,
    ready_w: i32,
) -> i32 {
    let _ = sys::setsid();
    let _ = sys::prctl(
        libc::PR_SET_NAME,
        c"agentcage-sess".as_ptr() as libc::c_ulong,
        0,
        0,
        0,
    );
    if let Ok(null) = sys::open(c"/dev/null", libc::O_RDWR, 0) {
        for fd in 0..3 {
            let _ = sys::dup2(null, fd);
        }
        if null > 2 {
            sys::close(null);
        }
    }
    let mut keep = vec![0, 1, 2, listener.as_raw_fd(), ready_w];
    keep.extend(&opts.keep_fds);
    keep.extend(opts.owner.as_ref().map(AsRawFd::as_raw_fd));
    // The prepared plan's own fds (the idmapped workspace's user namespaces).
    keep.extend(prepared.held_fds());
    keep.sort_unstable();
    keep.dedup();
    sys::close_all_except(&keep);
    let fail = |message: String, hint: Option<&str>| {
        let v = json!({"ok": false, "message": message, "hint": hint});
        let _ = sys::write_all(ready_w, v.to_string().as_bytes());
        sys::close(ready_w);
        dir::remove_files(&dir, &name);
        125
    };
    let (zchan, zchild) = match sys::seqpacket_pair((zygote::MAX_REQUEST + 4096) as i32) {
        Ok(p) => p,
        Err(e) => {
            return fail(
                format!("create the session's channel to its sandbox: {e}"),
                None,
            )
        }
    };
    // Egress (issue #12): the launch outcome's extra fds would be received here, next to
    // the zygote's channel, and the egress engine would run in this loop.
    let denials = opts
        .events
        .is_some()
        .then(crate::events::session::ExecDenials::default);
    let sink = denials
        .as_ref()
        .map(|d| d.sink(opts.events.take().flatten()));
    let spawn_opts = SpawnOptions {
        egress: crate::egress::EgressHooks {
            log: opts.net_log.take(),
            on_deny: sink.clone().map(|s| {
                std::sync::Arc::new(move |e: &agentcage_egress::Event| {
                    s(&crate::events::from_egress(e));
                }) as crate::egress::SharedDenyHook
            }),
        },
        events: sink,
        ..SpawnOptions::default()
    };
    let spawned = prepared.spawn(&spawn_opts, Role::Zygote { chan: zchild });
    sys::close(zchild);
    let spawned = match spawned {
        Ok(s) => s,
        Err(e) => return fail(e.chain(), e.hint()),
    };
    if let Some(r) = spawned.report {
        let e = prepared.describe_setup_error(r);
        drop(spawned);
        return fail(e.chain(), e.hint());
    }
    let me = std::process::id() as i32;
    let created = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let state = State {
        name: name.clone(),
        pid: me,
        start_time: dir::proc_start_time(me).unwrap_or(0),
        sandbox_pid: spawned.pid(),
        profile: prepared.policy.profile.name().into(),
        workspace: prepared.policy.workspace.clone(),
        created,
        idle_timeout_s: opts.idle_timeout.map(|d| d.as_secs_f64()),
        socket: dir::socket_path(&dir, &name),
    };
    if let Err(e) = dir::write_state(&dir, &state) {
        drop(spawned);
        return fail(format!("write the session's state file: {e}"), None);
    }
    if let Some(owner) = opts.owner.take() {
        if let Err(e) = super::super::owner::watch(owner, dir::socket_path(&dir, &name)) {
            drop(spawned);
            return fail(
                format!("start the thread that watches the owner: {e}"),
                None,
            );
        }
    }
    let _ = listener.set_nonblocking(true);
    let _ = sys::write_all(
        ready_w,
        json!({"ok": true, "pid": me}).to_string().as_bytes(),
    );
    sys::close(ready_w);
    let base_env = prepared
        .envp
        .items()
        .iter()
        .filter_map(|c| {
            let b = c.to_bytes();
            let i = b.iter().position(|&x| x == b'=')?;
            Some((b[..i].to_vec(), b[i + 1..].to_vec()))
        })
        .collect();
    let pidfd = sys::pidfd_open(spawned.pid()).unwrap_or(-1);
    let t0 = Instant::now();
    let mut sup = Supervisor {
        name: name.clone(),
        prepared: &prepared,
        listener,
        zchan,
        pidfd,
        conns: Vec::new(),
        execs: Vec::new(),
        next_exec: 1,
        next_conn: 1,
        idle_timeout: opts.idle_timeout,
        last_activity: Instant::now(),
        base_env,
        stop_conn: None,
        reason: "stop",
        started: 0,
        timeouts: 0,
        denials,
    };
    sup.serve();
    let summary = Summary {
        name: name.clone(),
        reason: sup.reason,
        execs: sup.started,
        timeouts: sup.timeouts,
        wall_seconds: t0.elapsed().as_secs_f64(),
        peak_memory_bytes: spawned.cgroup().and_then(|c| c.peak_memory()),
        oom: spawned.cgroup().is_some_and(|c| c.oom_killed()),
        limits: spawned.limit_lines().to_vec(),
    };
    // Everything inside dies with the zygote (pid namespace); then the cgroup goes.
    drop(spawned);
    dir::remove_files(&dir, &name);
    if let Some(f) = opts.on_end.take() {
        f(&summary);
    }
    if let Some(c) = sup.stop_conn.take() {
        let _ = protocol::send_frame(c.as_raw_fd(), &protocol::encode(&json!({"ok": true})), &[]);
    }
    0
}
