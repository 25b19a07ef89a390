//! Where overlays live and how one is created, opened and listed.

use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::fsx;

/// What can go wrong with an overlay (each names the object and the OS error).
#[derive(Debug, thiserror::Error)]
pub enum OverlayError {
    /// overlayfs cannot be used on this host.
    #[error("overlayfs is not available: {0}")]
    Unavailable(String),
    /// The overlay directory is not usable (missing, a symlink, inside the workspace...).
    #[error("overlay directory {}: {why}", .dir.display())]
    Dir {
        /// The overlay directory.
        dir: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// An operation on one path failed.
    #[error("{op} {}: {source}", .path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// The path (relative to the workspace, or absolute).
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// No overlay of that name.
    #[error("no overlay named {0:?} (see `agentcage overlays`)")]
    NotFound(String),
}

pub(crate) fn io_err(
    op: &'static str,
    path: impl Into<PathBuf>,
) -> impl FnOnce(io::Error) -> OverlayError {
    let path = path.into();
    move |source| OverlayError::Io { op, path, source }
}

/// `meta.json` of an overlay.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Meta {
    /// The overlay's name.
    pub name: String,
    /// The workspace (lower layer), canonical.
    pub workspace: PathBuf,
    /// Created at (seconds since the epoch).
    pub created: u64,
}

/// One overlay directory.
#[derive(Debug, Clone)]
pub struct Overlay {
    /// Its directory (holds `upper/`, `work/`, `meta.json`).
    pub dir: PathBuf,
    /// Its metadata.
    pub meta: Meta,
}

/// Where overlays live by default: as root `/var/lib/agentcage/overlays`, else
/// `$XDG_STATE_HOME/agentcage/overlays` (else `~/.local/state/agentcage/overlays`).
pub fn default_root() -> Option<PathBuf> {
    if crate::sys::geteuid() == 0 {
        return Some(PathBuf::from("/var/lib/agentcage/overlays"));
    }
    let state = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| {
            std::env::var_os("HOME")
                .map(PathBuf::from)
                .filter(|p| p.is_absolute())
                .map(|h| h.join(".local/state"))
        })?;
    Some(state.join("agentcage/overlays"))
}

/// The default name of the overlay of `workspace`: its last component and a hash of the
/// whole path (two workspaces with the same name get two overlays).
pub fn name_for_workspace(workspace: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    // FNV-1a: stable across builds and versions (std's hasher is not).
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in workspace.as_os_str().as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    let base: String = workspace
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "root".into())
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{base}-{:08x}", h as u32)
}

/// Whether rootless overlayfs can be mounted here: Linux >= 5.11 (`userxattr`) and the
/// `overlay` filesystem known to the kernel (or loadable). The mount itself is the last
/// word: its failure is reported with the step and errno.
pub fn check_available() -> Result<(), OverlayError> {
    let rel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut it = rel.trim().split(|c: char| !c.is_ascii_digit());
    let major: u32 = it.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    let minor: u32 = it.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    if (major, minor) < (5, 11) {
        return Err(OverlayError::Unavailable(format!(
            "kernel {} is older than 5.11 (no overlayfs in user namespaces, no userxattr); \
             run without --overlay",
            rel.trim()
        )));
    }
    let fs = std::fs::read_to_string("/proc/filesystems").unwrap_or_default();
    let known = fs
        .lines()
        .any(|l| l.split_whitespace().last() == Some("overlay"));
    let module = Path::new("/sys/module/overlay").exists()
        || Path::new(&format!("/lib/modules/{}/kernel/fs/overlayfs", rel.trim())).exists()
        || Path::new(&format!(
            "/usr/lib/modules/{}/kernel/fs/overlayfs",
            rel.trim()
        ))
        .exists();
    if !known && !module {
        return Err(OverlayError::Unavailable(
            "the kernel has no overlay filesystem (not in /proc/filesystems, no overlay \
             module); load it (modprobe overlay) or run without --overlay"
                .into(),
        ));
    }
    Ok(())
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Overlay {
    /// Opens (or, with `create`, creates) the overlay in `dir` for `workspace`.
    ///
    /// `owner`: the sandbox's host uid/gid when the launcher runs as root (the upper layer
    /// must be writable by it: overlayfs writes with the mounter's credentials); `None`
    /// keeps the caller's. The upper directory gets the workspace's mode: it is the merged
    /// root's.
    pub fn open_or_create(
        dir: &Path,
        workspace: &Path,
        owner: Option<(u32, u32)>,
    ) -> Result<Overlay, OverlayError> {
        if dir.starts_with(workspace) || workspace.starts_with(dir) {
            return Err(OverlayError::Dir {
                dir: dir.into(),
                why: format!(
                    "must be outside the workspace {} (the sandbox would see its own upper layer)",
                    workspace.display()
                ),
            });
        }
        // As root the sandbox's host uid must reach upper/ and work/ by path (the mount
        // names them under /.agentcage-oldroot): the directories above are made traversable (0711: not
        // listable), the overlay directory's files stay 0600.
        let mode = if owner.is_some() { 0o711 } else { 0o700 };
        if let Some(parent) = dir.parent() {
            if !parent.exists() {
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(mode)
                    .create(parent)
                    .map_err(io_err("mkdir -p", parent))?;
            }
        }
        match std::fs::DirBuilder::new().mode(mode).create(dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io_err("mkdir", dir)(e)),
        }
        let md = std::fs::symlink_metadata(dir).map_err(io_err("lstat", dir))?;
        if !md.is_dir() {
            return Err(OverlayError::Dir {
                dir: dir.into(),
                why: "not a directory (a symlink is refused)".into(),
            });
        }
        if md.uid() != crate::sys::geteuid() {
            return Err(OverlayError::Dir {
                dir: dir.into(),
                why: format!("owned by uid {}, not by you", md.uid()),
            });
        }
        if md.mode() & 0o7777 != mode {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))
                .map_err(io_err("chmod", dir))?;
        }
        if let Some((uid, _)) = owner {
            if let Some(blocked) = dir
                .ancestors()
                .skip(1)
                .find(|a| std::fs::metadata(a).is_ok_and(|m| m.mode() & 0o001 == 0))
            {
                return Err(OverlayError::Dir {
                    dir: dir.into(),
                    why: format!(
                        "{} is not traversable by others: the sandbox's host uid {uid} could \
                         not reach the layers (chmod o+x it, or choose another --overlay-dir)",
                        blocked.display()
                    ),
                });
            }
        }
        let meta_path = dir.join("meta.json");
        let meta = match read_own(&meta_path) {
            Ok(b) => {
                let m: Meta = serde_json::from_slice(&b).map_err(|e| OverlayError::Dir {
                    dir: dir.into(),
                    why: format!("meta.json: {e}"),
                })?;
                if m.workspace != workspace {
                    return Err(OverlayError::Dir {
                        dir: dir.into(),
                        why: format!(
                            "belongs to the workspace {}, not {}",
                            m.workspace.display(),
                            workspace.display()
                        ),
                    });
                }
                m
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let m = Meta {
                    name: dir
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default(),
                    workspace: workspace.into(),
                    created: now(),
                };
                let tmp = dir.join("meta.json.tmp");
                write_private(&tmp, &serde_json::to_vec_pretty(&m).unwrap_or_default())?;
                std::fs::rename(&tmp, &meta_path).map_err(io_err("rename", &meta_path))?;
                m
            }
            Err(e) => return Err(io_err("read", meta_path)(e)),
        };
        let ws_mode = std::fs::metadata(workspace)
            .map_err(io_err("stat", workspace))?
            .mode()
            & 0o7777;
        for (sub, mode) in [("upper", ws_mode), ("work", 0o700)] {
            let p = dir.join(sub);
            let fresh = match std::fs::DirBuilder::new().mode(0o700).create(&p) {
                Ok(()) => true,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => false,
                Err(e) => return Err(io_err("mkdir", &p)(e)),
            };
            let fd = fsx::open_dir_path(&p).map_err(io_err("open", &p))?;
            if fresh {
                fsx::fchmod(fd.as_fd(), mode).map_err(io_err("chmod", &p))?;
                if let Some((u, g)) = owner {
                    fsx::chown_at(fd.as_fd(), std::ffi::OsStr::new(""), u, g)
                        .map_err(io_err("chown", &p))?;
                }
            }
        }
        Ok(Overlay {
            dir: dir.into(),
            meta,
        })
    }

    /// Opens an existing overlay directory.
    pub fn open(dir: &Path) -> Result<Overlay, OverlayError> {
        let meta_path = dir.join("meta.json");
        let b = read_own(&meta_path).map_err(io_err("read", &meta_path))?;
        let meta: Meta = serde_json::from_slice(&b).map_err(|e| OverlayError::Dir {
            dir: dir.into(),
            why: format!("meta.json: {e}"),
        })?;
        Ok(Overlay {
            dir: dir.into(),
            meta,
        })
    }

    /// The upper layer, opened for reading by fd.
    pub fn upper(&self) -> Result<OwnedFd, OverlayError> {
        let p = self.dir.join("upper");
        fsx::open_dir_path(&p).map_err(io_err("open", p))
    }

    /// The workspace (lower layer), opened by fd.
    pub fn workspace(&self) -> Result<OwnedFd, OverlayError> {
        fsx::open_dir_path(&self.meta.workspace).map_err(io_err("open", &self.meta.workspace))
    }

    /// Takes the overlay for one mount: an exclusive lock on `DIR/lock` (held by the
    /// returned fd: a run keeps it for the run, a session's supervisor for the session), so
    /// two sandboxes never share an upper layer; then readies the work directory for a
    /// `volatile` mount (the marker of the last mount removed, same boot only).
    pub fn take(&self) -> Result<OwnedFd, OverlayError> {
        use std::os::fd::AsRawFd;
        use std::os::unix::fs::OpenOptionsExt;
        let p = self.dir.join("lock");
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&p)
            .map_err(io_err("open", &p))?;
        if let Err(e) = crate::sys::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) {
            let e = io::Error::from_raw_os_error(e.0);
            return Err(if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
                OverlayError::Dir {
                    dir: self.dir.clone(),
                    why: "in use by another run or session (one sandbox per overlay)".into(),
                }
            } else {
                io_err("flock", p)(e)
            });
        }
        self.ready_volatile()?;
        Ok(f.into())
    }

    /// The overlay is mounted `volatile` (no sync of the upper layer's filesystem when the
    /// sandbox ends: that sync is most of what an overlay would add to a run). The kernel
    /// leaves `work/work/incompat/volatile` behind and refuses the next mount while it is
    /// there: a crash of the host could have lost writes of the upper layer. The boot id of
    /// the last mount is kept in `DIR/boot_id`: same boot (no crash since), the marker is
    /// removed; another boot, the mount is refused with what to do.
    ///
    /// On the start-up path: by fd, and every journaled change counts (on a busy disk each
    /// may wait for a journal commit). overlayfs makes what it creates in `work/` mode 0:
    /// rootless, the owner opens each directory up before looking inside; root, who needs
    /// no permission, changes no mode.
    fn ready_volatile(&self) -> Result<(), OverlayError> {
        let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default();
        let recorded = read_own(&self.dir.join("boot_id"))
            .ok()
            .and_then(|b| String::from_utf8(b).ok());
        let same_boot = recorded.as_deref() == Some(boot.as_str());
        let wp = self.dir.join("work");
        let work = fsx::open_dir_path(&wp).map_err(io_err("open", &wp))?;
        let root = crate::sys::geteuid() == 0;
        let ww = opened_up(work.as_fd(), OsStr::new("work"), !root)
            .map_err(io_err("open", wp.join("work")))?;
        let marker = wp.join("work/incompat");
        if let Some(ww) = ww {
            if fsx::lstat_at(ww.as_fd(), OsStr::new("incompat")).is_ok() {
                if !same_boot {
                    return Err(OverlayError::Dir {
                        dir: self.dir.clone(),
                        why: format!(
                            "the host restarted while this overlay was mounted: writes of that \
                             run may be missing from its upper layer (overlayfs' volatile mode). \
                             Review it with `agentcage diff`, then remove the marker to use it \
                             again: chmod -R u+rwx {}; rm -r {}",
                            marker.display(),
                            marker.display()
                        ),
                    });
                }
                remove_tree(ww.as_fd(), OsStr::new("incompat"), !root)
                    .map_err(io_err("remove", &marker))?;
            }
        }
        if !same_boot {
            write_private(&self.dir.join("boot_id"), boot.as_bytes())?;
        }
        Ok(())
    }

    /// Removes the overlay entirely (its directory and layers), by fd: nothing below the
    /// directory is followed (the layers belong to the sandbox's uid), and overlayfs'
    /// mode-0 directories in `work/` are opened up as they come (rootless).
    pub fn remove(self) -> Result<(), OverlayError> {
        let (parent, name) = match (self.dir.parent(), self.dir.file_name()) {
            (Some(p), Some(n)) => (p, n),
            _ => {
                return Err(OverlayError::Dir {
                    dir: self.dir.clone(),
                    why: "not removable (no parent)".into(),
                })
            }
        };
        let p = fsx::open_dir_path(parent).map_err(io_err("open", parent))?;
        remove_tree(p.as_fd(), name, crate::sys::geteuid() != 0)
            .map_err(io_err("remove", &self.dir))
    }
}

/// The directory `name` of `dir` opened for reading (None: absent), its mode opened up to
/// 0700 first when `open_up` (overlayfs creates its work directories mode 0; root needs no
/// such change).
fn opened_up(dir: BorrowedFd<'_>, name: &OsStr, open_up: bool) -> io::Result<Option<OwnedFd>> {
    let st = match fsx::lstat_at(dir, name) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        r => r?,
    };
    if fsx::fmt(st.st_mode) != libc::S_IFDIR {
        return Err(io::Error::from_raw_os_error(libc::ENOTDIR));
    }
    if open_up && st.st_mode & 0o700 != 0o700 {
        fsx::chmod_at(dir, name, 0o700)?;
    }
    fsx::open_subdir(dir, Path::new(name)).map(Some)
}

/// Removes `name` of `dir` and, for a directory, everything below it, by fd (directories
/// opened up as needed when `open_up`): overlayfs' marker tree, a whole overlay, or a tree
/// that `commit` deletes or `discard` drops.
pub(super) fn remove_tree(dir: BorrowedFd<'_>, name: &OsStr, open_up: bool) -> io::Result<()> {
    let st = fsx::lstat_at(dir, name)?;
    if fsx::fmt(st.st_mode) == libc::S_IFDIR {
        if let Some(d) = opened_up(dir, name, open_up)? {
            for n in fsx::entries(d.as_fd())? {
                remove_tree(d.as_fd(), &n, open_up)?;
            }
        }
        fsx::unlink_at(dir, name, true)
    } else {
        fsx::unlink_at(dir, name, false)
    }
}

/// Reads one of the overlay's own files (no symlink followed; O_NOATIME: a read-only
/// command changes no inode of ours, see fsx).
pub(crate) fn read_own(p: &Path) -> io::Result<Vec<u8>> {
    use std::io::Read as _;
    use std::os::unix::fs::OpenOptionsExt;
    let open = |extra: libc::c_int| {
        std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | extra)
            .open(p)
    };
    let mut f = match open(libc::O_NOATIME) {
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => open(0)?,
        r => r?,
    };
    let mut out = Vec::new();
    f.read_to_end(&mut out)?;
    Ok(out)
}

/// Writes `p` (mode 0600, replacing a file, never following a symlink).
pub(crate) fn write_private(p: &Path, data: &[u8]) -> Result<(), OverlayError> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::remove_file(p) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        r => r.map_err(io_err("remove", p))?,
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(p)
        .map_err(io_err("create", p))?;
    f.write_all(data).map_err(io_err("write", p))
}

/// Checks that the overlay's layers are directories (not symlinks).
pub fn check_layers(dir: &Path) -> Result<(), OverlayError> {
    for s in ["upper", "work"] {
        let p = dir.join(s);
        fsx::open_dir_path(&p).map_err(io_err("open", p))?;
    }
    Ok(())
}

/// Checks that `p` can be named in overlayfs' mount options (no `,` `:` `\\`, which the
/// option syntax reserves; no escaping is attempted).
pub fn check_path(p: &Path) -> Result<(), OverlayError> {
    use std::os::unix::ffi::OsStrExt;
    if p.as_os_str()
        .as_bytes()
        .iter()
        .any(|b| matches!(b, b',' | b':' | b'\\'))
    {
        return Err(OverlayError::Dir {
            dir: p.into(),
            why: "contains , : or \\, which overlayfs' mount options cannot carry".into(),
        });
    }
    Ok(())
}

/// The overlays under `root` (sorted by name); unreadable entries are skipped.
pub fn list(root: &Path) -> Vec<Overlay> {
    let mut out: Vec<Overlay> = std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| Overlay::open(&e.path()).ok())
        .collect();
    out.sort_by(|a, b| a.meta.name.cmp(&b.meta.name));
    out
}
