"""The matters catalogue: what each matter asks for, and clear errors for a broken file."""

from __future__ import annotations

from pathlib import Path

import pytest

from contracts.model import certificate_datasets
from onceonly.errors import ConfigurationError
from onceonly.settings import Settings
from sharing.matters import load_matters


def test_the_shipped_catalogue_loads_and_every_type_has_an_issuing_dataset() -> None:
    catalogue = load_matters(Settings().matters_file)
    issued_by = certificate_datasets(Settings().contracts_dir)

    matter = catalogue.get("hukou-move-after-marriage")
    assert [m.name for m in matter.materials] == ["结婚证", "居民户口簿", "居民身份证"]
    assert matter.subject == "person"
    for m in catalogue.matters:
        for material in m.materials:
            assert set(material.certificate_types) <= set(issued_by), (m.code, material.name)


def test_an_unknown_matter_names_the_known_ones() -> None:
    catalogue = load_matters(Settings().matters_file)
    with pytest.raises(
        ConfigurationError, match=r"no matter 'marriage' .*known: pension-enrolment, hukou-move"
    ):
        catalogue.get("marriage")


def test_a_broken_catalogue_file_says_where(tmp_path: Path) -> None:
    path = tmp_path / "matters.yaml"
    path.write_text("matters:\n  - code: x\n    name: y\n    department: z\n    subject: robot\n", "utf-8")
    with pytest.raises(ConfigurationError, match=r"matters\.yaml: matters\.0\.subject"):
        load_matters(path)
    path.write_text("matters: [", "utf-8")
    with pytest.raises(ConfigurationError, match="cannot read the matters catalogue"):
        load_matters(path)
    with pytest.raises(ConfigurationError, match="cannot read"):
        load_matters(tmp_path / "missing.yaml")
