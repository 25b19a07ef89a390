//! Shared by this crate's integration tests: a scenario runs as the caller and, when that is
//! root, again as uid 65534 from a copy of the test binary that user can execute.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

/// A scenario in a scratch directory the sandbox user can use: Ok(None) passed, Ok(Some(why))
/// skipped, Err(what) failed.
pub type Scenario = fn(&Path) -> Result<Option<String>, String>;

/// The skip reason when `e` says no sandbox can be set up on this host (no user namespaces,
/// or the kernel refused one: EPERM); None for any other error (a failure).
pub fn no_sandbox_here(e: &agentcage::Error) -> Option<String> {
    match e {
        agentcage::Error::Setup { step, errno, .. }
            if step.contains("user namespace") || errno.0 == libc::EPERM =>
        {
            Some(format!("cannot set up a sandbox here: {step}: {errno}"))
        }
        _ => None,
    }
}

pub fn is_root() -> bool {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() == 0 }
}

fn scratch(tag: &str, who: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("agentcage-{tag}-{who}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("mkdir scratch");
    std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o777)).expect("chmod scratch");
    d
}

/// A skip, or a failure when `expect` (a feature this machine kind has) is listed in
/// AGENTCAGE_TEST_EXPECT; a failure panics.
fn report(who: &str, r: Result<Option<String>, String>, expect: Option<&str>) {
    match r {
        Ok(None) => {}
        Ok(Some(why)) => {
            let listed = std::env::var("AGENTCAGE_TEST_EXPECT").unwrap_or_default();
            if let Some(e) = expect {
                assert!(
                    !listed.split(',').any(|l| l.trim() == e),
                    "{who}: AGENTCAGE_TEST_EXPECT lists {e}, but: {why}"
                );
            }
            eprintln!("skip {who}: {why}");
        }
        Err(e) => panic!("{who}: {e}"),
    }
}

/// Runs `scenario` in a scratch directory as the caller, then, as root, in a copy of this test
/// binary as uid 65534 (`test`: the calling #[test] function's name, the only one the copy
/// runs; `env`: the variable that hands the copy its directory and marks it as the copy).
/// Skips say why; `expect` names the AGENTCAGE_TEST_EXPECT item that makes them failures.
pub fn as_caller_and_nobody(
    test: &str,
    env: &str,
    tag: &str,
    expect: Option<&str>,
    scenario: Scenario,
) {
    if let Ok(dir) = std::env::var(env) {
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
    let dir = scratch(tag, "self");
    let r = scenario(&dir);
    let _ = std::fs::remove_dir_all(&dir);
    report(if is_root() { "root" } else { "caller" }, r, expect);
    if !is_root() {
        return;
    }
    let dir = scratch(tag, "nobody");
    let exe = dir.join("test-bin");
    std::fs::copy(std::env::current_exe().expect("current_exe"), &exe).expect("copy test binary");
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let work = dir.join("work");
    std::fs::create_dir(&work).expect("mkdir");
    std::os::unix::fs::chown(&work, Some(65534), Some(65534)).expect("chown");
    let out = std::process::Command::new(&exe)
        .args(["--exact", test])
        .env(env, &work)
        .current_dir("/")
        .uid(65534)
        .gid(65534)
        .output()
        .expect("run the uid 65534 copy");
    let _ = std::fs::remove_dir_all(&dir);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // A wrong `test` would make the copy run nothing and pass.
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        !stdout.contains("running 0 tests"),
        "the uid 65534 copy ran no test named {test}"
    );
    match out.status.code() {
        Some(0) => {}
        Some(3) => report("nobody", Ok(Some(stderr.trim().to_string())), expect),
        _ => panic!("nobody: {:?}: {stderr}", out.status),
    }
}
