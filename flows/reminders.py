"""The expiry-reminders flow (证照到期提醒): find → send → record, daily.

Example::

    from flows.reminders import expiry_reminders
    state = expiry_reminders(settings=Settings(), return_state=True)    # `onceonly reminders run`;
    state = expiry_reminders(day="2026-12-03", days=90, return_state=True)  # the deployment
                                                                        # `expiry-reminders`, 07:00

Three tasks over ``sharing.reminders``:

- **find-reminders** — the certificates 有效 within their type's window on the day
  (``sharing/reminders.yaml``, or ``days`` for every type) not reminded yet, and the open
  reminders to close (renewed, expired, void);
- **send-reminders** — in one catalog transaction: each reminder recorded once, a notice per
  subject in the outbox, the closings, all logged (kind ``expiry-reminder``, the holder as a
  salted commitment);
- **record-reminders** — the day's XLSX list per township and the outbox ``notices.jsonl``
  under ``<home>/reminders/<day>/`` (600 in 700 folders); and again the outbox of an earlier
  day lacking some of its undelivered notices (a run that died between send and record).

Artifacts: ``expiry-reminders`` (a table per township: sent, notices, closed, rows listed) and
``expiry-reminders-report`` (markdown, in Chinese). Nothing personal reaches Prefect: the
tasks that carry holders return them to this process only (``persist_result=False``), and the
artifacts hold counts.
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
from onceonly.errors import ConfigurationError
from onceonly.settings import Settings

if TYPE_CHECKING:
    from sharing.reminders import Plan, ReminderPolicy, Sent, Written

SHANGHAI = "Asia/Shanghai"


def today_in_shanghai() -> dt.date:
    from zoneinfo import ZoneInfo

    return dt.datetime.now(ZoneInfo(SHANGHAI)).date()


def _policy(settings: Settings, days: int | None) -> ReminderPolicy:
    from sharing.reminders import load_policy

    policy = load_policy(settings.reminders_file, settings.contracts_dir)
    return policy.with_days(days) if days is not None else policy


def _township_names(settings: Settings) -> dict[str, str]:
    from contracts.checks import load_region_codes

    try:
        return load_region_codes(settings.district_code)
    except Exception:  # names are a courtesy: codes alone still make the lists
        return {}


@task(name="find-reminders", cache_policy=NO_CACHE, persist_result=False)
@scrubbed_errors
def find(settings: Settings, policy: ReminderPolicy, day: dt.date) -> Plan:
    """The reminders due on ``day`` and the open ones to close."""
    from catalog import Catalog
    from sharing.reminders import find_reminders

    catalog = Catalog.connect(settings.catalog_url, create=False)
    try:
        with catalog.read() as conn:
            plan = find_reminders(conn, policy, day)
    finally:
        catalog.dispose()
    get_run_logger().info(
        "%s: %d reminder(s) due, %d to close", day.isoformat(), len(plan.due), len(plan.closing)
    )
    return plan


@task(name="send-reminders", cache_policy=NO_CACHE, persist_result=False)
@scrubbed_errors
def send(settings: Settings, policy: ReminderPolicy, plan: Plan) -> Sent:
    """Record, notify and log ``plan`` in one transaction; a reminder is never sent twice."""
    from catalog import Catalog
    from evidence.keys import open_key_store
    from evidence.log import TransparencyLog
    from evidence.merkle import tree_hash
    from sharing.reminders import send_reminders

    key = open_key_store(settings).load(settings.log_origin)
    log = TransparencyLog(key, settings.log_origin, hasher=tree_hash(settings.log_hash))
    catalog = Catalog.connect(settings.catalog_url, create=False)
    try:
        with catalog.begin() as conn:
            sent = send_reminders(conn, log, plan, policy, township_names=_township_names(settings))
    finally:
        catalog.dispose()
    get_run_logger().info(
        "sent %d reminder(s) in %d notice(s), closed %d%s",
        len(sent.reminders),
        len(sent.notices),
        len(sent.closed),
        f" (log size {sent.tree_size})" if sent.tree_size else "",
    )
    return sent


@task(name="record-reminders", cache_policy=NO_CACHE)
@scrubbed_errors
def record(settings: Settings, policy: ReminderPolicy, day: dt.date) -> Written:
    """The day's township lists (XLSX) and the outbox, rewritten whole from the catalog."""
    from catalog import Catalog
    from sharing.reminders import reminders_dir, write_reminder_files

    catalog = Catalog.connect(settings.catalog_url, create=False)
    try:
        with catalog.read() as conn:
            written = write_reminder_files(
                conn, policy, reminders_dir(settings.home), day, township_names=_township_names(settings)
            )
    finally:
        catalog.dispose()
    get_run_logger().info(
        "wrote %d township list(s) and %d notice(s) under %s",
        len(written.lists),
        written.notices,
        reminders_dir(settings.home) / day.isoformat(),
    )
    for path in written.rewritten:  # an earlier run sent these and died before writing them
        get_run_logger().warning("wrote again the outbox %s: it lacked undelivered notices", path)
    return written


def _run_name() -> str:
    from prefect.runtime import flow_run

    return f"expiry-reminders-{flow_run.parameters.get('day') or today_in_shanghai().isoformat()}"


@flow(name="expiry-reminders", flow_run_name=_run_name)
def expiry_reminders(
    settings: Settings | None = None, day: str | None = None, days: int | None = None
) -> State:
    """Remind the certificates about to expire on ``day`` (ISO date; default today in
    Asia/Shanghai), within their type's windows or ``days`` for every type."""
    try:
        return _reminders(settings or Settings(), day, days)
    except Exception as exc:
        return failed_state(exc)


def _reminders(settings: Settings, day_text: str | None, days: int | None) -> State:
    from sharing.reminders import report_markdown, township_table

    install_prefect_scrubbing()
    day = _day(day_text)
    policy = _policy(settings, days)
    plan = find(settings, policy, day)
    sent = send(settings, policy, plan)
    written = record(settings, policy, day)
    names = _township_names(settings)
    rows = township_table(sent, written, names)
    table_artifact(
        key="expiry-reminders",
        table=rows or [{"镇街代码": "（无）", "新发提醒": 0}],
        description=f"证照到期提醒 {day.isoformat()}：各镇街新发提醒、通知、关闭与清单行数。",
    )
    summary = (
        f"{day.isoformat()}: {len(sent.reminders)} reminder(s) sent in {len(sent.notices)} notice(s), "
        f"{len(sent.closed)} closed, {len(written.lists)} township list(s)"
    )
    markdown_artifact(
        key="expiry-reminders-report",
        markdown=report_markdown(sent, written, policy, names),
        description=summary,
    )
    return Completed(message=scrub(summary))


def _day(text: str | None) -> dt.date:
    if text is None:
        return today_in_shanghai()
    try:
        return dt.date.fromisoformat(str(text))
    except ValueError:
        raise ConfigurationError(f"the day must be an ISO date (2026-12-03), got {text[:40]!r}") from None


__all__ = ["expiry_reminders", "today_in_shanghai"]
