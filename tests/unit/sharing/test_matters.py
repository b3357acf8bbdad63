"""The matters catalogue: what each matter and 一件事 bundle asks for, and errors naming file and line."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app
from contracts.model import certificate_datasets
from onceonly.errors import ConfigurationError
from onceonly.settings import Settings
from sharing.matters import RELATIONS, RelativeRule, load_matters

KNOWN = certificate_datasets(Settings().contracts_dir)
HOUSEHOLD, MARRIAGE, BIRTH = "11100000000019342N001", "1110000000001201XK001", "11100000MB01Q0230J001"


def test_the_shipped_catalogue_has_real_matters_bundles_and_relations() -> None:
    catalogue = load_matters(Settings().matters_file, known_types=KNOWN)
    assert len(catalogue.matters) >= 15 and len(catalogue.bundles) >= 3
    names = {m.name for m in catalogue.matters}
    for expected in (
        "城乡居民养老保险参保登记",
        "最低生活保障申请",
        "残疾人两项补贴申请",
        "食品经营许可",
        "临时救助申请",
    ):
        assert expected in names
    matter = catalogue.get("hukou-move-after-marriage")
    assert [(m.name, m.holder) for m in matter.materials] == [
        ("结婚证", "applicant"),
        ("居民户口簿", "applicant"),
        ("配偶居民户口簿", "spouse"),
        ("居民身份证", "applicant"),
    ]
    assert {m.holder for m in catalogue.matters for m in m.materials} <= set(RELATIONS)
    assert catalogue.relatives["spouse"] == RelativeRule(types=(MARRIAGE,))
    assert catalogue.relatives["child"] == RelativeRule(types=(BIRTH,), fields=("child_id",))
    assert catalogue.relatives["parent"] == RelativeRule(types=(BIRTH,), fields=("mother_id", "father_id"))
    for m in catalogue.matters:
        for material in m.materials:
            assert set(material.certificate_types) <= set(KNOWN), (m.code, material.name)


def test_a_bundle_asks_for_each_material_once_with_the_matters_needing_it() -> None:
    catalogue = load_matters(Settings().matters_file, known_types=KNOWN)
    asked = catalogue.asked("marriage-household")
    assert asked.bundle and asked.subject == "person"
    by_name = dict(zip([m.name for m in asked.materials], asked.needed_by, strict=True))
    # 结婚证 and 父母结婚证 are the same certificate of the same person: asked once, first name kept.
    assert "父母结婚证" not in by_name
    assert by_name["结婚证"] == ("hukou-move-after-marriage", "newborn-registration")
    keys = [(",".join(m.certificate_types) or m.name, m.holder) for m in asked.materials]
    assert len(keys) == len(set(keys))
    # The applicant's and the spouse's 户口簿 are two materials, a child's a third.
    assert [m.holder for m in asked.materials if m.certificate_types == (HOUSEHOLD,)] == [
        "applicant",
        "spouse",
        "child",
    ]
    business = catalogue.asked("business-opening")
    assert [m.name for m in business.materials].count("营业执照") == 1
    single = catalogue.asked("pension-enrolment")
    assert not single.bundle and single.needed_by == (("pension-enrolment",), ("pension-enrolment",))


def test_an_unknown_matter_names_the_known_ones() -> None:
    catalogue = load_matters(Settings().matters_file)
    with pytest.raises(
        ConfigurationError, match=r"no matter 'marriage' .*known: pension-enrolment, hukou-move"
    ):
        catalogue.get("marriage")
    with pytest.raises(ConfigurationError, match=r"no matter or 一件事 bundle 'x' .*newborn"):
        catalogue.asked("x")


MATTER = """\
matters:
  - code: a
    name: 甲
    department: 部门
    subject: person
    materials:
      - name: 户口簿
        certificate_types: [11100000000019342N001]
  - code: b
    name: 乙
    department: 部门
    subject: person
    materials:
      - name: 结婚证
        certificate_types: [1110000000001201XK001]
"""


@pytest.mark.parametrize(
    ("change", "line", "message"),
    [
        (
            ("[11100000000019342N001]", "[11100000000019342N999]"),
            8,
            "unknown certificate type '11100000000019342N999'",
        ),
        (
            ("      - name: 结婚证\n", "      - name: 结婚证\n        holder: cousin\n"),
            15,
            "holder: Input should be",
        ),
        (
            ("      - name: 结婚证\n", "      - name: 结婚证\n        holder: legal_representative\n"),
            15,
            "not a relation of an applicant that is a person",
        ),
        (("  - code: b", "  - code: a"), 9, "matter 'a' is defined twice"),
        (
            (
                "    subject: person\n    materials:\n      - name: 结婚证",
                "    subject: robot\n    materials:\n      - name: 结婚证",
            ),
            12,
            "subject",
        ),
        (
            (
                "        certificate_types: [1110000000001201XK001]\n",
                "        certificate_types: [1110000000001201XK001]\n        colour: red\n",
            ),
            16,
            "colour",
        ),
    ],
)
def test_a_broken_catalogue_names_the_file_and_the_line(
    tmp_path: Path, change: tuple[str, str], line: int, message: str
) -> None:
    path = tmp_path / "matters.yaml"
    old, new = change
    assert old in MATTER
    path.write_text(MATTER.replace(old, new, 1), "utf-8")
    with pytest.raises(ConfigurationError) as caught:
        load_matters(path, known_types=KNOWN)
    assert f"matters.yaml:{line}:" in str(caught.value) and message in str(caught.value), str(caught.value)


def test_a_broken_bundle_names_the_file_and_the_line(tmp_path: Path) -> None:
    path = tmp_path / "matters.yaml"
    path.write_text(MATTER + "bundles:\n  - code: both\n    name: 两件\n    matters: [a, c]\n", "utf-8")
    with pytest.raises(ConfigurationError, match=r"matters\.yaml:19: bundle 'both': unknown matter 'c'"):
        load_matters(path, known_types=KNOWN)
    # A child is not "the other holder": the rule must name the field that gives the child.
    path.write_text(MATTER + "relatives:\n  child: [11100000000019342N001]\n", "utf-8")
    with pytest.raises(ConfigurationError, match=r"matters\.yaml:17: relatives\.child: name the fields"):
        load_matters(path, known_types=KNOWN)
    path.write_text(
        MATTER + "relatives:\n  spouse:\n    types: [11100000000019342N001]\n    fields: [x]\n", "utf-8"
    )
    with pytest.raises(
        ConfigurationError, match=r"matters\.yaml:17: relatives\.spouse: a spouse is the other holder"
    ):
        load_matters(path, known_types=KNOWN)
    path.write_text(MATTER + "relatives:\n  child:\n    types: []\n    fields: [child_id]\n", "utf-8")
    with pytest.raises(ConfigurationError, match=r"matters\.yaml:18: relatives\.child\.types: .*at least 1"):
        load_matters(path, known_types=KNOWN)
    path.write_text(MATTER + "relatives:\n  applicant: [11100000000019342N001]\n", "utf-8")
    with pytest.raises(ConfigurationError, match=r"matters\.yaml:17: relatives: a 'applicant' is not found"):
        load_matters(path, known_types=KNOWN)
    path.write_text(MATTER + "relatives:\n  child:\n    types: [X]\n    fields: [child_id]\n", "utf-8")
    with pytest.raises(
        ConfigurationError, match=r"matters\.yaml:18: relatives\.child: unknown certificate type 'X'"
    ):
        load_matters(path, known_types=KNOWN)


def test_an_unreadable_catalogue_says_so(tmp_path: Path) -> None:
    path = tmp_path / "matters.yaml"
    path.write_text("matters: [", "utf-8")
    with pytest.raises(ConfigurationError, match="cannot read the matters catalogue"):
        load_matters(path)
    with pytest.raises(ConfigurationError, match="cannot read"):
        load_matters(tmp_path / "missing.yaml")


def test_matters_check_show_and_list_on_the_command_line(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["matters", "check"])
    assert result.exit_code == 0 and "3 一件事 bundles" in result.output, result.output
    broken = tmp_path / "matters.yaml"
    broken.write_text(MATTER.replace("N001]", "N999]", 1), "utf-8")
    result = runner.invoke(app, ["matters", "check", str(broken)])
    # The command line's entry point prints an OnceOnly error and exits 1 (cli.main.main).
    assert isinstance(result.exception, ConfigurationError) and "matters.yaml:8:" in str(result.exception)
    result = runner.invoke(app, ["matters", "show", "newborn"])
    assert result.exit_code == 0, result.output
    assert "新生儿居民户口簿 [子女]" in result.output and "needed by" in result.output
    result = runner.invoke(app, ["matters", "list"])
    assert result.exit_code == 0 and "marriage-household" in result.output
