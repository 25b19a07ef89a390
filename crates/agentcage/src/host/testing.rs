//! Synthetic hosts for tests of the ladder and of `agentcage doctor`'s rendering (which lives
//! in the CLI). Built with `cfg(test)` or the `test-support` feature, never in a release.

use super::userns::userns_trial_from;
use super::{
    Caller, CgroupLayout, Cgroups, CompatAbis, Features, KernelInfo, LandlockInfo, LimitsBackend,
    SeccompInfo, Support, Syscalls, Sysctls, UserNamespaces, UsernsKnobs, UsernsStep,
};

/// A synthetic host for ladder and doctor tests: `root` or uid 1000; user namespaces working or
/// denied by AppArmor's knob; Landlock ABI `landlock` (0 = disabled at boot); seccomp.
pub fn fake_features(root: bool, userns_ok: bool, landlock: u32, seccomp_ok: bool) -> Features {
    let k = knobs();
    let trial = if userns_ok {
        userns_trial_from(1000, None, 0, 0, &k)
    } else {
        let k = UsernsKnobs {
            apparmor_restrict_unprivileged_userns: Some(1),
            ..k.clone()
        };
        userns_trial_from(1000, Some(UsernsStep::WriteUidMap), libc::EPERM, 0, &k)
    };
    let abi = if landlock == 0 {
        Err(agentcage_landlock::Unavailable::DisabledAtBoot)
    } else {
        Ok(landlock)
    };
    Features {
        kernel: KernelInfo {
            release: "6.8.0-test".into(),
            version: "#1".into(),
            machine: "x86_64".into(),
        },
        caller: Caller {
            uid: if root { 0 } else { 1000 },
            euid: if root { 0 } else { 1000 },
            egid: if root { 0 } else { 1000 },
            is_root: root,
            cap_sys_admin: root,
            initial_user_ns: true,
            seccomp_mode: Some(0),
            no_new_privs: false,
            container: None,
        },
        userns: UserNamespaces {
            as_caller: trial.clone(),
            for_unprivileged: trial,
            knobs: k,
        },
        landlock: LandlockInfo::from_abi(abi),
        seccomp: SeccompInfo {
            filter: support(seccomp_ok),
            caller_mode: Some(0),
            actions: vec!["allow"],
        },
        compat: CompatAbis {
            ia32: Support::yes(),
            ia32_emulation_boot_param: None,
            vsyscall32: Some(1),
            x32: Support::no("test"),
        },
        syscalls: Syscalls {
            mount_setattr: Support::yes(),
            open_tree: Support::yes(),
            close_range: Support::yes(),
            pidfd_open: Support::yes(),
            clone3: Support::yes(),
        },
        cgroups: Cgroups {
            layout: CgroupLayout::Unified,
            v2: None,
            v1: vec![],
            limits_backend: LimitsBackend::Rlimits,
            limits_reason: "no cgroup v2 mount".into(),
        },
        sysctls: Sysctls {
            legacy_tiocsti: Some(0),
            io_uring_disabled: Some(0),
            ptrace_scope: Some(1),
            unprivileged_bpf_disabled: Some(2),
            perf_event_paranoid: Some(2),
        },
        detect_micros: 1,
    }
}

/// Knobs of a host where nothing gates user namespaces.
pub fn knobs() -> UsernsKnobs {
    UsernsKnobs {
        unprivileged_userns_clone: None,
        max_user_namespaces: Some(15000),
        apparmor_restrict_unprivileged_userns: None,
        cap_sys_admin: false,
        seccomp_filtered: false,
        container: None,
    }
}

/// A plain yes, or a no with the reason `test`.
pub fn support(ok: bool) -> Support {
    if ok {
        Support::yes()
    } else {
        Support::no("test")
    }
}
