//! Real Docker (issue #14): the nested rung inside `docker run` with the default seccomp
//! profile (no user namespaces there), as root in the container. The image is built locally,
//! no registry: `docker import` of an empty archive, with the host's /usr, /bin, /sbin, /lib,
//! /lib64 and /etc bound read-only at run time, a tmpfs /tmp, and the binary under test at
//! /opt/agentcage/agentcage. Checked: plain `run` refuses (125); `run --best-effort` runs the
//! nested rung as the workspace's owner (uid 1000) and shell, python, git and gcc work; the
//! host's /etc/shadow and the caller's environment stay unreadable; writes outside the
//! workspace and /tmp fail; a root-owned workspace is refused, then accepted with
//! `--allow-nested-root`; `agentcage probe` runs. Uses the default daemon when one answers,
//! else starts a private dockerd (its own data root and socket, no network setup) and stops
//! it. Skipped with the reason when docker is missing or dockerd cannot start; a failure then
//! when AGENTCAGE_TEST_EXPECT lists `docker`. Root only.

mod common;

use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{err, Env, Who};
use libtest_mimic::{Arguments, Failed, Trial};

fn is_root() -> bool {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() == 0 }
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}

/// A docker daemon to talk to: the default one, or a private one we started (and stop).
struct Daemon {
    host: Option<String>,
    dir: Option<PathBuf>,
    child: Option<Child>,
}

impl Daemon {
    fn docker(&self) -> Command {
        let mut c = Command::new("docker");
        if let Some(h) = &self.host {
            c.args(["-H", h]);
        }
        c
    }

    fn answers(&self) -> bool {
        self.docker()
            .arg("info")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    fn start() -> Result<Daemon, String> {
        if which("docker").is_none() {
            return Err("docker is not installed (Debian: apt-get install docker.io)".into());
        }
        let default = Daemon {
            host: None,
            dir: None,
            child: None,
        };
        if default.answers() {
            return Ok(default);
        }
        if which("dockerd").is_none() {
            return Err("no docker daemon answers and dockerd is not installed".into());
        }
        let dir = std::env::temp_dir().join(format!("agentcage-t-dockerd-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let sock = format!("unix://{}/sock", dir.display());
        let log = std::fs::File::create(dir.join("log")).map_err(|e| e.to_string())?;
        let child = Command::new("dockerd")
            .arg("--data-root")
            .arg(dir.join("data"))
            .arg("--exec-root")
            .arg(dir.join("exec"))
            .arg("--pidfile")
            .arg(dir.join("pid"))
            .args(["-H", &sock])
            .args([
                "--bridge=none",
                "--iptables=false",
                "--ip-masq=false",
                "--storage-driver=vfs",
            ])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("start dockerd: {e}"))?;
        let mut d = Daemon {
            host: Some(sock),
            dir: Some(dir.clone()),
            child: Some(child),
        };
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(30) {
            if d.answers() {
                return Ok(d);
            }
            if let Some(Ok(Some(st))) = d.child.as_mut().map(Child::try_wait) {
                let log = std::fs::read_to_string(dir.join("log")).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(3).collect();
                return Err(format!("dockerd exited ({st}): {}", tail.join(" | ")));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Err("dockerd did not answer within 30 s".into())
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(c) = &mut self.child {
            // SAFETY: our own child's pid; SIGTERM lets dockerd unmount and clean up.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let t = Instant::now();
            while t.elapsed() < Duration::from_secs(20) {
                if c.try_wait().ok().flatten().is_some() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        if let Some(d) = &self.dir {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

struct Image<'a> {
    daemon: &'a Daemon,
    tag: String,
}

impl Drop for Image<'_> {
    fn drop(&mut self) {
        let _ = self
            .daemon
            .docker()
            .args(["rmi", "-f", &self.tag])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

struct Run {
    code: i32,
    out: String,
    err: String,
}

fn docker_run(
    d: &Daemon,
    image: &str,
    vols: &[(&Path, &str)],
    env: &[&str],
    cmd: &[&str],
) -> Result<Run, Failed> {
    let mut c = d.docker();
    c.args(["run", "--rm", "--network", "none", "--user", "0"])
        .args(["--tmpfs", "/tmp:mode=1777"]);
    for p in ["/usr", "/bin", "/sbin", "/lib", "/lib64", "/etc"] {
        if Path::new(p).exists() {
            c.args(["-v", &format!("{p}:{p}:ro")]);
        }
    }
    c.args([
        "-v",
        &format!("{}:/opt/agentcage/agentcage:ro", common::binary().display()),
    ]);
    for (host, inside) in vols {
        c.args(["-v", &format!("{}:{inside}", host.display())]);
    }
    c.args(["-e", "PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"]);
    for e in env {
        c.args(["-e", e]);
    }
    c.arg(image).args(cmd);
    let o = c.output().map_err(err)?;
    Ok(Run {
        code: o.status.code().unwrap_or(-1),
        out: String::from_utf8_lossy(&o.stdout).into_owned(),
        err: String::from_utf8_lossy(&o.stderr).into_owned(),
    })
}

const AC: &str = "/opt/agentcage/agentcage";

fn battery(daemon: Daemon, env: &Env) -> Result<(), Failed> {
    let tag = format!("agentcage-nested-test:{}", std::process::id());
    let mut imp = daemon
        .docker()
        .args(["import", "-", &tag])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(err)?;
    // An empty tar archive: two zero blocks.
    imp.stdin
        .take()
        .ok_or("stdin")?
        .write_all(&[0u8; 10240])
        .map_err(err)?;
    let o = imp.wait_with_output().map_err(err)?;
    if !o.status.success() {
        return Err(format!("docker import: {}", String::from_utf8_lossy(&o.stderr)).into());
    }
    let image = Image {
        daemon: &daemon,
        tag: tag.clone(),
    };
    let ws = env.policy_dir()?;
    std::os::unix::fs::chown(ws.path(), Some(1000), Some(1000)).map_err(err)?;
    let ws0 = env.policy_dir()?; // root-owned 0755
    let vols = [(ws.path(), "/ws"), (ws0.path(), "/ws0")];

    // Plain run: full cannot be enforced in the container, and never degrades silently.
    let r = docker_run(
        &daemon,
        &image.tag,
        &vols,
        &[],
        &[AC, "run", "-w", "/ws", "--", "true"],
    )?;
    if r.code != 125 || !r.err.contains("--best-effort") {
        return Err(format!("plain run in docker: {} {}", r.code, r.err).into());
    }

    let script = "set -e; echo shell-ok; python3 -c 'print(\"python-ok\")'; \
        git init -q . && echo a > a && git add a && \
        git -c user.email=a@b -c user.name=a commit -qm one && echo git-ok; \
        printf '#include <stdio.h>\\nint main(void){puts(\"gcc-ok\");return 0;}\\n' > /tmp/h.c; \
        gcc -o h /tmp/h.c && ./h; \
        cat /etc/shadow >/dev/null 2>&1 && echo READ-SHADOW; \
        env | grep -q AGENTCAGE_T_SECRET && echo READ-ENV; \
        (echo x > /planted) 2>/dev/null && echo WROTE-ROOT; \
        (echo x > /etc/planted) 2>/dev/null && echo WROTE-ETC; \
        id -u";
    let r = docker_run(
        &daemon,
        &image.tag,
        &vols,
        &["AGENTCAGE_T_SECRET=hunter2"],
        &[
            AC,
            "run",
            "--best-effort",
            "-w",
            "/ws",
            "--",
            "sh",
            "-c",
            script,
        ],
    )?;
    let want = "shell-ok\npython-ok\ngit-ok\ngcc-ok\n1000\n";
    if r.code != 0 || r.out != want || !r.err.contains("nested rung") {
        return Err(format!(
            "nested battery in docker: exit {}\nstdout {:?} (want {want:?})\nstderr {}",
            r.code, r.out, r.err
        )
        .into());
    }
    if std::fs::metadata(ws.path().join("a")).map_err(err)?.uid() != 1000 {
        return Err("the workspace file is not uid 1000's".into());
    }

    // A root-owned workspace: refused, then accepted with the explicit flag.
    let r = docker_run(
        &daemon,
        &image.tag,
        &vols,
        &[],
        &[AC, "run", "--best-effort", "-w", "/ws0", "--", "true"],
    )?;
    if r.code != 125 || !r.err.contains("--allow-nested-root") {
        return Err(format!("root-owned workspace: {} {}", r.code, r.err).into());
    }
    let r = docker_run(
        &daemon,
        &image.tag,
        &vols,
        &[],
        &[
            AC,
            "run",
            "--best-effort",
            "-q",
            "--allow-nested-root",
            "-w",
            "/ws0",
            "--",
            "sh",
            "-c",
            "id -u; grep CapBnd /proc/self/status; echo x > /ws0/f",
        ],
    )?;
    if r.code != 0 || r.out != "0\nCapBnd:\t0000000000000000\n" {
        return Err(format!("--allow-nested-root: {} {:?} {}", r.code, r.out, r.err).into());
    }

    // The probe under the nested rung (its summary is printed for the record).
    let r = docker_run(
        &daemon,
        &image.tag,
        &vols,
        &[],
        &[
            AC,
            "run",
            "--best-effort",
            "-q",
            "-w",
            "/ws",
            "--",
            AC,
            "probe",
            "--format",
            "text",
        ],
    )?;
    if r.code != 0 {
        return Err(format!("probe in docker: {} {} {}", r.code, r.out, r.err).into());
    }
    eprintln!("docker: agentcage probe under the nested rung:\n{}", r.out);
    drop(image);
    Ok(())
}

fn main() {
    let args = Arguments::from_args();
    let name = "docker::root::nested_battery";
    // The daemon is found (or started) before the trial, so a missing one marks the trial
    // ignored with the reason; the trial owns it and stops a private one when done.
    let daemon = if is_root() {
        Daemon::start()
    } else {
        Err("needs root (docker)".to_string())
    };
    let trial = match daemon {
        Ok(d) => Trial::test(name, move || battery(d, &Env::new(Who::Root)?)),
        // A missing root never fails (like the cgroup tier).
        Err(why) if !is_root() => {
            eprintln!("skip {name}: {why}");
            Trial::test(name, || Ok(())).with_ignored_flag(true)
        }
        Err(why) if common::expected("docker") => Trial::test(name, move || {
            Err(format!("AGENTCAGE_TEST_EXPECT lists docker but: {why}").into())
        }),
        Err(why) => {
            eprintln!("skip {name}: {why}");
            Trial::test(name, || Ok(())).with_ignored_flag(true)
        }
    };
    common::run(&args, vec![trial])
}
