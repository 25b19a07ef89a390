//! Sandbox tier: the default protected paths (issue #15, "Safe defaults"), `--protect`,
//! `--unprotect` and the policy keys. No policy file unless said: the defaults alone must keep
//! the agent from planting what runs later outside the sandbox. Each trial runs as root and as
//! uid 65534, like `sandbox.rs`, with the same skip rules.

mod common;

use std::path::Path;
use std::process::Command;

use common::{err, Env, TestFn};
use libtest_mimic::{Arguments, Failed};

/// Every profile with a mount namespace.
const PROFILES: [&str; 3] = ["ns-only", "landlock", "full"];

/// Runs host git in `dir` (as whoever runs the tests; the repo may belong to uid 65534).
fn git(dir: &Path, args: &[&str]) -> Result<String, Failed> {
    let o = Command::new("git")
        .args(["-c", "user.name=t", "-c", "user.email=t@t"])
        .args(args)
        // Command-line scope, also seen by the git processes it starts (a local clone): the
        // repositories may belong to the sandbox user.
        .env("GIT_CONFIG_COUNT", "1")
        .env("GIT_CONFIG_KEY_0", "safe.directory")
        .env("GIT_CONFIG_VALUE_0", "*")
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", "/nonexistent")
        .output()
        .map_err(|e| format!("git: {e}"))?;
    if !o.status.success() {
        return Err(format!("git {args:?}: {}", String::from_utf8_lossy(&o.stderr)).into());
    }
    Ok(String::from_utf8_lossy(&o.stdout).into_owned())
}

/// A real git repository in `dir` with an existing (committed) `.envrc`, `.claude/` with a
/// settings file, `docs/x`, and an empty `.vscode/`; owned by the sandbox user (so only
/// the mounts can refuse).
fn git_repo(env: &Env, dir: &Path) -> Result<(), Failed> {
    git(dir, &["init", "-q", "."])?;
    std::fs::write(dir.join("a"), "a\n").map_err(err)?;
    git(dir, &["add", "a"])?;
    git(dir, &["commit", "-qm", "init"])?;
    std::fs::write(dir.join(".envrc"), "export SAFE=1\n").map_err(err)?;
    std::fs::create_dir_all(dir.join(".claude")).map_err(err)?;
    std::fs::write(dir.join(".claude/settings.json"), "{}\n").map_err(err)?;
    std::fs::create_dir_all(dir.join(".vscode")).map_err(err)?;
    std::fs::create_dir_all(dir.join("docs")).map_err(err)?;
    std::fs::write(dir.join("docs/x"), "x\n").map_err(err)?;
    git(dir, &["add", "-A"])?;
    git(dir, &["commit", "-qm", "files"])?;
    env.chown_tree(dir)
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| format!("<{e}>"))
}

/// Each attempt prints `NAME OK` or `NAME ERRNO`.
const ATTACKS: &str = r#"import os, errno, sys
def t(name, f):
    try:
        f()
        print(name, 'OK')
    except OSError as e:
        print(name, errno.errorcode[e.errno])
def w(p, s, mode='w'):
    with open(p, mode) as f:
        f.write(s)
for root in sys.argv[1:]:
    os.chdir(root)
    t(root + ' hook', lambda: w('.git/hooks/pre-commit', '#!/bin/sh\ntouch /tmp/pwned\n'))
    t(root + ' config', lambda: w('.git/config', '[core]\n\tfsmonitor = touch /tmp/pwned\n', 'a'))
    t(root + ' info', lambda: w('.git/info/attributes', '* filter=x\n'))
    t(root + ' envrc', lambda: w('.envrc', 'touch /tmp/pwned\n'))
    t(root + ' claude', lambda: w('.claude/settings.json', '{"hooks": {}}\n'))
    t(root + ' vscode', lambda: w('.vscode/tasks.json', '{}\n'))
    t(root + ' rename-git', lambda: os.rename('.git', '.git.old'))
    t(root + ' rename-claude', lambda: os.rename('.claude', 'claude.old'))
    t(root + ' mkdir-git', lambda: os.mkdir('.git'))
"#;

/// Without any policy: hooks, config, info, `.envrc`, `.claude/settings.json` and `.vscode/`
/// of the workspace and of an `--rw` git repository cannot be written, and `.git` cannot be
/// renamed and recreated; the host's files are unchanged.
fn defaults_without_policy(env: &Env) -> Result<(), Failed> {
    for p in PROFILES {
        let ws = env.workspace()?;
        let other = env.workspace()?;
        let roots = [ws.path(), other.path()];
        for r in roots {
            git_repo(env, r)?;
        }
        let before: Vec<String> = roots
            .iter()
            .flat_map(|r| {
                [".git/config", ".envrc", ".claude/settings.json"].map(|f| read(&r.join(f)))
            })
            .collect();
        let out = env.run(&[
            "run",
            "-p",
            p,
            "-w",
            ws.s(),
            "--rw",
            other.s(),
            "--",
            "python3",
            "-c",
            ATTACKS,
            ws.s(),
            other.s(),
        ])?;
        out.expect_code(0, p)?;
        let lines: Vec<&str> = out.stdout.lines().collect();
        if lines.len() != 18 {
            return Err(format!("{p}: unexpected output: {}\n{}", out.stdout, out.stderr).into());
        }
        for l in &lines {
            if l.ends_with(" OK") || l.ends_with(" EACCES") && !l.contains("mkdir") {
                // EACCES would mean the test's ownership is wrong, not a protection.
                return Err(format!("{p}: {l}\n{}", out.stdout).into());
            }
        }
        let after: Vec<String> = roots
            .iter()
            .flat_map(|r| {
                [".git/config", ".envrc", ".claude/settings.json"].map(|f| read(&r.join(f)))
            })
            .collect();
        if before != after {
            return Err(format!("{p}: a protected file changed on the host: {after:?}").into());
        }
        for r in roots {
            for bad in [
                ".git/hooks/pre-commit",
                ".git/info/attributes",
                ".vscode/tasks.json",
                ".git.old",
                "claude.old",
            ] {
                if r.join(bad).exists() {
                    return Err(format!("{p}: {} exists on the host", r.join(bad).display()).into());
                }
            }
        }
    }
    Ok(())
}

/// `rm -rf .git` and recreating hooks and config: the protected paths stay (EBUSY on the mount
/// points, EROFS inside them), nothing git would run appears on the host.
fn rm_rf_git_and_recreate(env: &Env) -> Result<(), Failed> {
    let ws = env.workspace()?;
    git_repo(env, ws.path())?;
    let config = read(&ws.path().join(".git/config"));
    let out = env.run(&[
        "run",
        "-w",
        ws.s(),
        "--",
        "sh",
        "-c",
        "rm -rf .git; mkdir -p .git/hooks; echo 'touch /tmp/pwned' > .git/hooks/post-checkout; \
         printf '[core]\\n\\tfsmonitor = x\\n' > .git/config; true",
    ])?;
    out.expect_code(0, "run")?;
    if read(&ws.path().join(".git/config")) != config
        || ws.path().join(".git/hooks/post-checkout").exists()
    {
        return Err(format!(
            "the host's .git/config or hooks changed: {}",
            read(&ws.path().join(".git/config"))
        )
        .into());
    }
    Ok(())
}

/// With the defaults, `git status`, `git add` and `git commit` work inside, and the commit is
/// in the host's repository.
fn git_commit_works(env: &Env) -> Result<(), Failed> {
    for p in PROFILES {
        let ws = env.workspace()?;
        git_repo(env, ws.path())?;
        let out = env.run(&[
            "run",
            "-p",
            p,
            "-w",
            ws.s(),
            "-e",
            "GIT_CONFIG_NOSYSTEM=1",
            "--",
            "sh",
            "-c",
            "cd \"$0\" && echo b > b && git status --short && git add b && \
             git -c user.name=agent -c user.email=a@a commit -qm from-inside && git status --short",
            ws.s(),
        ])?;
        out.expect_code(0, p)?;
        if out.stdout.trim() != "?? b" {
            return Err(format!("{p}: git status inside: {}", out.stdout).into());
        }
        let log = git(ws.path(), &["log", "--format=%s"])?;
        if !log.starts_with("from-inside\n") {
            return Err(format!("{p}: the host's log: {log}").into());
        }
    }
    Ok(())
}

/// `--unprotect .vscode` leaves `.vscode` writable; `--protect docs/x` makes `docs/x`
/// read-only; a missing `--protect` path and an `--unprotect` of nothing protected are usage
/// errors.
fn protect_and_unprotect_flags(env: &Env) -> Result<(), Failed> {
    let ws = env.workspace()?;
    git_repo(env, ws.path())?;
    let out = env.run(&[
        "run",
        "-w",
        ws.s(),
        "--unprotect",
        ".vscode",
        "--protect",
        "docs/x",
        "--",
        "sh",
        "-c",
        "echo t > .vscode/tasks.json; echo changed > docs/x; echo changed > .envrc; true",
    ])?;
    out.expect_code(0, "run")?;
    if read(&ws.path().join(".vscode/tasks.json")) != "t\n" {
        return Err(format!("--unprotect .vscode: not written: {}", out.stderr).into());
    }
    if read(&ws.path().join("docs/x")) != "x\n"
        || read(&ws.path().join(".envrc")) != "export SAFE=1\n"
    {
        return Err("--protect docs/x: written anyway (or .envrc lost its default)".into());
    }
    let out = env.run(&[
        "run",
        "-w",
        ws.s(),
        "--protect",
        "docs/missing",
        "--",
        "true",
    ])?;
    out.expect_code(2, "--protect docs/missing")?;
    if !out
        .stderr
        .contains("does not exist at start cannot be protected")
    {
        return Err(format!("--protect docs/missing: {}", out.stderr).into());
    }
    let out = env.run(&["run", "-w", ws.s(), "--unprotect", ".vscod", "--", "true"])?;
    out.expect_code(2, "--unprotect .vscod")?;
    if !out.stderr.contains("not a protected path") {
        return Err(format!("--unprotect .vscod: {}", out.stderr).into());
    }
    Ok(())
}

/// A policy file kept outside the project (in a directory the sandbox cannot write) with
/// `protect` and `unprotect`, relative to the workspace, works for any project; `policy show`
/// lists the effective protected set.
fn policy_keys_from_trusted_dir(env: &Env) -> Result<(), Failed> {
    let pol = env.policy_dir()?;
    let file = pol.path().join("agent.toml");
    std::fs::write(&file, "protect = [\"docs/x\"]\nunprotect = [\".vscode\"]\n").map_err(err)?;
    let file_s = file.to_str().ok_or("utf-8")?;
    for _ in 0..2 {
        let ws = env.workspace()?;
        git_repo(env, ws.path())?;
        let out = env.run(&[
            "run",
            "--policy",
            file_s,
            "-w",
            ws.s(),
            "--",
            "sh",
            "-c",
            "echo t > .vscode/tasks.json; echo changed > docs/x; true",
        ])?;
        out.expect_code(0, "run")?;
        if read(&ws.path().join(".vscode/tasks.json")) != "t\n"
            || read(&ws.path().join("docs/x")) != "x\n"
        {
            return Err(format!(
                "the policy's protect/unprotect did not apply: {}",
                out.stderr
            )
            .into());
        }
        let out = env.run(&["policy", "show", "--policy", file_s, "-w", ws.s(), "--json"])?;
        out.expect_code(0, "policy show")?;
        let v: serde_json::Value = serde_json::from_str(&out.stdout).map_err(err)?;
        let protected: Vec<&str> = v["protected"]
            .as_array()
            .ok_or("no `protected`")?
            .iter()
            .filter_map(|x| x.as_str())
            .collect();
        let want = |s: &str| format!("{}/{s}", ws.s());
        for f in [".git/hooks", ".git/config", ".envrc", ".claude", "docs/x"] {
            if !protected.contains(&want(f).as_str()) {
                return Err(format!("policy show: {f} missing from {protected:?}").into());
            }
        }
        if protected.contains(&want(".vscode").as_str()) {
            return Err(format!("policy show: .vscode listed: {protected:?}").into());
        }
        if v["policy"]["unprotect"] != serde_json::json!([".vscode"]) {
            return Err(format!("policy show: unprotect {}", v["policy"]["unprotect"]).into());
        }
    }
    Ok(())
}

/// A default protected path the sandbox turned into a symlink is refused (never followed),
/// and the hint names `--unprotect`.
fn planted_symlink_in_default_refused(env: &Env) -> Result<(), Failed> {
    let secret = env.secret_dir()?;
    let ws = env.workspace()?;
    git_repo(env, ws.path())?;
    std::fs::remove_dir_all(ws.path().join(".claude")).map_err(err)?;
    std::os::unix::fs::symlink(secret.path(), ws.path().join(".claude")).map_err(err)?;
    let out = env.run(&["run", "-w", ws.s(), "--", "true"])?;
    out.expect_code(2, "run")?;
    if !out.stderr.contains("is a symlink") || !out.stderr.contains("--unprotect") {
        return Err(format!("stderr: {}", out.stderr).into());
    }
    Ok(())
}

/// A default protected path that does not exist at start gets a read-only placeholder (see
/// `workspace.rs`); `.git/commondir` cannot (git refuses an empty one): the run says when the
/// sandbox created it, on stderr and in the JSON report.
fn created_paths_are_reported(env: &Env) -> Result<(), Failed> {
    let ws = env.workspace()?;
    git_repo(env, ws.path())?;
    let out_dir = env.secret_dir()?;
    let report = out_dir.path().join("r.json");
    let out = env.run(&[
        "run",
        "-w",
        ws.s(),
        "--json-report",
        report.to_str().ok_or("utf-8")?,
        "--",
        "sh",
        "-c",
        "echo '{}' > .mcp.json; echo /tmp/x > .git/commondir; true",
    ])?;
    out.expect_code(0, "run")?;
    if ws.path().join(".mcp.json").exists() {
        return Err(format!("the sandbox created .mcp.json: {}", out.stderr).into());
    }
    let want = format!("the sandbox created {}/.git/commondir", ws.s());
    if !out.stderr.contains(&want) {
        return Err(format!("no warning for .git/commondir: {}", out.stderr).into());
    }
    let v: serde_json::Value = serde_json::from_str(&read(&report)).map_err(err)?;
    let listed = v["created_protected_paths"].as_array().map_or(0, Vec::len);
    if listed != 1 || out.stderr.matches("the sandbox created").count() != 1 {
        return Err(format!("report {v}\nstderr {}", out.stderr).into());
    }
    // Nothing created, nothing said.
    let out = env.run(&["run", "-w", ws.s(), "--", "true"])?;
    if out.stderr.contains("the sandbox created") {
        return Err(format!("spurious warning: {}", out.stderr).into());
    }
    Ok(())
}

/// A real submodule (name with a slash: `.git/modules/libs/sub`): its hooks and config are
/// protected by default, and git inside the submodule still works.
fn submodule_protected_by_default(env: &Env) -> Result<(), Failed> {
    // The source belongs to whoever runs the tests: a local clone checks its owner, and the
    // upload-pack it starts does not see a command-line safe.directory.
    let src = env.policy_dir()?;
    git(src.path(), &["init", "-q", "."])?;
    std::fs::write(src.path().join("s"), "s\n").map_err(err)?;
    git(src.path(), &["add", "s"])?;
    git(src.path(), &["commit", "-qm", "s"])?;
    let ws = env.workspace()?;
    git_repo(env, ws.path())?;
    git(
        ws.path(),
        &[
            "-c",
            "protocol.file.allow=always",
            "submodule",
            "add",
            "-q",
            src.s(),
            "libs/sub",
        ],
    )?;
    git(ws.path(), &["commit", "-qm", "sub"])?;
    env.chown_tree(ws.path())?;
    let gitdir = ws.path().join(".git/modules/libs/sub");
    let config = read(&gitdir.join("config"));
    let out = env.run(&[
        "run",
        "-w",
        ws.s(),
        "--",
        "sh",
        "-c",
        "echo x > .git/modules/libs/sub/hooks/pre-commit; \
         echo '[core] fsmonitor = x' >> .git/modules/libs/sub/config; \
         echo x > .gitmodules; cd libs/sub && git status --short && echo STATUS-OK",
    ])?;
    out.expect_code(0, "run")?;
    if !out.stdout.contains("STATUS-OK") {
        return Err(format!(
            "git status in the submodule: {}\n{}",
            out.stdout, out.stderr
        )
        .into());
    }
    for want in [
        "sub/hooks/pre-commit: Read-only file system",
        "sub/config: Read-only file system",
        ".gitmodules: Read-only file system",
    ] {
        if !out.stderr.contains(want) {
            return Err(format!("want {want:?}: {}", out.stderr).into());
        }
    }
    if gitdir.join("hooks/pre-commit").exists() || read(&gitdir.join("config")) != config {
        return Err("the submodule's hooks or config changed on the host".into());
    }
    Ok(())
}

fn main() {
    let args = Arguments::from_args();
    let tests: &[(&str, TestFn)] = &[
        ("defaults_without_policy", defaults_without_policy),
        ("rm_rf_git_and_recreate", rm_rf_git_and_recreate),
        ("git_commit_works", git_commit_works),
        ("protect_and_unprotect_flags", protect_and_unprotect_flags),
        ("policy_keys_from_trusted_dir", policy_keys_from_trusted_dir),
        (
            "planted_symlink_in_default_refused",
            planted_symlink_in_default_refused,
        ),
        ("created_paths_are_reported", created_paths_are_reported),
        (
            "submodule_protected_by_default",
            submodule_protected_by_default,
        ),
    ];
    common::run(&args, common::trials_for_both(tests))
}
