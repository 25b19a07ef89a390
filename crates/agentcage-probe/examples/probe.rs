//! Stand-alone probe binary, used by the integration tests until `agentcage probe` exists.
//! Same flags as `agentcage probe`.

use clap::Parser;

#[derive(Parser)]
#[command(
    name = "probe",
    about = "Try forbidden operations, safely; one JSON line per op"
)]
struct Cli {
    #[command(flatten)]
    args: agentcage_probe::ProbeArgs,
}

fn main() {
    let cli = Cli::parse();
    match agentcage_probe::run(&cli.args) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(125);
        }
    }
}
