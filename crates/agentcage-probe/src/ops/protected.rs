//! Ops against the protected paths of the workspace (issue #15): what an agent can do to a
//! path the launcher binds read-only inside the workspace it may write.
//!
//! The bait workspace holds `.git/hooks` (a directory) and `.git/config` (a file), both bound
//! read-only by the matrix (`--ro`, and they are default protected paths too). Each op tries a
//! trick that gets around a read-only bind when setup is careless: swap the protected path
//! for a symlink (the next run's setup would follow it), replace the file by a rename in the
//! same directory (no Landlock REFER right is needed for that), hard-link a read-only file
//! from outside into the workspace, and re-open a read-only file for writing through
//! `/proc/self/fd`. The ancestor rename (`mv .git .git.old`) is `fs.rename.protected` in
//! `fs.rs`.
//!
//! Nothing is lost: a replacement is a `renameat2(RENAME_EXCHANGE)` (the same checks as a
//! rename over the target in one directory: write access to it, the target not a mount
//! point) swapped back at once; links and scratch names are the probe's own, removed after.

use std::ffi::CString;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use super::{cpath, flatten, Ctx, Op, Outcome};
use crate::errno::Errno;
use crate::schema::Category::Fs;
use crate::sys;

/// The protected-path ops.
pub const OPS: &[Op] = &[
    Op::new(
        "fs.symlink.protected_swap",
        "swap a read-only protected directory for a symlink",
        Fs,
        swap_for_symlink,
    ),
    Op::new(
        "fs.rename.over_protected_file",
        "rename a new file over a read-only file in the same directory",
        Fs,
        rename_over_file,
    ),
    Op::new(
        "fs.link.outside_file",
        "hard-link a read-only file from outside the workspace into it",
        Fs,
        link_outside_file,
    ),
    Op::new(
        "fs.reopen.proc_fd_rw",
        "re-open a read-only file's O_PATH fd for writing via /proc/self/fd",
        Fs,
        reopen_proc_fd,
    ),
];

fn workspace(ctx: &Ctx) -> Result<&Path, Outcome> {
    ctx.workspace
        .as_deref()
        .ok_or_else(|| Outcome::skipped("no --workspace given"))
}

/// `<workspace>/.git/<name>` when it exists with the wanted kind (without following a link).
fn protected(ctx: &Ctx, name: &str, dir: bool) -> Result<PathBuf, Outcome> {
    let p = workspace(ctx)?.join(".git").join(name);
    match std::fs::symlink_metadata(&p) {
        Ok(m) if m.is_dir() == dir && (dir || m.is_file()) => Ok(p),
        Ok(_) => Err(Outcome::skipped(format!(
            "{} is not a {} (the matrix's bait makes one and binds it read-only)",
            p.display(),
            if dir { "directory" } else { "regular file" }
        ))),
        Err(e) => Err(Outcome::skipped(format!(
            "no {} ({e}; the matrix's bait makes one and binds it read-only)",
            p.display()
        ))),
    }
}

/// A probe-owned name next to `p`.
fn sibling(p: &Path, what: &str) -> PathBuf {
    p.with_file_name(super::unique(&format!(".agentcage-probe-{what}")))
}

/// Exchanges `scratch` with `target`; on success swaps back. Returns the exchange's result
/// and, when it worked, whether the swap back did too.
fn exchange_and_back(scratch: &CString, target: &CString) -> Result<Result<(), Errno>, Errno> {
    sys::rename_exchange(scratch, target)?;
    Ok(sys::rename_exchange(scratch, target))
}

fn back_note(back: Result<(), Errno>) -> String {
    match back {
        Ok(()) => "swapped back".into(),
        Err(e) => format!("could NOT swap back: {}", e.message()),
    }
}

/// `.git/hooks` becomes a symlink to a directory outside the workspace (the canary's) for a
/// moment: what a later run's setup must refuse rather than follow (the CLI tests check that
/// side: `planted_symlink_refused`). A read-only bind makes it a mount point: EBUSY.
fn swap_for_symlink(ctx: &Ctx) -> Outcome {
    flatten((|| {
        let hooks = protected(ctx, "hooks", true)?;
        let outside = ctx
            .canary
            .as_deref()
            .and_then(Path::parent)
            .unwrap_or(Path::new("/etc"));
        let link = sibling(&hooks, "link");
        std::os::unix::fs::symlink(outside, &link).map_err(|e| {
            Outcome::skipped(format!("cannot create the symlink {}: {e}", link.display()))
        })?;
        let (l, h) = (cpath(&link)?, cpath(&hooks)?);
        let r = exchange_and_back(&l, &h);
        let _ = std::fs::remove_file(&link);
        Ok(match r {
            Ok(back) => Outcome::allowed(format!(
                "{} was a symlink to {} ({})",
                hooks.display(),
                outside.display(),
                back_note(back)
            )),
            Err(e) => Outcome::blocked(e, &format!("exchange {} with a symlink", hooks.display())),
        })
    })())
}

/// A new file replaces `.git/config` in one rename within `.git` (Landlock needs no REFER
/// right within one directory): exchanged, then swapped back. A read-only bind of the file
/// makes it a mount point: EBUSY.
fn rename_over_file(ctx: &Ctx) -> Outcome {
    flatten((|| {
        let config = protected(ctx, "config", false)?;
        let scratch = sibling(&config, "new");
        let s = cpath(&scratch)?;
        let c = cpath(&config)?;
        drop(
            sys::open(&s, libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL, 0o644).map_err(|e| {
                Outcome::skipped(format!("create {}: {}", scratch.display(), e.message()))
            })?,
        );
        let r = exchange_and_back(&s, &c);
        let _ = std::fs::remove_file(&scratch);
        Ok(match r {
            Ok(back) => Outcome::allowed(format!(
                "replaced {} by a new file in one rename ({})",
                config.display(),
                back_note(back)
            )),
            Err(e) => Outcome::blocked(e, &format!("rename a new file over {}", config.display())),
        })
    })())
}

/// A hard link, made in the workspace, to a file outside it that the sandbox sees read-only
/// (the bait's `ro/` socket, bound read-only): the workspace would then hold a writable name
/// of an outside file, for any later run and for the host. A link never crosses mounts
/// (EXDEV); Landlock refuses one that would gain rights (EXDEV too).
fn link_outside_file(ctx: &Ctx) -> Outcome {
    flatten((|| {
        let src = ctx
            .unix_ro_path
            .as_deref()
            .ok_or_else(|| Outcome::skipped("no --unix-ro-path given"))?;
        let ws = workspace(ctx)?;
        let dir = ws.join(super::unique(".agentcage-probe-link"));
        std::fs::create_dir(&dir).map_err(|e| {
            Outcome::skipped(format!(
                "cannot create {} in the workspace: {e}",
                dir.display()
            ))
        })?;
        let dst = dir.join("outside");
        let r = match (cpath(src), cpath(&dst)) {
            (Ok(c), Ok(d)) => match sys::link(&c, &d) {
                Ok(()) => {
                    let cleanup = match std::fs::remove_file(&dst) {
                        Ok(()) => "removed again".to_string(),
                        Err(e) => format!("could NOT remove it: {e}"),
                    };
                    Outcome::allowed(format!(
                        "hard-linked {} as {} ({cleanup})",
                        src.display(),
                        dst.display()
                    ))
                }
                Err(e) => {
                    Outcome::blocked(e, &format!("link {} into the workspace", src.display()))
                }
            },
            (Err(o), _) | (_, Err(o)) => o,
        };
        let _ = std::fs::remove_dir(&dir);
        Ok(r)
    })())
}

/// `.git/config` opened `O_PATH` (allowed on a read-only mount), then re-opened read-write
/// through its magic link: the re-open checks the mount again (EROFS), it is no way around.
fn reopen_proc_fd(ctx: &Ctx) -> Outcome {
    flatten((|| {
        let config = protected(ctx, "config", false)?;
        let c = cpath(&config)?;
        let fd = sys::open(&c, libc::O_PATH | libc::O_NOFOLLOW, 0).map_err(|e| {
            Outcome::skipped(format!("open {} O_PATH: {}", config.display(), e.message()))
        })?;
        let magic = format!("/proc/self/fd/{}", fd.as_raw_fd());
        let m = cpath(Path::new(&magic))?;
        Ok(match sys::open(&m, libc::O_RDWR, 0) {
            Ok(_) => Outcome::allowed(format!(
                "re-opened {} read-write via {magic} (closed, nothing written)",
                config.display()
            )),
            Err(e) => Outcome::blocked(e, &format!("open {magic} ({}) O_RDWR", config.display())),
        })
    })())
}
