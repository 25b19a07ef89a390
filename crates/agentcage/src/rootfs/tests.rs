use super::plan::pins;
use super::*;

/// A plain spec for workspace `ws` (no extras), shared with other modules' tests.
pub(crate) fn spec(ws: &str) -> RootSpec {
    RootSpec {
        idmap: None,
        workspace: PathBuf::from(ws),
        binds: vec![],
        fresh_placeholders: vec![],
        self_exe: None,
        uid: 0,
        gid: 0,
        home: PathBuf::from("/root"),
        fresh_proc: true,
        own_net: true,
        mount_setattr: true,
        tmpfs_size: None,
        own_ipc: true,
        controls: Default::default(),
        resolver: false,
        overlay: None,
    }
}

fn idx(p: &PreparedRootfs, pred: impl Fn(&Op) -> bool) -> usize {
    p.ops.iter().position(pred).expect("op present")
}

#[test]
fn workspace_under_tmp_is_bound_after_tmp_is_made() {
    let p = prepare(&spec("/tmp/ws/proj"));
    let tmp = idx(
        &p,
        |o| matches!(o, Op::Chmod { path, .. } if path.as_bytes() == b"/tmp"),
    );
    let mk = idx(
        &p,
        |o| matches!(o, Op::Mkdir { path, .. } if path.as_bytes() == b"/tmp/ws/proj"),
    );
    let bind = idx(
        &p,
        |o| matches!(o, Op::Bind { dst, .. } if dst.as_bytes() == b"/tmp/ws/proj"),
    );
    assert!(tmp < mk && mk < bind, "{tmp} {mk} {bind}");
    match &p.ops[bind] {
        Op::Bind { src, attrs, .. } => {
            assert_eq!(src.as_bytes(), b"/.agentcage-oldroot/tmp/ws/proj");
            assert_eq!(attrs & sys::MOUNT_ATTR_RDONLY, 0);
        }
        _ => unreachable!(),
    }
}

#[test]
fn system_dirs_are_readonly_or_symlinks() {
    let p = prepare(&spec("/tmp/ws"));
    for d in SYSTEM_DIRS {
        let Ok(md) = std::fs::symlink_metadata(d) else {
            continue;
        };
        let target = d.to_string();
        let found = p.ops.iter().any(|o| match o {
            Op::Bind { dst, attrs, .. } => {
                dst.as_bytes() == target.as_bytes() && attrs & sys::MOUNT_ATTR_RDONLY != 0
            }
            Op::Symlink { link, .. } => {
                md.file_type().is_symlink() && link.as_bytes() == target.as_bytes()
            }
            _ => false,
        });
        assert!(found, "{d} missing from the plan");
    }
}

#[test]
fn nothing_is_created_under_a_later_mount() {
    // Every Mkdir/Touch/Write under a tmpfs or bind target must come after that mount.
    let p = prepare(&spec("/tmp/a/b"));
    let mounts: Vec<(usize, String)> = p
        .ops
        .iter()
        .enumerate()
        .filter_map(|(i, o)| match o {
            Op::Tmpfs { target, .. } => Some((i, target.to_string_lossy().into_owned())),
            Op::Bind { dst, .. } => Some((i, dst.to_string_lossy().into_owned())),
            _ => None,
        })
        .collect();
    for (i, o) in p.ops.iter().enumerate() {
        let path = match o {
            Op::Mkdir { path, .. } | Op::Touch { path } | Op::WriteFile { path, .. } => path,
            _ => continue,
        };
        let path = path.to_string_lossy();
        for (mi, m) in &mounts {
            if path.starts_with(&format!("{m}/")) {
                assert!(i > *mi, "{path} created before mount {m}");
            }
        }
    }
}

#[test]
fn one_tmpfs_budget_for_every_writable_place() {
    let mut sp = spec("/tmp/ws");
    sp.tmpfs_size = Some(1 << 20);
    let p = prepare(&sp);
    assert!(p.root_data.to_bytes().ends_with(b",size=1048576"));
    // /tmp is a sticky dir of the root tmpfs, /dev/shm a bind of another one: no
    // writable tmpfs of their own (each would get the whole budget again).
    for o in &p.ops {
        if let Op::Tmpfs { target, .. } = o {
            let t = target.to_bytes();
            assert!(
                t == b"/dev" || t == b"/etc" || t.starts_with(b"/proc/"),
                "unexpected tmpfs {target:?}"
            );
        }
    }
    for d in ["/tmp", "/run/shm"] {
        assert!(
            p.ops.iter().any(
                |o| matches!(o, Op::Chmod { path, mode: 0o1777 } if path.to_bytes() == d.as_bytes())
            ),
            "{d} is not a sticky dir"
        );
    }
    assert!(p.ops.iter().any(|o| matches!(o,
        Op::Bind { src, dst, .. } if src.to_bytes() == b"/run/shm" && dst.to_bytes() == b"/dev/shm")));
    // /dev and /etc end read-only.
    for d in ["/dev", "/etc"] {
        assert!(
            p.ops.iter().any(|o| matches!(o, Op::RemountRo { target, flags, .. } if target.to_bytes() == d.as_bytes() && flags & libc::MS_RDONLY != 0)),
            "{d} not remounted read-only"
        );
    }
    // SysV shm of the own IPC namespace gets the same budget, never the host's.
    let shm: Vec<_> = p
        .ops
        .iter()
        .filter_map(|o| match o {
            Op::Sysctl { path, value } => {
                Some((path.to_bytes().to_vec(), value.to_bytes().to_vec()))
            }
            _ => None,
        })
        .collect();
    assert!(
        shm.contains(&(b"/proc/sys/kernel/shmall".to_vec(), b"256".to_vec())),
        "{shm:?}"
    );
    sp.own_ipc = false;
    assert!(!prepare(&sp)
        .ops
        .iter()
        .any(|o| matches!(o, Op::Sysctl { .. })));
    let unlimited = prepare(&spec("/tmp/ws"));
    assert_eq!(unlimited.root_data.to_bytes(), b"mode=0755");
    assert!(!unlimited.ops.iter().any(|o| matches!(o, Op::Sysctl { .. })));
}

#[test]
fn device_nodes_are_read_only_binds() {
    let p = prepare(&spec("/tmp/ws"));
    let mut n = 0;
    for o in &p.ops {
        if let Op::Bind { dst, attrs, .. } = o {
            if dst.to_bytes().starts_with(b"/dev/") && !dst.to_bytes().ends_with(b"/shm") {
                assert_ne!(attrs & sys::MOUNT_ATTR_RDONLY, 0, "{dst:?} writable");
                assert_eq!(attrs & sys::MOUNT_ATTR_NODEV, 0, "{dst:?} nodev");
                n += 1;
            }
        }
    }
    assert!(n >= 3, "{n} device binds");
}

#[test]
fn pins_are_the_dirs_between() {
    let v = pins(Path::new("/w"), Path::new("/w/.git/modules/a/hooks"));
    let want: Vec<PathBuf> = ["/w/.git", "/w/.git/modules", "/w/.git/modules/a"]
        .iter()
        .map(PathBuf::from)
        .collect();
    assert_eq!(v, want);
    assert!(pins(Path::new("/w"), Path::new("/w/x")).is_empty());
    // Not below the root, or the root itself: nothing to pin.
    assert!(pins(Path::new("/w"), Path::new("/wx/a/b")).is_empty());
    assert!(pins(Path::new("/w"), Path::new("/w")).is_empty());
    assert_eq!(
        pins(Path::new("/"), Path::new("/a/b/c")),
        [PathBuf::from("/a"), PathBuf::from("/a/b")]
    );
}

#[test]
fn nested_binds_pin_their_ancestors() {
    // A read-only bind two levels below the workspace: its parent is pinned (once, even
    // for two protected paths), then it is bound by fd; a bind outside stays plain.
    let mut sp = spec("/w");
    sp.binds = vec![
        (PathBuf::from("/w/.git/hooks"), false),
        (PathBuf::from("/w/.git/config"), false),
        (PathBuf::from("/opt/x"), false),
    ];
    let p = prepare(&sp);
    let pinned: Vec<(String, u64)> = p
        .ops
        .iter()
        .filter_map(|o| match o {
            Op::PinnedBind { dst, attrs, .. } => Some((dst.to_string_lossy().into_owned(), *attrs)),
            _ => None,
        })
        .collect();
    assert_eq!(
        pinned,
        vec![
            ("/w/.git".to_string(), RW),
            ("/w/.git/hooks".to_string(), RO),
            ("/w/.git/config".to_string(), RO),
        ]
    );
    let ws = idx(
        &p,
        |o| matches!(o, Op::Bind { dst, .. } if dst.as_bytes() == b"/w"),
    );
    let pin = idx(
        &p,
        |o| matches!(o, Op::PinnedBind { dst, .. } if dst.as_bytes() == b"/w/.git"),
    );
    assert!(ws < pin);
    // Nothing is created below the workspace (it would land on the host).
    assert!(!p.ops.iter().any(|o| matches!(o,
        Op::Mkdir { path, .. } | Op::Touch { path } if path.to_bytes().starts_with(b"/w/"))));
    assert!(p
        .ops
        .iter()
        .any(|o| matches!(o, Op::Bind { dst, .. } if dst.as_bytes() == b"/opt/x")));
}

#[test]
fn sockets_under_ro_binds_are_masked() {
    let d = std::env::temp_dir().join(format!("agentcage-rootfs-sock-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(d.join("a/rw")).expect("mkdir");
    let _l1 = std::os::unix::net::UnixListener::bind(d.join("a/S")).expect("bind");
    let _l2 = std::os::unix::net::UnixListener::bind(d.join("a/rw/S")).expect("bind");
    let mut sp = spec("/w");
    sp.binds = vec![(d.join("a"), false), (d.join("a/rw"), true)];
    let p = prepare(&sp);
    let masked: Vec<String> = p
        .ops
        .iter()
        .filter_map(|o| match o {
            Op::MaskSocket { dst } => Some(dst.to_string_lossy().into_owned()),
            _ => None,
        })
        .collect();
    let _ = std::fs::remove_dir_all(&d);
    // The one below the writable bind stays: the caller asked for it writable.
    assert_eq!(masked, vec![format!("{}", d.join("a/S").display())]);
    assert_eq!(p.sockets.masked, vec![d.join("a/S")]);
    assert!(p.sockets.truncated.is_empty());
}

#[test]
fn workspace_checks() {
    assert!(check_workspace(Path::new("/")).is_err());
    assert!(check_workspace(Path::new("/usr")).is_err());
    assert!(check_workspace(Path::new("/home/u/p")).is_ok());
}

#[test]
fn a_target_below_the_host_roots_mount_point_is_refused() {
    // The host root is mounted at OLDROOT in the root tmpfs while the plan runs: a plan
    // target there would be made in the host's tree. The child refuses such a plan before
    // any mount (apply's first check), and the message says why.
    let ok = prepare(&spec("/tmp/ws"));
    assert!(!ok.oldroot_taken);
    assert!(ok
        .ops
        .iter()
        .all(|o| !o.target().to_bytes().starts_with(b"/.agentcage-oldroot")));
    for ws in [
        "/.agentcage-oldroot/ws",
        "/.agentcage-oldroot",
        "/x/../.agentcage-oldroot/ws",
        "/home/.agentcage-oldroot",
    ] {
        let p = prepare(&spec(ws));
        assert!(p.oldroot_taken, "{ws}");
        let msg = describe(Some(&p), Step::PivotStage, 0);
        assert!(msg.contains("component named .agentcage-oldroot"), "{msg}");
    }
    // A sibling whose name only starts the same is no collision.
    let mut sp = spec("/tmp/ws");
    sp.binds = vec![(PathBuf::from("/.agentcage-oldroot-x"), false)];
    assert!(!prepare(&sp).oldroot_taken);
}

#[test]
fn the_host_paths_the_child_names_lie_under_the_old_root() {
    // apply() names the host's /dev/null (socket masks) and /proc (no pid namespace) by
    // constant paths: a stale prefix would make every mask fail (a missing source is a setup
    // error, apply's mask_socket) and the proc bind fail.
    for (c, rest) in [(OLDROOT_DEV_NULL, "/dev/null"), (OLDROOT_PROC, "/proc")] {
        assert_eq!(c.to_str(), Ok(format!("{OLDROOT}{rest}").as_str()));
    }
}

#[test]
fn a_fresh_placeholder_is_neither_stated_nor_scanned() {
    let d = std::env::temp_dir().join(format!("agentcage-rootfs-fresh-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(d.join("ws/.git")).expect("mkdir");
    // A writer of the workspace put a socket in the placeholder since it was made.
    let _l = std::os::unix::net::UnixListener::bind(d.join("ws/.git/S")).expect("bind");
    let ws = d.join("ws");
    let (git, gone) = (ws.join(".git"), ws.join(".vscode"));
    let plan = |fresh: bool| {
        let mut sp = spec(ws.to_str().expect("utf-8 temp dir"));
        sp.binds = vec![(git.clone(), false), (gone.clone(), false)];
        if fresh {
            sp.fresh_placeholders = vec![(git.clone(), true), (gone.clone(), true)];
        }
        prepare(&sp)
    };
    let (stale, fresh) = (plan(false), plan(true));
    // Below a read-only workspace (no writable bind around it) the scan stays.
    let mut sp = spec(ws.to_str().expect("utf-8 temp dir"));
    sp.controls.read_only = true;
    sp.binds = vec![(git.clone(), false)];
    sp.fresh_placeholders = vec![(git.clone(), true)];
    let ro = prepare(&sp);
    let _ = std::fs::remove_dir_all(&d);
    let c = |p: &Path| CString::new(p.as_os_str().as_encoded_bytes()).expect("no NUL");
    // Not fresh: the socket is masked. Fresh: not scanned (and no stat: its kind comes
    // from the launcher); both are still bound read-only by fd with no symlink followed.
    assert_eq!(stale.sockets.masked, vec![git.join("S")]);
    assert!(fresh.sockets.masked.is_empty());
    assert!(!fresh.ops.iter().any(|o| matches!(o, Op::MaskSocket { .. })));
    for p in [&git, &gone] {
        assert!(fresh.ops.iter().any(
            |o| matches!(o, Op::PinnedBind { dst, attrs, .. } if *dst == c(p) && *attrs == RO)
        ));
    }
    assert_eq!(ro.sockets.masked, vec![git.join("S")]);
}

/// The plan's grouped binds below `dir` and the index of the group's setattr, if any.
fn group_of(p: &PreparedRootfs, dir: &str) -> (Vec<usize>, Option<(usize, u64)>) {
    let below = |c: &CStr| c.to_bytes().starts_with(format!("{dir}/").as_bytes());
    let grouped = (p.ops.iter().enumerate())
        .filter(|(_, o)| matches!(o, Op::Bind { dst, grouped: true, .. } if below(dst)))
        .map(|(i, _)| i)
        .collect();
    let set = (p.ops.iter().enumerate()).find_map(|(i, o)| match o {
        Op::SetAttrs { target, attrs } if target.to_bytes() == dir.as_bytes() => Some((i, *attrs)),
        _ => None,
    });
    (grouped, set)
}

#[test]
fn etc_and_dev_binds_take_their_attributes_from_one_setattr_after_them() {
    // A workspace on the host's /dev/shm lands on the sandbox's /dev/shm (a bind made before
    // it): /dev still groups.
    let mut s = spec("/dev/shm/ws");
    s.own_net = false;
    let p = prepare(&s);
    for (dir, attrs) in [
        ("/etc", RO),
        (
            "/dev",
            sys::MOUNT_ATTR_RDONLY | sys::MOUNT_ATTR_NOSUID | sys::MOUNT_ATTR_NOEXEC,
        ),
    ] {
        let (grouped, set) = group_of(&p, dir);
        let (at, got) = set.unwrap_or_else(|| panic!("no setattr of {dir}"));
        assert_eq!(got, attrs, "{dir}");
        assert!(!grouped.is_empty(), "{dir}: nothing grouped");
        // Every bind below the dir before its setattr is in the group, with the group's
        // attributes, and nothing below it is created or mounted after it but devpts (which
        // must stay writable, so it comes after) and /dev/shm (mounted on an existing dir)
        // with what lands on it.
        for (i, o) in p.ops.iter().enumerate() {
            let t = o.target().to_bytes();
            if !t.starts_with(format!("{dir}/").as_bytes()) {
                continue;
            }
            if i < at {
                if let Op::Bind { grouped, attrs, .. } = o {
                    assert!(*grouped && *attrs == got, "{}", o.describe());
                }
            } else {
                assert!(
                    matches!(o, Op::Devpts { .. }) && t == b"/dev/pts"
                        || t == b"/dev/shm"
                        || t.starts_with(b"/dev/shm/"),
                    "after the setattr of {dir}: {}",
                    o.describe()
                );
            }
        }
    }
    // Without mount_setattr (a remount per bind), or with a later mount point to make on
    // the dir (read-only after the setattr), each bind sets its own.
    let mut old = spec("/tmp/ws");
    old.mount_setattr = false;
    let mut under = spec("/tmp/ws");
    under.binds = vec![("/etc/hostname".into(), false), ("/dev/kvm".into(), true)];
    for (s, what) in [
        (old, "no mount_setattr"),
        (under, "binds under /etc and /dev"),
    ] {
        let p = prepare(&s);
        for dir in ["/etc", "/dev"] {
            assert_eq!(group_of(&p, dir), (vec![], None), "{what}: {dir}");
        }
        assert!(p
            .ops
            .iter()
            .any(|o| matches!(o, Op::Bind { dst, grouped: false, .. }
            if dst.to_bytes() == b"/dev/null")));
    }
}

#[test]
fn proc_files_are_masked_by_the_chained_mask_op() {
    let p = prepare(&spec("/tmp/ws"));
    let masks: Vec<&[u8]> = (p.ops.iter())
        .filter_map(|o| match o {
            Op::ProcMask { dst } => Some(dst.to_bytes()),
            _ => None,
        })
        .collect();
    let want: Vec<&[u8]> = PROC_MASKED_FILES.iter().map(|f| f.as_bytes()).collect();
    assert_eq!(masks, want);
    assert!(!p.ops.iter().any(|o| matches!(o, Op::Bind { dst, .. }
        if dst.to_bytes().starts_with(b"/proc/") && PROC_MASKED_FILES.iter().any(|f| f.as_bytes() == dst.to_bytes()))));
    let mut host_proc = spec("/tmp/ws");
    host_proc.fresh_proc = false;
    assert!(!prepare(&host_proc)
        .ops
        .iter()
        .any(|o| matches!(o, Op::ProcMask { .. })));
}
