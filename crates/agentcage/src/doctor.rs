//! `agentcage doctor`: what this host can enforce, as text or JSON.
//!
//! A [`DoctorReport`] is built from [`Features`] (see `host/`): the kernel release, user
//! namespaces (tried for real, as the caller and, as root, for an unprivileged user, with the
//! reason and fix when they fail), the Landlock ABI and its rights, seccomp filter support and
//! whether the 32-bit entry points (IA32 emulation, x32) are live, the cgroup layout with
//! controllers and delegation, the attack-surface sysctls (`dev.tty.legacy_tiocsti`,
//! `kernel.io_uring_disabled`, ...) and the degradation ladder: for each profile, whether
//! this caller can enforce it and, if not, what `--best-effort` keeps and loses.
//!
//! This is the data; the CLI renders it (`agentcage-cli/src/doctor.rs`: text, or JSON with
//! `--json`) and exits 0 when [`DoctorReport::full_enforceable`], 1 otherwise. Nothing here
//! touches the kernel: all probing happens in [`Features::detect`].

use serde::Serialize;

use crate::host::Features;
use crate::ladder::Rung;
use crate::policy::Profile;

/// Version of the JSON layout; bumped on incompatible changes.
pub const DOCTOR_SCHEMA: u32 = 1;

/// Everything `agentcage doctor` reports.
#[derive(Debug, Clone, Serialize)]
pub struct DoctorReport {
    /// [`DOCTOR_SCHEMA`].
    pub schema: u32,
    /// The detected features (kernel, userns, landlock, seccomp, compat, syscalls, cgroups,
    /// sysctls).
    pub features: Features,
    /// One rung per profile, weakest first.
    pub ladder: Vec<Rung>,
    /// Whether `full` can be enforced here by this caller (the exit status rule).
    pub full_enforceable: bool,
    /// The strongest profile this caller can enforce.
    pub strongest_enforceable: Profile,
    /// Host settings that widen the attack surface, each with its consequence and fix.
    pub warnings: Vec<String>,
    /// The rung `run` takes here (`full`, `nested` with consent, or `none`: neither) and why.
    pub rung: Profile,
    /// Why that rung.
    pub rung_why: String,
    /// What the nested rung loses compared to `full` (said whenever `rung` is nested).
    pub nested_lost: Vec<String>,
}

impl DoctorReport {
    /// Builds the report from detected features.
    pub fn from_features(features: Features) -> DoctorReport {
        let ladder = features.ladder();
        let full_enforceable = ladder
            .iter()
            .any(|r| r.profile == Profile::Full && r.enforceable);
        let strongest_enforceable = ladder
            .iter()
            .filter(|r| r.enforceable)
            .map(|r| r.profile)
            .next_back()
            .unwrap_or(Profile::None);
        let warnings = warnings(&features);
        let (rung, rung_why) = features.rung_to_run();
        DoctorReport {
            rung,
            rung_why,
            nested_lost: crate::ladder::nested_lost(),
            schema: DOCTOR_SCHEMA,
            features,
            ladder,
            full_enforceable,
            strongest_enforceable,
            warnings,
        }
    }

    /// Detects the host and builds the report.
    pub fn detect() -> DoctorReport {
        DoctorReport::from_features(Features::detect())
    }

    /// Whether `full` can be enforced here.
    pub fn full_enforceable(&self) -> bool {
        self.full_enforceable
    }
}

fn warnings(f: &Features) -> Vec<String> {
    let mut w = Vec::new();
    let s = &f.sysctls;
    if s.legacy_tiocsti == Some(1) {
        w.push(
            "dev.tty.legacy_tiocsti=1: TIOCSTI can push keystrokes into a terminal the agent \
             shares; the hygiene layer (new session, no controlling terminal) protects every \
             namespaced profile, `none` is exposed; disable with `sysctl -w dev.tty.legacy_tiocsti=0`"
                .to_string(),
        );
    }
    if s.io_uring_disabled == Some(0) {
        w.push(
            "kernel.io_uring_disabled=0: io_uring is open to every process and its operations \
             bypass per-syscall filtering; `full`'s seccomp filter denies io_uring, ns-only and \
             landlock do not; restrict with `sysctl -w kernel.io_uring_disabled=2`"
                .to_string(),
        );
    }
    if f.compat.ia32.available {
        w.push(
            "IA32 emulation is live: `int 0x80` reaches the i386 syscall table with different \
             numbers; `full`'s seccomp filter rejects non-native architectures, the weaker \
             profiles filter nothing; boot with ia32_emulation=0 (Linux 6.7+) if nothing needs \
             32-bit binaries"
                .to_string(),
        );
    }
    if f.compat.x32.available {
        w.push(
            "the x32 ABI is live: syscall numbers with bit 30 set reach the x32 table; `full`'s \
             seccomp filter rejects them"
                .to_string(),
        );
    }
    if s.unprivileged_bpf_disabled == Some(0) {
        w.push(
            "kernel.unprivileged_bpf_disabled=0: unprivileged BPF is allowed (kernel attack \
             surface); `full` denies bpf; set `sysctl -w kernel.unprivileged_bpf_disabled=2`"
                .to_string(),
        );
    }
    match s.ptrace_scope {
        Some(0) | None => w.push(format!(
            "{}: processes may ptrace every other process of their uid; without a pid namespace \
             (`none`, a landlock-only fallback) the agent can attach to yours; `full` denies \
             ptrace",
            if s.ptrace_scope.is_none() {
                "Yama is not active".to_string()
            } else {
                "kernel.yama.ptrace_scope=0".to_string()
            }
        )),
        _ => {}
    }
    if let Some(p) = s.perf_event_paranoid.filter(|p| *p < 2) {
        w.push(format!(
            "kernel.perf_event_paranoid={p}: unprivileged users may profile the kernel; \
             `full` denies perf_event_open"
        ));
    }
    let u = &f.userns;
    if u.as_caller.works && !u.for_unprivileged.works {
        w.push(format!(
            "user namespaces work for root but not for unprivileged users ({}); `agentcage run` \
             by a normal user will fall back",
            u.for_unprivileged
                .reason
                .as_deref()
                .unwrap_or("unknown reason")
        ));
    }
    if let Some(c) = &f.caller.container {
        w.push(format!(
            "running inside a container ({c}): results describe this container, not the host"
        ));
    }
    w
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::testing::fake_features;
    use crate::host::Support;

    #[test]
    fn full_enforceable_follows_landlock() {
        let ok = DoctorReport::from_features(fake_features(false, true, 7, true));
        assert!(ok.full_enforceable());
        assert_eq!(ok.strongest_enforceable, Profile::Full);
        let no_ll = DoctorReport::from_features(fake_features(false, true, 0, true));
        assert!(!no_ll.full_enforceable());
        assert_eq!(no_ll.strongest_enforceable, Profile::NsOnly);
    }

    #[test]
    fn warnings_follow_sysctls() {
        let mut f = fake_features(true, true, 7, true);
        f.sysctls.legacy_tiocsti = Some(1);
        f.sysctls.io_uring_disabled = Some(2);
        f.sysctls.ptrace_scope = Some(1);
        let w = warnings(&f);
        assert!(
            w.iter().any(|w| w.contains("dev.tty.legacy_tiocsti=1")),
            "{w:?}"
        );
        assert!(!w.iter().any(|w| w.contains("io_uring")), "{w:?}");
        assert!(!w.iter().any(|w| w.contains("ptrace")), "{w:?}");
        assert!(w.iter().any(|w| w.contains("IA32")), "{w:?}");
        f.compat.ia32 = Support::no("off");
        f.sysctls.ptrace_scope = None;
        let w = warnings(&f);
        assert!(!w.iter().any(|w| w.contains("IA32")), "{w:?}");
        assert!(w.iter().any(|w| w.contains("Yama is not active")), "{w:?}");
    }
}
