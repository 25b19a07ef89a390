//! Capabilities: empty every set (bounding, ambient, inheritable, permitted, effective) and
//! lock the securebits so that no execve can give them back, even to uid 0.
//!
//! `prepare` (parent) reads the highest capability number; `apply` (child) runs after the
//! mounts and Landlock, which need CAP_SYS_ADMIN in the user namespace. Kernel:
//! capabilities(7), prctl(2) PR_CAPBSET_DROP, PR_SET_SECUREBITS, PR_CAP_AMBIENT.

use crate::error::{SetupError, Step};
use crate::sys;

/// SECBIT_NOROOT, NO_SETUID_FIXUP, KEEP_CAPS, NO_CAP_AMBIENT_RAISE and their locks.
pub const SECUREBITS_LOCKED: libc::c_ulong = 0xff;

/// What the child needs to drop capabilities.
#[derive(Debug, Clone, Copy)]
pub struct PreparedCaps {
    last_cap: u32,
    /// The caller has no CAP_SETPCAP (an unprivileged caller of the nested rung, which has no
    /// user namespace to get one in): the bounding set and the securebits cannot be changed;
    /// no_new_privs already stops every execve from gaining a capability.
    no_setpcap: bool,
}

/// Reads /proc/sys/kernel/cap_last_cap (parent side); 63 when unreadable (the drop loop
/// stops at the first EINVAL anyway).
pub fn prepare() -> PreparedCaps {
    let mut buf = [0u8; 16];
    let last_cap = sys::read_head(c"/proc/sys/kernel/cap_last_cap", &mut buf, true)
        .ok()
        .and_then(|s| std::str::from_utf8(s).ok()?.trim().parse().ok())
        .unwrap_or(63);
    PreparedCaps {
        last_cap,
        no_setpcap: false,
    }
}

/// [`prepare`] for a process that stays in the caller's user namespace (the nested rung):
/// without CAP_SETPCAP in the effective set, only the ambient, inheritable, permitted and
/// effective sets are cleared.
pub fn prepare_in_place() -> PreparedCaps {
    let eff = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .unwrap_or(0);
    PreparedCaps {
        no_setpcap: eff & (1 << 8) == 0, // CAP_SETPCAP
        ..prepare()
    }
}

/// [`Step::Caps`] sub-steps (the drop order).
const BOUNDING: u32 = 0;
const SECUREBITS: u32 = 1;
const AMBIENT: u32 = 2;
const CAPSET: u32 = 3;

/// Drops every capability: the bounding set (the report's index: the capability), the securebits, the
/// ambient set, then capset.
///
/// Runs in the child after clone: async-signal-safe only.
pub(crate) fn apply(p: &PreparedCaps) -> Result<(), SetupError> {
    let fail = |sub, index| move |e| SetupError::at(Step::Caps, sub, index, e);
    if p.no_setpcap {
        return sys::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
            0,
            0,
            0,
        )
        .map(drop)
        .map_err(fail(AMBIENT, 0))
        .and_then(|()| sys::capset_clear().map_err(fail(CAPSET, 0)));
    }
    for cap in 0..=p.last_cap {
        match sys::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) {
            Ok(_) => {}
            Err(e) if e.0 == libc::EINVAL => break, // beyond this kernel's last capability
            Err(e) => return Err(fail(BOUNDING, cap)(e)),
        }
    }
    // Needs CAP_SETPCAP, so before capset clears it.
    sys::prctl(libc::PR_SET_SECUREBITS, SECUREBITS_LOCKED, 0, 0, 0).map_err(fail(SECUREBITS, 0))?;
    sys::prctl(
        libc::PR_CAP_AMBIENT,
        libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
        0,
        0,
        0,
    )
    .map_err(fail(AMBIENT, 0))?;
    sys::capset_clear().map_err(fail(CAPSET, 0))
}

/// The step of a failed [`apply`].
pub(crate) fn describe(sub: u32) -> String {
    match sub {
        BOUNDING => "drop the bounding set (PR_CAPBSET_DROP)".into(),
        SECUREBITS => "lock the securebits (PR_SET_SECUREBITS 0xff)".into(),
        AMBIENT => "clear the ambient set".into(),
        _ => "clear the capability sets (capset)".into(),
    }
}
