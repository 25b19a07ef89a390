//! Parent side: turn a [`Spec`] into a [`Prepared`] ruleset description for one ABI.
//!
//! Everything the child needs is built here: the handled masks, the attr size, one
//! NUL-terminated path and one access mask per rule, the merged port list and the
//! restrict_self flags. The child then only opens paths and makes syscalls.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::abi::{self, fs_rights, net, net_rights, restrict, scope, scopes, HostSupport};
use crate::apply::{ApplyError, ApplyOutcome, ApplyStep};
use crate::report::{EnforcementReport, Status};
use crate::spec::{Access, Requirement, Spec};

/// Errors of [`prepare`], and apply-time failures explained by [`Prepared::explain`].
#[derive(Debug, thiserror::Error)]
pub enum LandlockError {
    /// A rule path is relative: it would depend on the child's working directory.
    #[error("Landlock rule path {} is not absolute", path.display())]
    RelativePath {
        /// The path.
        path: PathBuf,
    },
    /// A rule path contains a NUL byte.
    #[error("Landlock rule path {} contains a NUL byte", path.display())]
    NulInPath {
        /// The path.
        path: PathBuf,
    },
    /// Ports were listed without `restrict_tcp`: they would mean nothing.
    #[error("TCP ports {ports:?} are listed but TCP restriction is off")]
    PortsWithoutRestriction {
        /// The listed ports.
        ports: Vec<u16>,
    },
    /// [`Requirement::HardRequirement`] and the kernel falls short.
    #[error("Landlock cannot enforce the requested policy: {what}")]
    Unenforceable {
        /// What is missing and why.
        what: String,
    },
    /// landlock_create_ruleset failed.
    #[error("landlock_create_ruleset (handled fs {handled_fs:#x}, net {handled_net:#x}, scoped {scoped:#x})")]
    CreateRuleset {
        /// Handled filesystem rights.
        handled_fs: u64,
        /// Handled network rights.
        handled_net: u64,
        /// Scopes.
        scoped: u64,
        /// The errno.
        #[source]
        source: io::Error,
    },
    /// Opening a rule path failed (other than ENOENT/ENOTDIR, which skip the rule).
    #[error("open Landlock rule path {} (O_PATH)", path.display())]
    OpenPath {
        /// The path.
        path: PathBuf,
        /// The errno.
        #[source]
        source: io::Error,
    },
    /// fstat on a rule path failed.
    #[error("fstat Landlock rule path {}", path.display())]
    StatPath {
        /// The path.
        path: PathBuf,
        /// The errno.
        #[source]
        source: io::Error,
    },
    /// landlock_add_rule for a path failed.
    #[error("landlock_add_rule {} ({access:?})", path.display())]
    AddPathRule {
        /// The path.
        path: PathBuf,
        /// The access class.
        access: Access,
        /// The errno.
        #[source]
        source: io::Error,
    },
    /// landlock_add_rule for a port failed.
    #[error("landlock_add_rule TCP port {port}")]
    AddNetRule {
        /// The port.
        port: u16,
        /// The errno.
        #[source]
        source: io::Error,
    },
    /// landlock_restrict_self failed.
    #[error("landlock_restrict_self{hint}")]
    RestrictSelf {
        /// A hint for EPERM.
        hint: &'static str,
        /// The errno.
        #[source]
        source: io::Error,
    },
    /// prctl(PR_SET_NO_NEW_PRIVS) failed.
    #[error("prctl(PR_SET_NO_NEW_PRIVS)")]
    SetNoNewPrivs {
        /// The errno.
        #[source]
        source: io::Error,
    },
}

/// One prepared path rule.
#[derive(Debug, Clone)]
pub(crate) struct PreparedRule {
    pub path: CString,
    pub source: PathBuf,
    pub class: Access,
    /// `class.rights()` intersected with the handled rights (directory form).
    pub access: u64,
    /// [`crate::Rule::expect_dir`].
    pub expect_dir: bool,
}

/// One prepared port rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PreparedPort {
    pub port: u16,
    pub access: u64,
}

/// A Landlock policy ready for [`crate::apply`]: plain data, nothing for the child to build.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub(crate) abi: u32,
    pub(crate) attr: crate::sys::RulesetAttr,
    pub(crate) attr_size: usize,
    pub(crate) restrict_flags: u32,
    pub(crate) rules: Vec<PreparedRule>,
    pub(crate) ports: Vec<PreparedPort>,
    report: EnforcementReport,
}

/// Build the ruleset description for `spec` on a host with `host` support (pass
/// `&detect_abi()`; tests pass a lower ABI to check old-kernel behaviour).
///
/// With Landlock unavailable and [`Requirement::BestEffort`] the result is a no-op whose
/// report says why nothing is enforced.
///
/// # Errors
/// Relative or NUL-containing rule paths; ports without `restrict_tcp`; with
/// [`Requirement::HardRequirement`], Landlock unavailable or an explicitly requested feature
/// (TCP restriction, a scope) beyond the kernel's ABI.
pub fn prepare(spec: &Spec, host: &HostSupport) -> Result<Prepared, LandlockError> {
    let mut rules = Vec::with_capacity(spec.rules.len());
    for rule in &spec.rules {
        if !rule.path.is_absolute() {
            return Err(LandlockError::RelativePath {
                path: rule.path.clone(),
            });
        }
        let path = CString::new(rule.path.as_os_str().as_bytes()).map_err(|_| {
            LandlockError::NulInPath {
                path: rule.path.clone(),
            }
        })?;
        rules.push((path, rule));
    }
    let has_ports = !spec.tcp_bind.is_empty() || !spec.tcp_connect.is_empty();
    if has_ports && !spec.restrict_tcp {
        let mut ports: Vec<u16> = spec
            .tcp_bind
            .iter()
            .chain(&spec.tcp_connect)
            .copied()
            .collect();
        ports.sort_unstable();
        ports.dedup();
        return Err(LandlockError::PortsWithoutRestriction { ports });
    }

    let errata = if host.is_ok() {
        abi::detect_errata()
    } else {
        None
    };
    let report = EnforcementReport::build(spec, host, errata);
    if spec.requirement == Requirement::HardRequirement {
        if let Some(reason) = &report.unavailable {
            return Err(LandlockError::Unenforceable {
                what: reason.clone(),
            });
        }
        // Filesystem rights newer than the kernel are reported, not fatal (see Requirement).
        let explicit: Vec<String> = report
            .rights
            .iter()
            .filter(|r| r.right.name().starts_with("net.") || r.right.name().starts_with("scope."))
            .filter_map(|r| match &r.status {
                Status::NotEnforced { reason, .. } => Some(format!("{} ({reason})", r.right)),
                _ => None,
            })
            .collect();
        if !explicit.is_empty() {
            return Err(LandlockError::Unenforceable {
                what: explicit.join(", "),
            });
        }
    }

    let abi = report.used_abi;
    let handled_fs = fs_rights(abi);
    let handled_net = if spec.restrict_tcp {
        net_rights(abi)
    } else {
        0
    };
    let mut scoped = 0;
    if spec.scope_abstract_unix {
        scoped |= scope::ABSTRACT_UNIX_SOCKET;
    }
    if spec.scope_signal {
        scoped |= scope::SIGNAL;
    }
    scoped &= scopes(abi);
    let restrict_flags = if spec.log_denials && abi >= 7 {
        restrict::LOG_NEW_EXEC_ON
    } else {
        0
    };

    let rules = rules
        .into_iter()
        .map(|(path, rule)| PreparedRule {
            path,
            source: rule.path.clone(),
            class: rule.access,
            access: rule.access.rights() & handled_fs,
            expect_dir: rule.expect_dir,
        })
        .collect();

    let mut ports: BTreeMap<u16, u64> = BTreeMap::new();
    if handled_net != 0 {
        for &p in &spec.tcp_bind {
            *ports.entry(p).or_default() |= net::BIND_TCP;
        }
        for &p in &spec.tcp_connect {
            *ports.entry(p).or_default() |= net::CONNECT_TCP;
        }
    }
    let ports = ports
        .into_iter()
        .map(|(port, access)| PreparedPort { port, access })
        .collect();

    Ok(Prepared {
        abi,
        attr: crate::sys::RulesetAttr {
            handled_access_fs: handled_fs,
            handled_access_net: handled_net,
            scoped,
        },
        attr_size: abi::ruleset_attr_size(abi),
        restrict_flags,
        rules,
        ports,
        report,
    })
}

impl Prepared {
    /// What this policy enforces on this host, per right.
    pub fn enforcement(&self) -> EnforcementReport {
        self.report.clone()
    }

    /// The ABI the ruleset is built for (0: Landlock unavailable, `apply` is a no-op).
    pub fn abi(&self) -> u32 {
        self.abi
    }

    /// Whether `apply` does nothing (Landlock unavailable under best effort).
    pub fn is_noop(&self) -> bool {
        self.abi == 0
    }

    /// Handled filesystem rights (`handled_access_fs`).
    pub fn handled_fs(&self) -> u64 {
        self.attr.handled_access_fs
    }

    /// Handled network rights (`handled_access_net`).
    pub fn handled_net(&self) -> u64 {
        self.attr.handled_access_net
    }

    /// Scopes (`scoped`).
    pub fn scoped(&self) -> u64 {
        self.attr.scoped
    }

    /// The access mask prepared for rule `index` (directory form; the child masks it to the
    /// file rights when the path is not a directory).
    pub fn rule_access(&self, index: usize) -> Option<u64> {
        self.rules.get(index).map(|r| r.access)
    }

    /// The rule paths that were missing at apply time.
    pub fn missing_paths(&self, outcome: &ApplyOutcome) -> Vec<&Path> {
        self.rules
            .iter()
            .enumerate()
            .filter(|(i, _)| outcome.is_missing(*i))
            .map(|(_, r)| r.source.as_path())
            .collect()
    }

    /// Turn the child's compact [`ApplyError`] into a full error naming the path or port.
    pub fn explain(&self, e: ApplyError) -> LandlockError {
        let source = io::Error::from_raw_os_error(e.errno);
        let rule = usize::try_from(e.index)
            .ok()
            .and_then(|i| self.rules.get(i));
        let path = || rule.map_or_else(|| PathBuf::from("?"), |r| r.source.clone());
        match e.step {
            ApplyStep::CreateRuleset => LandlockError::CreateRuleset {
                handled_fs: self.attr.handled_access_fs,
                handled_net: self.attr.handled_access_net,
                scoped: self.attr.scoped,
                source,
            },
            ApplyStep::OpenPath => LandlockError::OpenPath {
                path: path(),
                source,
            },
            ApplyStep::StatPath => LandlockError::StatPath {
                path: path(),
                source,
            },
            ApplyStep::AddPathRule => LandlockError::AddPathRule {
                path: path(),
                access: rule.map_or(Access::ReadOnly, |r| r.class),
                source,
            },
            ApplyStep::AddNetRule => LandlockError::AddNetRule {
                port: usize::try_from(e.index)
                    .ok()
                    .and_then(|i| self.ports.get(i))
                    .map_or(0, |p| p.port),
                source,
            },
            ApplyStep::RestrictSelf => LandlockError::RestrictSelf {
                hint: if e.errno == libc::EPERM {
                    " (the caller must set no_new_privs or hold CAP_SYS_ADMIN in its user namespace)"
                } else {
                    ""
                },
                source,
            },
            ApplyStep::SetNoNewPrivs => LandlockError::SetNoNewPrivs { source },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::abi::{fs, Unavailable};
    use crate::spec::Rule;

    fn spec() -> Spec {
        Spec {
            rules: vec![
                Rule::new("/usr", Access::ReadExec),
                Rule::new("/tmp", Access::ReadWrite),
                Rule::new("/dev/null", Access::DevRw),
            ],
            ..Spec::default()
        }
    }

    #[test]
    fn masks_follow_abi() {
        let p = prepare(&spec(), &Ok(3)).expect("valid spec");
        assert_eq!(p.handled_fs(), fs_rights(3));
        assert_eq!(p.rule_access(1), Some(fs_rights(3)));
        assert_eq!(
            p.rule_access(2),
            Some(fs::READ_FILE | fs::WRITE_FILE | fs::TRUNCATE)
        );
        assert_eq!(p.attr_size, 8);
        let p = prepare(&spec(), &Ok(7)).expect("valid spec");
        assert_eq!(
            p.rule_access(2).map(|a| a & fs::IOCTL_DEV),
            Some(fs::IOCTL_DEV)
        );
        assert_eq!(p.handled_net(), 0, "TCP not requested");
        assert_eq!(p.scoped(), 0);
    }

    #[test]
    fn relative_and_nul_paths_are_rejected() {
        let mut s = spec();
        s.rules.push(Rule::new("rel/dir", Access::ReadOnly));
        assert!(matches!(
            prepare(&s, &Ok(7)),
            Err(LandlockError::RelativePath { .. })
        ));
        let mut s = spec();
        s.rules.push(Rule::new(
            std::ffi::OsStr::from_bytes(b"/a\0b"),
            Access::ReadOnly,
        ));
        assert!(matches!(
            prepare(&s, &Ok(7)),
            Err(LandlockError::NulInPath { .. })
        ));
    }

    #[test]
    fn ports_merge_and_need_restriction() {
        let mut s = spec();
        s.tcp_connect = vec![443, 80, 443];
        s.tcp_bind = vec![8080, 80];
        assert!(matches!(
            prepare(&s, &Ok(7)),
            Err(LandlockError::PortsWithoutRestriction { ports }) if ports == [80, 443, 8080]
        ));
        s.restrict_tcp = true;
        let p = prepare(&s, &Ok(7)).expect("valid spec");
        assert_eq!(p.handled_net(), net::BIND_TCP | net::CONNECT_TCP);
        assert_eq!(
            p.ports,
            vec![
                PreparedPort {
                    port: 80,
                    access: net::BIND_TCP | net::CONNECT_TCP
                },
                PreparedPort {
                    port: 443,
                    access: net::CONNECT_TCP
                },
                PreparedPort {
                    port: 8080,
                    access: net::BIND_TCP
                },
            ]
        );
    }

    #[test]
    fn hard_requirement_fails_closed() {
        let err = prepare(&spec(), &Err(Unavailable::NotBuilt)).expect_err("no Landlock");
        assert!(err.to_string().contains("ENOSYS"), "{err}");
        let mut s = spec();
        s.restrict_tcp = true;
        s.scope_signal = true;
        let err = prepare(&s, &Ok(3)).expect_err("ABI 3 has no TCP rights");
        let msg = err.to_string();
        assert!(
            msg.contains("net.bind_tcp (needs ABI 4, kernel has 3)"),
            "{msg}"
        );
        assert!(
            msg.contains("scope.signal (needs ABI 6, kernel has 3)"),
            "{msg}"
        );
        // Old filesystem ABIs are reported, not fatal.
        assert!(prepare(&spec(), &Ok(1)).is_ok());
    }

    #[test]
    fn best_effort_degrades_and_reports() {
        let mut s = spec();
        s.requirement = Requirement::BestEffort;
        s.restrict_tcp = true;
        s.tcp_connect = vec![443];
        s.scope_abstract_unix = true;
        let p = prepare(&s, &Ok(3)).expect("best effort");
        assert_eq!(p.handled_net(), 0);
        assert!(p.ports.is_empty());
        assert_eq!(p.scoped(), 0);
        assert_eq!(p.enforcement().missing().count(), 5);
        let p = prepare(&s, &Err(Unavailable::DisabledAtBoot)).expect("best effort");
        assert!(p.is_noop());
        assert_eq!(p.handled_fs(), 0);
    }

    #[test]
    fn log_denials_only_from_abi_7() {
        let mut s = spec();
        s.log_denials = true;
        assert_eq!(prepare(&s, &Ok(6)).expect("valid").restrict_flags, 0);
        assert_eq!(
            prepare(&s, &Ok(7)).expect("valid").restrict_flags,
            restrict::LOG_NEW_EXEC_ON
        );
    }

    #[test]
    fn explain_names_the_object() {
        let p = prepare(&spec(), &Ok(7)).expect("valid spec");
        let e = p.explain(ApplyError {
            step: ApplyStep::AddPathRule,
            index: 1,
            errno: libc::EINVAL,
        });
        assert_eq!(e.to_string(), "landlock_add_rule /tmp (ReadWrite)");
        let e = p.explain(ApplyError {
            step: ApplyStep::RestrictSelf,
            index: u32::MAX,
            errno: libc::EPERM,
        });
        assert!(e.to_string().contains("no_new_privs"));
        assert_eq!(
            std::error::Error::source(&e).map(|s| s.to_string()),
            Some(io::Error::from_raw_os_error(libc::EPERM).to_string())
        );
    }
}
