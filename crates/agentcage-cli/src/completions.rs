//! `agentcage completions SHELL` and `agentcage man`: generated from the clap definition, so
//! they never drift from the real flags.

use std::io::Write;
use std::path::PathBuf;

use clap::{Args, CommandFactory, ValueEnum};

/// Shells `completions` supports.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Shell {
    /// bash (source it, or put it in /usr/share/bash-completion/completions/agentcage).
    Bash,
    /// zsh (put it as `_agentcage` in a directory of $fpath).
    Zsh,
    /// fish (put it in ~/.config/fish/completions/agentcage.fish).
    Fish,
}

/// Flags of `agentcage completions`.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell.
    pub shell: Shell,
}

/// Flags of `agentcage man`.
#[derive(Debug, Args)]
pub struct ManArgs {
    /// Write one page per subcommand (agentcage.1, agentcage-run.1, ...) into DIR instead of
    /// printing agentcage(1).
    #[arg(long, value_name = "DIR")]
    pub out_dir: Option<PathBuf>,
}

/// Prints the completion script for `a.shell`.
pub fn completions<C: CommandFactory>(a: &CompletionsArgs) -> i32 {
    let mut cmd = C::command();
    let mut out = std::io::stdout().lock();
    match a.shell {
        Shell::Bash => {
            clap_complete::generate(clap_complete::Shell::Bash, &mut cmd, "agentcage", &mut out)
        }
        Shell::Zsh => {
            clap_complete::generate(clap_complete::Shell::Zsh, &mut cmd, "agentcage", &mut out)
        }
        Shell::Fish => {
            clap_complete::generate(clap_complete::Shell::Fish, &mut cmd, "agentcage", &mut out)
        }
    }
    match out.flush() {
        Ok(()) => 0,
        Err(_) => 1,
    }
}

/// Prints agentcage(1), or writes every page into `--out-dir`.
pub fn man<C: CommandFactory>(a: &ManArgs) -> i32 {
    let cmd = C::command();
    let r = match &a.out_dir {
        Some(dir) => std::fs::create_dir_all(dir)
            .and_then(|()| clap_mangen::generate_to(cmd, dir))
            .map_err(|e| format!("write man pages to {}: {e}", dir.display())),
        None => {
            let mut buf = Vec::new();
            clap_mangen::Man::new(cmd)
                .render(&mut buf)
                .and_then(|()| std::io::stdout().lock().write_all(&buf))
                .map_err(|e| format!("write the man page: {e}"))
        }
    };
    match r {
        Ok(()) => 0,
        Err(e) => {
            crate::ui::error(&e, None);
            1
        }
    }
}
