//! Denial events (issue 17, docs/EVENTS.md): one record per thing the sandbox refused,
//! with the layer that refused it and the policy key that would allow it.
//!
//! Sources, all into one [`EventSink`]:
//! - `seccomp` ([`seccomp`]): with events on, the filter's policy denials are
//!   `SECCOMP_RET_USER_NOTIF`; the launcher's listener thread answers each with the errno
//!   the plain filter returns (never `CONTINUE`) and records it;
//! - `network`: the egress engine's deny decisions ([`from_egress`]);
//! - `landlock`: not observable on hosts where the audit log is not readable (see
//!   docs/EVENTS.md); never guessed from an errno.

pub mod landlock;
pub(crate) mod seccomp;
pub(crate) mod session;

use serde::{Deserialize, Serialize};

/// How an event's `key` begins when nothing in the policy would allow it.
pub const NO_KEY: &str = "no key";

/// One denial. Serialized as one JSON line (`--events`); `why` reads it back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// `YYYY-MM-DDTHH:MM:SS.mmmZ` (UTC), when the supervisor saw it.
    pub time: String,
    /// `"seccomp"`, `"network"` or `"landlock"`.
    pub layer: String,
    /// The process, as a pid of the host's pid namespace (the launcher's), when known.
    pub pid: Option<u32>,
    /// The same process as the sandbox sees it (its own pid namespace), when known.
    #[serde(default)]
    pub ns_pid: Option<u32>,
    /// Its session id in the sandbox's pid namespace (`NSsid`): sessions attribute an
    /// event to the exec whose pid this is (each exec is a session of its own).
    #[serde(default)]
    pub ns_sid: Option<u32>,
    /// `/proc/PID/exe` read from the host while the process was still waiting, when
    /// readable (a path inside the sandbox's root).
    pub exe: Option<String>,
    /// What was refused: `mount(...)`, `unshare(CLONE_NEWUSER|CLONE_NEWNS)`,
    /// `connect example.com:443`.
    pub object: String,
    /// The policy key or flag that would allow it, or [`NO_KEY`]`: ...` when nothing in the
    /// policy does.
    pub key: String,
    /// Why the policy refuses it (the table's reason, the egress engine's reason).
    pub reason: String,
    /// The errno the process got, when the refusal was a failed syscall.
    #[serde(default)]
    pub errno: Option<String>,
    /// Sessions: the exec that caused it (`None` for `run`).
    #[serde(default)]
    pub exec_id: Option<u64>,
}

impl Event {
    /// One line for `-v` (stderr) and `why`'s first line.
    pub fn summary(&self) -> String {
        let who = match (&self.exe, self.pid) {
            (Some(e), Some(p)) => format!("{e} (pid {p})"),
            (None, Some(p)) => format!("pid {p}"),
            (Some(e), None) => e.clone(),
            (None, None) => "the sandbox".into(),
        };
        let errno = self
            .errno
            .as_deref()
            .map(|e| format!(" -> {e}"))
            .unwrap_or_default();
        format!(
            "denied [{}] {}{errno} by {who}; key: {}",
            self.layer, self.object, self.key
        )
    }

    /// The flag or policy key that would allow it; `None` when the event's `key` says that
    /// nothing does (it starts with [`NO_KEY`]: the stream's format, docs/EVENTS.md, so an
    /// event read back from a file answers the same).
    pub fn allowing_key(&self) -> Option<&str> {
        (!self.key.starts_with(NO_KEY)).then_some(self.key.as_str())
    }

    /// A sentence for `agentcage why`: what was refused, why, and what would allow it.
    pub fn explain(&self) -> String {
        let allow = match self.allowing_key() {
            Some(key) => format!("To allow it: {key}."),
            None => format!("No flag or policy key allows it ({}).", self.key),
        };
        let who = self
            .exe
            .as_deref()
            .map(|e| format!(" by {e}"))
            .unwrap_or_default();
        let errno = self
            .errno
            .as_deref()
            .map(|e| format!(" (the process got {e})"))
            .unwrap_or_default();
        format!(
            "The {} layer refused {}{who}{errno}: {} {allow}",
            self.layer,
            self.object,
            self.reason.trim_end_matches('.').to_owned() + ".",
        )
    }
}

/// Where events go: called from the listener thread and the egress engine's threads;
/// must not block for long (a waiting syscall waits for it).
pub type EventSink = std::sync::Arc<dyn Fn(&Event) + Send + Sync>;

/// The network event of an egress deny decision.
pub fn from_egress(e: &agentcage_egress::Event) -> Event {
    let target = match (&e.name, e.ip, e.port) {
        (Some(n), _, Some(p)) => format!("{n}:{p}"),
        (Some(n), _, None) => n.clone(),
        (None, Some(ip), Some(p)) => format!("{ip}:{p}"),
        (None, Some(ip), None) => ip.to_string(),
        (None, None, Some(p)) => format!("port {p}"),
        (None, None, None) => "?".into(),
    };
    let host = e.name.clone().or_else(|| e.ip.map(|i| i.to_string()));
    Event {
        time: e.time.clone(),
        layer: "network".into(),
        pid: e.pid,
        ns_pid: None,
        ns_sid: None,
        exe: e.exe.clone(),
        object: format!("{} {target}", e.proto),
        key: match (host, e.port) {
            (Some(h), Some(p)) => format!("--allow-host {h}:{p}"),
            (Some(h), None) => format!("--allow-host {h}"),
            _ => "--allow-host HOST[:PORT]".into(),
        },
        reason: e
            .reason
            .clone()
            .unwrap_or_else(|| "not on the egress allow-list".into()),
        errno: None,
        exec_id: None,
    }
}

/// The events header's line for the filesystem layer (Landlock denials): why they are not
/// observable on this host (see [`landlock`]).
pub fn landlock_not_observable() -> String {
    landlock::not_observable_reason()
}
