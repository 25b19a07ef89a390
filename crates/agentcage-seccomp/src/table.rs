//! The policy: one row per Linux syscall name, with its number on each supported
//! architecture and what the filter does with it.
//!
//! This table is the single source of truth. [`crate::compile()`] turns it into BPF,
//! [`crate::render_markdown`] turns it into `SYSCALLS.md` (a test fails when that file
//! drifts), and the tests emulate the compiled program against it for every number.
//!
//! Design: an allow-list in the spirit of Docker's and Podman's default profiles.
//! Syscalls that real agent tooling needs (python, node, git, gcc, tar, cargo, pip, npm)
//! are allowed. Families with a security reason are denied with `EPERM`, so agents see a
//! clean "not permitted". `clone3` and a few newer or never-implemented interfaces return
//! `ENOSYS`, as on a kernel that lacks them, so libraries fall back. Any number not in this
//! table (gaps, syscalls added after this table was written) also gets `ENOSYS`
//! (runc#2750: `EPERM` on an unknown new syscall breaks fallbacks in glibc and others).
//!
//! Numbers come from the kernel's `arch/x86/entry/syscalls/syscall_64.tbl` and
//! `include/uapi/asm-generic/unistd.h` (aarch64); a test cross-checks them against the
//! `libc` crate's `SYS_*` constants for the build target.

/// A CPU architecture the filter can be compiled for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Arch {
    /// x86_64 (`AUDIT_ARCH_X86_64`). Its i386 compat entry (`int 0x80`) and x32 numbers
    /// are refused by the filter's prologue.
    X86_64,
    /// aarch64 little-endian (`AUDIT_ARCH_AARCH64`). Its AArch32 compat entry is refused.
    Aarch64,
}

impl Arch {
    /// Every supported architecture.
    pub const ALL: [Arch; 2] = [Arch::X86_64, Arch::Aarch64];

    /// The architecture this crate was built for, if supported.
    pub const fn native() -> Option<Arch> {
        if cfg!(all(target_arch = "x86_64", target_endian = "little")) {
            Some(Arch::X86_64)
        } else if cfg!(all(target_arch = "aarch64", target_endian = "little")) {
            Some(Arch::Aarch64)
        } else {
            None
        }
    }

    /// The `AUDIT_ARCH_*` value the kernel puts in `seccomp_data.arch` for this ABI.
    pub const fn audit_arch(self) -> u32 {
        match self {
            // EM_X86_64 (62) | __AUDIT_ARCH_64BIT | __AUDIT_ARCH_LE
            Arch::X86_64 => 0xc000_003e,
            // EM_AARCH64 (183) | __AUDIT_ARCH_64BIT | __AUDIT_ARCH_LE
            Arch::Aarch64 => 0xc000_00b7,
        }
    }

    /// The syscall-number range of a second ABI sharing this `audit_arch` (x32 on
    /// x86_64: numbers with bit 30 set), killed by the filter.
    pub const fn foreign_nr_range(self) -> Option<(u32, u32)> {
        match self {
            Arch::X86_64 => Some((X32_SYSCALL_BIT, 0x7fff_ffff)),
            Arch::Aarch64 => None,
        }
    }

    /// A short stable name (`x86_64`, `aarch64`).
    pub const fn name(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64",
            Arch::Aarch64 => "aarch64",
        }
    }
}

/// `AUDIT_ARCH_I386`: what `int 0x80` (and `sysenter` in 32-bit code) reports on x86_64.
pub const AUDIT_ARCH_I386: u32 = 0x4000_0003;
/// `AUDIT_ARCH_ARM`: the AArch32 compat entry on aarch64.
pub const AUDIT_ARCH_ARM: u32 = 0x4000_0028;
/// `__X32_SYSCALL_BIT`.
pub const X32_SYSCALL_BIT: u32 = 0x4000_0000;

/// A syscall argument check, evaluated only inside the branch of its syscall so every
/// other syscall stays argument-free (and therefore in the kernel's action cache).
///
/// Every checked argument is an `int`, `unsigned int` or `umode_t` in the kernel prototype
/// (clone's flags go through `lower_32_bits()`), so the filter compares only the low 32 bits:
/// the kernel never looks at the high word, so a value there cannot change the outcome.
/// Comparing 64 bits would be a bypass (CVE-2019-10063: `TIOCSTI | 1 << 32`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ArgRule {
    /// `clone(flags, ...)`: `EPERM` if `flags` has any `CLONE_NEW*` bit.
    CloneFlags,
    /// `ioctl(fd, request, ...)`: `EPERM` for `TIOCSTI`, `TIOCLINUX` and `TIOCSETD`.
    IoctlRequest,
    /// `socket(domain, type, protocol)`: `AF_UNIX`, `AF_INET` (except the obsolete
    /// `SOCK_PACKET` type, which the kernel turns into `AF_PACKET`), `AF_INET6`, and
    /// `AF_NETLINK` with `NETLINK_ROUTE`; other domains `EAFNOSUPPORT`, other netlink
    /// protocols `EPROTONOSUPPORT`.
    SocketDomain,
    /// `socketpair(domain, ...)`: `AF_UNIX` only, else `EAFNOSUPPORT`.
    SocketpairDomain,
    /// `personality(persona)`: the values Docker allows, else `EPERM`.
    Personality,
    /// A file-mode argument (`chmod`, `fchmod`, `fchmodat`, `fchmodat2`, `creat`, `mknod`,
    /// `mknodat`; the argument index): `EPERM` if it has `S_ISUID` or `S_ISGID`. A set-id
    /// file made inside is a set-id file on the host's disk (issue 10, finding 9).
    NoSetidMode {
        /// Index of the `mode` argument.
        mode: u8,
    },
    /// `open`/`openat` (argument indexes of `flags` and `mode`): with `O_CREAT` or
    /// `O_TMPFILE` in `flags`, `EPERM` if `mode` has `S_ISUID` or `S_ISGID`.
    OpenNoSetidMode {
        /// Index of the `flags` argument.
        flags: u8,
        /// Index of the `mode` argument.
        mode: u8,
    },
    /// `sendto`/`sendmsg`/`sendmmsg` (index of `flags`): `EOPNOTSUPP` with `MSG_FASTOPEN`,
    /// a connect that Landlock's TCP rules do not see. Only under [`TCP_RULE_GUARDS`].
    NoFastOpenSend {
        /// Index of the `flags` argument.
        flags: u8,
    },
    /// `setsockopt(fd, level, optname, ...)`: `EOPNOTSUPP` for `IPPROTO_TCP`
    /// `TCP_FASTOPEN_CONNECT` (the next connect() becomes a Fast Open send). Only under
    /// [`TCP_RULE_GUARDS`].
    NoFastOpenSockopt,
}

/// `S_ISUID | S_ISGID`: mode bits refused by [`ArgRule::NoSetidMode`] and
/// [`ArgRule::OpenNoSetidMode`].
pub const SETID_BITS: u32 = 0o6000;
/// `O_CREAT | __O_TMPFILE` (0o100 | 0o20000000 on both architectures): the open flags
/// under which `mode` is used. `__O_TMPFILE` is `O_TMPFILE` without its `O_DIRECTORY` bit,
/// whose value differs between x86_64 and aarch64.
pub const OPEN_MODE_FLAGS: u32 = 0o100 | 0o2000_0000;
/// `MSG_FASTOPEN`: send data in the SYN, connecting an unconnected TCP socket.
pub const MSG_FASTOPEN: u32 = 0x2000_0000;
/// `IPPROTO_TCP` (= `SOL_TCP`), the `level` of TCP socket options.
pub const IPPROTO_TCP: u32 = 6;
/// `TCP_FASTOPEN_CONNECT`: makes connect() defer the SYN to the first send (Fast Open).
pub const TCP_FASTOPEN_CONNECT: u32 = 30;

/// Rows whose rule the filter replaces when Landlock's TCP port rules guard a network the
/// sandbox shares with the host (`full` with `--net host`): TCP Fast Open connects
/// without the `connect()` hook Landlock checks (`sendto`/`sendmsg`/`sendmmsg` with
/// `MSG_FASTOPEN`, `TCP_FASTOPEN_CONNECT`). Only the `flags` register matters: the kernel
/// ignores the `msg_flags` of `sendmsg`'s header and takes only `MSG_EOR` from each
/// `sendmmsg` entry (`____sys_sendmsg`'s `allowed_msghdr_flags`). `EOPNOTSUPP` is what a
/// kernel with client Fast Open off (`net.ipv4.tcp_fastopen`) answers, so callers fall
/// back to a plain connect. Off otherwise: these are hot syscalls, and in the sandbox's
/// own network namespace a Fast Open connect reaches only the sandbox's own loopback.
pub const TCP_RULE_GUARDS: [(&str, ArgRule); 4] = [
    ("sendto", ArgRule::NoFastOpenSend { flags: 3 }),
    ("sendmsg", ArgRule::NoFastOpenSend { flags: 2 }),
    ("sendmmsg", ArgRule::NoFastOpenSend { flags: 3 }),
    ("setsockopt", ArgRule::NoFastOpenSockopt),
];

/// Every `CLONE_NEW*` flag: NEWNS, NEWCGROUP, NEWUTS, NEWIPC, NEWUSER, NEWPID, NEWNET and
/// NEWTIME. `0x80` (NEWTIME) overlaps `clone(2)`'s exit-signal byte, where it would mean
/// a signal number >= 128, which the kernel rejects anyway, so denying it costs nothing.
pub const CLONE_NEW_MASK: u32 = (libc::CLONE_NEWNS
    | libc::CLONE_NEWCGROUP
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUSER
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWNET
    | CLONE_NEWTIME) as u32;
/// `CLONE_NEWTIME` (not in every libc version).
pub const CLONE_NEWTIME: i32 = 0x80;
/// `TIOCSTI`: push a byte into a terminal's input queue (terminal injection).
pub const TIOCSTI: u32 = 0x5412;
/// `TIOCLINUX`: virtual-console subcommands, including selection paste (injection again).
pub const TIOCLINUX: u32 = 0x541c;
/// `TIOCSETD`: change a terminal's line discipline, which autoloads rarely used ldisc
/// modules (n_hdlc CVE-2017-2636, n_gsm CVE-2023-6546). Only slattach/pppd need it.
pub const TIOCSETD: u32 = 0x5423;
/// `SOCK_TYPE_MASK`: the type bits of `socket(2)`'s `type`, without NONBLOCK/CLOEXEC.
pub const SOCK_TYPE_MASK: u32 = 0xf;
/// `SOCK_PACKET`: with `AF_INET`, `__sock_create` silently switches the family to
/// `AF_PACKET` ("uses obsolete (PF_INET,SOCK_PACKET)"), so it must be refused too.
pub const SOCK_PACKET: u32 = 10;
/// Socket domains `socket(2)` may create.
pub const SOCKET_DOMAINS: [(u32, &str); 3] = [
    (libc::AF_UNIX as u32, "AF_UNIX"),
    (libc::AF_INET as u32, "AF_INET"),
    (libc::AF_INET6 as u32, "AF_INET6"),
];
/// `AF_NETLINK`, allowed only with [`NETLINK_PROTOCOLS`].
pub const AF_NETLINK: u32 = libc::AF_NETLINK as u32;
/// Protocols refused for `AF_INET`/`AF_INET6` sockets: Landlock's TCP port rules do not
/// cover them (IPPROTO_SCTP = 132, IPPROTO_MPTCP = 262).
pub const INET_PROTOCOLS_DENIED: [u32; 2] = [132, 262];
/// Netlink protocols allowed: `NETLINK_ROUTE` only (getifaddrs, `ip addr`, node's
/// `os.networkInterfaces()`, glibc's `AI_ADDRCONFIG`).
pub const NETLINK_PROTOCOLS: [(u32, &str); 1] = [(libc::NETLINK_ROUTE as u32, "NETLINK_ROUTE")];
/// Personalities allowed: `PER_LINUX` (0), `PER_LINUX32` (8), `UNAME26` (0x20000),
/// `PER_LINUX32|UNAME26`, and `0xffffffff` (query without change). Docker's list. Flags
/// such as `ADDR_NO_RANDOMIZE` or `READ_IMPLIES_EXEC` stay denied.
pub const PERSONALITIES: [u32; 5] = [0x0, 0x8, 0x2_0000, 0x2_0008, 0xffff_ffff];

/// What the filter does with one syscall.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rule {
    /// Allowed without looking at arguments.
    Allow,
    /// Always fails with this errno; the string is the reason, shown in `SYSCALLS.md`.
    Deny(Errno, &'static str),
    /// Allowed or denied depending on arguments.
    Args(ArgRule),
}

/// An errno value (`libc::E*`), as returned by the filter or by `install`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Errno(pub i32);

impl Errno {
    /// `EPERM`.
    pub const EPERM: Errno = Errno(libc::EPERM);
    /// `ENOSYS`.
    pub const ENOSYS: Errno = Errno(libc::ENOSYS);
    /// `EAFNOSUPPORT`.
    pub const EAFNOSUPPORT: Errno = Errno(libc::EAFNOSUPPORT);
    /// `EPROTONOSUPPORT`.
    pub const EPROTONOSUPPORT: Errno = Errno(libc::EPROTONOSUPPORT);
    /// `EOPNOTSUPP`.
    pub const EOPNOTSUPP: Errno = Errno(libc::EOPNOTSUPP);

    /// The symbolic name of the errnos this crate uses, else `None`.
    pub const fn name(self) -> Option<&'static str> {
        match self.0 {
            libc::EPERM => Some("EPERM"),
            libc::ENOSYS => Some("ENOSYS"),
            libc::EAFNOSUPPORT => Some("EAFNOSUPPORT"),
            libc::EPROTONOSUPPORT => Some("EPROTONOSUPPORT"),
            libc::EOPNOTSUPP => Some("EOPNOTSUPP"),
            libc::EINVAL => Some("EINVAL"),
            libc::EFAULT => Some("EFAULT"),
            libc::EACCES => Some("EACCES"),
            _ => None,
        }
    }
}

impl std::fmt::Display for Errno {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.name() {
            Some(n) => write!(f, "{n} ({})", self.0),
            None => write!(f, "errno {}", self.0),
        }
    }
}

/// One row of the policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Syscall {
    /// The kernel's name (`__NR_<name>`).
    pub name: &'static str,
    /// Number on x86_64, if the syscall exists there.
    pub x86_64: Option<u32>,
    /// Number on aarch64, if the syscall exists there.
    pub aarch64: Option<u32>,
    /// What the filter does.
    pub rule: Rule,
}

impl Syscall {
    /// The number on `arch`, if the syscall exists there.
    pub const fn nr(&self, arch: Arch) -> Option<u32> {
        match arch {
            Arch::X86_64 => self.x86_64,
            Arch::Aarch64 => self.aarch64,
        }
    }
}

/// The row for `name`, if any.
pub fn by_name(name: &str) -> Option<&'static Syscall> {
    SYSCALLS.iter().find(|s| s.name == name)
}

/// The row for number `nr` on `arch`, if any (`None` means: unknown, `ENOSYS`).
pub fn by_nr(arch: Arch, nr: u32) -> Option<&'static Syscall> {
    SYSCALLS.iter().find(|s| s.nr(arch) == Some(nr))
}

/// The whole policy table, in x86_64 number order (aarch64-only rows last).
pub fn syscall_table() -> &'static [Syscall] {
    SYSCALLS
}

const ALLOW: Rule = Rule::Allow;

const fn sc(name: &'static str, x86_64: Option<u32>, aarch64: Option<u32>, rule: Rule) -> Syscall {
    Syscall {
        name,
        x86_64,
        aarch64,
        rule,
    }
}

// Reasons, one per denied family. They are rendered verbatim into SYSCALLS.md.
const MOUNT: &str = "mount API: changes the filesystem view the sandbox was built from. \
Landlock also forbids topology changes, but only where Landlock is enforced.";
const ROOT: &str = "changes the root directory; not needed once the sandbox root is in place.";
const NS: &str = "new or foreign namespaces: a nested user namespace hands back a full \
capability set, the usual first step of netfilter/nf_tables privilege escalations.";
const TRACE: &str = "reads or changes another process (memory, file descriptors, \
kernel-object identity): the sandbox's init and siblings are not debug targets.";
const KERNEL_SURFACE: &str = "large kernel attack surface with a long escalation history \
(eBPF verifier, perf events; userfaultfd stalls kernel copies, a race-widening primitive).";
const KEYS: &str = "the kernel keyring is not namespaced: keys of the same uid outside the \
sandbox are reachable.";
const IO_URING: &str = "io_uring performs opens, connects and sends that no seccomp rule \
sees. EPERM is what kernel.io_uring_disabled=2 returns, so libuv and liburing users fall back.";
const HANDLES: &str = "file handles bypass path lookup (the 'Shocker' container escape); \
name_to_handle_at leaks the handles open_by_handle_at consumes. Nothing in the supported \
toolchain needs either.";
const HOST_ADMIN: &str = "host administration (modules, kexec, reboot, swap, accounting, \
quotas, host and domain name): never an agent's business.";
const CLOCK: &str = "sets the host clock, which is not namespaced. adjtimex and \
clock_adjtime are denied entirely: the mode lives in struct timex behind a pointer that \
BPF cannot read, and read-only use (ntp_gettime) is rare.";
const KERNEL_LOG: &str = "reads or clears the kernel log, which carries kernel addresses.";
const TTY_HANGUP: &str = "hangs up the controlling terminal.";
const RAW_IO: &str = "raw I/O-port access and LDT editing (CVE-2015-5157 class); no \
64-bit tool needs them.";
const OBSOLETE: &str = "obsolete or removed interfaces: attack surface with no users.";
const NUMA: &str = "NUMA placement; Docker allows these only with CAP_SYS_NICE. \
migrate_pages and move_pages act on other processes. get_mempolicy (read-only) stays.";
const FANOTIFY: &str = "filesystem-wide event monitoring; inotify covers what tools need.";
const CLONE3: &str = "clone3 takes its flags in a struct behind a pointer, so CLONE_NEW* \
cannot be checked. ENOSYS makes glibc and musl fall back to clone(2), whose flags are \
checked.";
const UNIMPLEMENTED: &str = "reserved, never implemented by Linux: the kernel itself \
answers ENOSYS.";
const OPENAT2: &str = "openat2 takes its mode in a struct behind a pointer, so set-id mode \
bits cannot be checked. ENOSYS, as on a kernel before 5.6, makes callers fall back to \
openat, whose mode is checked.";
const NOT_NEEDED: &str = "newer interfaces agents do not need; as on an older kernel, \
callers fall back (LSM attributes via /proc/self/attr, mounts via /proc/self/mountinfo).";

/// The policy. See the module documentation; `SYSCALLS.md` renders it.
pub static SYSCALLS: &[Syscall] = &[
    sc("read", Some(0), Some(63), ALLOW),
    sc("write", Some(1), Some(64), ALLOW),
    sc(
        "open",
        Some(2),
        None,
        Rule::Args(ArgRule::OpenNoSetidMode { flags: 1, mode: 2 }),
    ),
    sc("close", Some(3), Some(57), ALLOW),
    sc("stat", Some(4), None, ALLOW),
    sc("fstat", Some(5), Some(80), ALLOW),
    sc("lstat", Some(6), None, ALLOW),
    sc("poll", Some(7), None, ALLOW),
    sc("lseek", Some(8), Some(62), ALLOW),
    sc("mmap", Some(9), Some(222), ALLOW),
    sc("mprotect", Some(10), Some(226), ALLOW),
    sc("munmap", Some(11), Some(215), ALLOW),
    sc("brk", Some(12), Some(214), ALLOW),
    sc("rt_sigaction", Some(13), Some(134), ALLOW),
    sc("rt_sigprocmask", Some(14), Some(135), ALLOW),
    sc("rt_sigreturn", Some(15), Some(139), ALLOW),
    sc(
        "ioctl",
        Some(16),
        Some(29),
        Rule::Args(ArgRule::IoctlRequest),
    ),
    sc("pread64", Some(17), Some(67), ALLOW),
    sc("pwrite64", Some(18), Some(68), ALLOW),
    sc("readv", Some(19), Some(65), ALLOW),
    sc("writev", Some(20), Some(66), ALLOW),
    sc("access", Some(21), None, ALLOW),
    sc("pipe", Some(22), None, ALLOW),
    sc("select", Some(23), None, ALLOW),
    sc("sched_yield", Some(24), Some(124), ALLOW),
    sc("mremap", Some(25), Some(216), ALLOW),
    sc("msync", Some(26), Some(227), ALLOW),
    sc("mincore", Some(27), Some(232), ALLOW),
    sc("madvise", Some(28), Some(233), ALLOW),
    sc("shmget", Some(29), Some(194), ALLOW),
    sc("shmat", Some(30), Some(196), ALLOW),
    sc("shmctl", Some(31), Some(195), ALLOW),
    sc("dup", Some(32), Some(23), ALLOW),
    sc("dup2", Some(33), None, ALLOW),
    sc("pause", Some(34), None, ALLOW),
    sc("nanosleep", Some(35), Some(101), ALLOW),
    sc("getitimer", Some(36), Some(102), ALLOW),
    sc("alarm", Some(37), None, ALLOW),
    sc("setitimer", Some(38), Some(103), ALLOW),
    sc("getpid", Some(39), Some(172), ALLOW),
    sc("sendfile", Some(40), Some(71), ALLOW),
    sc(
        "socket",
        Some(41),
        Some(198),
        Rule::Args(ArgRule::SocketDomain),
    ),
    sc("connect", Some(42), Some(203), ALLOW),
    sc("accept", Some(43), Some(202), ALLOW),
    sc("sendto", Some(44), Some(206), ALLOW),
    sc("recvfrom", Some(45), Some(207), ALLOW),
    sc("sendmsg", Some(46), Some(211), ALLOW),
    sc("recvmsg", Some(47), Some(212), ALLOW),
    sc("shutdown", Some(48), Some(210), ALLOW),
    sc("bind", Some(49), Some(200), ALLOW),
    sc("listen", Some(50), Some(201), ALLOW),
    sc("getsockname", Some(51), Some(204), ALLOW),
    sc("getpeername", Some(52), Some(205), ALLOW),
    sc(
        "socketpair",
        Some(53),
        Some(199),
        Rule::Args(ArgRule::SocketpairDomain),
    ),
    sc("setsockopt", Some(54), Some(208), ALLOW),
    sc("getsockopt", Some(55), Some(209), ALLOW),
    sc(
        "clone",
        Some(56),
        Some(220),
        Rule::Args(ArgRule::CloneFlags),
    ),
    sc("fork", Some(57), None, ALLOW),
    sc("vfork", Some(58), None, ALLOW),
    sc("execve", Some(59), Some(221), ALLOW),
    sc("exit", Some(60), Some(93), ALLOW),
    sc("wait4", Some(61), Some(260), ALLOW),
    sc("kill", Some(62), Some(129), ALLOW),
    sc("uname", Some(63), Some(160), ALLOW),
    sc("semget", Some(64), Some(190), ALLOW),
    sc("semop", Some(65), Some(193), ALLOW),
    sc("semctl", Some(66), Some(191), ALLOW),
    sc("shmdt", Some(67), Some(197), ALLOW),
    sc("msgget", Some(68), Some(186), ALLOW),
    sc("msgsnd", Some(69), Some(189), ALLOW),
    sc("msgrcv", Some(70), Some(188), ALLOW),
    sc("msgctl", Some(71), Some(187), ALLOW),
    sc("fcntl", Some(72), Some(25), ALLOW),
    sc("flock", Some(73), Some(32), ALLOW),
    sc("fsync", Some(74), Some(82), ALLOW),
    sc("fdatasync", Some(75), Some(83), ALLOW),
    sc("truncate", Some(76), Some(45), ALLOW),
    sc("ftruncate", Some(77), Some(46), ALLOW),
    sc("getdents", Some(78), None, ALLOW),
    sc("getcwd", Some(79), Some(17), ALLOW),
    sc("chdir", Some(80), Some(49), ALLOW),
    sc("fchdir", Some(81), Some(50), ALLOW),
    sc("rename", Some(82), None, ALLOW),
    sc("mkdir", Some(83), None, ALLOW),
    sc("rmdir", Some(84), None, ALLOW),
    sc(
        "creat",
        Some(85),
        None,
        Rule::Args(ArgRule::NoSetidMode { mode: 1 }),
    ),
    sc("link", Some(86), None, ALLOW),
    sc("unlink", Some(87), None, ALLOW),
    sc("symlink", Some(88), None, ALLOW),
    sc("readlink", Some(89), None, ALLOW),
    sc(
        "chmod",
        Some(90),
        None,
        Rule::Args(ArgRule::NoSetidMode { mode: 1 }),
    ),
    sc(
        "fchmod",
        Some(91),
        Some(52),
        Rule::Args(ArgRule::NoSetidMode { mode: 1 }),
    ),
    sc("chown", Some(92), None, ALLOW),
    sc("fchown", Some(93), Some(55), ALLOW),
    sc("lchown", Some(94), None, ALLOW),
    sc("umask", Some(95), Some(166), ALLOW),
    sc("gettimeofday", Some(96), Some(169), ALLOW),
    sc("getrlimit", Some(97), Some(163), ALLOW),
    sc("getrusage", Some(98), Some(165), ALLOW),
    sc("sysinfo", Some(99), Some(179), ALLOW),
    sc("times", Some(100), Some(153), ALLOW),
    sc(
        "ptrace",
        Some(101),
        Some(117),
        Rule::Deny(Errno::EPERM, TRACE),
    ),
    sc("getuid", Some(102), Some(174), ALLOW),
    sc(
        "syslog",
        Some(103),
        Some(116),
        Rule::Deny(Errno::EPERM, KERNEL_LOG),
    ),
    sc("getgid", Some(104), Some(176), ALLOW),
    sc("setuid", Some(105), Some(146), ALLOW),
    sc("setgid", Some(106), Some(144), ALLOW),
    sc("geteuid", Some(107), Some(175), ALLOW),
    sc("getegid", Some(108), Some(177), ALLOW),
    sc("setpgid", Some(109), Some(154), ALLOW),
    sc("getppid", Some(110), Some(173), ALLOW),
    sc("getpgrp", Some(111), None, ALLOW),
    sc("setsid", Some(112), Some(157), ALLOW),
    sc("setreuid", Some(113), Some(145), ALLOW),
    sc("setregid", Some(114), Some(143), ALLOW),
    sc("getgroups", Some(115), Some(158), ALLOW),
    sc("setgroups", Some(116), Some(159), ALLOW),
    sc("setresuid", Some(117), Some(147), ALLOW),
    sc("getresuid", Some(118), Some(148), ALLOW),
    sc("setresgid", Some(119), Some(149), ALLOW),
    sc("getresgid", Some(120), Some(150), ALLOW),
    sc("getpgid", Some(121), Some(155), ALLOW),
    sc("setfsuid", Some(122), Some(151), ALLOW),
    sc("setfsgid", Some(123), Some(152), ALLOW),
    sc("getsid", Some(124), Some(156), ALLOW),
    sc("capget", Some(125), Some(90), ALLOW),
    sc("capset", Some(126), Some(91), ALLOW),
    sc("rt_sigpending", Some(127), Some(136), ALLOW),
    sc("rt_sigtimedwait", Some(128), Some(137), ALLOW),
    sc("rt_sigqueueinfo", Some(129), Some(138), ALLOW),
    sc("rt_sigsuspend", Some(130), Some(133), ALLOW),
    sc("sigaltstack", Some(131), Some(132), ALLOW),
    sc("utime", Some(132), None, ALLOW),
    sc(
        "mknod",
        Some(133),
        None,
        Rule::Args(ArgRule::NoSetidMode { mode: 1 }),
    ),
    sc(
        "uselib",
        Some(134),
        None,
        Rule::Deny(Errno::EPERM, OBSOLETE),
    ),
    sc(
        "personality",
        Some(135),
        Some(92),
        Rule::Args(ArgRule::Personality),
    ),
    sc("ustat", Some(136), None, Rule::Deny(Errno::EPERM, OBSOLETE)),
    sc("statfs", Some(137), Some(43), ALLOW),
    sc("fstatfs", Some(138), Some(44), ALLOW),
    sc("sysfs", Some(139), None, Rule::Deny(Errno::EPERM, OBSOLETE)),
    sc("getpriority", Some(140), Some(141), ALLOW),
    sc("setpriority", Some(141), Some(140), ALLOW),
    sc("sched_setparam", Some(142), Some(118), ALLOW),
    sc("sched_getparam", Some(143), Some(121), ALLOW),
    sc("sched_setscheduler", Some(144), Some(119), ALLOW),
    sc("sched_getscheduler", Some(145), Some(120), ALLOW),
    sc("sched_get_priority_max", Some(146), Some(125), ALLOW),
    sc("sched_get_priority_min", Some(147), Some(126), ALLOW),
    sc("sched_rr_get_interval", Some(148), Some(127), ALLOW),
    sc("mlock", Some(149), Some(228), ALLOW),
    sc("munlock", Some(150), Some(229), ALLOW),
    sc("mlockall", Some(151), Some(230), ALLOW),
    sc("munlockall", Some(152), Some(231), ALLOW),
    sc(
        "vhangup",
        Some(153),
        Some(58),
        Rule::Deny(Errno::EPERM, TTY_HANGUP),
    ),
    sc(
        "modify_ldt",
        Some(154),
        None,
        Rule::Deny(Errno::EPERM, RAW_IO),
    ),
    sc(
        "pivot_root",
        Some(155),
        Some(41),
        Rule::Deny(Errno::EPERM, ROOT),
    ),
    sc(
        "_sysctl",
        Some(156),
        None,
        Rule::Deny(Errno::EPERM, OBSOLETE),
    ),
    sc("prctl", Some(157), Some(167), ALLOW),
    sc("arch_prctl", Some(158), None, ALLOW),
    sc(
        "adjtimex",
        Some(159),
        Some(171),
        Rule::Deny(Errno::EPERM, CLOCK),
    ),
    sc("setrlimit", Some(160), Some(164), ALLOW),
    sc(
        "chroot",
        Some(161),
        Some(51),
        Rule::Deny(Errno::EPERM, ROOT),
    ),
    sc("sync", Some(162), Some(81), ALLOW),
    sc(
        "acct",
        Some(163),
        Some(89),
        Rule::Deny(Errno::EPERM, HOST_ADMIN),
    ),
    sc(
        "settimeofday",
        Some(164),
        Some(170),
        Rule::Deny(Errno::EPERM, CLOCK),
    ),
    sc(
        "mount",
        Some(165),
        Some(40),
        Rule::Deny(Errno::EPERM, MOUNT),
    ),
    sc(
        "umount2",
        Some(166),
        Some(39),
        Rule::Deny(Errno::EPERM, MOUNT),
    ),
    sc(
        "swapon",
        Some(167),
        Some(224),
        Rule::Deny(Errno::EPERM, HOST_ADMIN),
    ),
    sc(
        "swapoff",
        Some(168),
        Some(225),
        Rule::Deny(Errno::EPERM, HOST_ADMIN),
    ),
    sc(
        "reboot",
        Some(169),
        Some(142),
        Rule::Deny(Errno::EPERM, HOST_ADMIN),
    ),
    sc(
        "sethostname",
        Some(170),
        Some(161),
        Rule::Deny(Errno::EPERM, HOST_ADMIN),
    ),
    sc(
        "setdomainname",
        Some(171),
        Some(162),
        Rule::Deny(Errno::EPERM, HOST_ADMIN),
    ),
    sc("iopl", Some(172), None, Rule::Deny(Errno::EPERM, RAW_IO)),
    sc("ioperm", Some(173), None, Rule::Deny(Errno::EPERM, RAW_IO)),
    sc(
        "create_module",
        Some(174),
        None,
        Rule::Deny(Errno::ENOSYS, UNIMPLEMENTED),
    ),
    sc(
        "init_module",
        Some(175),
        Some(105),
        Rule::Deny(Errno::EPERM, HOST_ADMIN),
    ),
    sc(
        "delete_module",
        Some(176),
        Some(106),
        Rule::Deny(Errno::EPERM, HOST_ADMIN),
    ),
    sc(
        "get_kernel_syms",
        Some(177),
        None,
        Rule::Deny(Errno::ENOSYS, UNIMPLEMENTED),
    ),
    sc(
        "query_module",
        Some(178),
        None,
        Rule::Deny(Errno::ENOSYS, UNIMPLEMENTED),
    ),
    sc(
        "quotactl",
        Some(179),
        Some(60),
        Rule::Deny(Errno::EPERM, HOST_ADMIN),
    ),
    sc(
        "nfsservctl",
        Some(180),
        Some(42),
        Rule::Deny(Errno::EPERM, OBSOLETE),
    ),
    sc(
        "getpmsg",
        Some(181),
        None,
        Rule::Deny(Errno::ENOSYS, UNIMPLEMENTED),
    ),
    sc(
        "putpmsg",
        Some(182),
        None,
        Rule::Deny(Errno::ENOSYS, UNIMPLEMENTED),
    ),
    sc(
        "afs_syscall",
        Some(183),
        None,
        Rule::Deny(Errno::ENOSYS, UNIMPLEMENTED),
    ),
    sc(
        "tuxcall",
        Some(184),
        None,
        Rule::Deny(Errno::ENOSYS, UNIMPLEMENTED),
    ),
    sc(
        "security",
        Some(185),
        None,
        Rule::Deny(Errno::ENOSYS, UNIMPLEMENTED),
    ),
    sc("gettid", Some(186), Some(178), ALLOW),
    sc("readahead", Some(187), Some(213), ALLOW),
    sc("setxattr", Some(188), Some(5), ALLOW),
    sc("lsetxattr", Some(189), Some(6), ALLOW),
    sc("fsetxattr", Some(190), Some(7), ALLOW),
    sc("getxattr", Some(191), Some(8), ALLOW),
    sc("lgetxattr", Some(192), Some(9), ALLOW),
    sc("fgetxattr", Some(193), Some(10), ALLOW),
    sc("listxattr", Some(194), Some(11), ALLOW),
    sc("llistxattr", Some(195), Some(12), ALLOW),
    sc("flistxattr", Some(196), Some(13), ALLOW),
    sc("removexattr", Some(197), Some(14), ALLOW),
    sc("lremovexattr", Some(198), Some(15), ALLOW),
    sc("fremovexattr", Some(199), Some(16), ALLOW),
    sc("tkill", Some(200), Some(130), ALLOW),
    sc("time", Some(201), None, ALLOW),
    sc("futex", Some(202), Some(98), ALLOW),
    sc("sched_setaffinity", Some(203), Some(122), ALLOW),
    sc("sched_getaffinity", Some(204), Some(123), ALLOW),
    sc("set_thread_area", Some(205), None, ALLOW),
    sc("io_setup", Some(206), Some(0), ALLOW),
    sc("io_destroy", Some(207), Some(1), ALLOW),
    sc("io_getevents", Some(208), Some(4), ALLOW),
    sc("io_submit", Some(209), Some(2), ALLOW),
    sc("io_cancel", Some(210), Some(3), ALLOW),
    sc("get_thread_area", Some(211), None, ALLOW),
    sc(
        "lookup_dcookie",
        Some(212),
        Some(18),
        Rule::Deny(Errno::EPERM, OBSOLETE),
    ),
    sc("epoll_create", Some(213), None, ALLOW),
    sc(
        "epoll_ctl_old",
        Some(214),
        None,
        Rule::Deny(Errno::ENOSYS, UNIMPLEMENTED),
    ),
    sc(
        "epoll_wait_old",
        Some(215),
        None,
        Rule::Deny(Errno::ENOSYS, UNIMPLEMENTED),
    ),
    sc("remap_file_pages", Some(216), Some(234), ALLOW),
    sc("getdents64", Some(217), Some(61), ALLOW),
    sc("set_tid_address", Some(218), Some(96), ALLOW),
    sc("restart_syscall", Some(219), Some(128), ALLOW),
    sc("semtimedop", Some(220), Some(192), ALLOW),
    sc("fadvise64", Some(221), Some(223), ALLOW),
    sc("timer_create", Some(222), Some(107), ALLOW),
    sc("timer_settime", Some(223), Some(110), ALLOW),
    sc("timer_gettime", Some(224), Some(108), ALLOW),
    sc("timer_getoverrun", Some(225), Some(109), ALLOW),
    sc("timer_delete", Some(226), Some(111), ALLOW),
    sc(
        "clock_settime",
        Some(227),
        Some(112),
        Rule::Deny(Errno::EPERM, CLOCK),
    ),
    sc("clock_gettime", Some(228), Some(113), ALLOW),
    sc("clock_getres", Some(229), Some(114), ALLOW),
    sc("clock_nanosleep", Some(230), Some(115), ALLOW),
    sc("exit_group", Some(231), Some(94), ALLOW),
    sc("epoll_wait", Some(232), None, ALLOW),
    sc("epoll_ctl", Some(233), Some(21), ALLOW),
    sc("tgkill", Some(234), Some(131), ALLOW),
    sc("utimes", Some(235), None, ALLOW),
    sc(
        "vserver",
        Some(236),
        None,
        Rule::Deny(Errno::ENOSYS, UNIMPLEMENTED),
    ),
    sc(
        "mbind",
        Some(237),
        Some(235),
        Rule::Deny(Errno::EPERM, NUMA),
    ),
    sc(
        "set_mempolicy",
        Some(238),
        Some(237),
        Rule::Deny(Errno::EPERM, NUMA),
    ),
    sc("get_mempolicy", Some(239), Some(236), ALLOW),
    sc("mq_open", Some(240), Some(180), ALLOW),
    sc("mq_unlink", Some(241), Some(181), ALLOW),
    sc("mq_timedsend", Some(242), Some(182), ALLOW),
    sc("mq_timedreceive", Some(243), Some(183), ALLOW),
    sc("mq_notify", Some(244), Some(184), ALLOW),
    sc("mq_getsetattr", Some(245), Some(185), ALLOW),
    sc(
        "kexec_load",
        Some(246),
        Some(104),
        Rule::Deny(Errno::EPERM, HOST_ADMIN),
    ),
    sc("waitid", Some(247), Some(95), ALLOW),
    sc(
        "add_key",
        Some(248),
        Some(217),
        Rule::Deny(Errno::EPERM, KEYS),
    ),
    sc(
        "request_key",
        Some(249),
        Some(218),
        Rule::Deny(Errno::EPERM, KEYS),
    ),
    sc(
        "keyctl",
        Some(250),
        Some(219),
        Rule::Deny(Errno::EPERM, KEYS),
    ),
    sc("ioprio_set", Some(251), Some(30), ALLOW),
    sc("ioprio_get", Some(252), Some(31), ALLOW),
    sc("inotify_init", Some(253), None, ALLOW),
    sc("inotify_add_watch", Some(254), Some(27), ALLOW),
    sc("inotify_rm_watch", Some(255), Some(28), ALLOW),
    sc(
        "migrate_pages",
        Some(256),
        Some(238),
        Rule::Deny(Errno::EPERM, NUMA),
    ),
    sc(
        "openat",
        Some(257),
        Some(56),
        Rule::Args(ArgRule::OpenNoSetidMode { flags: 2, mode: 3 }),
    ),
    sc("mkdirat", Some(258), Some(34), ALLOW),
    sc(
        "mknodat",
        Some(259),
        Some(33),
        Rule::Args(ArgRule::NoSetidMode { mode: 2 }),
    ),
    sc("fchownat", Some(260), Some(54), ALLOW),
    sc("futimesat", Some(261), None, ALLOW),
    sc("newfstatat", Some(262), Some(79), ALLOW),
    sc("unlinkat", Some(263), Some(35), ALLOW),
    sc("renameat", Some(264), Some(38), ALLOW),
    sc("linkat", Some(265), Some(37), ALLOW),
    sc("symlinkat", Some(266), Some(36), ALLOW),
    sc("readlinkat", Some(267), Some(78), ALLOW),
    sc(
        "fchmodat",
        Some(268),
        Some(53),
        Rule::Args(ArgRule::NoSetidMode { mode: 2 }),
    ),
    sc("faccessat", Some(269), Some(48), ALLOW),
    sc("pselect6", Some(270), Some(72), ALLOW),
    sc("ppoll", Some(271), Some(73), ALLOW),
    sc("unshare", Some(272), Some(97), Rule::Deny(Errno::EPERM, NS)),
    sc("set_robust_list", Some(273), Some(99), ALLOW),
    sc("get_robust_list", Some(274), Some(100), ALLOW),
    sc("splice", Some(275), Some(76), ALLOW),
    sc("tee", Some(276), Some(77), ALLOW),
    sc("sync_file_range", Some(277), Some(84), ALLOW),
    sc("vmsplice", Some(278), Some(75), ALLOW),
    sc(
        "move_pages",
        Some(279),
        Some(239),
        Rule::Deny(Errno::EPERM, NUMA),
    ),
    sc("utimensat", Some(280), Some(88), ALLOW),
    sc("epoll_pwait", Some(281), Some(22), ALLOW),
    sc("signalfd", Some(282), None, ALLOW),
    sc("timerfd_create", Some(283), Some(85), ALLOW),
    sc("eventfd", Some(284), None, ALLOW),
    sc("fallocate", Some(285), Some(47), ALLOW),
    sc("timerfd_settime", Some(286), Some(86), ALLOW),
    sc("timerfd_gettime", Some(287), Some(87), ALLOW),
    sc("accept4", Some(288), Some(242), ALLOW),
    sc("signalfd4", Some(289), Some(74), ALLOW),
    sc("eventfd2", Some(290), Some(19), ALLOW),
    sc("epoll_create1", Some(291), Some(20), ALLOW),
    sc("dup3", Some(292), Some(24), ALLOW),
    sc("pipe2", Some(293), Some(59), ALLOW),
    sc("inotify_init1", Some(294), Some(26), ALLOW),
    sc("preadv", Some(295), Some(69), ALLOW),
    sc("pwritev", Some(296), Some(70), ALLOW),
    sc("rt_tgsigqueueinfo", Some(297), Some(240), ALLOW),
    sc(
        "perf_event_open",
        Some(298),
        Some(241),
        Rule::Deny(Errno::EPERM, KERNEL_SURFACE),
    ),
    sc("recvmmsg", Some(299), Some(243), ALLOW),
    sc(
        "fanotify_init",
        Some(300),
        Some(262),
        Rule::Deny(Errno::EPERM, FANOTIFY),
    ),
    sc(
        "fanotify_mark",
        Some(301),
        Some(263),
        Rule::Deny(Errno::EPERM, FANOTIFY),
    ),
    sc("prlimit64", Some(302), Some(261), ALLOW),
    sc(
        "name_to_handle_at",
        Some(303),
        Some(264),
        Rule::Deny(Errno::EPERM, HANDLES),
    ),
    sc(
        "open_by_handle_at",
        Some(304),
        Some(265),
        Rule::Deny(Errno::EPERM, HANDLES),
    ),
    sc(
        "clock_adjtime",
        Some(305),
        Some(266),
        Rule::Deny(Errno::EPERM, CLOCK),
    ),
    sc("syncfs", Some(306), Some(267), ALLOW),
    sc("sendmmsg", Some(307), Some(269), ALLOW),
    sc("setns", Some(308), Some(268), Rule::Deny(Errno::EPERM, NS)),
    sc("getcpu", Some(309), Some(168), ALLOW),
    sc(
        "process_vm_readv",
        Some(310),
        Some(270),
        Rule::Deny(Errno::EPERM, TRACE),
    ),
    sc(
        "process_vm_writev",
        Some(311),
        Some(271),
        Rule::Deny(Errno::EPERM, TRACE),
    ),
    sc(
        "kcmp",
        Some(312),
        Some(272),
        Rule::Deny(Errno::EPERM, TRACE),
    ),
    sc(
        "finit_module",
        Some(313),
        Some(273),
        Rule::Deny(Errno::EPERM, HOST_ADMIN),
    ),
    sc("sched_setattr", Some(314), Some(274), ALLOW),
    sc("sched_getattr", Some(315), Some(275), ALLOW),
    sc("renameat2", Some(316), Some(276), ALLOW),
    sc("seccomp", Some(317), Some(277), ALLOW),
    sc("getrandom", Some(318), Some(278), ALLOW),
    sc("memfd_create", Some(319), Some(279), ALLOW),
    sc(
        "kexec_file_load",
        Some(320),
        Some(294),
        Rule::Deny(Errno::EPERM, HOST_ADMIN),
    ),
    sc(
        "bpf",
        Some(321),
        Some(280),
        Rule::Deny(Errno::EPERM, KERNEL_SURFACE),
    ),
    sc("execveat", Some(322), Some(281), ALLOW),
    sc(
        "userfaultfd",
        Some(323),
        Some(282),
        Rule::Deny(Errno::EPERM, KERNEL_SURFACE),
    ),
    sc("membarrier", Some(324), Some(283), ALLOW),
    sc("mlock2", Some(325), Some(284), ALLOW),
    sc("copy_file_range", Some(326), Some(285), ALLOW),
    sc("preadv2", Some(327), Some(286), ALLOW),
    sc("pwritev2", Some(328), Some(287), ALLOW),
    sc("pkey_mprotect", Some(329), Some(288), ALLOW),
    sc("pkey_alloc", Some(330), Some(289), ALLOW),
    sc("pkey_free", Some(331), Some(290), ALLOW),
    sc("statx", Some(332), Some(291), ALLOW),
    sc("io_pgetevents", Some(333), Some(292), ALLOW),
    sc("rseq", Some(334), Some(293), ALLOW),
    sc("uretprobe", Some(335), None, ALLOW),
    sc("uprobe", Some(336), None, ALLOW),
    sc("pidfd_send_signal", Some(424), Some(424), ALLOW),
    sc(
        "io_uring_setup",
        Some(425),
        Some(425),
        Rule::Deny(Errno::EPERM, IO_URING),
    ),
    sc(
        "io_uring_enter",
        Some(426),
        Some(426),
        Rule::Deny(Errno::EPERM, IO_URING),
    ),
    sc(
        "io_uring_register",
        Some(427),
        Some(427),
        Rule::Deny(Errno::EPERM, IO_URING),
    ),
    sc(
        "open_tree",
        Some(428),
        Some(428),
        Rule::Deny(Errno::EPERM, MOUNT),
    ),
    sc(
        "move_mount",
        Some(429),
        Some(429),
        Rule::Deny(Errno::EPERM, MOUNT),
    ),
    sc(
        "fsopen",
        Some(430),
        Some(430),
        Rule::Deny(Errno::EPERM, MOUNT),
    ),
    sc(
        "fsconfig",
        Some(431),
        Some(431),
        Rule::Deny(Errno::EPERM, MOUNT),
    ),
    sc(
        "fsmount",
        Some(432),
        Some(432),
        Rule::Deny(Errno::EPERM, MOUNT),
    ),
    sc(
        "fspick",
        Some(433),
        Some(433),
        Rule::Deny(Errno::EPERM, MOUNT),
    ),
    sc("pidfd_open", Some(434), Some(434), ALLOW),
    sc(
        "clone3",
        Some(435),
        Some(435),
        Rule::Deny(Errno::ENOSYS, CLONE3),
    ),
    sc("close_range", Some(436), Some(436), ALLOW),
    sc(
        "openat2",
        Some(437),
        Some(437),
        Rule::Deny(Errno::ENOSYS, OPENAT2),
    ),
    sc(
        "pidfd_getfd",
        Some(438),
        Some(438),
        Rule::Deny(Errno::EPERM, TRACE),
    ),
    sc("faccessat2", Some(439), Some(439), ALLOW),
    sc(
        "process_madvise",
        Some(440),
        Some(440),
        Rule::Deny(Errno::EPERM, TRACE),
    ),
    sc("epoll_pwait2", Some(441), Some(441), ALLOW),
    sc(
        "mount_setattr",
        Some(442),
        Some(442),
        Rule::Deny(Errno::EPERM, MOUNT),
    ),
    sc(
        "quotactl_fd",
        Some(443),
        Some(443),
        Rule::Deny(Errno::EPERM, HOST_ADMIN),
    ),
    sc("landlock_create_ruleset", Some(444), Some(444), ALLOW),
    sc("landlock_add_rule", Some(445), Some(445), ALLOW),
    sc("landlock_restrict_self", Some(446), Some(446), ALLOW),
    sc("memfd_secret", Some(447), Some(447), ALLOW),
    sc("process_mrelease", Some(448), Some(448), ALLOW),
    sc("futex_waitv", Some(449), Some(449), ALLOW),
    sc(
        "set_mempolicy_home_node",
        Some(450),
        Some(450),
        Rule::Deny(Errno::EPERM, NUMA),
    ),
    sc("cachestat", Some(451), Some(451), ALLOW),
    sc(
        "fchmodat2",
        Some(452),
        Some(452),
        Rule::Args(ArgRule::NoSetidMode { mode: 2 }),
    ),
    sc("map_shadow_stack", Some(453), Some(453), ALLOW),
    sc("futex_wake", Some(454), Some(454), ALLOW),
    sc("futex_wait", Some(455), Some(455), ALLOW),
    sc("futex_requeue", Some(456), Some(456), ALLOW),
    sc(
        "statmount",
        Some(457),
        Some(457),
        Rule::Deny(Errno::ENOSYS, NOT_NEEDED),
    ),
    sc(
        "listmount",
        Some(458),
        Some(458),
        Rule::Deny(Errno::ENOSYS, NOT_NEEDED),
    ),
    sc(
        "lsm_get_self_attr",
        Some(459),
        Some(459),
        Rule::Deny(Errno::ENOSYS, NOT_NEEDED),
    ),
    sc(
        "lsm_set_self_attr",
        Some(460),
        Some(460),
        Rule::Deny(Errno::ENOSYS, NOT_NEEDED),
    ),
    sc(
        "lsm_list_modules",
        Some(461),
        Some(461),
        Rule::Deny(Errno::ENOSYS, NOT_NEEDED),
    ),
    sc("mseal", Some(462), Some(462), ALLOW),
    sc("setxattrat", Some(463), Some(463), ALLOW),
    sc("getxattrat", Some(464), Some(464), ALLOW),
    sc("listxattrat", Some(465), Some(465), ALLOW),
    sc("removexattrat", Some(466), Some(466), ALLOW),
    sc(
        "open_tree_attr",
        Some(467),
        Some(467),
        Rule::Deny(Errno::EPERM, MOUNT),
    ),
    sc("file_getattr", Some(468), Some(468), ALLOW),
    sc("file_setattr", Some(469), Some(469), ALLOW),
];
