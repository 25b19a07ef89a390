//! cgroup v1: choosing the base of the leaf in one hierarchy.

use super::*;

/// Finds the v1 base of a hierarchy: our own cgroup, or the nearest writable ancestor.
pub(super) fn choose_v1(h: &Hierarchy, want: &[Ctl], why: &mut Vec<String>) -> Option<Choice> {
    let mut first_err: Option<String> = None;
    for base in h.candidates() {
        match mkdir_writable(&base.join(PARENT_DIR)) {
            Ok(_) => {
                let roles = h
                    .controllers
                    .iter()
                    .copied()
                    .filter(|c| want.contains(c) || *c == Ctl::Freezer)
                    .collect();
                return Some(Choice {
                    hierarchy: h.clone(),
                    base,
                    roles,
                });
            }
            Err(e) => {
                first_err.get_or_insert_with(|| {
                    format!("v1 {}: {}", base.join(PARENT_DIR).display(), short(&e))
                });
            }
        }
    }
    why.extend(first_err);
    None
}
