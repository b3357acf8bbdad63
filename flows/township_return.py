"""The township-return flow (数据回流): each township's extract, on demand or on schedule.

Example::

    from flows.township_return import township_return
    state = township_return(settings=Settings(), return_state=True)         # stale townships
    state = township_return(full=True, townships=["120114001000"], ...)     # a full snapshot

The daily flow writes the extracts of the townships its run changed at its end; this flow
writes them apart from it — the `township-return` deployment, daily after the daily run, and
when a township asks for a full snapshot (``full``: every township asked for, or all, gets one,
numbered after its last). What goes into an extract, and how it is signed, numbered and logged,
is ``sharing.extracts``. Artifacts: ``township-return`` (a table, one row per extract written:
township, number, full or incremental, rows, 新增/变更/撤销/暂扣/失效/换发/移出, files, manifest hash)
and ``township-return-report`` (the same in words).
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.states import Completed, State

from flows.redaction import (
    failed_state,
    install_prefect_scrubbing,
    markdown_artifact,
    scrubbed_errors,
    table_artifact,
)
from onceonly.files import restrict_new_files
from onceonly.settings import Settings


@task(name="write-township-extracts", cache_policy=NO_CACHE, persist_result=False)
@scrubbed_errors
def write_extracts(settings: Settings, full: bool, townships: list[str] | None) -> list[dict[str, Any]]:
    """The extracts written, one summary row each (no personal data: counts and hashes)."""
    from flows.pipeline import pipeline_for
    from sharing.extracts import extract_policy, refresh_extracts

    pipeline = pipeline_for(settings)
    policy = extract_policy(settings.contracts_dir, settings.matters_file, settings.extracts_in_clear)
    written = refresh_extracts(
        pipeline.catalog, settings.extracts_dir, pipeline.log, policy, full=full, townships=townships
    )
    return [extract.summary_row() for extract in written]


@flow(name="township-return", flow_run_name="township-return")
def township_return(
    full: bool = False, townships: list[str] | None = None, settings: Settings | None = None
) -> State:
    """Write the next extract of every stale township (or of ``townships``; ``full``: a snapshot)."""
    try:
        return _township_return(settings or Settings(), full, townships)
    except Exception as exc:
        return failed_state(exc)


def _township_return(settings: Settings, full: bool, townships: list[str] | None) -> State:
    install_prefect_scrubbing()
    restrict_new_files()
    rows = write_extracts(settings, full, townships)
    fulls = sum(1 for r in rows if r["类型"] == "全量")
    summary = (
        f"数据回流：写出 {len(rows)} 份（全量 {fulls}，增量 {len(rows) - fulls}），"
        f"共 {sum(int(r['行数']) for r in rows)} 行"
        if rows
        else "数据回流：没有镇街有新的变动，未写出回流"
    )
    get_run_logger().info("%s", summary)
    table_artifact(
        key="township-return",
        table=rows or [{"镇街": "（无）", "行数": 0}],
        description=f"{summary}。每行一份回流：编号、全量或增量、各类变动行数、文件与签名清单的 SHA-256。",
    )
    lines = ["# 数据回流", "", summary, ""]
    for r in rows:
        changes = "，".join(
            f"{k} {r[k]}" for k in ("新增", "变更", "撤销", "暂扣", "失效", "换发", "移出") if r.get(k)
        )
        lines.append(
            f"- {r['镇街']} 第 {r['编号']} 号{r['类型']}：{r['行数']} 行"
            + (f"（{changes}）" if changes else "")
            + f"，清单 {r['清单 SHA-256']}…"
        )
    lines += [
        "",
        f"核验：`onceonly verify-extract {settings.extracts_dir}/township=<镇街代码>/extract=<编号>`",
    ]
    markdown_artifact(key="township-return-report", markdown="\n".join(lines), description=summary)
    return Completed(message=summary, data=rows)


__all__ = ["township_return", "write_extracts"]
