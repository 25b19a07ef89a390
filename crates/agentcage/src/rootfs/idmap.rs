//! Idmapped binds (issue #14): as root, a writable bind (the workspace, an `--rw` path)
//! owned by a uid other than the sandbox's host uid is bound through an idmapped mount, so
//! the agent sees it as its own and what it creates there lands owned by the directory's
//! owner on the host (root's repository stays root's; git keeps working outside).
//!
//! The mapping swaps the owner's ids and the sandbox's host ids and leaves every other id as
//! it is: on disk `owner` is the sandbox's host uid (its inside uid through its user
//! namespace), and a file the sandbox creates with its host uid is written as `owner`.
//!
//! Making an idmapped mount needs CAP_SYS_ADMIN over the filesystem's user namespace (host
//! root) and a user namespace holding the mapping, so the launcher does it:
//! - [`prepare`] (parent, once): per owner, a user namespace with the swap mapping (a
//!   throwaway child's, kept by an fd); a trial idmapped copy of each path, which tells
//!   whether its filesystem can be idmapped (if not: said, and the plain bind of today).
//! - [`PreparedIdmap::open_trees`] (parent, each run, before clone): a detached idmapped copy
//!   of each path (open_tree(OPEN_TREE_CLONE) + mount_setattr(MOUNT_ATTR_IDMAP|NOSUID|NODEV)),
//!   its fd stored where the child (a fork) finds it.
//! - [`attach`] (child, pre-exec): move_mount of that copy onto its place in the new root.
//!
//! Only when the sandbox can leave nothing the host would run with privilege: the caps
//! layer (no CAP_FSETID, CAP_CHOWN, CAP_SETFCAP: no file capability can be written, whatever
//! seccomp cannot see in setxattr's name) and the seccomp layer (set-id mode bits refused on
//! chmod/open/creat/mknod, openat2 ENOSYS) must both be on; the bind is nosuid anyway.
//! Kernel: mount_setattr(2) (MOUNT_ATTR_IDMAP), open_tree(2), move_mount(2),
//! user_namespaces(7).

use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::{AtomicI32, Ordering};

use crate::error::Error;
use crate::policy::{Layer, Policy};
use crate::sys::{self, Errno};

/// Attributes of an idmapped bind (it is writable: nosuid, nodev).
pub(crate) const ATTRS: u64 = sys::MOUNT_ATTR_NOSUID | sys::MOUNT_ATTR_NODEV;

/// Idmapped binds for a root launcher (parent-side input; `None` for unprivileged callers,
/// whose files are their own).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdmapSpec {
    /// The sandbox's host uid and gid: paths owned by another uid are idmapped onto them.
    pub host: (u32, u32),
    /// Why idmapped binds cannot be used for this policy (said for each path that would
    /// need one), or `None`.
    pub refused: Option<&'static str>,
}

/// The idmap input of a root launcher's policy: the sandbox's host ids, and why idmapped
/// binds cannot be used when the policy lets the sandbox set set-id bits or keep
/// capabilities (it could then leave a setuid-root file or a file capability on the host).
pub fn idmap_spec(policy: &Policy) -> IdmapSpec {
    let layers = policy.layers;
    let refused = if !(layers.has(Layer::Caps) && layers.has(Layer::Seccomp)) {
        Some(
            "the profile lets the sandbox keep capabilities or set set-id bits; idmapped binds \
             need the caps and seccomp layers, as in full",
        )
    } else if !sys::mount_setattr_available() {
        Some("no mount_setattr (Linux < 5.12)")
    } else {
        None
    };
    IdmapSpec {
        host: (policy.host_uid, policy.host_gid),
        refused,
    }
}

/// One writable bind made through an idmapped mount.
#[derive(Debug)]
pub(crate) struct Tree {
    /// Host path.
    pub(crate) host: CString,
    /// Its owner (uid, gid) on disk.
    pub(crate) owner: (u32, u32),
    /// Index into [`PreparedIdmap::userns`].
    userns: usize,
    /// Submounts come along (AT_RECURSIVE worked in the trial).
    recursive: bool,
    /// The detached copy of the current run (-1 outside a run): written by the launcher
    /// before clone, read by the child in its copy of memory.
    fd: AtomicI32,
}

/// The idmapped binds of a plan.
#[derive(Debug, Default)]
pub struct PreparedIdmap {
    /// User namespaces holding the mappings (one per owner).
    userns: Vec<((u32, u32), OwnedFd)>,
    pub(crate) trees: Vec<Tree>,
    /// The sandbox's host ids.
    host: (u32, u32),
}

/// What [`plan`] decided for one writable path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Bound through an idmapped mount (index into the trees).
    Idmapped(usize),
    /// Plain bind: owned by the sandbox's host uid already.
    NotNeeded,
    /// Plain bind, said: why no idmapped mount.
    Refused(String),
}

/// The id map lines ("inside outside count") that swap `owner` and `host` and keep every
/// other id (except -1, which cannot be mapped).
pub(crate) fn swap_map(owner: u32, host: u32) -> String {
    if owner == host {
        return format!("0 0 {}\n", u32::MAX);
    }
    let (lo, hi) = (owner.min(host), owner.max(host));
    let mut s = String::new();
    if lo > 0 {
        s += &format!("0 0 {lo}\n");
    }
    s += &format!("{owner} {host} 1\n{host} {owner} 1\n");
    if hi - lo > 1 {
        s += &format!("{} {} {}\n", lo + 1, lo + 1, hi - lo - 1);
    }
    if hi < u32::MAX - 1 {
        s += &format!("{} {} {}\n", hi + 1, hi + 1, u32::MAX - hi - 1);
    }
    s
}

/// A user namespace with the given maps: a throwaway child's (it exited at once: see
/// [`sys::spawn_exited_userns`]), mapped by us (root), kept by an fd on /proc/PID/ns/user.
fn userns_with_maps(uid_map: &str, gid_map: &str) -> Result<OwnedFd, Errno> {
    let pid = sys::spawn_exited_userns()?;
    let io = |e: std::io::Error| Errno(e.raw_os_error().unwrap_or(libc::EIO));
    let res = (|| {
        std::fs::write(format!("/proc/{pid}/uid_map"), uid_map).map_err(io)?;
        std::fs::write(format!("/proc/{pid}/gid_map"), gid_map).map_err(io)?;
        let f = std::fs::File::open(format!("/proc/{pid}/ns/user")).map_err(io)?;
        Ok(OwnedFd::from(f))
    })();
    // A zombie already: reaped without waiting.
    let _ = sys::waitpid(pid, 0);
    res
}

/// An idmapped detached copy of `path` (recursive when `recursive`).
fn idmapped_copy(path: &CString, userns: i32, recursive: bool) -> Result<OwnedFd, Errno> {
    let fd = sys::open_tree_clone_owned(path, recursive)?;
    sys::mount_setattr_idmap(fd.as_raw_fd(), ATTRS, userns, recursive)?;
    Ok(fd)
}

impl PreparedIdmap {
    /// The fds this plan holds for the whole life of its `Prepared` (the mapping user
    /// namespaces): a process that closes every fd it does not know of (a session's
    /// supervisor) must keep these.
    pub(crate) fn held_fds(&self) -> impl Iterator<Item = i32> + '_ {
        self.userns.iter().map(|(_, fd)| fd.as_raw_fd())
    }

    /// Parent side, once per plan: decides for one writable path (absolute, canonical).
    pub(crate) fn plan(&mut self, spec: &IdmapSpec, path: &Path) -> Decision {
        use std::os::unix::fs::MetadataExt;
        let Ok(md) = std::fs::metadata(path) else {
            return Decision::NotNeeded;
        };
        let owner = (md.uid(), md.gid());
        let host = spec.host;
        if owner.0 == host.0 {
            return Decision::NotNeeded;
        }
        if let Some(why) = spec.refused {
            return Decision::Refused(why.to_string());
        }
        self.host = host;
        let Ok(host_path) = CString::new(path.as_os_str().as_bytes()) else {
            return Decision::NotNeeded;
        };
        let userns = match self.userns.iter().position(|(o, _)| *o == owner) {
            Some(i) => i,
            None => {
                match userns_with_maps(&swap_map(owner.0, host.0), &swap_map(owner.1, host.1)) {
                    Ok(fd) => {
                        self.userns.push((owner, fd));
                        self.userns.len() - 1
                    }
                    Err(e) => {
                        return Decision::Refused(format!(
                            "no user namespace for the id mapping ({e}): {}",
                            crate::host::userns_failure_hint(e.0).unwrap_or_default()
                        ))
                    }
                }
            }
        };
        let ns = self.userns[userns].1.as_raw_fd();
        // A trial: does this filesystem (and every submount) support idmapped mounts?
        let recursive = match idmapped_copy(&host_path, ns, true) {
            Ok(_) => true,
            Err(_) => match idmapped_copy(&host_path, ns, false) {
                Ok(_) => false,
                Err(e) => {
                    return Decision::Refused(format!(
                        "its filesystem cannot be idmapped here (mount_setattr MOUNT_ATTR_IDMAP: \
                         {e})"
                    ))
                }
            },
        };
        self.trees.push(Tree {
            host: host_path,
            owner,
            userns,
            recursive,
            fd: AtomicI32::new(-1),
        });
        Decision::Idmapped(self.trees.len() - 1)
    }

    /// The enforcement line of tree `i` (`run -v`).
    pub(crate) fn describe(&self, i: usize) -> String {
        let t = &self.trees[i];
        format!(
            "{} (owned by uid {} gid {}): idmapped bind (nosuid, nodev{}): owned by the \
             sandbox inside, and what it creates there is owned by uid {} gid {} on the host \
             (the sandbox's host uid {} is mapped to them)",
            t.host.to_string_lossy(),
            t.owner.0,
            t.owner.1,
            if t.recursive {
                ""
            } else {
                "; submounts not included: their filesystem cannot be idmapped"
            },
            t.owner.0,
            t.owner.1,
            self.host.0,
        )
    }

    /// Parent side, each run, before clone: a fresh idmapped copy of every path (a detached
    /// copy can be attached once). The returned guard closes them (after clone, the child has
    /// its own fds).
    ///
    /// # Errors
    /// [`Error::Setup`] naming the path.
    pub(crate) fn open_trees(&self) -> Result<RunTrees<'_>, Error> {
        let guard = RunTrees(self);
        for t in &self.trees {
            let ns = self.userns[t.userns].1.as_raw_fd();
            let fd = idmapped_copy(&t.host, ns, t.recursive).map_err(|errno| Error::Setup {
                step: format!(
                    "make an idmapped copy of {} (open_tree, mount_setattr MOUNT_ATTR_IDMAP)",
                    t.host.to_string_lossy()
                ),
                errno,
                hint: None,
            })?;
            // The guard closes it; the child gets its own copy of the fd table at clone.
            t.fd.store(std::os::fd::IntoRawFd::into_raw_fd(fd), Ordering::Relaxed);
        }
        Ok(guard)
    }
}

/// The idmapped copies of one run; closed on drop.
pub(crate) struct RunTrees<'a>(&'a PreparedIdmap);

impl Drop for RunTrees<'_> {
    fn drop(&mut self) {
        for t in &self.0.trees {
            let fd = t.fd.swap(-1, Ordering::Relaxed);
            if fd >= 0 {
                sys::close(fd);
            }
        }
    }
}

/// Child side: attaches this run's idmapped copy of tree `t` on `dst` (a directory of the
/// new root), then closes our copy of its fd.
///
/// Runs in the child after clone: async-signal-safe only.
pub(crate) fn attach(t: &Tree, dst: &std::ffi::CStr) -> Result<(), Errno> {
    let tree = t.fd.load(Ordering::Relaxed);
    if tree < 0 {
        return Err(Errno(libc::EBADF));
    }
    let d = sys::open_path_nofollow(dst)?;
    let r = sys::move_mount_fds(tree, d);
    sys::close(d);
    sys::close(tree);
    r
}

/// The hint of a bind that failed with EACCES: the first directory above the host source of
/// plan entry `index` that the sandbox's host ids (`ids`: uid, gid) cannot search (a mode-700
/// /root), or `None` when it is not that.
pub(crate) fn traverse_hint(
    p: &super::PreparedRootfs,
    index: u32,
    ids: (u32, u32),
) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let src = match p.ops.get(index as usize)? {
        super::Op::Bind { src, .. } | super::Op::PinnedBind { src, .. } => src,
        _ => return None,
    };
    let host = super::host(src);
    let host = Path::new(&host);
    for dir in host
        .ancestors()
        .skip(1)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
    {
        let md = std::fs::metadata(dir).ok()?;
        let mode = md.mode();
        let search = if md.uid() == ids.0 {
            mode & 0o100 != 0
        } else if md.gid() == ids.1 {
            mode & 0o010 != 0
        } else {
            mode & 0o001 != 0
        };
        if !search {
            return Some(format!(
                "{} is mode {:o} (owner uid {}, gid {}): the sandbox's host uid {} cannot search \
                 it to reach {}. Under `full` a writable path of someone else is bound \
                 idmapped and needs no such walk; otherwise give that directory o+x, keep the \
                 path elsewhere, or pick a --host-uid that may search it",
                dir.display(),
                mode & 0o7777,
                md.uid(),
                md.gid(),
                ids.0,
                host.display(),
            ));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swap_maps_cover_every_id_once() {
        assert_eq!(
            swap_map(0, 65534),
            "0 65534 1\n65534 0 1\n1 1 65533\n65535 65535 4294901760\n"
        );
        assert_eq!(
            swap_map(1000, 65534),
            "0 0 1000\n1000 65534 1\n65534 1000 1\n1001 1001 64533\n65535 65535 4294901760\n"
        );
        assert_eq!(swap_map(1, 0), "1 0 1\n0 1 1\n2 2 4294967293\n");
        // Every id but -1 maps, each exactly once on both sides.
        for (o, h) in [(0, 65534), (1000, 65534), (65534, 1000), (5, 6)] {
            let mut total: u64 = 0;
            for l in swap_map(o, h).lines() {
                let v: Vec<u64> = l.split(' ').map(|x| x.parse().unwrap()).collect();
                assert!(v[0] + v[2] <= u32::MAX as u64 && v[1] + v[2] <= u32::MAX as u64);
                total += v[2];
            }
            assert_eq!(total, u32::MAX as u64);
        }
    }
}
