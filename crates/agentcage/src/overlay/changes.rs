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
use std::io::{self, Read};
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

pub(super) fn read_full(f: &mut std::fs::File, buf: &mut [u8]) -> io::Result<usize> {
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

pub(super) fn stamp(st: &libc::stat) -> Stamp {
    [
        st.st_ino as i64,
        st.st_size,
        st.st_mtime * 1_000_000_000 + st.st_mtime_nsec,
        st.st_ctime * 1_000_000_000 + st.st_ctime_nsec,
        i64::from(st.st_mode),
    ]
}

pub(super) fn load_base(ov: &Overlay) -> BTreeMap<String, Stamp> {
    super::store::read_own(&ov.dir.join("base.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

/// Writes `base.json` (a temp file and a rename); an empty record is no file (one unlink,
/// not three journaled changes, when a commit or discard took everything).
pub(super) fn save_base(ov: &Overlay, base: &BTreeMap<String, Stamp>) -> Result<(), OverlayError> {
    if base.is_empty() {
        let p = ov.dir.join("base.json");
        return match std::fs::remove_file(&p) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_err("remove", p)(e)),
            _ => Ok(()),
        };
    }
    // A name of this process's own: two `diff`s of one overlay at once (a CLI and the MCP
    // server, say) must not write, or rename away, each other's temporary file.
    let tmp = ov.dir.join(tmp_name());
    super::store::write_private(&tmp, &serde_json::to_vec(base).unwrap_or_default())?;
    let dst = ov.dir.join("base.json");
    std::fs::rename(&tmp, &dst).map_err(io_err("rename", dst))
}

static TMP_SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// A temporary name unique to this process and call (commit's temp files, base.json's).
pub(super) fn tmp_name() -> OsString {
    let n = TMP_SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    OsString::from(format!(".agentcage-commit.{}.{n}", std::process::id()))
}

pub(super) fn had_lower(c: &Change) -> bool {
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
