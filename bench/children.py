"""Servers and nodes run as child processes, so the load generator never shares their CPU."""

from __future__ import annotations

import os
import select
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


class ChildFailed(Exception):
    """A child process did not start; the message carries the end of its log."""


def python_module(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


@contextmanager
def spawned(
    argv: Sequence[str], log_path: Path, *, ready_line: bool
) -> Iterator[subprocess.Popen[bytes]]:
    """Runs `argv` from the checkout, logging to `log_path`, and stops it on exit.

    With `ready_line` its stdout is a pipe for `ready_port`; its stdin is always a pipe whose
    closing tells a bare server to stop, so a child never outlives a crashed parent.
    """
    path = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            list(argv),
            cwd=REPO_ROOT,
            env={**os.environ, "PYTHONPATH": path},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE if ready_line else log,
            stderr=log,
        )
    try:
        yield process
    finally:
        _stop(process)


def ready_port(process: subprocess.Popen[bytes], log_path: Path, timeout: float = 30.0) -> int:
    """Waits for the child's `READY <port>` line and returns the port."""
    assert process.stdout is not None
    readable, _, _ = select.select([process.stdout], [], [], timeout)
    line = process.stdout.readline() if readable else b""
    if not line.startswith(b"READY "):
        raise ChildFailed(f"{process.args} did not start:\n{log_tail(log_path)}")
    return int(line.split()[1])


def log_tail(log_path: Path, chars: int = 3000) -> str:
    return log_path.read_text(errors="replace")[-chars:] if log_path.exists() else "(no log)"


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.stdin is not None:
        process.stdin.close()
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    if process.stdout is not None:
        process.stdout.close()
