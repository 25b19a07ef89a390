//! `agentcage doctor`: what this kernel supports, rendered as text (ANSI colours on a terminal)
//! or JSON. The data is `agentcage::doctor::DoctorReport`.

use std::fmt::Write as _;
use std::io::IsTerminal;

use agentcage::doctor::DoctorReport;
use agentcage::host::{LimitsBackend, Support, UsernsTrial};
use agentcage::ladder::LayerStatus;
use clap::Args;

use crate::exit;

/// Flags of `agentcage doctor`.
#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Runs `agentcage doctor`; exit 0 when `full` can be enforced here, 1 otherwise.
pub fn main(a: &DoctorArgs) -> i32 {
    let r = DoctorReport::detect();
    if a.json {
        println!("{}", render_json(&r));
    } else {
        let color = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
        print!("{}", render_text(&r, color));
    }
    exit::doctor_exit_code(&r)
}

/// The report as pretty-printed JSON (stable field names; see [`agentcage::doctor::DOCTOR_SCHEMA`]).
fn render_json(report: &DoctorReport) -> String {
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

/// The concrete commands that give this caller a memory (and pids) cgroup, for the
/// rlimits-only case: systemd's delegation on a v2 host, else root's chown of our v1 cgroups.
fn delegation_commands(cg: &agentcage::host::Cgroups) -> Vec<String> {
    let uid = agentcage::geteuid();
    // SAFETY: getegid cannot fail.
    let gid = unsafe { libc::getegid() };
    let mut out = Vec::new();
    // On a hybrid host whose memory controller is on v1, v2 delegation would not help.
    let v1_memory = cg
        .v1
        .iter()
        .any(|h| h.controllers.iter().any(|c| c == "memory"));
    if let (Some(v2), false) = (&cg.v2, v1_memory) {
        out.push(
            "systemd-run --user --scope -p Delegate=yes -- agentcage run ... (a systemd user \
             session; or as root: systemd-run --scope -p Delegate=yes --uid=USER ...)"
                .to_string(),
        );
        if let Some(dir) = &v2.dir {
            out.push(format!(
                "as root, without systemd: mkdir {dir}/agentcage-{uid} && chown -R {uid}:{gid} \
                 {dir}/agentcage-{uid}, then move the caller's shell into it (echo $$ > \
                 {dir}/agentcage-{uid}/cgroup.procs, as root)"
            ));
        }
    }
    for h in &cg.v1 {
        let wanted = h.controllers.iter().any(|c| c == "memory" || c == "pids");
        if let (true, false, Some(dir)) = (wanted, h.writable.available, &h.dir) {
            out.push(format!("as root (cgroup v1): chown -R {uid}:{gid} {dir}"));
        }
    }
    out
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
fn render_text(report: &DoctorReport, color: bool) -> String {
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

    let _ = writeln!(out, "\n{}", st.head("Network egress (--net allow)"));
    let ipv6 = std::path::Path::new("/proc/net/if_inet6").exists();
    if f.userns.as_caller.works {
        row(
            &mut out,
            "allow-list (--allow-host)",
            &st.ok("supported"),
            Some(if ipv6 {
                "own network namespace, local default routes for IPv4 and IPv6, listeners \
                 passed to the launcher's engine (no capability on the host needed)"
            } else {
                "own network namespace, local default route for IPv4 (this kernel has no \
                 IPv6: nothing to capture there), listeners passed to the launcher's engine"
            }),
        );
    } else {
        row(
            &mut out,
            "allow-list (--allow-host)",
            &st.bad("unsupported"),
            Some("needs the sandbox's own network namespace, which needs a user namespace (above)"),
        );
    }

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
    if matches!(cg.limits_backend, LimitsBackend::Rlimits) {
        for cmd in delegation_commands(cg) {
            row(&mut out, "  to delegate", "", Some(&cmd));
        }
    }

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
        "\n{} `run` takes {} here ({})",
        st.head("Rung:"),
        report.rung,
        report.rung_why
    );
    if report.rung == agentcage::Profile::Nested {
        for l in &report.nested_lost {
            let _ = writeln!(out, "  {} nested loses vs full: {l}", st.warn("!"));
        }
    }

    let _ = writeln!(
        out,
        "\n{}",
        st.head("denial events (--events, docs/EVENTS.md)")
    );
    let notif = f.seccomp.actions.contains(&"user_notif");
    row(
        &mut out,
        "seccomp denials",
        &if notif {
            st.ok("observable")
        } else {
            st.bad("not observable")
        },
        Some(if notif {
            "SECCOMP_RET_USER_NOTIF, answered by the launcher with the filter's errno"
        } else {
            "no SECCOMP_RET_USER_NOTIF (Linux 5.0): --events fails the run (exit 125)"
        }),
    );
    row(
        &mut out,
        "network denials",
        &st.ok("observable"),
        Some("with --allow-host (the egress engine decides)"),
    );
    row(
        &mut out,
        "filesystem (Landlock) denials",
        &st.warn("not observable"),
        Some(&agentcage::events::landlock_not_observable()),
    );

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
    use agentcage::host::testing::fake_features;

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
