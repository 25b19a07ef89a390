//! Policy -> TOML (`agentcage policy show`): [`to_toml`] writes what [`super::load`] reads
//! back into the same policy.

use std::path::{Path, PathBuf};

use agentcage::{ExtraBind, Layer, NetMode, Policy};

use super::UsageError;

fn path_str(p: &Path) -> Result<String, UsageError> {
    p.to_str().map(str::to_string).ok_or_else(|| {
        UsageError::new(format!(
            "{}: not UTF-8, cannot be written to a policy file",
            p.display()
        ))
    })
}

fn size_value(
    v: Option<u64>,
    parse: fn(&str) -> Result<Option<u64>, agentcage::limits::value::ParseError>,
) -> toml::Value {
    match v {
        None => toml::Value::String("max".into()),
        Some(b) => {
            let human = agentcage::limits::value::format_size(b);
            if parse(&human).ok() == Some(Some(b)) {
                toml::Value::String(human)
            } else {
                toml::Value::Integer(i64::try_from(b).unwrap_or(i64::MAX))
            }
        }
    }
}

fn count_value(v: Option<u64>) -> toml::Value {
    match v.and_then(|n| i64::try_from(n).ok()) {
        Some(n) => toml::Value::Integer(n),
        None => toml::Value::String(v.map_or("max".into(), |n| n.to_string())),
    }
}

pub(super) type FloatParser = fn(&str) -> Result<Option<f64>, agentcage::limits::value::ParseError>;

/// A timeout as people write it (`2h`, `90s`, `1.5s`), when that reads back as exactly `v`;
/// else as [`float_value`] does.
fn duration_value(v: Option<f64>) -> toml::Value {
    use agentcage::limits::value::parse_timeout;
    if let Some(x) = v {
        let whole = x.fract() == 0.0 && (1.0..1e15).contains(&x);
        let human = if whole {
            let n = x as u64;
            if n.is_multiple_of(3600) {
                format!("{}h", n / 3600)
            } else if n.is_multiple_of(60) {
                format!("{}m", n / 60)
            } else {
                format!("{n}s")
            }
        } else {
            format!("{x}s")
        };
        if parse_timeout(&human).ok() == Some(Some(x)) {
            return toml::Value::String(human);
        }
    }
    float_value(v, agentcage::limits::value::parse_timeout)
}

/// A float limit written so that `parse` reads it back as exactly `v`: a TOML float when its
/// shortest form parses back (the file reader hands floats to `parse` in that form), else the
/// shortest fixed-point string that does.
pub(super) fn float_value(v: Option<f64>, parse: FloatParser) -> toml::Value {
    let Some(x) = v else {
        return toml::Value::String("max".into());
    };
    if parse(&x.to_string()).ok() == Some(Some(x)) {
        return toml::Value::Float(x);
    }
    (0..=12)
        .map(|digits| format!("{x:.digits$}"))
        .find(|s| parse(s).ok() == Some(Some(x)))
        .map_or(toml::Value::Float(x), toml::Value::String)
}

/// The policy as a TOML table with the keys of a policy file: every key explicit, so reading
/// it back (on this host) gives the same policy.
pub fn to_table(
    p: &Policy,
    protect: &[PathBuf],
    unprotect: &[PathBuf],
) -> Result<toml::Table, UsageError> {
    use toml::Value as V;
    let mut t = toml::Table::new();
    let strs = |v: Vec<String>| V::Array(v.into_iter().map(V::String).collect());
    t.insert("profile".into(), V::String(p.profile.name().into()));
    t.insert("workspace".into(), V::String(path_str(&p.workspace)?));
    // The binds of `protect` entries are written as `protect` (relative to the workspace when
    // inside it), which reads back the same; `ro` entries stay `ro`, defaults are implied.
    let protected = |b: &ExtraBind| !b.writable && protect.contains(&b.path);
    let rel = |path: &Path| -> Result<String, UsageError> {
        path_str(path.strip_prefix(&p.workspace).unwrap_or(path))
    };
    for writable in [false, true] {
        let list = p
            .binds
            .iter()
            .filter(|b| b.writable == writable && !protected(b))
            .map(|b| path_str(&b.path))
            .collect::<Result<Vec<_>, _>>()?;
        t.insert(if writable { "rw" } else { "ro" }.into(), strs(list));
    }
    let list = p
        .binds
        .iter()
        .filter(|b| protected(b))
        .map(|b| rel(&b.path))
        .collect::<Result<Vec<_>, _>>()?;
    t.insert("protect".into(), strs(list));
    let list = unprotect
        .iter()
        .map(|u| rel(u))
        .collect::<Result<Vec<_>, _>>()?;
    t.insert("unprotect".into(), strs(list));
    t.insert(
        "read_only_workspace".into(),
        V::Boolean(p.controls.read_only),
    );
    for (key, list) in [("mask", &p.controls.masks), ("tmpfs", &p.controls.tmpfs)] {
        let list = list.iter().map(|m| rel(m)).collect::<Result<Vec<_>, _>>()?;
        t.insert(key.into(), strs(list));
    }
    let list = p
        .controls
        .binds
        .iter()
        .map(|(src, dst, w)| {
            Ok(format!(
                "{}:{}:{}",
                path_str(src)?,
                path_str(dst)?,
                if *w { "rw" } else { "ro" }
            ))
        })
        .collect::<Result<Vec<_>, UsageError>>()?;
    t.insert("bind".into(), strs(list));
    if let Some(c) = &p.cwd {
        t.insert("chdir".into(), V::String(path_str(c)?));
    }
    t.insert(
        "home".into(),
        V::String(match &p.controls.home {
            Some(h) => path_str(h)?,
            None => "tmpfs".into(),
        }),
    );
    t.insert("pass_env".into(), strs(p.pass_env.clone()));
    for (k, v) in [
        ("uid", p.uid),
        ("gid", p.gid),
        ("host_uid", p.host_uid),
        ("host_gid", p.host_gid),
    ] {
        t.insert(k.into(), V::Integer(i64::from(v)));
    }
    t.insert(
        "keep_fd".into(),
        V::Array(
            p.keep_fds
                .iter()
                .map(|f| V::Integer(i64::from(*f)))
                .collect(),
        ),
    );
    t.insert("best_effort".into(), V::Boolean(p.best_effort));
    t.insert("net".into(), V::String(p.net.name().into()));
    if p.net == NetMode::Allow {
        let mut nt = toml::Table::new();
        nt.insert("allow".into(), strs(p.egress.allow.clone()));
        if let Some(l) = &p.egress.log {
            nt.insert("log".into(), V::String(l.display().to_string()));
        }
        nt.insert(
            "resolve".into(),
            strs(
                p.egress
                    .resolve
                    .iter()
                    .map(|(n, ip)| format!("{n}={ip}"))
                    .collect(),
            ),
        );
        if let Some(d) = p.egress.dns {
            nt.insert("dns".into(), V::String(d.to_string()));
        }
        t.insert("network".into(), V::Table(nt));
    }
    t.insert(
        "seccomp_spec_mitigation".into(),
        V::Boolean(p.seccomp.spec_mitigation),
    );
    let l = &p.limits;
    let any = l.pids.is_some()
        || l.memory.is_some()
        || l.cpus.is_some()
        || l.timeout.is_some()
        || l.nofile.is_some()
        || l.fsize.is_some();
    let base = p.profile.layers();
    let mut without: Vec<String> = base
        .iter()
        .filter(|l| !p.layers.has(*l))
        .map(|l| l.name().to_string())
        .collect();
    // A [limits] table turns the limits layer on in any profile: say when it stays off.
    if any && !base.has(Layer::Limits) && !p.layers.has(Layer::Limits) {
        without.push(Layer::Limits.name().to_string());
    }
    t.insert("without".into(), strs(without));
    let mut env = toml::Table::new();
    for (k, v) in &p.env {
        env.insert(k.clone(), V::String(v.clone()));
    }
    t.insert("env".into(), V::Table(env));
    if p.layers.has(Layer::Limits) || any {
        use agentcage::limits::value as u;
        let mut lt = toml::Table::new();
        lt.insert("pids".into(), count_value(l.pids));
        lt.insert("memory".into(), size_value(l.memory, u::parse_memory));
        lt.insert("cpus".into(), float_value(l.cpus, u::parse_cpus));
        lt.insert("timeout".into(), duration_value(l.timeout));
        lt.insert("nofile".into(), count_value(l.nofile));
        lt.insert("fsize".into(), size_value(l.fsize, u::parse_fsize));
        t.insert("limits".into(), V::Table(lt));
    }
    let ports = |v: &[u16]| V::Array(v.iter().map(|x| V::Integer(i64::from(*x))).collect());
    let mut ll = toml::Table::new();
    ll.insert("tcp_bind".into(), ports(&p.landlock.tcp_bind));
    ll.insert("tcp_connect".into(), ports(&p.landlock.tcp_connect));
    t.insert("landlock".into(), V::Table(ll));
    Ok(t)
}

/// The policy as the text of a policy file (see [`to_table`]).
pub fn to_toml(
    p: &Policy,
    protect: &[PathBuf],
    unprotect: &[PathBuf],
) -> Result<String, UsageError> {
    toml::to_string(&to_table(p, protect, unprotect)?)
        .map_err(|e| UsageError::new(format!("write TOML: {e}")))
}
