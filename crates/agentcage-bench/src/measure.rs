//! The measurement phases, in order:
//!
//! 1. **Setup**: a private temp dir (the sandbox workspace) holding the static `true`; the
//!    `/usr` files for the open/stat loops; peers found in `$PATH` when `--compare`.
//! 2. **Preflight**: every contender once with stderr captured. A failing agentcage profile or
//!    peer becomes a row with the reason instead of aborting the bench; a static `true` that
//!    cannot run (a `noexec` temp dir) drops the static variants with a note.
//! 3. **Warm-up**: each contender a few times, untimed (page cache, dentries, CPU frequency).
//! 4. **Start-up rounds**: every round runs each contender once in a freshly shuffled order, so
//!    drift of the machine lands on all of them alike. Each launch is `posix_spawn` + `waitpid`
//!    timed with `CLOCK_MONOTONIC`.
//! 5. **Peak RSS**: each launcher a few times under `elf::rss_probe`.
//! 6. **In-sandbox loops**: `bench-inner getpid|open|stat` under each profile, rounds shuffled
//!    the same way; each run reports several batches.
//! 7. **Throughput**: N launches per contender at concurrency C, in chunks interleaved across
//!    contenders; every launch must exit 0.
//! 8. **Leak check** (when the bench owns the process): the bench is a child subreaper, so a
//!    process a launcher left behind is re-parented to it and found here.
//!
//! The timed path allocates nothing: argv and envp arrays are built once per contender.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::elf;
use crate::files::{self, DepthFile};
use crate::plan::{self, Contender, Launcher, Paths, Profile, TrueKind};
use crate::report::{
    BaselineRow, CommandLine, Host, ProfileRow, Report, RunConfig, Sizes, ThroughputInfo, SCHEMA,
};
use crate::stats::Rng;
use crate::sys::{self, CArgs};
use crate::tempdir::TempDir;

mod parts;
mod support;
use parts::{Launch, Phases, Progress, Reaper, Series, Spawner, Throughput};
use support::{
    baseline, baseline_launcher, breakdowns, host_info, inner_phase, peak_rss_once, preflight_one,
    reap_orphans, setup_static_true,
};

/// Everything a run needs, resolved from the command line.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Rounds, iterations, launches.
    pub sizes: Sizes,
    /// Profiles to measure, weakest first.
    pub profiles: Vec<Profile>,
    /// The agentcage binary.
    pub agentcage: PathBuf,
    /// A `true` to use instead of the built-in static one.
    pub true_override: Option<PathBuf>,
    /// Print progress on stderr.
    pub progress: bool,
    /// The bench owns this process's children: become a subreaper and check for leaks.
    pub own_children: bool,
}

/// Runs every phase and returns the report.
///
/// # Errors
/// Setup fails (no temp dir, agentcage binary missing), or launching itself fails
/// (`posix_spawn`/`waitpid` errors). Failing contenders are data in the report, not errors.
pub fn measure(s: &Settings) -> anyhow::Result<Report> {
    let t0 = Instant::now();
    let mut b = Bench::new(s);
    let mut phases = Phases::default();

    let mut env = setup(&mut b)?;
    phases.end("setup");
    let c = preflight(&mut b, &mut env)?;
    phases.end("preflight");
    warm_up(&mut b, &c)?;
    phases.end("warm-up");
    startup_rounds(&mut b, &c)?;
    phases.end("startup");
    peak_rss(&mut b, &env, &c);
    phases.end("peak-rss");
    inner_loops(&mut b, &env);
    phases.end("in-sandbox");
    let failed = throughput(&mut b, &c)?;
    phases.end("throughput");
    let mut report = leak_check(b, &env, &c, &failed);
    phases.end("leak-check");

    report.breakdown = breakdowns(&report, &env.paths);
    phases.end("breakdown");
    report.phases = phases.done;
    report.duration_s = t0.elapsed().as_secs_f64();
    drop(env);
    Ok(report)
}

/// The state every phase reads and fills in.
struct Bench<'s> {
    s: &'s Settings,
    host: Host,
    notes: Vec<String>,
    progress: Progress,
    rng: Rng,
    reaper: Reaper,
    /// One row per agentcage profile; a failing one carries its error.
    rows: Vec<ProfileRow>,
    /// `exec`, then the peers when `--compare`.
    baselines: Vec<BaselineRow>,
}

impl<'s> Bench<'s> {
    /// Host info, and the child-subreaper the leak check relies on (when the bench owns the
    /// process).
    fn new(s: &'s Settings) -> Bench<'s> {
        let mut notes = Vec::new();
        let mut reaper = Reaper {
            on: false,
            reaped: 0,
        };
        if s.own_children {
            match sys::set_child_subreaper() {
                Ok(()) => reaper.on = true,
                Err(e) => notes.push(format!(
                    "leak check disabled: PR_SET_CHILD_SUBREAPER failed: {e}"
                )),
            }
        }
        Bench {
            s,
            host: host_info(),
            notes,
            progress: Progress::new(s.progress),
            rng: Rng::new(s.sizes.seed),
            reaper,
            rows: s.profiles.iter().map(|&p| ProfileRow::new(p)).collect(),
            baselines: vec![baseline("exec", None)],
        }
    }
}

/// What [`setup`] made: the temp dir (removed on drop) and the files the phases run.
struct Env {
    agentcage: PathBuf,
    dir: TempDir,
    rss_probe: Option<PathBuf>,
    paths: Paths,
    files: Vec<DepthFile>,
}

/// The contenders that passed [`preflight`], and their argv prepared for the timed path.
struct Contenders {
    /// Launchers with every true kind runnable.
    usable: Vec<Launcher>,
    /// `usable` x the true kinds available.
    all: Vec<Contender>,
    /// The static true when it runs here, else /bin/true.
    primary: TrueKind,
    argvs: HashMap<Contender, CArgs>,
    spawner: Spawner,
}

impl Contenders {
    /// One timed launch.
    fn launch(&self, c: &Contender) -> anyhow::Result<Launch> {
        let argv = self
            .argvs
            .get(c)
            .context("argv prepared for every contender")?;
        self.spawner
            .run(argv)
            .with_context(|| format!("launch {c}"))
    }
}

/// 1. Setup: the temp dir, the static `true` and rss-probe in it, `/bin/true`, the peers, the
///    `/usr` files for the loops, and one baseline row per peer.
fn setup(b: &mut Bench) -> anyhow::Result<Env> {
    let s = b.s;
    let agentcage = fs::canonicalize(&s.agentcage)
        .with_context(|| format!("agentcage binary {}", s.agentcage.display()))?;
    let dir = TempDir::new("run").context("create the bench's temp dir")?;
    let static_true = setup_static_true(s, dir.path(), &mut b.notes)?;
    let rss_probe = if elf::native() {
        let p = dir.path().join("rss-probe");
        elf::write_executable(&p, &elf::rss_probe())
            .with_context(|| format!("write {}", p.display()))?;
        Some(p)
    } else {
        b.notes
            .push("peak RSS not measured: the rss-probe is x86_64 code".into());
        None
    };
    let bin_true = ["/bin/true", "/usr/bin/true"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .context("no /bin/true on this host")?;
    let (mut bwrap, mut unshare) = (None, None);
    if s.sizes.compare {
        bwrap = plan::which("bwrap");
        unshare = plan::which("unshare");
    }
    let paths = Paths {
        agentcage: agentcage.clone(),
        dir: dir.path().to_path_buf(),
        static_true,
        bin_true,
        bwrap,
        unshare,
    };
    let files = files::pick(Path::new("/usr"));
    if files.is_empty() {
        b.notes.push(
            "no world-readable files under /usr at depths 3-6: file costs not measured".into(),
        );
    }

    if s.profiles.contains(&Profile::Full) {
        // `full` with `--net allow`: the start-up cost of the egress engine (issue #12).
        b.baselines
            .push(baseline(Launcher::FullEgress.name(), None));
        // `full` without its cgroup: what the limits layer costs (issue #19).
        b.baselines
            .push(baseline(Launcher::FullNoLimits.name(), None));
    }
    if s.sizes.compare {
        for (name, path) in [("bwrap", &paths.bwrap), ("unshare", &paths.unshare)] {
            let mut row = baseline(name, path.as_deref().and_then(plan::version_of));
            if path.is_none() {
                row.error = Some(format!(
                    "{name} not installed (apt-get install {})",
                    if name == "bwrap" {
                        "bubblewrap"
                    } else {
                        "util-linux"
                    }
                ));
            }
            b.baselines.push(row);
        }
    }
    Ok(Env {
        agentcage,
        dir,
        rss_probe,
        paths,
        files,
    })
}

/// 2. Preflight: which contenders can run here at all. A failing profile or peer gets its
///    row's error; a failing plain exec is an error; a static true that cannot run is dropped.
fn preflight(b: &mut Bench, env: &mut Env) -> anyhow::Result<Contenders> {
    let paths = &mut env.paths;
    let mut launchers = vec![Launcher::Exec];
    launchers.extend(b.s.profiles.iter().map(|&p| Launcher::Agentcage(p)));
    if b.s.profiles.contains(&Profile::Full) {
        launchers.push(Launcher::FullEgress);
        launchers.push(Launcher::FullNoLimits);
    }
    if paths.bwrap.is_some() {
        launchers.push(Launcher::Bwrap);
    }
    if paths.unshare.is_some() {
        launchers.push(Launcher::Unshare);
    }
    if paths.static_true.is_some() {
        let exec_static = Contender {
            launcher: Launcher::Exec,
            true_kind: TrueKind::Static,
        };
        if let Err(e) = preflight_one(exec_static, paths) {
            b.notes.push(format!(
                "the static true cannot run from {}: {e}; using /bin/true only",
                env.dir.path().display()
            ));
            paths.static_true = None;
        }
    }
    let kinds: Vec<TrueKind> = [TrueKind::Static, TrueKind::BinTrue]
        .into_iter()
        .filter(|&k| paths.true_path(k).is_some())
        .collect();
    // The static true when it runs here, else /bin/true (always present: checked in setup).
    let primary = if paths.static_true.is_some() {
        TrueKind::Static
    } else {
        TrueKind::BinTrue
    };
    let mut usable: Vec<Launcher> = Vec::new();
    b.reaper.reap();
    for &l in &launchers {
        let mut failed = None;
        for &k in &kinds {
            let c = Contender {
                launcher: l,
                true_kind: k,
            };
            if let Err(e) = preflight_one(c, paths) {
                failed = Some(format!("{c}: {e}"));
                break;
            }
        }
        if b.reaper.on {
            // Attribute processes that outlive their launcher (they are re-parented to us).
            std::thread::sleep(Duration::from_millis(10));
            let n = b.reaper.reap();
            if n > 0 {
                b.notes.push(format!(
                    "{}: {n} process(es) outlived the launcher in {} runs and were reaped by the bench",
                    l.name(),
                    kinds.len()
                ));
            }
        }
        match (failed, l) {
            (None, _) => usable.push(l),
            (Some(e), Launcher::Exec) => bail!("plain exec failed: {e}"),
            (Some(e), Launcher::Agentcage(p)) => {
                if let Some(r) = b.rows.iter_mut().find(|r| r.profile == p) {
                    r.error = Some(e);
                }
            }
            (Some(e), peer) => {
                if let Some(row) = b.baselines.iter_mut().find(|r| r.name == peer.name()) {
                    row.error = Some(e);
                }
            }
        }
    }
    let all: Vec<Contender> = usable
        .iter()
        .flat_map(|&l| {
            kinds.iter().map(move |&k| Contender {
                launcher: l,
                true_kind: k,
            })
        })
        .collect();
    let spawner = Spawner::new()?;
    let mut argvs: HashMap<Contender, CArgs> = HashMap::new();
    for &c in &all {
        let argv = plan::argv(c, paths).context("argv of a preflighted contender")?;
        argvs.insert(
            c,
            CArgs::new(plan::to_bytes(&argv)).context("argument contains a NUL byte")?,
        );
    }
    Ok(Contenders {
        usable,
        all,
        primary,
        argvs,
        spawner,
    })
}

/// 3. Warm-up: every contender a few times, untimed.
fn warm_up(b: &mut Bench, c: &Contenders) -> anyhow::Result<()> {
    let n = b.s.sizes.warmup;
    for i in 0..n {
        b.progress.tick("warm-up", i, n);
        for x in &c.all {
            c.launch(x)?;
        }
        b.reaper.reap();
    }
    b.progress.done();
    Ok(())
}

/// 4. Start-up rounds: each contender once per round, in a freshly shuffled order; fills in
///    the `startup` columns.
fn startup_rounds(b: &mut Bench, c: &Contenders) -> anyhow::Result<()> {
    let mut series: HashMap<Contender, Series> = HashMap::new();
    let mut order: Vec<Contender> = c.all.clone();
    let rounds = b.s.sizes.rounds;
    for round in 0..rounds {
        b.progress.tick("startup round", round, rounds);
        b.rng.shuffle(&mut order);
        for x in &order {
            let l = c.launch(x)?;
            let entry = series.entry(*x).or_default();
            if l.reaped.exit_code() == 0 {
                entry.ms.push(l.ns / 1e6);
            } else {
                entry.failures += 1;
            }
        }
        b.reaper.reap();
    }
    b.progress.done();
    let startup_of = |l: Launcher, k: TrueKind| {
        series
            .get(&Contender {
                launcher: l,
                true_kind: k,
            })
            .and_then(Series::startup)
    };
    for r in b.rows.iter_mut().filter(|r| r.error.is_none()) {
        r.startup = startup_of(Launcher::Agentcage(r.profile), TrueKind::Static);
        r.startup_bin_true = startup_of(Launcher::Agentcage(r.profile), TrueKind::BinTrue);
    }
    for row in b.baselines.iter_mut().filter(|r| r.error.is_none()) {
        let l = baseline_launcher(&row.name);
        row.startup = startup_of(l, TrueKind::Static);
        row.startup_bin_true = startup_of(l, TrueKind::BinTrue);
    }
    Ok(())
}

/// 5. Peak RSS of each usable launcher, through the rss-probe (a launcher spawned by the bench
///    itself would be charged the bench's RSS; see elf.rs).
fn peak_rss(b: &mut Bench, env: &Env, c: &Contenders) {
    let Some(probe) = &env.rss_probe else {
        return;
    };
    let runs = if b.s.sizes.quick { 3 } else { 10 };
    for &l in &c.usable {
        let x = Contender {
            launcher: l,
            true_kind: c.primary,
        };
        let Some(argv) = plan::argv(x, &env.paths) else {
            continue;
        };
        let peak = (0..runs).filter_map(|_| peak_rss_once(probe, &argv)).max();
        match l {
            Launcher::Agentcage(p) => {
                if let Some(r) = b.rows.iter_mut().find(|r| r.profile == p) {
                    r.peak_rss_kib = peak;
                }
            }
            other => {
                if let Some(row) = b.baselines.iter_mut().find(|r| r.name == other.name()) {
                    row.peak_rss_kib = peak;
                }
            }
        }
        b.reaper.reap();
    }
}

/// 6. In-sandbox loops under every profile that passed preflight.
fn inner_loops(b: &mut Bench, env: &Env) {
    let measured: Vec<Profile> = b
        .rows
        .iter()
        .filter(|r| r.error.is_none())
        .map(|r| r.profile)
        .collect();
    inner_phase(
        b.s,
        &env.paths,
        &env.files,
        &measured,
        &mut b.rows,
        &mut b.rng,
        &mut b.progress,
    );
}

/// 7. Throughput: launches per second of each usable launcher; returns the failed launches
///    per launcher.
fn throughput(b: &mut Bench, c: &Contenders) -> anyhow::Result<HashMap<Launcher, u32>> {
    let mut failed: HashMap<Launcher, u32> = HashMap::new();
    let sizes = b.s.sizes;
    if sizes.launches == 0 {
        return Ok(failed);
    }
    let tput = Throughput {
        launches: sizes.launches,
        concurrency: sizes.concurrency,
        chunks: if sizes.quick { 2 } else { 10 },
    };
    let rates = tput.run(
        &c.usable,
        c.primary,
        &c.argvs,
        &c.spawner,
        &mut b.rng,
        &mut b.progress,
        &mut b.reaper,
    )?;
    for r in b.rows.iter_mut().filter(|r| r.error.is_none()) {
        let l = Launcher::Agentcage(r.profile);
        if let Some(&(rate, failures)) = rates.get(&l) {
            r.launches_per_s = Some(rate);
            r.throughput_failures = failures;
            failed.insert(l, failures);
        }
    }
    for row in b.baselines.iter_mut().filter(|r| r.error.is_none()) {
        let l = baseline_launcher(&row.name);
        if let Some(&(rate, failures)) = rates.get(&l) {
            row.launches_per_s = Some(rate);
            row.throughput_failures = failures;
        }
    }
    if c.primary == TrueKind::BinTrue {
        b.notes
            .push("throughput measured with /bin/true (no static true)".into());
    }
    Ok(failed)
}

/// 8. Leak check (when the bench owns the process), then the report with its derived fields
///    (the breakdown and the phase times are added by the caller).
fn leak_check(mut b: Bench, env: &Env, c: &Contenders, failed: &HashMap<Launcher, u32>) -> Report {
    let leaked = if b.reaper.on {
        reap_orphans(&mut b.reaper, &mut b.notes)
    } else {
        0
    };
    let s = b.s;
    let commands = c
        .all
        .iter()
        .filter(|x| x.true_kind == c.primary)
        .filter_map(|&x| {
            plan::argv(x, &env.paths).map(|a| CommandLine {
                contender: x.to_string(),
                command: plan::shell_words(&a),
            })
        })
        .collect();
    let mut report = Report {
        schema: SCHEMA.into(),
        host: b.host,
        config: RunConfig {
            sizes: s.sizes,
            agentcage: env.agentcage.display().to_string(),
            static_true: env
                .paths
                .static_true
                .as_ref()
                .map(|p| p.display().to_string()),
            files: env.files.clone(),
            commands,
        },
        profiles: b.rows,
        baselines: b.baselines,
        throughput: ThroughputInfo {
            launches: s.sizes.launches,
            concurrency: s.sizes.concurrency,
            failed_runs: failed
                .iter()
                .filter(|(l, _)| matches!(l, Launcher::Agentcage(_)))
                .map(|(_, n)| n)
                .sum(),
            leaked_processes: leaked,
            orphans_reaped: b.reaper.reaped,
        },
        targets: Vec::new(),
        breakdown: Vec::new(),
        notes: b.notes,
        phases: Vec::new(),
        duration_s: 0.0,
    };
    report.derive();
    report
}

#[cfg(test)]
mod tests;
