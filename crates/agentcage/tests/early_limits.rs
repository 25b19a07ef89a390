//! The run's limits made ahead of its spawn (`Prepared::prepare_limits`, issue 19: the CLI
//! makes the cgroup leaf while the placeholders' helper is still busy, instead of after
//! waiting for it): the spawn takes that leaf rather than making a second one, and a leaf no
//! spawn took is removed when the `Prepared` is dropped (the CLI drops it when it prepares
//! again). Root only: the leaf needs a writable cgroup hierarchy; skipped with the reason
//! elsewhere, a failure where AGENTCAGE_TEST_EXPECT lists `cgroup` and root has none.

use std::path::{Path, PathBuf};

use agentcage::{Command, Exit, Policy, Profile, SpawnOptions};

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

fn is_root() -> bool {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() == 0 }
}

fn prepared(ws: &Path) -> agentcage::Prepared {
    let policy = Policy::for_profile(Profile::Full, ws.to_path_buf());
    let cmd = Command {
        argv: vec!["/bin/true".into()],
        self_exe: None,
    };
    agentcage::prepare(&policy, &cmd).expect("prepare the full profile")
}

/// Ok(None) passed, Ok(Some) skipped.
fn scenario(ws: &Path) -> Result<Option<String>, String> {
    if !is_root() {
        return Ok(Some("needs root (a writable cgroup hierarchy)".into()));
    }
    if !our_leaves().is_empty() {
        return Err(format!("leaves before the test: {:?}", our_leaves()));
    }
    // Made ahead and never spawned: removed with the Prepared.
    let p = prepared(ws);
    p.prepare_limits();
    let made = our_leaves();
    if made.is_empty() {
        return Ok(Some(
            "the full profile's limits made no cgroup leaf for root here".into(),
        ));
    }
    drop(p);
    let left = our_leaves();
    if !left.is_empty() {
        return Err(format!(
            "an unused early leaf outlived its Prepared: {left:?}"
        ));
    }
    // Made ahead and spawned: the run takes that leaf (and removes it at its end) instead of
    // making its own.
    let p = prepared(ws);
    p.prepare_limits();
    let early = our_leaves();
    if early.is_empty() {
        return Err("the second prepare_limits made no leaf".into());
    }
    let o = p
        .run(&SpawnOptions::default())
        .map_err(|e| format!("run: {e}"))?;
    if o.exit != Exit::Code(0) {
        return Err(format!("/bin/true: {:?}", o.exit));
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
    drop(p);
    Ok(None)
}

#[test]
fn the_spawn_takes_the_early_leaf_and_an_unused_one_is_removed() {
    let ws = std::env::temp_dir().join(format!("agentcage-early-limits-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&ws);
    std::fs::create_dir_all(&ws).expect("mkdir ws");
    let r = scenario(&ws);
    let _ = std::fs::remove_dir_all(&ws);
    match r {
        Ok(None) => {}
        Ok(Some(why)) => {
            let listed = std::env::var("AGENTCAGE_TEST_EXPECT").unwrap_or_default();
            assert!(
                !(is_root() && listed.split(',').any(|l| l.trim() == "cgroup")),
                "AGENTCAGE_TEST_EXPECT lists cgroup, but: {why}"
            );
            eprintln!("skip: {why}");
        }
        Err(e) => panic!("{e}"),
    }
}
