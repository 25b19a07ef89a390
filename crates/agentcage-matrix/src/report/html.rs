//! `agentcage matrix --format html`: the matrix as one self-contained page.
//!
//! - A heatmap of ops (rows, grouped by category) by profiles (columns): one `<td>` per op and
//!   profile, coloured by result, with the measured blocker layers in the cell and every detail
//!   (errno, probe detail, blockers, notes) in its `title` tooltip. Each cell carries
//!   `data-op`/`data-profile`/`data-result`, so tools (and the tests) can count and read it.
//! - The header: host, kernel, Landlock ABI, what the launcher enforces (doctor), how the
//!   attribution was measured; then the attribution summary: per layer, how many of the
//!   strongest profile's blocks it explains alone, jointly or redundantly.
//!
//! Self-contained and inert: inline CSS and one inline script, no URL anywhere, and a
//! Content-Security-Policy (`default-src 'none'`, the style and the script allowed by their
//! SHA-256) so that even a page edited by hand cannot fetch anything. Every text that comes
//! from a probe, a host or a file is HTML-escaped ([`esc`]); the script reads no data from
//! the page but counts and attributes. The script only checks the page (one cell per op and
//! profile, no duplicates) and writes the verdict into `#selfcheck`.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use base64::Engine as _;
use sha2::{Digest as _, Sha256};

use super::{blocker_text, cell, short_name, Cell, Matrix, OpRow};
use crate::deps::{Category, Layer, Profile, Verdict};

/// The page's style sheet (allowed by its hash in the CSP).
const STYLE: &str = r#"
:root { color-scheme: light; }
body { font: 14px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 24px; color: #1d232a; background: #fafbfc; }
h1 { font-size: 22px; margin: 0 0 4px; }
h2 { font-size: 17px; margin: 28px 0 8px; }
.facts { margin: 8px 0; padding: 0; list-style: none; color: #3b4650; }
.facts li { margin: 2px 0; }
.summary { font-weight: 600; }
code { font: 12px ui-monospace, "DejaVu Sans Mono", monospace; }
table { border-collapse: collapse; }
table.heat { font-size: 12px; }
table.heat th, table.heat td { border: 1px solid #fff; padding: 3px 6px; }
table.heat thead th { position: sticky; top: 0; background: #2f3b47; color: #fff; z-index: 1; }
table.heat th.op { text-align: left; background: #eef1f4; font-weight: normal; max-width: 360px; }
table.heat th.op .title { display: block; color: #5a6773; font-size: 11px; }
table.heat tr.cat th { text-align: left; background: #d5dce3; font-size: 13px; padding-top: 6px; }
table.heat td { min-width: 84px; text-align: center; vertical-align: middle; cursor: default; }
table.heat td:hover { outline: 2px solid #1d232a; outline-offset: -2px; }
td .v { display: block; font-weight: 600; }
td .b { display: block; font-size: 11px; }
td.r-allowed { background: #f1a69b; }
td.r-blocked { background: #8fd19e; }
td.r-redundant { background: #4fae6a; color: #fff; }
td.r-host { background: #9cc3e6; }
td.r-unexplained { background: #f2d27a; }
td.r-skipped { background: #d9dde1; color: #4a545e; }
td.r-info { background: #eef1f6; color: #3b4650; font-size: 11px; overflow-wrap: anywhere; }
td.r-missing { background: #fff; color: #8a949e; border: 1px dashed #c3cad1; }
.legend { display: flex; flex-wrap: wrap; gap: 6px 14px; margin: 10px 0; font-size: 12px; }
.legend span.key { display: inline-block; width: 14px; height: 14px; vertical-align: -3px; margin-right: 4px; border: 1px solid #c3cad1; }
.key.r-allowed { background: #f1a69b; } .key.r-blocked { background: #8fd19e; } .key.r-redundant { background: #4fae6a; }
.key.r-host { background: #9cc3e6; } .key.r-unexplained { background: #f2d27a; } .key.r-skipped { background: #d9dde1; }
.key.r-info { background: #eef1f6; } .key.r-missing { background: #fff; }
table.attr th, table.attr td { border: 1px solid #d5dce3; padding: 3px 8px; text-align: right; }
table.attr th:first-child, table.attr td:first-child { text-align: left; }
table.attr thead th { background: #eef1f4; }
ul.runs { font-size: 12px; color: #3b4650; }
p.names { font-size: 12px; color: #3b4650; }
#selfcheck { font-size: 11px; color: #8a949e; margin-top: 24px; }
"#;

/// The page's only script: checks the heatmap (one cell per op and profile, none twice) and
/// writes the verdict into `#selfcheck` (`data-selfcheck="ok"` or `"fail"`). It reads counts
/// and attributes only, never page text into HTML.
pub const SELF_CHECK: &str = r#"
(function () {
  var out = document.getElementById('selfcheck');
  var problems = [], cells = 0, bars = 0;
  try {
    var tables = document.querySelectorAll('[data-expect-cells]');
    for (var i = 0; i < tables.length; i++) {
      var t = tables[i], seen = {};
      var want = parseInt(t.getAttribute('data-expect-cells'), 10);
      var tds = t.querySelectorAll('[data-op][data-profile]');
      for (var j = 0; j < tds.length; j++) {
        var k = tds[j].getAttribute('data-op') + '\u0000' + tds[j].getAttribute('data-profile');
        if (seen[k]) { problems.push('cell twice: ' + k.replace('\u0000', ' / ')); }
        seen[k] = true;
      }
      cells += tds.length;
      if (tds.length !== want) { problems.push(tds.length + ' cells, expected ' + want); }
    }
    var charts = document.querySelectorAll('svg[data-expect-bars]');
    for (var c = 0; c < charts.length; c++) {
      var n = charts[c].querySelectorAll('rect[data-bar]').length;
      bars += n;
      if (n !== parseInt(charts[c].getAttribute('data-expect-bars'), 10)) {
        problems.push(charts[c].getAttribute('data-chart') + ': ' + n + ' bars');
      }
    }
    if (tables.length + charts.length === 0) { problems.push('nothing to check'); }
  } catch (e) {
    problems.push('exception: ' + e);
  }
  out.setAttribute('data-selfcheck', problems.length ? 'fail' : 'ok');
  out.setAttribute('data-cells', String(cells));
  out.setAttribute('data-bars', String(bars));
  out.textContent = problems.length
    ? 'page self-check failed: ' + problems.join('; ')
    : 'page self-check: ok (' + cells + ' cells, ' + bars + ' bars)';
})();
"#;

/// HTML-escapes `s` for text and for quoted attribute values; control characters other than
/// newline and tab become spaces.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            '\n' | '\t' => o.push(c),
            c if c.is_control() => o.push(' '),
            c => o.push(c),
        }
    }
    o
}

/// The CSP source of an inline element's exact text: `'sha256-BASE64'`.
pub fn csp_hash(text: &str) -> String {
    let digest = Sha256::digest(text.as_bytes());
    format!(
        "'sha256-{}'",
        base64::engine::general_purpose::STANDARD.encode(digest)
    )
}

/// The document's head: charset, CSP, title, style.
pub(crate) fn head(title: &str, style: &str, script: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src {}; \
         script-src {}; img-src 'none'; base-uri 'none'; form-action 'none'\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{}</title>\n<style>{style}</style>\n</head>\n",
        csp_hash(style),
        csp_hash(script),
        esc(title)
    )
}

/// The CSS class of a cell: its colour. Without attribution no block is "unexplained".
fn class(c: &Cell, attribution: bool) -> &'static str {
    match c.result {
        Verdict::Allowed => "r-allowed",
        Verdict::Skipped => "r-skipped",
        Verdict::Info => "r-info",
        Verdict::Blocked if c.blocker.is_empty() && !attribution => "r-blocked",
        Verdict::Blocked if c.blocker.is_empty() => "r-unexplained",
        Verdict::Blocked if c.blocker.iter().all(|b| b == "host") => "r-host",
        Verdict::Blocked if c.redundant => "r-redundant",
        Verdict::Blocked => "r-blocked",
    }
}

/// The tooltip of a cell: every field, one per line.
fn tooltip(o: &OpRow, profile: &str, c: &Cell) -> String {
    let mut t = format!(
        "{} ({})\nprofile: {profile}\nresult: {}",
        o.id, o.title, c.result
    );
    if let Some(e) = &c.errno {
        let _ = write!(t, "\nerrno: {e}");
    }
    if !c.detail.is_empty() {
        let _ = write!(t, "\ndetail: {}", c.detail);
    }
    if c.result == Verdict::Blocked {
        let _ = write!(t, "\nblocker: {}", blocker_text(c));
    }
    for n in &c.notes {
        let _ = write!(t, "\nnote: {n}");
    }
    t
}

/// The visible text of a cell: the verdict, then the blockers (short names, `=` for
/// redundant, `?` for none found).
fn cell_html(c: &Cell, attribution: bool) -> String {
    match c.result {
        Verdict::Allowed => "<span class=\"v\">ALLOW</span>".to_string(),
        Verdict::Skipped => "<span class=\"v\">SKIP</span>".to_string(),
        Verdict::Info => esc(&super::one_line_max(&c.detail, 24)),
        Verdict::Blocked => {
            let layers = if c.blocker.is_empty() {
                if attribution { "?" } else { "" }.to_string()
            } else {
                let short: Vec<&str> = c.blocker.iter().map(|b| short_name(b)).collect();
                format!("{}{}", if c.redundant { "=" } else { "" }, short.join("+"))
            };
            format!(
                "<span class=\"v\">BLOCK</span><span class=\"b\">{}</span>",
                esc(&layers)
            )
        }
    }
}

/// How often each layer explains a block of one profile.
#[derive(Default)]
struct LayerCount {
    /// The only blocker.
    alone: usize,
    /// One of several, each of whose removal lets the op through.
    joint: usize,
    /// One of several, each blocking the op on its own.
    redundant: usize,
    /// The ops, for the tooltip.
    ops: Vec<String>,
}

/// The attribution summary of `profile`: per blocker, its counts; plus the unexplained ops.
fn attribution_summary(m: &Matrix, profile: Profile) -> String {
    let mut by: BTreeMap<(u8, String), LayerCount> = BTreeMap::new();
    let mut unexplained = Vec::new();
    let mut blocked = 0;
    for o in &m.ops {
        let Some(c) = cell(o, profile) else { continue };
        if c.result != Verdict::Blocked {
            continue;
        }
        blocked += 1;
        if c.blocker.is_empty() {
            unexplained.push(o.id.clone());
        }
        for b in &c.blocker {
            let order = Layer::from_name(b).map(|l| l as u8).unwrap_or(u8::MAX);
            let e = by.entry((order, b.clone())).or_default();
            if c.blocker.len() == 1 {
                e.alone += 1;
            } else if c.redundant {
                e.redundant += 1;
            } else {
                e.joint += 1;
            }
            e.ops.push(o.id.clone());
        }
    }
    let mut h = String::new();
    let _ = writeln!(
        h,
        "<h2>Attribution under {p}</h2>\n<p>{blocked} ops blocked under <code>{p}</code>. \
         A layer blocks an op <em>alone</em> when removing it lets the op through and no other \
         layer is needed; <em>jointly</em> when removing any one of several does; \
         <em>redundantly</em> when no single removal does (each blocks it on its own).</p>",
        p = esc(profile.name())
    );
    if by.is_empty() && unexplained.is_empty() {
        let why = if m.host.attribution {
            "nothing blocked"
        } else {
            "attribution off (--no-attribution)"
        };
        let _ = writeln!(h, "<p>No blocker measured: {why}.</p>");
        return h;
    }
    let _ = writeln!(
        h,
        "<table class=\"attr\" data-attribution=\"{}\">\n<thead><tr><th>layer</th><th>alone</th>\
         <th>jointly</th><th>redundantly</th><th>ops</th></tr></thead>\n<tbody>",
        esc(profile.name())
    );
    for ((_, name), c) in &by {
        let _ = writeln!(
            h,
            "<tr data-layer=\"{n}\"><td>{n}</td><td>{}</td><td>{}</td><td>{}</td><td title=\"{}\">{}</td></tr>",
            c.alone,
            c.joint,
            c.redundant,
            esc(&c.ops.join("\n")),
            c.ops.len(),
            n = esc(name)
        );
    }
    if !unexplained.is_empty() {
        let _ = writeln!(
            h,
            "<tr data-layer=\"?\"><td>? (no layer explains it)</td><td></td><td></td><td></td>\
             <td title=\"{}\">{}</td></tr>",
            esc(&unexplained.join("\n")),
            unexplained.len()
        );
    }
    h.push_str("</tbody>\n</table>\n");
    h
}

/// The whole page.
pub(crate) fn render(m: &Matrix) -> String {
    let title = format!("agentcage matrix: kernel {}", m.host.kernel);
    let mut h = head(&title, STYLE, SELF_CHECK);
    h.push_str("<body>\n<h1>agentcage isolation matrix</h1>\n<ul class=\"facts\">\n");
    for line in m.header_lines() {
        let _ = writeln!(h, "<li>{}</li>", esc(&line));
    }
    let _ = writeln!(
        h,
        "</ul>\n<p class=\"summary\">{}</p>",
        esc(&m.summary_line())
    );

    // Legend.
    h.push_str("<div class=\"legend\">\n");
    for (class, text) in [
        ("r-allowed", "ALLOW: the op got through"),
        (
            "r-blocked",
            "BLOCK: the layers shown explain it (removing one lets it through)",
        ),
        (
            "r-redundant",
            "BLOCK =a+b: redundant, each layer blocks it on its own",
        ),
        (
            "r-host",
            "BLOCK host: the host refuses it even without a sandbox",
        ),
        ("r-unexplained", "BLOCK ?: no layer removal explains it"),
        ("r-skipped", "SKIP: not tried here (hover for why)"),
        ("r-info", "info: a value, not pass/fail"),
        ("r-missing", "no row from this profile"),
    ] {
        let _ = writeln!(
            h,
            "<span><span class=\"key {class}\"></span>{}</span>",
            esc(text)
        );
    }
    h.push_str("</div>\n");
    // The short layer names the cells use, in the launcher's layer order.
    let mut used: Vec<&str> = m
        .ops
        .iter()
        .flat_map(|o| o.results.iter().flat_map(|(_, c)| c.blocker.iter()))
        .map(String::as_str)
        .filter(|b| short_name(b) != *b)
        .collect();
    used.sort_by_key(|n| Layer::from_name(n).map(|l| l as u8).unwrap_or(u8::MAX));
    used.dedup();
    if !used.is_empty() {
        let names: Vec<String> = used
            .iter()
            .map(|n| format!("{} = {n}", short_name(n)))
            .collect();
        let _ = writeln!(
            h,
            "<p class=\"names\">Layers in the cells: {}.</p>",
            esc(&names.join(", "))
        );
    }

    // The heatmap: one cell per op and profile.
    let _ = writeln!(
        h,
        "<table class=\"heat\" id=\"heatmap\" data-ops=\"{}\" data-profiles=\"{}\" data-expect-cells=\"{}\">",
        m.ops.len(),
        m.profiles.len(),
        m.ops.len() * m.profiles.len()
    );
    h.push_str("<thead><tr><th>op</th>");
    for p in &m.profiles {
        let _ = write!(h, "<th>{}</th>", esc(p.name()));
    }
    h.push_str("</tr></thead>\n<tbody>\n");
    for cat in Category::ALL {
        let ops: Vec<&OpRow> = m.ops.iter().filter(|o| o.category == cat).collect();
        if ops.is_empty() {
            continue;
        }
        let _ = writeln!(
            h,
            "<tr class=\"cat\"><th colspan=\"{}\">{}</th></tr>",
            m.profiles.len() + 1,
            esc(cat.as_str())
        );
        for o in ops {
            let _ = write!(
                h,
                "<tr><th class=\"op\"><code>{}</code><span class=\"title\">{}</span></th>",
                esc(&o.id),
                esc(&o.title)
            );
            for &p in &m.profiles {
                match cell(o, p) {
                    Some(c) => {
                        let _ = write!(
                            h,
                            "<td class=\"{}\" data-op=\"{}\" data-profile=\"{}\" data-result=\"{}\" \
                             data-blocker=\"{}\" title=\"{}\">{}</td>",
                            class(c, m.host.attribution),
                            esc(&o.id),
                            esc(p.name()),
                            c.result,
                            esc(&c.blocker.join(" ")),
                            esc(&tooltip(o, p.name(), c)),
                            cell_html(c, m.host.attribution)
                        );
                    }
                    None => {
                        let _ = write!(
                            h,
                            "<td class=\"r-missing\" data-op=\"{}\" data-profile=\"{}\" data-result=\"MISSING\" \
                             title=\"{}\">-</td>",
                            esc(&o.id),
                            esc(p.name()),
                            esc(&format!("{}: no row under {}", o.id, p.name()))
                        );
                    }
                }
            }
            h.push_str("</tr>\n");
        }
    }
    h.push_str("</tbody>\n</table>\n");

    // Attribution of the strongest profile shown.
    if let Some(&strongest) = m.profiles.last() {
        h.push_str(&attribution_summary(m, strongest));
    }

    // Runs that gave no evidence (expected setup failures included), as in the text report.
    let failed = m.failed_runs();
    if !failed.is_empty() {
        h.push_str("<h2>Runs that gave no evidence</h2>\n<ul class=\"runs\">\n");
        for f in failed {
            let _ = writeln!(h, "<li>{}</li>", esc(&f));
        }
        h.push_str("</ul>\n");
    }
    h.push_str(
        "<p>Hover a cell for the errno, the probe's detail, the blockers and the notes. \
         Generated by <code>agentcage matrix --format html</code>.</p>\n",
    );
    let _ = write!(
        h,
        "<p id=\"selfcheck\" data-selfcheck=\"pending\">page self-check: needs JavaScript</p>\n\
         <script>{SELF_CHECK}</script>\n</body>\n</html>\n"
    );
    h
}

#[cfg(test)]
mod tests {
    use super::super::tests::{snapshot, synthetic};
    use super::*;

    /// Every `<script>` element's text, in order.
    fn scripts(page: &str) -> Vec<&str> {
        let mut out = Vec::new();
        let mut rest = page;
        while let Some(i) = rest.find("<script") {
            let after = &rest[i..];
            let open_end = after.find('>').expect("script tag closes");
            let body = &after[open_end + 1..];
            let close = body.find("</script>").expect("script element ends");
            out.push(&body[..close]);
            rest = &body[close..];
        }
        out
    }

    #[test]
    fn escapes_everything() {
        assert_eq!(
            esc("<script>a&b</script> \"x\" 'y'\u{7}\n"),
            "&lt;script&gt;a&amp;b&lt;/script&gt; &quot;x&quot; &#39;y&#39; \n"
        );
    }

    #[test]
    fn one_cell_per_op_and_profile() {
        let mut m = synthetic();
        // A profile without a row for one op still gets its cell (marked missing).
        m.ops[0].results.pop();
        let page = m.to_html();
        let want = m.ops.len() * m.profiles.len();
        assert_eq!(page.matches(" data-op=\"").count(), want);
        assert!(page.contains(&format!("data-expect-cells=\"{want}\"")));
        assert_eq!(page.matches("data-result=\"MISSING\"").count(), 1);
        // Colours and blockers: a redundant block, a host block, the attribution table.
        assert!(page.contains(
            "class=\"r-redundant\" data-op=\"kernel.mount.tmpfs\" data-profile=\"full\""
        ));
        assert!(page.contains("=ll+caps+scmp"));
        assert!(page.contains("class=\"r-host\" data-op=\"fs.read.shadow\""));
        assert_eq!(m.to_html(), page, "deterministic");
        // Under full, landlock blocks fs.write.root alone and kernel.mount.tmpfs redundantly.
        let page = synthetic().to_html();
        assert!(page.contains(
            "<tr data-layer=\"landlock\"><td>landlock</td><td>1</td><td>0</td><td>1</td>"
        ));
    }

    #[test]
    fn self_contained_and_csp_matches() {
        let page = synthetic().to_html();
        assert!(!page.contains("http://") && !page.contains("https://"));
        assert!(!page.contains("src=") && !page.contains("href=") && !page.contains("url("));
        let s = scripts(&page);
        assert_eq!(s, [SELF_CHECK], "one script, the self-check");
        assert!(page.contains(&format!("script-src {};", csp_hash(SELF_CHECK))));
        assert!(page.contains(&format!("style-src {};", csp_hash(STYLE))));
        assert!(page.contains(&format!("<style>{STYLE}</style>")));
        // The known digest of an empty input, so the encoding is the one browsers expect.
        assert_eq!(
            csp_hash(""),
            "'sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU='"
        );
    }

    #[test]
    fn hostile_fields_cannot_inject() {
        let evil = "<script>document.title='PWNED'</script><img src=x onerror=alert(1)>\"'&";
        let mut m = synthetic();
        m.host.kernel = evil.to_string();
        m.host.agentcage = evil.to_string();
        m.ops[0].id = format!("fs.evil\"><script>alert(1)</script>{evil}");
        m.ops[0].title = evil.to_string();
        for (_, c) in &mut m.ops[1].results {
            c.detail = evil.to_string();
            c.errno = Some(evil.to_string());
            c.blocker = vec![evil.to_string()];
            c.notes = vec![evil.to_string()];
        }
        m.ops[2].category = Category::Info;
        m.ops[2].results[0].1.result = Verdict::Info;
        m.ops[2].results[0].1.detail = evil.to_string();
        m.runs.push(super::super::RunRecord {
            profile: Profile::Full,
            without: vec![Layer::Seccomp],
            status: "failed",
            detail: evil.to_string(),
            rows: 0,
        });
        let page = m.to_html();
        assert_eq!(scripts(&page), [SELF_CHECK], "no injected script element");
        assert!(!page.contains("<img"), "no injected element");
        assert!(
            !page.contains("\"><script") && !page.contains("\"><img"),
            "no attribute broken out of"
        );
        assert!(page.contains("&lt;script&gt;document.title=&#39;PWNED&#39;&lt;/script&gt;"));
    }

    #[test]
    fn json_round_trip() {
        let m = synthetic();
        let back = Matrix::from_json(&m.to_json()).expect("reads its own JSON");
        assert_eq!(back, m);
        assert_eq!(back.to_html(), m.to_html());
        for (bad, says) in [
            ("", "not a matrix"),
            ("{\"host\": 1}", "not a matrix"),
            ("[]", "not a matrix"),
        ] {
            let e = Matrix::from_json(bad).expect_err(bad);
            assert!(e.contains(says), "{bad}: {e}");
        }
        let mut v: serde_json::Value = serde_json::from_str(&m.to_json()).expect("json");
        v["profiles"] = serde_json::json!([]);
        assert!(Matrix::from_json(&v.to_string())
            .expect_err("no profile")
            .contains("no profile"));
        v["profiles"] = serde_json::json!(["full"]);
        assert!(Matrix::from_json(&v.to_string())
            .expect_err("cells under unlisted profiles")
            .contains("does not list"));
        let mut v: serde_json::Value = serde_json::from_str(&m.to_json()).expect("json");
        v["runs"][0]["status"] = "weird".into();
        assert!(Matrix::from_json(&v.to_string())
            .expect_err("status")
            .contains("weird"));
    }

    #[test]
    fn html_snapshot() {
        snapshot("matrix.html", &synthetic().to_html());
    }
}
