//! `agentcage export`: the seccomp profile loaded by real Docker blocks what `full` blocks
//! and lets real tools work.
//!
//! Trials run as root and as uid 65534 where the command allows it (exporting needs no
//! privilege); Docker needs root. When Docker cannot run here the trial prints why and is
//! skipped, or fails when `AGENTCAGE_TEST_EXPECT` lists `docker`.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{err, expected, Env, TestFn, Who};
use libtest_mimic::{Arguments, Failed, Trial};
use serde_json::Value;

fn json(text: &str, what: &str) -> Result<Value, Failed> {
    serde_json::from_str(text).map_err(|e| format!("{what}: not JSON: {e}\n{text}").into())
}

/// The profile's shape: what a runtime reads first.
fn export_seccomp_shape(env: &Env) -> Result<(), Failed> {
    let oci = env.run(&["export", "seccomp", "--format", "oci"])?;
    oci.expect_code(0, "export seccomp --format oci")?;
    let p = json(&oci.stdout, "oci profile")?;
    if p["defaultAction"] != "SCMP_ACT_ERRNO" || p["defaultErrnoRet"] != libc::ENOSYS {
        return Err(format!("default is not ERRNO(ENOSYS): {}", p["defaultAction"]).into());
    }
    if p["architectures"] != serde_json::json!(["SCMP_ARCH_X86_64"]) && cfg!(target_arch = "x86_64")
    {
        return Err(format!("architectures: {}", p["architectures"]).into());
    }
    if p.get("comment").is_some() {
        return Err("the oci format carries Docker's comment field".into());
    }
    let names = |action: &str| -> Vec<String> {
        p["syscalls"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["action"] == action && e.get("args").is_none())
            .flat_map(|e| e["names"].as_array().cloned().unwrap_or_default())
            .filter_map(|n| n.as_str().map(str::to_string))
            .collect()
    };
    let allowed = names("SCMP_ACT_ALLOW");
    let denied = names("SCMP_ACT_ERRNO");
    for n in ["read", "execve", "wait4", "getpid"] {
        if !allowed.iter().any(|a| a == n) {
            return Err(format!("{n} not allowed").into());
        }
    }
    for n in [
        "mount",
        "unshare",
        "ptrace",
        "io_uring_setup",
        "keyctl",
        "bpf",
        "setns",
    ] {
        if !denied.iter().any(|a| a == n) || allowed.iter().any(|a| a == n) {
            return Err(format!("{n} not denied").into());
        }
    }
    let all = env.run(&["export", "seccomp", "--format", "oci", "--arch", "all"])?;
    all.expect_code(0, "export seccomp --arch all")?;
    let all = json(&all.stdout, "multi-arch profile")?;
    if all["architectures"] != serde_json::json!(["SCMP_ARCH_X86_64", "SCMP_ARCH_AARCH64"]) {
        return Err(format!("--arch all: {}", all["architectures"]).into());
    }
    let docker = env.run(&["export", "seccomp"])?;
    docker.expect_code(0, "export seccomp")?;
    let d = json(&docker.stdout, "docker profile")?;
    if !d["comment"]
        .as_str()
        .is_some_and(|c| c.contains("stricter"))
    {
        return Err("the docker format's comment does not list the deviations".into());
    }
    // Bad input is a usage error with a message, never a panic.
    for (args, says) in [
        (
            &["export", "k8s", "--image", "x", "--name", "Bad_Name"][..],
            "Kubernetes name",
        ),
        (
            &[
                "export",
                "oci",
                "--rootfs",
                "/nonexistent/agentcage",
                "-o",
                "/nonexistent/b",
            ][..],
            "not a directory",
        ),
    ] {
        let out = env.run(args)?;
        out.expect_code(2, &args.join(" "))?;
        if !out.stderr.contains(says) {
            return Err(format!("{args:?}: unclear refusal: {}", out.stderr).into());
        }
    }
    // A profile without seccomp has nothing to export: a usage error, not an empty profile.
    let none = env.run(&["export", "seccomp", "-p", "ns-only"])?;
    none.expect_code(2, "export seccomp -p ns-only")?;
    if !none.stderr.contains("no seccomp layer") {
        return Err(format!("unclear refusal: {}", none.stderr).into());
    }
    Ok(())
}

/// A Docker daemon for the trial: the host's when one answers, else our own (private data
/// root, exec root, pid file and socket under a temp dir), stopped and removed on drop.
struct Docker {
    host: Option<String>,
    own: Option<(Child, PathBuf)>,
}

impl Docker {
    fn cmd(&self) -> Command {
        let mut c = Command::new("docker");
        if let Some(h) = &self.host {
            c.args(["-H", h]);
        }
        c.stdin(Stdio::null());
        c
    }

    fn answers(host: Option<&str>) -> bool {
        let mut c = Command::new("docker");
        if let Some(h) = host {
            c.args(["-H", h]);
        }
        c.args(["version", "--format", "{{.Server.Version}}"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Connects or starts a daemon; `Err` says why Docker cannot run here.
    fn start() -> Result<Docker, String> {
        if Docker::answers(None) {
            return Ok(Docker {
                host: None,
                own: None,
            });
        }
        let dir = std::env::temp_dir().join(format!("agentcage-t-dockerd-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
        let sock = format!("unix://{}", dir.join("sock").display());
        let log = std::fs::File::create(dir.join("log")).map_err(|e| e.to_string())?;
        let child = Command::new("dockerd")
            .arg("--data-root")
            .arg(dir.join("data"))
            .arg("--exec-root")
            .arg(dir.join("exec"))
            .arg("--pidfile")
            .arg(dir.join("pid"))
            .args([
                "-H",
                &sock,
                "--bridge=none",
                "--iptables=false",
                "--ip-masq=false",
            ])
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("start dockerd: {e}"))?;
        let d = Docker {
            host: Some(sock.clone()),
            own: Some((child, dir.clone())),
        };
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(60) {
            if Docker::answers(Some(&sock)) {
                return Ok(d);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        let tail = std::fs::read_to_string(dir.join("log")).unwrap_or_default();
        let tail: Vec<&str> = tail.lines().rev().take(5).collect();
        Err(format!(
            "dockerd did not answer within 60 s: {}",
            tail.join(" | ")
        ))
    }

    fn run(&self, args: &[&str]) -> Result<(i32, String, String), Failed> {
        let o = self
            .cmd()
            .args(args)
            .output()
            .map_err(|e| format!("docker {args:?}: {e}"))?;
        Ok((
            common::code_of(o.status),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        ))
    }
}

impl Drop for Docker {
    fn drop(&mut self) {
        if let Some((child, dir)) = &mut self.own {
            // Only the daemon we started, by its pid: SIGTERM, then SIGKILL after 20 s.
            // SAFETY: kill(2) on the pid of our own child, which we have not reaped yet.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let _ = common::wait_deadline(child, Duration::from_secs(20), "dockerd");
            let _ = std::fs::remove_dir_all(&*dir);
        }
    }
}

/// The C probe: each operation in a forked child, one line each: `NAME ok`, `NAME errno N`
/// or `NAME signal N`. Harmless arguments: every allowed call fails or does nothing.
const PROBE_C: &str = r#"
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static long op(const char *n) {
    if (!strcmp(n, "mount")) {
        mkdir("/tmp/mnt-probe", 0755);
        long r = syscall(SYS_mount, "none", "/tmp/mnt-probe", "tmpfs", 0UL, "size=4k");
        if (r == 0) umount2("/tmp/mnt-probe", MNT_DETACH);
        return r;
    }
    if (!strcmp(n, "unshare")) return syscall(SYS_unshare, CLONE_NEWUSER);
    if (!strcmp(n, "clone_newns")) {
        long r = syscall(SYS_clone, CLONE_NEWNS | SIGCHLD, 0, 0, 0, 0);
        if (r == 0) _exit(0);
        if (r > 0) waitpid(r, 0, 0);
        return r;
    }
    if (!strcmp(n, "clone3")) return syscall(435, 0, 0);
    if (!strcmp(n, "ptrace")) return syscall(SYS_ptrace, 0, 0, 0, 0);
    if (!strcmp(n, "io_uring_setup")) return syscall(425, 1, 0);
    if (!strcmp(n, "keyctl")) return syscall(SYS_keyctl, 0, -3, 0);
    if (!strcmp(n, "bpf")) return syscall(SYS_bpf, 5, 0, 0);
    if (!strcmp(n, "tiocsti")) { char c = 'x'; return ioctl(0, TIOCSTI, &c); }
    if (!strcmp(n, "tiocsti_hi")) { char c = 'x'; return syscall(SYS_ioctl, 0, 0x100005412UL, &c); }
    if (!strcmp(n, "x32_getpid")) return syscall(0x40000000 | SYS_getpid);
    if (!strcmp(n, "int80_getpid")) {
        long r;
        __asm__ volatile("int $0x80" : "=a"(r) : "a"(20) : "memory");
        if (r < 0) { errno = -r; return -1; }
        return r;
    }
    if (!strcmp(n, "getpid")) return syscall(SYS_getpid);
    errno = EINVAL;
    return -1;
}

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        fflush(stdout);
        pid_t p = fork();
        if (p == 0) {
            errno = 0;
            long r = op(argv[i]);
            if (r < 0) printf("%s errno %d\n", argv[i], errno);
            else printf("%s ok\n", argv[i]);
            fflush(stdout);
            _exit(0);
        }
        int st = 0;
        waitpid(p, &st, 0);
        if (WIFSIGNALED(st)) printf("%s signal %d\n", argv[i], WTERMSIG(st));
    }
    return 0;
}
"#;

const OPS: [&str; 13] = [
    "mount",
    "unshare",
    "clone_newns",
    "clone3",
    "ptrace",
    "io_uring_setup",
    "keyctl",
    "bpf",
    "tiocsti",
    "tiocsti_hi",
    "x32_getpid",
    "int80_getpid",
    "getpid",
];

/// What `full` answers for each operation.
fn expected_under_profile(op: &str) -> String {
    match op {
        "getpid" => "ok".into(),
        "clone3" => format!("errno {}", libc::ENOSYS),
        "x32_getpid" | "int80_getpid" => format!("signal {}", libc::SIGSYS),
        _ => format!("errno {}", libc::EPERM),
    }
}

fn parse_probe(out: &str) -> BTreeMap<String, String> {
    out.lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Read-only host system dirs (so python, git and gcc work without an image), a tmpfs /tmp
/// and the workspace at /ws.
fn docker_run_args<'a>(ws: &'a str, image: &'a str, security: &'a [&'a str]) -> Vec<String> {
    let mut v: Vec<String> = ["run", "--rm", "--network", "none", "--tmpfs", "/tmp:exec"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    for d in ["/usr", "/bin", "/sbin", "/lib", "/lib64", "/etc"] {
        if Path::new(d).exists() {
            v.push("-v".into());
            v.push(format!("{d}:{d}:ro"));
        }
    }
    v.push("-v".into());
    v.push(format!("{ws}:/ws"));
    v.extend(["-w", "/ws", "-e", "HOME=/ws", "-e", "PATH=/usr/bin:/bin"].map(String::from));
    v.extend(security.iter().map(|s| s.to_string()));
    v.push(image.into());
    v
}

fn docker_seccomp(env: &Env) -> Result<(), Failed> {
    let docker = match Docker::start() {
        Ok(d) => d,
        Err(why) if expected("docker") => {
            return Err(format!("AGENTCAGE_TEST_EXPECT lists docker but: {why}").into())
        }
        Err(why) => {
            eprintln!("skip root::docker_seccomp: {why}");
            return Ok(());
        }
    };
    let ws = env.workspace()?;
    std::fs::set_permissions(
        ws.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .map_err(err)?;
    let profile = ws.path().join("agentcage-seccomp.json");
    let out = env.run(&[
        "export",
        "seccomp",
        "-o",
        profile.to_str().unwrap_or_default(),
    ])?;
    out.expect_code(0, "export seccomp -o")?;
    std::fs::write(ws.path().join("probe.c"), PROBE_C).map_err(err)?;
    // An image with nothing in it: the host's system dirs are bound read-only at run time.
    let image = format!("agentcage-export-test:{}", std::process::id());
    let tar = ws.path().join("empty.tar");
    let st = Command::new("tar")
        .args(["cf", tar.to_str().unwrap_or_default(), "-T", "/dev/null"])
        .status()
        .map_err(err)?;
    if !st.success() {
        return Err("tar of an empty image failed".into());
    }
    let (code, _, e) = docker.run(&["import", tar.to_str().unwrap_or_default(), &image])?;
    if code != 0 {
        return Err(format!("docker import: {e}").into());
    }
    let result = battery(&docker, ws.s(), &image, &profile);
    let _ = docker.run(&["rmi", "-f", &image]);
    result
}

fn battery(docker: &Docker, ws: &str, image: &str, profile: &Path) -> Result<(), Failed> {
    let sec = format!("seccomp={}", profile.display());
    let script = "set -e; gcc -O0 -o /tmp/probe /ws/probe.c; /tmp/probe OPS; \
        python3 -c 'import json, os, subprocess; print(\"python\", json.dumps([os.getpid() > 0]))'; \
        git init -q /tmp/r && git -C /tmp/r -c user.name=t -c user.email=t@t commit -q \
        --allow-empty -m x && echo git $(git -C /tmp/r rev-list --count HEAD); \
        echo written > /ws/out-$(id -u); echo sh ok"
        .replace("OPS", &OPS.join(" "));
    for user in ["0:0", "65534:65534"] {
        // The profile, and a control without any seccomp filter (and CAP_SYS_ADMIN, so that
        // the kernel itself would let mount and bpf through): every denial must differ.
        let profile_args = ["--user", user, "--security-opt", &sec];
        let control_args = [
            "--user",
            user,
            "--security-opt",
            "seccomp=unconfined",
            "--cap-add",
            "SYS_ADMIN",
        ];
        let mut seen = Vec::new();
        for (label, security) in [
            ("profile", &profile_args[..]),
            ("control", &control_args[..]),
        ] {
            let mut args = docker_run_args(ws, image, security);
            args.extend(["/bin/sh", "-c", &script].map(String::from));
            let argv: Vec<&str> = args.iter().map(String::as_str).collect();
            let (code, out, e) = docker.run(&argv)?;
            if code != 0 {
                return Err(format!("{label} as {user}: exit {code}\n{out}\n{e}").into());
            }
            for want in ["python [true]", "git 1", "sh ok"] {
                if !out.contains(want) {
                    return Err(format!("{label} as {user}: no {want:?} in\n{out}\n{e}").into());
                }
            }
            let uid = user.split(':').next().unwrap_or_default();
            let written = std::fs::read_to_string(Path::new(ws).join(format!("out-{uid}")));
            if written.map_err(err)?.trim() != "written" {
                return Err(format!("{label} as {user}: the workspace write did not land").into());
            }
            seen.push(parse_probe(&out));
        }
        for op in OPS {
            let want = expected_under_profile(op);
            let got = seen[0].get(op).cloned().unwrap_or_default();
            if got != want {
                return Err(format!(
                    "as {user}: {op}: {got:?} under the profile, want {want:?}\n{:?}",
                    seen[0]
                )
                .into());
            }
            let control = seen[1].get(op).cloned().unwrap_or_default();
            // Without capabilities (uid 65534) the kernel itself refuses these: the root
            // run is their control.
            let cap_gated = matches!(op, "mount" | "clone_newns" | "bpf");
            if op != "getpid" && control == want && !(user != "0:0" && cap_gated) {
                return Err(format!(
                    "as {user}: {op} answers {control:?} without the profile too: the test proves nothing"
                )
                .into());
            }
            eprintln!("  as {user}: {op:16} profile: {got:12} control: {control}");
        }
    }
    Ok(())
}

/// The battery in a container, as a shell script: the probe (built by gcc inside), python,
/// git, a write into the workspace, and `extra` (a limit check).
fn battery_script(ws: &str, extra: &str) -> String {
    format!(
        "set -e; gcc -O0 -o /tmp/probe {ws}/probe.c; /tmp/probe {ops}; \
         python3 -c 'import json, os; print(\"python\", json.dumps([os.getpid() > 0]))'; \
         git init -q /tmp/r && git -C /tmp/r -c user.name=t -c user.email=t@t commit -q \
         --allow-empty -m x && echo git $(git -C /tmp/r rev-list --count HEAD); \
         echo written > {ws}/out-oci; {extra}; echo sh ok",
        ops = OPS.join(" ")
    )
}

/// Checks a battery's output: every operation as `full` answers it, the tools worked.
fn check_battery(label: &str, out: &str) -> Result<BTreeMap<String, String>, Failed> {
    let seen = parse_probe(out);
    for want in ["python", "git", "sh"] {
        if !seen.contains_key(want) {
            return Err(format!("{label}: {want} did not run\n{out}").into());
        }
    }
    for op in OPS {
        let want = expected_under_profile(op);
        let got = seen.get(op).cloned().unwrap_or_default();
        if got != want {
            return Err(format!("{label}: {op}: {got:?}, want {want:?}\n{out}").into());
        }
    }
    Ok(seen)
}

/// Fork until refused (children sleep): how many a pids limit lets through.
const FORKS: &str = "python3 -c 'import os, time\nn = []\nfor i in range(200):\n    try:\n        p = os.fork()\n    except OSError:\n        break\n    if p == 0:\n        time.sleep(2)\n        os._exit(0)\n    n.append(p)\nprint(\"forks\", len(n))\nfor p in n:\n    os.waitpid(p, 0)'";

/// crun 1.8 refuses a hybrid cgroup layout whose v2 side has controllers (this machine
/// kind: hugetlb). Root hides the v2 mount in a private mount namespace of its own for the
/// run; a rootless caller cannot.
fn hybrid_cgroup_with_controllers() -> bool {
    std::fs::read_to_string("/sys/fs/cgroup/unified/cgroup.controllers")
        .is_ok_and(|c| !c.trim().is_empty())
}

fn oci_run(env: &Env, runtime: &str) -> Result<(), Failed> {
    let hybrid = hybrid_cgroup_with_controllers();
    let dir = env.policy_dir()?;
    let ws = env.workspace()?;
    let rootfs = dir.path().join("rootfs");
    let bundle = dir.path().join("bundle");
    let state = dir.path().join("state");
    for d in [&rootfs, &bundle, &state] {
        std::fs::create_dir_all(d).map_err(err)?;
        env.chown_to_sandbox(d)?;
    }
    std::fs::write(ws.path().join("probe.c"), PROBE_C).map_err(err)?;
    env.chown_tree(ws.path())?;
    // Root: a pids limit in the runtime's cgroup. Rootless (no cgroup of our own on this
    // machine kind): an rlimit, and no cgroup resources (runc refuses them).
    let (limits, extra): (&[&str], &str) = if env.who == Who::Root {
        (&["--pids", "64"], FORKS)
    } else {
        (
            &["--memory", "max", "--pids", "max", "--nofile", "100"],
            "echo nofile $(ulimit -n)",
        )
    };
    let script = battery_script(ws.s(), extra);
    let mut args = vec![
        "export",
        "oci",
        "--workspace",
        ws.s(),
        "--rootfs",
        rootfs.to_str().unwrap_or_default(),
        "-o",
        bundle.to_str().unwrap_or_default(),
    ];
    args.extend_from_slice(limits);
    args.extend(["--", "/bin/sh", "-c", &script]);
    env.run(&args)?.expect_code(0, "export oci")?;
    let config = json(
        &std::fs::read_to_string(bundle.join("config.json")).map_err(err)?,
        "config.json",
    )?;
    if config["process"]["capabilities"]["bounding"] != serde_json::json!([])
        || config["process"]["noNewPrivileges"] != true
        || config["root"]["readonly"] != true
    {
        return Err(format!("config.json is not locked down: {}", config["process"]).into());
    }
    let id = format!(
        "agentcage-t-{runtime}-{}-{}",
        env.who.name(),
        std::process::id()
    );
    let rt_root = state.join(runtime);
    let mut c = if runtime == "crun" && hybrid {
        let mut c = Command::new("unshare");
        c.args(["-m", "--propagation", "private", "sh", "-c"])
            .arg(format!(
                "umount -l /sys/fs/cgroup/unified && exec crun --root {} run -b {} {id}",
                rt_root.display(),
                bundle.display()
            ));
        c
    } else {
        let mut c = Command::new(runtime);
        c.arg("--root")
            .arg(&rt_root)
            .args(["run", "-b"])
            .arg(&bundle)
            .arg(&id);
        c
    };
    c.current_dir(dir.path())
        .env("XDG_RUNTIME_DIR", &state)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if env.who == Who::Nobody && agentcage::geteuid() == 0 {
        std::os::unix::process::CommandExt::uid(&mut c, 65534);
        std::os::unix::process::CommandExt::gid(&mut c, 65534);
    }
    let child = c.spawn().map_err(|e| format!("spawn {runtime}: {e}"))?;
    let o = child.wait_with_output().map_err(err)?;
    let out = String::from_utf8_lossy(&o.stdout);
    let label = format!("{runtime} as {}", env.who.name());
    if !o.status.success() {
        return Err(format!(
            "{label}: exit {}\n{out}\n{}",
            common::code_of(o.status),
            String::from_utf8_lossy(&o.stderr)
        )
        .into());
    }
    let seen = check_battery(&label, &out)?;
    let written = std::fs::read_to_string(ws.path().join("out-oci")).map_err(err)?;
    if written.trim() != "written" {
        return Err(format!("{label}: the workspace write did not land").into());
    }
    if env.who == Who::Root {
        let forks: u32 = seen
            .get("forks")
            .and_then(|f| f.parse().ok())
            .unwrap_or(999);
        if forks >= 64 {
            return Err(format!("{label}: {forks} forks under pids 64").into());
        }
        eprintln!("  {label}: {forks} forks under pids 64");
    } else if seen.get("nofile").map(String::as_str) != Some("100") {
        return Err(format!("{label}: RLIMIT_NOFILE not 100: {:?}", seen.get("nofile")).into());
    }
    Ok(())
}

fn oci_runc(env: &Env) -> Result<(), Failed> {
    oci_run(env, "runc")
}

fn oci_crun(env: &Env) -> Result<(), Failed> {
    oci_run(env, "crun")
}

/// The manifests of a fixed policy (explicit limits: the defaults depend on the host's RAM).
const K8S_ARGS: &[&str] = &[
    "export",
    "k8s",
    "--image",
    "registry.example/agent:1",
    "--memory",
    "2G",
    "--pids",
    "256",
    "--cpus",
    "1.5",
    "--net",
    "host",
    "--tcp-connect",
    "443",
];

fn snapshot(name: &str, got: &str) -> Result<(), Failed> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/snapshots")
        .join(name);
    if std::env::var_os("AGENTCAGE_BLESS").is_some() {
        std::fs::write(&path, got).map_err(err)?;
        return Ok(());
    }
    let want = std::fs::read_to_string(&path)
        .map_err(|e| format!("{}: {e} (AGENTCAGE_BLESS=1 writes it)", path.display()))?;
    if want != got {
        return Err(format!(
            "{} differs from the output (review, then AGENTCAGE_BLESS=1):\n{got}",
            path.display()
        )
        .into());
    }
    Ok(())
}

/// Splits the YAML stream (`---` then one JSON document each).
fn documents(text: &str) -> Result<Vec<Value>, Failed> {
    text.split("---\n")
        .filter(|d| !d.trim().is_empty())
        .map(|d| json(d, "manifest document"))
        .collect()
}

/// `kubernetes-validate` against the 1.36 schemas, strict (unknown fields fail).
fn validate(file: &Path) -> Result<Option<String>, Failed> {
    let o = match Command::new("kubernetes-validate")
        .args(["-k", "1.36.0", "--strict"])
        .arg(file)
        .output()
    {
        Ok(o) => o,
        Err(e) => return Ok(Some(format!("kubernetes-validate not runnable: {e}"))),
    };
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    if !o.status.success() || text.contains("ERROR") || text.contains("failed") {
        return Err(format!("kubernetes-validate {}:\n{text}", file.display()).into());
    }
    Ok(None)
}

fn export_k8s(env: &Env) -> Result<(), Failed> {
    let dir = env.policy_dir()?;
    let mut checked = Vec::new();
    for (template, snap) in [
        (false, "export_k8s_pod.yaml"),
        (true, "export_k8s_template.yaml"),
    ] {
        let mut args = K8S_ARGS.to_vec();
        if template {
            args.push("--template");
        }
        args.extend(["--", "python3", "agent.py"]);
        let out = env.run(&args)?;
        out.expect_code(0, "export k8s")?;
        snapshot(snap, &out.stdout)?;
        let docs = documents(&out.stdout)?;
        let workload = docs.last().ok_or("no documents")?;
        let spec = if template {
            if workload["kind"] != "SandboxTemplate" {
                return Err(format!("--template gave {}", workload["kind"]).into());
            }
            workload["spec"]["podTemplate"]["spec"].clone()
        } else {
            workload["spec"].clone()
        };
        // What the issue asks of the pod.
        let c = &spec["containers"][0];
        let sc = &c["securityContext"];
        let ok = spec["hostUsers"] == false
            && spec["automountServiceAccountToken"] == false
            && spec["securityContext"]["seccompProfile"]["type"] == "Localhost"
            && sc["allowPrivilegeEscalation"] == false
            && sc["readOnlyRootFilesystem"] == true
            && sc["capabilities"]["drop"] == serde_json::json!(["ALL"])
            && c["resources"]["limits"]["memory"] == "2147483648"
            && c["command"] == serde_json::json!(["agentcage"])
            && c["args"]
                .as_array()
                .is_some_and(|a| a.iter().any(|x| x == "--policy"));
        if !ok {
            return Err(format!("pod spec misses a required setting:\n{spec:#}").into());
        }
        // Validate every document the schemas know; a SandboxTemplate's pod spec as a Pod.
        let mut known: Vec<Value> = docs
            .iter()
            .filter(|d| d["kind"] != "SandboxTemplate")
            .cloned()
            .collect();
        if template {
            known.push(serde_json::json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "from-template"}, "spec": spec,
            }));
        }
        let file = dir.path().join(snap);
        let text: String = known.iter().map(|d| format!("---\n{d:#}\n")).collect();
        std::fs::write(&file, text).map_err(err)?;
        checked.push(file);
    }
    // The validator must be able to say no: a pod with an unknown field.
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "apiVersion: v1\nkind: Pod\nmetadata: {name: x}\nspec: {containers: [{name: a, image: b}], hostUsersTypo: false}\n",
    )
    .map_err(err)?;
    match validate(&bad) {
        // Refused, as it must be.
        Err(_) => {}
        Ok(None) => return Err("kubernetes-validate accepted a pod with an unknown field".into()),
        Ok(Some(why)) if expected("kubernetes-validate") => {
            return Err(
                format!("AGENTCAGE_TEST_EXPECT lists kubernetes-validate but: {why}").into(),
            )
        }
        Ok(Some(why)) => {
            eprintln!("skip {}::export_k8s validation: {why}", env.who.name());
            return Ok(());
        }
    }
    for f in checked {
        if let Some(why) = validate(&f)? {
            return Err(why.into());
        }
    }
    Ok(())
}

fn main() {
    let args = Arguments::from_args();
    let both: &[(&str, TestFn)] = &[
        ("export_seccomp_shape", export_seccomp_shape),
        ("export_k8s", export_k8s),
    ];
    let mut trials: Vec<Trial> = common::trials_for_both(both);
    let root = agentcage::geteuid() == 0;
    let missing = if !root {
        Some("docker needs root".to_string())
    } else if Command::new("dockerd").arg("--version").output().is_err() {
        Some("dockerd is not installed (.ci/run installs docker.io)".to_string())
    } else if Command::new("gcc").arg("--version").output().is_err() {
        Some("gcc is not installed".to_string())
    } else {
        None
    };
    if let (Some(why), true) = (&missing, expected("docker")) {
        panic!("AGENTCAGE_TEST_EXPECT lists docker but: {why}");
    }
    trials.push(common::trial(
        Who::Root,
        "docker_seccomp",
        docker_seccomp,
        missing,
    ));
    for (name, runtime, f) in [
        ("oci_runc", "runc", oci_runc as TestFn),
        ("oci_crun", "crun", oci_crun as TestFn),
    ] {
        let missing = match Command::new(runtime).arg("--version").output() {
            Ok(_) => None,
            Err(_) => Some(format!("{runtime} is not installed (.ci/run installs it)")),
        };
        if let (Some(why), true) = (&missing, expected(runtime)) {
            panic!("AGENTCAGE_TEST_EXPECT lists {runtime} but: {why}");
        }
        for who in [Who::Root, Who::Nobody] {
            let hybrid = (runtime == "crun"
                && who == Who::Nobody
                && hybrid_cgroup_with_controllers())
            .then(|| {
                "crun 1.8 refuses this host's hybrid cgroup layout (controllers on the v2 \
                     side), and only root can hide it"
                    .to_string()
            });
            if let (Some(why), true) = (&hybrid, expected("crun-rootless")) {
                panic!("AGENTCAGE_TEST_EXPECT lists crun-rootless but: {why}");
            }
            let skip = missing
                .clone()
                .or(hybrid)
                .or_else(|| common::skip_reason(who));
            trials.push(common::trial(who, name, f, skip));
        }
    }
    common::run(&args, trials)
}
