//! A private temporary directory for the bench's static `true`, removed on drop.
//!
//! It is created with a fresh unpredictable name (`create_dir` fails if the name exists, so a
//! pre-planted path is never reused) and then opened up to mode 0755: when the bench runs as
//! root, the sandboxed command runs as an unprivileged host uid and must be able to reach and
//! execute the file. The directory is handed to the sandbox as its workspace.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// A directory under the system temp dir, removed (with its contents) when dropped.
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// Creates `$TMPDIR/agentcage-bench-<tag>-<pid>-<random>` with mode 0755.
    ///
    /// # Errors
    /// The directory cannot be created.
    pub fn new(tag: &str) -> io::Result<TempDir> {
        let base = std::env::temp_dir();
        let mut last = None;
        for attempt in 0..16u64 {
            let nonce = crate::stats::Rng::from_entropy().next_u64() ^ attempt;
            let path = base.join(format!(
                "agentcage-bench-{tag}-{}-{nonce:016x}",
                std::process::id()
            ));
            match fs::create_dir(&path) {
                Ok(()) => {
                    let dir = TempDir { path };
                    fs::set_permissions(&dir.path, fs::Permissions::from_mode(0o755))?;
                    return Ok(dir);
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| io::Error::other("no free temp dir name")))
    }

    /// The directory's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        // Best effort: a failure leaves a small directory behind, never breaks the run.
        if fs::remove_dir_all(&self.path).is_err() {
            // A read-only directory inside (a run's placeholder, mode 0555, that another
            // concurrent run put a placeholder file in) stops an unprivileged bench from
            // removing its entries: make the directories writable, then try again.
            make_dirs_writable(&self.path);
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

/// Mode 0755 on `dir` and every directory below it; symlinks are never followed.
fn make_dirs_writable(dir: &Path) {
    if !fs::symlink_metadata(dir).is_ok_and(|m| m.is_dir()) {
        return;
    }
    let _ = fs::set_permissions(dir, fs::Permissions::from_mode(0o755));
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            make_dirs_writable(&e.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_world_readable_and_removed_on_drop() {
        let dir = TempDir::new("unit").expect("temp dir");
        let path = dir.path().to_path_buf();
        fs::write(path.join("f"), b"x").expect("write");
        let mode = fs::metadata(&path).expect("metadata").permissions().mode();
        assert_eq!(mode & 0o777, 0o755);
        drop(dir);
        assert!(!path.exists());
    }

    #[test]
    fn read_only_dirs_inside_are_opened_up_but_symlinks_are_not_followed() {
        let dir = TempDir::new("unit").expect("temp dir");
        let outside = TempDir::new("unit").expect("outside");
        let ro = dir.path().join("ro");
        fs::create_dir_all(ro.join("deeper")).expect("mkdir");
        fs::write(ro.join("deeper/f"), b"x").expect("write");
        std::os::unix::fs::symlink(outside.path(), ro.join("link")).expect("symlink");
        for d in [ro.join("deeper"), ro.clone(), outside.path().to_path_buf()] {
            fs::set_permissions(&d, fs::Permissions::from_mode(0o555)).expect("chmod");
        }
        make_dirs_writable(dir.path());
        let mode = |p: &Path| fs::metadata(p).expect("metadata").permissions().mode() & 0o777;
        assert_eq!(mode(&ro), 0o755);
        assert_eq!(mode(&ro.join("deeper")), 0o755);
        assert_eq!(mode(outside.path()), 0o555);
        fs::set_permissions(outside.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
        let path = dir.path().to_path_buf();
        drop(dir);
        assert!(!path.exists());
        assert!(outside.path().exists());
    }

    #[test]
    fn two_dirs_get_distinct_names() {
        let a = TempDir::new("unit").expect("a");
        let b = TempDir::new("unit").expect("b");
        assert_ne!(a.path(), b.path());
    }
}
