"""Each connector's secrets live in its own namespace, ONCEONLY_SECRET_<CONNECTOR>_<NAME>.

A department engineer who names the district's key passphrase variable (or another connector's
token, or PATH) as their API's bearer token must not receive it: the registration is refused
when read, and every resolver refuses the name again when asked. A value pasted where a name
belongs is never repeated in the error.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from connector_sources import connector, drain
from typer.testing import CliRunner

from cli.main import app
from connectors import ChainedSecrets, EnvironmentSecrets, Registration
from connectors.registration import parse_registration
from connectors.secrets import secret_prefix
from onceonly.errors import ConfigurationError
from onceonly.settings import Settings

PASSPHRASE = "district-key-passphrase-Zq81"

SHIPPED = (Settings().registrations_dir / "scjg-licences.yaml").read_text(encoding="utf-8")
REGISTRATION = SHIPPED.replace("token: ONCEONLY_SECRET_SCJG_LICENCES_TOKEN", "token: {name}")
assert REGISTRATION != SHIPPED


def test_the_prefix_is_the_connectors_name_in_capitals() -> None:
    assert secret_prefix("scjg-licences") == "ONCEONLY_SECRET_SCJG_LICENCES_"


def test_a_name_in_the_connectors_namespace_is_accepted() -> None:
    reg = parse_registration(
        REGISTRATION.replace("{name}", "ONCEONLY_SECRET_SCJG_LICENCES_TOKEN"), "scjg.yaml"
    )
    assert reg.secrets == {"token": "ONCEONLY_SECRET_SCJG_LICENCES_TOKEN"}


@pytest.mark.parametrize(
    "name",
    [
        "ONCEONLY_KEY_PASSPHRASE",  # the district's signing-key passphrase
        "ONCEONLY_SECRET_GONGAN_HOUSEHOLD_PASSWORD",  # another connector's
        "ONCEONLY_SECRET_SCJG_LICENCES",  # the prefix without a name
        "ONCEONLY_SECRET_SCJG_LICENCES_token",  # not upper case
        "PATH",
        "AWS_SECRET_ACCESS_KEY",
        "s3cr3tValue9",  # a value pasted where a name belongs
    ],
)
def test_a_name_outside_the_namespace_is_refused_without_repeating_it(name: str) -> None:
    with pytest.raises(ConfigurationError) as refused:
        parse_registration(REGISTRATION.replace("{name}", name), "scjg.yaml")
    message = str(refused.value)
    assert message.startswith("scjg.yaml: line 19, secrets: Value error, secret 'token': a secret of")
    assert "ONCEONLY_SECRET_SCJG_LICENCES_<NAME>" in message and "onceonly-secret-scjg-licences-" in message
    assert name not in message.replace("ONCEONLY_SECRET_SCJG_LICENCES_<NAME>", "")


def test_a_value_with_spaces_pasted_in_is_refused_and_not_repeated() -> None:
    with pytest.raises(ConfigurationError) as refused:
        parse_registration(REGISTRATION.replace("{name}", "'my secret pw'"), "scjg.yaml")
    assert "my secret pw" not in str(refused.value)


def test_a_shorter_connector_cannot_name_a_longer_ones_secret() -> None:
    # `scjg` + `LICENCES_TOKEN` would spell scjg-licences' token: <NAME> has no '_'.
    shorter = REGISTRATION.replace("name: scjg-licences", "name: scjg").replace(
        "{name}", "ONCEONLY_SECRET_SCJG_LICENCES_TOKEN"
    )
    with pytest.raises(
        ConfigurationError, match=r"must be named ONCEONLY_SECRET_SCJG_<NAME> \(<NAME>: upper"
    ):
        parse_registration(shorter, "scjg.yaml")
    with pytest.raises(ConfigurationError):
        EnvironmentSecrets({"ONCEONLY_SECRET_SCJG_LICENCES_TOKEN": "t"}).resolve(
            "ONCEONLY_SECRET_SCJG_LICENCES_TOKEN", connector="scjg"
        )


def test_every_resolver_refuses_a_name_outside_the_namespace_even_if_a_registration_slipped_through() -> None:
    environ = {"ONCEONLY_KEY_PASSPHRASE": PASSPHRASE, "ONCEONLY_SECRET_SCJG_LICENCES_TOKEN": "t0ken"}
    for resolver in (EnvironmentSecrets(environ), ChainedSecrets(EnvironmentSecrets(environ))):
        assert resolver.resolve("ONCEONLY_SECRET_SCJG_LICENCES_TOKEN", connector="scjg-licences") == "t0ken"
        with pytest.raises(ConfigurationError, match="must be named ONCEONLY_SECRET_SCJG_LICENCES_<NAME>"):
            resolver.resolve("ONCEONLY_KEY_PASSPHRASE", connector="scjg-licences")


def test_a_pull_never_sends_the_passphrase_as_a_token() -> None:
    # Registration.model_construct skips validation: as if a stored registration predated the rule.
    good = parse_registration(
        REGISTRATION.replace("{name}", "ONCEONLY_SECRET_SCJG_LICENCES_TOKEN"), "scjg.yaml"
    )
    forged = Registration.model_construct(**{**dict(good), "secrets": {"token": "ONCEONLY_KEY_PASSPHRASE"}})
    source = connector(forged, env={"ONCEONLY_KEY_PASSPHRASE": PASSPHRASE})
    with pytest.raises(ConfigurationError) as refused:
        drain(source)
    assert PASSPHRASE not in str(refused.value)


@pytest.mark.parametrize("value", ["Hunter2Secret", "s3cr3t/value.x", "'pass word with spaces'"])
def test_register_with_a_value_where_a_name_belongs_never_prints_it(
    home: Path, tmp_path: Path, value: str
) -> None:
    path = tmp_path / "scjg-licences.yaml"
    path.write_text(REGISTRATION.replace("{name}", value), encoding="utf-8")
    result = CliRunner().invoke(app, ["connectors", "register", str(path), "--no-block"])
    assert result.exit_code == 1
    shown = result.output + str(result.exception or "")
    assert "secrets: Value error, secret 'token'" in shown
    assert value.strip("'") not in shown
