//! `agentcage bench --overlay` (issue #16): what reviewing and committing an overlay costs
//! next to `git status` on the same tree, and what `--overlay` adds to a run's start-up.
//!
//! A generated workspace of 50,000 files (500 directories of 100 small files, a git
//! repository with everything committed); each round the agent changes 20 paths through
//! the overlay (14 edits, 3 new files, 3 deletions), then, interleaved and shuffled:
//!
//! - `git status`: `git status --porcelain` in the workspace (warm: the index and the
//!   inodes are cached after the first round);
//! - `diff --stat`: `agentcage diff --stat --overlay-dir DIR`;
//! - `commit`: `agentcage commit --all --overlay-dir DIR` (last: it consumes the changes);
//! - `run` and `run --overlay`: `agentcage run -q -w WS -- /bin/true` without and with an
//!   (empty) overlay.
//!
//! Targets: `diff --stat` and `commit` each <= 0.1x `git status` (their cost follows the
//! changes, not the tree); `run --overlay` <= 1.1x `run`.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde::Serialize;

use crate::stats::{ratio, Rng, Summary};
use crate::tempdir::TempDir;

/// Files in the generated workspace.
pub const FILES: usize = 50_000;
const DIRS: usize = 500;
/// Changes per round.
pub const CHANGES: usize = 20;

/// The overlay bench's report.
#[derive(Debug, Serialize)]
pub struct OverlayReport {
    /// Rounds.
    pub rounds: u32,
    /// Files in the workspace.
    pub files: usize,
    /// Milliseconds per contender.
    pub contenders: BTreeMap<String, Summary>,
    /// `diff --stat` / `git status` (medians; target <= 0.1).
    pub diff_over_git_status: Option<f64>,
    /// `commit` / `git status` (medians; target <= 0.1).
    pub commit_over_git_status: Option<f64>,
    /// `run --overlay` / `run` (medians; target <= 1.1).
    pub overlay_run_over_run: Option<f64>,
    /// Target checks: (name, passed, detail).
    pub checks: Vec<(String, bool, String)>,
}

const CONTENDERS: [&str; 5] = [
    "git status",
    "diff --stat",
    "commit",
    "run",
    "run --overlay",
];

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn timed(c: &mut Command) -> anyhow::Result<Duration> {
    let t = Instant::now();
    let st = c
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .with_context(|| format!("spawn {c:?}"))?;
    let d = t.elapsed();
    if !st.success() {
        bail!("{c:?}: {st}");
    }
    Ok(d)
}

fn git(ws: &Path) -> Command {
    let mut c = Command::new("git");
    c.arg("-C")
        .arg(ws)
        .args([
            "-c",
            "user.email=b@b",
            "-c",
            "user.name=b",
            "-c",
            "safe.directory=*",
        ])
        .env_remove("GIT_DIR");
    c
}

fn generate(ws: &Path) -> anyhow::Result<()> {
    for d in 0..DIRS {
        let dir = ws.join(format!("d{d:03}"));
        std::fs::create_dir(&dir).with_context(|| format!("mkdir {}", dir.display()))?;
        for f in 0..FILES / DIRS {
            std::fs::write(dir.join(format!("f{f:03}")), format!("file {d} {f}\n"))
                .context("write a workspace file")?;
        }
    }
    timed(git(ws).args(["init", "-q", "."])).context("git init")?;
    timed(git(ws).args(["add", "-A"])).context("git add")?;
    timed(git(ws).args(["commit", "-qm", "bench"])).context("git commit")?;
    Ok(())
}

/// The agent's 20 changes of round `r` (< 100): 14 edits, 3 new files, 3 deletions.
fn changes_script(r: usize) -> String {
    let mut s = String::from("set -e\n");
    for i in 0..14 {
        s.push_str(&format!("echo edit >> d{:03}/f{r:03}\n", i));
    }
    for i in 0..3 {
        s.push_str(&format!("echo new > d{:03}/new{r:03}\n", 100 + i));
    }
    for i in 0..3 {
        s.push_str(&format!("rm d{:03}/f{r:03}\n", 200 + i));
    }
    s
}

/// Runs the bench.
///
/// # Errors
/// The workspace cannot be made, git is missing, or a contender fails.
pub fn measure(agentcage: &Path, rounds: u32, seed: u64) -> anyhow::Result<OverlayReport> {
    let rounds = rounds.min(99);
    let tmp = TempDir::new("overlay").context("temp dir")?;
    let ws = tmp.path().join("ws");
    std::fs::create_dir(&ws).context("mkdir ws")?;
    eprintln!("bench --overlay: generating {FILES} files and their git repository...");
    generate(&ws)?;
    let ov = tmp.path().join("ov");
    let empty = tmp.path().join("ov-empty");
    let s = |p: &Path| p.to_string_lossy().into_owned();
    let agent = |r: usize| -> anyhow::Result<()> {
        timed(Command::new(agentcage).args([
            "run",
            "-q",
            "--overlay",
            "--overlay-dir",
            &s(&ov),
            "-w",
            &s(&ws),
            "--",
            "sh",
            "-c",
            &format!("cd {} && {}", s(&ws), changes_script(r)),
        ]))
        .context("the agent's run")
        .map(drop)
    };
    // Warm-up: the caches, the overlays' directories.
    timed(git(&ws).args(["status", "--porcelain"]))?;
    timed(Command::new(agentcage).args([
        "run",
        "-q",
        "--overlay",
        "--overlay-dir",
        &s(&empty),
        "-w",
        &s(&ws),
        "--",
        "/bin/true",
    ]))?;
    let mut rng = Rng::new(seed);
    let mut samples: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    for r in 0..rounds as usize {
        eprint!("\rbench --overlay: round {}/{rounds}", r + 1);
        agent(r)?;
        let mut order: Vec<&str> = CONTENDERS
            .iter()
            .copied()
            .filter(|c| *c != "commit")
            .collect();
        rng.shuffle(&mut order);
        order.push("commit");
        for c in order {
            let d = match c {
                "git status" => timed(git(&ws).args(["status", "--porcelain"]))?,
                "diff --stat" => timed(Command::new(agentcage).args([
                    "diff",
                    "--stat",
                    "--overlay-dir",
                    &s(&ov),
                ]))?,
                "commit" => timed(Command::new(agentcage).args([
                    "commit",
                    "--all",
                    "--overlay-dir",
                    &s(&ov),
                ]))?,
                "run" => timed(Command::new(agentcage).args([
                    "run",
                    "-q",
                    "-w",
                    &s(&ws),
                    "--",
                    "/bin/true",
                ]))?,
                _ => timed(Command::new(agentcage).args([
                    "run",
                    "-q",
                    "--overlay",
                    "--overlay-dir",
                    &s(&empty),
                    "-w",
                    &s(&ws),
                    "--",
                    "/bin/true",
                ]))?,
            };
            samples.entry(c).or_default().push(ms(d));
        }
    }
    eprintln!();
    // Every change was committed: the workspace holds round r's edits.
    let left = std::fs::read_dir(ov.join("upper")).map_or(0, Iterator::count);
    if left != 0 {
        bail!("{left} entries left in the upper layer after the commits");
    }
    let contenders: BTreeMap<String, Summary> = samples
        .iter()
        .filter_map(|(k, v)| Summary::of(v).map(|s| (k.to_string(), s)))
        .collect();
    let med = |k: &str| contenders.get(k).map(|s| s.median);
    let rr = |a: &str, b: &str| match (med(a), med(b)) {
        (Some(x), Some(y)) => ratio(x, y),
        _ => None,
    };
    let diff_over = rr("diff --stat", "git status");
    let commit_over = rr("commit", "git status");
    let run_over = rr("run --overlay", "run");
    // The minima too: on a loaded machine the medians carry the waits of other processes'
    // disk and CPU use (journal commits above all: commit and the overlay mount change
    // metadata, git status only reads); the minima are what each costs when nothing waits.
    let mins = |a: &str, b: &str| match (contenders.get(a), contenders.get(b)) {
        (Some(x), Some(y)) => ratio(x.min, y.min),
        _ => None,
    };
    let check = |name: &str, v: Option<f64>, min: Option<f64>, target: f64| {
        (
            name.to_string(),
            v.is_some_and(|x| x <= target),
            format!(
                "{} of medians, {} of minima (target <= {target})",
                ratio_text(v),
                ratio_text(min)
            ),
        )
    };
    let checks = vec![
        check(
            "diff --stat / git status",
            diff_over,
            mins("diff --stat", "git status"),
            0.1,
        ),
        check(
            "commit / git status",
            commit_over,
            mins("commit", "git status"),
            0.1,
        ),
        check(
            "run --overlay / run",
            run_over,
            mins("run --overlay", "run"),
            1.1,
        ),
    ];
    Ok(OverlayReport {
        rounds,
        files: FILES,
        contenders,
        diff_over_git_status: diff_over,
        commit_over_git_status: commit_over,
        overlay_run_over_run: run_over,
        checks,
    })
}

impl OverlayReport {
    /// The text table.
    pub fn render_text(&self) -> String {
        let mut s = format!(
            "agentcage bench --overlay: {} files, {CHANGES} changes per round, {} interleaved rounds (ms)\n\n",
            self.files, self.rounds
        );
        s.push_str(&format!(
            "{:<14} {:>9} {:>9} {:>9}\n",
            "contender", "median", "p95", "min"
        ));
        for c in CONTENDERS {
            if let Some(x) = self.contenders.get(c) {
                s.push_str(&format!(
                    "{c:<14} {:>9.3} {:>9.3} {:>9.3}\n",
                    x.median, x.p95, x.min
                ));
            }
        }
        s.push('\n');
        for (name, ok, detail) in &self.checks {
            s.push_str(&format!(
                "{} {name}: {detail}\n",
                if *ok { "PASS" } else { "FAIL" }
            ));
        }
        s
    }
}

/// A ratio with three decimals, or "n/a" when it could not be measured.
fn ratio_text(r: Option<f64>) -> String {
    r.map_or_else(|| "n/a".to_string(), |x| format!("{x:.3}"))
}
