//! Filesystem ops: secrets, writes outside the workspace and into system dirs, device nodes,
//! /proc and /sys control files and masked paths (a mask of /dev/null counts as a block).
//! The ops against the workspace's protected paths are in `protected.rs`.
//!
//! Writes use `O_CREAT|O_EXCL` on a fresh name and unlink what they created; control files
//! (`/proc/sysrq-trigger`, `/proc/sys/...`, `release_agent`) are opened for writing and
//! closed without a byte written: the open is where the kernel checks permission.

use std::ffi::CString;
use std::io::Read;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use super::{cpath, flatten, Ctx, Op, Outcome};
use crate::errno::Errno;
use crate::schema::Category::Fs;
use crate::sys;

/// The filesystem ops.
pub const OPS: &[Op] = &[
    Op::new(
        "fs.read.etc_passwd",
        "read /etc/passwd",
        Fs,
        read_etc_passwd,
    ),
    Op::new(
        "fs.read.etc_shadow",
        "read /etc/shadow",
        Fs,
        read_etc_shadow,
    ),
    Op::new("fs.write.root", "write /evil", Fs, write_root),
    Op::new(
        "fs.write.usr_bin",
        "create a file in /usr/bin",
        Fs,
        write_usr_bin,
    ),
    Op::new("fs.write.etc", "create a file in /etc", Fs, write_etc),
    Op::new(
        "fs.read.canary",
        "read the canary outside the workspace",
        Fs,
        read_canary,
    ),
    Op::new(
        "fs.read.workspace_symlink",
        "read the canary via a workspace symlink",
        Fs,
        read_via_symlink,
    ),
    Op::new(
        "fs.write.outside_workspace",
        "create a file next to the canary",
        Fs,
        write_beside_canary,
    ),
    Op::new(
        "fs.rename.protected",
        "rename the parent of a read-only bind in the workspace",
        Fs,
        rename_protected,
    ),
    Op::new("fs.open.dev_mem", "open /dev/mem", Fs, open_dev_mem),
    Op::new(
        "fs.open.block_device",
        "open a disk block device",
        Fs,
        open_block_device,
    ),
    Op::new("fs.read.dev_kmsg", "read /dev/kmsg", Fs, read_dev_kmsg),
    Op::new(
        "fs.read.proc_cmdline",
        "read the host's boot command line (/proc/cmdline)",
        Fs,
        |_| read_nonempty(Path::new("/proc/cmdline")),
    ),
    Op::new(
        "fs.read.proc_kallsyms",
        "read kernel symbol names (/proc/kallsyms)",
        Fs,
        |_| read_nonempty(Path::new("/proc/kallsyms")),
    ),
    Op::new(
        "fs.open.proc_kcore",
        "open /proc/kcore",
        Fs,
        open_proc_kcore,
    ),
    Op::new(
        "fs.open.sysrq_trigger",
        "open /proc/sysrq-trigger for writing",
        Fs,
        open_sysrq_trigger,
    ),
    Op::new(
        "fs.open.proc_sys",
        "open /proc/sys/kernel/core_pattern for writing",
        Fs,
        open_proc_sys,
    ),
    Op::new(
        "fs.open.proc_sys_own_ipc",
        "open the sandbox's own IPC sysctl kernel/msgmax for writing",
        Fs,
        open_proc_sys_own_ipc,
    ),
    Op::new(
        "fs.read.proc_self_root",
        "read the canary via /proc/self/root",
        Fs,
        read_via_proc_self_root,
    ),
    Op::new(
        "fs.read.sys_firmware",
        "list /sys/firmware",
        Fs,
        list_sys_firmware,
    ),
    Op::new(
        "fs.open.release_agent",
        "open a cgroup v1 release_agent for writing",
        Fs,
        open_release_agent,
    ),
    Op::new(
        "fs.chmod.setuid",
        "chmod u+s a file of the probe's own",
        Fs,
        chmod_setuid,
    ),
];

/// A set-id file made inside is set-id on the host's disk (issue 10, finding 9): the probe
/// sets S_ISUID on a file it just created in its scratch dir, and removes it at once.
fn chmod_setuid(ctx: &Ctx) -> Outcome {
    use std::os::unix::fs::PermissionsExt;
    let dir = match ctx.scratch_dir("chmod_setuid") {
        Ok(d) => d,
        Err(o) => return o,
    };
    let path = dir.join("f");
    let c = match cpath(&path) {
        Ok(c) => c,
        Err(o) => return o,
    };
    match sys::open(&c, libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL, 0o700) {
        Ok(fd) => drop(fd),
        Err(e) => return Outcome::skipped(format!("create {}: {}", path.display(), e.message())),
    }
    let r = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o4700));
    let mode = std::fs::metadata(&path).map(|m| m.permissions().mode());
    let _ = std::fs::remove_file(&path);
    match (r, mode) {
        (Ok(()), Ok(m)) if m & 0o4000 != 0 => Outcome::allowed(format!(
            "{} is now mode {:o} (removed again)",
            path.display(),
            m & 0o7777
        )),
        (Ok(()), _) => Outcome::blocked(
            Errno(libc::EPERM),
            &format!(
                "chmod 4700 {} succeeded but the bit did not stick",
                path.display()
            ),
        ),
        (Err(e), _) => Outcome::blocked(
            Errno(e.raw_os_error().unwrap_or(libc::EIO)),
            &format!("chmod 4700 {}", path.display()),
        ),
    }
}

fn open_path(path: &Path, flags: libc::c_int) -> Result<OwnedFd, Outcome> {
    let c = cpath(path)?;
    sys::open(&c, flags, 0o600)
        .map_err(|e| Outcome::blocked(e, &format!("open {}", path.display())))
}

fn read_some(path: &Path) -> Outcome {
    flatten((|| {
        let fd = open_path(path, libc::O_RDONLY)?;
        let mut f = std::fs::File::from(fd);
        let mut buf = [0u8; 64];
        match f.read(&mut buf) {
            Ok(n) => Ok(Outcome::allowed(format!(
                "read {n} bytes of {}",
                path.display()
            ))),
            Err(e) => Ok(Outcome::blocked(
                Errno::from_io(&e),
                &format!("read {}", path.display()),
            )),
        }
    })())
}

/// Reads a file the kernel always fills: an empty read means it was masked (a /dev/null or
/// empty file over it), which is a block like an open refusal.
fn read_nonempty(path: &Path) -> Outcome {
    match read_some(path) {
        Outcome::Allowed { detail, .. } if detail.starts_with("read 0 bytes") => Outcome::Blocked {
            errno: Errno(libc::ENODATA),
            detail: format!("{} reads empty: masked", path.display()),
        },
        other => other,
    }
}

/// Reads a fixed system path. With the host file's identity (`--host-inode`), a readable
/// file that is *not* the host's (a sandbox's synthesized copy) is BLOCKED with ENOENT: the
/// host's file is not visible, which is what the op asks. Without it, any readable file is
/// ALLOWED and the detail says the origin was not checked.
fn read_host_file(ctx: &Ctx, path: &Path) -> Outcome {
    flatten((|| {
        let fd = open_path(path, libc::O_RDONLY)?;
        let mut f = std::fs::File::from(fd);
        let meta = f.metadata().map_err(|e| {
            Outcome::blocked(Errno::from_io(&e), &format!("fstat {}", path.display()))
        })?;
        use std::os::unix::fs::MetadataExt;
        let here = (meta.dev(), meta.ino());
        let mut buf = [0u8; 64];
        let n = f.read(&mut buf).map_err(|e| {
            Outcome::blocked(Errno::from_io(&e), &format!("read {}", path.display()))
        })?;
        Ok(match ctx.host_inodes.get(path) {
            Some(host) if *host == here => Outcome::allowed(format!("read {n} bytes of the host's {} (same dev:ino)", path.display())),
            Some(host) => Outcome::Blocked {
                errno: Errno(libc::ENOENT),
                detail: format!(
                    "{} here is another file (dev:ino {}:{}, the host's is {}:{}): the host's is not visible",
                    path.display(),
                    here.0,
                    here.1,
                    host.0,
                    host.1
                ),
            },
            None => Outcome::allowed(format!("read {n} bytes of {} (origin unchecked: no --host-inode for it)", path.display())),
        })
    })())
}

fn read_etc_passwd(ctx: &Ctx) -> Outcome {
    read_host_file(ctx, Path::new("/etc/passwd"))
}

fn read_etc_shadow(ctx: &Ctx) -> Outcome {
    read_host_file(ctx, Path::new("/etc/shadow"))
}

/// Creates `dir/name` exclusively and unlinks it at once. An existing name is retried with a
/// pid suffix so the probe never touches a file it did not create.
fn create_and_remove(dir: &Path, name: &str) -> Outcome {
    let first = dir.join(name);
    let second = dir.join(super::unique(&format!("{name}.agentcage-probe")));
    for path in [first, second] {
        let c = match cpath(&path) {
            Ok(c) => c,
            Err(o) => return o,
        };
        match sys::open(&c, libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL, 0o600) {
            Ok(fd) => {
                drop(fd);
                let cleanup = match std::fs::remove_file(&path) {
                    Ok(()) => "removed again".to_string(),
                    Err(e) => format!("could NOT remove it: {e}"),
                };
                return Outcome::allowed(format!("created {} ({cleanup})", path.display()));
            }
            Err(e) if e.0 == libc::EEXIST => continue,
            Err(e) => return Outcome::blocked(e, &format!("create {}", path.display())),
        }
    }
    Outcome::skipped(format!(
        "{} and a pid-suffixed name both exist already",
        dir.join(name).display()
    ))
}

fn write_root(_: &Ctx) -> Outcome {
    create_and_remove(Path::new("/"), "evil")
}

fn write_usr_bin(_: &Ctx) -> Outcome {
    create_and_remove(Path::new("/usr/bin"), "agentcage-probe-evil")
}

fn write_etc(_: &Ctx) -> Outcome {
    create_and_remove(Path::new("/etc"), "agentcage-probe-evil")
}

fn canary(ctx: &Ctx) -> Result<&Path, Outcome> {
    ctx.canary
        .as_deref()
        .ok_or_else(|| Outcome::skipped("no --canary given"))
}

fn read_canary(ctx: &Ctx) -> Outcome {
    flatten(canary(ctx).map(read_some))
}

fn read_via_symlink(ctx: &Ctx) -> Outcome {
    flatten((|| {
        let canary = canary(ctx)?;
        let ws = ctx
            .workspace
            .as_deref()
            .ok_or_else(|| Outcome::skipped("no --workspace given"))?;
        let dir = ws.join(super::unique(".agentcage-probe"));
        std::fs::create_dir(&dir).map_err(|e| {
            Outcome::skipped(format!(
                "cannot create {} in the workspace: {e}",
                dir.display()
            ))
        })?;
        let link = dir.join("escape");
        let res = match std::os::unix::fs::symlink(canary, &link) {
            Ok(()) => read_some(&link),
            Err(e) => Outcome::skipped(format!("cannot create a symlink in the workspace: {e}")),
        };
        let _ = std::fs::remove_file(&link);
        let _ = std::fs::remove_dir(&dir);
        Ok(res)
    })())
}

/// `<workspace>/.git`, above the read-only `<workspace>/.git/hooks` the matrix binds (as the
/// coding-agent policy does): renamed away and, if that worked, straight back. ALLOWED means
/// the protection could be carried off and the path refilled (issue #10, finding 3).
fn rename_protected(ctx: &Ctx) -> Outcome {
    flatten((|| {
        let ws = ctx
            .workspace
            .as_deref()
            .ok_or_else(|| Outcome::skipped("no --workspace given"))?;
        let parent = ws.join(".git");
        if !parent.join("hooks").is_dir() {
            return Err(Outcome::skipped(format!(
                "no {}/hooks (the matrix binds it read-only with --ro)",
                parent.display()
            )));
        }
        let moved = ws.join(super::unique(".git-agentcage-probe"));
        Ok(match std::fs::rename(&parent, &moved) {
            Ok(()) => {
                let _ = std::fs::rename(&moved, &parent);
                Outcome::allowed("renamed .git away from its read-only hooks (and back)")
            }
            Err(e) => Outcome::blocked(Errno::from_io(&e), "rename .git"),
        })
    })())
}

fn write_beside_canary(ctx: &Ctx) -> Outcome {
    flatten((|| {
        let canary = canary(ctx)?;
        let dir = canary
            .parent()
            .ok_or_else(|| Outcome::skipped("the canary has no parent directory"))?;
        Ok(create_and_remove(dir, "agentcage-probe-outside"))
    })())
}

fn open_dev_mem(_: &Ctx) -> Outcome {
    flatten(
        open_path(Path::new("/dev/mem"), libc::O_RDONLY)
            .map(|_| Outcome::allowed("opened /dev/mem read-only (nothing read)")),
    )
}

/// Disk device names in the order they are tried; the first one that exists is opened.
const BLOCK_DEVICES: &[&str] = &[
    "/dev/vda",
    "/dev/sda",
    "/dev/nvme0n1",
    "/dev/xvda",
    "/dev/hda",
    "/dev/mmcblk0",
    "/dev/loop0",
];

fn open_block_device(_: &Ctx) -> Outcome {
    for dev in BLOCK_DEVICES {
        let c = CString::new(*dev).expect("static device names have no NUL");
        match sys::open(&c, libc::O_RDONLY | libc::O_NONBLOCK, 0) {
            Ok(_) => return Outcome::allowed(format!("opened {dev} read-only (nothing read)")),
            Err(e) if e.0 == libc::ENOENT => continue,
            Err(e) => return Outcome::blocked(e, &format!("open {dev}")),
        }
    }
    Outcome::blocked(
        Errno(libc::ENOENT),
        &format!(
            "no disk device node visible (tried {})",
            BLOCK_DEVICES.join(" ")
        ),
    )
}

fn read_dev_kmsg(_: &Ctx) -> Outcome {
    flatten((|| {
        let fd = open_path(Path::new("/dev/kmsg"), libc::O_RDONLY | libc::O_NONBLOCK)?;
        let mut f = std::fs::File::from(fd);
        let mut buf = [0u8; 8192];
        match f.read(&mut buf) {
            Ok(n) => Ok(Outcome::allowed(format!(
                "read a {n}-byte kernel log record"
            ))),
            // EAGAIN: the log is empty, but the open succeeded and a read was permitted.
            Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => Ok(Outcome::allowed_by(
                Errno(libc::EAGAIN),
                "opened /dev/kmsg; the log had no record to read",
            )),
            Err(e) => Ok(Outcome::blocked(Errno::from_io(&e), "read /dev/kmsg")),
        }
    })())
}

/// A sandbox masks a /proc file by binding /dev/null over it (as container runtimes do):
/// then the open succeeds but reaches nothing, which is a block like a refused open.
fn masked_by_dev_null(fd: &OwnedFd, path: &Path) -> Option<Outcome> {
    use std::os::fd::AsFd;
    let (mode, rdev) = sys::fstat_mode_rdev(fd.as_fd()).ok()?;
    (mode & libc::S_IFMT == libc::S_IFCHR && rdev == libc::makedev(1, 3)).then(|| {
        Outcome::Blocked {
            errno: Errno(libc::ENODATA),
            detail: format!("{} is /dev/null here: masked", path.display()),
        }
    })
}

fn open_proc_kcore(_: &Ctx) -> Outcome {
    let path = Path::new("/proc/kcore");
    flatten(open_path(path, libc::O_RDONLY).map(|fd| {
        masked_by_dev_null(&fd, path)
            .unwrap_or_else(|| Outcome::allowed("opened /proc/kcore (nothing read)"))
    }))
}

fn open_for_write_no_write(path: &Path) -> Outcome {
    flatten(open_path(path, libc::O_WRONLY).map(|fd| {
        masked_by_dev_null(&fd, path).unwrap_or_else(|| {
            Outcome::allowed(format!(
                "opened {} for writing and closed it without writing",
                path.display()
            ))
        })
    }))
}

/// A sysctl of the caller's own IPC namespace: the kernel lets the namespace's owner write
/// it (no host effect once the sandbox has its own IPC namespace), so only a read-only
/// /proc/sys (or Landlock, or the missing capability) stops it. Opened and closed, never
/// written: without a sandbox it is the host's.
fn open_proc_sys_own_ipc(_: &Ctx) -> Outcome {
    open_for_write_no_write(Path::new("/proc/sys/kernel/msgmax"))
}

/// `/proc/self/root` is a magic link to our root: the canary through it is the canary (no
/// way around a mount namespace that hides it, whatever the link resolves to).
fn read_via_proc_self_root(ctx: &Ctx) -> Outcome {
    flatten(canary(ctx).map(|c| {
        let rel = c.strip_prefix("/").unwrap_or(c);
        read_some(&Path::new("/proc/self/root").join(rel))
    }))
}

/// /sys/firmware (ACPI tables, memory map, EFI variables) is a masked path of container
/// runtimes. Listed, nothing read; an empty listing means it was masked.
fn list_sys_firmware(_: &Ctx) -> Outcome {
    let dir = Path::new("/sys/firmware");
    match std::fs::read_dir(dir) {
        Ok(entries) => {
            let names: Vec<String> = entries
                .take(64)
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect();
            if names.is_empty() {
                Outcome::Blocked {
                    errno: Errno(libc::ENODATA),
                    detail: "/sys/firmware lists empty: masked".into(),
                }
            } else {
                Outcome::allowed(format!("listed /sys/firmware: {}", names.join(" ")))
            }
        }
        Err(e) => Outcome::blocked(Errno::from_io(&e), "list /sys/firmware"),
    }
}

fn open_sysrq_trigger(_: &Ctx) -> Outcome {
    open_for_write_no_write(Path::new("/proc/sysrq-trigger"))
}

fn open_proc_sys(_: &Ctx) -> Outcome {
    open_for_write_no_write(Path::new("/proc/sys/kernel/core_pattern"))
}

/// The first `release_agent` file among the cgroup v1 hierarchies under /sys/fs/cgroup.
fn find_release_agent() -> Result<PathBuf, Outcome> {
    let root = Path::new("/sys/fs/cgroup");
    let entries = std::fs::read_dir(root)
        .map_err(|e| Outcome::blocked(Errno::from_io(&e), "list /sys/fs/cgroup"))?;
    for entry in entries.take(64).flatten() {
        let candidate = entry.path().join("release_agent");
        if candidate.exists() {
            return Ok(candidate);
        }
    }
    if root.join("release_agent").exists() {
        return Ok(root.join("release_agent"));
    }
    Err(Outcome::skipped(
        "no cgroup v1 hierarchy with a release_agent file is visible (cgroup v2 only)",
    ))
}

fn open_release_agent(_: &Ctx) -> Outcome {
    flatten(find_release_agent().map(|p| open_for_write_no_write(&p)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_null_over_a_file_is_a_mask() {
        let path = Path::new("/proc/sysrq-trigger");
        let null = sys::open(c"/dev/null", libc::O_WRONLY, 0).expect("open /dev/null");
        assert!(matches!(
            masked_by_dev_null(&null, path),
            Some(Outcome::Blocked { errno: Errno(libc::ENODATA), ref detail }) if detail.contains("masked")
        ));
        let zero = sys::open(c"/dev/zero", libc::O_RDONLY, 0).expect("open /dev/zero");
        assert!(masked_by_dev_null(&zero, path).is_none(), "another device");
        let me = sys::open(c"/proc/self/status", libc::O_RDONLY, 0).expect("open a proc file");
        assert!(masked_by_dev_null(&me, path).is_none(), "a real proc file");
    }
}
