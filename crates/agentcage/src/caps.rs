//! Capabilities: empty every set (bounding, ambient, inheritable, permitted, effective) and
//! lock the securebits so that no execve can give them back, even to uid 0.
//!
//! `prepare` (parent) reads the highest capability number; `apply` (child) runs after the
//! mounts and Landlock, which need CAP_SYS_ADMIN in the user namespace. Kernel:
//! capabilities(7), prctl(2) PR_CAPBSET_DROP, PR_SET_SECUREBITS, PR_CAP_AMBIENT.

use crate::sys::{self, Errno};

/// SECBIT_NOROOT, NO_SETUID_FIXUP, KEEP_CAPS, NO_CAP_AMBIENT_RAISE and their locks.
pub const SECUREBITS_LOCKED: libc::c_ulong = 0xff;

/// What the child needs to drop capabilities.
#[derive(Debug, Clone, Copy)]
pub struct PreparedCaps {
    last_cap: u32,
}

/// Reads /proc/sys/kernel/cap_last_cap (parent side); 63 when unreadable (the drop loop
/// stops at the first EINVAL anyway).
pub fn prepare() -> PreparedCaps {
    let last_cap = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(63);
    PreparedCaps { last_cap }
}

/// Drops every capability. Returns (sub-step, errno) on failure: 0 bounding, 1 securebits,
/// 2 ambient, 3 capset.
///
/// Runs in the child after clone: async-signal-safe only.
pub(crate) fn apply(p: &PreparedCaps) -> Result<(), (u32, Errno)> {
    for cap in 0..=p.last_cap {
        match sys::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) {
            Ok(_) => {}
            Err(e) if e.0 == libc::EINVAL => break, // beyond this kernel's last capability
            Err(e) => return Err((0, e)),
        }
    }
    // Needs CAP_SETPCAP, so before capset clears it.
    sys::prctl(libc::PR_SET_SECUREBITS, SECUREBITS_LOCKED, 0, 0, 0).map_err(|e| (1, e))?;
    sys::prctl(
        libc::PR_CAP_AMBIENT,
        libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
        0,
        0,
        0,
    )
    .map_err(|e| (2, e))?;
    sys::capset_clear().map_err(|e| (3, e))
}
