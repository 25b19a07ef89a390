//! The matrix header: facts about the host, asked from the kernel, never assumed.
//!
//! `agentcage doctor --json` (when the binary has it) adds what the launcher can enforce here;
//! its output is embedded as is under `host.doctor`, so the two never disagree.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::report::Host;
use crate::sys;

/// How long `agentcage doctor --json` may take before it is ignored.
const DOCTOR_TIMEOUT: Duration = Duration::from_secs(10);

/// Detects the host facts shown in the header; `scratch` is a private dir for doctor's output.
pub fn detect(agentcage: &Path, attribution: bool, scratch: &Path) -> Host {
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|e| format!("unknown ({e})"));
    let (landlock_abi, landlock_error) = match sys::landlock_abi() {
        Ok(v) => (Some(v), None),
        Err(e) => (None, Some(e)),
    };
    let (uid, gid) = sys::ids();
    Host {
        kernel,
        landlock_abi,
        landlock_error,
        uid,
        gid,
        agentcage: agentcage.display().to_string(),
        attribution,
        doctor: doctor(agentcage, scratch),
        landlock_enforcement: landlock_enforcement(scratch),
    }
}

/// The launcher's own per-right Landlock report for the `full` profile on this host (the
/// same lines `agentcage run -v` prints), from a dry `prepare` that starts nothing.
fn landlock_enforcement(scratch: &Path) -> Vec<String> {
    let policy = agentcage::Policy::for_profile(agentcage::Profile::Full, scratch.to_path_buf());
    let cmd = agentcage::Command {
        argv: vec!["true".into()],
        self_exe: None,
    };
    match agentcage::prepare(&policy, &cmd) {
        Ok(p) => p
            .enforcement
            .iter()
            .filter(|(what, _)| what == "landlock")
            .map(|(_, how)| how.clone())
            .collect(),
        Err(e) => vec![format!("full cannot be enforced: {}", e.chain())],
    }
}

/// Runs `agentcage doctor --json`; `None` if the subcommand is missing, fails, is slow or does
/// not print JSON.
fn doctor(agentcage: &Path, scratch: &Path) -> Option<serde_json::Value> {
    let out = scratch.join("doctor.json");
    let file = std::fs::File::create(&out).ok()?;
    let mut child = Command::new(agentcage)
        .args(["doctor", "--json"])
        .stdin(Stdio::null())
        .stdout(file)
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break Some(s),
            Ok(None) if started.elapsed() < DOCTOR_TIMEOUT && !sys::interrupted() => {
                std::thread::sleep(Duration::from_millis(10))
            }
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
        }
    };
    let text = std::fs::read_to_string(&out).ok();
    let _ = std::fs::remove_file(&out);
    if !status?.success() {
        return None;
    }
    serde_json::from_str(&text?).ok()
}
