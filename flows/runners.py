"""Which Prefect task runner the daily flow uses: threads (the default) or a Dask cluster.

Example::

    ONCEONLY_TASK_RUNNER=dask onceonly run              # a LocalCluster of processes on this host
    ONCEONLY_TASK_RUNNER=dask ONCEONLY_DASK_ADDRESS=tcp://10.0.0.5:8786 prefect worker start ...

    flow = daily_sharing.with_options(task_runner=task_runner_for(settings))

With Dask, each connector's pull and validation runs as a task on the cluster, all connectors at
once, while the flow lands what they prepared one connector after another (``flows.ahead``);
with threads the flow lands each batch in turn while the next one is pulled and validated on a
second thread (``flows.prefetch``). Both land the same batches
in the same order: the same certificates, the same log.

A deployment's worker imports the flow, so the runner is chosen when ``flows.daily_sharing`` is
imported, from the same ``ONCEONLY_*`` settings (environment or ``.env``) the flow reads; the
CLI chooses it from the settings it built (``cli.run``).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from typing import Any

from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner

from onceonly.settings import Settings


def task_runner_for(settings: Settings) -> TaskRunner[Any]:
    """The task runner ``settings.task_runner`` names (``thread`` or ``dask``)."""
    if settings.task_runner == "dask":
        return dask_task_runner(settings.dask_address, settings.dask_workers)
    return ThreadPoolTaskRunner()


def task_runner_from_environment() -> TaskRunner[Any]:
    """The runner for a flow imported by a worker: ``ONCEONLY_TASK_RUNNER`` and friends.

    Settings that do not validate fall back to threads here: the flow builds its settings
    again when it starts and fails there, with the error in its log, not at import.
    """
    try:
        settings = Settings()
    except ValueError:
        return ThreadPoolTaskRunner()
    return task_runner_for(settings)


def dask_task_runner(address: str | None, workers: int | None) -> TaskRunner[Any]:
    """A Dask task runner: the scheduler at ``address``, else a LocalCluster of ``workers``
    single-threaded processes (default: one per core) started with the flow."""
    from prefect_dask import DaskTaskRunner

    class OnceOnlyDaskTaskRunner(DaskTaskRunner):
        """Hands the flow's Prefect API to the workers of a cluster it starts.

        Under Prefect's ephemeral server the API address lives in the flow's process only: each
        LocalCluster worker started its own temporary server (seconds each, and task runs
        recorded where no UI shows them). Workers of a cluster started elsewhere (``address``)
        must have ``PREFECT_API_URL`` set on their hosts.
        """

        def __enter__(self) -> OnceOnlyDaskTaskRunner:
            self._restore: dict[str, str | None] = {}
            if self.address is None and not os.environ.get("PREFECT_API_URL"):
                from prefect.client.orchestration import get_client

                self._restore["PREFECT_API_URL"] = None
                os.environ["PREFECT_API_URL"] = str(get_client(sync_client=True).api_url)
            # The scheduler of a LocalCluster lives in this process: its INFO lines (workers
            # joining and leaving) would fill the flow's log.
            self._quiet = logging.getLogger("distributed")
            self._level = self._quiet.level
            self._quiet.setLevel(logging.WARNING)
            try:
                super().__enter__()
                if self.address is None and not _in_dask_worker():
                    # Start the LocalCluster now (it would start at the first task), its worker
                    # processes without what they never need: the key passphrase and the catalog
                    # URL (its password) would otherwise be in their environment.
                    with _environment_without(_NOT_FOR_WORKERS):
                        _ = self.client
            except BaseException:
                self._restore_environment()
                raise
            return self

        def __exit__(self, *exc_info: Any) -> None:
            try:
                super().__exit__(*exc_info)
            finally:
                self._restore_environment()

        def _restore_environment(self) -> None:
            if hasattr(self, "_quiet"):
                self._quiet.setLevel(self._level)
            for name, value in getattr(self, "_restore", {}).items():
                if value is None:
                    with contextlib.suppress(KeyError):
                        del os.environ[name]
                else:
                    os.environ[name] = value

    if address:
        return OnceOnlyDaskTaskRunner(address=address)
    return OnceOnlyDaskTaskRunner(
        cluster_kwargs={
            "n_workers": workers or os.cpu_count() or 1,
            "threads_per_worker": 1,
            "processes": True,
            "dashboard_address": None,
            "silence_logs": logging.WARNING,
        }
    )


_NOT_FOR_WORKERS = ("ONCEONLY_KEY_PASSPHRASE", "ONCEONLY_DATABASE_URL")


def _in_dask_worker() -> bool:
    from distributed import get_worker

    try:
        get_worker()
    except ValueError:
        return False
    return True


@contextlib.contextmanager
def _environment_without(names: tuple[str, ...]) -> Iterator[None]:
    kept = {name: os.environ.pop(name) for name in names if name in os.environ}
    try:
        yield
    finally:
        os.environ.update(kept)


__all__ = ["dask_task_runner", "task_runner_for", "task_runner_from_environment"]
