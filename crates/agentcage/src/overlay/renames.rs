//! The rename view of the raw changes ([`with_renames`]): what `diff` shows. `commit` works on
//! the raw changes (and applies both sides of a rename it selects).

use std::collections::BTreeSet;
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use super::changes::{read_full, Change, ChangeKind, EntryType, RenameEvidence};
use super::fsx;
use super::store::{Overlay, OverlayError};

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
