"""``onceonly serve --workers N``: N processes answering on one port, each on a socket of its own.

Example::

    serve_processes("127.0.0.1", 8080, workers=2)   # blocks; SIGTERM or Ctrl-C stops all

uvicorn's own ``--workers`` share one listening socket, and the process that wakes first takes
every connection waiting: measured under ``wrk -c8``, one of two processes answered all eight
connections while the other spent no CPU at all. Here each process binds its own socket with
``SO_REUSEPORT`` and the kernel spreads new connections across them (by a hash of each
connection's addresses; Linux only — elsewhere uvicorn's workers). Each process builds its own
app (``sharing.service.serve_app``: its own verified view of the log) before it binds and
listens, so no connection reaches a process still verifying, and a port is never held without
listening (another service's check would take it for free).

A process that dies is started again (its connections are lost, the others go on); when
``_AT_START_DEATHS`` processes in a row die before they listen, the service stops with exit
status 1 — a configuration that cannot work is not retried for ever. Each process is in a
process group of its own, so a terminal's Ctrl-C reaches the supervisor, which stops each once.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import socket
import sys
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess
from typing import Any

_logger = logging.getLogger("onceonly.serve")

_AT_START_DEATHS = 3  # processes in a row that died before they listened: the service stops


def reuse_port_available() -> bool:
    """Whether the kernel spreads one port's connections across sockets with SO_REUSEPORT
    (Linux; the BSDs' SO_REUSEPORT does not balance, macOS's neither)."""
    return sys.platform.startswith("linux") and hasattr(socket, "SO_REUSEPORT")


def _listening_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


def _check_port(host: str, port: int) -> None:
    """Refuse a port something listens on already: sockets with SO_REUSEPORT would share it with
    another such service silently (a second ``onceonly serve --workers`` on the same port)."""
    from onceonly.errors import ConfigurationError

    if port == 0:  # each process would get a port of its own
        raise ConfigurationError("onceonly serve --workers needs a port (--port), not 0")
    probe = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    try:
        socket.create_connection((probe, port), timeout=1).close()
    except OSError:
        pass  # nothing answers: free, or not ours to probe; binding says the rest
    else:
        raise ConfigurationError(f"cannot serve on {host}:{port}: something already listens there")
    try:
        _listening_socket(host, port).close()
    except OSError as exc:
        raise ConfigurationError(f"cannot serve on {host}:{port}: {exc.strerror or exc}") from None


def _worker(host: str, port: int, log_level: str, supervisor: int, ready: Any) -> None:
    """One process: the app (the log verified), then its socket, bound and listening at once,
    then uvicorn on it. ``ready`` is set once it listens."""
    import uvicorn

    from onceonly.files import restrict_new_files
    from onceonly.privacy import install_log_masking
    from sharing.service import serve_app

    _stop_with(supervisor)
    # A group of its own: a terminal's Ctrl-C reaches the supervisor only, which stops each
    # process once with SIGTERM (uvicorn's handler takes a second signal as "exit now", skipping
    # the shutdown that lets the log writer finish).
    os.setpgrp()
    install_log_masking()  # as the command line does in its own process
    restrict_new_files()
    # Built before the socket is bound: a port bound but not yet listening while the log is
    # verified (seconds; more at millions of leaves) would look free to another service's check.
    config = uvicorn.Config(serve_app(), log_level=log_level)
    server = uvicorn.Server(config)
    sock = _listening_socket(host, port)
    sock.listen(config.backlog)
    ready.set()
    server.run(sockets=[sock])


def _stop_with(supervisor: int) -> None:
    """Be sent SIGTERM when the supervisor dies, however it dies (Linux's PR_SET_PDEATHSIG), so
    that no process goes on serving on its own; best effort elsewhere."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(1, int(signal.SIGTERM), 0, 0, 0)  # 1: PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != supervisor:  # it died before the request took effect
        os.kill(os.getpid(), signal.SIGTERM)


def serve_processes(host: str, port: int, workers: int, *, log_level: str = "warning") -> int:
    """Run ``workers`` processes on ``host:port`` until SIGTERM or SIGINT; the exit status (0, or
    1 when processes kept dying before they listened)."""
    _check_port(host, port)
    context = multiprocessing.get_context("spawn")
    stopping = False

    def start() -> tuple[BaseProcess, Any]:
        ready = context.Event()
        process = context.Process(
            target=_worker, args=(host, port, log_level, os.getpid(), ready), name="onceonly-serve"
        )
        process.start()
        return process, ready

    def stop(_signum: int, _frame: Any) -> None:
        nonlocal stopping
        stopping = True

    previous = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}
    running: list[tuple[BaseProcess, Any]] = []
    at_start = 0
    status = 0
    try:
        running += [start() for _ in range(workers)]
        while not stopping:
            ended = wait([p.sentinel for p, _ in running], timeout=0.5)
            for sentinel in ended:
                at = next(i for i, (p, _) in enumerate(running) if p.sentinel == sentinel)
                process, ready = running[at]
                process.join()
                if stopping:
                    break
                # A process that served and then died is started again whatever happened; one
                # that died before it listened counts towards giving up (a configuration that
                # cannot work is not retried for ever).
                at_start = 0 if ready.is_set() else at_start + 1
                _logger.error(
                    "a serving process (pid %s) stopped with exit code %s%s",
                    process.pid,
                    process.exitcode,
                    ""
                    if at_start < _AT_START_DEATHS
                    else f": {at_start} in a row before they listened, stopping the service",
                )
                if at_start >= _AT_START_DEATHS:
                    stopping, status = True, 1
                    break
                running[at] = start()
    finally:
        for process, _ in running:
            if process.is_alive():
                process.terminate()  # uvicorn's graceful shutdown: the log writer finishes
        for process, _ in running:
            process.join(timeout=30)
            if process.is_alive():
                process.kill()
                process.join()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return status


__all__ = ["reuse_port_available", "serve_processes"]
