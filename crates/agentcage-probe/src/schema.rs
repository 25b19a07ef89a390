//! The probe's output format, shared with `agentcage-matrix`.
//!
//! The probe prints one [`OpResult`] per operation as one JSON object per line (JSONL) on
//! stdout, in the order of the op table:
//!
//! ```json
//! {"id":"fs.write.root","title":"write /evil","category":"fs","result":"BLOCKED","errno":"EACCES","detail":"Permission denied"}
//! ```
//!
//! Producers and consumers both use these types (as nextest keeps its machine-readable types in
//! their own crate), so a field renamed here breaks both sides at compile time. The id is the
//! stable key; the title is for humans and may be reworded.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Which area of the system an operation exercises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Category {
    /// Files and device nodes: secrets, system dirs, /dev, /proc, /sys.
    Fs,
    /// Other processes: signals, ptrace, process_vm_readv, /proc/PID.
    Proc,
    /// Sockets: loopback, external route, unix sockets, raw and packet sockets, low ports.
    Net,
    /// Privileged or risky syscalls: mount, namespaces, bpf, modules, reboot, 32-bit entry...
    Kernel,
    /// What leaks from the caller: file descriptors, environment, terminal.
    Hygiene,
    /// Bounded exhaustion tests: process count, memory.
    Resources,
    /// Facts about the environment, not pass/fail (namespaces, capabilities, seccomp...).
    Info,
}

impl Category {
    /// Every category, in table order.
    pub const ALL: [Category; 7] = [
        Category::Fs,
        Category::Proc,
        Category::Net,
        Category::Kernel,
        Category::Hygiene,
        Category::Resources,
        Category::Info,
    ];

    /// The JSON spelling (`"fs"`, `"proc"`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Category::Fs => "fs",
            Category::Proc => "proc",
            Category::Net => "net",
            Category::Kernel => "kernel",
            Category::Hygiene => "hygiene",
            Category::Resources => "resources",
            Category::Info => "info",
        }
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What happened when the probe tried an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Verdict {
    /// The operation got past every permission check (it may still have failed later on a
    /// deliberately invalid argument: the detail says which errno proved it).
    Allowed,
    /// Something refused the operation; `errno` names how (`EPERM`, `ENOENT`, `SIGSYS`...).
    Blocked,
    /// The operation was not tried; the detail says why (missing bait flag, unsafe here...).
    Skipped,
    /// An informational row (category `info`): the detail is the value, not a pass/fail.
    Info,
}

impl Verdict {
    /// The JSON spelling (`"ALLOWED"`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Allowed => "ALLOWED",
            Verdict::Blocked => "BLOCKED",
            Verdict::Skipped => "SKIPPED",
            Verdict::Info => "INFO",
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One line of probe output: the outcome of one operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpResult {
    /// Stable identifier `area.verb.object`, e.g. `fs.write.root`. Never reused or renamed.
    pub id: String,
    /// Human title, e.g. `write /evil` (the reference design's ten keep their exact titles).
    pub title: String,
    /// The area the operation belongs to.
    pub category: Category,
    /// ALLOWED, BLOCKED, SKIPPED or INFO.
    pub result: Verdict,
    /// Symbolic name of the errno (`EACCES`) or of the killing signal (`SIGSYS`) behind a
    /// BLOCKED; for ALLOWED, the errno that proved the permission check passed (e.g. `EINVAL`
    /// from a deliberately bad argument), or null when the call simply succeeded. Null for
    /// SKIPPED and INFO.
    pub errno: Option<String>,
    /// Human text: the errno message and context for ALLOWED/BLOCKED, the reason for
    /// SKIPPED, the value for INFO.
    pub detail: String,
}

impl OpResult {
    /// One JSON line, without the trailing newline.
    pub fn to_json_line(&self) -> String {
        // Serializing plain strings and unit enums cannot fail.
        serde_json::to_string(self).unwrap_or_else(|e| {
            format!(
                r#"{{"id":"{}","error":"serialize: {e}"}}"#,
                self.id.escape_default()
            )
        })
    }
}

/// A whole probe run: every row in table order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeReport {
    /// The rows, in the order the probe printed them.
    pub ops: Vec<OpResult>,
}

impl ProbeReport {
    /// Parses probe stdout (see [`parse_jsonl`]).
    ///
    /// # Errors
    /// As [`parse_jsonl`].
    pub fn from_jsonl(text: &str) -> Result<Self, SchemaError> {
        parse_jsonl(text).map(|ops| ProbeReport { ops })
    }

    /// The row with this id, if present.
    pub fn get(&self, id: &str) -> Option<&OpResult> {
        self.ops.iter().find(|r| r.id == id)
    }

    /// Renders the rows back to JSONL (one line per row, each ending in `\n`).
    pub fn to_jsonl(&self) -> String {
        let mut out = String::new();
        for r in &self.ops {
            out.push_str(&r.to_json_line());
            out.push('\n');
        }
        out
    }
}

/// A probe output line that is not a valid [`OpResult`].
#[derive(Debug, thiserror::Error)]
#[error("probe output line {line}: not a valid op result")]
pub struct SchemaError {
    /// 1-based line number in the input.
    pub line: usize,
    /// Why serde rejected it.
    #[source]
    pub source: serde_json::Error,
}

/// Parses probe output: one [`OpResult`] per non-blank line.
///
/// # Errors
/// [`SchemaError`] naming the first line that is not a valid op result.
pub fn parse_jsonl(text: &str) -> Result<Vec<OpResult>, SchemaError> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|source| SchemaError {
                line: i + 1,
                source,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_shape_is_fixed() {
        let r = OpResult {
            id: "fs.write.root".into(),
            title: "write /evil".into(),
            category: Category::Fs,
            result: Verdict::Blocked,
            errno: Some("EACCES".into()),
            detail: "Permission denied".into(),
        };
        assert_eq!(
            r.to_json_line(),
            r#"{"id":"fs.write.root","title":"write /evil","category":"fs","result":"BLOCKED","errno":"EACCES","detail":"Permission denied"}"#
        );
        let info = OpResult {
            result: Verdict::Info,
            errno: None,
            category: Category::Info,
            ..r
        };
        assert!(info
            .to_json_line()
            .contains(r#""result":"INFO","errno":null"#));
    }

    #[test]
    fn jsonl_round_trip() {
        let report = ProbeReport {
            ops: vec![
                OpResult {
                    id: "a.b.c".into(),
                    title: "t \"quoted\"\n".into(),
                    category: Category::Kernel,
                    result: Verdict::Allowed,
                    errno: Some("EINVAL".into()),
                    detail: "d".into(),
                },
                OpResult {
                    id: "x.y.z".into(),
                    title: "u".into(),
                    category: Category::Resources,
                    result: Verdict::Skipped,
                    errno: None,
                    detail: "no flag".into(),
                },
            ],
        };
        let text = report.to_jsonl();
        assert_eq!(text.lines().count(), 2);
        assert_eq!(ProbeReport::from_jsonl(&text).unwrap(), report);
        assert_eq!(report.get("x.y.z").unwrap().result, Verdict::Skipped);
    }

    #[test]
    fn bad_line_is_reported_with_its_number() {
        let good = r#"{"id":"a","title":"b","category":"net","result":"SKIPPED","errno":null,"detail":""}"#;
        let text = format!("{good}\n\n{{\"id\":\"a\",\"result\":\"MAYBE\"}}\n");
        let err = parse_jsonl(&text).unwrap_err();
        assert_eq!(err.line, 3);
        assert!(parse_jsonl(
            r#"{"id":"a","title":"b","category":"nope","result":"INFO","errno":null,"detail":""}"#
        )
        .is_err());
    }

    #[test]
    fn spellings_match_serde() {
        for c in Category::ALL {
            assert_eq!(
                serde_json::to_string(&c).unwrap(),
                format!("\"{}\"", c.as_str())
            );
        }
        for v in [
            Verdict::Allowed,
            Verdict::Blocked,
            Verdict::Skipped,
            Verdict::Info,
        ] {
            assert_eq!(
                serde_json::to_string(&v).unwrap(),
                format!("\"{}\"", v.as_str())
            );
        }
    }
}
