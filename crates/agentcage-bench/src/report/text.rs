//! The human-readable table of a [`Report`] (`agentcage bench` without `--json`).

use std::fmt::Write as _;

use super::{DepthCost, ProfileRow, Report, Status};
use crate::plan::Profile;
use crate::stats::ratio;

impl Report {
    /// The human-readable report.
    pub fn render_text(&self) -> String {
        let mut o = String::new();
        let h = &self.host;
        let c = &self.config;
        let _ = writeln!(
            o,
            "agentcage bench: {} rounds, seed {:#x}, {:.1} s on Linux {} {}, {}, {} CPUs{}, uid {}, {}",
            c.sizes.rounds,
            c.sizes.seed,
            self.duration_s,
            h.kernel,
            h.arch,
            h.cpu,
            h.cpus,
            if h.hypervisor { " (VM)" } else { "" },
            h.uid,
            h.started_at
        );
        let _ = writeln!(o, "agentcage: {}", c.agentcage);
        match &c.static_true {
            Some(t) => {
                let _ = writeln!(
                    o,
                    "static true: {t} ({} bytes, exit_group(0), no libc)",
                    crate::elf::TRUE_LEN
                );
            }
            None => {
                let _ = writeln!(o, "static true: not available on this host; /bin/true only");
            }
        }
        let _ = writeln!(o);
        let _ = writeln!(
            o,
            "{:<9} {:>10} {:>14} {:>6} {:>8} {:>7} {:>7} {:>11} {:>10} {:>8} {:>8} {:>10} {:>8}",
            "profile",
            "startup_ms",
            "ns_per_syscall",
            "delta",
            "p95_ms",
            "x_none",
            "x_exec",
            "bin_true_ms",
            "x_exec_bin",
            "open_ns",
            "stat_ns",
            "launches/s",
            "rss_kib"
        );
        let _ = writeln!(o, "{}", "-".repeat(128));
        for r in &self.profiles {
            if let Some(e) = &r.error {
                let _ = writeln!(o, "{:<9} unavailable: {e}", r.profile.name());
                continue;
            }
            let delta = match (r.profile, r.syscall_delta_ns) {
                (Profile::None, _) | (_, None) => "—".to_string(),
                (_, Some(d)) => format!("{d:+.0}"),
            };
            let _ = writeln!(
                o,
                "{:<9} {:>10} {:>14} {:>6} {:>8} {:>7} {:>7} {:>11} {:>10} {:>8} {:>8} {:>10} {:>8}",
                r.profile.name(),
                opt(r.startup.as_ref().map(|s| s.ms.median), 3),
                opt(r.ns_per_syscall.map(|s| s.median), 1),
                delta,
                opt(r.startup.as_ref().map(|s| s.ms.p95), 3),
                times(r.x_none),
                times(r.x_exec),
                opt(r.startup_bin_true.as_ref().map(|s| s.ms.median), 3),
                times(r.x_exec_bin_true),
                opt(r.open_ns, 0),
                opt(r.stat_ns, 0),
                opt(r.launches_per_s, 0),
                r.peak_rss_kib
                    .map(|k| k.to_string())
                    .unwrap_or_else(|| "—".into())
            );
        }
        let _ = writeln!(o);
        let full = self
            .profile(Profile::Full)
            .and_then(ProfileRow::startup_median);
        let full_tput = self.profile(Profile::Full).and_then(|r| r.launches_per_s);
        for b in &self.baselines {
            let label = match b.name.as_str() {
                "exec" => "exec (no sandbox)".to_string(),
                "unshare" => "unshare -Urnmpif".to_string(),
                other => other.to_string(),
            };
            if let Some(e) = &b.error {
                let _ = writeln!(o, "{label:<18} not measured: {e}");
                continue;
            }
            let _ = write!(
                o,
                "{label:<18} startup {} ms (p95 {}), /bin/true {} ms, {} launches/s, rss {} KiB",
                opt(b.startup.as_ref().map(|s| s.ms.median), 3),
                opt(b.startup.as_ref().map(|s| s.ms.p95), 3),
                opt(b.startup_bin_true.as_ref().map(|s| s.ms.median), 3),
                opt(b.launches_per_s, 0),
                b.peak_rss_kib
                    .map(|k| k.to_string())
                    .unwrap_or_else(|| "—".into())
            );
            if b.name != "exec" {
                let st = full
                    .zip(b.startup.as_ref().map(|s| s.ms.median))
                    .and_then(|(a, b)| ratio(a, b));
                let tp = full_tput
                    .zip(b.launches_per_s)
                    .and_then(|(a, b)| ratio(a, b));
                let _ = write!(
                    o,
                    "; full: {} its startup, {} its throughput",
                    times(st),
                    times(tp)
                );
            }
            if b.throughput_failures > 0 {
                let _ = write!(o, "; {} failed runs", b.throughput_failures);
            }
            if let Some(v) = &b.version {
                let _ = write!(o, " [{v}]");
            }
            let _ = writeln!(o);
        }
        if self
            .profiles
            .iter()
            .any(|r| r.x_bwrap.is_some() || r.x_unshare.is_some())
        {
            let _ = writeln!(o);
            let _ = writeln!(
                o,
                "ratios to peers (startup with the static true; throughput):"
            );
            for r in self.profiles.iter().filter(|r| r.error.is_none()) {
                let _ = writeln!(
                    o,
                    "  {:<9} startup {} bwrap, {} unshare; throughput {} bwrap",
                    r.profile.name(),
                    times(r.x_bwrap),
                    times(r.x_unshare),
                    times(r.throughput_x_bwrap)
                );
            }
        }
        if !c.files.is_empty() {
            let depths: Vec<String> = c.files.iter().map(|f| f.depth.to_string()).collect();
            let _ = writeln!(o);
            let _ = writeln!(o, "file ops, ns per op at depth {}:", depths.join("/"));
            for r in self.profiles.iter().filter(|r| !r.open_by_depth.is_empty()) {
                let _ = writeln!(
                    o,
                    "  {:<9} open+close {}   stat {}",
                    r.profile.name(),
                    by_depth(&r.open_by_depth),
                    by_depth(&r.stat_by_depth)
                );
            }
            for f in &c.files {
                let _ = writeln!(o, "  depth {}: {}", f.depth, f.path.display());
            }
        }
        let t = &self.throughput;
        let _ = writeln!(o);
        let _ = writeln!(
            o,
            "throughput: {} launches per contender at concurrency {}; {} failed agentcage runs; {} processes leaked, {} outlived their launcher briefly",
            t.launches, t.concurrency, t.failed_runs, t.leaked_processes, t.orphans_reaped
        );
        for r in &self.profiles {
            for e in &r.inner_errors {
                let short: String = e.chars().take(400).collect();
                let _ = writeln!(o, "error in {}: {short}", r.profile.name());
            }
        }
        let _ = writeln!(o);
        let _ = writeln!(o, "overhead targets:");
        for t in &self.targets {
            let fmt_v = |v: f64| match t.unit.as_str() {
                "x" => format!("{v:.3}x"),
                "MiB" => format!("{v:.2} MiB"),
                _ => format!("{v:.0} {}", t.unit),
            };
            let status = match t.status {
                Status::Met => "met",
                Status::Missed => "MISSED",
                Status::NotMeasured => "not measured",
            };
            let measured = t.measured.map(fmt_v).unwrap_or_else(|| "—".into());
            let _ = write!(
                o,
                "  {:<46} {:>10}  {} {:<10} {}",
                t.what,
                measured,
                t.cmp.symbol(),
                fmt_v(t.limit),
                status
            );
            if let Some(n) = &t.note {
                let _ = write!(o, " ({n})");
            }
            let _ = writeln!(o);
        }
        for b in &self.breakdown {
            let _ = writeln!(o);
            let _ = writeln!(o, "breakdown of {} ({}):", b.profile.name(), b.command);
            if b.stderr.trim().is_empty() {
                let _ = writeln!(o, "  (no output)");
            }
            for line in b.stderr.lines() {
                let _ = writeln!(o, "  {line}");
            }
        }
        if !self.notes.is_empty() {
            let _ = writeln!(o);
            for n in &self.notes {
                let _ = writeln!(o, "note: {n}");
            }
        }
        let _ = writeln!(o);
        if !self.phases.is_empty() {
            let parts: Vec<String> = self
                .phases
                .iter()
                .map(|p| format!("{} {:.1} s", p.phase, p.seconds))
                .collect();
            let _ = writeln!(o, "phases: {}", parts.join(", "));
        }
        let _ = writeln!(o, "commands (static true):");
        for cl in &c.commands {
            let _ = writeln!(o, "  {:<18} {}", cl.contender, cl.command);
        }
        o
    }
}

fn opt(v: Option<f64>, decimals: usize) -> String {
    v.map(|x| format!("{x:.decimals$}"))
        .unwrap_or_else(|| "—".into())
}

fn times(v: Option<f64>) -> String {
    v.map(|x| format!("{x:.2}x")).unwrap_or_else(|| "—".into())
}

fn by_depth(v: &[DepthCost]) -> String {
    v.iter()
        .map(|d| format!("{:.0}", d.ns.median))
        .collect::<Vec<_>>()
        .join("/")
}
