//! The mount plan: [`prepare`] (parent side) and the pins of binds nested in writable ones.

use std::collections::BTreeSet;
use std::ffi::CString;
use std::ops::Bound;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::sys;

mod keys;
use keys::{dir_key, key_below, key_cpath, key_path, parent_key, strictly_below};

use super::idmap::{Decision, IdmapSpec, PreparedIdmap};
use super::{
    Op, PreparedRootfs, RootSpec, SocketMasks, DEV_NODES, ETC_FROM_HOST, NEWROOT, OLDROOT,
    PROC_MASKED_DIRS, PROC_MASKED_FILES, PROC_READONLY, RO, RW, SELF_EXE, SOCKET_SCAN_MAX_DEPTH,
    SOCKET_SCAN_MAX_ENTRIES, STAGE_CANDIDATES, SYSTEM_DIRS,
};

struct Planner {
    ops: Vec<Op>,
    /// ",size=N" for every tmpfs, or empty.
    size_opt: String,
    /// Inside dirs known to exist in the composed tree (created or covered by a bind), as
    /// [`dir_key`]s.
    dirs: BTreeSet<Vec<u8>>,
    /// Idmapped binds (root launcher, writable paths owned by someone else).
    idmap_spec: Option<IdmapSpec>,
    idmap: PreparedIdmap,
    idmap_decisions: Vec<(PathBuf, Decision)>,
    /// Writable binds made idmapped: pins and protected paths below them are cloned from the
    /// idmapped mount in the new root (same ids; and no host path walk, which a mode-700
    /// parent such as /root would refuse to the sandbox's host uid).
    idmapped: Vec<PathBuf>,
    /// `--overlay`: the workspace and the overlay mount's options.
    overlay: Option<(PathBuf, CString)>,
    /// [`Planner::bind`] leaves the attributes to the group's [`Op::SetAttrs`].
    grouping: bool,
}

fn cpath(prefix: &str, p: &Path) -> CString {
    let p = p.as_os_str().as_bytes();
    // Room for the NUL: CString::new then needs no second allocation.
    let mut v = Vec::with_capacity(prefix.len() + p.len() + 1);
    v.extend_from_slice(prefix.as_bytes());
    v.extend_from_slice(p);
    // Paths come from the OS or from our constants: an interior NUL is impossible, but map
    // it to a harmless name rather than panicking.
    CString::new(v).unwrap_or_else(|_| c"/nonexistent".to_owned())
}

impl Planner {
    fn new() -> Planner {
        let mut dirs = BTreeSet::new();
        dirs.insert(Vec::new());
        Planner {
            ops: Vec::new(),
            size_opt: String::new(),
            dirs,
            idmap_spec: None,
            idmap: PreparedIdmap::default(),
            idmap_decisions: Vec::new(),
            idmapped: Vec::new(),
            overlay: None,
            grouping: false,
        }
    }

    /// Creates every missing ancestor of `p` (inside path), not `p` itself.
    fn parents(&mut self, p: &Path) {
        let k = dir_key(p);
        self.mkdir_key(parent_key(&k), 0o755);
    }

    fn mkdir(&mut self, p: &Path, mode: u32) {
        self.mkdir_key(&dir_key(p), mode);
    }

    /// [`Planner::mkdir`] of a [`dir_key`]: its missing ancestors first (the root exists).
    fn mkdir_key(&mut self, k: &[u8], mode: u32) {
        if self.dirs.contains(k) {
            return;
        }
        self.mkdir_key(parent_key(k), 0o755);
        self.ops.push(Op::Mkdir {
            path: key_cpath(NEWROOT, k),
            mode,
        });
        self.dirs.insert(k.to_vec());
    }

    fn tmpfs(&mut self, p: &Path, mode: &str, readonly: bool) {
        let k = dir_key(p);
        self.mkdir_key(&k, 0o755);
        self.forget_below_key(&k);
        self.ops.push(Op::Tmpfs {
            target: cpath(NEWROOT, p),
            flags: libc::MS_NOSUID | libc::MS_NODEV,
            data: CString::new(format!("mode={mode}{}", self.size_opt)).unwrap_or_default(),
            readonly,
            optional: false,
        });
    }

    /// A mount on the dir of key `k` hides whatever we created below it. Its keys are the
    /// ones right after `k` that start with `k` and a NUL (a range, not a scan of every
    /// known dir).
    fn forget_below_key(&mut self, k: &[u8]) {
        let mut below: Vec<Vec<u8>> = Vec::new();
        for d in self
            .dirs
            .range::<[u8], _>((Bound::Excluded(k), Bound::Unbounded))
        {
            if d.len() <= k.len() || !d.starts_with(k) || d[k.len()] != 0 {
                break;
            }
            below.push(d.clone());
        }
        for d in below {
            self.dirs.remove(&d);
        }
    }

    /// Records `p` as a directory that exists with everything below it as the host (or a
    /// mount) has it: what we created below it is hidden.
    fn covered_dir(&mut self, p: &Path) {
        let k = dir_key(p);
        self.forget_below_key(&k);
        self.dirs.insert(k);
    }

    /// An empty file at inside `p`, its parents made first.
    fn touch(&mut self, p: &Path) {
        self.parents(p);
        self.ops.push(Op::Touch {
            path: cpath(NEWROOT, p),
        });
    }

    /// The mount point of a bind at inside `dst`: a directory, or a file.
    fn mount_point(&mut self, dst: &Path, is_dir: bool) {
        if is_dir {
            let k = dir_key(dst);
            self.mkdir_key(&k, 0o755);
            // Everything below a bound dir exists as the host has it.
            self.forget_below_key(&k);
        } else {
            self.touch(dst);
        }
    }

    /// Bind host `src` at inside `dst` with `attrs`; dirs get a dir mount point, others a file.
    fn bind(&mut self, src: &Path, dst: &Path, is_dir: bool, attrs: u64, optional: bool) {
        self.mount_point(dst, is_dir);
        self.ops.push(Op::Bind {
            src: cpath(OLDROOT, src),
            dst: cpath(NEWROOT, dst),
            attrs,
            optional,
            grouped: self.grouping,
        });
    }

    /// Runs `binds` (which plans binds of `attrs` below `dir`, and nothing else that mounts)
    /// and, if `group`, gives them their attributes with one recursive mount_setattr on `dir`
    /// after them instead of one each: the binds copy their sources' flags, the setattr adds
    /// `attrs` to each of them and to `dir` (nothing below `dir` may need fewer), and clears
    /// none, so each ends with exactly the flags a setattr of its own gives it. Flags set in
    /// our namespace are not locked either way: the command cannot clear them because it has
    /// no CAP_SYS_ADMIN over this mount namespace (caps dropped; ns-only's nested user
    /// namespace locks every flag when it copies the tree).
    fn group_attrs(&mut self, dir: &Path, attrs: u64, group: bool, binds: impl FnOnce(&mut Self)) {
        self.grouping = group;
        binds(self);
        self.grouping = false;
        if group {
            self.ops.push(Op::SetAttrs {
                target: cpath(NEWROOT, dir),
                attrs,
            });
        }
    }

    /// A world-writable sticky directory (1777) on the tree we compose.
    fn sticky_dir(&mut self, p: &Path) {
        self.mkdir(p, 0o755);
        self.ops.push(Op::Chmod {
            path: cpath(NEWROOT, p),
            mode: 0o1777,
        });
    }

    fn symlink(&mut self, target: &Path, link: &Path) {
        self.parents(link);
        self.ops.push(Op::Symlink {
            target: CString::new(target.as_os_str().as_bytes()).unwrap_or_default(),
            link: cpath(NEWROOT, link),
        });
    }

    fn write(&mut self, p: &Path, contents: String) {
        self.parents(p);
        self.ops.push(Op::WriteFile {
            path: cpath(NEWROOT, p),
            contents: contents.into_bytes(),
        });
    }

    /// Host path as it is: a symlink stays a symlink, a dir or file is bound.
    fn host_entry(&mut self, p: &Path, attrs: u64) {
        let Ok(md) = std::fs::symlink_metadata(p) else {
            return;
        };
        if md.file_type().is_symlink() {
            if let Ok(t) = std::fs::read_link(p) {
                self.symlink(&t, p);
            }
        } else {
            self.bind(p, p, md.is_dir(), attrs, false);
        }
    }
}

// Binds inside writable binds (issue #10, finding 3). The kernel lets a directory that
// contains mount points be renamed or replaced (the mounts move along), but not a mount point
// itself (EBUSY in the namespace that has the mount). So a read-only bind nested in the
// writable workspace (`.git/hooks`) only protects its path if every directory between the
// writable bind and it is a mount point too: each one is bound onto itself ("pinned").
impl Planner {
    /// The workspace and the extra binds, sorted shallowest first. A bind nested in a
    /// writable one is protected: its ancestors up to that bind are pinned and it is mounted
    /// with [`Op::PinnedBind`].
    fn user_binds(&mut self, binds: &[(PathBuf, bool, bool)]) {
        // The mounts made so far: (dir_key, path, writable).
        let mut done: Vec<(Vec<u8>, PathBuf, bool)> = Vec::new();
        for (p, writable, is_dir) in binds {
            let attrs = if *writable { RW } else { RO };
            let k = dir_key(p);
            // The deepest bind already made that contains this one: of the keys that are
            // ancestors of this one, the longest.
            let parent = done
                .iter()
                .filter(|(d, _, _)| key_below(&k, d))
                .max_by_key(|(d, _, _)| d.len())
                .map(|(_, d, w)| (d.clone(), *w));
            match parent {
                Some((root, true)) => self.protect(&root, p, *is_dir, attrs, &mut done),
                _ if self.overlay.as_ref().is_some_and(|(w, _)| w == p) => self.overlay_bind(p),
                _ if *writable && *is_dir => self.writable_bind(p),
                _ => self.bind(p, p, *is_dir, attrs, false),
            }
            done.push((k, p.clone(), *writable));
        }
    }

    /// Protects `path` (bound with `attrs`) below the writable bind `root`: pins every
    /// directory strictly between them (writable, like `root`), then binds `path` itself, all
    /// by fd without following symlinks. `done` lists the mounts already made (dir_key, path,
    /// writable): a pin already there is not repeated. Generic on purpose: default protected
    /// paths (issue #15) go through here too.
    fn protect(
        &mut self,
        root: &Path,
        path: &Path,
        is_dir: bool,
        attrs: u64,
        done: &mut Vec<(Vec<u8>, PathBuf, bool)>,
    ) {
        for d in pins(root, path) {
            let k = dir_key(&d);
            if done.iter().any(|(m, _, _)| *m == k) {
                continue;
            }
            self.pinned(&d, true, RW);
            done.push((k, d, true));
        }
        self.pinned(path, is_dir, attrs);
    }

    /// A writable directory bind at its own path: idmapped when it belongs to someone else
    /// and the policy allows it (`idmap.rs`), else a plain bind.
    fn writable_bind(&mut self, p: &Path) {
        let decision = match &self.idmap_spec {
            Some(spec) => self.idmap.plan(spec, p),
            None => Decision::NotNeeded,
        };
        match decision {
            Decision::Idmapped(tree) => {
                self.mount_point(p, true);
                self.ops.push(Op::IdmappedBind {
                    dst: cpath(NEWROOT, p),
                    tree,
                });
                self.idmapped.push(p.to_path_buf());
            }
            _ => self.bind(p, p, true, RW, false),
        }
        if decision != Decision::NotNeeded {
            self.idmap_decisions.push((p.to_path_buf(), decision));
        }
    }

    /// `--overlay`: the workspace bound read-only (idmapped when a writable bind would be:
    /// copy-up keeps the owner the sandbox sees), then the overlayfs on top of it, which
    /// takes that bind as its lower layer.
    fn overlay_bind(&mut self, p: &Path) {
        let Some((_, data)) = self.overlay.clone() else {
            return;
        };
        self.writable_bind(p);
        let dst = cpath(NEWROOT, p);
        if !self.idmapped.iter().any(|r| r == p) {
            self.ops.push(Op::Bind {
                src: dst.clone(),
                dst: dst.clone(),
                attrs: RO,
                optional: false,
                grouped: false,
            });
        }
        self.ops.push(Op::Overlay { target: dst, data });
    }

    fn pinned(&mut self, p: &Path, is_dir: bool, attrs: u64) {
        if is_dir {
            self.covered_dir(p);
        }
        let below_idmapped = self.idmapped.iter().any(|r| p.starts_with(r));
        self.ops.push(Op::PinnedBind {
            src: cpath(if below_idmapped { NEWROOT } else { OLDROOT }, p),
            dst: cpath(NEWROOT, p),
            attrs,
        });
    }
}

impl Planner {
    /// Masks every unix socket under the read-only directory binds with /dev/null (read-only,
    /// nodev: connect(2) gets ECONNREFUSED, open(2) EACCES). A socket below a deeper writable
    /// bind is left alone (the caller asked for it writable). Each bind's scan is bounded.
    /// A fresh placeholder (`fresh`) inside a writable bind is not scanned: what is in it
    /// was put there by a writer of that bind (see `ExtraBind::fresh_placeholder`).
    fn mask_sockets(
        &mut self,
        binds: &[(PathBuf, bool, bool)],
        fresh: &[(PathBuf, bool)],
    ) -> SocketMasks {
        use std::os::unix::fs::FileTypeExt;
        let mut out = SocketMasks::default();
        for (root, writable, is_dir) in binds {
            if *writable || !is_dir {
                continue;
            }
            if fresh.iter().any(|(f, _)| f.as_os_str() == root.as_os_str())
                && binds.iter().any(|(b, w, _)| *w && strictly_below(root, b))
            {
                continue;
            }
            let mut entries = 0;
            let mut stack: Vec<(PathBuf, usize)> = vec![(root.clone(), 0)];
            let mut truncated = false;
            while let Some((dir, depth)) = stack.pop() {
                let Ok(rd) = std::fs::read_dir(&dir) else {
                    continue;
                };
                for e in rd.flatten() {
                    entries += 1;
                    if entries > SOCKET_SCAN_MAX_ENTRIES {
                        truncated = true;
                        break;
                    }
                    let Ok(ft) = e.file_type() else { continue };
                    if ft.is_dir() {
                        if depth + 1 >= SOCKET_SCAN_MAX_DEPTH {
                            truncated = true;
                        } else {
                            stack.push((e.path(), depth + 1));
                        }
                    } else if ft.is_socket() {
                        let p = e.path();
                        let under_ro = binds
                            .iter()
                            .filter(|(b, _, _)| p.starts_with(b))
                            .max_by_key(|(b, _, _)| b.components().count())
                            .is_some_and(|(_, w, _)| !w);
                        if under_ro && !out.masked.contains(&p) {
                            self.ops.push(Op::MaskSocket {
                                dst: cpath(NEWROOT, &p),
                            });
                            out.masked.push(p);
                        }
                    }
                }
                if entries > SOCKET_SCAN_MAX_ENTRIES {
                    break;
                }
            }
            if truncated {
                out.truncated.push(root.clone());
            }
        }
        out
    }
}

// Workspace controls (issue #15): masks, extra tmpfs directories, a persistent home. Each
// target below a writable bind is mounted like a protected path (ancestors pinned, target and
// source opened with no symlink followed, `Op::PinnedBind`), so the sandbox cannot steer it
// with a link it planted in a previous run, nor move it away (EBUSY). A mask or tmpfs below a
// read-only bind needs no pins; the target must still be no symlink (ELOOP, the run fails).
impl Planner {
    /// Where the sources of the controls live on the root tmpfs (not an allow-listed path of
    /// Landlock; read-only binds of them are what the sandbox sees).
    const CONTROLS: &'static str = "/run/agentcage-controls";

    fn controls(&mut self, spec: &RootSpec, binds: &[(PathBuf, bool, bool)]) {
        let c = &spec.controls;
        if c.masks.is_empty() && c.tmpfs.is_empty() && c.home.is_none() && c.binds.is_empty() {
            return;
        }
        let base = PathBuf::from(Self::CONTROLS);
        let mut pinned: Vec<PathBuf> = binds.iter().map(|(p, _, _)| p.clone()).collect();
        // The deepest bind holding `p`, and whether it is writable.
        let holder = |p: &Path| {
            binds
                .iter()
                .filter(|(b, _, _)| p.starts_with(b))
                .max_by_key(|(b, _, _)| b.components().count())
                .map(|(b, w, _)| (b.clone(), *w))
        };
        // Owned by the sandbox's ids: `mode=0755,uid=U,gid=G` and the root's size budget.
        let tmpfs_mode = format!("0755,uid={},gid={}", spec.uid, spec.gid);
        for (i, t) in c.tmpfs.iter().enumerate() {
            match holder(t) {
                Some((root, w)) => {
                    let src = base.join(format!("tmpfs{i}"));
                    self.tmpfs(&src, &tmpfs_mode, false);
                    self.control_bind(&src, t, &root, w, RW, &mut pinned);
                }
                None => self.tmpfs(t, &tmpfs_mode, false),
            }
        }
        for m in &c.masks {
            let is_dir = std::fs::symlink_metadata(m).is_ok_and(|md| md.is_dir());
            let src = base.join(if is_dir { "empty-dir" } else { "empty-file" });
            if is_dir {
                self.mkdir(&src, 0o555);
            } else {
                self.touch(&src);
            }
            let (root, w) = holder(m).unwrap_or_else(|| (PathBuf::from("/"), false));
            self.control_bind(&src, m, &root, w, RO | sys::MOUNT_ATTR_NOEXEC, &mut pinned);
        }
        for (src, dst, writable) in &c.binds {
            // On the root tmpfs (the CLI keeps dst out of the workspace and the binds), with
            // the source opened without following a symlink. Sockets below a read-only one
            // are masked like those of `--ro` paths.
            let is_dir = src.is_dir();
            self.mount_point(dst, is_dir);
            self.ops.push(Op::PinnedBind {
                src: cpath(OLDROOT, src),
                dst: cpath(NEWROOT, dst),
                attrs: if *writable { RW } else { RO },
            });
            if !writable && is_dir {
                let start = self.ops.len();
                // mask_sockets names host paths: its masks move to the inside path.
                let _ = self.mask_sockets(&[(src.clone(), false, true)], &[]);
                for op in &mut self.ops[start..] {
                    if let Op::MaskSocket { dst: d } = op {
                        let host =
                            Path::new(std::ffi::OsStr::from_bytes(&d.as_bytes()[NEWROOT.len()..]))
                                .to_path_buf();
                        if let Ok(rel) = host.strip_prefix(src) {
                            *d = cpath(NEWROOT, &dst.join(rel));
                        }
                    }
                }
            }
        }
        if let Some(h) = &c.home {
            // The home dir inside exists on the root tmpfs (made before the binds).
            self.ops.push(Op::PinnedBind {
                src: cpath(OLDROOT, h),
                dst: cpath(NEWROOT, &spec.home),
                attrs: RW,
            });
            self.covered_dir(&spec.home);
        }
    }

    /// Binds `src` (on the new root) onto `dst`, pinning the directories between the
    /// writable bind `root` and `dst` first.
    fn control_bind(
        &mut self,
        src: &Path,
        dst: &Path,
        root: &Path,
        writable_root: bool,
        attrs: u64,
        pinned: &mut Vec<PathBuf>,
    ) {
        if writable_root {
            for d in pins(root, dst) {
                if !pinned.contains(&d) {
                    self.pinned(&d, true, RW);
                    pinned.push(d);
                }
            }
        }
        self.ops.push(Op::PinnedBind {
            src: cpath(NEWROOT, src),
            dst: cpath(NEWROOT, dst),
            attrs,
        });
        pinned.push(dst.to_path_buf());
    }
}

/// The directories strictly between `root` and `path` (a path below it), shallowest first:
/// the ones that must be mount points for `path` to stay where it is.
pub fn pins(root: &Path, path: &Path) -> Vec<PathBuf> {
    let (r, k) = (dir_key(root), dir_key(path));
    if !key_below(&k, &r) {
        return Vec::new();
    }
    // Each NUL of `k` past the one that ends `root`'s key ends the key of a dir between.
    (r.len() + 1..k.len())
        .filter(|&i| k[i] == 0)
        .map(|i| key_path(&k[..i]))
        .collect()
}

/// Builds the mount plan (parent side; allocates freely).
pub fn prepare(spec: &RootSpec) -> PreparedRootfs {
    let mut pl = Planner::new();
    pl.idmap_spec = spec.idmap.clone();
    pl.overlay = spec.overlay.as_ref().map(|dir| {
        // The launcher refused paths with the option syntax's , : \ (overlay::check_path).
        let data = format!(
            "lowerdir={},upperdir={}/upper,workdir={}/work,userxattr,volatile",
            cpath(NEWROOT, &spec.workspace).to_string_lossy(),
            cpath(OLDROOT, dir).to_string_lossy(),
            cpath(OLDROOT, dir).to_string_lossy(),
        );
        (
            spec.workspace.clone(),
            CString::new(data).unwrap_or_default(),
        )
    });
    if let Some(n) = spec.tmpfs_size {
        pl.size_opt = format!(",size={n}");
    }
    // Sorted mount targets: a parent always comes before its children, so nothing we
    // mount later hides a mount point we made earlier.
    for d in SYSTEM_DIRS {
        pl.host_entry(Path::new(d), RO);
    }

    // The workspace and extras (kinds looked up here: which dirs they reach decides the
    // grouping of /dev's and /etc's binds below).
    let mut binds: Vec<(PathBuf, bool, bool)> = spec
        .binds
        .iter()
        .map(|(p, w)| {
            // A fresh placeholder's kind is known (ExtraBind::fresh_placeholder); if it was
            // replaced since, its bind fails (ELOOP or ENOTDIR), so a stat adds nothing.
            // Bytes, not `Path ==` (it re-parses components: 121 of them cost ~30k instructions).
            let kind = spec
                .fresh_placeholders
                .iter()
                .find(|(f, _)| !*w && f.as_os_str() == p.as_os_str());
            let is_dir = kind.map_or_else(|| p.is_dir(), |(_, d)| *d);
            (p.clone(), *w, is_dir)
        })
        .collect();
    binds.push((spec.workspace.clone(), !spec.controls.read_only, true));
    binds.sort_by_cached_key(|(p, _, _)| p.components().count());
    // A dir's binds get their attributes from one recursive setattr on the dir (it turns the
    // dir read-only) when nothing later is made in or mounted at or below it.
    // (A workspace on the host's /dev/shm lands on the sandbox's /dev/shm, a bind of /run/shm
    // attached before any of them: its mount point is not made on /dev.)
    let groupable = |d: &Path| {
        let shm = (d == Path::new("/dev")).then_some(Path::new("/dev/shm"));
        spec.mount_setattr && !later_target_at_or_below(spec, d, shm)
    };

    // /dev: a tmpfs with the host's harmless nodes bound in (no mknod in a user namespace).
    // Its dirs and links first: the grouped setattr of the nodes makes /dev read-only.
    let dev = Path::new("/dev");
    pl.tmpfs(dev, "0755", false);
    pl.mkdir(&dev.join("pts"), 0o755);
    pl.symlink(Path::new("pts/ptmx"), &dev.join("ptmx"));
    // /dev/shm: bound from /run/shm on the root tmpfs below (one budget), /dev itself is
    // remounted read-only at the end.
    pl.mkdir(&dev.join("shm"), 0o755);
    pl.symlink(Path::new("/proc/self/fd"), &dev.join("fd"));
    for (i, n) in ["stdin", "stdout", "stderr"].iter().enumerate() {
        pl.symlink(&PathBuf::from(format!("/proc/self/fd/{i}")), &dev.join(n));
    }
    // nodev must stay off: these are device nodes. Read-only: a device stays readable and
    // writable on a read-only mount (only regular files, dirs and symlinks are refused), but
    // the host's inode cannot be changed (utimensat on /dev/null set the host's mtime; chmod
    // and chown are refused anyway). The grouped setattr also makes /dev itself ro,nosuid,
    // noexec until its final remount, which sets its flags to ro,nosuid (as without it).
    let node_attrs = sys::MOUNT_ATTR_RDONLY | sys::MOUNT_ATTR_NOSUID | sys::MOUNT_ATTR_NOEXEC;
    pl.group_attrs(dev, node_attrs, groupable(dev), |pl| {
        for n in DEV_NODES {
            let p = dev.join(n);
            if p.exists() {
                pl.bind(&p, &p, false, node_attrs, true);
            }
        }
    });
    // After the group's setattr: devpts stays rw.
    pl.ops.push(Op::Devpts {
        target: cpath(NEWROOT, &dev.join("pts")),
    });

    // /etc: synthesized identity and name service files, plus host files programs need.
    let etc = Path::new("/etc");
    // Its own tmpfs, remounted read-only at the end of the plan.
    pl.tmpfs(etc, "0755", false);
    let user = if spec.uid == 0 { "root" } else { "agent" };
    let group = if spec.gid == 0 { "root" } else { "agent" };
    let mut passwd = String::from("root:x:0:0:root:/root:/bin/sh\n");
    if spec.uid != 0 {
        passwd += &format!(
            "{user}:x:{}:{}:agentcage:{}:/bin/sh\n",
            spec.uid,
            spec.gid,
            spec.home.display()
        );
    }
    passwd += "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n";
    let mut groups = String::from("root:x:0:\n");
    if spec.gid != 0 {
        groups += &format!("{group}:x:{}:\n", spec.gid);
    }
    groups += "nogroup:x:65534:\n";
    pl.write(&etc.join("passwd"), passwd);
    pl.write(&etc.join("group"), groups);
    pl.write(&etc.join("hostname"), "agentcage\n".into());
    pl.write(
        &etc.join("nsswitch.conf"),
        "passwd: files\ngroup: files\nshadow: files\nhosts: files dns\nnetworks: files\nprotocols: files\nservices: files\n"
            .into(),
    );
    // The rest of /etc is binds and links (and the mount points they need): grouped.
    pl.group_attrs(etc, RO, groupable(etc), |pl| etc_binds(pl, spec));

    // Home directory on the root tmpfs (owned by the inside user, who runs the init).
    pl.mkdir(&spec.home, 0o755);

    // /run with the agentcage binary (the probe and bench run it inside), and /run/shm,
    // the directory bound onto /dev/shm.
    pl.mkdir(Path::new("/run"), 0o755);
    let run_shm = Path::new("/run/shm");
    pl.sticky_dir(run_shm);
    pl.ops.push(Op::Bind {
        src: cpath(NEWROOT, run_shm),
        dst: cpath(NEWROOT, &dev.join("shm")),
        attrs: RW,
        optional: false,
        grouped: false,
    });
    if let Some(exe) = &spec.self_exe {
        let attrs = sys::MOUNT_ATTR_RDONLY | sys::MOUNT_ATTR_NOSUID | sys::MOUNT_ATTR_NODEV;
        pl.bind(exe, Path::new(SELF_EXE), false, attrs, false);
    }

    // /tmp is a directory of the root tmpfs, not a tmpfs of its own: every writable
    // memory-backed place shares the root's size budget (a tmpfs per place would multiply
    // the limit by their number).
    pl.sticky_dir(Path::new("/tmp"));

    // The workspace and extras, shallowest first so nested ones land on top.
    pl.user_binds(&binds);
    let sockets = pl.mask_sockets(&binds, &spec.fresh_placeholders);
    pl.controls(spec, &binds);

    // /proc last among the top-level mounts so its masks can use our /dev/null.
    let proc_ = Path::new("/proc");
    pl.mkdir(proc_, 0o555);
    pl.ops.push(Op::Proc {
        target: cpath(NEWROOT, proc_),
        fresh: spec.fresh_proc,
    });
    if spec.fresh_proc {
        for f in PROC_MASKED_FILES {
            pl.ops.push(Op::ProcMask {
                dst: cpath(NEWROOT, Path::new(f)),
            });
        }
        for d in PROC_MASKED_DIRS {
            pl.ops.push(Op::Tmpfs {
                target: cpath(NEWROOT, Path::new(d)),
                flags: libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                data: c"mode=0555,size=0".to_owned(),
                readonly: true,
                optional: true,
            });
        }
        if let (Some(budget), true) = (spec.tmpfs_size, spec.own_ipc) {
            // SysV shared memory of the sandbox's own IPC namespace: without a memory cgroup
            // nothing else bounds it (shm pages are not RLIMIT_DATA). Before /proc/sys is made
            // read-only; these files show the IPC namespace of the writer, ours.
            let pages = budget.div_ceil(4096).max(1);
            for (f, v) in [
                ("/proc/sys/kernel/shmmax", budget),
                ("/proc/sys/kernel/shmall", pages),
            ] {
                pl.ops.push(Op::Sysctl {
                    path: cpath(NEWROOT, Path::new(f)),
                    value: CString::new(v.to_string()).unwrap_or_default(),
                });
            }
        }
        for d in PROC_READONLY {
            pl.ops.push(Op::Bind {
                src: cpath(NEWROOT, Path::new(d)),
                dst: cpath(NEWROOT, Path::new(d)),
                attrs: RO | sys::MOUNT_ATTR_NOEXEC,
                optional: true,
                grouped: false,
            });
        }
    }

    // Unless the caller bound something over /etc itself (`--ro /etc`): then that bind
    // is what /etc is, with the access the caller asked for.
    let etc_overridden = binds.iter().any(|(p, _, _)| p == etc);
    if !etc_overridden {
        pl.ops.push(Op::RemountRo {
            target: cpath(NEWROOT, etc),
            flags: libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV,
            data: c"mode=0755".to_owned(),
        });
    }
    // /dev is complete: read-only, so the agent cannot add files or fill it (its writable
    // /dev/shm is a bind from the root tmpfs). The same exception as /etc.
    if !binds.iter().any(|(p, _, _)| p == dev) {
        pl.ops.push(Op::RemountRo {
            target: cpath(NEWROOT, dev),
            flags: libc::MS_RDONLY | libc::MS_NOSUID,
            data: c"mode=0755".to_owned(),
        });
    }

    // Any component of that name, not only a leading one: a target through `..` could
    // resolve there too (one named so elsewhere is refused as well: fail closed, and rare).
    let name = OLDROOT.trim_start_matches('/').as_bytes();
    let oldroot_taken = pl.ops.iter().any(|op| {
        op.target()
            .to_bytes()
            .split(|&b| b == b'/')
            .any(|c| c == name)
    });
    PreparedRootfs {
        ops: pl.ops,
        oldroot: CString::new(OLDROOT).unwrap_or_default(),
        oldroot_rel: CString::new(OLDROOT.trim_start_matches('/')).unwrap_or_default(),
        oldroot_taken,
        mount_setattr: spec.mount_setattr,
        sockets,
        idmap: pl.idmap,
        idmap_decisions: pl.idmap_decisions,
        root_data: CString::new(format!("mode=0755{}", pl.size_opt)).unwrap_or_default(),
        stage: STAGE_CANDIDATES
            .iter()
            .find(|d| Path::new(d).is_dir())
            .and_then(|d| CString::new(*d).ok())
            .unwrap_or_else(|| c"/".to_owned()),
    }
}

/// The host's entries of /etc, bound read-only (or replicated as symlinks), and with the
/// host's network namespace its hosts and resolv.conf (else synthesized).
fn etc_binds(pl: &mut Planner, spec: &RootSpec) {
    let etc = Path::new("/etc");
    if spec.own_net {
        pl.write(
            &etc.join("hosts"),
            "127.0.0.1\tlocalhost\n127.0.1.1\tagentcage\n::1\tlocalhost ip6-localhost ip6-loopback\n".into(),
        );
        pl.write(
            &etc.join("resolv.conf"),
            if spec.resolver {
                crate::egress::RESOLV_CONF.into()
            } else {
                "# agentcage: no network (loopback only)\n".into()
            },
        );
    } else {
        for f in ["/etc/hosts", "/etc/resolv.conf"] {
            // Follow symlinks (resolv.conf often points into /run): bind the file itself.
            if let Ok(md) = std::fs::metadata(f) {
                pl.bind(Path::new(f), Path::new(f), md.is_dir(), RO, true);
            }
        }
    }
    let mut etc_entries: Vec<PathBuf> = ETC_FROM_HOST.iter().map(PathBuf::from).collect();
    // Distribution Python keeps its site configuration in /etc/python3.X.
    for name in sys::names_with_prefix(c"/etc", b"python").unwrap_or_default() {
        etc_entries.push(etc.join(name));
    }
    // In Path order (the key's order), comparing each pair without re-parsing components.
    etc_entries.sort_by_cached_key(|p| dir_key(p));
    for p in &etc_entries {
        pl.host_entry(p, RO);
    }
}

/// Whether the plan makes something at or below `dir` after its own entries (a bind of the
/// workspace or an extra, a control's target, the home directory), other than at or below
/// `except`: a mount below `dir` already attached by then (its mount points are made on it).
fn later_target_at_or_below(spec: &RootSpec, dir: &Path, except: Option<&Path>) -> bool {
    let c = &spec.controls;
    let at_or_below = |p: &Path, d: &Path| p.as_os_str() == d.as_os_str() || strictly_below(p, d);
    let at_or_below = |p: &Path| at_or_below(p, dir) && !except.is_some_and(|x| at_or_below(p, x));
    spec.binds.iter().any(|(p, _)| at_or_below(p))
        || at_or_below(&spec.workspace)
        || at_or_below(&spec.home)
        || c.masks.iter().chain(&c.tmpfs).any(|p| at_or_below(p))
        || c.binds.iter().any(|(_, d, _)| at_or_below(d))
}

#[cfg(test)]
mod forget_below_tests {
    use super::keys::key_str;
    use super::*;

    #[test]
    fn forgets_exactly_the_dirs_below_by_components() {
        let mut p = Planner::new();
        for d in [
            "/a", "/a/b", "/a/b/c", "/a-b", "/a.b", "/ab", "/b", "/a/z", "/0",
        ] {
            p.dirs.insert(dir_key(Path::new(d)));
        }
        p.forget_below_key(&dir_key(Path::new("/a")));
        let left: Vec<String> = p.dirs.iter().map(|d| key_str(d)).collect();
        // "/a-b" and "/a.b" sort before "/a/..." as bytes, after it by components: kept.
        assert_eq!(left, ["/", "/0", "/a", "/a-b", "/a.b", "/ab", "/b"]);
        p.forget_below_key(&dir_key(Path::new("/")));
        assert_eq!(p.dirs.len(), 1);
    }

    #[test]
    fn mkdir_makes_missing_parents_once_and_a_bind_hides_them() {
        let mut p = Planner::new();
        p.mkdir(Path::new("/x/y/z"), 0o700);
        p.mkdir(Path::new("/x/y"), 0o700);
        p.touch(Path::new("/x/y/f"));
        p.bind(Path::new("/h"), Path::new("/x"), true, RO, false);
        p.mkdir(Path::new("/x/y"), 0o700);
        let got: Vec<String> = p
            .ops
            .iter()
            .map(|o| match o {
                Op::Mkdir { path, mode } => format!("mkdir {} {mode:o}", path.to_string_lossy()),
                other => other.describe(),
            })
            .collect();
        assert_eq!(
            got,
            [
                "mkdir /x 755",
                "mkdir /x/y 755",
                "mkdir /x/y/z 700",
                "create mount point /x/y/f",
                "bind-mount /h onto /x (ro,nosuid,nodev)",
                // Below a bind nothing we made is known: made again (EEXIST is fine).
                "mkdir /x/y 700",
            ]
        );
    }
}
