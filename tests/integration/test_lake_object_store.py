"""The lake on an object store: ``s3://<bucket>/wuqing/lake`` on a local S3-compatible server (moto).

The lake's operations as on a folder — stage, publish, discard, read back — with no rename:
a publish cut short by a crash is done again and leaves each file once; a file's facts (SHA-256
and rows: what a batch's log receipt records) are the local lake's, byte for byte; the audit
lists the store's objects as it lists a folder.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

import fsspec
import pyarrow as pa
import pytest

from catalog import Catalog
from lake.audit import audit_lake
from lake.parquet import ParquetLake
from onceonly.settings import Settings

pytestmark = pytest.mark.integration

CONNECTOR = "gongan-household"
HOUSEHOLD = pa.table(
    {
        "person_id": ["120114199001010011", "120114199202020022", "120114199303030033"],
        "township": ["120114001", "120114002", "120114001"],
    }
)
QUARANTINED = pa.table({"person_id": ["bad"], "__rules": [["person_id.gb11643_citizen_id"]]})
PUBLISHED = [
    "accepted/dataset=household/township=120114001/b1-0.parquet",
    "accepted/dataset=household/township=120114002/b1-0.parquet",
    "quarantine/dataset=household/b1.parquet",
]


@pytest.fixture
def s3_url(s3_server: str, s3_environment: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> str:
    """A lake URL in a fresh bucket, with the test server's AWS environment (no endpoint in it)."""
    for name in [n for n in os.environ if n.startswith("AWS_") or n == "ONCEONLY_LAKE_STORAGE_OPTIONS"]:
        monkeypatch.delenv(name)
    for name, value in s3_environment.items():
        monkeypatch.setenv(name, value)
    bucket = f"lake-{uuid.uuid4().hex[:12]}"
    fsspec.filesystem("s3", endpoint_url=s3_server, skip_instance_cache=True).mkdir(bucket)
    return f"s3://{bucket}/wuqing/lake"


@pytest.fixture
def lake(s3_url: str, s3_server: str) -> ParquetLake:
    return ParquetLake.at(s3_url, {"endpoint_url": s3_server})


def _objects(lake: ParquetLake) -> list[str]:
    assert lake.fs is not None
    return sorted(PurePosixPath(p).relative_to(lake.root).as_posix() for p in lake.fs.find(str(lake.root)))


def _stage(lake: ParquetLake, batch_id: str = "b1", accepted: pa.Table = HOUSEHOLD) -> None:
    lake.stage(CONNECTOR, "household", batch_id, accepted, "township", QUARANTINED)


def test_a_staged_batch_is_published_whole_and_read_back_as_written(lake: ParquetLake, s3_url: str) -> None:
    assert lake.location == s3_url and lake.staged_connectors() == []
    _stage(lake)

    assert _objects(lake) == [f"staging/connector={CONNECTOR}/b1/{p}" for p in PUBLISHED]
    assert lake.staged(CONNECTOR) == ["b1"] and lake.staged_connectors() == [CONNECTOR]
    files = lake.staged_files(CONNECTOR, "b1")
    assert [(f["path"], f["rows"]) for f in files] == list(zip(PUBLISHED, [2, 1, 1], strict=True))
    assert lake.read_accepted("household").num_rows == 0  # nothing in the lake before the commit

    lake.publish(CONNECTOR, "b1")

    assert _objects(lake) == PUBLISHED
    assert lake.staged(CONNECTOR) == [] and lake.staged_connectors() == []
    back = lake.read_accepted("household").sort_by("person_id")
    assert back.schema.field("township").type == pa.string()  # a code, not a guessed integer
    assert back.to_pylist() == HOUSEHOLD.to_pylist()
    assert [lake.file_facts(lake.root / f["path"]) for f in files] == [
        {"sha256": f["sha256"], "rows": f["rows"]} for f in files
    ]
    lake.publish(CONNECTOR, "b1")  # again: nothing staged, nothing changes
    assert _objects(lake) == PUBLISHED


def test_a_batch_never_committed_is_discarded_and_a_restage_replaces_the_first_attempt(
    lake: ParquetLake,
) -> None:
    _stage(lake, "b1")
    _stage(lake, "b1", HOUSEHOLD.slice(1, 1))  # the retry of an attempt cut off half-way

    assert _objects(lake) == [
        f"staging/connector={CONNECTOR}/b1/accepted/dataset=household/township=120114002/b1-0.parquet",
        f"staging/connector={CONNECTOR}/b1/quarantine/dataset=household/b1.parquet",
    ]
    lake.discard(CONNECTOR, "b1")
    lake.discard(CONNECTOR, "b1")  # nothing left to discard: no error

    assert _objects(lake) == [] and lake.staged(CONNECTOR) == []
    assert lake.read_accepted("household").num_rows == 0


class Killed(BaseException):
    """The process dies here (as SIGKILL would: nothing after it runs)."""


def _dies_after(calls: int, operation: Callable[..., Any]) -> Callable[..., Any]:
    done = 0

    def operation_then_death(*args: Any, **kwargs: Any) -> Any:
        nonlocal done
        if done == calls:
            raise Killed
        done += 1
        return operation(*args, **kwargs)

    return operation_then_death


@pytest.mark.parametrize(
    ("step", "calls"),
    [("copy", 0), ("copy", 1), ("copy", 2), ("rm", 0)],
    ids=["before-any-copy", "after-one-copy", "after-two-copies", "after-the-copies-before-the-delete"],
)
def test_a_publish_cut_short_is_done_again_and_leaves_each_file_once(
    lake: ParquetLake, s3_url: str, s3_server: str, monkeypatch: pytest.MonkeyPatch, step: str, calls: int
) -> None:
    _stage(lake)
    recorded = lake.staged_files(CONNECTOR, "b1")  # what the batch's receipt commits to
    monkeypatch.setattr(lake.fs, step, _dies_after(calls, getattr(lake.fs, step)))
    with pytest.raises(Killed):
        lake.publish(CONNECTOR, "b1")
    assert lake.staged(CONNECTOR) == ["b1"]  # what the next run's recovery finds

    after = ParquetLake.at(s3_url, {"endpoint_url": s3_server})  # the next run (settle_staged)
    after.publish(CONNECTOR, after.staged(CONNECTOR)[0])

    assert _objects(after) == PUBLISHED and after.staged_connectors() == []
    assert after.read_accepted("household").num_rows == HOUSEHOLD.num_rows  # no row twice
    assert [{"path": p, **after.file_facts(after.root / p)} for p in PUBLISHED] == recorded


def test_file_facts_on_the_store_are_the_local_lakes(lake: ParquetLake, tmp_path: Path) -> None:
    local = ParquetLake(tmp_path / "lake")
    for each in (lake, local):
        _stage(each)
        each.write_accepted("business_licence", "b2", HOUSEHOLD.drop_columns(["township"]), None)
        each.write_quarantine("business_licence", "breach-b3", QUARANTINED)  # as a refusal writes it

    assert lake.staged_files(CONNECTOR, "b1") == local.staged_files(CONNECTOR, "b1")
    for each in (lake, local):
        each.publish(CONNECTOR, "b1")
    paths = [*PUBLISHED, "accepted/dataset=business_licence/b2.parquet"]
    paths.append("quarantine/dataset=business_licence/breach-b3.parquet")
    assert _objects(lake) == sorted(paths)
    for path in paths:
        assert lake.is_file(lake.root / path) and local.is_file(local.root / path)
        assert lake.file_facts(lake.root / path) == local.file_facts(local.root / path), path
        assert lake.rows(lake.root / path) == local.rows(local.root / path)


def test_the_settings_open_it_with_the_endpoint_from_the_aws_environment(
    lake: ParquetLake, s3_url: str, s3_server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server)  # botocore's own variable, no storage options
    settings = Settings(home=tmp_path, lake_url=s3_url)
    assert not settings.lake_is_local and settings.lake_location == s3_url

    opened = ParquetLake.of(settings)
    _stage(opened)
    opened.publish(CONNECTOR, "b1")

    assert opened.location == s3_url and not (tmp_path / "lake").exists()
    assert _objects(lake) == PUBLISHED  # the same objects, seen through the explicit endpoint


def test_the_audit_lists_the_store_as_it_lists_a_folder(lake: ParquetLake, tmp_path: Path) -> None:
    catalog = Catalog.connect(f"sqlite:///{tmp_path / 'catalog.db'}")
    try:
        assert audit_lake(catalog, lake).ok
        _stage(lake)
        (staged,) = audit_lake(catalog, lake).findings
        assert staged.area == "staging" and staged.batch_id == "b1"

        lake.publish(CONNECTOR, "b1")
        report = audit_lake(catalog, lake)
    finally:
        catalog.dispose()
    assert report.files == 3
    assert [(f.area, f.batch_id, f.dataset) for f in report.findings] == [
        ("file", "b1", "household"),  # accepted files of a batch the catalog never landed
        ("file", "b1", "household"),  # and its quarantine file
    ]


def test_a_store_that_does_not_answer_is_a_transient_error_of_ours(s3_url: str) -> None:
    from onceonly.errors import LakeUnavailable, TransientError
    from tests.conftest import free_port

    free_tcp_port = free_port()

    quick = {"config_kwargs": {"connect_timeout": 1, "retries": {"max_attempts": 1}}}
    down = ParquetLake.at(s3_url, {"endpoint_url": f"http://127.0.0.1:{free_tcp_port}", **quick})
    with pytest.raises(LakeUnavailable, match=r"the lake at s3://") as raised:
        _stage(down)
    assert isinstance(raised.value, TransientError)  # the connector is retried from its last batch
