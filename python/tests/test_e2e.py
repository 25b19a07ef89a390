"""End to end: a real session through the package (exec, files, timeout, errors, close).

Needs the agentcage binary: $AGENTCAGE (else `agentcage` on PATH); skipped with the reason
when there is none or the host cannot run sessions (a failure when AGENTCAGE_TEST_EXPECT
lists `python`). Runs as whoever runs it: .ci/run and tests/mcp.rs run it as root and as
uid 65534. Each test class uses its own XDG_RUNTIME_DIR and workspace.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import unittest

import agentcage

BIN = os.environ.get("AGENTCAGE") or shutil.which("agentcage")


def _skip_reason():
    if not BIN:
        return "no agentcage binary (set AGENTCAGE)"
    p = subprocess.run([BIN, "run", "-p", "ns-only", "-w", "/tmp", "--", "true"], capture_output=True, text=True)
    if p.returncode != 0:
        return "agentcage cannot run sandboxes here: " + p.stderr.strip()
    return None


SKIP = _skip_reason()
if SKIP and "python" in os.environ.get("AGENTCAGE_TEST_EXPECT", "").split(","):
    raise SystemExit("AGENTCAGE_TEST_EXPECT lists python but: " + SKIP)


@unittest.skipIf(SKIP is not None, SKIP or "")
class EndToEnd(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.xdg = tempfile.mkdtemp(prefix="agentcage-py-xdg-")
        os.chmod(cls.xdg, 0o700)
        cls.ws = tempfile.mkdtemp(prefix="agentcage-py-ws-")
        if os.geteuid() == 0:
            # As root the sandbox user is 65534 (see tests/common): it must own its workspace.
            os.chown(cls.ws, 65534, 65534)
        cls.old_xdg = os.environ.get("XDG_RUNTIME_DIR")
        os.environ["XDG_RUNTIME_DIR"] = cls.xdg
        cls.s = agentcage.Session(agentcage=BIN, workspace=cls.ws, pids=256)
        cls.s.start()

    @classmethod
    def tearDownClass(cls):
        cls.s.close()
        left = os.listdir(os.path.join(cls.xdg, "agentcage")) if os.path.isdir(os.path.join(cls.xdg, "agentcage")) else []
        if cls.old_xdg is None:
            os.environ.pop("XDG_RUNTIME_DIR", None)
        else:
            os.environ["XDG_RUNTIME_DIR"] = cls.old_xdg
        shutil.rmtree(cls.xdg, ignore_errors=True)
        shutil.rmtree(cls.ws, ignore_errors=True)
        assert left == [], "session files left after close(): %r" % left

    def test_exec_codes_and_output(self):
        r = self.s.exec("echo out; echo err >&2; exit 3")
        self.assertEqual((r.exit_code, r.stdout, r.stderr, r.timed_out), (3, "out\n", "err\n", False))
        r = self.s.exec(["sh", "-c", "kill -9 $$"])
        self.assertEqual((r.exit_code, r.signal), (137, 9))
        r = self.s.exec("cat; echo $FOO; pwd", stdin="abc\n", env={"FOO": "bar"}, cwd="/tmp")
        self.assertEqual(r.stdout, "abc\nbar\n/tmp\n")
        self.assertTrue(r.denials_reported)
        self.assertEqual(r.denials, [])

    def test_denied_syscall_in_result(self):
        r = self.s.exec("unshare -U true")
        self.assertNotEqual(r.exit_code, 0)
        d = [e for e in r.denials if e["layer"] == "seccomp" and e["object"] == "unshare(CLONE_NEWUSER)"]
        self.assertEqual(len(d), 1, r.denials)
        self.assertTrue(d[0]["key"])

    def test_big_output_and_cap(self):
        r = self.s.exec("head -c 3000000 /dev/zero", max_output=None)
        self.assertEqual((r.stdout_total, len(r.stdout_bytes), r.truncated), (3000000, 3000000, False))
        r = self.s.exec("head -c 100000 /dev/zero | tr '\\0' a; printf END", max_output=1000)
        self.assertTrue(r.stdout_truncated)
        self.assertIn("[agentcage: output truncated: ", r.stdout)
        self.assertTrue(r.stdout.endswith("END"))

    def test_timeout(self):
        t0 = time.monotonic()
        r = self.s.exec("echo before; sleep 30", timeout=0.5)
        self.assertTrue(r.timed_out)
        self.assertEqual((r.exit_code, r.stdout), (124, "before\n"))
        self.assertLess(time.monotonic() - t0, 10)

    def test_background_does_not_hang(self):
        t0 = time.monotonic()
        r = self.s.exec("sleep 30 & echo started")
        self.assertEqual(r.stdout, "started\n")
        self.assertTrue(r.output_open)
        self.assertLess(time.monotonic() - t0, 5)
        self.s.exec("kill %1 2>/dev/null; pkill -x sleep 2>/dev/null; true")

    def test_refusals(self):
        with self.assertRaises(agentcage.ExecError) as cm:
            self.s.exec(["/nonexistent/cmd"])
        self.assertEqual(cm.exception.exit_code, 127)
        with self.assertRaises(agentcage.ExecError) as cm:
            self.s.exec("true", cwd="/nonexistent-dir")
        self.assertEqual(cm.exception.exit_code, 125)
        self.assertIn("nonexistent-dir", cm.exception.message)

    def test_files(self):
        self.assertEqual(self.s.write_file("d/e/f.txt", "héllo\n", create_dirs=True), 7)
        self.assertEqual(self.s.read_text("d/e/f.txt"), "héllo\n")
        blob = bytes(range(256)) * 1000
        self.s.write_file("blob", blob)
        self.assertEqual(self.s.read_file("blob"), blob)
        self.assertEqual(self.s.read_file("blob", max_bytes=10), blob[:10])
        self.assertEqual(self.s.exec("wc -c < blob").stdout.strip(), str(len(blob)))
        with self.assertRaises(agentcage.FileOpError) as cm:
            self.s.read_file("/root/.bash_history")
        self.assertIn("No such file", cm.exception.message)
        with self.assertRaises(agentcage.FileOpError) as cm:
            self.s.write_file("/usr/agentcage-py-test", "x")
        self.assertTrue("Read-only" in cm.exception.message or "denied" in cm.exception.message, cm.exception.message)

    def test_denied_connect_in_result(self):
        with agentcage.Session(agentcage=BIN, workspace=self.ws, allow_host=["allowed.test"]) as s:
            r = s.exec("curl -sS -m 10 -o /dev/null -w '%{http_code}' http://denied.test/")
            self.assertEqual(r.stdout, "403")
            d = [e for e in r.denials if e["layer"] == "network" and "denied.test" in e["object"]]
            self.assertTrue(d and d[0]["key"].startswith("--allow-host denied.test"), r.denials)
            self.assertEqual(s.exec("true").denials, [])

    def test_diff_needs_overlay(self):
        with self.assertRaises(agentcage.NotSupported):
            self.s.diff()

    def test_dies_with_its_process(self):
        # A Python process that starts a session and is killed (SIGKILL: no close(), no
        # atexit): the session stops by itself (die_with_parent, the default).
        code = (
            "import agentcage, os, signal, sys\n"
            "s = agentcage.Session(agentcage=sys.argv[1], workspace=sys.argv[2], name='py-orphan')\n"
            "s.start(); print('up', flush=True); os.kill(os.getpid(), signal.SIGKILL)\n"
        )
        p = subprocess.run([sys.executable, "-c", code, BIN, self.ws], capture_output=True, text=True)
        self.assertEqual((p.returncode, p.stdout), (-9, "up\n"), p.stderr)
        t0 = time.monotonic()
        while time.monotonic() - t0 < 30 and "py-orphan" in _session_names():
            time.sleep(0.05)
        self.assertNotIn("py-orphan", _session_names())


def _session_names():
    p = subprocess.run([BIN, "session", "list", "--json"], capture_output=True, text=True)
    return [x["name"] for x in json.loads(p.stdout or "[]")]


@unittest.skipIf(SKIP is not None, SKIP or "")
class OverlayDiff(unittest.TestCase):
    """An overlay session: diff() lists the changes (and a patch) while the workspace stays
    untouched, during the session and after close()."""

    def setUp(self):
        self.xdg = tempfile.mkdtemp(prefix="agentcage-py-xdg-")
        self.ws = tempfile.mkdtemp(prefix="agentcage-py-ws-")
        # The overlay's directory outside the workspace; as root its parents must be
        # traversable by the sandbox's uid (docs/OVERLAY.md).
        self.base = tempfile.mkdtemp(prefix="agentcage-py-ov-")
        os.chmod(self.base, 0o711)
        with open(os.path.join(self.ws, "old.txt"), "w") as f:
            f.write("old\n")
        if os.geteuid() == 0:
            for p in (self.ws, os.path.join(self.ws, "old.txt")):
                os.chown(p, 65534, 65534)
        self.old_xdg = os.environ.get("XDG_RUNTIME_DIR")
        os.environ["XDG_RUNTIME_DIR"] = self.xdg

    def tearDown(self):
        # agentcage removes the overlay (its work dir is mode 000 for overlayfs: a plain
        # rmtree as uid 65534 cannot).
        ov = os.path.join(self.base, "ov")
        p = None
        if os.path.exists(ov):
            p = subprocess.run([BIN, "discard", "--overlay-dir", ov, "--all", "--remove"], capture_output=True, text=True)
        if self.old_xdg is None:
            os.environ.pop("XDG_RUNTIME_DIR", None)
        else:
            os.environ["XDG_RUNTIME_DIR"] = self.old_xdg
        for d in (self.xdg, self.ws, self.base):
            shutil.rmtree(d, ignore_errors=True)
        if p is not None:
            self.assertEqual(p.returncode, 0, "discard --all --remove: " + p.stderr)

    def test_diff(self):
        ov = os.path.join(self.base, "ov")
        s = agentcage.Session(agentcage=BIN, workspace=self.ws, overlay=True, overlay_dir=ov)
        with s:
            self.assertEqual(s.diff()["changes"], [])
            s.write_file("new.txt", "new\n")
            self.assertEqual(s.exec("echo changed > old.txt && echo x > .envrc").exit_code, 0)
            d = s.diff()
            self.assertEqual({c["path"]: c["kind"] for c in d["changes"]}, {"new.txt": "added", "old.txt": "modified", ".envrc": "added"})
            self.assertEqual((d["sensitive"], d["workspace"]), ([".envrc"], os.path.realpath(self.ws)))
            d = s.diff("old.txt", patch=True)
            self.assertEqual([c["path"] for c in d["changes"]], ["old.txt"])
            self.assertIn("-old\n+changed\n", d["patch"])
        # Closed: the changes wait in the overlay; the workspace never saw them.
        self.assertEqual(len(s.diff()["changes"]), 3)
        with open(os.path.join(self.ws, "old.txt")) as f:
            self.assertEqual(f.read(), "old\n")
        self.assertFalse(os.path.exists(os.path.join(self.ws, "new.txt")))


@unittest.skipIf(SKIP is not None, SKIP or "")
class StartFailure(unittest.TestCase):
    def test_bad_flag_message(self):
        with self.assertRaises(agentcage.SessionStartError) as cm:
            agentcage.Session(agentcage=BIN, memory="lots").start()
        self.assertEqual(cm.exception.exit_code, 2)
        self.assertIn("memory", cm.exception.message)


if __name__ == "__main__":
    unittest.main()
