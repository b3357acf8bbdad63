"""The ``onceonly-connector`` Prefect block, and that secret values leak nowhere."""

from __future__ import annotations

import json
import logging
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from catalog import metadata
from cli.main import app
from connectors.block import OnceOnlyConnector, block_of
from connectors.registration import Registration
from onceonly.settings import Settings

CANARY = "Canary-Pw-" + uuid.uuid4().hex  # a password nothing may ever show
# A department table with the household contract's columns (registration checks them).
HOUSEHOLD_TABLE = (
    "id int PRIMARY KEY, person_id char(18), name text, gender text, ethnicity text, birth_date date, "
    "household_no text, relation text, address text, township_code text, registered_on date, "
    "updated_at timestamp"
)
HOUSEHOLD_ROW = (
    "(1, '120104199003071234', '王小明', '男', '汉族', '1990-03-07', '120114000001', '户主', "
    "'天津市武清区杨村街道1号', '120114001000', '2010-01-01', '2026-11-20 08:00')"
)


def _registration(url: str, table: str, name: str = "gongan-pg", **secrets: str) -> Registration:
    return Registration(
        name=name,
        department="天津市公安局武清分局",
        dataset="household",
        type="sql",
        options={"url": url, "table": table, "cursor": {"column": "updated_at", "tiebreak": "id"}},
        secrets=secrets,
    )


def test_secrets_are_prefect_secret_values_or_environment_variable_names(
    prefect_harness: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prefect.blocks.system import Secret

    token_name = f"ONCEONLY_SECRET_GONGAN_PG_TOKEN{uuid.uuid4().hex[:8].upper()}"
    Secret(value="token-from-prefect").save(token_name.lower().replace("_", "-"), overwrite=True)
    monkeypatch.setenv("ONCEONLY_SECRET_GONGAN_PG_PASSWORD", CANARY)
    block = block_of(
        _registration(
            "postgresql+psycopg://u@h/db",
            "t",
            token=token_name,
            password="ONCEONLY_SECRET_GONGAN_PG_PASSWORD",
        )
    )
    assert block.secrets["token"].get_secret_value() == "token-from-prefect"
    assert (
        block.secrets["password"].get_secret_value() == "ONCEONLY_SECRET_GONGAN_PG_PASSWORD"
    )  # the name, never the value
    assert "token-from-prefect" not in block.model_dump_json() and CANARY not in block.model_dump_json()


def test_register_saves_the_block_and_remove_deletes_it(
    home: Path, tmp_path: Path, prefect_harness: None, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prefect.settings import PREFECT_API_URL

    monkeypatch.setenv("PREFECT_API_URL", str(PREFECT_API_URL.value()))  # a server is named
    table = f"oo_block_{uuid.uuid4().hex[:8]}"
    engine = sa.create_engine(postgres_url)
    with engine.begin() as conn:
        conn.exec_driver_sql(f"CREATE TABLE {table} ({HOUSEHOLD_TABLE})")
        conn.exec_driver_sql(f"INSERT INTO {table} VALUES {HOUSEHOLD_ROW}")
    name = f"gongan-{uuid.uuid4().hex[:8]}"
    path = tmp_path / "reg.yaml"
    path.write_text(
        f"name: {name}\ndepartment: 公安\ndataset: household\ntype: sql\n"
        f"options: {{url: '{postgres_url}', table: {table}, cursor: {{column: updated_at, tiebreak: id}}}}\n",
        encoding="utf-8",
    )
    try:
        result = CliRunner().invoke(app, ["connectors", "register", str(path)])
        assert result.exit_code == 0, result.output
        assert f"saved as Prefect block onceonly-connector/{name}" in result.output
        block = OnceOnlyConnector.load(name)
        assert block.connector == name and block.options["table"] == table and block.dataset == "household"

        result = CliRunner().invoke(app, ["connectors", "remove", name])
        assert result.exit_code == 0 and "deleted" in result.output
        with pytest.raises(ValueError):
            OnceOnlyConnector.load(name)
    finally:
        with engine.begin() as conn:
            conn.exec_driver_sql(f"DROP TABLE IF EXISTS {table}")
        engine.dispose()


def test_no_secret_value_reaches_logs_errors_artifacts_the_block_or_the_catalog(
    home: Path,
    tmp_path: Path,
    prefect_harness: None,
    postgres_url: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """PostgreSQL here trusts local connections, so the password is sent and ignored: the
    connector resolves and uses it on every path (register, test, flow, failure)."""
    from prefect.client.orchestration import get_client

    from flows.daily_sharing import daily_sharing, summary_of

    caplog.set_level(logging.DEBUG)
    hexed = uuid.uuid4().hex[:8]
    secret_name = f"ONCEONLY_SECRET_GONGAN_{hexed.upper()}_PASSWORD"
    monkeypatch.setenv(secret_name, CANARY)
    table = f"oo_leak_{uuid.uuid4().hex[:8]}"
    engine = sa.create_engine(postgres_url)
    with engine.begin() as conn:
        conn.exec_driver_sql(f"CREATE TABLE {table} ({HOUSEHOLD_TABLE})")
        conn.exec_driver_sql(f"INSERT INTO {table} VALUES {HOUSEHOLD_ROW}")
    name = f"gongan-{hexed}"
    path = tmp_path / "reg.yaml"
    path.write_text(
        f"name: {name}\ndepartment: 公安\ndataset: household\ntype: sql\n"
        f"options: {{url: '{postgres_url}', table: {table}, cursor: {{column: updated_at, tiebreak: id}}}}\n"
        f"secrets: {{password: {secret_name}}}\n",
        encoding="utf-8",
    )
    monkeypatch.setenv("ONCEONLY_REGISTRATIONS_DIR", str(tmp_path / "none"))  # only this connector
    runner = CliRunner()
    outputs = []
    try:
        outputs.append(runner.invoke(app, ["connectors", "register", str(path)]).output)
        outputs.append(runner.invoke(app, ["connectors", "test", name]).output)
        first = daily_sharing(connectors=[name], return_state=True)
        with engine.begin() as conn:  # the source loses its table: the next run fails
            conn.exec_driver_sql(f"DROP TABLE {table}")
        second = daily_sharing(connectors=[name], return_state=True)
        failed = summary_of(second)
        assert failed.failed and name in (failed.failed[0].error or "")
        outputs += [str(summary_of(first)), str(failed), failed.failed[0].error or ""]
        outputs.append(runner.invoke(app, ["connectors", "list"]).output)

        with get_client(sync_client=True) as client:
            artifacts = client.read_artifacts()
            block = client.read_block_document_by_name(name, "onceonly-connector", include_secrets=True)
        outputs += [json.dumps(a.model_dump(mode="json"), default=str) for a in artifacts]
        outputs.append(json.dumps(block.model_dump(mode="json"), default=str))
        outputs.append(caplog.text)
        catalog = sa.create_engine(Settings().catalog_url)
        with catalog.connect() as conn:
            for tbl in metadata.sorted_tables:
                outputs.append(json.dumps([list(r) for r in conn.execute(sa.select(tbl))], default=str))
        catalog.dispose()
    finally:
        with engine.begin() as conn:
            conn.exec_driver_sql(f"DROP TABLE IF EXISTS {table}")
        engine.dispose()
    everything = "\n".join(outputs)
    assert secret_name in everything  # the secret's NAME is shown where it helps
    assert CANARY not in everything


def test_the_flow_saves_blocks_for_connectors_registered_from_the_shipped_files(
    home: Path, tmp_path: Path, prefect_harness: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flows.daily_sharing import daily_sharing

    db = tmp_path / "huji.db"
    engine = sa.create_engine(f"sqlite:///{db}")
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE huji (id INTEGER PRIMARY KEY, updated_at DATETIME)")
    engine.dispose()
    folder = tmp_path / "registrations"
    folder.mkdir()
    name = f"gongan-{uuid.uuid4().hex[:8]}"
    (folder / f"{name}.yaml").write_text(
        f"name: {name}\ndepartment: 公安\ndataset: household\ntype: sql\n"
        f"options: {{url: 'sqlite:///{db}', table: huji, cursor: {{column: updated_at, tiebreak: id}}}}\n",
        encoding="utf-8",
    )
    monkeypatch.setenv("ONCEONLY_REGISTRATIONS_DIR", str(folder))
    daily_sharing(connectors=[name], return_state=True)
    assert OnceOnlyConnector.load(name).connector == name


def test_sync_blocks_mirrors_the_registrations(prefect_harness: None) -> None:
    from connectors.block import save_block, sync_blocks

    kept = _registration("sqlite:///kept.db", "t", name=f"gongan-{uuid.uuid4().hex[:8]}")
    gone = _registration("sqlite:///gone.db", "t", name=f"gongan-{uuid.uuid4().hex[:8]}")
    save_block(gone)  # registered once, removed from the catalog since
    synced = sync_blocks({kept.name: kept})
    assert kept.name in synced.saved and gone.name in synced.deleted and not synced.problems
    assert OnceOnlyConnector.load(kept.name).options["url"] == "sqlite:///kept.db"
    with pytest.raises(ValueError):
        OnceOnlyConnector.load(gone.name)
    assert sync_blocks({kept.name: kept}).deleted == ()


def test_a_block_that_already_says_the_same_is_not_written_again(
    prefect_harness: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    import connectors.block as block_module
    from connectors.block import save_block

    name = f"gongan-{uuid.uuid4().hex[:8]}"
    secret = f"ONCEONLY_SECRET_{name.upper().replace('-', '_')}_"
    saves: list[str] = []
    real_save = OnceOnlyConnector.save

    def counted(self: OnceOnlyConnector, *args: object, **kwargs: object) -> object:
        saves.append(self.connector)
        return real_save(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(OnceOnlyConnector, "save", counted)
    first = _registration("sqlite:///a.db", "t", name=name, password=secret + "PASSWORD")
    save_block(first, unless_same=True)  # none stored yet
    assert saves == [name]
    assert block_module._stored_is(block_of(first))
    save_block(first, unless_same=True)
    assert saves == [name]  # the same: not written again
    moved = _registration("sqlite:///b.db", "t", name=name, password=secret + "PASSWORD")
    save_block(moved, unless_same=True)
    assert saves == [name, name]
    assert OnceOnlyConnector.load(name).options["url"] == "sqlite:///b.db"
    renamed = _registration("sqlite:///b.db", "t", name=name, password=secret + "PASSWORD2")
    save_block(renamed, unless_same=True)  # only a secret's name changed: compared by value
    assert saves == [name, name, name]
    assert OnceOnlyConnector.load(name).secrets["password"].get_secret_value() == secret + "PASSWORD2"
