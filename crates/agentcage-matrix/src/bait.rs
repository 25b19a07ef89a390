//! The bait: things outside the sandbox that the probe tries to reach, set up before the first
//! run and torn down after the last one (guards: on success, error, panic or Ctrl-C).
//!
//! | bait | probe flag | layers meant to stop it (the matrix measures which do) |
//! | --- | --- | --- |
//! | a sentinel process of ours (same uid) | `--sentinel-pid` | user-ns, pid-ns, landlock scoping |
//! | a canary secret file in a private temp dir | `--canary` | mount-ns, landlock |
//! | an environment secret | `--secret-env` | hygiene |
//! | an inherited fd (no close-on-exec) | `--inherited-fd` | hygiene |
//! | a TCP listener on 127.0.0.1 | `--tcp-port` | net-ns, landlock (ABI 4) |
//! | a UDP echo socket on 127.0.0.1 | `--udp-port` | net-ns |
//! | a filesystem unix listener | `--unix-path` | mount-ns, landlock |
//! | a unix listener in `ro/`, bound read-only (`--ro` to the launcher) | `--unix-ro-path` | mount-ns (the launcher masks it) |
//! | an abstract unix listener | `--abstract` | net-ns, landlock (ABI 6) |
//! | a scratch workspace, one per run ([`Workspace`]) | `--workspace` | (the sandbox may write it) |
//! | `ws-N/.git/hooks` and `ws-N/.git/config`, bound read-only inside the workspace (`--ro` to the launcher) | `--workspace` | mount-ns (its ancestors are pinned) |
//! | our namespace inodes, /etc/passwd and /etc/shadow identities | `--host-ns`, `--host-inode` | (lets the probe tell the host's from the sandbox's own) |
//!
//! Layout of the private temp dir (mode 0711, owned by the caller):
//! `bait/` (canary, unix socket, inherited-fd file), `ro/` (a unix socket, bound read-only),
//! `ws-N/` (run N's workspace, with `.git/hooks` and `.git/config` bound read-only; made before
//! the run, removed after it), `bin/agentcage` (a copy of the binary for runs without a mount
//! namespace) and `out/` (run output, 0700).
//! When the caller is root, the sandbox runs as host uid [`SANDBOX_HOST_UID`], so `bait/`,
//! `ws-N/` and their contents are handed to that uid: the bait must be *reachable but for the
//! sandbox*, otherwise plain file permissions would hide what the layers do.

use std::fs::{self, File, OpenOptions};
use std::io::{self, ErrorKind, Read, Write};
use std::net::{TcpListener, UdpSocket};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::fs::{chown, DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::net::{SocketAddr, UnixListener};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context as _;

use crate::sys;

/// The host uid (and gid) a root caller's sandbox runs as (the launcher's default `--host-uid`).
pub const SANDBOX_HOST_UID: u32 = 65534;

/// The environment variable that carries the environment secret.
pub const SECRET_ENV: &str = "AGENTCAGE_CANARY_SECRET";

/// The "user" key each run's launcher gets in a fresh session keyring of its own (its value
/// is the secret), for the probe's `proc.read.session_key`.
pub const SESSION_KEY: &std::ffi::CStr = c"agentcage-matrix-session-key";

/// Host files whose identity the probe checks when it reads them.
pub const HOST_FILES: [&str; 2] = ["/etc/passwd", "/etc/shadow"];

/// The lowest fd number the inherited fd gets in the `agentcage run` child.
pub const INHERITED_FD_MIN: RawFd = 9;

/// Removes a directory tree on drop.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Listeners that accept in background threads (so connects complete and the backlog never
/// fills) until dropped.
struct Listeners {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Listeners {
    fn spawn<L, S>(&mut self, listener: L, accept: fn(&L) -> io::Result<S>)
    where
        L: Send + 'static,
        S: 'static,
    {
        let stop = Arc::clone(&self.stop);
        self.threads.push(std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                match accept(&listener) {
                    Ok(conn) => drop(conn),
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(10))
                    }
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(_) => std::thread::sleep(Duration::from_millis(50)),
                }
            }
        }));
    }
}

/// The UDP bait: echoes one datagram back to its sender.
fn echo(s: &UdpSocket) -> io::Result<()> {
    let mut b = [0u8; 512];
    let (n, from) = s.recv_from(&mut b)?;
    s.send_to(&b[..n], from).map(drop)
}

impl Drop for Listeners {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Everything set up outside the sandbox. Dropping it kills the sentinel, stops the listeners
/// and removes the temp dir (fields drop in declaration order: the dir goes last).
pub struct Bait {
    /// The canary secret file.
    pub canary: PathBuf,
    /// The filesystem unix listener's path.
    pub unix_path: PathBuf,
    /// `ro/listener.sock`; `ro/` is passed to `agentcage run --ro`.
    pub unix_ro_path: PathBuf,
    /// The abstract unix listener's name (without the leading NUL).
    pub abstract_name: String,
    /// The loopback TCP listener's port.
    pub tcp_port: u16,
    /// The loopback UDP echo socket's port.
    pub udp_port: u16,
    /// The value of [`SECRET_ENV`].
    pub secret: String,
    /// A copy of the agentcage binary that the sandbox uid can execute, for runs without a
    /// mount namespace (where `/run/agentcage/agentcage` does not exist).
    pub binary_copy: PathBuf,
    /// Where run output files go (private to the caller).
    pub out_dir: PathBuf,
    /// The host's namespace inodes (`net=4026531840,pid=...`), for the probe's info rows.
    pub host_ns: String,
    /// `PATH=DEV:INO` of [`HOST_FILES`], so the probe tells the host's file from a sandbox's
    /// own copy (a synthesized /etc/passwd is not the host's).
    pub host_inodes: Vec<String>,
    inherited: OwnedFd,
    /// Who gets the workspaces (the sandbox's host uid when the caller is root).
    owner: Option<u32>,
    _listeners: Listeners,
    sentinel: sys::Sentinel,
    _dir: TempDir,
}

/// One run's workspace, `ws-N/` in the bait's temp dir, removed on drop.
///
/// Every run gets its own: the probe of a run without a mount namespace really does what its
/// ops try (it renames `.git` away and back, renames over `.git/config`), and a run in
/// parallel on the same workspace would see it: its launcher, binding `.git/hooks` by path
/// with no symlink followed, fails closed with ENOENT while `.git` is away (a setup failure
/// of a profile that works), or makes a placeholder `.git` there.
pub struct Workspace {
    /// The workspace passed to `agentcage run --workspace` and to the probe.
    pub path: PathBuf,
    /// `.git/hooks`: passed to `agentcage run --ro`, a protected path inside the workspace.
    pub protected: PathBuf,
    /// `.git/config`: passed to `agentcage run --ro`, a protected file (the probe renames
    /// over it, re-opens it read-write).
    pub protected_file: PathBuf,
}

impl Drop for Workspace {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

impl Bait {
    /// Sets up every bait; `agentcage` is copied into the temp dir.
    ///
    /// # Errors
    /// A temp dir, file, listener or the sentinel could not be created.
    pub fn setup(agentcage: &Path) -> anyhow::Result<Bait> {
        let (uid, _) = sys::ids();
        let owner = (uid == 0).then_some(SANDBOX_HOST_UID);
        let secret = random_hex(16).context("read /dev/urandom")?;
        let tag = format!("{}.{}", std::process::id(), &secret[..8]);

        let root = std::env::temp_dir().join(format!("agentcage-matrix.{tag}"));
        fs::DirBuilder::new()
            .mode(0o711)
            .create(&root)
            .with_context(|| format!("create {}", root.display()))?;
        let dir = TempDir(root.clone());
        // mkdir honours the umask: set the mode explicitly.
        fs::set_permissions(&root, fs::Permissions::from_mode(0o711))?;

        let mkdir = |name: &str, mode: u32, handed: bool| -> anyhow::Result<PathBuf> {
            let p = root.join(name);
            fs::DirBuilder::new()
                .mode(mode)
                .create(&p)
                .with_context(|| format!("create {}", p.display()))?;
            fs::set_permissions(&p, fs::Permissions::from_mode(mode))?;
            if handed {
                hand_over(&p, owner)?;
            }
            Ok(p)
        };
        let bait_dir = mkdir("bait", 0o700, true)?;
        let bin_dir = mkdir("bin", 0o755, false)?;
        let out_dir = mkdir("out", 0o700, false)?;

        let canary = bait_dir.join("canary-secret");
        write_file(
            &canary,
            format!("agentcage canary {secret}\n").as_bytes(),
            0o600,
            owner,
        )?;
        let inherited_path = bait_dir.join("inherited-fd-secret");
        write_file(
            &inherited_path,
            format!("agentcage inherited fd {secret}\n").as_bytes(),
            0o600,
            owner,
        )?;
        let file = File::open(&inherited_path)
            .with_context(|| format!("open {}", inherited_path.display()))?;
        let inherited = sys::dup_at_least(file.as_fd(), INHERITED_FD_MIN)
            .context("reserve the inherited fd")?;

        let binary_copy = bin_dir.join("agentcage");
        fs::copy(agentcage, &binary_copy).with_context(|| {
            format!("copy {} to {}", agentcage.display(), binary_copy.display())
        })?;
        fs::set_permissions(&binary_copy, fs::Permissions::from_mode(0o755))?;

        let mut listeners = Listeners {
            stop: Arc::new(AtomicBool::new(false)),
            threads: Vec::new(),
        };
        let tcp = TcpListener::bind("127.0.0.1:0").context("bind a loopback TCP listener")?;
        tcp.set_nonblocking(true)?;
        let tcp_port = tcp.local_addr()?.port();
        listeners.spawn(tcp, TcpListener::accept);
        let udp = UdpSocket::bind("127.0.0.1:0").context("bind a loopback UDP socket")?;
        udp.set_nonblocking(true)?;
        let udp_port = udp.local_addr()?.port();
        listeners.spawn(udp, echo);

        let unix_path = bait_dir.join("listener.sock");
        let unix = UnixListener::bind(&unix_path)
            .with_context(|| format!("bind {}", unix_path.display()))?;
        unix.set_nonblocking(true)?;
        fs::set_permissions(&unix_path, fs::Permissions::from_mode(0o666))?;
        hand_over(&unix_path, owner)?;
        listeners.spawn(unix, UnixListener::accept);

        let ro_dir = mkdir("ro", 0o755, true)?;
        let unix_ro_path = ro_dir.join("listener.sock");
        let unix_ro = UnixListener::bind(&unix_ro_path)
            .with_context(|| format!("bind {}", unix_ro_path.display()))?;
        unix_ro.set_nonblocking(true)?;
        fs::set_permissions(&unix_ro_path, fs::Permissions::from_mode(0o666))?;
        hand_over(&unix_ro_path, owner)?;
        listeners.spawn(unix_ro, UnixListener::accept);

        let abstract_name = format!("agentcage-matrix.{tag}");
        let addr = SocketAddr::from_abstract_name(abstract_name.as_bytes())?;
        let abs = UnixListener::bind_addr(&addr)
            .with_context(|| format!("bind abstract @{abstract_name}"))?;
        abs.set_nonblocking(true)?;
        listeners.spawn(abs, UnixListener::accept);

        let sentinel = sys::Sentinel::spawn().context("fork the sentinel process")?;
        let host_ns = agentcage_probe::host_ns_arg();
        let host_inodes = HOST_FILES
            .iter()
            .filter_map(|p| agentcage_probe::host_inode_arg(Path::new(p)))
            .collect();

        Ok(Bait {
            canary,
            unix_path,
            unix_ro_path,
            abstract_name,
            tcp_port,
            udp_port,
            secret,
            binary_copy,
            out_dir,
            host_ns,
            host_inodes,
            inherited,
            owner,
            _listeners: listeners,
            sentinel,
            _dir: dir,
        })
    }

    /// Makes the workspace of run `n` (see [`Workspace`]): `ws-N/` with `.git/hooks` and
    /// `.git/config`, handed to the sandbox's uid like the rest of the bait.
    ///
    /// # Errors
    /// A directory or file could not be created (or `ws-N` exists).
    pub fn workspace(&self, n: usize) -> anyhow::Result<Workspace> {
        let path = self._dir.0.join(format!("ws-{n}"));
        let mkdir = |p: &Path| -> anyhow::Result<()> {
            fs::DirBuilder::new()
                .mode(0o755)
                .create(p)
                .with_context(|| format!("create {}", p.display()))?;
            // mkdir honours the umask: set the mode explicitly.
            fs::set_permissions(p, fs::Permissions::from_mode(0o755))?;
            hand_over(p, self.owner)
        };
        mkdir(&path)?;
        // Owned (removed on drop) from here on, also when what follows fails.
        let ws = Workspace {
            protected: path.join(".git/hooks"),
            protected_file: path.join(".git/config"),
            path,
        };
        mkdir(&ws.path.join(".git"))?;
        mkdir(&ws.protected)?;
        write_file(
            &ws.protected_file,
            b"[core]\n\trepositoryformatversion = 0\n",
            0o644,
            self.owner,
        )?;
        Ok(ws)
    }

    /// The sentinel's pid.
    pub fn sentinel_pid(&self) -> u32 {
        self.sentinel.pid()
    }

    /// The inherited fd's number (the same in the `agentcage run` child).
    pub fn inherited_fd(&self) -> RawFd {
        self.inherited.as_raw_fd()
    }

    /// The probe flags that point it at the bait and at the run's workspace `ws`.
    pub fn probe_args(&self, ws: &Workspace) -> Vec<String> {
        let mut args = vec![
            "--sentinel-pid".into(),
            self.sentinel_pid().to_string(),
            "--canary".into(),
            self.canary.display().to_string(),
            "--secret-env".into(),
            SECRET_ENV.into(),
            "--session-key".into(),
            SESSION_KEY.to_string_lossy().into_owned(),
            "--inherited-fd".into(),
            self.inherited_fd().to_string(),
            "--tcp-port".into(),
            self.tcp_port.to_string(),
            "--udp-port".into(),
            self.udp_port.to_string(),
            "--unix-path".into(),
            self.unix_path.display().to_string(),
            "--unix-ro-path".into(),
            self.unix_ro_path.display().to_string(),
            "--abstract".into(),
            self.abstract_name.clone(),
            "--workspace".into(),
            ws.path.display().to_string(),
            "--host-ns".into(),
            self.host_ns.clone(),
        ];
        for h in &self.host_inodes {
            args.push("--host-inode".into());
            args.push(h.clone());
        }
        args
    }

    /// Number of live listener threads (for tests).
    #[cfg(test)]
    fn listener_count(&self) -> usize {
        self._listeners.threads.len()
    }
}

fn hand_over(path: &Path, owner: Option<u32>) -> anyhow::Result<()> {
    if let Some(id) = owner {
        chown(path, Some(id), Some(id))
            .with_context(|| format!("chown {} to {id}", path.display()))?;
    }
    Ok(())
}

fn write_file(path: &Path, content: &[u8], mode: u32, owner: Option<u32>) -> anyhow::Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("create {}", path.display()))?;
    f.write_all(content)?;
    hand_over(path, owner)
}

/// `n` random bytes as hex.
fn random_hex(n: usize) -> io::Result<String> {
    let mut buf = vec![0u8; n];
    File::open("/dev/urandom")?.read_exact(&mut buf)?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpStream;
    use std::os::unix::net::UnixStream;

    #[test]
    fn bait_is_reachable_and_cleaned_up() {
        let exe = std::env::current_exe().expect("current_exe");
        let bait = Bait::setup(&exe).expect("setup");
        let root = bait._dir.0.clone();
        assert!(bait.inherited_fd() >= INHERITED_FD_MIN);
        assert!(fs::read_to_string(&bait.canary)
            .expect("canary")
            .contains(&bait.secret));
        TcpStream::connect(("127.0.0.1", bait.tcp_port)).expect("tcp connect");
        UnixStream::connect(&bait.unix_path).expect("unix connect");
        UnixStream::connect(&bait.unix_ro_path).expect("unix connect (ro/)");
        let ws = bait.workspace(0).expect("workspace 0");
        let other = bait.workspace(1).expect("workspace 1");
        assert!(ws.protected.is_dir(), "ws-0/.git/hooks");
        assert!(ws.protected_file.is_file(), "ws-0/.git/config");
        assert_ne!(ws.path, other.path);
        assert!(other.protected.is_dir() && other.protected_file.is_file());
        assert!(bait.workspace(0).is_err(), "ws-0 exists: never shared");
        drop(other);
        assert!(
            !root.join("ws-1").exists(),
            "a workspace is removed on drop"
        );
        let addr = SocketAddr::from_abstract_name(bait.abstract_name.as_bytes()).expect("addr");
        UnixStream::connect_addr(&addr).expect("abstract connect");
        let pid = bait.sentinel_pid();
        // The sentinel reaches pause() shortly after fork.
        let sleeping = (0..200).any(|_| {
            let stat = fs::read_to_string(format!("/proc/{pid}/stat")).expect("sentinel alive");
            stat.contains(") S ") || {
                std::thread::sleep(Duration::from_millis(10));
                false
            }
        });
        assert!(sleeping, "sentinel never went to sleep");
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").expect("udp");
        udp.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        udp.send_to(b"x", ("127.0.0.1", bait.udp_port))
            .expect("udp send");
        let mut b = [0u8; 4];
        assert_eq!(udp.recv(&mut b).expect("udp echo"), 1);
        assert_eq!(bait.listener_count(), 5);
        let args = bait.probe_args(&ws);
        assert!(args.contains(&ws.path.display().to_string()));
        drop(ws);
        assert_eq!(args.len(), 24 + 2 * bait.host_inodes.len());
        assert_eq!(bait.host_inodes.len(), 2, "{:?}", bait.host_inodes);
        assert!(bait.host_ns.contains("net="), "{}", bait.host_ns);
        drop(bait);
        assert!(!root.exists(), "temp dir removed");
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "sentinel reaped"
        );
        assert!(
            UnixStream::connect_addr(&addr).is_err(),
            "abstract listener closed"
        );
    }
}
