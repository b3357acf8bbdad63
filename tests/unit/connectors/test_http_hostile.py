"""The ``http`` connector against a hostile department API: a real HTTP server on 127.0.0.1
that bombs, trickles, never ends, loops and sends what is not JSON.

Each case must end in the project's error naming the page and the limit or cause, within a
few seconds and without memory growing with what the server offers. The hostile pages are
built here (``HOSTILE``), one handler per path.
"""

from __future__ import annotations

import functools
import json
import threading
import time
import tracemalloc
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import suppress
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from connector_sources import column, connector, drain, registration

from connectors.base import Connector
from onceonly.errors import ConnectorError, SourceDataMalformed, SourceUnavailable
from onceonly.limits import Limits, MiB

WHEN = "2026-11-20T08:00:00+08:00"
PERSONAL = "张三 13800138000"  # what an error page may show; no message may quote it
BOMB_MIB = 128  # what the bomb inflates to


class Handler(BaseHTTPRequestHandler):
    server: HostileApi

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        self.server.hits[url.path] += 1
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        with suppress(OSError):  # the connector hung up, as it should
            HOSTILE[url.path](self, query)

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def send(self, body: bytes, *, status: int = 200, kind: str = "application/json", **headers: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name.replace("_", "-"), value)
        self.end_headers()
        self.wfile.write(body)

    def start(self, **headers: str) -> None:
        """Status and headers of a body that follows without a length (ends when we close)."""
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        for name, value in headers.items():
            self.send_header(name.replace("_", "-"), value)
        self.end_headers()

    def trickle(self, data: bytes, every: float = 0.3) -> None:
        for k in range(len(data)):
            self.wfile.write(data[k : k + 1])
            self.wfile.flush()
            if self.server.stopping.wait(every):
                return


class HostileApi(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.hits: Counter[str] = Counter()
        self.stopping = threading.Event()
        self.url = f"http://127.0.0.1:{self.server_address[1]}"


def page(records: list[dict[str, Any]], next_token: str | None = None) -> bytes:
    return json.dumps({"data": records, "next": next_token}).encode()


def record(n: int | str) -> dict[str, Any]:
    return {"id": f"r{n}", "updated_at": WHEN}


@functools.cache
def bomb(coding: str) -> bytes:
    """A JSON page whose records list is padded with BOMB_MIB MiB of spaces, compressed."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS if coding == "gzip" else zlib.MAX_WBITS)
    parts = [packer.compress(b'{"data": [')]
    parts += [packer.compress(b" " * MiB) for _ in range(BOMB_MIB)]
    parts += [packer.compress(b"]}"), packer.flush()]
    return b"".join(parts)


def compressed(coding: str, body: bytes) -> bytes:
    wbits = {"gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS, "raw-deflate": -zlib.MAX_WBITS}[coding]
    packer = zlib.compressobj(6, zlib.DEFLATED, wbits)
    return packer.compress(body) + packer.flush()


def _bomb(h: Handler, q: dict[str, str]) -> None:
    h.send(bomb(q["coding"]), Content_Encoding=q["coding"])


def _compressed(h: Handler, q: dict[str, str]) -> None:
    coding = q["coding"]
    body = compressed(coding, page([record(1), record(2)]))
    h.send(body, Content_Encoding="deflate" if coding == "raw-deflate" else coding)


def _trickle_body(h: Handler, q: dict[str, str]) -> None:
    body = page([record(1)])
    h.start(Content_Length=str(len(body)))
    h.trickle(body)


def _trickle_headers(h: Handler, q: dict[str, str]) -> None:
    h.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n")
    h.trickle(b"X-Slow: " + b"z" * 1000)


def _silent_body(h: Handler, q: dict[str, str]) -> None:
    h.start(Content_Length="100")
    h.server.stopping.wait(30)


def _silent_headers(h: Handler, q: dict[str, str]) -> None:
    h.server.stopping.wait(30)


def _endless(h: Handler, q: dict[str, str]) -> None:
    h.start()
    h.wfile.write(b'{"data": [')
    while not h.server.stopping.is_set():
        h.wfile.write(b'{"id": "r", "updated_at": "2026"},' * 1000)


def _declared_huge(h: Handler, q: dict[str, str]) -> None:
    h.start(Content_Length=str(2 * MiB))
    h.server.stopping.wait(30)


def _self_link(h: Handler, q: dict[str, str]) -> None:
    h.send(page([record(1)]), Link=f'<{h.path}>; rel="next"')


def _token_cycle(h: Handler, q: dict[str, str]) -> None:
    after = {None: "a", "a": "b", "b": "a"}
    token = q.get("cursor")
    h.send(page([record(token or 0)], after[token]))


def _endless_pages(h: Handler, q: dict[str, str]) -> None:
    n = int(q.get("cursor", "0"))
    h.send(page([record(n)], str(n + 1)))


def _slow_pages(h: Handler, q: dict[str, str]) -> None:
    if h.server.stopping.wait(0.4):
        return
    _endless_pages(h, q)


def _html(h: Handler, q: dict[str, str]) -> None:
    body = f"<html><body><h1>维护中</h1><p>{PERSONAL}</p></body></html>".encode()
    h.send(body, kind="text/html; charset=utf-8")


def _truncated(h: Handler, q: dict[str, str]) -> None:
    h.send(page([record(1), {"id": PERSONAL, "updated_at": WHEN}])[:60])


def _binary(h: Handler, q: dict[str, str]) -> None:
    h.send(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe" + PERSONAL.encode("gb18030"), kind="image/png")


def _deep(h: Handler, q: dict[str, str]) -> None:
    depth = int(q["depth"])
    h.send(b'{"data": [{"id": "r1", "updated_at": "x", "x": ' + b"[" * depth + b"]" * depth + b"}]}")


def _big_integer(h: Handler, q: dict[str, str]) -> None:
    h.send(b'{"data": [{"id": ' + b"9" * int(q["digits"]) + b', "updated_at": "x"}]}')


def _long_string(h: Handler, q: dict[str, str]) -> None:
    h.send(page([{"id": "r1", "updated_at": WHEN, "note": "备" * MiB}]))


HOSTILE: dict[str, Callable[[Handler, dict[str, str]], None]] = {
    "/bomb": _bomb,
    "/compressed": _compressed,
    "/trickle-body": _trickle_body,
    "/trickle-headers": _trickle_headers,
    "/silent-body": _silent_body,
    "/silent-headers": _silent_headers,
    "/endless": _endless,
    "/declared-huge": _declared_huge,
    "/self-link": _self_link,
    "/token-cycle": _token_cycle,
    "/endless-pages": _endless_pages,
    "/slow-pages": _slow_pages,
    "/html": _html,
    "/truncated": _truncated,
    "/binary": _binary,
    "/deep": _deep,
    "/big-integer": _big_integer,
    "/long-string": _long_string,
}


@pytest.fixture(scope="module")
def api() -> Iterator[HostileApi]:
    server = HostileApi()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.stopping.set()
    server.shutdown()
    server.server_close()


def source(
    api: HostileApi, path: str, *, style: str = "token", limits: Limits | None = None, **options: Any
) -> Connector:
    """An ``http`` connector on ``api``'s ``path`` (query: the hostile page's knobs), ``limits`` set."""
    merged: dict[str, Any] = {
        "base_url": api.url,
        "path": path,
        "fields": ["id", "updated_at"],
        "pagination": {"style": style, "size_param": None},
        "incremental": {"param": "updated_since", "field": "updated_at", "key": "id"},
        "retries": 2,
        "backoff_seconds": 0.001,
        "timeout_seconds": 5,
        **options,
    }
    made = connector(registration("http", **merged))
    made.limits = limits or Limits()
    return made


def refused(made: Connector, error: type[ConnectorError], within: float = 10.0) -> str:
    """The message of the ``error`` a pull of ``made`` ends in, after checking it came in time."""
    started = time.monotonic()
    with pytest.raises(error) as info:
        drain(made)
    elapsed = time.monotonic() - started
    assert elapsed < within, f"the pull took {elapsed:.1f}s"
    assert info.value.connector == "test-source"
    message = str(info.value)
    assert PERSONAL not in message
    return message


@pytest.mark.parametrize("coding", ["gzip", "deflate"])
def test_a_compression_bomb_stops_at_page_bytes_in_bounded_memory(api: HostileApi, coding: str) -> None:
    assert len(bomb(coding)) < BOMB_MIB * MiB // 500  # built before measuring: ~1 KiB per MiB
    drain(source(api, f"/compressed?coding={coding}"))  # imports and first-use caches, not measured
    tracemalloc.start()
    try:
        message = refused(
            source(api, f"/bomb?coding={coding}", limits=Limits(page_bytes=MiB)), SourceDataMalformed
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert message.endswith(
        f"page 1 ({api.url}/bomb): its body exceeds the limit page_bytes = 1 MiB (ONCEONLY_LIMIT_PAGE_BYTES)"
    )
    # httpx's own decoder would hold ~64 MiB: it inflates each 64 KiB read whole.
    assert peak < 8 * MiB, f"{peak / MiB:.1f} MiB held for a page limited to 1 MiB ({BOMB_MIB} MiB inflated)"


@pytest.mark.parametrize("coding", ["gzip", "deflate", "raw-deflate"])
def test_a_compressed_page_within_the_limits_is_read(api: HostileApi, coding: str) -> None:
    assert column(drain(source(api, f"/compressed?coding={coding}")), "id") == ["r1", "r2"]


@pytest.mark.parametrize(
    "path", ["/trickle-body", "/trickle-headers", "/silent-body", "/silent-headers", "/slow-pages"]
)
def test_a_page_slower_than_page_seconds_ends_the_pull_at_once(api: HostileApi, path: str) -> None:
    before = api.hits[path]
    # The 30 s read timeout cannot stop these (a trickle resets it, silence outlasts the test).
    made = source(
        api, path, limits=Limits(page_seconds=0.3 if path == "/slow-pages" else 2), timeout_seconds=30
    )
    message = refused(made, SourceUnavailable, within=4.0)
    assert f"page 1 ({api.url}{path}): the time to receive it exceeds the limit page_seconds" in message
    assert "(ONCEONLY_LIMIT_PAGE_SECONDS)" in message
    assert api.hits[path] == before + 1  # not asked again: the next run may, from the landed cursor


def test_a_pull_longer_than_pull_seconds_ends_with_the_limit(api: HostileApi) -> None:
    landed = []
    started = time.monotonic()
    with pytest.raises(SourceUnavailable) as info:
        for pulled in source(api, "/slow-pages", limits=Limits(pull_seconds=1.5)).pull(None, 1):
            landed.append(pulled)
    assert time.monotonic() - started < 3.0
    assert "exceeds the limit pull_seconds = 1.5 s (ONCEONLY_LIMIT_PULL_SECONDS)" in str(info.value)
    assert str(info.value).startswith(f"connector 'test-source': the pull, at page {len(landed) + 1} (")
    assert column(landed, "id") == [f"r{n}" for n in range(len(landed))]  # what came before stays


def test_a_page_that_never_ends_stops_at_page_bytes(api: HostileApi) -> None:
    message = refused(source(api, "/endless", limits=Limits(page_bytes=MiB)), SourceDataMalformed)
    assert message.endswith(
        f"page 1 ({api.url}/endless): its body exceeds the limit page_bytes = 1 MiB "
        "(ONCEONLY_LIMIT_PAGE_BYTES)"
    )


def test_a_declared_length_beyond_page_bytes_is_refused_before_reading(api: HostileApi) -> None:
    message = refused(
        source(api, "/declared-huge", limits=Limits(page_bytes=MiB)), SourceDataMalformed, within=2.0
    )
    assert "its body exceeds the limit page_bytes = 1 MiB" in message


def test_a_link_to_the_same_page_is_a_loop(api: HostileApi) -> None:
    message = refused(source(api, "/self-link", style="link"), SourceDataMalformed)
    assert message.endswith(
        f'page 1 leads back to page 1 ({api.url}/self-link) through its Link rel="next": '
        "the API's pagination loops"
    )


def test_a_cursor_that_comes_back_is_a_loop(api: HostileApi) -> None:
    message = refused(source(api, "/token-cycle"), SourceDataMalformed)
    assert message.endswith(
        f"page 3 leads back to page 2 ({api.url}/token-cycle) through its 'next' cursor: "
        "the API's pagination loops"
    )


def test_more_pages_than_the_limit_are_refused_and_the_pages_before_land(api: HostileApi) -> None:
    landed = []
    with pytest.raises(SourceDataMalformed) as info:
        for pulled in source(api, "/endless-pages", limits=Limits(pages=3)).pull(None, 1):
            landed.append(pulled)
    assert str(info.value).endswith(
        f"page 4 ({api.url}/endless-pages): the pull's number of pages exceeds the limit pages = 3 "
        "(ONCEONLY_LIMIT_PAGES)"
    )
    assert column(landed, "id") == ["r0", "r1", "r2"]


@pytest.mark.parametrize(
    ("path", "cause"),
    [
        (
            "/html",
            "page 1 is not valid JSON (Expecting value: character 0 of 59; "
            "Content-Type 'text/html; charset=utf-8')",
        ),
        (
            "/truncated",
            "page 1 is not valid JSON (Unterminated string starting at: character 37 of 60; "
            "Content-Type 'application/json')",
        ),
        ("/binary", "page 1 is not UTF-8 text"),
    ],
)
def test_a_body_that_is_not_json_names_the_page_and_the_cause_not_the_content(
    api: HostileApi, path: str, cause: str
) -> None:
    before = api.hits[path]
    message = refused(source(api, path), SourceDataMalformed)
    assert cause in message and message.endswith(f": {api.url}{path}")
    assert "维护中" not in message and "<html" not in message
    assert api.hits[path] == before + 1  # malformed is terminal: not asked again


@pytest.mark.parametrize("depth", [40, 100_000])
def test_json_nested_too_deep_is_refused_without_a_traceback(api: HostileApi, depth: int) -> None:
    message = refused(source(api, f"/deep?depth={depth}"), SourceDataMalformed)
    assert message.endswith(
        f"page 1 ({api.url}/deep): its nesting exceeds the limit json_depth = 32 (ONCEONLY_LIMIT_JSON_DEPTH)"
    )


@pytest.mark.parametrize("digits", [41, 5000, 1_000_000])
def test_an_integer_with_too_many_digits_is_refused(api: HostileApi, digits: int) -> None:
    message = refused(source(api, f"/big-integer?digits={digits}"), SourceDataMalformed)
    assert message.endswith(
        f"page 1 ({api.url}/big-integer): an integer of {digits} digits exceeds the limit "
        "json_int_digits = 40 (ONCEONLY_LIMIT_JSON_INT_DIGITS)"
    )


def test_an_integer_beyond_what_python_converts_is_refused_too(api: HostileApi) -> None:
    made = source(api, "/big-integer?digits=5000", limits=Limits(json_int_digits=10_000))
    message = refused(made, SourceDataMalformed)
    assert "an integer of 5000 digits is longer than Python converts (4300 digits)" in message


def test_a_string_longer_than_field_bytes_is_refused(api: HostileApi) -> None:
    message = refused(source(api, "/long-string"), SourceDataMalformed)
    assert message.endswith(
        f"page 1 ({api.url}/long-string): a string of {3 * MiB} bytes exceeds the limit field_bytes = 1 MiB "
        "(ONCEONLY_LIMIT_FIELD_BYTES)"
    )


def test_a_connection_made_after_the_deadline_is_shut_at_once(
    api: HostileApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The deadline passes while the connection is still being made (a slow DNS or connect):
    # the watchdog fired into no socket; the socket connected late must be shut all the same.
    import socket as socket_module

    connect = socket_module.create_connection

    def slow_connect(*args: Any, **kwargs: Any) -> Any:
        time.sleep(1.0)
        return connect(*args, **kwargs)

    monkeypatch.setattr(socket_module, "create_connection", slow_connect)
    made = source(api, "/trickle-headers", limits=Limits(page_seconds=0.5), timeout_seconds=30)
    message = refused(made, SourceUnavailable, within=4.0)
    assert "exceeds the limit page_seconds" in message
