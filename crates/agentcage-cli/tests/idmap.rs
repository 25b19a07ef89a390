//! Sandbox tier, root only (issue #14): a writable path owned by another uid than the
//! sandbox's host uid is bound idmapped under `full`. The agent writes a root-owned
//! workspace, its files land owned by the directory's owner on the host, root's git keeps
//! working outside, and nothing set-id or capability-bearing can be left behind. Where the
//! policy would let the sandbox set set-id bits (no caps or seccomp layer), no idmapped bind
//! is made and the warning says why. The launcher must be root to make an idmapped mount, so
//! these trials do not run as uid 65534 (its files are its own: nothing to map).

mod common;

use std::ffi::CString;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

use common::{err, Env, Scratch, TestFn};
use libtest_mimic::{Arguments, Failed};

/// A directory owned by root, mode 0755 (the test runs as root).
fn root_dir(env: &Env) -> Result<Scratch, Failed> {
    env.policy_dir()
}

fn stat(p: &Path) -> Result<std::fs::Metadata, Failed> {
    std::fs::symlink_metadata(p).map_err(|e| format!("stat {}: {e}", p.display()).into())
}

fn git(dir: &Path, args: &[&str]) -> Result<std::process::Output, Failed> {
    Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "user.email=t@e", "-c", "user.name=t"])
        .args(args)
        .env_remove("GIT_DIR")
        .output()
        .map_err(err)
}

/// Root's repository in a root-owned 0755 workspace: the agent writes and commits, the files
/// are uid 0 on the host, and root's own `git status` works afterwards (no "dubious
/// ownership").
fn root_owned_workspace_is_writable(env: &Env) -> Result<(), Failed> {
    let ws = root_dir(env)?;
    git(ws.path(), &["init", "-q", "."])?;
    std::fs::write(ws.path().join("a"), "a\n").map_err(err)?;
    git(ws.path(), &["add", "a"])?;
    git(ws.path(), &["commit", "-qm", "init"])?;
    let out = env.run(&[
        "run",
        "-w",
        ws.s(),
        "--",
        "sh",
        "-c",
        "echo hi > new && mkdir d && echo x > d/f && git add -A && \
         git -c user.email=a@b -c user.name=a commit -qm agent && stat -c '%u %g' new",
    ])?;
    out.expect_code(0, "agent writes and commits in root's workspace")?;
    if out.stdout.trim() != "0 0" {
        return Err(format!(
            "inside, the file should be the sandbox's own (0 0): {}",
            out.stdout
        )
        .into());
    }
    if !out.stderr.is_empty() {
        return Err(format!("no warning expected: {}", out.stderr).into());
    }
    for f in ["new", "d", "d/f"] {
        let md = stat(&ws.path().join(f))?;
        if (md.uid(), md.gid()) != (0, 0) {
            return Err(format!("{f} is {}:{} on the host, want 0:0", md.uid(), md.gid()).into());
        }
    }
    let st = git(ws.path(), &["status", "--porcelain"])?;
    if !st.status.success() || !st.stdout.is_empty() {
        return Err(format!(
            "root's git status after the run: {} {} {}",
            st.status,
            String::from_utf8_lossy(&st.stdout),
            String::from_utf8_lossy(&st.stderr)
        )
        .into());
    }
    let log = git(ws.path(), &["log", "--format=%s"])?;
    if String::from_utf8_lossy(&log.stdout) != "agent\ninit\n" {
        return Err(format!("git log: {}", String::from_utf8_lossy(&log.stdout)).into());
    }
    Ok(())
}

/// On an idmapped (root-owned) workspace nothing set-id or capability-bearing can be made:
/// chmod u+s / g+s, open(O_CREAT, 04755), mknod with S_ISUID and a security.capability
/// xattr all fail with EPERM, and the host sees no set-id bit and no xattr.
fn setid_and_file_caps_refused(env: &Env) -> Result<(), Failed> {
    let ws = root_dir(env)?;
    let script = r##"
import os, errno
def t(name, f):
    try:
        f(); print(name, "ALLOWED")
    except OSError as e:
        print(name, errno.errorcode[e.errno])
open("x", "w").write("#!/bin/sh\n")
os.chmod("x", 0o755)
t("chmod-u+s", lambda: os.chmod("x", 0o4755))
t("chmod-g+s", lambda: os.chmod("x", 0o2755))
t("open-04755", lambda: os.close(os.open("y", os.O_CREAT | os.O_WRONLY, 0o4755)))
t("mknod-04755", lambda: os.mknod("z", 0o104755))
t("setxattr-cap", lambda: os.setxattr("x", "security.capability", b"\x00\x00\x00\x02" + b"\xff" * 16))
"##;
    let out = env.run(&["run", "-w", ws.s(), "--", "python3", "-c", script])?;
    out.expect_code(0, "set-id attempts")?;
    let want = "chmod-u+s EPERM\nchmod-g+s EPERM\nopen-04755 EPERM\nmknod-04755 EPERM\nsetxattr-cap EPERM\n";
    if out.stdout != want {
        return Err(format!("got:\n{}want:\n{want}stderr: {}", out.stdout, out.stderr).into());
    }
    let x = ws.path().join("x");
    let md = stat(&x)?;
    if md.uid() != 0 || md.mode() & 0o6000 != 0 {
        return Err(format!("x on the host: uid {} mode {:o}", md.uid(), md.mode()).into());
    }
    for f in ["y", "z"] {
        if ws.path().join(f).exists() {
            return Err(format!("{f} was created").into());
        }
    }
    let cx = CString::new(x.to_str().ok_or("utf-8")?).map_err(err)?;
    let mut buf = [0u8; 64];
    // SAFETY: live C strings and a live buffer of the given size.
    let n = unsafe {
        libc::getxattr(
            cx.as_ptr(),
            c"security.capability".as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    if n >= 0 {
        return Err("x carries a security.capability xattr on the host".into());
    }
    Ok(())
}

/// A workspace owned by uid 1000, run as root: what the agent creates is uid/gid 1000's.
fn uid_1000_workspace_keeps_its_owner(env: &Env) -> Result<(), Failed> {
    let ws = root_dir(env)?;
    std::os::unix::fs::chown(ws.path(), Some(1000), Some(1000)).map_err(err)?;
    let out = env.run(&[
        "run",
        "-w",
        ws.s(),
        "--",
        "sh",
        "-c",
        "echo hi > f && mkdir d",
    ])?;
    out.expect_code(0, "write in uid 1000's workspace")?;
    for f in ["f", "d"] {
        let md = stat(&ws.path().join(f))?;
        if (md.uid(), md.gid()) != (1000, 1000) {
            return Err(format!("{f} is {}:{}, want 1000:1000", md.uid(), md.gid()).into());
        }
    }
    Ok(())
}

/// `--rw` below a mode-700 root directory (like /root): under full it is idmapped and needs
/// no host path walk by the sandbox's uid; under landlock (no idmap: set-id bits would be
/// possible) the mount fails and the hint names the mode-700 parent, not the container.
fn rw_below_mode_700_parent(env: &Env) -> Result<(), Failed> {
    let ws = root_dir(env)?;
    let home = root_dir(env)?;
    std::fs::set_permissions(home.path(), std::fs::Permissions::from_mode(0o700)).map_err(err)?;
    let cache = home.path().join("cache");
    std::fs::create_dir(&cache).map_err(err)?;
    let cache_s = cache.to_str().ok_or("utf-8")?;
    let script = format!("echo hi > {cache_s}/f");
    let out = env.run(&[
        "run",
        "-w",
        ws.s(),
        "--rw",
        cache_s,
        "--",
        "sh",
        "-c",
        &script,
    ])?;
    out.expect_code(0, "--rw below a mode-700 parent under full")?;
    if stat(&cache.join("f"))?.uid() != 0 {
        return Err("the file is not root's on the host".into());
    }
    let out = env.run(&[
        "run",
        "-p",
        "landlock",
        "-w",
        ws.s(),
        "--rw",
        cache_s,
        "--",
        "true",
    ])?;
    out.expect_code(125, "--rw below a mode-700 parent under landlock")?;
    let want = format!("hint: {} is mode 700", home.s());
    if !out.stderr.contains(&want) || out.stderr.contains("outer runtime") {
        return Err(format!("the hint should name the mode-700 parent: {}", out.stderr).into());
    }
    Ok(())
}

/// Without the caps and seccomp layers the sandbox could chmod u+s a file it owns: no
/// idmapped bind then, and the warning says why (the workspace stays unwritable).
fn no_idmap_where_setid_is_possible(env: &Env) -> Result<(), Failed> {
    let ws = root_dir(env)?;
    for args in [
        vec!["-p", "ns-only"],
        vec!["-p", "full", "--without", "seccomp"],
        vec!["-p", "full", "--without", "caps"],
    ] {
        let mut a = vec!["run"];
        a.extend(&args);
        a.extend([
            "-w",
            ws.s(),
            "--",
            "sh",
            "-c",
            "echo x > f 2>/dev/null; echo done",
        ]);
        let out = env.run(&a)?;
        let what = args.join(" ");
        out.expect_code(0, &what)?;
        if ws.path().join("f").exists() {
            return Err(format!("{what}: the sandbox wrote root's workspace").into());
        }
        if !out.stderr.contains("no idmapped bind is possible") {
            return Err(format!("{what}: no warning: {}", out.stderr).into());
        }
    }
    Ok(())
}

/// A filesystem that cannot be idmapped (ramfs): the run says so and keeps the plain bind
/// (unwritable to the sandbox's host uid), it does not fail.
fn unidmappable_filesystem_said(env: &Env) -> Result<(), Failed> {
    let ws = root_dir(env)?;
    let dir = root_dir(env)?;
    let target = CString::new(dir.s()).map_err(err)?;
    // SAFETY: live C strings; a fresh ramfs on our scratch dir, unmounted below.
    let rc = unsafe {
        libc::mount(
            c"none".as_ptr(),
            target.as_ptr(),
            c"ramfs".as_ptr(),
            0,
            c"mode=0755".as_ptr().cast(),
        )
    };
    if rc != 0 {
        return Err(format!("mount ramfs: {}", std::io::Error::last_os_error()).into());
    }
    let script = format!("echo x > {}/f 2>/dev/null; echo done", dir.s());
    let out = env.run(&[
        "run",
        "-w",
        ws.s(),
        "--rw",
        dir.s(),
        "--",
        "sh",
        "-c",
        &script,
    ]);
    let planted = dir.path().join("f").exists();
    // SAFETY: target is a live C string.
    unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
    let out = out?;
    out.expect_code(0, "--rw on ramfs")?;
    if planted {
        return Err("the sandbox wrote root's ramfs without an idmapped bind".into());
    }
    if !out
        .stderr
        .contains("its filesystem cannot be idmapped here")
    {
        return Err(format!("the warning should say why: {}", out.stderr).into());
    }
    Ok(())
}

fn main() {
    let args = Arguments::from_args();
    let tests: &[(&str, TestFn, bool)] = &[
        (
            "root_owned_workspace_is_writable",
            root_owned_workspace_is_writable,
            true,
        ),
        (
            "setid_and_file_caps_refused",
            setid_and_file_caps_refused,
            true,
        ),
        (
            "uid_1000_workspace_keeps_its_owner",
            uid_1000_workspace_keeps_its_owner,
            true,
        ),
        ("rw_below_mode_700_parent", rw_below_mode_700_parent, true),
        (
            "no_idmap_where_setid_is_possible",
            no_idmap_where_setid_is_possible,
            true,
        ),
        (
            "unidmappable_filesystem_said",
            unidmappable_filesystem_said,
            true,
        ),
    ];
    common::run(&args, common::trials_by_user(tests))
}
