//! Attribution by experiment: which layer blocks which operation, measured by running the probe
//! with layers removed, never guessed from an errno.
//!
//! # Definitions
//!
//! A *run* ([`RunKey`]) is the probe run once under a set of layers, expressed to the launcher
//! as `agentcage run --profile P --without L1 --without L2 ...`. For an operation `o` BLOCKED
//! under profile `P`:
//!
//! 1. **host**: if `P` is `none`, or `o` is already BLOCKED under `none`, the blocker is `host`
//!    (file permissions, a missing capability, kernel configuration): no layer of ours is needed.
//! 2. **single removal**: otherwise the blocker is every layer `L` of `P` such that `o` is
//!    ALLOWED when the probe runs under `P` minus `L`.
//! 3. **redundant**: if no single removal lets `o` through, several layers block it on their
//!    own; `redundant` is set and the blockers are found on top of a *base*: the strongest
//!    weaker profile `B` (in `none ⊂ ns-only ⊂ landlock ⊂ full`) under which `o` is ALLOWED.
//!    Each layer `L` that `P` adds to `B` is enabled alone on top of it (`B + L`, run as `P`
//!    without the other added layers); `L` blocks on its own when `o` is BLOCKED under `B + L`.
//!    When `B + L` cannot be set up (unprivileged, a namespace without the user namespace),
//!    and `P` adds `user-ns` too, `L` is tested as `B + user-ns + L` against `B + user-ns`:
//!    `L` blocks on its own when `o` is ALLOWED under the latter and BLOCKED under the former.
//!
//! A run that fails to set up (the launcher exits 125, e.g. removing `user-ns` as an
//! unprivileged caller) is no evidence either way; the cell records it in its `notes`. A removal
//! that turns the op SKIPPED is no evidence either. An errno is shown, never interpreted.
//!
//! # Skipping runs whose answer is implied
//!
//! Runs are planned in rounds ([`plan`]): main profiles and `none` first, then every single
//! removal that some BLOCKED op needs, then the `B + L` runs for redundant ops, then their
//! `user-ns` fallbacks. A run is skipped when an identical run was already made (runs are
//! normalized, see [`RunKey::new`]: `landlock` minus `landlock` *is* `ns-only`) or when its
//! answer for every op that needs it follows from runs already made, by one rule:
//!
//! > The *restrict-only* layers ([`RESTRICT_ONLY`]: hygiene, landlock, caps, no-new-privs,
//! > seccomp, limits) only take permissions away. So if run `S` has at least the layers of run
//! > `T`, the extra ones all restrict-only and no layer configured more loosely, then an op
//! > ALLOWED under `S` is ALLOWED under `T`, and an op BLOCKED under `T` is BLOCKED under `S`.
//!
//! Namespaces are deliberately not restrict-only: a user namespace *grants* capabilities (an
//! unprivileged caller can mount inside one), a pid namespace changes what pid 1 is, a mount
//! namespace changes which paths exist. So no inference ever crosses a namespace difference.
//! The profile matters only through Landlock's configuration (in `full` it also restricts TCP
//! and scopes signals and abstract sockets), hence the profile ordering condition.

use std::collections::{BTreeMap, BTreeSet};

use crate::deps::{Layer, LayerSet, OpResult, Profile, Verdict};

/// Layers that only ever take permissions away (see the module docs for why namespaces are not
/// among them).
pub const RESTRICT_ONLY: [Layer; 6] = [
    Layer::Hygiene,
    Layer::Landlock,
    Layer::Caps,
    Layer::NoNewPrivs,
    Layer::Seccomp,
    Layer::Limits,
];

/// The attribution given to ops already blocked without any sandbox.
pub const HOST: &str = "host";

/// The bits of a layer set, for ordering and display.
fn bits(s: LayerSet) -> u32 {
    s.iter().fold(0, |acc, l| acc | 1 << (l as u8))
}

fn is_subset(a: LayerSet, b: LayerSet) -> bool {
    a.iter().all(|l| b.has(l))
}

/// One probe run: a profile (which fixes how each layer is configured) and the layers actually
/// enabled (the profile's, or fewer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RunKey {
    /// The profile passed with `--profile`.
    pub profile: Profile,
    /// The layers enabled: `profile.layers()` minus the `--without` ones.
    pub layers: LayerSet,
}

impl Ord for RunKey {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.profile, bits(self.layers)).cmp(&(other.profile, bits(other.layers)))
    }
}

impl PartialOrd for RunKey {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl RunKey {
    /// A main profile run: all of the profile's layers.
    pub fn main(profile: Profile) -> RunKey {
        RunKey {
            profile,
            layers: profile.layers(),
        }
    }

    /// The run of `layers` (a subset of `requested`'s layers), normalized so that equal
    /// experiments get equal keys: the profile becomes the weakest one containing `layers`,
    /// except that a run with Landlock requested from `full` stays `full` (only there does
    /// Landlock also restrict TCP and scope signals and abstract sockets).
    pub fn new(requested: Profile, layers: LayerSet) -> RunKey {
        let weakest = Profile::ALL
            .into_iter()
            .find(|p| is_subset(layers, p.layers()))
            .unwrap_or(Profile::Full);
        let profile = if layers.has(Layer::Landlock) && requested == Profile::Full {
            Profile::Full
        } else {
            weakest
        };
        RunKey { profile, layers }
    }

    /// The layers of the profile that this run disables.
    pub fn without(&self) -> Vec<Layer> {
        self.profile
            .layers()
            .iter()
            .filter(|l| !self.layers.has(*l))
            .collect()
    }

    /// Arguments for `agentcage run`: `--profile P --without L ...`.
    pub fn args(&self) -> Vec<String> {
        let mut args = vec!["--profile".to_string(), self.profile.name().to_string()];
        for l in self.without() {
            args.push("--without".to_string());
            args.push(l.name().to_string());
        }
        if !self.layers.has(Layer::UserNs) {
            // As root, a run without a user namespace is host root and needs the explicit
            // confirmation (the `none` control row); ignored otherwise.
            args.push("--allow-unsandboxed-root".to_string());
        }
        args
    }

    /// A short human label: `full`, `full -seccomp`, or `full only{user-ns,net-ns}`.
    pub fn label(&self) -> String {
        let without = self.without();
        if without.is_empty() {
            self.profile.name().to_string()
        } else if without.len() <= 3 {
            let names: Vec<String> = without.iter().map(|l| format!("-{l}")).collect();
            format!("{} {}", self.profile, names.join(" "))
        } else {
            let names: Vec<&str> = self.layers.iter().map(|l| l.name()).collect();
            format!("{} only{{{}}}", self.profile, names.join(","))
        }
    }

    /// Whether an op ALLOWED under `self` is ALLOWED under `other` (and one BLOCKED under
    /// `other` is not ALLOWED under `self`): `self` has every layer of `other`, the extra ones
    /// are restrict-only, and no shared layer is configured more loosely in `self`.
    fn at_least_as_strict_as(&self, other: &RunKey) -> bool {
        is_subset(other.layers, self.layers)
            && self
                .layers
                .iter()
                .filter(|l| !other.layers.has(*l))
                .all(|l| RESTRICT_ONLY.contains(&l))
            && (!other.layers.has(Layer::Landlock) || self.profile >= other.profile)
    }
}

/// What one probe run produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The probe ran; its rows in output order.
    Rows(Vec<OpResult>),
    /// The launcher could not set the sandbox up (exit 125): the message.
    SetupFailed(String),
    /// The run failed otherwise (probe crashed, bad output, timeout): the message.
    Failed(String),
}

/// Which ops a run asks the probe for: a main profile run takes them all; an ablation run only
/// the ops whose attribution needs it (`probe --only ID ...`). Every op runs in its own forked
/// child, so the subset does not change any op's result, and the slow ones (bounded fork and
/// memory tests) only run where they are BLOCKED.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ops {
    /// Every op of the probe.
    All,
    /// Only these ids.
    Only(BTreeSet<String>),
}

/// The runs still needed, with the ops each one must include.
pub type Needed = BTreeMap<RunKey, BTreeSet<String>>;

/// What a run says about one op.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    Allowed,
    Blocked,
    /// SKIPPED or INFO: no evidence about blocking.
    Other(Verdict),
    NotRun,
    SetupFailed(String),
    NoEvidence(String),
}

/// Everything learnt from the runs made under one key (possibly several op subsets).
#[derive(Debug, Clone, Default)]
struct RunData {
    rows: BTreeMap<String, OpResult>,
    /// Row order of the first run that printed them (the probe's table order).
    order: Vec<String>,
    /// A run with every op completed.
    all_ops: bool,
    setup_failed: Option<String>,
    /// The whole run failed (all ops).
    failed_all: Option<String>,
    /// Ops of a failed subset run, with the reason.
    failed: BTreeMap<String, String>,
}

/// Every run made so far and its outcome.
#[derive(Debug, Clone, Default)]
pub struct Evidence {
    runs: BTreeMap<RunKey, RunData>,
}

/// How one run key fared, for the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunSummary {
    /// The run.
    pub key: RunKey,
    /// `ok`, `setup-failed` or `failed`.
    pub status: &'static str,
    /// Why it failed (empty when ok).
    pub detail: String,
    /// How many op rows it produced.
    pub rows: usize,
}

impl Evidence {
    /// Records a run of `ops` under `key`.
    pub fn insert(&mut self, key: RunKey, ops: &Ops, outcome: Outcome) {
        let data = self.runs.entry(key).or_default();
        match outcome {
            Outcome::Rows(rows) => {
                for r in rows {
                    if !data.rows.contains_key(&r.id) {
                        data.order.push(r.id.clone());
                    }
                    data.rows.insert(r.id.clone(), r);
                }
                if *ops == Ops::All {
                    data.all_ops = true;
                }
            }
            Outcome::SetupFailed(msg) => data.setup_failed = Some(msg),
            Outcome::Failed(msg) => match ops {
                Ops::All => data.failed_all = Some(msg),
                Ops::Only(ids) => {
                    for id in ids {
                        data.failed.insert(id.clone(), msg.clone());
                    }
                }
            },
        }
    }

    /// Whether a run under `key` was made (for any ops).
    pub fn has_run(&self, key: &RunKey) -> bool {
        self.runs.contains_key(key)
    }

    /// The main-run failure of `key`, if it failed.
    pub fn failure(&self, key: &RunKey) -> Option<&str> {
        let d = self.runs.get(key)?;
        d.setup_failed.as_deref().or(d.failed_all.as_deref())
    }

    /// One summary per run key, in key order.
    pub fn summaries(&self) -> Vec<RunSummary> {
        self.runs
            .iter()
            .map(|(k, d)| {
                let (status, detail) =
                    match (&d.setup_failed, &d.failed_all, d.failed.values().next()) {
                        (Some(m), _, _) => ("setup-failed", m.clone()),
                        (None, Some(m), _) | (None, None, Some(m)) => ("failed", m.clone()),
                        (None, None, None) => ("ok", String::new()),
                    };
                RunSummary {
                    key: *k,
                    status,
                    detail,
                    rows: d.rows.len(),
                }
            })
            .collect()
    }

    /// The row of `op` in run `key`, if that run produced one.
    pub fn row(&self, key: &RunKey, op: &str) -> Option<&OpResult> {
        self.runs.get(key)?.rows.get(op)
    }

    fn seen(&self, key: &RunKey, op: &str) -> Seen {
        let Some(d) = self.runs.get(key) else {
            return self.infer(key, op);
        };
        if let Some(msg) = &d.setup_failed {
            return Seen::SetupFailed(msg.clone());
        }
        match d.rows.get(op) {
            Some(r) if r.result == Verdict::Allowed => return Seen::Allowed,
            Some(r) if r.result == Verdict::Blocked => return Seen::Blocked,
            Some(r) => return Seen::Other(r.result),
            None => {}
        }
        if let Some(msg) = d.failed_all.as_ref().or(d.failed.get(op)) {
            return Seen::NoEvidence(format!("run {} failed: {msg}", key.label()));
        }
        if d.all_ops {
            return Seen::NoEvidence(format!("run {} printed no row for it", key.label()));
        }
        self.infer(key, op)
    }

    /// The restrict-only inference of the module docs, over runs already made.
    fn infer(&self, key: &RunKey, op: &str) -> Seen {
        for (k, d) in &self.runs {
            let Some(row) = d.rows.get(op) else {
                continue;
            };
            if row.result == Verdict::Allowed && k.at_least_as_strict_as(key) {
                return Seen::Allowed;
            }
            if row.result == Verdict::Blocked && key.at_least_as_strict_as(k) {
                return Seen::Blocked;
            }
        }
        Seen::NotRun
    }
}

fn need(needed: &mut Needed, key: RunKey, op: &str) {
    needed.entry(key).or_default().insert(op.to_string());
}

/// The measured attribution of one (profile, op) cell.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Attribution {
    /// Layer names (or [`HOST`]) that block the op; empty when the op is not BLOCKED.
    pub blocker: Vec<String>,
    /// No single removal let the op through: the blockers each block it on their own.
    pub redundant: bool,
    /// Experiments that gave no evidence, and how redundant blockers were tested.
    pub notes: Vec<String>,
}

/// Attributes `op` under `profile`. Runs that are needed but neither made nor implied are added
/// to `needed`; the answer is then incomplete and the caller runs them and asks again.
pub fn attribute(ev: &Evidence, profile: Profile, op: &str, needed: &mut Needed) -> Attribution {
    let mut out = Attribution::default();
    if ev.seen(&RunKey::main(profile), op) != Seen::Blocked {
        return out;
    }
    if profile == Profile::None {
        out.blocker.push(HOST.to_string());
        return out;
    }

    // 1. Single removals.
    let all = profile.layers();
    let mut pending = false;
    for l in all.iter() {
        let key = RunKey::new(profile, all.without(l));
        match ev.seen(&key, op) {
            Seen::Allowed => out.blocker.push(l.name().to_string()),
            Seen::Blocked => {}
            Seen::Other(v) => out
                .notes
                .push(format!("{l}: removing it made the op {v}: no evidence")),
            Seen::NotRun => {
                need(needed, key, op);
                pending = true;
            }
            Seen::SetupFailed(msg) => out.notes.push(format!("{l}: not removable here ({msg})")),
            Seen::NoEvidence(msg) => out.notes.push(format!("{l}: no evidence ({msg})")),
        }
    }
    if pending || !out.blocker.is_empty() {
        return out;
    }

    // 2. The base: the strongest weaker profile that allows the op, judged under this
    // profile's configuration (`full`'s Landlock also restricts TCP, so the `landlock` layers
    // run from `full` are a different experiment than the `landlock` profile).
    let mut base = None;
    for q in Profile::ALL.into_iter().rev() {
        if q >= profile || !is_subset(q.layers(), all) {
            continue;
        }
        let key = RunKey::new(profile, q.layers());
        match ev.seen(&key, op) {
            Seen::Allowed => {
                base = Some(q);
                break;
            }
            Seen::NotRun => {
                need(needed, key, op);
                return out;
            }
            _ => {}
        }
    }
    let Some(base) = base else {
        // Nothing we can remove lets it through and even `none` blocks it: the host does.
        if ev.seen(&RunKey::main(Profile::None), op) == Seen::Blocked {
            out.blocker.push(HOST.to_string());
        } else {
            out.notes.push(
                "no weaker profile allows it, so its blockers cannot be tested alone".to_string(),
            );
        }
        return out;
    };

    // 3. Redundant: each layer added since the base, enabled alone on top of it.
    out.redundant = true;
    let added: Vec<Layer> = all.iter().filter(|l| !base.layers().has(*l)).collect();
    let mut alone_notes = Vec::new();
    for &l in &added {
        match alone(ev, profile, base, &added, l, op, needed) {
            Alone::Blocks(None) => out.blocker.push(l.name().to_string()),
            Alone::Blocks(Some(note)) => {
                out.blocker.push(l.name().to_string());
                alone_notes.push(note);
            }
            Alone::DoesNot | Alone::Pending => {}
            Alone::NoEvidence(note) => alone_notes.push(note),
        }
    }
    out.notes.push(format!(
        "no single removal lets it through; each blocker blocks it alone on top of {base}"
    ));
    out.notes.extend(alone_notes);
    out
}

/// Whether layer `l` blocks `op` on its own on top of `base`.
enum Alone {
    /// It does; the note says on top of which prerequisites it was tested.
    Blocks(Option<String>),
    DoesNot,
    Pending,
    NoEvidence(String),
}

/// Prerequisites tried, in order, when `base + l` cannot be set up: an unprivileged caller
/// needs a user namespace for the other namespaces and for dropping the bounding set, and
/// no_new_privs (or a user namespace) for Landlock and seccomp.
const PREREQUISITES: [&[Layer]; 4] = [
    &[],
    &[Layer::UserNs],
    &[Layer::NoNewPrivs],
    &[Layer::UserNs, Layer::NoNewPrivs],
];

/// Tests `l` alone on top of `base` (under `profile`'s configuration); when that cannot be set
/// up, on top of `base + F` for the first prerequisite set `F` (among the added layers) that
/// can, where `l` blocks iff the op is ALLOWED under `base + F` and BLOCKED under `base + F + l`.
fn alone(
    ev: &Evidence,
    profile: Profile,
    base: Profile,
    added: &[Layer],
    l: Layer,
    op: &str,
    needed: &mut Needed,
) -> Alone {
    let mut setup_failure = None;
    for f in PREREQUISITES {
        if f.contains(&l) || !f.iter().all(|x| added.contains(x)) {
            continue;
        }
        let with_f = f.iter().fold(base.layers(), |s, x| s.with(*x));
        let key = RunKey::new(profile, with_f.with(l));
        match ev.seen(&key, op) {
            Seen::NotRun => {
                need(needed, key, op);
                return Alone::Pending;
            }
            Seen::SetupFailed(msg) => {
                setup_failure.get_or_insert(msg);
            }
            Seen::NoEvidence(msg) => {
                return Alone::NoEvidence(format!("{l}: no evidence alone ({msg})"))
            }
            Seen::Allowed | Seen::Other(_) => return Alone::DoesNot,
            Seen::Blocked if f.is_empty() => return Alone::Blocks(None),
            Seen::Blocked => {
                let names: Vec<&str> = f.iter().map(|x| x.name()).collect();
                let prereq = names.join(" + ");
                return match ev.seen(&RunKey::new(profile, with_f), op) {
                    Seen::Allowed => Alone::Blocks(Some(format!(
                        "{l}: tested on top of {base} + {prereq} ({base} + {l} alone cannot be set up here)"
                    ))),
                    Seen::NotRun => {
                        need(needed, RunKey::new(profile, with_f), op);
                        Alone::Pending
                    }
                    _ => Alone::NoEvidence(format!(
                        "{l}: cannot be tested alone here ({base} + {prereq}, its prerequisite here, already blocks it)"
                    )),
                };
            }
        }
    }
    let why = setup_failure.unwrap_or_else(|| "no prerequisite set applies".to_string());
    Alone::NoEvidence(format!(
        "{l}: cannot be enabled alone on {base} here ({why})"
    ))
}

/// The runs still needed to attribute every BLOCKED op of `profiles`, given the evidence so far,
/// each with the ops it must include. Empty when the attribution is complete. The four main
/// profile runs (every op) come first: every other decision depends on them.
pub fn plan(ev: &Evidence, profiles: &[Profile]) -> Vec<(RunKey, Ops)> {
    let mains: Vec<(RunKey, Ops)> = Profile::ALL
        .into_iter()
        .map(RunKey::main)
        .filter(|k| !ev.has_run(k))
        .map(|k| (k, Ops::All))
        .collect();
    if !mains.is_empty() {
        return mains;
    }
    let mut needed = Needed::new();
    for &p in profiles {
        for op in op_ids(ev) {
            attribute(ev, p, &op, &mut needed);
        }
    }
    needed
        .into_iter()
        .map(|(k, ops)| (k, Ops::Only(ops)))
        .collect()
}

/// Every op id seen in any run, in the order the probe printed them (main runs first, weakest
/// profile first).
pub fn op_ids(ev: &Evidence) -> Vec<String> {
    let mut seen = BTreeSet::new();
    let mut ids = Vec::new();
    let mains = Profile::ALL.into_iter().map(RunKey::main);
    let keys: Vec<RunKey> = mains.chain(ev.runs.keys().copied()).collect();
    for k in keys {
        if let Some(d) = ev.runs.get(&k) {
            for id in &d.order {
                if seen.insert(id.clone()) {
                    ids.push(id.clone());
                }
            }
        }
    }
    ids
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::deps::Category;

    pub(crate) fn row(id: &str, result: Verdict, errno: Option<&str>) -> OpResult {
        OpResult {
            id: id.to_string(),
            title: format!("title of {id}"),
            category: Category::Fs,
            result,
            errno: errno.map(str::to_string),
            detail: String::new(),
        }
    }

    /// A synthetic sandbox: each op is blocked by a fixed set of layers (any one of them
    /// blocks it), or by the host; sets containing a namespace but not user-ns fail to set up
    /// when `unprivileged`.
    pub(crate) struct World {
        pub ops: Vec<(&'static str, Vec<Layer>)>,
        pub host_blocked: Vec<&'static str>,
        /// Ops that Landlock blocks only as `full` configures it (TCP restrictions).
        pub full_landlock: Vec<&'static str>,
        pub unprivileged: bool,
    }

    impl World {
        pub(crate) fn run(&self, key: &RunKey, ops: &Ops) -> Outcome {
            let ns = [
                Layer::MountNs,
                Layer::PidNs,
                Layer::NetNs,
                Layer::IpcNs,
                Layer::UtsNs,
                Layer::CgroupNs,
            ];
            if self.unprivileged {
                let has = |l: Layer| key.layers.has(l);
                if !has(Layer::UserNs) && ns.iter().any(|l| has(*l)) {
                    return Outcome::SetupFailed("exit 125: namespaces need user-ns".to_string());
                }
                if !has(Layer::UserNs)
                    && !has(Layer::NoNewPrivs)
                    && (has(Layer::Landlock) || has(Layer::Seccomp))
                {
                    return Outcome::SetupFailed("exit 125: restrict_self: EPERM".to_string());
                }
                if !has(Layer::UserNs) && has(Layer::Caps) {
                    return Outcome::SetupFailed("exit 125: PR_CAPBSET_DROP: EPERM".to_string());
                }
            }
            let rows = self
                .ops
                .iter()
                .filter(|(id, _)| match ops {
                    Ops::All => true,
                    Ops::Only(ids) => ids.contains(*id),
                })
                .map(|(id, blockers)| {
                    let blocked = self.host_blocked.contains(id)
                        || blockers.iter().any(|l| key.layers.has(*l))
                        || (self.full_landlock.contains(id)
                            && key.profile == Profile::Full
                            && key.layers.has(Layer::Landlock));
                    if blocked {
                        row(id, Verdict::Blocked, Some("EPERM"))
                    } else {
                        row(id, Verdict::Allowed, None)
                    }
                })
                .collect();
            Outcome::Rows(rows)
        }

        /// Plans and runs rounds until attribution is complete; returns the evidence and the
        /// number of runs made.
        pub(crate) fn evidence(&self) -> (Evidence, usize) {
            let mut ev = Evidence::default();
            let mut made = 0;
            for _round in 0..32 {
                let needed = plan(&ev, &Profile::ALL);
                if needed.is_empty() {
                    return (ev, made);
                }
                for (k, ops) in needed {
                    made += 1;
                    let outcome = self.run(&k, &ops);
                    ev.insert(k, &ops, outcome);
                }
            }
            panic!("planning did not converge");
        }
    }

    fn attr(ev: &Evidence, p: Profile, op: &str) -> Attribution {
        let mut needed = Needed::new();
        let a = attribute(ev, p, op, &mut needed);
        assert!(needed.is_empty(), "still needs {needed:?}");
        a
    }

    fn names(a: &Attribution) -> Vec<&str> {
        a.blocker.iter().map(String::as_str).collect()
    }

    fn world(unprivileged: bool) -> World {
        World {
            ops: vec![
                ("fs.write.root", vec![Layer::Landlock]),
                ("net.raw", vec![Layer::Caps]),
                (
                    "sys.mount",
                    vec![Layer::Landlock, Layer::Caps, Layer::Seccomp],
                ),
                ("net.tcp", vec![Layer::NetNs]),
                ("fs.shadow", vec![]),
                ("fs.ok", vec![]),
            ],
            host_blocked: vec!["fs.shadow"],
            full_landlock: vec![],
            unprivileged,
        }
    }

    #[test]
    fn single_blocker() {
        for unpriv in [false, true] {
            let (ev, _) = world(unpriv).evidence();
            assert_eq!(
                names(&attr(&ev, Profile::Landlock, "fs.write.root")),
                ["landlock"]
            );
            assert_eq!(
                names(&attr(&ev, Profile::Full, "fs.write.root")),
                ["landlock"]
            );
            assert_eq!(names(&attr(&ev, Profile::Full, "net.raw")), ["caps"]);
            assert!(!attr(&ev, Profile::Full, "net.raw").redundant);
            assert_eq!(names(&attr(&ev, Profile::NsOnly, "net.tcp")), ["net-ns"]);
            assert!(attr(&ev, Profile::NsOnly, "fs.write.root")
                .blocker
                .is_empty());
            assert!(attr(&ev, Profile::Full, "fs.ok").blocker.is_empty());
        }
    }

    #[test]
    fn redundant_blockers_are_tested_alone_on_the_base() {
        for unpriv in [false, true] {
            let (ev, _) = world(unpriv).evidence();
            let a = attr(&ev, Profile::Full, "sys.mount");
            assert!(a.redundant);
            assert_eq!(names(&a), ["landlock", "caps", "seccomp"]);
            // Under landlock only landlock blocks it: a single removal finds it.
            let a = attr(&ev, Profile::Landlock, "sys.mount");
            assert!(!a.redundant);
            assert_eq!(names(&a), ["landlock"]);
        }
    }

    #[test]
    fn redundant_namespace_uses_user_ns_fallback_when_unprivileged() {
        let w = World {
            ops: vec![("net.tcp", vec![Layer::NetNs, Layer::Landlock])],
            host_blocked: vec![],
            full_landlock: vec![],
            unprivileged: true,
        };
        let (ev, _) = w.evidence();
        let a = attr(&ev, Profile::Full, "net.tcp");
        assert!(a.redundant);
        assert_eq!(names(&a), ["net-ns", "landlock"]);
        assert!(
            a.notes
                .iter()
                .any(|n| n.contains("net-ns: tested on top of none + user-ns")),
            "{:?}",
            a.notes
        );
        let a = attr(&ev, Profile::NsOnly, "net.tcp");
        assert_eq!(names(&a), ["net-ns"]);
        assert!(!a.redundant);
    }

    #[test]
    fn base_is_judged_under_the_profiles_own_configuration() {
        for unprivileged in [false, true] {
            let w = World {
                ops: vec![("bind", vec![Layer::Caps])],
                host_blocked: vec![],
                full_landlock: vec!["bind"],
                unprivileged,
            };
            let (ev, _) = w.evidence();
            // Under `landlock` Landlock does not restrict TCP: the op is allowed there, yet
            // `full`'s Landlock blocks it, so the base for `full` must be `ns-only`, and neither
            // limits nor seccomp may be blamed for what full's Landlock does.
            assert_eq!(
                attr(&ev, Profile::Landlock, "bind").blocker,
                Vec::<String>::new()
            );
            let a = attr(&ev, Profile::Full, "bind");
            assert!(a.redundant);
            assert_eq!(names(&a), ["landlock", "caps"]);
        }
    }

    #[test]
    fn prerequisites_are_added_when_a_layer_cannot_be_enabled_alone() {
        let w = World {
            ops: vec![("vsock", vec![Layer::Seccomp, Layer::NetNs])],
            host_blocked: vec![],
            full_landlock: vec![],
            unprivileged: true,
        };
        let (ev, _) = w.evidence();
        let a = attr(&ev, Profile::Full, "vsock");
        assert!(a.redundant);
        assert_eq!(names(&a), ["net-ns", "seccomp"]);
        assert!(
            a.notes
                .iter()
                .any(|n| n.starts_with("seccomp: tested on top of none + user-ns (")),
            "{:?}",
            a.notes
        );
    }

    #[test]
    fn host_blocked_ops_are_attributed_to_host() {
        let (ev, _) = world(false).evidence();
        for p in Profile::ALL {
            let a = attr(&ev, p, "fs.shadow");
            assert_eq!(names(&a), ["host"]);
            assert!(!a.redundant);
        }
    }

    #[test]
    fn failed_ablation_is_recorded_not_guessed() {
        let (ev, _) = world(true).evidence();
        let a = attr(&ev, Profile::Full, "fs.write.root");
        assert_eq!(names(&a), ["landlock"]);
        assert!(
            a.notes
                .iter()
                .any(|n| n == "user-ns: not removable here (exit 125: namespaces need user-ns)"),
            "{:?}",
            a.notes
        );
        // An op only user-ns blocks: its removal cannot be made unprivileged, so the alone test
        // on top of none finds it (and flags it redundant, since no removal was possible).
        let w = World {
            ops: vec![("x", vec![Layer::UserNs])],
            host_blocked: vec![],
            full_landlock: vec![],
            unprivileged: true,
        };
        let (ev, _) = w.evidence();
        let a = attr(&ev, Profile::NsOnly, "x");
        assert!(a.redundant);
        assert!(a.blocker.contains(&"user-ns".to_string()), "{a:?}");
    }

    #[test]
    fn skipped_after_removal_is_no_evidence() {
        let mut ev = Evidence::default();
        let p = Profile::NsOnly;
        for q in Profile::ALL {
            let v = if q == Profile::None {
                Verdict::Allowed
            } else {
                Verdict::Blocked
            };
            ev.insert(
                RunKey::main(q),
                &Ops::All,
                Outcome::Rows(vec![row("k", v, None)]),
            );
        }
        for l in p.layers().iter() {
            let v = if l == Layer::PidNs {
                Verdict::Skipped
            } else {
                Verdict::Blocked
            };
            ev.insert(
                RunKey::new(p, p.layers().without(l)),
                &Ops::All,
                Outcome::Rows(vec![row("k", v, None)]),
            );
        }
        let mut needed = Needed::new();
        let a = attribute(&ev, p, "k", &mut needed);
        assert!(a
            .notes
            .iter()
            .any(|n| n == "pid-ns: removing it made the op SKIPPED: no evidence"));
        assert!(a.blocker.is_empty());
        assert!(a.redundant);
        // The alone runs on top of none are now needed.
        assert!(needed.contains_key(&RunKey::new(p, LayerSet::of(&[Layer::PidNs]))));
    }

    #[test]
    fn normalization_and_args() {
        let k = RunKey::new(
            Profile::Landlock,
            Profile::Landlock.layers().without(Layer::Landlock),
        );
        assert_eq!(k, RunKey::main(Profile::NsOnly));
        assert_eq!(
            RunKey::new(Profile::Full, LayerSet::EMPTY),
            RunKey::main(Profile::None)
        );
        let k = RunKey::new(Profile::Full, LayerSet::of(&[Layer::Landlock]));
        assert_eq!(k.profile, Profile::Full);
        let k = RunKey::new(Profile::Landlock, LayerSet::of(&[Layer::Landlock]));
        assert_eq!(k.profile, Profile::Landlock);
        let k = RunKey::new(
            Profile::Full,
            Profile::Full.layers().without(Layer::Seccomp),
        );
        assert_eq!(k.args(), ["--profile", "full", "--without", "seccomp"]);
        assert_eq!(k.label(), "full -seccomp");
        assert_eq!(
            RunKey::main(Profile::NsOnly).args(),
            ["--profile", "ns-only"]
        );
    }

    #[test]
    fn inference_saves_runs_and_never_crosses_namespaces() {
        let full_minus_caps =
            RunKey::new(Profile::Full, Profile::Full.layers().without(Layer::Caps));
        let landlock = RunKey::main(Profile::Landlock);
        assert!(full_minus_caps.at_least_as_strict_as(&landlock));
        assert!(!landlock.at_least_as_strict_as(&full_minus_caps));
        let ns = RunKey::main(Profile::NsOnly);
        let none = RunKey::main(Profile::None);
        assert!(
            !ns.at_least_as_strict_as(&none),
            "user-ns grants capabilities"
        );
        // Landlock configured by `landlock` is looser than by `full`.
        let ll_only_full = RunKey::new(Profile::Full, LayerSet::of(&[Layer::Landlock]));
        let ll_only = RunKey::new(Profile::Landlock, LayerSet::of(&[Layer::Landlock]));
        assert!(ll_only_full.at_least_as_strict_as(&ll_only));
        assert!(!ll_only.at_least_as_strict_as(&ll_only_full));

        let (_, made) = world(false).evidence();
        // 4 main + at most 13 + 8 + 7 single removals (landlock minus landlock is ns-only)
        // + alone runs for sys.mount; inference must keep it well below the naive count.
        assert!(made < 4 + 13 + 9 + 8 + 13, "made {made} runs");
    }
}
