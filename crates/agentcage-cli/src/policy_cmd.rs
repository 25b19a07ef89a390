//! `agentcage policy show`: the effective policy (policy file under the flags, profile
//! defaults filled in) and what this host will actually enforce of it.
//!
//! The policy part is a complete policy file (every key explicit): fed back with `--policy`
//! it gives the same policy on this host. What the host enforces comes from the launcher
//! itself: [`agentcage::prepare`] on a dummy command runs the same Landlock ABI negotiation,
//! seccomp and rlimit preparation as `run` and returns its `enforcement` lines; the per-layer
//! status and the cgroup backend come from [`Features::detect`] (the data `doctor` shows).
//! In TOML the enforcement part is written as comments, so the output stays a valid policy
//! file; `--json` gives both as one object.

use agentcage::host::Features;
use agentcage::ladder::{LayerReport, LayerStatus};
use agentcage::{Command, Policy};
use clap::{Args, Subcommand};

use crate::exit;
use crate::policy::{self, Resolved};
use crate::run::{self, PolicyArgs};

/// `agentcage policy ...`.
#[derive(Debug, Args)]
pub struct PolicyCmd {
    #[command(subcommand)]
    pub cmd: PolicySub,
}

/// Subcommands of `agentcage policy`.
#[derive(Debug, Subcommand)]
pub enum PolicySub {
    /// Print the effective policy (file, flags and profile defaults merged) and what this host
    /// enforces of it.
    #[command(after_help = SHOW_HELP)]
    Show(Box<ShowArgs>),
    /// Print the table of policy-file keys (key, flag, default, effect) as Markdown.
    #[command(after_help = "Example:\n  agentcage policy keys")]
    Keys,
}

const SHOW_HELP: &str = "Examples:\n  agentcage policy show\n  agentcage policy show --policy ~/.config/agentcage/coding-agent.toml\n  agentcage policy show --policy ci.toml --memory 2G --json\n  agentcage policy show -p ns-only > my-policy.toml && agentcage run --policy my-policy.toml -- make\n\nExit status: 0 when this host can run the policy, 125 when it cannot (the reason is printed), 2 on a usage error.";

/// Flags of `agentcage policy show`.
#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The policy, as for `run`.
    #[command(flatten)]
    pub policy: PolicyArgs,
    /// Print JSON instead of TOML.
    #[arg(long)]
    pub json: bool,
}

/// Runs `agentcage policy ...`; returns the exit code.
pub fn main(c: &PolicyCmd) -> i32 {
    match &c.cmd {
        PolicySub::Show(a) => show(a),
        PolicySub::Keys => {
            print!("{}", policy::key_table_markdown());
            0
        }
    }
}

/// What this host does with a policy.
struct HostView {
    /// `Ok(enforcement lines)` or the error `run` would stop with (message, exit code).
    prepared: Result<Vec<(String, String)>, (String, i32)>,
    /// (layer name, status) for each composed layer.
    layers: Vec<(String, LayerStatus)>,
    features: Features,
}

fn host_view(p: &Policy) -> HostView {
    let cmd = Command {
        argv: vec!["true".into()],
        self_exe: None,
    };
    let prepared = agentcage::prepare(p, &cmd)
        .map(|pr| pr.enforcement.clone())
        .map_err(|e| {
            let mut msg = crate::run::error_chain(&e);
            if let Some(h) = e.hint() {
                msg.push_str(" (hint: ");
                msg.push_str(h);
                msg.push(')');
            }
            (msg, exit::process_exit_code(&e))
        });
    let features = Features::detect();
    let layers = p
        .layers
        .iter()
        .map(|l| (l.name().to_string(), features.layer_status(l)))
        .collect();
    HostView {
        prepared,
        layers,
        features,
    }
}

/// The serialized (kebab-case) name of a unit enum variant.
fn name_of<T: serde::Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(_) => "?".into(),
    }
}

fn status_line(s: &LayerStatus) -> String {
    match s {
        LayerStatus::Available => "available".into(),
        LayerStatus::Degraded { reason, lost } => format!("degraded: {reason} (weaker: {lost})"),
        LayerStatus::Unavailable { reason, lost } => {
            format!("UNAVAILABLE: {reason} (lost: {lost})")
        }
    }
}

fn show(a: &ShowArgs) -> i32 {
    let Resolved {
        policy,
        skipped,
        sources,
        protected,
        protect,
        protect_missing,
        unprotect,
        ..
    } = match run::resolve(&a.policy) {
        Ok(r) => r,
        Err(e) => return run::usage_error(&e),
    };
    // Shown, not enforced: `show` only prints (`run` refuses these files).
    let cwd = std::env::current_dir().ok();
    let untrusted = policy::untrusted(
        &sources,
        &policy,
        cwd.as_deref().filter(|_| a.policy.workspace.is_none()),
    );
    let table = match policy::to_table(&policy, &protect, &unprotect) {
        Ok(t) => t,
        Err(e) => return run::usage_error(&e),
    };
    let host = host_view(&policy);
    let f = &host.features;
    let code = match &host.prepared {
        Ok(_) => 0,
        Err((_, code)) => *code,
    };
    if a.json {
        let v = serde_json::json!({
            "policy": table,
            "layers": policy.layers.iter().map(|l| l.name()).collect::<Vec<_>>(),
            "protected": protected.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
            "protect_missing": protect_missing.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
            "skipped_optional": skipped.iter().map(|s| serde_json::json!({
                "path": s.path.display().to_string(),
                "why": s.why,
            })).collect::<Vec<_>>(),
            "host": {
                "kernel": f.kernel.release,
                "landlock_abi": f.landlock.version,
                "cgroup_layout": f.cgroups.layout,
                "limits_backend": f.cgroups.limits_backend,
                "limits_reason": f.cgroups.limits_reason,
                "layers": policy.layers.iter().map(|l| LayerReport { layer: l, status: f.layer_status(l) }).collect::<Vec<_>>(),
            },
            "enforceable": host.prepared.is_ok(),
            "enforcement": match &host.prepared {
                Ok(lines) => lines.iter().map(|(w, h)| serde_json::json!({"what": w, "how": h})).collect(),
                Err(_) => Vec::new(),
            },
            "error": host.prepared.as_ref().err().map(|(m, _)| m),
            "untrusted_policy_files": untrusted,
        });
        println!(
            "{}",
            serde_json::to_string_pretty(&v).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
        );
        return code;
    }
    let body = match policy::to_toml(&policy, &protect, &unprotect) {
        Ok(b) => b,
        Err(e) => return run::usage_error(&e),
    };
    let mut out = String::new();
    out.push_str(
        "# Effective policy (agentcage policy show). A complete policy file: run it with\n",
    );
    out.push_str("#   agentcage run --policy FILE -- CMD\n");
    out.push_str(&body);
    out.push_str("\n# What this host enforces of it:\n");
    out.push_str(&format!(
        "#   kernel {}, Landlock ABI {}, cgroups {}, limits via {} ({})\n",
        f.kernel.release,
        f.landlock.version,
        name_of(&f.cgroups.layout),
        name_of(&f.cgroups.limits_backend),
        f.cgroups.limits_reason
    ));
    for (l, s) in &host.layers {
        out.push_str(&format!("#   layer {l}: {}\n", status_line(s)));
    }
    match &host.prepared {
        Ok(lines) => {
            for (w, h) in lines {
                out.push_str(&format!("#   {w}: {h}\n"));
            }
        }
        Err((m, _)) => out.push_str(&format!("#   NOT RUNNABLE HERE: {m}\n")),
    }
    for p in &protected {
        out.push_str(&format!("#   protected (read-only): {}\n", p.display()));
    }
    for p in &protect_missing {
        out.push_str(&format!(
            "#   protected by a read-only placeholder at run time (does not exist): {}\n",
            p.display()
        ));
    }
    for s in &skipped {
        out.push_str(&format!(
            "#   optional path skipped: {} ({})\n",
            s.path.display(),
            s.why
        ));
    }
    for u in &untrusted {
        out.push_str(&format!(
            "#   UNTRUSTED POLICY FILE (run refuses it without --trust-writable-policy): {u}\n"
        ));
    }
    print!("{out}");
    code
}
