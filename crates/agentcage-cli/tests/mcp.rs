//! `agentcage mcp` (issue #17): the MCP server on stdio, as root and as uid 65534, each
//! trial with its own XDG_RUNTIME_DIR.
//!
//! - `python_client`: the official MCP Python client (PyPI `mcp`, pinned in .ci/run;
//!   `tests/mcp_client.py`) initializes, lists the tools (annotations checked), runs execs
//!   (exit codes, 128+N, timeout 124, truncation marker, stdin/env/cwd, 127/125 as tool
//!   errors), round-trips text and binary files, lists a directory, gets a denied syscall
//!   (`unshare`) in the exec's `denials` and sees refusals with their reason; afterwards no
//!   session is left.
//! - `open_world_hint`: with `--allow-host`, `exec` (only) says openWorldHint, and a denied
//!   HTTP request (the proxy's 403) is in the exec's `denials` (and not in the next exec's).
//! - `overlay_diff`: with `--overlay`, the read-only `diff` tool (hints, changes, sensitive
//!   paths, patch, path filter) while the workspace stays untouched; the changes wait after.
//! - `cancel_exec`: `notifications/cancelled` of a running `sleep 300` exec kills it (the
//!   time is printed) and the session serves the next call.
//! - `stdin_close_stops_session`, `sigterm_stops_session` (raw JSON-RPC, no Python): the
//!   server exits 0 and the session (socket, state, a background process of an exec) is gone.
//! - `sigkill_stops_session`: after `kill -9` of the server the session goes by itself
//!   (`--die-with-parent`); `sweeps_stale_sessions`: the server's start stops `mcp-PID`
//!   sessions of dead PIDs and keeps one whose PID runs.
//!
//! - `python_package`: the Python package's unit and end-to-end tests (`python/tests`: exec,
//!   files, timeout, refusals, close leaves nothing) run as the trial's user against this
//!   binary, from a copy of `python/` that uid 65534 can read.
//!
//! Without the Python `mcp` package the first two are skipped with the reason (a failure
//! when AGENTCAGE_TEST_EXPECT lists `mcp`).

mod common;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::Duration;

use common::{binary, code_of, err, process_with_arg, settle, wait_deadline, Env, TestFn, Who};
use libtest_mimic::{Arguments, Failed, Trial};

fn is_root() -> bool {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// A runtime directory of the trial's user (removed on drop).
struct Xdg(PathBuf, Who);

impl Xdg {
    fn new(who: Who) -> Result<Xdg, Failed> {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!(
            "agentcage-t-mcpxdg-{}-{}-{n}",
            who.name(),
            std::process::id()
        ));
        std::fs::create_dir_all(&p).map_err(err)?;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o700)).map_err(err)?;
        if who == Who::Nobody && is_root() {
            std::os::unix::fs::chown(&p, Some(65534), Some(65534)).map_err(err)?;
        }
        Ok(Xdg(p, who))
    }

    /// The session files (sockets, state) in it.
    fn sessions(&self) -> Vec<String> {
        std::fs::read_dir(self.0.join("agentcage"))
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Fails unless no session file is left (after up to 5 s).
    fn expect_empty(&self, what: &str) -> Result<(), Failed> {
        settle(|| self.sessions().is_empty())
            .map_err(|()| format!("{what}: left in the runtime dir: {:?}", self.sessions()).into())
    }
}

impl Drop for Xdg {
    fn drop(&mut self) {
        // A failed trial may leave a session: stop it (as its user) before removing.
        if !self.sessions().is_empty() {
            let mut c = Command::new(binary());
            c.args(["session", "stop", "--all"])
                .env("XDG_RUNTIME_DIR", &self.0);
            if self.1 == Who::Nobody && is_root() {
                use std::os::unix::process::CommandExt;
                c.uid(65534).gid(65534);
            }
            let _ = c.output();
        }
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Why the Python MCP client cannot run here, if it cannot.
fn python_mcp_missing() -> Option<String> {
    let o = Command::new("python3")
        .args(["-c", "import mcp, sys; print(sys.version)"])
        .output();
    let why = match o {
        Ok(o) if o.status.success() => return None,
        Ok(o) => format!(
            "the Python MCP client is not installed (pip install mcp==1.30.0): {}",
            String::from_utf8_lossy(&o.stderr)
                .lines()
                .last()
                .unwrap_or("")
        ),
        Err(e) => format!("python3: {e}"),
    };
    if common::expected("mcp") {
        panic!("AGENTCAGE_TEST_EXPECT lists mcp but: {why}");
    }
    Some(why)
}

/// The server's argv: `agentcage mcp ARGS`, as the trial's user (setpriv when root runs the
/// client for uid 65534: the client's Python packages may live where 65534 cannot read).
fn server_argv(who: Who, args: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = Vec::new();
    if who == Who::Nobody && is_root() {
        v.extend(
            [
                "setpriv",
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "--",
            ]
            .map(String::from),
        );
    }
    v.push(binary().display().to_string());
    v.push("mcp".into());
    v.extend(args.iter().map(|s| s.to_string()));
    v
}

fn client_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/mcp_client.py")
}

fn run_client(env: &Env, mode: &str, server_args: &[&str], xdg: &Xdg) -> Result<(), Failed> {
    run_client_with(env, mode, server_args, xdg, |_| {})
}

fn run_client_with(
    env: &Env,
    mode: &str,
    server_args: &[&str],
    xdg: &Xdg,
    f: impl FnOnce(&mut Command),
) -> Result<(), Failed> {
    let mut c = Command::new("python3");
    f(&mut c);
    c.arg(client_script())
        .arg(mode)
        .arg("--")
        .args(server_argv(env.who, server_args))
        .env("XDG_RUNTIME_DIR", &xdg.0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().map_err(|e| format!("spawn python3: {e}"))?;
    let st = wait_deadline(&mut child, Duration::from_secs(180), "the MCP client")?;
    let o = child.wait_with_output().map_err(err)?;
    let (out, errs) = (
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
    );
    if !st.success() || out.trim() != "ok" {
        return Err(format!("client exit {}\nstdout: {out}\nstderr: {errs}", code_of(st)).into());
    }
    // What the client measured (the cancel's time), for the log.
    for l in errs.lines().filter(|l| l.contains(" after ")) {
        eprintln!("{} {mode}: {l}", env.who.name());
    }
    Ok(())
}

fn python_client(env: &Env) -> Result<(), Failed> {
    let xdg = Xdg::new(env.who)?;
    let ws = env.workspace()?;
    run_client(env, "full", &["-w", ws.s()], &xdg)?;
    xdg.expect_empty("after the client closed the server's stdin")
}

fn open_world_hint(env: &Env) -> Result<(), Failed> {
    let xdg = Xdg::new(env.who)?;
    let ws = env.workspace()?;
    run_client(
        env,
        "open-world",
        &["-w", ws.s(), "--allow-host", "allowed.test"],
        &xdg,
    )
}

/// `--overlay`: the `diff` tool (listed, read-only hints, the changes and sensitive paths,
/// patch, path filter, refusals) while the workspace stays untouched.
fn overlay_diff(env: &Env) -> Result<(), Failed> {
    let xdg = Xdg::new(env.who)?;
    let ws = env.workspace()?;
    for (f, body) in [("old.txt", "old\n"), ("gone.txt", "bye\n")] {
        std::fs::write(ws.path().join(f), body).map_err(err)?;
    }
    env.chown_tree(ws.path())?;
    // The overlay's directory outside the workspace (as root: under a root-owned base the
    // sandbox's uid can traverse, as `agentcage` requires; tests/overlay.rs does the same).
    let base = env.workspace()?;
    if is_root() && env.who == Who::Root {
        std::os::unix::fs::chown(base.path(), Some(0), Some(0)).map_err(err)?;
    }
    std::fs::set_permissions(base.path(), std::fs::Permissions::from_mode(0o711)).map_err(err)?;
    let dir = base.path().join("ov");
    let dir = dir.to_str().ok_or("temp path")?;
    run_client_with(
        env,
        "overlay",
        &["-w", ws.s(), "--overlay", "--overlay-dir", dir],
        &xdg,
        |c| {
            c.env("MCP_TEST_WS", ws.path());
        },
    )?;
    xdg.expect_empty("after the overlay client")?;
    // The changes wait in the overlay after the server is gone: `agentcage diff` sees them.
    let o = env.run(&["diff", "--overlay-dir", dir, "--json"])?;
    o.expect_code(0, "agentcage diff of the server's overlay")?;
    if !o.stdout.contains("\"new.txt\"") || ws.path().join("new.txt").exists() {
        return Err(format!("after the server: {}", o.stdout).into());
    }
    Ok(())
}

/// notifications/cancelled for a running exec (`sleep 300`) kills it: its process is gone
/// within 30 s (measured: printed), and the session serves the next call.
fn cancel_exec(env: &Env) -> Result<(), Failed> {
    let xdg = Xdg::new(env.who)?;
    let ws = env.workspace()?;
    run_client(env, "cancel", &["-w", ws.s()], &xdg)?;
    xdg.expect_empty("after the cancel client")
}

/// A server started by hand, initialized, with a session running a background process.
struct Raw {
    child: Child,
    out: BufReader<ChildStdout>,
}

impl Raw {
    fn start(env: &Env, ws: &str, xdg: &Xdg, marker: &str) -> Result<Raw, Failed> {
        let mut c = env.command_as_is(&["mcp", "-w", ws]);
        c.env("XDG_RUNTIME_DIR", &xdg.0)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = c.spawn().map_err(|e| format!("spawn agentcage mcp: {e}"))?;
        let out = BufReader::new(child.stdout.take().ok_or("no stdout")?);
        let mut r = Raw { child, out };
        r.send(r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"0"}}}"#)?;
        let init = r.reply(1)?;
        if !init.contains("\"agentcage\"") {
            return Err(format!("initialize reply: {init}").into());
        }
        r.send(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#)?;
        r.send(&format!(
            r#"{{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{{"name":"exec","arguments":{{"command":"sleep {marker} >/dev/null 2>&1 & echo started"}}}}}}"#
        ))?;
        let call = r.reply(2)?;
        if !call.contains(r#"\"stdout\":\"started\\n\""#) {
            return Err(format!("exec reply: {call}").into());
        }
        Ok(r)
    }

    fn send(&mut self, line: &str) -> Result<(), Failed> {
        let stdin = self.child.stdin.as_mut().ok_or("stdin closed")?;
        writeln!(stdin, "{line}").map_err(|e| format!("write to the server: {e}").into())
    }

    /// The next line whose id is `id` (notifications are skipped).
    fn reply(&mut self, id: u32) -> Result<String, Failed> {
        for _ in 0..100 {
            let mut line = String::new();
            if self.out.read_line(&mut line).map_err(err)? == 0 {
                return Err("the server closed stdout".into());
            }
            if line.contains(&format!("\"id\":{id}")) {
                return Ok(line);
            }
        }
        Err(format!("no reply with id {id}").into())
    }
}

fn end_stops_session(env: &Env, how: &str) -> Result<(), Failed> {
    let xdg = Xdg::new(env.who)?;
    let ws = env.workspace()?;
    let marker = format!("{}", 900_000 + std::process::id() % 90_000);
    let mut r = Raw::start(env, ws.s(), &xdg, &marker)?;
    if xdg.sessions().is_empty() || !process_with_arg(&marker) {
        return Err("no session / background process while the server runs".into());
    }
    match how {
        "stdin" => drop(r.child.stdin.take()),
        _ => {
            // SAFETY: kill(2) on the pid of our own child, which has not been reaped yet.
            unsafe { libc::kill(r.child.id() as i32, libc::SIGTERM) };
        }
    }
    let st = wait_deadline(&mut r.child, Duration::from_secs(20), "agentcage mcp")?;
    if code_of(st) != 0 {
        return Err(format!("agentcage mcp exited {} after {how}", code_of(st)).into());
    }
    xdg.expect_empty(how)?;
    settle(|| !process_with_arg(&marker))
        .map_err(|()| format!("the exec's background process survived {how}").into())
}

/// `kill -9` of the server: its session (started with --die-with-parent) stops by itself,
/// with the exec's background process, within 30 s (it takes well under a second here).
fn sigkill_stops_session(env: &Env) -> Result<(), Failed> {
    let xdg = Xdg::new(env.who)?;
    let ws = env.workspace()?;
    let marker = format!("{}", 800_000 + std::process::id() % 90_000);
    let mut r = Raw::start(env, ws.s(), &xdg, &marker)?;
    if xdg.sessions().is_empty() || !process_with_arg(&marker) {
        return Err("no session / background process while the server runs".into());
    }
    r.child.kill().map_err(err)?;
    let st = r.child.wait().map_err(err)?;
    if code_of(st) != 128 + libc::SIGKILL {
        return Err(format!("agentcage mcp: {st:?}, not SIGKILL").into());
    }
    let t = std::time::Instant::now();
    while t.elapsed() < Duration::from_secs(30)
        && (!xdg.sessions().is_empty() || process_with_arg(&marker))
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    if !xdg.sessions().is_empty() || process_with_arg(&marker) {
        return Err(format!(
            "30 s after kill -9 of the server: session files {:?}, background process {}",
            xdg.sessions(),
            process_with_arg(&marker)
        )
        .into());
    }
    eprintln!(
        "{} sigkill: the session was gone {} ms after the server's SIGKILL",
        env.who.name(),
        t.elapsed().as_millis()
    );
    let list = env
        .command_as_is(&["session", "list"])
        .env("XDG_RUNTIME_DIR", &xdg.0)
        .output()
        .map_err(err)?;
    if String::from_utf8_lossy(&list.stdout).contains("mcp-") {
        return Err(format!("session list: {}", String::from_utf8_lossy(&list.stdout)).into());
    }
    Ok(())
}

/// At its start the server stops `mcp-PID` sessions whose server is gone (PID dead), and
/// leaves those whose PID still runs the process that started before them.
fn sweeps_stale_sessions(env: &Env) -> Result<(), Failed> {
    let xdg = Xdg::new(env.who)?;
    let ws = env.workspace()?;
    // A pid that is gone: a child that has exited and been reaped.
    let mut dead = Command::new("true").spawn().map_err(err)?;
    dead.wait().map_err(err)?;
    let stale = format!("mcp-{}", dead.id());
    // This test process started before the session: a live owner.
    let live = format!("mcp-{}", std::process::id());
    for name in [&stale, &live] {
        let o = env
            .command_as_is(&["session", "start", "-q", "--name", name, "-w", ws.s()])
            .env("XDG_RUNTIME_DIR", &xdg.0)
            .stdin(Stdio::null())
            .output()
            .map_err(err)?;
        if !o.status.success() {
            return Err(format!(
                "session start {name}: {}",
                String::from_utf8_lossy(&o.stderr)
            )
            .into());
        }
    }
    let mut r = Raw::start(env, ws.s(), &xdg, "1")?;
    let files = xdg.sessions();
    drop(r.child.stdin.take());
    let _ = wait_deadline(&mut r.child, Duration::from_secs(20), "agentcage mcp");
    let stopped = env
        .command_as_is(&["session", "stop", &live])
        .env("XDG_RUNTIME_DIR", &xdg.0)
        .output()
        .map_err(err)?;
    let has = |n: &str| files.iter().any(|f| f == &format!("{n}.sock"));
    if has(&stale) || !has(&live) || !stopped.status.success() {
        return Err(format!(
            "after the server's start: {files:?} ({stale} must be gone, {live} kept)"
        )
        .into());
    }
    xdg.expect_empty("after the sweep test")
}

fn stdin_close_stops_session(env: &Env) -> Result<(), Failed> {
    end_stops_session(env, "stdin")
}

fn sigterm_stops_session(env: &Env) -> Result<(), Failed> {
    end_stops_session(env, "SIGTERM")
}

fn copy_tree(from: &Path, to: &Path) -> Result<(), Failed> {
    std::fs::create_dir_all(to).map_err(err)?;
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o755)).map_err(err)?;
    for e in std::fs::read_dir(from).map_err(err)? {
        let e = e.map_err(err)?;
        let (src, dst) = (e.path(), to.join(e.file_name()));
        if e.file_name() == "__pycache__" {
            continue;
        }
        if e.file_type().map_err(err)?.is_dir() {
            copy_tree(&src, &dst)?;
        } else {
            std::fs::copy(&src, &dst).map_err(err)?;
            std::fs::set_permissions(&dst, std::fs::Permissions::from_mode(0o644)).map_err(err)?;
        }
    }
    Ok(())
}

fn python_package(env: &Env) -> Result<(), Failed> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../python");
    let dir = std::env::temp_dir().join(format!(
        "agentcage-t-py-{}-{}",
        env.who.name(),
        std::process::id()
    ));
    struct Rm(PathBuf);
    impl Drop for Rm {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    let _rm = Rm(dir.clone());
    for sub in ["src", "tests", "_build"] {
        copy_tree(&src.join(sub), &dir.join(sub))?;
    }
    std::fs::copy(src.join("pyproject.toml"), dir.join("pyproject.toml")).map_err(err)?;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).map_err(err)?;
    let mut c = Command::new("python3");
    c.args(["-B", "-m", "unittest", "discover", "-s", "tests"])
        .current_dir(&dir)
        .env("PYTHONPATH", dir.join("src"))
        .env("AGENTCAGE", binary())
        .env("AGENTCAGE_TEST_EXPECT", "python")
        .env("TMPDIR", std::env::temp_dir())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if env.who == Who::Nobody && is_root() {
        use std::os::unix::process::CommandExt;
        c.uid(65534).gid(65534).env("HOME", "/");
    }
    let mut child = c.spawn().map_err(|e| format!("spawn python3: {e}"))?;
    let st = wait_deadline(&mut child, Duration::from_secs(180), "python -m unittest")?;
    let o = child.wait_with_output().map_err(err)?;
    let errs = String::from_utf8_lossy(&o.stderr);
    if !st.success() || errs.contains("skipped") {
        return Err(format!("python tests: exit {}\n{errs}", code_of(st)).into());
    }
    Ok(())
}

fn main() {
    let args = Arguments::from_args();
    let py = python_mcp_missing();
    let mut trials: Vec<Trial> = Vec::new();
    let python: &[(&str, TestFn)] = &[
        ("python_client", python_client),
        ("open_world_hint", open_world_hint),
        ("overlay_diff", overlay_diff),
        ("cancel_exec", cancel_exec),
    ];
    let raw: &[(&str, TestFn)] = &[
        ("stdin_close_stops_session", stdin_close_stops_session),
        ("sigterm_stops_session", sigterm_stops_session),
        ("sigkill_stops_session", sigkill_stops_session),
        ("sweeps_stale_sessions", sweeps_stale_sessions),
    ];
    for who in [Who::Root, Who::Nobody] {
        let skip = common::skip_reason(who);
        for &(name, f) in python {
            trials.push(common::trial(who, name, f, skip.clone().or(py.clone())));
        }
        trials.push(common::trial(
            who,
            "python_package",
            python_package,
            skip.clone(),
        ));
        for &(name, f) in raw {
            trials.push(common::trial(who, name, f, skip.clone()));
        }
    }
    common::run(&args, trials);
}
