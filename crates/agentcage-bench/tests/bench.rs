//! Sandbox tier for `agentcage bench`: runs the real `agentcage` binary's `bench --quick` and
//! checks that it emits well-formed output with plausible values. Never asserts timings: only
//! that numbers exist, are positive and finite, that p95 >= median >= min, that every launch
//! exited 0 and nothing leaked.
//!
//! The binary comes from `AGENTCAGE_BIN`, or from the target directory this test was built in
//! (`cargo build -p agentcage-cli` puts it there). Trials are skipped with a printed reason
//! when the binary is missing, has no `bench` subcommand, or user namespaces are unavailable;
//! if `AGENTCAGE_TEST_EXPECT` lists `userns` (CI sets it), missing user namespaces fail instead.
//!
//! - `nobody::*` runs as the current user, or as uid/gid 65534 when the test runs as root;
//! - `root::*` runs as root (skipped otherwise).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use libtest_mimic::{Arguments, Failed, Trial};
use serde_json::Value;

const NOBODY: u32 = 65534;
const PROFILES: [&str; 4] = ["none", "ns-only", "landlock", "full"];

/// Who runs the bench.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Who {
    Root,
    Nobody,
}

struct Env {
    /// The binary to run (a world-readable copy when running as uid 65534 from root).
    bin: PathBuf,
    who: Who,
    /// Keeps the copy alive.
    _dir: Option<ScratchDir>,
}

/// A temp dir removed on drop.
struct ScratchDir(PathBuf);

impl ScratchDir {
    fn new(tag: &str) -> std::io::Result<ScratchDir> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let p = std::env::temp_dir().join(format!(
            "agentcage-bench-test-{tag}-{}-{nanos}",
            std::process::id()
        ));
        fs::create_dir(&p)?;
        fs::set_permissions(&p, fs::Permissions::from_mode(0o755))?;
        Ok(ScratchDir(p))
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn is_root() -> bool {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

/// The agentcage binary, or why there is none.
fn find_binary() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("AGENTCAGE_BIN") {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(format!("AGENTCAGE_BIN={} does not exist", p.display()))
        };
    }
    // This test is at <target>/<profile>/deps/bench-<hash>.
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .ok_or("unexpected test path")?;
    let target = profile_dir.parent().ok_or("unexpected test path")?;
    let candidates = [
        profile_dir.join("agentcage"),
        target.join("release/agentcage"),
        target.join("debug/agentcage"),
    ];
    candidates.iter().find(|p| p.is_file()).cloned().ok_or_else(|| {
        format!(
            "agentcage binary not built (looked for {}); run `cargo build -p agentcage-cli` or set AGENTCAGE_BIN",
            candidates.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
        )
    })
}

/// Why unprivileged user namespaces are unavailable here, if they are.
fn userns_missing(who: Who) -> Option<String> {
    let read = |p: &str| fs::read_to_string(p).ok().map(|s| s.trim().to_string());
    if read("/proc/sys/user/max_user_namespaces").as_deref() == Some("0") {
        return Some("user.max_user_namespaces=0".into());
    }
    if who == Who::Nobody {
        if read("/proc/sys/kernel/unprivileged_userns_clone").as_deref() == Some("0") {
            return Some("kernel.unprivileged_userns_clone=0".into());
        }
        if read("/proc/sys/kernel/apparmor_restrict_unprivileged_userns").as_deref() == Some("1") {
            return Some("kernel.apparmor_restrict_unprivileged_userns=1".into());
        }
    }
    None
}

fn expects(feature: &str) -> bool {
    std::env::var("AGENTCAGE_TEST_EXPECT")
        .map(|v| v.split(',').any(|f| f.trim() == feature))
        .unwrap_or(false)
}

/// The binary, if it is built and has the `bench` subcommand; otherwise why not.
fn ready_binary() -> Result<PathBuf, String> {
    let bin = find_binary()?;
    let help = Command::new(&bin)
        .args(["bench", "--help"])
        .output()
        .map_err(|e| format!("run {}: {e}", bin.display()))?;
    if !help.status.success() {
        return Err(format!("{} has no `bench` subcommand yet", bin.display()));
    }
    Ok(bin)
}

impl Env {
    fn new(who: Who) -> Result<Env, String> {
        let bin = ready_binary()?;
        if who == Who::Nobody && is_root() {
            // uid 65534 must be able to reach and execute the binary: copy it.
            let dir = ScratchDir::new("bin").map_err(|e| format!("scratch dir: {e}"))?;
            let copy = dir.0.join("agentcage");
            fs::copy(&bin, &copy).map_err(|e| format!("copy the binary: {e}"))?;
            fs::set_permissions(&copy, fs::Permissions::from_mode(0o755))
                .map_err(|e| e.to_string())?;
            return Ok(Env {
                bin: copy,
                who,
                _dir: Some(dir),
            });
        }
        Ok(Env {
            bin,
            who,
            _dir: None,
        })
    }

    fn run(&self, args: &[&str]) -> Result<Output, Failed> {
        let mut c = Command::new(&self.bin);
        c.args(args).current_dir("/").stdin(Stdio::null());
        if self.who == Who::Nobody && is_root() {
            c.uid(NOBODY).gid(NOBODY);
        }
        c.output()
            .map_err(|e| format!("run {}: {e}", self.bin.display()).into())
    }
}

fn f64_at(v: &Value, path: &str) -> Option<f64> {
    path.split('.')
        .try_fold(v, |v, k| match k.parse::<usize>() {
            Ok(i) => v.get(i),
            Err(_) => v.get(k),
        })?
        .as_f64()
}

/// A summary object: positive, finite, min <= median <= p95 <= max, n > 0.
fn check_summary(what: &str, s: &Value) -> Result<(), String> {
    let get = |k: &str| {
        s.get(k)
            .and_then(Value::as_f64)
            .ok_or_else(|| format!("{what}: no {k} in {s}"))
    };
    let (n, min, median, p95, max) = (
        get("n")?,
        get("min")?,
        get("median")?,
        get("p95")?,
        get("max")?,
    );
    for (k, x) in [("min", min), ("median", median), ("p95", p95), ("max", max)] {
        if !(x.is_finite() && x > 0.0) {
            return Err(format!("{what}: {k} = {x} is not a positive number"));
        }
    }
    if n < 1.0 || !(min <= median && median <= p95 && p95 <= max) {
        return Err(format!("{what}: implausible summary {s}"));
    }
    Ok(())
}

fn positive(what: &str, x: Option<f64>) -> Result<(), String> {
    match x {
        Some(x) if x.is_finite() && x > 0.0 => Ok(()),
        other => Err(format!("{what}: expected a positive number, got {other:?}")),
    }
}

/// Everything the JSON report must satisfy after a full `--quick --compare` run.
fn check_report(v: &Value, profiles: &[&str]) -> Result<(), String> {
    if v["schema"] != "agentcage-bench/1" {
        return Err(format!("schema {}", v["schema"]));
    }
    let rows = v["profiles"].as_array().ok_or("no profiles array")?;
    let names: Vec<&str> = rows.iter().filter_map(|r| r["profile"].as_str()).collect();
    if names != profiles {
        return Err(format!("profiles {names:?}, want {profiles:?}"));
    }
    let x86 = cfg!(target_arch = "x86_64");
    for r in rows {
        let p = r["profile"].as_str().unwrap_or("?");
        if !r["error"].is_null() {
            return Err(format!("{p}: {}", r["error"]));
        }
        if !r["inner_errors"].as_array().is_some_and(|e| e.is_empty()) {
            return Err(format!("{p}: in-sandbox errors {}", r["inner_errors"]));
        }
        check_summary(&format!("{p} startup"), &r["startup"]["ms"])?;
        check_summary(
            &format!("{p} startup /bin/true"),
            &r["startup_bin_true"]["ms"],
        )?;
        check_summary(&format!("{p} ns_per_syscall"), &r["ns_per_syscall"])?;
        positive(&format!("{p} open_ns"), r["open_ns"].as_f64())?;
        positive(&format!("{p} stat_ns"), r["stat_ns"].as_f64())?;
        positive(&format!("{p} launches_per_s"), r["launches_per_s"].as_f64())?;
        positive(&format!("{p} x_exec"), r["x_exec"].as_f64())?;
        if x86 {
            positive(&format!("{p} peak_rss_kib"), r["peak_rss_kib"].as_f64())?;
        }
        for key in ["open_by_depth", "stat_by_depth"] {
            let d = r[key].as_array().ok_or(format!("{p}: no {key}"))?;
            if d.is_empty() {
                return Err(format!("{p}: {key} empty"));
            }
            for e in d {
                check_summary(&format!("{p} {key}"), &e["ns"])?;
            }
        }
        if r["startup"]["failures"].as_u64() != Some(0) {
            return Err(format!("{p}: failed launches {}", r["startup"]["failures"]));
        }
    }
    let exec = v["baselines"]
        .as_array()
        .and_then(|b| b.iter().find(|b| b["name"] == "exec"))
        .ok_or("no exec baseline")?;
    check_summary("exec startup", &exec["startup"]["ms"])?;
    if Path::new("/usr/bin/bwrap").exists() {
        let bwrap = v["baselines"]
            .as_array()
            .and_then(|b| b.iter().find(|b| b["name"] == "bwrap"))
            .ok_or("bwrap installed but no bwrap baseline")?;
        // bwrap may legitimately be unusable (e.g. no userns for it); then it says why.
        if bwrap["error"].is_null() {
            check_summary("bwrap startup", &bwrap["startup"]["ms"])?;
        } else if !bwrap["error"].is_string() {
            return Err(format!("bwrap error {}", bwrap["error"]));
        }
    }
    let t = &v["throughput"];
    if t["failed_runs"].as_u64() != Some(0) || t["leaked_processes"].as_u64() != Some(0) {
        return Err(format!("throughput run not clean: {t}"));
    }
    let targets = v["targets"].as_array().ok_or("no targets")?;
    if targets.len() < 10 {
        return Err(format!("{} targets, want 10", targets.len()));
    }
    for t in targets {
        let status = t["status"].as_str().unwrap_or("");
        if !["met", "missed", "not-measured"].contains(&status) {
            return Err(format!("target status {t}"));
        }
        if status != "not-measured" && !f64_at(t, "measured").is_some_and(f64::is_finite) {
            return Err(format!("target without a value {t}"));
        }
    }
    let files = v["config"]["files"].as_array().ok_or("no files")?;
    if files.is_empty() {
        return Err("no /usr files picked".into());
    }
    Ok(())
}

fn quick_json(env: &Env) -> Result<(), Failed> {
    let out = env.run(&[
        "bench",
        "--quick",
        "--json",
        "--compare",
        "--rounds",
        "4",
        "--launches",
        "20",
    ])?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.code() != Some(0) {
        return Err(format!(
            "exit {:?}\nstdout:\n{stdout}\nstderr:\n{stderr}",
            out.status
        )
        .into());
    }
    let v: Value = serde_json::from_str(&stdout)
        .map_err(|e| format!("stdout is not JSON ({e}):\n{stdout}"))?;
    check_report(&v, &PROFILES).map_err(|e| format!("{e}\nstderr:\n{stderr}"))?;
    if !stderr.contains("bench: startup round") {
        return Err(format!("no progress line on stderr:\n{stderr}").into());
    }
    Ok(())
}

fn quick_text(env: &Env) -> Result<(), Failed> {
    let out = env.run(&[
        "bench",
        "--quick",
        "--profiles",
        "full,none",
        "--rounds",
        "3",
        "--launches",
        "10",
    ])?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if out.status.code() != Some(0) {
        return Err(format!(
            "exit {:?}\n{stdout}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    let header = stdout
        .lines()
        .find(|l| l.starts_with("profile"))
        .ok_or_else(|| format!("no table header:\n{stdout}"))?;
    let cols: Vec<&str> = header.split_whitespace().collect();
    if cols[..4] != ["profile", "startup_ms", "ns_per_syscall", "delta"] {
        return Err(format!("header {header:?}").into());
    }
    let rows: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("none ") || l.starts_with("full "))
        .collect();
    if rows.len() != 2
        || rows
            .iter()
            .any(|r| r.split_whitespace().count() != cols.len())
    {
        return Err(format!("rows {rows:?} do not match the header {cols:?}").into());
    }
    for want in [
        "overhead targets:",
        "exec (no sandbox)",
        "commands (static true):",
    ] {
        if !stdout.contains(want) {
            return Err(format!("missing {want:?} in:\n{stdout}").into());
        }
    }
    Ok(())
}

fn inner_under_full(env: &Env) -> Result<(), Failed> {
    let ws = ScratchDir::new("ws").map_err(|e| e.to_string())?;
    let ws = ws.0.to_str().ok_or("non-UTF-8 temp dir")?.to_string();
    for (p, inner_bin) in [
        ("none", env.bin.to_str().ok_or("non-UTF-8 path")?),
        ("full", "/run/agentcage/agentcage"),
    ] {
        let out = env.run(&[
            "run",
            // As root, `none` is host root and needs the confirmation (ignored otherwise).
            "--allow-unsandboxed-root",
            "--profile",
            p,
            "--workspace",
            &ws,
            "--",
            inner_bin,
            "bench-inner",
            "--batches",
            "2",
            "stat",
            "100",
            "/usr/bin/env",
            "/usr",
        ])?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        if out.status.code() != Some(0) {
            return Err(format!(
                "{p}: exit {:?}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            )
            .into());
        }
        let v: Value =
            serde_json::from_str(stdout.trim()).map_err(|e| format!("{p}: {e}: {stdout}"))?;
        if v["op"] != "stat" || v["results"].as_array().map(Vec::len) != Some(2) {
            return Err(format!("{p}: {v}").into());
        }
        for r in v["results"].as_array().into_iter().flatten() {
            let ns = r["ns_per_op"].as_array().ok_or("no ns_per_op")?;
            if ns.len() != 2
                || !ns
                    .iter()
                    .all(|x| x.as_f64().is_some_and(|x| x.is_finite() && x > 0.0))
            {
                return Err(format!("{p}: {r}").into());
            }
        }
    }
    Ok(())
}

type TestFn = fn(&Env) -> Result<(), Failed>;

/// `--sessions` (issue #13): the four contenders are measured, and the load test is clean
/// (the speed targets are not asserted here: a debug build on a shared machine).
fn sessions_json(env: &Env) -> Result<(), Failed> {
    let out = env.run(&["bench", "--sessions", "--rounds", "3", "--json"])?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let v: Value = serde_json::from_str(&stdout)
        .map_err(|e| format!("stdout is not JSON ({e}):\n{stdout}\nstderr:\n{stderr}"))?;
    for c in ["run", "exec", "protocol", "fork+exec"] {
        check_summary(c, &v["contenders"][c])?;
    }
    let load = &v["load"];
    if load["sequential_ok"] != 1000 || load["concurrent_ok"] != 50 {
        return Err(format!("load: {load}").into());
    }
    if load["before"] != load["after"] {
        return Err(format!("growth: {load}").into());
    }
    Ok(())
}

fn main() {
    let args = Arguments::from_args();
    let tests: [(&str, TestFn); 4] = [
        ("quick_json", quick_json),
        ("quick_text", quick_text),
        ("inner_under_full", inner_under_full),
        ("sessions_json", sessions_json),
    ];
    let mut trials = Vec::new();
    for (group, who) in [("nobody", Who::Nobody), ("root", Who::Root)] {
        for (name, f) in tests {
            let full = format!("{group}::{name}");
            let skip = if who == Who::Root && !is_root() {
                Some("needs root".to_string())
            } else {
                match (ready_binary(), userns_missing(who)) {
                    (Err(why), _) => Some(why),
                    (_, Some(why)) if !expects("userns") => {
                        Some(format!("no user namespaces: {why}"))
                    }
                    _ => None,
                }
            };
            if let Some(why) = &skip {
                eprintln!("skip {full}: {why}");
            }
            let ignored = skip.is_some();
            trials.push(
                Trial::test(full, move || {
                    if let Some(why) = userns_missing(who) {
                        return Err(format!("AGENTCAGE_TEST_EXPECT lists userns but: {why}").into());
                    }
                    let env = Env::new(who)?;
                    f(&env)
                })
                .with_ignored_flag(ignored),
            );
        }
    }
    // The trials each run a few hundred sandboxes; running them in parallel would only make
    // every one of them slower on a small machine.
    let mut args = args;
    if args.test_threads.is_none() {
        args.test_threads = Some(1);
    }
    libtest_mimic::run(&args, trials).exit();
}
