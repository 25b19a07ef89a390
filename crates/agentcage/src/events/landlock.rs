//! Whether Landlock denials are observable here (docs/EVENTS.md, "Landlock").
//!
//! Landlock ABI 7 logs denials as audit records, which exist only while the kernel's audit is
//! enabled and are read through the audit netlink socket with CAP_AUDIT_READ. This build
//! reads none; this module only says why, for the events header and `doctor`.

/// `AUDIT_GET`.
const AUDIT_GET: u16 = 1000;

/// The kernel's `audit_enabled` (AUDIT_GET over NETLINK_AUDIT; needs CAP_AUDIT_CONTROL):
/// `None` when it cannot be asked.
pub fn audit_enabled() -> Option<u32> {
    let mut req = [0u8; 16];
    req[0..4].copy_from_slice(&16u32.to_ne_bytes());
    req[4..6].copy_from_slice(&AUDIT_GET.to_ne_bytes());
    req[6..8].copy_from_slice(&(libc::NLM_F_REQUEST as u16).to_ne_bytes());
    req[8..12].copy_from_slice(&1u32.to_ne_bytes());
    let mut buf = [0u8; 512];
    let n = crate::sys::audit_request(&req, &mut buf).ok()?;
    if n < 24 {
        return None;
    }
    let ty = u16::from_ne_bytes([buf[4], buf[5]]);
    if ty != AUDIT_GET {
        return None; // NLMSG_ERROR: EPERM without CAP_AUDIT_CONTROL
    }
    // struct audit_status { u32 mask; u32 enabled; ... } after the 16-byte header.
    Some(u32::from_ne_bytes([buf[20], buf[21], buf[22], buf[23]]))
}

/// The events header's (and doctor's) sentence about Landlock denials on this host.
pub fn not_observable_reason() -> String {
    let audit = match audit_enabled() {
        Some(0) => "the kernel's audit is disabled (AUDIT_GET: enabled 0), so Landlock writes no records; agentcage does not enable it (a host-wide change)".to_owned(),
        Some(n) => format!("the kernel's audit is enabled ({n}), but this build does not read Landlock's audit records yet"),
        None => "the audit status cannot be read here (AUDIT_GET needs CAP_AUDIT_CONTROL, reading records CAP_AUDIT_READ: root)".to_owned(),
    };
    format!(
        "landlock denials are not observable here: {audit}; a refused file access shows only as the errno the command got (never guessed from it)"
    )
}
