"""Drives `agentcage mcp` with the official MCP Python client (PyPI `mcp`, pinned in .ci/run).

Usage: mcp_client.py CHECKS -- SERVER-ARGV...   (CHECKS: "full", "open-world", "overlay" or
"cancel"; "overlay" reads the workspace's host path from $MCP_TEST_WS)
Exits non-zero with a message on the first failed check. Run by tests/mcp.rs.
"""

import asyncio
import base64
import os
import sys
import time

from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client


def check(cond, what, got=None):
    if not cond:
        raise SystemExit(f"FAILED: {what}" + (f": {got!r}" if got is not None else ""))


async def call(s, tool, args):
    r = await s.call_tool(tool, args)
    return r, (r.structuredContent or {})


async def full(s):
    tools = {t.name: t for t in (await s.list_tools()).tools}
    check(set(tools) == {"exec", "read_file", "write_file", "list_dir"}, "tool names (no diff without --overlay)", sorted(tools))
    ann = {n: t.annotations for n, t in tools.items()}
    check(ann["exec"].readOnlyHint is False and ann["exec"].destructiveHint is True, "exec hints", ann["exec"])
    check(ann["exec"].openWorldHint is False, "exec openWorldHint without --allow-host", ann["exec"])
    check(ann["read_file"].readOnlyHint is True and ann["read_file"].openWorldHint is False, "read_file hints", ann["read_file"])
    check(ann["list_dir"].readOnlyHint is True, "list_dir hints", ann["list_dir"])
    check(ann["write_file"].readOnlyHint is False and ann["write_file"].destructiveHint is True, "write_file hints", ann["write_file"])

    r, v = await call(s, "exec", {"command": "echo out; echo err >&2; exit 3"})
    check(not r.isError, "exec exit 3 is a result, not a tool error", r)
    check(v["exit_code"] == 3 and v["stdout"] == "out\n" and v["stderr"] == "err\n", "exit code and outputs", v)
    check(v["timed_out"] is False and v["denials"] == [] and "denials_note" not in v, "timed_out/denials", v)

    # A denied syscall is in the exec's denials, with the layer and the key.
    r, v = await call(s, "exec", {"command": "unshare -U true"})
    check(v["exit_code"] != 0, "unshare refused", v)
    d = [e for e in v["denials"] if e["layer"] == "seccomp" and e["object"] == "unshare(CLONE_NEWUSER)"]
    check(len(d) == 1 and d[0]["key"] and d[0]["exe"].endswith("unshare"), "seccomp denial in the result", v["denials"])

    r, v = await call(s, "exec", {"command": ["sh", "-c", 'kill -9 $$']})
    check(v["exit_code"] == 137 and v["signal"] == 9, "signal -> 128+N", v)

    t0 = time.monotonic()
    r, v = await call(s, "exec", {"command": "echo before; sleep 30", "timeout": 0.5})
    check(v["timed_out"] is True and v["exit_code"] == 124, "timeout -> 124", v)
    check(v["stdout"] == "before\n", "output before the timeout is kept", v)
    check(time.monotonic() - t0 < 10, "timeout took too long", time.monotonic() - t0)

    r, v = await call(s, "exec", {"command": "head -c 100000 /dev/zero | tr '\\0' a; printf END", "max_output_bytes": 1000})
    check(v["stdout_truncated"] is True and v["stdout_bytes"] == 100003, "truncation flags", {k: v[k] for k in ("stdout_truncated", "stdout_bytes")})
    check("[agentcage: output truncated: " in v["stdout"] and v["stdout"].endswith("END"), "truncation marker and tail", v["stdout"][-200:])
    check(len(v["stdout"]) < 1200, "output capped", len(v["stdout"]))

    r, v = await call(s, "exec", {"command": "cat; echo \"$FOO\"; pwd", "stdin": "abc\n", "env": {"FOO": "bar"}, "cwd": "/tmp"})
    check(v["stdout"] == "abc\nbar\n/tmp\n", "stdin, env, cwd", v)

    r, v = await call(s, "exec", {"command": ["/nonexistent/cmd"]})
    check(r.isError and v["error"]["exit_code"] == 127, "command not found is a tool error with 127", r)
    r, v = await call(s, "exec", {"command": "true", "cwd": "/nonexistent-dir"})
    check(r.isError and v["error"]["exit_code"] == 125, "bad cwd is a tool error with 125", r)
    r, v = await call(s, "exec", {})
    check(r.isError and "command" in r.content[0].text, "missing command is a tool error", r)

    # State persists between execs (one session).
    await call(s, "exec", {"command": "echo kept > /tmp/persist"})
    r, v = await call(s, "exec", {"command": "cat /tmp/persist"})
    check(v["stdout"] == "kept\n", "/tmp persists between execs", v)

    # File round trip, text and binary, through the sandbox's view.
    r, v = await call(s, "write_file", {"path": "sub/dir/f.txt", "content": "héllo\n", "create_dirs": True})
    check(not r.isError and v["bytes_written"] == 7, "write_file", r)
    r, v = await call(s, "read_file", {"path": "sub/dir/f.txt"})
    check(not r.isError and v["content"] == "héllo\n", "read_file", r)
    blob = bytes(range(256)) * 3
    r, v = await call(s, "write_file", {"path": "sub/bin", "content": base64.b64encode(blob).decode(), "encoding": "base64"})
    check(not r.isError, "write_file base64", r)
    r, v = await call(s, "read_file", {"path": "sub/bin", "encoding": "base64"})
    check(base64.b64decode(v["content"]) == blob, "read_file base64 round trip", v)
    r, v = await call(s, "read_file", {"path": "sub/bin"})
    check(r.isError and "base64" in r.content[0].text, "binary as utf-8 is refused with a hint", r)
    r, v = await call(s, "read_file", {"path": "sub/bin", "encoding": "base64", "max_bytes": 10})
    check(v["truncated"] is True and base64.b64decode(v["content"]) == blob[:10], "read_file max_bytes", v)
    r, v = await call(s, "list_dir", {"path": "sub"})
    names = {e["name"]: e for e in v["entries"]}
    check(set(names) == {"dir", "bin"} and names["dir"]["type"] == "d" and names["bin"]["size"] == 768, "list_dir", v)
    r, v = await call(s, "exec", {"command": "cat sub/dir/f.txt"})
    check(v["stdout"] == "héllo\n", "exec sees the written file", v)

    # Denials surface with the sandbox's reason: the host's files are not there, /usr is
    # not writable.
    r, v = await call(s, "read_file", {"path": "/root/.bash_history"})
    check(r.isError and "No such file" in r.content[0].text, "host file is invisible", r)
    r, v = await call(s, "write_file", {"path": "/usr/agentcage-mcp-test", "content": "x"})
    check(r.isError and ("Read-only" in r.content[0].text or "denied" in r.content[0].text), "write outside is refused with the reason", r)


async def open_world(s):
    tools = {t.name: t for t in (await s.list_tools()).tools}
    check(tools["exec"].annotations.openWorldHint is True, "exec openWorldHint with --allow-host", tools["exec"].annotations)
    check(tools["read_file"].annotations.openWorldHint is False, "read_file stays closed-world", tools["read_file"].annotations)
    check("allowed.test" in tools["exec"].description, "exec description names the allow-list", tools["exec"].description)
    # A denied connection (through the egress proxy: a 403) is in the exec's denials.
    r, v = await call(s, "exec", {"command": "curl -sS -m 10 -o /dev/null -w '%{http_code}' http://denied.test/"})
    check(v["stdout"] == "403", "denied host gets the proxy's 403", v)
    d = [e for e in v["denials"] if e["layer"] == "network" and "denied.test" in e["object"]]
    check(len(d) >= 1 and d[0]["key"].startswith("--allow-host denied.test"), "network denial in the result", v["denials"])
    r, v = await call(s, "exec", {"command": "true"})
    check(v["denials"] == [], "a later exec does not get them", v["denials"])


async def overlay(s):
    ws = os.environ["MCP_TEST_WS"]
    tools = {t.name: t for t in (await s.list_tools()).tools}
    check(set(tools) == {"exec", "read_file", "write_file", "list_dir", "diff"}, "tool names with --overlay (no commit)", sorted(tools))
    a = tools["diff"].annotations
    check(a.readOnlyHint is True and a.destructiveHint is False and a.idempotentHint is True and a.openWorldHint is False, "diff hints", a)
    r, v = await call(s, "diff", {})
    check(not r.isError and v["count"] == 0 and v["changes"] == [] and v["sensitive"] == [], "nothing changed yet", v)
    check("dir" not in v and v["workspace"] == ws, "diff names the workspace, not the overlay's host dir", v)
    r, v = await call(s, "exec", {"command": "echo new > new.txt && echo changed > old.txt && rm gone.txt && echo 'use flake' > .envrc"})
    check(v["exit_code"] == 0, "writes through the overlay", v)
    r, v = await call(s, "diff", {})
    kinds = {c["path"]: c["kind"] for c in v["changes"]}
    check(kinds == {"new.txt": "added", "old.txt": "modified", "gone.txt": "deleted", ".envrc": "added"}, "the changes", v)
    check(v["sensitive"] == [".envrc"] and v["count"] == 4, "sensitive paths flagged", v)
    # Read-only: the workspace on the host is untouched, and diff twice gives the same.
    with open(os.path.join(ws, "old.txt")) as f:
        check(f.read() == "old\n", "the workspace's file is unchanged")
    check(os.path.exists(os.path.join(ws, "gone.txt")) and not os.path.exists(os.path.join(ws, "new.txt")), "the workspace has no change")
    r2, v2 = await call(s, "diff", {})
    check(v2["changes"] == v["changes"], "diff is idempotent", v2)
    r, v = await call(s, "diff", {"paths": ["old.txt", ws + "/new.txt"], "patch": True})
    check([c["path"] for c in v["changes"]] == ["new.txt", "old.txt"], "paths filter (relative and absolute)", v)
    check("-old\n+changed\n" in v["patch"] and "+new\n" in v["patch"] and v["patch_truncated"] is False, "unified patch", v.get("patch"))
    r, v = await call(s, "diff", {"patch": True, "max_output_bytes": 40})
    check(v["patch_truncated"] is True and "[agentcage: output truncated: " in v["patch"], "patch capped with the marker", v.get("patch"))
    r, v = await call(s, "diff", {"paths": ["../outside"]})
    check(r.isError and "not inside the workspace" in r.content[0].text, "a path outside the workspace is refused", r)
    r, v = await call(s, "diff", {"paths": "old.txt"})
    check(r.isError and "array" in r.content[0].text, "bad arguments are a tool error", r)


async def cancel(s):
    from mcp.types import CancelledNotification, CancelledNotificationParams, ClientNotification

    await call(s, "exec", {"command": "rm -f /tmp/cancel.pid"})
    rid = s._request_id  # the id of the next request: the exec below
    task = asyncio.create_task(s.call_tool("exec", {"command": "echo $$ > /tmp/cancel.pid; exec sleep 300", "timeout": 600}))
    pid = ""
    t0 = time.monotonic()
    while not pid and time.monotonic() - t0 < 60:
        await asyncio.sleep(0.2)
        r, v = await call(s, "exec", {"command": "cat /tmp/cancel.pid 2>/dev/null"})
        pid = v["stdout"].strip()
    check(pid != "" and not task.done(), "the exec runs", pid)
    await s.send_notification(ClientNotification(CancelledNotification(
        method="notifications/cancelled", params=CancelledNotificationParams(requestId=rid, reason="test"))))
    t0 = time.monotonic()
    task.cancel()
    gone = False
    while time.monotonic() - t0 < 30:  # the exec would run 300 s
        r, v = await call(s, "exec", {"command": f"kill -0 {pid} 2>/dev/null && echo alive || echo gone"})
        if v["stdout"] == "gone\n":
            gone = True
            break
        await asyncio.sleep(0.1)
    took = time.monotonic() - t0
    check(gone, "the cancelled exec's process was killed", took)
    print(f"cancelled exec gone after {took:.2f} s", file=sys.stderr)
    r, v = await call(s, "exec", {"command": "echo still here"})
    check(v["stdout"] == "still here\n", "the session still works after a cancel", v)


async def main():
    mode, sep, argv = sys.argv[1], sys.argv[2], sys.argv[3:]
    check(sep == "--", "usage")
    env = {k: os.environ[k] for k in ("PATH", "XDG_RUNTIME_DIR", "AGENTCAGE_TEST_EXPECT", "XDG_STATE_HOME") if k in os.environ}
    params = StdioServerParameters(command=argv[0], args=argv[1:], env=env, cwd="/")
    async with stdio_client(params) as (r, w):
        async with ClientSession(r, w) as s:
            init = await s.initialize()
            check(init.serverInfo.name == "agentcage", "server name", init.serverInfo)
            check(init.capabilities.tools is not None, "tools capability", init.capabilities)
            await {"full": full, "open-world": open_world, "overlay": overlay, "cancel": cancel}[mode](s)
    print("ok")


asyncio.run(main())
