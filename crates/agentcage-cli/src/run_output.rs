//! What `run` (and `session start`) writes or prints on the host side around a run: the
//! `--net host` warning, live egress denials, the `--net-log` file and the `--json-report`
//! (both opened by fd before the run, see `agentcage::hostfs`).

use std::path::Path;

use agentcage::hostfs::HostFile;
use agentcage::{Error, Layer, Policy};

use crate::exit;
use crate::run::{chain, flag_path};

use crate::policy::UsageError;

/// What `--net host` leaves open, for its warning.
pub(crate) fn net_host_open(policy: &Policy) -> String {
    let tcp = if policy.layers.has(Layer::Landlock) && policy.landlock.restrict_net {
        if policy.landlock.tcp_connect.is_empty() {
            "TCP connects refused by Landlock (where the kernel has Landlock ABI 4+), but".into()
        } else {
            format!(
                "TCP to ANY host on ports {:?} (Landlock restricts ports, not hosts; ABI 4+),",
                policy.landlock.tcp_connect
            )
        }
    } else {
        "TCP to every host and port,".to_string()
    };
    format!(
        "{tcp} UDP and DNS to any address, the host's loopback services and its abstract unix \
         sockets{} stay reachable; use --allow-host RULE (--net allow) for an allow-list",
        if policy.landlock.scope && policy.layers.has(Layer::Landlock) {
            " (unless Landlock scopes them, ABI 6+)"
        } else {
            ""
        }
    )
}

/// One `-v` line for an egress denial.
pub(crate) fn deny_line(e: &agentcage_egress::Event) -> String {
    let target = match (&e.name, e.ip) {
        (Some(n), _) => n.clone(),
        (None, Some(ip)) => ip.to_string(),
        (None, None) => "?".into(),
    };
    let mut s = format!("agentcage: net: denied {} {target}", e.proto);
    if let Some(p) = e.port {
        s.push_str(&format!(":{p}"));
    }
    if let Some(r) = &e.reason {
        s.push_str(&format!(": {r}"));
    }
    if let Some(exe) = &e.exe {
        s.push_str(&format!(" ({exe}"));
        if let Some(pid) = e.pid {
            s.push_str(&format!(", pid {pid}"));
        }
        s.push(')');
    }
    s
}

/// Opens `--net-log` for appending (see [`open_host_log`]).
pub(crate) fn open_net_log(path: &Path, policy: &Policy) -> Result<std::fs::File, UsageError> {
    open_host_log(
        "--net-log",
        path,
        policy,
        "give --net-log a path outside the workspace and the --rw paths, whose directories exist",
    )
}

/// Opens the host file `path` of `flag` (`--net-log`, `--events`) for appending, by fd,
/// before the run: never inside a tree the sandbox can write (a previous run could have
/// planted anything there), never through a symlink.
pub(crate) fn open_host_log(
    flag: &str,
    path: &Path,
    policy: &Policy,
    hint: &str,
) -> Result<std::fs::File, UsageError> {
    let mut writable = vec![policy.workspace.clone()];
    writable.extend(
        policy
            .binds
            .iter()
            .filter(|b| b.writable)
            .map(|b| b.path.clone()),
    );
    let hf = HostFile::prepare(path, &writable)
        .map_err(|e| UsageError::new(format!("{flag}: {}", chain(&e))).hint(hint))?;
    if let Some(root) = writable.iter().find(|r| {
        hf.dir_path()
            .starts_with(r.canonicalize().as_deref().unwrap_or(r))
    }) {
        return Err(UsageError::new(format!(
            "{flag} {}: inside {}, which the sandbox can write: refused",
            path.display(),
            root.display()
        ))
        .hint(hint));
    }
    hf.open_append()
        .map_err(|e| UsageError::new(format!("{flag}: {}", chain(&e))).hint(hint))
}

/// Opens the directory of the `--json-report` file (see [`agentcage::hostfs::HostFile`]).
pub(crate) fn prepare_report(path: &Path, policy: &Policy) -> Result<HostFile, UsageError> {
    let cwd =
        std::env::current_dir().map_err(|e| UsageError::new(format!("current directory: {e}")))?;
    let abs = flag_path(path, "--json-report", &cwd)?;
    let mut writable = vec![policy.workspace.clone()];
    writable.extend(
        policy
            .binds
            .iter()
            .filter(|b| b.writable)
            .map(|b| b.path.clone()),
    );
    let hf = HostFile::prepare(&abs, &writable).map_err(|e| {
        UsageError::new(format!("--json-report: {}", chain(&e)))
            .hint("give --json-report a path whose directories exist and are not symlinks the sandbox could have made")
    })?;
    // Never happens (the launcher checks that kept fds were inherited, and this one was not),
    // but an fd on a host directory must never reach the sandbox.
    if policy.keep_fds.contains(&hf.dir_fd()) {
        return Err(UsageError::new(format!(
            "--keep-fd {}: not an inherited fd",
            hf.dir_fd()
        )));
    }
    Ok(hf)
}

/// The `--json-report` document, written by [`HostFile::write`].
pub(crate) fn write_report(
    report: &HostFile,
    policy: &Policy,
    result: &Result<agentcage::RunOutcome, Error>,
    wall: std::time::Duration,
    created: &[&Path],
    denials: Option<serde_json::Value>,
) -> Result<(), agentcage::hostfs::HostFsError> {
    let mut v = match result {
        Ok(o) => serde_json::json!({
            "profile": policy.profile.name(),
            "exit_code": match o.exit { agentcage::Exit::Code(c) => Some(c), _ => None },
            "signal": match o.exit { agentcage::Exit::Signal(s) => Some(s), _ => None },
            "status": if o.timed_out { exit::TIMEOUT } else { o.exit.code() },
            "timeout": o.timed_out,
            "oom": o.oom,
            "peak_memory_bytes": o.peak_memory,
            "max_rss_kib": o.max_rss_kib,
            "wall_seconds": wall.as_secs_f64(),
            "cpu_seconds": o.cpu.as_secs_f64(),
            "limits": o.limits.iter().map(|(k, v)| serde_json::json!({"limit": k, "enforced_by": v})).collect::<Vec<_>>(),
            "egress": o.egress,
            "setup_error": null,
        }),
        Err(e) => serde_json::json!({
            "profile": policy.profile.name(),
            "exit_code": null,
            "signal": null,
            "status": exit::process_exit_code(e),
            "timeout": false,
            "oom": false,
            "peak_memory_bytes": null,
            "wall_seconds": wall.as_secs_f64(),
            "cpu_seconds": null,
            "setup_error": e.to_string(),
        }),
    };
    v["created_protected_paths"] = created
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .into();
    // --events: denials per layer (null: not observable here, or --events was not given).
    v["denials"] = denials.unwrap_or(serde_json::Value::Null);
    report.write(&serde_json::to_vec_pretty(&v).unwrap_or_default())
}
