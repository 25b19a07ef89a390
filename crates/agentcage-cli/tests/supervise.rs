//! The launcher's supervision of a run (issue #10, findings 4, 8, 13 and 14's argv part):
//! the caller's terminal never reaches the sandbox, the agent cannot hang the launcher, the
//! relay never blocks `--timeout`, and /proc/1 inside shows none of the launcher's argv.
//! Runs the real binary as root and as uid 65534; every wait is bounded.
//!
//! - `caller_tty_not_reachable_via_stdout`: stdin /dev/null, stdout/stderr a pty the test
//!   owns; the agent's `stty` on fds 1 and 2 must not change our pty (size, echo), with the
//!   relay and with `--no-pty`, and its output still reaches us; the probe's
//!   `hygiene.tty.stdio` says BLOCKED. `keep_fd_terminal_refused`: nor with `--keep-fd`.
//! - `stop_storm_does_not_hang`: 20,000 stop/continue cycles of the command, then it exits:
//!   the launcher returns its code promptly.
//! - `signal_ends_sandbox_within_grace`: SIGTERM/SIGINT/SIGHUP to a launcher whose command
//!   ignores them ends the run within the grace period (+ slack).
//! - `ptrace_traceme_does_not_hang`: under ns-only and landlock (no seccomp), a command that
//!   makes the init its tracer (PTRACE_TRACEME), then takes a signal and execs, still runs
//!   to its end.
//! - `relay_never_blocks_timeout`: the agent never reads its terminal while the caller types
//!   megabytes: `--timeout 2` still fires (exit 124) and the caller's terminal mode is back.
//!   `relay_frozen_terminal_timeout`: nor when the caller's terminal stops taking output.
//! - `init_argv_hidden`: /proc/1/cmdline and /proc/1/comm inside carry no launcher flag.

mod common;

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{code_of, wait_deadline, Env, TestFn, Who};
use libtest_mimic::{Arguments, Failed};

/// agentcage::TIMEOUT_GRACE.
const GRACE: Duration = Duration::from_secs(2);

fn is_root() -> bool {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() == 0 }
}

fn command(env: &Env, args: &[&str]) -> Command {
    let mut c = Command::new(common::binary());
    c.args(args).current_dir("/");
    if env.who == Who::Nobody && is_root() {
        c.uid(65534).gid(65534);
    }
    c
}

/// A pty pair the test owns: (master, slave), with a known size.
fn openpty() -> Result<(OwnedFd, OwnedFd), Failed> {
    let ws = libc::winsize {
        ws_row: 24,
        ws_col: 80,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: openpty fills two fds we then own; ws is a live winsize.
    unsafe {
        let (mut m, mut s) = (0, 0);
        if libc::openpty(&mut m, &mut s, std::ptr::null_mut(), std::ptr::null(), &ws) != 0 {
            return Err("openpty failed".into());
        }
        Ok((OwnedFd::from_raw_fd(m), OwnedFd::from_raw_fd(s)))
    }
}

fn winsize(fd: i32) -> (u16, u16) {
    // SAFETY: zeroed winsize is valid; TIOCGWINSZ fills it.
    unsafe {
        let mut ws: libc::winsize = std::mem::zeroed();
        libc::ioctl(fd, libc::TIOCGWINSZ, &mut ws);
        (ws.ws_row, ws.ws_col)
    }
}

fn lflag(fd: i32) -> libc::tcflag_t {
    // SAFETY: zeroed termios is valid; tcgetattr fills it.
    unsafe {
        let mut t: libc::termios = std::mem::zeroed();
        libc::tcgetattr(fd, &mut t);
        t.c_lflag
    }
}

/// Makes fds 1 and 2 (and 0 when `stdin_too`) of the spawned process `fd` (a pty slave).
fn stdio_on(c: &mut Command, fd: i32, stdin_too: bool) {
    // SAFETY: dup2 is async-signal-safe; fd outlives the spawn.
    unsafe {
        c.pre_exec(move || {
            for n in if stdin_too { 0 } else { 1 }..3 {
                if libc::dup2(fd, n) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
}

/// Reads what is there on a non-blocking fd until `stop` or EOF/EIO.
fn drain(f: &mut std::fs::File, into: &mut Vec<u8>) -> bool {
    let mut buf = [0u8; 8192];
    loop {
        match f.read(&mut buf) {
            Ok(0) => return false,
            Ok(n) => into.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return true,
            Err(_) => return false,
        }
    }
}

fn set_nonblock(fd: i32) {
    // SAFETY: fcntl on our own fd.
    unsafe {
        let fl = libc::fcntl(fd, libc::F_GETFL);
        libc::fcntl(fd, libc::F_SETFL, fl | libc::O_NONBLOCK);
    }
}

/// Finding 4: with stdin not a terminal, fds 1/2 used to stay the caller's terminal.
fn caller_tty_not_reachable_via_stdout(env: &Env) -> Result<(), Failed> {
    let ws = env.workspace()?;
    // stty works on its stdin: point it at fd 1, then at fd 2. On the caller's terminal it
    // would resize it and turn echo off.
    let script = "stty rows 11 cols 33 -echo <&1; stty rows 12 cols 34 -echo <&2; \
                  echo agentcage-out-marker";
    for (profile, extra) in [
        ("full", None),
        ("ns-only", None),
        ("full", Some("--no-pty")),
    ] {
        let (master, slave) = openpty()?;
        let (m, s) = (master.as_raw_fd(), slave.as_raw_fd());
        let echo_before = lflag(s) & libc::ECHO;
        let mut args = vec!["run", "-p", profile, "-w", ws.s()];
        args.extend(extra);
        args.extend(["--", "sh", "-c", script]);
        let mut c = command(env, &args);
        c.stdin(Stdio::null());
        stdio_on(&mut c, s, false);
        let what = format!("{profile} {}", extra.unwrap_or(""));
        let mut child = c.spawn().map_err(|e| format!("{what}: spawn: {e}"))?;
        drop(slave);
        let mut mf = std::fs::File::from(master);
        set_nonblock(m);
        let mut out = Vec::new();
        let t = Instant::now();
        let st = loop {
            drain(&mut mf, &mut out);
            if let Some(st) = child.try_wait().map_err(|e| e.to_string())? {
                break st;
            }
            if t.elapsed() > Duration::from_secs(30) {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{what}: still running after 30 s").into());
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        drain(&mut mf, &mut out);
        let out = String::from_utf8_lossy(&out);
        let size = winsize(m);
        // The slave is closed now; the master still tells the pair's mode.
        let echo_after = lflag(m) & libc::ECHO;
        if size != (24, 80) || echo_after != echo_before {
            return Err(format!(
                "{what}: the agent changed the caller's terminal through fd 1/2: size {size:?} \
                 (was (24, 80)), echo {echo_after:#x} (was {echo_before:#x}); output {out:?}"
            )
            .into());
        }
        if !out.contains("agentcage-out-marker") {
            return Err(format!(
                "{what}: the command's output did not reach the caller's terminal (exit {}): \
                 {out:?}",
                code_of(st)
            )
            .into());
        }
        if extra.is_none() && code_of(st) != 0 {
            return Err(format!("{what}: exit {} (want 0): {out:?}", code_of(st)).into());
        }
    }
    // The probe's view (the isolation matrix's op): is any of fds 0-2 the caller's terminal?
    for profile in ["full", "ns-only"] {
        let (master, slave) = openpty()?;
        let host_tty = dev_rdev(slave.as_raw_fd())?;
        let mut c = command(
            env,
            &[
                "run",
                "-p",
                profile,
                "-w",
                ws.s(),
                "--",
                "/run/agentcage/agentcage",
                "probe",
                "--only",
                "hygiene.tty.stdio",
                "--format",
                "jsonl",
                "--host-tty",
                &host_tty,
            ],
        );
        c.stdin(Stdio::null());
        stdio_on(&mut c, slave.as_raw_fd(), false);
        let mut child = c.spawn().map_err(|e| format!("{profile}: spawn: {e}"))?;
        drop(slave);
        let m = master.as_raw_fd();
        let mut mf = std::fs::File::from(master);
        set_nonblock(m);
        let mut out = Vec::new();
        let t = Instant::now();
        while child.try_wait().map_err(|e| e.to_string())?.is_none() {
            drain(&mut mf, &mut out);
            if t.elapsed() > Duration::from_secs(30) {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{profile} probe: still running after 30 s").into());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        drain(&mut mf, &mut out);
        let out = String::from_utf8_lossy(&out);
        if !out.contains(r#""id":"hygiene.tty.stdio""#) || !out.contains(r#""result":"BLOCKED""#) {
            return Err(format!("{profile}: hygiene.tty.stdio not BLOCKED: {out:?}").into());
        }
    }
    Ok(())
}

/// `DEV:RDEV` of the terminal on `fd` (the probe's --host-tty).
fn dev_rdev(fd: i32) -> Result<String, Failed> {
    // SAFETY: zeroed stat is valid; fstat fills it.
    let st = unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        if libc::fstat(fd, &mut st) != 0 {
            return Err("fstat of our pty failed".into());
        }
        st
    };
    Ok(format!("{}:{}", st.st_dev, st.st_rdev))
}

/// A terminal fd cannot be passed in with --keep-fd either.
fn keep_fd_terminal_refused(env: &Env) -> Result<(), Failed> {
    let ws = env.workspace()?;
    let (_master, slave) = openpty()?;
    let s = slave.as_raw_fd();
    let mut c = command(
        env,
        &[
            "run",
            "-p",
            "full",
            "-w",
            ws.s(),
            "--keep-fd",
            "7",
            "--",
            "true",
        ],
    );
    c.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    common::pass_fd(&mut c, s, 7); // s outlives the spawn
    let mut child = c.spawn().map_err(|e| e.to_string())?;
    let st = wait_deadline(
        &mut child,
        Duration::from_secs(30),
        "--keep-fd of a terminal",
    )?;
    let mut err = String::new();
    let _ = child.stderr.take().map(|mut e| e.read_to_string(&mut err));
    if code_of(st) != 2 || !err.contains("is a terminal") {
        return Err(format!(
            "--keep-fd 7 (a pty): exit {} (want 2), {err:?}",
            code_of(st)
        )
        .into());
    }
    Ok(())
}

/// Finding 8: the init used to block writing one status report per stop on a pipe the
/// launcher read only at the end, and stop reaping.
fn stop_storm_does_not_hang(env: &Env) -> Result<(), Failed> {
    let ws = env.workspace()?;
    if !std::path::Path::new("/usr/bin/perl").exists() {
        eprintln!("skip stop storm: no /usr/bin/perl");
        return Ok(());
    }
    // A child of the command stops and resumes it 20,000 times, each time waiting until it is
    // stopped and a little more, so the init sees (and used to report) nearly every stop.
    let stopper = r#"my $p = shift;
for my $i (1..20000) {
    kill 'STOP', $p;
    for (1..100000) {
        open(my $f, '<', "/proc/$p/stat") or last;
        last if <$f> =~ /\) T /;
    }
    select(undef, undef, undef, 0.0003);
    kill 'CONT', $p;
}
open(my $d, '>', 'done') and print $d "cycles\n";
"#;
    std::fs::write(ws.path().join("stopper.pl"), stopper).map_err(|e| e.to_string())?;
    let script = format!("cd {}; /usr/bin/perl stopper.pl $$ & wait; exit 3", ws.s());
    let mut c = command(
        env,
        &["run", "-p", "full", "-w", ws.s(), "--", "sh", "-c", &script],
    );
    c.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let t = Instant::now();
    let mut child = c.spawn().map_err(|e| e.to_string())?;
    let st = wait_deadline(&mut child, Duration::from_secs(120), "20,000 stop/continue")?;
    eprintln!(
        "  [{}] 20,000 stop/continue cycles: exit {} after {:.2} s",
        env.who.name(),
        code_of(st),
        t.elapsed().as_secs_f64()
    );
    if !ws.path().join("done").exists() {
        return Err("the stop/continue loop did not finish".into());
    }
    if code_of(st) != 3 {
        return Err(format!("exit {} (want the command's 3)", code_of(st)).into());
    }
    Ok(())
}

/// Finding 8: a forwarded signal the command ignores used to leave the launcher waiting.
fn signal_ends_sandbox_within_grace(env: &Env) -> Result<(), Failed> {
    let ws = env.workspace()?;
    for (sig, name) in [
        (libc::SIGTERM, "TERM"),
        (libc::SIGINT, "INT"),
        (libc::SIGHUP, "HUP"),
    ] {
        let ready = ws.path().join(format!("ready-{name}"));
        let script = format!(
            "trap '' TERM INT HUP QUIT; touch {}; while :; do sleep 0.1; done",
            ready.display()
        );
        let mut c = command(
            env,
            &["run", "-p", "full", "-w", ws.s(), "--", "sh", "-c", &script],
        );
        c.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = c.spawn().map_err(|e| e.to_string())?;
        if common::settle(|| ready.exists()).is_err() {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("SIG{name}: the command never started").into());
        }
        let t = Instant::now();
        // SAFETY: kill(2) of our own child's pid.
        unsafe { libc::kill(child.id() as i32, sig) };
        let limit = GRACE + Duration::from_secs(3);
        let st = wait_deadline(&mut child, limit, &format!("SIG{name} to the launcher"))?;
        eprintln!(
            "  [{}] SIG{name} to the launcher, command ignores it: exit {} after {:.2} s",
            env.who.name(),
            code_of(st),
            t.elapsed().as_secs_f64()
        );
        if t.elapsed() < GRACE - Duration::from_millis(300) {
            return Err(format!("SIG{name}: ended before the grace period").into());
        }
        let mut err = String::new();
        let _ = child.stderr.take().map(|mut e| e.read_to_string(&mut err));
        if !err.contains(&format!(
            "signal {sig} forwarded; the sandbox had not exited"
        )) {
            return Err(
                format!("SIG{name}: no message saying the sandbox was killed: {err:?}").into(),
            );
        }
    }
    Ok(())
}

/// Finding 8: PTRACE_TRACEME made the init a tracer that never resumed the command.
fn ptrace_traceme_does_not_hang(env: &Env) -> Result<(), Failed> {
    if !std::path::Path::new("/usr/bin/perl").exists() {
        eprintln!("skip ptrace_traceme: no /usr/bin/perl");
        return Ok(());
    }
    let nr = if cfg!(target_arch = "x86_64") {
        101
    } else if cfg!(target_arch = "aarch64") {
        117
    } else {
        eprintln!("skip ptrace_traceme: ptrace's syscall number unknown here");
        return Ok(());
    };
    let ws = env.workspace()?;
    // TRACEME, then a handled signal (a signal-delivery-stop for the tracer), then exec (a
    // SIGTRAP stop).
    let script = format!(
        "$SIG{{USR1}} = sub {{ print \"handled\\n\" }}; \
         my $r = syscall({nr}, 0, 0, 0, 0); print \"traceme=$r\\n\"; \
         kill 'USR1', $$; exec '/bin/sh', '-c', 'echo execd; exit 5'"
    );
    for profile in ["ns-only", "landlock"] {
        let mut c = command(
            env,
            &[
                "run",
                "-p",
                profile,
                "-w",
                ws.s(),
                "--",
                "/usr/bin/perl",
                "-e",
                &script,
            ],
        );
        c.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c.spawn().map_err(|e| e.to_string())?;
        let st = wait_deadline(&mut child, Duration::from_secs(30), profile)?;
        let mut out = String::new();
        let _ = child.stdout.take().map(|mut o| o.read_to_string(&mut out));
        let mut err = String::new();
        let _ = child.stderr.take().map(|mut o| o.read_to_string(&mut err));
        if !out.contains("traceme=0") {
            eprintln!(
                "  [{}] {profile}: PTRACE_TRACEME refused here: {out:?} {err:?}",
                env.who.name()
            );
        }
        if code_of(st) != 5 || !out.contains("handled") || !out.contains("execd") {
            return Err(format!(
                "{profile}: exit {} (want 5), stdout {out:?}, stderr {err:?}",
                code_of(st)
            )
            .into());
        }
    }
    Ok(())
}

/// Finding 13: the relay used to block writing to a pty the agent does not read, and
/// `--timeout` then never fired.
fn relay_never_blocks_timeout(env: &Env) -> Result<(), Failed> {
    let ws = env.workspace()?;
    let (master, slave) = openpty()?;
    let (m, s) = (master.as_raw_fd(), slave.as_raw_fd());
    let lflag_before = lflag(s);
    let mut c = command(
        env,
        &[
            "run",
            "-p",
            "full",
            "-w",
            ws.s(),
            "--timeout",
            "2",
            "--",
            "sleep",
            "60",
        ],
    );
    stdio_on(&mut c, s, true);
    let t = Instant::now();
    let mut child = c.spawn().map_err(|e| e.to_string())?;
    drop(slave);
    let mut mf = std::fs::File::from(master);
    set_nonblock(m);
    // Type megabytes of lines of plain letters (no control characters: ^C would end `sleep`).
    // Whole lines: canonical mode drops what does not fit in an unfinished line, but full
    // lines fill the pty until its writer blocks.
    let stop = Arc::new(AtomicBool::new(false));
    let mut wf = mf.try_clone().map_err(|e| e.to_string())?;
    let stop2 = stop.clone();
    let writer = std::thread::spawn(move || {
        let mut chunk = [b'a'; 4096];
        for i in (63..4096).step_by(64) {
            chunk[i] = b'\n';
        }
        let mut sent = 0usize;
        while !stop2.load(Ordering::Relaxed) && sent < 64 << 20 {
            match wf.write(&chunk) {
                Ok(n) => sent += n,
                Err(_) => std::thread::sleep(Duration::from_millis(2)),
            }
        }
        sent
    });
    let mut out = Vec::new();
    let r = loop {
        drain(&mut mf, &mut out);
        out.clear();
        match child.try_wait() {
            Ok(Some(st)) => break Ok(st),
            Ok(None) => {}
            Err(e) => break Err(e.to_string()),
        }
        if t.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            let _ = child.wait();
            break Err(
                "the launcher was still running after 20 s (--timeout 2 never fired)".into(),
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    stop.store(true, Ordering::Relaxed);
    let sent = writer.join().unwrap_or(0);
    let took = t.elapsed().as_secs_f64();
    let st = r?;
    eprintln!(
        "  [{}] agent not reading, {} KiB typed: exit {} after {took:.2} s",
        env.who.name(),
        sent / 1024,
        code_of(st)
    );
    if code_of(st) != 124 {
        return Err(format!("exit {} (want 124, the timeout)", code_of(st)).into());
    }
    let lflag_after = lflag(m);
    if lflag_after != lflag_before {
        return Err(format!(
            "the caller's terminal mode was not restored: lflag {lflag_after:#x} (was \
             {lflag_before:#x})"
        )
        .into());
    }
    Ok(())
}

/// Finding 13, the other direction: the caller's terminal stops taking output (a frozen
/// terminal emulator: nobody reads our master) while the agent writes without end. The relay
/// used to block writing to it, and `--timeout` never fired.
fn relay_frozen_terminal_timeout(env: &Env) -> Result<(), Failed> {
    let ws = env.workspace()?;
    let (master, slave) = openpty()?;
    let s = slave.as_raw_fd();
    let mut c = command(
        env,
        &[
            "run",
            "-p",
            "full",
            "-w",
            ws.s(),
            "--timeout",
            "2",
            "--",
            "yes",
            "agentcage",
        ],
    );
    // stderr elsewhere: the launcher's own last words (the timeout message) would block on a
    // frozen terminal like any program's.
    // SAFETY: dup2 is async-signal-safe; s outlives the spawn.
    unsafe {
        c.pre_exec(move || {
            if libc::dup2(s, 0) < 0 || libc::dup2(s, 1) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    c.stderr(Stdio::null());
    let t = Instant::now();
    let mut child = c.spawn().map_err(|e| e.to_string())?;
    drop(slave);
    let st = wait_deadline(
        &mut child,
        Duration::from_secs(20),
        "--timeout 2, frozen terminal",
    );
    drop(master);
    let st = st?;
    eprintln!(
        "  [{}] frozen caller terminal, endless output: exit {} after {:.2} s",
        env.who.name(),
        code_of(st),
        t.elapsed().as_secs_f64()
    );
    if code_of(st) != 124 {
        return Err(format!("exit {} (want 124, the timeout)", code_of(st)).into());
    }
    Ok(())
}

/// Finding 14 (argv part): the init is a fork of the launcher.
fn init_argv_hidden(env: &Env) -> Result<(), Failed> {
    let ws = env.workspace()?;
    const MARK: &str = "agentcage-test-mark-7f3a";
    for profile in ["full", "ns-only"] {
        let out = env.run(&[
            "run",
            "-p",
            profile,
            "-w",
            ws.s(),
            "--env",
            &format!("AGENTCAGE_TEST_MARK={MARK}"),
            "--",
            "sh",
            "-c",
            "tr '\\0' ' ' </proc/1/cmdline; echo; echo comm=$(cat /proc/1/comm)",
        ])?;
        out.expect_code(0, profile)?;
        let first = out.stdout.lines().next().unwrap_or("");
        if out.stdout.contains(MARK)
            || out.stdout.contains("--env")
            || out.stdout.contains(ws.s())
            || !out.stdout.contains("comm=agentcage-init")
            || !first.starts_with("agentcage-init")
        {
            return Err(format!("{profile}: /proc/1 shows {:?}", out.stdout).into());
        }
    }
    Ok(())
}

fn main() {
    let args = Arguments::from_args();
    let tests: &[(&str, TestFn)] = &[
        (
            "caller_tty_not_reachable_via_stdout",
            caller_tty_not_reachable_via_stdout,
        ),
        ("keep_fd_terminal_refused", keep_fd_terminal_refused),
        ("stop_storm_does_not_hang", stop_storm_does_not_hang),
        (
            "signal_ends_sandbox_within_grace",
            signal_ends_sandbox_within_grace,
        ),
        ("ptrace_traceme_does_not_hang", ptrace_traceme_does_not_hang),
        ("relay_never_blocks_timeout", relay_never_blocks_timeout),
        (
            "relay_frozen_terminal_timeout",
            relay_frozen_terminal_timeout,
        ),
        ("init_argv_hidden", init_argv_hidden),
    ];
    common::run(&args, common::trials_for_both(tests))
}
