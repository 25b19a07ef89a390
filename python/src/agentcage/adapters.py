"""Thin adapters from a `Session` to the shapes agent frameworks expect. None of those
frameworks is imported (nor a dependency): each adapter returns plain values that the
framework's own type is built from (see docs/AGENT-API.md for the few lines of glue).
"""

from typing import Any, Dict, List, Optional, Tuple

from .errors import ExecError
from .session import ExecResult, Session


def _run(session: Session, command: str, timeout: Optional[float]) -> ExecResult:
    try:
        return session.exec(command, timeout=timeout)
    except ExecError as e:
        # A shell reports an unrunnable command with 126/127 and a message: so do we.
        code = e.exit_code if e.exit_code is not None else 125
        return ExecResult(exit_code=code, stdout="", stderr=e.message + "\n")


def deepagents_execute(session: Session, command: str, timeout: Optional[float] = None) -> Dict[str, Any]:
    """LangChain Deep Agents' `BaseSandbox.execute(command)` -> `ExecuteResponse(output=...,
    exit_code=..., truncated=...)`: build it with `ExecuteResponse(**deepagents_execute(s, c))`."""
    r = _run(session, command, timeout)
    return {"output": r.output, "exit_code": r.exit_code, "truncated": r.truncated}


def deepagents_upload(session: Session, files: List[Tuple[str, bytes]]) -> List[Optional[str]]:
    """Deep Agents' `upload_files([(path, bytes)])`: one error string (or None) per file."""
    out: List[Optional[str]] = []
    for path, data in files:
        try:
            session.write_file(path, data, create_dirs=True)
            out.append(None)
        except Exception as e:  # reported per file, as the protocol asks
            out.append(str(e))
    return out


def deepagents_download(session: Session, paths: List[str]) -> List[Tuple[str, Optional[bytes], Optional[str]]]:
    """Deep Agents' `download_files([path])`: (path, content or None, error or None)."""
    out: List[Tuple[str, Optional[bytes], Optional[str]]] = []
    for p in paths:
        try:
            out.append((p, session.read_file(p), None))
        except Exception as e:
            out.append((p, None, str(e)))
    return out


def swerex_run_in_session(session: Session, command: str, timeout: Optional[float] = None) -> Dict[str, Any]:
    """SWE-ReX's `run_in_session(BashAction(command=..., timeout=...))` -> `BashObservation`
    fields (output, exit_code, failure_reason)."""
    r = _run(session, command, timeout)
    reason = "timeout" if r.timed_out else ""
    return {"output": r.output, "exit_code": r.exit_code, "failure_reason": reason}


def openhands_execute_command(session: Session, command: str, cwd: Optional[str] = None, timeout: Optional[float] = None) -> Dict[str, Any]:
    """OpenHands' workspace `execute_command(command, cwd, timeout)` -> CommandResult fields
    (command, exit_code, stdout, stderr, timeout_occurred)."""
    try:
        r = session.exec(command, cwd=cwd, timeout=timeout)
    except ExecError as e:
        r = ExecResult(exit_code=e.exit_code if e.exit_code is not None else 125, stdout="", stderr=e.message + "\n")
    return {
        "command": command,
        "exit_code": r.exit_code,
        "stdout": r.stdout,
        "stderr": r.stderr,
        "timeout_occurred": r.timed_out,
    }
