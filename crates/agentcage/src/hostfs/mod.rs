//! The launcher's own files on the host: what it writes after a run (`--json-report`) and
//! where the files it reads before one (policy files) really are.
//!
//! The sandbox can write its workspace and `--rw` paths, so anything there may have been
//! prepared by the agent: a symlink to `~/.bashrc` or `/etc/shadow` where the report goes, a
//! FIFO that blocks an `open`, a hard link to another file, a symlinked directory on the way.
//! The rule for every host-side write of the launcher:
//! - the target's directory is resolved and opened (`O_PATH`, one `O_NOFOLLOW` step per
//!   component) *before* the sandbox starts; a symlink on the way that lies inside a tree the
//!   sandbox can write is refused (a previous run could have planted it);
//! - after the run the file is created exclusively (`O_CREAT|O_EXCL|O_NOFOLLOW`, random name)
//!   in that directory fd, written, and `renameat`ed over the final name: whatever the agent
//!   left at the name (symlink, FIFO, hard link) is replaced, never followed or opened; a
//!   directory there is an error.
//!
//! [`trace`] resolves a path like the kernel does but records every directory entry the lookup
//! passes through (symlinks included), so a caller can tell whether any of them lies in a
//! sandbox-writable tree (the CLI's policy-file trust check uses it too).
//!
//! Parent side only (it allocates); the `*at` calls are in `sys::at`.

use std::collections::VecDeque;
use std::ffi::{CString, OsString};
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path, PathBuf};

use crate::sys::{self, Errno};

mod marked;
pub use marked::{Made, MakeBeside, MarkedEntry};

/// Symlinks followed before a lookup fails with ELOOP (the kernel's limit).
const MAX_LINKS: usize = 40;

/// One directory entry a lookup went through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Where the entry is: its directory's real path joined with its name.
    pub location: PathBuf,
    /// It was a symlink (and was followed).
    pub symlink: bool,
}

/// A path resolved by [`trace`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Traced {
    /// The real path (no symlinks, no `.` or `..`).
    pub real: PathBuf,
    /// Every entry looked up on the way, in order (the last one is `real` itself unless a
    /// symlink was followed last).
    pub entries: Vec<Entry>,
}

/// Resolves the absolute path `path`, following symlinks, and records every entry looked up.
///
/// # Errors
/// A component is missing or not a directory, a symlink cannot be read, more than 40
/// symlinks, or `path` is relative.
pub fn trace(path: &Path) -> io::Result<Traced> {
    if !path.is_absolute() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{}: not an absolute path", path.display()),
        ));
    }
    let mut pending: VecDeque<OsString> = VecDeque::new();
    push_front(&mut pending, path);
    let mut real = PathBuf::from("/");
    let mut entries = Vec::new();
    let mut links = 0;
    while let Some(c) = pending.pop_front() {
        if c == ".." {
            // `real` has no symlinks, so its parent is the lexical one.
            real.pop();
            continue;
        }
        let location = real.join(&c);
        let md = std::fs::symlink_metadata(&location)?;
        let symlink = md.file_type().is_symlink();
        entries.push(Entry {
            location: location.clone(),
            symlink,
        });
        if symlink {
            links += 1;
            if links > MAX_LINKS {
                return Err(io::Error::from_raw_os_error(libc::ELOOP));
            }
            let target = std::fs::read_link(&location)?;
            if target.is_absolute() {
                real = PathBuf::from("/");
            }
            push_front(&mut pending, &target);
        } else {
            real = location;
        }
    }
    Ok(Traced { real, entries })
}

/// Puts the components of `p` (`..` kept as `..`, `.` and `/` dropped) before `q`'s.
fn push_front(q: &mut VecDeque<OsString>, p: &Path) {
    let comps: Vec<OsString> = p
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
        })
        .collect();
    for c in comps.into_iter().rev() {
        q.push_front(c);
    }
}

/// The first of `roots` (real paths of trees the sandbox can write) that `location` lies
/// strictly inside: an entry there can be created, replaced or renamed by the sandbox.
pub fn writable_root<'a>(location: &Path, roots: &'a [PathBuf]) -> Option<&'a Path> {
    roots
        .iter()
        .find(|r| location != r.as_path() && location.starts_with(r))
        .map(PathBuf::as_path)
}

/// Errors of [`HostFile`].
#[derive(Debug, thiserror::Error)]
pub enum HostFsError {
    /// The path has no file name (`/`, `..`, or a trailing `/.`).
    #[error("{}: not a file name", path.display())]
    NoName {
        /// The path as given.
        path: PathBuf,
    },
    /// Resolving the directory failed.
    #[error("resolve the directory of {}", path.display())]
    Resolve {
        /// The path as given.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A symlink on the way lies in a tree the sandbox can write.
    #[error(
        "{}: the path goes through the symlink {}, inside {}, which the sandbox can write (a previous run could have planted it): refused",
        path.display(), link.display(), root.display()
    )]
    PlantedSymlink {
        /// The path as given.
        path: PathBuf,
        /// The symlink.
        link: PathBuf,
        /// The writable tree it is in.
        root: PathBuf,
    },
    /// Something other than a regular file is at the path before the run (a symlink such as
    /// `/dev/stdout`, a FIFO, a device, a directory): never replaced nor written through.
    #[error(
        "{}: not a regular file ({kind}): the report replaces a regular file or creates a new one",
        path.display()
    )]
    NotRegular {
        /// The path as given.
        path: PathBuf,
        /// What is there.
        kind: &'static str,
    },
    /// A log to append to is not a regular file with one name.
    #[error(
        "{}: {kind}: a log is appended to a regular file with a single name, or created",
        path.display()
    )]
    NotAppendable {
        /// The path as given.
        path: PathBuf,
        /// What is there.
        kind: &'static str,
    },
    /// Opening a directory on the way failed (`ELOOP`: it was swapped for a symlink).
    #[error("open the directory {} (no symlinks followed)", dir.display())]
    OpenDir {
        /// The directory.
        dir: PathBuf,
        /// The errno.
        #[source]
        errno: Errno,
    },
    /// Creating the temporary file failed.
    #[error("create a temporary file in {}", dir.display())]
    Create {
        /// The directory.
        dir: PathBuf,
        /// The errno.
        #[source]
        errno: Errno,
    },
    /// Writing the temporary file failed.
    #[error("write a temporary file in {}", dir.display())]
    Write {
        /// The directory.
        dir: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Renaming it over the final name failed (`EISDIR`: a directory is there).
    #[error("rename the temporary file over {}", path.display())]
    Rename {
        /// The final path.
        path: PathBuf,
        /// The errno.
        #[source]
        errno: Errno,
    },
}

/// A file the launcher will write on the host, its directory opened before the sandbox runs.
/// See the module docs for the rule it implements.
#[derive(Debug)]
pub struct HostFile {
    /// The directory, `O_PATH`, close-on-exec.
    dir: OwnedFd,
    /// The directory's real path (messages only).
    dir_path: PathBuf,
    /// The final name in `dir`.
    name: CString,
    /// The path as given (messages only).
    path: PathBuf,
}

impl HostFile {
    /// Resolves and opens the directory of the absolute path `path`. `writable` are the real
    /// paths of the trees the sandbox can write (workspace, `--rw`): a symlink inside one of
    /// them on the way to the directory is refused.
    ///
    /// # Errors
    /// See [`HostFsError`].
    pub fn prepare(path: &Path, writable: &[PathBuf]) -> Result<HostFile, HostFsError> {
        let no_name = || HostFsError::NoName {
            path: path.to_path_buf(),
        };
        let os_name = match path.components().next_back() {
            Some(Component::Normal(n)) => n,
            _ => return Err(no_name()),
        };
        let name = CString::new(os_name.as_bytes()).map_err(|_| no_name())?;
        let parent = path.parent().ok_or_else(no_name)?;
        let traced = trace(parent).map_err(|source| HostFsError::Resolve {
            path: path.to_path_buf(),
            source,
        })?;
        for e in traced.entries.iter().filter(|e| e.symlink) {
            if let Some(root) = writable_root(&e.location, writable) {
                return Err(HostFsError::PlantedSymlink {
                    path: path.to_path_buf(),
                    link: e.location.clone(),
                    root: root.to_path_buf(),
                });
            }
        }
        let dir = open_dir_nofollow(&traced.real)?;
        // What is at the name now is the caller's (the sandbox has not run yet): only a regular
        // file is replaced. What the sandbox puts there later is replaced whatever it is.
        if let Ok(md) = std::fs::symlink_metadata(traced.real.join(os_name)) {
            let ft = md.file_type();
            if !ft.is_file() {
                use std::os::unix::fs::FileTypeExt;
                let kind = if ft.is_symlink() {
                    "a symlink"
                } else if ft.is_dir() {
                    "a directory"
                } else if ft.is_fifo() {
                    "a FIFO"
                } else if ft.is_char_device() || ft.is_block_device() {
                    "a device"
                } else {
                    "a socket"
                };
                return Err(HostFsError::NotRegular {
                    path: path.to_path_buf(),
                    kind,
                });
            }
        }
        Ok(HostFile {
            dir,
            dir_path: traced.real,
            name,
            path: path.to_path_buf(),
        })
    }

    /// The directory's real path, symlinks resolved.
    pub fn dir_path(&self) -> &Path {
        &self.dir_path
    }

    /// Opens the file for appending (`--net-log`), creating it (mode 0644 minus the umask):
    /// never through a symlink (`O_NOFOLLOW`), never a FIFO or device (`O_NONBLOCK` for the
    /// open, then checked), never a file with other names (hard links). Done before the run;
    /// the launcher writes through this fd only.
    ///
    /// # Errors
    /// [`HostFsError::Create`] with the errno; [`HostFsError::NotRegular`] for anything but a
    /// regular file with one link.
    pub fn open_append(&self) -> Result<File, HostFsError> {
        use std::os::unix::fs::MetadataExt;
        let fd = sys::at::openat(
            self.dir.as_fd(),
            &self.name,
            libc::O_WRONLY | libc::O_APPEND | libc::O_CREAT | libc::O_NOFOLLOW | libc::O_NONBLOCK,
            0o644,
        )
        .map_err(|errno| HostFsError::Create {
            dir: self.dir_path.clone(),
            errno,
        })?;
        let f = File::from(fd);
        let md = f.metadata().map_err(|source| HostFsError::Write {
            dir: self.dir_path.clone(),
            source,
        })?;
        if !md.file_type().is_file() || md.nlink() > 1 {
            return Err(HostFsError::NotAppendable {
                path: self.path.clone(),
                kind: if md.file_type().is_file() {
                    "a file with several hard links"
                } else {
                    "not a regular file"
                },
            });
        }
        sys::clear_nonblock(f.as_raw_fd()).map_err(|errno| HostFsError::Create {
            dir: self.dir_path.clone(),
            errno,
        })?;
        Ok(f)
    }

    /// The directory fd's number (it must never reach the sandbox).
    pub fn dir_fd(&self) -> i32 {
        self.dir.as_raw_fd()
    }

    /// Writes `bytes` as the file: a new file (mode 0644 minus the umask) created exclusively
    /// in the directory, then renamed over the final name.
    ///
    /// # Errors
    /// See [`HostFsError`]; the temporary file is removed on failure.
    pub fn write(&self, bytes: &[u8]) -> Result<(), HostFsError> {
        let (tmp, fd) = self.create_temp()?;
        let dir = self.dir.as_fd();
        let mut f = File::from(fd);
        let written = f.write_all(bytes).and_then(|()| f.sync_all());
        drop(f);
        if let Err(source) = written {
            let _ = sys::at::unlinkat(dir, &tmp);
            return Err(HostFsError::Write {
                dir: self.dir_path.clone(),
                source,
            });
        }
        sys::at::renameat(dir, &tmp, &self.name).map_err(|errno| {
            let _ = sys::at::unlinkat(dir, &tmp);
            HostFsError::Rename {
                path: self.path.clone(),
                errno,
            }
        })
    }

    /// A new file with an unpredictable name, created exclusively (never through a symlink).
    fn create_temp(&self) -> Result<(CString, OwnedFd), HostFsError> {
        use std::hash::{BuildHasher, Hasher};
        let mut last = Errno(libc::EEXIST);
        for i in 0..16u32 {
            // RandomState is keyed randomly per process; mixing in the attempt varies it.
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u32(i);
            let tmp = CString::new(format!(
                ".agentcage-{}-{:016x}.tmp",
                std::process::id(),
                h.finish()
            ))
            .expect("no NUL in a formatted name");
            match sys::at::openat(
                self.dir.as_fd(),
                &tmp,
                libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW,
                0o644,
            ) {
                Ok(fd) => return Ok((tmp, fd)),
                Err(e) if e.0 == libc::EEXIST => last = e,
                Err(errno) => {
                    return Err(HostFsError::Create {
                        dir: self.dir_path.clone(),
                        errno,
                    })
                }
            }
        }
        Err(HostFsError::Create {
            dir: self.dir_path.clone(),
            errno: last,
        })
    }
}

/// Opens the real (symlink-free) directory `real` with `O_PATH`, one component at a time with
/// `O_NOFOLLOW`: a component swapped for a symlink since [`trace`] fails with ELOOP/ENOTDIR.
fn open_dir_nofollow(real: &Path) -> Result<OwnedFd, HostFsError> {
    let err = |errno: Errno| HostFsError::OpenDir {
        dir: real.to_path_buf(),
        errno,
    };
    let root = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open("/")
        .map_err(|e| err(Errno(e.raw_os_error().unwrap_or(libc::EIO))))?;
    let mut dir: OwnedFd = root.into();
    for c in real.components() {
        let Component::Normal(n) = c else { continue };
        let name = CString::new(n.as_bytes()).map_err(|_| err(Errno(libc::EINVAL)))?;
        dir = sys::at::openat(
            dir.as_fd(),
            &name,
            libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW,
            0,
        )
        .map_err(err)?;
    }
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn tmpdir(tag: &str) -> PathBuf {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let d =
            std::env::temp_dir().join(format!("agentcage-hostfs-{tag}-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d.canonicalize().unwrap()
    }

    #[test]
    fn trace_records_symlinks() {
        let d = tmpdir("trace");
        std::fs::create_dir_all(d.join("real/sub")).unwrap();
        std::fs::create_dir_all(d.join("ws")).unwrap();
        symlink(d.join("real"), d.join("ws/link")).unwrap();
        symlink("../ws/link/sub", d.join("real/rel")).unwrap();
        let t = trace(&d.join("ws/link/rel/./")).unwrap();
        assert_eq!(t.real, d.join("real/sub"));
        let links: Vec<&Path> = t
            .entries
            .iter()
            .filter(|e| e.symlink)
            .map(|e| e.location.as_path())
            .collect();
        // Followed twice: once from the given path, once from the relative target.
        assert_eq!(
            links,
            [d.join("ws/link"), d.join("real/rel"), d.join("ws/link")]
        );
        let roots = [d.join("ws")];
        assert_eq!(
            writable_root(&d.join("ws/link"), &roots),
            Some(roots[0].as_path())
        );
        assert_eq!(writable_root(&d.join("ws"), &roots), None);
        assert_eq!(writable_root(&d.join("wsx"), &roots), None);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn write_replaces_without_following() {
        let d = tmpdir("write");
        let victim = d.join("victim");
        std::fs::write(&victim, b"keep").unwrap();
        let hf = HostFile::prepare(&d.join("out"), &[]).unwrap();
        // Planted during the run.
        symlink(&victim, d.join("out")).unwrap();
        hf.write(b"report").unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"keep");
        assert_eq!(std::fs::read(d.join("out")).unwrap(), b"report");
        assert!(std::fs::symlink_metadata(d.join("out")).unwrap().is_file());
        let hf = HostFile::prepare(&d.join("dir"), &[]).unwrap();
        std::fs::create_dir(d.join("dir")).unwrap();
        assert!(matches!(hf.write(b"x"), Err(HostFsError::Rename { .. })));
        // Before the run, only a regular file (or nothing) is accepted at the name.
        assert!(HostFile::prepare(&d.join("out"), &[]).is_ok());
        for bad in ["dir", "link"] {
            if bad == "link" {
                symlink("/dev/null", d.join("link")).unwrap();
            }
            let r = HostFile::prepare(&d.join(bad), &[]);
            assert!(matches!(r, Err(HostFsError::NotRegular { .. })), "{r:?}");
        }
        // No temporary file left behind.
        let left: Vec<_> = std::fs::read_dir(&d)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(left.is_empty(), "{left:?}");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn planted_directory_symlink_refused() {
        let d = tmpdir("planted");
        std::fs::create_dir_all(d.join("ws")).unwrap();
        std::fs::create_dir_all(d.join("elsewhere")).unwrap();
        symlink(d.join("elsewhere"), d.join("ws/out")).unwrap();
        let r = HostFile::prepare(&d.join("ws/out/report.json"), &[d.join("ws")]);
        assert!(
            matches!(r, Err(HostFsError::PlantedSymlink { .. })),
            "{r:?}"
        );
        // Outside any writable tree the same symlink is the user's own: followed.
        assert!(HostFile::prepare(&d.join("ws/out/report.json"), &[]).is_ok());
        std::fs::remove_dir_all(&d).unwrap();
    }
}
