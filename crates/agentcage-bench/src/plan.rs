//! What gets launched: the contenders (launcher x `true` binary) and their exact argv.
//!
//! Every contender runs a `true` and exits; they differ only in the launcher around it:
//!
//! | launcher | argv |
//! | --- | --- |
//! | `exec` | `<true>` (a plain spawn: the floor) |
//! | agentcage profile P | `agentcage run --profile P --workspace <dir> -- <true>` |
//! | `full+egress` | `agentcage run --profile full --workspace <dir> --allow-host bench.invalid -- <true>` (issue #12: the start-up cost of `--net allow`; the rule is never used) |
//! | `full-nolimits` | `agentcage run --profile full --workspace <dir> --without limits -- <true>` (issue #19: what the run's cgroup costs) |
//! | `bwrap` | `bwrap --unshare-all --ro-bind /usr /usr <links> --proc /proc --dev /dev --tmpfs /tmp --bind <dir> <dir> -- <true>` |
//! | `unshare` | `unshare -Urnmpif <true>` |
//!
//! `<true>` is either the bench's static `true` (in `<dir>`, a private temp dir) or `/bin/true`.
//! `<dir>` is the agentcage workspace, bound read-write at its own path like any agent
//! workspace; bwrap gets the same directory with `--bind`, so both build the same mounts.
//! `<links>` re-creates `/bin /lib /lib64 /sbin` as this host has them: `--symlink usr/bin /bin`
//! on merged-/usr systems, `--ro-bind /bin /bin` where they are real directories.

use std::ffi::OsString;
use std::fmt;
use std::fs;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::{Deserialize, Serialize};

/// The launcher's profiles (one definition for the whole workspace).
pub use agentcage::Profile;

/// clap value parser for [`Profile`] (`ns_only` is accepted as an alias).
pub fn parse_profile(s: &str) -> Result<Profile, String> {
    Profile::from_name(s)
        .ok_or_else(|| format!("unknown profile {s:?} (expected none, ns-only, landlock or full)"))
}

/// The allow rule of the `full+egress` contender (a name under `.invalid`: never resolved,
/// never dialled; `true` makes no connection).
pub const EGRESS_RULE: &str = "bench.invalid";

/// Where the agentcage binary is inside namespaced profiles (the launcher contract).
pub const INNER_AGENTCAGE: &str = "/run/agentcage/agentcage";

/// Which launcher wraps the `true`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Launcher {
    /// No launcher: spawn the `true` directly.
    Exec,
    /// `agentcage run --profile P`.
    Agentcage(Profile),
    /// bubblewrap with the same namespaces.
    Bwrap,
    /// `unshare -Urnmpif` (util-linux).
    Unshare,
    /// `agentcage run --profile full --allow-host ...`: `full` with the egress engine.
    FullEgress,
    /// `agentcage run --profile full --without limits`: `full` without its cgroup.
    FullNoLimits,
}

impl Launcher {
    /// Short stable name (`exec`, `none`, `ns-only`, `landlock`, `full`, `bwrap`, `unshare`).
    pub fn name(self) -> &'static str {
        match self {
            Launcher::Exec => "exec",
            Launcher::Agentcage(p) => p.name(),
            Launcher::Bwrap => "bwrap",
            Launcher::Unshare => "unshare",
            Launcher::FullEgress => "full+egress",
            Launcher::FullNoLimits => "full-nolimits",
        }
    }
}

/// Which `true` runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TrueKind {
    /// The bench's static, libc-free `true`.
    Static,
    /// The host's `/bin/true` (dynamically linked, pays libc start-up).
    BinTrue,
}

impl TrueKind {
    /// Stable name.
    pub fn name(self) -> &'static str {
        match self {
            TrueKind::Static => "static",
            TrueKind::BinTrue => "bin-true",
        }
    }
}

/// One thing the startup rounds time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Contender {
    /// The launcher.
    pub launcher: Launcher,
    /// The `true` it starts.
    pub true_kind: TrueKind,
}

impl fmt::Display for Contender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.launcher.name(), self.true_kind.name())
    }
}

/// Paths every argv is built from.
#[derive(Debug, Clone)]
pub struct Paths {
    /// The agentcage binary (absolute).
    pub agentcage: PathBuf,
    /// The workspace directory holding the static `true`.
    pub dir: PathBuf,
    /// The static `true`, if this host has one.
    pub static_true: Option<PathBuf>,
    /// `/bin/true` (or wherever the host has it).
    pub bin_true: PathBuf,
    /// bwrap, if installed.
    pub bwrap: Option<PathBuf>,
    /// unshare, if installed.
    pub unshare: Option<PathBuf>,
}

impl Paths {
    /// The `true` binary of a kind, if available.
    pub fn true_path(&self, kind: TrueKind) -> Option<&Path> {
        match kind {
            TrueKind::Static => self.static_true.as_deref(),
            TrueKind::BinTrue => Some(&self.bin_true),
        }
    }
}

/// The argv of `c`, or `None` when its launcher or `true` is not available.
pub fn argv(c: Contender, p: &Paths) -> Option<Vec<OsString>> {
    let truth = p.true_path(c.true_kind)?.as_os_str().to_owned();
    Some(match c.launcher {
        Launcher::Exec => vec![truth],
        Launcher::Agentcage(profile) => {
            let mut v = agentcage_run(p, profile);
            v.push(truth);
            v
        }
        Launcher::Bwrap => {
            let mut v = vec![p.bwrap.as_ref()?.clone().into_os_string()];
            v.extend(bwrap_args(&p.dir));
            v.push("--".into());
            v.push(truth);
            v
        }
        Launcher::Unshare => vec![
            p.unshare.as_ref()?.clone().into_os_string(),
            "-Urnmpif".into(),
            truth,
        ],
        Launcher::FullEgress => {
            let mut v = agentcage_run(p, Profile::Full);
            // Before the `--`: one rule, so `--net allow` with its routes, listeners and engine.
            let dash = v.len() - 1;
            v.splice(dash..dash, ["--allow-host".into(), EGRESS_RULE.into()]);
            v.push(truth);
            v
        }
        Launcher::FullNoLimits => {
            let mut v = agentcage_run(p, Profile::Full);
            let dash = v.len() - 1;
            v.splice(dash..dash, ["--without".into(), "limits".into()]);
            v.push(truth);
            v
        }
    })
}

/// `agentcage run -q --profile P --workspace DIR --` (the command is appended by the caller).
/// Quiet: a warning written on every timed launch would be measured too (and floods the
/// terminal); the preflight run shows what a profile does not enforce.
pub fn agentcage_run(p: &Paths, profile: Profile) -> Vec<OsString> {
    let mut v: Vec<OsString> = vec![
        p.agentcage.clone().into_os_string(),
        "run".into(),
        "-q".into(),
        "--profile".into(),
        profile.name().into(),
    ];
    if profile == Profile::None {
        // As root, `none` is host root and needs the explicit confirmation.
        v.push("--allow-unsandboxed-root".into());
    }
    v.extend([
        "--workspace".into(),
        p.dir.clone().into_os_string(),
        "--".into(),
    ]);
    v
}

/// The argv of `bench-inner` under `profile`: `agentcage run ... -- <agentcage> bench-inner ...`.
pub fn inner_argv(p: &Paths, profile: Profile, inner: &[OsString]) -> Vec<OsString> {
    let mut v = agentcage_run(p, profile);
    v.push(match profile {
        Profile::None => p.agentcage.clone().into_os_string(),
        _ => INNER_AGENTCAGE.into(),
    });
    v.push("bench-inner".into());
    v.extend(inner.iter().cloned());
    v
}

/// bwrap's options between the program name and `--`.
pub fn bwrap_args(dir: &Path) -> Vec<OsString> {
    let mut v: Vec<OsString> = ["--unshare-all", "--ro-bind", "/usr", "/usr"]
        .into_iter()
        .map(OsString::from)
        .collect();
    for link in ["/bin", "/lib", "/lib64", "/sbin"] {
        let path = Path::new(link);
        match fs::symlink_metadata(path) {
            Ok(m) if m.file_type().is_symlink() => {
                if let Ok(target) = fs::read_link(path) {
                    v.extend(["--symlink".into(), target.into_os_string(), link.into()]);
                }
            }
            Ok(m) if m.is_dir() => v.extend(["--ro-bind".into(), link.into(), link.into()]),
            _ => {}
        }
    }
    for arg in [
        "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "--bind",
    ] {
        v.push(arg.into());
    }
    v.push(dir.as_os_str().to_owned());
    v.push(dir.as_os_str().to_owned());
    v
}

/// Renders an argv for humans (space-separated; arguments with spaces quoted).
pub fn shell_words(argv: &[OsString]) -> String {
    argv.iter()
        .map(|a| {
            let s = a.to_string_lossy();
            if s.is_empty() || s.contains([' ', '\'', '"']) {
                format!("'{}'", s.replace('\'', r"'\''"))
            } else {
                s.into_owned()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Finds an executable named `name` in `$PATH` (or the usual system dirs when unset).
pub fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_else(|| {
        OsString::from("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
    });
    std::env::split_paths(&path)
        .filter(|d| d.is_absolute())
        .map(|d| d.join(name))
        .find(|p| {
            fs::metadata(p)
                .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                .unwrap_or(false)
        })
}

/// First line of `<prog> --version`, if it runs.
pub fn version_of(prog: &Path) -> Option<String> {
    let out = Command::new(prog).arg("--version").output().ok()?;
    let text = if out.stdout.is_empty() {
        out.stderr
    } else {
        out.stdout
    };
    let line = String::from_utf8(text)
        .ok()?
        .lines()
        .next()?
        .trim()
        .to_string();
    (!line.is_empty()).then_some(line)
}

/// Converts an argv to the byte strings `posix_spawn` wants.
pub fn to_bytes(argv: &[OsString]) -> Vec<Vec<u8>> {
    argv.iter().map(|a| a.clone().into_vec()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths() -> Paths {
        Paths {
            agentcage: "/opt/agentcage".into(),
            dir: "/tmp/b".into(),
            static_true: Some("/tmp/b/true".into()),
            bin_true: "/bin/true".into(),
            bwrap: Some("/usr/bin/bwrap".into()),
            unshare: None,
        }
    }

    fn words(v: Option<Vec<OsString>>) -> String {
        shell_words(&v.expect("argv"))
    }

    #[test]
    fn agentcage_and_exec_argv() {
        let p = paths();
        let c = |launcher, true_kind| Contender {
            launcher,
            true_kind,
        };
        assert_eq!(
            words(argv(c(Launcher::Exec, TrueKind::Static), &p)),
            "/tmp/b/true"
        );
        assert_eq!(
            words(argv(
                c(Launcher::Agentcage(Profile::Full), TrueKind::BinTrue),
                &p
            )),
            "/opt/agentcage run -q --profile full --workspace /tmp/b -- /bin/true"
        );
        assert_eq!(argv(c(Launcher::Unshare, TrueKind::Static), &p), None);
        let mut p2 = p.clone();
        p2.static_true = None;
        assert_eq!(argv(c(Launcher::Exec, TrueKind::Static), &p2), None);
    }

    #[test]
    fn bwrap_argv_has_the_same_namespaces_and_mounts() {
        let p = paths();
        let w = words(argv(
            Contender {
                launcher: Launcher::Bwrap,
                true_kind: TrueKind::Static,
            },
            &p,
        ));
        assert!(
            w.starts_with("/usr/bin/bwrap --unshare-all --ro-bind /usr /usr "),
            "{w}"
        );
        assert!(
            w.ends_with("--proc /proc --dev /dev --tmpfs /tmp --bind /tmp/b /tmp/b -- /tmp/b/true"),
            "{w}"
        );
        // The host's /bin is either a link (merged /usr) or a directory; both are reproduced.
        let bin = fs::symlink_metadata("/bin").expect("/bin exists");
        if bin.file_type().is_symlink() {
            let target = fs::read_link("/bin").expect("readlink");
            assert!(
                w.contains(&format!("--symlink {} /bin", target.display())),
                "{w}"
            );
        } else {
            assert!(w.contains("--ro-bind /bin /bin"), "{w}");
        }
    }

    #[test]
    fn inner_argv_uses_the_in_sandbox_binary_path() {
        let p = paths();
        let inner: Vec<OsString> = vec!["getpid".into(), "100".into()];
        assert_eq!(
            shell_words(&inner_argv(&p, Profile::Landlock, &inner)),
            "/opt/agentcage run -q --profile landlock --workspace /tmp/b -- /run/agentcage/agentcage bench-inner getpid 100"
        );
        assert!(shell_words(&inner_argv(&p, Profile::None, &inner))
            .contains("-- /opt/agentcage bench-inner"));
    }

    #[test]
    fn profile_names_and_alias() {
        let names: Vec<&str> = Profile::ALL.iter().map(|p| p.name()).collect();
        assert_eq!(names, ["none", "ns-only", "landlock", "full"]);
        assert_eq!(parse_profile("ns_only"), Ok(Profile::NsOnly));
        assert_eq!(parse_profile("ns-only"), Ok(Profile::NsOnly));
        assert!(parse_profile("bogus").is_err());
    }

    #[test]
    fn shell_words_quotes() {
        let v: Vec<OsString> = vec!["a b".into(), "it's".into(), "".into(), "x".into()];
        assert_eq!(shell_words(&v), r"'a b' 'it'\''s' '' x");
    }

    #[test]
    fn which_finds_sh_and_not_nonsense() {
        assert!(which("sh").is_some());
        assert_eq!(which("agentcage-bench-no-such-program"), None);
    }
}
