//! Emulator tests of the compiled program: every syscall number 0..=600 on every
//! architecture and ABI, the argument rules, the action cache, and the table itself.

mod libc_numbers;

use std::collections::HashSet;

use crate::bpf::{self, validate, MAX_INSNS};
use crate::compile::compile_with;
use crate::emulate::{emulate, kernel_cache_allows, Outcome, SeccompData, Verdict};
use crate::table::{
    by_name, by_nr, Arch, Errno, Rule, AUDIT_ARCH_ARM, AUDIT_ARCH_I386, SYSCALLS, X32_SYSCALL_BIT,
};
use crate::{compile, prepare, prepare_for, FilterOptions, SECCOMP_FILTER_FLAG_SPEC_ALLOW};

/// Syscalls every process makes all the time: they must be allowed with no argument
/// check, so the kernel's action cache skips the filter for them.
const HOT: &[&str] = &[
    "read",
    "write",
    // Not "openat": its set-id mode check (O_CREAT with S_ISUID) loads arguments.
    "close",
    "fstat",
    "newfstatat",
    "statx",
    "lseek",
    "pread64",
    "pwrite64",
    "readv",
    "writev",
    "getdents64",
    "getpid",
    "gettid",
    "getuid",
    "futex",
    "mmap",
    "munmap",
    "mprotect",
    "madvise",
    "brk",
    "rt_sigaction",
    "rt_sigprocmask",
    "rt_sigreturn",
    "sigaltstack",
    "clock_gettime",
    "clock_nanosleep",
    "nanosleep",
    "sched_yield",
    "epoll_wait",
    "epoll_pwait",
    "epoll_ctl",
    "ppoll",
    "fcntl",
    "dup3",
    "pipe2",
    "faccessat",
    "readlinkat",
    "recvfrom",
    "sendto",
    "recvmsg",
    "sendmsg",
    "getrandom",
    "exit_group",
    "wait4",
    "execve",
];

/// Denials the hardening issue names explicitly, with their errno.
const REQUIRED_DENIALS: &[(&str, Errno)] = &[
    ("mount", Errno::EPERM),
    ("umount2", Errno::EPERM),
    ("fsopen", Errno::EPERM),
    ("fsconfig", Errno::EPERM),
    ("fsmount", Errno::EPERM),
    ("fspick", Errno::EPERM),
    ("move_mount", Errno::EPERM),
    ("open_tree", Errno::EPERM),
    ("open_tree_attr", Errno::EPERM),
    ("mount_setattr", Errno::EPERM),
    ("pivot_root", Errno::EPERM),
    ("chroot", Errno::EPERM),
    ("unshare", Errno::EPERM),
    ("setns", Errno::EPERM),
    ("clone3", Errno::ENOSYS),
    ("ptrace", Errno::EPERM),
    ("process_vm_readv", Errno::EPERM),
    ("process_vm_writev", Errno::EPERM),
    ("bpf", Errno::EPERM),
    ("perf_event_open", Errno::EPERM),
    ("userfaultfd", Errno::EPERM),
    ("keyctl", Errno::EPERM),
    ("add_key", Errno::EPERM),
    ("request_key", Errno::EPERM),
    ("io_uring_setup", Errno::EPERM),
    ("io_uring_enter", Errno::EPERM),
    ("io_uring_register", Errno::EPERM),
    ("open_by_handle_at", Errno::EPERM),
    ("name_to_handle_at", Errno::EPERM),
    ("init_module", Errno::EPERM),
    ("finit_module", Errno::EPERM),
    ("delete_module", Errno::EPERM),
    ("kexec_load", Errno::EPERM),
    ("kexec_file_load", Errno::EPERM),
    ("reboot", Errno::EPERM),
    ("swapon", Errno::EPERM),
    ("swapoff", Errno::EPERM),
    ("acct", Errno::EPERM),
    ("quotactl", Errno::EPERM),
    ("quotactl_fd", Errno::EPERM),
    ("clock_settime", Errno::EPERM),
    ("settimeofday", Errno::EPERM),
    ("adjtimex", Errno::EPERM),
    ("clock_adjtime", Errno::EPERM),
    ("syslog", Errno::EPERM),
    ("vhangup", Errno::EPERM),
    ("iopl", Errno::EPERM),
    ("ioperm", Errno::EPERM),
    ("lookup_dcookie", Errno::EPERM),
    ("nfsservctl", Errno::EPERM),
    ("uselib", Errno::EPERM),
    ("ustat", Errno::EPERM),
    ("sysfs", Errno::EPERM),
    ("_sysctl", Errno::EPERM),
    ("kcmp", Errno::EPERM),
    ("pidfd_getfd", Errno::EPERM),
    ("fanotify_init", Errno::EPERM),
    ("mbind", Errno::EPERM),
    ("move_pages", Errno::EPERM),
    ("migrate_pages", Errno::EPERM),
];

fn run(prog: &[libc::sock_filter], arch: u32, nr: u32, args: [u64; 6]) -> Outcome {
    let data = SeccompData::new(nr as i32, arch, args);
    emulate(prog, &data).unwrap_or_else(|e| panic!("nr {nr:#x} arch {arch:#x}: {e}"))
}

fn nr_of(arch: Arch, name: &str) -> u32 {
    by_name(name)
        .and_then(|s| s.nr(arch))
        .unwrap_or_else(|| panic!("{name} has no number on {arch:?}"))
}

#[test]
fn programs_are_valid_and_small() {
    for arch in Arch::ALL {
        let prog = compile(arch).expect("compiles");
        validate(&prog).expect("kernel-acceptable");
        assert!(prog.len() < MAX_INSNS, "{arch:?}: {} insns", prog.len());
        // Every jump in range is part of validate(); check the claim independently too.
        for (pc, insn) in prog.iter().enumerate() {
            if insn.code & 0x07 == 0x05 {
                let far = if insn.code == bpf::JMP_JA {
                    insn.k as usize
                } else {
                    usize::from(insn.jt.max(insn.jf))
                };
                assert!(pc + 1 + far < prog.len(), "{arch:?}: jump at {pc}");
            }
        }
    }
}

#[test]
fn every_number_on_the_native_abi_matches_the_table() {
    for arch in Arch::ALL {
        let prog = compile(arch).expect("compiles");
        let audit = arch.audit_arch();
        for nr in 0..=600u32 {
            let out = run(&prog, audit, nr, [0; 6]);
            let cached = kernel_cache_allows(&prog, audit, nr);
            match by_nr(arch, nr).map(|s| (s.name, s.rule)) {
                None => {
                    assert_eq!(out.verdict, Verdict::Errno(libc::ENOSYS), "{arch:?} {nr}");
                    assert!(!out.loaded_args && !cached, "{arch:?} {nr}");
                }
                Some((name, Rule::Allow)) => {
                    assert_eq!(out.verdict, Verdict::Allow, "{arch:?} {name}");
                    assert!(!out.loaded_args, "{arch:?} {name} loads an argument");
                    assert!(
                        cached,
                        "{arch:?} {name} is not in the kernel's action cache"
                    );
                }
                Some((name, Rule::Deny(e, _))) => {
                    assert_eq!(out.verdict, Verdict::Errno(e.0), "{arch:?} {name}");
                    assert!(!out.loaded_args && !cached, "{arch:?} {name}");
                }
                Some((name, Rule::Args(_))) => {
                    assert!(out.loaded_args, "{arch:?} {name} never looks at its args");
                    assert!(!cached, "{arch:?} {name} cached despite an argument rule");
                }
            }
        }
    }
}

#[test]
fn hot_syscalls_are_cached_and_argument_free() {
    for arch in Arch::ALL {
        let prog = compile(arch).expect("compiles");
        for name in HOT {
            let Some(nr) = by_name(name).and_then(|s| s.nr(arch)) else {
                // x86_64-only names (none in HOT today) would have no number on aarch64.
                continue;
            };
            assert_eq!(by_name(name).map(|s| s.rule), Some(Rule::Allow), "{name}");
            let args = [u64::MAX; 6]; // arguments must not matter
            let out = run(&prog, arch.audit_arch(), nr, args);
            assert_eq!(out.verdict, Verdict::Allow, "{arch:?} {name}");
            assert!(!out.loaded_args, "{arch:?} {name}");
            assert!(
                kernel_cache_allows(&prog, arch.audit_arch(), nr),
                "{arch:?} {name}"
            );
        }
    }
}

#[test]
fn evaluation_cost_is_logarithmic() {
    for arch in Arch::ALL {
        let prog = compile(arch).expect("compiles");
        let intervals = crate::compile::interval_count(arch);
        let depth = usize::BITS - (intervals - 1).leading_zeros(); // ceil(log2)
        let bound = 3 + 1 + depth as usize + 1 + 1; // prologue, ld nr, tree, trampoline, ret
        let mut worst = 0;
        for nr in 0..=600u32 {
            if matches!(by_nr(arch, nr).map(|s| s.rule), Some(Rule::Args(_))) {
                continue;
            }
            let out = run(&prog, arch.audit_arch(), nr, [0; 6]);
            worst = worst.max(out.executed);
        }
        let getpid = run(&prog, arch.audit_arch(), nr_of(arch, "getpid"), [0; 6]).executed;
        eprintln!(
            "{arch:?}: {} insns, {intervals} intervals, getpid executes {getpid}, worst {worst}",
            prog.len()
        );
        assert!(worst <= bound, "{arch:?}: worst path {worst} > {bound}");
        assert!(getpid <= 16, "{arch:?}: getpid costs {getpid}");
    }
}

#[test]
fn foreign_abis_are_killed_for_every_number() {
    let x86 = compile(Arch::X86_64).expect("compiles");
    let arm = compile(Arch::Aarch64).expect("compiles");
    let others = [AUDIT_ARCH_I386, AUDIT_ARCH_ARM, 0, 0xc000_0028, 0x8000_0016];
    for nr in (0..=600u32).chain([u32::MAX, 0x4000_0000, 0x8000_0000]) {
        for arch in others.iter().chain([&Arch::Aarch64.audit_arch()]) {
            let out = run(&x86, *arch, nr, [0; 6]);
            assert_eq!(
                out.verdict,
                Verdict::KillProcess,
                "x86 prog arch {arch:#x} nr {nr}"
            );
            assert_eq!(out.executed, 3);
            assert!(!kernel_cache_allows(&x86, *arch, nr));
        }
        let out = run(&arm, Arch::X86_64.audit_arch(), nr, [0; 6]);
        assert_eq!(out.verdict, Verdict::KillProcess);
        let out = run(&arm, AUDIT_ARCH_ARM, nr, [0; 6]);
        assert_eq!(out.verdict, Verdict::KillProcess);
    }
    // The classic collisions: i386 mount (21), ptrace (26), umount2 (52), socketcall (102,
    // x86_64 getuid) are killed even though those numbers are allowed on x86_64.
    for nr in [21, 26, 52, 102] {
        assert_eq!(
            run(&x86, AUDIT_ARCH_I386, nr, [0; 6]).verdict,
            Verdict::KillProcess
        );
    }
}

#[test]
fn x32_numbers_are_killed_and_negative_numbers_are_enosys() {
    let prog = compile(Arch::X86_64).expect("compiles");
    let audit = Arch::X86_64.audit_arch();
    for nr in (0..=600u32).chain([0x1000, 0x3fff_ffff]) {
        let out = run(&prog, audit, nr | X32_SYSCALL_BIT, [0; 6]);
        assert_eq!(out.verdict, Verdict::KillProcess, "x32 nr {nr}");
    }
    for nr in [
        0x8000_0000u32,
        0xc000_0027,
        u32::MAX,
        601,
        1000,
        0x3fff_ffff,
    ] {
        let out = run(&prog, audit, nr, [0; 6]);
        assert_eq!(out.verdict, Verdict::Errno(libc::ENOSYS), "nr {nr:#x}");
    }
    // aarch64 has no x32: those numbers are just unknown.
    let arm = compile(Arch::Aarch64).expect("compiles");
    let out = run(
        &arm,
        Arch::Aarch64.audit_arch(),
        X32_SYSCALL_BIT | 172,
        [0; 6],
    );
    assert_eq!(out.verdict, Verdict::Errno(libc::ENOSYS));
}

#[test]
fn required_denials_are_present() {
    for &(name, errno) in REQUIRED_DENIALS {
        let row = by_name(name).unwrap_or_else(|| panic!("{name} missing"));
        assert!(
            matches!(row.rule, Rule::Deny(e, _) if e == errno),
            "{name}: {:?}, want {errno}",
            row.rule
        );
        for arch in Arch::ALL {
            if let Some(nr) = row.nr(arch) {
                let prog = compile(arch).expect("compiles");
                let out = run(&prog, arch.audit_arch(), nr, [0; 6]);
                assert_eq!(out.verdict, Verdict::Errno(errno.0), "{arch:?} {name}");
            }
        }
    }
}

#[test]
fn table_has_no_duplicates() {
    let mut names = HashSet::new();
    for s in SYSCALLS {
        assert!(names.insert(s.name), "duplicate name {}", s.name);
        assert!(
            s.x86_64.is_some() || s.aarch64.is_some(),
            "{} has no number",
            s.name
        );
    }
    for arch in Arch::ALL {
        let mut nrs = HashSet::new();
        for s in SYSCALLS {
            if let Some(nr) = s.nr(arch) {
                assert!(
                    nrs.insert(nr),
                    "{arch:?}: duplicate number {nr} ({})",
                    s.name
                );
                assert!(nr < X32_SYSCALL_BIT, "{}", s.name);
            }
        }
    }
}

fn verdict(arch: Arch, name: &str, args: [u64; 6]) -> Outcome {
    let prog = compile(arch).expect("compiles");
    run(&prog, arch.audit_arch(), nr_of(arch, name), args)
}

#[test]
fn clone_denies_every_namespace_flag() {
    let news = [
        libc::CLONE_NEWNS,
        libc::CLONE_NEWCGROUP,
        libc::CLONE_NEWUTS,
        libc::CLONE_NEWIPC,
        libc::CLONE_NEWUSER,
        libc::CLONE_NEWPID,
        libc::CLONE_NEWNET,
        0x80, // CLONE_NEWTIME
    ];
    let thread = libc::CLONE_VM
        | libc::CLONE_FS
        | libc::CLONE_FILES
        | libc::CLONE_SIGHAND
        | libc::CLONE_THREAD
        | libc::CLONE_SYSVSEM
        | libc::CLONE_SETTLS
        | libc::CLONE_PARENT_SETTID
        | libc::CLONE_CHILD_CLEARTID;
    let fork = libc::SIGCHLD | libc::CLONE_CHILD_SETTID | libc::CLONE_CHILD_CLEARTID;
    let vfork = libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD;
    for arch in Arch::ALL {
        for ok in [thread, fork, vfork, 0] {
            let out = verdict(arch, "clone", [ok as u64, 0, 0, 0, 0, 0]);
            assert_eq!(out.verdict, Verdict::Allow, "{arch:?} flags {ok:#x}");
            // The kernel ignores the high word (lower_32_bits), so must we.
            let hi = (ok as u64) | 0xffff_ffff_0000_0000;
            assert_eq!(
                verdict(arch, "clone", [hi, 0, 0, 0, 0, 0]).verdict,
                Verdict::Allow
            );
        }
        for new in news {
            for base in [0, fork, thread] {
                let f = (base | new) as u32 as u64;
                let out = verdict(arch, "clone", [f, 0, 0, 0, 0, 0]);
                assert_eq!(out.verdict, Verdict::Errno(libc::EPERM), "{arch:?} {f:#x}");
            }
        }
    }
}

#[test]
fn ioctl_denies_terminal_injection_on_the_low_word() {
    for arch in Arch::ALL {
        for req in [
            0x5412u64,
            0x541c,
            0x5423,
            0x1_0000_5412,
            0xffff_ffff_0000_541c,
        ] {
            let out = verdict(arch, "ioctl", [0, req, 0, 0, 0, 0]);
            assert_eq!(
                out.verdict,
                Verdict::Errno(libc::EPERM),
                "{arch:?} {req:#x}"
            );
        }
        // TCGETS, TIOCGWINSZ, FIONREAD, FIOCLEX, TIOCSCTTY, TCSETS: allowed.
        for req in [
            0x5401u64,
            0x5413,
            0x541b,
            0x5451,
            0x540e,
            0x5402,
            0x5412_0000,
        ] {
            let out = verdict(arch, "ioctl", [0, req, 0, 0, 0, 0]);
            assert_eq!(out.verdict, Verdict::Allow, "{arch:?} {req:#x}");
        }
    }
}

#[test]
fn socket_domains_follow_the_allow_list() {
    let allowed = [libc::AF_UNIX, libc::AF_INET, libc::AF_INET6];
    let denied = [
        libc::AF_PACKET,
        libc::AF_VSOCK,
        libc::AF_KEY,
        libc::AF_ALG,
        libc::AF_BLUETOOTH,
        libc::AF_CAN,
        libc::AF_XDP,
        libc::AF_TIPC,
        libc::AF_RDS,
        libc::AF_APPLETALK,
        libc::AF_X25,
        libc::AF_AX25,
        libc::AF_NFC,
        libc::AF_IB,
        libc::AF_MPLS,
        0,
        45,
        255,
    ];
    for arch in Arch::ALL {
        for d in allowed {
            for ty in [libc::SOCK_STREAM, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC] {
                let out = verdict(arch, "socket", [d as u64, ty as u64, 0, 0, 0, 0]);
                assert_eq!(out.verdict, Verdict::Allow, "{arch:?} domain {d}");
            }
            let hi = d as u64 | 1 << 32; // kernel sees `d`
            assert_eq!(
                verdict(arch, "socket", [hi, 1, 0, 0, 0, 0]).verdict,
                Verdict::Allow
            );
            let out = verdict(arch, "socketpair", [d as u64, 1, 0, 0, 0, 0]);
            let want = if d == libc::AF_UNIX {
                Verdict::Allow
            } else {
                Verdict::Errno(libc::EAFNOSUPPORT)
            };
            assert_eq!(out.verdict, want, "{arch:?} socketpair {d}");
        }
        for d in denied {
            for raw in [d as u64, d as u64 | 1 << 32] {
                let out = verdict(arch, "socket", [raw, 3, 0, 0, 0, 0]);
                assert_eq!(
                    out.verdict,
                    Verdict::Errno(libc::EAFNOSUPPORT),
                    "{arch:?} {d}"
                );
                let out = verdict(arch, "socketpair", [raw, 1, 0, 0, 0, 0]);
                assert_eq!(
                    out.verdict,
                    Verdict::Errno(libc::EAFNOSUPPORT),
                    "{arch:?} {d}"
                );
            }
        }
        // (AF_INET, SOCK_PACKET) is AF_PACKET in disguise; flags and the high word
        // must not hide it.
        let inet = libc::AF_INET as u64;
        for ty in [10u64, 10 | 0o2000000 | 0o4000, 10 | 1 << 32] {
            let out = verdict(arch, "socket", [inet, ty, 0x300, 0, 0, 0]);
            assert_eq!(
                out.verdict,
                Verdict::Errno(libc::EAFNOSUPPORT),
                "type {ty:#x}"
            );
        }
        for ty in [1u64, 2, 3, 5, 1 | 0o2000000, 2 | 0o4000] {
            let out = verdict(arch, "socket", [inet, ty, 0, 0, 0, 0]);
            assert_eq!(out.verdict, Verdict::Allow, "type {ty:#x}");
        }
        let nl = libc::AF_NETLINK as u64;
        let route = verdict(arch, "socket", [nl, 3, libc::NETLINK_ROUTE as u64, 0, 0, 0]);
        assert_eq!(route.verdict, Verdict::Allow);
        for proto in [
            libc::NETLINK_GENERIC,
            libc::NETLINK_AUDIT,
            libc::NETLINK_KOBJECT_UEVENT,
            libc::NETLINK_NETFILTER,
            libc::NETLINK_SOCK_DIAG,
            libc::NETLINK_XFRM,
            libc::NETLINK_CONNECTOR,
        ] {
            let out = verdict(arch, "socket", [nl, 3, proto as u64, 0, 0, 0]);
            assert_eq!(
                out.verdict,
                Verdict::Errno(libc::EPROTONOSUPPORT),
                "proto {proto}"
            );
        }
    }
}

#[test]
fn personality_allows_only_docker_values() {
    for arch in Arch::ALL {
        for p in [
            0u64,
            8,
            0x2_0000,
            0x2_0008,
            0xffff_ffff,
            0xffff_ffff_ffff_ffff,
        ] {
            let out = verdict(arch, "personality", [p, 0, 0, 0, 0, 0]);
            assert_eq!(out.verdict, Verdict::Allow, "{arch:?} {p:#x}");
        }
        // ADDR_NO_RANDOMIZE, READ_IMPLIES_EXEC, ADDR_COMPAT_LAYOUT, PER_BSD, MMAP_PAGE_ZERO
        for p in [
            0x004_0000u64,
            0x040_0000,
            0x020_0000,
            0x6,
            0x010_0000,
            0x004_0008,
        ] {
            let out = verdict(arch, "personality", [p, 0, 0, 0, 0, 0]);
            assert_eq!(out.verdict, Verdict::Errno(libc::EPERM), "{arch:?} {p:#x}");
        }
    }
}

#[test]
fn prepare_sets_spec_allow_unless_mitigation_is_requested() {
    let p = prepare(&FilterOptions::default()).expect("native arch supported");
    assert_eq!(p.flags(), SECCOMP_FILTER_FLAG_SPEC_ALLOW);
    assert_eq!(Some(p.arch()), Arch::native());
    let m = prepare_for(
        Arch::Aarch64,
        &FilterOptions {
            spec_mitigation: true,
            ..FilterOptions::default()
        },
    )
    .expect("compiles");
    assert_eq!(m.flags(), 0);
    assert_eq!(
        p.verdict(nr_of(p.arch(), "mount"), [0; 6]),
        Ok(Verdict::Errno(libc::EPERM))
    );
    assert_eq!(p.program().len(), usize::from(p.len_u16()));
}

#[test]
fn setid_modes_are_refused_on_every_mode_argument() {
    const EPERM: Verdict = Verdict::Errno(libc::EPERM);
    // (name, mode argument index, x86_64 only)
    let rows = [
        ("chmod", 1, true),
        ("fchmod", 1, false),
        ("fchmodat", 2, false),
        ("fchmodat2", 2, false),
        ("creat", 1, true),
        ("mknod", 1, true),
        ("mknodat", 2, false),
    ];
    for arch in Arch::ALL {
        for (name, i, x86_only) in rows {
            if x86_only && arch != Arch::X86_64 {
                continue;
            }
            let with = |m: u64| {
                let mut a = [0u64; 6];
                a[i] = m;
                verdict(arch, name, a).verdict
            };
            for bad in [0o4755u64, 0o2755, 0o6755, 0o104_755, 0xffff_ffff_0000_0800] {
                assert_eq!(with(bad), EPERM, "{arch:?} {name} {bad:#o}");
            }
            // Sticky bit, plain modes and a high word the kernel ignores: allowed.
            for ok in [0o755u64, 0o1777, 0o100_644, 0o644 | 0xffff_ffff_0000_0000] {
                assert_eq!(with(ok), Verdict::Allow, "{arch:?} {name} {ok:#o}");
            }
        }
        // open/openat: the mode counts only with O_CREAT or O_TMPFILE.
        for (name, f, m) in [("open", 1, 2), ("openat", 2, 3)] {
            if name == "open" && arch != Arch::X86_64 {
                continue;
            }
            let with = |flags: u64, mode: u64| {
                let mut a = [0u64; 6];
                a[f] = flags;
                a[m] = mode;
                verdict(arch, name, a).verdict
            };
            let o_tmpfile = 0o2000_0000
                | if arch == Arch::X86_64 {
                    0o20_0000
                } else {
                    0o4_0000
                };
            for flags in [0o100u64 | 0o1, 0o100 | 0o200 | 0o2, o_tmpfile | 0o2] {
                assert_eq!(with(flags, 0o4755), EPERM, "{arch:?} {name} {flags:#o}");
                assert_eq!(with(flags, 0o2755), EPERM, "{arch:?} {name} {flags:#o}");
                assert_eq!(with(flags, 0o755), Verdict::Allow, "{arch:?} {name}");
            }
            // No O_CREAT: the kernel ignores mode, so do we (any garbage passes).
            assert_eq!(with(0, 0o6777), Verdict::Allow, "{arch:?} {name}");
            assert_eq!(with(0o2, u64::MAX), Verdict::Allow, "{arch:?} {name}");
        }
        // openat2's mode is behind a pointer: ENOSYS, so callers fall back to openat.
        assert_eq!(
            verdict(arch, "openat2", [0; 6]).verdict,
            Verdict::Errno(libc::ENOSYS)
        );
        // mkdir's mode loses S_ISUID/S_ISGID in the kernel (vfs_mkdir): not checked, so
        // git's and pip's directories keep working.
        assert_eq!(by_name("mkdirat").map(|s| s.rule), Some(Rule::Allow));
    }
}

#[test]
fn tcp_guards_refuse_fast_open_only_when_asked() {
    const NOTSUP: Verdict = Verdict::Errno(libc::EOPNOTSUPP);
    const MSG_FASTOPEN: u64 = 0x2000_0000;
    for arch in Arch::ALL {
        let guarded = compile_with(arch, true).expect("compiles");
        let plain = compile(arch).expect("compiles");
        let run_on = |prog: &[libc::sock_filter], name: &str, args: [u64; 6]| {
            run(prog, arch.audit_arch(), nr_of(arch, name), args).verdict
        };
        for (name, i) in [("sendto", 3), ("sendmsg", 2), ("sendmmsg", 3)] {
            let with = |prog: &[libc::sock_filter], flags: u64| {
                let mut a = [0u64; 6];
                a[i] = flags;
                run_on(prog, name, a)
            };
            let nosignal = libc::MSG_NOSIGNAL as u64;
            assert_eq!(with(&guarded, MSG_FASTOPEN), NOTSUP, "{arch:?} {name}");
            assert_eq!(
                with(&guarded, MSG_FASTOPEN | nosignal),
                NOTSUP,
                "{arch:?} {name}"
            );
            assert_eq!(with(&guarded, nosignal), Verdict::Allow, "{arch:?} {name}");
            assert_eq!(with(&guarded, 0), Verdict::Allow, "{arch:?} {name}");
            // Without the guards the hot send path stays argument-free and cached.
            assert_eq!(
                with(&plain, MSG_FASTOPEN),
                Verdict::Allow,
                "{arch:?} {name}"
            );
            assert!(kernel_cache_allows(
                &plain,
                arch.audit_arch(),
                nr_of(arch, name)
            ));
            assert!(!kernel_cache_allows(
                &guarded,
                arch.audit_arch(),
                nr_of(arch, name)
            ));
        }
        // setsockopt(fd, IPPROTO_TCP, TCP_FASTOPEN_CONNECT): refused; TCP_NODELAY (1),
        // SOL_SOCKET (1) option 30 (SO_PASSSEC): allowed.
        assert_eq!(run_on(&guarded, "setsockopt", [3, 6, 30, 0, 4, 0]), NOTSUP);
        assert_eq!(
            run_on(&guarded, "setsockopt", [3, 6, 1, 0, 4, 0]),
            Verdict::Allow
        );
        assert_eq!(
            run_on(&guarded, "setsockopt", [3, 1, 30, 0, 4, 0]),
            Verdict::Allow
        );
        assert_eq!(
            run_on(&plain, "setsockopt", [3, 6, 30, 0, 4, 0]),
            Verdict::Allow
        );
        // Everything else is the same program.
        for nr in 0..=600u32 {
            let name = by_nr(arch, nr).map(|s| s.name);
            if name.is_some_and(|n| crate::table::TCP_RULE_GUARDS.iter().any(|(g, _)| *g == n)) {
                continue;
            }
            assert_eq!(
                run(&guarded, arch.audit_arch(), nr, [0; 6]).verdict,
                run(&plain, arch.audit_arch(), nr, [0; 6]).verdict,
                "{arch:?} {nr}"
            );
        }
    }
    let p = prepare_for(
        Arch::X86_64,
        &FilterOptions {
            tcp_guards: true,
            ..FilterOptions::default()
        },
    )
    .expect("compiles");
    assert_eq!(p.verdict(44, [3, 0, 0, MSG_FASTOPEN, 0, 0]), Ok(NOTSUP));
}
