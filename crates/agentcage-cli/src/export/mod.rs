//! `agentcage export`: one policy, enforced elsewhere. The `full` seccomp filter as a JSON
//! profile (`seccomp`), an OCI runtime bundle's `config.json` (`oci`), and Kubernetes
//! manifests that run agentcage as the entrypoint (`k8s`). See docs/FLEET.md for which
//! guarantee each deployment keeps.
//!
//! Everything here is rendered from the same data the launcher uses: the seccomp profile
//! from `agentcage-seccomp`'s table (`agentcage_seccomp::export`), the policy from the same
//! flags and policy files as `run` (`run::resolve`).

use std::io::Write as _;
use std::path::{Path, PathBuf};

use agentcage::{Layer, NetMode, Policy};
use agentcage_seccomp::export::{self as sx, ExportOptions, ProfileFormat};
use agentcage_seccomp::Arch;
use clap::{Args, Subcommand, ValueEnum};

use crate::exit;
use crate::policy::{Resolved, UsageError};
use crate::run::{self, PolicyArgs};

mod k8s;
mod oci;

/// `agentcage export ...`.
#[derive(Debug, Args)]
pub struct ExportCmd {
    #[command(subcommand)]
    pub cmd: ExportSub,
}

/// Subcommands of `agentcage export`.
#[derive(Debug, Subcommand)]
pub enum ExportSub {
    /// The policy's seccomp filter as a JSON profile for runc, crun, Docker, Podman and the
    /// kubelet (Localhost profiles).
    #[command(after_help = SECCOMP_HELP)]
    Seccomp(Box<SeccompArgs>),
    /// An OCI runtime bundle (config.json) for runc and crun: the layers a runtime enforces
    /// from config, with the policy's mounts, limits and seccomp profile.
    #[command(after_help = OCI_HELP)]
    Oci(Box<oci::OciArgs>),
    /// Kubernetes manifests: the policy in a ConfigMap, a NetworkPolicy, and a Pod (or an
    /// agent-sandbox SandboxTemplate) running agentcage as the entrypoint.
    #[command(after_help = K8S_HELP)]
    K8s(Box<k8s::K8sArgs>),
}

const K8S_HELP: &str = "Examples:\n  agentcage export k8s --policy agent.toml --image registry.example/agent:1 -- python3 agent.py > agent.yaml\n  agentcage export k8s --template --image registry.example/agent:1 --name coder > template.yaml\n  agentcage export seccomp --format oci -o /var/lib/kubelet/seccomp/agentcage/full.json   # on every node\n\nThe output is a YAML stream whose documents are JSON. See docs/FLEET.md for what the pod\nenforces and what agentcage inside adds.";

const OCI_HELP: &str = "Examples:\n  agentcage export oci --rootfs ./rootfs -o ./bundle -- python3 agent.py\n  runc run -b ./bundle agent1\n  crun run -b ./bundle agent1\n\nLandlock, protected paths, the pty relay and the egress rules are not in the OCI spec: put\nagentcage inside (`-- agentcage run ...`) to keep them (docs/FLEET.md).";

const SECCOMP_HELP: &str = "Examples:\n  agentcage export seccomp > agentcage.json\n  docker run --security-opt seccomp=agentcage.json IMAGE\n  agentcage export seccomp --format oci --policy ci.toml -o /var/lib/kubelet/seccomp/agentcage.json\n\nThe profile is derived from the table agentcage's own BPF filter is compiled from; where a JSON\nprofile cannot say the same thing, it says the stricter thing (listed in its comment and in\ndocs/FLEET.md).";

/// Profile flavour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FormatArg {
    /// runtime-spec `linux.seccomp` fields only.
    Oci,
    /// The same plus Docker's `comment` fields.
    Docker,
}

/// Flags of `agentcage export seccomp`.
#[derive(Debug, Args)]
pub struct SeccompArgs {
    /// The policy, as for `run`.
    #[command(flatten)]
    pub policy: PolicyArgs,
    /// Profile flavour.
    #[arg(long, value_enum, default_value = "docker")]
    pub format: FormatArg,
    /// Architectures to list: this host's (native), one of x86_64 and aarch64, or all (a
    /// mixed fleet; each name is resolved per architecture). Their compat ABIs (i386, x32,
    /// AArch32) are never listed: the runtime kills them.
    #[arg(long, value_enum, default_value = "native")]
    pub arch: ArchArg,
    /// Write to FILE instead of stdout.
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// `--arch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ArchArg {
    /// This host's architecture.
    Native,
    /// x86_64.
    #[value(name = "x86_64")]
    X86_64,
    /// aarch64.
    Aarch64,
    /// Both.
    All,
}

/// Runs `agentcage export ...`; returns the exit code.
pub fn main(c: &ExportCmd) -> i32 {
    let r = match &c.cmd {
        ExportSub::Seccomp(a) => seccomp(a),
        ExportSub::Oci(a) => oci::main(a),
        ExportSub::K8s(a) => k8s::main(a),
    };
    match r {
        Ok(()) => 0,
        Err(Failure::Usage(e)) => run::usage_error(&e),
        Err(Failure::Io(what, e)) => {
            crate::ui::error(&format!("{what}: {e}"), None);
            exit::SETUP
        }
    }
}

/// Why an export failed.
pub(crate) enum Failure {
    /// Bad flags or policy (exit 2).
    Usage(UsageError),
    /// Writing the result (exit 125): what, and the OS error.
    Io(String, std::io::Error),
}

impl From<UsageError> for Failure {
    fn from(e: UsageError) -> Failure {
        Failure::Usage(e)
    }
}

/// The effective policy of the flags (as `run` builds it).
pub(crate) fn policy_of(a: &PolicyArgs) -> Result<Policy, UsageError> {
    let Resolved { policy, .. } = run::resolve(a)?;
    Ok(policy)
}

/// The exported profile of `policy`'s filter, for this host's architecture.
pub(crate) fn seccomp_profile(policy: &Policy) -> Result<sx::SeccompProfile, UsageError> {
    seccomp_profile_for(policy, ArchArg::Native)
}

/// The exported profile of `policy`'s filter, for `arch`.
fn seccomp_profile_for(policy: &Policy, arch: ArchArg) -> Result<sx::SeccompProfile, UsageError> {
    if !policy.layers.has(Layer::Seccomp) {
        return Err(UsageError::new(format!(
            "the policy has no seccomp layer (profile {}): nothing to export",
            policy.profile
        ))
        .hint("export the full profile (the default), without --without seccomp"));
    }
    let arches = match arch {
        ArchArg::Native => vec![Arch::native().ok_or_else(|| {
            UsageError::new("no seccomp table for this architecture (supported: x86_64, aarch64)")
                .hint("pass --arch x86_64, aarch64 or all")
        })?],
        ArchArg::X86_64 => vec![Arch::X86_64],
        ArchArg::Aarch64 => vec![Arch::Aarch64],
        ArchArg::All => Arch::ALL.to_vec(),
    };
    Ok(sx::export(&ExportOptions {
        arches,
        // As the launcher decides (agentcage::seccomp::prepare).
        tcp_guards: policy.landlock.restrict_net && policy.net == NetMode::Host,
    }))
}

fn seccomp(a: &SeccompArgs) -> Result<(), Failure> {
    let policy = policy_of(&a.policy)?;
    let profile = seccomp_profile_for(&policy, a.arch)?;
    let format = match a.format {
        FormatArg::Oci => ProfileFormat::Oci,
        FormatArg::Docker => ProfileFormat::Docker,
    };
    write_json(a.output.as_deref(), &profile.to_json(format))
}

/// Writes pretty JSON and a newline to `out` (created or truncated) or stdout.
pub(crate) fn write_json(out: Option<&Path>, v: &serde_json::Value) -> Result<(), Failure> {
    let mut text = serde_json::to_string_pretty(v).unwrap_or_default();
    text.push('\n');
    write_text(out, &text)
}

/// Writes `text` to `out` (created or truncated) or stdout.
pub(crate) fn write_text(out: Option<&Path>, text: &str) -> Result<(), Failure> {
    match out {
        Some(p) => {
            std::fs::write(p, text).map_err(|e| Failure::Io(format!("write {}", p.display()), e))
        }
        None => std::io::stdout()
            .lock()
            .write_all(text.as_bytes())
            .map_err(|e| Failure::Io("write to stdout".into(), e)),
    }
}
