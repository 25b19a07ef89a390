//! `agentcage session start|list|stop` and `agentcage exec`: one sandbox, many commands
//! (docs/SESSIONS.md). The library does the work (`agentcage::session`); this renders it and
//! maps outcomes to run's exit codes.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use agentcage::hostfs::HostFile;
use agentcage::session::{self, Client, ExecSpec, SessionError, StartOptions, TtyMode};
use agentcage::{Command, Layer};
use clap::{Args, Subcommand};

use crate::exit;
use crate::policy::{Resolved, UsageError};
use crate::run::{self, PolicyArgs, PolicyChecks};
use crate::ui;

/// `agentcage session ...`.
#[derive(Debug, Subcommand)]
pub enum SessionCmd {
    /// Create a sandbox that stays up for many `agentcage exec`s; prints its name once it is
    /// ready. Takes run's policy flags.
    #[command(
        after_help = "Examples:\n  S=$(agentcage session start)\n  agentcage session start --name build --memory 4G --idle-timeout 30m --rw ~/.cache/pip\n  agentcage session start --policy ~/.config/agentcage/coding-agent.toml --json-report s.json"
    )]
    Start(Box<StartArgs>),
    /// The sessions of this user (dead ones' state is removed).
    #[command(after_help = "Examples:\n  agentcage session list\n  agentcage session list --json")]
    List(ListArgs),
    /// Stop a session: everything inside is killed; its mounts, cgroup, socket and state go.
    #[command(
        after_help = "Examples:\n  agentcage session stop build\n  agentcage session stop --all"
    )]
    Stop(StopArgs),
}

/// Flags of `session start`.
#[derive(Debug, Args)]
pub struct StartArgs {
    /// The session's name (default: generated): 1 to 64 of A-Z a-z 0-9 . _ -
    #[arg(long)]
    pub name: Option<String>,
    /// What to isolate (run's flags).
    #[command(flatten)]
    pub policy: PolicyArgs,
    /// Stop the session after this long without an exec running or a client connected
    /// (e.g. 30m). Default: until stopped.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub idle_timeout: Option<f64>,
    /// Write the session's outcome (why it ended, execs, timeouts, peak memory, oom, wall
    /// time) as JSON to FILE when it ends (see run's --json-report).
    #[arg(long, value_name = "FILE")]
    pub json_report: Option<PathBuf>,
    /// Record each exec's denials (seccomp, network; Landlock where observable): in its exit
    /// frame and for the `denials` request (docs/SESSIONS.md). With FILE or fd:N, also write
    /// the stream there, as run's --events (docs/EVENTS.md).
    #[arg(long, value_name = "FILE|fd:N", num_args = 0..=1, default_missing_value = "")]
    pub events: Option<OsString>,
    /// The overlay workspace (docs/OVERLAY.md): one overlay per session; `agentcage diff`
    /// and `commit` work while it runs.
    #[command(flatten)]
    pub overlay: crate::overlay::OverlayArgs,
    /// Stop the session when the process that ran `session start` exits, however it ends
    /// (`kill -9` included): for a program that owns its session (`agentcage mcp`, an SDK).
    #[arg(long)]
    pub die_with_parent: bool,
    /// As for run.
    #[arg(long)]
    pub trust_writable_policy: bool,
    /// Print nothing but the name and errors.
    #[arg(long, short = 'q')]
    pub quiet: bool,
}

/// Flags of `session list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// JSON (an array of state objects with `alive`).
    #[arg(long)]
    pub json: bool,
}

/// Flags of `session stop`.
#[derive(Debug, Args)]
pub struct StopArgs {
    /// The session.
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    pub name: Option<String>,
    /// Every session of this user.
    #[arg(long)]
    pub all: bool,
}

/// Flags of `agentcage exec`.
#[derive(Debug, Args)]
pub struct ExecArgs {
    /// The session (or give it as the first argument).
    #[arg(long = "name", short = 'n', value_name = "N")]
    pub name_flag: Option<String>,
    /// The session.
    #[arg(value_name = "N", conflicts_with = "name_flag")]
    pub name: Option<String>,
    /// Working directory inside (absolute, or relative to the session's).
    #[arg(long, value_name = "DIR")]
    pub cwd: Option<String>,
    /// Set an environment variable for this exec (repeatable).
    #[arg(long, short = 'e', value_name = "K=V", value_parser = parse_env)]
    pub env: Vec<(String, String)>,
    /// Kill the exec's process group after this long (SIGTERM, SIGKILL 2 s later); exit 124.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub timeout: Option<f64>,
    /// Give the command a pty even when none of stdin/stdout/stderr is a terminal.
    #[arg(long, conflicts_with = "no_tty")]
    pub tty: bool,
    /// No pty: a terminal stdin reads EOF, terminal outputs are relayed through pipes.
    #[arg(long)]
    pub no_tty: bool,
    /// Write the exec's outcome (exit, signal, timeout, wall time) as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    pub json_report: Option<PathBuf>,
    /// The command and its arguments.
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<OsString>,
}

fn parse_duration(s: &str) -> Result<f64, String> {
    agentcage::limits::value::parse_timeout(s)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("{s:?}: a duration is needed here"))
}

fn parse_env(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() && !k.contains('\0') && !v.contains('\0') => {
            Ok((k.to_string(), v.to_string()))
        }
        _ => Err(format!("expected K=V, got {s:?}")),
    }
}

fn print_error(e: &SessionError) {
    let mut msg = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        msg.push_str(&format!(": {s}"));
        src = s.source();
    }
    ui::error(&msg, e.hint());
}

/// Exit code of a session error: 2 for usage, the error frame's code, else 125.
fn code_of(e: &SessionError) -> i32 {
    match e {
        SessionError::BadName { .. } | SessionError::Exists { .. } | SessionError::NeedsPidNs => {
            exit::USAGE
        }
        SessionError::Refused {
            exit_code: Some(c), ..
        } => *c,
        _ => exit::SETUP,
    }
}

/// `agentcage session ...`.
pub fn main(cmd: SessionCmd) -> i32 {
    match cmd {
        SessionCmd::Start(a) => start(*a),
        SessionCmd::List(a) => list(&a),
        SessionCmd::Stop(a) => stop(&a),
    }
}

fn start(a: StartArgs) -> i32 {
    let checks = PolicyChecks {
        trust_writable_policy: a.trust_writable_policy,
        allow_unsandboxed_root: false,
        allow_nested_root: false,
        quiet: a.quiet,
    };
    let Resolved {
        mut policy,
        protected,
        protect_missing,
        ..
    } = match run::resolve_checked(&a.policy, checks) {
        Ok(r) => r,
        Err(code) => return code,
    };
    // The overlay's lock goes to the supervisor (keep_fds below): held for the session.
    let overlay_lock =
        match crate::overlay::prepare(&a.overlay, &mut policy, &protected, a.name.as_deref()) {
            Ok(o) => o.map(|(_, lock)| lock),
            Err(e) => return run::usage_error(&e),
        };
    if !policy.keep_fds.is_empty() {
        return run::usage_error(&UsageError::new(
            "--keep-fd: a session has no command of its own to pass fds to (exec passes \
             stdin, stdout and stderr)",
        ));
    }
    let report = match &a.json_report {
        Some(path) => match report_file(path, &policy.workspace, &policy) {
            Ok(r) => Some(r),
            Err(e) => return run::usage_error(&e),
        },
        None => None,
    };
    // Placeholders for the missing default protected paths, as for a run (an overlay session
    // writes nothing of the workspace: none there). Made before the sandbox is composed; the
    // supervisor holds their roots' locks for the session's life and removes them when it
    // ends, if no run or session still uses those roots (policy/placeholder.rs).
    let placeholders = if overlay_lock.is_none() && policy.layers.has(Layer::MountNs) {
        let (made, _unprotected) =
            run::bind_placeholders(&mut policy, &protected, &protect_missing, a.quiet);
        made
    } else {
        crate::policy::placeholder::Placeholders::default()
    };
    // Shared by this process (removes them when the start fails) and, after the fork, the
    // supervisor (at the session's end).
    let placeholders = std::rc::Rc::new(std::cell::RefCell::new(Some(placeholders)));
    let finish_here = || {
        if let Some(p) = placeholders.borrow_mut().take() {
            let _ = p.finish();
        }
    };
    let self_exe = std::env::current_exe()
        .ok()
        .and_then(|p| p.canonicalize().ok())
        .filter(|_| policy.layers.has(Layer::MountNs));
    // The session's own "command" only fills the prepared argv; each exec brings its own.
    let cmd = Command {
        argv: vec!["true".into()],
        self_exe,
    };
    let prepared = match agentcage::prepare(&policy, &cmd) {
        Ok(p) => p,
        Err(e) => {
            finish_here();
            ui::error(&run::error_chain(&e), e.hint());
            return exit::process_exit_code(&e);
        }
    };
    if !a.quiet {
        for (what, how) in &prepared.degraded {
            ui::warning(&format!("{what}: {how}"));
        }
    }
    let mut opts = StartOptions {
        name: a.name.clone(),
        idle_timeout: a.idle_timeout.map(Duration::from_secs_f64),
        ..StartOptions::default()
    };
    if a.die_with_parent {
        match session::owner::parent() {
            Ok(fd) => opts.owner = Some(fd),
            Err(e) => {
                print_error(&e);
                return exit::SETUP;
            }
        }
    }
    match &a.events {
        Some(spec) if spec.is_empty() => opts.events = Some(None),
        Some(spec) => match crate::events::open(Path::new(spec), &policy, false) {
            Ok(out) => {
                opts.keep_fds.extend(out.raw_fd());
                opts.events = Some(Some(crate::events::sink(&out)));
            }
            Err(e) => {
                finish_here();
                return run::usage_error(&e);
            }
        },
        None => {}
    }
    // --net-log: as run's, written by the session's egress engine.
    if let Some(path) = policy
        .egress
        .log
        .as_ref()
        .filter(|_| policy.net == agentcage::NetMode::Allow)
    {
        match run::open_net_log(path, &policy) {
            Ok(f) => {
                opts.keep_fds.push(std::os::fd::AsRawFd::as_raw_fd(&f));
                opts.net_log = Some(f);
            }
            Err(e) => {
                finish_here();
                return run::usage_error(&e);
            }
        }
    }
    if let Some(l) = &overlay_lock {
        opts.keep_fds.push(std::os::fd::AsRawFd::as_raw_fd(l));
    }
    if let Some(p) = placeholders.borrow().as_ref() {
        opts.keep_fds.extend(p.fds());
    }
    if let Some(hf) = &report {
        opts.keep_fds.push(hf.dir_fd());
    }
    let profile = policy.profile.name();
    let in_supervisor = std::rc::Rc::clone(&placeholders);
    opts.on_end = Some(Box::new(move |s: &session::Summary| {
        if let Some(hf) = report {
            let mut v = serde_json::to_value(s).unwrap_or_default();
            v["profile"] = profile.into();
            let _ = hf.write(&serde_json::to_vec_pretty(&v).unwrap_or_default());
        }
        // The sandbox is gone: its placeholders go too, unless another user of the roots
        // remains (the last one removes them). Nobody to warn: the supervisor is detached.
        if let Some(p) = in_supervisor.borrow_mut().take() {
            let _ = p.finish();
        }
    }));
    match session::start(prepared, opts) {
        Ok(s) => {
            println!("{}", s.name);
            0
        }
        Err(e) => {
            finish_here();
            print_error(&e);
            code_of(&e)
        }
    }
}

fn report_file(
    path: &Path,
    root: &Path,
    policy: &agentcage::Policy,
) -> Result<HostFile, UsageError> {
    let cwd =
        std::env::current_dir().map_err(|e| UsageError::new(format!("current directory: {e}")))?;
    let abs = if path.is_absolute() {
        path.to_path_buf()
    } else {
        cwd.join(path)
    };
    let mut writable = vec![root.to_path_buf()];
    writable.extend(
        policy
            .binds
            .iter()
            .filter(|b| b.writable)
            .map(|b| b.path.clone()),
    );
    HostFile::prepare(&abs, &writable).map_err(|e| UsageError::new(format!("--json-report: {e}")))
}

fn list(a: &ListArgs) -> i32 {
    let dir = match session::dir::runtime_dir() {
        Ok(d) => d,
        Err(e) => {
            print_error(&e);
            return exit::SETUP;
        }
    };
    let all = session::dir::list_and_reap(&dir);
    if a.json {
        let v: Vec<serde_json::Value> = all
            .iter()
            .map(|(s, alive)| {
                let mut v = serde_json::to_value(s).unwrap_or_default();
                v["alive"] = (*alive).into();
                v
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        return 0;
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    if all.iter().any(|(_, alive)| *alive) {
        println!(
            "{:<20} {:>8} {:<9} {:>8}  WORKSPACE",
            "NAME", "PID", "PROFILE", "AGE"
        );
    }
    for (s, alive) in &all {
        if !alive {
            eprintln!(
                "agentcage: session {} was dead; its state was removed",
                s.name
            );
            continue;
        }
        println!(
            "{:<20} {:>8} {:<9} {:>7}s  {}",
            s.name,
            s.pid,
            s.profile,
            now.saturating_sub(s.created),
            s.workspace.display()
        );
    }
    0
}

fn stop(a: &StopArgs) -> i32 {
    let dir = match session::dir::runtime_dir() {
        Ok(d) => d,
        Err(e) => {
            print_error(&e);
            return exit::SETUP;
        }
    };
    let names: Vec<String> = if a.all {
        session::dir::list_and_reap(&dir)
            .into_iter()
            .filter(|(_, alive)| *alive)
            .map(|(s, _)| s.name)
            .collect()
    } else {
        a.name.iter().cloned().collect()
    };
    let mut code = 0;
    for n in names {
        if let Err(e) = session::stop(&dir, &n) {
            print_error(&e);
            code = code_of(&e).max(code);
        }
    }
    code
}

/// `agentcage exec`.
pub fn exec(a: ExecArgs) -> i32 {
    let Some(name) = a.name_flag.clone().or(a.name.clone()) else {
        return run::usage_error(&UsageError::new(
            "which session? give its name (agentcage exec NAME -- CMD) or --name",
        ));
    };
    let mut argv = Vec::with_capacity(a.command.len());
    for c in &a.command {
        match c.to_str() {
            Some(s) => argv.push(s.to_owned()),
            None => {
                return run::usage_error(&UsageError::new(format!(
                    "{c:?}: a session exec's arguments must be UTF-8"
                )))
            }
        }
    }
    let report = match &a.json_report {
        Some(path) => {
            let ws = session::dir::runtime_dir()
                .ok()
                .and_then(|d| session::dir::read_state(&d, &name))
                .map(|s| s.workspace);
            let cwd = std::env::current_dir().unwrap_or_default();
            let abs = if path.is_absolute() {
                path.clone()
            } else {
                cwd.join(path)
            };
            match HostFile::prepare(&abs, &ws.into_iter().collect::<Vec<_>>()) {
                Ok(h) => Some(h),
                Err(e) => return run::usage_error(&UsageError::new(format!("--json-report: {e}"))),
            }
        }
        None => None,
    };
    let t0 = Instant::now();
    let mut client = match Client::connect(&name) {
        Ok(c) => c,
        Err(e) => {
            print_error(&e);
            return code_of(&e).max(exit::SETUP);
        }
    };
    let spec = ExecSpec {
        argv,
        env: a.env.iter().cloned().collect(),
        cwd: a.cwd.clone(),
        timeout: a.timeout.map(Duration::from_secs_f64),
        tty: if a.tty {
            TtyMode::On
        } else if a.no_tty {
            TtyMode::Off
        } else {
            TtyMode::Auto
        },
        forward_signals: true,
    };
    let r = session::client::exec(&mut client, &spec);
    let wall = t0.elapsed();
    let code = match &r {
        Ok(info) => {
            if info.timed_out {
                eprintln!(
                    "agentcage: timeout: the exec's process group was killed after {}",
                    agentcage::limits::value::format_duration(Duration::from_secs_f64(
                        a.timeout.unwrap_or(0.0)
                    ))
                );
            }
            info.status
        }
        Err(e) => {
            print_error(e);
            code_of(e)
        }
    };
    if let Some(h) = report {
        let v = match &r {
            Ok(i) => serde_json::json!({
                "session": name, "argv": a.command.iter().map(|c| c.to_string_lossy()).collect::<Vec<_>>(),
                "exit_code": i.exit_code, "signal": i.signal, "status": i.status,
                "timeout": i.timed_out, "wall_seconds": wall.as_secs_f64(), "error": null,
            }),
            Err(e) => serde_json::json!({
                "session": name, "argv": a.command.iter().map(|c| c.to_string_lossy()).collect::<Vec<_>>(),
                "exit_code": null, "signal": null, "status": code, "timeout": false,
                "wall_seconds": wall.as_secs_f64(), "error": e.to_string(),
            }),
        };
        if let Err(e) = h.write(&serde_json::to_vec_pretty(&v).unwrap_or_default()) {
            ui::error(&format!("write the JSON report: {e}"), None);
        }
    }
    code
}
