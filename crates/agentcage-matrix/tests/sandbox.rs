//! Sandbox tier: runs the real `agentcage matrix` (as uid 65534, and as root when the tests run
//! as root) and checks issue 3's list against its JSON.
//!
//! The binary is `$AGENTCAGE_BIN`, else `$CARGO_TARGET_DIR/{debug,release}/agentcage`, else
//! `target/{debug,release}/agentcage` of the workspace. Missing binary or user namespaces: the
//! trials are ignored with a printed reason, unless `AGENTCAGE_TEST_EXPECT` lists `userns`, in
//! which case they fail (build the binary first: `cargo build -p agentcage-cli`).
//!
//! Each matrix is run once and shared by the trials that read it; matrices never run in
//! parallel with each other, so the timing check measures one matrix on the whole machine.

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use libtest_mimic::{Arguments, Failed, Trial};
use serde_json::Value;

/// The unprivileged uid used when the tests run as root.
const NOBODY: u32 = 65534;

/// Issue 3: the whole matrix with attribution finishes in under 30 s on a 2-core machine.
const MATRIX_BUDGET: Duration = Duration::from_secs(30);

/// Beyond this the matrix counts as hung whatever the load.
const MATRIX_HANG_GUARD: Duration = Duration::from_secs(300);

/// The 1-minute load average (0 when unreadable: the budget then applies).
fn loadavg() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0)
}

fn is_root() -> bool {
    // SAFETY: getuid has no preconditions.
    unsafe { libc::getuid() == 0 }
}

fn expected(feature: &str) -> bool {
    std::env::var("AGENTCAGE_TEST_EXPECT").is_ok_and(|v| v.split(',').any(|f| f.trim() == feature))
}

/// The agentcage binary, or why there is none.
fn find_binary() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("AGENTCAGE_BIN") {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(format!("AGENTCAGE_BIN={} does not exist", p.display()))
        };
    }
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut candidates = Vec::new();
    // First the binary of the same build as this test (target/<profile>/deps/sandbox-* ->
    // target/<profile>/agentcage): `cargo test --workspace` builds both.
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent()?.parent().map(Path::to_path_buf))
    {
        candidates.push(dir.join("agentcage"));
    }
    if let Some(t) = std::env::var_os("CARGO_TARGET_DIR") {
        let t = manifest.join(t);
        candidates.extend([t.join("debug/agentcage"), t.join("release/agentcage")]);
    }
    let ws = manifest.join("../../target");
    candidates.extend([ws.join("debug/agentcage"), ws.join("release/agentcage")]);
    candidates.into_iter().find(|p| p.is_file()).ok_or_else(|| {
        "no agentcage binary: build it first (`cargo build -p agentcage-cli`) or set AGENTCAGE_BIN".to_string()
    })
}

/// A private copy of the binary that uid 65534 can execute, in a dir removed on drop.
struct Copy {
    dir: PathBuf,
    bin: PathBuf,
}

impl Copy {
    fn new(bin: &Path) -> Result<Copy, String> {
        let dir =
            std::env::temp_dir().join(format!("agentcage-matrix-test.{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
        let copy = Copy {
            bin: dir.join("agentcage"),
            dir,
        };
        std::fs::set_permissions(&copy.dir, std::fs::Permissions::from_mode(0o755))
            .map_err(|e| e.to_string())?;
        std::fs::copy(bin, &copy.bin).map_err(|e| format!("copy {}: {e}", bin.display()))?;
        std::fs::set_permissions(&copy.bin, std::fs::Permissions::from_mode(0o755))
            .map_err(|e| e.to_string())?;
        Ok(copy)
    }
}

impl Drop for Copy {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Whether `uid` can create a user namespace here: tried for real in a child, as bubblewrap's
/// and the launcher's own checks do.
fn userns_available(as_uid: Option<u32>) -> Result<(), String> {
    let mut cmd = Command::new("/bin/sh");
    cmd.args(["-c", "exit 0"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if let Some(uid) = as_uid {
        cmd.uid(uid).gid(uid);
    }
    // SAFETY: unshare is async-signal-safe and the hook does not allocate.
    unsafe {
        cmd.pre_exec(|| {
            if libc::unshare(libc::CLONE_NEWUSER) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    match cmd.status() {
        Ok(s) if s.success() => Ok(()),
        Ok(s) => Err(format!("/bin/sh in a new user namespace exited with {s}")),
        Err(e) => Err(format!(
            "unshare(CLONE_NEWUSER) as uid {}: {e}",
            as_uid.map_or("self".into(), |u| u.to_string())
        )),
    }
}

/// One matrix run: its JSON and how long it took.
struct Run {
    json: Value,
    elapsed: Duration,
}

static SERIAL: Mutex<()> = Mutex::new(());
static UNPRIV: OnceLock<Result<Run, String>> = OnceLock::new();
static ROOT: OnceLock<Result<Run, String>> = OnceLock::new();
static VIA_SESSION: OnceLock<Result<Run, String>> = OnceLock::new();

fn run_matrix(bin: &Path, as_nobody: bool) -> Result<Run, String> {
    run_matrix_with(bin, as_nobody, &[])
}

fn run_matrix_with(bin: &Path, as_nobody: bool, extra: &[&str]) -> Result<Run, String> {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let copy = Copy::new(bin)?;
    let mut cmd = Command::new(&copy.bin);
    cmd.args(["matrix", "--format", "json", "-v"])
        .args(extra)
        .current_dir(&copy.dir)
        .stdin(Stdio::null());
    if as_nobody {
        cmd.uid(NOBODY).gid(NOBODY).env("HOME", &copy.dir);
    }
    let started = Instant::now();
    let out = cmd
        .output()
        .map_err(|e| format!("run {} matrix: {e}", copy.bin.display()))?;
    let elapsed = started.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!(
        "--- agentcage matrix (as {}) stderr ---\n{stderr}",
        if as_nobody { "uid 65534" } else { "root" }
    );
    if !out.status.success() {
        return Err(format!(
            "agentcage matrix exited with {}: {stderr}",
            out.status
        ));
    }
    let json: Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| format!("matrix JSON: {e}: {}", String::from_utf8_lossy(&out.stdout)))?;
    Ok(Run { json, elapsed })
}

fn matrix(bin: &Path, as_nobody: bool) -> Result<&'static Run, Failed> {
    let cell = if as_nobody { &UNPRIV } else { &ROOT };
    cell.get_or_init(|| run_matrix(bin, as_nobody))
        .as_ref()
        .map_err(|e| Failed::from(e.as_str()))
}

fn op<'a>(m: &'a Value, id: &str) -> Result<&'a Value, Failed> {
    m["ops"]
        .as_array()
        .and_then(|ops| ops.iter().find(|o| o["id"] == id))
        .ok_or_else(|| format!("op {id} missing from the matrix").into())
}

fn cell<'a>(m: &'a Value, id: &str, profile: &str) -> Result<&'a Value, Failed> {
    let c = &op(m, id)?["results"][profile];
    if c.is_null() {
        return Err(format!("op {id} has no result under {profile}").into());
    }
    Ok(c)
}

fn result(c: &Value) -> &str {
    c["result"].as_str().unwrap_or("?")
}

fn blockers(c: &Value) -> Vec<&str> {
    c["blocker"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

fn expect_blocked_by(m: &Value, id: &str, profile: &str, layer: &str) -> Result<(), Failed> {
    let c = cell(m, id, profile)?;
    if result(c) != "BLOCKED" || !blockers(c).contains(&layer) {
        return Err(format!("{id} under {profile}: expected BLOCKED by {layer}, got {c}").into());
    }
    Ok(())
}

fn non_info_ops(m: &Value) -> Vec<&Value> {
    m["ops"]
        .as_array()
        .map(|a| a.iter().filter(|o| o["category"] != "info").collect())
        .unwrap_or_default()
}

fn ids_with(m: &Value, profile: &str, pred: impl Fn(&str) -> bool) -> BTreeSet<String> {
    non_info_ops(m)
        .into_iter()
        .filter(|o| pred(result(&o["results"][profile])))
        .filter_map(|o| o["id"].as_str().map(str::to_string))
        .collect()
}

/// Issue 3's per-matrix checks.
fn check_matrix(run: &Run) -> Result<(), Failed> {
    let m = &run.json;
    let mut errors = Vec::new();
    let mut check = |r: Result<(), Failed>| {
        if let Err(e) = r {
            errors.push(e.message().map(str::to_string).unwrap_or_default());
        }
    };

    // Namespaces alone are not a sandbox: the inside root can mount and open raw sockets.
    for id in ["kernel.mount.tmpfs", "net.socket.raw_icmp"] {
        check(cell(m, id, "ns-only").and_then(|c| {
            if result(c) == "ALLOWED" {
                Ok(())
            } else {
                Err(format!("{id} under ns-only: expected ALLOWED, got {c}").into())
            }
        }));
    }

    // Each namespaced profile blocks a superset of the previous one's (an op may turn SKIPPED
    // when a stronger profile also blocks its precondition).
    for pair in [["ns-only", "landlock"], ["landlock", "full"]] {
        let blocked = ids_with(m, pair[0], |r| r == "BLOCKED");
        let stronger = ids_with(m, pair[1], |r| r == "BLOCKED" || r == "SKIPPED");
        let lost: Vec<_> = blocked.difference(&stronger).collect();
        if !lost.is_empty() {
            check(Err(format!(
                "blocked under {} but allowed under {}: {lost:?}",
                pair[0], pair[1]
            )
            .into()));
        }
    }

    // Under full every op outside `info` is BLOCKED or SKIPPED (with a reason).
    for o in non_info_ops(m) {
        let c = &o["results"]["full"];
        let r = result(c);
        let reason = c["detail"].as_str().unwrap_or("");
        if !(r == "BLOCKED" || (r == "SKIPPED" && !reason.is_empty())) {
            check(Err(format!("{} under full: {c}", o["id"]).into()));
        }
    }

    // Attribution by experiment.
    check(expect_blocked_by(
        m,
        "fs.write.root",
        "landlock",
        "landlock",
    ));
    check(expect_blocked_by(m, "fs.write.root", "full", "landlock"));
    check(expect_blocked_by(m, "net.socket.raw_icmp", "full", "caps"));
    check(expect_blocked_by(
        m,
        "proc.ptrace.traceme",
        "full",
        "seccomp",
    ));
    for p in ["ns-only", "landlock", "full"] {
        check(expect_blocked_by(
            m,
            "net.connect.host_loopback",
            p,
            "net-ns",
        ));
        // /proc of an outside pid: the host's pid 2 (kthreadd). Not the sentinel's
        // /proc/PID/environ: a user namespace alone already denies that (commoncap refuses
        // ptrace-mode access across user namespaces), so it is redundant, as measured.
        check(expect_blocked_by(m, "proc.read.pid2_status", p, "pid-ns"));
        // The matrix gives every run a pty as the caller's terminal: the hygiene layer (new
        // session + the launcher's own pty relay) keeps it out of reach.
        check(expect_blocked_by(m, "hygiene.tty.tiocsti", p, "hygiene"));
        check(expect_blocked_by(m, "hygiene.tty.open", p, "hygiene"));
        check(expect_blocked_by(m, "hygiene.tty.stdio", p, "hygiene"));
    }

    // Issue #15's hardening classes: what the agent can do to the workspace's read-only
    // protected paths is stopped by the mount namespace (the read-only binds and their pinned
    // ancestors: EBUSY, EROFS, EXDEV), and works without a sandbox (the bait is real).
    for id in [
        "fs.symlink.protected_swap",
        "fs.rename.over_protected_file",
        "fs.link.outside_file",
        "fs.reopen.proc_fd_rw",
        "fs.read.proc_self_root",
    ] {
        check(cell(m, id, "none").and_then(|c| {
            if result(c) == "ALLOWED" {
                Ok(())
            } else {
                Err(format!("{id} under none: expected ALLOWED (the control), got {c}").into())
            }
        }));
        for p in ["ns-only", "landlock", "full"] {
            check(expect_blocked_by(m, id, p, "mount-ns"));
        }
    }
    // The sandbox's own IPC sysctls: the kernel lets their owner write them; the read-only
    // /proc/sys of the mount namespace (over the pid namespace's fresh /proc) stops it.
    check(expect_blocked_by(
        m,
        "fs.open.proc_sys_own_ipc",
        "ns-only",
        "mount-ns",
    ));
    for p in ["ns-only", "landlock", "full"] {
        check(expect_blocked_by(m, "fs.read.sys_firmware", p, "mount-ns"));
    }

    // A BLOCKED that nothing explains means the op is broken.
    for o in non_info_ops(m) {
        for p in ["none", "ns-only", "landlock", "full"] {
            let c = &o["results"][p];
            if result(c) == "BLOCKED" && blockers(c).is_empty() {
                check(Err(format!(
                    "{} under {p}: BLOCKED but no layer or host explains it: {c}",
                    o["id"]
                )
                .into()));
            }
        }
    }

    if run.elapsed > MATRIX_BUDGET {
        // A wall-clock budget only means something on a machine that is not busy with other
        // work (the CI machine runs other test binaries beside this one): over budget on a
        // loaded machine is reported, not failed, up to a hang guard. The speed target itself
        // lives in `agentcage bench`.
        let load = loadavg();
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        let msg = format!(
            "matrix took {:.1} s (budget {} s), load average {load:.1} on {cpus} CPUs",
            run.elapsed.as_secs_f64(),
            MATRIX_BUDGET.as_secs()
        );
        if load <= cpus || run.elapsed > MATRIX_HANG_GUARD {
            check(Err(msg.into()));
        } else {
            eprintln!("{msg}: over budget on a busy machine, not counted");
        }
    }
    eprintln!("matrix finished in {:.1} s", run.elapsed.as_secs_f64());

    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("\n").into())
    }
}

/// Every op blocked by a layer of ours is ALLOWED under `none` for root or uid 65534: the
/// control that proves "blocked" is not just "broken".
fn check_controls(root: &Run, nobody: &Run) -> Result<(), Failed> {
    let mut errors = Vec::new();
    for o in non_info_ops(&root.json) {
        let id = o["id"].as_str().unwrap_or("?");
        let allowed_somewhere = [&root.json, &nobody.json].iter().any(|m| {
            cell(m, id, "none")
                .map(|c| result(c) == "ALLOWED")
                .unwrap_or(false)
        });
        for (who, m) in [("root", &root.json), ("uid 65534", &nobody.json)] {
            for p in ["ns-only", "landlock", "full"] {
                let Ok(c) = cell(m, id, p) else { continue };
                let host_only = blockers(c) == ["host"];
                if result(c) == "BLOCKED" && !host_only && !allowed_somewhere {
                    errors.push(format!(
                        "{id} under {p} ({who}): blocked by {:?} but never ALLOWED under none",
                        blockers(c)
                    ));
                }
            }
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("\n").into())
    }
}

/// `--via-session` (issue #13): every op's result under every profile is the run's.
fn check_via_session(bin: &Path) -> Result<(), Failed> {
    let runs = matrix(bin, is_root())?;
    let via = VIA_SESSION
        .get_or_init(|| run_matrix_with(bin, is_root(), &["--via-session"]))
        .as_ref()
        .map_err(|e| Failed::from(e.as_str()))?;
    let mut errors = Vec::new();
    for o in non_info_ops(&runs.json) {
        let id = o["id"].as_str().unwrap_or("?");
        for p in ["none", "ns-only", "landlock", "full"] {
            let a = result(cell(&runs.json, id, p)?);
            let b = result(cell(&via.json, id, p)?);
            if a != b {
                errors.push(format!("{id} under {p}: run {a}, via a session {b}"));
            }
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("\n").into())
    }
}

fn main() {
    let args = Arguments::from_args();
    let unprivileged_uid = if is_root() { Some(NOBODY) } else { None };
    let missing = find_binary().and_then(|bin| userns_available(unprivileged_uid).map(|()| bin));
    let must_run = expected("userns");

    let mut trials = Vec::new();
    let mut add = |name: &str, needs_root: bool, body: fn(&Path) -> Result<(), Failed>| {
        let gate = match (&missing, needs_root && !is_root()) {
            (_, true) => Err("needs uid 0".to_string()),
            (Err(why), _) => Err(why.clone()),
            (Ok(bin), _) => Ok(bin.clone()),
        };
        match gate {
            Ok(bin) => trials.push(Trial::test(name, move || body(&bin))),
            Err(why) if must_run && !why.starts_with("needs uid") => {
                let name = name.to_string();
                trials.push(Trial::test(name, move || {
                    Err(format!("AGENTCAGE_TEST_EXPECT lists userns: {why}").into())
                }));
            }
            Err(why) => {
                eprintln!("skip {name}: {why}");
                trials.push(Trial::test(name, || Ok(())).with_ignored_flag(true));
            }
        }
    };
    add("matrix::unprivileged", false, |bin| {
        check_matrix(matrix(bin, is_root())?)
    });
    add("root::matrix", true, |bin| {
        check_matrix(matrix(bin, false)?)
    });
    add("matrix::via_session_same_results", false, check_via_session);
    add("root::controls_across_uids", true, |bin| {
        check_controls(matrix(bin, false)?, matrix(bin, true)?)
    });
    libtest_mimic::run(&args, trials).exit();
}
