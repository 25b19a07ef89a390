//! Seccomp user notifications (`SECCOMP_IOCTL_NOTIF_*`), for the events listener
//! (`events/seccomp.rs`): receive one, check it is still valid, answer it with an errno.
//! There is no way here to answer with `SECCOMP_USER_NOTIF_FLAG_CONTINUE`: a notified call
//! is always refused.

use libc::c_int;

use super::Errno;

/// `struct seccomp_data`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct NotifData {
    /// The system call number.
    pub nr: i32,
    /// Its `AUDIT_ARCH_*`.
    pub arch: u32,
    /// The instruction pointer.
    pub ip: u64,
    /// The raw register arguments.
    pub args: [u64; 6],
}

/// `struct seccomp_notif`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Notif {
    /// The cookie to answer (and to check with [`notif_id_valid`]).
    pub id: u64,
    /// The caller's pid in the listener's pid namespace.
    pub pid: u32,
    /// Unused by the kernel (0).
    pub flags: u32,
    /// The call.
    pub data: NotifData,
}

/// `struct seccomp_notif_resp`.
#[repr(C)]
struct Resp {
    id: u64,
    val: i64,
    error: i32,
    flags: u32,
}

const fn iowr(nr: u32, size: usize) -> libc::c_ulong {
    ((3u32 << 30) | ((size as u32) << 16) | ((b'!' as u32) << 8) | nr) as libc::c_ulong
}
const NOTIF_RECV: libc::c_ulong = iowr(0, std::mem::size_of::<Notif>());
const NOTIF_SEND: libc::c_ulong = iowr(1, std::mem::size_of::<Resp>());
/// `_IOW('!', 2, __u64)`.
const NOTIF_ID_VALID: libc::c_ulong = ((1u32 << 30) | (8 << 16) | (0x21 << 8) | 2) as libc::c_ulong;

/// SECCOMP_IOCTL_NOTIF_RECV: the next notification of listener `fd` (blocks unless polled).
///
/// # Errors
/// The errno of the ioctl (ENOENT: the caller died or was signalled before we received it).
pub fn notif_recv(fd: c_int) -> Result<Notif, Errno> {
    // SAFETY: the kernel requires a zeroed seccomp_notif; plain C struct, all-zero is valid.
    let mut n: Notif = unsafe { std::mem::zeroed() };
    // SAFETY: `n` is a live seccomp_notif of the size encoded in the request.
    if unsafe { libc::ioctl(fd, NOTIF_RECV, &mut n as *mut Notif) } < 0 {
        return Err(Errno::last());
    }
    Ok(n)
}

/// SECCOMP_IOCTL_NOTIF_ID_VALID: whether notification `id` is still pending (its caller
/// alive, so its pid was not reused).
///
/// # Errors
/// ENOENT when it is not.
pub fn notif_id_valid(fd: c_int, id: u64) -> Result<(), Errno> {
    let mut id = id;
    // SAFETY: `id` is a live u64.
    if unsafe { libc::ioctl(fd, NOTIF_ID_VALID, &mut id as *mut u64) } == 0 {
        Ok(())
    } else {
        Err(Errno::last())
    }
}

/// SECCOMP_IOCTL_NOTIF_SEND: fails the notified call `id` with `errno` (never CONTINUE).
///
/// # Errors
/// The errno of the ioctl (ENOENT: the caller is gone).
pub fn notif_send_errno(fd: c_int, id: u64, errno: i32) -> Result<(), Errno> {
    let resp = Resp {
        id,
        val: 0,
        error: -errno,
        flags: 0, // never SECCOMP_USER_NOTIF_FLAG_CONTINUE
    };
    // SAFETY: `resp` is a live seccomp_notif_resp of the size encoded in the request.
    if unsafe { libc::ioctl(fd, NOTIF_SEND, &resp as *const Resp) } < 0 {
        Err(Errno::last())
    } else {
        Ok(())
    }
}
