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

import uuid
from dataclasses import dataclass, field

import pyarrow as pa
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.states import Completed, Failed, State
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from connectors.base import Cursor, Pulled
from contracts.compiler import CompiledContract
from contracts.validate import Validation, Validator
from evidence.log import tree_size
from flows.pipeline import Pipeline, pipeline_for
from lake.catalog import runs, utcnow
from lake.landing import LandedBatch, Lander, content_digest, record_failure
from onceonly.errors import ContractBreached, TransientError
from onceonly.privacy import install_log_masking, scrub_exception_message
from onceonly.settings import Settings
from sharing.extracts import write_extracts


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
    townships: set[str] = field(default_factory=set)

    def add(self, landed: LandedBatch) -> None:
        self.batches += 1
        self.pulled += landed.pulled
        self.accepted += landed.accepted
        self.quarantined += landed.quarantined
        self.warnings += landed.warnings
        self.certificates += landed.certificates
        self.townships |= set(landed.townships)


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
) -> LandedBatch:
    return lander.land(
        connector=connector,
        compiled=compiled,
        validation=validation,
        cursor_before=cursor_before,
        cursor_after=pulled.cursor,
        content_sha256=content_digest(pulled.batch),
    )


@task(name="write-township-extracts", cache_policy=NO_CACHE)
def write_township_extracts(pipeline: Pipeline, townships: set[str]) -> list[str]:
    with pipeline.catalog.begin() as conn:
        return [str(p) for p in write_extracts(conn, pipeline.settings.extracts_dir, townships)]


@flow(name="sync-connector", flow_run_name="sync-{connector_name}")
def sync_connector(connector_name: str, run_id: str) -> ConnectorResult:
    """Pull one department's system from its cursor to the end, batch by batch."""
    logger = get_run_logger()
    pipeline = pipeline_for(Settings())
    registration = pipeline.registration(connector_name)
    result = ConnectorResult(connector_name, registration.dataset)
    compiled = pipeline.compiled(registration.dataset)
    validator = Validator(compiled, pipeline.check_context())
    lander = Lander(pipeline.catalog, pipeline.lake, pipeline.log, run_id=run_id)
    connector = pipeline.connector(connector_name)
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
            with pipeline.catalog.begin() as conn:
                cursor = pipeline.catalog.cursor_of(conn, connector_name)
            for pulled in connector.pull(cursor, pipeline.settings.batch_size):
                validation = validate_batch(validator, pulled.batch, connector_name)
                if validation.error_rate > compiled.max_error_rate:
                    pipeline.lake.write_quarantine(
                        compiled.contract.id, f"breach-{run_id}", validation.quarantined
                    )
                    raise ContractBreached(
                        f"connector {connector_name!r}: {validation.quarantined.num_rows} of "
                        f"{validation.pulled} rows ({validation.error_rate:.0%}) broke contract "
                        f"{compiled.ref}, above its "
                        f"maxErrorRate {compiled.max_error_rate:.0%}; nothing from this batch was issued"
                    )
                landed = land_batch(lander, connector_name, compiled, validation, cursor, pulled)
                result.add(landed)
                cursor = pulled.cursor
                logger.info(
                    "%s: batch %s landed: %d pulled, %d accepted, %d quarantined, %d certificates",
                    connector_name,
                    landed.batch_id[:12],
                    landed.pulled,
                    landed.accepted,
                    landed.quarantined,
                    landed.certificates,
                )
    if result.pulled == 0:
        logger.info("%s: nothing new since the last run", connector_name)
    return result


@flow(name="daily_sharing", flow_run_name="daily-sharing")
def daily_sharing(connectors: list[str] | None = None) -> State:
    """Run every registered connector (or the named ones), then refresh township extracts."""
    install_log_masking()
    logger = get_run_logger()
    settings = Settings()
    pipeline = pipeline_for(settings)
    run_id = str(uuid.uuid4())
    with pipeline.catalog.begin() as conn:
        conn.execute(runs.insert().values(run_id=run_id, started_at=utcnow(), status="running"))
    names = connectors or sorted(pipeline.registrations)
    results: list[ConnectorResult] = []
    for name in names:
        try:
            results.append(sync_connector(name, run_id))
        except Exception as exc:  # one department failing must not stop the others
            message = scrub_exception_message(exc)
            logger.error("connector %s failed: %s", name, message)
            dataset = pipeline.registrations[name].dataset if name in pipeline.registrations else "?"
            results.append(ConnectorResult(name, dataset, status="failed", error=message))
            with pipeline.catalog.begin() as conn:
                record_failure(conn, name, dataset, run_id, message)
    townships = set().union(*(r.townships for r in results)) if results else set()
    extracts = write_township_extracts(pipeline, townships) if townships else []
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


def _why(exc: BaseException | None) -> str:
    return scrub_exception_message(exc) if exc is not None else "unknown error"


def _redacted(url: str) -> str:
    from sqlalchemy import make_url

    return make_url(url).render_as_string(hide_password=True)


__all__ = ["ConnectorResult", "RunSummary", "daily_sharing", "sync_connector"]
