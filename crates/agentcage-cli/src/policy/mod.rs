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
//!
//! Layout: [`settings`] (the [`Settings`] value and its merge), [`file`](mod@file) (the TOML
//! format with spans, `extends`, and the trust checks on the files read), [`protect`]
//! (protected paths, path patterns, the defaults), [`resolve`] (settings -> [`Resolved`]),
//! [`write`](mod@write) (policy -> TOML).

use std::path::{Path, PathBuf};

use agentcage::{Layer, NetMode};

mod file;
pub mod placeholder;
mod protect;
mod resolve;
mod settings;
#[cfg(test)]
mod tests;
mod write;

pub use file::{key_table_markdown, load, untrusted};
pub use protect::{protect_path, DEFAULT_PROTECTED};
pub use resolve::{build, Resolved};
pub use settings::{BindSetting, LimitSettings, Settings};
pub use write::{to_table, to_toml};

/// Parses `SRC:DST[:ro|:rw]` (read-write unless `:ro`): `~` expanded in SRC (still relative
/// when said so; the caller resolves it), DST absolute with no `..`.
pub fn parse_bind(s: &str) -> Result<(PathBuf, PathBuf, bool), String> {
    let (rest, writable) = match s.rsplit_once(':') {
        Some((r, "ro")) => (r, false),
        Some((r, "rw")) => (r, true),
        _ => (s, true),
    };
    let Some((src, dst)) = rest.split_once(':') else {
        return Err(format!("{s}: expected SRC:DST[:ro]"));
    };
    if src.is_empty() || dst.is_empty() {
        return Err(format!("{s}: expected SRC:DST[:ro]"));
    }
    let dst = PathBuf::from(dst);
    if !dst.is_absolute()
        || dst
            .components()
            .any(|c| c == std::path::Component::ParentDir)
    {
        return Err(format!(
            "{s}: the destination must be an absolute path inside the sandbox, without `..`"
        ));
    }
    Ok((expand_tilde(src)?, dst, writable))
}

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
        "allow" => Ok(NetMode::Allow),
        _ => Err(format!(
            "unknown network mode {s:?} (expected none, allow or host)"
        )),
    }
}

/// Checks an egress allow rule with the engine's parser; returns its canonical text.
pub fn parse_allow_host(s: &str) -> Result<String, String> {
    s.parse::<agentcage_egress::Rule>()
        .map(|r| r.to_string())
        .map_err(|e| format!("allow rule {s:?}: {e}"))
}

/// Parses `NAME=IP` (`--net-resolve`).
pub fn parse_net_resolve(s: &str) -> Result<(String, std::net::IpAddr), String> {
    let (name, ip) = s
        .split_once('=')
        .ok_or_else(|| format!("expected NAME=IP, got {s:?}"))?;
    // A plain host name, checked by the engine's own parser (LDH labels, no NUL or control
    // bytes).
    if name.starts_with('*') || name.contains(':') || name.parse::<std::net::IpAddr>().is_ok() {
        return Err(format!("{s:?}: NAME must be a host name"));
    }
    name.parse::<agentcage_egress::Rule>()
        .map_err(|e| format!("{s:?}: {e}"))?;
    let ip = ip
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .map_err(|_| format!("{s:?}: {ip:?} is not an IP address"))?;
    Ok((name.to_ascii_lowercase(), ip))
}

/// Parses `IP:PORT` (`--net-dns`; `[v6]:PORT` for IPv6).
pub fn parse_net_dns(s: &str) -> Result<std::net::SocketAddr, String> {
    s.parse()
        .map_err(|_| format!("expected IP:PORT (or [IPv6]:PORT), got {s:?}"))
}

/// Parses a layer name (`without`).
pub fn parse_layer(s: &str) -> Result<Layer, String> {
    Layer::from_name(s).ok_or_else(|| {
        let names: Vec<&str> = Layer::ALL.iter().map(|l| l.name()).collect();
        format!("unknown layer {s:?} (expected one of {})", names.join(", "))
    })
}
