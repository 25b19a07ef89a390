//! Policy files and CLI comforts, through the real `agentcage` binary.
//!
//! Error and merge semantics are checked through `agentcage policy show --json` (it needs no
//! sandbox) and one real run; the examples in docs/policies run `true` as root and as uid
//! 65534 (skipped with a printed reason when the caller is not root, or when user namespaces
//! are missing and `AGENTCAGE_TEST_EXPECT` does not list `userns`). Also: completions, man,
//! `--help` examples on every subcommand, and the key table of docs/POLICY.md.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{Env, Out, Who};
use libtest_mimic::{Arguments, Failed, Trial};

/// A temp directory every uid can read, removed on drop.
struct Dir(PathBuf);

impl Dir {
    fn new(tag: &str) -> Result<Dir, Failed> {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("agentcage-pt-{tag}-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&p).map_err(|e| format!("mkdir {}: {e}", p.display()))?;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755))
            .map_err(|e| e.to_string())?;
        Ok(Dir(p.canonicalize().map_err(|e| e.to_string())?))
    }
    fn p(&self) -> &Path {
        &self.0
    }
    fn join(&self, s: &str) -> PathBuf {
        self.0.join(s)
    }
    fn s(&self) -> &str {
        self.0.to_str().expect("temp paths are UTF-8")
    }
    fn write(&self, name: &str, text: &str) -> Result<PathBuf, Failed> {
        let f = self.join(name);
        if let Some(d) = f.parent() {
            std::fs::create_dir_all(d).map_err(|e| e.to_string())?;
        }
        std::fs::write(&f, text).map_err(|e| format!("write {}: {e}", f.display()))?;
        Ok(f)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs the binary as the current user in `cwd`.
fn cli(args: &[&str], cwd: &Path, envs: &[(&str, &str)]) -> Result<Out, Failed> {
    let o = Command::new(common::binary())
        .args(args)
        .current_dir(cwd)
        .envs(envs.iter().copied())
        .env("NO_COLOR", "1")
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("spawn: {e}"))?;
    Ok(Out {
        code: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    })
}

/// `policy show --json` in `cwd`: the `policy` object.
fn show_json(
    args: &[&str],
    cwd: &Path,
    envs: &[(&str, &str)],
) -> Result<serde_json::Value, Failed> {
    let mut a = vec!["policy", "show", "--json"];
    a.extend_from_slice(args);
    let out = cli(&a, cwd, envs)?;
    let v: serde_json::Value = serde_json::from_str(&out.stdout).map_err(|e| {
        format!(
            "policy show --json: {e}\nexit {}\nstdout: {}\nstderr: {}",
            out.code, out.stdout, out.stderr
        )
    })?;
    Ok(v["policy"].clone())
}

/// Expects exit 2 and a first stderr line `agentcage: error: FILE:LINE: ...needle...`.
fn expect_file_error(out: &Out, file: &Path, line: usize, needle: &str) -> Result<(), Failed> {
    out.expect_code(2, "usage error")?;
    let first = out.stderr.lines().next().unwrap_or("");
    let want = format!("agentcage: error: {}:{line}: ", file.display());
    if !first.starts_with(&want) || !first.contains(needle) {
        return Err(format!("want {want:?}...{needle:?}, got stderr:\n{}", out.stderr).into());
    }
    if !out
        .stderr
        .lines()
        .nth(1)
        .is_some_and(|l| l.starts_with("agentcage: hint: "))
    {
        return Err(format!("no hint line:\n{}", out.stderr).into());
    }
    Ok(())
}

fn invalid_toml() -> Result<(), Failed> {
    let d = Dir::new("bad")?;
    let f = d.write("p.toml", "profile = \"full\"\n\nro = [\"/tmp\"\n")?;
    let out = cli(
        &["run", "--policy", f.to_str().unwrap_or(""), "--", "true"],
        d.p(),
        &[],
    )?;
    expect_file_error(&out, &f, 3, "")
}

fn unknown_keys() -> Result<(), Failed> {
    let d = Dir::new("unk")?;
    let f = d.write("p.toml", "profile = \"full\"\n# comment\n\nbogus_key = 1\n")?;
    let fs = f.to_str().unwrap_or("");
    expect_file_error(
        &cli(&["run", "--policy", fs, "--", "true"], d.p(), &[])?,
        &f,
        4,
        "bogus_key",
    )?;
    let g = d.write("q.toml", "[limits]\npids = 5\nmemroy = \"1G\"\n")?;
    expect_file_error(
        &cli(
            &["policy", "show", "--policy", g.to_str().unwrap_or("")],
            d.p(),
            &[],
        )?,
        &g,
        3,
        "memroy",
    )?;
    let h = d.write(
        "r.toml",
        "ro = [\n  { path = \"/tmp\", optinal = true },\n]\n",
    )?;
    expect_file_error(
        &cli(
            &["policy", "show", "--policy", h.to_str().unwrap_or("")],
            d.p(),
            &[],
        )?,
        &h,
        2,
        "optinal",
    )
}

fn wrong_types() -> Result<(), Failed> {
    let d = Dir::new("type")?;
    for (i, (text, line, needle)) in [
        ("uid = \"zero\"\n", 1, "u32"),
        ("\n\nbest_effort = \"yes\"\n", 3, "bool"),
        ("[env]\nA = \"x\"\nB = 2\n", 3, "string"),
        ("profile = \"fullest\"\n", 1, "unknown profile"),
        ("[limits]\n\nmemory = \"12Q\"\n", 3, "12Q"),
        ("net = \"bridge\"\n", 1, "network mode"),
        ("keep_fd = [1]\n", 1, "keep_fd"),
    ]
    .into_iter()
    .enumerate()
    {
        let f = d.write(&format!("p{i}.toml"), text)?;
        let out = cli(
            &[
                "policy",
                "show",
                "--policy",
                f.to_str().unwrap_or(""),
                "-w",
                d.s(),
            ],
            d.p(),
            &[],
        )?;
        expect_file_error(&out, &f, line, needle)
            .map_err(|e| format!("{text:?}: {}", e.message().map_or("", |m| m)))?;
    }
    Ok(())
}

fn flag_overrides_file() -> Result<(), Failed> {
    let d = Dir::new("over")?;
    std::fs::create_dir_all(d.join("a")).map_err(|e| e.to_string())?;
    let f = d.write(
        "p.toml",
        "profile = \"ns-only\"\nuid = 5\nro = [\"a\"]\nnet = \"host\"\n[env]\nA = \"file\"\nB = \"file\"\n[limits]\npids = 10\nmemory = \"1G\"\n",
    )?;
    let fs = f.to_str().unwrap_or("");
    let base = show_json(&["--policy", fs, "-w", d.s()], d.p(), &[])?;
    let over = show_json(
        &[
            "--policy",
            fs,
            "-w",
            d.s(),
            "-p",
            "landlock",
            "--uid",
            "7",
            "--rw",
            "a",
            "--net",
            "none",
            "-e",
            "A=flag",
            "--pids",
            "max",
        ],
        d.p(),
        &[],
    )?;
    let checks = [
        (
            &base["profile"],
            serde_json::json!("ns-only"),
            &over["profile"],
            serde_json::json!("landlock"),
        ),
        (
            &base["uid"],
            serde_json::json!(5),
            &over["uid"],
            serde_json::json!(7),
        ),
        (
            &base["net"],
            serde_json::json!("host"),
            &over["net"],
            serde_json::json!("none"),
        ),
        (
            &base["env"],
            serde_json::json!({"A": "file", "B": "file"}),
            &over["env"],
            serde_json::json!({"A": "flag", "B": "file"}),
        ),
        (
            &base["ro"],
            serde_json::json!([d.join("a")]),
            &over["ro"],
            serde_json::json!([]),
        ),
        (
            &base["rw"],
            serde_json::json!([]),
            &over["rw"],
            serde_json::json!([d.join("a")]),
        ),
        (
            &base["limits"]["pids"],
            serde_json::json!(10),
            &over["limits"]["pids"],
            serde_json::json!("max"),
        ),
        (
            &base["limits"]["memory"],
            serde_json::json!("1G"),
            &over["limits"]["memory"],
            serde_json::json!("1G"),
        ),
    ];
    for (b, bw, o, ow) in checks {
        if *b != bw || *o != ow {
            return Err(format!(
                "file {b} (want {bw}), with flags {o} (want {ow})\n{base:#}\n{over:#}"
            )
            .into());
        }
    }
    Ok(())
}

fn flag_overrides_file_in_a_run() -> Result<(), Failed> {
    let d = Dir::new("overrun")?;
    let f = d.write("p.toml", "profile = \"none\"\n[env]\nWHO = \"file\"\n")?;
    let fs = f.to_str().unwrap_or("");
    // The workspace is not where the policy is (that would be refused, see trust_*).
    std::fs::create_dir_all(d.join("ws")).map_err(|e| e.to_string())?;
    let ws = d.join("ws");
    let ws = ws.to_str().unwrap_or("");
    for (extra, want) in [(None, "file"), (Some("WHO=flag"), "flag")] {
        // As root, `none` needs the confirmation (harmless otherwise).
        let mut a = vec!["run", "--allow-unsandboxed-root", "--policy", fs, "-w", ws];
        if let Some(e) = extra {
            a.extend(["-e", e]);
        }
        a.extend(["--", "sh", "-c", "echo $WHO"]);
        let out = cli(&a, d.p(), &[])?;
        out.expect_code(0, "run")?;
        if out.stdout.trim() != want {
            return Err(format!("WHO={:?}, want {want:?}", out.stdout).into());
        }
    }
    Ok(())
}

fn extends_chains_and_cycles() -> Result<(), Failed> {
    let d = Dir::new("ext")?;
    d.write(
        "base/base.toml",
        "extends = \"landlock\"\nuid = 3\npass_env = [\"X\"]\n",
    )?;
    d.write(
        "mid.toml",
        "extends = \"base/base.toml\"\ngid = 4\npass_env = [\"Y\"]\n",
    )?;
    let top = d.write("proj/top.toml", "extends = \"../mid.toml\"\nuid = 9\n")?;
    let v = show_json(
        &["--policy", top.to_str().unwrap_or(""), "-w", d.s()],
        d.p(),
        &[],
    )?;
    if v["profile"] != "landlock"
        || v["uid"] != 9
        || v["gid"] != 4
        || v["pass_env"] != serde_json::json!(["X", "Y"])
    {
        return Err(format!("chain: {v:#}").into());
    }
    let a = d.write("a.toml", "extends = \"b.toml\"\n")?;
    let b = d.write("b.toml", "uid = 1\nextends = \"a.toml\"\n")?;
    let out = cli(
        &["policy", "show", "--policy", a.to_str().unwrap_or("")],
        d.p(),
        &[],
    )?;
    expect_file_error(&out, &b, 2, "extends cycle")
}

fn relative_paths_and_tilde() -> Result<(), Failed> {
    let d = Dir::new("rel")?;
    let home = Dir::new("home")?;
    std::fs::create_dir_all(d.join("conf/data")).map_err(|e| e.to_string())?;
    std::fs::create_dir_all(d.join("ws")).map_err(|e| e.to_string())?;
    std::fs::create_dir_all(home.join("tool")).map_err(|e| e.to_string())?;
    let f = d.write(
        "conf/p.toml",
        "workspace = \"../ws\"\nro = [\"data\", \"~/tool\", { path = \"~/absent\", optional = true }]\n[env]\nT = \"~/tool\"\n",
    )?;
    // Run from elsewhere: the paths follow the file, not the current directory.
    let v = show_json(
        &["--policy", f.to_str().unwrap_or("")],
        Path::new("/"),
        &[("HOME", home.s())],
    )?;
    // Binds are listed sorted by path (parents before what they contain).
    let mut ro = vec![d.join("conf/data"), home.join("tool")];
    ro.sort();
    let want_ro = serde_json::json!(ro);
    if v["workspace"] != serde_json::json!(d.join("ws"))
        || v["ro"] != want_ro
        || v["env"]["T"] != serde_json::json!(home.join("tool"))
    {
        return Err(format!("resolved: {v:#}").into());
    }
    // A missing required path is a FILE:LINE error.
    let g = d.write(
        "conf/q.toml",
        "workspace = \"../ws\"\n\nro = [\"nothere\"]\n",
    )?;
    let out = cli(
        &["policy", "show", "--policy", g.to_str().unwrap_or("")],
        Path::new("/"),
        &[],
    )?;
    expect_file_error(&out, &g, 3, "nothere")
}

fn show_round_trips() -> Result<(), Failed> {
    let d = Dir::new("rt")?;
    std::fs::create_dir_all(d.join("a/b")).map_err(|e| e.to_string())?;
    for flags in [
        vec![],
        vec!["-p", "ns-only"],
        vec!["-p", "landlock", "--memory", "300M", "--timeout", "1.5"],
        vec![
            "--rw",
            "a",
            "--ro",
            "a/b",
            "-e",
            "K=v w",
            "--pass-env",
            "TERM",
            "--without",
            "seccomp",
            "--tcp-connect",
            "443",
            "--cpus",
            "0.5",
        ],
        vec![
            "-p",
            "none",
            "--net",
            "host",
            "--best-effort",
            "--pids",
            "max",
            "--uid",
            "1000",
            "--gid",
            "1000",
        ],
    ] {
        let mut a = vec!["policy", "show", "-w", d.s()];
        a.extend(flags.iter().copied());
        let first = cli(&a, d.p(), &[])?;
        first.expect_code(0, "policy show")?;
        let f = d.write("shown.toml", &first.stdout)?;
        let second = cli(
            &["policy", "show", "--policy", f.to_str().unwrap_or("")],
            Path::new("/"),
            &[],
        )?;
        second.expect_code(0, "policy show --policy shown.toml")?;
        let body = |s: &str| {
            s.lines()
                .filter(|l| !l.starts_with('#'))
                .collect::<Vec<_>>()
                .join("\n")
        };
        if body(&first.stdout) != body(&second.stdout) {
            return Err(format!(
                "{flags:?}: not the same policy:\n{}\n---\n{}",
                first.stdout, second.stdout
            )
            .into());
        }
        let mut j = vec!["-w", d.s()];
        j.extend(flags.iter().copied());
        if show_json(&j, d.p(), &[])?
            != show_json(&["--policy", f.to_str().unwrap_or("")], Path::new("/"), &[])?
        {
            return Err(format!("{flags:?}: JSON differs").into());
        }
    }
    Ok(())
}

fn show_reports_enforcement() -> Result<(), Failed> {
    let d = Dir::new("enf")?;
    let out = cli(&["policy", "show", "--json", "-w", d.s()], d.p(), &[])?;
    let v: serde_json::Value =
        serde_json::from_str(&out.stdout).map_err(|e| format!("{e}: {}", out.stdout))?;
    for k in ["landlock_abi", "cgroup_layout", "limits_backend", "layers"] {
        if v["host"].get(k).is_none() {
            return Err(format!("host.{k} missing: {v:#}").into());
        }
    }
    let enforceable = v["enforceable"].as_bool().ok_or("enforceable missing")?;
    if enforceable != (out.code == 0)
        || (enforceable && v["enforcement"].as_array().is_none_or(|a| a.is_empty()))
    {
        return Err(format!("exit {} / enforceable {enforceable}: {v:#}", out.code).into());
    }
    if !enforceable && v["error"].as_str().is_none_or(str::is_empty) {
        return Err(format!("not enforceable without a reason: {v:#}").into());
    }
    let text = cli(&["policy", "show", "-w", d.s()], d.p(), &[])?;
    if !text.stdout.contains("# What this host enforces of it:")
        || !text.stdout.contains("#   layer user-ns: ")
    {
        return Err(format!("text output: {}", text.stdout).into());
    }
    Ok(())
}

/// Each example of docs/policies, copied where uid 65534 can read it, runs `true`.
fn examples_run(env: &Env) -> Result<(), Failed> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/policies");
    let dir = Dir::new("examples")?;
    let home = Dir::new("exhome")?;
    // One toolchain present, the others missing: optional entries must cope with both.
    std::fs::create_dir_all(home.join(".cargo/bin")).map_err(|e| e.to_string())?;
    let mut n = 0;
    for e in std::fs::read_dir(&src).map_err(|e| format!("{}: {e}", src.display()))? {
        let p = e.map_err(|e| e.to_string())?.path();
        if p.extension().is_none_or(|x| x != "toml") {
            continue;
        }
        n += 1;
        let name = p
            .file_name()
            .and_then(|s| s.to_str())
            .unwrap_or("?")
            .to_string();
        let copy = dir.join(&name);
        std::fs::copy(&p, &copy).map_err(|e| e.to_string())?;
        std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o644))
            .map_err(|e| e.to_string())?;
        let ws = env.workspace()?;
        let cs = copy.to_str().unwrap_or("").to_string();
        let out = env.run_with(&["run", "-v", "--policy", &cs, "--", "true"], |c| {
            c.current_dir(ws.path()).env("HOME", home.p());
        })?;
        out.expect_code(0, &name)?;
        let shown = env.run_with(&["policy", "show", "--policy", &cs], |c| {
            c.current_dir(ws.path()).env("HOME", home.p());
        })?;
        shown.expect_code(0, &format!("policy show {name}"))?;
    }
    if n < 3 {
        return Err(format!("only {n} examples in {}", src.display()).into());
    }
    Ok(())
}

/// Runs `true` with the policy file `f` in workspace `ws` (and `extra` flags) as `env.who`.
fn run_policy(env: &Env, f: &Path, ws: &Path, extra: &[&str]) -> Result<Out, Failed> {
    let fs = f.to_str().ok_or("policy path not UTF-8")?;
    let wss = ws.to_str().ok_or("workspace path not UTF-8")?;
    let mut a = vec!["run", "--policy", fs, "-w", wss];
    a.extend_from_slice(extra);
    a.extend(["--", "true"]);
    env.run(&a)
}

/// Expects the refusal of an untrusted policy file: exit 2, the file named, `why` said, the
/// fix hinted.
fn expect_untrusted(out: &Out, file: &Path, why: &str, what: &str) -> Result<(), Failed> {
    out.expect_code(2, what)?;
    let named = format!("untrusted policy file: {}: ", file.display());
    if !out
        .stderr
        .lines()
        .any(|l| l.contains(&named) && l.contains(why))
        || !out.stderr.contains("--trust-writable-policy")
        || !out.stderr.contains("~/.config/agentcage/")
    {
        return Err(format!(
            "{what}: want {named:?}...{why:?} and the hint, got:\n{}",
            out.stderr
        )
        .into());
    }
    Ok(())
}

/// A policy file the sandbox can write (it steered the next run in issue #10): refused in the
/// workspace, through a symlink there, through `extends`, as a hard link, in an `rw` path, when
/// the file itself makes its directory the workspace, and when group-writable; accepted from a
/// trusted place, and with --trust-writable-policy (with a warning).
fn trust_writable_policy_refused(env: &Env) -> Result<(), Failed> {
    let ws = env.workspace()?;
    let conf = Dir::new("trustconf")?;
    let good = conf.write("good.toml", "profile = \"full\"\n")?;
    // Control: the same content from a trusted place runs.
    run_policy(env, &good, ws.path(), &[])?.expect_code(0, "trusted policy")?;

    // In the workspace.
    let inside = ws.path().join("coding-agent.toml");
    std::fs::write(&inside, "profile = \"full\"\n").map_err(|e| e.to_string())?;
    let out = run_policy(env, &inside, ws.path(), &[])?;
    expect_untrusted(&out, &inside, "lies inside", "policy in the workspace")?;
    // `policy show` says so (and still prints).
    let shown = env.run(&[
        "policy",
        "show",
        "--json",
        "--policy",
        inside.to_str().unwrap_or(""),
        "-w",
        ws.s(),
    ])?;
    let v: serde_json::Value = serde_json::from_str(&shown.stdout)
        .map_err(|e| format!("policy show --json: {e}: {}", shown.stdout))?;
    if !v["untrusted_policy_files"][0]
        .as_str()
        .is_some_and(|u| u.contains("lies inside"))
    {
        return Err(format!("policy show does not say it: {v:#}").into());
    }
    // ... accepted with the flag, loudly.
    let out = run_policy(env, &inside, ws.path(), &["--trust-writable-policy"])?;
    out.expect_code(0, "policy in the workspace with --trust-writable-policy")?;
    if !out.stderr.contains("warning: --trust-writable-policy") {
        return Err(format!("no warning with the flag: {}", out.stderr).into());
    }

    // Through a symlink in the workspace to a trusted file (the agent could retarget it).
    let link = ws.path().join("link.toml");
    std::os::unix::fs::symlink(&good, &link).map_err(|e| e.to_string())?;
    let out = run_policy(env, &link, ws.path(), &[])?;
    expect_untrusted(
        &out,
        &link,
        "symlink",
        "policy through a symlink in the workspace",
    )?;

    // Through `extends` from a trusted file.
    let top = conf.write("top.toml", &format!("extends = \"{}\"\n", inside.display()))?;
    let out = run_policy(env, &top, ws.path(), &[])?;
    expect_untrusted(&out, &inside, "lies inside", "extends into the workspace")?;

    // A hard link whose other name is in the workspace.
    let hard = conf.write("hard.toml", "profile = \"full\"\n")?;
    std::fs::hard_link(&hard, ws.path().join("hard.toml")).map_err(|e| e.to_string())?;
    let out = run_policy(env, &hard, ws.path(), &[])?;
    expect_untrusted(&out, &hard, "hard links", "hard-linked policy")?;

    // In a directory bound read-write.
    let rwdir = env.workspace()?;
    let in_rw = rwdir.path().join("p.toml");
    std::fs::write(&in_rw, "profile = \"full\"\n").map_err(|e| e.to_string())?;
    let out = run_policy(env, &in_rw, ws.path(), &["--rw", rwdir.s()])?;
    expect_untrusted(&out, &in_rw, "lies inside", "policy in an rw path")?;

    // The documented layout of old: the file next to the project, `workspace = "."`.
    let proj = Dir::new("trustproj")?;
    let next = proj.write("agent.toml", "workspace = \".\"\n")?;
    let out = run_policy(env, &next, ws.path(), &[])?;
    // `-w` overrides the file's workspace: without it, the file's own directory is the
    // workspace.
    out.expect_code(0, "-w overrides workspace = \".\"")?;
    let fs = next.to_str().unwrap_or("");
    let out = env.run(&["run", "--policy", fs, "--", "true"])?;
    expect_untrusted(&out, &next, "lies inside", "workspace = \".\"")?;

    // Planted in an earlier workspace with its own `workspace` key moving this run away from
    // it: run from that directory (the default workspace), still refused; -w or running from
    // elsewhere decides.
    let other = env.workspace()?;
    let mover = ws.path().join("mover.toml");
    std::fs::write(&mover, format!("workspace = \"{}\"\n", other.s()))
        .map_err(|e| e.to_string())?;
    let ms = mover.to_str().unwrap_or("");
    let out = env.run_with(&["run", "--policy", ms, "--", "true"], |c| {
        c.current_dir(ws.path());
    })?;
    expect_untrusted(
        &out,
        &mover,
        "current directory",
        "workspace moved away by the file",
    )?;

    // Group-writable.
    let gw = conf.write("gw.toml", "profile = \"full\"\n")?;
    std::fs::set_permissions(&gw, std::fs::Permissions::from_mode(0o664))
        .map_err(|e| e.to_string())?;
    let out = run_policy(env, &gw, ws.path(), &[])?;
    expect_untrusted(&out, &gw, "writable by its group", "group-writable policy")
}

/// As root, a policy file owned by the sandbox's host uid (65534) is refused.
fn trust_owner_is_sandbox_uid(env: &Env) -> Result<(), Failed> {
    let ws = env.workspace()?;
    let conf = Dir::new("trustown")?;
    let f = conf.write("p.toml", "profile = \"full\"\n")?;
    std::os::unix::fs::chown(&f, Some(65534), Some(65534)).map_err(|e| e.to_string())?;
    let out = run_policy(env, &f, ws.path(), &[])?;
    expect_untrusted(
        &out,
        &f,
        "owned by uid 65534",
        "policy owned by the sandbox's uid",
    )
}

/// As root, no user namespace means host root without isolation: refused without
/// --allow-unsandboxed-root (which no policy file can say), loud with it.
fn unsandboxed_root_needs_the_flag(env: &Env) -> Result<(), Failed> {
    let ws = env.workspace()?;
    let run = |args: &[&str]| -> Result<Out, Failed> {
        let o = env
            .command_as_is(args)
            .stdin(std::process::Stdio::null())
            .output()
            .map_err(|e| e.to_string())?;
        Ok(Out {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        })
    };
    let out = run(&["run", "-p", "none", "-w", ws.s(), "--", "id", "-u"])?;
    out.expect_code(2, "-p none as root")?;
    if !out.stderr.contains("host root") || !out.stderr.contains("--allow-unsandboxed-root") {
        return Err(format!("no reason or hint: {}", out.stderr).into());
    }
    // From a trusted policy file: the same.
    let conf = Dir::new("rootnone")?;
    let f = conf.write("none.toml", "profile = \"none\"\n")?;
    let fs = f.to_str().unwrap_or("");
    let out = run(&["run", "--policy", fs, "-w", ws.s(), "--", "id", "-u"])?;
    out.expect_code(2, "profile = \"none\" from a policy file as root")?;
    // A policy file cannot confirm it.
    let g = conf.write(
        "g.toml",
        "profile = \"none\"\nallow_unsandboxed_root = true\n",
    )?;
    let out = run(&[
        "run",
        "--policy",
        g.to_str().unwrap_or(""),
        "-w",
        ws.s(),
        "--",
        "true",
    ])?;
    expect_file_error(&out, &g, 2, "allow_unsandboxed_root")?;
    // With the flag: runs as host root, with a loud warning even under -q.
    let out = run(&[
        "run",
        "-q",
        "--allow-unsandboxed-root",
        "-p",
        "none",
        "-w",
        ws.s(),
        "--",
        "id",
        "-u",
    ])?;
    out.expect_code(0, "-p none --allow-unsandboxed-root")?;
    if out.stdout.trim() != "0" || !out.stderr.contains("HOST ROOT") {
        return Err(format!("stdout {:?}, stderr {:?}", out.stdout, out.stderr).into());
    }
    Ok(())
}

fn completions_and_man() -> Result<(), Failed> {
    for sh in ["bash", "zsh", "fish"] {
        let out = cli(&["completions", sh], Path::new("/"), &[])?;
        out.expect_code(0, sh)?;
        if out.stdout.len() < 200
            || !out.stdout.contains("agentcage")
            || !out.stdout.contains("policy")
        {
            return Err(format!(
                "{sh} completions: {:?}",
                &out.stdout[..out.stdout.len().min(200)]
            )
            .into());
        }
    }
    let out = cli(&["man"], Path::new("/"), &[])?;
    out.expect_code(0, "man")?;
    if !out.stdout.contains(".TH") || !out.stdout.contains("agentcage") {
        return Err("man page has no .TH header".into());
    }
    let d = Dir::new("man")?;
    cli(&["man", "--out-dir", d.s()], Path::new("/"), &[])?.expect_code(0, "man --out-dir")?;
    for page in ["agentcage.1", "agentcage-run.1", "agentcage-policy-show.1"] {
        if std::fs::metadata(d.join(page))
            .map(|m| m.len())
            .unwrap_or(0)
            == 0
        {
            return Err(format!("{page} missing or empty").into());
        }
    }
    let v = cli(&["--version"], Path::new("/"), &[])?;
    if !v.stdout.starts_with("agentcage ") {
        return Err(format!("--version: {}", v.stdout).into());
    }
    Ok(())
}

/// The subcommand names listed under "Commands:" in a help text (`help` excluded).
fn subcommands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(str::to_string)
        .collect()
}

fn every_help_has_an_example() -> Result<(), Failed> {
    let top = cli(&["--help"], Path::new("/"), &[])?;
    let mut queue: Vec<Vec<String>> = subcommands(&top.stdout)
        .into_iter()
        .map(|c| vec![c])
        .collect();
    if queue.len() < 8 {
        return Err(format!("too few subcommands in --help:\n{}", top.stdout).into());
    }
    let mut seen = 0;
    while let Some(path) = queue.pop() {
        let mut a: Vec<&str> = path.iter().map(String::as_str).collect();
        a.push("--help");
        let out = cli(&a, Path::new("/"), &[])?;
        out.expect_code(0, &a.join(" "))?;
        if !out.stdout.contains("Example") {
            return Err(format!(
                "`agentcage {}` has no example:\n{}",
                a.join(" "),
                out.stdout
            )
            .into());
        }
        for sub in subcommands(&out.stdout) {
            let mut p = path.clone();
            p.push(sub);
            queue.push(p);
        }
        seen += 1;
    }
    if seen < 10 {
        return Err(format!("only {seen} help pages checked").into());
    }
    Ok(())
}

fn docs_key_table_in_sync() -> Result<(), Failed> {
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/POLICY.md"))
            .map_err(|e| e.to_string())?;
    let out = cli(&["policy", "keys"], Path::new("/"), &[])?;
    out.expect_code(0, "policy keys")?;
    if out.stdout.lines().count() < 20 || !doc.contains(&out.stdout) {
        return Err("docs/POLICY.md does not contain the output of `agentcage policy keys`: regenerate its key table".into());
    }
    Ok(())
}

fn main() {
    let args = Arguments::from_args();
    type Plain = fn() -> Result<(), Failed>;
    let plain: &[(&str, Plain)] = &[
        ("invalid_toml", invalid_toml),
        ("unknown_keys", unknown_keys),
        ("wrong_types", wrong_types),
        ("flag_overrides_file", flag_overrides_file),
        ("flag_overrides_file_in_a_run", flag_overrides_file_in_a_run),
        ("extends_chains_and_cycles", extends_chains_and_cycles),
        ("relative_paths_and_tilde", relative_paths_and_tilde),
        ("show_round_trips", show_round_trips),
        ("show_reports_enforcement", show_reports_enforcement),
        ("completions_and_man", completions_and_man),
        ("every_help_has_an_example", every_help_has_an_example),
        ("docs_key_table_in_sync", docs_key_table_in_sync),
    ];
    let mut trials: Vec<Trial> = plain.iter().map(|&(n, f)| Trial::test(n, f)).collect();
    for who in [Who::Root, Who::Nobody] {
        let skip = common::skip_reason(who);
        let name = format!("{}::examples_run", who.name());
        if let Some(why) = &skip {
            eprintln!("skip {name}: {why}");
        }
        trials.push(
            Trial::test(name, move || examples_run(&Env::new(who)?))
                .with_ignored_flag(skip.is_some()),
        );
        trials.push(common::trial(
            who,
            "trust_writable_policy_refused",
            trust_writable_policy_refused,
            skip.clone(),
        ));
        if who == Who::Root {
            for (name, f) in [
                (
                    "trust_owner_is_sandbox_uid",
                    trust_owner_is_sandbox_uid as common::TestFn,
                ),
                (
                    "unsandboxed_root_needs_the_flag",
                    unsandboxed_root_needs_the_flag,
                ),
            ] {
                trials.push(common::trial(who, name, f, skip.clone()));
            }
        }
    }
    let conclusion = libtest_mimic::run(&args, trials);
    common::cleanup();
    conclusion.exit();
}
