//! Unit tests of the policy module.

use std::path::{Path, PathBuf};

use agentcage::{Layer, NetMode, Profile};

use super::file::{line_of, parse_doc, Src};
use super::protect::{expand_patterns, name_matches};
use super::write::{float_value, FloatParser};
use super::{build, load, to_toml, BindSetting, LimitSettings, Settings, UsageError};

#[test]
fn patterns_expand_without_following_symlinks() {
    let d = tmpdir("pat");
    for x in [
        ".git/modules/a/hooks",
        ".git/modules/a/modules/b/hooks",
        ".git/modules/c",
    ] {
        std::fs::create_dir_all(d.join(x)).unwrap();
    }
    std::fs::write(d.join(".git/modules/a/config"), "").unwrap();
    // A symlinked directory is not walked into: nothing below it matches.
    std::os::unix::fs::symlink(d.join(".git/modules/a"), d.join(".git/modules/l")).unwrap();
    let b = |p: &str, optional: bool| BindSetting {
        path: d.join(p),
        writable: false,
        optional,
        origin: "t".into(),
    };
    let out = expand_patterns(&[
        b(".git/modules/**/hooks", false),
        b(".git/modules/*/config", true),
    ])
    .unwrap();
    let got: Vec<PathBuf> = out.iter().map(|b| b.path.clone()).collect();
    assert_eq!(
        got,
        vec![
            d.join(".git/modules/a/hooks"),
            d.join(".git/modules/a/modules/b/hooks"),
            d.join(".git/modules/a/config"),
        ]
    );
    assert!(name_matches(b"*.toml", b"a.toml") && !name_matches(b"*.toml", b"a.tom"));
    assert!(name_matches(b"h*k*s", b"hooks") && name_matches(b"*", b".git"));
    // Nothing matches: dropped when optional, an error otherwise.
    assert!(expand_patterns(&[b("nope/**/hooks", true)])
        .unwrap()
        .is_empty());
    assert!(expand_patterns(&[b("nope/**/hooks", false)]).is_err());
    let _ = std::fs::remove_dir_all(&d);
}

fn tmpdir(tag: &str) -> PathBuf {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let d = std::env::temp_dir().join(format!("agentcage-pf-{tag}-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d.canonicalize().unwrap()
}

fn parse(text: &str) -> Result<Settings, UsageError> {
    let src = Src {
        name: "p.toml".into(),
        text,
        dir: PathBuf::from("/base"),
    };
    parse_doc(&src, &mut Vec::new())
}

#[test]
fn line_numbers() {
    assert_eq!(line_of("a\nb\nc", 0), 1);
    assert_eq!(line_of("a\nb\nc", 2), 2);
    assert_eq!(line_of("a\nb\nc", 4), 3);
    assert_eq!(line_of("a", 99), 1);
}

#[test]
fn unknown_key_has_line() {
    let e = parse("profile = \"full\"\n\nbogus = 1\n").unwrap_err();
    assert!(e.message.starts_with("p.toml:3: "), "{}", e.message);
    assert!(e.message.contains("bogus"), "{}", e.message);
}

#[test]
fn unknown_key_in_section_has_line() {
    let e = parse("[limits]\npids = 5\nmemroy = \"1G\"\n").unwrap_err();
    assert!(e.message.starts_with("p.toml:3: "), "{}", e.message);
}

#[test]
fn wrong_types_have_lines() {
    for (text, line) in [
        ("uid = \"zero\"\n", 1),
        ("\nbest_effort = 1\n", 2),
        ("ro = [\"/a\",\n  3]\n", 2),
        ("[env]\nA = \"x\"\nB = 2\n", 3),
        ("keep_fd = [-1]\n", 1),
        ("\n\n[landlock]\ntcp_bind = [70000]\n", 4),
        ("ro = [{ path = \"/a\", optionl = true }]\n", 1),
    ] {
        let e = parse(text).unwrap_err();
        assert!(
            e.message.starts_with(&format!("p.toml:{line}: ")),
            "{text:?}: {}",
            e.message
        );
    }
}

#[test]
fn bad_values_have_lines() {
    for (text, line, needle) in [
        ("profile = \"fullest\"\n", 1, "unknown profile"),
        ("\nnet = \"bridge\"\n", 2, "network mode"),
        ("[limits]\n\nmemory = \"12Q\"\n", 3, "memory"),
        ("[limits]\ncpus = -1\n", 2, ""),
        ("without = [\"nope\"]\n", 1, "unknown layer"),
        ("ro = [\"~bob/x\"]\n", 1, "~user"),
        ("syntax error\n", 1, ""),
    ] {
        let e = parse(text).unwrap_err();
        assert!(
            e.message.starts_with(&format!("p.toml:{line}: ")) && e.message.contains(needle),
            "{text:?}: {}",
            e.message
        );
        assert!(!e.message.contains('\n'), "one line: {:?}", e.message);
    }
}

#[test]
fn values_parse() {
    let s = parse(
        "profile = \"ns_only\"\nworkspace = \"ws\"\nro = [\"/abs\", { path = \"rel\", optional = true }]\n\
         rw = [\"~/x\"]\npass_env = [\"TERM\"]\nuid = 1000\nnet = \"host\"\nkeep_fd = [3, 4]\n\
         [env]\nB = \"1\"\nA = \"2\"\n[limits]\npids = 10\nmemory = \"1G\"\ncpus = 1.5\ntimeout = \"2m\"\nnofile = \"max\"\n\
         [landlock]\ntcp_connect = [443]\n",
    )
    .unwrap();
    assert_eq!(s.profile, Some(Profile::NsOnly));
    assert_eq!(s.workspace.as_ref().unwrap().0, PathBuf::from("/base/ws"));
    assert_eq!(s.binds[0].path, PathBuf::from("/abs"));
    assert!(!s.binds[0].optional);
    assert_eq!(s.binds[1].path, PathBuf::from("/base/rel"));
    assert!(s.binds[1].optional);
    assert!(s.binds[2].writable);
    if let Some(h) = std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        assert_eq!(s.binds[2].path, PathBuf::from(h).join("x"));
    }
    assert_eq!(
        s.env,
        vec![("B".into(), "1".into()), ("A".into(), "2".into())]
    );
    assert_eq!(s.uid, Some(1000));
    assert_eq!(s.net, Some(NetMode::Host));
    assert_eq!(s.keep_fd, vec![3, 4]);
    assert_eq!(s.limits.pids, Some(Some(10)));
    assert_eq!(s.limits.memory, Some(Some(1 << 30)));
    assert_eq!(s.limits.cpus, Some(Some(1.5)));
    assert_eq!(s.limits.timeout, Some(Some(120.0)));
    assert_eq!(s.limits.nofile, Some(None));
    assert_eq!(s.limits.fsize, None);
    assert_eq!(s.tcp_connect, vec![443]);
}

#[test]
fn merge_rules() {
    let a = Settings {
        profile: Some(Profile::Landlock),
        uid: Some(1),
        env: vec![("A".into(), "1".into()), ("B".into(), "1".into())],
        pass_env: vec!["X".into()],
        limits: LimitSettings {
            pids: Some(Some(5)),
            memory: Some(Some(1 << 30)),
            ..Default::default()
        },
        ..Default::default()
    };
    let b = Settings {
        uid: Some(2),
        env: vec![("A".into(), "2".into())],
        pass_env: vec!["Y".into()],
        limits: LimitSettings {
            pids: Some(None),
            ..Default::default()
        },
        ..Default::default()
    };
    let m = a.merge(b);
    assert_eq!(m.profile, Some(Profile::Landlock));
    assert_eq!(m.uid, Some(2));
    assert_eq!(
        m.env,
        vec![("B".into(), "1".into()), ("A".into(), "2".into())]
    );
    assert_eq!(m.pass_env, vec!["X".to_string(), "Y".to_string()]);
    assert_eq!(m.limits.pids, Some(None));
    assert_eq!(m.limits.memory, Some(Some(1 << 30)));
}

#[test]
fn extends_profile_and_files_and_cycles() {
    let d = tmpdir("ext");
    std::fs::write(
        d.join("base.toml"),
        "extends = \"ns-only\"\nuid = 7\nro = [\"sub\"]\n",
    )
    .unwrap();
    std::fs::create_dir_all(d.join("sub")).unwrap();
    std::fs::create_dir_all(d.join("child")).unwrap();
    std::fs::write(
        d.join("child/c.toml"),
        "extends = \"../base.toml\"\ngid = 8\n",
    )
    .unwrap();
    let s = load(&d.join("child/c.toml"), Path::new("/")).unwrap();
    assert_eq!(s.profile, Some(Profile::NsOnly));
    assert_eq!((s.uid, s.gid), (Some(7), Some(8)));
    // `sub` is relative to base.toml, not to c.toml.
    assert_eq!(s.binds[0].path, d.join("sub"));

    std::fs::write(d.join("x.toml"), "extends = \"y.toml\"\n").unwrap();
    std::fs::write(d.join("y.toml"), "\nextends = \"x.toml\"\n").unwrap();
    let e = load(&d.join("x.toml"), Path::new("/")).unwrap_err();
    assert!(e.message.contains("extends cycle"), "{}", e.message);
    assert!(e.message.contains("y.toml:2: "), "{}", e.message);

    std::fs::write(d.join("self.toml"), "extends = \"./self.toml\"\n").unwrap();
    let e = load(&d.join("self.toml"), Path::new("/")).unwrap_err();
    assert!(e.message.contains("extends cycle"), "{}", e.message);

    std::fs::write(d.join("missing.toml"), "extends = \"nothere.toml\"\n").unwrap();
    let e = load(&d.join("missing.toml"), Path::new("/")).unwrap_err();
    assert!(e.message.contains("missing.toml:1: "), "{}", e.message);
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn build_and_round_trip() {
    let d = tmpdir("rt");
    std::fs::create_dir_all(d.join("ws")).unwrap();
    std::fs::create_dir_all(d.join("a/b")).unwrap();
    for (i, text) in [
        "workspace = \"ws\"\n",
        "profile = \"ns-only\"\nworkspace = \"ws\"\n",
        "profile = \"landlock\"\nworkspace = \"ws\"\n[limits]\nmemory = \"3G\"\ntimeout = 1.5\n",
        "workspace = \"ws\"\nwithout = [\"limits\", \"seccomp\"]\nrw = [\"a\"]\nro = [\"a/b\", { path = \"nope\", optional = true }]\n\
         [env]\nZ = \"1\"\nA = \"q\\\"uote\"\n[limits]\ncpus = 0.3\nfsize = 1234567\n[landlock]\ntcp_bind = [8080]\n",
        "profile = \"none\"\nworkspace = \"ws\"\nnet = \"host\"\nbest_effort = true\n[limits]\npids = \"max\"\n",
        "profile = \"ns-only\"\nworkspace = \"ws\"\nwithout = [\"limits\"]\n[limits]\nmemory = \"1G\"\n",
        "profile = \"landlock\"\nworkspace = \"ws\"\nwithout = [\"limits\", \"pid-ns\"]\n[limits]\npids = \"max\"\n",
    ]
    .iter()
    .enumerate()
    {
        let f = d.join(format!("p{i}.toml"));
        std::fs::write(&f, text).unwrap();
        let r = build(&load(&f, Path::new("/")).unwrap(), Path::new("/")).unwrap();
        let out = to_toml(&r.policy, &r.protect, &r.unprotect).unwrap();
        let g = d.join(format!("q{i}.toml"));
        std::fs::write(&g, &out).unwrap();
        let back = build(&load(&g, Path::new("/")).unwrap(), Path::new("/")).unwrap();
        assert_eq!(r.policy, back.policy, "{text}\n---\n{out}");
        assert_eq!(to_toml(&back.policy, &back.protect, &back.unprotect).unwrap(), out);
    }
    // The optional entry was skipped, the nested ro sorts after its rw parent.
    let r = build(
        &load(&d.join("p3.toml"), Path::new("/")).unwrap(),
        Path::new("/"),
    )
    .unwrap();
    assert_eq!(r.skipped.len(), 1);
    assert_eq!(r.policy.binds[0].path, d.join("a"));
    assert!(!r.policy.layers.has(Layer::Limits));
    assert!(!r.policy.layers.has(Layer::Seccomp));
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn default_protected_paths() {
    let d = tmpdir("prot");
    let ws = d.join("ws");
    for x in [
        ".git/hooks",
        ".git/modules/s/hooks",
        ".git/modules/s/objects/hooks",
        ".git/modules/s/modules/n/info",
        ".git/modules/a/b/hooks",
        ".git/modules/a/hooks",
        ".vscode",
        "docs",
        "rw/.git/hooks",
    ] {
        std::fs::create_dir_all(ws.join(x)).unwrap();
    }
    // Submodules s, s/modules/n (nested) and a/b (a name with a slash) have a HEAD; `a`
    // is only a name component, and nothing below `objects` counts.
    for f in [
        ".git/config",
        ".envrc",
        "docs/x",
        ".git/modules/s/HEAD",
        ".git/modules/s/modules/n/HEAD",
        ".git/modules/a/b/HEAD",
    ] {
        std::fs::write(ws.join(f), "x").unwrap();
    }
    let f = d.join("p.toml");
    std::fs::write(
        &f,
        "workspace = \"ws\"\nrw = [\"ws/rw\"]\nprotect = [\"docs/x\"]\nunprotect = [\".vscode\"]\n",
    )
    .unwrap();
    let r = build(&load(&f, Path::new("/")).unwrap(), Path::new("/")).unwrap();
    let want: Vec<PathBuf> = [
        ".envrc",
        ".git/config",
        ".git/hooks",
        ".git/modules/a/b/hooks",
        ".git/modules/s/hooks",
        ".git/modules/s/modules/n/info",
        "docs/x",
        "rw/.git/hooks",
    ]
    .iter()
    .map(|x| ws.join(x))
    .collect();
    assert_eq!(r.protected, want);
    assert!(r.protect_missing.contains(&ws.join(".claude")));
    assert!(r.protect_missing.contains(&ws.join("rw/.envrc")));
    assert!(!r.protect_missing.contains(&ws.join(".vscode")));
    // `policy show` writes them as `protect` and `unprotect`, which read back the same.
    let out = to_toml(&r.policy, &r.protect, &r.unprotect).unwrap();
    assert!(out.contains("\"docs/x\""), "{out}");
    assert!(out.contains("unprotect = [\".vscode\"]"), "{out}");
    let g = d.join("q.toml");
    std::fs::write(&g, &out).unwrap();
    let back = build(&load(&g, Path::new("/")).unwrap(), Path::new("/")).unwrap();
    assert_eq!(r.policy, back.policy, "{out}");
    // Errors: `..`, an `unprotect` of nothing, a missing literal `protect`, and `protect`
    // without a mount namespace.
    for (text, msg) in [
        ("protect = [\"../x\"]\n", "`..` is not allowed"),
        ("unprotect = [\".vscod\"]\n", "not a protected path"),
        ("protect = [\"docs/nope\"]\n", "cannot be protected"),
        (
            "profile = \"none\"\nprotect = [\"docs/x\"]\n",
            "need a mount namespace",
        ),
    ] {
        std::fs::write(&f, format!("workspace = \"ws\"\n{text}")).unwrap();
        let e = load(&f, Path::new("/"))
            .and_then(|s| build(&s, Path::new("/")))
            .unwrap_err();
        assert!(e.message.contains(msg), "{text}: {}", e.message);
    }
    // An expanded path can be unprotected alone.
    std::fs::write(
        &f,
        "workspace = \"ws\"\nunprotect = [\".git/modules/s/hooks\"]\n",
    )
    .unwrap();
    let r = build(&load(&f, Path::new("/")).unwrap(), Path::new("/")).unwrap();
    assert!(!r.protected.contains(&ws.join(".git/modules/s/hooks")));
    assert!(r.protected.contains(&ws.join(".git/hooks")));
    // No mount namespace: no defaults.
    std::fs::write(&f, "workspace = \"ws\"\nprofile = \"none\"\n").unwrap();
    let r = build(&load(&f, Path::new("/")).unwrap(), Path::new("/")).unwrap();
    assert!(r.protected.is_empty() && r.policy.binds.is_empty());
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn float_limits_round_trip() {
    use agentcage::limits::value as u;
    let back = |v: &toml::Value, parse: FloatParser| match v {
        toml::Value::Float(f) => parse(&f.to_string()).unwrap(),
        toml::Value::String(s) => parse(s).unwrap(),
        other => panic!("{other:?}"),
    };
    for s in [
        "1.1",
        "0.333",
        "2.55",
        "1.7s",
        "0.001",
        "123.456789",
        "100ms",
        "1d",
        "3.000000001",
    ] {
        let t = u::parse_timeout(s).unwrap();
        assert_eq!(
            back(&float_value(t, u::parse_timeout), u::parse_timeout),
            t,
            "timeout {s}"
        );
    }
    for s in ["1.1", "0.333", "2.55", "0.01", "64", "1.000000001"] {
        let c = u::parse_cpus(s).unwrap();
        assert_eq!(
            back(&float_value(c, u::parse_cpus), u::parse_cpus),
            c,
            "cpus {s}"
        );
    }
}

#[test]
fn build_missing_required_path() {
    let s = Settings {
        binds: vec![BindSetting {
            path: "/nonexistent/agentcage".into(),
            writable: false,
            optional: false,
            origin: "p.toml:4".into(),
        }],
        ..Default::default()
    };
    let e = build(&s, Path::new("/")).unwrap_err();
    assert!(
        e.message.starts_with("p.toml:4: ro /nonexistent/agentcage"),
        "{}",
        e.message
    );
}

#[test]
fn limits_enable_layer_outside_full() {
    let s = Settings {
        profile: Some(Profile::NsOnly),
        limits: LimitSettings {
            timeout: Some(Some(3.0)),
            ..Default::default()
        },
        ..Default::default()
    };
    let p = build(&s, Path::new("/")).unwrap().policy;
    assert!(p.layers.has(Layer::Limits));
    assert!(p.limits.no_core);
    assert_eq!(p.limits.timeout, Some(3.0));
}
