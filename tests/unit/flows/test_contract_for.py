"""A contract file that does not load fails the dataset it declares, and no other."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from flows.pipeline import contract_for
from onceonly.errors import ContractError
from onceonly.settings import Settings

SHIPPED = Path(Settings().contracts_dir)


@pytest.fixture
def contracts(tmp_path: Path) -> Path:
    copy = tmp_path / "contracts"
    shutil.copytree(SHIPPED, copy)
    return copy


def test_invalid_yaml_fails_its_own_dataset_with_the_file_and_the_cause(contracts: Path) -> None:
    marriage = contracts / "marriage.yaml"
    marriage.write_text(marriage.read_text(encoding="utf-8") + "  stray: [unclosed\n", encoding="utf-8")

    assert contract_for(contracts, "household").id == "household"
    with pytest.raises(ContractError) as refused:
        contract_for(contracts, "marriage")
    named, _, cause = str(refused.value).partition(str(marriage))
    assert named == "the contract of dataset 'marriage' cannot be used: "
    assert cause.strip(" :") and "\n" not in cause  # the loader's words, on one line


def test_a_broken_file_belongs_to_the_id_it_declares_else_to_its_name(contracts: Path) -> None:
    (contracts / "birth-draft.yaml").write_text("id: birth\nkind: [\n", encoding="utf-8")
    (contracts / "scratch.yaml").write_text("kind: DataContract\nschema: {{\n", encoding="utf-8")

    with pytest.raises(ContractError, match=r"birth-draft\.yaml"):
        contract_for(contracts, "birth")
    assert contract_for(contracts, "marriage").id == "marriage"
    with pytest.raises(ContractError, match=r"scratch\.yaml"):
        contract_for(contracts, "scratch")
    with pytest.raises(ContractError, match=r"no contract with id 'nothing'.*scratch.yaml"):
        contract_for(contracts, "nothing")


def test_an_invalid_contract_fails_only_its_dataset(contracts: Path) -> None:
    household = contracts / "household.yaml"
    household.write_text(
        household.read_text(encoding="utf-8").replace("kind: DataContract", "kind: DataContract\nbogus: 1"),
        encoding="utf-8",
    )

    assert contract_for(contracts, "marriage").id == "marriage"
    with pytest.raises(ContractError, match=r"cannot be used: .*household.yaml"):
        contract_for(contracts, "household")


def test_a_healthy_folder_keeps_contract_by_ids_own_words(contracts: Path) -> None:
    with pytest.raises(ContractError, match=r"no contract with id 'nothing' in .*\(known: "):
        contract_for(contracts, "nothing")
