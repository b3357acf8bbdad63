"""The daily sharing flow: pull → validate → land & issue → return to townships.

Example::

    from flows.daily_sharing import daily_sharing
    state = daily_sharing(return_state=True)          # ephemeral Prefect server unless PREFECT_API_URL
    summary = state.result(raise_on_failure=False)    # RunSummary, also a table artifact

Deployed by ``deployments/prefect.yaml`` (``prefect deploy``). One subflow per connector: a
department whose system fails does not stop the others, and its cursor stays where its last
landed batch left it. Tasks work on whole batches, never on single records.
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_link_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.events import emit_event
from prefect.runtime import flow_run as prefect_flow_run
from prefect.states import Completed, Failed, State
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from catalog import runs, utcnow
from connectors import Registration
from connectors.base import Cursor, Pulled
from connectors.state import acquire_lease, cursor_of, record_failure, release_lease
from contracts.compiler import CompiledContract
from contracts.pinning import require_pinned_major
from contracts.validate import RuleTally, Validation, Validator
from evidence.lifecycle import Lifecycle
from evidence.log import tree_size
from evidence.status_list import publish_status_lists, status_directory, write_status_files
from flows.pipeline import Pipeline, pipeline_for
from lake.deletions import PendingDeletions, cancel_deleted, deleted_record_keys, settle_pending
from lake.landing import Breach, LandedBatch, Lander, batch_id_for, content_digest
from onceonly.errors import ContractBreached, TransientError
from onceonly.privacy import install_log_masking, scrub_exception_message
from onceonly.settings import Settings
from sharing.extracts import refresh_extracts


@dataclass
class ConnectorResult:
    connector: str
    dataset: str
    status: str = "ok"
    error: str | None = None
    batches: int = 0
    pulled: int = 0
    accepted: int = 0
    quarantined: int = 0
    warnings: int = 0
    certificates: int = 0
    breached: bool = False
    rules: dict[str, RuleTally] = field(default_factory=dict)
    # Snapshot change detection (connectors.snapshot): rows new / changed, keys deleted.
    changes: dict[str, int] = field(default_factory=dict)
    # Certificates cancelled (注销) because their source record was deleted (lake.deletions).
    cancelled: int = 0

    def observe(self, validation: Validation) -> None:
        for o in validation.outcomes:
            self.rules.setdefault(o.rule, RuleTally(o.rule, o.severity)).add(o)

    def add(self, landed: LandedBatch) -> None:
        if landed.already_landed:
            return  # landed by an earlier attempt: counted then
        self.batches += 1
        self.pulled += landed.pulled
        self.accepted += landed.accepted
        self.quarantined += landed.quarantined
        self.warnings += landed.warnings
        self.certificates += landed.certificates


@dataclass
class RunSummary:
    run_id: str
    connectors: list[ConnectorResult]
    tree_size: int
    extracts: list[str]
    vkey: str
    home: str
    catalog: str
    lake: str
    extracts_dir: str

    @property
    def failed(self) -> list[ConnectorResult]:
        return [c for c in self.connectors if c.status != "ok"]

    @property
    def pulled(self) -> int:
        return sum(c.pulled for c in self.connectors)

    @property
    def certificates(self) -> int:
        return sum(c.certificates for c in self.connectors)

    def rows(self) -> list[dict[str, object]]:
        return [
            {
                "connector": c.connector,
                "dataset": c.dataset,
                "status": c.status,
                "pulled": c.pulled,
                "accepted": c.accepted,
                "quarantined": c.quarantined,
                "warnings": c.warnings,
                "certificates": c.certificates,
                "changes": ", ".join(f"{n} {kind}" for kind, n in c.changes.items()),
                "cancelled": c.cancelled,
                "error": c.error or "",
            }
            for c in self.connectors
        ]


@task(name="validate-batch", cache_policy=NO_CACHE)
def validate_batch(validator: Validator, batch: pa.RecordBatch, connector: str) -> Validation:
    return validator.validate(batch, connector=connector)


@task(name="land-batch", cache_policy=NO_CACHE)
def land_batch(
    lander: Lander,
    connector: str,
    compiled: CompiledContract,
    validation: Validation,
    cursor_before: Cursor | None,
    pulled: Pulled,
    content_sha256: str,
) -> LandedBatch:
    return lander.land(
        connector=connector,
        compiled=compiled,
        validation=validation,
        cursor_before=cursor_before,
        cursor_after=pulled.cursor,
        content_sha256=content_sha256,
    )


@task(name="expire-and-publish-status", cache_policy=NO_CACHE)
def expire_and_publish_status(pipeline: Pipeline) -> int:
    """失效 for certificates past valid_to, then sign, log and write the changed status lists."""
    with pipeline.catalog.begin() as conn:
        expired = Lifecycle(pipeline.log).expire_due(conn, dt.date.today())
        publish_status_lists(conn, pipeline.log)
    write_status_files(pipeline.catalog, status_directory(pipeline.settings.home))
    return len(expired)


@task(name="write-township-extracts", cache_policy=NO_CACHE)
def write_township_extracts(pipeline: Pipeline) -> list[Path]:
    return refresh_extracts(pipeline.catalog, pipeline.settings.extracts_dir)


class ConnectorRunFailed(Exception):
    """A connector failed part-way; ``result`` holds what it landed before failing."""

    def __init__(self, result: ConnectorResult) -> None:
        super().__init__(result.error)
        self.result = result


@flow(name="sync-connector", flow_run_name="sync-{connector_name}")
def sync_connector(connector_name: str, run_id: str) -> ConnectorResult:
    """Pull one department's system from its cursor to the end, batch by batch."""
    logger = get_run_logger()
    pipeline = pipeline_for(Settings())
    registration = pipeline.registration(connector_name)
    result = ConnectorResult(connector_name, registration.dataset)
    with pipeline.catalog.begin() as conn:
        acquire_lease(conn, connector_name, registration.dataset, run_id, pipeline.settings.lease_seconds)
    try:
        _pull_until_done(pipeline, connector_name, run_id, result)
    except Exception as exc:
        result.status, result.error = "failed", scrub_exception_message(exc)
        raise ConnectorRunFailed(result) from exc
    finally:
        with pipeline.catalog.begin() as conn:
            release_lease(conn, connector_name, run_id)
        _publish_rules(connector_name, result)
        _publish_data_docs(pipeline, connector_name, run_id, result)
    if result.pulled == 0:
        logger.info("%s: nothing new since the last run", connector_name)
    return result


def _pull_until_done(pipeline: Pipeline, connector_name: str, run_id: str, result: ConnectorResult) -> None:
    logger = get_run_logger()
    registration = pipeline.registration(connector_name)
    compiled = pipeline.compiled(registration.dataset)
    require_pinned_major(registration, compiled.contract)
    validator = Validator(compiled, pipeline.check_context())
    settings = pipeline.settings
    lander = Lander(
        pipeline.catalog, pipeline.lake, pipeline.log, run_id=run_id, lease_seconds=settings.lease_seconds
    )
    connector = pipeline.connector(connector_name)
    # Deletions staged by a run that died between landing and cancelling: cancel them before
    # anything newer lands (this run holds the connector's lease).
    pending = PendingDeletions(settings.home, connector_name)
    status_dir = status_directory(settings.home)
    settled = settle_pending(
        pipeline.catalog,
        pipeline.log,
        pending,
        registration.dataset,
        status_dir=status_dir,
        drop_unlanded=True,
    )
    for done in settled:
        result.cancelled += done.certificates
        logger.info(
            "%s: %d certificate(s) 注销 for deletions of batch %s (left over by an earlier run)",
            connector_name,
            done.certificates,
            done.batch_id[:12],
        )
    retrying = Retrying(
        retry=retry_if_exception_type(TransientError),
        stop=stop_after_attempt(pipeline.settings.connector_attempts),
        wait=wait_exponential(multiplier=pipeline.settings.retry_wait_seconds, max=300),
        reraise=True,
        before_sleep=lambda rs: logger.warning(
            "%s: attempt %d failed (%s); resuming from the last landed batch",
            connector_name,
            rs.attempt_number,
            _why(rs.outcome.exception() if rs.outcome else None),
        ),
    )
    for attempt in retrying:
        with attempt:
            with pipeline.catalog.read() as conn:
                cursor = cursor_of(conn, connector_name)
            for pulled in connector.pull(cursor, pipeline.settings.batch_size):
                validation = validate_batch(validator, pulled.batch, connector_name)
                result.observe(validation)
                digest = content_digest(pulled.batch)
                try:
                    _refuse_breach(lander, connector_name, compiled, validation, cursor, digest)
                except ContractBreached:
                    result.breached = True
                    raise
                deleted = _stage_deletions(pending, registration, compiled, cursor, pulled, digest)
                landed = land_batch(lander, connector_name, compiled, validation, cursor, pulled, digest)
                result.add(landed)
                if deleted is not None:
                    done = cancel_deleted(
                        pipeline.catalog,
                        pipeline.log,
                        pending,
                        landed.batch_id,
                        registration.dataset,
                        deleted,
                        status_dir=status_dir,
                    )
                    result.cancelled += done.certificates
                    if done.certificates:
                        logger.info(
                            "%s: %d certificate(s) 注销: their source records were deleted",
                            connector_name,
                            done.certificates,
                        )
                if not landed.already_landed:
                    for kind, count in pulled.changes.items():
                        result.changes[kind] = result.changes.get(kind, 0) + count
                cursor = pulled.cursor
                connector.landed(pulled.cursor)  # e.g. archive the files this batch finished
                logger.info(
                    "%s: batch %s landed: %d pulled, %d accepted, %d quarantined, %d certificates",
                    connector_name,
                    landed.batch_id[:12],
                    landed.pulled,
                    landed.accepted,
                    landed.quarantined,
                    landed.certificates,
                )


def _stage_deletions(
    pending: PendingDeletions,
    registration: Registration,
    compiled: CompiledContract,
    cursor: Cursor | None,
    pulled: Pulled,
    digest: str,
) -> list[str] | None:
    """Record the batch's deleted keys durably before it lands; None when it reports none."""
    if pulled.deleted is None or not len(pulled.deleted):
        return None
    keys = deleted_record_keys(
        pulled.deleted, registration.options.get("key") or [], compiled, connector=registration.name
    )
    pending.stage(batch_id_for(registration.name, cursor, digest), keys)
    return keys


BREACH_EVENT = "onceonly.contract.breached"


def _refuse_breach(
    lander: Lander,
    connector_name: str,
    compiled: CompiledContract,
    validation: Validation,
    cursor: Cursor | None,
    content_sha256: str,
) -> None:
    """Stop the connector when a batch breaks its contract beyond ``maxErrorRate``.

    The share is judged only on batches of at least ``minRowsForErrorRate`` rows: one bad row
    in a batch of one is 100 % and says nothing about the source. A breached batch is kept in
    quarantine (not landed, nothing issued, cursor unmoved) and announced as a Prefect event.
    """
    too_few = validation.pulled < compiled.min_rows_for_error_rate
    if too_few or validation.error_rate <= compiled.max_error_rate:
        return
    breach = lander.refuse(
        connector=connector_name,
        compiled=compiled,
        validation=validation,
        cursor_before=cursor,
        content_sha256=content_sha256,
    )
    announce_breach(breach, validation, run_id=lander.run_id)
    raise ContractBreached(
        f"connector {connector_name!r}: {breach.quarantined} of {breach.pulled} rows "
        f"({breach.error_rate:.0%}) broke contract {breach.contract}, above its maxErrorRate "
        f"{breach.max_error_rate:.0%}; nothing from this batch was issued and the cursor stays put; "
        f"no more certificates from dataset {breach.dataset} in this run "
        f"(the rows are in quarantine, batch {breach.batch_id[:12]})"
    )


def announce_breach(breach: Breach, validation: Validation, *, run_id: str) -> None:
    """Emit ``onceonly.contract.breached`` on resource ``onceonly.dataset.<id>`` for automations."""
    emit_event(
        event=BREACH_EVENT,
        resource={
            "prefect.resource.id": f"onceonly.dataset.{breach.dataset}",
            "prefect.resource.name": breach.dataset,
        },
        related=[
            {
                "prefect.resource.id": f"onceonly.connector.{breach.connector}",
                "prefect.resource.role": "connector",
                "prefect.resource.name": breach.connector,
            }
        ],
        payload={
            "connector": breach.connector,
            "dataset": breach.dataset,
            "contract": breach.contract,
            "batch_id": breach.batch_id,
            "run_id": run_id,
            "pulled": breach.pulled,
            "quarantined": breach.quarantined,
            "error_rate": round(breach.error_rate, 6),
            "max_error_rate": breach.max_error_rate,
            # Counts only: examples may be personal, and events are kept outside our masking.
            "rules": {o.rule: o.failed for o in validation.outcomes if o.failed and o.severity == "error"},
        },
    )


def _publish_rules(connector_name: str, result: ConnectorResult) -> None:
    """A table artifact of which contract rules failed, how often, with masked examples."""
    if not result.rules:
        return
    checked = max(t.checked for t in result.rules.values())
    rows = [
        {
            "rule": t.rule,
            "severity": t.severity,
            "rows checked": t.checked,
            "rows failed": t.failed,
            "share": f"{t.share:.2%}",
            "examples (masked)": ", ".join(t.examples),
        }
        for t in sorted(result.rules.values(), key=lambda t: t.rule)
        if t.failed
    ]
    create_table_artifact(
        key=f"contract-{connector_name}",
        table=rows or [{"rule": "(no rule failed)", "rows checked": checked}],
        description=f"Contract rules broken by rows from {connector_name} in this run.",
    )


def _publish_data_docs(pipeline: Pipeline, connector_name: str, run_id: str, result: ConnectorResult) -> None:
    """Build the connector's Great Expectations Data Docs page for this run and link it."""
    if not result.rules:
        return
    logger = get_run_logger()
    settings = pipeline.settings
    started = time.perf_counter()
    try:
        url = pipeline.data_docs().publish(
            pipeline.compiled(result.dataset), result.rules, run_name=f"run-{run_id}", batch=connector_name
        )
    except Exception as exc:  # a report that cannot be built must not undo what was landed
        logger.warning("%s: Data Docs not built: %s", connector_name, scrub_exception_message(exc))
        return
    logger.info("%s: Data Docs built in %.2f s: %s", connector_name, time.perf_counter() - started, url)
    create_link_artifact(
        key=f"datadocs-{connector_name}",
        link=url,
        link_text=f"Data Docs: {connector_name} against {result.dataset}",
        description=(
            f"Great Expectations Data Docs of this run's validation of {connector_name} "
            f"(site {settings.datadocs_dir.resolve()})."
        ),
    )


@flow(name="daily_sharing", flow_run_name="daily-sharing")
def daily_sharing(connectors: list[str] | None = None) -> State:
    """Run every registered connector (or the named ones), then refresh township extracts."""
    install_log_masking()
    logger = get_run_logger()
    settings = Settings()
    pipeline = pipeline_for(settings)
    run_id = str(uuid.uuid4())
    if pipeline.key_created:
        logger.info("created the log's signing key (encrypted) in %s", settings.keys_dir)
        pipeline.key_created = False  # the pipeline is reused by later runs in this process
    _save_connector_blocks(pipeline, logger)
    with pipeline.catalog.begin() as conn:
        conn.execute(
            runs.insert().values(
                run_id=run_id,
                flow_run_id=str(prefect_flow_run.id or ""),
                started_at=utcnow(),
                status="running",
            )
        )
    names = connectors or sorted(pipeline.registrations)
    results: list[ConnectorResult] = []
    breached: dict[str, str] = {}  # dataset -> the connector whose batch breached its contract
    for name in names:
        dataset = pipeline.registrations[name].dataset if name in pipeline.registrations else "?"
        try:
            if dataset in breached:  # nothing more is issued from a breached dataset in this run
                raise ContractBreached(
                    f"connector {name!r} not pulled: a batch from {breached[dataset]!r} breached the "
                    f"contract of dataset {dataset} earlier in this run"
                )
            results.append(sync_connector(name, run_id))
        except Exception as exc:  # one department failing must not stop the others
            partial = exc.result if isinstance(exc, ConnectorRunFailed) else None
            failed = partial or ConnectorResult(
                name, dataset, status="failed", error=scrub_exception_message(exc)
            )
            if failed.breached:
                breached[dataset] = name
            logger.error("connector %s failed: %s", name, failed.error)
            results.append(failed)
            with pipeline.catalog.begin() as conn:
                record_failure(conn, name, dataset, run_id, failed.error or "failed")
    # Extracts follow the catalog's marks, not this run's results: batches landed by a
    # connector that failed later, or by a run that died before this point, are included.
    # Before the extracts: an expired certificate's township is marked and gets a fresh extract.
    expired = expire_and_publish_status(pipeline)
    if expired:
        logger.info("expire pass: %d certificate(s) past valid_to are now 失效", expired)
    extracts = [str(p) for p in write_township_extracts(pipeline)]
    with pipeline.catalog.begin() as conn:
        size = tree_size(conn)
    summary = RunSummary(
        run_id=run_id,
        connectors=results,
        tree_size=size,
        extracts=extracts,
        vkey=pipeline.key.vkey,
        home=str(settings.home.resolve()),
        catalog=_redacted(settings.catalog_url),
        lake=str(settings.lake_dir.resolve()),
        extracts_dir=str(settings.extracts_dir.resolve()),
    )
    status = "failed" if summary.failed else "ok"
    with pipeline.catalog.begin() as conn:
        conn.execute(
            runs.update()
            .where(runs.c.run_id == run_id)
            .values(
                finished_at=utcnow(), status=status, summary={"connectors": summary.rows(), "tree_size": size}
            )
        )
    create_table_artifact(
        key="daily-sharing-summary",
        table=summary.rows(),
        description=(
            f"Run {run_id}: {summary.pulled} rows pulled, {summary.certificates} certificates issued, "
            f"transparency log size {size}, {len(extracts)} township extracts written."
        ),
    )
    if summary.failed:
        names_failed = ", ".join(c.connector for c in summary.failed)
        return Failed(message=f"{len(summary.failed)} connector(s) failed: {names_failed}", data=summary)
    return Completed(message="all connectors landed", data=summary)


def _save_connector_blocks(pipeline: Pipeline, logger: Any) -> None:
    """The connector blocks mirror the catalog's registrations on the Prefect API of this run."""
    from connectors.block import sync_blocks

    pipeline.newly_registered.clear()
    synced = sync_blocks(pipeline.registrations)
    if synced.saved or synced.deleted:
        logger.info(
            "connector blocks: %d saved, %d deleted (%s)",
            len(synced.saved),
            len(synced.deleted),
            ", ".join(synced.deleted) or "none deleted",
        )
    for problem in synced.problems:
        logger.warning("%s", problem)


def _why(exc: BaseException | None) -> str:
    return scrub_exception_message(exc) if exc is not None else "unknown error"


def _redacted(url: str) -> str:
    from sqlalchemy import make_url

    return make_url(url).render_as_string(hide_password=True)


__all__ = [
    "BREACH_EVENT",
    "ConnectorResult",
    "ConnectorRunFailed",
    "RunSummary",
    "announce_breach",
    "daily_sharing",
    "sync_connector",
]
