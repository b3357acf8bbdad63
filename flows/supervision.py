"""The supervision flow (审批与监管联动): push landed approvals, pull receipts, announce the overdue.

Example::

    from flows.supervision import supervision
    state = supervision(settings=Settings(), return_state=True)   # what `onceonly supervision run`
                                                                   # runs; the `supervision`
                                                                   # deployment, every 10 min

Three tasks over ``sharing.supervision``:

- **push-approvals** — each landed approval of ``ONCEONLY_SUPERVISION_DATASET`` the supervisor
  has not accepted yet, signed, retried, idempotent by approval id;
- **pull-receipts** — read receipts (签收) and feedback (监管结果), each kept and logged once;
- **check-overdue** — approvals unread after ``ONCEONLY_SUPERVISION_UNREAD_HOURS`` or without
  feedback after ``ONCEONLY_SUPERVISION_FEEDBACK_DAYS``: an event each, once
  (``onceonly.approval.unread`` / ``onceonly.approval.no-feedback``, resource
  ``onceonly.approval.<approval id>``).

Artifacts: ``supervision`` (a table of the approvals, those waiting first, in Chinese, no
personal data) and ``supervision-report`` (the run in words). The run ends Failed when the
supervisor could not be reached or refused pushes (those approvals wait for the next run,
nothing is lost), Completed otherwise — overdue approvals are in its message.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.states import Completed, Failed, State

from flows.events import approval_overdue
from flows.redaction import (
    failed_state,
    install_prefect_scrubbing,
    markdown_artifact,
    remember_secrets,
    scrub,
    scrubbed_errors,
    table_artifact,
)
from onceonly.errors import OnceOnlyError
from onceonly.settings import Settings
from sharing.supervision import PushReport, ReceiptReport, SupervisorRefused, SupervisorUnavailable


class SupervisionIncomplete(OnceOnlyError):
    """Approvals could not be pushed this run (the message says why); they go on the next."""


@dataclass
class SupervisionReport:
    pushed: int = 0
    duplicates: int = 0
    amended: int = 0
    pending: int = 0
    refused: dict[str, str] = field(default_factory=dict)
    unavailable: str | None = None
    receipts_new: int = 0
    receipts_repeated: int = 0
    reads: int = 0
    feedback: int = 0
    receipts_error: str | None = None
    receipts_held: int = 0
    receipts_refused: list[str] = field(default_factory=list)  # warnings: skipped, the run goes on
    overdue: list[str] = field(default_factory=list)
    status: str = ""

    @property
    def problems(self) -> list[str]:
        found = []
        if self.unavailable:
            found.append(f"推送中断：{self.unavailable}（{self.pending} 项待下次推送）")
        found += [f"{a} 被拒收：{why}" for a, why in sorted(self.refused.items())]
        if self.receipts_error:
            found.append(f"拉取签收与反馈失败：{self.receipts_error}")
        return found

    def summary(self) -> str:
        amended = f"；{self.amended} 项为更正，已补充至原案件" if self.amended else ""
        held = f"，待推送记录后处理 {self.receipts_held} 条" if self.receipts_held else ""
        refused = f"，拒收 {len(self.receipts_refused)} 条" if self.receipts_refused else ""
        text = (
            f"推送 {self.pushed} 项（其中 {self.duplicates} 项监管部门已立案，为重试{amended}），"
            f"待推送 {self.pending} 项；"
            f"新签收 {self.reads} 项，新反馈 {self.feedback} 项（收到回执 {self.receipts_new} 条，"
            f"重复 {self.receipts_repeated} 条{held}{refused}）；新逾期 {len(self.overdue)} 项"
        )
        if self.problems:
            text += " — " + "；".join(self.problems)
        return text

    def markdown(self) -> str:
        lines = ["# 审批与监管联动", "", self.summary(), "", f"现状：{self.status}", ""]
        if self.overdue:
            lines += ["## 新逾期", ""] + [f"- {o}" for o in self.overdue] + [""]
        if self.problems:
            lines += ["## 问题", ""] + [f"- {p}" for p in self.problems] + [""]
        if self.receipts_refused:
            lines += ["## 拒收的回执", ""] + [f"- {w}" for w in self.receipts_refused[:50]] + [""]
        return "\n".join(lines)


def _opened(settings: Settings) -> tuple[Any, Any, Any]:
    from catalog import Catalog
    from evidence.keys import open_key_store
    from evidence.log import TransparencyLog
    from evidence.merkle import tree_hash
    from lake.parquet import ParquetLake

    key, _ = open_key_store(settings).load_or_create(settings.log_origin, settings.signature_suite)
    log = TransparencyLog(key, settings.log_origin, hasher=tree_hash(settings.log_hash))
    return Catalog.connect(settings.catalog_url), ParquetLake.of(settings), log


def _client(settings: Settings) -> Any:
    from sharing.supervision import supervisor_client

    client = supervisor_client(settings)
    remember_secrets(client.secret_values())
    return client


@task(name="push-approvals", cache_policy=NO_CACHE)
@scrubbed_errors
def push_approvals(settings: Settings) -> PushReport:
    """Push every landed approval not yet accepted by the supervisor."""
    from sharing.supervision import push_pending

    logger = get_run_logger()
    catalog, lake, log = _opened(settings)
    try:
        with _client(settings) as client:
            report = push_pending(
                catalog,
                lake,
                log,
                client,
                dataset=settings.supervision_dataset,
                district=settings.district_code,
            )
    finally:
        catalog.dispose()
    logger.info(
        "pushed %d approval(s) (%d already a case, %d amendments), %d pending, %d refused",
        len(report.pushed),
        report.duplicates,
        report.amended,
        report.pending,
        len(report.refused),
    )
    if report.unavailable:
        logger.warning("pushing stopped: %s", report.unavailable)
    return report


@task(name="pull-receipts", cache_policy=NO_CACHE)
@scrubbed_errors
def pull_back(settings: Settings) -> ReceiptReport:
    """Pull the supervisor's read receipts and feedback since the last ones kept."""
    from sharing.supervision import pull_receipts

    logger = get_run_logger()
    catalog, _, log = _opened(settings)
    try:
        with _client(settings) as client:
            report = pull_receipts(catalog, log, client)
    finally:
        catalog.dispose()
    for warning in report.refused[:20]:
        logger.warning("%s", warning)
    return report


@task(name="check-overdue", cache_policy=NO_CACHE)
@scrubbed_errors
def check_overdue(settings: Settings) -> list[str]:
    """An event for each approval newly overdue (unread, or without feedback), once."""
    from catalog import Catalog
    from sharing.supervision import find_overdue, mark_alerted

    logger = get_run_logger()
    catalog = Catalog.connect(settings.catalog_url)
    try:
        overdue = find_overdue(
            catalog,
            unread_after=dt.timedelta(hours=settings.supervision_unread_hours),
            feedback_after=dt.timedelta(days=settings.supervision_feedback_days),
        )
        for o in overdue:
            logger.warning("%s", o.describe())
            approval_overdue(
                kind=o.kind,
                approval_id=o.approval_id,
                supervisor=o.supervisor,
                case_id=o.case_id,
                township=o.township,
                pushed_at=o.pushed_at.isoformat(timespec="seconds"),
                waited_hours=round(o.waited.total_seconds() / 3600, 1),
                message=o.describe(),
            )
        # Recorded after the events went out: a run that dies in between announces them again
        # (at least once), never not at all.
        mark_alerted(catalog, overdue)
    finally:
        catalog.dispose()
    return [o.describe() for o in overdue]


@task(name="supervision-status", cache_policy=NO_CACHE)
@scrubbed_errors
def publish_status(settings: Settings) -> str:
    """The ``supervision`` table artifact; the status in one line."""
    from catalog import Catalog
    from lake.parquet import ParquetLake
    from sharing.supervision import supervision_status

    catalog = Catalog.connect(settings.catalog_url)
    try:
        status = supervision_status(
            catalog,
            ParquetLake.of(settings),
            dataset=settings.supervision_dataset,
            unread_after=dt.timedelta(hours=settings.supervision_unread_hours),
            feedback_after=dt.timedelta(days=settings.supervision_feedback_days),
        )
    finally:
        catalog.dispose()
    table_artifact(
        key="supervision",
        table=status.table() or [{"许可决定编号": "（尚无落地的许可决定）"}],
        description=status.summary(),
    )
    return status.summary()


@flow(name="supervision", flow_run_name="supervision")
def supervision(settings: Settings | None = None) -> State:
    """Push, pull receipts, check the overdue; see the module docstring."""
    try:
        return _supervision(settings or Settings())
    except Exception as exc:
        return failed_state(exc)


def _supervision(settings: Settings) -> State:
    install_prefect_scrubbing()
    report = SupervisionReport()
    pushed = push_approvals(settings)
    report.pushed, report.duplicates, report.pending = len(pushed.pushed), pushed.duplicates, pushed.pending
    report.refused, report.unavailable = dict(pushed.refused), pushed.unavailable
    report.amended = pushed.amended
    try:
        receipts = pull_back(settings)
    except (SupervisorUnavailable, SupervisorRefused) as exc:
        report.receipts_error = str(exc)
    else:
        report.receipts_new, report.receipts_repeated = receipts.new, receipts.repeated
        report.reads, report.feedback = receipts.reads, receipts.feedback
        report.receipts_held, report.receipts_refused = receipts.unknown, list(receipts.refused)
    report.overdue = check_overdue(settings)
    report.status = publish_status(settings)
    summary = report.summary()
    markdown_artifact(key="supervision-report", markdown=report.markdown(), description=summary)
    if report.problems:
        return Failed(message=scrub(summary), data=SupervisionIncomplete(scrub(summary)))
    return Completed(message=scrub(summary))


__all__ = ["SupervisionIncomplete", "SupervisionReport", "supervision"]
