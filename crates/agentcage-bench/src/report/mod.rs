//! The bench's result: serde types (the `--json` output) and the derived ratios; the overhead
//! targets are defined and checked in `targets.rs`, the text table is rendered in `text.rs`,
//! the HTML page (inline SVG charts) in `html.rs`.
//!
//! The table keeps the reference design's first columns (`profile startup_ms ns_per_syscall
//! delta`, where `delta` is ns per syscall over `none`) and adds: startup p95, ratios to `none`
//! and to a plain exec of the same `true`, start-up with `/bin/true`, open+close and stat cost,
//! launch throughput and the launcher's peak RSS. Below it: the baselines and peers, the
//! per-depth file costs, the throughput run's hygiene and the target checks.

use serde::{Deserialize, Serialize};

use crate::files::DepthFile;
use crate::plan::Profile;
use crate::stats::{ratio, Summary};

mod html;
mod targets;
mod text;

pub use targets::{Cmp, Status, Target};

/// Version tag of the JSON layout.
pub const SCHEMA: &str = "agentcage-bench/1";

/// The whole result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Always [`SCHEMA`].
    pub schema: String,
    /// The machine.
    pub host: Host,
    /// How the run was configured.
    pub config: RunConfig,
    /// One row per requested agentcage profile, weakest first.
    pub profiles: Vec<ProfileRow>,
    /// Plain exec and the peers (bwrap, unshare), when measured.
    pub baselines: Vec<BaselineRow>,
    /// The throughput run's totals.
    pub throughput: ThroughputInfo,
    /// The overhead targets: start-up and syscall ratios against the baselines, throughput,
    /// clean runs (no failures, no leaks) and the launcher's peak RSS.
    pub targets: Vec<Target>,
    /// `agentcage run -v` output of profiles involved in a missed start-up target.
    pub breakdown: Vec<Breakdown>,
    /// Things worth knowing (a peer not installed, a profile that could not run...).
    pub notes: Vec<String>,
    /// Wall time of each phase, in order.
    pub phases: Vec<PhaseTime>,
    /// Wall time of the whole bench, seconds.
    pub duration_s: f64,
}

/// Wall time of one phase of the bench.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PhaseTime {
    /// Phase name (`startup`, `in-sandbox`, `throughput`...).
    pub phase: String,
    /// Seconds.
    pub seconds: f64,
}

/// The machine the numbers come from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Host {
    /// `uname -r`.
    pub kernel: String,
    /// CPU architecture.
    pub arch: String,
    /// CPU model name from /proc/cpuinfo.
    pub cpu: String,
    /// CPUs available to the bench.
    pub cpus: usize,
    /// Whether the CPU reports running under a hypervisor.
    pub hypervisor: bool,
    /// Effective uid of the bench.
    pub uid: u32,
    /// UTC start time, RFC 3339.
    pub started_at: String,
}

/// The sizes of a run: how many rounds, iterations and launches (shared by the settings
/// and the report, which flattens them into its `config`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sizes {
    /// `--quick`.
    pub quick: bool,
    /// `--compare`.
    pub compare: bool,
    /// Start-up rounds (each contender once per round, shuffled).
    pub rounds: u32,
    /// Warm-up launches per contender.
    pub warmup: u32,
    /// Rounds of the in-sandbox loops.
    pub inner_rounds: u32,
    /// getpid iterations per batch.
    pub getpid_iterations: u64,
    /// open/stat iterations per batch and file.
    pub file_iterations: u64,
    /// Batches per in-sandbox run.
    pub batches: u32,
    /// Launches per contender in the throughput run.
    pub launches: u32,
    /// Concurrency of the throughput run.
    pub concurrency: u32,
    /// Shuffle seed.
    pub seed: u64,
}

/// How the run was configured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunConfig {
    /// Rounds, iterations, launches.
    #[serde(flatten)]
    pub sizes: Sizes,
    /// The agentcage binary.
    pub agentcage: String,
    /// The static `true` (None when this host cannot run one).
    pub static_true: Option<String>,
    /// The files of the open/stat loops.
    pub files: Vec<DepthFile>,
    /// Exact command lines of the static-`true` contenders, for reproduction.
    pub commands: Vec<CommandLine>,
}

/// A contender and its exact argv.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommandLine {
    /// Contender name (`full/static`, `bwrap/static`...).
    pub contender: String,
    /// The command, shell-quoted.
    pub command: String,
}

/// Launch-to-exit times of one contender, in milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Startup {
    /// Launch-to-exit, ms.
    pub ms: Summary,
    /// Runs that exited non-zero (excluded from `ms`).
    pub failures: u32,
}

/// One file's cost in one profile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DepthCost {
    /// Path depth.
    pub depth: usize,
    /// ns per operation.
    pub ns: Summary,
}

/// One agentcage profile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProfileRow {
    /// The profile.
    pub profile: Profile,
    /// Why it could not be measured, if it could not.
    pub error: Option<String>,
    /// Start-up with the static `true`.
    pub startup: Option<Startup>,
    /// Start-up with `/bin/true`.
    pub startup_bin_true: Option<Startup>,
    /// Median start-up (static `true`) / `none`'s.
    pub x_none: Option<f64>,
    /// Median start-up (static `true`) / plain exec of the static `true`.
    pub x_exec: Option<f64>,
    /// Median start-up (`/bin/true`) / plain exec of `/bin/true`.
    pub x_exec_bin_true: Option<f64>,
    /// Median start-up (static `true`) / bwrap's, when measured.
    pub x_bwrap: Option<f64>,
    /// Median start-up (static `true`) / `unshare -Urnmpif`'s, when measured.
    pub x_unshare: Option<f64>,
    /// Launches per second / bwrap's, when measured.
    pub throughput_x_bwrap: Option<f64>,
    /// ns per getpid inside.
    pub ns_per_syscall: Option<Summary>,
    /// Median ns per getpid minus `none`'s.
    pub syscall_delta_ns: Option<f64>,
    /// open+close ns per op, mean over depths of the per-depth medians.
    pub open_ns: Option<f64>,
    /// stat ns per op, mean over depths of the per-depth medians.
    pub stat_ns: Option<f64>,
    /// open+close cost per depth.
    pub open_by_depth: Vec<DepthCost>,
    /// stat cost per depth.
    pub stat_by_depth: Vec<DepthCost>,
    /// Launches per second in the throughput run.
    pub launches_per_s: Option<f64>,
    /// Throughput-run launches that exited non-zero.
    pub throughput_failures: u32,
    /// Peak RSS of `agentcage run` (largest `ru_maxrss` of the process and its descendants),
    /// KiB, measured through the bench's `rss-probe`.
    pub peak_rss_kib: Option<i64>,
    /// Errors of the in-sandbox loops (a failing op), if any.
    pub inner_errors: Vec<String>,
}

impl ProfileRow {
    /// An empty row for `profile`.
    pub fn new(profile: Profile) -> ProfileRow {
        ProfileRow {
            profile,
            error: None,
            startup: None,
            startup_bin_true: None,
            x_none: None,
            x_exec: None,
            x_exec_bin_true: None,
            x_bwrap: None,
            x_unshare: None,
            throughput_x_bwrap: None,
            ns_per_syscall: None,
            syscall_delta_ns: None,
            open_ns: None,
            stat_ns: None,
            open_by_depth: Vec::new(),
            stat_by_depth: Vec::new(),
            launches_per_s: None,
            throughput_failures: 0,
            peak_rss_kib: None,
            inner_errors: Vec::new(),
        }
    }

    fn startup_median(&self) -> Option<f64> {
        self.startup.as_ref().map(|s| s.ms.median)
    }
}

/// Plain exec or a peer sandbox.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BaselineRow {
    /// `exec`, `bwrap` or `unshare`.
    pub name: String,
    /// Version string, for peers.
    pub version: Option<String>,
    /// Why it was not measured, if it was not.
    pub error: Option<String>,
    /// Start-up with the static `true`.
    pub startup: Option<Startup>,
    /// Start-up with `/bin/true`.
    pub startup_bin_true: Option<Startup>,
    /// Launches per second in the throughput run.
    pub launches_per_s: Option<f64>,
    /// Throughput-run launches that exited non-zero.
    pub throughput_failures: u32,
    /// Peak RSS of the launcher, KiB (see [`ProfileRow::peak_rss_kib`]).
    pub peak_rss_kib: Option<i64>,
}

/// Totals of the throughput run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ThroughputInfo {
    /// Launches per contender.
    pub launches: u32,
    /// Concurrency.
    pub concurrency: u32,
    /// agentcage launches (all profiles) that exited non-zero; peers' are in their rows.
    pub failed_runs: u32,
    /// Processes still running after their launcher exited, found at the end of the bench
    /// (re-parented to it) and killed. Counted over the whole bench, not only this phase.
    pub leaked_processes: u32,
    /// Processes that outlived their launcher but exited on their own (re-parented to the bench
    /// and reaped), over the whole bench.
    pub orphans_reaped: u32,
}

/// `agentcage run -v` output for a profile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Breakdown {
    /// The profile.
    pub profile: Profile,
    /// The exact command.
    pub command: String,
    /// Its stderr (phase timestamps), truncated.
    pub stderr: String,
}

impl Report {
    /// Reads a report back from the `--json` output.
    ///
    /// # Errors
    /// Not JSON, not a report of this layout (`schema` other than [`SCHEMA`], e.g. a
    /// `--sessions` or `--overlay` report), or a missing field.
    pub fn from_json(text: &str) -> Result<Report, String> {
        let v: serde_json::Value =
            serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
        match v.get("schema").and_then(serde_json::Value::as_str) {
            Some(SCHEMA) => {}
            Some(other) => {
                return Err(format!(
                    "schema {other:?}: only {SCHEMA:?} reports (`agentcage bench --json`) can be rendered"
                ))
            }
            None => {
                return Err(format!(
                    "no \"schema\": not a report of `agentcage bench --json` ({SCHEMA})"
                ))
            }
        }
        serde_json::from_value(v).map_err(|e| format!("not a {SCHEMA} report: {e}"))
    }

    /// The row of `p`, if requested.
    pub fn profile(&self, p: Profile) -> Option<&ProfileRow> {
        self.profiles.iter().find(|r| r.profile == p)
    }

    /// The baseline named `name`, if present.
    pub fn baseline(&self, name: &str) -> Option<&BaselineRow> {
        self.baselines.iter().find(|b| b.name == name)
    }

    /// Fills the derived fields: ratios, deltas and the targets.
    pub fn derive(&mut self) {
        let exec = self.baseline("exec").cloned();
        let none = self.profile(Profile::None).cloned();
        let none_syscall = none
            .as_ref()
            .and_then(|r| r.ns_per_syscall)
            .map(|s| s.median);
        let none_startup = none.as_ref().and_then(ProfileRow::startup_median);
        let exec_static = exec
            .as_ref()
            .and_then(|e| e.startup.as_ref())
            .map(|s| s.ms.median);
        let peer = |name: &str| {
            self.baseline(name)
                .and_then(|b| b.startup.as_ref())
                .map(|s| s.ms.median)
        };
        let (bwrap, unshare) = (peer("bwrap"), peer("unshare"));
        let bwrap_tput = self.baseline("bwrap").and_then(|b| b.launches_per_s);
        let exec_bin = exec
            .as_ref()
            .and_then(|e| e.startup_bin_true.as_ref())
            .map(|s| s.ms.median);
        for row in &mut self.profiles {
            let med = row.startup_median();
            let med_bin = row.startup_bin_true.as_ref().map(|s| s.ms.median);
            row.x_none = med.zip(none_startup).and_then(|(a, b)| ratio(a, b));
            row.x_exec = med.zip(exec_static).and_then(|(a, b)| ratio(a, b));
            row.x_exec_bin_true = med_bin.zip(exec_bin).and_then(|(a, b)| ratio(a, b));
            row.x_bwrap = med.zip(bwrap).and_then(|(a, b)| ratio(a, b));
            row.x_unshare = med.zip(unshare).and_then(|(a, b)| ratio(a, b));
            row.throughput_x_bwrap = row
                .launches_per_s
                .zip(bwrap_tput)
                .and_then(|(a, b)| ratio(a, b));
            row.syscall_delta_ns = row
                .ns_per_syscall
                .zip(none_syscall)
                .map(|(s, n)| s.median - n);
        }
        self.targets = self.evaluate_targets();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(median: f64) -> Summary {
        Summary {
            n: 10,
            min: median * 0.9,
            median,
            p95: median * 1.2,
            max: median * 1.5,
            mean: median,
        }
    }

    fn startup(ms: f64) -> Option<Startup> {
        Some(Startup {
            ms: summary(ms),
            failures: 0,
        })
    }

    fn row(p: Profile, ms: f64, getpid: f64, open: f64, tput: f64) -> ProfileRow {
        let mut r = ProfileRow::new(p);
        r.startup = startup(ms);
        r.startup_bin_true = startup(ms + 0.7);
        r.peak_rss_kib = Some(1200);
        r.ns_per_syscall = Some(summary(getpid));
        r.open_ns = Some(open);
        r.stat_ns = Some(open / 2.0);
        r.launches_per_s = Some(tput);
        r
    }

    fn base(name: &str, ms: f64, tput: f64) -> BaselineRow {
        BaselineRow {
            name: name.into(),
            version: None,
            error: None,
            startup: startup(ms),
            startup_bin_true: startup(ms + 0.7),
            launches_per_s: Some(tput),
            throughput_failures: 0,
            peak_rss_kib: Some(900),
        }
    }

    pub(super) fn sample() -> Report {
        let mut r = Report {
            schema: SCHEMA.into(),
            host: Host {
                kernel: "6.18".into(),
                arch: "x86_64".into(),
                cpu: "test".into(),
                cpus: 2,
                hypervisor: true,
                uid: 0,
                started_at: "2026-01-01T00:00:00Z".into(),
            },
            config: RunConfig {
                sizes: Sizes {
                    quick: true,
                    compare: true,
                    rounds: 10,
                    warmup: 2,
                    inner_rounds: 2,
                    getpid_iterations: 10,
                    file_iterations: 10,
                    batches: 2,
                    launches: 10,
                    concurrency: 2,
                    seed: 1,
                },
                agentcage: "/x/agentcage".into(),
                static_true: Some("/tmp/x/true".into()),
                files: vec![],
                commands: vec![],
            },
            profiles: vec![
                row(Profile::None, 0.5, 80.0, 1000.0, 2000.0),
                row(Profile::NsOnly, 1.0, 80.0, 1000.0, 1000.0),
                row(Profile::Landlock, 1.01, 81.0, 1400.0, 990.0),
                row(Profile::Full, 1.2, 88.0, 1450.0, 900.0),
            ],
            baselines: vec![base("exec", 0.4, 3000.0), base("bwrap", 3.0, 300.0)],
            throughput: ThroughputInfo {
                launches: 10,
                concurrency: 2,
                failed_runs: 0,
                leaked_processes: 0,
                orphans_reaped: 3,
            },
            targets: vec![],
            breakdown: vec![],
            notes: vec!["unshare: not installed".into()],
            phases: vec![PhaseTime {
                phase: "startup".into(),
                seconds: 0.5,
            }],
            duration_s: 1.0,
        };
        r.derive();
        r
    }

    fn target<'a>(r: &'a Report, id: &str) -> &'a Target {
        r.targets.iter().find(|t| t.id == id).expect(id)
    }

    #[test]
    fn ratios_and_deltas_are_derived() {
        let r = sample();
        let full = r.profile(Profile::Full).expect("full");
        assert_eq!(full.x_none, Some(1.2 / 0.5));
        assert_eq!(full.x_exec, Some(1.2 / 0.4));
        assert_eq!(full.syscall_delta_ns, Some(8.0));
        assert_eq!(full.x_bwrap, Some(1.2 / 3.0));
        assert_eq!(full.throughput_x_bwrap, Some(3.0));
        assert_eq!(full.x_unshare, None, "unshare was not measured");
        assert_eq!(r.profile(Profile::None).expect("none").x_none, Some(1.0));
    }

    #[test]
    fn targets_are_evaluated_in_both_directions() {
        let r = sample();
        let t = target(&r, "startup-full-vs-bwrap");
        assert!((t.measured.expect("measured") - 0.4).abs() < 1e-9, "{t:?}");
        assert_eq!(t.status, Status::Met);
        assert_eq!(target(&r, "startup-full-vs-exec").status, Status::Missed); // 3.0x > 2.1x
        assert_eq!(
            target(&r, "startup-landlock-vs-ns-only").status,
            Status::Met
        ); // 1.01
        assert_eq!(
            target(&r, "startup-full-vs-landlock").status,
            Status::Missed
        ); // 1.188
        assert_eq!(target(&r, "getpid-full-vs-none").status, Status::Met); // 1.1
        assert_eq!(target(&r, "open-landlock-vs-ns-only").status, Status::Met); // 1.4
        let t = target(&r, "throughput-full-vs-bwrap");
        assert_eq!(
            (t.measured, t.cmp, t.status),
            (Some(3.0), Cmp::AtLeast, Status::Met)
        );
        assert_eq!(target(&r, "throughput-clean").status, Status::Met);
        assert!(r.startup_target_missed(Profile::Full));
        assert!(!r.startup_target_missed(Profile::None));
    }

    #[test]
    fn issue_19_targets() {
        let mut r = sample();
        // full 1.2 / bwrap 3.0 = 0.4; ns-only 1.0 / 3.0 = 0.33; p95 = 1.2 x median (summary()).
        assert_eq!(target(&r, "i19-startup-full-vs-bwrap").status, Status::Met);
        assert_eq!(
            target(&r, "i19-startup-ns-only-vs-bwrap").status,
            Status::Met
        );
        // Measured, but not judged: 10 rounds, 10 launches (see issue_19_conditions).
        for id in [
            "i19-startup-full-p95-vs-median",
            "i19-throughput-full-vs-bwrap",
        ] {
            let t = target(&r, id);
            assert_eq!(t.status, Status::NotMeasured, "{t:?}");
            assert!(t.measured.is_some() && t.note.is_some(), "{t:?}");
        }
        r.config.sizes.rounds = 100;
        r.throughput.launches = 1000;
        r.derive();
        assert_eq!(
            target(&r, "i19-startup-full-p95-vs-median").status,
            Status::Met
        );
        assert_eq!(
            target(&r, "i19-throughput-full-vs-bwrap").status,
            Status::Met
        ); // 3.0x
           // Nothing leaked is part of the throughput target.
        r.throughput.leaked_processes = 1;
        r.derive();
        let t = target(&r, "i19-throughput-full-vs-bwrap");
        assert_eq!(t.status, Status::Missed, "{t:?}");
        r.throughput.leaked_processes = 0;
        r.derive();
        // The launcher's RSS is judged once, against issue 19's 2 MiB (issue 5's 1.5 MiB row
        // is gone): 1.8 MiB is met, 2.1 MiB missed.
        let t = target(&r, "i19-launcher-peak-rss");
        assert_eq!((t.measured, t.status), (Some(1200.0 / 1024.0), Status::Met));
        let rss = |r: &Report| r.targets.iter().filter(|t| t.unit == "MiB").count();
        assert_eq!(rss(&r), 1, "{:?}", r.targets);
        for (kib, want) in [(1843, Status::Met), (2150, Status::Missed)] {
            let mut r = r.clone();
            r.profiles[3].peak_rss_kib = Some(kib);
            r.derive();
            assert_eq!(
                target(&r, "i19-launcher-peak-rss").status,
                want,
                "{kib} KiB"
            );
        }
        // none 0.5+0.7 with /bin/true against exec 0.4+0.7: 1.09x.
        assert_eq!(
            target(&r, "i19-startup-none-vs-exec-bin-true").status,
            Status::Met
        );
        let t = target(&r, "i19-startup-full-vs-full-nolimits");
        assert_eq!(t.status, Status::NotMeasured);
        r.baselines.push(base("full-nolimits", 1.0, 900.0));
        r.derive();
        let t = target(&r, "i19-startup-full-vs-full-nolimits");
        assert_eq!((t.measured, t.status), (Some(1.2), Status::Missed));
        // As another uid, full has no cgroup here: shown, not judged.
        r.host.uid = 65534;
        r.derive();
        let t = target(&r, "i19-startup-full-vs-full-nolimits");
        assert_eq!((t.measured, t.status), (Some(1.2), Status::NotMeasured));
    }

    #[test]
    fn missing_peer_is_not_measured_with_its_reason() {
        let mut r = sample();
        r.baselines[1] = BaselineRow {
            name: "bwrap".into(),
            version: None,
            error: Some("bwrap not installed".into()),
            startup: None,
            startup_bin_true: None,
            launches_per_s: None,
            throughput_failures: 0,
            peak_rss_kib: None,
        };
        r.derive();
        let t = target(&r, "startup-full-vs-bwrap");
        assert_eq!(t.status, Status::NotMeasured);
        assert_eq!(t.note.as_deref(), Some("bwrap not installed"));
        r.baselines.remove(1);
        r.derive();
        let t = target(&r, "throughput-full-vs-bwrap");
        assert_eq!(t.note.as_deref(), Some("bwrap is measured with --compare"));
    }

    #[test]
    fn failures_and_leaks_miss_the_clean_target() {
        let mut r = sample();
        r.throughput.leaked_processes = 1;
        r.derive();
        assert_eq!(target(&r, "throughput-clean").status, Status::Missed);
    }

    #[test]
    fn text_has_the_reference_columns_and_every_target() {
        let r = sample();
        let text = r.render_text();
        let header = text
            .lines()
            .find(|l| l.starts_with("profile"))
            .expect("header");
        let cols: Vec<&str> = header.split_whitespace().collect();
        assert_eq!(
            &cols[..4],
            ["profile", "startup_ms", "ns_per_syscall", "delta"]
        );
        let none = text
            .lines()
            .find(|l| l.starts_with("none "))
            .expect("none row");
        assert!(none.contains('—'), "none has no delta: {none}");
        let full = text
            .lines()
            .find(|l| l.starts_with("full "))
            .expect("full row");
        assert!(full.contains("+8"), "{full}");
        for t in &r.targets {
            assert!(text.contains(&t.what), "{} missing", t.what);
        }
        assert!(text.contains("MISSED"));
        assert!(text.contains("note: unshare: not installed"));
    }

    #[test]
    fn json_round_trips() {
        let r = sample();
        let text = serde_json::to_string(&r).expect("serialize");
        let back: Report = serde_json::from_str(&text).expect("parse");
        assert_eq!(back, r);
        let v: serde_json::Value = serde_json::from_str(&text).expect("value");
        assert_eq!(v["targets"][0]["cmp"], "<=");
        assert_eq!(v["targets"][0]["status"], "met");
        assert_eq!(v["profiles"][1]["profile"], "ns-only");
    }
}
