//! Sandbox tier: the composed root's mounts (red-team findings of 2026-12-02): read-only
//! binds stay read-only even for a command that keeps its capabilities, the host's device
//! nodes and /proc facts stay out of reach, no mount propagates in from the host, and one
//! size budget covers every writable memory-backed place. Root and uid 65534, like
//! sandbox.rs.

mod common;

use std::os::unix::fs::MetadataExt;

use common::{Env, TestFn};
use libtest_mimic::{Arguments, Failed};

fn is_root() -> bool {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// ns-only keeps every capability in the sandbox's user namespace; `mount -o
/// remount,bind,rw` of a --ro bind must still fail (the mounts are locked), and nothing
/// may land in the read-only dir on the host.
fn readonly_binds_stay_readonly_with_caps(env: &Env) -> Result<(), Failed> {
    let ws = env.workspace()?;
    let ro = env.workspace()?; // owned by the sandbox user: only the mount can refuse
    let script = format!(
        "mount -o remount,bind,rw {0} 2>/dev/null && echo remounted; \
         mount -o remount,bind,rw /usr 2>/dev/null && echo usr-remounted; \
         umount /proc/kcore 2>/dev/null && echo unmasked; \
         mount -o remount,bind,rw /etc/ld.so.cache 2>/dev/null && echo etc-remounted; \
         mount -o remount,bind,rw,exec /dev/null 2>/dev/null && echo dev-remounted; \
         umount /proc/interrupts 2>/dev/null && echo unmasked-chained; \
         umount -l {0} 2>/dev/null && echo unmounted; \
         echo x > {0}/planted 2>/dev/null && echo written; echo done",
        ro.s()
    );
    for args in [
        vec!["-p", "ns-only"],
        // An ablation that keeps the capabilities under full's other layers but seccomp.
        vec!["-p", "full", "--without", "caps", "--without", "seccomp"],
    ] {
        let mut a = vec!["run"];
        a.extend(&args);
        a.extend(["-w", ws.s(), "--ro", ro.s(), "--", "sh", "-c", &script]);
        let out = env.run(&a)?;
        let what = args.join(" ");
        out.expect_code(0, &what)?;
        if out.stdout.trim() != "done" {
            return Err(format!("{what}: {}", out.stdout).into());
        }
        if ro.path().join("planted").exists() {
            return Err(format!("{what}: a file landed in the read-only dir").into());
        }
    }
    Ok(())
}

/// The host's /dev/null is bound in; the agent may write it but not change its inode.
fn host_device_nodes_untouched(env: &Env) -> Result<(), Failed> {
    let ws = env.workspace()?;
    let before = std::fs::metadata("/dev/null").map_err(|e| e.to_string())?;
    for p in ["ns-only", "landlock", "full"] {
        let out = env.run(&[
            "run",
            "-p",
            p,
            "-w",
            ws.s(),
            "--",
            "sh",
            "-c",
            "echo x > /dev/null && echo write-ok; touch -d 2001-01-01 /dev/null 2>/dev/null; \
             touch /dev/null 2>/dev/null; touch /dev/planted 2>/dev/null && echo dev-writable; true",
        ])?;
        out.expect_code(0, p)?;
        if out.stdout.trim() != "write-ok" {
            return Err(format!("{p}: {}", out.stdout).into());
        }
    }
    let after = std::fs::metadata("/dev/null").map_err(|e| e.to_string())?;
    if (after.mtime(), after.mtime_nsec()) != (before.mtime(), before.mtime_nsec()) {
        return Err("the host's /dev/null mtime changed".into());
    }
    Ok(())
}

/// Host facts an agent has no need for: the boot command line, interrupts, modules,
/// kernel symbols. Empty or unreadable inside (with a pid namespace: a fresh /proc).
fn proc_host_facts_masked(env: &Env) -> Result<(), Failed> {
    let ws = env.workspace()?;
    for p in ["ns-only", "full"] {
        let out = env.run(&[
            "run",
            "-p",
            p,
            "-w",
            ws.s(),
            "--",
            "sh",
            "-c",
            "for f in cmdline interrupts modules kallsyms; do \
             n=$(cat /proc/$f 2>/dev/null | wc -c); echo $f=$n; done",
        ])?;
        out.expect_code(0, p)?;
        for line in out.stdout.lines() {
            if !line.ends_with("=0") {
                return Err(format!("{p}: {line} readable\n{}", out.stdout).into());
            }
        }
    }
    Ok(())
}

/// One budget: with --memory 32M, /tmp and /dev/shm together hold less than 32M (each had
/// its own 32M tmpfs before), and SysV shm of the sandbox's IPC namespace is capped too.
fn one_budget_for_tmpfs_and_shm(env: &Env) -> Result<(), Failed> {
    let ws = env.workspace()?;
    let host_shmmax = std::fs::read_to_string("/proc/sys/kernel/shmmax").unwrap_or_default();
    let out = env.run(&[
        "run",
        "-p",
        "full",
        "--memory",
        "32M",
        "-w",
        ws.s(),
        "--",
        "sh",
        "-c",
        "cat /proc/sys/kernel/shmmax; \
         dd if=/dev/zero of=/tmp/a bs=1M count=24 2>/dev/null; \
         dd if=/dev/zero of=/dev/shm/b bs=1M count=24 2>/dev/null; \
         echo total=$(( $(stat -c %s /tmp/a) + $(stat -c %s /dev/shm/b) ))",
    ])?;
    // As root a memory cgroup charges tmpfs pages: it may OOM-kill the writer instead.
    if out.code == 137 && is_root() {
        return Ok(());
    }
    out.expect_code(0, "full --memory 32M")?;
    let mut lines = out.stdout.lines();
    if lines.next() != Some("33554432") {
        return Err(format!("shmmax inside is not the budget: {}", out.stdout).into());
    }
    let total: u64 = lines
        .find_map(|l| l.strip_prefix("total="))
        .and_then(|t| t.parse().ok())
        .ok_or_else(|| format!("no total: {}", out.stdout))?;
    if total > 32 << 20 {
        return Err(format!("/tmp + /dev/shm hold {total} bytes under a 32M budget").into());
    }
    if std::fs::read_to_string("/proc/sys/kernel/shmmax").unwrap_or_default() != host_shmmax {
        return Err("the host's kernel.shmmax changed".into());
    }
    Ok(())
}

/// A mount the host makes under a bound tree after the sandbox started must not appear
/// inside (the sandbox's mounts are private, not slaves of the host's). Root only: the
/// test mounts a tmpfs on the host, under its own scratch dir, and unmounts it.
fn host_mounts_do_not_propagate_in(env: &Env) -> Result<(), Failed> {
    let ws = env.workspace()?;
    let sub = ws.path().join("sub");
    std::fs::create_dir(&sub).map_err(|e| e.to_string())?;
    env.chown_to_sandbox(&sub)?;
    let script = format!(
        "i=0; while [ ! -e {0}/go ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done; \
         if [ -e {0}/sub/marker ]; then echo propagated; else echo private; fi",
        ws.s()
    );
    let child = std::process::Command::new(common::binary())
        .args([
            "run",
            "-p",
            "ns-only",
            "-w",
            ws.s(),
            "--",
            "sh",
            "-c",
            &script,
        ])
        .current_dir("/")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    // Give the sandbox time to compose its root, then mount on the host.
    std::thread::sleep(std::time::Duration::from_millis(500));
    let target =
        std::ffi::CString::new(sub.to_str().unwrap_or_default()).map_err(|e| e.to_string())?;
    // SAFETY: all pointers are live C strings or null.
    let rc = unsafe {
        libc::mount(
            c"tmpfs".as_ptr(),
            target.as_ptr(),
            c"tmpfs".as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(format!(
            "mount tmpfs on the test's scratch dir: {}",
            std::io::Error::last_os_error()
        )
        .into());
    }
    let r = std::fs::write(sub.join("marker"), "x")
        .and_then(|()| std::fs::write(ws.path().join("go"), ""));
    let out = child.wait_with_output();
    // SAFETY: target is a live C string.
    unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
    r.map_err(|e| e.to_string())?;
    let out = out.map_err(|e| e.to_string())?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if stdout.trim() != "private" {
        return Err(format!("{} / {}", stdout, String::from_utf8_lossy(&out.stderr)).into());
    }
    Ok(())
}

fn main() {
    let args = Arguments::from_args();
    let tests: &[(&str, TestFn, bool)] = &[
        (
            "readonly_binds_stay_readonly_with_caps",
            readonly_binds_stay_readonly_with_caps,
            false,
        ),
        (
            "host_device_nodes_untouched",
            host_device_nodes_untouched,
            false,
        ),
        ("proc_host_facts_masked", proc_host_facts_masked, false),
        (
            "one_budget_for_tmpfs_and_shm",
            one_budget_for_tmpfs_and_shm,
            false,
        ),
        (
            "host_mounts_do_not_propagate_in",
            host_mounts_do_not_propagate_in,
            true,
        ),
    ];
    common::run(&args, common::trials_by_user(tests))
}
