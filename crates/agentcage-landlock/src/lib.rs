//! Landlock for agentcage: an unprivileged, stackable LSM that restricts which files a
//! process may open, create, rename, truncate or ioctl, which TCP ports it may bind or
//! connect to, and whether it may reach abstract unix sockets or signal processes outside
//! its domain. See landlock(7), landlock_create_ruleset(2), landlock_add_rule(2),
//! landlock_restrict_self(2).
//!
//! # Sides of the fork
//! - [`detect_abi`] (host query, parent): the kernel's ABI, or why Landlock is unavailable
//!   (ENOSYS: not built; EOPNOTSUPP: built but disabled at boot).
//! - [`prepare`] (parent, before clone): [`Spec`] → [`Prepared`]. Every filesystem right the
//!   kernel knows is handled, so a path without a rule gets nothing. Paths become `CString`s,
//!   access classes become masks for this ABI, ports are merged. [`Prepared::enforcement`]
//!   says per right what is enforced, partially, or not, and which ABI would bring it.
//! - [`apply`] (child, after pivot_root, before execve): opens each rule path `O_PATH`
//!   (with `O_DIRECTORY` when the caller expects a directory, [`Rule::dir`]), `fstat`s the
//!   others to drop directory-only rights on files, adds the rules, calls
//!   `landlock_restrict_self`. It allocates nothing, takes no lock and cannot panic; it
//!   returns a `Copy` [`ApplyOutcome`] or [`ApplyError`] for the report pipe, which the
//!   parent explains with [`Prepared::explain`] and [`Prepared::missing_paths`].
//!
//! # Why the child adds the rules
//! Most allowed paths (`/tmp` tmpfs, `/dev` nodes, the synthesized `/etc`, the new `/proc`)
//! exist only inside the composed root, so they can only be opened after pivot_root. In the
//! `none` profile there is no new root and the same code opens host paths.
//!
//! # Preconditions of `apply`
//! The caller has set no_new_privs ([`set_no_new_privs`]) or holds CAP_SYS_ADMIN in its user
//! namespace, and has finished mounting (a Landlock domain denies mount topology changes).
//!
//! # Known gaps (reported, and partly covered by other layers)
//! - TCP rights cover TCP only. UDP, SCTP and MPTCP are not restricted: on this kernel an
//!   MPTCP `connect` to a port the domain denies for TCP succeeds (tested in
//!   `tests/kernel.rs`), so a launcher that restricts TCP must also deny
//!   `socket(AF_INET*, SOCK_STREAM, IPPROTO_MPTCP/IPPROTO_SCTP)` with seccomp.
//! - Not controlled by any ABI: stat, chdir, chmod, chown, xattrs, utime, flock, most
//!   fcntl; file descriptors opened before `apply` keep their access.
//! - Connecting to pathname unix sockets needs ABI 9 (`fs.resolve_unix`); older kernels
//!   leave it open.
//! - Rules bind to inodes when `apply` opens them: a path created later under an allowed
//!   directory is covered, a path replaced later is not re-resolved.
//!
//! ```no_run
//! use agentcage_landlock::{apply, detect_abi, prepare, set_no_new_privs, Access, Rule, Spec};
//! let spec = Spec {
//!     rules: vec![Rule::new("/usr", Access::ReadExec), Rule::new("/tmp", Access::ReadWrite)],
//!     restrict_tcp: true,
//!     ..Spec::default()
//! };
//! let prepared = prepare(&spec, &detect_abi())?; // parent
//! eprint!("{}", prepared.enforcement());          // `run -v`
//! // ... clone, mounts, pivot_root; then in the child:
//! set_no_new_privs().and_then(|()| apply(&prepared)).map_err(|e| prepared.explain(e))?;
//! # Ok::<(), agentcage_landlock::LandlockError>(())
//! ```

pub mod abi;
mod apply;
mod prepare;
mod report;
mod spec;
mod sys;

pub use abi::{detect_abi, detect_errata, HostSupport, Right, Unavailable, MAX_KNOWN_ABI};
pub use apply::{apply, set_no_new_privs, ApplyError, ApplyOutcome, ApplyStep, TRACKED_RULES};
pub use prepare::{prepare, LandlockError, Prepared};
pub use report::{EnforcementReport, Overall, RightReport, Status};
pub use spec::{Access, Requirement, Rule, Spec};
