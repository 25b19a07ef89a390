//! Exit codes, as `env`, `timeout` and `docker run` use them.

/// Usage error (bad flag, bad value, missing path).
pub const USAGE: i32 = 2;
/// `--timeout` expired (as timeout(1)).
pub const TIMEOUT: i32 = 124;
/// The sandbox could not be set up (or a required primitive cannot be enforced).
pub const SETUP: i32 = 125;

/// Shown in `--help`.
pub const EXIT_CODES_HELP: &str = "Exit status:\n  the command's own status when it exits;\n  128+N when it is killed by signal N (159 = SIGSYS from the seccomp filter);\n  124 when --timeout expires;\n  125 when the sandbox cannot be set up (the step, its objects and the errno are printed);\n  126 when the command is not executable, 127 when it is not found;\n  2 on a usage error.";
