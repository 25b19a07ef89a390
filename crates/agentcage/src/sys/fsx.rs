//! Fd-relative file operations for the overlay's upper layer and the workspace: nothing here
//! follows a symlink (openat2 RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS|RESOLVE_NO_MAGICLINKS,
//! O_NOFOLLOW, AT_SYMLINK_NOFOLLOW), so an entry the agent planted cannot redirect a read or
//! a write outside the tree it belongs to.
//!
//! The overlay's syscall room (moved from `overlay/fsx.rs`, issue #11): its callers keep the
//! `io::Result` they had, since the overlay's errors carry an `io::Error` source.

use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::Path;

fn cstr(p: &OsStr) -> io::Result<CString> {
    CString::new(p.as_bytes()).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

fn check(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// Whether an open with `flags` reads (files or directory entries): such opens ask for
/// O_NOATIME. Reading what the agent just wrote would otherwise update its access time
/// (relatime: the first read after a write), a journaled inode change per file and directory
/// that `diff`, a read-only command, would wait on when the disk is busy.
fn reads(flags: libc::c_int) -> bool {
    flags & libc::O_ACCMODE == libc::O_RDONLY && flags & libc::O_PATH == 0
}

/// Retries `open` without O_NOATIME when the kernel refuses it (EPERM: a file neither
/// ours nor openable with CAP_FOWNER).
fn noatime(
    flags: libc::c_int,
    open: impl Fn(libc::c_int) -> io::Result<OwnedFd>,
) -> io::Result<OwnedFd> {
    if !reads(flags) {
        return open(flags);
    }
    match open(flags | libc::O_NOATIME) {
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => open(flags),
        r => r,
    }
}

/// openat2(dir, rel, flags|O_CLOEXEC|O_NOFOLLOW, RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS|
/// RESOLVE_NO_MAGICLINKS), with O_NOATIME when it reads. `rel` empty or "." opens `dir`
/// itself.
pub fn open_beneath(
    dir: BorrowedFd<'_>,
    rel: &Path,
    flags: libc::c_int,
    mode: u32,
) -> io::Result<OwnedFd> {
    noatime(flags, |f| openat2(dir, rel, f, mode))
}

fn openat2(dir: BorrowedFd<'_>, rel: &Path, flags: libc::c_int, mode: u32) -> io::Result<OwnedFd> {
    let rel = if rel.as_os_str().is_empty() {
        Path::new(".")
    } else {
        rel
    };
    let c = cstr(rel.as_os_str())?;
    // SAFETY: open_how is plain data; all-zero is valid.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (flags | libc::O_CLOEXEC | libc::O_NOFOLLOW) as u64;
    how.mode = u64::from(mode);
    how.resolve = libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS | libc::RESOLVE_NO_MAGICLINKS;
    // SAFETY: valid fd, NUL-terminated path, a correctly sized open_how.
    let r = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dir.as_raw_fd(),
            c.as_ptr(),
            &how as *const libc::open_how,
            std::mem::size_of::<libc::open_how>(),
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh fd we own.
    Ok(unsafe { OwnedFd::from_raw_fd(r as libc::c_int) })
}

/// Opens a directory by absolute path for use as a root of `*_beneath` calls (O_PATH is not
/// enough for reading entries: O_RDONLY|O_DIRECTORY, no symlink as the last component).
pub fn open_dir_path(p: &Path) -> io::Result<OwnedFd> {
    let c = cstr(p.as_os_str())?;
    noatime(libc::O_RDONLY, |f| {
        // SAFETY: NUL-terminated path.
        let fd = check(unsafe {
            libc::open(
                c.as_ptr(),
                f | libc::O_DIRECTORY | libc::O_CLOEXEC | libc::O_NOFOLLOW,
            )
        })?;
        // SAFETY: a fresh fd we own.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    })
}

/// A directory of `dir` (relative, beneath, no symlink), opened for reading its entries.
pub fn open_subdir(dir: BorrowedFd<'_>, rel: &Path) -> io::Result<OwnedFd> {
    open_beneath(dir, rel, libc::O_RDONLY | libc::O_DIRECTORY, 0)
}

/// lstat of `name` (one component) in `dir`.
pub fn lstat_at(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<libc::stat> {
    let c = cstr(name)?;
    // SAFETY: zeroed stat is a valid out-buffer.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: valid fd, path and buffer.
    check(unsafe {
        libc::fstatat(
            dir.as_raw_fd(),
            c.as_ptr(),
            &mut st,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    })?;
    Ok(st)
}

/// lstat of a relative path resolved beneath `dir` (its parent opened without symlinks).
pub fn lstat_beneath(dir: BorrowedFd<'_>, rel: &Path) -> io::Result<libc::stat> {
    let (parent, name) = split(rel)?;
    let p = open_beneath(dir, parent, libc::O_PATH | libc::O_DIRECTORY, 0)?;
    use std::os::fd::AsFd;
    lstat_at(p.as_fd(), name)
}

/// The parent (possibly empty) and last component of a relative path.
pub fn split(rel: &Path) -> io::Result<(&Path, &OsStr)> {
    match (rel.parent(), rel.file_name()) {
        (Some(p), Some(n)) => Ok((p, n)),
        _ => Err(io::Error::from_raw_os_error(libc::EINVAL)),
    }
}

/// The names in a directory (not `.`/`..`), sorted.
pub fn entries(dir: BorrowedFd<'_>) -> io::Result<Vec<OsString>> {
    // A new open file description of the same directory: readdir needs its own offset.
    let d = open_beneath(dir, Path::new("."), libc::O_RDONLY | libc::O_DIRECTORY, 0)?;
    let raw = d.as_raw_fd();
    std::mem::forget(d);
    // SAFETY: raw is a directory fd we own; fdopendir takes it over.
    let dp = unsafe { libc::fdopendir(raw) };
    if dp.is_null() {
        let e = io::Error::last_os_error();
        // SAFETY: fdopendir failed: the fd is still ours.
        unsafe { libc::close(raw) };
        return Err(e);
    }
    let mut out = Vec::new();
    loop {
        // SAFETY: dp is a valid DIR*.
        let ent = unsafe { libc::readdir(dp) };
        if ent.is_null() {
            break;
        }
        // SAFETY: d_name is NUL-terminated.
        let name = unsafe { std::ffi::CStr::from_ptr((*ent).d_name.as_ptr()) };
        let b = name.to_bytes();
        if b != b"." && b != b".." {
            out.push(OsString::from_vec(b.to_vec()));
        }
    }
    // SAFETY: dp valid; closes the fd.
    unsafe { libc::closedir(dp) };
    out.sort();
    Ok(out)
}

/// The value of xattr `name` on `fd` (None when absent or unsupported).
pub fn fgetxattr(fd: BorrowedFd<'_>, name: &str) -> Option<Vec<u8>> {
    let c = CString::new(name).ok()?;
    let mut buf = [0u8; 256];
    // SAFETY: valid fd, name and buffer.
    let n = unsafe {
        libc::fgetxattr(
            fd.as_raw_fd(),
            c.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    (n >= 0).then(|| buf[..n as usize].to_vec())
}

/// readlinkat(dir, name).
pub fn readlink_at(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<OsString> {
    let c = cstr(name)?;
    let mut buf = vec![0u8; libc::PATH_MAX as usize];
    // SAFETY: valid fd, path, buffer.
    let n = unsafe {
        libc::readlinkat(
            dir.as_raw_fd(),
            c.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    buf.truncate(n as usize);
    Ok(OsString::from_vec(buf))
}

/// unlinkat(dir, name, flags).
pub fn unlink_at(dir: BorrowedFd<'_>, name: &OsStr, rmdir: bool) -> io::Result<()> {
    let c = cstr(name)?;
    let flags = if rmdir { libc::AT_REMOVEDIR } else { 0 };
    // SAFETY: valid fd and path.
    check(unsafe { libc::unlinkat(dir.as_raw_fd(), c.as_ptr(), flags) }).map(drop)
}

/// mkdirat(dir, name, mode).
pub fn mkdir_at(dir: BorrowedFd<'_>, name: &OsStr, mode: u32) -> io::Result<()> {
    let c = cstr(name)?;
    // SAFETY: valid fd and path.
    check(unsafe { libc::mkdirat(dir.as_raw_fd(), c.as_ptr(), mode) }).map(drop)
}

/// symlinkat(target, dir, name).
pub fn symlink_at(target: &OsStr, dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<()> {
    let t = cstr(target)?;
    let c = cstr(name)?;
    // SAFETY: valid fd and paths.
    check(unsafe { libc::symlinkat(t.as_ptr(), dir.as_raw_fd(), c.as_ptr()) }).map(drop)
}

/// renameat(dir, from, dir, to) (replaces `to`).
pub fn rename_at(dir: BorrowedFd<'_>, from: &OsStr, to: &OsStr) -> io::Result<()> {
    let f = cstr(from)?;
    let t = cstr(to)?;
    // SAFETY: valid fd and paths.
    check(unsafe { libc::renameat(dir.as_raw_fd(), f.as_ptr(), dir.as_raw_fd(), t.as_ptr()) })
        .map(drop)
}

/// fchmod(fd, mode).
pub fn fchmod(fd: BorrowedFd<'_>, mode: u32) -> io::Result<()> {
    // SAFETY: valid fd.
    check(unsafe { libc::fchmod(fd.as_raw_fd(), mode) }).map(drop)
}

/// fchmodat(dir, name, mode) (the entry itself: never a symlink, which has no mode to set).
pub fn chmod_at(dir: BorrowedFd<'_>, name: &OsStr, mode: u32) -> io::Result<()> {
    let c = cstr(name)?;
    // SAFETY: valid fd and path. Flags 0: glibc's fchmodat(AT_SYMLINK_NOFOLLOW) is not
    // supported on every kernel; the callers lstat the entry first and pass directories only.
    check(unsafe { libc::fchmodat(dir.as_raw_fd(), c.as_ptr(), mode, 0) }).map(drop)
}

/// fchownat(dir, name, uid, gid, AT_SYMLINK_NOFOLLOW) (`name` empty: the fd itself).
pub fn chown_at(dir: BorrowedFd<'_>, name: &OsStr, uid: u32, gid: u32) -> io::Result<()> {
    let c = cstr(name)?;
    let flags = libc::AT_SYMLINK_NOFOLLOW
        | if name.is_empty() {
            libc::AT_EMPTY_PATH
        } else {
            0
        };
    // SAFETY: valid fd and path.
    check(unsafe { libc::fchownat(dir.as_raw_fd(), c.as_ptr(), uid, gid, flags) }).map(drop)
}

/// fstat(fd).
pub fn fstat(fd: BorrowedFd<'_>) -> io::Result<libc::stat> {
    // SAFETY: zeroed stat is a valid out-buffer.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: valid fd and buffer.
    check(unsafe { libc::fstat(fd.as_raw_fd(), &mut st) })?;
    Ok(st)
}

/// The file type bits of a mode.
pub fn fmt(mode: u32) -> u32 {
    mode & libc::S_IFMT
}
