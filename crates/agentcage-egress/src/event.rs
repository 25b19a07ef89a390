//! Decisions: counters, the JSON-lines log and the `on_deny` callback.

use std::fs::File;
use std::io::Write;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::{DenyHook, Event, Stats};

/// Where decisions go: counters, the log file, the callback.
pub(crate) struct Sink {
    allowed: AtomicU64,
    denied: AtomicU64,
    dns_answered: AtomicU64,
    dns_refused: AtomicU64,
    pub(crate) bytes_up: AtomicU64,
    pub(crate) bytes_down: AtomicU64,
    log: Mutex<Option<File>>,
    on_deny: Option<DenyHook>,
}

impl Sink {
    pub(crate) fn new(log: Option<File>, on_deny: Option<DenyHook>) -> Self {
        Sink {
            allowed: AtomicU64::new(0),
            denied: AtomicU64::new(0),
            dns_answered: AtomicU64::new(0),
            dns_refused: AtomicU64::new(0),
            bytes_up: AtomicU64::new(0),
            bytes_down: AtomicU64::new(0),
            log: Mutex::new(log),
            on_deny,
        }
    }

    pub(crate) fn stats(&self) -> Stats {
        Stats {
            allowed: self.allowed.load(Relaxed),
            denied: self.denied.load(Relaxed),
            dns_answered: self.dns_answered.load(Relaxed),
            dns_refused: self.dns_refused.load(Relaxed),
            bytes_up: self.bytes_up.load(Relaxed),
            bytes_down: self.bytes_down.load(Relaxed),
        }
    }

    /// Counts, logs and (for a denial) reports one decision.
    pub(crate) fn emit(&self, ev: Event) {
        let deny = ev.decision == "deny";
        let counter = match (ev.proto, deny) {
            ("dns", false) => &self.dns_answered,
            ("dns", true) => &self.dns_refused,
            (_, false) => &self.allowed,
            (_, true) => &self.denied,
        };
        counter.fetch_add(1, Relaxed);
        if let Ok(mut guard) = self.log.lock() {
            if let Some(file) = guard.as_mut() {
                if let Ok(mut line) = serde_json::to_vec(&ev) {
                    line.push(b'\n');
                    // One write per line on an O_APPEND file keeps lines whole. A failing log
                    // cannot undo a decision already taken; the counters still hold it.
                    let _ = file.write_all(&line);
                }
            }
        }
        if deny {
            if let Some(hook) = &self.on_deny {
                hook(&ev);
            }
        }
    }
}

/// A decision about to be emitted.
pub(crate) fn event(
    proto: &'static str,
    name: Option<&str>,
    port: Option<u16>,
    ip: Option<IpAddr>,
) -> Event {
    Event {
        time: rfc3339_now(),
        pid: None,
        exe: None,
        proto,
        name: name.map(str::to_owned),
        port,
        ip,
        decision: "deny",
        rule: None,
        reason: None,
    }
}

impl Event {
    pub(crate) fn allow(mut self, rule: Option<String>) -> Event {
        self.decision = "allow";
        self.rule = rule;
        self
    }

    pub(crate) fn deny(mut self, reason: impl Into<String>) -> Event {
        self.decision = "deny";
        self.reason = Some(reason.into());
        self
    }
}

/// Now as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn rfc3339_now() -> String {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    rfc3339(d.as_secs(), Some(d.subsec_millis()))
}

/// `secs` since the epoch (UTC) as `YYYY-MM-DDTHH:MM:SSZ`, or `YYYY-MM-DDTHH:MM:SS.mmmZ`
/// with `millis`. The workspace's one date formatter (events here, `bench`'s `started_at`).
pub fn rfc3339(secs: u64, millis: Option<u32>) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let (h, m, s) = (rem / 3600, rem / 60 % 60, rem % 60);
    match millis {
        Some(ms) => format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}.{ms:03}Z"),
        None => format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}Z"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_dates() {
        assert_eq!(rfc3339(0, Some(0)), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(951_782_400, Some(5)), "2000-02-29T00:00:00.005Z");
        assert_eq!(
            rfc3339(1_796_212_800 + 3_723, Some(999)),
            "2026-12-02T13:02:03.999Z"
        );
    }

    /// Without milliseconds (bench's `started_at`; moved from agentcage-bench).
    #[test]
    fn rfc3339_known_dates() {
        assert_eq!(rfc3339(0, None), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400, None), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_795_000_000, None), "2026-11-18T11:06:40Z");
    }

    #[test]
    fn emit_counts_and_logs() {
        let dir = std::env::temp_dir().join(format!("agentcage-egress-ev-{}", std::process::id()));
        let _ = std::fs::remove_file(&dir);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&dir)
            .unwrap();
        let seen = std::sync::Arc::new(AtomicU64::new(0));
        let s2 = seen.clone();
        let sink = Sink::new(
            Some(file),
            Some(Box::new(move |_| {
                s2.fetch_add(1, Relaxed);
            })),
        );
        sink.emit(event("dns", Some("a.com"), None, None).allow(None));
        sink.emit(event("dns", Some("b.com"), None, None).deny("no rule"));
        sink.emit(event("tls", Some("a.com"), Some(443), None).allow(Some("a.com".into())));
        sink.emit(event("tcp", None, Some(22), Some("10.0.0.1".parse().unwrap())).deny("x"));
        let st = sink.stats();
        assert_eq!(
            (st.allowed, st.denied, st.dns_answered, st.dns_refused),
            (1, 1, 1, 1)
        );
        assert_eq!(seen.load(Relaxed), 2);
        let text = std::fs::read_to_string(&dir).unwrap();
        let _ = std::fs::remove_file(&dir);
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 4);
        assert_eq!(lines[3]["decision"], "deny");
        assert_eq!(lines[3]["ip"], "10.0.0.1");
        assert_eq!(lines[2]["rule"], "a.com");
    }
}
