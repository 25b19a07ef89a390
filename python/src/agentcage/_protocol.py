"""The session control socket's wire format (docs/SESSIONS.md, protocol version 1).

A frame is a big-endian u32 length and that many bytes of one JSON object (at most 1 MiB);
file descriptors travel by SCM_RIGHTS with the first byte of the frame that uses them.
"""

import array
import json
import socket
import struct
from typing import Any, Dict, List, Optional, Sequence

VERSION = 1
MAX_FRAME = 1 << 20


class ProtocolError(Exception):
    """The supervisor closed the connection or sent something that is not a frame."""


def encode(obj: Dict[str, Any]) -> bytes:
    """One frame holding `obj`."""
    body = json.dumps(obj, separators=(",", ":")).encode()
    if len(body) > MAX_FRAME:
        raise ValueError("request of %d bytes (the protocol's limit is %d)" % (len(body), MAX_FRAME))
    return struct.pack(">I", len(body)) + body


class FrameReader:
    """Splits a byte stream into frames."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def push(self, data: bytes) -> None:
        self._buf += data

    def next(self) -> Optional[Dict[str, Any]]:
        """The next complete frame, or None."""
        if len(self._buf) < 4:
            return None
        (n,) = struct.unpack(">I", bytes(self._buf[:4]))
        if n > MAX_FRAME:
            raise ProtocolError("a frame of %d bytes (limit %d)" % (n, MAX_FRAME))
        if len(self._buf) < 4 + n:
            return None
        body = bytes(self._buf[4 : 4 + n])
        del self._buf[: 4 + n]
        try:
            obj = json.loads(body)
        except ValueError as e:
            raise ProtocolError("a frame that is not JSON: %s" % e) from None
        if not isinstance(obj, dict):
            raise ProtocolError("a frame that is not a JSON object")
        return obj


class Connection:
    """A connection to a session's supervisor (blocking)."""

    def __init__(self, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self.sock.connect(path)
        except OSError:
            self.sock.close()
            raise
        self._reader = FrameReader()

    def fileno(self) -> int:
        return self.sock.fileno()

    def send(self, obj: Dict[str, Any], fds: Sequence[int] = ()) -> None:
        data = encode(obj)
        if fds:
            anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", list(fds)).tobytes())]
            sent = self.sock.sendmsg([data[:1]], anc)
            if sent != 1:
                raise ProtocolError("short send of a frame's first byte")
            data = data[1:]
        self.sock.sendall(data)

    def pending(self) -> Optional[Dict[str, Any]]:
        """A frame already buffered, without reading the socket."""
        return self._reader.next()

    def feed(self) -> None:
        """One read from the socket into the buffer (blocks until something arrives)."""
        data = self.sock.recv(65536)
        if not data:
            raise ProtocolError(
                "the session closed the connection (it was stopped or its sandbox exited)"
            )
        self._reader.push(data)

    def recv(self) -> Dict[str, Any]:
        """The next frame (blocking). Fds sent to us (a pty master) are not expected."""
        while True:
            f = self._reader.next()
            if f is not None:
                return f
            self.feed()

    def close(self) -> None:
        self.sock.close()


def error_of(frame: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    """The `error` object of an error frame, or None for an `ok` frame."""
    if frame.get("ok") is True:
        return None
    e = frame.get("error")
    return e if isinstance(e, dict) else {"kind": "error", "message": str(frame)}


def fds_listed(stdin: bool) -> List[int]:
    return [0, 1, 2] if stdin else [1, 2]
