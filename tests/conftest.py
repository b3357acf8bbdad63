"""Shared fixtures: isolated ONCEONLY_HOME, real database servers (and a fresh schema or
database on each per test), one Prefect harness.

Tests that need PostgreSQL or MariaDB use the servers running on this machine; when one does
not answer they SKIP locally with the reason printed, and FAIL under CI=true.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")

POSTGRES_URL = os.environ.get(
    "ONCEONLY_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
MARIADB_URL = os.environ.get("ONCEONLY_TEST_MARIADB_URL", "mysql+pymysql://root@127.0.0.1:3306/test")
TEST_PASSPHRASE = "test-passphrase-not-for-production-0123456789"


def _server(url: str, name: str) -> str:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except sa.exc.SQLAlchemyError as exc:
        reason = (
            f"{name} is not reachable at {sa.make_url(url).render_as_string(hide_password=True)}: {exc.orig}"
        )
        if os.environ.get("CI"):
            pytest.fail(f"{reason} (CI requires it; .ci/run starts it)")
        pytest.skip(reason)
    finally:
        engine.dispose()
    return url


@pytest.fixture(scope="session")
def postgres_url() -> str:
    return _server(POSTGRES_URL, "PostgreSQL")


@pytest.fixture(scope="session")
def mariadb_url() -> str:
    return _server(MARIADB_URL, "MariaDB")


@contextlib.contextmanager
def _postgres_schema(postgres_url: str) -> Iterator[str]:
    """The test PostgreSQL database seen through a fresh schema of its own, dropped afterwards."""
    schema = f"onceonly_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
        url = sa.make_url(postgres_url).update_query_dict({"options": f"-csearch_path={schema}"})
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        admin.dispose()


@pytest.fixture
def postgresql_database(postgres_url: str) -> Iterator[str]:
    """The test PostgreSQL database seen through a fresh schema of its own, for one test."""
    with _postgres_schema(postgres_url) as url:
        yield url


@pytest.fixture(scope="module")
def module_postgresql_database(postgres_url: str) -> Iterator[str]:
    """The same, shared by a module's scenario (e.g. the daily-sharing end-to-end test)."""
    with _postgres_schema(postgres_url) as url:
        yield url


@pytest.fixture
def mariadb_database(mariadb_url: str) -> Iterator[str]:
    """A fresh MariaDB database for one test, dropped afterwards."""
    name = f"onceonly_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(mariadb_url)
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
        url = sa.make_url(mariadb_url).set(database=name).update_query_dict({"charset": "utf8mb4"})
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS `{name}`")
        admin.dispose()


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param("postgresql", marks=pytest.mark.integration),
        pytest.param("mariadb", marks=pytest.mark.integration),
    ]
)
def catalog_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The catalog on each database it supports: SQLite (the default), PostgreSQL, MariaDB."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'catalog.db'}"
    url: str = request.getfixturevalue(f"{request.param}_database")
    return url


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def catalog(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    """A fresh catalog on SQLite (the default) and on the real PostgreSQL (a schema of its own)."""
    from catalog import Catalog

    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'catalog.db'}"
    else:
        url = request.getfixturevalue("postgresql_database")
    catalog = Catalog.connect(url)
    try:
        yield catalog
    finally:
        catalog.dispose()


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh ONCEONLY_HOME with a key passphrase; Settings() built inside tests sees it."""
    home = tmp_path / "var"
    monkeypatch.setenv("ONCEONLY_HOME", str(home))
    monkeypatch.setenv("ONCEONLY_KEY_PASSPHRASE", TEST_PASSPHRASE)
    monkeypatch.delenv("ONCEONLY_DATABASE_URL", raising=False)
    monkeypatch.setenv("ONCEONLY_RETRY_WAIT_SECONDS", "0")
    # The tests' department systems lie beside the home (its keys, lake, catalog stay refused).
    monkeypatch.setenv("ONCEONLY_SOURCE_ROOTS", str(tmp_path))
    return home


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    """One Prefect test server for the whole session (starting one costs ~10 s)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="session")
def s3_server() -> Iterator[str]:
    """A local S3-compatible server (moto's, in a thread) on 127.0.0.1; yields its endpoint URL."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture(scope="session")
def s3_environment(s3_server: str) -> dict[str, str]:
    """The AWS environment of a client of :func:`s3_server` (moto takes any key); nothing comes
    from ~/.aws or an instance role. Apply it after removing every other ``AWS_`` variable."""
    return {
        "AWS_ACCESS_KEY_ID": "onceonly-test",
        "AWS_SECRET_ACCESS_KEY": "onceonly-test-secret",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "AWS_EC2_METADATA_DISABLED": "true",
    }


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real `prefect server start` (SQLite under a temporary PREFECT_HOME), as operators run it.

    Yields its API URL. Tests talk to it from subprocesses (CLI, workers) with PREFECT_API_URL,
    never through this process's settings, so it does not disturb the session's test harness.
    """
    import subprocess
    import sys
    import time

    import httpx

    home = tmp_path_factory.mktemp("prefect-server")
    port = free_port()
    env = {
        **os.environ,
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_ENABLED": "false",
        # Runs start only when a test starts them: the deployments' cron schedules (a pull every
        # 30 min, the watch) must not start runs in the middle of another test.
        "PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED": "false",
    }
    env.pop("PREFECT_API_URL", None)
    log = (home / "server.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/api"
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            assert process.poll() is None, (home / "server.log").read_text(errors="replace")[-2000:]
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        else:
            pytest.fail("prefect server start did not answer within 180 s")
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()
