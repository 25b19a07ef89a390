//! `--overlay` of `run` and `session start`, and `diff`, `commit`, `discard`, `overlays`:
//! the agent's writes wait in an overlay's upper layer for review (docs/OVERLAY.md).

use std::io::Write as _;
use std::path::{Path, PathBuf};

use agentcage::overlay::{self, Change, ChangeKind, EntryType, Overlay};
use agentcage::Policy;
use clap::Args;

use crate::exit;
use crate::policy::{UsageError, DEFAULT_PROTECTED};
use crate::ui;

/// `--overlay [--overlay-dir DIR]` (run, session start).
#[derive(Debug, Clone, Default, Args)]
pub struct OverlayArgs {
    /// Mount the workspace as the read-only lower layer of an overlay: writes, creations,
    /// renames and deletions land in the overlay's upper layer outside the sandbox, for
    /// `agentcage diff`, `commit` or `discard`. NAME defaults to the workspace's name and a
    /// hash of its path (a session's: its name). See docs/OVERLAY.md.
    #[arg(long, value_name = "NAME", num_args = 0..=1, default_missing_value = "")]
    pub overlay: Option<String>,
    /// The overlay's directory (default: $XDG_STATE_HOME/agentcage/overlays/NAME, as root
    /// /var/lib/agentcage/overlays/NAME). Must lie outside the workspace.
    #[arg(long, value_name = "DIR", requires = "overlay")]
    pub overlay_dir: Option<PathBuf>,
}

fn root_or_err() -> Result<PathBuf, UsageError> {
    overlay::default_root().ok_or_else(|| {
        UsageError::new("no state directory for overlays: $XDG_STATE_HOME and $HOME are unset")
            .hint("set XDG_STATE_HOME or pass --overlay-dir DIR")
    })
}

/// Sets up the overlay of a launch: the directory (created 0700; its upper layer owned by
/// the sandbox's host uid as root), the policy's `overlay`; the protected paths below the
/// workspace are dropped from the binds (the overlay holds every write for review, and a
/// bind there would bypass it). `fallback_name`: a session's name. The fd holds the
/// overlay's lock: keep it open as long as the sandbox runs.
pub fn prepare(
    a: &OverlayArgs,
    policy: &mut Policy,
    protected: &[PathBuf],
    fallback_name: Option<&str>,
) -> Result<Option<(Overlay, std::os::fd::OwnedFd)>, UsageError> {
    let Some((_, dir)) = location(a, &policy.workspace, fallback_name)? else {
        return Ok(None);
    };
    let owner = (agentcage::geteuid() == 0).then_some((policy.host_uid, policy.host_gid));
    let ov = Overlay::open_or_create(&dir, &policy.workspace, owner)
        .map_err(|e| UsageError::new(format!("--overlay: {e}")))?;
    policy
        .binds
        .retain(|b| !(protected.contains(&b.path) && b.path.starts_with(&policy.workspace)));
    let lock = ov
        .take()
        .map_err(|e| UsageError::new(format!("--overlay: {e}")))?;
    policy.overlay = Some(dir);
    Ok(Some((ov, lock)))
}

/// The overlay's name and directory for these flags (`None` without `--overlay`): NAME,
/// else `fallback_name` (a session's name), else the workspace's; in `--overlay-dir`, else
/// under the default root.
pub fn location(
    a: &OverlayArgs,
    workspace: &Path,
    fallback_name: Option<&str>,
) -> Result<Option<(String, PathBuf)>, UsageError> {
    let Some(name) = &a.overlay else {
        return Ok(None);
    };
    let name = if name.is_empty() {
        fallback_name.map_or_else(|| overlay::name_for_workspace(workspace), str::to_string)
    } else {
        name.clone()
    };
    if name.is_empty()
        || name.len() > 128
        || name.starts_with('.')
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        return Err(UsageError::new(format!(
            "--overlay {name:?}: a name is 1 to 128 of A-Z a-z 0-9 . _ - (not starting with .)"
        )));
    }
    let dir = match &a.overlay_dir {
        Some(d) => {
            std::path::absolute(d).map_err(|e| UsageError::new(format!("--overlay-dir: {e}")))?
        }
        None => root_or_err()?.join(&name),
    };
    Ok(Some((name, dir)))
}

/// After a run: records the workspace entries of the new changes (the conflict check of
/// `commit`) and says how many changes wait.
pub fn after_run(ov: &Overlay, quiet: bool) {
    match overlay::record_base(ov) {
        Ok(changes) if !quiet && !changes.is_empty() => eprintln!(
            "agentcage: overlay {}: {} change(s) waiting (agentcage diff {}; commit; discard)",
            ov.meta.name,
            changes.len(),
            ov.meta.name
        ),
        Ok(_) => {}
        Err(e) => ui::warning(&format!("overlay {}: {e}", ov.meta.name)),
    }
}

/// Which overlay, and which paths.
#[derive(Debug, Args)]
pub struct Target {
    /// The overlay's name (default: the one whose workspace holds the current directory), then
    /// paths (relative to the current directory, or absolute) to restrict to.
    #[arg(value_name = "NAME|PATH")]
    args: Vec<PathBuf>,
    /// The overlay's directory (an overlay made with --overlay-dir).
    #[arg(long, value_name = "DIR")]
    overlay_dir: Option<PathBuf>,
}

/// `agentcage diff`.
#[derive(Debug, Args)]
pub struct DiffArgs {
    #[command(flatten)]
    target: Target,
    /// One line per change (the default).
    #[arg(long, conflicts_with_all = ["json", "patch"])]
    stat: bool,
    /// JSON: the overlay, the sensitive paths, the changes.
    #[arg(long, conflicts_with = "patch")]
    json: bool,
    /// A unified patch of text files (like `git diff`); binary files are named.
    #[arg(long)]
    patch: bool,
    /// Flag paths matching PATTERN as sensitive too (`**` matches any directories), on top
    /// of the defaults (.git/hooks, .git/config, .envrc, .github/workflows, .vscode, agent
    /// config dirs...).
    #[arg(long, value_name = "PATTERN")]
    sensitive: Vec<String>,
}

/// `agentcage commit`.
#[derive(Debug, Args)]
pub struct CommitArgs {
    #[command(flatten)]
    target: Target,
    /// Commit every change (required when no PATH is given).
    #[arg(long)]
    all: bool,
    /// Apply paths whose workspace entry changed since the overlay saw it.
    #[arg(long)]
    force: bool,
    /// Print the outcome as JSON.
    #[arg(long)]
    json: bool,
}

/// `agentcage discard`.
#[derive(Debug, Args)]
pub struct DiscardArgs {
    #[command(flatten)]
    target: Target,
    /// Drop every change (required when no PATH is given).
    #[arg(long)]
    all: bool,
    /// Also remove the overlay itself (with --all).
    #[arg(long, requires = "all")]
    remove: bool,
}

/// `agentcage overlays`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// JSON.
    #[arg(long)]
    json: bool,
}

fn fail(e: &UsageError, code: i32) -> i32 {
    ui::error(&e.message, e.hint.as_deref());
    code
}

/// The overlay and the paths (relative to its workspace) the arguments name.
fn resolve(t: &Target) -> Result<(Overlay, Vec<PathBuf>), UsageError> {
    let mut args: &[PathBuf] = &t.args;
    let ov = if let Some(d) = &t.overlay_dir {
        Overlay::open(d).map_err(|e| UsageError::new(e.to_string()))?
    } else {
        let root = root_or_err()?;
        let named = args.first().and_then(|n| {
            let s = n.to_str()?;
            (!s.contains('/') && !s.is_empty())
                .then(|| Overlay::open(&root.join(s)).ok())
                .flatten()
        });
        match named {
            Some(o) => {
                args = &args[1..];
                o
            }
            None => {
                let cwd = std::env::current_dir()
                    .and_then(|c| c.canonicalize())
                    .map_err(|e| UsageError::new(format!("current directory: {e}")))?;
                overlay::list(&root)
                    .into_iter()
                    .filter(|o| cwd.starts_with(&o.meta.workspace))
                    .max_by_key(|o| o.meta.workspace.components().count())
                    .ok_or_else(|| {
                        UsageError::new(format!(
                            "no overlay named {:?} and none for the current directory",
                            args.first()
                                .map(|p| p.display().to_string())
                                .unwrap_or_default()
                        ))
                        .hint("see `agentcage overlays`")
                    })?
            }
        }
    };
    let cwd = std::env::current_dir().unwrap_or_default();
    let ws = &ov.meta.workspace;
    let mut paths = Vec::new();
    for p in args {
        let abs = if p.is_absolute() {
            p.clone()
        } else if cwd.starts_with(ws) {
            cwd.join(p)
        } else {
            ws.join(p)
        };
        let rel = normalize(&abs)
            .strip_prefix(ws)
            .map(Path::to_path_buf)
            .map_err(|_| {
                UsageError::new(format!(
                    "{} is not inside the workspace {}",
                    p.display(),
                    ws.display()
                ))
            })?;
        paths.push(rel);
    }
    Ok((ov, paths))
}

/// `a/./b/../c` -> `a/c`, without touching the filesystem (the paths name overlay
/// entries, which may not exist in the workspace).
fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            c => out.push(c),
        }
    }
    out
}

/// Whether `rel` matches `pattern` (components; `**` matches zero or more) or lies below
/// a match.
fn matches(pattern: &str, rel: &Path) -> bool {
    fn go(pat: &[&str], path: &[&str]) -> bool {
        match pat.split_first() {
            None => true, // the pattern matched a prefix: rel is the path or below it
            Some((&"**", rest)) => (0..=path.len()).any(|i| go(rest, &path[i..])),
            Some((p, rest)) => path
                .split_first()
                .is_some_and(|(h, t)| (*p == "*" || p == h) && go(rest, t)),
        }
    }
    let pat: Vec<&str> = pattern.split('/').filter(|s| !s.is_empty()).collect();
    let s = rel.to_string_lossy();
    let path: Vec<&str> = s.split('/').filter(|s| !s.is_empty()).collect();
    go(&pat, &path)
}

/// Sensitive on top of the default protected paths: CI workflows run on push.
const MORE_SENSITIVE: &[&str] = &[
    ".github/workflows",
    ".gitlab-ci.yml",
    ".git/modules/**/hooks",
];

fn sensitive(c: &Change, extra: &[String]) -> bool {
    let patterns = || {
        DEFAULT_PROTECTED
            .iter()
            .chain(MORE_SENSITIVE)
            .copied()
            .chain(extra.iter().map(String::as_str))
    };
    // A renamed directory is one line for a whole tree: flagged when a sensitive path could
    // lie below its new place (or its old one), not only at it.
    let dir_rename = c.kind == ChangeKind::Renamed && c.entry == EntryType::Dir;
    std::iter::once(&c.path)
        .chain(c.from.as_ref())
        .any(|p| patterns().any(|pat| matches(pat, p) || (dir_rename && leads_to(pat, p))))
}

/// Whether a path matching `pattern` could lie below `rel` (`rel` matches a prefix of the
/// pattern's components).
fn leads_to(pattern: &str, rel: &Path) -> bool {
    let pat: Vec<&str> = pattern.split('/').filter(|s| !s.is_empty()).collect();
    let s = rel.to_string_lossy();
    let path: Vec<&str> = s.split('/').filter(|s| !s.is_empty()).collect();
    let mut pi = 0;
    for p in &path {
        match pat.get(pi) {
            None => return true,
            Some(&"**") => return true,
            Some(&q) if q == "*" || q == *p => pi += 1,
            Some(_) => return false,
        }
    }
    true
}

fn describe(c: &Change) -> String {
    let mut s = match &c.from {
        Some(f) if c.entry == EntryType::Dir => {
            format!("{}  {}/ -> {}", c.letter(), f.display(), c.path.display())
        }
        Some(f) => format!("{}  {} -> {}", c.letter(), f.display(), c.path.display()),
        None => format!("{}  {}", c.letter(), c.path.display()),
    };
    match (c.kind, c.entry) {
        (_, EntryType::Dir) if c.kind != ChangeKind::Deleted => s.push('/'),
        (ChangeKind::Deleted, EntryType::Dir) => s.push_str("/ (directory)"),
        _ => {}
    }
    if let Some(t) = &c.target {
        if c.kind == ChangeKind::Renamed {
            s.push_str(&format!(" (symlink to {})", t.display()));
        } else {
            s.push_str(&format!(" -> {} (symlink)", t.display()));
        }
    }
    if let (Some(o), Some(n)) = (c.old_mode, c.new_mode) {
        if o != n {
            s.push_str(&format!(" (mode {o:o} -> {n:o})"));
        }
    }
    if c.kind == ChangeKind::Renamed {
        s.push_str(match c.renamed_by {
            Some(overlay::RenameEvidence::Origin) => " (renamed: copy-up origin, same contents)",
            _ => " (renamed: same contents)",
        });
    }
    if c.kind == ChangeKind::Retyped {
        s.push_str(" (type changed)");
    }
    s
}

/// `agentcage diff`.
pub fn diff(a: &DiffArgs) -> i32 {
    let (ov, only) = match resolve(&a.target) {
        Ok(r) => r,
        Err(e) => return fail(&e, exit::USAGE),
    };
    // One walk of the upper layer: the record of new changes, then the listing (renames
    // paired: a rename shows when either of its paths is asked for).
    let changes: Vec<Change> = match overlay::record_base(&ov)
        .and_then(|c| overlay::with_renames(&ov, c))
    {
        Ok(c) => c
            .into_iter()
            .filter(|c| {
                only.is_empty()
                    || only.iter().any(|p| {
                        c.path.starts_with(p) || c.from.as_ref().is_some_and(|f| f.starts_with(p))
                    })
            })
            .collect(),
        Err(e) => return fail(&UsageError::new(e.to_string()), exit::SETUP),
    };
    let flagged: Vec<&Change> = changes
        .iter()
        .filter(|c| sensitive(c, &a.sensitive))
        .collect();
    let mut out = std::io::stdout().lock();
    if a.json {
        let v = diff_json(&ov, &changes, &a.sensitive);
        let _ = writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&v).unwrap_or_default()
        );
        return 0;
    }
    if !flagged.is_empty() {
        let _ = writeln!(
            out,
            "SENSITIVE: {} change(s) to files that run code outside the sandbox (git hooks and \
             config, direnv, editor, CI and agent config): review before commit",
            flagged.len()
        );
        for c in &flagged {
            let _ = writeln!(out, "  ! {}", describe(c));
        }
        let _ = writeln!(out);
    }
    if a.patch {
        for c in &changes {
            let _ = write!(out, "{}", patch(&ov, c));
        }
        return 0;
    }
    for c in &changes {
        let _ = writeln!(out, "{}", describe(c));
    }
    let count = |k: ChangeKind| changes.iter().filter(|c| c.kind == k).count();
    let _ = writeln!(
        out,
        "{} change(s): {} added, {} modified, {} deleted, {} renamed, {} mode, {} type (overlay {}, {})",
        changes.len(),
        count(ChangeKind::Added),
        count(ChangeKind::Modified),
        count(ChangeKind::Deleted),
        count(ChangeKind::Renamed),
        count(ChangeKind::Mode),
        count(ChangeKind::Retyped),
        ov.meta.name,
        ov.meta.workspace.display()
    );
    0
}

/// `diff --json` (and the MCP server's `diff` tool): the overlay, the sensitive paths among
/// `changes` (the defaults and `extra` patterns), the changes.
pub fn diff_json(ov: &Overlay, changes: &[Change], extra: &[String]) -> serde_json::Value {
    serde_json::json!({
        "overlay": ov.meta.name,
        "dir": ov.dir,
        "workspace": ov.meta.workspace,
        "sensitive": changes
            .iter()
            .filter(|c| sensitive(c, extra))
            .map(|c| &c.path)
            .collect::<Vec<_>>(),
        "changes": changes,
    })
}

/// Files larger than this are named, not diffed.
const PATCH_MAX: usize = 8 << 20;

/// The unified patch of one change (`diff --patch`).
pub fn patch(ov: &Overlay, c: &Change) -> String {
    let p = c.path.display().to_string();
    let read = |upper: bool, want: bool| -> Option<Vec<u8>> {
        if !want {
            return Some(Vec::new());
        }
        if upper {
            ov.read_upper(&c.path, PATCH_MAX + 1).ok()
        } else {
            ov.read_lower(&c.path, PATCH_MAX + 1).ok()
        }
    };
    if let (ChangeKind::Renamed, Some(f)) = (c.kind, &c.from) {
        // Same contents on both sides: git's header of a 100% rename, nothing else.
        let f = f.display();
        let mut head = format!(
            "diff --agentcage a/{f} b/{p}\nsimilarity index 100%\nrename from {f}\nrename to {p}\n"
        );
        if let (Some(o), Some(n)) = (c.old_mode, c.new_mode) {
            if o != n {
                head.push_str(&format!("old mode {o:o}\nnew mode {n:o}\n"));
            }
        }
        return head;
    }
    let mut head = format!("diff --agentcage a/{p} b/{p}\n");
    if let (Some(o), Some(n)) = (c.old_mode, c.new_mode) {
        if o != n {
            head.push_str(&format!("old mode {o:o}\nnew mode {n:o}\n"));
        }
    }
    let what = if c.entry == EntryType::Dir {
        "directory"
    } else {
        "file"
    };
    match c.kind {
        ChangeKind::Added => {
            head.push_str(&format!("new {what} mode {:o}\n", c.new_mode.unwrap_or(0)))
        }
        ChangeKind::Deleted => head.push_str(&format!(
            "deleted {what} mode {:o}\n",
            c.old_mode.unwrap_or(0)
        )),
        _ => {}
    }
    if c.entry == EntryType::Symlink {
        if let Some(t) = &c.target {
            head.push_str(&format!("symlink -> {}\n", t.display()));
        }
        return head;
    }
    if c.entry != EntryType::File || c.kind == ChangeKind::Mode {
        return head;
    }
    let old_file = c.kind == ChangeKind::Modified || (c.kind == ChangeKind::Deleted);
    let new_file = c.kind != ChangeKind::Deleted;
    let (Some(old), Some(new)) = (read(false, old_file), read(true, new_file)) else {
        head.push_str("(unreadable)\n");
        return head;
    };
    let text = |b: &[u8]| b.len() <= PATCH_MAX && !b.contains(&0) && std::str::from_utf8(b).is_ok();
    if !text(&old) || !text(&new) {
        head.push_str(&format!("Binary files a/{p} and b/{p} differ\n"));
        return head;
    }
    let (o, n) = (
        std::str::from_utf8(&old).unwrap_or_default(),
        std::str::from_utf8(&new).unwrap_or_default(),
    );
    let d = similar::TextDiff::from_lines(o, n);
    let a_name = if old_file {
        format!("a/{p}")
    } else {
        "/dev/null".into()
    };
    let b_name = if new_file {
        format!("b/{p}")
    } else {
        "/dev/null".into()
    };
    head.push_str(
        &d.unified_diff()
            .context_radius(3)
            .header(&a_name, &b_name)
            .to_string(),
    );
    head
}

/// `agentcage commit`.
pub fn commit(a: &CommitArgs) -> i32 {
    let (ov, only) = match resolve(&a.target) {
        Ok(r) => r,
        Err(e) => return fail(&e, exit::USAGE),
    };
    if only.is_empty() && !a.all {
        return fail(
            &UsageError::new("commit: name the paths to commit, or pass --all")
                .hint("see the changes with `agentcage diff`"),
            exit::USAGE,
        );
    }
    let rep = match overlay::commit(&ov, &only, a.force) {
        Ok(r) => r,
        Err(e) => return fail(&UsageError::new(e.to_string()), exit::SETUP),
    };
    if a.json {
        println!("{}", serde_json::to_string_pretty(&rep).unwrap_or_default());
    } else {
        for p in &rep.applied {
            println!("committed {}", p.display());
        }
    }
    for p in &rep.conflicts {
        ui::error(
            &format!(
                "not committed: {}: the workspace entry changed since the overlay saw it",
                p.display()
            ),
            Some("compare with `agentcage diff --patch`, then commit with --force or discard"),
        );
    }
    for (p, e) in &rep.failed {
        ui::error(&format!("not committed: {}: {e}", p.display()), None);
    }
    if !rep.failed.is_empty() {
        exit::SETUP
    } else if !rep.conflicts.is_empty() {
        1
    } else {
        0
    }
}

/// `agentcage discard`.
pub fn discard(a: &DiscardArgs) -> i32 {
    let (ov, only) = match resolve(&a.target) {
        Ok(r) => r,
        Err(e) => return fail(&e, exit::USAGE),
    };
    if only.is_empty() && !a.all {
        return fail(
            &UsageError::new("discard: name the paths to drop, or pass --all"),
            exit::USAGE,
        );
    }
    match overlay::discard(&ov, &only) {
        Ok(d) => {
            for p in d {
                println!("discarded {}", p.display());
            }
        }
        Err(e) => return fail(&UsageError::new(e.to_string()), exit::SETUP),
    }
    if a.remove {
        if let Err(e) = ov.remove() {
            return fail(&UsageError::new(e.to_string()), exit::SETUP);
        }
    }
    0
}

/// `agentcage overlays`.
pub fn list(a: &ListArgs) -> i32 {
    let root = match root_or_err() {
        Ok(r) => r,
        Err(e) => return fail(&e, exit::USAGE),
    };
    let all = overlay::list(&root);
    if a.json {
        let v: Vec<_> = all
            .iter()
            .map(|o| {
                serde_json::json!({
                    "name": o.meta.name,
                    "dir": o.dir,
                    "workspace": o.meta.workspace,
                    "created": o.meta.created,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
    } else {
        for o in &all {
            println!(
                "{}\t{}\t{}",
                o.meta.name,
                o.meta.workspace.display(),
                o.dir.display()
            );
        }
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns() {
        assert!(matches(".git/hooks", Path::new(".git/hooks/pre-commit")));
        assert!(matches(".git/hooks", Path::new(".git/hooks")));
        assert!(!matches(".git/hooks", Path::new(".git/hooksx")));
        assert!(matches(
            ".git/modules/**/hooks",
            Path::new(".git/modules/a/b/hooks/x")
        ));
        assert!(matches(".vscode", Path::new(".vscode/tasks.json")));
        assert!(!matches(".vscode", Path::new("src/.vscode")));
        assert!(leads_to(".git/hooks", Path::new(".git")));
        assert!(leads_to(".git/modules/**/hooks", Path::new(".git/modules")));
        assert!(leads_to(".vscode", Path::new(".vscode/x")));
        assert!(!leads_to(".git/hooks", Path::new("src")));
        assert!(!leads_to(".git/hooks", Path::new(".github")));
    }
}
