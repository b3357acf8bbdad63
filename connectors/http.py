"""``http`` connector: a paginated JSON API, pulled incrementally.

Example registration options::

    base_url: http://127.0.0.1:18930/api/v1
    path: /business-licences
    records: data                                   # dotted path of the records in a page ("": the body)
    fields: [uscc, name, ...]                       # the columns to take (the contract's names)
    pagination: {style: page, page_param: page, size_param: size, size: 500, first_page: 1}
    incremental: {param: updated_since, field: updated_at, key: uscc}
    auth: bearer                                    # none | bearer | api_key | hmac
    rate_limit_per_second: 5
    timeout_seconds: 30

Pagination styles (``pagination.style``):

- ``page``: ``?page=N&size=S`` (names configurable), from ``first_page``;
- ``offset``: ``?offset=K&limit=S``;
- ``token``: the next request carries ``token_param=<token>`` where the token is read from the
  page body at the dotted ``token_path`` (e.g. ``meta.next_cursor``); no token, null or "" ends;
- ``link``: the next URL is the RFC 8288 ``Link`` header's ``rel="next"`` target.

Incremental pulls: the API is asked for records updated since the last landed watermark
(inclusive, ``incremental.param``), moved back by ``incremental.lookback_seconds`` (default 0),
and must return them ordered by ``(field, key)``. A record at or before the furthest
``(field, key)`` received is a redelivery when a record with the same content (a digest of its
canonical JSON) was landed or received before the request that brought it, and is dropped;
otherwise it is taken: it committed late, after we had passed its watermark (the look-back
window exists to catch those), or it is a second record with that key and time. The cursor
holds the frontier and the digests of the landed records within the window (``recent``: with
no look-back, those at the frontier's watermark), so nothing is doubled or lost between pulls;
within a pull the de-duplication remembers the same window, page by page (memory bounded by the
window, not by the records pulled).
With ``page``/``offset`` pagination a record changed while we page through moves to the end of
the order and every later record shifts one place forward, so plain page numbers would skip
one. We therefore re-anchor: after each full page whose last watermark is later than the
current ``since``, the next request asks ``since=<that watermark>`` from the first page again
(an overlap of the records at that watermark, dropped by the same de-duplication); only while
a whole page shares one watermark do we step to the next page number. A pull ends at an empty
page, or at a page that is shorter than ``size`` and brought nothing new. With ``token`` and
``link`` pagination the server's continuation is followed (keeping it stable under changes is
the server's job, as keyset tokens do). The cursor only ever names a record that was received
in a fully parsed page.

Authentication (``auth``), secrets named in the registration's ``secrets``:

- ``bearer``: ``Authorization: Bearer <secrets.token>``;
- ``api_key``: header ``api_key_header`` (default ``X-API-Key``) set to ``<secrets.api_key>``;
- ``hmac``: every request is signed with ``secrets.hmac_key``. Headers ``X-Timestamp`` (Unix
  seconds, decimal) and ``X-Signature`` = lowercase hex of
  ``HMAC-SHA256(key, METHOD + "\\n" + PATH_AND_QUERY + "\\n" + TIMESTAMP + "\\n" + SHA256_HEX(BODY))``
  where ``METHOD`` is upper case (``GET``), ``PATH_AND_QUERY`` the request target exactly as
  sent (percent-encoded path, ``?`` and the query when there is one), and ``SHA256_HEX(BODY)``
  the lowercase hex SHA-256 of the request body (of b"" for a GET). With ``hmac_key_id`` set,
  ``X-Key-Id`` carries it too. The key is UTF-8 text.

Faults: timeouts, connection errors, 429 and 5xx are retried with exponential backoff
(``retries`` more tries after the first, default 3; ``backoff_seconds`` default 0.5, at most
``max_backoff_seconds``); a ``Retry-After`` header (seconds or an HTTP date) is honoured when
it asks for longer, up to ``max_retry_after_seconds`` (beyond that the pull gives up at once:
transient). 401/403 and every other 4xx are terminal: no retry. ``rate_limit_per_second``
spaces requests (retries included). Every value becomes text and the dataset's contract
converts it to the contract's types (``contracts.conform``), so nothing is typed by guessing.

Limits (``onceonly.limits``: the connector's ``limits``, each set by ``ONCEONLY_LIMIT_<NAME>``).
A department API is not trusted to be small, finite, fast or well-formed; every page goes through
one reader (``_get`` → ``_body`` → ``_json``) that keeps these, whatever the pagination style::

    ONCEONLY_LIMIT_PAGE_BYTES=8388608 ONCEONLY_LIMIT_PAGE_SECONDS=30 onceonly connectors test scjg-licences

- ``page_bytes``: a page is streamed and refused once its body passes the limit, counted after
  decompression (gzip and deflate are inflated here, never more than the room left, so a gzip
  bomb stops at the limit; other encodings are refused) and before it (a ``Content-Length``
  above the limit is refused before reading). At most about one page's bytes are held.
- ``page_seconds``: from the request to the page's last byte, checked as the bytes arrive and
  enforced by a watchdog that shuts the connection down at the deadline: a source trickling a
  byte at a time (body or headers) cannot pass because each read is under ``timeout_seconds``.
  Each attempt at a page has its own ``page_seconds``.
- ``pull_seconds``: all pages of one pull (the same checks, against the pull's deadline).
- ``pages``: a pull that asks for more pages is refused.
- a loop: asking for a URL already asked in this pull (a ``Link`` or next-page cursor that
  points back to a page already fetched) is refused.
- JSON: a body that is not JSON (an HTML error page sent with status 200, a truncated page),
  not UTF-8, nested deeper than ``json_depth``, with an integer of more than
  ``json_int_digits`` digits or a string of more than ``field_bytes`` bytes is refused.

Each refusal names the page (its number and URL without the query, which may carry a cursor
or a key), the cause and the limit with its variable, and never quotes the body (it may carry
personal data). Time limits raise ``SourceUnavailable`` (transient: a slow source may be fast
on the next run, which resumes from the landed cursor) without retrying the page in this
pull; everything else raises ``SourceDataMalformed`` (terminal: the same pages would be
refused again).
"""

from __future__ import annotations

import datetime as dt
import email.utils
import hashlib
import hmac
import json
import socket
import sys
import threading
import time
import zlib
from collections import Counter
from collections.abc import Generator, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urljoin

import httpx
import pyarrow as pa
from pydantic import Field
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt

from connectors.base import Connector, ConnectorOptions, Cursor, Pulled, json_text
from onceonly.errors import ConfigurationError, SourceDataMalformed, SourceRejected, SourceUnavailable


class Pagination(ConnectorOptions):
    style: Literal["page", "offset", "token", "link"] = "page"
    size: int = Field(100, ge=1)
    size_param: str | None = "size"  # page/offset/token/link: the page-size parameter (None: not sent)
    page_param: str = "page"
    first_page: int = 1
    offset_param: str = "offset"
    limit_param: str = "limit"  # offset style: the size parameter
    token_param: str = "cursor"
    token_path: str = "next"


class Incremental(ConnectorOptions):
    param: str
    field: str
    key: str
    lookback_seconds: float = Field(0, ge=0)


class HttpOptions(ConnectorOptions):
    """The options of an ``http`` registration (unknown keys are refused)."""

    base_url: str
    path: str = ""
    records: str = "data"
    fields: list[str] = Field(min_length=1)
    pagination: Pagination = Pagination()
    incremental: Incremental
    params: dict[str, str] = Field(default_factory=dict)  # fixed query parameters
    auth: Literal["none", "bearer", "api_key", "hmac"] = "none"
    api_key_header: str = "X-API-Key"
    hmac_key_id: str | None = None
    rate_limit_per_second: float | None = Field(None, gt=0)
    timeout_seconds: float = Field(30, gt=0)
    retries: int = Field(3, ge=0)
    backoff_seconds: float = Field(0.5, ge=0)
    max_backoff_seconds: float = Field(30, ge=0)
    max_retry_after_seconds: float = Field(120, ge=0)


class _Retryable(SourceUnavailable):
    """A transient answer, with the server's ``Retry-After`` in seconds when it sent one."""

    def __init__(self, connector: str, cause: str, retry_after: float | None = None) -> None:
        super().__init__(connector, cause)
        self.retry_after = retry_after


class HmacAuth(httpx.Auth):
    """Signs each request as the module docstring describes."""

    def __init__(self, key: str, key_id: str | None = None, clock: Any = time.time) -> None:
        self._key = key.encode("utf-8")
        self._key_id = key_id
        self._clock = clock

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        timestamp = str(int(self._clock()))
        request.headers["X-Timestamp"] = timestamp
        request.headers["X-Signature"] = hmac_signature(
            self._key, request.method, request.url.raw_path.decode("ascii"), timestamp, request.read()
        )
        if self._key_id:
            request.headers["X-Key-Id"] = self._key_id
        yield request


def hmac_signature(key: bytes, method: str, path_and_query: str, timestamp: str, body: bytes) -> str:
    message = "\n".join((method.upper(), path_and_query, timestamp, hashlib.sha256(body).hexdigest()))
    return hmac.new(key, message.encode("utf-8"), hashlib.sha256).hexdigest()


class _RateLimit:
    """At most ``per_second`` requests per second, by spacing them evenly."""

    def __init__(self, per_second: float | None) -> None:
        self._interval = 1.0 / per_second if per_second else 0.0
        self._next = 0.0
        self._lock = threading.Lock()

    def wait(self) -> None:
        if not self._interval:
            return
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + self._interval
        if start > now:
            time.sleep(start - now)


class _Watchdog:
    """Shuts a page's connection down at its deadline, whatever httpx is waiting for then.

    httpx has no total timeout (encode/httpx#1450): its timeouts bound each read, so a server
    trickling its status line, headers or body a byte at a time, each read under the timeout,
    would hold a pull for days. The body is also checked as it streams (``_body``); this covers
    the connection and the headers. Its ``trace`` is httpx's ``trace`` request extension: it
    keeps the socket of the latest connection opened (a pull asks one page at a time, so that
    is the one in use, or an idle one kept alive and reused).
    """

    def __init__(self) -> None:
        self._socket: socket.socket | None = None
        self._lock = threading.Lock()
        self.fired = False
        self._deadline = float("inf")

    def trace(self, event: str, info: dict[str, Any]) -> None:
        # After start_tls the TCP socket is detached: the TLS socket is the one to shut down.
        if event in ("connection.connect_tcp.complete", "connection.start_tls.complete"):
            stream = info.get("return_value")
            with self._lock:
                self._socket = stream.get_extra_info("socket") if stream is not None else None
                # Connected after the deadline (the timer fired while DNS or the connect ran,
                # into no socket or the last one): shut this one at once, or nothing would.
                late = self.fired or time.monotonic() >= self._deadline
            if late:
                self._fire()

    @contextmanager
    def until(self, deadline: float) -> Iterator[None]:
        """Watch the request made in this block; ``fired`` says whether the deadline came first."""
        self.fired = False
        self._deadline = deadline
        timer = threading.Timer(max(0.0, deadline - time.monotonic()), self._fire)
        timer.daemon = True
        timer.start()
        try:
            yield
        finally:
            timer.cancel()
            timer.join()  # a shutdown under way ends here, never during the next request
            self._deadline = float("inf")

    def _fire(self) -> None:
        with self._lock:
            self.fired = True
            sock = self._socket
        if sock is not None:
            with suppress(OSError):  # already closed: nothing to stop
                sock.shutdown(socket.SHUT_RDWR)  # wakes a blocked read (close() would not)


@dataclass
class _Session:
    """What the requests of one pull share."""

    client: httpx.Client
    limiter: _RateLimit
    deadline: float  # time.monotonic() at which pull_seconds is up
    watchdog: _Watchdog = field(default_factory=_Watchdog)
    asked: dict[bytes, int] = field(default_factory=dict)  # digest of each URL asked -> its page number


#: zlib window bits of each Content-Encoding we inflate (RFC 9110 §8.4.1).
_WBITS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


class _Inflate:
    """A gzip or deflate body inflated chunk by chunk, never more than the room left.

    httpx's own decoders inflate each chunk whole: 64 KiB of a gzip bomb is 64 MiB.
    """

    def __init__(self, coding: str) -> None:
        self._zlib = zlib.decompressobj(_WBITS[coding])
        self._raw_fallback = coding == "deflate"

    def decode(self, data: bytes, room: int) -> bytes | None:
        """``data`` inflated; None when it inflates to more than ``room`` bytes. zlib.error when corrupt."""
        try:
            out = self._zlib.decompress(data, room + 1)  # max_length 0 would mean unbounded
        except zlib.error:
            if not self._raw_fallback:
                raise
            # "deflate" is the zlib format (RFC 9110 §8.4.1.2), but some servers send raw deflate.
            self._zlib = zlib.decompressobj(-zlib.MAX_WBITS)
            out = self._zlib.decompress(data, room + 1)
        self._raw_fallback = False
        return None if len(out) > room else out

    @property
    def complete(self) -> bool:
        return self._zlib.eof


class _Refused(Exception):
    """A JSON value beyond a limit, raised from inside ``json.loads`` (its ``parse_int`` hook)."""


def _where(url: httpx.URL) -> str:
    """``url`` for a message: without its query (a cursor, a key) and user info."""
    return str(url.copy_with(query=None, fragment=None, userinfo=b""))


class HttpConnector(Connector):
    type_name = "http"
    options_model = HttpOptions
    opts: HttpOptions

    def _client(self) -> httpx.Client:
        c = self.opts
        # Only the encodings `_Inflate` decodes within page_bytes (httpx would add br and zstd
        # when their packages are installed, and inflate a chunk whole).
        headers = {"Accept": "application/json", "Accept-Encoding": "gzip, deflate", "User-Agent": "onceonly"}
        auth: httpx.Auth | None = None
        if c.auth == "bearer":
            headers["Authorization"] = f"Bearer {self._required_secret('token')}"
        elif c.auth == "api_key":
            headers[c.api_key_header] = self._required_secret("api_key")
        elif c.auth == "hmac":
            auth = HmacAuth(self._required_secret("hmac_key"), c.hmac_key_id)
        return httpx.Client(base_url=c.base_url, headers=headers, timeout=c.timeout_seconds, auth=auth)

    def _required_secret(self, key: str) -> str:
        value = self.secret(key)
        if not value:
            raise ConfigurationError(
                f"connector {self.name!r}: auth is {self.opts.auth} but secrets.{key} is not declared"
            )
        return value

    def _pull(self, cursor: Cursor | None, batch_size: int) -> Iterator[Pulled]:
        c, pg = self.opts, self.opts.pagination
        inc = c.incremental
        fields = list(c.fields)
        # The frontier is the furthest (watermark, key) received (or landed, from the cursor) and
        # `count` how many records at exactly that position were. A record at or before the
        # frontier is a redelivery when an instance with the same content was known before the
        # request that brought it (landed: the cursor's `recent`; received earlier in this pull);
        # otherwise it is late (committed after we passed its watermark) or a second record with
        # that key and time, and it is taken.
        frontier = _position(cursor["watermark"], cursor["key"]) if cursor else None
        frontier_raw = (cursor["watermark"], cursor["key"]) if cursor else (None, None)
        count = int(cursor.get("seen", 1)) if cursor else 0
        landed = _Recent(cursor.get("recent", []) if cursor else [])
        # Received or landed instances, by content digest, within the window the cursor keeps
        # (`_Recent`): older ones are forgotten page by page, as a pull resumed from a cursor
        # would not know them either. Keeping every digest of a pull held ~150 bytes a record
        # (750 MB at 5M records) and copied them all for every page.
        known: Counter[str] = Counter({d: n for d, (_, n) in landed.items.items()})
        known_at = {d: _position(w, "")[:2] for d, (w, _) in landed.items.items()}
        # A cursor written before `recent` existed: skip what it says was landed, by position.
        legacy = frontier if cursor is not None and "recent" not in cursor else None
        legacy_skip = count if legacy is not None else 0
        since = _earlier(cursor["watermark"], inc.lookback_seconds) if cursor else None
        index = 0  # page/offset: pages into the current `since` query
        pending: list[_Taken] = []
        url: str | None = c.path
        token: str | None = None
        number = 0
        with self._client() as client:
            session = _Session(
                client,
                _RateLimit(c.rate_limit_per_second),
                deadline=time.monotonic() + self.limits.pull_seconds,
            )
            while url is not None:
                number += 1
                params: dict[str, Any] = dict(c.params)
                if number == 1 or pg.style != "link":  # a Link target carries its own query
                    if since is not None:
                        params[inc.param] = since
                    if pg.size_param:
                        params[pg.limit_param if pg.style == "offset" else pg.size_param] = pg.size
                    if pg.style == "page":
                        params[pg.page_param] = pg.first_page + index
                    elif pg.style == "offset":
                        params[pg.offset_param] = index * pg.size
                    elif token is not None:
                        params[pg.token_param] = token
                target = client.build_request(
                    "GET", url, params=params or None
                ).url  # {} would drop a query in url
                self._admit(session, target, number)
                response, data = self._fetch(session, target, number)
                body = self._json(data, response, number)
                del data  # one page's bytes at a time
                records = self._records(body, number)
                before = known.copy()  # instances known before this request
                fresh = 0
                for record in records:
                    watermark, key = record.get(inc.field), record.get(inc.key)
                    position = _position(watermark, key)
                    digest = _identity(record)
                    if legacy is not None and (position < legacy or (position == legacy and legacy_skip > 0)):
                        legacy_skip -= position == legacy
                        known[digest] += 1
                        known_at[digest] = position[:2]
                        continue
                    if frontier is not None and position <= frontier:
                        if before[digest] > 0:  # delivered again
                            before[digest] -= 1
                            continue
                        if position == frontier:
                            count += 1
                    else:
                        frontier, frontier_raw, count = position, (watermark, key), 1
                    known[digest] += 1
                    known_at[digest] = position[:2]
                    pending.append(_Taken(record, digest, frontier_raw, count))
                    fresh += 1
                if frontier is not None:
                    _forget_before(known, known_at, frontier_raw[0], inc.lookback_seconds)
                while len(pending) >= batch_size:
                    chunk, pending = pending[:batch_size], pending[batch_size:]
                    yield self._batch(chunk, fields, landed)
                url, token, since, index = self._next(response, body, records, fresh, url, since, index)
        if pending:
            yield self._batch(pending, fields, landed)

    def _next(
        self,
        response: httpx.Response,
        body: Any,
        records: list[dict[str, Any]],
        fresh: int,
        url: str,
        since: Any,
        index: int,
    ) -> tuple[str | None, str | None, Any, int]:
        """``(url, token, since, index)`` of the next request; url None: the pull is complete."""
        c, pg = self.opts, self.opts.pagination
        if pg.style == "token":
            token = _dig(body, pg.token_path)
            if token in (None, ""):
                return None, None, since, index
            return url, str(token), since, index
        if pg.style == "link":
            target = response.links.get("next", {}).get("url")
            if not target:
                return None, None, since, index
            return urljoin(str(response.url), target), None, since, index
        if not records or (fresh == 0 and len(records) < pg.size):
            return None, None, since, index
        last = records[-1].get(c.incremental.field)
        if last is not None and (since is None or _position(last, "") > _position(since, "")):
            return url, None, last, 0  # re-anchor at the last watermark received
        return url, None, since, index + 1

    def _admit(self, session: _Session, target: httpx.URL, number: int) -> None:
        """Refuse to ask for page ``number`` beyond the ``pages`` limit or when ``target`` was
        asked before in this pull (the pagination loops: a ``Link`` or cursor pointing back)."""
        where = _where(target)
        if number > self.limits.pages:
            raise SourceDataMalformed(
                self.name,
                self.limits.exceeded("pages", f"page {number} ({where}): the pull's number of pages"),
            )
        key = hashlib.blake2b(str(target).encode("utf-8"), digest_size=16).digest()
        if key in session.asked:
            style = self.opts.pagination.style
            via = {"link": 'its Link rel="next"', "token": f"its {self.opts.pagination.token_path!r} cursor"}
            raise SourceDataMalformed(
                self.name,
                f"page {number - 1} leads back to page {session.asked[key]} ({where}) through "
                f"{via.get(style, 'the next request')}: the API's pagination loops",
            )
        session.asked[key] = number

    def _fetch(self, session: _Session, target: httpx.URL, number: int) -> tuple[httpx.Response, bytearray]:
        """The page's response (its body consumed) and body, asked again on transient failures."""
        c = self.opts
        attempts = 1 + c.retries

        def wait(state: RetryCallState) -> float:
            backoff = min(c.max_backoff_seconds, c.backoff_seconds * 2 ** (state.attempt_number - 1))
            exc = state.outcome.exception() if state.outcome else None
            asked = exc.retry_after if isinstance(exc, _Retryable) and exc.retry_after else 0.0
            return max(backoff, asked)

        retrying = Retrying(
            stop=stop_after_attempt(attempts),
            wait=wait,
            retry=retry_if_exception_type(_Retryable),
            reraise=True,
        )
        try:
            return retrying(self._get, session, target, number)
        except _Retryable as exc:
            raise SourceUnavailable(self.name, f"{exc.cause} (gave up after {attempts} attempts)") from exc

    def _get(self, session: _Session, target: httpx.URL, number: int) -> tuple[httpx.Response, bytearray]:
        """One attempt at a page, within page_seconds and the pull's deadline (the watchdog's)."""
        session.limiter.wait()
        now = time.monotonic()
        page_deadline = now + self.limits.page_seconds
        limit, deadline = (
            ("page_seconds", page_deadline)
            if page_deadline <= session.deadline
            else ("pull_seconds", session.deadline)
        )
        if now >= deadline:
            raise self._too_slow(limit, number, target)
        receiving = False
        try:
            with (
                session.watchdog.until(deadline),
                session.client.stream(
                    "GET", target, extensions={"trace": session.watchdog.trace}
                ) as response,
            ):
                self._check_status(response, number)
                receiving = True
                return response, self._body(session, response, number, deadline, limit)
        except httpx.TransportError as exc:  # timeouts included
            if session.watchdog.fired:  # it shut the connection down: the read ended early
                raise self._too_slow(limit, number, target) from exc
            if isinstance(exc, httpx.TimeoutException):
                raise _Retryable(
                    self.name, f"page {number}: timed out after {self.opts.timeout_seconds}s"
                ) from exc
            if receiving:
                raise _Retryable(
                    self.name, f"page {number}: the connection broke off in the body ({type(exc).__name__})"
                ) from exc
            base = session.client.base_url
            raise _Retryable(self.name, f"cannot reach {base}: {type(exc).__name__}") from exc

    def _check_status(self, response: httpx.Response, number: int) -> None:
        status = response.status_code
        if status == 429 or status >= 500:
            retry_after = _retry_after(response.headers.get("Retry-After"))
            cause = f"page {number}: the API answered HTTP {status}"
            if retry_after is not None and retry_after > self.opts.max_retry_after_seconds:
                raise SourceUnavailable(
                    self.name,
                    f"{cause} and asked to retry after {retry_after:.0f}s, later than "
                    f"max_retry_after_seconds ({self.opts.max_retry_after_seconds:.0f}s)",
                )
            raise _Retryable(self.name, cause, retry_after)
        if status in (401, 403):
            raise SourceRejected(self.name, f"the API refused our credentials (HTTP {status})")
        if status >= 400:
            raise SourceRejected(self.name, f"page {number}: the API answered HTTP {status}")

    def _body(
        self, session: _Session, response: httpx.Response, number: int, deadline: float, limit: str
    ) -> bytearray:
        """The page's body, decompressed, as it streams in: refused past page_bytes (compressed
        or not) or past the deadline, so at most page_bytes of it are ever held."""
        cap = self.limits.page_bytes
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > cap:
            raise self._too_big(number, response.url)
        inflate = self._inflater(response, number)
        body = bytearray()
        received = 0
        try:
            for raw in response.iter_raw():
                received += len(raw)
                chunk = raw if inflate is None else inflate.decode(raw, cap - len(body))
                if received > cap or chunk is None or len(body) + len(chunk) > cap:
                    raise self._too_big(number, response.url)
                body += chunk
                if time.monotonic() >= deadline:
                    raise self._too_slow(limit, number, response.url)
        except zlib.error as exc:
            raise SourceDataMalformed(
                self.name, f"page {number} ({_where(response.url)}): its compressed body is corrupt ({exc})"
            ) from exc
        if session.watchdog.fired:  # the connection was shut down: what came is a page cut short
            raise self._too_slow(limit, number, response.url)
        if inflate is not None and not inflate.complete:
            raise SourceDataMalformed(
                self.name, f"page {number} ({_where(response.url)}): its compressed body ends early"
            )
        return body

    def _inflater(self, response: httpx.Response, number: int) -> _Inflate | None:
        header = response.headers.get("Content-Encoding", "")
        codings = [p.strip().lower() for p in header.split(",")]
        codings = [p for p in codings if p not in ("", "identity")]
        if not codings:
            return None
        if len(codings) == 1 and codings[0] in _WBITS:
            return _Inflate(codings[0])
        raise SourceDataMalformed(
            self.name,
            f"page {number} ({_where(response.url)}): Content-Encoding {header[:40]!r} is not one we "
            "accept (gzip or deflate)",
        )

    def _too_big(self, number: int, url: httpx.URL) -> SourceDataMalformed:
        return SourceDataMalformed(
            self.name, self.limits.exceeded("page_bytes", f"page {number} ({_where(url)}): its body")
        )

    def _too_slow(self, limit: str, number: int, url: httpx.URL) -> SourceUnavailable:
        if limit == "page_seconds":
            what = f"page {number} ({_where(url)}): the time to receive it"
        else:
            what = f"the pull, at page {number} ({_where(url)}),"
        return SourceUnavailable(self.name, self.limits.exceeded(limit, what))

    def _json(self, data: bytearray, response: httpx.Response, number: int) -> Any:
        """The page's body as JSON, refused (naming the page and the cause, never quoting the body)
        when it is not JSON or goes beyond json_depth, json_int_digits or field_bytes."""
        limits = self.limits
        where = _where(response.url)

        def integer(text: str) -> int:
            digits = len(text) - text.startswith("-")
            if digits > limits.json_int_digits:
                raise _Refused(
                    limits.exceeded(
                        "json_int_digits", f"page {number} ({where}): an integer of {digits} digits"
                    )
                )
            try:
                return int(text)
            except ValueError:  # beyond sys.get_int_max_str_digits(), when the limit is set above it
                raise _Refused(
                    f"page {number} ({where}): an integer of {digits} digits is longer than Python converts "
                    f"({sys.get_int_max_str_digits()} digits)"
                ) from None

        try:
            # parse_int sees each integer's digits before int(), which is quadratic in their number.
            body = json.loads(data, parse_int=integer)
        except _Refused as exc:
            raise SourceDataMalformed(self.name, str(exc)) from None
        except RecursionError:  # deeper than the parser recurses (about 1000): far beyond json_depth
            raise SourceDataMalformed(
                self.name, limits.exceeded("json_depth", f"page {number} ({where}): its nesting")
            ) from None
        except json.JSONDecodeError as exc:
            # exc.msg and exc.pos only: exc.doc is the body.
            kind = response.headers.get("Content-Type")
            typed = f"Content-Type {kind[:60]!r}" if kind else "no Content-Type"
            raise SourceDataMalformed(
                self.name,
                f"page {number} is not valid JSON ({exc.msg}: character {exc.pos} of {len(exc.doc)}; "
                f"{typed}): {where}",
            ) from exc
        except UnicodeDecodeError as exc:
            raise SourceDataMalformed(self.name, f"page {number} is not UTF-8 text: {where}") from exc
        self._check_values(body, number, where)
        return body

    def _check_values(self, body: Any, number: int, where: str) -> None:
        """Refuse a page nested deeper than json_depth or with a string longer than field_bytes
        (iteratively: the depth is what is being checked)."""
        limits = self.limits
        stack: list[tuple[Any, int]] = [(body, 1)]
        while stack:
            value, depth = stack.pop()
            if isinstance(value, str):
                if len(value) * 4 > limits.field_bytes:
                    size = len(value.encode("utf-8", "surrogatepass"))
                    if size > limits.field_bytes:
                        raise SourceDataMalformed(
                            self.name,
                            limits.exceeded(
                                "field_bytes", f"page {number} ({where}): a string of {size} bytes"
                            ),
                        )
                continue
            if isinstance(value, dict):
                inner = [*value.keys(), *value.values()]
            elif isinstance(value, list):
                inner = value
            else:
                continue
            if depth > limits.json_depth:
                raise SourceDataMalformed(
                    self.name, limits.exceeded("json_depth", f"page {number} ({where}): its nesting")
                )
            stack.extend((v, depth + 1) for v in inner)

    def _records(self, body: Any, number: int) -> list[dict[str, Any]]:
        records = _dig(body, self.opts.records)
        if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
            raise SourceDataMalformed(
                self.name, f"page {number} has no list of records under {self.opts.records!r}"
            )
        return records

    def _batch(self, pending: list[_Taken], fields: list[str], landed: _Recent) -> Pulled:
        inc = self.opts.incremental
        records = [t.record for t in pending]
        present = set().union(*(r.keys() for r in records))
        arrays, names = [], []
        for name in fields:
            if name not in present:
                continue  # absent from every record: the contract stage reports the schema change
            arrays.append(pa.array([json_text(r.get(name)) for r in records], pa.string()))
            names.append(name)
        tail = pending[-1]
        for t in pending:
            landed.add(t.digest, t.record.get(inc.field))
        landed.prune(tail.frontier[0], inc.lookback_seconds)
        cursor = {
            "watermark": tail.frontier[0],
            "key": tail.frontier[1],
            "seen": tail.seen,
            "recent": landed.to_json(),
        }
        return Pulled(pa.RecordBatch.from_arrays(arrays, names=names), cursor)


@dataclass(frozen=True)
class _Taken:
    record: dict[str, Any]
    digest: str
    frontier: tuple[Any, Any]  # (watermark, key) of the furthest record taken so far
    seen: int  # how many records at exactly that position were taken


class _Recent:
    """Content digests of landed records within the look-back window of the frontier, counted.

    In the cursor as ``[[digest, watermark, count], ...]``: the records whose watermark is at
    most ``lookback_seconds`` before the frontier's (with no look-back: equal to it).
    """

    def __init__(self, entries: list[list[Any]]) -> None:
        self.items: dict[str, tuple[Any, int]] = {d: (w, int(n)) for d, w, n in entries}

    def add(self, digest: str, watermark: Any) -> None:
        _, n = self.items.get(digest, (watermark, 0))
        self.items[digest] = (watermark, n + 1)

    def prune(self, frontier_watermark: Any, lookback: float) -> None:
        start = _position(_earlier(frontier_watermark, lookback), "")[:2]
        self.items = {d: (w, n) for d, (w, n) in self.items.items() if _position(w, "")[:2] >= start}

    def to_json(self) -> list[list[Any]]:
        return [[d, w, n] for d, (w, n) in sorted(self.items.items())]


def _forget_before(
    known: Counter[str], known_at: dict[str, tuple[Any, ...]], frontier_watermark: Any, lookback: float
) -> None:
    """Drop from ``known`` the digests of records stamped before the look-back window of the
    frontier (``_Recent.prune``'s rule): an API that honours ``since`` sends none of them again
    (the next ``since`` is at or after the window's start), and one resumed from a cursor would
    take such a record as late just the same."""
    start = _position(_earlier(frontier_watermark, lookback), "")[:2]
    gone = [d for d, at in known_at.items() if at < start]
    for digest in gone:
        del known_at[digest]
        del known[digest]


def _identity(record: dict[str, Any]) -> str:
    """A short digest of the record's whole content (canonical JSON)."""
    text = json.dumps(record, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
    return hashlib.blake2b(text.encode("utf-8"), digest_size=12).hexdigest()


def _earlier(watermark: Any, seconds: float) -> Any:
    """``watermark`` moved ``seconds`` back when it is an ISO timestamp (same form), else as is."""
    if not seconds or not isinstance(watermark, str):
        return watermark
    try:
        moment = dt.datetime.fromisoformat(watermark)
    except ValueError:
        return watermark
    return (moment - dt.timedelta(seconds=seconds)).isoformat()


def _dig(body: Any, path: str) -> Any:
    """The value at a dotted path (``meta.next``) of a JSON body; None when absent."""
    value = body
    for part in path.split(".") if path else []:
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def _retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (RFC 9110 §10.2.3: delay-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return max(0.0, (when - dt.datetime.now(dt.UTC)).total_seconds())


def _position(watermark: Any, key: Any) -> tuple[Any, ...]:
    """Comparable ``(watermark, key)`` in the API's order, for any two records.

    ISO timestamps compare as instants (naive ones as UTC); a missing watermark sorts first,
    as NULL does in the API's ``ORDER BY``; other watermarks compare as text, after timestamps.
    """
    if watermark is None:
        return (0, "", str(key))
    if isinstance(watermark, str):
        try:
            moment = dt.datetime.fromisoformat(watermark)
        except ValueError:
            pass
        else:
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=dt.UTC)
            return (1, moment, str(key))
    return (2, str(watermark), str(key))


__all__ = [
    "HmacAuth",
    "HttpConnector",
    "HttpOptions",
    "Incremental",
    "Pagination",
    "hmac_signature",
]
