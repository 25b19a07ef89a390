//! Placeholders for default protected paths that do not exist at start (issue #15).
//!
//! A read-only bind needs something to bind on: a protected path that does not exist
//! (`.git/hooks` in a repository without hooks, `.envrc`, `.claude`) could otherwise be created
//! by the sandbox, and run later outside it. Before the run, the launcher creates an empty
//! placeholder on the *first missing component* (an empty directory, mode 0555; an empty file,
//! mode 0444, for `.git/config`, see [`FILE_DEFAULTS`]), and binds it read-only like any protected path (ancestors pinned): the
//! sandbox can neither write into it nor rename, remove or replace it (EBUSY, EROFS). After
//! the run the placeholder is removed again when it is still the inode we made and still
//! empty, so the host tree looks as before. A missing `.git` gets one placeholder directory:
//! the sandbox cannot `git init` at the workspace root (unprotect the `.git/...` defaults, or
//! create the repository first).
//!
//! Everything is done by fd: the writable root is opened, each existing component is opened
//! with `O_NOFOLLOW` (a symlink or a file on the way means the path cannot exist as named: no
//! placeholder, the post-run check reports it), and the placeholder is made with `mkdirat` or
//! `openat(O_CREAT|O_EXCL|O_NOFOLLOW)`, which never follow a link the sandbox planted, under a
//! temporary name, marked, then renamed into place with `RENAME_NOREPLACE` (see
//! [`make_marked`]: a killed launcher never leaves an unmarked entry under a protected name).
//! `.git/commondir` gets none: git refuses an empty one (it stays on the post-run check).

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use super::protect::DEFAULT_PROTECTED;

/// Default protected paths whose placeholder is an empty file; every other one gets an empty
/// directory, `.envrc`, `.gitmodules` and `.mcp.json` included: git lists an empty file as
/// untracked (and `git add -A` inside would commit it), but never an empty directory, and a
/// directory there is just as impossible to write. Git refuses a directory as its config.
const FILE_DEFAULTS: &[&str] = &[".git/config"];

/// Whether the default protected path `rel` (relative to its root) is a directory; `None`
/// when `rel` is not a default (no placeholder for it).
fn default_is_dir(rel: &Path) -> Option<bool> {
    let s = rel.to_str()?;
    if DEFAULT_PROTECTED.contains(&s) {
        return Some(!FILE_DEFAULTS.contains(&s));
    }
    // An expanded submodule entry: .git/modules/NAME.../{hooks,config,info}.
    if s.starts_with(".git/modules/") {
        return match rel.file_name()?.to_str()? {
            "hooks" | "info" => Some(true),
            "config" => Some(false),
            _ => None,
        };
    }
    None
}

/// One placeholder made by [`create`].
#[derive(Debug)]
pub struct Placeholder {
    /// Host path of the placeholder (bound read-only at the same path inside).
    pub path: PathBuf,
    parent: OwnedFd,
    name: CString,
    is_dir: bool,
    dev: u64,
    ino: u64,
}

fn cstr(b: &[u8]) -> std::io::Result<CString> {
    CString::new(b).map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))
}

fn open_dir(dirfd: i32, name: &CString) -> std::io::Result<OwnedFd> {
    // SAFETY: plain syscall on a valid fd and a NUL-terminated name; the fd is owned below.
    let fd = unsafe {
        libc::openat(
            dirfd,
            name.as_ptr(),
            libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fd was just returned by openat and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn stat_at(dirfd: i32, name: &CString) -> std::io::Result<libc::stat> {
    // SAFETY: zeroed stat is a valid out-buffer for fstatat.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: valid fd, NUL-terminated name, st is writable.
    let r = unsafe { libc::fstatat(dirfd, name.as_ptr(), &mut st, libc::AT_SYMLINK_NOFOLLOW) };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(st)
}

/// The extended attribute that marks a placeholder, so that another run (a concurrent one,
/// or the next one after a launcher was killed) recognizes it and removes it when it is the
/// last run using the root. Where the filesystem has no user xattrs, such a leftover stays.
const MARK: &[u8] = b"user.agentcage.placeholder\0";

/// Whether the entry at the `O_PATH` fd `fd` carries [`MARK`].
fn marked(fd: i32) -> bool {
    let p = format!("/proc/self/fd/{fd}\0");
    let mut buf = [0u8; 8];
    // SAFETY: NUL-terminated strings and a writable buffer of the given size.
    let n = unsafe {
        libc::getxattr(
            p.as_ptr().cast(),
            MARK.as_ptr().cast(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    n >= 0
}

fn mark(fd: i32) {
    let p = format!("/proc/self/fd/{fd}\0");
    // SAFETY: NUL-terminated strings and a one-byte value. Failure (no user xattrs) is
    // tolerated: see MARK.
    unsafe {
        libc::setxattr(
            p.as_ptr().cast(),
            MARK.as_ptr().cast(),
            b"1".as_ptr().cast(),
            1,
            0,
        );
    }
}

fn open_path(dirfd: i32, name: &CString) -> std::io::Result<OwnedFd> {
    // SAFETY: plain syscall on a valid fd and a NUL-terminated name; the fd is owned below.
    let fd = unsafe {
        libc::openat(
            dirfd,
            name.as_ptr(),
            libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fd was just returned by openat and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// What [`create`] found or made for one path.
#[derive(Debug)]
pub enum Outcome {
    /// A placeholder on its first missing component (made now, or a marked one already
    /// there: another run's, or one a killed launcher left).
    Placeholder(Placeholder),
    /// It exists (as a real entry): bind it read-only like any protected path.
    Exists(PathBuf),
    /// Not a default, or it cannot exist as named (a file or a symlink on the way).
    Nothing,
}

/// Makes (or finds) the placeholder for the default protected path `path` below the writable
/// root `root` (canonical), walking by fd. `Err`: the placeholder could not be made (the path
/// stays unprotected and on the post-run check).
pub fn create(root: &Path, path: &Path) -> std::io::Result<Outcome> {
    let Ok(rel) = path.strip_prefix(root) else {
        return Ok(Outcome::Nothing);
    };
    let Some(leaf_is_dir) = default_is_dir(rel) else {
        return Ok(Outcome::Nothing);
    };
    let names: Vec<CString> = rel
        .components()
        .map(|c| match c {
            Component::Normal(n) => cstr(n.as_bytes()),
            _ => Err(std::io::Error::from_raw_os_error(libc::EINVAL)),
        })
        .collect::<Result<_, _>>()?;
    let root_c = cstr(root.as_os_str().as_bytes())?;
    let mut dir = open_dir(libc::AT_FDCWD, &root_c)?;
    let mut cur = root.to_path_buf();
    let mut i = 0;
    while i < names.len() {
        let name = &names[i];
        let last = i + 1 == names.len();
        let is_dir = !last || leaf_is_dir;
        match stat_at(dir.as_raw_fd(), name) {
            Ok(st) => {
                let fd = open_path(dir.as_raw_fd(), name)?;
                let fmt = st.st_mode & libc::S_IFMT;
                cur.push(std::ffi::OsStr::from_bytes(name.as_bytes()));
                if (fmt == libc::S_IFDIR || fmt == libc::S_IFREG) && marked(fd.as_raw_fd()) {
                    return Ok(Outcome::Placeholder(Placeholder {
                        path: cur,
                        parent: dir,
                        name: name.clone(),
                        is_dir: fmt == libc::S_IFDIR,
                        dev: st.st_dev,
                        ino: st.st_ino,
                    }));
                }
                if last {
                    return Ok(Outcome::Exists(cur));
                }
                if fmt != libc::S_IFDIR {
                    // A file (`.git` of a worktree) or a symlink on the way: the path cannot
                    // exist as named (a symlink there is refused by the protected-path checks).
                    return Ok(Outcome::Nothing);
                }
                dir = open_dir(dir.as_raw_fd(), name)?;
                i += 1;
                continue;
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
            Err(e) => return Err(e),
        }
        match make_marked(&dir, name, is_dir)? {
            // Another run made it in the meantime: look again (it is marked).
            None => continue,
            Some(st) => {
                cur.push(std::ffi::OsStr::from_bytes(name.as_bytes()));
                return Ok(Outcome::Placeholder(Placeholder {
                    path: cur,
                    parent: dir,
                    name: name.clone(),
                    is_dir,
                    dev: st.st_dev,
                    ino: st.st_ino,
                }));
            }
        }
    }
    Ok(Outcome::Nothing)
}

/// Prefix of the temporary name a placeholder is made under before it is renamed into place.
const TEMP_PREFIX: &str = ".agentcage-placeholder.";

/// Makes the placeholder `name` in `dir`, already marked and read-only when it appears under
/// its name: it is made under a temporary name, marked (a user xattr needs write permission,
/// so while its mode still allows it), chmod-ed, then renamed into place with
/// `RENAME_NOREPLACE`. A launcher killed half-way therefore never leaves an unmarked entry
/// under a protected name (a later run would take it for the user's own and walk into it),
/// only a marked temporary one, which [`Placeholders::finish`] sweeps. `Ok(None)`: the name
/// appeared meanwhile (a concurrent run made it): the caller looks again.
fn make_marked(dir: &OwnedFd, name: &CString, is_dir: bool) -> std::io::Result<Option<libc::stat>> {
    static SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = cstr(format!("{TEMP_PREFIX}{}.{seq}", std::process::id()).as_bytes())?;
    let dfd = dir.as_raw_fd();
    // SAFETY: valid fd and NUL-terminated name; plain syscalls.
    let r = unsafe {
        if is_dir {
            libc::mkdirat(dfd, tmp.as_ptr(), 0o700)
        } else {
            let fd = libc::openat(
                dfd,
                tmp.as_ptr(),
                libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_WRONLY | libc::O_CLOEXEC,
                0o600,
            );
            if fd >= 0 {
                libc::close(fd);
            }
            fd
        }
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let undo = |e: std::io::Error| {
        let flags = if is_dir { libc::AT_REMOVEDIR } else { 0 };
        // SAFETY: valid fd and NUL-terminated name.
        unsafe { libc::unlinkat(dfd, tmp.as_ptr(), flags) };
        e
    };
    let fd = open_path(dfd, &tmp).map_err(undo)?;
    mark(fd.as_raw_fd());
    drop(fd);
    let mode = if is_dir { 0o555 } else { 0o444 };
    // SAFETY: valid fd and NUL-terminated name. The mode is cosmetic: the read-only bind is
    // the protection.
    unsafe { libc::fchmodat(dfd, tmp.as_ptr(), mode, 0) };
    // SAFETY: valid fds and NUL-terminated names.
    let r = unsafe {
        libc::renameat2(
            dfd,
            tmp.as_ptr(),
            dfd,
            name.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    if r < 0 {
        let e = std::io::Error::last_os_error();
        let raced = e.raw_os_error() == Some(libc::EEXIST);
        let e = undo(e);
        return if raced { Ok(None) } else { Err(e) };
    }
    stat_at(dfd, name).map(Some)
}

/// Removes the empty temporary entries ([`TEMP_PREFIX`]) that a killed launcher left in `dir`
/// (a writable root, or its `.git`): marked or not (it may have died before marking). Only
/// called while no other run uses the root; a non-empty one is never removed.
fn sweep_temps(dir: i32) {
    // SAFETY: dup of a valid fd, owned by the ReadDir-like loop below.
    let d = unsafe { libc::fdopendir(libc::fcntl(dir, libc::F_DUPFD_CLOEXEC, 0)) };
    if d.is_null() {
        return;
    }
    let mut stale = Vec::new();
    loop {
        // SAFETY: d is a valid DIR*; the entry is read before the next call.
        let ent = unsafe { libc::readdir64(d) };
        if ent.is_null() {
            break;
        }
        // SAFETY: d_name is NUL-terminated.
        let n = unsafe { std::ffi::CStr::from_ptr((*ent).d_name.as_ptr()) };
        if n.to_bytes().starts_with(TEMP_PREFIX.as_bytes()) {
            stale.push(n.to_owned());
        }
    }
    // SAFETY: d came from fdopendir and is closed once.
    unsafe { libc::closedir(d) };
    for n in stale {
        let Ok(st) = stat_at(dir, &n) else { continue };
        let is_dir = st.st_mode & libc::S_IFMT == libc::S_IFDIR;
        if !is_dir && (st.st_mode & libc::S_IFMT != libc::S_IFREG || st.st_size != 0) {
            continue;
        }
        let flags = if is_dir { libc::AT_REMOVEDIR } else { 0 };
        // SAFETY: valid fd and NUL-terminated name; a non-empty directory fails (ENOTEMPTY).
        unsafe { libc::unlinkat(dir, n.as_ptr(), flags) };
    }
}

impl Placeholder {
    /// Removes the placeholder if it is still the inode we made (or found) and still empty;
    /// otherwise says why it stays (the caller warns).
    pub fn remove(&self) -> Result<(), String> {
        let fd = self.parent.as_raw_fd();
        let st = stat_at(fd, &self.name).map_err(|e| e.to_string())?;
        if st.st_dev != self.dev || st.st_ino != self.ino {
            return Err("it was replaced during the run".into());
        }
        if !self.is_dir && st.st_size != 0 {
            return Err("it is not empty".into());
        }
        let flags = if self.is_dir { libc::AT_REMOVEDIR } else { 0 };
        // SAFETY: valid fd and NUL-terminated name.
        if unsafe { libc::unlinkat(fd, self.name.as_ptr(), flags) } < 0 {
            return Err(std::io::Error::last_os_error().to_string());
        }
        Ok(())
    }
}

/// The placeholders of one run and the shared locks on their writable roots.
///
/// Every run that may make placeholders holds a shared `flock` on each writable root (the
/// workspace, the `rw` binds) from before it looks at its protected paths until after its
/// command ended; placeholders are removed only by a run that can upgrade every lock to an
/// exclusive one, i.e. when no other run uses the root: a concurrent run never loses a
/// placeholder it binds. A run that cannot (another one is still running) leaves them to the
/// last one, which recognizes them by [`MARK`].
#[derive(Debug, Default)]
pub struct Placeholders {
    /// The placeholders bound in this run.
    pub made: Vec<Placeholder>,
    locks: Vec<OwnedFd>,
}

/// A path left unprotected, and why when a placeholder could not be made.
pub type Left = (PathBuf, Option<String>);

/// Locks `roots` (shared) and makes or finds the placeholders for the default protected
/// paths `paths` (the missing ones and the ones that existed when the policy was resolved:
/// another run's placeholder may be gone since). Returns them, the paths that exist now (to
/// bind read-only) and the ones that stay unprotected, with why for the ones that failed.
pub fn create_all(roots: &[PathBuf], paths: &[PathBuf]) -> (Placeholders, Vec<PathBuf>, Vec<Left>) {
    let mut out = Placeholders::default();
    for r in roots {
        let Ok(c) = cstr(r.as_os_str().as_bytes()) else {
            continue;
        };
        // SAFETY: NUL-terminated path; the fd is owned below.
        let fd = unsafe {
            libc::open(
                c.as_ptr(),
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
            )
        };
        if fd >= 0 {
            // SAFETY: fd was just returned by open.
            let fd = unsafe { OwnedFd::from_raw_fd(fd) };
            // SAFETY: valid fd. Blocks only while another run removes its placeholders.
            unsafe { libc::flock(fd.as_raw_fd(), libc::LOCK_SH) };
            out.locks.push(fd);
        }
    }
    let mut exists = Vec::new();
    let mut left = Vec::new();
    let mut paths = paths.to_vec();
    paths.sort();
    for m in paths {
        if out.made.iter().any(|p| m.starts_with(&p.path)) {
            continue;
        }
        // The deepest root that holds it.
        let Some(root) = roots
            .iter()
            .filter(|r| m.starts_with(r) && **r != m)
            .max_by_key(|r| r.components().count())
        else {
            left.push((m, None));
            continue;
        };
        match create(root, &m) {
            Ok(Outcome::Placeholder(p)) => out.made.push(p),
            Ok(Outcome::Exists(p)) => exists.push(p),
            Ok(Outcome::Nothing) => left.push((m, None)),
            Err(e) => left.push((m, Some(e.to_string()))),
        }
    }
    (out, exists, left)
}

impl Placeholders {
    /// The fds held (the roots' locks, the placeholders' parent directories), for a process
    /// that keeps them across a fork that closes every other fd (a session's supervisor).
    pub fn fds(&self) -> Vec<std::os::fd::RawFd> {
        self.locks
            .iter()
            .chain(self.made.iter().map(|p| &p.parent))
            .map(AsRawFd::as_raw_fd)
            .collect()
    }

    /// After the run: removes the placeholders when no other run uses their roots (see
    /// [`Placeholders`]); returns the ones that could not be removed, with why. Releases the
    /// locks.
    pub fn finish(self) -> Vec<(PathBuf, String)> {
        let alone = self
            .locks
            .iter()
            // SAFETY: valid fd; a shared lock is converted in place, never dropped.
            .all(|fd| unsafe { libc::flock(fd.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0);
        if !alone {
            return Vec::new();
        }
        for root in &self.locks {
            sweep_temps(root.as_raw_fd());
            if let Ok(git) = open_dir(root.as_raw_fd(), &cstr(b".git").expect("no NUL")) {
                // O_PATH fds cannot be read: reopen the directory for reading, by fd.
                let p =
                    cstr(format!("/proc/self/fd/{}", git.as_raw_fd()).as_bytes()).expect("no NUL");
                // SAFETY: NUL-terminated path; the fd is owned below.
                let fd = unsafe {
                    libc::open(
                        p.as_ptr(),
                        libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
                    )
                };
                if fd >= 0 {
                    // SAFETY: fd was just returned by open.
                    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
                    sweep_temps(fd.as_raw_fd());
                }
            }
        }
        self.made
            .iter()
            .filter_map(|p| p.remove().err().map(|why| (p.path.clone(), why)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_of_defaults() {
        assert_eq!(default_is_dir(Path::new(".git/hooks")), Some(true));
        assert_eq!(default_is_dir(Path::new(".envrc")), Some(true));
        assert_eq!(default_is_dir(Path::new(".git/config")), Some(false));
        assert_eq!(
            default_is_dir(Path::new(".git/modules/a/b/hooks")),
            Some(true)
        );
        assert_eq!(
            default_is_dir(Path::new(".git/modules/a/config")),
            Some(false)
        );
        assert_eq!(default_is_dir(Path::new("src/x")), None);
        assert_eq!(default_is_dir(Path::new(".git/commondir")), None);
    }

    #[test]
    fn first_missing_component_and_cleanup() {
        let d = std::env::temp_dir().join(format!("ac-ph-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        let ws = d.canonicalize().unwrap();
        let miss = [
            ws.join(".git/hooks"),
            ws.join(".git/config"),
            ws.join(".envrc"),
        ];
        let (made, exists, left) = create_all(std::slice::from_ref(&ws), &miss);
        assert!(left.is_empty() && exists.is_empty(), "{left:?}");
        let paths: Vec<&Path> = made.made.iter().map(|p| p.path.as_path()).collect();
        assert_eq!(
            paths,
            [ws.join(".envrc").as_path(), ws.join(".git").as_path()]
        );
        assert!(ws.join(".git").is_dir());
        assert!(ws.join(".envrc").is_dir());
        let xattrs = open_path(
            libc::AT_FDCWD,
            &cstr(ws.join(".git").as_os_str().as_bytes()).unwrap(),
        )
        .is_ok_and(|fd| marked(fd.as_raw_fd()));
        if xattrs {
            // A second run finds them (marked) instead of making new ones, and the first one
            // cannot remove them while the second holds its lock.
            let (second, _, _) = create_all(std::slice::from_ref(&ws), &miss);
            assert_eq!(second.made.len(), 2);
            assert!(made.finish().is_empty());
            assert!(ws.join(".git").is_dir());
            assert!(second.finish().is_empty());
        } else {
            assert!(made.finish().is_empty());
        }
        assert!(std::fs::read_dir(&ws).unwrap().next().is_none());
        // A launcher killed between making a placeholder and renaming it into place leaves
        // only a temporary entry, never an unmarked one under the protected name; the next
        // run alone on the root sweeps it.
        let tmp = ws.join(format!("{TEMP_PREFIX}1.0"));
        std::fs::create_dir(&tmp).unwrap();
        let fd = open_path(libc::AT_FDCWD, &cstr(tmp.as_os_str().as_bytes()).unwrap()).unwrap();
        mark(fd.as_raw_fd());
        drop(fd);
        let unmarked = ws.join(format!("{TEMP_PREFIX}1.1"));
        std::fs::write(&unmarked, "").unwrap();
        let (made, _, _) = create_all(std::slice::from_ref(&ws), &miss[2..]);
        assert!(made.finish().is_empty());
        assert!(
            !tmp.exists() && !unmarked.exists(),
            "temporary entries are swept"
        );
        // A symlink on the way: no placeholder, nothing followed.
        std::os::unix::fs::symlink("/nonexistent-ac", ws.join(".git")).unwrap();
        let (made, _, left) = create_all(std::slice::from_ref(&ws), &[ws.join(".git/hooks")]);
        assert!(made.made.is_empty());
        assert_eq!(left.len(), 1);
        std::fs::remove_dir_all(&d).unwrap();
    }
}
