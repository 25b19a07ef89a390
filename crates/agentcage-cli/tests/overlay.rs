//! Overlay workspace (issue #16), as root and as uid 65534: the agent's edits, creations,
//! deletions, renames (file and directory: EXDEV and the tools' copy; `diff` pairs them),
//! mode changes, symlinks, git commits, pip and npm installs land in the overlay's upper layer; the workspace is
//! untouched until `commit`; `diff` shows each change and flags sensitive paths first;
//! partial commit, discard, a conflicting workspace change refused (then `--force`), a
//! symlink planted in the upper layer committed as a symlink and never written through, the
//! same with the upper layer swapped behind commit's back; a session's overlay diffed and
//! committed while it runs (and a run on it refused); the `volatile` mount's marker of
//! another boot refuses the overlay.

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{err, Env, Out, Scratch, TestFn, Who};
use libtest_mimic::{Arguments, Failed};

fn is_root() -> bool {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// A workspace and an overlay directory outside it (under a scratch dir the caller owns).
struct Ov<'a> {
    env: &'a Env,
    ws: Scratch,
    _base: Scratch,
    dir: PathBuf,
}

impl<'a> Ov<'a> {
    fn new(env: &'a Env) -> Result<Ov<'a>, Failed> {
        let ws = env.workspace()?;
        let base = env.workspace()?;
        if env.who == Who::Root {
            std::os::unix::fs::chown(base.path(), Some(0), Some(0)).map_err(err)?;
        }
        let dir = base.path().join("ov");
        Ok(Ov {
            env,
            ws,
            _base: base,
            dir,
        })
    }

    fn write(&self, rel: &str, data: &str) -> Result<(), Failed> {
        let p = self.ws.path().join(rel);
        if let Some(d) = p.parent() {
            std::fs::create_dir_all(d).map_err(err)?;
        }
        std::fs::write(&p, data).map_err(err)?;
        self.env.chown_tree(self.ws.path())
    }

    fn read(&self, rel: &str) -> Option<String> {
        std::fs::read_to_string(self.ws.path().join(rel)).ok()
    }

    fn d(&self) -> &str {
        self.dir.to_str().unwrap_or_default()
    }

    /// `run --overlay --overlay-dir DIR -w WS -- sh -c SCRIPT`.
    fn run(&self, script: &str) -> Result<Out, Failed> {
        let script = format!("cd {} || exit 99\n{script}", self.ws.s());
        self.env.run(&[
            "run",
            "-q",
            "--overlay",
            "--overlay-dir",
            self.d(),
            "-w",
            self.ws.s(),
            "--",
            "sh",
            "-c",
            &script,
        ])
    }

    fn cli(&self, cmd: &str, args: &[&str]) -> Result<Out, Failed> {
        let mut a = vec![cmd, "--overlay-dir", self.d()];
        a.extend(args);
        self.env.run(&a)
    }

    /// `diff --json`: path -> kind.
    fn changes(&self) -> Result<Vec<(String, String, String)>, Failed> {
        let o = self.cli("diff", &["--json"])?;
        o.expect_code(0, "diff --json")?;
        let v: serde_json::Value = serde_json::from_str(&o.stdout).map_err(err)?;
        Ok(v["changes"]
            .as_array()
            .ok_or("changes")?
            .iter()
            .map(|c| {
                (
                    c["path"].as_str().unwrap_or_default().to_string(),
                    c["kind"].as_str().unwrap_or_default().to_string(),
                    c["type"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect())
    }
}

fn has(ch: &[(String, String, String)], path: &str, kind: &str) -> Result<(), Failed> {
    if ch.iter().any(|(p, k, _)| p == path && k == kind) {
        Ok(())
    } else {
        Err(format!("diff lacks {kind} {path}: {ch:?}").into())
    }
}

/// Everything an agent does, held back until commit; then applied.
fn edits_wait_for_commit(env: &Env) -> Result<(), Failed> {
    let o = Ov::new(env)?;
    o.write("edit.txt", "one\n")?;
    o.write("del.txt", "gone\n")?;
    o.write("ren.txt", "moved\n")?;
    o.write("d1/f", "in d1\n")?;
    o.write("d1/sub/g", "deep\n")?;
    o.write("run.sh", "#!/bin/sh\n")?;
    let out = o.run(
        "set -e; echo two >> edit.txt; echo new > new.txt; rm del.txt; mv ren.txt ren2.txt; \
         mv d1 d2; chmod 755 run.sh; ln -s edit.txt link; mkdir -p nd/x; echo z > nd/x/z; \
         python3 -c 'import os\ntry:\n os.rename(\"d2\",\"d3\")\nexcept OSError as e:\n print(e.errno)' ; \
         cat edit.txt; ls",
    )?;
    out.expect_code(0, "the agent's edits")?;
    if !out.stdout.contains("one\ntwo\n") || !out.stdout.contains("d3") {
        return Err(format!("inside, the merged view is wrong: {}", out.stdout).into());
    }
    // The workspace is untouched.
    if o.read("edit.txt").as_deref() != Some("one\n")
        || o.read("del.txt").is_none()
        || o.read("d1/sub/g").is_none()
        || o.read("new.txt").is_some()
        || o.ws.path().join("link").symlink_metadata().is_ok()
    {
        return Err("the workspace changed before commit".into());
    }
    let ch = o.changes()?;
    for (p, k) in [
        ("edit.txt", "modified"),
        ("new.txt", "added"),
        ("del.txt", "deleted"),
        // A file renamed by the kernel, and a directory `mv` copied (EXDEV), then renamed.
        ("ren2.txt", "renamed"),
        ("d3", "renamed"),
        ("run.sh", "mode"),
        ("link", "added"),
        ("nd/x/z", "added"),
    ] {
        has(&ch, p, k)?;
    }
    let stat = o.cli("diff", &["--stat"])?;
    if !stat.stdout.contains("link -> edit.txt (symlink)")
        || !stat.stdout.contains("(mode 644 -> 755)")
    {
        return Err(format!("diff --stat: {}", stat.stdout).into());
    }
    let patch = o.cli("diff", &["--patch", "edit.txt"])?;
    if !patch.stdout.contains("+two") || patch.stdout.contains("new.txt") {
        return Err(format!("diff --patch edit.txt: {}", patch.stdout).into());
    }
    o.cli("commit", &["--all"])?
        .expect_code(0, "commit --all")?;
    let ws = o.ws.path();
    if o.read("edit.txt").as_deref() != Some("one\ntwo\n")
        || o.read("new.txt").as_deref() != Some("new\n")
        || o.read("ren2.txt").as_deref() != Some("moved\n")
        || o.read("d3/sub/g").as_deref() != Some("deep\n")
        || o.read("nd/x/z").as_deref() != Some("z\n")
        || ws.join("del.txt").exists()
        || ws.join("ren.txt").exists()
        || ws.join("d1").exists()
        || std::fs::read_link(ws.join("link")).map_err(err)? != Path::new("edit.txt")
        || std::fs::metadata(ws.join("run.sh")).map_err(err)?.mode() & 0o777 != 0o755
    {
        return Err("commit --all did not apply every change".into());
    }
    if !o.changes()?.is_empty() {
        return Err("changes left after commit --all".into());
    }
    // The next run sees the committed tree.
    let out = o.run("cat d3/f && ls")?;
    out.expect_code(0, "after commit")?;
    if !out.stdout.contains("in d1") {
        return Err(format!("after commit: {}", out.stdout).into());
    }
    Ok(())
}

fn git(dir: &Path, args: &[&str]) -> Result<std::process::Output, Failed> {
    Command::new("git")
        .arg("-C")
        .arg(dir)
        .args([
            "-c",
            "user.email=t@e",
            "-c",
            "user.name=t",
            "-c",
            "safe.directory=*",
        ])
        .args(args)
        .env_remove("GIT_DIR")
        .output()
        .map_err(err)
}

/// A git commit and `git mv` inside: objects land in the upper layer; the host repository
/// has them only after commit. `git mv` of a directory of the workspace fails with EXDEV
/// (overlayfs without redirect_dir, the only kind a user namespace may mount, cannot rename
/// a lower directory, and git does not fall back to a copy, unlike mv): the known limit,
/// pinned here; moving the files works.
fn git_inside(env: &Env) -> Result<(), Failed> {
    let o = Ov::new(env)?;
    o.write("src/a.rs", "fn a() {}\n")?;
    git(o.ws.path(), &["init", "-q", "."])?;
    git(o.ws.path(), &["add", "-A"])?;
    git(o.ws.path(), &["commit", "-qm", "init"])?;
    env.chown_tree(o.ws.path())?;
    let out = o.run(
        "git mv src lib 2>&1 | grep -q 'cross-device' || exit 7; set -e; mkdir lib; \
         git mv src/a.rs lib/a.rs; echo 'fn b() {}' > lib/b.rs; git add -A; \
         git -c user.email=a@b -c user.name=a commit -qm agent; git log --oneline | wc -l",
    )?;
    out.expect_code(0, "git inside")?;
    if out.stdout.trim() != "2" {
        return Err(format!("two commits inside: {}", out.stdout).into());
    }
    let log = git(o.ws.path(), &["log", "--oneline"])?;
    if String::from_utf8_lossy(&log.stdout).lines().count() != 1 {
        return Err("the host repository changed before commit".into());
    }
    o.cli("commit", &["--all"])?
        .expect_code(0, "commit --all")?;
    let log = git(o.ws.path(), &["log", "--oneline"])?;
    let st = git(o.ws.path(), &["status", "--porcelain"])?;
    if String::from_utf8_lossy(&log.stdout).lines().count() != 2
        || !st.stdout.is_empty()
        || o.read("lib/b.rs").is_none()
        || o.ws.path().join("src/a.rs").exists()
    {
        return Err(format!(
            "after commit: log {} status {}",
            String::from_utf8_lossy(&log.stdout),
            String::from_utf8_lossy(&st.stdout)
        )
        .into());
    }
    Ok(())
}

/// Renames in `diff`: a file renamed by the kernel (copy-up origin), one copied then deleted,
/// a directory moved by `mv` (EXDEV, then mv's copy: one directory rename), a rename into
/// `.git/hooks` (flagged); a renamed and edited file and empty files stay a deletion and an
/// addition. Committing either path of a rename applies both sides.
fn renames(env: &Env) -> Result<(), Failed> {
    let o = Ov::new(env)?;
    for (p, d) in [
        ("a.txt", "a\n"),
        ("c.txt", "c\n"),
        ("e.txt", "e\n"),
        ("empty", ""),
        ("d1/f", "f\n"),
        ("d1/sub/g", "g\n"),
        ("tool.sh", "#!/bin/sh\n"),
        (".git/HEAD", "ref: refs/heads/main\n"),
    ] {
        o.write(p, d)?;
    }
    o.run(
        "set -e; mv a.txt b.txt; cp c.txt d.txt; rm c.txt; mv e.txt e2.txt; echo more >> e2.txt; \
         mv empty empty2; mv d1 d2; mkdir .git/hooks; mv tool.sh .git/hooks/pre-commit",
    )?
    .expect_code(0, "renames")?;
    let j = o.cli("diff", &["--json"])?;
    j.expect_code(0, "diff --json")?;
    let v: serde_json::Value = serde_json::from_str(&j.stdout).map_err(err)?;
    let ch = v["changes"].as_array().ok_or("changes")?;
    let find = |p: &str| ch.iter().find(|c| c["path"] == p);
    for (path, from, by) in [
        ("b.txt", "a.txt", "origin"),
        ("d.txt", "c.txt", "contents"),
        ("d2", "d1", "contents"),
        (".git/hooks/pre-commit", "tool.sh", "origin"),
    ] {
        let c = find(path).ok_or_else(|| format!("no change at {path}: {}", j.stdout))?;
        if c["kind"] != "renamed" || c["from"] != from || c["renamed_by"] != by {
            return Err(format!("{path}: want renamed from {from} by {by}: {c}").into());
        }
    }
    for (path, kind) in [
        ("e.txt", "deleted"),
        ("e2.txt", "added"),
        ("empty", "deleted"),
        ("empty2", "added"),
    ] {
        if find(path).map(|c| c["kind"].clone()) != Some(kind.into()) {
            return Err(format!("{path} should be {kind}: {}", j.stdout).into());
        }
    }
    let inner = ch.iter().any(|c| {
        let p = c["path"].as_str().unwrap_or_default();
        p.starts_with("d1/") || p.starts_with("d2/") || p == "a.txt" || p == "c.txt"
    });
    if inner || !v["sensitive"].to_string().contains(".git/hooks/pre-commit") {
        return Err(format!(
            "renames listed twice, or the hook not flagged: {}",
            j.stdout
        )
        .into());
    }
    let stat = o.cli("diff", &["--stat"])?;
    if !stat.stdout.contains("R  d1/ -> d2/") || !stat.stdout.contains("R  a.txt -> b.txt") {
        return Err(format!("diff --stat: {}", stat.stdout).into());
    }
    // Either side selects the rename: the new name, then the old one of the directory.
    o.cli("commit", &["b.txt"])?
        .expect_code(0, "commit b.txt")?;
    o.cli("commit", &["d1"])?.expect_code(0, "commit d1")?;
    let ws = o.ws.path();
    if o.read("b.txt").as_deref() != Some("a\n")
        || ws.join("a.txt").exists()
        || o.read("d2/sub/g").as_deref() != Some("g\n")
        || ws.join("d1").exists()
        || o.read("c.txt").as_deref() != Some("c\n")
        || ws.join("d.txt").exists()
    {
        return Err("commit of one side of a rename did not apply both (or applied more)".into());
    }
    Ok(())
}

/// pip installs a local wheel (made here) into `vendor/` of the workspace, offline: held in
/// the overlay, listed by diff, applied by commit.
fn pip_install(env: &Env) -> Result<(), Failed> {
    if !Path::new("/usr/bin/python3").exists()
        || !Command::new("/usr/bin/python3")
            .args(["-m", "pip", "--version"])
            .output()
            .is_ok_and(|o| o.status.success())
    {
        if common::expected("python") {
            return Err(
                "AGENTCAGE_TEST_EXPECT lists python but /usr/bin/python3 has no pip".into(),
            );
        }
        eprintln!("skip pip_install: no /usr/bin/python3 with pip (feature python)");
        return Ok(());
    }
    let o = Ov::new(env)?;
    // A minimal wheel, made here.
    let mk = "import zipfile,sys\nz=zipfile.ZipFile(sys.argv[1],'w')\n\
z.writestr('tpkg/__init__.py','X=42\\n')\n\
z.writestr('tpkg-1.0.dist-info/METADATA','Metadata-Version: 2.1\\nName: tpkg\\nVersion: 1.0\\n')\n\
z.writestr('tpkg-1.0.dist-info/WHEEL','Wheel-Version: 1.0\\nGenerator: t\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n')\n\
z.writestr('tpkg-1.0.dist-info/RECORD','')\nz.close()\n";
    let whl = o.ws.path().join("tpkg-1.0-py3-none-any.whl");
    let st = Command::new("/usr/bin/python3")
        .args(["-c", mk])
        .arg(&whl)
        .status()
        .map_err(err)?;
    if !st.success() {
        return Err("could not make the wheel".into());
    }
    env.chown_tree(o.ws.path())?;
    let out = o.run(
        "/usr/bin/python3 -m pip install -q --no-index --no-cache-dir --disable-pip-version-check \
         --target ./vendor tpkg-1.0-py3-none-any.whl && PYTHONPATH=vendor /usr/bin/python3 -c 'import tpkg; print(tpkg.X)'",
    )?;
    out.expect_code(0, "pip install --target")?;
    if out.stdout.trim() != "42" || o.ws.path().join("vendor").exists() {
        return Err(format!("pip inside: {} {}", out.stdout, out.stderr).into());
    }
    let ch = o.changes()?;
    has(&ch, "vendor/tpkg/__init__.py", "added")?;
    has(&ch, "vendor/tpkg-1.0.dist-info/METADATA", "added")?;
    o.cli("commit", &["--all"])?
        .expect_code(0, "commit --all")?;
    let st = Command::new("/usr/bin/python3")
        .args(["-c", "import tpkg, sys; sys.exit(tpkg.X != 42)"])
        .env("PYTHONPATH", o.ws.path().join("vendor"))
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .status()
        .map_err(err)?;
    if !st.success() || !o.changes()?.is_empty() {
        return Err(
            "after commit, the workspace's vendor/ does not import (or changes left)".into(),
        );
    }
    Ok(())
}

/// npm installs a local package (`npm pack` of a tiny directory, made here) into the
/// workspace, offline: node_modules/ and package.json held in the overlay, listed by diff,
/// applied by commit.
fn npm_install(env: &Env) -> Result<(), Failed> {
    let Some(npm) = ["/usr/bin/npm", "/usr/local/bin/npm"]
        .into_iter()
        .find(|p| Path::new(p).exists())
    else {
        if common::expected("npm") {
            return Err("AGENTCAGE_TEST_EXPECT lists npm but there is no npm".into());
        }
        eprintln!("skip npm_install: no npm in /usr/bin or /usr/local/bin (feature npm)");
        return Ok(());
    };
    let o = Ov::new(env)?;
    let pkg = env.workspace()?;
    std::fs::write(
        pkg.path().join("package.json"),
        r#"{"name":"tpkg","version":"1.0.0","main":"index.js"}"#,
    )
    .map_err(err)?;
    std::fs::write(pkg.path().join("index.js"), "module.exports = 42;\n").map_err(err)?;
    let cache = env.workspace()?;
    let st = Command::new(npm)
        .args(["pack", "--silent", "--pack-destination"])
        .arg(o.ws.path())
        .args(["--cache"])
        .arg(cache.path())
        .current_dir(pkg.path())
        .output()
        .map_err(err)?;
    if !st.status.success() {
        return Err(format!("npm pack: {}", String::from_utf8_lossy(&st.stderr)).into());
    }
    env.chown_tree(o.ws.path())?;
    let out = o.run(&format!(
        "HOME=/tmp {npm} install --offline --no-audit --no-fund --no-update-notifier \
         --cache /tmp/npm-cache ./tpkg-1.0.0.tgz >/dev/null && \
         node -e 'process.exit(require(\"tpkg\") === 42 ? 0 : 3)'"
    ))?;
    out.expect_code(0, "npm install --offline")?;
    if o.ws.path().join("node_modules").exists() || o.ws.path().join("package.json").exists() {
        return Err("npm wrote the workspace before commit".into());
    }
    let ch = o.changes()?;
    has(&ch, "node_modules/tpkg/index.js", "added")?;
    has(&ch, "package.json", "added")?;
    o.cli("commit", &["--all"])?
        .expect_code(0, "commit --all")?;
    if o.read("node_modules/tpkg/index.js").as_deref() != Some("module.exports = 42;\n")
        || o.read("package.json").is_none()
    {
        return Err("after commit, node_modules/tpkg is not in the workspace".into());
    }
    Ok(())
}

/// Commit of some paths only; discard of a path, then of everything.
fn partial_commit_and_discard(env: &Env) -> Result<(), Failed> {
    let o = Ov::new(env)?;
    o.write("a", "a\n")?;
    o.write("b", "b\n")?;
    o.run("echo A > a; echo B > b; echo C > c; mkdir dd; echo D > dd/d")?
        .expect_code(0, "edits")?;
    o.cli("commit", &["a", "dd"])?
        .expect_code(0, "commit a dd")?;
    if o.read("a").as_deref() != Some("A\n")
        || o.read("dd/d").as_deref() != Some("D\n")
        || o.read("b").as_deref() != Some("b\n")
        || o.read("c").is_some()
    {
        return Err("commit a dd applied the wrong paths".into());
    }
    let ch = o.changes()?;
    if ch.len() != 2 {
        return Err(format!("left after the partial commit: {ch:?}").into());
    }
    o.cli("commit", &[])?
        .expect_code(2, "commit without paths or --all")?;
    o.cli("discard", &["b"])?.expect_code(0, "discard b")?;
    let ch = o.changes()?;
    if ch.len() != 1 || ch[0].0 != "c" {
        return Err(format!("after discard b: {ch:?}").into());
    }
    let out = o.run("cat b")?;
    if out.stdout != "b\n" {
        return Err(format!("discarded b still shows inside: {}", out.stdout).into());
    }
    o.cli("discard", &["--all"])?
        .expect_code(0, "discard --all")?;
    if !o.changes()?.is_empty() || o.read("b").as_deref() != Some("b\n") || o.read("c").is_some() {
        return Err("discard --all".into());
    }
    Ok(())
}

/// A workspace file changed after the overlay saw it: commit refuses it (exit 1), --force
/// applies it.
fn conflict_refused(env: &Env) -> Result<(), Failed> {
    let o = Ov::new(env)?;
    o.write("a", "base\n")?;
    o.write("b", "base\n")?;
    o.run("echo agent > a; echo agent > b")?
        .expect_code(0, "edits")?;
    std::thread::sleep(std::time::Duration::from_millis(20));
    // Only `a` (o.write would chown the whole tree: a ctime change of every file).
    std::fs::write(o.ws.path().join("a"), "user edit\n").map_err(err)?;
    let out = o.cli("commit", &["--all"])?;
    out.expect_code(1, "commit with a conflict")?;
    if !out.stderr.contains("changed since the overlay saw it") {
        return Err(format!("conflict message: {}", out.stderr).into());
    }
    if o.read("a").as_deref() != Some("user edit\n") || o.read("b").as_deref() != Some("agent\n") {
        return Err("the conflicting path was written (or the other not)".into());
    }
    o.cli("commit", &["--force", "a"])?
        .expect_code(0, "commit --force a")?;
    if o.read("a").as_deref() != Some("agent\n") {
        return Err("commit --force a".into());
    }
    Ok(())
}

/// Symlinks the agent planted (to /etc, to a host directory) are committed as symlinks; a
/// write never goes through them, not even when the upper layer is swapped after the run.
fn planted_symlinks(env: &Env) -> Result<(), Failed> {
    let o = Ov::new(env)?;
    let secret = env.secret_dir()?;
    std::fs::write(secret.path().join("f"), "secret\n").map_err(err)?;
    env.chown_tree(secret.path())?;
    let passwd = std::fs::read("/etc/passwd").map_err(err)?;
    let script = format!(
        "ln -s /etc etc; ln -s {} host; mkdir sub; echo evil > sub/f; echo evil > passwd",
        secret.s()
    );
    o.run(&script)?.expect_code(0, "plant")?;
    // Behind commit's back (as a session's agent could, or anything that can write the upper
    // layer): `sub` becomes a symlink to the host directory, `passwd` one into /etc.
    let upper = o.dir.join("upper");
    std::fs::remove_dir_all(upper.join("sub")).map_err(err)?;
    std::os::unix::fs::symlink(secret.path(), upper.join("sub")).map_err(err)?;
    o.cli("commit", &["--all"])?;
    let ws = o.ws.path();
    for (l, t) in [
        ("etc", Path::new("/etc")),
        ("host", secret.path()),
        ("sub", secret.path()),
    ] {
        if std::fs::read_link(ws.join(l)).map_err(err)? != t {
            return Err(format!("{l} should be a symlink to {}", t.display()).into());
        }
    }
    if std::fs::read_to_string(secret.path().join("f")).map_err(err)? != "secret\n"
        || std::fs::read_dir(secret.path()).map_err(err)?.count() != 1
        || std::fs::read("/etc/passwd").map_err(err)? != passwd
    {
        return Err("commit wrote through a planted symlink".into());
    }
    Ok(())
}

/// `.git/hooks/pre-commit` created inside is flagged at the top of diff.
fn hook_flagged(env: &Env) -> Result<(), Failed> {
    let o = Ov::new(env)?;
    o.write(".git/HEAD", "ref: refs/heads/main\n")?;
    o.write("x", "x\n")?;
    o.run("mkdir -p .git/hooks && printf '#!/bin/sh\\ncurl evil\\n' > .git/hooks/pre-commit; echo y > x; echo 'export A=1' > .envrc")?
        .expect_code(0, "plant a hook")?;
    let out = o.cli("diff", &[])?;
    out.expect_code(0, "diff")?;
    let first = out.stdout.lines().next().unwrap_or_default();
    let head: String = out.stdout.split("\n\n").next().unwrap_or_default().into();
    if !first.starts_with("SENSITIVE")
        || !head.contains(".git/hooks/pre-commit")
        || !head.contains(".envrc")
        || head.contains("  x")
    {
        return Err(format!("diff should flag the hook first: {}", out.stdout).into());
    }
    let j = o.cli("diff", &["--json"])?;
    let v: serde_json::Value = serde_json::from_str(&j.stdout).map_err(err)?;
    if !v["sensitive"].to_string().contains(".git/hooks/pre-commit") {
        return Err(format!("diff --json sensitive: {}", v["sensitive"]).into());
    }
    Ok(())
}

/// Refusals: an overlay directory inside the workspace; a profile without namespaces.
fn refusals(env: &Env) -> Result<(), Failed> {
    let o = Ov::new(env)?;
    let inside = o.ws.path().join("ov");
    let out = env.run(&[
        "run",
        "--overlay",
        "--overlay-dir",
        inside.to_str().unwrap_or_default(),
        "-w",
        o.ws.s(),
        "--",
        "true",
    ])?;
    out.expect_code(2, "overlay dir inside the workspace")?;
    if !out.stderr.contains("outside the workspace") {
        return Err(format!("message: {}", out.stderr).into());
    }
    let out = env.run(&[
        "run",
        "-p",
        "landlock-only",
        "--overlay",
        "--overlay-dir",
        o.d(),
        "-w",
        o.ws.s(),
        "--",
        "true",
    ]);
    if let Ok(out) = out {
        if out.code == 0 {
            return Err("--overlay without a mount namespace ran".into());
        }
    }
    Ok(())
}

/// The `volatile` mount's marker: removed before the next run of the same boot (every run
/// after the first); the marker of another boot (the host crashed while mounted) refuses the
/// overlay with what to do, and the run works again once the marker is gone.
fn volatile_marker(env: &Env) -> Result<(), Failed> {
    let o = Ov::new(env)?;
    o.write("a", "a\n")?;
    for _ in 0..2 {
        o.run("echo b > a")?.expect_code(0, "a run (same boot)")?;
    }
    let marker = o.dir.join("work/work/incompat/volatile");
    if std::fs::symlink_metadata(&marker).is_err() {
        return Err("no volatile marker after a run: is the overlay mounted volatile?".into());
    }
    std::fs::write(o.dir.join("boot_id"), "another-boot\n").map_err(err)?;
    let out = o.run("true")?;
    out.expect_code(2, "a run after another boot")?;
    if !out.stderr.contains("host restarted") || !out.stderr.contains("chmod -R u+rwx") {
        return Err(format!("message: {}", out.stderr).into());
    }
    // What the message says (done here as the test's user, who owns or may remove it).
    let inc = o.dir.join("work/work/incompat");
    for d in [o.dir.join("work/work"), inc.clone(), marker.clone()] {
        let _ = std::fs::set_permissions(&d, std::os::unix::fs::PermissionsExt::from_mode(0o700));
    }
    std::fs::remove_dir_all(&inc).map_err(err)?;
    let out = o.run("cat a")?;
    out.expect_code(0, "a run once the marker is gone")?;
    if out.stdout != "b\n" {
        return Err(format!("the upper layer was lost: {:?}", out.stdout).into());
    }
    Ok(())
}

/// A session's overlay: diff and commit while it runs; the next exec sees the commit.
fn session_overlay(env: &Env) -> Result<(), Failed> {
    let o = Ov::new(env)?;
    o.write("a", "a\n")?;
    let xdg = env.workspace()?;
    std::fs::set_permissions(
        xdg.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .map_err(err)?;
    if env.who == Who::Root {
        std::os::unix::fs::chown(xdg.path(), Some(0), Some(0)).map_err(err)?;
    }
    let with_xdg = |args: &[&str]| {
        env.run_with(args, |c| {
            c.env("XDG_RUNTIME_DIR", xdg.path());
        })
    };
    let name = format!("ov{}", std::process::id());
    with_xdg(&[
        "session",
        "start",
        "-q",
        "--name",
        &name,
        "--overlay",
        "--overlay-dir",
        o.d(),
        "-w",
        o.ws.s(),
    ])?
    .expect_code(0, "session start --overlay")?;
    let r = (|| {
        with_xdg(&[
            "exec",
            &name,
            "--",
            "sh",
            "-c",
            &format!("echo b > {}/a", o.ws.s()),
        ])?
        .expect_code(0, "exec")?;
        has(&o.changes()?, "a", "modified")?;
        // One sandbox per overlay: a run on the session's overlay is refused.
        let out = o.run("true")?;
        out.expect_code(2, "a run on a session's overlay")?;
        if !out.stderr.contains("in use") {
            return Err(format!("message: {}", out.stderr).into());
        }
        if o.read("a").as_deref() != Some("a\n") {
            return Err::<(), Failed>("the session wrote the workspace".into());
        }
        o.cli("commit", &["--all"])?
            .expect_code(0, "commit while the session runs")?;
        if o.read("a").as_deref() != Some("b\n") {
            return Err("commit".into());
        }
        let out = with_xdg(&["exec", &name, "--", "cat", &format!("{}/a", o.ws.s())])?;
        if out.stdout != "b\n" {
            return Err(format!("after commit the session sees {:?}", out.stdout).into());
        }
        Ok(())
    })();
    let _ = with_xdg(&["session", "stop", &name]);
    r
}

fn main() {
    let args = Arguments::from_args();
    let tests: &[(&str, TestFn)] = &[
        ("edits_wait_for_commit", edits_wait_for_commit),
        ("git_inside", git_inside),
        ("renames", renames),
        ("pip_install", pip_install),
        ("npm_install", npm_install),
        ("partial_commit_and_discard", partial_commit_and_discard),
        ("conflict_refused", conflict_refused),
        ("planted_symlinks", planted_symlinks),
        ("hook_flagged", hook_flagged),
        ("refusals", refusals),
        ("volatile_marker", volatile_marker),
        ("session_overlay", session_overlay),
    ];
    let _ = is_root;
    common::run(&args, common::trials_for_both(tests));
}
