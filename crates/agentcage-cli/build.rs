//! Embeds the git revision in `--version` (falls back to the crate version alone), and lays
//! out the launcher's image for a cheap start (issue 19, see `link_layout`).
use std::path::Path;
use std::process::Command;

fn main() {
    let version = env!("CARGO_PKG_VERSION");
    let rev = Some(stdout_of("git", &["rev-parse", "--short=12", "HEAD"]))
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty());
    let full = match rev {
        Some(r) => format!("{version} (git {r})"),
        None => version.to_string(),
    };
    println!("cargo:rustc-env=AGENTCAGE_VERSION={full}");
    println!("cargo:rerun-if-changed=../../.git/HEAD");
    println!("cargo:rerun-if-changed=../../.git/refs");
    link_layout();
}

/// Issue 19: the kernel maps a file-backed text 64 KiB at a time around each page fault
/// (fault-around), so the few hundred functions a launch runs, spread over 7 MB of .text, cost
/// ~50 faults and ~4 MiB of RSS per process (launcher and init). `tools/launcher.order` lists
/// them (tools/symbol-order.sh regenerates it) and lld places them first, together. The names
/// carry hashes that change with crate metadata: a stale list only loses the gain (missing
/// names are skipped, `--no-warn-symbol-ordering`), it never fails the build.
///
/// `-z pack-relative-relocs` (DT_RELR) shrinks the static-pie's 7k relative relocations from
/// 174 KiB of .rela.dyn, all read at every start, to ~2 KiB. The start code that applies them
/// is the static glibc's own: only 2.36 and later know DT_RELR.
///
/// Both are given only where the linker is known to be lld (rustc's default, self-contained
/// rust-lld, on x86_64-unknown-linux-gnu since 1.90) and no other linker is configured.
fn link_layout() {
    println!("cargo:rerun-if-changed=../../tools/launcher.order");
    println!("cargo:rerun-if-env-changed=RUSTC_LINKER");
    let target = std::env::var("TARGET").unwrap_or_default();
    let flags = std::env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
    let other_linker = std::env::var_os("RUSTC_LINKER").is_some()
        || ["linker", "link-self-contained", "fuse-ld"]
            .iter()
            .any(|f| flags.contains(f));
    if target != "x86_64-unknown-linux-gnu" || other_linker || !rustc_links_with_lld() {
        return;
    }
    let order = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tools/launcher.order");
    if order.is_file() {
        let bin = "cargo:rustc-link-arg-bin=agentcage";
        println!("{bin}=-Wl,--symbol-ordering-file={}", order.display());
        println!("{bin}=-Wl,--no-warn-symbol-ordering");
    }
    if glibc_at_least(2, 36) {
        println!("cargo:rustc-link-arg-bin=agentcage=-Wl,-z,pack-relative-relocs");
    }
}

/// rustc links x86_64-unknown-linux-gnu with its self-contained lld by default from 1.90 on;
/// an older one drives the system's `cc` and GNU ld, which knows no `--symbol-ordering-file`.
fn rustc_links_with_lld() -> bool {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let out = stdout_of(&rustc, &["-vV"]);
    // "release: 1.95.0"
    let release = out.lines().find_map(|l| l.strip_prefix("release: "));
    major_minor(release.unwrap_or("")) >= (1, 90)
}

/// The build host's glibc (the static one linked in comes with it), from `getconf`.
fn glibc_at_least(major: u32, minor: u32) -> bool {
    let out = stdout_of("getconf", &["GNU_LIBC_VERSION"]);
    // "glibc 2.36"
    major_minor(out.trim().strip_prefix("glibc ").unwrap_or("")) >= (major, minor)
}

/// What `prog args` printed, or "" when it could not run or failed.
fn stdout_of(prog: &str, args: &[&str]) -> String {
    Command::new(prog)
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .unwrap_or_default()
}

/// The first two numbers of a version such as "1.95.0" or "2.36" ((0, 0) where unreadable).
fn major_minor(version: &str) -> (u32, u32) {
    let mut v = version.split(['.', '-']).map(|n| n.parse().unwrap_or(0));
    (v.next().unwrap_or(0), v.next().unwrap_or(0))
}
