//! `agentcage run`: flags (and a policy file) -> Policy -> launcher -> exit code.
//!
//! The flags that describe a policy live in [`PolicyArgs`], shared with `agentcage policy
//! show`. They are all optional so that a flag given on the command line can override the
//! policy file while a flag left out does not: [`resolve`] merges the file's settings under
//! the flags' and fills in the profile's defaults (see `policy/`).

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use agentcage::{Command, Error, Layer, NetMode, Profile, SpawnOptions};
use clap::Args;

use crate::exit;
use crate::policy::placeholder::Shape;
use crate::policy::{
    self, absolute, expand_tilde, parse_layer, parse_net, BindSetting, LimitSettings, Resolved,
    Settings, UsageError,
};
pub(crate) use crate::run_output::open_net_log;
use crate::run_output::{deny_line, net_host_open, prepare_report, write_report};
use crate::ui;

/// The flags that describe a policy, shared by `run` and `policy show`. Every flag is optional
/// here so that a flag given on the command line can be told apart from one left out: left-out
/// flags take the policy file's value, then the profile's default (see `policy/`).
#[derive(Debug, Clone, Args)]
pub struct PolicyArgs {
    /// Policy file (TOML; keys mirror these flags, see docs/POLICY.md). Flags given on the
    /// command line override it.
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// Profile: none, ns-only (alias ns_only), landlock, full [default: full], or nested (no
    /// namespaces: for containers and hosts without user namespaces; see docs/CONTAINERS.md).
    #[arg(long, short = 'p', value_parser = parse_profile)]
    pub profile: Option<Profile>,
    /// Workspace directory, bound read-write at its own path (default: the current directory).
    #[arg(long, short = 'w', value_name = "DIR")]
    pub workspace: Option<PathBuf>,
    /// Extra host path visible read-only at the same path (repeatable).
    #[arg(long, value_name = "PATH")]
    pub ro: Vec<PathBuf>,
    /// Extra host path visible read-write at the same path (repeatable).
    #[arg(long, value_name = "PATH")]
    pub rw: Vec<PathBuf>,
    /// Bind the workspace read-only (the command can still write /tmp, the home and --rw
    /// paths).
    #[arg(long)]
    pub read_only_workspace: bool,
    /// Hide PATH inside (repeatable): an empty read-only directory or file is bound over it,
    /// e.g. `--mask .env --mask secrets`. Relative to the workspace; it must exist.
    #[arg(long, value_name = "PATH")]
    pub mask: Vec<PathBuf>,
    /// Give DIR a fresh, empty tmpfs for the run (repeatable), e.g. `--tmpfs node_modules`.
    /// Relative to the workspace; inside the workspace or a bind it must exist.
    #[arg(long, value_name = "DIR")]
    pub tmpfs: Vec<PathBuf>,
    /// Show host SRC at DST inside, read-write or (`:ro`) read-only (repeatable). DST must
    /// be outside the workspace and every --ro/--rw path (use those there).
    #[arg(long, value_name = "SRC:DST[:ro]")]
    pub bind: Vec<String>,
    /// Working directory inside (relative to the workspace; default: the current directory
    /// when inside the workspace, else the workspace).
    #[arg(long, value_name = "DIR")]
    pub chdir: Option<PathBuf>,
    /// Home directory: `tmpfs` (default: a fresh one each run, like /tmp) or a host DIR bound
    /// read-write as the home, so the agent's settings and caches persist.
    #[arg(long, value_name = "DIR|tmpfs")]
    pub home: Option<PathBuf>,
    /// Make PATH read-only inside, on top of the default protected paths (repeatable):
    /// relative to the workspace, or absolute inside the workspace or an --rw path; `*` and
    /// `**` are patterns. It must exist.
    #[arg(long, value_name = "PATH")]
    pub protect: Vec<PathBuf>,
    /// Leave a default protected path (or a --protect one) writable, e.g. `--unprotect
    /// .vscode` (repeatable). The defaults, in the workspace and in every --rw git repository:
    /// .git/hooks, .git/config, .git/info, .gitmodules, .envrc, .vscode, .idea, .devcontainer,
    /// .claude, .codex, .cursor, .gemini, .mcp.json, .git/modules/**/{hooks,config,info}.
    /// One that does not exist at start gets a read-only placeholder (an empty directory,
    /// removed after the run or session): no `git init` at the workspace root while `.git`
    /// is missing.
    #[arg(long, value_name = "PATH")]
    pub unprotect: Vec<PathBuf>,
    /// Set an environment variable inside (repeatable).
    #[arg(long, short = 'e', value_name = "K=V", value_parser = parse_env)]
    pub env: Vec<(String, String)>,
    /// Pass a variable of the caller's environment through (repeatable).
    #[arg(long, value_name = "K")]
    pub pass_env: Vec<String>,
    /// uid inside the sandbox [default: 0, root in the user namespace only].
    #[arg(long)]
    pub uid: Option<u32>,
    /// gid inside the sandbox [default: 0].
    #[arg(long)]
    pub gid: Option<u32>,
    /// When run as root: the unprivileged host uid the inside maps to (never 0) [default:
    /// 65534].
    #[arg(long)]
    pub host_uid: Option<u32>,
    /// When run as root: the unprivileged host gid the inside maps to (never 0) [default:
    /// 65534].
    #[arg(long)]
    pub host_gid: Option<u32>,
    /// Pass inherited fd N to the command (repeatable; 0-2 are always passed).
    #[arg(long, value_name = "N")]
    pub keep_fd: Vec<i32>,
    /// Run even when a primitive of the profile cannot be enforced here (what is missing is
    /// printed).
    #[arg(long)]
    pub best_effort: bool,
    /// Network: none (own namespace, loopback only), allow (own namespace; only the hosts of
    /// --allow-host, through the launcher's egress engine) or host (no network isolation)
    /// [default: none; allow with --allow-host].
    #[arg(long, value_parser = parse_net)]
    pub net: Option<NetMode>,
    /// Let the sandbox reach RULE (implies --net allow; repeatable): host, host:port,
    /// *.domain (subdomains only), *.domain:port, IP, IP:port, CIDR, [v6]:port; without a
    /// port, 443 and 80. Everything else (other names, literal IPs, UDP, other ports) is
    /// refused and logged.
    #[arg(long, value_name = "RULE", value_parser = policy::parse_allow_host)]
    pub allow_host: Vec<String>,
    /// --net allow: append one JSON line per egress decision to FILE (opened before the run;
    /// not inside the workspace or an --rw path).
    #[arg(long, value_name = "FILE")]
    pub net_log: Option<PathBuf>,
    /// --net allow, for tests and air-gapped mirrors: resolve NAME to IP and permit that
    /// address for that name, even loopback or private (repeatable).
    #[arg(long, value_name = "NAME=IP", value_parser = policy::parse_net_resolve)]
    pub net_resolve: Vec<(String, std::net::IpAddr)>,
    /// --net allow: the upstream DNS resolver the egress engine asks for allowed names
    /// [default: the host's].
    #[arg(long, value_name = "IP:PORT", value_parser = policy::parse_net_dns)]
    pub net_dns: Option<std::net::SocketAddr>,
    /// Keep the speculative-store-bypass mitigation for the sandbox (slower; see
    /// docs/SECURITY.md).
    #[arg(long)]
    pub seccomp_spec_mitigation: bool,
    /// TCP port the sandbox may bind when Landlock restricts the network (full, Landlock ABI
    /// 4+; repeatable).
    #[arg(long, value_name = "PORT")]
    pub tcp_bind: Vec<u16>,
    /// TCP port the sandbox may connect to when Landlock restricts the network (full,
    /// Landlock ABI 4+; repeatable).
    #[arg(long, value_name = "PORT")]
    pub tcp_connect: Vec<u16>,
    /// Maximum number of processes and threads (cgroup pids.max; RLIMIT_NPROC as a floor).
    /// Default under full: 1024. `max` for none.
    #[arg(long, value_name = "N", value_parser = lim_pids)]
    pub pids: Option<Lim<u64>>,
    /// Memory limit, e.g. 512M, 4G (cgroup memory.max, swap included). Default under full:
    /// half of the RAM. `max` for none.
    #[arg(long, value_name = "SIZE", value_parser = lim_memory)]
    pub memory: Option<Lim<u64>>,
    /// CPU quota in CPUs, e.g. 1.5 (cgroup cpu.max). Default: none.
    #[arg(long, value_name = "F", value_parser = lim_cpus)]
    pub cpus: Option<Lim<f64>>,
    /// Kill the whole sandbox after this long (e.g. 30, 1.5s, 2m) and exit 124; SIGTERM
    /// first, SIGKILL after 2 s. `0` (or `max`) means no timeout.
    #[arg(long, value_name = "DURATION", value_parser = lim_timeout)]
    pub timeout: Option<Lim<f64>>,
    /// RLIMIT_NOFILE. Default under full: 4096.
    #[arg(long, value_name = "N", value_parser = lim_nofile)]
    pub nofile: Option<Lim<u64>>,
    /// RLIMIT_FSIZE: largest file the sandbox may write, e.g. 1G.
    #[arg(long, value_name = "SIZE", value_parser = lim_fsize)]
    pub fsize: Option<Lim<u64>>,
    /// Remove one layer from the profile (for attribution experiments; repeatable).
    #[arg(long, value_name = "LAYER", value_parser = parse_layer, hide = true)]
    pub without: Vec<Layer>,
}

/// Flags of `agentcage run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// What to isolate.
    #[command(flatten)]
    pub policy: PolicyArgs,
    /// Write the outcome (exit, signal, timeout, oom, peak memory, wall and cpu time, the
    /// protected paths the sandbox created because they did not exist) as JSON to FILE. Its
    /// directory is opened before the run; the file is replaced, never written through a
    /// symlink (see docs/SECURITY.md).
    #[arg(long, value_name = "FILE")]
    pub json_report: Option<PathBuf>,
    /// Write one JSON line per denial (seccomp, network; Landlock where observable) to FILE
    /// (appended; not inside the workspace or an --rw path) or to inherited fd N (`fd:N`).
    /// The first line says which layers are observable here. With -v, each denial is also
    /// one line on stderr. See docs/EVENTS.md and `agentcage why`.
    #[arg(long, value_name = "FILE|fd:N")]
    pub events: Option<PathBuf>,
    /// The overlay workspace (docs/OVERLAY.md).
    #[command(flatten)]
    pub overlay: crate::overlay::OverlayArgs,
    /// Use a policy file (or `extends` target) even though the sandbox or another user could
    /// have written it: inside the workspace or an `rw` path, owned by someone else,
    /// group/world-writable, or hard-linked (see docs/POLICY.md, "Where to keep policy
    /// files").
    #[arg(long)]
    pub trust_writable_policy: bool,
    /// As root: run even though the policy creates no namespace (profile none, or every
    /// namespace removed with --without). The command then runs as host root with every
    /// capability and no isolation. A policy file cannot say this; only this flag can.
    #[arg(long)]
    pub allow_unsandboxed_root: bool,
    /// Nested rung, as root, with a root-owned workspace nothing can remap: run the command as
    /// uid 0 with no capabilities (empty bounding set, locked securebits, no_new_privs;
    /// Landlock confines writes to the workspace and /tmp, set-id creation stays refused).
    /// It still owns every root-owned file the allow-list reaches. A policy file cannot say
    /// this; only this flag can.
    #[arg(long)]
    pub allow_nested_root: bool,
    /// Do not give the command a pseudo-terminal: it runs without any terminal. Terminal
    /// stdout/stderr become pipes relayed to yours; a terminal stdin becomes an empty pipe
    /// (EOF). Your terminal never reaches the command, with or without this flag.
    #[arg(long)]
    pub no_pty: bool,
    /// Print what is enforced and the setup timings on stderr.
    #[arg(long, short = 'v')]
    pub verbose: bool,
    /// Print nothing from the launcher except errors.
    #[arg(long, short = 'q', conflicts_with = "verbose")]
    pub quiet: bool,
    /// The command and its arguments.
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<OsString>,
}

/// A limit flag's value: `None` means explicitly unlimited (`max`).
#[derive(Debug, Clone, Copy)]
pub struct Lim<T>(pub Option<T>);

macro_rules! lim_parser {
    ($name:ident, $parse:ident, $t:ty) => {
        fn $name(s: &str) -> Result<Lim<$t>, String> {
            agentcage::limits::value::$parse(s)
                .map(Lim)
                .map_err(|e| e.to_string())
        }
    };
}
lim_parser!(lim_pids, parse_pids, u64);
lim_parser!(lim_memory, parse_memory, u64);
lim_parser!(lim_cpus, parse_cpus, f64);
lim_parser!(lim_timeout, parse_timeout, f64);
lim_parser!(lim_nofile, parse_nofile, u64);
lim_parser!(lim_fsize, parse_fsize, u64);

fn parse_profile(s: &str) -> Result<Profile, String> {
    Profile::from_name(s).ok_or_else(|| {
        format!("unknown profile {s:?} (expected none, ns-only, landlock, full or nested)")
    })
}

fn parse_env(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() && !k.contains('\0') && !v.contains('\0') => {
            Ok((k.to_string(), v.to_string()))
        }
        _ => Err(format!("expected K=V, got {s:?}")),
    }
}

/// A command-line path: `~` expanded, relative to `cwd`.
pub(crate) fn flag_path(p: &Path, flag: &str, cwd: &Path) -> Result<PathBuf, UsageError> {
    let expanded = match p.to_str() {
        Some(s) => expand_tilde(s).map_err(|e| UsageError::new(format!("{flag}: {e}")))?,
        None => p.to_path_buf(),
    };
    Ok(absolute(&expanded, cwd))
}

/// The settings the flags say (nothing for flags left out).
pub fn settings_from_flags(a: &PolicyArgs, cwd: &Path) -> Result<Settings, UsageError> {
    let mut s = Settings {
        profile: a.profile,
        env: a.env.clone(),
        pass_env: a.pass_env.clone(),
        uid: a.uid,
        gid: a.gid,
        host_uid: a.host_uid,
        host_gid: a.host_gid,
        keep_fd: a.keep_fd.clone(),
        best_effort: a.best_effort.then_some(true),
        net: a.net,
        seccomp_spec_mitigation: a.seccomp_spec_mitigation.then_some(true),
        without: a.without.clone(),
        tcp_bind: a.tcp_bind.clone(),
        tcp_connect: a.tcp_connect.clone(),
        allow_host: a
            .allow_host
            .iter()
            .map(|r| (r.clone(), "--allow-host".to_string()))
            .collect(),
        net_resolve: a.net_resolve.clone(),
        net_dns: a.net_dns,
        limits: LimitSettings {
            pids: a.pids.map(|l| l.0),
            memory: a.memory.map(|l| l.0),
            cpus: a.cpus.map(|l| l.0),
            timeout: a.timeout.map(|l| l.0),
            nofile: a.nofile.map(|l| l.0),
            fsize: a.fsize.map(|l| l.0),
        },
        ..Settings::default()
    };
    if let Some(w) = &a.workspace {
        s.workspace = Some((flag_path(w, "--workspace", cwd)?, "--workspace".into()));
    }
    if let Some(l) = &a.net_log {
        s.net_log = Some((flag_path(l, "--net-log", cwd)?, "--net-log".into()));
    }
    for (paths, writable, flag) in [(&a.ro, false, "--ro"), (&a.rw, true, "--rw")] {
        for p in paths {
            s.binds.push(BindSetting {
                path: flag_path(p, flag, cwd)?,
                writable,
                optional: false,
                origin: flag.into(),
            });
        }
    }
    s.read_only_workspace = a.read_only_workspace.then_some(true);
    for b in &a.bind {
        let (src, dst, w) =
            policy::parse_bind(b).map_err(|e| UsageError::new(format!("--bind {e}")))?;
        s.bind
            .push(((absolute(&src, cwd), dst, w), "--bind".into()));
    }
    if let Some(c) = &a.chdir {
        let p = c
            .to_str()
            .map(policy::protect_path)
            .unwrap_or_else(|| Ok(c.clone()))
            .map_err(|e| UsageError::new(format!("--chdir: {e}")))?;
        s.chdir = Some((p, "--chdir".into()));
    }
    if let Some(h) = &a.home {
        let home = if h.as_os_str() == "tmpfs" {
            None
        } else {
            Some(flag_path(h, "--home", cwd)?)
        };
        s.home = Some((home, "--home".into()));
    }
    for (paths, out, flag) in [
        (&a.protect, &mut s.protect, "--protect"),
        (&a.unprotect, &mut s.unprotect, "--unprotect"),
        (&a.mask, &mut s.mask, "--mask"),
        (&a.tmpfs, &mut s.tmpfs, "--tmpfs"),
    ] {
        for p in paths {
            let path = p
                .to_str()
                .map(policy::protect_path)
                .unwrap_or_else(|| Ok(p.clone()))
                .map_err(|e| UsageError::new(format!("{flag}: {e}")))?;
            out.push((path, flag.into()));
        }
    }
    Ok(s)
}

/// Builds the effective policy: the policy file (if any) under the flags.
pub fn resolve(a: &PolicyArgs) -> Result<Resolved, UsageError> {
    let cwd =
        std::env::current_dir().map_err(|e| UsageError::new(format!("current directory: {e}")))?;
    let file = match &a.policy {
        Some(f) => policy::load(f, &cwd)?,
        None => Settings::default(),
    };
    let flags = settings_from_flags(a, &cwd)?;
    policy::build(&file.merge(flags), &cwd)
}

/// An error and its causes on one line (std's words for an OS error).
pub(crate) fn chain(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        src = s.source();
    }
    msg
}

/// A library error and its causes on one line. An OS cause (of a cgroup or rlimit step) is
/// written as the library writes an errno (`EACCES (Permission denied)`), not as std does
/// (`Permission denied (os error 13)`).
pub fn error_chain(e: &Error) -> String {
    e.chain()
}

fn eprint_error(e: &Error) {
    ui::error(&error_chain(e), e.hint());
}

/// Prints a usage error and returns exit status 2.
pub fn usage_error(e: &UsageError) -> i32 {
    ui::error(&e.message, e.hint.as_deref());
    exit::USAGE
}

/// The launch-time policy checks of `run` and `session start`.
#[derive(Debug, Clone, Copy)]
pub struct PolicyChecks {
    /// `--trust-writable-policy`.
    pub trust_writable_policy: bool,
    /// `--allow-unsandboxed-root`.
    pub allow_unsandboxed_root: bool,
    /// `--allow-nested-root` (run only).
    pub allow_nested_root: bool,
    /// `-q`.
    pub quiet: bool,
}

/// Resolves the policy and applies the checks every launch makes: a policy file the sandbox
/// or another user could have written, and an unsandboxed root. `Err`: the exit code (the
/// message is printed).
pub fn resolve_checked(a: &PolicyArgs, checks: PolicyChecks) -> Result<Resolved, i32> {
    let mut resolved = match resolve(a) {
        Ok(r) => r,
        Err(e) => return Err(usage_error(&e)),
    };
    resolved.policy.nested_root = checks.allow_nested_root;
    crate::nested::choose_rung(&mut resolved.policy, checks.quiet);
    let (policy, sources) = (&resolved.policy, &resolved.sources);
    if !checks.quiet {
        for w in &resolved.warnings {
            ui::warning(w);
        }
    }
    // A policy file the sandbox (or another user) could have written would let the last run
    // choose this run's isolation: refused unless the caller says they accept it.
    // (No policy file: nothing to check, no getcwd.)
    let cwd = (!sources.is_empty())
        .then(std::env::current_dir)
        .and_then(Result::ok);
    let untrusted = policy::untrusted(
        sources,
        policy,
        cwd.as_deref().filter(|_| a.workspace.is_none()),
    );
    if !untrusted.is_empty() {
        if !checks.trust_writable_policy {
            for line in &untrusted[..untrusted.len() - 1] {
                ui::error(&format!("untrusted policy file: {line}"), None);
            }
            return Err(usage_error(
                &UsageError::new(format!(
                    "untrusted policy file: {}",
                    untrusted[untrusted.len() - 1]
                ))
                .hint(
                    "keep policy files where only you (or root) can write them and the sandbox \
                     cannot, e.g. ~/.config/agentcage/ (root: /etc/agentcage/), mode 0644 or \
                     0600; or pass --trust-writable-policy to accept it",
                ),
            ));
        }
        if !checks.quiet {
            for line in &untrusted {
                ui::warning(&format!(
                    "--trust-writable-policy: using an untrusted policy file: {line}"
                ));
            }
        }
    }
    let as_root = agentcage::geteuid() == 0;
    // The nested rung has no namespace but switches a root caller to an unprivileged uid (or,
    // with --allow-nested-root, to uid 0 without capabilities): not host root.
    if as_root && !policy.layers.any_namespace() && policy.profile != Profile::Nested {
        // No namespace at all (other namespaces without a user namespace are refused by the
        // library): the command is host root with every capability.
        if !checks.allow_unsandboxed_root {
            return Err(usage_error(
                &UsageError::new(format!(
                    "profile {}{} as root runs the command as host root with every capability \
                     and no isolation: refused",
                    policy.profile,
                    if policy.profile == Profile::None {
                        ""
                    } else {
                        " without any namespace"
                    }
                ))
                .hint(
                    "use a sandboxing profile (ns-only, landlock, full), or pass \
                     --allow-unsandboxed-root if that is really what you want",
                ),
            ));
        }
        ui::warning(
            "--allow-unsandboxed-root: the command runs as HOST ROOT with every capability and \
             NO ISOLATION",
        );
    }
    Ok(resolved)
}

/// Read-only placeholders for the missing default protected paths (`policy/placeholder.rs`),
/// made now, before the sandbox is composed, and bound read-only with the protected paths
/// that exist (again: another run's placeholder may be gone since the policy was resolved).
/// For runs and sessions with a mount namespace. Returns the placeholders (their roots
/// locked; `finish` removes them when the last user ends) and the missing paths that stay
/// unprotected (a warning says why when a placeholder could not be made).
pub(crate) fn bind_placeholders(
    policy: &mut agentcage::Policy,
    protected: &[PathBuf],
    protect_missing: &[PathBuf],
    quiet: bool,
) -> (policy::placeholder::Placeholders, Vec<PathBuf>) {
    let roots = writable_roots(policy);
    let (made, exists, left) = policy::placeholder::create_all(&roots, protect_missing, protected);
    bind_shape(policy, &Shape::of(&made, &exists));
    (made, unprotected(left, protect_missing, quiet))
}

/// The writable roots (placeholders are made and `.git/commondir` watched in them): the
/// workspace (unless read-only), the `rw` binds.
fn writable_roots(policy: &agentcage::Policy) -> Vec<PathBuf> {
    std::iter::once(&policy.workspace)
        .filter(|_| !policy.controls.read_only)
        .chain(policy.binds.iter().filter(|b| b.writable).map(|b| &b.path))
        .cloned()
        .collect()
}

/// The missing paths a walk left unprotected, warning (unless `quiet`) about those whose
/// placeholder could not be made.
fn unprotected(
    left: Vec<policy::placeholder::Left>,
    protect_missing: &[PathBuf],
    quiet: bool,
) -> Vec<PathBuf> {
    let mut watch = Vec::new();
    for (p, why) in left {
        if !protect_missing.contains(&p) {
            continue;
        }
        if let (Some(why), false) = (why, quiet) {
            ui::warning(&format!(
                "cannot make a read-only placeholder for {} ({why}): the sandbox can \
                 create it",
                p.display()
            ));
        }
        watch.push(p);
    }
    watch
}

/// Binds the placeholders and the protected paths that exist read-only (`shape`).
fn bind_shape(policy: &mut agentcage::Policy, shape: &Shape) {
    // Nothing exists below a placeholder: binds there would fail.
    policy.binds.retain(|b| {
        !shape
            .made
            .iter()
            .any(|(p, _)| b.path.starts_with(p) && b.path != *p)
    });
    // Made here: empty and marked, their kind known (ExtraBind::fresh_placeholder).
    let new = shape
        .made
        .iter()
        .map(|(p, is_dir)| (p, Some(*is_dir)))
        .chain(shape.exists.iter().map(|p| (p, None)))
        .filter(|(p, _)| !policy.binds.iter().any(|b| b.path == **p))
        .map(|(p, fresh)| (p.clone(), fresh))
        .collect::<Vec<_>>();
    for (path, fresh_placeholder) in new {
        policy.binds.push(agentcage::ExtraBind {
            path,
            writable: false,
            fresh_placeholder,
        });
    }
}

/// Runs `agentcage run`; returns the exit code.
pub fn main(a: RunArgs) -> i32 {
    let checks = PolicyChecks {
        trust_writable_policy: a.trust_writable_policy,
        allow_unsandboxed_root: a.allow_unsandboxed_root,
        allow_nested_root: a.allow_nested_root,
        quiet: a.quiet,
    };
    let Resolved {
        policy,
        skipped,
        protected,
        protect_missing,
        ..
    } = match resolve_checked(&a.policy, checks) {
        Ok(r) => r,
        Err(code) => return code,
    };
    let mut policy = policy;
    let overlay = match crate::overlay::prepare(&a.overlay, &mut policy, &protected, None) {
        Ok(o) => o,
        Err(e) => return usage_error(&e),
    };
    // With an overlay the protected paths below the workspace are not bound (-v says so).
    let protected: Vec<PathBuf> = protected
        .into_iter()
        .filter(|p| overlay.is_none() || !p.starts_with(&policy.workspace))
        .collect();
    // The report's directory is opened now, before the sandbox can touch anything, so that
    // nothing it plants changes where the report lands (see agentcage::hostfs).
    let report = match &a.json_report {
        Some(path) => match prepare_report(path, &policy) {
            Ok(r) => Some(r),
            Err(e) => return usage_error(&e),
        },
        None => None,
    };
    // --net-log: opened now, by fd, like the report's directory (see agentcage::hostfs).
    let net_log = match &policy.egress.log {
        Some(path) if policy.net == NetMode::Allow => match open_net_log(path, &policy) {
            Ok(f) => Some(f),
            Err(e) => return usage_error(&e),
        },
        _ => None,
    };
    let events = match &a.events {
        Some(spec) => match crate::events::open(spec, &policy, a.verbose) {
            Ok(e) => Some(e),
            Err(e) => return usage_error(&e),
        },
        None => None,
    };
    if policy.net == NetMode::Host && !a.quiet {
        let from = if a.policy.net.is_some() {
            "--net host"
        } else {
            "net = \"host\" (policy file)"
        };
        ui::warning(&format!(
            "{from}: the sandbox shares the host's network (network isolation is OFF): {}",
            net_host_open(&policy)
        ));
    }
    if a.verbose {
        for s in &skipped {
            eprintln!(
                "agentcage: optional path {} skipped: {}",
                s.path.display(),
                s.why
            );
        }
    }
    // Protected paths that do not exist cannot be protected (docs/SECURITY.md): checked again
    // after the run. So is `.git/commondir`, which makes git read its config and hooks from
    // the directory it names (it does not exist in a normal repository).
    // The default ones get a read-only placeholder instead (policy/placeholder.rs), and so
    // do existing ones that vanished since the policy was resolved (another run's placeholder).
    // The common ones are made beside (on the other core) while the sandbox is prepared,
    // expecting them made; when they were not (the name appeared meanwhile, or it failed),
    // the sandbox is prepared again with what there is (`placeholder::start_all`).
    let mut placeholders = policy::placeholder::Placeholders::default();
    // With an overlay the sandbox writes nothing of the workspace: nothing to watch or
    // placehold there (and nothing may be bound below the overlay).
    let mut watch = Vec::new();
    let mut pending = None;
    if overlay.is_some() {
    } else if policy.layers.has(Layer::MountNs) {
        let roots = writable_roots(&policy);
        let p = policy::placeholder::start_all(&roots, &protect_missing, &protected);
        let expected = p.expected();
        let binds = policy.binds.clone();
        bind_shape(&mut policy, &expected);
        pending = Some((p, expected, binds));
    } else {
        watch = protect_missing.clone();
    }
    // Only where it is used (bound at /run/agentcage/agentcage): a readlink of
    // /proc/self/exe and one per component to canonicalize it.
    let self_exe = (policy.layers.has(Layer::MountNs) || policy.profile == Profile::Nested)
        .then(|| std::env::current_exe().ok()?.canonicalize().ok())
        .flatten();
    let cmd = Command {
        argv: a.command.clone(),
        self_exe,
    };
    let t0 = std::time::Instant::now();
    let mut prepared = agentcage::prepare(&policy, &cmd);
    if let Some((p, expected, binds)) = pending {
        // While the placeholders' helper may still be busy (on ext4 it often outlasts
        // prepare): the cgroup leaf, made here instead of after the wait for it.
        if let Ok(prepared) = &prepared {
            prepared.prepare_limits();
        }
        let (made, exists, left) = p.finish();
        watch = unprotected(left, &protect_missing, a.quiet);
        let shape = Shape::of(&made, &exists);
        placeholders = made;
        if shape != expected {
            policy.binds = binds;
            bind_shape(&mut policy, &shape);
            drop(prepared);
            prepared = agentcage::prepare(&policy, &cmd);
        }
    }
    if policy.layers.has(Layer::MountNs) && overlay.is_none() {
        for r in writable_roots(&policy) {
            let commondir = r.join(".git/commondir");
            // A `.git` placeholder is bound read-only: nothing can appear in it.
            if placeholders.made.iter().any(|p| p.path == r.join(".git")) {
                continue;
            }
            let git_dir = std::fs::symlink_metadata(r.join(".git")).is_ok_and(|m| m.is_dir());
            if git_dir && std::fs::symlink_metadata(&commondir).is_err() {
                watch.push(commondir);
            }
        }
    }
    let prepared = match prepared {
        Ok(p) => p,
        Err(e) => {
            let _ = placeholders.finish();
            eprint_error(&e);
            return exit::process_exit_code(&e);
        }
    };
    let prep_time = t0.elapsed();
    if a.verbose {
        eprintln!(
            "agentcage: profile {} layers [{}]",
            policy.profile,
            policy
                .layers
                .iter()
                .map(|l| l.name())
                .collect::<Vec<_>>()
                .join(" ")
        );
        for (what, how) in &prepared.enforcement {
            eprintln!("agentcage: {what}: {how}");
        }
        for l in crate::nested::verbose_lines(&policy) {
            eprintln!("agentcage: {l}");
        }
        let names = |v: &[PathBuf]| {
            v.iter()
                .map(|p| {
                    p.strip_prefix(&policy.workspace)
                        .unwrap_or(p)
                        .display()
                        .to_string()
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        if !protected.is_empty() {
            eprintln!(
                "agentcage: protected (read-only; relative to {}): {}",
                policy.workspace.display(),
                names(&protected)
            );
        }
        if !placeholders.made.is_empty() {
            let v: Vec<PathBuf> = placeholders.made.iter().map(|p| p.path.clone()).collect();
            eprintln!(
                "agentcage: read-only placeholders for missing protected paths (removed after \
                 the run): {}",
                names(&v)
            );
        }
        if !watch.is_empty() {
            eprintln!(
                "agentcage: not protected, they do not exist (the sandbox can create them; \
                 checked after the run): {}",
                names(&watch)
            );
        }
    }
    let verbose = a.verbose;
    if !a.quiet && !verbose {
        for (what, how) in &prepared.degraded {
            ui::warning(&format!("{what}: {how}"));
        }
    }
    let opts = SpawnOptions {
        forward_signals: true,
        pty: !a.no_pty,
        on_enforcement: verbose.then(|| {
            Box::new(|what: &str, how: &str| eprintln!("agentcage: {what}: {how}"))
                as Box<dyn Fn(&str, &str)>
        }),
        // Weaker than asked is data, never silence: said unless -q.
        on_degraded: (!a.quiet && !verbose).then(|| {
            Box::new(|what: &str, how: &str| ui::warning(&format!("{what}: {how}")))
                as Box<dyn Fn(&str, &str)>
        }),
        egress: agentcage::EgressHooks {
            log: net_log,
            on_deny: match &events {
                Some(ev) => Some(crate::events::egress_hook(ev)),
                None => verbose.then(|| {
                    std::sync::Arc::new(|e: &agentcage_egress::Event| eprintln!("{}", deny_line(e)))
                        as agentcage::SharedDenyHook
                }),
            },
        },
        events: events.as_ref().map(crate::events::sink),
    };
    let wall = std::time::Instant::now();
    let result = prepared.run(&opts);
    let wall = wall.elapsed();
    if let Some((o, _lock)) = &overlay {
        crate::overlay::after_run(o, a.quiet);
    }
    for (p, why) in placeholders.finish() {
        if !a.quiet {
            ui::warning(&format!(
                "the read-only placeholder {} stays ({why}): remove it if you do not want it",
                p.display()
            ));
        }
    }
    // What could not be protected because it did not exist: say what the sandbox created.
    let created: Vec<(PathBuf, Option<std::io::Error>)> = watch
        .into_iter()
        .filter_map(|p| match std::fs::symlink_metadata(&p) {
            Ok(_) => Some((p, None)),
            Err(e)
                if e.kind() == std::io::ErrorKind::NotFound
                    || e.raw_os_error() == Some(libc::ENOTDIR) =>
            {
                None
            }
            Err(e) => Some((p, Some(e))),
        })
        .collect();
    if !a.quiet {
        for (p, e) in &created {
            match e {
                None => ui::warning(&format!(
                    "the sandbox created {}, which git, direnv, an editor or an agent may run \
                     or follow, and which could not be protected (it did not exist at start): \
                     review it before using this directory outside the sandbox",
                    p.display()
                )),
                Some(e) => ui::warning(&format!(
                    "whether the sandbox created {} cannot be checked ({e}): review it and the \
                     permissions of its parent before git, direnv, an editor or an agent runs it",
                    p.display()
                )),
            }
        }
    }
    if let (Some(path), Some(report)) = (&a.json_report, &report) {
        let created: Vec<&Path> = created.iter().map(|(p, _)| p.as_path()).collect();
        let denials = events.as_ref().map(|e| {
            let (seccomp, network) = e.counts();
            serde_json::json!({ "seccomp": seccomp, "network": network, "landlock": null })
        });
        if let Err(e) = write_report(report, &policy, &result, wall, &created, denials) {
            ui::error(
                &format!("write the JSON report {}: {}", path.display(), chain(&e)),
                None,
            );
        }
    }
    match result {
        Ok(out) => {
            if verbose {
                let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
                eprintln!(
                    "agentcage: timings: prepare {:.3} ms, clone {:.3} ms, released {:.3} ms, exec {:.3} ms, exit {:.3} ms; {}",
                    ms(prep_time),
                    ms(out.timings.clone),
                    ms(out.timings.released),
                    ms(out.timings.exec),
                    ms(out.timings.exit),
                    match out.exit {
                        agentcage::Exit::Code(c) => format!("exited {c}"),
                        agentcage::Exit::Signal(s) => format!("killed by signal {s}"),
                    }
                );
            }
            if out.timed_out {
                if !a.quiet {
                    eprintln!(
                        "agentcage: timeout: the sandbox was killed after {}",
                        agentcage::limits::value::format_duration(
                            std::time::Duration::from_secs_f64(
                                policy.limits.timeout.unwrap_or(0.0)
                            )
                        )
                    );
                }
                return exit::TIMEOUT;
            }
            if let Some(sig) = out.killed_after_signal.filter(|_| !a.quiet) {
                eprintln!(
                    "agentcage: signal {sig} forwarded; the sandbox had not exited {} later and \
                     was killed",
                    agentcage::limits::value::format_duration(agentcage::TIMEOUT_GRACE)
                );
            }
            if out.oom {
                let limit = agentcage::limits::value::format_size_limit(policy.limits.memory);
                if out.exit == agentcage::Exit::Signal(libc::SIGKILL) {
                    eprintln!("agentcage: out of memory (limit {limit})");
                    return 137;
                }
                // A child of the command was OOM-killed; the command's own status stands.
                eprintln!(
                    "agentcage: out of memory (limit {limit}): a process in the sandbox was killed"
                );
            }
            out.exit.code()
        }
        Err(e) => {
            eprint_error(&e);
            exit::process_exit_code(&e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_parsing() {
        assert_eq!(parse_env("A=b=c"), Ok(("A".into(), "b=c".into())));
        assert!(parse_env("=x").is_err());
        assert!(parse_env("novalue").is_err());
    }

    /// A cgroup failure prints its real cause and errno (it once printed a made-up EIO),
    /// and exits 125.
    #[test]
    fn cgroup_error_prints_the_real_errno() {
        use agentcage::CgroupError;
        let e = Error::Cgroup {
            step: "create the run's cgroup".into(),
            source: CgroupError::Write {
                path: "/sys/fs/cgroup/agentcage/x/pids.max".into(),
                value: "64".into(),
                source: std::io::Error::from_raw_os_error(libc::EACCES),
            },
            hint: None,
        };
        assert_eq!(
            error_chain(&e),
            "create the run's cgroup: write \"64\" to /sys/fs/cgroup/agentcage/x/pids.max: \
             EACCES (Permission denied)"
        );
        assert_eq!(crate::exit::process_exit_code(&e), crate::exit::SETUP);
    }

    /// A failed read of the caller's rlimits prints the real errno (it once printed a made-up
    /// EINVAL), and exits 125.
    #[test]
    fn rlimit_error_prints_the_real_errno() {
        use agentcage::limits::testing::Resource;
        let e = Error::from(agentcage::RlimitError::GetLimit {
            resource: Resource::Nofile,
            source: std::io::Error::from_raw_os_error(libc::EPERM),
        });
        assert_eq!(
            error_chain(&e),
            "read the current RLIMIT_NOFILE: EPERM (Operation not permitted)"
        );
        assert_eq!(crate::exit::process_exit_code(&e), crate::exit::SETUP);
    }

    #[test]
    fn profile_aliases() {
        assert_eq!(parse_profile("ns_only"), Ok(Profile::NsOnly));
        assert!(parse_profile("fullest").is_err());
    }
}
