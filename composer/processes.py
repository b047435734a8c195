"""Server child processes: started in a process group of their own, their output in a log
file, and ended with the process that started them."""

from __future__ import annotations

import contextlib
import ctypes
import signal
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

_PR_SET_PDEATHSIG = 1


def stop_with_parent() -> None:
    """In the child before exec: SIGTERM it when the process that started it dies, so a
    crashed or killed service does not leave a server holding both cores."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def spawn_server(
    cmd: Sequence[str], env: Mapping[str, str], log_file: Path | None
) -> subprocess.Popen[bytes]:
    """Start ``cmd`` with its output appended to ``log_file`` (None: discarded). Its own
    process group: a terminal's Ctrl-C reaches only the parent, which then stops the whole
    group in order; and it gets SIGTERM if the parent dies."""
    if log_file:
        log_file.parent.mkdir(parents=True, exist_ok=True)
    out = log_file.open("ab") if log_file else subprocess.DEVNULL
    try:
        return subprocess.Popen(
            list(cmd),
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=stop_with_parent,
        )
    finally:
        if log_file:
            out.close()  # type: ignore[union-attr]
