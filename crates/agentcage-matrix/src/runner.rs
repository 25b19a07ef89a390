//! Runs the probe under a batch of [`RunKey`]s, `jobs` sandboxes at a time.
//!
//! Each run is `agentcage run --profile P [--without L]... --ro WS/.git/hooks --ro
//! WS/.git/config --ro RO --workspace WS -- <probe> probe --format jsonl <bait flags>` (the
//! `--ro` are bait: a protected directory and file in the workspace, a directory holding a
//! unix listener; WS is the run's own workspace, see [`crate::bait::Workspace`]), where `<probe>` is `/run/agentcage/agentcage` when the run has a
//! mount namespace (the launcher binds itself there) and otherwise the bait dir's copy of the
//! binary. The child gets the environment secret and the inherited fd (close-on-exec cleared in
//! `pre_exec`); stdout and stderr go to files, so a chatty run can never block on a pipe. A run
//! is killed after [`RUN_TIMEOUT`], or at once on Ctrl-C.

use std::fs::{self, File};
use std::os::fd::AsRawFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::Context as _;

use crate::attribution::{Ops, Outcome, RunKey};
use crate::bait::{Bait, Workspace, SECRET_ENV};
use crate::deps::{parse_jsonl, Layer};
use crate::sys;

/// Where the launcher makes its own binary available inside a mount namespace.
pub const INSIDE_BINARY: &str = "/run/agentcage/agentcage";

/// Longest a single probe run may take.
pub const RUN_TIMEOUT: Duration = Duration::from_secs(120);

/// The run was interrupted by SIGINT/SIGTERM/SIGHUP.
#[derive(Debug, thiserror::Error)]
#[error("interrupted")]
pub struct Interrupted;

/// Runs probe sandboxes.
pub struct Runner<'a> {
    agentcage: &'a Path,
    bait: &'a Bait,
    jobs: usize,
    verbose: bool,
    counter: AtomicUsize,
    /// `--via-session`: the probe is exec'd in a session started with the run's flags.
    via_session: bool,
}

impl<'a> Runner<'a> {
    /// A runner using the `agentcage` binary, the bait, and up to `jobs` parallel sandboxes.
    pub fn new(agentcage: &'a Path, bait: &'a Bait, jobs: usize, verbose: bool) -> Runner<'a> {
        Runner {
            agentcage,
            bait,
            jobs: jobs.max(1),
            verbose,
            counter: AtomicUsize::new(0),
            via_session: false,
        }
    }

    /// Runs each probe through a session (`agentcage session start` with the run's flags,
    /// `agentcage exec NAME -- <probe>`, `session stop`) instead of `agentcage run`, when the
    /// layer set has the user, pid and mount namespaces (else as a run).
    pub fn via_session(mut self, on: bool) -> Runner<'a> {
        self.via_session = on;
        self
    }

    /// How many probe runs were started so far.
    pub fn runs_started(&self) -> usize {
        self.counter.load(Ordering::SeqCst)
    }

    /// Runs every key and returns the outcomes in key order.
    ///
    /// # Errors
    /// [`Interrupted`] on Ctrl-C; otherwise only when a run cannot even be started (the
    /// binary is missing): run failures are outcomes, not errors.
    pub fn run_all(&self, keys: &[(RunKey, Ops)]) -> anyhow::Result<Vec<(RunKey, Ops, Outcome)>> {
        let next = AtomicUsize::new(0);
        let done = AtomicUsize::new(0);
        // A progress line on a terminal (not with -v, whose lines would interleave).
        let progress = !self.verbose && std::io::IsTerminal::is_terminal(&std::io::stderr());
        let results: Mutex<Vec<(usize, anyhow::Result<Outcome>)>> = Mutex::new(Vec::new());
        std::thread::scope(|s| {
            for _ in 0..self.jobs.min(keys.len()) {
                s.spawn(|| loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some((key, ops)) = keys.get(i) else {
                        break;
                    };
                    let r = self.run_one(key, ops);
                    let stop = r.is_err();
                    let n = done.fetch_add(1, Ordering::SeqCst) + 1;
                    if progress {
                        eprint!("\ragentcage matrix: {n}/{} probe runs", keys.len());
                    }
                    if let Ok(mut v) = results.lock() {
                        v.push((i, r));
                    }
                    if stop {
                        // Make the other workers stop taking new runs.
                        next.store(keys.len(), Ordering::SeqCst);
                        break;
                    }
                });
            }
        });
        if progress {
            eprint!("\r\x1b[K");
        }
        let mut results = results
            .into_inner()
            .map_err(|_| anyhow::anyhow!("a run worker panicked"))?;
        results.sort_by_key(|(i, _)| *i);
        if sys::interrupted() {
            return Err(Interrupted.into());
        }
        let mut out = Vec::with_capacity(keys.len());
        for (i, r) in results {
            out.push((keys[i].0, keys[i].1.clone(), r?));
        }
        Ok(out)
    }

    /// The bait's flags, the same for a run and a session: the protected dir and file and
    /// the unix socket's dir read-only, the run's workspace `ws`.
    fn bait_args<'b>(&'b self, ws: &'b Workspace) -> Vec<&'b std::ffi::OsStr> {
        let mut a: Vec<&std::ffi::OsStr> = vec![
            "--ro".as_ref(),
            ws.protected.as_os_str(),
            "--ro".as_ref(),
            ws.protected_file.as_os_str(),
        ];
        if let Some(d) = self.bait.unix_ro_path.parent() {
            a.extend(["--ro".as_ref(), d.as_os_str()]);
        }
        a.extend(["--workspace".as_ref(), ws.path.as_os_str()]);
        a
    }
    fn run_one(&self, key: &RunKey, ops: &Ops) -> anyhow::Result<Outcome> {
        if sys::interrupted() {
            return Err(Interrupted.into());
        }
        let n = self.counter.fetch_add(1, Ordering::SeqCst);
        let out_path = self.bait.out_dir.join(format!("run-{n}.out"));
        let err_path = self.bait.out_dir.join(format!("run-{n}.err"));
        // Removed when this returns, after the run (and its session) ended.
        let ws = self.bait.workspace(n)?;
        let stdout =
            File::create(&out_path).with_context(|| format!("create {}", out_path.display()))?;
        let stderr =
            File::create(&err_path).with_context(|| format!("create {}", err_path.display()))?;
        let probe: PathBuf = if key.layers.has(Layer::MountNs) {
            INSIDE_BINARY.into()
        } else {
            self.bait.binary_copy.clone()
        };
        // A session needs the user and pid namespaces; without a mount namespace its zygote,
        // restricted before any exec, cannot open a pty in the host's devpts (Landlock):
        // those layer sets are run as runs.
        let session = (self.via_session
            && key.layers.has(Layer::PidNs)
            && key.layers.has(Layer::UserNs)
            && key.layers.has(Layer::MountNs))
        .then(|| format!("matrix-{}-{n}", std::process::id()));
        let xdg = self.bait.out_dir.join("xdg");
        let mut cmd = Command::new(self.agentcage);
        if let Some(name) = &session {
            // The session gets the run's flags; the probe is its exec.
            std::fs::create_dir_all(&xdg).context("create the sessions' runtime dir")?;
            std::fs::set_permissions(&xdg, std::os::unix::fs::PermissionsExt::from_mode(0o700))
                .context("chmod the sessions' runtime dir")?;
            let o = Command::new(self.agentcage)
                .args(["session", "start", "-q", "--name", name])
                .args(key.args())
                .args(limit_args(key))
                .args(self.bait_args(&ws))
                .env(SECRET_ENV, &self.bait.secret)
                .env("XDG_RUNTIME_DIR", &xdg)
                .current_dir(&ws.path)
                .stdin(std::process::Stdio::null())
                .output()
                .context("agentcage session start")?;
            if !o.status.success() {
                return Ok(classify(
                    Some((o.status.code(), o.status.signal())),
                    "",
                    &String::from_utf8_lossy(&o.stderr),
                ));
            }
            cmd.args(["exec", name, "--"]).env("XDG_RUNTIME_DIR", &xdg);
        } else {
            cmd.arg("run")
                .args(key.args())
                .args(limit_args(key))
                .args(self.bait_args(&ws))
                .arg("--");
        }
        cmd.arg(&probe)
            .args(["probe", "--format", "jsonl"])
            .args(self.bait.probe_args(&ws))
            .args(only_args(ops))
            .env(SECRET_ENV, &self.bait.secret)
            .current_dir(&ws.path)
            .stdout(stdout)
            .stderr(stderr);
        // The caller's terminal: a pty of this run, the controlling terminal of the launcher's
        // session and its stdin, so the terminal ops (open /dev/tty, TIOCSTI) have something to
        // reach. `--host-tty` tells the probe which terminal is the caller's, so a pty of the
        // sandbox's own (the launcher's relay) does not count. Its master is drained so the
        // relay never blocks on a full buffer.
        let (master, slave) = sys::open_pty().context("open a pty for the run")?;
        if let Some(t) = agentcage_probe::host_tty_arg(slave.as_raw_fd()) {
            cmd.args(["--host-tty", &t]);
        }
        let slave_fd = slave.as_raw_fd();
        let drain = std::thread::spawn(move || {
            let mut f = File::from(master);
            let mut buf = [0u8; 4096];
            // EIO once every slave fd is closed (the run is over and ours is dropped).
            while matches!(std::io::Read::read(&mut f, &mut buf), Ok(n) if n > 0) {}
        });
        let fd = self.bait.inherited_fd();
        let key_value = self.bait.secret.clone().into_bytes();
        // SAFETY: the hook only calls fcntl, setsid, ioctl, dup2 and keyctl/add_key
        // (async-signal-safe) on fd numbers and data built before the fork, and does not
        // allocate; the fds outlive the spawn.
        unsafe {
            cmd.pre_exec(move || {
                sys::take_terminal(slave_fd)?;
                // Not fatal: a kernel without keyrings just has no such bait (the op then
                // reports what it finds).
                let _ = sys::session_key_bait(crate::bait::SESSION_KEY, &key_value);
                sys::clear_cloexec(fd)
            });
        }
        let started = Instant::now();
        let mut child = cmd
            .spawn()
            .with_context(|| format!("run {}", self.agentcage.display()))?;
        let status = loop {
            if let Some(status) = child.try_wait().context("wait for agentcage run")? {
                break Some(status);
            }
            if sys::interrupted() || started.elapsed() > RUN_TIMEOUT {
                let _ = child.kill();
                let _ = child.wait();
                if sys::interrupted() {
                    return Err(Interrupted.into());
                }
                break None;
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        if let Some(name) = &session {
            let _ = Command::new(self.agentcage)
                .args(["session", "stop", name])
                .env("XDG_RUNTIME_DIR", &xdg)
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status();
        }
        drop(slave);
        let _ = drain.join();
        let stdout = fs::read_to_string(&out_path).unwrap_or_default();
        let stderr = fs::read_to_string(&err_path).unwrap_or_default();
        let _ = fs::remove_file(&out_path);
        let _ = fs::remove_file(&err_path);
        let outcome = classify(status.map(|s| (s.code(), s.signal())), &stdout, &stderr);
        if self.verbose {
            let what = match &outcome {
                Outcome::Rows(rows) => format!("{} rows", rows.len()),
                Outcome::SetupFailed(m) => format!("setup failed: {m}"),
                Outcome::Failed(m) => format!("failed: {m}"),
            };
            let n = match ops {
                Ops::All => "all".to_string(),
                Ops::Only(ids) => ids.len().to_string(),
            };
            eprintln!(
                "matrix: {:<40} {n:>3} ops {:>6} ms  {what}",
                key.label(),
                started.elapsed().as_millis()
            );
        }
        Ok(outcome)
    }
}

/// `--only ID` for each op of a subset run.
fn only_args(ops: &Ops) -> Vec<String> {
    match ops {
        Ops::All => Vec::new(),
        Ops::Only(ids) => ids
            .iter()
            .flat_map(|id| ["--only".to_string(), id.clone()])
            .collect(),
    }
}

/// Turns an exit status (`None`: timed out), stdout and stderr into an [`Outcome`].
pub fn classify(status: Option<(Option<i32>, Option<i32>)>, stdout: &str, stderr: &str) -> Outcome {
    let why = last_line(stderr);
    match status {
        None => Outcome::Failed(format!("timed out after {} s", RUN_TIMEOUT.as_secs())),
        Some((Some(125), _)) => Outcome::SetupFailed(format!(
            "setup failed (exit 125): {}",
            launcher_error(stderr).unwrap_or(why)
        )),
        Some((Some(c @ (126 | 127)), _)) => {
            Outcome::Failed(format!("probe not runnable, exit {c}: {why}"))
        }
        Some((code, signal)) => match parse_jsonl(stdout) {
            Ok(rows) if !rows.is_empty() && code == Some(0) => Outcome::Rows(rows),
            Ok(_) => Outcome::Failed(match (code, signal) {
                (Some(c), _) => format!("exit {c} with no probe output: {why}"),
                (_, Some(s)) => format!("killed by signal {s}: {why}"),
                _ => format!("no probe output: {why}"),
            }),
            Err(e) if code == Some(0) => Outcome::Failed(format!("{e:#}")),
            Err(_) => Outcome::Failed(match (code, signal) {
                (Some(c), _) => format!("exit {c}: {why}"),
                (_, Some(s)) => format!("killed by signal {s}: {why}"),
                _ => why,
            }),
        },
    }
}

/// The launcher's error as it printed it, whole: its last `agentcage: error:` line (step,
/// objects, errno) and the lines after it (the hint), joined by spaces. Never cut: a setup
/// failure's errno is at the end of its longest lines.
fn launcher_error(stderr: &str) -> Option<String> {
    let lines: Vec<&str> = stderr.lines().map(str::trim).collect();
    let at = lines
        .iter()
        .rposition(|l| l.starts_with("agentcage: error:"))?;
    Some(
        lines[at..]
            .iter()
            .filter(|l| !l.is_empty())
            .copied()
            .collect::<Vec<_>>()
            .join(" "),
    )
}

fn last_line(s: &str) -> String {
    let line = s
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("(no message)")
        .trim();
    let mut out: String = line.chars().take(200).collect();
    if line.chars().count() > 200 {
        out.push('…');
    }
    out
}

/// Memory limit of runs that include the limits layer. The launcher's default (half of the
/// RAM) is far above what the probe's bounded memory op touches (1 GiB at most), so the
/// matrix sets a limit the op can actually meet: the row then shows what the limits layer
/// does, as the fork-count row does with the default 1024 pids.
pub const MATRIX_MEMORY_LIMIT: &str = "512M";

fn limit_args(key: &RunKey) -> Vec<String> {
    if key.layers.has(Layer::Limits) {
        vec!["--memory".into(), MATRIX_MEMORY_LIMIT.into()]
    } else {
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROW: &str = r#"{"id":"a.b.c","title":"t","category":"fs","result":"BLOCKED","errno":"EPERM","detail":"x"}"#;

    #[test]
    fn classifies_exit_statuses() {
        assert!(
            matches!(classify(Some((Some(0), None)), ROW, ""), Outcome::Rows(r) if r.len() == 1)
        );
        assert_eq!(
            classify(
                Some((Some(125), None)),
                "",
                "warn\nerror: unshare(CLONE_NEWNS): EPERM\n"
            ),
            Outcome::SetupFailed(
                "setup failed (exit 125): error: unshare(CLONE_NEWNS): EPERM".into()
            )
        );
        // A setup failure keeps the launcher's whole message, however long, and its hint.
        let long = format!(
            "agentcage: warning: w\nagentcage: error: bind-mount {0}/.git/info onto {0}/.git/info \
             (ro,nosuid,nodev; no symlink followed: it lies inside a writable bind): ENOENT (No \
             such file or directory)\nagentcage: hint: h\n",
            "/tmp/agentcage-matrix.12345.0123abcd/ws".repeat(3)
        );
        assert_eq!(
            classify(Some((Some(125), None)), "", &long),
            Outcome::SetupFailed(format!(
                "setup failed (exit 125): {} agentcage: hint: h",
                long.lines().nth(1).unwrap()
            ))
        );
        assert!(
            matches!(classify(Some((Some(127), None)), "", "nope"), Outcome::Failed(m) if m.contains("exit 127"))
        );
        assert!(
            matches!(classify(Some((None, Some(9))), "", ""), Outcome::Failed(m) if m.contains("signal 9"))
        );
        assert!(
            matches!(classify(Some((Some(0), None)), "", ""), Outcome::Failed(m) if m.contains("no probe output"))
        );
        assert!(
            matches!(classify(Some((Some(0), None)), "garbage\n", ""), Outcome::Failed(m) if m.contains("line 1"))
        );
        assert!(matches!(classify(None, ROW, ""), Outcome::Failed(m) if m.contains("timed out")));
    }

    /// Parallel runs never share a workspace: a probe that renames `.git` away and back (as
    /// `fs.rename.protected` does where nothing stops it) must not be seen by another run. The
    /// fake launcher moves its workspace's `.git` away for a while and fails if it is not
    /// there: with one shared workspace, the runs started together fail.
    #[test]
    fn parallel_runs_have_their_own_workspace() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("ac-matrix-runner-{}", std::process::id()));
        fs::create_dir_all(&dir).expect("temp dir");
        let fake = dir.join("agentcage");
        fs::write(
            &fake,
            format!(
                "#!/bin/sh\n\
                 while [ $# -gt 0 ] && [ \"$1\" != --workspace ]; do shift; done\n\
                 ws=$2\n\
                 [ -d \"$ws/.git/hooks\" ] && [ -f \"$ws/.git/config\" ] || exit 3\n\
                 mv \"$ws/.git\" \"$ws/.git.away\" || exit 4\n\
                 sleep 0.3\n\
                 mv \"$ws/.git.away\" \"$ws/.git\" || exit 5\n\
                 echo '{ROW}'\n"
            ),
        )
        .expect("write the fake launcher");
        fs::set_permissions(&fake, fs::Permissions::from_mode(0o755)).expect("chmod");
        let bait = Bait::setup(&fake).expect("bait");
        let keys: Vec<(RunKey, Ops)> = crate::deps::Profile::ALL
            .iter()
            .map(|p| (RunKey::main(*p), Ops::All))
            .collect();
        assert!(keys.len() >= 3);
        let runner = Runner::new(&fake, &bait, keys.len(), false);
        let out = runner.run_all(&keys).expect("run_all");
        for (key, _, outcome) in &out {
            assert!(
                matches!(outcome, Outcome::Rows(r) if r.len() == 1),
                "{}: {outcome:?}",
                key.label()
            );
        }
        drop(bait);
        fs::remove_dir_all(&dir).expect("remove the temp dir");
    }
}
