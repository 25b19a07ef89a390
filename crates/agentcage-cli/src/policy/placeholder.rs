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
//! `openat(O_CREAT|O_EXCL|O_NOFOLLOW)`, which never follow a link the sandbox planted.
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

/// Makes the placeholder for the missing default protected path `missing` below the writable
/// root `root` (canonical). `Ok(None)`: not a default, or it cannot exist as named (a file or
/// a symlink on the way) or exists now; `Err`: the placeholder could not be made (the path
/// stays unprotected and on the post-run check).
pub fn create(root: &Path, missing: &Path) -> std::io::Result<Option<Placeholder>> {
    let Ok(rel) = missing.strip_prefix(root) else {
        return Ok(None);
    };
    let Some(leaf_is_dir) = default_is_dir(rel) else {
        return Ok(None);
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
    let mut path = root.to_path_buf();
    for (i, name) in names.iter().enumerate() {
        let last = i + 1 == names.len();
        path.push(std::ffi::OsStr::from_bytes(name.as_bytes()));
        let exists = match stat_at(dir.as_raw_fd(), name) {
            Ok(st) => Some(st),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => None,
            Err(e) => return Err(e),
        };
        match exists {
            Some(_) if last => return Ok(None),
            Some(st) if st.st_mode & libc::S_IFMT == libc::S_IFDIR => {
                dir = open_dir(dir.as_raw_fd(), name)?;
                continue;
            }
            // A file (`.git` of a worktree) or a symlink on the way: the path cannot exist
            // as named (a symlink there is refused by the protected-path checks anyway).
            Some(_) => return Ok(None),
            None => {}
        }
        let is_dir = !last || leaf_is_dir;
        // SAFETY: valid fd and NUL-terminated name; plain syscalls.
        let r = unsafe {
            if is_dir {
                libc::mkdirat(dir.as_raw_fd(), name.as_ptr(), 0o555)
            } else {
                let fd = libc::openat(
                    dir.as_raw_fd(),
                    name.as_ptr(),
                    libc::O_CREAT
                        | libc::O_EXCL
                        | libc::O_NOFOLLOW
                        | libc::O_WRONLY
                        | libc::O_CLOEXEC,
                    0o444,
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
        // The umask may have cut the mode; the placeholder's own mode is what we say.
        let st = stat_at(dir.as_raw_fd(), name)?;
        return Ok(Some(Placeholder {
            path,
            parent: dir,
            name: name.clone(),
            is_dir,
            dev: st.st_dev,
            ino: st.st_ino,
        }));
    }
    Ok(None)
}

impl Placeholder {
    /// Removes the placeholder if it is still the inode we made and still empty; otherwise
    /// says why it stays (the caller warns).
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

/// Makes the placeholders for `missing` (paths below `roots`, the workspace and the writable
/// binds). Returns the placeholders made (one per first missing component: `.git` once for
/// all its defaults) and the paths that stay unprotected, with why for the ones that failed.
pub fn create_all(
    roots: &[PathBuf],
    missing: &[PathBuf],
) -> (Vec<Placeholder>, Vec<(PathBuf, Option<String>)>) {
    let mut made: Vec<Placeholder> = Vec::new();
    let mut left = Vec::new();
    for m in missing {
        if made.iter().any(|p| m.starts_with(&p.path)) {
            continue;
        }
        // The deepest root that holds it.
        let Some(root) = roots
            .iter()
            .filter(|r| m.starts_with(r) && *r != m)
            .max_by_key(|r| r.components().count())
        else {
            left.push((m.clone(), None));
            continue;
        };
        match create(root, m) {
            Ok(Some(p)) => made.push(p),
            Ok(None) => left.push((m.clone(), None)),
            Err(e) => left.push((m.clone(), Some(e.to_string()))),
        }
    }
    (made, left)
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
        let (made, left) = create_all(std::slice::from_ref(&ws), &miss);
        assert!(left.is_empty(), "{left:?}");
        let paths: Vec<&Path> = made.iter().map(|p| p.path.as_path()).collect();
        assert_eq!(
            paths,
            [ws.join(".git").as_path(), ws.join(".envrc").as_path()]
        );
        assert!(ws.join(".git").is_dir());
        assert!(ws.join(".envrc").is_dir());
        for p in &made {
            p.remove().unwrap();
        }
        assert!(std::fs::read_dir(&ws).unwrap().next().is_none());
        // A symlink on the way: no placeholder, nothing followed.
        std::os::unix::fs::symlink("/nonexistent-ac", ws.join(".git")).unwrap();
        let (made, left) = create_all(std::slice::from_ref(&ws), &[ws.join(".git/hooks")]);
        assert!(made.is_empty());
        assert_eq!(left.len(), 1);
        std::fs::remove_dir_all(&d).unwrap();
    }
}
