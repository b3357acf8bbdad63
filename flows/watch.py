"""The watch flow: is every dataset landing on time, are the keys fit, does everything still agree?

Example::

    from flows.watch import watch
    state = watch(settings=Settings(), return_state=True)   # what `onceonly watch` runs; the
                                                             # `watch` deployment, every 30 min

Three checks, each a task, each announcing what it finds as a Prefect event
(``flows.events``) and in the run's artifacts:

- **freshness** — each registered dataset's last landing against its contract's
  ``frequency`` + ``latency`` (``lake.freshness``): a ``freshness`` table artifact, and
  ``onceonly.dataset.stale`` per stale dataset;
- **keys** — the rotation policy (``ONCEONLY_KEY_MAX_AGE_DAYS``, ``ONCEONLY_KEY_WARN_DAYS``)
  over the keyring: ``onceonly.key.expiring`` / ``onceonly.key.compromised``;
- **audit** — ``onceonly audit`` (the log verified, the catalog, lake and extracts against it):
  ``onceonly.log.verify-failed`` when the log itself fails, ``onceonly.audit.failed`` for any
  other disagreement.

The run ends Completed with its warnings (stale datasets, keys to rotate) in its message, or
Failed when the audit found a disagreement: stored evidence that no longer matches the log is
never a warning. A ``watch-report`` markdown artifact says all of it in words.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.states import Completed, Failed, State

from flows import events
from flows.redaction import (
    failed_state,
    install_prefect_scrubbing,
    markdown_artifact,
    scrub,
    scrubbed_errors,
    table_artifact,
)
from onceonly.errors import CatalogRefused, OnceOnlyError
from onceonly.settings import Settings


class AuditFailed(OnceOnlyError):
    """The audit found stored evidence that disagrees with the log (the message says what)."""


@dataclass
class WatchReport:
    stale: list[str] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)
    audit: list[str] = field(default_factory=list)
    audited: str = ""
    checked_datasets: int = 0

    @property
    def warnings(self) -> list[str]:
        return self.stale + self.keys

    def markdown(self) -> str:
        lines = ["# Watch", ""]
        sections = (
            ("Freshness", self.stale, f"All {self.checked_datasets} dataset(s) within their SLA."),
            ("Signing keys", self.keys, "No key to rotate."),
            ("Audit", self.audit, f"Consistent: {self.audited}" if self.audited else "Not run."),
        )
        for title, problems, fine in sections:
            lines += [f"## {title}", ""]
            lines += [f"- {p}" for p in problems] if problems else [fine]
            lines.append("")
        return "\n".join(lines)


@task(name="check-freshness", cache_policy=NO_CACHE)
@scrubbed_errors
def check_freshness(settings: Settings) -> tuple[list[str], int]:
    """Stale datasets, in words; a ``freshness`` table artifact and an event per stale dataset."""
    from catalog import Catalog
    from connectors.registry import registered
    from contracts.sla import SlaUnitError, freshness_window
    from flows.pipeline import contract_for
    from lake.freshness import dataset_freshness

    logger = get_run_logger()
    try:
        catalog = Catalog.connect(settings.catalog_url, create=False)
    except CatalogRefused:
        logger.info(
            "no catalog yet at %s: nothing registered or pulled, no freshness to check", settings.home
        )
        return [], 0
    try:
        datasets = sorted({r.dataset for r in registered(catalog).values()})
        windows = {}
        problems = []
        for dataset in datasets:
            try:
                windows[dataset] = freshness_window(contract_for(settings.contracts_dir, dataset))
            except (OnceOnlyError, SlaUnitError) as exc:
                problems.append(f"dataset {dataset}: freshness not checked: {exc}")
                logger.warning("%s", problems[-1])
                windows[dataset] = None
        with catalog.read() as conn:
            states = dataset_freshness(conn, windows)
    finally:
        catalog.dispose()
    rows = []
    for state in states:
        rows.append(
            {
                "dataset": state.dataset,
                "state": state.state,
                "last landed (UTC)": f"{state.last_landed:%Y-%m-%d %H:%M:%S}"
                if state.last_landed
                else "never",
                "age (s)": int(state.age.total_seconds()) if state.age is not None else None,
                "SLA window (s)": int(state.window.within.total_seconds()) if state.window else None,
            }
        )
        if state.stale:
            message = state.describe()
            logger.warning("%s", message)
            problems.append(message)
            assert state.window is not None
            events.dataset_stale(
                dataset=state.dataset,
                message=message,
                last_landed=state.last_landed.isoformat() if state.last_landed else None,
                window_seconds=state.window.within.total_seconds(),
            )
    table_artifact(
        key="freshness",
        table=rows or [{"dataset": "(no connector registered)"}],
        description="Each dataset's last landing against its contract's frequency + latency.",
    )
    return problems, len(states)


@task(name="check-keys", cache_policy=NO_CACHE)
@scrubbed_errors
def check_keys(settings: Settings) -> list[str]:
    """Keys due for rotation or marked compromised, in words; an event for each."""
    from evidence.keys import KEYRING_FILE, Keyring, key_warnings

    logger = get_run_logger()
    path = settings.keys_dir / KEYRING_FILE
    if not path.exists():
        return []
    warnings = key_warnings(
        Keyring.load(path),
        max_age=dt.timedelta(days=settings.key_max_age_days),
        warn_before=dt.timedelta(days=settings.key_warn_days),
    )
    for warning in warnings:
        logger.warning("%s", warning.message)
        record = warning.record
        if warning.kind == "compromised":
            assert record.compromised_since is not None
            events.key_compromised(
                name=record.name,
                key_id=record.key_id,
                since=record.compromised_since.isoformat(),
                message=warning.message,
            )
        else:
            events.key_expiring(
                name=record.name,
                key_id=record.key_id,
                created=record.created.isoformat(),
                expires=warning.expires.isoformat(),
                message=warning.message,
            )
    return [w.message for w in warnings]


@task(name="audit", cache_policy=NO_CACHE)
@scrubbed_errors
def audit_all(settings: Settings) -> tuple[list[str], str]:
    """``onceonly audit``'s findings (empty when consistent) and what it checked."""
    from catalog import Catalog
    from evidence.keys import log_verifiers
    from lake.audit import audit
    from lake.parquet import ParquetLake

    logger = get_run_logger()
    try:
        catalog = Catalog.connect(settings.catalog_url, create=False)
    except CatalogRefused:
        return [], ""  # nothing stored yet: nothing to disagree
    try:
        report = audit(
            catalog,
            ParquetLake.of(settings),
            extracts_dir=settings.extracts_dir,
            verifiers=log_verifiers(settings),
        )
    finally:
        catalog.dispose()
    checked = (
        f"{report.leaves:,} log leaves, {report.certificates:,} certificates, {report.batches:,} batches "
        f"in {report.files:,} lake files, {report.extracts:,} extracts"
    )
    findings = [str(f) for f in report.findings]
    log_findings = [str(f) for f in report.findings if f.area == "log"]
    if log_findings:
        events.log_verify_failed(origin=settings.log_origin, findings=log_findings)
    if len(log_findings) < len(findings):
        events.audit_failed(
            origin=settings.log_origin, findings=[f for f in findings if f not in log_findings]
        )
    for finding in findings[:20]:
        logger.error("INCONSISTENT %s", finding)
    return findings, checked


@flow(name="watch", flow_run_name="watch")
def watch(settings: Settings | None = None, audit: bool = True) -> State:
    """Check freshness, keys and (unless ``audit`` is False) the audit; see the module docstring."""
    try:
        return _watch(settings or Settings(), audit)
    except Exception as exc:
        return failed_state(exc)


def _watch(settings: Settings, audit: bool) -> State:
    install_prefect_scrubbing()
    report = WatchReport()
    report.stale, report.checked_datasets = check_freshness(settings)
    report.keys = check_keys(settings)
    if audit:
        report.audit, report.audited = audit_all(settings)
    summary = _summary(report)
    markdown_artifact(key="watch-report", markdown=report.markdown(), description=summary)
    if report.audit:
        return Failed(message=scrub(summary), data=AuditFailed(scrub(summary)))
    return Completed(message=scrub(summary))


def _summary(report: WatchReport) -> str:
    parts = []
    if report.audit:
        parts.append(f"the audit found {len(report.audit)} disagreement(s): {report.audit[0]}")
    if report.stale:
        parts.append(f"{len(report.stale)} freshness problem(s): " + "; ".join(report.stale))
    if report.keys:
        parts.append("; ".join(report.keys))
    if parts:
        return " — ".join(parts)
    fresh = "all datasets fresh" if report.checked_datasets else "no dataset registered yet"
    return f"{fresh}, keys fit" + (", audit consistent" if report.audited else "")


__all__ = ["AuditFailed", "WatchReport", "watch"]
