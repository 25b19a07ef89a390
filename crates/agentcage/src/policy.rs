//! Policy: what to isolate, as plain data (never how).
//!
//! A [`Policy`] is built from a [`Profile`] (see `profile.rs`) and then adjusted by flags or a
//! policy file. Every primitive gets one `*Spec`. The launcher turns a policy into `Prepared`
//! artifacts before `clone` and applies them in the child.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use crate::limits::LimitsSpec;

/// The four cumulative profiles of the reference design.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Profile {
    /// Plain fork/exec through the same launcher: the baseline.
    None,
    /// Namespaces and a composed tmpfs root.
    #[serde(alias = "ns_only")]
    NsOnly,
    /// `ns-only` plus a Landlock filesystem allow-list.
    Landlock,
    /// `landlock` plus capability drop, no_new_privs and seccomp.
    Full,
    /// `full` without any namespace, for hosts where no user namespace can be created (a
    /// container's default seccomp profile, an AppArmor restriction, max_user_namespaces=0):
    /// Landlock, caps, no_new_privs, seccomp, limits and hygiene on host paths, and as root a
    /// switch to an unprivileged uid (`launch/nested.rs`). Not part of the cumulative chain
    /// ([`Profile::ALL`]); chosen only with consent.
    Nested,
}

impl Profile {
    /// Every profile, weakest first.
    pub const ALL: [Profile; 4] = [
        Profile::None,
        Profile::NsOnly,
        Profile::Landlock,
        Profile::Full,
    ];

    /// The one spelling used everywhere (CLI, JSON, matrix headers).
    pub fn name(self) -> &'static str {
        match self {
            Profile::None => "none",
            Profile::NsOnly => "ns-only",
            Profile::Landlock => "landlock",
            Profile::Full => "full",
            Profile::Nested => "nested",
        }
    }

    /// Parses a profile name; `ns_only` is accepted as an alias of `ns-only`.
    pub fn from_name(s: &str) -> Option<Profile> {
        match s {
            "none" => Some(Profile::None),
            "ns-only" | "ns_only" | "nsonly" => Some(Profile::NsOnly),
            "landlock" => Some(Profile::Landlock),
            "full" => Some(Profile::Full),
            "nested" => Some(Profile::Nested),
            _ => None,
        }
    }

    /// The layers this profile composes.
    pub fn layers(self) -> LayerSet {
        use Layer::*;
        let ns = LayerSet::of(&[
            UserNs, MountNs, PidNs, NetNs, IpcNs, UtsNs, CgroupNs, Hygiene,
        ]);
        match self {
            Profile::None => LayerSet::EMPTY,
            Profile::NsOnly => ns,
            Profile::Landlock => ns.with(Landlock),
            Profile::Full => ns
                .with(Landlock)
                .with(Caps)
                .with(NoNewPrivs)
                .with(Seccomp)
                .with(Limits),
            Profile::Nested => {
                LayerSet::of(&[Hygiene, Landlock, Caps, NoNewPrivs, Seccomp, Limits])
            }
        }
    }
}

impl std::fmt::Display for Profile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One isolation layer the launcher composes. The matrix removes one layer at a time from a
/// profile to measure which layer blocks an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[repr(u8)]
pub enum Layer {
    /// CLONE_NEWUSER: root inside is an unprivileged uid outside; gives the capabilities the
    /// other namespaces need when the caller is unprivileged.
    UserNs,
    /// CLONE_NEWNS plus the composed tmpfs root, pivot_root and /proc masking.
    MountNs,
    /// CLONE_NEWPID with our init as pid 1, and a fresh /proc.
    PidNs,
    /// CLONE_NEWNET with only loopback.
    NetNs,
    /// CLONE_NEWIPC.
    IpcNs,
    /// CLONE_NEWUTS, hostname `agentcage`.
    UtsNs,
    /// CLONE_NEWCGROUP.
    CgroupNs,
    /// Closing inherited fds, the environment allow-list and a new session (no terminal).
    Hygiene,
    /// The Landlock filesystem (and, from ABI 4/6, network and scope) restrictions.
    Landlock,
    /// Dropping every capability set and locking securebits.
    Caps,
    /// PR_SET_NO_NEW_PRIVS.
    NoNewPrivs,
    /// The seccomp-bpf syscall filter.
    Seccomp,
    /// Resource limits (rlimits, cgroups).
    Limits,
}

impl Layer {
    /// Every layer in the order the launcher applies them.
    pub const ALL: [Layer; 13] = [
        Layer::UserNs,
        Layer::MountNs,
        Layer::PidNs,
        Layer::NetNs,
        Layer::IpcNs,
        Layer::UtsNs,
        Layer::CgroupNs,
        Layer::Hygiene,
        Layer::Landlock,
        Layer::Caps,
        Layer::NoNewPrivs,
        Layer::Seccomp,
        Layer::Limits,
    ];

    /// Stable name used on the command line and in JSON.
    pub fn name(self) -> &'static str {
        match self {
            Layer::UserNs => "user-ns",
            Layer::MountNs => "mount-ns",
            Layer::PidNs => "pid-ns",
            Layer::NetNs => "net-ns",
            Layer::IpcNs => "ipc-ns",
            Layer::UtsNs => "uts-ns",
            Layer::CgroupNs => "cgroup-ns",
            Layer::Hygiene => "hygiene",
            Layer::Landlock => "landlock",
            Layer::Caps => "caps",
            Layer::NoNewPrivs => "no-new-privs",
            Layer::Seccomp => "seccomp",
            Layer::Limits => "limits",
        }
    }

    /// Parses [`Layer::name`].
    pub fn from_name(s: &str) -> Option<Layer> {
        Layer::ALL.into_iter().find(|l| l.name() == s)
    }
}

impl std::fmt::Display for Layer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A set of layers (a bit per [`Layer`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct LayerSet(u32);

impl LayerSet {
    /// No layer at all (the `none` profile).
    pub const EMPTY: LayerSet = LayerSet(0);

    /// The set of the given layers.
    pub fn of(layers: &[Layer]) -> LayerSet {
        layers.iter().fold(LayerSet::EMPTY, |s, l| s.with(*l))
    }

    /// This set plus `l`.
    pub fn with(self, l: Layer) -> LayerSet {
        LayerSet(self.0 | (1 << l as u8))
    }

    /// This set minus `l`.
    pub fn without(self, l: Layer) -> LayerSet {
        LayerSet(self.0 & !(1 << l as u8))
    }

    /// Whether `l` is in the set.
    pub fn has(self, l: Layer) -> bool {
        self.0 & (1 << l as u8) != 0
    }

    /// Whether any namespace is created (the launcher then runs an init as pid 1).
    pub fn any_namespace(self) -> bool {
        [
            Layer::UserNs,
            Layer::MountNs,
            Layer::PidNs,
            Layer::NetNs,
            Layer::IpcNs,
            Layer::UtsNs,
            Layer::CgroupNs,
        ]
        .into_iter()
        .any(|l| self.has(l))
    }

    /// The layers in the set, in application order.
    pub fn iter(self) -> impl Iterator<Item = Layer> {
        Layer::ALL.into_iter().filter(move |l| self.has(*l))
    }

    /// Whether the set is empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

/// Whether the sandbox gets its own network namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NetMode {
    /// Own network namespace with loopback only.
    #[default]
    None,
    /// The host's network (network isolation off).
    Host,
    /// Own network namespace whose only way out is the launcher's egress engine: the hosts
    /// of [`NetSpec::allow`], nothing else (see `egress.rs`).
    Allow,
}

impl NetMode {
    /// The flag's spelling: `none`, `host`, `allow`.
    pub fn name(self) -> &'static str {
        match self {
            NetMode::None => "none",
            NetMode::Host => "host",
            NetMode::Allow => "allow",
        }
    }
}

/// `--net allow`: the egress allow-list and its test/mirror knobs.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct NetSpec {
    /// Allow rules (`host`, `host:port`, `*.domain`, `IP`, `CIDR`, ...), as the engine's
    /// canonical text; checked again by `prepare`.
    pub allow: Vec<String>,
    /// `--net-resolve NAME=IP`: pin NAME to IP and permit that address for that name.
    pub resolve: Vec<(String, std::net::IpAddr)>,
    /// `--net-dns IP:PORT`: the upstream resolver the engine asks (default: the host's).
    pub dns: Option<std::net::SocketAddr>,
    /// `--net-log FILE`: where the caller wants one JSON line per decision (the CLI opens
    /// it, by fd, before the run; the library never opens paths it is given here).
    pub log: Option<PathBuf>,
}

/// Landlock allow-list and network/scope restrictions.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct LandlockSpec {
    /// TCP ports the sandbox may bind (ABI 4+). Empty: none.
    pub tcp_bind: Vec<u16>,
    /// TCP ports the sandbox may connect to (ABI 4+). Empty: none.
    pub tcp_connect: Vec<u16>,
    /// Restrict TCP bind/connect (ABI 4). On in `full`.
    pub restrict_net: bool,
    /// Scope abstract unix sockets and signals to the sandbox (ABI 6). On in `full`.
    pub scope: bool,
}

/// Seccomp filter options.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SeccompSpec {
    /// Keep the kernel's speculative-store-bypass mitigation for the sandbox (do not pass
    /// SECCOMP_FILTER_FLAG_SPEC_ALLOW). Off by default: see docs/SECURITY.md.
    pub spec_mitigation: bool,
}

/// An extra bind mount requested with `--ro`/`--rw`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExtraBind {
    /// Absolute host path; also the path inside.
    pub path: PathBuf,
    /// Whether the sandbox may write it.
    pub writable: bool,
    /// `Some(is_dir)`: a read-only placeholder this launcher created for this run (`writable`
    /// false) below a writable bind or the writable workspace: an empty directory (mode 0555)
    /// or empty file (0444), marked. The mount plan then takes its kind from here instead of
    /// a stat and does not scan the directory for unix sockets. Nothing else changes: it is
    /// still bound read-only by fd with no symlink followed (`Op::PinnedBind`), so a symlink
    /// planted there since fails the run (ELOOP), and so does the other kind (move_mount of
    /// a file onto a directory or back: ENOTDIR). A socket in it could only have been put by
    /// a writer of the enclosing writable bind, who can hand the sandbox a socket in that
    /// bind itself (not masked: it is writable). Never set on a path the launcher did not
    /// just create.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fresh_placeholder: Option<bool>,
}

/// Workspace controls (issue #15): a read-only workspace, masked paths, extra tmpfs
/// directories and a persistent home. Only with a mount namespace (the CLI refuses them
/// otherwise). Paths are absolute inside paths (the same path on the host for masks).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkspaceControls {
    /// Bind the workspace read-only.
    #[serde(default)]
    pub read_only: bool,
    /// Existing host paths (inside the workspace or a bind) hidden inside: an empty
    /// read-only directory or file is bound over each.
    #[serde(default)]
    pub masks: Vec<PathBuf>,
    /// Directories that get a fresh, empty tmpfs (owned by the inside uid) for the run.
    #[serde(default)]
    pub tmpfs: Vec<PathBuf>,
    /// Host directory bound read-write as the home directory inside (persistent), instead of
    /// a fresh one on the root tmpfs.
    #[serde(default)]
    pub home: Option<PathBuf>,
    /// `--bind SRC:DST[:ro]`: host `src` (canonical) shown at inside `dst`, a path outside the
    /// workspace and every other bind (so it cannot cover a protected path); writable or not.
    #[serde(default)]
    pub binds: Vec<(PathBuf, PathBuf, bool)>,
}

/// Everything the launcher needs to know about one run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Policy {
    /// The profile this policy started from.
    pub profile: Profile,
    /// The layers actually composed (the profile's, minus ablations).
    #[serde(skip)]
    pub layers: LayerSet,
    /// Workspace directory (absolute, canonical): bound read-write at its own path.
    pub workspace: PathBuf,
    /// Extra binds.
    pub binds: Vec<ExtraBind>,
    /// Extra environment variables (`--env K=V`).
    pub env: Vec<(String, String)>,
    /// Caller environment variables passed through (`--pass-env K`).
    pub pass_env: Vec<String>,
    /// uid inside the sandbox.
    pub uid: u32,
    /// gid inside the sandbox.
    pub gid: u32,
    /// Host uid the inside maps to when the launcher runs as root (never 0).
    pub host_uid: u32,
    /// Host gid the inside maps to when the launcher runs as root (never 0).
    pub host_gid: u32,
    /// Inherited fds to pass on (besides 0-2).
    pub keep_fds: Vec<i32>,
    /// Run even if a primitive of the profile cannot be enforced (reported, never silent).
    pub best_effort: bool,
    /// Network mode.
    pub net: NetMode,
    /// The egress allow-list of `--net allow` (ignored in the other modes).
    pub egress: NetSpec,
    /// Landlock options.
    pub landlock: LandlockSpec,
    /// Seccomp options.
    pub seccomp: SeccompSpec,
    /// Resource limits.
    pub limits: LimitsSpec,
    /// Working directory inside (defaults to the caller's when inside the workspace).
    pub cwd: Option<PathBuf>,
    /// Nested rung, as root, with a root-owned workspace: run as uid 0 with no capabilities
    /// (explicit consent; see `launch/nested.rs`).
    #[serde(default)]
    pub nested_root: bool,
    /// `--overlay`: the overlay directory (`upper/`, `work/`) whose overlayfs is mounted on
    /// the workspace (see `overlay/`); the workspace itself is then the read-only lower layer.
    #[serde(skip)]
    pub overlay: Option<PathBuf>,
    /// Workspace controls.
    #[serde(default)]
    pub controls: WorkspaceControls,
}

impl Policy {
    /// The policy of `profile` with the given workspace and every other knob at its default:
    /// inside uid/gid 0, host uid/gid 65534 (used only when the launcher runs as root),
    /// own network namespace, and, in `full`, Landlock network and scope restrictions.
    pub fn for_profile(profile: Profile, workspace: PathBuf) -> Policy {
        let full = matches!(profile, Profile::Full | Profile::Nested);
        Policy {
            profile,
            layers: profile.layers(),
            workspace,
            binds: Vec::new(),
            env: Vec::new(),
            pass_env: Vec::new(),
            uid: 0,
            gid: 0,
            host_uid: 65534,
            host_gid: 65534,
            keep_fds: Vec::new(),
            best_effort: false,
            net: NetMode::None,
            egress: NetSpec::default(),
            landlock: LandlockSpec {
                restrict_net: full,
                scope: full,
                ..LandlockSpec::default()
            },
            seccomp: SeccompSpec::default(),
            limits: if full {
                crate::limits::default_limits()
            } else {
                LimitsSpec::default()
            },
            cwd: None,
            nested_root: false,
            overlay: None,
            controls: WorkspaceControls::default(),
        }
    }
}
