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
use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::elf;
use crate::files::{self, DepthFile};
use crate::inner::{InnerOp, InnerReport};
use crate::plan::{self, Contender, Launcher, Paths, Profile, TrueKind};
use crate::report::{
    BaselineRow, Breakdown, CommandLine, DepthCost, Host, ProfileRow, Report, RunConfig, Sizes,
    ThroughputInfo, SCHEMA,
};
use crate::stats::{Rng, Summary};
use crate::sys::{self, CArgs};
use crate::tempdir::TempDir;

mod parts;
use parts::{Launch, Phases, Progress, Reaper, Series, Spawner, Throughput};

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

/// The launcher a baseline row is about (`exec`, `bwrap`, `unshare`).
fn baseline_launcher(name: &str) -> Launcher {
    match name {
        "bwrap" => Launcher::Bwrap,
        "unshare" => Launcher::Unshare,
        "full+egress" => Launcher::FullEgress,
        "full-nolimits" => Launcher::FullNoLimits,
        _ => Launcher::Exec,
    }
}

fn baseline(name: &str, version: Option<String>) -> BaselineRow {
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
fn setup_static_true(
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
fn preflight_one(c: Contender, paths: &Paths) -> Result<(), String> {
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

fn exit_text(status: &std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => c.to_string(),
        (None, Some(sig)) => format!("signal {sig}"),
        _ => "unknown".into(),
    }
}

/// The last few lines of a captured stream, trimmed, on one line.
fn tail(bytes: &[u8]) -> String {
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
fn inner_phase(
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
fn run_inner(argv: &[OsString]) -> Result<InnerReport, String> {
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
fn reap_orphans(reaper: &mut Reaper, notes: &mut Vec<String>) -> u32 {
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
fn peak_rss_once(probe: &Path, argv: &[OsString]) -> Option<i64> {
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
fn children_of(ppid: libc::pid_t) -> Vec<libc::pid_t> {
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
fn parse_ppid(stat: &str) -> Option<libc::pid_t> {
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

fn comm_of(pid: libc::pid_t) -> String {
    fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "?".into())
}

/// For each profile in a missed start-up target: `agentcage run -v` output (phase timestamps).
fn breakdowns(report: &Report, paths: &Paths) -> Vec<Breakdown> {
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
fn host_info() -> Host {
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
fn rfc3339_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    agentcage_egress::rfc3339(secs, None)
}

#[cfg(test)]
mod tests;
