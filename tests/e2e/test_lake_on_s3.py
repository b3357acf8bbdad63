"""The daily flow with its lake on an object store: ``ONCEONLY_LAKE_URL=s3://…`` on a local
S3-compatible server (moto), the endpoint in ``ONCEONLY_LAKE_STORAGE_OPTIONS``, the keys in the
AWS environment.

The run lands every dataset's Parquet files in the bucket (none on the local disk), ``onceonly
audit`` finds the store consistent with the transparency log, and names a lake object edited
in the bucket (same rows, another value) and one deleted.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from cli.main import app
from departments import LicenceApi, demo_token, generate_all, local_registrations

pytestmark = pytest.mark.e2e

ROWS = 200
SEED = 11
PASSPHRASE = "e2e-passphrase-0123456789-abcdefghij"


@dataclass
class World:
    home: Path
    lake_url: str
    store: Any  # the bucket, as an fsspec file system (what an operator's own tools would see)

    def lake_files(self) -> list[str]:
        root = self.lake_url.removeprefix("s3://")
        return sorted(PurePosixPath(p).relative_to(root).as_posix() for p in self.store.find(root))


@pytest.fixture(scope="module")
def world(
    tmp_path_factory: pytest.TempPathFactory,
    prefect_harness: None,
    s3_server: str,
    s3_environment: dict[str, str],
) -> Iterator[World]:
    root = tmp_path_factory.mktemp("e2e-s3")
    home = root / "var"
    generate_all(home / "departments", rows=ROWS, seed=SEED)
    token = demo_token(SEED)
    api = LicenceApi(home / "departments" / "scjg" / "licences.db", token=token)
    api.start()
    regs = local_registrations(root / "registrations", api.base_url, backoff_seconds=0.01)
    bucket = f"district-{uuid.uuid4().hex[:12]}"
    lake_url = f"s3://{bucket}/wuqing/lake"
    mp = pytest.MonkeyPatch()
    for name in [n for n in os.environ if n.startswith(("AWS_", "ONCEONLY_"))]:
        mp.delenv(name)
    for name, value in s3_environment.items():
        mp.setenv(name, value)
    mp.setenv("ONCEONLY_HOME", str(home))
    mp.setenv("ONCEONLY_KEY_PASSPHRASE", PASSPHRASE)
    mp.setenv("ONCEONLY_REGISTRATIONS_DIR", str(regs))
    mp.setenv("ONCEONLY_RETRY_WAIT_SECONDS", "0")
    mp.setenv("ONCEONLY_CONNECTOR_ATTEMPTS", "1")
    mp.setenv("ONCEONLY_SECRET_SCJG_LICENCES_TOKEN", token)
    mp.setenv("ONCEONLY_LAKE_URL", lake_url)
    mp.setenv("ONCEONLY_LAKE_STORAGE_OPTIONS", json.dumps({"endpoint_url": s3_server}))
    store = fsspec.filesystem(
        "s3", endpoint_url=s3_server, skip_instance_cache=True, use_listings_cache=False
    )
    store.mkdir(bucket)
    try:
        yield World(home, lake_url, store)
    finally:
        api.stop()
        mp.undo()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def first(world: World) -> Any:
    from flows.daily_sharing import daily_sharing, summary_of

    state = daily_sharing(return_state=True)
    assert state.is_completed(), state.message
    return summary_of(state)


def test_the_run_lands_the_lake_in_the_bucket_and_the_audit_finds_it_consistent(
    world: World, first: Any
) -> None:
    assert all(c.status == "ok" and c.pulled > 0 for c in first.connectors)
    files = world.lake_files()
    datasets = {c.dataset for c in first.connectors}
    assert {f.split("/")[1].removeprefix("dataset=") for f in files if f.startswith("accepted/")} == datasets
    assert any(f.startswith("quarantine/") for f in files)  # the generated bad rows
    assert not any(f.startswith("staging/") for f in files)
    assert not (world.home / "lake").exists()

    audited = CliRunner().invoke(app, ["audit"])
    assert audited.exit_code == 0, audited.output
    assert "CONSISTENT" in audited.output and f"in {len(files):,} lake files" in audited.output


def test_the_audit_names_a_lake_object_edited_or_deleted_in_the_bucket(world: World, first: Any) -> None:
    files = [f for f in world.lake_files() if f.startswith("accepted/")]
    edited = next(f for f in files if "dataset=household/" in f)
    deleted = next(f for f in files if "dataset=marriage/" in f)
    root = world.lake_url.removeprefix("s3://")
    with world.store.open(f"{root}/{edited}", "rb") as handle:
        table = pq.read_table(handle)
    column = next(name for name in table.column_names if pa.types.is_string(table.schema.field(name).type))
    values = table.column(column).to_pylist()
    values[0] = f"{values[0] or ''}X"
    sink = pa.BufferOutputStream()
    pq.write_table(table.set_column(table.column_names.index(column), column, pa.array(values)), sink)
    world.store.pipe_file(f"{root}/{edited}", sink.getvalue().to_pybytes())  # same rows, one value
    world.store.rm(f"{root}/{deleted}")

    audited = CliRunner().invoke(app, ["audit"])

    assert audited.exit_code == 1, audited.output
    assert f"{edited} was changed (bytes: " in audited.output
    assert f"{deleted} is missing" in audited.output
