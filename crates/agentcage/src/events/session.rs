//! A session's denials, per exec (docs/SESSIONS.md, "Denials").
//!
//! Attribution: each exec is a session of its own (the zygote's child calls `setsid`), so an
//! event belongs to the exec whose pid (sandbox pid namespace) is the event's `ns_sid`. The
//! listener thread and the egress engine call the sink; the supervisor registers each exec's
//! pid when the zygote reports it started (an event that came first waits in `pending` and is
//! moved then), and takes an exec's list for its exit frame.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use super::{Event, EventSink};

/// The most events kept per exec (and unattributed); further ones are only counted.
pub const MAX_PER_EXEC: usize = 100;

#[derive(Default)]
struct Store {
    /// ns pid of a running exec -> its id.
    by_pid: HashMap<u32, u64>,
    per_exec: HashMap<u64, (Vec<Event>, u64)>,
    /// Not attributed (yet): a process outside every known exec's session.
    pending: VecDeque<Event>,
    pending_dropped: u64,
}

/// The session's denial store; cheap to clone (shared).
#[derive(Clone, Default)]
pub(crate) struct ExecDenials {
    inner: Arc<Mutex<Store>>,
}

fn push(list: &mut (Vec<Event>, u64), e: Event) {
    if list.0.len() < MAX_PER_EXEC {
        list.0.push(e);
    } else {
        list.1 += 1;
    }
}

impl ExecDenials {
    /// The sink for the launcher: attributes, stores, then passes the event to `also`
    /// (`--events FILE`).
    pub(crate) fn sink(&self, also: Option<EventSink>) -> EventSink {
        let me = self.clone();
        Arc::new(move |e: &Event| {
            let e = me.record(e.clone());
            if let Some(f) = &also {
                f(&e);
            }
        })
    }

    fn record(&self, mut e: Event) -> Event {
        let Ok(mut s) = self.inner.lock() else {
            return e;
        };
        let id = e.ns_sid.and_then(|sid| s.by_pid.get(&sid).copied());
        e.exec_id = id;
        match id {
            Some(id) => push(s.per_exec.entry(id).or_default(), e.clone()),
            None => {
                if s.pending.len() >= MAX_PER_EXEC {
                    s.pending.pop_front();
                    s.pending_dropped += 1;
                }
                s.pending.push_back(e.clone());
            }
        }
        e
    }

    /// The zygote reported exec `id` started as `pid`: events of its session go to it (also
    /// those that came first). Kept while the exec is known: a background process of its
    /// session is still its; a later exec with the same pid (only once that session is
    /// empty) takes the pid over.
    pub(crate) fn register(&self, pid: i32, id: u64) {
        let Ok(mut s) = self.inner.lock() else { return };
        let pid = pid as u32;
        s.by_pid.insert(pid, id);
        let (mine, rest): (Vec<Event>, Vec<Event>) = std::mem::take(&mut s.pending)
            .into_iter()
            .partition(|e| e.ns_sid == Some(pid));
        s.pending = rest.into();
        let list = s.per_exec.entry(id).or_default();
        for mut e in mine {
            e.exec_id = Some(id);
            push(list, e);
        }
    }

    /// Exec `id`'s events so far and how many were dropped.
    pub(crate) fn of(&self, id: u64) -> (Vec<Event>, u64) {
        self.inner
            .lock()
            .ok()
            .and_then(|s| s.per_exec.get(&id).cloned())
            .unwrap_or_default()
    }

    /// The exec is forgotten: so are its events.
    pub(crate) fn forget(&self, id: u64) {
        if let Ok(mut s) = self.inner.lock() {
            s.per_exec.remove(&id);
        }
    }

    /// The events no exec could be found for, and how many were dropped.
    pub(crate) fn unattributed(&self) -> (Vec<Event>, u64) {
        self.inner
            .lock()
            .map(|s| (s.pending.iter().cloned().collect(), s.pending_dropped))
            .unwrap_or_default()
    }
}
