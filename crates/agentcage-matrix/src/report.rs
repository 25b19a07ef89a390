//! The matrix as data ([`Matrix`]) and its renderings: text (the reference design's
//! per-profile tables, then one grid of ops by profiles), Markdown, JSON and one
//! self-contained HTML page ([`html`]). [`Matrix::from_json`] reads the JSON back, so a saved
//! matrix can be rendered again (`agentcage matrix --from-json FILE`).
//!
//! Every renderer is a pure function of the [`Matrix`], so output is deterministic and
//! snapshot-tested. The JSON keys are a published format: extend, never rename.

pub mod html;

use std::collections::BTreeSet;
use std::fmt::Write as _;

use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};

use crate::attribution::{self, Evidence, RunKey};
use crate::deps::{Category, Layer, Profile, Verdict};

/// What the matrix knows about the host it ran on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Host {
    /// Kernel release (`/proc/sys/kernel/osrelease`).
    pub kernel: String,
    /// Landlock ABI version; null when Landlock is unavailable.
    pub landlock_abi: Option<u32>,
    /// Why Landlock is unavailable, when it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub landlock_error: Option<String>,
    /// The caller's uid.
    pub uid: u32,
    /// The caller's gid.
    pub gid: u32,
    /// The `agentcage` binary that ran the sandboxes.
    pub agentcage: String,
    /// Whether layers were attributed by ablation runs (false with `--no-attribution`).
    pub attribution: bool,
    /// `agentcage doctor --json` output (what the launcher can enforce here), when available.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub doctor: Option<serde_json::Value>,
    /// What the launcher enforces of Landlock under `full` on this host, one line per right
    /// (`fs.truncate: enforced (ABI 3)`, `net.bind_tcp: not enforced: needs ABI 4...`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub landlock_enforcement: Vec<String>,
}

/// One cell: an op under one profile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cell {
    /// ALLOWED, BLOCKED, SKIPPED or INFO, as the probe reported it.
    pub result: Verdict,
    /// The probe's errno (evidence shown, never interpreted).
    pub errno: Option<String>,
    /// The probe's detail.
    pub detail: String,
    /// Measured blockers: layer names or `host`.
    pub blocker: Vec<String>,
    /// No single removal let the op through: each blocker blocks it on its own.
    pub redundant: bool,
    /// Experiments that gave no evidence, and how redundant blockers were tested.
    #[serde(default)]
    pub notes: Vec<String>,
}

/// One op across profiles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpRow {
    /// Stable id (`fs.write.root`).
    pub id: String,
    /// Human title (`write /evil`).
    pub title: String,
    /// The probe's category.
    pub category: Category,
    /// One cell per profile that printed a row for this op, in profile order.
    pub results: Vec<(Profile, Cell)>,
}

/// A `Vec<(Profile, Cell)>` serialized as a JSON object in profile order.
struct ResultsMap<'a>(&'a [(Profile, Cell)]);

impl Serialize for ResultsMap<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (p, c) in self.0 {
            m.serialize_entry(p.name(), c)?;
        }
        m.end()
    }
}

impl Serialize for OpRow {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(4))?;
        m.serialize_entry("id", &self.id)?;
        m.serialize_entry("title", &self.title)?;
        m.serialize_entry("category", &self.category)?;
        m.serialize_entry("results", &ResultsMap(&self.results))?;
        m.end()
    }
}

/// One probe run the matrix made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunRecord {
    /// The `--profile` given.
    pub profile: Profile,
    /// The `--without` layers given.
    pub without: Vec<Layer>,
    /// `ok`, `setup-failed` or `failed`.
    pub status: &'static str,
    /// Why it failed (empty when ok).
    pub detail: String,
    /// How many op rows it produced (ablation runs only ask for the ops that need them).
    pub rows: usize,
}

/// The whole matrix.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Matrix {
    /// Host facts.
    pub host: Host,
    /// The profiles shown, weakest first.
    pub profiles: Vec<Profile>,
    /// The ops, in probe order.
    pub ops: Vec<OpRow>,
    /// Every run made (main profiles and ablations), in a stable order.
    pub runs: Vec<RunRecord>,
}

impl Matrix {
    /// Builds the matrix from the evidence. With `attribution` false no blocker is computed.
    pub fn build(host: Host, profiles: &[Profile], ev: &Evidence, attribution: bool) -> Matrix {
        let mut ops = Vec::new();
        for id in attribution::op_ids(ev) {
            let mut results = Vec::new();
            let mut first = None;
            for &p in profiles {
                let Some(row) = ev.row(&RunKey::main(p), &id) else {
                    continue;
                };
                first.get_or_insert_with(|| row.clone());
                let a = if attribution {
                    attribution::attribute(ev, p, &id, &mut attribution::Needed::new())
                } else {
                    attribution::Attribution::default()
                };
                results.push((
                    p,
                    Cell {
                        result: row.result,
                        errno: row.errno.clone(),
                        detail: row.detail.clone(),
                        blocker: a.blocker,
                        redundant: a.redundant,
                        notes: a.notes,
                    },
                ));
            }
            if let Some(r) = first {
                ops.push(OpRow {
                    id: r.id,
                    title: r.title,
                    category: r.category,
                    results,
                });
            }
        }
        let runs = ev
            .summaries()
            .into_iter()
            .map(|r| RunRecord {
                profile: r.key.profile,
                without: r.key.without(),
                status: r.status,
                detail: r.detail,
                rows: r.rows,
            })
            .collect();
        Matrix {
            host,
            profiles: profiles.to_vec(),
            ops,
            runs,
        }
    }

    /// JSON, pretty-printed, ending in a newline.
    /// One line for the end of a run (stderr): the ops, how many each profile blocks (of
    /// those tried), and how many blocks are redundant (another layer blocks them too).
    pub fn summary_line(&self) -> String {
        let tried = |p: &Profile| {
            self.ops
                .iter()
                .filter_map(|o| o.results.iter().find(|(q, _)| q == p))
                .filter(|(_, c)| matches!(c.result, Verdict::Allowed | Verdict::Blocked))
                .collect::<Vec<_>>()
        };
        let per: Vec<String> = self
            .profiles
            .iter()
            .map(|p| {
                let t = tried(p);
                let blocked = t
                    .iter()
                    .filter(|(_, c)| c.result == Verdict::Blocked)
                    .count();
                format!("{p} {blocked}/{}", t.len())
            })
            .collect();
        let redundant = self
            .ops
            .iter()
            .flat_map(|o| o.results.iter())
            .filter(|(_, c)| c.redundant)
            .count();
        format!(
            "agentcage matrix: {} ops; blocked: {}; {redundant} redundant blocks",
            self.ops.len(),
            per.join(", ")
        )
    }

    pub fn to_json(&self) -> String {
        match serde_json::to_string_pretty(self) {
            Ok(s) => s + "\n",
            Err(e) => format!("{{\"error\": \"serialize: {e}\"}}\n"),
        }
    }

    /// One self-contained HTML page (see [`html`]): a heatmap of ops by profiles.
    pub fn to_html(&self) -> String {
        html::render(self)
    }

    /// Reads a matrix back from [`Matrix::to_json`]'s output. Every op's results are put in
    /// profile order; a result under a profile the matrix does not list is an error, as is an
    /// unknown run status.
    ///
    /// # Errors
    /// Not JSON, not the matrix's shape, or inconsistent (the message says where).
    pub fn from_json(text: &str) -> Result<Matrix, String> {
        #[derive(Deserialize)]
        struct Wire {
            host: Host,
            profiles: Vec<Profile>,
            ops: Vec<OpWire>,
            #[serde(default)]
            runs: Vec<RunWire>,
        }
        #[derive(Deserialize)]
        struct OpWire {
            id: String,
            title: String,
            category: Category,
            results: std::collections::BTreeMap<String, Cell>,
        }
        #[derive(Deserialize)]
        struct RunWire {
            profile: Profile,
            #[serde(default)]
            without: Vec<Layer>,
            status: String,
            #[serde(default)]
            detail: String,
            #[serde(default)]
            rows: usize,
        }
        let w: Wire = serde_json::from_str(text)
            .map_err(|e| format!("not a matrix saved by `agentcage matrix --format json`: {e}"))?;
        if w.profiles.is_empty() {
            return Err("no profile listed under \"profiles\"".to_string());
        }
        let mut profiles = w.profiles;
        profiles.sort();
        profiles.dedup();
        let mut ops = Vec::with_capacity(w.ops.len());
        for o in w.ops {
            let mut results = Vec::with_capacity(o.results.len());
            for (name, c) in o.results {
                let p = Profile::from_name(&name)
                    .filter(|p| profiles.contains(p))
                    .ok_or_else(|| {
                        format!("op {:?}: a result under profile {name:?}, which the matrix does not list", o.id)
                    })?;
                results.push((p, c));
            }
            results.sort_by_key(|(p, _)| *p);
            ops.push(OpRow {
                id: o.id,
                title: o.title,
                category: o.category,
                results,
            });
        }
        let mut runs = Vec::with_capacity(w.runs.len());
        for r in w.runs {
            let status = match r.status.as_str() {
                "ok" => "ok",
                "setup-failed" => "setup-failed",
                "failed" => "failed",
                other => {
                    return Err(format!(
                        "run status {other:?}: expected ok, setup-failed or failed"
                    ))
                }
            };
            runs.push(RunRecord {
                profile: r.profile,
                without: r.without,
                status,
                detail: r.detail,
                rows: r.rows,
            });
        }
        Ok(Matrix {
            host: w.host,
            profiles,
            ops,
            runs,
        })
    }

    /// The header lines shared by text and Markdown.
    fn header_lines(&self) -> Vec<String> {
        let h = &self.host;
        let landlock = match (h.landlock_abi, &h.landlock_error) {
            (Some(v), _) => format!("ABI {v}"),
            (None, Some(e)) => format!("unavailable ({e})"),
            (None, None) => "unavailable".to_string(),
        };
        let mut lines = vec![
            format!(
                "kernel {}, uid {} gid {}, Landlock {landlock}",
                h.kernel, h.uid, h.gid
            ),
            format!("launcher: {}", h.agentcage),
        ];
        if !h.landlock_enforcement.is_empty() {
            let (enforced, other): (Vec<&String>, Vec<&String>) = h
                .landlock_enforcement
                .iter()
                .filter(|l| !l.contains("not requested") && l.contains(": "))
                .partition(|l| l.contains(": enforced"));
            let names: Vec<&str> = enforced
                .iter()
                .filter_map(|l| l.split(':').next())
                .collect();
            lines.push(format!(
                "landlock under full: enforced: {}",
                names.join(" ")
            ));
            for l in other.iter().filter(|l| !l.starts_with("landlock ABI")) {
                lines.push(format!("landlock under full: {l}"));
            }
        }
        if let Some(doc) = &h.doctor {
            lines.extend(doctor_lines(doc, &self.profiles));
        } else {
            lines.push("launcher: `agentcage doctor --json` gave nothing".to_string());
        }
        let made = self.runs.len();
        let unset = self
            .runs
            .iter()
            .filter(|r| r.status == "setup-failed")
            .count();
        let failed = self
            .runs
            .iter()
            .filter(|r| r.status != "ok" && r.status != "setup-failed")
            .count();
        if h.attribution {
            lines.push(format!(
                "attribution: measured by {made} probe runs ({unset} cannot be set up on this \
                 host, as expected for some layer removals; {failed} failed); blocker = layers \
                 whose removal lets the op through"
            ));
        } else {
            lines.push("attribution: off (--no-attribution)".to_string());
        }
        lines
    }

    /// Runs that failed, one line each.
    fn failed_runs(&self) -> Vec<String> {
        self.runs
            .iter()
            .filter(|r| r.status != "ok")
            .map(|r| {
                let key = RunKey::new(
                    r.profile,
                    r.without
                        .iter()
                        .fold(r.profile.layers(), |s, l| s.without(*l)),
                );
                if r.status == "setup-failed" {
                    format!(
                        "{}: expected here, cannot be set up: {}",
                        key.label(),
                        r.detail
                    )
                } else {
                    format!("{}: failed: {}", key.label(), r.detail)
                }
            })
            .collect()
    }

    /// The reference design's per-profile tables, then the grid and its legend.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for line in self.header_lines() {
            let _ = writeln!(out, "# {line}");
        }
        let op_w = self
            .ops
            .iter()
            .map(|o| o.title.chars().count())
            .max()
            .unwrap_or(2)
            .max(2);
        for &p in &self.profiles {
            let rows: Vec<[String; 4]> = self
                .ops
                .iter()
                .filter_map(|o| {
                    let c = cell(o, p)?;
                    Some([
                        o.title.clone(),
                        c.result.to_string(),
                        errno_text(c),
                        blocker_text(c),
                    ])
                })
                .collect();
            let errno_w = rows
                .iter()
                .map(|r| r[2].chars().count())
                .max()
                .unwrap_or(5)
                .max(5);
            let _ = writeln!(out, "\n=== profile: {p} ===");
            let head = format!(
                "{:op_w$}  {:<8}  {:errno_w$}  blocker",
                "op", "result", "errno"
            );
            let _ = writeln!(out, "{head}");
            let _ = writeln!(out, "{}", "-".repeat(head.chars().count() + 12));
            for r in rows {
                let line = format!("{:op_w$}  {:<8}  {:errno_w$}  {}", r[0], r[1], r[2], r[3]);
                let _ = writeln!(out, "{}", line.trim_end());
            }
        }
        let (grid, legend) = self.grid();
        let _ = writeln!(out, "\n=== grid: ops by profile ===");
        let id_w = self
            .ops
            .iter()
            .map(|o| o.id.chars().count())
            .max()
            .unwrap_or(2)
            .max(2);
        let widths: Vec<usize> = (0..self.profiles.len())
            .map(|i| {
                grid.iter()
                    .map(|(_, cells)| cells[i].chars().count())
                    .max()
                    .unwrap_or(0)
                    .max(self.profiles[i].name().len())
            })
            .collect();
        let mut head = format!("{:id_w$}", "op");
        for (p, w) in self.profiles.iter().zip(&widths) {
            let _ = write!(head, "  {:w$}", p.name());
        }
        let _ = writeln!(out, "{}", head.trim_end());
        let _ = writeln!(out, "{}", "-".repeat(head.trim_end().chars().count()));
        for (id, cells) in &grid {
            let mut line = format!("{id:id_w$}");
            for (c, w) in cells.iter().zip(&widths) {
                let _ = write!(line, "  {c:w$}");
            }
            let _ = writeln!(out, "{}", line.trim_end());
        }
        let _ = writeln!(out, "\n{legend}");
        let failed = self.failed_runs();
        if !failed.is_empty() {
            let _ = writeln!(out, "\nruns that gave no evidence:");
            for f in failed {
                let _ = writeln!(out, "  {f}");
            }
        }
        out
    }

    /// The same content as Markdown tables.
    pub fn to_markdown(&self) -> String {
        let mut out = String::from("# agentcage matrix\n\n");
        for line in self.header_lines() {
            let _ = writeln!(out, "- {}", md(&line));
        }
        for &p in &self.profiles {
            let _ = writeln!(out, "\n## profile: {p}\n");
            let _ = writeln!(out, "| op | id | result | errno | blocker |");
            let _ = writeln!(out, "| --- | --- | --- | --- | --- |");
            for o in &self.ops {
                let Some(c) = cell(o, p) else { continue };
                let _ = writeln!(
                    out,
                    "| {} | `{}` | {} | {} | {} |",
                    md(&o.title),
                    o.id,
                    c.result,
                    md(&errno_text(c)),
                    md(&blocker_text(c))
                );
            }
        }
        let (grid, legend) = self.grid();
        let _ = writeln!(out, "\n## grid: ops by profile\n");
        let mut head = String::from("| op |");
        let mut rule = String::from("| --- |");
        for p in &self.profiles {
            let _ = write!(head, " {p} |");
            rule.push_str(" --- |");
        }
        let _ = writeln!(out, "{head}\n{rule}");
        for (id, cells) in &grid {
            let _ = write!(out, "| `{id}` |");
            for c in cells {
                let _ = write!(out, " {} |", md(c));
            }
            out.push('\n');
        }
        let _ = writeln!(out, "\n{}", md(&legend));
        let failed = self.failed_runs();
        if !failed.is_empty() {
            let _ = writeln!(out, "\nRuns that gave no evidence:\n");
            for f in failed {
                let _ = writeln!(out, "- {}", md(&f));
            }
        }
        out
    }

    /// Grid cells (`ALLOW`, `BLOCK landlock`, `BLOCK =ll+caps`, `SKIP`) per pass/fail op
    /// (`info` rows are values, shown in the tables only), and the legend of the short layer
    /// names used.
    fn grid(&self) -> (Vec<(String, Vec<String>)>, String) {
        let mut used = BTreeSet::new();
        let grid = self
            .ops
            .iter()
            .filter(|o| o.category != Category::Info)
            .map(|o| {
                let cells = self
                    .profiles
                    .iter()
                    .map(|&p| match cell(o, p) {
                        None => "-".to_string(),
                        Some(c) => match c.result {
                            Verdict::Allowed => "ALLOW".to_string(),
                            Verdict::Skipped => "SKIP".to_string(),
                            Verdict::Info => "INFO".to_string(),
                            Verdict::Blocked if c.blocker.is_empty() && !self.host.attribution => {
                                "BLOCK".to_string()
                            }
                            Verdict::Blocked if c.blocker.is_empty() => "BLOCK ?".to_string(),
                            Verdict::Blocked if c.blocker.len() == 1 && !c.redundant => {
                                format!("BLOCK {}", c.blocker[0])
                            }
                            Verdict::Blocked => {
                                let short: Vec<&str> =
                                    c.blocker.iter().map(|b| short_name(b)).collect();
                                for b in &c.blocker {
                                    used.insert(b.clone());
                                }
                                let sep = if c.redundant { "=" } else { "" };
                                format!("BLOCK {sep}{}", short.join("+"))
                            }
                        },
                    })
                    .collect();
                (o.id.clone(), cells)
            })
            .collect();
        let mut legend = String::from(
            "legend: BLOCK X = removing layer X lets the op through; BLOCK a+b = removing either does; \
             BLOCK =a+b = redundant, each blocks it alone; BLOCK ? = no layer explains it; \
             info rows: see the tables",
        );
        if used.iter().any(|n| short_name(n) != n.as_str()) {
            // Sort by the launcher's layer order, host last.
            let mut used: Vec<String> = used.into_iter().collect();
            used.sort_by_key(|n| Layer::from_name(n).map(|l| l as u8).unwrap_or(u8::MAX));
            let names: Vec<String> = used
                .iter()
                .filter(|n| short_name(n) != n.as_str())
                .map(|n| format!("{}={n}", short_name(n)))
                .collect();
            let _ = write!(legend, "\n        {}", names.join(" "));
        }
        (grid, legend)
    }
}

fn cell(o: &OpRow, p: Profile) -> Option<&Cell> {
    o.results.iter().find(|(q, _)| *q == p).map(|(_, c)| c)
}

/// The errno column: the errno and the probe's detail for ALLOWED/BLOCKED, the reason for
/// SKIPPED, the value for INFO.
fn errno_text(c: &Cell) -> String {
    let detail = one_line(&c.detail);
    match (c.result, &c.errno) {
        (Verdict::Skipped, _) => format!("SKIP ({detail})"),
        (Verdict::Info, _) => detail,
        (_, Some(e)) if detail.is_empty() => e.clone(),
        (_, Some(e)) => format!("{e} ({detail})"),
        (Verdict::Blocked, None) => detail,
        (_, None) => "-".to_string(),
    }
}

fn blocker_text(c: &Cell) -> String {
    if c.result != Verdict::Blocked {
        return "-".to_string();
    }
    if c.blocker.is_empty() {
        return "?".to_string();
    }
    let joined = c.blocker.join(" + ");
    if c.redundant {
        format!("{joined} (redundant)")
    } else {
        joined
    }
}

/// `s` on one line, cut to 60 characters (table cells).
fn one_line(s: &str) -> String {
    one_line_max(s, 60)
}

/// `s` on one line, cut to `max` characters.
fn one_line_max(s: &str, max: usize) -> String {
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

/// Escapes a Markdown table cell.
fn md(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

/// Short layer names for the grid.
fn short_name(name: &str) -> &str {
    match name {
        "user-ns" => "user",
        "mount-ns" => "mnt",
        "pid-ns" => "pid",
        "net-ns" => "net",
        "ipc-ns" => "ipc",
        "uts-ns" => "uts",
        "cgroup-ns" => "cgns",
        "hygiene" => "hyg",
        "landlock" => "ll",
        "no-new-privs" => "nnp",
        "seccomp" => "scmp",
        "limits" => "lim",
        other => other,
    }
}

/// What `agentcage doctor --json` says the launcher enforces here: a facts line, then one
/// line per layer of a shown profile that is not fully available. Unknown shapes give nothing.
fn doctor_lines(v: &serde_json::Value, profiles: &[Profile]) -> Vec<String> {
    use serde_json::Value;
    let mut lines = Vec::new();
    let mut facts = Vec::new();
    if let Some(s) = v.pointer("/strongest_enforceable").and_then(Value::as_str) {
        facts.push(format!("strongest enforceable profile {s}"));
    }
    if let Some(s) = v
        .pointer("/features/cgroups/limits_backend")
        .and_then(Value::as_str)
    {
        facts.push(format!("limits via {s}"));
    }
    if let Some(b) = v
        .pointer("/features/compat/ia32/available")
        .and_then(Value::as_bool)
    {
        facts.push(format!(
            "ia32 syscall entry {}",
            if b { "on" } else { "off" }
        ));
    }
    if !facts.is_empty() {
        lines.push(format!("launcher (agentcage doctor): {}", facts.join(", ")));
    }
    for entry in v
        .pointer("/ladder")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let Some(profile) = entry.get("profile").and_then(Value::as_str) else {
            continue;
        };
        if !profiles.iter().any(|p| p.name() == profile) {
            continue;
        }
        for layer in entry
            .get("layers")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let name = layer.get("layer").and_then(Value::as_str).unwrap_or("?");
            let status = layer.get("status").and_then(Value::as_str).unwrap_or("?");
            if status != "available" {
                let reason = layer.get("reason").and_then(Value::as_str).unwrap_or("");
                lines.push(format!(
                    "{profile}: {name} {status}: {}",
                    one_line_max(reason, 160)
                ));
            }
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attribution::tests::World;

    pub(super) fn synthetic() -> Matrix {
        let w = World {
            ops: vec![
                ("fs.write.root", vec![Layer::Landlock]),
                ("net.socket.raw", vec![Layer::Caps]),
                (
                    "kernel.mount.tmpfs",
                    vec![Layer::Landlock, Layer::Caps, Layer::Seccomp],
                ),
                ("net.connect.host_loopback", vec![Layer::NetNs]),
                ("fs.read.shadow", vec![]),
                ("fs.read.passwd", vec![]),
            ],
            host_blocked: vec!["fs.read.shadow"],
            full_landlock: vec!["net.bind.low_port"],
            unprivileged: true,
        };
        let (ev, _) = w.evidence();
        let host = Host {
            kernel: "6.18.0-test".to_string(),
            landlock_abi: Some(7),
            landlock_error: None,
            uid: 65534,
            gid: 65534,
            agentcage: "/usr/bin/agentcage".to_string(),
            attribution: true,
            doctor: None,
            landlock_enforcement: Vec::new(),
        };
        Matrix::build(host, &Profile::ALL, &ev, true)
    }

    pub(super) fn snapshot(name: &str, actual: &str) {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/snapshots")
            .join(name);
        if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
            std::fs::write(&path, actual).expect("write snapshot");
        }
        let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e} (run with UPDATE_SNAPSHOTS=1 to create it)",
                path.display()
            )
        });
        assert_eq!(
            actual, expected,
            "{name} changed; rerun with UPDATE_SNAPSHOTS=1 if intended"
        );
    }

    #[test]
    fn json_snapshot() {
        let m = synthetic();
        let json = m.to_json();
        snapshot("matrix.json", &json);
        // The published keys, independently of the snapshot file.
        let v: serde_json::Value = serde_json::from_str(&json).expect("valid JSON");
        for k in ["kernel", "landlock_abi", "uid"] {
            assert!(v["host"].get(k).is_some(), "host.{k}");
        }
        assert_eq!(
            v["profiles"],
            serde_json::json!(["none", "ns-only", "landlock", "full"])
        );
        let op = &v["ops"][0];
        for k in ["id", "title", "category", "results"] {
            assert!(op.get(k).is_some(), "ops[].{k}");
        }
        let cell = &op["results"]["full"];
        for k in ["result", "errno", "detail", "blocker", "redundant"] {
            assert!(cell.get(k).is_some(), "results.full.{k}");
        }
        assert_eq!(cell["blocker"], serde_json::json!(["landlock"]));
    }

    #[test]
    fn text_and_markdown_snapshots() {
        let m = synthetic();
        snapshot("matrix.txt", &m.to_text());
        snapshot("matrix.md", &m.to_markdown());
        assert_eq!(m.to_text(), synthetic().to_text(), "deterministic");
    }

    #[test]
    fn grid_cells() {
        let m = synthetic();
        let (grid, legend) = m.grid();
        let row = |id: &str| {
            grid.iter()
                .find(|(i, _)| i == id)
                .map(|(_, c)| c.clone())
                .expect("row")
        };
        assert_eq!(
            row("fs.write.root"),
            ["ALLOW", "ALLOW", "BLOCK landlock", "BLOCK landlock"]
        );
        assert_eq!(
            row("kernel.mount.tmpfs"),
            ["ALLOW", "ALLOW", "BLOCK landlock", "BLOCK =ll+caps+scmp"]
        );
        assert_eq!(
            row("fs.read.shadow"),
            ["BLOCK host", "BLOCK host", "BLOCK host", "BLOCK host"]
        );
        assert!(legend.contains("ll=landlock"));

        let mut m = synthetic();
        let mut info = m.ops[0].clone();
        info.id = "info.nnp.status".into();
        info.category = Category::Info;
        m.ops.push(info);
        let (grid, _) = m.grid();
        assert!(
            grid.iter().all(|(id, _)| id != "info.nnp.status"),
            "info rows stay out of the grid"
        );
    }

    #[test]
    fn doctor_summary() {
        let v = serde_json::json!({
            "strongest_enforceable": "full",
            "features": {"cgroups": {"limits_backend": "rlimits"}, "compat": {"ia32": {"available": true}}},
            "ladder": [
                {"profile": "ns-only", "layers": [{"layer": "user-ns", "status": "available"}]},
                {"profile": "full", "layers": [
                    {"layer": "seccomp", "status": "available"},
                    {"layer": "limits", "status": "degraded", "reason": "no cgroup delegation"}
                ]}
            ]
        });
        assert_eq!(
            doctor_lines(&v, &Profile::ALL),
            [
                "launcher (agentcage doctor): strongest enforceable profile full, limits via rlimits, ia32 syscall entry on",
                "full: limits degraded: no cgroup delegation",
            ]
        );
        assert!(doctor_lines(&v, &[Profile::NsOnly]).len() == 1);
        assert!(doctor_lines(&serde_json::json!([1, 2]), &Profile::ALL).is_empty());
    }

    #[test]
    fn errno_and_blocker_columns() {
        let c = Cell {
            result: Verdict::Blocked,
            errno: Some("EACCES".into()),
            detail: "Permission denied".into(),
            blocker: vec!["landlock".into(), "caps".into()],
            redundant: true,
            notes: vec![],
        };
        assert_eq!(errno_text(&c), "EACCES (Permission denied)");
        assert_eq!(blocker_text(&c), "landlock + caps (redundant)");
        let s = Cell {
            result: Verdict::Skipped,
            errno: None,
            detail: "host pidns".into(),
            ..c.clone()
        };
        assert_eq!(errno_text(&s), "SKIP (host pidns)");
        assert_eq!(blocker_text(&s), "-");
        let unexplained = Cell {
            blocker: vec![],
            redundant: false,
            ..c
        };
        assert_eq!(blocker_text(&unexplained), "?");
        assert_eq!(md("a|b"), "a\\|b");
    }
}
