"""The daily sharing flow: pull → validate → land & issue → return to townships.

Example::

    from flows.daily_sharing import daily_sharing
    state = daily_sharing(settings=Settings(), return_state=True)   # the Prefect server in
                                                                    # PREFECT_API_URL, else ephemeral
    run_id = str(state.state_details.flow_run_id)   # = the catalog's runs.run_id

Deployed by ``deployments/prefect.yaml``. The flow only orchestrates: the stages own the rules
(the error-rate gate is ``contracts``', runs and leases are ``lake.runs``' and
``connectors.state``', landing and recovery ``lake.landing``'). ``Settings`` are built once at
the edge — by the CLI, or by this flow when a worker starts it — and passed down.

Each run first finishes what a dead run left: runs whose process is gone are marked crashed
and their connectors released, batches they committed but did not publish to the lake are
published, and their uncommitted staging is discarded. Then one subflow per connector: a
department whose system fails does not stop the others, and its cursor stays where its last
landed batch left it. Tasks work on whole batches, never on single records. An expected
failure (a source error, a contract breach) ends its subflow Failed with one readable line;
tracebacks are for bugs.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import time
import uuid
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run as prefect_flow_run
from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
from prefect.states import Completed, Failed, State
from sqlalchemy.engine import Connection
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from connectors import Connector, Registration
from connectors.base import Cursor, Pulled
from connectors.state import acquire_lease, cursor_of, record_failure, release_lease
from contracts.compiler import CompiledContract
from contracts.pinning import require_pinned_major
from contracts.sla import SlaUnitError, freshness_window
from contracts.validate import Validation, Validator
from evidence.lifecycle import Lifecycle
from evidence.log import tree_size
from evidence.status_list import publish_status_lists, status_directory, write_status_files
from evidence.witness import configured_witnesses, submit_to_witnesses, witness_summary
from flows import events
from flows.ahead import Ahead, clear_dead_spools, runs_on_dask
from flows.pipeline import Pipeline, pipeline_for
from flows.prefetch import prefetched
from flows.progress import ProgressLine
from flows.redaction import (
    failed_state,
    failure_message,
    install_prefect_scrubbing,
    link_artifact,
    markdown_artifact,
    remember_secrets,
    scrub,
    scrubbed_errors,
    table_artifact,
)
from flows.run_log import is_expected
from flows.runners import task_runner_from_environment
from flows.summary import ConnectorResult, RunSummary, timed
from lake.deletions import PendingDeletions, cancel_deleted, deleted_record_keys, settle_pending
from lake.freshness import Freshness, dataset_freshness
from lake.landing import Breach, LandedBatch, Lander, batch_id_for, content_digest, settle_staged
from lake.runs import FAILED, OK, Heartbeat, finish_run, reap_dead_runs, start_run
from onceonly.errors import (
    CatalogError,
    ConnectorBusy,
    ContractBreached,
    ContractError,
    OnceOnlyError,
    TransientError,
)
from onceonly.files import restrict_new_files, secure_home
from onceonly.memory import RELEASE_EVERY, release_freed_memory
from onceonly.privacy import scrub_exception_message
from onceonly.settings import Settings
from sharing.extracts import extract_policy, refresh_extracts


class ConnectorRunFailed(OnceOnlyError):
    """A connector failed part-way; ``result`` holds what it landed before failing."""

    def __init__(self, result: ConnectorResult) -> None:
        super().__init__(result.error or "failed")
        self.result = result


class RunFailed(OnceOnlyError):
    """The run ended with failed connectors (or could not finish); the message says which."""


# The batch tasks work on rows (personal data; a validation holds them, a cursor may quote a
# key): their results are never persisted by Prefect, whatever PREFECT_RESULTS_PERSIST_BY_DEFAULT says.
@task(name="validate-batch", cache_policy=NO_CACHE, persist_result=False)
@scrubbed_errors
def validate_batch(validator: Validator, batch: pa.RecordBatch, connector: str) -> Validation:
    return validator.validate(batch, connector=connector)


@task(name="land-batch", cache_policy=NO_CACHE, persist_result=False)
@scrubbed_errors
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
@scrubbed_errors
def expire_and_publish_status(pipeline: Pipeline) -> int:
    """失效 for certificates past valid_to, then sign, log and write the changed status lists."""
    with pipeline.catalog.begin() as conn:
        expired = Lifecycle(pipeline.log).expire_due(conn, dt.date.today())
        publish_status_lists(conn, pipeline.log)
    write_status_files(pipeline.catalog, status_directory(pipeline.settings.home))
    release_freed_memory()  # before the extracts: what the pass freed would stay resident through them
    return expired


@task(name="write-township-extracts", cache_policy=NO_CACHE)
@scrubbed_errors
def write_township_extracts(pipeline: Pipeline) -> list[Path]:
    """The next extract of every township marked stale (sharing.extracts): its folder each.

    What an extract holds and masks comes from every contract and the matters catalogue: when one
    of them cannot be read (a broken contract file fails its own dataset's connector this run),
    no extract is written, the townships stay marked, and the next run writes them."""
    settings = pipeline.settings
    try:
        policy = extract_policy(settings.contracts_dir, settings.matters_file, settings.extracts_in_clear)
    except ContractError as exc:  # a misconfigured policy (an unknown matter) still fails the run
        get_run_logger().warning(
            "township extracts not written this run (the townships stay marked; the next run writes "
            "them): %s",
            scrub_exception_message(exc),
        )
        return []
    written = refresh_extracts(pipeline.catalog, settings.extracts_dir, pipeline.log, policy)
    return [extract.folder for extract in written]


@task(name="submit-to-witnesses", cache_policy=NO_CACHE)
@scrubbed_errors
def witness_checkpoint(pipeline: Pipeline) -> int:
    """The newest checkpoint to the district's witnesses (ONCEONLY_WITNESSES), their cosignatures
    kept for bundles; returns how many cosigned. A witness that is down or refuses, or a wrong
    setting, is a warning: the run's data has landed whatever the witnesses say."""
    logger = get_run_logger()
    try:
        witnesses = configured_witnesses(pipeline.settings)
        outcomes = submit_to_witnesses(pipeline.catalog, witnesses) if witnesses else []
    except OnceOnlyError as exc:
        logger.warning("witnesses: %s", scrub_exception_message(exc))
        return 0
    for outcome in outcomes:
        (logger.info if outcome.ok else logger.warning)("%s", witness_summary(outcome))
        if not outcome.ok:
            events.witness_refused(
                witness=outcome.witness.label,
                tree_size=outcome.tree_size,
                error=witness_summary(outcome),
                transient=isinstance(outcome.error, TransientError),
            )
    return sum(outcome.ok for outcome in outcomes)


def _begin(pipeline: Pipeline, run_id: str) -> list[str]:
    """Mark dead runs crashed (their leases released) and this one running, in one transaction."""
    with pipeline.catalog.begin() as conn:
        crashed = reap_dead_runs(conn, heartbeat_seconds=pipeline.settings.heartbeat_seconds)
        start_run(conn, run_id, heartbeat_seconds=pipeline.settings.heartbeat_seconds)
    logger = get_run_logger()
    for dead in crashed:
        logger.warning("run %s died without finishing: marked crashed, its connectors released", dead)
    return crashed


@task(name="recover-dead-runs", cache_policy=NO_CACHE)
@scrubbed_errors
def recover(pipeline: Pipeline, run_id: str) -> dict[str, int]:
    """Finish what dead runs left, before this run pulls anything.

    Each connector with something left over is taken under this run's
    lease — a connector a live run holds is left to it — and its staged lake files of committed
    batches are published and the rest discarded, and deletions of its landed batches are
    cancelled (``lake.deletions``). Under the lease, no other run can be staging or landing for
    that connector meanwhile.
    """
    logger = get_run_logger()
    settings = pipeline.settings
    registrations = pipeline.registrations
    staged = set(pipeline.lake.staged_connectors())
    pending = {name: PendingDeletions(settings.home, name) for name in registrations}
    leftover = staged | {name for name, p in pending.items() if p.batches()}
    published = discarded = cancelled = 0
    spools = clear_dead_spools(pipeline)
    if spools:
        logger.info(
            "removed the pull-ahead spool of %d run(s) that did not finish: what they landed is in "
            "the catalog, the rest is pulled again from the cursor",
            spools,
        )
    for name in sorted(leftover):
        dataset = registrations[name].dataset if name in registrations else "?"
        try:
            with pipeline.catalog.begin() as conn:
                acquire_lease(conn, name, dataset, run_id, settings.lease_seconds)
        except ConnectorBusy:
            continue  # a live run holds it: what is staged is its work in progress
        try:
            settled = settle_staged(pipeline.catalog, pipeline.lake, name)
            published += len(settled.published)
            discarded += len(settled.discarded)
            for batch_id in settled.published:
                logger.warning(
                    "%s: batch %s was committed but not in the lake: published now", name, batch_id[:12]
                )
            if name in pending:
                for done in settle_pending(
                    pipeline.catalog,
                    pipeline.log,
                    pending[name],
                    dataset,
                    status_dir=status_directory(settings.home),
                    drop_unlanded=False,
                ):
                    cancelled += done.certificates
        finally:
            with pipeline.catalog.begin() as conn:
                release_lease(conn, name, run_id)
    return {"published": published, "discarded": discarded, "cancelled": cancelled}


@flow(name="sync-connector", flow_run_name="sync-{connector_name}")
def sync_connector(
    connector_name: str, run_id: str, settings: Settings | None = None
) -> ConnectorResult | State:
    """Pull one department's system from its cursor to the end, batch by batch.

    Returns the connector's result, or a Failed state whose message is the one line that says
    why (its data a ``ConnectorRunFailed`` holding what landed before, or the error itself).
    """
    try:
        return _sync(connector_name, run_id, settings)
    except Exception as exc:  # outside the pull: an unknown name, the catalog unreachable, a bug
        return failed_state(exc)


def _sync(connector_name: str, run_id: str, settings: Settings | None) -> ConnectorResult | State:
    install_prefect_scrubbing()
    logger = get_run_logger()
    pipeline = pipeline_for(settings or Settings())
    remember_secrets(pipeline.secret_values())
    registration = pipeline.registration(connector_name)
    result = ConnectorResult(connector_name, registration.dataset)
    started = time.monotonic()
    try:
        with pipeline.catalog.begin() as conn:
            acquire_lease(conn, connector_name, registration.dataset, run_id, pipeline.settings.lease_seconds)
    except ConnectorBusy as exc:
        result.status, result.error, result.cause = "busy", failure_message(exc), "transient"
        logger.warning("%s", result.error)
        return Failed(message=result.error, data=ConnectorRunFailed(result))
    outcome: ConnectorResult | State = result
    try:
        _pull_until_done(pipeline, connector_name, run_id, result)
    except OnceOnlyError as exc:  # expected: the source, the contract or the catalog said no
        result.status = "breached" if result.breached else "failed"
        result.error = failure_message(exc)
        result.cause = "transient" if isinstance(exc, TransientError) else "terminal"
        if is_expected(exc):
            logger.error("%s", result.error)
        else:  # the catalog refused for a reason nobody planned for: keep the traceback
            logger.exception("%s", result.error)
        outcome = Failed(message=result.error, data=ConnectorRunFailed(result))
    except BaseException as exc:  # a bug: its traceback goes to the log as it propagates
        result.status, result.error, result.cause = "failed", failure_message(exc), "terminal"
        raise
    finally:
        result.seconds = time.monotonic() - started
        ahead = Ahead.of(run_id)
        if ahead is not None:  # nothing may still pull it ahead once its lease is released
            ahead.settle(connector_name)
        with pipeline.catalog.begin() as conn:  # the failure recorded while the lease is still ours
            if result.status != "ok":
                record_failure(conn, connector_name, registration.dataset, run_id, result.error or "failed")
            release_lease(conn, connector_name, run_id)
        _publish_rules(connector_name, result)
        _publish_data_docs(pipeline, connector_name, run_id, result)
    if result.status != "ok":
        return outcome
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
    with pipeline.catalog.read() as conn:
        progress = ProgressLine(
            connector_name, logger, expected=connector.remaining(cursor_of(conn, connector_name))
        )
        freshness = _Freshness.before(conn, compiled, connector_name, logger)
    retrying = Retrying(
        retry=retry_if_exception_type(TransientError),
        stop=stop_after_attempt(settings.connector_attempts),
        wait=wait_exponential(multiplier=settings.retry_wait_seconds, max=300),
        reraise=True,
        before_sleep=lambda rs: logger.warning(
            "%s: attempt %d failed (%s); resuming from the last landed batch",
            connector_name,
            rs.attempt_number,
            _why(rs.outcome.exception() if rs.outcome else None),
        ),
    )
    ahead = Ahead.of(run_id)
    for attempt in retrying:
        with attempt:
            with pipeline.catalog.read() as conn:
                cursor = cursor_of(conn, connector_name)
            with result.timed("pull"):
                prepared = ahead.take(connector_name, cursor) if ahead is not None else None
            if ahead is not None and prepared is not None:  # pulled and validated on a Dask worker
                connector.take_over(prepared.handover)
                batches = _waited(ahead.replay(prepared), result, stage="pull")
            elif connector.prefetchable:  # pulled and validated on a second thread, a batch ahead
                pulling = functools.partial(
                    _pull_and_validate, connector, validator, cursor, settings.batch_size, result
                )
                batches = _waited(prefetched(pulling, name=f"pull-{connector_name}"), result)
            else:  # its landed() must not meet its pull on another thread: one batch at a time
                batches = _waited(
                    _pull_and_validate(connector, validator, cursor, settings.batch_size, result), result
                )
            with contextlib.closing(batches):  # on leaving, early or not, the puller stops
                for pulled, validation in batches:
                    landing = time.perf_counter()
                    result.observe(validation)
                    digest = content_digest(pulled.batch)
                    _refuse_breach(lander, connector_name, compiled, validation, cursor, digest, result)
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
                    progress.landed(landed)
                    if not landed.already_landed and landed.pulled:
                        freshness.landed(landed, run_id)
                    release_freed_memory(at_most_every=RELEASE_EVERY)  # RSS follows what is in use
                    result.stage_seconds["land"] = result.stage_seconds.get("land", 0.0) + (
                        time.perf_counter() - landing
                    )


def _pull_and_validate(
    connector: Connector,
    validator: Validator,
    cursor: Cursor | None,
    batch_size: int,
    result: ConnectorResult,
) -> Iterator[tuple[Pulled, Validation]]:
    """Each batch pulled, then validated; the wall time of each stage added to ``result``. The
    connector's pull is closed here when this stops early (a validation error, a close)."""
    with contextlib.closing(connector.pull(cursor, batch_size)) as batches:
        while True:
            with result.timed("pull"):
                pulled = next(batches, None)
            if pulled is None:
                return
            with result.timed("validate"):
                validation = validate_batch(validator, pulled.batch, connector.name)
            yield pulled, validation


def _waited(
    batches: Iterator[tuple[Pulled, Validation]], result: ConnectorResult, stage: str = "wait"
) -> Generator[tuple[Pulled, Validation], None, None]:
    """The batches, the time landing waits for each added to ``stage``: ``wait`` for the
    prefetched or inline ones, ``pull`` for those a Dask worker pulled and validated. Closing
    this closes ``batches`` (the puller stops)."""
    try:
        while True:
            with result.timed(stage):
                item = next(batches, None)
            if item is None:
                return
            yield item
    finally:
        close = getattr(batches, "close", None)
        if close is not None:
            close()


@dataclass
class _Freshness:
    """Announces each landed batch (``onceonly.batch.landed``, what the freshness automation
    waits for) and, once, that a dataset which had gone stale lands again."""

    connector: str
    stale: Freshness | None
    logger: Any

    @classmethod
    def before(cls, conn: Connection, compiled: CompiledContract, connector: str, logger: Any) -> _Freshness:
        try:
            window = freshness_window(compiled.contract)
        except SlaUnitError:
            window = None  # `onceonly alerts install` and the watch flow name the bad unit
        dataset = compiled.contract.id
        (state,) = dataset_freshness(conn, {dataset: window})
        return cls(connector, state if state.stale else None, logger)

    def landed(self, landed: LandedBatch, run_id: str) -> None:
        events.batch_landed(
            connector=self.connector,
            dataset=landed.dataset,
            batch_id=landed.batch_id,
            run_id=run_id,
            rows=landed.pulled,
            accepted=landed.accepted,
            certificates=landed.certificates,
        )
        if self.stale is not None:
            self.logger.info("%s: recovered — %s", landed.dataset, self.stale.describe())
            events.dataset_recovered(
                connector=self.connector,
                dataset=landed.dataset,
                run_id=run_id,
                silent_for=self.stale.describe(),
            )
            self.stale = None


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


BREACH_EVENT = events.BREACHED


def _refuse_breach(
    lander: Lander,
    connector_name: str,
    compiled: CompiledContract,
    validation: Validation,
    cursor: Cursor | None,
    content_sha256: str,
    result: ConnectorResult,
) -> None:
    """Stop the connector when a batch breaks its contract beyond ``maxErrorRate``.

    A breached batch is kept in quarantine (not landed, nothing issued, cursor unmoved), counted
    in the connector's result and announced as a Prefect event.
    """
    if not validation.breaches(compiled):
        return
    breach = lander.refuse(
        connector=connector_name,
        compiled=compiled,
        validation=validation,
        cursor_before=cursor,
        content_sha256=content_sha256,
    )
    rules = validation.failed_rules()
    result.breached = True
    result.breach_rules = rules
    result.pulled += breach.pulled
    result.quarantined += breach.quarantined
    announce_breach(breach, validation, run_id=lander.run_id)
    broken = ", ".join(f"{rule} ({count} rows)" for rule, count in sorted(rules.items(), key=lambda r: -r[1]))
    raise ContractBreached(
        f"connector {connector_name!r}: {breach.quarantined} of {breach.pulled} rows "
        f"({breach.error_rate:.0%}) broke contract {breach.contract}, above its maxErrorRate "
        f"{breach.max_error_rate:.0%} — rules broken: {broken}; nothing from this batch was issued "
        f"and the cursor stays put; no more certificates from dataset {breach.dataset} in this run "
        f"(the rows are in quarantine, batch {breach.batch_id[:12]}: `onceonly quarantine report`)"
    )


def announce_breach(breach: Breach, validation: Validation, *, run_id: str) -> None:
    """Emit ``onceonly.contract.breached`` on resource ``onceonly.dataset.<id>`` for automations."""
    events.contract_breached(
        connector=breach.connector,
        dataset=breach.dataset,
        first=breach.first,
        payload={
            "contract": breach.contract,
            "batch_id": breach.batch_id,
            "run_id": run_id,
            "pulled": breach.pulled,
            "quarantined": breach.quarantined,
            "error_rate": round(breach.error_rate, 6),
            "max_error_rate": breach.max_error_rate,
            # Counts only: examples may be personal, and masking is the last line of defence.
            "rules": validation.failed_rules(),
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
    table_artifact(
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
    link_artifact(
        key=f"datadocs-{connector_name}",
        link=url,
        link_text=f"Data Docs: {connector_name} against {result.dataset}",
        description=(
            f"Great Expectations Data Docs of this run's validation of {connector_name} "
            f"(site {settings.datadocs_dir.resolve()})."
        ),
    )


@flow(name="daily_sharing", flow_run_name="daily-sharing", task_runner=task_runner_from_environment())
def daily_sharing(connectors: list[str] | None = None, settings: Settings | None = None) -> State:
    """Run every registered connector (or the named ones), then refresh township extracts.

    ``settings`` are built here from the environment when the caller (a worker) passes none.
    Returns Completed, or Failed naming the connectors that failed; the summary is in the
    catalog (``runs.summary`` under the flow-run id) and the ``daily-sharing-summary`` artifact.
    A run that cannot go on for an expected reason (an unknown connector name, the catalog
    unreachable) ends Failed with that reason in one line; a bug raises, with its traceback.
    """
    try:
        return _daily_sharing(connectors, settings)
    except Exception as exc:
        return failed_state(exc)


def _daily_sharing(connectors: list[str] | None, settings: Settings | None) -> State:
    install_prefect_scrubbing()
    restrict_new_files()
    settings = settings or Settings()
    logger = get_run_logger()
    tightened = secure_home(settings.home)
    if tightened:
        logger.warning(
            "%d file(s) or folder(s) under %s were readable by others: now 600/700",
            len(tightened),
            settings.home,
        )
    pipeline = pipeline_for(settings)
    remember_secrets(pipeline.secret_values())
    run_id = str(prefect_flow_run.id or uuid.uuid4())
    if pipeline.key_created:
        logger.info("created the log's signing key (encrypted) in %s", settings.keys_dir)
        pipeline.key_created = False  # the pipeline is reused by later runs in this process
    names = list(dict.fromkeys(connectors or sorted(pipeline.registrations)))
    for name in names:
        pipeline.registration(name)  # an unknown name fails now, naming the known ones
    crashed = _begin(pipeline, run_id)
    results: list[ConnectorResult] = []
    stages: dict[str, float] = {}
    try:
        with Heartbeat(pipeline.catalog, run_id, every=settings.heartbeat_seconds):
            with timed(stages, "recover"):
                recovered = recover(pipeline, run_id)
                _sync_connector_blocks(pipeline, logger)
            breached: dict[str, str] = {}  # dataset -> the connector whose batch breached its contract
            # On Dask every connector pulls and validates at once on the workers; landing stays
            # here, one connector after another in this order, whatever the runner.
            with (
                timed(stages, "connectors"),
                Ahead.start(pipeline, names, run_id) if runs_on_dask() else contextlib.nullcontext(),
            ):
                for name in names:
                    results.append(_sync_one(pipeline, name, run_id, settings, breached))
            # Extracts follow the catalog's marks, not this run's results: batches landed by a
            # connector that failed later, or by a run that died before this point, are included.
            # Before the extracts: an expired certificate's township is marked and gets a fresh one.
            with timed(stages, "status"):
                expired = expire_and_publish_status(pipeline)
            if expired:
                logger.info("expire pass: %d certificate(s) past valid_to are now 失效", expired)
            with timed(stages, "extracts"):
                extracts = write_township_extracts(pipeline)
            with timed(stages, "witnesses"):
                witness_checkpoint(pipeline)  # last: the newest checkpoint, cosigned
            with pipeline.catalog.read() as conn:
                size = tree_size(conn)
    except BaseException as exc:
        error = f"the run stopped: {failure_message(exc)}"
        with contextlib.suppress(CatalogError), pipeline.catalog.begin() as conn:  # keep the first error
            finish_run(conn, run_id, FAILED, {"run_id": run_id, "error": error})
        raise
    summary = RunSummary(
        run_id=run_id,
        connectors=results,
        tree_size=size,
        extracts=len(extracts),
        expired=expired,
        vkey=pipeline.key.vkey,
        home=str(settings.home.resolve()),
        catalog=_redacted(settings.catalog_url),
        lake=settings.lake_location,
        extracts_dir=str(settings.extracts_dir.resolve()),
        crashed_runs=crashed,
        recovered=recovered,
        stage_seconds={stage: round(t, 3) for stage, t in stages.items()},
    )
    with pipeline.catalog.begin() as conn:
        finish_run(conn, run_id, OK if summary.ok else FAILED, summary.to_json())
    table_artifact(
        key="daily-sharing-summary",
        table=summary.rows(),
        description=(
            f"Run {run_id}: {summary.pulled} rows pulled, {summary.certificates} certificates issued, "
            f"transparency log size {size}, {len(extracts)} township extracts written. {summary.message()}"
        ),
    )
    markdown_artifact(key="daily-sharing-report", markdown=summary.report(), description=summary.message())
    if not summary.ok:
        # A Failed state whose data is an exception, not a summary: the engine (and a worker)
        # turns it into that exception; the summary lives in the catalog and the artifact.
        return Failed(message=scrub(summary.message()), data=RunFailed(scrub(summary.message())))
    return Completed(message=scrub(summary.message()))


def summary_of(state: State, settings: Settings | None = None) -> RunSummary | None:
    """The summary a finished ``daily_sharing`` run stored in the catalog (None if it stored none)."""
    from catalog import Catalog
    from lake.runs import run_summary

    settings = settings or Settings()
    catalog = Catalog.connect(settings.catalog_url, create=False)
    try:
        with catalog.read() as conn:
            stored = run_summary(conn, str(state.state_details.flow_run_id))
    finally:
        catalog.dispose()
    if stored is None or not stored[1] or "connectors" not in stored[1]:
        return None
    return RunSummary.from_json(stored[1])


def _sync_one(
    pipeline: Pipeline, name: str, run_id: str, settings: Settings, breached: dict[str, str]
) -> ConnectorResult:
    """One connector's subflow; whatever happens, a result for the summary."""
    logger = get_run_logger()
    dataset = pipeline.registrations[name].dataset if name in pipeline.registrations else "?"
    if dataset in breached:  # nothing more is issued from a breached dataset in this run
        error = (
            f"connector {name!r} not pulled: a batch from {breached[dataset]!r} breached the "
            f"contract of dataset {dataset} earlier in this run"
        )
        logger.error("%s", error)
        result = ConnectorResult(name, dataset, status="failed", error=error, cause="terminal")
        with pipeline.catalog.begin() as conn:
            record_failure(conn, name, dataset, run_id, error)
    else:
        # No Prefect heartbeat thread of its own: the run's flow beats for this process, and
        # joining a subflow's thread took up to 1 s (it sleeps in 1-second steps), ~0.5 s per
        # connector of every run. So a Prefect automation that marks runs Crashed on missing
        # heartbeats sees the run, not its sync-connector subflows (the catalog's own
        # heartbeat and lease recover those: lake.runs).
        with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
            state = sync_connector(name, run_id, settings, return_state=True)
        outcome = state.result(raise_on_failure=False)
        if isinstance(outcome, ConnectorResult):
            return outcome
        if isinstance(outcome, ConnectorRunFailed):
            result = outcome.result
        else:  # failed outside the pull (its line, or a bug's traceback, is in the subflow's log)
            cause = outcome if isinstance(outcome, BaseException) else RuntimeError(str(outcome))
            error = failure_message(cause)
            if not error.startswith(f"connector {name!r}"):
                error = f"connector {name!r}: {error}"
            result = ConnectorResult(name, dataset, status="failed", error=error, cause="terminal")
        if result.breached:
            breached[dataset] = name
        elif result.status != "busy":  # another run is pulling it: not a failure to alert on
            events.connector_failed(
                connector=name,
                dataset=dataset,
                run_id=run_id,
                cause=result.cause or "terminal",
                status=result.status,
                error=result.error or "failed",
            )
    return result


def _sync_connector_blocks(pipeline: Pipeline, logger: Any) -> None:
    """Mirror the catalog's registrations as Prefect blocks on the API this run reports to.

    The catalog is the one source of truth; the blocks are what operators see in the UI (under
    Blocks, type ``onceonly-connector``), saved wherever the flow runs and removed with their
    connector (``connectors.block.sync_blocks``).
    """
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
    "ConnectorRunFailed",
    "RunFailed",
    "announce_breach",
    "daily_sharing",
    "summary_of",
    "sync_connector",
]
