//! `agentcage matrix --format html` and `agentcage bench --format html`, loaded in headless
//! Chromium (Debian's `chromium`): the page renders without a console message (errors, CSP
//! violations, uncaught exceptions), its own self-check passes, the screenshot is a real PNG
//! of some size, the DOM has exactly one heatmap cell per op and profile and one start-up bar
//! per measured contender, and a `<script>` in any field of a saved matrix or bench report
//! stays text.
//!
//! The matrix and the bench run for real (small: two profiles without attribution; three
//! rounds of `bench --quick`), as root and as uid 65534. Chromium runs as the test's user,
//! on file:// pages, with a fresh profile directory, no proxy and a resolver that resolves
//! nothing: the pages have no URL to fetch anyway (checked in the markup). When Chromium is
//! missing the trials print why and are skipped, or fail when `AGENTCAGE_TEST_EXPECT` lists
//! `chromium`.

mod common;

use std::collections::BTreeSet;
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{err, expected, Env, TestFn, Who};
use libtest_mimic::{Arguments, Failed, Trial};
use serde_json::{json, Value};

/// How long one Chromium load may take (a 2-core machine under load starts it in seconds).
const CHROMIUM_LIMIT: Duration = Duration::from_secs(240);
/// Window size of the screenshots.
const SHOT: (u32, u32) = (1280, 2000);
/// A screenshot of a blank page of that size is about 12 KB; the pages give 250-350 KB.
const MIN_PNG: u64 = 50 * 1024;

/// Why Chromium cannot be used here, if it cannot.
fn chromium_missing() -> Option<String> {
    match Command::new("chromium")
        .arg("--version")
        .stdin(Stdio::null())
        .output()
    {
        Ok(o) if o.status.success() => None,
        Ok(o) => Some(format!(
            "`chromium --version` failed: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        )),
        Err(e) => Some(format!(
            "chromium is not installed ({e}; .ci/run installs the Debian package `chromium`)"
        )),
    }
}

/// What one Chromium load produced.
struct Loaded {
    stdout: String,
    /// Console messages and uncaught exceptions from `--enable-logging=stderr`.
    console: Vec<String>,
}

/// Loads `page` in headless Chromium with `extra` arguments (`--dump-dom` or
/// `--screenshot=...`), in its own process group; fails on a timeout, a non-zero exit or any
/// console message.
fn chromium(page: &Path, extra: &[String]) -> Result<Loaded, Failed> {
    let profile = Env::new(Who::Root)?.policy_dir()?;
    let user_data = format!("--user-data-dir={}", profile.s());
    let out_path = profile.path().join("stdout");
    let err_path = profile.path().join("stderr");
    let mut c = Command::new("chromium");
    c.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-extensions",
        "--proxy-server=127.0.0.1:9",
        "--host-resolver-rules=MAP * ~NOTFOUND",
        "--enable-logging=stderr",
        "--v=0",
    ])
    .arg(&user_data)
    .args(extra)
    .arg(format!("file://{}", page.display()))
    .env("HOME", profile.path())
    .stdin(Stdio::null())
    .stdout(std::fs::File::create(&out_path).map_err(err)?)
    .stderr(std::fs::File::create(&err_path).map_err(err)?)
    .process_group(0);
    let mut child = c.spawn().map_err(|e| format!("spawn chromium: {e}"))?;
    let pgid = child.id() as libc::pid_t;
    let status = common::wait_deadline(&mut child, CHROMIUM_LIMIT, "chromium");
    // Helpers that outlived the browser keep the group (ours) alive: end them.
    if common::process_with_arg(&user_data) {
        // SAFETY: kill(2) on the process group we created; a member still runs, so the id
        // cannot have been reused.
        unsafe { libc::killpg(pgid, libc::SIGKILL) };
    }
    let status = status?;
    let stdout = std::fs::read_to_string(&out_path).map_err(err)?;
    let stderr = String::from_utf8_lossy(&std::fs::read(&err_path).map_err(err)?).into_owned();
    if !status.success() {
        return Err(format!("chromium {extra:?}: {status}\nstderr: {stderr}").into());
    }
    let console: Vec<String> = stderr
        .lines()
        .filter(|l| l.contains(":CONSOLE") || l.contains("Uncaught"))
        .map(str::to_string)
        .collect();
    Ok(Loaded { stdout, console })
}

/// The page's DOM after its scripts ran; fails on console output or a failed self-check.
fn dom_of(page: &Path) -> Result<String, Failed> {
    let l = chromium(page, &["--dump-dom".to_string()])?;
    if !l.console.is_empty() {
        return Err(format!("console messages:\n{}", l.console.join("\n")).into());
    }
    let dom = l.stdout;
    if !dom.contains("data-selfcheck=\"ok\"") {
        let at = dom.find("id=\"selfcheck\"").unwrap_or(0);
        return Err(format!(
            "the page's self-check did not pass: {}",
            &dom[at..dom.len().min(at + 400)]
        )
        .into());
    }
    Ok(dom)
}

/// Takes a screenshot of `page`; returns its size in bytes after checking it is a PNG of the
/// window's size (signature, IHDR, every chunk's CRC, IDAT, IEND) and not blank-sized.
fn screenshot(page: &Path, png: &Path) -> Result<u64, Failed> {
    let l = chromium(
        page,
        &[
            format!("--screenshot={}", png.display()),
            format!("--window-size={},{}", SHOT.0, SHOT.1),
        ],
    )?;
    if !l.console.is_empty() {
        return Err(format!("console messages:\n{}", l.console.join("\n")).into());
    }
    let bytes = std::fs::read(png).map_err(|e| format!("read {}: {e}", png.display()))?;
    let (w, h) = check_png(&bytes)?;
    if (w, h) != SHOT {
        return Err(format!("screenshot is {w}x{h}, want {}x{}", SHOT.0, SHOT.1).into());
    }
    let n = bytes.len() as u64;
    if n < MIN_PNG {
        return Err(format!("screenshot of {n} bytes: a blank page is about 12 KB").into());
    }
    Ok(n)
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// Walks a PNG's chunks; returns the IHDR width and height.
fn check_png(b: &[u8]) -> Result<(u32, u32), Failed> {
    const SIG: &[u8] = b"\x89PNG\r\n\x1a\n";
    if !b.starts_with(SIG) {
        return Err("not a PNG (signature)".into());
    }
    let be = |s: &[u8]| u32::from_be_bytes([s[0], s[1], s[2], s[3]]);
    let mut at = SIG.len();
    let (mut size, mut idat, mut first) = (None, false, true);
    loop {
        if at + 12 > b.len() {
            return Err(format!("PNG truncated at byte {at}").into());
        }
        let len = be(&b[at..]) as usize;
        let kind = &b[at + 4..at + 8];
        let end = at + 8 + len;
        if end + 4 > b.len() {
            return Err(format!(
                "PNG chunk {:?} overruns the file",
                String::from_utf8_lossy(kind)
            )
            .into());
        }
        if crc32(&b[at + 4..end]) != be(&b[end..]) {
            return Err(format!("PNG chunk {:?}: bad CRC", String::from_utf8_lossy(kind)).into());
        }
        match kind {
            b"IHDR" if first && len == 13 => size = Some((be(&b[at + 8..]), be(&b[at + 12..]))),
            _ if first => return Err("PNG does not start with IHDR".into()),
            b"IDAT" => idat = true,
            b"IEND" => break,
            _ => {}
        }
        first = false;
        at = end + 4;
    }
    match size {
        Some(s) if idat && s.0 > 0 && s.1 > 0 => Ok(s),
        _ => Err("PNG without image data".into()),
    }
}

/// Undoes the escaping of an attribute value as Chromium serializes it.
fn unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&#39;", "'")
        .replace("&nbsp;", "\u{a0}")
        .replace("&amp;", "&")
}

/// The value of attribute `name` in the tag text `tag`.
fn attr(tag: &str, name: &str) -> Option<String> {
    let key = format!(" {name}=\"");
    let i = tag.find(&key)? + key.len();
    let j = tag[i..].find('"')?;
    Some(unescape(&tag[i..i + j]))
}

/// Every start tag `<name ...>` of `html`, as text.
fn tags<'a>(html: &'a str, name: &str) -> Vec<&'a str> {
    let open = format!("<{name} ");
    let mut out = Vec::new();
    let mut rest = html;
    while let Some(i) = rest.find(&open) {
        let t = &rest[i..];
        let end = t.find('>').unwrap_or(t.len());
        out.push(&t[..end]);
        rest = &t[end..];
    }
    out
}

/// The markup of a page (every `<`...`>`, since all text is escaped) refers to nothing
/// outside it: no tag has a src, href, srcset, action, xlink or style attribute, and the
/// style sheet has no url() or @import. Attribute values are data (a probe's detail may
/// well name a URL), so they are cut out of the tag before its names are checked.
fn no_external_refs(html: &str) -> Result<(), Failed> {
    let mut rest = html;
    while let Some(i) = rest.find('<') {
        let t = &rest[i + 1..];
        let end = t.find('>').unwrap_or(t.len());
        let skeleton: String = t[..end]
            .split('"')
            .step_by(2)
            .collect::<Vec<_>>()
            .join("\"\"")
            .to_ascii_lowercase();
        for bad in [
            " src=", " href=", " srcset=", " action=", "xlink:", " style=", "://",
        ] {
            if skeleton.contains(bad) {
                return Err(format!("external reference {bad:?} in <{skeleton}>").into());
            }
        }
        rest = &t[end..];
    }
    let style = html
        .split("<style>")
        .nth(1)
        .and_then(|s| s.split("</style>").next())
        .ok_or("no style element")?;
    if style.contains("url(") || style.contains("@import") {
        return Err("url() or @import in the style sheet".into());
    }
    Ok(())
}

fn json_of(text: &str, what: &str) -> Result<Value, Failed> {
    serde_json::from_str(text).map_err(|e| format!("{what}: not JSON: {e}\n{text}").into())
}

/// A real small matrix rendered as HTML: one cell per op and profile, coloured and
/// attributed, no console message, a real screenshot.
fn matrix_page(env: &Env) -> Result<(), Failed> {
    let dir = env.policy_dir()?;
    let out = env.run(&[
        "matrix",
        "--no-attribution",
        "--profiles",
        "none,full",
        "--format",
        "html",
    ])?;
    out.expect_code(0, "matrix --format html")?;
    // The summary line (stderr) is the oracle: computed from the matrix, not the page.
    let ops: usize = out
        .stderr
        .lines()
        .find_map(|l| l.strip_prefix("agentcage matrix: "))
        .and_then(|l| l.split(' ').next())
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| format!("no summary line on stderr: {}", out.stderr))?;
    let html = out.stdout;
    no_external_refs(&html)?;
    let page = dir.path().join("matrix.html");
    std::fs::write(&page, &html).map_err(err)?;
    let dom = dom_of(&page)?;
    let cells: Vec<(String, String, String)> = tags(&dom, "td")
        .into_iter()
        .filter_map(|t| {
            Some((
                attr(t, "data-op")?,
                attr(t, "data-profile")?,
                attr(t, "data-result")?,
            ))
        })
        .collect();
    let pairs: BTreeSet<(&str, &str)> = cells
        .iter()
        .map(|(o, p, _)| (o.as_str(), p.as_str()))
        .collect();
    let op_ids: BTreeSet<&str> = cells.iter().map(|(o, _, _)| o.as_str()).collect();
    let profiles: BTreeSet<&str> = cells.iter().map(|(_, p, _)| p.as_str()).collect();
    if cells.len() != ops * 2 || pairs.len() != cells.len() || op_ids.len() != ops {
        return Err(format!(
            "{} cells ({} distinct, {} ops) for {ops} ops x 2 profiles",
            cells.len(),
            pairs.len(),
            op_ids.len()
        )
        .into());
    }
    if profiles != BTreeSet::from(["none", "full"]) {
        return Err(format!("profiles in the DOM: {profiles:?}").into());
    }
    // Independent facts: full blocks writing to the host root, none lets it through.
    let result = |op: &str, p: &str| {
        cells
            .iter()
            .find(|(o, q, _)| o == op && q == p)
            .map(|(_, _, r)| r.as_str())
    };
    if result("fs.write.root", "full") != Some("BLOCKED")
        || (env.who == Who::Nobody && result("fs.write.root", "none") != Some("BLOCKED"))
    {
        return Err(format!(
            "fs.write.root: none {:?}, full {:?}",
            result("fs.write.root", "none"),
            result("fs.write.root", "full")
        )
        .into());
    }
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").map_err(err)?;
    if !dom.contains(&format!(
        "<title>agentcage matrix: kernel {}</title>",
        kernel.trim()
    )) {
        return Err("the title does not name the kernel".into());
    }
    let png = dir.path().join("matrix.png");
    let n = screenshot(&page, &png)?;
    eprintln!(
        "{}::matrix_page: screenshot {n} bytes ({}x{})",
        env.who.name(),
        SHOT.0,
        SHOT.1
    );
    Ok(())
}

/// A small real bench rendered from its JSON: one start-up bar per measured contender and
/// series, the peers beside the profiles, no console message, a real screenshot.
fn bench_page(env: &Env) -> Result<(), Failed> {
    let dir = env.policy_dir()?;
    let out = env.run(&[
        "bench",
        "--quick",
        "--rounds",
        "3",
        "--launches",
        "20",
        "--compare",
        "--json",
    ])?;
    if out.code != 0 && out.code != 1 {
        out.expect_code(0, "bench --json")?;
    }
    let report = json_of(&out.stdout, "bench --json")?;
    let saved = dir.path().join("bench.json");
    std::fs::write(&saved, &out.stdout).map_err(err)?;
    let saved_s = saved.to_str().ok_or("temp path not UTF-8")?;
    let out = env.run(&["bench", "--from-json", saved_s, "--format", "html"])?;
    out.expect_code(0, "bench --from-json --format html")?;
    no_external_refs(&out.stdout)?;
    let page = dir.path().join("bench.html");
    std::fs::write(&page, &out.stdout).map_err(err)?;
    let dom = dom_of(&page)?;

    // Expected start-up bars: every profile and baseline with a start-up summary, per series.
    let mut want = BTreeSet::new();
    let rows = report["profiles"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| (p["profile"].as_str().unwrap_or("?"), p))
        .chain(
            report["baselines"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|b| (b["name"].as_str().unwrap_or("?"), b)),
        );
    for (name, r) in rows {
        for (key, series) in [
            ("startup", "static true"),
            ("startup_bin_true", "/bin/true"),
        ] {
            if r[key].is_object() {
                want.insert((name.to_string(), series.to_string()));
            }
        }
    }
    let start = dom
        .find("data-chart=\"startup\"")
        .ok_or("no start-up chart in the DOM")?;
    let chart = &dom[start..start + dom[start..].find("</svg>").ok_or("chart not closed")?];
    // A bar's label is the contender's name, then its version in parentheses for peers.
    let bars: Vec<(String, String)> = tags(chart, "rect")
        .into_iter()
        .filter_map(|t| Some((attr(t, "data-bar")?, attr(t, "data-series")?)))
        .map(|(bar, s)| (bar.split(" (").next().unwrap_or("").to_string(), s))
        .collect();
    let got: BTreeSet<(String, String)> = bars.iter().cloned().collect();
    if got != want || bars.len() != want.len() {
        return Err(format!("start-up bars {bars:?}, want {want:?}").into());
    }
    for p in ["none", "full"] {
        if !want.contains(&(p.to_string(), "static true".to_string())) {
            return Err(format!("profile {p} has no start-up bar").into());
        }
    }
    let bwrap = report["baselines"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|b| b["name"] == "bwrap" && b["startup"].is_object());
    if Path::new("/usr/bin/bwrap").exists() && !bwrap {
        eprintln!(
            "note: bwrap is installed but was not measured: {}",
            report["notes"]
        );
    }
    if bwrap && !got.contains(&("bwrap".to_string(), "static true".to_string())) {
        return Err("bwrap was measured but has no bar".into());
    }
    let png = dir.path().join("bench.png");
    let n = screenshot(&page, &png)?;
    eprintln!(
        "{}::bench_page: screenshot {n} bytes ({}x{})",
        env.who.name(),
        SHOT.0,
        SHOT.1
    );
    Ok(())
}

const EVIL: &str =
    "<script>document.title='PWNED'</script><img src=x onerror=\"document.title='PWNED'\">\"'&";

/// A saved matrix with a script in every text field: rendered, it stays text.
fn matrix_injection(env: &Env) -> Result<(), Failed> {
    let dir = env.policy_dir()?;
    let cell = |result: &str| {
        json!({"result": result, "errno": EVIL, "detail": EVIL, "blocker": [EVIL, "seccomp"],
               "redundant": false, "notes": [EVIL]})
    };
    let m = json!({
        "host": {"kernel": EVIL, "landlock_abi": 7, "uid": 0, "gid": 0, "agentcage": EVIL,
                 "attribution": true, "landlock_enforcement": [format!("fs.x: {EVIL}")]},
        "profiles": ["none", "full"],
        "ops": [
            {"id": format!("fs.evil\"><script>document.title='PWNED'</script>{EVIL}"),
             "title": EVIL, "category": "fs",
             "results": {"none": cell("ALLOWED"), "full": cell("BLOCKED")}},
            {"id": "info.evil", "title": EVIL, "category": "info",
             "results": {"none": cell("INFO"), "full": cell("SKIPPED")}},
        ],
        "runs": [{"profile": "full", "without": ["seccomp"], "status": "failed",
                  "detail": EVIL, "rows": 0}],
    });
    let saved = dir.path().join("evil.json");
    std::fs::write(&saved, m.to_string()).map_err(err)?;
    let out = env.run(&[
        "matrix",
        "--from-json",
        saved.to_str().ok_or("temp path not UTF-8")?,
        "--format",
        "html",
    ])?;
    out.expect_code(0, "matrix --from-json --format html")?;
    let page = dir.path().join("evil.html");
    std::fs::write(&page, &out.stdout).map_err(err)?;
    check_inert(&page, 4)?;
    // Bad input is an error with the file named, never a panic.
    std::fs::write(&saved, "{\"host\": 1}").map_err(err)?;
    let bad = env.run(&[
        "matrix",
        "--from-json",
        saved.to_str().unwrap_or(""),
        "--format",
        "html",
    ])?;
    bad.expect_code(125, "matrix --from-json on a bad file")?;
    if !bad.stderr.contains("evil.json") || bad.stderr.contains("panicked") {
        return Err(format!("unclear error: {}", bad.stderr).into());
    }
    Ok(())
}

/// A saved bench report with a script in its text fields: rendered, it stays text.
fn bench_injection(env: &Env) -> Result<(), Failed> {
    let dir = env.policy_dir()?;
    let startup = json!({"ms": {"n": 3, "min": 1.0, "median": 2.0, "p95": 3.0, "max": 3.0, "mean": 2.0},
                         "failures": 0});
    let mut profile = json!({"profile": "full", "error": null, "startup": startup,
        "startup_bin_true": null, "x_none": null, "x_exec": null, "x_exec_bin_true": null,
        "x_bwrap": null, "x_unshare": null, "throughput_x_bwrap": null, "ns_per_syscall": null,
        "syscall_delta_ns": null, "open_ns": null, "stat_ns": null, "open_by_depth": [],
        "stat_by_depth": [], "launches_per_s": null, "throughput_failures": 0,
        "peak_rss_kib": null, "inner_errors": [EVIL]});
    let mut none = profile.clone();
    none["profile"] = "none".into();
    none["error"] = EVIL.into();
    none["startup"] = Value::Null;
    profile["error"] = Value::Null;
    let r = json!({
        "schema": "agentcage-bench/1",
        "host": {"kernel": EVIL, "arch": EVIL, "cpu": EVIL, "cpus": 2, "hypervisor": true,
                 "uid": 0, "started_at": EVIL},
        "config": {"quick": true, "compare": true, "rounds": 3, "warmup": 1, "inner_rounds": 1,
                   "getpid_iterations": 1, "file_iterations": 1, "batches": 1, "launches": 0,
                   "concurrency": 2, "seed": 1, "agentcage": EVIL, "static_true": EVIL,
                   "files": [{"depth": 3, "path": EVIL}],
                   "commands": [{"contender": EVIL, "command": EVIL}]},
        "profiles": [none, profile],
        "baselines": [{"name": format!("bwrap\"><script>alert(1)</script>{EVIL}"), "version": EVIL,
                       "error": null, "startup": startup, "startup_bin_true": null,
                       "launches_per_s": null, "throughput_failures": 0, "peak_rss_kib": null}],
        "throughput": {"launches": 0, "concurrency": 2, "failed_runs": 0, "leaked_processes": 0,
                       "orphans_reaped": 0},
        "targets": [{"id": EVIL, "what": EVIL, "measured": 1.0, "limit": 2.0, "unit": EVIL,
                     "cmp": "<=", "status": "met", "note": EVIL}],
        "breakdown": [{"profile": "full", "command": EVIL, "stderr": EVIL}],
        "notes": [EVIL],
        "phases": [{"phase": EVIL, "seconds": 1.0}],
        "duration_s": 1.0,
    });
    let saved = dir.path().join("evil.json");
    std::fs::write(&saved, r.to_string()).map_err(err)?;
    let out = env.run(&[
        "bench",
        "--from-json",
        saved.to_str().ok_or("temp path not UTF-8")?,
        "--format",
        "html",
    ])?;
    out.expect_code(0, "bench --from-json --format html")?;
    let page = dir.path().join("evil.html");
    std::fs::write(&page, &out.stdout).map_err(err)?;
    check_inert(&page, 0)?;
    Ok(())
}

/// The page at `page`, full of [`EVIL`], loads with no console message and its self-check
/// passing; the DOM has exactly our one script, no `<img>`, the untouched title, and
/// `cells` heatmap cells; the payload is there as text.
fn check_inert(page: &Path, cells: usize) -> Result<(), Failed> {
    let html = std::fs::read_to_string(page).map_err(err)?;
    no_external_refs(&html)?;
    let dom = dom_of(page)?;
    let scripts = dom.matches("<script").count();
    let imgs = dom.matches("<img").count();
    let title = dom
        .split("<title>")
        .nth(1)
        .and_then(|t| t.split("</title>").next())
        .unwrap_or("");
    if scripts != 1 || imgs != 0 || title.trim() == "PWNED" {
        return Err(format!("injected: {scripts} scripts, {imgs} img, title {title:?}").into());
    }
    if !dom.contains("&lt;script&gt;document.title='PWNED'&lt;/script&gt;")
        && !dom.contains("&lt;script&gt;document.title=&#39;PWNED&#39;&lt;/script&gt;")
    {
        return Err("the payload is not shown as text".into());
    }
    let n = tags(&dom, "td")
        .into_iter()
        .filter(|t| attr(t, "data-op").is_some())
        .count();
    if n != cells {
        return Err(format!("{n} heatmap cells, want {cells}").into());
    }
    Ok(())
}

fn main() {
    let args = Arguments::from_args();
    let missing = chromium_missing();
    let tests: &[(&str, TestFn)] = &[
        ("matrix_page", matrix_page),
        ("bench_page", bench_page),
        ("matrix_injection", matrix_injection),
        ("bench_injection", bench_injection),
    ];
    let mut trials = Vec::new();
    for who in [Who::Root, Who::Nobody] {
        for &(name, f) in tests {
            let skip = common::skip_reason(who);
            match (&missing, skip) {
                (_, Some(why)) => trials.push(common::trial(who, name, f, Some(why))),
                (Some(why), None) if expected("chromium") => {
                    let why = format!("AGENTCAGE_TEST_EXPECT lists chromium but: {why}");
                    trials.push(Trial::test(format!("{}::{name}", who.name()), move || {
                        Err(why.into())
                    }));
                }
                (Some(why), None) => trials.push(common::trial(who, name, f, Some(why.clone()))),
                (None, None) => trials.push(common::trial(who, name, f, None)),
            }
        }
    }
    common::run(&args, trials)
}
