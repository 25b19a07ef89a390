//! Settings -> the effective policy ([`build`] -> [`Resolved`]).

use std::path::{Path, PathBuf};

use std::collections::BTreeMap;

use agentcage::{ExtraBind, Layer, NetMode, NetSpec, Policy, Profile};

use super::protect::{
    expand_patterns, protected_settings, reachable, resolve_protected, Kind, Protected,
};
use super::settings::{PolicySource, Settings};
use super::{absolute, UsageError};

/// An optional path the policy named that this machine does not have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// The path as resolved.
    pub path: PathBuf,
    /// Why (e.g. "No such file or directory").
    pub why: String,
}

/// The effective policy, and the optional paths left out of it.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// What the launcher gets.
    pub policy: Policy,
    /// Optional `ro`/`rw` entries that do not exist here.
    pub skipped: Vec<Skipped>,
    /// The policy files read (see [`untrusted`](super::untrusted)).
    pub sources: Vec<PolicySource>,
    /// The protected paths (read-only binds inside the workspace or an `rw` bind), defaults
    /// included, as bound.
    pub protected: Vec<PathBuf>,
    /// The binds made for a `protect` entry (for `policy show`; defaults apply anyway).
    pub protect: Vec<PathBuf>,
    /// Default or `protect` paths left unprotected because they do not exist (the sandbox
    /// can create them).
    pub protect_missing: Vec<PathBuf>,
    /// The `unprotect` paths, absolute (for `policy show`).
    pub unprotect: Vec<PathBuf>,
    /// Said before the run (e.g. `--ro` naming the workspace).
    pub warnings: Vec<String>,
}

pub(super) fn canonical(p: &Path, what: &str, origin: &str) -> Result<PathBuf, UsageError> {
    p.canonicalize().map_err(|e| {
        UsageError::new(format!("{origin}: {what} {}: {e}", p.display()))
            .hint("create it, fix the path, or mark a policy file entry { path = \"...\", optional = true }")
    })
}

pub(super) fn dedup<T: PartialEq + Clone>(v: &[T]) -> Vec<T> {
    let mut out: Vec<T> = Vec::new();
    for x in v {
        if !out.contains(x) {
            out.push(x.clone());
        }
    }
    out
}

/// The network mode: `net` as said; unsaid, `allow` when there are allow rules. The egress
/// settings (`network.*`, `--allow-host`, `--net-*`) need `allow`, and `allow` needs the
/// sandbox's own network namespace.
fn net_mode(s: &Settings, p: &Policy) -> Result<NetMode, UsageError> {
    let net = match s.net {
        Some(n) => n,
        None if !s.allow_host.is_empty() => NetMode::Allow,
        None => NetMode::None,
    };
    let said = s
        .allow_host
        .first()
        .map(|(_, o)| o.clone())
        .or_else(|| s.net_log.as_ref().map(|(_, o)| o.clone()))
        .or_else(|| (!s.net_resolve.is_empty()).then(|| "--net-resolve".to_string()))
        .or_else(|| s.net_dns.map(|_| "--net-dns".to_string()));
    if net != NetMode::Allow {
        if let Some(origin) = said {
            return Err(UsageError::new(format!(
                "{origin}: egress settings need --net allow, but the network mode is {}",
                net.name()
            ))
            .hint("drop --net (an allow rule implies --net allow) or the egress settings"));
        }
        return Ok(net);
    }
    if !p.layers.has(Layer::NetNs) {
        let why = if p.layers.is_empty() {
            format!("profile {}", p.profile)
        } else {
            "--without net-ns".into()
        };
        return Err(UsageError::new(format!(
            "--net allow needs the sandbox's own network namespace, and this policy has none \
             ({why})"
        ))
        .hint("use a profile with a network namespace (ns-only, landlock, full)"));
    }
    Ok(net)
}

/// Builds the effective policy. `cwd` is the default workspace.
pub fn build(s: &Settings, cwd: &Path) -> Result<Resolved, UsageError> {
    let profile = s.profile.unwrap_or(Profile::Full);
    let ws = match &s.workspace {
        Some((w, origin)) => canonical(w, "workspace", origin)?,
        None => canonical(cwd, "workspace", "the current directory")?,
    };
    if !ws.is_dir() {
        return Err(UsageError::new(format!(
            "workspace {} is not a directory",
            ws.display()
        )));
    }
    let mut p = Policy::for_profile(profile, ws);
    for l in &s.without {
        p.layers = p.layers.without(*l);
    }
    let mut skipped = Vec::new();
    // As root with a user namespace, the binds are made by the sandbox's host uid (host_uid,
    // 65534 by default), which may not reach a path root can (e.g. under /root, mode 700).
    let as_root = agentcage::geteuid() == 0;
    let sandbox_host_ids = (as_root && p.layers.has(Layer::UserNs) && p.layers.has(Layer::MountNs))
        .then(|| {
            (
                s.host_uid.unwrap_or(p.host_uid),
                s.host_gid.unwrap_or(p.host_gid),
            )
        });
    // Later entries win for the same path (a flag over the file, a file over its base);
    // sorted by path so parents are mounted before what they contain.
    let mut binds: BTreeMap<PathBuf, bool> = BTreeMap::new();
    let mut expanded = expand_patterns(&s.binds)?;
    let mut warnings = Vec::new();
    let mut ro_ws = s.read_only_workspace.unwrap_or(false);
    // `--ro` naming the workspace itself: what was asked is a read-only workspace.
    if let Some(b) = expanded
        .iter()
        .find(|b| !b.writable && b.path.canonicalize().is_ok_and(|c| c == p.workspace))
    {
        warnings.push(format!(
            "{}: ro {} names the workspace itself: the workspace is read-only for this run \
             (say --read-only-workspace, or read_only_workspace = true)",
            b.origin,
            b.path.display()
        ));
        ro_ws = true;
    }
    expanded.retain(|b| b.writable || b.path.canonicalize().map_or(true, |c| c != p.workspace));
    // What the sandbox can write: a bind below one of these is a protected path (see
    // `resolve_protected`).
    let mut writable_roots = if ro_ws {
        Vec::new()
    } else {
        vec![p.workspace.clone()]
    };
    writable_roots.extend(
        expanded
            .iter()
            .filter(|b| b.writable)
            .filter_map(|b| b.path.canonicalize().ok()),
    );
    let unprotect: Vec<PathBuf> = s
        .unprotect
        .iter()
        .map(|(u, _)| absolute(u, &p.workspace))
        .collect();
    let (defaults, protect) = protected_settings(
        s,
        &p.workspace,
        &writable_roots,
        &unprotect,
        p.layers.has(Layer::MountNs),
    )?;
    let mut protect_missing = Vec::new();
    // The binds made for a `protect` entry (and not said again by `ro`/`rw`).
    let mut from_protect: std::collections::BTreeSet<PathBuf> = Default::default();
    // Defaults first: a flag or a policy entry for the same path wins (`--rw .vscode`), and
    // `protect` last: it wins over both.
    let all = defaults
        .iter()
        .map(|b| (b, Kind::Default))
        .chain(expanded.iter().map(|b| (b, Kind::Bind)))
        .chain(protect.iter().map(|b| (b, Kind::Protect)));
    for (b, kind) in all {
        let what = match kind {
            Kind::Bind if b.writable => "rw",
            Kind::Bind => "ro",
            Kind::Default | Kind::Protect => "protect",
        };
        let resolved = match resolve_protected(&b.path, &writable_roots, sandbox_host_ids) {
            // Below a read-only workspace: read-only anyway.
            Protected::No if kind == Kind::Protect && ro_ws && b.path.starts_with(&p.workspace) => {
                continue;
            }
            Protected::No if kind != Kind::Bind => {
                return Err(UsageError::new(format!(
                    "{}: protect {}: not inside the workspace or an `rw` path",
                    b.origin,
                    b.path.display()
                ))
                .hint(
                    "protect names paths inside what the sandbox can write; use --ro for others",
                ));
            }
            Protected::No => b.path.canonicalize(),
            Protected::Yes(c) => {
                match kind {
                    Kind::Bind => from_protect.remove(&c),
                    Kind::Protect => from_protect.insert(c.clone()),
                    // Applied again when the policy is read back.
                    Kind::Default => false,
                };
                binds.insert(c, b.writable);
                continue;
            }
            Protected::Missing(_)
                if kind == Kind::Default || (kind == Kind::Protect && b.optional) =>
            {
                protect_missing.push(b.path.clone());
                continue;
            }
            Protected::Missing(e) if kind == Kind::Protect => {
                return Err(UsageError::new(format!(
                    "{}: protect {}: {e}: a path that does not exist at start cannot be protected",
                    b.origin,
                    b.path.display()
                ))
                .hint("create it first (mkdir -p or touch), or drop the entry; see docs/SECURITY.md, \"Protected paths\""));
            }
            Protected::Missing(e) => Err(e),
            Protected::Refused(why, hint) => {
                let hint = if kind == Kind::Default {
                    format!(
                        "{hint}; or leave it writable: --unprotect {}",
                        b.path.display()
                    )
                } else {
                    hint
                };
                return Err(UsageError::new(format!(
                    "{}: {what} {}: {why}",
                    b.origin,
                    b.path.display()
                ))
                .hint(hint));
            }
        };
        match resolved {
            Ok(c) if b.optional && sandbox_host_ids.is_some_and(|(u, g)| !reachable(&c, u, g)) => {
                let (u, _) = sandbox_host_ids.unwrap_or_default();
                skipped.push(Skipped {
                    path: b.path.clone(),
                    why: format!(
                        "not reachable by host uid {u}, the sandbox's uid on the host (a parent directory denies it)"
                    ),
                });
            }
            Ok(c) => {
                from_protect.remove(&c);
                binds.insert(c, b.writable);
            }
            Err(e) if b.optional => skipped.push(Skipped {
                path: b.path.clone(),
                why: e.to_string(),
            }),
            Err(_) => {
                canonical(&b.path, what, &b.origin)?;
            }
        }
    }
    // The effective protected set: read-only binds below the workspace or a writable bind.
    let protected: Vec<PathBuf> = binds
        .iter()
        .filter(|(path, w)| {
            !**w && ((path.starts_with(&p.workspace) && **path != p.workspace)
                || binds
                    .iter()
                    .any(|(r, rw)| *rw && path.starts_with(r) && *path != r))
        })
        .map(|(path, _)| path.clone())
        .collect();
    p.binds = binds
        .into_iter()
        .map(|(path, writable)| ExtraBind {
            path,
            writable,
            fresh_placeholder: None,
        })
        .collect();
    controls(s, &mut p, ro_ws, &writable_roots, sandbox_host_ids)?;
    let mut env: Vec<(String, String)> = Vec::new();
    for (k, v) in &s.env {
        env.retain(|(ek, _)| ek != k);
        env.push((k.clone(), v.clone()));
    }
    p.env = env;
    p.pass_env = dedup(&s.pass_env);
    p.uid = s.uid.unwrap_or(p.uid);
    p.gid = s.gid.unwrap_or(p.gid);
    p.host_uid = s.host_uid.unwrap_or(p.host_uid);
    p.host_gid = s.host_gid.unwrap_or(p.host_gid);
    p.keep_fds = dedup(&s.keep_fd);
    p.best_effort = s.best_effort.unwrap_or(false);
    p.net = net_mode(s, &p)?;
    if p.net == NetMode::Allow {
        p.egress = NetSpec {
            allow: dedup(
                &s.allow_host
                    .iter()
                    .map(|(r, _)| r.clone())
                    .collect::<Vec<_>>(),
            ),
            resolve: dedup(&s.net_resolve),
            dns: s.net_dns,
            log: s.net_log.as_ref().map(|(l, _)| l.clone()),
        };
    }
    p.seccomp.spec_mitigation = s.seccomp_spec_mitigation.unwrap_or(false);
    p.landlock.tcp_bind = dedup(&s.tcp_bind);
    p.landlock.tcp_connect = dedup(&s.tcp_connect);
    // Limits apply under full by default and under any profile on request.
    let l = &s.limits;
    if l.any() && !s.without.contains(&Layer::Limits) {
        p.layers = p.layers.with(Layer::Limits);
        if profile != Profile::Full {
            p.limits.no_core = true;
        }
    }
    if let Some(v) = l.pids {
        p.limits.pids = v;
    }
    if let Some(v) = l.memory {
        p.limits.memory = v;
    }
    if let Some(v) = l.cpus {
        p.limits.cpus = v;
    }
    if let Some(v) = l.timeout {
        p.limits.timeout = v;
    }
    if let Some(v) = l.nofile {
        p.limits.nofile = v;
    }
    if let Some(v) = l.fsize {
        p.limits.fsize = v;
    }
    p.limits
        .validate()
        .map_err(|e| UsageError::new(e.to_string()))?;
    Ok(Resolved {
        policy: p,
        skipped,
        sources: s.sources.clone(),
        protected,
        protect: from_protect.into_iter().collect(),
        protect_missing,
        unprotect,
        warnings,
    })
}

/// The workspace controls (issue #15): `read_only_workspace`, `mask`, `tmpfs`, `chdir`,
/// `home`. A path below a writable root is resolved like a protected path (no symlink
/// followed, see `resolve_protected`); every target must exist where a bind shows the host's
/// tree, since the mount is made on it by fd.
fn controls(
    s: &Settings,
    p: &mut Policy,
    ro_ws: bool,
    writable_roots: &[PathBuf],
    ids: Option<(u32, u32)>,
) -> Result<(), UsageError> {
    let home_dir = s
        .home
        .as_ref()
        .and_then(|(h, o)| h.as_ref().map(|h| (h, o)));
    if let (false, Some((_, origin))) = (p.layers.has(Layer::MountNs), s.bind.first()) {
        return Err(UsageError::new(format!(
            "{origin}: bind needs a mount namespace, and this policy has none"
        ))
        .hint("use a profile with a mount namespace (ns-only, landlock, full)"));
    }
    if !p.layers.has(Layer::MountNs) {
        let first = s
            .mask
            .first()
            .map(|(_, o)| (o.clone(), "mask"))
            .or_else(|| s.tmpfs.first().map(|(_, o)| (o.clone(), "tmpfs")))
            .or_else(|| home_dir.map(|(_, o)| (o.clone(), "home")))
            .or_else(|| ro_ws.then(|| ("read_only_workspace".to_string(), "read_only_workspace")));
        if let Some((origin, what)) = first {
            return Err(UsageError::new(format!(
                "{origin}: {what} needs a mount namespace, and this policy has none"
            ))
            .hint("use a profile with a mount namespace (ns-only, landlock, full)"));
        }
    }
    p.controls.read_only = ro_ws;
    let ws = p.workspace.clone();
    let held =
        |path: &Path| path.starts_with(&ws) || p.binds.iter().any(|b| path.starts_with(&b.path));
    // An existing entry, resolved with no symlink followed below a writable root.
    let existing = |path: &Path, what: &str, origin: &str| -> Result<PathBuf, UsageError> {
        match resolve_protected(path, writable_roots, ids) {
            Protected::Yes(c) => Ok(c),
            Protected::Refused(why, hint) => Err(UsageError::new(format!(
                "{origin}: {what} {}: {why}",
                path.display()
            ))
            .hint(hint)),
            Protected::Missing(e) => Err(UsageError::new(format!(
                "{origin}: {what} {}: {e}",
                path.display()
            ))
            .hint("it must exist (the mount is made on it)")),
            Protected::No => match std::fs::symlink_metadata(path) {
                Ok(md) if md.file_type().is_symlink() => Err(UsageError::new(format!(
                    "{origin}: {what} {}: is a symlink (the mount would not follow it)",
                    path.display()
                ))
                .hint("name the real path")),
                Ok(_) => canonical(path, what, origin),
                Err(e) => Err(
                    UsageError::new(format!("{origin}: {what} {}: {e}", path.display()))
                        .hint("it must exist (the mount is made on it)"),
                ),
            },
        }
    };
    for (m, origin) in &s.mask {
        let path = absolute(m, &ws);
        let c = existing(&path, "mask", origin)?;
        if c == ws || p.binds.iter().any(|b| b.path == c) {
            return Err(UsageError::new(format!(
                "{origin}: mask {}: is the workspace or a bind itself",
                path.display()
            ))
            .hint("leave it out of the policy instead"));
        }
        if !p.controls.masks.contains(&c) {
            p.controls.masks.push(c);
        }
    }
    for (t, origin) in &s.tmpfs {
        let path = absolute(t, &ws);
        let c = if held(&path) {
            let c = existing(&path, "tmpfs", origin)?;
            if !c.is_dir() {
                return Err(UsageError::new(format!(
                    "{origin}: tmpfs {}: not a directory",
                    path.display()
                )));
            }
            c
        } else {
            path
        };
        if c == Path::new("/") || c == ws || p.binds.iter().any(|b| b.path == c) {
            return Err(UsageError::new(format!(
                "{origin}: tmpfs {}: is /, the workspace or a bind itself",
                c.display()
            ))
            .hint("name a directory inside it"));
        }
        if !p.controls.tmpfs.contains(&c) {
            p.controls.tmpfs.push(c);
        }
    }
    if let Some((h, origin)) = home_dir {
        let c = canonical(h, "home", origin)?;
        if !c.is_dir() {
            return Err(UsageError::new(format!(
                "{origin}: home {}: not a directory",
                h.display()
            )));
        }
        p.controls.home = Some(c);
    }
    // `bind`: outside everything else, so it can neither cover a protected path nor be
    // covered, nor land on the system directories.
    let home_inside = Path::new(if p.uid == 0 { "/root" } else { "/home/agent" });
    let mut taken: Vec<PathBuf> = vec![ws.clone()];
    taken.extend(p.binds.iter().map(|b| b.path.clone()));
    taken.extend(p.controls.tmpfs.iter().cloned());
    taken.extend(
        [
            "/proc",
            "/dev",
            "/etc",
            "/usr",
            "/bin",
            "/sbin",
            "/lib",
            "/lib64",
            "/lib32",
            "/libx32",
            "/run/agentcage",
            "/run/agentcage-controls",
            "/run/shm",
        ]
        .map(PathBuf::from),
    );
    if p.controls.home.is_some() {
        taken.push(home_inside.to_path_buf());
    }
    for ((src, dst, writable), origin) in &s.bind {
        if dst == Path::new("/")
            || taken
                .iter()
                .any(|t| dst.starts_with(t) || t.starts_with(dst))
        {
            return Err(UsageError::new(format!(
                "{origin}: bind {}:{}: the destination overlaps the workspace, a bind, a tmpfs \
                 or a system directory",
                src.display(),
                dst.display()
            ))
            .hint(
                "choose another destination (e.g. /mnt/NAME); inside the workspace use --ro/--rw",
            ));
        }
        let c = existing(src, "bind", origin)?;
        taken.push(dst.clone());
        p.controls.binds.push((c, dst.clone(), *writable));
    }
    if let Some((c, _)) = &s.chdir {
        p.cwd = Some(absolute(c, &ws));
    }
    Ok(())
}
