//! `agentcage mcp`: an MCP server on stdio (the official Rust SDK, `rmcp`) that owns one
//! session (docs/SESSIONS.md) and offers it to an agent as tools: `exec`, `read_file`,
//! `write_file`, `list_dir`, and with `--overlay` a read-only `diff`. See docs/AGENT-API.md.
//!
//! The session is started lazily, at the first tool call, by `agentcage session start
//! --die-with-parent` with this command's flags (a child process: the session's supervisor is
//! a double fork that must not come from this multi-threaded process), and stopped when stdin
//! closes or on SIGTERM/SIGINT/SIGHUP; a `kill -9` of the server stops it too (its supervisor
//! watches a pidfd of the server), and sessions of dead servers are swept at start. Every
//! tool runs through the sandbox: file tools are execs of `cat`, `sh` and `find` inside,
//! subject to the session's policy like any command of the agent; `diff` reads the overlay's
//! upper layer on the host, in this process (`agentcage::overlay`), and writes nothing but
//! the conflict record `agentcage diff` writes too.

mod capture;
mod tools;

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use agentcage::session::{Client, SessionError};
use agentcage::NetMode;
use clap::Args;

use crate::policy::Resolved;
use crate::run::{self, PolicyArgs, PolicyChecks};

/// Flags of `agentcage mcp` (all of them are `session start`'s and are passed to it).
#[derive(Debug, Args)]
pub struct McpArgs {
    /// What to isolate (run's flags).
    #[command(flatten)]
    pub policy: PolicyArgs,
    /// The overlay workspace (docs/OVERLAY.md): the agent's writes wait for review; adds
    /// the read-only `diff` tool (never `commit`: that stays with you).
    #[command(flatten)]
    pub overlay: crate::overlay::OverlayArgs,
    /// As for run.
    #[arg(long)]
    pub trust_writable_policy: bool,
}

/// What the server knows of its session before it starts.
#[derive(Debug)]
pub struct Config {
    /// `session start`'s arguments after `--name N -q`.
    forward: Vec<OsString>,
    /// The sandbox can reach hosts outside: `--net host`, or a non-empty egress allow-list.
    open_world: bool,
    /// The egress allow-list (for the tool descriptions).
    allow: Vec<String>,
    /// `--net` mode name.
    net: &'static str,
    /// The agentcage binary that starts the session.
    exe: PathBuf,
    /// The session's name.
    name: String,
    /// `--overlay`: the overlay's directory (the `diff` tool reads it).
    overlay: Option<PathBuf>,
    /// Why Landlock (filesystem) denials are not in `denials` on this host, when the
    /// profile has Landlock.
    landlock_note: Option<String>,
}

/// `agentcage mcp`: `forward` are the raw arguments after `mcp` (clap has accepted them).
pub fn main(args: &McpArgs, forward: Vec<OsString>) -> i32 {
    let checks = PolicyChecks {
        trust_writable_policy: args.trust_writable_policy,
        allow_unsandboxed_root: false,
        allow_nested_root: false,
        quiet: true,
    };
    // Checked now, so that a bad flag or policy file fails before a client connects.
    let Resolved { policy, .. } = match run::resolve_checked(&args.policy, checks) {
        Ok(r) => r,
        Err(code) => return code,
    };
    let exe = match std::env::current_exe() {
        Ok(p) => p,
        Err(e) => {
            crate::ui::error(
                &format!("find the agentcage binary (/proc/self/exe): {e}"),
                None,
            );
            return crate::exit::SETUP;
        }
    };
    let name = format!("mcp-{}", std::process::id());
    let overlay =
        match crate::overlay::location(&args.overlay, &policy.workspace, Some(name.as_str())) {
            Ok(o) => o.map(|(_, dir)| dir),
            Err(e) => return run::usage_error(&e),
        };
    sweep_stale();
    let config = Config {
        forward,
        open_world: policy.net == NetMode::Host
            || (policy.net == NetMode::Allow && !policy.egress.allow.is_empty()),
        allow: policy.egress.allow.clone(),
        net: policy.net.name(),
        exe,
        name,
        overlay,
        landlock_note: policy
            .layers
            .has(agentcage::Layer::Landlock)
            .then(agentcage::events::landlock_not_observable),
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            crate::ui::error(&format!("start the MCP server's runtime: {e}"), None);
            return crate::exit::SETUP;
        }
    };
    let name = config.name.clone();
    let server = tools::Server::new(Arc::new(config));
    let code = rt.block_on(async move { serve(server).await });
    // tokio's stdin reader is a blocking read that cannot be interrupted: do not wait for it.
    rt.shutdown_timeout(Duration::from_millis(100));
    // The session dies with us, whatever ended the server. A start still in flight (a
    // signal during the first call) is waited for, so that it cannot outlive us.
    let t = std::time::Instant::now();
    while tools::start_in_flight() && t.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(20));
    }
    if tools::started() {
        match Client::connect(&name).and_then(|mut c| c.stop()) {
            // Its start failed (the client was told why): nothing to stop.
            Ok(()) | Err(SessionError::Gone { .. }) => {}
            Err(e) => crate::ui::error(&format!("stop session {name}: {e}"), e.hint()),
        }
    }
    code
}

/// Stops the sessions of MCP servers that are gone (`mcp-PID` whose PID no longer runs, or
/// runs a process started after the session's supervisor: a recycled pid). Sessions started
/// by this build die with their server (`--die-with-parent`); this covers older ones and a
/// server killed before its `session start` opened the pidfd.
fn sweep_stale() {
    let Ok(dir) = agentcage::session::dir::runtime_dir() else {
        return;
    };
    for (st, alive) in agentcage::session::dir::list_and_reap(&dir) {
        let Some(pid) = st
            .name
            .strip_prefix("mcp-")
            .and_then(|p| p.parse::<i32>().ok())
        else {
            continue;
        };
        if !alive || owner_runs(pid, st.start_time) {
            continue;
        }
        match Client::connect(&st.name).and_then(|mut c| c.stop()) {
            Ok(()) | Err(SessionError::Gone { .. }) => eprintln!(
                "agentcage: stopped session {}: its MCP server (pid {pid}) is gone",
                st.name
            ),
            Err(e) => crate::ui::warning(&format!(
                "stop session {} of a gone MCP server: {e}",
                st.name
            )),
        }
    }
}

/// Whether `pid` is the server that started a session whose supervisor started at
/// `supervisor_start` (clock ticks since boot): the server started before its supervisor; a
/// process started later under the same pid is another one.
fn owner_runs(pid: i32, supervisor_start: u64) -> bool {
    agentcage::session::dir::proc_start_time(pid).is_some_and(|t| t <= supervisor_start)
}

async fn serve(server: tools::Server) -> i32 {
    use rmcp::ServiceExt;
    use tokio::signal::unix::{signal, SignalKind};
    let mut signals = Vec::new();
    for kind in [
        SignalKind::terminate(),
        SignalKind::interrupt(),
        SignalKind::hangup(),
    ] {
        match signal(kind) {
            Ok(s) => signals.push(s),
            Err(e) => {
                crate::ui::error(&format!("install a signal handler: {e}"), None);
                return crate::exit::SETUP;
            }
        }
    }
    let [mut term, mut int, mut hup] = match <[_; 3]>::try_from(signals) {
        Ok(a) => a,
        Err(_) => return crate::exit::SETUP,
    };
    let running = tokio::select! {
        r = server.serve(rmcp::transport::stdio()) => match r {
            Ok(r) => r,
            Err(e) => {
                crate::ui::error(&format!("MCP initialization: {e}"), None);
                return 1;
            }
        },
        _ = term.recv() => return 0,
        _ = int.recv() => return 0,
        _ = hup.recv() => return 0,
    };
    let token = running.cancellation_token();
    tokio::select! {
        _ = running.waiting() => 0,
        _ = term.recv() => { token.cancel(); 0 }
        _ = int.recv() => { token.cancel(); 0 }
        _ = hup.recv() => { token.cancel(); 0 }
    }
}
