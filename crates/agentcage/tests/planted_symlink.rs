//! A protected path (a bind nested in the writable workspace) swapped for a symlink between
//! `prepare` and the mount is refused (ELOOP), not followed (issue #10, finding 3). The CLI
//! refuses a symlink it sees; this covers the window after it looked (a concurrent run).
//!
//! Runs the scenario in this process (as whoever runs the test) and, when that is root, again
//! as uid 65534 in a copy of this test binary. Skipped with a reason without user namespaces
//! or without openat2/open_tree/mount_setattr (Linux < 5.12: the bind is made by path then).

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

use agentcage::{Command, Error, ExtraBind, Policy, Profile, SpawnOptions};

const CHILD_ENV: &str = "AGENTCAGE_TEST_PLANTED_DIR";

fn is_root() -> bool {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// The scenario in `dir` (which the sandbox user can use): Ok(None) passed, Ok(Some) skipped.
fn scenario(dir: &Path) -> Result<Option<String>, String> {
    if !agentcage::testing::mount_setattr_available() {
        return Ok(Some(
            "no mount_setattr (Linux < 5.12): binds are made by path".into(),
        ));
    }
    let ws = dir.join("ws");
    let hooks = ws.join(".git/hooks");
    std::fs::create_dir_all(&hooks).map_err(|e| e.to_string())?;
    for p in [&ws, &ws.join(".git"), &hooks] {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o777))
            .map_err(|e| e.to_string())?;
    }
    let mut policy = Policy::for_profile(Profile::NsOnly, ws.clone());
    policy.binds = vec![ExtraBind {
        path: hooks.clone(),
        writable: false,
        fresh_placeholder: None,
    }];
    let cmd = Command {
        argv: vec![
            "sh".into(),
            "-c".into(),
            format!("test -d {}", hooks.display()).into(),
        ],
        self_exe: None,
    };
    let prepared = match agentcage::prepare(&policy, &cmd) {
        Ok(p) => p,
        Err(e) => return Ok(Some(format!("cannot prepare: {e}"))),
    };
    // What an agent running concurrently in the same workspace could do now: point the
    // protected path at a directory of its own (relative, so the link resolves in the
    // launcher's staging root and in the new root alike). Followed, the read-only bind would
    // cover the agent's directory and leave the host's `.git/hooks` a link the agent controls.
    let evil = ws.join("evil-hooks");
    std::fs::create_dir(&evil).map_err(|e| e.to_string())?;
    std::fs::set_permissions(&evil, std::fs::Permissions::from_mode(0o777))
        .map_err(|e| e.to_string())?;
    std::fs::remove_dir(&hooks).map_err(|e| e.to_string())?;
    std::os::unix::fs::symlink("../evil-hooks", &hooks).map_err(|e| e.to_string())?;
    let opts = SpawnOptions {
        forward_signals: false,
        pty: false,
        on_enforcement: None,
        on_degraded: None,
        ..SpawnOptions::default()
    };
    match prepared.run(&opts) {
        Err(Error::Setup { step, errno, .. }) if errno.0 == libc::ELOOP => {
            if step.contains(".git/hooks") {
                Ok(None)
            } else {
                Err(format!(
                    "ELOOP, but the step does not name the path: {step}"
                ))
            }
        }
        Err(Error::Setup { step, errno, .. })
            if step.contains("user namespace") || errno.0 == libc::EPERM =>
        {
            Ok(Some(format!(
                "cannot set up a sandbox here: {step}: {errno}"
            )))
        }
        Err(e) => Err(format!("unexpected error: {e} ({e:?})")),
        Ok(o) => Err(format!(
            "the planted symlink was followed: the command ran ({:?})",
            o.exit
        )),
    }
}

fn scratch(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("agentcage-planted-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("mkdir scratch");
    std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o777)).expect("chmod scratch");
    d
}

fn report(who: &str, r: Result<Option<String>, String>) {
    match r {
        Ok(None) => {}
        Ok(Some(why)) => eprintln!("skip {who}: {why}"),
        Err(e) => panic!("{who}: {e}"),
    }
}

#[test]
fn planted_symlink_after_prepare_is_refused() {
    if let Ok(dir) = std::env::var(CHILD_ENV) {
        // The uid 65534 copy: report through the exit status and stderr.
        match scenario(Path::new(&dir)) {
            Ok(None) => std::process::exit(0),
            Ok(Some(why)) => {
                eprintln!("{why}");
                std::process::exit(3)
            }
            Err(e) => {
                eprintln!("{e}");
                std::process::exit(1)
            }
        }
    }
    let dir = scratch("self");
    let r = scenario(&dir);
    let _ = std::fs::remove_dir_all(&dir);
    report(if is_root() { "root" } else { "caller" }, r);
    if !is_root() {
        return;
    }
    // Again as uid 65534, from a copy of this binary it can execute.
    let dir = scratch("nobody");
    let exe = dir.join("test-bin");
    std::fs::copy(std::env::current_exe().expect("current_exe"), &exe).expect("copy test binary");
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let work = dir.join("work");
    std::fs::create_dir(&work).expect("mkdir");
    std::os::unix::fs::chown(&work, Some(65534), Some(65534)).expect("chown");
    let out = std::process::Command::new(&exe)
        .args(["--exact", "planted_symlink_after_prepare_is_refused"])
        .env(CHILD_ENV, &work)
        .current_dir("/")
        .uid(65534)
        .gid(65534)
        .output()
        .expect("run the uid 65534 copy");
    let _ = std::fs::remove_dir_all(&dir);
    let stderr = String::from_utf8_lossy(&out.stderr);
    match out.status.code() {
        Some(0) => {}
        Some(3) => eprintln!("skip nobody: {}", stderr.trim()),
        _ => panic!("nobody: {:?}: {stderr}", out.status),
    }
}
