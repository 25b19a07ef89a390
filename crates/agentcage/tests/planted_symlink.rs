//! A protected path (a bind nested in the writable workspace) swapped for a symlink between
//! `prepare` and the mount is refused (ELOOP), not followed (issue #10, finding 3). The CLI
//! refuses a symlink it sees; this covers the window after it looked (a concurrent run).
//!
//! Runs the scenario in this process (as whoever runs the test) and, when that is root, again
//! as uid 65534 in a copy of this test binary. Skipped with a reason without user namespaces
//! or without openat2/open_tree/mount_setattr (Linux < 5.12: the bind is made by path then).

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use agentcage::{Command, Error, ExtraBind, Policy, Profile, SpawnOptions};

const CHILD_ENV: &str = "AGENTCAGE_TEST_PLANTED_DIR";

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
        Err(e) => match common::no_sandbox_here(&e) {
            Some(why) => Ok(Some(why)),
            None => Err(format!("unexpected error: {e} ({e:?})")),
        },
        Ok(o) => Err(format!(
            "the planted symlink was followed: the command ran ({:?})",
            o.exit
        )),
    }
}

#[test]
fn planted_symlink_after_prepare_is_refused() {
    common::as_caller_and_nobody(
        "planted_symlink_after_prepare_is_refused",
        CHILD_ENV,
        "planted",
        None,
        scenario,
    );
}
