//! `agentcage bench --sessions` (issue #13): what an exec in a session costs, next to a run
//! and next to a plain fork+exec, and whether a session stays clean under load.
//!
//! Interleaved, shuffled rounds of four contenders, all running `/bin/true` under `full`:
//!
//! - `run`: `agentcage run -q -p full -w DIR -- /bin/true` (a fresh sandbox);
//! - `exec`: `agentcage exec S -- /bin/true` (the CLI into a started session);
//! - `protocol`: one exec over the control socket by this process (`agentcage::session`'s
//!   client on a kept connection: no CLI start-up), from request to exit frame;
//! - `fork+exec`: this process spawning `/bin/true` itself (std's spawn + wait).
//!
//! Targets: `exec` <= 0.35x `run`; `protocol` <= 1.5x `fork+exec`. Then 1000 sequential and 50
//! concurrent execs over the protocol: all must exit 0, and the supervisor's fds, the
//! sandbox's processes and mounts must be what they were before; the last 100 of the 1000
//! must cost what the first 100 did. The breakdown of one exec: the CLI's own start-up (an
//! `agentcage exec` of a session that does not exist), connect, request -> started (the
//! zygote's fork, the exec's setup, execve), started -> exit frame.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use agentcage::session::{Client, Request};
use anyhow::{bail, Context};
use serde::Serialize;

use crate::stats::{ratio, Rng, Summary};
use crate::tempdir::TempDir;

/// The session bench's report.
#[derive(Debug, Serialize)]
pub struct SessionReport {
    /// Rounds per contender.
    pub rounds: u32,
    /// Milliseconds per contender (median, p95, ...).
    pub contenders: BTreeMap<String, Summary>,
    /// `exec` / `run` (medians; target <= 0.35).
    pub exec_over_run: Option<f64>,
    /// `protocol` / `fork+exec` (medians; target <= 1.5).
    pub protocol_over_fork_exec: Option<f64>,
    /// Milliseconds: the breakdown of one exec (medians).
    pub breakdown: BTreeMap<String, f64>,
    /// The load test.
    pub load: Load,
    /// Target checks: (name, passed, detail).
    pub checks: Vec<(String, bool, String)>,
}

/// 1000 sequential and 50 concurrent execs.
#[derive(Debug, Serialize)]
pub struct Load {
    /// Sequential execs that exited 0, of 1000.
    pub sequential_ok: u32,
    /// Concurrent execs that exited 0, of 50.
    pub concurrent_ok: u32,
    /// Median ms of the first and the last 100 sequential execs.
    pub first_100_ms: Option<f64>,
    /// See `first_100_ms`.
    pub last_100_ms: Option<f64>,
    /// (supervisor fds, sandbox processes, sandbox mounts) before.
    pub before: (usize, usize, usize),
    /// The same after.
    pub after: (usize, usize, usize),
}

const CONTENDERS: [&str; 4] = ["run", "exec", "protocol", "fork+exec"];

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn quiet(c: &mut Command) -> &mut Command {
    c.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
}

fn timed(c: &mut Command) -> anyhow::Result<Duration> {
    let t = Instant::now();
    let st = quiet(c).status().context("spawn")?;
    let d = t.elapsed();
    if !st.success() {
        bail!("{c:?}: {st}");
    }
    Ok(d)
}

/// One exec of `/bin/true` (stdio /dev/null) on a kept connection: (request -> started,
/// started -> exit).
fn protocol_exec(c: &mut Client, argv: &[&str]) -> anyhow::Result<(Duration, Duration)> {
    let t = Instant::now();
    c.send(
        &Request::Exec {
            argv: argv.iter().map(|a| a.to_string()).collect(),
            env: BTreeMap::new(),
            cwd: None,
            timeout_ms: None,
            tty: None,
            fds: Vec::new(),
            wait: true,
        },
        &[],
    )?;
    let (v, _) = c.recv()?;
    if v["ok"] != serde_json::Value::Bool(true) {
        bail!("exec: {v}");
    }
    let started = t.elapsed();
    let (v, _) = c.recv()?;
    if v["status"] != serde_json::json!(0) {
        bail!("exec exit: {v}");
    }
    Ok((started, t.elapsed() - started))
}

/// (supervisor fds, processes in the sandbox, mounts in the sandbox).
fn census(c: &mut Client, sup: i32) -> anyhow::Result<(usize, usize, usize)> {
    let fds = std::fs::read_dir(format!("/proc/{sup}/fd"))
        .map(Iterator::count)
        .context("count the supervisor's fds")?;
    // Inside: the processes of the pid namespace (counted by the shell's own glob, before it
    // forks anything: the zygote and this shell when nothing is left over) and the mounts.
    let dir = TempDir::new("census").context("temp dir")?;
    let out = dir.path().join("out");
    let f = std::fs::File::create(&out)?;
    use std::os::fd::AsRawFd;
    c.send(
        &Request::Exec {
            argv: vec![
                "sh".into(),
                "-c".into(),
                "set -- /proc/[0-9]*; echo $#; wc -l < /proc/self/mountinfo".into(),
            ],
            env: BTreeMap::new(),
            cwd: None,
            timeout_ms: Some(10_000),
            tty: None,
            fds: vec![1],
            wait: true,
        },
        &[f.as_raw_fd()],
    )?;
    drop(f);
    let (v, _) = c.recv()?;
    if v["ok"] != serde_json::Value::Bool(true) {
        bail!("census exec: {v}");
    }
    let _ = c.recv()?;
    let text = std::fs::read_to_string(&out)?;
    let mut it = text
        .split_whitespace()
        .map(|w| w.parse::<usize>().unwrap_or(0));
    Ok((fds, it.next().unwrap_or(0), it.next().unwrap_or(0)))
}

/// Runs the session bench; `agentcage` is the binary, `rounds` the interleaved rounds.
///
/// # Errors
/// The session cannot be started or a contender fails.
pub fn measure(agentcage: &Path, rounds: u32, seed: u64) -> anyhow::Result<SessionReport> {
    let ws = TempDir::new("sess").context("create the workspace")?;
    let xdg = TempDir::new("xdg").context("create the runtime dir")?;
    std::fs::set_permissions(
        xdg.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )?;
    // Before any thread of ours runs (the bench is single-threaded here): the session's
    // runtime directory for this process, the CLI children and the library client.
    std::env::set_var("XDG_RUNTIME_DIR", xdg.path());
    let name = format!("bench-{}", std::process::id());
    let ws_s = ws.path().to_string_lossy().into_owned();
    let o = Command::new(agentcage)
        .args([
            "session", "start", "-q", "-p", "full", "--name", &name, "-w", &ws_s,
        ])
        .stdin(Stdio::null())
        .output()
        .context("agentcage session start")?;
    if !o.status.success() {
        bail!(
            "agentcage session start: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        );
    }
    let guard = Stop {
        agentcage: agentcage.to_path_buf(),
        name: name.clone(),
    };
    let state: serde_json::Value = serde_json::from_slice(&std::fs::read(
        xdg.path().join("agentcage").join(format!("{name}.json")),
    )?)?;
    let sup = state["pid"].as_i64().unwrap_or(0) as i32;
    let mut client = Client::connect(&name)?;

    let mut samples: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    let mut started_ms = Vec::new();
    let mut exit_ms = Vec::new();
    let mut connect_ms = Vec::new();
    let mut cli_ms = Vec::new();
    let mut rng = Rng::new(seed);
    let warmup = 5;
    for round in 0..rounds + warmup {
        let mut order = CONTENDERS;
        rng.shuffle(&mut order);
        for c in order {
            let d = match c {
                "run" => timed(Command::new(agentcage).args([
                    "run",
                    "-q",
                    "-p",
                    "full",
                    "-w",
                    &ws_s,
                    "--",
                    "/bin/true",
                ]))?,
                "exec" => timed(Command::new(agentcage).args(["exec", &name, "--", "/bin/true"]))?,
                "protocol" => {
                    let (a, b) = protocol_exec(&mut client, &["/bin/true"])?;
                    if round >= warmup {
                        started_ms.push(ms(a));
                        exit_ms.push(ms(b));
                    }
                    a + b
                }
                _ => timed(&mut Command::new("/bin/true"))?,
            };
            if round >= warmup {
                samples.entry(c).or_default().push(ms(d));
            }
        }
        if round >= warmup {
            // Outside the timed contenders: the CLI's own start-up and a connect.
            let t = Instant::now();
            let _ = quiet(Command::new(agentcage).args(["exec", "no-such-session", "--", "true"]))
                .status();
            cli_ms.push(ms(t.elapsed()));
            let t = Instant::now();
            drop(Client::connect(&name)?);
            connect_ms.push(ms(t.elapsed()));
        }
    }
    let contenders: BTreeMap<String, Summary> = samples
        .iter()
        .filter_map(|(k, v)| Summary::of(v).map(|s| (k.to_string(), s)))
        .collect();
    let med = |k: &str| contenders.get(k).map(|s| s.median);
    let exec_over_run = med("exec").zip(med("run")).and_then(|(a, b)| ratio(a, b));
    let proto_over_fork = med("protocol")
        .zip(med("fork+exec"))
        .and_then(|(a, b)| ratio(a, b));
    let m = |v: &[f64]| Summary::of(v).map_or(0.0, |s| s.median);
    let breakdown: BTreeMap<String, f64> = [
        ("cli start-up (exec of a missing session)", m(&cli_ms)),
        ("connect", m(&connect_ms)),
        (
            "request -> started (zygote fork, exec setup, execve)",
            m(&started_ms),
        ),
        (
            "started -> exit frame (/bin/true runs, reaped)",
            m(&exit_ms),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();

    // Load: 1000 sequential, 50 concurrent. (The rounds' short connections are gone first.)
    std::thread::sleep(Duration::from_millis(200));
    let before = census(&mut client, sup)?;
    let mut seq = Vec::with_capacity(1000);
    let mut sequential_ok = 0;
    for _ in 0..1000 {
        if let Ok((a, b)) = protocol_exec(&mut client, &["/bin/true"]) {
            sequential_ok += 1;
            seq.push(ms(a + b));
        }
    }
    let threads: Vec<_> = (0..50)
        .map(|_| {
            let n = name.clone();
            std::thread::spawn(move || {
                Client::connect(&n)
                    .ok()
                    .and_then(|mut c| protocol_exec(&mut c, &["/bin/true"]).ok())
                    .is_some()
            })
        })
        .collect();
    let concurrent_ok = threads
        .into_iter()
        .filter_map(|t| t.join().ok())
        .filter(|ok| *ok)
        .count() as u32;
    // Let the supervisor drop the 50 closed connections.
    std::thread::sleep(Duration::from_millis(200));
    let after = census(&mut client, sup)?;
    let first = Summary::of(&seq[..seq.len().min(100)]).map(|s| s.median);
    let last = Summary::of(&seq[seq.len().saturating_sub(100)..]).map(|s| s.median);
    let load = Load {
        sequential_ok,
        concurrent_ok,
        first_100_ms: first,
        last_100_ms: last,
        before,
        after,
    };
    let mut checks = vec![
        (
            "exec <= 0.35x run".to_string(),
            exec_over_run.is_some_and(|r| r <= 0.35),
            format!("{exec_over_run:.3?}"),
        ),
        (
            "protocol exec <= 1.5x fork+exec".to_string(),
            proto_over_fork.is_some_and(|r| r <= 1.5),
            format!("{proto_over_fork:.3?}"),
        ),
        (
            "1000 sequential + 50 concurrent execs exit 0".to_string(),
            sequential_ok == 1000 && concurrent_ok == 50,
            format!("{sequential_ok}/1000, {concurrent_ok}/50"),
        ),
        (
            "no fd, process or mount growth".to_string(),
            before == after,
            format!("before {before:?}, after {after:?} (supervisor fds, processes, mounts)"),
        ),
    ];
    if let (Some(f), Some(l)) = (first, last) {
        checks.push((
            "exec 901-1000 cost what 1-100 did (within 25%)".to_string(),
            l <= f * 1.25,
            format!("{f:.3} ms -> {l:.3} ms"),
        ));
    }
    drop(client);
    drop(guard);
    Ok(SessionReport {
        rounds,
        contenders,
        exec_over_run,
        protocol_over_fork_exec: proto_over_fork,
        breakdown,
        load,
        checks,
    })
}

/// Stops the bench's session on every path out.
struct Stop {
    agentcage: PathBuf,
    name: String,
}

impl Drop for Stop {
    fn drop(&mut self) {
        let _ = quiet(Command::new(&self.agentcage).args(["session", "stop", &self.name])).status();
    }
}

impl SessionReport {
    /// The text table.
    pub fn render_text(&self) -> String {
        let mut s = format!(
            "agentcage bench --sessions: {} interleaved rounds, /bin/true under full (ms)\n\n",
            self.rounds
        );
        s.push_str(&format!(
            "{:<12} {:>9} {:>9} {:>9}\n",
            "contender", "median", "p95", "min"
        ));
        for c in CONTENDERS {
            if let Some(x) = self.contenders.get(c) {
                s.push_str(&format!(
                    "{c:<12} {:>9.3} {:>9.3} {:>9.3}\n",
                    x.median, x.p95, x.min
                ));
            }
        }
        s.push_str(&format!(
            "\nexec / run: {:.3?}   protocol / fork+exec: {:.3?}\n\none exec, medians (ms):\n",
            self.exec_over_run, self.protocol_over_fork_exec
        ));
        for (k, v) in &self.breakdown {
            s.push_str(&format!("  {k:<55} {v:>8.3}\n"));
        }
        s.push_str(&format!(
            "\nload: {}/1000 sequential, {}/50 concurrent; first 100 {:.3?} ms, last 100 {:.3?} ms\n\n",
            self.load.sequential_ok,
            self.load.concurrent_ok,
            self.load.first_100_ms,
            self.load.last_100_ms
        ));
        for (name, ok, detail) in &self.checks {
            s.push_str(&format!(
                "{} {name}: {detail}\n",
                if *ok { "PASS" } else { "FAIL" }
            ));
        }
        s
    }
}
