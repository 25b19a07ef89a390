//! How the launcher talks on stderr: `agentcage: error: ...` (one line) and an optional
//! `agentcage: hint: ...`, warnings and notes. The `error`/`warning`/`hint` labels are coloured
//! only when stderr is a terminal and `NO_COLOR` is unset (https://no-color.org).

use std::io::IsTerminal;

/// Whether stderr gets ANSI colours.
pub fn color() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

fn label(name: &str, ansi: &str) -> String {
    if color() {
        format!("\x1b[{ansi}m{name}\x1b[0m")
    } else {
        name.to_string()
    }
}

/// Prints `agentcage: error: MSG` and, when given, `agentcage: hint: HINT`.
pub fn error(msg: &str, hint: Option<&str>) {
    eprintln!("agentcage: {}: {msg}", label("error", "1;31"));
    if let Some(h) = hint {
        eprintln!("agentcage: {}: {h}", label("hint", "1;36"));
    }
}

/// Prints `agentcage: warning: MSG`.
pub fn warning(msg: &str) {
    eprintln!("agentcage: {}: {msg}", label("warning", "1;33"));
}
