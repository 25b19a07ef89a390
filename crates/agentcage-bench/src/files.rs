//! Picks the files the open/stat loops touch: one regular file under `/usr` at each depth from
//! 3 to 6 (`/usr/bin/ls` has depth 3), found by a breadth-first walk at bench start.
//!
//! Why several depths: Landlock checks every path component on `open`, so its cost grows with
//! depth while the plain path walk's grows much more slowly; one number per depth shows it.
//! Why `/usr`: every profile binds it read-only at the same path, and Landlock allows reading it,
//! so the same path names work inside and outside the sandbox.
//!
//! The walk is deterministic (entries sorted by name) so two runs on one machine pick the same
//! files. It does not follow symlinks, and it only takes files that the sandboxed command can
//! open when the bench runs as root (the command then runs as an unprivileged host uid):
//! world-readable files below world-searchable directories.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Shallowest depth measured.
pub const MIN_DEPTH: usize = 3;
/// Deepest depth measured.
pub const MAX_DEPTH: usize = 6;
/// Upper bound on directories read, so a huge `/usr` cannot stall the bench.
const MAX_DIRS: usize = 50_000;

/// A file picked for the open/stat loops.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DepthFile {
    /// Number of path components (`/usr/bin/ls` = 3).
    pub depth: usize,
    /// Absolute path.
    pub path: PathBuf,
}

/// One file per depth in `MIN_DEPTH..=MAX_DEPTH` under `root`, shallowest first. Depths with no
/// suitable file are left out.
pub fn pick(root: &Path) -> Vec<DepthFile> {
    let root_depth = root.components().count() - 1; // "/" is a component
    let mut found: Vec<DepthFile> = Vec::new();
    if !searchable(root) {
        return found;
    }
    let mut level = vec![root.to_path_buf()];
    let mut dirs_read = 0usize;
    let mut depth = root_depth + 1; // depth of the entries of `level`
    while !level.is_empty() && depth <= MAX_DEPTH && dirs_read < MAX_DIRS {
        let mut next = Vec::new();
        for dir in &level {
            dirs_read += 1;
            if dirs_read > MAX_DIRS {
                break;
            }
            let Ok(entries) = fs::read_dir(dir) else {
                continue;
            };
            let mut entries: Vec<PathBuf> =
                entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
            entries.sort();
            for path in entries {
                let Ok(meta) = fs::symlink_metadata(&path) else {
                    continue;
                };
                let mode = meta.permissions().mode();
                if meta.is_dir() && mode & 0o001 != 0 {
                    next.push(path);
                } else if meta.is_file()
                    && mode & 0o004 != 0
                    && depth >= MIN_DEPTH
                    && !found.iter().any(|f| f.depth == depth)
                {
                    found.push(DepthFile { depth, path });
                }
            }
        }
        level = next;
        depth += 1;
        if (MIN_DEPTH..=MAX_DEPTH).all(|d| found.iter().any(|f| f.depth == d)) {
            break;
        }
    }
    found.sort_by_key(|f| f.depth);
    found
}

/// Whether `dir` and each of its ancestors can be searched by any user.
fn searchable(dir: &Path) -> bool {
    dir.ancestors().all(|a| {
        fs::metadata(a)
            .map(|m| m.is_dir() && m.permissions().mode() & 0o001 != 0)
            .unwrap_or(false)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tempdir::TempDir;

    fn touch(p: &Path, mode: u32) {
        fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        fs::write(p, b"x").expect("write");
        fs::set_permissions(p, fs::Permissions::from_mode(mode)).expect("chmod");
    }

    #[test]
    fn picks_one_readable_file_per_depth_in_name_order() {
        let t = TempDir::new("files").expect("temp dir");
        let base = t.path();
        let d = base.components().count() - 1;
        // Depth d+1..d+4 relative to `base`: treat base as the root being walked.
        touch(&base.join("b/zz"), 0o644);
        touch(&base.join("b/aa"), 0o600); // not world-readable: skipped
        touch(&base.join("a/c/f"), 0o644);
        touch(&base.join("a/c/e/g"), 0o644);
        std::os::unix::fs::symlink("/etc/hostname", base.join("a/c/e/0link")).expect("symlink");
        let got = pick(base);
        let rel: Vec<(usize, String)> = got
            .iter()
            .map(|f| {
                (
                    f.depth - d,
                    f.path
                        .strip_prefix(base)
                        .expect("under base")
                        .display()
                        .to_string(),
                )
            })
            .filter(|(rd, _)| d + rd >= MIN_DEPTH)
            .collect();
        let want: Vec<(usize, String)> = [(2, "b/zz"), (3, "a/c/f"), (4, "a/c/e/g")]
            .into_iter()
            .filter(|(rd, _)| (MIN_DEPTH..=MAX_DEPTH).contains(&(d + rd)))
            .map(|(rd, p)| (rd, p.to_string()))
            .collect();
        assert_eq!(rel, want);
    }

    #[test]
    fn usr_has_files_at_every_depth() {
        let got = pick(Path::new("/usr"));
        let depths: Vec<usize> = got.iter().map(|f| f.depth).collect();
        assert_eq!(depths, vec![3, 4, 5, 6], "{got:?}");
        for f in &got {
            assert_eq!(f.path.components().count() - 1, f.depth);
            assert!(fs::metadata(&f.path).expect("exists").is_file());
        }
    }

    #[test]
    fn missing_root_gives_nothing() {
        assert!(pick(Path::new("/nonexistent/agentcage-bench")).is_empty());
    }
}
