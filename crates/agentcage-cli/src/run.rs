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
    /// Remove one layer from the profile (for attribution experiments; repeatable).
    #[arg(long, value_name = "LAYER", value_parser = parse_layer, hide = true)]
    pub without: Vec<Layer>,
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

fn parse_profile(s: &str) -> Result<Profile, String> {
    Profile::from_name(s).ok_or_else(|| format!("unknown profile {s:?} (expected none, ns-only, landlock or full)"))
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
        _ => Err(format!("unknown network mode {s:?} (expected none or host)")),
    }
}

fn parse_env(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() && !k.contains('\0') && !v.contains('\0') => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("expected K=V, got {s:?}")),
    }
}

fn canonical(p: &Path, what: &str) -> Result<PathBuf, String> {
    let abs = if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir().map_err(|e| format!("current directory: {e}"))?.join(p)
    };
    abs.canonicalize().map_err(|e| format!("{what} {}: {e}", p.display()))
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
            p.binds.push(ExtraBind { path: canonical(path, if writable { "--rw" } else { "--ro" })?, writable });
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
    let self_exe = std::env::current_exe().ok().and_then(|p| p.canonicalize().ok());
    let cmd = Command { argv: a.command.clone(), self_exe: if policy.layers.has(Layer::MountNs) { self_exe } else { None } };
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
        eprintln!("agentcage: profile {} layers [{}]", policy.profile, policy.layers.iter().map(|l| l.name()).collect::<Vec<_>>().join(" "));
        for (what, how) in &prepared.enforcement {
            eprintln!("agentcage: {what}: {how}");
        }
    }
    match prepared.run(&SpawnOptions { forward_signals: true }) {
        Ok(out) => {
            if a.verbose {
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
            out.exit.code()
        }
        Err(e) => {
            eprint_error(&e);
            e.exit_code()
        }
    }
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
