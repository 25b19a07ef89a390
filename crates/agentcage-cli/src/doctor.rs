//! `agentcage doctor`: what this kernel supports (see `agentcage::doctor`).

use std::io::IsTerminal;

use agentcage::doctor::{render_json, render_text, DoctorReport};
use clap::Args;

/// Flags of `agentcage doctor`.
#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Runs `agentcage doctor`; exit 0 when `full` can be enforced here, 1 otherwise.
pub fn main(a: &DoctorArgs) -> i32 {
    let r = DoctorReport::detect();
    if a.json {
        println!("{}", render_json(&r));
    } else {
        let color = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
        print!("{}", render_text(&r, color));
    }
    r.exit_code()
}
