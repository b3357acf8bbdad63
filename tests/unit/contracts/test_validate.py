from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyarrow as pa
import pytest

from contracts.checks import CheckContext, load_region_codes
from contracts.compiler import compile_contract
from contracts.identifiers import citizen_id_check_char
from contracts.model import load_contract
from contracts.validate import RULES_COLUMN, Validator
from onceonly.settings import Settings

HOUSEHOLD = compile_contract(load_contract(Path(Settings().contracts_dir) / "household.yaml"))
CONTEXT = CheckContext(today=dt.date(2026, 11, 21), region_codes=frozenset(load_region_codes("120114")))
VALID_ID = "11010519491231002X"
OTHER_VALID_ID = "12011419900307001" + citizen_id_check_char("12011419900307001")


def _row(**over: object) -> dict[str, object]:
    row: dict[str, object] = {
        "id": 1,
        "person_id": OTHER_VALID_ID,
        "name": "张三",
        "gender": "男",
        "ethnicity": "汉族",
        "birth_date": "1990-03-07",
        "household_no": "120114000001",
        "relation": "户主",
        "address": "天津市武清区杨村街道泉州路32号",
        "township_code": "120114001000",
        "registered_on": "2000-01-01",
        "updated_at": "2026-11-20 08:00:00",
    }
    row.update(over)
    return row


@pytest.fixture(scope="module")
def validator() -> Validator:
    return Validator(HOUSEHOLD, CONTEXT)


def test_identifier_fixture_is_valid() -> None:
    from contracts.identifiers import is_valid_citizen_id

    assert is_valid_citizen_id(VALID_ID) and is_valid_citizen_id(OTHER_VALID_ID)


def test_each_kind_of_bad_row_is_quarantined_with_its_rule(validator: Validator) -> None:
    rows = [
        _row(),
        _row(person_id="110105194912310021"),  # wrong check character
        _row(
            person_id="12011419800101001" + citizen_id_check_char("12011419800101001"), name=None
        ),  # missing required field
        _row(person_id=VALID_ID, township_code="120114999000"),  # unknown township
        _row(
            person_id="12011420000101001" + citizen_id_check_char("12011420000101001"),
            birth_date="2000-02-30",
        ),  # not a date
        _row(
            person_id="12011420000101001" + citizen_id_check_char("12011420000101001"),
            registered_on="2099-01-01",
        ),  # warning only
    ]
    v = validator.validate(pa.Table.from_pylist(rows), connector="test")
    rules = {(f.row, f.rule) for f in v.failures}
    assert (1, "person_id.gb11643_citizen_id") in rules
    assert (2, "name.required") in rules
    assert (3, "township_code.region_code") in rules
    assert (4, "birth_date.type") in rules
    assert (5, "registered_on.not_in_future") in rules
    # rows 4 and 5 share a person_id: both fail uniqueness as well
    assert (4, "person_id.unique") in rules and (5, "person_id.unique") in rules
    assert v.accepted.num_rows == 1
    assert v.pulled == 6 == v.accepted.num_rows + v.quarantined.num_rows
    assert v.warnings == 1
    assert v.quarantined.column(RULES_COLUMN).to_pylist()[0] == ["person_id.gb11643_citizen_id"]


def test_failing_personal_values_are_masked(validator: Validator) -> None:
    v = validator.validate(pa.Table.from_pylist([_row(person_id="110105194912310021")]), connector="test")
    failure = next(f for f in v.failures if f.rule == "person_id.gb11643_citizen_id")
    assert failure.value_masked == "110105********0021"
    outcome = next(o for o in v.outcomes if o.rule == "person_id.gb11643_citizen_id")
    assert outcome.examples == ("110105********0021",)
    assert outcome.expectation_type == "expect_column_values_to_pass_gb11643_citizen_id"


def test_every_rule_is_reported_by_great_expectations(validator: Validator) -> None:
    v = validator.validate(pa.Table.from_pylist([_row()]), connector="test")
    assert [o.rule for o in v.outcomes] == [r.name for r in HOUSEHOLD.rules]
    assert v.gx_success
    assert v.accepted.schema == HOUSEHOLD.arrow_schema


def test_suite_has_one_expectation_per_rule() -> None:
    suite = HOUSEHOLD.build_suite()
    assert len(suite.expectations) == len(HOUSEHOLD.rules)
    assert {e.meta["rule"] for e in suite.expectations} == {r.name for r in HOUSEHOLD.rules}


def _verdict(v: object) -> tuple[object, ...]:
    from contracts.validate import Validation

    assert isinstance(v, Validation)
    return (v.accepted, v.quarantined, v.failures, v.outcomes, v.gx_success)


def test_configurations_built_once_changes_no_verdict_and_is_undone(
    validator: Validator, monkeypatch: pytest.MonkeyPatch
) -> None:
    import contextlib

    from great_expectations.expectations.expectation import Expectation

    import contracts.expectations as expectations

    original = Expectation.__dict__["configuration"]
    batches = [
        pa.Table.from_pylist([_row(id=1), _row(id=2, person_id="110105194912310021", gender="X")]),
        pa.Table.from_pylist([_row(id=3, person_id=VALID_ID, township_code="120114999000"), _row(id=4)]),
        pa.Table.from_pylist([_row(id=5, name=None, relation="表哥"), _row(id=6, birth_date="2999-01-01")]),
    ]
    memoised = [_verdict(validator.validate(b, connector="t")) for b in batches]
    assert Expectation.__dict__["configuration"] is original  # GX is left as it was
    monkeypatch.setattr(expectations, "_configurations_built_once", contextlib.nullcontext)
    plain = [_verdict(validator.validate(b, connector="t")) for b in batches]
    assert memoised == plain
    assert [m[1].num_rows for m in memoised] == [1, 1, 2]  # type: ignore[attr-defined]


def test_configurations_built_once_is_per_thread_and_per_run() -> None:
    import threading

    import great_expectations.expectations as gxe

    from contracts.expectations import _configurations_built_once

    expectation = gxe.ExpectColumnValuesToNotBeNull(column="a")
    seen: list[object] = []
    with _configurations_built_once():
        first = expectation.configuration
        assert expectation.configuration is first  # built once on the validating thread
        other = threading.Thread(target=lambda: seen.extend([expectation.configuration] * 1))
        other.start()
        other.join()
    assert seen and seen[0] is not first and seen[0] == first  # other threads: GX unchanged
    assert expectation.configuration is not expectation.configuration  # after the run: unchanged


def test_metric_ids_memoised_gives_gx_ids_and_is_undone() -> None:
    from great_expectations.core.batch_spec import BatchSpec
    from great_expectations.core.id_dict import IDDict

    from contracts.expectations import _metric_ids_memoised

    original = IDDict.__dict__["to_id"]
    dicts = [
        IDDict(column="a", batch_id="b", row_condition=None, condition_parser=None),
        IDDict(column="a", batch_id="c", row_condition=None, condition_parser=None),
        IDDict(column="a", mostly=1, include_nested=True),
        IDDict(value_set=[True], column="a"),  # a list: computed by GX, not memoised
        IDDict(only="one"),
        BatchSpec(batch_data="x", path="p"),  # its own ignored keys
    ]
    expected = [d.to_id() for d in dicts] + [d.to_id(id_keys=["column"]) for d in dicts[:3]]
    with _metric_ids_memoised():
        twice = [[d.to_id() for d in dicts] + [d.to_id(id_keys=["column"]) for d in dicts[:3]] for _ in "12"]
    assert twice == [expected, expected]
    assert len(set(expected[:4])) == 4  # different content, different ids
    assert IDDict.__dict__["to_id"] is original


def test_a_suite_run_builds_configurations_and_metric_ids_far_fewer_times(
    validator: Validator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fixed GX cost per batch: without the memos GX builds ~3,700 configurations and
    ~3,500 metric ids for this 31-rule suite; with them, about one per instance / distinct id."""
    from great_expectations.core.id_dict import IDDict
    from great_expectations.expectations.expectation import Expectation

    counts = {"configuration": 0, "to_id": 0}
    build, to_id = Expectation.__dict__["configuration"].fget, IDDict.__dict__["to_id"]

    def counted_build(self: Expectation) -> object:
        counts["configuration"] += 1
        return build(self)

    def counted_to_id(self: IDDict, *args: object) -> object:
        counts["to_id"] += 1
        return to_id(self, *args)

    monkeypatch.setattr(Expectation, "configuration", property(counted_build))
    monkeypatch.setattr(IDDict, "to_id", counted_to_id)
    validator.validate(pa.Table.from_pylist([_row(id=1), _row(id=2, gender="X")]), connector="t")
    assert 0 < counts["configuration"] < 1000
    assert 0 < counts["to_id"] < 1000
