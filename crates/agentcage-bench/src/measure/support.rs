//! What the phases call: the baselines, the static `true`, one contender's preflight, the
//! in-sandbox phase and its runs, orphan reaping and peak RSS, the breakdowns, the host.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::Context;

use super::parts::{Progress, Reaper};
use super::Settings;
use crate::elf;
use crate::files::DepthFile;
use crate::inner::{InnerOp, InnerReport};
use crate::plan::{self, Contender, Launcher, Paths, Profile};
use crate::report::{BaselineRow, Breakdown, DepthCost, Host, ProfileRow, Report};
use crate::stats::{Rng, Summary};
use crate::sys;

/// The launcher a baseline row is about (`exec`, `bwrap`, `unshare`).
pub(super) fn baseline_launcher(name: &str) -> Launcher {
    match name {
        "bwrap" => Launcher::Bwrap,
        "unshare" => Launcher::Unshare,
        "full+egress" => Launcher::FullEgress,
        "full-nolimits" => Launcher::FullNoLimits,
        _ => Launcher::Exec,
    }
}

pub(super) fn baseline(name: &str, version: Option<String>) -> BaselineRow {
    BaselineRow {
        name: name.into(),
        version,
        error: None,
        startup: None,
        startup_bin_true: None,
        launches_per_s: None,
        throughput_failures: 0,
        peak_rss_kib: None,
    }
}

/// Puts the static `true` into `dir` (the built-in image, or a copy of `--true`).
pub(super) fn setup_static_true(
    s: &Settings,
    dir: &Path,
    notes: &mut Vec<String>,
) -> anyhow::Result<Option<PathBuf>> {
    let path = dir.join("true");
    match &s.true_override {
        Some(src) => {
            // Copied into the workspace: the sandbox sees only /usr, the workspace and /tmp.
            fs::copy(src, &path).with_context(|| format!("copy --true {}", src.display()))?;
            fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755))
                .with_context(|| format!("chmod {}", path.display()))?;
            Ok(Some(path))
        }
        None if elf::native() => {
            elf::write_executable(&path, &elf::static_true())
                .with_context(|| format!("write {}", path.display()))?;
            Ok(Some(path))
        }
        None => {
            notes.push(format!(
                "the built-in static true is x86_64 code and this host is {}; pass --true PATH",
                std::env::consts::ARCH
            ));
            Ok(None)
        }
    }
}

/// Runs `c` once with stderr captured; `Err` carries the exit code and stderr's tail.
pub(super) fn preflight_one(c: Contender, paths: &Paths) -> Result<(), String> {
    let argv = plan::argv(c, paths).ok_or_else(|| "not available".to_string())?;
    let mut attempt = 0;
    let out = loop {
        match Command::new(&argv[0])
            .args(&argv[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
        {
            // A file just written can be busy for a moment if another thread of this process
            // forked while it was open for writing.
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) && attempt < 50 => {
                attempt += 1;
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => return Err(format!("cannot start {}: {e}", argv[0].to_string_lossy())),
            Ok(out) => break out,
        }
    };
    if out.status.success() {
        return Ok(());
    }
    Err(format!(
        "exit {}: {}",
        exit_text(&out.status),
        tail(&out.stderr)
    ))
}

pub(super) fn exit_text(status: &std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => c.to_string(),
        (None, Some(sig)) => format!("signal {sig}"),
        _ => "unknown".into(),
    }
}

/// The last few lines of a captured stream, trimmed, on one line.
pub(super) fn tail(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let start = lines.len().saturating_sub(3);
    let t = lines[start..].join(" | ");
    if t.is_empty() {
        "(no output)".into()
    } else {
        t.chars().take(400).collect()
    }
}

/// Runs the getpid/open/stat loops under every measured profile.
pub(super) fn inner_phase(
    s: &Settings,
    paths: &Paths,
    files: &[DepthFile],
    profiles: &[Profile],
    rows: &mut [ProfileRow],
    rng: &mut Rng,
    progress: &mut Progress,
) {
    let mut ops = vec![InnerOp::Getpid];
    if !files.is_empty() {
        ops.extend([InnerOp::Open, InnerOp::Stat]);
    }
    let mut tasks: Vec<(Profile, InnerOp)> = profiles
        .iter()
        .flat_map(|&p| ops.iter().map(move |&o| (p, o)))
        .collect();
    let mut getpid: HashMap<Profile, Vec<f64>> = HashMap::new();
    // (profile, op) -> per-file samples, in `files` order.
    let mut per_file: HashMap<(Profile, InnerOp), Vec<Vec<f64>>> = HashMap::new();
    let mut errors: HashMap<Profile, Vec<String>> = HashMap::new();
    for round in 0..s.sizes.inner_rounds {
        progress.tick("in-sandbox round", round, s.sizes.inner_rounds);
        rng.shuffle(&mut tasks);
        for &(p, op) in &tasks {
            if errors
                .get(&p)
                .is_some_and(|e| e.iter().any(|x| x.starts_with(op.name())))
            {
                continue;
            }
            let mut args: Vec<OsString> = vec![
                "--batches".into(),
                s.sizes.batches.to_string().into(),
                op.name().into(),
            ];
            match op {
                InnerOp::Getpid => args.push(s.sizes.getpid_iterations.to_string().into()),
                InnerOp::Open | InnerOp::Stat => {
                    args.push(s.sizes.file_iterations.to_string().into());
                    args.extend(files.iter().map(|f| f.path.clone().into_os_string()));
                }
            }
            let argv = plan::inner_argv(paths, p, &args);
            match run_inner(&argv) {
                Ok(r) => match op {
                    InnerOp::Getpid => getpid
                        .entry(p)
                        .or_default()
                        .extend(r.results.iter().flat_map(|x| x.ns_per_op.iter().copied())),
                    _ => {
                        let slots = per_file
                            .entry((p, op))
                            .or_insert_with(|| vec![Vec::new(); files.len()]);
                        for (slot, res) in slots.iter_mut().zip(&r.results) {
                            slot.extend(res.ns_per_op.iter().copied());
                        }
                    }
                },
                Err(e) => errors
                    .entry(p)
                    .or_default()
                    .push(format!("{}: {e}", op.name())),
            }
        }
    }
    progress.done();
    for r in rows.iter_mut() {
        r.ns_per_syscall = getpid.get(&r.profile).and_then(|v| Summary::of(v));
        for op in [InnerOp::Open, InnerOp::Stat] {
            let Some(samples) = per_file.get(&(r.profile, op)) else {
                continue;
            };
            let costs: Vec<DepthCost> = files
                .iter()
                .zip(samples)
                .filter_map(|(f, v)| Summary::of(v).map(|ns| DepthCost { depth: f.depth, ns }))
                .collect();
            let mean = (costs.len() == files.len() && !costs.is_empty())
                .then(|| costs.iter().map(|c| c.ns.median).sum::<f64>() / costs.len() as f64);
            match op {
                InnerOp::Open => {
                    r.open_by_depth = costs;
                    r.open_ns = mean;
                }
                _ => {
                    r.stat_by_depth = costs;
                    r.stat_ns = mean;
                }
            }
        }
        r.inner_errors = errors.remove(&r.profile).unwrap_or_default();
    }
}

/// Runs one `bench-inner` command and parses its JSON.
pub(super) fn run_inner(argv: &[OsString]) -> Result<InnerReport, String> {
    let out = Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("cannot start {}: {e}", argv[0].to_string_lossy()))?;
    if !out.status.success() {
        return Err(format!(
            "`{}` exited {}: {}",
            plan::shell_words(argv),
            exit_text(&out.status),
            tail(&out.stderr)
        ));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .unwrap_or("");
    serde_json::from_str(line)
        .map_err(|e| format!("bad bench-inner output ({e}): {}", tail(&out.stdout)))
}

/// Final leak check: reaps orphans that exited, then kills and counts those still running.
/// Only sound when every child of this process is the bench's (the CLI subcommand).
pub(super) fn reap_orphans(reaper: &mut Reaper, notes: &mut Vec<String>) -> u32 {
    // Give a process that was just orphaned time to exit on its own.
    std::thread::sleep(Duration::from_millis(50));
    reaper.reap();
    let me = sys::own_pid();
    let mut leaked = 0u32;
    let mut seen: Vec<libc::pid_t> = Vec::new();
    // Every direct child was already waited for, so live children are leaks.
    for _ in 0..100 {
        let live = children_of(me);
        if live.is_empty() {
            break;
        }
        for pid in live {
            if !seen.contains(&pid) {
                leaked += 1;
                seen.push(pid);
                notes.push(format!("leaked process {pid} ({}), killed", comm_of(pid)));
            }
            let _ = sys::kill9(pid);
            let _ = sys::wait(pid, 0);
        }
    }
    leaked
}

/// Runs `argv` under the rss-probe once; its peak RSS in KiB if it exited 0.
pub(super) fn peak_rss_once(probe: &Path, argv: &[OsString]) -> Option<i64> {
    let out = Command::new(probe)
        .args(argv)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() || out.stdout.len() < 8 {
        return None;
    }
    let tail: [u8; 8] = out.stdout[out.stdout.len() - 8..].try_into().ok()?;
    i64::try_from(u64::from_le_bytes(tail)).ok()
}

/// Pids whose parent is `ppid`, from /proc.
pub(super) fn children_of(ppid: libc::pid_t) -> Vec<libc::pid_t> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<libc::pid_t>().ok())
        .filter(|&pid| {
            fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| parse_ppid(&s))
                == Some(ppid)
        })
        .collect()
}

/// The ppid field of a /proc/PID/stat line (after the parenthesised comm, which may contain
/// spaces and parentheses).
pub(super) fn parse_ppid(stat: &str) -> Option<libc::pid_t> {
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

pub(super) fn comm_of(pid: libc::pid_t) -> String {
    fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "?".into())
}

/// For each profile in a missed start-up target: `agentcage run -v` output (phase timestamps).
pub(super) fn breakdowns(report: &Report, paths: &Paths) -> Vec<Breakdown> {
    let Some(truth) = paths
        .static_true
        .clone()
        .or_else(|| Some(paths.bin_true.clone()))
    else {
        return Vec::new();
    };
    [Profile::NsOnly, Profile::Landlock, Profile::Full]
        .into_iter()
        .filter(|&p| {
            report.startup_target_missed(p) && report.profile(p).is_some_and(|r| r.error.is_none())
        })
        .map(|p| {
            let mut argv = plan::agentcage_run(paths, p);
            argv[2] = "-v".into(); // the breakdown wants the -v lines, not -q
            argv.push(truth.clone().into_os_string());
            // Three runs; the last is warm.
            let mut stderr = String::new();
            for _ in 0..3 {
                stderr = match Command::new(&argv[0])
                    .args(&argv[1..])
                    .stdin(Stdio::null())
                    .output()
                {
                    Ok(o) => {
                        let mut s = String::from_utf8_lossy(&o.stderr).into_owned();
                        if !o.status.success() {
                            s.push_str(&format!("\n(exit {})", exit_text(&o.status)));
                        }
                        s
                    }
                    Err(e) => format!("cannot start: {e}"),
                };
            }
            if stderr.len() > 4000 {
                let mut cut = 4000;
                while !stderr.is_char_boundary(cut) {
                    cut -= 1;
                }
                stderr.truncate(cut);
                stderr.push_str("\n[truncated]");
            }
            Breakdown {
                profile: p,
                command: plan::shell_words(&argv),
                stderr,
            }
        })
        .collect()
}

/// Kernel, CPU and start time.
pub(super) fn host_info() -> Host {
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.trim() == "model name").then(|| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let hypervisor = cpuinfo
        .lines()
        .find(|l| l.starts_with("flags"))
        .is_some_and(|l| l.split_whitespace().any(|f| f == "hypervisor"));
    Host {
        kernel: fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "unknown".into()),
        arch: std::env::consts::ARCH.into(),
        cpu,
        cpus: std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        hypervisor,
        uid: sys::euid(),
        started_at: rfc3339_now(),
    }
}

/// Current UTC time as `YYYY-MM-DDTHH:MM:SSZ`.
pub(super) fn rfc3339_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    agentcage_egress::rfc3339(secs, None)
}
