"""Pull and validate ahead on the task runner's workers; land in the flow, connector by connector.

Example (what ``flows.daily_sharing`` does when its task runner is Dask)::

    with Ahead.start(pipeline, ["gongan-household", "scjg-licences"], run_id) as ahead:
        prepared = ahead.take("gongan-household", cursor)   # waits for that connector's task
        if prepared is not None:                            # None: pull here (cursor moved)
            for pulled, validation in ahead.replay(prepared):
                ...                                         # land, in order

Each connector's ``pull-and-validate`` task runs on a worker, all of them at once: it pulls from
the connector's cursor to the end and validates each batch against the contract, writing every
batch and its validation to a spool under the home (``spool/<run>/<connector>/``, mode 600 in
700 folders: they hold personal data) instead of sending rows back through the scheduler. The
flow then lands the spooled batches exactly as it lands the batches it pulls itself — same
batch ids, same order, one writer — so the catalog and the log end as with the thread runner.

The run takes every connector's lease before submitting its task (no other run can move its
cursor or stage its snapshot meanwhile), and lands a spool only if the connector's cursor is
still the one the task pulled from; otherwise it pulls again in the flow. A pull that fails
part-way spools what it read before: those batches land and then the error is raised where the
flow would have met it (a transient one is retried in the flow from the last landed batch).
Workers need what the pull needs — the department systems' secrets in their environment, the
home and the drop folders on a filesystem they share with the flow — but neither the catalog
nor the signing key: the settings they get carry neither the key passphrase nor the catalog URL.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import pickle
import shutil
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.futures import PrefectFuture

from connectors import Registration
from connectors.base import Cursor, Pulled
from connectors.state import acquire_lease, cursor_of, release_lease, renew_lease
from contracts.pinning import require_pinned_major
from contracts.validate import Validation, Validator
from flows.pipeline import Pipeline, check_context, compiled_contract, make_connector
from flows.redaction import failure_message, install_prefect_scrubbing, run_logger, scrubbed_errors
from lake.runs import live_runs
from onceonly.errors import ConnectorError, OnceOnlyError, TerminalError
from onceonly.files import private_dir, restrict_new_files
from onceonly.settings import Settings


class PullCrashed(ConnectorError, TerminalError):
    """The pull on a worker stopped on an unexpected error (its traceback is in the task's log)."""


@dataclass
class Prepared:
    """What a connector's ``pull-and-validate`` task left in its spool."""

    connector: str
    cursor: Cursor | None  # where the pull started
    spool: Path
    batches: int = 0
    rows: int = 0
    seconds: float = 0.0
    error: OnceOnlyError | None = None  # raised once the spooled batches have landed
    handover: dict[str, Any] = field(default_factory=dict)  # connectors.base.Connector.handover


@task(
    name="pull-and-validate",
    task_run_name="pull-and-validate-{connector}",
    cache_policy=NO_CACHE,
    persist_result=False,
)
@scrubbed_errors
def pull_and_validate(
    connector: str,
    registration: Registration,
    cursor: Cursor | None,
    settings: Settings,
    spool: Path,
    today: dt.date | None = None,
) -> Prepared:
    """Pull ``connector`` from ``cursor`` to the end, validating each batch (as of the flow's
    ``today``, not the worker's clock), into ``spool``."""
    install_prefect_scrubbing()
    restrict_new_files()
    started = time.monotonic()
    prepared = Prepared(connector, cursor, spool)
    private_dir(spool)
    source = None
    try:
        compiled = compiled_contract(settings, registration.dataset)
        require_pinned_major(registration, compiled.contract)
        validator = Validator(compiled, check_context(settings, today))
        source = make_connector(settings, registration)
        for pulled in source.pull(cursor, settings.batch_size):
            validation = validator.validate(pulled.batch, connector=connector)
            _spool(spool / f"{prepared.batches:06d}.pickle", (pulled, validation))
            prepared.batches += 1
            prepared.rows += pulled.batch.num_rows
    except OnceOnlyError as exc:
        prepared.error = exc
    except Exception as exc:  # a bug: keep its traceback here, fail the connector in one line
        run_logger().exception("%s: the pull stopped", connector)
        prepared.error = PullCrashed(connector, f"the pull stopped: {failure_message(exc)}")
    if source is not None:
        prepared.handover = source.handover()
    prepared.seconds = time.monotonic() - started
    return prepared


def worker_settings(settings: Settings) -> Settings:
    """What a worker gets: no key passphrase (it signs nothing) and the catalog URL without its
    password (it never opens the catalog; the URL only keeps registrations off the catalog's own
    database, ``connectors.paths``)."""
    url = settings.database_url
    if url:
        from sqlalchemy import URL, make_url

        parts = make_url(url)
        url = URL.create(
            parts.drivername, parts.username, None, parts.host, parts.port, parts.database, parts.query
        ).render_as_string(hide_password=False)
    return settings.model_copy(
        update={"key_passphrase": None, "key_passphrase_secret": None, "database_url": url}
    )


class Ahead:
    """The connectors being pulled ahead for one run (see the module's docstring)."""

    _RUNS: ClassVar[dict[str, Ahead]] = {}  # run id -> its Ahead, for the run's subflows in this process

    def __init__(self, pipeline: Pipeline, run_id: str) -> None:
        self.pipeline = pipeline
        self.run_id = run_id
        self.root = spool_root(pipeline.settings.home) / run_id
        self.futures: dict[str, PrefectFuture[Prepared]] = {}
        self.leased: list[tuple[str, str]] = []
        # A connector waits for its pull and for its turn to land while the others land, perhaps
        # longer than its lease: its hold is renewed until it lands, or another run could take it
        # and move its cursor (or stage its snapshot) under the pull ahead.
        self._stop = threading.Event()
        self._renewer = threading.Thread(target=self._renew, name=f"ahead-{run_id[:8]}", daemon=True)

    @classmethod
    def start(cls, pipeline: Pipeline, names: list[str], run_id: str) -> Ahead:
        """Take each connector's lease and submit its ``pull-and-validate`` task."""
        ahead = cls(pipeline, run_id)
        settings = pipeline.settings
        for_workers = worker_settings(settings)
        today = dt.date.today()
        cls._RUNS[run_id] = ahead
        try:
            # Dask ships the flow-run context with each task, the flow's parameters in it (the
            # CLI passes the settings, passphrase included): the tasks are sent without them.
            with _without_flow_parameters():
                for name in dict.fromkeys(names):
                    registration = pipeline.registration(name)
                    try:
                        with pipeline.catalog.begin() as conn:
                            acquire_lease(conn, name, registration.dataset, run_id, settings.lease_seconds)
                            cursor = cursor_of(conn, name)
                    except OnceOnlyError:
                        continue  # busy, or the catalog refused: the connector's own turn says so
                    ahead.leased.append((name, registration.dataset))
                    ahead.futures[name] = pull_and_validate.submit(
                        name, registration, cursor, for_workers, ahead.root / name, today
                    )
            ahead._renewer.start()
        except BaseException:
            ahead.close(waiting=False)
            raise
        return ahead

    @classmethod
    def of(cls, run_id: str) -> Ahead | None:
        return cls._RUNS.get(run_id)

    def take(self, connector: str, cursor: Cursor | None) -> Prepared | None:
        """The connector's prepared batches, once its task is done; None when there are none
        to land here (not prepared, taken already, prepared from another cursor, or the task
        was lost): the flow then pulls the connector itself."""
        future = self.futures.get(connector)
        if future is None:
            return None
        try:
            prepared = future.result()  # its lease is renewed while we wait
        except Exception as exc:  # the task crashed or its worker died (KilledWorker)
            run_logger().warning(
                "%s: the pull ahead was lost (%s): pulling here", connector, failure_message(exc)
            )
            self.settle(connector)
            return None
        finally:
            self.futures.pop(connector, None)
        if prepared.cursor != cursor:
            run_logger().warning(
                "%s: its cursor moved after the pull ahead started: pulling again here", connector
            )
            shutil.rmtree(prepared.spool, ignore_errors=True)
            return None
        return prepared

    def settle(self, connector: str) -> None:
        """Done with the connector (landed, failed or lost): wait for a task still running for
        it — its lease must stay held until nothing pulls it any more — and remove its spool."""
        future = self.futures.get(connector)
        if future is not None:
            with contextlib.suppress(Exception):
                future.wait()  # still in ``futures``: its lease is renewed meanwhile
        self.futures.pop(connector, None)
        shutil.rmtree(self.root / connector, ignore_errors=True)

    def replay(self, prepared: Prepared) -> Iterator[tuple[Pulled, Validation]]:
        """The spooled batches in pull order (each file removed once the next is asked for),
        then the error the pull stopped on, if any."""
        for index in range(prepared.batches):
            path = prepared.spool / f"{index:06d}.pickle"
            with open(path, "rb") as handle:
                pulled, validation = pickle.load(handle)  # written by this run's own task
            yield pulled, validation
            path.unlink()
        shutil.rmtree(prepared.spool, ignore_errors=True)
        if prepared.error is not None:
            raise prepared.error

    def close(self, *, waiting: bool = True) -> None:
        """Wait for tasks nobody took (a breached dataset's other connectors), release the
        leases taken for them, and remove the run's spool. ``waiting=False`` (the run is
        failing or interrupted): do not wait; a task still writing leaves a spool that the next
        run removes, and the run's leases lapse with it."""
        self._stop.set()
        try:
            if self._renewer.is_alive():
                self._renewer.join()
            if waiting:
                for future in list(self.futures.values()):
                    with contextlib.suppress(Exception):
                        future.wait()
        finally:
            self.futures.clear()
            self._RUNS.pop(self.run_id, None)
            with contextlib.suppress(OnceOnlyError), self.pipeline.catalog.begin() as conn:
                for name, _ in self.leased:
                    release_lease(conn, name, self.run_id)  # a no-op where the turn released it
            shutil.rmtree(self.root, ignore_errors=True)

    def _renew(self) -> None:
        settings = self.pipeline.settings
        every = min(settings.heartbeat_seconds, settings.lease_seconds / 3)
        while not self._stop.wait(every):
            waiting = [name for name, _ in self.leased if name in self.futures]
            with contextlib.suppress(OnceOnlyError), self.pipeline.catalog.begin() as conn:
                for name in waiting:  # a missed renewal is retried at the next one
                    renew_lease(conn, name, self.run_id, settings.lease_seconds)

    def __enter__(self) -> Ahead:
        return self

    def __exit__(self, kind: type[BaseException] | None, *rest: object) -> None:
        self.close(waiting=kind is None)


@contextlib.contextmanager
def _without_flow_parameters() -> Iterator[None]:
    from prefect.context import FlowRunContext

    context = FlowRunContext.get()
    if context is None:
        yield
        return
    # The parameters are in the context and in its flow run (the API's record of it).
    flow_run = context.flow_run.model_copy(update={"parameters": {}}) if context.flow_run else None
    with context.model_copy(update={"parameters": {}, "flow_run": flow_run}):
        yield


def spool_root(home: Path) -> Path:
    return home / "spool"


def clear_dead_spools(pipeline: Pipeline) -> int:
    """Remove the spools of runs that are not running any more (killed before they removed
    them: rows of personal data nobody will land); how many. Every run does this at its start,
    whatever its task runner."""
    base = spool_root(pipeline.settings.home)
    if not base.exists():
        return 0
    with pipeline.catalog.read() as conn:
        alive = live_runs(conn)
    dead = [folder for folder in base.iterdir() if folder.name not in alive]
    for folder in dead:
        shutil.rmtree(folder, ignore_errors=True)
    return len(dead)


def runs_on_dask() -> bool:
    """Whether the current flow's task runner is Dask (prefect_dask is imported only then)."""
    from prefect.context import FlowRunContext

    context = FlowRunContext.get()
    dask = sys.modules.get("prefect_dask")
    return bool(context and dask and isinstance(context.task_runner, dask.DaskTaskRunner))


def _spool(path: Path, value: object) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        pickle.dump(value, handle, protocol=pickle.HIGHEST_PROTOCOL)


__all__ = [
    "Ahead",
    "Prepared",
    "PullCrashed",
    "clear_dead_spools",
    "pull_and_validate",
    "runs_on_dask",
    "spool_root",
    "worker_settings",
]
