//! Information rows (result INFO): namespaces shared with the host, capability sets, seccomp
//! mode, no_new_privs, Landlock, ids.
//!
//! These describe the environment the other rows were measured in; they are not pass/fail.
//! Namespace sharing is judged against the inodes the caller passed with `--host-ns` (the
//! matrix reads them outside the sandbox); without that flag the comparison is with pid 1 of
//! the probe's own pid namespace, which is the host's init only when the probe shares the
//! host's pid namespace, and the detail says so.

use super::{Ctx, Op, Outcome};
use crate::errno::Errno;
use crate::schema::Category::Info;
use crate::sys;

/// The information rows.
pub const OPS: &[Op] = &[
    Op::new("info.ns.user", "user namespace", Info, |c| ns(c, "user")),
    Op::new("info.ns.mnt", "mount namespace", Info, |c| ns(c, "mnt")),
    Op::new("info.ns.pid", "pid namespace", Info, |c| ns(c, "pid")),
    Op::new("info.ns.net", "network namespace", Info, |c| ns(c, "net")),
    Op::new("info.ns.ipc", "ipc namespace", Info, |c| ns(c, "ipc")),
    Op::new("info.ns.uts", "uts namespace", Info, |c| ns(c, "uts")),
    Op::new("info.ns.cgroup", "cgroup namespace", Info, |c| {
        ns(c, "cgroup")
    }),
    Op::new("info.ns.time", "time namespace", Info, |c| ns(c, "time")),
    Op::new("info.caps.inheritable", "CapInh", Info, |_| {
        status("CapInh")
    }),
    Op::new("info.caps.permitted", "CapPrm", Info, |_| status("CapPrm")),
    Op::new("info.caps.effective", "CapEff", Info, |_| status("CapEff")),
    Op::new("info.caps.bounding", "CapBnd", Info, |_| status("CapBnd")),
    Op::new("info.caps.ambient", "CapAmb", Info, |_| status("CapAmb")),
    Op::new("info.seccomp.mode", "Seccomp", Info, |_| status("Seccomp")),
    Op::new("info.seccomp.filters", "Seccomp_filters", Info, |_| {
        status("Seccomp_filters")
    }),
    Op::new("info.nnp.status", "NoNewPrivs", Info, |_| {
        status("NoNewPrivs")
    }),
    Op::new("info.landlock.abi", "Landlock ABI", Info, landlock_abi),
    Op::new(
        "info.landlock.domain",
        "Landlock domain (inferred)",
        Info,
        landlock_domain,
    ),
    Op::new("info.ids.current", "uid and gid", Info, ids),
    Op::new("info.ids.uid_map", "uid map", Info, |_| id_map("uid_map")),
    Op::new("info.kernel.release", "kernel release", Info, |_| {
        Outcome::info(sys::kernel_release())
    }),
];

/// The inode number in a namespace link such as `net:[4026531840]`.
fn ns_inode(link: &str) -> Option<u64> {
    link.split_once(":[")?.1.strip_suffix(']')?.parse().ok()
}

fn read_ns(pid: &str, kind: &str) -> Result<u64, Errno> {
    let link =
        std::fs::read_link(format!("/proc/{pid}/ns/{kind}")).map_err(|e| Errno::from_io(&e))?;
    ns_inode(&link.to_string_lossy()).ok_or(Errno(libc::EINVAL))
}

fn ns(ctx: &Ctx, kind: &str) -> Outcome {
    let own = match read_ns("self", kind) {
        Ok(i) => i,
        Err(e) => return Outcome::info(format!("unknown: /proc/self/ns/{kind}: {e}")),
    };
    if let Some(host) = ctx.host_ns.get(kind) {
        return Outcome::info(if *host == own {
            format!("shared with the host ({kind}:[{own}])")
        } else {
            format!("private ({kind}:[{own}], host {kind}:[{host}])")
        });
    }
    let note = "compared with pid 1 of this pid namespace; pass --host-ns for the host's";
    match read_ns("1", kind) {
        Ok(one) if one == own => Outcome::info(format!("same as pid 1 ({kind}:[{own}]; {note})")),
        Ok(one) => Outcome::info(format!(
            "differs from pid 1 ({kind}:[{own}] vs {kind}:[{one}]; {note})"
        )),
        Err(e) => Outcome::info(format!("{kind}:[{own}]; pid 1's is unreadable ({e})")),
    }
}

fn status(key: &str) -> Outcome {
    match std::fs::read_to_string("/proc/self/status") {
        Ok(text) => match super::proc::status_field(&text, key) {
            Some(v) => Outcome::info(v),
            None => Outcome::info(format!("unknown: no {key} field in /proc/self/status")),
        },
        Err(e) => Outcome::info(format!(
            "unknown: /proc/self/status: {}",
            Errno::from_io(&e)
        )),
    }
}

fn landlock_abi(_: &Ctx) -> Outcome {
    match sys::landlock_abi() {
        Ok(v) => Outcome::info(v.to_string()),
        Err(e) if e.0 == libc::EOPNOTSUPP => {
            Outcome::info(format!("0: supported but disabled at boot ({e})"))
        }
        Err(e) if e.0 == libc::ENOSYS => {
            Outcome::info(format!("0: not supported by this kernel ({e})"))
        }
        Err(e) => Outcome::info(format!("unknown: {e}")),
    }
}

/// The kernel does not say whether a process is Landlock-restricted. Landlock denies every
/// mount to a restricted process whatever its rules, so: enter a private user and mount
/// namespace (in this op child) and change mount propagation there. EPERM then means a
/// Landlock domain, success means none. A seccomp filter can confound the test; the detail
/// says when one is present.
fn landlock_domain(_: &Ctx) -> Outcome {
    let seccomp = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|t| super::proc::status_field(&t, "Seccomp").map(str::to_string))
        .unwrap_or_default();
    let caveat = if seccomp == "0" {
        ""
    } else {
        "; a seccomp filter is active and may be what refused it"
    };
    if let Err(e) = sys::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWNS) {
        return Outcome::info(format!(
            "unknown: cannot enter a private user+mount namespace to test ({e})"
        ));
    }
    match sys::mount(c"none", c"/", None, libc::MS_REC | libc::MS_PRIVATE) {
        Ok(()) => Outcome::info("not restricted (a mount in a private namespace succeeded)"),
        Err(e) if e.0 == libc::EPERM => Outcome::info(format!(
            "restricted (a mount in a private namespace got EPERM{caveat})"
        )),
        Err(e) => Outcome::info(format!(
            "unknown: mount in a private namespace failed with {e}"
        )),
    }
}

fn ids(_: &Ctx) -> Outcome {
    let (uid, euid, gid, egid) = sys::ids();
    Outcome::info(format!("uid={uid} euid={euid} gid={gid} egid={egid}"))
}

fn id_map(file: &str) -> Outcome {
    match std::fs::read_to_string(format!("/proc/self/{file}")) {
        Ok(t) => Outcome::info(
            t.lines()
                .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
                .collect::<Vec<_>>()
                .join("; "),
        ),
        Err(e) => Outcome::info(format!(
            "unknown: /proc/self/{file}: {}",
            Errno::from_io(&e)
        )),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn ns_inode_parses() {
        assert_eq!(super::ns_inode("net:[4026531840]"), Some(4026531840));
        assert_eq!(super::ns_inode("garbage"), None);
        assert_eq!(super::ns_inode("net:[x]"), None);
    }
}
