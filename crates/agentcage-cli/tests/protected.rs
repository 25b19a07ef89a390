//! Sandbox tier: protected paths (binds nested in a writable bind) and sockets under `--ro`
//! paths (issue #10, findings 3 and 10). Each trial runs as root and as uid 65534, like
//! `sandbox.rs`, with the same skip rules.

mod common;

use common::{err, Env, TestFn};
use libtest_mimic::{Arguments, Failed};

const PROFILES: [&str; 3] = ["ns-only", "landlock", "full"];

/// A workspace with a git-like `.git` (hooks/, config, modules/sub/{hooks,config}) and a
/// sibling dir `other`, all owned by the sandbox user (so only the mounts can refuse).
fn git_workspace(env: &Env) -> Result<common::Scratch, Failed> {
    let ws = env.workspace()?;
    let w = ws.path();
    for d in [".git/hooks", ".git/modules/sub/hooks", "other"] {
        std::fs::create_dir_all(w.join(d)).map_err(err)?;
    }
    for f in [".git/config", ".git/HEAD", ".git/modules/sub/config"] {
        std::fs::write(w.join(f), "[core]\n").map_err(err)?;
    }
    env.chown_tree(w)?;
    Ok(ws)
}

/// Renames, removals and swaps of a protected path or any of its ancestors all fail inside,
/// and the host's `.git` is where it was afterwards.
fn protected_paths_survive_renames(env: &Env) -> Result<(), Failed> {
    let py = r"import os, errno
def t(name, f):
    try:
        f()
        print(name, 'OK')
    except OSError as e:
        print(name, errno.errorcode[e.errno])
t('rename-git', lambda: os.rename('.git', 'moved'))
t('rename-modules', lambda: os.rename('.git/modules', '.git/moved'))
t('rename-sub', lambda: os.rename('.git/modules/sub', '.git/modules/moved'))
t('rename-hooks', lambda: os.rename('.git/hooks', '.git/moved'))
t('unlink-config', lambda: os.unlink('.git/config'))
t('rename-other-over-config', lambda: os.rename('other/../.git/HEAD', '.git/config'))
os.symlink('other', 'link')
t('swap-hooks-symlink', lambda: os.rename('link', '.git/hooks'))
t('exchange-git', lambda: os.rename('.git', 'other'))
t('replace-git', lambda: os.rename('other', '.git'))
import shutil
t('rm-rf-git', lambda: shutil.rmtree('.git'))
";
    for p in PROFILES {
        let ws = git_workspace(env)?;
        let w = ws.path();
        let out = env.run(&[
            "run",
            "-p",
            p,
            "-w",
            ws.s(),
            "--ro",
            &format!("{}/.git/hooks", ws.s()),
            "--ro",
            &format!("{}/.git/config", ws.s()),
            "--ro",
            &format!("{}/.git/modules/sub/hooks", ws.s()),
            "--",
            "python3",
            "-c",
            py,
        ])?;
        out.expect_code(0, p)?;
        let lines: Vec<&str> = out.stdout.lines().collect();
        if lines.len() != 10 {
            return Err(format!("{p}: unexpected output: {}", out.stdout).into());
        }
        for l in &lines {
            if l.ends_with(" OK") {
                return Err(format!("{p}: {l} (the protection moved away)\n{}", out.stdout).into());
            }
        }
        // The first four are renames of a mount point within its directory: EBUSY.
        for l in &lines[..4] {
            if !l.ends_with(" EBUSY") {
                return Err(format!("{p}: {l}: want EBUSY\n{}", out.stdout).into());
            }
        }
        if !w.join(".git/hooks").is_dir() || !w.join(".git/config").is_file() {
            return Err(format!("{p}: the host's .git lost its hooks or config").into());
        }
        if w.join("moved").exists() || w.join(".git/moved").exists() {
            return Err(format!("{p}: something was renamed to moved on the host").into());
        }
    }
    Ok(())
}

/// A protected path that is a symlink (planted by an earlier run) is refused, not followed:
/// the directory it points to is never bound into the sandbox.
fn planted_symlink_refused(env: &Env) -> Result<(), Failed> {
    let secret = env.secret_dir()?;
    std::fs::write(secret.path().join("canary"), "TOP-SECRET").map_err(err)?;
    for p in PROFILES {
        let ws = git_workspace(env)?;
        let hooks = ws.path().join(".git/hooks");
        std::fs::remove_dir(&hooks).map_err(err)?;
        std::os::unix::fs::symlink(secret.path(), &hooks).map_err(err)?;
        let hooks_s = hooks.to_str().ok_or("utf-8")?;
        let out = env.run(&[
            "run",
            "-p",
            p,
            "-w",
            ws.s(),
            "--ro",
            hooks_s,
            "--",
            "sh",
            "-c",
            &format!("cat {}/canary", secret.s()),
        ])?;
        out.expect_code(2, p)?;
        if out.stdout.contains("TOP-SECRET") || !out.stderr.contains("is a symlink") {
            return Err(format!("{p}: stdout {}\nstderr {}", out.stdout, out.stderr).into());
        }
    }
    Ok(())
}

/// A protected file with a second hard link (a writable name for it), or that is a FIFO
/// (the user's git would hang on it), is refused.
fn planted_hardlink_and_fifo_refused(env: &Env) -> Result<(), Failed> {
    let ws = git_workspace(env)?;
    let config = ws.path().join(".git/config");
    let config_s = config.to_str().ok_or("utf-8")?;
    std::fs::hard_link(&config, ws.path().join("evil")).map_err(err)?;
    let run = || env.run(&["run", "-w", ws.s(), "--ro", config_s, "--", "true"]);
    let out = run()?;
    out.expect_code(2, "hard link")?;
    if !out.stderr.contains("hard links") {
        return Err(format!("hard link: stderr {}", out.stderr).into());
    }
    std::fs::remove_file(ws.path().join("evil")).map_err(err)?;
    std::fs::remove_file(&config).map_err(err)?;
    let c = std::ffi::CString::new(config_s).map_err(err)?;
    // SAFETY: mkfifo of a live C string.
    if unsafe { libc::mkfifo(c.as_ptr(), 0o644) } != 0 {
        return Err(format!("mkfifo: {}", std::io::Error::last_os_error()).into());
    }
    env.chown_to_sandbox(&config)?;
    let out = run()?;
    out.expect_code(2, "fifo")?;
    if !out
        .stderr
        .contains("neither a directory nor a regular file")
    {
        return Err(format!("fifo: stderr {}", out.stderr).into());
    }
    Ok(())
}

/// An optional protected path whose parent the sandbox made unreadable (`chmod 000 .git`)
/// fails closed instead of being skipped.
fn unreadable_protected_path_fails_closed(env: &Env) -> Result<(), Failed> {
    let ws = git_workspace(env)?;
    let dir = env.policy_dir()?;
    let pol = dir.path().join("p.toml");
    std::fs::write(
        &pol,
        format!(
            "profile = \"full\"\nworkspace = \"{0}\"\nro = [{{ path = \"{0}/.git/hooks\", optional = true }}, {{ path = \"{0}/.git/nope\", optional = true }}]\n",
            ws.s()
        ),
    )
    .map_err(err)?;
    let pol_s = pol.to_str().ok_or("utf-8")?;
    // Control: readable, the existing entry is bound and the missing one skipped.
    let out = env.run(&["run", "--policy", pol_s, "--", "true"])?;
    out.expect_code(0, "control")?;
    use std::os::unix::fs::PermissionsExt;
    let git = ws.path().join(".git");
    std::fs::set_permissions(&git, std::fs::Permissions::from_mode(0o000)).map_err(err)?;
    let out = env.run(&["run", "--policy", pol_s, "--", "true"]);
    let _ = std::fs::set_permissions(&git, std::fs::Permissions::from_mode(0o755));
    let out = out?;
    out.expect_code(2, "chmod 000 .git")?;
    if !out.stderr.contains("could not be protected") {
        return Err(format!("chmod 000 .git: stderr {}", out.stderr).into());
    }
    Ok(())
}

/// `**` in a policy entry protects the hooks and config of every submodule, nested ones too.
fn submodule_paths_protected_by_pattern(env: &Env) -> Result<(), Failed> {
    let ws = git_workspace(env)?;
    let nested = ws.path().join(".git/modules/sub/modules/deep");
    std::fs::create_dir_all(nested.join("hooks")).map_err(err)?;
    std::fs::write(nested.join("config"), "[core]\n").map_err(err)?;
    env.chown_tree(ws.path())?;
    let dir = env.policy_dir()?;
    let pol = dir.path().join("p.toml");
    std::fs::write(
        &pol,
        format!(
            "profile = \"full\"\nworkspace = \"{0}\"\nro = [{{ path = \"{0}/.git/modules/**/hooks\", optional = true }}, {{ path = \"{0}/.git/modules/**/config\", optional = true }}]\n",
            ws.s()
        ),
    )
    .map_err(err)?;
    let py = "import os, errno\n\
for p in ['.git/modules/sub/hooks/post-checkout', '.git/modules/sub/modules/deep/hooks/x', '.git/modules/sub/modules/deep/config', '.git/modules/sub/config']:\n\
\x20   try:\n\
\x20       os.close(os.open(p, os.O_WRONLY | os.O_CREAT))\n\
\x20       print(p, 'WRITABLE')\n\
\x20   except OSError as e:\n\
\x20       print(p, errno.errorcode[e.errno])\n\
try:\n\
\x20   os.rename('.git/modules/sub', '.git/modules/moved')\n\
\x20   print('rename WRITABLE')\n\
except OSError as e:\n\
\x20   print('rename', errno.errorcode[e.errno])\n";
    let pol_s = pol.to_str().ok_or("utf-8")?;
    let out = env.run(&["run", "--policy", pol_s, "--", "python3", "-c", py])?;
    out.expect_code(0, "pattern")?;
    if out.stdout.lines().count() != 5 || out.stdout.contains("WRITABLE") {
        return Err(format!("stdout {}\nstderr {}", out.stdout, out.stderr).into());
    }
    Ok(())
}

/// A unix socket listening in a directory passed with `--ro` is masked: connect(2) from
/// inside fails, and the launcher says it masked it.
fn socket_under_ro_is_masked(env: &Env) -> Result<(), Failed> {
    use std::os::unix::fs::PermissionsExt;
    let dir = env.secret_dir()?;
    let sock = dir.path().join("S.agent");
    let _listener = std::os::unix::net::UnixListener::bind(&sock).map_err(err)?;
    // Connectable by anyone on the host: only the sandbox can refuse.
    std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o777)).map_err(err)?;
    let py = format!(
        "import socket\nc = socket.socket(socket.AF_UNIX)\ntry:\n    c.connect('{}')\n    print('CONNECTED')\nexcept OSError as e:\n    print('refused', e.errno)\n",
        sock.display()
    );
    for p in PROFILES {
        let ws = env.workspace()?;
        let out = env.run(&[
            "run",
            "-p",
            p,
            "-w",
            ws.s(),
            "--ro",
            dir.s(),
            "--",
            "python3",
            "-c",
            &py,
        ])?;
        out.expect_code(0, p)?;
        if !out.stdout.starts_with("refused") {
            return Err(
                format!("{p}: the socket under --ro is connectable: {}", out.stdout).into(),
            );
        }
        if !out
            .stderr
            .contains("unix sockets under read-only paths masked")
        {
            return Err(format!("{p}: no warning: {}", out.stderr).into());
        }
    }
    Ok(())
}

fn main() {
    let args = Arguments::from_args();
    let tests: &[(&str, TestFn)] = &[
        (
            "protected_paths_survive_renames",
            protected_paths_survive_renames,
        ),
        ("planted_symlink_refused", planted_symlink_refused),
        (
            "planted_hardlink_and_fifo_refused",
            planted_hardlink_and_fifo_refused,
        ),
        (
            "submodule_paths_protected_by_pattern",
            submodule_paths_protected_by_pattern,
        ),
        ("socket_under_ro_is_masked", socket_under_ro_is_masked),
        (
            "unreadable_protected_path_fails_closed",
            unreadable_protected_path_fails_closed,
        ),
    ];
    common::run(&args, common::trials_for_both(tests))
}
