//! `agentcage doctor`: what this host can enforce, as text or JSON.
//!
//! A [`DoctorReport`] is built from [`Features`] (see `kernel.rs`): the kernel release, user
//! namespaces (tried for real, as the caller and, as root, for an unprivileged user, with the
//! reason and fix when they fail), the Landlock ABI and its rights, seccomp filter support and
//! whether the 32-bit entry points (IA32 emulation, x32) are live, the cgroup layout with
//! controllers and delegation, the attack-surface sysctls (`dev.tty.legacy_tiocsti`,
//! `kernel.io_uring_disabled`, ...) and the degradation ladder: for each profile, whether
//! this caller can enforce it and, if not, what `--best-effort` keeps and loses.
//!
//! The CLI prints [`render_text`] (or [`render_json`] with `--json`) and exits 0 when
//! [`DoctorReport::full_enforceable`], 1 otherwise. Nothing here touches the kernel: all
//! probing happens in [`Features::detect`].

use std::fmt::Write as _;

use serde::Serialize;

use crate::host::{Features, LimitsBackend, Support, UsernsTrial};
use crate::ladder::{LayerStatus, Rung};
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
        DoctorReport {
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

    /// Whether `full` can be enforced (doctor exits 0 then, 1 otherwise).
    pub fn full_enforceable(&self) -> bool {
        self.full_enforceable
    }

    /// The CLI exit status: 0 when `full` can be enforced, 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        if self.full_enforceable {
            0
        } else {
            1
        }
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

/// The report as pretty-printed JSON (stable field names; see [`DOCTOR_SCHEMA`]).
pub fn render_json(report: &DoctorReport) -> String {
    // The report is plain data (strings, numbers, enums): serialization cannot fail.
    serde_json::to_string_pretty(report).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
}

/// ANSI styling, or none.
struct Style {
    color: bool,
}

impl Style {
    fn paint(&self, code: &str, text: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }
    fn ok(&self, t: &str) -> String {
        self.paint("32", t)
    }
    fn bad(&self, t: &str) -> String {
        self.paint("31", t)
    }
    fn warn(&self, t: &str) -> String {
        self.paint("33", t)
    }
    fn head(&self, t: &str) -> String {
        self.paint("1", t)
    }
    fn support(&self, s: &Support, yes: &str, no: &str) -> String {
        if s.available {
            self.ok(yes)
        } else {
            self.bad(no)
        }
    }
}

fn opt_i64(v: Option<i64>) -> String {
    v.map(|v| v.to_string()).unwrap_or_else(|| "absent".into())
}

fn list_or_none(v: &[String]) -> String {
    if v.is_empty() {
        "(none)".into()
    } else {
        v.join(" ")
    }
}

/// Appends "  label   verdict  detail" with the label padded.
fn row(out: &mut String, label: &str, verdict: &str, detail: Option<&str>) {
    let _ = write!(out, "  {label:<LABEL_WIDTH$} {verdict}");
    if let Some(d) = detail.filter(|d| !d.is_empty()) {
        if !verdict.is_empty() {
            out.push_str("  ");
        }
        out.push_str(d);
    }
    out.push('\n');
}

const LABEL_WIDTH: usize = 34;

fn trial_rows(out: &mut String, st: &Style, label: &str, t: &UsernsTrial) {
    let verdict = if t.works {
        st.ok("works")
    } else {
        st.bad("fails")
    };
    row(out, label, &verdict, t.reason.as_deref());
    if let Some(fix) = &t.fix {
        let _ = writeln!(out, "  {:<LABEL_WIDTH$} fix: {fix}", "");
    }
}

/// The report for humans. `color` adds ANSI colours (the CLI passes true only on a terminal
/// without NO_COLOR).
pub fn render_text(report: &DoctorReport, color: bool) -> String {
    let st = Style { color };
    let f = &report.features;
    let mut out = String::new();

    let who = if f.caller.is_root {
        format!("root (uid {})", f.caller.euid)
    } else {
        format!("uid {}", f.caller.euid)
    };
    let _ = writeln!(
        out,
        "{} kernel {} ({}), as {who}",
        st.head("agentcage doctor:"),
        f.kernel.release,
        f.kernel.machine
    );
    if let Some(c) = &f.caller.container {
        let _ = writeln!(out, "  inside a container: {c}");
    }
    if f.caller.seccomp_mode == Some(2) {
        let _ = writeln!(out, "  the caller already runs under a seccomp filter");
    }

    let _ = writeln!(out, "\n{}", st.head("User namespaces"));
    trial_rows(
        &mut out,
        &st,
        &format!("as caller (uid {})", f.userns.as_caller.uid),
        &f.userns.as_caller,
    );
    if f.caller.is_root {
        trial_rows(
            &mut out,
            &st,
            &format!("for unprivileged (uid {})", f.userns.for_unprivileged.uid),
            &f.userns.for_unprivileged,
        );
    }
    let k = &f.userns.knobs;
    row(
        &mut out,
        "knobs",
        "",
        Some(&format!(
            "kernel.unprivileged_userns_clone={} user.max_user_namespaces={} \
             kernel.apparmor_restrict_unprivileged_userns={}",
            opt_i64(k.unprivileged_userns_clone),
            opt_i64(k.max_user_namespaces),
            opt_i64(k.apparmor_restrict_unprivileged_userns)
        )),
    );

    let _ = writeln!(out, "\n{}", st.head("Landlock"));
    let ll = &f.landlock;
    if ll.support.available {
        row(
            &mut out,
            &format!("ABI {}", ll.version),
            &st.ok("enabled"),
            ll.support.reason.as_deref(),
        );
        for kind in ["fs", "net", "scope", "restrict_self"] {
            let names: Vec<&str> = ll
                .rights
                .iter()
                .filter(|r| r.kind == kind)
                .map(|r| r.name)
                .collect();
            if !names.is_empty() {
                row(&mut out, &format!("  {kind}"), "", Some(&names.join(" ")));
            }
        }
        if !ll.missing.is_empty() {
            let names: Vec<String> = ll
                .missing
                .iter()
                .map(|r| format!("{}.{} (ABI {})", r.kind, r.name, r.abi))
                .collect();
            row(&mut out, "  not in this kernel", "", Some(&names.join(" ")));
        }
    } else {
        row(
            &mut out,
            "ABI",
            &st.bad("unavailable"),
            ll.support.reason.as_deref(),
        );
    }

    let _ = writeln!(out, "\n{}", st.head("seccomp and 32-bit entry points"));
    row(
        &mut out,
        "seccomp filter",
        &st.support(&f.seccomp.filter, "supported", "unsupported"),
        f.seccomp.filter.reason.as_deref(),
    );
    row(
        &mut out,
        "  actions",
        "",
        Some(&f.seccomp.actions.join(" ")),
    );
    let live = |s: &Support| {
        if s.available {
            st.warn("live")
        } else {
            st.ok("off")
        }
    };
    row(
        &mut out,
        "IA32 emulation (int 0x80)",
        &live(&f.compat.ia32),
        f.compat.ia32.reason.as_deref(),
    );
    if let Some(p) = &f.compat.ia32_emulation_boot_param {
        row(
            &mut out,
            "  boot parameter",
            "",
            Some(&format!("ia32_emulation={p}")),
        );
    }
    row(
        &mut out,
        "  abi.vsyscall32",
        "",
        Some(&opt_i64(f.compat.vsyscall32)),
    );
    row(
        &mut out,
        "x32 ABI",
        &live(&f.compat.x32),
        f.compat.x32.reason.as_deref(),
    );

    let _ = writeln!(out, "\n{}", st.head("Syscalls"));
    for (name, s) in [
        ("mount_setattr", &f.syscalls.mount_setattr),
        ("open_tree", &f.syscalls.open_tree),
        ("close_range", &f.syscalls.close_range),
        ("pidfd_open", &f.syscalls.pidfd_open),
        ("clone3", &f.syscalls.clone3),
    ] {
        row(
            &mut out,
            name,
            &st.support(s, "yes", "no"),
            s.reason.as_deref(),
        );
    }

    let cg = &f.cgroups;
    let _ = writeln!(
        out,
        "\n{} layout {}",
        st.head("cgroups"),
        serde_json::to_value(cg.layout)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default()
    );
    if let Some(v2) = &cg.v2 {
        row(
            &mut out,
            &format!("v2 {}", v2.mount_point),
            &st.support(&v2.delegated, "delegated", "not delegated"),
            v2.delegated.reason.as_deref(),
        );
        row(&mut out, "  our cgroup", "", Some(&v2.path));
        row(
            &mut out,
            "  cgroup.controllers",
            "",
            Some(&list_or_none(&v2.controllers)),
        );
        row(
            &mut out,
            "  cgroup.subtree_control",
            "",
            Some(&list_or_none(&v2.subtree_control)),
        );
    }
    for h in &cg.v1 {
        row(
            &mut out,
            &format!("v1 {}", h.controllers.join(",")),
            &st.support(&h.writable, "writable", "not writable"),
            Some(match (&h.writable.reason, &h.dir) {
                (Some(why), _) => why.as_str(),
                (None, Some(dir)) => dir.as_str(),
                (None, None) => h.path.as_str(),
            }),
        );
    }
    let backend = match cg.limits_backend {
        LimitsBackend::CgroupV2 => st.ok("cgroup v2"),
        LimitsBackend::CgroupV1 => st.ok("cgroup v1"),
        LimitsBackend::Rlimits => st.warn("rlimits only"),
    };
    row(&mut out, "limits via", &backend, Some(&cg.limits_reason));

    let _ = writeln!(out, "\n{}", st.head("sysctls"));
    let s = &f.sysctls;
    for (name, v) in [
        ("dev.tty.legacy_tiocsti", s.legacy_tiocsti),
        ("kernel.io_uring_disabled", s.io_uring_disabled),
        ("kernel.yama.ptrace_scope", s.ptrace_scope),
        (
            "kernel.unprivileged_bpf_disabled",
            s.unprivileged_bpf_disabled,
        ),
        ("kernel.perf_event_paranoid", s.perf_event_paranoid),
    ] {
        row(&mut out, name, &opt_i64(v), None);
    }

    let _ = writeln!(out, "\n{}", st.head("Degradation ladder (as this caller)"));
    for rung in &report.ladder {
        let verdict = if !rung.enforceable {
            st.bad("cannot be enforced")
        } else if rung.degraded.is_empty() {
            st.ok("enforceable")
        } else {
            st.warn("enforceable, degraded")
        };
        row(&mut out, rung.profile.name(), &verdict, None);
        for d in &rung.degraded {
            let _ = writeln!(out, "      ~ {d}");
        }
        // Layers failing for the same reason (the namespaces behind a failed user-ns) share
        // one line.
        let mut groups: Vec<(Vec<&str>, &str)> = Vec::new();
        for l in &rung.layers {
            if let LayerStatus::Unavailable { reason, .. } = &l.status {
                match groups.iter_mut().find(|(_, r)| *r == reason.as_str()) {
                    Some((names, _)) => names.push(l.layer.name()),
                    None => groups.push((vec![l.layer.name()], reason)),
                }
            }
        }
        for (names, reason) in groups {
            let _ = writeln!(out, "      {} {}: {reason}", st.bad("x"), names.join(" "));
        }
        if let Some(fb) = &rung.fallback {
            let kept: Vec<&str> = fb.layers.iter().map(|l| l.name()).collect();
            let _ = writeln!(
                out,
                "      --best-effort keeps: {}",
                if kept.is_empty() {
                    "nothing".to_string()
                } else {
                    kept.join(" ")
                }
            );
            for lost in &fb.lost {
                let _ = writeln!(out, "      loses {lost}");
            }
            if let Some(p) = fb.nearest_profile {
                let _ = writeln!(out, "      strongest enforceable weaker profile: {p}");
            }
        }
    }

    if !report.warnings.is_empty() {
        let _ = writeln!(out, "\n{}", st.head("Warnings"));
        for w in &report.warnings {
            let _ = writeln!(out, "  {} {w}", st.warn("!"));
        }
    }

    let _ = writeln!(
        out,
        "\n{}",
        if report.full_enforceable {
            st.ok("full can be enforced here (exit 0)")
        } else {
            st.bad(&format!(
                "full cannot be enforced here; strongest profile: {} (exit 1)",
                report.strongest_enforceable
            ))
        }
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::tests::fake_features;

    #[test]
    fn exit_code_follows_full() {
        let ok = DoctorReport::from_features(fake_features(false, true, 7, true));
        assert!(ok.full_enforceable());
        assert_eq!(ok.exit_code(), 0);
        assert_eq!(ok.strongest_enforceable, Profile::Full);
        let no_ll = DoctorReport::from_features(fake_features(false, true, 0, true));
        assert!(!no_ll.full_enforceable());
        assert_eq!(no_ll.exit_code(), 1);
        assert_eq!(no_ll.strongest_enforceable, Profile::NsOnly);
    }

    /// Issue 7: doctor's JSON has every field it lists.
    #[test]
    fn json_has_every_issue_7_field() {
        let report = DoctorReport::from_features(fake_features(false, false, 0, false));
        let v: serde_json::Value = serde_json::from_str(&render_json(&report)).unwrap();
        for pointer in [
            "/schema",
            "/features/kernel/release",
            "/features/userns/as_caller/works",
            "/features/userns/as_caller/reason",
            "/features/userns/as_caller/fix",
            "/features/userns/for_unprivileged/works",
            "/features/userns/knobs/apparmor_restrict_unprivileged_userns",
            "/features/landlock/version",
            "/features/landlock/abi/status",
            "/features/landlock/rights",
            "/features/landlock/support/reason",
            "/features/seccomp/filter/available",
            "/features/compat/ia32/available",
            "/features/compat/x32/available",
            "/features/cgroups/layout",
            "/features/cgroups/v1",
            "/features/cgroups/limits_backend",
            "/features/sysctls/legacy_tiocsti",
            "/features/sysctls/io_uring_disabled",
            "/ladder/3/profile",
            "/ladder/3/enforceable",
            "/ladder/3/fallback/lost",
            "/ladder/3/layers/0/layer",
            "/ladder/3/layers/0/status",
            "/full_enforceable",
            "/strongest_enforceable",
        ] {
            assert!(v.pointer(pointer).is_some(), "missing {pointer} in {v:#}");
        }
        assert_eq!(v["ladder"][3]["profile"], "full");
        assert_eq!(v["ladder"][1]["profile"], "ns-only");
        assert_eq!(v["ladder"][3]["layers"][0]["layer"], "user-ns");
        assert_eq!(v["ladder"][3]["layers"][0]["status"], "unavailable");
        assert_eq!(v["features"]["landlock"]["abi"]["status"], "disabled");
        assert_eq!(v["full_enforceable"], false);
    }

    #[test]
    fn text_names_failures_fixes_and_fallbacks() {
        let report = DoctorReport::from_features(fake_features(false, false, 7, true));
        let t = render_text(&report, false);
        assert!(!t.contains('\x1b'), "no colour requested");
        assert!(t.contains("kernel 6.8.0-test"), "{t}");
        assert!(t.contains("fix: unprivileged user namespaces are disabled by kernel.apparmor_restrict_unprivileged_userns=1"), "{t}");
        assert!(
            t.contains("--best-effort keeps: hygiene landlock caps no-new-privs seccomp limits"),
            "{t}"
        );
        assert!(t.contains("whole host filesystem"), "{t}");
        assert!(
            t.contains("full cannot be enforced here; strongest profile: none (exit 1)"),
            "{t}"
        );
        assert!(t.contains("dev.tty.legacy_tiocsti"), "{t}");
        assert!(t.contains("kernel.io_uring_disabled"), "{t}");
        assert!(t.contains("IA32 emulation (int 0x80)"), "{t}");
        let coloured = render_text(&report, true);
        assert!(coloured.contains("\x1b[31m"), "{coloured}");
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

    #[test]
    fn doctor_on_this_host_renders() {
        let report = DoctorReport::detect();
        let text = render_text(&report, false);
        eprintln!("{text}");
        assert!(text.contains(&report.features.kernel.release));
        let v: serde_json::Value = serde_json::from_str(&render_json(&report)).unwrap();
        assert_eq!(v["full_enforceable"], report.full_enforceable());
        assert_eq!(v["ladder"].as_array().map(Vec::len), Some(4));
    }
}
