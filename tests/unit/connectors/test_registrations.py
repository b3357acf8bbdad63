"""Registration files, the connector registry (entry points) and secret resolution."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import pytest
from connector_sources import connector, registration

import connectors
from connectors import (
    ChainedSecrets,
    EnvironmentSecrets,
    MissingSecret,
    connector_types,
    create_connector,
    load_registration,
    load_registrations,
)
from connectors.base import Connector
from connectors.paths import SourcePaths
from connectors.registration import parse_registration
from onceonly.errors import ConfigurationError, UnknownConnectorType
from onceonly.settings import Settings

REGISTRATIONS = Path(Settings().registrations_dir)

GOOD = """\
name: gongan-household
department: 天津市公安局武清分局
dataset: household
type: sql
options:
  url: sqlite:///{home}/departments/gongan/household.db
  table: household_member
  cursor: {column: updated_at, tiebreak: id}
secrets:
  password: ONCEONLY_SECRET_GONGAN_HOUSEHOLD_PASSWORD
"""


def write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("path", sorted(REGISTRATIONS.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_shipped_registration_loads_and_builds_its_connector(path: Path, tmp_path: Path) -> None:
    reg = load_registration(path)
    assert reg.name == path.stem
    # Secrets are resolved only when pulling; the shipped paths lie under the default roots.
    paths = SourcePaths.of(Settings(home=tmp_path))
    built = create_connector(reg, tmp_path, EnvironmentSecrets({}), paths=paths)
    assert built.type_name == reg.type and built.name == reg.name
    assert all("{home}" not in str(v) for v in built.options.values())


def test_the_shipped_folder_loads_as_a_whole() -> None:
    regs = load_registrations(REGISTRATIONS)
    assert set(regs) == {
        "budongchan-properties",
        "gongan-household",
        "minzheng-marriages",
        "renshe-insurance",
        "scjg-licences",
        "shenpi-approvals",
        "weijian-births",
        "zhengwu-materials",
    }
    assert {r.type for r in regs.values()} == {"sql", "http", "files"}


def test_home_expands_in_every_option_string(tmp_path: Path) -> None:
    reg = load_registration(write(tmp_path, "r.yaml", GOOD))
    options = reg.expanded_options(Path("/srv/onceonly"))
    assert options["url"] == "sqlite:////srv/onceonly/departments/gongan/household.db"
    assert options["cursor"] == {"column": "updated_at", "tiebreak": "id"}


def test_the_three_types_are_registered_through_entry_points() -> None:
    declared = {ep.name: ep.value for ep in importlib.metadata.entry_points(group="onceonly.connectors")}
    assert declared == {
        "sql": "connectors.sql:SqlConnector",
        "http": "connectors.http:HttpConnector",
        "files": "connectors.files:FilesConnector",
    }
    types = connector_types()
    assert set(types) == {"sql", "http", "files"}
    assert all(issubclass(cls, Connector) and cls.type_name == name for name, cls in types.items())


def test_an_unknown_type_fails_listing_the_known_ones() -> None:
    with pytest.raises(UnknownConnectorType, match=r"'ftp'.*known types: files, http, sql") as info:
        connector(registration("ftp", name="gongan-ftp"))
    assert "gongan-ftp" in str(info.value)


@pytest.mark.parametrize(
    ("old", "new", "field"),
    [
        ("name: gongan-household", "name: Gongan Household", "name: Value error"),
        (
            "password: ONCEONLY_SECRET_GONGAN_HOUSEHOLD_PASSWORD",
            "password: my secret pw",
            "secrets: Value error, secret 'password'",
        ),
        ("type: sql", "type: sql\nschedul: daily", "schedul: Extra inputs"),
        ("dataset: household\n", "", "dataset: Field required"),
        (
            "secrets:\n  password: ONCEONLY_SECRET_GONGAN_HOUSEHOLD_PASSWORD\n",
            "secrets: [a, b]\n",
            "secrets: Input should be",
        ),
    ],
    ids=["bad-name", "secret-value-not-name", "extra-key", "missing-field", "secrets-not-mapping"],
)
def test_a_bad_registration_names_the_file_and_the_field(
    tmp_path: Path, old: str, new: str, field: str
) -> None:
    assert old in GOOD
    path = write(tmp_path, "gongan.yaml", GOOD.replace(old, new))
    with pytest.raises(ConfigurationError) as info:
        load_registration(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ") and field in message
    assert "my secret pw" not in message  # a secret pasted in by mistake is not echoed


@pytest.mark.parametrize(
    "text", ["- just\n- a list\n", "name: [unclosed\n"], ids=["not-a-mapping", "bad-yaml"]
)
def test_a_file_that_is_not_a_registration_names_the_file(tmp_path: Path, text: str) -> None:
    path = write(tmp_path, "broken.yaml", text)
    with pytest.raises(ConfigurationError, match=r"broken\.yaml"):
        load_registration(path)


def test_one_name_registered_twice_is_refused(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", GOOD)
    write(tmp_path, "b.yaml", GOOD)
    with pytest.raises(ConfigurationError, match=r"b\.yaml.*'gongan-household' is registered twice"):
        load_registrations(tmp_path)


def test_a_declared_but_unset_secret_names_the_secret_and_the_connector() -> None:
    resolver = EnvironmentSecrets({"OTHER": "x", "ONCEONLY_SECRET_GONGAN_HOUSEHOLD_PASSWORD": ""})
    with pytest.raises(
        MissingSecret, match=r"'gongan-household'.*'ONCEONLY_SECRET_GONGAN_HOUSEHOLD_PASSWORD' is not set"
    ):
        resolver.resolve("ONCEONLY_SECRET_GONGAN_HOUSEHOLD_PASSWORD", connector="gongan-household")


def test_chained_secrets_take_the_first_resolver_that_knows_the_name() -> None:
    a, b, c = (f"ONCEONLY_SECRET_CC_{x}" for x in "ABC")
    chain = ChainedSecrets(
        EnvironmentSecrets({a: "from-first"}), EnvironmentSecrets({a: "x", b: "from-second"})
    )
    assert chain.resolve(a, connector="cc") == "from-first"
    assert chain.resolve(b, connector="cc") == "from-second"
    with pytest.raises(MissingSecret, match=f"'{c}'"):
        chain.resolve(c, connector="cc")


def test_the_package_exports_what_it_documents() -> None:
    assert sorted(connectors.__all__) == [
        "ChainedSecrets",
        "Connector",
        "Cursor",
        "EnvironmentSecrets",
        "MissingSecret",
        "PrefectSecrets",
        "Pulled",
        "Registration",
        "SourcePaths",
        "connector_types",
        "create_connector",
        "load_registration",
        "load_registrations",
    ]
    assert all(hasattr(connectors, name) for name in connectors.__all__)


HTTP_REGISTRATION = """\
name: scjg-test
department: 市场监管
dataset: business_licence
type: http
options:
  base_url: {base_url}
  path: {path}
  fields: [uscc]
  incremental: {{param: updated_since, field: updated_at, key: uscc}}
  params: {params}
"""


@pytest.mark.parametrize(
    ("base_url", "path", "params", "problem"),
    [
        ("https://api-user:Tok-123@api.local/v1", "/x", "{}", "options.base_url: the URL carries a password"),
        ("https://Tok-123@api.local/v1", "/x", "{}", "options.base_url: the URL carries credentials"),
        ("https://api.local/v1?token=Tok-123", "/x", "{}", "credential (token=…)"),
        ("https://api.local/v1", "/licences?access_token=Tok-123", "{}", "options.path: the URL's query"),
        ("https://api.local/v1", "/x", "{api_key: Tok-123}", "options.params.api_key: a credential"),
    ],
)
def test_a_credential_written_into_an_option_is_refused_without_echoing_it(
    base_url: str, path: str, params: str, problem: str
) -> None:
    text = HTTP_REGISTRATION.format(base_url=base_url, path=path, params=params)
    with pytest.raises(ConfigurationError) as caught:
        parse_registration(text, "scjg.yaml")
    assert problem in str(caught.value) and "`secrets:`" in str(caught.value)
    assert "Tok-123" not in str(caught.value)


def test_secret_names_and_plain_urls_pass() -> None:
    text = HTTP_REGISTRATION.format(
        base_url="https://api.local/v1", path="/x?page=1", params="{region: '120114'}"
    )
    assert parse_registration(text, "scjg.yaml").options["params"] == {"region": "120114"}
