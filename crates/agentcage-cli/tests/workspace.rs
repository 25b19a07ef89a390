//! Sandbox tier: the workspace controls of issue #15 (second part): read-only placeholders
//! for default protected paths that do not exist at start, `--read-only-workspace`, `--mask`,
//! `--tmpfs`, `--chdir`, `--home`; symlinks planted at protected paths steer nothing outside
//! (`symlinks_steer_nothing`). Each trial runs as root and as uid 65534, like `sandbox.rs`,
//! with the same skip rules.

mod common;

use std::path::Path;
use std::process::Command;

use common::{err, process_with_arg, settle, wait_deadline, Env, TestFn, Who};
use libtest_mimic::{Arguments, Failed};

/// Every profile with a mount namespace.
const PROFILES: [&str; 3] = ["ns-only", "landlock", "full"];

/// Every entry below `dir` (relative, sorted; symlinks not followed).
fn tree(dir: &Path) -> Vec<String> {
    fn walk(root: &Path, d: &Path, out: &mut Vec<String>) {
        let Ok(rd) = std::fs::read_dir(d) else { return };
        for e in rd.flatten() {
            let p = e.path();
            out.push(p.strip_prefix(root).unwrap_or(&p).display().to_string());
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                walk(root, &p, out);
            }
        }
    }
    let mut v = Vec::new();
    walk(dir, dir, &mut v);
    v.sort();
    v
}

/// The host's mount table lines that name `p` (a run must leave none behind).
fn host_mounts_of(p: &Path) -> usize {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(p.to_str().unwrap_or("\0")))
        .count()
}

/// Each attempt prints `NAME OK` or `NAME ERRNO`.
const PLANT: &str = r#"import os, errno, subprocess
def t(name, f):
    try:
        f()
        print(name, 'OK')
    except OSError as e:
        print(name, errno.errorcode[e.errno])
def w(p, s):
    with open(p, 'w') as f:
        f.write(s)
t('git-dir', lambda: os.makedirs('.git/hooks'))
t('hook', lambda: w('.git/hooks/pre-commit', '#!/bin/sh\ntouch /tmp/pwned\n'))
t('envrc', lambda: w('.envrc', 'touch /tmp/pwned\n'))
t('claude', lambda: w('.claude/settings.json', '{"hooks": {}}\n'))
t('mcp', lambda: w('.mcp.json', '{}\n'))
t('rename-claude', lambda: os.rename('.claude', 'c2'))
t('rmdir-vscode', lambda: os.rmdir('.vscode'))
t('unlink-envrc', lambda: os.unlink('.envrc'))
t('symlink-swap', lambda: (os.rename('.git', 'g2'), os.symlink('/etc', '.git')))
r = subprocess.run(['git', 'init', '-q', '.'], capture_output=True)
print('git-init', 'OK' if r.returncode == 0 else 'FAILED')
"#;

/// A workspace with nothing in it: every default protected path is missing. The agent cannot
/// create any of them (a read-only placeholder is bound on the first missing component, `.git`
/// for the git ones), cannot rename or remove the placeholders, and after the run the host's
/// workspace is as empty as before (placeholders removed) with no mount left behind.
fn missing_defaults_get_placeholders(env: &Env) -> Result<(), Failed> {
    for p in PROFILES {
        let ws = env.workspace()?;
        let out = env.run(&["run", "-p", p, "-w", ws.s(), "--", "python3", "-c", PLANT])?;
        out.expect_code(0, p)?;
        let lines: Vec<&str> = out.stdout.lines().collect();
        if lines.len() != 10 {
            return Err(format!("{p}: unexpected output: {}\n{}", out.stdout, out.stderr).into());
        }
        for l in &lines {
            if l.ends_with(" OK") {
                return Err(format!("{p}: {l}\n{}\n{}", out.stdout, out.stderr).into());
            }
        }
        let left = tree(ws.path());
        if !left.is_empty() {
            return Err(format!("{p}: the workspace is not empty after the run: {left:?}").into());
        }
        if host_mounts_of(ws.path()) != 0 {
            return Err(format!("{p}: a mount of the workspace is left on the host").into());
        }
        if out.stderr.contains("the sandbox created") {
            return Err(format!("{p}: {}", out.stderr).into());
        }
    }
    Ok(())
}

/// A repository without `.git/hooks` and `.git/info` (as `git clone --template=` makes one):
/// the agent cannot create them, `git status` and `git commit` still work inside, and the
/// host's `.git` has no hooks directory after the run.
fn repo_without_hooks(env: &Env) -> Result<(), Failed> {
    let ws = env.workspace()?;
    let o = Command::new("git")
        .args(["init", "-q", "--template=", "."])
        .current_dir(ws.path())
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()
        .map_err(err)?;
    if !o.status.success() {
        return Err(format!("git init: {}", String::from_utf8_lossy(&o.stderr)).into());
    }
    env.chown_tree(ws.path())?;
    if ws.path().join(".git/hooks").exists() {
        return Err("git init --template= made .git/hooks".into());
    }
    let out = env.run(&[
        "run",
        "-w",
        ws.s(),
        "-e",
        "GIT_CONFIG_NOSYSTEM=1",
        "--",
        "sh",
        "-c",
        "mkdir -p .git/hooks 2>/dev/null && echo x > .git/hooks/pre-commit && echo HOOKS-WRITABLE; \
         mkdir -p .git/info 2>/dev/null && echo x > .git/info/exclude && echo INFO-WRITABLE; \
         echo a > a && git add a && git -c user.name=t -c user.email=t@t commit -qm m && \
         git status --short && echo COMMITTED",
    ])?;
    out.expect_code(0, "run")?;
    if out.stdout.contains("WRITABLE") || !out.stdout.contains("COMMITTED") {
        return Err(format!("stdout {}\nstderr {}", out.stdout, out.stderr).into());
    }
    for d in [".git/hooks", ".git/info"] {
        if ws.path().join(d).exists() {
            return Err(format!("{d} exists on the host after the run").into());
        }
    }
    if !ws.path().join(".git/objects").is_dir() || !ws.path().join("a").is_file() {
        return Err("the commit is not on the host".into());
    }
    Ok(())
}

/// Two runs on one workspace: the second finds the first one's placeholders (marked) and the
/// first cannot remove them while the second runs; the last one to end removes them. A
/// launcher killed with SIGKILL leaves its placeholders; the next run takes them over and
/// removes them.
fn concurrent_runs_and_killed_launcher(env: &Env) -> Result<(), Failed> {
    let ws = env.workspace()?;
    let marker = format!("ac-ws-long-{}", std::process::id());
    // The first run lasts until the second one was checked (the file `go`, made from here),
    // not a fixed time: under load a second run can take longer than any sleep.
    let wait_go = "i=0; while [ ! -e go ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done";
    let mut long = env.spawn(&["run", "-w", ws.s(), "--", "sh", "-c", wait_go, &marker])?;
    settle(|| ws.path().join(".git").is_dir()).map_err(|()| "no placeholder appeared")?;
    let out = env.run(&[
        "run",
        "-w",
        ws.s(),
        "--",
        "sh",
        "-c",
        "echo x > .envrc/x || mkdir -p .git/hooks/x || exit 0; echo WRITABLE",
    ])?;
    out.expect_code(0, "second run")?;
    if out.stdout.contains("WRITABLE") {
        return Err(format!("second run: {}", out.stdout).into());
    }
    if !ws.path().join(".git").is_dir() {
        return Err(
            "the second run removed the placeholders of the first one, still running".into(),
        );
    }
    std::fs::write(ws.path().join("go"), "").map_err(err)?;
    let st = wait_deadline(&mut long, std::time::Duration::from_secs(90), "first run")?;
    std::fs::remove_file(ws.path().join("go")).map_err(err)?;
    if !st.success() {
        return Err(format!("first run: {st}").into());
    }
    let left = tree(ws.path());
    if !left.is_empty() {
        return Err(format!("after both runs: {left:?}").into());
    }
    // SIGKILL of the launcher (our own child, by pid).
    let mut killed = env.spawn(&["run", "-w", ws.s(), "--", "sh", "-c", "sleep 30", &marker])?;
    settle(|| ws.path().join(".claude").is_dir()).map_err(|()| "no placeholder appeared")?;
    killed.kill().map_err(err)?;
    let _ = killed.wait();
    settle(|| !process_with_arg(&marker)).map_err(|()| "the sandbox outlived its launcher")?;
    if tree(ws.path()).is_empty() {
        return Err("no placeholder left by the killed launcher (the test proves nothing)".into());
    }
    let out = env.run(&["run", "-w", ws.s(), "--", "true"])?;
    out.expect_code(0, "run after the kill")?;
    let left = tree(ws.path());
    if !left.is_empty() {
        // Only where the filesystem has no user xattrs (the mark): said, not failed.
        eprintln!(
            "  [{}] placeholders left by a killed launcher stay: {left:?}",
            env.who.name()
        );
    }
    Ok(())
}

/// A launcher SIGKILLed at any moment of its placeholder work (30 kills spread over the window
/// in which it makes them) never leaves the workspace in a state where the next run fails (an unmarked entry
/// under a protected name that the next run takes for the user's own), and the next run
/// alone on the root sweeps what the killed ones left (where the filesystem has user xattrs).
fn killed_at_any_moment(env: &Env) -> Result<(), Failed> {
    let ws = env.workspace()?;
    for i in 0..30u64 {
        let mut c = env.spawn(&["run", "-w", ws.s(), "--", "true"])?;
        // From the first entry it makes (the placeholders are made one after another), a
        // little later each time: the kills land all over that window.
        let t0 = std::time::Instant::now();
        while std::fs::read_dir(ws.path()).map_or(true, |mut d| d.next().is_none())
            && t0.elapsed() < std::time::Duration::from_secs(5)
        {
            std::hint::spin_loop();
        }
        std::thread::sleep(std::time::Duration::from_micros(i * 100));
        let _ = c.kill();
        let _ = c.wait();
        let out = env.run(&["run", "-w", ws.s(), "--", "true"])?;
        out.expect_code(0, &format!("run after a kill at {i} ms"))?;
    }
    let left = tree(ws.path());
    if left
        .iter()
        .any(|p| p.starts_with(".agentcage-placeholder."))
    {
        return Err(format!("temporary entries not swept: {left:?}").into());
    }
    if left.is_empty() {
        return Ok(());
    }
    if user_xattrs(ws.path()) {
        // An entry left here was taken for the user's own (unmarked): a kill between making
        // a placeholder and marking it.
        return Err(format!("left in the workspace after the last run: {left:?}").into());
    }
    eprintln!(
        "  [{}] placeholders left by killed launchers stay (no user xattrs here): {left:?}",
        env.who.name()
    );
    Ok(())
}

/// Whether the filesystem of `dir` takes user extended attributes (the placeholder mark).
fn user_xattrs(dir: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let f = dir.join(".ac-xattr-probe");
    if std::fs::write(&f, "").is_err() {
        return false;
    }
    let c = std::ffi::CString::new(f.as_os_str().as_bytes()).expect("no NUL");
    // SAFETY: NUL-terminated strings and a one-byte value.
    let r = unsafe {
        libc::setxattr(
            c.as_ptr(),
            c"user.agentcage.probe".as_ptr(),
            b"1".as_ptr().cast(),
            1,
            0,
        )
    };
    let _ = std::fs::remove_file(&f);
    r == 0
}

/// `--read-only-workspace` (and `--ro` naming the workspace, with a warning): nothing in the
/// workspace can be written, /tmp still can, and no placeholder is made.
fn read_only_workspace(env: &Env) -> Result<(), Failed> {
    for p in PROFILES {
        let ws = env.workspace()?;
        std::fs::write(ws.path().join("f"), "f\n").map_err(err)?;
        env.chown_tree(ws.path())?;
        let script = "echo x > f; touch new; mkdir d; echo t > /tmp/t && echo TMP-OK";
        for flag in [vec!["--read-only-workspace"], vec!["--ro", ws.s()]] {
            let mut args = vec!["run", "-p", p, "-w", ws.s()];
            args.extend(flag.iter().copied());
            args.extend(["--", "sh", "-c", script]);
            let out = env.run(&args)?;
            out.expect_code(0, p)?;
            if !out.stdout.contains("TMP-OK") {
                return Err(format!("{p} {flag:?}: {}\n{}", out.stdout, out.stderr).into());
            }
            if tree(ws.path()) != ["f"]
                || std::fs::read_to_string(ws.path().join("f")).map_err(err)? != "f\n"
            {
                return Err(
                    format!("{p} {flag:?}: the workspace changed: {:?}", tree(ws.path())).into(),
                );
            }
            let warned = out.stderr.contains("names the workspace itself");
            if warned != (flag[0] == "--ro") {
                return Err(format!("{p} {flag:?}: warning: {}", out.stderr).into());
            }
        }
    }
    Ok(())
}

/// A workspace with `.env` and `secrets/k` owned by the sandbox user.
fn with_secrets(env: &Env) -> Result<common::Scratch, Failed> {
    let ws = env.workspace()?;
    std::fs::write(ws.path().join(".env"), "TOKEN=s3cret\n").map_err(err)?;
    std::fs::create_dir_all(ws.path().join("secrets")).map_err(err)?;
    std::fs::write(ws.path().join("secrets/k"), "key\n").map_err(err)?;
    std::fs::create_dir_all(ws.path().join("sub")).map_err(err)?;
    env.chown_tree(ws.path())?;
    Ok(ws)
}

/// `--mask`: a masked file reads empty and a masked directory lists empty; neither can be
/// written, renamed or removed; the host's files are unchanged. A mask that is a symlink (one
/// the sandbox could have planted) or missing is a usage error, and nothing is mounted.
fn mask_hides(env: &Env) -> Result<(), Failed> {
    for p in PROFILES {
        let ws = with_secrets(env)?;
        let out = env.run(&[
            "run",
            "-p",
            p,
            "-w",
            ws.s(),
            "--mask",
            ".env",
            "--mask",
            "secrets",
            "--",
            "sh",
            "-c",
            "echo \"[$(cat .env)]\"; echo \"[$(ls secrets)]\"; echo x > secrets/n || echo W1; \
             echo x > .env || echo W2; mv secrets s2 || echo W3; rm -f .env || echo W4; \
             rmdir secrets || echo W5",
        ])?;
        out.expect_code(0, p)?;
        let want = "[]\n[]\nW1\nW2\nW3\nW4\nW5\n";
        if out.stdout != want {
            return Err(format!("{p}: {:?}\n{}", out.stdout, out.stderr).into());
        }
        if std::fs::read_to_string(ws.path().join(".env")).map_err(err)? != "TOKEN=s3cret\n"
            || tree(&ws.path().join("secrets")) != ["k"]
        {
            return Err(format!("{p}: the host's files changed: {:?}", tree(ws.path())).into());
        }
    }
    let ws = with_secrets(env)?;
    std::os::unix::fs::symlink("/etc", ws.path().join("link")).map_err(err)?;
    for m in ["link", "missing"] {
        let before = host_mounts_of(Path::new("/etc"));
        let out = env.run(&["run", "-w", ws.s(), "--mask", m, "--", "true"])?;
        out.expect_code(2, &format!("--mask {m}"))?;
        if host_mounts_of(Path::new("/etc")) != before {
            return Err(format!("--mask {m}: the host's mount table changed").into());
        }
    }
    Ok(())
}

/// `--tmpfs`: a directory of the workspace gets a fresh, empty, writable tmpfs (the host's
/// files in it are hidden and unchanged, nothing written reaches the host), and a new
/// absolute path gets one too, writable under Landlock; a symlinked target is refused.
fn tmpfs_dirs(env: &Env) -> Result<(), Failed> {
    for p in PROFILES {
        let ws = with_secrets(env)?;
        let out = env.run(&[
            "run",
            "-p",
            p,
            "-w",
            ws.s(),
            "--tmpfs",
            "secrets",
            "--tmpfs",
            "/scratch",
            "--",
            "sh",
            "-c",
            "echo \"[$(ls secrets)]\"; echo t > secrets/t && echo S-OK; \
             echo t > /scratch/t && echo SCRATCH-OK; mv secrets s2 || echo BUSY",
        ])?;
        out.expect_code(0, p)?;
        if out.stdout != "[]\nS-OK\nSCRATCH-OK\nBUSY\n" {
            return Err(format!("{p}: {:?}\n{}", out.stdout, out.stderr).into());
        }
        if tree(&ws.path().join("secrets")) != ["k"] {
            return Err(format!("{p}: {:?}", tree(&ws.path().join("secrets"))).into());
        }
    }
    // A tmpfs target the sandbox turned into a symlink (to /etc) is refused, nothing mounted.
    let ws = with_secrets(env)?;
    std::os::unix::fs::symlink("/etc", ws.path().join("cache")).map_err(err)?;
    let before = host_mounts_of(Path::new("/etc"));
    let out = env.run(&["run", "-w", ws.s(), "--tmpfs", "cache", "--", "true"])?;
    out.expect_code(2, "--tmpfs on a symlink")?;
    if host_mounts_of(Path::new("/etc")) != before {
        return Err("--tmpfs on a symlink: the host's mount table changed".into());
    }
    Ok(())
}

/// `--chdir` sets the working directory; `--home DIR` is bound as the home and persists
/// across runs, while the default home is fresh each run.
fn chdir_and_home(env: &Env) -> Result<(), Failed> {
    let ws = with_secrets(env)?;
    let home = env.workspace()?;
    let out = env.run(&[
        "run",
        "-w",
        ws.s(),
        "--chdir",
        "sub",
        "--home",
        home.s(),
        "--",
        "sh",
        "-c",
        "pwd; echo kept > \"$HOME/.agentrc\"",
    ])?;
    out.expect_code(0, "--home")?;
    if out.stdout.trim() != ws.path().join("sub").to_str().ok_or("utf-8")? {
        return Err(format!("--chdir sub: pwd {}", out.stdout).into());
    }
    if std::fs::read_to_string(home.path().join(".agentrc")).map_err(err)? != "kept\n" {
        return Err("--home: the file is not in the host directory".into());
    }
    let out = env.run(&[
        "run",
        "-w",
        ws.s(),
        "--home",
        home.s(),
        "--",
        "sh",
        "-c",
        "cat \"$HOME/.agentrc\"",
    ])?;
    if out.stdout != "kept\n" {
        return Err(format!("--home: second run: {}{}", out.stdout, out.stderr).into());
    }
    let out = env.run(&[
        "run",
        "-w",
        ws.s(),
        "--home",
        "tmpfs",
        "--",
        "sh",
        "-c",
        "echo x > \"$HOME/f\"; ls -A \"$HOME\"",
    ])?;
    if out.stdout != "f\n" {
        return Err(format!("--home tmpfs: {}{}", out.stdout, out.stderr).into());
    }
    Ok(())
}

/// `--bind SRC:DST[:ro]`: the host directory appears at DST, read-only with `:ro` (its
/// sockets masked) and writable without; a destination inside the workspace or on a system
/// directory is a usage error; a source that is a symlink inside the workspace is refused.
fn bind_elsewhere(env: &Env) -> Result<(), Failed> {
    let ws = env.workspace()?;
    let src = env.workspace()?;
    std::fs::write(src.path().join("f"), "data\n").map_err(err)?;
    let sock = std::os::unix::net::UnixListener::bind(src.path().join("sock")).map_err(err)?;
    env.chown_tree(src.path())?;
    for p in PROFILES {
        let ro = format!("{}:/mnt/src:ro", src.s());
        let out = env.run(&[
            "run", "-p", p, "-w", ws.s(), "--bind", &ro, "--", "python3", "-c",
            "import socket\nprint(open('/mnt/src/f').read().strip())\n\
             try:\n open('/mnt/src/g','w')\nexcept OSError as e: print('RO', e.errno)\n\
             s=socket.socket(socket.AF_UNIX)\n\
             try:\n s.connect('/mnt/src/sock'); print('CONNECTED')\nexcept OSError as e: print('SOCK', e.errno)",
        ])?;
        out.expect_code(0, p)?;
        if out.stdout != "data\nRO 30\nSOCK 111\n" {
            return Err(format!("{p} :ro: {:?}\n{}", out.stdout, out.stderr).into());
        }
        let rw = format!("{}:/data", src.s());
        let out = env.run(&[
            "run",
            "-p",
            p,
            "-w",
            ws.s(),
            "--bind",
            &rw,
            "--",
            "sh",
            "-c",
            "echo w > /data/g",
        ])?;
        out.expect_code(0, p)?;
        if std::fs::read_to_string(src.path().join("g")).map_err(err)? != "w\n" {
            return Err(format!("{p}: the write did not reach the host").into());
        }
        std::fs::remove_file(src.path().join("g")).map_err(err)?;
    }
    drop(sock);
    std::os::unix::fs::symlink("/etc", ws.path().join("link")).map_err(err)?;
    for b in [
        format!("{}:{}/x", src.s(), ws.s()),
        format!("{}:/usr/local/x", src.s()),
        format!("{}/link:/mnt/etc", ws.s()),
    ] {
        let out = env.run(&["run", "-w", ws.s(), "--bind", &b, "--", "true"])?;
        out.expect_code(2, &format!("--bind {b}"))?;
    }
    Ok(())
}

/// `agentcage run python3 x.py` (no `--`): exit 2 and a hint that names `--`; `policy show`
/// writes a timeout as said (`2h`, not `7200.0`); `matrix` ends with a summary line.
fn cli_hints(env: &Env) -> Result<(), Failed> {
    let out = env.run(&["run", "python3", "-c", "1"])?;
    out.expect_code(2, "run without --")?;
    if !out.stderr.contains("agentcage run [OPTIONS] -- python3") {
        return Err(format!("no hint: {}", out.stderr).into());
    }
    let ws = env.workspace()?;
    let out = env.run(&["policy", "show", "-w", ws.s(), "--timeout", "2h"])?;
    out.expect_code(0, "policy show")?;
    if !out.stdout.contains("timeout = \"2h\"") {
        return Err(format!("policy show: {}", out.stdout).into());
    }
    // The matrix ends with a one-line summary on stderr.
    let out = env.run(&["matrix", "--no-attribution", "--profiles", "none,full"])?;
    out.expect_code(0, "matrix")?;
    let last = out.stderr.lines().last().unwrap_or_default();
    if !(last.starts_with("agentcage matrix: ") && last.contains(" ops; blocked: none ")) {
        return Err(format!("matrix summary: {}", out.stderr).into());
    }
    Ok(())
}

/// What a check of the outside looks at: the entries below it and each one's mtime and ctime.
fn outside_state(dir: &Path) -> Vec<(String, i64, i64, i64, i64)> {
    use std::os::unix::fs::MetadataExt;
    std::iter::once(String::new())
        .chain(tree(dir))
        .map(|rel| {
            let m = std::fs::symlink_metadata(dir.join(&rel)).ok();
            let t = |f: fn(&std::fs::Metadata) -> i64| m.as_ref().map_or(-1, f);
            (
                rel,
                t(|m| m.mtime()),
                t(|m| m.mtime_nsec()),
                t(|m| m.ctime()),
                t(|m| m.ctime_nsec()),
            )
        })
        .collect()
}

/// Issue #15, setup that attacker-writable trees cannot steer: a symlink a previous run left
/// at a default protected path or at an ancestor of one (`.git -> outside dir`, `.envrc ->
/// outside file`, `.vscode -> dangling`) is refused by `run` and `session start` (exit 2),
/// and with the paths below it unprotected a run goes ahead without following it; either
/// way nothing outside is created, changed or mounted (entries, mtimes and ctimes of the
/// outside directory, the host's mount table).
fn symlinks_steer_nothing(env: &Env) -> Result<(), Failed> {
    use std::os::unix::fs::PermissionsExt;
    let secret = env.secret_dir()?;
    std::fs::write(secret.path().join("file"), "TOP-SECRET").map_err(err)?;
    env.chown_tree(secret.path())?;
    let dangling = secret.path().join("dangling");
    let xdg = env.workspace()?;
    std::fs::set_permissions(xdg.path(), std::fs::Permissions::from_mode(0o700)).map_err(err)?;
    let before = outside_state(secret.path());
    let unprotect_git = [
        "--unprotect",
        ".git/hooks",
        "--unprotect",
        ".git/config",
        "--unprotect",
        ".git/info",
    ];
    let cases: [(&str, &Path, &[&str], i32); 4] = [
        (".git", secret.path(), &[], 2),
        (".envrc", &secret.path().join("file"), &[], 2),
        (".vscode", &dangling, &[], 2),
        (".git", secret.path(), &unprotect_git, 0),
    ];
    for (name, target, flags, code) in cases {
        let ws = env.workspace()?;
        std::os::unix::fs::symlink(target, ws.path().join(name)).map_err(err)?;
        let what = format!("{name} -> {} {flags:?}", target.display());
        let mut run = vec!["run", "-w", ws.s()];
        run.extend(flags);
        run.extend(["--", "sh", "-c", "ls .git/ >/dev/null 2>&1; true"]);
        env.run(&run)?.expect_code(code, &format!("run, {what}"))?;
        let mut start = vec!["session", "start", "-q", "--name", "steer", "-w", ws.s()];
        start.extend(flags);
        let o = env.run_with(&start, |c| {
            c.env("XDG_RUNTIME_DIR", xdg.path());
        })?;
        o.expect_code(code, &format!("session start, {what}"))?;
        if code == 0 {
            env.run_with(&["session", "stop", "steer"], |c| {
                c.env("XDG_RUNTIME_DIR", xdg.path());
            })?
            .expect_code(0, "session stop")?;
        }
        if outside_state(secret.path()) != before || dangling.exists() {
            return Err(format!(
                "{what}: the outside changed: {:?}, was {before:?}",
                outside_state(secret.path())
            )
            .into());
        }
        for p in [secret.path(), ws.path()] {
            if host_mounts_of(p) != 0 {
                return Err(format!("{what}: a host mount names {}", p.display()).into());
            }
        }
        // The workspace is as it was: the symlink alone (placeholders removed again).
        let left = tree(ws.path());
        let link = std::fs::read_link(ws.path().join(name)).map_err(err)?;
        if left != [name.to_string()] || link != target {
            return Err(format!("{what}: the workspace holds {left:?}").into());
        }
    }
    Ok(())
}

/// A workspace its user cannot write (as nobody: owned by root, mode 0755): no placeholder
/// can be made. The run says so and goes on without them (it does not fail: the launcher
/// expected them made beside while it prepared the sandbox, and prepares it again without
/// them), and the workspace stays as it was.
fn unwritable_root_gets_no_placeholders(env: &Env) -> Result<(), Failed> {
    let ws = env.policy_dir()?;
    std::fs::write(ws.path().join("f"), "f\n").map_err(err)?;
    let out = env.run(&["run", "-w", ws.s(), "--", "sh", "-c", "cat f && echo RAN"])?;
    out.expect_code(0, "run")?;
    if !out.stdout.contains("RAN") {
        return Err(format!("stdout {}\nstderr {}", out.stdout, out.stderr).into());
    }
    let want = format!("cannot make a read-only placeholder for {}/.envrc", ws.s());
    if !out.stderr.contains(&want) {
        return Err(format!("no warning {want:?}: {}", out.stderr).into());
    }
    if tree(ws.path()) != ["f"] {
        return Err(format!("the workspace changed: {:?}", tree(ws.path())).into());
    }
    Ok(())
}

fn main() {
    let args = Arguments::from_args();
    let tests: &[(&str, TestFn)] = &[
        (
            "missing_defaults_get_placeholders",
            missing_defaults_get_placeholders,
        ),
        ("repo_without_hooks", repo_without_hooks),
        (
            "concurrent_runs_and_killed_launcher",
            concurrent_runs_and_killed_launcher,
        ),
        ("killed_at_any_moment", killed_at_any_moment),
        ("read_only_workspace", read_only_workspace),
        ("mask_hides", mask_hides),
        ("tmpfs_dirs", tmpfs_dirs),
        ("chdir_and_home", chdir_and_home),
        ("bind_elsewhere", bind_elsewhere),
        ("cli_hints", cli_hints),
        ("symlinks_steer_nothing", symlinks_steer_nothing),
    ];
    let mut trials = common::trials_for_both(tests);
    // Root can write any directory: as root no placeholder fails this way.
    trials.push(common::trial(
        Who::Nobody,
        "unwritable_root_gets_no_placeholders",
        unwritable_root_gets_no_placeholders,
        common::skip_reason(Who::Nobody),
    ));
    common::run(&args, trials)
}
