"""Registration files checked against the generated JSON Schema; errors name file, LINE and field."""

from __future__ import annotations

from pathlib import Path

import jsonschema
import pytest
import yaml

from connectors.registration import parse_registration, registration_schema
from onceonly.errors import ConfigurationError, UnknownConnectorType
from onceonly.settings import Settings

GOOD = """\
# 公安 户籍
name: gongan-household
department: 天津市公安局武清分局
dataset: household
type: sql
options:
  url: postgresql+psycopg://reader@db.gongan.local/huji
  table: household_member
  cursor:
    column: updated_at
    tiebreak: id
secrets:
  password: ONCEONLY_SECRET_GONGAN_HOUSEHOLD_PASSWORD
"""


def test_the_schema_is_valid_and_accepts_every_shipped_registration() -> None:
    schema = registration_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["properties"]["type"]["enum"] == ["files", "http", "sql"]
    assert "SqlOptions" in schema["$defs"]
    for path in sorted(Path(Settings().registrations_dir).glob("*.yaml")):
        jsonschema.validate(yaml.safe_load(path.read_text(encoding="utf-8")), schema)
    jsonschema.validate(yaml.safe_load(GOOD), schema)


def test_the_schema_checks_the_options_of_the_declared_type() -> None:
    bad = yaml.safe_load(GOOD.replace("    tiebreak: id\n", ""))
    with pytest.raises(jsonschema.ValidationError, match="tiebreak"):
        jsonschema.validate(bad, registration_schema())


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("    tiebreak: id\n", "", "line 9, options.cursor.tiebreak: Field required"),
        ("  table: household_member\n", "  tabel: household_member\n", "line 8, options.tabel: Extra inputs"),
        ("name: gongan-household", "name: Gongan Household", "line 2, name: Value error"),
        (
            "  password: ONCEONLY_SECRET_GONGAN_HOUSEHOLD_PASSWORD",
            "  password: my secret pw",
            "line 12, secrets: Value error",
        ),
        ("  table: household_member\n", "", "line 6, options: Value error, give exactly one of"),
    ],
    ids=["missing-nested", "misspelt-option", "bad-name", "secret-value", "table-or-query"],
)
def test_errors_name_the_file_the_line_and_the_field(old: str, new: str, expected: str) -> None:
    assert old in GOOD
    with pytest.raises(ConfigurationError) as info:
        parse_registration(GOOD.replace(old, new), "gongan.yaml")
    message = str(info.value)
    assert message.startswith("gongan.yaml: ") and expected in message, message
    assert "my secret pw" not in message


def test_an_unknown_type_names_the_line_and_the_known_types() -> None:
    with pytest.raises(UnknownConnectorType, match=r"gongan\.yaml: line 5, type: .*'ftp'.*files, http, sql"):
        parse_registration(GOOD.replace("type: sql", "type: ftp"), "gongan.yaml")
