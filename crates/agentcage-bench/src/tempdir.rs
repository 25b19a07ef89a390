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
        let _ = fs::remove_dir_all(&self.path);
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
    fn two_dirs_get_distinct_names() {
        let a = TempDir::new("unit").expect("a");
        let b = TempDir::new("unit").expect("b");
        assert_ne!(a.path(), b.path());
    }
}
