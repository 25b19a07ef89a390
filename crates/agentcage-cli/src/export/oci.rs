//! `agentcage export oci`: an OCI runtime bundle `config.json` (runtime-spec 1.0.2) that
//! runc and crun run with the layers an OCI runtime can enforce from config: the same
//! namespaces, a read-only root with the composed root's mounts, masked and read-only /proc
//! paths, no capabilities, no_new_privs, rlimits, cgroup resources and the exported seccomp
//! profile. Landlock, the pty relay, protected paths and the egress rules are not in the OCI
//! spec: run `agentcage run` inside for them (docs/FLEET.md).

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use agentcage::layout;
use agentcage::{Layer, NetMode, Policy};
use agentcage_seccomp::export::ProfileFormat;
use clap::Args;
use serde_json::{json, Value};

use super::{policy_of, seccomp_profile, write_json, write_text, Failure};
use crate::policy::UsageError;
use crate::run::PolicyArgs;

/// Flags of `agentcage export oci`.
#[derive(Debug, Args)]
pub struct OciArgs {
    /// The policy, as for `run`.
    #[command(flatten)]
    pub policy: PolicyArgs,
    /// The bundle's root filesystem (an empty directory will do: the host's system
    /// directories are bound read-only into it, as in agentcage's composed root).
    #[arg(long, value_name = "DIR")]
    pub rootfs: PathBuf,
    /// The bundle directory: config.json and the synthesized /etc files are written there.
    #[arg(long, short = 'o', value_name = "BUNDLE")]
    pub output: PathBuf,
    /// Map the container's user to this host uid/gid (a user namespace). Default: the
    /// caller's uid and gid (rootless runtimes), or the policy's host uid/gid (65534) when
    /// run as root.
    #[arg(long, value_name = "UID:GID", value_parser = parse_ids)]
    pub map_to: Option<(u32, u32)>,
    /// The command [default: a login shell].
    #[arg(last = true, value_name = "CMD")]
    pub command: Vec<OsString>,
}

fn parse_ids(s: &str) -> Result<(u32, u32), String> {
    let (u, g) = s.split_once(':').unwrap_or((s, s));
    match (u.parse(), g.parse()) {
        (Ok(u), Ok(g)) => Ok((u, g)),
        _ => Err(format!("expected UID:GID, got {s:?}")),
    }
}

/// Runs `agentcage export oci`.
pub(crate) fn main(a: &OciArgs) -> Result<(), Failure> {
    let policy = policy_of(&a.policy)?;
    // Not translated into OCI mounts yet: refused rather than silently dropped.
    if policy.controls != agentcage::WorkspaceControls::default() {
        return Err(UsageError::new(
            "export oci does not carry the workspace controls (read_only_workspace, mask, \
             tmpfs, bind, home) yet: the bundle would lack them",
        )
        .hint("export without them, or run the bundle's command under agentcage itself")
        .into());
    }
    let cwd =
        std::env::current_dir().map_err(|e| UsageError::new(format!("current directory: {e}")))?;
    let rootfs = crate::policy::absolute(&a.rootfs, &cwd);
    if !rootfs.is_dir() {
        return Err(
            UsageError::new(format!("--rootfs {}: not a directory", rootfs.display())).into(),
        );
    }
    let bundle = crate::policy::absolute(&a.output, &cwd);
    std::fs::create_dir_all(bundle.join("etc"))
        .map_err(|e| Failure::Io(format!("create {}", bundle.join("etc").display()), e))?;
    let ids = a.map_to.unwrap_or_else(|| {
        if agentcage::geteuid() == 0 {
            (policy.host_uid, policy.host_gid)
        } else {
            // SAFETY: getegid cannot fail.
            (agentcage::geteuid(), unsafe { libc::getegid() })
        }
    });
    for (name, text) in etc_files(&policy) {
        write_text(Some(&bundle.join("etc").join(name)), &text)?;
    }
    let command: Vec<String> = if a.command.is_empty() {
        vec!["/bin/sh".into(), "-l".into()]
    } else {
        a.command
            .iter()
            .map(|s| s.to_string_lossy().into_owned())
            .collect()
    };
    let config = config(&policy, &rootfs, &bundle, ids, &command)?;
    mount_points(&rootfs, &config)?;
    write_json(Some(&bundle.join("config.json")), &config)
}

/// Creates the mount points in the root filesystem, as whoever exports (the runtime creates
/// missing ones inside the user namespace, as the mapped user, who may not own the rootfs).
/// No symlink in the rootfs is followed (an image's `/etc -> /host/etc` would lead out): a
/// path through one is left to the runtime, which resolves it inside the root.
fn mount_points(rootfs: &Path, config: &Value) -> Result<(), Failure> {
    let mounts = config["mounts"].as_array().cloned().unwrap_or_default();
    for m in mounts {
        let Some(dst) = m["destination"].as_str() else {
            continue;
        };
        let is_file = m["type"] == "bind"
            && m["source"]
                .as_str()
                .is_some_and(|s| std::fs::metadata(s).is_ok_and(|md| !md.is_dir()));
        let mut at = rootfs.to_path_buf();
        let parts: Vec<_> = Path::new(dst).components().skip(1).collect();
        for (i, c) in parts.iter().enumerate() {
            at.push(c);
            let last = i + 1 == parts.len();
            match std::fs::symlink_metadata(&at) {
                Ok(md) if md.file_type().is_symlink() => break,
                Ok(_) => continue,
                Err(_) if last && is_file => std::fs::write(&at, b"")
                    .map_err(|e| Failure::Io(format!("create mount point {}", at.display()), e))?,
                Err(_) => std::fs::create_dir(&at)
                    .map_err(|e| Failure::Io(format!("create mount point {}", at.display()), e))?,
            }
        }
    }
    Ok(())
}

/// The synthesized /etc files of the composed root (bound read-only from the bundle).
fn etc_files(p: &Policy) -> Vec<(&'static str, String)> {
    let user = if p.uid == 0 { "root" } else { "agent" };
    let group = if p.gid == 0 { "root" } else { "agent" };
    let mut passwd = String::from("root:x:0:0:root:/root:/bin/sh\n");
    if p.uid != 0 {
        passwd += &format!(
            "{user}:x:{}:{}:agentcage:{}:/bin/sh\n",
            p.uid,
            p.gid,
            layout::home(p.uid)
        );
    }
    passwd += "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n";
    let mut groups = String::from("root:x:0:\n");
    if p.gid != 0 {
        groups += &format!("{group}:x:{}:\n", p.gid);
    }
    groups += "nogroup:x:65534:\n";
    vec![
        ("passwd", passwd),
        ("group", groups),
        ("hostname", format!("{}\n", layout::HOSTNAME)),
        (
            "hosts",
            format!(
                "127.0.0.1\tlocalhost\n127.0.1.1\t{}\n::1\tlocalhost ip6-localhost ip6-loopback\n",
                layout::HOSTNAME
            ),
        ),
        (
            "nsswitch.conf",
            "passwd: files\ngroup: files\nshadow: files\nhosts: files dns\nnetworks: files\nprotocols: files\nservices: files\n".into(),
        ),
    ]
}

fn bind(src: &Path, dst: &Path, writable: bool) -> Value {
    let mut options = vec!["rbind", "nosuid", "nodev"];
    options.push(if writable { "rw" } else { "ro" });
    json!({
        "destination": dst,
        "type": "bind",
        "source": src,
        "options": options,
    })
}

/// The host entry at `p` as the composed root has it: a directory or file is bound; a
/// symlink is bound as what it points to (a bundle cannot create symlinks by mount).
fn host_entry(p: &str, mounts: &mut Vec<Value>) {
    let path = Path::new(p);
    if std::fs::metadata(path).is_ok() {
        mounts.push(bind(path, path, false));
    }
}

fn config(
    p: &Policy,
    rootfs: &Path,
    bundle: &Path,
    (host_uid, host_gid): (u32, u32),
    command: &[String],
) -> Result<Value, Failure> {
    let home = layout::home(p.uid);
    let mut mounts = vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc",
               "options": ["nosuid", "nodev", "noexec"]}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
               "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts",
               "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]}),
        json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
               "options": ["nosuid", "nodev", "mode=1777", "size=65536k"]}),
    ];
    for d in layout::SYSTEM_DIRS {
        host_entry(d, &mut mounts);
    }
    // /etc: the synthesized files, then the host files programs need (as the composed root).
    for (name, _) in etc_files(p) {
        mounts.push(bind(
            &bundle.join("etc").join(name),
            &Path::new("/etc").join(name),
            false,
        ));
    }
    for f in layout::ETC_FROM_HOST {
        host_entry(f, &mut mounts);
    }
    if p.net == NetMode::Host {
        host_entry("/etc/resolv.conf", &mut mounts);
    }
    let tmp_size = p
        .limits
        .memory
        .map_or_else(String::new, |m| format!(",size={m}"));
    for (dst, mode) in [("/tmp", "1777"), (home, "755")] {
        mounts.push(
            json!({"destination": dst, "type": "tmpfs", "source": "tmpfs",
            "options": ["nosuid", "nodev", format!("mode={mode}{tmp_size}")]}),
        );
    }
    let mut binds: Vec<(PathBuf, bool)> = p
        .binds
        .iter()
        .map(|b| (b.path.clone(), b.writable))
        .collect();
    binds.push((p.workspace.clone(), true));
    binds.sort_by_key(|(b, _)| b.components().count());
    for (b, w) in &binds {
        mounts.push(bind(b, b, *w));
    }

    let mut namespaces = vec![json!({"type": "user"})];
    for (layer, ns) in [
        (Layer::PidNs, "pid"),
        (Layer::IpcNs, "ipc"),
        (Layer::UtsNs, "uts"),
        (Layer::MountNs, "mount"),
        (Layer::CgroupNs, "cgroup"),
    ] {
        if p.layers.has(layer) {
            namespaces.push(json!({ "type": ns }));
        }
    }
    // `net = "allow"` needs agentcage's launcher and its egress engine, which a bundle run by
    // an OCI runtime does not have: it gets its own network namespace like `none` (no
    // network at all; fail closed), never the host's.
    if p.layers.has(Layer::NetNs) && p.net != NetMode::Host {
        namespaces.push(json!({"type": "network"}));
    }

    let mut rlimits = Vec::new();
    if let Some(n) = p.limits.nofile {
        rlimits.push(json!({"type": "RLIMIT_NOFILE", "hard": n, "soft": n}));
    }
    if let Some(n) = p.limits.fsize {
        rlimits.push(json!({"type": "RLIMIT_FSIZE", "hard": n, "soft": n}));
    }
    if p.limits.no_core {
        rlimits.push(json!({"type": "RLIMIT_CORE", "hard": 0, "soft": 0}));
    }
    let mut resources = serde_json::Map::new();
    if let Some(n) = p.limits.pids {
        resources.insert("pids".into(), json!({ "limit": n }));
    }
    if let Some(m) = p.limits.memory {
        resources.insert("memory".into(), json!({"limit": m, "swap": m}));
    }
    if let Some(c) = p.limits.cpus {
        let period: u64 = 100_000;
        resources.insert(
            "cpu".into(),
            json!({"quota": (c * period as f64).round() as i64, "period": period}),
        );
    }

    let mut env = vec![
        format!("PATH={}", layout::DEFAULT_PATH),
        format!("HOME={home}"),
        format!("USER={}", if p.uid == 0 { "root" } else { "agent" }),
        format!("LOGNAME={}", if p.uid == 0 { "root" } else { "agent" }),
    ];
    // The hygiene allow-list, from the environment of whoever exports (as `run` copies it
    // from its caller); never `pass_env`: a bundle on disk must not freeze a secret.
    for (k, v) in std::env::vars() {
        let listed = layout::ENV_ALLOW.contains(&k.as_str()) || k.starts_with("LC_");
        if listed && k != "PATH" {
            env.push(format!("{k}={v}"));
        }
    }
    for (k, v) in &p.env {
        env.retain(|e| !e.starts_with(&format!("{k}=")));
        env.push(format!("{k}={v}"));
    }
    let cwd = p.cwd.clone().unwrap_or_else(|| p.workspace.clone());
    let none: [&str; 0] = [];
    let mut linux = json!({
        "namespaces": namespaces,
        "uidMappings": [{"containerID": p.uid, "hostID": host_uid, "size": 1}],
        "gidMappings": [{"containerID": p.gid, "hostID": host_gid, "size": 1}],
        "maskedPaths": layout::PROC_MASKED_FILES.iter().chain(layout::PROC_MASKED_DIRS).collect::<Vec<_>>(),
        "readonlyPaths": layout::PROC_READONLY,
        "resources": resources,
    });
    if p.layers.has(Layer::Seccomp) {
        let profile = seccomp_profile(p)?;
        linux["seccomp"] = profile.to_json(ProfileFormat::Oci);
    }
    let caps_dropped = p.layers.has(Layer::Caps);
    let caps = if caps_dropped {
        json!({"bounding": none, "effective": none, "inheritable": none, "permitted": none, "ambient": none})
    } else {
        return Err(UsageError::new(format!(
            "the policy keeps capabilities (profile {}): export oci writes the full profile's \
             empty capability sets only",
            p.profile
        ))
        .into());
    };
    Ok(json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": {"uid": p.uid, "gid": p.gid},
            "args": command,
            "env": env,
            "cwd": cwd,
            "capabilities": caps,
            "rlimits": rlimits,
            "noNewPrivileges": p.layers.has(Layer::NoNewPrivs),
        },
        "root": {"path": rootfs, "readonly": true},
        "hostname": layout::HOSTNAME,
        "mounts": mounts,
        "linux": linux,
    }))
}
