//! Sandbox tier: the workspace controls of issue #15 (second part): read-only placeholders
//! for default protected paths that do not exist at start, `--read-only-workspace`, `--mask`,
//! `--tmpfs`, `--chdir`, `--home`. Each trial runs as root and as uid 65534, like
//! `sandbox.rs`, with the same skip rules.

mod common;

use std::path::Path;
use std::process::Command;

use common::{err, process_with_arg, settle, wait_deadline, Env, TestFn};
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
    let mut long = env.spawn(&["run", "-w", ws.s(), "--", "sh", "-c", "sleep 2", &marker])?;
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
    let st = wait_deadline(&mut long, std::time::Duration::from_secs(20), "first run")?;
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
    ];
    common::run(&args, common::trials_for_both(tests))
}
