"""The ``http`` connector's pagination styles, auth schemes, retries and rate limit, against a
real JSON API on 127.0.0.1 (``tests/json_api_server.py``); faults are scripted in the server."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

import pytest
from connector_sources import column, connector, drain, registration
from json_api_server import JsonApi, make_records

from connectors.base import Connector
from connectors.http import hmac_signature
from onceonly.errors import ConfigurationError, SourceDataMalformed, SourceRejected, SourceUnavailable

SECRET = "s3cret-value-never-shown-0042"
STYLES = ["page", "offset", "token", "link"]
AUTHS = ["none", "bearer", "api_key", "hmac"]
SECRET_KEY = {"bearer": "token", "api_key": "api_key", "hmac": "hmac_key"}


def source(api: JsonApi, *, size: int = 5, secret: str = SECRET, **options: Any) -> Connector:
    pagination = {"style": api.style, "size": size}
    if api.style == "offset":
        pagination["size_param"] = "limit"
    if api.style == "token":
        pagination["token_path"] = "meta.next"
    merged: dict[str, Any] = {
        "base_url": api.url,
        "path": "/items",
        "fields": ["id", "name", "amount", "updated_at"],
        "pagination": pagination,
        "incremental": {"param": "updated_since", "field": "updated_at", "key": "id"},
        "auth": api.auth,
        "retries": 2,
        "backoff_seconds": 0.001,
        "timeout_seconds": 5,
        **options,
    }
    name = "ONCEONLY_SECRET_TEST_SOURCE_API"
    secrets = {SECRET_KEY[api.auth]: name} if api.auth in SECRET_KEY else {}
    return connector(registration("http", secrets=secrets, **merged), env={name: secret})


@pytest.mark.parametrize("auth", AUTHS)
@pytest.mark.parametrize("style", STYLES)
def test_every_style_and_auth_yields_each_record_once_and_resumes_exactly(style: str, auth: str) -> None:
    records = make_records(23)
    with JsonApi(records, style=style, auth=auth, secret=SECRET) as api:
        pulled = drain(source(api), None, batch_size=4)
        assert column(pulled, "id") == [r["id"] for r in records]
        assert column(pulled, "amount") == [str(r["amount"]) for r in records]  # text; the contract types it
        for k in range(len(pulled)):
            rest = drain(source(api), pulled[k].cursor, batch_size=4)
            assert column(pulled[: k + 1], "id") + column(rest, "id") == [r["id"] for r in records]

        api.records.append(
            {"id": "r999", "name": "新", "amount": 1, "updated_at": "2026-11-21T00:00:00+08:00"}
        )
        assert column(drain(source(api), pulled[-1].cursor), "id") == ["r999"]


@pytest.mark.parametrize("auth", ["bearer", "api_key", "hmac"])
def test_a_wrong_secret_is_terminal_at_once_and_never_shown(auth: str) -> None:
    with JsonApi(make_records(5), auth=auth, secret=SECRET) as api:
        wrong = "wrong-secret-must-not-leak-77"
        with pytest.raises(SourceRejected, match="refused our credentials \\(HTTP 401\\)") as info:
            drain(source(api, secret=wrong))
        assert info.value.connector == "test-source" and wrong not in str(info.value)
        assert len(api.log) == 1  # no retry


def test_the_hmac_signature_follows_the_documented_scheme() -> None:
    body_hash = hashlib.sha256(b"").hexdigest()
    message = f"GET\n/api/items?page=1&size=5\n1700000000\n{body_hash}".encode()
    expected = hmac.new(b"key", message, hashlib.sha256).hexdigest()
    assert hmac_signature(b"key", "get", "/api/items?page=1&size=5", "1700000000", b"") == expected
    with JsonApi(make_records(3), auth="hmac", secret=SECRET) as api:
        drain(source(api))
        sent = api.log[0].headers
        assert sent["X-Timestamp"].isdigit() and len(sent["X-Signature"]) == 64


def test_a_500_in_the_middle_is_retried_and_the_pull_completes() -> None:
    records = make_records(20)
    with JsonApi(records) as clean:
        drain(source(clean), None, batch_size=3)
    with JsonApi(records, script={2: 500, 3: 502}) as api:
        assert column(drain(source(api), None, batch_size=3), "id") == [r["id"] for r in records]
    assert len(api.log) == len(clean.log) + 2  # the same pages, and the two failures asked again
    targets = [r.target for r in api.log]
    assert targets[1] == targets[2] == targets[3]  # page 2, asked three times
    assert [*targets[:2], *targets[4:]] == [r.target for r in clean.log]


@pytest.mark.parametrize("style", STYLES)
def test_a_page_that_keeps_failing_leaves_a_cursor_within_the_received_pages(style: str) -> None:
    records = make_records(20)
    with JsonApi(records, style=style, script={3: 500, 4: 500, 5: 500}) as api:
        landed = []
        with pytest.raises(SourceUnavailable, match=r"page 3: the API answered HTTP 500 \(gave up after 3"):
            for p in source(api).pull(None, 3):
                landed.append(p)
        ids = column(landed, "id")  # whole batches of what pages 1 and 2 brought; a part batch waits
        assert landed and len(ids) % 3 == 0 and len(ids) <= 10
        assert ids == [r["id"] for r in records[: len(ids)]] and landed[-1].cursor["key"] == ids[-1]
        api.script.clear()
        rest = drain(source(api), landed[-1].cursor, batch_size=3)
        assert column(landed, "id") + column(rest, "id") == [r["id"] for r in records]


def test_429_waits_as_long_as_retry_after_says() -> None:
    with JsonApi(make_records(8), script={2: (429, 1)}) as api:
        drain(source(api))
        assert api.log[2].at - api.log[1].at >= 0.95


def test_a_retry_after_beyond_the_limit_gives_up_at_once() -> None:
    with JsonApi(make_records(8), script={1: (503, 3600)}) as api:
        with pytest.raises(SourceUnavailable, match="retry after 3600s"):
            drain(source(api, max_retry_after_seconds=60))
        assert len(api.log) == 1


def test_a_timeout_is_transient_and_named() -> None:
    script: dict[int, Any] = {2: ("delay", 1.0), 3: ("delay", 1.0)}
    with (
        JsonApi(make_records(8), script=script) as api,
        pytest.raises(SourceUnavailable, match=r"page 2: timed out after 0\.2s \(gave up after 2"),
    ):
        drain(source(api, timeout_seconds=0.2, retries=1))


def test_a_malformed_page_is_terminal() -> None:
    with JsonApi(make_records(8), script={2: "malformed"}) as api:
        with pytest.raises(SourceDataMalformed, match="connector 'test-source': page 2 is not valid JSON"):
            drain(source(api))
        assert len(api.log) == 2


@pytest.mark.parametrize("style", ["page", "offset"])
def test_a_record_changed_mid_pull_does_not_make_another_one_skipped(style: str) -> None:
    records = make_records(30)

    def change(n: int, api: JsonApi) -> None:
        if n == 3:  # after two pages: two early records move to the end, the rest shift forward
            api.touch("r001", "2026-11-21T09:00:00+08:00", name="改")
            api.touch("r004", "2026-11-21T09:00:01+08:00", name="改")

    with JsonApi(records, style=style, on_request=change) as api:
        pulled = drain(source(api), None, batch_size=7)
    ids = column(pulled, "id")
    assert set(ids) == {r["id"] for r in records}
    assert len(ids) == len(set(ids)) + 2 and ids[-2:] == ["r001", "r004"]  # the changes come too, once


def test_the_rate_limit_spaces_requests() -> None:
    with JsonApi(make_records(20)) as api:
        drain(source(api, rate_limit_per_second=20))
    span = api.log[-1].at - api.log[0].at  # measured where the requests arrive, so allow jitter
    assert len(api.log) >= 5 and span >= (len(api.log) - 1) / 20 - 0.03


def test_unknown_or_wrong_options_are_refused_with_their_names() -> None:
    base = {
        "base_url": "http://127.0.0.1:1",
        "fields": ["id"],
        "incremental": {"param": "since", "field": "updated_at", "key": "id"},
    }
    with pytest.raises(ConfigurationError, match=r"options\.page_size: Extra inputs are not permitted"):
        connector(registration("http", page_size=5, **base))
    with pytest.raises(ConfigurationError, match=r"options\.pagination\.style"):
        connector(registration("http", pagination={"style": "scroll"}, **base))
    with pytest.raises(ConfigurationError, match=r"options\.incremental"):
        connector(registration("http", **{**base, "incremental": {"param": "since"}}))


def test_a_declared_auth_without_its_secret_is_a_configuration_error() -> None:
    with JsonApi(make_records(3), auth="api_key", secret=SECRET) as api:
        reg = registration(
            "http",
            base_url=api.url,
            fields=["id"],
            incremental={"param": "updated_since", "field": "updated_at", "key": "id"},
            auth="api_key",
        )
        with pytest.raises(ConfigurationError, match=r"secrets\.api_key is not declared"):
            drain(connector(reg))


def test_a_late_record_within_the_lookback_window_comes_once_and_none_is_doubled() -> None:
    records = make_records(12)  # r000..r011, three per second from 08:00:00 to 08:00:03
    with JsonApi(records) as api:
        final = drain(source(api, incremental=LOOKBACK), None, batch_size=5)[-1].cursor
        assert final["watermark"] == "2026-11-20T08:00:03+08:00"
        # Committed late: stamped before the watermark we already passed, inside / outside the window.
        api.records.append(
            {"id": "late1", "name": "迟", "amount": 1, "updated_at": "2026-11-20T08:00:01+08:00"}
        )
        api.records.append(
            {"id": "late2", "name": "迟", "amount": 2, "updated_at": "2026-11-20T07:00:00+08:00"}
        )
        second = drain(source(api, incremental=LOOKBACK), final)
        assert column(second, "id") == ["late1"]
        assert second[-1].cursor["watermark"] == final["watermark"]  # the frontier does not go back
        assert drain(source(api, incremental=LOOKBACK), second[-1].cursor) == []
        assert drain(source(api), final) == []  # without a look-back, a late record is not seen


def test_with_a_lookback_every_intermediate_cursor_resumes_exactly() -> None:
    records = make_records(23)
    with JsonApi(records, style="offset") as api:
        pulled = drain(source(api, incremental=LOOKBACK), None, batch_size=4)
        assert column(pulled, "id") == [r["id"] for r in records]
        for k in range(len(pulled)):
            rest = drain(source(api, incremental=LOOKBACK), pulled[k].cursor, batch_size=4)
            assert column(pulled[: k + 1], "id") + column(rest, "id") == [r["id"] for r in records]


def test_the_cursor_remembers_only_the_records_of_its_window() -> None:
    with JsonApi(make_records(12)) as api:
        plain = drain(source(api), None, batch_size=12)[-1].cursor
        wide = drain(source(api, incremental=LOOKBACK), None, batch_size=12)[-1].cursor
    assert [w for _, w, _ in plain["recent"]] == ["2026-11-20T08:00:03+08:00"] * 3  # the last second
    assert len(wide["recent"]) == 12


def test_a_cursor_from_before_the_recent_field_still_resumes_exactly() -> None:
    records = make_records(15)
    with JsonApi(records) as api:
        pulled = drain(source(api), None, batch_size=4)
        old = {k: v for k, v in pulled[1].cursor.items() if k != "recent"}
        rest = drain(source(api), old, batch_size=4)
    assert column(pulled[:2], "id") + column(rest, "id") == [r["id"] for r in records]


LOOKBACK = {"param": "updated_since", "field": "updated_at", "key": "id", "lookback_seconds": 120}


@pytest.mark.parametrize("style", STYLES)
def test_a_pull_remembers_only_the_window_not_every_record_it_received(
    style: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The de-duplication keeps the digests the cursor would keep (three records share each
    second: with no look-back, those of the frontier's second), not one per record received."""
    import connectors.http as http

    sizes: list[int] = []
    forget = http._forget_before

    def counted(known: Any, known_at: Any, watermark: Any, lookback: float) -> None:
        forget(known, known_at, watermark, lookback)
        sizes.append(len(known))

    monkeypatch.setattr(http, "_forget_before", counted)
    records = make_records(60)
    with JsonApi(records, style=style) as api:
        pulled = drain(source(api), None, batch_size=7)
    assert column(pulled, "id") == [r["id"] for r in records]  # still each exactly once
    assert len(sizes) >= 12 and max(sizes) <= 3  # a page of 5 spans two seconds at most
