//! Shared helpers of the sandbox-tier tests: who runs the binary, scratch dirs the sandbox
//! user can use, skip reasons, bounded polling.

#![allow(dead_code)]

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use libtest_mimic::{Arguments, Failed, Trial};

/// Who runs the binary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Who {
    /// uid 0 (only when the test runs as root).
    Root,
    /// uid/gid 65534: from root via setuid in the spawned child, else the current user.
    Nobody,
}

impl Who {
    pub fn name(self) -> &'static str {
        match self {
            Who::Root => "root",
            Who::Nobody => "nobody",
        }
    }
}

/// Whether the test process runs as root.
pub fn is_root() -> bool {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Whether `feature` is listed in AGENTCAGE_TEST_EXPECT (then missing means failure).
pub fn expected(feature: &str) -> bool {
    std::env::var("AGENTCAGE_TEST_EXPECT").is_ok_and(|v| v.split(',').any(|f| f.trim() == feature))
}

/// The binary, copied once into a directory every uid can read and execute (the build
/// tree may sit under a directory uid 65534 cannot traverse).
pub fn binary() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let src = PathBuf::from(env!("CARGO_BIN_EXE_agentcage"));
        let dir = std::env::temp_dir().join(format!("agentcage-test-bin-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755));
        let dst = dir.join("agentcage");
        std::fs::copy(&src, &dst).expect("copy the agentcage binary for the tests");
        let _ = std::fs::set_permissions(&dst, std::fs::Permissions::from_mode(0o755));
        dst
    })
}

/// Every test of `tests` as root and as nobody; `true` in the third place: root only.
pub fn trials_by_user(tests: &[(&str, TestFn, bool)]) -> Vec<Trial> {
    let mut trials = Vec::new();
    for who in [Who::Root, Who::Nobody] {
        for &(name, f, root_only) in tests {
            if !root_only || who == Who::Root {
                trials.push(trial(who, name, f, skip_reason(who)));
            }
        }
    }
    trials
}

/// Every test of `tests` as root and as nobody.
pub fn trials_for_both(tests: &[(&str, TestFn)]) -> Vec<Trial> {
    let all: Vec<(&str, TestFn, bool)> = tests.iter().map(|&(n, f)| (n, f, false)).collect();
    trials_by_user(&all)
}

/// Waits for `child` up to `limit`; on expiry kills it and fails.
pub fn wait_deadline(
    child: &mut Child,
    limit: Duration,
    what: &str,
) -> Result<std::process::ExitStatus, Failed> {
    let start = Instant::now();
    loop {
        if let Some(st) = child.try_wait().map_err(err)? {
            return Ok(st);
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("{what}: still running after {limit:?} (killed)").into());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Shell convention: the exit code, or 128+N for signal N.
pub fn code_of(st: std::process::ExitStatus) -> i32 {
    st.code()
        .unwrap_or_else(|| 128 + std::os::unix::process::ExitStatusExt::signal(&st).unwrap_or(0))
}

/// A test failure from any displayable error.
pub fn err(e: impl std::fmt::Display) -> Failed {
    e.to_string().into()
}

/// Removes the binary's copy (call once, after every trial ran).
pub fn cleanup() {
    let dir = std::env::temp_dir().join(format!("agentcage-test-bin-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(dir);
}

/// Why trials of `who` cannot run here, if they cannot.
pub fn skip_reason(who: Who) -> Option<String> {
    if who == Who::Root && !is_root() {
        return Some("needs root".into());
    }
    static USERNS: OnceLock<Option<String>> = OnceLock::new();
    let userns = USERNS.get_or_init(|| {
        // Ask the binary itself: the cheapest faithful check is a run of `true` in ns-only.
        let mut c = Command::new(binary());
        c.args(["run", "-p", "ns-only", "-w", "/tmp", "--", "true"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if is_root() {
            c.uid(65534).gid(65534);
        }
        match c.output() {
            Ok(o) if o.status.success() => None,
            Ok(o) => Some(format!(
                "unprivileged user namespaces unavailable: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            )),
            Err(e) => Some(format!("cannot run the binary: {e}")),
        }
    });
    match userns {
        Some(why) if expected("userns") => {
            panic!("AGENTCAGE_TEST_EXPECT lists userns but: {why}")
        }
        other => other.clone(),
    }
}

/// A scratch directory removed on drop.
pub struct Scratch(PathBuf);

impl Scratch {
    pub fn path(&self) -> &Path {
        &self.0
    }
    pub fn s(&self) -> &str {
        self.0.to_str().expect("temp paths are UTF-8")
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn scratch(tag: &str) -> Result<Scratch, Failed> {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let p = std::env::temp_dir().join(format!("agentcage-t-{tag}-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&p).map_err(|e| format!("mkdir {}: {e}", p.display()))?;
    Ok(Scratch(p))
}

/// Output of a run.
pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<std::process::Output> for Out {
    fn from(o: std::process::Output) -> Out {
        Out::from_bytes(code_of(o.status), &o.stdout, &o.stderr)
    }
}

impl Out {
    /// From an exit code (shell convention) and the raw output.
    pub fn from_bytes(code: i32, stdout: &[u8], stderr: &[u8]) -> Out {
        Out {
            code,
            stdout: String::from_utf8_lossy(stdout).into_owned(),
            stderr: String::from_utf8_lossy(stderr).into_owned(),
        }
    }

    pub fn expect_code(&self, want: i32, what: &str) -> Result<(), Failed> {
        if self.code == want {
            Ok(())
        } else {
            Err(format!(
                "{what}: exit {} (want {want})\nstdout: {}\nstderr: {}",
                self.code, self.stdout, self.stderr
            )
            .into())
        }
    }
}

/// The test environment of one trial.
pub struct Env {
    pub who: Who,
}

impl Env {
    pub fn new(who: Who) -> Result<Env, Failed> {
        Ok(Env { who })
    }

    /// Host uid the sandbox user has (65534 for both: root maps the inside to 65534).
    fn sandbox_host_uid(&self) -> u32 {
        if is_root() {
            65534
        } else {
            // SAFETY: geteuid cannot fail.
            unsafe { libc::geteuid() }
        }
    }

    /// A workspace the sandbox user owns.
    pub fn workspace(&self) -> Result<Scratch, Failed> {
        let s = scratch("ws")?;
        self.chown_to_sandbox(s.path())?;
        Ok(s)
    }

    /// A directory outside every workspace, readable by the sandbox user (so only the
    /// sandbox can hide it).
    pub fn secret_dir(&self) -> Result<Scratch, Failed> {
        let s = scratch("secret")?;
        std::fs::set_permissions(s.path(), std::fs::Permissions::from_mode(0o755))
            .map_err(|e| e.to_string())?;
        self.chown_to_sandbox(s.path())?;
        Ok(s)
    }

    /// A directory for policy files that the sandbox user cannot write (owned by whoever
    /// runs the tests, mode 0755): a policy file there passes the launcher's trust check.
    pub fn policy_dir(&self) -> Result<Scratch, Failed> {
        let s = scratch("pol")?;
        std::fs::set_permissions(s.path(), std::fs::Permissions::from_mode(0o755))
            .map_err(|e| e.to_string())?;
        Ok(s)
    }

    /// [`Env::chown_to_sandbox`] of `p` and everything below it (symlinks not followed).
    pub fn chown_tree(&self, p: &Path) -> Result<(), Failed> {
        self.chown_to_sandbox(p)?;
        if p.is_dir() && !p.is_symlink() {
            for e in std::fs::read_dir(p).map_err(err)? {
                self.chown_tree(&e.map_err(err)?.path())?;
            }
        }
        Ok(())
    }

    pub fn chown_to_sandbox(&self, p: &Path) -> Result<(), Failed> {
        if is_root() {
            let uid = self.sandbox_host_uid();
            std::os::unix::fs::chown(p, Some(uid), Some(uid))
                .map_err(|e| format!("chown {}: {e}", p.display()))?;
        }
        Ok(())
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(binary());
        // As root, `-p none` is host root without isolation and needs the CLI's explicit
        // confirmation (issue #10); the `none` control runs of the tests give it here. The
        // refusal itself is tested through `command_as_is`.
        let none = args.windows(2).any(|w| w == ["-p", "none"]);
        if self.who == Who::Root && args.first() == Some(&"run") && none {
            c.arg("run")
                .arg("--allow-unsandboxed-root")
                .args(&args[1..]);
        } else {
            c.args(args);
        }
        c.current_dir("/");
        if self.who == Who::Nobody && is_root() {
            c.uid(65534).gid(65534);
        }
        c
    }

    /// The command with exactly `args` (no confirmation flag added).
    pub fn command_as_is(&self, args: &[&str]) -> Command {
        let mut c = Command::new(binary());
        c.args(args).current_dir("/");
        if self.who == Who::Nobody && is_root() {
            c.uid(65534).gid(65534);
        }
        c
    }

    pub fn run(&self, args: &[&str]) -> Result<Out, Failed> {
        self.run_with(args, |_| {})
    }

    pub fn run_with(&self, args: &[&str], f: impl FnOnce(&mut Command)) -> Result<Out, Failed> {
        let mut c = self.command(args);
        c.stdin(Stdio::null());
        f(&mut c);
        let o = c
            .output()
            .map_err(|e| format!("spawn {}: {e}", binary().display()))?;
        Ok(Out::from(o))
    }

    pub fn spawn(&self, args: &[&str]) -> Result<Child, Failed> {
        let mut c = self.command(args);
        c.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        c.spawn().map_err(|e| format!("spawn: {e}").into())
    }
}

/// Runs `c` with stdin on /dev/null and its output captured; still running after `limit`,
/// it is killed and the test fails (a hang is a failure, not a stuck test run).
pub fn output_within(mut c: Command, limit: Duration, what: &str) -> Result<Out, Failed> {
    c.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = c.spawn().map_err(err)?;
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(o) => Ok(Out::from(o.map_err(err)?)),
        Err(_) => {
            // SAFETY: kill(2) of the child we spawned, by pid.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            Err(format!("{what}: still running after {} s (killed)", limit.as_secs()).into())
        }
    }
}

/// Sends one frame of the session protocol (docs/SESSIONS.md): u32 big-endian length + JSON.
pub fn send_frame(
    s: &mut std::os::unix::net::UnixStream,
    v: &serde_json::Value,
) -> Result<(), Failed> {
    use std::io::Write;
    let b = serde_json::to_vec(v).map_err(err)?;
    s.write_all(&(b.len() as u32).to_be_bytes()).map_err(err)?;
    s.write_all(&b).map_err(err)
}

/// Reads one frame of the session protocol.
pub fn recv_frame(s: &mut std::os::unix::net::UnixStream) -> Result<serde_json::Value, Failed> {
    use std::io::Read;
    let mut n = [0u8; 4];
    s.read_exact(&mut n).map_err(err)?;
    let mut b = vec![0u8; u32::from_be_bytes(n) as usize];
    s.read_exact(&mut b).map_err(err)?;
    serde_json::from_slice(&b).map_err(err)
}

/// Makes fd `n` of the spawned process a non-CLOEXEC copy of /dev/null.
pub fn inherit_fd(c: &mut Command, n: i32) {
    // SAFETY: pre_exec runs in the forked child; open/dup2 are async-signal-safe and we
    // touch no Rust state.
    unsafe {
        c.pre_exec(move || {
            let fd = libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY);
            if fd < 0 || libc::dup2(fd, n) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Gives the command our fd `from` as its fd `to`. When they are the same number, dup2 would
/// do nothing and leave the close-on-exec flag (Rust opens everything with it), so the fd
/// would be closed at exec: the flag is cleared instead.
pub fn pass_fd(c: &mut Command, from: i32, to: i32) {
    // SAFETY: pre_exec runs in the forked child; dup2 and fcntl are async-signal-safe and we
    // touch no Rust state.
    unsafe {
        c.pre_exec(move || {
            let rc = if from == to {
                libc::fcntl(to, libc::F_SETFD, 0)
            } else {
                libc::dup2(from, to)
            };
            if rc < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Polls `cond` for up to 5 s.
pub fn settle(cond: impl Fn() -> bool) -> Result<(), ()> {
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(5) {
        if cond() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(())
}

/// Whether any process on the host has `arg` as one of its arguments.
pub fn process_with_arg(arg: &str) -> bool {
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return false;
    };
    rd.flatten().any(|e| {
        std::fs::read(e.path().join("cmdline"))
            .is_ok_and(|c| c.split(|b| *b == 0).any(|a| a == arg.as_bytes()))
    })
}

/// Owner uid of a path.
pub fn owner(p: &Path) -> Result<u32, Failed> {
    std::fs::metadata(p)
        .map(|m| m.uid())
        .map_err(|e| format!("stat {}: {e}", p.display()).into())
}

/// A trial body: runs with the environment of one `Who`.
pub type TestFn = fn(&Env) -> Result<(), Failed>;

/// The trial `who::name`, ignored (with the reason printed) when `skip` says why it cannot run.
pub fn trial(who: Who, name: &str, f: TestFn, skip: Option<String>) -> Trial {
    let full = format!("{}::{name}", who.name());
    if let Some(why) = &skip {
        eprintln!("skip {full}: {why}");
    }
    Trial::test(full, move || {
        let env = Env::new(who)?;
        f(&env)
    })
    .with_ignored_flag(skip.is_some())
}

/// Runs the trials, removes the binary's copy, exits with libtest's status.
pub fn run(args: &Arguments, trials: Vec<Trial>) -> ! {
    let conclusion = libtest_mimic::run(args, trials);
    cleanup();
    conclusion.exit()
}
