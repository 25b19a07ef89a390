//! `agentcage export k8s`: a ConfigMap with the policy, a NetworkPolicy, and a Pod (or, with
//! `--template`, an agent-sandbox `SandboxTemplate` wrapping the same pod spec) that runs
//! agentcage as the entrypoint.
//!
//! Two layers (docs/FLEET.md): the kubelet and the runtime enforce what a pod spec can say
//! (a user namespace with `hostUsers: false`, the exported seccomp profile as a `Localhost`
//! profile, no capabilities, no privilege escalation, a read-only root, resources); agentcage
//! inside adds Landlock, its own seccomp filter, limits, hygiene and the egress rules. The
//! `Localhost` profile refuses namespace creation (it is `full`'s filter), so agentcage runs
//! its `nested` rung inside (issue #14): the pod's namespaces stand in for its own.
//!
//! Output: a YAML stream whose documents are JSON (JSON is YAML), in a stable order, so a
//! snapshot test keeps it byte for byte.

use std::ffi::OsString;

use agentcage::{NetMode, Policy};
use clap::Args;
use serde_json::{json, Value};

use super::{write_text, Failure};
use crate::policy::{Resolved, UsageError};
use crate::run::{self, PolicyArgs};

/// Where the policy file is mounted inside the pod.
const POLICY_PATH: &str = "/etc/agentcage/policy.toml";
/// The workspace volume's mount path.
const WORKSPACE: &str = "/workspace";

/// Flags of `agentcage export k8s`.
#[derive(Debug, Args)]
pub struct K8sArgs {
    /// The policy, as for `run`.
    #[command(flatten)]
    pub policy: PolicyArgs,
    /// The container image; it must contain the agentcage binary on its PATH and the tools
    /// the agent uses.
    #[arg(long, value_name = "IMAGE")]
    pub image: String,
    /// Emit an agent-sandbox SandboxTemplate (extensions.agents.x-k8s.io) wrapping the pod
    /// spec instead of a Pod.
    #[arg(long)]
    pub template: bool,
    /// Name of the Pod or SandboxTemplate (the ConfigMap is NAME-policy).
    #[arg(long, default_value = "agentcage", value_parser = parse_name)]
    pub name: String,
    /// The seccomp profile's path relative to the kubelet's seccomp directory
    /// (/var/lib/kubelet/seccomp/): put `agentcage export seccomp --format oci` there on
    /// every node.
    #[arg(long, value_name = "PATH", default_value = "agentcage/full.json")]
    pub seccomp_profile: String,
    /// Write to FILE instead of stdout.
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: Option<std::path::PathBuf>,
    /// The command the agent runs [default: a login shell].
    #[arg(last = true, value_name = "CMD")]
    pub command: Vec<OsString>,
}

/// A DNS-1123 label: what Kubernetes accepts as a name (and as a label value).
fn parse_name(s: &str) -> Result<String, String> {
    let ok = !s.is_empty()
        && s.len() <= 53
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-');
    if ok {
        Ok(s.to_string())
    } else {
        Err(format!(
            "{s:?}: a Kubernetes name is 1 to 53 lowercase letters, digits and '-', starting \
             and ending with a letter or digit"
        ))
    }
}

/// Runs `agentcage export k8s`.
pub(crate) fn main(a: &K8sArgs) -> Result<(), Failure> {
    let Resolved {
        policy,
        protect,
        unprotect,
        ..
    } = run::resolve(&a.policy)?;
    // Host paths (masks, tmpfs, binds, home) do not translate to a pod yet: refused rather
    // than silently dropped.
    if policy.controls != agentcage::WorkspaceControls::default() {
        return Err(UsageError::new(
            "export k8s does not carry the workspace controls (read_only_workspace, mask, \
             tmpfs, bind, home) yet: the pod would lack them",
        )
        .hint("export without them, and add them to the policy in the ConfigMap by hand")
        .into());
    }
    let command: Vec<String> = if a.command.is_empty() {
        vec!["/bin/sh".into(), "-l".into()]
    } else {
        a.command
            .iter()
            .map(|s| s.to_string_lossy().into_owned())
            .collect()
    };
    let docs = manifests(
        a,
        &policy,
        &crate::policy::to_table(&policy, &protect, &unprotect)?,
        &command,
    )?;
    let mut text = String::new();
    for d in docs {
        text.push_str("---\n");
        text.push_str(&serde_json::to_string_pretty(&d).unwrap_or_default());
        text.push('\n');
    }
    write_text(a.output.as_deref(), &text)
}

/// A memory quantity in bytes (`2147483648`), exact.
fn bytes(n: u64) -> String {
    n.to_string()
}

fn manifests(
    a: &K8sArgs,
    p: &Policy,
    table: &toml::Table,
    command: &[String],
) -> Result<Vec<Value>, Failure> {
    // The policy as the pod sees it: the workspace is the volume; host paths of `ro`/`rw`
    // do not exist on a node (mount them as volumes and name them in your own policy).
    let mut t = table.clone();
    t.insert("workspace".into(), toml::Value::String(WORKSPACE.into()));
    t.insert("ro".into(), toml::Value::Array(Vec::new()));
    t.insert("rw".into(), toml::Value::Array(Vec::new()));
    let mut policy_toml =
        String::from("# agentcage policy, exported by `agentcage export k8s` (docs/FLEET.md).\n");
    policy_toml
        .push_str(&toml::to_string(&t).map_err(|e| UsageError::new(format!("write TOML: {e}")))?);
    let name = &a.name;
    let labels = json!({
        "app.kubernetes.io/name": "agentcage",
        "app.kubernetes.io/instance": name,
    });
    let config_map = json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": format!("{name}-policy"), "labels": labels},
        "data": {"policy.toml": policy_toml},
    });

    let mut args: Vec<String> = [
        "run",
        "--profile",
        "nested",
        "--policy",
        POLICY_PATH,
        "--workspace",
        WORKSPACE,
        "--",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(command.iter().cloned());

    let mut limits = serde_json::Map::new();
    if let Some(m) = p.limits.memory {
        limits.insert("memory".into(), json!(bytes(m)));
    }
    if let Some(c) = p.limits.cpus {
        limits.insert(
            "cpu".into(),
            json!(format!("{}m", (c * 1000.0).round() as u64)),
        );
    }
    let tmp_size = p.limits.memory.map(bytes);
    let mut tmp = json!({"medium": "Memory"});
    if let Some(s) = &tmp_size {
        tmp["sizeLimit"] = json!(s);
    }
    let mut pod_spec = json!({
        "hostUsers": false,
        "automountServiceAccountToken": false,
        "enableServiceLinks": false,
        "restartPolicy": "Never",
        "securityContext": {
            "seccompProfile": {"type": "Localhost", "localhostProfile": a.seccomp_profile},
        },
        "containers": [{
            "name": "agent",
            "image": a.image,
            "command": ["agentcage"],
            "args": args,
            "workingDir": WORKSPACE,
            "securityContext": {
                "allowPrivilegeEscalation": false,
                "privileged": false,
                "readOnlyRootFilesystem": true,
                "capabilities": {"drop": ["ALL"]},
            },
            "resources": {"limits": limits.clone(), "requests": limits},
            "volumeMounts": [
                {"name": "workspace", "mountPath": WORKSPACE},
                {"name": "tmp", "mountPath": "/tmp"},
                {"name": "policy", "mountPath": POLICY_PATH, "subPath": "policy.toml", "readOnly": true},
            ],
        }],
        "volumes": [
            {"name": "workspace", "emptyDir": {}},
            {"name": "tmp", "emptyDir": tmp},
            {"name": "policy", "configMap": {"name": format!("{name}-policy"), "defaultMode": 0o444}},
        ],
    });

    if let Some(t) = p.limits.timeout {
        // A backstop behind agentcage's own --timeout (SIGTERM, then SIGKILL 2 s later).
        pod_spec["activeDeadlineSeconds"] = json!(t.ceil() as u64 + 30);
    }
    let egress = egress_rules(p);
    let network_policy = json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": format!("{name}-egress"), "labels": labels},
        "spec": {
            "podSelector": {"matchLabels": labels},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [],
            "egress": egress,
        },
    });
    let workload = if a.template {
        json!({
            "apiVersion": "extensions.agents.x-k8s.io/v1alpha1",
            "kind": "SandboxTemplate",
            "metadata": {"name": name, "labels": labels},
            "spec": {
                "podTemplate": {"metadata": {"labels": labels}, "spec": pod_spec},
                "networkPolicy": {"ingress": [], "egress": egress},
            },
        })
    } else {
        json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "labels": labels},
            "spec": pod_spec,
        })
    };
    let mut docs = vec![config_map];
    if !a.template {
        // agent-sandbox makes the template's NetworkPolicy itself (spec.networkPolicy).
        docs.push(network_policy);
    }
    docs.push(workload);
    Ok(docs)
}

/// What a NetworkPolicy can say of the policy's network: ports and IP blocks, never names.
/// No network (`net = "none"`): nothing leaves the pod. TCP ports to connect to (Landlock's
/// `tcp_connect`): DNS to the cluster's resolver and those ports anywhere; the names the
/// agent may reach are enforced inside (agentcage's egress proxy), not here.
fn egress_rules(p: &Policy) -> Value {
    if p.net == NetMode::None || p.landlock.tcp_connect.is_empty() {
        return json!([]);
    }
    let ports: Vec<Value> = p
        .landlock
        .tcp_connect
        .iter()
        .map(|port| json!({"protocol": "TCP", "port": port}))
        .collect();
    json!([
        {
            "to": [{
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
                "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
            }],
            "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
        },
        {"ports": ports},
    ])
}
