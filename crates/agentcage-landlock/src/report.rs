//! Per-right enforcement report: what this kernel enforces of a [`Spec`], fully, partially or
//! not at all, with the ABI that would bring a missing right. It feeds `run -v`, the matrix
//! header and `doctor`; weaker enforcement is data, never silence.

use std::fmt;

use serde::Serialize;

use crate::abi::{
    HostSupport, Right, ERRATUM_DISCONNECTED_DIRECTORY, ERRATUM_SCOPED_SIGNAL_THREADS,
    ERRATUM_TCP_SOCKET_IDENTIFICATION, MAX_KNOWN_ABI,
};
use crate::spec::Spec;

/// The state of one right.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Status {
    /// The kernel enforces it (since ABI `abi`).
    Enforced {
        /// The ABI that introduced the right.
        abi: u32,
    },
    /// The kernel enforces it with a known weakness.
    Partial {
        /// The ABI that introduced the right.
        abi: u32,
        /// What is missing.
        reason: String,
    },
    /// Not enforced on this host.
    NotEnforced {
        /// The ABI that would bring it.
        needs_abi: u32,
        /// The kernel's ABI, `None` when Landlock is unavailable.
        kernel_abi: Option<u32>,
        /// Why, in words.
        reason: String,
    },
    /// The spec does not ask for it (e.g. TCP restriction in the `landlock` profile).
    NotRequested,
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RightReport {
    /// The right.
    pub right: Right,
    /// Whether it is enforced.
    #[serde(flatten)]
    pub status: Status,
    /// A caveat that holds even when enforced (e.g. TCP rights do not cover UDP).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// Overall verdict, for `RunOutcome`-style summaries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Overall {
    /// Every requested right is enforced.
    Full,
    /// Some requested rights are missing or weakened.
    Partial,
    /// Nothing is enforced (Landlock unavailable).
    NotEnforced,
}

/// What a prepared Landlock policy enforces on this host, per right.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EnforcementReport {
    /// The kernel's ABI; `None` when Landlock is unavailable.
    pub kernel_abi: Option<u32>,
    /// The ABI we use: the kernel's, capped at what this crate knows.
    pub used_abi: u32,
    /// Why Landlock is unavailable, when it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unavailable: Option<String>,
    /// Bitmask of fixed errata (bit N-1 = erratum N), `None` when the kernel cannot tell.
    pub errata: Option<u32>,
    /// One entry per right, in [`Right::ALL`] order.
    pub rights: Vec<RightReport>,
    /// Host-level remarks (e.g. a kernel newer than this crate).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

impl EnforcementReport {
    /// Build the report for `spec` on a host with `host` support and `errata`.
    pub fn build(spec: &Spec, host: &HostSupport, errata: Option<u32>) -> Self {
        let kernel_abi = host.as_ref().ok().copied();
        let used_abi = kernel_abi.map_or(0, |k| k.min(MAX_KNOWN_ABI));
        let unavailable = host.as_ref().err().map(|u| u.reason());
        let mut notes = Vec::new();
        if let Some(k) = kernel_abi.filter(|k| *k > MAX_KNOWN_ABI) {
            notes.push(format!(
                "kernel has Landlock ABI {k}; agentcage knows up to {MAX_KNOWN_ABI} and uses that: \
                 rights added after ABI {MAX_KNOWN_ABI} are not handled"
            ));
        }
        let fixed = |bit: u32| errata.is_some_and(|e| e & bit != 0);
        let rights = Right::ALL
            .iter()
            .map(|&right| {
                let requested = match right {
                    Right::NetBindTcp | Right::NetConnectTcp => spec.restrict_tcp,
                    Right::ScopeAbstractUnixSocket => spec.scope_abstract_unix,
                    Right::ScopeSignal => spec.scope_signal,
                    Right::AuditLogNewExec => spec.log_denials,
                    _ => true,
                };
                let since = right.since_abi();
                let mut note = None;
                let status = if !requested {
                    Status::NotRequested
                } else if let Some(reason) = &unavailable {
                    Status::NotEnforced {
                        needs_abi: since,
                        kernel_abi: None,
                        reason: reason.clone(),
                    }
                } else if used_abi >= since {
                    match right {
                        Right::FsRefer if !fixed(ERRATUM_DISCONNECTED_DIRECTORY) => {
                            Status::Partial {
                                abi: since,
                                reason: "the kernel does not report the fix for erratum 3: \
                                         rename/link through a directory moved out of a bind \
                                         mount can widen access"
                                    .into(),
                            }
                        }
                        Right::NetBindTcp | Right::NetConnectTcp => {
                            note = Some(if fixed(ERRATUM_TCP_SOCKET_IDENTIFICATION) {
                                "TCP only: UDP, SCTP and MPTCP sockets are not restricted by \
                                 Landlock"
                                    .into()
                            } else {
                                "TCP only: UDP is not restricted; without the fix for erratum 1 \
                                 SCTP and MPTCP stream sockets are restricted like TCP"
                                    .into()
                            });
                            Status::Enforced { abi: since }
                        }
                        Right::ScopeSignal if !fixed(ERRATUM_SCOPED_SIGNAL_THREADS) => {
                            note = Some(
                                "without the fix for erratum 2, threads of one process in \
                                 different domains cannot signal each other"
                                    .into(),
                            );
                            Status::Enforced { abi: since }
                        }
                        _ => Status::Enforced { abi: since },
                    }
                } else if right == Right::FsRefer {
                    // ABI 1 cannot grant REFER, but it denies every reparenting: stricter,
                    // not weaker.
                    note = Some(
                        "ABI 1 denies every cross-directory rename and link (EXDEV); ABI 2 allows \
                         them within writable trees"
                            .into(),
                    );
                    Status::Enforced { abi: 1 }
                } else {
                    Status::NotEnforced {
                        needs_abi: since,
                        kernel_abi,
                        reason: format!("needs ABI {since}, kernel has {used_abi}"),
                    }
                };
                RightReport {
                    right,
                    status,
                    note,
                }
            })
            .collect();
        EnforcementReport {
            kernel_abi,
            used_abi,
            unavailable,
            errata,
            rights,
            notes,
        }
    }

    /// The status of one right.
    pub fn status(&self, right: Right) -> Option<&Status> {
        self.rights
            .iter()
            .find(|r| r.right == right)
            .map(|r| &r.status)
    }

    /// The verdict over every requested right.
    pub fn overall(&self) -> Overall {
        if self.unavailable.is_some() {
            return Overall::NotEnforced;
        }
        let weak = self.rights.iter().any(|r| {
            matches!(
                r.status,
                Status::Partial { .. } | Status::NotEnforced { .. }
            )
        });
        if weak {
            Overall::Partial
        } else {
            Overall::Full
        }
    }

    /// Requested rights that are not enforced, as `(right, reason)`.
    pub fn missing(&self) -> impl Iterator<Item = (Right, &str)> {
        self.rights.iter().filter_map(|r| match &r.status {
            Status::NotEnforced { reason, .. } => Some((r.right, reason.as_str())),
            _ => None,
        })
    }

    /// One line, for headers: `landlock ABI 7 (kernel 7): full`.
    pub fn summary(&self) -> String {
        match (&self.unavailable, self.kernel_abi) {
            (Some(reason), _) => format!("landlock: not enforced: {reason}"),
            (None, Some(k)) => {
                let overall = match self.overall() {
                    Overall::Full => "fully enforced".to_string(),
                    Overall::Partial => {
                        let requested = self
                            .rights
                            .iter()
                            .filter(|r| r.status != Status::NotRequested);
                        let total = requested.clone().count();
                        let weak = requested
                            .filter(|r| {
                                matches!(
                                    r.status,
                                    Status::Partial { .. } | Status::NotEnforced { .. }
                                )
                            })
                            .count();
                        format!("partially enforced ({weak} of {total} requested rights missing or weakened)")
                    }
                    Overall::NotEnforced => "not enforced".to_string(),
                };
                format!("landlock ABI {} (kernel {k}): {overall}", self.used_abi)
            }
            (None, None) => "landlock: not enforced".to_string(),
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Status::Enforced { abi } => write!(f, "enforced (ABI {abi})"),
            Status::Partial { abi, reason } => {
                write!(f, "partially enforced (ABI {abi}): {reason}")
            }
            Status::NotEnforced { reason, .. } => write!(f, "not enforced: {reason}"),
            Status::NotRequested => f.write_str("not requested"),
        }
    }
}

impl fmt::Display for RightReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.right, self.status)?;
        if let Some(note) = &self.note {
            write!(f, " [{note}]")?;
        }
        Ok(())
    }
}

/// The summary line, host notes, then one line per right.
impl fmt::Display for EnforcementReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}", self.summary())?;
        for note in &self.notes {
            writeln!(f, "note: {note}")?;
        }
        for r in &self.rights {
            writeln!(f, "{r}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::abi::Unavailable;

    fn full_spec() -> Spec {
        Spec {
            restrict_tcp: true,
            scope_abstract_unix: true,
            scope_signal: true,
            ..Spec::default()
        }
    }

    fn line(report: &EnforcementReport, right: Right) -> String {
        report
            .rights
            .iter()
            .find(|r| r.right == right)
            .map(|r| r.to_string())
            .expect("every right has a line")
    }

    #[test]
    fn abi3_lines() {
        let r = EnforcementReport::build(&full_spec(), &Ok(3), Some(0b111));
        assert_eq!(line(&r, Right::FsTruncate), "fs.truncate: enforced (ABI 3)");
        assert_eq!(
            line(&r, Right::NetBindTcp),
            "net.bind_tcp: not enforced: needs ABI 4, kernel has 3"
        );
        assert_eq!(
            line(&r, Right::ScopeSignal),
            "scope.signal: not enforced: needs ABI 6, kernel has 3"
        );
        assert_eq!(
            line(&r, Right::AuditLogNewExec),
            "audit.log_new_exec: not requested"
        );
        assert_eq!(r.overall(), Overall::Partial);
        assert_eq!(
            r.missing().count(),
            6,
            "ioctl_dev, resolve_unix, 2 net, 2 scopes"
        );
    }

    #[test]
    fn abi1_refer_is_stricter() {
        let r = EnforcementReport::build(&Spec::default(), &Ok(1), None);
        let refer = line(&r, Right::FsRefer);
        assert!(refer.starts_with("fs.refer: enforced (ABI 1)"), "{refer}");
        assert!(refer.contains("EXDEV"));
        assert!(line(&r, Right::FsTruncate).contains("needs ABI 3, kernel has 1"));
    }

    #[test]
    fn unfixed_erratum_3_makes_refer_partial() {
        let r = EnforcementReport::build(&Spec::default(), &Ok(7), Some(0b011));
        assert!(matches!(
            r.status(Right::FsRefer),
            Some(Status::Partial { .. })
        ));
        let r = EnforcementReport::build(&Spec::default(), &Ok(7), Some(0b111));
        assert_eq!(r.status(Right::FsRefer), Some(&Status::Enforced { abi: 2 }));
    }

    #[test]
    fn unavailable_reports_reason_everywhere() {
        let r = EnforcementReport::build(&full_spec(), &Err(Unavailable::DisabledAtBoot), None);
        assert_eq!(r.overall(), Overall::NotEnforced);
        assert!(r.summary().contains("lsm="));
        assert!(line(&r, Right::FsExecute).contains("disabled at boot"));
        assert_eq!(
            line(&r, Right::AuditLogNewExec),
            "audit.log_new_exec: not requested"
        );
    }

    #[test]
    fn newer_kernel_is_capped_and_noted() {
        let r = EnforcementReport::build(&Spec::default(), &Ok(42), Some(0b111));
        assert_eq!(r.used_abi, MAX_KNOWN_ABI);
        assert_eq!(r.kernel_abi, Some(42));
        assert_eq!(r.notes.len(), 1);
        assert_eq!(r.overall(), Overall::Full);
    }

    #[test]
    fn serializes_with_stable_names() {
        let r = EnforcementReport::build(&full_spec(), &Ok(4), Some(1));
        let v = serde_json::to_value(&r).expect("report serializes");
        let rights = v["rights"].as_array().expect("rights is an array");
        assert_eq!(rights.len(), Right::ALL.len());
        let bind = rights
            .iter()
            .find(|x| x["right"] == "net.bind_tcp")
            .expect("net.bind_tcp present");
        assert_eq!(bind["state"], "enforced");
        assert_eq!(bind["abi"], 4);
        assert!(bind["note"].as_str().is_some_and(|n| n.contains("UDP")));
        let sig = rights
            .iter()
            .find(|x| x["right"] == "scope.signal")
            .expect("scope.signal present");
        assert_eq!(sig["state"], "not_enforced");
        assert_eq!(sig["needs_abi"], 6);
        assert_eq!(sig["kernel_abi"], 4);
        assert_eq!(v["used_abi"], 4);
    }

    #[test]
    fn display_has_one_line_per_right() {
        let r = EnforcementReport::build(&full_spec(), &Ok(7), Some(0b111));
        let text = r.to_string();
        assert_eq!(text.lines().count(), 1 + Right::ALL.len());
        assert!(text.starts_with("landlock ABI 7 (kernel 7): partially enforced (1 of 21 requested rights missing or weakened)"));
    }
}
