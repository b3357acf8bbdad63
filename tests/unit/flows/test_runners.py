"""Choosing the daily flow's task runner (flows.runners)."""

from __future__ import annotations

import pytest
from prefect.task_runners import ThreadPoolTaskRunner
from prefect_dask import DaskTaskRunner

from flows.runners import task_runner_for, task_runner_from_environment
from onceonly.settings import Settings


def test_threads_by_default() -> None:
    assert isinstance(task_runner_for(Settings()), ThreadPoolTaskRunner)


def test_dask_starts_a_local_cluster_of_single_threaded_processes() -> None:
    runner = task_runner_for(Settings(task_runner="dask", dask_workers=3))
    assert isinstance(runner, DaskTaskRunner)
    assert runner.address is None
    assert runner.cluster_kwargs["n_workers"] == 3
    assert runner.cluster_kwargs["threads_per_worker"] == 1
    assert runner.cluster_kwargs["processes"] is True
    assert isinstance(runner.duplicate(), type(runner))  # what each flow run enters


def test_dask_with_an_address_joins_that_cluster() -> None:
    runner = task_runner_for(Settings(task_runner="dask", dask_address="tcp://10.0.0.5:8786"))
    assert isinstance(runner, DaskTaskRunner)
    assert runner.address == "tcp://10.0.0.5:8786"


def test_the_environment_chooses_for_a_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ONCEONLY_TASK_RUNNER", "dask")
    assert isinstance(task_runner_from_environment(), DaskTaskRunner)
    monkeypatch.setenv("ONCEONLY_TASK_RUNNER", "threads")  # not a runner: the flow's start says so
    assert isinstance(task_runner_from_environment(), ThreadPoolTaskRunner)
    with pytest.raises(ValueError, match="task_runner"):
        Settings()


def test_local_cluster_workers_start_without_the_passphrase_or_the_catalog_url(
    prefect_harness: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    from prefect import flow, task

    monkeypatch.setenv("ONCEONLY_KEY_PASSPHRASE", "very-secret-passphrase-123456")
    monkeypatch.setenv("ONCEONLY_DATABASE_URL", "postgresql+psycopg://u:db-password-9@db/onceonly")

    @task
    def environment() -> dict[str, str | None]:
        return {n: os.environ.get(n) for n in ("ONCEONLY_KEY_PASSPHRASE", "ONCEONLY_DATABASE_URL")}

    @flow(task_runner=task_runner_for(Settings(task_runner="dask", dask_workers=1)))
    def probe() -> dict[str, str | None]:
        return environment.submit().result()

    assert probe() == {"ONCEONLY_KEY_PASSPHRASE": None, "ONCEONLY_DATABASE_URL": None}
    assert os.environ["ONCEONLY_KEY_PASSPHRASE"] == "very-secret-passphrase-123456"  # the flow's own
