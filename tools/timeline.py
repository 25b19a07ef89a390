#!/usr/bin/env python3
"""Where a launch's wall-clock time goes, as medians over N runs (issue 19).

    tools/timeline.py [-n N] [--uid UID] [--keep FILE] -- BIN run ... -- CMD [ARG...]

Records a few scheduler and syscall tracepoints system-wide (`perf record -a`, so root) while
the launch runs N times back to back, then prints the median length of each segment of the
critical path:

    exec    the launcher's execve returned (its process image is loaded)
    clone   the launcher enters the sandbox's clone (its start-up and preparation end)
    cloned  the clone returned in the launcher (namespaces created)
    pivot   the sandbox's child calls pivot_root (the root tmpfs is mounted)
    spawn   the init (or the child, without one) calls execve for the command
    cmdexec the command's execve returned
    cmdexit the command exits
    initexit the init exits (without a pid namespace: absent)
    end     the launcher exits

Segments whose events a profile does not have (`none`: no pivot, no init) are left out.
Tracepoints cost a little each: compare builds with the same tool, and use interleaved runs
(docs/BENCH.md) for the wall clock itself.
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

EVENTS = [
    "sched:sched_process_fork",
    "sched:sched_process_exec",
    "sched:sched_process_exit",
    "syscalls:sys_enter_clone",
    "syscalls:sys_exit_clone",
    "syscalls:sys_enter_pivot_root",
    "syscalls:sys_enter_execve",
]
ORDER = ["exec", "clone", "cloned", "pivot", "spawn", "cmdexec", "cmdexit", "initexit", "end"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-n", type=int, default=100, help="runs (default 100)")
    ap.add_argument("--uid", type=int, help="run the launches as this uid/gid (setpriv)")
    ap.add_argument("--keep", help="keep the perf data in this file")
    ap.add_argument("argv", nargs=argparse.REMAINDER)
    a = ap.parse_args()
    argv = a.argv[1:] if a.argv[:1] == ["--"] else a.argv
    if not argv:
        ap.error("no launch command given")
    launcher = os.path.basename(argv[0])[:15]  # comm is cut at 15 bytes
    prefix = []
    if a.uid is not None:
        prefix = ["setpriv", f"--reuid={a.uid}", f"--regid={a.uid}", "--clear-groups"]
    data = a.keep or tempfile.mktemp(prefix="timeline.", suffix=".data")
    tmp = tempfile.mkdtemp(prefix="timeline.")
    shell = os.path.join(tmp, "tl-loop-sh")
    shutil.copy("/bin/sh", shell)
    os.chmod(tmp, 0o755)
    loop = 'i=0; while [ $i -lt "$0" ]; do "$@" >/dev/null 2>&1 </dev/null; i=$((i+1)); done'
    rec = ["perf", "record", "-q", "-a", "-o", data]
    for e in EVENTS:
        rec += ["-e", e]
    rec += ["--"] + prefix + [shell, "-c", loop, str(a.n)] + argv
    try:
        subprocess.run(rec, check=True, stderr=subprocess.DEVNULL)
    finally:
        shutil.rmtree(tmp)
    out = subprocess.run(
        ["perf", "script", "-i", data, "-F", "comm,pid,time,event,trace"],
        check=True, capture_output=True, text=True,
    ).stdout
    if not a.keep:
        os.unlink(data)
    runs, cur, tree, loop_pid, launch_pid = [], None, set(), None, None
    for line in out.splitlines():
        ev_at = line.find(" sched:")
        ev_at = ev_at if ev_at >= 0 else line.find(" syscalls:")
        if ev_at < 0:
            continue
        left = line[:ev_at].split()
        rest = line[ev_at + 1:]
        ev, _, trace = rest.partition(": ")
        ev = ev.rstrip(":")
        if len(left) < 3:
            continue
        # comm may hold spaces: the last two fields before the event are pid and time.
        comm, pid, t = " ".join(left[:-2]), int(left[-2].split("/")[0]), float(left[-1].rstrip(":")) * 1e3
        if ev == "sched:sched_process_exec" and comm == "tl-loop-sh" and loop_pid is None:
            loop_pid = pid
            continue
        if ev == "sched:sched_process_fork" and pid == loop_pid:
            fields = dict(f.split("=", 1) for f in trace.split() if "=" in f)
            launch_pid = int(fields.get("child_pid", -1))
            continue
        if ev == "sched:sched_process_exec" and comm == launcher and loop_pid is not None and pid == launch_pid:
            cur = {"exec": t, "pid": pid}
            tree = {pid}
            runs.append(cur)
            continue
        if cur is None:
            continue
        if ev == "sched:sched_process_fork":
            # Only this launch's processes count: the machine may run other sandboxes.
            fields = dict(f.split("=", 1) for f in trace.split() if "=" in f)
            if int(fields.get("pid", -1)) in tree:
                tree.add(int(fields.get("child_pid", -1)))
            continue
        if pid not in tree:
            continue
        me = pid == cur["pid"]
        if ev == "syscalls:sys_enter_clone" and me and "clone" not in cur:
            # A helper beside the launcher (CLONE_VM without CLONE_VFORK: the placeholders'
            # maker, issue 19) is not the sandbox's clone.
            flags = int(trace.split("clone_flags:")[1].split(",")[0], 16) if "clone_flags:" in trace else 0
            if flags & 0x100 and not flags & 0x4000:
                continue
            cur["clone"] = t
        elif ev == "syscalls:sys_exit_clone" and me and "clone" in cur and "cloned" not in cur:
            cur["cloned"] = t
        elif ev == "syscalls:sys_enter_pivot_root" and "pivot" not in cur:
            cur["pivot"] = t
        elif ev == "syscalls:sys_enter_execve" and not me and "clone" in cur and "spawn" not in cur:
            cur["spawn"] = t
        elif ev == "sched:sched_process_exec" and "spawn" in cur and "cmdexec" not in cur:
            cur["cmdexec"], cur["cmdpid"] = t, pid
        elif ev == "sched:sched_process_exit" and pid == cur.get("cmdpid"):
            cur.setdefault("cmdexit", t)
        elif ev == "sched:sched_process_exit" and comm == "agentcage-init" and "cmdexit" in cur:
            cur.setdefault("initexit", t)
        elif ev == "sched:sched_process_exit" and me:
            cur["end"] = t
    runs = [r for r in runs if "end" in r]
    if not runs:
        sys.exit("no complete run recorded (is the first argument the launcher binary?)")
    keys = [k for k in ORDER if all(k in r for r in runs)]
    print(f"{len(runs)} runs of {' '.join(argv)}" + (f" as uid {a.uid}" if a.uid is not None else ""))
    for k0, k1 in zip(keys, keys[1:]):
        d = sorted(r[k1] - r[k0] for r in runs)
        print(f"  {k0:>8} -> {k1:<8} median {statistics.median(d):6.3f} ms   p90 {d[int(len(d) * .9)]:6.3f}")
    tot = sorted(r["end"] - r["exec"] for r in runs)
    print(f"  {'exec':>8} -> {'end':<8} median {statistics.median(tot):6.3f} ms   p90 {tot[int(len(tot) * .9)]:6.3f}")


if __name__ == "__main__":
    main()
