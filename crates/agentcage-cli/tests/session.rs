//! Sessions (issue #13): `session start`, `exec`, `session list/stop`, run as root and as
//! uid 65534, each trial with its own XDG_RUNTIME_DIR (never the host's /run/agentcage).
//!
//! - `exit_codes`: the command's code, 128+N, 126/127, 125 for a bad --cwd and for a
//!   session that is gone; `stdio_intact`: stdin piped in, 100 MB of stdout out, intact.
//! - `background_persists`, `cwd_and_env`: state survives between execs; each exec has its
//!   own directory and variables.
//! - `timeout_kills_only_its_group`: --timeout ends the exec's process group (124), not a
//!   background process of an earlier exec.
//! - `ctrl_c_through_tty`: a ^C typed on the caller's terminal reaches the exec's foreground
//!   command through the session's pty, and nothing else.
//! - `other_uid_refused` (root): another uid cannot exec, not even with the socket open to it
//!   (SO_PEERCRED). `socket_not_visible_inside`: the control socket cannot be found from
//!   inside, and a runtime directory under the workspace is refused.
//! - `stop_leaves_nothing`, `sigkill_leaves_nothing`: no process, socket, state file or
//!   cgroup leaf stays (after a SIGKILL of the supervisor, the next `session list` reaps).
//! - `fork_bomb_bounded`: a fork bomb in one exec is bounded by --pids; the next exec works.
//! - `bad_frames`: garbage, unknown ops and fields, bad fds (a directory, O_PATH) and an
//!   oversized length get error frames; the session keeps working.
//! - `placeholders_for_the_session` (issue #15): the missing default protected paths get
//!   run's read-only placeholders for the session's life (a run on the same workspace that
//!   ends meanwhile leaves them, a start that fails removes its own); an exec cannot create
//!   a git hook or an `.envrc`, and nothing is left on the host after stop.

mod common;

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{code_of, err, settle, wait_deadline, Env, Out, TestFn, Who};
use libtest_mimic::{Arguments, Failed};

fn is_root() -> bool {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() == 0 }
}

fn uid_of(who: Who) -> u32 {
    if who == Who::Nobody && is_root() {
        65534
    } else {
        // SAFETY: geteuid cannot fail.
        unsafe { libc::geteuid() }
    }
}

/// A started session with its own runtime directory; stopped (and checked) on drop.
struct Session<'a> {
    env: &'a Env,
    xdg: PathBuf,
    name: String,
    ws: common::Scratch,
}

impl<'a> Session<'a> {
    fn start(env: &'a Env, extra: &[&str]) -> Result<Session<'a>, Failed> {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let xdg = std::env::temp_dir().join(format!(
            "agentcage-t-xdg-{}-{}-{n}",
            env.who.name(),
            std::process::id()
        ));
        std::fs::create_dir_all(&xdg).map_err(err)?;
        std::fs::set_permissions(&xdg, std::fs::Permissions::from_mode(0o700)).map_err(err)?;
        let u = uid_of(env.who);
        std::os::unix::fs::chown(&xdg, Some(u), Some(u)).map_err(err)?;
        let ws = env.workspace()?;
        let mut s = Session {
            env,
            xdg,
            name: format!("t{n}"),
            ws,
        };
        let mut args = vec!["session", "start", "--name", &s.name, "-q", "-w", s.ws.s()];
        args.extend(extra);
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = s.run(&args, |_| {})?;
        o.expect_code(0, "session start")?;
        if o.stdout.trim() != s.name {
            return Err(format!("session start printed {:?}", o.stdout).into());
        }
        s.name = o.stdout.trim().to_string();
        Ok(s)
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = self.env.command_as_is(args);
        c.env("XDG_RUNTIME_DIR", &self.xdg);
        c
    }

    fn run(&self, args: &[&str], f: impl FnOnce(&mut Command)) -> Result<Out, Failed> {
        let mut c = self.command(args);
        c.stdin(Stdio::null());
        f(&mut c);
        let mut child = c
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(err)?;
        let mut out = String::new();
        let mut errs = String::new();
        let mut so = child.stdout.take().ok_or("stdout")?;
        let mut se = child.stderr.take().ok_or("stderr")?;
        let t = std::thread::spawn(move || {
            let mut e = String::new();
            let _ = se.read_to_string(&mut e);
            e
        });
        let _ = so.read_to_string(&mut out);
        let st = wait_deadline(&mut child, Duration::from_secs(60), "agentcage")?;
        errs.push_str(&t.join().unwrap_or_default());
        Ok(Out {
            code: code_of(st),
            stdout: out,
            stderr: errs,
        })
    }

    /// `agentcage exec NAME [flags] -- argv`.
    fn exec(&self, flags: &[&str], argv: &[&str]) -> Result<Out, Failed> {
        let mut a = vec!["exec", &self.name];
        a.extend(flags);
        a.push("--");
        a.extend(argv);
        self.run(&a, |_| {})
    }

    fn sh(&self, script: &str) -> Result<Out, Failed> {
        self.exec(&[], &["sh", "-c", script])
    }

    fn dir(&self) -> PathBuf {
        self.xdg.join("agentcage")
    }

    fn state(&self) -> Result<serde_json::Value, Failed> {
        let b = std::fs::read(self.dir().join(format!("{}.json", self.name))).map_err(err)?;
        serde_json::from_slice(&b).map_err(err)
    }

    fn stop(&self) -> Result<(), Failed> {
        self.run(&["session", "stop", &self.name], |_| {})?
            .expect_code(0, "session stop")
    }
}

impl Drop for Session<'_> {
    fn drop(&mut self) {
        let _ = self.stop();
        let _ = std::fs::remove_dir_all(&self.xdg);
    }
}

fn expect(o: &Out, code: i32, stdout: &str, what: &str) -> Result<(), Failed> {
    o.expect_code(code, what)?;
    if o.stdout != stdout {
        return Err(format!("{what}: stdout {:?}, want {stdout:?}", o.stdout).into());
    }
    Ok(())
}

fn exit_codes(env: &Env) -> Result<(), Failed> {
    let s = Session::start(env, &[])?;
    expect(&s.exec(&[], &["/bin/echo", "hello"])?, 0, "hello\n", "echo")?;
    s.sh("exit 7")?.expect_code(7, "exit 7")?;
    s.sh("kill -9 $$")?.expect_code(137, "SIGKILL")?;
    s.sh("kill -TERM $$")?.expect_code(143, "SIGTERM")?;
    let o = s.exec(&[], &["no-such-command"])?;
    o.expect_code(127, "not found")?;
    if !o.stderr.contains("ENOENT") {
        return Err(format!("not found: stderr {:?}", o.stderr).into());
    }
    s.exec(&[], &["/etc/passwd"])?
        .expect_code(126, "not executable")?;
    s.exec(&["--cwd", "/no/such/dir"], &["true"])?
        .expect_code(125, "bad cwd")?;
    // The session still works after all of that.
    expect(
        &s.exec(&[], &["/bin/echo", "still"])?,
        0,
        "still\n",
        "after",
    )?;
    s.stop()?;
    let o = s.exec(&[], &["true"])?;
    o.expect_code(125, "session gone")?;
    Ok(())
}

fn stdio_intact(env: &Env) -> Result<(), Failed> {
    let s = Session::start(env, &[])?;
    // stdin in: 4 MB of varied bytes come back byte for byte (sha256 on both sides).
    let input: Vec<u8> = (0..4_000_000u32).map(|i| (i * 7 + i / 251) as u8).collect();
    let mut c = s.command(&["exec", &s.name, "--", "cat"]);
    let mut child = c
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(err)?;
    let mut si = child.stdin.take().ok_or("stdin")?;
    let data = input.clone();
    let w = std::thread::spawn(move || si.write_all(&data));
    let mut got = Vec::new();
    child
        .stdout
        .take()
        .ok_or("stdout")?
        .read_to_end(&mut got)
        .map_err(err)?;
    w.join().map_err(|_| "writer")?.map_err(err)?;
    let st = wait_deadline(&mut child, Duration::from_secs(60), "exec cat")?;
    if code_of(st) != 0 || got != input {
        return Err(format!(
            "cat: exit {}, {} bytes back of {} (equal: {})",
            code_of(st),
            got.len(),
            input.len(),
            got == input
        )
        .into());
    }
    // 100 MB out.
    let mut c = s.command(&[
        "exec",
        &s.name,
        "--",
        "sh",
        "-c",
        "yes 0123456789abcdef | head -c 100000000",
    ]);
    let mut child = c
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(err)?;
    let mut out = child.stdout.take().ok_or("stdout")?;
    let mut total = 0usize;
    let mut bad = None;
    let mut buf = vec![0u8; 1 << 16];
    let pattern = b"0123456789abcdef\n";
    loop {
        let n = out.read(&mut buf).map_err(err)?;
        if n == 0 {
            break;
        }
        for (i, &b) in buf[..n].iter().enumerate() {
            if bad.is_none() && b != pattern[(total + i) % pattern.len()] {
                bad = Some(total + i);
            }
        }
        total += n;
    }
    let st = wait_deadline(&mut child, Duration::from_secs(60), "exec yes")?;
    if code_of(st) != 0 || total != 100_000_000 || bad.is_some() {
        return Err(format!(
            "100 MB: exit {}, {total} bytes, first wrong byte at {bad:?}",
            code_of(st)
        )
        .into());
    }
    Ok(())
}

fn background_persists(env: &Env) -> Result<(), Failed> {
    let s = Session::start(env, &[])?;
    let o =
        s.sh("sleep 300 >/dev/null 2>&1 & echo $!; echo state > /tmp/f; cd /tmp; export GONE=1")?;
    o.expect_code(0, "start a background process")?;
    let pid = o.stdout.trim().to_string();
    let o = s.sh(&format!(
        "kill -0 {pid} && echo alive; cat /tmp/f; echo \"GONE=$GONE\""
    ))?;
    expect(&o, 0, "alive\nstate\nGONE=\n", "second exec")?;
    Ok(())
}

fn cwd_and_env(env: &Env) -> Result<(), Failed> {
    let s = Session::start(env, &[])?;
    let o = s.exec(
        &["--cwd", "/tmp", "--env", "A=1", "-e", "B=two words"],
        &["sh", "-c", "pwd; echo \"$A $B\""],
    )?;
    expect(&o, 0, "/tmp\n1 two words\n", "--cwd /tmp --env")?;
    let o = s.sh("pwd; echo \"[$A]\"")?;
    expect(&o, 0, &format!("{}\n[]\n", s.ws.s()), "defaults")?;
    Ok(())
}

/// Processes named `sleep` in the session.
const COUNT_SLEEPS: &str =
    "n=0; for f in /proc/[0-9]*/comm; do read c < $f 2>/dev/null && [ \"$c\" = sleep ] && n=$((n+1)); done; echo $n";

fn timeout_kills_only_its_group(env: &Env) -> Result<(), Failed> {
    let s = Session::start(env, &[])?;
    s.sh("sleep 300 >/dev/null 2>&1 &")?
        .expect_code(0, "background")?;
    let t = Instant::now();
    let o = s.exec(
        &["--timeout", "1"],
        &["sh", "-c", "sleep 60 & sleep 60; echo never"],
    )?;
    o.expect_code(124, "--timeout 1")?;
    let took = t.elapsed();
    if took > Duration::from_secs(5) {
        return Err(format!("--timeout 1 took {took:?}").into());
    }
    // Its two sleeps are gone (SIGTERM to the group), the earlier exec's is not.
    settle(|| s.sh(COUNT_SLEEPS).is_ok_and(|o| o.stdout == "1\n"))
        .map_err(|()| format!("sleeps left: {:?}", s.sh(COUNT_SLEEPS).map(|o| o.stdout)))?;
    Ok(())
}

/// A pty pair the test owns.
fn openpty() -> Result<(OwnedFd, OwnedFd), Failed> {
    let ws = libc::winsize {
        ws_row: 24,
        ws_col: 80,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    let (mut m, mut s) = (-1, -1);
    // SAFETY: openpty fills two fds we then own; ws is a live winsize.
    let rc = unsafe { libc::openpty(&mut m, &mut s, std::ptr::null_mut(), std::ptr::null(), &ws) };
    if rc != 0 {
        return Err(format!("openpty: {}", std::io::Error::last_os_error()).into());
    }
    // SAFETY: fresh fds from openpty.
    Ok(unsafe { (OwnedFd::from_raw_fd(m), OwnedFd::from_raw_fd(s)) })
}

/// Reads the master until `want` shows up (or `limit`); returns everything read.
fn read_until(master: &OwnedFd, want: &str, limit: Duration) -> String {
    let mut got = Vec::new();
    let t = Instant::now();
    while t.elapsed() < limit && !String::from_utf8_lossy(&got).contains(want) {
        let mut p = libc::pollfd {
            fd: master.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one live pollfd.
        if unsafe { libc::poll(&mut p, 1, 100) } == 1 {
            let mut b = [0u8; 4096];
            // SAFETY: b is live.
            let n = unsafe { libc::read(master.as_raw_fd(), b.as_mut_ptr().cast(), b.len()) };
            if n <= 0 {
                break;
            }
            got.extend_from_slice(&b[..n as usize]);
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

fn ctrl_c_through_tty(env: &Env) -> Result<(), Failed> {
    let s = Session::start(env, &[])?;
    // A background process of an earlier exec must not see the ^C.
    s.sh("sleep 300 >/dev/null 2>&1 &")?
        .expect_code(0, "background")?;
    let (master, slave) = openpty()?;
    let script = "trap 'echo got-int; exit 3' INT; tty; echo ready; while :; do sleep 0.1; done";
    let mut c = s.command(&["exec", &s.name, "--", "sh", "-c", script]);
    let sl = slave.as_raw_fd();
    // SAFETY: pre_exec in the forked child: setsid, TIOCSCTTY and dup2 are async-signal-safe.
    unsafe {
        c.pre_exec(move || {
            libc::setsid();
            libc::ioctl(sl, libc::TIOCSCTTY, 0);
            for fd in 0..3 {
                libc::dup2(sl, fd);
            }
            Ok(())
        });
    }
    let mut child = c.spawn().map_err(err)?;
    drop(slave);
    let seen = read_until(&master, "ready", Duration::from_secs(20));
    if !seen.contains("ready") || !seen.contains("/dev/pts/") {
        let _ = child.kill();
        let _ = child.wait();
        return Err(format!("no tty/ready from the exec: {seen:?}").into());
    }
    // ^C on the caller's terminal.
    // SAFETY: one byte from a live buffer.
    unsafe { libc::write(master.as_raw_fd(), b"\x03".as_ptr().cast(), 1) };
    let rest = read_until(&master, "got-int", Duration::from_secs(10));
    let st = wait_deadline(&mut child, Duration::from_secs(10), "exec after ^C")?;
    if code_of(st) != 3 || !rest.contains("got-int") {
        return Err(format!("after ^C: exit {}, output {rest:?}", code_of(st)).into());
    }
    let o = s.sh(COUNT_SLEEPS)?;
    expect(&o, 0, "1\n", "the background sleep survived the ^C")?;
    Ok(())
}

fn other_uid_refused(env: &Env) -> Result<(), Failed> {
    // Root's session; uid 65534 tries.
    let s = Session::start(env, &[])?;
    let sock = s.dir().join(format!("{}.sock", s.name));
    // Through the CLI: the runtime directory is not theirs.
    let o = {
        let mut c = Command::new(common::binary());
        c.args(["exec", &s.name, "--", "true"])
            .env("XDG_RUNTIME_DIR", &s.xdg)
            .current_dir("/")
            .uid(65534)
            .gid(65534)
            .stdin(Stdio::null());
        c.output().map_err(err)?
    };
    if code_of(o.status) != 125 {
        return Err(format!(
            "nobody's exec into root's session: exit {}",
            code_of(o.status)
        )
        .into());
    }
    // Even with the directory and the socket opened up, SO_PEERCRED refuses them.
    std::fs::set_permissions(&s.xdg, std::fs::Permissions::from_mode(0o711)).map_err(err)?;
    std::fs::set_permissions(s.dir(), std::fs::Permissions::from_mode(0o711)).map_err(err)?;
    std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o666)).map_err(err)?;
    let py = format!(
        "import socket\ns=socket.socket(socket.AF_UNIX)\ns.settimeout(10)\ns.connect({:?})\n\
         d=b''\nwhile True:\n  x=s.recv(4096)\n  if not x: break\n  d+=x\nprint(d[4:].decode())",
        sock.to_str().ok_or("utf-8")?
    );
    let o = Command::new("python3")
        .args(["-c", &py])
        .uid(65534)
        .gid(65534)
        .current_dir("/")
        .output()
        .map_err(err)?;
    let out = String::from_utf8_lossy(&o.stdout);
    std::fs::set_permissions(s.dir(), std::fs::Permissions::from_mode(0o700)).map_err(err)?;
    std::fs::set_permissions(&s.xdg, std::fs::Permissions::from_mode(0o700)).map_err(err)?;
    if !out.contains("\"denied\"") {
        return Err(format!(
            "uid 65534 on the socket: {out:?} {:?}",
            String::from_utf8_lossy(&o.stderr)
        )
        .into());
    }
    // The owner still can.
    expect(&s.exec(&[], &["/bin/echo", "ok"])?, 0, "ok\n", "owner")?;
    Ok(())
}

fn socket_not_visible_inside(env: &Env) -> Result<(), Failed> {
    let s = Session::start(env, &[])?;
    let dir = s.dir();
    let script = format!(
        "ls {d} 2>/dev/null && echo LISTED; [ -e {d}/{n}.sock ] && echo FOUND; \
         grep -c {n}.sock /proc/net/unix; ls /proc/1/fd 2>/dev/null && echo FDS; \
         for f in /proc/[0-9]*/fd/*; do readlink $f; done 2>/dev/null | grep -c socket; true",
        d = dir.display(),
        n = s.name
    );
    let o = s.sh(&script)?;
    o.expect_code(0, "look for the socket")?;
    if o.stdout != "0\n0\n" {
        return Err(format!("inside: {:?}", o.stdout).into());
    }
    // A runtime directory under the workspace would put the socket inside: refused.
    let ws = env.workspace()?;
    let xdg = ws.path().join("xdg");
    std::fs::create_dir(&xdg).map_err(err)?;
    std::fs::set_permissions(&xdg, std::fs::Permissions::from_mode(0o700)).map_err(err)?;
    let u = uid_of(env.who);
    std::os::unix::fs::chown(&xdg, Some(u), Some(u)).map_err(err)?;
    let o = env
        .command_as_is(&["session", "start", "-q", "-w", ws.s()])
        .env("XDG_RUNTIME_DIR", &xdg)
        .stdin(Stdio::null())
        .output()
        .map_err(err)?;
    if code_of(o.status) != 125
        || !String::from_utf8_lossy(&o.stderr).contains("reachable from inside")
    {
        return Err(format!(
            "runtime dir in the workspace: exit {} {:?}",
            code_of(o.status),
            String::from_utf8_lossy(&o.stderr)
        )
        .into());
    }
    Ok(())
}

/// Cgroup leaves named after the supervisor's pid.
fn leaves_of(pid: i64) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let prefix = format!("agentcage-{pid}-");
    fn walk(d: &Path, prefix: &str, depth: u32, out: &mut Vec<PathBuf>) {
        if depth > 8 {
            return;
        }
        let Ok(rd) = std::fs::read_dir(d) else {
            return;
        };
        for e in rd.flatten() {
            let p = e.path();
            if !e.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            if e.file_name().to_string_lossy().starts_with(prefix) {
                out.push(p);
            } else {
                walk(&p, prefix, depth + 1, out);
            }
        }
    }
    walk(Path::new("/sys/fs/cgroup"), &prefix, 0, &mut out);
    out
}

fn alive(pid: i64) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

fn leaves_nothing(env: &Env, kill: bool) -> Result<(), Failed> {
    let s = Session::start(env, &[])?;
    let o = s.sh("sleep 300 >/dev/null 2>&1 & echo $!")?;
    o.expect_code(0, "background")?;
    let st = s.state()?;
    let sup = st["pid"].as_i64().ok_or("state: pid")?;
    let zyg = st["sandbox_pid"].as_i64().ok_or("state: sandbox_pid")?;
    let had_leaf = !leaves_of(sup).is_empty();
    // The background sleep, seen from the host: a child of the zygote.
    let kids =
        std::fs::read_to_string(format!("/proc/{zyg}/task/{zyg}/children")).unwrap_or_default();
    if kids.split_whitespace().count() != 1 {
        return Err(format!("zygote's children before: {kids:?}").into());
    }
    let sleeper: i64 = kids.trim().parse().map_err(err)?;
    if kill {
        // SAFETY: kill(2) of the supervisor we started.
        unsafe { libc::kill(sup as i32, libc::SIGKILL) };
        settle(|| !alive(zyg) && !alive(sleeper) && !alive(sup))
            .map_err(|()| "processes left after SIGKILL of the supervisor")?;
        // The next list reaps the state, the socket and the cgroup leaf.
        let o = s.run(&["session", "list", "--json"], |_| {})?;
        o.expect_code(0, "session list")?;
    } else {
        s.stop()?;
        // The supervisor answers once the sandbox, cgroup and files are gone, then exits.
        let _ = settle(|| !alive(sup));
        if alive(zyg) || alive(sleeper) || alive(sup) {
            return Err(format!(
                "after stop: supervisor {} zygote {} sleeper {}",
                alive(sup),
                alive(zyg),
                alive(sleeper)
            )
            .into());
        }
    }
    let files: Vec<_> = std::fs::read_dir(s.dir())
        .map_err(err)?
        .flatten()
        .map(|e| e.file_name())
        .collect();
    if !files.is_empty() {
        return Err(format!("left in the runtime dir: {files:?}").into());
    }
    let left = leaves_of(sup);
    if !left.is_empty() {
        return Err(format!("cgroup leaves left (had one: {had_leaf}): {left:?}").into());
    }
    Ok(())
}

fn stop_leaves_nothing(env: &Env) -> Result<(), Failed> {
    leaves_nothing(env, false)
}

fn sigkill_leaves_nothing(env: &Env) -> Result<(), Failed> {
    leaves_nothing(env, true)
}

fn fork_bomb_bounded(env: &Env) -> Result<(), Failed> {
    let s = Session::start(env, &["--pids", "64"])?;
    let t = Instant::now();
    // Every process forks forever and shrugs off a failed fork: only the timeout ends it;
    // --pids bounds it (fork fails with EAGAIN, counted in the output).
    let bomb = "import os, sys, time\nfailed = 0\nwhile True:\n  try:\n    os.fork()\n  \
                except OSError:\n    failed += 1\n    if failed == 1: print('EAGAIN', flush=True)\n    \
                time.sleep(0.01)";
    let o = s.exec(&["--timeout", "3"], &["python3", "-c", bomb])?;
    if o.code != 124 || !o.stdout.contains("EAGAIN") {
        let tail: String = o.stderr.chars().take(300).collect();
        return Err(format!("fork bomb: exit {} {tail:?}", o.code).into());
    }
    // Once it is over, the next exec runs.
    settle(|| {
        s.exec(&[], &["/bin/echo", "after"])
            .is_ok_and(|o| o.code == 0 && o.stdout == "after\n")
    })
    .map_err(|()| format!("no exec after the fork bomb ({:?})", t.elapsed()))?;
    Ok(())
}

/// Bad frames, bad requests and bad fds get error frames (never a crash); the session works
/// after them.
fn bad_frames(env: &Env) -> Result<(), Failed> {
    let s = Session::start(env, &[])?;
    let sock = s.dir().join(format!("{}.sock", s.name));
    let py = format!(
        r#"import socket, struct, json, array, os
s = socket.socket(socket.AF_UNIX); s.connect({sock:?})
def rd():
    h = s.recv(4, socket.MSG_WAITALL)
    if len(h) < 4: return None
    return json.loads(s.recv(struct.unpack(">I", h)[0], socket.MSG_WAITALL))
def fr(b): return struct.pack(">I", len(b)) + b
kinds = []
for b in [b"not json", b'{{"op":"nope"}}', b'{{"op":"exec"}}', b'{{"op":"exec","argv":[]}}',
          b'{{"op":"exec","argv":["true"],"fds":[0]}}', b'{{"op":"exec","argv":["true"],"bogus":1}}',
          b'{{"op":"signal","exec_id":1,"sig":999}}', b'{{"op":"hello","version":7}}']:
    s.sendall(fr(b)); kinds.append(rd()["error"]["kind"])
b = json.dumps({{"op": "exec", "argv": ["true"], "fds": [0]}}).encode()
for fd in [os.open("/", os.O_RDONLY | os.O_DIRECTORY), os.open("/", os.O_PATH)]:
    s.sendmsg([fr(b)], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [fd]))])
    kinds.append(rd()["error"]["kind"])
s.sendall(struct.pack(">I", 1 << 30)); kinds.append(rd()["error"]["kind"]); kinds.append(rd())
print(" ".join(map(str, kinds)))
"#,
        sock = sock.to_str().ok_or("utf-8")?
    );
    let mut c = Command::new("python3");
    c.args(["-c", &py]).current_dir("/");
    if env.who == Who::Nobody && is_root() {
        c.uid(65534).gid(65534);
    }
    let o = c.output().map_err(err)?;
    let out = String::from_utf8_lossy(&o.stdout);
    let want = "bad_frame bad_frame bad_frame bad_request bad_request bad_frame bad_request \
                version bad_fd bad_fd bad_frame None\n";
    if out != want {
        return Err(format!(
            "error kinds: {out:?}, want {want:?} ({})",
            String::from_utf8_lossy(&o.stderr)
        )
        .into());
    }
    expect(
        &s.exec(&[], &["/bin/echo", "ok"])?,
        0,
        "ok\n",
        "after bad frames",
    )?;
    Ok(())
}

/// Issue #15: `session start` makes run's placeholders before the sandbox is composed; the
/// supervisor holds the workspace's lock until the session ends, then removes them.
fn placeholders_for_the_session(env: &Env) -> Result<(), Failed> {
    let s = Session::start(env, &[])?;
    let ws = s.ws.path().to_path_buf();
    let names = || -> Result<Vec<String>, Failed> {
        let mut v: Vec<String> = std::fs::read_dir(&ws)
            .map_err(err)?
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        Ok(v)
    };
    // The first missing component of each default: `.git` (no repository), `.envrc`, ...
    for p in [".git", ".envrc", ".claude"] {
        if !ws.join(p).is_dir() {
            return Err(format!("no placeholder {p} during the session: {:?}", names()?).into());
        }
    }
    let before = names()?;
    // A run on the same workspace that ends while the session runs must not take the
    // session's placeholders with it.
    env.run(&["run", "-q", "-w", s.ws.s(), "--", "true"])?
        .expect_code(0, "a run beside the session")?;
    if names()? != before {
        return Err(format!("after a run beside it: {:?}, was {before:?}", names()?).into());
    }
    let cd = format!("cd '{}'", s.ws.s());
    for (what, script) in [
        (
            "a git hook",
            format!("{cd} && mkdir -p .git/hooks && echo x > .git/hooks/pre-commit"),
        ),
        (".envrc", format!("{cd} && echo x > .envrc")),
    ] {
        let o = s.sh(&script)?;
        if o.code == 0 {
            return Err(format!("{what}: the exec succeeded ({})", o.stderr).into());
        }
    }
    // A start that fails after making its placeholders (the name is taken) removes them.
    let ws2 = env.workspace()?;
    let o = s.run(
        &["session", "start", "-q", "--name", &s.name, "-w", ws2.s()],
        |_| {},
    )?;
    o.expect_code(2, "a second session of the same name")?;
    let left2: Vec<_> = std::fs::read_dir(ws2.path())
        .map_err(err)?
        .flatten()
        .map(|e| e.file_name())
        .collect();
    if !left2.is_empty() {
        return Err(format!("a failed start left {left2:?}").into());
    }
    // The workspace itself stays writable.
    s.sh(&format!("{cd} && echo ok > file && rm file"))?
        .expect_code(0, "a plain write in the workspace")?;
    if ws.join(".git/hooks").exists() || !ws.join(".envrc").is_dir() {
        return Err(format!("the exec changed the placeholders: {:?}", names()?).into());
    }
    s.stop()?;
    let left = names()?;
    if !left.is_empty() {
        return Err(format!("left on the host after stop: {left:?}").into());
    }
    Ok(())
}

fn main() {
    let args = Arguments::from_args();
    let tests: &[(&str, TestFn, bool)] = &[
        ("exit_codes", exit_codes, false),
        ("stdio_intact", stdio_intact, false),
        ("background_persists", background_persists, false),
        ("cwd_and_env", cwd_and_env, false),
        (
            "timeout_kills_only_its_group",
            timeout_kills_only_its_group,
            false,
        ),
        ("ctrl_c_through_tty", ctrl_c_through_tty, false),
        ("other_uid_refused", other_uid_refused, true),
        (
            "socket_not_visible_inside",
            socket_not_visible_inside,
            false,
        ),
        ("stop_leaves_nothing", stop_leaves_nothing, false),
        ("sigkill_leaves_nothing", sigkill_leaves_nothing, false),
        ("fork_bomb_bounded", fork_bomb_bounded, false),
        ("bad_frames", bad_frames, false),
        (
            "placeholders_for_the_session",
            placeholders_for_the_session,
            false,
        ),
    ];
    common::run(&args, common::trials_by_user(tests));
}
