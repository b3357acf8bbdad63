"""``onceonly demo``: generated department systems and the demo run.

Example::

    onceonly demo --rows 5000          # generate the systems if missing, serve the demo API, run
    onceonly demo add-updates --rows 200
    onceonly demo people --matter marriage-household   # demo residents to try at the counter
    onceonly demo --reset              # start over (the signing key stays)
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import urlparse

import typer

from cli.run import run_flow
from onceonly.errors import ConfigurationError

if TYPE_CHECKING:
    from onceonly.settings import Settings

app = typer.Typer(help="Demo department systems and the demo run.")

DEMO_SEED = 20261121


@app.callback(invoke_without_command=True)
def demo(
    ctx: typer.Context,
    rows: Annotated[
        int | None, typer.Option(help="Rows per demo department system (default: as generated, else 5000).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the generated data.")] = DEMO_SEED,
    reset: Annotated[
        bool, typer.Option("--reset", help="Start over: delete the catalog, lake, extracts and demo systems.")
    ] = False,
) -> None:
    """Generate the demo department systems if missing, then run the daily sharing flow."""
    if ctx.invoked_subcommand:
        return
    from departments import API_TOKEN_ENV, DEFAULT_ROWS, LicenceApi, demo_token, generate_if_missing

    settings = _demo_settings()
    if reset:
        _reset_demo(settings)
    existing = _demo_manifest(settings)
    wanted = rows or (existing.rows if existing else DEFAULT_ROWS)
    if existing and (existing.rows, existing.seed) != (wanted, seed) and _catalog_has_data(settings):
        raise ConfigurationError(
            f"the demo systems in {settings.departments_dir} hold {existing.rows} rows "
            f"(seed {existing.seed}) and the catalog already holds their certificates; regenerating "
            f"with {wanted} rows (seed {seed}) would mix two worlds. Start over with "
            "`onceonly demo --reset` (make demo RESET=1)."
        )
    manifest, generated = generate_if_missing(settings.departments_dir, rows=wanted, seed=seed)
    typer.echo(
        f"Demo department systems {'generated' if generated else 'already present'} in "
        f"{settings.departments_dir} ({manifest.rows} rows each, seed {manifest.seed})."
    )
    if not os.environ.get(API_TOKEN_ENV):  # unset or left empty in .env: the demo's own token
        os.environ[API_TOKEN_ENV] = demo_token(seed)
    host, port = _demo_api_address(settings)
    db = settings.departments_dir / "scjg" / "licences.db"
    api = _start_api(LicenceApi(db, token=os.environ[API_TOKEN_ENV], host=host, port=port))
    from flows.server import temporary_server

    try:
        typer.echo(f"市场监管 licence API serving on {api.base_url}")
        with temporary_server():  # one Prefect server for the daily run and the flows after it
            ok = run_flow(None, settings)
            if ok:
                ok = _township_flows(settings, seed)
    finally:
        api.stop()
    if ok:
        _counter_next(settings)
    raise typer.Exit(0 if ok else 1)


def _counter_next(settings: Settings) -> None:
    """What to try next: the counter a township's clerk uses, on what the demo shared — in the
    township `demo people` lists by default (the one with the most residents)."""
    from contracts.checks import load_region_codes
    from contracts.identifiers import is_valid_citizen_id

    manifest = _demo_manifest(settings)
    if manifest is None:
        return
    residents = _demo_residents(settings.departments_dir, manifest, person=True)
    code = _busiest([(subject, code) for subject, code in residents if is_valid_citizen_id(subject)])
    name = load_region_codes(settings.district_code).get(code, code)
    typer.echo(
        "The counter (镇街/村服务站), next:\n"
        f"  onceonly stations add --name {name}便民服务中心 --township {code}   # prints its credential\n"
        f"  onceonly demo people --township {code}   # generated people to ask about\n"
        "  onceonly serve --port 8080   # the clerk's page: http://127.0.0.1:8080/"
    )


def _township_flows(settings: Settings, seed: int) -> bool:
    """After the daily run (which wrote the township extracts, checked here offline), each flow
    that works on what it shared, once, as its deployment would: 审管联动 (against a demo
    supervisor served here), 免申即享, 证照到期提醒, and 办事堵点 after a demo counter has asked
    about citizens whose records sit in quarantine."""
    from cli.bottlenecks import counter_visits_for_demo
    from cli.extracts import show_for_demo
    from flows.benefits import benefits
    from flows.bottlenecks import bottlenecks
    from flows.reminders import expiry_reminders
    from onceonly.privacy import scrub_text

    def said(label: str, state: Any) -> bool:
        ok = bool(state.is_completed())
        typer.secho(f"{label}: {scrub_text(state.message or state.name or '')}", fg=None if ok else "red")
        return ok

    show_for_demo(settings)  # the daily run wrote them
    ok = _supervision(settings, seed, said)
    ok = said("免申即享 (benefits)", benefits(settings=settings, return_state=True)) and ok
    ok = said("证照到期提醒 (reminders)", expiry_reminders(settings=settings, return_state=True)) and ok
    stopped = counter_visits_for_demo(settings)
    typer.echo(f"办事堵点: a demo counter found {stopped} material(s) held up by records in quarantine")
    ok = said("办事堵点 (bottlenecks)", bottlenecks(settings=settings, return_state=True)) and ok
    return ok


def _supervision(settings: Settings, seed: int, said: Any) -> bool:
    from cli.supervision import demo_supervisor
    from departments.supervisor import demo_supervision_token
    from flows.supervision import supervision

    if not os.environ.get(settings.supervision_token_secret):
        os.environ[settings.supervision_token_secret] = demo_supervision_token(seed)
    endpoint = demo_supervisor(settings, seed=seed, feedback_after=0.0)  # read and answered at once
    try:
        endpoint.start()
    except OSError as exc:
        endpoint.close()
        raise ConfigurationError(
            f"cannot serve the demo supervisor on {endpoint.host}:{endpoint.port} ({exc.strerror}); "
            "set ONCEONLY_SUPERVISION_URL to a free address"
        ) from exc
    try:
        typer.echo(f"demo supervisor (市场监督管理局) serving on {endpoint.base_url}")
        return bool(said("审管联动 (supervision)", supervision(settings=settings, return_state=True)))
    finally:
        endpoint.close()


def _demo_manifest(settings: Settings) -> Any:
    from departments import Manifest

    try:
        return Manifest.load(settings.departments_dir)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _catalog_has_data(settings: Settings) -> bool:
    if settings.database_url:
        return True
    return (settings.home / "catalog.db").exists()


def _start_api(api: Any) -> Any:
    try:
        return api.start()
    except OSError as exc:
        raise ConfigurationError(
            f"cannot serve the demo licence API on {api.host}:{api.port} ({exc.strerror}); free the port or "
            "change options.base_url in connectors/registrations/scjg-licences.yaml"
        ) from exc


def _reset_demo(settings: Settings) -> None:
    """Delete what the demo generated and landed; keys and the remembered passphrase stay."""
    import shutil

    if settings.database_url:
        raise ConfigurationError(
            "--reset deletes only the embedded SQLite catalog; drop your database yourself"
        )
    if not settings.lake_is_local:
        raise ConfigurationError(
            f"--reset deletes only a local lake; empty {settings.lake_location} yourself"
        )
    for path in (settings.departments_dir, settings.lake_dir, settings.extracts_dir):
        shutil.rmtree(path, ignore_errors=True)
    for suffix in ("", "-wal", "-shm"):
        (settings.home / f"catalog.db{suffix}").unlink(missing_ok=True)
    typer.echo(f"Reset: removed the demo systems, catalog, lake and extracts under {settings.home}")


@app.command("generate")
def demo_generate(
    rows: Annotated[int, typer.Option(help="Rows per demo department system.")] = 5000,
    seed: Annotated[int, typer.Option()] = DEMO_SEED,
) -> None:
    """(Re)generate the demo department systems under ONCEONLY_HOME/departments."""
    from departments import generate_all
    from onceonly.settings import Settings

    settings = Settings()
    generate_all(settings.departments_dir, rows=rows, seed=seed)
    typer.echo(f"Generated {rows} rows per department in {settings.departments_dir}")


@app.command("add-updates")
def demo_add_updates(
    rows: Annotated[int, typer.Option(help="New rows per department.")] = 100,
    seed: Annotated[int, typer.Option()] = DEMO_SEED + 1,
) -> None:
    """Append new records to each demo department system, as between two daily runs."""
    from departments import add_updates
    from onceonly.settings import Settings

    settings = Settings()
    add_updates(settings.departments_dir, rows=rows, seed=seed)
    typer.echo(f"Added {rows} new rows to each department in {settings.departments_dir}")


@app.command("serve")
def demo_serve(seed: Annotated[int, typer.Option()] = DEMO_SEED) -> None:
    """Serve the demo 市场监管 licence API until interrupted (for `onceonly run` / connector tests)."""
    import time

    from departments import API_TOKEN_ENV, LicenceApi, demo_token
    from onceonly.settings import Settings

    settings = Settings()
    host, port = _demo_api_address(settings)
    token = os.environ.get(API_TOKEN_ENV) or demo_token(seed)
    api = _start_api(
        LicenceApi(settings.departments_dir / "scjg" / "licences.db", token=token, host=host, port=port)
    )
    typer.echo(f"serving on {api.base_url}; token in {API_TOKEN_ENV} (or the demo token); Ctrl-C stops")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        api.stop()


@app.command("people")
def demo_people(
    matter: Annotated[
        str, typer.Option(help="Matter or 一件事 bundle code (see `onceonly matters list`).")
    ] = "marriage-household",
    township: Annotated[
        str | None,
        typer.Option(metavar="CODE", help="Their township (default: the one with the most residents)."),
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=50, help="People to list at most.")] = 8,
    as_json: Annotated[bool, typer.Option("--json", help="JSON output.")] = False,
) -> None:
    """People of the generated demo systems to try at the counter, one per different answer.

    Their ID numbers are printed in full (a clerk types them): generated people only, read from
    the demo's own registries, never from the catalog; a home without the generated demo systems
    is refused. Nothing is logged: the answers are the read-only skip-check's."""
    from catalog import Catalog
    from cli.sharing import _catalogue
    from contracts.identifiers import is_valid_citizen_id, is_valid_uscc
    from evidence.keys import log_verifiers
    from evidence.merkle import tree_hash
    from evidence.view import LogView
    from onceonly.settings import Settings
    from sharing.skipcheck import skip_check

    settings = Settings()
    manifest = _demo_manifest(settings)
    if manifest is None:
        raise ConfigurationError(
            f"no generated demo systems in {settings.departments_dir}: `demo people` lists only the "
            "demo's generated people (run `make demo` first; real citizens are never listed)"
        )
    catalogue, issued_by = _catalogue(settings)
    asked = catalogue.asked(matter)
    person = asked.subject == "person"
    residents = _demo_residents(settings.departments_dir, manifest, person=person)
    valid = is_valid_citizen_id if person else is_valid_uscc
    residents = [(subject, code) for subject, code in residents if valid(subject)]
    if not residents:
        raise ConfigurationError(f"the demo registry in {settings.departments_dir} holds nobody")
    township = township or _busiest(residents)
    if not any(code == township for _, code in residents):
        raise ConfigurationError(f"the demo registry holds nobody of township {township}")
    here = [subject for subject, code in residents if code == township]
    # 跨域通办 needs the citizen's consent: one person of another township to try it with
    elsewhere = next((subject for subject, code in residents if code != township), None) if person else None
    verifiers = log_verifiers(settings)
    by_answer: dict[tuple[tuple[str, str], ...], dict[str, Any]] = {}
    catalog = Catalog.connect(settings.catalog_url, create=False)
    try:
        with catalog.read() as conn:
            view = LogView(verifiers, hasher=tree_hash(settings.log_hash))  # the log verified once
            view.refresh(conn)
            held = view.reader(conn)

            def answer(subject: str) -> dict[str, Any]:
                found = skip_check(
                    conn,
                    asked,
                    subject,
                    issued_by,
                    verifiers=verifiers,
                    relatives=catalogue.relatives,
                    held=held,
                )
                return {
                    "subject_id": subject,
                    "skippable": sum(m.skippable for m in found.materials),
                    "materials": len(found.materials),
                    "verdicts": [{"material": m.material, "verdict": m.verdict} for m in found.materials],
                }

            for subject in here[:CANDIDATES]:
                seen = answer(subject)
                shape = tuple((v["material"], v["verdict"]) for v in seen["verdicts"])
                by_answer.setdefault(shape, seen)
            other = answer(elsewhere) if elsewhere is not None else None
    finally:
        catalog.dispose()
    people = sorted(by_answer.values(), key=lambda p: (-p["skippable"], p["subject_id"]))[:limit]
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "matter": asked.code,
                    "township": township,
                    "people": [{**p, "township": township} for p in people],
                    "another_township": {**other, "township": dict(residents)[elsewhere]}
                    if other is not None and elsewhere is not None
                    else None,
                },
                ensure_ascii=False,
                indent=2,
            )
        )
        return
    who = "residents" if person else "businesses"
    typer.secho(
        f"demo {who} (generated) of township {township} for {asked.name} ({asked.code}), one per "
        f"different answer among the first {min(len(here), CANDIDATES)} of its {len(here)} {who}:",
        bold=True,
    )
    for p in people:
        missing = "；".join(
            f"{v['material']} {v['verdict']}" for v in p["verdicts"] if v["verdict"] != "可免交"
        )
        typer.echo(
            f"  {p['subject_id']}  可免交 {p['skippable']}/{p['materials']}"
            + (f"  {missing}" if missing else "")
        )
    if other is not None:
        typer.echo(
            f"  {other['subject_id']}  of another township: a station of {township} is answered "
            "需本人授权 (跨域通办) unless the citizen gives a consent code"
        )
    typer.echo(f"try: onceonly skip-check --subject {people[0]['subject_id']} --matter {asked.code}")


CANDIDATES = 400  # residents of the township asked (read-only) for different answers


def _busiest(residents: list[tuple[str, str]]) -> str:
    """The township with the most of ``residents`` (the lowest code of those tied)."""
    counts: dict[str, int] = {}
    for _, code in residents:
        counts[code] = counts.get(code, 0) + 1
    return min(counts, key=lambda code: (-counts[code], code))


def _demo_residents(root: Path, manifest: Any, *, person: bool) -> list[tuple[str, str]]:
    """(identifier, township) of the generated registry: the residents (household registry), or
    the businesses (licence register), in the order they were generated."""
    from sqlalchemy import create_engine, text

    from departments import default_household_url

    if person:
        url = manifest.household_url or default_household_url(root)
        query = "SELECT person_id, township_code FROM household_member ORDER BY id"
    else:
        licences = manifest.datasets.get("licences")
        if licences is None:
            raise ConfigurationError(f"the demo systems in {root} have no licence register")
        url = f"sqlite:///{(root / licences.location).resolve()}"
        query = "SELECT uscc, township_code FROM business_licence ORDER BY rowid"
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return [(str(a), str(b)) for a, b in conn.execute(text(query)) if a and b]
    finally:
        engine.dispose()


def _demo_settings() -> Settings:
    """Settings for the demo: a passphrase for the signing key is generated once and remembered.

    It is kept in ``home/secrets/key-passphrase`` (mode 600), where ``Settings`` finds it when
    ``ONCEONLY_KEY_PASSPHRASE`` is unset, so ``onceonly run`` after the demo finds it too.
    """
    from onceonly.files import private_dir, write_atomic
    from onceonly.settings import Settings

    settings = Settings()
    if settings.key_passphrase is None and not settings.key_passphrase_secret:
        path = settings.key_passphrase_file or settings.home / "secrets" / "key-passphrase"
        if not path.exists():
            private_dir(path.parent)
            write_atomic(path, secrets.token_urlsafe(32))
            typer.echo(
                f"Generated a passphrase for the demo signing key and stored it in {path} (mode 600). "
                "In production set ONCEONLY_KEY_PASSPHRASE instead."
            )
        settings = Settings()
    return settings


def _demo_api_address(settings: Settings) -> tuple[str, int]:
    from connectors import load_registrations

    regs = load_registrations(settings.registrations_dir)
    http = [r for r in regs.values() if r.type == "http"]
    url = urlparse(http[0].options["base_url"]) if http else urlparse("http://127.0.0.1:18930")
    return url.hostname or "127.0.0.1", url.port or 80


__all__ = ["DEMO_SEED", "app"]
