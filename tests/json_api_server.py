"""A real paginated JSON API on 127.0.0.1 (port 0), for testing the ``http`` connector.

Example::

    with JsonApi(records, style="token", auth="hmac", secret="k") as api:
        httpx.get(api.url + "/items")    # 401: unsigned

Records are dicts with ``id`` and ``updated_at`` (ISO 8601), served in ``(updated_at, id)``
order, filtered by ``updated_since`` (inclusive). Pagination ``style``: ``page`` (page/size),
``offset`` (offset/limit), ``token`` (``cursor`` parameter; the next token is at
``meta.next`` in the body, a keyset position) or ``link`` (``Link: <...>; rel="next"``).
``auth``: ``none``, ``bearer``, ``api_key`` (header ``X-API-Key``) or ``hmac`` (checked with
its own implementation of the scheme documented in ``connectors/http.py``). ``script`` maps
the n-th data request (1-based, retries count) to a fault: an HTTP status, ``(status,
retry_after)``, ``"malformed"`` or ``("delay", seconds)``. ``on_request(n, api)`` runs before
the n-th request is answered (to change records mid-pull). ``log`` keeps every request.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

Fault = int | str | tuple[Any, ...]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Quiet about clients that hung up after their own timeout."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


@dataclass
class Request:
    target: str
    params: dict[str, str]
    headers: dict[str, str]
    at: float


def _instant(value: str) -> dt.datetime:
    moment = dt.datetime.fromisoformat(value)
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


class JsonApi:
    def __init__(
        self,
        records: list[dict[str, Any]],
        *,
        style: str = "page",
        auth: str = "none",
        secret: str = "",
        script: dict[int, Fault] | None = None,
        on_request: Callable[[int, JsonApi], None] | None = None,
        max_size: int = 1000,
    ) -> None:
        self.records = [dict(r) for r in records]
        self.style, self.auth, self.secret = style, auth, secret
        self.script = dict(script or {})
        self.on_request = on_request
        self.max_size = max_size
        self.log: list[Request] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/api"

    def __enter__(self) -> JsonApi:
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def do_GET(self) -> None:
                api._handle(self)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = _Server(("127.0.0.1", 0), Handler)
        threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.shutdown()
        self._server.server_close()

    def touch(self, record_id: str, updated_at: str, **changes: Any) -> None:
        """Change a record (it moves to its new place in the order)."""
        with self._lock:
            for r in self.records:
                if r["id"] == record_id:
                    r.update(changes, updated_at=updated_at)

    # -- serving -----------------------------------------------------------------------------

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        url = urlsplit(h.path)
        params = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        with self._lock:
            self.log.append(Request(h.path, params, dict(h.headers.items()), time.monotonic()))
            n = len(self.log)
        if url.path != "/api/items":
            return self._send(h, 404, {"error": "not found"})
        if not self._authorised(h):
            return self._send(h, 401, {"error": "unauthorised"})
        if self.on_request:
            self.on_request(n, self)
        fault = self.script.get(n)
        if isinstance(fault, tuple) and fault[0] == "delay":
            time.sleep(fault[1])
        elif fault == "malformed":
            return self._send_raw(h, 200, b'{"data": [{"id": "x', {})
        elif isinstance(fault, int):
            return self._send(h, fault, {"error": "injected"})
        elif isinstance(fault, tuple):
            return self._send(h, fault[0], {"error": "injected"}, {"Retry-After": str(fault[1])})
        try:
            body, headers = self._page(params)
        except ValueError as exc:
            return self._send(h, 400, {"error": str(exc)})
        self._send(h, 200, body, headers)

    def _authorised(self, h: BaseHTTPRequestHandler) -> bool:
        if self.auth == "none":
            return True
        if self.auth == "bearer":
            return hmac.compare_digest(h.headers.get("Authorization", ""), f"Bearer {self.secret}")
        if self.auth == "api_key":
            return hmac.compare_digest(h.headers.get("X-API-Key", ""), self.secret)
        timestamp = h.headers.get("X-Timestamp", "")
        if not timestamp.isdigit() or abs(time.time() - int(timestamp)) > 300:
            return False
        message = f"GET\n{h.path}\n{timestamp}\n{hashlib.sha256(b'').hexdigest()}".encode()
        expected = hmac.new(self.secret.encode(), message, hashlib.sha256).hexdigest()
        return hmac.compare_digest(h.headers.get("X-Signature", ""), expected)

    def _page(self, params: dict[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
        with self._lock:
            ordered = sorted(self.records, key=lambda r: (_instant(r["updated_at"]), r["id"]))
        since = params.get("updated_since")
        if since:
            ordered = [r for r in ordered if _instant(r["updated_at"]) >= _instant(since)]
        if self.style == "offset":
            size, start = int(params.get("limit", 100)), int(params.get("offset", 0))
        elif self.style == "token":
            size = int(params.get("size", 100))
            start = 0
            if params.get("cursor"):
                w, key = json.loads(base64.urlsafe_b64decode(params["cursor"]))
                after = (_instant(w), key)
                start = next(
                    (i for i, r in enumerate(ordered) if (_instant(r["updated_at"]), r["id"]) > after),
                    len(ordered),
                )
        else:
            size = int(params.get("size", 100))
            start = (int(params.get("page", 1)) - 1) * size
        if not 1 <= size <= self.max_size:
            raise ValueError(f"size must be between 1 and {self.max_size}")
        page = ordered[start : start + size]
        body: dict[str, Any] = {"data": page}
        headers: dict[str, str] = {}
        more = start + size < len(ordered)
        if self.style == "token":
            token = None
            if more and page:
                token = base64.urlsafe_b64encode(
                    json.dumps([page[-1]["updated_at"], page[-1]["id"]]).encode()
                )
            body["meta"] = {"next": token.decode() if token else None}
        if self.style == "link" and more:
            query = {**params, "page": str(int(params.get("page", 1)) + 1)}
            headers["Link"] = f'</api/items?{urlencode(query)}>; rel="next", </api/items>; rel="first"'
        return body, headers

    def _send(
        self,
        h: BaseHTTPRequestHandler,
        status: int,
        body: dict[str, Any],
        headers: dict[str, str] | None = None,
    ) -> None:
        self._send_raw(h, status, json.dumps(body, ensure_ascii=False).encode(), headers or {})

    def _send_raw(
        self, h: BaseHTTPRequestHandler, status: int, payload: bytes, headers: dict[str, str]
    ) -> None:
        h.send_response(status)
        h.send_header("Content-Type", "application/json; charset=utf-8")
        h.send_header("Content-Length", str(len(payload)))
        for k, v in headers.items():
            h.send_header(k, v)
        h.end_headers()
        h.wfile.write(payload)


def make_records(
    n: int, start: str = "2026-11-20T08:00:00+08:00", same_every: int = 3
) -> list[dict[str, Any]]:
    """``n`` records ``r000``…, ``same_every`` of them sharing each second, with a Chinese name."""
    base = dt.datetime.fromisoformat(start)
    return [
        {
            "id": f"r{i:03d}",
            "name": f"名{i}",
            "amount": i * 10,
            "updated_at": (base + dt.timedelta(seconds=i // same_every)).isoformat(),
        }
        for i in range(n)
    ]
