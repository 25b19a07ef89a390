//! Embeds the git revision in `--version` (falls back to the crate version alone).
use std::process::Command;

fn main() {
    let version = env!("CARGO_PKG_VERSION");
    let rev = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty());
    let full = match rev {
        Some(r) => format!("{version} (git {r})"),
        None => version.to_string(),
    };
    println!("cargo:rustc-env=AGENTCAGE_VERSION={full}");
    println!("cargo:rerun-if-changed=../../.git/HEAD");
    println!("cargo:rerun-if-changed=../../.git/refs");
}
