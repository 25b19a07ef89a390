//! Runs the whole probe as a separate process, with no sandbox and under `unshare`, as root
//! and as uid 65534, and checks that every op produces a well-formed row, that kernel-surface
//! ops are reachable where they must be (so BLOCKED elsewhere means refused, not broken), and
//! that nothing is left behind (scratch dirs, mounts, processes).
//!
//! `harness = false`: the binary is single-threaded, so it can also *be* the probe: with
//! `AGENTCAGE_PROBE_TEST_AS_PROBE=1` it parses probe flags and calls `agentcage_probe::run`
//! (optionally under a seccomp filter that kills `reboot`, to test the SIGSYS path).

use std::io::Read;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use agentcage_probe::{OpResult, ProbeReport, Verdict};
use clap::Parser;

const AS_PROBE: &str = "AGENTCAGE_PROBE_TEST_AS_PROBE";
const KILL_REBOOT: &str = "AGENTCAGE_PROBE_TEST_KILL_REBOOT";
const NOBODY: u32 = 65534;

#[derive(Parser)]
struct ProbeCli {
    #[command(flatten)]
    args: agentcage_probe::ProbeArgs,
}

fn main() {
    if std::env::var_os(AS_PROBE).is_some() {
        if std::env::var_os(KILL_REBOOT).is_some() {
            install_kill_reboot_filter();
        }
        let cli = ProbeCli::parse();
        match agentcage_probe::run(&cli.args) {
            Ok(code) => std::process::exit(code),
            Err(e) => {
                eprintln!("error: {e:#}");
                std::process::exit(125);
            }
        }
    }
    harness();
}

// ---------------------------------------------------------------------------------------
// A minimal harness: trials run in order; a panic fails the trial; a skip prints its reason.

enum Status {
    Pass,
    Skip(String),
}

type Trial = (&'static str, fn() -> Status);

fn harness() {
    // Orphans of the probe get reparented to us, so the stray-process check sees them.
    // SAFETY: integer arguments only.
    let rc = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    assert_eq!(rc, 0, "PR_SET_CHILD_SUBREAPER");
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let trials: &[Trial] = &[
        ("list_and_only", list_and_only),
        (
            "every_op_well_formed_as_caller",
            every_op_well_formed_as_caller,
        ),
        (
            "every_op_well_formed_as_nobody",
            every_op_well_formed_as_nobody,
        ),
        (
            "root::kernel_surface_reachable",
            root_kernel_surface_reachable,
        ),
        (
            "root::bait_reachable_without_sandbox",
            root_bait_reachable_without_sandbox,
        ),
        ("nobody_privileged_ops_denied", nobody_privileged_ops_denied),
        ("userns_sandbox_as_caller", userns_sandbox_as_caller),
        ("userns_sandbox_as_nobody", userns_sandbox_as_nobody),
        ("seccomp_kill_costs_one_row", seccomp_kill_costs_one_row),
        ("runner_hang_panic_and_signal", runner_hang_panic_and_signal),
        ("root::terminal_on_stdin", root_terminal_on_stdin),
    ];
    let (mut failed, mut passed, mut skipped) = (Vec::new(), 0, 0);
    for (name, f) in trials {
        if !filter.is_empty() && !filter.iter().any(|p| name.contains(p.as_str())) {
            continue;
        }
        let start = Instant::now();
        match std::panic::catch_unwind(f) {
            Ok(Status::Pass) => {
                passed += 1;
                println!("test {name} ... ok ({:.1}s)", start.elapsed().as_secs_f64());
            }
            Ok(Status::Skip(why)) => {
                skipped += 1;
                println!("test {name} ... ignored: {why}");
            }
            Err(_) => {
                println!("test {name} ... FAILED");
                failed.push(*name);
            }
        }
    }
    println!(
        "\ntest result: {passed} passed; {} failed; {skipped} ignored",
        failed.len()
    );
    if !failed.is_empty() {
        println!("failures: {failed:?}");
        std::process::exit(101);
    }
}

// ---------------------------------------------------------------------------------------
// Running the probe

struct Run {
    report: ProbeReport,
    stderr: String,
}

impl Run {
    fn row(&self, id: &str) -> &OpResult {
        self.report.get(id).unwrap_or_else(|| panic!("no row {id}"))
    }

    fn expect(&self, id: &str, result: Verdict, errno: Option<&str>) {
        let r = self.row(id);
        assert!(
            r.result == result && r.errno.as_deref() == errno,
            "{id}: expected {result} {errno:?}, got {} {:?} ({})",
            r.result,
            r.errno,
            r.detail
        );
    }

    fn expect_result(&self, id: &str, result: Verdict) {
        let r = self.row(id);
        assert_eq!(
            r.result, result,
            "{id}: {} {:?} ({})",
            r.result, r.errno, r.detail
        );
    }
}

/// A private directory for one run: the probe's TMPDIR and a copy of this test binary that
/// uid 65534 can execute. Removed on drop.
struct Sandbox {
    dir: PathBuf,
    exe: PathBuf,
    tmp: PathBuf,
}

impl Sandbox {
    fn new(owner: Option<u32>) -> Sandbox {
        let dir = std::env::temp_dir().join(format!(
            "agentcage-probe-test-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let exe = dir.join("probe");
        std::fs::copy(std::env::current_exe().unwrap(), &exe).unwrap();
        std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
        let tmp = dir.join("tmp");
        std::fs::create_dir(&tmp).unwrap();
        if let Some(uid) = owner {
            std::os::unix::fs::chown(&tmp, Some(uid), Some(uid)).unwrap();
        }
        Sandbox { dir, exe, tmp }
    }

    /// Runs the probe (optionally through a wrapper such as `unshare`) and checks the
    /// invariants every run must satisfy.
    fn run(&self, wrapper: &[&str], uid: Option<u32>, args: &[&str], env: &[(&str, &str)]) -> Run {
        let mut cmd = match wrapper.split_first() {
            Some((w, rest)) => {
                let mut c = Command::new(w);
                c.args(rest).arg(&self.exe);
                c
            }
            None => Command::new(&self.exe),
        };
        cmd.args(["--fork-limit", "300", "--mem-limit-mib", "64"])
            .args(args);
        cmd.env(AS_PROBE, "1")
            .env("TMPDIR", &self.tmp)
            .current_dir(&self.dir);
        for (k, v) in env {
            cmd.env(k, v);
        }
        if let Some(u) = uid {
            cmd.uid(u).gid(u);
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let start = Instant::now();
        let mut child = cmd.spawn().expect("spawn probe");
        let mut stdout = String::new();
        let mut stderr = String::new();
        child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut stdout)
            .unwrap();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        let status = child.wait().unwrap();
        let took = start.elapsed();
        assert!(status.success(), "probe exited {status}: {stderr}");
        assert!(took < Duration::from_secs(60), "probe took {took:?}");
        let report = ProbeReport::from_jsonl(&stdout).unwrap_or_else(|e| panic!("{e:#}\n{stdout}"));
        check_rows(&report, args);
        self.check_clean(&stderr);
        Run { report, stderr }
    }

    fn check_clean(&self, stderr: &str) {
        let left: Vec<_> = std::fs::read_dir(&self.tmp)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .collect();
        assert!(
            left.is_empty(),
            "probe left {left:?} behind; stderr: {stderr}"
        );
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert!(
            !mounts.contains(self.dir.to_str().unwrap()),
            "probe left a mount behind"
        );
        assert_no_strays();
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

thread_local! {
    /// Our own long-lived children (sentinels), which are not strays.
    static KNOWN_CHILDREN: std::cell::RefCell<Vec<u32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Every orphan of the probe was reparented to this subreaper: none may exist, alive or
/// dead, besides the sentinels we started ourselves.
fn assert_no_strays() {
    let me = std::process::id();
    let known = KNOWN_CHILDREN.with(|k| k.borrow().clone());
    let mut strays = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // Fields after the parenthesised command name: state, ppid, ...
        let after = &stat[stat.rfind(')').map_or(0, |i| i + 2)..];
        let ppid: u32 = after
            .split(' ')
            .nth(1)
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        if ppid == me && !known.contains(&pid) {
            strays.push(format!("{pid}: {}", stat.trim()));
        }
    }
    assert!(strays.is_empty(), "stray processes left behind: {strays:?}");
}

/// Well-formedness of every row, in table order.
fn check_rows(report: &ProbeReport, args: &[&str]) {
    let only: Vec<&str> = args
        .windows(2)
        .filter(|w| w[0] == "--only")
        .map(|w| w[1])
        .collect();
    let expected: Vec<&str> = agentcage_probe::ops::all()
        .map(|o| o.id)
        .filter(|id| only.is_empty() || only.contains(id))
        .collect();
    let got: Vec<&str> = report.ops.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(got, expected, "rows are not the op table in order");
    for r in &report.ops {
        assert!(!r.detail.is_empty(), "{}: empty detail", r.id);
        assert!(!r.detail.contains("probe error"), "{}: {}", r.id, r.detail);
        match r.result {
            Verdict::Blocked => {
                let e = r
                    .errno
                    .as_deref()
                    .unwrap_or_else(|| panic!("{}: BLOCKED without errno", r.id));
                assert!(
                    e.starts_with('E') || e.starts_with("SIG"),
                    "{}: errno {e}",
                    r.id
                );
                assert_ne!(e, "ETIMEDOUT", "{}: the op hung: {}", r.id, r.detail);
            }
            Verdict::Skipped | Verdict::Info => {
                assert!(r.errno.is_none(), "{}: errno on {}", r.id, r.result)
            }
            Verdict::Allowed => {}
        }
        assert_eq!(
            r.result == Verdict::Info,
            r.category == agentcage_probe::Category::Info,
            "{}",
            r.id
        );
    }
}

fn is_root() -> bool {
    // SAFETY: no arguments.
    unsafe { libc::geteuid() == 0 }
}

fn userns_available() -> Option<String> {
    let out = Command::new("unshare")
        .args(["-Urmpfn", "--mount-proc", "true"])
        .stderr(Stdio::piped())
        .output();
    match out {
        Ok(o) if o.status.success() => None,
        Ok(o) => Some(format!(
            "unshare -Urmpfn failed: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        )),
        Err(e) => Some(format!("no unshare binary: {e}")),
    }
}

// ---------------------------------------------------------------------------------------
// Trials

fn list_and_only() -> Status {
    let sb = Sandbox::new(None);
    let out = Command::new(&sb.exe)
        .env(AS_PROBE, "1")
        .arg("--list")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let n = agentcage_probe::ops::all().count();
    assert_eq!(text.lines().count(), n);
    assert!(n >= 45);
    for op in agentcage_probe::ops::all() {
        assert!(text.contains(op.id));
    }
    let run = sb.run(
        &[],
        None,
        &[
            "--only",
            "fs.write.root",
            "--only",
            "kernel.reboot.bad_magic",
        ],
        &[],
    );
    assert_eq!(run.report.ops.len(), 2);
    let bad = Command::new(&sb.exe)
        .env(AS_PROBE, "1")
        .args(["--only", "no.such.op"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(125));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("unknown op id"));
    let text = Command::new(&sb.exe)
        .env(AS_PROBE, "1")
        .args(["--format", "text", "--only", "fs.read.etc_passwd"])
        .output()
        .unwrap();
    let t = String::from_utf8(text.stdout).unwrap();
    assert!(t.lines().next().unwrap().starts_with("op "), "{t}");
    assert!(t.contains("read /etc/passwd"));
    Status::Pass
}

fn every_op_well_formed_as_caller() -> Status {
    let sb = Sandbox::new(None);
    let run = sb.run(&[], None, &[], &[]);
    assert!(run.stderr.is_empty(), "stderr: {}", run.stderr);
    Status::Pass
}

fn every_op_well_formed_as_nobody() -> Status {
    if !is_root() {
        return Status::Skip("needs root to switch to uid 65534".into());
    }
    let sb = Sandbox::new(Some(NOBODY));
    sb.run(&[], Some(NOBODY), &[], &[]);
    Status::Pass
}

/// As real root with no sandbox, every kernel-surface op must get past its permission check:
/// this is the control that makes a BLOCKED under a profile mean "refused", not "broken".
fn root_kernel_surface_reachable() -> Status {
    if !is_root() {
        return Status::Skip("needs root".into());
    }
    let sb = Sandbox::new(None);
    let run = sb.run(&[], None, &[], &[]);
    use Verdict::Allowed;
    run.expect("kernel.reboot.bad_magic", Allowed, Some("EINVAL"));
    run.expect("kernel.umount.scratch", Allowed, Some("EINVAL"));
    run.expect("kernel.settimeofday.bad_tz", Allowed, Some("EINVAL"));
    run.expect("kernel.clock_adjtime.bad_tick", Allowed, Some("EINVAL"));
    run.expect("kernel.sethostname.bad_len", Allowed, Some("EINVAL"));
    run.expect("kernel.swapon.missing", Allowed, Some("ENOENT"));
    run.expect("kernel.swapoff.missing", Allowed, Some("ENOENT"));
    run.expect("kernel.acct.missing", Allowed, Some("ENOENT"));
    run.expect("kernel.open_by_handle_at.empty", Allowed, Some("EINVAL"));
    run.expect("kernel.add_key.unknown_type", Allowed, Some("ENODEV"));
    for id in [
        "kernel.mount.tmpfs",
        "kernel.pivot_root.scratch",
        "kernel.chroot.root",
        "kernel.fsopen.tmpfs",
        "kernel.unshare.user",
        "kernel.unshare.mount",
        "kernel.unshare.user_net",
        "kernel.clone.newuser",
        "kernel.clone3.newuser",
        "kernel.setns.own_net",
        "kernel.mknod.char",
        "kernel.bpf.prog_load",
        "kernel.userfaultfd.create",
        "kernel.perf_event_open.self",
        "kernel.keyctl.session",
        "kernel.io_uring.setup",
        "kernel.personality.no_aslr",
        "kernel.syslog.size",
        "kernel.vhangup.no_tty",
        "kernel.ioctl.tiocsti",
        "kernel.ioctl.tioclinux",
        "proc.ptrace.traceme",
        "proc.read.pid2_status",
        "proc.kill.all",
        "net.socket.raw_icmp",
        "net.socket.packet",
        "net.bind.low_port",
        "fs.write.root",
        "fs.write.usr_bin",
        "fs.read.etc_shadow",
        "resources.fork.count",
        "resources.memory.touch",
    ] {
        run.expect_result(id, Allowed);
    }
    if Path::new("/proc/sys/abi/vsyscall32").exists() || cfg!(target_arch = "x86_64") {
        match run.row("kernel.int80.mount").result {
            Allowed => run.expect_result("kernel.int80.ptrace", Allowed),
            _ => eprintln!(
                "note: int 0x80 unavailable here: {}",
                run.row("kernel.int80.mount").detail
            ),
        }
    }
    // Info rows reflect real root.
    assert_ne!(run.row("info.caps.effective").detail, "0000000000000000");
    assert_eq!(run.row("info.nnp.status").detail, "0");
    assert!(run.row("info.ids.current").detail.starts_with("uid=0 "));
    Status::Pass
}

/// Bait set up outside: with no sandbox every bait op reaches it.
fn root_bait_reachable_without_sandbox() -> Status {
    if !is_root() {
        return Status::Skip("needs root (ptrace of a sibling under Yama)".into());
    }
    let sb = Sandbox::new(None);
    let bait = Bait::new(&sb, None);
    let args = bait.args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut args = args;
    let passwd = agentcage_probe::host_inode_arg(Path::new("/etc/passwd")).unwrap();
    args.extend(["--host-inode", passwd.as_str()]);
    // The inherited fd is opened without CLOEXEC by a shell that then execs the probe.
    let run = sb.run(
        &[
            "sh",
            "-c",
            "exec 7</etc/hostname; exec \"$0\" \"$@\" --inherited-fd 7",
        ],
        None,
        &args,
        &[("PROBE_SECRET", "hunter2")],
    );
    run.expect("fs.read.etc_passwd", Verdict::Allowed, None);
    assert!(run.row("fs.read.etc_passwd").detail.contains("the host's"));
    for id in [
        "fs.read.canary",
        "fs.read.workspace_symlink",
        "fs.write.outside_workspace",
        "proc.signal.sentinel",
        "proc.ptrace.sentinel",
        "proc.vm_read.sentinel",
        "proc.read.sentinel_environ",
        "net.connect.host_loopback",
        "net.connect.unix_path",
        "net.connect.unix_abstract",
        "hygiene.fd.inherited",
        "hygiene.env.secret",
    ] {
        run.expect_result(id, Verdict::Allowed);
    }
    assert!(
        !run.row("hygiene.env.secret").detail.contains("hunter2"),
        "secret value printed"
    );
    // The probe removed its workspace symlink dir and the file next to the canary.
    assert_eq!(std::fs::read_dir(&bait.workspace).unwrap().count(), 0);
    assert_eq!(
        std::fs::read_dir(bait.canary.parent().unwrap())
            .unwrap()
            .count(),
        1
    );
    drop(bait);
    assert_no_strays();
    Status::Pass
}

/// Unprivileged (uid 65534 when we are root, else the caller), the same ops are refused by
/// the kernel's own checks.
fn nobody_privileged_ops_denied() -> Status {
    let uid = is_root().then_some(NOBODY);
    let sb = Sandbox::new(uid);
    let run = sb.run(&[], uid, &[], &[]);
    use Verdict::Blocked;
    for id in [
        "kernel.reboot.bad_magic",
        "kernel.mount.tmpfs",
        "kernel.umount.scratch",
        "kernel.pivot_root.scratch",
        "kernel.chroot.root",
        "kernel.settimeofday.bad_tz",
        "kernel.clock_adjtime.bad_tick",
        "kernel.sethostname.bad_len",
        "kernel.swapon.missing",
        "kernel.acct.missing",
        "kernel.mknod.char",
        "net.socket.raw_icmp",
        "net.socket.packet",
    ] {
        run.expect(id, Blocked, Some("EPERM"));
    }
    run.expect("fs.write.root", Blocked, Some("EACCES"));
    run.expect("fs.read.etc_shadow", Blocked, Some("EACCES"));
    assert_eq!(run.row("info.caps.effective").detail, "0000000000000000");
    assert!(!run.row("info.ids.current").detail.starts_with("uid=0 "));
    Status::Pass
}

fn userns_sandbox(uid: Option<u32>) -> Status {
    if let Some(why) = userns_available() {
        return Status::Skip(why);
    }
    let sb = Sandbox::new(uid);
    let bait = Bait::new(&sb, uid);
    let args = bait.args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    // A sandbox-made /etc/passwd at the host's path is not the host's file.
    let fake = sb.dir.join("fake-passwd");
    std::fs::write(&fake, "root:x:0:0::/:/bin/sh\n").unwrap();
    let mut args = args;
    let passwd = agentcage_probe::host_inode_arg(Path::new("/etc/passwd")).unwrap();
    args.extend(["--host-inode", passwd.as_str()]);
    let run = sb.run(
        &[
            "unshare",
            "-Urmpfn",
            "--mount-proc",
            "sh",
            "-c",
            "mount --bind \"$FAKE_PASSWD\" /etc/passwd && exec \"$0\" \"$@\"",
        ],
        uid,
        &args,
        &[("FAKE_PASSWD", fake.to_str().unwrap())],
    );
    run.expect("fs.read.etc_passwd", Verdict::Blocked, Some("ENOENT"));
    assert!(run
        .row("fs.read.etc_passwd")
        .detail
        .contains("another file"));
    use Verdict::{Allowed, Blocked};
    // Namespaces alone are not a sandbox: root in the user namespace mounts and opens raw
    // sockets (the reference design's lesson).
    run.expect_result("kernel.mount.tmpfs", Allowed);
    run.expect_result("net.socket.raw_icmp", Allowed);
    run.expect("kernel.reboot.bad_magic", Allowed, Some("EINVAL"));
    // No -u: the UTS namespace still belongs to the host's user namespace.
    run.expect("kernel.sethostname.bad_len", Blocked, Some("EPERM"));
    // The network namespace cuts the host's loopback; the pid namespace hides the sentinel.
    run.expect_result("net.connect.host_loopback", Blocked);
    run.expect_result("net.connect.external", Blocked);
    run.expect("proc.signal.sentinel", Blocked, Some("ESRCH"));
    run.expect("proc.ptrace.sentinel", Blocked, Some("ESRCH"));
    run.expect("proc.vm_read.sentinel", Blocked, Some("ESRCH"));
    run.expect("proc.kill.all", Blocked, Some("ESRCH"));
    run.expect_result("proc.read.pid2_status", Blocked);
    // Abstract unix sockets belong to the network namespace.
    run.expect("net.connect.unix_abstract", Blocked, Some("ECONNREFUSED"));
    assert!(
        run.row("info.landlock.domain")
            .detail
            .starts_with("not restricted"),
        "{}",
        run.row("info.landlock.domain").detail
    );
    drop(bait);
    assert_no_strays();
    Status::Pass
}

fn userns_sandbox_as_caller() -> Status {
    userns_sandbox(None)
}

fn userns_sandbox_as_nobody() -> Status {
    if !is_root() {
        return Status::Skip("needs root to switch to uid 65534".into());
    }
    userns_sandbox(Some(NOBODY))
}

/// A seccomp filter that kills `reboot`: that op's row says SIGSYS, and every other row is
/// still there (the kill cost one row, not the run).
fn seccomp_kill_costs_one_row() -> Status {
    let sb = Sandbox::new(None);
    let run = sb.run(&[], None, &[], &[(KILL_REBOOT, "1")]);
    run.expect("kernel.reboot.bad_magic", Verdict::Blocked, Some("SIGSYS"));
    assert!(run
        .row("kernel.reboot.bad_magic")
        .detail
        .contains("seccomp"));
    assert_eq!(run.row("info.seccomp.mode").detail, "2");
    assert_eq!(run.row("info.nnp.status").detail, "1");
    Status::Pass
}

/// The runner in-process (this harness is single-threaded): a hanging op is killed at its
/// deadline, a panicking op is reported as a probe error, a signal-killed op is BLOCKED with
/// the signal's name. No child outlives its row.
fn runner_hang_panic_and_signal() -> Status {
    use agentcage_probe::ops::{Ctx, Op};
    use agentcage_probe::{Category, Outcome};
    let ctx = Ctx::default();
    let hang = Op::new("test.hang.forever", "hang", Category::Kernel, |_| loop {
        std::thread::sleep(Duration::from_secs(1));
    });
    let start = Instant::now();
    let r = agentcage_probe::run_one(&hang, &ctx, 300).unwrap();
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "deadline not enforced"
    );
    assert_eq!(
        (r.result, r.errno.as_deref()),
        (Verdict::Blocked, Some("ETIMEDOUT")),
        "{r:?}"
    );

    let panics = Op::new("test.panic.now", "panic", Category::Kernel, |_| {
        panic!("boom")
    });
    // The op child's panic message is expected; keep it out of the test output.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let r = agentcage_probe::run_one(&panics, &ctx, 2000).unwrap();
    std::panic::set_hook(hook);
    assert_eq!(r.result, Verdict::Skipped, "{r:?}");
    assert!(r.detail.contains("probe error"), "{r:?}");

    let killed = Op::new("test.signal.sys", "sigsys", Category::Kernel, |_| {
        // SAFETY: raising a signal on ourselves; SIGSYS's default action ends this op child.
        unsafe { libc::raise(libc::SIGSYS) };
        Outcome::skipped("not reached")
    });
    let r = agentcage_probe::run_one(&killed, &ctx, 2000).unwrap();
    assert_eq!(
        (r.result, r.errno.as_deref()),
        (Verdict::Blocked, Some("SIGSYS")),
        "{r:?}"
    );

    let fine = Op::new("test.ok.now", "ok", Category::Kernel, |_| {
        Outcome::allowed("fine")
    });
    let r = agentcage_probe::run_one(&fine, &ctx, 2000).unwrap();
    assert_eq!((r.result, r.detail.as_str()), (Verdict::Allowed, "fine"));
    assert_no_strays();
    Status::Pass
}

/// A pseudo-terminal on stdin: the terminal ops find it. Root passes TIOCSTI's
/// controlling-terminal check with CAP_SYS_ADMIN, so the NULL pointer gives EFAULT: the
/// injection would have been possible.
fn root_terminal_on_stdin() -> Status {
    if !is_root() {
        return Status::Skip("needs root (TIOCSTI on a terminal that is not our ctty)".into());
    }
    // SAFETY: plain open of /dev/ptmx; the fd is owned below.
    let master = unsafe { libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC) };
    assert!(master >= 0, "posix_openpt");
    // SAFETY: master is a valid pty master fd we own.
    let master = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(master) };
    use std::os::fd::AsRawFd;
    // SAFETY: integer fd arguments only.
    assert_eq!(unsafe { libc::grantpt(master.as_raw_fd()) }, 0);
    // SAFETY: integer fd arguments only.
    assert_eq!(unsafe { libc::unlockpt(master.as_raw_fd()) }, 0);
    let mut name = [0 as libc::c_char; 64];
    // SAFETY: name is a live buffer of the given length.
    let rc = unsafe { libc::ptsname_r(master.as_raw_fd(), name.as_mut_ptr(), name.len()) };
    assert_eq!(rc, 0, "ptsname_r");
    // SAFETY: ptsname_r NUL-terminated the buffer.
    let path = unsafe { std::ffi::CStr::from_ptr(name.as_ptr()) }
        .to_str()
        .unwrap()
        .to_string();
    let slave = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY)
        .open(&path)
        .unwrap();

    let sb = Sandbox::new(None);
    let out = Command::new(&sb.exe)
        .env(AS_PROBE, "1")
        .env("TMPDIR", &sb.tmp)
        .args(["--only", "hygiene.tty.tiocsti"])
        .stdin(Stdio::from(slave))
        .output()
        .unwrap();
    assert!(out.status.success());
    let report = ProbeReport::from_jsonl(&String::from_utf8(out.stdout).unwrap()).unwrap();
    let r = report.get("hygiene.tty.tiocsti").unwrap();
    assert_eq!(
        (r.result, r.errno.as_deref()),
        (Verdict::Allowed, Some("EFAULT")),
        "{r:?}"
    );
    assert!(r.detail.contains("fd 0"), "{r:?}");
    drop(master);
    assert_no_strays();
    Status::Pass
}

// ---------------------------------------------------------------------------------------
// Bait and the test seccomp filter

/// What a matrix would set up outside the sandbox: a sentinel process, a canary, a workspace,
/// a TCP listener on 127.0.0.1 and unix listeners. Torn down on drop.
struct Bait {
    sentinel: std::process::Child,
    canary: PathBuf,
    workspace: PathBuf,
    tcp: std::net::TcpListener,
    unix_path: PathBuf,
    _unix: std::os::unix::net::UnixListener,
    abstract_name: String,
    _abstract: std::os::unix::net::UnixListener,
}

impl Bait {
    fn new(sb: &Sandbox, uid: Option<u32>) -> Bait {
        let mut cmd = Command::new("sleep");
        cmd.arg("60");
        if let Some(u) = uid {
            cmd.uid(u).gid(u);
        }
        let sentinel = cmd.spawn().unwrap();
        KNOWN_CHILDREN.with(|k| k.borrow_mut().push(sentinel.id()));
        let secret_dir = sb.dir.join("secret");
        let workspace = sb.dir.join("workspace");
        for d in [&secret_dir, &workspace] {
            std::fs::create_dir(d).unwrap();
            if let Some(u) = uid {
                std::os::unix::fs::chown(d, Some(u), Some(u)).unwrap();
            }
        }
        let canary = secret_dir.join("canary");
        std::fs::write(&canary, "canary secret").unwrap();
        if let Some(u) = uid {
            std::os::unix::fs::chown(&canary, Some(u), Some(u)).unwrap();
        }
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let unix_path = sb.dir.join("bait.sock");
        let unix = std::os::unix::net::UnixListener::bind(&unix_path).unwrap();
        std::fs::set_permissions(&unix_path, std::fs::Permissions::from_mode(0o777)).unwrap();
        let abstract_name = format!("agentcage-probe-test-{}", std::process::id());
        use std::os::linux::net::SocketAddrExt;
        let addr =
            std::os::unix::net::SocketAddr::from_abstract_name(abstract_name.as_bytes()).unwrap();
        let abs = std::os::unix::net::UnixListener::bind_addr(&addr).unwrap();
        Bait {
            sentinel,
            canary,
            workspace,
            tcp,
            unix_path,
            _unix: unix,
            abstract_name,
            _abstract: abs,
        }
    }

    fn args(&self) -> Vec<String> {
        vec![
            "--sentinel-pid".into(),
            self.sentinel.id().to_string(),
            "--canary".into(),
            self.canary.display().to_string(),
            "--workspace".into(),
            self.workspace.display().to_string(),
            "--tcp-port".into(),
            self.tcp.local_addr().unwrap().port().to_string(),
            "--unix-path".into(),
            self.unix_path.display().to_string(),
            "--abstract".into(),
            self.abstract_name.clone(),
            "--secret-env".into(),
            "PROBE_SECRET".into(),
        ]
    }
}

impl Drop for Bait {
    fn drop(&mut self) {
        let _ = self.sentinel.kill();
        let _ = self.sentinel.wait();
        let id = self.sentinel.id();
        KNOWN_CHILDREN.with(|k| k.borrow_mut().retain(|p| *p != id));
    }
}

/// no_new_privs + a filter: x86_64 `reboot` -> SECCOMP_RET_KILL_PROCESS, all else allowed.
fn install_kill_reboot_filter() {
    const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
    let insns = [
        // A = arch; if != x86_64 allow (the test only cares about native reboot)
        libc::sock_filter {
            code: (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16,
            jt: 0,
            jf: 0,
            k: 4,
        },
        libc::sock_filter {
            code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
            jt: 0,
            jf: 3,
            k: AUDIT_ARCH_X86_64,
        },
        libc::sock_filter {
            code: (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16,
            jt: 0,
            jf: 0,
            k: 0,
        },
        libc::sock_filter {
            code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
            jt: 0,
            jf: 1,
            k: libc::SYS_reboot as u32,
        },
        libc::sock_filter {
            code: (libc::BPF_RET | libc::BPF_K) as u16,
            jt: 0,
            jf: 0,
            k: libc::SECCOMP_RET_KILL_PROCESS,
        },
        libc::sock_filter {
            code: (libc::BPF_RET | libc::BPF_K) as u16,
            jt: 0,
            jf: 0,
            k: libc::SECCOMP_RET_ALLOW,
        },
    ];
    let prog = libc::sock_fprog {
        len: insns.len() as u16,
        filter: insns.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: integer arguments only.
    let rc = unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
    assert_eq!(rc, 0, "PR_SET_NO_NEW_PRIVS");
    // SAFETY: prog points at a live filter array of `len` instructions; the kernel copies it.
    let rc = unsafe {
        libc::prctl(
            libc::PR_SET_SECCOMP,
            libc::SECCOMP_MODE_FILTER,
            &prog as *const libc::sock_fprog,
        )
    };
    assert_eq!(rc, 0, "PR_SET_SECCOMP");
}
