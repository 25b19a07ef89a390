//! Host-side writes of the launcher (issue #10, finding 1): `--json-report` must never write
//! through what the agent left at the report's path (a symlink to a file outside, a dangling
//! symlink, a FIFO, a hard link) nor through a directory symlink a previous run planted. Each
//! trial runs as root and as uid 65534 (see `common`): the agent replaces `report.json` in
//! its workspace, then the report must be a regular file holding the JSON, and the file the
//! agent aimed at must be untouched.

mod common;

use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{Env, Out, Scratch, TestFn, Who};
use libtest_mimic::{Arguments, Failed};

/// `run -p full -w WS --json-report WS/report.json -- sh -c SCRIPT`, killed after 20 s (a
/// launcher that blocks in open() on a FIFO must fail the trial, not hang it).
fn run_report(env: &Env, ws: &Scratch, report: &Path, script: &str) -> Result<Out, Failed> {
    let rs = report.to_str().ok_or("report path not UTF-8")?;
    let mut c = env.command_as_is(&[
        "run",
        "-q",
        "-p",
        "full",
        "-w",
        ws.s(),
        "--json-report",
        rs,
        "--",
        "sh",
        "-c",
        script,
    ]);
    c.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().map_err(|e| format!("spawn: {e}"))?;
    let t = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().map_err(|e| e.to_string())? {
            break st;
        }
        if t.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            let _ = child.wait();
            return Err("the launcher hung for 20 s (blocked on the report path?)".into());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stdout = String::new();
    let mut stderr = String::new();
    if let Some(mut o) = child.stdout.take() {
        let _ = o.read_to_string(&mut stdout);
    }
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut stderr);
    }
    Ok(Out {
        code: status.code().unwrap_or(-1),
        stdout,
        stderr,
    })
}

/// The report is a regular file (not a link, one name) with the run's JSON.
fn expect_report(report: &Path, what: &str) -> Result<(), Failed> {
    let md = std::fs::symlink_metadata(report)
        .map_err(|e| format!("{what}: no report at {}: {e}", report.display()))?;
    if !md.file_type().is_file() || md.nlink() != 1 {
        return Err(format!(
            "{what}: report is not a regular file with one link: {:?}, nlink {}",
            md.file_type(),
            md.nlink()
        )
        .into());
    }
    let text = std::fs::read_to_string(report).map_err(|e| e.to_string())?;
    let v: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("{what}: report not JSON: {e}: {text}"))?;
    if v["exit_code"] != 0 {
        return Err(format!("{what}: report says {v}").into());
    }
    Ok(())
}

/// A file outside the workspace that the caller could write (so only the fix protects it).
fn victim(env: &Env, dir: &Scratch, name: &str) -> Result<std::path::PathBuf, Failed> {
    let p = dir.path().join(name);
    std::fs::write(&p, "precious\n").map_err(|e| e.to_string())?;
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644))
        .map_err(|e| e.to_string())?;
    if env.who == Who::Nobody {
        env.chown_to_sandbox(&p)?;
    }
    Ok(p)
}

/// (a) a symlink to a file outside: the file stays untouched.
fn report_symlink_to_outside_file(env: &Env) -> Result<(), Failed> {
    let ws = env.workspace()?;
    let outside = env.secret_dir()?;
    let target = victim(env, &outside, "bashrc")?;
    let report = ws.path().join("report.json");
    let script = format!("ln -sf {} report.json", target.display());
    let out = run_report(env, &ws, &report, &script)?;
    out.expect_code(0, "run")?;
    let now = std::fs::read_to_string(&target).map_err(|e| e.to_string())?;
    if now != "precious\n" {
        return Err(format!("the launcher wrote through the symlink: {now:?}").into());
    }
    expect_report(&report, "symlink")
}

/// (b) a dangling symlink: nothing is created at its target.
fn report_dangling_symlink(env: &Env) -> Result<(), Failed> {
    let ws = env.workspace()?;
    let outside = env.secret_dir()?;
    let target = outside.path().join("created-by-launcher");
    let report = ws.path().join("report.json");
    let script = format!("ln -sf {} report.json", target.display());
    let out = run_report(env, &ws, &report, &script)?;
    out.expect_code(0, "run")?;
    if target.exists() || std::fs::symlink_metadata(&target).is_ok() {
        return Err(format!(
            "the launcher created {} through a dangling symlink",
            target.display()
        )
        .into());
    }
    expect_report(&report, "dangling symlink")
}

/// (c) a FIFO: the launcher does not block in open().
fn report_fifo(env: &Env) -> Result<(), Failed> {
    let ws = env.workspace()?;
    let report = ws.path().join("report.json");
    let out = run_report(env, &ws, &report, "rm -f report.json; mkfifo report.json")?;
    out.expect_code(0, "run")?;
    expect_report(&report, "fifo")
}

/// (d) a hard link to another file of the workspace: that file keeps its content.
fn report_hardlink(env: &Env) -> Result<(), Failed> {
    let ws = env.workspace()?;
    let report = ws.path().join("report.json");
    let out = run_report(
        env,
        &ws,
        &report,
        "echo precious > keep && ln -f keep report.json",
    )?;
    out.expect_code(0, "run")?;
    let keep = std::fs::read_to_string(ws.path().join("keep")).map_err(|e| e.to_string())?;
    if keep != "precious\n" {
        return Err(format!("the launcher wrote through the hard link: {keep:?}").into());
    }
    expect_report(&report, "hardlink")
}

/// (e) a directory symlink a previous run planted on the way: refused before the run, and
/// nothing lands where it points.
fn report_planted_directory_symlink(env: &Env) -> Result<(), Failed> {
    let ws = env.workspace()?;
    let outside = env.secret_dir()?;
    let planted = ws.path().join("out");
    // The previous run.
    let out = run_report(
        env,
        &ws,
        &ws.path().join("first.json"),
        &format!("ln -s {} out", outside.path().display()),
    )?;
    out.expect_code(0, "planting run")?;
    if !std::fs::symlink_metadata(&planted).is_ok_and(|m| m.file_type().is_symlink()) {
        return Err("the planting run left no symlink".into());
    }
    let out = run_report(env, &ws, &planted.join("report.json"), "true")?;
    out.expect_code(2, "run with the planted symlink on the report's path")?;
    if !out.stderr.contains("symlink") || !out.stderr.contains("sandbox can write") {
        return Err(format!("no reason given: {}", out.stderr).into());
    }
    if outside.path().join("report.json").exists() {
        return Err("the report landed through the planted symlink".into());
    }
    Ok(())
}

/// The report's directory fd (opened before the run) never reaches the command, in any
/// profile: no fd of the command points at the workspace directory.
fn report_dir_fd_not_inherited(env: &Env) -> Result<(), Failed> {
    for p in ["none", "ns-only", "full"] {
        let ws = env.workspace()?;
        let report = ws.path().join("report.json");
        let out = env.run(&[
            "run",
            "-q",
            "-p",
            p,
            "-w",
            ws.s(),
            "--json-report",
            report.to_str().ok_or("not UTF-8")?,
            "--",
            "sh",
            "-c",
            "for f in /proc/self/fd/*; do echo \"$f -> $(readlink $f)\"; done",
        ])?;
        out.expect_code(0, p)?;
        if out.stdout.lines().count() < 3 {
            return Err(format!("{p}: fds not listed: {}", out.stdout).into());
        }
        if let Some(l) = out
            .stdout
            .lines()
            .find(|l| l.ends_with(&format!("-> {}", ws.s())))
        {
            return Err(format!("{p}: the report's directory fd leaked: {l}").into());
        }
        expect_report(&report, p)?;
    }
    Ok(())
}

/// Before the run, only a regular file (or nothing) at the report's path is accepted: a
/// symlink such as /dev/stdout (replacing it would break the host's /dev), a device, a FIFO or
/// a symlink a previous run left in the workspace is refused with exit 2, and left as it is.
fn report_path_not_regular_refused(env: &Env) -> Result<(), Failed> {
    let ws = env.workspace()?;
    let left = ws.path().join("left.json");
    std::os::unix::fs::symlink("/etc/passwd", &left).map_err(|e| e.to_string())?;
    for (path, kind) in [
        (Path::new("/dev/stdout"), "a symlink"),
        (Path::new("/dev/null"), "a device"),
        (left.as_path(), "a symlink"),
    ] {
        let out = run_report(env, &ws, path, "true")?;
        out.expect_code(2, &path.display().to_string())?;
        if !out.stderr.contains(kind) || !out.stderr.contains("not a regular file") {
            return Err(format!("{}: no reason given: {}", path.display(), out.stderr).into());
        }
        let md = std::fs::symlink_metadata(path).map_err(|e| e.to_string())?;
        if md.file_type().is_file() {
            return Err(format!("{} was replaced", path.display()).into());
        }
    }
    Ok(())
}

fn main() {
    let args = Arguments::from_args();
    let tests: &[(&str, TestFn)] = &[
        (
            "report_symlink_to_outside_file",
            report_symlink_to_outside_file,
        ),
        ("report_dangling_symlink", report_dangling_symlink),
        ("report_fifo", report_fifo),
        ("report_hardlink", report_hardlink),
        (
            "report_planted_directory_symlink",
            report_planted_directory_symlink,
        ),
        ("report_dir_fd_not_inherited", report_dir_fd_not_inherited),
        (
            "report_path_not_regular_refused",
            report_path_not_regular_refused,
        ),
    ];
    common::run(&args, common::trials_for_both(tests))
}
