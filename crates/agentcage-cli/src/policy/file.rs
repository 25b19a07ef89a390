//! The policy file format (serde, with spans for `FILE:LINE` messages), the `extends` chain,
//! and the trust checks on the files read.

use std::ops::Range;
use std::path::{Path, PathBuf};

use agentcage::{Layer, Policy, Profile};
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use toml::Spanned;

use super::protect::protect_path;
use super::settings::{BindSetting, LimitSetting, LimitSettings, PolicySource, Settings};
use super::{absolute, check_env_name, expand_tilde, parse_layer, parse_net, UsageError};

/// The key table of docs/POLICY.md: (key, flag, default, effect). One source of truth: the
/// docs embed [`key_table_markdown`] and a test checks they agree.
pub const KEYS: &[(&str, &str, &str, &str)] = &[
    ("extends", "-", "-", "Start from a profile (`\"full\"`, `\"ns-only\"`, ...) or from another policy file (path relative to this file). Cycles are refused."),
    ("profile", "`--profile`, `-p`", "`\"full\"`", "`none`, `ns-only`, `landlock`, `full` or `nested` (no namespaces, for containers: see docs/CONTAINERS.md): the layers composed, and the defaults of the keys below. `--allow-nested-root` has no key."),
    ("workspace", "`--workspace`, `-w`", "the current directory", "Directory bound read-write at its own path; the command starts there."),
    ("ro", "`--ro`", "`[]`", "Host paths visible read-only at the same path. Entries: `\"PATH\"` or `{ path = \"PATH\", optional = true }` (skipped when missing); `*` and `**` components are patterns."),
    ("rw", "`--rw`", "`[]`", "Host paths visible read-write at the same path; entries as for `ro`."),
    ("protect", "`--protect PATH`", "`[]` (the default protected paths always apply)", "Paths made read-only inside the workspace or an `rw` path, on top of the defaults (see \"Default protected paths\" above). Relative to the workspace (not to the file), or absolute inside the workspace or an `rw` path; `*` and `**` components are patterns. A literal path must exist."),
    ("unprotect", "`--unprotect PATH`", "`[]`", "Protected paths (defaults or `protect`) left writable; same forms as `protect`, matched as written (`.vscode`, `.git/modules/**/hooks`) or as an expanded path."),
    ("read_only_workspace", "`--read-only-workspace`", "`false`", "Bind the workspace read-only (`--ro` naming the workspace does the same, with a warning). No placeholders are made."),
    ("mask", "`--mask PATH`", "`[]`", "Existing paths hidden inside: an empty read-only directory or file is bound over each (e.g. `.env`, `secrets/`). Relative to the workspace, or absolute; no `..`; not a symlink."),
    ("tmpfs", "`--tmpfs DIR`", "`[]`", "Directories that get a fresh, empty tmpfs owned by the inside user for the run (e.g. `node_modules`, `target`). Relative to the workspace, or absolute; inside the workspace or a bind it must exist. Each is one more memory budget of `limits.memory`."),
    ("bind", "`--bind SRC:DST[:ro]`", "`[]`", "Host path SRC shown at another path DST inside, read-write (`:rw`, the default) or read-only (`:ro`); SRC relative to the file. DST must lie outside the workspace, every `ro`/`rw` path, the system directories and the other binds (a bind into the workspace could cover a protected path: use `ro`/`rw` there). SRC is opened without following a symlink; sockets below a read-only one are masked."),
    ("chdir", "`--chdir DIR`", "the caller's directory when inside the workspace, else the workspace", "Working directory inside; relative to the workspace."),
    ("home", "`--home DIR` or `--home tmpfs`", "`\"tmpfs\"`", "`\"tmpfs\"`: a fresh home on the root tmpfs each run. A host directory: bound read-write as the home (`/root`, or `/home/agent` with a `uid`), so it persists; relative to the file. It must be writable by the sandbox's host uid (as root: `host_uid`, 65534)."),
    ("env", "`--env K=V`, `-e`", "`{}`", "Table of variables set inside (`K = \"V\"`); a value starting with `~/` is expanded like a shell assignment."),
    ("pass_env", "`--pass-env K`", "`[]`", "Variables of the caller's environment passed through."),
    ("uid", "`--uid`", "`0`", "uid inside the sandbox (0 is root in the user namespace only)."),
    ("gid", "`--gid`", "`0`", "gid inside the sandbox."),
    ("host_uid", "`--host-uid`", "`65534`", "When the launcher runs as root: the host uid the inside maps to (never 0)."),
    ("host_gid", "`--host-gid`", "`65534`", "When the launcher runs as root: the host gid the inside maps to (never 0)."),
    ("keep_fd", "`--keep-fd N`", "`[]`", "Inherited fds (>= 3) passed to the command; 0-2 always are."),
    ("best_effort", "`--best-effort`", "`false`", "Run even when a primitive of the profile cannot be enforced here (what is missing is printed)."),
    ("net", "`--net`", "`\"none\"`, `\"allow\"` when `network.allow` is set", "`none`: own network namespace, loopback only. `allow`: own network namespace whose only way out is the launcher's egress engine (the hosts of `network.allow`, nothing else; needs a network namespace). `host`: the host's network, with a loud warning."),
    ("seccomp_spec_mitigation", "`--seccomp-spec-mitigation`", "`false`", "Keep the speculative-store-bypass mitigation for the sandbox (slower)."),
    ("without", "`--without LAYER`", "`[]`", "Remove layers from the profile (attribution experiments): user-ns, mount-ns, pid-ns, net-ns, ipc-ns, uts-ns, cgroup-ns, hygiene, landlock, caps, no-new-privs, seccomp, limits."),
    ("limits.pids", "`--pids`", "full: `1024`; else none", "Processes and threads (cgroup pids.max, RLIMIT_NPROC floor). Number or `\"max\"`."),
    ("limits.memory", "`--memory`", "full: half the RAM; else none", "Memory incl. swap (cgroup memory.max): `\"512M\"`, `\"4G\"`, bytes, or `\"max\"`."),
    ("limits.cpus", "`--cpus`", "none", "CPU quota in CPUs (cgroup cpu.max): `1.5` or `\"max\"`."),
    ("limits.timeout", "`--timeout`", "none", "Wall-clock limit (`30`, `\"1.5s\"`, `\"2m\"`); exit 124 when it expires."),
    ("limits.nofile", "`--nofile`", "full: `4096`; else none", "RLIMIT_NOFILE."),
    ("limits.fsize", "`--fsize`", "none", "RLIMIT_FSIZE: largest file written (`\"1G\"`)."),
    ("landlock.tcp_bind", "`--tcp-bind PORT`", "`[]`", "TCP ports the sandbox may bind when Landlock restricts the network (full, ABI 4+)."),
    ("landlock.tcp_connect", "`--tcp-connect PORT`", "`[]`", "TCP ports the sandbox may connect to when Landlock restricts the network (full, ABI 4+)."),
    ("network.allow", "`--allow-host RULE`", "`[]`", "Egress allow rules (implies `net = \"allow\"`): `host`, `host:port`, `*.domain` (subdomains only), `*.domain:port`, `IP`, `IP:port`, `CIDR`, `[v6]:port`; without a port, 443 and 80."),
    ("network.log", "`--net-log FILE`", "none", "Append one JSON line per egress decision to FILE (opened by the launcher before the run; never inside the workspace or an `rw` path)."),
    ("network.resolve", "`--net-resolve NAME=IP`", "`[]`", "For tests and air-gapped mirrors: pin NAME to IP and permit that address for that name, even loopback or private (`[\"mirror.local=10.0.0.5\"]`)."),
    ("network.dns", "`--net-dns IP:PORT`", "the host's resolver", "The upstream resolver the egress engine asks for allowed names."),
];

/// [`KEYS`] as a Markdown table (embedded in docs/POLICY.md).
pub fn key_table_markdown() -> String {
    let mut s = String::from("| Key | Flag | Default | Effect |\n|---|---|---|---|\n");
    for (k, f, d, e) in KEYS {
        s.push_str(&format!("| `{k}` | {f} | {d} | {e} |\n"));
    }
    s
}

// ---------------------------------------------------------------------------------------------
// The file format (serde), with spans for FILE:LINE messages.

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDoc {
    extends: Option<Spanned<String>>,
    profile: Option<Spanned<String>>,
    workspace: Option<Spanned<String>>,
    #[serde(default)]
    ro: Vec<Spanned<PathEntry>>,
    #[serde(default)]
    rw: Vec<Spanned<PathEntry>>,
    #[serde(default)]
    env: EnvTable,
    #[serde(default)]
    pass_env: Vec<Spanned<String>>,
    uid: Option<u32>,
    gid: Option<u32>,
    host_uid: Option<u32>,
    host_gid: Option<u32>,
    #[serde(default)]
    keep_fd: Vec<Spanned<i32>>,
    best_effort: Option<bool>,
    net: Option<Spanned<String>>,
    seccomp_spec_mitigation: Option<bool>,
    #[serde(default)]
    without: Vec<Spanned<String>>,
    #[serde(default)]
    protect: Vec<Spanned<String>>,
    #[serde(default)]
    unprotect: Vec<Spanned<String>>,
    read_only_workspace: Option<bool>,
    #[serde(default)]
    mask: Vec<Spanned<String>>,
    #[serde(default)]
    tmpfs: Vec<Spanned<String>>,
    #[serde(default)]
    bind: Vec<Spanned<String>>,
    chdir: Option<Spanned<String>>,
    home: Option<Spanned<String>>,
    limits: Option<FileLimits>,
    landlock: Option<FileLandlock>,
    network: Option<FileNetwork>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileNetwork {
    #[serde(default)]
    allow: Vec<Spanned<String>>,
    log: Option<Spanned<String>>,
    #[serde(default)]
    resolve: Vec<Spanned<String>>,
    dns: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileLimits {
    pids: Option<Spanned<Scalar>>,
    memory: Option<Spanned<Scalar>>,
    cpus: Option<Spanned<Scalar>>,
    timeout: Option<Spanned<Scalar>>,
    nofile: Option<Spanned<Scalar>>,
    fsize: Option<Spanned<Scalar>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileLandlock {
    #[serde(default)]
    tcp_bind: Vec<u16>,
    #[serde(default)]
    tcp_connect: Vec<u16>,
}

/// A path entry: `"PATH"` or `{ path = "PATH", optional = true }`.
#[derive(Debug)]
struct PathEntry {
    path: String,
    optional: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PathTable {
    path: String,
    #[serde(default)]
    optional: bool,
}

impl<'de> Deserialize<'de> for PathEntry {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = PathEntry;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a path string or a table { path = \"...\", optional = true }")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<PathEntry, E> {
                Ok(PathEntry {
                    path: v.to_string(),
                    optional: false,
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<PathEntry, A::Error> {
                let t = PathTable::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(PathEntry {
                    path: t.path,
                    optional: t.optional,
                })
            }
        }
        d.deserialize_any(V)
    }
}

/// A limit value: a string or a number, kept as text for the `agentcage::limits::value` parsers.
#[derive(Debug)]
struct Scalar(String);

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Scalar;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a number or a string such as \"512M\" or \"max\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

/// `[env]`: string values, in file order.
#[derive(Debug, Default)]
struct EnvTable(Vec<(Spanned<String>, String)>);

impl<'de> Deserialize<'de> for EnvTable {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = EnvTable;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a table of NAME = \"value\"")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<EnvTable, A::Error> {
                let mut v = Vec::new();
                while let Some((k, val)) = map.next_entry::<Spanned<String>, String>()? {
                    v.push((k, val));
                }
                Ok(EnvTable(v))
            }
        }
        d.deserialize_map(V)
    }
}

// ---------------------------------------------------------------------------------------------
// Loading.

/// 1-based line of byte `offset` in `text`.
pub(super) fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

/// Positions in one file, for messages.
pub(super) struct Src<'a> {
    pub(super) name: String,
    pub(super) text: &'a str,
    pub(super) dir: PathBuf,
}

impl Src<'_> {
    fn at(&self, span: &Range<usize>) -> String {
        format!("{}:{}", self.name, line_of(self.text, span.start))
    }

    fn err(&self, span: &Range<usize>, msg: impl std::fmt::Display) -> UsageError {
        UsageError::new(format!("{}: {msg}", self.at(span)))
    }

    /// Expands `~` and resolves a relative path against this file's directory.
    fn path(&self, s: &str, span: &Range<usize>) -> Result<PathBuf, UsageError> {
        if s.is_empty() {
            return Err(self.err(span, "empty path"));
        }
        let p = expand_tilde(s).map_err(|e| self.err(span, e))?;
        Ok(if p.is_absolute() { p } else { self.dir.join(p) })
    }
}

const MAX_DEPTH: usize = 32;

/// Loads a policy file and its `extends` chain. `path` may be relative to `cwd`.
pub fn load(path: &Path, cwd: &Path) -> Result<Settings, UsageError> {
    let mut stack = Vec::new();
    load_inner(
        &absolute(path, cwd),
        &path.display().to_string(),
        Base::Given,
        &mut stack,
    )
    .map_err(|e| {
        if e.hint.is_some() {
            e
        } else {
            e.hint(KEYS_HINT)
        }
    })
}

const KEYS_HINT: &str =
    "the keys, their types and values: docs/POLICY.md or `agentcage policy keys`";

/// Which directory a file's relative paths resolve against.
#[derive(Clone, Copy)]
enum Base {
    /// The directory of the path as named (`--policy`).
    Given,
    /// The directory of the real file (`extends` targets).
    Real,
}

fn load_inner(
    abs: &Path,
    name: &str,
    base: Base,
    stack: &mut Vec<PathBuf>,
) -> Result<Settings, UsageError> {
    let (text, source) = read_policy(abs).map_err(|e| {
        UsageError::new(format!("{name}: cannot read the policy file: {e}"))
            .hint("check the path given to --policy or to `extends`")
    })?;
    stack.push(source.traced.real.clone());
    let src = Src {
        name: name.to_string(),
        text: &text,
        dir: match base {
            Base::Given => abs,
            Base::Real => source.traced.real.as_path(),
        }
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default(),
    };
    let r = parse_doc(&src, stack);
    stack.pop();
    let mut s = r?;
    s.sources.insert(0, source);
    Ok(s)
}

/// Reads a policy file: resolved with [`agentcage::hostfs::trace`], the real path opened
/// without following symlinks and without blocking (a FIFO is refused, not waited on), and
/// checked on that fd like sshd's StrictModes: the file and every directory above it must be
/// owned by the caller or root and not writable by group or others (a directory may be if it
/// is sticky, like /tmp), and the file must have a single link.
fn read_policy(abs: &Path) -> std::io::Result<(String, PolicySource)> {
    use std::io::Read;
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let traced = agentcage::hostfs::trace(abs)?;
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(&traced.real)?;
    let md = f.metadata()?;
    if !md.is_file() {
        return Err(std::io::Error::other(
            "not a regular file (write the policy to a file)",
        ));
    }
    let mut text = String::new();
    f.read_to_string(&mut text)?;
    let euid = agentcage::geteuid();
    let who = || {
        if euid == 0 {
            "root".to_string()
        } else {
            format!("root or you (uid {euid})")
        }
    };
    let mut problems = Vec::new();
    if md.uid() != 0 && md.uid() != euid {
        problems.push(format!("it is owned by uid {}, not by {}", md.uid(), who()));
    }
    if md.mode() & 0o022 != 0 {
        problems.push(format!(
            "it is writable by its group or by others (mode {:o})",
            md.mode() & 0o7777
        ));
    }
    if md.nlink() > 1 {
        problems.push(format!(
            "it has {} hard links (another name, maybe inside a workspace, can change it)",
            md.nlink()
        ));
    }
    for dir in traced.real.ancestors().skip(1) {
        let dm = match std::fs::symlink_metadata(dir) {
            Ok(dm) => dm,
            Err(e) => {
                problems.push(format!(
                    "its directory {} cannot be checked: {e}",
                    dir.display()
                ));
                continue;
            }
        };
        if dm.uid() != 0 && dm.uid() != euid {
            problems.push(format!(
                "its directory {} is owned by uid {}, not by {}",
                dir.display(),
                dm.uid(),
                who()
            ));
        }
        if dm.mode() & 0o022 != 0 && dm.mode() & libc::S_ISVTX == 0 {
            problems.push(format!(
                "its directory {} is writable by its group or by others and not sticky (mode {:o})",
                dir.display(),
                dm.mode() & 0o7777
            ));
        }
    }
    let source = PolicySource {
        given: abs.to_path_buf(),
        traced,
        uid: md.uid(),
        problems,
    };
    Ok((text, source))
}

/// Why the policy files read may not be the caller's own choice: the trust problems found when
/// they were read, and any file (or symlink or directory on its way) inside a tree the resolved
/// policy lets the sandbox write (workspace, `rw`): the agent could have rewritten it to steer
/// this run. One line per problem, naming the file. Empty when every file is trusted.
///
/// `cwd` is given when no `-w` flag chose the workspace: the current directory, the default
/// workspace, then counts as sandbox-writable too, because a file there may have been written
/// by an earlier run and move this run's workspace away from itself with its own `workspace`
/// key (escaping the check above). Not when it is `/`, `$HOME` or above `$HOME`: a run from
/// there with a trusted file that names its workspace is common, and a sandbox that could
/// write all of `$HOME` could have rewritten any policy file of the caller anyway.
pub fn untrusted(sources: &[PolicySource], p: &Policy, cwd: Option<&Path>) -> Vec<String> {
    // No policy file (the common `run -p PROFILE`): nothing to check, and no canonicalizing
    // of $HOME and the current directory (a readlink per component).
    if sources.is_empty() {
        return Vec::new();
    }
    let mut roots = vec![p.workspace.clone()];
    roots.extend(
        p.binds
            .iter()
            .filter(|b| b.writable)
            .map(|b| b.path.clone()),
    );
    let home = std::env::var_os("HOME").and_then(|h| Path::new(&h).canonicalize().ok());
    let cwd = cwd
        .and_then(|c| c.canonicalize().ok())
        .filter(|c| c != Path::new("/") && !home.as_ref().is_some_and(|h| h.starts_with(c)));
    if let Some(c) = &cwd {
        if !roots.contains(c) {
            roots.push(c.clone());
        }
    }
    // Without a mount namespace and Landlock, the sandbox writes wherever the caller can.
    let fs_confined = p.layers.has(Layer::MountNs) || p.layers.has(Layer::Landlock);
    let sandboxed = p.layers.has(Layer::UserNs);
    let euid = agentcage::geteuid();
    let mut out = Vec::new();
    for s in sources {
        let name = s.given.display();
        let mut inside = None;
        for e in &s.traced.entries {
            if let Some(r) = agentcage::hostfs::writable_root(&e.location, &roots) {
                inside = Some((e, r));
                break;
            }
        }
        if let Some(r) = roots.iter().find(|r| **r == s.traced.real) {
            out.push(format!(
                "{name}: it is bound writable into the sandbox ({})",
                r.display()
            ));
        } else if let Some((e, r)) = inside {
            let what = if e.location == s.traced.real {
                "it lies".to_string()
            } else if e.symlink {
                format!(
                    "it is reached through the symlink {}, which lies",
                    e.location.display()
                )
            } else {
                format!("its directory {} lies", e.location.display())
            };
            let which = if cwd.as_deref() == Some(r) && *r != p.workspace {
                "the current directory: the default workspace, which an earlier run may have \
                 written (pass -w to choose the workspace)"
            } else {
                "which the sandbox can write"
            };
            out.push(format!("{name}: {what} inside {}, {which}", r.display()));
        } else if sandboxed && !fs_confined && s.uid == euid && euid != 0 {
            out.push(format!(
                "{name}: without mount-ns and landlock the sandbox can write every file you own, this one included"
            ));
        }
        for why in &s.problems {
            out.push(format!("{name}: {why}"));
        }
    }
    out
}

/// Parses one file's text (a separate function so unit tests can feed strings).
pub(super) fn parse_doc(src: &Src, stack: &mut Vec<PathBuf>) -> Result<Settings, UsageError> {
    let doc: FileDoc = toml::from_str(src.text).map_err(|e| {
        let msg = e.message().trim().replace('\n', " ");
        let u = match e.span() {
            Some(sp) => src.err(&sp, msg),
            None => UsageError::new(format!("{}: {msg}", src.name)),
        };
        u.hint(KEYS_HINT)
    })?;
    let mut base = Settings::default();
    if let Some(ext) = &doc.extends {
        let v = ext.get_ref();
        let sp = ext.span();
        if let Some(p) = Profile::from_name(v) {
            base.profile = Some(p);
        } else {
            if stack.len() >= MAX_DEPTH {
                return Err(src.err(&sp, format!("extends: chain deeper than {MAX_DEPTH} files")));
            }
            let target = src.path(v, &sp)?;
            let canon = target.canonicalize().unwrap_or_else(|_| target.clone());
            if let Some(i) = stack.iter().position(|s| *s == canon) {
                let cycle: Vec<String> = stack[i..]
                    .iter()
                    .chain(std::iter::once(&canon))
                    .map(|p| p.display().to_string())
                    .collect();
                return Err(src
                    .err(&sp, format!("extends cycle: {}", cycle.join(" -> ")))
                    .hint("remove one `extends` of the cycle"));
            }
            if !target.exists() {
                return Err(src
                    .err(
                        &sp,
                        format!(
                            "extends {v:?}: neither a profile (none, ns-only, landlock, full, nested) nor an existing file ({})",
                            target.display()
                        ),
                    )
                    .hint("a relative path is relative to the file that names it"));
            }
            base = load_inner(&target, &canon.display().to_string(), Base::Real, stack)?;
        }
    }
    let mut s = Settings::default();
    if let Some(p) = &doc.profile {
        s.profile = Some(Profile::from_name(p.get_ref()).ok_or_else(|| {
            src.err(
                &p.span(),
                format!(
                    "unknown profile {:?} (expected none, ns-only, landlock, full or nested)",
                    p.get_ref()
                ),
            )
        })?);
    }
    if let Some(w) = &doc.workspace {
        s.workspace = Some((src.path(w.get_ref(), &w.span())?, src.at(&w.span())));
    }
    for (list, writable) in [(&doc.ro, false), (&doc.rw, true)] {
        for e in list {
            let sp = e.span();
            s.binds.push(BindSetting {
                path: src.path(&e.get_ref().path, &sp)?,
                writable,
                optional: e.get_ref().optional,
                origin: src.at(&sp),
            });
        }
    }
    for (k, v) in &doc.env.0 {
        check_env_name(k.get_ref()).map_err(|m| src.err(&k.span(), m))?;
        if v.contains('\0') {
            return Err(src.err(
                &k.span(),
                format!("env {}: value contains NUL", k.get_ref()),
            ));
        }
        // Like a shell assignment (X=~/y), a value starting with `~/` is a path under $HOME.
        let v = if v == "~" || v.starts_with("~/") {
            expand_tilde(v)
                .map_err(|m| src.err(&k.span(), m))?
                .to_str()
                .map(str::to_string)
                .ok_or_else(|| src.err(&k.span(), "HOME is not UTF-8"))?
        } else {
            v.clone()
        };
        s.env.retain(|(ek, _)| ek != k.get_ref());
        s.env.push((k.get_ref().clone(), v));
    }
    for k in &doc.pass_env {
        check_env_name(k.get_ref()).map_err(|m| src.err(&k.span(), m))?;
        s.pass_env.push(k.get_ref().clone());
    }
    s.uid = doc.uid;
    s.gid = doc.gid;
    s.host_uid = doc.host_uid;
    s.host_gid = doc.host_gid;
    for fd in &doc.keep_fd {
        if *fd.get_ref() < 3 {
            return Err(src.err(&fd.span(), "keep_fd takes fds >= 3 (0-2 are always kept)"));
        }
        s.keep_fd.push(*fd.get_ref());
    }
    s.best_effort = doc.best_effort;
    if let Some(n) = &doc.net {
        s.net = Some(parse_net(n.get_ref()).map_err(|m| src.err(&n.span(), m))?);
    }
    s.seccomp_spec_mitigation = doc.seccomp_spec_mitigation;
    for l in &doc.without {
        s.without
            .push(parse_layer(l.get_ref()).map_err(|m| src.err(&l.span(), m))?);
    }
    s.read_only_workspace = doc.read_only_workspace;
    for b in &doc.bind {
        let (src_p, dst, w) = super::parse_bind(b.get_ref()).map_err(|m| src.err(&b.span(), m))?;
        let src_p = if src_p.is_absolute() {
            src_p
        } else {
            src.dir.join(src_p)
        };
        s.bind.push(((src_p, dst, w), src.at(&b.span())));
    }
    if let Some(c) = &doc.chdir {
        let p = protect_path(c.get_ref()).map_err(|m| src.err(&c.span(), m))?;
        s.chdir = Some((p, src.at(&c.span())));
    }
    if let Some(h) = &doc.home {
        let home = match h.get_ref().as_str() {
            "tmpfs" => None,
            d => Some(src.path(d, &h.span())?),
        };
        s.home = Some((home, src.at(&h.span())));
    }
    for (list, out) in [
        (&doc.protect, &mut s.protect),
        (&doc.unprotect, &mut s.unprotect),
        (&doc.mask, &mut s.mask),
        (&doc.tmpfs, &mut s.tmpfs),
    ] {
        for e in list {
            let sp = e.span();
            let p = protect_path(e.get_ref()).map_err(|m| src.err(&sp, m))?;
            out.push((p, src.at(&sp)));
        }
    }
    if let Some(l) = &doc.limits {
        let units = |v: &Option<Spanned<Scalar>>,
                     f: fn(&str) -> Result<Option<u64>, agentcage::limits::value::ParseError>|
         -> Result<LimitSetting<u64>, UsageError> {
            v.as_ref()
                .map(|x| f(&x.get_ref().0).map_err(|e| src.err(&x.span(), e)))
                .transpose()
        };
        let unitsf = |v: &Option<Spanned<Scalar>>,
                      f: fn(&str) -> Result<Option<f64>, agentcage::limits::value::ParseError>|
         -> Result<LimitSetting<f64>, UsageError> {
            v.as_ref()
                .map(|x| f(&x.get_ref().0).map_err(|e| src.err(&x.span(), e)))
                .transpose()
        };
        use agentcage::limits::value as u;
        s.limits = LimitSettings {
            pids: units(&l.pids, u::parse_pids)?,
            memory: units(&l.memory, u::parse_memory)?,
            cpus: unitsf(&l.cpus, u::parse_cpus)?,
            timeout: unitsf(&l.timeout, u::parse_timeout)?,
            nofile: units(&l.nofile, u::parse_nofile)?,
            fsize: units(&l.fsize, u::parse_fsize)?,
        };
    }
    if let Some(l) = &doc.landlock {
        s.tcp_bind = l.tcp_bind.clone();
        s.tcp_connect = l.tcp_connect.clone();
    }
    if let Some(n) = &doc.network {
        for r in &n.allow {
            let rule = super::parse_allow_host(r.get_ref()).map_err(|m| src.err(&r.span(), m))?;
            s.allow_host.push((rule, src.at(&r.span())));
        }
        if let Some(l) = &n.log {
            s.net_log = Some((src.path(l.get_ref(), &l.span())?, src.at(&l.span())));
        }
        for r in &n.resolve {
            s.net_resolve
                .push(super::parse_net_resolve(r.get_ref()).map_err(|m| src.err(&r.span(), m))?);
        }
        if let Some(d) = &n.dns {
            s.net_dns = Some(super::parse_net_dns(d.get_ref()).map_err(|m| src.err(&d.span(), m))?);
        }
    }
    Ok(base.merge(s))
}
