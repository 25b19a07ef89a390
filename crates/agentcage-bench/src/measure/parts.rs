//! The bench's moving parts: the spawner, progress line, series, throughput, phases and reaper.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, IsTerminal, Write};
use std::os::fd::AsFd;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::plan::{Contender, Launcher, TrueKind};
use crate::report::{PhaseTime, Startup};
use crate::stats::{Rng, Summary};
use crate::sys::{self, CArgs};

/// Launches prebuilt argvs and times them.
pub(super) struct Spawner {
    pub(super) devnull: File,
    pub(super) envp: CArgs,
}

/// One finished launch.
pub(super) struct Launch {
    pub(super) ns: f64,
    pub(super) reaped: sys::Reaped,
}

impl Spawner {
    pub(super) fn new() -> anyhow::Result<Spawner> {
        let devnull = File::options()
            .read(true)
            .write(true)
            .open("/dev/null")
            .context("open /dev/null")?;
        let envp = CArgs::new(std::env::vars_os().map(|(k, v)| {
            let mut kv = k.into_encoded_bytes();
            kv.push(b'=');
            kv.extend(v.into_encoded_bytes());
            kv
        }))
        .context("environment contains a NUL byte")?;
        Ok(Spawner { devnull, envp })
    }

    /// Spawns `argv` and waits for it: the timed launch-to-exit path.
    pub(super) fn run(&self, argv: &CArgs) -> io::Result<Launch> {
        let start = Instant::now();
        let pid = sys::spawn(argv, &self.envp, self.devnull.as_fd())?;
        let reaped =
            sys::wait(pid, 0)?.ok_or_else(|| io::Error::other("waitpid returned no child"))?;
        let ns = start.elapsed().as_nanos() as f64;
        Ok(Launch { ns, reaped })
    }

    /// `n` launches of `argv` with at most `concurrency` in flight. Returns the elapsed time
    /// and the number of non-zero exits. Children are waited for by pid (via pidfds), never
    /// with `wait(-1)`, so other children of this process are left alone.
    pub(super) fn burst(
        &self,
        argv: &CArgs,
        n: u32,
        concurrency: u32,
    ) -> io::Result<(Duration, u32)> {
        struct InFlight {
            pid: libc::pid_t,
            pidfd: Option<std::os::fd::OwnedFd>,
        }
        let mut flight: Vec<InFlight> = Vec::with_capacity(concurrency as usize);
        let mut pfds: Vec<libc::pollfd> = Vec::with_capacity(concurrency as usize);
        let (mut launched, mut done, mut failures) = (0u32, 0u32, 0u32);
        let start = Instant::now();
        let result = (|| -> io::Result<()> {
            while done < n {
                while flight.len() < concurrency as usize && launched < n {
                    let pid = sys::spawn(argv, &self.envp, self.devnull.as_fd())?;
                    launched += 1;
                    // Without pidfds (Linux < 5.3) we fall back to waiting for the oldest.
                    flight.push(InFlight {
                        pid,
                        pidfd: sys::pidfd_open(pid).ok(),
                    });
                }
                let mut ready: Vec<usize> = Vec::new();
                if flight.iter().all(|f| f.pidfd.is_some()) {
                    pfds.clear();
                    pfds.extend(flight.iter().map(|f| libc::pollfd {
                        fd: f.pidfd.as_ref().map_or(-1, |fd| fd.as_raw_fd()),
                        events: libc::POLLIN,
                        revents: 0,
                    }));
                    sys::poll(&mut pfds, -1)?;
                    ready.extend(
                        pfds.iter()
                            .enumerate()
                            .filter(|(_, p)| p.revents != 0)
                            .map(|(i, _)| i),
                    );
                } else {
                    ready.push(0);
                }
                for &i in ready.iter().rev() {
                    let f = flight.swap_remove(i);
                    let r = sys::wait(f.pid, 0)?
                        .ok_or_else(|| io::Error::other("waitpid returned no child"))?;
                    done += 1;
                    if r.exit_code() != 0 {
                        failures += 1;
                    }
                }
            }
            Ok(())
        })();
        let elapsed = start.elapsed();
        // On error, never leave zombies or running children behind.
        for f in flight {
            let _ = sys::wait(f.pid, 0);
        }
        result.map(|()| (elapsed, failures))
    }
}

/// A progress line on stderr: rewritten in place on a terminal, a few lines otherwise.
pub(super) struct Progress {
    pub(super) on: bool,
    pub(super) tty: bool,
    pub(super) last: Instant,
    pub(super) last_quarter: u32,
}

impl Progress {
    pub(super) fn new(on: bool) -> Progress {
        Progress {
            on,
            tty: io::stderr().is_terminal(),
            last: Instant::now(),
            last_quarter: u32::MAX,
        }
    }

    pub(super) fn tick(&mut self, phase: &str, i: u32, n: u32) {
        if !self.on || n == 0 {
            return;
        }
        let mut err = io::stderr().lock();
        if self.tty {
            if i == 0 || i + 1 == n || self.last.elapsed() >= Duration::from_millis(100) {
                let _ = write!(err, "\r\x1b[Kbench: {phase} {}/{n}", i + 1);
                self.last = Instant::now();
            }
        } else {
            let quarter = i * 4 / n;
            if quarter != self.last_quarter {
                let _ = writeln!(err, "bench: {phase} {}/{n}", i + 1);
                self.last_quarter = quarter;
            }
        }
    }

    pub(super) fn done(&mut self) {
        if self.on && self.tty {
            let _ = write!(io::stderr().lock(), "\r\x1b[K");
        }
        self.last_quarter = u32::MAX;
    }
}

/// Samples collected for one start-up contender.
#[derive(Default)]
pub(super) struct Series {
    pub(super) ms: Vec<f64>,
    pub(super) failures: u32,
}

impl Series {
    pub(super) fn startup(&self) -> Option<Startup> {
        Some(Startup {
            ms: Summary::of(&self.ms)?,
            failures: self.failures,
        })
    }
}

/// The throughput run: `launches` per launcher at `concurrency`, split into `chunks` that are
/// interleaved across launchers in shuffled order (so drift lands on all of them alike).
pub(super) struct Throughput {
    pub(super) launches: u32,
    pub(super) concurrency: u32,
    pub(super) chunks: u32,
}

impl Throughput {
    /// Launches per second and failed launches, per launcher.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn run(
        &self,
        launchers: &[Launcher],
        kind: TrueKind,
        argvs: &HashMap<Contender, CArgs>,
        spawner: &Spawner,
        rng: &mut Rng,
        progress: &mut Progress,
        reaper: &mut Reaper,
    ) -> anyhow::Result<HashMap<Launcher, (f64, u32)>> {
        let chunks = self.chunks.clamp(1, self.launches.max(1));
        let mut totals: HashMap<Launcher, (u32, Duration, u32)> = HashMap::new();
        let mut order: Vec<Launcher> = launchers.to_vec();
        for chunk in 0..chunks {
            progress.tick("throughput chunk", chunk, chunks);
            let size = self.launches / chunks + u32::from(chunk < self.launches % chunks);
            rng.shuffle(&mut order);
            for &l in &order {
                let c = Contender {
                    launcher: l,
                    true_kind: kind,
                };
                let argv = argvs.get(&c).context("argv prepared for every contender")?;
                let (elapsed, failures) = spawner
                    .burst(argv, size, self.concurrency)
                    .with_context(|| format!("throughput of {c}"))?;
                let t = totals.entry(l).or_default();
                t.0 += size;
                t.1 += elapsed;
                t.2 += failures;
                reaper.reap();
            }
        }
        progress.done();
        Ok(totals
            .into_iter()
            .filter(|(_, (_, d, _))| !d.is_zero())
            .map(|(l, (n, d, f))| (l, (f64::from(n) / d.as_secs_f64(), f)))
            .collect())
    }
}

/// Wall time per phase.
pub(super) struct Phases {
    pub(super) since: Instant,
    pub(super) done: Vec<PhaseTime>,
}

impl Default for Phases {
    fn default() -> Phases {
        Phases {
            since: Instant::now(),
            done: Vec::new(),
        }
    }
}

impl Phases {
    pub(super) fn end(&mut self, phase: &str) {
        let now = Instant::now();
        self.done.push(PhaseTime {
            phase: phase.into(),
            seconds: (now - self.since).as_secs_f64(),
        });
        self.since = now;
    }
}

/// Reaps processes re-parented to the bench (it is a child subreaper) between timed sections,
/// so zombies never pile up (pid_max may be as low as 32768), and counts them.
pub(super) struct Reaper {
    pub(super) on: bool,
    pub(super) reaped: u32,
}

impl Reaper {
    /// Non-blocking: reaps every exited orphan. Only called when no child of the bench's own is
    /// in flight, so everything `waitpid(-1)` finds here outlived its launcher.
    pub(super) fn reap(&mut self) -> u32 {
        let mut n = 0;
        if !self.on {
            return 0;
        }
        while let Ok(Some(_)) = sys::wait(-1, libc::WNOHANG) {
            n += 1;
        }
        self.reaped += n;
        n
    }
}
