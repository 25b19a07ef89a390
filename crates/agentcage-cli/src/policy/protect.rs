//! Protected paths: the defaults, `protect`/`unprotect`, and path patterns (`*`, `**`).

use std::path::{Path, PathBuf};

use super::settings::{BindSetting, Settings};
use super::{absolute, expand_tilde, UsageError};

/// Bounds of the expansion of one path pattern.
const PATTERN_MAX_ENTRIES: usize = 100_000;
const PATTERN_MAX_DEPTH: usize = 32;

/// Expands the bind entries whose path has a `*` (any name) or `**` (any number of
/// directories) component into one entry per existing match, in order, symlinks not
/// followed (e.g. `./.git/modules/**/hooks` protects the hooks of every submodule, nested
/// ones too). A pattern that matches nothing is dropped when optional, an error otherwise; a
/// pattern whose walk hits its bound is an error (what it would protect is unknown).
pub(super) fn expand_patterns(binds: &[BindSetting]) -> Result<Vec<BindSetting>, UsageError> {
    let mut out = Vec::new();
    for b in binds {
        let is_pattern = b
            .path
            .components()
            .any(|c| c.as_os_str().as_encoded_bytes().contains(&b'*'));
        if !is_pattern {
            out.push(b.clone());
            continue;
        }
        let comps: Vec<&std::ffi::OsStr> =
            b.path.components().skip(1).map(|c| c.as_os_str()).collect();
        let mut found = Vec::new();
        let mut budget = PATTERN_MAX_ENTRIES;
        if let Err(why) = walk_pattern(Path::new("/"), &comps, 0, &mut budget, &mut found) {
            return Err(UsageError::new(format!(
                "{}: {}: cannot expand the pattern ({why}): what it names is unknown and could \
                 not be protected",
                b.origin,
                b.path.display()
            ))
            .hint(if b.origin.starts_with(DEFAULT_ORIGIN) {
                "the sandbox may have changed the permissions: restore them (e.g. chmod u+rwx) \
                 and run again, or leave these paths writable with --unprotect and the pattern \
                 as written"
            } else {
                "fix the permissions, or name the paths without a pattern"
            }));
        }
        if found.is_empty() && !b.optional {
            return Err(UsageError::new(format!(
                "{}: {} matches nothing",
                b.origin,
                b.path.display()
            ))
            .hint("mark the entry { path = \"...\", optional = true }"));
        }
        found.sort();
        found.dedup();
        out.extend(
            found
                .into_iter()
                .map(|path| BindSetting { path, ..b.clone() }),
        );
    }
    Ok(out)
}

/// `*` in `pat` matches any run of characters (a leading `.` included).
pub(super) fn name_matches(pat: &[u8], name: &[u8]) -> bool {
    match pat.iter().position(|&c| c == b'*') {
        None => pat == name,
        Some(i) => {
            let (head, tail) = (&pat[..i], &pat[i + 1..]);
            name.starts_with(head)
                && (head.len()..=name.len()).any(|j| name_matches(tail, &name[j..]))
        }
    }
}

/// Matches `comps` below `dir` into `found`. A missing directory is no match; an unreadable
/// one, or a walk that hits its bound, is an error (a match there could not be protected).
fn walk_pattern(
    dir: &Path,
    comps: &[&std::ffi::OsStr],
    depth: usize,
    budget: &mut usize,
    found: &mut Vec<PathBuf>,
) -> Result<(), String> {
    let Some((first, rest)) = comps.split_first() else {
        found.push(dir.to_path_buf());
        return Ok(());
    };
    let pat = first.as_encoded_bytes();
    if !pat.contains(&b'*') {
        let next = dir.join(first);
        // A literal last component is left to the caller's checks (it may be a file, or a
        // symlink `resolve_protected` must refuse); a literal directory must be one.
        // Before the pattern, a symlinked directory (/home -> /usr/home) is followed; one the
        // sandbox planted below a writable root is refused later, by `resolve_protected`.
        let md = if rest.is_empty() {
            std::fs::symlink_metadata(&next)
        } else {
            std::fs::metadata(&next)
        };
        return match md {
            Ok(m) if rest.is_empty() || m.is_dir() => {
                walk_pattern(&next, rest, depth, budget, found)
            }
            Ok(_) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(format!("{}: {e}", next.display())),
        };
    }
    if depth >= PATTERN_MAX_DEPTH {
        return Err(format!("deeper than {PATTERN_MAX_DEPTH} directories"));
    }
    if pat == b"**" {
        walk_pattern(dir, rest, depth, budget, found)?;
    }
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e)
            if e.kind() == std::io::ErrorKind::NotFound
                || e.raw_os_error() == Some(libc::ENOTDIR) =>
        {
            return Ok(())
        }
        Err(e) => return Err(format!("{}: {e}", dir.display())),
    };
    for e in rd {
        let e = e.map_err(|e| format!("{}: {e}", dir.display()))?;
        if *budget == 0 {
            return Err(format!("more than {PATTERN_MAX_ENTRIES} entries"));
        }
        *budget -= 1;
        let is_dir = e.file_type().is_ok_and(|t| t.is_dir());
        if pat == b"**" {
            if is_dir {
                walk_pattern(&e.path(), comps, depth + 1, budget, found)?;
            }
        } else if name_matches(pat, e.file_name().as_encoded_bytes()) && (rest.is_empty() || is_dir)
        {
            walk_pattern(&e.path(), rest, depth + 1, budget, found)?;
        }
    }
    Ok(())
}

/// What [`resolve_protected`] found.
pub(super) enum Protected {
    /// Not below a writable root: resolved as usual.
    No,
    /// Below a writable root, and safe to bind: its canonical path.
    Yes(PathBuf),
    /// Below a writable root, and it does not exist (an optional entry may be skipped).
    Missing(std::io::Error),
    /// Below a writable root, and it cannot be bound safely: why, and the hint.
    Refused(String, String),
}

/// Resolves a bind path that may lie below a writable root (the workspace or an `rw` bind),
/// i.e. in a place the sandbox could have prepared in a previous run (issue #10, finding 3).
/// Component by component: every symlink is followed as usual until the path is below a
/// writable root; from there on a symlink is refused (a planted `.git/hooks -> ~/.ssh` must
/// not bind `~/.ssh` into the next run), and so is a component whose existence cannot be
/// determined (a sandbox that ran `chmod 000 .git` must not make `optional` entries skip
/// silently). As root, the sandbox's host uid must also be able to reach it.
///
/// `writable_roots` are canonical. The walk starts at the outermost writable root that is a
/// prefix of `path` (its components are real directories, and none of them is inside a
/// writable root: nothing the sandbox wrote can be on the way there), so the common case
/// costs one `lstat` per component below the workspace instead of one per component from `/`.
pub(super) fn resolve_protected(
    path: &Path,
    writable_roots: &[PathBuf],
    sandbox_host_ids: Option<(u32, u32)>,
) -> Protected {
    use std::os::unix::ffi::OsStrExt;
    use std::path::Component;
    // The roots in normal form (no `.`, `//` or trailing `/`), rebuilt from their components,
    // so that `below` can compare bytes: every path it is asked about is normal too (the
    // walk starts at a normal root or `/` and only pushes names and pops for `..`), and for
    // normal paths "strictly below by components" is "a byte prefix ending at a `/`".
    // `Path::starts_with` re-parsed both paths at each step: most of this function's cost.
    let roots: Vec<PathBuf> = writable_roots
        .iter()
        .map(|r| r.components().collect())
        .collect();
    let below = |p: &Path| {
        let p = p.as_os_str().as_bytes();
        roots.iter().any(|r| {
            let r = r.as_os_str().as_bytes();
            p.len() > r.len() && p.starts_with(r) && (r == b"/" || p[r.len()] == b'/')
        })
    };
    // A root inside another root is not a safe start: the sandbox may have replaced it
    // with a symlink since it was canonicalized (the walk from the outer one refuses that).
    let start = roots
        .iter()
        .filter(|r| path.starts_with(r) && !below(r))
        .min_by_key(|r| r.components().count());
    let (mut cur, rest) = match start {
        Some(r) => (r.clone(), path.strip_prefix(r).unwrap_or(path)),
        None => (PathBuf::from("/"), path),
    };
    let mut hops = 0;
    let mut todo: Vec<std::ffi::OsString> = rest
        .components()
        .rev()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some("..".into()),
            _ => None,
        })
        .collect();
    // The `lstat` of `cur` when the walk got there by a name (not by `..` or a symlink),
    // so that the checks below need not look at it again.
    let mut cur_md = None;
    while let Some(c) = todo.pop() {
        if c == ".." {
            cur.pop();
            cur_md = None;
            continue;
        }
        let next = cur.join(&c);
        let protected = below(&next);
        match std::fs::symlink_metadata(&next) {
            Ok(md) if md.file_type().is_symlink() => {
                if protected {
                    return Protected::Refused(
                        format!(
                            "{} is a symlink inside a directory the sandbox can write (it may \
                             have planted it): refusing to follow it",
                            next.display()
                        ),
                        format!(
                            "look at it (ls -l {}); remove it, or name the real path",
                            next.display()
                        ),
                    );
                }
                hops += 1;
                match std::fs::read_link(&next) {
                    Ok(t) if hops < 40 => {
                        if t.is_absolute() {
                            cur = PathBuf::from("/");
                            cur_md = None;
                        }
                        let mut more: Vec<std::ffi::OsString> = t
                            .components()
                            .rev()
                            .filter_map(|c| match c {
                                Component::Normal(n) => Some(n.to_os_string()),
                                Component::ParentDir => Some("..".into()),
                                _ => None,
                            })
                            .collect();
                        todo.append(&mut more);
                    }
                    _ => return Protected::No,
                }
            }
            Ok(md) => {
                cur = next;
                cur_md = Some(md);
            }
            // ENOTDIR: a parent is a file (`.git` of a worktree): the path cannot exist.
            Err(e)
                if protected
                    && (e.kind() == std::io::ErrorKind::NotFound
                        || e.raw_os_error() == Some(libc::ENOTDIR)) =>
            {
                return Protected::Missing(e);
            }
            Err(e) if protected => {
                return Protected::Refused(
                    format!(
                        "{} is inside a directory the sandbox can write, and whether it exists \
                         cannot be determined ({e}): it could not be protected",
                        next.display()
                    ),
                    format!(
                        "the sandbox may have changed its permissions: look at {} (ls -ld), \
                         restore them (e.g. chmod u+rwx) and run again",
                        cur.display()
                    ),
                );
            }
            Err(_) => return Protected::No,
        }
    }
    if !below(&cur) {
        return Protected::No;
    }
    // Only a directory or a regular file of one name: a FIFO planted as `.git/config` hangs
    // the user's git; a second hard link in the workspace would be a writable name for it.
    if let Some(md) = cur_md.map_or_else(|| std::fs::symlink_metadata(&cur).ok(), Some) {
        use std::os::unix::fs::MetadataExt;
        let why = if !md.is_dir() && !md.is_file() {
            Some("is neither a directory nor a regular file".to_string())
        } else if md.is_file() && md.nlink() > 1 {
            Some(format!(
                "has {} hard links: another name for it may be writable in the sandbox",
                md.nlink()
            ))
        } else {
            None
        };
        if let Some(why) = why {
            return Protected::Refused(
                format!("{} {why} (the sandbox may have planted it)", cur.display()),
                format!(
                    "look at it (ls -li {}), replace it and run again",
                    cur.display()
                ),
            );
        }
    }
    if let Some((u, g)) = sandbox_host_ids {
        if !reachable(&cur, u, g) {
            return Protected::Refused(
                format!(
                    "it is inside a directory the sandbox can write, and host uid {u} (the \
                     sandbox's uid on the host) cannot reach it: it could not be protected"
                ),
                format!(
                    "the sandbox may have changed the permissions of a parent directory: look at \
                     them (namei -l {}), restore them and run again",
                    cur.display()
                ),
            );
        }
    }
    Protected::Yes(cur)
}

/// The default protected paths (issue #15), relative to the workspace and to every `rw`
/// directory that is a git repository (has `.git`): what runs code later, outside the
/// sandbox, when the user runs git, enters the directory (direnv) or opens it in an editor or
/// an agent (tasks, hooks, MCP servers). Made read-only inside by the same machinery as any
/// protected path (ancestors pinned, symlinks refused); what does not exist at start gets a
/// placeholder for the run (`placeholder.rs`; docs/SECURITY.md, "Protected paths").
pub const DEFAULT_PROTECTED: &[&str] = &[
    ".git/hooks",
    ".git/config",
    ".git/info",
    ".gitmodules",
    ".envrc",
    ".vscode",
    ".idea",
    ".devcontainer",
    ".claude",
    ".codex",
    ".cursor",
    ".gemini",
    ".mcp.json",
    ".git/modules/**/hooks",
    ".git/modules/**/config",
    ".git/modules/**/info",
];

/// The prefix of the default protected paths of every submodule (see [`submodule_gitdirs`]).
const SUBMODULES: &str = ".git/modules/**/";

/// The git directories of the submodules of the repository at `root`, nested ones included:
/// the directories below `.git/modules` that have a `HEAD` (a submodule named `a/b` lives in
/// `.git/modules/a/b`, a nested one in `.git/modules/a/modules/c`). Symlinks are not followed
/// (a planted one is refused later, if it is a protected path), git's own bulky directories
/// (`objects`, `refs`, `logs`, `lfs`) are not read, and the walk is bounded like a pattern's.
/// An unreadable directory is an error: what it holds could not be protected.
fn submodule_gitdirs(root: &Path) -> Result<Vec<PathBuf>, String> {
    let mut out = Vec::new();
    let mut budget = PATTERN_MAX_ENTRIES;
    let mut stack = vec![(root.join(".git/modules"), 0usize)];
    while let Some((dir, depth)) = stack.pop() {
        let rd = match std::fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e)
                if e.kind() == std::io::ErrorKind::NotFound
                    || e.raw_os_error() == Some(libc::ENOTDIR) =>
            {
                continue
            }
            Err(e) => return Err(format!("{}: {e}", dir.display())),
        };
        for e in rd {
            let e = e.map_err(|e| format!("{}: {e}", dir.display()))?;
            if budget == 0 {
                return Err(format!("more than {PATTERN_MAX_ENTRIES} entries"));
            }
            budget -= 1;
            if !e.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let name = e.file_name();
            if matches!(
                name.as_encoded_bytes(),
                b"objects" | b"refs" | b"logs" | b"lfs"
            ) {
                continue;
            }
            if depth + 1 >= PATTERN_MAX_DEPTH {
                return Err(format!("deeper than {PATTERN_MAX_DEPTH} directories"));
            }
            let p = e.path();
            if std::fs::symlink_metadata(p.join("HEAD")).is_ok() {
                out.push(p.clone());
            }
            stack.push((p, depth + 1));
        }
    }
    out.sort();
    Ok(out)
}

/// Where a default protected path comes from, in messages.
const DEFAULT_ORIGIN: &str = "default protected path";

/// A `protect`/`unprotect` path as said: `~` expanded, relative ones kept relative (to the
/// workspace, resolved by [`build`](super::build)), no `..` (it must stay below the workspace).
pub fn protect_path(s: &str) -> Result<PathBuf, String> {
    if s.is_empty() {
        return Err("empty path".into());
    }
    let p = expand_tilde(s)?;
    if p.components().any(|c| c == std::path::Component::ParentDir) {
        return Err(format!(
            "{s}: `..` is not allowed in a protected path (name it from the workspace, or absolute)"
        ));
    }
    Ok(p)
}

/// Which list a bind entry of [`build`](super::build) comes from.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    /// `ro` / `rw`.
    Bind,
    /// [`DEFAULT_PROTECTED`].
    Default,
    /// `protect`.
    Protect,
}

fn is_pattern(p: &Path) -> bool {
    p.components()
        .any(|c| c.as_os_str().as_encoded_bytes().contains(&b'*'))
}

/// The default protected paths (in the workspace and every writable root with a `.git`) and
/// the `protect` entries, patterns expanded, `unprotect` removed (matched as written or as
/// expanded). An `unprotect` that matches nothing is an error (a typo would leave the path
/// protected while the user believes otherwise, or the reverse). Without a mount namespace
/// there is nothing to protect with: no defaults, and a `protect` entry is an error.
pub(super) fn protected_settings(
    s: &Settings,
    ws: &Path,
    writable_roots: &[PathBuf],
    unprotect: &[PathBuf],
    mount_ns: bool,
) -> Result<(Vec<BindSetting>, Vec<BindSetting>), UsageError> {
    if !mount_ns {
        if let Some((path, origin)) = s.protect.first() {
            return Err(UsageError::new(format!(
                "{origin}: protect {}: protected paths need a mount namespace (a read-only bind \
                 is what protects them), and this policy has none",
                path.display()
            ))
            .hint(
                "use a profile with a mount namespace (ns-only, landlock, full), or drop the entry",
            ));
        }
        return Ok((Vec::new(), Vec::new()));
    }
    // A read-only workspace is not a writable root: nothing to protect in it.
    let mut roots = Vec::new();
    if writable_roots.iter().any(|r| r == ws) {
        roots.push(ws.to_path_buf());
    }
    for r in writable_roots {
        if !roots.contains(r) && std::fs::symlink_metadata(r.join(".git")).is_ok() {
            roots.push(r.clone());
        }
    }
    let mut defaults = Vec::new();
    for r in &roots {
        let mut gitdirs = None;
        for d in DEFAULT_PROTECTED {
            let origin = format!("{DEFAULT_ORIGIN} {d}");
            let setting = |path| BindSetting {
                path,
                writable: false,
                optional: true,
                origin: origin.clone(),
            };
            match d.strip_prefix(SUBMODULES) {
                // The submodules' git directories are found by their HEAD, not by the generic
                // `**` walk, which would read every object directory (and hit its bound in a
                // big repository).
                Some(leaf) => {
                    if unprotect.contains(&r.join(d)) {
                        defaults.push(setting(r.join(d)));
                        continue;
                    }
                    if gitdirs.is_none() {
                        gitdirs = Some(submodule_gitdirs(r).map_err(|why| {
                            UsageError::new(format!(
                                "{origin}: cannot list the submodules of {} ({why}): their \
                                 hooks and config could not be protected",
                                r.display()
                            ))
                            .hint(
                                "the sandbox may have changed the permissions: restore them \
                                 (e.g. chmod u+rwx) and run again, or leave them writable with \
                                 --unprotect and the pattern as written",
                            )
                        })?);
                    }
                    for g in gitdirs.iter().flatten() {
                        defaults.push(setting(g.join(leaf)));
                    }
                }
                None => defaults.push(setting(r.join(d))),
            }
        }
    }
    let mut protect: Vec<BindSetting> = s
        .protect
        .iter()
        .map(|(path, origin)| {
            let path = absolute(path, ws);
            if path
                .components()
                .any(|c| c == std::path::Component::ParentDir)
            {
                return Err(UsageError::new(format!(
                    "{origin}: protect {}: `..` is not allowed in a protected path",
                    path.display()
                )));
            }
            Ok(BindSetting {
                optional: is_pattern(&path),
                path,
                writable: false,
                origin: origin.clone(),
            })
        })
        .collect::<Result<_, UsageError>>()?;
    let mut used = vec![false; unprotect.len()];
    let mut keep = |b: &BindSetting| match unprotect.iter().position(|u| *u == b.path) {
        Some(i) => {
            used[i] = true;
            false
        }
        None => true,
    };
    defaults.retain(&mut keep);
    protect.retain(&mut keep);
    let mut defaults = expand_patterns(&defaults)?;
    let mut protect = expand_patterns(&protect)?;
    defaults.retain(&mut keep);
    protect.retain(&mut keep);
    if let Some(i) = used.iter().position(|u| !u) {
        let (_, origin) = &s.unprotect[i];
        return Err(UsageError::new(format!(
            "{origin}: unprotect {}: not a protected path here",
            unprotect[i].display()
        ))
        .hint(format!(
            "unprotect takes a default protected path ({}) or a `protect` entry, as written or \
             as a path it expands to, relative to the workspace",
            DEFAULT_PROTECTED.join(", ")
        )));
    }
    Ok((defaults, protect))
}

/// Whether `uid`/`gid` (no supplementary groups, no capabilities) can look up `path`: every
/// ancestor directory grants it search permission by its mode bits. ACLs are not consulted:
/// this only decides whether an optional entry is skipped.
pub(super) fn reachable(path: &Path, uid: u32, gid: u32) -> bool {
    use std::os::unix::fs::MetadataExt;
    path.ancestors()
        .skip(1)
        .all(|dir| match std::fs::metadata(dir) {
            Ok(m) => {
                let mode = m.mode();
                let bit = if m.uid() == uid {
                    0o100
                } else if m.gid() == gid {
                    0o010
                } else {
                    0o001
                };
                mode & bit != 0
            }
            Err(_) => false,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolve_protected_walks_from_the_outermost_writable_root() {
        let d = std::env::temp_dir().join(format!("ac-prot-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join("ws/.git/hooks")).unwrap();
        std::fs::create_dir_all(d.join("ws/sub/.git/hooks")).unwrap();
        let ws = d.join("ws").canonicalize().unwrap();
        let sub = ws.join("sub");
        let roots = [ws.clone(), sub.clone()];
        let hooks = ws.join(".git/hooks");
        assert!(matches!(resolve_protected(&hooks, &roots, None), Protected::Yes(p) if p == hooks));
        assert!(matches!(
            resolve_protected(&ws.join(".envrc"), &roots, None),
            Protected::Missing(_)
        ));
        assert!(matches!(
            resolve_protected(Path::new("/etc"), &roots, None),
            Protected::No
        ));
        // A second hard link: refused (the type and link count checks use the walk's lstat).
        std::fs::write(ws.join("f"), "").unwrap();
        std::fs::hard_link(ws.join("f"), ws.join("g")).unwrap();
        assert!(matches!(
            resolve_protected(&ws.join("f"), &roots, None),
            Protected::Refused(..)
        ));
        // A symlink planted below the workspace: refused.
        std::os::unix::fs::symlink("/etc", ws.join(".vscode")).unwrap();
        assert!(matches!(
            resolve_protected(&ws.join(".vscode/x"), &roots, None),
            Protected::Refused(..)
        ));
        // A writable root inside another one, replaced by a symlink after it was
        // canonicalized (a concurrent sandbox can): the walk starts at the outer root and
        // refuses it instead of following it from the inner one.
        std::fs::rename(&sub, ws.join("real")).unwrap();
        std::os::unix::fs::symlink("real", &sub).unwrap();
        assert!(matches!(
            resolve_protected(&sub.join(".git/hooks"), &roots, None),
            Protected::Refused(..)
        ));
        // Roots as written (`.`, `//`, a trailing `/`) are as good as canonical ones: the
        // planted symlink is refused, and what is outside them is not.
        let odd = |p: &Path| PathBuf::from(format!("{}/./", p.display()).replacen('/', "//", 1));
        let roots = [odd(&ws)];
        assert!(matches!(
            resolve_protected(&ws.join(".vscode/x"), &roots, None),
            Protected::Refused(..)
        ));
        assert!(matches!(
            resolve_protected(Path::new("/etc"), &roots, None),
            Protected::No
        ));
        assert!(matches!(resolve_protected(&hooks, &roots, None), Protected::Yes(p) if p == hooks));
        std::fs::remove_dir_all(&d).unwrap();
    }
}
