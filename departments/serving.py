"""A demo department's HTTP endpoint on a real socket, served from a background thread.

Example::

    class LicenceApi(DemoServer):
        name = "licence-api"
        def _handle(self, request, method): ...      # one request, GET/POST/PUT

    with LicenceApi(...) as api:                      # start() ... stop()
        httpx.get(api.base_url + "/licences")

The stdlib's threading HTTP server, quiet (no request log; a client that hung up is not an
error), HTTP/1.1 keep-alive with Nagle off (headers and body go out in two writes: with Nagle
on, keep-alive clients wait ~40 ms for the delayed ACK on every response), idle connections
closed after a minute. ``port=0`` takes a free port; ``port`` then says which.
"""

from __future__ import annotations

import logging
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self, cast

logger = logging.getLogger(__name__)


class DemoServer:
    """Start, stop and serve; a subclass answers each request in ``_handle``."""

    name = "demo-server"  # the serving thread's name and the error log's
    server_version = "onceonly-demo/1"

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host, self.port = host, port
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._server is not None

    def start(self) -> Self:
        if self._server is not None:
            return self
        self._before_start()
        self._server = _Server((self.host, self.port), self)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name=self.name, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving (the department is down); :meth:`start` serves again."""
        server, thread = self._server, self._thread
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if thread is not None:
            thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _before_start(self) -> None:
        """What must hold before serving (a subclass raises if it does not)."""

    def _handle(self, request: BaseHTTPRequestHandler, method: str) -> None:
        raise NotImplementedError


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # keep-alive connections must not hold up stop()

    def __init__(self, address: tuple[str, int], owner: DemoServer) -> None:
        super().__init__(address, _Handler)
        self.owner = owner

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Quiet about clients that hung up (e.g. after their own timeout); log anything else."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            logger.exception("%s: error while serving a request", self.owner.name)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    timeout = 60  # close idle keep-alive connections

    @property
    def _owner(self) -> DemoServer:
        return cast(_Server, self.server).owner

    def version_string(self) -> str:
        return self._owner.server_version

    def do_GET(self) -> None:
        self._owner._handle(self, "GET")

    def do_POST(self) -> None:
        self._owner._handle(self, "POST")

    def do_PUT(self) -> None:
        self._owner._handle(self, "PUT")

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: no request log on stderr."""


__all__ = ["DemoServer"]
