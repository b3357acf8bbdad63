"""Where a registration may point: under the operator's roots, never at OnceOnly's own places.

Each escape a careless or malicious department engineer would try — the keys folder, the home,
a folder holding the home, ``..``, a symbolic link, the lake as an archive, the catalog as a
SQLite source, the catalog's PostgreSQL database, a URL outside the roots — is refused when
the connector is made, naming the option and what it reaches; `connectors register` prints no
byte of what lies there.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from connector_sources import connector, registration
from typer.testing import CliRunner

from cli.main import app
from connectors import EnvironmentSecrets, SourcePaths, create_connector
from connectors.registration import parse_registration
from onceonly.errors import ConfigurationError
from onceonly.settings import Settings


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    home = tmp_path / "var"
    for folder in ("departments/minzheng/drop", "keys", "lake", "secrets", "snapshots", "extracts"):
        (home / folder).mkdir(parents=True)
    (home / "keys" / "keyring.json").write_text('{"private": "PRIVATE-KEY-LINE"}\n', encoding="utf-8")
    (home / "catalog.db").write_bytes(b"")
    return Settings(home=home)


def files_at(settings: Settings, **options: str) -> None:
    reg = registration("files", name="minzheng-test", **options)
    create_connector(reg, settings.home, EnvironmentSecrets({}), paths=SourcePaths.of(settings))


def test_a_drop_folder_under_the_default_root_is_fine(settings: Settings) -> None:
    files_at(settings, path=str(settings.home / "departments/minzheng/drop"))
    files_at(settings, path="{home}/departments/minzheng/drop", archive="{home}/departments/minzheng/archive")


@pytest.mark.parametrize(
    ("where", "why"),
    [
        ("keys", "is the district's signing keys"),
        ("keys/sub", "is inside the district's signing keys"),
        (".", "is OnceOnly's home"),
        ("..", "contains OnceOnly's home"),
        ("lake/household", "is inside the lake"),
        ("secrets", "is OnceOnly's secrets"),
        ("extracts", "is the township extracts"),
        ("snapshots/gongan-household", "is inside the snapshots of other connectors"),
        ("departments/../keys", "is the district's signing keys"),
        ("departments/minzheng/drop/../../../keys", "is the district's signing keys"),
        ("/etc", "is outside the allowed roots"),
    ],
)
def test_a_drop_folder_reaching_onceonlys_own_places_is_refused(
    settings: Settings, where: str, why: str
) -> None:
    path = where if where.startswith("/") else str(settings.home / where)
    with pytest.raises(ConfigurationError) as refused:
        files_at(settings, path=path)
    message = str(refused.value)
    assert message.startswith(f"connector 'minzheng-test': options.path {path} {why};")
    assert "ONCEONLY_SOURCE_ROOTS" in message


def test_the_same_holds_for_the_archive_and_snapshot_folders(settings: Settings) -> None:
    drop = str(settings.home / "departments/minzheng/drop")
    with pytest.raises(ConfigurationError, match=r"options.archive .* is inside the lake"):
        files_at(settings, path=drop, archive=str(settings.home / "lake/archive"))
    with pytest.raises(ConfigurationError, match=r"options.snapshot_dir .* is the district's signing keys"):
        files_at(settings, path=drop, snapshot_dir=str(settings.home / "keys"))
    # a connector's own snapshots may live where the default puts them
    files_at(settings, path=drop, snapshot_dir=str(settings.home / "snapshots"))


def test_a_symbolic_link_does_not_escape(settings: Settings) -> None:
    link = settings.home / "departments" / "innocent"
    link.symlink_to(settings.keys_dir)
    with pytest.raises(ConfigurationError, match="is the district's signing keys"):
        files_at(settings, path=str(link))
    with pytest.raises(ConfigurationError, match="is the district's signing keys"):
        files_at(settings, path=f"file://{link}")


def test_the_catalog_is_no_sql_source(settings: Settings, tmp_path: Path) -> None:
    catalog = settings.home / "catalog.db"
    for url in (f"sqlite:///{catalog}", f"sqlite:///{settings.home}/departments/../catalog.db"):
        reg = registration("sql", name="gongan-test", url=url, table="certificates", cursor=CURSOR)
        with pytest.raises(ConfigurationError, match=r"options.url .* is the catalog"):
            create_connector(reg, settings.home, EnvironmentSecrets({}), paths=SourcePaths.of(settings))
    on_postgres = settings.model_copy(
        update={"database_url": "postgresql+psycopg://onceonly@db:5432/onceonly"}
    )
    paths = SourcePaths.of(on_postgres)
    same = registration(
        "sql",
        name="gongan-test",
        url="postgresql+psycopg://reader@DB:5432/onceonly",
        table="t",
        cursor=CURSOR,
    )
    with pytest.raises(ConfigurationError, match=r"options.url \(the URL\) is the catalog's database"):
        create_connector(same, settings.home, EnvironmentSecrets({}), paths=paths)
    other = registration(
        "sql", name="gongan-test", url="postgresql+psycopg://reader@db:5432/huji", table="t", cursor=CURSOR
    )
    create_connector(other, settings.home, EnvironmentSecrets({}), paths=paths)


CURSOR = {"column": "updated_at", "tiebreak": "id"}


def test_urls_must_lie_under_a_url_root(settings: Settings) -> None:
    paths = SourcePaths.build([str(settings.home / "departments"), "memory://drops/"])
    reg = registration("files", name="minzheng-test", path="memory://drops/minzheng")
    create_connector(reg, settings.home, EnvironmentSecrets({}), paths=paths)
    for url, why in (
        ("memory://dropsx/minzheng", "is outside the allowed roots"),
        ("memory://drops/../keys", "has a '..' segment"),
        ("memory://drops/%2e%2e/keys", "has a '..' segment"),
        ("s3://bucket/drops", "is outside the allowed roots"),
    ):
        with pytest.raises(ConfigurationError, match=rf"options.path {url} {why}"):
            create_connector(
                registration("files", name="minzheng-test", path=url),
                settings.home,
                EnvironmentSecrets({}),
                paths=paths,
            )


def test_a_lake_on_an_object_store_is_refused_like_the_local_one(settings: Settings) -> None:
    on_s3 = settings.model_copy(
        update={"lake_url": "s3://district/wuqing/lake", "source_roots": "s3://district/"}
    )
    paths = SourcePaths.of(on_s3)
    create_connector(
        registration("files", name="minzheng-test", path="s3://district/drops/minzheng"),
        settings.home,
        EnvironmentSecrets({}),
        paths=paths,
    )
    for url, why in (
        ("s3://district/wuqing/lake", "is the lake"),
        ("s3://district/wuqing/lake/accepted/dataset=household", "is inside the lake"),
        ("s3://district/wuqing", "contains the lake"),
    ):
        with pytest.raises(ConfigurationError, match=rf"options.path {re.escape(url)} {why}"):
            create_connector(
                registration("files", name="minzheng-test", path=url),
                settings.home,
                EnvironmentSecrets({}),
                paths=paths,
            )


def test_the_operator_names_the_roots(settings: Settings, tmp_path: Path) -> None:
    elsewhere = tmp_path / "srv" / "drops"
    elsewhere.mkdir(parents=True)
    allowed = settings.model_copy(update={"source_roots": f"{elsewhere}:s3://bucket/drops"})
    paths = SourcePaths.of(allowed)
    assert paths.roots == (str(elsewhere), "s3://bucket/drops/")
    create_connector(
        registration("files", name="minzheng-test", path=str(elsewhere / "minzheng")),
        settings.home,
        EnvironmentSecrets({}),
        paths=paths,
    )
    with pytest.raises(ConfigurationError, match="is outside the allowed roots"):
        create_connector(
            registration("files", name="minzheng-test", path=str(settings.home / "departments")),
            settings.home,
            EnvironmentSecrets({}),
            paths=paths,
        )


def test_connector_tests_elsewhere_still_read_anywhere(tmp_path: Path) -> None:
    (tmp_path / "drop").mkdir()
    assert connector(registration("files", path=str(tmp_path / "drop"))).name == "test-source"


def test_register_pointed_at_the_keys_prints_nothing_of_them(home: Path, tmp_path: Path) -> None:
    keys = home / "keys"
    keys.mkdir(parents=True)
    (keys / "key.csv").write_text(
        "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIFHDBOBgkqhkiG9w0BBQ0w\n", encoding="utf-8"
    )
    path = tmp_path / "minzheng-test.yaml"
    path.write_text(
        "name: minzheng-test\ndepartment: 民政局\ndataset: marriage\ncontract: {major: 1}\ntype: files\n"
        f"options:\n  path: {keys}\n  pattern: '*.csv'\n  settle_seconds: 0\n",
        encoding="utf-8",
    )
    result = CliRunner().invoke(app, ["connectors", "register", str(path), "--no-block"])
    assert result.exit_code == 1
    shown = result.output + str(result.exception or "")
    assert "options.path" in shown and "is the district's signing keys" in shown
    assert "BEGIN" not in shown and "MIIF" not in shown


@pytest.mark.parametrize(
    ("path", "why"),
    [
        ("departments/minzheng/drop", "is not an absolute path"),
        ("file:/etc", "is a URL without '//'"),
        ("file:departments", "is a URL without '//'"),
        ("simplecache::file:///etc", "is a chained URL"),
        ("zip://x.csv::file:///etc/a.zip", "is a chained URL"),
    ],
)
def test_forms_read_otherwise_than_checked_are_refused(settings: Settings, path: str, why: str) -> None:
    # Each is read by fsspec (or SQLite) as another place than a plain path check would see.
    with pytest.raises(ConfigurationError, match=f"options.path {re.escape(path)} {why}"):
        files_at(settings, path=path)


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("mysql+pymysql://reader@dept.example/huji?local_infile=1", "local_infile are not allowed"),
        ("mysql+pymysql://reader@dept.example/huji?read_default_file=/etc/passwd", "read_default_file"),
        ("postgresql+psycopg://reader@dept.example/huji?passfile=/root/.pgpass", "passfile"),
        ("postgresql+psycopg://reader@dept.example/huji?sslkey=/k.pem&sslmode=require", "sslkey are not"),
        ("sqlite:///file:/tmp/x.db?uri=true", "uri are not allowed"),
        ("sqlite:///file:x.db", "a SQLite URI filename"),
    ],
)
def test_driver_options_in_the_url_are_refused_when_read(url: str, why: str) -> None:
    text = f"""name: gongan-test
department: 公安
dataset: household
type: sql
options: {{url: "{url}", table: t, cursor: {{column: updated_at, tiebreak: id}}}}
"""
    with pytest.raises(ConfigurationError, match=why):
        parse_registration(text, "gongan.yaml")


def test_allowed_url_parameters_pass() -> None:
    for url in (
        "mysql+pymysql://reader@dept.example/huji?charset=utf8mb4",
        "postgresql+psycopg://reader@dept.example/huji?sslmode=require&application_name=onceonly",
        "oracle+oracledb://reader@dept.example:1521/?service_name=SVC",
    ):
        text = (
            "name: gongan-test\ndepartment: 公安\ndataset: household\ntype: sql\n"
            f'options: {{url: "{url}", table: t, cursor: {{column: updated_at, tiebreak: id}}}}\n'
        )
        assert parse_registration(text, "gongan.yaml").options["url"] == url


def test_a_relative_sqlite_file_is_refused(settings: Settings) -> None:
    reg = registration("sql", name="gongan-test", url="sqlite:///departments/x.db", table="t", cursor=CURSOR)
    with pytest.raises(ConfigurationError, match="is not an absolute path"):
        create_connector(reg, settings.home, EnvironmentSecrets({}), paths=SourcePaths.of(settings))


@pytest.mark.parametrize(
    "url",
    [
        "postgresql+psycopg://reader@localhost/onceonly",
        "postgresql+psycopg://reader@localhost:5432/onceonly",
        "postgresql+psycopg://reader@127.0.0.1/onceonly",
        "postgresql+psycopg://reader@[::1]:5432/onceonly",
        "postgresql+psycopg2://reader@LOCALHOST/onceonly",
    ],
)
def test_the_catalogs_database_under_another_spelling_is_refused(settings: Settings, url: str) -> None:
    catalog = settings.model_copy(update={"database_url": "postgresql+psycopg://onceonly@localhost/onceonly"})
    reg = registration("sql", name="gongan-test", url=url, table="t", cursor=CURSOR)
    with pytest.raises(ConfigurationError, match="is the catalog's database"):
        create_connector(reg, settings.home, EnvironmentSecrets({}), paths=SourcePaths.of(catalog))


@pytest.mark.parametrize(
    "pattern", ["../../keys/*", "/etc/*", "sub/../../*", "*::file:///etc/*", "file:///x/*"]
)
def test_a_pattern_that_leaves_the_folder_is_refused(settings: Settings, pattern: str) -> None:
    with pytest.raises(ConfigurationError, match="a pattern matches names inside the drop folder"):
        files_at(settings, path=str(settings.home / "departments/minzheng/drop"), pattern=pattern)


def test_a_symbolic_link_inside_the_drop_folder_is_not_followed(settings: Settings) -> None:
    drop = settings.home / "departments/minzheng/drop"
    (drop / "good.csv").write_text("a,b\n1,2\n", encoding="utf-8")
    (drop / "sub").symlink_to(settings.keys_dir)  # a folder link, made after registration
    (settings.keys_dir / "k.csv").write_text("PRIVATE,KEY\nMIIF,x\n", encoding="utf-8")
    (drop / "k.csv").symlink_to(settings.keys_dir / "k.csv")  # and a file link
    for pattern, read in (("*.csv", [[{"a": "1", "b": "2"}]]), ("sub/*.csv", [])):
        reg = registration("files", name="minzheng-test", path=str(drop), pattern=pattern, settle_seconds=0)
        source = create_connector(reg, settings.home, EnvironmentSecrets({}), paths=SourcePaths.of(settings))
        assert [p.batch.to_pylist() for p in source.pull(None, 100)] == read


def test_an_archive_folder_swapped_for_a_link_is_not_used(settings: Settings) -> None:
    drop = settings.home / "departments/minzheng/drop"
    archive = settings.home / "departments/minzheng/archive"
    (drop / "good.csv").write_text("a,b\n1,2\n", encoding="utf-8")
    reg = registration("files", name="minzheng-test", path=str(drop), archive=str(archive), settle_seconds=0)
    source = create_connector(reg, settings.home, EnvironmentSecrets({}), paths=SourcePaths.of(settings))
    pulled = list(source.pull(None, 100))
    archive.symlink_to(settings.lake_dir)  # swapped between the check and the move
    source.landed(pulled[-1].cursor)
    assert (drop / "good.csv").exists() and not any(settings.lake_dir.iterdir())


def test_the_default_relative_home_works(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # ONCEONLY_HOME defaults to "var", relative to where the command runs: {home} expands to an
    # absolute path and the default root is absolute too, so the shipped registrations build.
    from connectors import load_registrations

    monkeypatch.chdir(tmp_path)
    settings = Settings(home=Path("var"))
    assert SourcePaths.of(settings).roots == (str(tmp_path / "var" / "departments"),)
    for reg in load_registrations(settings.registrations_dir).values():
        create_connector(reg, settings.home, EnvironmentSecrets({}), paths=SourcePaths.of(settings))
    with pytest.raises(ConfigurationError, match="is the district's signing keys"):
        files_at(settings, path=str(tmp_path / "var" / "keys"))
