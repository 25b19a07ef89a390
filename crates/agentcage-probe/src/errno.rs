//! Errno and signal names: `13` becomes `EACCES` ("Permission denied"), `31` becomes `SIGSYS`.
//!
//! Every BLOCKED row carries a symbolic name because numbers differ between architectures
//! and a name is what a reader compares against a man page. The table covers every errno
//! Linux defines on x86_64 and aarch64 (asm-generic numbering); anything else prints as
//! `E<number>` rather than failing.

use std::fmt;

/// A raw errno value from a failed system call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Errno(pub i32);

impl Errno {
    /// The calling thread's current errno.
    pub fn last() -> Errno {
        Errno(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
    }

    /// The errno of an I/O error, or `EIO` when it carries none.
    pub fn from_io(e: &std::io::Error) -> Errno {
        Errno(e.raw_os_error().unwrap_or(libc::EIO))
    }

    /// Symbolic name, e.g. `EPERM`; `E<n>` for unknown values.
    pub fn name(self) -> String {
        match errno_name(self.0) {
            Some(n) => n.to_string(),
            None => format!("E{}", self.0),
        }
    }

    /// The C library's message, e.g. `Operation not permitted`.
    pub fn message(self) -> String {
        let s = std::io::Error::from_raw_os_error(self.0).to_string();
        // std appends " (os error N)"; the name already identifies the value.
        match s.rfind(" (os error ") {
            Some(i) => s[..i].to_string(),
            None => s,
        }
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name(), self.message())
    }
}

/// Symbolic name of an errno value, if Linux defines it.
pub fn errno_name(e: i32) -> Option<&'static str> {
    use libc::*;
    Some(match e {
        EPERM => "EPERM",
        ENOENT => "ENOENT",
        ESRCH => "ESRCH",
        EINTR => "EINTR",
        EIO => "EIO",
        ENXIO => "ENXIO",
        E2BIG => "E2BIG",
        ENOEXEC => "ENOEXEC",
        EBADF => "EBADF",
        ECHILD => "ECHILD",
        EAGAIN => "EAGAIN",
        ENOMEM => "ENOMEM",
        EACCES => "EACCES",
        EFAULT => "EFAULT",
        ENOTBLK => "ENOTBLK",
        EBUSY => "EBUSY",
        EEXIST => "EEXIST",
        EXDEV => "EXDEV",
        ENODEV => "ENODEV",
        ENOTDIR => "ENOTDIR",
        EISDIR => "EISDIR",
        EINVAL => "EINVAL",
        ENFILE => "ENFILE",
        EMFILE => "EMFILE",
        ENOTTY => "ENOTTY",
        ETXTBSY => "ETXTBSY",
        EFBIG => "EFBIG",
        ENOSPC => "ENOSPC",
        ESPIPE => "ESPIPE",
        EROFS => "EROFS",
        EMLINK => "EMLINK",
        EPIPE => "EPIPE",
        EDOM => "EDOM",
        ERANGE => "ERANGE",
        EDEADLK => "EDEADLK",
        ENAMETOOLONG => "ENAMETOOLONG",
        ENOLCK => "ENOLCK",
        ENOSYS => "ENOSYS",
        ENOTEMPTY => "ENOTEMPTY",
        ELOOP => "ELOOP",
        ENOMSG => "ENOMSG",
        EIDRM => "EIDRM",
        ECHRNG => "ECHRNG",
        EL2NSYNC => "EL2NSYNC",
        EL3HLT => "EL3HLT",
        EL3RST => "EL3RST",
        ELNRNG => "ELNRNG",
        EUNATCH => "EUNATCH",
        ENOCSI => "ENOCSI",
        EL2HLT => "EL2HLT",
        EBADE => "EBADE",
        EBADR => "EBADR",
        EXFULL => "EXFULL",
        ENOANO => "ENOANO",
        EBADRQC => "EBADRQC",
        EBADSLT => "EBADSLT",
        EBFONT => "EBFONT",
        ENOSTR => "ENOSTR",
        ENODATA => "ENODATA",
        ETIME => "ETIME",
        ENOSR => "ENOSR",
        ENONET => "ENONET",
        ENOPKG => "ENOPKG",
        EREMOTE => "EREMOTE",
        ENOLINK => "ENOLINK",
        EADV => "EADV",
        ESRMNT => "ESRMNT",
        ECOMM => "ECOMM",
        EPROTO => "EPROTO",
        EMULTIHOP => "EMULTIHOP",
        EDOTDOT => "EDOTDOT",
        EBADMSG => "EBADMSG",
        EOVERFLOW => "EOVERFLOW",
        ENOTUNIQ => "ENOTUNIQ",
        EBADFD => "EBADFD",
        EREMCHG => "EREMCHG",
        ELIBACC => "ELIBACC",
        ELIBBAD => "ELIBBAD",
        ELIBSCN => "ELIBSCN",
        ELIBMAX => "ELIBMAX",
        ELIBEXEC => "ELIBEXEC",
        EILSEQ => "EILSEQ",
        ERESTART => "ERESTART",
        ESTRPIPE => "ESTRPIPE",
        EUSERS => "EUSERS",
        ENOTSOCK => "ENOTSOCK",
        EDESTADDRREQ => "EDESTADDRREQ",
        EMSGSIZE => "EMSGSIZE",
        EPROTOTYPE => "EPROTOTYPE",
        ENOPROTOOPT => "ENOPROTOOPT",
        EPROTONOSUPPORT => "EPROTONOSUPPORT",
        ESOCKTNOSUPPORT => "ESOCKTNOSUPPORT",
        EOPNOTSUPP => "EOPNOTSUPP",
        EPFNOSUPPORT => "EPFNOSUPPORT",
        EAFNOSUPPORT => "EAFNOSUPPORT",
        EADDRINUSE => "EADDRINUSE",
        EADDRNOTAVAIL => "EADDRNOTAVAIL",
        ENETDOWN => "ENETDOWN",
        ENETUNREACH => "ENETUNREACH",
        ENETRESET => "ENETRESET",
        ECONNABORTED => "ECONNABORTED",
        ECONNRESET => "ECONNRESET",
        ENOBUFS => "ENOBUFS",
        EISCONN => "EISCONN",
        ENOTCONN => "ENOTCONN",
        ESHUTDOWN => "ESHUTDOWN",
        ETOOMANYREFS => "ETOOMANYREFS",
        ETIMEDOUT => "ETIMEDOUT",
        ECONNREFUSED => "ECONNREFUSED",
        EHOSTDOWN => "EHOSTDOWN",
        EHOSTUNREACH => "EHOSTUNREACH",
        EALREADY => "EALREADY",
        EINPROGRESS => "EINPROGRESS",
        ESTALE => "ESTALE",
        EUCLEAN => "EUCLEAN",
        ENOTNAM => "ENOTNAM",
        ENAVAIL => "ENAVAIL",
        EISNAM => "EISNAM",
        EREMOTEIO => "EREMOTEIO",
        EDQUOT => "EDQUOT",
        ENOMEDIUM => "ENOMEDIUM",
        EMEDIUMTYPE => "EMEDIUMTYPE",
        ECANCELED => "ECANCELED",
        ENOKEY => "ENOKEY",
        EKEYEXPIRED => "EKEYEXPIRED",
        EKEYREVOKED => "EKEYREVOKED",
        EKEYREJECTED => "EKEYREJECTED",
        EOWNERDEAD => "EOWNERDEAD",
        ENOTRECOVERABLE => "ENOTRECOVERABLE",
        ERFKILL => "ERFKILL",
        EHWPOISON => "EHWPOISON",
        _ => return None,
    })
}

/// Symbolic name of a signal, e.g. `SIGSYS`; `SIG<n>` for unknown values.
pub fn signal_name(sig: i32) -> String {
    use libc::*;
    let n = match sig {
        SIGHUP => "SIGHUP",
        SIGINT => "SIGINT",
        SIGQUIT => "SIGQUIT",
        SIGILL => "SIGILL",
        SIGTRAP => "SIGTRAP",
        SIGABRT => "SIGABRT",
        SIGBUS => "SIGBUS",
        SIGFPE => "SIGFPE",
        SIGKILL => "SIGKILL",
        SIGUSR1 => "SIGUSR1",
        SIGSEGV => "SIGSEGV",
        SIGUSR2 => "SIGUSR2",
        SIGPIPE => "SIGPIPE",
        SIGALRM => "SIGALRM",
        SIGTERM => "SIGTERM",
        SIGSTKFLT => "SIGSTKFLT",
        SIGCHLD => "SIGCHLD",
        SIGCONT => "SIGCONT",
        SIGSTOP => "SIGSTOP",
        SIGTSTP => "SIGTSTP",
        SIGTTIN => "SIGTTIN",
        SIGTTOU => "SIGTTOU",
        SIGURG => "SIGURG",
        SIGXCPU => "SIGXCPU",
        SIGXFSZ => "SIGXFSZ",
        SIGVTALRM => "SIGVTALRM",
        SIGPROF => "SIGPROF",
        SIGWINCH => "SIGWINCH",
        SIGIO => "SIGIO",
        SIGPWR => "SIGPWR",
        SIGSYS => "SIGSYS",
        _ => return format!("SIG{sig}"),
    };
    n.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_names() {
        assert_eq!(Errno(libc::EPERM).name(), "EPERM");
        assert_eq!(Errno(libc::EACCES).name(), "EACCES");
        assert_eq!(Errno(libc::ENOENT).name(), "ENOENT");
        assert_eq!(Errno(libc::ENETUNREACH).name(), "ENETUNREACH");
        assert_eq!(Errno(libc::EROFS).name(), "EROFS");
        assert_eq!(Errno(libc::ENOSYS).name(), "ENOSYS");
        assert_eq!(Errno(libc::EOPNOTSUPP).name(), "EOPNOTSUPP");
        assert_eq!(Errno(4095).name(), "E4095");
        assert_eq!(signal_name(libc::SIGSYS), "SIGSYS");
        assert_eq!(signal_name(libc::SIGKILL), "SIGKILL");
        assert_eq!(signal_name(77), "SIG77");
    }

    #[test]
    fn messages_drop_the_os_error_suffix() {
        assert_eq!(Errno(libc::EPERM).message(), "Operation not permitted");
        assert_eq!(
            Errno(libc::EACCES).to_string(),
            "EACCES (Permission denied)"
        );
    }

    #[test]
    fn table_covers_every_errno_below_134_and_names_are_unique() {
        // Linux x86_64 errnos run contiguously from 1 to 133 (EHWPOISON); EWOULDBLOCK and
        // EDEADLOCK are aliases that share numbers with EAGAIN and EDEADLK.
        let mut seen = std::collections::HashSet::new();
        for e in 1..=133 {
            if e == 41 || e == 58 {
                continue; // unassigned on Linux
            }
            let n = errno_name(e).unwrap_or_else(|| panic!("errno {e} missing"));
            assert!(n.starts_with('E'));
            assert!(seen.insert(n), "duplicate name {n}");
        }
    }
}
