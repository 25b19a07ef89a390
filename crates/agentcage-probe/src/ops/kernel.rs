//! Kernel-surface ops: mounts, namespaces, privileged and risky syscalls, and the 32-bit
//! entry points.
//!
//! Pattern (as bubblewrap's `try-syscall.c`): call the syscall with an argument the kernel
//! rejects only *after* its permission check, so ALLOWED carries the proving errno (EINVAL,
//! ENOENT, ENOEXEC...) and a refusal shows the refusing errno (EPERM from a capability check
//! or a seccomp filter, SIGSYS from a seccomp kill). The few calls that do take effect
//! (mount, mknod, namespaces, chroot, personality) act on the probe's scratch directory or on
//! the forked op child only, and are undone at once.

use std::ffi::CStr;

use super::{cpath, flatten, gate, Ctx, Op, Outcome};
use crate::errno::Errno;
use crate::schema::Category::Kernel;
use crate::sys::{self, Fork};

/// The kernel-surface ops.
pub const OPS: &[Op] = &[
    Op::new(
        "kernel.mount.tmpfs",
        "mount tmpfs /tmp",
        Kernel,
        mount_tmpfs,
    ),
    Op::new(
        "kernel.umount.scratch",
        "umount a directory that is not a mount point",
        Kernel,
        umount_scratch,
    ),
    Op::new(
        "kernel.pivot_root.scratch",
        "pivot_root onto a non-mount-point",
        Kernel,
        pivot_root_scratch,
    ),
    Op::new("kernel.chroot.root", "chroot /", Kernel, chroot_root),
    Op::new(
        "kernel.fsopen.tmpfs",
        "fsopen tmpfs (new mount API)",
        Kernel,
        fsopen_tmpfs,
    ),
    Op::new(
        "kernel.unshare.user",
        "unshare(CLONE_NEWUSER)",
        Kernel,
        unshare_user,
    ),
    Op::new(
        "kernel.unshare.mount",
        "unshare(CLONE_NEWNS)",
        Kernel,
        unshare_mount,
    ),
    Op::new(
        "kernel.remount.readonly_rw",
        "remount a read-only bind read-write (in a private copy of the mount namespace)",
        Kernel,
        remount_readonly_rw,
    ),
    Op::new(
        "kernel.unshare.user_net",
        "unshare(CLONE_NEWUSER|CLONE_NEWNET)",
        Kernel,
        unshare_user_net,
    ),
    Op::new(
        "kernel.clone.newuser",
        "clone(CLONE_NEWUSER)",
        Kernel,
        clone_newuser,
    ),
    Op::new(
        "kernel.clone3.newuser",
        "clone3(CLONE_NEWUSER)",
        Kernel,
        clone3_newuser,
    ),
    Op::new(
        "kernel.setns.own_net",
        "setns into its own net namespace",
        Kernel,
        setns_own_net,
    ),
    Op::new(
        "kernel.mknod.char",
        "mknod a character device (1,3)",
        Kernel,
        mknod_char,
    ),
    Op::new(
        "kernel.bpf.prog_load",
        "bpf(BPF_PROG_LOAD) of an empty program",
        Kernel,
        bpf_prog_load,
    ),
    Op::new(
        "kernel.userfaultfd.create",
        "userfaultfd()",
        Kernel,
        userfaultfd,
    ),
    Op::new(
        "kernel.perf_event_open.self",
        "perf_event_open on itself",
        Kernel,
        perf_event_open,
    ),
    Op::new(
        "kernel.keyctl.session",
        "keyctl(KEYCTL_GET_KEYRING_ID)",
        Kernel,
        keyctl_session,
    ),
    Op::new(
        "kernel.add_key.unknown_type",
        "add_key of an unknown key type",
        Kernel,
        add_key,
    ),
    Op::new(
        "kernel.io_uring.setup",
        "io_uring_setup",
        Kernel,
        io_uring_setup,
    ),
    Op::new(
        "kernel.open_by_handle_at.empty",
        "open_by_handle_at with an empty handle",
        Kernel,
        open_by_handle_at,
    ),
    Op::new(
        "kernel.init_module.empty",
        "init_module with an empty image",
        Kernel,
        init_module,
    ),
    Op::new(
        "kernel.delete_module.missing",
        "delete_module of a missing module",
        Kernel,
        delete_module,
    ),
    Op::new(
        "kernel.kexec_load.bad_flags",
        "kexec_load with an undefined flag",
        Kernel,
        kexec_load,
    ),
    Op::new(
        "kernel.reboot.bad_magic",
        "reboot with a bad magic",
        Kernel,
        reboot,
    ),
    Op::new(
        "kernel.swapon.missing",
        "swapon a missing file",
        Kernel,
        swapon,
    ),
    Op::new(
        "kernel.swapoff.missing",
        "swapoff a missing file",
        Kernel,
        swapoff,
    ),
    Op::new(
        "kernel.acct.missing",
        "acct to a missing file",
        Kernel,
        acct,
    ),
    Op::new(
        "kernel.settimeofday.bad_tz",
        "settimeofday with an invalid timezone",
        Kernel,
        settimeofday,
    ),
    Op::new(
        "kernel.clock_adjtime.bad_tick",
        "clock_adjtime with an invalid tick",
        Kernel,
        clock_adjtime,
    ),
    Op::new(
        "kernel.sethostname.bad_len",
        "sethostname with an invalid length",
        Kernel,
        sethostname,
    ),
    Op::new(
        "kernel.personality.no_aslr",
        "personality(ADDR_NO_RANDOMIZE)",
        Kernel,
        personality,
    ),
    Op::new(
        "kernel.syslog.size",
        "syslog(SYSLOG_ACTION_SIZE_BUFFER)",
        Kernel,
        syslog,
    ),
    Op::new("kernel.iopl.raise", "iopl(3)", Kernel, iopl),
    Op::new(
        "kernel.vhangup.no_tty",
        "vhangup (after setsid: no terminal to hang up)",
        Kernel,
        vhangup,
    ),
    Op::new(
        "kernel.ioctl.tiocsti",
        "TIOCSTI on its own new terminal",
        Kernel,
        tiocsti_own_pty,
    ),
    Op::new(
        "kernel.ioctl.tioclinux",
        "TIOCLINUX on its own new terminal",
        Kernel,
        tioclinux_own_pty,
    ),
    Op::new(
        "kernel.int80.ptrace",
        "ptrace TRACEME via int 0x80 (i386)",
        Kernel,
        int80_ptrace,
    ),
    Op::new(
        "kernel.int80.mount",
        "mount tmpfs via int 0x80 (i386)",
        Kernel,
        int80_mount,
    ),
    Op::new(
        "kernel.x32.mount",
        "mount tmpfs via the x32 ABI",
        Kernel,
        x32_mount,
    ),
];

/// Mounts through `mount_fn` onto a fresh scratch dir, then unmounts and removes the dir.
fn scratch_mount(
    ctx: &Ctx,
    name: &str,
    how: &str,
    mount_fn: impl FnOnce(&CStr) -> Result<(), Errno>,
) -> Outcome {
    flatten((|| {
        let dir = ctx.scratch_dir(name)?;
        let c = cpath(&dir)?;
        let out = match mount_fn(&c) {
            Ok(()) => {
                let undone = match undo_mount(&c) {
                    Ok(()) => "unmounted again".to_string(),
                    Err(e) => format!("could NOT unmount: {e}"),
                };
                Outcome::allowed(format!(
                    "{how} mounted tmpfs on {} ({undone})",
                    dir.display()
                ))
            }
            Err(e) => Outcome::blocked(e, &format!("{how} mount tmpfs on {}", dir.display())),
        };
        let _ = std::fs::remove_dir(&dir);
        Ok(out)
    })())
}

/// Unmounts a probe mount: the native call first, then the i386 one (a filter that let the
/// 32-bit mount through may still block the native umount2).
fn undo_mount(target: &CStr) -> Result<(), Errno> {
    match sys::umount2(target, libc::MNT_DETACH) {
        Ok(()) => Ok(()),
        Err(e) => {
            #[cfg(target_arch = "x86_64")]
            if let Ok(mut page) = sys::LowPage::new() {
                if let Ok([t]) = page.strings([target]) {
                    // SAFETY: t points into the live low page; i386 umount2 (52) reads the string.
                    if unsafe { sys::int80(52, t, libc::MNT_DETACH as u32, 0, 0, 0) }.is_ok() {
                        return Ok(());
                    }
                }
            }
            Err(e)
        }
    }
}

const MOUNT_FLAGS: libc::c_ulong = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;

fn mount_tmpfs(ctx: &Ctx) -> Outcome {
    // The reference design mounted over /tmp itself; we mount on a scratch dir under the
    // probe's temporary directory, which is in /tmp (or $TMPDIR), so nothing is hidden.
    scratch_mount(ctx, "mount", "mount(2)", |t| {
        sys::mount(c"tmpfs", t, Some(c"tmpfs"), MOUNT_FLAGS)
    })
}

fn umount_scratch(ctx: &Ctx) -> Outcome {
    flatten((|| {
        let dir = ctx.scratch_dir("umount")?;
        let c = cpath(&dir)?;
        // may_mount() (EPERM) is checked before "not a mount point" (EINVAL).
        let out = gate(
            sys::umount2(&c, 0),
            &[libc::EINVAL],
            &format!("umount2 {}", dir.display()),
        );
        let _ = std::fs::remove_dir(&dir);
        Ok(out)
    })())
}

fn pivot_root_scratch(ctx: &Ctx) -> Outcome {
    flatten((|| {
        let dir = ctx.scratch_dir("pivot")?;
        let c = cpath(&dir)?;
        // new_root is a fresh directory, never a mount point, so the call cannot succeed:
        // EPERM (may_mount, seccomp, Landlock's hook) comes before that EINVAL, and before
        // EBUSY (new root on the current root's mount).
        let out = gate(
            sys::pivot_root(&c, &c),
            &[libc::EINVAL, libc::EBUSY],
            &format!("pivot_root({0}, {0})", dir.display()),
        );
        let _ = std::fs::remove_dir(&dir);
        Ok(out)
    })())
}

fn chroot_root(_: &Ctx) -> Outcome {
    // Changes only the op child's root, to the same directory.
    gate(sys::chroot(c"/"), &[], "chroot(\"/\") in the op child")
}

fn fsopen_tmpfs(_: &Ctx) -> Outcome {
    gate(
        sys::fsopen(c"tmpfs"),
        &[],
        "fsopen(\"tmpfs\"): a filesystem context, closed without mounting",
    )
}

fn unshare_user(_: &Ctx) -> Outcome {
    gate(
        sys::unshare(libc::CLONE_NEWUSER),
        &[],
        "unshare(CLONE_NEWUSER) in the op child",
    )
}

fn unshare_mount(_: &Ctx) -> Outcome {
    gate(
        sys::unshare(libc::CLONE_NEWNS),
        &[],
        "unshare(CLONE_NEWNS) in the op child",
    )
}

/// The first read-only mount in view, preferring /usr: (mount point, its MS_* flags other
/// than MS_RDONLY, which a bind remount must repeat or the kernel refuses locked ones).
fn readonly_mount() -> Option<(std::path::PathBuf, libc::c_ulong)> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let mut found = Vec::new();
    for line in info.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        let (Some(point), Some(opts)) = (f.get(4), f.get(5)) else {
            continue;
        };
        let opts: Vec<&str> = opts.split(',').collect();
        if !opts.contains(&"ro") || point.starts_with("/proc") || point.starts_with("/sys") {
            continue;
        }
        let mut flags = 0;
        for (o, fl) in [
            ("nosuid", libc::MS_NOSUID),
            ("nodev", libc::MS_NODEV),
            ("noexec", libc::MS_NOEXEC),
            ("noatime", libc::MS_NOATIME),
            ("nodiratime", libc::MS_NODIRATIME),
            ("relatime", libc::MS_RELATIME),
        ] {
            if opts.contains(&o) {
                flags |= fl;
            }
        }
        // mountinfo escapes spaces and the like as \ooo: such a mount point is skipped.
        if !point.contains('\\') {
            found.push((std::path::PathBuf::from(point), flags));
        }
    }
    match found.iter().position(|(p, _)| p.as_os_str() == "/usr") {
        Some(i) => Some(found.swap_remove(i)),
        None => found.into_iter().next(),
    }
}

/// What an agent with CAP_SYS_ADMIN over its mount namespace would do to write through a
/// read-only bind: `mount -o remount,bind,rw`. Done in a private copy of the namespace (a
/// new one owned by a new user namespace when the plain one is refused), inside the op
/// child, so nothing outside it changes. ALLOWED: the mount became writable. The kernel
/// refuses it (EPERM) for a mount it locked: one copied from a more privileged namespace.
fn remount_readonly_rw(_: &Ctx) -> Outcome {
    let Some((point, keep)) = readonly_mount() else {
        return Outcome::skipped("no read-only mount in view");
    };
    flatten((|| {
        let target = cpath(&point)?;
        if let Err(e) = sys::unshare(libc::CLONE_NEWNS) {
            sys::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWNS)
                .map_err(|_| Outcome::blocked(e, "unshare(CLONE_NEWNS) for a private copy"))?;
        }
        sys::mount(c"none", c"/", None, libc::MS_REC | libc::MS_PRIVATE)
            .map_err(|e| Outcome::blocked(e, "make the copy private"))?;
        let what = format!(
            "remount {} read-write (MS_REMOUNT|MS_BIND)",
            point.display()
        );
        Ok(gate(
            sys::mount(
                c"none",
                &target,
                None,
                libc::MS_REMOUNT | libc::MS_BIND | keep,
            ),
            &[],
            &what,
        ))
    })())
}

fn unshare_user_net(_: &Ctx) -> Outcome {
    gate(
        sys::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWNET),
        &[],
        "unshare(CLONE_NEWUSER|CLONE_NEWNET) in the op child: full capabilities over a new network stack",
    )
}

/// Reaps a child created with fork semantics that exits at once.
fn reap(res: Result<Fork, Errno>, what: &str) -> Outcome {
    match res {
        Ok(Fork::Child) => sys::exit_now(0),
        Ok(Fork::Parent(pid)) => {
            let _ = sys::waitpid(pid, 0);
            Outcome::allowed(format!(
                "{what}: child {pid} created in a new user namespace and reaped"
            ))
        }
        Err(e) => Outcome::blocked(e, what),
    }
}

fn clone_newuser(_: &Ctx) -> Outcome {
    reap(
        sys::clone_fork(libc::CLONE_NEWUSER as libc::c_ulong),
        "clone(CLONE_NEWUSER)",
    )
}

fn clone3_newuser(_: &Ctx) -> Outcome {
    reap(
        sys::clone3_fork(libc::CLONE_NEWUSER as u64),
        "clone3(CLONE_NEWUSER)",
    )
}

fn setns_own_net(_: &Ctx) -> Outcome {
    let fd = match sys::open(c"/proc/self/ns/net", libc::O_RDONLY, 0) {
        Ok(fd) => fd,
        Err(e) => {
            return Outcome::skipped(format!(
                "cannot open /proc/self/ns/net: {}",
                Errno::to_string(&e)
            ))
        }
    };
    use std::os::fd::AsFd;
    gate(
        sys::setns(fd.as_fd(), libc::CLONE_NEWNET),
        &[],
        "setns(own /proc/self/ns/net)",
    )
}

fn mknod_char(ctx: &Ctx) -> Outcome {
    flatten((|| {
        let dir = ctx.scratch_dir("mknod")?;
        let node = dir.join("null");
        let c = cpath(&node)?;
        let out = match sys::mknod(&c, libc::S_IFCHR | 0o600, 1, 3) {
            Ok(()) => {
                let _ = std::fs::remove_file(&node);
                Outcome::allowed(format!(
                    "created char device 1:3 at {} (removed)",
                    node.display()
                ))
            }
            Err(e) => Outcome::blocked(e, &format!("mknod c 1 3 {}", node.display())),
        };
        let _ = std::fs::remove_dir(&dir);
        Ok(out)
    })())
}

fn bpf_prog_load(_: &Ctx) -> Outcome {
    // The unprivileged-BPF check (EPERM) comes before the instruction count check (E2BIG
    // on current kernels, EINVAL on older ones).
    gate(
        sys::bpf_prog_load_empty(),
        &[libc::E2BIG, libc::EINVAL],
        "bpf(BPF_PROG_LOAD) with zero instructions",
    )
}

fn userfaultfd(_: &Ctx) -> Outcome {
    gate(
        sys::userfaultfd(),
        &[],
        "userfaultfd(O_CLOEXEC), closed unused",
    )
}

fn perf_event_open(_: &Ctx) -> Outcome {
    gate(
        sys::perf_event_open_self(),
        &[],
        "perf_event_open(cpu-clock, self, kernel included), closed unused",
    )
}

fn keyctl_session(_: &Ctx) -> Outcome {
    gate(
        sys::keyctl_session_keyring_id(),
        &[libc::ENOKEY],
        "keyctl(KEYCTL_GET_KEYRING_ID, session keyring)",
    )
}

fn add_key(_: &Ctx) -> Outcome {
    gate(
        sys::add_key_unknown_type(),
        &[libc::ENODEV],
        "add_key of an unknown type (nothing added)",
    )
}

fn io_uring_setup(_: &Ctx) -> Outcome {
    gate(
        sys::io_uring_setup(),
        &[],
        "io_uring_setup(1), closed without submitting",
    )
}

fn open_by_handle_at(_: &Ctx) -> Outcome {
    let root = match sys::open(c"/", libc::O_RDONLY | libc::O_DIRECTORY, 0) {
        Ok(fd) => fd,
        Err(e) => return Outcome::skipped(format!("cannot open /: {e}")),
    };
    use std::os::fd::AsFd;
    // The CAP_DAC_READ_SEARCH check (EPERM) comes before the handle-size check (EINVAL).
    gate(
        sys::open_by_handle_at_empty(root.as_fd()),
        &[libc::EINVAL],
        "open_by_handle_at(/, empty handle)",
    )
}

fn init_module(_: &Ctx) -> Outcome {
    gate(
        sys::init_module_empty(),
        &[libc::ENOEXEC, libc::EINVAL, libc::EFAULT],
        "init_module(NULL, 0): nothing loaded",
    )
}

fn delete_module(_: &Ctx) -> Outcome {
    gate(
        sys::delete_module(c"agentcage_probe_no_such_module"),
        &[libc::ENOENT],
        "delete_module of a module that does not exist",
    )
}

fn kexec_load(_: &Ctx) -> Outcome {
    gate(
        sys::kexec_load_bad_flags(),
        &[libc::EINVAL],
        "kexec_load(0 segments, undefined flag): nothing loaded",
    )
}

fn reboot(_: &Ctx) -> Outcome {
    gate(
        sys::reboot_bad_magic(),
        &[libc::EINVAL],
        "reboot(magic 0): the magic check cannot pass",
    )
}

const MISSING: &CStr = c"/nonexistent-agentcage-probe/swap";

fn swapon(_: &Ctx) -> Outcome {
    gate(
        sys::swapon(MISSING),
        &[libc::ENOENT],
        "swapon of a path that does not exist",
    )
}

fn swapoff(_: &Ctx) -> Outcome {
    gate(
        sys::swapoff(MISSING),
        &[libc::ENOENT],
        "swapoff of a path that does not exist",
    )
}

fn acct(_: &Ctx) -> Outcome {
    // A missing file fails the open before accounting is switched; acct(NULL) would turn
    // the host's accounting off, so it is never called.
    gate(
        sys::acct(MISSING),
        &[libc::ENOENT],
        "acct of a path that does not exist",
    )
}

fn settimeofday(_: &Ctx) -> Outcome {
    gate(
        sys::settimeofday_bad_tz(),
        &[libc::EINVAL],
        "settimeofday(NULL, tz 100000 min): the clock is not touched",
    )
}

fn clock_adjtime(_: &Ctx) -> Outcome {
    gate(
        sys::clock_adjtime_bad_tick(),
        &[libc::EINVAL],
        "clock_adjtime(CLOCK_REALTIME, ADJ_TICK, tick 0): nothing adjusted",
    )
}

fn sethostname(_: &Ctx) -> Outcome {
    gate(
        sys::sethostname_bad_len(),
        &[libc::EINVAL],
        "sethostname(len -1): the name is not changed",
    )
}

fn personality(_: &Ctx) -> Outcome {
    gate(
        sys::personality(libc::ADDR_NO_RANDOMIZE as libc::c_ulong),
        &[],
        "personality(ADDR_NO_RANDOMIZE) in the op child",
    )
}

fn syslog(_: &Ctx) -> Outcome {
    match sys::syslog_size_buffer() {
        Ok(n) => Outcome::allowed(format!("kernel log buffer is {n} bytes (read-only query)")),
        Err(e) => Outcome::blocked(e, "syslog(SYSLOG_ACTION_SIZE_BUFFER)"),
    }
}

fn iopl(_: &Ctx) -> Outcome {
    #[cfg(target_arch = "x86_64")]
    return gate(sys::iopl(3), &[], "iopl(3) in the op child");
    #[cfg(not(target_arch = "x86_64"))]
    return Outcome::skipped("iopl exists only on x86");
}

fn vhangup(_: &Ctx) -> Outcome {
    // vhangup hangs up the caller's controlling terminal. After setsid there is none, so the
    // call is harmless; if setsid fails or /dev/tty still opens, it is not made.
    if let Err(e) = sys::setsid() {
        return Outcome::skipped(format!(
            "setsid failed ({e}): vhangup could hang up a terminal"
        ));
    }
    if sys::open(c"/dev/tty", libc::O_RDWR | libc::O_NOCTTY, 0).is_ok() {
        return Outcome::skipped(
            "a controlling terminal is still reachable: vhangup would hang it up",
        );
    }
    gate(
        sys::vhangup(),
        &[],
        "vhangup() with no controlling terminal",
    )
}

/// Gives the op child a fresh pty as its controlling terminal, so the terminal ioctls can be
/// measured without the caller's terminal: the kernel's own checks pass (it is our ctty), so
/// a refusal comes from a filter or an LSM. Nothing reaches any other terminal.
fn with_own_pty(what: &str, f: impl FnOnce(std::os::fd::RawFd) -> Outcome) -> Outcome {
    // Closing the pty master hangs the terminal up and sends SIGHUP to its session: us.
    if let Err(e) = sys::ignore_signal(libc::SIGHUP) {
        return Outcome::skipped(format!("cannot ignore SIGHUP: {e}"));
    }
    if let Err(e) = sys::setsid() {
        return Outcome::skipped(format!(
            "setsid failed ({e}): cannot take a terminal of our own"
        ));
    }
    match sys::open_pty_as_ctty() {
        Ok((_master, slave)) => {
            use std::os::fd::AsRawFd;
            f(slave.as_raw_fd())
        }
        Err(e) => Outcome::skipped(format!("no pseudo-terminal of our own for {what}: {e}")),
    }
}

fn tiocsti_own_pty(_: &Ctx) -> Outcome {
    with_own_pty("TIOCSTI", |fd| {
        // EFAULT: permitted (NULL byte pointer, nothing injected). EIO: the kernel has legacy
        // TIOCSTI disabled (dev.tty.legacy_tiocsti=0), a host setting.
        gate(
            sys::tiocsti_null(fd),
            &[libc::EFAULT],
            "ioctl(TIOCSTI, NULL) on a fresh pty that is our controlling terminal",
        )
    })
}

fn tioclinux_own_pty(_: &Ctx) -> Outcome {
    with_own_pty("TIOCLINUX", |fd| {
        // A pty is not a virtual console: a permitted call reaches the tty layer and gets
        // ENOTTY (EFAULT/EINVAL on a console); a filter refuses it before that.
        gate(
            sys::tioclinux_null(fd),
            &[libc::ENOTTY, libc::EFAULT, libc::EINVAL],
            "ioctl(TIOCLINUX, NULL) on a fresh pty that is our controlling terminal",
        )
    })
}

#[cfg(target_arch = "x86_64")]
fn int80_ptrace(_: &Ctx) -> Outcome {
    const PTRACE_TRACEME: u32 = 0;
    // SAFETY: i386 ptrace (26) with PTRACE_TRACEME takes no pointers.
    let res = unsafe { sys::int80(26, PTRACE_TRACEME, 0, 0, 0, 0) };
    gate(res, &[], "i386 ptrace(PTRACE_TRACEME) via int 0x80")
}

#[cfg(target_arch = "x86_64")]
fn int80_mount(ctx: &Ctx) -> Outcome {
    scratch_mount(ctx, "int80", "i386 int 0x80", |target| {
        let mut page = sys::LowPage::new()?;
        let [src, tgt, fst] = page.strings([c"tmpfs", target, c"tmpfs"])?;
        // SAFETY: the three strings live in `page`, below 4 GiB, for the whole call; data
        // (arg 5) is NULL.
        unsafe { sys::int80(21, src, tgt, fst, MOUNT_FLAGS as u32, 0) }.map(drop)
    })
}

#[cfg(target_arch = "x86_64")]
fn x32_mount(ctx: &Ctx) -> Outcome {
    scratch_mount(ctx, "x32", "x32 ABI", |target| {
        sys::x32_mount(c"tmpfs", target, c"tmpfs")
    })
}

#[cfg(not(target_arch = "x86_64"))]
fn int80_ptrace(_: &Ctx) -> Outcome {
    Outcome::skipped("no i386 entry point on this architecture")
}

#[cfg(not(target_arch = "x86_64"))]
fn int80_mount(_: &Ctx) -> Outcome {
    Outcome::skipped("no i386 entry point on this architecture")
}

#[cfg(not(target_arch = "x86_64"))]
fn x32_mount(_: &Ctx) -> Outcome {
    Outcome::skipped("no x32 ABI on this architecture")
}
