"""A temporary Prefect server that dies with the process that started it.

Example (what ``onceonly run`` and ``onceonly demo`` do when no ``PREFECT_API_URL`` is set)::

    with temporary_server() as api_url:       # None: PREFECT_API_URL names a server already
        daily_sharing(settings=settings)                 # runs against it

Prefect's own ephemeral server is a child process that outlives its parent when the parent
is killed (SIGKILL, a closed terminal): it went on holding the terminal and its port. Ours is
the same server (``prefect.server.api.server:create_app`` under uvicorn, UI off, SQLite under
``PREFECT_HOME``, as Prefect's), started with ``PR_SET_PDEATHSIG`` so the kernel sends it SIGTERM the moment
its parent dies, and stopped on exit as usual.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import httpx

from onceonly.errors import ConfigurationError

_PR_SET_PDEATHSIG = 1


def _die_with(parent: int) -> Callable[[], None]:
    def die_with_parent() -> None:  # runs in the child between fork and exec
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL("libc.so.6", use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        # The parent may have died before prctl took effect: then another process (init, or a
        # subreaper such as tini) has adopted us already.
        if os.getppid() != parent:
            os._exit(1)

    return die_with_parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def temporary_server(
    *, timeout: float | None = None, while_starting: Callable[[], object] | None = None
) -> Iterator[str | None]:
    """Serve Prefect's API on a free local port for the duration of the block.

    Yields the API URL, with ``PREFECT_API_URL`` pointing at it inside the block; yields None
    and starts nothing when ``PREFECT_API_URL`` already names a server. ``while_starting`` is
    called while the server starts (in its own process, ~3 s): e.g. importing the flow (~2 s).
    """
    from prefect.settings import (
        PREFECT_API_URL,
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS,
        get_current_settings,
        temporary_settings,
    )

    if PREFECT_API_URL.value():
        if while_starting is not None:
            while_starting()
        yield None
        return
    port = _free_port()
    env = {
        **os.environ,
        **get_current_settings().to_environment_variables(exclude_unset=True),
        "PREFECT_UI_ENABLED": "0",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT__SERVER_EPHEMERAL": "1",
        "PREFECT__SERVER_FINAL": "1",
    }
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            "prefect.server.api.server:create_app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "error",
            "--lifespan",
            "on",
        ],
        env=env,
        preexec_fn=_die_with(os.getpid()),  # only prctl and getppid between fork and exec
        stdin=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/api"
    try:
        if while_starting is not None:
            while_starting()
        _wait_healthy(process, url, timeout or PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS.value())
        with temporary_settings(updates={PREFECT_API_URL: url}):
            try:
                yield url
            finally:
                _drain_to_api()
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _drain_to_api() -> None:
    """Send the logs and events still queued for the server before it stops (they would be
    lost, with 'Error logging to API' on the terminal)."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for worker in (APILogWorker, EventsWorker):
        with contextlib.suppress(Exception):
            worker.drain_all(timeout=10)


def _wait_healthy(process: subprocess.Popen[bytes], url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=2.0) as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise ConfigurationError(
                    f"the temporary Prefect server exited with code {process.returncode} before it answered"
                )
            with contextlib.suppress(httpx.HTTPError):
                if client.get(f"{url}/health").status_code == 200:
                    return
            time.sleep(0.2)
    raise ConfigurationError(
        f"the temporary Prefect server did not answer within {timeout:.0f} s "
        "(PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS); its first start migrates its database"
    )


__all__ = ["temporary_server"]
