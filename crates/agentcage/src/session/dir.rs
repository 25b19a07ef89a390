//! Where sessions live on the host: the runtime directory (`$XDG_RUNTIME_DIR/agentcage/`,
//! else `/run/agentcage/UID/`, mode 0700, ours), and in it `NAME.sock` (the control socket)
//! and `NAME.json` (the state: who serves it, since when, with which profile).

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::SessionError;
use crate::sys;

/// A session's state file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct State {
    /// The session's name.
    pub name: String,
    /// The supervisor's pid.
    pub pid: i32,
    /// The supervisor's start time (field 22 of /proc/PID/stat, clock ticks since boot): a
    /// recycled pid does not pass for the supervisor.
    pub start_time: u64,
    /// The sandbox's first process (the zygote), host pid.
    pub sandbox_pid: i32,
    /// The policy's profile.
    pub profile: String,
    /// The workspace.
    pub workspace: PathBuf,
    /// Creation time, seconds since the epoch.
    pub created: u64,
    /// Idle timeout in seconds (none: until stopped).
    pub idle_timeout_s: Option<f64>,
    /// The control socket.
    pub socket: PathBuf,
}

impl State {
    /// Whether the supervisor that wrote this still runs.
    pub fn alive(&self) -> bool {
        proc_start_time(self.pid) == Some(self.start_time)
    }
}

/// Field 22 of /proc/PID/stat (start time), `None` when there is no such process.
pub fn proc_start_time(pid: i32) -> Option<u64> {
    if pid <= 0 {
        return None;
    }
    let s = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // comm may contain spaces and parentheses: fields start after the last ')'.
    let rest = &s[s.rfind(')')? + 2..];
    rest.split(' ').nth(19)?.parse().ok()
}

/// The runtime directory, created when missing (0700, without following a symlink) and
/// checked: ours (or root's when we are root), not group/world accessible, not a symlink.
///
/// # Errors
/// [`SessionError::RuntimeDir`] naming the directory and what is wrong.
pub fn runtime_dir() -> Result<PathBuf, SessionError> {
    let uid = sys::geteuid();
    let (base, dir) = match std::env::var_os("XDG_RUNTIME_DIR").filter(|v| !v.is_empty()) {
        Some(x) => {
            let x = PathBuf::from(x);
            (x.clone(), x.join("agentcage"))
        }
        None => {
            let base = PathBuf::from("/run/agentcage");
            let dir = base.join(uid.to_string());
            (base, dir)
        }
    };
    let err = |path: &Path, why: String| SessionError::RuntimeDir {
        path: path.to_path_buf(),
        why,
    };
    if !base.is_absolute() {
        return Err(err(&base, "XDG_RUNTIME_DIR is not an absolute path".into()));
    }
    if std::env::var_os("XDG_RUNTIME_DIR").is_none() && !base.exists() {
        // /run/agentcage is shared by every user: 0755 root, or sticky 1777 when a non-root
        // user has to create it (then each user's own 0700 directory is what counts).
        let _ = fs::DirBuilder::new().mode(0o755).create(&base);
    }
    match fs::DirBuilder::new().mode(0o700).create(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(err(&dir, format!("create it: {e}"))),
    }
    // Opened without following a symlink, then checked through the fd.
    let f = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW)
        .open(&dir)
        .map_err(|e| err(&dir, format!("open it (a symlink is refused): {e}")))?;
    let md = f
        .metadata()
        .map_err(|e| err(&dir, format!("stat it: {e}")))?;
    if md.uid() != uid {
        return Err(err(
            &dir,
            format!("owned by uid {}, not by us (uid {uid})", md.uid()),
        ));
    }
    if md.mode() & 0o077 != 0 {
        return Err(err(
            &dir,
            format!(
                "mode {:o}: group or others have access (it must be 0700)",
                md.mode() & 0o7777
            ),
        ));
    }
    Ok(dir)
}

/// A session name: 1 to 64 of `[A-Za-z0-9._-]`, not starting with `.` or `-`.
///
/// # Errors
/// [`SessionError::BadName`].
pub fn check_name(name: &str) -> Result<(), SessionError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with(['.', '-'])
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(SessionError::BadName { name: name.into() })
    }
}

/// A fresh name (`s-` and 8 hex digits).
pub fn generate_name() -> String {
    let r = crate::limits::cgroup::random_u64();
    format!("s-{:08x}", r as u32)
}

/// `NAME.sock` in `dir`.
pub fn socket_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.sock"))
}

/// `NAME.json` in `dir`.
pub fn state_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.json"))
}

/// Writes the state file (a temporary file renamed over it, 0600).
///
/// # Errors
/// The io error, with the path.
pub fn write_state(dir: &Path, st: &State) -> io::Result<()> {
    let tmp = dir.join(format!(".{}.json.tmp", st.name));
    let body = serde_json::to_vec_pretty(st).map_err(io::Error::other)?;
    {
        use std::io::Write;
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&tmp)?;
        f.write_all(&body)?;
    }
    fs::rename(&tmp, state_path(dir, &st.name))
}

/// Reads a state file; `None` when missing or unreadable (a half-written one is never seen:
/// they are renamed into place).
pub fn read_state(dir: &Path, name: &str) -> Option<State> {
    let b = fs::read(state_path(dir, name)).ok()?;
    serde_json::from_slice(&b).ok()
}

/// Removes a session's socket and state file (what is missing is fine).
pub fn remove_files(dir: &Path, name: &str) {
    let _ = fs::remove_file(socket_path(dir, name));
    let _ = fs::remove_file(state_path(dir, name));
}

/// Every session with a state file, with whether its supervisor runs; the state (and socket)
/// of a dead one is removed, and so are the cgroup leaves of dead launchers.
pub fn list_and_reap(dir: &Path) -> Vec<(State, bool)> {
    let mut out = Vec::new();
    let mut reaped = false;
    let Ok(entries) = fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let file = e.file_name();
        let Some(name) = file.to_str().and_then(|f| f.strip_suffix(".json")) else {
            continue;
        };
        if check_name(name).is_err() {
            continue;
        }
        let Some(st) = read_state(dir, name) else {
            continue;
        };
        let alive = st.alive();
        if !alive {
            remove_files(dir, name);
            reaped = true;
        }
        out.push((st, alive));
    }
    if reaped {
        let _ = crate::limits::cgroup::reap_stale();
    }
    out.sort_by(|a, b| a.0.name.cmp(&b.0.name));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["a", "s-0123abcd", "my.task_1"] {
            assert!(check_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".x", "-x", "a/b", "a b", "..", &"x".repeat(65)] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
        assert!(check_name(&generate_name()).is_ok());
    }

    #[test]
    fn start_time_of_self() {
        let me = std::process::id() as i32;
        assert!(proc_start_time(me).is_some());
        assert_eq!(proc_start_time(-1), None);
    }
}
