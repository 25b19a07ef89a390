use super::support::{parse_ppid, tail};
use super::*;

#[test]
fn ppid_parsing_survives_odd_comm() {
    assert_eq!(parse_ppid("42 (a) b) c) S 7 42 42 0"), Some(7));
    assert_eq!(parse_ppid("1 (init) S 0 1 1"), Some(0));
    assert_eq!(parse_ppid("garbage"), None);
}

#[test]
fn tail_keeps_the_last_lines() {
    assert_eq!(tail(b"a\n\nb\nc\nd\n"), "b | c | d");
    assert_eq!(tail(b""), "(no output)");
}

#[test]
fn spawner_times_a_launch_and_reports_exit_codes() {
    let sp = Spawner::new().expect("spawner");
    let ok = CArgs::new(["/bin/sh", "-c", "exit 0"]).expect("argv");
    let l = sp.run(&ok).expect("run");
    assert_eq!(l.reaped.exit_code(), 0);
    assert!(l.ns > 0.0);
    let bad = CArgs::new(["/bin/sh", "-c", "exit 3"]).expect("argv");
    assert_eq!(sp.run(&bad).expect("run").reaped.exit_code(), 3);
    let missing = CArgs::new(["/nonexistent/agentcage-bench"]).expect("argv");
    // glibc reports exec failure of posix_spawn as an error or as exit 127.
    match sp.run(&missing) {
        Ok(l) => assert_eq!(l.reaped.exit_code(), 127),
        Err(e) => assert_eq!(e.raw_os_error(), Some(libc::ENOENT)),
    }
}

#[test]
fn burst_counts_every_launch_and_failure() {
    let sp = Spawner::new().expect("spawner");
    let ok = CArgs::new(["/bin/sh", "-c", "exit 0"]).expect("argv");
    let (elapsed, failures) = sp.burst(&ok, 9, 3).expect("burst");
    assert_eq!(failures, 0);
    assert!(elapsed > Duration::ZERO);
    let bad = CArgs::new(["/bin/sh", "-c", "exit 1"]).expect("argv");
    assert_eq!(sp.burst(&bad, 5, 2).expect("burst").1, 5);
}

/// A shell stand-in for the agentcage binary: `run ... -- CMD` execs CMD (what `none` does)
/// and `bench-inner` prints a fixed, well-formed report. It lets the whole pipeline run
/// without the real launcher.
const STAND_IN: &str = r#"#!/bin/sh
case "$1" in
run) shift; while [ "$1" != "--" ]; do shift; done; shift; exec "$@" ;;
bench-inner)
  shift; shift; b=$1; shift; op=$1; shift; n=$1; shift
  s=""; i=0; while [ $i -lt $b ]; do s="$s${s:+,}100.5"; i=$((i+1)); done
  r=""
  if [ $# -eq 0 ]; then r="{\"path\":null,\"ns_per_op\":[$s]}"; fi
  for p in "$@"; do r="$r${r:+,}{\"path\":\"$p\",\"ns_per_op\":[$s]}"; done
  echo "{\"op\":\"$op\",\"iterations\":$n,\"batches\":$b,\"results\":[$r]}" ;;
*) exit 2 ;;
esac
"#;

fn settings(agentcage: PathBuf, true_override: Option<PathBuf>) -> Settings {
    Settings {
        sizes: Sizes {
            quick: true,
            compare: false,
            rounds: 3,
            warmup: 1,
            inner_rounds: 2,
            getpid_iterations: 10,
            file_iterations: 10,
            batches: 2,
            launches: 6,
            concurrency: 2,
            seed: 9,
        },
        profiles: vec![Profile::None],
        agentcage,
        true_override,
        progress: false,
        own_children: false,
    }
}

#[test]
fn whole_pipeline_with_a_stand_in_launcher() {
    let dir = TempDir::new("unit").expect("temp dir");
    let stand_in = dir.path().join("agentcage");
    elf::write_executable(&stand_in, STAND_IN.as_bytes()).expect("write stand-in");
    let r = measure(&settings(stand_in, None)).expect("measure");
    let none = r.profile(Profile::None).expect("none row");
    assert_eq!(none.error, None);
    assert!(none.inner_errors.is_empty(), "{:?}", none.inner_errors);
    let startup = none.startup.as_ref().expect("startup");
    assert_eq!((startup.ms.n, startup.failures), (3, 0));
    assert!(startup.ms.min > 0.0 && startup.ms.p95 >= startup.ms.median);
    assert_eq!(
        none.ns_per_syscall.map(|s| (s.n, s.median)),
        Some((4, 100.5))
    );
    assert_eq!(none.open_by_depth.len(), r.config.files.len());
    assert_eq!(none.open_ns, Some(100.5));
    assert!(none.launches_per_s.is_some_and(|x| x > 0.0));
    assert!(none.x_exec.is_some_and(|x| x > 0.0));
    if elf::native() {
        assert!(none.peak_rss_kib.is_some_and(|k| k > 0));
    }
    let exec = r.baseline("exec").expect("exec baseline");
    assert!(exec.startup.is_some() && exec.startup_bin_true.is_some());
    assert_eq!(r.throughput.failed_runs, 0);
    let getpid = r
        .targets
        .iter()
        .find(|t| t.id == "getpid-full-vs-none")
        .expect("target");
    assert_eq!(getpid.status, crate::report::Status::NotMeasured);
    // The temp dir with the static true is gone afterwards.
    let t = r.config.static_true.expect("static true");
    assert!(!Path::new(&t).exists(), "{t} left behind");
}

#[test]
fn a_failing_profile_is_a_row_error_not_a_failed_bench() {
    let dir = TempDir::new("unit").expect("temp dir");
    let broken = dir.path().join("agentcage");
    elf::write_executable(
        &broken,
        b"#!/bin/sh\necho 'setup failed: EPERM' >&2\nexit 125\n",
    )
    .expect("write stand-in");
    let mut s = settings(broken, Some(PathBuf::from("/bin/true")));
    s.profiles = vec![Profile::None, Profile::Full];
    let r = measure(&s).expect("measure");
    for p in [Profile::None, Profile::Full] {
        let e = r.profile(p).and_then(|x| x.error.clone()).expect("error");
        assert!(
            e.contains("exit 125") && e.contains("setup failed: EPERM"),
            "{e}"
        );
    }
    // --true was copied into the workspace and used for the exec baseline.
    let t = r.config.static_true.as_deref().expect("static true");
    assert!(t.ends_with("/true") && !t.starts_with("/bin"), "{t}");
    assert!(r
        .baseline("exec")
        .and_then(|b| b.startup.as_ref())
        .is_some());
}

#[test]
fn host_info_is_filled() {
    let h = host_info();
    assert!(!h.kernel.is_empty() && h.cpus >= 1);
    assert_eq!(h.started_at.len(), 20);
}
