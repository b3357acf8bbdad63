"""Benefit rule files are validated like a contract: each mistake is an error naming file and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from onceonly.settings import Settings
from sharing.benefit_rules import BenefitRuleError, load_rule, load_rules

CONTRACTS = Settings().contracts_dir
GOOD = """\
id: gaoling-jintie
version: 1.0.0
name: 高龄津贴
department: 天津市武清区民政局
facts:
  - name: 居民户口簿
    certificate_type: 11100000000019342N001
    conditions:
      - {field: township, operator: inDistrict}
      - {field: holder_age, operator: mustBeGreaterOrEqualTo, value: 80}
grants:
  benefit: 高龄津贴
  amount: 200
  unit: 元/月
"""


def _rule(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "rule.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def _error(tmp_path: Path, text: str) -> str:
    path = _rule(tmp_path, text)
    with pytest.raises(BenefitRuleError) as caught:
        load_rule(path, CONTRACTS)
    return str(caught.value)


def test_the_shipped_rules_load_and_read_in_chinese() -> None:
    rules = {r.id: r for r in load_rules(Settings().benefit_rules_dir, CONTRACTS)}
    assert set(rules) == {"gaoling-jintie", "shengyu-butie", "chengxiang-yanglao"}
    gaoling = rules["gaoling-jintie"]
    assert (gaoling.version, gaoling.name, gaoling.department) == ("1.0.0", "高龄津贴", "天津市武清区民政局")
    words = [gaoling.describe(c) for c in gaoling.facts[0].conditions]
    assert words == ["所在乡镇（街道） 在本区", "持证人年龄（周岁） 不小于 80"]
    assert (
        rules["shengyu-butie"].describe(rules["shengyu-butie"].facts[0].conditions[1])
        == "出生日期 在 365 日内"
    )


def test_a_good_rule_loads(tmp_path: Path) -> None:
    rule = load_rule(_rule(tmp_path, GOOD), CONTRACTS)
    assert rule.ref == "gaoling-jintie@1.0.0"
    assert rule.grants.describe() == "高龄津贴 200 元/月"


def test_an_unknown_certificate_type_names_the_file_and_line(tmp_path: Path) -> None:
    message = _error(tmp_path, GOOD.replace("11100000000019342N001", "11100000000000000X001"))
    assert f"{tmp_path / 'rule.yaml'}:7:" in message
    assert "unknown certificate type '11100000000000000X001'" in message
    assert "11100000000019342N001" in message  # the known ones are listed


def test_an_unknown_field_names_the_line_and_the_known_fields(tmp_path: Path) -> None:
    message = _error(tmp_path, GOOD.replace("field: township", "field: hukou_town"))
    assert f"{tmp_path / 'rule.yaml'}:9:" in message
    assert "unknown field 'hukou_town'" in message and "fields.birth_date" in message


def test_a_certificate_field_not_on_that_type_is_unknown(tmp_path: Path) -> None:
    message = _error(tmp_path, GOOD.replace("field: township", "field: fields.mother_id"))
    assert ":9:" in message and "unknown field 'fields.mother_id'" in message


def test_an_unknown_operator_names_the_line(tmp_path: Path) -> None:
    message = _error(tmp_path, GOOD.replace("mustBeGreaterOrEqualTo", "atLeast"))
    assert (
        ":10:" in message and "unknown operator 'atLeast'" in message and "mustBeGreaterOrEqualTo" in message
    )


def test_a_value_of_the_wrong_type_is_refused(tmp_path: Path) -> None:
    message = _error(tmp_path, GOOD.replace("value: 80", "value: 八十"))
    assert ":10:" in message and "holder_age is an integer; the value '八十' is not" in message


def test_an_operator_on_a_field_of_the_wrong_type_is_refused(tmp_path: Path) -> None:
    message = _error(
        tmp_path,
        GOOD.replace(
            "field: township, operator: inDistrict", "field: township, operator: withinDays, value: 3"
        ),
    )
    assert ":9:" in message and "withinDays applies to date fields; township is a string" in message


def test_an_operator_that_takes_no_value_refuses_one(tmp_path: Path) -> None:
    message = _error(
        tmp_path, GOOD.replace("operator: inDistrict}", "operator: inDistrict, value: '120114'}")
    )
    assert ":9:" in message and "inDistrict takes no value" in message


def test_an_unknown_key_and_an_unknown_status_are_refused(tmp_path: Path) -> None:
    message = _error(tmp_path, GOOD.replace("grants:", "budget: 1\ngrants:"))
    assert ":11:" in message and "unknown key 'budget'" in message
    message = _error(tmp_path, GOOD.replace("    conditions:", "    status: [正常]\n    conditions:"))
    assert ":8:" in message and "unknown certificate status '正常'" in message


def test_a_bad_version_and_a_missing_part_are_refused(tmp_path: Path) -> None:
    assert ":2:" in _error(tmp_path, GOOD.replace("version: 1.0.0", "version: v1"))
    message = _error(tmp_path, GOOD.replace("department: 天津市武清区民政局\n", ""))
    assert "department: Field required" in message


def test_an_id_twice_in_the_folder_is_refused(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(GOOD, encoding="utf-8")
    (tmp_path / "b.yaml").write_text(GOOD, encoding="utf-8")
    with pytest.raises(BenefitRuleError, match="defined twice"):
        load_rules(tmp_path, CONTRACTS)


def test_not_yaml_names_the_file(tmp_path: Path) -> None:
    message = _error(tmp_path, GOOD + "grants: again\n")
    assert str(tmp_path / "rule.yaml") in message and "appears twice" in message


def test_an_unknown_key_inside_a_fact_is_the_only_error(tmp_path: Path) -> None:
    message = _error(tmp_path, GOOD.replace("    conditions:", "    colour: red\n    conditions:"))
    assert ":8:" in message and "unknown key 'colour' at facts.0" in message
    assert "at least 1 item" not in message  # the fact is there; it is wrong, not missing
    assert "at least 1 item" in _error(
        tmp_path, GOOD.replace(GOOD[GOOD.index("facts:") : GOOD.index("grants:")], "facts: []\n")
    )


def test_once_per_names_a_fact_of_the_rule(tmp_path: Path) -> None:
    rule = load_rule(_rule(tmp_path, GOOD.replace("grants:", "once_per: 居民户口簿\ngrants:")), CONTRACTS)
    assert rule.once_per == "居民户口簿" and rule.trigger == 0
    assert load_rule(_rule(tmp_path, GOOD), CONTRACTS).trigger is None
    message = _error(tmp_path, GOOD.replace("grants:", "once_per: 出生医学证明\ngrants:"))
    assert ":11:" in message and "once_per names no fact of the rule: '出生医学证明'" in message
    shipped = {r.id: r for r in load_rules(Settings().benefit_rules_dir, CONTRACTS)}
    assert shipped["shengyu-butie"].once_per == "出生医学证明"
