"""The benefits flow (免申即享): load the rules → evaluate them over shared data → record decisions.

Example::

    from flows.benefits import benefits
    state = benefits(settings=Settings(), return_state=True)        # `onceonly decisions run`
    state = benefits(day="2026-12-03", return_state=True)           # the deployment `benefits`,
                                                                    # daily 03:00 Asia/Shanghai

Three tasks over ``sharing.benefit_rules`` and ``sharing.benefit_decisions``:

- **load-rules** — every rule file of ``ONCEONLY_BENEFIT_RULES_DIR``, validated like a
  contract (a bad file fails the run naming its file and line);
- **evaluate-rules** — per rule, the subjects qualifying on the day against the grants in
  force: new grants, and reversals where a fact changed;
- **record-decisions** — each decision logged (kind ``benefit-decision``, the subject as a
  salted commitment) and kept, one transaction per rule; nothing when nothing changed. A rule
  another run decided meanwhile is evaluated again and recorded (``DecisionsConflict``); the
  task retries on a TransientError.

Artifacts: ``benefit-decisions`` (a table: the run's decisions per rule, subjects masked) and
``benefit-decisions-report`` (markdown, in Chinese). The tasks carrying subjects return them to
this process only (``persist_result=False``); nothing personal reaches Prefect.
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
    from sharing.benefit_decisions import Evaluation, Recorded
    from sharing.benefit_rules import Rule

TABLE_ROWS = 1000  # rows of the decisions table artifact; the report counts them all


@task(name="load-rules", cache_policy=NO_CACHE, persist_result=False)
@scrubbed_errors
def load_rules_task(settings: Settings) -> tuple[Rule, ...]:
    from sharing.benefit_rules import load_rules

    rules = load_rules(settings.benefit_rules_dir, settings.contracts_dir)
    get_run_logger().info("%d benefit rule(s): %s", len(rules), ", ".join(r.ref for r in rules) or "none")
    return rules


@task(name="evaluate-rules", cache_policy=NO_CACHE, persist_result=False)
@scrubbed_errors
def evaluate_rules(settings: Settings, rules: tuple[Rule, ...], day: dt.date) -> list[Evaluation]:
    from catalog import Catalog
    from sharing.benefit_decisions import evaluate

    logger = get_run_logger()
    catalog = Catalog.connect(settings.catalog_url, create=False)
    try:
        evaluations = []
        with catalog.read() as conn:
            for rule in rules:
                evaluation = evaluate(conn, rule, district=settings.district_code, today=day)
                logger.info(
                    "%s: %d qualify, %d grant(s) in force, %d new, %d reversal(s)",
                    rule.ref,
                    evaluation.eligible,
                    evaluation.in_force,
                    len(evaluation.grants),
                    len(evaluation.reversals),
                )
                evaluations.append(evaluation)
        return evaluations
    finally:
        catalog.dispose()


def _transient(task: object, task_run: object, state: State) -> bool:
    """Retry the task on a TransientError only (another run deciding meanwhile, a lost database)."""
    from onceonly.errors import TransientError

    try:
        state.result()
    except TransientError:
        return True
    except BaseException:
        return False
    return False


@task(
    name="record-decisions",
    cache_policy=NO_CACHE,
    persist_result=False,
    retries=2,
    retry_delay_seconds=[2, 10],
    retry_condition_fn=_transient,
)
@scrubbed_errors
def record_decisions(
    settings: Settings, evaluations: list[Evaluation]
) -> tuple[list[Evaluation], list[Recorded]]:
    """Record the decisions; a rule another run decided meanwhile is evaluated again first."""
    from catalog import Catalog
    from evidence.keys import open_key_store
    from evidence.log import TransparencyLog
    from evidence.merkle import tree_hash
    from sharing.benefit_decisions import record_evaluating_again

    if not any(e.grants or e.reversals for e in evaluations):
        return evaluations, []
    key = open_key_store(settings).load(settings.log_origin)
    log = TransparencyLog(key, settings.log_origin, hasher=tree_hash(settings.log_hash))
    catalog = Catalog.connect(settings.catalog_url, create=False)
    try:
        return record_evaluating_again(catalog, log, evaluations, district=settings.district_code)
    finally:
        catalog.dispose()


@flow(name="benefits", flow_run_name="benefits")
def benefits(settings: Settings | None = None, day: str | None = None) -> State:
    """Evaluate every benefit rule on ``day`` (ISO date; default today in Beijing) and record
    the decisions; see the module docstring."""
    try:
        return _benefits(settings or Settings(), day)
    except Exception as exc:
        return failed_state(exc)


def _benefits(settings: Settings, day: str | None) -> State:
    from sharing.benefit_decisions import today_in_district

    install_prefect_scrubbing()
    on = dt.date.fromisoformat(day) if day else today_in_district()
    rules = load_rules_task(settings)
    evaluations = evaluate_rules(settings, rules, on)
    evaluations, recorded = record_decisions(settings, evaluations)
    table_artifact(
        key="benefit-decisions",
        table=decision_table(recorded),
        description=f"免申即享 decisions of {on.isoformat()}: {len(recorded)} new (subjects masked).",
    )
    summary = _summary(evaluations, recorded)
    markdown_artifact(
        key="benefit-decisions-report", markdown=report(on, evaluations, recorded), description=summary
    )
    return Completed(message=scrub(summary))


def decision_table(recorded: list[Recorded]) -> list[dict[str, object]]:
    """The run's decisions as table rows (subjects masked), at most :data:`TABLE_ROWS`."""
    from sharing.benefit_decisions import RESULT_NAMES

    rows: list[dict[str, object]] = [
        {
            "规则": r.rule_id,
            "结果": RESULT_NAMES[r.result],
            "决定编号": r.decision_id,
            "对象": r.subject_masked,
            "日志序号": r.leaf_index,
        }
        for r in recorded[:TABLE_ROWS]
    ]
    return rows or [{"规则": "（本次无新决定）"}]


def report(day: dt.date, evaluations: list[Evaluation], recorded: list[Recorded]) -> str:
    """The run in words (Chinese): per rule, who qualifies, what was granted and reversed."""
    lines = [f"# 免申即享 {day.isoformat()}", ""]
    lines += ["| 政策 | 规则 | 符合条件 | 此前在享 | 新增享受 | 停止享受 |", "|---|---|---:|---:|---:|---:|"]
    for e in evaluations:
        lines.append(
            f"| {e.rule.name} | {e.rule.ref} | {e.eligible} | {e.in_force} "
            f"| {len(e.grants)} | {len(e.reversals)} |"
        )
    lines.append("")
    reversals = [r for r in recorded if r.result == "reversal"]
    if reversals:
        lines += ["## 停止享受的决定", ""]
        lines += [f"- {r.decision_id}（{r.subject_masked}）：{r.reason}" for r in reversals[:100]]
        lines.append("")
    if not recorded:
        lines.append("本次运行无新决定：符合条件的对象均已在享，所依据的证照无变化。")
    else:
        lines.append(
            f"本次共作出 {len(recorded)} 项决定，均已记入透明日志；"
            "`onceonly decisions explain 决定编号` 查看理由，"
            "`onceonly decisions export` 导出可离线核验的决定包。"
        )
    return "\n".join(lines) + "\n"


def _summary(evaluations: list[Evaluation], recorded: list[Recorded]) -> str:
    grants = sum(1 for r in recorded if r.result == "grant")
    return (
        f"{len(evaluations)} rule(s): {grants} grant(s), {len(recorded) - grants} reversal(s) recorded"
        if recorded
        else f"{len(evaluations)} rule(s): nothing new"
    )


__all__ = ["benefits", "decision_table", "report"]
