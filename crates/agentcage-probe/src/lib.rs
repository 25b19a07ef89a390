//! `agentcage probe`: tries forbidden operations, safely, and reports what happened.
//!
//! The probe runs inside a sandbox (or with none, as the baseline) and prints one
//! [`schema::OpResult`] per operation as JSON lines on stdout. `agentcage matrix` runs it under
//! each profile and attributes every BLOCKED row to the layer whose removal lets it through.
//!
//! - [`schema`]: the output types, shared with the matrix.
//! - [`ops`]: the operation table (`ops::all()`), one function per op, grouped by area.
//! - `runner`: forks one child per op with a deadline; a seccomp kill or hang costs one row.
//! - [`errno`]: errno and signal names.
//! - `sys`: raw system calls, the only home of `unsafe`.
//!
//! Every op is non-destructive even as root without a sandbox; see `ops` for the patterns.
//! The probe is a measurement: [`run`] returns exit code 0 whatever the results.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Context};

pub mod errno;
pub mod ops;
mod runner;
pub mod schema;
mod sys;

pub use ops::{Op, Outcome};
pub use schema::{parse_jsonl, Category, OpResult, ProbeReport, Verdict};

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Format {
    /// One JSON object per op per line (machine-readable; the default).
    #[default]
    Jsonl,
    /// The reference design's aligned table, for humans.
    Text,
}

/// `agentcage probe` flags. The bait flags name things the caller set up outside the sandbox;
/// an op whose bait is missing is SKIPPED with the flag's name as the reason.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ProbeArgs {
    /// A process outside the sandbox (same uid as the caller) to signal, ptrace and read.
    #[arg(long, value_name = "PID")]
    pub sentinel_pid: Option<i32>,
    /// A TCP listener on the host's 127.0.0.1 to connect to (nothing is sent).
    #[arg(long, value_name = "PORT")]
    pub tcp_port: Option<u16>,
    /// A UDP socket on the host's 127.0.0.1 that echoes what it receives (the egress ops send
    /// it one datagram).
    #[arg(long, value_name = "PORT")]
    pub udp_port: Option<u16>,
    /// A filesystem unix socket listener outside the sandbox.
    #[arg(long, value_name = "PATH")]
    pub unix_path: Option<PathBuf>,
    /// A filesystem unix socket listener in a directory the launcher binds read-only (`--ro`).
    #[arg(long, value_name = "PATH")]
    pub unix_ro_path: Option<PathBuf>,
    /// An abstract unix socket listener outside (name without the leading '@').
    #[arg(long = "abstract", value_name = "NAME")]
    pub abstract_name: Option<String>,
    /// A secret file outside the workspace.
    #[arg(long, value_name = "PATH")]
    pub canary: Option<PathBuf>,
    /// The sandbox's workspace; a symlink pointing at the canary is made (and removed) here.
    #[arg(long, value_name = "DIR")]
    pub workspace: Option<PathBuf>,
    /// A descriptor number the caller left open; the sandbox should have closed it.
    #[arg(long, value_name = "FD")]
    pub inherited_fd: Option<i32>,
    /// An environment variable holding a secret; the sandbox should have removed it.
    #[arg(long, value_name = "NAME")]
    pub secret_env: Option<String>,
    /// A "user" key the caller put in its session keyring; the sandbox should not reach it.
    #[arg(long, value_name = "DESCRIPTION")]
    pub session_key: Option<String>,
    /// The host's namespace inodes, read outside: `net=4026531840,pid=4026531836,...`.
    #[arg(long, value_name = "TYPE=INODE,...")]
    pub host_ns: Option<String>,
    /// Identity of a host file, read outside: `PATH=DEV:INO` (st_dev and st_ino, decimal;
    /// repeatable). Lets `read /etc/passwd` tell the host's file from a sandbox's own copy.
    /// See [`host_inode_arg`].
    #[arg(long, value_name = "PATH=DEV:INO")]
    pub host_inode: Vec<String>,
    /// The caller's terminal, read outside: `DEV:RDEV` (st_dev and st_rdev of the pty the
    /// caller gave the sandbox as stdin, decimal). Lets the terminal ops tell the caller's
    /// terminal from a pty of the sandbox's own (the launcher's relay). See [`host_tty_arg`].
    #[arg(long, value_name = "DEV:RDEV")]
    pub host_tty: Option<String>,
    /// How many processes the fork op may create.
    #[arg(long, value_name = "N", default_value_t = 2000)]
    pub fork_limit: u32,
    /// How much memory the memory op may touch, in MiB (at most half of MemAvailable).
    #[arg(long, value_name = "MIB", default_value_t = 1024)]
    pub mem_limit_mib: u64,
    /// Time budget per op in milliseconds before its child is killed (resource ops get more).
    #[arg(long, value_name = "MS", default_value_t = ops::DEFAULT_TIMEOUT_MS)]
    pub timeout_ms: u32,
    /// Run only this op id (repeatable).
    #[arg(long = "only", value_name = "ID")]
    pub only: Vec<String>,
    /// Print the op table (id, category, title) and exit.
    #[arg(long)]
    pub list: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Jsonl)]
    pub format: Format,
}

/// Parses `net=1,pid=2`.
fn parse_host_ns(s: &str) -> anyhow::Result<BTreeMap<String, u64>> {
    let mut map = BTreeMap::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (k, v) = part
            .split_once('=')
            .with_context(|| format!("--host-ns entry {part:?} is not TYPE=INODE"))?;
        let inode = v
            .trim()
            .parse()
            .with_context(|| format!("--host-ns entry {part:?}: bad inode"))?;
        map.insert(k.trim().to_string(), inode);
    }
    Ok(map)
}

/// Parses `/etc/passwd=2049:131`.
fn parse_host_tty(s: &str) -> anyhow::Result<(u64, u64)> {
    let (dev, rdev) = s
        .split_once(':')
        .ok_or_else(|| anyhow::anyhow!("--host-tty {s:?}: expected DEV:RDEV"))?;
    let num = |v: &str| {
        v.parse::<u64>()
            .map_err(|e| anyhow::anyhow!("--host-tty {s:?}: {v:?}: {e}"))
    };
    Ok((num(dev)?, num(rdev)?))
}

/// `DEV:RDEV` of the terminal open on `fd` (for `--host-tty`), if it is one.
pub fn host_tty_arg(fd: std::os::fd::RawFd) -> Option<String> {
    if !sys::isatty(fd) {
        return None;
    }
    sys::fstat_dev_rdev(fd)
        .ok()
        .map(|(d, r)| format!("{d}:{r}"))
}

fn parse_host_inode(s: &str) -> anyhow::Result<(PathBuf, (u64, u64))> {
    let (path, id) = s
        .rsplit_once('=')
        .with_context(|| format!("--host-inode {s:?} is not PATH=DEV:INO"))?;
    let (dev, ino) = id
        .split_once(':')
        .with_context(|| format!("--host-inode {s:?} is not PATH=DEV:INO"))?;
    let dev = dev
        .parse()
        .with_context(|| format!("--host-inode {s:?}: bad device number"))?;
    let ino = ino
        .parse()
        .with_context(|| format!("--host-inode {s:?}: bad inode number"))?;
    Ok((PathBuf::from(path), (dev, ino)))
}

/// The `--host-ns` value describing the calling process's namespaces
/// (`user=...,mnt=...,...`), for a caller that starts the probe inside a sandbox. Namespace
/// types whose link is unreadable are left out.
pub fn host_ns_arg() -> String {
    const KINDS: [&str; 8] = ["user", "mnt", "pid", "net", "ipc", "uts", "cgroup", "time"];
    KINDS
        .iter()
        .filter_map(|k| {
            let link = std::fs::read_link(format!("/proc/self/ns/{k}")).ok()?;
            let link = link.to_string_lossy();
            let ino = link.split_once(":[")?.1.strip_suffix(']')?.to_string();
            Some(format!("{k}={ino}"))
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// The `--host-inode` value for a host file (`PATH=DEV:INO`), or None if it cannot be
/// stat'ed (the probe then reports that file without an origin check).
pub fn host_inode_arg(path: &std::path::Path) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some(format!("{}={}:{}", path.display(), m.dev(), m.ino()))
}

/// The ops selected by `--only` (all when empty), in table order.
///
/// # Errors
/// An `--only` id that names no op.
pub fn select(only: &[String]) -> anyhow::Result<Vec<&'static Op>> {
    for id in only {
        if !ops::all().any(|o| o.id == id) {
            bail!("unknown op id {id:?} (see --list)");
        }
    }
    Ok(ops::all()
        .filter(|o| only.is_empty() || only.iter().any(|id| id == o.id))
        .collect())
}

/// A probe-owned scratch directory, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn create() -> Result<Scratch, String> {
        let base = std::env::temp_dir();
        let pid = std::process::id();
        for n in 0..100u32 {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos());
            let dir = base.join(format!("agentcage-probe-{pid}-{nanos:08x}-{n}"));
            let mut b = std::fs::DirBuilder::new();
            std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
            match b.create(&dir) {
                Ok(()) => return Ok(Scratch(dir)),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(format!("create {}: {e}", dir.display())),
            }
        }
        Err(format!("no free scratch name under {}", base.display()))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        // Ops unmount and remove what they create; this catches anything a killed op child
        // left behind. Never follow into a mount that could not be undone.
        if let Ok(entries) = std::fs::read_dir(&self.0) {
            for e in entries.flatten() {
                if let Ok(c) = std::ffi::CString::new(std::os::unix::ffi::OsStrExt::as_bytes(
                    e.path().as_os_str(),
                )) {
                    let _ = sys::umount2(&c, libc::MNT_DETACH | libc::UMOUNT_NOFOLLOW);
                }
            }
        }
        if let Err(e) = std::fs::remove_dir_all(&self.0) {
            eprintln!(
                "agentcage probe: could not remove scratch dir {}: {e}",
                self.0.display()
            );
        }
    }
}

fn text_header(out: &mut impl Write) -> std::io::Result<()> {
    writeln!(out, "{:<48} {:<8}  {:<12} detail", "op", "result", "errno")?;
    writeln!(out, "{}", "-".repeat(100))
}

fn text_row(out: &mut impl Write, r: &OpResult) -> std::io::Result<()> {
    let errno = r.errno.as_deref().unwrap_or("-");
    writeln!(
        out,
        "{:<48} {:<8}  {:<12} {}",
        r.title,
        r.result.as_str(),
        errno,
        r.detail
    )
}

/// Runs the probe: every selected op in its own forked child, one row per op on stdout as it
/// completes. Returns the exit code (0: the probe is a measurement, results are data).
///
/// # Errors
/// Bad flags, a multi-threaded caller (the probe forks), or a failed stdout.
pub fn run(args: &ProbeArgs) -> anyhow::Result<i32> {
    let selected = select(&args.only)?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if args.list {
        for op in &selected {
            writeln!(
                out,
                "{:<36} {:<10} {}",
                op.id,
                op.category.as_str(),
                op.title
            )?;
        }
        return Ok(0);
    }
    runner::ensure_single_thread().map_err(anyhow::Error::msg)?;
    let host_ns = args
        .host_ns
        .as_deref()
        .map(parse_host_ns)
        .transpose()?
        .unwrap_or_default();
    let host_inodes = args
        .host_inode
        .iter()
        .map(|s| parse_host_inode(s))
        .collect::<anyhow::Result<_>>()?;
    let host_tty = args.host_tty.as_deref().map(parse_host_tty).transpose()?;
    let scratch = Scratch::create();
    let ctx = ops::Ctx {
        sentinel_pid: args.sentinel_pid,
        tcp_port: args.tcp_port,
        udp_port: args.udp_port,
        unix_path: args.unix_path.clone(),
        unix_ro_path: args.unix_ro_path.clone(),
        abstract_name: args.abstract_name.clone(),
        canary: args.canary.clone(),
        workspace: args.workspace.clone(),
        inherited_fd: args.inherited_fd,
        secret_env: args.secret_env.clone(),
        session_key: args.session_key.clone(),
        host_ns,
        host_inodes,
        host_tty,
        fork_limit: args.fork_limit,
        mem_limit_mib: args.mem_limit_mib,
        scratch: scratch.as_ref().map(|s| s.0.clone()).map_err(Clone::clone),
    };
    if args.format == Format::Text {
        text_header(&mut out)?;
    }
    // Nothing may sit in stdout's buffer when we fork (the child never flushes, but be sure).
    out.flush()?;
    for op in selected {
        let budget = if op.timeout_ms > ops::DEFAULT_TIMEOUT_MS {
            op.timeout_ms.max(args.timeout_ms)
        } else {
            args.timeout_ms
        };
        let r = runner::run_op(op, &ctx, budget);
        match args.format {
            Format::Jsonl => writeln!(out, "{}", r.to_json_line())?,
            Format::Text => text_row(&mut out, &r)?,
        }
        out.flush().context("write probe output")?;
    }
    drop(scratch);
    Ok(0)
}

/// Runs one op in a forked child and returns its row, without printing (for embedding and
/// tests; the caller must be single-threaded).
///
/// # Errors
/// A multi-threaded caller.
pub fn run_one(op: &Op, ctx: &ops::Ctx, timeout_ms: u32) -> anyhow::Result<OpResult> {
    runner::ensure_single_thread().map_err(anyhow::Error::msg)?;
    Ok(runner::run_op(op, ctx, timeout_ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_ns_parses() {
        let m = parse_host_ns("net=4026531840, pid=4026531836").unwrap();
        assert_eq!(m["net"], 4026531840);
        assert_eq!(m["pid"], 4026531836);
        assert!(parse_host_ns("net").is_err());
        assert!(parse_host_ns("net=x").is_err());
        assert!(parse_host_ns("").unwrap().is_empty());
    }

    #[test]
    fn host_inode_parses_and_round_trips() {
        let (p, id) = parse_host_inode("/etc/passwd=2049:131").unwrap();
        assert_eq!((p, id), (PathBuf::from("/etc/passwd"), (2049, 131)));
        assert!(parse_host_inode("/etc/passwd").is_err());
        assert!(parse_host_inode("/etc/passwd=1").is_err());
        assert!(parse_host_inode("/etc/passwd=x:1").is_err());
        let arg = host_inode_arg(std::path::Path::new("/")).unwrap();
        assert!(parse_host_inode(&arg).is_ok(), "{arg}");
        assert!(host_inode_arg(std::path::Path::new("/nonexistent/x")).is_none());
    }

    #[test]
    fn host_ns_arg_parses() {
        let arg = host_ns_arg();
        let m = parse_host_ns(&arg).unwrap();
        assert!(m.contains_key("net") && m.contains_key("user"), "{arg}");
    }

    #[test]
    fn select_filters_and_rejects_unknown_ids() {
        assert_eq!(select(&[]).unwrap().len(), ops::all().count());
        let one = select(&["fs.write.root".into()]).unwrap();
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].title, "write /evil");
        assert!(select(&["no.such.op".into()]).is_err());
    }

    #[test]
    fn args_parse() {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            args: ProbeArgs,
        }
        Cli::command_debug();
        let c = Cli::parse_from([
            "probe",
            "--only",
            "a.b.c",
            "--only",
            "d.e.f",
            "--abstract",
            "x",
            "--format",
            "text",
        ]);
        assert_eq!(c.args.only, ["a.b.c", "d.e.f"]);
        assert_eq!(c.args.abstract_name.as_deref(), Some("x"));
        assert_eq!(c.args.format, Format::Text);
        assert_eq!(c.args.fork_limit, 2000);

        trait Debug {
            fn command_debug();
        }
        impl Debug for Cli {
            fn command_debug() {
                <Cli as clap::CommandFactory>::command().debug_assert();
            }
        }
    }
}
