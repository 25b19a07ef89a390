//! cgroup v2 (unified): choosing the base of the leaf.

use super::*;

/// Finds the v2 base: the nearest writable ancestor whose subtree_control has (or accepts) the
/// controllers we want. Falls back to the best partial one.
pub(super) fn choose_v2(h: &Hierarchy, want: &[Ctl], why: &mut Vec<String>) -> Option<Choice> {
    let mut best: Option<Choice> = None;
    let mut first_err: Option<String> = None;
    for base in h.candidates() {
        let parent = base.join(PARENT_DIR);
        let created = match mkdir_writable(&parent) {
            Ok(c) => c,
            Err(e) => {
                first_err.get_or_insert_with(|| format!("v2 {}: {}", parent.display(), short(&e)));
                continue;
            }
        };
        let available = words(&base.join("cgroup.controllers"));
        let mut enabled = words(&base.join("cgroup.subtree_control"));
        for c in want {
            let n = c.name();
            if available.iter().any(|a| a == n) && !enabled.iter().any(|e| e == n) {
                // EBUSY where processes live (our own cgroup): that is v2's rule, not an error.
                if write_file(&base.join("cgroup.subtree_control"), &format!("+{n}")).is_ok() {
                    enabled.push(n.to_owned());
                }
            }
        }
        let roles: Vec<Ctl> = want
            .iter()
            .copied()
            .filter(|c| enabled.iter().any(|e| e == c.name()))
            .collect();
        let complete = want
            .iter()
            .all(|c| roles.contains(c) || !available.iter().any(|a| a == c.name()));
        let better = match &best {
            None => true,
            Some(b) => roles.len() > b.roles.len(),
        };
        if better {
            if let Some(old) = best.take() {
                let _ = fs::remove_dir(old.base.join(PARENT_DIR));
            }
            best = Some(Choice {
                hierarchy: h.clone(),
                base,
                roles,
            });
        } else if created {
            let _ = fs::remove_dir(&parent);
        }
        if complete && best.as_ref().is_some_and(|b| b.roles.len() == want.len()) {
            break;
        }
        if complete && available.is_empty() {
            // Nothing to gain further up in a tree without controllers (e.g. a hybrid host).
            break;
        }
    }
    if best.is_none() {
        why.extend(first_err);
    }
    best
}
