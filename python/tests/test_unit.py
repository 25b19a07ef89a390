"""Unit tests of the agentcage package (no sandbox needed)."""

import os
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import unittest
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))

import agentcage  # noqa: E402
from agentcage import _protocol, adapters  # noqa: E402
from agentcage.session import _cli_error, _exec_on, _Stream  # noqa: E402


class Framing(unittest.TestCase):
    def test_roundtrip_split_anywhere(self):
        data = _protocol.encode({"op": "hello", "version": 1}) + _protocol.encode({"ok": True, "é": [1, 2]})
        for cut in range(len(data) + 1):
            r = _protocol.FrameReader()
            r.push(data[:cut])
            got = []
            f = r.next()
            while f is not None:
                got.append(f)
                f = r.next()
            r.push(data[cut:])
            f = r.next()
            while f is not None:
                got.append(f)
                f = r.next()
            self.assertEqual(got, [{"op": "hello", "version": 1}, {"ok": True, "é": [1, 2]}])

    def test_oversized_and_garbage_refused(self):
        r = _protocol.FrameReader()
        r.push(struct.pack(">I", _protocol.MAX_FRAME + 1))
        with self.assertRaises(_protocol.ProtocolError):
            r.next()
        r = _protocol.FrameReader()
        r.push(struct.pack(">I", 3) + b"abc")
        with self.assertRaises(_protocol.ProtocolError):
            r.next()
        with self.assertRaises(ValueError):
            _protocol.encode({"x": "a" * (_protocol.MAX_FRAME + 1)})

    def test_error_of(self):
        self.assertIsNone(_protocol.error_of({"ok": True}))
        e = _protocol.error_of({"ok": False, "error": {"kind": "exec", "message": "m", "exit_code": 127}})
        self.assertEqual(e["exit_code"], 127)


class Flags(unittest.TestCase):
    def test_flags_to_args(self):
        self.assertEqual(
            agentcage.flags_to_args({"memory": "4G", "allow_host": ["a", "b"], "best_effort": True, "no": False, "n": None, "pids": 64}),
            ["--memory", "4G", "--allow-host", "a", "--allow-host", "b", "--best-effort", "--pids", "64"],
        )

    def test_start_args(self):
        s = agentcage.Session("p.toml", agentcage="/bin/agentcage", name="n1", rw=["/x"])
        self.assertEqual(
            s.start_args(),
            ["/bin/agentcage", "session", "start", "--name", "n1", "-q", "--policy", "p.toml", "--rw", "/x", "--events", "--die-with-parent"],
        )
        s = agentcage.Session(agentcage="a", name="n", events=False, die_with_parent=False)
        self.assertNotIn("--events", s.start_args())
        self.assertNotIn("--die-with-parent", s.start_args())

    def test_cli_error(self):
        self.assertEqual(
            _cli_error("agentcage: error: bad thing\nagentcage: hint: do this\n"), ("bad thing", "do this")
        )
        self.assertEqual(_cli_error("plain\n"), ("plain", None))

    def test_start_failure_carries_message(self):
        with tempfile.TemporaryDirectory() as d:
            fake = os.path.join(d, "agentcage")
            with open(fake, "w") as f:
                f.write("#!/bin/sh\necho 'agentcage: error: --memory: not a size' >&2\necho 'agentcage: hint: try 4G' >&2\nexit 2\n")
            os.chmod(fake, 0o755)
            with self.assertRaises(agentcage.SessionStartError) as cm:
                agentcage.Session(agentcage=fake, memory="lots").start()
            self.assertEqual(cm.exception.message, "--memory: not a size")
            self.assertEqual(cm.exception.hint, "try 4G")
            self.assertEqual(cm.exception.exit_code, 2)
            self.assertIn("hint: try 4G", str(cm.exception))


class Diff(unittest.TestCase):
    """Session.diff runs `agentcage diff TARGET --json [PATHS]` (and --patch) from /."""

    def fake(self, d, rc=0):
        log = os.path.join(d, "log")
        fake = os.path.join(d, "agentcage")
        with open(fake, "w") as f:
            f.write(
                "#!/bin/sh\n"
                'echo "$(pwd) $*" >> %s\n'
                'case "$*" in *--patch*) printf "PATCH\\n";; *--json*) echo \'{"overlay": "o", "changes": [], "sensitive": []}\';; esac\n'
                "[ %d = 0 ] || { echo 'agentcage: error: no overlay named \"x\"' >&2; exit %d; }\n" % (log, rc, rc)
            )
        os.chmod(fake, 0o755)
        return fake, log

    def session(self, fake, **flags):
        s = agentcage.Session(agentcage=fake, name="n1", **flags)
        s.socket_path = "/nonexistent"  # started, as far as diff is concerned
        return s

    def test_args(self):
        with tempfile.TemporaryDirectory() as d:
            fake, log = self.fake(d)
            self.assertEqual(self.session(fake, overlay=True).diff(), {"overlay": "o", "changes": [], "sensitive": []})
            r = self.session(fake, overlay="mine").diff("src", "/ws/a", patch=True)
            self.assertEqual(r["patch"], "PATCH\n")
            self.session(fake, overlay=True, overlay_dir="/tmp/ov").diff()
            with open(log) as f:
                self.assertEqual(f.read().splitlines(), [
                    "/ diff n1 --json",
                    "/ diff mine --json src /ws/a",
                    "/ diff mine --patch src /ws/a",
                    "/ diff --overlay-dir /tmp/ov --json",
                ])

    def test_errors(self):
        with tempfile.TemporaryDirectory() as d:
            fake, _ = self.fake(d, rc=2)
            with self.assertRaises(agentcage.AgentcageError) as cm:
                self.session(fake, overlay=True).diff()
            self.assertEqual((cm.exception.message, cm.exception.exit_code), ('no overlay named "x"', 2))
            with self.assertRaises(agentcage.NotSupported):
                self.session(fake).diff()


class Streams(unittest.TestCase):
    def test_head_tail_marker(self):
        s = _Stream(7)
        for chunk in (b"ab", b"cdefgh", b"ij"):
            s.push(chunk)
        self.assertTrue(s.truncated)
        self.assertEqual(s.raw(), b"abcdhij")
        self.assertTrue(s.text().startswith("abcd\n[agentcage: output truncated: 3 of 10 bytes"))
        u = _Stream(None)
        u.push(b"x" * 100000)
        self.assertFalse(u.truncated)

    def test_output_property(self):
        r = agentcage.ExecResult(exit_code=0, stdout="a", stderr="b\n")
        self.assertEqual(r.output, "a\nb\n")
        self.assertTrue(r.ok)


class FakeSupervisor(unittest.TestCase):
    """_exec_on against a fake supervisor on a socketpair: fds arrive, output is read,
    the exit frame's fields (and a future `denials` list) land in the result."""

    def run_fake(self, exit_extra):
        a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        conn = _protocol.Connection.__new__(_protocol.Connection)
        conn.sock = a
        conn._reader = _protocol.FrameReader()

        def server():
            buf = b""
            msg, anc, _, _ = b.recvmsg(1, socket.CMSG_SPACE(3 * 4))
            fds = []
            for level, kind, data in anc:
                fds += list(struct.unpack("%di" % (len(data) // 4), data))
            buf = msg
            while len(buf) < 4 or len(buf) < 4 + struct.unpack(">I", buf[:4])[0]:
                buf += b.recv(4096)
            stdin_fd, out_fd, err_fd = fds
            b.sendall(_protocol.encode({"ok": True, "exec_id": 1, "pid": 5, "tty": False}))
            data = os.read(stdin_fd, 100)
            os.write(out_fd, b"got:" + data)
            os.write(err_fd, b"warn\n")
            for fd in fds:
                os.close(fd)
            # A denial of this exec's time: taken before the exit frame goes out, so it lies in
            # the client's window (the client's end is taken after it receives the frame).
            now = agentcage.session._now_rfc3339()
            exit_frame = {"ok": True, "exit": True, "exec_id": 1, "exit_code": 3, "signal": None, "timed_out": False, "status": 3}
            exit_frame.update(exit_extra)
            b.sendall(_protocol.encode(exit_frame))
            if "denials" in exit_extra:
                req = b""
                while len(req) < 4 or len(req) < 4 + struct.unpack(">I", req[:4])[0]:
                    req += b.recv(4096)
                assert b'"op":"denials"' in req, req
                b.sendall(_protocol.encode({"ok": True, "denials": [
                    {"layer": "network", "object": "http x:80", "time": now},
                    {"layer": "network", "object": "old", "time": "2000-01-01T00:00:00.000Z"},
                ], "dropped": 0}))

        t = threading.Thread(target=server)
        t.start()
        r = _exec_on(conn, {"op": "exec", "argv": ["x"], "fds": [0, 1, 2], "wait": True}, b"in", None)
        t.join()
        a.close()
        b.close()
        return r

    def test_exec_on(self):
        r = self.run_fake({})
        self.assertEqual((r.exit_code, r.stdout, r.stderr, r.timed_out), (3, "got:in", "warn\n", False))
        self.assertEqual(r.denials, [])
        self.assertFalse(r.denials_reported)
        self.assertFalse(r.output_open)

    def test_denials_from_exit_frame(self):
        d = {"layer": "network", "object": "evil.test:443", "key": "--allow-host evil.test"}
        r = self.run_fake({"denials": [d], "denials_dropped": 2})
        self.assertEqual(r.denials[0], d)
        self.assertEqual([e["object"] for e in r.denials[1:]], ["http x:80"])
        self.assertEqual(r.denials[1]["attributed_by"], "time")
        self.assertTrue(r.denials_reported)
        self.assertEqual(r.denials_dropped, 2)


class Adapters(unittest.TestCase):
    def test_shapes(self):
        class Fake:
            def exec(self, command, cwd=None, timeout=None, **kw):
                if command == "missing":
                    raise agentcage.ExecError("missing: not found", kind="exec", exit_code=127)
                return agentcage.ExecResult(exit_code=1, stdout="o\n", stderr="e\n", timed_out=True)

        s = Fake()
        self.assertEqual(adapters.deepagents_execute(s, "x"), {"output": "o\ne\n", "exit_code": 1, "truncated": False})
        self.assertEqual(adapters.deepagents_execute(s, "missing")["exit_code"], 127)
        self.assertEqual(adapters.swerex_run_in_session(s, "x")["failure_reason"], "timeout")
        o = adapters.openhands_execute_command(s, "x")
        self.assertEqual((o["exit_code"], o["timeout_occurred"], o["stdout"]), (1, True, "o\n"))


class Build(unittest.TestCase):
    def test_wheel_offline(self):
        root = os.path.dirname(HERE)
        sys.path.insert(0, os.path.join(root, "_build"))
        try:
            import backend
        finally:
            sys.path.pop(0)
        with tempfile.TemporaryDirectory() as d:
            name = backend.build_wheel(d)
            with zipfile.ZipFile(os.path.join(d, name)) as z:
                names = z.namelist()
                self.assertIn("agentcage/__init__.py", names)
                self.assertIn("agentcage/py.typed", names)
                self.assertIn("agentcage-0.1.0.dist-info/RECORD", names)
            self.assertTrue(backend.build_sdist(d).endswith(".tar.gz"))


if __name__ == "__main__":
    unittest.main()
