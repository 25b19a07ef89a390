//! Exit codes, as `env`, `timeout` and `docker run` use them.

/// Usage error (bad flag, bad value, missing path).
pub const USAGE: i32 = 2;
/// `--timeout` expired (as timeout(1)).
pub const TIMEOUT: i32 = 124;
/// The sandbox could not be set up (or a required primitive cannot be enforced).
pub const SETUP: i32 = 125;
/// The command was found but cannot be executed (EACCES, ENOEXEC, ...).
pub const NOT_EXECUTABLE: i32 = 126;
/// The command was not found (ENOENT, ENOTDIR).
pub const NOT_FOUND: i32 = 127;

/// Shown in `--help`.
pub const EXIT_CODES_HELP: &str = "Exit status:\n  the command's own status when it exits;\n  128+N when it is killed by signal N (159 = SIGSYS from the seccomp filter);\n  124 when --timeout expires;\n  125 when the sandbox cannot be set up (the step, its objects and the errno are printed);\n  126 when the command is not executable, 127 when it is not found;\n  2 on a usage error.";

/// `agentcage doctor`: 0 when the `full` profile can be enforced here, 1 otherwise.
pub fn doctor_exit_code(r: &agentcage::doctor::DoctorReport) -> i32 {
    if r.full_enforceable() {
        0
    } else {
        1
    }
}

/// The exit code for a library error: 2 usage, 125 setup, 126/127 exec.
///
/// The CLI owns this mapping (as nextest's `process_exit_code`); the library
/// only says what failed.
pub fn process_exit_code(e: &agentcage::Error) -> i32 {
    use agentcage::Error;
    match e {
        Error::Policy(_) => USAGE,
        Error::Unenforceable { .. }
        | Error::Setup { .. }
        | Error::Cgroup { .. }
        | Error::Egress { .. }
        | Error::Rlimit(_) => SETUP,
        Error::Exec { errno, .. } => {
            if errno.0 == libc::ENOENT || errno.0 == libc::ENOTDIR {
                NOT_FOUND
            } else {
                NOT_EXECUTABLE
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use agentcage::Error;

    #[test]
    fn exit_codes() {
        let ex = |e| Error::Exec {
            command: "x".into(),
            errno: agentcage::Errno(e),
        };
        assert_eq!(process_exit_code(&ex(libc::ENOENT)), 127);
        assert_eq!(process_exit_code(&ex(libc::ENOTDIR)), 127);
        assert_eq!(process_exit_code(&ex(libc::EACCES)), 126);
        assert_eq!(process_exit_code(&ex(libc::ENOEXEC)), 126);
        assert_eq!(
            process_exit_code(&Error::Policy(agentcage::PolicyError::NoCommand)),
            2
        );
    }

    #[test]
    fn doctor_exits_0_only_when_full_is_enforceable() {
        use agentcage::doctor::DoctorReport;
        use agentcage::host::testing::fake_features;
        let ok = DoctorReport::from_features(fake_features(false, true, 7, true));
        assert_eq!(doctor_exit_code(&ok), 0);
        let no_landlock = DoctorReport::from_features(fake_features(false, true, 0, true));
        assert_eq!(doctor_exit_code(&no_landlock), 1);
    }
}
