//! Child side: create the ruleset, add the prepared rules, restrict the calling thread.
//!
//! Runs between clone and execve, after pivot_root, so the rule paths resolve in the new
//! root (`/tmp`, `/dev/*`, the synthesized `/etc` and `/proc` exist only there). Nothing
//! here allocates, locks or panics: it reads `&Prepared` and makes raw syscalls. Errors
//! are a `Copy` record ([`ApplyError`]) for the report pipe; the parent turns them into a
//! full error with [`crate::Prepared::explain`].

use crate::abi::fs;
use crate::prepare::Prepared;
use crate::sys::{self, FdGuard};

/// The step of [`apply`] that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ApplyStep {
    /// `landlock_create_ruleset`.
    CreateRuleset = 1,
    /// `open(path, O_PATH)` of a rule path (ENOENT/ENOTDIR skip the rule instead).
    OpenPath = 2,
    /// `fstat` of a rule path.
    StatPath = 3,
    /// `landlock_add_rule` for a path.
    AddPathRule = 4,
    /// `landlock_add_rule` for a port.
    AddNetRule = 5,
    /// `landlock_restrict_self`.
    RestrictSelf = 6,
    /// `prctl(PR_SET_NO_NEW_PRIVS)` in [`set_no_new_privs`].
    SetNoNewPrivs = 7,
}

impl ApplyStep {
    fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            1 => ApplyStep::CreateRuleset,
            2 => ApplyStep::OpenPath,
            3 => ApplyStep::StatPath,
            4 => ApplyStep::AddPathRule,
            5 => ApplyStep::AddNetRule,
            6 => ApplyStep::RestrictSelf,
            7 => ApplyStep::SetNoNewPrivs,
            _ => return None,
        })
    }
}

/// A failure in the child: a few bytes, `Copy`, safe to build and send before execve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApplyError {
    /// What failed.
    pub step: ApplyStep,
    /// Index of the path rule (OpenPath, StatPath, AddPathRule) or of the port in the merged,
    /// sorted port list (AddNetRule); [`ApplyError::NO_INDEX`] otherwise.
    pub index: u32,
    /// The errno.
    pub errno: i32,
}

impl ApplyError {
    /// `index` for steps that concern no rule.
    pub const NO_INDEX: u32 = u32::MAX;
    /// Size of [`ApplyError::to_bytes`].
    pub const WIRE_SIZE: usize = 12;

    fn new(step: ApplyStep, index: usize, errno: i32) -> Self {
        ApplyError {
            step,
            index: u32::try_from(index).unwrap_or(Self::NO_INDEX),
            errno,
        }
    }

    /// Fixed-size encoding for a pipe (native endianness: both ends are one machine).
    pub fn to_bytes(self) -> [u8; Self::WIRE_SIZE] {
        let mut b = [0u8; Self::WIRE_SIZE];
        b[0] = self.step as u8;
        b[4..8].copy_from_slice(&self.index.to_ne_bytes());
        b[8..12].copy_from_slice(&self.errno.to_ne_bytes());
        b
    }

    /// Decode [`ApplyError::to_bytes`]; `None` for an unknown step.
    pub fn from_bytes(b: &[u8; Self::WIRE_SIZE]) -> Option<Self> {
        Some(ApplyError {
            step: ApplyStep::from_u8(b[0])?,
            index: u32::from_ne_bytes([b[4], b[5], b[6], b[7]]),
            errno: i32::from_ne_bytes([b[8], b[9], b[10], b[11]]),
        })
    }
}

impl std::fmt::Display for ApplyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Landlock {:?} (rule {}): {}",
            self.step,
            self.index,
            std::io::Error::from_raw_os_error(self.errno)
        )
    }
}

impl std::error::Error for ApplyError {}

/// Rule indices tracked individually in [`ApplyOutcome`]; beyond this only the count is kept.
pub const TRACKED_RULES: usize = 256;

/// What [`apply`] did: counts and which rules were skipped because their path was missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ApplyOutcome {
    /// Whether a Landlock domain was enforced (false only for a no-op [`Prepared`]).
    pub restricted: bool,
    /// Path rules added.
    pub path_rules: u32,
    /// Port rules added.
    pub port_rules: u32,
    /// Path rules skipped because the path did not exist (ENOENT) or a component was not a
    /// directory (ENOTDIR).
    pub missing: u32,
    missing_bits: [u64; TRACKED_RULES / 64],
}

impl ApplyOutcome {
    /// Size of [`ApplyOutcome::to_bytes`].
    pub const WIRE_SIZE: usize = 16 + TRACKED_RULES / 8;

    fn mark_missing(&mut self, index: usize) {
        self.missing += 1;
        if index < TRACKED_RULES {
            self.missing_bits[index / 64] |= 1 << (index % 64);
        }
    }

    /// Whether path rule `index` was skipped as missing (always false past
    /// [`TRACKED_RULES`]; `missing` still counts those).
    pub fn is_missing(&self, index: usize) -> bool {
        index < TRACKED_RULES && self.missing_bits[index / 64] & (1 << (index % 64)) != 0
    }

    /// Fixed-size encoding for a pipe (native endianness).
    pub fn to_bytes(&self) -> [u8; Self::WIRE_SIZE] {
        let mut b = [0u8; Self::WIRE_SIZE];
        b[0..4].copy_from_slice(&u32::from(self.restricted).to_ne_bytes());
        b[4..8].copy_from_slice(&self.path_rules.to_ne_bytes());
        b[8..12].copy_from_slice(&self.port_rules.to_ne_bytes());
        b[12..16].copy_from_slice(&self.missing.to_ne_bytes());
        for (i, w) in self.missing_bits.iter().enumerate() {
            b[16 + i * 8..24 + i * 8].copy_from_slice(&w.to_ne_bytes());
        }
        b
    }

    /// Decode [`ApplyOutcome::to_bytes`].
    pub fn from_bytes(b: &[u8; Self::WIRE_SIZE]) -> Self {
        let u32_at = |o: usize| u32::from_ne_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
        let mut missing_bits = [0u64; TRACKED_RULES / 64];
        for (i, w) in missing_bits.iter_mut().enumerate() {
            let mut word = [0u8; 8];
            word.copy_from_slice(&b[16 + i * 8..24 + i * 8]);
            *w = u64::from_ne_bytes(word);
        }
        ApplyOutcome {
            restricted: u32_at(0) != 0,
            path_rules: u32_at(4),
            port_rules: u32_at(8),
            missing: u32_at(12),
            missing_bits,
        }
    }
}

/// Set no_new_privs on the calling thread, as `landlock_restrict_self` requires of a caller
/// without CAP_SYS_ADMIN in its user namespace.
///
/// Runs in the child after clone: async-signal-safe only.
///
/// # Errors
/// [`ApplyStep::SetNoNewPrivs`] with the errno.
pub fn set_no_new_privs() -> Result<(), ApplyError> {
    sys::set_no_new_privs().map_err(|e| ApplyError::new(ApplyStep::SetNoNewPrivs, usize::MAX, e))
}

/// Enforce the prepared policy on the calling thread and its future children.
///
/// Runs in the child after clone: async-signal-safe only.
///
/// Preconditions: the new root is in place (rule paths are resolved now, in the caller's
/// mount namespace and root), and the caller either set no_new_privs ([`set_no_new_privs`])
/// or holds CAP_SYS_ADMIN in its user namespace; otherwise restrict_self fails with EPERM.
/// Apply after every mount: a Landlock domain forbids mount topology changes.
///
/// A rule whose path does not exist (ENOENT, ENOTDIR) is skipped and recorded in the
/// outcome; skipping only ever removes access. On a non-directory the rule keeps only the
/// file rights (execute, read, write, truncate, ioctl_dev, resolve_unix), as the kernel
/// requires. A no-op [`Prepared`] (Landlock unavailable, best effort) returns
/// `restricted: false`.
///
/// # Errors
/// The failing step, rule index and errno. Every fd opened here is closed on all paths.
pub fn apply(p: &Prepared) -> Result<ApplyOutcome, ApplyError> {
    let mut outcome = ApplyOutcome::default();
    if p.is_noop() {
        return Ok(outcome);
    }
    let ruleset = sys::create_ruleset(&p.attr, p.attr_size)
        .map_err(|e| ApplyError::new(ApplyStep::CreateRuleset, usize::MAX, e))?;
    let ruleset = FdGuard(ruleset);

    for (i, rule) in p.rules.iter().enumerate() {
        // An expected directory is opened with O_DIRECTORY: success proves the kind, one
        // fstat saved. Anything else (not expected, or ENOTDIR: not a directory after all,
        // or a component before it is not) takes the general path, as if there were no hint.
        let hinted = if rule.expect_dir {
            sys::open_dir_path(&rule.path)
        } else {
            Err(libc::ENOTDIR)
        };
        let (fd, dir) = match hinted {
            Ok(fd) => (FdGuard(fd), true),
            Err(libc::ENOENT) => {
                outcome.mark_missing(i);
                continue;
            }
            Err(libc::ENOTDIR) => {
                let fd = match sys::open_path(&rule.path) {
                    Ok(fd) => FdGuard(fd),
                    Err(libc::ENOENT | libc::ENOTDIR) => {
                        outcome.mark_missing(i);
                        continue;
                    }
                    Err(e) => return Err(ApplyError::new(ApplyStep::OpenPath, i, e)),
                };
                let dir =
                    sys::is_dir(fd.0).map_err(|e| ApplyError::new(ApplyStep::StatPath, i, e))?;
                (fd, dir)
            }
            Err(e) => return Err(ApplyError::new(ApplyStep::OpenPath, i, e)),
        };
        let access = if dir {
            rule.access
        } else {
            rule.access & fs::FILE
        };
        if access == 0 {
            // Nothing this class grants applies to this kind of file: no rule is the same.
            continue;
        }
        sys::add_path_rule(ruleset.0, fd.0, access)
            .map_err(|e| ApplyError::new(ApplyStep::AddPathRule, i, e))?;
        outcome.path_rules += 1;
    }

    for (i, port) in p.ports.iter().enumerate() {
        sys::add_net_rule(ruleset.0, port.port, port.access)
            .map_err(|e| ApplyError::new(ApplyStep::AddNetRule, i, e))?;
        outcome.port_rules += 1;
    }

    sys::restrict_self(ruleset.0, p.restrict_flags)
        .map_err(|e| ApplyError::new(ApplyStep::RestrictSelf, usize::MAX, e))?;
    outcome.restricted = true;
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_round_trips() {
        let e = ApplyError::new(ApplyStep::AddNetRule, 3, libc::EINVAL);
        assert_eq!(ApplyError::from_bytes(&e.to_bytes()), Some(e));
        let mut b = e.to_bytes();
        b[0] = 0;
        assert_eq!(ApplyError::from_bytes(&b), None);
        assert_eq!(
            ApplyError::new(ApplyStep::RestrictSelf, usize::MAX, 1).index,
            ApplyError::NO_INDEX
        );
    }

    #[test]
    fn outcome_tracks_missing_rules() {
        let mut o = ApplyOutcome::default();
        o.mark_missing(0);
        o.mark_missing(65);
        o.mark_missing(255);
        o.mark_missing(300);
        assert_eq!(o.missing, 4);
        assert!(o.is_missing(0) && o.is_missing(65) && o.is_missing(255));
        assert!(!o.is_missing(1) && !o.is_missing(64) && !o.is_missing(300));
        o.restricted = true;
        o.path_rules = 7;
        o.port_rules = 2;
        assert_eq!(ApplyOutcome::from_bytes(&o.to_bytes()), o);
    }
}
