"""The ``http`` connector against the demo 营业执照 API (a real HTTP server on 127.0.0.1).

Faults are injected by the server (``Faults``), never by patching the connector.
"""

from __future__ import annotations

import datetime as dt
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from connector_sources import column, connector, drain, rows

from connectors import MissingSecret, Registration, load_registration
from connectors.base import Connector
from departments import LICENCE_COLUMNS, Faults, LicenceApi, Manifest
from departments.licences import change_licences, insert_licence_rows, read_licence_rows
from onceonly.errors import SourceDataMalformed, SourceRejected, SourceUnavailable
from onceonly.settings import Settings

TOKEN = "test-token-0123456789abcdef"
SHIPPED = load_registration(Path(Settings().registrations_dir) / "scjg-licences.yaml")

StartApi = Callable[..., LicenceApi]


@pytest.fixture(scope="module")
def shared_api(departments: tuple[Path, Manifest]) -> Iterator[LicenceApi]:
    """The API on the shared register, without faults (stopping a server takes half a second)."""
    with LicenceApi(departments[0] / "scjg" / "licences.db", token=TOKEN) as api:
        yield api


@pytest.fixture
def start_api(departments: tuple[Path, Manifest]) -> Iterator[StartApi]:
    """Start a LicenceApi with faults (on the shared register unless ``db`` is given)."""
    started: list[LicenceApi] = []

    def start(faults: Faults | None = None, db: Path | None = None) -> LicenceApi:
        api = LicenceApi(db or departments[0] / "scjg" / "licences.db", token=TOKEN, faults=faults)
        started.append(api.start())
        return api

    yield start
    for api in started:
        api.stop()


@pytest.fixture
def own_db(departments: tuple[Path, Manifest], tmp_path: Path) -> Path:
    """A copy of the register this test may change."""
    return Path(shutil.copy(departments[0] / "scjg" / "licences.db", tmp_path / "licences.db"))


def licences(api: LicenceApi, *, size: int = 50, token: str | None = TOKEN, **options: Any) -> Connector:
    """The shipped registration, pointed at ``api``, with fast retries."""
    merged = {
        **SHIPPED.options,
        "base_url": api.base_url,
        "pagination": {**SHIPPED.options["pagination"], "size": size},
        "retries": 2,
        "backoff_seconds": 0.001,
        "timeout_seconds": 5,
        **options,
    }
    reg = Registration.model_validate({**SHIPPED.model_dump(), "options": merged})
    return connector(reg, env={"ONCEONLY_SECRET_SCJG_LICENCES_TOKEN": token} if token else {})


def api_order(db: Path) -> list[tuple[Any, ...]]:
    """The register's rows in the API's order: (updated_at, uscc), then insertion."""
    return sorted(read_licence_rows(db), key=lambda r: (r[-1], r[0]))


@pytest.mark.parametrize(("page", "batch"), [(50, 7), (100, 33), (20, 50), (1000, 1000)])
def test_every_record_comes_exactly_once_whatever_the_page_and_batch_sizes(
    shared_api: LicenceApi, departments: tuple[Path, Manifest], page: int, batch: int
) -> None:
    api = shared_api
    pulled = drain(licences(api, size=page), None, batch_size=batch)

    expected = api_order(api.db_path)
    assert rows(pulled, LICENCE_COLUMNS) == expected
    assert len(expected) == departments[1].datasets["licences"].rows
    assert all(p.batch.num_rows == batch for p in pulled[:-1])
    assert all(p.batch.schema.names == list(LICENCE_COLUMNS) for p in pulled)


def test_resuming_from_any_cursor_yields_exactly_the_rest_even_between_duplicates(
    shared_api: LicenceApi, departments: tuple[Path, Manifest]
) -> None:
    api = shared_api
    source = licences(api, size=150)
    expected = api_order(api.db_path)
    one_by_one = drain(source, None, batch_size=1)
    assert rows(one_by_one, LICENCE_COLUMNS) == expected

    # The register holds one key entered twice in the same second (a deliberately bad row).
    (dup,) = departments[1].datasets["licences"].bad_keys("duplicate_key")
    first = next(k for k, r in enumerate(expected) if r[0] == dup)
    assert expected[first + 1][0] == dup and expected[first + 1][-1] == expected[first][-1]
    assert one_by_one[first].cursor["seen"] == 1 and one_by_one[first + 1].cursor["seen"] == 2

    for k in sorted({*range(0, len(expected), 50), first - 1, first, first + 1, len(expected) - 1}):
        rest = drain(source, one_by_one[k].cursor, batch_size=13)
        assert rows(rest, LICENCE_COLUMNS) == expected[k + 1 :], f"resuming after record {k}"


def test_changed_and_new_records_are_picked_up_once_from_the_last_cursor(
    start_api: StartApi, own_db: Path
) -> None:
    api = start_api(db=own_db)
    source = licences(api)
    first = drain(source, None, batch_size=40)
    final = first[-1].cursor
    tail = api_order(own_db)[-1]

    # Same timestamp as the final watermark, a key after it: must come; changed licences: come again.
    twin = (tail[0][:-1] + "Z", *tail[1:])
    assert (twin[-1], twin[0]) > (tail[-1], tail[0])
    insert_licence_rows(own_db, [twin])
    changed = change_licences(np.random.default_rng(1), own_db, 5, set(), dt.date(2026, 11, 21))

    second = drain(source, final, batch_size=40)
    assert sorted(column(second, "uscc")) == sorted([twin[0], *changed])
    assert all(s.startswith("2026-11-21") for s in column(second, "updated_at")[1:])
    assert drain(source, second[-1].cursor) == []


def test_naive_and_offset_timestamps_compare_without_crashing(start_api: StartApi, own_db: Path) -> None:
    tail = api_order(own_db)[-1]
    insert_licence_rows(own_db, [("Z" + tail[0][1:], *tail[1:-1], "2026-11-21T09:00:00")])  # no offset
    api = start_api(db=own_db)
    source = licences(api)
    pulled = drain(source, None, batch_size=1)
    assert pulled[-1].cursor["watermark"] == "2026-11-21T09:00:00"

    assert column(drain(source, pulled[-2].cursor), "updated_at") == ["2026-11-21T09:00:00"]
    assert drain(source, pulled[-1].cursor) == []


def test_a_wrong_token_is_rejected_at_once_and_never_shown(shared_api: LicenceApi) -> None:
    wrong = "wrong-token-must-not-leak-42"
    before = shared_api.requests
    with pytest.raises(SourceRejected, match="HTTP 401") as info:
        drain(licences(shared_api, token=wrong))
    assert info.value.connector == "scjg-licences"
    assert wrong not in str(info.value)
    assert shared_api.requests == before + 1  # a 401 is not retried


def test_other_client_errors_are_terminal_too(shared_api: LicenceApi) -> None:
    before = shared_api.requests
    with pytest.raises(SourceRejected, match="HTTP 400"):
        drain(licences(shared_api, size=5000))  # above the API's maximum page size
    assert shared_api.requests == before + 1


def test_transient_5xx_and_429_are_retried_until_they_pass(start_api: StartApi) -> None:
    faults = Faults(status_on_pages={2: 500, 3: 429}, fail_times=2)
    api = start_api(faults)
    pulled = drain(licences(api, retries=2), None, batch_size=30)

    assert rows(pulled, LICENCE_COLUMNS) == api_order(api.db_path)
    assert faults.failures(2) == 2 and faults.failures(3) == 2


def test_a_page_that_keeps_failing_gives_up_and_the_landed_cursor_resumes(
    start_api: StartApi, shared_api: LicenceApi
) -> None:
    faults = Faults(status_on_pages={3: 503}, fail_times=0)
    api = start_api(faults)
    landed = []
    with pytest.raises(
        SourceUnavailable, match=r"page 3: the API answered HTTP 503 \(gave up after 3 attempts\)"
    ):
        for p in licences(api, size=50, retries=2).pull(None, 7):
            landed.append(p)
    assert faults.failures(3) == 3
    assert sum(p.batch.num_rows for p in landed) == 98  # pages 1-2 are 100 records: 14 whole batches

    rest = drain(licences(shared_api), landed[-1].cursor, batch_size=7)  # the fault is gone
    assert rows(landed, LICENCE_COLUMNS) + rows(rest, LICENCE_COLUMNS) == api_order(api.db_path)


def test_a_malformed_page_is_malformed_data(start_api: StartApi) -> None:
    api = start_api(Faults(malformed_pages={2}, fail_times=0))
    with pytest.raises(SourceDataMalformed, match="page 2 is not valid JSON"):
        drain(licences(api))


def test_records_not_where_the_registration_says_are_malformed_data(shared_api: LicenceApi) -> None:
    with pytest.raises(SourceDataMalformed, match="no list of records under 'items'"):
        drain(licences(shared_api, records="items"))


def test_an_answer_slower_than_the_timeout_is_unavailable(start_api: StartApi) -> None:
    api = start_api(Faults(delay_seconds=0.6))
    with pytest.raises(SourceUnavailable, match=r"timed out after 0\.15s \(gave up after 2 attempts\)"):
        drain(licences(api, timeout_seconds=0.15, retries=1))


def test_an_unreachable_api_is_unavailable() -> None:
    options = {**SHIPPED.options, "base_url": "http://127.0.0.1:1/api/v1", "retries": 1, "backoff_seconds": 0}
    reg = Registration.model_validate({**SHIPPED.model_dump(), "options": options})
    with pytest.raises(SourceUnavailable, match="cannot reach"):
        drain(connector(reg, env={"ONCEONLY_SECRET_SCJG_LICENCES_TOKEN": TOKEN}))


def test_a_field_no_record_carries_is_left_out_of_the_batch(shared_api: LicenceApi) -> None:
    pulled = drain(licences(shared_api, fields=[*LICENCE_COLUMNS, "phone"]), None, batch_size=100)
    assert all(p.batch.schema.names == list(LICENCE_COLUMNS) for p in pulled)


def test_an_unset_token_names_the_secret(shared_api: LicenceApi) -> None:
    with pytest.raises(MissingSecret, match="ONCEONLY_SECRET_SCJG_LICENCES_TOKEN"):
        drain(licences(shared_api, token=None))
