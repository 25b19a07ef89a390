//! Robustness tier: the limits under attack, the launcher under load and faults, the command
//! line under random input. Runs the real `agentcage` binary, as root and as uid 65534.
//!
//! What each trial shows (issue 6, "Robustness"):
//! - `fork_bomb_contained`, `memory_hog_contained`: a fork bomb and a memory hog under `full`
//!   hit the limits (fork fails with EAGAIN; the hog is OOM-killed in its memory cgroup, exit
//!   137, or without one its allocation fails under the RLIMIT_DATA floor) while a host-side
//!   `true` keeps completing in under 2 s, and nothing of theirs is left afterwards.
//! - `concurrent_200`, `sequential_1000`: many sandboxes exit 0 and leave no mount, process,
//!   cgroup, fd or temp dir behind (a [`Snapshot`] before and after).
//! - `launcher_sigkill_no_leak`: SIGKILL of the launcher mid-run leaves no process, and the
//!   cgroup it leaves is reaped by the next run.
//! - `chaos_sigkill`: launchers SIGKILLed at random points of concurrent runs leave nothing
//!   behind once the next run has reaped their cgroups.
//! - `timeout_kills_term_ignorer`: `--timeout` kills a command that ignores SIGTERM (exit 124,
//!   after the grace period) and what it wrote to the workspace is intact.
//! - `json_report_fields`: `--json-report` for a normal exit, a signal, a timeout and an OOM.
//! - `fuzz_argv`: a few hundred random argument vectors (xorshift PRNG, fixed seed): never a
//!   panic, every rejection exits 2 with one `error:` line.
//!
//! - `timeout_kills_term_ignorer` and `launcher_sigkill_no_leak` also cover the `none` profile
//!   (no pid namespace: only the run's cgroup holds the processes) when the caller has a cgroup.
//!
//! Where a limit cannot be enforced for the caller (uid 65534 has no writable cgroup here:
//! memory falls back to a per-process RLIMIT_DATA and pids to RLIMIT_NPROC), the trial asserts
//! what is still promised, or skips that part with the reason printed. The trials observe
//! host-wide state (mount and process tables, cgroupfs, the test process's fds), so they run
//! one at a time unless `--test-threads` says otherwise. Debug build, 2 cores: about 50 s.

mod common;

use std::collections::{BTreeSet, HashSet};
use std::ffi::OsString;
use std::io::Read;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::{code_of, err, wait_deadline, Env, Out, TestFn, Who};
use libtest_mimic::{Arguments, Failed};

// ---------------------------------------------------------------------------------------------
// Host observation: processes, cgroup leaves, mounts, fds, temp dirs

/// Pids of processes that have `marker` as one of their arguments (forked children of the
/// marked process keep its command line).
fn marked_processes(marker: &str) -> Vec<u32> {
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let me = std::process::id();
    rd.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != me)
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| c.split(|b| *b == 0).any(|a| a == marker.as_bytes()))
        })
        .collect()
}

/// Pids whose parent is this test process (zombies included).
fn our_children() -> Vec<u32> {
    let me = std::process::id();
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    rd.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
                s.rfind(')')
                    .and_then(|i| s.get(i + 2..))
                    .and_then(|rest| rest.split(' ').nth(1))
                    .and_then(|p| p.parse::<u32>().ok())
                    == Some(me)
            })
        })
        .collect()
}

/// The launcher pid in a leaf name `agentcage-<pid>-<hex>`.
fn leaf_pid(name: &str) -> Option<u32> {
    name.strip_prefix("agentcage-")?
        .split_once('-')?
        .0
        .parse()
        .ok()
}

/// Every per-run cgroup leaf on the host: `<...>/agentcage/agentcage-<pid>-<hex>` in any
/// hierarchy under /sys/fs/cgroup (symlinked controller aliases are not followed).
fn cgroup_leaves() -> BTreeSet<PathBuf> {
    fn walk(dir: &Path, depth: u32, out: &mut BTreeSet<PathBuf>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd.flatten() {
            if !e.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let p = e.path();
            let name = e.file_name();
            let name = name.to_string_lossy();
            if dir.file_name().is_some_and(|n| n == "agentcage") && leaf_pid(&name).is_some() {
                out.insert(p);
            } else if depth < 8 {
                walk(&p, depth + 1, out);
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(Path::new("/sys/fs/cgroup"), 0, &mut out);
    out
}

/// Leaves whose launcher is one of `pids`.
fn leaves_of(pids: &HashSet<u32>) -> Vec<PathBuf> {
    cgroup_leaves()
        .into_iter()
        .filter(|p| {
            p.file_name()
                .and_then(|n| leaf_pid(&n.to_string_lossy()))
                .is_some_and(|pid| pids.contains(&pid))
        })
        .collect()
}

fn line_count(path: &str) -> usize {
    std::fs::read_to_string(path).map_or(0, |s| s.lines().count())
}

fn fd_count() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |rd| rd.count())
}

/// Entries of the host's temp dir with `agentcage` in the name. Other test binaries create
/// such fixtures concurrently, so [`Snapshot::check_after`] only counts new ones that embed the
/// pid of one of the launchers under test; everything the launchers create through `TMPDIR` is
/// caught exactly by giving them a private one.
fn tmp_entries() -> BTreeSet<OsString> {
    std::fs::read_dir(std::env::temp_dir())
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name())
                .filter(|n| n.to_string_lossy().contains("agentcage"))
                .collect()
        })
        .unwrap_or_default()
}

/// Whether `name` has one of `pids` as a decimal token (`agentcage-1234-ab`, `x.1234`).
fn names_pid(name: &str, pids: &HashSet<u32>) -> bool {
    name.split(|c: char| !c.is_ascii_digit())
        .filter_map(|t| t.parse::<u32>().ok())
        .any(|p| p > 300 && pids.contains(&p))
}

/// Host state that a run must leave as it found it.
struct Snapshot {
    mountinfo: String,
    mounts: usize,
    fds: usize,
    tmp: BTreeSet<OsString>,
    /// cgroup leaves that existed before the runs: a stale leaf of an earlier, killed launcher
    /// whose pid one of ours reused is not ours.
    leaves: BTreeSet<PathBuf>,
}

impl Snapshot {
    fn take() -> Snapshot {
        Snapshot {
            mountinfo: std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default(),
            mounts: line_count("/proc/mounts"),
            fds: fd_count(),
            tmp: tmp_entries(),
            leaves: cgroup_leaves().into_iter().collect(),
        }
    }

    /// Compares with a later snapshot; the launchers of the runs were `launchers`, their
    /// private TMPDIR `tmpdir` and their commands carried `marker`. Polls up to 5 s.
    fn check_after(
        &self,
        launchers: &HashSet<u32>,
        tmpdir: &Path,
        marker: &str,
    ) -> Result<(), Failed> {
        let problems = || -> Vec<String> {
            let mut v = Vec::new();
            let now = Snapshot::take();
            if now.mountinfo.lines().count() != self.mountinfo.lines().count() {
                let before: BTreeSet<&str> = self.mountinfo.lines().collect();
                let new: Vec<&str> = now
                    .mountinfo
                    .lines()
                    .filter(|l| !before.contains(l))
                    .collect();
                v.push(format!(
                    "mountinfo: {} lines before, {} after; new: {new:?}",
                    self.mountinfo.lines().count(),
                    now.mountinfo.lines().count()
                ));
            }
            if now.mounts != self.mounts {
                v.push(format!(
                    "/proc/mounts: {} lines before, {} after",
                    self.mounts, now.mounts
                ));
            }
            if now.fds != self.fds {
                v.push(format!(
                    "test process fds: {} before, {} after",
                    self.fds, now.fds
                ));
            }
            let new_tmp: Vec<_> = now
                .tmp
                .difference(&self.tmp)
                .filter(|n| names_pid(&n.to_string_lossy(), launchers))
                .collect();
            if !new_tmp.is_empty() {
                v.push(format!("new entries in the temp dir: {new_tmp:?}"));
            }
            let private: Vec<_> = std::fs::read_dir(tmpdir)
                .map(|rd| rd.flatten().map(|e| e.file_name()).collect())
                .unwrap_or_default();
            if !private.is_empty() {
                v.push(format!("left in the launchers' TMPDIR: {private:?}"));
            }
            let kids = our_children();
            if !kids.is_empty() {
                v.push(format!("children of the test process left: {kids:?}"));
            }
            let marked = marked_processes(marker);
            if !marked.is_empty() {
                v.push(format!("processes with the marker left: {marked:?}"));
            }
            let leaves: Vec<_> = leaves_of(launchers)
                .into_iter()
                .filter(|l| !self.leaves.contains(l))
                .collect();
            if !leaves.is_empty() {
                v.push(format!("cgroup leaves of our launchers left: {leaves:?}"));
            }
            v
        };
        let start = Instant::now();
        loop {
            let p = problems();
            if p.is_empty() {
                return Ok(());
            }
            if start.elapsed() > Duration::from_secs(5) {
                return Err(p.join("\n").into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// A directory owned by this test, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Result<TempDir, Failed> {
        static N: AtomicUsize = AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "agentcage-robust-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&p).map_err(|e| format!("mkdir {}: {e}", p.display()))?;
        // Every caller may use it as TMPDIR (the sticky bit keeps them apart).
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o1777)).map_err(err)?;
        Ok(TempDir(p))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A unique argument to find the sandbox's processes by.
fn marker(tag: &str) -> String {
    format!("agentcage-robust-{tag}-{}", std::process::id())
}

// ---------------------------------------------------------------------------------------------
// Running the binary

/// The command `env.run` would build, for spawning with pipes and a deadline.
fn command(env: &Env, args: &[&str]) -> Command {
    // The harness's builder (it confirms `-p none` as root, see common).
    env.command(args)
}

/// Runs with stdout/stderr captured and a deadline; also returns the pid it had.
fn output_deadline(
    mut c: Command,
    limit: Duration,
    what: &str,
) -> Result<(Out, ExitStatus, u32), Failed> {
    c.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().map_err(|e| format!("{what}: spawn: {e}"))?;
    let pid = child.id();
    let mut so = child.stdout.take().expect("stdout is piped");
    let mut se = child.stderr.take().expect("stderr is piped");
    let t_out = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = so.read_to_end(&mut b);
        b
    });
    let t_err = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = se.read_to_end(&mut b);
        b
    });
    let st = wait_deadline(&mut child, limit, what);
    let stdout = t_out.join().unwrap_or_default();
    let stderr = t_err.join().unwrap_or_default();
    let st = st?;
    Ok((
        Out {
            code: code_of(st),
            stdout: String::from_utf8_lossy(&stdout).into_owned(),
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
        },
        st,
        pid,
    ))
}

/// Spawns a host `true` every 100 ms while running and records the slowest round trip: the
/// host stays responsive when that stays well under a second.
struct Liveness {
    stop: std::sync::Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<(Duration, u32)>>,
}

impl Liveness {
    fn start() -> Liveness {
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let handle = std::thread::spawn(move || {
            let (mut worst, mut n) = (Duration::ZERO, 0u32);
            while !s.load(Ordering::Relaxed) {
                let t = Instant::now();
                let ok = Command::new("true")
                    .stdin(Stdio::null())
                    .status()
                    .is_ok_and(|st| st.success());
                let d = t.elapsed();
                if ok {
                    n += 1;
                } else {
                    // A failed spawn counts as unresponsive.
                    worst = Duration::MAX;
                }
                worst = worst.max(d);
                std::thread::sleep(Duration::from_millis(100));
            }
            (worst, n)
        });
        Liveness {
            stop,
            handle: Some(handle),
        }
    }

    /// Stops and checks: at least one probe ran and none took 2 s or more.
    fn finish(mut self, what: &str) -> Result<(Duration, u32), Failed> {
        self.stop.store(true, Ordering::Relaxed);
        let (worst, n) = self
            .handle
            .take()
            .expect("joined once")
            .join()
            .map_err(|_| format!("{what}: liveness thread panicked"))?;
        if n == 0 || worst >= Duration::from_secs(2) {
            return Err(format!(
                "{what}: host unresponsive: slowest host `true` took {worst:?} ({n} completed)"
            )
            .into());
        }
        Ok((worst, n))
    }
}

impl Drop for Liveness {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// Polls for `path` while `child` runs, up to `limit`.
fn wait_for_file(child: &mut Child, path: &Path, limit: Duration) -> Result<(), Failed> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if path.exists() {
            return Ok(());
        }
        if let Some(st) = child.try_wait().map_err(err)? {
            return Err(format!(
                "the sandbox exited ({st}) before creating {}",
                path.display()
            )
            .into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(format!("{} not created within {limit:?}", path.display()).into())
}

/// How `-v` says `limit` is enforced for this caller (`"cgroup v1 pids.max=64"`,
/// `"not enforced: ..."`).
fn enforcement_of(env: &Env, limit_flag: &[&str], limit: &str) -> Result<String, Failed> {
    let mut args = vec!["run", "-v", "-w", "/tmp"];
    args.extend_from_slice(limit_flag);
    args.extend_from_slice(&["--", "true"]);
    let out = env.run(&args)?;
    out.expect_code(0, "run -v")?;
    let prefix = format!("agentcage: {limit}: ");
    out.stderr
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map(str::to_owned)
        .ok_or_else(|| format!("run -v printed no {limit:?} line:\n{}", out.stderr).into())
}

// ---------------------------------------------------------------------------------------------
// Trials

const BOMB_PY: &str = r#"
import errno, os, sys, time
ws = sys.argv[1]
forks, err = 0, None
for _ in range(5000):
    try:
        pid = os.fork()
    except OSError as e:
        err = e.errno
        break
    if pid == 0:
        time.sleep(60)
        os._exit(0)
    forks += 1
with open(ws + "/ready.tmp", "w") as f:
    f.write("%d %s\n" % (forks, errno.errorcode.get(err, "none")))
os.rename(ws + "/ready.tmp", ws + "/ready")
deadline = time.time() + 30
while not os.path.exists(ws + "/go") and time.time() < deadline:
    time.sleep(0.05)
"#;

/// A fork bomb (up to 5000 sleeping children) under `full` with its default pids limit (1024):
/// forks fail with EAGAIN at the limit, the host stays responsive, nothing is left afterwards.
fn fork_bomb_contained(env: &Env) -> Result<(), Failed> {
    const PIDS: usize = 1024; // the full profile's default
    let how = enforcement_of(env, &[], "pids")?;
    eprintln!("  [{}] pids enforced by: {how}", env.who.name());
    let ws = env.workspace()?;
    std::fs::write(ws.path().join("bomb.py"), BOMB_PY).map_err(err)?;
    let mark = marker("bomb");
    let before = Snapshot::take();
    let tmp = TempDir::new("tmp")?;
    let live = Liveness::start();
    let mut c = command(env, &["run", "-q", "-w", ws.s(), "--", "python3"]);
    c.arg(ws.path().join("bomb.py"))
        .arg(ws.path())
        .arg(&mark)
        .env("TMPDIR", &tmp.0)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = c.spawn().map_err(err)?;
    let launcher = child.id();
    let res = (|| -> Result<(), Failed> {
        wait_for_file(
            &mut child,
            &ws.path().join("ready"),
            Duration::from_secs(60),
        )?;
        let alive = marked_processes(&mark).len();
        let report = std::fs::read_to_string(ws.path().join("ready")).map_err(err)?;
        let (forks, errname) = report
            .trim()
            .split_once(' ')
            .ok_or_else(|| format!("bad report {report:?}"))?;
        let forks: usize = forks.parse().map_err(err)?;
        eprintln!(
            "  [{}] {forks} forks succeeded, then {errname}; {alive} bomb processes visible on the host",
            env.who.name()
        );
        if errname != "EAGAIN" {
            return Err(
                format!("fork stopped with {errname}, not EAGAIN at the pids limit").into(),
            );
        }
        if !(PIDS / 2..PIDS).contains(&forks) {
            return Err(format!("{forks} forks succeeded under a limit of {PIDS} tasks").into());
        }
        // The bomb is really there (and the marker finds it): the check below can fail.
        if alive < forks / 2 {
            return Err(format!("only {alive} of {forks} bomb processes visible").into());
        }
        Ok(())
    })();
    let _ = std::fs::write(ws.path().join("go"), "");
    let st = wait_deadline(&mut child, Duration::from_secs(60), "fork bomb run");
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut stderr);
    }
    let (worst, n) = live.finish("fork bomb")?;
    eprintln!(
        "  [{}] host liveness: {n} host `true` runs, slowest {worst:?}",
        env.who.name()
    );
    res?;
    let st = st?;
    if !st.success() {
        return Err(format!("fork bomb run: {st}\n{stderr}").into());
    }
    before.check_after(&HashSet::from([launcher]), &tmp.0, &mark)
}

const HOG_PY: &str = r#"
import sys
chunks = []
for i in range(32):          # 32 x 64 MiB = 2 GiB, every page written
    chunks.append(b"x" * (64 << 20))
print("survived", len(chunks), flush=True)
"#;

/// A 2 GiB memory hog under `full --memory 256M` is contained while the host stays
/// responsive. With a memory cgroup it is OOM-killed inside it (exit 137, "out of memory (limit
/// 256M)"); with the RLIMIT_DATA floor (no cgroup for this caller) its allocation fails.
fn memory_hog_contained(env: &Env) -> Result<(), Failed> {
    let how = enforcement_of(env, &["--memory", "256M"], "memory")?;
    eprintln!("  [{}] memory enforced by: {how}", env.who.name());
    let by_cgroup = how.starts_with("cgroup");
    if !by_cgroup && !how.contains("RLIMIT_DATA") {
        return Err(format!("unexpected memory enforcement: {how}").into());
    }
    let ws = env.workspace()?;
    std::fs::write(ws.path().join("hog.py"), HOG_PY).map_err(err)?;
    let mark = marker("hog");
    let before = Snapshot::take();
    let tmp = TempDir::new("tmp")?;
    let live = Liveness::start();
    let hog = ws.path().join("hog.py");
    let hog = hog.to_str().expect("temp paths are UTF-8");
    let mut c = command(
        env,
        &[
            "run",
            "-w",
            ws.s(),
            "--memory",
            "256M",
            "--",
            "python3",
            hog,
            &mark,
        ],
    );
    c.env("TMPDIR", &tmp.0);
    let res = output_deadline(c, Duration::from_secs(60), "memory hog run");
    let (worst, n) = live.finish("memory hog")?;
    eprintln!(
        "  [{}] host liveness: {n} host `true` runs, slowest {worst:?}",
        env.who.name()
    );
    let (out, _, launcher) = res?;
    let what = format!(
        "memory hog: exit {}\n{}\n{}",
        out.code, out.stdout, out.stderr
    );
    if out.stdout.contains("survived") {
        return Err(format!("not contained: {what}").into());
    }
    if by_cgroup {
        if out.code != 137 || !out.stderr.contains("out of memory (limit 256M)") {
            return Err(format!("want exit 137 and the OOM message: {what}").into());
        }
    } else if out.code == 0 || !out.stderr.contains("MemoryError") {
        return Err(format!("want a failed allocation (MemoryError): {what}").into());
    }
    before.check_after(&HashSet::from([launcher]), &tmp.0, &mark)
}

/// Runs `n` sandboxes of `true <marker>` with `concurrency` at a time; all exit 0 and the
/// host is left as it was.
fn many_runs(env: &Env, n: usize, concurrency: usize, what: &str) -> Result<(), Failed> {
    let ws = env.workspace()?;
    let mark = marker(what);
    let tmp = TempDir::new("tmp")?;
    // Warm up (page cache, the binary copy) so the snapshot is not taken mid-setup.
    env.run(&["run", "-q", "-w", ws.s(), "--", "true"])?
        .expect_code(0, "warm-up")?;
    let before = Snapshot::take();
    let leaves_before = cgroup_leaves().len();
    // A longer sandbox alongside: every run reaps stale leaves, and a live one must never be
    // taken for stale.
    let mut long = command(
        env,
        &[
            "run",
            "-q",
            "-w",
            ws.s(),
            "--",
            "sh",
            "-c",
            "sleep 2; echo long-ok",
            &mark,
        ],
    );
    long.env("TMPDIR", &tmp.0);
    let long =
        std::thread::spawn(move || output_deadline(long, Duration::from_secs(60), "long run"));
    let launchers = Mutex::new(HashSet::new());
    let failures = Mutex::new(Vec::new());
    let next = AtomicUsize::new(0);
    let start = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..concurrency {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    break;
                }
                let mut c = command(env, &["run", "-q", "-w", ws.s(), "--", "true", &mark]);
                c.env("TMPDIR", &tmp.0)
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped());
                let r = c.spawn().and_then(|mut ch| {
                    launchers.lock().expect("no panics").insert(ch.id());
                    let mut e = String::new();
                    if let Some(mut se) = ch.stderr.take() {
                        let _ = se.read_to_string(&mut e);
                    }
                    ch.wait().map(|st| (st, e))
                });
                match r {
                    Ok((st, _)) if st.success() => {}
                    Ok((st, e)) => failures
                        .lock()
                        .expect("no panics")
                        .push(format!("run {i}: {st}: {}", e.trim())),
                    Err(e) => failures
                        .lock()
                        .expect("no panics")
                        .push(format!("run {i}: spawn: {e}")),
                }
            });
        }
    });
    let took = start.elapsed();
    let mut failures = failures.into_inner().expect("no panics");
    let mut launchers = launchers.into_inner().expect("no panics");
    match long.join() {
        Ok(Ok((out, _, pid))) => {
            launchers.insert(pid);
            if out.code != 0 || out.stdout.trim() != "long-ok" {
                failures.push(format!(
                    "the long run alongside: exit {}: {} {}",
                    out.code, out.stdout, out.stderr
                ));
            }
        }
        Ok(Err(e)) => failures.push(format!("the long run: {}", e.message().unwrap_or(""))),
        Err(_) => failures.push("the long run's thread panicked".into()),
    }
    eprintln!(
        "  [{}] {n} runs of `true` (concurrency {concurrency}) took {:.2} s ({:.1} ms/run); {} failed; cgroup leaves on the host: {leaves_before} before, {} after",
        env.who.name(),
        took.as_secs_f64(),
        took.as_secs_f64() * 1e3 / n as f64,
        failures.len(),
        cgroup_leaves().len(),
    );
    if !failures.is_empty() {
        let shown: Vec<_> = failures.iter().take(5).collect();
        return Err(format!("{} of {n} runs failed: {shown:#?}", failures.len()).into());
    }
    before.check_after(&launchers, &tmp.0, &mark)
}

fn concurrent_200(env: &Env) -> Result<(), Failed> {
    many_runs(env, 200, 16, "concurrent")
}

fn sequential_1000(env: &Env) -> Result<(), Failed> {
    many_runs(env, 1000, 1, "sequential")
}

/// Chaos: 60 sandboxes, 8 at a time, every other launcher SIGKILLed after a random 0-200 ms
/// (during setup, at exec or mid-run). The survivors exit 0; after one more run (which reaps
/// stale leaves) no process, leaf, mount, fd or temp dir is left.
fn chaos_sigkill(env: &Env) -> Result<(), Failed> {
    const N: usize = 60;
    let ws = env.workspace()?;
    let mark = marker("chaos");
    let tmp = TempDir::new("tmp")?;
    let before = Snapshot::take();
    let launchers = Mutex::new(HashSet::new());
    let failures = Mutex::new(Vec::new());
    let next = AtomicUsize::new(0);
    let killed = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for t in 0..8u64 {
            let (launchers, failures, next, killed) = (&launchers, &failures, &next, &killed);
            let (ws, mark, tmp) = (&ws, &mark, &tmp);
            s.spawn(move || {
                let mut rng = Rng(0xC4A0_5000 + t);
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= N {
                        break;
                    }
                    let script = "(while :; do sleep 1; done) & sleep 0.3";
                    let mut c = command(
                        env,
                        &["run", "-q", "-w", ws.s(), "--", "sh", "-c", script, mark],
                    );
                    c.env("TMPDIR", &tmp.0)
                        .stdin(Stdio::null())
                        .stdout(Stdio::null())
                        .stderr(Stdio::null());
                    let mut ch = match c.spawn() {
                        Ok(ch) => ch,
                        Err(e) => {
                            failures
                                .lock()
                                .expect("no panics")
                                .push(format!("spawn: {e}"));
                            continue;
                        }
                    };
                    launchers.lock().expect("no panics").insert(ch.id());
                    if i % 2 == 0 {
                        std::thread::sleep(Duration::from_millis(rng.below(200) as u64));
                        let _ = ch.kill();
                        let _ = ch.wait();
                        killed.fetch_add(1, Ordering::Relaxed);
                    } else {
                        match wait_deadline(&mut ch, Duration::from_secs(30), "chaos run") {
                            Ok(st) if st.success() => {}
                            Ok(st) => failures
                                .lock()
                                .expect("no panics")
                                .push(format!("run {i}: {st}")),
                            Err(e) => failures
                                .lock()
                                .expect("no panics")
                                .push(e.message().unwrap_or("").to_owned()),
                        }
                    }
                }
            });
        }
    });
    let failures = failures.into_inner().expect("no panics");
    if !failures.is_empty() {
        return Err(format!("{} unkilled runs failed: {failures:#?}", failures.len()).into());
    }
    let launchers = launchers.into_inner().expect("no panics");
    let left = leaves_of(&launchers).len();
    // Under `full` every sandbox died with its launcher.
    common::settle(|| marked_processes(&mark).is_empty()).map_err(|()| {
        format!(
            "processes outlived their launchers: {:?}",
            marked_processes(&mark)
        )
    })?;
    env.run(&["run", "-q", "-w", ws.s(), "--", "true"])?
        .expect_code(0, "the run after the chaos")?;
    eprintln!(
        "  [{}] {N} runs, {} launchers SIGKILLed; {left} stale leaves before the next run",
        env.who.name(),
        killed.load(Ordering::Relaxed)
    );
    before.check_after(&launchers, &tmp.0, &mark)
}

/// SIGKILL of the launcher mid-run. Under `full` the sandbox dies with it (double-forked,
/// SIGTERM- and SIGHUP-ignoring processes included: PDEATHSIG on the pid namespace's init) and
/// the cgroup the launcher could not remove is reaped by the next run. Under `none` (no pid
/// namespace) only the cgroup holds the processes: the next run reaps the leaf and kills them.
fn launcher_sigkill_no_leak(env: &Env) -> Result<(), Failed> {
    // Asked before the runs: any run reaps stale leaves, ours included.
    let pids_how = enforcement_of(env, &[], "pids")?;
    let cgroup = pids_how.starts_with("cgroup");
    if !cgroup {
        eprintln!(
            "  [{}] no cgroup for this caller (pids: {pids_how}): skip the cgroup checks and \
             the `none` profile (its processes would outlive the launcher: known limitation)",
            env.who.name()
        );
    }
    for profile in ["full", "none"] {
        if profile == "none" && !cgroup {
            continue;
        }
        sigkill_once(env, profile, cgroup)
            .map_err(|e| format!("profile {profile}: {}", e.message().unwrap_or("")))?;
    }
    Ok(())
}

fn sigkill_once(env: &Env, profile: &str, cgroup: bool) -> Result<(), Failed> {
    let ws = env.workspace()?;
    let mark = marker("sigkill");
    let tmp = TempDir::new("tmp")?;
    let before = Snapshot::take();
    let script = "(trap '' TERM HUP INT; while :; do sleep 1; done) & \
                  ( (trap '' TERM HUP; while :; do sleep 1; done) & ) ; \
                  echo up > ready; while :; do sleep 1; done";
    let mut c = command(
        env,
        &[
            "run",
            "-q",
            "-p",
            profile,
            "-w",
            ws.s(),
            "--pids",
            "64",
            "--",
            "sh",
            "-c",
            script,
            &mark,
        ],
    );
    c.env("TMPDIR", &tmp.0)
        .current_dir(ws.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child = c.spawn().map_err(err)?;
    let launcher = child.id();
    let ours = HashSet::from([launcher]);
    let started = wait_for_file(
        &mut child,
        &ws.path().join("ready"),
        Duration::from_secs(30),
    );
    let alive = marked_processes(&mark).len();
    let leaves_during = leaves_of(&ours);
    let _ = child.kill();
    let _ = child.wait();
    let left = leaves_of(&ours);
    started?;
    if alive < 3 {
        return Err(format!("only {alive} sandbox processes visible before the kill").into());
    }
    if profile == "full" {
        common::settle(|| marked_processes(&mark).is_empty()).map_err(|()| {
            format!(
                "processes survived the launcher's SIGKILL: {:?}",
                marked_processes(&mark)
            )
        })?;
    }
    if cgroup {
        if leaves_during.is_empty() {
            return Err("no cgroup leaf of the launcher was found during the run".into());
        }
        let survivors = marked_processes(&mark).len();
        eprintln!(
            "  [{}] {profile}: leaf during the run: {leaves_during:?}; left after SIGKILL: {} \
             leaves, {survivors} processes",
            env.who.name(),
            left.len()
        );
        // Nothing but a later run removes it (or the reap test below could pass vacuously).
        if left.is_empty() {
            return Err("the leaf vanished before any other run: who removed it?".into());
        }
        // The next run reaps it (and kills what is still in it).
        env.run(&["run", "-q", "-w", ws.s(), "--", "true"])?
            .expect_code(0, "the next run")?;
        let still = leaves_of(&ours);
        if !still.is_empty() {
            return Err(format!("the next run did not reap the stale leaf: {still:?}").into());
        }
    }
    before.check_after(&ours, &tmp.0, &mark)
}

/// `--timeout` kills a command that ignores SIGTERM (and its SIGTERM-ignoring children): exit
/// 124 once the grace period is over, and the files it wrote before are intact. Under `full`,
/// and under `none` where the caller gets a cgroup.
fn timeout_kills_term_ignorer(env: &Env) -> Result<(), Failed> {
    // `full` kills through its pid namespace (and cgroup); `none` has no pid namespace and
    // relies on the run's cgroup alone.
    let cgroup = enforcement_of(env, &[], "pids")?.starts_with("cgroup");
    for profile in ["full", "none"] {
        if profile == "none" && !cgroup {
            eprintln!(
                "  [{}] skip --timeout under none: no pid namespace and no cgroup for this \
                 caller, so processes the command spawned outlive the timeout (known limitation)",
                env.who.name()
            );
            continue;
        }
        timeout_once(env, profile)
            .map_err(|e| format!("profile {profile}: {}", e.message().unwrap_or("")))?;
    }
    Ok(())
}

fn timeout_once(env: &Env, profile: &str) -> Result<(), Failed> {
    const TIMEOUT: f64 = 2.0;
    const GRACE: f64 = 2.0; // agentcage::TIMEOUT_GRACE
    const LINE: &str = "agentcage-robust-line-0123456789abcdef-xyz";
    let ws = env.workspace()?;
    let mark = marker("timeout");
    let tmp = TempDir::new("tmp")?;
    let before = Snapshot::take();
    // Ignored signals stay ignored in children: the background loop ignores SIGTERM too.
    let script = format!(
        "trap '' TERM; \
         i=0; while [ $i -lt 4096 ]; do echo '{LINE}'; i=$((i+1)); done > blob; \
         echo written > note; \
         (while :; do echo x >> bg.log; sleep 0.2; done) & \
         while :; do sleep 1; done"
    );
    let mut c = command(
        env,
        &[
            "run",
            "-p",
            profile,
            "-w",
            ws.s(),
            "--timeout",
            "2",
            "--",
            "sh",
            "-c",
            &script,
            &mark,
        ],
    );
    c.env("TMPDIR", &tmp.0).current_dir(ws.path());
    let t = Instant::now();
    let (out, _, launcher) = output_deadline(c, Duration::from_secs(30), "timeout run")?;
    let took = t.elapsed().as_secs_f64();
    eprintln!(
        "  [{}] {profile}: --timeout 2 on a SIGTERM-ignoring command: exit {} after {took:.2} s",
        env.who.name(),
        out.code
    );
    out.expect_code(124, "timeout")?;
    if !out
        .stderr
        .contains("timeout: the sandbox was killed after 2s")
    {
        return Err(format!("no timeout message: {}", out.stderr).into());
    }
    // SIGTERM at 2 s is ignored; SIGKILL at 2 + 2 s. Slack for a loaded debug build.
    if !(TIMEOUT + GRACE - 0.3..=TIMEOUT + GRACE + 3.0).contains(&took) {
        return Err(format!(
            "killed after {took:.2} s: expected about {} s (timeout + grace)",
            TIMEOUT + GRACE
        )
        .into());
    }
    let note = std::fs::read_to_string(ws.path().join("note")).map_err(err)?;
    let blob = std::fs::read_to_string(ws.path().join("blob")).map_err(err)?;
    let want = format!("{LINE}\n").repeat(4096);
    if note != "written\n" || blob != want {
        return Err(format!(
            "workspace files damaged: note {note:?}, blob {} bytes (want {})",
            blob.len(),
            want.len()
        )
        .into());
    }
    // The background loop ran, and stopped with the sandbox.
    let bg = ws.path().join("bg.log");
    let size = || std::fs::metadata(&bg).map_or(0, |m| m.len());
    let n = size();
    if n == 0 {
        return Err("the background loop never ran".into());
    }
    std::thread::sleep(Duration::from_millis(600));
    if size() != n {
        return Err("the background loop outlived the timeout".into());
    }
    before.check_after(&HashSet::from([launcher]), &tmp.0, &mark)
}

/// Runs with `--json-report` and returns (the report, the launcher's exit code, the wall time
/// measured from outside).
fn json_run(
    env: &Env,
    ws: &common::Scratch,
    flags: &[&str],
    cmd: &[&str],
) -> Result<(serde_json::Value, i32, f64), Failed> {
    let report = TempDir::new("report")?;
    let file = report.0.join("report.json");
    let file_s = file.to_str().expect("temp paths are UTF-8");
    let mut args = vec!["run", "-q", "-w", ws.s(), "--json-report", file_s];
    args.extend_from_slice(flags);
    args.push("--");
    args.extend_from_slice(cmd);
    let t = Instant::now();
    let out = env.run(&args)?;
    let wall = t.elapsed().as_secs_f64();
    let text = std::fs::read_to_string(&file)
        .map_err(|e| format!("{cmd:?}: no report ({e}); stderr: {}", out.stderr))?;
    let v: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("report is not JSON: {e}\n{text}"))?;
    Ok((v, out.code, wall))
}

/// Checks the fields every report has and their consistency with the exit code.
fn check_report(v: &serde_json::Value, code: i32, wall: f64, what: &str) -> Result<(), Failed> {
    let fail = |m: String| -> Failed { format!("{what}: {m}\nreport: {v:#}").into() };
    for k in [
        "exit_code",
        "signal",
        "status",
        "timeout",
        "oom",
        "peak_memory_bytes",
        "wall_seconds",
        "cpu_seconds",
    ] {
        if v.get(k).is_none() {
            return Err(fail(format!("field {k:?} missing")));
        }
    }
    if v["status"].as_i64() != Some(i64::from(code)) {
        return Err(fail(format!("status differs from the exit code {code}")));
    }
    match (v["exit_code"].as_i64(), v["signal"].as_i64()) {
        (Some(_), None) | (None, Some(_)) => {}
        _ => {
            return Err(fail(
                "exactly one of exit_code and signal must be set".into(),
            ))
        }
    }
    let w = v["wall_seconds"]
        .as_f64()
        .ok_or_else(|| fail("wall_seconds is not a number".into()))?;
    if !(w > 0.0 && w <= wall + 0.05) {
        return Err(fail(format!(
            "wall_seconds {w} outside (0, {wall}] (measured outside)"
        )));
    }
    let cpu = v["cpu_seconds"]
        .as_f64()
        .ok_or_else(|| fail("cpu_seconds is not a number".into()))?;
    let ncpu = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    if !(cpu >= 0.0 && cpu <= w * ncpu + 0.05) {
        return Err(fail(format!(
            "cpu_seconds {cpu} vs wall {w} on {ncpu} CPUs"
        )));
    }
    if !v["timeout"].is_boolean() || !v["oom"].is_boolean() {
        return Err(fail("timeout and oom must be booleans".into()));
    }
    if !(v["peak_memory_bytes"].is_null() || v["peak_memory_bytes"].as_u64().is_some()) {
        return Err(fail("peak_memory_bytes must be null or a number".into()));
    }
    Ok(())
}

/// `--json-report`: a normal exit, a signal death, a timeout and (when memory is enforced for
/// this caller) an OOM kill.
fn json_report_fields(env: &Env) -> Result<(), Failed> {
    let ws = env.workspace()?;
    let memory_how = enforcement_of(env, &["--memory", "64M"], "memory")?;
    let memory_enforced = memory_how.starts_with("cgroup");

    // Normal exit.
    let (v, code, wall) = json_run(env, &ws, &[], &["sh", "-c", "exit 3"])?;
    check_report(&v, code, wall, "exit 3")?;
    if code != 3 || v["exit_code"] != 3 || !v["signal"].is_null() {
        return Err(format!("exit 3: code {code}, report {v:#}").into());
    }
    if v["timeout"] != false || v["oom"] != false {
        return Err(format!("exit 3: timeout/oom set: {v:#}").into());
    }
    if memory_enforced != v["peak_memory_bytes"].as_u64().is_some_and(|b| b > 0) {
        return Err(format!(
            "exit 3: peak_memory_bytes {} but memory is enforced by: {memory_how}",
            v["peak_memory_bytes"]
        )
        .into());
    }

    // Killed by a signal (not the OOM killer).
    let (v, code, wall) = json_run(env, &ws, &[], &["sh", "-c", "kill -KILL $$"])?;
    check_report(&v, code, wall, "SIGKILL")?;
    if code != 137 || v["signal"] != 9 || v["oom"] != false || v["timeout"] != false {
        return Err(format!("SIGKILL: code {code}, report {v:#}").into());
    }

    // Timeout: `sleep` dies of the SIGTERM the init forwards.
    let (v, code, wall) = json_run(env, &ws, &["--timeout", "0.5"], &["sleep", "30"])?;
    check_report(&v, code, wall, "timeout")?;
    let w = v["wall_seconds"].as_f64().unwrap_or(0.0);
    if code != 124 || v["timeout"] != true || v["oom"] != false || v["signal"] != 15 {
        return Err(format!("timeout: code {code}, report {v:#}").into());
    }
    if !(0.5..5.0).contains(&w) {
        return Err(format!("timeout: wall_seconds {w} for --timeout 0.5").into());
    }

    // OOM.
    if !memory_enforced {
        eprintln!(
            "  [{}] skip the OOM report: no memory cgroup for this caller (memory: {memory_how})",
            env.who.name()
        );
        return Ok(());
    }
    let (v, code, wall) = json_run(
        env,
        &ws,
        &["--memory", "64M"],
        &[
            "python3",
            "-c",
            "b = [b'x' * (16 << 20) for _ in range(32)]",
        ],
    )?;
    check_report(&v, code, wall, "oom")?;
    let peak = v["peak_memory_bytes"].as_u64().unwrap_or(0);
    if code != 137 || v["oom"] != true || v["signal"] != 9 || v["timeout"] != false {
        return Err(format!("oom: code {code}, report {v:#}").into());
    }
    if !((48 << 20)..=(64 << 20) + (1 << 20)).contains(&peak) {
        return Err(format!("oom: peak_memory_bytes {peak} for a 64M limit").into());
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Command-line fuzzing

/// xorshift64*: a tiny deterministic PRNG (no dependency; the seed makes failures replayable).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[self.below(v.len())]
    }
}

/// A random argument: mostly from the parsers' alphabet, sometimes arbitrary bytes (invalid
/// UTF-8 included; never NUL, which argv cannot carry).
fn random_arg(rng: &mut Rng) -> OsString {
    const BITS: &[&str] = &[
        "0",
        "1",
        "7",
        "9",
        ".",
        "-",
        "--",
        "=",
        "k",
        "M",
        "G",
        "T",
        "P",
        "b",
        "ms",
        "s",
        "m",
        "h",
        "d",
        "e",
        "max",
        "none",
        "inf",
        "nan",
        " ",
        "x",
        "é",
        "٣",
        "１",
        "\u{200b}",
        "18446744073709551616",
        "4194305",
        "/",
        "~",
        "$HOME",
        "%s",
        "\\",
        "\n",
    ];
    match rng.below(10) {
        0 => {
            let n = rng.below(8);
            let bytes: Vec<u8> = (0..n).map(|_| 1 + rng.below(255) as u8).collect();
            OsString::from_vec(bytes)
        }
        1 => OsString::new(),
        _ => {
            let n = 1 + rng.below(5);
            let mut s = String::new();
            for _ in 0..n {
                s.push_str(BITS[rng.below(BITS.len())]);
            }
            OsString::from(s)
        }
    }
}

/// A random argv for `agentcage`: mostly `run` with random flags and values, a command from a
/// harmless pool, sometimes garbage anywhere.
fn random_argv(rng: &mut Rng, scratch: &str, report: &str) -> Vec<OsString> {
    // Each flag with values it accepts (a random value is tried a third of the time).
    const FLAGS: &[(&str, &[&str])] = &[
        ("--pids", &["64", "1024", "max"]),
        ("--memory", &["512M", "1G", "max", "64M"]),
        ("--cpus", &["0.5", "1.5", "max"]),
        ("--timeout", &["0.05", "100ms", "2s", "0", "none"]),
        ("--nofile", &["64", "4096", "max"]),
        ("--fsize", &["1M", "1G", "max"]),
        ("-p", &["full", "none", "ns-only", "landlock", "ns_only"]),
        ("--profile", &["full", "landlock"]),
        ("-w", &[]),
        ("--workspace", &[]),
        ("--ro", &["/usr", "/etc"]),
        ("--rw", &[]),
        ("-e", &["A=b", "K=v=w"]),
        ("--env", &["PATH=/bin"]),
        ("--pass-env", &["HOME", "NOPE"]),
        ("--uid", &["0", "1000"]),
        ("--gid", &["0", "1000"]),
        ("--host-uid", &["65534"]),
        ("--host-gid", &["65534"]),
        ("--keep-fd", &["3", "9"]),
        ("--net", &["none", "host"]),
        ("--without", &["limits", "seccomp", "landlock"]),
        ("--json-report", &[]),
    ];
    const SWITCHES: &[&str] = &[
        "--best-effort",
        "--no-pty",
        "-v",
        "-q",
        "--seccomp-spec-mitigation",
        "--bogus",
        "-Z",
        "--",
        "--help",
    ];
    const CMDS: &[&[&str]] = &[
        &["true"],
        &["false"],
        &["sh", "-c", "exit 3"],
        &["/nonexistent/agentcage-fuzz"],
        &["/etc/hostname"],
        &["sleep", "0.2"],
        &[""],
    ];
    let mut v: Vec<OsString> = Vec::new();
    match rng.below(20) {
        0 => v.push(random_arg(rng)),
        1 => {}
        _ => v.push("run".into()),
    }
    for _ in 0..rng.below(5) {
        match rng.below(12) {
            0..=8 => {
                let &(f, good) = rng.pick(FLAGS);
                let val: OsString = match (f, rng.below(3)) {
                    ("-w" | "--workspace" | "--rw", 0 | 1) => scratch.into(),
                    ("--json-report", _) => report.into(),
                    (_, 0 | 1) if !good.is_empty() => rng.pick(good).into(),
                    _ => random_arg(rng),
                };
                if rng.below(4) == 0 && f.starts_with("--") {
                    let mut s = OsString::from(format!("{f}="));
                    s.push(&val);
                    v.push(s);
                } else {
                    v.push(f.into());
                    v.push(val);
                }
            }
            9 | 10 => v.push(rng.pick(SWITCHES).into()),
            _ => v.push(random_arg(rng)),
        }
    }
    if rng.below(8) != 0 {
        v.push("--".into());
        v.extend(rng.pick(CMDS).iter().map(OsString::from));
    }
    v
}

/// ~300 random argvs: no panic (exit 101, "panicked"), no death by signal, rejections exit 2
/// with exactly one `error:` line, first (after warnings).
fn fuzz_argv(env: &Env) -> Result<(), Failed> {
    const N: usize = 300;
    let ws = env.workspace()?;
    let report = TempDir::new("fuzz")?;
    env.chown_to_sandbox(&report.0)?;
    let report_file = report.0.join("r.json");
    let report_s = report_file
        .to_str()
        .expect("temp paths are UTF-8")
        .to_owned();
    let mut rng = Rng(0x5EED_0000_0000_0006 ^ u64::from(env.who == Who::Root));
    let mut codes = std::collections::BTreeMap::<i32, usize>::new();
    let mut setup_errors = BTreeSet::new();
    let start = Instant::now();
    for i in 0..N {
        let argv = random_argv(&mut rng, ws.s(), &report_s);
        let mut c = command(env, &[]);
        // The default workspace is the current directory ("/" is refused).
        c.args(&argv).current_dir(ws.path());
        let (out, st, _) = output_deadline(c, Duration::from_secs(20), &format!("argv {argv:?}"))?;
        *codes.entry(out.code).or_default() += 1;
        let fail = |m: &str| -> Failed {
            format!(
                "case {i}, argv {argv:?}: {m} (exit {})\nstdout: {}\nstderr: {}",
                out.code, out.stdout, out.stderr
            )
            .into()
        };
        if st.signal().is_some() {
            return Err(fail("the binary died of a signal"));
        }
        if out.code == 101 || out.stderr.contains("panicked") {
            return Err(fail("panic"));
        }
        let error_lines: Vec<&str> = out
            .stderr
            .lines()
            .filter(|l| l.starts_with("error:") || l.starts_with("agentcage: error:"))
            .collect();
        match out.code {
            // No subcommand at all: clap prints the usage instead of an error line.
            2 if argv.is_empty() => {
                if !out.stderr.contains("Usage: agentcage <COMMAND>") {
                    return Err(fail("an empty command line must print the usage"));
                }
            }
            2 => {
                // Warnings about the flags (`--net host`) may come first.
                let first = out
                    .stderr
                    .lines()
                    .find(|l| !l.trim().is_empty() && !l.starts_with("agentcage: warning:"));
                if error_lines.len() != 1 || first != Some(error_lines[0]) {
                    return Err(fail(
                        "a rejection must print exactly one error: line, first",
                    ));
                }
            }
            // The command's own status, help/version, timeout, setup errors, exec errors.
            0 | 1 | 3 | 124 | 125 | 126 | 127 => {
                if out.code >= 125 && error_lines.is_empty() {
                    return Err(fail("a setup or exec failure must print an error: line"));
                }
                // The child's own report must not be masked by the parent's next step failing.
                if out.code == 125 && out.stderr.contains("release the sandbox init") {
                    return Err(fail("the child's setup error was masked"));
                }
                if out.code == 125 {
                    setup_errors.insert(format!("{} <- {argv:?}", error_lines[0]));
                }
            }
            _ => return Err(fail("unexpected exit code")),
        }
    }
    eprintln!(
        "  [{}] {N} random argvs in {:.1} s; exit codes {codes:?}",
        env.who.name(),
        start.elapsed().as_secs_f64()
    );
    for e in &setup_errors {
        eprintln!("  [{}] setup error seen (125): {e}", env.who.name());
    }
    if codes.get(&2).copied().unwrap_or(0) < N / 10 || codes.get(&0).copied().unwrap_or(0) < 5 {
        return Err(format!(
            "the generator must produce both rejections and valid runs: {codes:?}"
        )
        .into());
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------

/// Why `limit` makes no sense to test for `who` here (memory without a cgroup).
fn limit_skip(who: Who, flags: &[&str], limit: &str) -> Option<String> {
    let env = Env::new(who).ok()?;
    match enforcement_of(&env, flags, limit) {
        Ok(how) if how.starts_with("not enforced") => Some(format!("{limit} {how}")),
        // Enforced, or the binary failed: then the trial runs and reports that failure.
        _ => None,
    }
}

fn main() {
    let mut args = Arguments::from_args();
    // The trials compare host-wide state before and after: one at a time by default.
    if args.test_threads.is_none() {
        args.test_threads = Some(1);
    }
    let tests: &[(&str, TestFn)] = &[
        ("fork_bomb_contained", fork_bomb_contained),
        ("memory_hog_contained", memory_hog_contained),
        ("concurrent_200", concurrent_200),
        ("sequential_1000", sequential_1000),
        ("launcher_sigkill_no_leak", launcher_sigkill_no_leak),
        ("chaos_sigkill", chaos_sigkill),
        ("timeout_kills_term_ignorer", timeout_kills_term_ignorer),
        ("json_report_fields", json_report_fields),
        ("fuzz_argv", fuzz_argv),
    ];
    let mut trials = Vec::new();
    for who in [Who::Root, Who::Nobody] {
        let base_skip = common::skip_reason(who);
        for &(name, f) in tests {
            let skip = base_skip.clone().or_else(|| {
                (name == "memory_hog_contained")
                    .then(|| limit_skip(who, &["--memory", "256M"], "memory"))
                    .flatten()
            });
            trials.push(common::trial(who, name, f, skip));
        }
    }
    common::run(&args, trials)
}
