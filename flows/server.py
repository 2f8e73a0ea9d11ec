"""A temporary Prefect API server that dies with the process that started it (Linux).

Prefect's ephemeral server is a child process that outlives a parent killed with SIGKILL
(nothing runs in the parent to stop it). :class:`TiedServer` is Prefect's
``SubprocessASGIServer`` (same port choice, readiness wait and clean stop) whose child first
asks the kernel for ``PR_SET_PDEATHSIG``: when the thread that started it ends, whatever the
cause, the server gets SIGKILL. Its database is SQLite, whose transactions survive that.

The death signal follows the starting *thread*: start it from a thread that outlives the
runs (``prefect_runtime()`` does, as a context manager).

The child runs in a session (process group) of its own: a terminal's Ctrl-C, which goes to
the whole foreground process group, reaches only the process that started it, which then ends
its runs (they still report to the server) and stops the server on the way out. Without that,
Ctrl-C killed the server first and the interrupted run failed talking to it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import prefect
from prefect.server.api.server import SubprocessASGIServer
from prefect.settings import get_current_settings

__all__ = ["TiedServer"]

# Runs in the child before the server: PR_SET_PDEATHSIG (1) = SIGKILL, then check the parent
# did not die before the request (the child would then belong to init already), then uvicorn.
_LAUNCHER = """
import ctypes, os, runpy, signal, sys
libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl(1, int(signal.SIGKILL), 0, 0, 0) != 0:
    raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
if os.getppid() != int(sys.argv[1]):
    sys.exit(0)
sys.argv = ["uvicorn", *sys.argv[2:]]
runpy.run_module("uvicorn", run_name="__main__", alter_sys=True)
"""


class TiedServer(SubprocessASGIServer):
    """``SubprocessASGIServer`` whose process is killed when its starting thread's process dies."""

    _instances: dict[int | None, Any] = {}  # noqa: RUF012 - its own registry, apart from Prefect's server

    @property
    def pid(self) -> int | None:
        return self.server_process.pid if self.server_process is not None else None

    def _uvicorn_args(self) -> list[str]:
        return [
            "--app-dir", str(prefect.__module_path__.parent),
            "--factory", "prefect.server.api.server:create_app",
            "--host", "127.0.0.1",
            "--port", str(self.port),
            "--log-level", "error",
            "--lifespan", "on",
        ]  # fmt: skip

    def _run_uvicorn_command(self) -> subprocess.Popen[Any]:
        env = {
            **os.environ,
            "PREFECT_UI_ENABLED": "0",
            "PREFECT__SERVER_EPHEMERAL": "1",
            "PREFECT__SERVER_FINAL": "1",
            **get_current_settings().to_environment_variables(exclude_unset=True),
        }
        command = [sys.executable, "-c", _LAUNCHER, str(os.getpid()), *self._uvicorn_args()]
        # its own session: the terminal's SIGINT to the foreground group is the parent's alone
        return subprocess.Popen(command, env=env, start_new_session=True)
