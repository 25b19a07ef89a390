//! agentcage's seccomp-BPF filter: a small, audited allow-list generator.
//!
//! What it isolates: the kernel's syscall surface. The filter is the last step before
//! `execve` (after namespaces, mounts, Landlock, capability drop and no_new_privs), so it
//! never has to allow setup syscalls, and it is inherited by everything the agent runs.
//!
//! Sides of the fork:
//! - parent: [`prepare`] compiles the [`table`] into a BPF program ([`PreparedFilter`]);
//! - child: [`install()`] attaches it with `seccomp(2)`. It allocates nothing, takes no lock
//!   and cannot panic.
//!
//! Kernel feature: seccomp filter mode (Linux 3.5; `seccomp(2)` 3.17; `KILL_PROCESS` 4.14;
//! `SPEC_ALLOW` 4.17; the action cache that keeps allowed syscalls cheap 5.11). Man pages:
//! seccomp(2), prctl(2); the kernel's `Documentation/userspace-api/seccomp_filter.rst`.
//!
//! Program, in order (see [`compile`](mod@compile)):
//! 1. Architecture check. Anything but the native ABI (`AUDIT_ARCH_X86_64` or
//!    `AUDIT_ARCH_AARCH64`) is `SECCOMP_RET_KILL_PROCESS`: i386 `int 0x80` and AArch32
//!    use other syscall numbers (i386 `mount` is 21, x86_64's `mount` is 165), so a
//!    number-based policy means nothing there. x32 numbers (bit 30) on x86_64 are killed
//!    the same way. Kill rather than `EPERM`: a process that enters a foreign ABI gets
//!    *every* syscall refused, `exit` included, and musl's `_Exit` retries `exit` forever,
//!    so `EPERM` turns a 32-bit binary into a busy loop. A kill is immediate, shows as
//!    exit status 159 (128 + SIGSYS), lands in the audit log, and cannot be mistaken for a
//!    policy `EPERM` on a real x86_64 call. No supported tool uses these ABIs.
//! 2. Load the syscall number and binary-search it over intervals of equal action.
//! 3. For the few argument-checked syscalls (`clone`, `ioctl`, `socket`, `socketpair`,
//!    `personality`, the set-id mode checks of `open`/`openat`/`creat`/`chmod`/`mknod`
//!    and their variants, and with TCP rules on a shared network the Fast Open checks of
//!    `sendto`/`sendmsg`/`sendmmsg`/`setsockopt`), jump to a small block that loads the
//!    argument. No other path loads
//!    an argument, so the kernel's action cache proves every allowed hot syscall constant.
//!
//! The full list, with reasons, is `SYSCALLS.md`, generated from the table and checked
//! by a test.
//!
//! [`export`](mod@export) renders the same table as an OCI/Docker JSON profile for runtimes
//! (docs/FLEET.md); its tests prove the profile and the BPF agree.

pub mod bpf;
pub mod compile;
pub mod doc;
pub mod emulate;
pub mod export;
pub mod install;
pub mod table;

pub use compile::compile;
pub use doc::render_markdown;
pub use emulate::{emulate, kernel_cache_allows, Outcome, SeccompData, Verdict};
pub use install::{install, install_notify, SECCOMP_FILTER_FLAG_SPEC_ALLOW};
pub use table::{syscall_table, Arch, ArgRule, Errno, Rule, Syscall};

use libc::sock_filter;

/// Options for [`prepare`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FilterOptions {
    /// Keep the kernel's speculative-store-bypass (Spectre v4) mitigation for the
    /// sandboxed process tree, i.e. do not pass `SECCOMP_FILTER_FLAG_SPEC_ALLOW`.
    /// Off by default, like Docker and systemd: see `SYSCALLS.md`.
    pub spec_mitigation: bool,
    /// Add the [`table::TCP_RULE_GUARDS`]: refuse TCP Fast Open, which connects without the
    /// hook Landlock's TCP rules check. For runs whose TCP rules guard the host's network.
    pub tcp_guards: bool,
}

/// Why a filter could not be prepared.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SeccompError {
    /// The build target is not an architecture this crate has a table for.
    #[error(
        "no seccomp syscall table for this architecture (supported: x86_64, aarch64 little-endian)"
    )]
    UnsupportedArch,
    /// The table could not be compiled (a bug in this crate, caught by its tests).
    #[error("compile the seccomp policy table to BPF")]
    Compile(#[source] bpf::AsmError),
}

/// A compiled filter and its `seccomp(2)` flags, built in the parent before clone.
#[derive(Debug, Clone)]
pub struct PreparedFilter {
    program: Vec<sock_filter>,
    /// The events variant ([`compile::notify_variant`]): denials are user notifications.
    notify_program: Vec<sock_filter>,
    len: u16,
    flags: u32,
    arch: Arch,
}

impl PreparedFilter {
    /// The BPF instructions.
    pub fn program(&self) -> &[sock_filter] {
        &self.program
    }

    /// Flags passed to `seccomp(SECCOMP_SET_MODE_FILTER, flags, ..)`.
    pub fn flags(&self) -> u32 {
        self.flags
    }

    /// The architecture the program was compiled for.
    pub fn arch(&self) -> Arch {
        self.arch
    }

    /// The events variant of [`program`](Self::program): the same program with every
    /// policy denial but `ENOSYS` turned into `SECCOMP_RET_USER_NOTIF`.
    pub fn notify_program(&self) -> &[sock_filter] {
        &self.notify_program
    }

    pub(crate) fn len_u16(&self) -> u16 {
        self.len
    }

    /// The errno the plain program returns for a syscall the events variant reported
    /// (`nr`, `arch` and `args` as the kernel's `seccomp_notif.data` gives them: register
    /// values, never the caller's memory). `None` when the plain program would not fail
    /// it with an errno (never for a notification of this filter: then answer `EPERM`).
    pub fn denial_errno(&self, nr: i32, arch: u32, args: [u64; 6]) -> Option<i32> {
        let data = SeccompData::new(nr, arch, args);
        match emulate(&self.program, &data).ok()?.verdict {
            Verdict::Errno(e) => Some(e),
            _ => None,
        }
    }

    /// Evaluates the program for `nr` on its own architecture with `args`, as the kernel
    /// would (a convenience over [`emulate()`]).
    ///
    /// # Errors
    /// Only for a malformed program, which [`prepare`] never returns.
    pub fn verdict(&self, nr: u32, args: [u64; 6]) -> Result<Verdict, emulate::EmulateError> {
        let data = SeccompData::new(nr as i32, self.arch.audit_arch(), args);
        emulate(&self.program, &data).map(|o| o.verdict)
    }
}

/// Compiles the filter for the build target's architecture. Runs in the parent.
///
/// # Errors
/// [`SeccompError::UnsupportedArch`] on targets other than x86_64 and aarch64
/// (little-endian); [`SeccompError::Compile`] only on a bug in this crate.
pub fn prepare(opts: &FilterOptions) -> Result<PreparedFilter, SeccompError> {
    let arch = Arch::native().ok_or(SeccompError::UnsupportedArch)?;
    prepare_for(arch, opts)
}

/// Compiles the filter for `arch` (tests and documentation; [`prepare`] picks the native
/// one).
///
/// # Errors
/// [`SeccompError::Compile`] only on a bug in this crate.
pub fn prepare_for(arch: Arch, opts: &FilterOptions) -> Result<PreparedFilter, SeccompError> {
    let program = compile::compile_with(arch, opts.tcp_guards).map_err(SeccompError::Compile)?;
    let len = u16::try_from(program.len())
        .map_err(|_| SeccompError::Compile(bpf::AsmError::Length { len: program.len() }))?;
    let flags = if opts.spec_mitigation {
        0
    } else {
        SECCOMP_FILTER_FLAG_SPEC_ALLOW
    };
    let notify_program = compile::notify_variant(&program);
    Ok(PreparedFilter {
        program,
        notify_program,
        len,
        flags,
        arch,
    })
}

#[cfg(test)]
mod tests;
