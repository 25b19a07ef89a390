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

use std::ffi::{CStr, CString};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use agentcage::hostfs::{Made, MakeBeside, MarkedEntry};

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
    /// Shared by the placeholders made in one directory (the root's is also its lock's).
    parent: Arc<OwnedFd>,
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
const MARK: &CStr = c"user.agentcage.placeholder";

/// Whether the entry `name` of the directory `dir` (an fd) carries [`MARK`]; a symlink is
/// not followed (and never marked). See [`mark_at`] for the path.
fn marked_at(dir: i32, name: &CString) -> bool {
    let mut p = format!("/proc/self/fd/{dir}/").into_bytes();
    p.extend_from_slice(name.as_bytes_with_nul());
    let mut buf = [0u8; 8];
    // SAFETY: NUL-terminated strings and a writable buffer of the given size.
    let n = unsafe {
        libc::lgetxattr(
            p.as_ptr().cast(),
            MARK.as_ptr().cast(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    n >= 0
}

/// Marks the entry `name` of the directory `dir` (an fd), without following it if it is a
/// symlink (tests: what a killed launcher leaves).
#[cfg(test)]
fn mark_at(dir: i32, name: &CString) {
    let mut p = format!("/proc/self/fd/{dir}/").into_bytes();
    p.extend_from_slice(name.as_bytes_with_nul());
    // SAFETY: NUL-terminated strings and a one-byte value. Failure (no user xattrs) is
    // tolerated: see MARK.
    unsafe {
        libc::lsetxattr(
            p.as_ptr().cast(),
            MARK.as_ptr().cast(),
            b"1".as_ptr().cast(),
            1,
            0,
        );
    }
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
/// root `root` (canonical; `root_fd` an fd of it), walking by fd. `missing`: the policy saw it
/// missing when it was resolved, so a path of one component is made without being looked up
/// first (the common case: `.envrc`, `.vscode`, ...); if something appeared under its name
/// meanwhile, the `RENAME_NOREPLACE` fails and it is looked up as usual. `Err`: the
/// placeholder could not be made (the path stays unprotected and on the post-run check).
fn create(
    root: &Path,
    root_fd: &Arc<OwnedFd>,
    path: &Path,
    missing: bool,
    pid: u32,
) -> std::io::Result<Outcome> {
    let Some(rest) = relative(path, root) else {
        return Ok(Outcome::Nothing);
    };
    let rel = Path::new(std::ffi::OsStr::from_bytes(rest));
    let Some(leaf_is_dir) = default_is_dir(rel) else {
        return Ok(Outcome::Nothing);
    };
    let names: Vec<CString> = rest
        .split(|&c| c == b'/')
        .map(|n| match n {
            b"" | b"." | b".." => Err(std::io::Error::from_raw_os_error(libc::EINVAL)),
            n => cstr(n),
        })
        .collect::<Result<_, _>>()?;
    let mut dir = Arc::clone(root_fd);
    let mut cur = root.to_path_buf();
    let mut look = !(missing && names.len() == 1);
    let mut i = 0;
    while i < names.len() {
        let name = &names[i];
        let last = i + 1 == names.len();
        let is_dir = !last || leaf_is_dir;
        let found = if look {
            match stat_at(dir.as_raw_fd(), name) {
                Ok(st) => Some(st),
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => None,
                Err(e) => return Err(e),
            }
        } else {
            None
        };
        look = true;
        if let Some(st) = found {
            let fmt = st.st_mode & libc::S_IFMT;
            cur.push(std::ffi::OsStr::from_bytes(name.as_bytes()));
            if (fmt == libc::S_IFDIR || fmt == libc::S_IFREG) && marked_at(dir.as_raw_fd(), name) {
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
            dir = Arc::new(open_dir(dir.as_raw_fd(), name)?);
            i += 1;
            continue;
        }
        match make_marked(&dir, name, is_dir, pid)? {
            // Another run made it in the meantime (or it existed): look again.
            None => continue,
            Some((dev, ino)) => {
                cur.push(std::ffi::OsStr::from_bytes(name.as_bytes()));
                return Ok(Outcome::Placeholder(Placeholder {
                    path: cur,
                    parent: dir,
                    name: name.clone(),
                    is_dir,
                    dev,
                    ino,
                }));
            }
        }
    }
    Ok(Outcome::Nothing)
}

/// Prefix of the temporary name a placeholder is made under before it is renamed into place.
const TEMP_PREFIX: &str = ".agentcage-placeholder.";

/// The placeholder `name` in `dir`, to make (`agentcage::hostfs::MarkedEntry`): under a
/// temporary name, marked (a user xattr needs write permission, so while its mode still allows
/// it), chmod-ed, then renamed into place with `RENAME_NOREPLACE`. A launcher killed half-way
/// therefore never leaves an unmarked entry under a protected name (a later run would take it
/// for the user's own and walk into it), only a marked temporary one, which
/// [`Placeholders::finish`] sweeps. `pid`: this process's, asked once per walk (getpid(2) is a
/// syscall per call).
fn marked_entry(
    dir: &Arc<OwnedFd>,
    name: &CString,
    is_dir: bool,
    pid: u32,
) -> std::io::Result<MarkedEntry> {
    static SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = format!("{TEMP_PREFIX}{pid}.{seq}");
    MarkedEntry::new(dir, tmp.as_bytes(), name.as_bytes(), is_dir, MARK, b"1")
        .map_err(|e| std::io::Error::from_raw_os_error(e.0))
}

/// Makes the placeholder `name` in `dir` now ([`marked_entry`]): its (device, inode), or
/// `Ok(None)` when the name appeared meanwhile (a concurrent run made it): the caller looks
/// again.
fn make_marked(
    dir: &Arc<OwnedFd>,
    name: &CString,
    is_dir: bool,
    pid: u32,
) -> std::io::Result<Option<(u64, u64)>> {
    let mut e = marked_entry(dir, name, is_dir, pid)?;
    e.make();
    match e.made() {
        Made::Made { dev, ino } => Ok(Some((dev, ino))),
        Made::Exists => Ok(None),
        Made::Failed(e) => Err(std::io::Error::from_raw_os_error(e.0)),
        Made::Pending => Err(std::io::Error::from_raw_os_error(libc::EINVAL)),
    }
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
    locks: Vec<Arc<OwnedFd>>,
}

/// A path left unprotected, and why when a placeholder could not be made.
pub type Left = (PathBuf, Option<String>);

/// Locks `roots` (shared) and makes or finds the placeholders for the default protected
/// paths `paths` (the missing ones and the ones that existed when the policy was resolved:
/// another run's placeholder may be gone since). Returns them, the paths that exist now (to
/// bind read-only) and the ones that stay unprotected, with why for the ones that failed.
pub fn create_all(
    roots: &[PathBuf],
    missing: &[PathBuf],
    existing: &[PathBuf],
) -> (Placeholders, Vec<PathBuf>, Vec<Left>) {
    let mut w = Walk::new(roots);
    for (m, was_missing) in in_order(missing, existing) {
        if !w.covered(m) {
            w.one(m, was_missing);
        }
    }
    (w.out, w.exists, w.left)
}

/// [`create_all`], with the common placeholders made beside the caller (issue 19): a missing
/// path of one component below its root (`.envrc`, `.vscode`, a missing `.git`, ...) is made
/// by a helper on the other core (`agentcage::hostfs::MakeBeside`) while the caller prepares
/// the sandbox, expecting it to be made ([`Pending::expected`]); the rest is done here and now.
/// [`Pending::finish`] collects them and does for any that were not made (the name appeared
/// meanwhile, or it failed) what [`create_all`] would have done, with the paths below it.
pub fn start_all(roots: &[PathBuf], missing: &[PathBuf], existing: &[PathBuf]) -> Pending {
    let mut w = Walk::new(roots);
    let mut entries = Vec::new();
    let mut fast: Vec<Fast> = Vec::new();
    for (m, was_missing) in in_order(missing, existing) {
        if w.covered(m) {
            continue;
        }
        if let Some(f) = fast.iter_mut().find(|f| below(m, &f.path, true)) {
            // Below an expected placeholder: nothing to do if it is made (see `covered`).
            f.under.push((m.clone(), was_missing));
            continue;
        }
        match w.one_beside(m, was_missing) {
            Some((path, e)) => {
                // `m` is the placeholder, or below it (the paths below it follow in order).
                let own = path == *m;
                let under = if own {
                    Vec::new()
                } else {
                    vec![(m.clone(), was_missing)]
                };
                fast.push(Fast {
                    path,
                    is_dir: e.is_dir(),
                    own,
                    under,
                });
                entries.push(e);
            }
            None => w.one(m, was_missing),
        }
    }
    Pending {
        walk: w,
        fast,
        making: MakeBeside::start(entries),
    }
}

/// The paths of [`create_all`] in the order of their components (a parent before what it
/// holds, the same order on every run), with whether each was missing. The paths are
/// absolute and normal (no `.`, `..`, `//` or trailing `/`, as the policy made them), so
/// comparing their bytes with `/` lowest is that order, and [`below`] is `Path::starts_with`,
/// both without splitting into components (which was most of the instructions spent here).
fn in_order<'a>(missing: &'a [PathBuf], existing: &'a [PathBuf]) -> Vec<(&'a PathBuf, bool)> {
    let mut paths: Vec<(&PathBuf, bool)> = missing
        .iter()
        .map(|p| (p, true))
        .chain(existing.iter().map(|p| (p, false)))
        .collect();
    paths.sort_by_cached_key(|(p, _)| {
        p.as_os_str()
            .as_bytes()
            .iter()
            .map(|&c| if c == b'/' { 0 } else { c })
            .collect::<Vec<u8>>()
    });
    paths
}

/// One walk over the protected paths: the roots' fds and locks, and what was found or made.
struct Walk {
    roots: Vec<PathBuf>,
    /// One fd per root: its lock, and where every walk below it starts.
    root_fds: Vec<Result<Arc<OwnedFd>, String>>,
    out: Placeholders,
    exists: Vec<PathBuf>,
    left: Vec<Left>,
    pid: u32,
}

impl Walk {
    fn new(roots: &[PathBuf]) -> Walk {
        let mut out = Placeholders::default();
        let root_fds = roots.iter().map(|r| open_root(r, &mut out.locks)).collect();
        Walk {
            roots: roots.to_vec(),
            root_fds,
            out,
            exists: Vec::new(),
            left: Vec::new(),
            pid: std::process::id(),
        }
    }

    /// Whether `m` is at or below a placeholder already made or found (nothing to do).
    fn covered(&self, m: &Path) -> bool {
        self.out.made.iter().any(|p| below(m, &p.path, true))
    }

    /// The deepest root that holds `m`, and its fd (or why it could not be opened).
    fn root_of(&self, m: &Path) -> Option<(&Path, &Result<Arc<OwnedFd>, String>)> {
        self.roots
            .iter()
            .enumerate()
            .filter(|(_, r)| below(m, r, false))
            .max_by_key(|(_, r)| r.as_os_str().len())
            .map(|(i, r)| (r.as_path(), &self.root_fds[i]))
    }

    /// Makes or finds the placeholder for `m` now.
    fn one(&mut self, m: &Path, was_missing: bool) {
        let Some((root, fd)) = self.root_of(m) else {
            self.left.push((m.to_path_buf(), None));
            return;
        };
        let fd = match fd {
            Ok(fd) => Arc::clone(fd),
            Err(why) => {
                self.left.push((m.to_path_buf(), Some(why.clone())));
                return;
            }
        };
        let made = create(root, &fd, m, was_missing, self.pid);
        match made {
            Ok(Outcome::Placeholder(p)) => self.out.made.push(p),
            Ok(Outcome::Exists(p)) => self.exists.push(p),
            Ok(Outcome::Nothing) => self.left.push((m.to_path_buf(), None)),
            Err(e) => self.left.push((m.to_path_buf(), Some(e.to_string()))),
        }
    }

    /// The placeholder to make beside for the missing default `m`, and its path: `m` itself
    /// when it is one component below its root (made without a lookup, as [`create`] does),
    /// else its first component when that is missing too (`.git` for `.git/hooks` in a
    /// directory that is no repository: one lookup). `None`: do it with [`Walk::one`].
    fn one_beside(&self, m: &Path, was_missing: bool) -> Option<(PathBuf, MarkedEntry)> {
        if !was_missing {
            return None;
        }
        let (root, Ok(fd)) = self.root_of(m)? else {
            return None;
        };
        let rest = relative(m, root)?;
        let is_dir = default_is_dir(Path::new(std::ffi::OsStr::from_bytes(rest)))?;
        let (first, is_dir) = match rest.iter().position(|&c| c == b'/') {
            None => (rest, is_dir),
            Some(i) => (&rest[..i], true),
        };
        if first.is_empty() || first == b"." || first == b".." {
            return None;
        }
        let name = cstr(first).ok()?;
        if first.len() < rest.len() {
            match stat_at(fd.as_raw_fd(), &name) {
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
                _ => return None,
            }
        }
        let path = root.join(std::ffi::OsStr::from_bytes(first));
        Some((path, marked_entry(fd, &name, is_dir, self.pid).ok()?))
    }
}

/// Placeholders being made beside the caller: see [`start_all`].
pub struct Pending {
    walk: Walk,
    /// One per entry being made, in the same order.
    fast: Vec<Fast>,
    making: MakeBeside,
}

/// A placeholder being made beside.
struct Fast {
    path: PathBuf,
    is_dir: bool,
    /// Whether `path` is one of the protected paths (else the first missing component of
    /// the first of `under`).
    own: bool,
    /// The paths below it, left for when it is not made.
    under: Vec<(PathBuf, bool)>,
}

/// What a run binds of its protected paths: the placeholders (path, whether a directory) and
/// the paths that exist, sorted. Two walks that agree on it prepare the same sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shape {
    /// The placeholders made or found.
    pub made: Vec<(PathBuf, bool)>,
    /// The protected paths that exist (bound read-only as they are).
    pub exists: Vec<PathBuf>,
}

impl Shape {
    /// The shape of a finished walk.
    pub fn of(made: &Placeholders, exists: &[PathBuf]) -> Shape {
        let mut s = Shape {
            made: made
                .made
                .iter()
                .map(|p| (p.path.clone(), p.is_dir))
                .collect(),
            exists: exists.to_vec(),
        };
        s.made.sort();
        s.exists.sort();
        s
    }
}

impl Pending {
    /// The shape once every placeholder being made beside is made (the common case).
    pub fn expected(&self) -> Shape {
        let mut s = Shape::of(&self.walk.out, &self.walk.exists);
        s.made
            .extend(self.fast.iter().map(|f| (f.path.clone(), f.is_dir)));
        s.made.sort();
        s
    }

    /// Waits for the placeholders made beside, and does for any that was not made what
    /// [`create_all`] would have (a lookup: another run's placeholder, or the user's entry;
    /// another attempt), then for the paths below it. Returns what [`create_all`] returns.
    pub fn finish(self) -> (Placeholders, Vec<PathBuf>, Vec<Left>) {
        let Pending {
            mut walk,
            fast,
            making,
        } = self;
        for (f, e) in fast.into_iter().zip(making.finish()) {
            if let Made::Made { dev, ino } = e.made() {
                walk.out.made.push(Placeholder {
                    path: f.path,
                    parent: Arc::clone(e.dir()),
                    name: e.name().to_owned(),
                    is_dir: e.is_dir(),
                    dev,
                    ino,
                });
                continue;
            }
            if f.own {
                walk.one(&f.path, false);
            }
            for (m, was_missing) in f.under {
                if !walk.covered(&m) {
                    walk.one(&m, was_missing);
                }
            }
        }
        (walk.out, walk.exists, walk.left)
    }
}

/// `path` relative to `root` (its bytes after `root/`), when it lies strictly below it.
fn relative<'p>(path: &'p Path, root: &Path) -> Option<&'p [u8]> {
    if !below(path, root, false) {
        return None;
    }
    let rest = &path.as_os_str().as_bytes()[root.as_os_str().len()..];
    Some(rest.strip_prefix(b"/").unwrap_or(rest))
}

/// Whether the normal absolute path `p` is `dir` or below it (`or_equal`), or strictly below.
fn below(p: &Path, dir: &Path, or_equal: bool) -> bool {
    let (p, d) = (p.as_os_str().as_bytes(), dir.as_os_str().as_bytes());
    match p.strip_prefix(d) {
        Some([]) => or_equal,
        Some([b'/', ..]) => true,
        Some(_) => d == b"/",
        None => false,
    }
}

/// Opens the writable root `root` and takes the shared lock on it (pushed to `locks`); where
/// it cannot be opened for reading (no lock then, as before), an `O_PATH` fd to walk from.
fn open_root(root: &Path, locks: &mut Vec<Arc<OwnedFd>>) -> Result<Arc<OwnedFd>, String> {
    let c = cstr(root.as_os_str().as_bytes()).map_err(|e| e.to_string())?;
    // SAFETY: NUL-terminated path; the fd is owned below.
    let fd = unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return open_dir(libc::AT_FDCWD, &c)
            .map(Arc::new)
            .map_err(|e| e.to_string());
    }
    // SAFETY: fd was just returned by open.
    let fd = Arc::new(unsafe { OwnedFd::from_raw_fd(fd) });
    // SAFETY: valid fd. Blocks only while another run removes its placeholders.
    unsafe { libc::flock(fd.as_raw_fd(), libc::LOCK_SH) };
    locks.push(Arc::clone(&fd));
    Ok(fd)
}

impl Placeholders {
    /// The fds held (the roots' locks, the placeholders' parent directories), for a process
    /// that keeps them across a fork that closes every other fd (a session's supervisor).
    pub fn fds(&self) -> Vec<std::os::fd::RawFd> {
        let mut fds: Vec<_> = self
            .locks
            .iter()
            .chain(self.made.iter().map(|p| &p.parent))
            .map(|fd| fd.as_raw_fd())
            .collect();
        fds.sort_unstable();
        fds.dedup();
        fds
    }

    /// After the run: removes the placeholders when no other run uses their roots (see
    /// [`Placeholders`]); returns the ones that could not be removed, with why. Releases the
    /// locks.
    pub fn finish(self) -> Vec<(PathBuf, String)> {
        let alone = self
            .locks
            .iter()
            // SAFETY: valid fd. A conversion that fails drops the shared lock (flock(2): the
            // old lock goes first): harmless, this run is done with its placeholders.
            .all(|fd| unsafe { libc::flock(fd.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0);
        if !alone {
            return Vec::new();
        }
        for root in &self.locks {
            sweep_temps(root.as_raw_fd());
            // Nothing is ever made inside a placeholder: a `.git` of ours has no temporaries.
            let git_is_ours = self
                .made
                .iter()
                .any(|p| Arc::ptr_eq(&p.parent, root) && p.name.as_bytes() == b".git");
            if git_is_ours {
                continue;
            }
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
    fn below_is_starts_with() {
        let cases = [
            ("/a/b", "/a", true),
            ("/a", "/a", true),
            ("/ab", "/a", false),
            ("/a", "/a/b", false),
            ("/a/.git-x", "/a/.git", false),
            ("/a/.git/x", "/a/.git", true),
            ("/x", "/", true),
        ];
        for (p, d, want) in cases {
            let (p, d) = (Path::new(p), Path::new(d));
            assert_eq!(below(p, d, true), want, "{p:?} {d:?}");
            assert_eq!(p.starts_with(d), want, "{p:?} {d:?}");
            assert_eq!(below(p, d, false), want && p != d, "{p:?} {d:?}");
        }
    }

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
        let (made, exists, left) = create_all(std::slice::from_ref(&ws), &miss, &[]);
        assert!(left.is_empty() && exists.is_empty(), "{left:?}");
        let paths: Vec<&Path> = made.made.iter().map(|p| p.path.as_path()).collect();
        assert_eq!(
            paths,
            [ws.join(".envrc").as_path(), ws.join(".git").as_path()]
        );
        assert!(ws.join(".git").is_dir());
        assert!(ws.join(".envrc").is_dir());
        let ws_fd = open_dir(libc::AT_FDCWD, &cstr(ws.as_os_str().as_bytes()).unwrap()).unwrap();
        let xattrs = marked_at(ws_fd.as_raw_fd(), &cstr(b".git").unwrap());
        if xattrs {
            // A second run finds them (marked) instead of making new ones, and the first one
            // cannot remove them while the second holds its lock.
            let (second, _, _) = create_all(std::slice::from_ref(&ws), &miss, &[]);
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
        mark_at(
            ws_fd.as_raw_fd(),
            &cstr(format!("{TEMP_PREFIX}1.0").as_bytes()).unwrap(),
        );
        let unmarked = ws.join(format!("{TEMP_PREFIX}1.1"));
        std::fs::write(&unmarked, "").unwrap();
        let (made, _, _) = create_all(std::slice::from_ref(&ws), &miss[2..], &[]);
        assert!(made.finish().is_empty());
        assert!(
            !tmp.exists() && !unmarked.exists(),
            "temporary entries are swept"
        );
        // In a real `.git`, the placeholder is made there, and a temporary entry a killed
        // launcher left there is swept too.
        std::fs::create_dir(ws.join(".git")).unwrap();
        let in_git = ws.join(format!(".git/{TEMP_PREFIX}1.2"));
        std::fs::create_dir(&in_git).unwrap();
        let (made, exists, left) = create_all(std::slice::from_ref(&ws), &miss[..1], &[]);
        assert!(exists.is_empty() && left.is_empty(), "{left:?}");
        assert_eq!(made.made.len(), 1);
        assert_eq!(made.made[0].path, ws.join(".git/hooks"));
        assert!(made.finish().is_empty());
        assert!(!in_git.exists(), "temporary entries in .git are swept");
        assert!(std::fs::read_dir(ws.join(".git")).unwrap().next().is_none());
        std::fs::remove_dir(ws.join(".git")).unwrap();
        // Something that appeared under a name resolved as missing is neither replaced nor
        // followed: a symlink there is found as it is (and refused by the protected-path checks
        // of the next run), no temporary entry is left.
        std::os::unix::fs::symlink("/nonexistent-ac", ws.join(".envrc")).unwrap();
        let (made, exists, _) = create_all(std::slice::from_ref(&ws), &miss[2..], &[]);
        assert!(made.made.is_empty());
        assert_eq!(exists, [ws.join(".envrc")]);
        drop(made);
        assert_eq!(
            std::fs::read_dir(&ws).unwrap().count(),
            1,
            "only the symlink: no temporary entry left"
        );
        std::fs::remove_file(ws.join(".envrc")).unwrap();
        // A symlink on the way: no placeholder, nothing followed.
        std::os::unix::fs::symlink("/nonexistent-ac", ws.join(".git")).unwrap();
        let (made, _, left) = create_all(std::slice::from_ref(&ws), &[ws.join(".git/hooks")], &[]);
        assert!(made.made.is_empty());
        assert_eq!(left.len(), 1);
        std::fs::remove_dir_all(&d).unwrap();
    }

    /// [`start_all`] ends where [`create_all`] does: as expected when the missing paths are
    /// still missing; when some appeared since the policy saw them (the user's `.envrc`, a
    /// `.git` from `git init`), it finds them and does the paths below them, and its shape
    /// differs from the one it expected (the caller prepares the sandbox again).
    #[test]
    fn made_beside_ends_as_create_all() {
        let d = std::env::temp_dir().join(format!("ac-ph-beside-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        let ws = d.canonicalize().unwrap();
        let roots = std::slice::from_ref(&ws);
        let miss = [
            ws.join(".claude"),
            ws.join(".envrc"),
            ws.join(".git/config"),
            ws.join(".git/hooks"),
            ws.join(".vscode"),
        ];
        let p = start_all(roots, &miss, &[]);
        let expected = p.expected();
        let (made, exists, left) = p.finish();
        assert!(left.is_empty() && exists.is_empty(), "{left:?}");
        assert_eq!(Shape::of(&made, &exists), expected);
        let names: Vec<_> = expected.made.iter().map(|(p, d)| (p.clone(), *d)).collect();
        assert_eq!(
            names,
            [".claude", ".envrc", ".git", ".vscode"].map(|n| (ws.join(n), true))
        );
        for p in &made.made {
            let m = std::fs::symlink_metadata(&p.path).unwrap();
            use std::os::unix::fs::MetadataExt;
            assert_eq!((m.dev(), m.ino()), (p.dev, p.ino));
        }
        assert!(made.finish().is_empty());
        assert!(std::fs::read_dir(&ws).unwrap().next().is_none());
        // The user made .envrc and ran git init after the policy was resolved.
        std::fs::write(ws.join(".envrc"), "user's\n").unwrap();
        std::fs::create_dir(ws.join(".git")).unwrap();
        let p = start_all(roots, &miss, &[]);
        let expected = p.expected();
        let (made, exists, left) = p.finish();
        assert!(left.is_empty(), "{left:?}");
        let shape = Shape::of(&made, &exists);
        assert_ne!(shape, expected);
        assert_eq!(shape.exists, [ws.join(".envrc")]);
        assert_eq!(
            shape.made,
            [
                (ws.join(".claude"), true),
                (ws.join(".git/config"), false),
                (ws.join(".git/hooks"), true),
                (ws.join(".vscode"), true),
            ]
        );
        assert!(made.finish().is_empty());
        let (again, exists, _) = create_all(roots, &miss, &[]);
        assert_eq!(Shape::of(&again, &exists), shape, "as create_all");
        assert!(again.finish().is_empty());
        assert_eq!(
            std::fs::read_to_string(ws.join(".envrc")).unwrap(),
            "user's\n"
        );
        std::fs::remove_dir_all(&d).unwrap();
    }

    /// Runs in parallel on one workspace (`agentcage matrix --jobs N`, several agents in one
    /// repository) never lose a placeholder they bind: while a run holds its shared lock, the
    /// placeholder it made or found stays the same inode, whoever finishes meanwhile; once
    /// the last one finished, none is left. Each thread is a run (its own open file
    /// descriptions, so its own flocks, as in separate processes).
    #[test]
    fn parallel_runs_on_one_workspace_keep_their_placeholders() {
        let d = std::env::temp_dir().join(format!("ac-ph-par-{}", std::process::id()));
        std::fs::create_dir_all(d.join(".git")).unwrap();
        let ws = d.canonicalize().unwrap();
        let miss = [
            ws.join(".git/hooks"),
            ws.join(".git/info"),
            ws.join(".git/config"),
            ws.join(".envrc"),
        ];
        let same = |p: &Placeholder| {
            std::fs::symlink_metadata(&p.path).is_ok_and(|m| {
                use std::os::unix::fs::MetadataExt;
                m.dev() == p.dev && m.ino() == p.ino
            })
        };
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for i in 0..150 {
                        let (made, exists, left) =
                            create_all(std::slice::from_ref(&ws), &miss, &[]);
                        assert!(left.is_empty(), "{left:?}");
                        assert_eq!(made.made.len() + exists.len(), miss.len());
                        assert!(made.made.iter().all(same), "{:?}", made.made);
                        // The "run": let the others make, find and finish meanwhile.
                        if i % 8 == 0 {
                            std::thread::yield_now();
                        }
                        assert!(made.made.iter().all(same), "lost during the run");
                        assert!(made.finish().is_empty());
                    }
                });
            }
        });
        let ws_fd = open_dir(libc::AT_FDCWD, &cstr(ws.as_os_str().as_bytes()).unwrap()).unwrap();
        let probe = format!("{TEMP_PREFIX}x");
        std::fs::create_dir(ws.join(&probe)).unwrap();
        mark_at(ws_fd.as_raw_fd(), &cstr(probe.as_bytes()).unwrap());
        let xattrs = marked_at(ws_fd.as_raw_fd(), &cstr(probe.as_bytes()).unwrap());
        std::fs::remove_dir(ws.join(&probe)).unwrap();
        if xattrs {
            // Without user xattrs another run's placeholder looks like the user's own and
            // stays (see MARK).
            let left: Vec<_> = std::fs::read_dir(&ws)
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect();
            assert_eq!(
                left,
                [ws.join(".git")],
                "the last run removed every placeholder"
            );
            assert!(std::fs::read_dir(ws.join(".git")).unwrap().next().is_none());
        }
        std::fs::remove_dir_all(&d).unwrap();
    }
}
