"""Exceptions. Each carries agentcage's own message (and hint, and exit code) unchanged."""

from typing import Optional


class AgentcageError(Exception):
    """Base class: `message` is agentcage's text, `hint` its hint (or None), `exit_code`
    run's convention where one applies (125 setup, 126/127 exec, 2 usage)."""

    def __init__(
        self,
        message: str,
        *,
        kind: str = "error",
        hint: Optional[str] = None,
        exit_code: Optional[int] = None,
    ) -> None:
        super().__init__(message if hint is None else "%s (hint: %s)" % (message, hint))
        self.message = message
        self.kind = kind
        self.hint = hint
        self.exit_code = exit_code


class SessionStartError(AgentcageError):
    """`agentcage session start` failed: the policy, a flag, or the sandbox's setup."""


class ExecError(AgentcageError):
    """The session refused an exec: `kind` is the protocol's (`exec` with exit_code 126/127
    when the command cannot be run, `setup` (125) for a bad cwd or a fork refused by the
    pids limit, `gone` when the session ended)."""


class SessionGone(AgentcageError):
    """The session is not there any more (stopped, or its sandbox exited)."""


class FileOpError(AgentcageError):
    """read_file/write_file failed inside the sandbox: `message` is the command's stderr
    (e.g. "cat: x: No such file or directory", "Read-only file system")."""


class NotSupported(AgentcageError):
    """The feature is not available for this session (e.g. diff without an overlay)."""
