//! Resource limits: what a run may consume, and how each limit is enforced on this host.
//!
//! This room owns the limits data ([`LimitsSpec`], [`Limit`]), the flag grammar ([`value`]),
//! the rlimits (`rlimit`: the floor on every host) and the per-run leaf cgroup (`cgroup`:
//! layout, limits, teardown, reaping). It reports how each requested limit is enforced as typed
//! rows ([`LimitRow`]) and facts ([`Note`]), never as text to match on.
//!
//! Imports: `host` (the /proc parsers) and `sys`; nothing here imports `policy` (the policy
//! holds a [`LimitsSpec`], not the other way round) or `launch` (which calls `prepare_run`).

#![cfg_attr(not(test), forbid(unsafe_code))]

pub(crate) mod cgroup;
pub(crate) mod rlimit;
#[doc(hidden)]
pub mod testing;
pub mod value;

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use value::ParseError;

pub use self::cgroup::CgroupError;
use self::cgroup::{PreparedCgroup, Teardown};
use self::rlimit::PreparedRlimits;
pub use self::rlimit::RlimitError;
use self::value::{format_duration, format_size};

/// Resource limits. `None` leaves the host's value.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct LimitsSpec {
    /// Maximum number of processes/threads in the sandbox (cgroup pids.max).
    pub pids: Option<u64>,
    /// Memory limit in bytes (cgroup memory.max, RLIMIT_AS never: it breaks runtimes).
    pub memory: Option<u64>,
    /// CPU quota in CPUs (cgroup cpu.max).
    pub cpus: Option<f64>,
    /// Wall-clock timeout in seconds.
    pub timeout: Option<f64>,
    /// RLIMIT_NOFILE.
    pub nofile: Option<u64>,
    /// RLIMIT_FSIZE in bytes.
    pub fsize: Option<u64>,
    /// RLIMIT_CORE = 0 when true.
    pub no_core: bool,
}

impl LimitsSpec {
    /// Checks limits that did not come through the parsers (a policy file, a library caller)
    /// against the same bounds.
    ///
    /// # Errors
    /// The first out-of-range value, as a [`ParseError`].
    pub fn validate(&self) -> Result<(), ParseError> {
        value::validate(self)
    }

    /// Whether `limit` is requested.
    pub fn asks(&self, limit: Limit) -> bool {
        match limit {
            Limit::Pids => self.pids.is_some(),
            Limit::Memory => self.memory.is_some(),
            Limit::Cpus => self.cpus.is_some(),
            Limit::Timeout => self.timeout.is_some(),
            Limit::Nofile => self.nofile.is_some(),
            Limit::Fsize => self.fsize.is_some(),
            Limit::Core => self.no_core,
        }
    }
}

/// One resource limit, as named in flags, reports and notes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Limit {
    /// Tasks (`--pids`).
    Pids,
    /// Memory (`--memory`).
    Memory,
    /// CPU quota (`--cpus`).
    Cpus,
    /// Wall-clock timeout (`--timeout`).
    Timeout,
    /// Open files (`--nofile`).
    Nofile,
    /// Largest file written (`--fsize`).
    Fsize,
    /// Core dumps (off by default in `full`).
    Core,
}

impl Limit {
    /// Every limit, in report order.
    pub const ALL: [Limit; 7] = [
        Limit::Pids,
        Limit::Memory,
        Limit::Cpus,
        Limit::Timeout,
        Limit::Nofile,
        Limit::Fsize,
        Limit::Core,
    ];

    /// The name used in flags and reports: `pids`, `memory`, `cpus`, `timeout`, `nofile`,
    /// `fsize`, `core`.
    pub fn name(self) -> &'static str {
        match self {
            Limit::Pids => "pids",
            Limit::Memory => "memory",
            Limit::Cpus => "cpus",
            Limit::Timeout => "timeout",
            Limit::Nofile => "nofile",
            Limit::Fsize => "fsize",
            Limit::Core => "core",
        }
    }
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How strongly a note's limit is affected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum NoteKind {
    /// The limit is not enforced at all.
    NotEnforced,
    /// The limit is enforced, but weaker than asked (clamped, swap not covered, per-uid count).
    Partial,
    /// Context worth reporting; nothing is weaker.
    Info,
}

/// One fact about how a limit is (not) enforced: data for `run -v`, `doctor` and the JSON
/// report, never printed by the library.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Note {
    /// The limit.
    pub limit: Limit,
    /// How strongly it is affected.
    pub kind: NoteKind,
    /// What happened and why, for a human.
    pub message: String,
}

impl Note {
    /// A note on `limit`.
    pub fn new(limit: Limit, kind: NoteKind, message: impl Into<String>) -> Note {
        Note {
            limit,
            kind,
            message: message.into(),
        }
    }
}

impl fmt::Display for Note {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            NoteKind::NotEnforced => "not enforced: ",
            NoteKind::Partial => "",
            NoteKind::Info => "",
        };
        write!(f, "{}: {kind}{}", self.limit, self.message)
    }
}

/// The mechanism that enforces a limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Enforcement {
    /// A cgroup control file (`pids.max`, `memory.max`, `cpu.max`, ...).
    Cgroup,
    /// A setrlimit(2) limit, exact for what it covers.
    Rlimit,
    /// A per-process rlimit standing in for a missing memory cgroup (`RLIMIT_DATA`): weaker.
    PerProcess,
    /// The launcher's wall-clock timer.
    Launcher,
    /// Nothing enforces it.
    NotEnforced,
}

/// How one requested limit is enforced: the mechanism and the detail for a human.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LimitRow {
    /// The limit.
    pub limit: Limit,
    /// The mechanism.
    pub how: Enforcement,
    /// What was written where (`cgroup v2 pids.max=16`, `rlimit RLIMIT_NOFILE=4096`), or why
    /// nothing enforces it.
    pub detail: String,
}

impl LimitRow {
    /// A row.
    pub fn new(limit: Limit, how: Enforcement, detail: impl Into<String>) -> LimitRow {
        LimitRow {
            limit,
            how,
            detail: detail.into(),
        }
    }

    /// Whether some mechanism enforces the limit.
    pub fn enforced(&self) -> bool {
        self.how != Enforcement::NotEnforced
    }
}

impl fmt::Display for LimitRow {
    /// The text `run -v` shows after the limit's name: the detail, prefixed with
    /// `not enforced: ` when nothing enforces it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.how == Enforcement::NotEnforced {
            f.write_str("not enforced: ")?;
        }
        f.write_str(&self.detail)
    }
}

/// The default limits for coding agents on a host with `host_mem` bytes of RAM: pids 1024 (a
/// parallel build fits, a fork bomb does not), memory half of RAM rounded down to a MiB (the
/// host keeps room to stay responsive; unlimited if unknown), no CPU cap, no timeout (agents
/// run long builds), nofile 4096 (enough for language servers and bundlers), no file-size cap,
/// core dumps off. Pure: [`host_memory`] reads the RAM.
pub fn defaults(host_mem: Option<u64>) -> LimitsSpec {
    LimitsSpec {
        pids: Some(1024),
        memory: host_mem
            .map(|m| (m / 2) & !((1 << 20) - 1))
            .filter(|m| *m >= 1 << 20),
        cpus: None,
        timeout: None,
        nofile: Some(4096),
        fsize: None,
        no_core: true,
    }
}

/// Total RAM in bytes from `/proc/meminfo` (`MemTotal`), if readable.
pub fn host_memory() -> Option<u64> {
    // Its first line (Linux 2.6+): one read into a stack buffer, not the whole ~1.5 KiB file.
    let mut buf = [0u8; 128];
    let head = crate::sys::read_head(c"/proc/meminfo", &mut buf, true).ok()?;
    // Whole lines only: a number cut at the buffer's end would be wrong.
    let whole = &head[..=head.iter().rposition(|&b| b == b'\n')?];
    let text = std::str::from_utf8(whole).ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kb: u64 = line
        .trim_start_matches("MemTotal:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    kb.checked_mul(1024)
}

/// [`defaults`] for this host.
pub fn default_limits() -> LimitsSpec {
    defaults(host_memory())
}

/// One row per requested limit with the strongest mechanism that enforces it: the cgroup's row,
/// else the rlimit's, else `not enforced` with the reason from the notes. `timeout` is the
/// launcher's wall-clock timer.
pub(crate) fn summary(
    limits: &LimitsSpec,
    cgroup: Option<&PreparedCgroup>,
    notes: &[Note],
    rlimits: &PreparedRlimits,
) -> Vec<LimitRow> {
    let cg_rows = cgroup.map(PreparedCgroup::enforcement).unwrap_or_default();
    let rl_rows = rlimits.enforcement();
    let reason = |limit: Limit| {
        notes
            .iter()
            .find(|n| n.limit == limit && n.kind == NoteKind::NotEnforced)
            .map_or_else(
                || "no mechanism available".to_owned(),
                |n| n.message.clone(),
            )
    };
    let pick = |limit: Limit| -> LimitRow {
        let enforced = |rows: &[LimitRow]| {
            rows.iter()
                .find(|r| r.limit == limit && r.enforced())
                .cloned()
        };
        enforced(&cg_rows)
            .or_else(|| enforced(&rl_rows))
            .unwrap_or_else(|| LimitRow::new(limit, Enforcement::NotEnforced, reason(limit)))
    };
    let mut out = Vec::new();
    for limit in Limit::ALL {
        if limit == Limit::Timeout {
            if let Some(t) = limits.timeout {
                let shown = Duration::try_from_secs_f64(t)
                    .map_or_else(|_| format!("{t}s"), format_duration);
                out.push(LimitRow::new(
                    limit,
                    Enforcement::Launcher,
                    format!("launcher timer ({shown})"),
                ));
            }
        } else if limits.asks(limit) {
            out.push(pick(limit));
        }
    }
    out
}

/// The limits of one run, prepared in the parent before clone.
#[derive(Debug, Default)]
pub(crate) struct RunLimits {
    /// The run's leaf cgroup, if any hierarchy was writable.
    pub(crate) cgroup: Option<PreparedCgroup>,
    /// How each requested limit is enforced (`run -v`).
    pub(crate) rows: Vec<LimitRow>,
    /// Requested limits no cgroup enforces and no rlimit stands in for exactly: said on every
    /// run, not only with `-v`.
    pub(crate) degraded: Vec<Limit>,
    /// RLIMIT_DATA to set on the sandbox's init when no memory cgroup enforces `--memory`.
    pub(crate) data_floor: Option<u64>,
}

/// Reaps stale leaves, creates the run's cgroup, and says how each limit is enforced.
///
/// # Errors
/// An unexpected failure creating the leaf or writing a limit; missing permissions are
/// `not enforced` rows, not errors.
pub(crate) fn prepare_run(
    spec: &LimitsSpec,
    rlimits: &PreparedRlimits,
    teardown: Teardown,
) -> Result<RunLimits, CgroupError> {
    // A cgroup left behind by a SIGKILLed launcher is reaped by the next run.
    // One read of /proc/self/mountinfo and /proc/self/cgroup for both (issue 19).
    let layout = cgroup::detect_layout()?;
    let _ = cgroup::reap_in(&layout);
    let (cg, notes) = cgroup::prepare_on(&layout, spec, teardown)?;
    let mut rows = summary(spec, cg.as_ref(), &notes, rlimits);
    // Requested limits no cgroup enforces and no rlimit stands in for exactly (memory:
    // RLIMIT_DATA below is per process only). pids has RLIMIT_NPROC, exact in the sandbox's
    // own user namespace.
    let degraded = notes
        .iter()
        .filter(|n| n.kind == NoteKind::NotEnforced)
        .map(|n| n.limit)
        .filter(|l| !rlimits.iter().any(|(r, _)| r.limit() == *l))
        .collect();
    // Without a memory cgroup, RLIMIT_DATA (private writable memory per process) is the floor.
    // Not RLIMIT_AS: runtimes reserve far more address space than they use.
    let mut data_floor = None;
    if let Some(m) = spec.memory {
        if !cg.as_ref().is_some_and(|c| c.enforces(Limit::Memory)) {
            data_floor = Some(m);
            for row in rows.iter_mut().filter(|r| r.limit == Limit::Memory) {
                let m = format_size(m);
                *row = LimitRow::new(
                    Limit::Memory,
                    Enforcement::PerProcess,
                    format!(
                        "{m} per process only (RLIMIT_DATA), and one {m} budget shared by every \
                         tmpfs and SysV shared memory; memfds and shared anonymous memory are \
                         not bounded: no writable memory cgroup for this caller (`agentcage \
                         doctor` says why and how to delegate one)"
                    ),
                );
            }
        }
    }
    Ok(RunLimits {
        cgroup: cg,
        rows,
        degraded,
        data_floor,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// host_memory reads only the head of /proc/meminfo: it finds the same MemTotal as a
    /// parse of the whole file.
    #[test]
    fn host_memory_is_memtotal() {
        let text = std::fs::read_to_string("/proc/meminfo").unwrap();
        let kb: u64 = text
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap();
        assert_eq!(host_memory(), Some(kb * 1024));
    }

    /// Rows as the `(limit, how)` pairs `run -v` shows.
    pub(crate) fn pairs(rows: &[LimitRow]) -> Vec<(String, String)> {
        rows.iter()
            .map(|r| (r.limit.name().to_owned(), r.to_string()))
            .collect()
    }

    #[test]
    fn summary_prefers_cgroup_then_rlimit_then_reason() {
        let limits = LimitsSpec {
            pids: Some(10),
            memory: Some(64 << 20),
            cpus: Some(1.0),
            timeout: Some(90.0),
            nofile: Some(100),
            no_core: true,
            ..Default::default()
        };
        let notes = vec![
            Note::new(Limit::Pids, NoteKind::NotEnforced, "no writable cgroup"),
            Note::new(Limit::Memory, NoteKind::NotEnforced, "no writable cgroup"),
        ];
        let (rl, _) = super::rlimit::prepare(&limits, super::rlimit::NprocMode::OwnUserNs).unwrap();
        let rows = pairs(&summary(&limits, None, &notes, &rl));
        let get = |k: &str| {
            rows.iter()
                .find(|(l, _)| l == k)
                .map(|(_, h)| h.as_str())
                .unwrap()
        };
        assert_eq!(get("pids"), "rlimit RLIMIT_NPROC=10");
        assert_eq!(get("memory"), "not enforced: no writable cgroup");
        assert_eq!(get("cpus"), "not enforced: no mechanism available");
        assert_eq!(get("timeout"), "launcher timer (90s)");
        assert!(get("nofile").starts_with("rlimit RLIMIT_NOFILE="));
        assert_eq!(get("core"), "rlimit RLIMIT_CORE=0");
        assert_eq!(rows.len(), 6);
        assert_eq!(
            Note::new(Limit::Cpus, NoteKind::NotEnforced, "x").to_string(),
            "cpus: not enforced: x"
        );
    }
}
