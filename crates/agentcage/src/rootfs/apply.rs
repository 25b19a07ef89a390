//! Executing the plan in the child: [`apply`] and its raw-syscall steps.

use std::ffi::CStr;

use crate::error::{SetupError, Step};
use crate::sys::{self, Errno};

use super::{idmap, Op, PreparedRootfs, OLDROOT_DEV_NULL, OLDROOT_PROC, RO, ST_RELATIME};

/// Sets mount attributes on `path`: mount_setattr when available, else a bind remount that
/// keeps the flags the kernel locked (atime, nosuid, nodev, noexec of the source).
fn set_attrs(path: &CStr, attrs: u64, use_setattr: bool) -> Result<(), Errno> {
    if use_setattr {
        return sys::mount_setattr_recursive(path, attrs);
    }
    let st = sys::statvfs_flags(path)?;
    let mut flags = libc::MS_BIND | libc::MS_REMOUNT;
    if attrs & sys::MOUNT_ATTR_RDONLY != 0 || st & libc::ST_RDONLY != 0 {
        flags |= libc::MS_RDONLY;
    }
    if attrs & sys::MOUNT_ATTR_NOSUID != 0 || st & libc::ST_NOSUID != 0 {
        flags |= libc::MS_NOSUID;
    }
    if attrs & sys::MOUNT_ATTR_NODEV != 0 || st & libc::ST_NODEV != 0 {
        flags |= libc::MS_NODEV;
    }
    if attrs & sys::MOUNT_ATTR_NOEXEC != 0 || st & libc::ST_NOEXEC != 0 {
        flags |= libc::MS_NOEXEC;
    }
    for (st_flag, ms_flag) in [
        (libc::ST_NOATIME, libc::MS_NOATIME),
        (libc::ST_NODIRATIME, libc::MS_NODIRATIME),
        (ST_RELATIME, libc::MS_RELATIME),
    ] {
        if st & st_flag != 0 {
            flags |= ms_flag;
        }
    }
    sys::mount(None, path, None, flags, None)
}

fn ok_exists(r: Result<(), Errno>) -> Result<(), Errno> {
    match r {
        Err(e) if e.0 == libc::EEXIST => Ok(()),
        other => other,
    }
}

/// What one step of the plan leaves to the next ones.
#[derive(Default)]
struct State<'a> {
    /// The first /proc mask attached ([`Op::ProcMask`]): the source of the next ones.
    proc_mask: Option<&'a CStr>,
}

fn run_op<'a>(
    op: &'a Op,
    use_setattr: bool,
    idmap: &idmap::PreparedIdmap,
    state: &mut State<'a>,
) -> Result<(), Errno> {
    match op {
        Op::Mkdir { path, mode } => ok_exists(sys::mkdir(path, *mode)),
        // One mknod where open(O_CREAT) + close took two; a name already there (below a
        // bind) goes through the open, which refuses a symlink (ELOOP) as before.
        Op::Touch { path } => match sys::mknod_file(path, 0o644) {
            Err(e) if e.0 == libc::EEXIST => {
                let fd = sys::open(
                    path,
                    libc::O_RDONLY | libc::O_CREAT | libc::O_NOFOLLOW,
                    0o644,
                )?;
                sys::close(fd);
                Ok(())
            }
            r => r,
        },
        Op::Symlink { target, link } => ok_exists(sys::symlink(target, link)),
        Op::Tmpfs {
            target,
            flags,
            data,
            readonly,
            optional,
        } => {
            // A read-only tmpfs is an empty mask: mounted read-only at once, not mounted and
            // then remounted (one superblock reconfiguration less per mask).
            let flags = if *readonly {
                *flags | libc::MS_RDONLY
            } else {
                *flags
            };
            match sys::mount(Some(c"tmpfs"), target, Some(c"tmpfs"), flags, Some(data)) {
                Err(e) if *optional && (e.0 == libc::ENOENT || e.0 == libc::ENOTDIR) => Ok(()),
                r => r,
            }
        }
        Op::Bind {
            src,
            dst,
            attrs,
            optional,
            grouped,
        } => {
            match sys::mount(Some(src), dst, None, libc::MS_BIND | libc::MS_REC, None) {
                Err(e) if *optional && (e.0 == libc::ENOENT || e.0 == libc::ENOTDIR) => {
                    return Ok(())
                }
                r => r?,
            }
            if *grouped {
                return Ok(());
            }
            set_attrs(dst, *attrs, use_setattr)
        }
        Op::SetAttrs { target, attrs } => sys::mount_setattr_recursive(target, *attrs),
        Op::ProcMask { dst } => proc_mask(dst, use_setattr, state),
        Op::PinnedBind { src, dst, attrs } => pinned_bind(src, dst, *attrs, use_setattr),
        Op::IdmappedBind { dst, tree } => match idmap.trees.get(*tree) {
            Some(t) => idmap::attach(t, dst),
            None => Err(Errno(libc::EINVAL)),
        },
        Op::MaskSocket { dst } => mask_socket(OLDROOT_DEV_NULL, dst, use_setattr),
        Op::Proc { target, fresh } => {
            if *fresh {
                sys::mount(
                    Some(c"proc"),
                    target,
                    Some(c"proc"),
                    libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                    None,
                )
            } else {
                sys::mount(
                    Some(OLDROOT_PROC),
                    target,
                    None,
                    libc::MS_BIND | libc::MS_REC,
                    None,
                )
            }
        }
        Op::Devpts { target } => sys::mount(
            Some(c"devpts"),
            target,
            Some(c"devpts"),
            libc::MS_NOSUID | libc::MS_NOEXEC,
            Some(c"newinstance,ptmxmode=0666,mode=0620"),
        ),
        Op::WriteFile { path, contents } => {
            let fd = sys::open(
                path,
                libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC | libc::O_NOFOLLOW,
                0o644,
            )?;
            let r = sys::write_all(fd, contents);
            sys::close(fd);
            r
        }
        Op::RemountRo {
            target,
            flags,
            data,
        } => sys::remount(target, *flags, Some(data)),
        Op::Chmod { path, mode } => sys::chmod(path, *mode),
        Op::Overlay { target, data } => sys::mount(
            Some(c"overlay"),
            target,
            Some(c"overlay"),
            libc::MS_NOSUID | libc::MS_NODEV,
            Some(data),
        ),
        Op::Sysctl { path, value } => {
            let fd = match sys::open(path, libc::O_WRONLY | libc::O_NOFOLLOW, 0) {
                // Kernels before 5.17 keep IPC sysctls root-owned in every namespace.
                Err(e) if matches!(e.0, libc::EACCES | libc::EPERM | libc::ENOENT) => return Ok(()),
                r => r?,
            };
            let r = sys::write_all(fd, value.as_bytes());
            sys::close(fd);
            r
        }
    }
}

/// [`Op::ProcMask`]. ENOENT or ENOTDIR: the kernel has no such file, nothing to mask. For
/// the first mask the errno may be the source's (the host's /dev/null): then, and only then,
/// the source is looked up alone and its absence fails the step, as for [`mask_socket`] (a
/// bind of a missing /dev/null must not pass for "no such file" and leave every file
/// unmasked). The next masks bind a mount made a moment ago.
fn proc_mask<'a>(dst: &'a CStr, use_setattr: bool, state: &mut State<'a>) -> Result<(), Errno> {
    let (src, flags) = match state.proc_mask {
        Some(first) => (first, libc::MS_BIND),
        None => (OLDROOT_DEV_NULL, libc::MS_BIND | libc::MS_REC),
    };
    match sys::mount(Some(src), dst, None, flags, None) {
        Err(e) if e.0 == libc::ENOENT || e.0 == libc::ENOTDIR => {
            if state.proc_mask.is_none() {
                let fd = sys::open(src, libc::O_PATH | libc::O_CLOEXEC, 0)?;
                sys::close(fd);
            }
            return Ok(());
        }
        r => r?,
    }
    if state.proc_mask.is_none() {
        set_attrs(dst, RO | sys::MOUNT_ATTR_NOEXEC, use_setattr)?;
        state.proc_mask = Some(dst);
    }
    Ok(())
}

/// [`Op::MaskSocket`]: binds `src` (the host's /dev/null) read-only over the socket `dst`.
///
/// A socket gone since the parent's scan (ENOENT, ENOTDIR, or EACCES on a path component)
/// needs no mask. mount(2) gives the same errnos for a missing *source*, which must not pass
/// as "socket gone": that would leave every socket unmasked. So on those errnos, and only
/// then (the usual run pays nothing), the source is looked up alone: its failure is the
/// step's error (the socket may still be there), its success means the target was missing.
fn mask_socket(src: &CStr, dst: &CStr, use_setattr: bool) -> Result<(), Errno> {
    match sys::mount(Some(src), dst, None, libc::MS_BIND, None) {
        Err(e) if matches!(e.0, libc::ENOENT | libc::ENOTDIR | libc::EACCES) => {
            let fd = sys::open(src, libc::O_PATH | libc::O_CLOEXEC, 0)?;
            sys::close(fd);
            return Ok(());
        }
        r => r?,
    }
    set_attrs(dst, RO | sys::MOUNT_ATTR_NOEXEC, use_setattr)
}

/// [`Op::PinnedBind`]: source and target opened with no symlink in their paths (ELOOP
/// otherwise), the source's tree cloned, its attributes set while detached, then attached on
/// the target, so nothing is resolved twice. Without mount_setattr (Linux < 5.12, which also
/// lacks nothing else used here but comes last), a plain bind by path: the launcher says so.
fn pinned_bind(src: &CStr, dst: &CStr, attrs: u64, use_setattr: bool) -> Result<(), Errno> {
    if !use_setattr {
        sys::mount(Some(src), dst, None, libc::MS_BIND | libc::MS_REC, None)?;
        return set_attrs(dst, attrs, false);
    }
    let s = sys::open_path_nofollow(src)?;
    let tree = sys::open_tree_clone_attr(s, attrs);
    sys::close(s);
    let tree = tree?;
    let r = sys::open_path_nofollow(dst).and_then(|d| {
        let r = sys::move_mount_fds(tree, d);
        sys::close(d);
        r
    });
    sys::close(tree);
    r
}

/// Composes the root and pivots into it.
///
/// Runs in the child after clone: async-signal-safe only. Needs CAP_SYS_ADMIN in the
/// mount namespace's user namespace.
pub(crate) fn apply(p: &PreparedRootfs) -> Result<(), SetupError> {
    let e = |step: Step, i: usize| move |err: Errno| SetupError::new(step, i as u32, err);
    if p.oldroot_taken {
        // A target below the host root's mount point would be made in the host's tree.
        return Err(SetupError::new(Step::PivotStage, 0, Errno(libc::EEXIST)));
    }
    // Private, not slave: our mounts never propagate to the host, and the host's never
    // propagate in (a host mount under a bound tree would arrive without our ro/nosuid).
    sys::mount(None, c"/", None, libc::MS_PRIVATE | libc::MS_REC, None)
        .map_err(e(Step::MountPrivate, 0))?;
    // The root tmpfs, on any host directory, becomes the root at once; the host root moves
    // to OLDROOT inside it, so every source stays reachable (one under the host's /tmp too:
    // the tmpfs no longer covers it once it is the root) while the plan composes the tree
    // in place.
    sys::mount(
        Some(c"tmpfs"),
        &p.stage,
        Some(c"tmpfs"),
        libc::MS_NOSUID | libc::MS_NODEV,
        Some(&p.root_data),
    )
    .map_err(e(Step::StageTmpfs, 1))?;
    sys::chdir(&p.stage).map_err(e(Step::PivotStage, 0))?;
    sys::mkdir(&p.oldroot_rel, 0o755).map_err(e(Step::PivotStage, 0))?;
    sys::pivot_root(c".", &p.oldroot_rel).map_err(e(Step::PivotStage, 0))?;
    sys::chdir(c"/").map_err(e(Step::PivotStage, 0))?;

    let mut state = State::default();
    for (i, op) in p.ops.iter().enumerate() {
        run_op(op, p.mount_setattr, &p.idmap, &mut state).map_err(e(Step::Mount, i))?;
    }

    // Detach the whole host tree from this namespace, then remove its mount point: the
    // root is exactly the composed tree.
    sys::umount2(&p.oldroot, libc::MNT_DETACH).map_err(e(Step::DetachOldRoot, 0))?;
    sys::rmdir(&p.oldroot).map_err(e(Step::DetachOldRoot, 0))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::PermissionsExt;

    fn touch(p: &std::path::Path) -> Result<(), Errno> {
        let path = CString::new(p.as_os_str().as_bytes()).expect("no NUL in a temp path");
        run_op(
            &Op::Touch { path },
            true,
            &idmap::PreparedIdmap::default(),
            &mut State::default(),
        )
    }

    #[test]
    fn touch_creates_a_file_keeps_an_existing_one_and_refuses_a_symlink() {
        let d = std::env::temp_dir().join(format!("agentcage-rootfs-touch-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir(&d).expect("temp dir");
        let f = d.join("f");
        touch(&f).expect("a new mount point");
        let md = std::fs::symlink_metadata(&f).expect("made");
        assert!(md.file_type().is_file());
        assert_eq!(
            md.permissions().mode() & 0o022,
            0,
            "the umask cuts 0644 only"
        );
        // Already there (a file below a bind): fine, and left as it is.
        std::fs::write(&f, b"x").expect("write");
        touch(&f).expect("an existing file");
        assert_eq!(std::fs::read(&f).expect("read"), b"x");
        // A symlink (planted in a writable bind) is refused, not followed.
        let l = d.join("l");
        std::os::unix::fs::symlink(d.join("target"), &l).expect("symlink");
        assert_eq!(touch(&l), Err(Errno(libc::ELOOP)));
        assert!(!d.join("target").exists());
        // A directory is no file mount point.
        assert_eq!(touch(&d), Err(Errno(libc::EISDIR)));
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_socket_mask_fails_on_a_missing_source_and_skips_a_missing_target() {
        // Neither call can mount anything, even as root: the target does not exist.
        let gone = CString::new(format!(
            "/nonexistent-agentcage-{}/socket",
            std::process::id()
        ))
        .expect("no NUL");
        // The socket went away since the scan, the source is there: nothing to mask.
        assert_eq!(mask_socket(c"/dev/null", &gone, true), Ok(()));
        // The source path is wrong (here: no old root on the host): a setup error, not a
        // silently unmasked socket. This is the plan's own op, with the child's constant.
        assert!(
            !sys::exists(OLDROOT_DEV_NULL),
            "the host has {OLDROOT_DEV_NULL:?}"
        );
        let op = Op::MaskSocket { dst: gone.clone() };
        assert_eq!(
            run_op(
                &op,
                true,
                &idmap::PreparedIdmap::default(),
                &mut State::default()
            ),
            Err(Errno(libc::ENOENT))
        );
        // The message names both paths (the errno is the source's).
        let msg = op.describe();
        assert!(msg.contains("/.agentcage-oldroot/dev/null"), "{msg}");
        assert_eq!(
            mask_socket(c"/nonexistent-agentcage-null", &gone, true),
            Err(Errno(libc::ENOENT))
        );
    }
}
