//! `agentcage matrix`: runs the probe under each profile and measures which layer blocks each
//! operation.
//!
//! 1. [`bait`] sets up things outside the sandbox for the probe to reach (a sentinel process, a
//!    canary file, an environment secret, an inherited fd, TCP and unix listeners) and a
//!    scratch workspace; guards tear them down on every exit path, Ctrl-C included.
//! 2. [`attribution::plan`] decides which probe runs are needed, in rounds: the four main
//!    profiles, then single-layer removals, then the runs that split redundant blocks. Runs whose
//!    answer is already implied are skipped.
//! 3. [`runner`] executes each round's runs in parallel (`--jobs`), one `agentcage run ... --
//!    agentcage probe --format jsonl` per run: every op in a main profile run, only the ops
//!    that need it in an ablation run (`--only`).
//! 4. [`attribution::attribute`] turns the evidence into blockers; [`report`] renders text,
//!    Markdown, JSON or an HTML page to stdout. Progress (`-v`) goes to stderr.
//!    `--from-json FILE` skips steps 1 to 4 and renders a matrix saved as JSON.
//!
//! The blocker of an op is measured by experiment, never guessed from an errno: see
//! [`attribution`] for the exact definitions and README.md for how to read the output.

pub mod attribution;
pub mod bait;
mod deps;
pub mod host;
pub mod report;
pub mod runner;
mod sys;

use std::io::Write as _;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context as _;

pub use deps::{Layer, LayerSet, Profile};
pub use report::Matrix;

use attribution::{Evidence, Ops, RunKey};

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Format {
    /// Per-profile tables, then a grid of ops by profiles.
    #[default]
    Text,
    /// The same as Markdown tables.
    Markdown,
    /// Machine-readable: {"host", "profiles", "ops": [{"id", "title", "category", "results"}], "runs"}.
    Json,
    /// One self-contained HTML page (no network, no external assets): a heatmap of ops by
    /// profiles with the blocker layers in each cell and the details on hover.
    Html,
}

/// `agentcage matrix`: run the probe under each profile and attribute every block to a layer.
#[derive(Debug, Clone, clap::Args)]
pub struct MatrixArgs {
    /// Profiles to show (comma-separated), shown weakest first.
    #[arg(long, value_delimiter = ',', value_parser = parse_profile, default_value = "none,ns-only,landlock,full")]
    pub profiles: Vec<Profile>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Only run the profiles; skip the ablation runs that attribute blocks to layers.
    #[arg(long)]
    pub no_attribution: bool,
    /// Sandboxes run in parallel (default: the number of CPUs).
    #[arg(long, short = 'j', value_parser = clap::value_parser!(u16).range(1..))]
    pub jobs: Option<u16>,
    /// The agentcage binary that runs the sandboxes (default: this executable).
    #[arg(long, value_name = "PATH")]
    pub agentcage: Option<PathBuf>,
    /// Print each probe run and its duration to stderr.
    #[arg(short, long)]
    pub verbose: bool,
    /// Run each probe as an exec in a session started with the run's flags (issue #13): the
    /// results must be those of `agentcage run`. Layer sets without the user, pid or mount
    /// namespace still use `run` (a session needs the first two; without the third its pty
    /// cannot be opened once the zygote is restricted).
    #[arg(long)]
    pub via_session: bool,
    /// Run nothing: render a matrix saved with `--format json` (`-` reads stdin), e.g. as an
    /// HTML page. Profiles, results and attribution are taken from the file as they are.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["no_attribution", "jobs", "agentcage", "via_session"])]
    pub from_json: Option<PathBuf>,
}

fn parse_profile(s: &str) -> Result<Profile, String> {
    Profile::from_name(s)
        .ok_or_else(|| format!("unknown profile `{s}` (expected none, ns-only, landlock or full)"))
}

/// Exit code when interrupted by SIGINT (128 + 2), after the bait was cleaned up.
pub const EXIT_INTERRUPTED: i32 = 130;

/// Runs the matrix and prints it to stdout. Returns the exit code: 0, or
/// [`EXIT_INTERRUPTED`] after Ctrl-C.
///
/// # Errors
/// The bait cannot be set up, the agentcage binary cannot be run, or a main profile run fails
/// (its message says why).
pub fn run(args: &MatrixArgs) -> anyhow::Result<i32> {
    if let Some(file) = &args.from_json {
        let text = if file.as_os_str() == "-" {
            std::io::read_to_string(std::io::stdin()).context("read the matrix JSON from stdin")?
        } else {
            std::fs::read_to_string(file)
                .with_context(|| format!("read the matrix JSON {}", file.display()))?
        };
        let matrix =
            Matrix::from_json(&text).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
        return print(&matrix, args.format);
    }
    let mut profiles = args.profiles.clone();
    profiles.sort();
    profiles.dedup();
    anyhow::ensure!(!profiles.is_empty(), "--profiles: no profile given");
    let agentcage = match &args.agentcage {
        Some(p) => p.clone(),
        None => {
            std::env::current_exe().context("find the agentcage binary (pass --agentcage PATH)")?
        }
    };
    anyhow::ensure!(
        agentcage.is_file(),
        "agentcage binary {} not found",
        agentcage.display()
    );
    let jobs = args.jobs.map(usize::from).unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(usize::from)
            .unwrap_or(1)
    });
    let attribution = !args.no_attribution;

    // Drop order on every exit path: bait (sentinel, listeners, temp dir), then the handler.
    let _interrupt = sys::InterruptGuard::install().context("install the Ctrl-C handler")?;
    let bait = bait::Bait::setup(&agentcage).context("set up the bait")?;
    let runner =
        runner::Runner::new(&agentcage, &bait, jobs, args.verbose).via_session(args.via_session);
    let started = Instant::now();
    let ev = match collect(&runner, &profiles, attribution, args.verbose) {
        Ok(ev) => ev,
        Err(e) if e.is::<runner::Interrupted>() => {
            eprintln!("agentcage matrix: interrupted; bait cleaned up");
            return Ok(EXIT_INTERRUPTED);
        }
        Err(e) => return Err(e),
    };
    if args.verbose {
        let n = runner.runs_started();
        let keys = ev.summaries().len();
        eprintln!(
            "matrix: {n} probe runs ({keys} distinct layer sets) in {:.1} s with {jobs} jobs",
            started.elapsed().as_secs_f64()
        );
    }
    let host = host::detect(&agentcage, attribution, &bait.out_dir);
    drop(bait);
    let matrix = Matrix::build(host, &profiles, &ev, attribution);
    print(&matrix, args.format)
}

/// Prints `matrix` in `format` on stdout, then the one-line summary on stderr.
fn print(matrix: &Matrix, format: Format) -> anyhow::Result<i32> {
    let text = match format {
        Format::Text => matrix.to_text(),
        Format::Markdown => matrix.to_markdown(),
        Format::Json => matrix.to_json(),
        Format::Html => matrix.to_html(),
    };
    // A closed stdout (`agentcage matrix | head`) is not an error worth a panic.
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(e).context("write the matrix to stdout")
        }
        _ => {
            eprintln!("{}", matrix.summary_line());
            Ok(0)
        }
    }
}

/// More rounds than planning can need (single removals, base checks, alone runs, and two rounds
/// per prerequisite fallback); reaching it means a planning bug.
const MAX_ROUNDS: usize = 32;

/// Runs rounds of probe runs until the attribution needs nothing more.
fn collect(
    runner: &runner::Runner<'_>,
    profiles: &[Profile],
    attribution: bool,
    verbose: bool,
) -> anyhow::Result<Evidence> {
    let mut ev = Evidence::default();
    let mains: Vec<(RunKey, Ops)> = if attribution {
        Profile::ALL.to_vec()
    } else {
        profiles.to_vec()
    }
    .into_iter()
    .map(|p| (RunKey::main(p), Ops::All))
    .collect();
    for (key, ops, outcome) in runner.run_all(&mains)? {
        ev.insert(key, &ops, outcome);
        if let Some(why) = ev.failure(&key) {
            anyhow::bail!("profile {}: {why}", key.profile);
        }
    }
    if !attribution {
        return Ok(ev);
    }
    // Each round adds at least one new (run, op) and there are finitely many, so this ends;
    // the bound only guards against a planning bug.
    for round in 1..=MAX_ROUNDS {
        let needed = attribution::plan(&ev, profiles);
        if needed.is_empty() {
            return Ok(ev);
        }
        if verbose {
            eprintln!("matrix: round {round}: {} runs", needed.len());
        }
        for (key, ops, outcome) in runner.run_all(&needed)? {
            ev.insert(key, &ops, outcome);
        }
    }
    anyhow::bail!("attribution did not converge after {MAX_ROUNDS} rounds (a bug: please report)")
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: MatrixArgs,
    }

    #[test]
    fn args_parse() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from(["m"]).expect("defaults");
        assert_eq!(cli.args.profiles, Profile::ALL);
        assert_eq!(cli.args.format, Format::Text);
        let cli = Cli::try_parse_from([
            "m",
            "--profiles",
            "full,ns_only",
            "--format",
            "json",
            "-j",
            "3",
            "-v",
        ])
        .expect("flags");
        assert_eq!(cli.args.profiles, [Profile::Full, Profile::NsOnly]);
        assert_eq!(cli.args.jobs, Some(3));
        let cli = Cli::try_parse_from(["m", "--from-json", "-", "--format", "html"]).expect("html");
        assert_eq!(cli.args.format, Format::Html);
        assert_eq!(cli.args.from_json, Some(PathBuf::from("-")));
        assert!(Cli::try_parse_from(["m", "--from-json", "x", "--no-attribution"]).is_err());
        assert!(Cli::try_parse_from(["m", "--profiles", "bogus"]).is_err());
        assert!(Cli::try_parse_from(["m", "--jobs", "0"]).is_err());
    }
}
