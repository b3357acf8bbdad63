"""``onceonly bottlenecks``: 办事堵点 — which departments' bad records stopped citizens, as work orders.

Example::

    onceonly bottlenecks run                          # the `bottlenecks` flow, once, in this process
    onceonly bottlenecks list                         # every work order, most citizens first
    onceonly bottlenecks list --department 公安 --open
    onceonly bottlenecks show 12

``run`` runs the ``bottlenecks`` flow (flows/bottlenecks.py) on the Prefect server in
PREFECT_API_URL or a temporary one: work orders opened for records that stopped citizens at a
counter (数据待部门更正), closed for records corrected since, per department a CSV and an XLSX
under ``<home>/workorders/``. ``list`` and ``show`` read the catalog only; record keys are
masked as the data contract classifies them, and no citizen is named anywhere.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

app = typer.Typer(
    no_args_is_help=True, help="办事堵点: work orders for the records that stopped citizens at the counter."
)


def _catalog() -> Any:
    from catalog import Catalog
    from onceonly.settings import Settings

    return Catalog.connect(Settings().catalog_url, create=False)


def _matter_names() -> dict[str, str]:
    from contracts.model import certificate_datasets
    from onceonly.errors import ConfigurationError
    from onceonly.settings import Settings
    from sharing.matters import load_matters

    settings = Settings()
    try:
        catalogue = load_matters(
            settings.matters_file, known_types=certificate_datasets(settings.contracts_dir)
        )
    except ConfigurationError:  # names are a courtesy: codes still say where
        return {}
    return {m.code: m.name for m in catalogue.matters} | {b.code: b.name for b in catalogue.bundles}


@app.command("run")
def run_command() -> None:
    """Open work orders for records that stopped citizens, close corrected ones, write the files."""
    from flows.bottlenecks import bottlenecks
    from flows.server import temporary_server
    from onceonly.privacy import scrub_text
    from onceonly.settings import Settings
    from sharing.bottlenecks import workorders_dir

    settings = Settings()
    with temporary_server():
        state = bottlenecks(settings=settings, return_state=True)
    ok = state.is_completed()
    typer.secho(scrub_text(state.message or state.name or ""), fg=None if ok else "red", err=not ok)
    if ok:
        typer.echo(f"work order files under {workorders_dir(settings.home)}")
    raise typer.Exit(0 if ok else 1)


@app.command("list")
def list_command(
    department: Annotated[
        str | None, typer.Option(help="A department (or part of its name, or a connector name).")
    ] = None,
    only_open: Annotated[bool, typer.Option("--open", help="Only open work orders (待更正).")] = False,
    only_closed: Annotated[bool, typer.Option("--closed", help="Only closed ones (已更正).")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="JSON output.")] = False,
) -> None:
    """Work orders per department: record (masked), rules failed, citizens stopped, state."""
    from sharing.bottlenecks import CLOSED, OPEN, list_orders

    if only_open and only_closed:
        raise typer.BadParameter("--open and --closed exclude each other (neither: both)")
    status = OPEN if only_open else CLOSED if only_closed else None
    catalog = _catalog()
    try:
        with catalog.read() as conn:
            orders = list_orders(conn, department=department, status=status)
    finally:
        catalog.dispose()
    if as_json:
        typer.echo(json.dumps([o.to_json() for o in orders], ensure_ascii=False, indent=2))
        return
    if not orders:
        which = {None: "", OPEN: "open ", CLOSED: "closed "}[status]
        typer.echo(f"no {which}work orders" + (f" for {department}" if department else ""))
        return
    from cli.console import console
    from cli.console import table as new_table

    table = new_table(
        "id", "状态", "部门", "数据集", "记录主键", "规则", "受阻群众", "受阻次数", right=frozenset({"id"})
    )
    for o in orders:
        table.add_row(
            str(o.order_id),
            o.status_name,
            o.department,
            o.dataset,
            o.key_shown or "-",
            "、".join(str(r["rule"]) for r in o.rules),
            str(o.citizens),
            str(o.stops),
        )
    console().print(table)


@app.command("show")
def show_command(order_id: int) -> None:
    """One work order: department, record (masked), rules and values, where citizens were stopped."""
    from onceonly.privacy import scrub_text
    from sharing.bottlenecks import describe_materials, get_order

    catalog = _catalog()
    try:
        with catalog.read() as conn:
            o = get_order(conn, order_id)
    finally:
        catalog.dispose()
    fields = [
        ("工单号", str(o.order_id)),
        ("状态", o.status_name),
        ("部门", o.department),
        ("数据集", f"{o.dataset}（连接器 {o.connector}）" + ("，整批被拒" if o.batch_refused else "")),
        ("记录主键", o.key_shown or "-"),
        ("受阻群众", f"{o.citizens} 人，{o.stops} 次"),
        ("受阻事项与材料", describe_materials(o.materials, _matter_names()) or "-"),
        ("首次发现", o.first_detected_at.isoformat(timespec="seconds")),
        ("工单创建", o.opened_at.isoformat(timespec="seconds")),
    ]
    if o.closed_at is not None:
        fields.append(("关闭时间", o.closed_at.isoformat(timespec="seconds")))
        fields.append(("更正批次", o.closed_by_batch or "-"))
        fields.append(("更正后证照", o.closed_by_cert or "-"))
    for label, value in fields:
        typer.echo(f"{label}：{value}")
    typer.echo("未通过的校验规则：")
    for r in o.rules:
        value = f" 值 {r['value']}" if r.get("value") is not None else ""
        typer.echo(scrub_text(f"  - {r['rule']}（{r.get('column') or '-'}，{r['contract']}）{value}"))


def counter_visits_for_demo(settings: Any, *, citizens: int = 12) -> int:
    """For ``onceonly demo``: a township counter asks about up to ``citizens`` citizens whose
    household or marriage record sits in quarantine, as a clerk would (``skip-check
    --record-use``), so the bottleneck loop has someone stopped to show. Returns the materials
    answered 数据待部门更正."""
    from sqlalchemy import and_, select

    from catalog import Catalog, quarantine
    from contracts.checks import load_region_codes
    from contracts.identifiers import is_valid_citizen_id
    from contracts.model import certificate_datasets
    from evidence.keys import log_verifiers, open_key_store
    from evidence.log import TransparencyLog
    from evidence.merkle import tree_hash
    from sharing.matters import load_matters
    from sharing.skipcheck import NEEDS_CORRECTION, skip_check

    issued_by = certificate_datasets(settings.contracts_dir)
    catalogue = load_matters(settings.matters_file, known_types=issued_by)
    matter_for: dict[str, str] = {}  # dataset → the first person's matter asking for what it issues
    for matter in catalogue.matters:
        for material in matter.materials if matter.subject == "person" else ():
            for code in material.certificate_types if material.holder == "applicant" else ():
                if code in issued_by:
                    matter_for.setdefault(issued_by[code], matter.code)
    township = next(iter(load_region_codes(settings.district_code)))
    q = quarantine.c
    catalog = Catalog.connect(settings.catalog_url, create=False)
    try:
        with catalog.read() as conn:
            rows = conn.execute(
                select(q.dataset, q.subject_id)
                .where(and_(q.resolved_at.is_(None), q.severity == "error", q.dataset.in_(list(matter_for))))
                .order_by(q.id)
            ).all()
        picked: dict[str, str] = {}
        for row in rows:
            valid = [s for s in str(row.subject_id or "").split() if is_valid_citizen_id(s)]
            if valid and valid[0] not in picked:
                picked[valid[0]] = row.dataset
            if len(picked) >= citizens:
                break
        verifiers = log_verifiers(settings)
        key = open_key_store(settings).load(settings.log_origin)
        log = TransparencyLog(key, settings.log_origin, hasher=tree_hash(settings.log_hash))
        stopped = 0
        for subject, dataset in picked.items():
            with catalog.begin() as conn:
                answer = skip_check(
                    conn,
                    catalogue.asked(matter_for[dataset]),
                    subject,
                    issued_by,
                    log=log,
                    township=township,
                    district=settings.district_code,
                    verifiers=verifiers,
                    relatives=catalogue.relatives,
                    purpose="演示：窗口核验",
                )
            stopped += sum(m.verdict == NEEDS_CORRECTION for m in answer.materials)
    finally:
        catalog.dispose()
    return stopped


__all__ = ["app", "counter_visits_for_demo"]
