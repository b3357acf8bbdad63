"""Interoperability with the Open Data Contract Standard v3 itself.

The official ODCS examples and JSON Schema are read in place from ``../shared/interop/odcs``
beside the repository (or ``ONCEONLY_ODCS_DIR``); they are not copied into the project. A
missing directory is a failure, not a skip: the interop promise is then unchecked.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import jsonschema
import pytest
import yaml

from contracts.compiler import compile_contract
from contracts.model import load_contract
from onceonly.errors import ContractError
from onceonly.settings import Settings

REPO = Path(__file__).resolve().parents[3]
ODCS = Path(os.environ.get("ONCEONLY_ODCS_DIR", REPO.parent / "shared" / "interop" / "odcs"))
EXAMPLES = sorted((ODCS / "examples").glob("*.yaml"))
DATASETS = sorted(Path(Settings().contracts_dir).glob("*.yaml"))


def test_the_odcs_material_is_there() -> None:
    assert (ODCS / "odcs-json-schema-v3.1.0.json").is_file(), f"ODCS JSON Schema not found under {ODCS}"
    assert len(EXAMPLES) >= 10, f"ODCS examples not found under {ODCS / 'examples'}"


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name.removesuffix(".odcs.yaml"))
def test_official_example_loads_or_is_rejected_as_unsupported(path: Path) -> None:
    try:
        compiled = compile_contract(load_contract(path))
    except ContractError as exc:
        problems = [line for line in str(exc).splitlines() if "... and" not in line]
        assert problems
        for line in problems:
            assert line.startswith(str(path)), line  # every problem names the file ...
            assert "unsupported: " in line, line  # ... and the feature OnceOnly lacks
        return
    # Loaded: nothing silently dropped — every quality entry became a named rule.
    declared = sum(len(p.quality) for p in compiled.contract.table.properties) + len(
        compiled.contract.table.quality
    )
    from_quality = [r for r in compiled.rules if r.kind not in ("type", "required", "unique")] + [
        r for r in compiled.rules if r.kind in ("required", "unique") and r.description.endswith("= 0")
    ]
    assert len(from_quality) >= declared
    assert compiled.build_suite().expectations


def test_the_known_outcomes_of_the_official_examples() -> None:
    outcomes = {}
    for path in EXAMPLES:
        try:
            compile_contract(load_contract(path))
            outcomes[path.name] = "loaded"
        except ContractError as exc:
            outcomes[path.name] = str(exc).splitlines()[0].split("unsupported: ", 1)[1][:40]
    assert outcomes["column-validity.odcs.yaml"] == "loaded"
    assert outcomes["column-accuracy.odcs.yaml"].startswith("sql quality rules")
    assert outcomes["database-table-sla.odcs.yaml"].startswith("a contract must describe exactly one")
    assert outcomes["table-column.odcs.yaml"].startswith("a contract without a primaryKey")


def test_the_loaded_example_validates_its_threshold_rule() -> None:
    import pyarrow as pa

    from contracts.checks import CheckContext
    from contracts.validate import Validator

    compiled = compile_contract(load_contract(ODCS / "examples" / "column-validity.odcs.yaml"))
    (rule,) = [r for r in compiled.rules if r.check == "invalid_values"]
    assert rule.check_args["operator"] == "mustBeLessOrEqualTo" and rule.check_args["unit"] == "percent"
    validator = Validator(compiled, CheckContext.for_district("120114"))

    def failing(values: list[str]) -> list[int]:
        v = validator.validate(pa.table({"air_quality_status": values}), connector="t")
        return [f.row for f in v.failures if f.rule == rule.name]

    within = ["n/a"] * 19 + ["broken"]  # 5 % invalid: the contract allows up to 5 %
    assert failing(within) == []
    beyond = ["n/a"] * 18 + ["broken", "bad"]  # 10 %: the invalid rows fail
    assert failing(beyond) == [18, 19]


@pytest.mark.parametrize("path", DATASETS, ids=lambda p: p.stem)
def test_our_contracts_validate_against_the_official_json_schema(path: Path) -> None:
    schema = json.loads((ODCS / "odcs-json-schema-v3.1.0.json").read_text(encoding="utf-8"))
    validator = jsonschema.Draft201909Validator(schema)
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(document)]
    assert errors == []


def test_the_json_schema_check_would_catch_a_non_odcs_key() -> None:
    schema = json.loads((ODCS / "odcs-json-schema-v3.1.0.json").read_text(encoding="utf-8"))
    document = yaml.safe_load(DATASETS[0].read_text(encoding="utf-8"))
    document["schema"][0]["properties"][0]["logicalTypeOptions"] = {"enum": ["a"]}
    assert list(jsonschema.Draft201909Validator(schema).iter_errors(document))
