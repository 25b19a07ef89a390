//! `agentcage`: the command line. Thin: parse, turn flags into a `Policy`, call the library,
//! map the outcome to an exit code (see `exit.rs`).

mod exit;
mod run;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Run untrusted AI agents (coding agents, shell commands) in a rootless Linux sandbox.
#[derive(Debug, Parser)]
#[command(name = "agentcage", version = env!("AGENTCAGE_VERSION"), after_help = exit::EXIT_CODES_HELP)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Run a command in the sandbox.
    #[command(
        after_help = "Examples:\n  agentcage run -- python3 -c 'print(1)'\n  agentcage run --profile ns-only --rw ~/.cache/pip -- pip install -r requirements.txt\n  agentcage run --workspace ~/proj --env CI=1 -- make test\n\n".to_string() + exit::EXIT_CODES_HELP
    )]
    Run(run::RunArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let code = match cli.cmd {
        Cmd::Run(args) => run::main(args),
    };
    ExitCode::from(code.clamp(0, 255) as u8)
}
