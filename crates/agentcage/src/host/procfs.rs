//! The /proc parsers: mountinfo (with its octal escapes) and /proc/self/cgroup.

/// One line of /proc/self/mountinfo (proc(5)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountInfo {
    /// Mount id.
    pub id: u32,
    /// Parent mount id.
    pub parent: u32,
    /// Root of the mount within its filesystem (for cgroup fs: relative to our cgroup ns).
    pub root: String,
    /// Mount point (octal escapes decoded).
    pub mount_point: String,
    /// Per-mount options (`rw`, `nosuid`, ...).
    pub mount_options: Vec<String>,
    /// Filesystem type (`cgroup2`, `cgroup`, ...).
    pub fs_type: String,
    /// Mount source.
    pub source: String,
    /// Per-superblock options (for cgroup v1: the controllers).
    pub super_options: Vec<String>,
}

/// Decodes mountinfo's `\040`-style octal escapes.
pub(crate) fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') as u32 * 64
                + (b[i + 2] - b'0') as u32 * 8
                + (b[i + 3] - b'0') as u32;
            if let Ok(byte) = u8::try_from(v) {
                out.push(byte);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses /proc/self/mountinfo; malformed lines are skipped.
pub fn parse_mountinfo(text: &str) -> Vec<MountInfo> {
    text.lines()
        .filter_map(|line| {
            let f = mountinfo_fields(line)?;
            Some(MountInfo {
                id: f.id,
                parent: f.parent,
                root: unescape_mountinfo(f.root),
                mount_point: unescape_mountinfo(f.mount_point),
                mount_options: f.mount_options.split(',').map(str::to_string).collect(),
                fs_type: f.fs_type.to_string(),
                source: unescape_mountinfo(f.source),
                super_options: if f.super_options.is_empty() {
                    Vec::new()
                } else {
                    f.super_options.split(',').map(str::to_string).collect()
                },
            })
        })
        .collect()
}

/// One line of /proc/self/mountinfo as written: fields borrowed from the text, paths still
/// escaped (`\040`), option lists unsplit. For callers that look at a few lines of the table
/// (every run reads it for the cgroup hierarchies): [`parse_mountinfo`] allocated every field
/// of every line, ~170k of the launcher's ~1.5M instructions for `run -p full`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MountFields<'a> {
    /// Mount id.
    pub id: u32,
    /// Parent mount id.
    pub parent: u32,
    /// Root of the mount within its filesystem (escaped).
    pub root: &'a str,
    /// Mount point (escaped: [`unescape_mountinfo`]).
    pub mount_point: &'a str,
    /// Per-mount options, comma-separated.
    pub mount_options: &'a str,
    /// Filesystem type.
    pub fs_type: &'a str,
    /// Mount source (escaped).
    pub source: &'a str,
    /// Per-superblock options, comma-separated (empty when absent).
    pub super_options: &'a str,
}

/// The fields of one mountinfo line; `None` for a malformed one.
pub fn mountinfo_fields(line: &str) -> Option<MountFields<'_>> {
    let (left, right) = line.split_once(" - ")?;
    let mut l = left.split(' ');
    let id = l.next()?.parse().ok()?;
    let parent = l.next()?.parse().ok()?;
    let _dev = l.next()?;
    let (root, mount_point, mount_options) = (l.next()?, l.next()?, l.next()?);
    let mut r = right.split(' ');
    let (fs_type, source) = (r.next()?, r.next()?);
    Some(MountFields {
        id,
        parent,
        root,
        mount_point,
        mount_options,
        fs_type,
        source,
        super_options: r.next().unwrap_or(""),
    })
}

/// One line of /proc/self/cgroup (cgroups(7)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcCgroup {
    /// Hierarchy id; 0 for the v2 unified hierarchy.
    pub hierarchy: u32,
    /// Controllers bound to the hierarchy (empty for v2; `name=systemd` for named ones).
    pub controllers: Vec<String>,
    /// Our cgroup's path, relative to the hierarchy's root (in our cgroup namespace).
    pub path: String,
}

/// Parses /proc/self/cgroup; malformed lines are skipped.
pub fn parse_proc_cgroup(text: &str) -> Vec<ProcCgroup> {
    text.lines()
        .filter_map(|line| {
            let mut parts = line.splitn(3, ':');
            let hierarchy = parts.next()?.parse().ok()?;
            let controllers = parts.next()?;
            let path = parts.next()?;
            Some(ProcCgroup {
                hierarchy,
                controllers: controllers
                    .split(',')
                    .filter(|c| !c.is_empty())
                    .map(str::to_string)
                    .collect(),
                path: path.to_string(),
            })
        })
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    // Samples: this VM (hybrid: v1 controllers + empty v2 at /sys/fs/cgroup/unified), a
    // systemd v2-only desktop, a v1-only (legacy) host and a Docker container with cgroupns.
    pub(crate) const MOUNTINFO_HYBRID: &str = "\
22 27 0:21 / /proc rw,relatime - proc proc rw
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw,discard
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
    pub(crate) const CGROUP_HYBRID: &str = "\
9:name=systemd:/
8:pids:/
4:memory:/process_api/6b9e496e3a641f55cf664606931acb5f
1:cpu:/
0::/
";
    pub(crate) const MOUNTINFO_UNIFIED: &str = "\
24 1 259:2 / / rw,relatime shared:1 - ext4 /dev/nvme0n1p2 rw
35 24 0:30 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
40 24 0:35 / /mnt/my\\040disk rw,relatime shared:20 - ext4 /dev/sdb1 rw
";
    pub(crate) const CGROUP_UNIFIED: &str =
        "0::/user.slice/user-1000.slice/user@1000.service/app.slice/tmux.scope\n";
    pub(crate) const MOUNTINFO_LEGACY: &str = "\
25 20 0:22 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:8 - tmpfs tmpfs ro,mode=755
26 25 0:23 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:9 - cgroup cgroup rw,xattr,name=systemd
29 25 0:26 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:12 - cgroup cgroup rw,cpu,cpuacct
30 25 0:27 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:13 - cgroup cgroup rw,memory
31 25 0:28 / /sys/fs/cgroup/pids rw,nosuid,nodev,noexec,relatime shared:14 - cgroup cgroup rw,pids
";
    pub(crate) const CGROUP_LEGACY: &str = "\
11:pids:/user.slice/user-1000.slice/session-2.scope
7:memory:/user.slice/user-1000.slice/session-2.scope
3:cpu,cpuacct:/user.slice
1:name=systemd:/user.slice/user-1000.slice/session-2.scope
";
    // Docker without cgroupns: the mount shows only the container's subtree.
    pub(crate) const MOUNTINFO_DOCKER: &str = "\
700 650 0:50 /docker/abc123 /sys/fs/cgroup ro,nosuid,nodev,noexec,relatime - cgroup2 cgroup ro
";
    pub(crate) const CGROUP_DOCKER: &str = "0::/docker/abc123\n";

    #[test]
    fn mountinfo_parses_fields_and_escapes() {
        let m = parse_mountinfo(MOUNTINFO_UNIFIED);
        assert_eq!(m.len(), 3);
        assert_eq!(m[1].fs_type, "cgroup2");
        assert_eq!(m[1].mount_point, "/sys/fs/cgroup");
        assert_eq!(
            m[1].super_options,
            ["rw", "nsdelegate", "memory_recursiveprot"]
        );
        assert_eq!(m[2].mount_point, "/mnt/my disk");
        let h = parse_mountinfo(MOUNTINFO_HYBRID);
        assert_eq!(h.len(), 8);
        assert_eq!(h[4].super_options, ["rw", "memory"]);
        assert_eq!((h[4].id, h[4].parent), (35, 31));
        // Garbage is skipped, not a panic.
        assert!(parse_mountinfo("nonsense\n1 2\n - x\n").is_empty());
        assert_eq!(unescape_mountinfo("a\\134b\\011c\\"), "a\\b\tc\\");
    }

    /// The borrowed fields are the full parse's, before unescaping and splitting.
    #[test]
    fn mountinfo_fields_match_the_full_parse() {
        for text in [
            MOUNTINFO_UNIFIED,
            MOUNTINFO_HYBRID,
            MOUNTINFO_LEGACY,
            MOUNTINFO_DOCKER,
        ] {
            let full = parse_mountinfo(text);
            let fields: Vec<MountFields> = text.lines().filter_map(mountinfo_fields).collect();
            assert_eq!(full.len(), fields.len());
            for (m, f) in full.iter().zip(&fields) {
                assert_eq!((m.id, m.parent), (f.id, f.parent));
                assert_eq!(m.root, unescape_mountinfo(f.root));
                assert_eq!(m.mount_point, unescape_mountinfo(f.mount_point));
                assert_eq!(m.fs_type, f.fs_type);
                assert_eq!(m.source, unescape_mountinfo(f.source));
                assert_eq!(m.mount_options.join(","), f.mount_options);
                assert_eq!(m.super_options.join(","), f.super_options);
            }
        }
        assert!(mountinfo_fields("x 2 0:1 / /a rw - ext4 d rw").is_none());
        assert!(mountinfo_fields("1 2 0:1 / /a - ext4 d rw").is_none());
        assert_eq!(
            mountinfo_fields("1 2 0:1 / /a rw - ext4 d").map(|f| f.super_options),
            Some("")
        );
    }

    #[test]
    fn proc_cgroup_parses() {
        let c = parse_proc_cgroup(CGROUP_LEGACY);
        assert_eq!(c.len(), 4);
        assert_eq!(c[2].controllers, ["cpu", "cpuacct"]);
        assert_eq!(c[3].controllers, ["name=systemd"]);
        let u = parse_proc_cgroup(CGROUP_UNIFIED);
        assert_eq!(u[0].hierarchy, 0);
        assert!(u[0].controllers.is_empty());
        assert!(u[0].path.ends_with("tmux.scope"));
        // Paths may contain ':'.
        assert_eq!(parse_proc_cgroup("0::/a:b\n")[0].path, "/a:b");
        assert!(parse_proc_cgroup("x:y\nfoo:bar:baz\n").is_empty());
    }
}
