//! The end of a run (issue 19): when the command exits and the init has reaped every other
//! process of the sandbox, the launcher reports the outcome while the init's exit (the
//! namespaces' teardown) is still under way, and reaps the init when the outcome is dropped:
//! never a zombie left behind. When something of the sandbox still runs, the init's exit kills
//! it and the launcher waits for that exit before it reports, as before.
//!
//! Runs in this process (as whoever runs the test) and, when that is root, again as uid 65534
//! in a copy of this test binary. Skipped with a reason where no sandbox can be set up.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use agentcage::{Command, Error, Exit, Policy, Profile, RunOutcome, SpawnOptions};

const CHILD_ENV: &str = "AGENTCAGE_TEST_INIT_EXIT_DIR";

/// Runs `sh -c script` under ns-only (no limits layer: no cgroup to remove after the init).
fn run(ws: &Path, script: &str) -> Result<RunOutcome, Error> {
    let policy = Policy::for_profile(Profile::NsOnly, ws.to_path_buf());
    let cmd = Command {
        argv: vec!["sh".into(), "-c".into(), script.into()],
        self_exe: None,
    };
    agentcage::prepare(&policy, &cmd)?.run(&SpawnOptions::default())
}

/// A process of ours whose cmdline contains `marker` (the host's view of /proc).
fn running(marker: &str) -> bool {
    std::fs::read_dir("/proc").is_ok_and(|d| {
        d.flatten().any(|e| {
            std::fs::read(e.path().join("cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains(marker))
        })
    })
}

/// Ok(None) passed, Ok(Some) skipped.
fn scenario(dir: &Path) -> Result<Option<String>, String> {
    let ws = dir.join("ws");
    std::fs::create_dir_all(&ws).map_err(|e| e.to_string())?;
    std::fs::set_permissions(&ws, std::fs::Permissions::from_mode(0o777))
        .map_err(|e| e.to_string())?;
    // Nothing left when the command exits: the outcome comes before the init is reaped.
    let o = match run(&ws, "exit 3") {
        Ok(o) => o,
        Err(e) => {
            return match common::no_sandbox_here(&e) {
                Some(why) => Ok(Some(why)),
                None => Err(format!("run: {e}")),
            }
        }
    };
    if o.exit != Exit::Code(3) {
        return Err(format!("exit {:?}, want Code(3)", o.exit));
    }
    let Some(pid) = agentcage::testing::exiting_init_pid(&o) else {
        return Err("the init reaped everything, yet the launcher waited for its exit".into());
    };
    // Not reaped yet: the pid is still ours (running its exit, or a zombie).
    // SAFETY: signal 0 only checks that the process exists.
    if unsafe { libc::kill(pid, 0) } != 0 {
        return Err(format!(
            "the init (pid {pid}) was reaped before the outcome dropped"
        ));
    }
    let cpu = o.cpu;
    drop(o);
    // SAFETY: a null status pointer is allowed; WNOHANG never blocks.
    let r = unsafe { libc::waitpid(pid, std::ptr::null_mut(), libc::WNOHANG | libc::__WALL) };
    if r != -1 || std::io::Error::last_os_error().raw_os_error() != Some(libc::ECHILD) {
        return Err(format!(
            "the init (pid {pid}) was not reaped by dropping the outcome"
        ));
    }
    if cpu.is_zero() {
        return Err("no CPU time reported for the sandbox's processes".into());
    }
    // A process still runs when the command exits: the init's exit kills it, and the launcher
    // waits for that exit (no early outcome).
    let marker = format!(
        "{}.{}",
        40 + std::process::id() % 50,
        std::process::id() % 1000
    );
    let t = Instant::now();
    let o = run(&ws, &format!("sleep {marker} & exit 4")).map_err(|e| format!("run: {e}"))?;
    if o.exit != Exit::Code(4) {
        return Err(format!("exit {:?}, want Code(4)", o.exit));
    }
    if agentcage::testing::exiting_init_pid(&o).is_some() {
        return Err("an early outcome while a background process was alive".into());
    }
    if t.elapsed() > Duration::from_secs(20) || running(&format!("sleep {marker}")) {
        return Err("the background process outlived the run".into());
    }
    Ok(None)
}

#[test]
fn outcome_before_the_inits_teardown_and_no_zombie_after() {
    common::as_caller_and_nobody(
        "outcome_before_the_inits_teardown_and_no_zombie_after",
        CHILD_ENV,
        "initexit",
        Some("userns"),
        scenario,
    );
}
