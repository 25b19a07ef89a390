//! Namespaces: setns(2), and a helper process that builds a namespace beside the sandbox's
//! first process while that one composes the root (`namespaces::NetWorker`).
//!
//! The helper shares our memory and fd table (clone with CLONE_VM | CLONE_FILES, not
//! CLONE_VFORK: it runs beside us) on its own mmap'd stack with a guard page. It also shares
//! our thread pointer (no CLONE_SETTLS), so libc's wrappers would store its errno in ours and
//! read ours as its own while both run: its calls ([`beside`]) are raw system calls that
//! return the error instead and touch no memory but their arguments.

use std::sync::atomic::{AtomicI64, AtomicU32, AtomicUsize, Ordering};

use libc::{c_int, c_void};

use super::{check_int, Errno};

/// setns(2).
pub fn setns(fd: c_int, nstype: c_int) -> Result<(), Errno> {
    // SAFETY: integer-only syscall.
    check_int(unsafe { libc::setns(fd, nstype) }).map(drop)
}

/// What a helper shares with its parent: at the top of its stack mapping (never unmapped, so
/// valid for both as long as either lives).
#[repr(C)]
struct Slot {
    work: fn(usize) -> i64,
    /// `work`'s argument (an address the caller keeps valid until the helper is joined).
    arg: usize,
    /// Our pid as the helper sees it (same pid namespace): its parent check.
    parent: libc::pid_t,
    /// Who runs `work`: [`FREE`], [`BY_HELPER`] or [`BY_CALLER`] ([`Helper::steal`]).
    claim: AtomicU32,
    result: AtomicI64,
}

const FREE: u32 = 0;
const BY_HELPER: u32 = 1;
const BY_CALLER: u32 = 2;

/// The helper stored no result: it died (or found its parent gone) first.
const PENDING: i64 = i64::MIN;

/// A helper process started by [`spawn_helper`]: our child, until [`Helper::join`] (or, when
/// stolen, [`Helper::reap`] or an init's reaper) reaps it.
pub struct Helper {
    pid: libc::pid_t,
    slot: *const Slot,
}

/// How a joined helper ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HelperEnd {
    /// `work` returned this.
    Done(i64),
    /// It ended without a result (raw wait status: killed, or its parent check failed).
    Died(c_int),
}

/// Starts `work(arg)` in a helper process beside us: CLONE_VM | CLONE_FILES on a `stack_len`
/// mmap'd stack above a guard page, exit signal SIGCHLD (an init's reaper collects a stolen
/// one; see [`Helper::steal`]). The helper arms PR_SET_PDEATHSIG (SIGKILL) first and gives up
/// when we are already gone: it never outlives us.
///
/// `work` must only call [`beside`] functions (no libc wrapper that sets errno, no allocation,
/// no panic); an fd it opens lands in our fd table. `arg` is an integer to `work` (see
/// [`Batch`] for work on memory).
///
/// # Errors
/// The errno of mmap/mprotect or clone (EAGAIN at a pids or RLIMIT_NPROC limit).
pub fn spawn_helper(work: fn(usize) -> i64, arg: usize, stack_len: usize) -> Result<Helper, Errno> {
    extern "C" fn trampoline(arg: *mut c_void) -> c_int {
        // SAFETY: `arg` is the Slot written below, in a mapping that is never unmapped.
        let slot = unsafe { &*arg.cast::<Slot>() };
        let _ = beside::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as usize);
        if beside::getppid() != slot.parent {
            // Our parent died before the death signal was armed: nobody will join us.
            return 1;
        }
        let claimed =
            slot.claim
                .compare_exchange(FREE, BY_HELPER, Ordering::AcqRel, Ordering::Acquire);
        if claimed.is_err() {
            // Stolen: we got no CPU before our parent needed the result.
            return 0;
        }
        let r = (slot.work)(slot.arg);
        slot.result.store(r, Ordering::Release);
        0
    }
    let mut stack = super::map_stack(stack_len)?;
    let s = stack.as_mut_slice();
    let top = s.as_mut_ptr() as usize + s.len();
    // The slot at the top, the stack below it (16-byte aligned, as clone wants).
    let slot_at = (top - std::mem::size_of::<Slot>()) & !63;
    let slot = slot_at as *mut Slot;
    // SAFETY: slot_at..slot_at+size_of::<Slot>() lies inside the usable part of the fresh
    // mapping, 64-byte aligned; nothing else refers to it yet.
    unsafe {
        slot.write(Slot {
            work,
            arg,
            parent: super::getpid(),
            claim: AtomicU32::new(FREE),
            result: AtomicI64::new(PENDING),
        })
    };
    // SAFETY: the stack below `slot_at` and the slot stay mapped for the helper's whole life
    // (MappedStack is never unmapped); the trampoline only makes errno-free syscalls and runs
    // `work` under the contract above. glibc's clone runs the child on the new stack and calls
    // exit(2) with the trampoline's value, touching no thread-local state.
    let rc = unsafe {
        libc::clone(
            trampoline,
            slot_at as *mut c_void,
            libc::CLONE_VM | libc::CLONE_FILES | libc::SIGCHLD,
            slot.cast::<c_void>(),
        )
    };
    let pid = check_int(rc)?;
    Ok(Helper { pid, slot })
}

impl Helper {
    /// Takes `work` over when the helper has not started it yet (it got no CPU: a loaded
    /// machine). `true`: the helper will never run it (it exits at once when it gets a CPU;
    /// the caller reaps it with [`Helper::reap`] or leaves it to the init's reaper, it has
    /// SIGCHLD); the caller runs the work itself instead of waiting a time slice for it.
    pub fn steal(&self) -> bool {
        // SAFETY: the slot lives in the never-unmapped mapping.
        let claim = &unsafe { &*self.slot }.claim;
        claim
            .compare_exchange(FREE, BY_CALLER, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// Waits until the helper has claimed its work (tests of the helper's path).
    #[cfg(test)]
    pub fn wait_claimed(&self) {
        // SAFETY: the slot lives in the never-unmapped mapping.
        let claim = &unsafe { &*self.slot }.claim;
        while claim.load(Ordering::Acquire) == FREE {
            std::thread::yield_now();
        }
    }

    /// Waits for a stolen helper to exit and reaps it.
    pub fn reap(self) {
        let _ = super::waitpid(self.pid, 0);
    }

    /// The helper's pid (in our pid namespace).
    #[cfg(test)]
    pub fn pid(&self) -> libc::pid_t {
        self.pid
    }

    /// Waits for the helper to exit, reaps it and returns its result.
    ///
    /// # Errors
    /// The errno of waitpid (never expected: it is our child).
    pub fn join(self) -> Result<HelperEnd, Errno> {
        let st = match super::waitpid(self.pid, 0) {
            Ok((_, st)) => st,
            // An inherited SIGCHLD SIG_IGN reaps it on exit: gone, its result is final.
            Err(Errno(libc::ECHILD)) => 0,
            Err(e) => return Err(e),
        };
        // SAFETY: the slot lives in the never-unmapped mapping; the helper has exited.
        let r = unsafe { &*self.slot }.result.load(Ordering::Acquire);
        Ok(
            if libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == 0 && r != PENDING {
                HelperEnd::Done(r)
            } else {
                HelperEnd::Died(st)
            },
        )
    }
}

/// Items worked on beside us: `work` runs on each, in order, in a helper ([`spawn_helper`])
/// while the caller goes on; [`Batch::finish`] returns them. `work` has the helper's
/// contract (only [`beside`] calls, no allocation, no panic) and runs on the helper's small
/// stack. When the helper got no CPU by then (a loaded machine) the caller does the work
/// itself; when it died half-way the caller does what it had not finished (the item it was
/// on again). Dropping a batch waits for it: the helper writes into the items.
pub struct Batch<T> {
    helper: Option<Helper>,
    /// Boxed: the helper holds its address until it is joined.
    job: Box<Job<T>>,
}

struct Job<T> {
    items: Vec<T>,
    work: fn(&mut T),
    /// Items finished by whoever runs the work.
    done: AtomicUsize,
}

impl<T> Job<T> {
    fn run(&mut self) {
        let from = self.done.load(Ordering::Acquire);
        for item in &mut self.items[from..] {
            (self.work)(item);
            self.done.fetch_add(1, Ordering::Release);
        }
    }
}

fn run_job<T>(arg: usize) -> i64 {
    // SAFETY: `arg` is the address of a Batch's boxed Job, which the Batch neither moves nor
    // touches until it has joined this helper or stolen its work (then this never runs).
    let job = unsafe { &mut *(arg as *mut Job<T>) };
    job.run();
    0
}

impl<T> Batch<T> {
    /// Starts `work` on `items` beside us, on a `stack_len` stack; with fewer than two items,
    /// or when no helper can be started, the caller does it now.
    pub fn start(items: Vec<T>, work: fn(&mut T), stack_len: usize) -> Batch<T> {
        let mut job = Box::new(Job {
            items,
            work,
            done: AtomicUsize::new(0),
        });
        let helper = if job.items.len() > 1 {
            let arg = &mut *job as *mut Job<T> as usize;
            spawn_helper(run_job::<T>, arg, stack_len).ok()
        } else {
            None
        };
        if helper.is_none() {
            job.run();
        }
        Batch { helper, job }
    }

    /// Waits until the work is done (doing it here when the helper never ran) and returns
    /// the items.
    pub fn finish(mut self) -> Vec<T> {
        self.join();
        std::mem::take(&mut self.job.items)
    }

    fn join(&mut self) {
        let Some(h) = self.helper.take() else {
            return;
        };
        if h.steal() {
            // No CPU for it so far: it exits without touching the items when it runs.
            self.job.run();
            h.reap();
            return;
        }
        if h.join() != Ok(HelperEnd::Done(0)) {
            // Killed half-way: finish here (the item it was on again).
            self.job.run();
        }
    }
}

impl<T> Drop for Batch<T> {
    fn drop(&mut self) {
        self.join();
    }
}

impl<T> std::fmt::Debug for Batch<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batch")
            .field("items", &self.job.items.len())
            .field("beside", &self.helper.is_some())
            .finish()
    }
}

/// The helper's system calls: raw, errno-free (see the module's comment). Each returns the
/// kernel's error as an [`Errno`].
pub mod beside {
    use std::ffi::CStr;

    use libc::{c_int, c_long};

    use super::super::Errno;

    #[cfg(target_arch = "x86_64")]
    fn syscall(n: c_long, a: [usize; 5]) -> isize {
        let ret: isize;
        // SAFETY: the syscall instruction with the kernel's x86_64 convention; rcx and r11
        // are clobbered by it. Callers pass only integers or pointers to live locals that
        // the kernel reads or writes within their bounds.
        unsafe {
            core::arch::asm!(
                "syscall",
                inlateout("rax") n as isize => ret,
                in("rdi") a[0],
                in("rsi") a[1],
                in("rdx") a[2],
                in("r10") a[3],
                in("r8") a[4],
                lateout("rcx") _,
                lateout("r11") _,
                options(nostack),
            );
        }
        ret
    }

    #[cfg(target_arch = "aarch64")]
    fn syscall(n: c_long, a: [usize; 5]) -> isize {
        let ret: isize;
        // SAFETY: svc 0 with the kernel's aarch64 convention (x8 number, x0-x4 arguments, x0
        // result). Callers pass only integers or pointers to live locals.
        unsafe {
            core::arch::asm!(
                "svc 0",
                in("x8") n,
                inlateout("x0") a[0] as isize => ret,
                in("x1") a[1],
                in("x2") a[2],
                in("x3") a[3],
                in("x4") a[4],
                options(nostack),
            );
        }
        ret
    }

    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    fn syscall(n: c_long, a: [usize; 5]) -> isize {
        // No raw syscall here: libc's sets errno, shared with the parent (a wrong errno in a
        // report when both fail at once; nothing else depends on it).
        // SAFETY: as for the raw variants: integers or pointers to live locals.
        let r = unsafe { libc::syscall(n, a[0], a[1], a[2], a[3], a[4]) };
        if r < 0 {
            -(Errno::last().0 as isize)
        } else {
            r as isize
        }
    }

    fn check(r: isize) -> Result<c_int, Errno> {
        if (-4095..0).contains(&r) {
            Err(Errno(-r as i32))
        } else {
            Ok(r as c_int)
        }
    }

    /// prctl(2) with one argument.
    pub fn prctl(option: c_int, arg: usize) -> Result<(), Errno> {
        check(syscall(libc::SYS_prctl, [option as usize, arg, 0, 0, 0])).map(drop)
    }

    /// getppid(2).
    pub fn getppid() -> libc::pid_t {
        syscall(libc::SYS_getppid, [0; 5]) as libc::pid_t
    }

    /// unshare(2).
    pub fn unshare(flags: c_int) -> Result<(), Errno> {
        check(syscall(libc::SYS_unshare, [flags as usize, 0, 0, 0, 0])).map(drop)
    }

    /// socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0): the handle for interface ioctls.
    pub fn inet_socket() -> Result<c_int, Errno> {
        check(syscall(
            libc::SYS_socket,
            [
                libc::AF_INET as usize,
                (libc::SOCK_DGRAM | libc::SOCK_CLOEXEC) as usize,
                0,
                0,
                0,
            ],
        ))
    }

    /// Brings "lo" up (SIOCGIFFLAGS, then SIOCSIFFLAGS with IFF_UP | IFF_RUNNING) through
    /// `sock`, a socket of the namespace.
    pub fn loopback_up(sock: c_int) -> Result<(), Errno> {
        // SAFETY: ifreq is a plain C struct; zero is a valid value.
        let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
        for (d, s) in ifr.ifr_name.iter_mut().zip(b"lo\0") {
            *d = *s as libc::c_char;
        }
        let p = &mut ifr as *mut libc::ifreq as usize;
        check(syscall(
            libc::SYS_ioctl,
            [sock as usize, libc::SIOCGIFFLAGS as usize, p, 0, 0],
        ))?;
        // SAFETY: reading the union member SIOCGIFFLAGS just filled.
        unsafe { ifr.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short };
        let p = &mut ifr as *mut libc::ifreq as usize;
        check(syscall(
            libc::SYS_ioctl,
            [sock as usize, libc::SIOCSIFFLAGS as usize, p, 0, 0],
        ))
        .map(drop)
    }

    /// ioctl(sock, SIOCGSKNS): an fd (close-on-exec) of the network namespace of `sock`.
    pub fn netns_of(sock: c_int) -> Result<c_int, Errno> {
        /// SIOCGSKNS (linux/sockios.h, Linux 4.9+).
        const SIOCGSKNS: usize = 0x894c;
        check(syscall(
            libc::SYS_ioctl,
            [sock as usize, SIOCGSKNS, 0, 0, 0],
        ))
    }

    /// ioctl(fd, NS_GET_USERNS): an fd (close-on-exec) of the user namespace that owns the
    /// namespace of nsfs fd `fd`.
    pub fn ns_owner(fd: c_int) -> Result<c_int, Errno> {
        /// NS_GET_USERNS (linux/nsfs.h).
        const NS_GET_USERNS: usize = 0xb701;
        check(syscall(
            libc::SYS_ioctl,
            [fd as usize, NS_GET_USERNS, 0, 0, 0],
        ))
    }

    /// close(2).
    pub fn close(fd: c_int) {
        let _ = syscall(libc::SYS_close, [fd as usize, 0, 0, 0, 0]);
    }

    /// mkdirat(2).
    pub fn mkdirat(dir: c_int, name: &CStr, mode: u32) -> Result<(), Errno> {
        check(syscall(
            libc::SYS_mkdirat,
            [dir as usize, name.as_ptr() as usize, mode as usize, 0, 0],
        ))
        .map(drop)
    }

    /// openat(2).
    pub fn openat(dir: c_int, name: &CStr, flags: c_int, mode: u32) -> Result<c_int, Errno> {
        check(syscall(
            libc::SYS_openat,
            [
                dir as usize,
                name.as_ptr() as usize,
                flags as usize,
                mode as usize,
                0,
            ],
        ))
    }

    /// lsetxattr(2).
    pub fn lsetxattr(path: &CStr, name: &CStr, value: &[u8]) -> Result<(), Errno> {
        check(syscall(
            libc::SYS_lsetxattr,
            [
                path.as_ptr() as usize,
                name.as_ptr() as usize,
                value.as_ptr() as usize,
                value.len(),
                0,
            ],
        ))
        .map(drop)
    }

    /// fchmodat(2) (no flags: the syscall has none).
    pub fn fchmodat(dir: c_int, name: &CStr, mode: u32) -> Result<(), Errno> {
        check(syscall(
            libc::SYS_fchmodat,
            [dir as usize, name.as_ptr() as usize, mode as usize, 0, 0],
        ))
        .map(drop)
    }

    /// renameat2(2) within one directory.
    pub fn renameat2(dir: c_int, from: &CStr, to: &CStr, flags: u32) -> Result<(), Errno> {
        check(syscall(
            libc::SYS_renameat2,
            [
                dir as usize,
                from.as_ptr() as usize,
                dir as usize,
                to.as_ptr() as usize,
                flags as usize,
            ],
        ))
        .map(drop)
    }

    /// unlinkat(2).
    pub fn unlinkat(dir: c_int, name: &CStr, flags: c_int) -> Result<(), Errno> {
        check(syscall(
            libc::SYS_unlinkat,
            [dir as usize, name.as_ptr() as usize, flags as usize, 0, 0],
        ))
        .map(drop)
    }

    /// fstatat(2) with `AT_SYMLINK_NOFOLLOW`: the entry's (device, inode).
    pub fn lstat_at(dir: c_int, name: &CStr) -> Result<(u64, u64), Errno> {
        // SAFETY: statx is a plain C struct; zero is a valid value.
        let mut st: libc::statx = unsafe { std::mem::zeroed() };
        check(syscall(
            libc::SYS_statx,
            [
                dir as usize,
                name.as_ptr() as usize,
                libc::AT_SYMLINK_NOFOLLOW as usize,
                libc::STATX_INO as usize,
                &mut st as *mut libc::statx as usize,
            ],
        ))?;
        Ok((
            libc::makedev(st.stx_dev_major, st.stx_dev_minor),
            st.stx_ino,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(arg: usize) -> i64 {
        // Only errno-free calls in a helper.
        i64::from(beside::getppid() > 0) + arg as i64
    }

    fn opens_a_socket(_: usize) -> i64 {
        match beside::inet_socket() {
            Ok(fd) => i64::from(fd),
            Err(e) => -i64::from(e.0),
        }
    }

    /// The helper runs `work`, its result comes back through the shared slot, and join reaps
    /// it: no child is left to wait for.
    #[test]
    fn a_helper_returns_its_result_and_is_reaped() {
        let h = spawn_helper(answer, 41, 16 * 1024).expect("spawn");
        let pid = h.pid();
        assert_eq!(h.join(), Ok(HelperEnd::Done(42)));
        assert_eq!(
            crate::sys::waitpid(pid, libc::__WALL | libc::WNOHANG).map(|(p, _)| p),
            Err(Errno(libc::ECHILD))
        );
    }

    static RAN: AtomicU32 = AtomicU32::new(0);

    fn counts(_: usize) -> i64 {
        RAN.fetch_add(1, Ordering::Relaxed);
        7
    }

    /// Exactly one of the helper and the caller runs the work: a stolen helper exits without
    /// running it (and without a result), an unstolen one returns it.
    #[test]
    fn work_runs_once_whether_stolen_or_not() {
        let (mut stolen, mut helped) = (0, 0);
        for _ in 0..50 {
            RAN.store(0, Ordering::Relaxed);
            let h = spawn_helper(counts, 0, 16 * 1024).expect("spawn");
            if h.steal() {
                stolen += 1;
                h.reap();
                assert_eq!(
                    RAN.load(Ordering::Relaxed),
                    0,
                    "a stolen helper ran the work"
                );
            } else {
                helped += 1;
                assert_eq!(h.join(), Ok(HelperEnd::Done(7)));
                assert_eq!(RAN.load(Ordering::Relaxed), 1);
            }
        }
        eprintln!("stolen {stolen}, run by the helper {helped}");
    }

    /// An fd the helper opens is in our table (CLONE_FILES).
    #[test]
    fn a_helpers_fd_is_ours() {
        let h = spawn_helper(opens_a_socket, 0, 16 * 1024).expect("spawn");
        let HelperEnd::Done(fd) = h.join().expect("join") else {
            panic!("the helper died");
        };
        assert!(fd >= 0, "socket: errno {}", -fd);
        let fd = fd as c_int;
        let mut ty: c_int = 0;
        let mut len = std::mem::size_of::<c_int>() as libc::socklen_t;
        // SAFETY: ty and len are live locals of the sizes given.
        let rc = unsafe {
            libc::getsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_TYPE,
                (&mut ty as *mut c_int).cast(),
                &mut len,
            )
        };
        assert_eq!((rc, ty), (0, libc::SOCK_DGRAM));
        crate::sys::close(fd);
    }

    static ITEMS_RUN: AtomicU32 = AtomicU32::new(0);

    fn square(x: &mut (u64, u64)) {
        ITEMS_RUN.fetch_add(1, Ordering::Relaxed);
        x.1 = x.0 * x.0;
    }

    /// A batch's work runs once on every item, in order, whoever runs it (the helper, or
    /// the caller when it stole it); one item is done by the caller at once.
    #[test]
    fn a_batch_works_each_item_once() {
        for n in [0u64, 1, 2, 9] {
            for _ in 0..20 {
                ITEMS_RUN.store(0, Ordering::Relaxed);
                let items: Vec<(u64, u64)> = (0..n).map(|i| (i, 0)).collect();
                let b = Batch::start(items, square, 16 * 1024);
                if n < 2 {
                    assert_eq!(ITEMS_RUN.load(Ordering::Relaxed), n as u32, "done at start");
                }
                let helper = b.helper.as_ref().map(Helper::pid);
                let out = b.finish();
                assert_eq!(out, (0..n).map(|i| (i, i * i)).collect::<Vec<_>>());
                assert_eq!(ITEMS_RUN.load(Ordering::Relaxed), n as u32);
                if let Some(pid) = helper {
                    // Reaped: no zombie left. (Not waitpid(-1): other tests of this binary
                    // have children of their own, which it would see, or even reap.)
                    assert_eq!(
                        crate::sys::waitpid(pid, libc::__WALL | libc::WNOHANG).map(|(p, _)| p),
                        Err(Errno(libc::ECHILD))
                    );
                }
            }
        }
    }

    /// The raw calls report the kernel's error without touching errno.
    #[test]
    fn beside_calls_leave_errno_alone() {
        // SAFETY: __errno_location is this thread's errno.
        unsafe { *libc::__errno_location() = 0 };
        assert_eq!(beside::unshare(-1), Err(Errno(libc::EINVAL)));
        assert_eq!(beside::loopback_up(-1), Err(Errno(libc::EBADF)));
        assert_eq!(Errno::last(), Errno(0));
    }
}
