//! The overhead targets (issue 5's, issue 19's and the egress engine's): each compares a
//! measured ratio, count or size of a [`Report`] with its limit. `derive` fills
//! [`Report::targets`]; `text.rs` and `html.rs` print them as they are.

use serde::{Deserialize, Serialize};

use super::{ProfileRow, Report};
use crate::plan::Profile;
use crate::stats::ratio;

/// Direction of a target's limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Cmp {
    /// Met when measured <= limit.
    #[serde(rename = "<=")]
    AtMost,
    /// Met when measured >= limit.
    #[serde(rename = ">=")]
    AtLeast,
}

impl Cmp {
    pub(super) fn symbol(self) -> &'static str {
        match self {
            Cmp::AtMost => "<=",
            Cmp::AtLeast => ">=",
        }
    }
}

/// Outcome of a target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// Within the limit.
    Met,
    /// Outside the limit.
    Missed,
    /// Not measured in this run (see the note).
    NotMeasured,
}

/// One overhead target: a measured ratio, count or size against its limit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Target {
    /// Stable id.
    pub id: String,
    /// What is compared.
    pub what: String,
    /// The measured value (a ratio, a count or MiB; see `unit`).
    pub measured: Option<f64>,
    /// The limit.
    pub limit: f64,
    /// Unit of `measured` and `limit` (`x`, `runs`, `MiB`).
    pub unit: String,
    /// Direction.
    pub cmp: Cmp,
    /// Outcome.
    pub status: Status,
    /// Why it was not measured, or extra context.
    pub note: Option<String>,
}

impl Target {
    fn check(
        id: &str,
        what: &str,
        measured: Option<f64>,
        cmp: Cmp,
        limit: f64,
        unit: &str,
        missing: &str,
    ) -> Target {
        let status = match measured {
            None => Status::NotMeasured,
            Some(m) => {
                let ok = match cmp {
                    Cmp::AtMost => m <= limit,
                    Cmp::AtLeast => m >= limit,
                };
                if ok {
                    Status::Met
                } else {
                    Status::Missed
                }
            }
        };
        Target {
            id: id.into(),
            what: what.into(),
            measured,
            limit,
            unit: unit.into(),
            cmp,
            status,
            note: measured.is_none().then(|| missing.to_string()),
        }
    }
}

/// Issue 19's throughput target: this many launches per contender at this concurrency.
const ISSUE_19_LAUNCHES: u32 = 1000;
const ISSUE_19_CONCURRENCY: u32 = 2;

impl Report {
    /// The targets of this report's measurements (see [`Report::derive`]).
    pub(super) fn evaluate_targets(&self) -> Vec<Target> {
        let mut targets = self.all_targets();
        self.issue_19_conditions(&mut targets);
        targets
    }

    /// What issue 19 says beyond the ratio: a value measured under other conditions is shown
    /// but not judged (`not measured`, with why), so that a `--quick` run or a run as another
    /// user cannot report the target as met.
    fn issue_19_conditions(&self, targets: &mut [Target]) {
        let t = &self.throughput;
        let tp = self.config.sizes;
        let clean = t.failed_runs + t.leaked_processes;
        for x in targets.iter_mut().filter(|x| x.measured.is_some()) {
            let unjudged = match x.id.as_str() {
                // "1000 launches at concurrency 2 ... nothing leaked".
                "i19-throughput-full-vs-bwrap"
                    if t.launches != ISSUE_19_LAUNCHES || t.concurrency != ISSUE_19_CONCURRENCY =>
                {
                    Some(format!(
                        "{} launches at concurrency {}; the target is {ISSUE_19_LAUNCHES} at \
                         concurrency {ISSUE_19_CONCURRENCY}: run without --quick",
                        t.launches, t.concurrency
                    ))
                }
                "i19-throughput-full-vs-bwrap" if clean > 0 => {
                    x.status = Status::Missed;
                    x.note = Some(format!(
                        "{} failed runs and {} leaked processes: the target allows none",
                        t.failed_runs, t.leaked_processes
                    ));
                    None
                }
                // "`full` as root with its memory/pids cgroup": another uid has none here
                // unless one is delegated, and the ratio would compare full with itself.
                "i19-startup-full-vs-full-nolimits" if self.host.uid != 0 => Some(format!(
                    "run as uid {}; the target is the cost of full's cgroup as root",
                    self.host.uid
                )),
                // A p95 of a handful of rounds is their maximum.
                "i19-startup-full-p95-vs-median" if tp.rounds < 100 => Some(format!(
                    "{} rounds; a p95 needs at least 100: run without --quick",
                    tp.rounds
                )),
                _ => None,
            };
            if let Some(why) = unjudged {
                x.status = Status::NotMeasured;
                x.note = Some(why);
            }
        }
    }

    fn all_targets(&self) -> Vec<Target> {
        let startup = |p: Profile| self.profile(p).and_then(ProfileRow::startup_median);
        let base_startup = |n: &str| {
            self.baseline(n)
                .and_then(|b| b.startup.as_ref())
                .map(|s| s.ms.median)
        };
        let q = |a: Option<f64>, b: Option<f64>| a.zip(b).and_then(|(a, b)| ratio(a, b));
        let full = startup(Profile::Full);
        let landlock = startup(Profile::Landlock);
        let ns_only = startup(Profile::NsOnly);
        let peer_missing = |name: &str| {
            self.baseline(name)
                .and_then(|b| b.error.clone())
                .unwrap_or_else(|| format!("{name} is measured with --compare"))
        };
        let need = |ps: &[Profile]| -> String {
            let names: Vec<&str> = ps.iter().map(|p| p.name()).collect();
            format!("needs profiles {}", names.join(", "))
        };
        let exec_bin_ratio = self.profile(Profile::Full).and_then(|r| r.x_exec_bin_true);
        let getpid = |p: Profile| {
            self.profile(p)
                .and_then(|r| r.ns_per_syscall)
                .map(|s| s.median)
        };
        let open = |p: Profile| self.profile(p).and_then(|r| r.open_ns);
        let tput = |p: Option<f64>, b: Option<f64>| q(p, b);
        let full_tput = self.profile(Profile::Full).and_then(|r| r.launches_per_s);
        let bwrap_tput = self.baseline("bwrap").and_then(|b| b.launches_per_s);
        let rss = self
            .profiles
            .iter()
            .filter_map(|r| r.peak_rss_kib)
            .max()
            .map(|kib| kib as f64 / 1024.0);
        let full_p95_vs_median = self
            .profile(Profile::Full)
            .and_then(|r| r.startup.as_ref())
            .and_then(|s| ratio(s.ms.p95, s.ms.median));
        let none_vs_exec_bin = self.profile(Profile::None).and_then(|r| r.x_exec_bin_true);
        let clean = (self.throughput.launches > 0
            && self.profiles.iter().any(|r| r.launches_per_s.is_some()))
        .then(|| f64::from(self.throughput.failed_runs + self.throughput.leaked_processes));

        vec![
            Target::check(
                "startup-full-vs-bwrap",
                "full startup / bwrap startup (static true)",
                q(full, base_startup("bwrap")),
                Cmp::AtMost,
                0.5,
                "x",
                &peer_missing("bwrap"),
            ),
            Target::check(
                "startup-full-vs-exec",
                "full startup / plain exec (static true)",
                q(full, base_startup("exec")),
                Cmp::AtMost,
                2.1,
                "x",
                &need(&[Profile::Full]),
            ),
            Target::check(
                "startup-full-vs-exec-bin-true",
                "full startup / plain exec (/bin/true)",
                exec_bin_ratio,
                Cmp::AtMost,
                2.1,
                "x",
                &need(&[Profile::Full]),
            ),
            Target::check(
                "startup-landlock-vs-ns-only",
                "landlock startup / ns-only startup",
                q(landlock, ns_only),
                Cmp::AtMost,
                1.02,
                "x",
                &need(&[Profile::Landlock, Profile::NsOnly]),
            ),
            Target::check(
                "startup-full-vs-landlock",
                "full startup / landlock startup",
                q(full, landlock),
                Cmp::AtMost,
                1.07,
                "x",
                &need(&[Profile::Full, Profile::Landlock]),
            ),
            Target::check(
                "getpid-full-vs-none",
                "getpid under full / under none",
                q(getpid(Profile::Full), getpid(Profile::None)),
                Cmp::AtMost,
                1.12,
                "x",
                &need(&[Profile::Full, Profile::None]),
            ),
            Target::check(
                "open-landlock-vs-ns-only",
                "open+close under landlock / under ns-only",
                q(open(Profile::Landlock), open(Profile::NsOnly)),
                Cmp::AtMost,
                1.5,
                "x",
                &need(&[Profile::Landlock, Profile::NsOnly]),
            ),
            Target::check(
                "throughput-full-vs-bwrap",
                &format!(
                    "launches/s at concurrency {}: full / bwrap",
                    self.throughput.concurrency
                ),
                tput(full_tput, bwrap_tput),
                Cmp::AtLeast,
                2.5,
                "x",
                &peer_missing("bwrap"),
            ),
            Target::check(
                "throughput-clean",
                "failed runs + leaked processes",
                clean,
                Cmp::AtMost,
                0.0,
                "runs",
                "no throughput run",
            ),
            // Issue 19 (cold start).
            Target::check(
                "i19-startup-full-vs-bwrap",
                "#19 full / bwrap startup (static true)",
                q(full, base_startup("bwrap")),
                Cmp::AtMost,
                0.6,
                "x",
                &peer_missing("bwrap"),
            ),
            Target::check(
                "i19-startup-ns-only-vs-bwrap",
                "#19 ns-only / bwrap startup (static true)",
                q(ns_only, base_startup("bwrap")),
                Cmp::AtMost,
                0.55,
                "x",
                &peer_missing("bwrap"),
            ),
            Target::check(
                "i19-startup-none-vs-exec-bin-true",
                "#19 none / plain exec startup (/bin/true)",
                none_vs_exec_bin,
                Cmp::AtMost,
                1.6,
                "x",
                &need(&[Profile::None]),
            ),
            Target::check(
                "i19-startup-full-vs-full-nolimits",
                "#19 full / full --without limits startup",
                q(full, base_startup("full-nolimits")),
                Cmp::AtMost,
                1.1,
                "x",
                &need(&[Profile::Full]),
            ),
            Target::check(
                "i19-startup-full-p95-vs-median",
                "#19 full startup p95 / median",
                full_p95_vs_median,
                Cmp::AtMost,
                1.3,
                "x",
                &need(&[Profile::Full]),
            ),
            Target::check(
                "i19-throughput-full-vs-bwrap",
                &format!(
                    "#19 launches/s at concurrency {}: full / bwrap",
                    self.throughput.concurrency
                ),
                tput(full_tput, bwrap_tput),
                Cmp::AtLeast,
                2.0,
                "x",
                &peer_missing("bwrap"),
            ),
            // The launcher's RSS has one target, issue 19's (2 MiB, the newer decision): issue
            // 5's 1.5 MiB row beside it judged the same value against an older limit.
            Target::check(
                "i19-launcher-peak-rss",
                "#19 launcher peak RSS (max over profiles)",
                rss,
                Cmp::AtMost,
                2.0,
                "MiB",
                "not measured (needs the x86_64 rss-probe)",
            ),
            Target::check(
                "startup-full-egress-vs-full",
                "full --allow-host startup / full startup (static true): the egress engine",
                q(base_startup("full+egress"), full),
                Cmp::AtMost,
                1.15,
                "x",
                &need(&[Profile::Full]),
            ),
        ]
    }

    /// Whether a start-up target involving `p` was missed (the breakdown is then useful).
    pub fn startup_target_missed(&self, p: Profile) -> bool {
        let name = p.name();
        self.targets.iter().any(|t| {
            t.status == Status::Missed && t.id.starts_with("startup-") && t.id.contains(name)
        })
    }
}
