//! The run's limits made ahead of its spawn (`Prepared::prepare_limits`, issue 19: the CLI
//! makes them while the placeholders' helper is still busy, instead of after waiting for it):
//! the run reports the same limits as one that made them in its spawn (how each is enforced,
//! and what is not: unprivileged here, no writable cgroup); with a cgroup leaf (root), the
//! spawn takes that leaf rather than making a second one, and a leaf no spawn took is removed
//! when the `Prepared` is dropped (the CLI drops it when it prepares again).
//!
//! Runs in this process (as whoever runs the test) and, when that is root, again as uid 65534
//! in a copy of this test binary. Skipped with a reason where no sandbox can be set up; as
//! root without a writable cgroup hierarchy the leaf checks are skipped with a printed reason
//! (a failure where AGENTCAGE_TEST_EXPECT lists `cgroup`).

mod common;

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use agentcage::{Command, Error, Exit, Policy, Profile, RunOutcome, SpawnOptions};

const CHILD_ENV: &str = "AGENTCAGE_TEST_EARLY_LIMITS_DIR";

/// The leaf directories of this process's runs (`agentcage-<our pid>-<random>`) anywhere
/// under /sys/fs/cgroup (every hierarchy; a leaf sits a few levels down).
fn our_leaves() -> Vec<PathBuf> {
    let prefix = format!("agentcage-{}-", std::process::id());
    let mut found = Vec::new();
    let mut todo = vec![(PathBuf::from("/sys/fs/cgroup"), 0usize)];
    while let Some((dir, depth)) = todo.pop() {
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in rd.flatten() {
            if !e.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            if e.file_name().to_string_lossy().starts_with(&prefix) {
                found.push(e.path());
            } else if depth < 8 {
                todo.push((e.path(), depth + 1));
            }
        }
    }
    found.sort();
    found
}

fn prepared(ws: &Path) -> Result<agentcage::Prepared, String> {
    let policy = Policy::for_profile(Profile::Full, ws.to_path_buf());
    let cmd = Command {
        argv: vec!["/bin/true".into()],
        self_exe: None,
    };
    agentcage::prepare(&policy, &cmd).map_err(|e| format!("prepare: {e}"))
}

/// Runs `p`, collecting what the spawn says about each limit ("enforced: ..." and
/// "degraded: ..." lines).
fn run(p: &agentcage::Prepared) -> Result<(RunOutcome, Vec<String>), Error> {
    let said = Rc::new(RefCell::new(Vec::new()));
    let (a, b) = (Rc::clone(&said), Rc::clone(&said));
    let opts = SpawnOptions {
        on_enforcement: Some(Box::new(move |what: &str, how: &str| {
            a.borrow_mut().push(format!("enforced: {what}: {how}"));
        })),
        on_degraded: Some(Box::new(move |what: &str, how: &str| {
            b.borrow_mut().push(format!("degraded: {what}: {how}"));
        })),
        ..SpawnOptions::default()
    };
    let o = p.run(&opts)?;
    drop(opts);
    let lines = std::mem::take(&mut *said.borrow_mut());
    Ok((o, lines))
}

fn cgroup_expected() -> bool {
    std::env::var("AGENTCAGE_TEST_EXPECT")
        .unwrap_or_default()
        .split(',')
        .any(|l| l.trim() == "cgroup")
}

/// Ok(None) passed, Ok(Some) skipped.
fn scenario(ws: &Path) -> Result<Option<String>, String> {
    if !our_leaves().is_empty() {
        return Err(format!("leaves before the test: {:?}", our_leaves()));
    }
    // The reference: limits made in the spawn.
    let (o, late) = match run(&prepared(ws)?) {
        Ok(r) => r,
        Err(e) => {
            return match common::no_sandbox_here(&e) {
                Some(why) => Ok(Some(why)),
                None => Err(format!("run: {e}")),
            }
        }
    };
    if o.exit != Exit::Code(0) {
        return Err(format!("/bin/true: {:?}", o.exit));
    }
    drop(o);
    if late.iter().all(|l| !l.contains("pids")) {
        return Err(format!("no line about the pids limit: {late:?}"));
    }

    // Made ahead and never spawned: removed with the Prepared.
    let p = prepared(ws)?;
    p.prepare_limits();
    let leaf = !our_leaves().is_empty();
    if common::is_root() && !leaf {
        if cgroup_expected() {
            return Err("AGENTCAGE_TEST_EXPECT lists cgroup, but root got no leaf".into());
        }
        eprintln!("skip the leaf checks: the full profile's limits made no cgroup leaf here");
    }
    drop(p);
    let left = our_leaves();
    if !left.is_empty() {
        return Err(format!(
            "an unused early leaf outlived its Prepared: {left:?}"
        ));
    }

    // Made ahead and spawned: the run says what a run that made them itself says, and takes
    // that leaf (removed at its end) instead of making its own.
    let p = prepared(ws)?;
    p.prepare_limits();
    let early = our_leaves();
    if leaf && early.is_empty() {
        return Err("the second prepare_limits made no leaf".into());
    }
    let (o, said) = run(&p).map_err(|e| format!("run: {e}"))?;
    if o.exit != Exit::Code(0) {
        return Err(format!("/bin/true: {:?}", o.exit));
    }
    if said != late {
        return Err(format!(
            "made ahead, the run said {said:?}; made in the spawn, {late:?}"
        ));
    }
    // The outcome holds the run's end (the init's reap, the leaf's removal) until dropped:
    // until then the run's leaf is there, and it is the early one, the only one.
    let during = our_leaves();
    if during != early {
        return Err(format!(
            "the run did not take the early leaf {early:?}: its leaves are {during:?}"
        ));
    }
    drop(o);
    let left = our_leaves();
    if !left.is_empty() {
        return Err(format!("the run's leaf outlived its outcome: {left:?}"));
    }
    Ok(None)
}

#[test]
fn the_spawn_takes_the_early_limits_and_unused_ones_are_removed() {
    common::as_caller_and_nobody(
        "the_spawn_takes_the_early_limits_and_unused_ones_are_removed",
        CHILD_ENV,
        "earlylimits",
        Some("userns"),
        scenario,
    );
}
