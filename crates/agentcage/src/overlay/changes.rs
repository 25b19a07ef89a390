//! Reading the upper layer (what changed), applying it to the workspace (commit) and
//! dropping it (discard), all by fd.
//!
//! overlayfs with `userxattr` (the only kind a user namespace may mount) records a deleted
//! entry as a whiteout: a character device 0/0 (or, for layers made by tools since Linux
//! 6.7, an empty regular file with the `user.overlay.whiteout` xattr); a directory that
//! replaces a deleted one is opaque (`user.overlay.opaque` = `y`): nothing of the lower
//! layer shows through it. `userxattr` rules out redirect_dir and metacopy, so a renamed
//! directory is a copy (the kernel answers EXDEV and tools copy) and every upper file is
//! complete: the upper layer alone says what changed. Renames are a view on top of the raw
//! changes ([`with_renames`]: same contents; a file's `user.overlay.origin`, stored empty by
//! a rootless mount, says the kernel copied it up); `commit` works on the raw changes.
//!
//! Reads ask for O_NOATIME and commit changes no owner or mode that creation already gave:
//! on a busy disk every journaled change may wait for a journal commit (docs/OVERLAY.md,
//! Performance).

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::{OsStr, OsString};
use std::io::{self, Read, Write as _};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::fsx::{self, fmt};
use super::store::{io_err, Overlay, OverlayError};

/// The type of an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryType {
    /// Regular file.
    File,
    /// Directory.
    Dir,
    /// Symbolic link.
    Symlink,
    /// FIFO, socket or device (never committed).
    Other,
}

impl EntryType {
    fn of(mode: u32) -> EntryType {
        match fmt(mode) {
            libc::S_IFREG => EntryType::File,
            libc::S_IFDIR => EntryType::Dir,
            libc::S_IFLNK => EntryType::Symlink,
            _ => EntryType::Other,
        }
    }
}

/// What happened to a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeKind {
    /// New in the upper layer.
    Added,
    /// Contents (or symlink target) differ.
    Modified,
    /// Only the permission bits differ.
    Mode,
    /// Replaced by an entry of another type.
    Retyped,
    /// Deleted (a whiteout, or hidden by an opaque directory).
    Deleted,
    /// Moved from `from` (a deleted entry of the workspace and an added one with the same
    /// contents: see [`with_renames`]). Only `diff` shows renames; `commit` of either path
    /// applies both sides.
    Renamed,
}

/// How a rename was detected (`diff`; both need the same contents).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RenameEvidence {
    /// The added file carries overlayfs' `user.overlay.origin` (the kernel copied it up from
    /// a lower file: rename(2) of a workspace file) and has the deleted file's contents.
    Origin,
    /// Same type and contents only (a tool copied, then deleted: `mv` of a directory, whose
    /// rename(2) overlayfs refuses with EXDEV; a directory: every entry below it matches).
    Contents,
}

/// One change of the overlay against the workspace.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Change {
    /// Path relative to the workspace.
    pub path: PathBuf,
    /// What happened.
    pub kind: ChangeKind,
    /// The entry's type now (before, for a deletion).
    #[serde(rename = "type")]
    pub entry: EntryType,
    /// Permission bits before (absent when added).
    pub old_mode: Option<u32>,
    /// Permission bits now (absent when deleted).
    pub new_mode: Option<u32>,
    /// Size now (regular files).
    pub size: Option<u64>,
    /// The symlink's target now (never followed).
    pub target: Option<PathBuf>,
    /// A rename: where the entry was (relative to the workspace).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<PathBuf>,
    /// A rename: how it was detected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renamed_by: Option<RenameEvidence>,
}

fn is_whiteout(upper: BorrowedFd<'_>, name: &OsStr, st: &libc::stat) -> bool {
    if fmt(st.st_mode) == libc::S_IFCHR && st.st_rdev == 0 {
        return true;
    }
    if fmt(st.st_mode) == libc::S_IFREG && st.st_size == 0 {
        if let Ok(f) =
            fsx::open_beneath(upper, Path::new(name), libc::O_RDONLY | libc::O_NONBLOCK, 0)
        {
            return fsx::fgetxattr(f.as_fd(), "user.overlay.whiteout").is_some();
        }
    }
    false
}

fn is_opaque(dir: BorrowedFd<'_>) -> bool {
    fsx::fgetxattr(dir, "user.overlay.opaque").is_some_and(|v| v == b"y")
}

struct Walker<'a> {
    out: Vec<Change>,
    /// Only paths equal to or below one of these (empty: all).
    only: &'a [PathBuf],
}

impl Walker<'_> {
    fn wanted(&self, rel: &Path) -> bool {
        self.only.is_empty()
            || self
                .only
                .iter()
                .any(|p| rel.starts_with(p) || p.starts_with(rel))
    }

    fn push(&mut self, c: Change) {
        if self.only.is_empty() || self.only.iter().any(|p| c.path.starts_with(p)) {
            self.out.push(c);
        }
    }

    /// `lower`: the same directory in the workspace (None: none, or hidden).
    fn walk(
        &mut self,
        upper: BorrowedFd<'_>,
        lower: Option<BorrowedFd<'_>>,
        rel: &Path,
    ) -> Result<(), OverlayError> {
        let names = fsx::entries(upper).map_err(io_err("read directory (upper)", rel))?;
        let opaque = is_opaque(upper);
        if opaque {
            if let Some(l) = lower {
                let seen: BTreeSet<&OsString> = names.iter().collect();
                for n in fsx::entries(l).map_err(io_err("read directory", rel))? {
                    if !seen.contains(&n) {
                        self.deleted(l, &n, &rel.join(&n))?;
                    }
                }
            }
        }
        for name in &names {
            let path = rel.join(name);
            if !self.wanted(&path) {
                continue;
            }
            let st = fsx::lstat_at(upper, name).map_err(io_err("lstat (upper)", &path))?;
            let lst = lower.and_then(|l| fsx::lstat_at(l, name).ok());
            if is_whiteout(upper, name, &st) {
                if let (Some(l), Some(_)) = (lower, lst) {
                    self.deleted(l, name, &path)?;
                }
                continue;
            }
            let ty = EntryType::of(st.st_mode);
            let mode = st.st_mode & 0o7777;
            let mut change = Change {
                path: path.clone(),
                kind: ChangeKind::Added,
                entry: ty,
                old_mode: lst.map(|s| s.st_mode & 0o7777),
                new_mode: Some(mode),
                size: (ty == EntryType::File).then_some(st.st_size as u64),
                target: None,
                from: None,
                renamed_by: None,
            };
            if ty == EntryType::Symlink {
                change.target = Some(PathBuf::from(
                    fsx::readlink_at(upper, name).map_err(io_err("readlink (upper)", &path))?,
                ));
            }
            match lst {
                None => {}
                Some(ls) if EntryType::of(ls.st_mode) != ty => {
                    // The old entry is gone: a deleted tree is listed, then the new one.
                    if let Some(l) = lower {
                        if EntryType::of(ls.st_mode) == EntryType::Dir {
                            self.deleted(l, name, &path)?;
                            self.out.retain(|c| c.path != path);
                        }
                    }
                    change.kind = ChangeKind::Retyped;
                }
                Some(ls) => {
                    let same_mode = ls.st_mode & 0o7777 == mode;
                    let same = match ty {
                        EntryType::Dir => true,
                        EntryType::Symlink => {
                            let l = lower.ok_or_else(|| {
                                io_err("lstat", &path)(io::ErrorKind::NotFound.into())
                            })?;
                            fsx::readlink_at(l, name).ok().map(PathBuf::from) == change.target
                        }
                        EntryType::File => {
                            st.st_size == ls.st_size
                                && same_contents(upper, lower, name)
                                    .map_err(io_err("compare", &path))?
                        }
                        EntryType::Other => false,
                    };
                    change.kind = match (same, same_mode) {
                        (true, true) => ChangeKind::Added, // marker: no change
                        (true, false) => ChangeKind::Mode,
                        (false, _) => ChangeKind::Modified,
                    };
                    if same && same_mode {
                        if ty == EntryType::Dir {
                            self.recurse(upper, lower, name, &path, true)?;
                        }
                        continue;
                    }
                }
            }
            let is_dir = ty == EntryType::Dir;
            let keep_lower = change.kind == ChangeKind::Mode;
            self.push(change);
            if is_dir {
                self.recurse(upper, lower, name, &path, keep_lower)?;
            }
        }
        Ok(())
    }

    fn recurse(
        &mut self,
        upper: BorrowedFd<'_>,
        lower: Option<BorrowedFd<'_>>,
        name: &OsStr,
        path: &Path,
        with_lower: bool,
    ) -> Result<(), OverlayError> {
        let u = fsx::open_subdir(upper, Path::new(name)).map_err(io_err("open (upper)", path))?;
        let l: Option<OwnedFd> = match lower {
            Some(l) if with_lower => fsx::open_subdir(l, Path::new(name)).ok(),
            _ => None,
        };
        self.walk(u.as_fd(), l.as_ref().map(AsFd::as_fd), path)
    }

    /// `name` of the workspace directory `lower` is deleted: it and (for a directory)
    /// everything below it is listed.
    fn deleted(
        &mut self,
        lower: BorrowedFd<'_>,
        name: &OsStr,
        path: &Path,
    ) -> Result<(), OverlayError> {
        let st = fsx::lstat_at(lower, name).map_err(io_err("lstat", path))?;
        let ty = EntryType::of(st.st_mode);
        self.push(Change {
            path: path.into(),
            kind: ChangeKind::Deleted,
            entry: ty,
            old_mode: Some(st.st_mode & 0o7777),
            new_mode: None,
            size: None,
            target: None,
            from: None,
            renamed_by: None,
        });
        if ty == EntryType::Dir {
            let d = fsx::open_subdir(lower, Path::new(name)).map_err(io_err("open", path))?;
            for n in fsx::entries(d.as_fd()).map_err(io_err("read directory", path))? {
                self.deleted(d.as_fd(), &n, &path.join(&n))?;
            }
        }
        Ok(())
    }
}

fn same_contents(
    upper: BorrowedFd<'_>,
    lower: Option<BorrowedFd<'_>>,
    name: &OsStr,
) -> io::Result<bool> {
    let Some(lower) = lower else { return Ok(false) };
    let flags = libc::O_RDONLY | libc::O_NONBLOCK;
    let mut a = std::fs::File::from(fsx::open_beneath(upper, Path::new(name), flags, 0)?);
    let mut b = std::fs::File::from(fsx::open_beneath(lower, Path::new(name), flags, 0)?);
    let mut ba = vec![0u8; 64 * 1024];
    let mut bb = vec![0u8; 64 * 1024];
    loop {
        let n = read_full(&mut a, &mut ba)?;
        let m = read_full(&mut b, &mut bb)?;
        if n != m || ba[..n] != bb[..m] {
            return Ok(false);
        }
        if n == 0 {
            return Ok(true);
        }
    }
}

fn read_full(f: &mut std::fs::File, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// A hash of a file's contents (read beneath `dir`, no symlink followed): the key that pairs
/// a deleted and an added file before their bytes are compared.
fn content_hash(dir: BorrowedFd<'_>, rel: &Path) -> io::Result<u64> {
    use std::hash::Hasher as _;
    let mut f = std::fs::File::from(fsx::open_beneath(
        dir,
        rel,
        libc::O_RDONLY | libc::O_NONBLOCK,
        0,
    )?);
    // Fixed keys: the same contents give the same value within this process.
    let mut h = std::collections::hash_map::DefaultHasher::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = read_full(&mut f, &mut buf)?;
        if n == 0 {
            return Ok(h.finish());
        }
        h.write(&buf[..n]);
    }
}

/// Whether two files (each beneath its own directory) have the same bytes.
fn same_bytes(a: BorrowedFd<'_>, ra: &Path, b: BorrowedFd<'_>, rb: &Path) -> io::Result<bool> {
    let flags = libc::O_RDONLY | libc::O_NONBLOCK;
    let mut fa = std::fs::File::from(fsx::open_beneath(a, ra, flags, 0)?);
    let mut fb = std::fs::File::from(fsx::open_beneath(b, rb, flags, 0)?);
    let mut ba = vec![0u8; 64 * 1024];
    let mut bb = vec![0u8; 64 * 1024];
    loop {
        let n = read_full(&mut fa, &mut ba)?;
        let m = read_full(&mut fb, &mut bb)?;
        if n != m || ba[..n] != bb[..m] {
            return Ok(false);
        }
        if n == 0 {
            return Ok(true);
        }
    }
}

/// `rel`'s parent directory beneath `dir` (for one-component calls on the entry).
fn parent_of<'p>(dir: BorrowedFd<'_>, rel: &'p Path) -> io::Result<(OwnedFd, &'p OsStr)> {
    let (parent, name) = fsx::split(rel)?;
    Ok((
        fsx::open_beneath(dir, parent, libc::O_PATH | libc::O_DIRECTORY, 0)?,
        name,
    ))
}

/// The rename view of `changes` (what `diff` shows; `commit` works on the raw changes and
/// applies both sides of a rename it selects):
///
/// - a deleted file and an added file of the same size (not empty: as in git, empty files
///   are never paired, nothing tells them apart) and the same bytes (hashed, then compared),
///   or a deleted and an added symlink with the same target, are one rename. An added
///   file with overlayfs' `user.overlay.origin` xattr was copied up from a workspace file
///   (the kernel's rename(2) of a file: evidence [`RenameEvidence::Origin`]); without it a
///   tool copied and deleted ([`RenameEvidence::Contents`]). With several candidates, one
///   with the same file name wins, then the first by path.
/// - then a deleted directory whose every entry below it was renamed to the same relative
///   path below one added directory, which holds nothing else, is one directory rename
///   (overlayfs refuses rename(2) of a workspace directory with EXDEV and `mv` copies).
///
/// A renamed and edited file stays a deletion and an addition. Cost: the deleted and added
/// files of equal sizes are read once each; the rest of the tree is never touched.
pub fn with_renames(ov: &Overlay, mut changes: Vec<Change>) -> Result<Vec<Change>, OverlayError> {
    use std::collections::HashMap;
    // Sorted by path (component-wise): the entries below a directory follow it.
    changes.sort_by(|a, b| a.path.cmp(&b.path));
    let dels: Vec<usize> = (0..changes.len())
        .filter(|&i| {
            changes[i].kind == ChangeKind::Deleted
                && matches!(changes[i].entry, EntryType::File | EntryType::Symlink)
        })
        .collect();
    let adds: Vec<usize> = (0..changes.len())
        .filter(|&i| {
            changes[i].kind == ChangeKind::Added
                && matches!(changes[i].entry, EntryType::File | EntryType::Symlink)
        })
        .collect();
    if dels.is_empty() || adds.is_empty() {
        return Ok(changes);
    }
    let upper = ov.upper()?;
    let lower = ov.workspace()?;
    // What pairs a deletion with an addition before the bytes are compared: the size of a
    // file, the target of a symlink.
    #[derive(PartialEq, Eq, Hash)]
    enum Key {
        File(u64),
        Hashed(u64, u64),
        Link(OsString),
    }
    let mut by_key: HashMap<Key, Vec<usize>> = HashMap::new();
    for &i in &dels {
        let c = &changes[i];
        let Ok((p, name)) = parent_of(lower.as_fd(), &c.path) else {
            continue;
        };
        let key = match c.entry {
            EntryType::File => match fsx::lstat_at(p.as_fd(), name) {
                Ok(st) if st.st_size > 0 => Key::File(st.st_size as u64),
                _ => continue,
            },
            _ => match fsx::readlink_at(p.as_fd(), name) {
                Ok(t) => Key::Link(t),
                Err(_) => continue,
            },
        };
        by_key.entry(key).or_default().push(i);
    }
    let mut renamed: HashMap<usize, (usize, RenameEvidence)> = HashMap::new(); // add -> del
    let mut taken: BTreeSet<usize> = BTreeSet::new();
    // Sizes whose deletions were indexed by the hash of their contents (each read once, the
    // first time an added file of that size needs them).
    let mut hashed: BTreeSet<u64> = BTreeSet::new();
    let mut indexed: BTreeSet<u64> = BTreeSet::new(); // of those, sizes with a deletion left
    for &a in &adds {
        let c = &changes[a];
        let key = match (c.entry, c.size, &c.target) {
            (EntryType::File, Some(n), _) if n > 0 => {
                if hashed.insert(n) {
                    for d in by_key.remove(&Key::File(n)).unwrap_or_default() {
                        if let Ok(h) = content_hash(lower.as_fd(), &changes[d].path) {
                            by_key.entry(Key::Hashed(n, h)).or_default().push(d);
                            indexed.insert(n);
                        }
                    }
                }
                if !indexed.contains(&n) {
                    continue;
                }
                match content_hash(upper.as_fd(), &c.path) {
                    Ok(h) => Key::Hashed(n, h),
                    Err(_) => continue,
                }
            }
            (EntryType::Symlink, _, Some(t)) => Key::Link(t.as_os_str().to_owned()),
            _ => continue,
        };
        let Some(cands) = by_key.get_mut(&key) else {
            continue;
        };
        cands.retain(|d| !taken.contains(d));
        // The same file name first, then path order; the bytes confirm the hash.
        let order = cands
            .iter()
            .filter(|&&d| changes[d].path.file_name() == c.path.file_name())
            .chain(cands.iter())
            .copied()
            .collect::<Vec<usize>>();
        for d in order {
            let found = c.entry == EntryType::Symlink
                || same_bytes(upper.as_fd(), &c.path, lower.as_fd(), &changes[d].path)
                    .unwrap_or(false);
            if found {
                let origin = c.entry == EntryType::File
                    && fsx::open_beneath(
                        upper.as_fd(),
                        &c.path,
                        libc::O_RDONLY | libc::O_NONBLOCK,
                        0,
                    )
                    .ok()
                    .and_then(|f| fsx::fgetxattr(f.as_fd(), "user.overlay.origin"))
                    .is_some();
                let how = if origin {
                    RenameEvidence::Origin
                } else {
                    RenameEvidence::Contents
                };
                taken.insert(d);
                renamed.insert(a, (d, how));
                break;
            }
        }
    }
    if renamed.is_empty() {
        return Ok(changes);
    }
    let mut drop = vec![false; changes.len()];
    let mut out: Vec<Change> = Vec::new();
    // Directories: shallowest first, so that the outermost rename wins.
    let old_to_new: HashMap<&Path, &Path> = renamed
        .iter()
        .map(|(&a, &(d, _))| (changes[d].path.as_path(), changes[a].path.as_path()))
        .collect();
    let index: HashMap<&Path, usize> = changes
        .iter()
        .enumerate()
        .map(|(i, c)| (c.path.as_path(), i))
        .collect();
    let mut ddirs: Vec<usize> = (0..changes.len())
        .filter(|&i| changes[i].kind == ChangeKind::Deleted && changes[i].entry == EntryType::Dir)
        .collect();
    ddirs.sort_by_key(|&i| changes[i].path.components().count());
    for dd in ddirs {
        if drop[dd] {
            continue;
        }
        let d = &changes[dd].path;
        let below = |root: usize| -> Vec<usize> {
            (root + 1..changes.len())
                .take_while(|&i| changes[i].path.starts_with(&changes[root].path))
                .collect()
        };
        let under_d = below(dd);
        // The target directory, from the first renamed entry below D.
        let Some(a) = under_d.iter().find_map(|&i| {
            let new = old_to_new.get(changes[i].path.as_path())?;
            let rel = changes[i].path.strip_prefix(d).ok()?;
            let a = new.ancestors().nth(rel.components().count())?;
            (a.join(rel) == *new).then(|| a.to_path_buf())
        }) else {
            continue;
        };
        let Some(&ai) = index.get(a.as_path()) else {
            continue;
        };
        if changes[ai].kind != ChangeKind::Added || changes[ai].entry != EntryType::Dir {
            continue;
        }
        let under_a = below(ai);
        let all_match = under_d.len() == under_a.len()
            && under_d.iter().all(|&i| {
                let c = &changes[i];
                let Ok(rel) = c.path.strip_prefix(d) else {
                    return false;
                };
                let target = a.join(rel);
                match c.entry {
                    EntryType::Dir => index.get(target.as_path()).is_some_and(|&t| {
                        changes[t].kind == ChangeKind::Added && changes[t].entry == EntryType::Dir
                    }),
                    _ => old_to_new.get(c.path.as_path()) == Some(&target.as_path()),
                }
            });
        if !all_match {
            continue;
        }
        for i in under_d.into_iter().chain(under_a).chain([dd, ai]) {
            drop[i] = true;
        }
        out.push(Change {
            path: a.clone(),
            kind: ChangeKind::Renamed,
            entry: EntryType::Dir,
            old_mode: changes[dd].old_mode,
            new_mode: changes[ai].new_mode,
            size: None,
            target: None,
            from: Some(d.clone()),
            renamed_by: Some(RenameEvidence::Contents),
        });
    }
    for (&a, &(d, how)) in &renamed {
        if drop[a] || drop[d] {
            continue;
        }
        drop[a] = true;
        drop[d] = true;
        out.push(Change {
            kind: ChangeKind::Renamed,
            old_mode: changes[d].old_mode,
            from: Some(changes[d].path.clone()),
            renamed_by: Some(how),
            ..changes[a].clone()
        });
    }
    out.extend(
        changes
            .into_iter()
            .zip(drop)
            .filter(|(_, dropped)| !dropped)
            .map(|(c, _)| c),
    );
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

impl Overlay {
    /// The changes of the upper layer against the workspace, sorted by path; `only`: paths
    /// (relative to the workspace) to restrict to (empty: all). Cost: the upper layer's
    /// entries plus, for deleted directories, their contents.
    pub fn changes(&self, only: &[PathBuf]) -> Result<Vec<Change>, OverlayError> {
        let upper = self.upper()?;
        let lower = self.workspace()?;
        let mut w = Walker {
            out: Vec::new(),
            only,
        };
        w.walk(upper.as_fd(), Some(lower.as_fd()), Path::new(""))?;
        let mut out = w.out;
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }

    /// Reads a file of the upper layer (for `diff --patch`), at most `max` bytes.
    pub fn read_upper(&self, rel: &Path, max: usize) -> Result<Vec<u8>, OverlayError> {
        let upper = self.upper()?;
        read_beneath(upper.as_fd(), rel, max)
    }

    /// Reads a file of the workspace (for `diff --patch`), at most `max` bytes.
    pub fn read_lower(&self, rel: &Path, max: usize) -> Result<Vec<u8>, OverlayError> {
        let lower = self.workspace()?;
        read_beneath(lower.as_fd(), rel, max)
    }
}

fn read_beneath(dir: BorrowedFd<'_>, rel: &Path, max: usize) -> Result<Vec<u8>, OverlayError> {
    let f = fsx::open_beneath(dir, rel, libc::O_RDONLY | libc::O_NONBLOCK, 0)
        .map_err(io_err("open", rel))?;
    let mut out = Vec::new();
    std::fs::File::from(f)
        .take(max as u64)
        .read_to_end(&mut out)
        .map_err(io_err("read", rel))?;
    Ok(out)
}

/// What the lower entry was when the launcher first saw its path changed: `base.json`.
type Stamp = [i64; 5];

fn stamp(st: &libc::stat) -> Stamp {
    [
        st.st_ino as i64,
        st.st_size,
        st.st_mtime * 1_000_000_000 + st.st_mtime_nsec,
        st.st_ctime * 1_000_000_000 + st.st_ctime_nsec,
        i64::from(st.st_mode),
    ]
}

fn load_base(ov: &Overlay) -> BTreeMap<String, Stamp> {
    super::store::read_own(&ov.dir.join("base.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

/// Writes `base.json` (a temp file and a rename); an empty record is no file (one unlink,
/// not three journaled changes, when a commit or discard took everything).
fn save_base(ov: &Overlay, base: &BTreeMap<String, Stamp>) -> Result<(), OverlayError> {
    if base.is_empty() {
        let p = ov.dir.join("base.json");
        return match std::fs::remove_file(&p) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_err("remove", p)(e)),
            _ => Ok(()),
        };
    }
    // A name of this process's own: two `diff`s of one overlay at once (a CLI and the MCP
    // server, say) must not write, or rename away, each other's temporary file.
    static SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = ov
        .dir
        .join(format!("base.json.tmp.{}.{seq}", std::process::id()));
    super::store::write_private(&tmp, &serde_json::to_vec(base).unwrap_or_default())?;
    let dst = ov.dir.join("base.json");
    std::fs::rename(&tmp, &dst).map_err(io_err("rename", dst))
}

fn had_lower(c: &Change) -> bool {
    matches!(
        c.kind,
        ChangeKind::Modified | ChangeKind::Mode | ChangeKind::Retyped | ChangeKind::Deleted
    )
}

/// Records, for every changed path whose workspace entry is not recorded yet, what that
/// entry is now (inode, size, mtime, ctime, mode): `commit` refuses a path whose workspace
/// entry differs from its record (someone changed it after the overlay saw it). Called at
/// the end of each run and by `diff`/`commit` (a running session's changes). Returns the
/// changes.
pub fn record_base(ov: &Overlay) -> Result<Vec<Change>, OverlayError> {
    let changes = ov.changes(&[])?;
    let lower = ov.workspace()?;
    let mut base = load_base(ov);
    let before = base.len();
    let live: BTreeSet<String> = changes
        .iter()
        .map(|c| c.path.to_string_lossy().into_owned())
        .collect();
    base.retain(|k, _| live.contains(k));
    let mut dirty = base.len() != before;
    for c in changes.iter().filter(|c| had_lower(c)) {
        let k = c.path.to_string_lossy().into_owned();
        if base.contains_key(&k) {
            continue;
        }
        if let Ok(st) = fsx::lstat_beneath(lower.as_fd(), &c.path) {
            base.insert(k, stamp(&st));
            dirty = true;
        }
    }
    if dirty {
        save_base(ov, &base)?;
    }
    Ok(changes)
}

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
            remove_tree(d.as_fd(), name)
        } else {
            fsx::unlink_at(d.as_fd(), name, true)
        }
    } else {
        fsx::unlink_at(d.as_fd(), name, false)
    }
}

/// Removes `name` of `dir` and, for a directory, everything below it, by fd.
fn remove_tree(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<()> {
    let st = fsx::lstat_at(dir, name)?;
    if fmt(st.st_mode) != libc::S_IFDIR {
        return fsx::unlink_at(dir, name, false);
    }
    let sub = fsx::open_subdir(dir, Path::new(name))?;
    for n in fsx::entries(sub.as_fd())? {
        remove_tree(sub.as_fd(), &n)?;
    }
    drop(sub);
    fsx::unlink_at(dir, name, true)
}

fn remove_lower(lower: BorrowedFd<'_>, rel: &Path) -> io::Result<()> {
    let (parent, name) = fsx::split(rel)?;
    let d = match fsx::open_beneath(lower, parent, libc::O_RDONLY | libc::O_DIRECTORY, 0) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        r => r?,
    };
    match remove_tree(d.as_fd(), name) {
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

static TMP_SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

fn tmp_name() -> OsString {
    let n = TMP_SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    OsString::from(format!(".agentcage-commit.{}.{n}", std::process::id()))
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

impl Change {
    /// The one-letter status `diff --stat` shows.
    pub fn letter(&self) -> char {
        match self.kind {
            ChangeKind::Added => 'A',
            ChangeKind::Modified => 'M',
            ChangeKind::Mode => 'm',
            ChangeKind::Retyped => 'T',
            ChangeKind::Deleted => 'D',
            ChangeKind::Renamed => 'R',
        }
    }
}
