//! Applying the upper layer to the workspace (`commit`) and dropping it (`discard`), by fd:
//! nothing is resolved through a symlink, in either tree.

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::io::{self, Write as _};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::changes::{
    had_lower, load_base, record_base, save_base, stamp, tmp_name, Change, ChangeKind, EntryType,
};
use super::fsx::{self, fmt};
use super::renames::with_renames;
use super::store::{io_err, remove_tree, Overlay, OverlayError};

/// The outcome of a commit.
#[derive(Debug, Default, Serialize)]
pub struct CommitReport {
    /// Paths applied to the workspace (and removed from the upper layer).
    pub applied: Vec<PathBuf>,
    /// Paths refused: the workspace entry changed since the overlay saw it (`--force`).
    pub conflicts: Vec<PathBuf>,
    /// Paths that could not be applied, and why.
    pub failed: Vec<(PathBuf, String)>,
}

/// Applies the changes at or below `only` (empty: all) to the workspace: deletions first
/// (deepest first), then directories, files (a temp file and a rename, per file) and
/// symlinks (shallowest first), then modes; each applied path is then dropped from the
/// upper layer. Nothing is resolved through a symlink, in either tree. Set-id bits are not
/// committed. `force`: apply paths whose workspace entry changed since the overlay saw it.
pub fn commit(ov: &Overlay, only: &[PathBuf], force: bool) -> Result<CommitReport, OverlayError> {
    let all = record_base(ov)?;
    let base = load_base(ov);
    // A rename is one change: selecting either of its paths selects both sides.
    let mut only: Vec<PathBuf> = only.to_vec();
    if !only.is_empty() {
        let hit = |p: &Path| only.iter().any(|o| p.starts_with(o));
        let mut more = Vec::new();
        for r in with_renames(ov, all.clone())? {
            if let (ChangeKind::Renamed, Some(from)) = (r.kind, &r.from) {
                if hit(&r.path) != hit(from) {
                    more.push(r.path.clone());
                    more.push(from.clone());
                }
            }
        }
        only.extend(more);
    }
    let sel: Vec<&Change> = all
        .iter()
        .filter(|c| only.is_empty() || only.iter().any(|p| c.path.starts_with(p)))
        .collect();
    let upper = ov.upper()?;
    let lower = ov.workspace()?;
    let mut rep = CommitReport::default();
    // Conflicts: a changed workspace entry refuses its path and everything below it.
    let mut refused: Vec<PathBuf> = Vec::new();
    if !force {
        for c in sel.iter().filter(|c| had_lower(c)) {
            let k = c.path.to_string_lossy().into_owned();
            let now = fsx::lstat_beneath(lower.as_fd(), &c.path)
                .ok()
                .map(|s| stamp(&s));
            if let Some(b) = base.get(&k) {
                if now.as_ref() != Some(b) {
                    refused.push(c.path.clone());
                }
            }
        }
    }
    let blocked = |p: &Path| refused.iter().any(|r| p.starts_with(r) || r.starts_with(p));
    let mut todo: Vec<&Change> = Vec::new();
    for c in sel {
        if blocked(&c.path) {
            rep.conflicts.push(c.path.clone());
        } else {
            todo.push(c);
        }
    }
    let euid = crate::sys::geteuid();
    // 1. Deletions (and the old side of a type change), deepest first.
    let mut dels: Vec<&&Change> = todo
        .iter()
        .filter(|c| matches!(c.kind, ChangeKind::Deleted | ChangeKind::Retyped))
        .collect();
    dels.sort_by_key(|c| std::cmp::Reverse(c.path.components().count()));
    let mut failed: BTreeSet<PathBuf> = BTreeSet::new();
    for c in dels {
        if let Err(e) = remove_lower(lower.as_fd(), &c.path) {
            failed.insert(c.path.clone());
            rep.failed.push((c.path.clone(), e.to_string()));
        }
    }
    // 2. New and changed entries, shallowest first.
    let mut adds: Vec<&&Change> = todo
        .iter()
        .filter(|c| c.kind != ChangeKind::Deleted && !failed.contains(&c.path))
        .collect();
    adds.sort_by_key(|c| c.path.components().count());
    for c in adds {
        if let Err(e) = apply_one(upper.as_fd(), lower.as_fd(), c, euid) {
            failed.insert(c.path.clone());
            rep.failed.push((c.path.clone(), e.to_string()));
        }
    }
    for c in &todo {
        if !failed.contains(&c.path) {
            rep.applied.push(c.path.clone());
        }
    }
    // 3. Drop the applied paths from the upper layer, deepest first; then directories left
    // empty that hold no other change (a copied-up parent).
    let remaining: Vec<&Path> = all
        .iter()
        .filter(|c| !rep.applied.contains(&c.path))
        .map(|c| c.path.as_path())
        .collect();
    let mut drop: Vec<PathBuf> = rep.applied.clone();
    for p in &rep.applied {
        let mut a = p.parent();
        while let Some(d) = a.filter(|d| !d.as_os_str().is_empty()) {
            drop.push(d.to_path_buf());
            a = d.parent();
        }
    }
    drop.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    drop.dedup();
    for p in drop {
        if remaining.iter().any(|r| r.starts_with(&p)) {
            continue;
        }
        let _ = remove_upper_entry(upper.as_fd(), &p, false);
    }
    let mut base = load_base(ov);
    let before = base.len();
    for p in &rep.applied {
        base.remove(&*p.to_string_lossy());
    }
    if base.len() != before {
        save_base(ov, &base)?;
    }
    Ok(rep)
}

/// Drops the changes at or below `only` (empty: all) from the upper layer. A deletion
/// hidden by an opaque directory can only be dropped with that directory.
pub fn discard(ov: &Overlay, only: &[PathBuf]) -> Result<Vec<PathBuf>, OverlayError> {
    let upper = ov.upper()?;
    let mut dropped = Vec::new();
    if only.is_empty() {
        for n in fsx::entries(upper.as_fd()).map_err(io_err("read directory (upper)", "."))? {
            let p = PathBuf::from(&n);
            remove_upper_entry(upper.as_fd(), &p, true).map_err(io_err("remove (upper)", &p))?;
            dropped.push(p);
        }
    } else {
        for p in only {
            match remove_upper_entry(upper.as_fd(), p, true) {
                Ok(()) => dropped.push(p.clone()),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err("remove (upper)", p)(e)),
            }
        }
    }
    let mut base = load_base(ov);
    let before = base.len();
    base.retain(|k, _| !dropped.iter().any(|d| Path::new(k).starts_with(d)));
    if base.len() != before {
        save_base(ov, &base)?;
    }
    Ok(dropped)
}

/// Removes `rel` from the upper layer: a file, symlink or whiteout; a directory only when
/// empty, unless `tree`.
fn remove_upper_entry(upper: BorrowedFd<'_>, rel: &Path, tree: bool) -> io::Result<()> {
    let (parent, name) = fsx::split(rel)?;
    let d = fsx::open_beneath(upper, parent, libc::O_RDONLY | libc::O_DIRECTORY, 0)?;
    let st = fsx::lstat_at(d.as_fd(), name)?;
    if fmt(st.st_mode) == libc::S_IFDIR {
        if tree {
            remove_tree(d.as_fd(), name, false)
        } else {
            fsx::unlink_at(d.as_fd(), name, true)
        }
    } else {
        fsx::unlink_at(d.as_fd(), name, false)
    }
}

fn remove_lower(lower: BorrowedFd<'_>, rel: &Path) -> io::Result<()> {
    let (parent, name) = fsx::split(rel)?;
    let d = match fsx::open_beneath(lower, parent, libc::O_RDONLY | libc::O_DIRECTORY, 0) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        r => r?,
    };
    match remove_tree(d.as_fd(), name, false) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        r => r,
    }
}

/// Opens the workspace directory `rel`, creating missing ones with the upper layer's modes.
fn ensure_dir(
    upper: BorrowedFd<'_>,
    lower: BorrowedFd<'_>,
    rel: &Path,
    euid: u32,
) -> io::Result<OwnedFd> {
    let dirflags = libc::O_RDONLY | libc::O_DIRECTORY;
    match fsx::open_beneath(lower, rel, dirflags, 0) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        r => return r,
    }
    let (parent, name) = fsx::split(rel)?;
    let p = ensure_dir(upper, lower, parent, euid)?;
    let mode = fsx::lstat_beneath(upper, rel).map_or(0o755, |s| s.st_mode & 0o777);
    fsx::mkdir_at(p.as_fd(), name, mode)?;
    let d = fsx::open_beneath(p.as_fd(), Path::new(name), dirflags, 0)?;
    fsx::fchmod(d.as_fd(), mode)?;
    if euid == 0 {
        let ps = fsx::fstat(p.as_fd())?;
        fsx::chown_at(d.as_fd(), OsStr::new(""), ps.st_uid, ps.st_gid)?;
    }
    Ok(d)
}

fn apply_one(
    upper: BorrowedFd<'_>,
    lower: BorrowedFd<'_>,
    c: &Change,
    euid: u32,
) -> io::Result<()> {
    let (parent, name) = fsx::split(&c.path)?;
    let pd = ensure_dir(upper, lower, parent, euid)?;
    let pst = fsx::fstat(pd.as_fd())?;
    // The owner a new entry gets as root: the old entry's, else the directory's.
    let old = fsx::lstat_at(pd.as_fd(), name).ok();
    let (uid, gid) = old.map_or((pst.st_uid, pst.st_gid), |s| (s.st_uid, s.st_gid));
    let mode = c.new_mode.unwrap_or(0o644);
    match (c.kind, c.entry) {
        (ChangeKind::Mode, EntryType::File | EntryType::Dir) => {
            let f = fsx::open_beneath(
                pd.as_fd(),
                Path::new(name),
                libc::O_RDONLY | libc::O_NONBLOCK,
                0,
            )?;
            fsx::fchmod(f.as_fd(), strip_setid(mode, c.entry))
        }
        (_, EntryType::Dir) => {
            match fsx::mkdir_at(pd.as_fd(), name, 0o700) {
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                r => r?,
            }
            let d = fsx::open_beneath(
                pd.as_fd(),
                Path::new(name),
                libc::O_RDONLY | libc::O_DIRECTORY,
                0,
            )?;
            if euid == 0 {
                fsx::chown_at(d.as_fd(), OsStr::new(""), uid, gid)?;
            }
            fsx::fchmod(d.as_fd(), strip_setid(mode, c.entry))
        }
        (_, EntryType::File) => {
            let src = fsx::open_beneath(upper, &c.path, libc::O_RDONLY | libc::O_NONBLOCK, 0)?;
            if fmt(fsx::fstat(src.as_fd())?.st_mode) != libc::S_IFREG {
                return Err(io::Error::from_raw_os_error(libc::EINVAL));
            }
            let tmp = tmp_name();
            let want = strip_setid(mode, c.entry);
            // Created with its final permission bits (less the umask): on a busy disk every
            // journaled change may wait for a commit, so the owner and mode are only changed
            // when creation did not already give them.
            let dst = fsx::open_beneath(
                pd.as_fd(),
                Path::new(&tmp),
                libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL,
                want & 0o777,
            )?;
            let r = (|| {
                let mut out = std::fs::File::from(dst);
                io::copy(&mut std::fs::File::from(src), &mut out)?;
                let st = fsx::fstat(out.as_fd())?;
                if euid == 0 && (st.st_uid, st.st_gid) != (uid, gid) {
                    fsx::chown_at(out.as_fd(), OsStr::new(""), uid, gid)?;
                }
                if st.st_mode & 0o7777 != want {
                    fsx::fchmod(out.as_fd(), want)?;
                }
                // No fsync (like git's default): the rename is atomic for readers; a crash
                // right after a commit may leave the old file, never a torn one... on
                // filesystems that order data before the rename (ext4's auto_da_alloc).
                out.flush()?;
                fsx::rename_at(pd.as_fd(), &tmp, name)
            })();
            if r.is_err() {
                let _ = fsx::unlink_at(pd.as_fd(), &tmp, false);
            }
            r
        }
        (_, EntryType::Symlink) => {
            let target = c
                .target
                .as_deref()
                .ok_or_else(|| io::Error::from_raw_os_error(libc::EINVAL))?;
            let tmp = tmp_name();
            fsx::symlink_at(target.as_os_str(), pd.as_fd(), &tmp)?;
            let r = (|| {
                if euid == 0 {
                    fsx::chown_at(pd.as_fd(), &tmp, uid, gid)?;
                }
                fsx::rename_at(pd.as_fd(), &tmp, name)
            })();
            if r.is_err() {
                let _ = fsx::unlink_at(pd.as_fd(), &tmp, false);
            }
            r
        }
        (_, EntryType::Other) => Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "not a file, directory or symlink (fifo, socket or device): not committed",
        )),
    }
}

fn strip_setid(mode: u32, ty: EntryType) -> u32 {
    if ty == EntryType::File {
        mode & 0o1777
    } else {
        mode & 0o3777
    }
}
