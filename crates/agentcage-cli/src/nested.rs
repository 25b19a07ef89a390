//! The nested rung from the CLI's side (issue #14): `--best-effort` falls back to it when no
//! user namespace can be created here, and every run of it says so (never silently).

use agentcage::{Layer, Policy, Profile};

use crate::ui;

/// With `--best-effort` and a profile that needs a user namespace: when the user-namespace
/// trial fails here, the policy becomes the nested rung (minus the layers removed with
/// `--without`), and the warning says why and what is lost. A nested run (chosen either way)
/// is announced unless `-q`.
pub fn choose_rung(policy: &mut Policy, quiet: bool) {
    if policy.profile != Profile::Nested && policy.best_effort && policy.layers.has(Layer::UserNs) {
        let trial = agentcage::host::userns_trial();
        if trial.works {
            return;
        }
        let removed: Vec<Layer> = policy
            .profile
            .layers()
            .iter()
            .filter(|l| !policy.layers.has(*l))
            .collect();
        let from = policy.profile;
        policy.profile = Profile::Nested;
        policy.layers = removed
            .iter()
            .fold(Profile::Nested.layers(), |s, l| s.without(*l));
        if from == Profile::Full {
            policy.landlock.restrict_net = true;
            policy.landlock.scope = true;
        }
        if !quiet {
            let mut why = trial
                .reason
                .unwrap_or_else(|| "user namespaces fail".into());
            if let Some(fix) = trial.fix {
                why.push_str("; fix: ");
                why.push_str(&fix);
            }
            ui::warning(&format!(
                "--best-effort: no user namespace here ({why}): running profile {from} as the \
                 nested rung (no namespaces); lost compared to full: {}",
                agentcage::ladder::nested_lost().join("; ")
            ));
        }
        return;
    }
    if policy.profile == Profile::Nested && !quiet {
        ui::warning(
            "profile nested: no namespaces: the agent shares this host's pids, network (all \
             but TCP), IPC and /tmp, sees its real tree through Landlock's allow-list, and can \
             write the workspace's protected paths (.git/hooks, .git/config, .envrc, ...): \
             review them before git or an editor runs them (`agentcage doctor` and `run -v` \
             list what is kept and lost)",
        );
    }
}

/// `run -v`'s lines about the nested rung.
pub fn verbose_lines(policy: &Policy) -> Vec<String> {
    if policy.profile != Profile::Nested {
        return Vec::new();
    }
    let mut v: Vec<String> = agentcage::ladder::nested_kept()
        .into_iter()
        .map(|k| format!("rung nested: kept: {k}"))
        .collect();
    v.extend(
        agentcage::ladder::nested_lost()
            .into_iter()
            .map(|l| format!("rung nested: lost vs full: {l}")),
    );
    v
}
