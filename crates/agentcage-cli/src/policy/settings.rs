//! [`Settings`]: every knob of a policy, each optional, and how two sources merge.

use std::path::PathBuf;

use agentcage::{Layer, NetMode, Profile};

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
    pub(super) fn any(&self) -> bool {
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
    /// `[network] allow` / `--allow-host`: rules as said, and where each was said.
    pub allow_host: Vec<(String, String)>,
    /// `[network] log` / `--net-log` (absolute) and where it was said.
    pub net_log: Option<(PathBuf, String)>,
    /// `[network] resolve` / `--net-resolve NAME=IP`.
    pub net_resolve: Vec<(String, std::net::IpAddr)>,
    /// `[network] dns` / `--net-dns IP:PORT`.
    pub net_dns: Option<std::net::SocketAddr>,
    /// `protect`: paths made read-only inside the workspace or an `rw` dir, as said (`~`
    /// expanded; a relative one is relative to the workspace), and where each was said.
    pub protect: Vec<(PathBuf, String)>,
    /// `unprotect`: protected paths (defaults included) left writable, same forms.
    pub unprotect: Vec<(PathBuf, String)>,
    /// `read_only_workspace`.
    pub read_only_workspace: Option<bool>,
    /// `mask`: paths hidden inside (relative ones relative to the workspace), and where said.
    pub mask: Vec<(PathBuf, String)>,
    /// `tmpfs`: directories that get a fresh tmpfs (relative to the workspace), where said.
    pub tmpfs: Vec<(PathBuf, String)>,
    /// `chdir`: the working directory inside (relative to the workspace), where said.
    pub chdir: Option<(PathBuf, String)>,
    /// `home`: a host directory (absolute) or `None` for `"tmpfs"`, and where said.
    pub home: Option<(Option<PathBuf>, String)>,
    /// `bind`: (host source, absolute or as said; inside destination; writable), where said.
    pub bind: Vec<((PathBuf, PathBuf, bool), String)>,
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
            allow_host: cat(self.allow_host, over.allow_host),
            net_log: over.net_log.or(self.net_log),
            net_resolve: cat(self.net_resolve, over.net_resolve),
            net_dns: over.net_dns.or(self.net_dns),
            protect: cat(self.protect, over.protect),
            unprotect: cat(self.unprotect, over.unprotect),
            read_only_workspace: over.read_only_workspace.or(self.read_only_workspace),
            mask: cat(self.mask, over.mask),
            bind: cat(self.bind, over.bind),
            tmpfs: cat(self.tmpfs, over.tmpfs),
            chdir: over.chdir.or(self.chdir),
            home: over.home.or(self.home),
            sources: cat(self.sources, over.sources),
        }
    }
}

fn cat<T>(mut a: Vec<T>, b: Vec<T>) -> Vec<T> {
    a.extend(b);
    a
}
