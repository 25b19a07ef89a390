"""agentcage from Python: a sandbox session as an object.

    import agentcage
    with agentcage.Session(policy="~/.config/agentcage/agent.toml", memory="4G") as s:
        r = s.exec("pytest -q", timeout=600)
        print(r.exit_code, r.stdout, r.denials)
        s.write_file("notes.txt", "hello\\n")
        print(s.read_file("notes.txt"))

Pure standard library; talks to the session's control socket directly (docs/SESSIONS.md).
See docs/AGENT-API.md for the adapters to agent frameworks.
"""

from .errors import (
    AgentcageError,
    ExecError,
    FileOpError,
    NotSupported,
    SessionGone,
    SessionStartError,
)
from .session import DENIALS_NOTE, ExecResult, Session, flags_to_args

__version__ = "0.1.0"

__all__ = [
    "AgentcageError",
    "DENIALS_NOTE",
    "ExecError",
    "ExecResult",
    "FileOpError",
    "NotSupported",
    "Session",
    "SessionGone",
    "SessionStartError",
    "flags_to_args",
]
