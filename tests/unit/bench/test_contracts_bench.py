"""The contracts benchmark's pyarrow.compute baseline reaches the Validator's verdict."""

from __future__ import annotations

import datetime as dt

from bench.contracts import baseline, household_table
from contracts.checks import CheckContext, load_region_codes
from contracts.compiler import compile_contract
from contracts.model import contract_by_id
from contracts.validate import Validator
from onceonly.settings import Settings


def test_baseline_and_validator_agree_rule_by_rule() -> None:
    table = household_table(3000, seed=5)
    today = dt.date(2026, 11, 21)
    regions = frozenset(load_region_codes("120114"))
    compiled = compile_contract(contract_by_id(Settings().contracts_dir, "household"))
    v = Validator(compiled, CheckContext(today=today, region_codes=regions)).validate(
        table, connector="bench"
    )
    base = baseline(table, regions, today)
    assert base["quarantined"] == v.quarantined.num_rows > 0
    assert base["accepted"] == v.accepted.num_rows
    assert base["failed"] == {o.rule: o.failed for o in v.outcomes if o.failed}
