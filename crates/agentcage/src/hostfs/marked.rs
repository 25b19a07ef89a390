//! Marked entries: an empty directory or file the launcher makes in a directory it holds by
//! fd (the protected paths' placeholders, see the CLI's `policy/placeholder.rs`), already
//! marked and with its final mode when it appears under its name, made beside the caller
//! when there are several.
//!
//! Each entry is made under a temporary name (`mkdirat`, or `openat(O_CREAT|O_EXCL|
//! O_NOFOLLOW)`, which never follow a link), marked with an extended attribute (a user xattr
//! needs write permission, so while its mode still allows it; reached through the directory
//! fd's magic link, so nothing on the way can have been swapped), chmod-ed, then renamed into
//! place with `RENAME_NOREPLACE`: a launcher killed half-way never leaves an unmarked entry
//! under the final name, only a temporary one.
//!
//! On an ext4 workspace this is ~5 metadata operations per entry, ~40 us each on our VM, and a
//! run makes up to eleven of them before its clone (issue 19). [`MakeBeside`] makes them in a
//! helper process on the other core (`sys::spawn_helper`: CLONE_VM | CLONE_FILES, raw
//! errno-free system calls) while the caller prepares the sandbox, and [`MakeBeside::finish`]
//! collects them; when the helper got no CPU by then the caller makes them itself. Parent
//! side: everything is allocated before the helper starts, the helper only fills in outcomes.

use std::ffi::{CStr, CString};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;

use crate::sys::{self, beside, Errno};

/// What became of a [`MarkedEntry`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Made {
    /// Not made yet.
    Pending,
    /// Made: it is at its name, marked (where the filesystem has user xattrs), with its mode.
    Made {
        /// `st_dev` of the entry.
        dev: u64,
        /// `st_ino` of the entry.
        ino: u64,
    },
    /// Something appeared under its name meanwhile (`RENAME_NOREPLACE` failed with
    /// `EEXIST`): the temporary entry was removed; look the name up.
    Exists,
    /// Making the temporary entry, the rename or the stat failed with this errno (the
    /// temporary entry was removed).
    Failed(Errno),
}

/// One entry to make: see the module docs.
#[derive(Debug)]
pub struct MarkedEntry {
    dir: Arc<OwnedFd>,
    tmp: CString,
    /// `/proc/self/fd/DIR/TMP`: the temporary entry, reached through the directory's fd.
    tmp_via_fd: CString,
    name: CString,
    is_dir: bool,
    mark: &'static CStr,
    /// The xattr's value.
    value: &'static [u8],
    made: Made,
}

impl MarkedEntry {
    /// An empty directory (`is_dir`, else an empty file) to make as `name` in `dir`, under the
    /// temporary name `tmp` first, marked with the xattr `mark` = `value`, read-only in the end
    /// (0555, a file 0444).
    ///
    /// # Errors
    /// `EINVAL` when a name holds a NUL byte or a `/`.
    pub fn new(
        dir: &Arc<OwnedFd>,
        tmp: &[u8],
        name: &[u8],
        is_dir: bool,
        mark: &'static CStr,
        value: &'static [u8],
    ) -> Result<MarkedEntry, Errno> {
        let plain = |n: &[u8]| {
            if n.is_empty() || n.contains(&b'/') {
                return Err(Errno(libc::EINVAL));
            }
            CString::new(n).map_err(|_| Errno(libc::EINVAL))
        };
        let tmp = plain(tmp)?;
        let mut via = format!("/proc/self/fd/{}/", dir.as_raw_fd()).into_bytes();
        via.extend_from_slice(tmp.as_bytes());
        Ok(MarkedEntry {
            dir: Arc::clone(dir),
            tmp_via_fd: CString::new(via).map_err(|_| Errno(libc::EINVAL))?,
            tmp,
            name: plain(name)?,
            is_dir,
            mark,
            value,
            made: Made::Pending,
        })
    }

    /// What became of it.
    pub fn made(&self) -> Made {
        self.made
    }

    /// Its final name.
    pub fn name(&self) -> &CStr {
        &self.name
    }

    /// The directory it is made in.
    pub fn dir(&self) -> &Arc<OwnedFd> {
        &self.dir
    }

    /// Whether it is a directory (else an empty file).
    pub fn is_dir(&self) -> bool {
        self.is_dir
    }

    /// Makes it now, in the calling process. Raw, errno-free system calls only: a helper
    /// beside the caller runs this too.
    pub fn make(&mut self) {
        let dir = self.dir.as_raw_fd();
        let made = if self.is_dir {
            beside::mkdirat(dir, &self.tmp, 0o700)
        } else {
            beside::openat(
                dir,
                &self.tmp,
                libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_WRONLY | libc::O_CLOEXEC,
                0o600,
            )
            .map(beside::close)
        };
        if let Err(e) = made {
            self.made = Made::Failed(e);
            return;
        }
        // Failure (no user xattrs on this filesystem) is tolerated: such an entry is not
        // recognized as ours by a later run. The mode is cosmetic (the caller binds it
        // read-only).
        let _ = beside::lsetxattr(&self.tmp_via_fd, self.mark, self.value);
        let mode = if self.is_dir { 0o555 } else { 0o444 };
        let _ = beside::fchmodat(dir, &self.tmp, mode);
        if let Err(e) = beside::renameat2(dir, &self.tmp, &self.name, libc::RENAME_NOREPLACE) {
            let flags = if self.is_dir { libc::AT_REMOVEDIR } else { 0 };
            let _ = beside::unlinkat(dir, &self.tmp, flags);
            self.made = if e.0 == libc::EEXIST {
                Made::Exists
            } else {
                Made::Failed(e)
            };
            return;
        }
        self.made = match beside::lstat_at(dir, &self.name) {
            Ok((dev, ino)) => Made::Made { dev, ino },
            Err(e) => Made::Failed(e),
        };
    }
}

/// The helper's stack: a few raw system calls on their arguments.
const STACK: usize = 16 * 1024;

/// Entries being made beside the caller: see the module docs. Dropping it waits for them.
#[derive(Debug)]
pub struct MakeBeside(sys::Batch<MarkedEntry>);

impl MakeBeside {
    /// Starts making `entries` in a helper beside the caller (one entry, or no helper: made
    /// here and now).
    pub fn start(entries: Vec<MarkedEntry>) -> MakeBeside {
        MakeBeside(sys::Batch::start(entries, MarkedEntry::make, STACK))
    }

    /// Waits until every entry is made (or makes those of a helper that never got a CPU) and
    /// returns them, each with its [`Made`].
    pub fn finish(self) -> Vec<MarkedEntry> {
        self.0.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    use std::path::Path;

    fn dir_fd(p: &Path) -> Arc<OwnedFd> {
        let f = std::fs::File::open(p).expect("open dir");
        Arc::new(OwnedFd::from(f))
    }

    fn entry(dir: &Arc<OwnedFd>, tmp: &str, name: &str, is_dir: bool) -> MarkedEntry {
        MarkedEntry::new(
            dir,
            tmp.as_bytes(),
            name.as_bytes(),
            is_dir,
            c"user.agentcage.test",
            b"1",
        )
        .expect("entry")
    }

    fn xattr_of(p: &Path) -> Option<Vec<u8>> {
        use std::os::fd::AsFd;
        let f = std::fs::File::open(p).ok()?;
        sys::fsx::fgetxattr(f.as_fd(), "user.agentcage.test")
    }

    /// Entries made beside: each at its name with its mode, marked where the filesystem takes
    /// user xattrs, its (dev, ino) the entry's; nothing left under a temporary name; an entry
    /// whose name is taken (a symlink: not followed) is `Exists` and leaves nothing; a bad
    /// temporary name that is taken is `Failed` (and what is there stays).
    #[test]
    fn made_beside_marked_and_in_place() {
        let d = std::env::temp_dir().join(format!("ac-marked-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        std::os::unix::fs::symlink("/nonexistent-ac", d.join("taken")).unwrap();
        let fd = dir_fd(&d);
        let names = ["a", "b", "f", "taken"];
        let entries = names
            .iter()
            .enumerate()
            .map(|(i, n)| entry(&fd, &format!(".tmp.{i}"), n, *n != "f"))
            .collect();
        let done = MakeBeside::start(entries).finish();
        let xattrs = xattr_of(&d.join("a")).is_some();
        for e in &done {
            let n = e.name().to_str().unwrap();
            let p = d.join(n);
            if n == "taken" {
                assert_eq!(e.made(), Made::Exists);
                assert!(p.is_symlink());
                continue;
            }
            let m = std::fs::symlink_metadata(&p).unwrap();
            assert_eq!(
                e.made(),
                Made::Made {
                    dev: m.dev(),
                    ino: m.ino()
                }
            );
            assert_eq!(m.is_dir(), n != "f");
            assert_eq!(
                m.permissions().mode() & 0o777,
                if n == "f" { 0o444 } else { 0o555 }
            );
            let want = xattrs.then_some(&b"1"[..]);
            assert_eq!(xattr_of(&p).as_deref(), want, "{n}");
        }
        let mut left: Vec<String> = std::fs::read_dir(&d)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(left, ["a", "b", "f", "taken"], "no temporary entry left");
        // A taken temporary name: the error; what is there stays, nothing is made.
        std::fs::write(d.join(".tmp.x"), "user's").unwrap();
        let mut e = entry(&fd, ".tmp.x", "x", true);
        e.make();
        assert_eq!(e.made(), Made::Failed(Errno(libc::EEXIST)));
        assert_eq!(std::fs::read_to_string(d.join(".tmp.x")).unwrap(), "user's");
        assert!(!d.join("x").exists());
        std::fs::set_permissions(d.join("a"), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn names_must_be_plain() {
        let fd = dir_fd(Path::new("/"));
        for (tmp, name) in [("a/b", "c"), ("t", ""), ("t", "x/y"), ("t\0", "x")] {
            assert!(
                MarkedEntry::new(&fd, tmp.as_bytes(), name.as_bytes(), true, c"user.x", b"1")
                    .is_err()
            );
        }
    }
}
