//! In-process kernel tests: install the real filter in a forked child and assert the
//! errnos (or SIGSYS) the kernel returns, then exec real programs under it.
//!
//! `harness = false`: libtest runs tests on several threads, and a child forked from a
//! multi-threaded process must not allocate (another thread may hold the allocator lock).
//! This runner is single-threaded, and the child paths use raw syscalls on stack data
//! anyway. A child turns any panic into exit code 101, so a panic can never pass.
//!
//! A missing kernel feature prints `skip <test>: <reason>`; if the feature is listed in
//! `AGENTCAGE_TEST_EXPECT` (e.g. `seccomp,ia32`), it fails instead.

use std::os::unix::process::CommandExt as _;
use std::process::{Command, ExitCode};

use agentcage_seccomp::{install, prepare, FilterOptions, PreparedFilter};

type Check = (&'static str, fn() -> bool);

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// `syscall(nr, args...)` → `Err(errno)` or `Ok(rc)`.
fn sys(nr: libc::c_long, a: [usize; 5]) -> Result<libc::c_long, i32> {
    // SAFETY: every call below passes integers or deliberately invalid pointers that the
    // kernel validates (EFAULT) before dereferencing; no Rust memory is handed over.
    let rc = unsafe { libc::syscall(nr, a[0], a[1], a[2], a[3], a[4]) };
    if rc < 0 {
        Err(errno())
    } else {
        Ok(rc)
    }
}

fn fails_with(nr: libc::c_long, a: [usize; 5], want: i32) -> bool {
    sys(nr, a) == Err(want)
}

/// An address the kernel will refuse to read (EFAULT), so an allowed call has no effect.
const BAD_PTR: usize = 1;

const CHECKS: &[Check] = &[
    ("getpid works", || {
        sys(libc::SYS_getpid, [0; 5]).is_ok_and(|p| p > 0)
    }),
    ("/proc/self/status says Seccomp: 2", seccomp_mode_is_filter),
    ("mount -> EPERM", || {
        fails_with(
            libc::SYS_mount,
            [BAD_PTR, BAD_PTR, BAD_PTR, 0, 0],
            libc::EPERM,
        )
    }),
    ("umount2 -> EPERM", || {
        fails_with(libc::SYS_umount2, [BAD_PTR, 0, 0, 0, 0], libc::EPERM)
    }),
    ("unshare(CLONE_NEWUSER) -> EPERM", || {
        fails_with(
            libc::SYS_unshare,
            [libc::CLONE_NEWUSER as usize, 0, 0, 0, 0],
            libc::EPERM,
        )
    }),
    ("setns -> EPERM", || {
        fails_with(libc::SYS_setns, [usize::MAX, 0, 0, 0, 0], libc::EPERM)
    }),
    // CLONE_NEWUSER|CLONE_FS is invalid (EINVAL) if it reached the kernel.
    ("clone(CLONE_NEWUSER|CLONE_FS) -> EPERM", || {
        let f = (libc::CLONE_NEWUSER | libc::CLONE_FS) as usize;
        fails_with(libc::SYS_clone, [f, 0, 0, 0, 0], libc::EPERM)
    }),
    // CLONE_SIGHAND without CLONE_VM is invalid: EINVAL proves the call was let through.
    ("clone(CLONE_SIGHAND) reaches the kernel (EINVAL)", || {
        let f = libc::CLONE_SIGHAND as usize;
        fails_with(libc::SYS_clone, [f, 0, 0, 0, 0], libc::EINVAL)
    }),
    ("clone3 -> ENOSYS", || {
        fails_with(libc::SYS_clone3, [BAD_PTR, 88, 0, 0, 0], libc::ENOSYS)
    }),
    ("fork (glibc, via clone) works", fork_works),
    ("ptrace(PEEKDATA, 0) -> EPERM", || {
        fails_with(
            libc::SYS_ptrace,
            [libc::PTRACE_PEEKDATA as usize, 0, 0, 0, 0],
            libc::EPERM,
        )
    }),
    ("process_vm_readv -> EPERM", || {
        fails_with(libc::SYS_process_vm_readv, [0, 0, 0, 0, 0], libc::EPERM)
    }),
    ("ioctl(-1, TIOCSTI) -> EPERM", || {
        fails_with(libc::SYS_ioctl, [usize::MAX, 0x5412, 0, 0, 0], libc::EPERM)
    }),
    ("ioctl(-1, TIOCSTI | 1<<32) -> EPERM", || {
        fails_with(
            libc::SYS_ioctl,
            [usize::MAX, 0x1_0000_5412, 0, 0, 0],
            libc::EPERM,
        )
    }),
    ("ioctl(-1, TIOCLINUX) -> EPERM", || {
        fails_with(libc::SYS_ioctl, [usize::MAX, 0x541c, 0, 0, 0], libc::EPERM)
    }),
    ("ioctl(-1, TCGETS) reaches the kernel (EBADF)", || {
        fails_with(libc::SYS_ioctl, [usize::MAX, 0x5401, 0, 0, 0], libc::EBADF)
    }),
    ("socket(AF_PACKET) -> EAFNOSUPPORT", || {
        let a = [libc::AF_PACKET as usize, libc::SOCK_RAW as usize, 0, 0, 0];
        fails_with(libc::SYS_socket, a, libc::EAFNOSUPPORT)
    }),
    ("socket(AF_INET, SOCK_PACKET) -> EAFNOSUPPORT", || {
        let a = [
            libc::AF_INET as usize,
            10, /* SOCK_PACKET, deprecated in libc */
            0x300,
            0,
            0,
        ];
        fails_with(libc::SYS_socket, a, libc::EAFNOSUPPORT)
    }),
    (
        "socket(AF_INET, SOCK_STREAM, IPPROTO_MPTCP) -> EPROTONOSUPPORT",
        || {
            let a = [
                libc::AF_INET as usize,
                libc::SOCK_STREAM as usize,
                262,
                0,
                0,
            ];
            fails_with(libc::SYS_socket, a, libc::EPROTONOSUPPORT)
        },
    ),
    (
        "socket(AF_INET6, SOCK_STREAM, IPPROTO_SCTP) -> EPROTONOSUPPORT",
        || {
            let a = [
                libc::AF_INET6 as usize,
                libc::SOCK_STREAM as usize,
                132,
                0,
                0,
            ];
            fails_with(libc::SYS_socket, a, libc::EPROTONOSUPPORT)
        },
    ),
    ("ioctl(-1, TIOCSETD) -> EPERM", || {
        fails_with(libc::SYS_ioctl, [usize::MAX, 0x5423, 0, 0, 0], libc::EPERM)
    }),
    ("socket(AF_VSOCK) -> EAFNOSUPPORT", || {
        let a = [libc::AF_VSOCK as usize, libc::SOCK_STREAM as usize, 0, 0, 0];
        fails_with(libc::SYS_socket, a, libc::EAFNOSUPPORT)
    }),
    (
        "socket(AF_NETLINK, NETLINK_GENERIC) -> EPROTONOSUPPORT",
        || {
            let a = [libc::AF_NETLINK as usize, libc::SOCK_RAW as usize, 16, 0, 0];
            fails_with(libc::SYS_socket, a, libc::EPROTONOSUPPORT)
        },
    ),
    ("socket(AF_INET, SOCK_STREAM) works", || {
        socket_works(libc::AF_INET, libc::SOCK_STREAM, 0)
    }),
    ("socket(AF_UNIX, SOCK_DGRAM) works", || {
        socket_works(libc::AF_UNIX, libc::SOCK_DGRAM, 0)
    }),
    ("socket(AF_NETLINK, NETLINK_ROUTE) works", || {
        socket_works(libc::AF_NETLINK, libc::SOCK_RAW, libc::NETLINK_ROUTE)
    }),
    ("socketpair(AF_INET) -> EAFNOSUPPORT", || {
        let a = [
            libc::AF_INET as usize,
            libc::SOCK_STREAM as usize,
            0,
            BAD_PTR,
            0,
        ];
        fails_with(libc::SYS_socketpair, a, libc::EAFNOSUPPORT)
    }),
    ("personality(0xffffffff) works", || {
        sys(libc::SYS_personality, [0xffff_ffff, 0, 0, 0, 0]).is_ok()
    }),
    ("personality(ADDR_NO_RANDOMIZE) -> EPERM", || {
        fails_with(libc::SYS_personality, [0x004_0000, 0, 0, 0, 0], libc::EPERM)
    }),
    ("bpf -> EPERM", || {
        fails_with(libc::SYS_bpf, [usize::MAX, 0, 0, 0, 0], libc::EPERM)
    }),
    ("perf_event_open -> EPERM", || {
        fails_with(
            libc::SYS_perf_event_open,
            [BAD_PTR, 0, 0, 0, 0],
            libc::EPERM,
        )
    }),
    ("userfaultfd -> EPERM", || {
        fails_with(libc::SYS_userfaultfd, [0, 0, 0, 0, 0], libc::EPERM)
    }),
    ("io_uring_setup -> EPERM", || {
        fails_with(libc::SYS_io_uring_setup, [0, BAD_PTR, 0, 0, 0], libc::EPERM)
    }),
    ("keyctl -> EPERM", || {
        fails_with(libc::SYS_keyctl, [0, 0, 0, 0, 0], libc::EPERM)
    }),
    ("open_by_handle_at -> EPERM", || {
        fails_with(
            libc::SYS_open_by_handle_at,
            [usize::MAX, BAD_PTR, 0, 0, 0],
            libc::EPERM,
        )
    }),
    ("reboot(bad magic) -> EPERM", || {
        fails_with(libc::SYS_reboot, [0, 0, 0, 0, 0], libc::EPERM)
    }),
    ("clock_settime -> EPERM", || {
        fails_with(libc::SYS_clock_settime, [0, BAD_PTR, 0, 0, 0], libc::EPERM)
    }),
    ("fsopen -> EPERM", || {
        fails_with(libc::SYS_fsopen, [BAD_PTR, 0, 0, 0, 0], libc::EPERM)
    }),
    ("lsm_list_modules (461) -> ENOSYS", || {
        fails_with(461, [BAD_PTR, BAD_PTR, 0, 0, 0], libc::ENOSYS)
    }),
    ("unknown number 1000 -> ENOSYS", || {
        fails_with(1000, [0; 5], libc::ENOSYS)
    }),
];

fn socket_works(domain: i32, ty: i32, proto: i32) -> bool {
    let a = [
        domain as usize,
        (ty | libc::SOCK_CLOEXEC) as usize,
        proto as usize,
        0,
        0,
    ];
    match sys(libc::SYS_socket, a) {
        Ok(fd) => sys(libc::SYS_close, [fd as usize, 0, 0, 0, 0]).is_ok(),
        Err(_) => false,
    }
}

fn seccomp_mode_is_filter() -> bool {
    let mut buf = [0u8; 4096];
    // SAFETY: the path is a NUL-terminated literal.
    let fd = unsafe {
        libc::open(
            c"/proc/self/status".as_ptr(),
            libc::O_RDONLY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return false;
    }
    let mut len = 0;
    while len < buf.len() {
        // SAFETY: writes at most buf.len() - len bytes into the live stack buffer.
        let n = unsafe { libc::read(fd, buf[len..].as_mut_ptr().cast(), buf.len() - len) };
        if n <= 0 {
            break;
        }
        len += n as usize;
    }
    // SAFETY: fd was opened above and is closed once.
    unsafe { libc::close(fd) };
    buf[..len].windows(11).any(|w| w == b"\nSeccomp:\t2")
}

fn fork_works() -> bool {
    // SAFETY: the child only calls _exit.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: terminating the child without running destructors is the intent.
        unsafe { libc::_exit(7) };
    }
    if pid < 0 {
        return false;
    }
    let mut status = 0;
    // SAFETY: waits for the child created above; status is a live local.
    let rc = unsafe { libc::waitpid(pid, &mut status, 0) };
    rc == pid && libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 7
}

/// Runs `body` in a forked child and returns its raw wait status.
fn in_child(body: &dyn Fn() -> i32) -> i32 {
    // SAFETY: single-threaded runner; the child runs `body` (allocation-free on every path
    // that is not already a failure) and leaves with _exit.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(body)).unwrap_or(101);
        // SAFETY: ends the child without unwinding into the parent's test code.
        unsafe { libc::_exit(code) };
    }
    assert!(pid > 0, "fork failed: errno {}", errno());
    let mut status = 0;
    // SAFETY: waits for our own child; status is a live local.
    let rc = unsafe { libc::waitpid(pid, &mut status, 0) };
    assert_eq!(rc, pid, "waitpid: errno {}", errno());
    status
}

/// no_new_privs, then the filter. Returns 0 or a failure code >= 2.
fn lock_down(f: &PreparedFilter) -> i32 {
    // SAFETY: plain prctl with integer arguments.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return 2;
    }
    match install(f) {
        Ok(()) => 0,
        Err(_) => 3,
    }
}

fn describe(status: i32) -> String {
    if libc::WIFEXITED(status) {
        format!("exit {}", libc::WEXITSTATUS(status))
    } else if libc::WIFSIGNALED(status) {
        format!("signal {}", libc::WTERMSIG(status))
    } else {
        format!("status {status:#x}")
    }
}

fn test_errnos(f: &PreparedFilter) -> Result<(), String> {
    let status = in_child(&|| {
        let rc = lock_down(f);
        if rc != 0 {
            return rc;
        }
        for (i, (_, check)) in CHECKS.iter().enumerate() {
            if !check() {
                return 10 + i as i32;
            }
        }
        0
    });
    match (libc::WIFEXITED(status), libc::WEXITSTATUS(status)) {
        (true, 0) => Ok(()),
        (true, 2) => Err("PR_SET_NO_NEW_PRIVS failed".into()),
        (true, 3) => Err("install failed".into()),
        (true, c) if c >= 10 && usize::try_from(c - 10).is_ok_and(|i| i < CHECKS.len()) => {
            Err(format!("check failed: {}", CHECKS[(c - 10) as usize].0))
        }
        _ => Err(format!("child ended with {}", describe(status))),
    }
}

/// Runs `body` under `f` in a child; its exit code names the failing step (0: passed).
fn steps_in_child(
    f: &PreparedFilter,
    steps: &[&str],
    body: &dyn Fn() -> i32,
) -> Result<(), String> {
    let status = in_child(&|| match lock_down(f) {
        0 => body(),
        rc => rc,
    });
    match (libc::WIFEXITED(status), libc::WEXITSTATUS(status)) {
        (true, 0) => Ok(()),
        (true, 2) => Err("PR_SET_NO_NEW_PRIVS failed".into()),
        (true, 3) => Err("install failed".into()),
        (true, c) if c >= 10 && usize::try_from(c - 10).is_ok_and(|i| i < steps.len()) => {
            Err(format!("failed: {}", steps[(c - 10) as usize]))
        }
        _ => Err(format!("child ended with {}", describe(status))),
    }
}

/// Set-id mode bits are refused on the real kernel; the file never gets them.
fn test_setid_modes(f: &PreparedFilter) -> Result<(), String> {
    let dir = std::env::temp_dir().join(format!("agentcage-seccomp-setid-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let file = std::ffi::CString::new(dir.join("f").into_os_string().into_encoded_bytes())
        .map_err(|e| e.to_string())?;
    let made = std::ffi::CString::new(dir.join("g").into_os_string().into_encoded_bytes())
        .map_err(|e| e.to_string())?;
    std::fs::write(dir.join("f"), b"").map_err(|e| e.to_string())?;
    const STEPS: &[&str] = &[
        "chmod 04755 -> EPERM",
        "fchmodat 02755 -> EPERM",
        "chmod 01755 works",
        "openat(O_CREAT, 04755) -> EPERM",
        "openat(O_CREAT, 0644) works",
        "openat2 -> ENOSYS",
    ];
    let r = steps_in_child(f, STEPS, &|| {
        let (p, g) = (file.as_ptr() as usize, made.as_ptr() as usize);
        let at = libc::AT_FDCWD as usize;
        let checks = [
            fails_with(libc::SYS_chmod, [p, 0o4755, 0, 0, 0], libc::EPERM),
            fails_with(libc::SYS_fchmodat, [at, p, 0o2755, 0, 0], libc::EPERM),
            sys(libc::SYS_chmod, [p, 0o1755, 0, 0, 0]).is_ok(),
            fails_with(
                libc::SYS_openat,
                [at, g, (libc::O_CREAT | libc::O_WRONLY) as usize, 0o4755, 0],
                libc::EPERM,
            ),
            sys(
                libc::SYS_openat,
                [at, g, (libc::O_CREAT | libc::O_WRONLY) as usize, 0o644, 0],
            )
            .is_ok(),
            fails_with(libc::SYS_openat2, [at, g, BAD_PTR, 24, 0], libc::ENOSYS),
        ];
        checks
            .iter()
            .position(|ok| !ok)
            .map_or(0, |i| 10 + i as i32)
    });
    let _ = std::fs::remove_dir_all(&dir);
    r
}

/// Fast Open is refused in the `flags` register of every send; `sendmmsg`'s per-message
/// `msg_flags` do not connect (the kernel takes only MSG_EOR from them), so the register
/// check is complete. Loopback only.
fn test_fast_open_guards(f: &PreparedFilter) -> Result<(), String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let port = l.local_addr().map_err(|e| e.to_string())?.port();
    const STEPS: &[&str] = &[
        "socket",
        "sendto(MSG_FASTOPEN) -> EOPNOTSUPP",
        "sendmsg(MSG_FASTOPEN) -> EOPNOTSUPP",
        "sendmmsg(MSG_FASTOPEN) -> EOPNOTSUPP",
        "setsockopt(TCP_FASTOPEN_CONNECT) -> EOPNOTSUPP",
        "sendmmsg with MSG_FASTOPEN only in msg_flags does not connect",
        "setsockopt(TCP_NODELAY) works",
    ];
    let r = steps_in_child(f, STEPS, &|| {
        // SAFETY: plain socket syscall.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0) };
        if fd < 0 {
            return 10;
        }
        let addr = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: port.to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from(std::net::Ipv4Addr::LOCALHOST).to_be(),
            },
            sin_zero: [0; 8],
        };
        let alen = std::mem::size_of::<libc::sockaddr_in>();
        let ap = &addr as *const libc::sockaddr_in as usize;
        let byte = [b'x'];
        let mut iov = libc::iovec {
            iov_base: byte.as_ptr() as *mut libc::c_void,
            iov_len: 1,
        };
        // SAFETY: zeroed msghdr is valid; fields set below point to live locals.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_name = ap as *mut libc::c_void;
        msg.msg_namelen = alen as u32;
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        let mut mm = libc::mmsghdr {
            msg_hdr: msg,
            msg_len: 0,
        };
        let fo = 0x2000_0000usize;
        let notsup = libc::EOPNOTSUPP;
        let mp = &msg as *const libc::msghdr as usize;
        let one = 1i32;
        let sendto = |fl: usize| {
            // SAFETY: 6-argument sendto on live locals.
            let rc = unsafe { libc::syscall(libc::SYS_sendto, fd, byte.as_ptr(), 1, fl, ap, alen) };
            if rc < 0 {
                Err(errno())
            } else {
                Ok(rc)
            }
        };
        let mut checks = [false; 6];
        checks[0] = sendto(fo) == Err(notsup);
        checks[1] = fails_with(libc::SYS_sendmsg, [fd as usize, mp, fo, 0, 0], notsup);
        checks[2] = fails_with(
            libc::SYS_sendmmsg,
            [
                fd as usize,
                &mut mm as *mut libc::mmsghdr as usize,
                1,
                fo,
                0,
            ],
            notsup,
        );
        checks[3] = fails_with(
            libc::SYS_setsockopt,
            [fd as usize, 6, 30, &one as *const i32 as usize, 4],
            notsup,
        );
        mm.msg_hdr.msg_flags = fo as i32;
        checks[4] = matches!(
            sys(
                libc::SYS_sendmmsg,
                [fd as usize, &mut mm as *mut libc::mmsghdr as usize, 1, 0, 0]
            ),
            Err(libc::EPIPE) | Err(libc::ENOTCONN)
        );
        checks[5] = sys(
            libc::SYS_setsockopt,
            [fd as usize, 6, 1, &one as *const i32 as usize, 4],
        )
        .is_ok();
        checks
            .iter()
            .position(|ok| !ok)
            .map_or(0, |i| 11 + i as i32)
    });
    l.set_nonblocking(true).map_err(|e| e.to_string())?;
    if let Ok((_, from)) = l.accept() {
        return Err(format!("the listener accepted a connection from {from}"));
    }
    r
}

/// The i386 `int 0x80` syscall `nr` with arguments; returns eax.
#[cfg(target_arch = "x86_64")]
fn int80(nr: u32, a: u32, b: u32, c: u32) -> i32 {
    let ret: i32;
    // SAFETY: int 0x80 enters the i386 syscall ABI; the arguments are integers (or bad
    // pointers the kernel rejects). The kernel clobbers r8-r11 on this path; rbx is
    // saved by hand because LLVM reserves it.
    unsafe {
        core::arch::asm!(
            "xchg {b:r}, rbx",
            "int 0x80",
            "xchg {b:r}, rbx",
            b = inout(reg) u64::from(a) => _,
            inlateout("eax") nr as i32 => ret,
            in("ecx") b,
            in("edx") c,
            lateout("r8") _, lateout("r9") _, lateout("r10") _, lateout("r11") _,
        );
    }
    ret
}

#[cfg(target_arch = "x86_64")]
fn ia32_available() -> Result<(), String> {
    let status = in_child(&|| {
        // SAFETY: getpid has no arguments.
        let pid = unsafe { libc::getpid() };
        if int80(20, 0, 0, 0) == pid {
            0
        } else {
            1
        }
    });
    if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0 {
        Ok(())
    } else {
        Err(format!(
            "IA32 emulation unavailable (int 0x80 getpid: {})",
            describe(status)
        ))
    }
}

#[cfg(target_arch = "x86_64")]
fn test_foreign_abi_killed(f: &PreparedFilter) -> Result<(), String> {
    // i386 getpid (20), ptrace(PTRACE_TRACEME) (26), mount with bad pointers (21), and the
    // x32 getpid (0x40000000 | 39).
    let cases: [(&str, &dyn Fn() -> i32); 4] = [
        ("i386 getpid", &|| int80(20, 0, 0, 0)),
        ("i386 ptrace", &|| int80(26, 0, 0, 0)),
        ("i386 mount", &|| int80(21, 1, 1, 1)),
        ("x32 getpid", &|| {
            sys(0x4000_0000 | 39, [0; 5]).map_or_else(|e| -e, |r| r as i32)
        }),
    ];
    for (name, call) in cases {
        let status = in_child(&|| {
            let rc = lock_down(f);
            if rc != 0 {
                return rc;
            }
            call();
            1 // survived: the filter let the foreign ABI through
        });
        if !(libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGSYS) {
            return Err(format!(
                "{name}: want SIGSYS, child ended with {}",
                describe(status)
            ));
        }
    }
    Ok(())
}

/// Runs `prog args` with no_new_privs and the filter installed in the pre-exec child;
/// `Ok(None)` when the program is not on this host.
fn run_under_filter(
    f: &PreparedFilter,
    prog: &str,
    args: &[&str],
) -> Result<Option<String>, String> {
    if !std::path::Path::new(prog).exists() {
        return Ok(None);
    }
    let filter = f.clone();
    let mut cmd = Command::new(prog);
    cmd.args(args).env("LC_ALL", "C");
    // SAFETY: the closure only calls prctl and install, both async-signal-safe and
    // allocation-free; the filter was cloned before the fork.
    unsafe {
        cmd.pre_exec(move || match lock_down(&filter) {
            0 => Ok(()),
            _ => Err(std::io::Error::from_raw_os_error(libc::EPERM)),
        });
    }
    let out = cmd.output().map_err(|e| format!("spawn {prog}: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        Ok(Some(stdout))
    } else {
        Err(format!(
            "{prog} {args:?} failed under the filter: {}\nstdout: {stdout}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

const PYTHON: &str = r#"
import asyncio, errno, hashlib, json, multiprocessing, os, socket, ssl, subprocess
import sqlite3, tempfile, threading, venv

def square(x):
    return x * x

if __name__ == "__main__":
    box = []
    t = threading.Thread(target=lambda: box.append(1)); t.start(); t.join()
    assert box == [1]
    with multiprocessing.Pool(2) as pool:
        assert pool.map(square, range(20)) == [x * x for x in range(20)]
    ctx = multiprocessing.get_context("spawn")
    q = ctx.Queue(); p = ctx.Process(target=q.put, args=(42,)); p.start()
    assert q.get(timeout=30) == 42; p.join()
    sem = multiprocessing.Semaphore(1); sem.acquire(); sem.release()
    assert subprocess.run(["/bin/sh", "-c", "echo hi"], capture_output=True).stdout == b"hi\n"
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM); s.bind(("127.0.0.1", 0)); s.listen()
    c = socket.create_connection(s.getsockname()); a, _ = s.accept(); c.sendall(b"x")
    assert a.recv(1) == b"x"
    for x in (a, c, s): x.close()
    l, r = socket.socketpair(); l.send(b"y"); assert r.recv(1) == b"y"
    socket.if_nameindex()
    socket.getaddrinfo("localhost", 80)
    ssl.create_default_context()
    try:
        socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
        raise SystemExit("AF_PACKET allowed")
    except OSError as e:
        assert e.errno == errno.EAFNOSUPPORT, e
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "db")
        db = sqlite3.connect(path); db.execute("create table t (x)"); db.commit(); db.close()
        venv.create(os.path.join(d, "venv"), with_pip=False)
        out = subprocess.run([os.path.join(d, "venv", "bin", "python"), "-c", "print(6*7)"],
                             capture_output=True, check=True).stdout
        assert out == b"42\n", out
    asyncio.run(asyncio.sleep(0))
    hashlib.sha256(b"x").hexdigest()
    print("ok")
"#;

/// One program run under the filter; `needs` lists host binaries without which it is
/// skipped (with the reason printed); `required` ones fail instead.
struct Case {
    name: &'static str,
    prog: &'static str,
    args: Vec<String>,
    needs: &'static [&'static str],
    required: bool,
}

const NODE: &str = "const {Worker} = require('worker_threads');
require('child_process').execSync('true');
require('net').createServer().listen(0, '127.0.0.1', function () { this.close(); });
new Worker('process.exit(0)', {eval: true}).on('exit', () => console.log('ok'));";

fn test_real_programs(f: &PreparedFilter) -> Result<(), String> {
    let scratch = std::env::temp_dir().join(format!("agentcage-seccomp-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).map_err(|e| format!("mkdir scratch: {e}"))?;
    let d = scratch.display();
    let sh = |script: String| vec!["-c".to_string(), script];
    let cases = [
        Case {
            name: "sh",
            prog: "/bin/sh",
            args: sh("echo ok".into()),
            needs: &[],
            required: true,
        },
        Case {
            name: "python3 (threads, multiprocessing, sockets, ssl, sqlite, venv)",
            prog: "/usr/bin/python3",
            args: vec!["-c".into(), PYTHON.into()],
            needs: &[],
            required: true,
        },
        Case {
            name: "tar",
            prog: "/bin/sh",
            args: sh(format!(
                "cd {d} && echo x > f && tar -czf a.tgz f && tar -tzf a.tgz >/dev/null && echo ok"
            )),
            needs: &["/usr/bin/tar", "/usr/bin/gzip"],
            required: false,
        },
        Case {
            name: "gcc",
            prog: "/bin/sh",
            args: sh(format!(
                "cd {d} && echo 'int main(void) {{ return 0; }}' > t.c && gcc -O1 -o t t.c && ./t && echo ok"
            )),
            needs: &["/usr/bin/gcc"],
            required: false,
        },
        Case {
            name: "git",
            prog: "/bin/sh",
            args: sh(format!(
                "cd {d} && git init -q r && cd r && echo x > f && git add f \\
                 && git -c user.name=a -c user.email=a@b commit -qm m && git log --oneline >/dev/null \\
                 && echo ok"
            )),
            needs: &["/usr/bin/git", "/usr/local/bin/git"],
            required: false,
        },
        Case {
            name: "node (worker thread, child process, listen)",
            prog: "/usr/bin/node",
            args: vec!["-e".into(), NODE.into()],
            needs: &["/usr/bin/node"],
            required: false,
        },
    ];
    let mut result = Ok(());
    for case in &cases {
        let present =
            case.needs.is_empty() || case.needs.iter().any(|n| std::path::Path::new(n).exists());
        if !present && !case.required {
            eprintln!("  skip {}: none of {:?} installed", case.name, case.needs);
            continue;
        }
        let args: Vec<&str> = case.args.iter().map(String::as_str).collect();
        match run_under_filter(f, case.prog, &args) {
            Ok(Some(out)) if out.trim_end().ends_with("ok") => eprintln!("  ok {}", case.name),
            Ok(Some(out)) => result = Err(format!("{}: unexpected output {out:?}", case.name)),
            Ok(None) if case.required => result = Err(format!("{} is missing", case.prog)),
            Ok(None) => eprintln!("  skip {}: {} not installed", case.name, case.prog),
            Err(e) => result = Err(format!("{}: {e}", case.name)),
        }
        if result.is_err() {
            break;
        }
    }
    let _ = std::fs::remove_dir_all(&scratch);
    result
}

fn seccomp_available() -> Result<(), String> {
    // SAFETY: PR_GET_SECCOMP takes no pointer.
    let mode = unsafe { libc::prctl(libc::PR_GET_SECCOMP, 0, 0, 0, 0) };
    if mode < 0 {
        return Err(format!("prctl(PR_GET_SECCOMP) failed: errno {}", errno()));
    }
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    if !status.contains("\nSeccomp:") {
        return Err("kernel without CONFIG_SECCOMP_FILTER".into());
    }
    if mode != 0 {
        return Err(format!(
            "this test process already runs under seccomp mode {mode}"
        ));
    }
    Ok(())
}

fn expected(feature: &str) -> bool {
    std::env::var("AGENTCAGE_TEST_EXPECT").is_ok_and(|v| v.split(',').any(|f| f.trim() == feature))
}

fn main() -> ExitCode {
    let mut failed = 0;
    let mut report =
        |name: &str, missing: Option<(&str, String)>, run: &dyn Fn() -> Result<(), String>| {
            if let Some((feature, why)) = missing {
                if expected(feature) {
                    eprintln!("FAIL {name}: {feature} expected (AGENTCAGE_TEST_EXPECT) but {why}");
                    failed += 1;
                } else {
                    eprintln!("skip {name}: {why}");
                }
                return;
            }
            match run() {
                Ok(()) => eprintln!("ok   {name}"),
                Err(e) => {
                    eprintln!("FAIL {name}: {e}");
                    failed += 1;
                }
            }
        };

    let filter = match prepare(&FilterOptions::default()) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("FAIL prepare: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mitigated = prepare(&FilterOptions {
        spec_mitigation: true,
        ..FilterOptions::default()
    });
    let guarded = prepare(&FilterOptions {
        tcp_guards: true,
        ..FilterOptions::default()
    });
    let no_seccomp = seccomp_available().err().map(|w| ("seccomp", w));

    report("kernel::errnos", no_seccomp.clone(), &|| {
        test_errnos(&filter)
    });
    report(
        "kernel::errnos_with_spec_mitigation",
        no_seccomp.clone(),
        &|| {
            mitigated
                .as_ref()
                .map_err(|e| e.to_string())
                .and_then(test_errnos)
        },
    );
    #[cfg(target_arch = "x86_64")]
    {
        let missing = no_seccomp
            .clone()
            .or_else(|| ia32_available().err().map(|w| ("ia32", w)));
        report("kernel::foreign_abi_killed", missing, &|| {
            test_foreign_abi_killed(&filter)
        });
    }
    report("kernel::setid_modes", no_seccomp.clone(), &|| {
        test_setid_modes(&filter)
    });
    report("kernel::tcp_fast_open_guards", no_seccomp.clone(), &|| {
        guarded
            .as_ref()
            .map_err(|e| e.to_string())
            .and_then(test_fast_open_guards)
    });
    report("kernel::real_programs", no_seccomp, &|| {
        test_real_programs(&filter)
    });

    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        eprintln!("{failed} kernel test(s) failed");
        ExitCode::FAILURE
    }
}
