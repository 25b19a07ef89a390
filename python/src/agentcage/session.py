"""`Session`: one agentcage sandbox kept up for many commands, driven over its control socket.

The only CLI processes are `agentcage session start` (and `session list --json` to find the
socket) when the session starts; every exec, file operation and the stop speak the protocol
of docs/SESSIONS.md directly.
"""

import json
import os
import selectors
import shutil
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from . import _protocol
from .errors import (
    AgentcageError,
    ExecError,
    FileOpError,
    NotSupported,
    SessionGone,
    SessionStartError,
)

#: How long to wait after an exec's exit for its output pipes to reach EOF: a background
#: process it started may hold them open (then `output_open` is True).
DRAIN_AFTER_EXIT = 0.5

#: Default bytes kept of each of stdout and stderr (first half + last half, marker between).
DEFAULT_MAX_OUTPUT = 16 << 20

#: Why `denials` may be empty by construction: a session started without `--events`
#: (`Session(..., events=False)`, or an agentcage without it) reports no denials, and
#: `ExecResult.denials_reported` is False.
DENIALS_NOTE = (
    "this session does not report denial events (started without --events): a blocked "
    "operation shows only as the command's own error"
)


def _now_rfc3339() -> str:
    """The events' time format, `YYYY-MM-DDTHH:MM:SS.mmmZ` (compares as a string)."""
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + ".%03dZ" % int((t % 1) * 1000)


@dataclass
class ExecResult:
    """The end of one exec."""

    #: run's convention: the command's code, 128+N for signal N, 124 on timeout.
    exit_code: int
    #: stdout / stderr decoded as UTF-8 (undecodable bytes replaced), each capped with a
    #: marker line where bytes were dropped.
    stdout: str
    stderr: str
    #: The timeout expired and the exec's process group was killed.
    timed_out: bool = False
    #: The signal that killed it, if any.
    signal: Optional[int] = None
    #: The raw bytes kept (no marker).
    stdout_bytes: bytes = b""
    stderr_bytes: bytes = b""
    #: Bytes were dropped from stdout / stderr.
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    #: Total bytes written to each stream.
    stdout_total: int = 0
    stderr_total: int = 0
    #: An output pipe was still open DRAIN_AFTER_EXIT after the exit (a background process).
    output_open: bool = False
    #: Seconds from the request to the exit.
    duration: float = 0.0
    #: Denials attributed to this exec (objects as the session reports them: time, pid,
    #: exe, layer, object, key, ...). See `denials_reported`.
    denials: List[Dict[str, Any]] = field(default_factory=list)
    #: Whether the session reports denials at all (if not, `denials` is empty by
    #: construction, see DENIALS_NOTE).
    denials_reported: bool = False
    #: Denials beyond the exit frame's limit (100).
    denials_dropped: int = 0
    exec_id: Optional[int] = None

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    @property
    def truncated(self) -> bool:
        return self.stdout_truncated or self.stderr_truncated

    @property
    def output(self) -> str:
        """stdout then stderr, as one text (what shell-tool adapters return)."""
        if self.stdout and self.stderr and not self.stdout.endswith("\n"):
            return self.stdout + "\n" + self.stderr
        return self.stdout + self.stderr


class _Stream:
    """The first `head` and last `tail` bytes of a stream, and its total."""

    def __init__(self, limit: Optional[int], head_only: bool = False) -> None:
        self.head = bytearray()
        self.tail = bytearray()
        self.total = 0
        if limit is None:
            self.keep_head, self.keep_tail = None, 0
        elif head_only:
            self.keep_head, self.keep_tail = limit, 0
        else:
            self.keep_head, self.keep_tail = limit - limit // 2, limit // 2

    def push(self, b: bytes) -> None:
        self.total += len(b)
        if self.keep_head is None:
            self.head += b
            return
        room = max(0, self.keep_head - len(self.head))
        self.head += b[:room]
        b = b[room:]
        if b and self.keep_tail:
            self.tail += b
            if len(self.tail) > self.keep_tail:
                del self.tail[: len(self.tail) - self.keep_tail]

    @property
    def truncated(self) -> bool:
        return self.total > len(self.head) + len(self.tail)

    def raw(self) -> bytes:
        return bytes(self.head + self.tail)

    def text(self) -> str:
        if not self.truncated:
            return self.raw().decode("utf-8", "replace")
        dropped = self.total - len(self.head) - len(self.tail)
        marker = "\n[agentcage: output truncated: %d of %d bytes omitted here]\n" % (dropped, self.total)
        return self.head.decode("utf-8", "replace") + marker + self.tail.decode("utf-8", "replace")


def flags_to_args(flags: Mapping[str, Any]) -> List[str]:
    """`session start` flags from keyword arguments: `memory="4G"` -> `--memory 4G`,
    `allow_host=["a", "b"]` -> `--allow-host a --allow-host b`, `best_effort=True` ->
    `--best-effort`; False and None are left out."""
    args: List[str] = []
    for key, value in flags.items():
        flag = "--" + key.replace("_", "-")
        if value is None or value is False:
            continue
        if value is True:
            args.append(flag)
        elif isinstance(value, (list, tuple)):
            for v in value:
                args += [flag, os.fspath(v) if isinstance(v, os.PathLike) else str(v)]
        else:
            args += [flag, os.fspath(value) if isinstance(value, os.PathLike) else str(value)]
    return args


def _cli_error(stderr: str) -> Tuple[str, Optional[str]]:
    """agentcage's `error:` and `hint:` lines from its stderr (the whole text if none)."""
    msg, hint = [], None
    for line in stderr.splitlines():
        if line.startswith("agentcage: error: "):
            msg.append(line[len("agentcage: error: ") :])
        elif line.startswith("agentcage: hint: "):
            hint = line[len("agentcage: hint: ") :]
    return ("\n".join(msg) if msg else stderr.strip()) or "(no message)", hint


class Session:
    """One agentcage session.

    ``Session(policy="~/.config/agentcage/agent.toml", memory="4G", allow_host=["pypi.org"])``
    takes `session start`'s flags as keyword arguments (see `flags_to_args`); `events`
    defaults to True (`--events`: each exec's denials come back in its result), and so does
    `die_with_parent` (the session stops when this process exits, even by SIGKILL; pass
    False to keep it running after this process). Use it as a
    context manager, or call `start()` and `close()`. Methods are thread-safe (execs run one
    at a time per Session object).
    """

    def __init__(
        self,
        policy: Optional[Union[str, "os.PathLike[str]"]] = None,
        *,
        agentcage: Optional[str] = None,
        name: Optional[str] = None,
        max_output: Optional[int] = DEFAULT_MAX_OUTPUT,
        **flags: Any,
    ) -> None:
        self.binary = agentcage or os.environ.get("AGENTCAGE") or shutil.which("agentcage") or "agentcage"
        self.name = name or "py-%d-%s" % (os.getpid(), uuid.uuid4().hex[:8])
        self.max_output = max_output
        self.policy = policy
        self.flags = dict(flags)
        self.flags.setdefault("events", True)
        # The session stops when this process exits, however (kill -9 included).
        self.flags.setdefault("die_with_parent", True)
        self.socket_path: Optional[str] = None
        self._conn: Optional[_protocol.Connection] = None
        self._lock = threading.RLock()

    # -- lifecycle --------------------------------------------------------------------

    def start_args(self) -> List[str]:
        args = [self.binary, "session", "start", "--name", self.name, "-q"]
        if self.policy is not None:
            args += ["--policy", os.fspath(self.policy)]
        return args + flags_to_args(self.flags)

    def start(self) -> "Session":
        """Starts the session (once). Raises SessionStartError with agentcage's message."""
        with self._lock:
            if self._conn is not None:
                return self
            try:
                p = subprocess.run(
                    self.start_args(), stdin=subprocess.DEVNULL, capture_output=True, text=True
                )
            except OSError as e:
                raise SessionStartError("run %s: %s" % (self.binary, e), kind="spawn") from None
            if p.returncode != 0:
                msg, hint = _cli_error(p.stderr)
                raise SessionStartError(msg, kind="start", hint=hint, exit_code=p.returncode)
            self.socket_path = self._find_socket()
            try:
                conn = _protocol.Connection(self.socket_path)
            except OSError as e:
                raise SessionGone("connect to %s: %s" % (self.socket_path, e), kind="gone") from None
            conn.send({"op": "hello", "version": _protocol.VERSION})
            e = _protocol.error_of(conn.recv())
            if e is not None:
                conn.close()
                raise SessionStartError(e.get("message", ""), kind=e.get("kind", "error"))
            self._conn = conn
            return self

    def _find_socket(self) -> str:
        p = subprocess.run(
            [self.binary, "session", "list", "--json"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
        )
        try:
            for s in json.loads(p.stdout or "[]"):
                if s.get("name") == self.name and s.get("socket"):
                    return str(s["socket"])
        except ValueError:
            pass
        raise SessionStartError(
            "session %s started but `session list` does not show it: %s" % (self.name, p.stderr.strip()),
            kind="start",
        )

    def close(self) -> None:
        """Stops the session: every process inside ends, its mounts, cgroup, socket and
        state go. Idempotent."""
        with self._lock:
            conn, self._conn = self._conn, None
            if conn is None:
                return
            try:
                conn.send({"op": "stop"})
                conn.recv()
            except (OSError, _protocol.ProtocolError):
                pass  # a closed connection after a stop also means it is gone
            finally:
                conn.close()

    def __enter__(self) -> "Session":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @property
    def running(self) -> bool:
        return self._conn is not None

    # -- exec -------------------------------------------------------------------------

    def exec(
        self,
        command: Union[str, Sequence[str]],
        *,
        cwd: Optional[str] = None,
        env: Optional[Mapping[str, str]] = None,
        timeout: Optional[float] = None,
        stdin: Optional[Union[bytes, str]] = None,
        max_output: Optional[int] = -1,
    ) -> ExecResult:
        """Runs `command` (a shell command line, run by `sh -c`, or an argv list) in the
        session and waits for it. A non-zero exit is a result, not an exception; ExecError
        is raised when the session refuses the exec (command not found: exit_code 127, not
        executable 126, bad cwd 125)."""
        argv = ["sh", "-c", command] if isinstance(command, str) else [str(a) for a in command]
        if not argv:
            raise ValueError("empty command")
        limit = self.max_output if max_output == -1 else max_output
        return self._run(argv, cwd=cwd, env=env, timeout=timeout, stdin=stdin, limit=limit)

    def _run(
        self,
        argv: List[str],
        *,
        cwd: Optional[str] = None,
        env: Optional[Mapping[str, str]] = None,
        timeout: Optional[float] = None,
        stdin: Optional[Union[bytes, str]] = None,
        limit: Optional[int] = None,
        head_only: bool = False,
    ) -> ExecResult:
        if self._conn is None:
            self.start()
        if isinstance(stdin, str):
            stdin = stdin.encode()
        req: Dict[str, Any] = {
            "op": "exec",
            "argv": argv,
            "env": dict(env or {}),
            "cwd": cwd,
            "timeout_ms": None if timeout is None else max(1, int(timeout * 1000)),
            "tty": None,
            "fds": _protocol.fds_listed(stdin is not None),
            "wait": True,
        }
        with self._lock:
            conn = self._conn
            if conn is None:
                raise SessionGone("the session is closed", kind="gone")
            return _exec_on(conn, req, stdin, limit, head_only)

    # -- files ------------------------------------------------------------------------

    def read_file(self, path: str, *, max_bytes: Optional[int] = 64 << 20) -> bytes:
        """The file's bytes as the sandbox sees it (read by `cat` inside, subject to the
        policy): at most `max_bytes` (the first ones; None: no bound, the sandbox decides how
        much this process holds). Raises FileOpError with cat's message."""
        r = self._run(["cat", "--", path], timeout=60, limit=max_bytes, head_only=True)
        if r.exit_code != 0:
            raise FileOpError(r.stderr.strip() or "cat exited %d" % r.exit_code, kind="command", exit_code=r.exit_code)
        return r.stdout_bytes

    def read_text(self, path: str, encoding: str = "utf-8") -> str:
        return self.read_file(path).decode(encoding)

    def write_file(self, path: str, data: Union[bytes, str], *, create_dirs: bool = False) -> int:
        """Replaces the file (written by `sh -c 'cat > "$1"'` inside, subject to the policy).
        Returns the bytes written. Raises FileOpError with the shell's message."""
        if isinstance(data, str):
            data = data.encode()
        script = 'mkdir -p -- "$(dirname -- "$1")" && cat > "$1"' if create_dirs else 'cat > "$1"'
        arg = "./" + path if path.startswith("-") else path
        r = self._run(["sh", "-c", script, "sh", arg], stdin=data, timeout=60, limit=64 * 1024)
        if r.exit_code != 0:
            raise FileOpError(r.stderr.strip() or "write exited %d" % r.exit_code, kind="command", exit_code=r.exit_code)
        return len(data)

    def diff(self, *paths: str, patch: bool = False) -> Dict[str, Any]:
        """The changes waiting in the session's overlay (`Session(..., overlay=True)`):
        read-only, never commits (that stays with the user: `agentcage commit`). Works
        while the session runs and after `close()` (the changes wait in the overlay).

        Returns `agentcage diff --json`'s object: `overlay` (its name), `dir`, `workspace`,
        `sensitive` (changed paths that run code outside the sandbox: git hooks and config,
        .envrc, editor, CI and agent config; review them first) and `changes` (each with
        `path`, `kind`: added, modified, mode, retyped, deleted; `type`, `old_mode`,
        `new_mode`, `size`, `target`). `paths` (relative to the workspace, or absolute inside
        it) restrict it; `patch=True` adds `patch`, the unified diff of the text files.

        Runs the CLI (`agentcage diff NAME --json`), one process per call: the session
        protocol has no diff request (the walk of the upper layer would stall the
        supervisor's single loop, and the sensitive-path rules live in the CLI). Raises
        NotSupported without an overlay, AgentcageError with agentcage's message otherwise.
        """
        overlay = self.flags.get("overlay")
        if not overlay:
            raise NotSupported(
                "diff needs an overlay session (Session(..., overlay=True)); this one writes "
                "the workspace directly",
                kind="no_overlay",
            )
        if self.socket_path is None:
            self.start()  # the overlay is made when the session starts
        if self.flags.get("overlay_dir"):
            target = ["--overlay-dir", os.fspath(self.flags["overlay_dir"])]
        else:
            target = [self.name if overlay is True else str(overlay)]
        out = json.loads(self._diff_cli(target + ["--json"] + list(paths)))
        if patch:
            out["patch"] = self._diff_cli(target + ["--patch"] + list(paths))
        return out

    def _diff_cli(self, args: List[str]) -> str:
        # cwd "/": relative paths are then relative to the workspace, not to our directory.
        try:
            p = subprocess.run(
                [self.binary, "diff"] + args,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                cwd="/",
            )
        except OSError as e:
            raise AgentcageError("run %s diff: %s" % (self.binary, e), kind="spawn") from None
        if p.returncode != 0:
            msg, hint = _cli_error(p.stderr)
            raise AgentcageError(msg, kind="diff", hint=hint, exit_code=p.returncode)
        return p.stdout


def _exec_on(
    conn: _protocol.Connection,
    req: Dict[str, Any],
    stdin: Optional[bytes],
    limit: Optional[int],
    head_only: bool = False,
) -> ExecResult:
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    in_r = in_w = -1
    if stdin is not None:
        in_r, in_w = os.pipe()
    fds = ([in_r] if stdin is not None else []) + [out_w, err_w]
    t0 = time.monotonic()
    window_start = _now_rfc3339()
    try:
        conn.send(req, fds)
    except BaseException:
        for fd in (out_r, out_w, err_r, err_w, in_r, in_w):
            if fd >= 0:
                os.close(fd)
        raise
    # The supervisor holds its own copies now: ours would keep the pipes from EOF.
    for fd in (out_w, err_w, in_r):
        if fd >= 0:
            os.close(fd)
    streams = {out_r: _Stream(limit, head_only), err_r: _Stream(limit)}
    open_fds = set(streams)
    sel = selectors.DefaultSelector()
    try:
        for fd in streams:
            os.set_blocking(fd, False)
            sel.register(fd, selectors.EVENT_READ)
        sel.register(conn.fileno(), selectors.EVENT_READ)
        pending_in = memoryview(stdin) if stdin is not None else None
        if in_w >= 0:
            os.set_blocking(in_w, False)
        started = False
        exit_frame: Optional[Dict[str, Any]] = None
        drain_deadline = None
        while True:
            # Frames already buffered first.
            while exit_frame is None:
                f = conn.pending()
                if f is None:
                    break
                e = _protocol.error_of(f)
                if e is not None:
                    kind = e.get("kind", "error")
                    exc = SessionGone if kind == "gone" else ExecError
                    raise exc(e.get("message", ""), kind=kind, hint=e.get("hint"), exit_code=e.get("exit_code"))
                if not started:
                    started = True
                    if in_w >= 0:
                        sel.register(in_w, selectors.EVENT_WRITE)
                elif f.get("exit") is True:
                    exit_frame = f
                    drain_deadline = time.monotonic() + DRAIN_AFTER_EXIT
                    sel.unregister(conn.fileno())
            if exit_frame is not None and not open_fds:
                break
            wait = None if drain_deadline is None else drain_deadline - time.monotonic()
            if wait is not None and wait <= 0:
                break
            for key, _ in sel.select(wait):
                fd = key.fd
                if fd == conn.fileno():
                    conn.feed()
                elif fd == in_w:
                    try:
                        n = os.write(in_w, pending_in[:65536])
                        pending_in = pending_in[n:]
                    except BlockingIOError:
                        continue
                    except BrokenPipeError:
                        pending_in = pending_in[:0]
                    if not len(pending_in):
                        sel.unregister(in_w)
                        os.close(in_w)
                        in_w = -1
                else:
                    try:
                        data = os.read(fd, 65536)
                    except BlockingIOError:
                        continue
                    if data:
                        streams[fd].push(data)
                    else:
                        sel.unregister(fd)
                        open_fds.discard(fd)
        out, err = streams[out_r], streams[err_r]
        output_open = bool(open_fds)
    finally:
        sel.close()
        for fd in (out_r, err_r, in_w):
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
    assert exit_frame is not None
    duration = time.monotonic() - t0
    window_end = _now_rfc3339()
    denials = exit_frame.get("denials")
    if isinstance(denials, list):
        denials = list(denials) + _unattributed_in(conn, window_start, window_end)
    return ExecResult(
        exit_code=int(exit_frame.get("status", -1)),
        stdout=out.text(),
        stderr=err.text(),
        timed_out=bool(exit_frame.get("timed_out")),
        signal=exit_frame.get("signal"),
        stdout_bytes=out.raw(),
        stderr_bytes=err.raw(),
        stdout_truncated=out.truncated,
        stderr_truncated=err.truncated,
        stdout_total=out.total,
        stderr_total=err.total,
        output_open=output_open,
        duration=duration,
        denials=denials if isinstance(denials, list) else [],
        denials_reported=isinstance(denials, list),
        denials_dropped=int(exit_frame.get("denials_dropped") or 0),
        exec_id=exit_frame.get("exec_id"),
    )


def _unattributed_in(conn: _protocol.Connection, start: str, end: str) -> List[Dict[str, Any]]:
    """The session's denials no exec could be found for (egress events carry no pid) whose
    time lies in [start, end], marked `attributed_by: "time"`: another exec running at the
    same time may have caused them (docs/AGENT-API.md)."""
    conn.send({"op": "denials"})
    f = conn.recv()
    e = _protocol.error_of(f)
    if e is not None:
        raise ExecError(e.get("message", ""), kind=e.get("kind", "error"), hint=e.get("hint"))
    out = []
    for ev in f.get("denials") or []:
        t = ev.get("time") if isinstance(ev, dict) else None
        if isinstance(t, str) and start <= t <= end:
            ev = dict(ev)
            ev["attributed_by"] = "time"
            out.append(ev)
    return out
