"""The bottlenecks flow (办事堵点): which departments' bad records stopped citizens, as work orders.

Example::

    from flows.bottlenecks import bottlenecks
    state = bottlenecks(settings=Settings(), return_state=True)   # `onceonly bottlenecks run`; the
                                                                   # `bottlenecks` deployment, 06:00

Two tasks over ``sharing.bottlenecks``:

- **update-work-orders** — in one catalog transaction: a work order opened per source record in
  quarantine that stopped citizens at a counter (skip-check answers 数据待部门更正), the open ones
  updated, those whose corrected record has landed since (its quarantine entries resolved)
  closed, and the run's per-department counts recorded for the trend;
- **write-work-orders** — per department a CSV and an XLSX of its open work orders and those this
  run closed, under ``<home>/workorders/<department>/<day>/`` (600 in 700 folders).

Artifacts (Chinese): ``bottlenecks`` (a table per department: open, new, closed, citizens
stopped), ``bottleneck-work-orders`` (the work orders, keys masked), ``bottleneck-trend`` (the
recent runs per department) and ``bottleneck-report`` (markdown: all of it in words). Nothing
personal reaches Prefect: citizens are counted from commitments, keys are masked as the data
contracts classify them, and every artifact passes the scrubber.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.states import Completed, State

from flows.redaction import (
    failed_state,
    install_prefect_scrubbing,
    markdown_artifact,
    scrub,
    scrubbed_errors,
    table_artifact,
)
from onceonly.settings import Settings

if TYPE_CHECKING:
    from sharing.bottlenecks import RunResult, WrittenFiles

SHANGHAI = "Asia/Shanghai"
ARTIFACT_ORDERS = 200  # work orders listed in the table artifact at most (the files have all)


def today_in_shanghai() -> dt.date:
    from zoneinfo import ZoneInfo

    return dt.datetime.now(ZoneInfo(SHANGHAI)).date()


def _matter_names(settings: Settings) -> dict[str, str]:
    from contracts.model import certificate_datasets
    from sharing.matters import load_matters

    try:
        catalogue = load_matters(
            settings.matters_file, known_types=certificate_datasets(settings.contracts_dir)
        )
    except Exception:  # names are a courtesy: the codes still say where citizens were stopped
        return {}
    return {m.code: m.name for m in catalogue.matters} | {b.code: b.name for b in catalogue.bundles}


@task(name="update-work-orders", cache_policy=NO_CACHE, persist_result=False)
@scrubbed_errors
def update_work_orders(settings: Settings, run_id: str) -> RunResult:
    """Open, update and close the work orders in one transaction; the run's counts recorded."""
    from catalog import Catalog
    from sharing.bottlenecks import run_bottlenecks

    catalog = Catalog.connect(settings.catalog_url, create=False)  # no catalog: nothing ran yet
    try:
        with catalog.begin() as conn:
            result = run_bottlenecks(
                conn,
                contracts_dir=settings.contracts_dir,
                run_id=run_id,
                min_citizens=settings.bottleneck_min_citizens,
            )
    finally:
        catalog.dispose()
    t = result.totals
    get_run_logger().info(
        "%d work order(s) open (%d new), %d closed, %d citizen(s) stopped, %d department(s)",
        t.open,
        t.new,
        t.closed,
        t.citizens,
        len(result.departments),
    )
    return result


@task(name="write-work-orders", cache_policy=NO_CACHE, persist_result=False)
@scrubbed_errors
def write_work_orders(
    settings: Settings, result: RunResult, day: dt.date, matter_names: dict[str, str]
) -> list[WrittenFiles]:
    """Per department the CSV and XLSX of its work orders (open, and closed by this run)."""
    from catalog import Catalog
    from sharing.bottlenecks import workorders_dir, write_work_order_files

    catalog = Catalog.connect(settings.catalog_url, create=False)
    try:
        with catalog.read() as conn:
            written = write_work_order_files(
                conn, workorders_dir(settings.home), result, day=day, matter_names=matter_names
            )
    finally:
        catalog.dispose()
    get_run_logger().info(
        "wrote the work orders of %d department(s) under %s", len(written), workorders_dir(settings.home)
    )
    return written


def _run_id() -> str:
    import uuid

    from prefect.runtime import flow_run

    return str(flow_run.id or uuid.uuid4())


@flow(name="bottlenecks", flow_run_name="bottlenecks")
def bottlenecks(settings: Settings | None = None) -> State:
    """Update the work orders from quarantine and the counter's answers; see the module docstring."""
    try:
        return _bottlenecks(settings or Settings())
    except Exception as exc:
        return failed_state(exc)


def _bottlenecks(settings: Settings) -> State:
    from catalog import Catalog
    from sharing.bottlenecks import OPEN, describe_materials, list_orders, report_markdown, trend, trend_rows

    install_prefect_scrubbing()
    day = today_in_shanghai()
    names = _matter_names(settings)
    result = update_work_orders(settings, _run_id())
    written = write_work_orders(settings, result, day, names)
    catalog = Catalog.connect(settings.catalog_url, create=False)
    try:
        with catalog.read() as conn:
            orders = list_orders(conn, status=OPEN, closed_run=result.run_id)
            runs = trend(conn, runs=settings.bottleneck_trend_runs)
    finally:
        catalog.dispose()
    files = {w.department: w for w in written}
    table_artifact(
        key="bottlenecks",
        table=[
            {
                "部门": d,
                "待更正工单": c.open,
                "本次新增": c.new,
                "本次关闭": c.closed,
                "受阻群众（人）": c.citizens,
                "工单文件": str(files[d].xlsx) if d in files else "",
            }
            for d, c in result.departments.items()
        ]
        or [{"部门": "（无）", "待更正工单": 0}],
        description=f"办事堵点 {day.isoformat()}：各部门待更正、新增、关闭的工单与受阻群众人数。",
    )
    table_artifact(
        key="bottleneck-work-orders",
        table=[
            {
                "工单号": o.order_id,
                "状态": o.status_name,
                "部门": o.department,
                "数据集": o.dataset,
                "记录主键（脱敏）": o.key_shown or "-",
                "未通过的校验规则": "、".join(str(r["rule"]) for r in o.rules),
                "受阻群众（人）": o.citizens,
                "受阻次数": o.stops,
                "受阻事项与材料": describe_materials(o.materials, names),
            }
            for o in orders[:ARTIFACT_ORDERS]
        ]
        or [{"工单号": "（无）"}],
        description="待更正的工单与本次关闭的工单（记录主键按数据契约分级脱敏）。",
    )
    table_artifact(
        key="bottleneck-trend",
        table=trend_rows(runs) or [{"运行时间": "（无）"}],
        description=f"最近 {len(runs)} 次运行各部门的待更正、新增、关闭工单与受阻群众人数。",
    )
    t = result.totals
    summary = (
        f"{t.open} work order(s) open ({t.new} new), {t.closed} closed, {t.citizens} citizen(s) stopped, "
        f"{len(result.departments)} department(s)"
    )
    markdown_artifact(
        key="bottleneck-report", markdown=report_markdown(result, orders, runs, names), description=summary
    )
    return Completed(message=scrub(summary))


__all__ = ["bottlenecks", "today_in_shanghai"]
