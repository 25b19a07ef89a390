//! `agentcage bench --format html`: the report as one self-contained page of inline SVG
//! charts (no JavaScript library, no external asset, no URL).
//!
//! - start-up per contender: every agentcage profile beside the plain exec, the peers
//!   (bwrap, `unshare`, when `--compare` measured them) and the agentcage variants
//!   (`full+egress`, `full-nolimits`): median as the bar, p95 as the whisker, for the static
//!   `true` and for `/bin/true`;
//! - per-syscall cost (ns per `getpid` inside, with the delta over `none`), file cost
//!   (open+close, stat), launch throughput and the launcher's peak RSS;
//! - the overhead targets as a table, the notes, the host and the exact commands.
//!
//! Every bar is a `<rect data-bar=CONTENDER data-series=SERIES>` inside an
//! `<svg data-chart=ID data-expect-bars=N>`, so the page (and the tests) can count them.
//! Every text is HTML-escaped ([`esc`]); a Content-Security-Policy (`default-src 'none'`, the
//! style and the self-check script allowed by their SHA-256) keeps the page from fetching
//! anything. The script only checks the charts (and any heatmap) and writes the verdict
//! into `#selfcheck`; it is the matrix page's script, shared with `esc` and `csp_hash` from `agentcage_matrix::report::html`.

use std::fmt::Write as _;

use agentcage_matrix::report::html::{csp_hash, esc, SELF_CHECK};

use super::{Report, Startup, Status};
use crate::stats::Summary;

/// The page's style sheet (allowed by its hash in the CSP).
const STYLE: &str = r#"
:root { color-scheme: light; }
body { font: 14px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 24px; color: #1d232a; background: #fafbfc; max-width: 1100px; }
h1 { font-size: 22px; margin: 0 0 4px; }
h2 { font-size: 17px; margin: 28px 0 6px; }
.facts { margin: 8px 0; padding: 0; list-style: none; color: #3b4650; }
code { font: 12px ui-monospace, "DejaVu Sans Mono", monospace; }
figure { margin: 8px 0 20px; }
figcaption { font-weight: 600; margin-bottom: 4px; }
svg.chart { background: #fff; border: 1px solid #e1e6eb; }
svg.chart text { font: 11px system-ui, sans-serif; fill: #1d232a; }
svg.chart text.axis { fill: #6b7782; }
svg.chart text.na { fill: #8a949e; font-style: italic; }
svg.chart line.grid { stroke: #e8ecf0; }
svg.chart line.wh { stroke: #1d232a; stroke-width: 1.2; }
.k-agentcage .s0 { fill: #4e79a7; } .k-agentcage .s1 { fill: #a0cbe8; }
.k-exec .s0 { fill: #76716e; } .k-exec .s1 { fill: #bab0ac; }
.k-peer .s0 { fill: #e15759; } .k-peer .s1 { fill: #ff9d9a; }
.k-variant .s0 { fill: #59a14f; } .k-variant .s1 { fill: #8cd17d; }
.legend { font-size: 12px; color: #3b4650; display: flex; flex-wrap: wrap; gap: 4px 14px; }
.legend svg { vertical-align: -2px; margin-right: 4px; }
table { border-collapse: collapse; font-size: 13px; }
th, td { border: 1px solid #d5dce3; padding: 3px 8px; text-align: left; }
thead th { background: #eef1f4; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.met td.st { background: #8fd19e; } tr.missed td.st { background: #f1a69b; } tr.not-measured td.st { background: #d9dde1; }
ul.notes { color: #3b4650; }
details pre { font: 11px ui-monospace, monospace; white-space: pre-wrap; background: #fff; border: 1px solid #e1e6eb; padding: 8px; }
#selfcheck { font-size: 11px; color: #8a949e; margin-top: 24px; }
"#;

/// A number for a label: 3 significant digits or so, no exponent.
fn num(v: f64) -> String {
    let a = v.abs();
    if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// `s` on one line, cut to `max` characters.
fn short(s: &str, max: usize) -> String {
    let s: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if s.chars().count() > max {
        let cut: String = s.chars().take(max.saturating_sub(1)).collect();
        format!("{cut}…")
    } else {
        s
    }
}

/// The smallest 1, 2, 2.5 or 5 times a power of ten that is >= `v` (> 0).
fn nice_ceil(v: f64) -> f64 {
    if !(v.is_finite() && v > 0.0) {
        return 1.0;
    }
    let p = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * p)
        .find(|x| *x >= v * (1.0 - 1e-12))
        .unwrap_or(10.0 * p)
}

/// What kind of contender a row is (its colour).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// An agentcage profile.
    Agentcage,
    /// The plain exec of the same `true`: the floor.
    Exec,
    /// Another sandbox (bwrap, unshare).
    Peer,
    /// An agentcage variant (`full+egress`, `full-nolimits`).
    Variant,
}

impl Kind {
    fn of_baseline(name: &str) -> Kind {
        match name {
            "exec" => Kind::Exec,
            "bwrap" | "unshare" => Kind::Peer,
            _ => Kind::Variant,
        }
    }

    fn class(self) -> &'static str {
        match self {
            Kind::Agentcage => "k-agentcage",
            Kind::Exec => "k-exec",
            Kind::Peer => "k-peer",
            Kind::Variant => "k-variant",
        }
    }

    fn text(self) -> &'static str {
        match self {
            Kind::Agentcage => "agentcage profile",
            Kind::Exec => "plain exec (the floor)",
            Kind::Peer => "peer sandbox",
            Kind::Variant => "agentcage variant",
        }
    }
}

/// One bar: the value, an optional whisker end, and its tooltip.
struct Bar {
    value: f64,
    whisker: Option<f64>,
    tip: String,
}

/// One row of a chart: a contender and one optional bar per series.
struct Row {
    label: String,
    /// The label's tooltip (a peer's version).
    about: Option<String>,
    kind: Kind,
    bars: Vec<Option<Bar>>,
    /// Shown (and in the tooltip) when no bar has a value.
    missing: Option<String>,
}

/// A horizontal bar chart in inline SVG.
fn chart(id: &str, caption: &str, unit: &str, series: &[&str], rows: &[Row]) -> String {
    const W: f64 = 860.0;
    const LABEL_W: f64 = 170.0;
    const RIGHT: f64 = 130.0;
    const BAR_H: f64 = 13.0;
    const GAP: f64 = 3.0;
    const PAD: f64 = 6.0;
    const TOP: f64 = 22.0;
    let plot_w = W - LABEL_W - RIGHT;
    let row_h = series.len() as f64 * (BAR_H + GAP) - GAP + 2.0 * PAD;
    let height = TOP + rows.len().max(1) as f64 * row_h + 6.0;
    let max = rows
        .iter()
        .flat_map(|r| r.bars.iter().flatten())
        .flat_map(|b| [Some(b.value), b.whisker])
        .flatten()
        .filter(|v| v.is_finite())
        .fold(0.0f64, f64::max);
    let top = nice_ceil(max);
    let x = |v: f64| LABEL_W + (v.max(0.0) / top).min(1.0) * plot_w;
    let nbars: usize = rows
        .iter()
        .map(|r| {
            r.bars
                .iter()
                .flatten()
                .filter(|b| b.value.is_finite())
                .count()
        })
        .sum();

    let mut s = String::new();
    let _ = writeln!(
        s,
        "<figure>\n<figcaption>{}</figcaption>\n<svg class=\"chart\" data-chart=\"{}\" \
         data-expect-bars=\"{nbars}\" width=\"{W}\" height=\"{height}\" viewBox=\"0 0 {W} {height}\" \
         role=\"img\" aria-label=\"{}\">",
        esc(caption),
        esc(id),
        esc(caption)
    );
    for i in 0..=5 {
        let v = top * f64::from(i) / 5.0;
        let gx = x(v);
        let _ = writeln!(
            s,
            "<line class=\"grid\" x1=\"{gx:.1}\" y1=\"{}\" x2=\"{gx:.1}\" y2=\"{:.1}\"/>\
             <text class=\"axis\" x=\"{gx:.1}\" y=\"14\" text-anchor=\"middle\">{}{}</text>",
            TOP - 4.0,
            height - 4.0,
            esc(&num(v)),
            if i == 5 {
                format!(" {}", esc(unit))
            } else {
                String::new()
            }
        );
    }
    for (ri, r) in rows.iter().enumerate() {
        let y0 = TOP + ri as f64 * row_h;
        let _ = writeln!(
            s,
            "<g class=\"{}\" data-row=\"{}\"><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}{}</text>",
            r.kind.class(),
            esc(&r.label),
            LABEL_W - 8.0,
            y0 + row_h / 2.0 + 4.0,
            r.about
                .as_deref()
                .map(|a| format!("<title>{}</title>", esc(a)))
                .unwrap_or_default(),
            esc(&short(&r.label, 24))
        );
        let any = r.bars.iter().flatten().any(|b| b.value.is_finite());
        if !any {
            let why = r.missing.as_deref().unwrap_or("not measured");
            let _ = writeln!(
                s,
                "<text class=\"na\" x=\"{:.1}\" y=\"{:.1}\"><title>{}</title>{}</text>",
                LABEL_W + 4.0,
                y0 + row_h / 2.0 + 4.0,
                esc(why),
                esc(&short(why, 90))
            );
        }
        for (si, b) in r.bars.iter().enumerate() {
            let Some(b) = b.as_ref().filter(|b| b.value.is_finite()) else {
                continue;
            };
            let y = y0 + PAD + si as f64 * (BAR_H + GAP);
            let w = (x(b.value) - LABEL_W).max(1.0);
            let _ = writeln!(
                s,
                "<rect class=\"s{si}\" data-bar=\"{}\" data-series=\"{}\" data-value=\"{}\" x=\"{LABEL_W}\" \
                 y=\"{y:.1}\" width=\"{w:.1}\" height=\"{BAR_H}\"><title>{}</title></rect>",
                esc(&r.label),
                esc(series.get(si).copied().unwrap_or("")),
                b.value,
                esc(&b.tip)
            );
            let mut end = x(b.value);
            if let Some(p) = b.whisker.filter(|p| p.is_finite() && *p > b.value) {
                let (x1, x2, ym) = (x(b.value), x(p), y + BAR_H / 2.0);
                let _ = writeln!(
                    s,
                    "<line class=\"wh\" x1=\"{x1:.1}\" y1=\"{ym:.1}\" x2=\"{x2:.1}\" y2=\"{ym:.1}\"/>\
                     <line class=\"wh\" x1=\"{x2:.1}\" y1=\"{:.1}\" x2=\"{x2:.1}\" y2=\"{:.1}\"/>",
                    y + 2.0,
                    y + BAR_H - 2.0
                );
                end = x2;
            }
            let _ = writeln!(
                s,
                "<text x=\"{:.1}\" y=\"{:.1}\">{} {}</text>",
                end + 4.0,
                y + BAR_H - 2.0,
                esc(&num(b.value)),
                esc(unit)
            );
        }
        s.push_str("</g>\n");
    }
    s.push_str("</svg>\n<div class=\"legend\">");
    let kinds: Vec<Kind> = {
        let mut k: Vec<Kind> = Vec::new();
        for r in rows {
            if !k.contains(&r.kind) {
                k.push(r.kind);
            }
        }
        k
    };
    for kind in kinds {
        for (si, name) in series.iter().enumerate() {
            let _ = write!(
                s,
                "<span><svg width=\"12\" height=\"12\"><g class=\"{}\"><rect class=\"s{si}\" width=\"12\" \
                 height=\"12\"/></g></svg>{}{}</span>",
                kind.class(),
                esc(kind.text()),
                if series.len() > 1 {
                    format!(", {}", esc(name))
                } else {
                    String::new()
                }
            );
        }
    }
    s.push_str("</div>\n</figure>\n");
    s
}

/// A start-up bar: median, whisker to p95.
fn startup_bar(label: &str, what: &str, s: Option<&Startup>) -> Option<Bar> {
    let s = s?;
    Some(Bar {
        value: s.ms.median,
        whisker: Some(s.ms.p95),
        tip: format!(
            "{label}, {what}: median {} ms, p95 {} ms, min {} ms, n={}{}",
            num(s.ms.median),
            num(s.ms.p95),
            num(s.ms.min),
            s.ms.n,
            if s.failures > 0 {
                format!(", {} failed runs excluded", s.failures)
            } else {
                String::new()
            }
        ),
    })
}

/// A bar from a summary of ns.
fn summary_bar(label: &str, what: &str, s: Option<&Summary>, extra: &str) -> Option<Bar> {
    let s = s?;
    Some(Bar {
        value: s.median,
        whisker: Some(s.p95),
        tip: format!(
            "{label}, {what}: median {} ns, p95 {} ns, n={}{extra}",
            num(s.median),
            num(s.p95),
            s.n
        ),
    })
}

/// A plain value bar.
fn value_bar(label: &str, what: &str, v: Option<f64>, unit: &str) -> Option<Bar> {
    let v = v?;
    Some(Bar {
        value: v,
        whisker: None,
        tip: format!("{label}, {what}: {} {unit}", num(v)),
    })
}

impl Report {
    /// One self-contained HTML page of the report (inline SVG charts, no script library, no
    /// URL): start-up per contender beside the peers, per-syscall and file costs, throughput,
    /// peak RSS, then the targets, the notes and the commands.
    pub fn render_html(&self) -> String {
        let h = &self.host;
        let c = &self.config;
        let mut o = format!(
            "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
             <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src {}; \
             script-src {}; img-src 'none'; base-uri 'none'; form-action 'none'\">\n\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
             <title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<h1>agentcage bench</h1>\n",
            csp_hash(STYLE),
            csp_hash(SELF_CHECK),
            esc(&format!("agentcage bench: Linux {} {}", h.kernel, h.started_at))
        );
        let facts = [
            format!(
                "Linux {} {}, {}, {} CPUs{}, uid {}",
                h.kernel,
                h.arch,
                h.cpu,
                h.cpus,
                if h.hypervisor { " (VM)" } else { "" },
                h.uid
            ),
            format!(
                "started {}, {:.1} s; {} start-up rounds after {} warm-up launches{}{}, seed {:#x}",
                h.started_at,
                self.duration_s,
                c.sizes.rounds,
                c.sizes.warmup,
                if c.sizes.quick { ", --quick" } else { "" },
                if c.sizes.compare { ", --compare" } else { "" },
                c.sizes.seed
            ),
            format!("agentcage: {}", c.agentcage),
            match &c.static_true {
                Some(t) => format!("static true: {t} (exit_group(0), no libc)"),
                None => "static true: not available on this host; /bin/true only".to_string(),
            },
        ];
        o.push_str("<ul class=\"facts\">\n");
        for f in facts {
            let _ = writeln!(o, "<li>{}</li>", esc(&f));
        }
        o.push_str("</ul>\n");

        // Start-up: profiles, then the exec floor, the peers and the variants.
        let mut rows: Vec<Row> = self
            .profiles
            .iter()
            .map(|p| {
                let label = p.profile.name().to_string();
                Row {
                    about: None,
                    bars: vec![
                        startup_bar(&label, "static true", p.startup.as_ref()),
                        startup_bar(&label, "/bin/true", p.startup_bin_true.as_ref()),
                    ],
                    missing: p.error.clone(),
                    kind: Kind::Agentcage,
                    label,
                }
            })
            .collect();
        let mut bases: Vec<&super::BaselineRow> = self.baselines.iter().collect();
        bases.sort_by_key(|b| match Kind::of_baseline(&b.name) {
            Kind::Exec => 0,
            Kind::Peer => 1,
            _ => 2,
        });
        for b in &bases {
            let label = b.name.clone();
            rows.push(Row {
                about: b.version.clone(),
                bars: vec![
                    startup_bar(&label, "static true", b.startup.as_ref()),
                    startup_bar(&label, "/bin/true", b.startup_bin_true.as_ref()),
                ],
                missing: b.error.clone(),
                kind: Kind::of_baseline(&b.name),
                label,
            });
        }
        o.push_str("<h2>Start-up: launch to exit</h2>\n<p>Median (bar) and p95 (whisker) over \
                    interleaved, shuffled rounds; every contender runs the same <code>true</code>.</p>\n");
        o.push_str(&chart(
            "startup",
            "start-up, launch to exit (ms)",
            "ms",
            &["static true", "/bin/true"],
            &rows,
        ));

        // Per-syscall cost.
        let rows: Vec<Row> = self
            .profiles
            .iter()
            .map(|p| {
                let label = p.profile.name().to_string();
                let delta = p
                    .syscall_delta_ns
                    .map(|d| format!(", {d:+.1} ns over none"))
                    .unwrap_or_default();
                Row {
                    about: None,
                    bars: vec![summary_bar(
                        &label,
                        "getpid",
                        p.ns_per_syscall.as_ref(),
                        &delta,
                    )],
                    missing: p.error.clone(),
                    kind: Kind::Agentcage,
                    label,
                }
            })
            .collect();
        o.push_str("<h2>Per-syscall cost</h2>\n<p>A <code>getpid</code> loop inside the sandbox: \
                    the seccomp filter's share is the delta over <code>none</code> (in the tooltip).</p>\n");
        o.push_str(&chart(
            "syscall",
            "ns per getpid inside the sandbox",
            "ns",
            &["getpid"],
            &rows,
        ));

        // File cost.
        let rows: Vec<Row> = self
            .profiles
            .iter()
            .map(|p| {
                let label = p.profile.name().to_string();
                Row {
                    about: None,
                    bars: vec![
                        value_bar(&label, "open+close", p.open_ns, "ns (mean over depths)"),
                        value_bar(&label, "stat", p.stat_ns, "ns (mean over depths)"),
                    ],
                    missing: p.error.clone(),
                    kind: Kind::Agentcage,
                    label,
                }
            })
            .collect();
        o.push_str("<h2>File cost</h2>\n");
        o.push_str(&chart(
            "files",
            "ns per open+close and per stat under /usr (mean of the per-depth medians)",
            "ns",
            &["open+close", "stat"],
            &rows,
        ));

        // Throughput and RSS: profiles and baselines.
        let all = || {
            self.profiles
                .iter()
                .map(|p| {
                    (
                        p.profile.name().to_string(),
                        Kind::Agentcage,
                        p.launches_per_s,
                        p.peak_rss_kib,
                        p.error.clone(),
                    )
                })
                .chain(bases.iter().map(|b| {
                    (
                        b.name.clone(),
                        Kind::of_baseline(&b.name),
                        b.launches_per_s,
                        b.peak_rss_kib,
                        b.error.clone(),
                    )
                }))
        };
        let tput: Vec<Row> = all()
            .map(|(label, kind, lps, _, err)| Row {
                about: None,
                bars: vec![value_bar(&label, "launches/s", lps, "launches/s")],
                missing: err.or_else(|| {
                    (self.throughput.launches == 0)
                        .then(|| "no throughput run (--launches 0)".to_string())
                }),
                kind,
                label,
            })
            .collect();
        let _ = writeln!(
            o,
            "<h2>Launch throughput</h2>\n<p>{} launches per contender, {} in flight; {} failed \
             agentcage runs, {} leaked processes.</p>",
            self.throughput.launches,
            self.throughput.concurrency,
            self.throughput.failed_runs,
            self.throughput.leaked_processes
        );
        o.push_str(&chart(
            "throughput",
            "launches per second",
            "/s",
            &["launches/s"],
            &tput,
        ));
        let rss: Vec<Row> = all()
            .map(|(label, kind, _, kib, err)| Row {
                about: None,
                bars: vec![value_bar(
                    &label,
                    "peak RSS",
                    kib.map(|k| k as f64 / 1024.0),
                    "MiB",
                )],
                missing: err,
                kind,
                label,
            })
            .collect();
        o.push_str("<h2>Launcher peak RSS</h2>\n");
        o.push_str(&chart(
            "rss",
            "peak RSS of the launcher (MiB)",
            "MiB",
            &["peak RSS"],
            &rss,
        ));

        // Targets.
        o.push_str("<h2>Overhead targets</h2>\n<table class=\"targets\">\n<thead><tr><th>target</th>\
                    <th>what</th><th>measured</th><th>limit</th><th>status</th></tr></thead>\n<tbody>\n");
        for t in &self.targets {
            let (class, st) = match t.status {
                Status::Met => ("met", "met"),
                Status::Missed => ("missed", "missed"),
                Status::NotMeasured => ("not-measured", "not measured"),
            };
            let measured = match t.measured {
                Some(m) => format!("{} {}", num(m), t.unit),
                None => "-".to_string(),
            };
            let _ = writeln!(
                o,
                "<tr class=\"{class}\" data-target=\"{}\"><td><code>{}</code></td><td>{}</td>\
                 <td class=\"num\">{}</td><td class=\"num\">{} {} {}</td><td class=\"st\" title=\"{}\">{st}</td></tr>",
                esc(&t.id),
                esc(&t.id),
                esc(&t.what),
                esc(&measured),
                esc(t.cmp.symbol()),
                esc(&num(t.limit)),
                esc(&t.unit),
                esc(t.note.as_deref().unwrap_or(""))
            );
        }
        o.push_str("</tbody>\n</table>\n");

        if !self.notes.is_empty() {
            o.push_str("<h2>Notes</h2>\n<ul class=\"notes\">\n");
            for n in &self.notes {
                let _ = writeln!(o, "<li>{}</li>", esc(n));
            }
            o.push_str("</ul>\n");
        }
        o.push_str("<h2>How it was measured</h2>\n<details><summary>commands, phases, files</summary>\n<pre>");
        for cl in &c.commands {
            let _ = writeln!(o, "{}: {}", esc(&cl.contender), esc(&cl.command));
        }
        for p in &self.phases {
            let _ = writeln!(o, "phase {}: {:.1} s", esc(&p.phase), p.seconds);
        }
        for f in &c.files {
            let _ = writeln!(
                o,
                "file at depth {}: {}",
                f.depth,
                esc(&f.path.display().to_string())
            );
        }
        for b in &self.breakdown {
            let _ = writeln!(
                o,
                "breakdown of {} ({}):\n{}",
                esc(b.profile.name()),
                esc(&b.command),
                esc(&b.stderr)
            );
        }
        o.push_str(
            "</pre>\n</details>\n<p>Generated by <code>agentcage bench --format html</code>.</p>\n",
        );
        let _ = write!(
            o,
            "<p id=\"selfcheck\" data-selfcheck=\"pending\">page self-check: needs JavaScript</p>\n\
             <script>{SELF_CHECK}</script>\n</body>\n</html>\n"
        );
        o
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::sample;
    use super::super::BaselineRow;
    use super::*;

    fn scripts(page: &str) -> Vec<&str> {
        let mut out = Vec::new();
        let mut rest = page;
        while let Some(i) = rest.find("<script") {
            let after = &rest[i..];
            let body = &after[after.find('>').expect("tag closes") + 1..];
            let close = body.find("</script>").expect("element ends");
            out.push(&body[..close]);
            rest = &body[close..];
        }
        out
    }

    /// The `<svg data-chart="ID" ...>...</svg>` element.
    fn chart_of<'a>(page: &'a str, id: &str) -> &'a str {
        let start = page
            .find(&format!("data-chart=\"{id}\""))
            .expect("chart present");
        let end = page[start..].find("</svg>").expect("chart ends");
        &page[start..start + end]
    }

    #[test]
    fn charts_have_one_bar_per_measured_value() {
        let mut r = sample();
        r.baselines.push(BaselineRow {
            name: "unshare".into(),
            version: None,
            error: Some("unshare: not installed".into()),
            startup: None,
            startup_bin_true: None,
            launches_per_s: None,
            throughput_failures: 0,
            peak_rss_kib: None,
        });
        let page = r.render_html();
        // 4 profiles + exec + bwrap, two series each; unshare shows its reason instead.
        let startup = chart_of(&page, "startup");
        assert_eq!(startup.matches("<rect ").count(), 12);
        assert!(startup.contains("data-expect-bars=\"12\""));
        assert!(startup.contains("data-bar=\"bwrap\" data-series=\"static true\" data-value=\"3\""));
        assert!(startup.contains("<title>unshare: not installed</title>"));
        assert_eq!(chart_of(&page, "syscall").matches("<rect ").count(), 4);
        assert_eq!(chart_of(&page, "files").matches("<rect ").count(), 8);
        assert_eq!(chart_of(&page, "throughput").matches("<rect ").count(), 6);
        assert!(page.contains("data-target=\"startup-full-vs-bwrap\""));
        assert_eq!(r.render_html(), page, "deterministic");
    }

    #[test]
    fn self_contained_and_csp_matches() {
        let page = sample().render_html();
        assert!(!page.contains("http://") && !page.contains("https://"));
        assert!(!page.contains("src=") && !page.contains("href=") && !page.contains("url("));
        assert_eq!(scripts(&page), [SELF_CHECK]);
        assert!(page.contains(&format!("script-src {};", csp_hash(SELF_CHECK))));
        assert!(page.contains(&format!("style-src {};", csp_hash(STYLE))));
        assert_eq!(
            csp_hash(""),
            "'sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU='"
        );
    }

    #[test]
    fn hostile_fields_cannot_inject() {
        let evil = "<script>document.title='PWNED'</script><img src=x onerror=alert(1)>\"'&";
        let mut r = sample();
        r.host.cpu = evil.into();
        r.host.kernel = evil.into();
        r.config.agentcage = evil.into();
        r.baselines[1].name = format!("bwrap\"><script>alert(1)</script>{evil}");
        r.baselines[1].version = Some(evil.into());
        r.baselines[0].error = Some(evil.into());
        r.baselines[0].startup = None;
        r.baselines[0].startup_bin_true = None;
        r.notes.push(evil.into());
        r.targets[0].what = evil.into();
        r.targets[0].note = Some(evil.into());
        let page = r.render_html();
        assert_eq!(scripts(&page), [SELF_CHECK], "no injected script element");
        assert!(!page.contains("<img"), "no injected element");
        assert!(!page.contains("\"><script"));
        assert!(page.contains("&lt;script&gt;document.title=&#39;PWNED&#39;&lt;/script&gt;"));
    }

    #[test]
    fn nice_scale_and_numbers() {
        assert_eq!(nice_ceil(0.0), 1.0);
        assert_eq!(nice_ceil(f64::NAN), 1.0);
        assert_eq!(nice_ceil(1.0), 1.0);
        assert_eq!(nice_ceil(1.2), 2.0);
        assert_eq!(nice_ceil(2.2), 2.5);
        assert_eq!(nice_ceil(48.8), 50.0);
        assert_eq!(nice_ceil(622.0), 1000.0);
        assert_eq!(num(0.2), "0.20");
        assert_eq!(num(48.81), "48.8");
        assert_eq!(num(622.4), "622");
    }

    #[test]
    fn from_json_round_trip_and_refusals() {
        let r = sample();
        let json = serde_json::to_string(&r).expect("json");
        let back = Report::from_json(&json).expect("reads its own JSON");
        assert_eq!(back.render_html(), r.render_html());
        assert!(Report::from_json("{")
            .expect_err("bad")
            .contains("not JSON"));
        assert!(
            Report::from_json("{\"schema\": \"agentcage-bench-sessions/1\"}")
                .expect_err("other report")
                .contains("only")
        );
        assert!(Report::from_json("{}")
            .expect_err("no schema")
            .contains("no \"schema\""));
        assert!(Report::from_json("{\"schema\": \"agentcage-bench/1\"}")
            .expect_err("fields")
            .contains("missing field"));
    }
}
