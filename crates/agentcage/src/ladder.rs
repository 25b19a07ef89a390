//! The degradation ladder: for each profile, whether this caller can enforce each of its
//! layers and, if not, which weaker set remains and exactly which guarantees are lost.

use serde::Serialize;

use crate::host::{Features, LimitsBackend, UsernsStep};
use crate::policy::{Layer, LayerSet, Profile};

/// Whether one layer can be enforced by this caller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "kebab-case")]
pub enum LayerStatus {
    /// Fully enforceable.
    Available,
    /// Enforceable, but weaker than on a fully capable host.
    Degraded {
        /// Why.
        reason: String,
        /// What is weaker.
        lost: String,
    },
    /// Cannot be enforced here.
    Unavailable {
        /// Why.
        reason: String,
        /// The guarantee lost without it.
        lost: String,
    },
}

impl LayerStatus {
    /// Available or degraded.
    pub fn enforceable(&self) -> bool {
        !matches!(self, LayerStatus::Unavailable { .. })
    }
}

/// One layer of a profile with its status.
#[derive(Debug, Clone, Serialize)]
pub struct LayerReport {
    /// The layer.
    pub layer: Layer,
    /// Its status here.
    #[serde(flatten)]
    pub status: LayerStatus,
}

/// What `--best-effort` leaves of a profile that cannot be enforced.
#[derive(Debug, Clone, Serialize)]
pub struct Fallback {
    /// The layers that still apply.
    pub layers: Vec<Layer>,
    /// The guarantees lost, one sentence each.
    pub lost: Vec<String>,
    /// The strongest weaker profile that is fully enforceable here.
    pub nearest_profile: Option<Profile>,
}

/// One rung of the ladder: a profile, as this caller could run it.
#[derive(Debug, Clone, Serialize)]
pub struct Rung {
    /// The profile.
    pub profile: Profile,
    /// Every layer is available or degraded.
    pub enforceable: bool,
    /// Each layer of the profile and its status.
    pub layers: Vec<LayerReport>,
    /// Weakened-but-enforced layers, one sentence each.
    pub degraded: Vec<String>,
    /// For a profile that cannot be enforced: what `--best-effort` would give.
    pub fallback: Option<Fallback>,
}

/// The reason given for a namespace layer that fails only because the user namespace does.
pub const USERNS_DEPENDENT: &str = "created inside the user namespace, which fails (see user-ns)";

const NAMESPACE_LAYERS: [Layer; 7] = [
    Layer::UserNs,
    Layer::MountNs,
    Layer::PidNs,
    Layer::NetNs,
    Layer::IpcNs,
    Layer::UtsNs,
    Layer::CgroupNs,
];

/// The guarantee a missing layer takes away.
fn lost_without(layer: Layer, f: &Features) -> String {
    let landlock_net = f.landlock.has("net", "connect_tcp");
    match layer {
        Layer::UserNs if f.caller.is_root => "no namespaces at all (the launcher creates every \
             namespace inside the user namespace): the agent sees the whole host filesystem, \
             limited only by Landlock's allow-list if present, shares the host network, pids, IPC \
             and hostname, and keeps host uid 0, so only the caps layer and Landlock separate it \
             from the host"
            .into(),
        Layer::UserNs => "no namespaces at all (an unprivileged caller needs the user namespace \
             for every other one): the agent sees the whole host filesystem, limited only by \
             Landlock's allow-list if present (read/exec on system dirs, read on /etc and /proc, \
             writes only to the workspace, /tmp and --rw paths; the host /tmp is shared), shares \
             the host network, pids (it sees your processes and can signal those of your uid), \
             IPC and hostname, and runs as your uid"
            .into(),
        Layer::MountNs => "no private root: the agent sees the host filesystem; only Landlock \
             (if enabled) restricts it"
            .into(),
        Layer::PidNs => "shares the host pid namespace: it sees every process in /proc and can \
             signal those of its uid"
            .into(),
        Layer::NetNs if landlock_net => "shares the host network (LAN, internet, host loopback \
             services); in full, Landlock still denies TCP bind/connect"
            .into(),
        Layer::NetNs => "shares the host network: it can reach the LAN, the internet and \
             services on the host's loopback"
            .into(),
        Layer::IpcNs => "shares SysV IPC and POSIX message queues with the host".into(),
        Layer::UtsNs => "shares (and, with CAP_SYS_ADMIN, could change) the hostname".into(),
        Layer::CgroupNs => "sees the host's cgroup paths".into(),
        Layer::Hygiene => "inherits fds, the whole environment and the controlling terminal".into(),
        Layer::Landlock => "no filesystem allow-list: inside the private root the agent may \
             write everything mounted writable and read everything bound in (the mount-ns root \
             still hides the rest of the host); no TCP or scope restrictions"
            .into(),
        Layer::Caps => "keeps its capabilities inside the user namespace (raw sockets, mounts \
             in its namespaces)"
            .into(),
        Layer::NoNewPrivs => "setuid binaries could raise privileges".into(),
        Layer::Seccomp if f.compat.ia32.available => "no syscall filter: mount, ptrace, unshare \
             (nested user namespaces expose kernel attack surface), bpf, keyctl, io_uring and the \
             live i386 `int 0x80` entry point stay reachable; caps and no_new_privs still apply"
            .into(),
        Layer::Seccomp => "no syscall filter: mount, ptrace, unshare (nested user namespaces \
             expose kernel attack surface), bpf, keyctl and io_uring stay reachable; caps and \
             no_new_privs still apply"
            .into(),
        Layer::Limits => {
            "no resource limits: fork bombs and memory exhaustion are unmitigated".into()
        }
    }
}

/// What the nested rung (`--profile nested`, or `--best-effort` without user namespaces)
/// keeps of `full`, one sentence each.
pub fn nested_kept() -> Vec<String> {
    [
        "Landlock filesystem allow-list on the host's paths: /usr, /bin, /sbin, /lib* read and \
         execute; /etc (only its world-readable entries when the command keeps uid 0 or \
         supplementary groups; otherwise file permissions keep root's files closed), /proc \
         and /dev read; /dev/null, zero, \
         full, random, urandom and tty read/write; writes only to the workspace, /tmp, /dev/shm \
         and --rw paths; the rest of the host (homes, /root, /var, /opt, /srv, /mnt, /run, \
         ...) neither readable nor writable",
        "Landlock TCP rules (no bind or connect but --tcp-bind/--tcp-connect ports; ABI 4) and \
         scopes (no abstract unix socket or signal outside the sandbox; ABI 6); Landlock also \
         denies ptrace and /proc/PID/{environ,mem,fd} of processes outside",
        "the full seccomp filter, stacked on the caller's (a container's own filter still \
         applies)",
        "no capabilities (empty bounding set, locked securebits), no_new_privs",
        "as root, an unprivileged uid: the workspace owner's, else --host-uid (65534) if it \
         can write the workspace; uid 0 only with --allow-nested-root",
        "rlimits (and a cgroup where this one is delegated), the environment allow-list, fds \
         closed, the pty relay (no TIOCSTI into your terminal; the host's other terminals \
         are outside the allow-list)",
    ]
    .into_iter()
    .map(String::from)
    .collect()
}

/// What the nested rung loses compared to `full`, one sentence each.
pub fn nested_lost() -> Vec<String> {
    [
        "user-ns: the command runs as a real uid of this host (or container), not a mapped \
         one: it may read whatever that uid may read inside the allow-list, and its per-user \
         counts (processes, inotify, keys) are that uid's",
        "mount-ns: no composed root: the host's own tree behind the allow-list; /tmp and \
         /dev/shm are the host's, shared with its other users; protected paths (.git/hooks, \
         .git/config, .envrc, ...) stay writable (Landlock cannot take write access away \
         below the writable workspace); pathname unix sockets the uid may open stay \
         connectable (Landlock controls them only from ABI 9)",
        "pid-ns: it sees every process of the host (or container) and their command lines \
         (not their environment or memory: Landlock denies that, and signals outside with \
         ABI 6); without a delegated cgroup, a process it detaches (setsid, double fork) \
         outlives the run, still confined",
        "net-ns: it shares the network: UDP, ICMP and other non-TCP traffic is not \
         restricted (TCP is, by Landlock)",
        "ipc-ns, uts-ns, cgroup-ns: it shares SysV IPC and POSIX message queues, sees the \
         hostname and the cgroup paths",
    ]
    .into_iter()
    .map(String::from)
    .collect()
}

impl Features {
    /// The rung `run` takes here: `full` when it can be enforced, else `nested` with
    /// `--best-effort` (or `--profile nested`) when only the namespaces are missing.
    pub fn rung_to_run(&self) -> (Profile, String) {
        let full = self
            .ladder()
            .into_iter()
            .any(|r| r.profile == Profile::Full && r.enforceable);
        if full {
            return (Profile::Full, "every layer of full is enforceable".into());
        }
        let nested_ok = Profile::Nested
            .layers()
            .iter()
            .all(|l| self.layer_status(l).enforceable());
        if nested_ok {
            (
                Profile::Nested,
                "full cannot be enforced here (no user namespace); `run --best-effort` and \
                 `--profile nested` run the nested rung, plain `run` refuses"
                    .into(),
            )
        } else {
            (
                Profile::None,
                "neither full nor nested can be enforced here (see the layers above)".into(),
            )
        }
    }

    /// Whether this caller can enforce `layer`, and if not, why and what is lost.
    pub fn layer_status(&self, layer: Layer) -> LayerStatus {
        let unavailable = |reason: String| LayerStatus::Unavailable {
            reason,
            lost: lost_without(layer, self),
        };
        let trial = &self.userns.as_caller;
        let failed_at = trial.failed_step;
        let userns_reason = || {
            let mut r = trial
                .reason
                .clone()
                .unwrap_or_else(|| "user namespaces fail".into());
            if let Some(fix) = &trial.fix {
                r.push_str("; fix: ");
                r.push_str(fix);
            }
            r
        };
        // Steps up to the id maps decide the user namespace; later ones single out a layer.
        let userns_broken = matches!(
            failed_at,
            Some(
                UsernsStep::Fork
                    | UsernsStep::DropPrivileges
                    | UsernsStep::UnshareUser
                    | UsernsStep::WriteSetgroups
                    | UsernsStep::WriteUidMap
                    | UsernsStep::WriteGidMap
                    | UsernsStep::Killed
                    | UsernsStep::Timeout
            )
        );
        match layer {
            Layer::UserNs if userns_broken => unavailable(userns_reason()),
            l if NAMESPACE_LAYERS.contains(&l) && userns_broken => {
                unavailable(USERNS_DEPENDENT.to_string())
            }
            Layer::UserNs => LayerStatus::Available,
            l if NAMESPACE_LAYERS.contains(&l) => {
                let ns_name = match l {
                    Layer::MountNs => "mount",
                    Layer::PidNs => "pid",
                    Layer::NetNs => "net",
                    Layer::IpcNs => "ipc",
                    Layer::UtsNs => "uts",
                    _ => "cgroup",
                };
                match failed_at {
                    Some(UsernsStep::UnshareNamespaces) if !matches!(trial.namespace.as_deref(), Some(n) if n != ns_name) => {
                        unavailable(userns_reason())
                    }
                    Some(UsernsStep::MakeMountsPrivate | UsernsStep::MountTmpfs)
                        if l == Layer::MountNs =>
                    {
                        unavailable(userns_reason())
                    }
                    Some(UsernsStep::ForkInit | UsernsStep::MountProc) if l == Layer::PidNs => {
                        unavailable(userns_reason())
                    }
                    _ => LayerStatus::Available,
                }
            }
            Layer::Landlock => {
                let ll = &self.landlock;
                if !ll.support.available {
                    return unavailable(ll.support.reason.clone().unwrap_or_default());
                }
                if ll.version < 6 {
                    let gaps: Vec<String> = ll
                        .missing
                        .iter()
                        .filter(|r| r.abi <= 6)
                        .map(|r| format!("{}.{}", r.kind, r.name))
                        .collect();
                    return LayerStatus::Degraded {
                        reason: format!(
                            "Landlock ABI {} (6 covers everything agentcage uses)",
                            ll.version
                        ),
                        lost: format!(
                            "not enforced: {}{}",
                            gaps.join(", "),
                            if ll.version < 2 {
                                " (without REFER, renames across directories are always denied)"
                            } else {
                                ""
                            }
                        ),
                    };
                }
                LayerStatus::Available
            }
            Layer::Seccomp => {
                if self.seccomp.filter.available {
                    LayerStatus::Available
                } else {
                    unavailable(self.seccomp.filter.reason.clone().unwrap_or_default())
                }
            }
            Layer::Limits => match self.cgroups.limits_backend {
                LimitsBackend::CgroupV2 | LimitsBackend::CgroupV1 => LayerStatus::Available,
                LimitsBackend::Rlimits => LayerStatus::Degraded {
                    reason: format!("no cgroup delegation: {}", self.cgroups.limits_reason),
                    lost: "limits by rlimits only: RLIMIT_NPROC counts every process of the host \
                           uid (not just the sandbox), and there is no memory or CPU cap"
                        .into(),
                },
            },
            Layer::Hygiene if !self.syscalls.close_range.available => LayerStatus::Degraded {
                reason: "no close_range".into(),
                lost: "inherited fds are closed one by one (slower, same guarantee)".into(),
            },
            // Capabilities, no_new_privs and hygiene need nothing beyond Linux 3.5.
            _ => LayerStatus::Available,
        }
    }

    /// One rung per profile, weakest first.
    pub fn ladder(&self) -> Vec<Rung> {
        let rungs: Vec<(Profile, Vec<LayerReport>)> = Profile::ALL
            .iter()
            .map(|p| {
                let layers = p
                    .layers()
                    .iter()
                    .map(|layer| LayerReport {
                        layer,
                        status: self.layer_status(layer),
                    })
                    .collect();
                (*p, layers)
            })
            .collect();
        let enforceable: Vec<bool> = rungs
            .iter()
            .map(|(_, layers)| layers.iter().all(|l| l.status.enforceable()))
            .collect();
        rungs
            .iter()
            .enumerate()
            .map(|(i, (profile, layers))| {
                let degraded = layers
                    .iter()
                    .filter_map(|l| match &l.status {
                        LayerStatus::Degraded { reason, lost } => {
                            Some(format!("{}: {reason}; {lost}", l.layer))
                        }
                        _ => None,
                    })
                    .collect();
                let fallback = (!enforceable[i])
                    .then(|| self.fallback(layers, &rungs[..i], &enforceable[..i]));
                Rung {
                    profile: *profile,
                    enforceable: enforceable[i],
                    layers: layers.clone(),
                    degraded,
                    fallback,
                }
            })
            .collect()
    }

    fn fallback(
        &self,
        layers: &[LayerReport],
        weaker: &[(Profile, Vec<LayerReport>)],
        weaker_ok: &[bool],
    ) -> Fallback {
        let kept: Vec<Layer> = layers
            .iter()
            .filter(|l| l.status.enforceable())
            .map(|l| l.layer)
            .collect();
        let missing: LayerSet = LayerSet::of(
            &layers
                .iter()
                .filter(|l| !l.status.enforceable())
                .map(|l| l.layer)
                .collect::<Vec<_>>(),
        );
        // Without the user namespace every namespace is lost at once: say it in one sentence
        // instead of seven.
        let all_ns_lost = missing.has(Layer::UserNs);
        let mut lost = Vec::new();
        for l in layers.iter().filter(|l| !l.status.enforceable()) {
            if all_ns_lost && NAMESPACE_LAYERS.contains(&l.layer) && l.layer != Layer::UserNs {
                continue;
            }
            if let LayerStatus::Unavailable { lost: what, .. } = &l.status {
                lost.push(format!("{}: {what}", l.layer));
            }
        }
        let nearest_profile = weaker
            .iter()
            .zip(weaker_ok)
            .filter(|(_, ok)| **ok)
            .map(|((p, _), _)| *p)
            .next_back();
        Fallback {
            layers: kept,
            lost,
            nearest_profile,
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::host::testing::fake_features;

    /// The strongest profile every layer of which can be enforced here.
    pub(crate) fn strongest_enforceable(f: &Features) -> Profile {
        f.ladder()
            .iter()
            .filter(|r| r.enforceable)
            .map(|r| r.profile)
            .next_back()
            .unwrap_or(Profile::None)
    }

    #[test]
    fn ladder_on_a_capable_host() {
        let f = fake_features(false, true, 7, true);
        let ladder = f.ladder();
        assert_eq!(ladder.len(), 4);
        assert!(ladder.iter().all(|r| r.enforceable && r.fallback.is_none()));
        assert_eq!(strongest_enforceable(&f), Profile::Full);
        // No cgroup: limits degrade to rlimits, which is said, not hidden.
        let full = &ladder[3];
        assert!(full
            .degraded
            .iter()
            .any(|d| d.starts_with("limits:") && d.contains("RLIMIT_NPROC")));
        assert!(ladder[0].layers.is_empty());
    }

    #[test]
    fn ladder_without_userns_falls_back_to_landlock_only() {
        let f = fake_features(false, false, 7, true);
        let ladder = f.ladder();
        assert!(ladder[0].enforceable);
        for r in &ladder[1..] {
            assert!(!r.enforceable, "{}", r.profile);
            let fb = r.fallback.as_ref().unwrap();
            assert_eq!(fb.nearest_profile, Some(Profile::None));
            assert!(fb.layers.iter().all(|l| !NAMESPACE_LAYERS.contains(l)));
            // One sentence for all namespaces, naming the host-wide exposure.
            assert_eq!(fb.lost.len(), 1, "{:?}", fb.lost);
            assert!(
                fb.lost[0].contains("whole host filesystem"),
                "{:?}",
                fb.lost
            );
        }
        let full_fb = ladder[3].fallback.as_ref().unwrap();
        assert!(
            full_fb.layers.contains(&Layer::Landlock) && full_fb.layers.contains(&Layer::Seccomp)
        );
        match f.layer_status(Layer::UserNs) {
            LayerStatus::Unavailable { reason, .. } => {
                assert!(reason.contains("apparmor"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
    }

    /// Issue #14: doctor names the rung `run` takes: full, nested (no user namespace, but
    /// Landlock and seccomp), or none.
    #[test]
    fn rung_to_run_follows_the_host() {
        assert_eq!(
            fake_features(false, true, 7, true).rung_to_run().0,
            Profile::Full
        );
        let (p, why) = fake_features(true, false, 7, true).rung_to_run();
        assert_eq!(p, Profile::Nested);
        assert!(why.contains("--best-effort"), "{why}");
        assert_eq!(
            fake_features(false, false, 0, true).rung_to_run().0,
            Profile::None
        );
        assert_eq!(
            fake_features(false, false, 7, false).rung_to_run().0,
            Profile::None
        );
        // Every namespace is named among the guarantees nested loses.
        let lost = nested_lost().join(" ");
        for ns in [
            "user-ns",
            "mount-ns",
            "pid-ns",
            "net-ns",
            "ipc-ns",
            "uts-ns",
            "cgroup-ns",
        ] {
            assert!(lost.contains(ns), "{ns}");
        }
        assert!(lost.contains("protected paths"));
    }

    #[test]
    fn ladder_without_landlock_or_seccomp() {
        let f = fake_features(false, true, 0, false);
        let ladder = f.ladder();
        assert!(ladder[1].enforceable);
        assert!(!ladder[2].enforceable && !ladder[3].enforceable);
        let fb = ladder[3].fallback.as_ref().unwrap();
        assert_eq!(fb.nearest_profile, Some(Profile::NsOnly));
        assert!(fb
            .lost
            .iter()
            .any(|l| l.starts_with("landlock:") && l.contains("mount-ns root")));
        assert!(fb
            .lost
            .iter()
            .any(|l| l.starts_with("seccomp:") && l.contains("int 0x80")));
        assert_eq!(strongest_enforceable(&f), Profile::NsOnly);
        // An old Landlock degrades, it does not disable.
        let old = fake_features(false, true, 3, true);
        assert!(old.ladder()[3].enforceable);
        match old.layer_status(Layer::Landlock) {
            LayerStatus::Degraded { lost, .. } => {
                assert!(lost.contains("net.connect_tcp"), "{lost}")
            }
            other => panic!("{other:?}"),
        }
    }
}
