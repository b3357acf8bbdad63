"""The strict YAML reader every registration, contract and catalogue goes through."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from connectors.registration import parse_registration
from contracts.model import parse_contract
from onceonly.errors import ConfigurationError, ContractError
from onceonly.yamlfile import MAX_DEPTH, YamlProblem, read_yaml
from sharing.matters import load_matters

REGISTRATION = """\
name: gongan-household
department: 天津市公安局武清分局
dataset: household
type: sql
options:
  url: sqlite:///{home}/departments/gongan/household.db
  table: household_member
  cursor: {column: updated_at, tiebreak: id}
"""


def test_plain_yaml_reads_with_its_node_tree() -> None:
    data, node = read_yaml("a: 1\nb: [x, y]\nc: &anchor {d: 2}\ne: *anchor\n", "t.yaml")
    assert data == {"a": 1, "b": ["x", "y"], "c": {"d": 2}, "e": {"d": 2}}
    assert node is not None and node.start_mark.line == 0


def test_a_key_written_twice_is_refused_naming_both_lines() -> None:
    twice = REGISTRATION + "  table: certificates\n"
    with pytest.raises(ConfigurationError) as refused:
        parse_registration(twice, "gongan.yaml")
    assert str(refused.value) == "gongan.yaml: line 9: key 'table' appears twice (first at line 7)"


def test_a_nested_duplicate_and_a_merge_key() -> None:
    with pytest.raises(YamlProblem, match=r"t.yaml: line 3: key 'x' appears twice \(first at line 2\)"):
        read_yaml("a:\n  x: 1\n  x: 2\n", "t.yaml")
    data, _ = read_yaml("base: &b {x: 1, y: 2}\nthis:\n  <<: *b\n  x: 3\n", "t.yaml")
    assert data["this"] == {"x": 3, "y": 2}  # a merge key's value may be overridden


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 10_000, 200_000])
def test_deep_nesting_is_refused_at_once_with_the_file_and_line(depth: int) -> None:
    for text in ("a: " + "[" * depth + "]" * depth + "\n", "a: " + "{b: " * depth + "1" + "}" * depth + "\n"):
        started = time.monotonic()
        with pytest.raises(YamlProblem, match=rf"^deep.yaml: line 1: nested deeper than {MAX_DEPTH} levels$"):
            read_yaml(text, "deep.yaml")
        assert time.monotonic() - started < 5


def test_python_tags_and_syntax_errors_name_the_file() -> None:
    with pytest.raises(
        YamlProblem, match=r"t.yaml: line 1: not valid YAML: could not determine a constructor"
    ):
        read_yaml("a: !!python/object/apply:os.system ['true']\n", "t.yaml")
    with pytest.raises(YamlProblem, match=r"t.yaml: line 2: not valid YAML"):
        read_yaml("a: [1,\n", "t.yaml")


def test_an_oversized_file_is_refused_before_parsing() -> None:
    with pytest.raises(YamlProblem, match="larger than 4 MiB"):
        read_yaml("a: " + "x" * (5 << 20), "big.yaml")


def test_contracts_and_the_matters_catalogue_read_through_it(tmp_path: Path) -> None:
    with pytest.raises(ContractError, match=r"^c.yaml:3: key 'id' appears twice \(first at line 2\)$"):
        parse_contract("apiVersion: v3.0.2\nid: household\nid: marriage\n", source="c.yaml")
    path = tmp_path / "matters.yaml"
    path.write_text("matters: []\nbundles: []\nmatters: []\n", encoding="utf-8")
    with pytest.raises(ConfigurationError, match=r"line 3: cannot read the matters catalogue: key 'matters'"):
        load_matters(path)
    deep = tmp_path / "deep.yaml"
    deep.write_text(REGISTRATION.replace("table: household_member", "table: " + "[" * 5000 + "]" * 5000))
    with pytest.raises(ConfigurationError, match=r"deep.yaml: line 7: nested deeper than 64 levels"):
        from connectors.registration import load_registration

        load_registration(deep)


def test_a_billion_laughs_is_refused_at_once_and_small_aliases_still_read() -> None:
    text = (Path(__file__).parents[3] / "connectors/registrations/gongan-household.yaml").read_text("utf-8")
    laughs = ['  a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    laughs += [f"  a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 9)]
    bomb = text.replace("options:\n", "options:\n" + "\n".join(laughs) + "\n", 1)
    started = time.monotonic()
    with pytest.raises(ConfigurationError, match=r"^bomb.yaml: its anchors and aliases expand to more than"):
        parse_registration(bomb, "bomb.yaml")
    assert time.monotonic() - started < 2
    data, _ = read_yaml("\n".join(laughs[:3]) + "\n", "small.yaml")
    assert len(data["a2"]) == 9 and data["a2"][0] == data["a1"]


def test_a_key_twice_on_one_line_or_through_an_alias_is_refused() -> None:
    one_line = REGISTRATION.replace(
        "  table: household_member\n", "  {table: household_member, table: secret}\n"
    )
    with pytest.raises(
        YamlProblem, match=r"line 1: key 'table' appears twice \(first at line 1, column 11\)"
    ):
        read_yaml("options: {table: reviewed, table: secret_table}\n", "t.yaml")
    with pytest.raises(YamlProblem, match="appears twice"):
        read_yaml("k: &k table\nm:\n  *k : a\n  *k : b\n", "t.yaml")
    assert one_line != REGISTRATION


@pytest.mark.parametrize(
    ("text", "why"),
    [("schedule: 2026-13-01\n", "month must be in 1..12"), ("n: " + "9" * 5000 + "\n", "ValueError")],
)
def test_a_value_yaml_types_but_cannot_build_is_a_clear_error(text: str, why: str) -> None:
    with pytest.raises(YamlProblem, match=rf"^t.yaml: a value cannot be read \(.*{why}"):
        read_yaml(text, "t.yaml")
