//! `agentcage bench-inner`: the part of the bench that runs inside the sandbox.
//!
//! The outer bench starts `agentcage run --profile P -- <agentcage> bench-inner OP N [PATH]...`
//! (inside namespaced profiles the binary is at `/run/agentcage/agentcage`). This side times
//! `N` iterations of one operation with `CLOCK_MONOTONIC` (`std::time::Instant`, read through
//! the vDSO, so the clock itself adds no system call) and prints one JSON object on stdout:
//!
//! ```json
//! {"op":"open","iterations":20000,"batches":5,
//!  "results":[{"path":"/usr/bin/ls","ns_per_op":[812.1,809.7,815.0,811.2,810.4]}]}
//! ```
//!
//! - `getpid`: the raw system call (glibc no longer caches the pid, and we call `syscall(2)`
//!   directly anyway), so the number is the kernel's entry/exit cost plus any seccomp filter.
//! - `open`: `open(O_RDONLY|O_CLOEXEC)` + `close` of each path: the path walk, where Landlock
//!   adds its per-component checks.
//! - `stat`: `stat` of each path: a path walk that Landlock does not check.
//!
//! Each batch times every path in turn, so per-path numbers are interleaved too. Any failing
//! operation aborts the run: a loop of `ENOENT`s would time the wrong thing.

use std::ffi::CString;
use std::hint::black_box;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

use crate::sys;

/// Operations `bench-inner` can time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum InnerOp {
    /// `getpid(2)` via `syscall(2)`.
    Getpid,
    /// `open(2)` read-only, then `close(2)`.
    Open,
    /// `stat(2)`.
    Stat,
}

impl InnerOp {
    /// The spelling on the command line and in JSON.
    pub fn name(self) -> &'static str {
        match self {
            InnerOp::Getpid => "getpid",
            InnerOp::Open => "open",
            InnerOp::Stat => "stat",
        }
    }
}

/// Arguments of the hidden `agentcage bench-inner` subcommand.
#[derive(Debug, Clone, clap::Args)]
pub struct InnerArgs {
    /// Operation to time.
    #[arg(value_enum)]
    pub op: InnerOp,
    /// Iterations per batch (per path for `open` and `stat`).
    #[arg(value_parser = clap::value_parser!(u64).range(1..))]
    pub iterations: u64,
    /// Existing files to `open` or `stat` (none for `getpid`).
    pub paths: Vec<PathBuf>,
    /// Number of timed batches; each yields one ns-per-op sample per path.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    pub batches: u32,
}

/// One timed target (a path, or none for `getpid`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InnerResult {
    /// The file operated on.
    pub path: Option<PathBuf>,
    /// Nanoseconds per operation, one value per batch.
    pub ns_per_op: Vec<f64>,
}

/// What `bench-inner` prints (one line of JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InnerReport {
    /// The operation.
    pub op: InnerOp,
    /// Iterations per batch and path.
    pub iterations: u64,
    /// Number of batches.
    pub batches: u32,
    /// One entry per path (a single entry without a path for `getpid`).
    pub results: Vec<InnerResult>,
}

/// Runs the loops and prints the JSON report on stdout. Returns exit code 0.
///
/// # Errors
/// Invalid arguments (zero iterations, paths with `getpid`, no paths with `open`/`stat`) or a
/// failing operation (the error names the path and errno).
pub fn inner(args: &InnerArgs) -> anyhow::Result<i32> {
    let report = measure(args)?;
    println!("{}", serde_json::to_string(&report)?);
    Ok(0)
}

/// Runs the loops of `args` and returns the report.
///
/// # Errors
/// See [`inner`].
pub fn measure(args: &InnerArgs) -> anyhow::Result<InnerReport> {
    if args.iterations == 0 || args.batches == 0 {
        bail!("bench-inner: iterations and --batches must be at least 1");
    }
    let results = match args.op {
        InnerOp::Getpid => {
            if !args.paths.is_empty() {
                bail!("bench-inner getpid takes no paths");
            }
            let samples = (0..args.batches)
                .map(|_| time_getpid(args.iterations))
                .collect();
            vec![InnerResult {
                path: None,
                ns_per_op: samples,
            }]
        }
        InnerOp::Open | InnerOp::Stat => {
            if args.paths.is_empty() {
                bail!("bench-inner {} needs at least one path", args.op.name());
            }
            let cpaths = args
                .paths
                .iter()
                .map(|p| {
                    CString::new(p.as_os_str().as_bytes())
                        .with_context(|| format!("path {} contains a NUL byte", p.display()))
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            let op: fn(&std::ffi::CStr) -> std::io::Result<()> = match args.op {
                InnerOp::Open => sys::open_close,
                _ => sys::stat,
            };
            let mut samples = vec![Vec::with_capacity(args.batches as usize); cpaths.len()];
            for _ in 0..args.batches {
                for (i, path) in cpaths.iter().enumerate() {
                    let ns = time_path_op(op, path, args.iterations).with_context(|| {
                        format!("{} {}", args.op.name(), args.paths[i].display())
                    })?;
                    samples[i].push(ns);
                }
            }
            args.paths
                .iter()
                .zip(samples)
                .map(|(p, ns)| InnerResult {
                    path: Some(p.clone()),
                    ns_per_op: ns,
                })
                .collect()
        }
    };
    Ok(InnerReport {
        op: args.op,
        iterations: args.iterations,
        batches: args.batches,
        results,
    })
}

fn time_getpid(iterations: u64) -> f64 {
    let start = Instant::now();
    for _ in 0..iterations {
        black_box(sys::getpid_syscall());
    }
    start.elapsed().as_nanos() as f64 / iterations as f64
}

fn time_path_op(
    op: fn(&std::ffi::CStr) -> std::io::Result<()>,
    path: &std::ffi::CStr,
    iterations: u64,
) -> std::io::Result<f64> {
    // One untimed call: fails fast on a missing file and warms the dentry cache.
    op(path)?;
    let start = Instant::now();
    for _ in 0..iterations {
        op(black_box(path))?;
    }
    Ok(start.elapsed().as_nanos() as f64 / iterations as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        inner: InnerArgs,
    }

    fn parse(args: &[&str]) -> InnerArgs {
        Cli::try_parse_from(std::iter::once("bench-inner").chain(args.iter().copied()))
            .expect("parse")
            .inner
    }

    #[test]
    fn getpid_report_is_plausible() {
        let r = measure(&parse(&["getpid", "2000", "--batches", "3"])).expect("measure");
        assert_eq!(r.results.len(), 1);
        assert_eq!(r.results[0].path, None);
        assert_eq!(r.results[0].ns_per_op.len(), 3);
        assert!(r.results[0]
            .ns_per_op
            .iter()
            .all(|x| x.is_finite() && *x > 0.0));
    }

    #[test]
    fn open_and_stat_report_one_series_per_path() {
        let exe = std::env::current_exe().expect("current exe");
        let exe = exe.to_str().expect("utf-8 path");
        for op in ["open", "stat"] {
            let r = measure(&parse(&[op, "50", exe, "/", "--batches", "2"])).expect("measure");
            assert_eq!(r.results.len(), 2);
            assert!(r.results.iter().all(|x| x.ns_per_op.len() == 2));
            assert_eq!(
                r.results[1].path.as_deref(),
                Some(std::path::Path::new("/"))
            );
        }
    }

    #[test]
    fn bad_arguments_are_errors() {
        assert!(Cli::try_parse_from(["x", "getpid", "0"]).is_err());
        assert!(Cli::try_parse_from(["x", "--batches", "0", "getpid", "5"]).is_err());
        let zero = InnerArgs {
            op: InnerOp::Getpid,
            iterations: 0,
            paths: vec![],
            batches: 1,
        };
        assert!(measure(&zero).is_err());
        assert!(measure(&parse(&["getpid", "10", "/"])).is_err());
        assert!(measure(&parse(&["open", "10"])).is_err());
        let e = measure(&parse(&["stat", "10", "/nonexistent/agentcage-bench"])).unwrap_err();
        assert!(
            format!("{e:#}").contains("/nonexistent/agentcage-bench"),
            "{e:#}"
        );
        assert!(Cli::try_parse_from(["x", "fork", "10"]).is_err());
    }

    #[test]
    fn report_round_trips_through_json() {
        let r = measure(&parse(&["getpid", "10", "--batches", "1"])).expect("measure");
        let text = serde_json::to_string(&r).expect("serialize");
        assert!(
            text.starts_with(r#"{"op":"getpid","iterations":10,"batches":1,"#),
            "{text}"
        );
        let back: InnerReport = serde_json::from_str(&text).expect("parse");
        assert_eq!(back, r);
    }
}
