from __future__ import annotations

from pathlib import Path

import pytest

from contracts.compiler import compile_contract
from contracts.model import contract_by_id, load_contract, parse_contract
from onceonly.errors import ContractError
from onceonly.settings import Settings

DATASETS = Path(Settings().contracts_dir)


@pytest.mark.parametrize("path", sorted(DATASETS.glob("*.yaml")), ids=lambda p: p.stem)
def test_demo_contracts_load_and_compile(path: Path) -> None:
    contract = load_contract(path)
    compiled = compile_contract(contract)
    assert contract.kind == "DataContract"
    assert compiled.record_key
    # Every dataset issues a certificate but the approvals: 审批 decisions (不予许可 among them),
    # pushed to their supervising department (sharing.supervision), not certificates.
    assert (compiled.certificate is None) == (contract.id == "approval")
    assert len(compiled.arrow_schema) == len(contract.table.properties)


def test_contract_by_id_lists_known_ids_when_missing() -> None:
    known = (
        "approval, birth, business_licence, household, marriage, property_right, social_insurance, "
        "submitted_material"
    )
    with pytest.raises(ContractError, match=f"known: {known}"):
        contract_by_id(DATASETS, "nope")


def _household_text() -> str:
    return (DATASETS / "household.yaml").read_text(encoding="utf-8")


def test_unknown_key_is_rejected_with_file_line_and_key() -> None:
    text = _household_text().replace(
        "        unique: true\n", "        unique: true\n        colour: red\n", 1
    )
    line = text.splitlines().index("        colour: red") + 1
    with pytest.raises(ContractError) as err:
        parse_contract(text, source="household.yaml")
    assert f"household.yaml:{line}: unsupported: key 'colour' at schema.0.properties.0" in str(err.value)


def test_yaml_syntax_error_names_the_line() -> None:
    with pytest.raises(ContractError, match=r"bad\.yaml:\d+: not valid YAML"):
        parse_contract("apiVersion: v3.1.0\nschema: [\n  - a: b\n", source="bad.yaml")


def test_wrong_type_is_reported() -> None:
    text = _household_text().replace("required: true", "required: maybe", 1)
    with pytest.raises(ContractError, match="required: Input should be a valid boolean"):
        parse_contract(text, source="h.yaml")


def test_rule_on_missing_column_is_rejected() -> None:
    text = (
        (DATASETS / "business_licence.yaml")
        .read_text(encoding="utf-8")
        .replace("other: valid_to", "other: valid_until")
    )
    with pytest.raises(ContractError, match="refers to missing column 'valid_until'"):
        compile_contract(parse_contract(text))


def test_unknown_check_lists_known_checks() -> None:
    text = _household_text().replace("implementation: gb11643_citizen_id", "implementation: gb9999", 1)
    with pytest.raises(ContractError, match="gb11643_citizen_id"):
        compile_contract(parse_contract(text))
