//! `agentcage bench`: what the sandbox costs, per profile, next to its peers and the floor.
//!
//! Measured for every profile (`none`, `ns-only`, `landlock`, `full`):
//!
//! - **start-up**: launch to exit of `agentcage run --profile P -- <true>`, for the bench's
//!   static libc-free `true` ([`elf`]) and for `/bin/true`; median and p95 over interleaved,
//!   shuffled rounds after a warm-up; ratios to `none` and to a plain exec of the same `true`;
//! - **per-syscall cost**: a `getpid` loop inside the sandbox (`agentcage bench-inner`, see
//!   [`inner`](mod@inner)), ns per call, and its delta over `none` (the seccomp filter's share);
//! - **file cost**: `open`+`close` and `stat` of files under `/usr` at depths 3 to 6, ns per op;
//! - **launch throughput**: N sandboxes at concurrency C, launches per second; every run must
//!   exit 0 and nothing may be left behind;
//! - **launcher peak RSS**: `ru_maxrss` of the `agentcage run` process, read by a tiny static
//!   `rss-probe` that starts it ([`elf`] explains why the bench cannot read it directly).
//!
//! `--compare` adds bwrap with the same namespaces and `unshare -Urnmpif`, interleaved in the
//! same rounds. The output is the reference design's table plus the new columns, the baselines,
//! and the overhead target checks of [`report`] (start-up and syscall ratios, throughput, clean
//! runs, peak RSS); `--json` prints the same data as JSON, `--format html` as one
//! self-contained page of inline SVG charts, and `--from-json FILE` renders a saved report
//! again without measuring.
//!
//! The bench drives the `agentcage` binary as a black box (`--agentcage PATH`, default the
//! running executable) rather than calling the library, so it measures exactly what users run,
//! including the binary's own start-up.

pub mod elf;
pub mod files;
pub mod inner;
pub mod measure;
pub mod overlay;
pub mod plan;
pub mod report;
pub mod sessions;
pub mod stats;
mod sys;
mod tempdir;

use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Context};

pub use inner::{inner, InnerArgs, InnerOp, InnerReport};
pub use plan::Profile;
pub use report::Report;

/// Output formats of `agentcage bench`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Format {
    /// The table, the baselines and the targets.
    #[default]
    Text,
    /// The same data as JSON (as `--json`).
    Json,
    /// One self-contained HTML page (no network, no external assets): inline SVG charts of
    /// start-up per profile beside the peers, per-syscall and file costs, throughput, RSS.
    Html,
}

/// Arguments of `agentcage bench`.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// A few-second run: 15 rounds, short loops, 100 launches per contender.
    #[arg(long)]
    pub quick: bool,
    /// Print the report as JSON on stdout instead of the table (`--format json`).
    #[arg(long)]
    pub json: bool,
    /// Output format [default: text].
    #[arg(long, value_enum, conflicts_with = "json")]
    pub format: Option<Format>,
    /// Measure nothing: render a report saved with `--json` (`-` reads stdin), e.g. as an
    /// HTML page.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["sessions", "overlay", "compare", "quick", "rounds", "launches", "agentcage"])]
    pub from_json: Option<PathBuf>,
    /// Also measure bwrap (same namespaces) and `unshare -Urnmpif` when installed,
    /// interleaved in the same rounds.
    #[arg(long)]
    pub compare: bool,
    /// Start-up rounds; each runs every contender once, in shuffled order [default: 300, 15
    /// with --quick].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub rounds: Option<u32>,
    /// Profiles to measure, comma-separated.
    #[arg(
        long,
        value_name = "LIST",
        value_delimiter = ',',
        value_parser = plan::parse_profile,
        default_value = "none,ns-only,landlock,full"
    )]
    pub profiles: Vec<Profile>,
    /// The agentcage binary to launch [default: this executable].
    #[arg(long, value_name = "PATH")]
    pub agentcage: Option<PathBuf>,
    /// A static `true` to use instead of the built-in x86_64 one (copied into the workspace).
    #[arg(long = "true", value_name = "PATH")]
    pub true_path: Option<PathBuf>,
    /// Launches per contender in the throughput run; 0 skips it [default: 1000, 100 with
    /// --quick].
    #[arg(long, value_name = "N")]
    pub launches: Option<u32>,
    /// Sandboxes in flight during the throughput run.
    #[arg(long, value_name = "C", default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub concurrency: u32,
    /// Seed of the round shuffles [default: from the clock].
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,
    /// Measure sessions instead (issue #13, docs/SESSIONS.md): `agentcage exec` against
    /// `agentcage run`, a protocol exec against a plain fork+exec, 1000 sequential and 50
    /// concurrent execs; rounds default to 100 (15 with --quick).
    #[arg(long)]
    pub sessions: bool,
    /// Measure the overlay workspace instead (issue #16, docs/OVERLAY.md): on 50,000 files
    /// with 20 changes, `diff --stat` and `commit` against `git status`, and a run's start-up
    /// with `--overlay` against without; rounds default to 30 (5 with --quick).
    #[arg(long, conflicts_with = "sessions")]
    pub overlay: bool,
}

impl BenchArgs {
    /// Resolves defaults into [`measure::Settings`].
    ///
    /// # Errors
    /// No profile given, or the current executable cannot be determined.
    pub fn settings(&self) -> anyhow::Result<measure::Settings> {
        let mut profiles = self.profiles.clone();
        profiles.sort();
        profiles.dedup();
        if profiles.is_empty() {
            bail!("--profiles: give at least one of none, ns-only, landlock, full");
        }
        let agentcage = match &self.agentcage {
            Some(p) => p.clone(),
            None => std::env::current_exe().context("locate the agentcage executable")?,
        };
        let q = self.quick;
        Ok(measure::Settings {
            sizes: report::Sizes {
                quick: q,
                compare: self.compare,
                rounds: self.rounds.unwrap_or(if q { 15 } else { 300 }),
                warmup: if q { 3 } else { 20 },
                inner_rounds: if q { 2 } else { 8 },
                getpid_iterations: if q { 20_000 } else { 100_000 },
                file_iterations: if q { 1_000 } else { 5_000 },
                batches: if q { 3 } else { 5 },
                launches: self.launches.unwrap_or(if q { 100 } else { 1000 }),
                concurrency: self.concurrency,
                seed: self
                    .seed
                    .unwrap_or_else(|| stats::Rng::from_entropy().next_u64()),
            },
            profiles,
            agentcage,
            true_override: self.true_path.clone(),
            progress: true,
            own_children: true,
        })
    }
}

/// Runs `agentcage bench` and prints the report (table or JSON) on stdout; progress goes to
/// stderr.
///
/// The bench makes this process a child subreaper and waits for leftover children at the end,
/// so call it from a process whose children are all the bench's (the CLI subcommand).
///
/// Exit code: 0 when every requested profile ran; 1 when some profile could not run here (the
/// report says why). Missed targets do not change the exit code: timings are data, not a test.
///
/// # Errors
/// Setup fails (temp dir, agentcage binary missing, plain exec of `true` failing) or the
/// report cannot be written.
pub fn run(args: &BenchArgs) -> anyhow::Result<i32> {
    let format = if args.json {
        Format::Json
    } else {
        args.format.unwrap_or_default()
    };
    if let Some(file) = &args.from_json {
        let text = if file.as_os_str() == "-" {
            std::io::read_to_string(std::io::stdin()).context("read the bench JSON from stdin")?
        } else {
            std::fs::read_to_string(file)
                .with_context(|| format!("read the bench JSON {}", file.display()))?
        };
        let report =
            Report::from_json(&text).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
        write_report(&report, format)?;
        return Ok(0);
    }
    if format == Format::Html && (args.sessions || args.overlay) {
        bail!("--format html draws the start-up bench only; --sessions and --overlay print text or JSON");
    }
    if args.sessions || args.overlay {
        let agentcage = match &args.agentcage {
            Some(p) => p.clone(),
            None => std::env::current_exe().context("locate the agentcage executable")?,
        };
        let seed = args
            .seed
            .unwrap_or_else(|| stats::Rng::from_entropy().next_u64());
        return if args.sessions {
            let rounds = args.rounds.unwrap_or(if args.quick { 15 } else { 100 });
            let r = sessions::measure(&agentcage, rounds, seed)?;
            side_report(format, &r, &r.render_text(), &r.checks)
        } else {
            let rounds = args.rounds.unwrap_or(if args.quick { 5 } else { 30 });
            let r = overlay::measure(&agentcage, rounds, seed)?;
            side_report(format, &r, &r.render_text(), &r.checks)
        };
    }
    let settings = args.settings()?;
    let report = measure::measure(&settings)?;
    write_report(&report, format)?;
    Ok(if report.profiles.iter().any(|r| r.error.is_some()) {
        1
    } else {
        0
    })
}

/// Prints `report` in `format` on stdout.
fn write_report(report: &Report, format: Format) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match format {
        Format::Json => {
            serde_json::to_writer_pretty(&mut out, report).context("write JSON report")?;
            writeln!(out).context("write JSON report")?;
        }
        Format::Text => out
            .write_all(report.render_text().as_bytes())
            .context("write report")?,
        Format::Html => out
            .write_all(report.render_html().as_bytes())
            .context("write report")?,
    }
    out.flush().context("write report")
}

/// Prints a `--sessions` or `--overlay` report (JSON or its text); exit code 0 when every
/// check passed, else 1.
fn side_report<R: serde::Serialize>(
    format: Format,
    report: &R,
    text: &str,
    checks: &[(String, bool, String)],
) -> anyhow::Result<i32> {
    let mut out = std::io::stdout().lock();
    if format == Format::Json {
        serde_json::to_writer_pretty(&mut out, report).context("write JSON report")?;
        writeln!(out).context("write JSON report")?;
    } else {
        out.write_all(text.as_bytes()).context("write report")?;
    }
    Ok(if checks.iter().all(|c| c.1) { 0 } else { 1 })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, Parser};

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        bench: BenchArgs,
    }

    fn parse(args: &[&str]) -> Result<BenchArgs, clap::Error> {
        Cli::try_parse_from(std::iter::once("bench").chain(args.iter().copied())).map(|c| c.bench)
    }

    #[test]
    fn cli_definition_is_valid() {
        Cli::command().debug_assert();
    }

    #[test]
    fn defaults_and_quick() {
        let a = parse(&[]).expect("parse");
        assert_eq!(a.profiles, Profile::ALL.to_vec());
        let s = a.settings().expect("settings");
        assert_eq!(
            (s.sizes.rounds, s.sizes.launches, s.sizes.concurrency),
            (300, 1000, 2)
        );
        assert_eq!(s.agentcage, std::env::current_exe().expect("exe"));
        let s = parse(&["--quick", "--rounds", "7", "--seed", "5"])
            .expect("parse")
            .settings()
            .expect("settings");
        assert_eq!(
            (s.sizes.rounds, s.sizes.launches, s.sizes.seed),
            (7, 100, 5)
        );
    }

    #[test]
    fn profiles_list_is_parsed_sorted_and_deduplicated() {
        let a = parse(&["--profiles", "full,ns_only,full"]).expect("parse");
        let s = a.settings().expect("settings");
        assert_eq!(s.profiles, vec![Profile::NsOnly, Profile::Full]);
        assert!(parse(&["--profiles", "full,bogus"]).is_err());
    }

    #[test]
    fn formats_and_from_json() {
        assert_eq!(parse(&[]).expect("parse").format, None);
        let a = parse(&["--format", "html", "--from-json", "r.json"]).expect("parse");
        assert_eq!(a.format, Some(Format::Html));
        assert_eq!(a.from_json, Some(PathBuf::from("r.json")));
        assert!(
            parse(&["--json", "--format", "html"]).is_err(),
            "--json is --format json"
        );
        assert!(
            parse(&["--from-json", "r.json", "--quick"]).is_err(),
            "nothing is measured"
        );
        assert!(parse(&["--format", "svg"]).is_err());
    }

    #[test]
    fn bad_numbers_are_usage_errors() {
        assert!(parse(&["--rounds", "0"]).is_err());
        assert!(parse(&["--concurrency", "0"]).is_err());
        assert!(parse(&["--rounds", "-3"]).is_err());
        assert!(parse(&["--launches", "0"]).is_ok());
    }
}
