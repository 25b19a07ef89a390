//! `agentcage`: the command line. Thin: parse, turn flags into a `Policy`, call the library,
//! map the outcome to an exit code (see `exit.rs`).

// The process entry is our own C `main` (see `entry`), not std's `lang_start`.
#![cfg_attr(not(test), no_main)]

mod completions;
mod doctor;
mod events;
mod exit;
mod export;
mod mcp;
mod nested;
mod overlay;
mod policy;
mod policy_cmd;
mod run;
mod run_output;
mod session;
mod ui;

use clap::{Parser, Subcommand};

/// Debug builds only: an allocator that aborts when the launcher's pre-exec child allocates
/// (nothing between clone and execve may: another thread of the parent may have held the
/// allocator's lock at fork). Every sandbox test then checks the zone.
#[cfg(debug_assertions)]
mod alloc_guard {
    use std::alloc::{GlobalAlloc, Layout, System};

    pub struct Guard;

    fn check() {
        if agentcage::in_pre_exec() {
            let msg = b"agentcage: BUG: allocation in the pre-exec child\n";
            // SAFETY: write(2) of a static buffer to stderr, then abort: both async-signal-safe.
            unsafe {
                libc::write(2, msg.as_ptr().cast(), msg.len());
                libc::abort();
            }
        }
    }

    // SAFETY: every method forwards to System after a check that never allocates.
    unsafe impl GlobalAlloc for Guard {
        unsafe fn alloc(&self, l: Layout) -> *mut u8 {
            check();
            // SAFETY: same contract as the caller's.
            unsafe { System.alloc(l) }
        }
        unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
            // SAFETY: same contract as the caller's.
            unsafe { System.dealloc(p, l) }
        }
        unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
            check();
            // SAFETY: same contract as the caller's.
            unsafe { System.alloc_zeroed(l) }
        }
        unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
            check();
            // SAFETY: same contract as the caller's.
            unsafe { System.realloc(p, l, n) }
        }
    }

    #[global_allocator]
    static GUARD: Guard = Guard;
}

/// Run untrusted AI agents (coding agents, shell commands) in a rootless Linux sandbox.
#[derive(Debug, Parser)]
#[command(name = "agentcage", version = env!("AGENTCAGE_VERSION"), after_help = exit::EXIT_CODES_HELP)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

const RUN_AFTER_HELP: &str = "Examples:\n  agentcage run -- python3 -c 'print(1)'\n  agentcage run --policy ~/.config/agentcage/coding-agent.toml -- cargo test\n  agentcage run --profile ns-only --rw ~/.cache/pip -- pip install -r requirements.txt\n  agentcage run --workspace ~/proj --env CI=1 -- make test\n\n";

/// `agentcage run` parsed on its own: the same `RunArgs`, without building the argument
/// trees of every other subcommand (clap builds the whole tree on each parse; for the one
/// command on the launch path that is a measurable share of the start-up).
#[derive(Debug, Parser)]
#[command(name = "agentcage run", version = env!("AGENTCAGE_VERSION"), about = "Run a command in the sandbox.", after_help = RUN_AFTER_HELP.to_string() + exit::EXIT_CODES_HELP)]
struct RunCli {
    #[command(flatten)]
    args: run::RunArgs,
}

/// `agentcage exec` parsed on its own (the launch path's start-up, as for run).
#[derive(Debug, Parser)]
#[command(name = "agentcage exec", version = env!("AGENTCAGE_VERSION"), about = "Run a command in a session.", after_help = EXEC_AFTER_HELP.to_string() + exit::EXIT_CODES_HELP)]
struct ExecCli {
    #[command(flatten)]
    args: session::ExecArgs,
}

/// `agentcage mcp` parsed on its own (its raw flags are passed on to `session start`).
#[derive(Debug, Parser)]
#[command(name = "agentcage mcp", version = env!("AGENTCAGE_VERSION"), about = "An MCP server on stdio giving an agent one sandbox as tools.", after_help = MCP_AFTER_HELP)]
struct McpCli {
    #[command(flatten)]
    args: mcp::McpArgs,
}

const MCP_AFTER_HELP: &str = "Examples:\n  agentcage mcp\n  agentcage mcp --policy ~/.config/agentcage/coding-agent.toml --allow-host pypi.org\n  claude mcp add agentcage -- agentcage mcp --memory 4G\n\nAn MCP server on stdin/stdout owning one session (started at the first tool call, stopped\nwhen stdin closes or on SIGTERM, and when the server dies): tools exec, read_file, write_file,\nlist_dir, and with --overlay a read-only diff. See docs/AGENT-API.md.\n";

const EXEC_AFTER_HELP: &str = "Examples:\n  S=$(agentcage session start)\n  agentcage exec $S -- make test\n  agentcage exec $S --cwd sub --env CI=1 --timeout 5m -- ./run.sh\n  agentcage session stop $S\n\nExit status: as run; 125 also when the session is gone.\n";

// Parsed once per process: the size of the `run` variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
enum Cmd {
    /// Run a command in the sandbox.
    #[command(
        after_help = RUN_AFTER_HELP.to_string() + exit::EXIT_CODES_HELP
    )]
    Run(Box<run::RunArgs>),
    /// Sessions: one sandbox kept up for many commands (`exec`), each at about the cost of a
    /// fork and an exec. See docs/SESSIONS.md.
    #[command(
        subcommand,
        after_help = "Examples:\n  agentcage session start --name t1 --memory 4G\n  agentcage session list --json\n  agentcage session stop t1"
    )]
    Session(session::SessionCmd),
    /// Run a command in a session, with this process's stdin, stdout and stderr (a terminal
    /// gets a pty of the sandbox's own, relayed).
    #[command(after_help = EXEC_AFTER_HELP.to_string() + exit::EXIT_CODES_HELP)]
    Exec(session::ExecArgs),
    /// An MCP server on stdio that gives an agent one sandbox (a session) as tools: exec,
    /// read_file, write_file, list_dir (and diff with --overlay). Takes run's policy flags.
    #[command(after_help = MCP_AFTER_HELP)]
    Mcp(Box<mcp::McpArgs>),
    /// Try forbidden operations from inside a sandbox and report what is blocked (one JSON
    /// object per line). Safe to run anywhere: every operation is non-destructive.
    #[command(
        after_help = "Example:\n  agentcage run --profile full -- /run/agentcage/agentcage probe --format text"
    )]
    Probe(agentcage_probe::ProbeArgs),
    /// The isolation matrix: the probe under each profile, with every block attributed to
    /// the layer that causes it, measured by removing one layer at a time.
    #[command(
        after_help = "Examples:\n  agentcage matrix\n  agentcage matrix --format json > matrix.json\n  agentcage matrix --profiles ns-only,full --format markdown"
    )]
    Matrix(agentcage_matrix::MatrixArgs),
    /// Overhead per profile (startup, syscall, file ops, launch throughput), optionally side
    /// by side with bubblewrap and unshare.
    #[command(
        after_help = "Examples:\n  agentcage bench --quick\n  agentcage bench --compare --json > bench.json"
    )]
    Bench(agentcage_bench::BenchArgs),
    /// The in-sandbox half of `bench` (timed loops).
    #[command(hide = true)]
    BenchInner(agentcage_bench::inner::InnerArgs),
    /// Explain a denial recorded by --events: what was refused, by which layer, and the
    /// flag or policy key that would allow it.
    #[command(
        after_help = "Examples:\n  agentcage why --events events.jsonl\n  agentcage why \"$(tail -n1 events.jsonl)\""
    )]
    Why(events::WhyArgs),
    /// What this kernel supports, which profiles can be enforced here, and what each
    /// fallback loses. Exit 0 when `full` can be enforced, 1 otherwise.
    #[command(after_help = "Examples:\n  agentcage doctor\n  agentcage doctor --json")]
    Doctor(doctor::DoctorArgs),
    /// Policy files: print the effective policy and what this host enforces of it.
    #[command(
        after_help = "Examples:\n  agentcage policy show --policy ~/.config/agentcage/coding-agent.toml\n  agentcage policy show -p full --json"
    )]
    Policy(policy_cmd::PolicyCmd),
    /// Print a shell completion script (bash, zsh or fish) on stdout.
    #[command(
        after_help = "Examples:\n  agentcage completions bash > /usr/share/bash-completion/completions/agentcage\n  agentcage completions zsh > ~/.zfunc/_agentcage\n  agentcage completions fish > ~/.config/fish/completions/agentcage.fish"
    )]
    Completions(completions::CompletionsArgs),
    /// Print the manual page agentcage(1) on stdout (or every page into a directory).
    #[command(
        after_help = "Examples:\n  agentcage man | man -l -\n  agentcage man --out-dir /usr/local/share/man/man1"
    )]
    Man(completions::ManArgs),
    /// Export the policy to other enforcers: a seccomp profile, an OCI runtime bundle,
    /// Kubernetes manifests (see docs/FLEET.md).
    #[command(
        after_help = "Examples:\n  agentcage export seccomp > agentcage-full.json\n  agentcage export oci --policy agent.toml --rootfs ./rootfs -o ./bundle -- /bin/sh -l\n  agentcage export k8s --policy agent.toml --image registry.example/agent:1 --template"
    )]
    Export(export::ExportCmd),
    #[command(about = DIFF_ABOUT, after_help = DIFF_AFTER_HELP)]
    Diff(overlay::DiffArgs),
    #[command(about = COMMIT_ABOUT, after_help = COMMIT_AFTER_HELP)]
    Commit(overlay::CommitArgs),
    #[command(about = DISCARD_ABOUT, after_help = DISCARD_AFTER_HELP)]
    Discard(overlay::DiscardArgs),
    #[command(about = OVERLAYS_ABOUT, after_help = OVERLAYS_AFTER_HELP)]
    Overlays(overlay::ListArgs),
}

const DIFF_ABOUT: &str = "What the agent changed in an overlay (`--overlay`): added, modified, deleted, renamed, mode, symlinks; sensitive paths flagged first";
const DIFF_AFTER_HELP: &str = "Examples:\n  agentcage diff\n  agentcage diff myproj-1a2b3c4d --patch src/\n  agentcage diff --json";
const COMMIT_ABOUT: &str =
    "Apply an overlay's changes to the workspace (per file: temp file and rename)";
const COMMIT_AFTER_HELP: &str =
    "Examples:\n  agentcage commit --all\n  agentcage commit myproj-1a2b3c4d src/main.rs docs/";
const DISCARD_ABOUT: &str = "Drop an overlay's changes";
const DISCARD_AFTER_HELP: &str =
    "Examples:\n  agentcage discard .envrc\n  agentcage discard --all --remove";
const OVERLAYS_ABOUT: &str = "List the overlays";
const OVERLAYS_AFTER_HELP: &str = "Examples:\n  agentcage overlays\n  agentcage overlays --json";

/// The overlay commands parsed on their own (as run): their start-up is most of what a
/// `diff` or `commit` of a few changes costs (docs/OVERLAY.md, Performance).
#[derive(Debug, Parser)]
#[command(name = "agentcage diff", version = env!("AGENTCAGE_VERSION"), about = DIFF_ABOUT, after_help = DIFF_AFTER_HELP)]
struct DiffCli {
    #[command(flatten)]
    args: overlay::DiffArgs,
}

#[derive(Debug, Parser)]
#[command(name = "agentcage commit", version = env!("AGENTCAGE_VERSION"), about = COMMIT_ABOUT, after_help = COMMIT_AFTER_HELP)]
struct CommitCli {
    #[command(flatten)]
    args: overlay::CommitArgs,
}

#[derive(Debug, Parser)]
#[command(name = "agentcage discard", version = env!("AGENTCAGE_VERSION"), about = DISCARD_ABOUT, after_help = DISCARD_AFTER_HELP)]
struct DiscardCli {
    #[command(flatten)]
    args: overlay::DiscardArgs,
}

#[derive(Debug, Parser)]
#[command(name = "agentcage overlays", version = env!("AGENTCAGE_VERSION"), about = OVERLAYS_ABOUT, after_help = OVERLAYS_AFTER_HELP)]
struct OverlaysCli {
    #[command(flatten)]
    args: overlay::ListArgs,
}

/// `C::try_parse_from`, minus freeing the command tree and the matches: for `run`'s ~80
/// arguments the drops are ~50k instructions, several percent of a whole `run -p none` launch
/// (issue #19), for a few dozen KiB that stay allocated until the launcher exits.
fn parse_kept<C: Parser, T: Into<std::ffi::OsString> + Clone>(
    argv: impl IntoIterator<Item = T>,
) -> Result<C, clap::Error> {
    let mut cmd = C::command();
    let parsed = match cmd.try_get_matches_from_mut(argv) {
        Ok(mut m) => {
            // As clap's own try_parse_from: only this error still needs the command's format.
            let r = C::from_arg_matches_mut(&mut m).map_err(|e| e.format(&mut cmd));
            std::mem::forget(m);
            r
        }
        Err(e) => Err(e),
    };
    std::mem::forget(cmd);
    parsed
}

/// Parses `agentcage NAME ARGS...` as `C` alone (argv[0] becomes "agentcage NAME").
fn parse_alone<C: Parser>(name: &str) -> C {
    let argv = std::iter::once(std::ffi::OsString::from(format!("agentcage {name}")))
        .chain(std::env::args_os().skip(2));
    C::parse_from(argv)
}

/// The process entry, in place of std's `lang_start` (issue #19: the launcher's start-up).
/// `lang_start` finds the main thread's stack bounds for its stack-overflow message with
/// `pthread_getattr_np`, which parses /proc/self/maps with sscanf: about a tenth of the
/// instructions of a whole `run -p none`, before `main` does anything. What else it does that
/// we rely on is done here: fds 0-2 opened on /dev/null when closed (so no file we open lands
/// on them), SIGPIPE ignored (`run` must get EPIPE on its pipes to the sandbox, not die),
/// a panic is exit code 101, and stdout is flushed at exit (`process::exit` does that).
/// Lost: the "thread 'main' has overflowed its stack" message (a stack overflow is a plain
/// SIGSEGV). Arguments still come from std (glibc passes them to its `.init_array` hook).
#[cfg(not(test))]
#[no_mangle]
extern "C" fn main(_argc: libc::c_int, _argv: *const *const libc::c_char) -> libc::c_int {
    entry::sanitize_std_fds();
    // SAFETY: SIG_IGN is a valid disposition, and no other thread runs yet.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    let code = std::panic::catch_unwind(cli_main).unwrap_or(101);
    std::process::exit(i32::from(code))
}

mod entry {
    /// What std's runtime does before `main`: each of fds 0-2 that is closed is opened on
    /// /dev/null; aborts when that fails (as std does), since any file opened later would
    /// otherwise become the command's stdin, stdout or stderr.
    #[cfg_attr(test, allow(dead_code))]
    pub(super) fn sanitize_std_fds() {
        let mut fds = [0, 1, 2].map(|fd| libc::pollfd {
            fd,
            events: 0,
            revents: 0,
        });
        let polled = loop {
            // SAFETY: fds is a live array of three pollfd; a zero timeout never blocks.
            let rc = unsafe { libc::poll(fds.as_mut_ptr(), 3, 0) };
            if rc >= 0 {
                break true;
            }
            if std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
                break false;
            }
        };
        for p in fds {
            let closed = if polled {
                p.revents & libc::POLLNVAL != 0
            } else {
                // SAFETY: F_GETFD on any integer is harmless; EBADF means closed.
                unsafe { libc::fcntl(p.fd, libc::F_GETFD) == -1 }
            };
            // SAFETY: a static NUL-terminated path; the fd it returns is the lowest free one,
            // the closed std fd itself.
            if closed && unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDWR, 0) } == -1 {
                std::process::abort();
            }
        }
    }
}

#[cfg_attr(test, allow(dead_code))]
fn cli_main() -> u8 {
    if std::env::args_os().nth(1).is_some_and(|a| a == "run") {
        let argv = std::iter::once("agentcage run".into()).chain(std::env::args_os().skip(2));
        let args = match parse_kept::<RunCli, std::ffi::OsString>(argv) {
            Ok(c) => c.args,
            Err(e) => return run_usage(&e),
        };
        let code = run::main(args);
        return code.clamp(0, 255) as u8;
    }
    if std::env::args_os().nth(1).is_some_and(|a| a == "exec") {
        let argv = std::iter::once("agentcage exec".into()).chain(std::env::args_os().skip(2));
        let code = session::exec(ExecCli::parse_from::<_, std::ffi::OsString>(argv).args);
        return code.clamp(0, 255) as u8;
    }
    if std::env::args_os().nth(1).is_some_and(|a| a == "mcp") {
        // The raw flags are passed on to `session start` when the session starts.
        let forward: Vec<std::ffi::OsString> = std::env::args_os().skip(2).collect();
        let argv = std::iter::once("agentcage mcp".into()).chain(forward.clone());
        let args = McpCli::parse_from::<_, std::ffi::OsString>(argv).args;
        let code = mcp::main(&args, forward);
        return code.clamp(0, 255) as u8;
    }
    let alone = match std::env::args_os().nth(1) {
        Some(a) if a == "diff" => Some(Cmd::Diff(parse_alone::<DiffCli>("diff").args)),
        Some(a) if a == "commit" => Some(Cmd::Commit(parse_alone::<CommitCli>("commit").args)),
        Some(a) if a == "discard" => Some(Cmd::Discard(parse_alone::<DiscardCli>("discard").args)),
        Some(a) if a == "overlays" => {
            Some(Cmd::Overlays(parse_alone::<OverlaysCli>("overlays").args))
        }
        _ => None,
    };
    let cli = match alone {
        Some(cmd) => Cli { cmd },
        None => Cli::parse(),
    };
    if !matches!(cli.cmd, Cmd::Run(_) | Cmd::Exec(_) | Cmd::Session(_)) {
        // Reporting commands die quietly on a closed pipe (`agentcage matrix | head`), like
        // other CLI tools, instead of panicking in println!. `run` keeps Rust's SIG_IGN: its
        // own pipes to the sandbox must fail with EPIPE, not kill the launcher.
        // SAFETY: SIG_DFL is a valid disposition, and no other thread runs yet.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    }
    let code = match cli.cmd {
        Cmd::Run(args) => run::main(*args),
        Cmd::Session(cmd) => session::main(cmd),
        Cmd::Exec(args) => session::exec(args),
        Cmd::Mcp(args) => mcp::main(&args, std::env::args_os().skip(2).collect()),
        Cmd::Probe(args) => report(agentcage_probe::run(&args)),
        Cmd::Matrix(args) => report(agentcage_matrix::run(&args)),
        Cmd::Bench(args) => report(agentcage_bench::run(&args)),
        Cmd::BenchInner(args) => report(agentcage_bench::inner::inner(&args)),
        Cmd::Doctor(args) => doctor::main(&args),
        Cmd::Why(args) => events::why(&args),
        Cmd::Policy(args) => policy_cmd::main(&args),
        Cmd::Completions(args) => completions::completions::<Cli>(&args),
        Cmd::Man(args) => completions::man::<Cli>(&args),
        Cmd::Export(args) => export::main(&args),
        Cmd::Diff(args) => overlay::diff(&args),
        Cmd::Commit(args) => overlay::commit(&args),
        Cmd::Discard(args) => overlay::discard(&args),
        Cmd::Overlays(args) => overlay::list(&args),
    };
    code.clamp(0, 255) as u8
}

/// A parse error of `agentcage run`: clap's message, plus, when a bare word came where an
/// option was expected (`agentcage run python3 x.py`), the hint to put the command after `--`.
fn run_usage(e: &clap::Error) -> u8 {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    let bare = match (e.kind(), e.get(ContextKind::InvalidArg)) {
        (ErrorKind::UnknownArgument, Some(ContextValue::String(a)))
            if !a.is_empty() && !a.starts_with('-') =>
        {
            Some(a.clone())
        }
        _ => None,
    };
    let Some(word) = bare else { e.exit() };
    // One error line (as every rejection), then the hint.
    ui::error(
        &format!("unexpected argument '{word}': not an option of `agentcage run`"),
        Some(&format!(
            "the command goes after `--`: agentcage run [OPTIONS] -- {word} ..."
        )),
    );
    2
}

/// Prints an error once (with its causes) and maps it to the setup exit code.
fn report(r: anyhow::Result<i32>) -> i32 {
    match r {
        Ok(code) => code,
        Err(e) => {
            eprintln!("agentcage: error: {e:#}");
            exit::SETUP
        }
    }
}
