//! Sandbox tier (issue #14): the nested rung where no user namespace can be created. Two
//! simulations, as root and as uid 65534, of what containers do:
//! - `sysctl`: the launcher runs in a user namespace (identity-mapped by the test, which is
//!   root) whose `user.max_user_namespaces` is 0, as `bwrap --unshare-user --disable-userns`
//!   does (Ubuntu's AppArmor restriction and `max_user_namespaces=0` hosts fail the same way);
//! - `seccomp`: the launcher runs under a seccomp filter that fails clone/unshare with
//!   CLONE_NEWUSER (EPERM) and clone3 (ENOSYS), like Docker's and Kubernetes' default profiles.
//!
//! In both, `run --best-effort` takes the nested rung and says so; then shell, python, git and
//! gcc work; /etc/shadow, /root, other homes and the caller's environment stay unreadable;
//! writes outside the workspace and /tmp fail; a loopback TCP listener is unreachable unless
//! `--tcp-connect` allows it; the caller's terminal cannot be opened or injected into. Plain
//! `run` (full) still refuses there, never degrading silently. As root, a root-owned workspace
//! is refused, then accepted with `--allow-nested-root` (uid 0 without capabilities).

mod common;

use std::ffi::CString;
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use common::{err, Env, Out, Scratch, Who};
use libtest_mimic::{Arguments, Failed, Trial};

/// How the test takes user namespaces away from the launcher.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NoUserns {
    Sysctl,
    Seccomp,
}

impl NoUserns {
    fn name(self) -> &'static str {
        match self {
            NoUserns::Sysctl => "sysctl",
            NoUserns::Seccomp => "seccomp",
        }
    }
}

/// A filter that fails clone/unshare with CLONE_NEWUSER (EPERM) and clone3 (ENOSYS), as
/// container runtimes' default profiles do; everything else (and other arches) allowed.
#[cfg(target_arch = "x86_64")]
fn deny_userns_filter() -> Vec<libc::sock_filter> {
    const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
    let st = |code: u16, k: u32| libc::sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    };
    let j = |code: u16, k: u32, jt: u8, jf: u8| libc::sock_filter { code, jt, jf, k };
    let ld = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
    let jeq = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
    let jset = (libc::BPF_JMP | libc::BPF_JSET | libc::BPF_K) as u16;
    let ret = (libc::BPF_RET | libc::BPF_K) as u16;
    vec![
        st(ld, 4),                                  // 0: arch
        j(jeq, AUDIT_ARCH_X86_64, 0, 8),            // 1: other arch -> 10
        st(ld, 0),                                  // 2: nr
        j(jeq, libc::SYS_clone3 as u32, 5, 0),      // 3: clone3 -> 9
        j(jeq, libc::SYS_clone as u32, 1, 0),       // 4: clone -> 6
        j(jeq, libc::SYS_unshare as u32, 0, 4),     // 5: unshare -> 6, else 10
        st(ld, 16),                                 // 6: args[0] (low half)
        j(jset, libc::CLONE_NEWUSER as u32, 0, 2),  // 7: NEWUSER -> 8, else 10
        st(ret, 0x0005_0000 | libc::EPERM as u32),  // 8
        st(ret, 0x0005_0000 | libc::ENOSYS as u32), // 9
        st(ret, 0x7fff_0000),                       // 10: allow
    ]
}

/// Runs the agentcage binary with `args` as `who`, with user namespaces taken away by `how`.
/// `stdin`: an fd for the launcher's stdin (else /dev/null); `env`: extra variables.
fn run_without_userns(
    how: NoUserns,
    who: Who,
    args: &[&str],
    stdin: Option<i32>,
    env: &[(&str, &str)],
) -> Result<Out, Failed> {
    let bin = CString::new(common::binary().as_os_str().as_bytes()).map_err(err)?;
    let mut argv: Vec<CString> = vec![bin.clone()];
    for a in args {
        argv.push(CString::new(*a).map_err(err)?);
    }
    let mut envv: Vec<CString> = std::env::vars_os()
        .filter(|(k, _)| !env.iter().any(|(e, _)| k.as_bytes() == e.as_bytes()))
        .filter_map(|(k, v)| {
            let mut b = k.as_bytes().to_vec();
            b.push(b'=');
            b.extend_from_slice(v.as_bytes());
            CString::new(b).ok()
        })
        .collect();
    for (k, v) in env {
        envv.push(CString::new(format!("{k}={v}")).map_err(err)?);
    }
    let argp: Vec<*const libc::c_char> = argv
        .iter()
        .map(|c| c.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect();
    let envp: Vec<*const libc::c_char> = envv
        .iter()
        .map(|c| c.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect();
    #[cfg(target_arch = "x86_64")]
    let filter = deny_userns_filter();
    #[cfg(not(target_arch = "x86_64"))]
    let filter: Vec<libc::sock_filter> = Vec::new();
    let prog = libc::sock_fprog {
        len: filter.len() as u16,
        filter: filter.as_ptr() as *mut libc::sock_filter,
    };
    let pipe = || -> Result<(OwnedFd, OwnedFd), Failed> {
        let mut p = [0; 2];
        // SAFETY: p is a live array of two ints.
        if unsafe { libc::pipe2(p.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return Err("pipe2".into());
        }
        // SAFETY: pipe2 just created both fds.
        Ok(unsafe { (OwnedFd::from_raw_fd(p[0]), OwnedFd::from_raw_fd(p[1])) })
    };
    let (out_r, out_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    let (ready_r, ready_w) = pipe()?;
    let (go_r, go_w) = pipe()?;
    let devnull = c"/dev/null";
    let nobody = who == Who::Nobody;
    let (ow, ew, rw, gr) = (
        out_w.as_raw_fd(),
        err_w.as_raw_fd(),
        ready_w.as_raw_fd(),
        go_r.as_raw_fd(),
    );
    // SAFETY: the child only makes raw libc calls on data built above, then execs or exits.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err("fork".into());
    }
    if pid == 0 {
        // SAFETY: async-signal-safe calls only; every pointer refers to data built before fork.
        unsafe {
            let die = |code: i32| -> ! { libc::_exit(code) };
            if how == NoUserns::Sysctl {
                if libc::unshare(libc::CLONE_NEWUSER) != 0 {
                    die(90);
                }
                libc::write(rw, b"r".as_ptr().cast(), 1);
                let mut b = 0u8;
                if libc::read(gr, (&mut b as *mut u8).cast(), 1) != 1 {
                    die(91);
                }
                let fd = libc::open(
                    c"/proc/sys/user/max_user_namespaces".as_ptr(),
                    libc::O_WRONLY,
                );
                if fd < 0 || libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                    die(92);
                }
                libc::close(fd);
            }
            if nobody
                && (libc::setgroups(0, std::ptr::null()) != 0
                    || libc::setresgid(65534, 65534, 65534) != 0
                    || libc::setresuid(65534, 65534, 65534) != 0)
            {
                die(93);
            }
            if how == NoUserns::Seccomp
                && (libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
                    || libc::prctl(
                        libc::PR_SET_SECCOMP,
                        libc::SECCOMP_MODE_FILTER,
                        &prog as *const libc::sock_fprog,
                    ) != 0)
            {
                die(94);
            }
            let inp = match stdin {
                Some(fd) => fd,
                None => libc::open(devnull.as_ptr(), libc::O_RDONLY),
            };
            if libc::dup2(inp, 0) < 0 || libc::dup2(ow, 1) < 0 || libc::dup2(ew, 2) < 0 {
                die(95);
            }
            libc::chdir(c"/".as_ptr());
            libc::execve(bin.as_ptr(), argp.as_ptr(), envp.as_ptr());
            die(96);
        }
    }
    drop(out_w);
    drop(err_w);
    drop(ready_w);
    drop(go_r);
    let mut setup = Ok(());
    if how == NoUserns::Sysctl {
        let mut b = [0u8; 1];
        let n = (&std::fs::File::from(ready_r)).read(&mut b).map_err(err)?;
        if n == 1 {
            let map = "0 0 4294967295\n";
            setup = std::fs::write(format!("/proc/{pid}/uid_map"), map)
                .and_then(|()| std::fs::write(format!("/proc/{pid}/gid_map"), map))
                .map_err(|e| format!("map the test's user namespace: {e}"));
        }
        if setup.is_ok() {
            // SAFETY: go_w is a live pipe fd.
            unsafe { libc::write(go_w.as_raw_fd(), b"g".as_ptr().cast(), 1) };
        }
        drop(go_w);
    }
    let errs = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = std::fs::File::from(err_r).read_to_end(&mut s);
        s
    });
    let mut stdout = Vec::new();
    let _ = std::fs::File::from(out_r).read_to_end(&mut stdout);
    let stderr = errs.join().unwrap_or_default();
    let mut st = 0;
    // SAFETY: our own child.
    unsafe { libc::waitpid(pid, &mut st, 0) };
    setup?;
    let code = if libc::WIFEXITED(st) {
        libc::WEXITSTATUS(st)
    } else {
        128 + libc::WTERMSIG(st)
    };
    if (90..=96).contains(&code) {
        return Err(format!(
            "the simulation's helper failed before exec (code {code}): {}",
            String::from_utf8_lossy(&stderr)
        )
        .into());
    }
    Ok(Out::from_bytes(code, &stdout, &stderr))
}

/// `run --best-effort -q FLAGS -w WS -- ARGV`.
fn best_effort<'a>(ws: &'a Scratch, flags: &[&'a str], argv: &[&'a str]) -> Vec<&'a str> {
    let mut a = vec!["run", "--best-effort", "-q"];
    a.extend(flags);
    a.extend(["-w", ws.s(), "--"]);
    a.extend(argv);
    a
}

/// A workspace owned by the sandbox user: as root the nested rung runs as its owner (65534).
fn workspace(env: &Env) -> Result<Scratch, Failed> {
    env.workspace()
}

/// `run --best-effort` takes the nested rung, says so, and real tools work; plain `run`
/// refuses (never degrades silently).
fn tools_work(how: NoUserns, env: &Env) -> Result<(), Failed> {
    let ws = workspace(env)?;
    let full = run_without_userns(
        how,
        env.who,
        &["run", "-w", ws.s(), "--", "true"],
        None,
        &[],
    )?;
    full.expect_code(125, "plain run without user namespaces")?;
    let script = "set -e; echo shell-ok; python3 -c 'print(\"python-ok\")'; \
        git init -q . && echo a > a && git add a && \
        git -c user.email=a@b -c user.name=a commit -qm one && echo git-ok; \
        printf '#include <stdio.h>\\nint main(void){puts(\"gcc-ok\");return 0;}\\n' > /tmp/agentcage-nested-$$.c; \
        gcc -o hello /tmp/agentcage-nested-$$.c && ./hello; rm -f /tmp/agentcage-nested-$$.c; \
        id -u";
    let out = run_without_userns(
        how,
        env.who,
        &[
            "run",
            "--best-effort",
            "-w",
            ws.s(),
            "--",
            "sh",
            "-c",
            script,
        ],
        None,
        &[],
    )?;
    out.expect_code(0, "tools under the nested rung")?;
    for w in ["shell-ok", "python-ok", "git-ok", "gcc-ok"] {
        if !out.stdout.contains(w) {
            return Err(format!("missing {w}: {}\n{}", out.stdout, out.stderr).into());
        }
    }
    if out.stdout.trim_end().lines().last() != Some("65534") {
        return Err(format!("the command should run as uid 65534: {}", out.stdout).into());
    }
    if !out.stderr.contains("--best-effort: no user namespace here") {
        return Err(format!("the fallback must be said: {}", out.stderr).into());
    }
    Ok(())
}

/// Secrets stay out of reach: /etc/shadow, /root, other homes, the caller's environment
/// (the command's and the launcher's /proc environ).
fn secrets_unreadable(how: NoUserns, env: &Env) -> Result<(), Failed> {
    let ws = workspace(env)?;
    let home = Path::new("/home").join(format!("agentcage-t-nested-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&home);
    std::fs::write(home.join("secret"), "s3cret").map_err(err)?;
    let home_s = home.display().to_string();
    let script = format!(
        "for f in /etc/shadow {home_s}/secret /proc/$PPID/environ; do \
           cat $f >/dev/null 2>&1 && echo READ $f; done; \
         ls /root >/dev/null 2>&1 && echo READ /root; \
         env | grep -q AGENTCAGE_T_SECRET && echo READ env; \
         cat /etc/hostname >/dev/null && echo control-ok"
    );
    let out = run_without_userns(
        how,
        env.who,
        &best_effort(&ws, &[], &["sh", "-c", &script]),
        None,
        &[("AGENTCAGE_T_SECRET", "hunter2")],
    );
    let _ = std::fs::remove_dir_all(&home);
    let out = out?;
    out.expect_code(0, "secrets")?;
    if out.stdout.trim() != "control-ok" {
        return Err(format!("{}\n{}", out.stdout, out.stderr).into());
    }
    Ok(())
}

/// Writes land only in the workspace and /tmp.
fn writes_confined(how: NoUserns, env: &Env) -> Result<(), Failed> {
    let ws = workspace(env)?;
    let tag = format!("agentcage-t-nested-w-{}", std::process::id());
    let script = format!(
        "for d in /var/tmp /etc /usr/local /dev/shm/.. /opt; do \
           (echo x > $d/{tag}) 2>/dev/null && echo WROTE $d; done; \
         echo x > {ws}/in && echo x > /tmp/{tag} && echo x > /dev/shm/{tag} && echo ok",
        ws = ws.s()
    );
    let out = run_without_userns(
        how,
        env.who,
        &best_effort(&ws, &[], &["sh", "-c", &script]),
        None,
        &[],
    )?;
    let _ = std::fs::remove_file(Path::new("/tmp").join(&tag));
    let _ = std::fs::remove_file(Path::new("/dev/shm").join(&tag));
    out.expect_code(0, "writes")?;
    if out.stdout.trim() != "ok" {
        return Err(format!("{}\n{}", out.stdout, out.stderr).into());
    }
    for d in ["/var/tmp", "/etc", "/usr/local", "/opt"] {
        let p = Path::new(d).join(&tag);
        if p.exists() {
            let _ = std::fs::remove_file(&p);
            return Err(format!("{} was written", p.display()).into());
        }
    }
    Ok(())
}

/// TCP connect to a loopback listener of the host fails, unless `--tcp-connect` allows it.
fn tcp_loopback_denied_unless_allowed(how: NoUserns, env: &Env) -> Result<(), Failed> {
    let ws = workspace(env)?;
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(err)?;
    let port = l.local_addr().map_err(err)?.port().to_string();
    let script = format!(
        "import socket, errno\n\
         s = socket.socket()\n\
         try:\n    s.connect(('127.0.0.1', {port})); print('connected')\n\
         except OSError as e: print(errno.errorcode[e.errno])\n"
    );
    let deny = run_without_userns(
        how,
        env.who,
        &best_effort(&ws, &[], &["python3", "-c", &script]),
        None,
        &[],
    )?;
    deny.expect_code(0, "connect")?;
    if deny.stdout.trim() != "EACCES" {
        return Err(format!(
            "connect should fail with EACCES: {} {}",
            deny.stdout, deny.stderr
        )
        .into());
    }
    let allow = run_without_userns(
        how,
        env.who,
        &best_effort(&ws, &["--tcp-connect", &port], &["python3", "-c", &script]),
        None,
        &[],
    )?;
    if allow.stdout.trim() != "connected" {
        return Err(format!("--tcp-connect {port}: {} {}", allow.stdout, allow.stderr).into());
    }
    Ok(())
}

/// The caller's terminal: not the command's (a pty relay), not openable by path, and
/// TIOCSTI is refused.
fn terminal_not_injectable(how: NoUserns, env: &Env) -> Result<(), Failed> {
    let ws = workspace(env)?;
    let (mut m, mut s) = (0, 0);
    // SAFETY: openpty fills two fds we then own.
    if unsafe {
        libc::openpty(
            &mut m,
            &mut s,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    } != 0
    {
        return Err("openpty".into());
    }
    // SAFETY: openpty just created both fds.
    let (master, slave) = unsafe { (OwnedFd::from_raw_fd(m), OwnedFd::from_raw_fd(s)) };
    let name = std::fs::read_link(format!("/proc/self/fd/{s}")).map_err(err)?;
    if env.who == Who::Nobody {
        // The caller's terminal is its own.
        std::os::unix::fs::chown(&name, Some(65534), None).map_err(err)?;
    }
    let script = format!(
        "import os, fcntl, termios, errno\n\
         def t(n, f):\n    try:\n        f(); print(n, 'ALLOWED')\n    except OSError as e:\n        print(n, errno.errorcode[e.errno])\n\
         t('tiocsti-stdin', lambda: fcntl.ioctl(0, termios.TIOCSTI, b'x'))\n\
         t('open-caller-tty', lambda: os.open('{}', os.O_RDWR))\n",
        name.display()
    );
    let out = run_without_userns(
        how,
        env.who,
        &best_effort(&ws, &[], &["python3", "-c", &script]),
        Some(slave.as_raw_fd()),
        &[],
    )?;
    drop(master);
    out.expect_code(0, "terminal")?;
    let want = "tiocsti-stdin EPERM\nopen-caller-tty EACCES\n";
    if out.stdout.replace("\r\n", "\n") != want {
        return Err(format!("got {:?} want {want:?}\n{}", out.stdout, out.stderr).into());
    }
    Ok(())
}

/// As root: a root-owned workspace is refused (125, with the hint), then accepted with
/// `--allow-nested-root`: uid 0 with no capabilities at all, writes land as root's.
fn root_owned_workspace_needs_consent(how: NoUserns, env: &Env) -> Result<(), Failed> {
    let ws = env.policy_dir()?; // root-owned, 0755
    let refused = run_without_userns(
        how,
        env.who,
        &["run", "--best-effort", "-w", ws.s(), "--", "true"],
        None,
        &[],
    )?;
    refused.expect_code(125, "root-owned workspace without consent")?;
    if !refused.stderr.contains("--allow-nested-root") {
        return Err(format!("the hint should name the flag: {}", refused.stderr).into());
    }
    let script = "id -u; grep -E '^Cap(Prm|Eff|Bnd|Amb)' /proc/self/status; echo x > f; \
        cat /etc/shadow >/dev/null 2>&1 && echo READ-SHADOW; chmod u+s f 2>/dev/null && echo SETUID; true";
    let out = run_without_userns(
        how,
        env.who,
        &best_effort(&ws, &["--allow-nested-root"], &["sh", "-c", script]),
        None,
        &[],
    )?;
    out.expect_code(0, "root-owned workspace with consent")?;
    let want = "0\nCapPrm:\t0000000000000000\nCapEff:\t0000000000000000\n\
                CapBnd:\t0000000000000000\nCapAmb:\t0000000000000000\n";
    if out.stdout != want {
        return Err(format!("got {:?}\n{}", out.stdout, out.stderr).into());
    }
    let md = std::fs::metadata(ws.path().join("f")).map_err(err)?;
    if md.uid() != 0 || md.mode() & 0o6000 != 0 {
        return Err(format!("f: uid {} mode {:o}", md.uid(), md.mode()).into());
    }
    Ok(())
}

type NestedFn = fn(NoUserns, &Env) -> Result<(), Failed>;

fn main() {
    let args = Arguments::from_args();
    let tests: &[(&str, NestedFn, bool)] = &[
        ("tools_work", tools_work, false),
        ("secrets_unreadable", secrets_unreadable, false),
        ("writes_confined", writes_confined, false),
        (
            "tcp_loopback_denied_unless_allowed",
            tcp_loopback_denied_unless_allowed,
            false,
        ),
        ("terminal_not_injectable", terminal_not_injectable, false),
        (
            "root_owned_workspace_needs_consent",
            root_owned_workspace_needs_consent,
            true,
        ),
    ];
    let mut trials: Vec<Trial> = Vec::new();
    for how in [NoUserns::Sysctl, NoUserns::Seccomp] {
        for who in [Who::Root, Who::Nobody] {
            for &(name, f, root_only) in tests {
                if root_only && who != Who::Root {
                    continue;
                }
                // Both simulations need a root test process (it maps the user namespace, or
                // drops to 65534 itself); the filter is written for x86_64.
                let skip = if !common::is_root() {
                    Some("needs root (the test maps or drops ids itself)".to_string())
                } else if how == NoUserns::Seccomp && !cfg!(target_arch = "x86_64") {
                    Some("the test's seccomp filter is written for x86_64".to_string())
                } else {
                    common::skip_reason(who)
                };
                let full = format!("{}::{}::{name}", how.name(), who.name());
                if let Some(why) = &skip {
                    eprintln!("skip {full}: {why}");
                }
                trials.push(
                    Trial::test(full, move || {
                        let env = Env::new(who)?;
                        f(how, &env)
                    })
                    .with_ignored_flag(skip.is_some()),
                );
            }
        }
    }
    common::run(&args, trials)
}
