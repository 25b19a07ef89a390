//! Mounts and namespaces: mount, umount, pivot_root, mount_setattr, open_tree, move_mount.

use std::ffi::CStr;
use std::ptr;

use libc::{c_int, c_ulong, c_void};

use super::{check, check_int, close, opt_ptr, Errno};

/// mount(2).
pub fn mount(
    src: Option<&CStr>,
    target: &CStr,
    fstype: Option<&CStr>,
    flags: c_ulong,
    data: Option<&CStr>,
) -> Result<(), Errno> {
    // SAFETY: every pointer is null or comes from a live &CStr; the kernel copies them.
    let rc = unsafe {
        libc::mount(
            opt_ptr(src),
            target.as_ptr(),
            opt_ptr(fstype),
            flags,
            opt_ptr(data).cast::<c_void>(),
        )
    };
    check_int(rc).map(drop)
}

/// umount2(2).
pub fn umount2(target: &CStr, flags: c_int) -> Result<(), Errno> {
    // SAFETY: target is a live &CStr.
    check_int(unsafe { libc::umount2(target.as_ptr(), flags) }).map(drop)
}

/// pivot_root(2).
pub fn pivot_root(new_root: &CStr, put_old: &CStr) -> Result<(), Errno> {
    // SAFETY: both pointers come from live &CStr values; the kernel copies the strings.
    check(unsafe { libc::syscall(libc::SYS_pivot_root, new_root.as_ptr(), put_old.as_ptr()) })
}

/// The kernel's `struct mount_attr` (mount_setattr(2)).
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// MOUNT_ATTR_RDONLY.
pub const MOUNT_ATTR_RDONLY: u64 = 0x1;
/// MOUNT_ATTR_NOSUID.
pub const MOUNT_ATTR_NOSUID: u64 = 0x2;
/// MOUNT_ATTR_NODEV.
pub const MOUNT_ATTR_NODEV: u64 = 0x4;
/// MOUNT_ATTR_NOEXEC.
pub const MOUNT_ATTR_NOEXEC: u64 = 0x8;

/// mount_setattr(2) on `path`, recursively. Sets `attr_set`, leaves every other attribute
/// (including the ones locked by a more privileged namespace) untouched.
pub fn mount_setattr_recursive(path: &CStr, attr_set: u64) -> Result<(), Errno> {
    let attr = MountAttr {
        attr_set,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: path is a live &CStr; attr is a live, correctly sized struct on our stack.
    check(unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            libc::AT_FDCWD,
            path.as_ptr(),
            libc::AT_RECURSIVE as c_ulong,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    })
}

/// Whether mount_setattr(2) exists (Linux 5.12+): asks the kernel with an invalid fd.
pub fn mount_setattr_available() -> bool {
    // SAFETY: a null attr with size 0 and fd -1 makes the kernel fail before touching memory.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            -1,
            c"".as_ptr(),
            0,
            ptr::null::<c_void>(),
            0,
        )
    };
    !(rc < 0 && Errno::last().0 == libc::ENOSYS)
}

/// statvfs(3) mount flags (ST_*) of `path`.
pub fn statvfs_flags(path: &CStr) -> Result<c_ulong, Errno> {
    // SAFETY: zeroed statvfs is a valid value of a plain C struct.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: path is a live &CStr and st a live out-parameter.
    check_int(unsafe { libc::statvfs(path.as_ptr(), &mut st) })?;
    Ok(st.f_flag)
}

/// sethostname(2).
pub fn sethostname(name: &[u8]) -> Result<(), Errno> {
    // SAFETY: name is a live slice; the kernel copies len bytes.
    check_int(unsafe { libc::sethostname(name.as_ptr().cast(), name.len()) }).map(drop)
}

/// Brings the loopback interface up (SIOCGIFFLAGS / SIOCSIFFLAGS on "lo").
pub fn loopback_up() -> Result<(), Errno> {
    // SAFETY: plain socket call.
    let fd = check_int(unsafe {
        libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0)
    })?;
    // SAFETY: ifreq is a plain C struct; zero is a valid value.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in ifr.ifr_name.iter_mut().zip(b"lo\0") {
        *d = *s as libc::c_char;
    }
    // SAFETY: ifr is a live ifreq; SIOCGIFFLAGS fills ifru_flags.
    let rc = unsafe { libc::ioctl(fd, libc::SIOCGIFFLAGS as _, &mut ifr) };
    let rc = if rc == 0 {
        // SAFETY: reading the union member SIOCGIFFLAGS just filled.
        unsafe { ifr.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short };
        // SAFETY: as above, SIOCSIFFLAGS reads the same struct.
        unsafe { libc::ioctl(fd, libc::SIOCSIFFLAGS as _, &ifr) }
    } else {
        rc
    };
    let res = check_int(rc).map(drop);
    close(fd);
    res
}

/// A bind-less remount of the filesystem at `target` (for a tmpfs we mounted).
pub fn remount(target: &CStr, flags: c_ulong, data: Option<&CStr>) -> Result<(), Errno> {
    mount(None, target, None, libc::MS_REMOUNT | flags, data)
}

/// unshare(2).
pub fn unshare(flags: c_int) -> Result<(), Errno> {
    // SAFETY: integer-only syscall.
    check_int(unsafe { libc::unshare(flags) }).map(drop)
}

// ---------------------------------------------------------------------------------------------
// Mounting by fd (Linux 5.12+ together with mount_setattr): binds whose path a sandbox could
// have prepared (inside a writable bind) are resolved without following any symlink and
// mounted from the fd, so a link swapped in after the launcher checked the path is refused.

/// RESOLVE_NO_SYMLINKS (openat2(2)).
const RESOLVE_NO_SYMLINKS: u64 = 0x04;
/// OPEN_TREE_CLONE (open_tree(2)).
const OPEN_TREE_CLONE: c_ulong = 1;
/// MOVE_MOUNT_F_EMPTY_PATH / MOVE_MOUNT_T_EMPTY_PATH (move_mount(2)).
const MOVE_MOUNT_F_EMPTY_PATH: c_ulong = 0x04;
const MOVE_MOUNT_T_EMPTY_PATH: c_ulong = 0x40;

/// openat2(AT_FDCWD, path, O_PATH|O_CLOEXEC, RESOLVE_NO_SYMLINKS): an fd for `path` or ELOOP
/// when any component of it is a symlink. The fd must be closed by the caller.
pub fn open_path_nofollow(path: &CStr) -> Result<c_int, Errno> {
    /// The kernel's `struct open_how` (libc's is non-exhaustive).
    #[repr(C)]
    struct OpenHow {
        flags: u64,
        mode: u64,
        resolve: u64,
    }
    let how = OpenHow {
        flags: (libc::O_PATH | libc::O_CLOEXEC) as u64,
        mode: 0,
        resolve: RESOLVE_NO_SYMLINKS,
    };
    // SAFETY: path is a live &CStr; how is a live, correctly sized struct on our stack.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            libc::AT_FDCWD,
            path.as_ptr(),
            &how as *const OpenHow,
            std::mem::size_of::<OpenHow>(),
        )
    };
    Errno::result(rc).map(|fd| fd as c_int)
}

/// open_tree(fd, "", OPEN_TREE_CLONE|AT_RECURSIVE|AT_EMPTY_PATH|O_CLOEXEC): a detached recursive
/// copy of the mount tree at `fd`. The returned fd must be closed by the caller.
pub fn open_tree_clone(fd: c_int) -> Result<c_int, Errno> {
    let flags = OPEN_TREE_CLONE
        | libc::AT_RECURSIVE as c_ulong
        | libc::AT_EMPTY_PATH as c_ulong
        | libc::O_CLOEXEC as c_ulong;
    // SAFETY: integer arguments and a static empty C string.
    let rc = unsafe { libc::syscall(libc::SYS_open_tree, fd, c"".as_ptr(), flags) };
    Errno::result(rc).map(|fd| fd as c_int)
}

/// open_tree_attr(2) (Linux 6.15; one number on every architecture since 5.1's unification).
const SYS_OPEN_TREE_ATTR: libc::c_long = 467;
/// Set once open_tree_attr failed with ENOSYS or EPERM (an older kernel, or a seccomp filter
/// that does not know it): the next calls go straight to the two-syscall path.
static NO_OPEN_TREE_ATTR: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// [`open_tree_clone`] of `fd` with `attr_set` set on the whole detached copy: one
/// open_tree_attr(2) where the kernel has it, else open_tree + [`mount_setattr_fd`] (the
/// copy is never attached with other attributes either way). Allocation-free (the child's
/// pre-exec path). The returned fd must be closed by the caller.
pub fn open_tree_clone_attr(fd: c_int, attr_set: u64) -> Result<c_int, Errno> {
    use std::sync::atomic::Ordering::Relaxed;
    if !NO_OPEN_TREE_ATTR.load(Relaxed) {
        match open_tree_attr(fd, attr_set) {
            Err(e) if e.0 == libc::ENOSYS || e.0 == libc::EPERM => {
                NO_OPEN_TREE_ATTR.store(true, Relaxed)
            }
            r => return r,
        }
    }
    open_tree_clone_then_setattr(fd, attr_set)
}

/// open_tree_attr(fd, "", OPEN_TREE_CLONE|AT_RECURSIVE|AT_EMPTY_PATH|O_CLOEXEC, attr_set).
fn open_tree_attr(fd: c_int, attr_set: u64) -> Result<c_int, Errno> {
    let flags = OPEN_TREE_CLONE
        | libc::AT_RECURSIVE as c_ulong
        | libc::AT_EMPTY_PATH as c_ulong
        | libc::O_CLOEXEC as c_ulong;
    let attr = MountAttr {
        attr_set,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: a static empty C string; attr is a live, correctly sized struct on our stack.
    let rc = unsafe {
        libc::syscall(
            SYS_OPEN_TREE_ATTR,
            fd,
            c"".as_ptr(),
            flags,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    Errno::result(rc).map(|fd| fd as c_int)
}

/// The fallback of [`open_tree_clone_attr`]: the copy is closed when its setattr fails.
fn open_tree_clone_then_setattr(fd: c_int, attr_set: u64) -> Result<c_int, Errno> {
    let tree = open_tree_clone(fd)?;
    match mount_setattr_fd(tree, attr_set) {
        Ok(()) => Ok(tree),
        Err(e) => {
            close(tree);
            Err(e)
        }
    }
}

/// mount_setattr(fd, "", AT_EMPTY_PATH|AT_RECURSIVE, attr_set): like
/// [`mount_setattr_recursive`] on the mount tree `fd` refers to (e.g. a detached one).
pub fn mount_setattr_fd(fd: c_int, attr_set: u64) -> Result<(), Errno> {
    let attr = MountAttr {
        attr_set,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: a static empty C string; attr is a live, correctly sized struct on our stack.
    check(unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd,
            c"".as_ptr(),
            (libc::AT_EMPTY_PATH | libc::AT_RECURSIVE) as c_ulong,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    })
}

/// move_mount(from, "", to, "", F_EMPTY_PATH|T_EMPTY_PATH): attaches the mount tree `from` on
/// the object `to` refers to.
pub fn move_mount_fds(from: c_int, to: c_int) -> Result<(), Errno> {
    // SAFETY: integer arguments and static empty C strings.
    check(unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            from,
            c"".as_ptr(),
            to,
            c"".as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH,
        )
    })
}

// ---------------------------------------------------------------------------------------------
// Idmapped mounts (Linux 5.12+; `rootfs/idmap.rs`): a detached copy of a host tree whose ids
// are mapped through a user namespace, made by the launcher (root) and attached by the child.

/// MOUNT_ATTR_IDMAP (mount_setattr(2)).
pub const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;

/// open_tree(AT_FDCWD, path, OPEN_TREE_CLONE|O_CLOEXEC[|AT_RECURSIVE]): a detached copy of the
/// mount at `path` (with its submounts when `recursive`). The fd must be closed by the caller.
pub fn open_tree_clone_path(path: &CStr, recursive: bool) -> Result<c_int, Errno> {
    let mut flags = OPEN_TREE_CLONE | libc::O_CLOEXEC as c_ulong;
    if recursive {
        flags |= libc::AT_RECURSIVE as c_ulong;
    }
    // SAFETY: path is a live &CStr; the other arguments are integers.
    let rc = unsafe { libc::syscall(libc::SYS_open_tree, libc::AT_FDCWD, path.as_ptr(), flags) };
    Errno::result(rc).map(|fd| fd as c_int)
}

/// [`open_tree_clone_path`], the fd owned: nothing else holds it, dropping it closes it.
pub fn open_tree_clone_owned(path: &CStr, recursive: bool) -> Result<std::os::fd::OwnedFd, Errno> {
    let fd = open_tree_clone_path(path, recursive)?;
    // SAFETY: open_tree just returned this fd and nothing else owns it.
    Ok(unsafe { std::os::fd::FromRawFd::from_raw_fd(fd) })
}

/// mount_setattr(fd, "", AT_EMPTY_PATH[|AT_RECURSIVE], {attr_set | MOUNT_ATTR_IDMAP,
/// userns_fd}): maps the ids of the detached tree `fd` through the user namespace `userns`.
pub fn mount_setattr_idmap(
    fd: c_int,
    attr_set: u64,
    userns: c_int,
    recursive: bool,
) -> Result<(), Errno> {
    let attr = MountAttr {
        attr_set: attr_set | MOUNT_ATTR_IDMAP,
        attr_clr: 0,
        propagation: 0,
        userns_fd: userns as u64,
    };
    let mut flags = libc::AT_EMPTY_PATH as c_ulong;
    if recursive {
        flags |= libc::AT_RECURSIVE as c_ulong;
    }
    // SAFETY: a static empty C string; attr is a live, correctly sized struct on our stack.
    check(unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd,
            c"".as_ptr(),
            flags,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    })
}

#[cfg(test)]
mod open_tree_attr_tests {
    use super::*;

    /// Both paths of [`open_tree_clone_attr`] give a detached copy with the attributes set
    /// (as root: open_tree needs CAP_SYS_ADMIN; the copy is never attached).
    #[test]
    fn a_detached_copy_gets_its_attributes_with_either_path() {
        // SAFETY: geteuid cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: needs root");
            return;
        }
        let src = open_path_nofollow(c"/tmp").expect("open /tmp");
        let flags = |tree: c_int| {
            // SAFETY: zeroed statvfs is a valid value of a plain C struct.
            let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
            // SAFETY: tree is a live fd and st a live out-parameter.
            assert_eq!(unsafe { libc::fstatvfs(tree, &mut st) }, 0);
            st.f_flag
        };
        let attrs = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC;
        let want = libc::ST_RDONLY | libc::ST_NOSUID | libc::ST_NOEXEC;
        let one = match open_tree_attr(src, attrs) {
            Err(e) if e.0 == libc::ENOSYS => None,
            r => Some(r.expect("open_tree_attr")),
        };
        let two = open_tree_clone_then_setattr(src, attrs).expect("open_tree + mount_setattr");
        let via = open_tree_clone_attr(src, attrs).expect("open_tree_clone_attr");
        for t in one.into_iter().chain([two, via]) {
            assert_eq!(flags(t) & want, want, "{:x}", flags(t));
            close(t);
        }
        close(src);
    }
}
