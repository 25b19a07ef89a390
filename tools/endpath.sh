#!/usr/bin/env bash
# Issue 19: where the end of a run goes, per binary (compare builds of the launcher).
#
#   tools/endpath.sh N BIN...
#
# Runs `BIN run -q -p full -w WS -- /bin/true` N times as uid 65534 for each BIN in turn,
# recording scheduler, syscall and signal tracepoints system-wide (`perf record -a`, so root),
# and prints medians in ms after the command's exit of: the init's exit_group (initexit), the
# launcher's wait4 (wait4), the init's SIGCHLD to the launcher (initdone: its exit is over),
# the launcher's exit (lexit) and its parent's SIGCHLD (end). WS is a scratch workspace on
# /dev/shm, removed after. Alternate binaries (A B A B) on a noisy machine.
set -euo pipefail
[ "$(id -u)" = 0 ] || { echo "endpath: run as root (perf record -a)" >&2; exit 1; }
n=$1
shift
ws=$(mktemp -d /dev/shm/agentcage-endpath.XXXXXX)
data=$(mktemp /tmp/agentcage-endpath.XXXXXX)
trap 'rm -rf "$ws" "$data"' EXIT
chown 65534:65534 "$ws"
medians=$(cat <<'PY'
import statistics, sys
c = sys.argv[1]
runs, cur = [], {}
for line in sys.stdin:
    p = line.split()
    if len(p) < 4:
        continue
    comm, t, e = p[0], float(p[2].rstrip(":")), " ".join(p[3:])
    if comm == "true" and "sched_process_exit" in e:
        cur = {"cmdexit": t}
    elif "cmdexit" not in cur:
        continue
    elif comm == "agentcage-init" and "sys_enter_exit_group" in e:
        cur["initexit"] = t
    elif comm == "agentcage-init" and "signal_generate" in e and "comm=" + c in e:
        cur["initdone"] = t
    elif comm == c and "sys_enter_wait4" in e:
        cur["wait4"] = t
    elif comm == c and "sched_process_exit" in e:
        cur["lexit"] = t
    elif comm == c and "signal_generate" in e and "comm=sh" in e:
        cur["end"] = t
        runs.append(cur)
        cur = {}
out = []
for k in ["initexit", "wait4", "initdone", "lexit", "end"]:
    v = [(r[k] - r["cmdexit"]) * 1e3 for r in runs if k in r]
    out.append(f"{k} {statistics.median(v):.3f}" if v else f"{k} -")
print(f"{c:15s} n={len(runs)}: " + ", ".join(out))
PY
)
for b in "$@"; do
    b=$(realpath "$b")
    perf record -q -a -o "$data" -e sched:sched_process_exit -e signal:signal_generate \
        -e syscalls:sys_enter_exit_group -e syscalls:sys_enter_wait4 -- \
        setpriv --reuid 65534 --regid 65534 --clear-groups \
        sh -c "for i in \$(seq $n); do '$b' run -q -p full -w '$ws' -- /bin/true; done" >/dev/null 2>&1
    # the kernel's comm: the first 15 bytes of the file name
    perf script -i "$data" -F comm,pid,time,event,trace 2>/dev/null |
        /usr/bin/python3 -c "$medians" "$(basename "$b" | cut -c1-15)"
done
