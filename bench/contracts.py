"""Contract validation of household rows: our Validator against the same checks in pyarrow.compute.

Baseline: the household contract's 31 rules written directly with ``pyarrow.compute`` (and
NumPy for nothing): types, not-null, uniqueness, lengths, the enums, the regex, a null share, GB 11643 (shape,
birth date, MOD 11-2 check character), the region list, not-in-future; the rows failing an
``error`` rule are split off, the rest cast to the contract's types, and the failing values of
each rule taken out for the report. No Great Expectations, no masking, no catalog.

OnceOnly: ``Validator.validate`` — conform to the contract's Arrow schema, domain checks into
check columns, the Great Expectations suite over them, failures (masked), accepted and
quarantined tables, the books balanced. Both must reach the same verdict (checked).

Measured on the whole table at once (the verdict's floor) and in batches: the flow's
``ONCEONLY_BATCH_SIZE`` (what a run does) and, for comparison, 10,000 / 50,000 / 100,000 rows.
Each Great Expectations run has a fixed cost (building its metric graph, about 0.1 s of CPU for
this 31-rule suite) that the pyarrow.compute baseline does not pay, so the ratio depends on the
batch size. Times are wall clock and process CPU (the CPU figure is steadier on a shared
machine); plus the cost of building one Data Docs page.
"""

from __future__ import annotations

import datetime as dt
import tempfile
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from contracts.identifiers import CITIZEN_ID_WEIGHTS

TZ = "Asia/Shanghai"
_CHECK_CHARS = "10X98765432"
# GB/T 4761 家庭关系 names the household contract accepts without a warning.
GBT4761_RELATIONS = [
    *("户主", "配偶", "子", "女", "儿媳", "女婿", "孙子", "孙女", "外孙子", "外孙女"),
    *("父亲", "母亲", "祖父", "祖母", "兄", "弟", "姐", "妹", "其他"),
]


def household_table(rows: int, seed: int = 1) -> pa.Table:
    """``rows`` generated household rows (about 1 % bad), typed as the ``sql`` connector yields them."""
    from departments.generate import BASE_DATE, _rngs
    from departments.household import HOUSEHOLD_COLUMNS, household_change_days, household_rows
    from departments.population import bad_rows_per_kind, synthesize_population

    rng_pop, rng_h, *_ = _rngs(seed)
    people = synthesize_population(rng_pop, rows - bad_rows_per_kind(rows), taken=set())
    changes, together = household_change_days(rng_h, people, BASE_DATE - dt.timedelta(days=1))
    batch = household_rows(rng_h, people, changes, together, rows=rows, first_id=1)
    columns = list(zip(*batch.rows, strict=True))
    return pa.table({name: pa.array(values) for name, values in zip(HOUSEHOLD_COLUMNS, columns, strict=True)})


def _citizen_id_ok(ids: pa.Array, today: dt.date) -> pa.Array:
    upper = pc.utf8_upper(ids)
    shaped = pc.match_substring_regex(upper, r"^\d{17}[\dX]$")
    safe = pc.if_else(shaped, upper, pa.scalar("000000190001010000"))
    total = None
    for i, weight in enumerate(CITIZEN_ID_WEIGHTS):
        digit = pc.cast(pc.utf8_slice_codeunits(safe, i, i + 1), pa.int64())
        term = pc.multiply(digit, weight)
        total = term if total is None else pc.add(total, term)
    expected = pc.take(pa.array(list(_CHECK_CHARS)), pc.remainder(total, 11))
    check_ok = pc.equal(expected, pc.utf8_slice_codeunits(safe, 17, 18))
    birth_text = pc.utf8_slice_codeunits(safe, 6, 14)
    birth = pc.strptime(birth_text, format="%Y%m%d", unit="s", error_is_null=True)
    real = pc.equal(pc.strftime(birth, format="%Y%m%d"), birth_text)  # 19900230 is not a date
    born = pc.and_(real, pc.less_equal(birth.cast(pa.date32()), pa.scalar(today, pa.date32())))
    return pc.fill_null(pc.and_(pc.and_(shaped, check_ok), born), False)


def baseline(table: pa.Table, regions: frozenset[str], today: dt.date) -> dict[str, Any]:
    col = table.column
    ids = col("person_id").combine_chunks()
    counts = pc.value_counts(ids)
    duplicated = counts.field("values").filter(pc.greater(counts.field("counts"), 1))
    today_d = pa.scalar(today, pa.date32())
    not_null = {c: pc.is_valid(col(c)) for c in table.column_names}
    name_len = pc.utf8_length(col("name"))
    township = col("township_code")
    passed = {
        "person_id.required": not_null["person_id"],
        "person_id.unique": pc.invert(pc.is_in(ids, duplicated)),
        "person_id.length": pc.equal(pc.utf8_length(ids), 18),
        "person_id.gb11643_citizen_id": _citizen_id_ok(ids, today),
        "name.required": not_null["name"],
        "name.length": pc.and_(pc.greater_equal(name_len, 1), pc.less_equal(name_len, 50)),
        "gender.required": not_null["gender"],
        "gender.enum": pc.is_in(col("gender"), pa.array(["男", "女"])),
        "birth_date.required": not_null["birth_date"],
        "birth_date.not_in_future": pc.less_equal(col("birth_date"), today_d),
        "household_no.required": not_null["household_no"],
        "relation.required": not_null["relation"],
        "address.required": not_null["address"],
        "township_code.required": not_null["township_code"],
        "township_code.pattern": pc.match_substring_regex(township, r"^\d{12}$"),
        "township_code.region_code": pc.is_in(township, pa.array(sorted(regions))),
        "updated_at.required": not_null["updated_at"],
    }
    ethnicity_nulls = pc.is_null(col("ethnicity"))
    warnings = {
        # nullValues mustBeLessOrEqualTo 1 percent: above it, the rows missing it are blamed.
        "ethnicity.nullValues": pc.invert(ethnicity_nulls)
        if 100 * pc.sum(ethnicity_nulls.cast(pa.int64())).as_py() / max(table.num_rows, 1) > 1
        else pa.nulls(table.num_rows, pa.bool_()),
        "relation.gbt4761": pc.is_in(col("relation"), pa.array(GBT4761_RELATIONS)),
        "registered_on.not_in_future": pc.less_equal(col("registered_on"), today_d),
    }
    # Like GX: a null is "unexpected" only for not-null rules; other rules skip nulls.
    failing = {name: pc.invert(pc.fill_null(ok, True)) for name, ok in {**passed, **warnings}.items()}
    bad = None
    for name in passed:
        bad = failing[name] if bad is None else pc.or_(bad, failing[name])
    accepted = table.filter(pc.invert(bad))
    accepted = accepted.set_column(
        accepted.schema.get_field_index("updated_at"),
        "updated_at",
        pc.assume_timezone(accepted.column("updated_at"), TZ),
    )
    quarantined = table.filter(bad)
    quarantined = pa.table({n: quarantined.column(n).cast(pa.string()) for n in quarantined.column_names})
    failures: dict[str, list[Any]] = {}
    for name, mask in failing.items():
        rows = pc.indices_nonzero(mask)
        column = name.split(".")[0]
        failures[name] = list(zip(rows.to_pylist(), table.column(column).take(rows).to_pylist(), strict=True))
    return {
        "accepted": accepted.num_rows,
        "quarantined": quarantined.num_rows,
        "failed": {n: len(v) for n, v in failures.items() if v},
    }


def _ours(validator: Any, table: pa.Table) -> dict[str, Any]:
    v = validator.validate(table, connector="bench")
    return {
        "accepted": v.accepted.num_rows,
        "quarantined": v.quarantined.num_rows,
        "failed": {o.rule: o.failed for o in v.outcomes if o.failed},
        "outcomes": v.outcomes,
    }


COMPARED_BATCH_SIZES = (10_000, 50_000, 100_000)


def _timed(fn: Any, *args: Any) -> tuple[float, Any]:
    t = time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - t, out


def _clocked(fn: Any, *args: Any) -> tuple[float, float, Any]:
    """Wall seconds, process CPU seconds, and the result."""
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn(*args)
    return time.perf_counter() - wall, time.process_time() - cpu, out


def _versus(base: tuple[float, float, Any], ours: tuple[float, float, Any]) -> dict[str, float]:
    return {
        "baseline_s": round(base[0], 3),
        "onceonly_s": round(ours[0], 3),
        "onceonly_over_baseline": round(ours[0] / base[0], 2),
        "baseline_cpu_s": round(base[1], 3),
        "onceonly_cpu_s": round(ours[1], 3),
        "onceonly_over_baseline_cpu": round(ours[1] / base[1], 2),
    }


def _in_batches(fn: Any, table: pa.Table, size: int) -> list[Any]:
    return [fn(table.slice(i, size)) for i in range(0, table.num_rows, size)]


def run(rows: int | None = None) -> dict[str, Any]:
    from contracts.checks import CheckContext, load_region_codes
    from contracts.compiler import compile_contract
    from contracts.datadocs import DataDocs
    from contracts.model import contract_by_id
    from contracts.validate import RuleTally, Validator
    from onceonly.settings import Settings

    rows = rows or 1_000_000
    settings = Settings()
    print(f"generating {rows} household rows ...", flush=True)
    table = household_table(rows)
    today = dt.date.today()
    regions = frozenset(load_region_codes(settings.district_code))
    compiled = compile_contract(contract_by_id(settings.contracts_dir, "household"))
    validator = Validator(compiled, CheckContext(today=today, region_codes=regions))
    validator.validate(table.slice(0, 100), connector="warm-up")  # GX import and context: once per process

    whole_base = _clocked(baseline, table, regions, today)
    whole_ours = _clocked(_ours, validator, table)
    base, ours = whole_base[2], whole_ours[2]
    verdict = {k: ours[k] for k in ("accepted", "quarantined", "failed")}
    if verdict != base:
        raise AssertionError(f"the baseline and the Validator disagree: {base} != {verdict}")

    flow_size = settings.batch_size
    sizes = sorted({flow_size, *(n for n in COMPARED_BATCH_SIZES if n < rows)})
    batched: list[dict[str, Any]] = []
    for size in sizes:
        b = _clocked(_in_batches, lambda t: baseline(t, regions, today), table, size)
        o = _clocked(_in_batches, lambda t: _ours(validator, t), table, size)
        batched.append({"batch_size": size, "batches": -(-rows // size), **_versus(b, o)})

    tallies: dict[str, RuleTally] = {}
    for o in ours["outcomes"]:
        tallies.setdefault(o.rule, RuleTally(o.rule, o.severity)).add(o)
    with tempfile.TemporaryDirectory() as tmp:
        docs = DataDocs(Path(tmp) / "datadocs")
        docs.publish(compiled, tallies, run_name="bench-warm-up", batch="bench")  # GX context
        docs_s, _ = _timed(lambda: docs.publish(compiled, tallies, run_name="bench", batch="bench"))

    whole = _versus(whole_base, whole_ours)
    flow = next(b for b in batched if b["batch_size"] == flow_size)
    figures = {
        "rows": rows,
        "quarantined": base["quarantined"],
        "whole_table": whole,
        "flow_batches": flow,
        "batch_sizes": batched,
        "datadocs_page_s": round(docs_s, 3),
        "goal": "onceonly_over_baseline <= 3",
    }
    lines = [
        f"{rows} household rows, 31 rules: pyarrow.compute baseline, OnceOnly Validator (GX 1.x), "
        "and OnceOnly / baseline, wall (CPU):",
        f"  {'whole table':<22} baseline {whole['baseline_s']:7.2f} s, "
        f"OnceOnly {whole['onceonly_s']:7.2f} s "
        f"= {whole['onceonly_over_baseline']:5.2f}x ({whole['onceonly_over_baseline_cpu']:.2f}x)",
    ]
    for b in batched:
        label = f"batches of {b['batch_size']}" + (" *" if b["batch_size"] == flow_size else "")
        lines.append(
            f"  {label:<22} baseline {b['baseline_s']:7.2f} s, OnceOnly {b['onceonly_s']:7.2f} s "
            f"= {b['onceonly_over_baseline']:5.2f}x ({b['onceonly_over_baseline_cpu']:.2f}x)"
        )
    lines.append(f"  * the flow's batch size (ONCEONLY_BATCH_SIZE={flow_size}); goal <= 3x")
    lines.append(f"one Data Docs page (with index): {docs_s:.3f} s")
    print("\n".join(lines), flush=True)
    return figures
