"""The contracts benchmark's pyarrow.compute baseline reaches the Validator's verdict."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest

from bench.contracts import baseline, household_table
from contracts.checks import CheckContext, load_region_codes
from contracts.compiler import compile_contract
from contracts.model import contract_by_id
from contracts.validate import Validator
from onceonly.settings import Settings


def test_baseline_and_validator_agree_rule_by_rule() -> None:
    table = household_table(3000, seed=5)
    # Warnings too: a relation outside GB/T 4761 and more than 1 % of ethnicities missing.
    relation = table.column("relation").to_pylist()
    ethnicity = table.column("ethnicity").to_pylist()
    for i in range(0, 3000, 40):
        relation[i], ethnicity[i + 1] = "表哥", None
    table = table.set_column(table.schema.get_field_index("relation"), "relation", pa.array(relation))
    table = table.set_column(table.schema.get_field_index("ethnicity"), "ethnicity", pa.array(ethnicity))
    today = dt.date(2026, 11, 21)
    regions = frozenset(load_region_codes("120114"))
    compiled = compile_contract(contract_by_id(Settings().contracts_dir, "household"))
    v = Validator(compiled, CheckContext(today=today, region_codes=regions)).validate(
        table, connector="bench"
    )
    base = baseline(table, regions, today)
    assert base["quarantined"] == v.quarantined.num_rows > 0
    assert base["accepted"] == v.accepted.num_rows
    failed = {o.rule: o.failed for o in v.outcomes if o.failed}
    assert failed["relation.gbt4761"] == 75 and failed["ethnicity.nullValues"] >= 75
    assert base["failed"] == failed


def test_run_reports_the_whole_table_and_the_flows_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    from bench import contracts

    monkeypatch.setenv("ONCEONLY_BATCH_SIZE", "1000")
    monkeypatch.setattr(contracts, "COMPARED_BATCH_SIZES", (1500, 5000))
    figures = contracts.run(3000)
    assert figures["rows"] == 3000 and figures["quarantined"] > 0
    flow = figures["flow_batches"]
    assert (flow["batch_size"], flow["batches"]) == (1000, 3)
    assert [b["batch_size"] for b in figures["batch_sizes"]] == [1000, 1500]  # 5000 >= rows: left out
    for f in (figures["whole_table"], flow):
        assert f["onceonly_over_baseline"] == pytest.approx(f["onceonly_s"] / f["baseline_s"], rel=0.2)
        assert f["onceonly_cpu_s"] > 0 and f["baseline_cpu_s"] > 0
