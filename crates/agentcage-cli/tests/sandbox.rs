//! Sandbox tier: runs the real `agentcage` binary, as root and as uid 65534.
//!
//! Each trial exists twice: `root::NAME` (skipped with a reason unless the test runs as
//! root) and `nobody::NAME` (run as uid/gid 65534 from root, or as the current user when the
//! test itself is unprivileged). Trials that need unprivileged user namespaces are skipped
//! with a printed reason when they are missing, unless `AGENTCAGE_TEST_EXPECT` lists `userns`
//! (CI sets it), in which case they fail.

mod common;

use common::{Env, TestFn};
use libtest_mimic::{Arguments, Failed};

const PROFILES: [&str; 4] = ["none", "ns-only", "landlock", "full"];

fn workspace_rw(env: &Env) -> Result<(), Failed> {
    for p in PROFILES {
        let ws = env.workspace()?;
        let out = env.run(&[
            "run",
            "-p",
            p,
            "-w",
            ws.s(),
            "--",
            "sh",
            "-c",
            "echo hello > note && cat note",
        ])?;
        out.expect_code(0, p)?;
        if out.stdout.trim() != "hello" {
            return Err(format!("{p}: read back {:?}", out.stdout).into());
        }
        if std::fs::read_to_string(ws.path().join("note")).map_err(|e| e.to_string())? != "hello\n"
        {
            return Err(format!("{p}: file not in the host workspace").into());
        }
    }
    Ok(())
}

fn real_programs_under_full(env: &Env) -> Result<(), Failed> {
    let ws = env.workspace()?;
    std::fs::write(
        ws.path().join("hello.c"),
        "#include <stdio.h>\nint main(void){puts(\"compiled\");return 0;}\n",
    )
    .map_err(|e| e.to_string())?;
    let script = "set -e\n\
        python3 -c 'import ssl, threading, multiprocessing as mp, json; t=threading.Thread(target=print, args=(\"thread\",)); t.start(); t.join()\n\
        with mp.Pool(2) as p: print(sum(p.map(abs, [-1, -2])))'\n\
        git init -q repo && cd repo && git -c user.email=a@b -c user.name=a commit -q --allow-empty -m m && git log --oneline | wc -l && cd ..\n\
        gcc -o hello hello.c && ./hello\n\
        tar czf t.tgz hello.c && tar tzf t.tgz\n\
        python3 -m venv --without-pip /tmp/venv && /tmp/venv/bin/python -c 'import sys; print(\"venv\", sys.prefix)'\n\
        python3 -c 'import ssl; print(\"ca\", ssl.create_default_context().cert_store_stats()[\"x509_ca\"] > 0)'\n\
        node -e 'require(\"child_process\").execFileSync(\"true\"); console.log(\"node\", 40 + 2)'\n";
    let out = env.run(&["run", "-p", "full", "-w", ws.s(), "--", "sh", "-c", script])?;
    out.expect_code(0, "full")?;
    let mut wants = vec![
        "thread",
        "3",
        "1",
        "compiled",
        "hello.c",
        "venv /tmp/venv",
        "node 42",
    ];
    // The system certificates are bound into the sandbox: where the host has them, TLS
    // clients inside see them.
    if std::path::Path::new("/etc/ssl/certs").is_dir() {
        wants.push("ca True");
    }
    for want in wants {
        if !out.stdout.lines().any(|l| l.trim() == want) {
            return Err(format!(
                "missing {want:?} in output:\n{}\n{}",
                out.stdout, out.stderr
            )
            .into());
        }
    }
    Ok(())
}

fn outside_file_invisible(env: &Env) -> Result<(), Failed> {
    let secret = env.secret_dir()?;
    let canary = secret.path().join("canary");
    std::fs::write(&canary, "TOP-SECRET").map_err(|e| e.to_string())?;
    let ws = env.workspace()?;
    let cmd = format!("cat {} 2>&1; true", canary.display());
    let base = env.run(&["run", "-p", "none", "-w", ws.s(), "--", "sh", "-c", &cmd])?;
    if !base.stdout.contains("TOP-SECRET") {
        return Err(format!(
            "control: the canary must be readable under none: {}",
            base.stdout
        )
        .into());
    }
    for p in ["ns-only", "landlock", "full"] {
        let out = env.run(&["run", "-p", p, "-w", ws.s(), "--", "sh", "-c", &cmd])?;
        out.expect_code(0, p)?;
        if out.stdout.contains("TOP-SECRET") || !out.stdout.contains("No such file") {
            return Err(format!("{p}: canary visible or unexpected error: {}", out.stdout).into());
        }
    }
    Ok(())
}

fn env_secret_and_fd_hidden(env: &Env) -> Result<(), Failed> {
    let ws = env.workspace()?;
    // Also through the init's memory: it is a fork of the launcher, which has the secret.
    let script = "echo secret=${AGENTCAGE_T_SECRET:-unset}; if [ -e /proc/self/fd/7 ]; then echo fd7=open; else echo fd7=closed; fi; \
        if [ $$ != 1 ] && tr '\\0' '\\n' < /proc/1/environ 2>/dev/null | grep -q hunter2; then echo init-environ=leaks; fi";
    for p in PROFILES {
        let out = env.run_with(
            &["run", "-p", p, "-w", ws.s(), "--", "sh", "-c", script],
            |c| {
                c.env("AGENTCAGE_T_SECRET", "hunter2");
                common::inherit_fd(c, 7);
            },
        )?;
        out.expect_code(0, p)?;
        if p != "none" && out.stdout.contains("init-environ=leaks") {
            return Err(format!("{p}: the secret is readable in /proc/1/environ").into());
        }
        let (want_secret, want_fd) = if p == "none" {
            ("secret=hunter2", "fd7=open")
        } else {
            ("secret=unset", "fd7=closed")
        };
        if !out.stdout.contains(want_secret) || !out.stdout.contains(want_fd) {
            return Err(format!("{p}: got {:?}", out.stdout).into());
        }
    }
    // --pass-env and --keep-fd let them through on purpose.
    let out = env.run_with(
        &[
            "run",
            "-p",
            "full",
            "-w",
            ws.s(),
            "--pass-env",
            "AGENTCAGE_T_SECRET",
            "--keep-fd",
            "7",
            "--",
            "sh",
            "-c",
            script,
        ],
        |c| {
            c.env("AGENTCAGE_T_SECRET", "hunter2");
            common::inherit_fd(c, 7);
        },
    )?;
    if !out.stdout.contains("secret=hunter2") || !out.stdout.contains("fd7=open") {
        return Err(format!("pass-env/keep-fd: got {:?}", out.stdout).into());
    }
    Ok(())
}

fn exit_codes(env: &Env) -> Result<(), Failed> {
    let ws = env.workspace()?;
    for p in PROFILES {
        let run = |args: &[&str]| {
            let mut v = vec!["run", "-p", p, "-w", ws.s(), "--"];
            v.extend_from_slice(args);
            env.run(&v)
        };
        run(&["sh", "-c", "exit 3"])?.expect_code(3, p)?;
        run(&["sh", "-c", "kill -KILL $$"])?.expect_code(137, p)?;
        run(&["sh", "-c", "kill -TERM $$"])?.expect_code(143, p)?;
        run(&["/nonexistent/cmd"])?.expect_code(127, p)?;
        run(&["no-such-command-agentcage"])?.expect_code(127, p)?;
        run(&["/etc/hostname"])?.expect_code(126, p)?;
    }
    env.run(&["run", "-p", "bogus", "--", "true"])?
        .expect_code(2, "bad profile")?;
    env.run(&["run", "-w", "/nonexistent-ws", "--", "true"])?
        .expect_code(2, "missing workspace")?;
    env.run(&["run", "-w", "relative-missing", "--", "true"])?
        .expect_code(2, "relative workspace")?;
    env.run(&["run"])?.expect_code(2, "empty command")?;
    env.run(&["run", "--", ""])?.expect_code(2, "empty argv0")?;
    Ok(())
}

fn background_killed_on_exit(env: &Env) -> Result<(), Failed> {
    let ws = env.workspace()?;
    let marker = format!("{}", 1_000_000 + std::process::id() as u64 % 1000 + 17);
    for p in ["ns-only", "landlock", "full"] {
        let script = format!("sleep {marker} >/dev/null 2>&1 & echo started");
        let out = env.run(&["run", "-p", p, "-w", ws.s(), "--", "sh", "-c", &script])?;
        out.expect_code(0, p)?;
        common::settle(|| !common::process_with_arg(&marker))
            .map_err(|_| format!("{p}: background sleep {marker} survived"))?;
    }
    Ok(())
}

fn launcher_sigkill_kills_sandbox(env: &Env) -> Result<(), Failed> {
    let ws = env.workspace()?;
    let marker = format!("{}", 2_000_000 + std::process::id() as u64 % 1000 + 29);
    for p in ["ns-only", "full"] {
        let script = format!("sleep {marker} & sleep {marker}");
        let mut child = env.spawn(&["run", "-p", p, "-w", ws.s(), "--", "sh", "-c", &script])?;
        common::settle(|| common::process_with_arg(&marker))
            .map_err(|_| format!("{p}: sandbox never started"))?;
        child.kill().map_err(|e| e.to_string())?;
        let _ = child.wait();
        common::settle(|| !common::process_with_arg(&marker))
            .map_err(|_| format!("{p}: processes survived the launcher's SIGKILL"))?;
    }
    Ok(())
}

fn readonly_bind_is_readonly(env: &Env) -> Result<(), Failed> {
    let ws = env.workspace()?;
    let ro = env.workspace()?; // owned by the sandbox user, so only the mount can refuse
    std::fs::write(ro.path().join("f"), "x").map_err(|e| e.to_string())?;
    env.chown_to_sandbox(&ro.path().join("f"))?;
    let py = format!(
        "import os, errno\nfor p in ['{0}/f', '{0}/new', '/usr/agentcage-probe', '/etc/passwd-x']:\n    try:\n        os.close(os.open(p, os.O_WRONLY | os.O_CREAT))\n        print(p, 'WRITABLE')\n    except OSError as e:\n        print(p, errno.errorcode[e.errno])\n",
        ro.path().display()
    );
    for p in ["ns-only", "landlock", "full"] {
        let out = env.run(&[
            "run",
            "-p",
            p,
            "-w",
            ws.s(),
            "--ro",
            ro.s(),
            "--",
            "python3",
            "-c",
            &py,
        ])?;
        out.expect_code(0, p)?;
        for line in out.stdout.lines() {
            if line.contains("WRITABLE") {
                return Err(format!("{p}: {line}").into());
            }
        }
        let first = out.stdout.lines().next().unwrap_or("");
        if p == "ns-only" && !first.ends_with("EROFS") {
            return Err(format!("ns-only: expected EROFS for the ro bind, got {first:?}").into());
        }
    }
    Ok(())
}

fn root_files_not_host_root(env: &Env) -> Result<(), Failed> {
    let ws = env.workspace()?;
    for p in ["ns-only", "landlock", "full"] {
        let name = format!("made-by-{p}");
        env.run(&[
            "run",
            "-p",
            p,
            "-w",
            ws.s(),
            "--",
            "sh",
            "-c",
            &format!("id -u; touch {name}"),
        ])?
        .expect_code(0, p)?;
        let uid = common::owner(&ws.path().join(&name))?;
        if uid == 0 {
            return Err(format!("{p}: file created by the agent is owned by host root").into());
        }
    }
    // Removing the user namespace (the matrix's ablation flag) would make the command host
    // root: refused.
    let out = env.run(&[
        "run",
        "-p",
        "ns-only",
        "--without",
        "user-ns",
        "-w",
        ws.s(),
        "--",
        "id",
        "-u",
    ])?;
    out.expect_code(125, "ns-only --without user-ns as root")?;
    if !out.stderr.contains("host root") {
        return Err(format!("no reason given: {}", out.stderr).into());
    }
    Ok(())
}

fn signals_are_forwarded(env: &Env) -> Result<(), Failed> {
    let ws = env.workspace()?;
    for p in ["none", "ns-only", "full"] {
        let ready = ws.path().join(format!("ready-{p}"));
        let script = format!(
            "trap 'exit 7' TERM; touch {}; while :; do sleep 0.05; done",
            ready.display()
        );
        let mut child = env.spawn(&["run", "-p", p, "-w", ws.s(), "--", "sh", "-c", &script])?;
        common::settle(|| ready.exists()).map_err(|_| format!("{p}: the command never started"))?;
        // SAFETY: kill(2) of our own child's pid.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let st = child.wait().map_err(|e| e.to_string())?;
        if st.code() != Some(7) {
            return Err(format!(
                "{p}: SIGTERM to the launcher gave {st:?}, want the trap's exit 7"
            )
            .into());
        }
    }
    Ok(())
}

/// Job control through the pty relay, driven like a person at a terminal: an interactive
/// bash on a pty runs agentcage, Ctrl-Z stops the job (bash says "Stopped"), `fg` resumes it
/// and the command finishes.
fn job_control_through_the_pty(env: &Env) -> Result<(), Failed> {
    use std::io::{Read, Write};
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    use std::os::unix::process::CommandExt;
    if !std::path::Path::new("/bin/bash").exists() {
        eprintln!("skip job control: no /bin/bash");
        return Ok(());
    }
    let ws = env.workspace()?;
    // SAFETY: openpty fills two fds we then own.
    let (master, slave) = unsafe {
        let (mut m, mut s) = (0, 0);
        if libc::openpty(
            &mut m,
            &mut s,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        ) != 0
        {
            return Err("openpty failed".into());
        }
        (OwnedFd::from_raw_fd(m), OwnedFd::from_raw_fd(s))
    };
    let sfd = slave.as_raw_fd();
    let mut bash = std::process::Command::new("/bin/bash");
    bash.args(["--norc", "--noprofile", "-i"])
        .current_dir(ws.path())
        .env("PS1", "$ ");
    // SAFETY: geteuid cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    if env.who == common::Who::Nobody && root {
        bash.uid(65534).gid(65534);
    }
    // SAFETY: setsid, ioctl and dup2 are async-signal-safe; sfd outlives the spawn.
    unsafe {
        bash.pre_exec(move || {
            if libc::setsid() < 0 || libc::ioctl(sfd, libc::TIOCSCTTY as _, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            for fd in 0..3 {
                libc::dup2(sfd, fd);
            }
            Ok(())
        });
    }
    let mut child = bash.spawn().map_err(|e| format!("spawn bash: {e}"))?;
    drop(slave);
    let mut m = std::fs::File::from(master);
    // SAFETY: fcntl on our own fd.
    unsafe { libc::fcntl(m.as_raw_fd(), libc::F_SETFL, libc::O_NONBLOCK) };
    let mut seen = String::new();
    let mut expect = |m: &mut std::fs::File, want: &str| -> Result<(), Failed> {
        let t = std::time::Instant::now();
        let mut buf = [0u8; 4096];
        // Generous: each step is a chain of wake-ups (relay, line discipline, init, launcher,
        // the shell) that a machine loaded by parallel builds can stretch to seconds.
        while t.elapsed() < std::time::Duration::from_secs(30) {
            match m.read(&mut buf) {
                Ok(n) if n > 0 => seen.push_str(&String::from_utf8_lossy(&buf[..n])),
                _ => std::thread::sleep(std::time::Duration::from_millis(20)),
            }
            if seen.contains(want) {
                seen = seen
                    .split_once(want)
                    .map(|(_, r)| r.to_string())
                    .unwrap_or_default();
                return Ok(());
            }
        }
        Err(format!("no {want:?} on the terminal; saw {seen:?}").into())
    };
    let line = format!(
        "{} run -p full -w {} -- sh -c 'echo sta\"\"rted; sleep 2; echo fini\"\"shed'\n",
        common::binary().display(),
        ws.s()
    );
    let r = (|| {
        m.write_all(line.as_bytes()).map_err(|e| e.to_string())?;
        expect(&mut m, "started")?;
        m.write_all(b"\x1a").map_err(|e| e.to_string())?; // Ctrl-Z
        expect(&mut m, "Stopped")?;
        m.write_all(b"fg\n").map_err(|e| e.to_string())?;
        expect(&mut m, "finished")?;
        // Type the next line only at the prompt: typed earlier, the relay (still running
        // until the sandbox has exited) passes it to the finished command's pty, like any
        // pty relay (script, ssh) does with typeahead.
        expect(&mut m, "$ ")?;
        // The command's terminal is a pty of the sandbox's own devpts: ttyname works.
        let tty = format!(
            "{} run -p full -w {} -- sh -c 'echo T=$(tty)'\n",
            common::binary().display(),
            ws.s()
        );
        m.write_all(tty.as_bytes()).map_err(|e| e.to_string())?;
        expect(&mut m, "T=/dev/pts/0")?;
        m.write_all(b"exit\n").map_err(|e| e.to_string())?;
        Ok::<(), Failed>(())
    })();
    let _ = child.kill();
    let _ = child.wait();
    r
}

fn hostname_and_identity(env: &Env) -> Result<(), Failed> {
    let ws = env.workspace()?;
    let out = env.run(&[
        "run",
        "-p",
        "full",
        "-w",
        ws.s(),
        "--",
        "sh",
        "-c",
        "hostname; id -u; cat /proc/self/status",
    ])?;
    out.expect_code(0, "full")?;
    let l: Vec<&str> = out.stdout.lines().collect();
    if l.first() != Some(&"agentcage") || l.get(1) != Some(&"0") {
        return Err(format!("unexpected hostname/uid: {:?}", &l[..2.min(l.len())]).into());
    }
    for want in [
        "CapEff:\t0000000000000000",
        "CapBnd:\t0000000000000000",
        "NoNewPrivs:\t1",
        "Seccomp:\t2",
    ] {
        if !out.stdout.contains(want) {
            return Err(format!("missing {want:?}").into());
        }
    }
    Ok(())
}

/// The command's network namespace is its own (never the launcher's), owned by the user
/// namespace the command runs in, with lo up. Under `full` and `landlock` the sandbox's first
/// process builds it beside itself and joins it before the command (issue 19); `ns-only`
/// creates it in the command's nested namespace.
fn own_network_namespace(env: &Env) -> Result<(), Failed> {
    let host = std::fs::read_link("/proc/self/ns/net").map_err(|e| e.to_string())?;
    let check = "import os, socket, fcntl\n\
        fd = os.open('/proc/self/ns/net', os.O_RDONLY)\n\
        owner = fcntl.ioctl(fd, 0xb701)  # NS_GET_USERNS\n\
        same = os.fstat(owner).st_ino == os.stat('/proc/self/ns/user').st_ino\n\
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
        s.bind(('127.0.0.1', 0)); s.sendto(b'x', s.getsockname())\n\
        print(os.readlink('/proc/self/ns/net'), 'owner=ours' if same else 'owner=other', \
        'lo=' + s.recv(1).decode())";
    for p in ["full", "landlock", "ns-only"] {
        let ws = env.workspace()?;
        let out = env.run(&["run", "-p", p, "-w", ws.s(), "--", "python3", "-c", check])?;
        out.expect_code(0, p)?;
        let words: Vec<&str> = out.stdout.split_whitespace().collect();
        if words.len() != 3 || words[1..] != ["owner=ours", "lo=x"] {
            return Err(format!("{p}: {:?}", out.stdout).into());
        }
        if std::path::Path::new(words[0]) == host {
            return Err(format!("{p}: the command is in the launcher's {}", words[0]).into());
        }
    }
    Ok(())
}

/// Makes Landlock look absent to the process: a seccomp filter in the spawned launcher
/// answers ENOSYS to landlock_create_ruleset/add_rule/restrict_self (444-446 on x86_64 and
/// aarch64), exactly what a kernel without Landlock says. Runs in `pre_exec`.
fn hide_landlock(c: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl and seccomp on a filter that lives on this closure's stack; both are
    // async-signal-safe and the filter is copied by the kernel.
    unsafe {
        c.pre_exec(|| {
            const RET_ALLOW: u32 = 0x7fff_0000;
            const RET_ERRNO: u32 = 0x0005_0000;
            let f = |code: u16, jt: u8, jf: u8, k: u32| libc::sock_filter { code, jt, jf, k };
            let prog = [
                f(0x20, 0, 0, 0),   // ld [nr]
                f(0x35, 0, 3, 444), // jge 444 ? next : allow
                f(0x35, 2, 0, 447), // jge 447 ? allow : next
                f(0x06, 0, 0, RET_ERRNO | libc::ENOSYS as u32),
                f(0x06, 0, 0, RET_ALLOW),
                f(0x06, 0, 0, RET_ALLOW),
            ];
            let fprog = libc::sock_fprog {
                len: prog.len() as u16,
                filter: prog.as_ptr().cast_mut(),
            };
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
                || libc::prctl(libc::PR_SET_SECCOMP, 2, &fprog as *const libc::sock_fprog) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Fail closed: without Landlock the landlock and full profiles refuse to run (125, and say
/// why); `--best-effort` runs and says what was not enforced; ns-only is unaffected.
fn fails_closed_without_landlock(env: &Env) -> Result<(), Failed> {
    let ws = env.workspace()?;
    for p in ["landlock", "full"] {
        let out = env.run_with(&["run", "-p", p, "-w", ws.s(), "--", "true"], hide_landlock)?;
        out.expect_code(125, p)?;
        if !out.stderr.contains("Landlock") || !out.stderr.contains("--best-effort") {
            return Err(format!("{p}: no reason/hint on stderr: {}", out.stderr).into());
        }
        let out = env.run_with(
            &[
                "run",
                "-p",
                p,
                "--best-effort",
                "-v",
                "-w",
                ws.s(),
                "--",
                "sh",
                "-c",
                "echo ran",
            ],
            hide_landlock,
        )?;
        out.expect_code(0, p)?;
        if out.stdout.trim() != "ran" || !out.stderr.contains("not enforced") {
            return Err(format!("{p} --best-effort: {:?} / {}", out.stdout, out.stderr).into());
        }
        // Weaker than asked is said even without -v.
        let out = env.run_with(
            &["run", "-p", p, "--best-effort", "-w", ws.s(), "--", "true"],
            hide_landlock,
        )?;
        out.expect_code(0, p)?;
        if !out.stderr.contains("warning: landlock: not enforced") {
            return Err(
                format!("{p} --best-effort without -v said nothing: {}", out.stderr).into(),
            );
        }
    }
    env.run_with(
        &["run", "-p", "ns-only", "-w", ws.s(), "--", "true"],
        hide_landlock,
    )?
    .expect_code(0, "ns-only")
}

/// A requested limit this caller cannot enforce is said on every run (not only with -v);
/// one that is enforced is not.
fn unenforced_limits_are_said(env: &Env) -> Result<(), Failed> {
    let ws = env.workspace()?;
    let v = env.run(&["run", "-v", "-w", ws.s(), "--cpus", "1", "--", "true"])?;
    v.expect_code(0, "run -v --cpus 1")?;
    let by_cgroup = v
        .stderr
        .lines()
        .any(|l| l.starts_with("agentcage: cpus: cgroup"));
    let out = env.run(&["run", "-w", ws.s(), "--cpus", "1", "--", "true"])?;
    out.expect_code(0, "run --cpus 1")?;
    let warned = out.stderr.contains("warning: cpus: not enforced");
    if by_cgroup == warned {
        return Err(format!(
            "cpus enforced by a cgroup: {by_cgroup}, warned: {warned}: {}",
            out.stderr
        )
        .into());
    }
    let quiet = env.run(&["run", "-q", "-w", ws.s(), "--cpus", "1", "--", "true"])?;
    if quiet.stderr.contains("warning") {
        return Err(format!("-q still warns: {}", quiet.stderr).into());
    }
    Ok(())
}

/// Without namespaces the command's process is spawned vfork-like: until its execve it runs
/// on the launcher's memory. Nothing it did there may stay in the launcher: the mm's
/// dumpable flag (a non-dumpable launcher's /proc files would turn root's) and the argv area
/// (the init's title overwrite) are the launcher's own.
fn launcher_intact_after_direct_exec(env: &Env) -> Result<(), Failed> {
    let ws = env.workspace()?;
    let script = "stat -c %u /proc/$PPID/environ; id -u; tr '\\0' ' ' < /proc/$PPID/cmdline";
    let out = env.run(&["run", "-p", "none", "-w", ws.s(), "--", "sh", "-c", script])?;
    out.expect_code(0, "none")?;
    let lines: Vec<&str> = out.stdout.lines().collect();
    if lines.len() != 3 || lines[0] != lines[1] {
        return Err(format!(
            "the launcher's /proc files changed owner (non-dumpable?): {:?}",
            out.stdout
        )
        .into());
    }
    if !lines[2].contains(" run ") || !lines[2].contains(" none ") {
        return Err(format!("the launcher's argv was overwritten: {:?}", lines[2]).into());
    }
    Ok(())
}

fn main() {
    let args = Arguments::from_args();
    let tests: &[(&str, TestFn, bool)] = &[
        ("workspace_rw", workspace_rw, false),
        ("real_programs_under_full", real_programs_under_full, false),
        ("outside_file_invisible", outside_file_invisible, false),
        ("env_secret_and_fd_hidden", env_secret_and_fd_hidden, false),
        ("exit_codes", exit_codes, false),
        (
            "background_killed_on_exit",
            background_killed_on_exit,
            false,
        ),
        (
            "launcher_sigkill_kills_sandbox",
            launcher_sigkill_kills_sandbox,
            false,
        ),
        (
            "readonly_bind_is_readonly",
            readonly_bind_is_readonly,
            false,
        ),
        ("hostname_and_identity", hostname_and_identity, false),
        ("own_network_namespace", own_network_namespace, false),
        ("signals_are_forwarded", signals_are_forwarded, false),
        (
            "fails_closed_without_landlock",
            fails_closed_without_landlock,
            false,
        ),
        (
            "unenforced_limits_are_said",
            unenforced_limits_are_said,
            false,
        ),
        (
            "job_control_through_the_pty",
            job_control_through_the_pty,
            false,
        ),
        ("root_files_not_host_root", root_files_not_host_root, true),
        (
            "launcher_intact_after_direct_exec",
            launcher_intact_after_direct_exec,
            false,
        ),
    ];
    common::run(&args, common::trials_by_user(tests))
}
