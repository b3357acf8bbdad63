"""``make server``: a real Prefect server with OnceOnly's deployments and a worker, in the foreground.

Example (from the repository root)::

    make server                                        # UI at http://127.0.0.1:4200
    ONCEONLY_PREFECT_PORT=4300 make server
    ONCEONLY_PREFECT_DB=postgres ONCEONLY_PREFECT_PG_DB=prefect make server
    .venv/bin/python -m deployments.server             # what `make server` runs

In order, as the README's "Prefect UI" section does by hand:

1. ``prefect server start`` on 127.0.0.1:``ONCEONLY_PREFECT_PORT`` (default 4200), with the
   UI and the scheduler. Its database is SQLite under ``PREFECT_HOME`` (default
   ``ONCEONLY_HOME/prefect``, as for ``onceonly run``), or with ``ONCEONLY_PREFECT_DB=postgres``
   the database ``ONCEONLY_PREFECT_PG_DB`` (default ``prefect``) of the PostgreSQL at
   127.0.0.1:5432 (user postgres), created when missing. (It runs through this module, which
   first lets Prefect 3.8's scheduler work under SQLAlchemy 2.1: :func:`ignore_state_in_bulk_inserts`.)
2. waits for ``/api/health``, creates the process work pool ``onceonly`` when missing;
3. ``prefect --no-prompt deploy --all --prefect-file deployments/prefect.yaml`` from the
   repository root, with ``ONCEONLY_REPO`` naming it (the deployments' pull step goes there);
4. ``prefect worker start --pool onceonly``, then stays in the foreground.

The children get this process's environment (``ONCEONLY_HOME``, the key passphrase, the
department secrets: the worker's flow runs need them) with ``PREFECT_API_URL`` naming the
server. Each runs in a process group of its own, with ``PR_SET_PDEATHSIG`` so that it dies
with this process even when this process is killed. SIGINT or SIGTERM stops the worker, then
the server (their whole process groups), and exits 0; a child that dies on its own stops the
others, and the exit is 1 with its name.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any, Literal

import httpx
from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from flows.server import _die_with
from onceonly.errors import ConfigurationError
from onceonly.files import private_dir, restrict_new_files

REPO = Path(__file__).resolve().parents[1]
PREFECT_FILE = "deployments/prefect.yaml"  # relative to REPO, where `prefect deploy` runs
WORK_POOL = "onceonly"
POSTGRES = "postgres@127.0.0.1:5432"  # the local PostgreSQL, trust authentication
STARTUP_SECONDS = 180.0  # the first start creates and migrates the database
STOP_SECONDS = 20.0  # a process group's grace between SIGTERM and SIGKILL


class ServerSettings(BaseSettings):
    """What ``make server`` reads from the environment (``ONCEONLY_PREFECT_*``, ``ONCEONLY_HOME``)."""

    model_config = SettingsConfigDict(env_prefix="ONCEONLY_PREFECT_", extra="ignore")

    port: int = Field(4200, ge=1, le=65535, description="The server's port on 127.0.0.1.")
    db: Literal["sqlite", "postgres"] = Field(
        "sqlite", description="sqlite: under PREFECT_HOME; postgres: the local PostgreSQL (127.0.0.1:5432)."
    )
    pg_db: str = Field(
        "prefect",
        pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,62}$",
        description="The PostgreSQL database of the server (with db=postgres), created when missing.",
    )
    home: Path = Field(Path("var"), validation_alias="ONCEONLY_HOME", description="ONCEONLY_HOME.")

    @property
    def ui_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_url(self) -> str:
        return f"{self.ui_url}/api"

    @property
    def database_url(self) -> str | None:
        """The server's PostgreSQL URL (asyncpg, Prefect's driver), or None for SQLite."""
        return f"postgresql+asyncpg://{POSTGRES}/{self.pg_db}" if self.db == "postgres" else None


_STOP_SIGNALS = frozenset({signal.SIGINT, signal.SIGTERM})


def _in_child(parent: int) -> Callable[[], None]:
    """Between fork and exec: take the stop signals again (the mask is inherited), and die
    with ``parent`` (``flows.server``'s PR_SET_PDEATHSIG)."""
    die_with_parent = _die_with(parent)

    def prepare() -> None:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)
        die_with_parent()

    return prepare


class Stopped(Exception):
    """SIGINT or SIGTERM arrived."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class ChildFailed(Exception):
    """A child process died, or a step failed; the message names it."""


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]

    @property
    def alive(self) -> bool:
        return self.process.poll() is None


class Supervisor:
    """Long-running children, each in a process group of its own, stopped newest first."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = dict(env)
        self.children: list[Child] = []

    def start(self, name: str, args: Sequence[str], *, module: str = "prefect") -> Child:
        """``python -m prefect ARGS`` (or ``-m module``) in a process group of its own."""
        # No signal between the fork and the bookkeeping: a child started is a child stopped.
        signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
        try:
            process = subprocess.Popen(
                [sys.executable, "-m", module, *(["prefect"] if module != "prefect" else []), *args],
                env=self.env,
                cwd=REPO,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # its own process group: stopped as a whole, not by the terminal's ^C
                preexec_fn=_in_child(os.getpid()),
            )
            child = Child(name, process)
            self.children.append(child)
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)
        return child

    def run(self, name: str, args: Sequence[str]) -> None:
        """Run a ``prefect`` command to its end (output to the terminal); fail naming it."""
        done = subprocess.run(
            [sys.executable, "-m", "prefect", *args], env=self.env, cwd=REPO, stdin=subprocess.DEVNULL
        )
        if done.returncode != 0:
            raise ChildFailed(f"{name} failed (exit code {done.returncode})")

    def check(self) -> None:
        for child in self.children:
            if not child.alive:
                raise ChildFailed(f"{child.name} exited with code {child.process.returncode}")

    def stop(self) -> None:
        for child in reversed(self.children):
            _stop_group(child)


def _stop_group(child: Child) -> None:
    """SIGTERM to the child's process group, SIGKILL to what is left after STOP_SECONDS."""
    group = child.process.pid  # start_new_session: the child leads its group
    with contextlib.suppress(ProcessLookupError):
        os.killpg(group, signal.SIGTERM)
    deadline = time.monotonic() + STOP_SECONDS
    while time.monotonic() < deadline:
        child.process.poll()  # reap the leader
        if not _group_alive(group):
            return
        time.sleep(0.2)
    _say(f"{child.name} did not stop within {STOP_SECONDS:.0f} s: killed")
    with contextlib.suppress(ProcessLookupError):
        os.killpg(group, signal.SIGKILL)
    child.process.wait()


def _group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def child_environment(settings: ServerSettings, environ: Mapping[str, str]) -> dict[str, str]:
    """The children's environment: this one, with the server's URL, home and database."""
    env = dict(environ)
    env["PREFECT_API_URL"] = settings.api_url
    env["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    env["ONCEONLY_REPO"] = str(REPO)
    # Absolute: the deployments' runs start in ONCEONLY_REPO, wherever this was started from.
    env["ONCEONLY_HOME"] = str(settings.home.resolve())
    env.setdefault("PREFECT_HOME", str((settings.home / "prefect").resolve()))
    if settings.database_url:
        # Both names: PREFECT_SERVER_… is Prefect 3's, PREFECT_API_… the older alias it still reads.
        env["PREFECT_SERVER_DATABASE_CONNECTION_URL"] = settings.database_url
        env["PREFECT_API_DATABASE_CONNECTION_URL"] = settings.database_url
    return env


def ensure_postgres_database(name: str) -> bool:
    """Create the database ``name`` on the local PostgreSQL when missing; True if created."""
    import sqlalchemy as sa

    engine = sa.create_engine(f"postgresql+psycopg://{POSTGRES}/postgres", isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            if conn.execute(sa.text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}).first():
                return False
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')  # the name is checked: [A-Za-z_][A-Za-z0-9_]*
            return True
    except sa.exc.SQLAlchemyError as exc:
        raise ConfigurationError(
            f"ONCEONLY_PREFECT_DB=postgres: cannot use PostgreSQL at {POSTGRES} (database {name!r}): "
            f"{getattr(exc, 'orig', None) or exc}"
        ) from exc
    finally:
        engine.dispose()


def wait_healthy(supervisor: Supervisor, api_url: str, timeout: float = STARTUP_SECONDS) -> None:
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=2.0) as client:
        while time.monotonic() < deadline:
            supervisor.check()
            with contextlib.suppress(httpx.HTTPError):
                if client.get(f"{api_url}/health").status_code == 200:
                    return
            time.sleep(0.5)
    raise ChildFailed(f"prefect server did not answer at {api_url}/health within {timeout:.0f} s")


def work_pool_exists(api_url: str, name: str) -> bool:
    response = httpx.get(f"{api_url}/work_pools/{name}", timeout=10.0)
    if response.status_code == 404:
        return False
    response.raise_for_status()
    return True


def serve(settings: ServerSettings, supervisor: Supervisor) -> None:
    """Start everything, then watch the children until one dies (raises) or a signal comes."""
    supervisor.start(
        "prefect server",
        ["server", "start", "--host", "127.0.0.1", "--port", str(settings.port)],
        module="deployments.server",  # `prefect server start`, with the scheduler fix below
    )
    wait_healthy(supervisor, settings.api_url)
    if not work_pool_exists(settings.api_url, WORK_POOL):
        supervisor.run("prefect work-pool create", ["work-pool", "create", WORK_POOL, "--type", "process"])
    supervisor.run("prefect deploy", ["--no-prompt", "deploy", "--all", "--prefect-file", PREFECT_FILE])
    supervisor.start("prefect worker", ["worker", "start", "--pool", WORK_POOL])
    database = (
        f"PostgreSQL {POSTGRES}/{settings.pg_db}"
        if settings.database_url
        else f"SQLite under {supervisor.env['PREFECT_HOME']}"
    )
    _say(
        f"ready: the Prefect UI is at {settings.ui_url} (database: {database}); a worker of the "
        f"`{WORK_POOL}` pool runs the deployments of {PREFECT_FILE}.\n"
        f"  From another shell: export PREFECT_API_URL={settings.api_url}; "
        "prefect deployment run daily_sharing/daily\n"
        f"  Stop with Ctrl-C (or kill -TERM {os.getpid()}): the worker, then the server."
    )
    while True:
        supervisor.check()
        time.sleep(0.5)


def ignore_state_in_bulk_inserts() -> list[str]:
    """Let Prefect 3.8's scheduler create runs under SQLAlchemy 2.1; the ORM classes patched.

    The scheduler inserts its planned flow runs in bulk with a ``state`` key, which is a hybrid
    property of Prefect's ``FlowRun`` model, not a column; the state rows are inserted next.
    SQLAlchemy 2.0 ignored that key, 2.1 refuses it ("Can't evaluate bulk DML statement;
    please supply a bulk_dml decorated function") and the scheduler creates no run at all
    (tests/e2e/test_make_server.py). The hook drops the key, which is what 2.0 did; it is
    installed only where SQLAlchemy has the hook and Prefect did not set one.
    """
    from prefect.server.database import orm_models

    patched = []
    for model in (orm_models.FlowRun, orm_models.TaskRun):
        hybrid = model.__dict__.get("state")
        if hybrid is None or not hasattr(hybrid, "bulk_dml_setter") or hybrid.bulk_dml_setter is not None:
            continue
        hybrid.inplace.bulk_dml(_drop_state)
        patched.append(model.__name__)
    return patched


def _drop_state(cls: type, mapping: MutableMapping[str, Any], value: Any) -> None:
    mapping.pop("state", None)


def _run_prefect(args: Sequence[str]) -> None:
    """``python -m deployments.server prefect ARGS``: ``python -m prefect ARGS``, fixed as above."""
    import runpy

    ignore_state_in_bulk_inserts()
    sys.argv = ["prefect", *args]
    runpy.run_module("prefect", run_name="__main__", alter_sys=True)


def _say(message: str) -> None:
    print(f"make server: {message}", flush=True)


def _raise_stopped(signum: int, frame: FrameType | None) -> None:
    for other in _STOP_SIGNALS:  # once: a second signal does not cut the stopping short
        signal.signal(other, signal.SIG_IGN)
    raise Stopped(signum)


def main() -> int:
    from dotenv import load_dotenv

    # As the command line does: a local .env provides ONCEONLY_HOME and the department secrets
    # (never overriding the environment), so the worker's runs use the same home as the CLI.
    load_dotenv(".env", override=False)
    try:
        settings = ServerSettings()
    except ValidationError as exc:
        for e in exc.errors():
            field = "ONCEONLY_HOME" if e["loc"] == ("ONCEONLY_HOME",) else f"ONCEONLY_PREFECT_{e['loc'][0]}"
            _say(f"error: {field.upper()}: {e['msg']}")
        return 2
    restrict_new_files()  # the server's database and the runs' files hold personal data: 600/700
    env = child_environment(settings, os.environ)
    private_dir(Path(env["PREFECT_HOME"]))  # Prefect makes its home, but not the folders above it
    supervisor = Supervisor(env)
    for signum in _STOP_SIGNALS:
        signal.signal(signum, _raise_stopped)
    code = 0
    try:
        if settings.database_url and ensure_postgres_database(settings.pg_db):
            _say(f"created the PostgreSQL database {settings.pg_db!r}")
        serve(settings, supervisor)
    except Stopped as stop:
        _say(f"{stop}: stopping")
    except ChildFailed as exc:
        _say(f"{exc}; stopping the others")
        code = 1
    except (ConfigurationError, httpx.HTTPError) as exc:
        _say(f"error: {exc}")
        code = 1
    finally:
        for signum in _STOP_SIGNALS:
            signal.signal(signum, signal.SIG_IGN)
        supervisor.stop()
    _say("stopped")
    return code


if __name__ == "__main__":
    if sys.argv[1:2] == ["prefect"]:  # the server child (Supervisor.start)
        _run_prefect(sys.argv[2:])
    else:
        sys.exit(main())


__all__ = [
    "ServerSettings",
    "Supervisor",
    "child_environment",
    "ensure_postgres_database",
    "ignore_state_in_bulk_inserts",
    "main",
]
