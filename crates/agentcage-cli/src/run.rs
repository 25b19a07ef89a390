//! `agentcage run`: flags -> Policy -> launcher -> exit code.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use agentcage::{Command, Error, ExtraBind, Layer, NetMode, Policy, Profile, SpawnOptions};
use clap::Args;

use crate::exit;

/// Flags of `agentcage run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Profile: none, ns-only (alias ns_only), landlock, full.
    #[arg(long, short = 'p', default_value = "full", value_parser = parse_profile)]
    pub profile: Profile,
    /// Workspace directory, bound read-write at its own path (default: the current directory).
    #[arg(long, short = 'w', value_name = "DIR")]
    pub workspace: Option<PathBuf>,
    /// Extra host path visible read-only at the same path (repeatable).
    #[arg(long, value_name = "PATH")]
    pub ro: Vec<PathBuf>,
    /// Extra host path visible read-write at the same path (repeatable).
    #[arg(long, value_name = "PATH")]
    pub rw: Vec<PathBuf>,
    /// Set an environment variable inside (repeatable).
    #[arg(long, short = 'e', value_name = "K=V", value_parser = parse_env)]
    pub env: Vec<(String, String)>,
    /// Pass a variable of the caller's environment through (repeatable).
    #[arg(long, value_name = "K")]
    pub pass_env: Vec<String>,
    /// uid inside the sandbox (default 0: root in the user namespace only).
    #[arg(long, default_value_t = 0)]
    pub uid: u32,
    /// gid inside the sandbox.
    #[arg(long, default_value_t = 0)]
    pub gid: u32,
    /// When run as root: the unprivileged host uid the inside maps to (never 0).
    #[arg(long, default_value_t = 65534)]
    pub host_uid: u32,
    /// When run as root: the unprivileged host gid the inside maps to (never 0).
    #[arg(long, default_value_t = 65534)]
    pub host_gid: u32,
    /// Pass inherited fd N to the command (repeatable; 0-2 are always passed).
    #[arg(long, value_name = "N")]
    pub keep_fd: Vec<i32>,
    /// Run even when a primitive of the profile cannot be enforced here (what is missing is
    /// printed).
    #[arg(long)]
    pub best_effort: bool,
    /// Network: none (own namespace, loopback only) or host (no network isolation).
    #[arg(long, default_value = "none", value_parser = parse_net)]
    pub net: NetMode,
    /// Keep the speculative-store-bypass mitigation for the sandbox (slower; see
    /// docs/SECURITY.md).
    #[arg(long)]
    pub seccomp_spec_mitigation: bool,
    /// Maximum number of processes and threads (cgroup pids.max; RLIMIT_NPROC as a floor).
    /// Default under full: 1024. `max` for none.
    #[arg(long, value_name = "N", value_parser = lim_pids)]
    pub pids: Option<Lim<u64>>,
    /// Memory limit, e.g. 512M, 4G (cgroup memory.max, swap included). Default under full:
    /// half of the RAM. `max` for none.
    #[arg(long, value_name = "SIZE", value_parser = lim_memory)]
    pub memory: Option<Lim<u64>>,
    /// CPU quota in CPUs, e.g. 1.5 (cgroup cpu.max). Default: none.
    #[arg(long, value_name = "F", value_parser = lim_cpus)]
    pub cpus: Option<Lim<f64>>,
    /// Kill the whole sandbox after this long (e.g. 30, 1.5s, 2m) and exit 124; SIGTERM
    /// first, SIGKILL after 2 s.
    #[arg(long, value_name = "DURATION", value_parser = lim_timeout)]
    pub timeout: Option<Lim<f64>>,
    /// RLIMIT_NOFILE. Default under full: 4096.
    #[arg(long, value_name = "N", value_parser = lim_nofile)]
    pub nofile: Option<Lim<u64>>,
    /// RLIMIT_FSIZE: largest file the sandbox may write, e.g. 1G.
    #[arg(long, value_name = "SIZE", value_parser = lim_fsize)]
    pub fsize: Option<Lim<u64>>,
    /// Write the outcome (exit, signal, timeout, oom, peak memory, wall and cpu time) as
    /// JSON to FILE.
    #[arg(long, value_name = "FILE")]
    pub json_report: Option<PathBuf>,
    /// Remove one layer from the profile (for attribution experiments; repeatable).
    #[arg(long, value_name = "LAYER", value_parser = parse_layer, hide = true)]
    pub without: Vec<Layer>,
    /// Do not give the command a pseudo-terminal even when stdin is a terminal (it then runs
    /// in a new session without any terminal).
    #[arg(long)]
    pub no_pty: bool,
    /// Print what is enforced and the setup timings on stderr.
    #[arg(long, short = 'v')]
    pub verbose: bool,
    /// Print nothing from the launcher except errors.
    #[arg(long, short = 'q', conflicts_with = "verbose")]
    pub quiet: bool,
    /// The command and its arguments.
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<OsString>,
}

/// A limit flag's value: `None` means explicitly unlimited (`max`).
#[derive(Debug, Clone, Copy)]
pub struct Lim<T>(pub Option<T>);

macro_rules! lim_parser {
    ($name:ident, $parse:ident, $t:ty) => {
        fn $name(s: &str) -> Result<Lim<$t>, String> {
            agentcage::units::$parse(s)
                .map(Lim)
                .map_err(|e| e.to_string())
        }
    };
}
lim_parser!(lim_pids, parse_pids, u64);
lim_parser!(lim_memory, parse_memory, u64);
lim_parser!(lim_cpus, parse_cpus, f64);
lim_parser!(lim_timeout, parse_timeout, f64);
lim_parser!(lim_nofile, parse_nofile, u64);
lim_parser!(lim_fsize, parse_fsize, u64);

fn parse_profile(s: &str) -> Result<Profile, String> {
    Profile::from_name(s)
        .ok_or_else(|| format!("unknown profile {s:?} (expected none, ns-only, landlock or full)"))
}

fn parse_layer(s: &str) -> Result<Layer, String> {
    Layer::from_name(s).ok_or_else(|| {
        let names: Vec<&str> = Layer::ALL.iter().map(|l| l.name()).collect();
        format!("unknown layer {s:?} (expected one of {})", names.join(", "))
    })
}

fn parse_net(s: &str) -> Result<NetMode, String> {
    match s {
        "none" => Ok(NetMode::None),
        "host" => Ok(NetMode::Host),
        _ => Err(format!(
            "unknown network mode {s:?} (expected none or host)"
        )),
    }
}

fn parse_env(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() && !k.contains('\0') && !v.contains('\0') => {
            Ok((k.to_string(), v.to_string()))
        }
        _ => Err(format!("expected K=V, got {s:?}")),
    }
}

fn canonical(p: &Path, what: &str) -> Result<PathBuf, String> {
    let abs = if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir()
            .map_err(|e| format!("current directory: {e}"))?
            .join(p)
    };
    abs.canonicalize()
        .map_err(|e| format!("{what} {}: {e}", p.display()))
}

/// Builds the policy from the flags.
pub fn policy_from_args(a: &RunArgs) -> Result<Policy, String> {
    let ws = match &a.workspace {
        Some(w) => canonical(w, "workspace")?,
        None => canonical(Path::new("."), "workspace (current directory)")?,
    };
    let mut p = Policy::for_profile(a.profile, ws);
    for l in &a.without {
        p.layers = p.layers.without(*l);
    }
    for (paths, writable) in [(&a.ro, false), (&a.rw, true)] {
        for path in paths {
            p.binds.push(ExtraBind {
                path: canonical(path, if writable { "--rw" } else { "--ro" })?,
                writable,
            });
        }
    }
    p.env = a.env.clone();
    p.pass_env = a.pass_env.clone();
    p.uid = a.uid;
    p.gid = a.gid;
    p.host_uid = a.host_uid;
    p.host_gid = a.host_gid;
    p.keep_fds = a.keep_fd.clone();
    p.best_effort = a.best_effort;
    p.net = a.net;
    p.seccomp.spec_mitigation = a.seccomp_spec_mitigation;
    // Limits apply under full by default and under any profile on request.
    let any_limit = a.pids.is_some()
        || a.memory.is_some()
        || a.cpus.is_some()
        || a.timeout.is_some()
        || a.nofile.is_some()
        || a.fsize.is_some();
    if any_limit && !a.without.contains(&Layer::Limits) {
        p.layers = p.layers.with(Layer::Limits);
        if a.profile != Profile::Full {
            p.limits.no_core = true;
        }
    }
    if let Some(Lim(v)) = a.pids {
        p.limits.pids = v;
    }
    if let Some(Lim(v)) = a.memory {
        p.limits.memory = v;
    }
    if let Some(Lim(v)) = a.cpus {
        p.limits.cpus = v;
    }
    if let Some(Lim(v)) = a.timeout {
        p.limits.timeout = v;
    }
    if let Some(Lim(v)) = a.nofile {
        p.limits.nofile = v;
    }
    if let Some(Lim(v)) = a.fsize {
        p.limits.fsize = v;
    }
    Ok(p)
}

fn eprint_error(e: &Error) {
    let mut msg = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        src = s.source();
    }
    eprintln!("agentcage: error: {msg}");
    if let Some(h) = e.hint() {
        eprintln!("agentcage: hint: {h}");
    }
}

/// Runs `agentcage run`; returns the exit code.
pub fn main(a: RunArgs) -> i32 {
    let policy = match policy_from_args(&a) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("agentcage: error: {e}");
            return exit::USAGE;
        }
    };
    if policy.net == NetMode::Host && !a.quiet {
        eprintln!("agentcage: warning: --net host: the sandbox shares the host's network (network isolation is OFF)");
    }
    let self_exe = std::env::current_exe()
        .ok()
        .and_then(|p| p.canonicalize().ok());
    let cmd = Command {
        argv: a.command.clone(),
        self_exe: if policy.layers.has(Layer::MountNs) {
            self_exe
        } else {
            None
        },
    };
    let t0 = std::time::Instant::now();
    let prepared = match agentcage::prepare(&policy, &cmd) {
        Ok(p) => p,
        Err(e) => {
            eprint_error(&e);
            return e.exit_code();
        }
    };
    let prep_time = t0.elapsed();
    if a.verbose {
        eprintln!(
            "agentcage: profile {} layers [{}]",
            policy.profile,
            policy
                .layers
                .iter()
                .map(|l| l.name())
                .collect::<Vec<_>>()
                .join(" ")
        );
        for (what, how) in &prepared.enforcement {
            eprintln!("agentcage: {what}: {how}");
        }
    }
    let verbose = a.verbose;
    let opts = SpawnOptions {
        forward_signals: true,
        pty: !a.no_pty,
        on_enforcement: verbose.then(|| {
            Box::new(|what: &str, how: &str| eprintln!("agentcage: {what}: {how}"))
                as Box<dyn Fn(&str, &str)>
        }),
    };
    let wall = std::time::Instant::now();
    let result = prepared.run(&opts);
    let wall = wall.elapsed();
    if let Some(path) = &a.json_report {
        if let Err(e) = write_report(path, &policy, &result, wall) {
            eprintln!(
                "agentcage: error: write the JSON report {}: {e}",
                path.display()
            );
        }
    }
    match result {
        Ok(out) => {
            if verbose {
                let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
                eprintln!(
                    "agentcage: timings: prepare {:.3} ms, clone {:.3} ms, released {:.3} ms, exec {:.3} ms, exit {:.3} ms; {}",
                    ms(prep_time),
                    ms(out.timings.clone),
                    ms(out.timings.released),
                    ms(out.timings.exec),
                    ms(out.timings.exit),
                    match out.exit {
                        agentcage::Exit::Code(c) => format!("exited {c}"),
                        agentcage::Exit::Signal(s) => format!("killed by signal {s}"),
                    }
                );
            }
            if out.timed_out {
                if !a.quiet {
                    eprintln!(
                        "agentcage: timeout: the sandbox was killed after {}",
                        agentcage::units::format_duration(std::time::Duration::from_secs_f64(
                            policy.limits.timeout.unwrap_or(0.0)
                        ))
                    );
                }
                return exit::TIMEOUT;
            }
            if out.oom {
                eprintln!(
                    "agentcage: out of memory (limit {})",
                    agentcage::units::format_size_limit(policy.limits.memory)
                );
                return 137;
            }
            out.exit.code()
        }
        Err(e) => {
            eprint_error(&e);
            e.exit_code()
        }
    }
}

/// The `--json-report` document.
fn write_report(
    path: &Path,
    policy: &Policy,
    result: &Result<agentcage::RunOutcome, Error>,
    wall: std::time::Duration,
) -> std::io::Result<()> {
    let v = match result {
        Ok(o) => serde_json::json!({
            "profile": policy.profile.name(),
            "exit_code": match o.exit { agentcage::Exit::Code(c) => Some(c), _ => None },
            "signal": match o.exit { agentcage::Exit::Signal(s) => Some(s), _ => None },
            "status": if o.timed_out { exit::TIMEOUT } else if o.oom { 137 } else { o.exit.code() },
            "timeout": o.timed_out,
            "oom": o.oom,
            "peak_memory_bytes": o.peak_memory,
            "max_rss_kib": o.max_rss_kib,
            "wall_seconds": wall.as_secs_f64(),
            "cpu_seconds": o.cpu.as_secs_f64(),
            "limits": o.limits.iter().map(|(k, v)| serde_json::json!({"limit": k, "enforced_by": v})).collect::<Vec<_>>(),
            "setup_error": null,
        }),
        Err(e) => serde_json::json!({
            "profile": policy.profile.name(),
            "exit_code": null,
            "signal": null,
            "status": e.exit_code(),
            "timeout": false,
            "oom": false,
            "peak_memory_bytes": null,
            "wall_seconds": wall.as_secs_f64(),
            "cpu_seconds": null,
            "setup_error": e.to_string(),
        }),
    };
    std::fs::write(path, serde_json::to_vec_pretty(&v).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_parsing() {
        assert_eq!(parse_env("A=b=c"), Ok(("A".into(), "b=c".into())));
        assert!(parse_env("=x").is_err());
        assert!(parse_env("novalue").is_err());
    }

    #[test]
    fn profile_aliases() {
        assert_eq!(parse_profile("ns_only"), Ok(Profile::NsOnly));
        assert!(parse_profile("fullest").is_err());
    }
}
