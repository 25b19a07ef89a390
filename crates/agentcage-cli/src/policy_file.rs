//! Policy files: TOML whose keys mirror the flags of `agentcage run` (see docs/POLICY.md).
//!
//! Three sources of settings meet here, each as a [`Settings`] value in which every knob is
//! optional ("not said"):
//! 1. a policy file, after its `extends` chain (a profile name, or another file relative to
//!    this one) has been loaded and merged underneath it;
//! 2. the command-line flags (built in `run.rs`);
//! 3. the defaults of the profile, applied last by [`build`].
//!
//! [`Settings::merge`] puts one source over another: scalars of the upper one win, lists are
//! extended, `env` and `limits` are merged key by key. [`build`] turns the merged settings
//! into an [`agentcage::Policy`] with the same rules the flags always had (a limit enables the
//! limits layer in any profile; `without` removes layers). [`to_toml`] writes a policy back
//! as a file that [`load`] reads into the same policy (`agentcage policy show` round-trips).
//!
//! Every error is a [`UsageError`] (exit 2) whose message starts with `FILE:LINE:` when it
//! comes from a file: TOML syntax, unknown keys, wrong types, bad values, missing paths.
//! Relative paths resolve against the directory of the file that names them; `~` and `~/`
//! expand to `$HOME`. A path entry written `{ path = "...", optional = true }` is skipped when
//! it does not exist (or cannot be reached), so one file serves machines with and without a
//! given toolchain.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

use agentcage::{ExtraBind, Layer, NetMode, Policy, Profile};
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use toml::Spanned;

/// A user error in flags or a policy file: exit status 2, one line plus an optional hint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageError {
    /// One line, `FILE:LINE: ...` when it comes from a file.
    pub message: String,
    /// What to do about it.
    pub hint: Option<String>,
}

impl UsageError {
    /// An error without a hint.
    pub fn new(message: impl Into<String>) -> UsageError {
        UsageError {
            message: message.into(),
            hint: None,
        }
    }

    /// Adds a hint.
    pub fn hint(mut self, hint: impl Into<String>) -> UsageError {
        self.hint = Some(hint.into());
        self
    }
}

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// A limit as said by a flag or a file key: `Some(None)` is an explicit `max`.
pub type LimitSetting<T> = Option<Option<T>>;

/// The six resource limits.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LimitSettings {
    /// `pids` / `--pids`.
    pub pids: LimitSetting<u64>,
    /// `memory` / `--memory` (bytes).
    pub memory: LimitSetting<u64>,
    /// `cpus` / `--cpus`.
    pub cpus: LimitSetting<f64>,
    /// `timeout` / `--timeout` (seconds).
    pub timeout: LimitSetting<f64>,
    /// `nofile` / `--nofile`.
    pub nofile: LimitSetting<u64>,
    /// `fsize` / `--fsize` (bytes).
    pub fsize: LimitSetting<u64>,
}

impl LimitSettings {
    fn any(&self) -> bool {
        self.pids.is_some()
            || self.memory.is_some()
            || self.cpus.is_some()
            || self.timeout.is_some()
            || self.nofile.is_some()
            || self.fsize.is_some()
    }

    fn merge(self, o: LimitSettings) -> LimitSettings {
        LimitSettings {
            pids: o.pids.or(self.pids),
            memory: o.memory.or(self.memory),
            cpus: o.cpus.or(self.cpus),
            timeout: o.timeout.or(self.timeout),
            nofile: o.nofile.or(self.nofile),
            fsize: o.fsize.or(self.fsize),
        }
    }
}

/// An extra bind as said (absolute, `~` expanded, not yet checked).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindSetting {
    /// Absolute path.
    pub path: PathBuf,
    /// `rw` rather than `ro`.
    pub writable: bool,
    /// Skip it when it does not exist.
    pub optional: bool,
    /// Where it was said (`FILE:LINE` or `--ro`), for errors.
    pub origin: String,
}

/// Every knob of a policy, each optional ("not said"). See the module docs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Settings {
    /// `profile`.
    pub profile: Option<Profile>,
    /// `workspace` (absolute) and where it was said.
    pub workspace: Option<(PathBuf, String)>,
    /// `ro` and `rw`, in the order said.
    pub binds: Vec<BindSetting>,
    /// `env`.
    pub env: Vec<(String, String)>,
    /// `pass_env`.
    pub pass_env: Vec<String>,
    /// `uid`.
    pub uid: Option<u32>,
    /// `gid`.
    pub gid: Option<u32>,
    /// `host_uid`.
    pub host_uid: Option<u32>,
    /// `host_gid`.
    pub host_gid: Option<u32>,
    /// `keep_fd`.
    pub keep_fd: Vec<i32>,
    /// `best_effort`.
    pub best_effort: Option<bool>,
    /// `net`.
    pub net: Option<NetMode>,
    /// `seccomp_spec_mitigation`.
    pub seccomp_spec_mitigation: Option<bool>,
    /// `without`.
    pub without: Vec<Layer>,
    /// `[limits]`.
    pub limits: LimitSettings,
    /// `[landlock] tcp_bind`.
    pub tcp_bind: Vec<u16>,
    /// `[landlock] tcp_connect`.
    pub tcp_connect: Vec<u16>,
    /// `protect`: paths made read-only inside the workspace or an `rw` dir, as said (`~`
    /// expanded; a relative one is relative to the workspace), and where each was said.
    pub protect: Vec<(PathBuf, String)>,
    /// `unprotect`: protected paths (defaults included) left writable, same forms.
    pub unprotect: Vec<(PathBuf, String)>,
    /// The policy files these settings were read from (the `extends` chain included).
    pub sources: Vec<PolicySource>,
}

/// A policy file that was read: where it really is and what may make it untrustworthy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicySource {
    /// The path as named (`--policy` or `extends`), absolute.
    pub given: PathBuf,
    /// Its lookup: the real path and every entry passed through (symlinks included).
    pub traced: agentcage::hostfs::Traced,
    /// Its owner.
    pub uid: u32,
    /// Why someone other than the caller (and root) could have written it: owner, mode, hard
    /// links, directory modes. Found on the fd the file was read from.
    pub problems: Vec<String>,
}

impl Settings {
    /// `over` on top of `self`: its scalars win, lists are appended, `env` and `limits` merge
    /// per key.
    pub fn merge(self, over: Settings) -> Settings {
        let mut env = self.env;
        for (k, v) in over.env {
            env.retain(|(ek, _)| *ek != k);
            env.push((k, v));
        }
        Settings {
            profile: over.profile.or(self.profile),
            workspace: over.workspace.or(self.workspace),
            binds: cat(self.binds, over.binds),
            env,
            pass_env: cat(self.pass_env, over.pass_env),
            uid: over.uid.or(self.uid),
            gid: over.gid.or(self.gid),
            host_uid: over.host_uid.or(self.host_uid),
            host_gid: over.host_gid.or(self.host_gid),
            keep_fd: cat(self.keep_fd, over.keep_fd),
            best_effort: over.best_effort.or(self.best_effort),
            net: over.net.or(self.net),
            seccomp_spec_mitigation: over
                .seccomp_spec_mitigation
                .or(self.seccomp_spec_mitigation),
            without: cat(self.without, over.without),
            limits: self.limits.merge(over.limits),
            tcp_bind: cat(self.tcp_bind, over.tcp_bind),
            tcp_connect: cat(self.tcp_connect, over.tcp_connect),
            protect: cat(self.protect, over.protect),
            unprotect: cat(self.unprotect, over.unprotect),
            sources: cat(self.sources, over.sources),
        }
    }
}

fn cat<T>(mut a: Vec<T>, b: Vec<T>) -> Vec<T> {
    a.extend(b);
    a
}

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
    /// The policy files read (see [`untrusted`]).
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
}

/// The key table of docs/POLICY.md: (key, flag, default, effect). One source of truth: the
/// docs embed [`key_table_markdown`] and a test checks they agree.
pub const KEYS: &[(&str, &str, &str, &str)] = &[
    ("extends", "-", "-", "Start from a profile (`\"full\"`, `\"ns-only\"`, ...) or from another policy file (path relative to this file). Cycles are refused."),
    ("profile", "`--profile`, `-p`", "`\"full\"`", "`none`, `ns-only`, `landlock` or `full`: the layers composed, and the defaults of the keys below."),
    ("workspace", "`--workspace`, `-w`", "the current directory", "Directory bound read-write at its own path; the command starts there."),
    ("ro", "`--ro`", "`[]`", "Host paths visible read-only at the same path. Entries: `\"PATH\"` or `{ path = \"PATH\", optional = true }` (skipped when missing); `*` and `**` components are patterns."),
    ("rw", "`--rw`", "`[]`", "Host paths visible read-write at the same path; entries as for `ro`."),
    ("protect", "`--protect PATH`", "`[]` (the default protected paths always apply)", "Paths made read-only inside the workspace or an `rw` path, on top of the defaults (see \"Default protected paths\" above). Relative to the workspace (not to the file), or absolute inside the workspace or an `rw` path; `*` and `**` components are patterns. A literal path must exist."),
    ("unprotect", "`--unprotect PATH`", "`[]`", "Protected paths (defaults or `protect`) left writable; same forms as `protect`, matched as written (`.vscode`, `.git/modules/**/hooks`) or as an expanded path."),
    ("env", "`--env K=V`, `-e`", "`{}`", "Table of variables set inside (`K = \"V\"`); a value starting with `~/` is expanded like a shell assignment."),
    ("pass_env", "`--pass-env K`", "`[]`", "Variables of the caller's environment passed through."),
    ("uid", "`--uid`", "`0`", "uid inside the sandbox (0 is root in the user namespace only)."),
    ("gid", "`--gid`", "`0`", "gid inside the sandbox."),
    ("host_uid", "`--host-uid`", "`65534`", "When the launcher runs as root: the host uid the inside maps to (never 0)."),
    ("host_gid", "`--host-gid`", "`65534`", "When the launcher runs as root: the host gid the inside maps to (never 0)."),
    ("keep_fd", "`--keep-fd N`", "`[]`", "Inherited fds (>= 3) passed to the command; 0-2 always are."),
    ("best_effort", "`--best-effort`", "`false`", "Run even when a primitive of the profile cannot be enforced here (what is missing is printed)."),
    ("net", "`--net`", "`\"none\"`", "`none`: own network namespace, loopback only. `host`: the host's network, with a loud warning."),
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
    limits: Option<FileLimits>,
    landlock: Option<FileLandlock>,
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
fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

/// Positions in one file, for messages.
struct Src<'a> {
    name: String,
    text: &'a str,
    dir: PathBuf,
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

/// `~` and `~/...` become `$HOME` and `$HOME/...`; other paths are returned as they are.
pub fn expand_tilde(s: &str) -> Result<PathBuf, String> {
    if s == "~" || s.starts_with("~/") {
        let home = std::env::var_os("HOME")
            .filter(|h| !h.is_empty())
            .ok_or_else(|| format!("{s}: cannot expand ~: HOME is not set"))?;
        let mut p = PathBuf::from(home);
        if let Some(rest) = s.strip_prefix("~/") {
            p.push(rest);
        }
        Ok(p)
    } else if s.starts_with('~') {
        Err(format!(
            "{s}: only ~ and ~/ are expanded (not ~user); write the full path"
        ))
    } else {
        Ok(PathBuf::from(s))
    }
}

/// Makes `p` absolute against `base` (without touching the filesystem).
pub fn absolute(p: &Path, base: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
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
    let euid = agentcage::sys::geteuid();
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
    let euid = agentcage::sys::geteuid();
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
fn parse_doc(src: &Src, stack: &mut Vec<PathBuf>) -> Result<Settings, UsageError> {
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
                            "extends {v:?}: neither a profile (none, ns-only, landlock, full) nor an existing file ({})",
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
                    "unknown profile {:?} (expected none, ns-only, landlock or full)",
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
    for (list, out) in [
        (&doc.protect, &mut s.protect),
        (&doc.unprotect, &mut s.unprotect),
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
    Ok(base.merge(s))
}

/// Checks an environment variable name.
pub fn check_env_name(k: &str) -> Result<(), String> {
    if k.is_empty() || k.contains('=') || k.contains('\0') {
        Err(format!("invalid environment variable name {k:?}"))
    } else {
        Ok(())
    }
}

/// Parses a `net` value.
pub fn parse_net(s: &str) -> Result<NetMode, String> {
    match s {
        "none" => Ok(NetMode::None),
        "host" => Ok(NetMode::Host),
        _ => Err(format!(
            "unknown network mode {s:?} (expected none or host)"
        )),
    }
}

/// Parses a layer name (`without`).
pub fn parse_layer(s: &str) -> Result<Layer, String> {
    Layer::from_name(s).ok_or_else(|| {
        let names: Vec<&str> = Layer::ALL.iter().map(|l| l.name()).collect();
        format!("unknown layer {s:?} (expected one of {})", names.join(", "))
    })
}

// ---------------------------------------------------------------------------------------------
// Settings -> Policy.

fn canonical(p: &Path, what: &str, origin: &str) -> Result<PathBuf, UsageError> {
    p.canonicalize().map_err(|e| {
        UsageError::new(format!("{origin}: {what} {}: {e}", p.display()))
            .hint("create it, fix the path, or mark a policy file entry { path = \"...\", optional = true }")
    })
}

fn dedup<T: PartialEq + Clone>(v: &[T]) -> Vec<T> {
    let mut out: Vec<T> = Vec::new();
    for x in v {
        if !out.contains(x) {
            out.push(x.clone());
        }
    }
    out
}

/// Whether `uid`/`gid` (no supplementary groups, no capabilities) can look up `path`: every
/// ancestor directory grants it search permission by its mode bits. ACLs are not consulted:
/// this only decides whether an optional entry is skipped.
fn reachable(path: &Path, uid: u32, gid: u32) -> bool {
    use std::os::unix::fs::MetadataExt;
    path.ancestors()
        .skip(1)
        .all(|dir| match std::fs::metadata(dir) {
            Ok(m) => {
                let mode = m.mode();
                let bit = if m.uid() == uid {
                    0o100
                } else if m.gid() == gid {
                    0o010
                } else {
                    0o001
                };
                mode & bit != 0
            }
            Err(_) => false,
        })
}

/// Bounds of the expansion of one path pattern.
const PATTERN_MAX_ENTRIES: usize = 100_000;
const PATTERN_MAX_DEPTH: usize = 32;

/// Expands the bind entries whose path has a `*` (any name) or `**` (any number of
/// directories) component into one entry per existing match, in order, symlinks not
/// followed (e.g. `./.git/modules/**/hooks` protects the hooks of every submodule, nested
/// ones too). A pattern that matches nothing is dropped when optional, an error otherwise; a
/// pattern whose walk hits its bound is an error (what it would protect is unknown).
fn expand_patterns(binds: &[BindSetting]) -> Result<Vec<BindSetting>, UsageError> {
    let mut out = Vec::new();
    for b in binds {
        let is_pattern = b
            .path
            .components()
            .any(|c| c.as_os_str().as_encoded_bytes().contains(&b'*'));
        if !is_pattern {
            out.push(b.clone());
            continue;
        }
        let comps: Vec<&std::ffi::OsStr> =
            b.path.components().skip(1).map(|c| c.as_os_str()).collect();
        let mut found = Vec::new();
        let mut budget = PATTERN_MAX_ENTRIES;
        if let Err(why) = walk_pattern(Path::new("/"), &comps, 0, &mut budget, &mut found) {
            return Err(UsageError::new(format!(
                "{}: {}: cannot expand the pattern ({why}): what it names is unknown and could \
                 not be protected",
                b.origin,
                b.path.display()
            ))
            .hint(if b.origin.starts_with(DEFAULT_ORIGIN) {
                "the sandbox may have changed the permissions: restore them (e.g. chmod u+rwx) \
                 and run again, or leave these paths writable with --unprotect and the pattern \
                 as written"
            } else {
                "fix the permissions, or name the paths without a pattern"
            }));
        }
        if found.is_empty() && !b.optional {
            return Err(UsageError::new(format!(
                "{}: {} matches nothing",
                b.origin,
                b.path.display()
            ))
            .hint("mark the entry { path = \"...\", optional = true }"));
        }
        found.sort();
        found.dedup();
        out.extend(
            found
                .into_iter()
                .map(|path| BindSetting { path, ..b.clone() }),
        );
    }
    Ok(out)
}

/// `*` in `pat` matches any run of characters (a leading `.` included).
fn name_matches(pat: &[u8], name: &[u8]) -> bool {
    match pat.iter().position(|&c| c == b'*') {
        None => pat == name,
        Some(i) => {
            let (head, tail) = (&pat[..i], &pat[i + 1..]);
            name.starts_with(head)
                && (head.len()..=name.len()).any(|j| name_matches(tail, &name[j..]))
        }
    }
}

/// Matches `comps` below `dir` into `found`. A missing directory is no match; an unreadable
/// one, or a walk that hits its bound, is an error (a match there could not be protected).
fn walk_pattern(
    dir: &Path,
    comps: &[&std::ffi::OsStr],
    depth: usize,
    budget: &mut usize,
    found: &mut Vec<PathBuf>,
) -> Result<(), String> {
    let Some((first, rest)) = comps.split_first() else {
        found.push(dir.to_path_buf());
        return Ok(());
    };
    let pat = first.as_encoded_bytes();
    if !pat.contains(&b'*') {
        let next = dir.join(first);
        // A literal last component is left to the caller's checks (it may be a file, or a
        // symlink `resolve_protected` must refuse); a literal directory must be one.
        // Before the pattern, a symlinked directory (/home -> /usr/home) is followed; one the
        // sandbox planted below a writable root is refused later, by `resolve_protected`.
        let md = if rest.is_empty() {
            std::fs::symlink_metadata(&next)
        } else {
            std::fs::metadata(&next)
        };
        return match md {
            Ok(m) if rest.is_empty() || m.is_dir() => {
                walk_pattern(&next, rest, depth, budget, found)
            }
            Ok(_) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(format!("{}: {e}", next.display())),
        };
    }
    if depth >= PATTERN_MAX_DEPTH {
        return Err(format!("deeper than {PATTERN_MAX_DEPTH} directories"));
    }
    if pat == b"**" {
        walk_pattern(dir, rest, depth, budget, found)?;
    }
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e)
            if e.kind() == std::io::ErrorKind::NotFound
                || e.raw_os_error() == Some(libc::ENOTDIR) =>
        {
            return Ok(())
        }
        Err(e) => return Err(format!("{}: {e}", dir.display())),
    };
    for e in rd {
        let e = e.map_err(|e| format!("{}: {e}", dir.display()))?;
        if *budget == 0 {
            return Err(format!("more than {PATTERN_MAX_ENTRIES} entries"));
        }
        *budget -= 1;
        let is_dir = e.file_type().is_ok_and(|t| t.is_dir());
        if pat == b"**" {
            if is_dir {
                walk_pattern(&e.path(), comps, depth + 1, budget, found)?;
            }
        } else if name_matches(pat, e.file_name().as_encoded_bytes()) && (rest.is_empty() || is_dir)
        {
            walk_pattern(&e.path(), rest, depth + 1, budget, found)?;
        }
    }
    Ok(())
}

/// What [`resolve_protected`] found.
enum Protected {
    /// Not below a writable root: resolved as usual.
    No,
    /// Below a writable root, and safe to bind: its canonical path.
    Yes(PathBuf),
    /// Below a writable root, and it does not exist (an optional entry may be skipped).
    Missing(std::io::Error),
    /// Below a writable root, and it cannot be bound safely: why, and the hint.
    Refused(String, String),
}

/// Resolves a bind path that may lie below a writable root (the workspace or an `rw` bind),
/// i.e. in a place the sandbox could have prepared in a previous run (issue #10, finding 3).
/// Component by component: every symlink is followed as usual until the path is below a
/// writable root; from there on a symlink is refused (a planted `.git/hooks -> ~/.ssh` must
/// not bind `~/.ssh` into the next run), and so is a component whose existence cannot be
/// determined (a sandbox that ran `chmod 000 .git` must not make `optional` entries skip
/// silently). As root, the sandbox's host uid must also be able to reach it.
fn resolve_protected(
    path: &Path,
    writable_roots: &[PathBuf],
    sandbox_host_ids: Option<(u32, u32)>,
) -> Protected {
    use std::path::Component;
    let below = |p: &Path| writable_roots.iter().any(|r| p.starts_with(r) && p != r);
    let mut cur = PathBuf::from("/");
    let mut hops = 0;
    let mut todo: Vec<std::ffi::OsString> = path
        .components()
        .rev()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some("..".into()),
            _ => None,
        })
        .collect();
    while let Some(c) = todo.pop() {
        if c == ".." {
            cur.pop();
            continue;
        }
        let next = cur.join(&c);
        let protected = below(&next);
        match std::fs::symlink_metadata(&next) {
            Ok(md) if md.file_type().is_symlink() => {
                if protected {
                    return Protected::Refused(
                        format!(
                            "{} is a symlink inside a directory the sandbox can write (it may \
                             have planted it): refusing to follow it",
                            next.display()
                        ),
                        format!(
                            "look at it (ls -l {}); remove it, or name the real path",
                            next.display()
                        ),
                    );
                }
                hops += 1;
                match std::fs::read_link(&next) {
                    Ok(t) if hops < 40 => {
                        if t.is_absolute() {
                            cur = PathBuf::from("/");
                        }
                        let mut more: Vec<std::ffi::OsString> = t
                            .components()
                            .rev()
                            .filter_map(|c| match c {
                                Component::Normal(n) => Some(n.to_os_string()),
                                Component::ParentDir => Some("..".into()),
                                _ => None,
                            })
                            .collect();
                        todo.append(&mut more);
                    }
                    _ => return Protected::No,
                }
            }
            Ok(_) => cur = next,
            // ENOTDIR: a parent is a file (`.git` of a worktree): the path cannot exist.
            Err(e)
                if protected
                    && (e.kind() == std::io::ErrorKind::NotFound
                        || e.raw_os_error() == Some(libc::ENOTDIR)) =>
            {
                return Protected::Missing(e);
            }
            Err(e) if protected => {
                return Protected::Refused(
                    format!(
                        "{} is inside a directory the sandbox can write, and whether it exists \
                         cannot be determined ({e}): it could not be protected",
                        next.display()
                    ),
                    format!(
                        "the sandbox may have changed its permissions: look at {} (ls -ld), \
                         restore them (e.g. chmod u+rwx) and run again",
                        cur.display()
                    ),
                );
            }
            Err(_) => return Protected::No,
        }
    }
    if !below(&cur) {
        return Protected::No;
    }
    // Only a directory or a regular file of one name: a FIFO planted as `.git/config` hangs
    // the user's git; a second hard link in the workspace would be a writable name for it.
    if let Ok(md) = std::fs::symlink_metadata(&cur) {
        use std::os::unix::fs::MetadataExt;
        let why = if !md.is_dir() && !md.is_file() {
            Some("is neither a directory nor a regular file".to_string())
        } else if md.is_file() && md.nlink() > 1 {
            Some(format!(
                "has {} hard links: another name for it may be writable in the sandbox",
                md.nlink()
            ))
        } else {
            None
        };
        if let Some(why) = why {
            return Protected::Refused(
                format!("{} {why} (the sandbox may have planted it)", cur.display()),
                format!(
                    "look at it (ls -li {}), replace it and run again",
                    cur.display()
                ),
            );
        }
    }
    if let Some((u, g)) = sandbox_host_ids {
        if !reachable(&cur, u, g) {
            return Protected::Refused(
                format!(
                    "it is inside a directory the sandbox can write, and host uid {u} (the \
                     sandbox's uid on the host) cannot reach it: it could not be protected"
                ),
                format!(
                    "the sandbox may have changed the permissions of a parent directory: look at \
                     them (namei -l {}), restore them and run again",
                    cur.display()
                ),
            );
        }
    }
    Protected::Yes(cur)
}

/// The default protected paths (issue #15), relative to the workspace and to every `rw`
/// directory that is a git repository (has `.git`): what runs code later, outside the
/// sandbox, when the user runs git, enters the directory (direnv) or opens it in an editor or
/// an agent (tasks, hooks, MCP servers). Made read-only inside by the same machinery as any
/// protected path (ancestors pinned, symlinks refused); what does not exist at start stays
/// creatable (see docs/SECURITY.md, "Protected paths").
pub const DEFAULT_PROTECTED: &[&str] = &[
    ".git/hooks",
    ".git/config",
    ".git/info",
    ".gitmodules",
    ".envrc",
    ".vscode",
    ".idea",
    ".devcontainer",
    ".claude",
    ".codex",
    ".cursor",
    ".gemini",
    ".mcp.json",
    ".git/modules/**/hooks",
    ".git/modules/**/config",
    ".git/modules/**/info",
];

/// The prefix of the default protected paths of every submodule (see [`submodule_gitdirs`]).
const SUBMODULES: &str = ".git/modules/**/";

/// The git directories of the submodules of the repository at `root`, nested ones included:
/// the directories below `.git/modules` that have a `HEAD` (a submodule named `a/b` lives in
/// `.git/modules/a/b`, a nested one in `.git/modules/a/modules/c`). Symlinks are not followed
/// (a planted one is refused later, if it is a protected path), git's own bulky directories
/// (`objects`, `refs`, `logs`, `lfs`) are not read, and the walk is bounded like a pattern's.
/// An unreadable directory is an error: what it holds could not be protected.
fn submodule_gitdirs(root: &Path) -> Result<Vec<PathBuf>, String> {
    let mut out = Vec::new();
    let mut budget = PATTERN_MAX_ENTRIES;
    let mut stack = vec![(root.join(".git/modules"), 0usize)];
    while let Some((dir, depth)) = stack.pop() {
        let rd = match std::fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e)
                if e.kind() == std::io::ErrorKind::NotFound
                    || e.raw_os_error() == Some(libc::ENOTDIR) =>
            {
                continue
            }
            Err(e) => return Err(format!("{}: {e}", dir.display())),
        };
        for e in rd {
            let e = e.map_err(|e| format!("{}: {e}", dir.display()))?;
            if budget == 0 {
                return Err(format!("more than {PATTERN_MAX_ENTRIES} entries"));
            }
            budget -= 1;
            if !e.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let name = e.file_name();
            if matches!(
                name.as_encoded_bytes(),
                b"objects" | b"refs" | b"logs" | b"lfs"
            ) {
                continue;
            }
            if depth + 1 >= PATTERN_MAX_DEPTH {
                return Err(format!("deeper than {PATTERN_MAX_DEPTH} directories"));
            }
            let p = e.path();
            if std::fs::symlink_metadata(p.join("HEAD")).is_ok() {
                out.push(p.clone());
            }
            stack.push((p, depth + 1));
        }
    }
    out.sort();
    Ok(out)
}

/// Where a default protected path comes from, in messages.
const DEFAULT_ORIGIN: &str = "default protected path";

/// A `protect`/`unprotect` path as said: `~` expanded, relative ones kept relative (to the
/// workspace, resolved by [`build`]), no `..` (it must stay below the workspace).
pub fn protect_path(s: &str) -> Result<PathBuf, String> {
    if s.is_empty() {
        return Err("empty path".into());
    }
    let p = expand_tilde(s)?;
    if p.components().any(|c| c == std::path::Component::ParentDir) {
        return Err(format!(
            "{s}: `..` is not allowed in a protected path (name it from the workspace, or absolute)"
        ));
    }
    Ok(p)
}

/// Which list a bind entry of [`build`] comes from.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// `ro` / `rw`.
    Bind,
    /// [`DEFAULT_PROTECTED`].
    Default,
    /// `protect`.
    Protect,
}

fn is_pattern(p: &Path) -> bool {
    p.components()
        .any(|c| c.as_os_str().as_encoded_bytes().contains(&b'*'))
}

/// The default protected paths (in the workspace and every writable root with a `.git`) and
/// the `protect` entries, patterns expanded, `unprotect` removed (matched as written or as
/// expanded). An `unprotect` that matches nothing is an error (a typo would leave the path
/// protected while the user believes otherwise, or the reverse). Without a mount namespace
/// there is nothing to protect with: no defaults, and a `protect` entry is an error.
fn protected_settings(
    s: &Settings,
    ws: &Path,
    writable_roots: &[PathBuf],
    unprotect: &[PathBuf],
    mount_ns: bool,
) -> Result<(Vec<BindSetting>, Vec<BindSetting>), UsageError> {
    if !mount_ns {
        if let Some((path, origin)) = s.protect.first() {
            return Err(UsageError::new(format!(
                "{origin}: protect {}: protected paths need a mount namespace (a read-only bind \
                 is what protects them), and this policy has none",
                path.display()
            ))
            .hint(
                "use a profile with a mount namespace (ns-only, landlock, full), or drop the entry",
            ));
        }
        return Ok((Vec::new(), Vec::new()));
    }
    let mut roots = vec![ws.to_path_buf()];
    for r in writable_roots {
        if !roots.contains(r) && std::fs::symlink_metadata(r.join(".git")).is_ok() {
            roots.push(r.clone());
        }
    }
    let mut defaults = Vec::new();
    for r in &roots {
        let mut gitdirs = None;
        for d in DEFAULT_PROTECTED {
            let origin = format!("{DEFAULT_ORIGIN} {d}");
            let setting = |path| BindSetting {
                path,
                writable: false,
                optional: true,
                origin: origin.clone(),
            };
            match d.strip_prefix(SUBMODULES) {
                // The submodules' git directories are found by their HEAD, not by the generic
                // `**` walk, which would read every object directory (and hit its bound in a
                // big repository).
                Some(leaf) => {
                    if unprotect.contains(&r.join(d)) {
                        defaults.push(setting(r.join(d)));
                        continue;
                    }
                    if gitdirs.is_none() {
                        gitdirs = Some(submodule_gitdirs(r).map_err(|why| {
                            UsageError::new(format!(
                                "{origin}: cannot list the submodules of {} ({why}): their \
                                 hooks and config could not be protected",
                                r.display()
                            ))
                            .hint(
                                "the sandbox may have changed the permissions: restore them \
                                 (e.g. chmod u+rwx) and run again, or leave them writable with \
                                 --unprotect and the pattern as written",
                            )
                        })?);
                    }
                    for g in gitdirs.iter().flatten() {
                        defaults.push(setting(g.join(leaf)));
                    }
                }
                None => defaults.push(setting(r.join(d))),
            }
        }
    }
    let mut protect: Vec<BindSetting> = s
        .protect
        .iter()
        .map(|(path, origin)| {
            let path = absolute(path, ws);
            if path
                .components()
                .any(|c| c == std::path::Component::ParentDir)
            {
                return Err(UsageError::new(format!(
                    "{origin}: protect {}: `..` is not allowed in a protected path",
                    path.display()
                )));
            }
            Ok(BindSetting {
                optional: is_pattern(&path),
                path,
                writable: false,
                origin: origin.clone(),
            })
        })
        .collect::<Result<_, UsageError>>()?;
    let mut used = vec![false; unprotect.len()];
    let mut keep = |b: &BindSetting| match unprotect.iter().position(|u| *u == b.path) {
        Some(i) => {
            used[i] = true;
            false
        }
        None => true,
    };
    defaults.retain(&mut keep);
    protect.retain(&mut keep);
    let mut defaults = expand_patterns(&defaults)?;
    let mut protect = expand_patterns(&protect)?;
    defaults.retain(&mut keep);
    protect.retain(&mut keep);
    if let Some(i) = used.iter().position(|u| !u) {
        let (_, origin) = &s.unprotect[i];
        return Err(UsageError::new(format!(
            "{origin}: unprotect {}: not a protected path here",
            unprotect[i].display()
        ))
        .hint(format!(
            "unprotect takes a default protected path ({}) or a `protect` entry, as written or \
             as a path it expands to, relative to the workspace",
            DEFAULT_PROTECTED.join(", ")
        )));
    }
    Ok((defaults, protect))
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
    let as_root = agentcage::sys::geteuid() == 0;
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
    let expanded = expand_patterns(&s.binds)?;
    // What the sandbox can write: a bind below one of these is a protected path (see
    // `resolve_protected`).
    let mut writable_roots = vec![p.workspace.clone()];
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
        .map(|(path, writable)| ExtraBind { path, writable })
        .collect();
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
    p.net = s.net.unwrap_or_default();
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
    })
}

// ---------------------------------------------------------------------------------------------
// Policy -> TOML.

fn path_str(p: &Path) -> Result<String, UsageError> {
    p.to_str().map(str::to_string).ok_or_else(|| {
        UsageError::new(format!(
            "{}: not UTF-8, cannot be written to a policy file",
            p.display()
        ))
    })
}

fn size_value(
    v: Option<u64>,
    parse: fn(&str) -> Result<Option<u64>, agentcage::limits::value::ParseError>,
) -> toml::Value {
    match v {
        None => toml::Value::String("max".into()),
        Some(b) => {
            let human = agentcage::limits::value::format_size(b);
            if parse(&human).ok() == Some(Some(b)) {
                toml::Value::String(human)
            } else {
                toml::Value::Integer(i64::try_from(b).unwrap_or(i64::MAX))
            }
        }
    }
}

fn count_value(v: Option<u64>) -> toml::Value {
    match v.and_then(|n| i64::try_from(n).ok()) {
        Some(n) => toml::Value::Integer(n),
        None => toml::Value::String(v.map_or("max".into(), |n| n.to_string())),
    }
}

type FloatParser = fn(&str) -> Result<Option<f64>, agentcage::limits::value::ParseError>;

/// A float limit written so that `parse` reads it back as exactly `v`: a TOML float when its
/// shortest form parses back (the file reader hands floats to `parse` in that form), else the
/// shortest fixed-point string that does.
fn float_value(v: Option<f64>, parse: FloatParser) -> toml::Value {
    let Some(x) = v else {
        return toml::Value::String("max".into());
    };
    if parse(&x.to_string()).ok() == Some(Some(x)) {
        return toml::Value::Float(x);
    }
    (0..=12)
        .map(|digits| format!("{x:.digits$}"))
        .find(|s| parse(s).ok() == Some(Some(x)))
        .map_or(toml::Value::Float(x), toml::Value::String)
}

/// The policy as a TOML table with the keys of a policy file: every key explicit, so reading
/// it back (on this host) gives the same policy.
pub fn to_table(
    p: &Policy,
    protect: &[PathBuf],
    unprotect: &[PathBuf],
) -> Result<toml::Table, UsageError> {
    use toml::Value as V;
    let mut t = toml::Table::new();
    let strs = |v: Vec<String>| V::Array(v.into_iter().map(V::String).collect());
    t.insert("profile".into(), V::String(p.profile.name().into()));
    t.insert("workspace".into(), V::String(path_str(&p.workspace)?));
    // The binds of `protect` entries are written as `protect` (relative to the workspace when
    // inside it), which reads back the same; `ro` entries stay `ro`, defaults are implied.
    let protected = |b: &ExtraBind| !b.writable && protect.contains(&b.path);
    let rel = |path: &Path| -> Result<String, UsageError> {
        path_str(path.strip_prefix(&p.workspace).unwrap_or(path))
    };
    for writable in [false, true] {
        let list = p
            .binds
            .iter()
            .filter(|b| b.writable == writable && !protected(b))
            .map(|b| path_str(&b.path))
            .collect::<Result<Vec<_>, _>>()?;
        t.insert(if writable { "rw" } else { "ro" }.into(), strs(list));
    }
    let list = p
        .binds
        .iter()
        .filter(|b| protected(b))
        .map(|b| rel(&b.path))
        .collect::<Result<Vec<_>, _>>()?;
    t.insert("protect".into(), strs(list));
    let list = unprotect
        .iter()
        .map(|u| rel(u))
        .collect::<Result<Vec<_>, _>>()?;
    t.insert("unprotect".into(), strs(list));
    t.insert("pass_env".into(), strs(p.pass_env.clone()));
    for (k, v) in [
        ("uid", p.uid),
        ("gid", p.gid),
        ("host_uid", p.host_uid),
        ("host_gid", p.host_gid),
    ] {
        t.insert(k.into(), V::Integer(i64::from(v)));
    }
    t.insert(
        "keep_fd".into(),
        V::Array(
            p.keep_fds
                .iter()
                .map(|f| V::Integer(i64::from(*f)))
                .collect(),
        ),
    );
    t.insert("best_effort".into(), V::Boolean(p.best_effort));
    t.insert(
        "net".into(),
        V::String(match p.net {
            NetMode::None => "none".into(),
            NetMode::Host => "host".into(),
        }),
    );
    t.insert(
        "seccomp_spec_mitigation".into(),
        V::Boolean(p.seccomp.spec_mitigation),
    );
    let l = &p.limits;
    let any = l.pids.is_some()
        || l.memory.is_some()
        || l.cpus.is_some()
        || l.timeout.is_some()
        || l.nofile.is_some()
        || l.fsize.is_some();
    let base = p.profile.layers();
    let mut without: Vec<String> = base
        .iter()
        .filter(|l| !p.layers.has(*l))
        .map(|l| l.name().to_string())
        .collect();
    // A [limits] table turns the limits layer on in any profile: say when it stays off.
    if any && !base.has(Layer::Limits) && !p.layers.has(Layer::Limits) {
        without.push(Layer::Limits.name().to_string());
    }
    t.insert("without".into(), strs(without));
    let mut env = toml::Table::new();
    for (k, v) in &p.env {
        env.insert(k.clone(), V::String(v.clone()));
    }
    t.insert("env".into(), V::Table(env));
    if p.layers.has(Layer::Limits) || any {
        use agentcage::limits::value as u;
        let mut lt = toml::Table::new();
        lt.insert("pids".into(), count_value(l.pids));
        lt.insert("memory".into(), size_value(l.memory, u::parse_memory));
        lt.insert("cpus".into(), float_value(l.cpus, u::parse_cpus));
        lt.insert("timeout".into(), float_value(l.timeout, u::parse_timeout));
        lt.insert("nofile".into(), count_value(l.nofile));
        lt.insert("fsize".into(), size_value(l.fsize, u::parse_fsize));
        t.insert("limits".into(), V::Table(lt));
    }
    let ports = |v: &[u16]| V::Array(v.iter().map(|x| V::Integer(i64::from(*x))).collect());
    let mut ll = toml::Table::new();
    ll.insert("tcp_bind".into(), ports(&p.landlock.tcp_bind));
    ll.insert("tcp_connect".into(), ports(&p.landlock.tcp_connect));
    t.insert("landlock".into(), V::Table(ll));
    Ok(t)
}

/// The policy as the text of a policy file (see [`to_table`]).
pub fn to_toml(
    p: &Policy,
    protect: &[PathBuf],
    unprotect: &[PathBuf],
) -> Result<String, UsageError> {
    toml::to_string(&to_table(p, protect, unprotect)?)
        .map_err(|e| UsageError::new(format!("write TOML: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_expand_without_following_symlinks() {
        let d = tmpdir("pat");
        for x in [
            ".git/modules/a/hooks",
            ".git/modules/a/modules/b/hooks",
            ".git/modules/c",
        ] {
            std::fs::create_dir_all(d.join(x)).unwrap();
        }
        std::fs::write(d.join(".git/modules/a/config"), "").unwrap();
        // A symlinked directory is not walked into: nothing below it matches.
        std::os::unix::fs::symlink(d.join(".git/modules/a"), d.join(".git/modules/l")).unwrap();
        let b = |p: &str, optional: bool| BindSetting {
            path: d.join(p),
            writable: false,
            optional,
            origin: "t".into(),
        };
        let out = expand_patterns(&[
            b(".git/modules/**/hooks", false),
            b(".git/modules/*/config", true),
        ])
        .unwrap();
        let got: Vec<PathBuf> = out.iter().map(|b| b.path.clone()).collect();
        assert_eq!(
            got,
            vec![
                d.join(".git/modules/a/hooks"),
                d.join(".git/modules/a/modules/b/hooks"),
                d.join(".git/modules/a/config"),
            ]
        );
        assert!(name_matches(b"*.toml", b"a.toml") && !name_matches(b"*.toml", b"a.tom"));
        assert!(name_matches(b"h*k*s", b"hooks") && name_matches(b"*", b".git"));
        // Nothing matches: dropped when optional, an error otherwise.
        assert!(expand_patterns(&[b("nope/**/hooks", true)])
            .unwrap()
            .is_empty());
        assert!(expand_patterns(&[b("nope/**/hooks", false)]).is_err());
        let _ = std::fs::remove_dir_all(&d);
    }

    fn tmpdir(tag: &str) -> PathBuf {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let d = std::env::temp_dir().join(format!("agentcage-pf-{tag}-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d.canonicalize().unwrap()
    }

    fn parse(text: &str) -> Result<Settings, UsageError> {
        let src = Src {
            name: "p.toml".into(),
            text,
            dir: PathBuf::from("/base"),
        };
        parse_doc(&src, &mut Vec::new())
    }

    #[test]
    fn line_numbers() {
        assert_eq!(line_of("a\nb\nc", 0), 1);
        assert_eq!(line_of("a\nb\nc", 2), 2);
        assert_eq!(line_of("a\nb\nc", 4), 3);
        assert_eq!(line_of("a", 99), 1);
    }

    #[test]
    fn unknown_key_has_line() {
        let e = parse("profile = \"full\"\n\nbogus = 1\n").unwrap_err();
        assert!(e.message.starts_with("p.toml:3: "), "{}", e.message);
        assert!(e.message.contains("bogus"), "{}", e.message);
    }

    #[test]
    fn unknown_key_in_section_has_line() {
        let e = parse("[limits]\npids = 5\nmemroy = \"1G\"\n").unwrap_err();
        assert!(e.message.starts_with("p.toml:3: "), "{}", e.message);
    }

    #[test]
    fn wrong_types_have_lines() {
        for (text, line) in [
            ("uid = \"zero\"\n", 1),
            ("\nbest_effort = 1\n", 2),
            ("ro = [\"/a\",\n  3]\n", 2),
            ("[env]\nA = \"x\"\nB = 2\n", 3),
            ("keep_fd = [-1]\n", 1),
            ("\n\n[landlock]\ntcp_bind = [70000]\n", 4),
            ("ro = [{ path = \"/a\", optionl = true }]\n", 1),
        ] {
            let e = parse(text).unwrap_err();
            assert!(
                e.message.starts_with(&format!("p.toml:{line}: ")),
                "{text:?}: {}",
                e.message
            );
        }
    }

    #[test]
    fn bad_values_have_lines() {
        for (text, line, needle) in [
            ("profile = \"fullest\"\n", 1, "unknown profile"),
            ("\nnet = \"bridge\"\n", 2, "network mode"),
            ("[limits]\n\nmemory = \"12Q\"\n", 3, "memory"),
            ("[limits]\ncpus = -1\n", 2, ""),
            ("without = [\"nope\"]\n", 1, "unknown layer"),
            ("ro = [\"~bob/x\"]\n", 1, "~user"),
            ("syntax error\n", 1, ""),
        ] {
            let e = parse(text).unwrap_err();
            assert!(
                e.message.starts_with(&format!("p.toml:{line}: ")) && e.message.contains(needle),
                "{text:?}: {}",
                e.message
            );
            assert!(!e.message.contains('\n'), "one line: {:?}", e.message);
        }
    }

    #[test]
    fn values_parse() {
        let s = parse(
            "profile = \"ns_only\"\nworkspace = \"ws\"\nro = [\"/abs\", { path = \"rel\", optional = true }]\n\
             rw = [\"~/x\"]\npass_env = [\"TERM\"]\nuid = 1000\nnet = \"host\"\nkeep_fd = [3, 4]\n\
             [env]\nB = \"1\"\nA = \"2\"\n[limits]\npids = 10\nmemory = \"1G\"\ncpus = 1.5\ntimeout = \"2m\"\nnofile = \"max\"\n\
             [landlock]\ntcp_connect = [443]\n",
        )
        .unwrap();
        assert_eq!(s.profile, Some(Profile::NsOnly));
        assert_eq!(s.workspace.as_ref().unwrap().0, PathBuf::from("/base/ws"));
        assert_eq!(s.binds[0].path, PathBuf::from("/abs"));
        assert!(!s.binds[0].optional);
        assert_eq!(s.binds[1].path, PathBuf::from("/base/rel"));
        assert!(s.binds[1].optional);
        assert!(s.binds[2].writable);
        if let Some(h) = std::env::var_os("HOME").filter(|h| !h.is_empty()) {
            assert_eq!(s.binds[2].path, PathBuf::from(h).join("x"));
        }
        assert_eq!(
            s.env,
            vec![("B".into(), "1".into()), ("A".into(), "2".into())]
        );
        assert_eq!(s.uid, Some(1000));
        assert_eq!(s.net, Some(NetMode::Host));
        assert_eq!(s.keep_fd, vec![3, 4]);
        assert_eq!(s.limits.pids, Some(Some(10)));
        assert_eq!(s.limits.memory, Some(Some(1 << 30)));
        assert_eq!(s.limits.cpus, Some(Some(1.5)));
        assert_eq!(s.limits.timeout, Some(Some(120.0)));
        assert_eq!(s.limits.nofile, Some(None));
        assert_eq!(s.limits.fsize, None);
        assert_eq!(s.tcp_connect, vec![443]);
    }

    #[test]
    fn merge_rules() {
        let a = Settings {
            profile: Some(Profile::Landlock),
            uid: Some(1),
            env: vec![("A".into(), "1".into()), ("B".into(), "1".into())],
            pass_env: vec!["X".into()],
            limits: LimitSettings {
                pids: Some(Some(5)),
                memory: Some(Some(1 << 30)),
                ..Default::default()
            },
            ..Default::default()
        };
        let b = Settings {
            uid: Some(2),
            env: vec![("A".into(), "2".into())],
            pass_env: vec!["Y".into()],
            limits: LimitSettings {
                pids: Some(None),
                ..Default::default()
            },
            ..Default::default()
        };
        let m = a.merge(b);
        assert_eq!(m.profile, Some(Profile::Landlock));
        assert_eq!(m.uid, Some(2));
        assert_eq!(
            m.env,
            vec![("B".into(), "1".into()), ("A".into(), "2".into())]
        );
        assert_eq!(m.pass_env, vec!["X".to_string(), "Y".to_string()]);
        assert_eq!(m.limits.pids, Some(None));
        assert_eq!(m.limits.memory, Some(Some(1 << 30)));
    }

    #[test]
    fn extends_profile_and_files_and_cycles() {
        let d = tmpdir("ext");
        std::fs::write(
            d.join("base.toml"),
            "extends = \"ns-only\"\nuid = 7\nro = [\"sub\"]\n",
        )
        .unwrap();
        std::fs::create_dir_all(d.join("sub")).unwrap();
        std::fs::create_dir_all(d.join("child")).unwrap();
        std::fs::write(
            d.join("child/c.toml"),
            "extends = \"../base.toml\"\ngid = 8\n",
        )
        .unwrap();
        let s = load(&d.join("child/c.toml"), Path::new("/")).unwrap();
        assert_eq!(s.profile, Some(Profile::NsOnly));
        assert_eq!((s.uid, s.gid), (Some(7), Some(8)));
        // `sub` is relative to base.toml, not to c.toml.
        assert_eq!(s.binds[0].path, d.join("sub"));

        std::fs::write(d.join("x.toml"), "extends = \"y.toml\"\n").unwrap();
        std::fs::write(d.join("y.toml"), "\nextends = \"x.toml\"\n").unwrap();
        let e = load(&d.join("x.toml"), Path::new("/")).unwrap_err();
        assert!(e.message.contains("extends cycle"), "{}", e.message);
        assert!(e.message.contains("y.toml:2: "), "{}", e.message);

        std::fs::write(d.join("self.toml"), "extends = \"./self.toml\"\n").unwrap();
        let e = load(&d.join("self.toml"), Path::new("/")).unwrap_err();
        assert!(e.message.contains("extends cycle"), "{}", e.message);

        std::fs::write(d.join("missing.toml"), "extends = \"nothere.toml\"\n").unwrap();
        let e = load(&d.join("missing.toml"), Path::new("/")).unwrap_err();
        assert!(e.message.contains("missing.toml:1: "), "{}", e.message);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn build_and_round_trip() {
        let d = tmpdir("rt");
        std::fs::create_dir_all(d.join("ws")).unwrap();
        std::fs::create_dir_all(d.join("a/b")).unwrap();
        for (i, text) in [
            "workspace = \"ws\"\n",
            "profile = \"ns-only\"\nworkspace = \"ws\"\n",
            "profile = \"landlock\"\nworkspace = \"ws\"\n[limits]\nmemory = \"3G\"\ntimeout = 1.5\n",
            "workspace = \"ws\"\nwithout = [\"limits\", \"seccomp\"]\nrw = [\"a\"]\nro = [\"a/b\", { path = \"nope\", optional = true }]\n\
             [env]\nZ = \"1\"\nA = \"q\\\"uote\"\n[limits]\ncpus = 0.3\nfsize = 1234567\n[landlock]\ntcp_bind = [8080]\n",
            "profile = \"none\"\nworkspace = \"ws\"\nnet = \"host\"\nbest_effort = true\n[limits]\npids = \"max\"\n",
            "profile = \"ns-only\"\nworkspace = \"ws\"\nwithout = [\"limits\"]\n[limits]\nmemory = \"1G\"\n",
            "profile = \"landlock\"\nworkspace = \"ws\"\nwithout = [\"limits\", \"pid-ns\"]\n[limits]\npids = \"max\"\n",
        ]
        .iter()
        .enumerate()
        {
            let f = d.join(format!("p{i}.toml"));
            std::fs::write(&f, text).unwrap();
            let r = build(&load(&f, Path::new("/")).unwrap(), Path::new("/")).unwrap();
            let out = to_toml(&r.policy, &r.protect, &r.unprotect).unwrap();
            let g = d.join(format!("q{i}.toml"));
            std::fs::write(&g, &out).unwrap();
            let back = build(&load(&g, Path::new("/")).unwrap(), Path::new("/")).unwrap();
            assert_eq!(r.policy, back.policy, "{text}\n---\n{out}");
            assert_eq!(to_toml(&back.policy, &back.protect, &back.unprotect).unwrap(), out);
        }
        // The optional entry was skipped, the nested ro sorts after its rw parent.
        let r = build(
            &load(&d.join("p3.toml"), Path::new("/")).unwrap(),
            Path::new("/"),
        )
        .unwrap();
        assert_eq!(r.skipped.len(), 1);
        assert_eq!(r.policy.binds[0].path, d.join("a"));
        assert!(!r.policy.layers.has(Layer::Limits));
        assert!(!r.policy.layers.has(Layer::Seccomp));
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn default_protected_paths() {
        let d = tmpdir("prot");
        let ws = d.join("ws");
        for x in [
            ".git/hooks",
            ".git/modules/s/hooks",
            ".git/modules/s/objects/hooks",
            ".git/modules/s/modules/n/info",
            ".git/modules/a/b/hooks",
            ".git/modules/a/hooks",
            ".vscode",
            "docs",
            "rw/.git/hooks",
        ] {
            std::fs::create_dir_all(ws.join(x)).unwrap();
        }
        // Submodules s, s/modules/n (nested) and a/b (a name with a slash) have a HEAD; `a`
        // is only a name component, and nothing below `objects` counts.
        for f in [
            ".git/config",
            ".envrc",
            "docs/x",
            ".git/modules/s/HEAD",
            ".git/modules/s/modules/n/HEAD",
            ".git/modules/a/b/HEAD",
        ] {
            std::fs::write(ws.join(f), "x").unwrap();
        }
        let f = d.join("p.toml");
        std::fs::write(
            &f,
            "workspace = \"ws\"\nrw = [\"ws/rw\"]\nprotect = [\"docs/x\"]\nunprotect = [\".vscode\"]\n",
        )
        .unwrap();
        let r = build(&load(&f, Path::new("/")).unwrap(), Path::new("/")).unwrap();
        let want: Vec<PathBuf> = [
            ".envrc",
            ".git/config",
            ".git/hooks",
            ".git/modules/a/b/hooks",
            ".git/modules/s/hooks",
            ".git/modules/s/modules/n/info",
            "docs/x",
            "rw/.git/hooks",
        ]
        .iter()
        .map(|x| ws.join(x))
        .collect();
        assert_eq!(r.protected, want);
        assert!(r.protect_missing.contains(&ws.join(".claude")));
        assert!(r.protect_missing.contains(&ws.join("rw/.envrc")));
        assert!(!r.protect_missing.contains(&ws.join(".vscode")));
        // `policy show` writes them as `protect` and `unprotect`, which read back the same.
        let out = to_toml(&r.policy, &r.protect, &r.unprotect).unwrap();
        assert!(out.contains("\"docs/x\""), "{out}");
        assert!(out.contains("unprotect = [\".vscode\"]"), "{out}");
        let g = d.join("q.toml");
        std::fs::write(&g, &out).unwrap();
        let back = build(&load(&g, Path::new("/")).unwrap(), Path::new("/")).unwrap();
        assert_eq!(r.policy, back.policy, "{out}");
        // Errors: `..`, an `unprotect` of nothing, a missing literal `protect`, and `protect`
        // without a mount namespace.
        for (text, msg) in [
            ("protect = [\"../x\"]\n", "`..` is not allowed"),
            ("unprotect = [\".vscod\"]\n", "not a protected path"),
            ("protect = [\"docs/nope\"]\n", "cannot be protected"),
            (
                "profile = \"none\"\nprotect = [\"docs/x\"]\n",
                "need a mount namespace",
            ),
        ] {
            std::fs::write(&f, format!("workspace = \"ws\"\n{text}")).unwrap();
            let e = load(&f, Path::new("/"))
                .and_then(|s| build(&s, Path::new("/")))
                .unwrap_err();
            assert!(e.message.contains(msg), "{text}: {}", e.message);
        }
        // An expanded path can be unprotected alone.
        std::fs::write(
            &f,
            "workspace = \"ws\"\nunprotect = [\".git/modules/s/hooks\"]\n",
        )
        .unwrap();
        let r = build(&load(&f, Path::new("/")).unwrap(), Path::new("/")).unwrap();
        assert!(!r.protected.contains(&ws.join(".git/modules/s/hooks")));
        assert!(r.protected.contains(&ws.join(".git/hooks")));
        // No mount namespace: no defaults.
        std::fs::write(&f, "workspace = \"ws\"\nprofile = \"none\"\n").unwrap();
        let r = build(&load(&f, Path::new("/")).unwrap(), Path::new("/")).unwrap();
        assert!(r.protected.is_empty() && r.policy.binds.is_empty());
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn float_limits_round_trip() {
        use agentcage::limits::value as u;
        let back = |v: &toml::Value, parse: FloatParser| match v {
            toml::Value::Float(f) => parse(&f.to_string()).unwrap(),
            toml::Value::String(s) => parse(s).unwrap(),
            other => panic!("{other:?}"),
        };
        for s in [
            "1.1",
            "0.333",
            "2.55",
            "1.7s",
            "0.001",
            "123.456789",
            "100ms",
            "1d",
            "3.000000001",
        ] {
            let t = u::parse_timeout(s).unwrap();
            assert_eq!(
                back(&float_value(t, u::parse_timeout), u::parse_timeout),
                t,
                "timeout {s}"
            );
        }
        for s in ["1.1", "0.333", "2.55", "0.01", "64", "1.000000001"] {
            let c = u::parse_cpus(s).unwrap();
            assert_eq!(
                back(&float_value(c, u::parse_cpus), u::parse_cpus),
                c,
                "cpus {s}"
            );
        }
    }

    #[test]
    fn build_missing_required_path() {
        let s = Settings {
            binds: vec![BindSetting {
                path: "/nonexistent/agentcage".into(),
                writable: false,
                optional: false,
                origin: "p.toml:4".into(),
            }],
            ..Default::default()
        };
        let e = build(&s, Path::new("/")).unwrap_err();
        assert!(
            e.message.starts_with("p.toml:4: ro /nonexistent/agentcage"),
            "{}",
            e.message
        );
    }

    #[test]
    fn limits_enable_layer_outside_full() {
        let s = Settings {
            profile: Some(Profile::NsOnly),
            limits: LimitSettings {
                timeout: Some(Some(3.0)),
                ..Default::default()
            },
            ..Default::default()
        };
        let p = build(&s, Path::new("/")).unwrap().policy;
        assert!(p.layers.has(Layer::Limits));
        assert!(p.limits.no_core);
        assert_eq!(p.limits.timeout, Some(3.0));
    }
}
