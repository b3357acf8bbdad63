"""市场监管 营业执照: the register's contents and the real HTTP API serving it."""

from __future__ import annotations

import collections
import contextlib
import datetime as dt
import json
import re
import sqlite3
import threading
import time
from pathlib import Path

import httpx
import pytest

from contracts.identifiers import is_valid_citizen_id, is_valid_uscc, organization_code_check_char
from departments import LICENCE_COLUMNS, Faults, LicenceApi, Manifest, demo_token, generate_all
from departments.household import household_engine, read_household_rows
from departments.licences import parse_updated_since, read_licence_rows
from departments.population import UNKNOWN_TOWNSHIP_CODES, townships

ROWS = 1500
SEED = 31
CODES = {t.code for t in townships()}
CATEGORY = {"个体工商户": "2", "农民专业合作社": "3"}


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("departments")
    generate_all(root, rows=ROWS, seed=SEED)
    return root


@pytest.fixture(scope="module")
def db(root: Path) -> Path:
    return root / "scjg" / "licences.db"


@pytest.fixture(scope="module")
def records(db: Path) -> list[dict[str, str | None]]:
    return [dict(zip(LICENCE_COLUMNS, r, strict=True)) for r in read_licence_rows(db)]


@pytest.fixture(scope="module")
def api(db: Path) -> object:
    with LicenceApi(db, demo_token(SEED)) as api:
        yield api


@pytest.fixture
def client() -> object:
    with httpx.Client(headers={"Authorization": f"Bearer {demo_token(SEED)}"}, timeout=10) as client:
        yield client


def test_valid_licences_follow_gb32100(root: Path, records: list[dict[str, str | None]]) -> None:
    manifest = Manifest.load(root)
    bad = manifest.datasets["licences"].bad_keys()
    assert len(records) == ROWS == manifest.datasets["licences"].rows
    for r in records:
        uscc = str(r["uscc"])
        if uscc in bad:
            continue
        assert is_valid_uscc(uscc), uscc
        # GB 32100 §4: 登记管理部门 9 (工商), 机构类别, 登记管理机关行政区划码, 主体标识码 (GB 11714).
        assert uscc[0] == "9" and uscc[2:8] == "120114"
        assert uscc[1] == CATEGORY.get(str(r["entity_type"]), "1")
        assert uscc[16] == organization_code_check_char(uscc[8:16])
        assert r["name"] and r["township_code"] in CODES
        assert re.fullmatch(r"\d+\.\d{2}", str(r["registered_capital"]))
        assert str(r["established_on"]) <= str(r["valid_from"])
        assert r["valid_to"] is None or str(r["valid_from"]) < r["valid_to"]
        assert r["status"] in {"存续", "在业"}
        assert r["registration_authority"] == "天津市武清区市场监督管理局"
        assert str(r["business_scope"]).startswith("一般项目：")
        assert dt.datetime.fromisoformat(str(r["updated_at"])).utcoffset() == dt.timedelta(hours=8)
    types = collections.Counter(r["entity_type"] for r in records)
    assert {"有限责任公司(自然人投资或控股)", "个体工商户", "股份有限公司"} <= set(types)


def test_most_representatives_are_registered_residents(
    root: Path, records: list[dict[str, str | None]]
) -> None:
    engine = household_engine(f"sqlite:///{root / 'gongan' / 'household.db'}")
    people = {r[1]: r[2] for r in read_household_rows(engine)}
    engine.dispose()
    with_id = [r for r in records if r["legal_representative_id"]]
    assert 0.5 < len(with_id) / len(records) < 0.7
    for r in with_id:
        assert is_valid_citizen_id(str(r["legal_representative_id"]))
        assert people[r["legal_representative_id"]] == r["legal_representative"]
    assert all(r["legal_representative"] for r in records)


def test_bad_licences_are_recorded_and_present(root: Path, records: list[dict[str, str | None]]) -> None:
    bad_rows = Manifest.load(root).datasets["licences"].bad_rows
    assert collections.Counter(b.kind for b in bad_rows) == {
        "bad_check_char": 4, "missing_required": 4, "duplicate_key": 4, "unknown_township": 4,
    }  # fmt: skip
    index = {i: r for i, r in enumerate(records)}
    positions = collections.defaultdict(list)
    for i, r in index.items():
        positions[r["uscc"]].append(i)
    for b in bad_rows:
        found = [index[i] for i in positions[b.key]]
        assert found, b
        if b.kind == "bad_check_char":
            assert not is_valid_uscc(b.key)
        elif b.kind == "missing_required":
            assert found[0][b.column] is None
        elif b.kind == "unknown_township":
            assert found[0]["township_code"] in UNKNOWN_TOWNSHIP_CODES
        else:
            a, c = positions[b.key]
            assert c == a + 1 and index[a]["updated_at"] == index[c]["updated_at"] and index[a] != index[c]


def test_updated_at_ties_exist(records: list[dict[str, str | None]]) -> None:
    stamps = [str(r["updated_at"]) for r in records]
    assert stamps == sorted(stamps)
    assert len(set(stamps)) < len(stamps) * 0.9


# ---------------------------------------------------------------------------------------------
# The API


def crawl(client: httpx.Client, base: str, size: int, **params: str) -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    page = 1
    while True:
        reply = client.get(f"{base}/business-licences", params={"page": page, "size": size, **params})
        assert reply.status_code == 200, reply.text
        body = reply.json()
        assert body["page"] == page and body["size"] == size
        if not body["data"]:
            return out
        assert len(body["data"]) <= size
        out.extend(body["data"])
        page += 1


def test_healthz_needs_no_token(api: LicenceApi) -> None:
    reply = httpx.get(api.base_url.removesuffix("/api/v1") + "/healthz")
    assert reply.status_code == 200 and reply.json() == {"status": "ok"}
    assert api.base_url.startswith("http://127.0.0.1:") and api.base_url.endswith("/api/v1")


@pytest.mark.parametrize(
    "header", [None, "Bearer wrong", f"Basic {demo_token(SEED)}", f"bearer  {demo_token(SEED)}x"]
)
def test_missing_or_wrong_token_is_401(api: LicenceApi, header: str | None) -> None:
    headers = {"Authorization": header} if header else {}
    reply = httpx.get(f"{api.base_url}/business-licences", headers=headers)
    assert reply.status_code == 401
    assert reply.json() == {"error": "invalid or missing token"}


def test_pagination_covers_every_row_exactly_once(
    api: LicenceApi, client: httpx.Client, records: list[dict[str, str | None]]
) -> None:
    got = crawl(client, api.base_url, 97)
    assert len(got) == ROWS
    assert collections.Counter(json.dumps(r, sort_keys=True) for r in got) == collections.Counter(
        json.dumps(r, sort_keys=True) for r in records
    )
    keys = [(r["updated_at"], r["uscc"]) for r in got]
    assert keys == sorted(keys)
    first = client.get(f"{api.base_url}/business-licences", params={"size": 10}).json()
    assert first["total"] == ROWS and first["page"] == 1 and len(first["data"]) == 10
    assert client.get(f"{api.base_url}/business-licences").json()["size"] == 100


def test_pages_read_out_of_order_match(api: LicenceApi, client: httpx.Client) -> None:
    url = f"{api.base_url}/business-licences"
    direct = client.get(url, params={"page": 7, "size": 50}).json()["data"]
    in_order = crawl(client, api.base_url, 50)
    assert direct == in_order[300:350]
    past = client.get(url, params={"page": 1000, "size": 50}).json()
    assert past["data"] == [] and past["total"] == ROWS


def test_updated_since_is_inclusive(
    api: LicenceApi, client: httpx.Client, records: list[dict[str, str | None]]
) -> None:
    stamps = sorted(str(r["updated_at"]) for r in records)
    since = stamps[len(stamps) // 2]
    expected = [s for s in stamps if s >= since]
    got = crawl(client, api.base_url, 100, updated_since=since)
    assert sorted(str(r["updated_at"]) for r in got) == expected
    assert any(r["updated_at"] == since for r in got)
    # The same moment in UTC, and naive Beijing time, select the same rows.
    utc = dt.datetime.fromisoformat(since).astimezone(dt.UTC).isoformat().replace("+00:00", "Z")
    assert len(crawl(client, api.base_url, 500, updated_since=utc)) == len(expected)
    assert len(crawl(client, api.base_url, 500, updated_since=since[:19])) == len(expected)
    total = client.get(f"{api.base_url}/business-licences", params={"updated_since": since}).json()["total"]
    assert total == len(expected)


def test_parse_updated_since() -> None:
    assert parse_updated_since("2026-11-20T08:00:00+08:00") == "2026-11-20T08:00:00+08:00"
    assert parse_updated_since("2026-11-20T00:00:00Z") == "2026-11-20T08:00:00+08:00"
    assert parse_updated_since("2026-11-20 08:00:00 08:00") == "2026-11-20T08:00:00+08:00"  # '+' as space
    assert parse_updated_since("2026-11-20T08:00:00.2") == "2026-11-20T08:00:01+08:00"


@pytest.mark.parametrize(
    "params",
    [{"page": "0"}, {"page": "x"}, {"size": "0"}, {"size": "1001"}, {"updated_since": "yesterday"}],
)
def test_bad_parameters_are_400(api: LicenceApi, client: httpx.Client, params: dict[str, str]) -> None:
    reply = client.get(f"{api.base_url}/business-licences", params=params)
    assert reply.status_code == 400
    assert "error" in reply.json()


def test_unknown_path_is_404(api: LicenceApi, client: httpx.Client) -> None:
    assert client.get(f"{api.base_url}/nothing").status_code == 404


def test_status_fault_fails_then_recovers(db: Path, client: httpx.Client) -> None:
    faults = Faults(status_on_pages={2: 503, 3: 429}, fail_times=2)
    with LicenceApi(db, demo_token(SEED), faults=faults) as api:
        url = f"{api.base_url}/business-licences"
        assert client.get(url, params={"page": 1}).status_code == 200
        for _ in range(2):
            reply = client.get(url, params={"page": 2})
            assert reply.status_code == 503 and "error" in reply.json()
        assert client.get(url, params={"page": 2}).status_code == 200
        assert client.get(url, params={"page": 3}).headers["Retry-After"] == "0"
        assert faults.failures(2) == 2 and faults.failures(3) == 1 and faults.failures(1) == 0


def test_status_fault_forever(db: Path, client: httpx.Client) -> None:
    with LicenceApi(db, demo_token(SEED), faults=Faults(status_on_pages={1: 500})) as api:
        codes = {client.get(f"{api.base_url}/business-licences").status_code for _ in range(4)}
        assert codes == {500}


def test_malformed_page(db: Path, client: httpx.Client) -> None:
    faults = Faults(malformed_pages={1}, fail_times=1)
    with LicenceApi(db, demo_token(SEED), faults=faults) as api:
        reply = client.get(f"{api.base_url}/business-licences")
        assert reply.status_code == 200
        with pytest.raises(json.JSONDecodeError):
            json.loads(reply.text)
        assert client.get(f"{api.base_url}/business-licences").json()["total"] == ROWS


def test_delay_makes_clients_time_out(db: Path, capfd: pytest.CaptureFixture[str]) -> None:
    with LicenceApi(db, demo_token(SEED), faults=Faults(delay_seconds=0.5)) as api:
        headers = {"Authorization": f"Bearer {demo_token(SEED)}"}
        with pytest.raises(httpx.ReadTimeout):
            httpx.get(f"{api.base_url}/business-licences", headers=headers, timeout=0.1)
        assert httpx.get(f"{api.base_url}/business-licences", headers=headers, timeout=5).status_code == 200
    assert capfd.readouterr().err == ""  # the hung-up client is no traceback


def test_concurrent_clients_and_quick_stop(db: Path, capfd: pytest.CaptureFixture[str]) -> None:
    api = LicenceApi(db, demo_token(SEED)).start()
    headers = {"Authorization": f"Bearer {demo_token(SEED)}"}
    errors: list[BaseException] = []

    def pull() -> None:
        try:
            with httpx.Client(headers=headers) as c:
                assert len(crawl(c, api.base_url, 250)) == ROWS
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=pull) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    keep_alive = httpx.Client(headers=headers)
    keep_alive.get(f"{api.base_url}/business-licences")  # leaves an idle connection open
    started = time.monotonic()
    api.stop()
    assert time.monotonic() - started < 2
    keep_alive.close()
    assert capfd.readouterr().err == ""  # no request log
    with pytest.raises(RuntimeError):
        _ = api.base_url


def test_sees_rows_written_while_running(tmp_path: Path) -> None:
    generate_all(tmp_path, rows=150, seed=2)
    db = tmp_path / "scjg" / "licences.db"
    headers = {"Authorization": f"Bearer {demo_token(2)}"}
    with LicenceApi(db, demo_token(2)) as api:
        url = f"{api.base_url}/business-licences"
        assert httpx.get(url, headers=headers).json()["total"] == 150
        with sqlite3.connect(db) as conn:
            conn.execute(
                "INSERT INTO business_licence (uscc, updated_at) VALUES ('X', '2027-01-01T00:00:00+08:00')"
            )
        assert httpx.get(url, headers=headers).json()["total"] == 151


def test_missing_database_fails_at_start(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        LicenceApi(tmp_path / "none.db", "t").start()


def test_totals_match_a_count_and_a_forward_sweep_reads_the_register_about_once(
    db: Path, records: list[dict[str, str | None]]
) -> None:
    """A client re-anchoring every page at the last ``updated_at`` asks a new ``since`` each
    time: each total is exact, and the sweep's counting reads about the register once (counting
    the rest of it each time read it once per page: a pull quadratic in the rows)."""
    import random as stdlib_random

    stamps = sorted(str(r["updated_at"]) for r in records)
    api = LicenceApi(db, demo_token(SEED))
    version = (1, 1)
    steps = 0

    def counted(conn: sqlite3.Connection) -> None:
        def tick() -> int:
            nonlocal steps
            steps += 1
            return 0

        conn.set_progress_handler(tick, 100)

    with contextlib.closing(sqlite3.connect(db)) as conn:
        counted(conn)
        direct = {
            s: conn.execute("SELECT count(*) FROM business_licence WHERE updated_at >= ?", [s]).fetchone()[0]
            for s in stamps[::7]
        }
        steps = 0
        for since in stamps[::7]:  # forward, a page of 7 rows at a time
            assert api._total(conn, version, since) == direct[since]
        forward = steps
        steps = 0
        for since in stamps[::7]:
            conn.execute("SELECT count(*) FROM business_licence WHERE updated_at >= ?", [since]).fetchone()
        assert forward * 10 < steps  # the old way: the rest of the register for every page

        shuffled = list(direct)
        stdlib_random.Random(5).shuffle(shuffled)
        for since in [None, *shuffled, stamps[0], "0000", "9999"]:  # backward, repeated, outside
            want = conn.execute(
                "SELECT count(*) FROM business_licence WHERE updated_at >= ?", [since or ""]
            ).fetchone()[0]
            assert api._total(conn, version, since) == want
        # The register changed (another version): nothing counted before is trusted; a row
        # without updated_at is in the whole register's total only.
        conn.execute("INSERT INTO business_licence (uscc, updated_at) VALUES ('Y', '9999-01-01')")
        conn.execute("INSERT INTO business_licence (uscc, updated_at) VALUES ('Z', NULL)")
        assert api._total(conn, (2, 2), None) == len(stamps) + 2
        for since in [stamps[0], stamps[len(stamps) // 2], "9999-01-01", stamps[-1]]:
            want = conn.execute(
                "SELECT count(*) FROM business_licence WHERE updated_at >= ?", [since]
            ).fetchone()[0]
            assert api._total(conn, (2, 2), since) == want
        assert api._total(conn, (2, 2), stamps[0]) == len(stamps) + 1
        conn.rollback()
