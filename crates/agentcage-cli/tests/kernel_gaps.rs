//! Sandbox tier, issue 10's kernel-level findings: set-id files (9), TCP Fast Open under
//! Landlock's TCP rules (5), the caller's session keyring (7) and per-user kernel counts
//! (6). Each trial runs as root and as uid 65534 (see `sandbox.rs` for the conventions).

mod common;

use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;

use common::{Env, TestFn, Who};
use libtest_mimic::{Arguments, Failed};

/// Finding 9: `full` refuses S_ISUID/S_ISGID on every path that sets a mode, and no
/// set-id file reaches the host's disk.
fn setid_bits_refused(env: &Env) -> Result<(), Failed> {
    let ws = env.workspace()?;
    let script = r#"
import os, errno
def t(what, f):
    try:
        f()
        print(what, "ok")
    except OSError as e:
        print(what, errno.errorcode[e.errno])
open("f", "w").close()
t("chmod-4755", lambda: os.chmod("f", 0o4755))
t("chmod-2755", lambda: os.chmod("f", 0o2755))
t("chmod-1755", lambda: os.chmod("f", 0o1755))
t("chmod-755", lambda: os.chmod("f", 0o755))
fd = os.open("f", os.O_RDONLY)
t("fchmod-4755", lambda: os.fchmod(fd, 0o4755))
t("creat-4755", lambda: os.close(os.open("g", os.O_CREAT | os.O_WRONLY, 0o4755)))
t("creat-2755", lambda: os.close(os.open("g2", os.O_CREAT | os.O_WRONLY, 0o2755)))
t("creat-755", lambda: os.close(os.open("h", os.O_CREAT | os.O_WRONLY, 0o755)))
t("mknod-4755", lambda: os.mknod("m", 0o104755))
"#;
    let out = env.run(&[
        "run",
        "-p",
        "full",
        "-w",
        ws.s(),
        "--",
        "sh",
        "-c",
        &format!(
            "python3 -c '{}'; chmod u+s f; echo chmod-u+s=$?; chmod g+s f; echo chmod-g+s=$?",
            script.replace('\'', "\"")
        ),
    ])?;
    out.expect_code(0, "full")?;
    for want in [
        "chmod-4755 EPERM",
        "chmod-2755 EPERM",
        "chmod-1755 ok",
        "chmod-755 ok",
        "fchmod-4755 EPERM",
        "creat-4755 EPERM",
        "creat-2755 EPERM",
        "creat-755 ok",
        "mknod-4755 EPERM",
        "chmod-u+s=1",
        "chmod-g+s=1",
    ] {
        if !out.stdout.lines().any(|l| l.trim() == want) {
            return Err(format!("missing {want:?}:\n{}\n{}", out.stdout, out.stderr).into());
        }
    }
    for e in std::fs::read_dir(ws.path())
        .map_err(|e| e.to_string())?
        .flatten()
    {
        let mode = e
            .metadata()
            .map_err(|e| e.to_string())?
            .permissions()
            .mode();
        if mode & 0o6000 != 0 {
            return Err(format!("{} is set-id on the host: {mode:o}", e.path().display()).into());
        }
    }
    Ok(())
}

/// Whether this kernel has Landlock TCP rules (ABI 4+).
fn landlock_net_missing() -> Option<String> {
    // SAFETY: LANDLOCK_CREATE_RULESET_VERSION with a null attr only queries the ABI.
    let abi = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<u8>(),
            0usize,
            1u32,
        )
    };
    (abi < 4).then(|| format!("Landlock ABI {abi} has no TCP rules (needs 4)"))
}

/// Finding 5: under `--net host --tcp-connect P`, TCP Fast Open (sendto/sendmsg with
/// MSG_FASTOPEN, TCP_FASTOPEN_CONNECT) cannot reach another port Q; a plain connect to P
/// still works. Loopback only.
fn tcp_fast_open_refused(env: &Env) -> Result<(), Failed> {
    // Without Landlock TCP rules the trial is ignored (see main), unless the host is
    // expected to have them.
    if let Some(why) = landlock_net_missing() {
        return Err(why.into());
    }
    let allowed = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let other = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let p = allowed.local_addr().map_err(|e| e.to_string())?.port();
    let q = other.local_addr().map_err(|e| e.to_string())?.port();
    let script = format!(
        r#"
import socket, errno
def t(what, f):
    s = socket.socket()
    s.settimeout(3)
    try:
        f(s)
        print(what, "connected")
    except OSError as e:
        # Python names 95 ENOTSUP; on Linux it is also EOPNOTSUPP.
        name = "EOPNOTSUPP" if e.errno == errno.EOPNOTSUPP else errno.errorcode.get(e.errno)
        print(what, name)
    s.close()
t("plain-P", lambda s: s.connect(("127.0.0.1", {p})))
t("plain-Q", lambda s: s.connect(("127.0.0.1", {q})))
t("sendto-Q", lambda s: s.sendto(b"x", socket.MSG_FASTOPEN, ("127.0.0.1", {q})))
t("sendmsg-Q", lambda s: s.sendmsg([b"x"], [], socket.MSG_FASTOPEN, ("127.0.0.1", {q})))
def foc(s):
    s.setsockopt(socket.IPPROTO_TCP, 30, 1)
    s.connect(("127.0.0.1", {q}))
    s.send(b"x")
t("fastopen-connect-Q", foc)
"#
    );
    let out = env.run(&[
        "run",
        "-p",
        "full",
        "-q",
        "--net",
        "host",
        "--tcp-connect",
        &p.to_string(),
        "-w",
        "/tmp",
        "--",
        "python3",
        "-c",
        &script,
    ])?;
    out.expect_code(0, "full --net host")?;
    for want in [
        "plain-P connected",
        "plain-Q EACCES",
        "sendto-Q EOPNOTSUPP",
        "sendmsg-Q EOPNOTSUPP",
        "fastopen-connect-Q EOPNOTSUPP",
    ] {
        if !out.stdout.lines().any(|l| l.trim() == want) {
            return Err(format!("missing {want:?}:\n{}\n{}", out.stdout, out.stderr).into());
        }
    }
    // Port Q saw no handshake (without the filter, a Fast Open SYN completes one).
    other.set_nonblocking(true).map_err(|e| e.to_string())?;
    if let Ok((_, from)) = other.accept() {
        return Err(format!("port {q} accepted a connection from {from}").into());
    }
    Ok(())
}

/// Finding 7: a key in the caller's session keyring is not reachable inside (profiles
/// without the seccomp filter, which refuses keyctl on its own).
fn session_keyring_not_inherited(env: &Env) -> Result<(), Failed> {
    let ws = env.workspace()?;
    // KEYCTL_SEARCH (10) the session keyring (-3) for the bait, then KEYCTL_READ (11) it.
    let script = r#"
import ctypes, errno
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
kid = libc.syscall(250, 10, -3, b"user", b"agentcage-test-bait", 0)
if kid < 0:
    print("search", errno.errorcode[ctypes.get_errno()])
else:
    buf = ctypes.create_string_buffer(64)
    n = libc.syscall(250, 11, ctypes.c_long(kid), buf, 64)
    print("read", buf.raw[:n] if n >= 0 else errno.errorcode[ctypes.get_errno()])
"#;
    for p in ["ns-only", "landlock"] {
        let out = env.run_with(
            &["run", "-p", p, "-w", ws.s(), "--", "python3", "-c", script],
            |c| {
                // SAFETY: runs in the forked child before exec; only raw syscalls on
                // static data.
                unsafe {
                    c.pre_exec(|| {
                        // A session keyring of our own (not the test runner's), holding the bait.
                        if libc::syscall(libc::SYS_keyctl, 1, std::ptr::null::<u8>()) < 0
                            || libc::syscall(
                                libc::SYS_add_key,
                                c"user".as_ptr(),
                                c"agentcage-test-bait".as_ptr(),
                                c"hunter2".as_ptr(),
                                7usize,
                                -3i32,
                            ) < 0
                        {
                            return Err(std::io::Error::last_os_error());
                        }
                        Ok(())
                    });
                }
            },
        )?;
        out.expect_code(0, p)?;
        if out.stdout.trim() != "search ENOKEY" {
            return Err(format!(
                "{p}: the caller's key is reachable: {}{}",
                out.stdout, out.stderr
            )
            .into());
        }
    }
    Ok(())
}

/// Half of the host's value of `/proc/sys/user/<name>` (what the sandbox is capped at).
fn host_half(name: &str) -> Result<u64, Failed> {
    let v: u64 = std::fs::read_to_string(format!("/proc/sys/user/{name}"))
        .map_err(|e| format!("read {name}: {e}"))?
        .trim()
        .parse()
        .map_err(|e| format!("parse {name}: {e}"))?;
    Ok(v.div_ceil(2))
}

/// Finding 6: the sandbox's per-user counts are capped in its own user namespace (half of
/// the owner's), and, as root, the namespace belongs to the sandbox's host uid: host root
/// can still create inotify instances while the sandbox holds every one it may.
fn user_counts_capped(env: &Env) -> Result<(), Failed> {
    let ws = env.workspace()?;
    let cap = host_half("max_inotify_instances")?;
    let marker = ws.path().join("holding");
    let script = r#"
import ctypes, errno, fcntl, os, resource, struct, time
libc = ctypes.CDLL(None, use_errno=True)
print("max", open("/proc/sys/user/max_inotify_instances").read().strip())
print("sigpending", resource.getrlimit(resource.RLIMIT_SIGPENDING)[0])
fd = os.open("/proc/self/ns/user", os.O_RDONLY)
buf = bytearray(4)
fcntl.ioctl(fd, 0xb704, buf)  # NS_GET_OWNER_UID, as seen inside
print("owner", struct.unpack("I", buf)[0])
fds = []
while len(fds) < 100000:
    r = libc.inotify_init1(0)
    if r < 0:
        break
    fds.append(r)
print("held", len(fds), errno.errorcode.get(ctypes.get_errno()), flush=True)
# POSIX timers preallocate a queued signal each: RLIMIT_SIGPENDING bounds them.
tid = ctypes.c_void_p()
timers = 0
while timers < 1000000 and libc.timer_create(1, None, ctypes.byref(tid)) == 0:
    timers += 1
print("timers", timers, errno.errorcode.get(ctypes.get_errno()), flush=True)
open("holding", "w").close()
time.sleep(2)
"#;
    // The root and nobody trials both charge host uid 65534 (as root, the sandbox's host
    // uid owns its namespace): one at a time, as the cap is half of that uid's budget.
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    // SAFETY: geteuid cannot fail.
    let as_nobody = env.who == Who::Nobody && unsafe { libc::geteuid() } == 0;
    let probe = std::thread::spawn(move || {
        // While the sandbox holds its inotify instances: can the caller (host root, or uid
        // 65534 for the nobody trial) still get one? inotify charges the euid, and a raw
        // setresuid changes only this thread's.
        if as_nobody {
            // SAFETY: integer-only syscall on this thread.
            if unsafe { libc::syscall(libc::SYS_setresuid, -1, 65534, -1) } != 0 {
                return Err("setresuid(-1, 65534, -1) on the probe thread failed".to_string());
            }
        }
        if common::settle(|| marker.exists()).is_err() {
            return Err("the sandbox never said it holds its instances".to_string());
        }
        // SAFETY: plain syscall; the fd is closed right away.
        let fd = unsafe { libc::inotify_init1(libc::IN_CLOEXEC) };
        if fd < 0 {
            return Err(format!(
                "host inotify_init1 failed while the sandbox ran: {}",
                std::io::Error::last_os_error()
            ));
        }
        // SAFETY: our own fd.
        unsafe { libc::close(fd) };
        // Queued signals are charged to the real uid: only the root trial's probe (real
        // uid 0) speaks for the caller here.
        if !as_nobody {
            let mut t: libc::timer_t = std::ptr::null_mut();
            // SAFETY: a null sigevent means SIGALRM on expiry; `t` is a live out-parameter
            // and the timer is deleted right away, unarmed.
            let rc =
                unsafe { libc::timer_create(libc::CLOCK_MONOTONIC, std::ptr::null_mut(), &mut t) };
            if rc != 0 {
                return Err(format!(
                    "host timer_create failed while the sandbox ran: {}",
                    std::io::Error::last_os_error()
                ));
            }
            // SAFETY: the timer just created.
            unsafe { libc::timer_delete(t) };
        }
        Ok(())
    });
    let out = env.run(&[
        "run",
        "-p",
        "ns-only",
        "-w",
        ws.s(),
        "--",
        "python3",
        "-c",
        script,
    ])?;
    let probed = probe.join().map_err(|_| "probe thread panicked")?;
    out.expect_code(0, "ns-only")?;
    probed?;
    let line = |k: &str| {
        out.stdout
            .lines()
            .find_map(|l| l.strip_prefix(k).map(|v| v.trim().to_string()))
            .ok_or_else(|| format!("no {k:?} in {}\n{}", out.stdout, out.stderr))
    };
    // Under ns-only the command runs in a nested user namespace (its mounts are locked),
    // whose own /proc/sys/user values are the kernel's defaults: the sandbox's namespace,
    // one level up, holds the cap, and the count below must still stop at it.
    let shown: u64 = line("max ")?
        .parse()
        .map_err(|_| line("max ").unwrap_or_default())?;
    if shown != cap && shown != i32::MAX as u64 {
        return Err(format!("max_inotify_instances inside: {shown} (want {cap})").into());
    }
    let held = line("held ")?;
    let n: u64 = held
        .split(' ')
        .next()
        .unwrap_or("")
        .parse()
        .map_err(|_| held.clone())?;
    if n > cap || !held.ends_with("EMFILE") {
        return Err(format!("held {held}: more than the cap {cap} or not stopped by it").into());
    }
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: reads our own limit into a live local.
    unsafe { libc::getrlimit(libc::RLIMIT_SIGPENDING, &mut rl) };
    let timers = line("timers ")?;
    let t: u64 = timers
        .split(' ')
        .next()
        .unwrap_or("")
        .parse()
        .map_err(|_| timers.clone())?;
    if rl.rlim_cur != libc::RLIM_INFINITY
        && (t > rl.rlim_cur.div_ceil(2) || !timers.ends_with("EAGAIN"))
    {
        return Err(format!(
            "timers {timers}: more than half of RLIMIT_SIGPENDING {} or not stopped by it",
            rl.rlim_cur
        )
        .into());
    }
    if rl.rlim_cur != libc::RLIM_INFINITY
        && line("sigpending ")? != rl.rlim_cur.div_ceil(2).to_string()
    {
        return Err(format!(
            "RLIMIT_SIGPENDING inside: {} (want half of {})",
            line("sigpending ")?,
            rl.rlim_cur
        )
        .into());
    }
    // Owned by the sandbox's host uid, which is inside uid 0 (root: before the fix, host
    // root owned it, unmapped inside: the overflow uid 65534).
    if line("owner ")? != "0" {
        return Err(format!(
            "the user namespace's owner is not the sandbox's uid: {}",
            line("owner ")?
        )
        .into());
    }
    Ok(())
}

fn main() {
    let args = Arguments::from_args();
    let tests: &[(&str, TestFn)] = &[
        ("setid_bits_refused", setid_bits_refused),
        ("tcp_fast_open_refused", tcp_fast_open_refused),
        (
            "session_keyring_not_inherited",
            session_keyring_not_inherited,
        ),
        ("user_counts_capped", user_counts_capped),
    ];
    let mut trials = Vec::new();
    for who in [Who::Root, Who::Nobody] {
        for &(name, f) in tests {
            let mut skip = common::skip_reason(who);
            if name == "tcp_fast_open_refused" && !common::expected("landlock") {
                skip = skip.or_else(landlock_net_missing);
            }
            trials.push(common::trial(who, name, f, skip));
        }
    }
    common::run(&args, trials)
}
