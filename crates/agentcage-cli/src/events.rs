//! `--events FILE|fd:N` (run, session start), `-v` denial lines, `agentcage why`
//! (docs/EVENTS.md).

use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use agentcage::events::{Event, EventSink};
use agentcage::{Layer, NetMode, Policy};
use clap::Args;

use crate::policy::UsageError;

/// The most denial lines one `--events` stream (and `-v`) gets: an agent looping on a
/// denied call must not fill the disk. After it, one `{"agentcage_events_truncated":N}` line;
/// the counts (`--json-report`) stay exact.
pub const MAX_LINES: u64 = 10_000;

/// Where `--events` writes, and the counters of `--json-report`.
pub struct EventsOut {
    file: Option<Mutex<std::fs::File>>,
    verbose: bool,
    seccomp: AtomicU64,
    network: AtomicU64,
}

impl EventsOut {
    /// Denials counted so far: (seccomp, network).
    pub fn counts(&self) -> (u64, u64) {
        (
            self.seccomp.load(Ordering::Relaxed),
            self.network.load(Ordering::Relaxed),
        )
    }

    /// The fd of the events file (a session's supervisor must keep it open).
    pub fn raw_fd(&self) -> Option<i32> {
        use std::os::fd::AsRawFd;
        self.file
            .as_ref()
            .and_then(|f| f.lock().ok().map(|f| f.as_raw_fd()))
    }

    fn record(&self, e: &Event) {
        match e.layer.as_str() {
            "seccomp" => &self.seccomp,
            _ => &self.network,
        }
        .fetch_add(1, Ordering::Relaxed);
        let (s, n) = self.counts();
        if s + n > MAX_LINES {
            if s + n == MAX_LINES + 1 {
                if let Some(Ok(mut f)) = self.file.as_ref().map(Mutex::lock) {
                    let _ = writeln!(f, "{{\"agentcage_events_truncated\":{MAX_LINES}}}");
                }
            }
            return;
        }
        if let Some(f) = &self.file {
            if let Ok(line) = serde_json::to_string(e) {
                if let Ok(mut f) = f.lock() {
                    let _ = writeln!(f, "{line}");
                }
            }
        }
        if self.verbose {
            eprintln!("agentcage: {}", e.summary());
        }
    }
}

/// The sink the launcher calls (seccomp listener thread, egress engine threads).
pub fn sink(out: &Arc<EventsOut>) -> EventSink {
    let out = out.clone();
    Arc::new(move |e: &Event| out.record(e))
}

/// The egress deny hook feeding the same stream.
pub fn egress_hook(out: &Arc<EventsOut>) -> agentcage::SharedDenyHook {
    let out = out.clone();
    Arc::new(move |e: &agentcage_egress::Event| out.record(&agentcage::events::from_egress(e)))
}

/// Opens `--events` (`fd:N`, or a FILE appended to, by fd, never inside a tree the sandbox
/// can write) and writes its header line: which layers' denials are observable here.
///
/// # Errors
/// A bad spec, an fd that is not open, a path the sandbox could write.
pub fn open(spec: &Path, policy: &Policy, verbose: bool) -> Result<Arc<EventsOut>, UsageError> {
    let hint = "give --events a path outside the workspace and the --rw paths, or fd:N";
    let mut file = match spec.to_str().and_then(|s| s.strip_prefix("fd:")) {
        Some(n) => {
            let fd: i32 = n.parse().ok().filter(|&n| n > 2).ok_or_else(|| {
                UsageError::new(format!(
                    "--events fd:{n}: not a file descriptor number above 2"
                ))
                .hint(hint)
            })?;
            if policy.keep_fds.contains(&fd) {
                return Err(UsageError::new(format!(
                    "--events fd:{fd} and --keep-fd {fd}: the sandbox could write the events"
                ))
                .hint("give the events their own fd"));
            }
            // SAFETY: integer-only fcntl; F_DUPFD_CLOEXEC makes a new fd this File owns.
            let dup = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 3) };
            if dup < 0 {
                return Err(UsageError::new(format!(
                    "--events fd:{fd}: {}",
                    std::io::Error::last_os_error()
                ))
                .hint("open it in the caller, e.g. `3>>events.jsonl`"));
            }
            // SAFETY: `dup` is a new fd nothing else owns.
            unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(dup) }
        }
        None => {
            let cwd = std::env::current_dir()
                .map_err(|e| UsageError::new(format!("current directory: {e}")))?;
            let abs = cwd.join(spec);
            crate::run_output::open_host_log("--events", &abs, policy, hint)?
        }
    };
    let header = header(policy);
    writeln!(file, "{header}")
        .map_err(|e| UsageError::new(format!("--events: write the header: {e}")))?;
    Ok(Arc::new(EventsOut {
        file: Some(Mutex::new(file)),
        verbose,
        seccomp: AtomicU64::new(0),
        network: AtomicU64::new(0),
    }))
}

/// The first line of an events stream: what each layer's denials look like here.
pub fn header(policy: &Policy) -> serde_json::Value {
    let seccomp = if policy.layers.has(Layer::Seccomp) {
        "observed: every policy denial (not ENOSYS) is a user notification answered by the launcher with the filter's errno"
    } else {
        "off: the profile has no seccomp layer"
    };
    let network = match policy.net {
        NetMode::Allow => "observed: every egress deny decision",
        NetMode::None => "not observable: --net none has no route out, nothing decides (use --allow-host to see attempts)",
        NetMode::Host => "not observable: --net host, no egress engine",
    };
    let landlock = if policy.layers.has(Layer::Landlock) {
        &agentcage::events::landlock_not_observable()
    } else {
        "off: the profile has no Landlock layer"
    };
    serde_json::json!({
        "agentcage_events": 1,
        "layers": { "seccomp": seccomp, "network": network, "landlock": landlock },
    })
}

/// Flags of `agentcage why`.
#[derive(Debug, Args)]
pub struct WhyArgs {
    /// One event line (JSON, as written by --events).
    #[arg(
        value_name = "EVENT-LINE",
        conflicts_with = "events",
        required_unless_present = "events"
    )]
    pub line: Option<String>,
    /// Explain every event of this file (as written by --events).
    #[arg(long, value_name = "FILE")]
    pub events: Option<std::path::PathBuf>,
}

/// `agentcage why`: one sentence per event.
pub fn why(a: &WhyArgs) -> i32 {
    let text = match (&a.line, &a.events) {
        (Some(l), _) => l.clone(),
        (None, Some(p)) => match std::fs::read_to_string(p) {
            Ok(t) => t,
            Err(e) => {
                crate::ui::error(&format!("read {}: {e}", p.display()), None);
                return crate::exit::USAGE;
            }
        },
        (None, None) => return crate::exit::USAGE,
    };
    let mut explained = 0;
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let v: serde_json::Value = match serde_json::from_str(line) {
            Ok(v) => v,
            Err(e) => {
                crate::ui::error(&format!("line {}: not JSON: {e}", i + 1), None);
                return crate::exit::USAGE;
            }
        };
        if let Some(layers) = v
            .get("layers")
            .filter(|_| v.get("agentcage_events").is_some())
        {
            if let Some(l) = layers.get("landlock").and_then(|l| l.as_str()) {
                if a.events.is_some() && !l.starts_with("observed") {
                    println!("(filesystem: {l})");
                }
            }
            continue;
        }
        match serde_json::from_value::<Event>(v) {
            Ok(e) => {
                println!("{}", e.explain());
                explained += 1;
            }
            Err(e) => {
                crate::ui::error(
                    &format!("line {}: not an agentcage event: {e}", i + 1),
                    None,
                );
                return crate::exit::USAGE;
            }
        }
    }
    if explained == 0 && a.events.is_some() {
        println!("no denials recorded");
    }
    0
}
