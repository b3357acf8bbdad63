"""``http`` connector: a paginated JSON API, pulled incrementally.

Example registration options::

    base_url: http://127.0.0.1:18930/api/v1
    path: /business-licences
    records: data                                   # where the list of records is in each page
    fields: [uscc, name, ...]                       # the columns to take (the contract's names)
    pagination: {page_param: page, size_param: size, size: 500, first_page: 1}
    incremental: {param: updated_since, field: updated_at, key: uscc}
    auth: bearer                                    # token from secrets.token
    timeout_seconds: 30

The API is asked for records updated since the last landed watermark (inclusive) and records
at or before the last landed ``(field, key)`` are dropped, so nothing is doubled or lost; the
cursor also counts how many records at that exact position have landed (``seen``), so a key
entered twice in the same second is not lost when a batch ends between the two.
Timeouts, connection errors, 429 and 5xx are retried with exponential backoff (``retries``
more tries after the first, default 3; ``backoff_seconds`` default 0.5); any other 4xx is
terminal. Every value becomes text and the dataset's contract converts it, so nothing is
typed by guessing.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator, Mapping
from typing import Any

import httpx
import pyarrow as pa
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from connectors.base import Connector, Cursor, Pulled
from onceonly.errors import ConfigurationError, SourceDataMalformed, SourceRejected, SourceUnavailable


class HttpConnector(Connector):
    type_name = "http"

    def validate_options(self) -> None:
        self.require("base_url", "path", "fields", "incremental")
        inc = self.options["incremental"]
        if not isinstance(self.options["fields"], list):
            raise ConfigurationError(f"connector {self.name!r}: options.fields must be a list of field names")
        if not isinstance(inc, Mapping) or not inc.get("param") or not inc.get("field") or not inc.get("key"):
            raise ConfigurationError(
                f"connector {self.name!r}: options.incremental needs param, field and key"
            )
        if self.options.get("auth", "none") not in ("none", "bearer"):
            raise ConfigurationError(f"connector {self.name!r}: options.auth must be 'none' or 'bearer'")

    def _client(self) -> httpx.Client:
        headers = {"Accept": "application/json", "User-Agent": "onceonly"}
        if self.options.get("auth") == "bearer":
            token = self.secret("token")
            if not token:
                raise ConfigurationError(
                    f"connector {self.name!r}: auth is bearer but secrets.token is not declared"
                )
            headers["Authorization"] = f"Bearer {token}"
        timeout = float(self.options.get("timeout_seconds", 30))
        return httpx.Client(base_url=self.options["base_url"], headers=headers, timeout=timeout)

    def _pull(self, cursor: Cursor | None, batch_size: int) -> Iterator[Pulled]:
        fields: list[str] = list(self.options["fields"])
        inc = self.options["incremental"]
        page_opts = self.options.get("pagination") or {}
        page = int(page_opts.get("first_page", 1))
        size = int(page_opts.get("size", 100))
        # Records at the cursor's position were landed, except duplicates of that position beyond
        # the `seen` first ones (a source may hold one key twice in the same second).
        last = _position(cursor["watermark"], cursor["key"]) if cursor else None
        to_skip = int(cursor.get("seen", 1)) if cursor else 0
        run, run_length = last, 0  # the latest position taken or skipped, and how many had it
        pending: list[tuple[dict[str, Any], int]] = []  # record, how many at its position so far
        with self._client() as client:
            while True:
                params: dict[str, Any] = {
                    page_opts.get("page_param", "page"): page,
                    page_opts.get("size_param", "size"): size,
                }
                if cursor and cursor["watermark"] is not None:
                    params[inc["param"]] = cursor["watermark"]
                records = self._page(client, params, page)
                if not records:
                    break
                for record in records:
                    position = _position(record.get(inc["field"]), record.get(inc["key"]))
                    if last is not None and position <= last:
                        if position < last:
                            continue
                        if to_skip > 0:  # landed in an earlier pull
                            to_skip -= 1
                            run_length += 1
                            continue
                    run_length = run_length + 1 if position == run else 1
                    run = position
                    pending.append((record, run_length))
                while len(pending) >= batch_size:
                    chunk, pending = pending[:batch_size], pending[batch_size:]
                    yield self._batch(chunk, fields, inc)
                page += 1
        if pending:
            yield self._batch(pending, fields, inc)

    def _page(self, client: httpx.Client, params: dict[str, Any], page: int) -> list[dict[str, Any]]:
        # `retries` counts the tries after the first one.
        attempts = 1 + max(0, int(self.options.get("retries", 3)))
        retrying = Retrying(
            stop=stop_after_attempt(attempts),
            wait=wait_exponential(multiplier=float(self.options.get("backoff_seconds", 0.5)), max=30),
            retry=retry_if_exception_type(SourceUnavailable),
            reraise=True,
        )
        try:
            response = retrying(self._get, client, params, page)
        except SourceUnavailable as exc:
            raise SourceUnavailable(self.name, f"{exc.cause} (gave up after {attempts} attempts)") from exc
        try:
            body = response.json()
        except json.JSONDecodeError as exc:
            raise SourceDataMalformed(
                self.name, f"page {page} is not valid JSON ({exc.msg} at {exc.pos})"
            ) from exc
        records = body.get(self.options.get("records", "data")) if isinstance(body, dict) else None
        if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
            raise SourceDataMalformed(
                self.name, f"page {page} has no list of records under {self.options.get('records', 'data')!r}"
            )
        return records

    def _get(self, client: httpx.Client, params: dict[str, Any], page: int) -> httpx.Response:
        path = self.options["path"]
        try:
            response = client.get(path, params=params)
        except httpx.TimeoutException as exc:
            raise SourceUnavailable(
                self.name, f"page {page}: timed out after {client.timeout.read}s"
            ) from exc
        except httpx.TransportError as exc:
            raise SourceUnavailable(
                self.name, f"cannot reach {client.base_url}: {type(exc).__name__}"
            ) from exc
        if response.status_code == 429 or response.status_code >= 500:
            raise SourceUnavailable(self.name, f"page {page}: the API answered HTTP {response.status_code}")
        if response.status_code in (401, 403):
            raise SourceRejected(self.name, f"the API refused our credentials (HTTP {response.status_code})")
        if response.status_code >= 400:
            raise SourceRejected(self.name, f"page {page}: the API answered HTTP {response.status_code}")
        return response

    def _batch(
        self, pending: list[tuple[dict[str, Any], int]], fields: list[str], inc: dict[str, str]
    ) -> Pulled:
        records = [r for r, _ in pending]
        present = set().union(*(r.keys() for r in records))
        arrays, names = [], []
        for name in fields:
            if name not in present:
                continue  # absent from every record: the contract stage reports the schema change
            arrays.append(pa.array([_text(r.get(name)) for r in records], pa.string()))
            names.append(name)
        tail, seen = pending[-1]
        cursor = {"watermark": tail.get(inc["field"]), "key": tail.get(inc["key"]), "seen": seen}
        return Pulled(pa.RecordBatch.from_arrays(arrays, names=names), cursor)


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(value, ensure_ascii=False)


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


__all__ = ["HttpConnector"]
